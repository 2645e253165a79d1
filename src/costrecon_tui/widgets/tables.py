"""DataTable for the small side views (activity, files, mappings), with the vim keys of the grid
and one flexible column that takes whatever width the terminal leaves (80 columns must work)."""

from __future__ import annotations

from typing import Any

from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.widgets import DataTable

from costrecon_tui.widgets.errors import StaysUp


class KeyTable(StaysUp, DataTable[Any]):
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
