"""Read-only queries behind the imports, unmatched-rows and mappings API."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from ..db import CatalogItem, ItemMapping, PriceImport, VendorCost
from ..jsonable import iso
from ..vendors.normalise import normalise_sku

log = logging.getLogger(__name__)

# The start of an import's message once its file changed after the import (issue 13 #12); the
# Files view shows it and /v1/imports flags it.
CHANGED_AFTER_IMPORT = "Changed after import"

REMATCH_COLS = (
    VendorCost.id,
    VendorCost.vendor,
    VendorCost.sku,
    VendorCost.mpn,
    VendorCost.manufacturer,
    VendorCost.description,
    VendorCost.term,
    VendorCost.item_id,
    VendorCost.match_method,
)


def import_json(r: Any, *, detail: bool = False) -> dict[str, Any]:
    out = {
        "id": r.id,
        "file_name": r.file_name,
        "status": r.status,
        "profile": r.profile,
        "vendor": r.vendor,
        "rows_total": r.rows_total,
        "rows_imported": r.rows_imported,
        "rows_matched": r.rows_matched,
        "received_at": iso(r.received_at),
        "final_path": r.final_path,
        "message": r.message,
        "changed_after_import": (r.message or "").startswith(CHANGED_AFTER_IMPORT),
    }
    if detail:
        out.update(errors=list(r.errors or []), sha256=r.sha256, size=r.size, actor=r.actor)
    return out


def _newest_per_key() -> Any:
    """Vendor-cost rows not superseded by a later import of the same vendor + SKU + term."""
    newer = VendorCost.__table__.alias("newer")
    return (
        ~select(newer.c.id)
        .where(
            newer.c.vendor == VendorCost.vendor,
            newer.c.sku == VendorCost.sku,
            newer.c.term.is_not_distinct_from(VendorCost.term),
            newer.c.import_id > VendorCost.import_id,
        )
        .exists()
    )


COMMON = 5_000  # a vendor with this many rows fills a page quickly along the primary key


def _common_vendor(conn: Connection, vendor: str) -> bool:
    """Whether ``vendor`` has at least ``COMMON`` rows (counted through the index, stopping
    there): a rare vendor's rows are best found through the index, a common one's by id order."""
    few = select(VendorCost.id).where(VendorCost.vendor == vendor).limit(COMMON).subquery()
    return (conn.execute(select(func.count()).select_from(few)).scalar() or 0) >= COMMON


def unmatched_rows(
    conn: Connection,
    limit: int,
    *,
    before: int | None = None,
    import_id: int | None = None,
    vendor: str | None = None,
) -> list[Any]:
    """One page of vendor rows no catalogue item matched, newest first (by row id: a later
    import's rows always have higher ids), never the whole set: at 2,000,000 rows the page is
    read along the primary key and stops at ``limit``. ``before`` is the last id of the previous
    page; ``import_id`` and ``vendor`` narrow it to one file or one vendor."""
    conds = [VendorCost.item_id.is_(None), PriceImport.status == "imported", _newest_per_key()]
    if before is not None:
        conds.append(VendorCost.id < before)
    if import_id is not None:
        conds.append(VendorCost.import_id == import_id)
    if vendor is not None:
        if _common_vendor(conn, vendor):
            # Walk the primary key (newest first) and test the vendor on the way: a distributor
            # with a million rows fills a page within a few hundred. Through the (vendor, sku,
            # term) index the database would first gather and sort all of that vendor's rows.
            conds.append(VendorCost.vendor + "" == vendor)
        else:
            conds.append(VendorCost.vendor == vendor)
    stmt = (
        select(
            *REMATCH_COLS,
            VendorCost.cost,
            VendorCost.currency,
            VendorCost.row_number,
            VendorCost.import_id,
            PriceImport.file_name,
        )
        .join(PriceImport, PriceImport.id == VendorCost.import_id)
        .where(*conds)
        .order_by(VendorCost.id.desc())
        .limit(limit)
    )
    return list(conn.execute(stmt))


def counts(conn: Connection) -> dict[str, int]:
    """Vendor rows, and those unmatched and not superseded by a newer import. Counted through
    the narrow indexes (all rows by import, matched rows by item): the unmatched rows are the
    difference, less the superseded ones, which only rows of older imports can be (rows of the
    newest import are never looked at one by one)."""
    # Rows of an import still being written ("importing") do not exist yet for anyone.
    staged = VendorCost.import_id.not_in(
        select(PriceImport.id).where(PriceImport.status == "importing")
    )
    total = conn.execute(select(func.count()).select_from(VendorCost).where(staged)).scalar() or 0
    matched = (
        conn.execute(
            select(func.count())
            .select_from(VendorCost)
            .where(VendorCost.item_id.is_not(None), staged)
        ).scalar()
        or 0
    )
    newest = conn.execute(select(func.max(VendorCost.import_id))).scalar()
    superseded = 0
    if newest is not None:
        superseded = (
            conn.execute(
                select(func.count())
                .select_from(VendorCost)
                .where(
                    VendorCost.import_id < newest,
                    VendorCost.item_id.is_(None),
                    staged,
                    ~_newest_per_key(),
                )
            ).scalar()
            or 0
        )
    return {"vendor_costs": total, "unmatched": total - matched - superseded}


def mapping_json(conn: Connection, mapping_id: int) -> dict[str, Any] | None:
    rows = mappings_json(conn, mapping_id)
    return rows[0] if rows else None


def mappings_json(conn: Connection, mapping_id: int | None = None) -> list[dict[str, Any]]:
    stmt = (
        select(ItemMapping, CatalogItem.identifier, CatalogItem.name)
        .join(CatalogItem, CatalogItem.id == ItemMapping.item_id, isouter=True)
        .order_by(ItemMapping.vendor, ItemMapping.sku, ItemMapping.term, ItemMapping.id)
    )
    if mapping_id is not None:
        stmt = stmt.where(ItemMapping.id == mapping_id)
    return [
        {
            "id": r.id,
            "vendor": r.vendor,
            "sku": r.sku,
            "term": r.term or None,
            "item_id": r.item_id,
            "identifier": r.identifier,
            "name": r.name,
            "created_by": r.created_by,
            "created_at": iso(r.created_at),
        }
        for r in conn.execute(stmt)
    ]


def vendor_key(vendor: str | None) -> str:
    return " ".join((vendor or "").casefold().split())


def rows_for_key(conn: Connection, vendor: str, sku: str, term: str | None) -> list[Any]:
    """Vendor-cost rows a mapping (vendor, SKU, term; None = any) applies to, compared as the
    Matcher compares them. The index on (vendor, sku, term) finds the usual spellings; rows that
    differ only in odd case or spacing are picked up by the next import or sync."""
    variants_v = {vendor, vendor.strip(), vendor.upper(), vendor.lower(), vendor.title()}
    variants_s = {sku, sku.strip(), sku.upper(), sku.lower()}
    stmt = select(*REMATCH_COLS).where(
        VendorCost.vendor.in_(variants_v), VendorCost.sku.in_(variants_s)
    )
    if term is not None:
        stmt = stmt.where(VendorCost.term == term)
    vkey, skey = vendor_key(vendor), normalise_sku(sku)
    return [
        r
        for r in conn.execute(stmt)
        if vendor_key(r.vendor) == vkey and normalise_sku(r.sku) == skey
    ]
