"""An in-memory stand-in for :class:`costrecon_tui.client.DaemonClient`.

It holds a realistic, seeded MSP catalogue (Microsoft 365 seats, EDR, backup…), answers every
client method with the shapes the daemon promises, emits the events the daemon would emit, and
records every call in ``calls`` so tests can assert exactly what the TUI sent. ``running = False``
makes every call raise :class:`DaemonNotRunning`, like a stopped daemon.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from costrecon_tui.client import (
    ApprovalItem,
    CostRow,
    CostView,
    DaemonError,
    DaemonNotRunning,
    Event,
)

NOW = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
Q = Decimal("0.0001")

# (identifier, name, base monthly cost, vendor)
CATALOGUE = [
    ("M365-BB", "Microsoft 365 Business Basic (NCE, monthly)", "6.0000", "Pax8"),
    ("M365-BS", "Microsoft 365 Business Standard (NCE, monthly)", "12.5000", "Pax8"),
    ("M365-BP", "Microsoft 365 Business Premium (NCE, annual)", "22.0000", "Pax8"),
    ("EXO-P1", "Exchange Online (Plan 1)", "4.0000", "Pax8"),
    ("S1-CORE", "SentinelOne Singularity Core", "3.2500", "Pax8"),
    ("S1-CTRL", "SentinelOne Singularity Control", "4.1000", "Pax8"),
    ("HUN-MDR", "Huntress Managed EDR", "3.5000", "Huntress"),
    ("DATTO-SIRIS-1TB", "Datto SIRIS 1TB Cloud Retention", "89.0000", "Datto"),
    ("AXC-X360-M365", "Axcient x360Cloud for Microsoft 365", "2.1000", "Axcient"),
    ("KEEPER-BUS", "Keeper Business (per user)", "2.8000", "Ingram Micro"),
    ("DUO-ESS", "Cisco Duo Essentials", "3.0000", "TD SYNNEX"),
    ("PROOF-EB", "Proofpoint Essentials Business", "2.9500", "Ingram Micro"),
    ("NSIGHT-SRV", "N-able N-sight RMM Server", "6.9500", "N-able"),
    ("KB4-SILVER", "KnowBe4 Security Awareness Training Silver", "1.8500", "TD SYNNEX"),
    ("DNSF-PRO", "DNSFilter Pro", "1.2500", "Pax8"),
    ("AZ-RI-D2SV5", "Azure Reserved VM D2s v5 (1 year)", "58.4000", "Pax8"),
    ("TEAMS-PHONE", "Teams Phone Standard", "8.0000", "Pax8"),
    ("ACRO-PRO", "Adobe Acrobat Pro (VIP, annual)", "16.9900", "Ingram Micro"),
    ("VEEAM-VBM365", "Veeam Backup for Microsoft 365", "1.6000", "TD SYNNEX"),
    ("SKYKICK-BKP", "SkyKick Cloud Backup for Microsoft 365", "2.4000", "Pax8"),
    ("BITD-GZ", "Bitdefender GravityZone Business Security", "1.9000", "D&H"),
    ("ITG-BASIC", "IT Glue Basic (per user)", "29.0000", "Kaseya"),
]
TERMS = ["monthly", "annual", "triennial"]
FILES = ["pax8-2026-02.csv", "ingram-pricelist-0226.xlsx", "tdsynnex-feb.csv", "datto-2026Q1.csv"]


PSA_NAMES = {
    "connectwise": "ConnectWise PSA (acme-msp)",
    "autotask": "Autotask (webservices14)",
    "syncro": "Syncro (acme-msp.syncromsp.com)",
}


def _margin(price: Decimal | None, cost: Decimal | None) -> Decimal | None:
    if price is None or cost is None or price <= 0:
        return None
    return ((price - cost) * 100 / price).quantize(Decimal("0.1"))


def _pct(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


class FakeClient:
    """Implements the DaemonClient interface in memory (see module docstring)."""

    def __init__(
        self,
        n_rows: int = 40,
        *,
        seed: int = 7,
        running: bool = True,
        latency: float = 0.0,
        auto_push: bool = False,
        push_step_delay: float = 0.05,
        record_calls: bool = True,
        psa: str = "connectwise",
    ) -> None:
        self.psa = psa
        self._running = running
        self._wake: asyncio.Event | None = None
        self.latency = latency
        self.auto_push = auto_push
        # False: like a daemon with no PSA connector, whose undo preview has no time estimate
        self.psa_limits_known = True
        # False: like a daemon still indexing a big import's vendor rows for search
        self.search_indexed = True
        self.push_step_delay = push_step_delay
        self.record_calls = record_calls
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.user = "jtech"
        self.margin_floor = Decimal(20)
        self._rows: dict[int, dict[str, Any]] = {}
        self._hay: dict[int, str] = {}
        self._events: list[Event] = []
        self._activity: list[dict[str, Any]] = []
        self._change_sets: dict[int, dict[str, Any]] = {}
        self._push_tasks: set[asyncio.Task[None]] = set()
        self._build(n_rows, seed)
        # like an index on identifier: the default order costs nothing per query
        self._by_identifier = sorted(self._rows, key=lambda i: self._rows[i]["identifier"].lower())
        self._imports = self._build_imports()
        self._unmatched = self._build_unmatched()
        self._suggested: set[int] = set()  # rows whose suggestions "the daemon" worked out
        self._mappings = self._build_mappings()
        self.syncing = False
        self.psa_connected = True
        # Distributor API sources as /v1/status lists them; None: none configured (no key).
        self.vendor_sources: list[dict[str, Any]] | None = None
        self.permission_problems = [
            {
                "capability": "edit_lines",
                "message": "The API member 'costrecon' cannot edit agreement additions: in "
                "ConnectWise, System > Security Roles > 'API Member' > Finance > Agreements, "
                "set Edit Level to All.",
            }
        ]
        self._seed_activity()

    # ------------------------------------------------------------------ data

    def _build(self, n: int, seed: int) -> None:
        rng = random.Random(seed)
        for i in range(n):
            ident, name, base, vendor = CATALOGUE[i % len(CATALOGUE)]
            k = i // len(CATALOGUE)
            if k:
                ident = f"{ident}-{k:05d}" if n > 1000 else f"{ident}-{k}"
                name = f"{name} — {TERMS[k % 3]}"
            cat = Decimal(base)
            roll = rng.random()
            vendor_cost: Decimal | None
            source: dict[str, Any] | None
            if roll < 0.15:
                vendor_cost, source = None, None
            else:
                if roll < 0.55:
                    vendor_cost = cat
                else:
                    pct = Decimal(rng.randint(-80, 120)) / 1000
                    vendor_cost = (cat * (1 + pct)).quantize(Decimal("0.01"))
                days = rng.randint(0, 20)
                if rng.random() < 0.12:
                    source = {
                        "kind": "manual",
                        "at": _iso(NOW - timedelta(days=days, hours=3)),
                        "by": "mrivera",
                    }
                else:
                    source = {
                        "kind": "import",
                        "at": _iso(NOW - timedelta(days=days)),
                        "file": FILES[i % len(FILES)],
                        "row": 2 + i % 900,
                        "vendor": vendor,
                        "sku": f"{vendor[:3].upper()}-{1000 + i}",
                    }
            if self.psa == "syncro":
                ident = str(41000 + i)  # Syncro's product ids are short numbers
            elif self.psa == "autotask":
                ident = f"{ident[:10]}-{29682900 + i}"  # service name prefix + Autotask id
            contracts = rng.randint(0, 45)
            item_id = 1000 + i
            self._rows[item_id] = {
                "id": item_id,
                "psa_id": str(5000 + i),
                "identifier": ident,
                "name": name,
                "contracts": contracts,
                "lines": contracts + rng.randint(0, contracts // 3 + 1),
                "currency": "USD",
                "catalog_cost": cat,
                "vendor_cost": vendor_cost,
                "import_cost": vendor_cost if source and source["kind"] == "import" else cat,
                "import_source": source
                if source and source["kind"] == "import"
                else {"kind": "import", "at": _iso(NOW - timedelta(days=9)), "file": FILES[0]},
                "vendor_source": source,
                "state": "",
                "state_detail": {},
                "quantity": contracts * rng.randint(3, 25),
                # sell prices: a markup of 18–50 % by position (no draw from rng, so the
                # rows' costs stay what the snapshots show); every 9th item has no price
                "price": None
                if i % 9 == 8
                else (cat * (Decimal("1.18") + Decimal(i % 5) * Decimal("0.08"))).quantize(
                    Decimal("0.01")
                ),
            }
            self._hay[item_id] = f"{ident}\t{name}".lower()

    def _build_imports(self) -> list[dict[str, Any]]:
        base = NOW - timedelta(days=3)
        return [
            {
                "id": 31,
                "file_name": "pax8-2026-02.csv",
                "status": "imported",
                "profile": "pax8",
                "vendor": "Pax8",
                "rows_total": 1412,
                "rows_imported": 1412,
                "rows_matched": 1377,
                "received_at": _iso(base + timedelta(hours=2)),
                "final_path": "/srv/costrecon/processed/pax8-2026-02.csv",
                "message": None,
            },
            {
                "id": 32,
                "file_name": "ingram-pricelist-0226.xlsx",
                "status": "failed",
                "profile": "ingram",
                "vendor": "Ingram Micro",
                "rows_total": 388,
                "rows_imported": 0,
                "rows_matched": 0,
                "received_at": _iso(base + timedelta(days=1, hours=1)),
                "final_path": "/srv/costrecon/failed/ingram-pricelist-0226.xlsx",
                "message": "3 rows could not be read; nothing was imported.",
            },
            {
                "id": 33,
                "file_name": "pax8-2026-02 (1).csv",
                "status": "duplicate",
                "profile": "pax8",
                "vendor": "Pax8",
                "rows_total": 1412,
                "rows_imported": 0,
                "rows_matched": 0,
                "received_at": _iso(base + timedelta(days=2)),
                "final_path": "/srv/costrecon/processed/pax8-2026-02 (1).csv",
                "message": "Same content as pax8-2026-02.csv (import #31).",
            },
            {
                "id": 34,
                "file_name": "tdsynnex-feb.csv",
                "status": "imported",
                "profile": "tdsynnex",
                "vendor": "TD SYNNEX",
                "rows_total": 640,
                "rows_imported": 638,
                "rows_matched": 590,
                "received_at": _iso(base + timedelta(days=2, hours=5)),
                "final_path": "/srv/costrecon/processed/tdsynnex-feb.csv",
                "message": None,
            },
        ]

    def _build_unmatched(self) -> list[dict[str, Any]]:
        ids = sorted(self._rows)

        def sug(*idx_scores: tuple[int, int]) -> list[dict[str, Any]]:
            out = []
            for idx, score in idx_scores:
                r = self._rows[ids[idx % len(ids)]]
                out.append(
                    {
                        "item_id": r["id"],
                        "identifier": r["identifier"],
                        "name": r["name"],
                        "score": score,
                    }
                )
            return out

        return [
            {
                "vendor_cost_id": 901,
                "vendor": "Pax8",
                "sku": "CFQ7TTC0LCHC-0002",
                "mpn": "CFQ7TTC0LCHC",
                "description": "Microsoft 365 Business Premium - Annual Commitment "
                "(Monthly Billing)",
                "term": "annual",
                "cost": Decimal("22.0000"),
                "currency": "USD",
                "file": "pax8-2026-02.csv",
                "row": 118,
                "suggestions": sug((2, 91), (1, 74), (0, 66)),
            },
            {
                "vendor_cost_id": 902,
                "vendor": "TD SYNNEX",
                "sku": "DUO-ADV-1M",
                "mpn": "DUO-ADV",
                "description": "Cisco Duo Advantage, 1 user, monthly",
                "term": "monthly",
                "cost": Decimal("6.0000"),
                "currency": "USD",
                "file": "tdsynnex-feb.csv",
                "row": 77,
                "suggestions": sug((10, 83), (11, 41)),
            },
            {
                "vendor_cost_id": 903,
                "vendor": "Ingram Micro",
                "sku": "65322662",
                "mpn": "KPR-ENT",
                "description": "Keeper Enterprise License 1yr",
                "term": "annual",
                "cost": Decimal("3.7500"),
                "currency": "USD",
                "file": "ingram-pricelist-0226.xlsx",
                "row": 12,
                "suggestions": [],
            },
        ]

    def _build_mappings(self) -> list[dict[str, Any]]:
        ids = sorted(self._rows)
        out = []
        for n, (vendor, sku, idx) in enumerate(
            [
                ("Pax8", "CFQ7TTC0LH18-0001", 0),
                ("Pax8", "S1-CORE-MSP", 4),
                ("Datto", "SIRIS-1TB-CR", 7),
            ]
        ):
            r = self._rows[ids[idx % len(ids)]]
            out.append(
                {
                    "id": 70 + n,
                    "vendor": vendor,
                    "sku": sku,
                    "term": "monthly",
                    "item_id": r["id"],
                    "identifier": r["identifier"],
                    "name": r["name"],
                    "created_by": "mrivera",
                    "created_at": _iso(NOW - timedelta(days=20 - n)),
                }
            )
        return out

    def _seed_activity(self) -> None:
        ids = sorted(self._rows)
        r0 = self._rows[ids[0]]
        r2 = self._rows[ids[2 % len(ids)]]
        steps = [
            {
                "id": 1,
                "item_id": r2["id"],
                "target": "item",
                "target_psa_id": r2["psa_id"],
                "contract_psa_id": None,
                "before": "21.0000",
                "after": "22.0000",
                "status": "done",
                "message": None,
            },
            {
                "id": 2,
                "item_id": r2["id"],
                "target": "line",
                "target_psa_id": "88121",
                "contract_psa_id": "4410",
                "before": "21.0000",
                "after": "22.0000",
                "status": "done",
                "message": None,
            },
            {
                "id": 3,
                "item_id": r2["id"],
                "target": "line",
                "target_psa_id": "88190",
                "contract_psa_id": "4502",
                "before": "21.0000",
                "after": "22.0000",
                "status": "conflict",
                "message": "line cost is 19.5000 (negotiated), expected 21.0000; left unchanged",
            },
        ]
        for s in steps:  # the daemon's step fields (tests/test_contract_fake_vs_daemon.py)
            s.update(
                identifier=self._rows[s["item_id"]]["identifier"],
                currency="USD",
                attempts=1,
                contract=s["contract_psa_id"],
                value=s["after"] if s["status"] == "done" else "19.5000",
            )
        self._change_sets[11] = {
            "id": 11,
            "created_at": _iso(NOW - timedelta(days=1, hours=2)),
            "actor": "mrivera",
            "kind": "apply",
            "undo_of": None,
            "policy": "all",
            "status": "partial",
            "preview": None,
            "request_id": "5eed0000000000000000000000000011",
            "started_at": _iso(NOW - timedelta(days=1, hours=2)),
            "finished_at": _iso(NOW - timedelta(days=1, hours=2) + timedelta(seconds=14)),
            "message": "2 of 3 targets updated; 1 conflict",
            "counts": {
                "pending": 0,
                "sending": 0,
                "done": 2,
                "conflict": 1,
                "failed": 0,
                "denied": 0,
                "cancelled": 0,
            },
            "total": len(steps),
            "steps": steps,
        }
        t = NOW - timedelta(days=2)
        seed = [
            ("daemon.start", "daemon", None, None, {"version": "0.1.0"}, "system"),
            ("sync.done", "connectwise", None, None, {"items": len(ids), "lines": 3120}, "system"),
            (
                "import.processed",
                "pax8-2026-02.csv",
                None,
                None,
                {"import_id": 31, "rows": 1412, "matched": 1377},
                "system",
            ),
            (
                "import.failed",
                "ingram-pricelist-0226.xlsx",
                None,
                None,
                {"import_id": 32},
                "system",
            ),
            (
                "cost.manual.set",
                r0["identifier"],
                "6.0000",
                "6.2500",
                {"item_id": r0["id"]},
                "mrivera",
            ),
            (
                "approve",
                r2["identifier"],
                "21.0000",
                "22.0000",
                {"change_set_id": 11, "items": 1, "lines": 2},
                "mrivera",
            ),
            ("push.item", r2["identifier"], "21.0000", "22.0000", {"change_set_id": 11}, "mrivera"),
            (
                "push.line.conflict",
                f"{r2['identifier']} / contract 4502",
                "21.0000",
                "22.0000",
                {"change_set_id": 11, "message": steps[2]["message"]},
                "mrivera",
            ),
            (
                "push.done",
                "change set #11",
                None,
                None,
                {"change_set_id": 11, "status": "partial", "done": 2, "conflict": 1},
                "mrivera",
            ),
        ]
        for n, (action, subject, before, after, details, actor) in enumerate(seed):
            self._add_activity(
                action, subject, before, after, details, actor, at=t + timedelta(hours=3 * n)
            )
        self._events.clear()  # history is history; events start now

    # ------------------------------------------------------------------ plumbing

    async def _call(self, name: str, **kwargs: Any) -> None:
        if self.record_calls:
            self.calls.append((name, kwargs))
        if self.latency:
            await asyncio.sleep(self.latency)
        if not self.running:
            raise DaemonNotRunning("/run/user/1000/costrecon/costrecond.sock")

    @property
    def running(self) -> bool:
        return self._running

    @running.setter
    def running(self, value: bool) -> None:
        self._running = value
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def calls_to(self, name: str) -> list[dict[str, Any]]:
        return [kw for n, kw in self.calls if n == name]

    def emit(self, kind: str, data: dict[str, Any]) -> Event:
        ev = Event(id=len(self._events) + 1 + self._event_base, at=_iso(NOW), kind=kind, data=data)
        self._events.append(ev)
        self._notify()
        return ev

    _event_base = 0

    def _add_activity(
        self,
        action: str,
        subject: str,
        before: str | None,
        after: str | None,
        details: dict[str, Any],
        actor: str | None = None,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        entry = {
            "id": len(self._activity) + 1,
            "at": _iso(at or NOW),
            "actor": actor or self.user,
            "action": action,
            "subject": subject,
            "before": before,
            "after": after,
            "details": details,
        }
        self._activity.append(entry)
        self.emit("activity", entry)
        return entry

    def _json_row(self, r: dict[str, Any]) -> dict[str, Any]:
        cat, ven = r["catalog_cost"], r["vendor_cost"]
        change = pct = None
        if cat is not None and ven is not None:
            change = ven - cat
            pct = (change / cat * 100).quantize(Decimal("0.01")) if cat else None
        price = r.get("price")
        after = _margin(price, ven)
        sources = None
        src = r["vendor_source"]
        if src and src.get("kind") == "import" and r["id"] % 7 == 3:
            # a second distributor also prices this item; the newer import wins
            sources = [
                {**src, "cost": str(ven), "currency": "USD", "wins": True},
                {
                    "kind": "import",
                    "vendor": "TD SYNNEX",
                    "file": FILES[2],
                    "at": _iso(NOW - timedelta(days=30)),
                    "cost": str((ven * Decimal("1.03")).quantize(Decimal("0.01"))),
                    "currency": "USD",
                },
            ]
            src = {**src, "wins_because": f"newest: {src.get('vendor')} is newer than TD SYNNEX"}
        extra = {
            "price": None if price is None else str(price),
            "margin_pct": _pct(_margin(price, cat)),
            "margin_after_pct": _pct(after),
            "line_margin_min_after_pct": _pct(after),
            "below_margin_floor": bool(after is not None and change and after < self.margin_floor),
            # the daemon sends the list only when sources compete (costs/table.py Row.to_json)
            **({"vendor_sources": sources} if sources else {}),
        }
        return extra | {
            "id": r["id"],
            "psa_id": r["psa_id"],
            "identifier": r["identifier"],
            "name": r["name"],
            "contracts": r["contracts"],
            "lines": r["lines"],
            "currency": r["currency"],
            "catalog_cost": None if cat is None else str(cat),
            "vendor_cost": None if ven is None else str(ven),
            "vendor_source": src,
            "change": None if change is None else str(change.quantize(Q)),
            "change_pct": None if pct is None else str(pct),
            "state": r["state"],
            "state_detail": r["state_detail"],
        }

    def _change(self, r: dict[str, Any]) -> Decimal | None:
        if r["catalog_cost"] is None or r["vendor_cost"] is None:
            return None
        return r["vendor_cost"] - r["catalog_cost"]

    # ------------------------------------------------------------------ daemon

    async def aclose(self) -> None:
        pass

    async def health(self) -> dict[str, Any]:
        await self._call("health")
        return {"api_version": 1, "schema_version": 1, "pid": 4242}

    async def status(self) -> dict[str, Any]:
        await self._call("status")
        unmatched = len(self._unmatched)
        return {
            "daemon": {
                "pid": 4242,
                "version": "0.1.0",
                "started_at": _iso(NOW - timedelta(days=2)),
                "state_dir": "/home/jtech/.local/state/costrecon",
                "user": "jtech",
            },
            "psa": {
                "kind": self.psa,
                "name": PSA_NAMES.get(self.psa, self.psa),
                "connected": self.psa_connected,
                "error": None
                if self.psa_connected
                else "HTTP 401 from api-na.myconnectwise.net: check the API keys",
                "permission_problems": self.permission_problems,
                "last_sync": _iso(NOW - timedelta(minutes=12)),
                "next_sync": _iso(NOW + timedelta(minutes=48)),
                "syncing": self.syncing,
                "last_result": f"{len(self._rows)} items, 3120 contract lines, 14 changed",
            },
            "counts": {
                "items": len(self._rows),
                "contracts": 412,
                "lines": 3120,
                "vendor_costs": sum(1 for r in self._rows.values() if r["vendor_cost"] is not None),
                "unmatched": unmatched,
            },
            "inbox": {"path": "/srv/costrecon/inbox", "pending": 0},
            "push": {
                "running": [
                    cs["id"] for cs in self._change_sets.values() if cs["status"] == "pushing"
                ]
            },
            "events": {"last_id": self._event_base + len(self._events)},
            **(
                {} if self.vendor_sources is None else {"vendors": {"sources": self.vendor_sources}}
            ),
        }

    async def sync_now(self, *, full: bool = False) -> dict[str, Any]:
        await self._call("sync_now", full=full)
        self.emit("sync", {"state": "running", "message": "syncing catalogue from ConnectWise"})
        self.emit("sync", {"state": "done", "message": "catalogue up to date"})
        return {"started": True}

    # ------------------------------------------------------------------ costs

    _SORTS = {
        "identifier": lambda r: r["identifier"].lower(),
        "name": lambda r: r["name"].lower(),
        "contracts": lambda r: r["contracts"],
        "catalog_cost": lambda r: r["catalog_cost"] or Decimal(0),
        "vendor_cost": lambda r: r["vendor_cost"] if r["vendor_cost"] is not None else Decimal(-1),
        "state": lambda r: r["state"],
    }

    async def cost_view(
        self,
        *,
        query: str = "",
        changed_only: bool = False,
        state: str | None = None,
        sort: str = "identifier",
        descending: bool = False,
    ) -> CostView:
        await self._call(
            "cost_view",
            query=query,
            changed_only=changed_only,
            state=state,
            sort=sort,
            descending=descending,
        )
        q = query.strip().lower()
        rows = self._rows
        order = self._by_identifier if sort == "identifier" else rows
        if q:
            hay = self._hay
            ids = [i for i in order if q in hay[i]]
        else:
            ids = list(order)
        if changed_only:
            ids = [i for i in ids if self._change(rows[i])]
        if state:
            ids = [i for i in ids if rows[i]["state"] == state]
        if sort in ("change", "change_pct"):

            def key(i: int) -> Decimal:
                c = self._change(rows[i])
                if c is None:
                    return Decimal("-1e9")
                if sort == "change_pct":
                    cat = rows[i]["catalog_cost"]
                    return c / cat if cat else Decimal(0)
                return c

        else:
            f = self._SORTS.get(sort, self._SORTS["identifier"])

            def key(i: int) -> Any:
                return f(rows[i])

        if sort == "identifier":
            if descending:
                ids.reverse()
        else:
            ids.sort(key=key, reverse=descending)
        return CostView(ids=ids, total=len(rows))

    async def cost_rows(self, ids: Iterable[int]) -> list[CostRow]:
        ids = list(ids)
        await self._call("cost_rows", ids=ids)
        return [CostRow.from_json(self._json_row(self._rows[i])) for i in ids if i in self._rows]

    async def set_manual_cost(
        self, item_id: int, cost: Decimal, note: str | None = None
    ) -> CostRow:
        await self._call("set_manual_cost", item_id=item_id, cost=cost, note=note)
        r = self._rows[item_id]
        before = r["vendor_cost"]
        r["vendor_cost"] = cost
        r["vendor_source"] = {"kind": "manual", "at": _iso(NOW), "by": self.user}
        self._add_activity(
            "cost.manual.set",
            r["identifier"],
            None if before is None else str(before),
            str(cost),
            {"item_id": item_id, "note": note},
        )
        self.emit("rows", {"ids": [item_id]})
        return CostRow.from_json(self._json_row(r))

    async def cost_history(self, item_id: int) -> dict[str, Any]:
        await self._call("cost_history", item_id=item_id)
        r = self._rows[item_id]
        base = r["import_cost"] or r["catalog_cost"] or Decimal(1)
        points = []
        for n, step in enumerate((Decimal("0.94"), Decimal("0.97"), Decimal("0.97"), Decimal(1))):
            points.append(
                {
                    "at": _iso(NOW - timedelta(days=30 * (4 - n))),
                    "cost": str((base * step).quantize(Q)),
                    "currency": r["currency"],
                    "kind": "import",
                    "source": FILES[(item_id + n) % len(FILES)],
                    "vendor": "Pax8",
                    "by": "costrecond",
                }
            )
        src = r["vendor_source"]
        if src and src.get("kind") == "manual":
            points.append(
                {
                    "at": src.get("at"),
                    "cost": str(r["vendor_cost"]),
                    "currency": r["currency"],
                    "kind": "manual",
                    "source": "manual edit",
                    "vendor": None,
                    "by": src.get("by"),
                }
            )
        return {
            "item_id": item_id,
            "identifier": r["identifier"],
            "name": r["name"],
            "currency": r["currency"],
            "points": points,
        }

    async def revert_manual_cost(self, item_id: int) -> CostRow:
        await self._call("revert_manual_cost", item_id=item_id)
        r = self._rows[item_id]
        if not r["vendor_source"] or r["vendor_source"]["kind"] != "manual":
            raise DaemonError(409, "not_manual", f"{r['identifier']} has no manual cost to revert.")
        before = r["vendor_cost"]
        r["vendor_cost"] = r["import_cost"]
        r["vendor_source"] = r["import_source"]
        self._add_activity(
            "cost.manual.revert",
            r["identifier"],
            str(before),
            str(r["vendor_cost"]),
            {"item_id": item_id},
        )
        self.emit("rows", {"ids": [item_id]})
        return CostRow.from_json(self._json_row(r))

    # ------------------------------------------------------------------ approval

    def _preview(self, items: list[ApprovalItem], policy: str) -> dict[str, Any]:
        per_item = []
        lines = skipped = negotiated = 0
        impact = Decimal(0)
        for it in items:
            r = self._rows[it.item_id]
            if it.seen_catalog_cost != r["catalog_cost"]:
                raise DaemonError(
                    409,
                    "stale",
                    f"The catalogue cost of {r['identifier']} changed to {r['catalog_cost']} since "
                    "you loaded it; review the row and approve again.",
                    {"item_id": r["id"], "current": str(r["catalog_cost"])},
                )
            neg = r["lines"] - r["contracts"]
            skip = neg if policy == "matching" else 0
            lines += r["lines"] - skip
            skipped += skip
            negotiated += neg
            impact += (it.cost - (r["catalog_cost"] or 0)) * r["quantity"]
            per_item.append(
                {
                    "item_id": r["id"],
                    "identifier": r["identifier"],
                    "name": r["name"],
                    "before": str(r["catalog_cost"]),
                    "after": str(it.cost),
                    "lines": r["lines"] - skip,
                    "lines_skipped": skip,
                    "lines_already": 0,
                    "currency": r["currency"],
                }
            )
        calls = (len(items) + lines) * 2
        margin = self._margin_preview(items, policy)
        warnings = []
        if any(self._rows[i.item_id]["contracts"] == 0 for i in items):
            warnings.append("Some items are on no active contract: only the catalogue changes.")
        return {
            "items": len(items),
            "item_writes": len(items),
            "lines": lines,
            "lines_skipped": skipped,
            "lines_already": 0,
            "negotiated_lines": negotiated,
            "api_calls": calls,
            "estimated_seconds": round(calls * 0.35, 1),
            "estimate_basis": {"source": "typical", "latency_ms": 350.0},
            "monthly_impact": str(impact.quantize(Q)),
            "impact_by_currency": {"USD": str(impact.quantize(Q))},
            "currency": "USD",
            "policy": policy,
            "per_item": per_item[:500],  # the daemon details the first 500 (PER_ITEM_LISTED)
            "warnings": warnings,
            "margin": margin,
            "effective_date": None,
            "effective_date_handling": (
                "ConnectWise: the daemon pushes on that date (agreement additions keep their own "
                "effective dates; the cost changes on the day)."
            ),
        }

    def _margin_preview(self, items: list[ApprovalItem], policy: str = "all") -> dict[str, Any]:
        """Like changes/margin.py: each row's lines priced at the item price, one per contract."""
        low = []
        before = after = Decimal(0)
        priced = unpriced = 0
        for it in items:
            r = self._rows[it.item_id]
            price = r.get("price")
            n_lines = r["contracts"] if policy == "matching" else r["lines"]
            if price is None:
                unpriced += n_lines
                continue
            priced += n_lines
            qty = Decimal(r["quantity"])
            before += qty * (price - (r["catalog_cost"] or 0))
            after += qty * (price - it.cost)
            m = _margin(price, it.cost)
            if m is not None and m < self.margin_floor:
                for c in range(min(r["contracts"], 3)):
                    low.append(
                        {
                            "customer": f"Client {it.item_id % 97 + c:03d} LLC",
                            "contract": "Managed Services",
                            "item": r["identifier"],
                            "price": str(price),
                            "cost_after": str(it.cost),
                            "margin_after_pct": _pct(m),
                        }
                    )
        return {
            "floor_pct": format(self.margin_floor, "f"),
            "lines_priced": priced,
            "lines_unpriced": unpriced,
            "below_floor_count": len(low),
            "below_floor": low[:200],  # the daemon names the first 200 (margin.MAX_LISTED)
            "monthly": {
                "USD": {
                    "before": str(before.quantize(Q)),
                    "after": str(after.quantize(Q)),
                    "change": str((after - before).quantize(Q)),
                }
            },
        }

    async def preview_change_set(
        self, items: list[ApprovalItem], policy: str = "all", *, effective_date: str | None = None
    ) -> dict[str, Any]:
        await self._call("preview_change_set", items=list(items), policy=policy)
        return {**self._preview(items, policy), "effective_date": effective_date}

    async def approve(
        self,
        items: list[ApprovalItem],
        policy: str = "all",
        *,
        effective_date: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        if effective_date is not None:
            await self._call(
                "approve", items=list(items), policy=policy, effective_date=effective_date
            )
        else:
            await self._call("approve", items=list(items), policy=policy)
        preview = {**self._preview(items, policy), "effective_date": effective_date}
        # A future date makes a scheduled set: journaled now, never pushed by this fake (the
        # daemon pushes it on its day); cancel_change_set ends it.
        opened = "scheduled" if effective_date else "pending"
        cs_id = max(self._change_sets, default=10) + 1
        steps = []
        for it in items:
            r = self._rows[it.item_id]
            n_lines = r["lines"] - (r["lines"] - r["contracts"] if policy == "matching" else 0)
            for t in range(1 + n_lines):
                steps.append(
                    {
                        "id": len(steps) + 1,
                        "item_id": r["id"],
                        "target": "item" if t == 0 else "line",
                        "target_psa_id": r["psa_id"] if t == 0 else str(80000 + r["id"] * 10 + t),
                        "contract_psa_id": None if t == 0 else str(4000 + t),
                        "contract": None if t == 0 else str(4000 + t),
                        "before": str(r["catalog_cost"]),
                        "after": str(it.cost),
                        "value": None,
                        "status": "pending",
                        "message": None,
                        "identifier": r["identifier"],
                        "currency": r["currency"],
                        "attempts": 0,
                    }
                )
            r["state"] = opened
            r["state_detail"] = {"change_set_id": cs_id}
            if effective_date:
                r["state_detail"]["effective_date"] = effective_date
        cs = {
            "id": cs_id,
            "created_at": _iso(NOW),
            "actor": self.user,
            "kind": "apply",
            "undo_of": None,
            "policy": policy,
            "status": opened,
            "preview": preview,
            "request_id": request_id or f"{cs_id:032x}",
            "started_at": None,
            "finished_at": None,
            "message": None,
            "counts": {
                "pending": len(steps),
                "sending": 0,
                "done": 0,
                "conflict": 0,
                "failed": 0,
                "denied": 0,
                "cancelled": 0,
            },
            "total": len(steps),
            "steps": steps,
            "effective_date": effective_date,
        }
        self._change_sets[cs_id] = cs
        self._add_activity(
            "approve",
            ", ".join(self._rows[i.item_id]["identifier"] for i in items[:3])
            + (f" +{len(items) - 3}" if len(items) > 3 else ""),
            None,
            None,
            {
                "change_set_id": cs_id,
                "items": len(items),
                "lines": preview["lines"],
                "effective_date": effective_date,
            },
        )
        self.emit("rows", {"ids": [i.item_id for i in items]})
        if self.auto_push and not effective_date:
            task = asyncio.get_running_loop().create_task(self._auto_push(cs_id))
            self._push_tasks.add(task)
            task.add_done_callback(self._push_tasks.discard)
        return self._cs_json(cs)

    def _cs_json(self, cs: dict[str, Any], *, steps: bool = False) -> dict[str, Any]:
        """A journaled change set as the daemon sends it (ChangeSetView.to_json in
        changes/journal.py): the timing fields and the summary come from this fake's journal."""
        out = {k: v for k, v in cs.items() if k not in ("steps", "conflicts_every")}
        started, finished = cs.get("started_at"), cs.get("finished_at")
        actual = None
        if started and finished:
            span = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
            actual = round(span.total_seconds(), 1)
        out.update(
            request_id=cs.get("request_id"),
            started_at=started,
            estimated_seconds=(cs.get("preview") or {}).get("estimated_seconds"),
            actual_seconds=actual,
            summary=self._summary(cs),
        )
        if steps:
            out["steps"] = [
                {**s, "contract": s.get("contract_psa_id"), "value": s.get("value")}
                for s in cs["steps"]
            ]
        return out

    @staticmethod
    def _summary(cs: dict[str, Any]) -> dict[str, Any]:
        """What the journal recorded beside what the preview promised, as the daemon counts it."""
        p = cs.get("preview") or {}
        c = cs["counts"]
        total = len(cs["steps"])
        done = c.get("done", 0)
        promised = int(p.get("item_writes", 0)) + int(p.get("lines", 0))
        out: dict[str, Any] = {
            "changed": done,
            "skipped": int(p.get("lines_skipped", 0)),
            "already": int(p.get("lines_already", 0)),
            "conflicts": c.get("conflict", 0),
            "failed": c.get("failed", 0) + c.get("denied", 0),
            "not_sent": c.get("cancelled", 0),
            "open": c.get("pending", 0) + c.get("sending", 0),
            "promised": {
                "changed": promised,
                "skipped": int(p.get("lines_skipped", 0)),
                "already": int(p.get("lines_already", 0)),
            },
            "differences": [],
        }
        if p and total != promised:
            out["differences"].append(
                f"the preview promised {promised} change(s) but {total} step(s) were journaled "
                "(the PSA mirror changed between preview and approval)"
            )
        if out["open"] == 0 and done != total:
            why = ", ".join(
                f"{n} {label}"
                for n, label in (
                    (out["conflicts"], "conflict(s): the PSA held another value, left unchanged"),
                    (c.get("failed", 0), "failed"),
                    (c.get("denied", 0), "refused for lack of permission"),
                    (out["not_sent"], "not sent"),
                )
                if n
            )
            out["differences"].append(f"{total - done} of {total} not changed: {why}")
        return out

    async def _auto_push(self, cs_id: int) -> None:
        while self._change_sets[cs_id]["status"] in ("pending", "pushing"):
            await asyncio.sleep(self.push_step_delay)
            if self.running:
                self.push_steps(cs_id, 3)

    def push_steps(
        self, cs_id: int, n: int = 1_000_000, *, conflict_item_ids: Iterable[int] = ()
    ) -> None:
        """Advance a change set's push by ``n`` steps, emitting the events the daemon would."""
        cs = self._change_sets[cs_id]
        conflicts = set(conflict_item_ids)
        pending = [s for s in cs["steps"] if s["status"] == "pending"]
        if cs.get("started_at") is None:
            cs["started_at"] = _iso(NOW)
        touched: set[int] = set()
        for s in pending[:n]:
            r = self._rows[s["item_id"]]
            if s["item_id"] in conflicts and s["target"] == "line":
                s["status"], s["message"] = (
                    "conflict",
                    (
                        f"line cost is {(Decimal(s['before']) - 1):.4f}, expected {s['before']}; "
                        "left unchanged"
                    ),
                )
                s["value"] = f"{(Decimal(s['before']) - 1):.4f}"
            else:
                s["status"] = "done"
                s["value"] = s["after"]
                if s["target"] == "item":
                    r["catalog_cost"] = Decimal(s["after"])
            touched.add(s["item_id"])
        counts = {k: 0 for k in cs["counts"]}
        for s in cs["steps"]:
            counts[s["status"]] += 1
        cs["counts"] = counts
        total = len(cs["steps"])
        done = total - counts["pending"]
        for item_id in touched:
            r = self._rows[item_id]
            item_steps = [s for s in cs["steps"] if s["item_id"] == item_id]
            left = sum(1 for s in item_steps if s["status"] == "pending")
            bad = [s for s in item_steps if s["status"] in ("conflict", "failed")]
            if left:
                r["state"] = "pushing"
                r["state_detail"] = {
                    "change_set_id": cs_id,
                    "done": len(item_steps) - left,
                    "total": len(item_steps),
                }
            elif bad:
                r["state"] = bad[0]["status"]
                r["state_detail"] = {
                    "change_set_id": cs_id,
                    "message": f"{len(bad)} of {len(item_steps)} targets: {bad[0]['message']}",
                }
            else:
                r["state"] = "done"
                r["state_detail"] = {"change_set_id": cs_id}
        cs["status"] = (
            "pushing" if counts["pending"] else ("partial" if counts["conflict"] else "done")
        )
        self.emit(
            "push", {"change_set_id": cs_id, "done": done, "total": total, "status": cs["status"]}
        )
        self.emit("rows", {"ids": sorted(touched)})
        if not counts["pending"]:
            cs["finished_at"] = _iso(NOW)
            self._add_activity(
                "push.done",
                f"change set {cs_id}",
                None,
                None,
                {"change_set_id": cs_id, "status": cs["status"], **counts},
            )

    async def change_sets(self, limit: int = 50) -> list[dict[str, Any]]:
        await self._call("change_sets", limit=limit)
        return [self._cs_json(cs) for cs in list(self._change_sets.values())[-limit:]]

    async def change_set(self, change_set_id: int, *, steps: bool = True) -> dict[str, Any]:
        await self._call("change_set", change_set_id=change_set_id)
        if change_set_id not in self._change_sets:
            raise DaemonError(404, "not_found", f"There is no change set #{change_set_id}.")
        return self._cs_json(self._change_sets[change_set_id], steps=steps)

    async def change_set_steps(
        self,
        change_set_id: int,
        *,
        status: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> dict[str, Any]:
        """``GET /v1/change-sets/{id}/steps``: a page of the journal, answered from this fake's
        own journal in step order."""
        await self._call(
            "change_set_steps",
            change_set_id=change_set_id,
            status=status,
            offset=offset,
            limit=limit,
        )
        cs = self._change_sets.get(change_set_id)
        if cs is None:
            raise DaemonError(404, "not_found", f"There is no change set {change_set_id}.")
        steps = cs["steps"]
        if status:
            steps = [s for s in steps if s["status"] == status]
        page = steps[offset : offset + limit]
        keys = ("id", "target", "target_psa_id", "contract_psa_id", "before", "after", "status")
        return {
            "total": len(steps),
            "steps": [
                {
                    **{k: s.get(k) for k in keys},
                    "value": s.get("value", s["after"] if s["status"] == "done" else None),
                    "message": s.get("message"),
                }
                for s in page
            ],
        }

    def add_big_change_set(self, lines: int, *, conflicts_every: int = 0) -> int:
        """Journal a vendor-wide price rise of ``lines`` contract lines over the catalogue (steps
        pending, the ``approve`` entry logged): the MSP-scale change set of issue 14."""
        cs_id = max(self._change_sets, default=10) + 1
        ids = sorted(self._rows)
        steps = []
        for n in range(lines + len(ids)):
            r = self._rows[ids[n % len(ids)]]
            is_item = n < len(ids)
            steps.append(
                {
                    "id": n + 1,
                    "item_id": r["id"],
                    "target": "item" if is_item else "line",
                    "target_psa_id": r["psa_id"] if is_item else str(200000 + n),
                    "contract_psa_id": None if is_item else str(7000 + n % 8000),
                    "before": str(r["catalog_cost"]),
                    "after": str((r["catalog_cost"] * Decimal("1.05")).quantize(Q)),
                    "status": "pending",
                    "message": None,
                    "identifier": r["identifier"],
                    "currency": r["currency"],
                    "attempts": 0,
                    "contract": None if is_item else str(7000 + n % 8000),
                    "value": None,
                }
            )
        self._change_sets[cs_id] = {
            "id": cs_id,
            "created_at": _iso(NOW),
            "actor": "costrecond",
            "kind": "apply",
            "undo_of": None,
            "policy": "all",
            "status": "pending",
            "preview": {"items": len(ids), "item_writes": len(ids), "lines": lines},
            "finished_at": None,
            "message": None,
            "request_id": f"{cs_id:032x}",
            "started_at": None,
            "counts": {
                "pending": len(steps),
                "sending": 0,
                "done": 0,
                "conflict": 0,
                "failed": 0,
                "denied": 0,
                "cancelled": 0,
            },
            "total": len(steps),
            "steps": steps,
            "conflicts_every": conflicts_every,
        }
        self._add_activity(
            "approve",
            f"change set {cs_id}",
            None,
            None,
            {"change_set_id": cs_id, "items": len(ids), "lines": lines},
            actor="costrecond",
        )
        return cs_id

    async def cancel_change_set(self, change_set_id: int) -> dict[str, Any]:
        """``POST /v1/change-sets/{id}/cancel``: only a scheduled set; its steps never sent."""
        await self._call("cancel_change_set", change_set_id=change_set_id)
        cs = self._change_sets.get(change_set_id)
        if cs is None:
            raise DaemonError(404, "not_found", f"There is no change set {change_set_id}.")
        if cs["status"] != "scheduled":
            raise DaemonError(
                409,
                "not_scheduled",
                f"Change set {change_set_id} is {cs['status']}, not scheduled, so it cannot be "
                "cancelled; undo it instead once it has finished.",
            )
        for s in cs["steps"]:
            s["status"], s["message"] = (
                "cancelled",
                "not sent: the scheduled change set was cancelled",
            )
        cs["status"], cs["finished_at"] = "cancelled", _iso(NOW)
        cs["counts"] = {**{k: 0 for k in cs["counts"]}, "cancelled": len(cs["steps"])}
        ids = sorted({s["item_id"] for s in cs["steps"]})
        for i in ids:
            self._rows[i]["state"] = ""
            self._rows[i]["state_detail"] = {"change_set_id": change_set_id}
        self._add_activity(
            "cancel",
            f"change set {change_set_id}",
            None,
            None,
            {
                "change_set_id": change_set_id,
                "effective_date": cs.get("effective_date"),
                "approved_by": cs["actor"],
                "items": len(ids),
            },
        )
        self.emit("push", {"change_set_id": change_set_id, "status": "cancelled"})
        self.emit("rows", {"ids": ids})
        return {k: v for k, v in cs.items() if k != "steps"}

    async def undo(
        self, change_set_id: int, *, dry_run: bool = False, request_id: str | None = None
    ) -> dict[str, Any]:
        await self._call("undo", change_set_id=change_set_id, dry_run=dry_run)
        cs = self._change_sets.get(change_set_id)
        if cs is None:
            raise DaemonError(404, "not_found", f"There is no change set #{change_set_id}.")
        done = [s for s in cs["steps"] if s["status"] == "done"]
        items = sorted({s["item_id"] for s in done})
        preview = {
            "items": len(items),
            "item_writes": sum(1 for s in done if s["target"] == "item"),
            "lines": sum(1 for s in done if s["target"] == "line"),
            "lines_skipped": 0,
            "lines_already": 0,
            "negotiated_lines": 0,
            "api_calls": len(done) * 2,
            # estimated like an approval (changes/plan.py undo_plan); without a PSA connector the
            # daemon cannot estimate and sends null, which the TUI once crashed on
            **(
                {
                    "estimated_seconds": round(len(done) * 2 * 0.35, 1),
                    "estimate_basis": {"source": "typical", "latency_ms": 350.0},
                }
                if self.psa_limits_known
                else {"estimated_seconds": None, "estimate_basis": {"source": "none"}}
            ),
            "monthly_impact": "-12.5000",
            "impact_by_currency": {"USD": "-12.5000"},
            "currency": "USD",
            "policy": cs["policy"],
            "per_item": [
                {
                    "item_id": i,
                    "identifier": self._rows[i]["identifier"],
                    "name": self._rows[i]["name"],
                    "before": next(s["after"] for s in done if s["item_id"] == i),
                    "after": next(s["before"] for s in done if s["item_id"] == i),
                    "lines": sum(1 for s in done if s["item_id"] == i and s["target"] == "line"),
                    "lines_skipped": 0,
                    "lines_already": 0,
                    "currency": self._rows[i]["currency"],
                }
                for i in items
            ],
            "warnings": [],
            "undo_of": change_set_id,
        }
        if dry_run:
            return {"preview": preview}
        new_id = max(self._change_sets) + 1
        new = {
            **{k: v for k, v in cs.items() if k != "steps"},
            "id": new_id,
            "kind": "undo",
            "undo_of": change_set_id,
            "status": "pending",
            "actor": self.user,
            "created_at": _iso(NOW),
            "request_id": request_id or f"{new_id:032x}",
            "started_at": None,
            "finished_at": None,
            "message": None,
            "preview": preview,
            "counts": {**{k: 0 for k in cs["counts"]}, "pending": len(done)},
            "total": len(done),
            "steps": [
                {
                    **s,
                    "before": s["after"],
                    "after": s["before"],
                    "value": None,
                    "status": "pending",
                    "attempts": 0,
                }
                for s in done
            ],
        }
        self._change_sets[new_id] = new
        self._add_activity(
            "undo",
            f"change set #{change_set_id}",
            None,
            None,
            {"change_set_id": new_id, "undo_of": change_set_id},
        )
        return {"change_set": self._cs_json(new)}

    # ------------------------------------------------------------------ activity + events

    async def activity(
        self,
        *,
        limit: int = 200,
        before_id: int | None = None,
        after_id: int | None = None,
        actor: str | None = None,
        action: str | None = None,
        subject: str | None = None,
    ) -> list[dict[str, Any]]:
        await self._call(
            "activity",
            limit=limit,
            before_id=before_id,
            after_id=after_id,
            actor=actor,
            action=action,
            subject=subject,
        )
        out = []
        for e in reversed(self._activity):
            if before_id is not None and e["id"] >= before_id:
                continue
            if after_id is not None and e["id"] <= after_id:
                continue
            if actor and actor.lower() not in e["actor"].lower():
                continue
            if action and not e["action"].startswith(action):
                continue
            if subject and subject.lower() not in e["subject"].lower():
                continue
            out.append(e)
            if len(out) >= limit:
                break
        return out

    async def verify_activity(self) -> dict[str, Any]:
        await self._call("verify_activity")
        return {"ok": True, "entries": len(self._activity)}

    async def events(self, since: int, timeout: float = 25.0) -> list[Event]:
        if self.record_calls:
            self.calls.append(("events", {"since": since}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._wake is None:
            self._wake = asyncio.Event()
        while True:
            if not self.running:
                raise DaemonNotRunning("/run/user/1000/costrecon/costrecond.sock")
            new = [e for e in self._events[max(0, since - self._event_base - 5) :] if e.id > since]
            if new:
                return new
            left = deadline - loop.time()
            if left <= 0:
                return []
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                pass

    async def stream_events(self, since: int):  # pragma: no cover - the TUI long-polls
        while True:
            for ev in await self.events(since):
                since = ev.id
                yield ev

    # ------------------------------------------------------------------ files + mappings

    async def imports(self, limit: int = 200) -> list[dict[str, Any]]:
        await self._call("imports", limit=limit)
        return list(reversed(self._imports))[:limit]

    async def import_detail(self, import_id: int) -> dict[str, Any]:
        await self._call("import_detail", import_id=import_id)
        imp = next((i for i in self._imports if i["id"] == import_id), None)
        if imp is None:
            raise DaemonError(404, "not_found", f"There is no import #{import_id}.")
        errors = []
        if imp["status"] == "failed":
            errors = [
                {"row": 14, "column": "Unit Cost", "message": "'12,5O' is not a number"},
                {"row": 203, "column": "SKU", "message": "empty SKU"},
                {
                    "row": 377,
                    "column": "Currency",
                    "message": "unknown currency 'US'; expected an ISO code such as USD or EUR",
                },
            ]
        return {**imp, "errors": errors}

    async def unmatched(self, limit: int = 500) -> list[dict[str, Any]]:
        await self._call("unmatched", limit=limit)
        return self._unmatched[:limit]

    async def mappings(self) -> list[dict[str, Any]]:
        await self._call("mappings")
        return list(self._mappings)

    async def create_mapping(
        self, vendor: str, sku: str, term: str | None, item_id: int
    ) -> dict[str, Any]:
        await self._call("create_mapping", vendor=vendor, sku=sku, term=term, item_id=item_id)
        r = self._rows[item_id]
        m = {
            "id": max((m["id"] for m in self._mappings), default=69) + 1,
            "vendor": vendor,
            "sku": sku,
            "term": term or "",
            "item_id": item_id,
            "identifier": r["identifier"],
            "name": r["name"],
            "created_by": self.user,
            "created_at": _iso(NOW),
        }
        self._mappings.append(m)
        for u in self._unmatched:  # the item now has a vendor cost (Mappings' needs list)
            if u["vendor"] == vendor and u["sku"] == sku and r.get("vendor_cost") is None:
                r["vendor_cost"] = u["cost"]
        self._unmatched = [
            u for u in self._unmatched if not (u["vendor"] == vendor and u["sku"] == sku)
        ]
        self._add_activity(
            "mapping.create",
            f"{vendor} {sku} → {r['identifier']}",
            None,
            None,
            {"mapping_id": m["id"]},
        )
        self.emit("imports", {})
        return m

    async def unmatched_page(
        self,
        limit: int = 200,
        *,
        before: int | None = None,
        import_id: int | None = None,
        vendor: str | None = None,
        suggest: int | None = None,
    ) -> dict[str, Any]:
        await self._call(
            "unmatched_page",
            limit=limit,
            before=before,
            import_id=import_id,
            vendor=vendor,
            suggest=suggest,
        )
        # the fake's order stands for the daemon's (newest first); one import holds them all
        rows = [{"import_id": 1, **u} for u in self._unmatched]
        if before is not None:
            ids = [u["vendor_cost_id"] for u in rows]
            rows = rows[ids.index(before) + 1 :] if before in ids else []
        rows = [
            u
            for u in rows
            if (vendor is None or u["vendor"] == vendor)
            and (import_id is None or u.get("import_id", 1) == import_id)
        ][:limit]
        # like the daemon: suggestions for the first ``suggest`` rows not worked out before,
        # null for the others until asked for (unmatched_suggestions)
        budget = 20 if suggest is None else suggest
        out = []
        for u in rows:
            if u["vendor_cost_id"] not in self._suggested and budget > 0:
                budget -= 1
                self._suggested.add(u["vendor_cost_id"])
            known = u["vendor_cost_id"] in self._suggested
            out.append({**u, "suggestions": u["suggestions"] if known else None})
        return {
            "rows": out,
            "before": rows[-1]["vendor_cost_id"] if len(rows) == limit else None,
            "suggestions_pending": sum(1 for u in out if u["suggestions"] is None),
        }

    async def unmatched_suggestions(self, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        await self._call("unmatched_suggestions", ids=ids)
        if len(ids) > 50:
            raise DaemonError(400, "bad_field", "Ask for at most 50 rows at a time.")
        out = {}
        for u in self._unmatched:
            if u["vendor_cost_id"] in ids:
                self._suggested.add(u["vendor_cost_id"])
                out[u["vendor_cost_id"]] = u["suggestions"]
        return out

    def _fake_candidates(self, words: set[str], ident: str, limit: int) -> list[dict[str, Any]]:
        scored = []
        for u in self._unmatched:
            if ident and ident.lower() in (u["sku"] or "").lower():
                tier, score, reason = 0, 1.0, "sku"
            else:
                theirs = set((u.get("description") or "").lower().split())
                score = len(words & theirs) / max(1, len(words | theirs))
                tier, reason = 2, "name"
                if not score:
                    continue
            scored.append((tier, -score, {**u, "score": round(score, 3), "reason": reason}))
        scored.sort(key=lambda x: x[:2])
        return [c for _t, _s, c in scored[:limit]]

    async def mapping_needs(
        self, offset: int = 0, limit: int = 50, candidates: int = 5
    ) -> dict[str, Any]:
        await self._call("mapping_needs", offset=offset, limit=limit, candidates=candidates)
        needed = [r for r in self._rows.values() if r.get("vendor_cost") is None and r.get("lines")]
        needed.sort(key=lambda r: (-(r["lines"] * (r["catalog_cost"] or 0)), r["id"]))
        items = [
            {
                "item_id": r["id"],
                "identifier": r["identifier"],
                "name": r["name"],
                "lines": r["lines"],
                "cost": r["catalog_cost"],
                "currency": r["currency"],
                "candidates": self._fake_candidates(
                    set(r["name"].lower().split()), r["identifier"], candidates
                ),
            }
            for r in needed[offset : offset + limit]
        ]
        return {
            "items": items,
            "total": len(needed),
            "offset": offset,
            "limit": limit,
            "names_indexed": self.search_indexed,
        }

    async def mapping_search(self, q: str, limit: int = 20) -> dict[str, Any]:
        await self._call("mapping_search", q=q, limit=limit)
        rows = self._fake_candidates(set(q.lower().split()), q.strip(), limit)
        return {"rows": rows, "q": q, "names_indexed": self.search_indexed}

    async def delete_mapping(self, mapping_id: int) -> None:
        await self._call("delete_mapping", mapping_id=mapping_id)
        m = next((m for m in self._mappings if m["id"] == mapping_id), None)
        if m is None:
            raise DaemonError(404, "not_found", f"There is no mapping #{mapping_id}.")
        self._mappings.remove(m)
        self._add_activity(
            "mapping.delete", f"{m['vendor']} {m['sku']}", None, None, {"mapping_id": mapping_id}
        )


# ---------------------------------------------------------------------- test helpers


def make_app(client: FakeClient | None = None, **kwargs: Any):
    """A CostreconApp on a fake client with the fixed clock (deterministic ages in snapshots)."""
    from costrecon_tui.app import CostreconApp

    return CostreconApp(client if client is not None else FakeClient(), clock=lambda: NOW, **kwargs)


async def settle(pilot: Any, condition: Any, timeout: float = 30.0) -> None:
    """Let the app run until ``condition()`` holds (workers are async; never sleep blindly).

    The timeout only bounds a failure: a loaded machine (CI beside other jobs) can take seconds
    to start an app, and a condition that holds returns at once whatever the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(
                f"timed out waiting for {getattr(condition, '__name__', condition)}"
            )
        await pilot.pause(0.01)
    await pilot.pause()


def costs_ready(app: Any) -> bool:
    try:
        grid = app.costs.grid
    except Exception:
        return False
    y = int(grid.scroll_offset.y)
    return app.costs.loaded and all(i in grid.rows for i in grid.ids[y : y + grid.size.height])


def all_views_ready(app: Any) -> bool:
    return (
        costs_ready(app)
        and app.activity_view.loaded
        and app.files.loaded
        and app.mappings_view.loaded
        and app.status is not None
    )


def screen_text(app: Any) -> str:
    """All text of the Static widgets on the current screen, including rich Tables' cells."""
    from rich.table import Table

    parts = []
    for static in app.screen.query("Static"):
        content = getattr(static, "content", None)
        if isinstance(content, Table):
            for col in content.columns:
                parts.append(str(col.header))
                parts.extend(str(c) for c in col._cells)
        else:
            parts.append(str(static.render()))
    return " ".join(parts)
