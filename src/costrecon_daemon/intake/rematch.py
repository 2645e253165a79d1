"""The matcher cache and re-matching: one Matcher over the catalogue mirror and the saved
mappings, rebuilt when either changes; unmatched vendor rows matched again after a sync."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from .. import events
from ..costs.table import CostTable
from ..db import CatalogItem, ItemMapping, VendorCost
from ..store import Store
from ..vendors.matching import CatalogKey, Matcher
from ..vendors.matching import Mapping as SavedMapping
from .queries import REMATCH_COLS, counts

log = logging.getLogger(__name__)

CHUNK = 5000  # rows per executemany (notes §6.2)
REFRESH_LIMIT = 2000  # more matched items than this: reload the whole cost table instead
COUNT_WAIT = 0.25  # seconds /v1/status waits for fresh counts before answering with the last
COUNT_WAIT_FROM = 200_000  # vendor rows from which that applies (below, it always waits)
REMATCH_CHUNK = 20_000  # unmatched rows read and matched at a time after a sync


def _unmatched_after(conn: Connection, last: int, limit: int) -> list[Any]:
    """The next ``limit`` unmatched rows above id ``last`` (a primary-key range: no index holds
    the unmatched rows, by design)."""
    return list(
        conn.execute(
            select(*REMATCH_COLS)
            .where(VendorCost.id > last, VendorCost.item_id.is_(None))
            .order_by(VendorCost.id)
            .limit(limit)
        )
    )


# ---------------------------------------------------------------------------- catalogue + matcher


def load_catalog_keys(conn: Connection) -> list[CatalogKey]:
    stmt = select(
        CatalogItem.id,
        CatalogItem.identifier,
        CatalogItem.name,
        CatalogItem.vendor_sku,
        CatalogItem.mpn,
        CatalogItem.manufacturer,
    ).where(CatalogItem.gone.is_(False))
    return [
        CatalogKey(r.id, r.identifier, r.name, r.vendor_sku, r.mpn, r.manufacturer)
        for r in conn.execute(stmt)
    ]


def load_mappings(conn: Connection) -> list[SavedMapping]:
    return [
        SavedMapping(r.vendor, r.sku, r.term or None, r.item_id)
        for r in conn.execute(
            select(ItemMapping.vendor, ItemMapping.sku, ItemMapping.term, ItemMapping.item_id)
        )
    ]


def _matching(matcher: Matcher, rows: list[Any]) -> list[Any]:
    return [r for r in rows if matcher.match(r).item_id is not None]


def apply_rematch(
    conn: Connection, matcher: Matcher, rows: Iterable[Any], *, only_unmatched: bool = False
) -> set[int]:
    """Match ``rows`` again; write the ones whose match changed. Returns the item ids affected
    (old and new), for the cost table."""
    changes: list[dict[str, Any]] = []
    affected: set[int] = set()
    for r in rows:
        m = matcher.match(r)
        if (m.item_id, m.method) != (r.item_id, r.match_method):
            changes.append({"vid": r.id, "item": m.item_id, "method": m.method})
            affected.update(i for i in (r.item_id, m.item_id) if i is not None)
    if changes:
        t = VendorCost.__table__
        stmt = update(t).where(t.c.id == bindparam("vid"))
        if only_unmatched:  # after a sync: never overwrite what a mapping change did meanwhile
            stmt = stmt.where(t.c.item_id.is_(None))
        stmt = stmt.values(item_id=bindparam("item"), match_method=bindparam("method"))
        for start in range(0, len(changes), CHUNK):
            conn.execute(stmt, changes[start : start + CHUNK])
    return affected


def refresh_table(conn: Connection, table: CostTable | None, ids: set[int], reason: str) -> None:
    if not ids:
        return
    if table is not None:
        if len(ids) > REFRESH_LIMIT:
            table.reload(conn)
        else:
            table.refresh(conn, ids)
    if len(ids) <= REFRESH_LIMIT:
        events.emit(conn, "rows", {"ids": sorted(ids)})
    events.emit(conn, "view", {"reason": reason})


class MatcherCache:
    """The Matcher (catalogue + saved mappings) and what is derived from it, shared by the inbox
    and the mappings service. ``lock`` serialises imports, mapping changes and re-matching."""

    def __init__(self, store: Store, table: CostTable):
        self.store = store
        self.table = table
        self.lock = asyncio.Lock()
        self._matcher_lock = asyncio.Lock()
        self._keys: list[CatalogKey] | None = None
        self.names: dict[int, tuple[str, str]] = {}
        self._matcher: Matcher | None = None
        self._counts: dict[str, int] | None = None
        # The last counts computed, the recount in flight and the generation it counts: after an
        # import of 2,000,000 rows a recount takes seconds, and /v1/status must not wait for it.
        self._last_counts: dict[str, int] | None = None
        self._counting: asyncio.Future[dict[str, int]] | None = None
        self._counting_gen = -1
        self._generation = 0
        self.suggestions: dict[tuple[Any, ...], list[dict[str, Any]]] = {}

    async def counts(self) -> dict[str, int]:
        """The vendor-row counts of /v1/status. Recounted once after each change, in the
        background: with ``COUNT_WAIT_FROM`` rows or more a caller waits up to ``COUNT_WAIT`` for
        the new figures, then gets the previous ones while the recount goes on."""
        if self._counts is not None:
            return self._counts
        if self._counting is None or self._counting_gen != self._generation:
            self._counting_gen = self._generation
            self._counting = asyncio.ensure_future(self._recount(self._generation))
        task = self._counting
        last = self._last_counts
        if last is None or last["vendor_costs"] < COUNT_WAIT_FROM:
            # A small database recounts in milliseconds: wait, and never answer with old figures.
            return await asyncio.shield(task)
        try:
            return await asyncio.wait_for(asyncio.shield(task), COUNT_WAIT)
        except TimeoutError:
            return last

    async def _recount(self, generation: int) -> dict[str, int]:
        got = await self.store.read(counts)
        self._last_counts = got
        if generation == self._generation:
            self._counts = got
        return got

    def _stale(self) -> None:
        self._counts = None
        self._generation += 1

    def changed(self) -> None:
        """Vendor rows changed (an import): counts and suggestions are out of date."""
        self._stale()
        self.suggestions.clear()

    def adopt(self, matcher: Matcher) -> None:
        """The saved mappings changed and ``matcher`` was built with the new ones."""
        self._matcher = matcher if self._keys is not None else None
        self._stale()
        self.suggestions.clear()

    async def catalog_keys(self) -> list[CatalogKey]:
        if self._keys is None:
            keys = await self.store.read(load_catalog_keys)
            self._keys = keys
            self.names = {k.item_id: (k.identifier, k.name) for k in keys}
        return self._keys

    async def matcher(self, mappings: list[SavedMapping] | None = None) -> Matcher:
        """The cached Matcher (catalogue + saved mappings), or a new one with ``mappings``."""
        async with self._matcher_lock:
            if mappings is None and self._matcher is not None:
                return self._matcher
            keys = await self.catalog_keys()
            if mappings is None:
                mappings = await self.store.read(load_mappings)
            built = await asyncio.to_thread(Matcher, keys, mappings)
            if self._keys is keys:
                self._matcher = built
            return built

    def invalidate(self, *, catalogue: bool = False) -> None:
        if catalogue:
            self._keys = None
        self._matcher = None
        self._stale()
        self.suggestions.clear()

    async def after_sync(self) -> None:
        """The catalogue changed: rebuild the Matcher and match the unmatched rows again. Never
        raises (it runs inside the sync loop).

        A distributor's whole catalogue is a million or more unmatched rows: they are matched a
        chunk at a time (keyset by id, bounded memory, the writer free between chunks), and not
        at all when the sync left the catalogue's keys as they were (most syncs)."""
        try:
            async with self.lock:
                before, counted, generation = self._keys, self._counts, self._generation
                self.invalidate(catalogue=True)
                matcher = await self.matcher()
                if before is not None and self._keys == before:
                    # The same catalogue matches nothing new: unless vendor rows changed
                    # meanwhile, the counts (a count over every vendor row) still hold.
                    if self._generation == generation + 1:
                        self._counts, self._generation = counted, generation
                    return
                store = self.store
                table = self.table
                last, matched, items = 0, 0, 0
                while True:
                    rows = await store.read(_unmatched_after, last, REMATCH_CHUNK)
                    if not rows:
                        break
                    last = rows[-1].id
                    changes = await asyncio.to_thread(_matching, matcher, rows)
                    if not changes:
                        continue

                    def _write(conn: Connection, changes: list[Any] = changes) -> int:
                        ids = apply_rematch(conn, matcher, changes, only_unmatched=True)
                        refresh_table(conn, table, ids, "vendor rows matched after sync")
                        return len(ids)

                    items += await store.write(_write)
                    matched += len(changes)
                if matched:
                    self._stale()
                    log.info(
                        "after sync: %d unmatched vendor rows now match (%d items)", matched, items
                    )
        except Exception:  # noqa: BLE001
            log.exception("re-matching vendor rows after the sync failed")
