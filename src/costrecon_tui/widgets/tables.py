"""DataTable for the small side views (activity, files, mappings), with the vim keys of the grid
and one flexible column that takes whatever width the terminal leaves (80 columns must work)."""

from __future__ import annotations

from typing import Any, cast

from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.widget import Widget
from textual.widgets import DataTable

from costrecon_tui import keymap
from costrecon_tui.widgets.errors import StaysUp

# The views' actions that move the focus into an input: the cost editor, and the filter and search
# boxes. Their keys come from the keymap, so a rebinding keeps working.
OPENS_INPUT = frozenset({"edit", "filter", "search"})
_OPENS_INPUT_KEYS = frozenset(
    key.strip()
    for name in dir(keymap)
    if name.isupper() and isinstance(getattr(keymap, name), list)
    for b in getattr(keymap, name)
    if isinstance(b, Binding) and b.action in OPENS_INPUT
    for key in b.key.split(",")
)


class TypeAhead:
    """Keys typed ahead go where the keys before them sent the focus. Over SSH "e12" or "/m365"
    arrives in one read and the app queues every key for the focused table at once, while a
    binding runs only once its key has bubbled back to the app, after the others were queued
    here: the rest would run the table's and the app's keys ("2" opens Activity, "d" deletes).
    So the keys that open an input run their action here, before the next key is taken, the
    action moves the focus at once (``screen.set_focus``, not ``focus()``, which waits), and keys
    that find the focus gone are handed to the widget that has it.

    A mixin, not a Widget: Textual's CSS type names follow the first widget base, so the table
    stays a DataTable to queries and styles."""

    async def on_key(self, event: events.Key) -> None:
        me = cast(Widget, self)
        focused = me.screen.focused
        if focused is not None and focused is not me and focused.is_attached:
            event.stop()
            event.prevent_default()
            focused.post_message(events.Key(event.key, event.character))
            return
        if event.key in _OPENS_INPUT_KEYS:
            active = me.screen.active_bindings.get(event.key)
            if active is not None and active.enabled and active.binding.action in OPENS_INPUT:
                event.stop()
                event.prevent_default()
                await me.app.run_action(active.binding.action, active.node)


class KeyTable(TypeAhead, StaysUp, DataTable[Any]):
    BINDINGS = [
        Binding("enter", "select_cursor", "Open", id="table.open"),
        Binding("j", "cursor_down", "Down", show=False, id="table.down"),
        Binding("k", "cursor_up", "Up", show=False, id="table.up"),
        Binding("g", "scroll_top", "First row", show=False, id="table.first"),
        Binding("G", "scroll_bottom", "Last row", show=False, id="table.last"),
    ]

    DEFAULT_CSS = "KeyTable { scrollbar-size-vertical: 1; }"

    def __init__(
        self, *args: Any, flex: str | None = None, min_flex: int = 10, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.flex = flex
        self.min_flex = min_flex

    def set_column_width(self, key: str, width: int) -> None:
        """Give a fixed column the width its content needs now (e.g. times that are all today
        need 5 cells, not 16), and let the flexible column take the difference."""
        col = self.columns.get(key)  # type: ignore[call-overload]
        if col is None or col.width == width:
            return
        col.width = width
        self.fit_flex_column()

    def on_resize(self, event: events.Resize) -> None:
        self.fit_flex_column()

    def fit_flex_column(self) -> None:
        if self.flex is None or self.flex not in self.columns:
            return
        available = self.scrollable_content_region.width or self.size.width
        if not available:
            return
        pad = 2 * self.cell_padding
        others = sum(
            c.get_render_width(self) for k, c in self.columns.items() if k.value != self.flex
        )
        col = self.columns[self.flex]  # type: ignore[index]
        width = max(self.min_flex, available - others - pad - 1)
        if col.width == width and not col.auto_width:
            return
        col.auto_width = False
        col.width = width
        self.virtual_size = Size(others + width + pad, self.virtual_size.height)
        self._clear_caches()
        self.refresh()
