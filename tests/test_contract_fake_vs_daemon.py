"""Contract: the TUI's fake daemon (tests/fake_client.py) and the real one speak the same JSON.

One scripted scenario — filter and sort, a manual cost, preview, approve, push, undo, revert —
runs against ``FakeClient`` and against the real ``Daemon`` (composition root, API on a Unix
socket, the ConnectWise simulator behind it) through the TUI's own ``DaemonClient``. The shapes
of the cost row, the preview and the change set (keys, and the type of each value) must match,
so a TUI test cannot pass against a field or a type the daemon does not send."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from costrecon_tui.client import ApprovalItem

from .fake_client import FakeClient

# Free-form objects whose keys depend on the row's state or the source's kind: only their type
# is compared (each kind of content is covered by the tests of the view that shows it).
OPEN_OBJECTS = {"state_detail", "vendor_source"}
# Objects keyed by data (a currency code): the type of their values is compared, as for a list.
MAPS = {"impact_by_currency"}


def shape(value: Any, key: str = "") -> Any:
    """Keys and value types; ``None`` for null (compatible with any type)."""
    if value is None:
        return None
    if isinstance(value, dict):
        if key in OPEN_OBJECTS:
            return "object"
        if key in MAPS:
            return [shape(v) for v in list(value.values())[:1]]
        return {k: shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0], key)] if value else []
    return type(value).__name__


def differences(fake: Any, real: Any, path: str = "$") -> list[str]:
    if fake is None or real is None or fake == [] or real == []:
        return []
    if isinstance(fake, dict) and isinstance(real, dict):
        out = [f"{path}.{k}: only in the fake" for k in sorted(fake.keys() - real.keys())]
        out += [f"{path}.{k}: only in the daemon" for k in sorted(real.keys() - fake.keys())]
        for k in sorted(fake.keys() & real.keys()):
            out += differences(fake[k], real[k], f"{path}.{k}")
        return out
    if isinstance(fake, list) and isinstance(real, list):
        return differences(fake[0], real[0], f"{path}[]")
    return [] if fake == real else [f"{path}: the fake sends {fake}, the daemon {real}"]


async def scenario(client: Any, raw_row: Any, settled: Any) -> dict[str, Any]:
    """The same steps for both; returns the JSON documents whose shapes are compared."""
    shapes: dict[str, Any] = {}
    everything = await client.cost_view()
    rows = await client.cost_rows(everything.ids)
    target = next(r for r in rows if r.lines > 0 and r.catalog_cost)
    # filter and sort: the row is found by its identifier, and the sort is by catalogue cost
    found = await client.cost_view(query=target.identifier.lower())
    assert target.id in found.ids and found.total == everything.total
    by_cost = await client.cost_view(sort="catalog_cost", descending=True)
    costs = [r.catalog_cost for r in await client.cost_rows(by_cost.ids)]
    present = [c for c in costs if c is not None]
    assert present == sorted(present, reverse=True)

    shapes["row"] = await raw_row(target.id)
    new_cost = (target.catalog_cost * Decimal("1.1")).quantize(Decimal("0.01"))
    edited = await client.set_manual_cost(target.id, new_cost, note="contract test")
    assert edited.vendor_cost == new_cost and edited.vendor_source.kind == "manual"
    shapes["row_manual"] = await raw_row(target.id)

    items = [ApprovalItem(target.id, new_cost, target.catalog_cost)]
    preview = await client.preview_change_set(items, "all")
    assert preview["items"] == 1 and preview["per_item"][0]["identifier"] == target.identifier
    shapes["preview"] = preview
    cs = await client.approve(items, "all")
    shapes["change_set"] = cs
    done = await settled(cs["id"])
    assert done["status"] == "done", done
    shapes["change_set_detail"] = await client.change_set(cs["id"])
    listed = await client.change_sets()
    assert any(c["id"] == cs["id"] for c in listed)
    shapes["change_set_listed"] = next(c for c in listed if c["id"] == cs["id"])
    pushed = (await client.cost_rows([target.id]))[0]
    assert pushed.catalog_cost == new_cost

    undo_preview = await client.undo(cs["id"], dry_run=True)
    shapes["undo_preview"] = undo_preview["preview"]
    undone = (await client.undo(cs["id"]))["change_set"]
    assert undone["kind"] == "undo" and undone["undo_of"] == cs["id"]
    shapes["undo_change_set"] = undone
    assert (await settled(undone["id"]))["status"] == "done"
    assert (await client.cost_rows([target.id]))[0].catalog_cost == target.catalog_cost

    reverted = await client.revert_manual_cost(target.id)
    assert reverted.vendor_source is None or reverted.vendor_source.kind != "manual"
    shapes["row_reverted"] = await raw_row(target.id)
    return shapes


async def run_fake() -> dict[str, Any]:
    client = FakeClient(auto_push=True, push_step_delay=0.001)

    async def raw_row(item_id: int) -> Any:
        return client._json_row(client._rows[item_id])

    async def settled(cs_id: int) -> dict[str, Any]:
        await asyncio.sleep(0.01)  # an approval's auto-push runs as a task
        if (await client.change_set(cs_id))["status"] in ("pending", "pushing"):
            client.push_steps(cs_id)  # the fake pushes an undo only when told to
        return await client.change_set(cs_id)

    return await scenario(client, raw_row, settled)


async def test_fake_client_and_daemon_send_the_same_json_shapes(daemon):
    async def raw_row(item_id: int) -> Any:
        return (await daemon.client._request("POST", "/costs/rows", json={"ids": [item_id]}))[
            "rows"
        ][0]

    real = await scenario(daemon.client, raw_row, daemon.wait_change_set)
    fake = await run_fake()
    problems = {
        name: diff for name in real if (diff := differences(shape(fake[name]), shape(real[name])))
    }
    assert problems == {}
