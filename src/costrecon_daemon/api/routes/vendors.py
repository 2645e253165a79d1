"""Distributor API pulls (issue 16): start one now, or read each source's state."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ...errors import InvalidInput
from ...vendors.pulls import pull_rows
from ..context import actor_of, services
from ..errors import ok
from ..fields import body_of, field_bool, field_str

routes = web.RouteTableDef()


@routes.get("/v1/vendors")
async def vendor_sources(request: web.Request) -> web.Response:
    return ok(services(request).vendors.status_json())


@routes.post("/v1/vendors/pull")
async def pull(request: web.Request) -> web.Response:
    """``{"source": "pax8"|"ingram"|null, "wait": bool}``: without ``wait`` the pull runs in the
    background (202); with it the answer is each source's state once its pull has ended."""
    body = await body_of(request)
    pulls = services(request).vendors
    names = pulls.names(field_str(body, "source", required=False))
    wait = field_bool(body, "wait")
    tasks = pulls.start(names, actor_of(request))
    if not wait:
        return ok({"started": names, **pulls.status_json()}, status=202)
    # shield: a client that hangs up does not cancel the import half-way (it is one transaction
    # anyway, but the pull should still finish for the next reader).
    results = await asyncio.shield(asyncio.gather(*tasks))
    return ok({"started": names, "results": list(results), **pulls.status_json()})


@routes.get("/v1/vendors/pulls/{import_id}")
async def pull_provenance(request: web.Request) -> web.Response:
    """Each row of an API pull as the distributor sent it: terms, quantity, bands, pulled at."""
    raw = request.match_info["import_id"]
    if not raw.isdigit():
        raise InvalidInput("bad_field", f"The import id must be a whole number, got {raw!r}.")
    rows = await services(request).store.read(lambda c: pull_rows(c, int(raw)))
    return ok({"import_id": int(raw), "rows": rows})
