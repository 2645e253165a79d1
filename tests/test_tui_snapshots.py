"""SVG snapshots of each screen (fixed size, fake client, fixed clock). Regenerate with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and commit the SVGs on their own."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from costrecon_tui.client import ApprovalItem
from costrecon_tui.screens.dialogs import ConfirmScreen, HelpScreen, NotRunningScreen
from costrecon_tui.screens.mappings import SuggestionScreen
from costrecon_tui.screens.preview import ApproveScreen, UndoScreen
from tests.fake_client import FakeClient, all_views_ready, make_app, settle


def _app(**kwargs):
    app = make_app(FakeClient(**kwargs))
    app.RETRY_SECONDS = 3600  # the attempt counter must not move during the screenshot
    return app


async def _ready(pilot) -> None:
    await settle(pilot, lambda: all_views_ready(pilot.app))


def test_costs_80x24(snap_compare):
    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("j", "j", "j", "space", "space")

    assert snap_compare(_app(), terminal_size=(80, 24), run_before=run_before)


def test_costs_120x40(snap_compare):
    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("j", "j", "j", "space", "space", "space")

    assert snap_compare(_app(), terminal_size=(120, 40), run_before=run_before)


def test_costs_160x50_with_price_and_margin_columns(snap_compare):
    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("j", "j", "j", "space", "space", "space")

    assert snap_compare(_app(), terminal_size=(160, 50), run_before=run_before)


def test_costs_80x24_with_price_and_margin_columns(snap_compare):
    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("m", "j", "j", "space")

    assert snap_compare(_app(), terminal_size=(80, 24), run_before=run_before)


def test_item_detail_with_history_and_competing_sources_80x24(snap_compare):
    from costrecon_tui.screens.item_detail import ItemDetailScreen

    async def run_before(pilot):
        await _ready(pilot)
        grid = pilot.app.costs.grid
        grid.move_to(next(n for n, i in enumerate(grid.ids) if grid.rows[i].vendor_sources))
        await pilot.press("i")
        await settle(pilot, lambda: isinstance(pilot.app.screen, ItemDetailScreen))
        caption = pilot.app.screen.query_one("#history-caption")
        await settle(pilot, lambda: "loading" not in str(caption.render()))

    assert snap_compare(_app(), terminal_size=(80, 24), run_before=run_before)


def test_approval_preview(snap_compare):
    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("j", "j", "j", "space", "space", "space", "a")
        await settle(pilot, lambda: isinstance(pilot.app.screen, ApproveScreen))

    assert snap_compare(_app(), terminal_size=(100, 30), run_before=run_before)


def test_activity(snap_compare):
    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("2")

    assert snap_compare(_app(), terminal_size=(120, 30), run_before=run_before)


def test_files(snap_compare):
    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("3")

    assert snap_compare(_app(), terminal_size=(120, 24), run_before=run_before)


def test_mappings(snap_compare):
    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("4")

    assert snap_compare(_app(), terminal_size=(120, 30), run_before=run_before)


def test_sync(snap_compare):
    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("5")

    assert snap_compare(_app(), terminal_size=(100, 30), run_before=run_before)


def test_daemon_not_running(snap_compare):
    async def run_before(pilot):
        await settle(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, NotRunningScreen) and pilot.app.screen.attempts == 1
            ),
        )
        await pilot.pause(0.05)

    app = make_app(_FirstAttemptOnly(running=False), start_daemon=lambda: None)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


class _FirstAttemptOnly(FakeClient):
    """A daemon that is not running, whose second connection attempt never ends: the app
    retries every 2 s, and on a loaded machine "attempt 2" could otherwise reach the picture."""

    attempts = 0

    async def status(self):
        self.attempts += 1
        if self.attempts > 1:
            await asyncio.Event().wait()
        return await super().status()


# ---------------------------------------------------------------- every dialog fits 80x24


def _approval_items(client: FakeClient, n: int) -> list[ApprovalItem]:
    rows = [client._rows[i] for i in sorted(client._rows)][:n]
    return [
        ApprovalItem(r["id"], r["catalog_cost"] * Decimal("1.05"), r["catalog_cost"]) for r in rows
    ]


def _dialog_snapshot(snap_compare, n_rows: int, make_screen) -> bool:
    client = FakeClient(n_rows=max(n_rows, 40))
    app = _app_on(client)

    async def run_before(pilot):
        await _ready(pilot)
        screen = make_screen(client)
        pilot.app.push_screen(screen)
        await settle(pilot, lambda: pilot.app.screen is screen and screen.is_mounted)
        await pilot.pause(0.1)

    return snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def _app_on(client: FakeClient):
    app = make_app(client)
    app.RETRY_SECONDS = 3600
    return app


def _undo_preview(client: FakeClient, n: int) -> dict:
    preview = client._preview(_approval_items(client, n), "all")
    for it in preview["per_item"]:
        it["before"], it["after"] = it["after"], it["before"]
    return {**preview, "estimated_seconds": None}


def _suggestions(client: FakeClient, n: int) -> dict:
    rows = [client._rows[i] for i in sorted(client._rows)]
    return {
        "vendor": "Pax8",
        "sku": "MST-NCE-BP-ANN",
        "description": "Microsoft 365 Business Premium NCE annual",
        "cost": "21.4500",
        "currency": "USD",
        "file": "pax8-2026-02.csv",
        "row": 14,
        "suggestions": [
            {
                "item_id": rows[i % len(rows)]["id"],
                "identifier": rows[i % len(rows)]["identifier"],
                "name": rows[i % len(rows)]["name"],
                "score": 90 - i % 40,
            }
            for i in range(n)
        ],
    }


@pytest.mark.parametrize("n", [1, 32, 300])
def test_approve_dialog_80x24(snap_compare, n):
    def make(client):
        items = _approval_items(client, n)
        return ApproveScreen(items, client._preview(items, "all"))

    assert _dialog_snapshot(snap_compare, n, make)


@pytest.mark.parametrize("n", [1, 32, 300])
def test_undo_dialog_80x24(snap_compare, n):
    assert _dialog_snapshot(snap_compare, n, lambda c: UndoScreen(12, _undo_preview(c, n)))


@pytest.mark.parametrize("n", [1, 32, 300])
def test_mapping_dialog_80x24(snap_compare, n):
    assert _dialog_snapshot(snap_compare, 40, lambda c: SuggestionScreen(_suggestions(c, n)))


@pytest.mark.parametrize("n", [1, 32, 300])
def test_help_dialog_80x24(snap_compare, n):
    rows = [(f"k{i}", f"Action number {i}", f"view.action{i}") for i in range(n)]
    assert _dialog_snapshot(snap_compare, 40, lambda c: HelpScreen("Costs", rows))


def test_edit_second_look_dialog_80x24(snap_compare):
    async def run_before(pilot):
        await _ready(pilot)
        row = pilot.app.costs.grid.cursor_row
        wild = (row.catalog_cost * Decimal("0.005")).quantize(Decimal("0.01"))
        await pilot.press("e", "home", "ctrl+k", *str(wild), "enter")
        await settle(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.pause(0.1)

    assert snap_compare(_app(), terminal_size=(80, 24), run_before=run_before)
