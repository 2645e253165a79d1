"""The mappings service: saved vendor SKU -> catalogue item mappings, and the unmatched rows
with suggestions a person picks them from."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from .. import activity
from ..costs.table import CostTable
from ..db import CatalogItem, ItemMapping, new_id, utcnow
from ..errors import Conflict, NotFound
from ..money import json_amount
from ..store import Store
from ..vendors.matching import Mapping as SavedMapping
from ..vendors.normalise import normalise_sku
from .queries import mapping_json, rows_for_key, unmatched_rows, vendor_key
from .rematch import MatcherCache, apply_rematch, load_mappings, refresh_table

log = logging.getLogger(__name__)


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
    ) -> list[dict[str, Any]]:
        """One page of unmatched vendor rows (see :func:`.queries.unmatched_rows`)."""
        rows = await self.store.read(
            lambda c: unmatched_rows(c, limit, before=before, import_id=import_id, vendor=vendor)
        )
        matcher = await self.cache.matcher()
        names = self.cache.names

        def _build() -> list[dict[str, Any]]:
            out = []
            for r in rows:
                key = (r.vendor, r.sku, r.mpn, r.manufacturer, r.description, r.term)
                suggestions = self.cache.suggestions.get(key)
                if suggestions is None:
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
                    self.cache.suggestions[key] = suggestions
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
                        "row": r.row_number,
                        "suggestions": suggestions,
                    }
                )
            return out

        return await asyncio.to_thread(_build)
