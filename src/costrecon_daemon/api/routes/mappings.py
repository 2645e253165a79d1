"""Saved mappings: vendor SKU (and term) -> catalogue item."""

from __future__ import annotations

from aiohttp import web

from ...errors import InvalidInput
from ...intake.queries import mappings_json
from ...vendors.normalise import normalise_term
from ..context import actor_of, services
from ..errors import ok
from ..fields import body_of, field_int, field_str

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
    term = None
    if raw_term and raw_term.strip():
        try:
            term = normalise_term(raw_term)
        except ValueError as exc:
            raise InvalidInput("bad_field", f"The field 'term' is not a term: {exc}.") from None
    item_id = field_int(body, "item_id", minimum=1)
    assert item_id is not None
    mapping = await services(request).intake.mappings.create_mapping(
        vendor=vendor, sku=sku, term=term, item_id=item_id, actor=actor_of(request)
    )
    return ok({"mapping": mapping}, status=201)


@routes.delete("/v1/mappings/{mapping_id}")
async def delete_mapping(request: web.Request) -> web.Response:
    raw = request.match_info["mapping_id"]
    if not raw.isdigit():
        raise InvalidInput("bad_field", f"The mapping id must be a whole number, got {raw!r}.")
    await services(request).intake.mappings.delete_mapping(int(raw), actor=actor_of(request))
    return web.Response(status=204)
