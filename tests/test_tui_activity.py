"""The Activity view at MSP scale: a change set is one expandable row whose steps are read a page
at a time; the live tail is batched and bounded; filters by actor, action and item; CSV export;
undo from a change set row."""

from __future__ import annotations

import csv

from costrecon_tui.screens import activity
from costrecon_tui.screens.dialogs import TextScreen
from costrecon_tui.screens.preview import UndoScreen
from tests.fake_client import FakeClient, all_views_ready, make_app, screen_text, settle

# the fake's seeded log: 9 entries, of which approve/push.item/push.line.conflict/push.done
# belong to change set #11 and fold into one row
SEEDED_ROWS = 6


def _keys(view) -> list[str]:
    return [str(k.value) for k in view.table.rows]


def _row_text(view, key: str) -> str:
    return " | ".join(c.plain for c in view._cells(key))


async def _open_activity(pilot, app) -> activity.ActivityView:
    await settle(pilot, lambda: all_views_ready(app))
    await pilot.press("2")
    return app.activity_view


async def test_a_change_set_is_one_row_and_new_entries_tail_at_the_bottom():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await _open_activity(pilot, app)
        table = view.table
        assert table.row_count == SEEDED_ROWS
        assert _keys(view)[-1] == "cs11" and table.cursor_row == SEEDED_ROWS - 1
        row = _row_text(view, "cs11")
        assert "approve → push.done" in row and "#11 · 1 item · 2 lines" in row
        await client.set_manual_cost(1003, client._rows[1003]["catalog_cost"] + 1)
        await settle(pilot, lambda: table.row_count == SEEDED_ROWS + 1)
        assert table.cursor_row == SEEDED_ROWS  # following: the newest is under the cursor
        await pilot.press("f", "k")
        await client.revert_manual_cost(1003)
        await settle(pilot, lambda: table.row_count == SEEDED_ROWS + 2)
        assert table.cursor_row == SEEDED_ROWS - 1 and view._unseen == 1


async def test_a_120000_line_push_stays_one_row_and_is_drawn_in_a_few_batches():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await _open_activity(pilot, app)
        cs_id = client.add_big_change_set(120_000)
        await settle(pilot, lambda: f"cs{cs_id}" in view.table.rows)
        rows, flushes = view.table.row_count, view.flushes
        # what the daemon logs for such a push: a conflict entry per refused line, then one
        # push.item per item and the summary, thousands of entries within a second
        for n in range(3000):
            client._add_activity(
                "push.line.conflict",
                f"M365-BS line {200000 + n}",
                "12.5000",
                "13.1250",
                {"change_set_id": cs_id, "step_id": n},
                actor="costrecond",
            )
        for n in range(6705):
            client._add_activity(
                "push.item",
                f"ITEM-{n:05d}",
                "10.0000",
                "10.5000",
                {"change_set_id": cs_id, "done": 17},
                actor="costrecond",
            )
        client._add_activity(
            "push.done",
            f"change set {cs_id}",
            None,
            None,
            {"change_set_id": cs_id, "status": "partial", "done": 117_020, "conflict": 3000},
            actor="costrecond",
        )
        await settle(pilot, lambda: view.groups[cs_id].status == "partial", timeout=20)
        assert view.table.row_count == rows  # folded: not one row per entry
        assert view.flushes - flushes <= 8  # applied in batches, not 9,706 redraws
        row = _row_text(view, f"cs{cs_id}")
        assert "✓117,020" in row and "!3,000" in row and "approve → push.done" in row
        assert len(view.rows) <= activity.WINDOW


async def test_enter_expands_a_change_set_and_pages_its_steps_from_the_daemon():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await _open_activity(pilot, app)
        cs_id = client.add_big_change_set(120_000)
        for s in client._change_sets[cs_id]["steps"][500:530]:
            s["status"], s["message"] = "conflict", "line cost is 11.0000, expected 12.5000"
        await settle(pilot, lambda: _keys(view)[-1] == f"cs{cs_id}")
        assert view.table.cursor_row == view.table.row_count - 1
        await pilot.press("enter")
        steps = view.steps_table
        await settle(pilot, lambda: steps.row_count == activity.STEP_PAGE)
        assert client.calls_to("change_set_steps") == [
            {"change_set_id": cs_id, "status": None, "offset": 0, "limit": activity.STEP_PAGE}
        ]
        assert view.query_one("#activity-steps-box").display
        head = str(view.query_one("#activity-steps-head", activity.Static).render())
        total = 120_000 + len(client._rows)
        assert f"all steps 1–20 of {total:,}" in head
        assert "▾ approve" in _row_text(view, f"cs{cs_id}")

        await pilot.press("right_square_bracket", "right_square_bracket")
        await settle(pilot, lambda: view.expanded.offset == 40 and view.expanded.total)
        assert client.calls_to("change_set_steps")[-1]["offset"] == 40
        await pilot.press("left_square_bracket")
        await settle(pilot, lambda: client.calls_to("change_set_steps")[-1]["offset"] == 20)

        await pilot.press("s")  # only the conflicts, from their first
        await settle(pilot, lambda: view.expanded.total == 30)
        assert client.calls_to("change_set_steps")[-1] == {
            "change_set_id": cs_id,
            "status": "conflict",
            "offset": 0,
            "limit": activity.STEP_PAGE,
        }
        outcomes = [steps.get_row_at(i)[-1].plain for i in range(steps.row_count)]
        assert all(o.startswith("! conflict: line cost is 11.00") for o in outcomes)

        await pilot.press("left")
        await settle(pilot, lambda: view.expanded is None)
        assert not view.query_one("#activity-steps-box").display
        assert "▸ approve" in _row_text(view, f"cs{cs_id}")
        # the whole change set was never fetched with its steps
        assert len(view.rows) <= activity.WINDOW


async def test_keys_filter_by_the_rows_actor_action_and_item_through_the_daemon():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await _open_activity(pilot, app)
        manual = next(k for k, r in view.rows.items() if r.get("action") == "cost.manual.set")
        view.table.move_cursor(row=_keys(view).index(manual))
        identifier = view.rows[manual]["subject"]

        await pilot.press("i")
        await settle(pilot, lambda: client.calls_to("activity")[-1].get("subject") == identifier)
        await settle(pilot, lambda: view.loaded and view.table.row_count >= 1)
        assert all(identifier in (_row_text(view, k)) for k in _keys(view))
        await pilot.press("i")  # again: the item filter goes
        await settle(pilot, lambda: client.calls_to("activity")[-1].get("subject") is None)
        await settle(pilot, lambda: view.table.row_count == SEEDED_ROWS)

        view.table.move_cursor(row=0)  # daemon.start, by "system"
        await pilot.press("a")
        await settle(pilot, lambda: client.calls_to("activity")[-1].get("actor") == "system")
        await settle(pilot, lambda: view.table.row_count == 4)
        assert view.filter_text == "actor:system"
        await pilot.press("slash", "end", *" import", "enter")  # words filter locally
        await settle(pilot, lambda: view.table.row_count == 2)
        view.table.move_cursor(row=1)  # import.failed
        await pilot.press("t")
        await settle(
            pilot, lambda: client.calls_to("activity")[-1].get("action") == "import.failed"
        )
        await settle(pilot, lambda: view.table.row_count == 1)
        await pilot.press("escape")
        await settle(pilot, lambda: view.table.row_count == SEEDED_ROWS)


async def test_the_actor_column_fits_user_names_and_money_has_the_grids_decimals():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await _open_activity(pilot, app)
        client._add_activity(
            "cost.manual.set", "M365-BS", "12.5", "13.12500", {"item_id": 1001}, "costrecond"
        )
        await settle(pilot, lambda: view.table.row_count == SEEDED_ROWS + 1)
        await pilot.pause(0.1)
        cells = view.table.get_row_at(view.table.row_count - 1)
        assert cells[1].plain == "costrecond"
        assert view.table.columns["actor"].width >= len("costrecond")  # type: ignore[index]
        assert cells[4].plain == "12.50 → 13.125"


async def test_e_exports_what_is_shown_to_csv_and_a_bad_path_gets_one_sentence(tmp_path):
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await _open_activity(pilot, app)
        await pilot.press("e")
        box = view.query_one("#activity-export", activity.Input)
        assert box.has_focus and box.value.startswith("~/costrecon-activity-2026")
        box.value = str(tmp_path / "activity.csv")
        await pilot.press("enter")
        await settle(pilot, lambda: (tmp_path / "activity.csv").exists())
        with open(tmp_path / "activity.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == SEEDED_ROWS
        manual = next(r for r in rows if r["action"] == "cost.manual.set")
        assert (manual["before"], manual["after"], manual["actor"]) == ("6.00", "6.25", "mrivera")
        change_set = rows[-1]
        assert change_set["change_set"] == "11" and "push.done" in change_set["action"]
        assert not box.display and view.table.has_focus

        await pilot.press("e")
        box.value = str(tmp_path / "no-such-dir" / "activity.csv")
        await pilot.press("enter")
        await settle(pilot, lambda: any("Could not write" in m for m in app.notice_messages()))
        message = next(m for m in app.notice_messages() if "Could not write" in m)
        assert "no such file or directory; choose another file." in message
        assert "Traceback" not in message and app.unexpected_errors == []
        await pilot.press("escape")
        assert not box.display


async def test_older_entries_are_read_back_at_the_top_and_the_live_window_stays_bounded():
    client = FakeClient()
    for n in range(900):
        client._add_activity("cost.manual.set", f"ITEM-{n:04d}", "1.0000", "1.1000", {})
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await _open_activity(pilot, app)
        assert view.has_older and view.table.row_count == activity.PAGE
        oldest = min(int(r["id"]) for r in view.rows.values())
        await pilot.press("g")  # to the top; once more there reads the page before it
        await pilot.press("up")
        await settle(pilot, lambda: client.calls_to("activity")[-1].get("before_id") == oldest)
        await settle(pilot, lambda: min(int(view._anchor(r)) for r in view.rows.values()) == 1)
        assert len(view.rows) <= activity.WINDOW and not view.follow
        await pilot.press("f")  # back to the tail: read again
        await settle(pilot, lambda: view.follow and not view.has_newer and view.loaded)

        for n in range(1000):
            client._add_activity("cost.manual.set", f"LIVE-{n:04d}", "1.0000", "1.1000", {})
        await settle(pilot, lambda: "LIVE-0999" in _row_text(view, _keys(view)[-1]), timeout=20)
        assert len(view.rows) <= activity.WINDOW and view.has_older


async def test_detail_and_undo_work_from_a_change_set_row():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_activity(pilot, app)  # cursor on change set #11, the newest row
        await pilot.press("d")
        await settle(pilot, lambda: isinstance(app.screen, TextScreen))
        text = screen_text(app)
        assert "Change set #11" in text and "conflict" in text and "19.50" in text
        assert client.calls_to("change_set_steps")  # steps from the paged endpoint
        await pilot.press("escape", "u")
        await settle(pilot, lambda: isinstance(app.screen, UndoScreen))
        assert client.calls_to("undo") == [{"change_set_id": 11, "dry_run": True}]
        await pilot.press("y")
        await settle(pilot, lambda: len(client.calls_to("undo")) == 2)
        assert client.calls_to("undo")[-1] == {"change_set_id": 11, "dry_run": False}
        # the undo is a change set of its own: one more row, at the bottom
        await settle(pilot, lambda: _keys(app.activity_view)[-1] == "cs12")
        assert "undo of #11" in _row_text(app.activity_view, "cs12")


def test_snapshot_80x24_with_an_expanded_change_set(snap_compare):
    async def run_before(pilot):
        app = pilot.app
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("2", "enter")
        await settle(pilot, lambda: app.activity_view.steps_table.row_count == 3)

    app = make_app(FakeClient())
    app.RETRY_SECONDS = 3600
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_a_running_change_set_row_shows_its_progress_from_push_events():
    from costrecon_tui.client import ApprovalItem

    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await _open_activity(pilot, app)
        row = client._rows[1001]
        cs = await client.approve(
            [ApprovalItem(1001, row["catalog_cost"] + 1, row["catalog_cost"])]
        )
        total = len(client._change_sets[cs["id"]]["steps"])
        await settle(pilot, lambda: f"cs{cs['id']}" in view.table.rows)
        client.push_steps(cs["id"], 2)
        await settle(pilot, lambda: f"2/{total} sent" in _row_text(view, f"cs{cs['id']}"))
        assert "approve → pushing" in _row_text(view, f"cs{cs['id']}")
        client.push_steps(cs["id"])
        await settle(pilot, lambda: "approve → push.done" in _row_text(view, f"cs{cs['id']}"))
        assert _row_text(view, f"cs{cs['id']}").endswith(f"✓{total}")
        assert view.table.row_count == SEEDED_ROWS + 1
