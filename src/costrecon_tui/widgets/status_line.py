"""The one-line daemon/PSA/sync/push summary under the header."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual.widgets import Static

from costrecon_tui.widgets import display

PSA_NAMES = {"connectwise": "ConnectWise", "autotask": "Autotask", "syncro": "Syncro"}


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def show(
        self,
        *,
        connected: bool,
        status: dict[str, Any] | None,
        sync_state: dict[str, Any] | None,
        pushes: dict[int, dict[str, Any]],
        now: datetime,
        busy: bool = False,
    ) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        if not connected:
            t.append("✗ costrecond not running", style="bold red")
            t.append(" · retrying every 2 s")
            self.update(t)
            return
        if status is None:
            t.append("… connecting to costrecond")
            self.update(t)
            return
        psa = status.get("psa", {})
        t.append("● ", style="green")
        t.append(f"costrecond {status.get('daemon', {}).get('version', '')}".strip())
        t.append(" · ")
        kind = PSA_NAMES.get(psa.get("kind") or "", psa.get("kind") or "PSA")
        if psa.get("kind") == "none":
            t.append("no PSA configured — set [psa] in the config file", style="yellow")
        elif psa.get("connected"):
            t.append(f"{kind} ✓", style="green")
        else:
            t.append(f"{kind} ✗ {psa.get('error') or 'not connected'}", style="bold red")
        problems = psa.get("permission_problems") or []
        if problems:
            t.append(
                f" ! {len(problems)} permission problem{'s' if len(problems) > 1 else ''}",
                style="yellow",
            )
        t.append(" · ")
        state = (sync_state or {}).get("state")
        if psa.get("syncing") or state == "running":
            t.append("⟳ syncing…", style="yellow")
        elif state == "failed":
            t.append(f"✗ sync failed: {(sync_state or {}).get('message') or ''}", style="red")
        else:
            t.append(f"synced {display.age(psa.get('last_sync'), now)}")
        for cs_id, p in sorted(pushes.items()):
            t.append(" · ")
            t.append(f"push #{cs_id} {p.get('done', 0)}/{p.get('total', '?')}", style="yellow")
        pending = (status.get("inbox") or {}).get("pending") or 0
        if pending:
            t.append(f" · inbox {pending} waiting")
        if busy:
            t.append(" · loading…", style="italic")
        self.update(t)
