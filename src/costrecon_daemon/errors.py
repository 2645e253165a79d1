"""The daemon's one error hierarchy: what went wrong, in words for people, never an HTTP status.

Each error has a stable ``code`` (clients branch on it), a one-sentence ``message`` saying what
happened and what to do, and optional ``data``. The API maps the classes to responses in one
place (``api/errors.py``); nothing below the API knows about HTTP.
"""

from __future__ import annotations

from typing import Any


class CostreconError(Exception):
    """A request the daemon refuses, with the reason."""

    def __init__(self, code: str, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class InvalidInput(CostreconError):
    """The request itself is wrong: a missing or malformed field, a value out of range."""


class NotFound(CostreconError):
    """The thing asked for does not exist (an item, a change set, a mapping, an import)."""


class Conflict(CostreconError):
    """The request is well formed but the current state forbids it (stale, busy, no PSA)."""
