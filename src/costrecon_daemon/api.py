"""The local API: HTTP/JSON over a Unix socket, routes under /v1 (README "Local API").

Every request is attributed to the OS user on the other end of the socket (SO_PEERCRED), checked
against allowed_users/allowed_groups. Errors are ``{"error": {"code", "message"}}``; a malformed
body is a 400 naming the field, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import API_VERSION, __version__
from . import activity as activity_log
from . import events as event_log
from .peers import Peer, peer_of

if TYPE_CHECKING:
    from .service import Daemon

log = logging.getLogger(__name__)
DAEMON_KEY = web.AppKey("daemon", object)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.data = status, code, message, data


def error_response(
    status: int, code: str, message: str, data: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if data:
        body["data"] = data
    return web.json_response({"error": body}, status=status, dumps=dumps)


def _default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return format(o, "f")
    if hasattr(o, "isoformat"):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_default, separators=(",", ":"))


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


# ---------------------------------------------------------------- request helpers


async def body_of(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json(loads=lambda s: json.loads(s, parse_float=Decimal))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "The request body must be a JSON object.")
    return data


def field_decimal(
    data: dict[str, Any], name: str, *, required: bool = True, minimum: Decimal | None = None
) -> Decimal | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ApiError(400, "missing_field", f"The field {name!r} is required.")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ApiError(
            400,
            "bad_field",
            f'The field {name!r} must be a decimal number as a string, such as "12.50".',
        )
    try:
        dec = Decimal(str(value).strip())
    except InvalidOperation:
        raise ApiError(
            400, "bad_field", f"The field {name!r} is not a decimal number: {value!r}."
        ) from None
    if not dec.is_finite():
        raise ApiError(400, "bad_field", f"The field {name!r} is not a decimal number: {value!r}.")
    if dec.as_tuple().exponent < -4:  # type: ignore[operator]
        raise ApiError(
            400, "bad_field", f"The field {name!r} has more than 4 decimal places: {value!r}."
        )
    if minimum is not None and dec < minimum:
        raise ApiError(
            400, "bad_field", f"The field {name!r} must be at least {minimum}, got {value!r}."
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
            raise ApiError(400, "missing_field", f"The field {name!r} is required.")
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError(
            400, "bad_field", f"The field {name!r} must be a whole number, got {value!r}."
        ) from None
    if minimum is not None and number < minimum:
        raise ApiError(400, "bad_field", f"The field {name!r} must be at least {minimum}.")
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
            raise ApiError(400, "missing_field", f"The field {name!r} is required.")
        return None
    if not isinstance(value, str):
        raise ApiError(400, "bad_field", f"The field {name!r} must be a string.")
    if choices and value not in choices:
        raise ApiError(
            400,
            "bad_field",
            f"The field {name!r} must be one of {', '.join(choices)}, got {value!r}.",
        )
    return value


def daemon_of(request: web.Request) -> Daemon:
    return request.app[DAEMON_KEY]  # type: ignore[return-value]


def actor_of(request: web.Request) -> str:
    return request["peer"].user


# ---------------------------------------------------------------- middleware


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    daemon = daemon_of(request)
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
    if not daemon.gate.allows(peer):
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
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.data)
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


# ---------------------------------------------------------------- daemon routes

routes = web.RouteTableDef()


@routes.get("/v1/health")
async def health(request: web.Request) -> web.Response:
    d = daemon_of(request)
    return ok(
        {
            "ok": True,
            "api_version": API_VERSION,
            "version": __version__,
            "schema_version": d.schema_version,
            "pid": d.pid,
        }
    )


@routes.get("/v1/status")
async def status(request: web.Request) -> web.Response:
    return ok(await daemon_of(request).status())


@routes.post("/v1/sync")
async def sync_now(request: web.Request) -> web.Response:
    body = await body_of(request)
    full = body.get("full", False)
    if not isinstance(full, bool):
        raise ApiError(400, "bad_field", "The field 'full' must be true or false.")
    return ok(await daemon_of(request).request_sync(actor_of(request), full=full), status=202)


@routes.get("/v1/activity")
async def activity(request: web.Request) -> web.Response:
    q = request.query
    kwargs = dict(
        limit=field_int(q, "limit", required=False, default=200, minimum=1, maximum=5000),
        before_id=field_int(q, "before_id", required=False),
        after_id=field_int(q, "after_id", required=False),
        actor=q.get("actor") or None,
        action=q.get("action") or None,
        subject=q.get("subject") or None,
        since=_time(q, "since"),
        until=_time(q, "until"),
    )
    entries = await daemon_of(request).store.read(lambda c: activity_log.query(c, **kwargs))
    return ok({"entries": entries})


def _time(q: Any, name: str) -> Any:
    import datetime as dt

    value = q.get(name)
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400,
            "bad_field",
            f"The field {name!r} must be an ISO date-time such as 2026-01-31T12:00:00Z.",
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@routes.get("/v1/activity/verify")
async def activity_verify(request: web.Request) -> web.Response:
    result = await daemon_of(request).store.read(activity_log.verify)
    return ok(result.to_json())


@routes.get("/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    d = daemon_of(request)
    since = field_int(request.query, "since", required=False, default=0, minimum=0)
    if request.query.get("stream") in ("1", "true"):
        return await _stream_events(request, d, since)
    timeout = min(float(request.query.get("timeout", 25) or 25), 60.0)
    generation = d.bus.generation
    found = await d.store.read(event_log.after, since)
    if not found and timeout > 0:
        await d.bus.wait(generation, timeout)
        found = await d.store.read(event_log.after, since)
    last = found[-1]["id"] if found else since
    return ok({"events": found, "last_id": last})


async def _stream_events(request: web.Request, d: Daemon, since: int) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    while not d.stopping.is_set():
        generation = d.bus.generation
        found = await d.store.read(event_log.after, since)
        for e in found:
            await resp.write((dumps(e) + "\n").encode())
            since = e["id"]
        if not found:
            await d.bus.wait(generation, 15.0)
    await resp.write_eof()
    return resp


# ---------------------------------------------------------------- costs (recon.py)


def _recon(request: web.Request) -> Any:
    return daemon_of(request).parts["recon"]


@routes.get("/v1/costs")
async def cost_view(request: web.Request) -> web.Response:
    from .recon import SORT_KEYS, STATES

    q = request.query
    sort = q.get("sort", "identifier")
    if sort not in SORT_KEYS:
        raise ApiError(
            400, "bad_field", f"sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}."
        )
    state = q.get("state") or None
    if state is not None and state not in STATES:
        raise ApiError(
            400, "bad_field", f"state must be one of {', '.join(s for s in STATES if s)}."
        )
    table = _recon(request).table
    ids = table.view(
        query=q.get("q", ""),
        changed=q.get("changed") in ("1", "true"),
        state=state,
        sort=sort,
        descending=q.get("desc") in ("1", "true"),
    )
    return ok({"ids": ids, "total": table.total(), "version": table.version})


@routes.post("/v1/costs/rows")
async def cost_rows(request: web.Request) -> web.Response:
    body = await body_of(request)
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise ApiError(
            400, "bad_field", "The field 'ids' must be a list of item ids (whole numbers)."
        )
    if len(ids) > 5000:
        raise ApiError(400, "bad_field", "Ask for at most 5000 rows at a time.")
    return ok({"rows": [r.to_json() for r in _recon(request).table.get(ids)]})


@routes.get("/v1/costs/{item_id:\\d+}")
async def cost_row(request: web.Request) -> web.Response:
    rows = _recon(request).table.get([int(request.match_info["item_id"])])
    if not rows:
        raise ApiError(
            404, "not_found", f"Item {request.match_info['item_id']} is not in the cost table."
        )
    return ok({"row": rows[0].to_json()})


@routes.put("/v1/costs/{item_id:\\d+}/manual")
async def set_manual_cost(request: web.Request) -> web.Response:
    from .recon import ManualCostError, set_manual

    body = await body_of(request)
    cost = field_decimal(body, "cost", minimum=Decimal(0))
    note = field_str(body, "note", required=False)
    currency = field_str(body, "currency", required=False)
    part, actor = _recon(request), actor_of(request)
    item_id = int(request.match_info["item_id"])
    try:
        row = await daemon_of(request).store.write(
            lambda c: set_manual(
                c, part.table, item_id=item_id, cost=cost, actor=actor, note=note, currency=currency
            )
        )
    except ManualCostError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return ok({"row": row.to_json()})


@routes.delete("/v1/costs/{item_id:\\d+}/manual")
async def revert_manual_cost(request: web.Request) -> web.Response:
    from .recon import ManualCostError, revert_manual

    part, actor = _recon(request), actor_of(request)
    item_id = int(request.match_info["item_id"])
    try:
        row = await daemon_of(request).store.write(
            lambda c: revert_manual(c, part.table, item_id=item_id, actor=actor)
        )
    except ManualCostError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return ok({"row": row.to_json() if row else None})


# ---------------------------------------------------------------- change sets (changes.py)


def _requests_of(body: dict[str, Any]) -> list[Any]:
    from .changes import Request

    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise ApiError(
            400,
            "missing_field",
            "The field 'items' must be a non-empty list of {item_id, cost, seen_catalog_cost}.",
        )
    out = []
    for n, raw in enumerate(items):
        if not isinstance(raw, dict):
            raise ApiError(400, "bad_field", f"items[{n}] must be an object.")
        item_id = field_int(raw, "item_id")
        try:
            cost = field_decimal(raw, "cost", minimum=Decimal(0))
            seen = field_decimal(raw, "seen_catalog_cost", required=False)
        except ApiError as exc:
            raise ApiError(exc.status, exc.code, f"items[{n}]: {exc.message}") from None
        if "seen_catalog_cost" not in raw:
            raise ApiError(
                400,
                "missing_field",
                f"items[{n}]: the field 'seen_catalog_cost' is required "
                "(the catalogue cost you approved against; null if it was blank).",
            )
        out.append(Request(item_id, cost, seen))
    return out


async def _run_change(request: web.Request, fn: Any) -> Any:
    from .changes import ChangeError

    try:
        return await fn()
    except ChangeError as exc:
        raise ApiError(exc.status, exc.code, exc.message, exc.data) from None


@routes.post("/v1/change-sets")
async def create_change_set(request: web.Request) -> web.Response:
    from .changes import change_set_json, journal, plan

    d = daemon_of(request)
    body = await body_of(request)
    reqs = _requests_of(body)
    policy = field_str(
        body, "policy", required=False, default=d.cfg.push.line_policy, choices=("all", "matching")
    )
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ApiError(400, "bad_field", "The field 'dry_run' must be true or false.")
    limits = d.connector.limits if d.connector else None
    if dry_run:
        preview, _ = await _run_change(
            request, lambda: d.store.read(lambda c: plan(c, reqs, policy, limits))
        )
        return ok({"preview": preview})
    if d.connector is None:
        raise ApiError(
            409,
            "no_psa",
            "No PSA is configured, so nothing can be pushed; set [psa] in the config file.",
        )
    actor = actor_of(request)

    def _create(conn: Any) -> dict[str, Any]:
        # Planned again inside the write transaction: the stale and busy checks see committed state,
        # so two clients approving the same item at once produce exactly one change set.
        preview, steps = plan(conn, reqs, policy, limits)
        cs_id = journal(
            conn, actor=actor, kind="apply", policy=policy, preview=preview, steps=steps
        )
        _recon(request).table.refresh(conn, [r.item_id for r in reqs])
        events_rows(conn, [r.item_id for r in reqs])
        return change_set_json(conn, cs_id)

    cs = await _run_change(request, lambda: d.store.write(_create))
    _recon(request).wake()
    return ok({"change_set": cs}, status=201)


def events_rows(conn: Any, ids: list[int]) -> None:
    event_log.emit(conn, "rows", {"ids": sorted(ids)})


@routes.get("/v1/change-sets")
async def list_change_sets(request: web.Request) -> web.Response:
    from .changes import list_change_sets as _list

    limit = field_int(request.query, "limit", required=False, default=50, minimum=1, maximum=500)
    return ok({"change_sets": await daemon_of(request).store.read(lambda c: _list(c, limit))})


@routes.get("/v1/change-sets/{cs_id:\\d+}")
async def get_change_set(request: web.Request) -> web.Response:
    from .changes import change_set_json

    cs_id = int(request.match_info["cs_id"])
    # Per-step detail can be thousands of rows: ?steps=0 gives the summary for progress polling.
    with_steps = request.query.get("steps", "1") not in ("0", "false")
    cs = await _run_change(
        request,
        lambda: daemon_of(request).store.read(
            lambda c: change_set_json(c, cs_id, with_steps=with_steps)
        ),
    )
    return ok({"change_set": cs})


@routes.post("/v1/change-sets/{cs_id:\\d+}/undo")
async def undo_change_set(request: web.Request) -> web.Response:
    from .changes import change_set_json, journal, undo_plan

    d = daemon_of(request)
    cs_id = int(request.match_info["cs_id"])
    body = await body_of(request)
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ApiError(400, "bad_field", "The field 'dry_run' must be true or false.")
    if dry_run:
        preview, _ = await _run_change(request, lambda: d.store.read(lambda c: undo_plan(c, cs_id)))
        return ok({"preview": preview})
    if d.connector is None:
        raise ApiError(
            409,
            "no_psa",
            "No PSA is configured, so nothing can be pushed; set [psa] in the config file.",
        )
    actor = actor_of(request)

    def _create(conn: Any) -> dict[str, Any]:
        preview, steps = undo_plan(conn, cs_id)
        new_id = journal(
            conn,
            actor=actor,
            kind="undo",
            policy=preview["policy"],
            preview=preview,
            steps=steps,
            undo_of=cs_id,
        )
        ids = [p["item_id"] for p in preview["per_item"]]
        _recon(request).table.refresh(conn, ids)
        events_rows(conn, ids)
        return change_set_json(conn, new_id)

    cs = await _run_change(request, lambda: d.store.write(_create))
    _recon(request).wake()
    return ok({"change_set": cs}, status=201)


def make_app(daemon: Daemon, extra: list[web.RouteTableDef] | None = None) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=8 * 1024 * 1024)
    app[DAEMON_KEY] = daemon
    app.add_routes(routes)
    for table in extra or []:
        app.add_routes(table)
    return app


def routes_for_parts(daemon: Daemon) -> list[web.RouteTableDef]:
    """Route tables contributed by the attached parts (costs, change sets, imports, mappings)."""
    return [
        part.routes for part in daemon.parts.values() if getattr(part, "routes", None) is not None
    ]
