"""Distributor-scale files through the real daemon (issue 15): memory stays bounded whatever the
file's size. Sampled RSS is asserted against a bound; no timing is asserted."""

from __future__ import annotations

import os
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from . import pricefiles as pf
from .harness import DaemonProcess, migrated
from .test_intake import inbox_of, wait_import

D = Decimal
ROWS = 300_000
# What streaming may add to the daemon's resting RSS for a file of any size: one chunk of rows,
# the matched rows, 8 bytes per row of repeat hashes, SQLite's page cache. The whole-file import
# held every row (~600 bytes each: 180 MB more for this file, 1.7 GB at 2M rows).
GROWTH_BOUND_MB = 100
PEAK_BOUND_MB = 250


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_a_300k_row_file_is_imported_with_memory_bounded(tmp_path: Path) -> None:
    lines = [
        pf.PriceLine(f"D{i:07d}", f"MPN-{i:07d}", f"Distributor item {i} with a longer name",
                     D(f"{i % 5000}.{i % 100:02d}"), manufacturer="Acme")
        for i in range(ROWS)
    ]  # fmt: skip
    source = pf.write_generic_csv(tmp_path, lines, name="big-distributor.csv")
    del lines
    (tmp_path / "d").mkdir()
    with DaemonProcess(tmp_path / "d") as d:
        assert d.proc is not None
        inbox = inbox_of(d)
        d.wait_for(lambda: d.get("/v1/status") is not None, 10, "the API")
        resting = rss_mb(d.proc.pid)
        peak = [resting]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(d.proc.pid))  # type: ignore[union-attr]
                done.wait(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            os.replace(source, inbox / "big-distributor.csv")
            record = wait_import(d, "big-distributor.csv", timeout=600)
        finally:
            done.set()
            sampler.join()
        assert record["status"] == "imported", record["message"]
        assert record["rows_imported"] == ROWS
        d.wait_for(lambda: d.get("/v1/status")["counts"]["vendor_costs"] == ROWS, 30, "the counts")
        assert peak[0] - resting <= GROWTH_BOUND_MB, (resting, peak[0])
        assert peak[0] <= PEAK_BOUND_MB, (resting, peak[0])


@pytest.mark.slow
def test_unmatched_rows_come_in_pages_filtered_by_file_or_vendor(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with DaemonProcess(tmp_path / "d") as d:
        inbox = inbox_of(d)
        first = [pf.PriceLine(f"ONE{i:03d}", None, f"One {i}", D("1.50")) for i in range(23)]
        second = [pf.PriceLine(f"TWO{i:03d}", None, f"Two {i}", D("2.50")) for i in range(17)]
        pf.write_generic_csv(inbox, first, name="alpha-prices.csv")
        one = wait_import(d, "alpha-prices.csv")
        pf.write_generic_csv(inbox, second, name="beta-prices.csv")
        two = wait_import(d, "beta-prices.csv")

        def pages(**params: object) -> list[list[dict]]:
            out, before = [], None
            while True:
                query = {"limit": 10, **params, **({"before": before} if before else {})}
                got = d.get("/v1/unmatched", params=query)
                out.append(got["rows"])
                before = got["before"]
                if before is None:
                    return out

        every = pages()
        assert [len(p) for p in every] == [10, 10, 10, 10, 0]
        skus = [r["sku"] for p in every for r in p]
        assert len(set(skus)) == 40
        assert skus[:17] == [f"TWO{i:03d}" for i in reversed(range(17))]  # newest file first
        only_one = [r for p in pages(import_id=one["id"]) for r in p]
        assert {r["file"] for r in only_one} == {"alpha-prices.csv"} and len(only_one) == 23
        by_vendor = [r for p in pages(vendor=two["vendor"]) for r in p]
        assert {r["sku"][:3] for r in by_vendor} == {"TWO"}


def test_old_imports_keep_only_their_matched_rows_beyond_the_retention(tmp_path: Path) -> None:
    from .psa_fixtures import cw_daemon, msp_tenant, rows_by_identifier

    (tmp_path / "d").mkdir()
    with cw_daemon(
        tmp_path / "d", msp_tenant(contracts=2), extra={"inbox": {"keep_imports": 2}}
    ) as (
        _sim,
        _served,
        d,
    ):
        inbox = inbox_of(d)
        ids = []
        for month in range(1, 5):
            lines = [
                pf.PriceLine("PAX-M365-BP-M", None, "Microsoft 365 BP", D(f"21.{month:02d}"),
                             term="P1M"),
                *(pf.PriceLine(f"NOPE-{i}", None, f"Other {i}", D(f"1.{month:02d}"))
                  for i in range(5)),
            ]  # fmt: skip
            name = f"pax8-prices-2026-{month:02d}.csv"
            pf.write_generic_csv(inbox, lines, name=name)
            record = wait_import(d, name)
            assert record["status"] == "imported" and record["rows_matched"] == 1
            ids.append(record["id"])

        def pruned() -> list[int] | None:
            acts = d.get("/v1/activity", params={"action": "import.pruned"})["entries"]
            got = sorted(a["details"]["import_id"] for a in acts)
            return got if len(got) == 2 else None

        assert d.wait_for(pruned, 30, "pruning") == ids[:2]
        # 4 matched rows (one per import, kept for provenance) + the newest 2 files' 5 unmatched
        d.wait_for(lambda: d.get("/v1/status")["counts"]["vendor_costs"] == 14, 30, "counts")
        unmatched = {(r["sku"], r["file"]) for r in d.get("/v1/unmatched")["rows"]}
        assert unmatched == {(f"NOPE-{i}", "pax8-prices-2026-04.csv") for i in range(5)}
        assert rows_by_identifier(d)["M365-BP-M"]["vendor_cost"] == "21.0400"


@pytest.mark.parametrize("where", ["in the daemon", "in a reader process"])
def test_a_sku_repeated_with_another_cost_fails_the_streamed_file_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Repeats are found without holding the file (one hash per row): identical repeats collapse,
    a repeat with another cost, however far apart, fails the whole file naming both rows. The
    same whether the daemon reads the file or a reader process does (big files: its hashes are
    salted differently from the daemon's)."""
    from sqlalchemy import text

    if where == "in a reader process":
        monkeypatch.setenv("COSTRECON_READER_MIN_BYTES", "0")

    from costrecon_daemon.intake import Options, import_file
    from costrecon_daemon.store import Store

    url = f"sqlite:///{tmp_path / 'costrecon.db'}"
    migrated(url)
    store = Store(url)
    try:
        lines = [pf.PriceLine(f"R{i:06d}", None, f"Item {i}", D("2.00")) for i in range(45_000)]
        same = [*lines, lines[10], lines[30_000]]  # identical repeats
        ok = import_file(
            store, pf.write_generic_csv(tmp_path, same, name="same.csv"), Options(), None
        )
        assert ok["status"] == "imported" and ok["rows_imported"] == 45_000

        clash = [*lines, pf.PriceLine("R000007", None, "Item 7", D("2.50"))]
        bad = import_file(
            store, pf.write_generic_csv(tmp_path, clash, name="clash.csv"), Options(), None
        )
        assert bad["status"] == "failed"
        assert [e["row"] for e in bad["errors"]] == [45_002]
        assert "row 9 says 2 USD, row 45002 says 2.5 USD" in bad["errors"][0]["message"]
        left = store.read_sync(
            lambda c: c.execute(
                text("SELECT count(*) FROM vendor_costs WHERE import_id = :i"), {"i": bad["id"]}
            ).scalar()
        )
        assert left == 0
        statuses = store.read_sync(
            lambda c: [
                r[0] for r in c.execute(text("SELECT status FROM price_imports ORDER BY id"))
            ]
        )
        assert statuses == ["imported", "failed"]
    finally:
        store.close()
