"""Mappings from the catalogue's side (issue 15 item 4): the vendor search table is filled as
rows are written and pruned with them; candidates rank SKU/MPN before names; the needs list
orders items by live lines × catalogue cost and pages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import delete, func, insert, select, text

from costrecon_daemon.db import (
    CatalogItem,
    ContractLine,
    PriceImport,
    VendorCost,
    make_engine,
)
from costrecon_daemon.intake import mappings, search

from . import pricefiles as pf
from .harness import migrated
from .psa_fixtures import cw_daemon, msp_tenant, rows_by_identifier
from .test_intake import inbox_of, wait_import

AT = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _db(url):
    migrated(url)
    return make_engine(url)


def _import(conn, rows, status="imported"):
    iid = conn.execute(
        insert(PriceImport).values(
            file_name="acme-prices.csv",
            sha256="0" * 64,
            status=status,
            vendor="Acme",
            final_path="",
            actor="t",
            received_at=AT,
        )
    ).inserted_primary_key[0]
    for n, (sku, mpn, desc, item_id) in enumerate(rows, start=2):
        conn.execute(
            insert(VendorCost).values(
                import_id=iid,
                row_number=n,
                vendor="Acme",
                sku=sku,
                mpn=mpn,
                description=desc,
                term=None,
                cost=Decimal("1.5000") + n,
                currency="USD",
                item_id=item_id,
                imported_at=AT,
            )
        )
    search.index_new(conn, iid)
    return iid


def _item(conn, n, ident, name, cost, lines, sku=None, mpn=None):
    conn.execute(
        insert(CatalogItem).values(
            id=n,
            psa_id=f"p{n}",
            identifier=ident,
            name=name,
            cost=Decimal(cost),
            currency="USD",
            vendor_sku=sku,
            mpn=mpn,
            synced_at=AT,
        )
    )
    for k in range(lines):
        conn.execute(
            insert(ContractLine).values(
                psa_id=f"l{n}-{k}",
                contract_psa_id="c1",
                item_psa_id=f"p{n}",
                kind="product",
                quantity=Decimal(1),
                currency="USD",
                active=True,
                gone=False,
                synced_at=AT,
            )
        )


def _search_count(conn):
    """(names, keys): the rows of both search tables."""
    return tuple(
        conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
        for table in ("vendor_search", "vendor_search_keys")
    )


def test_candidates_rank_sku_and_mpn_before_names_and_search_finds_typed_text(database_url):
    engine = _db(database_url)
    with engine.begin() as conn:
        _import(
            conn,
            [
                ("QQ-1", None, "DNSFilter per device", None),  # the name only
                ("X-77", "dnsf 100", "Unrelated widget", None),  # MPN, spelt differently
                ("PAX-DNS-FILTER", None, "Something else", None),  # the SKU exactly
                ("ZZ-2", None, "Datto SaaS Protection", None),
            ]
            + [(f"FILL-{n:04d}", None, f"Widget number {n}", None) for n in range(300)],
        )
        found = mappings.rank(
            conn,
            skus=["pax-dns-filter"],
            mpns=["dnsf100"],
            name="DNSFilter per device",
            limit=5,
        )
        assert [(c["sku"], c["reason"]) for c in found[:3]] == [
            ("PAX-DNS-FILTER", "sku"),
            ("X-77", "mpn"),
            ("QQ-1", "name"),
        ]
        assert all("Widget" not in c["description"] for c in found)
        typed = mappings._search(conn, "datto saas", 5)
        assert typed[0]["sku"] == "ZZ-2"
        assert mappings._search(conn, "fill-0123", 5)[0]["sku"] == "FILL-0123"


def test_search_rows_go_with_their_vendor_rows_and_staged_rows_are_never_candidates(
    database_url,
):
    engine = _db(database_url)
    with engine.begin() as conn:
        kept = _import(conn, [("KEEP-1", None, "Proofpoint Essentials", None)])
        staged = _import(conn, [("STAGED-1", None, "Proofpoint Essentials", None)], "importing")
        assert _search_count(conn) == (2, 2)
        assert [c["sku"] for c in mappings._search(conn, "proofpoint", 5)] == ["KEEP-1"]
        conn.execute(delete(VendorCost).where(VendorCost.import_id == staged))
        assert _search_count(conn) == (1, 1)
        conn.execute(delete(VendorCost).where(VendorCost.import_id == kept))
        assert _search_count(conn) == (0, 0)
        assert mappings._search(conn, "proofpoint", 5) == []


def test_needs_lists_items_without_vendor_cost_by_lines_times_cost_and_pages(database_url):
    engine = _db(database_url)
    with engine.begin() as conn:
        _item(conn, 1, "A", "Alpha", "10.00", 1)  # weight 10
        _item(conn, 2, "B", "Bravo", "2.00", 20)  # weight 40
        _item(conn, 3, "C", "Charlie", "5.00", 5)  # weight 25
        _item(conn, 4, "D", "Delta", "99.00", 0)  # no contract lines: not needed
        _item(conn, 5, "E", "Echo", "50.00", 3)  # has a vendor cost: not needed
        _import(conn, [("E-1", None, "Echo", 5)])
        whole = mappings._needs(conn, 0, 10, 0)
        assert [i["identifier"] for i in whole["items"]] == ["B", "C", "A"]
        assert whole["total"] == 3
        assert (whole["items"][0]["lines"], whole["items"][0]["weight"]) == (20, "40.0000")
        first = mappings._needs(conn, 0, 2, 0)["items"]
        rest = mappings._needs(conn, 2, 2, 0)["items"]
        assert [i["item_id"] for i in first + rest] == [i["item_id"] for i in whole["items"]]
        assert conn.execute(select(func.count()).select_from(VendorCost)).scalar() == 1


def test_through_the_daemon_a_candidate_mapped_gives_the_item_its_vendor_cost(tmp_path):
    ds = msp_tenant(contracts=4)
    lines = [
        pf.PriceLine("ACME-DNSF-77", None, "DNSFilter per device", Decimal("1.09")),
        pf.PriceLine("PAX-DNS-FILTER-EDU", None, "Education bundle", Decimal("0.90")),
    ] + [
        pf.PriceLine(f"FILL-{n:03d}", None, f"Widget number {n}", Decimal("2.00"))
        for n in range(60)
    ]
    with cw_daemon(tmp_path, ds) as (_sim, _served, d):
        pf.write_generic_csv(inbox_of(d), lines, name="acme-prices.csv")
        assert wait_import(d, "acme-prices.csv")["status"] == "imported"
        # Names are indexed after the import commits, in the background.
        d.wait_for(
            lambda: d.get("/v1/mappings/search", params={"q": "x"})["names_indexed"],
            30,
            "the name index",
        )

        needs = d.get("/v1/mappings/needs", params={"candidates": 3})
        assert needs["names_indexed"] is True
        items = needs["items"]
        assert needs["total"] == len(items) == 6  # nothing in the file matched an item
        weights = [Decimal(i["lines"]) * Decimal(i["cost"]) for i in items]
        assert weights == sorted(weights, reverse=True)
        assert all(Decimal(i["weight"]) == w for i, w in zip(items, weights, strict=True))
        paged = d.get("/v1/mappings/needs", params={"offset": 2, "limit": 2})["items"]
        assert [i["item_id"] for i in paged] == [i["item_id"] for i in items[2:4]]

        dns = next(i for i in items if i["identifier"] == "DNS-FILTER")
        assert [(c["sku"], c["reason"]) for c in dns["candidates"][:2]] == [
            ("PAX-DNS-FILTER-EDU", "partial sku"),
            ("ACME-DNSF-77", "name"),
        ]
        found = d.get("/v1/mappings/search", params={"q": "dnsfilter"})["rows"]
        assert found[0]["sku"] == "ACME-DNSF-77"
        assert d.get("/v1/mappings/search", params={"q": "fill-042"})["rows"][0]["sku"] == (
            "FILL-042"
        )

        cand = dns["candidates"][1]
        r = d.request(
            "POST",
            "/v1/mappings",
            json={
                "vendor": cand["vendor"],
                "sku": cand["sku"],
                "term": cand["term"] or "",
                "item_id": dns["item_id"],
            },
        )
        assert r.status_code == 201, r.text
        assert rows_by_identifier(d)["DNS-FILTER"]["vendor_cost"] == "1.0900"
        after = d.get("/v1/mappings/needs")["items"]
        assert "DNS-FILTER" not in [i["identifier"] for i in after] and len(after) == 5
