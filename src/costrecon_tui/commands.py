"""Command-palette provider (`:` or ctrl+p): every view and action by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

COMMANDS: list[tuple[str, str, str]] = [
    ("Go to Costs", "show_view('costs')", "the cost table"),
    ("Go to Activity", "show_view('activity')", "the activity log, tailing live"),
    ("Go to Files", "show_view('files')", "imported and failed price files"),
    ("Go to Mappings", "show_view('mappings')", "unmatched vendor rows and saved mappings"),
    ("Go to Sync", "show_view('sync')", "PSA connection, permissions, last/next sync"),
    ("Sync now", "sync_now", "ask costrecond to sync the PSA catalogue now"),
    ("Filter costs", "costs('filter')", "filter the cost table by PSA ID or name"),
    ("Toggle changed only", "costs('changed_only')", "show only rows whose vendor cost differs"),
    (
        "Approve marked rows",
        "costs('approve')",
        "preview and approve the marked rows (or the cursor row)",
    ),
    ("Mark all visible rows", "costs('mark_all')", "mark every row of the current filter"),
    ("Clear marks", "costs('clear_marks')", "unmark every row"),
    ("Sort costs by next column", "costs('sort_next')", "cycle the sort column"),
    ("Reverse sort direction", "costs('sort_direction')", "ascending / descending"),
    ("Toggle activity follow", "activity_follow", "follow or pause the activity tail"),
    ("Reload this view", "reload_view", "fetch the current view again"),
    ("Help: keys of this view", "help", "every binding and its id"),
    ("Quit", "quit", "leave costrecon (the daemon keeps running)"),
]


class CostreconCommands(Provider):
    async def discover(self) -> Hits:
        for name, action, help_text in COMMANDS:
            yield DiscoveryHit(name, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help_text in COMMANDS:
            score = matcher.match(name)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(name),
                    partial(self.app.run_action, action),
                    help=help_text,
                )
