"""Distributor-scale intake (issue 15): a streamed import writes its rows without the search
tables (SKU/MPN keys and names), which are built afterwards in short chunks, the keys first, so
Mappings finds the new rows by SKU and MPN before their names are in. Unmatched rows page by key
whichever way the database reads them, a failed file leaves no row and no index entry behind, and
every stored cost is the file's decimal exactly. No timings."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from costrecon_daemon.db import PriceImport, VendorCost
from costrecon_daemon.intake import Options, import_file, mappings, queries, search
from costrecon_daemon.store import Store

from . import pricefiles as pf
from .harness import migrated

D = Decimal
ROWS = 2_500


def _lines(prefix: str = "DST") -> list[pf.PriceLine]:
    lines = [
        pf.PriceLine(f"{prefix}{i:06d}", f"MX-{i:06d}", f"Widget number {i}", D("3.00"))
        for i in range(ROWS)
    ]
    lines[1234] = pf.PriceLine(
        f"{prefix}-WATCHGUARD-T45",
        "WGT45643",
        "WatchGuard Firebox T45 appliance",
        D("612.40"),
        manufacturer="WatchGuard",
    )
    return lines


@pytest.fixture
def store(database_url: str) -> Any:
    migrated(database_url)
    s = Store(database_url)
    yield s
    s.close()


def _count(store: Store, sql: str) -> int:
    return int(store.read_sync(lambda c: c.execute(text(sql)).scalar()) or 0)


def test_keys_then_names_are_indexed_after_the_import(store: Store, tmp_path: Path) -> None:
    path = pf.write_generic_csv(tmp_path, _lines(), name="distributor-prices.csv")
    record = import_file(store, path, Options(), None)
    assert record["status"] == "imported" and record["rows_imported"] == ROWS
    # Every row once, with its own row number (a chunk goes in in SKU order: _in_index_order).
    numbers = store.read_sync(
        lambda c: c.execute(text("SELECT row_number FROM vendor_costs")).scalars().all()
    )
    assert sorted(numbers) == list(range(2, ROWS + 2))

    # Straight after the import: nothing is in either search table yet, and Mappings says so.
    assert _count(store, f"SELECT count(*) FROM {search.KEYS}") == 0
    assert _count(store, f"SELECT count(*) FROM {search.TABLE}") == 0
    assert store.read_sync(search.ready) is False
    assert store.read_sync(mappings._search, "dst-watchguard-t45", 5) == []

    # The daemon's background indexer, a chunk per write transaction: the keys come first...
    while _count(store, f"SELECT count(*) FROM {search.KEYS}") < ROWS:
        assert store.write_sync(search.index_some, 1_000) > 0
    assert _count(store, f"SELECT count(*) FROM {search.TABLE}") == 0
    assert store.read_sync(search.ready) is False
    by_sku = store.read_sync(mappings._search, "dst-watchguard-t45", 5)
    assert [(c["sku"], c["reason"]) for c in by_sku[:1]] == [("DST-WATCHGUARD-T45", "sku")]
    by_mpn = store.read_sync(mappings._search, "WGT-45643", 5)
    assert [(c["sku"], c["reason"]) for c in by_mpn[:1]] == [("DST-WATCHGUARD-T45", "mpn")]
    by_prefix = store.read_sync(mappings._search, "DST-WATCHGUARD", 5)
    assert [(c["sku"], c["reason"]) for c in by_prefix[:1]] == [
        ("DST-WATCHGUARD-T45", "partial sku")
    ]
    assert store.read_sync(mappings._search, "firebox", 5) == []  # names come later

    # ...then the names.
    indexer = search.SearchIndexer(store, chunk=1_000)
    assert asyncio.run(indexer.catch_up()) == ROWS
    assert store.read_sync(search.ready) is True
    by_name = store.read_sync(mappings._search, "firebox", 5)
    assert [(c["sku"], c["reason"]) for c in by_name[:1]] == [("DST-WATCHGUARD-T45", "name")]
    assert asyncio.run(indexer.catch_up()) == 0  # nothing twice


def test_the_indexer_waits_while_a_file_is_being_imported(store: Store, tmp_path: Path) -> None:
    path = pf.write_generic_csv(tmp_path, _lines(), name="distributor-prices.csv")
    import_file(store, path, Options(), None)

    def stage(conn: Any) -> None:
        conn.execute(
            PriceImport.__table__.insert().values(
                file_name="next.csv", sha256="1" * 64, size=1, status="importing",
                rows_total=0, rows_imported=0, rows_matched=0, final_path="", actor="t",
            )
        )  # fmt: skip

    store.write_sync(stage)
    assert store.write_sync(search.index_some) == 0  # the staging import keeps the writer
    store.write_sync(
        lambda c: c.execute(text("DELETE FROM price_imports WHERE status = 'importing'"))
    )
    # Each row's keys, then its name.
    assert asyncio.run(search.SearchIndexer(store).catch_up()) == 2 * ROWS


def test_a_failed_file_leaves_no_rows_and_nothing_in_the_name_index(
    store: Store, tmp_path: Path
) -> None:
    good = pf.write_generic_csv(tmp_path, _lines("OK"), name="alpha-prices.csv")
    assert import_file(store, good, Options(), None)["status"] == "imported"
    asyncio.run(search.SearchIndexer(store).catch_up())
    before = (
        _count(store, "SELECT count(*) FROM vendor_costs"),
        _count(store, f"SELECT count(*) FROM {search.KEYS}"),
        _count(store, f"SELECT count(*) FROM {search.TABLE}"),
    )
    lines = _lines("BAD")
    lines[ROWS - 3] = pf.PriceLine("BAD-LATE", None, "A bad row near the end", D("-1.00"))
    bad = pf.write_generic_csv(tmp_path, lines, name="beta-prices.csv")
    record = import_file(store, bad, Options(), None)
    assert record["status"] == "failed"
    assert [e["row"] for e in record["errors"]] == [ROWS - 1]  # header is row 1
    asyncio.run(search.SearchIndexer(store).catch_up())
    after = (
        _count(store, "SELECT count(*) FROM vendor_costs"),
        _count(store, f"SELECT count(*) FROM {search.KEYS}"),
        _count(store, f"SELECT count(*) FROM {search.TABLE}"),
    )
    assert after == before == (ROWS, ROWS, ROWS)
    assert store.read_sync(mappings._search, "bad000001", 5) == []


def test_unmatched_pages_are_the_same_through_the_vendor_index_or_by_id(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vendor with many rows is paged along the primary key, a rare one through its index:
    the same rows in the same order either way, every row once."""
    one = pf.write_generic_csv(tmp_path, _lines("ONE")[:300], name="alpha-prices.csv")
    two = pf.write_generic_csv(tmp_path, _lines("TWO")[:200], name="beta-prices.csv")
    first = import_file(store, one, Options(), None)
    second = import_file(store, two, Options(), None)

    def walk(**kw: Any) -> list[str]:
        out: list[str] = []
        before = None
        while True:
            page = store.read_sync(
                lambda c, b=before: queries.unmatched_rows(c, 64, before=b, **kw)
            )
            out += [r.sku for r in page]
            if len(page) < 64:
                return out
            before = page[-1].id

    rare = walk(vendor=first["vendor"])
    monkeypatch.setattr(queries, "COMMON", 10)
    common = walk(vendor=first["vendor"])
    assert rare == common
    assert len(common) == len(set(common)) == 300
    assert common[0] == "ONE000299" and common[-1] == "ONE000000"  # newest row first
    assert {s[:3] for s in walk(import_id=second["id"])} == {"TWO"}
    assert len(walk()) == 500


@pytest.mark.parametrize("reader", ["in the daemon", "in a reader process"])
def test_every_stored_cost_is_the_files_decimal_exactly(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    if reader == "in a reader process":  # as a big file is read: sent as integer units
        monkeypatch.setenv("COSTRECON_READER_MIN_BYTES", "0")
    costs = ["0.0001", "1234567.8912", "99999999.9999", "0.1", "19.99", "74.3449", "1,189.0000"]
    path = tmp_path / "exact-prices.csv"
    path.write_text(
        "Part Number,Description,Unit Cost,Currency\r\n"
        + "".join(f'EX-{n},Exact {n},"{c}",USD\r\n' for n, c in enumerate(costs)),
        encoding="utf-8",
    )
    assert import_file(store, path, Options(), None)["status"] == "imported"
    stored = store.read_sync(
        lambda c: dict(c.execute(select(VendorCost.sku, VendorCost.cost)).all())
    )
    assert stored == {f"EX-{n}": D(c.replace(",", "")) for n, c in enumerate(costs)}
    units = store.read_sync(
        lambda c: dict(c.execute(text("SELECT sku, cost FROM vendor_costs")).all())
    )
    assert units["EX-2"] == 999_999_999_999 and units["EX-0"] == 1  # integer ten-thousandths


def test_after_a_sync_new_catalogue_items_match_rows_a_chunk_at_a_time(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-matching after a sync reads the unmatched rows in keyset chunks (never all at once), and
    is skipped when the sync left the catalogue as it was."""
    from costrecon_daemon.costs.table import CostTable
    from costrecon_daemon.db import CatalogItem
    from costrecon_daemon.intake import rematch

    path = pf.write_generic_csv(tmp_path, _lines(), name="distributor-prices.csv")
    import_file(store, path, Options(), None)
    table = CostTable()
    store.write_sync(table.reload)
    cache = rematch.MatcherCache(store, table)
    monkeypatch.setattr(rematch, "REMATCH_CHUNK", 300)
    reads: list[int] = []
    real = rematch._unmatched_after

    def counted(conn: Any, last: int, limit: int) -> list[Any]:
        got = real(conn, last, limit)
        reads.append(len(got))
        return got

    monkeypatch.setattr(rematch, "_unmatched_after", counted)

    async def scenario() -> tuple[dict[str, int], dict[str, int]]:
        await cache.after_sync()  # the first sync after start: every row is looked at
        first = await cache.counts()
        store.write_sync(
            lambda c: c.execute(
                CatalogItem.__table__.insert().values(
                    id=7, psa_id="p7", identifier="FIREBOX-T45", name="WatchGuard Firebox T45",
                    cost=D("600"), currency="USD", vendor_sku="DST-WATCHGUARD-T45",
                )
            )
        )  # fmt: skip
        await cache.after_sync()
        return first, await cache.counts()

    first, after = asyncio.run(scenario())
    assert max(reads) <= 300 and sum(reads) == 2 * ROWS
    assert first == {"vendor_costs": ROWS, "unmatched": ROWS}
    assert after == {"vendor_costs": ROWS, "unmatched": ROWS - 1}
    matched = store.read_sync(
        lambda c: c.execute(
            select(VendorCost.sku, VendorCost.match_method).where(VendorCost.item_id == 7)
        ).all()
    )
    assert [tuple(r) for r in matched] == [("DST-WATCHGUARD-T45", "vendor_sku")]

    reads.clear()
    asyncio.run(cache.after_sync())  # the same catalogue again: nothing to re-match
    assert reads == []


def test_a_name_search_leaves_the_readers_transaction_as_it_was(
    store: Store, tmp_path: Path
) -> None:
    """The name query's time budget (a progress handler on SQLite, a statement timeout in a
    savepoint on PostgreSQL) ends with the query: later statements in the same read run as
    before."""
    path = pf.write_generic_csv(tmp_path, _lines(), name="distributor-prices.csv")
    import_file(store, path, Options(), None)
    asyncio.run(search.SearchIndexer(store).catch_up())

    def read(conn: Any) -> tuple[Any, Any, int]:
        pg = conn.dialect.name == "postgresql"
        before = conn.exec_driver_sql("SHOW statement_timeout").scalar() if pg else None
        found = mappings._search(conn, "widget number", 5)
        after = conn.exec_driver_sql("SHOW statement_timeout").scalar() if pg else None
        assert found and all("Widget" in c["description"] for c in found)
        return before, after, conn.execute(select(func.count()).select_from(VendorCost)).scalar()

    before, after, rows = store.read_sync(read)
    assert before == after and rows == ROWS


def test_an_unmatched_page_works_out_a_screenful_of_suggestions_and_the_rest_when_asked(
    store: Store, tmp_path: Path
) -> None:
    """Suggestions cost time per row and catalogue item: a page works out those of its first
    ``suggest`` rows not known yet and leaves the rest null (never an empty list, which means
    "none"); the rows' ids then give theirs, and a page asked again carries on."""
    from costrecon_daemon.costs.table import CostTable
    from costrecon_daemon.db import CatalogItem
    from costrecon_daemon.intake import rematch
    from costrecon_daemon.intake.mappings import Mappings

    store.write_sync(
        lambda c: c.execute(
            CatalogItem.__table__.insert().values(
                id=7, psa_id="p7", identifier="WIDGET", name="Widget number",
                cost=D("3"), currency="USD",
            )
        )
    )  # fmt: skip
    path = pf.write_generic_csv(tmp_path, _lines()[:10], name="distributor-prices.csv")
    import_file(store, path, Options(), None)
    table = CostTable()
    service = Mappings(store, rematch.MatcherCache(store, table), table)

    def pending(page: list[dict[str, Any]]) -> list[bool]:
        return [r["suggestions"] is None for r in page]

    first = asyncio.run(service.unmatched(10, suggest=3))
    assert pending(first) == [False] * 3 + [True] * 7
    assert first[0]["suggestions"][0]["identifier"] == "WIDGET"
    second = asyncio.run(service.unmatched(10, suggest=3))
    assert pending(second) == [False] * 6 + [True] * 4
    assert [r["vendor_cost_id"] for r in second] == [r["vendor_cost_id"] for r in first]

    asked = [r["vendor_cost_id"] for r in second[8:]] + [10**9]  # the last is no vendor row
    answered = asyncio.run(service.suggestions(asked))
    assert [r["vendor_cost_id"] for r in answered] == asked[:2]
    assert all(r["suggestions"][0]["identifier"] == "WIDGET" for r in answered)
    third = asyncio.run(service.unmatched(10, suggest=0))
    assert pending(third) == [False] * 6 + [True] * 2 + [False] * 2
    assert third[9]["suggestions"] == answered[1]["suggestions"]


def test_an_import_gives_the_daemons_writer_its_page_cache_back(
    store: Store, tmp_path: Path
) -> None:
    """The import raises the writer connection's page cache while it writes; that connection
    lives as long as the daemon, so the daemon's memory would otherwise keep the raised cache
    after every import (SQLite only: PostgreSQL has no per-connection page cache)."""
    if store.url.startswith("postgresql"):
        pytest.skip("SQLite's page cache")

    def cache_size() -> tuple[int, int]:
        # the page cache, and the WAL checkpoint interval the import raises too (IO, not RSS)
        return store.write_sync(
            lambda c: (
                int(c.exec_driver_sql("PRAGMA cache_size").scalar()),
                int(c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()),
            )
        )

    before = cache_size()
    path = pf.write_generic_csv(tmp_path, _lines(), name="distributor-prices.csv")
    assert import_file(store, path, Options(), None)["status"] == "imported"
    assert cache_size() == before
    lines = _lines("BAD")
    lines[ROWS - 3] = pf.PriceLine("BAD-LATE", None, "A bad row near the end", D("-1.00"))
    bad = pf.write_generic_csv(tmp_path, lines, name="beta-prices.csv")
    assert import_file(store, bad, Options(), None)["status"] == "failed"
    assert cache_size() == before
