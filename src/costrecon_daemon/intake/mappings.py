"""The mappings service: saved vendor SKU -> catalogue item mappings, and the unmatched rows
with suggestions a person picks them from."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import Integer, delete, func, insert, select, type_coerce
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from .. import activity
from ..costs.table import CostTable
from ..db import (
    CatalogItem,
    ContractLine,
    ItemMapping,
    ManualCost,
    PriceImport,
    VendorCost,
    new_id,
    utcnow,
)
from ..errors import Conflict, NotFound
from ..money import json_amount
from ..store import Store
from ..vendors.matching import Mapping as SavedMapping
from ..vendors.normalise import normalise_mpn, normalise_sku
from . import search
from .queries import REMATCH_COLS, mapping_json, rows_for_key, unmatched_rows, vendor_key
from .rematch import MatcherCache, apply_rematch, load_mappings, refresh_table

log = logging.getLogger(__name__)

# An unmatched page answers in < 100 ms at 2,000,000 rows (issue 15): its query takes a few ms, a
# row's suggestions ~0.5 ms against 500 catalogue items (more with a bigger catalogue, and more
# again while a name index is built beside it). So a page works out suggestions for a fixed
# number of its rows only (what the view shows first: ``suggest``), counted, never timed, and the
# rest come from :meth:`Mappings.suggestions` for the rows a person looks at.
SUGGEST_ALWAYS = 20  # rows an unmatched page works out suggestions for unless told otherwise
SUGGEST_MOST = 50  # rows one request may ask suggestions for


class Mappings:
    def __init__(self, store: Store, cache: MatcherCache, table: CostTable):
        self.store = store
        self.cache = cache
        self.table = table

    async def create_mapping(
        self, *, vendor: str, sku: str, term: str | None, item_id: int, actor: str
    ) -> dict[str, Any]:
        store = self.store
        async with self.cache.lock:
            current = await store.read(load_mappings)
            key = (vendor_key(vendor), normalise_sku(sku), term)
            for m in current:
                if (vendor_key(m.vendor), normalise_sku(m.sku), m.term or None) == key:
                    raise Conflict(
                        "duplicate",
                        f"A mapping for {vendor} {sku}"
                        f"{' (' + term + ')' if term else ''} already exists; delete it first.",
                    )
            matcher = await self.cache.matcher([*current, SavedMapping(vendor, sku, term, item_id)])
            table = self.table

            def _write(conn: Connection) -> dict[str, Any]:
                item = conn.execute(
                    select(CatalogItem.identifier, CatalogItem.gone).where(
                        CatalogItem.id == item_id
                    )
                ).first()
                if item is None or item.gone:
                    raise NotFound("not_found", f"Item {item_id} is not in the catalogue mirror.")
                result = conn.execute(
                    insert(ItemMapping).values(
                        vendor=vendor,
                        sku=sku,
                        term=term or "",
                        item_id=item_id,
                        created_by=actor,
                        created_at=utcnow(),
                    )
                )
                mid = new_id(result)
                affected = apply_rematch(conn, matcher, rows_for_key(conn, vendor, sku, term))
                mapping = mapping_json(conn, mid)
                activity.append(
                    conn,
                    actor=actor,
                    action="mapping.create",
                    subject=f"{vendor} {sku}",
                    after=item.identifier,
                    details={**(mapping or {}), "rows_rematched": len(affected)},
                )
                refresh_table(conn, table, affected | {item_id}, "mapping created")
                return mapping or {}

            try:
                mapping = await store.write(_write)
            except IntegrityError:  # the same key saved by someone else a moment ago
                raise Conflict(
                    "duplicate", f"A mapping for {vendor} {sku} already exists."
                ) from None
            self.cache.adopt(matcher)
            return mapping

    async def delete_mapping(self, mapping_id: int, *, actor: str) -> None:
        store = self.store
        async with self.cache.lock:
            existing = await store.read(
                lambda c: c.execute(select(ItemMapping).where(ItemMapping.id == mapping_id)).first()
            )
            if existing is None:
                raise NotFound("not_found", f"Mapping {mapping_id} does not exist.")
            current = await store.read(load_mappings)
            term = existing.term or None
            rest = [
                m
                for m in current
                if (m.vendor, m.sku, m.term or None, m.item_id)
                != (existing.vendor, existing.sku, term, existing.item_id)
            ]
            matcher = await self.cache.matcher(rest)
            table = self.table

            def _write(conn: Connection) -> None:
                before = mapping_json(conn, mapping_id)
                if before is None:
                    raise NotFound("not_found", f"Mapping {mapping_id} does not exist.")
                conn.execute(delete(ItemMapping).where(ItemMapping.id == mapping_id))
                affected = apply_rematch(
                    conn, matcher, rows_for_key(conn, existing.vendor, existing.sku, term)
                )
                activity.append(
                    conn,
                    actor=actor,
                    action="mapping.delete",
                    subject=f"{existing.vendor} {existing.sku}",
                    before=before["identifier"],
                    details={**before, "rows_rematched": len(affected)},
                )
                refresh_table(conn, table, affected | {existing.item_id}, "mapping deleted")

            await store.write(_write)
            self.cache.adopt(matcher)

    async def unmatched(
        self,
        limit: int,
        *,
        before: int | None = None,
        import_id: int | None = None,
        vendor: str | None = None,
        suggest: int = SUGGEST_ALWAYS,
    ) -> list[dict[str, Any]]:
        """One page of unmatched vendor rows (see :func:`.queries.unmatched_rows`). Suggestions
        are worked out for at most ``suggest`` rows not worked out before (the first ones);
        the others' are those already known, else null: ask :meth:`suggestions` for them."""
        rows = await self.store.read(
            lambda c: unmatched_rows(c, limit, before=before, import_id=import_id, vendor=vendor)
        )
        matcher = await self.cache.matcher()

        def _build() -> list[dict[str, Any]]:
            out = []
            worked = 0
            for r in rows:
                suggestions = self._known(r)
                if suggestions is None and worked < suggest:
                    worked += 1
                    suggestions = self._work_out(matcher, r)
                out.append(
                    {
                        "vendor_cost_id": r.id,
                        "vendor": r.vendor,
                        "sku": r.sku,
                        "mpn": r.mpn,
                        "description": r.description,
                        "term": r.term,
                        "cost": json_amount(r.cost),
                        "currency": r.currency,
                        "file": r.file_name,
                        "import_id": r.import_id,
                        "row": r.row_number,
                        "suggestions": suggestions,
                    }
                )
            return out

        return await asyncio.to_thread(_build)

    async def suggestions(self, ids: list[int]) -> list[dict[str, Any]]:
        """The suggestions of the vendor rows ``ids`` (at most :data:`SUGGEST_MOST`), in their
        order; an id that is no vendor row (pruned, or never was) is left out."""
        wanted = list(dict.fromkeys(ids))[:SUGGEST_MOST]
        found = await self.store.read(
            lambda c: {
                r.id: r for r in c.execute(select(*REMATCH_COLS).where(VendorCost.id.in_(wanted)))
            }
        )
        matcher = await self.cache.matcher()

        def _build() -> list[dict[str, Any]]:
            out = []
            for vendor_cost_id in wanted:
                r = found.get(vendor_cost_id)
                if r is None:
                    continue
                known = self._known(r)
                out.append(
                    {
                        "vendor_cost_id": vendor_cost_id,
                        "suggestions": known if known is not None else self._work_out(matcher, r),
                    }
                )
            return out

        return await asyncio.to_thread(_build)

    def _known(self, r: Any) -> list[dict[str, Any]] | None:
        return self.cache.suggestions.get(_suggest_key(r))

    def _work_out(self, matcher: Any, r: Any) -> list[dict[str, Any]]:
        names = self.cache.names
        suggestions = [
            {
                "item_id": s.item_id,
                "identifier": names.get(s.item_id, ("", ""))[0],
                "name": names.get(s.item_id, ("", ""))[1],
                "score": s.score,
                "reason": s.reason,
            }
            for s in matcher.suggest(r, limit=5)
        ]
        self.cache.suggestions[_suggest_key(r)] = suggestions
        return suggestions


def _suggest_key(r: Any) -> tuple[Any, ...]:
    return (r.vendor, r.sku, r.mpn, r.manufacturer, r.description, r.term)


# ---------------------------------------------------------------------------- from the catalogue


def _live_lines() -> Any:
    return (
        select(ContractLine.item_psa_id, func.count(ContractLine.id).label("lines"))
        .where(ContractLine.active.is_(True), ContractLine.gone.is_(False))
        .group_by(ContractLine.item_psa_id)
        .subquery()
    )


def needs_rows(conn: Connection, offset: int, limit: int) -> tuple[list[Any], int]:
    """Catalogue items on live contract lines with no vendor cost (no imported row matched them,
    no manual cost), the ones that matter most first: live lines × catalogue cost, an item
    without a cost after those with one. A few hundred items at most: no paging by key needed."""
    lines = _live_lines()
    has_cost = (
        select(VendorCost.id)
        .join(PriceImport, PriceImport.id == VendorCost.import_id)
        .where(VendorCost.item_id == CatalogItem.id, PriceImport.status == "imported")
        .exists()
    )
    has_manual = select(ManualCost.item_id).where(ManualCost.item_id == CatalogItem.id).exists()
    conds = (CatalogItem.gone.is_(False), ~has_cost, ~has_manual)
    weight = lines.c.lines * func.coalesce(type_coerce(CatalogItem.cost, Integer), 0)
    stmt = (
        select(
            CatalogItem.id,
            CatalogItem.identifier,
            CatalogItem.name,
            CatalogItem.cost,
            CatalogItem.currency,
            CatalogItem.vendor_sku,
            CatalogItem.mpn,
            lines.c.lines,
        )
        .join(lines, lines.c.item_psa_id == CatalogItem.psa_id)
        .where(*conds)
        .order_by(weight.desc(), lines.c.lines.desc(), CatalogItem.id)
        .offset(offset)
        .limit(limit)
    )
    total = conn.execute(
        select(func.count())
        .select_from(CatalogItem)
        .join(lines, lines.c.item_psa_id == CatalogItem.psa_id)
        .where(*conds)
    ).scalar()
    return list(conn.execute(stmt)), int(total or 0)


_CAND_COLS = (
    VendorCost.id,
    VendorCost.vendor,
    VendorCost.sku,
    VendorCost.mpn,
    VendorCost.description,
    VendorCost.term,
    VendorCost.cost,
    VendorCost.currency,
    VendorCost.item_id,
    PriceImport.file_name,
)


def _rows_by_id(conn: Connection, ids: list[int]) -> dict[int, Any]:
    if not ids:
        return {}
    stmt = (
        select(*_CAND_COLS)
        .join(PriceImport, PriceImport.id == VendorCost.import_id)
        .where(VendorCost.id.in_(ids), PriceImport.status == "imported")
    )
    return {r.id: r for r in conn.execute(stmt)}


def _name_score(a: set[str], text_: str | None) -> float:
    b = set(search.words_of(text_, most=40))
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _candidate(r: Any, score: float, reason: str) -> dict[str, Any]:
    return {
        "vendor_cost_id": r.id,
        "vendor": r.vendor,
        "sku": r.sku,
        "mpn": r.mpn,
        "description": r.description,
        "term": r.term,
        "cost": json_amount(r.cost),
        "currency": r.currency,
        "file": r.file_name,
        "matched_item_id": r.item_id,
        "score": round(score, 3),
        "reason": reason,
    }


def rank(
    conn: Connection,
    *,
    skus: list[str],
    mpns: list[str],
    name: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Ranked vendor rows for one catalogue item (or typed text): rows whose normalised SKU or MPN
    equals the item's first, then containing it, then by name similarity. One row per vendor SKU
    and term (the newest)."""
    sku_set = {s for s in skus if s}
    mpn_set = {m for m in mpns if m}
    key_ids = search.key_hits(conn, [*sku_set, *mpn_set])
    words = search.words_of(name)
    name_ids = search.name_hits(conn, words) if words else []
    rows = _rows_by_id(conn, list(dict.fromkeys([*key_ids, *name_ids])))
    wanted = set(words)
    scored: list[tuple[int, float, int, Any, float, str]] = []
    for rid in dict.fromkeys([*key_ids, *name_ids]):
        r = rows.get(rid)
        if r is None:
            continue
        s, m = normalise_sku(r.sku), normalise_mpn(r.mpn)
        similarity = _name_score(wanted, r.description)
        if s in sku_set:
            tier, score, reason = 0, 1.0, "sku"
        elif m and m in mpn_set:
            tier, score, reason = 0, 0.95, "mpn"
        elif any(t in s or (m and t in m) for t in sku_set | mpn_set if len(t) >= 3):
            tier, score, reason = 1, 0.6 + 0.2 * similarity, "partial sku"
        else:
            tier, score, reason = 2, 0.6 * similarity, "name"
        scored.append((tier, -score, -r.id, r, score, reason))
    scored.sort(key=lambda x: x[:3])
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str | None]] = set()
    for _tier, _s, _id, r, score, reason in scored:
        key = (vendor_key(r.vendor), normalise_sku(r.sku), r.term)
        if key in seen:
            continue
        seen.add(key)
        out.append(_candidate(r, score, reason))
        if len(out) >= limit:
            break
    return out


def _needs(conn: Connection, offset: int, limit: int, per_item: int) -> dict[str, Any]:
    items, total = needs_rows(conn, offset, limit)
    out = []
    for it in items:
        weight = it.lines * it.cost if it.cost is not None else None
        out.append(
            {
                "item_id": it.id,
                "identifier": it.identifier,
                "name": it.name,
                "lines": it.lines,
                "cost": json_amount(it.cost) if it.cost is not None else None,
                "currency": it.currency,
                "weight": json_amount(weight) if weight is not None else None,
                "candidates": rank(
                    conn,
                    skus=[normalise_sku(it.vendor_sku), normalise_sku(it.identifier)],
                    mpns=[normalise_mpn(it.mpn)],
                    name=it.name,
                    limit=per_item,
                )
                if per_item
                else [],
            }
        )
    return {
        "items": out,
        "total": total,
        "offset": offset,
        "limit": limit,
        # False while new rows are still being indexed (after a big import): their keys first,
        # then their names; candidates from them come as they are.
        "names_indexed": search.ready(conn),
    }


def _search(conn: Connection, q: str, limit: int) -> list[dict[str, Any]]:
    return rank(conn, skus=[normalise_sku(q)], mpns=[normalise_mpn(q)], name=q, limit=limit)


async def needs(store: Store, offset: int, limit: int, per_item: int) -> dict[str, Any]:
    return await store.read(_needs, offset, limit, per_item)


async def search_rows(store: Store, q: str, limit: int) -> list[dict[str, Any]]:
    return await store.read(_search, q, limit)


async def names_indexed(store: Store) -> bool:
    """Whether the search tables hold every imported vendor row (see :func:`.search.ready`)."""
    return await store.read(search.ready)
