"""Syncro connector over REST API v1 (reference/psa-apis.md §3, §4.3, §4.6).

Shape of the account as costrecon sees it:

- catalogue = ``/products`` (psa_id = the product id; ``price_cost`` is the cost);
- contracts = invoice schedules ("Recurring Invoices"; psa_id = schedule id; paused = inactive);
- contract lines = schedule lines that carry a ``product_id`` (psa_id = line id; ``cost_cents``).

Pulls are always full scans: products have no ``updated_at`` and no ``since_updated_at`` filter
(§3.2), so ``pull(since)`` reads everything again and says so (``complete_*`` are all true). Lines
are read with ``GET /schedules/{id}`` for every schedule because the list view may trim ``lines``
(§3.3 UNCERTAIN; the simulator returns ``[]`` there, the hardest reading).

Every request waits for a client-side rolling-minute limiter set below Syncro's 180/minute per IP
(§3.5) so 429 is not reached in normal use; a 429 "Retry later" (no Retry-After) is still survived
with a fixed wait, the way SY-PS does it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

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
    PSARateLimited,
    PSAValidationError,
    PSAWriteNotApplied,
    PullResult,
    RateLimits,
    SyncChunk,
    granted,
)
from costrecon_daemon.psa.http import Call, Classifier, HttpResponse, Retry, Transport, dumps, loads
from costrecon_daemon.psa.limits import Concurrency, RollingWindow

CENT = Decimal("0.01")
PRODUCTS_LIST = "Products - List/Search"
PRODUCTS_EDIT = "Products - Edit"
RECURRING_LIST = "Recurring Invoices - List"
RECURRING_EDIT = "Recurring Invoices - Edit"
# Fields a product PUT must not carry back (computed or nested collections, SY-SPEC example).
PRODUCT_READ_ONLY = {"id", "category_path", "product_skus", "location_quantities", "photos"}


@dataclass
class SyncroSettings:
    base_url: str  # https://{subdomain}.syncromsp.com/api/v1
    api_token: str
    concurrency: int = 3
    timeout: float = 30.0
    max_retries: int = 5
    requests_per_minute: int = 180
    # Additive (not in the first brief):
    currency: str = "USD"  # Syncro accounts have one currency; the API does not say which
    rate_limit_backoff: float = 30.0  # fixed wait after 429 "Retry later" (SY-PS waits 30 s)
    retry_backoff: float = 1.0  # first wait after a 5xx/dropped connection, doubled each time


def _permission_message(setting: str, what: str) -> str:
    return (
        f"Syncro refused to {what}: the API token lacks the '{setting}' permission. In Syncro go "
        f"to Admin > API > API Tokens, edit the token's Custom Permissions and tick '{setting}'."
    )


def _error_text(resp: HttpResponse) -> str:
    """Every error shape Syncro uses: {error}, {message}, {success,message[]}, {errors} (§3.5)."""
    try:
        data = loads(resp.text)
    except ValueError:
        return resp.text.strip()[:300]
    if not isinstance(data, dict):
        return str(data)[:300]
    parts: list[str] = []
    for key in ("error", "message", "errors"):
        value = data.get(key)
        if isinstance(value, list):
            parts += [str(v) for v in value]
        elif isinstance(value, dict):
            parts += [
                f"{k} {', '.join(map(str, v if isinstance(v, list) else [v]))}"
                for k, v in value.items()
            ]
        elif value:
            parts.append(str(value))
    return "; ".join(parts)


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _id(psa_id: str, what: str) -> int:
    if not psa_id.isdigit():
        raise PSANotFound(f"{psa_id!r} is not a Syncro {what} id")
    return int(psa_id)


class SyncroClassifier(Classifier):
    """Syncro answers (§3.5): a missing permission is a 401 (sometimes 403) whose body says
    "permission"; 404 may have an empty body; 422 carries the refused fields; the 429 is the
    plain-text "Retry later" of Rack::Attack with no Retry-After, so the wait is a fixed one
    (SY-PS waits 30 s) and concerns every request from this IP: the whole connector pauses."""

    name = "Syncro"

    def __init__(self, *, rate_limit_wait: float) -> None:
        self.rate_limit_wait = rate_limit_wait

    def rate_limited(self, resp: HttpResponse, call: Call) -> Retry:
        verdict = super().rate_limited(resp, call)
        return Retry(
            PSARateLimited(
                "Syncro's limit of 180 requests a minute was reached; wait a minute and retry.",
                retry_after=verdict.wait,
            ),
            wait=verdict.wait,
            pause_all=True,
            maybe_applied=False,
        )

    def error(self, resp: HttpResponse, call: Call) -> PSAError:
        status = resp.status_code
        text = _error_text(resp)
        setting = call.setting or PRODUCTS_LIST
        if status in (401, 403):
            if "permission" in text.lower() or status == 403:
                return PSAPermissionError(
                    _permission_message(setting, call.what),
                    setting=setting,
                    status=status,
                    detail=text,
                )
            return PSAAuthError(
                "Syncro refused the API token (HTTP 401); check api_token in the config, and "
                "that the token has not expired (Admin > API > API Tokens).",
                status=status,
            )
        if status == 404:
            return PSANotFound(
                f"Syncro has no such record (while trying to {call.what}).", status=404
            )
        if status in (400, 422):
            return PSAValidationError(
                f"Syncro refused the change while trying to {call.what}: {text}",
                status=status,
                detail=text,
            )
        return PSAError(
            f"Syncro answered HTTP {status} while trying to {call.what}: {text}", status=status
        )


class SyncroConnector(Connector):
    psa = "syncro"
    display_name = "Syncro"

    def __init__(self, settings: SyncroSettings) -> None:
        self.settings = settings
        self.limits = RateLimits(
            concurrency=settings.concurrency,
            per_minute=settings.requests_per_minute,
            item_write_calls=3,  # GET the product, PUT it whole, GET to verify
            line_write_calls=3,  # GET the schedule (name/description), PUT the line, GET to verify
        )
        # Paced below 180 requests a minute per IP (§3.5) so a 429 is not reached in normal use.
        self.minute = RollingWindow.per_minute(settings.requests_per_minute)
        self.http = Transport(
            classifier=SyncroClassifier(rate_limit_wait=settings.rate_limit_backoff),
            slots=[Concurrency(settings.concurrency)],
            budgets=[self.minute],
            headers={
                "Authorization": f"Bearer {settings.api_token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            timeout=settings.timeout,
            connections=settings.concurrency,
            max_retries=settings.max_retries,
            backoff_base=settings.retry_backoff,
        )

    @property
    def requests_made(self) -> int:
        return self.http.requests_made

    @property
    def rate_limited(self) -> int:
        """429s met (should stay 0 in normal use)."""
        return self.http.rate_limited

    async def _call(
        self, method: str, path: str, *, setting: str, what: str, body: Any = None
    ) -> Any:
        url = f"{self.settings.base_url.rstrip('/')}/{path.lstrip('/')}"
        content = None if body is None else dumps(body)
        resp = await self.http.request(method, url, what=what, setting=setting, content=content)
        return loads(resp.text) if resp.text.strip() else None

    async def _pages(self, path: str, key: str, *, setting: str, what: str) -> list[dict[str, Any]]:
        """Every page of a list (25 each, from 1). ``meta.total_pages`` gives the rest, fetched
        concurrently; without ``meta`` (§3.2 UNCERTAIN for /products) go on until an empty page."""
        first = await self._call("GET", f"{path}?page=1", setting=setting, what=what)
        rows = list(first.get(key) or [])
        meta = first.get("meta")
        if isinstance(meta, dict) and meta.get("total_pages"):
            total = int(meta["total_pages"])
            rest = await asyncio.gather(
                *(
                    self._call("GET", f"{path}?page={p}", setting=setting, what=what)
                    for p in range(2, total + 1)
                )
            )
            for page in rest:
                rows += page.get(key) or []
            return rows
        page_no = 1
        while first.get(key):
            page_no += 1
            first = await self._call("GET", f"{path}?page={page_no}", setting=setting, what=what)
            rows += first.get(key) or []
        return rows

    # ---- protocol ------------------------------------------------------------------------

    async def connect(self) -> None:
        await self._call("GET", "products?page=1", setting=PRODUCTS_LIST, what="list products")

    async def check_permissions(self) -> list[PermissionCheck]:
        # Syncro has no "who am I" call: read probes show List rights; Edit rights are only learnt
        # from a refused write (a PUT with no change is still a write), so they are not probed.
        checks: list[PermissionCheck] = []
        try:
            await self._call("GET", "products?page=1", setting=PRODUCTS_LIST, what="list products")
            checks.append(granted("read_catalog", f"listed products ({PRODUCTS_LIST})"))
        except PSAPermissionError as exc:
            checks.append(PermissionCheck("read_catalog", exc.message))
        try:
            await self._call(
                "GET", "schedules?page=1", setting=RECURRING_LIST, what="list recurring invoices"
            )
            checks.append(granted("read_lines", f"listed recurring invoices ({RECURRING_LIST})"))
        except PSAPermissionError as exc:
            checks.append(PermissionCheck("read_lines", exc.message))
        untestable = (
            "not checked: Syncro shows edit rights only by refusing a write; the first push "
            "names the missing '{}' permission if it is missing."
        )
        checks.append(PermissionCheck("edit_catalog", untestable.format(PRODUCTS_EDIT), ok=None))
        checks.append(PermissionCheck("edit_lines", untestable.format(RECURRING_EDIT), ok=None))
        return checks

    async def pull(self, since: str | None, sink: ChunkSink) -> PullResult:
        # No incremental filter exists for products or schedules: `since` is ignored and this is
        # a full pull every time (§3.2, §4.5).
        before = self.requests_made
        cur = self.settings.currency
        products = await self._pages(
            "products", "products", setting=PRODUCTS_LIST, what="list products"
        )
        items = [_product_record(p, cur) for p in products]
        for i in range(0, len(items), 1000):
            await sink(SyncChunk(items=items[i : i + 1000]))
        listed = await self._pages(
            "schedules", "schedules", setting=RECURRING_LIST, what="list recurring invoices"
        )
        full = await asyncio.gather(*(self._schedule(int(s["id"])) for s in listed))
        contracts = [
            ContractRecord(
                psa_id=str(s["id"]),
                name=s.get("name") or "",
                company=f"Customer #{s.get('customer_id')}",
                status="Paused" if s.get("paused") else "Active",
                active=not s.get("paused"),
                currency=cur,
            )
            for s in full
        ]
        for i in range(0, len(contracts), 1000):
            await sink(SyncChunk(contracts=contracts[i : i + 1000]))
        lines: list[LineRecord] = []
        for s in full:
            for ln in s.get("lines") or []:
                if ln.get("product_id") is None:
                    continue  # labour or a one-off fee typed by hand: not a catalogue line
                lines.append(_line_record(s, ln))
        for i in range(0, len(lines), 2000):
            await sink(SyncChunk(lines=lines[i : i + 2000]))
        return PullResult(
            cursor=None,
            complete_items=True,
            complete_contracts=True,
            complete_lines_for=None,
            requests=self.requests_made - before,
        )

    async def _schedule(self, sid: int) -> dict[str, Any]:
        data = await self._call(
            "GET", f"schedules/{sid}", setting=RECURRING_LIST, what="read a recurring invoice"
        )
        return data["schedule"]

    async def _product(self, pid: int) -> dict[str, Any]:
        data = await self._call(
            "GET", f"products/{pid}", setting=PRODUCTS_LIST, what="read a product"
        )
        return data["product"]

    async def read_item_cost(self, item_psa_id: str) -> Decimal | None:
        return _dec((await self._product(_id(item_psa_id, "product"))).get("price_cost"))

    async def write_item_cost(self, item_psa_id: str, cost: Decimal) -> Decimal:
        pid = _id(item_psa_id, "product")
        product = await self._product(pid)
        # PUT resets omitted booleans (maintain_stock, taxable...; §3.4, §4.6): send the whole
        # product back with only price_cost changed.
        body = {k: v for k, v in product.items() if k not in PRODUCT_READ_ONLY}
        body["price_cost"] = cost
        await self._call(
            "PUT",
            f"products/{pid}",
            body=body,
            setting=PRODUCTS_EDIT,
            what="update a product's cost",
        )
        after = _dec((await self._product(pid)).get("price_cost"))
        if after is None or after != cost:
            raise PSAWriteNotApplied(
                f"Syncro accepted the cost for product {pid} but reads back {after}, not {cost}."
            )
        return after

    async def _line(self, line: LineKey) -> tuple[dict[str, Any], dict[str, Any]]:
        sid, lid = _id(line.contract_psa_id, "recurring invoice"), _id(line.psa_id, "line")
        sched = await self._schedule(sid)
        for ln in sched.get("lines") or []:
            if int(ln["id"]) == lid:
                return sched, ln
        raise PSANotFound(f"Recurring invoice {sid} has no line {lid} any more.")

    async def read_line_cost(self, line: LineKey) -> Decimal | None:
        _, ln = await self._line(line)
        return _cents(ln)

    async def write_line_cost(self, line: LineKey, cost: Decimal) -> Decimal:
        # Lines are written in integer cents. A cost with sub-cent precision is refused rather than
        # rounded: rounding would store a value nobody approved, and the read-back would differ.
        if cost != cost.quantize(CENT):
            raise PSAValidationError(
                f"Syncro keeps recurring-invoice line costs in whole cents; {cost} has sub-cent "
                "precision. Round the vendor cost to cents and approve it again."
            )
        sched, ln = await self._line(line)
        cents = int(cost * 100)
        # `name` goes along: the documented 422 for this call is "Name can't be blank" (§3.4).
        body = {
            "name": ln.get("name") or "",
            "description": ln.get("description") or "",
            "cost_cents": cents,
        }
        await self._call(
            "PUT",
            f"schedules/{sched['id']}/line_items/{ln['id']}",
            body=body,
            setting=RECURRING_EDIT,
            what="update a recurring-invoice line's cost",
        )
        _, after_line = await self._line(line)
        after = _cents(after_line)
        if after != cost:
            raise PSAWriteNotApplied(
                f"Syncro accepted the cost for line {ln['id']} but reads back {after}, not {cost}."
            )
        return after

    async def aclose(self) -> None:
        await self.http.aclose()


def _cents(
    ln: dict[str, Any], cents_field: str = "cost_cents", dollars_field: str = "price_cost"
) -> Decimal | None:
    cents = ln.get(cents_field)
    if cents is None or isinstance(cents, bool):
        return _dec(ln.get(dollars_field))
    return (Decimal(int(cents)) / 100).quantize(CENT)


def _product_record(p: dict[str, Any], currency: str) -> CatalogRecord:
    skus = p.get("product_skus") or []
    first = skus[0] if skus and isinstance(skus[0], dict) else {}
    return CatalogRecord(
        psa_id=str(p["id"]),
        identifier=str(p["id"]),
        name=p.get("name") or "",
        cost=_dec(p.get("price_cost")),
        price=_dec(p.get("price_retail")),
        currency=currency,
        active=not p.get("disabled"),
        vendor_sku=first.get("sku"),
        vendor_name=first.get("vendor_name"),
        mpn=None,  # Syncro products have no manufacturer part number field
        kind="product",
    )


def _line_record(sched: dict[str, Any], ln: dict[str, Any]) -> LineRecord:
    try:
        qty = Decimal(str(ln.get("quantity") or "0"))  # a string on the wire (§3.3)
    except InvalidOperation:
        qty = Decimal(0)
    return LineRecord(
        psa_id=str(ln["id"]),
        contract_psa_id=str(sched["id"]),
        item_psa_id=str(ln["product_id"]),
        quantity=qty,
        unit_cost=_cents(ln),
        unit_price=_cents(ln, "retail_cents", "price_retail"),
        active=not sched.get("paused"),
        kind="schedule_line",
        description=ln.get("name") or "",
    )
