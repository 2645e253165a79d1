"""Approving and undoing: plan, journal, cost-table refresh and events in one write transaction,
then wake the push worker. What POST /v1/change-sets and .../undo do, without the HTTP."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from .. import events
from ..costs.table import CostTable
from ..errors import Conflict
from ..psa.base import Connector, RateLimits
from ..store import Store
from .journal import change_set_by_request, change_set_json, journal
from .plan import Measured, PlannedStep, Request, plan, undo_plan
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
        limits, measured = self.limits, self.measured
        preview, _ = await self.store.read(
            lambda c: plan(
                c,
                reqs,
                policy,
                limits,
                measured=measured,
                commit_seconds=self.commit_seconds,
                batched=self.batched,
                margin_floor=self.table.margin_floor,
                keep_steps=False,
            )
        )
        return preview

    async def approve(
        self, reqs: list[Request], policy: str, actor: str, request_id: str | None = None
    ) -> dict[str, Any]:
        if self.worker is None:
            raise Conflict("no_psa", NO_PSA)
        limits = self.limits
        measured = self.measured

        def _create(conn: Connection) -> dict[str, Any]:
            # A retry of an approval the daemon already recorded (the client timed out, the
            # connection dropped) returns that change set: never a second one, never "busy".
            if request_id is not None:
                prior = change_set_by_request(conn, actor, request_id)
                if prior is not None:
                    return change_set_json(conn, prior)
            # Planned again inside the write transaction: the stale and busy checks see committed
            # state, so two clients approving the same item at once produce exactly one change set.
            preview, steps = plan(
                conn,
                reqs,
                policy,
                limits,
                measured=measured,
                commit_seconds=self.commit_seconds,
                batched=self.batched,
                margin_floor=self.table.margin_floor,
            )
            cs_id = journal(
                conn,
                actor=actor,
                kind="apply",
                policy=policy,
                preview=preview,
                steps=steps,
                request_id=request_id,
            )
            self._started(conn, cs_id, steps, [r.item_id for r in reqs])
            return change_set_json(conn, cs_id)

        cs = await self.store.write(_create)
        self.wake()
        return cs

    async def by_request(self, actor: str, request_id: str) -> dict[str, Any] | None:
        def _find(conn: Connection) -> dict[str, Any] | None:
            cs_id = change_set_by_request(conn, actor, request_id)
            return None if cs_id is None else change_set_json(conn, cs_id)

        return await self.store.read(_find)

    @property
    def batched(self) -> tuple[bool, bool]:
        """Whether the connector reads many items / lines per request for the push's guard (it
        overrides the one-by-one default of the protocol)."""
        kind = type(self.connector)
        return (
            getattr(kind, "read_item_costs", None) is not Connector.read_item_costs,
            getattr(kind, "read_line_costs", None) is not Connector.read_line_costs,
        )

    @property
    def commit_seconds(self) -> float | None:
        return self.worker.commit_seconds if self.worker is not None else None

    @property
    def measured(self) -> Measured | None:
        """The request latency and rate this daemon measured on the PSA in its last sync or push
        (issue 20 item 8): the preview's estimate comes from these, not from a guess."""
        stats = getattr(getattr(self.connector, "http", None), "stats", None)
        return stats.measured() if stats is not None else None

    async def undo_preview(self, cs_id: int) -> dict[str, Any]:
        limits, measured = self.limits, self.measured
        preview, _ = await self.store.read(
            lambda c: undo_plan(
                c,
                cs_id,
                limits,
                measured=measured,
                commit_seconds=self.commit_seconds,
                batched=self.batched,
            )
        )
        return preview

    async def undo(self, cs_id: int, actor: str, request_id: str | None = None) -> dict[str, Any]:
        if self.worker is None:
            raise Conflict("no_psa", NO_PSA)
        limits, measured = self.limits, self.measured

        def _create(conn: Connection) -> dict[str, Any]:
            if request_id is not None:
                prior = change_set_by_request(conn, actor, request_id)
                if prior is not None:
                    return change_set_json(conn, prior)
            preview, steps = undo_plan(
                conn,
                cs_id,
                limits,
                measured=measured,
                commit_seconds=self.commit_seconds,
                batched=self.batched,
            )
            new_id = journal(
                conn,
                actor=actor,
                kind="undo",
                policy=preview["policy"],
                preview=preview,
                steps=steps,
                undo_of=cs_id,
                request_id=request_id,
            )
            self._started(conn, new_id, steps, [p["item_id"] for p in preview["per_item"]])
            return change_set_json(conn, new_id)

        cs = await self.store.write(_create)
        self.wake()
        return cs

    def _started(
        self, conn: Connection, cs_id: int, steps: list[PlannedStep], ids: list[int]
    ) -> None:
        # The rows go to pending from the planned steps themselves: no query over the journal.
        per_item: dict[int, int] = defaultdict(int)
        pushed: dict[int, Decimal] = {}
        for s in steps:
            per_item[s.item_id] += 1
            if s.target == "item" or s.item_id not in pushed:
                pushed[s.item_id] = s.after
        self.table.start_push(cs_id, dict(per_item), pushed)
        events.emit(conn, "rows", {"ids": sorted(set(ids))})

    def wake(self) -> None:
        if self.worker is not None:
            self.worker.wakeup.set()
