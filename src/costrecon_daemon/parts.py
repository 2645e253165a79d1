"""Attach the optional subsystems (inbox intake, reconciliation, push worker) to a Daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .service import Daemon


async def attach(daemon: Daemon) -> None:
    """Each part is a small object with optional ``start()``/``stop()``/``status(dict)``."""
    return None
