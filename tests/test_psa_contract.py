"""Contract tests: the simulators and connectors against the PSAs' published API descriptions.

(a) every operation the product uses (sim/fidelity.py) is probed on its simulator and the reply is
    validated against the contract's schema with jsonschema (nulls allowed, contracts/README.md);
(b) the connector contract suite (tests/test_connector_contract.py) runs with recording switched
    on at the simulators (its last test checks the recording with the helpers below), and every
    request the connectors sent — method, path template, query parameters, body — must be an
    operation of the contract or a listed deliberate exception (sim/contract.py DEVIATIONS);
    every 2xx reply they got is validated too;
and the simulators refuse write bodies the contract refuses, with each PSA's own error body.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from costrecon_daemon.sim import fidelity
from costrecon_daemon.sim.contract import DEVIATIONS, PSAS, RECORD_ENV, load
from costrecon_daemon.sim.dataset import Dataset, generate_custom
from costrecon_daemon.sim.serve import ServedApp

from .contract_check import Checker, undeclared_fields
from .psa_fixtures import AT_CREDS, CW_CREDS, SY_TOKEN, make_sim

ROOT = Path(__file__).resolve().parent.parent


def tenant() -> Dataset:
    """Recurring and one-off items (Autotask: Services and Products, ContractServices and
    ContractCharges), a cancelled contract and cancelled lines."""
    ds = generate_custom(items=12, contracts=4, lines=30, seed=11)
    ds.contracts[1].status = "Cancelled"
    for n, it in enumerate(ds.items):
        it.recurring = n % 3 != 2
    for n, ln in enumerate(ds.lines):
        ln.item_id = ds.items[n % len(ds.items)].id
        ln.cancelled = n % 7 == 3
    return ds


@contextmanager
def served(psa: str) -> Iterator[tuple[Any, httpx.Client, str]]:
    sim, make_app = make_sim(psa, tenant(), {})
    with ServedApp(make_app) as server:
        if psa == "connectwise":
            user = f"{CW_CREDS['company']}+{CW_CREDS['public_key']}:{CW_CREDS['private_key']}"
            headers = {
                "Authorization": "Basic " + base64.b64encode(user.encode()).decode(),
                "clientId": CW_CREDS["client_id"],
            }
            root = f"{server.base_url}/{sim.codebase}apis/3.0"
        elif psa == "autotask":
            sim.base_url = server.base_url + "/atservicesrest/"
            headers = {
                "ApiIntegrationCode": AT_CREDS["integration_code"],
                "UserName": AT_CREDS["username"],
                "Secret": AT_CREDS["secret"],
            }
            root = f"{server.base_url}/atservicesrest/v1.0"
        else:
            headers = {"Authorization": f"Bearer {SY_TOKEN}"}
            root = f"{server.base_url}/api/v1"
        headers["Content-Type"] = "application/json"
        with httpx.Client(base_url=root, headers=headers, timeout=10) as client:
            yield sim, client, server.base_url


ALL = [{"op": "gte", "field": "id", "value": 0}]


def probes(psa: str, sim: Any, base: str) -> list[tuple[str, str, str, dict, Any]]:
    """(method, template, url, query, body) for every covered operation, with real ids."""
    if psa == "connectwise":
        item = sim.catalog.ids[0]
        agr = sim.agreements.ids[0]
        add = next(i for i, p in sim.addition_parent.items() if p == agr)
        cost = [{"op": "replace", "path": "cost", "value": 12.5}]
        return [
            ("GET", "/login/companyinfo/{company}", f"{base}/login/companyinfo/acme", {}, None),
            ("GET", "/procurement/catalog", "/procurement/catalog", {"pageSize": 5}, None),
            ("GET", "/procurement/catalog/{id}", f"/procurement/catalog/{item}", {}, None),
            ("GET", "/procurement/catalog/count", "/procurement/catalog/count", {}, None),
            ("PATCH", "/procurement/catalog/{id}", f"/procurement/catalog/{item}", {}, cost),
            ("GET", "/finance/agreements", "/finance/agreements", {}, None),
            ("GET", "/finance/agreements/{id}", f"/finance/agreements/{agr}", {}, None),
            ("GET", "/finance/agreements/count", "/finance/agreements/count", {}, None),
            ("GET", "/finance/agreements/{parentId}/additions",
             f"/finance/agreements/{agr}/additions", {}, None),
            ("GET", "/finance/agreements/{parentId}/additions/count",
             f"/finance/agreements/{agr}/additions/count", {}, None),
            ("GET", "/finance/agreements/{parentId}/additions/{id}",
             f"/finance/agreements/{agr}/additions/{add}", {}, None),
            ("PATCH", "/finance/agreements/{parentId}/additions/{id}",
             f"/finance/agreements/{agr}/additions/{add}", {},
             [{"op": "replace", "path": "unitCost", "value": 3.25}]),
        ]  # fmt: skip
    if psa == "autotask":
        t = sim.tables
        svc, prod = next(iter(t["Services"])), next(iter(t["Products"]))
        cs = t["ContractServices"][next(iter(t["ContractServices"]))]
        ch = next(c for c in t["ContractCharges"].values() if not c["isBilled"])
        unit = t["ContractServiceUnits"][next(iter(t["ContractServiceUnits"]))]
        kid = cs["contractID"]
        q = {"MaxRecords": 5, "filter": ALL}
        out: list[tuple[str, str, str, dict, Any]] = [
            ("GET", "/V1.0/ZoneInformation", "/zoneInformation",
             {"user": AT_CREDS["username"]}, None),
            ("GET", "/V1.0/Services/query", "/Services/query", {"search": json.dumps(q)}, None),
        ]  # fmt: skip
        for entity in ("Services", "Products", "Contracts", "ContractServices",
                       "ContractServiceUnits", "ContractCharges"):  # fmt: skip
            out.append(("POST", f"/V1.0/{entity}/query", f"/{entity}/query", {}, q))
            out.append(
                (
                    "POST",
                    f"/V1.0/{entity}/query/count",
                    f"/{entity}/query/count",
                    {},
                    {"filter": ALL},
                )
            )
        for entity, rid in (("Services", svc), ("Products", prod), ("Contracts", kid),
                            ("ContractServices", cs["id"]), ("ContractCharges", ch["id"]),
                            ("ContractServiceUnits", unit["id"])):  # fmt: skip
            out.append(("GET", f"/V1.0/{entity}/{{id}}", f"/{entity}/{rid}", {}, None))
        for entity in ("Services", "ContractServices", "ContractCharges",
                       "ContractServiceAdjustments"):  # fmt: skip
            out.append((
                "GET", f"/V1.0/{entity}/entityInformation/fields",
                f"/{entity}/entityInformation/fields", {}, None,
            ))  # fmt: skip
        uk = unit["contractID"]
        adjust = {"contractID": kid, "serviceID": cs["serviceID"],
                  "effectiveDate": "2025-01-01T00:00:00Z", "unitChange": 0}  # fmt: skip
        out += [
            ("PATCH", "/V1.0/Services", "/Services", {}, {"id": svc, "unitCost": 4.5}),
            ("PATCH", "/V1.0/Products", "/Products", {}, {"id": prod, "unitCost": 4.5}),
            ("GET", "/V1.0/Contracts/{parentId}/Services", f"/Contracts/{kid}/Services", {}, None),
            ("GET", "/V1.0/Contracts/{parentId}/Services/{id}",
             f"/Contracts/{kid}/Services/{cs['id']}", {}, None),
            ("PATCH", "/V1.0/Contracts/{parentId}/Services", f"/Contracts/{kid}/Services", {},
             {"id": cs["id"], "invoiceDescription": "Managed backup"}),
            ("GET", "/V1.0/Contracts/{parentId}/Charges",
             f"/Contracts/{ch['contractID']}/Charges", {}, None),
            ("GET", "/V1.0/Contracts/{parentId}/Charges/{id}",
             f"/Contracts/{ch['contractID']}/Charges/{ch['id']}", {}, None),
            ("PATCH", "/V1.0/Contracts/{parentId}/Charges",
             f"/Contracts/{ch['contractID']}/Charges", {}, {"id": ch["id"], "unitCost": 2.5}),
            ("GET", "/V1.0/Contracts/{parentId}/ServiceUnits",
             f"/Contracts/{uk}/ServiceUnits", {}, None),
            ("GET", "/V1.0/Contracts/{parentId}/ServiceUnits/{id}",
             f"/Contracts/{uk}/ServiceUnits/{unit['id']}", {}, None),
            ("POST", "/V1.0/ContractServiceAdjustments", "/ContractServiceAdjustments", {},
             adjust),
            ("POST", "/V1.0/Contracts/{parentId}/ServiceAdjustments",
             f"/Contracts/{kid}/ServiceAdjustments", {}, adjust),
        ]  # fmt: skip
        return out
    product = next(iter(sim.products.values()))
    sched = next(s for s in sim.schedules.values() if s["lines"])
    line = sched["lines"][0]
    put_product = {k: v for k, v in product.items()
                   if k not in ("id", "category_path", "product_skus", "location_quantities",
                                "photos", "long_description")}  # fmt: skip
    put_product = json.loads(json.dumps(put_product, default=float))
    return [
        ("GET", "/products", "/products", {"page": 1}, None),
        ("GET", "/products/{id}", f"/products/{product['id']}", {}, None),
        ("PUT", "/products/{id}", f"/products/{product['id']}", {}, put_product),
        ("GET", "/schedules", "/schedules", {"page": 1}, None),
        ("GET", "/schedules/{id}", f"/schedules/{sched['id']}", {}, None),
        ("PUT", "/schedules/{id}/line_items/{schedule_line_item_id}",
         f"/schedules/{sched['id']}/line_items/{line['id']}", {},
         {"name": line["name"], "cost_cents": 1250}),
        ("POST", "/schedules/{id}/add_line_item", f"/schedules/{sched['id']}/add_line_item", {},
         {"name": "DNS filtering", "product_id": product["id"], "quantity": 3,
          "cost_cents": 115, "retail_cents": 200}),
    ]  # fmt: skip


@pytest.mark.parametrize("psa", PSAS)
def test_every_covered_operation_answers_in_the_contracts_shape(psa):
    checker = Checker(load(psa))
    with served(psa) as (sim, client, base):
        table = probes(psa, sim, base)
        assert {(m, t) for m, t, *_ in table} >= set(fidelity.covered(psa))
        problems: dict[str, list[str]] = {}
        for method, template, url, query, body in table:
            content = None if body is None else json.dumps(body)
            resp = client.request(method, url, params=query, content=content)
            label = f"{method} {template}"
            if resp.status_code != 200:
                problems[label] = [f"HTTP {resp.status_code}: {resp.text[:200]}"]
                continue
            match = load(psa).match(method, httpx.URL(str(resp.request.url)).path)
            assert match is not None and match.template == template, label
            if match.op is None:
                continue  # a deviation: no schema to check against
            errs = checker.response_problems(match.op, 200, resp.text)
            if method == "GET":
                # Objects are open in the specs, so extra fields pass the schema; a field the
                # vendor's model does not have is a field a real tenant will not send.
                errs += [
                    f"undeclared field {f}"
                    for f in undeclared_fields(load(psa), match.op, resp.text)
                ]
            if psa == "autotask" and "ItemQueryResultModel" in json.dumps(
                match.op["responses"]["200"]
            ):
                errs += checker.item_problems(match.op, resp.text)
                assert resp.json()["item"] is not None, label
            if errs:
                problems[label] = errs[:5]
    assert problems == {}


def record_connector_suite(tmp_path: Path) -> Path:
    """The connector contract suite run again in a child pytest with the simulators recording
    every exchange: for a run that did not take the whole suite in one process (``-k``, or its
    tests spread over workers). Normally test_connector_contract.py records while it runs."""
    record = tmp_path / "exchanges.jsonl"
    env = {**os.environ, RECORD_ENV: str(record)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         str(ROOT / "tests" / "test_connector_contract.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    return record


def check_connector_exchanges(record: Path) -> None:
    """Every request the connectors sent is an operation of the PSA's contract (or a listed
    deliberate exception), and every 2xx reply they got validates against it."""
    checkers = {psa: Checker(load(psa)) for psa in PSAS}
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    problems: dict[str, set[str]] = defaultdict(set)
    for raw in record.read_text().splitlines():
        entry = json.loads(raw)
        psa, checker = entry["psa"], checkers[entry["psa"]]
        label, errs = checker.request_problems(entry)
        problems[f"{psa} {label} (request)"].update(errs)
        match = checker.contract.match(entry["method"], entry["path"])
        if match is None:
            continue
        seen[psa].add((entry["method"], match.template))
        if match.op is not None and 200 <= entry["status"] < 300:
            errs = checker.response_problems(match.op, entry["status"], entry["response"])
            problems[f"{psa} {label} (reply)"].update(errs)
    assert {k: sorted(v)[:5] for k, v in problems.items() if v} == {}
    for psa in PSAS:
        # Every PSA was exercised, and fidelity.USED names everything the connectors sent.
        assert len(seen[psa]) >= 6, psa
        assert seen[psa] <= set(fidelity.USED[psa]), seen[psa] - set(fidelity.USED[psa])
        # Every deliberate exception is still needed (a stale one would hide nothing, but lie).
        used_devs = {(d.method, d.path) for d in DEVIATIONS[psa]}
        assert used_devs <= seen[psa] | {("POST", "/V1.0/{entity}/query/next")}, psa


# ---- the simulators refuse what the contract refuses, in each PSA's own error shape ----------


def test_connectwise_refuses_a_wrong_type_or_enum_with_an_invalid_object_body():
    with served("connectwise") as (sim, client, _):
        item = sim.catalog.ids[0]
        agr = sim.agreements.ids[0]
        add = next(i for i, p in sim.addition_parent.items() if p == agr)
        resp = client.patch(
            f"/procurement/catalog/{item}",
            content=json.dumps([{"op": "replace", "path": "cost", "value": "12.50"}]),
        )
        assert resp.status_code == 400
        body = resp.json()
        assert body["code"] == "InvalidObject" and body["errors"][0]["field"] == "cost"
        resp = client.patch(
            f"/finance/agreements/{agr}/additions/{add}",
            content=json.dumps([{"op": "replace", "path": "billCustomer", "value": "Yes"}]),
        )
        assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "billCustomer"
        catalog = client.get("/procurement/catalog", params={"pageSize": 1000}).json()
        assert {c["priceAttribute"] for c in catalog} <= {
            "FixedFee", "NotToExceed", "OverrideRate", "TimeAndMaterials",
        }  # fmt: skip


def test_autotask_refuses_a_wrong_type_and_root_writes_of_contract_lines():
    with served("autotask") as (sim, client, _):
        svc = next(iter(sim.tables["Services"]))
        resp = client.patch("/Services", content=json.dumps({"id": svc, "unitCost": "cheap"}))
        assert resp.status_code == 500 and "unitCost" in resp.json()["errors"][0]
        ch = next(c for c in sim.tables["ContractCharges"].values() if not c["isBilled"])
        for path in ("/ContractCharges", "/ContractServices"):
            resp = client.patch(path, content=json.dumps({"id": ch["id"], "unitCost": 1}))
            assert resp.status_code == 405, path
        # No query paths below a contract (the API has none).
        kid = ch["contractID"]
        resp = client.post(f"/Contracts/{kid}/Services/query", content=json.dumps({"filter": ALL}))
        assert resp.status_code == 404
        cs = next(iter(sim.tables["ContractServices"].values()))
        bad = {"contractID": cs["contractID"], "serviceID": cs["serviceID"],
               "effectiveDate": "2025-01-01", "unitChange": 1.5}  # fmt: skip
        resp = client.post(f"/Contracts/{cs['contractID']}/ServiceAdjustments", json=bad)
        errors = resp.json()["errors"]
        assert resp.status_code == 500
        assert any("unitChange" in e for e in errors) and any("effectiveDate" in e for e in errors)


def test_syncro_refuses_a_wrong_type_in_each_endpoints_error_shape():
    with served("syncro") as (sim, client, _):
        sched = next(s for s in sim.schedules.values() if s["lines"])
        line = sched["lines"][0]
        resp = client.put(
            f"/schedules/{sched['id']}/line_items/{line['id']}",
            json={"name": line["name"], "cost_cents": 12.5},
        )
        assert resp.status_code == 422 and "cost_cents" in resp.json()["error"][0]
        product = next(iter(sim.products.values()))
        resp = client.put(
            f"/products/{product['id']}",
            json={"name": "x", "description": "y", "price_cost": "12.50"},
        )
        body = resp.json()
        assert resp.status_code == 422 and body["success"] is False
        assert "price_cost" in body["message"][0]


@pytest.mark.slow
def test_the_fidelity_report_names_every_operation_and_exception():
    out = subprocess.run(
        [sys.executable, "-m", "costrecon_daemon.sim.fidelity"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    for psa in PSAS:
        assert f"== {psa}:" in out
        for method, template in fidelity.USED[psa]:
            assert f"{method:6} {template}" in out
        for dev in DEVIATIONS[psa]:
            assert dev.why[:40] in out
    assert "DEVIATION (not in contract)" in out
    assert "covered by contract tests: 7 of 8 used operations" in out  # ConnectWise


def test_connectwise_leaves_out_unset_fields_the_spec_does_not_mark_nullable():
    schemas = load("connectwise").schemas
    with served("connectwise") as (sim, client, _):
        agr = sim.agreements.ids[0]
        replies = {
            "CatalogItem": client.get("/procurement/catalog").json(),
            "Agreement": client.get("/finance/agreements").json(),
            "Addition": client.get(f"/finance/agreements/{agr}/additions").json(),
        }
    for model, rows in replies.items():
        props = schemas[model]["properties"]
        sent_null = {k for r in rows for k, v in r.items() if v is None}
        assert {k for k in sent_null if not props.get(k, {}).get("nullable")} == set(), model
