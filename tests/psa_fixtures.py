"""Realistic small tenants and a running simulator + daemon pair for reconciliation tests.

:func:`psa_daemon` serves one PSA simulator (ConnectWise, Autotask or Syncro) from a background
thread, starts a real ``costrecond run`` child process wired to it and yields a :class:`SimAdapter`
that speaks the PSA-neutral dataset ids (``SimItem.id``, ``SimLine.id``) whatever the PSA maps
them to, so one test body can assert the same guarantees against every simulator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from costrecon_daemon.psa.base import LineKey
from costrecon_daemon.sim.dataset import Dataset, SimContract, SimItem, SimLine
from costrecon_daemon.sim.serve import ServedApp

from .harness import DaemonProcess, ThreadedDaemon

PSAS = ("connectwise", "autotask", "syncro")

CW_CREDS = {
    "company": "acme",
    "public_key": "pubkey0123456789",
    "private_key": "privkey0123456789",
    "client_id": "9f1c0d2e-4b7a-4d7e-9a51-3c2f6b8e1a00",
}
AT_CREDS = {
    "username": "costrecon-api@example.com",
    "secret": "s3cret",
    "integration_code": "COSTRECONTRACKINGID00000000",
}
SY_TOKEN = "T0k3n-sim-0123456789abcdef"

PRODUCTS = [
    ("M365-BP-M", "Microsoft 365 Business Premium (Monthly)", "22.00"),
    ("M365-BS-M", "Microsoft 365 Business Standard (Monthly)", "12.50"),
    ("EDR-S1-CORE", "SentinelOne Singularity Core", "4.25"),
    ("BKP-DATTO-SaaS", "Datto SaaS Protection per user", "3.10"),
    ("EMAIL-PP-ESS", "Proofpoint Essentials Business", "2.75"),
    ("DNS-FILTER", "DNSFilter per device", "1.15"),
]


def msp_tenant(
    contracts: int = 12,
    lines_per_item: int | None = None,
    negotiated_every: int = 5,
    extra_items: int = 0,
) -> Dataset:
    """Every contract takes most products; every ``negotiated_every``-th line has its own cost."""
    items = [
        SimItem(
            id=100 + n,
            identifier=ident,
            name=name,
            description=name,
            cost=Decimal(cost),
            price=(Decimal(cost) * Decimal("1.4")).quantize(Decimal("0.01")),
            currency="USD",
            active=True,
            vendor_name="Pax8",
            vendor_sku=f"PAX-{ident}",
            manufacturer=None,
            mpn=None,
            recurring=True,
            category="Cloud",
        )
        for n, (ident, name, cost) in enumerate(PRODUCTS)
    ]
    for n in range(extra_items):
        items.append(
            SimItem(
                id=500 + n,
                identifier=f"SVC-{n:04d}",
                name=f"Managed service tier {n}",
                description="",
                cost=Decimal("10.00"),
                price=Decimal("15.00"),
                currency="USD",
                active=True,
                vendor_name="Ingram",
                vendor_sku=None,
                manufacturer=None,
                mpn=None,
                recurring=True,
                category="Services",
            )
        )
    cs = [
        SimContract(
            id=1000 + n,
            name=f"Managed Services - Client {n:03d}",
            company=f"Client {n:03d} LLC",
            status="Cancelled" if n == contracts - 1 else "Active",
        )
        for n in range(contracts)
    ]
    lines: list[SimLine] = []
    lid = 50000
    for c in cs:
        for item in items:
            per = lines_per_item or 1
            for _ in range(per):
                lid += 1
                cost = item.cost + Decimal("0.50") if lid % negotiated_every == 0 else item.cost
                lines.append(
                    SimLine(
                        id=lid,
                        contract_id=c.id,
                        item_id=item.id,
                        quantity=Decimal(5 + lid % 20),
                        unit_cost=cost,
                        unit_price=item.price,
                        cancelled=(lid % 37 == 0),
                        description=item.name,
                    )
                )
    return Dataset(items=items, contracts=cs, lines=lines)


# ---- one view over every simulator ------------------------------------------------------------


class SimAdapter:
    """The test's hands on a served simulator, by dataset ids. Every method runs on the server's
    loop (``served.call``), so it never races a request being handled."""

    psa = ""
    line_edit_setting = ""  # text the "denied" message must contain: the PSA's own setting
    item_edit_setting = ""
    line_kind = ""

    def __init__(self, sim: Any, served: ServedApp, dataset: Dataset):
        self.sim = sim
        self.served = served
        self.dataset = dataset

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.served.call(fn)

    # mapping: dataset id -> what the PSA and the daemon call it
    def identifier(self, item_id: int) -> str:
        """The ``identifier`` column of the cost table for this item."""
        return self.dataset.item(item_id).identifier

    def line_psa_id(self, line_id: int) -> str:
        return str(line_id)

    def has_line(self, line_id: int) -> bool:
        """Whether the PSA holds this dataset line as a contract line at all."""
        return True

    def item_psa_id(self, item_id: int) -> str:
        return str(item_id)

    def contract_psa_id(self, contract_id: int) -> str:
        return str(contract_id)

    def line_key(self, line_id: int) -> LineKey:
        ln = self._dataset_line(line_id)
        return LineKey(
            self.line_psa_id(line_id), self.contract_psa_id(ln.contract_id), self.line_kind
        )

    def _dataset_line(self, line_id: int) -> SimLine:
        if not hasattr(self, "_ds_lines"):
            self._ds_lines = {ln.id: ln for ln in self.dataset.lines}
        return self._ds_lines[line_id]

    # state, read and changed "in the PSA's UI"
    def item_cost(self, item_id: int) -> Decimal:
        return self.call(lambda: self._item_cost(item_id))

    def line_cost(self, line_id: int) -> Decimal:
        return self.call(lambda: self._line_cost(line_id))

    def line_costs(self, line_ids: Iterable[int]) -> dict[int, Decimal]:
        ids = list(line_ids)
        return self.call(lambda: {i: self._line_cost(i) for i in ids})

    def set_line_cost(self, line_id: int, cost: Decimal | str) -> None:
        self.call(lambda: self._set_line_cost(line_id, Decimal(cost)))

    def set_item_cost(self, item_id: int, cost: Decimal | str) -> None:
        self.call(lambda: self._set_item_cost(item_id, Decimal(cost)))

    def write_count(self, kind: str, rec_id: int) -> int:
        """Writes of ``kind`` ("item" | "line") that reached the simulator with a whole body."""
        return self.write_counts(kind, [rec_id])[rec_id]

    def write_counts(self, kind: str, ids: Iterable[int]) -> dict[int, int]:
        ids = list(ids)
        return self.call(lambda: {i: self._writes(kind, i) for i in ids})

    def deny_line_edit(self) -> None:
        self.call(self._deny_line_edit)

    def deny_item_edit(self) -> None:
        self.call(self._deny_item_edit)

    def faults(
        self,
        error_rate: float = 0.1,
        rate_limit: int | None = 40,
        applied_error_rate: float = 0.0,
    ) -> None:
        """Inject 5xx at ``error_rate`` and 429 above ``rate_limit`` requests per second, each in
        the PSA's own shape (Syncro's per-minute limit squeezed into a one-second window, and the
        ``Retry-After`` only where the PSA sends one); ``applied_error_rate`` of the writes are
        applied and then answered 504 (a gateway timing out after the PSA committed)."""

        def go() -> None:
            k = self.sim.knobs
            k.applied_error_rate = applied_error_rate
            k.error_rate = error_rate
            k.rate_limit = rate_limit
            k.rate_window = 1.0
            k.retry_after = 1

        self.call(go)

    def fault_counts(self) -> dict[str, int]:
        """Injected faults answered so far, by kind ("429", "500"...)."""
        stats = getattr(self.sim, "request_stats", None) or self.sim.stats  # CW: .stats
        return self.call(lambda: dict(stats.faults))

    def write_fault_counts(self) -> dict[str, int]:
        """Injected faults answered to write requests, by kind ("429", "500", "applied-504")."""
        stats = getattr(self.sim, "request_stats", None) or self.sim.stats  # CW: .stats
        return self.call(lambda: dict(stats.write_faults))

    def on_applied_error(self, fn: Callable[[], None] | None, rate: float = 1.0) -> None:
        """Apply ``rate`` of the writes, run ``fn`` on the server's loop (it may use the
        ``_``-prefixed accessors), then answer 504."""

        def go() -> None:
            k = self.sim.knobs
            k.applied_error_rate = rate if fn is not None else 0.0
            k.on_applied_error = None if fn is None else (lambda request: fn())

        self.call(go)

    def latency(self, seconds: float) -> None:
        self.call(lambda: setattr(self.sim.knobs, "latency", seconds))

    # per PSA
    def _item_cost(self, item_id: int) -> Decimal:
        raise NotImplementedError

    def _line_cost(self, line_id: int) -> Decimal:
        raise NotImplementedError

    def _set_line_cost(self, line_id: int, cost: Decimal) -> None:
        raise NotImplementedError

    def _writes(self, kind: str, rec_id: int) -> int:
        raise NotImplementedError

    def _deny_line_edit(self) -> None:
        raise NotImplementedError

    def _set_item_cost(self, item_id: int, cost: Decimal) -> None:
        raise NotImplementedError

    def _deny_item_edit(self) -> None:
        raise NotImplementedError


class ConnectWiseAdapter(SimAdapter):
    psa = "connectwise"
    line_edit_setting = "Finance > Agreements"
    item_edit_setting = "Procurement > Product Catalog"
    line_kind = "addition"

    def _set_item_cost(self, item_id: int, cost: Decimal) -> None:
        self.sim.set_item_cost(item_id, cost)

    def _deny_item_edit(self) -> None:
        self.sim.set_role(catalog_edit=False)

    def _item_cost(self, item_id: int) -> Decimal:
        return self.sim.item_cost(item_id)

    def _line_cost(self, line_id: int) -> Decimal:
        return self.sim.line_cost(line_id)

    def _set_line_cost(self, line_id: int, cost: Decimal) -> None:
        self.sim.set_line_cost(line_id, cost)

    def _writes(self, kind: str, rec_id: int) -> int:
        return self.sim.patch_count("catalog" if kind == "item" else "addition", rec_id)

    def _deny_line_edit(self) -> None:
        self.sim.set_role(agreements_edit=False)


class AutotaskAdapter(SimAdapter):
    """Recurring items are Services, their lines ContractServices (cost changed through a
    ContractServiceAdjustment, §2.4); the rest are Products and ContractCharges."""

    psa = "autotask"
    line_edit_setting = "Contracts permission"
    item_edit_setting = "System Administrator"  # Services update (AT-DOC-SVC)
    line_kind = "contract_service"

    def item_psa_id(self, item_id: int) -> str:
        entity, rid = self.call(lambda: self._target("item", item_id))
        return f"{'service' if entity == 'Services' else 'product'}:{rid}"

    def contract_psa_id(self, contract_id: int) -> str:
        return str(self.sim.contract_for_sim[contract_id])

    def has_line(self, line_id: int) -> bool:
        # A billed ContractCharge (the sim's cancelled product lines) is history, not a line.
        return (
            line_id in self.sim.contract_service_for_line
            or not self._dataset_line(line_id).cancelled
        )

    def line_key(self, line_id: int) -> LineKey:
        key = super().line_key(line_id)
        if key.psa_id.startswith("contractcharge:"):
            return LineKey(key.psa_id, key.contract_psa_id, "contract_charge")
        return key

    def _set_item_cost(self, item_id: int, cost: Decimal) -> None:
        self.sim.set_cost(*self._target("item", item_id), cost)

    def _deny_item_edit(self) -> None:
        self.sim.security.can_edit_services = False
        self.sim.security.can_edit_products = False

    def _target(self, kind: str, rec_id: int) -> tuple[str, int]:
        s = self.sim
        if kind == "item":
            if rec_id in s.service_for_item:
                return "Services", s.service_for_item[rec_id]
            return "Products", s.product_for_item[rec_id]
        if rec_id in s.contract_service_for_line:
            return "ContractServices", s.contract_service_for_line[rec_id]
        return "ContractCharges", s.charge_for_line[rec_id]

    def line_psa_id(self, line_id: int) -> str:
        entity, rid = self.call(lambda: self._target("line", line_id))
        return f"{'contractservice' if entity == 'ContractServices' else 'contractcharge'}:{rid}"

    def _item_cost(self, item_id: int) -> Decimal:
        return self.sim.cost(*self._target("item", item_id))

    def _line_cost(self, line_id: int) -> Decimal:
        return self.sim.cost(*self._target("line", line_id))

    def _set_line_cost(self, line_id: int, cost: Decimal) -> None:
        self.sim.set_cost(*self._target("line", line_id), cost)

    def _writes(self, kind: str, rec_id: int) -> int:
        entity, rid = self._target(kind, rec_id)
        prefix = {
            "Services": "service",
            "Products": "product",
            "ContractServices": "contractservice",
            "ContractCharges": "contractcharge",
        }[entity]
        return self.sim.stats.writes[f"{prefix}:{rid}"]

    def _deny_line_edit(self) -> None:
        self.sim.security.can_edit_contracts = False


class SyncroAdapter(SimAdapter):
    """Items are products (the table shows the product id); lines are invoice-schedule lines.
    Syncro keeps no cancelled line (the sim drops them), so ``has_line`` is False for those."""

    psa = "syncro"
    line_edit_setting = "Recurring Invoices - Edit"
    item_edit_setting = "Products - Edit"
    line_kind = "schedule_line"

    def item_psa_id(self, item_id: int) -> str:
        return str(self.sim.product_for_item[item_id])

    def contract_psa_id(self, contract_id: int) -> str:
        return str(contract_id + 4_000)

    def _set_item_cost(self, item_id: int, cost: Decimal) -> None:
        self.sim.set_product_cost(self.sim.product_for_item[item_id], cost)

    def _deny_item_edit(self) -> None:
        self.sim.set_permissions("products_list", "recurring_list", "recurring_edit")

    def __init__(self, sim: Any, served: ServedApp, dataset: Dataset):
        super().__init__(sim, served, dataset)
        self.call(self._index)

    def _index(self) -> None:
        # The sim numbers its lines itself; match them to dataset lines by (schedule, product) in
        # order, which is how it lays them out. The line dicts are live: writes show through.
        queues: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for sched in self.sim.schedules.values():
            for ln in sched["lines"]:
                if ln["product_id"] is not None:
                    queues.setdefault((sched["id"], ln["product_id"]), []).append(ln)
        self._lines: dict[int, dict[str, Any]] = {}
        for ln in self.dataset.lines:
            if ln.cancelled:
                continue
            key = (ln.contract_id + 4_000, self.sim.product_for_item[ln.item_id])
            self._lines[ln.id] = queues[key].pop(0)

    def identifier(self, item_id: int) -> str:
        return str(self.sim.product_for_item[item_id])

    def line_psa_id(self, line_id: int) -> str:
        return str(self._lines[line_id]["id"])

    def has_line(self, line_id: int) -> bool:
        return line_id in self._lines

    def _item_cost(self, item_id: int) -> Decimal:
        return self.sim.products[self.sim.product_for_item[item_id]]["price_cost"]

    def _line_cost(self, line_id: int) -> Decimal:
        return self._lines[line_id]["price_cost"]

    def _set_line_cost(self, line_id: int, cost: Decimal) -> None:
        self.sim.set_line_cost_cents(self._lines[line_id]["id"], int(cost * 100))

    def _writes(self, kind: str, rec_id: int) -> int:
        if kind == "item":
            return self.sim.writes[f"product:{self.sim.product_for_item[rec_id]}"]
        return self.sim.writes[f"line:{self._lines[rec_id]['id']}"]

    def _deny_line_edit(self) -> None:
        self.sim.set_permissions("products_list", "products_edit", "recurring_list")


def make_sim(
    psa: str, dataset: Dataset, sim_options: dict[str, Any]
) -> tuple[Any, Callable[[], Any]]:
    if psa == "connectwise":
        from costrecon_daemon.sim.connectwise import ConnectWiseSim

        sim = ConnectWiseSim(dataset, **CW_CREDS, **sim_options)
        return sim, sim.app
    if psa == "autotask":
        from costrecon_daemon.sim.autotask import AutotaskSim

        sim = AutotaskSim(dataset, **AT_CREDS, **sim_options)
        return sim, sim.make_app
    if psa == "syncro":
        from costrecon_daemon.sim.syncro import SyncroSim

        # The real 180 requests/minute would make every push here take minutes; the limit itself
        # is tested in test_connector_contract.py, so daemon tests lift it unless told otherwise.
        sim_options.setdefault("requests_per_minute", 100_000)
        sim = SyncroSim(dataset, api_token=SY_TOKEN, **sim_options)
        return sim, sim.make_app
    raise ValueError(f"unknown PSA {psa!r}")


def connector_settings(
    psa: str, sim: Any, base_url: str, concurrency: int | None
) -> dict[str, Any]:
    """The [psa.<kind>] table: the sims' own credentials, short retry waits for fast tests."""
    if psa == "connectwise":
        return {
            "site": base_url,
            **CW_CREDS,
            "concurrency": concurrency or 8,
            "backoff_base": 0.05,
            "timeout": 10.0,
        }
    if psa == "autotask":
        sim.base_url = base_url + "/atservicesrest/"  # the zone URL it hands out
        # Autotask sends no Retry-After; the connector then waits rate_limit_wait (60 s by default,
        # go-autotask's choice). Tests shorten the wait, not the behaviour.
        return {
            "base_url_for_zone_lookup": sim.base_url,
            **AT_CREDS,
            "concurrency": concurrency or 3,
            "retry_backoff": 0.05,
            "rate_limit_wait": 1.0,
            "timeout": 10.0,
        }
    sim.base_url = base_url + "/api/v1"
    return {
        "base_url": sim.base_url,
        "api_token": SY_TOKEN,
        "concurrency": concurrency or 3,
        "requests_per_minute": sim.requests_per_minute or 180,
        "retry_backoff": 0.05,
        "rate_limit_backoff": 1.0,
        "timeout": 10.0,
    }


ADAPTERS: dict[str, type[SimAdapter]] = {
    "connectwise": ConnectWiseAdapter,
    "autotask": AutotaskAdapter,
    "syncro": SyncroAdapter,
}


@contextlib.contextmanager
def psa_daemon(
    tmp: Path,
    dataset: Dataset,
    psa: str = "connectwise",
    *,
    extra: dict[str, Any] | None = None,
    concurrency: int | None = None,
    sim_options: dict[str, Any] | None = None,
    process: bool = False,
) -> Iterator[tuple[SimAdapter, DaemonProcess]]:
    """A served ``psa`` simulator and a synced daemon wired to it: in a thread of this process
    (``ThreadedDaemon``), or with ``process=True`` a real daemon process (kill -9, restart)."""
    sim, make_app = make_sim(psa, dataset, dict(sim_options or {}))
    with ServedApp(make_app) as served:
        settings = served.call(lambda: connector_settings(psa, sim, served.base_url, concurrency))
        cfg: dict[str, Any] = {"psa": {"kind": psa}, f"psa.{psa}": settings}
        for k, v in (extra or {}).items():
            cfg.setdefault(k, {}).update(v)
        adapter = ADAPTERS[psa](sim, served, dataset)
        d = (DaemonProcess if process else ThreadedDaemon)(tmp, cfg)
        try:
            d.start()
            d.wait_synced()
            yield adapter, d
        finally:
            if d.running:
                d.stop()


@contextlib.contextmanager
def cw_daemon(
    tmp: Path,
    dataset: Dataset,
    *,
    extra: dict[str, Any] | None = None,
    concurrency: int = 8,
    process: bool = False,
) -> Iterator[tuple[Any, ServedApp, DaemonProcess]]:
    """The ConnectWise-only form (the raw sim, its server, the daemon), kept for older callers."""
    with psa_daemon(
        tmp, dataset, "connectwise", extra=extra, concurrency=concurrency, process=process
    ) as (a, d):
        yield a.sim, a.served, d


# ---- driving the daemon ------------------------------------------------------------------------


def rows_by_identifier(d: DaemonProcess) -> dict[str, dict[str, Any]]:
    ids = d.get("/v1/costs")["ids"]
    with d.http() as c:
        rows = c.post("/v1/costs/rows", json={"ids": ids}).json()["rows"]
    return {r["identifier"]: r for r in rows}


def set_vendor_cost(d: DaemonProcess, row: dict[str, Any], cost: str) -> dict[str, Any]:
    r = d.request("PUT", f"/v1/costs/{row['id']}/manual", json={"cost": cost})
    assert r.status_code == 200, r.text
    return r.json()["row"]


def approve(
    d: DaemonProcess, rows: list[dict[str, Any]], policy: str = "all", dry_run: bool = False
) -> Any:
    body = {
        "items": [
            {"item_id": r["id"], "cost": r["vendor_cost"], "seen_catalog_cost": r["catalog_cost"]}
            for r in rows
        ],
        "policy": policy,
        "dry_run": dry_run,
    }
    return follow_recording(d, d.request("POST", "/v1/change-sets", json=body))


def follow_recording(d: DaemonProcess, resp: httpx.Response, timeout: float = 120) -> Any:
    """An approval answered 202 ("recording": a big change set, or a writer busy on a loaded
    machine) followed by its request id to its outcome, as the TUI's client follows it: returned
    as the 201 with the change set, or the refusal, it became. Any other answer as it came."""
    if resp.status_code != 202:
        return resp
    request_id = resp.json()["request"]["request_id"]

    def outcome() -> tuple[httpx.Response] | None:
        got = d.get("/v1/change-sets", params={"request_id": request_id})
        if got["change_sets"]:
            return (httpx.Response(201, json={"change_set": got["change_sets"][0]}),)
        state = got["request"]
        if state["state"] == "failed":
            error = dict(state["error"])
            return (httpx.Response(error.pop("status"), json={"error": error}),)
        assert state["state"] == "recording", state
        return None

    return d.wait_for(outcome, timeout, f"request {request_id} to be recorded")[0]


def wait_change_set(d: DaemonProcess, cs_id: int, timeout: float = 120) -> dict[str, Any]:
    """The change set, with its steps, once it has finished. Polled without the steps (thousands
    of rows, 20 times a second, slowed the very push being waited for), then read once whole."""
    d.wait_for(
        lambda: (
            d.get(f"/v1/change-sets/{cs_id}", params={"steps": 0})["change_set"]["status"]
            not in ("pending", "pushing")
        ),
        timeout,
        f"change set {cs_id}",
    )
    return d.get(f"/v1/change-sets/{cs_id}")["change_set"]


def live_lines(dataset: Dataset, item_id: int) -> list[SimLine]:
    """Lines of ``item_id`` that a push must update: not cancelled, on an active contract. The
    same set for every PSA (ConnectWise keeps cancelled additions, Autotask zero-unit contract
    services, Syncro drops them; each connector marks them not live)."""
    active = {c.id for c in dataset.contracts if c.status == "Active"}
    return [
        ln
        for ln in dataset.lines
        if ln.item_id == item_id and not ln.cancelled and ln.contract_id in active
    ]
