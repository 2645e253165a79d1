"""States of a change set and of its steps. The values are the strings stored in the database
and shown by the API, so they must never change."""

from __future__ import annotations

from enum import StrEnum


class StepState(StrEnum):
    PENDING = "pending"  # journaled, not sent
    SENDING = "sending"  # may have reached the PSA: re-read before any resend
    DONE = "done"
    CONFLICT = "conflict"  # the PSA held neither before nor after: reported, never overwritten
    FAILED = "failed"
    DENIED = "denied"  # the PSA refused for lack of permission
    CANCELLED = "cancelled"  # left open when its change set finished


class ChangeSetState(StrEnum):
    # SCHEDULED (an approval with a future effective date) comes before PENDING: its steps are
    # journaled pending and count as busy (open_steps_for), and next_open_change_set picks it
    # only once its effective_date is today or past; CANCELLED ends it before anything was sent.
    SCHEDULED = "scheduled"
    PENDING = "pending"
    PUSHING = "pushing"
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"
    DENIED = "denied"
    CANCELLED = "cancelled"


# Steps not finished yet: an item with one of these is busy.
OPEN = (StepState.PENDING, StepState.SENDING)
