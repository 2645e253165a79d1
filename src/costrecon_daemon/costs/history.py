"""An item's vendor-cost history (issue 18.5): every imported, pulled and manual value, oldest
first.

Imports and API pulls are kept in ``vendor_costs``; a manual override keeps only its current value
in ``manual_costs``, so earlier manual values (and reverts) come from the activity log, which
records each one with its item id.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from ..db import ActivityEntry, CatalogItem, PriceImport, VendorCost, VendorPullRow
from ..errors import NotFound
from ..jsonable import iso
from ..money import json_amount

MAX_POINTS = 1000  # the newest values; a chart in a terminal has far fewer cells than that
MANUAL_ACTIONS = ("cost.manual.set", "cost.manual.revert")


def _kind(profile: str | None) -> str:
    # Distributor pulls are stored as imports whose profile names the API (issue 16); a price
    # file's profile names its layout.
    return "pull" if (profile or "").casefold().startswith(("api", "pax8", "ingram")) else "import"


def cost_history(conn: Connection, item_id: int) -> dict[str, Any]:
    item = conn.execute(
        select(
            CatalogItem.id, CatalogItem.identifier, CatalogItem.name, CatalogItem.currency
        ).where(CatalogItem.id == item_id)
    ).first()
    if item is None:
        raise NotFound("not_found", f"Item {item_id} is not in the catalogue mirror.")
    points: list[dict[str, Any]] = []
    stmt = (
        select(
            VendorCost.cost,
            VendorCost.currency,
            VendorCost.vendor,
            VendorCost.sku,
            VendorCost.row_number,
            VendorCost.imported_at,
            PriceImport.file_name,
            PriceImport.profile,
            PriceImport.actor,
            VendorPullRow.billing_term,
            VendorPullRow.commitment_term,
            VendorPullRow.quantity,
            VendorPullRow.bands,
        )
        .join(PriceImport, PriceImport.id == VendorCost.import_id)
        # A distributor pull keeps what the distributor said beside the cost (issue 16): the
        # terms and every rate band, shown in the item's detail.
        .outerjoin(
            VendorPullRow,
            and_(
                VendorPullRow.import_id == VendorCost.import_id,
                VendorPullRow.row_number == VendorCost.row_number,
            ),
        )
        # an import still being read has its matched rows staged: not history yet
        .where(VendorCost.item_id == item_id, PriceImport.status == "imported")
        .order_by(VendorCost.imported_at.desc(), VendorCost.id.desc())
        .limit(MAX_POINTS)
    )
    for r in conn.execute(stmt):
        points.append(
            {
                "at": iso(r.imported_at),
                "cost": json_amount(r.cost),
                "currency": r.currency,
                "kind": _kind(r.profile),
                "source": r.file_name,
                "vendor": r.vendor,
                "sku": r.sku,
                "row": r.row_number,
                "by": r.actor,
                **(
                    {
                        "terms": {
                            "billing": r.billing_term,
                            "commitment": r.commitment_term,
                            "quantity": r.quantity,
                        },
                        "bands": r.bands or [],
                    }
                    if r.quantity is not None
                    else {}
                ),
            }
        )
    manual = (
        select(
            ActivityEntry.at,
            ActivityEntry.actor,
            ActivityEntry.action,
            ActivityEntry.after,
            ActivityEntry.details,
        )
        .where(ActivityEntry.action.in_(MANUAL_ACTIONS), ActivityEntry.subject == item.identifier)
        .order_by(ActivityEntry.id.desc())
        .limit(MAX_POINTS)
    )
    points.reverse()  # oldest first; the stable sort below keeps same-second values in order
    manual_points: list[dict[str, Any]] = []
    for e in conn.execute(manual):
        details = json.loads(e.details) if e.details else {}
        if details.get("item_id") != item_id:
            continue  # another item with the same identifier (e.g. an inactive duplicate)
        is_set = e.action == "cost.manual.set"
        manual_points.append(
            {
                "at": iso(e.at),
                "cost": e.after if is_set else None,
                "currency": details.get("currency") or item.currency,
                "kind": "manual" if is_set else "revert",
                "source": "manual edit" if is_set else "manual cost reverted",
                "vendor": None,
                "sku": None,
                "row": None,
                "by": e.actor,
            }
        )
    points += reversed(manual_points)
    points.sort(key=lambda p: p["at"] or "")
    return {
        "item_id": item.id,
        "identifier": item.identifier,
        "name": item.name,
        "currency": item.currency,
        "points": points[-MAX_POINTS:],
    }
