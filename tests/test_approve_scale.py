"""Issue 14 item 2: a vendor-wide approval is previewed from one pass over the contract lines,
and the API answers an approval within a second — "recording", followed by request id, when the
change set is still being written.

The preview of a big catalogue is checked against the same figures counted item by item from the
mirror, and against the per-line margin; a slow recording is made by holding the daemon's single
writer busy (deterministic: no sleep races), then releasing it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from costrecon_daemon.changes import Request, journal, plan
from costrecon_daemon.changes.margin import margin_summary
from costrecon_daemon.changes.plan import PER_ITEM_LISTED, SCAN_ABOVE
from costrecon_daemon.db import CatalogItem, ChangeSet, ChangeStep, Contract, ContractLine
from costrecon_daemon.mirror.sync import run_sync
from costrecon_daemon.money import quantize
from costrecon_daemon.sim.dataset import generate_custom
from costrecon_daemon.store import Store, migrate
from costrecon_tui.client import ApprovalItem, DaemonError

from .sims import connectwise

RISE = Decimal("1.05")


async def _mirror_big_tenant(store: Any) -> None:
    """Mirror a ConnectWise tenant with more items than the plan's threshold for reading every
    live line in one pass (so a vendor-wide approval takes that path)."""
    ds = generate_custom(items=SCAN_ABOVE + 400, contracts=60, lines=3000)
    async with connectwise(ds) as (_sim, connector):
        await connector.connect()
        await run_sync(store, connector, actor="test", full=True)


@pytest.fixture
async def big_store(store: Any) -> AsyncIterator[Any]:
    await _mirror_big_tenant(store)
    yield store


@pytest.fixture(params=["sqlite", "postgresql"])
async def big_store_each(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The same on each backend (the one-pass read goes straight to the driver: sqlite3, or
    psycopg on PostgreSQL)."""
    if request.param == "sqlite":
        store = request.getfixturevalue("store")
        await _mirror_big_tenant(store)
        yield store
        return
    url = request.getfixturevalue("pg_url")
    migrate(url)
    store = Store(url)
    try:
        await _mirror_big_tenant(store)
        yield store
    finally:
        store.close()


def _every_priced_item(conn: Any) -> list[Request]:
    rows = conn.execute(
        select(CatalogItem.id, CatalogItem.cost)
        .where(CatalogItem.gone.is_(False), CatalogItem.cost.is_not(None))
        .order_by(CatalogItem.id)
    ).all()
    return [Request(i, (c * RISE).quantize(Decimal("0.01")), c) for i, c in rows]


def _expected(conn: Any, reqs: list[Request], policy: str) -> dict[str, Any]:
    """The preview's totals counted item by item, one query each, by the documented rules."""
    totals: Counter[str] = Counter()
    impact = Decimal(0)
    for req in reqs:
        item = conn.execute(select(CatalogItem).where(CatalogItem.id == req.item_id)).one()
        new = quantize(req.cost)
        totals["item_writes"] += item.cost != new
        lines = conn.execute(
            select(ContractLine)
            .join(Contract, Contract.psa_id == ContractLine.contract_psa_id)
            .where(
                ContractLine.item_psa_id == item.psa_id,
                ContractLine.active.is_(True),
                ContractLine.gone.is_(False),
                Contract.active.is_(True),
                Contract.gone.is_(False),
            )
        ).all()
        for ln in lines:
            totals["negotiated_lines"] += ln.unit_cost != item.cost
            if ln.unit_cost == new:
                totals["lines_already"] += 1
            elif (policy == "matching" and ln.unit_cost != item.cost) or (
                ln.currency != item.currency
            ):
                totals["lines_skipped"] += 1
            else:
                totals["lines"] += 1
                if ln.unit_cost is not None:
                    impact += ln.quantity * (new - ln.unit_cost)
    return {**totals, "monthly_impact": format(quantize(impact), "f")}


@pytest.mark.parametrize("policy", ["all", "matching"])
async def test_a_vendor_wide_preview_counts_every_line_as_an_item_by_item_count_does(
    big_store, policy
):
    def check(conn: Any) -> tuple[dict[str, Any], dict[str, Any], int]:
        reqs = _every_priced_item(conn)
        assert len(reqs) > SCAN_ABOVE  # the one-pass read
        preview, steps = plan(conn, reqs, policy, None, keep_steps=False)
        assert steps == []  # a dry run makes no steps
        return preview, _expected(conn, reqs, policy), len(reqs)

    preview, expected, n = big_store.read_sync(check)
    assert preview["items"] == n
    assert preview["lines"] > 1000
    for key in ("item_writes", "lines", "lines_skipped", "lines_already", "negotiated_lines"):
        assert preview[key] == expected.get(key, 0), key
    assert preview["monthly_impact"] == expected["monthly_impact"]
    # The JSON details the first items and counts them all.
    assert len(preview["per_item"]) == PER_ITEM_LISTED
    assert sum(p["lines"] for p in preview["per_item"]) <= preview["lines"]


async def test_the_one_pass_read_and_the_per_chunk_read_plan_the_same_steps(
    big_store_each, monkeypatch
):
    big_store = big_store_each
    floor = Decimal(30)

    def both(conn: Any) -> Any:
        reqs = _every_priced_item(conn)
        scanned = plan(conn, reqs, "all", None, margin_floor=floor)
        monkeypatch.setattr(sys.modules[plan.__module__], "SCAN_ABOVE", len(reqs) + 1)
        chunked = plan(conn, reqs, "all", None, margin_floor=floor)
        return scanned, chunked, margin_summary(conn, scanned[1], floor)

    (p1, s1), (p2, s2), per_line = big_store.read_sync(both)
    assert p1 == p2
    assert s1 == s2 and len(s1) == p1["item_writes"] + p1["lines"]
    assert p1["margin"] == per_line and per_line["below_floor_count"] > 0


async def test_a_vendor_wide_change_set_journals_every_planned_step_once(big_store):
    def create(conn: Any) -> tuple[dict[str, Any], int]:
        reqs = _every_priced_item(conn)
        preview, steps = plan(conn, reqs, "all", None)
        cs_id = journal(
            conn,
            actor="tech",
            kind="apply",
            policy="all",
            preview=preview,
            steps=steps,
            item_ids=[r.item_id for r in reqs],
        )
        return preview, cs_id

    preview, cs_id = big_store.write_sync(create)

    def stored(conn: Any) -> list[Any]:
        return conn.execute(
            select(ChangeStep.target, ChangeStep.target_psa_id).where(
                ChangeStep.change_set_id == cs_id
            )
        ).all()

    steps = big_store.read_sync(stored)
    kinds = Counter(t for t, _ in steps)
    assert kinds == {"item": preview["item_writes"], "line": preview["lines"]}
    assert len(set(steps)) == len(steps)  # no target twice


# ------------------------------------------------------------------ answering within a second


class HeldWriter:
    """Holds the daemon's one database writer busy (as a long push commit would) until
    released: an approval submitted meanwhile cannot be recorded, whatever the machine's load."""

    def __init__(self, store: Any):
        self.gate = threading.Event()
        self.task = asyncio.ensure_future(store.write(lambda _conn: self.gate.wait(120)))

    async def release(self) -> None:
        self.gate.set()
        await self.task


def _api(daemon: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(daemon.socket), verify=False),
        base_url="http://costrecond",
        timeout=30,
    )


async def _target(daemon: Any) -> Any:
    rows = await daemon.client.cost_rows((await daemon.client.cost_view()).ids)
    return next(r for r in rows if r.lines > 0 and r.catalog_cost)


def _body(row: Any, request_id: str, seen: Decimal | None = None) -> dict[str, Any]:
    return {
        "items": [
            {
                "item_id": row.id,
                "cost": str(row.catalog_cost * RISE),
                "seen_catalog_cost": str(seen if seen is not None else row.catalog_cost),
            }
        ],
        "policy": "all",
        "request_id": request_id,
    }


async def _sets_of(daemon: Any, request_id: str) -> list[Any]:
    def q(conn: Any) -> list[Any]:
        return conn.execute(select(ChangeSet.id).where(ChangeSet.request_id == request_id)).all()

    return await daemon.daemon.store.read(q)


async def test_an_approval_still_being_recorded_is_answered_202_and_found_once_by_request_id(
    daemon,
):
    row = await _target(daemon)
    daemon.daemon.approvals.answer_within = 0.05
    held = HeldWriter(daemon.daemon.store)
    try:
        async with _api(daemon) as api:
            first = await api.post("/v1/change-sets", json=_body(row, "req-big-1"))
            assert first.status_code == 202
            assert first.json() == {"request": {"request_id": "req-big-1", "state": "recording"}}
            state = (await api.get("/v1/change-sets", params={"request_id": "req-big-1"})).json()
            assert state["change_sets"] == []
            assert state["request"] == {"request_id": "req-big-1", "state": "recording"}
            # The client retries (its connection dropped): it joins the recording.
            retry = await api.post("/v1/change-sets", json=_body(row, "req-big-1"))
            assert retry.status_code == 202
    finally:
        await held.release()
    cs = await daemon.wait_for(
        lambda: daemon.client.change_set_by_request("req-big-1"), what="the change set"
    )
    assert cs["request_id"] == "req-big-1"
    assert cs["total"] == cs["preview"]["item_writes"] + cs["preview"]["lines"] >= 2
    async with _api(daemon) as api:
        again = await api.post("/v1/change-sets", json=_body(row, "req-big-1"))
        assert again.status_code == 201 and again.json()["change_set"]["id"] == cs["id"]
        state = (await api.get("/v1/change-sets", params={"request_id": "req-big-1"})).json()
        assert state["request"]["state"] == "recorded"
    assert len(await _sets_of(daemon, "req-big-1")) == 1
    assert (await daemon.wait_change_set(cs["id"]))["status"] == "done"


async def test_the_client_says_recording_then_returns_the_change_set(daemon):
    row = await _target(daemon)
    daemon.daemon.approvals.answer_within = 0.05
    held = HeldWriter(daemon.daemon.store)
    said: list[str] = []

    def recording(message: str) -> None:
        said.append(message)
        held.gate.set()  # the writer finishes its work once the client has been told

    daemon.client.on_recording = recording
    daemon.client.follow_interval = 0.02
    try:
        cs = await daemon.client.approve(
            [ApprovalItem(row.id, row.catalog_cost * RISE, row.catalog_cost)],
            "all",
            request_id="req-big-2",
        )
    finally:
        await held.release()
    assert len(said) == 1 and "recording the approval" in said[0] and "req-big-2" in said[0]
    assert cs["request_id"] == "req-big-2" and cs["preview"]["items"] == 1
    assert cs["total"] == cs["preview"]["item_writes"] + cs["preview"]["lines"] >= 2
    assert len(await _sets_of(daemon, "req-big-2")) == 1


async def test_an_approval_refused_after_it_was_answered_recording_reports_why(daemon):
    row = await _target(daemon)
    daemon.daemon.approvals.answer_within = 0.05
    held = HeldWriter(daemon.daemon.store)
    daemon.client.on_recording = lambda _message: held.gate.set()
    daemon.client.follow_interval = 0.02
    wrong = row.catalog_cost + 1  # not the catalogue cost: the recording refuses it as stale
    try:
        with pytest.raises(DaemonError) as refused:
            await daemon.client.approve(
                [ApprovalItem(row.id, row.catalog_cost * RISE, wrong)],
                "all",
                request_id="req-big-3",
            )
    finally:
        await held.release()
    assert refused.value.code == "stale" and refused.value.status == 409
    assert row.identifier in str(refused.value)
    assert await _sets_of(daemon, "req-big-3") == []
    async with _api(daemon) as api:
        state = (await api.get("/v1/change-sets", params={"request_id": "req-big-3"})).json()
    assert state["change_sets"] == [] and state["request"]["state"] == "failed"
    assert state["request"]["error"]["code"] == "stale"


async def test_a_recording_lost_with_a_daemon_restart_is_said_not_recorded(tmp_path):
    """The daemon answered "recording", then stopped before committing (a crash or a restart):
    recording is one transaction, so it has nothing for the request id, and the client says so
    — never "try again"."""
    from aiohttp import web

    from costrecon_tui.client import DaemonClient, NotAnswered

    posts: list[str] = []

    async def create(request: web.Request) -> web.Response:
        rid = (await request.json())["request_id"]
        posts.append(rid)
        return web.json_response({"request": {"request_id": rid, "state": "recording"}}, status=202)

    async def lookup(request: web.Request) -> web.Response:
        rid = request.query["request_id"]
        return web.json_response(
            {"change_sets": [], "request": {"request_id": rid, "state": "unknown"}}
        )

    app = web.Application()
    app.router.add_post("/v1/change-sets", create)
    app.router.add_get("/v1/change-sets", lookup)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = tmp_path / "costrecond.sock"
    await web.UnixSite(runner, str(sock)).start()
    client = DaemonClient(sock)
    said: list[str] = []
    client.on_recording = said.append
    try:
        with pytest.raises(NotAnswered) as lost:
            await client.approve([ApprovalItem(7, Decimal("22.05"), Decimal("21.00"))], "all")
    finally:
        await client.aclose()
        await runner.cleanup()
    message = str(lost.value)
    assert "has not recorded the approval" in message and "nothing will be pushed" in message
    assert "try again" not in message and posts[0] in message
    assert len(posts) == 1 and len(said) == 1
