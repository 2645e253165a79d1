"""The Files view: price files taken from the inbox, imported or failed, with their error
reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from rich.table import Table
from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from costrecon_tui import keymap
from costrecon_tui.widgets import display
from costrecon_tui.widgets.errors import ReportsWorkerErrors
from costrecon_tui.widgets.tables import KeyTable

if TYPE_CHECKING:
    from costrecon_tui.app import CostreconApp

STATUS = {
    "imported": ("✓ imported", "green"),
    "failed": ("✗ failed", "bold red"),
    "duplicate": ("= duplicate", "yellow"),
}


class FilesView(ReportsWorkerErrors, Vertical):
    if TYPE_CHECKING:  # Textual types `app` as any App; every view runs in CostreconApp
        app = getters.app(CostreconApp)

    BINDINGS = cast("list[BindingType]", keymap.FILES)  # list is invariant

    DEFAULT_CSS = """
    FilesView DataTable { height: 1fr; }
    FilesView #files-line { height: 1; background: $panel; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.imports: dict[int, dict[str, Any]] = {}
        self.inbox: dict[str, Any] = {}
        self.loaded = False

    def compose(self) -> ComposeResult:
        table: DataTable[Any] = KeyTable(cursor_type="row", id="files-table", flex="message")
        table.add_column("Received", key="at", width=display.STAMP_WIDTH)
        table.add_column("File", key="file", width=26)
        table.add_column("Status", key="status", width=11)
        table.add_column("Vendor", key="vendor", width=10)
        table.add_column("Rows", key="rows", width=9)
        table.add_column("Matched", key="matched", width=7)
        table.add_column("Message", key="message", width=40)
        yield table
        yield Static(id="files-line")

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one(DataTable)

    def focus_main(self) -> None:
        self.table.focus()

    def reload(self) -> None:
        self.load()

    on_reconnected = reload

    def set_inbox(self, inbox: dict[str, Any]) -> None:
        self.inbox = inbox or {}
        self._update_line()

    @work(exclusive=True, group="files-load", exit_on_error=False)
    async def load(self) -> None:
        self.table.loading = not self.loaded
        try:
            imports = await self.app.client.imports()
        finally:
            self.table.loading = False
        self.loaded = True
        self.imports = {i["id"]: i for i in imports}
        table = self.table
        keep = table.cursor_row
        table.clear()
        for i in imports:
            label, style = STATUS.get(i.get("status"), (i.get("status") or "—", ""))
            table.add_row(
                display.stamp(i.get("received_at"), self.app.now()),
                Text(i.get("file_name") or "", overflow="ellipsis"),
                Text(label, style=style),
                i.get("vendor") or "—",
                f"{i.get('rows_imported', 0)}/{i.get('rows_total', 0)}",
                str(i.get("rows_matched", 0)),
                Text(display.plain(i.get("message") or ""), overflow="ellipsis"),
                key=str(i["id"]),
            )
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1), animate=False)
        now = self.app.now()
        widest = max((len(display.stamp(i.get("received_at"), now)) for i in imports), default=5)
        table.set_column_width("at", max(8, widest))  # type: ignore[attr-defined]
        self._update_line()

    def _update_line(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        failed = sum(1 for i in self.imports.values() if i.get("status") == "failed")
        t.append(f"{len(self.imports)} files")
        if failed:
            t.append(f" · {failed} failed", style="bold red")
        if self.inbox:
            t.append(f" · drop price files into {self.inbox.get('path')}")
            if self.inbox.get("pending"):
                t.append(f" ({self.inbox['pending']} waiting)")
        t.append(" · enter shows the error report")
        self.query_one("#files-line", Static).update(t)

    def action_reload(self) -> None:
        self.load()

    def action_detail(self) -> None:
        table = self.table
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if key is not None:
            self.show_detail(int(key))

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_detail()

    @work(exclusive=True, group="files-detail", exit_on_error=False)
    async def show_detail(self, import_id: int) -> None:
        from costrecon_tui.screens.dialogs import TextScreen

        d = await self.app.client.import_detail(import_id)
        label, style = STATUS.get(d.get("status"), (d.get("status") or "—", ""))
        t = Text()
        t.append(f"{d.get('file_name')}  ", style="bold")
        t.append(label, style=style)
        t.append(
            f"\nvendor {d.get('vendor') or '—'} · profile {d.get('profile') or '—'} · received "
            f"{display.stamp(d.get('received_at'), self.app.now())} UTC"
        )
        t.append(
            f"\nrows {d.get('rows_total', 0)} · imported {d.get('rows_imported', 0)} · matched "
            f"{d.get('rows_matched', 0)}"
        )
        t.append(f"\nfile now at {d.get('final_path') or '—'}")
        if d.get("message"):
            t.append(
                f"\n\n{display.plain(d['message'])}",
                style="bold" if d.get("status") == "failed" else "",
            )
        extra = []
        errors = d.get("errors") or []
        if errors:
            table = Table(
                box=None, expand=True, header_style="bold", pad_edge=False, title_justify="left"
            )
            table.add_column("Row", justify="right", no_wrap=True)
            table.add_column("Column", no_wrap=True)
            table.add_column("Problem", ratio=1)
            for e in errors:
                e = e if isinstance(e, dict) else {"message": e}
                table.add_row(
                    str(e.get("row") or ""),
                    str(e.get("column") or ""),
                    display.plain(e.get("message") or ""),
                )
            extra = [
                Static(
                    Text(f"\n{len(errors)} problem{'s' if len(errors) != 1 else ''}:", style="bold")
                ),
                Static(table),
            ]
            t.append("\n\nFix the rows below and drop the file into the inbox again.", style="dim")
        self.app.push_screen(TextScreen(f"Import #{import_id}", t, extra=extra))
