"""Sell prices, margins, the margin floor, cost history and source precedence (issues 18, 20.11).

Real daemon process, real simulators over loopback: prices come from each PSA's own fields
(ConnectWise ``price``/``unitPrice``, Autotask ``unitPrice``, Syncro ``price_retail``/``retail_cents``).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from .psa_fixtures import (
    PSAS,
    approve,
    live_lines,
    msp_tenant,
    psa_daemon,
    rows_by_identifier,
    set_vendor_cost,
)


@pytest.mark.parametrize("psa", PSAS)
def test_the_mirror_keeps_prices_and_the_row_shows_margins_now_and_after(tmp_path, psa):
    ds = msp_tenant(contracts=6)
    with psa_daemon(tmp_path, ds, psa) as (sim, d):
        bp = rows_by_identifier(d)[sim.identifier(100)]
        # Business Premium: cost 22.00, price 30.80 in the simulated PSA
        assert bp["price"] == "30.8000"
        assert bp["margin_pct"] == "28.6"
        assert bp["margin_after_pct"] is None  # no vendor cost yet
        row = set_vendor_cost(d, bp, "23.10")
        assert row["margin_after_pct"] == "25.0"
        assert row["below_margin_floor"] is False
        row = set_vendor_cost(d, bp, "26.00")
        # (30.80 − 26.00) / 30.80 = 15.6 %: under the default floor of 20 %
        assert row["margin_after_pct"] == "15.6"
        assert row["line_margin_min_after_pct"] == "15.6"
        assert row["below_margin_floor"] is True


def test_the_preview_lists_lines_below_the_floor_and_the_monthly_margin(tmp_path):
    ds = msp_tenant(contracts=6)
    with psa_daemon(tmp_path, ds, "connectwise") as (sim, d):
        bp = set_vendor_cost(d, rows_by_identifier(d)[sim.identifier(100)], "26.00")
        preview = approve(d, [bp], dry_run=True).json()["preview"]
        margin = preview["margin"]
        lines = live_lines(ds, 100)
        assert margin["floor_pct"] == "20"
        assert margin["below_floor_count"] == len(lines) == preview["lines"]
        first = margin["below_floor"][0]
        assert first["customer"].startswith("Client ") and first["price"] == "30.8000"
        assert first["cost_after"] == "26.0000" and first["margin_after_pct"] == "15.6"
        qty = sum(ln.quantity for ln in lines)
        before = sum(ln.quantity * (ln.unit_price - ln.unit_cost) for ln in lines)
        usd = margin["monthly"]["USD"]
        assert Decimal(usd["after"]) == qty * (Decimal("30.80") - Decimal("26.00"))
        assert Decimal(usd["before"]) == before
        # the margin lost is the cost gained, to the cent, beside the cost impact
        assert Decimal(usd["change"]) == -Decimal(preview["impact_by_currency"]["USD"])
        # prices are never written: the simulator still has the old price on every line
        assert sim.item_cost(100) == Decimal("22.00")


def test_cost_history_lists_every_manual_value_with_date_and_source(tmp_path):
    ds = msp_tenant(contracts=3)
    with psa_daemon(tmp_path, ds, "connectwise") as (sim, d):
        bp = rows_by_identifier(d)[sim.identifier(100)]
        set_vendor_cost(d, bp, "23.10")
        set_vendor_cost(d, bp, "24.00")
        r = d.request("DELETE", f"/v1/costs/{bp['id']}/manual")
        assert r.status_code == 200, r.text
        hist = d.get(f"/v1/costs/{bp['id']}/history")
        assert hist["identifier"] == bp["identifier"] and hist["currency"] == "USD"
        points = hist["points"]
        assert [(p["kind"], p["cost"]) for p in points] == [
            ("manual", "23.1000"),
            ("manual", "24.0000"),
            ("revert", None),
        ]
        assert all(p["at"] and p["by"] for p in points)
        assert d.request("GET", "/v1/costs/999999/history").status_code == 404
