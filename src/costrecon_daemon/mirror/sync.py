"""Mirror the PSA into SQLite: full and incremental pulls through the connector protocol.

The connector decides how to fetch (paging, filters, what can be incremental); this module only
writes what arrives, one chunk per transaction, and marks rows *gone* when a complete listing of
their scope did not include them — a vanished item or line is never kept as live.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from .. import activity, events
from ..db import CatalogItem, Contract, ContractLine, SyncState, upsert, utcnow
from ..psa.base import Connector, PullResult, SyncChunk

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)

ITEM_COLS = (
    "identifier",
    "name",
    "kind",
    "cost",
    "price",
    "currency",
    "active",
    "gone",
    "vendor_sku",
    "mpn",
    "manufacturer",
    "vendor_name",
    "psa_updated_at",
)
CONTRACT_COLS = ("name", "company", "status", "active", "gone", "currency", "psa_updated_at")
LINE_COLS = (
    "contract_psa_id",
    "item_psa_id",
    "kind",
    "description",
    "quantity",
    "unit_cost",
    "unit_price",
    "currency",
    "active",
    "gone",
    "psa_updated_at",
)


def get_state(conn: Connection, key: str) -> str | None:
    return conn.execute(select(SyncState.value).where(SyncState.key == key)).scalar()


def set_state(conn: Connection, key: str, value: str | None) -> None:
    upsert(conn, SyncState, [{"key": key, "value": value, "updated_at": utcnow()}], key=["key"])


@dataclass(slots=True)
class SyncOutcome:
    full: bool
    items: int = 0
    contracts: int = 0
    lines: int = 0
    gone: int = 0
    requests: int = 0
    seconds: float = 0.0
    seen_items: set[str] = field(default_factory=set)
    seen_contracts: set[str] = field(default_factory=set)
    seen_lines: set[str] = field(default_factory=set)

    def summary(self) -> dict[str, Any]:
        return {
            "full": self.full,
            "items": self.items,
            "contracts": self.contracts,
            "lines": self.lines,
            "gone": self.gone,
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
        }


def apply_chunk(conn: Connection, chunk: SyncChunk) -> None:
    now = utcnow()
    if chunk.items:
        upsert(
            conn,
            CatalogItem,
            [
                {
                    "psa_id": r.psa_id,
                    "identifier": r.identifier,
                    "name": r.name,
                    "kind": r.kind,
                    "cost": r.cost,
                    "price": r.price,
                    "currency": r.currency,
                    "active": r.active,
                    "gone": False,
                    "vendor_sku": r.vendor_sku,
                    "mpn": r.mpn,
                    "manufacturer": r.manufacturer,
                    "vendor_name": r.vendor_name,
                    "psa_updated_at": r.updated_at,
                    "synced_at": now,
                }
                for r in chunk.items
            ],
            key=["psa_id"],
            update=ITEM_COLS + ("synced_at",),
            only_if_changed=ITEM_COLS,
        )
    if chunk.contracts:
        upsert(
            conn,
            Contract,
            [
                {
                    "psa_id": r.psa_id,
                    "name": r.name,
                    "company": r.company,
                    "status": r.status,
                    "active": r.active,
                    "gone": False,
                    "currency": r.currency,
                    "psa_updated_at": r.updated_at,
                    "synced_at": now,
                }
                for r in chunk.contracts
            ],
            key=["psa_id"],
            update=CONTRACT_COLS + ("synced_at",),
            only_if_changed=CONTRACT_COLS,
        )
    if chunk.lines:
        currency = _line_currencies(conn, chunk)
        upsert(
            conn,
            ContractLine,
            [
                {
                    "psa_id": r.psa_id,
                    "contract_psa_id": r.contract_psa_id,
                    "item_psa_id": r.item_psa_id,
                    "kind": r.kind,
                    "description": r.description[:512],
                    "quantity": r.quantity,
                    "unit_cost": r.unit_cost,
                    "unit_price": r.unit_price,
                    "currency": currency.get(r.contract_psa_id)
                    or currency.get("item:" + r.item_psa_id)
                    or "USD",
                    "active": r.active,
                    "gone": False,
                    "psa_updated_at": r.updated_at,
                    "synced_at": now,
                }
                for r in chunk.lines
            ],
            key=["psa_id"],
            update=LINE_COLS + ("synced_at",),
            only_if_changed=LINE_COLS,
        )


def _line_currencies(conn: Connection, chunk: SyncChunk) -> dict[str, str]:
    """A line's currency is its contract's (else its item's): costs are compared per currency."""
    found = {c.psa_id: c.currency for c in chunk.contracts}
    wanted = {r.contract_psa_id for r in chunk.lines} - found.keys()
    wanted_list = list(wanted)
    for start in range(0, len(wanted_list), 500):
        part = wanted_list[start : start + 500]
        for psa_id, cur in conn.execute(
            select(Contract.psa_id, Contract.currency).where(Contract.psa_id.in_(part))
        ):
            found[psa_id] = cur
    missing_items = list({r.item_psa_id for r in chunk.lines if r.contract_psa_id not in found})
    for start in range(0, len(missing_items), 500):
        part = missing_items[start : start + 500]
        for psa_id, cur in conn.execute(
            select(CatalogItem.psa_id, CatalogItem.currency).where(CatalogItem.psa_id.in_(part))
        ):
            found["item:" + psa_id] = cur
    return found


def mark_gone(conn: Connection, result: PullResult, outcome: SyncOutcome) -> int:
    """Rows of a completely listed scope that the pull did not see are gone from the PSA."""
    gone = 0

    def _mark(model: Any, seen: set[str], extra: Any = None) -> int:
        stmt = select(model.psa_id).where(model.gone.is_(False))
        if extra is not None:
            stmt = stmt.where(extra)
        missing = [p for (p,) in conn.execute(stmt) if p not in seen]
        for start in range(0, len(missing), 500):
            conn.execute(
                update(model)
                .where(model.psa_id.in_(missing[start : start + 500]))
                .values(gone=True, active=False)
            )
        return len(missing)

    if result.complete_items:
        gone += _mark(CatalogItem, outcome.seen_items)
    if result.complete_contracts:
        gone += _mark(Contract, outcome.seen_contracts)
    if result.complete_lines_for is None and outcome.full:
        gone += _mark(ContractLine, outcome.seen_lines)
    elif result.complete_lines_for:
        scopes = list(result.complete_lines_for)
        for start in range(0, len(scopes), 500):
            gone += _mark(
                ContractLine,
                outcome.seen_lines,
                ContractLine.contract_psa_id.in_(scopes[start : start + 500]),
            )
    return gone


async def run_sync(store: Store, connector: Connector, *, actor: str, full: bool) -> SyncOutcome:
    """One pull into the mirror. Raises the connector's PSAError on failure (nothing half-marked:
    gone-marking happens only after a pull completed)."""
    cursor = None if full else await store.read(lambda c: get_state(c, "cursor"))
    outcome = SyncOutcome(full=cursor is None)
    started = dt.datetime.now(dt.UTC)
    requests_before = connector.requests_made

    async def sink(chunk: SyncChunk) -> None:
        outcome.items += len(chunk.items)
        outcome.contracts += len(chunk.contracts)
        outcome.lines += len(chunk.lines)
        outcome.seen_items.update(r.psa_id for r in chunk.items)
        outcome.seen_contracts.update(r.psa_id for r in chunk.contracts)
        outcome.seen_lines.update(r.psa_id for r in chunk.lines)
        progress = {
            "state": "running",
            "full": outcome.full,
            "items": outcome.items,
            "contracts": outcome.contracts,
            "lines": outcome.lines,
            "message": f"syncing: {outcome.items} items, {outcome.contracts} contracts, "
            f"{outcome.lines} lines so far",
        }

        def _write(conn: Connection) -> None:
            apply_chunk(conn, chunk)
            events.emit(conn, "sync", progress)  # progress for live clients, in the same commit

        await store.write(_write)

    result = await connector.pull(cursor, sink)
    outcome.requests = connector.requests_made - requests_before
    outcome.seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()

    def _finish(conn: Connection) -> None:
        outcome.gone = mark_gone(conn, result, outcome)
        set_state(conn, "cursor", result.cursor)
        set_state(conn, "last_sync", started.isoformat())
        if outcome.full:
            set_state(conn, "last_full_sync", started.isoformat())
        set_state(conn, "last_result", "ok")
        events.emit(conn, "view", {"reason": "sync"})
        events.emit(conn, "sync", {"state": "done", "message": _describe(outcome)})
        activity.append(
            conn,
            actor=actor,
            action="sync.done",
            subject=connector.display_name,
            details=outcome.summary(),
        )

    await store.write(_finish)
    log.info("sync done: %s", _describe(outcome))
    return outcome


def _describe(o: SyncOutcome) -> str:
    kind = "full" if o.full else "incremental"
    return (
        f"{kind} sync: {o.items} items, {o.contracts} contracts, {o.lines} lines received, "
        f"{o.gone} marked gone, {o.requests} requests in {o.seconds:.1f} s"
    )
