"""Retention: old imports' unmatched rows are pruned so the database does not grow with every
distributor file (issue 15 item 5).

The newest ``keep`` imports per vendor keep every row. In older imports, the *unmatched* rows that
a newer import of the same vendor has superseded (same SKU and term: next month's full list),
a million per distributor file, only cost space and are deleted; a row no newer file repeats is
still current and stays (a vendor that sends partial files loses nothing). Their *matched* rows
are kept, always: they are the only rows a cost (and so an approved change) can come from, and
provenance must outlive the file. The import
records themselves are never deleted. Pruning deletes a chunk per write transaction and yields
between chunks, so the API and the writer are never held for long; no ``VACUUM`` (SQLite reuses
the freed pages).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from .. import activity
from ..db import PriceImport, VendorCost
from .queries import _newest_per_key

log = logging.getLogger(__name__)

PRUNE_CHUNK = 20_000


def prunable_imports(conn: Connection, keep: int) -> list[Any]:
    """Imports beyond the newest ``keep`` per vendor that still hold unmatched rows."""
    rows = conn.execute(
        select(PriceImport.id, PriceImport.vendor, PriceImport.file_name)
        .where(PriceImport.status == "imported")
        .order_by(PriceImport.id.desc())
    ).all()
    seen: dict[str, int] = {}
    old = []
    for r in rows:
        key = (r.vendor or "").casefold()
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > keep:
            old.append(r)
    out = []
    for r in old:
        has = conn.execute(
            select(VendorCost.id)
            .where(VendorCost.import_id == r.id, VendorCost.item_id.is_(None), ~_newest_per_key())
            .limit(1)
        ).first()
        if has is not None:
            out.append(r)
    return out


def _prune_chunk(conn: Connection, import_id: int) -> int:
    ids = (
        select(VendorCost.id)
        .where(VendorCost.import_id == import_id, VendorCost.item_id.is_(None), ~_newest_per_key())
        .limit(PRUNE_CHUNK)
    )
    return conn.execute(delete(VendorCost).where(VendorCost.id.in_(ids))).rowcount or 0


async def prune(store: Any, keep: int) -> int:
    """Prune what retention allows; returns the number of rows deleted."""
    total = 0
    for imp in await store.read(prunable_imports, max(1, keep)):
        pruned = 0
        while n := await store.write(_prune_chunk, imp.id):
            pruned += n
            await asyncio.sleep(0)  # let queued API writes in between chunks
        total += pruned
        if pruned:
            await store.write(
                lambda c, imp=imp, pruned=pruned: activity.append(
                    c,
                    actor="costrecond",
                    action="import.pruned",
                    subject=imp.file_name,
                    details={
                        "import_id": imp.id,
                        "vendor": imp.vendor,
                        "unmatched_rows_deleted": pruned,
                        "reason": f"older than the newest {keep} imports of this vendor and "
                        "superseded by a newer import; matched rows are kept",
                    },
                )
            )
            log.info("pruned %d unmatched rows of import #%d (%s)", pruned, imp.id, imp.file_name)
    return total
