"""The watched folder with a real daemon process: real files dropped into its inbox (DESIGN.md §3
"The watched folder never loses a file", "Vendor costs have provenance")."""

from __future__ import annotations

import getpass
import os
import shutil
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costrecon_daemon.config import ConfigError, load_config

from . import pricefiles as pf
from .harness import DaemonProcess, ThreadedDaemon, write_config
from .psa_fixtures import cw_daemon, msp_tenant, rows_by_identifier

D = Decimal
ME = getpass.getuser()


# ------------------------------------------------------------------------------------ helpers


def imports(d: DaemonProcess) -> list[dict[str, Any]]:
    return d.get("/v1/imports", params={"limit": 5000})["imports"]


def wait_import(d: DaemonProcess, name: str, count: int = 1, timeout: float = 30) -> dict[str, Any]:
    """The newest import record of ``name`` once ``count`` records of it exist."""

    def found() -> Any:
        mine = [i for i in imports(d) if i["file_name"] == name]
        return mine[0] if len(mine) >= count else None

    return d.wait_for(found, timeout, f"import of {name}")


def detail(d: DaemonProcess, import_id: int) -> dict[str, Any]:
    return d.get(f"/v1/imports/{import_id}")["import"]


def unmatched_of(d: DaemonProcess, file_name: str) -> dict[str, dict[str, Any]]:
    rows = d.get("/v1/unmatched", params={"limit": 2000})["rows"]
    return {r["sku"]: r for r in rows if r["file"] == file_name}


def counts(d: DaemonProcess) -> dict[str, int]:
    return d.get("/v1/status")["counts"]


def inbox_of(d: DaemonProcess) -> Path:
    inbox = d.state / "inbox"
    d.wait_for(inbox.is_dir, 10, "the inbox")
    return inbox


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One daemon for the per-format tests (each drops its own file names)."""
    with ThreadedDaemon(tmp_path_factory.mktemp("intake")) as d:
        inbox_of(d)
        yield d


def assert_failed_with_report(d: DaemonProcess, record: dict[str, Any], *words: str) -> str:
    assert record["status"] == "failed", record
    final = Path(record["final_path"])
    assert final.parent == d.state / "failed"
    # The file is moved, then its report written, just after the outcome is committed (and so
    # listed): wait for the report, the last step, rather than race the move.
    errors_txt = final.with_name(final.name + ".errors.txt")
    d.wait_for(errors_txt.exists, 30, f"the report of {final.name}")
    assert final.exists()
    report = errors_txt.read_text()
    for w in words:
        assert w in report, report
    assert not (d.state / "inbox" / record["file_name"]).exists()
    return report


# ------------------------------------------------------------------------- files being written


def test_a_file_copied_slowly_in_chunks_is_imported_once_and_complete(shared, tmp_path):
    """Two copies that pause longer than stable_seconds (0.3 s): one holds the file open and breaks
    at line ends (caught by the open-for-writing check), the other reopens it per chunk and breaks
    mid-line (caught by the missing final newline)."""
    inbox = inbox_of(shared)
    lines = [
        pf.PriceLine(f"SLOW{i:04d}", None, f"Slow item {i}", D(f"{10 + i}.25")) for i in range(400)
    ]
    data = pf.write_generic_csv(tmp_path, lines, name="slow-source.csv").read_bytes()
    other = pf.write_eu_csv(tmp_path, lines, name="slow-other.csv").read_bytes()

    def copy_holding_open() -> None:
        cuts = [data.index(b"\n", len(data) * k // 5) + 1 for k in range(1, 5)] + [len(data)]
        with (inbox / "slow-open.csv").open("wb") as fh:
            start = 0
            for cut in cuts:
                fh.write(data[start:cut])
                fh.flush()
                start = cut
                time.sleep(0.6)

    def copy_reopening() -> None:
        step = len(other) // 5 + 7  # not at line ends
        for start in range(0, len(other), step):
            with (inbox / "slow-append.csv").open("ab") as fh:
                fh.write(other[start : start + step])
            time.sleep(0.6)

    writers = [threading.Thread(target=copy_holding_open), threading.Thread(target=copy_reopening)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    for name in ("slow-open.csv", "slow-append.csv"):
        record = wait_import(shared, name)
        assert record["status"] == "imported", record
        assert record["rows_imported"] == record["rows_total"] == 400
    # Settled rather than a second's sleep: both files have left the inbox and none is tracked,
    # so no second import of either can still come.
    shared.wait_for(
        lambda: (
            not any(inbox.glob("slow-*.csv")) and shared.get("/v1/status")["inbox"]["pending"] == 0
        ),
        30,
        "the inbox to settle",
    )
    names = [i["file_name"] for i in imports(shared)]
    assert names.count("slow-open.csv") == 1 and names.count("slow-append.csv") == 1


def test_a_file_uploaded_as_part_is_taken_only_under_its_final_name(shared):
    inbox = inbox_of(shared)
    part = inbox / "renamed-prices.csv.part"
    text = pf.write_generic_csv(inbox, pf.SAMPLE_HARDWARE, name=".staging").read_bytes()
    (inbox / ".staging").unlink()
    part.write_bytes(text[: len(text) // 2])
    time.sleep(1.0)  # longer than stable_seconds: a .part file is still never taken
    part.write_bytes(text)
    os.replace(part, inbox / "renamed-prices.csv")
    record = wait_import(shared, "renamed-prices.csv")
    assert record["status"] == "imported" and record["rows_imported"] == len(pf.SAMPLE_HARDWARE)
    assert not any(i["file_name"].endswith(".part") for i in imports(shared))


def test_the_same_file_twice_is_recorded_as_duplicate_and_not_imported_again(shared, tmp_path):
    inbox = inbox_of(shared)
    source = pf.write_generic_csv(tmp_path, pf.SAMPLE_HARDWARE[:3], name="twice.csv")
    shutil.copy(source, inbox / "twice.csv")
    first = wait_import(shared, "twice.csv")
    assert first["status"] == "imported"
    before = counts(shared)["vendor_costs"]
    shutil.copy(source, inbox / "twice.csv")
    second = wait_import(shared, "twice.csv", count=2)
    assert second["status"] == "duplicate" and second["rows_imported"] == 0
    assert f"import #{first['id']}" in second["message"]
    assert counts(shared)["vendor_costs"] == before
    # both files are kept, neither overwrites the other
    assert Path(first["final_path"]).exists() and Path(second["final_path"]).exists()
    assert Path(second["final_path"]).name == "twice (2).csv"
    acts = shared.get("/v1/activity", params={"subject": "twice.csv"})["entries"]
    assert [a["action"] for a in acts] == ["import.duplicate", "import.processed"]


# ------------------------------------------------------------------------------------ formats


def test_an_eu_semicolon_decimal_comma_file_with_bom_is_imported(shared):
    pf.write_eu_csv(inbox_of(shared), pf.SAMPLE_HARDWARE, name="preisliste-eu.csv")
    record = wait_import(shared, "preisliste-eu.csv")
    assert record["status"] == "imported" and record["rows_imported"] == 8
    rows = unmatched_of(shared, "preisliste-eu.csv")
    assert rows["8RT112"]["cost"] == "1189.0000" and rows["2GH018"]["cost"] == "74.3400"
    assert rows["8RT112"]["row"] == 2


def test_a_cp1252_file_with_currency_symbols_is_imported(shared):
    lines = pf.with_currency(pf.SAMPLE_HARDWARE, "EUR")
    pf.write_cp1252_csv(inbox_of(shared), lines, name="uk-eu-cp1252.csv")
    record = wait_import(shared, "uk-eu-cp1252.csv")
    assert record["status"] == "imported", record
    rows = unmatched_of(shared, "uk-eu-cp1252.csv")
    assert rows["8RT112"]["cost"] == "1189.0000" and rows["8RT112"]["currency"] == "EUR"


def test_a_utf16_tab_separated_file_is_imported(shared):
    pf.write_utf16_tab(inbox_of(shared), pf.SAMPLE_HARDWARE, name="unicode-tab.txt")
    record = wait_import(shared, "unicode-tab.txt")
    assert record["status"] == "imported" and record["rows_imported"] == 8
    assert unmatched_of(shared, "unicode-tab.txt")["0071234"]["cost"] == "149.0000"


def test_an_xlsx_workbook_is_imported(shared):
    pf.write_xlsx(inbox_of(shared), pf.SAMPLE_HARDWARE, name="workbook-prices.xlsx")
    record = wait_import(shared, "workbook-prices.xlsx")
    assert record["status"] == "imported" and record["rows_imported"] == 8
    row = unmatched_of(shared, "workbook-prices.xlsx")["1LK774"]
    assert row["cost"] == "412.5000" and row["row"] == 7 and row["mpn"] == "MR36-HW"


# ---------------------------------------------------------------------------------- bad files


def test_a_truncated_xlsx_fails_into_failed_with_a_report(shared):
    before = counts(shared)["vendor_costs"]
    pf.write_truncated_xlsx(inbox_of(shared), pf.SAMPLE_HARDWARE, name="cut-short.xlsx")
    record = wait_import(shared, "cut-short.xlsx")
    assert_failed_with_report(shared, record, "cut-short.xlsx", "partly copied")
    assert counts(shared)["vendor_costs"] == before


def test_an_empty_file_fails_into_failed_with_a_report(shared):
    pf.write_empty(inbox_of(shared), name="nothing.csv")
    record = wait_import(shared, "nothing.csv")
    assert_failed_with_report(shared, record, "nothing.csv is empty")


def test_a_binary_file_named_csv_fails_into_failed_with_a_report(shared):
    pf.write_binary_csv(inbox_of(shared), name="really-a-png.csv")
    record = wait_import(shared, "really-a-png.csv")
    assert_failed_with_report(shared, record, "binary data")
    acts = shared.get("/v1/activity", params={"subject": "really-a-png.csv"})["entries"]
    assert acts[0]["action"] == "import.failed" and acts[0]["actor"] == ME
    assert "binary data" in acts[0]["details"]["reason"]


def test_negative_and_non_numeric_costs_reject_the_whole_file_naming_each_row(shared):
    before = counts(shared)["vendor_costs"]
    pf.write_bad_costs_csv(inbox_of(shared), pf.SAMPLE_HARDWARE, name="bad-costs.csv")
    record = wait_import(shared, "bad-costs.csv")
    report = assert_failed_with_report(
        shared,
        record,
        "row 3, column Cost",
        "negative",
        "row 4, column Cost",
        "'12,5x' is not a number",
        "row 5, column Cost",
        "row 6, column SKU",
    )
    assert "Nothing from this file was imported" in report
    assert record["rows_imported"] == 0 and record["rows_total"] == 8
    errors = detail(shared, record["id"])["errors"]
    assert [(e["row"], e["column"]) for e in errors] == [
        (3, "Cost"),
        (4, "Cost"),
        (5, "Cost"),
        (6, "SKU"),
    ]
    assert counts(shared)["vendor_costs"] == before  # not one row of the good ones either
    assert unmatched_of(shared, "bad-costs.csv") == {}


def test_api_rejects_bad_ids_and_unknown_imports(shared):
    assert shared.request("GET", "/v1/imports/999999").status_code == 404
    r = shared.request("GET", "/v1/imports/abc")
    assert r.status_code == 400 and "import id" in r.json()["error"]["message"]
    assert shared.request("DELETE", "/v1/mappings/424242").status_code == 404
    status = shared.get("/v1/status")
    assert status["inbox"]["path"] == str(shared.state / "inbox")
    assert isinstance(status["inbox"]["pending"], int) and "unmatched" in status["counts"]


# --------------------------------------------------------------------------- restart and bursts


def test_files_dropped_while_the_daemon_was_down_are_imported_at_start(tmp_path):
    d = ThreadedDaemon(tmp_path).start()
    inbox = inbox_of(d)
    pf.write_generic_csv(inbox, pf.SAMPLE_HARDWARE[:2], name="before-stop.csv")
    done = wait_import(d, "before-stop.csv")
    d.stop()

    pf.write_generic_csv(inbox, pf.SAMPLE_HARDWARE[2:5], name="while-down.csv")
    pf.write_xlsx(inbox, pf.SAMPLE_HARDWARE[5:], name="while-down.xlsx")
    # The daemon died after committing before-stop.csv but before moving it: it is back in the
    # inbox and not in processed/.
    shutil.move(done["final_path"], inbox / "before-stop.csv")
    d.start()
    try:
        assert wait_import(d, "while-down.csv")["rows_imported"] == 3
        assert wait_import(d, "while-down.xlsx")["rows_imported"] == 3
        d.wait_for(lambda: Path(done["final_path"]).exists(), 20, "the interrupted move")
        assert [i["file_name"] for i in imports(d)].count(
            "before-stop.csv"
        ) == 1  # not imported twice
        assert counts(d)["vendor_costs"] == 8
        assert sorted(os.listdir(inbox)) == []
        moved = d.get("/v1/activity", params={"action": "import.moved"})["entries"]
        assert moved and moved[0]["details"]["import_id"] == done["id"]
    finally:
        d.stop()


def test_a_burst_of_a_hundred_files_is_processed_exactly_once(tmp_path):
    with ThreadedDaemon(tmp_path) as d:
        inbox = inbox_of(d)
        for n in range(100):
            lines = [
                pf.PriceLine(f"B{n:03d}-{k}", None, f"Burst {n} item {k}", D(f"{n}.{k}5"))
                for k in range(2)
            ]
            pf.write_generic_csv(inbox, lines, name=f"burst-{n:03d}.csv")
        d.wait_for(lambda: len(imports(d)) >= 100, 60, "100 imports")
        # Settled rather than a second's sleep: nothing left in the inbox and nothing tracked,
        # so no further import (a duplicate) can still come.
        d.wait_for(
            lambda: not os.listdir(inbox) and d.get("/v1/status")["inbox"]["pending"] == 0,
            30,
            "the inbox to settle",
        )
        records = imports(d)
        assert len(records) == 100
        assert sorted(r["file_name"] for r in records) == [f"burst-{n:03d}.csv" for n in range(100)]
        assert {r["status"] for r in records} == {"imported"}
        assert counts(d)["vendor_costs"] == 200
        assert os.listdir(inbox) == []
        day = next((d.state / "processed").iterdir())
        assert len(os.listdir(day)) == 100
        assert d.get("/v1/status")["inbox"]["pending"] == 0


# ---------------------------------------------------------------------------- matching + mappings


def test_imported_costs_match_the_catalogue_and_a_mapping_applies_at_once(tmp_path):
    ds = msp_tenant(contracts=4)
    ds.items[2].mpn = "S1-CORE-01"  # EDR-S1-CORE: matched by manufacturer part number
    lines = [
        pf.PriceLine(
            "PAX-M365-BP-M", None, "Microsoft 365 Business Premium", D("21.40"), term="P1M"
        ),
        pf.PriceLine("ING-778899", "S1-CORE-01", "SentinelOne Core", D("4.05")),
        pf.PriceLine("ZZ-DNSF-1", None, "DNSFilter per device", D("1.09")),
    ]
    with cw_daemon(tmp_path, ds) as (_sim, _served, d):
        pf.write_generic_csv(inbox_of(d), lines, name="pax8-prices.csv")
        record = wait_import(d, "pax8-prices.csv")
        assert (
            record["status"] == "imported"
            and record["rows_matched"] == 2
            and record["vendor"] == "Pax8"
        )

        rows = rows_by_identifier(d)
        bp, edr = rows["M365-BP-M"], rows["EDR-S1-CORE"]
        assert bp["vendor_cost"] == "21.4000" and bp["change"] == "-0.6000"
        assert bp["vendor_source"]["kind"] == "import"
        assert (bp["vendor_source"]["file"], bp["vendor_source"]["row"]) == ("pax8-prices.csv", 2)
        assert edr["vendor_cost"] == "4.0500" and edr["vendor_source"]["row"] == 3
        assert rows["DNS-FILTER"]["vendor_cost"] is None

        unmatched = d.get("/v1/unmatched")["rows"]
        assert [u["sku"] for u in unmatched] == ["ZZ-DNSF-1"]
        u = unmatched[0]
        assert (u["vendor"], u["cost"], u["file"], u["row"]) == (
            "Pax8",
            "1.0900",
            "pax8-prices.csv",
            4,
        )
        assert u["suggestions"][0]["identifier"] == "DNS-FILTER"
        target = u["suggestions"][0]["item_id"]

        # bad input names the field; unknown items are 404
        for body, field in (
            ({"sku": "ZZ-DNSF-1", "item_id": target}, "vendor"),
            ({"vendor": "Pax8", "item_id": target}, "sku"),
            ({"vendor": "Pax8", "sku": "ZZ-DNSF-1"}, "item_id"),
            (
                {"vendor": "Pax8", "sku": "ZZ-DNSF-1", "term": "fortnightly", "item_id": target},
                "term",
            ),
        ):
            r = d.request("POST", "/v1/mappings", json=body)
            assert r.status_code == 400 and field in r.json()["error"]["message"], r.text
        r = d.request(
            "POST", "/v1/mappings", json={"vendor": "Pax8", "sku": "ZZ-DNSF-1", "item_id": 99999}
        )
        assert r.status_code == 404

        r = d.request(
            "POST",
            "/v1/mappings",
            json={"vendor": "Pax8", "sku": "ZZ-DNSF-1", "term": "", "item_id": target},
        )
        assert r.status_code == 201, r.text
        mapping = r.json()["mapping"]
        assert (mapping["identifier"], mapping["created_by"], mapping["term"]) == (
            "DNS-FILTER",
            ME,
            None,
        )
        # at once: no import, no sync in between
        dns = rows_by_identifier(d)["DNS-FILTER"]
        assert dns["vendor_cost"] == "1.0900" and dns["vendor_source"]["row"] == 4
        assert d.get("/v1/unmatched")["rows"] == []
        assert d.get("/v1/status")["counts"]["unmatched"] == 0
        assert [m["id"] for m in d.get("/v1/mappings")["mappings"]] == [mapping["id"]]
        dup = d.request(
            "POST", "/v1/mappings", json={"vendor": "pax8", "sku": "zz-dnsf-1", "item_id": target}
        )
        assert dup.status_code == 409

        assert d.request("DELETE", f"/v1/mappings/{mapping['id']}").status_code == 204
        assert rows_by_identifier(d)["DNS-FILTER"]["vendor_cost"] is None
        assert [u["sku"] for u in d.get("/v1/unmatched")["rows"]] == ["ZZ-DNSF-1"]
        assert d.request("DELETE", f"/v1/mappings/{mapping['id']}").status_code == 404

        acts = [
            (a["action"], a["actor"])
            for a in d.get("/v1/activity", params={"limit": 50})["entries"]
        ]
        assert ("mapping.create", ME) in acts and ("mapping.delete", ME) in acts
        assert ("import.processed", ME) in acts  # the file's owner


# ------------------------------------------------------------------------------------- config


def test_a_bad_profile_in_the_config_is_an_error_naming_file_and_key(tmp_path):
    path = write_config(tmp_path / "config.toml", {"profiles.acme": {"delimiter": ";"}})
    path.write_text(path.read_text() + 'columns = { sku = "Art.Nr" }\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert (
        str(path) in str(err.value)
        and "[profiles.acme]" in str(err.value)
        and "columns.cost" in str(err.value)
    )
    write_config(path, {"inbox": {"default_profile": "acmee"}})
    with pytest.raises(ConfigError, match="inbox.default_profile"):
        load_config(path, env={})
