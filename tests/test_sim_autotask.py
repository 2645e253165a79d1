"""The Autotask simulator behaves like the documented API (psa-apis.md §2, checklist §5 "AT")."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from costrecon_daemon.sim.autotask import config_snippet, start_autotask_sim
from costrecon_daemon.sim.dataset import generate


@pytest.fixture
async def at():
    sim = await start_autotask_sim(generate("demo"))
    headers = {
        "apiintegrationcode": sim.integration_code,  # header names are case-insensitive (§2.1)
        "Username": sim.username,
        "Secret": sim.secret,
        "Content-Type": "application/json",
    }
    async with httpx.AsyncClient(base_url=sim.base_url + "V1.0/", headers=headers) as client:
        yield sim, client
    await sim.close()


def _body(resp: httpx.Response):
    return json.loads(resp.text, parse_float=Decimal)


async def _query(client, entity: str, flt, **extra):
    resp = await client.post(f"{entity}/query", content=json.dumps({"filter": flt, **extra}))
    assert resp.status_code == 200, resp.text
    return _body(resp)


async def test_zone_lookup_needs_no_auth_and_names_the_sim(at):
    sim, _ = at
    async with httpx.AsyncClient() as c:
        ok = await c.get(sim.base_url + "v1.0/zoneInformation", params={"user": sim.username})
        bad = await c.get(sim.base_url + "v1.0/zoneInformation", params={"user": "nobody"})
        no_auth = await c.post(sim.base_url + "v1.0/Services/query", content="{}")
    assert ok.json()["url"] == sim.base_url
    assert bad.status_code == 500 and "errors" in bad.json()
    assert no_auth.status_code == 401


async def test_filter_operators(at):
    sim, client = at
    services = sim.tables["Services"]
    name = next(iter(services.values()))["name"]

    async def count(flt) -> int:
        resp = await client.post("Services/query/count", content=json.dumps({"filter": flt}))
        assert resp.status_code == 200, resp.text
        return resp.json()["queryCount"]

    total = len(services)
    active = sum(1 for s in services.values() if s["isActive"])
    assert await count([{"op": "gte", "field": "id", "value": 0}]) == total
    assert await count([{"op": "eq", "field": "IsActive", "value": True}]) == active
    assert await count([{"op": "noteq", "field": "isActive", "value": True}]) == total - active
    assert await count([{"op": "eq", "field": "name", "value": name.upper()}]) >= 1
    assert await count([{"op": "beginsWith", "field": "name", "value": "microsoft"}]) > 0
    assert await count([{"op": "endsWith", "field": "name", "value": "(NCE Annual)"}]) > 0
    assert await count([{"op": "contains", "field": "name", "value": "365"}]) > 0
    assert await count([{"op": "exist", "field": "sku"}]) == total
    assert await count([{"op": "notExist", "field": "externalID"}]) == total
    ids = list(services)[:3]
    assert await count([{"op": "in", "field": "id", "value": ids}]) == 3
    assert await count([{"op": "notIn", "field": "id", "value": ids}]) == total - 3
    cheap = sum(1 for s in services.values() if s["unitCost"] < 10)
    assert await count([{"op": "lt", "field": "unitCost", "value": 10}]) == cheap
    assert await count([{"op": "gte", "field": "unitCost", "value": 10}]) == total - cheap
    either = [
        {
            "op": "or",
            "items": [
                {"op": "eq", "field": "id", "value": ids[0]},
                {"op": "and", "items": [{"op": "eq", "field": "id", "value": ids[1]}]},
            ],
        }
    ]
    assert await count(either) == 2
    assert await count([{"op": "eq", "field": "Vendor", "value": "Pax8", "udf": True}]) > 0
    assert (
        await count([{"op": "gt", "field": "lastModifiedDate", "value": "2099-01-01T00:00:00Z"}])
        == 0
    )


@pytest.mark.parametrize(
    "flt, text",
    [
        ([], "filter is required"),
        ([{"op": "eq", "field": "isActive", "value": None}], "true or false"),
        ([{"op": "eq", "field": "isActive", "value": "true"}], "true or false"),
        ([{"op": "like", "field": "name", "value": "x"}], "Invalid operator"),
        ([{"op": "eq", "field": "nope", "value": 1}], "Unable to find nope"),
        ([{"op": "in", "field": "id", "value": list(range(501))}], "500 OR"),
    ],
)
async def test_bad_queries_fail_like_autotask(at, flt, text):
    _, client = at
    resp = await client.post("Services/query", content=json.dumps({"filter": flt}))
    assert resp.status_code == 500
    assert text in " ".join(resp.json()["errors"])


async def test_max_records_is_capped_at_500(at):
    _, client = at
    flt = [{"op": "gte", "field": "id", "value": 0}]
    resp = await client.post(
        "Services/query", content=json.dumps({"filter": flt, "MaxRecords": 501})
    )
    assert resp.status_code == 500


async def test_paging_follows_next_and_prev_urls_with_the_same_method(at):
    sim, client = at
    flt = [{"op": "gte", "field": "id", "value": 0}]
    first = await _query(client, "Services", flt, MaxRecords=100, IncludeFields=["id", "unitCost"])
    details = first["pageDetails"]
    assert details["count"] == 100 and details["requestCount"] == 100
    assert details["prevPageUrl"] is None and "paging=" in details["nextPageUrl"]
    assert set(first["items"][0]) == {"id", "unitCost"}
    assert (await client.get(details["nextPageUrl"])).status_code == 405
    second = _body(await client.post(details["nextPageUrl"]))
    assert second["items"][0]["id"] > first["items"][-1]["id"]
    back = _body(await client.post(second["pageDetails"]["prevPageUrl"]))
    assert [i["id"] for i in back["items"]] == [i["id"] for i in first["items"]]
    other = [{"op": "eq", "field": "isActive", "value": True}]
    assert (
        await client.post(details["nextPageUrl"], content=json.dumps({"filter": other}))
    ).status_code == 500


async def test_get_query_with_search_pages_by_get(at):
    _, client = at
    search = json.dumps({"filter": [{"op": "gte", "field": "id", "value": 0}], "MaxRecords": 50})
    first = _body(await client.get("Services/query", params={"search": search}))
    nxt = first["pageDetails"]["nextPageUrl"]
    assert (await client.get(nxt)).status_code == 200
    assert (await client.post(nxt)).status_code == 405


async def test_patch_returns_item_id_and_contract_service_cost_is_read_only(at):
    sim, client = at
    sid = next(iter(sim.tables["Services"]))
    stamp = sim.tables["Services"][sid]["lastModifiedDate"]
    resp = await client.patch("Services", content=json.dumps({"id": sid, "unitCost": 1.5}))
    assert resp.json() == {"itemId": sid}
    assert sim.cost("Services", sid) == Decimal("1.5")
    assert sim.tables["Services"][sid]["lastModifiedDate"] > stamp
    csid = next(iter(sim.tables["ContractServices"]))
    cid = sim.tables["ContractServices"][csid]["contractID"]
    before = sim.cost("ContractServices", csid)
    resp = await client.patch(
        f"Contracts/{cid}/Services", content=json.dumps({"id": csid, "unitCost": 9})
    )
    assert resp.status_code == 200 and sim.cost("ContractServices", csid) == before
    # The root entity has no write operations (contract: writes only on the child URL).
    resp = await client.patch("ContractServices", content=json.dumps({"id": csid, "unitCost": 9}))
    assert resp.status_code == 405
    sim.contract_service_cost_patch = "reject"
    resp = await client.patch(
        f"Contracts/{cid}/Services", content=json.dumps({"id": csid, "unitCost": 9})
    )
    assert resp.status_code == 500 and "read-only" in resp.json()["errors"][0]
    missing = await client.patch("Services", content=json.dumps({"id": 1, "unitCost": 9}))
    assert missing.status_code == 500 and "No matching records" in missing.json()["errors"][0]


async def test_adjustments_are_create_only(at):
    sim, client = at
    assert (await client.get("ContractServiceAdjustments/1")).status_code == 405
    csid = next(iter(sim.tables["ContractServices"]))
    cs = sim.tables["ContractServices"][csid]
    body = {
        "contractID": cs["contractID"],
        "serviceID": cs["serviceID"],
        "effectiveDate": "2020-01-01T00:00:00Z",
        "unitChange": 2,
        "adjustedUnitCost": 4.5,
    }
    units = sim.current_units(csid)
    resp = await client.post("ContractServiceAdjustments", content=json.dumps(body))
    assert "itemId" in resp.json()
    assert sim.cost("ContractServices", csid) == Decimal("4.5")
    assert sim.current_units(csid) == units + 2


async def test_missing_id_reads_as_null_item(at):
    _, client = at
    assert (await client.get("Services/1")).json() == {"item": None}


async def test_thread_limit_answers_429(at):
    sim, client = at
    sim.knobs.latency = 0.2
    flt = json.dumps({"filter": [{"op": "gte", "field": "id", "value": 0}], "MaxRecords": 1})
    replies = await asyncio.gather(*(client.post("Products/query", content=flt) for _ in range(5)))
    assert sorted(r.status_code for r in replies) == [200, 200, 200, 429, 429]
    assert (
        "Thread threshold" in next(r for r in replies if r.status_code == 429).json()["errors"][0]
    )


async def test_hourly_threshold_answers_429_and_is_reported(at):
    sim, client = at
    sim.requests_per_hour = 3
    info = (await client.get("ThresholdInformation")).json()
    assert info["externalRequestThreshold"] == 3 and info["currentTimeframeRequestCount"] == 1
    await client.get("ThresholdInformation")
    await client.get("ThresholdInformation")
    over = await client.get("ThresholdInformation")
    assert over.status_code == 429 and "Retry-After" not in over.headers


async def test_cant_read_costs_nulls_costs(at):
    sim, client = at
    sim.security.can_read_costs = False
    data = await _query(
        client, "Services", [{"op": "gte", "field": "id", "value": 0}], MaxRecords=5
    )
    assert all(i["unitCost"] is None for i in data["items"])


def test_config_snippet_names_the_autotask_settings():
    class Fake:
        username, secret, integration_code = "u", "s", "c"
        base_url, requests_per_hour = "http://127.0.0.1:1/atservicesrest/", 10_000

    text = config_snippet(Fake())  # type: ignore[arg-type]
    assert 'kind = "autotask"' in text and "base_url_for_zone_lookup" in text


async def test_an_adjustment_starts_a_new_units_row_from_its_effective_date(at):
    sim, client = at
    csid = next(c for c in sim.tables["ContractServices"] if sim.current_units(c) > 0)
    cs = sim.tables["ContractServices"][csid]
    before_rows = {u["id"]: dict(u) for u in sim._units_for(csid)}
    running_id = sim._current_unit(csid)["id"]
    units = sim.current_units(csid)
    today = datetime.now(UTC).date()
    body = {"serviceID": cs["serviceID"], "effectiveDate": f"{today}T00:00:00Z", "unitChange": 3}
    resp = await client.post(f"Contracts/{cs['contractID']}/ServiceAdjustments", json=body)
    assert resp.status_code == 200, resp.text
    assert sim.current_units(csid) == units + 3
    rows = sim._units_for(csid)
    if today.day != 1:  # on the 1st the running row starts that day and is the row
        assert len(rows) == len(before_rows) + 1
        old = next(u for u in rows if u["id"] == running_id)
        assert old["units"] == units
        assert old["endDate"] == f"{today - timedelta(days=1)}T00:00:00Z"  # history kept
        new = next(u for u in rows if u["id"] not in before_rows)
        assert new["startDate"] == f"{today}T00:00:00Z" and new["units"] == units + 3


async def test_an_adjustment_for_a_service_not_on_the_contract_adds_the_service(at):
    sim, client = at
    kid = next(iter(sim.tables["Contracts"]))
    on_contract = {c["serviceID"] for c in sim.tables["ContractServices"].values()
                   if c["contractID"] == kid}  # fmt: skip
    sid = next(s for s in sim.tables["Services"] if s not in on_contract)
    body = {"serviceID": sid, "effectiveDate": "2025-01-01T00:00:00Z", "unitChange": 4}
    resp = await client.post(f"Contracts/{kid}/ServiceAdjustments", json=body)
    assert resp.status_code == 200, resp.text
    listed = _body(await client.get(f"Contracts/{kid}/Services"))["items"]
    added = [c for c in listed if c["serviceID"] == sid]
    assert len(added) == 1 and added[0]["unitCost"] == sim.tables["Services"][sid]["unitCost"]
    assert sim.current_units(added[0]["id"]) == 4


async def test_contract_lines_are_written_only_through_the_child_urls(at):
    sim, client = at
    ch = next(c for c in sim.tables["ContractCharges"].values() if not c["isBilled"])
    kid = ch["contractID"]
    root = await client.patch("ContractCharges", json={"id": ch["id"], "unitCost": 1})
    assert root.status_code == 405
    child = await client.patch(f"Contracts/{kid}/Charges", json={"id": ch["id"], "unitCost": 1})
    assert child.json() == {"itemId": ch["id"]} and ch["unitCost"] == Decimal(1)
    other = next(k for k in sim.tables["Contracts"] if k != kid)
    wrong = await client.patch(f"Contracts/{other}/Charges", json={"id": ch["id"], "unitCost": 2})
    assert wrong.status_code == 500 and ch["unitCost"] == Decimal(1)
    listed = _body(await client.get(f"Contracts/{kid}/Charges"))["items"]
    assert {c["contractID"] for c in listed} == {kid} and ch["id"] in {c["id"] for c in listed}
    assert (await client.post(f"Contracts/{kid}/Charges/query", json={})).status_code == 404
    fields = _body(await client.get("ContractServices/entityInformation/fields"))["fields"]
    read_only = {f["name"] for f in fields if f["isReadOnly"]}
    assert "unitCost" in read_only and "invoiceDescription" not in read_only
