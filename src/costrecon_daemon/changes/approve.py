"""Approving and undoing: plan, journal, cost-table refresh and events in one write transaction,
then wake the push worker. What POST /v1/change-sets and .../undo do, without the HTTP."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from .. import events
from ..costs.table import CostTable
from ..errors import Conflict
from ..psa.base import Connector, RateLimits
from ..store import Store
from .journal import change_set_json, journal
from .plan import Request, plan, undo_plan
from .push import PushWorker

NO_PSA = "No PSA is configured, so nothing can be pushed; set [psa] in the config file."


class Approvals:
    def __init__(
        self,
        store: Store,
        table: CostTable,
        worker: PushWorker | None,
        connector: Connector | None,
        default_policy: str,
    ):
        self.store = store
        self.table = table
        self.worker = worker
        self.connector = connector
        self.default_policy = default_policy

    @property
    def limits(self) -> RateLimits | None:
        # Read at each request, as the connector's declared limits are its own business.
        return self.connector.limits if self.connector is not None else None

    async def preview(self, reqs: list[Request], policy: str) -> dict[str, Any]:
        limits = self.limits
        preview, _ = await self.store.read(
            lambda c: plan(c, reqs, policy, limits, margin_floor=self.table.margin_floor)
        )
        return preview

    async def approve(self, reqs: list[Request], policy: str, actor: str) -> dict[str, Any]:
        if self.worker is None:
            raise Conflict("no_psa", NO_PSA)
        limits = self.limits

        def _create(conn: Connection) -> dict[str, Any]:
            # Planned again inside the write transaction: the stale and busy checks see committed
            # state, so two clients approving the same item at once produce exactly one change set.
            preview, steps = plan(conn, reqs, policy, limits, margin_floor=self.table.margin_floor)
            cs_id = journal(
                conn, actor=actor, kind="apply", policy=policy, preview=preview, steps=steps
            )
            self._touched(conn, [r.item_id for r in reqs])
            return change_set_json(conn, cs_id)

        cs = await self.store.write(_create)
        self.wake()
        return cs

    async def undo_preview(self, cs_id: int) -> dict[str, Any]:
        preview, _ = await self.store.read(lambda c: undo_plan(c, cs_id))
        return preview

    async def undo(self, cs_id: int, actor: str) -> dict[str, Any]:
        if self.worker is None:
            raise Conflict("no_psa", NO_PSA)

        def _create(conn: Connection) -> dict[str, Any]:
            preview, steps = undo_plan(conn, cs_id)
            new_id = journal(
                conn,
                actor=actor,
                kind="undo",
                policy=preview["policy"],
                preview=preview,
                steps=steps,
                undo_of=cs_id,
            )
            self._touched(conn, [p["item_id"] for p in preview["per_item"]])
            return change_set_json(conn, new_id)

        cs = await self.store.write(_create)
        self.wake()
        return cs

    def _touched(self, conn: Connection, ids: list[int]) -> None:
        self.table.refresh(conn, ids)
        events.emit(conn, "rows", {"ids": sorted(ids)})

    def wake(self) -> None:
        if self.worker is not None:
            self.worker.wakeup.set()
