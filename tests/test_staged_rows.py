"""An import stages its rows under a PriceImport "importing" until its final transaction, and a
staged row can carry an item before then: a re-match after a sync sets the item of every
unmatched row a new catalogue item matches, staged ones included. The cost table and an item's
history must not see such a row before its import is imported (the cost table never shows part
of a file, and a file that then fails never showed at all)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from costrecon_daemon.costs.history import cost_history
from costrecon_daemon.costs.table import CostTable
from costrecon_daemon.db import CatalogItem, PriceImport, VendorCost, utcnow


async def test_staged_matched_rows_count_only_once_their_import_is_imported(
    synced_store: Any,
) -> None:
    store = synced_store
    item = store.read_sync(
        lambda c: c.execute(
            select(CatalogItem.id, CatalogItem.currency).where(CatalogItem.gone.is_(False))
        ).first()
    )

    def stage(conn: Any) -> int:
        import_id = conn.execute(
            PriceImport.__table__.insert().values(
                file_name="big.csv",
                sha256="0" * 64,
                size=1,
                status="importing",
                rows_total=0,
                rows_imported=0,
                rows_matched=0,
                final_path="",
                received_at=utcnow(),
            )
        ).inserted_primary_key[0]
        conn.execute(
            VendorCost.__table__.insert().values(
                import_id=import_id,
                row_number=2,
                vendor="Ingram",
                sku="X-1",
                description="x",
                cost=Decimal("123.4567"),
                currency=item.currency,
                item_id=item.id,
                match_method="vendor_sku",
                imported_at=utcnow(),
            )
        )
        return int(import_id)

    import_id = store.write_sync(stage)  # fmt: skip

    def seen() -> tuple[Any, list[Any]]:
        table = CostTable()
        store.read_sync(table.reload)
        row = next((r for r in table.get([item.id])), None)
        history = store.read_sync(cost_history, item.id)
        return (row.vendor_cost if row else None), [p["cost"] for p in history["points"]]

    vendor_cost, points = seen()
    assert vendor_cost != Decimal("123.4567") and "123.4567" not in points

    store.write_sync(
        lambda c: c.execute(
            update(PriceImport).where(PriceImport.id == import_id).values(status="imported")
        )
    )
    vendor_cost, points = seen()
    assert vendor_cost == Decimal("123.4567") and "123.4567" in points
