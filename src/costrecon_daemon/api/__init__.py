"""The local API (the HTTP adapter over the domain): HTTP/JSON over a Unix socket, routes under /v1 (README "Local API").

Every request is attributed to the OS user on the other end of the socket (SO_PEERCRED), checked
against allowed_users/allowed_groups. Errors are ``{"error": {"code", "message"}}``; a malformed
body is a 400 naming the field, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import CostreconError
from ..peers import Peer, peer_of
from .context import SERVICES, Services, services
from .errors import error_response, response_for
from .routes import changes, costs, history, imports, mappings, system

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
            "(or one of its groups to daemon.allowed_groups) in the daemon's config and restart it.",
        )
    request["peer"] = peer
    try:
        return await handler(request)
    except CostreconError as exc:
        return response_for(exc)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response(
                404, "not_found", f"No such API route: {request.method} {request.path}."
            )
        if exc.status == 405:
            return error_response(
                405, "method_not_allowed", f"{request.method} is not allowed on {request.path}."
            )
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(
            500, "internal", "costrecond hit an internal error; details are in the daemon log."
        )


def make_app(parts: Services) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=8 * 1024 * 1024)
    app[SERVICES] = parts
    for module in (system, costs, changes, imports, mappings, history):
        app.add_routes(module.routes)
    return app


__all__ = ["Services", "make_app"]
