"""Activity, Files, Mappings, Sync, help and the command palette."""

from __future__ import annotations

from costrecon_tui.screens.dialogs import HelpScreen, TextScreen
from costrecon_tui.screens.mappings import SuggestionScreen
from costrecon_tui.screens.preview import UndoScreen
from tests.fake_client import FakeClient, all_views_ready, make_app, screen_text, settle


async def test_number_keys_and_tab_switch_views():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        for key, view in [
            ("2", "activity"),
            ("3", "files"),
            ("4", "mappings"),
            ("5", "sync"),
            ("1", "costs"),
        ]:
            await pilot.press(key)
            assert app.current_view == view and app.sub_title.lower() == view
        await pilot.press("tab")
        assert app.current_view == "activity"
        await pilot.press("shift+tab", "shift+tab")
        assert app.current_view == "sync"


async def test_activity_tails_live_and_follow_toggles():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("2")
        view = app.activity_view
        table = view.table
        n = table.row_count
        assert table.cursor_row == n - 1  # following: newest at the bottom
        await client.set_manual_cost(
            client._rows[1003]["id"], client._rows[1003]["catalog_cost"] + 1
        )
        await settle(pilot, lambda: table.row_count == n + 1)
        assert table.cursor_row == n
        await pilot.press("f", "k")
        await client.revert_manual_cost(1003)
        await settle(pilot, lambda: table.row_count == n + 2)
        assert table.cursor_row == n - 1 and view._unseen == 1


async def test_activity_filter_by_actor_goes_to_the_daemon_and_words_filter_locally():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("2", "slash", *"actor:system", "enter")
        await settle(pilot, lambda: client.calls_to("activity")[-1]["actor"] == "system")
        view = app.activity_view
        await settle(pilot, lambda: view.table.row_count == 4)
        await pilot.press("slash", "end", *" import", "enter")
        await settle(pilot, lambda: view.table.row_count == 2)
        await pilot.press("escape")
        await settle(pilot, lambda: view.table.row_count == 9)


async def test_activity_detail_shows_per_line_outcomes_and_u_undoes_after_confirmation():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("2")  # cursor on the newest entry: push.done of change set #11
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, TextScreen))
        text = screen_text(app)
        assert "Change set #11" in text and "conflict" in text
        await pilot.press("escape", "u")
        await settle(pilot, lambda: isinstance(app.screen, UndoScreen))
        assert client.calls_to("undo") == [{"change_set_id": 11, "dry_run": True}]
        await pilot.press("y")
        await settle(pilot, lambda: len(client.calls_to("undo")) == 2)
        assert client.calls_to("undo")[-1] == {"change_set_id": 11, "dry_run": False}


async def test_files_enter_shows_the_error_report():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("3")
        table = app.files.table
        failed_row = next(
            n
            for n, key in enumerate(table.rows)
            if app.files.imports[int(key.value)]["status"] == "failed"
        )
        table.move_cursor(row=failed_row)
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, TextScreen))
        text = screen_text(app)
        assert "12,5O" in text and "3 problems" in text


async def test_mappings_pick_a_suggestion_by_number_and_delete_a_mapping():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("4", "enter")
        await settle(pilot, lambda: isinstance(app.screen, SuggestionScreen))
        row = client._unmatched[0]
        await pilot.press("2")
        await settle(pilot, lambda: client.calls_to("create_mapping"))
        assert client.calls_to("create_mapping") == [
            {
                "vendor": row["vendor"],
                "sku": row["sku"],
                "term": row["term"],
                "item_id": row["suggestions"][1]["item_id"],
            }
        ]
        await settle(pilot, lambda: app.mappings_view.mappings_table.row_count == 4)
        await pilot.press("w", "d", "y")
        await settle(pilot, lambda: client.calls_to("delete_mapping"))
        assert client.calls_to("delete_mapping") == [{"mapping_id": 70}]


async def test_sync_view_shows_permission_messages_verbatim_and_s_syncs():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("5")
        text = str(app.sync_view.query_one("#sync-body").render())
        assert (
            client.permission_problems[0]["message"] in text.replace("\n", " ")
            or "Edit Level to All" in text
        )
        await pilot.press("s")
        await settle(pilot, lambda: client.calls_to("sync_now"))


async def test_help_lists_every_binding_of_the_current_view_with_ids():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("question_mark")
        await settle(pilot, lambda: isinstance(app.screen, HelpScreen))
        ids = {bid for _k, _d, bid in app.screen.bindings_list}
        assert {
            "costs.approve",
            "costs.mark",
            "costs.range_mark",
            "costs.mark_all",
            "costs.filter",
            "costs.edit",
            "costs.revert",
            "view.next",
            "app.quit",
            "app.help",
        } <= ids
        await pilot.press("escape", "2", "question_mark")
        await settle(pilot, lambda: isinstance(app.screen, HelpScreen))
        ids = {bid for _k, _d, bid in app.screen.bindings_list}
        assert {
            "activity.follow",
            "activity.undo",
            "activity.filter",
        } <= ids and "costs.approve" not in ids


async def test_colon_opens_the_command_palette():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("colon")
        await settle(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette")
