"""Price-file imports and the vendor rows no catalogue item matched."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from ...db import PriceImport
from ...errors import NotFound
from ...intake.importer import STAGED
from ...intake.mappings import SUGGEST_ALWAYS, SUGGEST_MOST
from ...intake.queries import import_json
from ..context import services
from ..errors import ok
from ..fields import body_of, field_ids, field_int, path_id

routes = web.RouteTableDef()


@routes.get("/v1/imports")
async def list_imports(request: web.Request) -> web.Response:
    limit = field_int(request.query, "limit", required=False, default=200, minimum=1, maximum=5000)
    rows = await services(request).store.read(
        lambda c: list(
            c.execute(
                select(PriceImport)
                # an import still being written has no outcome yet: it is listed once it has
                .where(PriceImport.status != STAGED)
                .order_by(PriceImport.id.desc())
                .limit(limit)
            )
        )
    )
    return ok({"imports": [import_json(r) for r in rows]})


@routes.get("/v1/imports/{import_id}")
async def get_import(request: web.Request) -> web.Response:
    import_id = path_id(request, "import_id")
    r = await services(request).store.read(
        lambda c: c.execute(select(PriceImport).where(PriceImport.id == import_id)).first()
    )
    if r is None:
        raise NotFound("not_found", f"Import {import_id} does not exist.")
    return ok({"import": import_json(r, detail=True)})


@routes.get("/v1/unmatched")
async def unmatched(request: web.Request) -> web.Response:
    q = request.query
    limit = field_int(q, "limit", required=False, default=200, minimum=1, maximum=2000)
    suggest = field_int(
        q, "suggest", required=False, default=SUGGEST_ALWAYS, minimum=0, maximum=SUGGEST_MOST
    )
    assert limit is not None and suggest is not None
    rows = await services(request).intake.mappings.unmatched(
        limit,
        before=field_int(q, "before", required=False, minimum=1, maximum=2**62),
        import_id=field_int(q, "import_id", required=False, minimum=1, maximum=2**62),
        vendor=q.get("vendor") or None,
        suggest=suggest,
    )
    # The next page: pass "before" back. Absent once a page comes back short.
    following = rows[-1]["vendor_cost_id"] if len(rows) == limit else None
    # Rows whose suggestions this page did not work out (null): POST their ids to
    # /v1/unmatched/suggestions, or ask for the page again.
    pending = sum(1 for r in rows if r["suggestions"] is None)
    return ok({"rows": rows, "before": following, "suggestions_pending": pending})


@routes.post("/v1/unmatched/suggestions")
async def unmatched_suggestions(request: web.Request) -> web.Response:
    body = await body_of(request)
    ids = field_ids(body, "ids", most=SUGGEST_MOST)
    rows = await services(request).intake.mappings.suggestions(ids)
    return ok({"rows": rows})
