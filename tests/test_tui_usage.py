"""The Usage screen: the ledger's totals, as `imagen usage` computes them (real database)."""

from __future__ import annotations

import psycopg
from textual.widgets import DataTable, Static

from imagen_tui.tui.screens.usage import UsageScreen
from tests.tui import make_app, run, until

HASH = "0" * 64


def add_usage(db_url: str, backend: str, model: str, cost: str | None, latency_ms: float) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO imagen.usage (backend, backend_type, model, seed, prompt_sha256, width,"
            " height, latency_ms, cost_usd, caller, source)"
            " VALUES (%s, 'replicate', %s, 1, %s, 512, 512, %s, %s, 'me@box', 'cli')",
            (backend, model, HASH, latency_ms, cost),
        )


def rows(table: DataTable) -> list[list[str]]:
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


def test_usage_totals_by_backend_then_by_model_with_a_chart_of_the_days(home, monkeypatch, db_url):
    add_usage(db_url, "flux", "flux-schnell", "0.003", 1000)
    add_usage(db_url, "flux", "flux-dev", "0.025", 3000)
    add_usage(db_url, "gpt", "gpt-image-2", None, 2000)
    app = make_app(home, monkeypatch, db_url)

    async def scenario():
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.session is not None)
            await pilot.press("f5")
            screen = await until(pilot, lambda: isinstance(app.screen, UsageScreen) and app.screen)
            table = screen.query_one("#usage-totals", DataTable)
            await until(pilot, lambda: table.row_count == 3)
            by_backend = rows(table)
            chart = str(screen.query_one("#usage-chart", Static).render())
            await pilot.press("g")
            await until(pilot, lambda: table.row_count == 4)
            return by_backend, rows(table), chart

    by_backend, by_model, chart = run(scenario())
    assert by_backend == [
        ["flux", "2", "$0.03", "$0.0140", "2.00 s"],
        ["gpt", "1", "$0.00 (+1 unpriced)", "?", "2.00 s"],
        ["total", "3", "$0.03 (+1 unpriced)", "$0.0140", "2.00 s"],
    ]
    assert [row[0] for row in by_model] == ["flux-dev", "flux-schnell", "gpt-image-2", "total"]
    assert chart.count("\n") >= 14 and "$0.03" in chart  # today's bar holds all three
