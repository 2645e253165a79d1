"""SVG snapshots of each screen (fixed size, fake client, fixed clock). Regenerate with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and commit the SVGs on their own."""

from __future__ import annotations

from costrecon_tui.screens.dialogs import NotRunningScreen
from costrecon_tui.screens.preview import ApproveScreen
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

    app = make_app(FakeClient(running=False), start_daemon=lambda: None)  # retries every 2 s
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
