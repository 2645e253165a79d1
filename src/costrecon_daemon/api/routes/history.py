"""An item's vendor-cost history: GET /v1/costs/{id}/history."""

from __future__ import annotations

from aiohttp import web

from ...costs.history import cost_history
from ..context import services
from ..errors import ok
from ..fields import path_id

routes = web.RouteTableDef()


@routes.get("/v1/costs/{item_id:\\d+}/history")
async def history(request: web.Request) -> web.Response:
    item_id = path_id(request, "item_id")
    return ok(await services(request).store.read(lambda c: cost_history(c, item_id)))
