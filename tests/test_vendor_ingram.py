"""The Ingram Micro source against the Ingram simulator over loopback: batches of 50, the 207
partial answer, currency per row, token refresh, rate-limit headers and catalogue search
(issue 16; reference/distributor-apis.md §2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from costrecon_daemon.sim.dataset import Dataset, generate
from costrecon_daemon.sim.ingram import RunningIngramSim, start_ingram_sim
from costrecon_daemon.vendors.sources import ProductRef, VendorAuthError
from costrecon_daemon.vendors.sources.ingram import IngramSource
from costrecon_daemon.vendors.sources.settings import IngramSettings


@asynccontextmanager
async def ingram(
    dataset: Dataset | None = None, sim_options: dict[str, Any] | None = None, **settings: Any
) -> AsyncIterator[tuple[RunningIngramSim, IngramSource]]:
    sim = await start_ingram_sim(dataset or generate("demo"), **(sim_options or {}))
    opts: dict[str, Any] = {
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "customer_number": sim.customer_number,
        "base_url": sim.base_url,
        "retry_backoff": 0.01,
        "timeout": 5.0,
    }
    opts.update(settings)
    source = IngramSource(IngramSettings(**opts), seed=1)
    try:
        yield sim, source
    finally:
        await source.aclose()
        await sim.close()


def ingram_refs(ds: Dataset) -> list[ProductRef]:
    return [
        ProductRef(str(it.id), sku=it.vendor_sku)
        for it in ds.items
        if it.vendor_name == "Ingram Micro" and it.vendor_sku
    ]


async def test_first_pull_prices_every_part_in_batches_of_at_most_50_with_fresh_ids():
    ds = generate("demo")
    refs = ingram_refs(ds)
    assert len(refs) > 100  # several batches
    async with ingram(ds) as (sim, source):
        result = await source.pull(refs)
        assert sorted(sim.pna_batches, reverse=True) == [50] * (len(refs) // 50) + (
            [len(refs) % 50] if len(refs) % 50 else []
        )
        ids = sim.correlation_ids
        assert len(ids) == len(set(ids)) == len(sim.pna_batches)
        assert all(len(i) == 32 for i in ids)
        assert sim.token_requests == 1
    assert not result.not_found
    assert {r.sku for r in result.rows} == {r.sku for r in refs}
    row = result.rows[0]
    product = sim.by_ipn[row.sku.upper()]
    assert row.cost == product["usd_cost"] and isinstance(row.cost, Decimal)
    assert row.currency == "USD" and row.list_price is not None and row.list_price > row.cost
    assert row.requested_by and row.source == "ingram" and row.term is None


async def test_a_partial_answer_imports_the_rest_and_names_what_was_not_found():
    ds = generate("demo")
    refs = [*ingram_refs(ds)[:10], ProductRef("typo", sku="12351211")]
    async with ingram(ds) as (sim, source):
        result = await source.pull(refs)
    assert len(result.rows) == 10
    assert [(n.keys, n.identifier) for n in result.not_found] == [
        (("typo",), "part number 12351211")
    ]
    assert "Product not found for IngramPartNumber" in result.not_found[0].reason
    assert result.summary() == "Ingram Micro API pull, 10 prices, 1 not found"


async def test_a_part_without_a_customer_price_is_not_found_with_the_reason():
    ds = generate("demo")
    refs = ingram_refs(ds)[:5]
    async with ingram(ds) as (sim, source):
        sim.unprice(refs[0].sku)
        result = await source.pull(refs)
    assert len(result.rows) == 4
    assert result.not_found[0].keys == (refs[0].key,)
    assert result.not_found[0].reason == "Ingram Micro returned no customer price for this part."


async def test_parts_looked_up_by_manufacturer_part_number_too():
    ds = generate("demo")
    item = next(it for it in ds.items if it.vendor_name == "Ingram Micro" and it.mpn)
    async with ingram(ds) as (_, source):
        result = await source.pull([ProductRef("by-mpn", mpn=item.mpn)])
    assert [(r.sku, r.vendor_sku) for r in result.rows] == [(item.vendor_sku, item.mpn)]


async def test_currency_is_kept_per_row_as_ingram_prices_the_country():
    ds = generate("demo")
    async with ingram(ds, country_code="CA") as (sim, source):
        result = await source.pull(ingram_refs(ds)[:5])
    assert {r.currency for r in result.rows} == {"CAD"}
    assert all(r.cost > sim.by_ipn[r.sku.upper()]["usd_cost"] for r in result.rows)


async def test_a_dead_token_is_refreshed_once_mid_pull():
    ds = generate("demo")
    async with ingram(ds) as (sim, source):
        await source.pull(ingram_refs(ds)[:5])
        sim.revoke_tokens()
        result = await source.pull(ingram_refs(ds))
        assert sim.token_requests == 2
    assert not result.not_found


async def test_a_number_expires_in_is_read_as_well_as_a_string():
    ds = generate("tiny")
    async with ingram(ds, {"expires_in_as_string": False}) as (sim, source):
        await source.pull(ingram_refs(generate("demo"))[:3])
        await source.pull(ingram_refs(generate("demo"))[:3])
        assert sim.token_requests == 1


async def test_wrong_credentials_and_wrong_customer_number_say_what_to_fix():
    ds = generate("tiny")
    async with ingram(ds, client_secret="wrong") as (_, source):
        with pytest.raises(VendorAuthError) as err:
            await source.pull([ProductRef("a", sku="X")])
    assert "developer.ingrammicro.com" in str(err.value) and "wrong" not in str(err.value)
    async with ingram(ds, customer_number="20-999999") as (_, source):
        with pytest.raises(VendorAuthError) as err:
            await source.pull([ProductRef("a", sku="X")])
    assert "vendors.ingram.customer_number" in str(err.value)


async def test_429_and_5xx_on_price_calls_are_retried():
    ds = generate("demo")
    async with ingram(ds, {"trailing_comma_429": True}) as (sim, source):
        sim.fail_next(2, "429")
        sim.fail_next(2, "500")
        result = await source.pull(ingram_refs(ds))
        assert sim.request_stats.faults["429"] == 2 and sim.request_stats.faults["500"] == 2
    assert {r.sku for r in result.rows} == {r.sku for r in ingram_refs(ds)}


async def test_catalogue_search_finds_mapping_candidates_across_pages():
    ds = generate("demo")
    async with ingram(ds) as (sim, source):
        found = await source.search("cisco", limit=150)
        none = await source.search("no-such-part-anywhere")
    expected = [
        p for p in sim.products if "CISCO" in p["description"] or p["vendorName"] == "CISCO"
    ]
    assert len(found) == min(150, len(expected)) and len(found) > 0
    assert all(isinstance(c.discontinued, bool) for c in found)
    assert none == []


async def test_gets_hold_back_when_the_rate_headers_say_nothing_is_left():
    ds = generate("demo")
    # 3 GETs per 2-second window; five pages of search must wait for the reset, not earn a 429.
    options = {"get_requests_per_minute": 3, "rate_window": 2.0}
    async with ingram(ds, options) as (sim, source):
        found = await source.search("a", limit=50)  # one GET
        many = await source.search("e", limit=500)  # five GETs of 100
        assert sim.rate_limited == 0
    assert found and len(many) > 300
