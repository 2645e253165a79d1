"""Vendor-cost pulls from distributor APIs (issue 16): which products to ask about, one pull per
source per run imported all-or-nothing like a price file, the schedule, and each source's state.

A pull asks only about products tied to the catalogue: items whose vendor is the distributor (by
vendor SKU and manufacturer part number), saved mappings for that distributor (by its SKU or
product id), items with a vendor SKU or MPN the distributor may also sell, and - for Pax8 - the
products on the MSP's active subscriptions. The rows come back whole (or the pull fails with
nothing stored) and are committed in ONE write transaction through the intake importer's
``commit_import``: the same ``PriceImport`` record a file gets (the Files view shows "Pax8 API
pull, 342 prices, 2 not found"), the same matching (saved mapping, vendor SKU, MPN, identifier,
with terms), the same precedence (manual costs win). A daemon killed mid-pull has stored
nothing; the next pull starts over.

The adapter from a :class:`PullResult` to the importer's :class:`Prepared` lives here (the
importer has no "rows from an API" entry point): ``_prepared``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from .. import activity, events
from ..costs.table import CostTable
from ..db import CatalogItem, ItemMapping, VendorPullRow
from ..errors import Conflict, InvalidInput
from ..intake import Intake, Prepared, commit_import
from ..mirror.sync import get_state, set_state
from ..store import Store
from .readers import FileUnreadable, rows_from_records
from .sources import ProductRef, PullResult, VendorAuthError, VendorSourceError
from .sources.settings import VendorsSection

__all__ = ["SOURCES", "VendorPulls", "pull_rows"]

log = logging.getLogger(__name__)

SYSTEM = "costrecond"
CATALOGUE_WAIT = 300.0  # seconds the first scheduled pull waits for the first catalogue sync
SOURCES = ("pax8", "ingram")
VENDOR_NAMES = {"pax8": "Pax8", "ingram": "Ingram Micro"}
PROFILE = {"pax8": "pax8-api", "ingram": "ingram-api"}
# Keys of refs a person (or the PSA) tied to this distributor: a miss is worth reporting. Other
# refs are "maybe the distributor sells it too": a miss there is just not its product.
_EXPECTED = ("map:", "vendor:", "sub:")
# The fix shown beside an auth/permission failure (README "Vendor APIs").
FIX = {
    "pax8": (
        "In the Pax8 app open Integrations > API credentials, create (or renew) a credential and "
        "put its client id and secret in [vendors.pax8] (or COSTRECON_PAX8_CLIENT_ID / "
        "COSTRECON_PAX8_CLIENT_SECRET), then run `costrecon vendors pull pax8`."
    ),
    "ingram": (
        "On developer.ingrammicro.com open My Apps, copy the app's client id and secret into "
        "[vendors.ingram] (or COSTRECON_INGRAM_CLIENT_ID / COSTRECON_INGRAM_CLIENT_SECRET) and set "
        "customer_number to your reseller number, then run `costrecon vendors pull ingram`."
    ),
}


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None


@dataclass(slots=True)
class SourceState:
    name: str
    every_hours: float
    state: str = "idle"  # idle | pulling | ok | failed
    last_pull: str | None = None  # when the last pull finished (ok or failed)
    last_ok: str | None = None
    last_result: str | None = None  # the import's summary or the failure's sentence
    import_id: int | None = None
    error: str | None = None
    fix: str | None = None  # the exact fix when the failure is about credentials/permissions
    next_pull: dt.datetime | None = None
    not_found: list[dict[str, Any]] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vendor": VENDOR_NAMES[self.name],
            "state": self.state,
            "last_pull": self.last_pull,
            "last_ok": self.last_ok,
            "last_result": self.last_result,
            "import_id": self.import_id,
            "error": self.error,
            "fix": self.fix,
            "next_pull": _iso(self.next_pull),
            "every_hours": self.every_hours,
            "not_found": self.not_found[:50],
        }


def _build_source(name: str, settings: Any) -> Any:
    if name == "pax8":
        from .sources.pax8 import Pax8Source

        return Pax8Source(settings)
    from .sources.ingram import IngramSource

    return IngramSource(settings)


class VendorPulls:
    """The pull service for every configured distributor source (built by app.py)."""

    def __init__(
        self,
        section: VendorsSection | None,
        store: Store,
        intake: Intake,
        table: CostTable,
        stopping: asyncio.Event,
        *,
        source_factory: Callable[[str, Any], Any] = _build_source,
        wait_for_catalogue: bool = False,
    ) -> None:
        self.section = section or VendorsSection()
        self.store = store
        self.intake = intake
        self.table = table
        self.stopping = stopping
        self._factory = source_factory
        self.states = {
            name: SourceState(name, getattr(self.section, name).pull_every_hours)
            for name in self.section.configured
        }
        self._locks = {name: asyncio.Lock() for name in self.states}
        self._running: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._wake = asyncio.Event()
        # Scheduled pulls wait for the first catalogue sync: the refs come from the catalogue.
        self._catalogue = asyncio.Event()
        if not wait_for_catalogue:
            self._catalogue.set()

    async def catalogue_synced(self) -> None:
        """After-sync hook (mirror loop): the catalogue mirror is current."""
        self._catalogue.set()

    @property
    def configured(self) -> tuple[str, ...]:
        return tuple(self.states)

    # ---- requests from the API ----------------------------------------------------------------

    def names(self, wanted: str | None) -> list[str]:
        if wanted in (None, "", "all"):
            if not self.states:
                raise Conflict(
                    "no_vendor_source",
                    "No vendor API is configured; add [vendors.pax8] or [vendors.ingram] to the "
                    'daemon\'s config file and restart it (README "Vendor APIs").',
                )
            return list(self.states)
        if wanted not in SOURCES:
            raise InvalidInput(
                "bad_field", f"source must be pax8 or ingram (or empty for all), got {wanted!r}."
            )
        if wanted not in self.states:
            raise Conflict(
                "no_vendor_source",
                f"{VENDOR_NAMES[wanted]} is not configured; add [vendors.{wanted}] to the "
                'daemon\'s config file and restart it (README "Vendor APIs").',
            )
        return [wanted]

    def start(self, names: list[str], actor: str) -> list[asyncio.Task[dict[str, Any]]]:
        """Start (or join) a pull of each source; a pull already running is not started twice."""
        tasks = []
        for name in names:
            task = self._running.get(name)
            if task is None or task.done():
                task = asyncio.ensure_future(self.pull(name, actor))
                self._running[name] = task
            tasks.append(task)
        return tasks

    # ---- the schedule ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Pull each source when it is due: at start if it never succeeded (or its last pull is
        older than its interval), then every ``pull_every_hours``."""
        if not self.states:
            return
        with contextlib.suppress(TimeoutError):
            # A PSA that cannot be reached must not stop pulls for ever: wait a while at most.
            await asyncio.wait_for(
                self._first(self._catalogue.wait(), self.stopping.wait()), CATALOGUE_WAIT
            )
        last = await self.store.read(
            lambda c: {n: get_state(c, f"vendors.{n}.last_ok") for n in self.states}
        )
        now = dt.datetime.now(dt.UTC)
        for name, st in self.states.items():
            stamp = last.get(name)
            saved = await self.store.read(lambda c, n=name: get_state(c, f"vendors.{n}.state"))
            if saved:
                with contextlib.suppress(ValueError, TypeError):
                    data = json.loads(saved)
                    st.last_pull, st.last_ok = data.get("last_pull"), data.get("last_ok")
                    st.last_result, st.import_id = data.get("last_result"), data.get("import_id")
                    st.state = data.get("state") or st.state
                    st.error, st.fix = data.get("error"), data.get("fix")
            when = now
            if stamp:
                with contextlib.suppress(ValueError):
                    done = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                    when = max(now, done + dt.timedelta(hours=st.every_hours))
            st.next_pull = when
        while not self.stopping.is_set():
            now = dt.datetime.now(dt.UTC)
            due = [n for n, st in self.states.items() if st.next_pull and st.next_pull <= now]
            if due:
                await asyncio.gather(*self.start(due, SYSTEM), return_exceptions=True)
                continue
            soonest = min(st.next_pull for st in self.states.values() if st.next_pull)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._first(self._wake.wait(), self.stopping.wait()),
                    timeout=max(0.05, (soonest - now).total_seconds()),
                )

    @staticmethod
    async def _first(*aws: Any) -> None:
        tasks = [asyncio.ensure_future(a) for a in aws]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()

    # ---- one pull -------------------------------------------------------------------------------

    async def pull(self, name: str, actor: str) -> dict[str, Any]:
        """Pull one source and import the result as one import; returns the source's state."""
        st = self.states[name]
        async with self._locks[name]:
            st.state, st.error, st.fix = "pulling", None, None
            await self._emit(name)
            settings = getattr(self.section, name)
            source = self._factory(name, settings)
            try:
                refs = await self._refs(name, source)
                result = await source.pull(refs) if refs else None
                if result is not None and not result.rows:
                    st.state, st.import_id = "ok", None
                    st.not_found = _reported(result)
                    st.last_result = f"{result.summary()}; nothing to import."
                elif result is not None:
                    record = await self._import(name, result, actor)
                    st.state, st.import_id = "ok", record["id"]
                    st.last_result = record["message"]
                else:
                    st.state, st.import_id = "ok", None
                    st.last_result = (
                        f"{VENDOR_NAMES[name]}: no catalogue item is mapped to a "
                        f"{VENDOR_NAMES[name]} product yet; nothing to price."
                    )
                st.last_ok = _iso(dt.datetime.now(dt.UTC))
            except VendorAuthError as exc:
                st.state, st.error, st.fix = "failed", str(exc), FIX[name]
                st.last_result = str(exc)
            except (VendorSourceError, FileUnreadable) as exc:
                st.state, st.error = "failed", str(exc)
                st.last_result = str(exc)
            except asyncio.CancelledError:
                st.state = "idle"
                raise
            except Exception as exc:  # noqa: BLE001 - a bug must fail the pull, not the daemon
                log.exception("the %s pull failed unexpectedly", name)
                st.state = "failed"
                st.error = st.last_result = (
                    f"The {VENDOR_NAMES[name]} pull failed ({type(exc).__name__}); see the "
                    "daemon log."
                )
            finally:
                with contextlib.suppress(Exception):
                    await source.aclose()
            st.last_pull = _iso(dt.datetime.now(dt.UTC))
            st.next_pull = dt.datetime.now(dt.UTC) + dt.timedelta(hours=st.every_hours)
            if st.state == "failed":
                await self._record_failure(name, actor)
            await self._save(name)
            self._wake.set()
            return st.json()

    async def _refs(self, name: str, source: Any) -> list[ProductRef]:
        vendor = VENDOR_NAMES[name]
        refs = await self.store.read(lambda c: _catalogue_refs(c, vendor))
        if name == "pax8":
            # Products on the MSP's subscriptions are priced even before anything maps them.
            for sub_pid in sorted({s.product_id for s in await source.subscriptions()}):
                refs.append(ProductRef(f"sub:{sub_pid}", product_id=sub_pid))
        return refs

    async def _import(self, name: str, result: PullResult, actor: str) -> dict[str, Any]:
        matcher = await self.intake.matching.matcher()
        prep = await asyncio.to_thread(_prepared, name, result, actor)
        if prep.result is not None and not prep.result.errors:
            prep.matches = await asyncio.to_thread(matcher.match_all, prep.result.rows)
        if not prep.ok:
            raise VendorSourceError(
                f"The {VENDOR_NAMES[name]} pull could not be imported: {prep.message()}"
            )
        not_found = _reported(result)
        self.states[name].not_found = not_found

        def write(conn: Connection) -> dict[str, Any]:
            matched = sum(1 for m in prep.matches or () if m.item_id is not None)
            record = commit_import(
                conn,
                prep,
                final_path="",
                table=self.table,
                message=f"{prep.name}; {matched} matched to catalogue items",
            )
            provenance = _provenance(name, result, record["id"])
            if provenance:
                conn.execute(insert(VendorPullRow), provenance)
            activity.append(
                conn,
                actor=actor,
                action="vendors.pull",
                subject=VENDOR_NAMES[name],
                details={
                    "source": name,
                    "import_id": record["id"],
                    "prices": len(result.rows),
                    "not_found": not_found[:50],
                    "requests": result.requests,
                    "started_at": _iso(result.started_at),
                    "finished_at": _iso(result.finished_at),
                },
            )
            set_state(conn, f"vendors.{name}.last_ok", _iso(dt.datetime.now(dt.UTC)))
            return record

        return await self.store.write(write)

    async def _record_failure(self, name: str, actor: str) -> None:
        st = self.states[name]
        await self.store.write(
            lambda c: activity.append(
                c,
                actor=actor,
                action="vendors.pull_failed",
                subject=VENDOR_NAMES[name],
                details={"source": name, "reason": st.error},
            )
        )

    async def _save(self, name: str) -> None:
        data = self.states[name].json()
        data.pop("not_found", None)
        text = json.dumps(data)

        def write(conn: Connection) -> None:
            set_state(conn, f"vendors.{name}.state", text)
            events.emit(conn, "vendors", {"source": name, "state": data["state"]})

        await self.store.write(write)

    async def _emit(self, name: str) -> None:
        state = self.states[name].state
        await self.store.write(
            lambda c: events.emit(c, "vendors", {"source": name, "state": state})
        )

    async def aclose(self) -> None:
        """At shutdown: stop pulls in flight. Nothing is half-stored: a pull writes only in its
        final transaction, which either committed or never started."""
        tasks = [t for t in self._running.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def status_json(self) -> dict[str, Any]:
        return {
            "pull_every_hours": self.section.pull_every_hours,
            "sources": [st.json() for st in self.states.values()],
        }


def _catalogue_refs(conn: Connection, vendor: str) -> list[ProductRef]:
    """Products tied to the catalogue, by every identifier the mapping and matching know."""
    refs: list[ProductRef] = []
    wanted = vendor.casefold()
    for m in conn.execute(select(ItemMapping.id, ItemMapping.vendor, ItemMapping.sku)):
        if m.vendor.casefold() == wanted and m.sku:
            # A saved mapping names the distributor's SKU (or, for Pax8, its product id).
            refs.append(ProductRef(f"map:{m.id}", product_id=m.sku, sku=m.sku))
    rows = conn.execute(
        select(
            CatalogItem.id, CatalogItem.vendor_sku, CatalogItem.mpn, CatalogItem.vendor_name
        ).where(CatalogItem.gone.is_(False), CatalogItem.active.is_(True))
    )
    for r in rows:
        if not (r.vendor_sku or r.mpn):
            continue
        ours = (r.vendor_name or "").casefold() == wanted
        if ours:
            refs.append(ProductRef(f"vendor:{r.id}", sku=r.vendor_sku or None, mpn=r.mpn or None))
        elif r.mpn:
            # Bought elsewhere, but the distributor may sell the same part: ask by MPN only
            # (another distributor's SKU means nothing here).
            refs.append(ProductRef(f"item:{r.id}", mpn=r.mpn))
    return refs


def _provenance(name: str, result: PullResult, import_id: int) -> list[dict[str, Any]]:
    """One provenance row per imported row: the row numbers are the records' positions, as
    ``rows_from_records`` numbers them (one-time charges are not records, see
    ``PullResult.records``)."""
    out = []
    recurring = [r for r in result.rows if r.monthly_cost is not None]
    for number, row in enumerate(recurring, start=1):
        out.append(
            {
                "import_id": import_id,
                "row_number": number,
                "source": name,
                "product_id": row.product_id[:128],
                "sku": row.sku[:128],
                "billing_term": row.billing_term,
                "commitment_term": row.commitment_term,
                "quantity": row.quantity,
                "cost": row.cost,
                "currency": row.currency,
                "pulled_at": row.pulled_at,
                "bands": [
                    {
                        "start": b.start,
                        "end": b.end,
                        "cost": format(b.cost, "f"),
                        "list_price": None if b.list_price is None else format(b.list_price, "f"),
                        "charge_type": b.charge_type,
                    }
                    for b in row.bands
                ],
            }
        )
    return out


def _reported(result: PullResult) -> list[dict[str, Any]]:
    """Not-found entries worth a person's time: those the catalogue or a mapping expected."""
    out = []
    for nf in result.not_found:
        if any(k.startswith(_EXPECTED) for k in nf.keys):
            out.append({"identifier": nf.identifier, "reason": nf.reason, "keys": list(nf.keys)})
    return out


def _prepared(name: str, result: PullResult, actor: str) -> Prepared:
    """A pull as the importer's :class:`Prepared` (the thin adapter: the importer's entry point
    takes files). ``name`` is what the Files view shows; the hash is over the rows."""
    result.not_found = [
        nf for nf in result.not_found if any(k.startswith(_EXPECTED) for k in nf.keys)
    ]
    records = result.records()
    body = json.dumps(records, default=str, sort_keys=True).encode()
    title = result.summary()
    prep = Prepared(
        path=Path(title),
        name=title,
        size=len(body),
        mtime_ns=0,
        sha256=hashlib.sha256(body).hexdigest(),
        actor=actor,
    )
    if not records:
        prep.failure = (
            f"{VENDOR_NAMES[name]} returned no recurring price for the mapped products; check the "
            "mappings in the Mappings view."
        )
        return prep
    read = rows_from_records(records, "generic", vendor=VENDOR_NAMES[name])
    read.profile = PROFILE[name]
    prep.result = read
    return prep


def pull_rows(conn: Connection, import_id: int) -> list[dict[str, Any]]:
    """The provenance rows of one API pull, in row order (empty for a file import)."""
    out = []
    for r in conn.execute(
        select(VendorPullRow.__table__)
        .where(VendorPullRow.import_id == import_id)
        .order_by(VendorPullRow.row_number)
    ):
        out.append(
            {
                "row": r.row_number,
                "source": r.source,
                "product_id": r.product_id,
                "sku": r.sku,
                "billing_term": r.billing_term,
                "commitment_term": r.commitment_term,
                "quantity": r.quantity,
                "cost": format(r.cost, "f"),
                "currency": r.currency,
                "pulled_at": _iso(r.pulled_at),
                "bands": r.bands or [],
            }
        )
    return out
