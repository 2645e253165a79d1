"""A faithful fake Autotask PSA REST API v1.0 (reference/psa-apis.md §2, checklist §5 "AT").

Served by aiohttp on loopback. What it gets right, because the connector must cope with it:

- zone discovery (``zoneInformation``, no auth) answering with the sim's own base as the zone URL;
- the three auth headers (``ApiIntegrationCode``, ``UserName``, ``Secret``; names case-insensitive);
  anything wrong answers 401 with a non-JSON body (§2.5: "map it by status code");
- case-insensitive paths (§2.1: clients write ``V1.0``/``ATServicesRest``);
- ``query`` by POST body and by ``GET ...?search=<json>``, the full filter grammar (§2.2), results
  sorted by ``id``, ``MaxRecords`` 1..500, ``IncludeFields``, ``query/count``, and cursor paging
  through ``pageDetails.nextPageUrl``/``prevPageUrl``. A ``query/next?paging=`` URL must be
  requested with the first request's method: a GET of a page that started as a POST answers **405**
  (§2.2, AT-NEXT; the exact rule is UNCERTAIN, so the sim takes the stricter reading). A POSTed next
  page may carry no body (go-autotask) or the original filter; a *different* filter is refused;
- PATCH with a partial object including ``id`` answering ``{"itemId": n}``; failed writes answer
  **500** ``{"errors": [...]}`` (§2.5), permission failures included;
- ContractServices ``unitCost`` is read-only on update (§2.4 RISK): by default a PATCH of it is
  *silently ignored* (200 + itemId, value unchanged); ``contract_service_cost_patch="reject"`` makes
  it a 500 instead. Which one a real tenant does is UNCERTAIN;
- the operations of the published contract (sim/contracts/autotask.json): ContractServices and
  ContractCharges are written **only** through the child URLs ``/Contracts/{id}/Services`` and
  ``/Contracts/{id}/Charges`` (a root write answers 405), which also list and read them, as do
  ``/Contracts/{id}/ServiceUnits``; there is no ``query`` below a contract;
  ``{Entity}/entityInformation/fields``; write bodies are type-checked against the contract;
- ContractServiceAdjustments (create only, root or ``/Contracts/{id}/ServiceAdjustments``). A unit
  change starts a new ContractServiceUnits row from the ``effectiveDate``; an adjustment for a
  service not on the contract adds it (AT-DOC-CSA); ``adjustedUnitCost`` changes the contract
  service's unit cost from that date. **UNCERTAIN on a real tenant**: old SOAP docs say adjustments
  change only the quantity (AT-ISS-PHP50); ``adjustments_change_cost=False`` simulates that;
- a security level that cannot see costs (§2.4): ``unitCost``/``cost`` read as null, cost writes are
  silently ignored (200 OK, value unchanged);
- 10,000 requests per rolling hour per database and 3 concurrent requests per endpoint (§2.5), both
  knobs; exceeding either answers 429 with an ``errors`` body and no ``Retry-After`` (UNCERTAIN
  status; go-autotask treats 429 as the rate limit); ``ThresholdInformation`` (counts against the
  quota).

The neutral data set maps as: recurring items -> Services, the rest -> Products; lines on Services
-> ContractServices (+ one ContractServiceUnits row per billing month: previous and current, or only
next month's for a line that starts next period; customer-currency ``unitPrice`` on contracts in
another currency), lines on Products -> ContractCharges (cancelled ones -> billed charges, which are
no longer contract lines).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import secrets
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from costrecon_daemon.sim.contract import Recorder, env_recorder, load, recording_middleware
from costrecon_daemon.sim.dataset import Dataset, generate
from costrecon_daemon.sim.knobs import Knobs, RequestStats, fault_middleware
from costrecon_daemon.sim.serve import serve_on_loopback, serve_until_interrupted

MAX_RECORDS = 500
# Customer-currency prices of multi-currency contracts (fixed demo rates).
FX_TO_CUSTOMER = {"CAD": Decimal("1.36"), "EUR": Decimal("0.92"), "GBP": Decimal("0.79")}
MAX_OR_CONDITIONS = 500
Q4 = Decimal("0.0001")

PERMISSION_TEXT = (
    "The logged in Resource does not have the adequate permissions to {verb} this entity type."
)


# ---- JSON with exact Decimal numbers (money is never float, not even in a fake server) ----------


_MARK = "\u0000N"


def _decimal_marker(obj: Any) -> str:
    if isinstance(obj, Decimal):
        return _MARK + format(obj, "f")
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def json_dumps(obj: Any) -> str:
    """Serialise with Decimal written as a JSON number literal digit for digit, trailing zeros kept
    (Autotask fixtures show ``0.0000``). Uses the C encoder with a marker, then unquotes it."""
    text = json.dumps(obj, default=_decimal_marker, separators=(",", ":"))
    if "\\u0000N" not in text:
        return text
    parts = text.split('"\\u0000N')
    out = [parts[0]]
    for part in parts[1:]:
        number, _, rest = part.partition('"')
        out += [number, rest]
    return "".join(out)


def _json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(text=json_dumps(payload), status=status, content_type="application/json")


def _errors(status: int, *messages: str) -> web.Response:
    return _json_response({"errors": list(messages)}, status=status)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@functools.lru_cache(maxsize=8192)
def _parse_dt(text: str) -> datetime:
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


# ---- entity schemas: field name -> type (drives filter coercion and field-name lookup) ----------

_SCHEMAS: dict[str, dict[str, str]] = {
    "Services": {
        "id": "int",
        "name": "str",
        "description": "str",
        "invoiceDescription": "str",
        "unitCost": "decimal",
        "unitPrice": "decimal",
        "markupRate": "decimal",
        "periodType": "int",
        "billingCodeID": "int",
        "isActive": "bool",
        "vendorCompanyID": "int",
        "serviceLevelAgreementID": "int",
        "sku": "str",
        "catalogNumberPartNumber": "str",
        "externalID": "str",
        "internalID": "str",
        "manufacturerServiceProvider": "str",
        "manufacturerServiceProviderProductNumber": "str",
        "url": "str",
        "createDate": "datetime",
        "creatorResourceID": "int",
        "lastModifiedDate": "datetime",
        "updateResourceID": "int",
    },
    "Products": {
        "id": "int",
        "name": "str",
        "description": "str",
        "sku": "str",
        "manufacturerName": "str",
        "manufacturerProductName": "str",
        "externalProductID": "str",
        "internalProductID": "str",
        "vendorProductNumber": "str",
        "defaultVendorID": "int",
        "unitCost": "decimal",
        "unitPrice": "decimal",
        "msrp": "decimal",
        "markupRate": "decimal",
        "priceCostMethod": "int",
        "isActive": "bool",
        "isSerialized": "bool",
        "periodType": "int",
        "billingType": "int",
        "productBillingCodeID": "int",
        "productCategory": "int",
        "createdTime": "datetime",
        "createdByResourceID": "int",
    },
    "Companies": {
        "id": "int",
        "companyName": "str",
        "companyType": "int",
        "isActive": "bool",
    },
    "Contracts": {
        "id": "int",
        "contractName": "str",
        "contractNumber": "str",
        "companyID": "int",
        "contractType": "int",
        "status": "int",
        "startDate": "datetime",
        "endDate": "datetime",
        "contractPeriodType": "int",
        "billingPreference": "int",
        "isDefaultContract": "bool",
        "contractCategory": "int",
        "estimatedCost": "decimal",
        "estimatedRevenue": "decimal",
        "purchaseOrderNumber": "str",
    },
    "ContractServices": {
        "id": "int",
        "contractID": "int",
        "serviceID": "int",
        "unitCost": "decimal",
        "unitPrice": "decimal",
        "internalCurrencyUnitPrice": "decimal",
        "internalCurrencyAdjustedPrice": "decimal",
        "internalDescription": "str",
        "invoiceDescription": "str",
        "quoteItemID": "int",
    },
    "ContractServiceUnits": {
        "id": "int",
        "contractID": "int",
        "contractServiceID": "int",
        "serviceID": "int",
        "startDate": "datetime",
        "endDate": "datetime",
        "units": "decimal",
        "cost": "decimal",
        "price": "decimal",
        "internalCurrencyPrice": "decimal",
        "approveAndPostDate": "datetime",
        "vendorCompanyID": "int",
    },
    "ContractCharges": {
        "id": "int",
        "contractID": "int",
        "productID": "int",
        "billingCodeID": "int",
        "name": "str",
        "description": "str",
        "unitCost": "decimal",
        "unitPrice": "decimal",
        "unitQuantity": "decimal",
        "extendedCost": "decimal",
        "billableAmount": "decimal",
        "isBilled": "bool",
        "datePurchased": "datetime",
        "status": "int",
    },
}
_COST_FIELDS = {"unitCost", "cost", "extendedCost", "estimatedCost"}
_ENTITY_BY_LOWER = {name.lower(): name for name in _SCHEMAS}
# Writable fields on PATCH per entity (everything else is silently left alone, as the real API does
# with read-only fields). ContractServices: only adjustedPrice/invoiceDescription (AT-DOC-CS).
_PATCHABLE = {
    "Services": {
        "name",
        "description",
        "invoiceDescription",
        "unitCost",
        "unitPrice",
        "isActive",
        "markupRate",
        "sku",
        "catalogNumberPartNumber",
        "vendorCompanyID",
    },
    "Products": {
        "name",
        "description",
        "unitCost",
        "unitPrice",
        "isActive",
        "msrp",
        "markupRate",
        "sku",
        "manufacturerName",
        "manufacturerProductName",
        "vendorProductNumber",
    },
    "ContractServices": {"invoiceDescription", "internalDescription", "adjustedPrice"},
    "ContractCharges": {"name", "description", "unitCost", "unitPrice", "unitQuantity"},
}


class FilterError(Exception):
    """A query the real API refuses (answered as 500 + errors, like other failed operations)."""


@dataclass
class SecurityLevel:
    """The API user's security level, reduced to what cost sync touches (§2.4, §4.2)."""

    name: str = "API User (system)"
    can_read_costs: bool = True
    can_edit_services: bool = True  # Services update needs System Administrator level (AT-DOC-SVC)
    can_edit_products: bool = True
    can_query_contracts: bool = True
    can_edit_contracts: bool = True  # ContractServiceAdjustments, ContractCharges


CANT_READ_COSTS = SecurityLevel(name="API User (system) Can't Read Costs", can_read_costs=False)


@dataclass
class AutotaskStats:
    requests: Counter = field(default_factory=Counter)  # (METHOD, "/Entity/query") -> n
    writes: Counter = field(default_factory=Counter)  # "service:12" / "contractservice:9" -> n
    throttled: int = 0  # 429s for the hourly or thread limit (injected faults: request_stats)
    max_in_flight: Counter = field(default_factory=Counter)  # endpoint -> peak concurrency

    @property
    def total(self) -> int:
        return sum(self.requests.values())


class AutotaskSim:
    """The fake tenant: data, knobs and the aiohttp app. Start with :func:`start_autotask_sim`."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        username: str = "costrecon-api@example.com",
        secret: str = "s3cret",
        integration_code: str = "COSTRECONTRACKINGID00000000",
        requests_per_hour: int = 10_000,
        window_seconds: float = 3600.0,
        thread_limit: int = 3,
        knobs: Knobs | None = None,
        contract_service_cost_patch: str = "ignore",
        adjustments_change_cost: bool = True,
        security: SecurityLevel | None = None,
        seed: int = 7,
    ) -> None:
        self.username = username
        self.secret = secret
        self.integration_code = integration_code
        self.requests_per_hour = requests_per_hour
        self.window_seconds = window_seconds
        self.thread_limit = thread_limit
        self.knobs = knobs or Knobs(seed=seed)
        self.request_stats = RequestStats()
        self.contract_service_cost_patch = contract_service_cost_patch
        self.adjustments_change_cost = adjustments_change_cost
        self.security = security or SecurityLevel()
        self.stats = AutotaskStats()
        self.base_url = ""
        self._window: deque[float] = deque()
        self._in_flight: Counter = Counter()
        self._pages: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in _SCHEMAS}
        self.adjustments: list[dict[str, Any]] = []
        self._ids = itertools.count(30_000_000)
        self._clock_tick = 0
        self.recorder: Recorder | None = env_recorder()
        self._load(dataset)

    # ---- data mapping --------------------------------------------------------------------

    def _now(self) -> datetime:
        # Strictly increasing stamps so "gt lastModifiedDate" never loses a same-millisecond edit.
        self._clock_tick += 1
        return datetime.now(UTC).replace(microsecond=0) + timedelta(milliseconds=self._clock_tick)

    def _load(self, ds: Dataset) -> None:
        created = datetime(2023, 1, 15, 9, 30, tzinfo=UTC)
        self.service_for_item: dict[int, int] = {}
        self.product_for_item: dict[int, int] = {}
        base_id = 29_682_000
        for n, it in enumerate(ds.items):
            if it.recurring:
                sid = base_id + n
                self.service_for_item[it.id] = sid
                self.tables["Services"][sid] = {
                    "id": sid,
                    "name": it.name,
                    "description": it.description,
                    "invoiceDescription": it.name,
                    "unitCost": it.cost.quantize(Q4),
                    "unitPrice": it.price.quantize(Q4),
                    "markupRate": None,
                    "periodType": 1,  # Monthly
                    "billingCodeID": 29_682_833,
                    "isActive": it.active,
                    "vendorCompanyID": None,
                    "serviceLevelAgreementID": None,
                    "sku": it.identifier,
                    "catalogNumberPartNumber": it.mpn,
                    "externalID": None,
                    "internalID": None,
                    "manufacturerServiceProvider": it.manufacturer,
                    "manufacturerServiceProviderProductNumber": it.vendor_sku,
                    "url": None,
                    "createDate": _iso(created),
                    "creatorResourceID": 29_682_885,
                    "lastModifiedDate": _iso(created + timedelta(days=n % 400)),
                    "updateResourceID": 29_682_885,
                    "userDefinedFields": [{"name": "Vendor", "value": it.vendor_name}],
                }
            else:
                pid = base_id + 500_000 + n
                self.product_for_item[it.id] = pid
                self.tables["Products"][pid] = {
                    "id": pid,
                    "name": it.name,
                    "description": it.description,
                    "sku": it.identifier,
                    "manufacturerName": it.manufacturer,
                    "manufacturerProductName": it.mpn,
                    "externalProductID": None,
                    "internalProductID": None,
                    "vendorProductNumber": it.vendor_sku,
                    "defaultVendorID": None,
                    "unitCost": it.cost.quantize(Q4),
                    "unitPrice": it.price.quantize(Q4),
                    "msrp": None,
                    "markupRate": None,
                    "priceCostMethod": 1,
                    "isActive": it.active,
                    "isSerialized": False,
                    "periodType": None,
                    "billingType": 1,
                    "productBillingCodeID": 29_682_801,
                    "productCategory": None,
                    "createdTime": _iso(created),
                    "createdByResourceID": 29_682_885,
                    "userDefinedFields": [{"name": "Vendor", "value": it.vendor_name}],
                }
        companies: dict[str, int] = {}
        self.contract_for_sim: dict[int, int] = {}
        for c in ds.contracts:
            cid = companies.get(c.company)
            if cid is None:
                cid = 174 + len(companies)
                companies[c.company] = cid
                self.tables["Companies"][cid] = {
                    "id": cid,
                    "companyName": c.company,
                    "companyType": 1,
                    "isActive": True,
                }
            kid = 29_684_000 + c.id
            self.contract_for_sim[c.id] = kid
            self.tables["Contracts"][kid] = {
                "id": kid,
                "contractName": c.name,
                "contractNumber": f"C{c.id:06d}",
                "companyID": cid,
                "contractType": 7,  # Recurring Service
                "status": 1 if c.status == "Active" else 0,
                "startDate": "2024-01-01T00:00:00Z",
                "endDate": "2026-12-31T00:00:00Z"
                if c.status != "Expired"
                else "2024-12-31T00:00:00Z",
                "contractPeriodType": 1,
                "billingPreference": 1,
                "isDefaultContract": False,
                "contractCategory": None,
                "estimatedCost": Decimal("0.0000"),
                "estimatedRevenue": Decimal("0.0000"),
                "purchaseOrderNumber": None,
            }
        today = datetime.now(UTC).date()
        cur_start = today.replace(day=1)
        prev_start = (cur_start - timedelta(days=1)).replace(day=1)
        periods = [(prev_start, cur_start - timedelta(days=1)), (cur_start, _month_end(cur_start))]
        next_start = _month_end(cur_start) + timedelta(days=1)
        next_period = [(next_start, _month_end(next_start))]
        self.contract_service_for_line: dict[int, int] = {}
        currency_of = {c.id: c.currency for c in ds.contracts}
        self.charge_for_line: dict[int, int] = {}
        unit_id = itertools.count(29_700_000)
        for ln in ds.lines:
            kid = self.contract_for_sim[ln.contract_id]
            if ln.item_id in self.service_for_item:
                sid = self.service_for_item[ln.item_id]
                csid = 29_690_000 + ln.id
                self.contract_service_for_line[ln.id] = csid
                # Multi-currency: unitPrice is in the customer's currency, internalCurrency* in
                # the tenant's (§2.7); costs are always internal.
                rate = FX_TO_CUSTOMER.get(currency_of[ln.contract_id], Decimal(1))
                self.tables["ContractServices"][csid] = {
                    "id": csid,
                    "contractID": kid,
                    "serviceID": sid,
                    "unitCost": ln.unit_cost.quantize(Q4),
                    "unitPrice": (ln.unit_price * rate).quantize(Q4),
                    "internalCurrencyUnitPrice": ln.unit_price.quantize(Q4),
                    "internalCurrencyAdjustedPrice": ln.unit_price.quantize(Q4),
                    "internalDescription": None,
                    "invoiceDescription": ln.description,
                    "quoteItemID": None,
                }
                # A line starting next period has only that period's row (future-dated).
                for n, (start, end) in enumerate(next_period if ln.starts_next_period else periods):
                    units = Decimal(0) if (ln.cancelled and n == 1) else ln.quantity
                    uid = next(unit_id)
                    self.tables["ContractServiceUnits"][uid] = {
                        "id": uid,
                        "contractID": kid,
                        "contractServiceID": csid,
                        "serviceID": sid,
                        "startDate": f"{start.isoformat()}T00:00:00Z",
                        "endDate": f"{end.isoformat()}T00:00:00Z",
                        "units": units.quantize(Q4),
                        "cost": ln.unit_cost.quantize(Q4),
                        "price": ln.unit_price.quantize(Q4),
                        "internalCurrencyPrice": ln.unit_price.quantize(Q4),
                        "approveAndPostDate": None,
                        "vendorCompanyID": None,
                    }
            else:
                pid = self.product_for_item[ln.item_id]
                chid = 29_695_000 + ln.id
                self.charge_for_line[ln.id] = chid
                self.tables["ContractCharges"][chid] = {
                    "id": chid,
                    "contractID": kid,
                    "productID": pid,
                    "billingCodeID": None,
                    "name": ln.description,
                    "description": ln.description,
                    "unitCost": ln.unit_cost.quantize(Q4),
                    "unitPrice": ln.unit_price.quantize(Q4),
                    "unitQuantity": ln.quantity.quantize(Q4),
                    "extendedCost": (ln.unit_cost * ln.quantity).quantize(Q4),
                    "billableAmount": (ln.unit_price * ln.quantity).quantize(Q4),
                    "isBilled": ln.cancelled,
                    "datePurchased": "2025-01-15T00:00:00Z",
                    "status": 1,
                }
        self._sorted: dict[str, list[int]] = {n: sorted(t) for n, t in self.tables.items()}
        self._units_by_cs: dict[int, list[dict[str, Any]]] = {}
        for unit in self.tables["ContractServiceUnits"].values():
            self._units_by_cs.setdefault(unit["contractServiceID"], []).append(unit)

    # ---- in-process control for tests (behind the connector's back) ------------------------

    def set_cost(self, entity: str, record_id: int, cost: Decimal | None) -> None:
        """Change a cost as a person in the Autotask UI would (Services get a new
        lastModifiedDate)."""
        rec = self.tables[entity][record_id]
        field_name = "cost" if entity == "ContractServiceUnits" else "unitCost"
        rec[field_name] = None if cost is None else Decimal(cost).quantize(Q4)
        if entity == "Services":
            rec["lastModifiedDate"] = _iso(self._now())
        if entity == "ContractServices":
            for unit in self._units_for(record_id):
                unit["cost"] = rec["unitCost"]

    def cost(self, entity: str, record_id: int) -> Decimal | None:
        """The stored value, whatever the API user's security level lets it see."""
        return self.tables[entity][record_id]["unitCost"]

    def set_security(self, level: SecurityLevel) -> None:
        self.security = level

    def fail_next(self, count: int = 1, kind: str = "503") -> None:
        """The next ``count`` requests fail: "429", a 5xx code, "slow" or "drop" (sim/knobs.py)."""
        self.knobs.fail_next(count, kind)

    def reset_stats(self) -> None:
        self.stats = AutotaskStats()
        self.request_stats.reset()

    def current_units(self, contract_service_id: int) -> Decimal:
        unit = self._current_unit(contract_service_id)
        return unit["units"] if unit else Decimal(0)

    def _units_for(self, csid: int) -> list[dict[str, Any]]:
        return self._units_by_cs.get(csid, [])

    def _current_unit(self, csid: int) -> dict[str, Any] | None:
        now = datetime.now(UTC)
        for u in self._units_for(csid):
            if _parse_dt(u["startDate"]) <= now <= _parse_dt(u["endDate"]) + timedelta(days=1):
                return u
        return None

    def _insert(self, entity: str, rec: dict[str, Any]) -> None:
        self.tables[entity][rec["id"]] = rec
        self._sorted[entity].append(rec["id"])  # new ids are always the highest

    # ---- the app -------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        # Order matters: the Autotask limits wrap the shared fault knobs so that injected latency
        # is spent *inside* a thread slot, as a slow real request would be.
        app = web.Application(
            client_max_size=4 * 1024 * 1024,
            middlewares=[
                recording_middleware("autotask", self),
                self._limits,
                fault_middleware(self.knobs, self.request_stats, self._shape),
            ],
        )
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    @staticmethod
    def _shape(status: int, retry_after: int | None) -> web.Response:
        if status == 429:  # Autotask sends no Retry-After (go-autotask then waits 60 s, §2.5)
            return _errors(429, "Request threshold exceeded. Please try again later.")
        return _errors(status, "An unexpected error occurred on the server. Please try again.")

    @web.middleware
    async def _limits(self, request: web.Request, handler: Any) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        low = [p.lower() for p in parts]
        if len(low) < 3 or low[0] != "atservicesrest" or low[1] not in ("v1.0", "1.0"):
            return await handler(request)
        rest, rest_low = parts[2:], low[2:]
        if rest_low == ["zoneinformation"]:
            return await handler(request)  # no auth, exempt from thread limits (AT-DOC-THREAD)
        if not self._authenticated(request):
            # Body may be empty or non-JSON on the real API: clients must map by status (§2.5).
            return web.Response(status=401, text="Unauthorized", content_type="text/html")
        endpoint = rest_low[0]
        if endpoint == "contracts" and len(rest_low) >= 3 and rest_low[2] in _CHILDREN:
            endpoint = _CHILDREN[rest_low[2]].lower()
        now = time.monotonic()
        while self._window and now - self._window[0] > self.window_seconds:
            self._window.popleft()
        if len(self._window) >= self.requests_per_hour:
            self.stats.throttled += 1
            return _errors(
                429,
                f"Request threshold of {self.requests_per_hour} requests per hour exceeded "
                "for this database. Please try again later.",
            )
        if self._in_flight[endpoint] >= self.thread_limit:
            self.stats.throttled += 1
            return _errors(
                429,
                f"Thread threshold of {self.thread_limit} concurrent requests exceeded for the "
                f"{endpoint} endpoint.",
            )
        self._window.append(now)
        self.stats.requests[(request.method, self._stat_path(rest, rest_low))] += 1
        self._in_flight[endpoint] += 1
        self.stats.max_in_flight[endpoint] = max(
            self.stats.max_in_flight[endpoint], self._in_flight[endpoint]
        )
        try:
            return await handler(request)
        finally:
            self._in_flight[endpoint] -= 1

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        low = [p.lower() for p in parts]
        if not low or low[0] != "atservicesrest":
            return web.Response(status=404, text="Not Found")
        if low[1:] == ["versioninformation"]:
            return _json_response({"apiVersions": ["1.0"]})
        if len(low) < 2 or low[1] not in ("v1.0", "1.0"):
            return web.Response(status=404, text="Not Found")
        rest, rest_low = parts[2:], low[2:]
        if rest_low == ["zoneinformation"]:
            user = request.query.get("user", "")
            if user.lower() != self.username.lower():
                return _errors(500, "Zone information could not be determined for this user.")
            return _json_response(
                {"zoneName": "Sim Zone", "url": self.base_url, "webUrl": self.base_url, "ci": 4242}
            )
        return await self._route(request, rest, rest_low)

    @staticmethod
    def _stat_path(rest: list[str], low: list[str]) -> str:
        if not rest:
            return "/"
        entity = _ENTITY_BY_LOWER.get(low[0], rest[0])
        tail = []
        for pl in low[1:]:
            tail.append("{id}" if pl.isdigit() else pl)
        if low[0] == "thresholdinformation":
            entity = "ThresholdInformation"
        if low[0] == "contractserviceadjustments":
            entity = "ContractServiceAdjustments"
        return "/" + "/".join([entity, *tail])

    def _authenticated(self, request: web.Request) -> bool:
        h = request.headers  # CIMultiDict: header names already match case-insensitively
        return (
            h.get("ApiIntegrationCode") == self.integration_code
            and (h.get("UserName") or "").lower() == self.username.lower()
            and h.get("Secret") == self.secret
        )

    async def _route(
        self, request: web.Request, rest: list[str], low: list[str]
    ) -> web.StreamResponse:
        method = request.method
        if low == ["thresholdinformation"]:
            return _json_response(
                {
                    "externalRequestThreshold": self.requests_per_hour,
                    "requestThresholdTimeframe": int(self.window_seconds // 60),
                    "currentTimeframeRequestCount": len(self._window),
                }
            )
        if low and low[0] == "contractserviceadjustments":
            if len(low) == 1 and method == "POST":
                return await self._create_adjustment(request, None)
            if low[1:] == ["entityinformation", "fields"] and method == "GET":
                return self._field_info("ContractServiceAdjustments")
            return _errors(405, "ContractServiceAdjustments can only be created.")
        # Child URLs: /Contracts/{id}/Services, /Charges, /ServiceUnits (lists and items) and
        # /ServiceAdjustments (create). The API has no query paths below them.
        parent_contract: int | None = None
        if len(low) >= 3 and low[0] == "contracts" and low[1].isdigit():
            child = _CHILDREN.get(low[2])
            if child is None or len(low) > 4 or (len(low) == 4 and not low[3].isdigit()):
                return web.Response(status=404, text="Not Found")
            parent_contract = int(low[1])
            if child == "ContractServiceAdjustments":
                if len(low) == 3 and method == "POST":
                    return await self._create_adjustment(request, parent_contract)
                return web.Response(status=405, text="Method Not Allowed")
            if parent_contract not in self.tables["Contracts"]:
                return _errors(500, f"No matching records found for Contract id {parent_contract}.")
            try:
                if len(low) == 4 and method == "GET":
                    return self._get_one(child, int(low[3]), parent_contract)
                if len(low) == 3 and method == "GET":
                    return self._child_list(child, parent_contract)
                if len(low) == 3 and method == "PATCH" and child in _PATCHABLE:
                    return await self._patch(request, child, parent_contract)
                if len(low) == 3 and method in ("POST", "PUT") and child in _PATCHABLE:
                    return _errors(
                        500, f"The {method} operation is not supported by this simulator."
                    )
            except FilterError as exc:
                return _errors(500, str(exc))
            return web.Response(status=405, text="Method Not Allowed")
        entity = _ENTITY_BY_LOWER.get(low[0]) if low else None
        if entity is None:
            return web.Response(status=404, text="Not Found")
        sub = low[1:]
        try:
            if sub == ["query"] and method in ("GET", "POST"):
                spec = await self._query_spec(request)
                return self._first_page(entity, spec, method, None)
            if sub == ["query", "count"] and method in ("GET", "POST"):
                spec = await self._query_spec(request)
                return _json_response({"queryCount": self._count(entity, spec, None)})
            if sub == ["query", "next"] and method in ("GET", "POST"):
                return await self._next_page(request, entity)
            if sub == ["entityinformation", "fields"] and method == "GET":
                return self._field_info(entity)
            if len(sub) == 1 and sub[0].isdigit() and method == "GET":
                return self._get_one(entity, int(sub[0]), None)
            if not sub and entity in _CHILD_WRITES_ONLY:
                # Writes exist only on the child URL /Contracts/{id}/Services|Charges
                # (contracts/autotask.json notInSources): the root answers 405 as the API does.
                return web.Response(status=405, text="Method Not Allowed")
            if not sub and method == "PATCH":
                return await self._patch(request, entity, None)
            if not sub and method in ("POST", "PUT", "DELETE"):
                return _errors(500, f"The {method} operation is not supported by this simulator.")
        except FilterError as exc:
            return _errors(500, str(exc))
        return web.Response(status=405, text="Method Not Allowed")

    def _child_list(self, entity: str, parent: int) -> web.Response:
        """GET /Contracts/{id}/Services etc.: every child record, in the query reply's shape."""
        self._check_read(entity)
        rows = [
            self._visible(entity, r, None)
            for rid in self._sorted[entity]
            if (r := self.tables[entity][rid]).get("contractID") == parent
        ]
        details = {"count": len(rows), "requestCount": MAX_RECORDS,
                   "prevPageUrl": None, "nextPageUrl": None}  # fmt: skip
        return _json_response({"items": rows, "pageDetails": details})

    def _field_info(self, entity: str) -> web.Response:
        """entityInformation/fields: the sim's own field list with types and read-only flags."""
        types = {"int": "integer", "decimal": "double", "str": "string", "bool": "boolean",
                 "datetime": "datetime"}  # fmt: skip
        schema = _SCHEMAS.get(entity, _ADJUSTMENT_FIELDS if entity.endswith("Adjustments") else {})
        writable = _PATCHABLE.get(entity, set(schema))
        fields = [
            {
                "name": name,
                "dataType": types[ftype],
                "length": 0,
                "isPickList": False,
                "isQueryable": entity != "ContractServiceAdjustments",
                "isReadOnly": name == "id" or name not in writable,
                "isReference": name.endswith("ID") and name != "id",
                "isRequired": name in _REQUIRED.get(entity, ()),
                "picklistValues": [],
                "referenceEntityType": "",
                "picklistParentValueField": "",
            }
            for name, ftype in schema.items()
        ]
        return _json_response({"fields": fields})

    # ---- reads ---------------------------------------------------------------------------

    def _visible(
        self, entity: str, rec: dict[str, Any], include: list[str] | None
    ) -> dict[str, Any]:
        out = dict(rec)
        if not self.security.can_read_costs:
            for f in _COST_FIELDS:
                if f in out:
                    out[f] = None
        if include:
            fields = _SCHEMAS[entity]
            lower = {f.lower(): f for f in [*fields, "userDefinedFields"]}
            keep = {"id"} | {lower[f.lower()] for f in include if f.lower() in lower}
            out = {k: v for k, v in out.items() if k in keep}
        return out

    def _check_read(self, entity: str) -> None:
        if (
            entity.startswith("Contract")
            and entity != "Companies"
            and not self.security.can_query_contracts
        ):
            raise FilterError(PERMISSION_TEXT.format(verb="query"))

    def _get_one(self, entity: str, record_id: int, parent: int | None) -> web.Response:
        self._check_read(entity)
        rec = self.tables[entity].get(record_id)
        if rec is not None and parent is not None and rec.get("contractID") != parent:
            rec = None
        # A missing id answers 200 {"item": null} (django-autotask's reading, §2.2 UNCERTAIN).
        return _json_response({"item": None if rec is None else self._visible(entity, rec, None)})

    async def _query_spec(self, request: web.Request) -> dict[str, Any]:
        if request.method == "GET":
            raw = request.query.get("search")
            if raw is None:
                raise FilterError("A search parameter is required for a query.")
        else:
            raw = await request.text()
        try:
            spec = json.loads(raw, parse_float=Decimal) if raw else {}
        except ValueError:
            raise FilterError("The query could not be parsed as JSON.") from None
        if not isinstance(spec, dict):
            raise FilterError("The query must be a JSON object.")
        return spec

    def _compile(self, entity: str, spec: dict[str, Any]) -> tuple[list, int, list[str] | None]:
        self._check_read(entity)
        lowered = {k.lower(): v for k, v in spec.items()}
        flt = lowered.get("filter")
        if not isinstance(flt, list) or not flt:
            # The real API refuses a query without a filter; clients send
            # {"op":"gte","field":"id","value":0}.
            raise FilterError(
                'A filter is required. Use {"op":"gte","field":"id","value":0} to return all.'
            )
        max_records = lowered.get("maxrecords", MAX_RECORDS)
        if (
            not isinstance(max_records, int)
            or isinstance(max_records, bool)
            or not 1 <= max_records <= MAX_RECORDS
        ):
            raise FilterError(f"MaxRecords must be between 1 and {MAX_RECORDS}.")
        include = lowered.get("includefields")
        if include is not None and (
            not isinstance(include, list) or not all(isinstance(f, str) for f in include)
        ):
            raise FilterError("IncludeFields must be an array of field names.")
        counter = {"or": 0, "udf": 0}
        compiled = [self._compile_cond(entity, c, counter, in_or=False) for c in flt]
        if counter["or"] > MAX_OR_CONDITIONS:
            raise FilterError(f"A query may contain at most {MAX_OR_CONDITIONS} OR conditions.")
        if counter["udf"] > 1:
            raise FilterError("Only one user-defined field may be queried at a time.")
        return compiled, max_records, include or None

    def _compile_cond(self, entity: str, cond: Any, counter: dict[str, int], in_or: bool) -> tuple:
        if not isinstance(cond, dict):
            raise FilterError("Each filter item must be an object.")
        c = {k.lower(): v for k, v in cond.items()}
        op = str(c.get("op", "")).lower()
        if op in ("and", "or"):
            items = c.get("items")
            if not isinstance(items, list) or not items:
                raise FilterError(f"The '{op}' operator requires a non-empty items array.")
            if op == "or":
                counter["or"] += len(items)
            return (
                op,
                [self._compile_cond(entity, i, counter, in_or or op == "or") for i in items],
            )
        if op not in _OPS:
            raise FilterError(f"Invalid operator '{c.get('op')}'.")
        field_name = c.get("field")
        if not isinstance(field_name, str) or not field_name:
            raise FilterError("Each condition needs a field.")
        if c.get("udf") is True:
            counter["udf"] += 1
            ftype, actual, udf = "str", field_name, True
        else:
            schema = _SCHEMAS[entity]
            found = {f.lower(): f for f in schema}.get(field_name.lower())
            if found is None:
                raise FilterError(f"Unable to find {field_name} in the {entity} entity.")
            actual, ftype, udf = found, schema[found], False
        if op in ("exist", "notexist"):
            return (op, actual, udf, ftype, None)
        if "value" not in c:
            raise FilterError(f"The '{op}' operator requires a value.")
        value = c["value"]
        if op in ("in", "notin"):
            if not isinstance(value, list):
                raise FilterError(f"The '{op}' operator requires an array value.")
            counter["or"] += len(value)
            return (op, actual, udf, ftype, [_coerce(ftype, v, field_name) for v in value])
        if op in ("beginswith", "endswith", "contains"):
            return (op, actual, udf, ftype, str(value).casefold())
        return (op, actual, udf, ftype, _coerce(ftype, value, field_name))

    def _matching(
        self, entity: str, compiled: list, parent: int | None, after: int = -1
    ) -> Iterator[dict[str, Any]]:
        table = self.tables[entity]
        ids = self._sorted[entity]
        low, high = after, None
        for c in compiled:  # top-level id bounds narrow the scan (results are sorted by id)
            if c[0] in ("gt", "gte", "lt", "lte", "eq") and c[1] == "id" and c[4] is not None:
                v = int(c[4])
                if c[0] in ("gt", "gte", "eq"):
                    low = max(low, v - (0 if c[0] == "gt" else 1))
                if c[0] in ("lt", "lte", "eq"):
                    hi = v - (1 if c[0] == "lt" else 0)
                    high = hi if high is None else min(high, hi)
        start = bisect.bisect_right(ids, low)
        stop = len(ids) if high is None else bisect.bisect_right(ids, high)
        for rid in ids[start:stop]:
            rec = table[rid]
            if parent is not None and rec.get("contractID") != parent:
                continue
            if all(_eval(c, rec, self.security) for c in compiled):
                yield rec

    def _count(self, entity: str, spec: dict[str, Any], parent: int | None) -> int:
        compiled, _, _ = self._compile(entity, spec)
        return sum(1 for _ in self._matching(entity, compiled, parent))

    def _first_page(
        self, entity: str, spec: dict[str, Any], method: str, parent: int | None
    ) -> web.Response:
        compiled, max_records, include = self._compile(entity, spec)
        state = {
            "entity": entity,
            "spec": spec,
            "method": method,
            "parent": parent,
            "after": -1,
            "prev": None,
        }
        return self._page(state, compiled, max_records, include)

    def _page(
        self, state: dict[str, Any], compiled: list, max_records: int, include: list[str] | None
    ) -> web.Response:
        entity = state["entity"]
        it = self._matching(entity, compiled, state["parent"], state["after"])
        page = list(itertools.islice(it, max_records))
        more = next(it, None) is not None
        if include and more and not any(f.lower() == "id" for f in include):
            raise FilterError(
                "IncludeFields must contain id when the result has more than one page."
            )
        search = urllib.parse.quote(
            json_dumps(state["spec"].get("filter", state["spec"].get("Filter")))
        )
        next_url = prev_url = None
        root = f"{self.base_url}V1.0/{entity}/query/next"
        if more:
            token = secrets.token_urlsafe(12)
            self._pages[token] = {**state, "after": page[-1]["id"], "prev": state}
            next_url = f"{root}?paging={token}&search={search}"
        if state["prev"] is not None:
            token = secrets.token_urlsafe(12)
            self._pages[token] = state["prev"]
            prev_url = f"{root}?paging={token}&search={search}"
        return _json_response(
            {
                "items": [self._visible(entity, r, include) for r in page],
                "pageDetails": {
                    "count": len(page),
                    "requestCount": max_records,
                    "prevPageUrl": prev_url,
                    "nextPageUrl": next_url,
                },
            }
        )

    async def _next_page(self, request: web.Request, entity: str) -> web.Response:
        state = self._pages.get(request.query.get("paging", ""))
        if state is None or state["entity"] != entity:
            raise FilterError("The paging token is invalid or has expired.")
        if request.method != state["method"]:
            return web.Response(status=405, text="Method Not Allowed")
        if request.method == "POST":
            body = await request.text()
            if body.strip():
                try:
                    sent = json.loads(body, parse_float=Decimal)
                except ValueError:
                    raise FilterError("The query could not be parsed as JSON.") from None
                if isinstance(sent, dict):
                    sent_filter = {k.lower(): v for k, v in sent.items()}.get("filter")
                    orig = {k.lower(): v for k, v in state["spec"].items()}.get("filter")
                    if sent_filter is not None and json_dumps(sent_filter) != json_dumps(orig):
                        raise FilterError("The filter does not match the paging token.")
        compiled, max_records, include = self._compile(entity, state["spec"])
        return self._page(state, compiled, max_records, include)

    # ---- writes --------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.text(), parse_float=Decimal)
        except ValueError:
            raise FilterError("The request body could not be parsed as JSON.") from None
        if not isinstance(body, dict):
            raise FilterError("The request body must be a JSON object.")
        return body

    def _can_edit(self, entity: str) -> bool:
        s = self.security
        return {
            "Services": s.can_edit_services,
            "Products": s.can_edit_products,
            "ContractServices": s.can_edit_contracts,
            "ContractCharges": s.can_edit_contracts,
        }.get(entity, False)

    async def _patch(self, request: web.Request, entity: str, parent: int | None) -> web.Response:
        if entity not in _PATCHABLE:
            return web.Response(status=405, text="Method Not Allowed")
        body = await self._body(request)
        if not self._can_edit(entity):
            return _errors(500, PERMISSION_TEXT.format(verb="update"))
        problems = _contract_body_problems(entity, parent is not None, body)
        if problems:
            return _errors(500, *problems)
        rid = body.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool):
            return _errors(500, "An id is required to update an entity.")
        rec = self.tables[entity].get(rid)
        if rec is None or (parent is not None and rec.get("contractID") != parent):
            return _errors(
                500, f"No matching records found. The Entity {entity} with id {rid} does not exist."
            )
        if entity == "ContractCharges" and rec["isBilled"]:
            return _errors(
                500, "The charge has been billed and can no longer be updated or deleted."
            )
        changes: dict[str, Any] = {}
        for key, value in body.items():
            if key.lower() == "id":
                continue
            actual = {f.lower(): f for f in _SCHEMAS[entity]}.get(key.lower(), key)
            if actual not in _PATCHABLE[entity]:
                if (
                    entity == "ContractServices"
                    and actual == "unitCost"
                    and self.contract_service_cost_patch == "reject"
                ):
                    return _errors(500, "The field unitCost is read-only and cannot be updated.")
                continue  # read-only fields are ignored on update
            if actual in _COST_FIELDS and not self.security.can_read_costs:
                continue  # silently ignored: the level cannot see costs (§2.4)
            ftype = _SCHEMAS[entity].get(actual, "str")
            try:
                changes[actual] = None if value is None else _coerce(ftype, value, key)
            except FilterError as exc:
                return _errors(500, str(exc))
            if ftype == "decimal" and changes[actual] is not None:
                changes[actual] = changes[actual].quantize(Q4)
        rec.update(changes)
        if entity == "Services":
            rec["lastModifiedDate"] = _iso(self._now())
        if entity == "ContractCharges":
            rec["extendedCost"] = (rec["unitCost"] * rec["unitQuantity"]).quantize(Q4)
        self.stats.writes[f"{_PREFIX[entity]}:{rid}"] += 1
        return _json_response({"itemId": rid})

    async def _create_adjustment(self, request: web.Request, parent: int | None) -> web.Response:
        """POST /ContractServiceAdjustments or /Contracts/{id}/ServiceAdjustments (AT-DOC-CSA).

        As documented: a unit change starts a new ContractServiceUnits row from the effective date
        (the running row ends the day before), and an adjustment for a service that is not on the
        contract adds the service to it. How a cost/price adjustment shows on the contract service
        itself is thin in the docs (UNCERTAIN, AT-ISS-PHP50): the sim changes ``unitCost``/
        ``unitPrice`` once the effective date has come, and the new unit row carries the new cost;
        ``adjustments_change_cost=False`` simulates the "quantity only" reading.
        """
        try:
            body = await self._body(request)
        except FilterError as exc:
            return _errors(500, str(exc))
        if not self.security.can_edit_contracts:
            return _errors(500, PERMISSION_TEXT.format(verb="create"))
        op = "/V1.0/ContractServiceAdjustments"
        if parent is not None:
            op = "/V1.0/Contracts/{parentId}/ServiceAdjustments"
        contract = load("autotask")
        problems = contract.body_problems(
            contract.operation("POST", op), body, read_only=frozenset({"id"})
        )
        if problems:
            return _errors(500, *problems)
        b = {k.lower(): v for k, v in body.items()}
        if parent is not None:
            if b.get("contractid") not in (None, parent):
                return _errors(500, "contractID does not match the parent contract of the URL.")
            b["contractid"] = parent
        missing = [f for f in ("contractID", "effectiveDate", "unitChange") if f.lower() not in b]
        if b.get("serviceid") is None and b.get("contractserviceid") is None:
            missing.append("serviceID")
        if missing:
            return _errors(500, *[f"{f} is required." for f in missing])
        kid = b["contractid"]
        if kid not in self.tables["Contracts"]:
            return _errors(500, f"No matching records found for Contract id {kid}.")
        cs = None
        for rec in self.tables["ContractServices"].values():
            if rec["contractID"] != kid:
                continue
            if b.get("contractserviceid") not in (None, rec["id"]):
                continue
            if b.get("serviceid") not in (None, rec["serviceID"]):
                continue
            cs = rec
            break
        if cs is None and b.get("contractserviceid") is not None:
            return _errors(500, "No matching contract service found for the adjustment.")
        if cs is None and b["serviceid"] not in self.tables["Services"]:
            return _errors(500, f"No matching records found for Service id {b['serviceid']}.")
        try:
            effective = _parse_dt(str(b["effectivedate"])).date()
            unit_change = Decimal(int(b["unitchange"]))
            adj_cost = b.get("adjustedunitcost")
            adj_cost = (
                None if adj_cost is None else _coerce("decimal", adj_cost, "adjustedUnitCost")
            )
            adj_price = b.get("adjustedunitprice")
            adj_price = (
                None if adj_price is None else _coerce("decimal", adj_price, "adjustedUnitPrice")
            )
        except (FilterError, ValueError) as exc:
            return _errors(500, f"The adjustment is invalid: {exc}")
        if cs is None:
            cs = self._add_contract_service(kid, b["serviceid"], adj_cost, adj_price)
        adj_id = next(self._ids)
        self.adjustments.append({"id": adj_id, **body})
        changes_cost = self.adjustments_change_cost and self.security.can_read_costs
        new_cost = adj_cost if changes_cost and adj_cost is not None else None
        self._start_unit_row(cs, effective, unit_change, new_cost)
        if effective <= datetime.now(UTC).date() and changes_cost:
            if adj_cost is not None:
                cs["unitCost"] = adj_cost.quantize(Q4)
            if adj_price is not None:
                cs["unitPrice"] = adj_price.quantize(Q4)
        self.stats.writes[f"contractservice:{cs['id']}"] += 1
        return _json_response({"itemId": adj_id})

    def _add_contract_service(
        self, kid: int, sid: int, cost: Decimal | None, price: Decimal | None
    ) -> dict[str, Any]:
        svc = self.tables["Services"][sid]
        csid = next(self._ids)
        price = (price if price is not None else svc["unitPrice"]).quantize(Q4)
        rec = {
            "id": csid,
            "contractID": kid,
            "serviceID": sid,
            "unitCost": (cost if cost is not None else svc["unitCost"]).quantize(Q4),
            "unitPrice": price,
            "internalCurrencyUnitPrice": price,
            "internalCurrencyAdjustedPrice": price,
            "internalDescription": None,
            "invoiceDescription": svc["name"],
            "quoteItemID": None,
        }
        self._insert("ContractServices", rec)
        return rec

    def _start_unit_row(
        self, cs: dict[str, Any], effective: date, change: Decimal, cost: Decimal | None
    ) -> None:
        """The units (and cost) change from ``effective`` on: the row running that day ends the
        day before and a new row starts; later rows change too. An effective date before every
        row changes those rows in place (nothing ran before it)."""
        rows = sorted(self._units_for(cs["id"]), key=lambda u: u["startDate"])
        new_cost = (cost if cost is not None else cs["unitCost"]).quantize(Q4)
        for u in rows:
            if _parse_dt(u["startDate"]).date() >= effective:
                u["units"] = (u["units"] + change).quantize(Q4)
                if cost is not None:
                    u["cost"] = new_cost
        running = next(
            (
                u
                for u in rows
                if _parse_dt(u["startDate"]).date() < effective <= _parse_dt(u["endDate"]).date()
            ),
            None,
        )
        if rows and running is None:
            return
        # A service new to the contract runs from the effective date to the end of the current
        # period (rows for later periods appear as they are billed).
        today = datetime.now(UTC).date()
        end = _parse_dt(running["endDate"]).date() if running else _month_end(max(effective, today))
        base_units = running["units"] if running else Decimal(0)
        if running is not None:
            running["endDate"] = f"{(effective - timedelta(days=1)).isoformat()}T00:00:00Z"
        uid = next(self._ids)
        row = {
            "id": uid,
            "contractID": cs["contractID"],
            "contractServiceID": cs["id"],
            "serviceID": cs["serviceID"],
            "startDate": f"{effective.isoformat()}T00:00:00Z",
            "endDate": f"{end.isoformat()}T00:00:00Z",
            "units": (base_units + change).quantize(Q4),
            "cost": new_cost,
            "price": cs["unitPrice"],
            "internalCurrencyPrice": cs["unitPrice"],
            "approveAndPostDate": None,
            "vendorCompanyID": None,
        }
        self._insert("ContractServiceUnits", row)
        self._units_by_cs.setdefault(cs["id"], []).append(row)


_WRITE_OPS = {
    ("Services", False): "/V1.0/Services",
    ("Products", False): "/V1.0/Products",
    ("ContractServices", True): "/V1.0/Contracts/{parentId}/Services",
    ("ContractCharges", True): "/V1.0/Contracts/{parentId}/Charges",
}


def _contract_body_problems(entity: str, child: bool, body: dict[str, Any]) -> list[str]:
    """A PATCH body checked against the published model (types; the spec has no enums here).
    The real API answers a wrongly typed field with 500 and an errors array (§2.5)."""
    contract = load("autotask")
    return contract.body_problems(contract.operation("PATCH", _WRITE_OPS[entity, child]), body)


_CHILDREN = {
    "services": "ContractServices",
    "charges": "ContractCharges",
    "serviceunits": "ContractServiceUnits",
    "serviceadjustments": "ContractServiceAdjustments",
}
_CHILD_WRITES_ONLY = {"ContractServices", "ContractCharges"}
_ADJUSTMENT_FIELDS = {
    "id": "int",
    "contractID": "int",
    "contractServiceID": "int",
    "serviceID": "int",
    "effectiveDate": "datetime",
    "unitChange": "int",
    "adjustedUnitCost": "decimal",
    "adjustedUnitPrice": "decimal",
    "allowRepeatService": "bool",
    "quoteItemID": "int",
}
_REQUIRED = {
    "Services": ("name", "unitPrice", "periodType", "billingCodeID"),
    "ContractServiceAdjustments": ("contractID", "effectiveDate", "unitChange"),
}

_PREFIX = {
    "Services": "service",
    "Products": "product",
    "ContractServices": "contractservice",
    "ContractCharges": "contractcharge",
}

_OPS = {
    "eq", "noteq", "gt", "gte", "lt", "lte", "beginswith", "endswith", "contains",
    "exist", "notexist", "in", "notin",
}  # fmt: skip


def _month_end(start: date) -> date:
    nxt = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return nxt - timedelta(days=1)


def _coerce(ftype: str, value: Any, name: str) -> Any:
    if ftype == "bool":
        # Booleans must be literally true/false; anything else (null included) is an error (§2.2).
        if value is True or value is False:
            return value
        raise FilterError(f"Invalid value for boolean field {name}: must be true or false.")
    if value is None:
        return None
    try:
        if ftype == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(Decimal(str(value)))
        if ftype == "decimal":
            if isinstance(value, bool):
                raise ValueError
            return Decimal(str(value))
        if ftype == "datetime":
            return _parse_dt(str(value))
    except (ValueError, InvalidOperation):
        raise FilterError(f"Invalid value '{value}' for field {name}.") from None
    return str(value)


def _field_value(
    rec: dict[str, Any], actual: str, udf: bool, ftype: str, security: SecurityLevel
) -> Any:
    if udf:
        for u in rec.get("userDefinedFields") or []:
            if str(u.get("name", "")).lower() == actual.lower():
                return u.get("value")
        return None
    value = rec.get(actual)
    if actual in _COST_FIELDS and not security.can_read_costs:
        return None
    if value is None:
        return None
    if ftype == "datetime":
        return _parse_dt(value)
    return value


def _eval(cond: tuple, rec: dict[str, Any], security: SecurityLevel) -> bool:
    op = cond[0]
    if op == "and":
        return all(_eval(c, rec, security) for c in cond[1])
    if op == "or":
        return any(_eval(c, rec, security) for c in cond[1])
    _, actual, udf, ftype, want = cond
    value = _field_value(rec, actual, udf, ftype, security)
    if op == "exist":
        return value not in (None, "")
    if op == "notexist":
        return value in (None, "")
    if isinstance(value, str) and ftype == "str":
        value = value.casefold()
        if isinstance(want, str):
            want = want.casefold()
        elif isinstance(want, list):
            want = [w.casefold() if isinstance(w, str) else w for w in want]
    if op == "eq":
        return value == want
    if op == "noteq":
        return value != want
    if op == "in":
        return value in want
    if op == "notin":
        return value not in want
    if value is None:
        return False
    if op in ("beginswith", "endswith", "contains"):
        text = str(value).casefold()
        return {
            "beginswith": text.startswith,
            "endswith": text.endswith,
            "contains": text.__contains__,
        }[op](want)
    if want is None:
        return False
    try:
        return {"gt": value > want, "gte": value >= want, "lt": value < want, "lte": value <= want}[
            op
        ]
    except TypeError:
        return False


# ---- starting it ----------------------------------------------------------------------------


class RunningAutotaskSim(AutotaskSim):
    """An :class:`AutotaskSim` served on loopback; ``await handle.close()`` when done."""

    _runner: web.AppRunner

    async def close(self) -> None:
        await self._runner.cleanup()


async def start_autotask_sim(
    dataset: Dataset | None = None, host: str = "127.0.0.1", port: int = 0, **knobs: Any
) -> RunningAutotaskSim:
    """Serve a fake Autotask tenant; the zone URL it hands out is its own ``base_url``."""
    sim = RunningAutotaskSim(dataset if dataset is not None else generate("demo"), **knobs)
    await serve_on_loopback(sim, host, port, "/atservicesrest/")
    return sim


def config_snippet(sim: AutotaskSim) -> str:
    """The ``[psa]`` TOML block that points costrecond at this sim."""
    # Settings live in a [psa.autotask] table: config.py refuses other keys under [psa].
    return (
        "[psa]\n"
        'kind = "autotask"\n'
        "\n[psa.autotask]\n"
        f'username = "{sim.username}"\n'
        f'secret = "{sim.secret}"\n'
        f'integration_code = "{sim.integration_code}"\n'
        f'base_url_for_zone_lookup = "{sim.base_url}"\n'
        "concurrency = 3\n"
        f"requests_per_hour = {sim.requests_per_hour}\n"
    )


def run_standalone(
    port: int = 8090, size: str = "demo", seed: int = 7, host: str = "127.0.0.1", **knobs: Any
) -> None:
    """Serve until interrupted; print the base URL and the config snippet (``costrecond sim
    autotask``)."""

    serve_until_interrupted(
        lambda: start_autotask_sim(generate(size, seed=seed), host=host, port=port, **knobs),
        lambda sim: (
            f"Autotask simulator listening on {sim.base_url}\n"
            f"Add this to your costrecon config:\n\n{config_snippet(sim)}"
        ),
    )
