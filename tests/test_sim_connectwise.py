"""The ConnectWise simulator answers like the real API (psa-apis.md §1, §5)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import httpx
import pytest

from costrecon_daemon.sim.connectwise import start_connectwise_sim
from costrecon_daemon.sim.dataset import generate, generate_custom
from tests.sims import CW_KEYS

AUTH = {
    "Authorization": "Basic "
    + base64.b64encode(
        f"{CW_KEYS['company']}+{CW_KEYS['public_key']}:{CW_KEYS['private_key']}".encode()
    ).decode(),
    "clientId": CW_KEYS["client_id"],
}


@pytest.fixture
async def cw():
    running = await start_connectwise_sim(generate("tiny"), **CW_KEYS)
    async with httpx.AsyncClient(base_url=running.api_root, headers=AUTH) as client:
        yield running, client
    await running.close()


def test_dataset_is_deterministic_and_realistic():
    a, b = generate("demo", seed=3), generate("demo", seed=3)
    assert [i.identifier for i in a.items] == [i.identifier for i in b.items]
    idents = {i.identifier for i in a.items}
    assert {"M365-BP-M", "M365-BP-A"} <= idents
    assert any(i.mpn == "CFQ7TTC0LCHC:0002" for i in a.items)
    assert any(not i.active for i in a.items)
    assert any(c.status == "Cancelled" for c in a.contracts)
    assert any(ln.cancelled for ln in a.lines)
    by_id = {i.id: i for i in a.items}
    assert any(ln.unit_cost != by_id[ln.item_id].cost for ln in a.lines)
    assert len(generate_custom(7, 3, 10).lines) == 10


async def test_companyinfo_gives_codebase_and_null_for_unknown_company(cw):
    running, _ = cw
    async with httpx.AsyncClient() as c:
        info = (await c.get(f"{running.base_url}/login/companyinfo/ACME")).json()
        unknown = await c.get(f"{running.base_url}/login/companyinfo/nobody")
    assert info["Codebase"] == "v2025_1/"
    assert unknown.status_code == 200 and unknown.text == "null"


async def test_auth_needs_basic_keys_and_client_id(cw):
    running, client = cw
    no_client = await client.get("/procurement/catalog", headers={"clientId": ""})
    bad = await client.get(
        "/procurement/catalog",
        headers={"Authorization": "Basic " + base64.b64encode(b"acme+x:y").decode()},
    )
    assert no_client.status_code == 401 and no_client.json()["code"] == "Unauthorized"
    assert bad.status_code == 401 and bad.json()["code"] == "Unauthorized"
    running.sim.set_role(can_login=False)
    locked = await client.get("/procurement/catalog")
    assert locked.json() == {"code": "ConnectWiseApi", "message": "UserNotAuthenticated"}


async def test_list_is_bare_camelcase_array_with_money_as_numbers(cw):
    _, client = cw
    resp = await client.get("/procurement/catalog/1")
    raw = json.loads(resp.text, parse_float=Decimal)
    assert isinstance(raw["cost"], Decimal | int)
    assert raw["_info"]["lastUpdated"].endswith("Z") and len(raw["_info"]["lastUpdated"]) == 20
    page = (await client.get("/procurement/catalog")).json()
    assert isinstance(page, list) and len(page) == 20  # tiny has 20 < default 25
    count = (await client.get("/procurement/catalog/count")).json()
    assert count == {"count": 20}


async def test_navigable_link_headers():
    running = await start_connectwise_sim(generate_custom(60, 1, 1), **CW_KEYS)
    async with httpx.AsyncClient(base_url=running.api_root, headers=AUTH) as client:
        first = await client.get("/procurement/catalog", params={"pageSize": 25})
        middle = await client.get("/procurement/catalog", params={"pageSize": 25, "page": 2})
        last = await client.get("/procurement/catalog", params={"pageSize": 25, "page": 3})
        clamped = await client.get("/procurement/catalog", params={"pageSize": 5000})
    await running.close()
    assert 'rel="next"' in first.headers["Link"] and "page=2" in first.headers["Link"]
    assert 'rel="last"' in first.headers["Link"] and "page=3" in first.headers["Link"]
    assert all(f'rel="{r}"' in middle.headers["Link"] for r in ("next", "prev", "first", "last"))
    assert 'rel="next"' not in last.headers["Link"] and len(last.json()) == 10
    assert len(clamped.json()) == 60  # pageSize above 1000 is clamped, not refused


async def test_forward_only_paging_follows_page_id(cw):
    _, client = cw
    fwd = {"pagination-type": "forward-only"}
    seen: list[int] = []
    params = {"pageSize": "7", "fields": "id"}
    while True:
        resp = await client.get("/procurement/catalog", params=params, headers=fwd)
        seen += [r["id"] for r in resp.json()]
        link = resp.headers.get("Link")
        if not link:
            break
        assert 'rel="prev"' not in link and "pageId=" in link
        params["pageId"] = link.split("pageId=")[1].split(">")[0].split("&")[0]
    assert seen == list(range(1, 21))


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ('identifier="m365-bb-m"', [1]),
        ("id>=3 and id<=5", [3, 4, 5]),
        ("id in (2, 4, 99)", [2, 4]),
        ('identifier like "M365-B%-A"', [3, 7, 11]),
        ('description contains "sentinelone"', [18, 20]),
        ("not (id>2) OR id=20", [1, 2, 20]),
        ("inactiveFlag=false AND id<3", [1, 2]),
        (
            "lastUpdated>[2024-01-01T03:00:00Z] and _info/lastUpdated<[2024-01-01T03:30:00Z]",
            [18, 19, 20],
        ),
        ('vendor/name="Pax8" and id<4', [1, 3]),
    ],
)
async def test_conditions_grammar(cw, conditions, expected):
    _, client = cw
    resp = await client.get(
        "/procurement/catalog", params={"conditions": conditions, "fields": "id"}
    )
    assert resp.status_code == 200, resp.text
    assert [r["id"] for r in resp.json()] == expected


async def test_garbage_conditions_give_400_in_cw_error_shape(cw):
    _, client = cw
    for bad in ("id==1", "identifier=", "(id=1", "nosuchfield=1", "id=1 id=2"):
        resp = await client.get("/procurement/catalog", params={"conditions": bad})
        body = resp.json()
        assert resp.status_code == 400, bad
        assert body["code"] == "InvalidObject" and body["message"] and body["errors"]


async def test_order_by_and_fields(cw):
    _, client = cw
    rows = (
        await client.get(
            "/procurement/catalog", params={"orderBy": "cost desc", "fields": "id,cost,vendor/name"}
        )
    ).json()
    costs = [Decimal(str(r["cost"])) for r in rows]
    assert costs == sorted(costs, reverse=True)
    assert set(rows[0]) == {"id", "cost", "vendor"} and set(rows[0]["vendor"]) == {"name"}


async def test_patch_returns_full_entity_and_bumps_last_updated(cw):
    running, client = cw
    before = (await client.get("/procurement/catalog/2")).json()
    resp = await client.patch(
        "/procurement/catalog/2", content='[{"op":"replace","path":"/cost","value":2.4567}]'
    )
    after = resp.json()
    assert resp.status_code == 200 and after["identifier"] == before["identifier"]
    assert Decimal(str(after["cost"])) == Decimal("2.4567")
    assert after["_info"]["lastUpdated"] > before["_info"]["lastUpdated"]
    assert running.sim.patch_count("catalog", 2) == 1
    add = await client.patch(
        "/finance/agreements/1/additions/1",
        content='[{"op":"replace","path":"unitCost","value":9}]',
    )
    assert add.json()["unitCost"] == 9 and add.json()["extCost"] == 9 * add.json()["quantity"]


async def test_bad_patch_is_400_invalid_object(cw):
    _, client = cw
    for body in (
        '{"op":"replace"}',
        "not json",
        '[{"op":"replace","path":"id","value":3}]',
        '[{"op":"replace","path":"cost","value":"cheap"}]',
    ):
        resp = await client.patch("/procurement/catalog/2", content=body)
        assert resp.status_code == 400 and resp.json()["code"] == "InvalidObject", body


async def test_missing_edit_role_gives_403_before_the_body_is_read(cw):
    running, client = cw
    running.sim.set_role(catalog_edit=False, agreements_edit=False)
    item = await client.patch("/procurement/catalog/2", content="[]")
    line = await client.patch("/finance/agreements/1/additions/1", content="[]")
    assert item.status_code == 403 and set(item.json()) == {"code", "message"}
    assert line.status_code == 403
    assert (await client.get("/procurement/catalog/2")).status_code == 200


async def test_knobs_429_drop_and_counts(cw):
    running, client = cw
    running.sim.knobs.fail_next(1, "429")
    limited = await client.get("/procurement/catalog")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    running.sim.knobs.fail_next(1, "drop")
    with pytest.raises(httpx.TransportError):
        await client.get("/procurement/catalog")
    running.sim.knobs.fail_next(1, "503")
    assert (await client.get("/procurement/catalog")).status_code == 503
    assert running.sim.stats.count("GET", "/procurement/catalog") == 3
