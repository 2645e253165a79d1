"""JSON for the daemon's outputs: one time format and one Decimal-aware encoder.

(psa/http.py keeps its own encoder for request bodies sent *to* a PSA: there a Decimal must be a
JSON number literal, while the local API writes amounts as strings.)
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any


def iso(t: dt.datetime | None) -> str | None:
    """A timestamp as the API shows it: UTC, whole seconds, ``Z`` suffix."""
    if t is None:
        return None
    if t.tzinfo is not None:  # the database hands back aware UTC times; naive ones are UTC too
        t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return format(o, "f")
    if hasattr(o, "isoformat"):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(obj: Any) -> str:
    """Compact JSON; Decimals as plain decimal strings, dates and times in ISO 8601."""
    return json.dumps(obj, default=_default, separators=(",", ":"))
