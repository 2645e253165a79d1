"""The activity log outside the daemon (issue 13 items 6 and 8): an export keeps a checkpoint that
later catches entries cut from the log's end, and the tail never prints a raw control character."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

from sqlalchemy import create_engine

from costrecon_daemon import activity

from .harness import ThreadedDaemon


def _append_raw(db: Path, **entry: str) -> None:
    """Append as a daemon would (the chain stays intact): the content is what is hostile."""
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            activity.append(conn, **entry)
    finally:
        engine.dispose()


def test_export_checkpoint_detects_entries_removed_from_the_end(tmp_path):
    d = ThreadedDaemon(tmp_path)
    db = d.state / "costrecon.db"
    try:
        d.start()
        d.stop()
        for n in range(5):
            _append_raw(db, actor="tech", action="cost.manual.set", subject=f"ITEM-{n}")
        d.start()
        export = tmp_path / "activity.csv"
        r = d.tui_cli("activity", "export", "--csv", str(export))
        assert r.returncode == 0, r.stderr
        cp_file = tmp_path / "activity.csv.checkpoint.json"
        checkpoint = json.loads(cp_file.read_text())
        rows = list(csv.DictReader(export.open()))
        assert rows and int(rows[-1]["id"]) == checkpoint["id"]
        assert str(cp_file) in r.stdout

        ok = d.tui_cli("activity", "verify", "--checkpoint", str(cp_file))
        assert ok.returncode == 0 and ok.stdout.startswith("Activity log intact"), ok.stdout
        d.stop()

        # Someone with write access to the database cuts the last entries: the chain that is
        # left is consistent, so only the checkpoint can tell.
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM activity WHERE id > ?", (checkpoint["id"] - 3,))
        d.start()
        plain = d.tui_cli("activity", "verify")
        against = d.tui_cli("activity", "verify", "--checkpoint", str(cp_file))
        assert against.returncode == 1, against.stdout + against.stderr
        assert "removed from the end" in against.stdout
        # Without the checkpoint the shortened chain is consistent: the reason exports keep one.
        assert plain.returncode == 0, plain.stdout
    finally:
        if d.running:
            d.stop()


def test_a_forged_checkpoint_is_refused_when_the_log_is_signed(tmp_path):
    key = tmp_path / "cfg" / "activity.key"
    with ThreadedDaemon(tmp_path, {"daemon": {"activity_key_file": str(key)}}) as d:
        export = tmp_path / "a.csv"
        assert d.tui_cli("activity", "export", "--csv", str(export)).returncode == 0
        cp_file = tmp_path / "a.csv.checkpoint.json"
        checkpoint = json.loads(cp_file.read_text())
        assert checkpoint["signature"]
        assert d.tui_cli("activity", "verify", "--checkpoint", str(cp_file)).returncode == 0
        checkpoint["id"] += 5  # claims a longer log than was exported, with the old signature
        cp_file.write_text(json.dumps(checkpoint))
        r = d.tui_cli("activity", "verify", "--checkpoint", str(cp_file))
        assert r.returncode == 1 and "signature" in r.stdout, r.stdout
        cp_file.write_text("not json")
        r = d.tui_cli("activity", "verify", "--checkpoint", str(cp_file))
        assert r.returncode == 2 and "not a checkpoint" in r.stderr and "Traceback" not in r.stderr


def test_activity_tail_escapes_control_characters(tmp_path):
    d = ThreadedDaemon(tmp_path)
    try:
        d.start()
        d.stop()
        _append_raw(
            d.state / "costrecon.db",
            actor="mallory",
            action="import.done",
            subject="prices\x1b]0;owned\x07\n2026-12-01 00:00:00  root  approve  forged.csv",
            after="1\x1b[2J",
        )
        d.start()
        r = d.tui_cli("activity", "tail", "--no-follow", "-n", "5")
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout
        forged = [ln for ln in r.stdout.splitlines() if ln.startswith("2026-12-01 00:00:00")]
        assert forged == []
        assert "prices\\x1b]0;owned\\x07\\x0a2026-12-01" in r.stdout
        assert "1\\x1b[2J" in r.stdout
    finally:
        if d.running:
            d.stop()
