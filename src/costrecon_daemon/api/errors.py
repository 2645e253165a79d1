"""The one place domain errors become HTTP responses: ``{"error": {"code", "message"[,
"data"]}}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import Conflict, CostreconError, InvalidInput, NotFound
from ..jsonable import dumps

STATUS: dict[type[CostreconError], int] = {InvalidInput: 400, NotFound: 404, Conflict: 409}


def error_response(
    status: int, code: str, message: str, data: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if data:
        body["data"] = data
    return web.json_response({"error": body}, status=status, dumps=dumps)


def response_for(exc: CostreconError) -> web.Response:
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
    return error_response(status, exc.code, exc.message, exc.data)


def error_json(exc: BaseException) -> dict[str, Any]:
    """An error as the body of a response would carry it, with its HTTP status (for a request
    refused after it was answered "recording", reported when the client follows it)."""
    if not isinstance(exc, CostreconError):
        return {
            "status": 500,
            "code": "internal",
            "message": "costrecond could not record it (see its log); nothing will be pushed.",
        }
    body: dict[str, Any] = {
        "status": next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400),
        "code": exc.code,
        "message": exc.message,
    }
    if exc.data:
        body["data"] = exc.data
    return body


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)
