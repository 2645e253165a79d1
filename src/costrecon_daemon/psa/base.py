"""The one protocol every PSA connector speaks (DESIGN.md §3 "PSA connectors share one protocol").

A connector turns one PSA's real REST API into these PSA-neutral records and operations. Everything
above this layer (sync, recon, the push worker) is PSA-agnostic. Identifiers are always text
(``psa_id``), unique within one PSA tenant; a connector whose PSA has several id spaces (Autotask
Services and Products) prefixes them (``"service:12"``, ``"product:7"``).

Money here is always :class:`decimal.Decimal` in the item's currency; ``None`` means the API user
cannot read the value (Autotask hides costs from some security levels), never zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class CatalogRecord:
    psa_id: str
    identifier: str  # what the PSA shows as the service/product ID (CW `identifier`, Syncro id...)
    name: str
    cost: Decimal | None
    currency: str
    active: bool
    vendor_sku: str | None = None
    mpn: str | None = None
    manufacturer: str | None = None
    vendor_name: str | None = None
    kind: str = "item"  # connector-specific flavour: "catalog", "service", "product"...
    updated_at: str | None = None  # the PSA's own last-modified stamp, ISO 8601 UTC
    price: Decimal | None = None  # the sell price (read for margins; never written)


@dataclass(frozen=True, slots=True)
class ContractRecord:
    psa_id: str
    name: str
    company: str
    status: str  # the PSA's own word ("Active", "Cancelled", "Expired"...)
    active: bool
    currency: str
    updated_at: str | None = None


@dataclass(frozen=True, slots=True)
class LineRecord:
    psa_id: str
    contract_psa_id: str
    item_psa_id: str
    quantity: Decimal
    unit_cost: Decimal | None
    active: bool  # False for cancelled/ended lines; they are kept in the mirror, marked
    kind: str  # "addition", "contract_service", "contract_charge", "schedule_line"
    description: str = ""
    updated_at: str | None = None
    unit_price: Decimal | None = None  # the line's own sell price (read for margins; never written)


@dataclass(frozen=True, slots=True)
class LineKey:
    """What a connector needs to address one contract line for a read or write."""

    psa_id: str
    contract_psa_id: str
    kind: str


@dataclass(slots=True)
class SyncChunk:
    """A batch of records from a pull, committed to the mirror in one transaction."""

    items: list[CatalogRecord] = field(default_factory=list)
    contracts: list[ContractRecord] = field(default_factory=list)
    lines: list[LineRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PullResult:
    """How a pull ended.

    ``complete_items`` / ``complete_contracts`` / ``complete_lines_for``: scopes that were listed in
    full, so anything of that scope in the mirror and not seen in this pull is gone from the PSA and
    must be marked so (never kept as live). ``complete_lines_for`` is a set of contract psa_ids
    whose lines were listed in full; ``None`` there means "every contract's lines" (a full pull).
    """

    cursor: str | None  # pass back as ``since`` for the next incremental pull
    complete_items: bool
    complete_contracts: bool
    complete_lines_for: frozenset[str] | None
    requests: int


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Declared limits the push worker and previews schedule within (DESIGN.md §3)."""

    concurrency: int  # requests in flight at once
    per_hour: int | None = None
    per_minute: int | None = None
    item_write_calls: int = 2  # requests to write and verify one catalogue item
    line_write_calls: int = 2  # requests to write and verify one contract line

    def estimate_seconds(self, requests: int, latency: float = 0.25) -> float:
        """Rough wall time for ``requests`` calls: the slower of concurrency and rate budget."""
        by_concurrency = requests * latency / max(1, self.concurrency)
        by_rate = 0.0
        if self.per_minute:
            by_rate = max(by_rate, max(0, requests - self.per_minute) * 60.0 / self.per_minute)
        if self.per_hour:
            by_rate = max(by_rate, max(0, requests - self.per_hour) * 3600.0 / self.per_hour)
        return max(by_concurrency, by_rate)


@dataclass(frozen=True, slots=True)
class PermissionProblem:
    """One permission the check looked at (issue 20: the Sync view names every one it checked).

    ``ok``: True granted, False refused, None not checkable without changing data.
    """

    capability: str  # "read_catalog", "edit_catalog", "read_lines", "edit_lines", "read_costs"
    # refused: one sentence naming the exact PSA role/setting to change (the fix); otherwise what
    # was checked, or why it could not be
    message: str
    ok: bool | None = False

    def to_json(self) -> dict[str, Any]:
        return {
            "capability": self.capability,
            "ok": self.ok,
            "message": self.message,
            "fix": self.message if self.ok is False else None,
        }


# The name for what check_permissions returns: every check, granted or not.
PermissionCheck = PermissionProblem


def granted(capability: str, checked: str) -> PermissionCheck:
    return PermissionCheck(capability, checked, ok=True)


def failing(checks: list[PermissionCheck]) -> list[PermissionCheck]:
    """The refused permissions among ``checks`` (what needs a person's fix)."""
    return [c for c in checks if c.ok is False]


# ---- errors: every message is one sentence for a person; secrets never appear in them ----


class PSAError(Exception):
    """A PSA call failed. ``retryable`` says whether trying again later can help."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail  # the PSA's own error text, for logs and per-line reports


class PSAAuthError(PSAError):
    """Wrong or expired credentials (HTTP 401 with bad keys)."""


class PSAPermissionError(PSAError):
    """The API user's role lacks a right; ``setting`` names what to change in the PSA."""

    def __init__(
        self, message: str, *, setting: str, status: int | None = None, detail: str | None = None
    ):
        super().__init__(message, status=status, detail=detail)
        self.setting = setting


class PSANotFound(PSAError):
    pass


class PSAValidationError(PSAError):
    """The PSA refused the request's content (400/422): not retryable."""


class PSARateLimited(PSAError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class PSAUnavailable(PSAError):
    """5xx, timeouts, dropped connections: retried by the connector, raised when retries run out."""

    retryable = True


class PSAWriteAmbiguous(PSAError):
    """A write was sent and no answer says whether it landed (a timeout after sending, a 5xx, a
    connection dropped mid-request). It is never re-sent blind: the caller re-reads the target
    and decides (psa/guarded.py), because a person may have changed it in between."""

    retryable = True


class PSAWriteNotApplied(PSAError):
    """The PSA accepted a write but the value read back is not the one sent (Autotask can silently
    ignore cost writes when the API user cannot see costs). Never counted as done."""


ChunkSink = Callable[[SyncChunk], Awaitable[None]]


@runtime_checkable
class Connector(Protocol):
    """What every PSA connector provides. All methods are coroutines over one transport
    (psa/http.py). Connectors subclass this protocol explicitly so they inherit the default
    batch reads; callers rely on every method being there."""

    psa: str  # "connectwise" | "autotask" | "syncro"
    display_name: str  # "ConnectWise PSA"
    limits: RateLimits

    @property
    def requests_made(self) -> int:
        """Every HTTP request sent, retries included (benchmarks and previews)."""
        ...

    async def connect(self) -> None:
        """Discover the API root (codebase/zone), check credentials. Raises PSAAuthError etc."""

    async def check_permissions(self) -> list[PermissionCheck]:
        """Probe read/edit rights without changing anything: one entry per permission checked,
        granted or not (:func:`failing` picks the problems)."""

    async def pull(self, since: str | None, sink: ChunkSink) -> PullResult:
        """Pull the catalogue, contracts and contract lines into ``sink`` in batches.

        ``since=None`` is a full pull; otherwise ``since`` is the ``cursor`` of an earlier pull and
        the connector fetches what changed as cheaply as the API allows.
        """

    async def read_item_cost(self, item_psa_id: str) -> Decimal | None: ...

    async def write_item_cost(self, item_psa_id: str, cost: Decimal) -> Decimal:
        """Set the catalogue item's cost and return the value read back. Raises
        PSAWriteNotApplied when the read-back differs from ``cost``."""

    async def read_line_cost(self, line: LineKey) -> Decimal | None: ...

    async def write_line_cost(self, line: LineKey, cost: Decimal) -> Decimal:
        """Set one contract line's unit cost; returns the verified value read back."""

    async def read_item_costs(self, item_psa_ids: list[str]) -> dict[str, Decimal | None]:
        """Current cost of many items (the push guard). An id the PSA no longer has is left out.

        This default reads them one by one; a connector whose API can filter by id overrides it
        to read many in one request."""
        got = await asyncio.gather(*(_or_gone(self.read_item_cost(i)) for i in item_psa_ids))
        return {i: v for i, v in zip(item_psa_ids, got, strict=True) if v is not _GONE}

    async def read_line_costs(self, lines: list[LineKey]) -> dict[str, Decimal | None]:
        """Current cost of many contract lines by ``psa_id``; as :meth:`read_item_costs`."""
        got = await asyncio.gather(*(_or_gone(self.read_line_cost(k)) for k in lines))
        return {k.psa_id: v for k, v in zip(lines, got, strict=True) if v is not _GONE}

    async def aclose(self) -> None: ...


_GONE: Any = object()


async def _or_gone(read: Awaitable[Decimal | None]) -> Any:
    try:
        return await read
    except PSANotFound:
        return _GONE
