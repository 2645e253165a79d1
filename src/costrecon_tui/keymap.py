"""Every key binding of the TUI, as data, each with a stable id (``costs.approve``…).

Users remap keys by id from the config file; cli.py passes ``{id: "keys"}`` to
``CostreconApp(keymap=...)``, which hands it to ``App.set_keymap``. Keys that SSH clients and tmux
commonly swallow (ctrl+s, ctrl+q, ctrl+z) are not used for core actions (DESIGN.md §5).
"""

from __future__ import annotations

from textual.binding import Binding


def bind(
    keys: str, action: str, description: str, id: str, *, show: bool = True, priority: bool = False
) -> Binding:
    return Binding(
        keys, action, description, show=show, priority=priority, id=id, tooltip=description
    )


APP = [
    bind("q", "quit", "Quit", "app.quit"),
    bind("question_mark", "help", "Help", "app.help"),
    # one binding for both keys: Textual adds its own ctrl+p only when no binding opens the palette
    bind("ctrl+p,colon", "command_palette", "Commands", "app.palette", show=False),
]

MAIN = [
    bind("1", "show_view('costs')", "Costs", "view.costs", show=False),
    bind("2", "show_view('activity')", "Activity", "view.activity", show=False),
    bind("3", "show_view('files')", "Files", "view.files", show=False),
    bind("4", "show_view('mappings')", "Mappings", "view.mappings", show=False),
    bind("5", "show_view('sync')", "Sync", "view.sync", show=False),
    bind("tab", "cycle_view(1)", "Next view", "view.next", show=False),
    bind("shift+tab", "cycle_view(-1)", "Previous view", "view.previous", show=False),
]

GRID = [
    bind("up,k", "cursor(-1)", "Up", "costs.up", show=False),
    bind("down,j", "cursor(1)", "Down", "costs.down", show=False),
    bind("pageup", "page(-1)", "Page up", "costs.page_up", show=False),
    bind("pagedown", "page(1)", "Page down", "costs.page_down", show=False),
    bind("home,g", "first", "First row", "costs.first", show=False),
    bind("end,G", "last", "Last row", "costs.last", show=False),
    bind("space", "toggle_mark", "Mark", "costs.mark"),
    bind("V", "range_mark", "Range mark", "costs.range_mark", show=False),
    bind("ctrl+a", "mark_all", "Mark all visible", "costs.mark_all", show=False),
]

COSTS = [
    bind("slash", "filter", "Filter", "costs.filter"),
    bind("escape", "back", "Clear filter/marks", "costs.clear", show=False),
    bind("e,enter", "edit", "Edit cost", "costs.edit"),
    bind("x", "revert", "Revert manual", "costs.revert", show=False),
    bind("a", "approve", "Approve", "costs.approve"),
    bind("i,r", "info", "Info/reason", "costs.info"),
    bind("c", "changed_only", "Changed only", "costs.changed_only"),
    bind("m", "toggle_prices", "Price/margin columns", "costs.prices", show=False),
    bind("s", "sort(1)", "Sort column", "costs.sort", show=False),
    bind("S", "sort_direction", "Sort direction", "costs.sort_direction", show=False),
    bind("ctrl+r", "reload", "Reload", "costs.reload", show=False),
]

ACTIVITY = [
    bind("f", "follow", "Follow", "activity.follow"),
    bind("slash", "filter", "Filter", "activity.filter"),
    bind("escape", "clear_filter", "Clear filter", "activity.clear", show=False),
    # enter and → reach the view through ActivityTable (the focused table owns those keys)
    bind("enter,right", "expand", "Expand", "activity.expand"),
    bind("left", "collapse", "Collapse", "activity.collapse", show=False),
    bind("d", "detail", "Detail", "activity.detail"),
    bind("right_square_bracket", "steps_page(1)", "Next steps", "activity.steps_next", show=False),
    bind(
        "left_square_bracket",
        "steps_page(-1)",
        "Previous steps",
        "activity.steps_previous",
        show=False,
    ),
    bind("s", "steps_status", "Steps by status", "activity.steps_status", show=False),
    bind("a", "filter_by('actor')", "Only this actor", "activity.by_actor", show=False),
    bind("t", "filter_by('action')", "Only this action", "activity.by_action", show=False),
    bind("i", "filter_by('item')", "Only this item", "activity.by_item", show=False),
    bind("e", "export", "Export CSV", "activity.export"),
    bind("u", "undo", "Undo change set", "activity.undo"),
    bind("x", "cancel_scheduled", "Cancel scheduled", "activity.cancel", show=False),
    bind("ctrl+r", "reload", "Reload", "activity.reload", show=False),
]

FILES = [
    bind("enter", "detail", "Error report", "files.detail"),
    bind("ctrl+r", "reload", "Reload", "files.reload", show=False),
]

MAPPINGS = [
    bind("enter", "pick", "Map to…", "mappings.pick"),
    bind("d,delete", "delete", "Delete mapping", "mappings.delete"),
    bind("w", "switch_pane", "Other pane", "mappings.pane"),
    bind("u", "toggle_list", "Items/unmatched", "mappings.toggle"),
    bind("slash", "search", "Search", "mappings.search"),
    bind("escape", "leave_search", "Close search", "mappings.leave", show=False),
    bind("f", "filter", "Filter file/vendor", "mappings.filter", show=False),
    bind("right_square_bracket", "next_page", "Next page", "mappings.next", show=False),
    bind("left_square_bracket", "first_page", "First page", "mappings.first", show=False),
    bind("ctrl+r", "reload", "Reload", "mappings.reload", show=False),
]

SYNC = [
    bind("s", "sync_now", "Sync now", "sync.now"),
    bind("ctrl+r", "reload", "Reload", "sync.reload", show=False),
]

NOT_RUNNING = [
    bind("s", "start_daemon", "Start costrecond", "daemon.start"),
    bind("r", "retry", "Retry now", "daemon.retry"),
    bind("q", "app.quit", "Quit", "daemon.quit"),
]

ALL: list[Binding] = APP + MAIN + GRID + COSTS + ACTIVITY + FILES + MAPPINGS + SYNC + NOT_RUNNING
BINDING_IDS: frozenset[str] = frozenset(b.id for b in ALL if b.id)


def unknown_ids(keymap: dict[str, str]) -> list[str]:
    """Ids in a user keymap that name no binding (a typo in the config file)."""
    return sorted(k for k in keymap if k not in BINDING_IDS)
