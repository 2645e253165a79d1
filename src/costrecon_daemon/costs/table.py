"""The cost table (DESIGN.md §4): one row per catalogue item with a vendor cost or a contract line.

Rows are computed in SQL with grouped queries and kept in an in-memory table so that filtering
and sorting 50,000 rows costs milliseconds; parts of the table are refreshed by item id when
something changes (a manual cost, an import, a pushed step), the whole when a sync lands.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.engine import Connection

from .. import events
from ..db import (
    CatalogItem,
    ChangeSet,
    ChangeStep,
    Contract,
    ContractLine,
    ManualCost,
    PriceImport,
    VendorCost,
)
from ..jsonable import iso
from ..money import from_units, json_amount, quantize

SORT_KEYS = (
    "identifier",
    "name",
    "contracts",
    "catalog_cost",
    "vendor_cost",
    "change",
    "change_pct",
    "state",
)
# Rows computed at a time by CostTable.refresh (each slice's queries take its ids in IN lists).
REFRESH_SLICE = 1000
STATES = ("", "scheduled", "pending", "pushing", "done", "conflict", "failed", "denied")


@dataclass(slots=True)
class Row:
    id: int
    psa_id: str
    identifier: str
    name: str
    currency: str
    catalog_cost: Decimal | None
    contracts: int = 0
    lines: int = 0
    vendor_cost: Decimal | None = None
    vendor_currency: str | None = None
    vendor_source: dict[str, Any] | None = None
    state: str = ""
    state_detail: dict[str, Any] = field(default_factory=dict)
    search: str = ""
    # sell prices and cost sources (issue 18.3, 20.11): loaded by _apply_prices/_apply_sources
    price: Decimal | None = None
    line_price_min: Decimal | None = None  # the cheapest live line's price, in the row currency
    sources: list[dict[str, Any]] | None = None  # competing vendor costs, the winner first
    margin_floor: Decimal | None = None  # percent, stamped by the CostTable that holds the row
    # The item's latest change set, its step counts by state and the value it pushes: the state
    # is derived from these, and a push updates them step by step (never by rescanning steps).
    push_cs: int | None = None
    push_counts: dict[str, int] = field(default_factory=dict)
    pushed: Decimal | None = None
    scheduled_for: str | None = None  # push_cs waits for this effective date (issue 18.4)

    @property
    def comparable(self) -> bool:
        return (
            self.vendor_cost is not None
            and self.catalog_cost is not None
            and self.vendor_currency == self.currency
        )

    @property
    def change(self) -> Decimal | None:
        if self.vendor_cost is None or self.catalog_cost is None or not self.comparable:
            return None
        return quantize(self.vendor_cost - self.catalog_cost)

    @property
    def change_pct(self) -> Decimal | None:
        if self.vendor_cost is None or not self.comparable or not self.catalog_cost:
            return None
        return ((self.vendor_cost - self.catalog_cost) * 100 / self.catalog_cost).quantize(
            Decimal("0.01")
        )

    @property
    def changed(self) -> bool:
        ch = self.change
        return ch is not None and ch != 0

    def to_json(self) -> dict[str, Any]:
        detail = dict(self.state_detail)
        if self.vendor_cost is not None and self.vendor_currency != self.currency:
            detail["currency_mismatch"] = (
                f"vendor cost is in {self.vendor_currency}, catalogue in {self.currency}"
            )
        return {
            "id": self.id,
            "psa_id": self.psa_id,
            "identifier": self.identifier,
            "name": self.name,
            "contracts": self.contracts,
            "lines": self.lines,
            "currency": self.currency,
            "catalog_cost": json_amount(self.catalog_cost),
            "vendor_cost": json_amount(self.vendor_cost),
            "vendor_source": self.vendor_source,
            "change": json_amount(self.change),
            "change_pct": None if self.change_pct is None else format(self.change_pct, "f"),
            "state": self.state,
            "state_detail": detail,
            **self.margin_json(),
            **({"vendor_sources": self.sources} if self.sources else {}),
        }

    def margin_json(self) -> dict[str, Any]:
        """Price and margins: now (catalogue cost), after the vendor cost, and the lowest line."""
        after_cost = self.vendor_cost if self.comparable else None
        low = margin_pct(self.line_price_min, after_cost)
        below = (
            low is not None and self.margin_floor is not None and self.changed
        ) and low < self.margin_floor
        return {
            "price": json_amount(self.price),
            "margin_pct": _pct_text(margin_pct(self.price, self.catalog_cost)),
            "margin_after_pct": _pct_text(margin_pct(self.price, after_cost)),
            "line_margin_min_after_pct": _pct_text(low),
            "below_margin_floor": bool(below),
        }


def margin_pct(price: Decimal | None, cost: Decimal | None) -> Decimal | None:
    """(price − cost) / price in percent; None without a positive price or a cost."""
    if price is None or cost is None or price <= 0:
        return None
    return ((price - cost) * 100 / price).quantize(Decimal("0.1"))


def _pct_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _line_scope() -> Any:
    """Lines that count: live lines on live contracts (cancelled ones are kept but not counted)."""
    return and_(
        ContractLine.active.is_(True),
        ContractLine.gone.is_(False),
        Contract.active.is_(True),
        Contract.gone.is_(False),
    )


def _may_be_rows() -> tuple[Any, ...]:
    """Live catalogue items that may be rows (a vendor cost or a contract line; load_rows makes
    the exact test): a 50,000-item catalogue has 11,000 of them, and a Row made for each of the
    others and dropped again took tens of MB that stayed in the daemon's RSS, pinned by the rows
    kept among them (issue 14 item 5). An index lookup or three per item."""
    return (
        CatalogItem.active.is_(True),
        CatalogItem.gone.is_(False),
        or_(
            exists().where(VendorCost.item_id == CatalogItem.id, VendorCost.item_id.is_not(None)),
            exists().where(ManualCost.item_id == CatalogItem.id),
            exists().where(ContractLine.item_psa_id == CatalogItem.psa_id),
        ),
    )


def load_rows(conn: Connection, ids: Iterable[int] | None = None) -> dict[int, Row]:
    """Compute table rows for ``ids`` (or every item). Items without vendor cost and lines are
    omitted."""
    id_list = None if ids is None else list(ids)

    def restrict(stmt: Any, col: Any) -> Any:
        return stmt if id_list is None else stmt.where(col.in_(id_list))

    items: dict[int, Row] = {}
    stmt = select(
        CatalogItem.id,
        CatalogItem.psa_id,
        CatalogItem.identifier,
        CatalogItem.name,
        CatalogItem.currency,
        CatalogItem.cost,
    ).where(*_may_be_rows())
    for r in conn.execute(restrict(stmt, CatalogItem.id)):
        items[r.id] = Row(
            id=r.id,
            psa_id=r.psa_id,
            identifier=r.identifier,
            name=r.name,
            currency=r.currency,
            catalog_cost=r.cost,
            search=f"{r.identifier}\t{r.name}".casefold(),
        )
    if not items:
        return {}
    by_psa = {row.psa_id: row for row in items.values()}

    agg = (
        select(
            ContractLine.item_psa_id,
            func.count(func.distinct(ContractLine.contract_psa_id)),
            func.count(),
        )
        .join(Contract, Contract.psa_id == ContractLine.contract_psa_id)
        .where(_line_scope())
        .group_by(ContractLine.item_psa_id)
    )
    if id_list is not None:
        agg = agg.where(ContractLine.item_psa_id.in_(list(by_psa)))
    for psa_id, n_contracts, n_lines in conn.execute(agg):
        row = by_psa.get(psa_id)
        if row is not None:
            row.contracts, row.lines = n_contracts, n_lines

    ranked = (
        select(
            VendorCost.item_id,
            VendorCost.cost,
            VendorCost.currency,
            VendorCost.vendor,
            VendorCost.sku,
            VendorCost.row_number,
            VendorCost.imported_at,
            PriceImport.file_name,
            func.row_number()
            .over(
                partition_by=VendorCost.item_id,
                order_by=(VendorCost.imported_at.desc(), VendorCost.id.desc()),
            )
            .label("rn"),
        )
        .join(PriceImport, PriceImport.id == VendorCost.import_id)
        # Rows of an import still being read ("importing") may carry an item already (a
        # re-match after a sync reaches staged rows too): they count once the import's final
        # transaction says "imported", never part of a file before.
        .where(VendorCost.item_id.is_not(None), PriceImport.status == "imported")
    )
    ranked = restrict(ranked, VendorCost.item_id).subquery()
    for r in conn.execute(select(ranked).where(ranked.c.rn == 1)):
        row = items.get(r.item_id)
        if row is not None:
            row.vendor_cost, row.vendor_currency = r.cost, r.currency
            row.vendor_source = {
                "kind": "import",
                "at": iso(r.imported_at),
                "file": r.file_name,
                "row": r.row_number,
                "vendor": r.vendor,
                "sku": r.sku,
                "by": None,
            }
    for r in conn.execute(restrict(select(ManualCost), ManualCost.item_id)):
        row = items.get(r.item_id)
        if row is not None:  # a manual override beats any import (DESIGN §3 provenance)
            row.vendor_cost, row.vendor_currency = r.cost, r.currency
            row.vendor_source = {
                "kind": "manual",
                "at": iso(r.set_at),
                "by": r.set_by,
                "file": None,
                "row": None,
                "vendor": None,
                "sku": None,
            }
    _apply_prices(conn, items, id_list)
    _apply_sources(conn, items, id_list)
    _apply_states(conn, items, id_list)
    return {i: row for i, row in items.items() if row.vendor_cost is not None or row.lines > 0}


def _apply_prices(conn: Connection, items: dict[int, Row], id_list: list[int] | None) -> None:
    """Each item's sell price and the lowest price among its live contract lines.

    Lines in another currency than the item are left out: a price in CAD says nothing about the
    margin on a USD cost.
    """
    stmt = select(CatalogItem.id, CatalogItem.price).where(CatalogItem.price.is_not(None))
    if id_list is not None:
        stmt = stmt.where(CatalogItem.id.in_(id_list))
    for item_id, price in conn.execute(stmt):
        row = items.get(item_id)
        if row is not None:
            row.price = price
    by_psa = {row.psa_id: row for row in items.values()}
    low = (
        select(ContractLine.item_psa_id, ContractLine.currency, func.min(ContractLine.unit_price))
        .join(Contract, Contract.psa_id == ContractLine.contract_psa_id)
        .where(_line_scope(), ContractLine.unit_price.is_not(None))
        .group_by(ContractLine.item_psa_id, ContractLine.currency)
    )
    if id_list is not None:
        low = low.where(ContractLine.item_psa_id.in_(list(by_psa)))
    for psa_id, currency, price in conn.execute(low):
        row = by_psa.get(psa_id)
        if row is not None and currency == row.currency:
            row.line_price_min = price


def _source_key(source: dict[str, Any] | None) -> str | None:
    """What identifies a cost source for precedence: a person, or one vendor's files/pulls."""
    if not source:
        return None
    if source.get("kind") == "manual":
        return "manual"
    return f"{source.get('kind')}:{(source.get('vendor') or source.get('file') or '').casefold()}"


def _when(at: str | None) -> str:
    return (at or "?")[:16].replace("T", " ") + (" UTC" if at else "")


def _apply_sources(conn: Connection, items: dict[int, Row], id_list: list[int] | None) -> None:
    """When more than one source supplies a cost for an item, say which wins and why.

    Precedence (DESIGN.md §3): a manual override beats every import; among imports and pulls the
    newest wins. A source is one vendor (its files and API pulls alike); its latest cost stands
    for it.
    """
    latest = (
        select(
            VendorCost.item_id,
            VendorCost.vendor,
            VendorCost.cost,
            VendorCost.currency,
            VendorCost.imported_at,
            PriceImport.file_name,
            func.row_number()
            .over(
                partition_by=(VendorCost.item_id, VendorCost.vendor),
                order_by=(VendorCost.imported_at.desc(), VendorCost.id.desc()),
            )
            .label("rn"),
        )
        .join(PriceImport, PriceImport.id == VendorCost.import_id)
        .where(VendorCost.item_id.is_not(None), PriceImport.status == "imported")  # as above
    )
    if id_list is not None:
        latest = latest.where(VendorCost.item_id.in_(id_list))
    newest = latest.subquery()
    found: dict[int, list[dict[str, Any]]] = {}
    for r in conn.execute(select(newest).where(newest.c.rn == 1)):
        found.setdefault(r.item_id, []).append(
            {
                "kind": "import",
                "vendor": r.vendor,
                "file": r.file_name,
                "at": iso(r.imported_at),
                "cost": json_amount(r.cost),
                "currency": r.currency,
            }
        )
    for item_id, row in items.items():
        imports = sorted(found.get(item_id, []), key=lambda s: s["at"] or "", reverse=True)
        manual = row.vendor_source if (row.vendor_source or {}).get("kind") == "manual" else None
        n = len(imports) + (1 if manual else 0)
        if n < 2 or row.vendor_source is None:
            continue
        entries = []
        if manual:
            entries.append(
                {
                    "kind": "manual",
                    "by": manual.get("by"),
                    "at": manual.get("at"),
                    "cost": json_amount(row.vendor_cost),
                    "currency": row.vendor_currency,
                }
            )
            why = "manual override: a person's cost beats every import"
        else:
            first, second = imports[0], imports[1]
            why = (
                f"newest: {first['vendor']} ({_when(first['at'])}) is newer than "
                f"{second['vendor']} ({_when(second['at'])})"
            )
        entries.extend(imports)
        entries[0]["wins"] = True
        row.sources = entries
        row.vendor_source = {**row.vendor_source, "wins_because": why, "competing": n}


def _apply_states(conn: Connection, items: dict[int, Row], id_list: list[int] | None) -> None:
    # Counts per (item, change set, state) in one grouped pass over the items' steps, and the
    # latest change set per item picked here: a join on a "latest change set" subquery made
    # SQLite compare every step with every item (minutes for a 120,000-step set).
    item_after = func.max(case((ChangeStep.target == "item", ChangeStep.after)))
    stmt = select(
        ChangeStep.item_id,
        ChangeStep.change_set_id,
        ChangeStep.status,
        func.count(),
        item_after,
        func.max(ChangeStep.after),
    ).group_by(ChangeStep.item_id, ChangeStep.change_set_id, ChangeStep.status)
    batches: list[Any] = (
        [None] if id_list is None else [id_list[i : i + 900] for i in range(0, len(id_list), 900)]
    )
    latest: dict[int, int] = {}
    found: list[Any] = []
    for batch in batches:
        q = stmt if batch is None else stmt.where(ChangeStep.item_id.in_(batch))
        for rec in conn.execute(q):
            found.append(rec)
            if rec[1] > latest.get(rec[0], 0):
                latest[rec[0]] = rec[1]
    for item_id, cs, status, n, after_item, after_any in found:
        row = items.get(item_id)
        if row is None or latest[item_id] != cs:
            continue
        if row.push_cs != cs:
            row.push_cs, row.push_counts, row.pushed = cs, {}, None
        row.push_counts[status] = n
        # The catalogue item's new cost is what the change set pushes; a set that wrote only
        # lines (the item already held it) pushes the one value its lines share.
        pushed = _money(after_item)
        if pushed is None:
            pushed = _money(after_any)
        if pushed is not None and (row.pushed is None or after_item is not None):
            row.pushed = pushed
    _apply_scheduled(conn, items)
    for row in items.values():
        derive_state(row)


def _apply_scheduled(conn: Connection, items: dict[int, Row]) -> None:
    # Scheduled sets are few (approvals waiting for a date): one small query, no join.
    days = dict(
        conn.execute(
            select(ChangeSet.id, ChangeSet.effective_date).where(ChangeSet.status == "scheduled")
        ).all()
    )
    for row in items.values():
        day = days.get(row.push_cs) if row.push_cs is not None else None
        row.scheduled_for = day.isoformat() if day is not None else None


def _money(v: Any) -> Decimal | None:
    # An aggregate over a Money column comes back converted on some dialects, raw on others.
    return v if v is None or isinstance(v, Decimal) else from_units(v)


def derive_state(row: Row) -> None:
    """The row's action column from its latest change set's counts (issue 20 item 4: a row says
    done only while its catalogue cost equals its vendor cost and the value that was pushed)."""
    c = row.push_counts
    if row.push_cs is None:
        row.state, row.state_detail = "", {}
        return
    total = sum(c.values())
    done = c.get("done", 0)
    open_ = c.get("pending", 0) + c.get("sending", 0)
    if open_ and row.scheduled_for and not done and not c.get("sending"):
        state = "scheduled"
    elif open_:
        state = "pushing" if done or c.get("sending") else "pending"
    elif c.get("denied"):
        state = "denied"
    elif c.get("conflict"):
        state = "conflict"
    elif c.get("failed"):
        state = "failed"
    elif c.get("cancelled") == total:
        state = "cancelled"
    else:
        state = "done"
    detail: dict[str, Any] = {
        "change_set_id": row.push_cs,
        "done": done,
        "total": total,
        **{k: v for k, v in c.items() if v and k in ("conflict", "failed", "denied", "cancelled")},
        "pushed": json_amount(row.pushed),
    }
    if state == "scheduled":
        detail["effective_date"] = row.scheduled_for
    if state == "cancelled":
        # Nothing was sent: the row is the open question it was before the approval.
        state = ""
        detail["note"] = f"change set {row.push_cs} was cancelled before its effective date"
    if state == "done" and not (
        row.pushed is not None and row.catalog_cost == row.pushed and row.vendor_cost == row.pushed
    ):
        # Pushed, but the costs have moved since (an edit, a new price file, an undo): the row
        # is an open question again, not "done".
        state = ""
        detail["note"] = (
            f"change set {row.push_cs} pushed {json_amount(row.pushed)}; the costs have changed "
            "since"
        )
    row.state, row.state_detail = state, detail


class CostTable:
    """The in-memory table the API filters and sorts; refreshed from SQL (thread-safe)."""

    def __init__(self, *, margin_floor: Decimal | None = None) -> None:
        self.margin_floor = margin_floor
        self._rows: dict[int, Row] = {}
        self._lock = threading.Lock()
        self.loaded = False
        self.version = 0
        self.dirty: set[int] = (
            set()
        )  # items whose rows a push changed, refreshed by its progress report

    def reload(self, conn: Connection) -> None:
        if self.loaded:
            # Every row that is or may become one, refreshed a slice at a time (see refresh):
            # made whole beside the old table, a reload after a sync or a price file left a
            # table's worth of freed space in the daemon's RSS for good (issue 14 item 5).
            with self._lock:
                ids = set(self._rows)
            ids.update(conn.execute(select(CatalogItem.id).where(*_may_be_rows())).scalars())
            self.refresh(conn, ids)
            rows: Any = self._rows
        else:
            rows = load_rows(conn)
            self._after_load(conn, rows, None)
            with self._lock:
                self._rows = rows
                self.loaded = True
                self.version += 1
        # Announced in the reload's own transaction: `costrecon sync --wait` returns on this, so
        # a script that syncs and then reads the table sees what the sync brought (issue 13).
        events.emit(conn, "table", {"reason": "reload", "rows": len(rows)})

    def refresh(self, conn: Connection, ids: Iterable[int]) -> list[int]:
        """Rows ``ids`` computed again, a slice at a time: a finished vendor-wide push refreshes
        11,000 rows, and a whole new copy of them made beside the old one stayed in the daemon's
        RSS as freed space (issue 14 item 5); a slice's old rows are freed before the next one
        is made. Every slice reads the caller's one transaction, so the rows agree."""
        ids = list(set(ids))
        for start in range(0, len(ids), REFRESH_SLICE):
            part = ids[start : start + REFRESH_SLICE]
            fresh = load_rows(conn, part)
            self._after_load(conn, fresh, part)
            with self._lock:
                for i in part:
                    if i in fresh:
                        self._rows[i] = fresh[i]
                    else:
                        self._rows.pop(i, None)
                self.version += 1
            del fresh
        return ids

    def _after_load(self, conn: Connection, fresh: dict[int, Row], ids: list[int] | None) -> None:
        """Stamp the margin floor on fresh rows; log a change of winning cost source."""
        for row in fresh.values():
            row.margin_floor = self.margin_floor
        if not self.loaded:
            return  # the first load after start: nothing to compare with
        with self._lock:
            old = {i: self._rows[i] for i in (fresh if ids is None else ids) if i in self._rows}
        log_winner_changes(conn, old, fresh)

    def start_push(
        self, cs_id: int, steps_per_item: dict[int, int], pushed: dict[int, Decimal]
    ) -> list[int]:
        """A change set was journaled: its items are pending, without rescanning any step."""
        touched = []
        with self._lock:
            for item_id, n in steps_per_item.items():
                row = self._rows.get(item_id)
                if row is None:
                    continue
                row.push_cs, row.push_counts, row.pushed = (
                    cs_id,
                    {"pending": n},
                    pushed.get(item_id),
                )
                derive_state(row)
                touched.append(item_id)
            self.version += 1
        return touched

    def mark_scheduled(self, cs_id: int, day: str | None) -> None:
        """The set ``cs_id`` waits for ``day`` (None: it started); its rows' state follows."""
        with self._lock:
            for row in self._rows.values():
                if row.push_cs == cs_id:
                    row.scheduled_for = day
                    derive_state(row)
                    self.dirty.add(row.id)
            self.version += 1

    def move_steps(
        self,
        cs_id: int,
        moves: Iterable[tuple[int, str, str]],
        catalog: dict[int, Decimal] | None = None,
    ) -> None:
        """Steps of ``cs_id`` went from one state to another (``(item_id, old, new)``), and the
        catalogue costs in ``catalog`` were verified: O(steps moved), whatever the set's size."""
        touched: set[int] = set()
        with self._lock:
            for item_id, old, new in moves:
                row = self._rows.get(item_id)
                if row is None or row.push_cs != cs_id:
                    continue
                c = row.push_counts
                c[old] = c.get(old, 0) - 1
                c[new] = c.get(new, 0) + 1
                touched.add(item_id)
            for item_id, value in (catalog or {}).items():
                row = self._rows.get(item_id)
                if row is not None:
                    row.catalog_cost = value
                    touched.add(item_id)
            for item_id in touched:
                derive_state(self._rows[item_id])
            if touched:
                self.version += 1
            self.dirty |= touched

    def take_dirty(self) -> list[int]:
        with self._lock:
            items, self.dirty = self.dirty, set()
        return sorted(items)

    def get(self, ids: Iterable[int]) -> list[Row]:
        with self._lock:
            return [self._rows[i] for i in ids if i in self._rows]

    def total(self) -> int:
        return len(self._rows)

    def view(
        self,
        *,
        query: str = "",
        changed: bool = False,
        state: str | None = None,
        sort: str = "identifier",
        descending: bool = False,
    ) -> list[int]:
        with self._lock:
            rows = list(self._rows.values())
        if query:
            needle = query.casefold()
            rows = [r for r in rows if needle in r.search]
        if changed:
            rows = [r for r in rows if r.changed]
        if state:
            rows = [r for r in rows if r.state == state]
        key = _sort_key(sort)
        # Stable tie-break on id; missing values sort last whichever the direction.
        present = [r for r in rows if key(r) is not None]
        missing = [r for r in rows if key(r) is None]
        present.sort(key=lambda r: r.id)
        present.sort(key=key, reverse=descending)
        missing.sort(key=lambda r: r.id)
        return [r.id for r in present + missing]


def log_winner_changes(conn: Connection, old: dict[int, Row], fresh: dict[int, Row]) -> None:
    """An activity entry for each item whose winning import source changed to another vendor.

    Manual overrides are logged where they are set (cost.manual.*); this catches the silent case,
    a second vendor's file or pull taking over an item another vendor supplied (issue 20.11).
    """
    from .. import activity

    for item_id, row in fresh.items():
        before = old.get(item_id)
        if before is None or before.vendor_source is None or row.vendor_source is None:
            continue
        a, b = _source_key(before.vendor_source), _source_key(row.vendor_source)
        if a == b or "manual" in (a, b):
            continue
        src = row.vendor_source
        activity.append(
            conn,
            actor="costrecond",
            action="cost.source.changed",
            subject=row.identifier,
            before=f"{json_amount(before.vendor_cost)} from {before.vendor_source.get('vendor')}",
            after=f"{json_amount(row.vendor_cost)} from {src.get('vendor')}",
            details={
                "item_id": item_id,
                "from": {k: before.vendor_source.get(k) for k in ("vendor", "file", "at")},
                "to": {k: src.get(k) for k in ("vendor", "file", "at")},
                "why": src.get("wins_because") or "newest import wins",
            },
        )


def _sort_key(sort: str) -> Any:
    if sort == "identifier":
        return lambda r: r.identifier.casefold()
    if sort == "name":
        return lambda r: r.name.casefold()
    if sort == "contracts":
        return lambda r: r.contracts
    if sort == "state":
        return lambda r: r.state or None
    return lambda r: getattr(r, sort)
