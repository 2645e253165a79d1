"""The cost table: marks, filter, esc order, sorting, in-place edit, approval, live push state."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from textual import events

from costrecon_tui.screens.costs import parse_cost
from costrecon_tui.screens.dialogs import ConfirmScreen
from costrecon_tui.screens.preview import ApproveScreen
from costrecon_tui.widgets import display
from tests.fake_client import FakeClient, costs_ready, make_app, screen_text, settle


async def test_space_marks_and_moves_down_and_v_marks_the_range_from_the_anchor():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        ids = list(grid.ids)
        await pilot.press("j", "space")  # marks row 1, cursor to row 2
        assert grid.marked == {ids[1]} and grid.cursor == 2
        await pilot.press("j", "j", "j", "V")  # range from anchor (row 1) to cursor (row 5)
        assert grid.marked == set(ids[1:6])
        await pilot.press("k", "k", "space")  # unmark row 3
        assert grid.marked == set(ids[1:6]) - {ids[3]}


async def test_v_without_an_anchor_starts_a_range():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        await pilot.press("G")
        assert grid.cursor == len(grid.ids) - 1
        await pilot.press("V", "k", "k", "V")
        assert grid.marked == set(grid.ids[-3:])


async def test_filter_as_you_type_asks_the_daemon_and_ctrl_a_marks_only_visible_rows():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        await pilot.press("slash", *"m365", "enter")
        await settle(pilot, lambda: app.costs.query_text == "m365" and len(grid.ids) < 40)
        assert client.calls_to("cost_view")[-1]["query"] == "m365"
        assert all(
            "m365" in grid.rows[i].identifier.lower() + grid.rows[i].name.lower() for i in grid.ids
        )
        visible = set(grid.ids)
        await pilot.press("ctrl+a")
        assert grid.marked == visible
        # esc clears the filter first (marks stay), then the marks
        await pilot.press("escape")
        await settle(pilot, lambda: len(grid.ids) == 40)
        assert app.costs.query_text == "" and grid.marked == visible
        await pilot.press("escape")
        assert grid.marked == set()


async def test_changed_only_and_sort_keys_reach_the_daemon():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        await pilot.press("c")
        await settle(pilot, lambda: client.calls_to("cost_view")[-1]["changed_only"])
        grid = app.costs.grid
        await settle(pilot, lambda: costs_ready(app))
        assert all(grid.rows[i].change for i in grid.ids)
        await pilot.press("s", "S")
        await settle(
            pilot,
            lambda: (
                client.calls_to("cost_view")[-1]
                == {**client.calls_to("cost_view")[-1], "sort": "name", "descending": True}
            ),
        )


def test_cost_validation_rules():
    assert parse_cost("12.3456") == (Decimal("12.3456"), "")
    assert parse_cost("1,234.50")[0] == Decimal("1234.50")
    assert parse_cost("0")[0] == Decimal("0")
    assert parse_cost(".5")[0] == Decimal("0.5")
    assert "4 decimals" in parse_cost("1.23456")[1]
    assert "negative" in parse_cost("-1")[1]
    assert "not a number" in parse_cost("12,5O")[1]
    assert "not a number" in parse_cost("1.2.3")[1]
    assert parse_cost("")[0] is None
    # a decimal comma is a decimal point when nothing else can be meant
    assert parse_cost("12,50") == (Decimal("12.50"), "")
    assert parse_cost("1.234,50")[0] == Decimal("1234.50")
    assert parse_cost("1,250,000")[0] == Decimal("1250000")
    value, hint = parse_cost("1,250")
    assert value is None and "ambiguous" in hint and "1250" in hint and "1.250" in hint


async def test_edit_refuses_invalid_input_and_sends_nothing_then_saves_the_decimal():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        costs = app.costs
        row = costs.grid.cursor_row
        await pilot.press("e")
        assert costs.editor.has_focus
        await pilot.press("home", "ctrl+k", *"12.34567", "enter")
        assert costs.editor.has_focus and "at most 4 decimals" in costs._edit_reason
        await pilot.press("home", "ctrl+k", *"-3", "enter")
        assert "negative" in costs._edit_reason
        assert client.calls_to("set_manual_cost") == []
        close = (row.catalog_cost * Decimal("1.1")).quantize(Decimal("0.0001"))
        await pilot.press("home", "ctrl+k", *str(close), "enter")
        await settle(pilot, lambda: client.calls_to("set_manual_cost"))
        assert client.calls_to("set_manual_cost") == [
            {"item_id": row.id, "cost": close, "note": None}
        ]
        await settle(pilot, lambda: costs.grid.rows[row.id].vendor_cost == close)
        assert costs.grid.rows[row.id].vendor_source.kind == "manual"
        assert costs.grid.has_focus


async def test_a_cost_typed_right_after_e_goes_into_the_editor_not_to_the_table():
    """Over SSH keys arrive together: "e12" in one read. The digits are the cost, not view keys
    ("2" would open Activity)."""
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        costs = app.costs
        for key in "e12":  # queued at once, as from one terminal read
            app.post_message(events.Key(key, key))
        # the editor opens with the old cost selected: the digits replace it
        await settle(pilot, lambda: costs.editor.value == "12")
        assert costs.editor.has_focus and app.current_view == "costs"
        await pilot.press("escape")
        for key in "/m365":
            app.post_message(events.Key(key if key != "/" else "slash", key))
        await settle(pilot, lambda: costs.filter_input.value == "m365")
        assert costs.filter_input.has_focus and app.current_view == "costs"


async def test_escape_cancels_an_edit_without_sending():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        await pilot.press("enter", "9", "escape")
        assert app.costs._editing is None and app.costs.grid.has_focus
        assert client.calls_to("set_manual_cost") == []


async def test_x_reverts_a_manual_cost_only():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        manual = next(
            n
            for n, i in enumerate(grid.ids)
            if grid.rows[i].vendor_source and grid.rows[i].vendor_source.kind == "manual"
        )
        imported = next(
            n
            for n, i in enumerate(grid.ids)
            if grid.rows[i].vendor_source and grid.rows[i].vendor_source.kind == "import"
        )
        grid.move_to(imported)
        await pilot.press("x")
        assert client.calls_to("revert_manual_cost") == []
        grid.move_to(manual)
        await pilot.press("x")
        await settle(pilot, lambda: client.calls_to("revert_manual_cost"))
        assert client.calls_to("revert_manual_cost") == [{"item_id": grid.ids[manual]}]


def _eligible(grid, n):
    return [i for i in grid.ids if grid.rows[i].change and grid.rows[i].vendor_cost is not None][:n]


async def test_approve_sends_exactly_the_marked_rows_with_shown_costs_and_chosen_policy():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        chosen = _eligible(grid, 3)
        no_vendor = next(i for i in grid.ids if grid.rows[i].vendor_cost is None)
        grid.marked.update(chosen + [no_vendor])
        await pilot.press("a")
        await settle(pilot, lambda: isinstance(app.screen, ApproveScreen))
        modal = app.screen
        assert "1 no vendor cost" in modal.skipped_note
        assert modal.preview["items"] == 3
        await pilot.press("p")
        await settle(pilot, lambda: modal.preview["policy"] == "matching")
        await pilot.press("y")
        await settle(pilot, lambda: client.calls_to("approve"))
        (call,) = client.calls_to("approve")
        assert call["policy"] == "matching"
        assert [i.item_id for i in call["items"]] == [i for i in grid.ids if i in set(chosen)]
        for item in call["items"]:
            row = grid.rows[item.item_id]
            assert item.cost == row.vendor_cost and item.seen_catalog_cost == row.catalog_cost
        await settle(pilot, lambda: not (grid.marked & set(chosen)))
        assert grid.marked == {no_vendor}


async def test_approve_uses_the_cursor_row_when_nothing_is_marked_and_escape_sends_nothing():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        target = _eligible(grid, 1)[0]
        grid.move_to(grid.index_of(target))
        await pilot.press("a")
        await settle(pilot, lambda: isinstance(app.screen, ApproveScreen))
        assert [i.item_id for i in client.calls_to("preview_change_set")[-1]["items"]] == [target]
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, ApproveScreen))
        assert client.calls_to("approve") == []


async def test_rows_without_change_cannot_be_approved():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        same = next(n for n, i in enumerate(grid.ids) if grid.rows[i].change == 0)
        grid.move_to(same)
        await pilot.press("a")
        await settle(pilot, lambda: app.notice_messages())
        assert "Nothing to approve" in app.notice_messages()[-1]
        assert client.calls_to("preview_change_set") == []


async def test_a_stale_catalogue_cost_is_reported_and_not_approved():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        target = _eligible(grid, 1)[0]
        client._rows[target]["catalog_cost"] += Decimal("1")  # someone changed it in the PSA
        grid.marked.add(target)
        await pilot.press("a")
        await settle(pilot, lambda: app.notice_messages())
        assert "changed" in app.notice_messages()[-1]
        assert not isinstance(app.screen, ApproveScreen)
        assert client.calls_to("approve") == []


async def test_push_progress_and_conflict_reason_show_live_on_the_row():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        target = _eligible(grid, 1)[0]
        grid.move_to(grid.index_of(target))
        await pilot.press("a")
        await settle(pilot, lambda: isinstance(app.screen, ApproveScreen))
        await pilot.press("y")
        await settle(pilot, lambda: client.calls_to("approve"))
        cs_id = max(client._change_sets)
        await settle(pilot, lambda: grid.rows[target].state == "pending")
        client.push_steps(cs_id, 1)
        await settle(pilot, lambda: grid.rows[target].state == "pushing")
        assert grid.rows[target].state_detail["done"] == 1
        await settle(pilot, lambda: cs_id in app.pushes)
        client.push_steps(cs_id, conflict_item_ids=[target])
        await settle(pilot, lambda: grid.rows[target].state == "conflict")
        assert cs_id not in app.pushes
        await pilot.press("i")
        body = str(app.screen.query_one("#body").render())
        assert "left unchanged" in body


async def test_remapped_key_from_keymap_triggers_the_action():
    client = FakeClient()
    app = make_app(client, keymap={"costs.approve": "A"})
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        grid.move_to(grid.index_of(_eligible(grid, 1)[0]))
        await pilot.press("a")
        await pilot.pause(0.1)
        assert client.calls_to("preview_change_set") == []
        await pilot.press("A")
        await settle(pilot, lambda: isinstance(app.screen, ApproveScreen))


async def test_local_filter_after_prefetch_matches_the_daemons_answer(monkeypatch):
    from costrecon_tui.widgets import cost_grid

    monkeypatch.setattr(cost_grid, "PREFETCH_DELAY", 0.0)
    client = FakeClient(300)
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app) and app.costs.grid.prefetched)
        grid = app.costs.grid
        base = app.costs._base[1]
        for query in ["m365", "M365-B", "singularity core", "-1", "zzz"]:
            expected = (await client.cost_view(query=query)).ids
            assert grid.local_filter(base, query) == expected, query
        duo = (await client.cost_view(query="duo")).ids
        # The daemon's answer to a search is held until the test has looked: "at once" then does
        # not depend on how fast this machine happens to be.
        answer = asyncio.Event()
        daemon_view = client.cost_view

        async def held_view(**kwargs):
            if kwargs.get("query"):
                await answer.wait()
            return await daemon_view(**kwargs)

        client.cost_view = held_view
        await pilot.press("slash", *"duo")
        assert app.costs.local_query == "duo"  # shown at once, before the daemon answered
        assert grid.ids == duo
        answer.set()
        await settle(pilot, lambda: app.costs.local_query is None)  # the daemon's answer is in
        assert grid.ids == duo


async def test_a_wild_manual_cost_is_asked_about_again_naming_old_new_and_percentage():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        costs = app.costs
        row = costs.grid.cursor_row
        wild = (row.catalog_cost * Decimal("0.005")).quantize(Decimal("0.01"))
        await pilot.press("e", "home", "ctrl+k", *str(wild), "enter")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        text = screen_text(app)
        assert display.amount(row.catalog_cost) in text and display.amount(wild) in text
        assert "99.5 % below" in text
        assert str(app.screen.query_one("#yes").label) == "Set cost (y)"
        await pilot.press("n")
        await settle(pilot, lambda: app.screen is app.main)
        assert client.calls_to("set_manual_cost") == []
        await pilot.press("e", "home", "ctrl+k", "0", "enter")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "zero" in screen_text(app)
        await pilot.press("y")
        await settle(pilot, lambda: client.calls_to("set_manual_cost"))
        assert client.calls_to("set_manual_cost")[0]["cost"] == Decimal("0")


async def test_a_decimal_comma_saves_as_a_decimal_point_and_an_ambiguous_one_is_refused():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        costs = app.costs
        row = costs.grid.cursor_row
        near = (row.catalog_cost * Decimal("1.1")).quantize(Decimal("0.01"))
        typed = str(near).replace(".", ",")
        await pilot.press("e", "home", "ctrl+k", *"1,250", "enter")
        assert "ambiguous" in costs._edit_reason and client.calls_to("set_manual_cost") == []
        await pilot.press("home", "ctrl+k", *typed, "enter")
        await settle(pilot, lambda: client.calls_to("set_manual_cost"))
        assert client.calls_to("set_manual_cost")[0]["cost"] == near
