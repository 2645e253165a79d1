"""The push worker: applies open change sets to the PSA, verified, exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..money import display
from ..psa.base import (
    Connector,
    LineKey,
    PSAError,
    PSAPermissionError,
)
from ..psa.guarded import guarded_write
from ..runtime import release_memory

if TYPE_CHECKING:
    from ..costs.table import CostTable
    from ..store import Store


from .journal import (
    DETAIL_LIMIT,
    Outcome,
    StepRow,
    finish_change_set,
    mark_sending,
    next_effective_date,
    next_open_change_set,
    open_step_keys,
    record_progress,
    start_change_set,
    steps_by_id,
)
from .plan import ITEM_GROUP

log = logging.getLogger(__name__)

# Steps loaded in full at a time (the rest of the set is held as ids only).
LOAD_STEPS = 2000


class PushWorker:
    """Applies open change sets one at a time, groups of targets concurrently."""

    def __init__(
        self,
        store: Store,
        connector: Connector,
        table: CostTable,
        stopping: asyncio.Event,
        *,
        group_concurrency: int | None = None,
    ):
        self.store = store
        self.connector = connector
        self.table = table
        self.stopping = stopping
        self.wakeup = asyncio.Event()
        self.current: int | None = None
        # Step counts by state of the set being pushed, kept as outcomes are recorded: progress
        # is read from here, never by counting the journal's steps on each tick.
        self.counts: Counter[str] = Counter()
        # Seconds per journal commit, measured: each group waits for one (its ``sending``
        # marks), and on a busy disk that is part of its time (the preview's estimate counts it).
        self.commit_seconds: float | None = None
        self._detail = True
        self._journal: _Journal | None = None
        self._group_concurrency = group_concurrency or max(2, connector.limits.concurrency * 2)
        self._writes_at_once = max(1, connector.limits.concurrency)
        # The clock for effective dates (local day, as the MSP means it); tests move it.
        self.today: Any = dt.date.today

    async def run(self) -> None:
        while not self.stopping.is_set():
            # Cleared before the read, not after: an approval (or a new day) that sets it while
            # the read runs is then not lost for the idle wait below.
            self.wakeup.clear()
            cs_id = await self.store.read(next_open_change_set, self.today())
            if cs_id is None:
                try:
                    await asyncio.wait_for(self.wakeup.wait(), await self._idle_seconds())
                except TimeoutError:
                    pass
                continue
            self.current = cs_id
            try:
                await self.push(cs_id)
            finally:
                self.current = None

    async def _idle_seconds(self) -> float:
        """How long to sleep with nothing to push: until the next scheduled day begins, and at
        most 30 s, so a changed clock or a missed wakeup costs at most that."""
        day = await self.store.read(next_effective_date)
        if day is None:
            return 30
        start = dt.datetime.combine(day, dt.time()).astimezone()
        return max(1.0, min(30.0, (start - dt.datetime.now().astimezone()).total_seconds()))

    async def push(self, cs_id: int) -> None:
        actor, counts = await self.store.write(start_change_set, cs_id)
        if not counts:
            return  # cancelled between the pick and the start
        self.table.mark_scheduled(cs_id, None)
        self._journal = _Journal(self.store, cs_id, actor, sum(counts.values()) <= DETAIL_LIMIT)
        stats = getattr(getattr(self.connector, "http", None), "stats", None)
        if stats is not None:
            stats.restart("push")  # the push's pace, measured apart from the sync before it
        self.counts = Counter(counts)
        self._detail = sum(counts.values()) <= DETAIL_LIMIT
        # Only the steps' ids are held for the whole push, grouped; a few groups at a time are
        # loaded in full (LOAD_STEPS), so memory does not grow with the set's size.
        keys = await self.store.read(open_step_keys, cs_id)
        by_group: dict[str, list[int]] = defaultdict(list)
        items = 0
        for sid, target, contract in keys:
            if target == "item":
                # Catalogue items in groups of ITEM_GROUP, not one group of all: a vendor-wide
                # set has 11,000 of them, and one group would start that many writes at once.
                by_group[f"items:{items // ITEM_GROUP}"].append(sid)
                items += 1
            else:
                by_group[f"c:{contract}"].append(sid)
        del keys
        # A fixed number of lanes take groups off one queue, and a finished group is dropped:
        # memory does not grow with the set's size in coroutines, nor with the steps finished.
        waiting = deque(by_group.values())
        del by_group
        ready: deque[list[StepRow]] = deque()
        loading = asyncio.Lock()
        denied: list[PSAPermissionError] = []

        async def next_group() -> list[StepRow] | None:
            async with loading:
                while not ready and waiting:
                    batch: list[list[int]] = []
                    n = 0
                    while waiting and n < LOAD_STEPS:
                        batch.append(waiting.popleft())
                        n += len(batch[-1])
                    rows = await self.store.read(steps_by_id, [i for ids in batch for i in ids])
                    for ids in batch:
                        group = [rows[i] for i in ids if i in rows]
                        if group:
                            ready.append(group)
            return ready.popleft() if ready else None

        async def lane() -> None:
            recorded: asyncio.Future[None] | None = None
            try:
                while not denied and not self.stopping.is_set():
                    group = await next_group()
                    if group is None:
                        break
                    recorded = await self._push_group(cs_id, actor, group, denied, recorded)
            finally:
                if recorded is not None:
                    await recorded

        # Memory freed since the approval goes back before a long push (else the daemon's RSS
        # would show the plan's peak for the whole push).
        release_memory()
        progress = asyncio.ensure_future(self._report_progress(cs_id))
        try:
            await asyncio.gather(*(lane() for _ in range(self._group_concurrency)))
        finally:
            progress.cancel()
        if self.stopping.is_set() and not denied:
            return  # resumed at next start; open steps stay open in the journal
        await self.store.write(finish_change_set, cs_id, denied[0] if denied else None, self.table)

    async def _report_progress(self, cs_id: int, every: float = 0.5) -> None:
        while True:
            await asyncio.sleep(every)
            rows = self.table.take_dirty()
            await self.store.write(record_progress, cs_id, dict(self.counts), rows)

    async def _record(
        self, cs_id: int, actor: str, outcomes: list[Outcome], sending: Sequence[StepRow] = ()
    ) -> None:
        """Journal outcomes and steps about to be sent, and wait for the commit (a step is
        ``sending`` in the journal before it is sent)."""
        t0 = time.monotonic()
        done = self._submit(cs_id, outcomes, sending)
        if done is None:
            return
        await done
        took = time.monotonic() - t0
        prior = self.commit_seconds
        self.commit_seconds = took if prior is None else 0.9 * prior + 0.1 * took

    def _submit(
        self, cs_id: int, outcomes: list[Outcome], sending: Sequence[StepRow] = ()
    ) -> asyncio.Future[None] | None:
        """Queue outcomes (and steps about to be sent) for the journal's next commit; once it is
        committed, move the running counts and the cost table's rows by exactly those steps.
        None when there is nothing to record."""
        assert self._journal is not None
        fut = self._journal.submit(([s.id for s in sending], list(outcomes)))
        if fut is None:
            return None
        moves = [(s, "sending", None) for s in sending] + [(s, st, v) for s, st, v, _ in outcomes]

        def committed(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is None:
                self._moved(cs_id, moves)

        fut.add_done_callback(committed)
        return fut

    def _moved(self, cs_id: int, moves: list[tuple[StepRow, str, Decimal | None]]) -> None:
        table_moves = []
        catalog = {}
        for s, status, value in moves:
            table_moves.append((s.item_id, s.status, status))
            self.counts[s.status] -= 1
            self.counts[status] += 1
            s.status = status
            if s.target == "item" and value is not None and status in ("done", "conflict"):
                catalog[s.item_id] = value
        self.table.move_steps(cs_id, table_moves, catalog)

    async def _push_group(
        self,
        cs_id: int,
        actor: str,
        group: list[StepRow],
        denied: list[PSAPermissionError],
        recorded: asyncio.Future[None] | None = None,
    ) -> asyncio.Future[None] | None:
        """Guard-read, journal and write one group. The group's outcomes are queued for the
        journal and not waited for: they ride in the commit of the next group's ``sending``
        marks (half the commits), and the lane waits for them before it sends anything else.
        A crash before that commit leaves these steps ``sending``, which the next push re-reads
        before deciding anything (never a blind re-send). Returns the outcomes' commit."""
        try:
            current = await self._read_current(group)
        except PSAPermissionError as exc:
            denied.append(exc)
            return recorded
        except PSAError as exc:
            failed: list[Outcome] = [
                (s, "failed", None, f"could not read the current cost: {exc.message}")
                for s in group
            ]
            if recorded is not None:
                await recorded
            return self._submit(cs_id, failed)
        outcomes: list[Outcome] = []
        to_write: list[StepRow] = []
        for s in group:
            value = current.get(s.target_psa_id, _MISSING)
            if value is _MISSING:
                outcomes.append((s, "failed", None, "the target no longer exists in the PSA"))
            elif value is None:
                outcomes.append(
                    (s, "failed", None, "the PSA does not show this cost to the API user")
                )
            elif value == s.after:
                outcomes.append((s, "done", value, None))
            elif value == s.before:
                to_write.append(s)
            else:
                outcomes.append(
                    (
                        s,
                        "conflict",
                        value,
                        f"the PSA holds {display(value)}, neither the expected {display(s.before)} "
                        f"nor the new {display(s.after)}; left unchanged",
                    )
                )
        # Journal before sending: these steps may have reached the PSA if we crash from here on.
        await self._record(cs_id, actor, outcomes, to_write)
        if recorded is not None:
            await recorded  # committed no later than the marks just awaited: raises its error
        if not to_write:
            return None
        results = await self._write_all(to_write)
        final: list[Outcome] = []
        for s, (status, value, message, error) in zip(to_write, results, strict=True):
            if isinstance(error, PSAPermissionError):
                denied.append(error)
            final.append((s, status, value, message))
        return self._submit(cs_id, final)

    async def _write_all(
        self, steps: list[StepRow]
    ) -> list[tuple[str, Decimal | None, str | None, Exception | None]]:
        """Write a group's steps, as many at once as the PSA takes requests at once (its
        declared concurrency), results in the steps' order. Not one task per step: a group of
        400 catalogue items in each of 16 lanes made 6,400 coroutines at once that all waited
        for the connector's 8 slots anyway, a 20 MB spike that stayed in the RSS (issue 14)."""
        results: list[Any] = [None] * len(steps)
        todo = iter(enumerate(steps))

        async def writer() -> None:
            for i, s in todo:
                results[i] = await self._write(s)

        await asyncio.gather(*(writer() for _ in range(min(self._writes_at_once, len(steps)))))
        return results

    async def _read_current(self, group: list[StepRow]) -> dict[str, Decimal | None]:
        c = self.connector
        if group[0].target == "item":
            return await c.read_item_costs([s.target_psa_id for s in group])
        return await c.read_line_costs(
            [LineKey(s.target_psa_id, s.contract_psa_id or "", s.line_kind or "") for s in group]
        )

    async def _write(self, s: StepRow) -> tuple[str, Decimal | None, str | None, Exception | None]:
        # guarded_write re-reads the target after any write whose outcome is unknown and applies
        # the same guard as _push_group: a write is never re-sent blind (issue 13).
        target = (
            s.target_psa_id
            if s.target == "item"
            else LineKey(s.target_psa_id, s.contract_psa_id or "", s.line_kind or "")
        )
        try:
            out = await guarded_write(self.connector, target, s.before, s.after)
        except PSAPermissionError as exc:
            return "denied", None, exc.message, exc
        except PSAError as exc:  # PSAWriteNotApplied, a refused value...
            return "failed", None, exc.message, exc
        return out.status, out.value, out.message, None


class _Journal:
    """Coalesces the journal writes of the groups in flight into one transaction each round.

    A group waits until its own writes are committed (so a step is journaled ``sending`` before
    it is sent, as before); what changes is that sixteen groups share a commit instead of paying
    for one each, which at zero latency was most of the push's time."""

    def __init__(self, store: Store, cs_id: int, actor: str, detail: bool):
        self.store = store
        self.cs_id = cs_id
        self.actor = actor
        self.detail = detail
        self._queue: list[tuple[tuple[list[int], list[Outcome]], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, op: tuple[list[int], list[Outcome]]) -> asyncio.Future[None] | None:
        """Queue ``op`` for the next commit; the future is done when it is committed (None:
        nothing to write). Commits happen in the order ops were queued."""
        if not op[0] and not op[1]:
            return None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((op, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._flush())
        return fut

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self.store.write(
                    _write_batch, [op for op, _ in batch], self.cs_id, self.actor, self.detail
                )
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting group
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)


def _write_batch(
    conn: Any, ops: list[tuple[list[int], list[Outcome]]], cs_id: int, actor: str, detail: bool
) -> None:
    sending = [i for ids, _ in ops for i in ids]
    outcomes = [o for _, outs in ops for o in outs]
    mark_sending(conn, sending, outcomes, cs_id, actor, detail)


class _Missing:
    pass


_MISSING: Any = _Missing()
