"""The Pax8 source against the Pax8 simulator over loopback: what a pull asks for, what it brings
back, and how it rides out expired tokens, 429 storms and server errors (issue 16;
reference/distributor-apis.md §1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from costrecon_daemon.sim.dataset import Dataset, generate
from costrecon_daemon.sim.knobs import Knobs
from costrecon_daemon.sim.pax8 import RunningPax8Sim, start_pax8_sim
from costrecon_daemon.vendors.readers import rows_from_records
from costrecon_daemon.vendors.sources import (
    ProductRef,
    VendorAuthError,
    VendorUnavailable,
)
from costrecon_daemon.vendors.sources.pax8 import Pax8Source
from costrecon_daemon.vendors.sources.settings import Pax8Settings


@asynccontextmanager
async def pax8(
    dataset: Dataset | None = None, sim_options: dict[str, Any] | None = None, **settings: Any
) -> AsyncIterator[tuple[RunningPax8Sim, Pax8Source]]:
    sim = await start_pax8_sim(dataset or generate("demo"), **(sim_options or {}))
    opts: dict[str, Any] = {
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "base_url": sim.base_url,
        "retry_backoff": 0.01,
        "timeout": 5.0,
    }
    opts.update(settings)
    source = Pax8Source(Pax8Settings(**opts), seed=1)
    try:
        yield sim, source
    finally:
        await source.aclose()
        await sim.close()


def pax8_refs(ds: Dataset) -> list[ProductRef]:
    """What the mapping hands the source: every catalogue item bought through Pax8, by SKU and
    MPN, keyed by catalogue item id."""
    return [
        ProductRef(str(it.id), sku=it.vendor_sku, mpn=it.mpn)
        for it in ds.items
        if it.vendor_name == "Pax8" and it.vendor_sku
    ]


def pricing_calls(sim: RunningPax8Sim) -> set[str]:
    return {p.split("/")[-2] for (m, p) in sim.request_stats.by_path if p.endswith("/pricing")}


async def test_first_pull_prices_every_mapped_product_and_nothing_else():
    ds = generate("demo")
    async with pax8(ds) as (sim, source):
        result = await source.pull(pax8_refs(ds))
        asked = set(sim.sold.values())
        assert pricing_calls(sim) == asked  # no pricing call for the 400 products not sold
        assert sim.request_stats.total == result.requests
        pages = -(-len(sim.products) // 200)
        assert result.requests == 1 + pages + len(asked)  # token + pages + one pricing each
        assert result.products_seen == len(sim.products)
    assert not result.not_found
    # Every (product, billing term, commitment term) the sim prices is one row.
    expected = sum(len(sim.pricing[pid]) for pid in asked)
    assert len(result.rows) == expected
    assert result.summary() == f"Pax8 API pull, {expected} prices"
    row = next(r for r in result.rows if r.billing_term == "Monthly")
    entry = next(
        e
        for e in sim.pricing[row.product_id]
        if (e["billingTerm"], e["commitmentTerm"]) == (row.billing_term, row.commitment_term)
    )
    assert row.cost == entry["rates"][0]["partnerBuyRate"]
    assert isinstance(row.cost, Decimal)
    assert row.pulled_at.tzinfo is not None and row.source == "pax8"


async def test_monthly_and_annual_terms_are_different_costs_of_one_product():
    ds = generate("demo")
    monthly = next(it for it in ds.items if it.identifier == "M365-BP-M")
    annual = next(it for it in ds.items if it.identifier == "M365-BP-A")
    refs = [
        ProductRef(str(monthly.id), sku=monthly.vendor_sku, mpn=monthly.mpn),
        ProductRef(str(annual.id), mpn=annual.mpn),  # its own C112 SKU is not a Pax8 SKU
    ]
    async with pax8(ds) as (sim, source):
        result = await source.pull(refs)
        assert len(pricing_calls(sim)) == 1  # one product, priced once for both items
    by_terms = {(r.billing_term, r.commitment_term): r for r in result.rows}
    mm = by_terms[("Monthly", "Monthly")]
    m1y = by_terms[("Monthly", "1-Year")]
    a1y = by_terms[("Annual", "1-Year")]
    assert (mm.term, mm.billing) == ("P1M", "Monthly")
    assert (m1y.term, m1y.billing) == ("P1Y", "Monthly")
    assert (a1y.term, a1y.billing, a1y.commitment_months) == ("P1Y", "Annual", 12)
    # The annual rate is for the year; per month it is the annual commitment's monthly cost.
    assert a1y.monthly_cost == (a1y.cost / 12).quantize(Decimal("0.0001"))
    assert mm.monthly_cost > a1y.monthly_cost
    assert set(mm.requested_by) == {str(monthly.id), str(annual.id)}


async def test_quantity_picks_the_band_and_every_band_is_kept():
    ds = generate("demo")
    async with pax8(ds) as (sim, _):
        pid, entry = next(
            (pid, e) for pid, es in sim.pricing.items() if pid in sim.sold.values()
            for e in es if e["type"] == "Volume"
        )  # fmt: skip
    product = next(p for p in sim.products if p["id"] == pid)
    async with pax8(ds) as (sim, source):
        result = await source.pull(
            [ProductRef("one", product_id=pid), ProductRef("many", product_id=pid, quantity=150)]
        )
    rows = [r for r in result.rows if (r.billing_term, r.commitment_term) == ("Monthly", "Monthly")]
    by_qty = {r.quantity: r for r in rows}
    assert by_qty[1].cost == entry["rates"][0]["partnerBuyRate"]
    assert by_qty[150].cost == entry["rates"][1]["partnerBuyRate"]  # the 100-499 band
    assert by_qty[150].requested_by == ("many",)
    assert [b.end for b in by_qty[1].bands] == [99, 499, None]
    assert by_qty[1].pricing_type == "Volume" and by_qty[1].sku == product["sku"]


async def test_unmapped_products_are_reported_and_never_priced():
    ds = generate("demo")
    refs = [*pax8_refs(ds)[:3], ProductRef("ghost", sku="NOT-A-PAX8-SKU")]
    async with pax8(ds) as (sim, source):
        result = await source.pull(refs)
        assert len(pricing_calls(sim)) <= 3
    assert [(n.keys, n.identifier) for n in result.not_found] == [
        (("ghost",), "SKU NOT-A-PAX8-SKU")
    ]
    assert result.not_found[0].reason == "Pax8 has no product with this identifier."
    assert result.summary().endswith(", 1 not found")


async def test_a_product_without_pricing_is_not_found_and_the_rest_is_priced():
    ds = generate("demo")
    refs = pax8_refs(ds)
    async with pax8(ds) as (sim, source):
        gone = sim.sold[int(refs[0].key)]
        sim.remove_pricing(gone)
        result = await source.pull(refs)
    missing = [n for n in result.not_found if refs[0].key in n.keys]
    assert len(missing) == 1 and "no pricing" in missing[0].reason and "404" in missing[0].reason
    assert gone not in {r.product_id for r in result.rows}
    assert len({r.product_id for r in result.rows}) == len(set(sim.sold.values())) - 1


async def test_a_token_that_dies_mid_pull_is_refreshed_once_and_the_pull_completes():
    ds = generate("demo")
    # Tokens claim a day but live 0.3 s; 20 ms per answer makes the pull outlive the first one.
    options = {"token_ttl": 0.3, "knobs": Knobs(latency=0.02)}
    async with pax8(ds, options, concurrency=4) as (sim, source):
        result = await source.pull(pax8_refs(ds))
        assert sim.token_requests >= 2
        assert source.token_requests == sim.token_requests
    assert not result.not_found
    assert {r.product_id for r in result.rows} == set(sim.sold.values())


async def test_a_token_is_reused_across_pulls_until_it_nears_expiry():
    ds = generate("tiny")
    async with pax8(ds) as (sim, source):
        await source.pull(pax8_refs(ds))
        await source.pull(pax8_refs(ds))
        assert sim.token_requests == 1


async def test_rotated_credentials_stop_the_pull_with_the_fix():
    ds = generate("tiny")
    async with pax8(ds) as (sim, source):
        await source.pull(pax8_refs(ds))
        sim.revoke_tokens()
        sim.client_secret = "rotated-in-the-pax8-app"
        with pytest.raises(VendorAuthError) as err:
            await source.pull(pax8_refs(ds))
    message = str(err.value)
    assert "Integrations > API credentials" in message and "COSTRECON_PAX8_CLIENT_SECRET" in message
    assert sim.client_secret not in message and source.settings.client_secret not in message


async def test_a_429_storm_is_ridden_out():
    ds = generate("demo")
    async with pax8(ds) as (sim, source):
        sim.fail_next(4, "429")
        result = await source.pull(pax8_refs(ds))
        assert sim.request_stats.faults["429"] == 4
        assert source.http.retries >= 4
    assert {r.product_id for r in result.rows} == set(sim.sold.values())


async def test_429_with_retry_after_is_honoured():
    ds = generate("tiny")
    async with pax8(ds, {"send_retry_after": True}) as (sim, source):
        sim.knobs.retry_after = 1
        sim.fail_next(1, "429")
        result = await source.pull(pax8_refs(ds))
        # The shared transport paused every request for the server's hint, then went on.
        assert source.http.rate_limited == 1 and source.http.pause.until > 0
    assert result.rows


async def test_server_errors_are_retried_and_a_dead_server_ends_the_pull_with_nothing():
    ds = generate("demo")
    async with pax8(ds) as (sim, source):
        sim.fail_next(3, "503")
        result = await source.pull(pax8_refs(ds))
        assert result.rows and not result.not_found
    async with pax8(ds, max_retries=2) as (sim, source):
        sim.knobs.error_rate, sim.knobs.error_status = 1.0, 502
        with pytest.raises(VendorUnavailable) as err:
            await source.pull(pax8_refs(ds))
    assert "502" in str(err.value) and "\n" not in str(err.value)


async def test_either_charge_type_spelling_is_read():
    ds = generate("tiny")
    async with pax8(ds, {"charge_type_spelling": "client"}) as (_, source):
        result = await source.pull(pax8_refs(ds))
    assert {b.charge_type for r in result.rows for b in r.bands} <= {"Per Unit", "Flat Rate"}


async def test_rows_carry_the_partner_currency_and_feed_the_price_file_importer():
    ds = generate("demo")
    async with pax8(ds, currency="EUR") as (_, source):
        result = await source.pull(pax8_refs(ds))
    assert {r.currency for r in result.rows} == {"EUR"}
    records = result.records()
    assert len(records) == sum(1 for r in result.rows if r.billing != "OneTime")
    read = rows_from_records(records, "generic", vendor="Pax8")
    assert read.ok, read.errors[:3]
    terms = {(r.sku, r.term) for r in read.rows}
    assert all(r.currency == "EUR" for r in read.rows)
    assert any(t == "P1M" for _, t in terms) and any(t == "P1Y" for _, t in terms)


async def test_subscribed_products_are_listed_for_pricing_in_either_wire_shape():
    ds = generate("demo")
    for legacy in (False, True):
        async with pax8(ds, {"legacy_commitment_name": legacy, "currency": "GBP"}) as (sim, source):
            subs = await source.subscriptions()
            assert len(subs) == len(sim.subscriptions)
            assert {s.currency for s in subs} == {"GBP"}
            assert {s.commitment_term for s in subs} == {None, "1-Year"}
            assert all(s.partner_cost is not None for s in subs)
            refs = [
                ProductRef(f"subscription:{pid}", product_id=pid)
                for pid in sorted({s.product_id for s in subs})
            ]
            result = await source.pull(refs)
        assert {r.product_id for r in result.rows} == {s.product_id for s in subs}
