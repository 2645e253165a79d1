"""The real ConnectWise connector against the simulator over loopback."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from costrecon_daemon.psa.base import (
    Connector,
    LineKey,
    PSAAuthError,
    PSAPermissionError,
    PSAUnavailable,
    PSAValidationError,
    PSAWriteNotApplied,
    failing,
)
from costrecon_daemon.psa.connectwise import ConnectWiseConnector, ConnectWiseSettings
from costrecon_daemon.sim.dataset import generate, generate_custom
from tests.sims import CW_KEYS, Collect, connectwise


async def test_full_pull_equals_the_simulators_data():
    ds = generate("tiny")
    async with connectwise(ds) as (_, conn):
        assert isinstance(conn, Connector)
        await conn.connect()
        sink = Collect()
        result = await conn.pull(None, sink)
    items = {r.psa_id: r for r in sink.items}
    assert {str(i.id) for i in ds.items} == set(items)
    for it in ds.items:
        rec = items[str(it.id)]
        assert (rec.identifier, rec.name, rec.cost, rec.active) == (
            it.identifier,
            it.name,
            it.cost,
            it.active,
        )
        assert (rec.vendor_sku, rec.mpn, rec.manufacturer) == (
            it.vendor_sku,
            it.mpn,
            it.manufacturer,
        )
    contracts = {r.psa_id: r for r in sink.contracts}
    assert {str(c.id): c.status == "Active" for c in ds.contracts} == {
        k: v.active for k, v in contracts.items()
    }
    lines = {r.psa_id: r for r in sink.lines}
    assert len(lines) == len(ds.lines)
    for ln in ds.lines:
        rec = lines[str(ln.id)]
        assert (rec.contract_psa_id, rec.item_psa_id) == (str(ln.contract_id), str(ln.item_id))
        assert (rec.unit_cost, rec.quantity, rec.active) == (
            ln.unit_cost,
            ln.quantity,
            not ln.cancelled,
        )
    assert result.complete_items and result.complete_contracts and result.complete_lines_for is None
    assert result.cursor is not None and result.requests == conn.requests_made - 2  # minus connect


@pytest.mark.parametrize("n", [0, 1, 999, 1000, 1001])
async def test_paging_edges_in_both_modes(n):
    """Forward-only (the connector's mode) and the navigable fallback for endpoints without it."""
    ds = generate_custom(n, 1, 0)
    async with connectwise(ds) as (running, conn):
        sink = Collect()
        await conn.pull(None, sink)
        assert sorted(int(r.psa_id) for r in sink.items) == list(range(1, n + 1))
        pages = running.sim.stats.count("GET", "/procurement/catalog")
        # Exactly 1000 rows: a full first page with no Link is also how an endpoint without
        # forward-only support answers, so the connector checks page 2 (one empty request).
        assert pages == max(1, -(-n // 1000)) + (n == 1000)

        # An endpoint that ignores pagination-type answers a full page without any Link header.
        original = running.sim._list

        def navigable_only(request, coll):
            resp = original(request, coll) if "pageId" not in request.query else None
            if request.headers.get("pagination-type"):
                resp.headers.pop("Link", None)
            return resp

        running.sim._list = navigable_only
        sink = Collect()
        await conn.pull(None, sink)
        assert sorted(int(r.psa_id) for r in sink.items) == list(range(1, n + 1))


async def test_incremental_pull_picks_up_exactly_the_changed_rows():
    async with connectwise(generate("demo"), overlap_seconds=0) as (running, conn):
        full = await conn.pull(None, Collect())
        running.sim.advance_clock(5)
        running.sim.set_item_cost(7, Decimal("13.37"))
        running.sim.set_line_cost(42, Decimal("1.11"))
        running.sim.set_line_cost(301, Decimal("2.22"))
        sink = Collect()
        inc = await conn.pull(full.cursor, sink)
        again = Collect()
        await conn.pull(inc.cursor, again)
    assert [(r.psa_id, r.cost) for r in sink.items] == [("7", Decimal("13.37"))]
    assert sorted((r.psa_id, r.unit_cost) for r in sink.lines) == [
        ("301", Decimal("2.22")),
        ("42", Decimal("1.11")),
    ]
    assert sink.contracts == [] and not inc.complete_items and inc.complete_lines_for == frozenset()
    assert inc.cursor > full.cursor
    # Nothing changed since: the next incremental pull brings only the rows at the cursor second.
    assert {r.psa_id for r in again.lines} <= {"42", "301"} and len(again.items) <= 1


async def test_overlap_rereads_rows_just_before_the_cursor():
    async with connectwise(generate("tiny"), overlap_seconds=60) as (running, conn):
        full = await conn.pull(None, Collect())
        sink = Collect()
        await conn.pull(full.cursor, sink)
    # The row that set the cursor is read again (cheap insurance against same-second writes).
    stamps = [r.updated_at for r in sink.items + sink.lines + sink.contracts]
    assert full.cursor in stamps


async def test_faults_are_survived():
    # The pull's requests run concurrently, so which request draws which of the eight queued
    # faults is up to scheduling; under load all eight can land on one request. A budget above
    # the number of faults makes this test about surviving them, not about how they spread.
    async with connectwise(generate("tiny"), timeout=0.5, max_retries=9) as (running, conn):
        # Connected first: the eight faults below land on the pull's requests.
        await conn.connect()
        knobs = running.sim.knobs
        knobs.retry_after = 0
        for kind in ("429", "500", "503", "drop", "slow", "429", "drop", "502"):
            knobs.fail_next(1, kind)
        knobs.slow_seconds = 2.0
        sink = Collect()
        await conn.pull(None, sink)
        knobs.reseed(1)
        knobs.error_rate, knobs.drop_rate = 0.2, 0.05
        await conn.write_item_cost("3", Decimal("6.25"))
        knobs.calm()
        assert running.sim.item_cost(3) == Decimal("6.25")
    assert len(sink.items) == 20 and len(sink.lines) == 40
    assert running.sim.stats.faults["slow"] == 1 and running.sim.stats.faults["drop"] >= 2


async def test_persistent_5xx_becomes_unavailable_after_retries():
    async with connectwise(generate("tiny"), max_retries=2) as (running, conn):
        await conn.connect()
        running.sim.stats.reset()
        running.sim.knobs.error_rate = 1.0
        with pytest.raises(PSAUnavailable) as err:
            await conn.read_item_cost("1")
    assert running.sim.stats.total == 3  # first try + 2 retries
    assert "try again later" in err.value.message


async def test_429_waits_for_retry_after():
    async with connectwise(generate("tiny")) as (running, conn):
        running.sim.knobs.fail_next(1, "429")
        await conn.connect()  # survives the first 429
        running.sim.knobs.fail_next(1, "429")
        started = time.monotonic()
        assert await conn.read_item_cost("1") is not None
        assert time.monotonic() - started >= 1.0  # Retry-After: 1


async def test_bad_keys_give_a_clear_auth_error_without_secrets():
    ds = generate("tiny")
    async with connectwise(ds, private_key="wrong-secret-value") as (_, conn):
        with pytest.raises(PSAAuthError) as err:
            await conn.connect()
    msg = err.value.message
    assert "public_key" in msg and "private_key" in msg and "client_id" in msg
    assert (
        "wrong-secret-value" not in msg and "Basic" not in msg and CW_KEYS["public_key"] not in msg
    )
    assert "wrong-secret-value" not in repr(conn.settings)


async def test_unknown_company_is_reported():
    async with connectwise(generate("tiny"), company="nosuchco") as (_, conn):
        with pytest.raises(PSAAuthError, match="company ID 'nosuchco'"):
            await conn.connect()


async def test_missing_edit_rights_are_found_without_changing_data():
    async with connectwise(generate("tiny")) as (running, conn):
        await conn.connect()
        assert failing(await conn.check_permissions()) == []
        running.sim.set_role(catalog_edit=False, agreements_edit=False)
        before = {i: running.sim.item_cost(i) for i in range(1, 21)}
        problems = failing(await conn.check_permissions())
        assert {p.capability for p in problems} == {"edit_catalog", "edit_lines"}
        assert any("Procurement > Product Catalog" in p.message for p in problems)
        assert any("Finance > Agreements" in p.message for p in problems)
        assert {i: running.sim.item_cost(i) for i in range(1, 21)} == before

        with pytest.raises(PSAPermissionError) as item_err:
            await conn.write_item_cost("2", Decimal("1.00"))
        with pytest.raises(PSAPermissionError) as line_err:
            await conn.write_line_cost(LineKey("1", "1", "addition"), Decimal("1.00"))
    assert "Procurement > Product Catalog" in item_err.value.setting
    assert "Finance > Agreements: Edit" in line_err.value.setting
    assert item_err.value.status == 403


async def test_write_item_and_line_cost_verified_in_one_request_each():
    async with connectwise(generate("tiny")) as (running, conn):
        await conn.connect()
        before = conn.requests_made
        got = await conn.write_item_cost("5", Decimal("14.9875"))
        line = LineKey("3", "1", "addition")
        got_line = await conn.write_line_cost(line, Decimal("0.1"))
        assert conn.requests_made - before == 2
        assert got == Decimal("14.9875") and running.sim.item_cost(5) == Decimal("14.9875")
        assert got_line == Decimal("0.1") and running.sim.line_cost(3) == Decimal("0.1")
        assert await conn.read_item_cost("5") == Decimal("14.9875")
        assert await conn.read_line_cost(line) == Decimal("0.1")
        assert running.sim.patch_count("addition", 3) == 1
        assert conn.limits.item_write_calls == conn.limits.line_write_calls == 1


async def test_ignored_write_raises_write_not_applied():
    async with connectwise(generate("tiny")) as (running, conn):
        running.sim.ignore_cost_writes = True
        old = running.sim.item_cost(4)
        with pytest.raises(PSAWriteNotApplied) as err:
            await conn.write_item_cost("4", old + 1)
        with pytest.raises(PSAWriteNotApplied):
            await conn.write_line_cost(LineKey("2", "1", "addition"), Decimal("99"))
    assert str(old) in err.value.message or str(old.normalize()) in err.value.message


async def test_refused_value_is_a_validation_error():
    async with connectwise(generate("tiny")) as (_, conn):
        with pytest.raises(PSAValidationError):
            await conn.write_item_cost("4", Decimal("-5"))


def test_cloud_ui_host_becomes_api_host():
    s = ConnectWiseSettings(site="na.myconnectwise.net", **CW_KEYS)
    assert ConnectWiseConnector(s).site == "https://api-na.myconnectwise.net"
