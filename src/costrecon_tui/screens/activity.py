"""The Activity view: the append-only log, tailing live, with detail and undo."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static

from costrecon_tui import keymap
from costrecon_tui.widgets import display
from costrecon_tui.widgets.errors import ReportsWorkerErrors
from costrecon_tui.widgets.tables import KeyTable

LIMIT = 1000
BAD = ("conflict", "failed", "denied")


def parse_filter(text: str) -> tuple[dict[str, str], str]:
    """``actor:bob action:push item:M365 words`` → server filters + free text."""
    params: dict[str, str] = {}
    free = []
    for token in text.split():
        key, sep, value = token.partition(":")
        if sep and value and key in ("actor", "action", "item", "subject"):
            params["subject" if key == "item" else key] = value
        else:
            free.append(token.lower())
    return params, " ".join(free)


def matches(entry: dict[str, Any], params: dict[str, str], free: str) -> bool:
    if "actor" in params and params["actor"].lower() not in (entry.get("actor") or "").lower():
        return False
    if "action" in params and not (entry.get("action") or "").startswith(params["action"]):
        return False
    if (
        "subject" in params
        and params["subject"].lower() not in (entry.get("subject") or "").lower()
    ):
        return False
    if free:
        hay = " ".join(
            str(entry.get(k) or "") for k in ("actor", "action", "subject", "before", "after")
        ).lower()
        return all(word in hay for word in free.split())
    return True


def change_set_of(entry: dict[str, Any]) -> int | None:
    cs = (entry.get("details") or {}).get("change_set_id")
    return int(cs) if cs is not None else None


def _count(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def change_set_parts(cs: dict[str, Any]) -> list[Any]:
    """A change set's outcome as its journal recorded it, beside what its preview promised, with
    the reason when they differ. Any field may be missing: what is not known shows as "—".

    The journal counts targets (catalogue items and contract lines); the preview's promise is
    ``item_writes + lines``. Lines the policy left alone get no journal step at all, so "skipped"
    only has a preview figure, and the detail says so instead of printing a false 0.
    """
    c = cs.get("counts") if isinstance(cs.get("counts"), dict) else {}
    p = cs.get("preview") if isinstance(cs.get("preview"), dict) else {}
    head = Text()
    head.append(f"\nChange set #{cs.get('id', '?')} ({cs.get('kind') or 'apply'}", style="bold")
    if cs.get("undo_of"):
        head.append(f", undo of #{cs['undo_of']}", style="bold")
    head.append(
        f") · {cs.get('status') or '—'} · policy {cs.get('policy') or '—'}"
        f" · by {cs.get('actor') or '—'}",
        style="bold",
    )
    promised_changed = None
    if _count(p.get("lines")) is not None:
        promised_changed = (_count(p.get("item_writes")) or 0) + (_count(p.get("lines")) or 0)
    failed = [_count(c.get(k)) for k in ("failed", "denied")]
    rows = [
        ("changed", _count(c.get("done")), promised_changed),
        ("skipped", _count(c.get("skipped")), _count(p.get("lines_skipped"))),
        ("conflicts", _count(c.get("conflict")), 0 if p else None),
        (
            "failed",
            None if all(f is None for f in failed) else sum(f or 0 for f in failed),
            0 if p else None,
        ),
    ]
    pending = sum(_count(c.get(k)) or 0 for k in ("pending", "sending"))
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    table.add_column("targets")
    table.add_column("journal", justify="right")
    table.add_column("preview", justify="right")
    if pending:
        rows.append(("waiting", pending, None))
    reasons = []
    for label, journal, promised in rows:
        table.add_row(
            label,
            "—" if journal is None else str(journal),
            "—" if promised is None else str(promised),
        )
    if _count(c.get("skipped")) is None and _count(p.get("lines_skipped")):
        reasons.append(
            f"{p['lines_skipped']} line(s) were left alone by the line policy; they are not "
            "journal steps, so the journal has no count for them."
        )
    changed, conflicts, fails = rows[0][1], rows[2][1] or 0, rows[3][1] or 0
    if promised_changed is not None and changed is not None and changed != promised_changed:
        if pending:
            reasons.append(f"{pending} target(s) are still waiting to be pushed.")
        if conflicts or fails:
            reasons.append(
                f"{conflicts + fails} target(s) were not changed: a conflict (the PSA held another "
                "cost than expected) or a refused write; each step below says which."
            )
        cancelled = _count(c.get("cancelled")) or 0
        if cancelled:
            reasons.append(f"{cancelled} target(s) were cancelled before they were sent.")
        if not (pending or conflicts or fails or cancelled):
            reasons.append("The targets changed in the PSA between the preview and the push.")
    if cs.get("message"):
        reasons.append(display.plain(cs["message"]))
    parts: list[Any] = [head, table]
    if reasons:
        parts.append(Text("\n".join(reasons), style="yellow"))
    return parts


class ActivityView(ReportsWorkerErrors, Vertical):
    BINDINGS = keymap.ACTIVITY

    DEFAULT_CSS = """
    ActivityView #activity-filter { height: 1; border: none; padding: 0 1; display: none; background: $boost; }
    ActivityView #activity-filter.-shown { display: block; }
    ActivityView DataTable { height: 1fr; }
    ActivityView #activity-line { height: 1; background: $panel; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: dict[int, dict[str, Any]] = {}
        self.follow = True
        self.filter_text = ""
        self.loaded = False
        self._unseen = 0

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: actor:NAME action:push item:M365 or any words",
            id="activity-filter",
        )
        table: DataTable[Any] = KeyTable(cursor_type="row", id="activity-table", flex="subject")
        table.add_column("When (UTC)", key="at", width=display.STAMP_WIDTH)
        table.add_column("Actor", key="actor", width=8)
        table.add_column("Action", key="action", width=21)
        table.add_column("Subject", key="subject", width=28)
        table.add_column("Before → after", key="change", width=20)
        yield table
        yield Static(id="activity-line")

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one(DataTable)

    def focus_main(self) -> None:
        self.table.focus()

    def reload(self) -> None:
        self.load()

    def on_reconnected(self) -> None:
        self.load()

    @work(exclusive=True, group="activity-load", exit_on_error=False)
    async def load(self) -> None:
        params, _free = parse_filter(self.filter_text)
        self.table.loading = not self.loaded
        try:
            entries = await self.app.client.activity(limit=LIMIT, **params)
        finally:
            self.table.loading = False
        self.loaded = True
        self.entries = {e["id"]: e for e in entries}
        self._rebuild()

    def _row(self, e: dict[str, Any]) -> tuple[Text, ...]:
        action = e.get("action") or ""
        style = (
            "bold red"
            if any(b in action for b in BAD)
            else "green"
            if action in ("push.done", "approve")
            else ""
        )
        before, after = e.get("before"), e.get("after")
        change = ""
        if before is not None or after is not None:
            change = f"{display.plain(before)} → {display.plain(after)}"
        cs = change_set_of(e)
        subject = e.get("subject") or ""
        if cs is not None and f"#{cs}" not in subject:
            subject = f"{subject} [#{cs}]"
        return (
            Text(display.stamp(e.get("at"), self.app.now())),
            Text(e.get("actor") or ""),
            Text(("✗ " if any(b in action for b in BAD) else "") + action, style=style),
            Text(subject, overflow="ellipsis"),
            Text(change),
        )

    def _rebuild(self) -> None:
        params, free = parse_filter(self.filter_text)
        table = self.table
        table.clear()
        for e in sorted(self.entries.values(), key=lambda e: e["id"]):
            if matches(e, params, free):
                table.add_row(*self._row(e), key=str(e["id"]))
        if self.follow and table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)
        self._unseen = 0
        self._fit_when()
        self._update_line()

    def _fit_when(self, entries: Any = None, *, grow_only: bool = False) -> None:
        now = self.app.now()
        entries = self.entries.values() if entries is None else entries
        widest = max((len(display.stamp(e.get("at"), now)) for e in entries), default=5)
        width = max(10, widest)
        column = self.table.columns.get("at")  # type: ignore[call-overload]
        if grow_only and column is not None and column.width >= width:
            return
        self.table.set_column_width("at", width)  # type: ignore[attr-defined]

    def add_entry(self, entry: dict[str, Any]) -> None:
        """A live `activity` event: append (oldest at top, newest at the bottom, like a tail)."""
        if not self.loaded or entry["id"] in self.entries:
            return
        self.entries[entry["id"]] = entry
        params, free = parse_filter(self.filter_text)
        if not matches(entry, params, free):
            return
        table = self.table
        table.add_row(*self._row(entry), key=str(entry["id"]))
        self._fit_when([entry], grow_only=True)
        if self.follow:
            table.move_cursor(row=table.row_count - 1, animate=False)
        else:
            self._unseen += 1
        self._update_line()

    def _update_line(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(
            "following" if self.follow else "paused", style="bold" if self.follow else "yellow"
        )
        t.append(" (f toggles)")
        if self._unseen:
            t.append(f" · {self._unseen} new below", style="bold yellow")
        t.append(f" · {self.table.row_count} entries")
        if self.filter_text:
            t.append(f" · filter “{self.filter_text}”")
        self.query_one("#activity-line", Static).update(t)

    def current_entry(self) -> dict[str, Any] | None:
        table = self.table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.entries.get(int(key)) if key is not None else None

    # ------------------------------------------------------------------ actions

    def action_follow(self) -> None:
        self.follow = not self.follow
        if self.follow and self.table.row_count:
            self.table.move_cursor(row=self.table.row_count - 1, animate=False)
            self._unseen = 0
        self._update_line()

    def action_filter(self) -> None:
        f = self.query_one("#activity-filter", Input)
        f.add_class("-shown")
        f.focus()

    @on(Input.Submitted, "#activity-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        old_params, _ = parse_filter(self.filter_text)
        self.filter_text = event.value.strip()
        if not self.filter_text:
            event.input.remove_class("-shown")
        new_params, _ = parse_filter(self.filter_text)
        if new_params != old_params:
            self.load()
        else:
            self._rebuild()
        self.table.focus()

    @on(Input.Changed, "#activity-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        # free text filters locally as you type; actor:/action:/item: go to the daemon on enter
        params, _ = parse_filter(event.value)
        old, _ = parse_filter(self.filter_text)
        if params == old:
            self.filter_text = event.value.strip()
            self._rebuild()

    def action_clear_filter(self) -> None:
        f = self.query_one("#activity-filter", Input)
        had_params = bool(parse_filter(self.filter_text)[0])
        f.value = ""
        f.remove_class("-shown")
        self.filter_text = ""
        if had_params:
            self.load()
        else:
            self._rebuild()
        self.table.focus()

    def action_reload(self) -> None:
        self.load()

    def action_detail(self) -> None:
        entry = self.current_entry()
        if entry is not None:
            self.show_detail(entry)

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_detail()

    @work(exclusive=True, group="activity-detail", exit_on_error=False)
    async def show_detail(self, entry: dict[str, Any]) -> None:
        from costrecon_tui.screens.dialogs import TextScreen

        now = self.app.now()
        t = Text()
        t.append(
            f"#{entry.get('id')}  {display.stamp(entry.get('at'), now)} UTC"
            f"  by {entry.get('actor') or '—'}\n",
            style="bold",
        )
        t.append(f"action   {entry.get('action') or '—'}\nsubject  {entry.get('subject') or '—'}\n")
        if entry.get("before") is not None or entry.get("after") is not None:
            t.append(
                f"before   {display.plain(entry.get('before'))}\n"
                f"after    {display.plain(entry.get('after'))}\n"
            )
        details = entry.get("details")
        for k, v in details.items() if isinstance(details, dict) else []:
            if v is not None:
                t.append(f"{str(k).replace('_', ' '):<8} {display.plain(v)}\n", style="dim")
        extra = []
        cs_id = change_set_of(entry)
        if cs_id is not None:
            cs = await self.app.client.change_set(cs_id)
            extra += [Static(part) for part in change_set_parts(cs)]
            extra.append(Static(self._steps_table(cs.get("steps") or [])))
            if entry.get("action") != "undo" or cs.get("kind") == "apply":
                t.append("\nu in the Activity view undoes this change set.", style="dim")
        self.app.push_screen(
            TextScreen(f"Activity #{entry['id']}: {entry.get('action')}", t, extra=extra)
        )

    @staticmethod
    def _steps_table(steps: list[dict[str, Any]]) -> Table:
        table = Table(box=None, expand=True, header_style="bold", pad_edge=False)
        for col in ("Target", "PSA id", "Contract", "Before → after", "Outcome"):
            table.add_column(col, no_wrap=col != "Outcome")
        marks = {
            "done": "✓",
            "conflict": "!",
            "failed": "✗",
            "denied": "✗",
            "pending": "◷",
            "skipped": "–",
        }
        for s in steps[:500]:
            status = s.get("status") or ""
            outcome = f"{marks.get(status, '')} {status}"
            if s.get("message"):
                outcome += f": {display.plain(s['message'])}"
            table.add_row(
                str(s.get("target") or ""),
                str(s.get("target_psa_id") or ""),
                str(s.get("contract_psa_id") or "—"),
                f"{display.plain(s.get('before'))} → {display.plain(s.get('after'))}",
                Text(outcome, style="bold red" if status in BAD else ""),
            )
        if len(steps) > 500:
            table.add_row("…", "", "", "", f"{len(steps) - 500} more steps")
        return table

    def action_undo(self) -> None:
        entry = self.current_entry()
        cs_id = change_set_of(entry) if entry else None
        if cs_id is None:
            self.notify(
                "This entry belongs to no change set; pick an approve or push entry to undo.",
                severity="warning",
            )
            return
        self.undo(cs_id)

    @work(exclusive=True, group="activity-undo", exit_on_error=False)
    async def undo(self, cs_id: int) -> None:
        from costrecon_tui.screens.preview import UndoScreen

        client = self.app.client
        preview = (await client.undo(cs_id, dry_run=True) or {}).get("preview") or {}
        if not await self.app.push_screen_wait(UndoScreen(cs_id, preview)):
            return
        result = await client.undo(cs_id)
        new = result.get("change_set") or {}
        self.notify(
            f"Undo of change set #{cs_id} queued as change set #{new.get('id', '?')}.", timeout=5
        )
