"""Manual vendor costs: a person's cost for an item, overriding the price files until reverted."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ..db import (
    CatalogItem,
    ManualCost,
)
from ..errors import Conflict, InvalidInput, NotFound
from ..money import json_amount, quantize
from .table import CostTable, Row


def set_manual(
    conn: Connection,
    table: CostTable,
    *,
    item_id: int,
    cost: Decimal,
    actor: str,
    note: str | None = None,
    currency: str | None = None,
) -> Row:
    from .. import activity, events
    from ..db import upsert, utcnow

    item = conn.execute(select(CatalogItem).where(CatalogItem.id == item_id)).first()
    if item is None or item.gone:
        raise NotFound("not_found", f"Item {item_id} is not in the catalogue mirror.")
    if cost < 0:
        raise InvalidInput("bad_field", "A vendor cost must be 0 or more.")
    if currency and currency != item.currency:
        raise InvalidInput(
            "bad_field",
            f"{item.identifier} is priced in {item.currency}; "
            f"a cost in {currency} cannot be set on it.",
        )
    before = conn.execute(select(ManualCost.cost).where(ManualCost.item_id == item_id)).scalar()
    previous = table.get([item_id])
    shown_before = previous[0].vendor_cost if previous else before
    upsert(
        conn,
        ManualCost,
        [
            {
                "item_id": item_id,
                "cost": quantize(cost),
                "currency": item.currency,
                "set_by": actor,
                "set_at": utcnow(),
                "note": note,
            }
        ],
        key=["item_id"],
    )
    activity.append(
        conn,
        actor=actor,
        action="cost.manual.set",
        subject=item.identifier,
        before=json_amount(shown_before),
        after=json_amount(quantize(cost)),
        details={"item_id": item_id, "currency": item.currency, "note": note},
    )
    table.refresh(conn, [item_id])
    events.emit(conn, "rows", {"ids": [item_id]})
    rows = table.get([item_id])
    if not rows:
        raise NotFound("not_found", f"Item {item_id} is not in the cost table.")
    return rows[0]


def revert_manual(conn: Connection, table: CostTable, *, item_id: int, actor: str) -> Row | None:
    from sqlalchemy import delete

    from .. import activity, events

    item = conn.execute(select(CatalogItem).where(CatalogItem.id == item_id)).first()
    if item is None:
        raise NotFound("not_found", f"Item {item_id} is not in the catalogue mirror.")
    before = conn.execute(select(ManualCost.cost).where(ManualCost.item_id == item_id)).scalar()
    if before is None:
        raise Conflict("no_manual_cost", f"{item.identifier} has no manual vendor cost to revert.")
    # The override is a person's input, not the audit record: the activity log keeps its history.
    conn.execute(delete(ManualCost).where(ManualCost.item_id == item_id))
    table.refresh(conn, [item_id])
    rows = table.get([item_id])
    activity.append(
        conn,
        actor=actor,
        action="cost.manual.revert",
        subject=item.identifier,
        before=json_amount(before),
        after=json_amount(rows[0].vendor_cost) if rows else None,
        details={"item_id": item_id},
    )
    events.emit(conn, "rows", {"ids": [item_id]})
    events.emit(conn, "view", {"reason": "manual cost reverted"})
    return rows[0] if rows else None
