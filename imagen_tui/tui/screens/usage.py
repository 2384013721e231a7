"""The Usage screen: what the generations cost, from the ledger (`imagen usage`).

The same totals as `imagen usage --by ...` (images, total and mean cost,
mean latency, a grand total), grouped by backend, model, caller or day, and
a bar chart of the cost (or, with nothing priced, the images) of the last
14 days; a day whose images cost nothing shows how many there were.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Header, Label, Select, Static

from imagen_tui.errors import DatabaseError
from imagen_tui.limits import USAGE_GROUPS
from imagen_tui.money import cost_text, dollars, total_cost_text
from imagen_tui.tui import cells
from imagen_tui.tui.screens.base import WorkbenchScreen
from imagen_tui.tui.widgets.footer import Footer

if TYPE_CHECKING:
    from imagen_tui.core.rows import UsageTotal

CHART_DAYS = 14
BAR_WIDTH = 40


def bar_chart(days: list[UsageTotal], today: date) -> Text:
    """One line per day of the last CHART_DAYS: a bar of its cost (or images)."""
    by_day = {total.key: total for total in days if total.key is not None}
    span = [today - timedelta(days=back) for back in range(CHART_DAYS - 1, -1, -1)]
    priced = any(total.priced for total in by_day.values())

    def amount(day: date) -> Decimal:
        total = by_day.get(day.isoformat())
        if total is None:
            return Decimal(0)
        return total.total_cost if priced else Decimal(total.count)

    top = max((amount(day) for day in span), default=Decimal(0))
    chart = Text()
    for day in span:
        value = amount(day)
        filled = 0 if not top else round(value / top * BAR_WIDTH)
        label = dollars(value) if priced else f"{int(value)} images"
        made = by_day.get(day.isoformat())
        if priced and not value and made is not None and made.count:
            # Images that cost nothing (mock, a local ComfyUI): their count, not "$0.00".
            label = f"{made.count} image{'' if made.count == 1 else 's'}, no cost"
        chart.append(f"{day:%a %d %b} ", style="dim")
        chart.append("█" * filled, style="bold")
        chart.append("·" * (BAR_WIDTH - filled), style="dim")
        chart.append(f" {label}\n")
    return chart


class UsageScreen(WorkbenchScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "next_group", "Group by", id="usage-group"),
        Binding("ctrl+l", "reload", "Reload", id="reload-usage"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="usage-bar"):
            yield Label("Group by", classes="field-label")
            yield Select(
                [(group, group) for group in USAGE_GROUPS],
                value="backend",
                allow_blank=False,
                id="usage-group",
                compact=True,
            )
        table: DataTable[Text] = DataTable(id="usage-totals", cursor_type="row")
        yield table
        yield Static("", id="usage-chart")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#usage-totals", DataTable)
        for key, label in (
            ("key", "Group"),
            ("count", "Images"),
            ("total", "Total cost"),
            ("mean", "Mean cost"),
            ("latency", "Mean latency"),
        ):
            table.add_column(label, key=key)
        if self.workbench_app.session is not None:
            self.action_reload()

    def on_screen_resume(self) -> None:
        if self.is_mounted and self.workbench_app.session is not None:
            self.action_reload()

    @property
    def group(self) -> str:
        value = self.query_one("#usage-group", Select).value
        return value if isinstance(value, str) else "backend"

    def action_next_group(self) -> None:
        select = self.query_one("#usage-group", Select)
        select.value = USAGE_GROUPS[(USAGE_GROUPS.index(self.group) + 1) % len(USAGE_GROUPS)]

    @on(Select.Changed, "#usage-group")
    def _regroup(self) -> None:
        self.action_reload()

    @work(thread=True, exclusive=True, group="usage-load", exit_on_error=False)
    def action_reload(self) -> None:
        app = self.workbench_app
        group = self.group
        since = app.clock().astimezone() - timedelta(days=CHART_DAYS)
        try:
            session = app.require_session()
            totals = session.usage_totals(group)
            days = session.usage_totals("day", since=since)
        except DatabaseError as error:
            app.tell(str(error), title="Usage", severity="error")
            return
        app.call_from_thread(self._show, totals, days)

    def _show(self, totals: list[UsageTotal], days: list[UsageTotal]) -> None:
        table = self.query_one("#usage-totals", DataTable)
        table.clear()
        for total in totals:
            cost = total_cost_text(total.total_cost, total.count, total.priced)
            mean = cost_text(total.mean_cost)
            style = "bold" if total.key is None else ""
            table.add_row(
                Text("total", style=style) if total.key is None else cells.user_text(total.key, 40),
                Text(str(total.count), justify="right", style=style),
                Text(cost, justify="right", style=style),
                Text(mean, justify="right", style=style),
                Text(f"{total.mean_latency_ms / 1000:.2f} s", justify="right", style=style),
            )
        today = self.workbench_app.clock().astimezone().date()
        self.query_one("#usage-chart", Static).update(bar_chart(days, today))
