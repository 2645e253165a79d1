"""End to end, as a technician does it: the real `costrecon demo` in tmux, driven with send-keys,
read with capture-pane; then the simulated PSA and the activity log are checked."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from costrecon_daemon.psa.base import SyncChunk
from costrecon_daemon.psa.connectwise import ConnectWiseConnector, ConnectWiseSettings

from .harness import kill_daemon_of

# A terminal driving the real programs: subprocesses.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    def __init__(self, name: str):
        self.socket = f"costrecon-e2e-{os.getpid()}-{name}"
        self.target = "e2e"

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False
        ).stdout

    def start(self, command: list[str], width: int = 120, height: int = 40) -> None:
        env = {**os.environ, "TERM": "xterm-256color", "TEXTUAL_ANIMATIONS": "none"}
        subprocess.run(
            [
                "tmux",
                "-L",
                self.socket,
                "new-session",
                "-d",
                "-s",
                self.target,
                "-x",
                str(width),
                "-y",
                str(height),
                " ".join(command) + "; sleep 120",
            ],
            env=env,
            check=True,
        )

    def keys(self, *keys: str) -> None:
        for k in keys:
            self.tmux("send-keys", "-t", self.target, k)
            time.sleep(0.15)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.target, "-l", text)
        time.sleep(0.2)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.target)

    def wait_for(self, predicate, what: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; the screen shows:\n{self.screen()}")

    def kill(self) -> None:
        self.tmux("kill-server")


def _costrecon() -> list[str]:
    exe = Path(sys.executable).parent / "costrecon"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "costrecon_tui.cli"]


def _api(sock: Path, path: str, **params) -> dict:
    with httpx.Client(
        transport=httpx.HTTPTransport(uds=str(sock), verify=False), base_url="http://d", timeout=10
    ) as c:
        r = c.get(path, params=params)
        r.raise_for_status()
        return r.json()


def _psa_state(settings: dict) -> tuple[dict, list]:
    """Read the simulated tenant back through the real ConnectWise client."""

    async def go():
        conn = ConnectWiseConnector(ConnectWiseSettings(**settings))
        chunks: list[SyncChunk] = []

        async def sink(chunk: SyncChunk) -> None:
            chunks.append(chunk)

        try:
            await conn.connect()
            await conn.pull(None, sink)
        finally:
            await conn.aclose()
        items = {i.identifier: i for c in chunks for i in c.items}
        contracts = {c.psa_id: c for ch in chunks for c in ch.contracts}
        lines = [ln for c in chunks for ln in c.lines]
        # Lines of agreements billed in another currency (the demo has CAD ones) are never
        # written: costrecon does not push a cost across currencies.
        same_currency = [ln for ln in lines if contracts[ln.contract_psa_id].currency == "USD"]
        return items, [
            ln for ln in same_currency if ln.active and contracts[ln.contract_psa_id].active
        ]

    return asyncio.run(go())


def test_demo_filter_mark_edit_approve_reaches_the_psa_and_the_activity_log(tmp_path):
    keep = tmp_path / "demo"
    t = Tmux("demo")
    try:
        t.start([*_costrecon(), "demo", "--keep", str(keep)])
        t.wait_for(
            lambda s: "costrecon — Costs" in s and "approve" in s,
            "the cost table with changes",
            120,
        )
        t.keys("/")
        t.type("DEF-BUS")
        t.keys("Enter")
        t.wait_for(
            lambda s: "DEF-BUS-A" in s and "DEF-BUS-M" in s and "DNSF-PRO" not in s, "the filter"
        )
        t.keys("space", "j", "space")
        # the marks are read back from the screen text itself: the selection column says [x]
        marked = t.wait_for(lambda s: "2 marked" in s, "two marked rows")
        assert set(re.findall(r"\[x\] (DEF-BUS-\w)", marked)) == {"DEF-BUS-A", "DEF-BUS-M"}
        assert "[ ] DEF-BUS" not in marked
        # cursor is on DEF-BUS-M: type a vendor cost over the imported one, once the editor is
        # up (typed ahead, the digits would reach the table: "3" opens the Files view)
        before = t.screen()
        t.keys("e")
        t.wait_for(lambda s: s != before, "the editor to open", 30)
        t.type("3.99")
        t.wait_for(lambda s: "3.99" in s, "the typed cost in the editor", 30)
        t.keys("Enter")
        t.wait_for(lambda s: "3.99" in s, "the edited vendor cost")
        t.keys("a")
        t.wait_for(lambda s: "Approve cost change for 2 items?" in s, "the approval preview")
        preview = t.screen()
        assert "contract lines will change" in preview and "monthly cost impact" in preview
        t.keys("y")
        sock = keep / "run" / "costrecond.sock"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sets = _api(sock, "/v1/change-sets")["change_sets"]
            if sets and sets[0]["status"] not in ("pending", "pushing"):
                break
            time.sleep(0.3)
        assert sets[0]["status"] == "done", sets[0]
        t.wait_for(lambda s: s.count("✓ done") >= 2, "both rows shown as done")

        config = tomllib.loads((keep / "config.toml").read_text())
        items, lines = _psa_state(
            {**config["psa.connectwise"]}
            if "psa.connectwise" in config
            else config["psa"]["connectwise"]
        )
        expected = {"DEF-BUS-A": Decimal("3.24"), "DEF-BUS-M": Decimal("3.99")}
        for ident, cost in expected.items():
            item = items[ident]
            assert item.cost == cost, ident
            mine = [ln for ln in lines if ln.item_psa_id == item.psa_id]
            assert mine and {ln.unit_cost for ln in mine} == {cost}, ident

        user = getpass.getuser()
        approvals = _api(sock, "/v1/activity", action="approve")["entries"]
        assert approvals and approvals[0]["actor"] == user
        edits = _api(sock, "/v1/activity", action="cost.manual.set")["entries"]
        assert edits and edits[0]["actor"] == user and edits[0]["subject"] == "DEF-BUS-M"
        pushed = _api(sock, "/v1/activity", action="push.item")["entries"]
        assert {e["subject"] for e in pushed} == set(expected) and {e["actor"] for e in pushed} == {
            user
        }

        # and the technician sees it in the Activity view, under their own name
        t.keys("2")
        screen = t.wait_for(
            lambda s: "costrecon — Activity" in s and "push.done" in s, "the activity view"
        )
        approve_line = next(ln for ln in screen.splitlines() if " approve " in ln)
        assert user[:8] in approve_line, approve_line

        t.keys("q")
        t.wait_for(lambda s: "costrecon demo: kept" in s, "the demo to stop and clean up", 60)
    finally:
        t.kill()
        kill_daemon_of(keep)  # the demo's daemon runs in a session of its own


def _cli_costs(keep: Path, query: str) -> list[dict]:
    env = {**os.environ, "COSTRECON_CONFIG": str(keep / "config.toml")}
    out = subprocess.run(
        [*_costrecon(), "costs", "--json", "--filter", query],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    ).stdout
    return json.loads(out)


def _wait_change_sets_settled(sock: Path, count: int) -> list[dict]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        sets = _api(sock, "/v1/change-sets")["change_sets"]
        if len(sets) >= count and all(s["status"] not in ("pending", "pushing") for s in sets):
            return sets
        time.sleep(0.3)
    raise AssertionError(f"change sets did not finish: {sets}")


def _confirm_key(screen: str, label: str) -> str:
    """The key the dialog's confirm button names, e.g. ``Approve 30 (y)`` → ``y``."""
    match = re.search(label + r" \((\w)\)", screen)
    assert match, f"no confirm button {label!r} on screen:\n{screen}"
    return match.group(1)


def test_a_day_at_80x24_mark_30_approve_undo_edit_palette_and_quit(tmp_path):
    keep = tmp_path / "demo"
    t = Tmux("day80")
    try:
        t.start([*_costrecon(), "demo", "--keep", str(keep)], width=80, height=24)
        t.wait_for(lambda s: "costrecon — Costs" in s and "approve" in s, "the cost table", 120)
        sock = keep / "run" / "costrecond.sock"
        before = {r["identifier"]: r for r in _cli_costs(keep, "")}

        # mark 30 rows of the changed-only view and approve them through the dialog
        changed = [r for r in before.values() if r["change"] not in (None, "0", "0.0000")]
        t.keys("c")
        t.wait_for(lambda s: "changed only" in s, "the changed-only filter")
        n = min(30, len(changed))
        for _ in range(n):
            t.tmux("send-keys", "-t", t.target, "Space")
        shown = t.wait_for(lambda s: f"{n} marked" in s, f"{n} marked rows")
        # every row on screen above the cursor reads [x] in the selection column, none [ ]
        rows = [ln for ln in shown.splitlines() if re.match(r"^[ ▶]\[[x ]\] ", ln)]
        above = rows[: next(i for i, ln in enumerate(rows) if ln.startswith("▶"))]
        assert above and all(ln.startswith(" [x] ") for ln in above), shown
        t.keys("a")
        dialog = t.wait_for(
            lambda s: "Approve cost change for" in s and re.search(r"Approve \d+ \(", s),
            "the approval dialog with its confirm button",
            20,
        )
        # the confirm button and its key are on screen at 80x24 however many items
        key = _confirm_key(dialog, rf"Approve {n}")
        t.keys(key)
        sets = _wait_change_sets_settled(sock, 1)
        approved = sets[0]
        assert approved["status"] == "done", approved
        pushed = _cli_costs(keep, "")
        moved = [r for r in pushed if r["catalog_cost"] != before[r["identifier"]]["catalog_cost"]]
        assert len(moved) == n

        # undo it from the Activity view and read a restored cost back through the CLI
        t.keys("2")
        t.wait_for(lambda s: "costrecon — Activity" in s and "push.done" in s, "activity")
        t.keys("u")
        dialog = t.wait_for(
            lambda s: "Undo change set #" in s and re.search(r"Undo #\d+ \(", s),
            "the undo dialog with its confirm button",
            20,
        )
        t.keys(_confirm_key(dialog, r"Undo #\d+"))
        sets = _wait_change_sets_settled(sock, 2)
        assert sets[0]["kind"] == "undo" and sets[0]["status"] == "done", sets[0]
        sample = moved[0]["identifier"]
        restored = next(r for r in _cli_costs(keep, sample) if r["identifier"] == sample)
        assert restored["catalog_cost"] == before[sample]["catalog_cost"]

        # edit a vendor cost typed with a decimal comma
        t.keys("1", "c", "Escape")
        t.wait_for(lambda s: "changed only" not in s and "marked" not in s, "all rows, no marks")
        target = sorted(before)[0]
        t.keys("/")
        # Type only once the filter box is there, and edit only once the table shows the match:
        # on a loaded machine keys sent earlier reach the widget that had focus before.
        t.wait_for(lambda s: "filter: PSA ID or name" in s, "the filter box")
        t.type(target)
        t.wait_for(lambda s: s.count(target) >= 2, "the filter to show the item")
        t.keys("Enter")
        t.wait_for(lambda s: "filter: PSA ID or name" not in s, "the filter to be kept")
        # The editor takes the focus after the key that opens it has been handled: typed ahead
        # on a loaded machine, the digits reached the table instead ("2" opened Activity, "5"
        # Sync). So type once the screen shows the editor, and submit once it shows the text.
        before = t.screen()
        t.keys("e")
        t.wait_for(lambda s: s != before, "the editor to open", 30)
        t.type("12,50")
        t.wait_for(lambda s: "12,50" in s, "the typed cost in the editor", 30)
        t.keys("Enter")
        screen = t.wait_for(
            lambda s: "Set this vendor cost?" in s or "12.50" in s, "the edit to be taken"
        )
        if "Set this vendor cost?" in screen:  # a wild number: the second look names the key
            t.keys(_confirm_key(screen, "Set cost"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = next(r for r in _cli_costs(keep, target) if r["identifier"] == target)
            if row["vendor_cost"] == "12.5000":
                break
            time.sleep(0.3)
        assert row["vendor_cost"] == "12.5000", row

        # the palette opens with ctrl+p
        t.keys("Escape", "C-p")
        t.wait_for(lambda s: "Search for commands" in s, "the command palette")
        t.keys("Escape")
        t.wait_for(lambda s: "Search for commands" not in s, "the palette to close")

        # q leaves the screen at once (the demo then says it is stopping its daemon)
        start = time.monotonic()
        t.tmux("send-keys", "-t", t.target, "q")
        while "costrecon — " in t.screen() and time.monotonic() - start < 10:
            time.sleep(0.02)
        left = time.monotonic() - start
        print(f"q left the screen in {left:.2f} s")
        # The goal is under 1 s (measured 0.2 s on a quiet machine; printed above). Tests do not
        # assert timings, so this only catches a quit that waits for the daemon to stop first.
        assert left < 3.0, f"q took {left:.2f} s to leave the screen"
        t.wait_for(lambda s: "stopping the daemon" in s, "the stopping line", 5)
        t.wait_for(lambda s: "costrecon demo: kept" in s, "the demo to stop and clean up", 60)
    finally:
        t.kill()
        kill_daemon_of(keep)  # the demo's daemon runs in a session of its own
