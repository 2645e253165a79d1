"""The TUI never dies: every view takes every key it declares and every palette command, every
dialog renders from payloads whose optional fields are all null, and undo works although the
daemon cannot estimate its time."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import pytest
from textual import events
from textual.keys import key_to_character
from textual.widgets import Input
from textual.worker import WorkerState

from costrecon_tui import keymap
from costrecon_tui.client import ApprovalItem, CostRow
from costrecon_tui.commands import commands
from costrecon_tui.screens.activity import change_set_parts
from costrecon_tui.screens.costs import info_text
from costrecon_tui.screens.dialogs import (
    ConfirmScreen,
    ErrorScreen,
    HelpScreen,
    TextScreen,
)
from costrecon_tui.screens.mappings import SuggestionScreen
from costrecon_tui.screens.preview import ApproveScreen, UndoScreen
from costrecon_tui.screens.sync import permission_rows
from tests.fake_client import NOW, FakeClient, all_views_ready, make_app, screen_text, settle

VIEW_KEYS = {
    "costs": keymap.GRID + keymap.COSTS,
    "activity": keymap.ACTIVITY,
    "files": keymap.FILES,
    "mappings": keymap.MAPPINGS,
    "sync": keymap.SYNC,
}
GLOBAL = [b for b in keymap.APP + keymap.MAIN if b.action != "quit"]
# The keys that switch to a named view do the same whatever view is showing: pressed in the first
# view only (each one leaves it for its view and comes back). Every other global key depends on
# the view (its help, its palette commands, the view after or before it) and is pressed in each.
_SWITCH = {b.id for b in keymap.MAIN if b.action.startswith("show_view(")}


# Workers that run for the app's whole life (the daemon connection) or start on their own timer
# (the grid's background prefetch): a key is done without waiting for them.
_BACKGROUND = {"daemon-connection", "grid-prefetch"}


async def _quiet(pilot: Any) -> None:
    """Until what the last key started has finished: its messages handled, its workers done (or
    a dialog or an input is up, waiting for the person), and the screen rendered.

    Conditions, not the pilot's idle heuristics: ``pilot.press`` waits for the process to look
    idle (20 ms sleeps, up to a second each on a loaded machine), which made one walk ~40 s."""
    app = pilot.app
    idle = 0
    for _ in range(200):
        await pilot.pause(0)  # handles the queued messages and renders
        if app.screen is not app.main or isinstance(app.focused, Input):
            return
        busy = [
            w
            for w in app.workers
            if w.state in (WorkerState.PENDING, WorkerState.RUNNING) and w.group not in _BACKGROUND
        ]
        # Idle on two turns running: what a handler scheduled for after its own turn (a screen
        # pushed with call_later, a worker started after a refresh) has started too.
        idle = 0 if busy else idle + 1
        if idle == 2:
            return
        # Let them run. Their own tasks, awaited through asyncio.wait (which never cancels what
        # it waits on; Worker.wait() would, if this wait were cancelled). A worker still
        # running after this is looked at again on the next turn.
        tasks = [w._task for w in busy if w._task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=0.05)


def _busy(app: Any, groups: set[str]) -> bool:
    return any(w.group in groups and not w.is_finished for w in app.workers)


async def _press(pilot: Any, key: str) -> None:
    """The key event a terminal sends (as ``pilot.press`` posts it), then wait until handled."""
    pilot.app.post_message(events.Key(key, key_to_character(key)))
    await _quiet(pilot)


async def _back_to(pilot: Any, view: str) -> None:
    """Close whatever a key opened (dialog, filter, editor) and return to ``view``. Called once
    the key's own work is quiet (``_press``, or ``_quiet`` after an action); each escape waits
    for its own."""
    app = pilot.app
    for _ in range(6):
        if app.screen is not app.main or isinstance(app.focused, Input):
            await _press(pilot, "escape")
            continue
        break
    if app.current_view != view:
        app.show_view(view)
        await _quiet(pilot)  # a view switch re-lays out the screen
    else:
        app.view(view).focus_main()  # as show_view does; nothing to lay out again


def _assert_up(app: Any, caplog: Any) -> None:
    assert app.is_running
    assert app.unexpected_errors == []
    assert not isinstance(app.screen, ErrorScreen)
    errors = [r for r in caplog.records if r.name.startswith("costrecon_tui") and r.levelno >= 40]
    assert errors == [], [r.getMessage() for r in errors]


# What the PSA changes in the TUI is the shape of the identifiers (Autotask's are the longest,
# Syncro's short numbers) and so the width of that column, plus the PSA's name; the keys, views
# and commands are the same for all three. The walk runs at the tightest layout (80x24 with the
# longest identifiers) and the roomiest (120x40 with the shortest); every PSA x size is rendered
# in every view by the test after it. The palette's commands are the bindings' own actions run in
# their view (commands.py builds them from the keymap): run once, in the tight layout, since the
# walk at the roomy one has already pressed every key they stand for (a third of a walk's CPU).
@pytest.mark.parametrize(
    "psa,size,palette", [("autotask", (80, 24), True), ("syncro", (120, 40), False)]
)
async def test_every_key_of_every_view_and_every_palette_command_leaves_the_app_up(
    psa, size, palette, caplog
):
    caplog.set_level(logging.INFO, logger="costrecon_tui")
    client = FakeClient(psa=psa, auto_push=True, push_step_delay=0.001)
    app = make_app(client)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        for n, (view, bindings) in enumerate(VIEW_KEYS.items()):
            app.show_view(view)
            await _quiet(pilot)
            for binding in bindings + [b for b in GLOBAL if n == 0 or b.id not in _SWITCH]:
                for key in binding.key.split(","):
                    await _press(pilot, key.strip())
                    await _back_to(pilot, view)
                    _assert_up(app, caplog)
        for command in commands() if palette else []:
            if command.action == "quit":
                continue
            await app.run_action(command.action)
            await _quiet(pilot)
            await _back_to(pilot, app.current_view)
            _assert_up(app, caplog)


@pytest.mark.parametrize("psa", ["connectwise", "autotask", "syncro"])
@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_every_view_renders_for_every_psa_at_both_sizes(psa, size, caplog):
    caplog.set_level(logging.INFO, logger="costrecon_tui")
    app = make_app(FakeClient(psa=psa))
    async with app.run_test(size=size) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        for view in VIEW_KEYS:
            app.show_view(view)
            await _quiet(pilot)
            assert screen_text(app)
            _assert_up(app, caplog)
        await _press(pilot, "question_mark")  # the help lists the keys of the view
        await settle(pilot, lambda: isinstance(app.screen, HelpScreen))
        _assert_up(app, caplog)


async def test_palette_opens_with_ctrl_p_and_lists_each_view_action_with_its_key():
    app = make_app(FakeClient())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("ctrl+p")
        await settle(pilot, lambda: type(app.screen).__name__ == "CommandPalette")
        await pilot.press(*"undo")
        await pilot.pause(0.3)
        options = app.screen.query_one("CommandList")
        labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("Activity: Undo change set" in label and "(u)" in label for label in labels)
    names = {c.name for c in commands()}
    for expected in (
        "Costs: Approve",
        "Costs: Edit cost",
        "Costs: Revert manual",
        "Costs: Info/reason",
        "Activity: Undo change set",
        "Mappings: Map to…",
        "Sync: Sync now",
    ):
        assert expected in names


async def test_approve_from_the_palette_in_another_view_switches_to_costs_first():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("5")
        assert app.current_view == "sync"
        await app.run_action("in_view('costs', 'approve')")
        await settle(pilot, lambda: app.current_view == "costs")
        # The approval it started ends before the app does (an app torn down while the preview
        # is on its way failed this test on a loaded machine).
        await settle(pilot, lambda: isinstance(app.screen, ApproveScreen))
        await pilot.press("escape")
        await settle(pilot, lambda: not _busy(app, {"costs-approve", "approve-preview"}))


async def test_undo_opens_although_the_daemon_sends_no_time_estimate():
    client = FakeClient()
    client.psa_limits_known = False
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        cs_id = next(iter(client._change_sets))
        app.activity_view.undo(cs_id)
        await settle(pilot, lambda: isinstance(app.screen, UndoScreen))
        assert "time not estimated" in screen_text(app)
        await pilot.press("y")
        await settle(pilot, lambda: any(not c["dry_run"] for c in client.calls_to("undo")))
        assert app.is_running and app.unexpected_errors == []


NULL_ROW = CostRow.from_json({"id": 1})


@pytest.mark.parametrize(
    "make_screen",
    [
        lambda: ApproveScreen([ApprovalItem(1, Decimal("1"), None)], {}),
        lambda: ApproveScreen(
            [ApprovalItem(1, Decimal("1"), None)],
            {
                "items": None,
                "lines": None,
                "estimated_seconds": None,
                "monthly_impact": None,
                "per_item": [{"identifier": None, "before": None, "after": None}],
                "warnings": [{"kind": "rate", "detail": None}],
            },
        ),
        lambda: UndoScreen(7, {}),
        lambda: UndoScreen(7, {"per_item": [{}], "estimated_seconds": None}),
        lambda: SuggestionScreen({}),
        lambda: SuggestionScreen({"suggestions": [{"item_id": 3}, {}, None]}),
        lambda: TextScreen("Item", info_text(NULL_ROW, NOW)),
        lambda: TextScreen("Change set", "", extra=[]),
        lambda: ConfirmScreen("Sure?"),
        lambda: HelpScreen("Costs", []),
        lambda: ErrorScreen("It broke.", None),
    ],
)
async def test_each_dialog_renders_from_a_payload_with_every_optional_field_null(make_screen):
    app = make_app(FakeClient())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        screen = make_screen()
        app.push_screen(screen)
        await settle(pilot, lambda: app.screen is screen and screen.is_mounted)
        await pilot.pause(0.05)
        assert app.unexpected_errors == [] and app.is_running
        assert screen_text(app)  # something readable, and no exception while composing


def test_change_set_detail_with_no_fields_and_with_a_preview_that_differs():
    parts = change_set_parts({})
    assert parts  # renders without counts or preview
    parts = change_set_parts(
        {
            "id": 4,
            "status": "done",
            "counts": {"done": 5, "conflict": 2, "failed": 0, "denied": 0, "pending": 0},
            "preview": {"items": 1, "item_writes": 1, "lines": 6, "lines_skipped": 7},
        }
    )
    reason = str(parts[-1])
    assert "7 line(s) were left alone by the line policy" in reason
    assert "2 target(s) were not changed" in reason


def test_permissions_name_each_capability_with_the_fix_for_each_problem():
    rows = permission_rows(
        {
            "connected": True,
            "permission_problems": [{"capability": "edit_lines", "message": "Set Edit to All."}],
        }
    )
    by_what = {what: (ok, fix) for ok, what, fix in rows}
    assert by_what["update contract line costs"] == (False, "Set Edit to All.")
    assert by_what["read the product catalogue"] == (True, "")
    assert all(ok is None for ok, _, _ in permission_rows({"connected": False}))


async def test_errors_on_every_frame_end_the_app_with_a_failing_exit_status(capsys):
    from costrecon_tui.app import MAX_ERRORS
    from costrecon_tui.cli import EXIT_FAIL, tui_exit_status

    app = make_app(FakeClient())
    with pytest.raises(RuntimeError):
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: all_views_ready(app))
            for n in range(MAX_ERRORS + 1):
                app._handle_exception(RuntimeError(f"broken frame {n}"))
            await pilot.pause(0.1)
    assert len(app.unexpected_errors) == MAX_ERRORS  # shown in the panel, then the app ended
    assert app.return_code == 1
    assert tui_exit_status(app, "/var/log/costrecon-tui.log") == EXIT_FAIL
    assert "details are in /var/log/costrecon-tui.log" in capsys.readouterr().err
