"""The Activity view: the append-only log, tailing live, with detail and undo.

Built for an MSP-size push (issue 14): a change set of 120,000 lines writes thousands of activity
entries (one per conflict, one per item at the end), so the view folds every entry of a change set
into ONE row and reads the change set's per-line detail on demand, a page at a time, from
``GET /v1/change-sets/{id}/steps``. Live entries are buffered and applied a few times a second,
and the table keeps a window of recent rows; older ones are read back when the cursor reaches
the top.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.table import Table
from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static

from costrecon_tui import keymap
from costrecon_tui.widgets import display
from costrecon_tui.widgets.activity_rows import (
    BAD,
    MONEY_DETAILS,
    STEP_MARKS,
    ChangeSetRow,
    Row,
    change_set_of,
    change_text,
    csv_cell,
    money_text,
    plural,
    row_key,
    step_target,
)
from costrecon_tui.widgets.errors import ReportsWorkerErrors
from costrecon_tui.widgets.tables import KeyTable

if TYPE_CHECKING:
    from costrecon_tui.app import CostreconApp

PAGE = 500  # entries per request
WINDOW = 600  # top-level rows kept; older ones are read back when the cursor reaches the top
FIRST_ROWS = 200  # a load reads pages until it has this many rows (or the log's start)
MAX_SCAN = 5000  # …but no more entries than this: a big change set folds thousands into one row
STEP_PAGE = 20
COLUMNS = ("at", "actor", "action", "subject", "change")
FLUSH_SECONDS = 0.25  # live entries are applied at most four times a second
STEP_STATUSES: tuple[str | None, ...] = (
    None,
    "conflict",
    "failed",
    "denied",
    "pending",
    "done",
    "cancelled",
)


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
    c = display.mapping(cs.get("counts"))
    p = display.mapping(cs.get("preview"))
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


class ActivityTable(KeyTable):
    """The log's table: → and ← open and close a change set, and moving up past the first row
    reads older entries (the table holds a window of recent rows, not the whole log)."""

    def _view(self) -> ActivityView:
        return self.query_ancestor(ActivityView)

    def action_cursor_right(self) -> None:
        self._view().action_expand()

    def action_cursor_left(self) -> None:
        self._view().action_collapse()

    def action_cursor_up(self) -> None:
        if self.cursor_row == 0:
            self._view().load_older()
        super().action_cursor_up()

    def action_page_up(self) -> None:
        if self.cursor_row == 0:
            self._view().load_older()
        super().action_page_up()

    def action_scroll_top(self) -> None:
        if self.cursor_row == 0:
            self._view().load_older()
        super().action_scroll_top()


@dataclass(slots=True)
class StepsPage:
    cs_id: int
    status: str | None = None
    offset: int = 0
    total: int | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)


class ActivityView(ReportsWorkerErrors, Vertical):
    if TYPE_CHECKING:  # Textual types `app` as any App; every view runs in CostreconApp
        app = getters.app(CostreconApp)

    BINDINGS = cast("list[BindingType]", keymap.ACTIVITY)  # list is invariant

    DEFAULT_CSS = """
    ActivityView #activity-filter, ActivityView #activity-export {
        height: 1; border: none; padding: 0 1; display: none; background: $boost;
    }
    ActivityView #activity-filter.-shown, ActivityView #activity-export.-shown { display: block; }
    ActivityView #activity-table { height: 1fr; }
    ActivityView #activity-steps-box { height: auto; max-height: 50%; display: none; }
    ActivityView #activity-steps-box.-shown { display: block; }
    ActivityView #activity-steps-head { height: 1; background: $boost; padding: 0 1; }
    ActivityView #activity-steps { height: auto; max-height: 10; }
    ActivityView #activity-line { height: 1; background: $panel; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: dict[str, Row] = {}
        self.groups: dict[int, ChangeSetRow] = {}
        self.follow = True
        self.filter_text = ""
        self.loaded = False
        self.has_older = False
        self.has_newer = False
        self.expanded: StepsPage | None = None
        self.flushes = 0  # how many times live entries were applied (tests read it)
        self._newest = 0  # the newest entry id folded in: live entries up to it are duplicates
        self._pending: list[dict[str, Any]] = []
        self._flush_timer: Any = None
        self._unseen = 0
        self._older_loading = False

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: actor:NAME action:push item:M365 or any words",
            id="activity-filter",
        )
        yield Input(id="activity-export", placeholder="export to CSV file")
        table: DataTable[Any] = ActivityTable(
            cursor_type="row", id="activity-table", flex="subject"
        )
        table.add_column("UTC", key="at", width=display.STAMP_WIDTH)
        table.add_column("Actor", key="actor", width=8)
        table.add_column("Action", key="action", width=21)
        table.add_column("Subject", key="subject", width=28)
        table.add_column("Before → after", key="change", width=16)
        yield table
        with Vertical(id="activity-steps-box"):
            yield Static(id="activity-steps-head")
            steps: DataTable[Any] = KeyTable(
                cursor_type="none", id="activity-steps", zebra_stripes=True, flex="outcome"
            )
            steps.can_focus = False  # keys stay on the log; ] [ s page and filter the steps
            for label, key, width in (
                ("Target", "target", 18),
                ("Contract", "contract", 8),
                ("Before → after", "change", 16),
                ("Outcome", "outcome", 60),
            ):
                steps.add_column(label, key=key, width=width)
            yield steps
        yield Static(id="activity-line")

    def on_mount(self) -> None:
        # progress of running change sets comes from the push events the app keeps
        self.set_interval(1.0, self._refresh_running)

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#activity-table", DataTable)

    @property
    def steps_table(self) -> DataTable[Any]:
        return self.query_one("#activity-steps", DataTable)

    def focus_main(self) -> None:
        self.table.focus()

    def reload(self) -> None:
        self.load()

    def on_reconnected(self) -> None:
        self.load()

    # ------------------------------------------------------------------ loading

    async def _read(self, before_id: int | None) -> tuple[list[dict[str, Any]], bool]:
        """Entries newest first, page by page, until FIRST_ROWS rows or MAX_SCAN entries; and
        whether older entries remain."""
        params, _free = parse_filter(self.filter_text)
        out: list[dict[str, Any]] = []
        keys: set[str] = set()
        while True:
            batch = await self.app.client.activity(limit=PAGE, before_id=before_id, **params)
            out += batch
            keys.update(row_key(e) for e in batch)
            if len(batch) < PAGE:
                return out, False
            before_id = batch[-1]["id"]
            if len(keys) >= FIRST_ROWS or len(out) >= MAX_SCAN:
                return out, True

    @work(exclusive=True, group="activity-load", exit_on_error=False)
    async def load(self) -> None:
        self.table.loading = not self.loaded
        try:
            entries, older = await self._read(None)
        finally:
            self.table.loading = False
        self.rows, self.groups = {}, {}
        # entries still buffered stay: those the read already had are skipped by id at the flush
        for e in reversed(entries):
            self._fold(e)
        self._newest = max((e["id"] for e in entries), default=0)
        self.has_older, self.has_newer = older, False
        self.loaded = True
        self._rebuild()
        if self.expanded is not None:
            self.load_steps()

    @work(exclusive=True, group="activity-older", exit_on_error=False)
    async def load_older(self) -> None:
        if not self.has_older or self._older_loading or not self.rows:
            return
        self._older_loading = True
        try:
            oldest = min(self._anchor(r) for r in self.rows.values())
            entries, older = await self._read(oldest)
        finally:
            self._older_loading = False
        keep = self._cursor_key()
        for e in entries:
            self._fold(e)
        self.has_older = older
        self.follow = False
        self._trim(from_top=False)
        self._rebuild(keep_key=keep)
        self.notify(f"Read {len(entries)} older entries.", timeout=2)

    def _fold(self, e: dict[str, Any]) -> tuple[str, bool]:
        """Put one entry in its row; returns the row key and whether the row is new."""
        key = row_key(e)
        cs = change_set_of(e)
        if cs is None:
            new = key not in self.rows
            self.rows[key] = e
            return key, new
        group = self.groups.get(cs)
        new = group is None or key not in self.rows
        if group is None:
            group = ChangeSetRow(
                cs_id=cs, anchor=e["id"], newest=e["id"], at=e.get("at"), actor=e.get("actor") or ""
            )
            self.groups[cs] = group
        group.fold(e)
        self.rows[key] = group
        return key, new

    @staticmethod
    def _anchor(row: Row) -> int:
        return row.anchor if isinstance(row, ChangeSetRow) else int(row["id"])

    def _trim(self, *, from_top: bool = True) -> None:
        """Keep at most WINDOW rows: drop the oldest while tailing, the newest after paging back."""
        if len(self.rows) <= WINDOW:
            return
        order = sorted(self.rows, key=lambda k: self._anchor(self.rows[k]))
        drop = order[: len(order) - WINDOW] if from_top else order[WINDOW:]
        expanded = f"cs{self.expanded.cs_id}" if self.expanded else None
        for key in drop:
            if key == expanded:
                continue
            row = self.rows.pop(key)
            if isinstance(row, ChangeSetRow):
                self.groups.pop(row.cs_id, None)
            if key in self.table.rows:
                self.table.remove_row(key)
        if from_top:
            self.has_older = True
        else:
            self.has_newer = True

    # ------------------------------------------------------------------ rendering

    def _visible(self) -> list[str]:
        params, free = parse_filter(self.filter_text)
        keys = sorted(self.rows, key=lambda k: self._anchor(self.rows[k]))
        return [k for k in keys if self._matches(self.rows[k], params, free)]

    def _matches(self, row: Row, params: dict[str, str], free: str) -> bool:
        if isinstance(row, ChangeSetRow):
            if not free:
                return True  # the daemon already applied actor/action/item
            hay = " ".join(
                [row.actor, row.origin_action, *row.actions, f"#{row.cs_id}", self._subject(row)]
            ).lower()
            return all(word in hay for word in free.split())
        return matches(row, {}, free)

    def _subject(self, row: ChangeSetRow) -> str:
        d = (row.origin or {}).get("details") or {}
        parts = [f"#{row.cs_id}"]
        if d.get("undo_of"):
            parts.append(f"undo of #{d['undo_of']}")
        item = d.get("item")
        if isinstance(item, dict) and item.get("identifier"):
            parts.append(str(item["identifier"]))
        elif d.get("items") is not None:
            parts.append(plural(display.number(d.get("items")), "item"))
        if d.get("lines") is not None:
            parts.append(plural(display.number(d.get("lines")), "line"))
        return " · ".join(parts)

    @staticmethod
    def _scheduled_for(row: ChangeSetRow) -> str | None:
        """The effective date a change set still waits for (issue 18.4), or None."""
        if row.status or "cancel" in row.actions or row.actions.keys() - {"approve", "cancel"}:
            return None
        day = ((row.origin or {}).get("details") or {}).get("effective_date")
        return display.plain(day) if day else None

    def _progress(self, row: ChangeSetRow) -> str:
        if "cancel" in row.actions and not row.status:
            return "cancelled: nothing sent"
        day = self._scheduled_for(row)
        if day:
            return f"scheduled for {day}"
        push = (getattr(self.app, "pushes", None) or {}).get(row.cs_id)
        if row.status is None and push:
            done, total = display.number(push.get("done")), display.number(push.get("total"))
            return f"{done:,}/{total:,} sent"
        if row.status is None:
            return "waiting" if row.origin else ""
        counts = [("✓", row.count_of("done"))] + [(STEP_MARKS[b], row.count_of(b)) for b in BAD]
        return " ".join(f"{mark}{n:,}" for mark, n in counts if n) or row.status

    def _cells(self, key: str) -> tuple[Text, ...]:
        row = self.rows[key]
        now = self.app.now()
        if isinstance(row, ChangeSetRow):
            open_ = self.expanded is not None and self.expanded.cs_id == row.cs_id
            running = row.cs_id in (getattr(self.app, "pushes", None) or {})
            if row.status:
                stage = "push.done"
            elif "cancel" in row.actions:
                stage = "cancelled"
            elif self._scheduled_for(row) and not running:
                stage = f"scheduled {self._scheduled_for(row)}"
            elif running or row.actions.keys() - {"approve", "undo"}:
                stage = "pushing"
            else:
                stage = ""
            action = f"{'▾' if open_ else '▸'} {row.origin_action}"
            if stage:
                action += f" → {stage}"
            single = row.money if row.money and not row.money.get("many") else None
            d = (row.origin or {}).get("details") or {}
            item = d.get("item") if isinstance(d.get("item"), dict) else None
            if item and (item.get("before") is not None or item.get("after") is not None):
                change = change_text(item.get("before"), item.get("after"))
            elif single and not row.status:
                change = change_text(single.get("before"), single.get("after"))
            else:
                change = self._progress(row)
            bad = row.bad
            return (
                Text(display.stamp(row.at, now)),
                Text(row.actor, overflow="ellipsis"),
                Text(
                    ("✗ " if bad else "") + action,
                    style="bold red" if bad else ("green" if row.status == "done" else "bold"),
                    overflow="ellipsis",
                ),
                Text(self._subject(row), overflow="ellipsis"),
                Text(change, overflow="ellipsis"),
            )
        e = row
        action = e.get("action") or ""
        style = (
            "bold red"
            if any(b in action for b in BAD)
            else "green"
            if action in ("push.done", "approve")
            else ""
        )
        return (
            Text(display.stamp(e.get("at"), now)),
            Text(e.get("actor") or "", overflow="ellipsis"),
            Text(("✗ " if any(b in action for b in BAD) else "") + action, style=style),
            Text(e.get("subject") or "", overflow="ellipsis"),
            Text(change_text(e.get("before"), e.get("after")), overflow="ellipsis"),
        )

    def _cursor_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        value = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return str(value) if value is not None else None

    def _rebuild(self, *, keep_key: str | None = None) -> None:
        table = self.table
        keep = keep_key if keep_key is not None else (None if self.follow else self._cursor_key())
        table.clear()
        for key in self._visible():
            table.add_row(*self._cells(key), key=key)
        if keep is not None and keep in table.rows:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        elif self.follow and table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)
        self._unseen = 0
        self._fit_columns()
        self._update_line()

    def _fit_columns(self, *, grow_only: bool = False) -> None:
        now = self.app.now()
        stamps, actors = [5], [6]
        for row in self.rows.values():
            if isinstance(row, ChangeSetRow):
                stamps.append(len(display.stamp(row.at, now)))
                actors.append(len(row.actor))
            else:
                stamps.append(len(display.stamp(row.get("at"), now)))
                actors.append(len(row.get("actor") or ""))
        for key, width in (("at", max(stamps)), ("actor", min(16, max(actors)))):
            column = self.table.columns.get(key)  # type: ignore[call-overload]
            if grow_only and column is not None and column.width >= width:
                continue
            self.table.set_column_width(key, width)  # type: ignore[attr-defined]

    def add_entry(self, entry: dict[str, Any]) -> None:
        """A live `activity` event: buffered, and applied with the others a few times a second,
        so a push that logs thousands of entries costs a few redraws, not thousands."""
        if not isinstance(entry.get("id"), int):
            return
        if not self.loaded and len(self._pending) >= MAX_SCAN:
            return  # the first load, when it answers, has them
        self._pending.append(entry)
        if self._flush_timer is None:
            self._flush_timer = self.set_timer(FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_timer = None
        if not self.loaded:  # the first load is still reading: apply these after it
            if self._pending:
                self._flush_timer = self.set_timer(FLUSH_SECONDS, self._flush)
            return
        pending, self._pending = self._pending, []
        if not pending:
            return
        self.flushes += 1
        params, free = parse_filter(self.filter_text)
        new_keys: list[str] = []
        changed: set[str] = set()
        for e in pending:
            if e["id"] <= self._newest:
                continue  # already read by the load that raced with this event
            if not self._live_matches(e, params):
                continue
            self._newest = e["id"]
            key, new = self._fold(e)
            if new:
                new_keys.append(key)
            else:
                changed.add(key)
        table = self.table
        shown = table.rows
        last = self._anchor(self.rows[str(list(shown)[-1].value)]) if table.row_count else 0
        rebuild = False
        added = 0
        for key in new_keys:
            row = self.rows.get(key)
            if row is None or not self._matches(row, params, free):
                continue
            if self._anchor(row) < last:
                rebuild = True
                continue
            table.add_row(*self._cells(key), key=key)
            last = self._anchor(row)
            added += 1
        for key in changed - set(new_keys):
            if key in shown:
                self._update_row(key)
        self._trim()
        if rebuild:
            self._rebuild()
            return
        self._fit_columns(grow_only=True)
        if self.follow and table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)
        elif added:
            self._unseen += added
        self._update_line()

    def _live_matches(self, e: dict[str, Any], params: dict[str, str]) -> bool:
        # the daemon applies actor/action/item to what it returns; live entries are checked here
        # the same way (actor exact, action a prefix, item a substring, case ignored)
        if "actor" in params and (e.get("actor") or "").lower() != params["actor"].lower():
            return False
        if "action" in params and not (e.get("action") or "").lower().startswith(
            params["action"].lower()
        ):
            return False
        return not (
            "subject" in params
            and params["subject"].lower() not in (e.get("subject") or "").lower()
        )

    def _update_row(self, key: str) -> None:
        table = self.table
        for column, cell in zip(COLUMNS, self._cells(key), strict=True):
            table.update_cell(key, column, cell)

    def _refresh_running(self) -> None:
        if not self.loaded or not self.display:
            return
        pushes = getattr(self.app, "pushes", None) or {}
        for cs_id in pushes:
            key = f"cs{cs_id}"
            if key in self.table.rows:
                self._update_row(key)

    def _update_line(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(
            "following" if self.follow else "paused", style="bold" if self.follow else "yellow"
        )
        t.append(" (f)")
        if self._unseen:
            t.append(f" · {self._unseen} new below", style="bold yellow")
        t.append(f" · {self.table.row_count} rows")
        if self.has_older:
            t.append(" · ↑ at the top reads older")
        if self.filter_text:
            t.append(f" · filter “{self.filter_text}”")
        t.append(" · e exports")
        self.query_one("#activity-line", Static).update(t)

    def current_row(self) -> Row | None:
        key = self._cursor_key()
        return self.rows.get(key) if key is not None else None

    def current_entry(self) -> dict[str, Any] | None:
        """The entry under the cursor (a change set's approve/undo entry for a change set)."""
        row = self.current_row()
        if isinstance(row, ChangeSetRow):
            return row.origin or {
                "id": row.newest,
                "action": "change set",
                "details": {"change_set_id": row.cs_id},
            }
        return row

    # ------------------------------------------------------------------ change set steps

    def action_expand(self) -> None:
        row = self.current_row()
        if not isinstance(row, ChangeSetRow):
            if row is not None:
                self.action_detail()
            return
        if self.expanded is not None and self.expanded.cs_id == row.cs_id:
            self.action_collapse()
            return
        # the row being read must stay under the cursor while new entries arrive
        self.follow = False
        self._set_expanded(StepsPage(row.cs_id))
        self._update_line()
        self.load_steps()

    def action_collapse(self) -> None:
        if self.expanded is not None:
            self._set_expanded(None)

    def _set_expanded(self, page: StepsPage | None) -> None:
        before = self.expanded
        self.expanded = page
        for old in (before, page):
            if old is not None and f"cs{old.cs_id}" in self.table.rows:
                self._update_row(f"cs{old.cs_id}")
        box = self.query_one("#activity-steps-box")
        box.set_class(page is not None, "-shown")
        if page is None:
            self.steps_table.clear()
        else:
            self._show_steps()

    @work(exclusive=True, group="activity-steps", exit_on_error=False)
    async def load_steps(self) -> None:
        page = self.expanded
        if page is None:
            return
        self._show_steps(loading=True)
        try:
            result = await self.app.client.change_set_steps(
                page.cs_id, status=page.status, offset=page.offset, limit=STEP_PAGE
            )
        except Exception:
            if self.expanded is page:
                self.query_one("#activity-steps-head", Static).update(
                    Text(f"Change set #{page.cs_id} · the steps could not be read · ← close")
                )
            raise  # the app's one error handler says what happened
        if self.expanded is not page:
            return
        page.total = display.number(result.get("total"))
        page.steps = [s for s in result.get("steps") or [] if isinstance(s, dict)]
        self._show_steps()

    def _show_steps(self, *, loading: bool = False) -> None:
        page = self.expanded
        if page is None:
            return
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"Change set #{page.cs_id}", style="bold")
        which = page.status or "all"
        if loading or page.total is None:
            head.append(f" · {which} steps · reading…")
        elif not page.total:
            head.append(f" · no {which} steps")
        else:
            last = min(page.offset + STEP_PAGE, page.total)
            head.append(f" · {which} steps {page.offset + 1:,}–{last:,} of {page.total:,}")
        head.append(" · ] [ page · s status · ← close", style="dim")
        self.query_one("#activity-steps-head", Static).update(head)
        if loading:
            return
        table = self.steps_table
        table.clear()
        self.call_after_refresh(table.fit_flex_column)  # type: ignore[attr-defined]
        for s in page.steps:
            status = str(s.get("status") or "")
            outcome = f"{STEP_MARKS.get(status, '')} {status}".strip()
            if s.get("message"):
                outcome += f": {display.plain(s['message'])}"
            contract = s.get("contract_psa_id")
            table.add_row(
                Text(step_target(s), overflow="ellipsis"),
                Text("—" if contract is None else str(contract), overflow="ellipsis"),
                Text(change_text(s.get("before"), s.get("after")), overflow="ellipsis"),
                Text(outcome, style="bold red" if status in BAD else "", overflow="ellipsis"),
            )

    def action_steps_page(self, step: int) -> None:
        page = self.expanded
        if page is None:
            self.notify("Open a change set first (enter or →).", timeout=3)
            return
        total = page.total or 0
        offset = max(0, min(page.offset + step * STEP_PAGE, max(0, total - 1)))
        offset -= offset % STEP_PAGE
        if offset != page.offset:
            page.offset = offset
            self.load_steps()

    def action_steps_status(self) -> None:
        page = self.expanded
        if page is None:
            self.notify("Open a change set first (enter or →).", timeout=3)
            return
        index = STEP_STATUSES.index(page.status) if page.status in STEP_STATUSES else 0
        page.status = STEP_STATUSES[(index + 1) % len(STEP_STATUSES)]
        page.offset, page.total = 0, None
        self.load_steps()

    # ------------------------------------------------------------------ actions

    def action_follow(self) -> None:
        self.follow = not self.follow
        if self.follow and self.has_newer:
            self.load()  # paged back past the window: read the tail again
            return
        if self.follow and self.table.row_count:
            self.table.move_cursor(row=self.table.row_count - 1, animate=False)
            self._unseen = 0
        self._update_line()

    def action_filter(self) -> None:
        self._hide_export()
        f = self.query_one("#activity-filter", Input)
        f.add_class("-shown")
        self.screen.set_focus(f)  # at once: keys typed with "/" follow (TypeAhead)

    def action_filter_by(self, kind: str) -> None:
        """Show only entries of the cursor row's actor, action or item (pressed again: all)."""
        row = self.current_row()
        if row is None:
            return
        if isinstance(row, ChangeSetRow):
            d = (row.origin or {}).get("details") or {}
            item = display.mapping(d.get("item"))
            value = {
                "actor": row.actor,
                "action": row.origin_action if row.origin else "",
                "item": str(item.get("identifier") or ""),
            }[kind]
        else:
            value = {
                "actor": row.get("actor") or "",
                "action": row.get("action") or "",
                "item": (row.get("subject") or "").split(" ")[0],
            }[kind]
        if not value:
            self.notify(
                f"This row names no single {kind}; type one with / {kind}:NAME.",
                severity="warning",
                timeout=4,
            )
            return
        tokens = self.filter_text.split()
        prefix = f"{kind}:"
        mine = [t for t in tokens if t.startswith(prefix)]
        tokens = [t for t in tokens if not t.startswith(prefix)]
        if mine != [prefix + value]:
            tokens.append(prefix + value)
        self._apply_filter(" ".join(tokens))

    def _apply_filter(self, text: str) -> None:
        old_params, _ = parse_filter(self.filter_text)
        self.filter_text = text.strip()
        f = self.query_one("#activity-filter", Input)
        with f.prevent(Input.Changed):
            f.value = self.filter_text
        f.set_class(bool(self.filter_text), "-shown")
        new_params, _ = parse_filter(self.filter_text)
        if new_params != old_params:
            self.load()
        else:
            self._rebuild()

    @on(Input.Submitted, "#activity-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._apply_filter(event.value)
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
        if self._hide_export():
            self.table.focus()
            return
        f = self.query_one("#activity-filter", Input)
        had_params = bool(parse_filter(self.filter_text)[0])
        with f.prevent(Input.Changed):
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

    # ------------------------------------------------------------------ export

    def default_export_path(self) -> str:
        return f"~/costrecon-activity-{self.app.now():%Y%m%d-%H%M}.csv"

    def action_export(self) -> None:
        box = self.query_one("#activity-export", Input)
        box.value = self.default_export_path()
        box.placeholder = "CSV file to write (enter writes, esc cancels)"
        box.add_class("-shown")
        box.focus()
        box.cursor_position = len(box.value)

    def _hide_export(self) -> bool:
        box = self.query_one("#activity-export", Input)
        shown = box.has_class("-shown")
        box.remove_class("-shown")
        return shown

    @on(Input.Submitted, "#activity-export")
    def _export_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            self.notify("Type a file name to export to, or esc to cancel.", severity="warning")
            return
        path = Path(text).expanduser()
        try:
            n = self.export_csv(path)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
            reason = getattr(exc, "strerror", None) or "not a usable file name"
            self.notify(
                f"Could not write {path}: {reason.lower()}; choose another file.",
                severity="error",
                timeout=6,
            )
            return
        self._hide_export()
        self.table.focus()
        self.notify(f"Exported {n} rows to {path}.", timeout=5)

    def export_rows(self) -> list[list[str]]:
        """What the view shows, in its order: each row, and the open change set's steps page."""
        out: list[list[str]] = []
        for key in self._visible():
            row = self.rows[key]
            if isinstance(row, ChangeSetRow):
                cells = self._cells(key)
                d = (row.origin or {}).get("details") or {}
                item = display.mapping(d.get("item"))
                out.append(
                    [
                        str(row.newest),
                        row.at or "",
                        row.actor,
                        cells[2].plain.lstrip("✗▸▾ "),
                        self._subject(row),
                        money_text(item.get("before")) if item else "",
                        money_text(item.get("after")) if item else "",
                        str(row.cs_id),
                        self._progress(row),
                    ]
                )
                if self.expanded is not None and self.expanded.cs_id == row.cs_id:
                    for s in self.expanded.steps:
                        out.append(
                            [
                                "",
                                "",
                                "",
                                f"step {s.get('target') or ''}",
                                " ".join(
                                    str(v)
                                    for v in (s.get("target_psa_id"), s.get("contract_psa_id"))
                                    if v is not None
                                ),
                                money_text(s.get("before")),
                                money_text(s.get("after")),
                                str(row.cs_id),
                                display.plain(
                                    " ".join(
                                        str(v) for v in (s.get("status"), s.get("message")) if v
                                    )
                                ),
                            ]
                        )
            else:
                e = row
                out.append(
                    [
                        str(e.get("id")),
                        e.get("at") or "",
                        e.get("actor") or "",
                        e.get("action") or "",
                        e.get("subject") or "",
                        "" if e.get("before") is None else money_text(e.get("before")),
                        "" if e.get("after") is None else money_text(e.get("after")),
                        "",
                        "",
                    ]
                )
        return out

    def export_csv(self, path: Path) -> int:
        rows = self.export_rows()
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                [
                    "id",
                    "at",
                    "actor",
                    "action",
                    "subject",
                    "before",
                    "after",
                    "change_set",
                    "outcome",
                ]
            )
            for r in rows:
                writer.writerow([csv_cell(c) for c in r])
        return len(rows)

    # ------------------------------------------------------------------ detail + undo

    def action_detail(self) -> None:
        row = self.current_row()
        if isinstance(row, ChangeSetRow):
            self.show_detail(self.current_entry() or {}, change_set_id=row.cs_id)
        elif row is not None:
            self.show_detail(row)

    @on(DataTable.RowSelected, "#activity-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_expand()

    @work(exclusive=True, group="activity-detail", exit_on_error=False)
    async def show_detail(self, entry: dict[str, Any], change_set_id: int | None = None) -> None:
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
                f"before   {money_text(entry.get('before'))}\n"
                f"after    {money_text(entry.get('after'))}\n"
            )
        details = entry.get("details")
        for k, v in details.items() if isinstance(details, dict) else []:
            if v is not None:
                shown = money_text(v) if k in MONEY_DETAILS else display.plain(v)
                t.append(f"{str(k).replace('_', ' '):<8} {shown}\n", style="dim")
        extra = []
        cs_id = change_set_id if change_set_id is not None else change_set_of(entry)
        if cs_id is not None:
            client = self.app.client
            cs = await client.change_set(cs_id, steps=False)
            extra += [Static(part) for part in change_set_parts(cs)]
            first = await client.change_set_steps(cs_id, offset=0, limit=STEP_PAGE)
            extra.append(Static(self._steps_table(first.get("steps") or [])))
            total = display.number(first.get("total"))
            if total > STEP_PAGE:
                extra.append(
                    Static(
                        Text(
                            f"{STEP_PAGE} of {total:,} steps shown: enter on the change set in "
                            "the Activity view pages through them all.",
                            style="dim",
                        )
                    )
                )
            if entry.get("action") != "undo" or cs.get("kind") == "apply":
                t.append("\nu in the Activity view undoes this change set.", style="dim")
        self.app.push_screen(
            TextScreen(f"Activity #{entry.get('id')}: {entry.get('action')}", t, extra=extra)
        )

    @staticmethod
    def _steps_table(steps: list[dict[str, Any]]) -> Table:
        table = Table(box=None, expand=True, header_style="bold", pad_edge=False)
        for col in ("Target", "Contract", "Before → after", "Outcome"):
            table.add_column(col, no_wrap=col != "Outcome")
        for s in steps:
            status = str(s.get("status") or "")
            outcome = f"{STEP_MARKS.get(status, '')} {status}"
            if s.get("message"):
                outcome += f": {display.plain(s['message'])}"
            table.add_row(
                step_target(s),
                str(s.get("contract_psa_id") or "—"),
                change_text(s.get("before"), s.get("after")),
                Text(outcome, style="bold red" if status in BAD else ""),
            )
        return table

    def action_undo(self) -> None:
        row = self.current_row()
        cs_id = (
            row.cs_id
            if isinstance(row, ChangeSetRow)
            else change_set_of(row)
            if row is not None
            else None
        )
        if cs_id is None:
            self.notify(
                "This entry belongs to no change set; pick a change set (▸) to undo.",
                severity="warning",
            )
            return
        self.undo(cs_id)

    def action_cancel_scheduled(self) -> None:
        row = self.current_row()
        group = (
            row
            if isinstance(row, ChangeSetRow)
            else self.groups.get(change_set_of(row) or -1)
            if row is not None
            else None
        )
        day = self._scheduled_for(group) if group is not None else None
        if group is None or day is None:
            self.notify(
                "Only a scheduled change set (one waiting for its effective date) can be "
                "cancelled; pick one marked scheduled.",
                severity="warning",
            )
            return
        self.cancel_scheduled(group.cs_id, day)

    @work(exclusive=True, group="activity-cancel", exit_on_error=False)
    async def cancel_scheduled(self, cs_id: int, day: str) -> None:
        from costrecon_tui.screens.dialogs import ConfirmScreen

        question = f"Cancel change set #{cs_id}, scheduled for {day}?"
        detail = "Nothing has been sent; its costs will never be pushed."
        if not await self.app.push_screen_wait(ConfirmScreen(question, detail, yes="Cancel it")):
            return
        await self.app.client.cancel_change_set(cs_id)
        self.notify(f"Change set #{cs_id} cancelled; nothing was sent.", timeout=5)

    @work(exclusive=True, group="activity-undo", exit_on_error=False)
    async def undo(self, cs_id: int) -> None:
        from costrecon_tui.screens.preview import UndoScreen

        client = self.app.client
        preview = (await client.undo(cs_id, dry_run=True) or {}).get("preview") or {}
        if not await self.app.push_screen_wait(UndoScreen(cs_id, preview)):
            return
        # An undo of a big set may be answered "recording" (issue 14): said at once.
        client.on_recording = lambda message: self.notify(message, timeout=8)
        result = await client.undo(cs_id)
        new = result.get("change_set") or {}
        self.notify(
            f"Undo of change set #{cs_id} queued as change set #{new.get('id', '?')}.", timeout=5
        )
