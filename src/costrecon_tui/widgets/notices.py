"""Notices: the app's notifications as lines above the footer instead of toasts over the table.

Textual's toasts float over the bottom-right of the screen, on top of the rows a technician is
reading, and stack without limit. Here at most three show at once, identical messages collapse
into one line with a count, and the view above shrinks by those lines rather than being covered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.text import Text
from textual.timer import Timer
from textual.widgets import Static

MAX_SHOWN = 3
MARKS = {"information": ("•", ""), "warning": ("!", "yellow"), "error": ("✗", "bold red")}


@dataclass
class Notice:
    message: str
    severity: str
    expires: float
    count: int = 1
    added: float = field(default_factory=time.monotonic)


class Notices(Static):
    DEFAULT_CSS = """
    Notices { height: auto; max-height: 3; background: $panel; padding: 0 1; display: none; }
    Notices.-shown { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.notices: list[Notice] = []
        self._timer: Timer | None = None

    def add(self, message: str, severity: str = "information", timeout: float = 5.0) -> None:
        now = time.monotonic()
        for n in self.notices:
            if n.message == message and n.severity == severity:
                n.count += 1
                n.expires = max(n.expires, now + timeout)
                # the repeated notice moves to the newest position
                self.notices.remove(n)
                self.notices.append(n)
                break
        else:
            self.notices.append(Notice(message, severity, now + timeout))
        self._show()

    def shown(self) -> list[Notice]:
        """The three newest notices: what the user sees."""
        return self.notices[-MAX_SHOWN:]

    def _expire(self) -> None:
        now = time.monotonic()
        before = len(self.notices)
        self.notices = [n for n in self.notices if n.expires > now]
        if len(self.notices) != before:
            self._show()

    def _show(self) -> None:
        shown = self.shown()
        t = Text(no_wrap=True, overflow="ellipsis")
        for i, n in enumerate(shown):
            mark, style = MARKS.get(n.severity, MARKS["information"])
            if i:
                t.append("\n")
            t.append(f"{mark} ", style=style)
            t.append(n.message, style=style)
            if n.count > 1:
                t.append(f" (×{n.count})", style="bold")
        self.update(t)
        self.set_class(bool(shown), "-shown")
        if shown and self._timer is None:
            self._timer = self.set_interval(0.25, self._expire)
        elif not shown and self._timer is not None:
            self._timer.stop()
            self._timer = None

    def clear(self) -> None:
        self.notices.clear()
        self._show()
