"""Command palette (`:` or ctrl+p): every action of every view, with its key, by name.

The commands are built from the keymap (``keymap.py``), so a binding added to a view is in the
palette too. Each command names the view it acts on ("Costs: Approve") and switches there before
it runs, so nothing ever happens to a cursor the user cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from costrecon_tui import keymap

VIEW_BINDINGS: list[tuple[str, str, list[Binding]]] = [
    ("costs", "Costs", keymap.GRID + keymap.COSTS),
    ("activity", "Activity", keymap.ACTIVITY),
    ("files", "Files", keymap.FILES),
    ("mappings", "Mappings", keymap.MAPPINGS),
    ("sync", "Sync", keymap.SYNC),
]
# cursor movement is not something to look up by name
SKIPPED = {"cursor", "page", "first", "last"}


@dataclass(frozen=True)
class Command:
    name: str
    action: str  # an app action string
    help: str
    binding: Binding | None


def commands() -> list[Command]:
    out: list[Command] = []
    for view, title, _bindings in VIEW_BINDINGS:
        out.append(
            Command(f"Go to {title}", f"show_view('{view}')", f"switch to the {title} view", None)
        )
    for b in keymap.MAIN:
        if b.action.startswith("cycle_view"):
            out.append(Command(f"View: {b.description}", b.action, "cycle through views", b))
    for view, title, bindings in VIEW_BINDINGS:
        for b in bindings:
            name = b.action.split("(")[0]
            if name in SKIPPED:
                continue
            out.append(
                Command(
                    f"{title}: {b.description}",
                    f"in_view('{view}', {b.action!r})",
                    f"{b.tooltip or b.description} (in {title})",
                    b,
                )
            )
    out.append(Command("Help: keys of this view", "help", "every binding and its id", None))
    out.append(Command("Quit", "quit", "leave costrecon (the daemon keeps running)", None))
    return out


# the app-wide commands that have a key of their own
_APP_KEYS = {"help": keymap.APP[1], "quit": keymap.APP[0]}


class CostreconCommands(Provider):
    def _label(self, c: Command) -> str:
        b = c.binding or _APP_KEYS.get(c.action)
        if b is None:
            for m in keymap.MAIN:
                if m.action == c.action:
                    b = m
        if b is None:
            return c.name
        app: Any = self.app
        # parentheses, not brackets: palette labels are parsed as markup ("[/]" closes a tag)
        return f"{c.name}  ({app.keys_for(b)})"

    async def discover(self) -> Hits:
        for c in commands():
            yield DiscoveryHit(
                Content(self._label(c)), partial(self.app.run_action, c.action), help=c.help
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for c in commands():
            label = self._label(c)
            score = matcher.match(label)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(label),
                    partial(self.app.run_action, c.action),
                    help=c.help,
                )
