"""Approving and undoing: plan, journal, cost-table refresh and events in one write transaction,
then wake the push worker. What POST /v1/change-sets and .../undo do, without the HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from .. import events
from ..costs.table import CostTable
from ..errors import Conflict, CostreconError, InvalidInput
from ..money import quantize
from ..psa.base import Connector, RateLimits
from ..runtime import release_memory
from ..store import Store
from .journal import cancel_change_set, change_set_by_request, change_set_json, journal
from .plan import Measured, PlannedStep, Request, plan, undo_plan
from .push import PushWorker

log = logging.getLogger(__name__)

NO_PSA = "No PSA is configured, so nothing can be pushed; set [psa] in the config file."
# The furthest an approval can be scheduled: a typo such as 2207 is refused, not kept for years.
MAX_AHEAD = dt.timedelta(days=3 * 366)

# What an effective date means for each PSA (the preview says which applies). None of the three
# connectors writes a date on the catalogue item; so the push itself waits for the day.
EFFECTIVE_HANDLING = {
    "ConnectWise PSA": (
        "ConnectWise: the daemon pushes on that date (agreement additions keep their own "
        "effective dates; the cost changes on the day)."
    ),
    "Autotask PSA": (
        "Autotask: the daemon pushes on that date; contract-service adjustments are dated the "
        "day they are sent (UTC) unless [psa.autotask] line_effective_date is set."
    ),
}
EFFECTIVE_DEFAULT = "The daemon pushes on that date (this PSA has no effective date on costs)."
# How long the API waits for an approval to be recorded before it answers "recording" (the
# client then follows it by request id): a change set of 100,000+ steps takes seconds. Under a
# second, with room for reading a request of 12,000 items: the answer comes within one.
ANSWER_WITHIN = 0.75
FAILED_KEPT = 100  # refused recordings remembered for clients following them by request id
# Steps from which a plan is big enough to hand its memory back when done (runtime.release_memory
# costs tens of milliseconds; a plan of 120,000 steps leaves tens of MB freed).
BIG_PLAN = 10_000


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Submitted:
    """An approval as the API answers it: the change set, or (``None``) still being recorded."""

    request_id: str
    change_set: dict[str, Any] | None = None

    def request_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "state": "recording"}


@dataclass(frozen=True, slots=True)
class RequestState:
    """What the daemon has for a request id: ``recording``, ``recorded`` (with the change set),
    ``failed`` (with the error that refused it) or ``unknown``."""

    request_id: str
    state: str
    change_set: dict[str, Any] | None = None
    error: BaseException | None = None


def effective_handling(connector: Connector | None) -> str:
    name = getattr(connector, "display_name", None)
    return EFFECTIVE_HANDLING.get(name or "", EFFECTIVE_DEFAULT)


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
        # "Today" for effective dates: the push worker's clock when there is one, so a test that
        # moves time moves it for approvals and pushes alike.
        self._today: Any = None
        self.answer_within = ANSWER_WITHIN
        self._recording: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._failed: OrderedDict[tuple[str, str], BaseException] = OrderedDict()

    def today(self) -> dt.date:
        if self._today is not None:
            return self._today()
        return self.worker.today() if self.worker is not None else dt.date.today()

    def scheduled_for(self, effective: dt.date | None) -> dt.date | None:
        """The day a set waits for (None: push at once); a past or far date is refused."""
        if effective is None:
            return None
        today = self.today()
        if effective < today:
            raise InvalidInput(
                "bad_field",
                f"The effective date {effective.isoformat()} is in the past; give today "
                f"({today.isoformat()}) or a later date.",
            )
        if effective - today > MAX_AHEAD:
            raise InvalidInput(
                "bad_field",
                f"The effective date {effective.isoformat()} is more than three years ahead; "
                "check the year.",
            )
        return effective if effective > today else None

    @property
    def limits(self) -> RateLimits | None:
        # Read at each request, as the connector's declared limits are its own business.
        return self.connector.limits if self.connector is not None else None

    async def preview(
        self, reqs: list[Request], policy: str, effective: dt.date | None = None
    ) -> dict[str, Any]:
        scheduled = self.scheduled_for(effective)
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
        self._with_effective(preview, scheduled)
        if preview["lines"] + preview["item_writes"] >= BIG_PLAN:
            release_memory()
        return preview

    def _with_effective(self, preview: dict[str, Any], scheduled: dt.date | None) -> None:
        preview["effective_date"] = scheduled.isoformat() if scheduled else None
        preview["effective_date_handling"] = effective_handling(self.connector)

    async def approve(
        self,
        reqs: list[Request],
        policy: str,
        actor: str,
        request_id: str | None = None,
        effective: dt.date | None = None,
    ) -> dict[str, Any]:
        """Approve and wait for the change set however long recording takes (in-process
        callers; the API answers within ``answer_within`` through :meth:`submit`)."""
        out = await self.submit(reqs, policy, actor, request_id, effective, wait=True)
        assert out.change_set is not None  # waited for
        return out.change_set

    async def submit(
        self,
        reqs: list[Request],
        policy: str,
        actor: str,
        request_id: str | None = None,
        effective: dt.date | None = None,
        *,
        wait: bool = False,
    ) -> Submitted:
        """Record an approval: the change set if it is recorded within ``answer_within``
        seconds (or ``wait``), else the request id to follow (it goes on being recorded, in one
        transaction)."""
        if self.worker is None:
            raise Conflict("no_psa", NO_PSA)
        scheduled = self.scheduled_for(effective)
        limits = self.limits
        measured = self.measured
        request_id = request_id or new_request_id()

        def _create(conn: Connection) -> dict[str, Any]:
            # A retry of an approval the daemon already recorded (the client timed out, the
            # connection dropped) returns that change set: never a second one, never "busy".
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
            self._with_effective(preview, scheduled)
            cs_id = journal(
                conn,
                actor=actor,
                kind="apply",
                policy=policy,
                preview=preview,
                steps=steps,
                request_id=request_id,
                effective_date=scheduled,
                item_ids=[r.item_id for r in reqs],
            )
            planned = len(steps)
            self._started(conn, cs_id, steps, [r.item_id for r in reqs])
            if scheduled is not None and planned:
                self.table.mark_scheduled(cs_id, scheduled.isoformat())
            return change_set_json(conn, cs_id)

        return await self._answer(actor, request_id, _create, wait)

    async def _answer(
        self,
        actor: str,
        request_id: str,
        create: Callable[[Connection], dict[str, Any]],
        wait: bool,
    ) -> Submitted:
        """Run ``create`` in one write transaction, answering after ``answer_within`` seconds
        at the latest (unless ``wait``). A retry with the same request id while the first is
        being recorded joins it (never a second change set); one after it failed tries again."""
        key = (actor, request_id)
        task = self._recording.get(key)
        if task is None:
            self._failed.pop(key, None)
            task = asyncio.ensure_future(self._record(create))
            self._recording[key] = task
            task.add_done_callback(functools.partial(self._settled, key))
        if wait:
            # Shielded: a caller that goes away (a closed connection) leaves the recording be.
            return Submitted(request_id, await asyncio.shield(task))
        if self.answer_within > 0:  # 0: answer "recording" at once (tests)
            await asyncio.wait([task], timeout=self.answer_within)
        if not task.done():
            return Submitted(request_id)
        return Submitted(request_id, task.result())  # or the error that refused it

    async def _record(self, create: Callable[[Connection], dict[str, Any]]) -> dict[str, Any]:
        cs = await self.store.write(create)
        self.wake()
        if cs.get("total", 0) >= BIG_PLAN:
            release_memory()
        return cs

    def _settled(self, key: tuple[str, str], task: asyncio.Future[dict[str, Any]]) -> None:
        # Runs before anyone awaiting the task resumes: a lookup by request id never finds the
        # request neither recording, nor recorded in the database, nor failed.
        self._recording.pop(key, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if not isinstance(exc, CostreconError):
            log.error("Recording an approval failed", exc_info=exc)
        self._failed[key] = exc
        while len(self._failed) > FAILED_KEPT:
            self._failed.popitem(last=False)

    async def finish_recordings(self) -> None:
        """At shutdown: the approvals answered "recording" are committed (or refused) before
        the daemon stops, so a client following one finds it after the restart."""
        if self._recording:
            await asyncio.gather(*self._recording.values(), return_exceptions=True)

    async def request_state(self, actor: str, request_id: str) -> RequestState:
        """What the daemon has for a client's request id: being recorded, its change set, the
        error that refused it, or nothing (it never got it, or it was lost with a restart
        before it was committed: the transaction leaves nothing half-recorded)."""
        key = (actor, request_id)
        if key in self._recording:
            return RequestState(request_id, "recording")
        found = await self.by_request(actor, request_id)
        if found is not None:
            return RequestState(request_id, "recorded", change_set=found)
        # Read after the database: a recording that failed meanwhile is in _failed by now.
        if key in self._recording:
            return RequestState(request_id, "recording")
        exc = self._failed.get(key)
        if exc is not None:
            return RequestState(request_id, "failed", error=exc)
        return RequestState(request_id, "unknown")

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
        out = await self.submit_undo(cs_id, actor, request_id, wait=True)
        assert out.change_set is not None  # waited for
        return out.change_set

    async def submit_undo(
        self,
        cs_id: int,
        actor: str,
        request_id: str | None = None,
        *,
        wait: bool = False,
    ) -> Submitted:
        if self.worker is None:
            raise Conflict("no_psa", NO_PSA)
        limits, measured = self.limits, self.measured
        request_id = request_id or new_request_id()

        def _create(conn: Connection) -> dict[str, Any]:
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
            # From the steps: the preview lists only its first items.
            self._started(conn, new_id, steps, sorted({s.item_id for s in steps}))
            return change_set_json(conn, new_id)

        return await self._answer(actor, request_id, _create, wait)

    async def cancel(self, cs_id: int, actor: str) -> dict[str, Any]:
        """Cancel a scheduled change set (POST /v1/change-sets/{id}/cancel)."""

        def _cancel(conn: Connection) -> dict[str, Any]:
            ids = cancel_change_set(conn, cs_id, actor)
            self.table.refresh(conn, ids)
            events.emit(conn, "rows", {"ids": ids})
            return change_set_json(conn, cs_id)

        return await self.store.write(_cancel)

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
        # The steps are journaled: emptied (the caller's list too) before the rows' new state is
        # made, so the plan's 120,000 objects are freed first and the rows' new values, which
        # live on, are made in the space they leave; the values pushed are copied for the same
        # reason. Objects made during the plan and kept pin the memory they were made in, which
        # stayed in the daemon's RSS for the whole push (issue 14 item 5).
        steps.clear()
        pushed = {i: quantize(v) for i, v in pushed.items()}
        self.table.start_push(cs_id, dict(per_item), pushed)
        events.emit(conn, "rows", {"ids": sorted(set(ids))})

    def wake(self) -> None:
        if self.worker is not None:
            self.worker.wakeup.set()
