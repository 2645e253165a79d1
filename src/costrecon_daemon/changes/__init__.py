"""Approval and push: journaled change sets applied exactly once (DESIGN.md §3 "Approval").

Approving writes a change set and one step per target — the catalogue item and each contract
line — with before/after values and the actor, *before* anything is sent. The push worker then
works through open steps group by group (all item steps; each contract's lines):

1. read the targets' current values from the PSA (one batched read per group where the
   connector can, so the guard costs a fraction of a request per line);
2. a target already at *after* is done without a write; one at *before* is marked ``sending``
   in the journal and written; anything else is a **conflict**, reported and never overwritten;
3. each write is verified by the value the PSA returns, and the outcome and the mirror are
   updated in one transaction.

A crash at any point leaves steps ``pending`` or ``sending``; the next start re-reads them
(step 1) and so finishes only what is not done: a write that landed before the crash is found
at *after* and not sent again.
"""

from .approve import Approvals, RequestState, Submitted
from .journal import (
    change_set_by_request,
    change_set_json,
    journal,
    list_change_sets,
    list_steps,
    open_steps_for,
)
from .plan import POLICIES, Measured, PlannedStep, Request, plan, undo_plan
from .push import PushWorker
from .states import ChangeSetState, StepState

__all__ = [
    "POLICIES",
    "Approvals",
    "ChangeSetState",
    "Measured",
    "PlannedStep",
    "PushWorker",
    "Request",
    "RequestState",
    "StepState",
    "Submitted",
    "change_set_by_request",
    "change_set_json",
    "journal",
    "list_change_sets",
    "list_steps",
    "open_steps_for",
    "plan",
    "undo_plan",
]
