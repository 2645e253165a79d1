"""Activity, Files, Mappings, Sync, help and the command palette."""

from __future__ import annotations

from costrecon_tui.screens.dialogs import HelpScreen, TextScreen
from costrecon_tui.screens.mappings import SuggestionScreen
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
        await pilot.press("4", "u")  # u: the unmatched vendor rows
        await settle(pilot, lambda: app.mappings_view.unmatched_table.row_count > 0)
        await pilot.press("enter")
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
