"""The Autotask connector against the Autotask simulator over loopback (psa-apis.md §2, §4)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from costrecon_daemon.psa.autotask import AutotaskConnector, AutotaskSettings
from costrecon_daemon.psa.base import (
    Connector,
    LineKey,
    PSAAuthError,
    PSAPermissionError,
    PSAValidationError,
    PSAWriteNotApplied,
    SyncChunk,
    failing,
)
from costrecon_daemon.psa.limits import RollingWindow
from costrecon_daemon.sim.autotask import CANT_READ_COSTS, SecurityLevel, start_autotask_sim
from costrecon_daemon.sim.dataset import Dataset, generate, generate_custom


def _services_only(n: int, lines: int = 0, contracts: int = 1) -> Dataset:
    ds = generate_custom(items=n, contracts=contracts, lines=0, seed=3)
    for it in ds.items:
        it.recurring = True
    if lines:
        full = generate_custom(items=n, contracts=contracts, lines=lines, seed=3)
        for it in full.items:
            it.recurring = True
        return full
    return ds


def _with_charges() -> Dataset:
    """A small tenant where some contract lines use Products (hardware-as-a-service charges)."""
    ds = generate_custom(items=8, contracts=3, lines=12, seed=5)
    for line in ds.lines[::2]:
        ds.item(line.item_id).recurring = False
    for line in ds.lines:
        line.cancelled = False
    ds.contracts[0].status = "Active"
    return ds


async def _connector(sim, **overrides) -> AutotaskConnector:
    settings = AutotaskSettings(
        username=sim.username,
        secret=sim.secret,
        integration_code=sim.integration_code,
        base_url_for_zone_lookup=sim.base_url,
        retry_backoff=0.01,
        rate_limit_wait=0.05,
        **overrides,
    )
    conn = AutotaskConnector(settings)
    await conn.connect()
    return conn


async def _pull(conn: AutotaskConnector, since: str | None = None) -> tuple[SyncChunk, object]:
    got = SyncChunk()

    async def sink(chunk: SyncChunk) -> None:
        got.items += chunk.items
        got.contracts += chunk.contracts
        got.lines += chunk.lines

    result = await conn.pull(since, sink)
    return got, result


@pytest.fixture
async def tenant():
    sim = await start_autotask_sim(generate("demo"))
    conn = await _connector(sim)
    yield sim, conn
    await conn.aclose()
    await sim.close()


async def test_connector_speaks_the_shared_protocol(tenant):
    _, conn = tenant
    assert isinstance(conn, Connector)
    assert conn.limits.per_hour == 10_000 and conn.limits.concurrency == 3
    assert conn.limits.item_write_calls == 2 and conn.limits.line_write_calls == 3


async def test_full_pull_equals_the_tenant(tenant):
    sim, conn = tenant
    got, result = await _pull(conn)
    services = sim.tables["Services"]
    products = sim.tables["Products"]
    assert {i.psa_id for i in got.items} == {f"service:{i}" for i in services} | {
        f"product:{i}" for i in products
    }
    by_id = {i.psa_id: i for i in got.items}
    for sid, rec in services.items():
        assert by_id[f"service:{sid}"].cost == rec["unitCost"]
        assert by_id[f"service:{sid}"].identifier == rec["sku"]
    assert len(got.contracts) == len(sim.tables["Contracts"])
    assert all(c.company for c in got.contracts)
    unbilled = [c for c in sim.tables["ContractCharges"].values() if not c["isBilled"]]
    assert len(got.lines) == len(sim.tables["ContractServices"]) + len(unbilled)
    line = next(ln for ln in got.lines if ln.kind == "contract_service")
    csid = int(line.psa_id.split(":")[1])
    assert line.quantity == sim.current_units(csid)
    assert line.unit_cost == sim.tables["ContractServices"][csid]["unitCost"]
    assert result.complete_items and result.complete_lines_for is None
    assert result.requests == conn.requests_made - 2  # zone lookup + ThresholdInformation
    assert sim.stats.throttled == 0


async def test_cancelled_lines_have_no_current_units_and_are_inactive(tenant):
    sim, conn = tenant
    got, _ = await _pull(conn)
    inactive = [ln for ln in got.lines if not ln.active]
    assert inactive, "the demo tenant has cancelled lines and inactive contracts"
    assert all(ln.quantity == 0 or ln.contract_psa_id for ln in inactive)


@pytest.mark.parametrize("count", [0, 1, 499, 500, 501])
async def test_paging_edges_return_every_service_once(count):
    sim = await start_autotask_sim(_services_only(count))
    conn = await _connector(sim)
    try:
        got, result = await _pull(conn)
        ids = [i.psa_id for i in got.items if i.kind == "service"]
        assert len(ids) == len(set(ids)) == count
        pages = (
            sim.stats.requests[("POST", "/Services/query")]
            + sim.stats.requests[("POST", "/Services/query/next")]
        )
        assert pages == max(1, -(-count // 500))
        # nextPageUrl was followed with the first request's method (a GET would have been a 405).
        assert sim.stats.requests[("GET", "/Services/query/next")] == 0
    finally:
        await conn.aclose()
        await sim.close()


async def test_incremental_pull_sees_only_services_changed_since_the_cursor(tenant):
    sim, conn = tenant
    _, first = await _pull(conn)
    sid = next(iter(sim.tables["Services"]))
    sim.set_cost("Services", sid, Decimal("99.1234"))
    got, second = await _pull(conn, first.cursor)
    services = [i for i in got.items if i.kind == "service"]
    assert [i.psa_id for i in services] == [f"service:{sid}"]
    assert services[0].cost == Decimal("99.1234")
    assert not second.complete_items  # Services came filtered; Products are a full scan
    assert second.requests < first.requests


async def test_item_cost_write_is_verified_and_conflicts_are_visible(tenant):
    sim, conn = tenant
    sid = next(iter(sim.tables["Services"]))
    pid = next(iter(sim.tables["Products"]))
    assert await conn.write_item_cost(f"service:{sid}", Decimal("12.3456")) == Decimal("12.3456")
    assert sim.cost("Services", sid) == Decimal("12.3456")
    assert await conn.write_item_cost(f"product:{pid}", Decimal("7.5")) == Decimal("7.5")
    assert sim.stats.writes[f"service:{sid}"] == 1
    # Someone edits the cost in Autotask: a re-read shows it, so the push worker can see a conflict.
    sim.set_cost("Services", sid, Decimal("13"))
    assert await conn.read_item_cost(f"service:{sid}") == Decimal("13")


async def test_contract_charge_cost_write_is_verified(tenant):
    sim = await start_autotask_sim(_with_charges())
    conn = await _connector(sim)
    try:
        got, _ = await _pull(conn)
        charge = next(ln for ln in got.lines if ln.kind == "contract_charge")
        key = LineKey(charge.psa_id, charge.contract_psa_id, charge.kind)
        assert await conn.write_line_cost(key, Decimal("4.25")) == Decimal("4.25")
        assert await conn.read_line_cost(key) == Decimal("4.25")
    finally:
        await conn.aclose()
        await sim.close()


async def test_contract_service_cost_goes_through_an_adjustment_and_is_verified(tenant):
    sim, conn = tenant
    got, _ = await _pull(conn)
    line = next(ln for ln in got.lines if ln.kind == "contract_service" and ln.active)
    key = LineKey(line.psa_id, line.contract_psa_id, line.kind)
    before_units = sim.current_units(int(line.psa_id.split(":")[1]))
    assert await conn.write_line_cost(key, Decimal("3.3333")) == Decimal("3.3333")
    assert sim.adjustments[-1]["unitChange"] == 0
    assert sim.current_units(int(line.psa_id.split(":")[1])) == before_units
    assert sim.stats.requests[("PATCH", "/ContractServices")] == 0  # unitCost is read-only there


async def test_contract_service_cost_that_autotask_will_not_change_is_never_done(tenant):
    sim, conn = tenant
    sim.adjustments_change_cost = False  # the "adjustments change quantity only" reading
    got, _ = await _pull(conn)
    line = next(ln for ln in got.lines if ln.kind == "contract_service" and ln.active)
    key = LineKey(line.psa_id, line.contract_psa_id, line.kind)
    with pytest.raises(PSAWriteNotApplied, match="not changeable through the Autotask API"):
        await conn.write_line_cost(key, Decimal("1.11"))
    assert await conn.read_line_cost(key) == line.unit_cost


async def test_cant_read_costs_is_reported_and_writes_are_never_counted_done(tenant):
    sim, conn = tenant
    sim.set_security(CANT_READ_COSTS)
    problems = failing(await conn.check_permissions())
    read_costs = [p for p in problems if p.capability == "read_costs"]
    assert read_costs and "Can't Read Costs" in read_costs[0].message
    sid = next(iter(sim.tables["Services"]))
    before = sim.cost("Services", sid)
    with pytest.raises(PSAWriteNotApplied, match="silently ignored"):
        await conn.write_item_cost(f"service:{sid}", Decimal("1.00"))
    assert sim.cost("Services", sid) == before  # the sim ignored it, as Autotask does


async def test_missing_services_edit_right_names_system_administrator(tenant):
    sim, conn = tenant
    sim.set_security(SecurityLevel(name="Inventory only", can_edit_services=False))
    problems = failing(await conn.check_permissions())
    assert [p.capability for p in problems] == ["edit_catalog"]
    assert "System Administrator" in problems[0].message
    sid = next(iter(sim.tables["Services"]))
    writes_before = sim.stats.total
    with pytest.raises(PSAPermissionError) as err:
        await conn.write_item_cost(f"service:{sid}", Decimal("2"))
    assert "System Administrator" in err.value.setting
    assert sim.stats.total == writes_before + 1  # a permission failure is not retried (§4.7)


async def test_all_clear_permissions(tenant):
    _, conn = tenant
    assert failing(await conn.check_permissions()) == []


async def test_wrong_secret_is_an_auth_error():
    sim = await start_autotask_sim(generate("tiny"))
    conn = AutotaskConnector(
        AutotaskSettings(
            sim.username, "wrong", sim.integration_code, base_url_for_zone_lookup=sim.base_url
        )
    )
    try:
        with pytest.raises(PSAAuthError, match="401"):
            await conn.connect()
    finally:
        await conn.aclose()
        await sim.close()


async def test_unknown_user_fails_zone_lookup():
    sim = await start_autotask_sim(generate("tiny"))
    conn = AutotaskConnector(
        AutotaskSettings(
            "nobody@x", sim.secret, sim.integration_code, base_url_for_zone_lookup=sim.base_url
        )
    )
    try:
        with pytest.raises(PSAAuthError, match="UserName"):
            await conn.connect()
    finally:
        await conn.aclose()
        await sim.close()


async def test_5xx_and_dropped_connections_are_survived(tenant):
    sim, conn = tenant
    sim.fail_next(2, "503")
    sim.fail_next(1, "drop")
    sim.fail_next(1, "500")
    got, _ = await _pull(conn)
    assert len(got.items) == len(sim.tables["Services"]) + len(sim.tables["Products"])
    assert sum(sim.request_stats.faults.values()) == 4


async def test_a_billed_charge_is_refused_not_retried():
    sim = await start_autotask_sim(_with_charges())
    conn = await _connector(sim)
    try:
        chid = next(iter(sim.tables["ContractCharges"]))
        sim.tables["ContractCharges"][chid]["isBilled"] = True
        cid = str(sim.tables["ContractCharges"][chid]["contractID"])  # writes use the child URL
        key = LineKey(f"contractcharge:{chid}", cid, "contract_charge")
        with pytest.raises(PSAValidationError, match="billed"):
            await conn.write_line_cost(key, Decimal("1"))
    finally:
        await conn.aclose()
        await sim.close()


async def test_thread_limit_and_hourly_budget_are_respected():
    # The rolling hour shrunk to a second for the test; the sim counts over half that, so a
    # loaded machine that sends a few of the scheduled requests late, bunched, stays within.
    # Without the budget the three threads would send ~75 requests in the sim's half second.
    sim = await start_autotask_sim(_services_only(30), requests_per_hour=40, window_seconds=0.5)
    sim.knobs.latency = 0.02
    conn = await _connector(sim, requests_per_hour=40)
    conn.budget.window = 1.0
    try:
        sids = list(sim.tables["Services"])
        await asyncio.gather(*(conn.write_item_cost(f"service:{s}", Decimal("5.5")) for s in sids))
        assert sim.stats.throttled == 0  # never needed a 429: scheduled within both limits
        assert sim.stats.max_in_flight["services"] == 3
        assert all(sim.cost("Services", s) == Decimal("5.5") for s in sids)
    finally:
        await conn.aclose()
        await sim.close()


async def test_a_429_from_another_integration_is_survived(tenant):
    sim, conn = tenant
    sim.fail_next(2, "429")
    sid = next(iter(sim.tables["Services"]))
    assert await conn.read_item_cost(f"service:{sid}") == sim.cost("Services", sid)


async def test_hourly_budget_waits_for_the_window_to_roll():
    budget = RollingWindow(3, window=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(4):
        await budget.acquire()
    assert loop.time() - start >= 0.15


async def test_many_pages_are_split_over_the_endpoint_threads_without_loss():
    sim = await start_autotask_sim(_services_only(2_101))
    sim.knobs.latency = 0.01
    conn = await _connector(sim)
    try:
        got, _ = await _pull(conn)
        ids = [i.psa_id for i in got.items]
        assert len(ids) == len(set(ids)) == 2_101
        assert {int(i.split(":")[1]) for i in ids} == set(sim.tables["Services"])
        assert sim.stats.max_in_flight["services"] == 3
        assert sim.stats.throttled == 0
    finally:
        await conn.aclose()
        await sim.close()
