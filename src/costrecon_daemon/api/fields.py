"""Typed field helpers: read one field of a JSON body, a query string or a path, or refuse the
request with a message naming the field (a malformed or hostile request is a 400, never a 500).

The bounds exist because the storage has them: ids are SQLite/PostgreSQL 64-bit integers, money
is stored as integer ten-thousandths in a 64-bit column (so 9.2e14 would already overflow), and
text goes into UTF-8 columns and onto technicians' terminals (issue 13 items 6 and 7).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from ..errors import InvalidInput
from ..text import has_control

MAX_ID = 2**63 - 1
# A cost bound far above any real catalogue price and far below the 64-bit ten-thousandths limit.
MAX_COST = Decimal(10) ** 12
# JSON nesting a body of ours never needs; deeper is refused before anything walks it.
MAX_DEPTH = 32
# Longer numbers are no id or cost of ours; refusing them early keeps a 5,000-digit number from
# costing a big-integer conversion (and from being echoed back whole in the message).
_MAX_NUMBER_CHARS = 40


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_int(text: str) -> int | Decimal:
    # Python refuses to parse ints over 4,300 digits with a bare ValueError that would name no
    # field; keep such a number as a Decimal so the field helper refuses it by name.
    return int(text) if len(text) <= 19 else Decimal(text)


def _check_tree(value: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput("bad_json", f"The request body is nested more than {MAX_DEPTH} deep.")
    if isinstance(value, str):
        _check_unicode(value, where)
    elif isinstance(value, dict):
        for k, v in value.items():
            path = f"{where}.{k}" if where else k
            _check_unicode(k, path)
            _check_tree(v, path, depth + 1)
    elif isinstance(value, list):
        for n, v in enumerate(value):
            _check_tree(v, f"{where}[{n}]", depth + 1)


def _check_unicode(text: str, name: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\ud800") is valid JSON but no text: it cannot be stored or shown.
        raise InvalidInput(
            "bad_field", f"The field {name!r} holds an invalid character (a lone surrogate)."
        ) from None


async def body_of(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json(
            loads=lambda s: json.loads(s, parse_float=Decimal, parse_int=_json_int)
        )
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("bad_json", "The request body is not valid JSON.") from None
    except RecursionError:
        raise InvalidInput(
            "bad_json", f"The request body is nested more than {MAX_DEPTH} deep."
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput("bad_json", "The request body must be a JSON object.")
    _check_tree(data, "")
    return data


def field_decimal(
    data: dict[str, Any],
    name: str,
    *,
    required: bool = True,
    minimum: Decimal | None = None,
    maximum: Decimal = MAX_COST,
) -> Decimal | None:
    """A money amount: finite, at most 4 decimal places, ``|value| <= maximum`` (1e12)."""
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidInput("missing_field", f"The field {name!r} is required.")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidInput(
            "bad_field",
            f'The field {name!r} must be a decimal number as a string, such as "12.50".',
        )
    text = str(value).strip()
    if len(text) > _MAX_NUMBER_CHARS:
        raise InvalidInput(
            "bad_field", f"The field {name!r} must be at most {maximum}, got {_shown(text)}."
        )
    try:
        dec = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(
            "bad_field", f"The field {name!r} is not a decimal number: {_shown(value)}."
        ) from None
    if not dec.is_finite():
        raise InvalidInput(
            "bad_field", f"The field {name!r} is not a decimal number: {_shown(value)}."
        )
    if abs(dec) > maximum:
        raise InvalidInput(
            "bad_field", f"The field {name!r} must be at most {maximum}, got {_shown(text)}."
        )
    if dec != dec.quantize(Decimal("0.0001")):
        raise InvalidInput(
            "bad_field", f"The field {name!r} has more than 4 decimal places: {_shown(value)}."
        )
    if minimum is not None and dec < minimum:
        raise InvalidInput(
            "bad_field", f"The field {name!r} must be at least {minimum}, got {_shown(value)}."
        )
    return dec


def field_int(
    data: dict[str, Any] | Any,
    name: str,
    *,
    required: bool = True,
    default: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    """A whole number within 64 bits; ``maximum`` clamps (a page size), fractions are refused."""
    value = data.get(name)
    if value is None or value == "":
        if required and default is None:
            raise InvalidInput("missing_field", f"The field {name!r} is required.")
        return default
    number = _whole(value, name)
    if minimum is not None and number < minimum:
        raise InvalidInput("bad_field", f"The field {name!r} must be at least {minimum}.")
    if maximum is not None and number > maximum:
        number = maximum
    return number


def _whole(value: Any, name: str) -> int:
    bad = InvalidInput(
        "bad_field",
        f"The field {name!r} must be a whole number from {-MAX_ID} to {MAX_ID}, "
        f"got {_shown(value)}.",
    )
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        number = value
    elif isinstance(value, Decimal):
        # 1.9 is not item 1: a fraction is refused, never truncated.
        if not value.is_finite() or value != value.to_integral_value() or abs(value) > MAX_ID:
            raise bad
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 20 or not text.lstrip("+-").isascii() or not text.lstrip("+-").isdigit():
            raise bad
        number = int(text)
    else:
        raise bad
    if abs(number) > MAX_ID:
        raise bad
    return number


def field_id(data: dict[str, Any] | Any, name: str) -> int:
    """A required database id: a whole number from 1 to 2**63-1."""
    number = field_int(data, name, minimum=1)
    assert number is not None  # required
    return number


def field_ids(data: dict[str, Any], name: str, *, most: int) -> list[int]:
    values = data.get(name)
    if not isinstance(values, list):
        raise InvalidInput(
            "bad_field", f"The field {name!r} must be a list of item ids (whole numbers)."
        )
    if len(values) > most:
        raise InvalidInput("bad_field", f"Ask for at most {most} rows at a time.")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_ID:
            raise InvalidInput(
                "bad_field",
                f"The field {name!r} must be a list of item ids (whole numbers), got {_shown(v)}.",
            )
        out.append(v)
    return out


def field_seconds(q: Any, name: str, *, default: float, maximum: float) -> float:
    """A duration in seconds from a query string, clamped to ``maximum``."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        seconds = float(raw) if len(raw) <= _MAX_NUMBER_CHARS else math.nan
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(
            "bad_field",
            f"The field {name!r} must be a number of seconds from 0 to {maximum:g}, "
            f"got {_shown(raw)}.",
        )
    return min(seconds, maximum)


def field_str(
    data: dict[str, Any],
    name: str,
    *,
    required: bool = True,
    choices: tuple[str, ...] | None = None,
    default: str | None = None,
    max_length: int = 1000,
) -> str | None:
    """Text without control characters (they would be stored raw and replayed onto terminals)."""
    value = data.get(name, default)
    if value is None:
        if required:
            raise InvalidInput("missing_field", f"The field {name!r} is required.")
        return None
    if not isinstance(value, str):
        raise InvalidInput("bad_field", f"The field {name!r} must be a string.")
    _check_unicode(value, name)
    if has_control(value):
        raise InvalidInput(
            "bad_field",
            f"The field {name!r} must not contain control characters "
            "(newlines, tabs, escape sequences).",
        )
    if len(value) > max_length:
        raise InvalidInput(
            "bad_field", f"The field {name!r} must be at most {max_length} characters."
        )
    if choices and value not in choices:
        raise InvalidInput(
            "bad_field",
            f"The field {name!r} must be one of {', '.join(choices)}, got {_shown(value)}.",
        )
    return value


def field_bool(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput("bad_field", f"The field {name!r} must be true or false.")
    return value


def path_id(request: web.Request, name: str) -> int:
    """A route's id part (``{name}``) as an int from 1 to 2**63-1, or a 400 naming it."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 1 <= int(raw) <= MAX_ID:
        raise InvalidInput(
            "bad_field",
            f"The {name.replace('_', ' ')} must be a whole number from 1 to {MAX_ID}, "
            f"got {_shown(raw)}.",
        )
    return int(raw)


def field_time(q: Any, name: str) -> Any:
    value = q.get(name)
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            "bad_field",
            f"The field {name!r} must be an ISO date-time such as 2026-01-31T12:00:00Z.",
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def field_date(data: Any, name: str) -> dt.date | None:
    """A calendar day, YYYY-MM-DD (None when absent or empty)."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) != 10:
        raise InvalidInput(
            "bad_field", f"The field {name!r} must be a date such as 2027-01-01 (YYYY-MM-DD)."
        )
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            "bad_field",
            f"The field {name!r} is not a real date: {_shown(value)} (use YYYY-MM-DD).",
        ) from None
