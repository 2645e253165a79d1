"""Attach the subsystems (reconciliation + push, inbox intake) to a Daemon.

Each part is a small object with optional ``start()`` (a long-running coroutine), ``stop()``,
``status(dict)`` (adds its figures to GET /v1/status) and ``routes`` (its API routes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .changes import PushWorker
from .recon import CostTable

if TYPE_CHECKING:
    from .service import Daemon


class Reconciliation:
    """The cost table and the push worker: what /v1/costs and /v1/change-sets serve."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        self.table = CostTable()
        self.worker = (
            PushWorker(daemon.store, daemon.connector, self.table, daemon.stopping)
            if daemon.connector is not None
            else None
        )

    async def start(self) -> None:
        await self.daemon.store.write(self.table.reload)
        if self.worker is not None:
            await self.worker.run()

    async def reload(self) -> None:
        await self.daemon.store.write(self.table.reload)

    def wake(self) -> None:
        if self.worker is not None:
            self.worker.wakeup.set()

    async def status(self, status: dict[str, Any]) -> None:
        status["push"] = {
            "running": [self.worker.current] if self.worker and self.worker.current else []
        }
        status["counts"]["table_rows"] = self.table.total()


async def attach(daemon: Daemon) -> None:
    daemon.parts["recon"] = Reconciliation(daemon)
    try:
        from .intake import Intake
    except ImportError:  # pragma: no cover - intake arrives with the price-file work
        return
    daemon.parts["intake"] = Intake(daemon)


__all__ = ["attach", "Reconciliation"]
