"""Autotask PSA connector over REST API v1.0 (reference/psa-apis.md §2, §4).

Shape of the tenant as costrecon sees it:

- catalogue = Services (``service:<id>``, recurring) + Products (``product:<id>``);
- contracts = Contracts (``<id>``; ``status`` 1 = Active) with the company name from Companies;
- contract lines = ContractServices (``contractservice:<id>``, quantity from the current
  ContractServiceUnits period) + *unbilled* ContractCharges (``contractcharge:<id>``; billed charges
  can no longer change, §2.3, so they are not lines).

Pulls: only Services carry ``lastModifiedDate``, so an incremental pull filters Services on it and
**full-scans** Products, Contracts, ContractServices, ContractServiceUnits and ContractCharges (none
has a modified-date field, §2.2, §4.5). Entities are paged concurrently (each endpoint has its own
3-thread allowance) but every request waits for the hourly budget.

Writes are always verified by reading back; a silently ignored cost write (a security level that
cannot see costs, §2.4) or a contract-line cost Autotask refuses to change raises
:class:`PSAWriteNotApplied`, never success.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
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
    PSAValidationError,
    PSAWriteNotApplied,
    PullResult,
    RateLimits,
    SyncChunk,
    granted,
)
from costrecon_daemon.psa.http import Call, Classifier, HttpResponse, Retry, Transport, dumps, loads
from costrecon_daemon.psa.limits import PerEndpoint, RollingWindow

PAGE_SIZE = 500  # MaxRecords cap (§2.2)
IN_CHUNK = 400  # ids per `in` condition: under the 500 OR-conditions limit (§2.2)
Q4 = Decimal("0.0001")  # Autotask keeps four decimal places (§2.7)
ALL = [{"op": "gte", "field": "id", "value": 0}]  # a query must carry a filter

# What to change in Autotask, per capability (§2.4, §4.2; AT-DOC-SVC, AT-DOC-APIUSER).
SETTING_SERVICES_EDIT = (
    "Admin > Resources/Users > the API user > Security Level: a level with System Administrator "
    "rights (Services create/update need it)"
)
SETTING_PRODUCTS_EDIT = (
    "Admin > Resources/Users > the API user > Security Level: Inventory/Products full (edit) "
    "permission"
)
SETTING_CONTRACTS = (
    "Admin > Resources/Users > the API user > Security Level: Contracts permission (view and edit)"
)
SETTING_READ_COSTS = (
    "Admin > Resources/Users > the API user > Security Level: a level that can see costs, e.g. "
    "'API User (system)' instead of 'API User (system) Can't Read Costs'"
)
SETTING_API_USER = (
    "Admin > Resources/Users > the API user: license 'API User (API-only)', with the UserName, "
    "Secret and tracking identifier (ApiIntegrationCode) from its Security tab"
)

_PERMISSION_WORDS = ("permission", "not authorized", "unauthorized", "security level", "access")
_NOT_FOUND_WORDS = ("no matching", "does not exist", "not found")
_REFUSED_WORDS = (
    "read-only",
    "required",
    "invalid",
    "billed",
    "cannot",
    "must",
    "filter",
    "paging",
)


@dataclass
class AutotaskSettings:
    username: str
    secret: str
    integration_code: str
    zone_url: str | None = None
    base_url_for_zone_lookup: str = "https://webservices.autotask.net/atservicesrest/"
    concurrency: int = 3  # per endpoint (§2.5: 3 threads per object endpoint per tracking id)
    timeout: float = 30.0
    max_retries: int = 5
    requests_per_hour: int = 10_000
    line_effective_date: str | None = (
        None  # YYYY-MM-DD for ContractServiceAdjustments; None = today
    )
    # Additive (not in the first brief): Autotask reports costs in the tenant's internal currency.
    currency: str = "USD"
    retry_backoff: float = 1.0  # first wait after a 5xx/dropped connection, doubled each time
    rate_limit_wait: float = 60.0  # wait after a 429 without Retry-After (go-autotask's choice)


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    return Decimal(str(value)) if not isinstance(value, Decimal) else value


def _same_cost(a: Decimal | None, b: Decimal) -> bool:
    return a is not None and a.quantize(Q4) == b.quantize(Q4)


def _split(psa_id: str, *kinds: str) -> tuple[str, int]:
    kind, _, raw = psa_id.partition(":")
    if kind not in kinds or not raw.isdigit():
        raise PSANotFound(f"{psa_id!r} is not an Autotask {' or '.join(kinds)} id")
    return kind, int(raw)


# ---- the one place that decides how a contract line's cost is changed ----------------------------


class LineCostStrategy:
    """LINE_COST_STRATEGY: how a ContractService's unit cost is changed.

    §2.4 RISK / §4.1: ContractServices ``unitCost`` is read-only on update (AT-DOC-CS), so a PATCH
    would be refused or silently ignored. The only candidate found is a ContractServiceAdjustment
    with ``unitChange: 0`` and ``adjustedUnitCost`` from an effective date (AT-DOC-CSA). Whether
    Autotask really changes the cost that way is **UNCERTAIN** (old SOAP docs say adjustments change
    only quantity, AT-ISS-PHP50): check this against a real tenant and correct it *here*. Whatever
    happens, the caller reads the line back and raises PSAWriteNotApplied when it did not change.

    Calls: GET the line (serviceID, current price), POST the adjustment, GET to verify = 3.
    """

    calls = 3

    def __init__(self, effective_date: str | None) -> None:
        self.effective_date = effective_date

    def adjustment_body(self, line: dict[str, Any], cost: Decimal) -> dict[str, Any]:
        day = self.effective_date or datetime.now(UTC).date().isoformat()
        body: dict[str, Any] = {
            "contractID": line["contractID"],
            "serviceID": line["serviceID"],
            "contractServiceID": line["id"],
            "effectiveDate": f"{day}T00:00:00Z",
            "unitChange": 0,
            "adjustedUnitCost": cost.quantize(Q4),
        }
        # Send the price unchanged: whether an omitted adjustedUnitPrice means "keep" or "zero" is
        # not documented, and a cost sync must never touch what the customer pays.
        if line.get("unitPrice") is not None:
            body["adjustedUnitPrice"] = _dec(line["unitPrice"])
        return body

    @staticmethod
    def not_applied_message(cs_id: int, before: Decimal | None) -> str:
        return (
            f"Autotask accepted the adjustment but contract service {cs_id} still costs {before}: "
            "the contract line cost is not changeable through the Autotask API on this tenant. "
            "In Autotask open the contract, go to its Services, and adjust the service's unit cost "
            "there (or remove it and add it again at the new cost)."
        )


LINE_COST_STRATEGY = LineCostStrategy


# ---- the connector -----------------------------------------------------------------------------


class AutotaskClassifier(Classifier):
    """Autotask answers (§2.5): failed operations come back as HTTP 500 with an ``errors`` array
    of plain strings, and only the words tell a missing right, a missing record or a refused value
    (never cured by retrying, §4.7) from a server fault (retried; ambiguous for a write). The
    429 for the hourly limit carries no Retry-After (go-autotask then waits 60 s); the one for
    the 3-threads-per-endpoint limit clears as soon as a slot frees up."""

    name = "Autotask"

    def __init__(self, *, rate_limit_wait: float, thread_wait: float) -> None:
        self.rate_limit_wait = rate_limit_wait
        self.thread_wait = thread_wait

    def classify(self, resp: HttpResponse, call: Call) -> Retry | PSAError | None:
        if resp.status_code == 500:
            # A 500 whose words say what went wrong is an answer, not a server fault.
            refused = self._refused(resp, call, _errors_of(resp))
            if refused is not None:
                return refused
        return super().classify(resp, call)

    def rate_limited(self, resp: HttpResponse, call: Call) -> Retry:
        verdict = super().rate_limited(resp, call)
        if "thread" in " ".join(_errors_of(resp)).lower():
            # Another request of ours (or of another integration) holds the endpoint's threads:
            # a short wait for this request alone, not a pause of the whole connector.
            return Retry(verdict.error, wait=self.thread_wait, maybe_applied=False)
        return verdict

    def error(self, resp: HttpResponse, call: Call) -> PSAError:
        status = resp.status_code
        errors = _errors_of(resp)
        if status == 401:
            return PSAAuthError(
                "Autotask refused the API credentials (HTTP 401); check the UserName, "
                f"Secret and ApiIntegrationCode ({SETTING_API_USER}).",
                status=401,
            )
        refused = self._refused(resp, call, errors)
        if refused is not None:
            return refused
        return PSAError(
            f"Autotask answered HTTP {status} while trying to {call.what}.",
            status=status,
            detail="; ".join(errors),
        )

    @staticmethod
    def _refused(resp: HttpResponse, call: Call, errors: list[str]) -> PSAError | None:
        status = resp.status_code
        text = " ".join(errors).lower()
        detail = "; ".join(errors)
        setting = call.setting or SETTING_API_USER
        if status == 403 or (status == 500 and any(w in text for w in _PERMISSION_WORDS)):
            return PSAPermissionError(
                f"Autotask refused to {call.what}: the API user's security level lacks the right "
                f"({setting}).",
                setting=setting,
                status=status,
                detail=detail,
            )
        if status == 404 or (status == 500 and any(w in text for w in _NOT_FOUND_WORDS)):
            return PSANotFound(
                f"Autotask has no such record (while trying to {call.what}).",
                status=status,
                detail=detail,
            )
        if status in (400, 405) or (status == 500 and any(w in text for w in _REFUSED_WORDS)):
            return PSAValidationError(
                f"Autotask refused the request while trying to {call.what}: {detail}",
                status=status,
                detail=detail,
            )
        return None


class _ZoneClassifier(Classifier):
    """zoneInformation answers anything but 200 (a 500 on the real API) for an unknown user."""

    name = "Autotask"

    def classify(self, resp: HttpResponse, call: Call) -> Retry | PSAError | None:
        if resp.status_code == 200:
            return None
        if resp.status_code == 429:
            return self.rate_limited(resp, call)
        return PSAAuthError(
            "Autotask does not know this API user name; check the UserName in the config "
            f"({SETTING_API_USER}).",
            status=resp.status_code,
            detail=resp.text[:300],
        )


_ZONE = _ZoneClassifier()


class AutotaskConnector(Connector):
    psa = "autotask"
    display_name = "Autotask PSA"

    def __init__(self, settings: AutotaskSettings) -> None:
        self.settings = settings
        self.line_strategy = LINE_COST_STRATEGY(settings.line_effective_date)
        self.limits = RateLimits(
            concurrency=settings.concurrency,
            per_hour=settings.requests_per_hour,
            item_write_calls=2,  # PATCH + GET verify
            line_write_calls=self.line_strategy.calls,  # contract services; charges take 2
        )
        # 10,000 requests per rolling hour per database, 3 threads per object endpoint (§2.5).
        self.budget = RollingWindow.per_hour(settings.requests_per_hour)
        self.threads = PerEndpoint(settings.concurrency)
        self.http = Transport(
            classifier=AutotaskClassifier(
                rate_limit_wait=settings.rate_limit_wait, thread_wait=settings.retry_backoff
            ),
            slots=[self.threads],
            budgets=[self.budget],
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            timeout=settings.timeout,
            # Six object endpoints are pulled at once, each with its own threads.
            connections=settings.concurrency * 8,
            max_retries=settings.max_retries,
            backoff_base=settings.retry_backoff,
        )
        self._root: str | None = None
        self._zone_refreshed = False
        self._companies: dict[int, str] = {}

    @property
    def requests_made(self) -> int:
        return self.http.requests_made

    # ---- transport -------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        s = self.settings
        return {
            "ApiIntegrationCode": s.integration_code,
            "UserName": s.username,
            "Secret": s.secret,
        }

    async def _discover(self) -> None:
        if self.settings.zone_url:
            self._root = self.settings.zone_url.rstrip("/") + "/v1.0/"
            return
        url = self.settings.base_url_for_zone_lookup.rstrip("/") + "/v1.0/zoneInformation"
        # No credentials, exempt from the thread limits (AT-DOC-THREAD).
        resp = await self.http.request(
            "GET", url, what="look up the API user's zone", endpoint="zoneInformation",
            params={"user": self.settings.username}, limited=False, classifier=_ZONE,
        )  # fmt: skip
        zone = json.loads(resp.text)
        self._root = str(zone["url"]).rstrip("/") + "/v1.0/"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        body: Any = None,
        setting: str = SETTING_API_USER,
        what: str = "call Autotask",
        mutates: bool | None = None,
    ) -> Any:
        """One API call, scheduled within the hourly budget and the endpoint's thread limit;
        retries and error bodies are the transport's (psa/http.py, :class:`AutotaskClassifier`).
        """
        if self._root is None:
            await self._discover()
        content = None if body is None else dumps(body)
        while True:
            url = path if path.startswith("http") else f"{self._root}{path}"
            try:
                resp = await self.http.request(
                    method, url, what=what, endpoint=endpoint, setting=setting, content=content,
                    headers=self._headers(), mutates=mutates,
                )  # fmt: skip
            except PSAAuthError:
                if self._zone_refreshed or self.settings.zone_url or path.startswith("http"):
                    raise
                # The old zone answers 401 after a zone move: rediscover once (AT-DJ). A 401 is a
                # refusal, so a write sent again here is not a blind re-send.
                self._zone_refreshed = True
                old = self._root
                await self._discover()
                if self._root == old:
                    raise
                continue
            return loads(resp.text) if resp.text else None

    async def _walk(
        self,
        entity: str,
        flt: list[dict[str, Any]],
        *,
        include: list[str] | None = None,
        setting: str = SETTING_API_USER,
        first: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Every record of one query, following ``nextPageUrl`` page by page."""
        body: dict[str, Any] = {"MaxRecords": PAGE_SIZE, "filter": flt}
        if include:
            body["IncludeFields"] = include
        what = f"list {entity}"
        page = first or await self._call(
            "POST", f"{entity}/query", endpoint=entity, body=body, setting=setting, what=what,
            mutates=False,
        )  # fmt: skip
        out: list[dict[str, Any]] = []
        while True:
            out.extend(page.get("items") or [])
            nxt = (page.get("pageDetails") or {}).get("nextPageUrl")
            if not nxt:
                return out
            # Repeat the first request's method and body on nextPageUrl: a GET after a POST answers
            # 405 on some tenants (§2.2, AT-NEXT; UNCERTAIN, this is the safe reading).
            page = await self._call(
                "POST", nxt, endpoint=entity, body=body, setting=setting, what=what,
                mutates=False,
            )  # fmt: skip

    async def _all(
        self,
        entity: str,
        flt: list[dict[str, Any]],
        *,
        include: list[str] | None = None,
        setting: str = SETTING_API_USER,
    ) -> list[dict[str, Any]]:
        """Every record of a query, using the endpoint's threads when there are many pages.

        Cursor paging is sequential, so a big result is split into id ranges (results are sorted by
        id, §2.2) walked concurrently, one per thread: 1 extra ``query/count`` request buys a
        ~3x shorter wall time on ContractServices-sized entities.
        """
        if include and "id" not in include:
            include = ["id", *include]  # required when the result spans pages (§2.2)
        body: dict[str, Any] = {"MaxRecords": PAGE_SIZE, "filter": flt}
        if include:
            body["IncludeFields"] = include
        first = await self._call(
            "POST", f"{entity}/query", endpoint=entity, body=body, setting=setting,
            what=f"list {entity}", mutates=False,
        )  # fmt: skip
        items = list(first.get("items") or [])
        threads = self.settings.concurrency
        if not (first.get("pageDetails") or {}).get("nextPageUrl") or threads < 2 or not items:
            return await self._walk(entity, flt, include=include, setting=setting, first=first)
        counted = await self._call(
            "POST", f"{entity}/query/count", endpoint=entity, body={"filter": flt},
            setting=setting, what=f"count {entity}", mutates=False,
        )  # fmt: skip
        remaining = int((counted or {}).get("queryCount") or 0) - len(items)
        if remaining <= PAGE_SIZE:
            return await self._walk(entity, flt, include=include, setting=setting, first=first)
        low, first_id = int(items[-1]["id"]), int(items[0]["id"])
        per_record = max(1.0, (low - first_id + 1) / len(items))
        high = low + per_record * remaining
        cuts: list[int | None] = [
            low,
            *(int(low + (high - low) * i / threads) for i in range(1, threads)),
            None,
        ]
        ranges = []
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            bound = [{"op": "gt", "field": "id", "value": lo}]
            if hi is not None:
                bound.append({"op": "lte", "field": "id", "value": hi})
            ranges.append(self._walk(entity, [*flt, *bound], include=include, setting=setting))
        for part in await asyncio.gather(*ranges):
            items.extend(part)
        return items

    async def _get(self, entity: str, record_id: int, setting: str) -> dict[str, Any]:
        data = await self._call(
            "GET", f"{entity}/{record_id}", endpoint=entity, setting=setting, what=f"read {entity}"
        )
        item = (data or {}).get("item")
        if item is None:  # a missing id may come back as 200 {"item": null} (§2.2)
            raise PSANotFound(f"Autotask has no {entity} record with id {record_id}.")
        return item

    # ---- protocol ------------------------------------------------------------------------

    async def connect(self) -> None:
        await self._discover()
        info = await self._call(
            "GET", "ThresholdInformation", endpoint="ThresholdInformation", what="read usage"
        )
        # Other integrations share the database's hourly allowance: start from its real usage.
        used = int((info or {}).get("currentTimeframeRequestCount") or 0)
        self.budget.seed(max(0, used - 1))

    async def check_permissions(self) -> list[PermissionCheck]:
        # Services and Products are probed alike; a capability is granted only when both are.
        checked: dict[str, list[str]] = {}
        refused: dict[str, list[str]] = {}

        def note(capability: str, what: str, problem: str | None = None) -> None:
            checked.setdefault(capability, []).append(what)
            if problem is not None:
                refused.setdefault(capability, []).append(problem)

        seen_costs: list[Decimal | None] = []
        for entity, setting in (
            ("Services", SETTING_SERVICES_EDIT),
            ("Products", SETTING_PRODUCTS_EDIT),
        ):
            try:
                page = await self._call(
                    "POST",
                    f"{entity}/query",
                    endpoint=entity,
                    body={"MaxRecords": 25, "IncludeFields": ["id", "unitCost"], "filter": ALL},
                    setting=setting,
                    what=f"list {entity}",
                    mutates=False,
                )
                seen_costs += [_dec(i.get("unitCost")) for i in page.get("items") or []]
                note("read_catalog", f"listed {entity}")
            except PSAPermissionError as exc:
                note("read_catalog", f"listed {entity}", exc.message)
            # Edit probe that cannot change anything: PATCH a record id that does not exist. A level
            # without the right answers with the permission text; one with it, "no matching
            # records". (That the real API checks rights before existence is UNCERTAIN.)
            try:
                # Record 0 does not exist, so re-sending this probe cannot change anything.
                await self._call(
                    "PATCH", entity, endpoint=entity, body={"id": 0}, setting=setting,
                    what=f"update {entity}", mutates=False,
                )  # fmt: skip
                note("edit_catalog", f"may update {entity}")
            except PSAPermissionError as exc:
                note("edit_catalog", f"may update {entity}", exc.message)
            except (PSANotFound, PSAValidationError):
                note("edit_catalog", f"may update {entity}")
        if seen_costs and all(c is None for c in seen_costs):
            note(
                "read_costs",
                "unit costs visible",
                "Autotask returns no unit costs to the API user, so cost writes would be "
                f"silently ignored; change {SETTING_READ_COSTS}.",
            )
        elif seen_costs:
            note("read_costs", "unit costs visible")
        try:
            await self._call(
                "POST", "ContractServices/query", endpoint="ContractServices",
                body={"MaxRecords": 1, "filter": ALL}, setting=SETTING_CONTRACTS,
                what="list contract services", mutates=False,
            )  # fmt: skip
            note("read_lines", "listed contract services")
        except PSAPermissionError as exc:
            note("read_lines", "listed contract services", exc.message)
        try:
            await self._call(
                "POST", "ContractServiceAdjustments", endpoint="ContractServiceAdjustments",
                body={"contractID": 0, "serviceID": 0, "effectiveDate": "2000-01-01T00:00:00Z",
                      "unitChange": 0},
                setting=SETTING_CONTRACTS, what="adjust contract services", mutates=False,
            )  # fmt: skip
            note("edit_lines", "may adjust contract services")
        except PSAPermissionError as exc:
            note("edit_lines", "may adjust contract services", exc.message)
        except (PSANotFound, PSAValidationError):
            note("edit_lines", "may adjust contract services")
        checks = [
            PermissionCheck(cap, " ".join(dict.fromkeys(refused[cap])), ok=False)
            if cap in refused
            else granted(cap, "; ".join(whats))
            for cap, whats in checked.items()
        ]
        if "read_costs" not in checked:
            checks.append(
                PermissionCheck(
                    "read_costs", "not checked: no catalogue item to look at yet.", ok=None
                )
            )
        return checks

    async def pull(self, since: str | None, sink: ChunkSink) -> PullResult:
        start_requests = self.requests_made
        cursor = _load_cursor(since)
        started = datetime.now(UTC)
        svc_filter = ALL
        if cursor.get("services_modified"):
            # Incremental: Services are the only entity with lastModifiedDate (§2.2).
            svc_filter = [
                {"op": "gt", "field": "lastModifiedDate", "value": cursor["services_modified"]}
            ]
        now_iso = started.strftime("%Y-%m-%dT%H:%M:%SZ")
        today_iso = started.strftime("%Y-%m-%dT00:00:00Z")
        # Current and future billing periods: a service added from next month (future-dated)
        # has only a future row, and is a line whose cost must follow the vendor's too.
        unit_filter = [{"op": "gte", "field": "endDate", "value": today_iso}]
        services, products, contracts, cservices, units, charges = await asyncio.gather(
            self._all("Services", svc_filter, setting=SETTING_SERVICES_EDIT),
            self._all("Products", ALL, setting=SETTING_PRODUCTS_EDIT),
            self._all("Contracts", ALL, setting=SETTING_CONTRACTS),
            self._all("ContractServices", ALL, setting=SETTING_CONTRACTS),
            self._all(
                "ContractServiceUnits", unit_filter, setting=SETTING_CONTRACTS,
                include=["id", "contractServiceID", "units", "startDate", "endDate"],
            ),
            self._all(
                "ContractCharges", [{"op": "eq", "field": "isBilled", "value": False}],
                setting=SETTING_CONTRACTS,
            ),
        )  # fmt: skip
        await self._load_companies({int(c["companyID"]) for c in contracts if c.get("companyID")})

        cur = self.settings.currency
        items = [_service_record(s, cur) for s in services] + [
            _product_record(p, cur) for p in products
        ]
        for i in range(0, len(items), 1000):
            await sink(SyncChunk(items=items[i : i + 1000]))
        contract_recs = [self._contract_record(c) for c in contracts]
        active_contracts = {int(c["id"]) for c in contracts if c.get("status") == 1}
        for i in range(0, len(contract_recs), 1000):
            await sink(SyncChunk(contracts=contract_recs[i : i + 1000]))
        qty = _units_now_or_next(units, now_iso)
        lines: list[LineRecord] = []
        for cs in cservices:
            cid, csid = int(cs["contractID"]), int(cs["id"])
            q = qty.get(csid, Decimal(0))
            lines.append(
                LineRecord(
                    psa_id=f"contractservice:{csid}",
                    contract_psa_id=str(cid),
                    item_psa_id=f"service:{cs['serviceID']}",
                    quantity=q,
                    unit_cost=_dec(cs.get("unitCost")),
                    unit_price=_internal_price(cs),
                    active=cid in active_contracts and q > 0,
                    kind="contract_service",
                    description=cs.get("invoiceDescription") or "",
                )
            )
        for ch in charges:
            if not ch.get("productID"):
                continue  # a billing-code charge is not a catalogue line
            cid = int(ch["contractID"])
            lines.append(
                LineRecord(
                    psa_id=f"contractcharge:{ch['id']}",
                    contract_psa_id=str(cid),
                    item_psa_id=f"product:{ch['productID']}",
                    quantity=_dec(ch.get("unitQuantity")) or Decimal(0),
                    unit_cost=_dec(ch.get("unitCost")),
                    unit_price=_internal_price(ch),
                    active=cid in active_contracts,
                    kind="contract_charge",
                    description=ch.get("name") or ch.get("description") or "",
                )
            )
        for i in range(0, len(lines), 2000):
            await sink(SyncChunk(lines=lines[i : i + 2000]))
        stamps = [s["lastModifiedDate"] for s in services if s.get("lastModifiedDate")]
        newest = max(stamps, key=_stamp) if stamps else cursor.get("services_modified")
        return PullResult(
            cursor=json.dumps({"v": 1, "services_modified": newest or started.isoformat()}),
            complete_items=since is None,
            complete_contracts=True,
            complete_lines_for=None,  # lines are always a full scan (no modified field)
            requests=self.requests_made - start_requests,
        )

    async def _load_companies(self, ids: set[int]) -> None:
        missing = sorted(ids - self._companies.keys())
        for i in range(0, len(missing), IN_CHUNK):
            chunk = missing[i : i + IN_CHUNK]
            rows = await self._all(
                "Companies",
                [{"op": "in", "field": "id", "value": chunk}],
                include=["id", "companyName"],
                setting=SETTING_CONTRACTS,
            )
            for row in rows:
                self._companies[int(row["id"])] = row.get("companyName") or ""

    def _contract_record(self, c: dict[str, Any]) -> ContractRecord:
        active = c.get("status") == 1
        return ContractRecord(
            psa_id=str(c["id"]),
            name=c.get("contractName") or "",
            company=self._companies.get(int(c.get("companyID") or 0), ""),
            status="Active" if active else "Inactive",
            active=active,
            currency=self.settings.currency,
        )

    # ---- costs -----------------------------------------------------------------------------

    async def read_item_cost(self, item_psa_id: str) -> Decimal | None:
        kind, rid = _split(item_psa_id, "service", "product")
        entity, setting = _ITEM_ENTITY[kind]
        return _dec((await self._get(entity, rid, setting)).get("unitCost"))

    async def write_item_cost(self, item_psa_id: str, cost: Decimal) -> Decimal:
        kind, rid = _split(item_psa_id, "service", "product")
        entity, setting = _ITEM_ENTITY[kind]
        await self._call(
            "PATCH", entity, endpoint=entity, body={"id": rid, "unitCost": cost.quantize(Q4)},
            setting=setting, what=f"update the cost of {entity} {rid}",
        )  # fmt: skip
        after = _dec((await self._get(entity, rid, setting)).get("unitCost"))
        return self._verified(item_psa_id, after, cost)

    def _verified(self, psa_id: str, after: Decimal | None, cost: Decimal) -> Decimal:
        if after is None:
            raise PSAWriteNotApplied(
                f"Autotask accepted the cost for {psa_id} but returns no cost to the API user, so "
                f"the write was silently ignored; change {SETTING_READ_COSTS}."
            )
        if not _same_cost(after, cost):
            raise PSAWriteNotApplied(
                f"Autotask accepted the cost for {psa_id} but reads back {after}, not {cost}."
            )
        return after

    async def read_line_cost(self, line: LineKey) -> Decimal | None:
        kind, rid = _split(line.psa_id, "contractservice", "contractcharge")
        entity = "ContractServices" if kind == "contractservice" else "ContractCharges"
        return _dec((await self._get(entity, rid, SETTING_CONTRACTS)).get("unitCost"))

    async def write_line_cost(self, line: LineKey, cost: Decimal) -> Decimal:
        kind, rid = _split(line.psa_id, "contractservice", "contractcharge")
        if kind == "contractcharge":
            # Unbilled charges take a PATCH on the child URL: the root ContractCharges entity has
            # no write operations (contract; a root PATCH answers 405). Billed charges are
            # refused (500 errors).
            cid = _contract_id(line)
            await self._call(
                "PATCH", f"Contracts/{cid}/Charges", endpoint="ContractCharges",
                body={"id": rid, "unitCost": cost.quantize(Q4)}, setting=SETTING_CONTRACTS,
                what=f"update the cost of contract charge {rid}",
            )  # fmt: skip
            after = _dec(
                (await self._get("ContractCharges", rid, SETTING_CONTRACTS)).get("unitCost")
            )
            return self._verified(line.psa_id, after, cost)
        current = await self._get("ContractServices", rid, SETTING_CONTRACTS)
        before = _dec(current.get("unitCost"))
        if before is None:
            raise PSAWriteNotApplied(
                f"Autotask returns no cost for {line.psa_id} to the API user, so the change cannot "
                f"be made or verified; change {SETTING_READ_COSTS}."
            )
        # The documented child URL for a contract's adjustments (AT-DOC-CSA; public clients).
        await self._call(
            "POST", f"Contracts/{int(current['contractID'])}/ServiceAdjustments",
            endpoint="ContractServiceAdjustments",
            body=self.line_strategy.adjustment_body(current, cost), setting=SETTING_CONTRACTS,
            what=f"adjust the cost of contract service {rid}",
        )  # fmt: skip
        after = _dec((await self._get("ContractServices", rid, SETTING_CONTRACTS)).get("unitCost"))
        if after is None:
            return self._verified(line.psa_id, after, cost)
        if not _same_cost(after, cost):
            raise PSAWriteNotApplied(self.line_strategy.not_applied_message(rid, after))
        return after

    async def aclose(self) -> None:
        await self.http.aclose()


def _contract_id(line: LineKey) -> int:
    try:
        return int(line.contract_psa_id)
    except ValueError:
        raise PSAValidationError(
            f"Autotask contract id {line.contract_psa_id!r} of line {line.psa_id} is not a number."
        ) from None


_ITEM_ENTITY = {
    "service": ("Services", SETTING_SERVICES_EDIT),
    "product": ("Products", SETTING_PRODUCTS_EDIT),
}


def _errors_of(resp: HttpResponse) -> list[str]:
    try:
        data = json.loads(resp.text)
    except ValueError:
        return [resp.text.strip()[:300]] if resp.text.strip() else []
    errs = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errs, list):
        return [str(e) for e in errs]
    return [str(errs)] if errs else []


def _units_now_or_next(units: list[dict[str, Any]], now_iso: str) -> dict[int, Decimal]:
    """Units per contract service: those of the period running now, else of the first future
    period (a future-dated service)."""
    now = _stamp(now_iso)
    current: dict[int, Decimal] = {}
    upcoming: dict[int, tuple[datetime, Decimal]] = {}
    for u in units:
        csid = int(u["contractServiceID"])
        n = _dec(u.get("units")) or Decimal(0)
        start = _stamp(str(u.get("startDate") or now_iso))
        if start <= now:
            current[csid] = current.get(csid, Decimal(0)) + n
        elif csid not in upcoming or start < upcoming[csid][0]:
            upcoming[csid] = (start, n)
    return {csid: current.get(csid, first[1]) for csid, first in upcoming.items()} | current


def _stamp(text: str) -> datetime:
    t = text[:-1] + "+00:00" if text.endswith("Z") else text
    dt = datetime.fromisoformat(t)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _load_cursor(since: str | None) -> dict[str, Any]:
    if not since:
        return {}
    try:
        data = json.loads(since)
    except ValueError:
        return {"services_modified": since}  # a bare timestamp is accepted too
    return data if isinstance(data, dict) else {}


def _internal_price(line: dict[str, Any]) -> Decimal | None:
    """A line's price in the internal currency, the one its ``unitCost`` is in.

    With multi-currency on, ``unitPrice`` is in the customer's currency (psa-apis.md §2); comparing
    it with an internal-currency cost would give a wrong margin, so the internal figure wins.
    """
    internal = _dec(line.get("internalCurrencyUnitPrice"))
    return internal if internal is not None else _dec(line.get("unitPrice"))


def _service_record(s: dict[str, Any], currency: str) -> CatalogRecord:
    return CatalogRecord(
        psa_id=f"service:{s['id']}",
        identifier=s.get("sku") or str(s["id"]),
        name=s.get("name") or "",
        cost=_dec(s.get("unitCost")),
        price=_dec(s.get("unitPrice")),
        currency=currency,
        active=bool(s.get("isActive")),
        vendor_sku=s.get("manufacturerServiceProviderProductNumber"),
        mpn=s.get("catalogNumberPartNumber"),
        manufacturer=s.get("manufacturerServiceProvider"),
        kind="service",
        updated_at=s.get("lastModifiedDate"),
    )


def _product_record(p: dict[str, Any], currency: str) -> CatalogRecord:
    return CatalogRecord(
        psa_id=f"product:{p['id']}",
        identifier=p.get("sku") or str(p["id"]),
        name=p.get("name") or "",
        cost=_dec(p.get("unitCost")),
        price=_dec(p.get("unitPrice")),
        currency=currency,
        active=bool(p.get("isActive")),
        vendor_sku=p.get("vendorProductNumber"),
        mpn=p.get("manufacturerProductName"),
        manufacturer=p.get("manufacturerName"),
        kind="product",
    )
