"""The typed client for the daemon's local API (HTTP/JSON over a Unix socket).

Used by the TUI and by every CLI command. Amounts arrive as strings and are turned into Decimal
here; nothing above this module sees JSON. When the daemon is not running, every call raises
:class:`DaemonNotRunning`, whose message says how to start it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from costrecon_daemon.text import printable

API = "/v1"
# Creating a change set of 100,000+ steps takes seconds; a retry with the request id is safe.
APPROVE_TIMEOUT = 120.0


def new_request_id() -> str:
    return uuid.uuid4().hex


def safe(value: Any) -> Any:
    """``value`` with every string in it (keys too) shown with its control characters escaped.

    Names, subjects, file names and messages come from price files, the PSA and other users: a
    newline or an ESC/OSC sequence in one must never reach a terminal raw (issue 13 item 6). The
    client escapes them as they arrive, so no view or command prints them. Numbers, booleans and
    None pass through.
    """
    if isinstance(value, str):
        # isprintable() is false for every character printable() escapes: a fast path for the
        # thousands of clean names in a cost grid page.
        return value if value.isprintable() else printable(value)
    if isinstance(value, dict):
        return {safe(k): safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [safe(v) for v in value]
    return value


class ClientError(Exception):
    """Anything the client reports to a person: ``str(exc)`` is one clear sentence."""


class DaemonNotRunning(ClientError):
    def __init__(self, socket_path: Path | str):
        super().__init__(
            f"costrecond is not running (no answer on {socket_path}); start it with "
            "`costrecond start` (or `systemctl --user start costrecond`)."
        )
        self.socket_path = str(socket_path)


class NotAnswered(ClientError):
    """The daemon did not answer in time. Never "try again": for an approval the message says
    what the daemon has recorded for the request id (or that it has not recorded it)."""


class DaemonError(ClientError):
    """The daemon answered with an error body ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.data = data or {}


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(slots=True)
class VendorSource:
    kind: str  # "manual" | "import" | "api"
    at: str | None = None
    by: str | None = None
    file: str | None = None
    row: int | None = None
    vendor: str | None = None
    sku: str | None = None
    # what a newer daemon adds (which source wins and why, the sources it beat): shown by `i`
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VendorSource:
        known = {"kind", "at", "by", "file", "row", "vendor", "sku"}
        return cls(
            kind=str(d.get("kind") or "import"),
            at=d.get("at"),
            by=d.get("by"),
            file=d.get("file"),
            row=d.get("row"),
            vendor=d.get("vendor"),
            sku=d.get("sku"),
            extra={k: v for k, v in d.items() if k not in known and v is not None},
        )


_ROW_FIELDS = frozenset(
    [
        "id",
        "psa_id",
        "identifier",
        "name",
        "contracts",
        "lines",
        "currency",
        "catalog_cost",
        "vendor_cost",
        "vendor_source",
        "change",
        "change_pct",
        "state",
        "state_detail",
        "price",
        "margin_pct",
        "margin_after_pct",
        "line_margin_min_after_pct",
        "below_margin_floor",
        "vendor_sources",
    ]
)


@dataclass(slots=True)
class CostRow:
    id: int
    psa_id: str
    identifier: str
    name: str
    contracts: int
    lines: int
    currency: str
    catalog_cost: Decimal | None
    vendor_cost: Decimal | None
    vendor_source: VendorSource | None
    change: Decimal | None
    change_pct: Decimal | None
    state: str  # "" | pending | pushing | done | conflict | failed | denied
    state_detail: dict[str, Any] = field(default_factory=dict)
    # fields a newer daemon sends that this client does not model
    extra: dict[str, Any] = field(default_factory=dict)
    # sell price and margins (issue 18.3); None when the PSA gives no price
    price: Decimal | None = None
    margin_pct: Decimal | None = None
    margin_after_pct: Decimal | None = None
    line_margin_min_after_pct: Decimal | None = None
    below_margin_floor: bool = False
    # competing vendor costs, the winner first (issue 20.11); empty with a single source
    vendor_sources: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CostRow:
        # only the id is required: any other field may be missing or null and still render
        src = d.get("vendor_source")
        psa_id = str(d.get("psa_id") or "")
        return cls(
            id=d["id"],
            psa_id=psa_id,
            identifier=str(d.get("identifier") or psa_id or "—"),
            name=str(d.get("name") or ""),
            contracts=int(d.get("contracts") or 0),
            lines=int(d.get("lines") or 0),
            currency=str(d.get("currency") or ""),
            catalog_cost=_dec(d.get("catalog_cost")),
            vendor_cost=_dec(d.get("vendor_cost")),
            vendor_source=VendorSource.from_json(src) if isinstance(src, dict) else None,
            change=_dec(d.get("change")),
            change_pct=_dec(d.get("change_pct")),
            state=d.get("state") or "",
            state_detail=d.get("state_detail") or {},
            extra={k: v for k, v in d.items() if k not in _ROW_FIELDS and v is not None},
            price=_dec(d.get("price")),
            margin_pct=_dec(d.get("margin_pct")),
            margin_after_pct=_dec(d.get("margin_after_pct")),
            line_margin_min_after_pct=_dec(d.get("line_margin_min_after_pct")),
            below_margin_floor=bool(d.get("below_margin_floor")),
            vendor_sources=[s for s in d.get("vendor_sources") or [] if isinstance(s, dict)],
        )


@dataclass(slots=True)
class CostView:
    """The ordered id list of the current filter/sort, for a virtual grid."""

    ids: list[int]
    total: int  # rows in the table before filtering


@dataclass(slots=True)
class ApprovalItem:
    item_id: int
    cost: Decimal
    seen_catalog_cost: Decimal | None

    def to_json(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "cost": str(self.cost),
            "seen_catalog_cost": None
            if self.seen_catalog_cost is None
            else str(self.seen_catalog_cost),
        }


@dataclass(slots=True)
class Event:
    id: int
    at: str
    kind: str
    data: dict[str, Any]


class DaemonClient:
    """Async client. One instance per process; safe to share between Textual workers."""

    def __init__(self, socket_path: Path | str, *, timeout: float = 30.0):
        self.socket_path = Path(socket_path)
        self.approve_timeout = max(timeout, APPROVE_TIMEOUT)
        # Told (one sentence) when the daemon answers that an approval is still being recorded:
        # the CLI prints it, the TUI shows it, while the client follows the request id.
        self.on_recording: Callable[[str], None] | None = None
        self.follow_interval = 0.5
        self._http = httpx.AsyncClient(
            # Plain HTTP over a Unix socket: never TLS, so no CA bundle to load (20 ms of CPU).
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket_path), verify=False),
            base_url="http://costrecond",
            timeout=httpx.Timeout(timeout, connect=3.0),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> DaemonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ plumbing

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = await self._http.request(method, API + path, **kwargs)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(self.socket_path) from exc
        except httpx.TimeoutException as exc:
            raise NotAnswered(
                f"costrecond did not answer {method} {path} in time; it may be busy "
                "(`costrecond status` shows what it is doing)."
            ) from exc
        except httpx.TransportError as exc:
            raise DaemonNotRunning(self.socket_path) from exc
        return self._decode(resp)

    @staticmethod
    def _decode(resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise DaemonError(
                    resp.status_code,
                    err.get("code", "error"),
                    printable(err["message"]),
                    safe(err.get("data")),
                )
            except (ValueError, KeyError, TypeError):
                raise DaemonError(
                    resp.status_code, "http", f"costrecond answered HTTP {resp.status_code}."
                ) from None
        if resp.status_code == 204 or not resp.content:
            return None
        return safe(resp.json())

    # ------------------------------------------------------------------ daemon

    async def health(self) -> dict[str, Any]:
        return await self._request("GET", "/health")

    async def status(self) -> dict[str, Any]:
        return await self._request("GET", "/status")

    async def sync_now(self, *, full: bool = False) -> dict[str, Any]:
        return await self._request("POST", "/sync", json={"full": full})

    async def vendor_pull(self, source: str | None = None, *, wait: bool = False) -> dict[str, Any]:
        """Pull costs from a distributor API now (None: every configured source)."""
        # A waited pull lasts as long as the distributor takes: no short client timeout.
        return await self._request(
            "POST",
            "/vendors/pull",
            json={"source": source, "wait": wait},
            timeout=None if wait else 30.0,
        )

    async def vendor_sources(self) -> dict[str, Any]:
        return await self._request("GET", "/vendors")

    # ------------------------------------------------------------------ costs

    async def cost_view(
        self,
        *,
        query: str = "",
        changed_only: bool = False,
        state: str | None = None,
        sort: str = "identifier",
        descending: bool = False,
    ) -> CostView:
        params: dict[str, Any] = {"q": query, "sort": sort, "desc": int(descending)}
        if changed_only:
            params["changed"] = 1
        if state:
            params["state"] = state
        d = await self._request("GET", "/costs", params=params)
        return CostView(ids=d["ids"], total=d["total"])

    async def cost_rows(self, ids: Iterable[int]) -> list[CostRow]:
        d = await self._request("POST", "/costs/rows", json={"ids": list(ids)})
        return [CostRow.from_json(r) for r in d["rows"]]

    async def cost_history(self, item_id: int) -> dict[str, Any]:
        """An item's vendor-cost history: ``{identifier, currency, points: [{at, cost, kind,
        source, vendor, by}]}``, oldest first (costs stay JSON strings; see widgets/history)."""
        return await self._request("GET", f"/costs/{item_id}/history")

    async def set_manual_cost(
        self, item_id: int, cost: Decimal, note: str | None = None
    ) -> CostRow:
        d = await self._request(
            "PUT", f"/costs/{item_id}/manual", json={"cost": str(cost), "note": note}
        )
        return CostRow.from_json(d["row"])

    async def revert_manual_cost(self, item_id: int) -> CostRow:
        d = await self._request("DELETE", f"/costs/{item_id}/manual")
        return CostRow.from_json(d["row"])

    # ------------------------------------------------------------------ approval

    async def preview_change_set(
        self, items: list[ApprovalItem], policy: str = "all", *, effective_date: str | None = None
    ) -> dict[str, Any]:
        body = {"items": [i.to_json() for i in items], "policy": policy, "dry_run": True}
        if effective_date:
            body["effective_date"] = effective_date
        return (await self._request("POST", "/change-sets", json=body))["preview"]

    async def approve(
        self,
        items: list[ApprovalItem],
        policy: str = "all",
        *,
        request_id: str | None = None,
        effective_date: str | None = None,
    ) -> dict[str, Any]:
        """Approve with a request id: a retry with the same id returns the same change set, and
        a timeout is answered from what the daemon recorded for that id."""
        request_id = request_id or new_request_id()
        body = {
            "items": [i.to_json() for i in items],
            "policy": policy,
            "dry_run": False,
            "request_id": request_id,
        }
        if effective_date:
            # A future day schedules the set (issue 18.4); today or none pushes at once.
            body["effective_date"] = effective_date
        try:
            out = await self._request(
                "POST", "/change-sets", json=body, timeout=self.approve_timeout
            )
        except NotAnswered:
            return await self._recorded(request_id, "the approval")
        return await self._settled(out, request_id, "the approval")

    async def _settled(self, out: dict[str, Any], request_id: str, what: str) -> dict[str, Any]:
        """The change set of an approval (or undo) answer; when the daemon answered that it is
        still recording it (HTTP 202), followed by request id until it is recorded or refused."""
        if out.get("change_set") is not None or "request" not in out:
            return out["change_set"]
        if self.on_recording is not None:
            self.on_recording(
                f"costrecond is recording {what} (request {request_id}); waiting for its change "
                "set…"
            )
        deadline = asyncio.get_running_loop().time() + self.approve_timeout
        while True:
            try:
                found = await self._request(
                    "GET", "/change-sets", params={"request_id": request_id}
                )
            except NotAnswered:
                return await self._recorded(request_id, what)
            if found["change_sets"]:
                return found["change_sets"][0]
            state = found.get("request") or {}
            if state.get("state") == "failed":
                err = state.get("error") or {}
                raise DaemonError(
                    int(err.get("status") or 409),
                    str(err.get("code") or "error"),
                    str(err.get("message") or f"costrecond refused {what}."),
                    err.get("data"),
                )
            if state.get("state") != "recording":
                # Recording is one transaction: a daemon that stopped half-way kept nothing.
                raise NotAnswered(
                    f"costrecond has not recorded {what} (request {request_id}); nothing will "
                    "be pushed for it."
                )
            if asyncio.get_running_loop().time() > deadline:
                raise NotAnswered(
                    f"costrecond is still recording {what} (request {request_id}); "
                    "`costrecon changes` lists it once it is recorded."
                )
            await asyncio.sleep(self.follow_interval)

    async def _recorded(self, request_id: str, what: str) -> dict[str, Any]:
        """After a timeout: the change set the daemon recorded for ``request_id``, or say it has
        none. A retry of the POST with the same id would be safe too, but a person decides."""
        try:
            found = await self.change_set_by_request(request_id)
        except NotAnswered:
            raise NotAnswered(
                f"costrecond did not answer in time, so it is not known whether it recorded {what} "
                f"(request {request_id}); `costrecon changes` lists what it has."
            ) from None
        if found is None:
            raise NotAnswered(
                f"costrecond did not answer in time and has not recorded {what} "
                f"(request {request_id}); nothing will be pushed for it."
            )
        return found

    async def change_set_by_request(self, request_id: str) -> dict[str, Any] | None:
        sets = (await self._request("GET", "/change-sets", params={"request_id": request_id}))[
            "change_sets"
        ]
        return sets[0] if sets else None

    async def change_set_summary(self, change_set_id: int) -> dict[str, Any]:
        """The change set without its steps (for progress: a big one has 100,000 of them)."""
        return (await self._request("GET", f"/change-sets/{change_set_id}", params={"steps": 0}))[
            "change_set"
        ]

    async def change_set_steps(
        self,
        change_set_id: int,
        *,
        status: str | Iterable[str] | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        """One page of a change set's steps: ``{"total": n, "steps": [...]}``."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if status:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        return await self._request("GET", f"/change-sets/{change_set_id}/steps", params=params)

    async def change_sets(self, limit: int = 50) -> list[dict[str, Any]]:
        return (await self._request("GET", "/change-sets", params={"limit": limit}))["change_sets"]

    async def change_set(self, change_set_id: int, *, steps: bool = True) -> dict[str, Any]:
        """A change set; ``steps=False`` leaves out the per-step list (use
        :meth:`change_set_steps` to page through a big one)."""
        params = {} if steps else {"steps": 0}
        return (await self._request("GET", f"/change-sets/{change_set_id}", params=params))[
            "change_set"
        ]

    async def cancel_change_set(self, change_set_id: int) -> dict[str, Any]:
        """Cancel a scheduled change set before its effective date."""
        return (await self._request("POST", f"/change-sets/{change_set_id}/cancel"))["change_set"]

    async def undo(
        self, change_set_id: int, *, dry_run: bool = False, request_id: str | None = None
    ) -> dict[str, Any]:
        if dry_run:
            return await self._request(
                "POST", f"/change-sets/{change_set_id}/undo", json={"dry_run": True}
            )
        request_id = request_id or new_request_id()
        what = f"the undo of change set {change_set_id}"
        try:
            out = await self._request(
                "POST",
                f"/change-sets/{change_set_id}/undo",
                json={"dry_run": False, "request_id": request_id},
                timeout=self.approve_timeout,
            )
        except NotAnswered:
            return {"change_set": await self._recorded(request_id, what)}
        return {"change_set": await self._settled(out, request_id, what)}

    # ------------------------------------------------------------------ activity + events

    async def activity(
        self,
        *,
        limit: int = 200,
        before_id: int | None = None,
        after_id: int | None = None,
        actor: str | None = None,
        action: str | None = None,
        subject: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {
            k: v
            for k, v in dict(
                limit=limit,
                before_id=before_id,
                after_id=after_id,
                actor=actor,
                action=action,
                subject=subject,
            ).items()
            if v is not None
        }
        return (await self._request("GET", "/activity", params=params))["entries"]

    async def verify_activity(self, checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
        """The chain's check; against ``checkpoint`` (from an export) it also catches tail cuts."""
        params: dict[str, Any] = {}
        if checkpoint is not None:
            params = {
                "checkpoint_id": checkpoint["id"],
                "checkpoint_hash": checkpoint["hash"],
            }
            if checkpoint.get("signature"):
                params["checkpoint_signature"] = checkpoint["signature"]
        return await self._request("GET", "/activity/verify", params=params)

    async def activity_checkpoint(self) -> dict[str, Any]:
        return (await self._request("GET", "/activity/checkpoint"))["checkpoint"]

    async def events(self, since: int, timeout: float = 25.0) -> list[Event]:
        """Long-poll: returns as soon as there are events after ``since`` (or empty on timeout)."""
        try:
            resp = await self._http.get(
                API + "/events",
                params={"since": since, "timeout": timeout},
                timeout=httpx.Timeout(timeout + 10, connect=3.0),
            )
        except (
            httpx.ConnectError,
            httpx.RemoteProtocolError,
            FileNotFoundError,
            ConnectionRefusedError,
        ) as exc:
            raise DaemonNotRunning(self.socket_path) from exc
        d = self._decode(resp)
        return [Event(**e) for e in d["events"]]

    async def stream_events(self, since: int) -> AsyncIterator[Event]:
        """NDJSON stream of events after ``since``; ends when the daemon goes away."""
        try:
            async with self._http.stream(
                "GET", API + "/events", params={"since": since, "stream": 1}, timeout=None
            ) as resp:
                async for line in resp.aiter_lines():
                    if line.strip():
                        yield Event(**safe(json.loads(line)))
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(self.socket_path) from exc

    # ------------------------------------------------------------------ files + mappings

    async def imports(self, limit: int = 200) -> list[dict[str, Any]]:
        return (await self._request("GET", "/imports", params={"limit": limit}))["imports"]

    async def import_detail(self, import_id: int) -> dict[str, Any]:
        return (await self._request("GET", f"/imports/{import_id}"))["import"]

    async def unmatched(self, limit: int = 500) -> list[dict[str, Any]]:
        rows = (await self._request("GET", "/unmatched", params={"limit": limit}))["rows"]
        for r in rows:
            r["cost"] = _dec(r.get("cost"))
        return rows

    async def unmatched_page(
        self,
        limit: int = 200,
        *,
        before: int | None = None,
        import_id: int | None = None,
        vendor: str | None = None,
        suggest: int | None = None,
    ) -> dict[str, Any]:
        """One page of unmatched rows and the ``before`` cursor of the next (None at the end).
        ``suggest``: how many of its rows the daemon works out suggestions for (its default
        otherwise); the others come with ``"suggestions": None`` unless known already."""
        params: dict[str, Any] = {"limit": limit}
        for key, value in (
            ("before", before),
            ("import_id", import_id),
            ("vendor", vendor),
            ("suggest", suggest),
        ):
            if value is not None:
                params[key] = value
        page = await self._request("GET", "/unmatched", params=params)
        for r in page["rows"]:
            r["cost"] = _dec(r.get("cost"))
        return page

    async def unmatched_suggestions(self, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """The catalogue suggestions of these unmatched vendor rows (at most 50), by row id."""
        rows = (await self._request("POST", "/unmatched/suggestions", json={"ids": ids}))["rows"]
        return {int(r["vendor_cost_id"]): r["suggestions"] for r in rows}

    async def mappings(self) -> list[dict[str, Any]]:
        return (await self._request("GET", "/mappings"))["mappings"]

    async def create_mapping(
        self, vendor: str, sku: str, term: str | None, item_id: int
    ) -> dict[str, Any]:
        body = {"vendor": vendor, "sku": sku, "term": term or "", "item_id": item_id}
        return (await self._request("POST", "/mappings", json=body))["mapping"]

    async def delete_mapping(self, mapping_id: int) -> None:
        await self._request("DELETE", f"/mappings/{mapping_id}")

    # ------------------------------------------------------------ Mappings from the catalogue

    async def mapping_needs(
        self, offset: int = 0, limit: int = 50, candidates: int = 5
    ) -> dict[str, Any]:
        """Catalogue items on live lines with no vendor cost (most important first), each with
        ranked candidate vendor rows; ``total`` counts them all."""
        params = {"offset": offset, "limit": limit, "candidates": candidates}
        page = await self._request("GET", "/mappings/needs", params=params)
        for item in page["items"]:
            item["cost"] = _dec(item.get("cost"))
            for c in item.get("candidates") or []:
                c["cost"] = _dec(c.get("cost"))
        return page

    async def mapping_search(self, q: str, limit: int = 20) -> dict[str, Any]:
        """Vendor rows by SKU/MPN or words of their description (``rows``); ``names_indexed`` is
        False while the newest import's rows are still being indexed (some may be missing)."""
        page = await self._request("GET", "/mappings/search", params={"q": q, "limit": limit})
        for r in page["rows"]:
            r["cost"] = _dec(r.get("cost"))
        return page
