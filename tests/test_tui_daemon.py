"""Daemon lifecycle as the technician sees it: not running at start, restarts while open."""

from __future__ import annotations

from decimal import Decimal

from costrecon_tui.screens.dialogs import ErrorScreen, NotRunningScreen
from tests.fake_client import FakeClient, all_views_ready, costs_ready, make_app, settle


async def test_not_running_screen_says_how_to_start_and_recovers_by_itself():
    client = FakeClient(running=False)
    app = make_app(client)
    app.RETRY_SECONDS = 0.1
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, NotRunningScreen))
        text = str(app.screen.query_one("#nr-body").render())
        assert "costrecond start" in text and "systemctl --user start costrecond" in text
        assert "Press s" not in text  # no start_daemon given: no key offered
        await settle(pilot, lambda: app._attempts >= 3)  # keeps retrying
        client.running = True
        await settle(
            pilot, lambda: not isinstance(app.screen, NotRunningScreen) and all_views_ready(app)
        )
        assert app.connected is True


async def test_start_key_calls_start_daemon_then_connects():
    client = FakeClient(running=False)
    started = []

    def start() -> None:
        started.append(True)
        client.running = True

    app = make_app(client, start_daemon=start)
    app.RETRY_SECONDS = 30  # only the key can bring it back in time
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, NotRunningScreen))
        assert "Press s" in str(app.screen.query_one("#nr-body").render())
        await pilot.press("s")
        await settle(pilot, lambda: costs_ready(app))
        assert started == [True]


async def test_daemon_restart_reconnects_resumes_events_from_last_id_and_refetches():
    client = FakeClient()
    app = make_app(client)
    app.RETRY_SECONDS = 0.1
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        grid = app.costs.grid
        first = grid.ids[0]
        await client.set_manual_cost(first, Decimal("6.5"))  # an event while connected
        await settle(pilot, lambda: grid.rows[first].vendor_cost == Decimal("6.5"))
        seen = app.last_event_id
        assert seen and seen > 0

        client.running = False  # daemon stops
        await settle(pilot, lambda: isinstance(app.screen, NotRunningScreen))
        # while it is away, a price file changes a cost (the events are kept by the daemon)
        client._rows[first]["vendor_cost"] = Decimal("6.75")
        client.emit("rows", {"ids": [first]})
        client.running = True

        await settle(
            pilot, lambda: app.connected is True and not isinstance(app.screen, NotRunningScreen)
        )
        await settle(pilot, lambda: grid.rows[first].vendor_cost == Decimal("6.75"))
        polls = [c["since"] for c in client.calls_to("events")]
        assert seen in polls[polls.index(seen) :]  # resumed from the last id, not from 0 or "now"
        assert app.last_event_id > seen
        assert len(grid.ids) == 40


async def test_an_unexpected_error_shows_the_error_panel_and_the_app_keeps_running():
    client = FakeClient()
    app = make_app(client)
    app.log_path = "/tmp/costrecon-tui-test.log"
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))

        async def boom(*a, **k):
            raise RuntimeError("disk on fire")

        client.cost_rows = boom  # type: ignore[method-assign]
        app.costs.grid.invalidate_all()
        await settle(pilot, lambda: isinstance(app.screen, ErrorScreen))
        assert "disk on fire" in app.screen.message
        assert app.screen.log_path == "/tmp/costrecon-tui-test.log"
        await pilot.press("escape")
        await settle(pilot, lambda: app.screen is app.main)
        assert app.is_running
