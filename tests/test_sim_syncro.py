"""The Syncro simulator behaves like the documented API (psa-apis.md §3, checklist §5 "Syncro")."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from costrecon_daemon.sim.dataset import generate
from costrecon_daemon.sim.syncro import NOT_AUTHORIZED, config_snippet, start_syncro_sim


@pytest.fixture
async def sy():
    sim = await start_syncro_sim(generate("demo"))
    async with httpx.AsyncClient(
        base_url=sim.base_url + "/", headers={"Authorization": f"Bearer {sim.api_token}"}
    ) as client:
        yield sim, client
    await sim.close()


def _body(resp: httpx.Response):
    return json.loads(resp.text, parse_float=Decimal)


async def test_three_ways_to_send_the_token(sy):
    sim, _ = sy
    async with httpx.AsyncClient(base_url=sim.base_url + "/") as c:
        assert (
            await c.get("products", headers={"Authorization": sim.api_token})
        ).status_code == 200
        assert (await c.get(f"products?api_key={sim.api_token}&page=2")).status_code == 200
        bad = await c.get("products", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


async def test_products_come_25_a_page_with_meta(sy):
    sim, client = sy
    first = _body(await client.get("products"))
    assert len(first["products"]) == 25
    assert first["meta"] == {
        "total_pages": -(-len(sim.products) // 25),
        "total_entries": len(sim.products),
        "per_page": 25,
        "page": 1,
    }
    assert isinstance(first["products"][0]["price_cost"], Decimal)
    last = _body(await client.get(f"products?page={first['meta']['total_pages'] + 1}"))
    assert last["products"] == []


async def test_partial_product_put_resets_omitted_booleans(sy):
    sim, client = sy
    pid = next(iter(sim.products))
    sim.products[pid].update(maintain_stock=True, taxable=True)
    resp = await client.put(
        f"products/{pid}", content=json.dumps({"name": "X", "description": "Y", "price_cost": 3.5})
    )
    product = _body(resp)["product"]
    assert product["price_cost"] == Decimal("3.5")
    assert product["maintain_stock"] is False and product["taxable"] is False


async def test_product_put_without_name_is_a_422_in_the_products_shape(sy):
    sim, client = sy
    pid = next(iter(sim.products))
    resp = await client.put(f"products/{pid}", content=json.dumps({"price_cost": 1}))
    assert resp.status_code == 422
    body = resp.json()
    assert body["success"] is False and "Name can't be blank" in body["message"]


async def test_schedule_list_trims_lines_and_the_schedule_has_them(sy):
    sim, client = sy
    listed = _body(await client.get("schedules"))
    assert all(s["lines"] == [] for s in listed["schedules"])
    sid = listed["schedules"][0]["id"]
    one = _body(await client.get(f"schedules/{sid}"))["schedule"]
    assert one["lines"] == sim.schedules[sid]["lines"]
    line = next(s for s in sim.schedules.values() if s["lines"])["lines"][0]
    assert isinstance(line["quantity"], str) and isinstance(line["cost_cents"], int)


async def test_line_put_in_cents(sy):
    sim, client = sy
    sched = next(s for s in sim.schedules.values() if s["lines"])
    line = sched["lines"][0]
    url = f"schedules/{sched['id']}/line_items/{line['id']}"
    blank = await client.put(url, content=json.dumps({"cost_cents": 100}))
    assert blank.status_code == 422 and blank.json() == {"error": ["Name can't be blank"]}
    resp = await client.put(url, content=json.dumps({"name": line["name"], "cost_cents": 1250}))
    item = _body(resp)["schedule_line_item"]
    assert item["cost_cents"] == 1250 and item["price_cost"] == Decimal("12.5")


async def test_missing_permission_is_401_with_the_group_message(sy):
    sim, client = sy
    sim.set_permissions("products_list")
    resp = await client.get("schedules")
    assert resp.status_code == 401 and resp.json() == {"error": NOT_AUTHORIZED}


async def test_rate_limit_is_plain_retry_later_without_retry_after(sy):
    sim, client = sy
    sim.requests_per_minute = 2
    await client.get("products")
    await client.get("products")
    resp = await client.get("products")
    assert resp.status_code == 429 and resp.text.strip() == "Retry later"
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "Retry-After" not in resp.headers


def test_config_snippet_names_the_syncro_settings():
    class Fake:
        base_url, api_token, requests_per_minute = "http://127.0.0.1:1/api/v1", "t", 180

    text = config_snippet(Fake())  # type: ignore[arg-type]
    assert 'kind = "syncro"' in text and 'api_token = "t"' in text


async def test_add_line_item_adds_a_line_and_schedules_carry_spec_types(sy):
    sim, client = sy
    sched = next(iter(sim.schedules.values()))
    pid = next(iter(sim.products))
    before = len(sched["lines"])
    body = {"name": "DNS filtering", "product_id": pid, "quantity": 3, "cost_cents": 115,
            "retail_cents": 200}  # fmt: skip
    resp = await client.post(f"schedules/{sched['id']}/add_line_item", json=body)
    assert resp.status_code == 200, resp.text
    line = _body(resp)["schedule_line_item"]
    assert line["quantity"] == "3" and line["price_cost"] == Decimal("1.15")
    got = _body(await client.get(f"schedules/{sched['id']}"))["schedule"]
    assert len(got["lines"]) == before + 1
    assert isinstance(got["subtotal"], Decimal)  # a number, as in the spec's example
    assert "T" in got["next_run"]  # a date-time, not a bare date
    blank = await client.post(f"schedules/{sched['id']}/add_line_item", json={"cost_cents": 1})
    assert blank.status_code == 422 and blank.json() == {"error": ["Name can't be blank"]}
