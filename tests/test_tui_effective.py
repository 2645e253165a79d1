"""The TUI side of effective dates (issue 18.4): a date typed in the approval preview schedules
the change set; the Activity view shows it scheduled and x cancels it (against the fake daemon)."""

from __future__ import annotations

import datetime as dt

from costrecon_tui.screens.dialogs import ConfirmScreen
from costrecon_tui.screens.preview import ApproveScreen, parse_effective
from tests.fake_client import FakeClient, all_views_ready, costs_ready, make_app, settle

TODAY = dt.date(2026, 12, 6)


def test_the_date_field_accepts_today_or_later_and_says_what_is_wrong():
    assert parse_effective("", TODAY) == (None, None)
    assert parse_effective("2026-12-06", TODAY) == (None, None)  # today: at once
    assert parse_effective(" 2027-01-01 ", TODAY) == ("2027-01-01", None)
    day, problem = parse_effective("2026-12-05", TODAY)
    assert day is None and "past" in problem
    for bad in ("2027-02-30", "tomorrow", "2027-1-1"):
        day, problem = parse_effective(bad, TODAY)
        assert day is None and "YYYY-MM-DD" in problem


def _later() -> str:
    return (dt.date.today() + dt.timedelta(days=20)).isoformat()


async def test_a_date_in_the_preview_schedules_and_x_in_activity_cancels():
    client = FakeClient()
    app = make_app(client)
    later = _later()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        item = next(
            i for i in grid.ids if grid.rows[i].change and grid.rows[i].vendor_cost is not None
        )
        grid.marked.add(item)
        await pilot.press("a")
        await settle(pilot, lambda: isinstance(app.screen, ApproveScreen))
        modal = app.screen
        await pilot.press("d", *"2020-01-01")
        # a past date is refused in the dialog: nothing is sent
        await pilot.press("enter", "y")
        assert not client.calls_to("approve") and isinstance(app.screen, ApproveScreen)
        field = modal.query_one("#effective")
        field.value = ""
        field.focus()
        await pilot.press(*later, "enter")
        await settle(pilot, lambda: modal.effective_date == later)
        assert "ConnectWise" in str(modal.query_one("#effective-note").render())
        await pilot.press("y")
        await settle(pilot, lambda: client.calls_to("approve"))
        (call,) = client.calls_to("approve")
        assert call["effective_date"] == later
        cs_id = max(client._change_sets)
        assert client._change_sets[cs_id]["status"] == "scheduled"

        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("2")
        view = app.activity_view
        key = f"cs{cs_id}"
        await settle(pilot, lambda: key in view.rows)
        text = " | ".join(c.plain for c in view._cells(key))
        assert "scheduled" in text and later in text
        keys = [str(k.value) for k in view.table.rows]
        view.table.move_cursor(row=keys.index(key))
        await pilot.press("x")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await settle(pilot, lambda: client.calls_to("cancel_change_set"))
        assert client.calls_to("cancel_change_set") == [{"change_set_id": cs_id}]
        await settle(pilot, lambda: "cancelled" in " | ".join(c.plain for c in view._cells(key)))
        # x on a set that is no longer scheduled only says why
        await pilot.press("x")
        assert not isinstance(app.screen, ConfirmScreen)
        assert len(client.calls_to("cancel_change_set")) == 1
