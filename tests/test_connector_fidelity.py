"""The cases the data sets gained from the fidelity work (issue 12), pulled by every connector:
one-off lines (Autotask ContractCharges), lines that start next billing period, and contracts in
another currency where the PSA has one."""

from __future__ import annotations

import pytest

from costrecon_daemon.sim.dataset import generate_custom

from .psa_fixtures import PSAS
from .test_connector_contract import connected, pull, served


def tenant():
    ds = generate_custom(items=40, contracts=15, lines=120, seed=3)
    for n, it in enumerate(ds.items):
        it.recurring = n % 4 != 3
        it.active = True
    for c in ds.contracts:
        c.status = "Active"
    for ln in ds.lines:
        ln.cancelled = False
    ds.lines[5].starts_next_period = True
    ds.lines[5].item_id = next(it.id for it in ds.items if it.recurring)
    return ds


@pytest.mark.parametrize("psa", PSAS)
async def test_future_dated_and_one_off_lines_are_live_lines(psa):
    ds = tenant()
    with served(psa, ds) as sim:
        async with connected(sim) as conn:
            got = await pull(conn)
        by_id = {r.psa_id: r for r in got.lines}
        future = by_id[sim.line_psa_id(ds.lines[5].id)]
        # It bills at its unit cost from next month: a vendor cost change must reach it too.
        assert future.active and future.quantity == ds.lines[5].quantity
        one_off = [ln for ln in ds.lines if not ds.item(ln.item_id).recurring]
        assert one_off, "the data set has one-off lines"
        kinds = {by_id[sim.line_psa_id(ln.id)].kind for ln in one_off}
        if psa == "autotask":
            assert kinds == {"contract_charge"}
        assert all(by_id[sim.line_psa_id(ln.id)].active for ln in one_off)


async def test_connectwise_lines_of_a_cad_agreement_carry_cad():
    ds = tenant()
    cad = [c.id for c in ds.contracts if c.currency == "CAD"]
    assert cad, "data sets of ten or more contracts have CAD agreements"
    with served("connectwise", ds) as sim:
        async with connected(sim) as conn:
            got = await pull(conn)
    currencies = {c.psa_id: c.currency for c in got.contracts}
    assert {currencies[sim.contract_psa_id(cid)] for cid in cad} == {"CAD"}
    assert "USD" in currencies.values()
