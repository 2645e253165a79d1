"""Big price files are read in a reader process (issue 15): the daemon only receives and inserts.
Real daemon, real inbox; the reader process is forced for small files by its size threshold
(COSTRECON_READER_MIN_BYTES=0), and made to die by its test-only fault switch."""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from . import pricefiles as pf
from .psa_fixtures import cw_daemon, msp_tenant, rows_by_identifier
from .test_intake import assert_failed_with_report, imports, inbox_of, wait_import

D = Decimal
FILLER = 45_000  # more than two of the reader's chunks (20,000 rows)


def filler(n: int) -> list[pf.PriceLine]:
    # Costs above 999 are written with thousands separators ("1,189.89").
    return [
        pf.PriceLine(f"FILL-{i:06d}", f"MPN{i:06d}", f"Filler item {i}", D(f"{i}.{i % 100:02d}"))
        for i in range(n)
    ]


def _vendor_rows(store: Any) -> int:
    return int(
        store.read_sync(lambda c: c.exec_driver_sql("SELECT count(*) FROM vendor_costs").scalar())
    )


def test_a_file_read_in_a_reader_process_is_imported_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("COSTRECON_READER_MIN_BYTES", "0")
    ds = msp_tenant(contracts=4)
    ds.items[2].mpn = "S1-CORE-01"
    lines = [
        *filler(FILLER // 2),
        pf.PriceLine("PAX-M365-BP-M", None, "Microsoft 365 Business Premium", D("21.40"),
                     term="P1M"),
        *filler(FILLER)[FILLER // 2 :],
        pf.PriceLine("ING-778899", "S1-CORE-01", "SentinelOne Core", D("4.05")),
    ]  # fmt: skip
    caplog.set_level(logging.INFO, logger="costrecon_daemon.intake.reading")
    with cw_daemon(tmp_path, ds) as (_sim, _served, d):
        pf.write_generic_csv(inbox_of(d), lines, name="pax8-prices.csv")
        record = wait_import(d, "pax8-prices.csv", timeout=120)
        assert record["status"] == "imported", record["message"]
        assert (record["rows_imported"], record["rows_matched"]) == (FILLER + 2, 2)
        assert record["vendor"] == "Pax8"
        assert any("pax8-prices.csv in a reader process" in r.message for r in caplog.records)

        rows = rows_by_identifier(d)
        bp, edr = rows["M365-BP-M"], rows["EDR-S1-CORE"]
        assert bp["vendor_cost"] == "21.4000"
        assert (bp["vendor_source"]["file"], bp["vendor_source"]["row"]) == (
            "pax8-prices.csv",
            FILLER // 2 + 2,
        )
        assert edr["vendor_cost"] == "4.0500" and edr["vendor_source"]["row"] == FILLER + 3
        status = d.get("/v1/status")["counts"]
        assert (status["vendor_costs"], status["unmatched"]) == (FILLER + 2, FILLER)

        page = d.get("/v1/unmatched", params={"limit": 500})["rows"]
        assert len(page) == 500
        for row in page:
            i = int(row["sku"][5:])
            line = 2 + i if i < FILLER // 2 else 3 + i
            assert (row["cost"], row["row"], row["mpn"], row["vendor"]) == (
                f"{i}.{i % 100:02d}00",
                line,
                f"MPN{i:06d}",
                "Pax8",
            )
        assert not [i for i in imports(d) if i["status"] == "importing"]


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("exit", "the reader was killed (SIGKILL)"),
        ("hog", "the reader ran out of memory (its limit is 256 MB)"),
    ],
)
def test_a_reader_process_that_dies_fails_the_file_and_leaves_nothing_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, said: str
) -> None:
    monkeypatch.setenv("COSTRECON_READER_MIN_BYTES", "0")
    monkeypatch.setenv("COSTRECON_READER_MEMORY_MB", "256")
    monkeypatch.setenv("COSTRECON_READER_FAULT", fault)
    with cw_daemon(tmp_path, msp_tenant(contracts=2)) as (_sim, _served, d):
        inbox = inbox_of(d)
        pf.write_generic_csv(inbox, filler(FILLER), name="doomed-prices.csv")
        record = wait_import(d, "doomed-prices.csv", timeout=120)
        report = assert_failed_with_report(d, record, "could not be read", said)
        assert "Traceback" not in report
        assert record["message"] == (
            f"doomed-prices.csv could not be read: {said}; nothing from it was imported. It may "
            "be a damaged or malicious file: export the price list again."
        )
        # The rows of the chunks sent before it died were staged: all taken back.
        assert d.get("/v1/status")["counts"]["vendor_costs"] == 0
        assert [i["status"] for i in imports(d)] == ["failed"]

        # The importer is not wedged: the next file is read (by a healthy reader) and imported.
        monkeypatch.delenv("COSTRECON_READER_FAULT")
        pf.write_generic_csv(inbox, filler(100), name="next-prices.csv")
        after = wait_import(d, "next-prices.csv", timeout=60)
        assert after["status"] == "imported" and after["rows_imported"] == 100
        assert d.get("/v1/status")["counts"]["vendor_costs"] == 100


def test_a_reader_process_error_names_every_bad_row_like_the_daemon_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row problems found in the reader process come back as the same sentences, all of them."""
    from costrecon_daemon.intake import Options, import_file
    from costrecon_daemon.store import Store

    from .harness import migrated

    url = f"sqlite:///{tmp_path / 'costrecon.db'}"
    migrated(url)
    store = Store(url)
    try:
        lines = filler(FILLER)
        path = pf.write_generic_csv(tmp_path, lines, name="bad.csv")
        text = path.read_text(encoding="utf-8").split("\n")
        text[1 + 7] = "FILL-000007,MPN000007,Filler item 7,,12.5x,USD,,,"
        text[1 + 44_998] = "FILL-044998,MPN044998,Filler item 44998,,-3,USD,,,"
        path.write_text("\n".join(text), encoding="utf-8")
        records = {}
        for where in ("daemon", "reader"):
            monkeypatch.setenv(
                "COSTRECON_READER_MIN_BYTES", "0" if where == "reader" else str(1 << 40)
            )
            records[where] = import_file(store, path, Options(), None)
        here, apart = records["daemon"], records["reader"]
        assert apart["status"] == "failed"
        assert apart["errors"] == here["errors"] and len(apart["errors"]) == 2
        assert re.search(r"row 45000, column Unit Cost: '-3' is negative", str(apart["errors"]))
        assert apart["message"] == here["message"]
        assert _vendor_rows(store) == 0  # nothing staged is left behind
    finally:
        store.close()


def test_a_matcher_sent_to_a_reader_process_matches_and_suggests_as_the_original() -> None:
    """Big files are matched in the reader process, with the daemon's matcher pickled to it."""
    import pickle

    from costrecon_daemon.vendors.matching import Mapping, Matcher

    from .test_matching import CATALOGUE, row

    matcher = Matcher(CATALOGUE, [Mapping("Ingram Micro", "ZZ-KEYS", None, 104)])
    rows = [
        row("8RT112"),  # vendor SKU
        row("X1", "818-D2UT#ABA", manufacturer="HP Inc."),  # MPN, normalised
        row("U6-PRO"),  # identifier
        row("zz-keys"),  # the saved mapping
        row("X2", "CFQ7TTC0LH18:0001", term="P1M", manufacturer="Microsoft"),  # term decides
        row("X3", "BR1500MS2", manufacturer="APC"),  # ambiguous
        row("NOPE", description="Logitech MX Keys"),  # no key: suggestions only
    ]
    before = matcher.match_all(rows)
    suggested = matcher.suggest(rows[-1])
    sent = pickle.loads(pickle.dumps(matcher))
    assert sent.match_all(rows) == before
    assert [m.item_id for m in before] == [101, 101, 103, 104, 110, None, None]
    assert before[5].candidates == (120, 121)
    assert sent.suggest(rows[-1]) == suggested and suggested[0].item_id == 104
    assert len(sent) == len(matcher) and sent.term_of(111) == "P1Y"


def test_a_reader_process_that_hangs_is_stopped_and_the_file_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from costrecon_daemon.intake import Options, import_file, reading
    from costrecon_daemon.store import Store

    from .harness import migrated

    monkeypatch.setenv("COSTRECON_READER_MIN_BYTES", "0")
    monkeypatch.setenv("COSTRECON_READER_FAULT", "hang")
    monkeypatch.setattr(reading, "SILENCE_SECONDS", 2.0)
    url = f"sqlite:///{tmp_path / 'costrecon.db'}"
    migrated(url)
    store = Store(url)
    try:
        path = pf.write_generic_csv(tmp_path, filler(FILLER), name="stuck.csv")
        record = import_file(store, path, Options(), None)
        assert record["status"] == "failed"
        assert record["message"].startswith(
            "stuck.csv could not be read: the reader stopped responding for 2 s and was stopped"
        )
        counts = store.read_sync(
            lambda c: c.exec_driver_sql(
                "SELECT (SELECT count(*) FROM vendor_costs), (SELECT group_concat(status) "
                "FROM price_imports)"
            ).one()
        )
        assert tuple(counts) == (0, "failed")
    finally:
        store.close()


@pytest.mark.parametrize("where", ["reader", "daemon"])
def test_a_cost_too_large_for_the_database_fails_the_file_and_is_never_rounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Both reads hand SQLite costs as JSON integers; one past 64 bits would reach it as a
    float, so the file fails instead."""
    from costrecon_daemon.intake import Options, import_file
    from costrecon_daemon.store import Store

    from .harness import migrated

    monkeypatch.setenv("COSTRECON_READER_MIN_BYTES", "0" if where == "reader" else str(1 << 40))
    url = f"sqlite:///{tmp_path / 'costrecon.db'}"
    migrated(url)
    store = Store(url)
    try:
        path = tmp_path / "huge-prices.csv"
        path.write_text(
            "Part Number,Description,Unit Cost,Currency\r\n"
            "OK-1,Fine,19.99,USD\r\nBIG-1,Too big,1000000000000000.00,USD\r\n",
            encoding="utf-8",
        )
        record = import_file(store, path, Options(), None)
        assert record["status"] == "failed"
        assert record["message"] == (
            "huge-prices.csv has a cost too large to store (beyond 922 trillion); check the "
            "cost column."
        )
        assert _vendor_rows(store) == 0  # nothing staged is left behind
    finally:
        store.close()
