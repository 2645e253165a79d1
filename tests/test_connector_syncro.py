"""The Syncro connector against the Syncro simulator over loopback (psa-apis.md §3, §4)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from costrecon_daemon.psa.base import (
    Connector,
    LineKey,
    PSAAuthError,
    PSAPermissionError,
    PSAValidationError,
    SyncChunk,
    failing,
)
from costrecon_daemon.psa.syncro import SyncroConnector, SyncroSettings
from costrecon_daemon.sim.dataset import generate, generate_custom
from costrecon_daemon.sim.syncro import start_syncro_sim


def _connector(sim, **overrides) -> SyncroConnector:
    settings = SyncroSettings(
        base_url=sim.base_url,
        api_token=sim.api_token,
        retry_backoff=0.01,
        rate_limit_backoff=0.05,
        **overrides,
    )
    return SyncroConnector(settings)


async def _pull(conn: SyncroConnector):
    got = SyncChunk()

    async def sink(chunk: SyncChunk) -> None:
        got.items += chunk.items
        got.contracts += chunk.contracts
        got.lines += chunk.lines

    result = await conn.pull(None, sink)
    return got, result


@pytest.fixture
async def account():
    sim = await start_syncro_sim(generate("tiny"))
    conn = _connector(sim)
    await conn.connect()
    yield sim, conn
    await conn.aclose()
    await sim.close()


def _product_lines(sim):
    return [
        (s, ln) for s in sim.schedules.values() for ln in s["lines"] if ln["product_id"] is not None
    ]


async def test_connector_speaks_the_shared_protocol(account):
    _, conn = account
    assert isinstance(conn, Connector)
    assert conn.limits.per_minute == 180 and conn.limits.concurrency == 3


async def test_full_pull_equals_the_account(account):
    sim, conn = account
    got, result = await _pull(conn)
    assert {i.psa_id: i.cost for i in got.items} == {
        str(p["id"]): p["price_cost"] for p in sim.products.values()
    }
    assert {c.psa_id for c in got.contracts} == {str(s) for s in sim.schedules}
    expected = {str(ln["id"]): ln for _, ln in _product_lines(sim)}
    assert {ln.psa_id for ln in got.lines} == set(expected)  # hand-typed lines are skipped
    for line in got.lines:
        src = expected[line.psa_id]
        assert line.unit_cost == Decimal(src["cost_cents"]) / 100
        assert line.quantity == Decimal(src["quantity"])
        assert line.item_psa_id == str(src["product_id"])
    assert result.complete_items and result.cursor is None
    # Every schedule was read on its own: the list view carries no lines.
    assert sim.request_stats.count("GET", "/schedules/") == len(sim.schedules)


@pytest.mark.parametrize("count", [0, 1, 24, 25, 26])
async def test_product_paging_edges(count):
    sim = await start_syncro_sim(generate_custom(items=count, contracts=0, lines=0))
    conn = _connector(sim)
    try:
        got, _ = await _pull(conn)
        ids = [i.psa_id for i in got.items]
        assert len(ids) == len(set(ids)) == count
        assert sim.request_stats.count("GET", "/api/v1/products") == max(1, -(-count // 25))
    finally:
        await conn.aclose()
        await sim.close()


async def test_product_cost_write_sends_the_whole_product_and_keeps_its_flags(account):
    sim, conn = account
    pid = next(iter(sim.products))
    sim.products[pid].update(maintain_stock=True, taxable=True)  # a stocked, taxable product
    assert await conn.write_item_cost(str(pid), Decimal("41.37")) == Decimal("41.37")
    assert sim.products[pid]["price_cost"] == Decimal("41.37")
    # A partial PUT would have reset these (the real API does, §3.4).
    assert sim.products[pid]["maintain_stock"] is True and sim.products[pid]["taxable"] is True
    assert sim.writes[f"product:{pid}"] == 1


async def test_line_cost_write_is_in_cents_and_verified(account):
    sim, conn = account
    sched, ln = _product_lines(sim)[0]
    key = LineKey(str(ln["id"]), str(sched["id"]), "schedule_line")
    assert await conn.write_line_cost(key, Decimal("12.50")) == Decimal("12.50")
    assert sim.line(ln["id"])["cost_cents"] == 1250
    assert sim.line(ln["id"])["price_cost"] == Decimal("12.50")


async def test_sub_cent_line_cost_is_refused_not_rounded(account):
    sim, conn = account
    sched, ln = _product_lines(sim)[0]
    key = LineKey(str(ln["id"]), str(sched["id"]), "schedule_line")
    before = ln["cost_cents"]
    with pytest.raises(PSAValidationError, match="whole cents"):
        await conn.write_line_cost(key, Decimal("12.345"))
    assert sim.line(ln["id"])["cost_cents"] == before


async def test_conflicting_edits_are_visible_on_read(account):
    sim, conn = account
    pid = next(iter(sim.products))
    sim.set_product_cost(pid, Decimal("77.70"))
    assert await conn.read_item_cost(str(pid)) == Decimal("77.70")
    sched, ln = _product_lines(sim)[0]
    sim.set_line_cost_cents(ln["id"], 999)
    key = LineKey(str(ln["id"]), str(sched["id"]), "schedule_line")
    assert await conn.read_line_cost(key) == Decimal("9.99")


@pytest.mark.parametrize(
    "granted, capability, setting",
    [
        (
            {"products_edit", "recurring_list", "recurring_edit"},
            "read_catalog",
            "Products - List/Search",
        ),
        (
            {"products_list", "products_edit", "recurring_edit"},
            "read_lines",
            "Recurring Invoices - List",
        ),
    ],
)
async def test_missing_list_permissions_are_named(account, granted, capability, setting):
    sim, conn = account
    sim.set_permissions(*granted)
    problems = failing(await conn.check_permissions())
    assert [p.capability for p in problems] == [capability]
    assert setting in problems[0].message


@pytest.mark.parametrize(
    "granted, setting",
    [
        ({"products_list", "recurring_list", "recurring_edit"}, "Products - Edit"),
        ({"products_list", "products_edit", "recurring_list"}, "Recurring Invoices - Edit"),
    ],
)
async def test_missing_edit_permissions_fail_the_write_with_the_setting(account, granted, setting):
    sim, conn = account
    sim.set_permissions(*granted)
    sched, ln = _product_lines(sim)[0]
    with pytest.raises(PSAPermissionError) as err:
        if setting == "Products - Edit":
            await conn.write_item_cost(str(next(iter(sim.products))), Decimal("1.00"))
        else:
            await conn.write_line_cost(
                LineKey(str(ln["id"]), str(sched["id"]), "schedule_line"), Decimal("1.00")
            )
    assert err.value.setting == setting and setting in err.value.message


async def test_bad_token_is_an_auth_error():
    sim = await start_syncro_sim(generate("tiny"))
    conn = SyncroConnector(SyncroSettings(base_url=sim.base_url, api_token="nope"))
    try:
        with pytest.raises(PSAAuthError):
            await conn.connect()
    finally:
        await conn.aclose()
        await sim.close()


async def test_pacing_stays_under_the_per_minute_limit():
    sim = await start_syncro_sim(generate_custom(items=60, contracts=30, lines=90, seed=2))
    sim.requests_per_minute = 12
    sim.knobs.rate_window = 1.0  # "per minute" shrunk to a second for the test
    conn = _connector(sim, requests_per_minute=12)
    conn.minute.window = 1.0
    try:
        got, result = await _pull(conn)
        assert result.requests > 24  # several windows' worth
        assert sim.request_stats.faults["429"] == 0 and conn.rate_limited == 0
        assert len(got.contracts) == 30
    finally:
        await conn.aclose()
        await sim.close()


async def test_429_retry_later_and_5xx_are_survived(account):
    sim, conn = account
    sim.fail_next(1, "429")
    sim.fail_next(2, "503")
    sim.fail_next(1, "drop")
    got, _ = await _pull(conn)
    assert len(got.items) == len(sim.products)
    assert conn.rate_limited == 1
