"""The local API (the HTTP adapter over the domain): HTTP/JSON over a Unix socket, routes under /v1
(README "Local API").

Every request is attributed to the OS user on the other end of the socket (SO_PEERCRED), checked
against allowed_users/allowed_groups. Errors are ``{"error": {"code", "message"}}``; a malformed
body is a 400 naming the field, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..errors import CostreconError
from ..peers import Peer, peer_of
from ..text import printable
from .context import SERVICES, Services, services
from .errors import error_response, response_for
from .routes import changes, costs, history, imports, mappings, system, vendors

log = logging.getLogger(__name__)


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None:
        return error_response(
            403,
            "forbidden",
            "Cannot identify the caller; connect through the daemon's Unix socket.",
        )
    try:
        peer: Peer = peer_of(sock)
    except OSError:
        return error_response(
            403,
            "forbidden",
            "Cannot identify the caller; connect through the daemon's Unix socket.",
        )
    if not services(request).gate.allows(peer):
        log.warning(
            "refused API call %s %s from user %s (uid %d)",
            request.method,
            request.path,
            peer.user,
            peer.uid,
        )
        return error_response(
            403,
            "forbidden",
            f"User {peer.user} is not allowed to use costrecond; add it to daemon.allowed_users "
            "(or one of its groups to daemon.allowed_groups) in the daemon's config and restart "
            "it.",
        )
    request["peer"] = peer
    try:
        return await handler(request)
    except CostreconError as exc:
        return response_for(exc)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response(
                404, "not_found", f"No such API route: {request.method} {printable(request.path)}."
            )
        if exc.status == 405:
            return error_response(
                405,
                "method_not_allowed",
                f"{printable(request.method)} is not allowed on {printable(request.path)}.",
            )
        if exc.status == 413:
            return error_response(
                413,
                "too_large",
                f"The request body is larger than the {MAX_BODY // (1024 * 1024)} MiB the API "
                "accepts; send fewer items per request.",
            )
        if exc.status >= 400:
            return error_response(exc.status, "http_error", exc.reason or "Bad request.")
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(
            500, "internal", "costrecond hit an internal error; details are in the daemon log."
        )


# Errors the HTTP parser finds before any route runs (an over-long request line or header, a bad
# method): aiohttp answers them itself, in plain text, bypassing the middleware above.
_PARSER_ERRORS = {
    400: ("bad_request", "The request is not valid HTTP."),
    413: ("too_large", "The request is larger than the API accepts."),
    431: ("headers_too_large", "The request's headers are larger than the API accepts."),
    501: ("not_implemented", "The API does not implement that HTTP method."),
}


class _JsonErrorHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The base class logs the error and refuses (ConnectionError) once a response has started;
        # its plain-text answer is replaced by the API's JSON error body.
        plain = super().handle_error(request, status, exc, message)
        code, text = _PARSER_ERRORS.get(
            status,
            ("internal", "costrecond hit an internal error; details are in the daemon log.")
            if status >= 500
            else ("bad_request", "The request is not valid HTTP."),
        )
        if 400 <= status < 500 and message and "too long" in message.lower():
            code, text = "too_large", "The request line or a header is longer than the API accepts."
        resp = error_response(plain.status, code, text)
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """The runner for :func:`make_app`: every answer, parser errors included, is JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp offers no hook for the handler class; the server only adds __call__ over its
        # base, so re-classing the built server keeps everything the app runner set up.
        server.__class__ = _JsonErrorServer
        return server


MAX_BODY = 8 * 1024 * 1024


def make_app(parts: Services) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[SERVICES] = parts
    for module in (system, costs, changes, imports, mappings, history, vendors):
        app.add_routes(module.routes)
    return app


__all__ = ["ApiRunner", "Services", "make_app"]
