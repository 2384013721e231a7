"""Costs are shown one way everywhere: exact decimals rounded half up."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from imagen_tui.core.rows import ImageRow
from imagen_tui.money import cost_text, total_cost_text
from imagen_tui.tui.screens.image_view import metadata_rows


def test_an_image_cost_rounds_half_up_to_a_hundredth_of_a_cent() -> None:
    # Python's own formatting rounds Decimal('0.00125') half-even, to $0.0012.
    assert cost_text(Decimal("0.00125")) == "$0.0013"
    # 0.00015 as a float is 0.000149999..., which `:.4f` shows as $0.0001.
    assert cost_text(0.00015) == "$0.0002"
    assert cost_text(None) == "?"
    assert cost_text(None, unknown="cost unknown") == "cost unknown"


def test_a_total_rounds_half_up_to_the_cent_and_counts_the_unpriced() -> None:
    assert total_cost_text(Decimal("1.235"), count=3, priced=2) == "$1.24 (+1 unpriced)"


def test_the_full_screen_view_shows_a_recorded_cost_as_the_ledger_does() -> None:
    image = ImageRow(
        id=1,
        job_id=None,
        series_id=None,
        series_idx=None,
        seed=7,
        width=64,
        height=64,
        backend="replicate",
        model="flux-schnell",
        storage_uri="file:///tmp/x.png",
        thumbnail=None,
        thumbnail_mime=None,
        metadata={"cost_usd": 0.00015},
        created_at=datetime.now(UTC),
    )
    assert ("Cost", "$0.0002") in list(metadata_rows(image))
