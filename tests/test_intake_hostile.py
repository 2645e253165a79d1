"""Hostile and clumsy files in the inbox, with a real daemon process (issue 13 items 1, 3, 12):
links out of the inbox are never followed, a file that killed the daemon is set aside at the next
start, a bomb fails into failed/ with a reason, a file that changes after its import is reported."""

from __future__ import annotations

import getpass
import json
import os
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest

from . import pricefiles as pf
from .harness import DaemonProcess
from .test_intake import assert_failed_with_report, imports, inbox_of, wait_import

# Real daemon processes (one killed mid-import, one that must live through a bomb): slow tier.
pytestmark = pytest.mark.slow

D = Decimal
SECRET = "TOPSECRET-ROW"


def daemon_dir(tmp_path: Path) -> Path:
    d = tmp_path / "d"
    d.mkdir(exist_ok=True)
    return d


def secret_price_file(directory: Path) -> Path:
    """A 0600 price file outside the inbox whose cells must never be echoed anywhere."""
    lines = [
        pf.PriceLine(f"{SECRET}-{i}", None, f"{SECRET} description", D("-1")) for i in range(3)
    ]
    path = pf.write_generic_csv(directory, lines, name="private.csv")
    path.chmod(0o600)
    return path


def assert_nothing_echoed(d: DaemonProcess, record: dict, report: str) -> None:
    assert SECRET not in report
    assert SECRET not in json.dumps(d.get(f"/v1/imports/{record['id']}"))
    assert SECRET not in json.dumps(d.get("/v1/activity", params={"limit": 500}))


def test_a_symlink_to_a_private_file_outside_the_inbox_is_refused_unread(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = secret_price_file(outside)
    with DaemonProcess(daemon_dir(tmp_path)) as d:
        inbox = inbox_of(d)
        (inbox / "prices.csv").symlink_to(target)
        record = wait_import(d, "prices.csv")
        report = assert_failed_with_report(d, record, "symbolic link")
        assert_nothing_echoed(d, record, report)
        assert record["rows_imported"] == 0
        assert d.get(f"/v1/imports/{record['id']}")["import"]["actor"] == getpass.getuser()
        assert target.read_text().count(SECRET) == 6  # the target itself is untouched
        assert Path(record["final_path"]).is_symlink()  # the link moved, not its target


def test_a_hard_link_to_a_file_outside_the_inbox_is_refused_unread(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = secret_price_file(outside)
    with DaemonProcess(daemon_dir(tmp_path)) as d:
        inbox = inbox_of(d)
        os.link(target, inbox / "linked.csv")
        record = wait_import(d, "linked.csv")
        report = assert_failed_with_report(d, record, "hard link")
        assert_nothing_echoed(d, record, report)


def test_a_zip_bomb_in_the_inbox_fails_with_a_reason_and_the_daemon_lives(tmp_path):
    with DaemonProcess(daemon_dir(tmp_path)) as d:
        inbox = inbox_of(d)
        bomb = pf.write_zip_bomb_csv(tmp_path, gib=4)
        os.replace(bomb, inbox / "prices.zip")
        record = wait_import(d, "prices.zip", timeout=60)
        assert_failed_with_report(d, record, "was refused", "PRICES.CSV")
        assert d.get("/v1/status")["counts"]["vendor_costs"] == 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_file_that_killed_the_daemon_mid_import_is_set_aside_at_the_next_start(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("COSTRECON_READER_MIN_BYTES", str(1 << 20))  # read in a reader process
    lines = [pf.PriceLine(f"BIG{i:07d}", None, f"Item {i}", D("12.50")) for i in range(300_000)]
    source = pf.write_generic_csv(tmp_path, lines, name="huge.csv")
    d = DaemonProcess(daemon_dir(tmp_path), {"inbox": {"rescan_seconds": 0.5}}).start()
    try:
        inbox = inbox_of(d)
        marker = d.state / "intake-in-progress.json"
        os.replace(source, inbox / "huge.csv")
        d.wait_for(marker.exists, 60, "the import to start")
        # A file this big is read by a reader process: it dies with the daemon.
        found = d.wait_for(
            lambda: re.search(r"huge\.csv in a reader process \(pid (\d+)\)", d.out.read_text()),
            60,
            "the reader process",
        )
        reader = int(found.group(1))
        d.kill9()  # what the OOM killer does
        assert (inbox / "huge.csv").exists()
        d.wait_for(lambda: not _alive(reader), 30, "the reader process to die with the daemon")
        d.start()
        record = wait_import(d, "huge.csv")
        assert_failed_with_report(d, record, "stopped while importing huge.csv", "set aside")
        assert not marker.exists()
        time.sleep(1.5)  # three rescans have run: the file is not tried again
        assert [i["file_name"] for i in imports(d)].count("huge.csv") == 1
        assert d.get("/v1/status")["counts"]["vendor_costs"] == 0
    finally:
        d.stop()


def test_a_file_the_writer_reopens_and_appends_after_import_is_reported_loudly(tmp_path):
    """A writer that closes the file between appends (1.5 s gaps, stable_seconds 0.5): the first
    part is imported; what it appends after that must not pass silently."""
    with DaemonProcess(daemon_dir(tmp_path), {"inbox": {"stable_seconds": 0.5}}) as d:
        inbox = inbox_of(d)
        lines = [pf.PriceLine(f"APP{i:04d}", None, f"Item {i}", D("3.25")) for i in range(60)]
        data = pf.write_generic_csv(tmp_path, lines, name="source.csv").read_bytes()
        cuts = [data.index(b"\n", len(data) * k // 3) + 1 for k in (1, 2)] + [len(data)]
        start = 0
        for cut in cuts:
            with (inbox / "appended.csv").open("ab") as fh:
                fh.write(data[start:cut])
            start = cut
            time.sleep(1.5)

        def flagged():
            first = min(
                (
                    i
                    for i in imports(d)
                    if i["file_name"] == "appended.csv" and i["status"] == "imported"
                ),
                key=lambda i: i["id"],
                default=None,
            )
            return first if first and first["changed_after_import"] else None

        record = d.wait_for(flagged, 30, "the changed-after-import report")
        assert record["message"].startswith("Changed after import")
        changed = d.get("/v1/activity", params={"action": "import.changed"})["entries"]
        assert changed and changed[0]["details"]["import_id"] == record["id"]
