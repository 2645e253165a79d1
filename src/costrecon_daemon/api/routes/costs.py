"""The cost table: the filtered view, rows by id, manual vendor costs."""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web

from ...costs import SORT_KEYS, STATES, revert_manual, set_manual
from ...errors import InvalidInput, NotFound
from ..context import actor_of, services
from ..errors import ok
from ..fields import body_of, field_decimal, field_ids, field_str, path_id

routes = web.RouteTableDef()


@routes.get("/v1/costs")
async def cost_view(request: web.Request) -> web.Response:
    q = request.query
    sort = q.get("sort", "identifier")
    if sort not in SORT_KEYS:
        raise InvalidInput(
            "bad_field", f"sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}."
        )
    state = q.get("state") or None
    if state is not None and state not in STATES:
        raise InvalidInput(
            "bad_field", f"state must be one of {', '.join(s for s in STATES if s)}."
        )
    table = services(request).table
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
    ids = field_ids(body, "ids", most=5000)
    return ok({"rows": [r.to_json() for r in services(request).table.get(ids)]})


@routes.get("/v1/costs/{item_id:\\d+}")
async def cost_row(request: web.Request) -> web.Response:
    rows = services(request).table.get([path_id(request, "item_id")])
    if not rows:
        raise NotFound(
            "not_found", f"Item {request.match_info['item_id']} is not in the cost table."
        )
    return ok({"row": rows[0].to_json()})


@routes.put("/v1/costs/{item_id:\\d+}/manual")
async def set_manual_cost(request: web.Request) -> web.Response:
    body = await body_of(request)
    cost = field_decimal(body, "cost", minimum=Decimal(0))
    assert cost is not None  # required
    note = field_str(body, "note", required=False)
    currency = field_str(body, "currency", required=False)
    d, actor = services(request), actor_of(request)
    item_id = path_id(request, "item_id")
    row = await d.store.write(
        lambda c: set_manual(
            c, d.table, item_id=item_id, cost=cost, actor=actor, note=note, currency=currency
        )
    )
    return ok({"row": row.to_json()})


@routes.delete("/v1/costs/{item_id:\\d+}/manual")
async def revert_manual_cost(request: web.Request) -> web.Response:
    d, actor = services(request), actor_of(request)
    item_id = path_id(request, "item_id")
    row = await d.store.write(lambda c: revert_manual(c, d.table, item_id=item_id, actor=actor))
    return ok({"row": row.to_json() if row else None})
