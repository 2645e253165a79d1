"""Change sets: preview, approve, list, show, undo (the logic is in changes/approve.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from ...changes import POLICIES, Request, change_set_json, list_change_sets
from ...errors import CostreconError, InvalidInput
from ..context import actor_of, services
from ..errors import ok
from ..fields import (
    body_of,
    field_bool,
    field_decimal,
    field_id,
    field_int,
    field_str,
    path_id,
)

routes = web.RouteTableDef()


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
    if field_bool(body, "dry_run"):
        return ok({"preview": await approvals.preview(reqs, policy)})
    cs = await approvals.approve(reqs, policy, actor_of(request))
    return ok({"change_set": cs}, status=201)


@routes.get("/v1/change-sets")
async def list_sets(request: web.Request) -> web.Response:
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
    if field_bool(await body_of(request), "dry_run"):
        return ok({"preview": await approvals.undo_preview(cs_id)})
    cs = await approvals.undo(cs_id, actor_of(request))
    return ok({"change_set": cs}, status=201)
