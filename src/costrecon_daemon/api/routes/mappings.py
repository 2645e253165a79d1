"""Saved mappings: vendor SKU (and term) -> catalogue item."""

from __future__ import annotations

from aiohttp import web

from ...errors import InvalidInput
from ...intake import mappings as mapping_service
from ...intake.queries import mappings_json
from ...vendors.normalise import normalise_term
from ..context import actor_of, services
from ..errors import ok
from ..fields import body_of, field_id, field_int, field_str, path_id

routes = web.RouteTableDef()


@routes.get("/v1/mappings")
async def list_mappings(request: web.Request) -> web.Response:
    return ok({"mappings": await services(request).store.read(mappings_json)})


@routes.post("/v1/mappings")
async def create_mapping(request: web.Request) -> web.Response:
    body = await body_of(request)
    vendor = (field_str(body, "vendor") or "").strip()
    if not vendor:
        raise InvalidInput("bad_field", "The field 'vendor' must not be empty.")
    sku = (field_str(body, "sku") or "").strip()
    if not sku:
        raise InvalidInput("bad_field", "The field 'sku' must not be empty.")
    raw_term = body.get("term")
    if raw_term is not None and not isinstance(raw_term, str):
        raise InvalidInput(
            "bad_field",
            "The field 'term' must be a string such as \"P1M\", or empty for any term.",
        )
    raw_term = field_str(body, "term", required=False)
    term = None
    if raw_term and raw_term.strip():
        try:
            term = normalise_term(raw_term)
        except ValueError as exc:
            raise InvalidInput("bad_field", f"The field 'term' is not a term: {exc}.") from None
    item_id = field_id(body, "item_id")
    mapping = await services(request).intake.mappings.create_mapping(
        vendor=vendor, sku=sku, term=term, item_id=item_id, actor=actor_of(request)
    )
    return ok({"mapping": mapping}, status=201)


@routes.delete("/v1/mappings/{mapping_id}")
async def delete_mapping(request: web.Request) -> web.Response:
    mapping_id = path_id(request, "mapping_id")
    await services(request).intake.mappings.delete_mapping(mapping_id, actor=actor_of(request))
    return web.Response(status=204)


@routes.get("/v1/mappings/needs")
async def mapping_needs(request: web.Request) -> web.Response:
    """Catalogue items on live contract lines with no vendor cost, most important first, each
    with its ranked candidate vendor rows."""
    q = request.query
    offset = field_int(q, "offset", required=False, default=0, minimum=0, maximum=2**31)
    limit = field_int(q, "limit", required=False, default=50, minimum=1, maximum=500)
    per_item = field_int(q, "candidates", required=False, default=5, minimum=0, maximum=50)
    assert offset is not None and limit is not None and per_item is not None
    store = services(request).store
    return ok(await mapping_service.needs(store, offset, limit, per_item))


@routes.get("/v1/mappings/search")
async def mapping_search(request: web.Request) -> web.Response:
    """Vendor rows by SKU/MPN or words of their description (what is typed in Mappings)."""
    q = request.query
    text = (q.get("q") or "").strip()
    limit = field_int(q, "limit", required=False, default=20, minimum=1, maximum=200)
    assert limit is not None
    if len(text) > 200:
        raise InvalidInput("bad_field", "The search text is too long; use at most 200 characters.")
    store = services(request).store
    rows = await mapping_service.search_rows(store, text, limit) if text else []
    indexed = await mapping_service.names_indexed(store)
    return ok({"rows": rows, "q": text, "names_indexed": indexed})
