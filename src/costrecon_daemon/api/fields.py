"""Typed field helpers: read one field of a JSON body or a query string, or refuse the request
with a message naming the field (a malformed body is a 400, never a 500)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from ..errors import InvalidInput


async def body_of(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json(loads=lambda s: json.loads(s, parse_float=Decimal))
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("bad_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidInput("bad_json", "The request body must be a JSON object.")
    return data


def field_decimal(
    data: dict[str, Any], name: str, *, required: bool = True, minimum: Decimal | None = None
) -> Decimal | None:
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
    try:
        dec = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput(
            "bad_field", f"The field {name!r} is not a decimal number: {value!r}."
        ) from None
    if not dec.is_finite():
        raise InvalidInput("bad_field", f"The field {name!r} is not a decimal number: {value!r}.")
    if dec.as_tuple().exponent < -4:  # type: ignore[operator]
        raise InvalidInput(
            "bad_field", f"The field {name!r} has more than 4 decimal places: {value!r}."
        )
    if minimum is not None and dec < minimum:
        raise InvalidInput(
            "bad_field", f"The field {name!r} must be at least {minimum}, got {value!r}."
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
    value = data.get(name)
    if value is None or value == "":
        if required and default is None:
            raise InvalidInput("missing_field", f"The field {name!r} is required.")
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(
            "bad_field", f"The field {name!r} must be a whole number, got {value!r}."
        ) from None
    if minimum is not None and number < minimum:
        raise InvalidInput("bad_field", f"The field {name!r} must be at least {minimum}.")
    if maximum is not None and number > maximum:
        number = maximum
    return number


def field_str(
    data: dict[str, Any],
    name: str,
    *,
    required: bool = True,
    choices: tuple[str, ...] | None = None,
    default: str | None = None,
) -> str | None:
    value = data.get(name, default)
    if value is None:
        if required:
            raise InvalidInput("missing_field", f"The field {name!r} is required.")
        return None
    if not isinstance(value, str):
        raise InvalidInput("bad_field", f"The field {name!r} must be a string.")
    if choices and value not in choices:
        raise InvalidInput(
            "bad_field",
            f"The field {name!r} must be one of {', '.join(choices)}, got {value!r}.",
        )
    return value


def field_bool(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput("bad_field", f"The field {name!r} must be true or false.")
    return value


def path_id(request: web.Request, name: str) -> int:
    """A route's ``{name:\\d+}`` part as an int."""
    return int(request.match_info[name])


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
