"""What shares the screen with the table: notices that never cover a row, columns that give short
IDs' room to the name, and a Sync view that follows the daemon while it is shown."""

from __future__ import annotations

from costrecon_tui.widgets.cost_grid import layout
from costrecon_tui.widgets.notices import Notices
from tests.fake_client import FakeClient, all_views_ready, make_app, settle


async def test_notices_collapse_repeats_show_at_most_three_and_cover_no_row():
    app = make_app(FakeClient())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        for _ in range(4):
            app.notify("Sync started.", timeout=30)
        for n in range(5):
            app.notify(f"Change set #{n} done.", timeout=30)
        await pilot.pause(0.05)
        notices = app.main.query_one(Notices)
        shown = notices.shown()
        assert len(shown) == 3
        assert [n.message for n in shown] == [f"Change set #{n} done." for n in (2, 3, 4)]
        assert next(n for n in notices.notices if n.message == "Sync started.").count == 4
        grid = app.costs.grid
        # the notice lines sit below the table, which shrinks instead of being covered
        assert notices.region.y >= grid.region.y + grid.region.height
        assert not notices.region.overlaps(grid.region)


def test_short_ids_give_their_room_to_the_name_and_both_stay_visible():
    def widths(cols):
        return {c.key: c.width for c in cols}

    wide_ids = widths(layout(80, longest_id=14))
    syncro = widths(layout(80, longest_id=5))
    assert syncro["identifier"] >= 6 and syncro["name"] > wide_ids["name"] + 5
    assert wide_ids["identifier"] >= 13 and wide_ids["name"] >= 6


async def test_the_sync_view_refetches_status_on_daemon_events_while_shown():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("5")
        before = len(client.calls_to("status"))
        app._sync_view_fetched = 0.0
        client.emit("rows", {"ids": []})  # an event that by itself needs no status
        await settle(pilot, lambda: len(client.calls_to("status")) > before)
