"""The Mappings view, from the catalogue's side (issue 15): catalogue items on live contract lines
with no vendor cost, most important first, each with ranked candidate vendor rows; the vendor rows
no item matched (paged, filterable by file or vendor) a key away; and the saved mappings.
Matching only *suggests*; a person confirms (DESIGN.md §3)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Input, OptionList, Static
from textual.widgets.option_list import Option

from costrecon_tui import keymap
from costrecon_tui.screens.dialogs import ConfirmScreen, FittedModal, dialog_css
from costrecon_tui.widgets import display
from costrecon_tui.widgets.errors import ReportsWorkerErrors
from costrecon_tui.widgets.tables import KeyTable

if TYPE_CHECKING:
    from costrecon_tui.app import CostreconApp


class SuggestionScreen(FittedModal[int | None]):
    """Pick the catalogue item for one unmatched vendor row: number keys or enter."""

    SCOPED_CSS = False
    DEFAULT_CSS = dialog_css("SuggestionScreen", "SuggestionScreen OptionList { height: auto; }")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="suggest.cancel"),
        *(
            Binding(str(n), f"pick({n})", f"Pick #{n}", show=False, id=f"suggest.pick{n}")
            for n in range(1, 10)
        ),
    ]

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        r = self.row
        head = Text()
        head.append(f"{r.get('vendor') or '—'} {r.get('sku') or '—'}", style="bold")
        head.append(f"  {r.get('description') or ''}\n")
        where = f"{r.get('file') or 'a price file'}" + (f" row {r['row']}" if r.get("row") else "")
        head.append(
            f"MPN {r.get('mpn') or '—'} · term {r.get('term') or '—'} · cost "
            f"{display.amount(_dec(r.get('cost')))} {r.get('currency') or ''} · {where}",
            style="dim",
        )
        options = [
            Option(
                f"{n}. {s.get('identifier') or '—':<16} {s.get('name') or ''}"
                + (f"  (score {s['score']})" if s.get("score") is not None else ""),
                id=str(n),  # by position: a repeated item id must not break the list
            )
            for n, s in enumerate(self._suggestions(), 1)
        ]
        with Vertical(id="dialog"):
            yield Static("Map this vendor row to a catalogue item", classes="title")
            yield Static(head)
            if options:
                yield OptionList(*options, id="suggestions", classes="fill")
                yield Static("1-9 or enter picks · ↑↓ move · esc cancels", classes="hint")
            else:
                yield Static(
                    "No catalogue item looks like this one. Check the SKU in the PSA, or add the "
                    "item there and sync.",
                    classes="fill",
                )
                yield Static("esc close", classes="hint")

    def _suggestions(self) -> list[dict[str, Any]]:
        # a suggestion without an item id cannot be picked: leave it out rather than fail
        return [s for s in self.row.get("suggestions") or [] if s and s.get("item_id") is not None]

    def action_pick(self, n: int) -> None:
        suggestions = self._suggestions()
        if 1 <= n <= len(suggestions):
            self.dismiss(int(suggestions[n - 1]["item_id"]))

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.action_pick(int(event.option.id or 0))

    def action_cancel(self) -> None:
        self.dismiss(None)


def _dec(value: Any) -> Decimal | None:
    try:
        return None if value is None else Decimal(str(value))
    except ArithmeticError:
        return None


UNMATCHED_PAGE = 200  # rows per page of the unmatched list: it is never loaded whole
SUGGEST_BATCH = 50  # rows per request for suggestions (the daemon's most)


def _best(r: dict[str, Any]) -> Text:
    """The unmatched row's best suggestion, for its column."""
    best = (r.get("suggestions") or [None])[0]
    if best:
        return Text(f"{best.get('identifier') or '—'} ({best.get('score') or '?'})")
    # null: not worked out yet (fill_suggestions asks for it)
    return Text("no suggestion" if r.get("suggestions") is not None else "…", style="dim")


NEEDS_PAGE = 200  # catalogue items: a few hundred at most
INDEXING_POLL = 3.0  # seconds between "still indexing?" checks after a big import


class MappingsView(ReportsWorkerErrors, Vertical):
    if TYPE_CHECKING:  # Textual types `app` as any App; every view runs in CostreconApp
        app = getters.app(CostreconApp)

    BINDINGS = cast("list[BindingType]", keymap.MAPPINGS)  # list is invariant

    DEFAULT_CSS = """
    MappingsView .pane-title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    MappingsView #needs-pane { height: 2fr; }
    MappingsView #needs-table { width: 1fr; }
    MappingsView #candidates-table { width: 1fr; }
    MappingsView #unmatched-pane { height: 2fr; display: none; }
    MappingsView #unmatched-table { height: 1fr; }
    MappingsView #mappings-table { height: 1fr; }
    MappingsView #mappings-search { height: 1; border: none; padding: 0 1; display: none; }
    MappingsView #mappings-search.shown { display: block; }
    MappingsView #not-found { height: auto; max-height: 2; color: $warning; padding: 0 1;
        display: none; }
    MappingsView.show-unmatched #needs-pane { display: none; }
    MappingsView.show-unmatched #unmatched-pane { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.needs: list[dict[str, Any]] = []
        self.needs_total = 0
        self.candidates: list[dict[str, Any]] = []
        self.searching = ""  # typed text: the candidates list shows search results instead
        self.unmatched: list[dict[str, Any]] = []
        self.pages: list[int | None] = [None]  # "before" cursors of the pages seen, for going back
        self.next_before: int | None = None
        self.filter: tuple[str, Any, str] | None = None  # ("import_id"|"vendor", value, label)
        self.mappings: list[dict[str, Any]] = []
        # What a distributor API said it could not price at its last pull, by catalogue item id
        # and by saved-mapping id (the pull's `vendor:` and `map:` keys; issue 16).
        self.not_found_items: dict[int, list[str]] = {}
        self.not_found_maps: dict[int, list[str]] = {}
        self.loaded = False
        # The daemon is still indexing the newest vendor rows for search (after a big import):
        # candidates and search results may miss some of them for a while.
        self.indexing = False
        self._indexing_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static("Needs a vendor cost", classes="pane-title", id="needs-title")
        yield Input(placeholder="search vendor rows by SKU, MPN or words", id="mappings-search")
        yield Static("", id="not-found")
        with Horizontal(id="needs-pane"):
            t0: DataTable[Any] = KeyTable(cursor_type="row", id="needs-table", flex="name")
            t0.add_column("Name", width=26, key="name")
            t0.add_column("PSA ID", width=12, key="identifier")
            t0.add_column("Lines", width=5, key="lines")
            t0.add_column("Cost", width=8, key="cost")
            yield t0
            tc: DataTable[Any] = KeyTable(
                cursor_type="row", id="candidates-table", flex="description"
            )
            tc.add_column("Vendor", width=10, key="vendor")
            tc.add_column("SKU", width=15, key="sku")
            tc.add_column("Description", width=24, key="description")
            tc.add_column("Cost", width=8, key="cost")
            tc.add_column("Why", width=7, key="why")
            yield tc
        with Vertical(id="unmatched-pane"):
            t1: DataTable[Any] = KeyTable(
                cursor_type="row", id="unmatched-table", flex="description"
            )
            t1.add_column("Vendor", width=12, key="vendor")
            t1.add_column("SKU", width=17, key="sku")
            t1.add_column("Description", width=30, key="description")
            t1.add_column("Cost", width=8, key="cost")
            t1.add_column("Best suggestion", width=20, key="best")
            yield t1
        yield Static("Saved mappings — d: delete", classes="pane-title", id="mappings-title")
        t2: DataTable[Any] = KeyTable(cursor_type="row", id="mappings-table", flex="name")
        t2.add_column("Vendor", width=12, key="vendor")
        t2.add_column("SKU", width=17, key="sku")
        t2.add_column("Term", width=8, key="term")
        t2.add_column("→ PSA ID", width=15, key="identifier")
        t2.add_column("Name", width=30, key="name")
        t2.add_column("By", width=8, key="by")
        t2.add_column("When", width=display.STAMP_WIDTH, key="when")
        yield t2

    @property
    def needs_table(self) -> DataTable[Any]:
        return self.query_one("#needs-table", DataTable)

    @property
    def candidates_table(self) -> DataTable[Any]:
        return self.query_one("#candidates-table", DataTable)

    @property
    def unmatched_table(self) -> DataTable[Any]:
        return self.query_one("#unmatched-table", DataTable)

    @property
    def mappings_table(self) -> DataTable[Any]:
        return self.query_one("#mappings-table", DataTable)

    @property
    def showing_unmatched(self) -> bool:
        return self.has_class("show-unmatched")

    def focus_main(self) -> None:
        (self.unmatched_table if self.showing_unmatched else self.needs_table).focus()

    def reload(self) -> None:
        self.load()

    def _set_indexing(self, page: dict[str, Any]) -> None:
        """While the daemon indexes new vendor rows, ask every few seconds whether it is done,
        then load again (or search again) so the rows it indexed show up by themselves."""
        self.indexing = page.get("names_indexed") is False
        if self.indexing and self._indexing_timer is None:
            self._indexing_timer = self.set_interval(INDEXING_POLL, self._check_indexing)

    @work(exclusive=True, group="mappings-indexing", exit_on_error=False)
    async def _check_indexing(self) -> None:
        page = await self.app.client.mapping_needs(0, 1, 0)
        if page.get("names_indexed") is False:
            return
        if self._indexing_timer is not None:
            self._indexing_timer.stop()
            self._indexing_timer = None
        self.indexing = False
        if self.searching:
            self.search(self.searching)
        else:
            self.load()

    on_reconnected = reload

    # ------------------------------------------------------------------------ loading

    @work(exclusive=True, group="mappings-load", exit_on_error=False)
    async def load(self) -> None:
        client = self.app.client
        page = await client.mapping_needs(0, NEEDS_PAGE)
        self.needs, self.needs_total = page["items"], page["total"]
        self._set_indexing(page)
        self.mappings = await client.mappings()
        self._read_not_found(await client.status())
        self.loaded = True
        t0 = self.needs_table
        keep0 = t0.cursor_row
        t0.clear()
        for n, it in enumerate(self.needs):
            t0.add_row(
                Text(it.get("name") or "", overflow="ellipsis"),
                it.get("identifier") or "—",
                Text(str(it.get("lines") or 0), justify="right"),
                Text(display.amount(_dec(it.get("cost"))), justify="right"),
                key=str(n),
            )
        if t0.row_count:
            t0.move_cursor(row=min(keep0, t0.row_count - 1), animate=False)
        shown = len(self.needs)
        more = f", first {shown} shown" if shown < self.needs_total else ""
        self.query_one("#needs-title", Static).update(
            f"Needs a vendor cost ({self.needs_total}{more}) — enter on a candidate maps it · "
            "/ search · u unmatched rows"
        )
        self._show_candidates()
        self._fill_mappings()
        if self.showing_unmatched:
            self.load_unmatched(self.pages[-1])

    def _read_not_found(self, status: dict[str, Any]) -> None:
        items: dict[int, list[str]] = {}
        maps: dict[int, list[str]] = {}
        for src in ((status or {}).get("vendors") or {}).get("sources") or []:
            for nf in src.get("not_found") or []:
                said = f"{display.plain(nf.get('identifier'))} — {display.plain(nf.get('reason'))}"
                for key in nf.get("keys") or []:
                    kind, _, raw = str(key).partition(":")
                    if raw.isdigit() and kind in ("vendor", "map"):
                        (items if kind == "vendor" else maps).setdefault(int(raw), []).append(said)
        self.not_found_items, self.not_found_maps = items, maps

    def _fill_mappings(self) -> None:
        t2 = self.mappings_table
        keep2 = t2.cursor_row
        t2.clear()
        missing = 0
        for m in self.mappings:
            gone = m.get("id") in self.not_found_maps
            missing += gone
            t2.add_row(
                m.get("vendor") or "—",
                Text(f"✗ {m.get('sku') or '—'}", style="bold") if gone else m.get("sku") or "—",
                m.get("term") or "",
                m.get("identifier") or "",
                Text(m.get("name") or "", overflow="ellipsis"),
                m.get("created_by") or "",
                display.stamp(m.get("created_at"), self.app.now()),
                key=str(m["id"]),
            )
        if t2.row_count:
            t2.move_cursor(row=min(keep2, t2.row_count - 1), animate=False)
        flagged = f" · ✗ {missing} not found at the last pull" if missing else ""
        self.query_one("#mappings-title", Static).update(
            f"Saved mappings ({len(self.mappings)}) — d: delete{flagged}"
        )

    def _current_item(self) -> dict[str, Any] | None:
        t = self.needs_table
        if not t.row_count or not self.needs:
            return None
        return self.needs[min(t.cursor_row, len(self.needs) - 1)]

    def _show_candidates(self, rows: list[dict[str, Any]] | None = None) -> None:
        if rows is None:
            item = self._current_item()
            rows = list((item or {}).get("candidates") or [])
        self.candidates = rows
        self._show_not_found(self._current_item())
        tc = self.candidates_table
        tc.clear()
        for n, c in enumerate(rows):
            tc.add_row(
                c.get("vendor") or "—",
                c.get("sku") or "—",
                Text(c.get("description") or "", overflow="ellipsis"),
                Text(display.amount(_dec(c.get("cost"))), justify="right"),
                c.get("reason") or "",
                key=str(n),
            )

    def _show_not_found(self, item: dict[str, Any] | None) -> None:
        """The distributor's own word on the highlighted item, when its last pull asked for it
        and got no price: the candidates below are then the way to a cost."""
        said = self.not_found_items.get((item or {}).get("item_id") or -1, [])
        lines = [f"Not priced at the last pull: {'; '.join(said)}"] if said else []
        if self.indexing:
            lines.append(
                "The newest vendor rows are still being indexed: some may be missing here."
            )
        note = self.query_one("#not-found", Static)
        note.update("\n".join(lines))
        note.display = bool(lines) and not self.showing_unmatched

    @on(DataTable.RowHighlighted, "#needs-table")
    def _item_moved(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if not self.searching:
            self._show_candidates()

    @work(exclusive=True, group="mappings-unmatched", exit_on_error=False)
    async def load_unmatched(self, before: int | None) -> None:
        kind, value, _label = self.filter or (None, None, "")
        t1 = self.unmatched_table
        page = await self.app.client.unmatched_page(
            UNMATCHED_PAGE,
            before=before,
            import_id=value if kind == "import_id" else None,
            vendor=value if kind == "vendor" else None,
            # the daemon works out suggestions for the rows the table shows first; the rest
            # follow (fill_suggestions) so the page itself answers at once
            suggest=min(SUGGEST_BATCH, t1.size.height - 1) if t1.size.height > 1 else None,
        )
        if not self.showing_unmatched:
            return  # `u` went back to the items while the page was on its way: the title is theirs
        self.unmatched = page["rows"]
        self.next_before = page.get("before")
        t1.clear()
        for n, r in enumerate(self.unmatched):
            t1.add_row(
                r.get("vendor") or "—",
                r.get("sku") or "—",
                Text(r.get("description") or "", overflow="ellipsis"),
                Text(display.amount(_dec(r.get("cost"))), justify="right"),
                _best(r),
                key=str(n),
            )
        where = f" of {self.filter[2]}" if self.filter else ""
        self.query_one("#needs-title", Static).update(
            f"Unmatched vendor rows{where}, page {len(self.pages)} ({len(self.unmatched)} rows"
            f"{', more: ]' if self.next_before else ''}) — enter maps · f filter · u items"
        )
        self.fill_suggestions()

    @work(exclusive=True, group="mappings-suggest", exit_on_error=False)
    async def fill_suggestions(self) -> None:
        """Ask the daemon for the suggestions the page left out: the rows on screen first, then
        the rest of the page, a batch at a time (a new page cancels this)."""
        rows = self.unmatched
        t1 = self.unmatched_table
        first = t1.scroll_offset.y
        order = sorted(
            (n for n, r in enumerate(rows) if r.get("suggestions") is None),
            key=lambda n: (not first <= n < first + t1.size.height, n),
        )
        for start in range(0, len(order), SUGGEST_BATCH):
            batch = order[start : start + SUGGEST_BATCH]
            got = await self.app.client.unmatched_suggestions(
                [int(rows[n]["vendor_cost_id"]) for n in batch]
            )
            if rows is not self.unmatched:
                return  # another page is on screen
            for n in batch:
                suggestions = got.get(int(rows[n]["vendor_cost_id"]))
                if suggestions is not None:
                    rows[n]["suggestions"] = suggestions
                    t1.update_cell(str(n), "best", _best(rows[n]))

    # ------------------------------------------------------------------------ actions

    def action_toggle_list(self) -> None:
        self.toggle_class("show-unmatched")
        if self.showing_unmatched:
            self.query_one("#not-found").display = False
            self.pages = [None]
            self.load_unmatched(None)
        else:
            self.load()
        self.call_after_refresh(self.focus_main)  # once the other list is on screen

    def action_next_page(self) -> None:
        if not self.showing_unmatched:
            return
        if self.next_before is None:
            self.notify("This is the last page of unmatched rows.", timeout=3)
            return
        self.pages.append(self.next_before)
        self.load_unmatched(self.next_before)

    def action_first_page(self) -> None:
        if self.showing_unmatched:
            self.pages = [None]
            self.load_unmatched(None)

    def action_filter(self) -> None:
        """No filter → the cursor row's file → its vendor → no filter."""
        if not self.showing_unmatched:
            return
        t = self.unmatched_table
        row = self.unmatched[t.cursor_row] if t.row_count and self.unmatched else None
        if self.filter is None and row is not None and row.get("import_id"):
            self.filter = ("import_id", row["import_id"], row.get("file") or "one file")
        elif (self.filter is None or self.filter[0] == "import_id") and row is not None:
            self.filter = ("vendor", row.get("vendor"), row.get("vendor") or "one vendor")
        else:
            self.filter = None
        self.pages = [None]
        self.load_unmatched(None)

    def action_search(self) -> None:
        box = self.query_one("#mappings-search", Input)
        box.add_class("shown")
        self.screen.set_focus(box)  # at once: keys typed with "/" follow (TypeAhead)

    def action_leave_search(self) -> None:
        """esc: close the search (typed text and its results go), back to the items list."""
        box = self.query_one("#mappings-search", Input)
        if not (box.has_class("shown") or self.searching):
            return
        box.value = ""  # Input.Changed follows: search("") shows the item's candidates again
        box.remove_class("shown")
        self.searching = ""
        self.focus_main()

    @on(Input.Changed, "#mappings-search")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self.search(event.value.strip())

    @on(Input.Submitted, "#mappings-search")
    def _search_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.candidates_table.focus()

    @work(exclusive=True, group="mappings-search", exit_on_error=False)
    async def search(self, text: str) -> None:
        self.searching = text
        if self.showing_unmatched:
            self.toggle_class("show-unmatched")
        if not text:
            self._show_candidates()
            return
        page = await self.app.client.mapping_search(text)
        self._set_indexing(page)
        self._show_candidates(page["rows"])

    def action_switch_pane(self) -> None:
        order = [
            self.unmatched_table if self.showing_unmatched else self.needs_table,
            *([] if self.showing_unmatched else [self.candidates_table]),
            self.mappings_table,
        ]
        now = next((n for n, t in enumerate(order) if t.has_focus), -1)
        order[(now + 1) % len(order)].focus()

    def action_reload(self) -> None:
        self.load()

    def action_pick(self) -> None:
        if self.needs_table.has_focus:
            if self.candidates_table.row_count:
                self.candidates_table.focus()
            else:
                self.notify(
                    "No vendor row looks like this item; press / to search for it.",
                    severity="warning",
                )
            return
        if self.candidates_table.has_focus:
            if self.candidates_table.row_count and self.candidates:
                self.map_candidate(self.candidates[self.candidates_table.cursor_row])
            return
        t = self.unmatched_table
        if not t.has_focus or not t.row_count:
            if self.mappings_table.has_focus:
                self.notify(
                    "Enter maps an item or an unmatched row; w switches panes.",
                    severity="warning",
                )
            return
        self.pick(self.unmatched[t.cursor_row])

    @on(DataTable.RowSelected, "#needs-table, #candidates-table, #unmatched-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_pick()

    @on(DataTable.RowSelected, "#mappings-table")
    def _selected_mapping(self, event: DataTable.RowSelected) -> None:
        event.stop()

    @work(exclusive=True, group="mappings-pick", exit_on_error=False)
    async def map_candidate(self, cand: dict[str, Any]) -> None:
        item = self._current_item()
        if item is None:
            return
        m = await self.app.client.create_mapping(
            cand["vendor"], cand["sku"], cand.get("term"), int(item["item_id"])
        )
        self.notify(
            f"Mapped {cand.get('vendor')} {cand.get('sku')} → {m.get('identifier')}; "
            "its cost now counts.",
            timeout=4,
        )
        self.searching = ""
        box = self.query_one("#mappings-search", Input)
        box.value = ""
        box.remove_class("shown")
        self.needs_table.focus()
        self.load()

    @work(exclusive=True, group="mappings-pick", exit_on_error=False)
    async def pick(self, row: dict[str, Any]) -> None:
        if row.get("suggestions") is None:  # not worked out yet: ask for this row's now
            got = await self.app.client.unmatched_suggestions([int(row["vendor_cost_id"])])
            row["suggestions"] = got.get(int(row["vendor_cost_id"]), [])
        item_id = await self.app.push_screen_wait(SuggestionScreen(row))
        if item_id is None:
            return
        m = await self.app.client.create_mapping(
            row["vendor"], row["sku"], row.get("term"), item_id
        )
        self.notify(
            f"Mapped {row.get('vendor')} {row.get('sku')} → {m.get('identifier')}; its cost now "
            "counts.",
            timeout=4,
        )
        self.load()

    def action_delete(self) -> None:
        t = self.mappings_table
        if not t.has_focus:
            self.notify(
                "Deleting works on saved mappings; press w to switch to that pane.",
                severity="warning",
            )
            return
        if not t.row_count:
            return
        self.delete(self.mappings[t.cursor_row])

    @work(exclusive=True, group="mappings-delete", exit_on_error=False)
    async def delete(self, m: dict[str, Any]) -> None:
        ok = await self.app.push_screen_wait(
            ConfirmScreen(
                f"Delete mapping {m.get('vendor')} {m.get('sku')} → {m.get('identifier')}?",
                "Its vendor rows become unmatched again until someone maps them.",
            )
        )
        if not ok:
            return
        await self.app.client.delete_mapping(m["id"])
        self.notify(f"Deleted mapping {m.get('vendor')} {m.get('sku')}.", timeout=3)
        self.load()
