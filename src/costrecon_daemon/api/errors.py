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


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)
