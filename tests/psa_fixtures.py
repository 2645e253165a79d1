"""Realistic small tenants and a running simulator + daemon pair for reconciliation tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from costrecon_daemon.sim.dataset import Dataset, SimContract, SimItem, SimLine

from costrecon_daemon.sim.serve import ServedApp

from .harness import DaemonProcess

CW_CREDS = {"company": "acme", "public_key": "pubkey0123456789", "private_key": "privkey0123456789",
            "client_id": "9f1c0d2e-4b7a-4d7e-9a51-3c2f6b8e1a00"}

PRODUCTS = [
    ("M365-BP-M", "Microsoft 365 Business Premium (Monthly)", "22.00"),
    ("M365-BS-M", "Microsoft 365 Business Standard (Monthly)", "12.50"),
    ("EDR-S1-CORE", "SentinelOne Singularity Core", "4.25"),
    ("BKP-DATTO-SaaS", "Datto SaaS Protection per user", "3.10"),
    ("EMAIL-PP-ESS", "Proofpoint Essentials Business", "2.75"),
    ("DNS-FILTER", "DNSFilter per device", "1.15"),
]


def msp_tenant(contracts: int = 12, lines_per_item: int | None = None, negotiated_every: int = 5,
               extra_items: int = 0) -> Dataset:
    """Every contract takes most products; every ``negotiated_every``-th line has its own cost."""
    items = [
        SimItem(id=100 + n, identifier=ident, name=name, description=name, cost=Decimal(cost),
                price=(Decimal(cost) * Decimal("1.4")).quantize(Decimal("0.01")), currency="USD", active=True,
                vendor_name="Pax8", vendor_sku=f"PAX-{ident}", manufacturer=None, mpn=None, recurring=True,
                category="Cloud")
        for n, (ident, name, cost) in enumerate(PRODUCTS)
    ]
    for n in range(extra_items):
        items.append(SimItem(id=500 + n, identifier=f"SVC-{n:04d}", name=f"Managed service tier {n}",
                             description="", cost=Decimal("10.00"), price=Decimal("15.00"), currency="USD",
                             active=True, vendor_name="Ingram", vendor_sku=None, manufacturer=None, mpn=None,
                             recurring=True, category="Services"))
    cs = [SimContract(id=1000 + n, name=f"Managed Services - Client {n:03d}", company=f"Client {n:03d} LLC",
                      status="Cancelled" if n == contracts - 1 else "Active") for n in range(contracts)]
    lines: list[SimLine] = []
    lid = 50000
    for c in cs:
        for item in items:
            per = lines_per_item or 1
            for _ in range(per):
                lid += 1
                cost = item.cost + Decimal("0.50") if lid % negotiated_every == 0 else item.cost
                lines.append(SimLine(id=lid, contract_id=c.id, item_id=item.id, quantity=Decimal(5 + lid % 20),
                                     unit_cost=cost, unit_price=item.price, cancelled=(lid % 37 == 0),
                                     description=item.name))
    return Dataset(items=items, contracts=cs, lines=lines)


@contextlib.contextmanager
def cw_daemon(tmp: Path, dataset: Dataset, *, extra: dict[str, Any] | None = None,
              concurrency: int = 8) -> Iterator[tuple[Any, ServedApp, DaemonProcess]]:
    from costrecon_daemon.sim.connectwise import ConnectWiseSim

    sim = ConnectWiseSim(dataset, **CW_CREDS)
    with ServedApp(sim.app) as served:
        cfg: dict[str, Any] = {
            "psa": {"kind": "connectwise"},
            "psa.connectwise": {"site": served.base_url, **CW_CREDS, "concurrency": concurrency,
                                "backoff_base": 0.05, "timeout": 10.0},
        }
        for k, v in (extra or {}).items():
            cfg.setdefault(k, {}).update(v)
        d = DaemonProcess(tmp, cfg)
        d.start()
        try:
            d.wait_synced()
            yield sim, served, d
        finally:
            if d.proc is not None:
                d.stop()


def rows_by_identifier(d: DaemonProcess) -> dict[str, dict[str, Any]]:
    ids = d.get("/v1/costs")["ids"]
    with d.http() as c:
        rows = c.post("/v1/costs/rows", json={"ids": ids}).json()["rows"]
    return {r["identifier"]: r for r in rows}


def set_vendor_cost(d: DaemonProcess, row: dict[str, Any], cost: str) -> dict[str, Any]:
    r = d.request("PUT", f"/v1/costs/{row['id']}/manual", json={"cost": cost})
    assert r.status_code == 200, r.text
    return r.json()["row"]


def approve(d: DaemonProcess, rows: list[dict[str, Any]], policy: str = "all", dry_run: bool = False) -> Any:
    body = {"items": [{"item_id": r["id"], "cost": r["vendor_cost"], "seen_catalog_cost": r["catalog_cost"]}
                      for r in rows], "policy": policy, "dry_run": dry_run}
    return d.request("POST", "/v1/change-sets", json=body)


def wait_change_set(d: DaemonProcess, cs_id: int, timeout: float = 120) -> dict[str, Any]:
    return d.wait_for(lambda: (cs := d.get(f"/v1/change-sets/{cs_id}")["change_set"])["status"]
                      not in ("pending", "pushing") and cs, timeout, f"change set {cs_id}")


def live_lines(dataset: Dataset, item_id: int) -> list[SimLine]:
    active = {c.id for c in dataset.contracts if c.status == "Active"}
    return [ln for ln in dataset.lines if ln.item_id == item_id and not ln.cancelled and ln.contract_id in active]
