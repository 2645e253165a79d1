"""Health, status, sync, the activity log and the event feed."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ... import API_VERSION, __version__
from ... import activity as activity_log
from ... import events as event_log
from ...errors import InvalidInput
from ...jsonable import dumps
from ..context import Services, actor_of, services
from ..errors import ok
from ..fields import body_of, field_bool, field_int, field_seconds, field_str, field_time

routes = web.RouteTableDef()


@routes.get("/v1/health")
async def health(request: web.Request) -> web.Response:
    d = services(request)
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
    return ok(await services(request).status())


@routes.post("/v1/sync")
async def sync_now(request: web.Request) -> web.Response:
    full = field_bool(await body_of(request), "full")
    return ok(await services(request).mirror.request_sync(actor_of(request), full=full), status=202)


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
        since=field_time(q, "since"),
        until=field_time(q, "until"),
    )
    entries = await services(request).store.read(lambda c: activity_log.query(c, **kwargs))
    return ok({"entries": entries})


@routes.get("/v1/activity/checkpoint")
async def activity_checkpoint(request: web.Request) -> web.Response:
    """The chain's head (signed when the log is keyed): an export keeps it to detect tail cuts."""
    cp = await services(request).store.read(activity_log.checkpoint)
    return ok({"checkpoint": cp.to_json()})


_HASH = re.compile(r"k?[0-9a-f]{63,64}")


def _checkpoint_of(q: Any) -> activity_log.Checkpoint | None:
    if not q.get("checkpoint_id") and not q.get("checkpoint_hash"):
        return None
    entry_id = field_int(q, "checkpoint_id", minimum=0)
    entry_hash = field_str(q, "checkpoint_hash", max_length=64)
    signature = field_str(q, "checkpoint_signature", required=False, max_length=64) or None
    assert entry_id is not None and entry_hash is not None  # both required
    if len(entry_hash) != 64 or not _HASH.fullmatch(entry_hash):
        raise InvalidInput("bad_field", "The field 'checkpoint_hash' is not an entry hash.")
    if signature is not None and not _HASH.fullmatch(signature):
        raise InvalidInput("bad_field", "The field 'checkpoint_signature' is not a signature.")
    return activity_log.Checkpoint(entry_id, entry_hash, signature)


@routes.get("/v1/activity/verify")
async def activity_verify(request: web.Request) -> web.Response:
    cp = _checkpoint_of(request.query)
    if cp is not None and not activity_log.checkpoint_is_genuine(cp):
        result = activity_log.VerifyResult(
            False,
            0,
            None,
            "the checkpoint's signature does not match the activity log key, so it was not "
            "written by this daemon; verify against the checkpoint saved with an export",
        )
    else:
        result = await services(request).store.read(lambda c: activity_log.verify(c, checkpoint=cp))
    return ok(result.to_json())


@routes.get("/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    d = services(request)
    since = field_int(request.query, "since", required=False, default=0, minimum=0)
    assert since is not None  # it has a default
    if request.query.get("stream") in ("1", "true"):
        return await _stream_events(request, d, since)
    timeout = field_seconds(request.query, "timeout", default=25.0, maximum=60.0)
    generation = d.bus.generation
    found = await d.store.read(event_log.after, since)
    if not found and timeout > 0:
        await d.bus.wait(generation, timeout)
        found = await d.store.read(event_log.after, since)
    last = found[-1]["id"] if found else since
    return ok({"events": found, "last_id": last})


async def _stream_events(request: web.Request, d: Services, since: int) -> web.StreamResponse:
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
