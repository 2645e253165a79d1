"""ConnectWise PSA (Manage) REST API 3.0 connector (psa-apis.md §1).

Speaks the real API: codebase discovery through ``/login/companyinfo``, Basic
``company+public:private`` auth plus the ``clientId`` header, forward-only paging with a navigable
fallback, ``conditions``/``fields`` query parameters, JSON-Patch updates that answer with the full
entity. The same code runs against a tenant (``site = "https://api-na.myconnectwise.net"``) and
against sim/connectwise.py.

Pull strategy (the expensive part is additions: there is no top-level list of them, §1.3, so every
agreement costs at least one request):

- full pull: catalogue and agreements are each listed by one sequential forward-only pager, while
  ``concurrency`` workers list each agreement's additions as the agreement pages arrive. All
  requests share one semaphore, so wall time ≈ requests × latency ÷ concurrency.
- incremental pull: catalogue with ``conditions=lastUpdated>[cursor - overlap]``; the agreement
  list in full (a few pages at 1000 a page) but only changed agreements are emitted; additions of
  new or changed agreements are listed in full, and the additions of every *other* agreement are
  asked for with the same ``lastUpdated`` condition — still one (mostly empty) request per
  agreement. That is the cheapest *safe* strategy: whether ConnectWise bumps an agreement's
  ``_info.lastUpdated`` when one of its additions changes is UNCERTAIN (§1.6), and
  ``/procurement/products`` is a different entity (§1.2), so neither can stand in for a
  per-agreement scan. An incremental pull therefore saves bytes, parsing and mirror writes (only
  changed rows travel) but not requests; deletions of additions are caught by the daemon's
  periodic full pull (``sync.full_every_hours``). ``trust_agreement_timestamps = true`` opts into
  the fast, unsafe variant (skip agreements whose stamp did not move) for tenants where it has been
  verified.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from costrecon_daemon.psa.base import (
    CatalogRecord,
    ChunkSink,
    Connector,
    ContractRecord,
    LineKey,
    LineRecord,
    PermissionCheck,
    PSAAuthError,
    PSAError,
    PSANotFound,
    PSAPermissionError,
    PSAValidationError,
    PSAWriteNotApplied,
    PullResult,
    RateLimits,
    SyncChunk,
    granted,
)
from costrecon_daemon.psa.http import Call, Classifier, HttpResponse, Transport, dumps, loads
from costrecon_daemon.psa.limits import Concurrency

__all__ = ["ConnectWiseConnector", "ConnectWiseSettings"]

log = logging.getLogger(__name__)

NAME = "ConnectWise PSA"
DEFAULT_CODEBASE = "v4_6_release/"  # what clients use when companyinfo cannot be read (§1.1)
ACCEPT = "application/vnd.connectwise.com+json; version=2025.1"
MAX_PAGE_SIZE = 1000

# Security role settings, as written in System > Security Roles (§1.4, §4.4).
SETTING_CATALOG_EDIT = (
    "Procurement > Product Catalog: Edit = All (and Procurement > Products: Edit = All)"
)
SETTING_CATALOG_READ = "Procurement > Product Catalog: Inquire = All"
SETTING_AGREEMENTS_EDIT = "Finance > Agreements: Edit = All"
SETTING_AGREEMENTS_READ = "Finance > Agreements: Inquire = All"

# Only what the mirror needs: `fields` shrinks every page roughly tenfold (§1.2).
ITEM_FIELDS = (
    "id,identifier,description,inactiveFlag,cost,price,vendor/name,vendorSku,manufacturer/name,"
    "manufacturerPartNumber,_info/lastUpdated"
)
AGREEMENT_FIELDS = (
    "id,name,company/name,agreementStatus,cancelledFlag,currency/currencyCode,_info/lastUpdated"
)
ADDITION_FIELDS = (
    "id,agreementId,product/id,quantity,unitCost,unitPrice,cancelledDate,description,"
    "_info/lastUpdated"
)

CHUNK_ROWS = 2000


@dataclass(repr=False)
class ConnectWiseSettings:
    site: str  # "https://api-na.myconnectwise.net" (or "na.myconnectwise.net", or an on-prem host)
    company: str  # the company ID you log in with
    public_key: str
    private_key: str
    client_id: str  # the integration's clientId GUID from the ConnectWise developer portal
    codebase: str | None = None  # e.g. "v2025_1/"; looked up through companyinfo when unset
    page_size: int = 1000
    concurrency: int = 8
    timeout: float = 30.0
    max_retries: int = 5
    verify_tls: bool = True
    currency: str = "USD"  # catalogue items carry no currency in ConnectWise: the tenant's own
    backoff_base: float = 0.5  # seconds; first retry waits up to this, doubling each time
    overlap_seconds: int = 60  # incremental pulls re-read this much before the cursor
    trust_agreement_timestamps: bool = False  # see the module docstring; unsafe until verified

    def __repr__(self) -> str:  # keys never reach logs
        return (
            f"ConnectWiseSettings(site={self.site!r}, company={self.company!r}, "
            f"codebase={self.codebase!r}, page_size={self.page_size}, "
            f"concurrency={self.concurrency})"
        )


def _site_url(site: str) -> str:
    site = site.strip().rstrip("/")
    if "://" not in site:
        site = "https://" + site
    parts = urlsplit(site)
    host = parts.netloc
    # Cloud UI hosts get an "api-" prefix for the API (§1.1): na.myconnectwise.net -> api-na...
    if (
        host.endswith(".myconnectwise.net") or host.endswith(".connectwisedev.com")
    ) and not host.startswith("api-"):
        host = "api-" + host
    return f"{parts.scheme}://{host}"


def _epoch(stamp: str | None) -> int | None:
    if not stamp:
        return None
    try:
        dt = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _money(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str):
        return Decimal(value)
    raise PSAValidationError(f"{NAME} sent an amount that is not a number: {value!r}.")


def _name(ref: Any) -> str | None:
    return ref.get("name") if isinstance(ref, dict) else None


def _next_page_id(link_header: str | None) -> tuple[str, str] | None:
    """The rel="next" target of a Link header as ("pageId"|"page", value), or None."""
    if not link_header:
        return None
    for part in link_header.split(","):
        if 'rel="next"' not in part and "rel=next" not in part:
            continue
        url = part.split(";", 1)[0].strip().strip("<>")
        query = parse_qs(urlsplit(url).query)
        for key in ("pageId", "page"):
            if query.get(key):
                return key, query[key][0]
    return None


@dataclass
class _Batcher:
    """Collects records and hands them to the sink in chunks, one sink call at a time."""

    sink: ChunkSink
    size: int = CHUNK_ROWS
    chunk: SyncChunk = field(default_factory=SyncChunk)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    max_stamp: int | None = None

    def stamp(self, text: str | None) -> None:
        epoch = _epoch(text)
        if epoch is not None and (self.max_stamp is None or epoch > self.max_stamp):
            self.max_stamp = epoch

    async def add(self, kind: str, records: list[Any]) -> None:
        if not records:
            return
        getattr(self.chunk, kind).extend(records)
        c = self.chunk
        if len(c.items) + len(c.contracts) + len(c.lines) >= self.size:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            c = self.chunk
            if not (c.items or c.contracts or c.lines):
                return
            self.chunk = SyncChunk()
            await self.sink(c)


class ConnectWiseClassifier(Classifier):
    """ConnectWise answers (§1.5): ``{code, message, errors[]}`` bodies; 429 always carries
    ``Retry-After`` in seconds (honoured by the base class); 5xx are retried with backoff."""

    name = NAME

    def error(self, resp: HttpResponse, call: Call) -> PSAError:
        status = resp.status_code
        code = message = ""
        try:
            payload = loads(resp.content)
            if isinstance(payload, dict):
                code = str(payload.get("code") or "")
                message = str(payload.get("message") or "")
                for err in payload.get("errors") or []:
                    if isinstance(err, dict) and err.get("message"):
                        message += (
                            f" ({err.get('field') or err.get('resource') or ''}: {err['message']})"
                        )
        except ValueError:
            message = resp.text[:300]
        detail = f"{status} {code}: {message}".strip()
        target = call.what
        if status == 401:
            if code == "ConnectWiseApi" or "UserNotAuthenticated" in message:
                return PSAAuthError(
                    f"{NAME} accepted the API keys but the API member cannot log in; check that "
                    "the API member is active and has a security role in System > Members.",
                    status=status,
                    detail=detail,
                )
            return PSAAuthError(
                f"{NAME} rejected the credentials; check psa.connectwise company, public_key, "
                "private_key and client_id.",
                status=status,
                detail=detail,
            )
        if status == 403:
            setting = call.setting or "the security role of the API member"
            return PSAPermissionError(
                f"The {NAME} API member's security role does not allow {target}; in System > "
                f"Security Roles set {setting}.",
                setting=setting,
                status=status,
                detail=detail,
            )
        if status == 404:
            return PSANotFound(
                f"{NAME} has no {target} (it may have been deleted).", status=status, detail=detail
            )
        if status in (400, 409, 415, 422):
            return PSAValidationError(
                f"{NAME} refused {target}: {message or code or 'invalid request'}.",
                status=status,
                detail=detail,
            )
        return PSAError(f"{NAME} answered {status} to {target}.", status=status, detail=detail)


class ConnectWiseConnector(Connector):
    psa = "connectwise"
    display_name = NAME

    def __init__(self, settings: ConnectWiseSettings):
        self.settings = settings
        self.site = _site_url(settings.site)
        self.page_size = max(1, min(MAX_PAGE_SIZE, settings.page_size))
        self.limits = RateLimits(
            concurrency=max(1, settings.concurrency), item_write_calls=1, line_write_calls=1
        )
        self._codebase = settings.codebase
        self._codebase_discovered = False
        token = base64.b64encode(
            f"{settings.company}+{settings.public_key}:{settings.private_key}".encode()
        ).decode()
        self.http = Transport(
            classifier=ConnectWiseClassifier(),
            # ConnectWise publishes no quota (§1.5): bounded concurrency and obeying 429.
            slots=[Concurrency(self.limits.concurrency)],
            headers={
                "Authorization": f"Basic {token}",
                "clientId": settings.client_id,
                "Accept": ACCEPT,
                "Content-Type": "application/json",
                "Cache-Control": "no-cache",
            },
            timeout=settings.timeout,
            connections=self.limits.concurrency,
            max_retries=settings.max_retries,
            backoff_base=settings.backoff_base,
            verify_tls=settings.verify_tls,
        )

    @property
    def requests_made(self) -> int:
        return self.http.requests_made

    @property
    def api_root(self) -> str:
        codebase = self._codebase or DEFAULT_CODEBASE
        return f"{self.site}/{codebase.strip('/')}/apis/3.0"

    async def aclose(self) -> None:
        await self.http.aclose()

    # ---- connection ---------------------------------------------------------------------------

    async def _discover_codebase(self) -> None:
        url = f"{self.site}/login/companyinfo/{self.settings.company}"
        try:
            resp = await self.http.request("GET", url, what="look up the company's codebase")
        except PSAError as exc:
            if exc.retryable:
                raise
            log.info("companyinfo answered %s; using %s", exc.status, DEFAULT_CODEBASE)
            self._codebase = DEFAULT_CODEBASE
            return
        if resp.status_code != 200:
            self._codebase = DEFAULT_CODEBASE
            return
        try:
            info = loads(resp.content)
        except ValueError:
            self._codebase = DEFAULT_CODEBASE
            return
        if info is None:
            raise PSAAuthError(
                f"{NAME} does not know the company ID {self.settings.company!r}; check "
                "psa.connectwise.company "
                "(the company name you type at the ConnectWise login screen)."
            )
        codebase = str(info.get("Codebase") or DEFAULT_CODEBASE)
        self._codebase = codebase if codebase.endswith("/") else codebase + "/"
        self._codebase_discovered = True

    async def connect(self) -> None:
        if self._codebase is None:
            await self._discover_codebase()
        # A cheap authenticated call; a 403 here is a permission problem, not a failed connect.
        try:
            await self._get(
                "/procurement/catalog",
                {"pageSize": "1", "fields": "id"},
                read_setting=SETTING_CATALOG_READ,
            )
        except PSAPermissionError:
            pass

    # ---- one request, errors turned into messages for people ----------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: str | None = None,
        headers: dict[str, str] | None = None,
        setting: str | None = None,
        what: str = "",
        mutates: bool | None = None,
    ) -> HttpResponse:
        if self._codebase is None:
            await self._discover_codebase()
        what = what or f"{method} {path}"
        try:
            return await self.http.request(
                method, self.api_root + path, what=what, setting=setting, params=params,
                content=body, headers=headers, mutates=mutates,
            )  # fmt: skip
        except PSANotFound:
            if not self._codebase_discovered:
                raise
            # The cloud codebase can change under us (§1.1): re-read companyinfo once and retry.
            # A 404 is a refusal, so sending a write again here is not a blind re-send.
            old = self._codebase
            await self._discover_codebase()
            if self._codebase == old:
                raise
            log.info("ConnectWise codebase changed from %s to %s", old, self._codebase)
            return await self.http.request(
                method, self.api_root + path, what=what, setting=setting, params=params,
                content=body, headers=headers, mutates=mutates,
            )  # fmt: skip

    async def _get(
        self, path: str, params: dict[str, str] | None = None, *, read_setting: str, what: str = ""
    ) -> Any:
        resp = await self._call("GET", path, params=params, setting=read_setting, what=what)
        return loads(resp.content)

    async def _pages(
        self, path: str, fields: str, conditions: str | None, *, read_setting: str
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every row of a list endpoint, page by page.

        Forward-only paging (§1.2) keeps deep pages cheap and correct while rows are added or
        removed. An endpoint that does not support it answers a full page without a Link header;
        we then continue with navigable ``page=N`` paging from page 2.
        """
        params: dict[str, str] = {"pageSize": str(self.page_size), "fields": fields}
        if conditions:
            params["conditions"] = conditions
        forward = {"pagination-type": "forward-only"}
        first = True
        while True:
            resp = await self._call(
                "GET", path, params=params, headers=forward, setting=read_setting
            )
            rows = loads(resp.content)
            if not isinstance(rows, list):
                raise PSAValidationError(
                    f"{NAME} answered {path} with something that is not a list."
                )
            if rows:
                yield rows
            nxt = _next_page_id(resp.headers.get("Link"))
            if nxt is not None and rows:
                params = (
                    {**params, "pageId": nxt[1]}
                    if nxt[0] == "pageId"
                    else {**params, "page": nxt[1]}
                )
                first = False
                continue
            # No next link: the end, unless the very first page came back full without any Link,
            # which is how an endpoint without forward-only support answers (§1.2, UNCERTAIN).
            if not first or len(rows) < self.page_size or resp.headers.get("Link"):
                return
            break
        # Navigable fallback.
        params.pop("pageId", None)
        params["orderBy"] = "id asc"
        page = 2
        while True:
            params["page"] = str(page)
            rows = await self._get(path, params, read_setting=read_setting)
            if rows:
                yield rows
            if len(rows) < self.page_size:
                return
            page += 1

    # ---- records ------------------------------------------------------------------------------

    def _item(self, row: dict[str, Any]) -> CatalogRecord:
        info = row.get("_info") or {}
        return CatalogRecord(
            psa_id=str(row["id"]),
            identifier=str(row.get("identifier") or ""),
            name=str(row.get("description") or ""),
            cost=_money(row.get("cost")),
            price=_money(row.get("price")),
            currency=self.settings.currency,
            active=not row.get("inactiveFlag", False),
            vendor_sku=row.get("vendorSku") or None,
            mpn=row.get("manufacturerPartNumber") or None,
            manufacturer=_name(row.get("manufacturer")),
            vendor_name=_name(row.get("vendor")),
            kind="catalog",
            updated_at=info.get("lastUpdated"),
        )

    def _contract(self, row: dict[str, Any]) -> ContractRecord:
        info = row.get("_info") or {}
        status = str(row.get("agreementStatus") or "")
        currency = row.get("currency")
        code = currency.get("currencyCode") if isinstance(currency, dict) else None
        return ContractRecord(
            psa_id=str(row["id"]),
            name=str(row.get("name") or ""),
            company=_name(row.get("company")) or "",
            status=status,
            active=status == "Active" and not row.get("cancelledFlag", False),
            currency=code or self.settings.currency,
            updated_at=info.get("lastUpdated"),
        )

    @staticmethod
    def _line(row: dict[str, Any], agreement_id: int) -> LineRecord | None:
        product = row.get("product")
        if not isinstance(product, dict) or product.get("id") is None:
            return None  # an addition always references a catalogue item; be defensive anyway
        info = row.get("_info") or {}
        return LineRecord(
            psa_id=str(row["id"]),
            contract_psa_id=str(row.get("agreementId") or agreement_id),
            item_psa_id=str(product["id"]),
            quantity=_money(row.get("quantity")) or Decimal(0),
            unit_cost=_money(row.get("unitCost")),
            unit_price=_money(row.get("unitPrice")),
            active=row.get("cancelledDate") is None,
            kind="addition",
            description=str(row.get("description") or ""),
            updated_at=info.get("lastUpdated"),
        )

    # ---- pull ---------------------------------------------------------------------------------

    async def pull(self, since: str | None, sink: ChunkSink) -> PullResult:
        start = self.requests_made
        threshold: int | None = None
        if since is not None:
            cursor_epoch = _epoch(since)
            if cursor_epoch is None:
                raise PSAValidationError(
                    f"The saved sync cursor {since!r} is not a date; run a full sync."
                )
            threshold = cursor_epoch - max(0, self.settings.overlap_seconds)
        changed = f"lastUpdated>[{_iso(threshold)}]" if threshold is not None else None
        out = _Batcher(sink)
        queue: asyncio.Queue[tuple[int, bool] | None] = asyncio.Queue()
        full_lines: set[str] = set()
        workers = self.limits.concurrency

        async def catalogue() -> None:
            async for rows in self._pages(
                "/procurement/catalog", ITEM_FIELDS, changed, read_setting=SETTING_CATALOG_READ
            ):
                for row in rows:
                    out.stamp((row.get("_info") or {}).get("lastUpdated"))
                await out.add("items", [self._item(r) for r in rows])

        async def agreements() -> None:
            try:
                async for rows in self._pages(
                    "/finance/agreements",
                    AGREEMENT_FIELDS,
                    None,
                    read_setting=SETTING_AGREEMENTS_READ,
                ):
                    emit = []
                    for row in rows:
                        stamp = (row.get("_info") or {}).get("lastUpdated")
                        epoch = _epoch(stamp)
                        is_changed = threshold is None or epoch is None or epoch > threshold
                        if is_changed:
                            out.stamp(stamp)
                            emit.append(self._contract(row))
                        if is_changed or not self.settings.trust_agreement_timestamps:
                            queue.put_nowait((int(row["id"]), is_changed))
                    await out.add("contracts", emit)
            finally:
                for _ in range(workers):
                    queue.put_nowait(None)

        async def additions_worker() -> None:
            while (job := await queue.get()) is not None:
                agreement_id, in_full = job
                path = f"/finance/agreements/{agreement_id}/additions"
                try:
                    async for rows in self._pages(
                        path,
                        ADDITION_FIELDS,
                        None if in_full else changed,
                        read_setting=SETTING_AGREEMENTS_READ,
                    ):
                        lines = []
                        for row in rows:
                            out.stamp((row.get("_info") or {}).get("lastUpdated"))
                            rec = self._line(row, agreement_id)
                            if rec is not None:
                                lines.append(rec)
                        await out.add("lines", lines)
                except PSANotFound:
                    continue  # the agreement was deleted while we were listing
                if in_full:
                    full_lines.add(str(agreement_id))

        async with asyncio.TaskGroup() as tg:
            tg.create_task(catalogue())
            tg.create_task(agreements())
            for _ in range(workers):
                tg.create_task(additions_worker())
        await out.flush()
        if out.max_stamp is not None:
            cursor: str | None = _iso(max(out.max_stamp, _epoch(since) or 0))
        else:
            cursor = since
        return PullResult(
            cursor=cursor,
            complete_items=since is None,
            complete_contracts=since is None,
            complete_lines_for=None if since is None else frozenset(full_lines),
            requests=self.requests_made - start,
        )

    # ---- reads and writes ---------------------------------------------------------------------

    @staticmethod
    def _int_id(psa_id: str, what: str) -> int:
        try:
            return int(psa_id)
        except (TypeError, ValueError):
            raise PSANotFound(f"{psa_id!r} is not a {NAME} {what} id.") from None

    def _item_path(self, item_psa_id: str) -> str:
        return f"/procurement/catalog/{self._int_id(item_psa_id, 'catalogue item')}"

    def _line_path(self, line: LineKey) -> str:
        agreement = self._int_id(line.contract_psa_id, "agreement")
        addition = self._int_id(line.psa_id, "agreement addition")
        return f"/finance/agreements/{agreement}/additions/{addition}"

    async def read_item_cost(self, item_psa_id: str) -> Decimal | None:
        row = await self._get(
            self._item_path(item_psa_id),
            {"fields": "id,cost"},
            read_setting=SETTING_CATALOG_READ,
            what=f"catalogue item {item_psa_id}",
        )
        return _money(row.get("cost"))

    async def read_line_cost(self, line: LineKey) -> Decimal | None:
        row = await self._get(
            self._line_path(line),
            {"fields": "id,unitCost"},
            read_setting=SETTING_AGREEMENTS_READ,
            what=f"agreement addition {line.psa_id} on agreement {line.contract_psa_id}",
        )
        return _money(row.get("unitCost"))

    # Guard reads for a push (changes.py): the current value of many targets in few requests, so
    # checking before writing costs a fraction of a request per line instead of one GET each.
    # ``id in (...)`` is part of the documented conditions grammar (§1.2).
    _GUARD_CHUNK = 200

    async def read_item_costs(self, item_psa_ids: list[str]) -> dict[str, Decimal | None]:
        ids = [self._int_id(i, "catalogue item") for i in item_psa_ids]
        out: dict[str, Decimal | None] = {}
        for start in range(0, len(ids), self._GUARD_CHUNK):
            cond = "id in (" + ",".join(map(str, ids[start : start + self._GUARD_CHUNK])) + ")"
            async for rows in self._pages(
                "/procurement/catalog", "id,cost", cond, read_setting=SETTING_CATALOG_READ
            ):
                out.update((str(r["id"]), _money(r.get("cost"))) for r in rows)
        return out

    async def read_line_costs(self, lines: list[LineKey]) -> dict[str, Decimal | None]:
        """Additions live under their agreement: one filtered list request per agreement."""
        by_agreement: dict[int, list[int]] = {}
        for line in lines:
            by_agreement.setdefault(self._int_id(line.contract_psa_id, "agreement"), []).append(
                self._int_id(line.psa_id, "agreement addition")
            )
        out: dict[str, Decimal | None] = {}

        async def one(agreement: int, ids: list[int]) -> None:
            for start in range(0, len(ids), self._GUARD_CHUNK):
                cond = "id in (" + ",".join(map(str, ids[start : start + self._GUARD_CHUNK])) + ")"
                async for rows in self._pages(
                    f"/finance/agreements/{agreement}/additions",
                    "id,unitCost",
                    cond,
                    read_setting=SETTING_AGREEMENTS_READ,
                ):
                    out.update((str(r["id"]), _money(r.get("unitCost"))) for r in rows)

        await asyncio.gather(*(one(a, ids) for a, ids in by_agreement.items()))
        return out

    async def _patch_cost(
        self,
        path: str,
        field_name: str,
        cost: Decimal,
        *,
        setting: str,
        what: str,
        reread: Callable[[], Any],
    ) -> Decimal:
        if not isinstance(cost, Decimal) or not cost.is_finite():
            raise TypeError("cost must be a finite Decimal")
        body = dumps([{"op": "replace", "path": field_name, "value": cost}])
        resp = await self._call("PATCH", path, body=body, setting=setting, what=f"editing {what}")
        # §1.4: the reply is the full updated entity, so it is the read-back (one request per
        # write).
        try:
            entity = loads(resp.content) if resp.content else None
        except ValueError:
            entity = None
        if isinstance(entity, dict) and field_name in entity:
            got = _money(entity[field_name])
        else:
            got = await reread()
        if got is None or got != cost:
            raise PSAWriteNotApplied(
                f"{NAME} accepted the new cost {cost} for {what} but reads back "
                f"{'no cost' if got is None else got}; the change was not applied.",
                status=resp.status_code,
            )
        return got

    async def write_item_cost(self, item_psa_id: str, cost: Decimal) -> Decimal:
        return await self._patch_cost(
            self._item_path(item_psa_id),
            "cost",
            cost,
            setting=SETTING_CATALOG_EDIT,
            what=f"catalogue item {item_psa_id}",
            reread=lambda: self.read_item_cost(item_psa_id),
        )

    async def write_line_cost(self, line: LineKey, cost: Decimal) -> Decimal:
        return await self._patch_cost(
            self._line_path(line),
            "unitCost",
            cost,
            setting=SETTING_AGREEMENTS_EDIT,
            what=f"agreement addition {line.psa_id} on agreement {line.contract_psa_id}",
            reread=lambda: self.read_line_cost(line),
        )

    # ---- permissions --------------------------------------------------------------------------

    async def _probe_edit(self, path: str, setting: str) -> bool:
        """True when the role may edit ``path``.

        The probe is a PATCH with an *empty* JSON-Patch array on a record that exists. No operation
        means nothing can change even when the role does allow editing; the role is checked before
        the body (a member without edit rights gets 403 whatever it sends). A "replace the cost with
        its current value" probe was rejected: it could overwrite a cost someone changes in the UI
        between our read and our write. A 400 for the empty body also means the security check
        passed.
        """
        try:
            # An empty JSON-Patch cannot change anything, so re-sending it is harmless.
            await self._call("PATCH", path, body="[]", setting=setting, mutates=False)
        except PSAPermissionError:
            return False
        except (PSAValidationError, PSANotFound):
            return True
        return True

    async def check_permissions(self) -> list[PermissionCheck]:
        checks: list[PermissionCheck] = []

        def problem(capability: str, setting: str, doing: str) -> None:
            checks.append(
                PermissionCheck(
                    capability,
                    f"The {NAME} API member cannot {doing}; in System > Security Roles set "
                    f"{setting}.",
                )
            )

        def fine(capability: str, setting: str) -> None:
            checks.append(granted(capability, setting))

        def unknown(capability: str, why: str) -> None:
            checks.append(PermissionCheck(capability, f"not checked: {why}.", ok=None))

        items: list[dict[str, Any]] = []
        try:
            items = await self._get(
                "/procurement/catalog",
                {"pageSize": "1", "fields": "id"},
                read_setting=SETTING_CATALOG_READ,
            )
            fine("read_catalog", SETTING_CATALOG_READ)
        except PSAPermissionError:
            problem("read_catalog", SETTING_CATALOG_READ, "read the product catalogue")
        if not items:
            unknown("edit_catalog", "no catalogue item to probe")
        elif await self._probe_edit(f"/procurement/catalog/{items[0]['id']}", SETTING_CATALOG_EDIT):
            fine("edit_catalog", SETTING_CATALOG_EDIT)
        else:
            problem("edit_catalog", SETTING_CATALOG_EDIT, "edit product catalogue costs")

        addition: tuple[int, int] | None = None
        try:
            agreements = await self._get(
                "/finance/agreements",
                {"pageSize": "10", "fields": "id", "conditions": 'agreementStatus="Active"'},
                read_setting=SETTING_AGREEMENTS_READ,
            )
            for row in agreements:
                rows = await self._get(
                    f"/finance/agreements/{row['id']}/additions",
                    {"pageSize": "1", "fields": "id"},
                    read_setting=SETTING_AGREEMENTS_READ,
                )
                if rows:
                    addition = (int(row["id"]), int(rows[0]["id"]))
                    break
            fine("read_lines", SETTING_AGREEMENTS_READ)
        except PSAPermissionError:
            problem("read_lines", SETTING_AGREEMENTS_READ, "read agreements and their additions")
        if addition is None:
            unknown("edit_lines", "no agreement addition to probe")
        elif await self._probe_edit(
            f"/finance/agreements/{addition[0]}/additions/{addition[1]}", SETTING_AGREEMENTS_EDIT
        ):
            fine("edit_lines", SETTING_AGREEMENTS_EDIT)
        else:
            problem("edit_lines", SETTING_AGREEMENTS_EDIT, "edit agreement addition costs")
        return checks
