"""The `i` detail draws the terms and rate bands of the distributor-API value in use (issue 16)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from costrecon_tui.screens.item_detail import pricing_text

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def point(cost: str, billing: str, quantity: int, bands: list[dict[str, object]]) -> dict:
    return {
        "at": "2026-12-07T08:00:00Z",
        "cost": cost,
        "currency": "USD",
        "kind": "pull",
        "source": "Pax8 API pull, 130 prices",
        "vendor": "Pax8",
        "sku": "MST-1",
        "row": 1,
        "by": "costrecond",
        "terms": {"billing": billing, "commitment": "1-Year", "quantity": quantity},
        "bands": bands,
    }


BANDS = [
    {"start": 1, "end": 99, "cost": "5.00", "list_price": "6.00", "charge_type": "Per Unit"},
    {"start": 100, "end": None, "cost": "4.50", "list_price": None, "charge_type": "Per Unit"},
]


def test_the_band_holding_the_quantity_is_marked_and_every_band_is_listed():
    text = pricing_text([point("4.5000", "Monthly", 150, BANDS)], NOW).plain
    assert (
        "Pax8 API pull" in text
        and "not the cost in use" not in text
        and "Monthly, 1-Year, priced for quantity 150" in text
    )
    lines = text.splitlines()
    (first,) = [ln for ln in lines if "1–99" in ln]
    (second,) = [ln for ln in lines if "100+" in ln]
    assert "5.00" in first and "list 6.00" in first and not first.startswith("▶")
    assert second.startswith("▶") and "4.50" in second


def test_the_term_whose_cost_the_row_shows_is_drawn_not_just_the_newest():
    annual = point("4.0000", "Annual", 1, [{**BANDS[0], "cost": "48", "end": None}])
    monthly = point("4.2000", "Monthly", 1, [{**BANDS[0], "cost": "4.2", "end": None}])
    assert "Annual" in pricing_text([annual, monthly], NOW, Decimal("4.0000")).plain
    assert "Monthly" in pricing_text([annual, monthly], NOW, Decimal("4.2000")).plain
    assert "Monthly" in pricing_text([annual, monthly], NOW, None).plain  # newest
    # a price file's value wins over the pull: the pull's bands are drawn, marked as not in use
    other = pricing_text([annual, monthly], NOW, Decimal("3.2400")).plain
    assert "Monthly" in other and "(not the cost in use)" in other


def test_imports_and_manual_values_draw_nothing():
    file_point = {**point("4.0", "Monthly", 1, []), "kind": "import"}
    del file_point["terms"]
    assert pricing_text([file_point], NOW).plain == ""
    flat = pricing_text([point("4.0", "Monthly", 1, [])], NOW).plain
    assert "one price for every quantity" in flat
