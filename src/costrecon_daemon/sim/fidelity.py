"""Fidelity report: which PSA operations the product uses, which the contract tests cover, and
every request sent outside the published contracts on purpose.

    python -m costrecon_daemon.sim.fidelity

``USED`` is the list of operations the connectors send; tests/test_psa_contract.py fails when the
connectors send one that is not in it (so the list cannot go stale), probes every one of them that
is in the contract against the simulator and validates the response against the contract's schema.
``ALSO_SERVED`` are operations the connectors do not use but public clients do; the simulators
serve them as the contract describes and the same test probes them.
"""

from __future__ import annotations

import sys
from typing import TextIO

from costrecon_daemon.sim.contract import DEVIATIONS, PSAS, load

USED: dict[str, list[tuple[str, str]]] = {
    "connectwise": [
        ("GET", "/login/companyinfo/{company}"),
        ("GET", "/procurement/catalog"),
        ("GET", "/procurement/catalog/{id}"),
        ("PATCH", "/procurement/catalog/{id}"),
        ("GET", "/finance/agreements"),
        ("GET", "/finance/agreements/{parentId}/additions"),
        ("GET", "/finance/agreements/{parentId}/additions/{id}"),
        ("PATCH", "/finance/agreements/{parentId}/additions/{id}"),
    ],
    "autotask": [
        ("GET", "/V1.0/ZoneInformation"),
        ("GET", "/V1.0/ThresholdInformation"),
        ("POST", "/V1.0/Services/query"),
        ("POST", "/V1.0/Services/query/count"),
        ("GET", "/V1.0/Services/{id}"),
        ("PATCH", "/V1.0/Services"),
        ("POST", "/V1.0/Products/query"),
        ("POST", "/V1.0/Products/query/count"),
        ("GET", "/V1.0/Products/{id}"),
        ("PATCH", "/V1.0/Products"),
        ("POST", "/V1.0/Contracts/query"),
        ("POST", "/V1.0/Contracts/query/count"),
        ("POST", "/V1.0/ContractServices/query"),
        ("POST", "/V1.0/ContractServices/query/count"),
        ("GET", "/V1.0/ContractServices/{id}"),
        ("POST", "/V1.0/ContractServiceUnits/query"),
        ("POST", "/V1.0/ContractServiceUnits/query/count"),
        ("POST", "/V1.0/ContractCharges/query"),
        ("POST", "/V1.0/ContractCharges/query/count"),
        ("GET", "/V1.0/ContractCharges/{id}"),
        ("PATCH", "/V1.0/Contracts/{parentId}/Charges"),
        ("POST", "/V1.0/ContractServiceAdjustments"),
        ("POST", "/V1.0/Contracts/{parentId}/ServiceAdjustments"),
        ("POST", "/V1.0/{entity}/query/next"),
        ("POST", "/V1.0/Companies/query"),
    ],
    "syncro": [
        ("GET", "/products"),
        ("GET", "/products/{id}"),
        ("PUT", "/products/{id}"),
        ("GET", "/schedules"),
        ("GET", "/schedules/{id}"),
        ("PUT", "/schedules/{id}/line_items/{schedule_line_item_id}"),
    ],
}

ALSO_SERVED: dict[str, list[tuple[str, str]]] = {
    "connectwise": [
        ("GET", "/procurement/catalog/count"),
        ("GET", "/finance/agreements/{id}"),
        ("GET", "/finance/agreements/count"),
        ("GET", "/finance/agreements/{parentId}/additions/count"),
    ],
    "autotask": [
        ("GET", "/V1.0/Services/query"),
        ("GET", "/V1.0/Contracts/{id}"),
        ("GET", "/V1.0/ContractServiceUnits/{id}"),
        ("GET", "/V1.0/Contracts/{parentId}/Services"),
        ("GET", "/V1.0/Contracts/{parentId}/Services/{id}"),
        ("PATCH", "/V1.0/Contracts/{parentId}/Services"),
        ("GET", "/V1.0/Contracts/{parentId}/Charges"),
        ("GET", "/V1.0/Contracts/{parentId}/Charges/{id}"),
        ("GET", "/V1.0/Contracts/{parentId}/ServiceUnits"),
        ("GET", "/V1.0/Contracts/{parentId}/ServiceUnits/{id}"),
        ("GET", "/V1.0/Services/entityInformation/fields"),
        ("GET", "/V1.0/ContractServices/entityInformation/fields"),
        ("GET", "/V1.0/ContractCharges/entityInformation/fields"),
        ("GET", "/V1.0/ContractServiceAdjustments/entityInformation/fields"),
    ],
    "syncro": [
        ("POST", "/schedules/{id}/add_line_item"),
    ],
}


def in_contract(psa: str, method: str, template: str) -> bool:
    return any(o["method"] == method and o["path"] == template for o in load(psa).operations)


def covered(psa: str) -> list[tuple[str, str]]:
    """Operations whose responses and requests the contract tests check."""
    return [(m, t) for m, t in USED[psa] + ALSO_SERVED[psa] if in_contract(psa, m, t)]


def report(out: TextIO = sys.stdout) -> None:
    for psa in PSAS:
        contract = load(psa)
        src = contract.data["sources"][0]
        out.write(
            f"== {psa}: contract from {src['repository']} {src['path']} @ {src['commit'][:8]}\n"
        )
        cov = set(covered(psa))
        out.write(f"operations used by the connector ({len(USED[psa])}):\n")
        for method, template in USED[psa]:
            mark = "covered" if (method, template) in cov else "DEVIATION (not in contract)"
            out.write(f"  {method:6} {template:55} {mark}\n")
        out.write(f"also served and covered ({len(ALSO_SERVED[psa])}):\n")
        for method, template in ALSO_SERVED[psa]:
            out.write(f"  {method:6} {template}\n")
        used_cov = sum(1 for op in USED[psa] if op in cov)
        out.write(f"covered by contract tests: {used_cov} of {len(USED[psa])} used operations\n")
        out.write(f"deliberate exceptions ({len(DEVIATIONS[psa])}):\n")
        for dev in DEVIATIONS[psa]:
            out.write(f"  {dev.method:6} {dev.path}\n         {dev.why}\n")
        out.write("\n")


if __name__ == "__main__":
    report()
