"""How amounts, changes, row states and times are written for people (one place for all views).

Meaning never rests on colour alone: every increase carries ``▲`` and a ``+`` sign, every decrease
``▼`` and a ``−`` sign, and every row state is a word, so the table reads the same under NO_COLOR.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from costrecon_daemon.money import display as money

MANUAL_MARK = "✎"
IMPORT_MARK = "↓"
API_MARK = "⇄"
SOURCE_MARKS = {"manual": MANUAL_MARK, "import": IMPORT_MARK, "api": API_MARK}
SOURCE_WORDS = {"manual": "manual", "import": "imported", "api": "distributor API"}

UP = "▲"
DOWN = "▼"


def amount(value: Decimal | None) -> str:
    return money(value)


def signed(value: Decimal) -> str:
    if value > 0:
        return "+" + money(value)
    if value < 0:
        return "−" + money(-value)
    return money(value)


def change_text(change: Decimal | None, pct: Decimal | None, *, with_pct: bool = True) -> str:
    """``▲+1.20 +5.0%`` / ``▼−0.50 −2.1%`` / ``= 0.00`` / ``—``."""
    if change is None:
        return "—"
    if change == 0:
        return "= 0.00"
    arrow = UP if change > 0 else DOWN
    text = f"{arrow}{signed(change)}"
    if with_pct and pct is not None:
        sign = "+" if pct > 0 else "−" if pct < 0 else ""
        text += f" {sign}{abs(pct):.1f}%"
    return text


def direction(change: Decimal | None) -> str:
    if change is None or change == 0:
        return "none"
    return "up" if change > 0 else "down"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def age(value: str | None, now: datetime) -> str:
    """``just now`` / ``12 min ago`` / ``5 h ago`` / ``3 d ago`` (``in 48 min`` for the future)."""
    dt = parse_time(value)
    if dt is None:
        return "never"
    seconds = (now - dt).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = "just now" if not future else "in under a minute"
        return text
    if seconds < 3600:
        span = f"{int(seconds // 60)} min"
    elif seconds < 86400 * 2:
        span = f"{int(seconds // 3600)} h"
    else:
        span = f"{int(seconds // 86400)} d"
    return f"in {span}" if future else f"{span} ago"


def stamp(value: str | None, now: datetime | None = None) -> str:
    """An absolute time in UTC: ``09:15`` today, ``2026-03-02 09:15`` any other day (a date
    without its year is ambiguous in a log kept for years)."""
    dt = parse_time(value)
    if dt is None:
        return "—"
    dt = dt.astimezone(UTC)
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return dt.strftime("%H:%M") if dt.date() == today else dt.strftime("%Y-%m-%d %H:%M")


STAMP_WIDTH = 16


def plain(value: Any) -> str:
    """Any payload value as words: dicts become ``key value, …`` and lists ``a, b``; never a
    Python repr on screen."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{str(k).replace('_', ' ')} {plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return ", ".join(plain(v) for v in value) or "none"
    return str(value)


def mapping(value: Any) -> dict[str, Any]:
    """A payload value that should be an object, or an empty one when the daemon sent another."""
    return value if isinstance(value, dict) else {}


def number(value: Any, default: int = 0) -> int:
    """A count from a payload that may omit it or send null."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def state_text(
    state: str,
    detail: dict[str, Any],
    *,
    vendor: Decimal | None,
    change: Decimal | None,
    narrow: bool,
) -> str:
    """The action column: what the row needs or what is happening to it."""
    if state == "pushing":
        done, total = detail.get("done"), detail.get("total")
        progress = f"{done}/{total}" if done is not None and total is not None else "…"
        return f"push {progress}" if narrow else f"pushing {progress}"
    if state == "pending":
        return "◷ pending"
    if state == "done" and not change:
        return "✓ done"
    # "done" while the vendor cost differs again (a later edit, a revert, a new price file) is
    # not true any more: the row needs approving like any other

    if state == "conflict":
        return "! conflict"
    if state == "failed":
        return "✗ failed"
    if state == "denied":
        return "✗ denied"
    if vendor is None:
        return "no vendor"
    if not change:
        return "in sync"
    return "approve"


def state_kind(state: str) -> str:
    if state in ("pushing", "pending"):
        return "busy"
    if state == "done":
        return "ok"  # the text says "approve" when the cost moved again since
    if state in ("conflict", "failed", "denied"):
        return "bad"
    return "idle"


def source_text(source: Any, now: datetime) -> str:
    """``imported from pax8-2026-02.csv row 14, 3 d ago`` / ``manual by mrivera, 2 h ago``."""
    if source is None:
        return "no vendor cost"
    kind = source.kind
    when = age(source.at, now)
    if kind == "manual":
        who = f" by {source.by}" if source.by else ""
        return f"{MANUAL_MARK} manual{who}, {when}"
    if kind == "import":
        where = source.file or "a price file"
        row = f" row {source.row}" if source.row else ""
        vendor = (
            f" ({source.vendor}{' ' + source.sku if source.sku else ''})" if source.vendor else ""
        )
        return f"{IMPORT_MARK} imported from {where}{row}{vendor}, {when}"
    return (
        f"{API_MARK} {SOURCE_WORDS.get(kind, kind)}"
        f"{' ' + source.vendor if source.vendor else ''}, {when}"
    )


def duration(seconds: Any) -> str:
    """``~40 s`` / ``~3 min``; an estimate the daemon could not make says so."""
    if seconds is None:
        return "time not estimated"
    try:
        seconds = float(Decimal(str(seconds)))
    except (ArithmeticError, ValueError):
        return "time not estimated"
    if seconds < 90:
        return f"~{round(seconds)} s"
    if seconds < 5400:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.1f} h"
