"""The Mappings view: vendor rows no catalogue item matched (with ranked suggestions), and the
saved vendor-SKU → item mappings. Matching only *suggests*; a person confirms (DESIGN.md §3)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, OptionList, Static
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


class MappingsView(ReportsWorkerErrors, Vertical):
    if TYPE_CHECKING:  # Textual types `app` as any App; every view runs in CostreconApp
        app = getters.app(CostreconApp)

    BINDINGS = cast("list[BindingType]", keymap.MAPPINGS)  # list is invariant

    DEFAULT_CSS = """
    MappingsView .pane-title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    MappingsView #unmatched-table { height: 1fr; }
    MappingsView #mappings-table { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.unmatched: list[dict[str, Any]] = []
        self.mappings: list[dict[str, Any]] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static(
            "Unmatched vendor rows — enter: map to a suggested item",
            classes="pane-title",
            id="unmatched-title",
        )
        t1: DataTable[Any] = KeyTable(cursor_type="row", id="unmatched-table", flex="description")
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
    def unmatched_table(self) -> DataTable[Any]:
        return self.query_one("#unmatched-table", DataTable)

    @property
    def mappings_table(self) -> DataTable[Any]:
        return self.query_one("#mappings-table", DataTable)

    def focus_main(self) -> None:
        self.unmatched_table.focus()

    def reload(self) -> None:
        self.load()

    on_reconnected = reload

    @work(exclusive=True, group="mappings-load", exit_on_error=False)
    async def load(self) -> None:
        client = self.app.client
        self.unmatched = await client.unmatched()
        self.mappings = await client.mappings()
        self.loaded = True
        t1 = self.unmatched_table
        keep1 = t1.cursor_row
        t1.clear()
        for n, r in enumerate(self.unmatched):
            best = (r.get("suggestions") or [None])[0]
            t1.add_row(
                r.get("vendor") or "—",
                r.get("sku") or "—",
                Text(r.get("description") or "", overflow="ellipsis"),
                Text(display.amount(_dec(r.get("cost"))), justify="right"),
                Text(
                    f"{best.get('identifier') or '—'} ({best.get('score') or '?'})"
                    if best
                    else "no suggestion",
                    style="" if best else "dim",
                ),
                key=str(n),
            )
        if t1.row_count:
            t1.move_cursor(row=min(keep1, t1.row_count - 1), animate=False)
        t2 = self.mappings_table
        keep2 = t2.cursor_row
        t2.clear()
        for m in self.mappings:
            t2.add_row(
                m.get("vendor") or "—",
                m.get("sku") or "—",
                m.get("term") or "",
                m.get("identifier") or "",
                Text(m.get("name") or "", overflow="ellipsis"),
                m.get("created_by") or "",
                display.stamp(m.get("created_at"), self.app.now()),
                key=str(m["id"]),
            )
        if t2.row_count:
            t2.move_cursor(row=min(keep2, t2.row_count - 1), animate=False)
        self.query_one("#unmatched-title", Static).update(
            f"Unmatched vendor rows ({len(self.unmatched)}) — enter: map to a suggested item"
        )
        self.query_one("#mappings-title", Static).update(
            f"Saved mappings ({len(self.mappings)}) — d: delete"
        )

    def action_switch_pane(self) -> None:
        if self.unmatched_table.has_focus:
            self.mappings_table.focus()
        else:
            self.unmatched_table.focus()

    def action_reload(self) -> None:
        self.load()

    def action_pick(self) -> None:
        t = self.unmatched_table
        if not t.has_focus or not t.row_count:
            if self.mappings_table.has_focus:
                self.notify(
                    "Enter maps an unmatched row; w switches to that pane.", severity="warning"
                )
            return
        self.pick(self.unmatched[t.cursor_row])

    @on(DataTable.RowSelected, "#unmatched-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_pick()

    @on(DataTable.RowSelected, "#mappings-table")
    def _selected_mapping(self, event: DataTable.RowSelected) -> None:
        event.stop()

    @work(exclusive=True, group="mappings-pick", exit_on_error=False)
    async def pick(self, row: dict[str, Any]) -> None:
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
