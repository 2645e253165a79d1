"""The Pax8 and Ingram Micro simulators behave like the documented APIs
(reference/distributor-apis.md §1.15 and §2.11) and their answers fit the vendors' published
contracts (tests/contracts/pax8.json, ingram.json)."""

from __future__ import annotations

import json
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from costrecon_daemon.sim.dataset import generate
from costrecon_daemon.sim.ingram import config_snippet as ingram_snippet
from costrecon_daemon.sim.ingram import start_ingram_sim
from costrecon_daemon.sim.pax8 import config_snippet as pax8_snippet
from costrecon_daemon.sim.pax8 import start_pax8_sim
from costrecon_daemon.vendors.sources.settings import vendors_from_config

CONTRACTS = Path(__file__).parent / "contracts"


# ---- contract validation --------------------------------------------------------------------


def _to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema (nullable -> null allowed, refs -> $defs)."""
    if isinstance(node, list):
        return [_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in ("nullable", "readOnly", "writeOnly", "discriminator") or k.startswith("x-"):
            continue
        if k == "$ref":
            out[k] = v.replace("#/components/schemas/", "#/$defs/")
        elif k == "properties":
            out[k] = {p: _to_jsonschema(s) for p, s in v.items()}
        elif k in ("items", "additionalProperties", "not"):
            out[k] = _to_jsonschema(v)
        elif k in ("oneOf", "anyOf", "allOf"):
            out[k] = [_to_jsonschema(x) for x in v]
        elif k == "format" and v in ("decimal", "Date"):
            continue  # hints only
        else:
            out[k] = v
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        elif "$ref" in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def validator(contract: str, method: str, path: str, status: str = "200"):
    doc = json.loads((CONTRACTS / f"{contract}.json").read_text())
    op = next(o for o in doc["operations"] if o["method"] == method and o["path"] == path)
    schema = _to_jsonschema(op["responses"][status]["schema"])
    defs = {k: _to_jsonschema(v) for k, v in doc["components"]["schemas"].items()}
    if contract == "pax8":
        # §1.6: endQuantityRange is "number or null" (null = open-ended) on the wire and in every
        # client, though the extracted spec forgot `nullable`.
        defs["Rate"]["properties"]["endQuantityRange"] = {"type": ["number", "null"]}
        # §1.7: monthly subscriptions carry commitmentTerm null (Pax8's CLI, 2026).
        commitment = defs["Subscription"]["properties"]["commitmentTerm"]
        defs["Subscription"]["properties"]["commitmentTerm"] = {
            "anyOf": [commitment, {"type": "null"}]
        }
    schema["$defs"] = defs
    return jsonschema.Draft202012Validator(schema)


def body(resp: httpx.Response) -> Any:
    return json.loads(resp.text, parse_float=Decimal)


# ---- Pax8 -----------------------------------------------------------------------------------


@pytest.fixture
async def pax8():
    sim = await start_pax8_sim(generate("demo"))
    async with httpx.AsyncClient(base_url=sim.base_url + "/") as client:
        yield sim, client
    await sim.close()


def _pax8_token_body(sim, **changes):
    return {
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "audience": "https://api.pax8.com",
        "grant_type": "client_credentials",
        **changes,
    }


async def _pax8_auth(sim, client) -> dict[str, str]:
    resp = await client.post("token", json=_pax8_token_body(sim))
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


async def test_pax8_token_needs_all_four_fields_and_answers_the_spec_shape(pax8):
    sim, client = pax8
    denied = {"error": "access_denied", "error_description": "Unauthorized"}
    no_audience = _pax8_token_body(sim)
    del no_audience["audience"]
    for wrong in (
        no_audience,
        _pax8_token_body(sim, grant_type="password"),
        _pax8_token_body(sim, client_secret="guess"),
    ):
        resp = await client.post("token", json=wrong)
        assert (resp.status_code, resp.json()) == (401, denied)
    ok = await client.post("token", json=_pax8_token_body(sim))
    assert ok.status_code == 200
    validator("pax8", "POST", "/token").validate(ok.json())
    assert ok.json()["expires_in"] == 86400 and ok.json()["access_token"].count(".") == 2


async def test_pax8_products_page_from_zero_and_size_above_200_is_clamped(pax8):
    sim, client = pax8
    auth = await _pax8_auth(sim, client)
    check = validator("pax8", "GET", "/products")
    first = await client.get("products", params={"page": 0, "size": 200}, headers=auth)
    data = body(first)
    check.validate(json.loads(first.text))
    total = len(sim.products)
    assert data["page"] == {
        "size": 200,
        "totalElements": total,
        "totalPages": -(-total // 200),
        "number": 0,
    }
    assert len(data["content"]) == 200
    big = body(await client.get("products", params={"size": 500}, headers=auth))
    assert big["page"]["size"] == 200 and len(big["content"]) == 200
    past = body(await client.get("products", params={"page": 99, "size": 200}, headers=auth))
    assert past["content"] == [] and past["page"]["totalElements"] == total
    default = body(await client.get("products", headers=auth))
    assert len(default["content"]) == 10  # Pax8's default size


async def test_pax8_can_be_told_to_reject_a_size_above_200():
    sim = await start_pax8_sim(generate("tiny"), size_policy="reject")
    try:
        async with httpx.AsyncClient(base_url=sim.base_url + "/") as client:
            auth = await _pax8_auth(sim, client)
            resp = await client.get("products", params={"size": 201}, headers=auth)
    finally:
        await sim.close()
    assert resp.status_code == 400
    assert resp.json()["type"] == "BAD_REQUEST"
    assert resp.json()["instance"] == "/public/v1/products"


async def test_pax8_pricing_has_several_terms_and_bands_and_fits_the_contract(pax8):
    sim, client = pax8
    auth = await _pax8_auth(sim, client)
    check = validator("pax8", "GET", "/products/{productId}/pricing")
    bp = sim.product_for_sku(generate("demo").items[4].vendor_sku)  # an NCE Business item
    resp = await client.get(f"products/{bp['id']}/pricing", headers=auth)
    check.validate(resp.json())
    terms = {(p["billingTerm"], p["commitmentTerm"]) for p in body(resp)["content"]}
    assert {("Monthly", "Monthly"), ("Monthly", "1-Year"), ("Annual", "1-Year")} <= terms
    assert "page" not in body(resp)
    banded = next(
        pid for pid, entries in sim.pricing.items() if any(len(e["rates"]) > 2 for e in entries)
    )
    banded_resp = await client.get(f"products/{banded}/pricing", headers=auth)
    check.validate(banded_resp.json())
    rates = next(e["rates"] for e in body(banded_resp)["content"] if len(e["rates"]) > 2)
    assert rates[-1]["endQuantityRange"] is None
    assert rates[0]["partnerBuyRate"] > rates[-1]["partnerBuyRate"]


async def test_pax8_product_without_pricing_is_a_404_in_the_error_envelope(pax8):
    sim, client = pax8
    auth = await _pax8_auth(sim, client)
    pid = next(p["id"] for p in sim.products if p["id"] not in sim.pricing)
    resp = await client.get(f"products/{pid}/pricing", headers=auth)
    assert resp.status_code == 404
    validator("pax8", "GET", "/products/{productId}/pricing", "404").validate(resp.json())
    assert resp.json()["type"] == "NOT_FOUND"
    assert resp.json()["instance"] == f"/public/v1/products/{pid}/pricing"
    assert resp.json()["status"] == 404 and resp.json()["details"] == []


async def test_pax8_token_calls_spend_the_same_rate_budget():
    sim = await start_pax8_sim(generate("tiny"), requests_per_minute=3)
    try:
        async with httpx.AsyncClient(base_url=sim.base_url + "/") as client:
            for _ in range(2):
                await client.post("token", json=_pax8_token_body(sim))
            auth = await _pax8_auth(sim, client)
            resp = await client.get("products", headers=auth)
    finally:
        await sim.close()
    assert resp.status_code == 429
    assert resp.json()["status"] == 429 and resp.json()["instance"] == "/public/v1/products"
    assert "Retry-After" not in resp.headers  # undocumented for Pax8 (§1.11)


async def test_pax8_token_dies_when_the_knob_says_although_it_claims_a_day():
    sim = await start_pax8_sim(generate("tiny"), token_ttl=0.0)
    try:
        async with httpx.AsyncClient(base_url=sim.base_url + "/") as client:
            auth = await _pax8_auth(sim, client)
            resp = await client.get("products", headers=auth)
    finally:
        await sim.close()
    assert resp.status_code == 401 and resp.json()["type"] == "UNAUTHORIZED"


def test_pax8_catalogue_holds_what_the_demo_msp_sells_and_more():
    ds = generate("demo")
    from costrecon_daemon.sim.pax8 import Pax8Sim

    sim = Pax8Sim(ds)
    bought = [it for it in ds.items if it.vendor_name == "Pax8" and it.vendor_sku]
    assert {it.id for it in bought} == set(sim.sold)
    # The monthly and the annual NCE catalogue items are one Pax8 product priced in both terms.
    monthly = next(it for it in bought if it.identifier == "M365-BP-M")
    annual = next(it for it in bought if it.identifier == "M365-BP-A")
    assert sim.sold[monthly.id] == sim.sold[annual.id]
    assert sim.by_id[sim.sold[monthly.id]]["vendorSku"] == monthly.mpn
    vendors = {sim.by_id[pid]["vendorName"] for pid in sim.sold.values()}
    assert {"Microsoft", "Acronis", "SentinelOne"} <= vendors
    assert len(sim.products) - len(set(sim.sold.values())) == 400  # products it does not sell


async def test_pax8_subscriptions_and_companies_fit_the_contract(pax8):
    sim, client = pax8
    auth = await _pax8_auth(sim, client)
    subs = await client.get("subscriptions", params={"size": 200}, headers=auth)
    validator("pax8", "GET", "/subscriptions").validate(subs.json())
    content = subs.json()["content"]
    assert {s["productId"] for s in content} <= set(sim.sold.values())
    assert any(s["commitmentTerm"] is None for s in content)
    assert any(isinstance(s["commitmentTerm"], dict) for s in content)
    companies = await client.get("companies", params={"size": 200}, headers=auth)
    validator("pax8", "GET", "/companies").validate(companies.json())
    bad = await client.get("subscriptions", params={"companyId": "nope"}, headers=auth)
    assert bad.status_code == 403 and bad.json()["message"] == "Invalid companyId"
    validator("pax8", "GET", "/subscriptions", "403").validate(bad.json())


# ---- Ingram Micro ---------------------------------------------------------------------------


@pytest.fixture
async def ingram():
    sim = await start_ingram_sim(generate("demo"))
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        yield sim, client
    await sim.close()


async def _im_headers(sim, client, **changes) -> dict[str, str]:
    resp = await client.post(
        "/oauth/oauth20/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
        },
    )
    headers = {
        "Authorization": f"Bearer {resp.json()['access_token']}",
        "IM-CustomerNumber": sim.customer_number,
        "IM-CountryCode": "US",
        "IM-CorrelationID": "0123456789abcdef0123456789abcdef",
        "IM-SenderID": "tests",
    }
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not None}


async def test_ingram_token_by_form_post_or_query_get_with_a_string_expiry(ingram):
    sim, client = ingram
    creds = {
        "grant_type": "client_credentials",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
    }
    check = validator("ingram", "GET", "/oauth/oauth20/token")
    for resp in (
        await client.post("/oauth/oauth20/token", data=creds),
        await client.get("/oauth/oauth20/token", params=creds),
    ):
        assert resp.status_code == 200
        check.validate(resp.json())
        assert isinstance(resp.json()["expires_in"], str)
    bad = await client.post("/oauth/oauth20/token", data=dict(creds, client_secret="nope"))
    assert bad.status_code == 400
    validator("ingram", "GET", "/oauth/oauth20/token", "400").validate(bad.json())


async def test_ingram_names_every_missing_header(ingram):
    sim, client = ingram
    headers = await _im_headers(sim, client, **{"IM-CountryCode": None, "IM-CorrelationID": None})
    resp = await client.post(
        "/resellers/v6/catalog/priceandavailability?includeAvailability=false&includePricing=true",
        json={"products": [{"ingramPartNumber": "X"}]},
        headers=headers,
    )
    assert resp.status_code == 400
    path = "/resellers/v6/catalog/priceandavailability"
    validator("ingram", "POST", path, "400").validate(resp.json())
    named = {f["field"] for f in resp.json()["errors"][0]["fields"]}
    assert named == {"IM-CountryCode", "IM-CorrelationID"}
    too_long = await _im_headers(sim, client, **{"IM-CorrelationID": "x" * 45})
    resp = await client.post(
        f"{path}?includeAvailability=false&includePricing=true",
        json={"products": [{"ingramPartNumber": "X"}]},
        headers=too_long,
    )
    assert resp.status_code == 400


async def test_ingram_price_and_availability_207_marks_unknown_parts(ingram):
    sim, client = ingram
    headers = await _im_headers(sim, client)
    path = "/resellers/v6/catalog/priceandavailability"
    known = sim.products[0]
    resp = await client.post(
        f"{path}?includeAvailability=true&includePricing=true",
        json={
            "products": [
                {"ingramPartNumber": known["ingramPartNumber"]},
                {"ingramPartNumber": "12351211"},
                {"vendorPartNumber": known["vendorPartNumber"]},
            ]
        },
        headers=headers,
    )
    assert resp.status_code == 207
    validator("ingram", "POST", path, "207").validate(resp.json())
    answer = body(resp)
    assert [e["index"] for e in answer] == [0, 1, 2]
    assert answer[1] == {
        "index": 1,
        "productStatusCode": "E",
        "productStatusMessage": "Product not found for IngramPartNumber:  12351211",
        "ingramPartNumber": "12351211",
    }
    price = answer[0]["pricing"]
    assert price["currencyCode"] == "USD" and price["customerPrice"] < price["retailPrice"]
    assert resp.headers["IM-CorrelationID"] == headers["IM-CorrelationID"]
    ok = await client.post(
        f"{path}?includeAvailability=false&includePricing=true",
        json={"products": [{"ingramPartNumber": known["ingramPartNumber"]}]},
        headers=headers,
    )
    assert ok.status_code == 200 and "availability" not in ok.json()[0]
    validator("ingram", "POST", path).validate(ok.json())


async def test_ingram_refuses_more_than_50_products_and_prices_in_the_country_currency(ingram):
    sim, client = ingram
    path = (
        "/resellers/v6/catalog/priceandavailability?includeAvailability=false&includePricing=true"
    )
    headers = await _im_headers(sim, client)
    many = [{"ingramPartNumber": p["ingramPartNumber"]} for p in sim.products[:51]]
    resp = await client.post(path, json={"products": many}, headers=headers)
    assert resp.status_code == 400
    ca = await _im_headers(sim, client, **{"IM-CountryCode": "CA"})
    resp = await client.post(path, json={"products": many[:2]}, headers=ca)
    assert {e["pricing"]["currencyCode"] for e in resp.json()} == {"CAD"}


async def test_ingram_gets_carry_rate_headers_and_answer_429_past_the_limit():
    sim = await start_ingram_sim(generate("tiny"), get_requests_per_minute=2)
    try:
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            headers = await _im_headers(sim, client)
            answers = [
                await client.get("/resellers/v6/catalog", params={"keyword": "a"}, headers=headers)
                for _ in range(3)
            ]
    finally:
        await sim.close()
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert all(int(a.headers["X-RateLimit-Reset"]) > 1_000_000_000 for a in answers)
    assert answers[2].json() == {"errors": [{"field": None, "message": "too many requests"}]}


async def test_ingram_search_pages_from_one_with_string_booleans_and_404_when_empty(ingram):
    sim, client = ingram
    headers = await _im_headers(sim, client)
    resp = await client.get(
        "/resellers/v6/catalog",
        params={"keyword": "cisco", "pageSize": 5, "pageNumber": 2},
        headers=headers,
    )
    validator("ingram", "GET", "/resellers/v6/catalog").validate(resp.json())
    data = resp.json()
    assert data["pageNumber"] == 2 and data["pageSize"] == 5 and len(data["catalog"]) == 5
    assert data["catalog"][0]["discontinued"] in ("true", "false")
    assert "pageNumber=3" in data["nextPage"] and "pageNumber=1" in data["previousPage"]
    empty = await client.get(
        "/resellers/v6/catalog", params={"keyword": "no-such-thing-anywhere"}, headers=headers
    )
    # The documented body has a numeric id (unlike other errors), so it is checked by value.
    assert empty.status_code == 404
    assert empty.json()["errors"][0]["message"] == "No Records Found"
    assert empty.json()["errors"][0]["id"] == 123


async def test_ingram_wrong_customer_number_gets_the_fault_body(ingram):
    sim, client = ingram
    headers = await _im_headers(sim, client, **{"IM-CustomerNumber": "20-999999"})
    resp = await client.get("/resellers/v6/catalog", params={"keyword": "a"}, headers=headers)
    assert resp.json()["faultcode"] == "Server"
    assert "does not match the registered customer number" in resp.json()["faultstring"]


async def test_ingram_sandbox_prefix_serves_the_same_routes(ingram):
    sim, client = ingram
    headers = await _im_headers(sim, client)
    resp = await client.get(
        "/sandbox/resellers/v6/catalog", params={"keyword": "dell"}, headers=headers
    )
    assert resp.status_code == 200 and resp.json()["recordsFound"] > 0


def test_ingram_catalogue_holds_what_the_demo_msp_buys_there():
    from costrecon_daemon.sim.ingram import IngramSim

    ds = generate("demo")
    sim = IngramSim(ds)
    bought = {it.id for it in ds.items if it.vendor_name == "Ingram Micro" and it.vendor_sku}
    assert set(sim.sold) == bought
    assert len(sim.products) > len(bought) + 250  # and parts it never buys


# ---- both -----------------------------------------------------------------------------------


async def test_each_simulator_prints_a_config_snippet_the_settings_accept():
    ds = generate("tiny")
    pax8 = await start_pax8_sim(ds)
    ingram = await start_ingram_sim(ds)
    try:
        raw = tomllib.loads(pax8_snippet(pax8) + "\n" + ingram_snippet(ingram))
    finally:
        await pax8.close()
        await ingram.close()
    section = vendors_from_config(raw, {}, "snippet")
    assert section.pax8 is not None and section.pax8.base_url == pax8.base_url
    assert section.ingram is not None and section.ingram.customer_number == "20-222222"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pax8", "ingram"])
def test_sim_main_serves_and_prints_a_loadable_snippet(kind: str):
    """What `costrecond sim pax8|ingram --port P` will run (the CLI hands its arguments on)."""
    import os
    import subprocess
    import sys

    code = f"from costrecon_daemon.sim.{kind} import main; main(['--port', '0', '--size', 'tiny'])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any(
            line.startswith("customer_number" if kind == "ingram" else "requests_per")
            for line in lines
        ):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "simulator exited"
            lines.append(line)
        snippet = "".join(lines[lines.index(f"[vendors.{kind}]\n") :])
        section = vendors_from_config(tomllib.loads(snippet), {}, "snippet")
        settings = getattr(section, kind)
        url = settings.base_url
        resp = httpx.get(
            url.rstrip("/") + ("/products" if kind == "pax8" else "/resellers/v6/catalog")
        )
        assert resp.status_code == 401  # it really serves, and wants a token
    finally:
        proc.terminate()
        proc.wait(10)
