"""Sell prices, margins, the margin floor, cost history and source precedence (issues 18, 20.11).

Real daemon process, real simulators over loopback: prices come from each PSA's own fields
(ConnectWise ``price``/``unitPrice``, Autotask ``unitPrice``, Syncro
``price_retail``/``retail_cents``).
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


def _db(tmp_path):
    from costrecon_daemon.db import make_engine

    from .harness import migrated

    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrated(url)
    return make_engine(url)


def _import(conn, vendor, cost, at, item_id=1):
    from sqlalchemy import insert

    from costrecon_daemon.db import PriceImport, VendorCost

    imp = conn.execute(
        insert(PriceImport).values(
            file_name=f"{vendor.lower()}-prices.csv",
            sha256="0" * 64,
            status="imported",
            vendor=vendor,
            received_at=at,
        )
    ).inserted_primary_key[0]
    conn.execute(
        insert(VendorCost).values(
            import_id=imp,
            row_number=2,
            vendor=vendor,
            sku="M365-BP",
            cost=Decimal(cost),
            currency="USD",
            item_id=item_id,
            imported_at=at,
        )
    )


def test_a_second_vendor_taking_over_an_item_says_why_and_is_logged(tmp_path):
    import datetime as dt

    from sqlalchemy import insert

    from costrecon_daemon import activity
    from costrecon_daemon.costs import CostTable
    from costrecon_daemon.db import CatalogItem

    engine = _db(tmp_path)
    day = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    table = CostTable(margin_floor=Decimal(20))
    with engine.begin() as conn:
        conn.execute(
            insert(CatalogItem).values(
                id=1,
                psa_id="1",
                identifier="M365-BP",
                name="Business Premium",
                cost=Decimal("22"),
                price=Decimal("30.80"),
                currency="USD",
            )
        )
        _import(conn, "Pax8", "22.50", day)
        table.reload(conn)
        assert table.get([1])[0].vendor_source["vendor"] == "Pax8"
        assert "wins_because" not in table.get([1])[0].vendor_source  # one source: no contest
        _import(conn, "Ingram", "21.90", day + dt.timedelta(days=2))
        table.refresh(conn, [1])
        row = table.get([1])[0]
        entries = activity.query(conn, action="cost.source.changed")
    assert row.vendor_cost == Decimal("21.90")
    assert (
        "Ingram (2026-12-03 00:00 UTC) is newer than Pax8 (2026-12-01 00:00 UTC)"
        in row.vendor_source["wins_because"]
    )
    out = row.to_json()
    assert [s["vendor"] for s in out["vendor_sources"]] == ["Ingram", "Pax8"]
    assert out["vendor_sources"][0]["wins"] is True
    assert len(entries) == 1 and entries[0]["subject"] == "M365-BP"
    assert (
        entries[0]["before"] == "22.5000 from Pax8" and entries[0]["after"] == "21.9000 from Ingram"
    )
