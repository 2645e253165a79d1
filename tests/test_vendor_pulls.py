"""Vendor-cost pulls through the real daemon (issue 16): a ConnectWise simulator for the
catalogue, the Pax8 / Ingram Micro simulators for costs, costrecond as a child process."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costrecon_daemon.sim.dataset import generate
from costrecon_daemon.sim.ingram import IngramSim
from costrecon_daemon.sim.knobs import Knobs
from costrecon_daemon.sim.pax8 import Pax8Sim
from costrecon_daemon.sim.serve import ServedApp
from tests.harness import DaemonProcess
from tests.psa_fixtures import psa_daemon, rows_by_identifier


@contextlib.contextmanager
def pax8_and_daemon(
    tmp: Path,
    *,
    sim_options: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    vendors: dict[str, Any] | None = None,
    process: bool = False,
) -> Iterator[tuple[Pax8Sim, ServedApp, DaemonProcess]]:
    ds = generate("demo")
    sim = Pax8Sim(ds, **(sim_options or {}))
    with ServedApp(sim.make_app) as served:
        sim.base_url = served.base_url + "/v1"
        pax8 = {
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
            "base_url": sim.base_url,
            "retry_backoff": 0.05,
            "timeout": 10.0,
            **(settings or {}),
        }
        extra = {"vendors": {"pull_every_hours": 24, **(vendors or {})}, "vendors.pax8": pax8}
        with psa_daemon(tmp, ds, "connectwise", extra=extra, process=process) as (_, d):
            yield sim, served, d


def pull(d: DaemonProcess, source: str = "pax8") -> dict[str, Any]:
    r = d.request("POST", "/v1/vendors/pull", json={"source": source, "wait": True}, timeout=120)
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    return result


def api_imports(d: DaemonProcess) -> list[dict[str, Any]]:
    return [i for i in d.get("/v1/imports")["imports"] if (i["profile"] or "").endswith("-api")]


def wait_first_pull(d: DaemonProcess, source: str = "pax8") -> dict[str, Any]:
    def done() -> Any:
        (st,) = [s for s in d.get("/v1/status")["vendors"]["sources"] if s["name"] == source]
        return st["state"] in ("ok", "failed") and st

    return d.wait_for(done, 120, f"the first {source} pull")


def test_first_pull_imports_pax8_costs_as_one_import_beside_the_catalogue(tmp_path: Path) -> None:
    with pax8_and_daemon(tmp_path) as (sim, served, d):
        state = wait_first_pull(d)  # a source that never pulled is pulled at start
        assert state["state"] == "ok", state
        (imp,) = api_imports(d)
        assert imp["status"] == "imported" and imp["vendor"] == "Pax8"
        assert imp["file_name"].startswith("Pax8 API pull, ") and " prices" in imp["file_name"]
        assert imp["rows_matched"] > 0
        rows = rows_by_identifier(d)
        from_pax8 = [r for r in rows.values() if r.get("vendor_cost") is not None]
        assert from_pax8, "no catalogue row got a vendor cost from the Pax8 pull"
        status = d.get("/v1/status")["vendors"]
        (src,) = status["sources"]
        assert src["last_pull"] and src["next_pull"] and src["fix"] is None
        # A priced product no catalogue item takes in that term waits in Mappings, with
        # suggestions, like an unmatched file row.
        waiting = [r for r in d.get("/v1/unmatched")["rows"] if r["vendor"] == "Pax8"]
        assert waiting and all(r["file"].startswith("Pax8 API pull, ") for r in waiting)
        # Pricing was asked for sold products only (mapped or subscribed), never all 463.
        priced = {p for (m, p) in served.call(lambda: list(sim.request_stats.by_path))}
        assert sum(1 for p in priced if p.endswith("/pricing")) < len(sim.products)


def test_costrecon_vendors_pull_wait_prints_the_import_and_a_second_pull_is_one_more_import(
    tmp_path: Path,
) -> None:
    with pax8_and_daemon(tmp_path) as (_, _s, d):
        wait_first_pull(d)
        out = d.tui_cli("vendors", "pull", "pax8", "--wait", timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("Pax8: Pax8 API pull, ") and "matched" in out.stdout
        assert [i["status"] for i in api_imports(d)] == ["imported", "imported"]
        bad = d.tui_cli("vendors", "pull", "ingram")
        assert bad.returncode != 0 and "[vendors.ingram]" in bad.stderr
        assert "Traceback" not in bad.stderr


def test_429_storm_and_token_expiry_mid_pull_still_complete(tmp_path: Path) -> None:
    opts = {"token_ttl": 0.5, "knobs": Knobs(latency=0.05, seed=3)}
    with pax8_and_daemon(tmp_path, sim_options=opts) as (sim, served, d):
        wait_first_pull(d)
        served.call(lambda: sim.fail_next(5, "429"))  # on the token call: 5 retries ride it
        before = served.call(lambda: sim.token_requests)
        result = pull(d)
        assert result["state"] == "ok", result
        assert served.call(lambda: sim.request_stats.faults["429"]) >= 5
        assert served.call(lambda: sim.token_requests) > before + 1  # expired and refreshed
        assert [i["status"] for i in api_imports(d)] == ["imported", "imported"]


def test_a_dead_server_fails_the_pull_with_nothing_imported_and_the_next_pull_completes(
    tmp_path: Path,
) -> None:
    with pax8_and_daemon(tmp_path, settings={"max_retries": 2}) as (sim, served, d):
        wait_first_pull(d)
        served.call(lambda: sim.fail_next(1000, "503"))
        result = pull(d)
        assert result["state"] == "failed" and "503" in result["error"]
        assert "\n" not in result["error"] and result["fix"] is None
        assert len(api_imports(d)) == 1  # the failed pull stored nothing
        served.call(sim.knobs.scripted.clear)
        assert pull(d)["state"] == "ok"
        assert len(api_imports(d)) == 2


def test_refused_credentials_show_the_exact_fix(tmp_path: Path) -> None:
    with pax8_and_daemon(tmp_path, settings={"client_secret": "wrong"}) as (_, _s, d):
        state = wait_first_pull(d)
        assert state["state"] == "failed"
        assert "Integrations > API credentials" in state["fix"]
        assert "wrong" not in state["error"] and "wrong" not in state["fix"]
        assert not api_imports(d)


def test_scheduled_pulls_repeat_on_their_interval(tmp_path: Path) -> None:
    every = 1.5 / 3600  # a second and a half
    with pax8_and_daemon(tmp_path, settings={"pull_every_hours": every}) as (_, _s, d):
        d.wait_for(lambda: len(api_imports(d)) >= 2, 60, "a second scheduled pull")


@pytest.mark.slow
def test_kill_9_mid_pull_leaves_nothing_half_imported_and_the_next_pull_completes(
    tmp_path: Path,
) -> None:
    opts = {"knobs": Knobs(latency=0.3, seed=5)}
    # kill -9 needs a real daemon process
    with pax8_and_daemon(tmp_path, sim_options=opts, settings={"concurrency": 1}, process=True) as (
        sim,
        _served,
        d,
    ):
        d.wait_for(
            lambda: d.get("/v1/status")["vendors"]["sources"][0]["state"] == "pulling",
            30,
            "the first pull to start",
        )
        # Well inside the pull: a few of its ~130 pricing calls (0.3 s each, one at a time) done.
        d.wait_for(lambda: sim.request_stats.count("GET", "/pricing") >= 3, 60, "pricing calls")
        assert d.proc is not None
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        sim.knobs.latency = 0.0  # the pull after the restart need not crawl
        d.start()
        # Nothing of the killed pull was stored; the restarted daemon pulls again and completes.
        state = wait_first_pull(d)
        assert state["state"] == "ok", state
        imports = api_imports(d)
        assert len(imports) == 1 and imports[0]["status"] == "imported"


def test_ingram_partial_answer_imports_the_rest_with_its_currency(tmp_path: Path) -> None:
    ds = generate("demo")
    sim = IngramSim(ds)
    with ServedApp(sim.make_app) as served:
        ingram = {
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
            "customer_number": sim.customer_number,
            "base_url": served.base_url,
            "retry_backoff": 0.05,
        }
        extra = {"vendors.ingram": ingram}
        with psa_daemon(tmp_path, ds, "connectwise", extra=extra) as (_, d):
            state = wait_first_pull(d, "ingram")
            assert state["state"] == "ok", state
            (imp,) = api_imports(d)
            assert imp["vendor"] == "Ingram Micro" and imp["rows_imported"] > 0
            rows = [r for r in rows_by_identifier(d).values() if r.get("vendor_cost")]
            assert rows and all(Decimal(str(r["vendor_cost"])) > 0 for r in rows)
            # A mapping to a part Ingram does not know: the 207 answer names it, the rest imports.
            item_id = rows[0]["id"]
            made = d.request(
                "POST",
                "/v1/mappings",
                json={"vendor": "Ingram Micro", "sku": "12351211", "item_id": item_id},
            )
            assert made.status_code in (200, 201), made.text
            result = pull(d, "ingram")
            assert result["state"] == "ok", result
            (nf,) = result["not_found"]
            assert nf["identifier"] == "part number 12351211"
            assert "Product not found" in nf["reason"]
            newest = api_imports(d)[0]
            assert newest["file_name"].endswith(", 1 not found") and newest["status"] == "imported"
            assert newest["rows_imported"] == imp["rows_imported"]


def test_rows_keep_their_currency_terms_and_provenance_and_a_manual_cost_still_wins(
    tmp_path: Path,
) -> None:
    with pax8_and_daemon(tmp_path, settings={"currency": "EUR"}) as (_, _s, d):
        assert wait_first_pull(d)["state"] == "ok"
        rows = rows_by_identifier(d)
        pulled = {
            k: r for k, r in rows.items() if (r["vendor_source"] or {}).get("vendor") == "Pax8"
        }
        assert pulled, "no catalogue row got a cost from the Pax8 pull"
        for r in pulled.values():
            src = r["vendor_source"]
            assert src["kind"] == "import" and src["file"].startswith("Pax8 API pull, ")
            assert src["sku"] and src["at"]
            # Pax8 priced in EUR, the catalogue is in USD: kept apart, never compared.
            assert "EUR" in r["state_detail"]["currency_mismatch"] and r["change"] is None
        # Term: the monthly and the annual catalogue item got different Pax8 costs.
        monthly, annual = rows["EXO-P1-M"], rows["EXO-P1-A"]
        assert monthly["vendor_source"]["vendor"] == annual["vendor_source"]["vendor"] == "Pax8"
        assert Decimal(monthly["vendor_cost"]) != Decimal(annual["vendor_cost"])
        # The pull's own provenance: product, both terms, quantity, every band, pulled at.
        (imp,) = api_imports(d)
        prov = d.get(f"/v1/vendors/pulls/{imp['id']}")["rows"]
        assert len(prov) == imp["rows_imported"]
        assert {p["currency"] for p in prov} == {"EUR"}
        assert {p["billing_term"] for p in prov} >= {"Monthly", "Annual"}
        assert all(p["bands"] and p["pulled_at"] and p["product_id"] for p in prov)
        assert any(len(p["bands"]) > 1 for p in prov), "multi-band prices keep every band"
        # The item's history (the `i` detail) carries the same terms and bands for its value.
        for key in ("EXO-P1-M", "EXO-P1-A"):
            points = d.get(f"/v1/costs/{rows[key]['id']}/history")["points"]
            pulled_points = [p for p in points if p["kind"] == "pull"]
            assert pulled_points, key
            for point in pulled_points:
                (sent,) = [p for p in prov if p["row"] == point["row"]]
                assert point["terms"] == {
                    "billing": sent["billing_term"],
                    "commitment": sent["commitment_term"],
                    "quantity": sent["quantity"],
                }
                assert point["bands"] == sent["bands"] and point["sku"] == sent["sku"]
        # A manual cost wins over the next pull.
        key, row = sorted(pulled.items())[0]
        put = d.request("PUT", f"/v1/costs/{row['id']}/manual", json={"cost": "1.2345"})
        assert put.status_code == 200, put.text
        assert pull(d)["state"] == "ok"
        after = rows_by_identifier(d)[key]
        assert after["vendor_cost"] == "1.2345" and after["vendor_source"]["kind"] == "manual"
