"""The virtual cost grid: a Line-API ScrollView that renders only the rows on screen.

The model is the ordered id list of the current filter/sort (from ``client.cost_view``); rows are
fetched by id in pages, in workers, as they scroll into view, and rendered lines are kept in an LRU
strip cache keyed by everything that changes how a line looks. Built like toolong's ``LogLines``
(reference notes §1.3, §2.3): the built-in DataTable takes seconds per rebuild at this size.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events, getters, work
from textual.binding import BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from costrecon_tui import keymap
from costrecon_tui.client import CostRow
from costrecon_tui.widgets import display
from costrecon_tui.widgets.errors import ReportsWorkerErrors
from costrecon_tui.widgets.tables import TypeAhead

if TYPE_CHECKING:
    from costrecon_tui.app import CostreconApp

PAGE = 200  # ids per cost_rows request
FETCH_CHUNK = 1000  # ids per request when every marked row is needed (approval)
PREFETCH_DELAY = 0.5


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    width: int
    right: bool = False


PRICES_FROM = 150  # terminal width from which the price and margin columns show by themselves
FULL_NAMES_FROM = 120  # the seed names (Service ID, # of Contracts...) need about this much
MARK_ON, MARK_OFF = "[x]", "[ ]"  # readable under NO_COLOR and in a plain tmux capture-pane

# What `?` says about each column (the header may show an abbreviation of the first word).
COLUMN_HELP: list[tuple[str, str]] = [
    ("Mark", "[x] marked for approval, [ ] not; ▶ is the cursor (space marks, ctrl+a all)."),
    ("Service ID", "the PSA's identifier for the catalogue item (abbreviated Svc ID)."),
    ("Service name", "the catalogue item's name in the PSA."),
    ("# of Contracts", "active contracts with at least one live line for the item (Ctr)."),
    ("Catalogue cost", "the item's cost in the PSA now (Catalog)."),
    ("Vendor cost", "the cost to push: ✎ manual, ↓ price file, ⇄ distributor API."),
    ("Change", "vendor − catalogue cost and %: ▲ costs more, ▼ costs less."),
    ("Price", "the item's sell price in the PSA (read only: costrecon never changes prices)."),
    ("Margin %", "(price − catalogue cost) / price, now (Mrg%)."),
    ("Margin % after", "(price − vendor cost) / price once approved (Aft%); ! under the floor."),
    (
        "Action",
        "what the row needs or what is happening; approve ! = a contract line would "
        "fall below the margin floor ([push] margin_floor).",
    ),
]


def _title(options: tuple[str, ...], width: int) -> str:
    """The longest of ``options`` (longest first) that fits ``width`` cells."""
    for option in options:
        if cell_len(option) <= width:
            return option
    return options[-1]


def layout(width: int, longest_id: int | None = None, prices: bool | None = None) -> list[Column]:
    """Fixed column widths for a terminal width; only the name column flexes (never measure cells).

    ``longest_id`` is the longest PSA ID loaded so far: short IDs (Syncro's numbers) give their
    room to the name, so rows of similar products can be told apart. ``prices`` shows or hides
    the price and margin columns (None: shown from PRICES_FROM columns). Below FULL_NAMES_FROM,
    shown prices take the place of the contract count and the change, which `i` still shows.
    """
    narrow = width < 100
    show_prices = width >= PRICES_FROM if prices is None else prices
    # the seed names and the three price columns together need PRICES_FROM columns
    full = width >= (PRICES_FROM if show_prices else FULL_NAMES_FROM)
    swap = show_prices and not full
    # The PSA ID is what people act on: it keeps more room than the name on narrow terminals.
    ident = 16 if width >= 110 else 14 if width >= 90 else 13
    if longest_id is not None:
        ident = min(ident, max(6, longest_id + 1))
    contracts_w = 14 if full else 4 if narrow else 9
    cat_w = 14 if full else 9 if narrow else 11
    ven_w = 13 if full else 10 if narrow else 12
    cols = [
        Column("select", "Mark", 5),  # "▶[x]" and a space before the Service ID
        Column("identifier", _title(("Service ID", "Svc ID", "ID"), ident), ident),
        Column("name", "Service name" if full else "Name", 0),
    ]
    if not swap:
        cols.append(
            Column(
                "contracts",
                _title(("# of Contracts", "Contracts", "Ctr"), contracts_w),
                contracts_w,
                True,
            )
        )
    cols += [
        Column(
            "catalog_cost", _title(("Catalogue cost", "Catalogue", "Catalog"), cat_w), cat_w, True
        ),
        Column("vendor_cost", _title(("Vendor cost", "Vendor"), ven_w), ven_w, True),
    ]
    if not swap:
        cols.append(Column("change", "Change", 12 if narrow else 16, True))  # ▲+0.24 +8.0%
    if show_prices:
        pw = 10 if full else 8
        cols += [
            Column("price", "Price", pw, True),
            Column("margin", "Margin %" if full else "Mrg%", 8 if full else 5, True),
            Column("margin_after", "Margin % after" if full else "Aft%", 14 if full else 5, True),
        ]
    cols.append(Column("state", "Action", 10 if narrow else 13))
    used = sum(c.width for c in cols) + (
        len(cols) - 2
    )  # one space between columns, none after Mark
    name_w = max(6, width - used)
    return [Column(c.key, c.title, name_w) if c.key == "name" else c for c in cols]


def margin_text(value: object, narrow: bool, low: bool = False) -> str:
    """``28.6`` (``29`` when narrow); ``!`` marks a margin under the floor; ``—`` without a
    price."""
    if value is None:
        return "—"
    text = f"{value:.0f}" if narrow else f"{value:.1f}"
    return text + ("!" if low else "")


def fit(text: str, width: int, right: bool = False) -> str:
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


def _find(ids: list[int], item_id: int | None) -> int | None:
    if item_id is None:
        return None
    try:
        return ids.index(item_id)
    except ValueError:
        return None


class CostGrid(TypeAhead, ReportsWorkerErrors, ScrollView, can_focus=True):
    """One row per catalogue item; cursor, marks, and live row state."""

    if TYPE_CHECKING:  # Textual types `app` as any App; every view runs in CostreconApp
        app = getters.app(CostreconApp)

    BINDINGS = cast("list[BindingType]", keymap.GRID)  # list is invariant

    COMPONENT_CLASSES = {
        "cost-grid--cursor",
        "cost-grid--marked",
        "cost-grid--up",
        "cost-grid--down",
        "cost-grid--dim",
        "cost-grid--busy",
        "cost-grid--ok",
        "cost-grid--bad",
        "cost-grid--approve",
    }

    DEFAULT_CSS = """
    CostGrid {
        background: $surface;
        scrollbar-size-vertical: 1;
        overflow-x: hidden;
        overflow-y: scroll;
    }
    CostGrid > .cost-grid--cursor { background: $primary 45%; }
    CostGrid:blur > .cost-grid--cursor { background: $primary 20%; }
    CostGrid > .cost-grid--marked { text-style: bold; background: $secondary 25%; }
    CostGrid > .cost-grid--up { color: $error; }
    CostGrid > .cost-grid--down { color: $success; }
    CostGrid > .cost-grid--dim { color: $text-muted; }
    CostGrid > .cost-grid--busy { color: $warning; }
    CostGrid > .cost-grid--ok { color: $success; }
    CostGrid > .cost-grid--bad { color: $error; text-style: bold; }
    CostGrid > .cost-grid--approve { color: $accent; }
    """

    class Changed(Message):
        """Cursor, marks or the row under the cursor changed."""

        def __init__(self, grid: CostGrid) -> None:
            super().__init__()
            self.grid = grid

    class RowsArrived(Message):
        """Rows were (re)loaded; the benchmark and the costs view wait on this."""

        def __init__(self, ids: list[int]) -> None:
            super().__init__()
            self.ids = ids

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ids: list[int] = []
        self.total = 0
        self.cursor = 0
        self.marked: set[int] = set()
        self.mark_anchor: int | None = None
        self.rows: dict[int, CostRow] = {}
        # lower-cased "identifier\tname" per loaded row: lets the costs view filter locally while
        # the daemon's answer is on its way
        self.search_text: dict[int, str] = {}
        self._filter_base: list[int] | None = None
        self.prefetched = False
        self._filter_texts: list[str] = []
        self._filter_results: LRUCache[str, list[int]] = LRUCache(64)
        self._version: dict[int, int] = {}
        self._inflight: set[int] = set()
        self._stale: set[int] = set()
        self._strips: LRUCache[tuple, Strip] = LRUCache(2000)
        self._styles: dict[str, Style] | None = None
        self._columns: list[Column] = layout(80)
        self._width = 0
        self._longest_id: int | None = None
        self.prices: bool | None = None  # price/margin columns: None = by terminal width
        self._index: dict[int, int] | None = None

    # ------------------------------------------------------------------ model

    @property
    def cursor_id(self) -> int | None:
        return self.ids[self.cursor] if 0 <= self.cursor < len(self.ids) else None

    @property
    def cursor_row(self) -> CostRow | None:
        cid = self.cursor_id
        return None if cid is None else self.rows.get(cid)

    @property
    def columns(self) -> list[Column]:
        return self._columns

    def index_of(self, item_id: int) -> int | None:
        if self._index is None:
            self._index = {i: n for n, i in enumerate(self.ids)}
        return self._index.get(item_id)

    def set_ids(self, ids: list[int], total: int, *, keep_cursor: bool = True) -> None:
        """Show a new filter/sort result, keeping the cursor on the same item when it is still there
        (a new filter query starts at the top instead: the first match is what the user wants)."""
        keep = self.cursor_id if keep_cursor else None
        self.ids = ids
        self.total = total
        self._index = None  # built lazily: a 100k-entry dict per keystroke would cost ~10 ms
        new = _find(ids, keep)
        self.cursor = new if new is not None else 0
        if self.mark_anchor is not None and _find(ids, self.mark_anchor) is None:
            self.mark_anchor = None
        self.virtual_size = Size(self.size.width, len(ids))
        if new is None:
            self.scroll_to(y=0, animate=False, immediate=True)
        self._scroll_cursor_into_view()
        self.refresh()
        self._ensure_visible_rows()
        self.post_message(self.Changed(self))

    def update_rows(self, rows: Iterable[CostRow]) -> None:
        changed = []
        for row in rows:
            self._store(row)
            self._stale.discard(row.id)
            changed.append(row.id)
        self.refresh()
        self.post_message(self.RowsArrived(changed))
        if self.cursor_id in changed:
            self.post_message(self.Changed(self))

    def invalidate(self, ids: Iterable[int]) -> None:
        """These rows changed in the daemon: refetch the ones we hold or show."""
        ids = [i for i in ids if i in self.rows or self.index_of(i) is not None]
        if not ids:
            return
        self._stale.update(ids)
        wanted = [i for i in ids if i in self.rows or self._is_visible(i)]
        self._request(wanted)

    def invalidate_all(self) -> None:
        self._stale.update(self.rows)
        self._strips.clear()
        self._ensure_visible_rows()

    def _is_visible(self, item_id: int) -> bool:
        n = self.index_of(item_id)
        y = self.scroll_offset.y
        return n is not None and y - PAGE <= n < y + self.size.height + PAGE

    def _ensure_visible_rows(self) -> None:
        if not self.ids:
            return
        y = int(self.scroll_offset.y)
        h = max(self.size.height, 1)
        start = max(0, y - h)
        end = min(len(self.ids), y + 2 * h + PAGE // 2)
        want = [i for i in self.ids[start:end] if i not in self.rows or i in self._stale]
        self._request(want)

    def _request(self, ids: list[int]) -> None:
        ids = [i for i in ids if i not in self._inflight]
        if not ids:
            return
        self._inflight.update(ids)
        for n in range(0, len(ids), PAGE):
            self._fetch(ids[n : n + PAGE])

    @work(group="grid-rows", exit_on_error=False)
    async def _fetch(self, ids: list[int]) -> None:
        try:
            rows = await self.app.client.cost_rows(ids)
        finally:
            self._inflight.difference_update(ids)
        self.update_rows(rows)

    async def ensure_rows(self, ids: list[int]) -> list[CostRow]:
        """Every row for ``ids`` (fetching the ones never loaded), in the order given."""
        await asyncio.sleep(PREFETCH_DELAY)  # the first screenful and the first keystrokes go first
        missing = [i for i in ids if i not in self.rows]
        for n in range(0, len(missing), FETCH_CHUNK):
            chunk = missing[n : n + FETCH_CHUNK]
            for row in await self.app.client.cost_rows(chunk):
                self._store(row)
        return [self.rows[i] for i in ids if i in self.rows]

    def _store(self, row: CostRow) -> None:
        self.rows[row.id] = row
        if self._longest_id is None or len(row.identifier) > self._longest_id:
            self._longest_id = len(row.identifier)
            self._relayout()
        text = f"{row.identifier}\t{row.name}".lower()
        if self.search_text.get(row.id, text) != text:
            self._filter_base = None  # a renamed item: remembered results may be wrong
        self.search_text[row.id] = text
        self._version[row.id] = self._version.get(row.id, 0) + 1

    def toggle_prices(self) -> bool:
        """Show the price and margin columns if hidden, else hide them; True when now shown."""
        shown = any(c.key == "price" for c in self._columns)
        self.prices = not shown
        self._relayout()
        return self.prices

    @property
    def prices_shown(self) -> bool:
        return any(c.key == "price" for c in self._columns)

    def _relayout(self) -> None:
        if not self._width:
            return
        columns = layout(self._width, self._longest_id, self.prices)
        if columns != self._columns:
            self._columns = columns
            self._strips.clear()
            self.refresh()
            self.post_message(self.Changed(self))

    @work(exclusive=True, group="grid-prefetch", exit_on_error=False)
    async def prefetch(self, ids: list[int]) -> None:
        """Load every row in the background, in small chunks, so local filtering is exact."""
        await asyncio.sleep(PREFETCH_DELAY)  # the first screenful and the first keystrokes go first
        missing = [i for i in ids if i not in self.rows]
        for n in range(0, len(missing), FETCH_CHUNK):
            chunk = [i for i in missing[n : n + FETCH_CHUNK] if i not in self.rows]
            if chunk:
                for row in await self.app.client.cost_rows(chunk):
                    if row.id not in self.rows:
                        self._store(row)
            await asyncio.sleep(0.01)  # yield to keystrokes between chunks
        # The rows are long-lived: move them out of the cyclic GC's reach, or every full
        # collection rescans ~1M objects and shows up as 20-60 ms hitches while typing.
        await self.warm_filter(ids)
        if len(ids) >= 20_000:
            gc.freeze()
        self.prefetched = True

    def local_filter(self, base: list[int], query: str) -> list[int] | None:
        """``base`` narrowed by a case-insensitive substring of PSA ID or name, or None when some
        row of ``base`` was never loaded (then only the daemon can answer).

        Results are remembered per query (for this ``base``), and a query that extends a remembered
        one only scans that smaller result: typing forward narrows, backspace is a lookup.
        """
        text = self.search_text
        if len(text) < len(base):
            return None
        q = query.lower()
        if self._filter_base is not base:
            try:
                self._filter_texts = [text[i] for i in base]
            except KeyError:
                return None
            self._filter_base = base
            self._filter_results.clear()
        if not q:
            return base
        hit = self._filter_results.get(q)
        if hit is None:
            prefix = None
            for n in range(len(q) - 1, 0, -1):
                prefix = self._filter_results.get(q[:n])
                if prefix is not None:
                    break
            if prefix is None:
                texts = self._filter_texts
                hit = [base[n] for n, t in enumerate(texts) if q in t]
            else:
                hit = [i for i in prefix if q in text[i]]
            self._filter_results.set(q, hit)
        return hit

    async def warm_filter(self, base: list[int]) -> None:
        """Pre-compute the one-character filters (the only full scans) while the user is idle."""
        for ch in "abcdefghijklmnopqrstuvwxyz0123456789":
            if self._filter_base is not None and self._filter_base is not base:
                return
            self.local_filter(base, ch)
            await asyncio.sleep(0.005)

    # ------------------------------------------------------------------ marks

    def marked_in_order(self) -> list[int]:
        """Marked ids, in table order first, then marked rows hidden by the filter."""
        if not self.marked:
            return []
        visible = (
            [i for i in self.ids if i in self.marked] if len(self.marked) < len(self.ids) else None
        )
        if visible is None:
            visible = [i for i in self.ids if i in self.marked]
        seen = set(visible)
        return visible + sorted(i for i in self.marked if i not in seen)

    @property
    def hidden_marks(self) -> int:
        return sum(1 for i in self.marked if self.index_of(i) is None)

    def clear_marks(self, ids: Iterable[int] | None = None) -> None:
        if ids is None:
            self.marked.clear()
        else:
            self.marked.difference_update(ids)
        self.mark_anchor = None
        self.refresh()
        self.post_message(self.Changed(self))

    def action_toggle_mark(self) -> None:
        cid = self.cursor_id
        if cid is None:
            return
        if cid in self.marked:
            self.marked.discard(cid)
        else:
            self.marked.add(cid)
        self.mark_anchor = cid
        self.refresh_line(self.cursor)
        self._move(1)
        self.post_message(self.Changed(self))

    def action_range_mark(self) -> None:
        cid = self.cursor_id
        if cid is None:
            return
        start = self.index_of(self.mark_anchor) if self.mark_anchor is not None else None
        if start is None:
            self.mark_anchor = cid
            self.marked.add(cid)
            self.notify(
                "Range start marked: move, then press V again to mark the range.", timeout=3
            )
        else:
            lo, hi = sorted((start, self.cursor))
            self.marked.update(self.ids[lo : hi + 1])
            self.mark_anchor = cid
        self.refresh()
        self.post_message(self.Changed(self))

    def action_mark_all(self) -> None:
        """Mark every row of the current view; when all are marked already, unmark them."""
        if self.ids and all(i in self.marked for i in self.ids):
            self.marked.difference_update(self.ids)
        else:
            self.marked.update(self.ids)
        self.refresh()
        self.post_message(self.Changed(self))

    # ------------------------------------------------------------------ cursor

    def _move(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def move_to(self, index: int) -> None:
        if not self.ids:
            return
        index = max(0, min(len(self.ids) - 1, index))
        if index == self.cursor:
            return
        old = self.cursor
        self.cursor = index
        if not self._scroll_cursor_into_view():
            self.refresh_line(old)
            self.refresh_line(index)
        self.post_message(self.Changed(self))

    def _scroll_cursor_into_view(self) -> bool:
        h = self.scrollable_content_region.height or self.size.height
        y = int(self.scroll_offset.y)
        target = None
        if self.cursor < y:
            target = self.cursor
        elif h and self.cursor >= y + h:
            target = self.cursor - h + 1
        if target is None:
            return False
        self.scroll_to(y=target, animate=False, immediate=True)
        self.refresh()
        return True

    def action_cursor(self, delta: int) -> None:
        self._move(delta)

    def action_page(self, direction: int) -> None:
        self._move(direction * max(1, self.scrollable_content_region.height - 1))

    def action_first(self) -> None:
        self.move_to(0)

    def action_last(self) -> None:
        self.move_to(len(self.ids) - 1)

    def on_click(self, event: events.Click) -> None:
        self.move_to(int(self.scroll_offset.y) + event.y)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._ensure_visible_rows()

    def on_resize(self, event: events.Resize) -> None:
        self._width = self.scrollable_content_region.width or event.size.width
        self._columns = layout(self._width, self._longest_id, self.prices)
        self.virtual_size = Size(event.size.width, len(self.ids))
        self._strips.clear()
        self._ensure_visible_rows()
        self.post_message(self.Changed(self))

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._strips.clear()

    # ------------------------------------------------------------------ rendering

    def _style(self, name: str) -> Style:
        # computed once per theme/style change: ``rich_style`` walks the ancestors (≈0.3 ms), too
        # slow to ask for on every line of every frame
        if self._styles is None:
            self._styles = {
                n: self.get_component_rich_style(f"cost-grid--{n}", partial=True)
                for n in ("cursor", "marked", "up", "down", "dim", "busy", "ok", "bad", "approve")
            }
            self._styles["base"] = self.rich_style
        return self._styles[name]

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_offset.y) + y
        width = self._width or self.scrollable_content_region.width or self.size.width
        base = self._style("base")
        if index >= len(self.ids):
            return Strip.blank(width, base)
        item_id = self.ids[index]
        is_cursor = index == self.cursor
        is_marked = item_id in self.marked
        row = self.rows.get(item_id)
        if row is None:
            line_style = base + self._style("cursor") if is_cursor else base
            text = ("▶" if is_cursor else " ") + (MARK_ON if is_marked else MARK_OFF) + " loading…"
            return Strip([Segment(fit(text, width), line_style + self._style("dim"))], width)
        key = (item_id, self._version.get(item_id, 0), width, is_cursor, is_marked, self.has_focus)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._render_row(row, width, is_cursor, is_marked)
            self._strips.set(key, strip)
        return strip

    def _render_row(self, row: CostRow, width: int, is_cursor: bool, is_marked: bool) -> Strip:
        base = self._style("base")
        line = base
        if is_marked:
            line = line + self._style("marked")
        if is_cursor:
            line = line + self._style("cursor")
        narrow = width < 100
        segments: list[Segment] = []
        first = True
        for col in self._columns:
            if not first and col.key != "identifier":  # no space between Mark and Service ID
                segments.append(Segment(" ", line))
            first = False
            style = line
            if col.key == "select":
                text = ("▶" if is_cursor else " ") + (MARK_ON if is_marked else MARK_OFF)
            elif col.key == "identifier":
                text = row.identifier
            elif col.key == "name":
                text = row.name
            elif col.key == "contracts":
                text = str(row.contracts)
            elif col.key == "catalog_cost":
                text = display.amount(row.catalog_cost)
            elif col.key == "vendor_cost":
                mark = (
                    display.SOURCE_MARKS.get(row.vendor_source.kind, "?")
                    if row.vendor_source
                    else " "
                )
                text = display.amount(row.vendor_cost) + " " + mark
                if row.vendor_cost is None:
                    style = line + self._style("dim")
            elif col.key == "change":
                text = display.change_text(row.change, row.change_pct, with_pct=True)
                if cell_len(text) > col.width:
                    text = display.change_text(row.change, row.change_pct, with_pct=False)
                d = display.direction(row.change)
                style = line + (self._style(d) if d in ("up", "down") else self._style("dim"))
            elif col.key == "price":
                text = display.amount(row.price) if row.price is not None else "—"
                if row.price is None:
                    style = line + self._style("dim")
            elif col.key == "margin":
                text = margin_text(row.margin_pct, narrow)
            elif col.key == "margin_after":
                low = row.below_margin_floor
                text = margin_text(row.margin_after_pct, narrow, low)
                if low:
                    style = line + self._style("bad")
            else:
                text = display.state_text(
                    row.state,
                    row.state_detail,
                    vendor=row.vendor_cost,
                    change=row.change,
                    narrow=narrow,
                )
                kind = display.state_kind(row.state)
                if text == "approve" and row.below_margin_floor:
                    text, kind = "approve !", "bad"  # a line would fall below the margin floor
                if kind == "idle":
                    kind = "approve" if text == "approve" else "dim"
                style = line + self._style(kind)
            segments.append(Segment(fit(text, col.width, col.right), style))
        strip = Strip(segments)
        return strip if strip.cell_length == width else strip.adjust_cell_length(width, line)
