"""Text from outside (file names, cells, PSA names) made safe for a terminal or a log line.

A price file named ``"x\\n2026-12-01 INFO forged line"`` or holding ESC/OSC sequences must not
forge log lines, clear a technician's screen or set the window title (issue 13 item 6). Control
characters are shown escaped, never interpreted. A leaf module (standard library only): the TUI
uses it too.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls (tab included: it realigns columns), DEL, C1 controls, and the Unicode line/paragraph
# separators and bidi overrides that reorder what a reader sees.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any) -> str:
    """``str(value)`` with every control character shown as an escape (``\\x1b``, ``\\x0a``)."""
    text = value if isinstance(value, str) else str(value)
    return _CONTROL.sub(_escape, text)


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None
