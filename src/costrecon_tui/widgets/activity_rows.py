"""The Activity view's rows: a change set's entries folded into one row, and how amounts, steps
and CSV cells are written. No Textual here: the view (``screens/activity.py``) draws these."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from costrecon_tui.widgets import display

BAD = ("conflict", "failed", "denied")
STEP_MARKS = {
    "done": "✓",
    "conflict": "!",
    "failed": "✗",
    "denied": "✗",
    "pending": "◷",
    "sending": "◷",
    "skipped": "–",
    "cancelled": "–",
}


def change_set_of(entry: dict[str, Any]) -> int | None:
    cs = (entry.get("details") or {}).get("change_set_id")
    return int(cs) if cs is not None else None


def money_text(value: Any) -> str:
    """An amount as the cost grid writes it (two decimals, more only when the value has them);
    anything that is not a number is shown as words."""
    if value is None:
        return "—"
    try:
        return display.amount(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return display.plain(value)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def change_text(before: Any, after: Any) -> str:
    if before is None and after is None:
        return ""
    return f"{money_text(before)} → {money_text(after)}"


def step_target(s: dict[str, Any]) -> str:
    """``item M365-BS`` / ``line 88121``: the catalogue item by its identifier when the daemon
    sends it, a contract line by its PSA id."""
    target = str(s.get("target") or "")
    if target == "item" and s.get("identifier"):
        return f"item {s['identifier']}"
    return f"{target} {s.get('target_psa_id') or ''}".strip()


MONEY_DETAILS = ("monthly_impact", "found", "cost", "price", "before", "after")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """Spreadsheet-safe: a leading quote stops ``=``, ``+``, ``-``, ``@`` being read as a
    formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


@dataclass(slots=True)
class ChangeSetRow:
    """Every activity entry of one change set, folded: what the row shows, never the entries."""

    cs_id: int
    anchor: int  # the smallest entry id seen: where the row sits in the log
    newest: int
    at: str | None
    actor: str
    origin: dict[str, Any] | None = None  # the approve/undo entry, its item list trimmed
    actions: Counter[str] = field(default_factory=Counter)
    status: str | None = None  # from push.done
    outcome: dict[str, int] = field(default_factory=dict)  # counts push.done recorded
    money: dict[str, Any] | None = None  # the one entry with before → after, while only one

    def fold(self, e: dict[str, Any]) -> None:
        action = str(e.get("action") or "")
        self.actions[action] += 1
        self.anchor = min(self.anchor, e["id"])
        if e["id"] >= self.newest:
            self.newest, self.at = e["id"], e.get("at")
        details = display.mapping(e.get("details"))
        if action in ("approve", "undo"):
            items = details.get("items")
            if isinstance(items, list):
                # a vendor-wide rise lists thousands of items: keep one, and the count
                details = {
                    **details,
                    "items": len(items),
                    "item": items[0] if len(items) == 1 else None,
                }
            self.origin = {**e, "details": details}
            self.actor = str(e.get("actor") or self.actor)
        elif action == "push.done":
            self.status = details.get("status") or "finished"
            self.outcome = {
                k: display.number(details.get(k))
                for k in ("done", "conflict", "failed", "denied", "cancelled")
                if details.get(k) is not None
            }
        if e.get("before") is not None or e.get("after") is not None:
            self.money = e if not self.money else {"many": True}

    @property
    def origin_action(self) -> str:
        return str((self.origin or {}).get("action") or "change set")

    def count_of(self, status: str) -> int:
        if status in self.outcome:
            return self.outcome[status]
        # before push.done: the per-target entries (push.line.conflict, push.item.failed…)
        return sum(
            n for a, n in self.actions.items() if a.count(".") == 2 and a.endswith("." + status)
        )

    @property
    def bad(self) -> bool:
        return self.status in ("partial", "failed", "denied") or any(self.count_of(b) for b in BAD)


Row = dict[str, Any] | ChangeSetRow


def row_key(e: dict[str, Any]) -> str:
    cs = change_set_of(e)
    return f"cs{cs}" if cs is not None else f"e{e['id']}"
