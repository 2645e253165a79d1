"""Small modal screens: text detail, yes/no confirmation, help, and the not-running screen."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.css.scalar import Scalar
from textual.screen import ModalScreen, Screen, ScreenResultType
from textual.widget import Widget
from textual.widgets import Button, Footer, Header, Static

from costrecon_tui import keymap
from costrecon_tui.widgets.errors import StaysUp


def dialog_css(name: str, extra: str = "") -> str:
    return f"""
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 100; max-width: 100%; height: auto; max-height: 100%;
    border: thick $primary; background: $surface; padding: 0 1;
}}
{name} .title {{ text-style: bold; height: auto; }}
{name} .fill {{ height: auto; }}
{name} .buttons {{ height: 1; margin-top: 1; }}
{name} Button {{ margin-right: 2; }}
{name} .hint {{ color: $text-muted; height: 1; }}
{extra}
"""


class FittedModal(StaysUp, ModalScreen[ScreenResultType]):
    """A dialog that always fits the terminal: the one ``.fill`` child (the long list) gets the
    rows the other parts leave, so the confirm button and its key hint stay on screen at 80×24
    while the list scrolls inside the dialog.

    Textual cannot express "auto height, but at most what is left" in CSS (``max-height: 1fr`` is
    ignored in an auto-height container), so the limit is computed from the laid-out siblings.
    """

    BINDINGS = [
        Binding("up", "scroll_fill(-1)", "Scroll up", show=False, id="dialog.up"),
        Binding("down", "scroll_fill(1)", "Scroll down", show=False, id="dialog.down"),
        Binding("pageup", "scroll_fill(-10)", "Page up", show=False, id="dialog.page_up"),
        Binding("pagedown", "scroll_fill(10)", "Page down", show=False, id="dialog.page_down"),
    ]

    def action_scroll_fill(self, rows: int) -> None:
        try:
            fill = self.query_one("#dialog .fill")
        except NoMatches:
            return
        if abs(rows) > 1:
            rows = (rows // abs(rows)) * max(1, fill.size.height - 1)
        fill.scroll_relative(y=rows, animate=False)

    def on_resize(self) -> None:
        self.call_after_refresh(self.fit)

    def on_mount(self) -> None:
        self.call_after_refresh(self.fit)

    def fit(self) -> None:
        if not self.is_mounted:
            return
        try:
            box = self.query_one("#dialog", Vertical)
            fill = box.query_one(".fill")
        except NoMatches:
            return
        reserved = box.styles.border.spacing.height + box.styles.padding.height
        for child in box.children:
            if not child.display:
                continue
            margin = child.styles.margin
            reserved += margin.top + margin.bottom
            if child is not fill:
                reserved += child.outer_size.height
        limit = max(1, self.size.height - reserved)
        if fill.styles.max_height != Scalar.from_number(limit):
            fill.styles.max_height = limit


class TextScreen(FittedModal[None]):
    """A read-only detail (item info, conflict reason, activity entry…); esc/enter/q closes."""

    SCOPED_CSS = False
    DEFAULT_CSS = dialog_css("TextScreen")
    BINDINGS = [Binding("escape,enter,q,i,r", "close", "Close", id="dialog.close")]

    def __init__(
        self, title: str, body: str | Text | Table, *, extra: Iterable[Widget] = ()
    ) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.extra = list(extra)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.title_text, classes="title")
            with VerticalScroll(classes="fill"):
                yield Static(self.body, id="body")
                yield from self.extra
            yield Static("esc close · ↑↓ scroll", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)


class ConfirmScreen(FittedModal[bool]):
    SCOPED_CSS = False
    DEFAULT_CSS = dialog_css("ConfirmScreen")
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("escape,n", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, detail: str | Text = "", *, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question, classes="title")
            with VerticalScroll(classes="fill"):
                yield Static(self.detail or "")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes", compact=True)
                yield Button("No (n)", id="no", compact=True)
            yield Static("y yes · n/esc no", classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class HelpScreen(FittedModal[None]):
    """Every binding active in the current view (captured when ? was pressed), with its id."""

    SCOPED_CSS = False
    DEFAULT_CSS = dialog_css("HelpScreen")
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help.close")]

    def __init__(
        self, view_title: str, bindings: list[tuple[str, str, str]], extra: Text | None = None
    ) -> None:
        super().__init__()
        self.view_title = view_title
        self.bindings_list = bindings
        self.extra_text = extra

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, header_style="bold", pad_edge=False)
        table.add_column("Key", no_wrap=True)
        table.add_column("Does", ratio=1)
        table.add_column("Id (for keymap in config)", no_wrap=True, style="dim")
        for key, desc, bid in self.bindings_list:
            table.add_row(key, desc, bid)
        legend = Text(
            "\nVendor cost marks: ✎ manual · ↓ imported from a price file · ⇄ distributor API.  "
            "Change: ▲ increase (costs more) · ▼ decrease.  ▶ cursor · [x] marked.",
            style="dim",
        )
        with Vertical(id="dialog"):
            yield Static(f"Keys — {self.view_title}", classes="title")
            with VerticalScroll(classes="fill"):
                yield Static(table)
                yield Static(legend)
                if self.extra_text is not None:
                    yield Static(self.extra_text)
            yield Static("esc close · ↑↓ scroll", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)


class NotRunningScreen(StaysUp, Screen[None]):
    """Shown while costrecond does not answer; the app retries every ~2 s and closes this itself."""

    BINDINGS = cast("list[BindingType]", keymap.NOT_RUNNING)  # list is invariant
    DEFAULT_CSS = """
    NotRunningScreen { align: center middle; }
    NotRunningScreen > Vertical {
        width: 76; max-width: 100%; height: auto; border: thick $error; padding: 1 2;
        background: $surface;
    }
    NotRunningScreen #nr-title { text-style: bold; color: $error; }
    NotRunningScreen #nr-status { color: $text-muted; margin-top: 1; }
    """

    def __init__(
        self, message: str, *, can_start: bool, attempts: int = 1, retry_seconds: float = 2.0
    ) -> None:
        super().__init__()
        self.message = message
        self.can_start = can_start
        self.attempts = attempts
        self.retry_seconds = retry_seconds

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static("✗ costrecond is not running", id="nr-title")
            yield Static(self._body(), id="nr-body")
            yield Static(self._status(), id="nr-status")
        yield Footer()

    def _body(self) -> Text:
        t = Text()
        # the client's message already names the start commands; show only its first clause here
        t.append(self.message.split("; start it with")[0].rstrip(".") + ".\n\n")
        t.append("Start it in another terminal with one of:\n")
        t.append("    costrecond start\n", style="bold")
        t.append("    systemctl --user start costrecond\n", style="bold")
        t.append("\nThis screen reconnects by itself as soon as the daemon answers.")
        if self.can_start:
            t.append("\nPress ")
            t.append("s", style="bold reverse")
            t.append(" to start it from here.")
        return t

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start_daemon" and not self.can_start:
            return None
        return True

    def show_attempt(self, attempts: int, message: str | None = None) -> None:
        self.attempts = attempts
        if message and message != self.message:
            self.message = message
            self.query_one("#nr-body", Static).update(self._body())
        self.query_one("#nr-status", Static).update(self._status())

    def _status(self) -> str:
        return f"retrying every {self.retry_seconds:g} s · attempt {self.attempts}"

    def action_start_daemon(self) -> None:
        self.app.start_daemon_now()  # type: ignore[attr-defined]

    def action_retry(self) -> None:
        self.app.retry_now()  # type: ignore[attr-defined]


class ErrorScreen(FittedModal[None]):
    """An unexpected failure inside the TUI: one sentence, where the details went, and the app
    keeps running underneath (the alternative, Textual's default, ends the session)."""

    SCOPED_CSS = False
    DEFAULT_CSS = dialog_css(
        "ErrorScreen", "ErrorScreen > Vertical { border: thick $error; width: 76; }"
    )
    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="error.close")]

    def __init__(self, message: str, log_path: str | None) -> None:
        super().__init__()
        self.message = message
        self.log_path = log_path

    def compose(self) -> ComposeResult:
        t = Text()
        t.append(self.message + "\n\n")
        if self.log_path:
            t.append("Details are in ")
            t.append(self.log_path, style="bold")
            t.append(".\n")
        else:
            t.append("Details were not logged (no log file is configured).\n")
        t.append("costrecon is still running: press esc to close this and carry on.")
        with Vertical(id="dialog"):
            yield Static("✗ Something went wrong in costrecon", classes="title")
            with VerticalScroll(classes="fill"):
                yield Static(t)
            yield Static("esc close", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
