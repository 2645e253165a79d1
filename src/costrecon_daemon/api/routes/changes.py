"""Change sets: preview, approve, list, show, undo (the logic is in changes/approve.py)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from aiohttp import web

from ...changes import (
    POLICIES,
    Request,
    RequestState,
    StepState,
    Submitted,
    change_set_json,
    list_change_sets,
    list_steps,
)
from ...errors import CostreconError, InvalidInput
from ..context import actor_of, services
from ..errors import error_json, ok
from ..fields import (
    body_of,
    field_bool,
    field_date,
    field_decimal,
    field_id,
    field_int,
    field_str,
    path_id,
)

routes = web.RouteTableDef()

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _request_id(data: Any) -> str | None:
    """The client's id for an approval or undo: a retry with the same id is the same request."""
    value = data.get("request_id")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise InvalidInput(
            "bad_field",
            "request_id must be 1 to 64 letters, digits or . _ : - (a UUID works).",
        )
    return value


def _requests_of(body: dict[str, Any]) -> list[Request]:
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise InvalidInput(
            "missing_field",
            "The field 'items' must be a non-empty list of {item_id, cost, seen_catalog_cost}.",
        )
    out = []
    for n, raw in enumerate(items):
        if not isinstance(raw, dict):
            raise InvalidInput("bad_field", f"items[{n}] must be an object.")
        try:
            item_id = field_id(raw, "item_id")
            cost = field_decimal(raw, "cost", minimum=Decimal(0))
            seen = field_decimal(raw, "seen_catalog_cost", required=False)
        except CostreconError as exc:
            raise type(exc)(exc.code, f"items[{n}]: {exc.message}") from None
        if "seen_catalog_cost" not in raw:
            raise InvalidInput(
                "missing_field",
                f"items[{n}]: the field 'seen_catalog_cost' is required "
                "(the catalogue cost you approved against; null if it was blank).",
            )
        assert cost is not None
        out.append(Request(item_id, cost, seen))
    return out


@routes.post("/v1/change-sets")
async def create_change_set(request: web.Request) -> web.Response:
    approvals = services(request).approvals
    body = await body_of(request)
    reqs = _requests_of(body)
    policy = field_str(
        body, "policy", required=False, default=approvals.default_policy, choices=POLICIES
    )
    assert policy is not None
    # A future effective date schedules the change set for that day (issue 18.4).
    effective = field_date(body, "effective_date")
    if field_bool(body, "dry_run"):
        return ok({"preview": await approvals.preview(reqs, policy, effective)})
    out = await approvals.submit(
        reqs, policy, actor_of(request), _request_id(body), effective=effective
    )
    return _submitted(out)


def _submitted(out: Submitted) -> web.Response:
    """201 with the change set; or 202 while a big one is still being recorded (issue 14: the
    API answers within a second), to be followed by GET /v1/change-sets?request_id=..."""
    if out.change_set is None:
        return ok({"request": out.request_json()}, status=202)
    return ok({"change_set": out.change_set}, status=201)


@routes.post("/v1/change-sets/{cs_id:\\d+}/cancel")
async def cancel_change_set(request: web.Request) -> web.Response:
    """Cancel a scheduled change set before its effective date (409 once it has started)."""
    cs = await services(request).approvals.cancel(path_id(request, "cs_id"), actor_of(request))
    return ok({"change_set": cs})


def _request_json(state: RequestState) -> dict[str, Any]:
    out: dict[str, Any] = {"request_id": state.request_id, "state": state.state}
    if state.error is not None:
        out["error"] = error_json(state.error)
    return out


@routes.get("/v1/change-sets")
async def list_sets(request: web.Request) -> web.Response:
    request_id = _request_id(request.query)
    if request_id is not None:
        # What the daemon has for a client's request id: [] if it has not recorded it, and in
        # "request" whether it is being recorded, was refused (and why), or is unknown.
        state = await services(request).approvals.request_state(actor_of(request), request_id)
        found = state.change_set
        return ok({"change_sets": [found] if found else [], "request": _request_json(state)})
    limit = field_int(request.query, "limit", required=False, default=50, minimum=1, maximum=500)
    assert limit is not None
    sets = await services(request).store.read(lambda c: list_change_sets(c, limit))
    return ok({"change_sets": sets})


@routes.get("/v1/change-sets/{cs_id:\\d+}")
async def get_change_set(request: web.Request) -> web.Response:
    cs_id = path_id(request, "cs_id")
    # Per-step detail can be thousands of rows: ?steps=0 gives the summary for progress polling.
    with_steps = request.query.get("steps", "1") not in ("0", "false")
    cs = await services(request).store.read(
        lambda c: change_set_json(c, cs_id, with_steps=with_steps)
    )
    return ok({"change_set": cs})


@routes.post("/v1/change-sets/{cs_id:\\d+}/undo")
async def undo_change_set(request: web.Request) -> web.Response:
    approvals = services(request).approvals
    cs_id = path_id(request, "cs_id")
    body = await body_of(request)
    if field_bool(body, "dry_run"):
        return ok({"preview": await approvals.undo_preview(cs_id)})
    return _submitted(await approvals.submit_undo(cs_id, actor_of(request), _request_id(body)))


@routes.get("/v1/change-sets/{cs_id:\\d+}/steps")
async def change_set_steps(request: web.Request) -> web.Response:
    """A change set's steps, paged and filtered by state: per-line detail on demand."""
    cs_id = path_id(request, "cs_id")
    q = request.query
    statuses = [s for s in q.get("status", "").split(",") if s] or None
    for s in statuses or ():
        if s not in set(StepState):
            raise InvalidInput(
                "bad_field", f"status must be one of {', '.join(StepState)} (comma-separated)."
            )
    offset = field_int(q, "offset", required=False, default=0, minimum=0, maximum=10**9)
    limit = field_int(q, "limit", required=False, default=100, minimum=1, maximum=1000)
    assert offset is not None and limit is not None
    page = await services(request).store.read(
        lambda c: list_steps(c, cs_id, statuses=statuses, offset=offset, limit=limit)
    )
    return ok(page)
