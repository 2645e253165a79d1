"""A guarded cost write: the one place that decides whether a cost may be written again after a
write whose outcome is unknown (DESIGN.md §3 "Approval is a journaled change set"; issue 13).

The guard is the push worker's: a target at *after* is done, one at *before* may be written,
anything else is a **conflict**, reported with the value found and never overwritten. The push
worker applies it before the first write; :func:`guarded_write` applies it again after every
write that may or may not have landed (a timeout after sending, a 5xx, a dropped connection,
retries that ran out mid-write), by re-reading the target:

- at *after*: the write landed; done (verified by that read);
- at *before*: it did not land; write again, at most ``attempts`` writes in all;
- anything else: someone changed it in between; conflict, left as it is.

So a write is never re-sent blind, and a line a person edited between our attempts keeps the
person's value.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from costrecon_daemon.money import display
from costrecon_daemon.psa.base import Connector, LineKey, PSAError, PSANotFound, PSARateLimited

__all__ = ["WriteOutcome", "conflict_message", "guarded_write"]

WRITE_ATTEMPTS = 6  # writes of one target at most, each after a read that found it at *before*


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    status: str  # "done" | "conflict" | "failed"
    value: Decimal | None  # what the PSA holds, as last read or verified
    message: str | None
    writes: int  # write attempts sent


def conflict_message(value: Decimal | None, before: Decimal | None, after: Decimal) -> str:
    return (
        f"the PSA holds {display(value)}, neither the expected {display(before)} "
        f"nor the new {display(after)}; left unchanged"
    )


async def guarded_write(
    connector: Connector,
    target: str | LineKey,
    before: Decimal | None,
    after: Decimal,
    *,
    attempts: int = WRITE_ATTEMPTS,
    backoff: float = 0.5,
    rng: random.Random | None = None,
) -> WriteOutcome:
    """Write ``after`` to ``target`` (an item psa_id or a :class:`LineKey`), known to hold
    ``before`` when called. Errors that say for certain what happened (permission, refused
    value, a write the PSA silently ignored) are raised as they are, for the caller to record.
    """
    write: Callable[[], Awaitable[Decimal]]
    read: Callable[[], Awaitable[Decimal | None]]
    if isinstance(target, LineKey):
        key = target
        write = lambda: connector.write_line_cost(key, after)  # noqa: E731
        read = lambda: connector.read_line_cost(key)  # noqa: E731
    else:
        write = lambda: connector.write_item_cost(target, after)  # noqa: E731
        read = lambda: connector.read_item_cost(target)  # noqa: E731
    sent = 0
    unknown: PSAError | None = None
    while True:
        sent += 1
        try:
            value = await write()
        except PSAError as exc:
            if not exc.retryable:
                raise
            # Ambiguous (PSAWriteAmbiguous), or retries that ran out somewhere inside a
            # multi-request write: the cost may or may not have changed. Look before anything.
            unknown = exc
        else:
            if value != after:
                return WriteOutcome(
                    "failed",
                    value,
                    f"the PSA reports {display(value)} after writing {display(after)}",
                    sent,
                )
            return WriteOutcome("done", value, None, sent)
        # Give a slow gateway a moment to finish what it may still be applying before we look.
        rng = rng or random.Random()
        await asyncio.sleep(rng.uniform(0.5, 1.0) * backoff * sent)
        try:
            current = await read()
        except PSANotFound:
            return WriteOutcome("failed", None, "the target no longer exists in the PSA", sent)
        except PSAError as exc:
            if exc.retryable:
                return WriteOutcome(
                    "failed",
                    None,
                    f"{unknown.message} Reading it back failed too ({exc.message}); the next "
                    "sync shows whether it landed.",
                    sent,
                )
            raise
        if current == after:
            return WriteOutcome("done", current, None, sent)
        if current is None:
            return WriteOutcome(
                "failed", None, "the PSA does not show this cost to the API user", sent
            )
        if current != before:
            return WriteOutcome("conflict", current, conflict_message(current, before, after), sent)
        if sent >= attempts or isinstance(unknown, PSARateLimited):
            # (A write refused by the rate limit until retries ran out would only meet it again.)
            return WriteOutcome(
                "failed",
                current,
                f"{unknown.message} It was still not applied after {sent} attempt(s); "
                "try again later.",
                sent,
            )
