"""A fake ConnectWise PSA (Manage) REST API 3.0 server, built from psa-apis.md §1 and §5.

What it serves (everything costrecon touches, with the real shapes):

- ``GET /login/companyinfo/{company}`` (no auth; JSON ``null`` for an unknown company, §1.1);
- under ``/{codebase}apis/3.0``: ``/procurement/catalog`` list/get/count/PATCH,
  ``/finance/agreements`` list/get/count, ``/finance/agreements/{id}/additions``
  list/get/count/PATCH;
- Basic ``company+public:private`` auth plus a required ``clientId`` header (401 otherwise);
- bare JSON arrays, camelCase, ``_info.lastUpdated`` bumped on every write, money as JSON numbers;
- ``page``/``pageSize`` with ``Link`` headers, forward-only paging (``pagination-type`` header +
  ``pageId``), ``conditions``, ``orderBy``, ``fields``;
- JSON-Patch PATCH returning the full entity; 400 ``InvalidObject``; 403 when the API member's
  security role lacks edit rights; fault knobs (sim/knobs.py).

It is deliberately not easier than the real thing: an addition write does NOT bump its agreement's
``_info.lastUpdated`` (whether the real API does is UNCERTAIN, §1.6 — a knob turns it on), PATCH is
checked against the security role before the body is looked at, and unknown fields in
``conditions`` are a 400.

Control surface for tests (plain Python, no HTTP): :meth:`ConnectWiseSim.set_item_cost`,
:meth:`set_line_cost`, :meth:`patch_count`, :meth:`set_role`, ``.knobs``, ``.stats``.
"""

from __future__ import annotations

import base64
import bisect
import functools
import json
import re
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from costrecon_daemon.psa.http import dumps
from costrecon_daemon.sim.conditions import ConditionError, compile_conditions
from costrecon_daemon.sim.contract import (
    Recorder,
    check,
    env_recorder,
    load,
    recording_middleware,
)
from costrecon_daemon.sim.dataset import Dataset, SimContract, SimItem, SimLine
from costrecon_daemon.sim.knobs import Knobs, RequestStats, fault_middleware
from costrecon_daemon.sim.serve import serve_until_interrupted, server_sockets

__all__ = ["ConnectWiseSim", "RunningSim", "run_standalone", "start_connectwise_sim"]

DEFAULT_PAGE_SIZE = 25
# §1.2: "the hard maximum is 1000". The sources do not say whether a larger pageSize is refused
# or trimmed; the client libraries (CW-PY, CW-PS) simply send 1000 and the observed behaviour
# reported for tenants is that the server silently caps, so the sim clamps to 1000.
MAX_PAGE_SIZE = 1000
API_VERSION = "2025.1"
MEMBER = "costrecon-api"


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- records ----------------------------------------------------------------------------------


class _Rec:
    """One entity: its JSON-shaped dict, its lastUpdated as epoch seconds, cached renderings."""

    __slots__ = ("id", "data", "lu", "_json")

    def __init__(self, rec_id: int, data: dict[str, Any], lu: int):
        self.id = rec_id
        self.data = data
        self.lu = lu
        self._json: dict[str | None, str] = {}

    def touch(self, epoch: int) -> None:
        self.lu = epoch
        info = self.data["_info"]
        info["lastUpdated"] = _iso(epoch)
        info["updatedBy"] = MEMBER
        self._json.clear()

    def json(self, fields: str | None) -> str:
        cached = self._json.get(fields)
        if cached is None:
            obj = self.data if fields is None else _project(self.data, fields)
            try:
                cached = json.dumps(_wire(obj), separators=(",", ":"), ensure_ascii=False)
            except TypeError:  # a Decimal too long for the float path: exact encoder
                cached = dumps(obj)
            self._json[fields] = cached
        return cached


def _wire(value: Any) -> Any:
    """The JSON boundary: money goes out as a JSON number. A Decimal with at most 15 significant
    digits converts to a float whose shortest repr is the same digits, so ``json.dumps`` writes it
    digit for digit and fast; anything longer keeps the exact (slower) Decimal path."""
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        if len(value.as_tuple().digits) <= 15 and value.is_finite():
            return float(value)
        return value
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _get(rec: _Rec, path: str) -> Any:
    if path == "_info/lastUpdated":
        return rec.lu
    value: Any = rec.data
    for part in path.split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


@functools.lru_cache(maxsize=256)
def _field_paths(fields: str) -> tuple[tuple[str, ...], ...]:
    return tuple(
        tuple(p for p in path.strip().split("/") if p) for path in fields.split(",") if path.strip()
    )


def _project(data: dict[str, Any], fields: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for parts in _field_paths(fields):
        if len(parts) == 1:
            if parts[0] in data:
                out[parts[0]] = data[parts[0]]
            continue
        src: Any = data
        dst = out
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if not isinstance(src, dict) or part not in src:
                break
            src = src[part]
            if i == last:
                dst[part] = src
            elif isinstance(src, dict):
                dst = dst.setdefault(part, {})
            else:
                dst[part] = src
                break
    return out


class _Collection:
    """Records of one list endpoint, kept sorted by id; filtered views cached per query."""

    def __init__(self, fields: set[str]):
        self.by_id: dict[int, _Rec] = {}
        self.ids: list[int] = []
        self.fields = fields
        self.version = 0
        self._views: dict[tuple[str, str], tuple[int, list[_Rec]]] = {}

    def add(self, rec: _Rec) -> None:
        if self.ids and rec.id < self.ids[-1]:
            bisect.insort(self.ids, rec.id)
        else:
            self.ids.append(rec.id)
        self.by_id[rec.id] = rec
        self.version += 1

    def changed(self) -> None:
        self.version += 1

    def view(self, conditions: str, order_by: str) -> list[_Rec]:
        key = (conditions, order_by)
        hit = self._views.get(key)
        if hit and hit[0] == self.version:
            return hit[1]
        recs = [self.by_id[i] for i in self.ids]
        if conditions.strip():
            pred = compile_conditions(conditions, _get, self.fields)
            recs = [r for r in recs if pred(r)]
        if order_by.strip():
            recs = _order(recs, order_by, self.fields)
        if len(self._views) > 256:
            self._views.clear()
        self._views[key] = (self.version, recs)
        return recs


def _order(recs: list[_Rec], order_by: str, fields: set[str]) -> list[_Rec]:
    keys: list[tuple[str, bool]] = []
    for part in order_by.split(","):
        words = part.split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ConditionError(f"orderBy {part.strip()!r} is not 'field asc|desc'")
        path = "_info/lastUpdated" if words[0] == "lastUpdated" else words[0]
        if path.split("/", 1)[0] not in fields:
            raise ConditionError(f"unknown field {words[0]!r} in orderBy")
        keys.append((path, len(words) == 2 and words[1].lower() == "desc"))
    for path, desc in reversed(keys):

        def sort_key(r: _Rec, path: str = path) -> tuple[int, Any]:
            v = _get(r, path)
            if v is None:
                return (0, 0)
            if isinstance(v, str):
                return (1, v.casefold())
            return (1, v)

        recs = sorted(recs, key=sort_key, reverse=desc)
    return recs


# ---- mapping the PSA-neutral data set onto ConnectWise entities -------------------------------

_BASE_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z


def _ref_info(kind: str, ident: int) -> dict[str, str]:
    return {f"{kind}_href": f"https://sim.invalid/v4_6_release/apis/3.0/{kind}s/{ident}"}


def _item_json(it: SimItem, lu: int, vendor_ids: dict[str, int], mfr_ids: dict[str, int]) -> dict:
    vendor_id = vendor_ids.setdefault(it.vendor_name, len(vendor_ids) + 250)
    data: dict[str, Any] = {
        "id": it.id,
        "identifier": it.identifier,
        "description": it.name,
        "inactiveFlag": not it.active,
        "subcategory": {"id": 1, "name": "General"},
        "type": {"id": 2 if it.recurring else 1, "name": "Service" if it.recurring else "Product"},
        "productClass": "Agreement" if it.recurring else "NonInventory",
        "serializedFlag": False,
        "serializedCostFlag": False,
        "phaseProductFlag": False,
        "unitOfMeasure": {"id": 1, "name": "Each", "_info": _ref_info("unitOfMeasure", 1)},
        "minStockLevel": 0,
        "price": it.price,
        "cost": it.cost,
        # The spec's enum: FixedFee | NotToExceed | OverrideRate | TimeAndMaterials (a strict
        # client generated from it refuses a whole page holding anything else).
        "priceAttribute": "FixedFee",
        "taxableFlag": False,
        "dropShipFlag": False,
        "specialOrderFlag": False,
        "customerDescription": it.description,
        "manufacturer": None,
        "manufacturerPartNumber": it.mpn,
        "vendor": {
            "id": vendor_id,
            "identifier": re.sub(r"[^A-Za-z0-9]", "", it.vendor_name)[:25],
            "name": it.vendor_name,
            "_info": _ref_info("company", vendor_id),
        },
        "vendorSku": it.vendor_sku,
        "notes": None,
        "integrationXRef": None,
        "sla": None,
        "entityType": None,
        "recurringFlag": it.recurring,
        "recurringRevenue": it.price if it.recurring else Decimal(0),
        "recurringCost": it.cost if it.recurring else Decimal(0),
        "recurringOneTimeFlag": False,
        "recurringBillCycle": {"id": 2, "name": "Monthly"} if it.recurring else None,
        "recurringCycleType": "ContractYear",
        "calculatedPriceFlag": False,
        "calculatedCostFlag": False,
        "category": {"id": zlib.crc32(it.category.encode()) % 90 + 10, "name": it.category},
        "billableOption": "Billable",
        "customFields": [],
        "_info": {"lastUpdated": _iso(lu), "updatedBy": "jsmith", "dateEntered": _iso(_BASE_EPOCH)},
    }
    if it.manufacturer:
        mid = mfr_ids.setdefault(it.manufacturer, len(mfr_ids) + 1)
        data["manufacturer"] = {
            "id": mid,
            "name": it.manufacturer,
            "_info": _ref_info("manufacturer", mid),
        }
    return _omit_unset("CatalogItem", data)


def _omit_unset(model: str, data: dict[str, Any]) -> dict[str, Any]:
    """Unset fields are left out rather than sent as null where the spec does not mark the field
    nullable (strings, dates and references never are; contracts/README). That ConnectWise omits
    them is the common understanding, not verified (UNCERTAIN): leaving them out is the stricter
    test of a connector, which must then read every field with a default."""
    props = load("connectwise").schemas[model]["properties"]
    return {k: v for k, v in data.items() if v is not None or props.get(k, {}).get("nullable")}


def _agreement_json(c: SimContract, lu: int) -> dict:
    cancelled = c.status == "Cancelled"
    company_id = 19_000 + zlib.crc32(c.company.encode()) % 900
    return _omit_unset(
        "Agreement",
        {
            "id": c.id,
            "name": c.name,
            "type": {"id": 5, "name": "Managed Services"},
            "company": {
                "id": company_id,
                "identifier": re.sub(r"[^A-Za-z0-9]", "", c.company)[:25],
                "name": c.company,
                "_info": _ref_info("company", company_id),
            },
            "contact": None,
            "agreementStatus": c.status,
            "cancelledFlag": cancelled,
            "dateCancelled": _iso(lu) if cancelled else None,
            "startDate": "2023-01-01T00:00:00Z",
            "endDate": "2024-06-30T00:00:00Z" if c.status == "Expired" else None,
            "noEndingDateFlag": c.status != "Expired",
            "billingCycle": {"id": 2, "name": "Monthly"},
            "billAmount": Decimal(0),
            "taxable": False,
            "currency": {
                "id": 1,
                "symbol": "$" if c.currency == "USD" else c.currency,
                "currencyCode": c.currency,
                "name": c.currency,
            },
            "customFields": [],
            "_info": {
                "lastUpdated": _iso(lu),
                "updatedBy": "jsmith",
                "dateEntered": _iso(_BASE_EPOCH),
            },
        },
    )


def _next_period_start() -> str:
    """The first of next month: a future-dated addition (effectiveDate after today)."""
    today = datetime.now(UTC).date()
    return f"{(today.replace(day=28) + timedelta(days=4)).replace(day=1)}T00:00:00Z"


def _addition_json(ln: SimLine, item: SimItem, status: str, lu: int) -> dict:
    data = {
        "id": ln.id,
        "product": {
            "id": item.id,
            "identifier": item.identifier,
            "description": item.name,
            "_info": _ref_info("catalog", item.id),
        },
        "quantity": ln.quantity,
        "lessIncluded": Decimal(0),
        "unitPrice": ln.unit_price,
        "unitCost": ln.unit_cost,
        "billCustomer": "Billable",
        "effectiveDate": _next_period_start() if ln.starts_next_period else "2023-01-01T00:00:00Z",
        "cancelledDate": _iso(lu) if ln.cancelled else None,
        "taxableFlag": False,
        "serialNumber": None,
        "invoiceDescription": ln.description,
        "purchaseItemFlag": False,
        "specialOrderFlag": False,
        "agreementId": ln.contract_id,
        "description": ln.description,
        "billedQuantity": ln.quantity,
        "uom": "Each",
        "extPrice": ln.unit_price * ln.quantity,
        "extCost": ln.unit_cost * ln.quantity,
        "sequenceNumber": Decimal(ln.id % 100),
        "margin": ln.unit_price * ln.quantity - ln.unit_cost * ln.quantity,
        "prorateCost": Decimal(0),
        "proratePrice": Decimal(0),
        "extendedProrateCost": Decimal(0),
        "extendedProratePrice": Decimal(0),
        "prorateCurrentPeriodFlag": False,
        "opportunity": None,
        "agreementStatus": status,
        "invoiceGrouping": {"id": 1, "name": "Default"},
        "customFields": [],
        "_info": {"lastUpdated": _iso(lu), "updatedBy": "jsmith", "dateEntered": _iso(_BASE_EPOCH)},
    }
    return _omit_unset("Addition", data)


# Fields a PATCH may change, and how each value must look.
_ITEM_WRITABLE: dict[str, type | tuple[type, ...]] = {
    "cost": (int, Decimal),
    "price": (int, Decimal),
    "description": str,
    "customerDescription": str,
    "inactiveFlag": bool,
    "vendorSku": (str, type(None)),
    "manufacturerPartNumber": (str, type(None)),
    "notes": (str, type(None)),
    "recurringCost": (int, Decimal),
    "recurringRevenue": (int, Decimal),
}
_ADDITION_WRITABLE: dict[str, type | tuple[type, ...]] = {
    "unitCost": (int, Decimal),
    "unitPrice": (int, Decimal),
    "quantity": (int, Decimal),
    "description": str,
    "invoiceDescription": str,
    "cancelledDate": (str, type(None)),
    "billCustomer": str,
}
_COST_FIELDS = {"cost", "unitCost", "recurringCost"}


@dataclass
class Role:
    """The API member's security role, by the settings costrecon depends on (§1.4, §4.4)."""

    catalog_read: bool = True
    catalog_edit: bool = True  # Procurement > Product Catalog (and Products): Edit
    agreements_read: bool = True
    agreements_edit: bool = True  # Finance > Agreements: Edit
    can_login: bool = True  # False: valid keys but the member is inactive / locked out


def _error(status: int, code: str, message: str, errors: list[dict] | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors is not None:
        body["errors"] = errors
    return web.Response(status=status, text=dumps(body), content_type="application/json")


def _cw_fault(status: int, retry_after: int | None) -> web.Response:
    if status == 429:
        resp = _error(429, "TooManyRequests", "Too many requests; please retry after some time.")
        if retry_after is not None:
            resp.headers["Retry-After"] = str(retry_after)
        return resp
    return _error(status, "InternalServerError", "An unexpected error occurred.")


def _invalid(
    resource: str, message: str, field: str | None = None, code: str = "InvalidField"
) -> web.Response:
    return _error(
        400,
        "InvalidObject",
        f"{resource} object is invalid",
        [{"code": code, "message": message, "resource": resource, "field": field or ""}],
    )


class ConnectWiseSim:
    """State and handlers. Build with :func:`start_connectwise_sim` or :meth:`app`."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        company: str = "acme",
        public_key: str = "pubkey0123456789",
        private_key: str = "privkey0123456789",
        client_id: str = "9f1c0d2e-4b7a-4d7e-9a51-3c2f6b8e1a00",
        codebase: str = "v2025_1/",
        knobs: Knobs | None = None,
    ):
        self.company = company
        self.public_key = public_key
        self.private_key = private_key
        self.client_id = client_id
        self.codebase = codebase
        self.knobs = knobs or Knobs()
        self.stats = RequestStats()
        self.role = Role()
        # Autotask-style silent ignore, for testing write verification: PATCH answers 200 with the
        # entity as it was.
        self.ignore_cost_writes = False
        # Whether a change to an addition also bumps its agreement's _info.lastUpdated (UNCERTAIN
        # on the real API, §1.6). Off by default: the harder case for clients.
        self.bump_agreement_on_addition_write = False
        # A gateway that times out after the server committed: writes apply, the answer is a 504.
        self.fail_after_applying_writes = False
        self._clock_offset = 0
        self.recorder: Recorder | None = env_recorder()
        self._load(dataset)

    # ---- data --------------------------------------------------------------------------------

    def _load(self, ds: Dataset) -> None:
        items_by_id = {it.id: it for it in ds.items}
        vendor_ids: dict[str, int] = {}
        mfr_ids: dict[str, int] = {}
        first = True
        self.catalog = _Collection(set())
        for it in ds.items:
            lu = _BASE_EPOCH + it.id * 617 % 20_000_000
            data = _item_json(it, lu, vendor_ids, mfr_ids)
            if first:
                self.catalog.fields = set(data) | {"lastUpdated"}
                first = False
            self.catalog.add(_Rec(it.id, data, lu))
        self.agreements = _Collection(set())
        status_of: dict[int, str] = {}
        for c in ds.contracts:
            lu = _BASE_EPOCH + c.id * 1_193 % 20_000_000
            data = _agreement_json(c, lu)
            self.agreements.fields = set(data) | {"lastUpdated"}
            self.agreements.add(_Rec(c.id, data, lu))
            status_of[c.id] = c.status
        self.additions: dict[int, _Collection] = {cid: _Collection(set()) for cid in status_of}
        self.addition_parent: dict[int, int] = {}
        addition_fields: set[str] = set()
        for ln in ds.lines:
            lu = _BASE_EPOCH + ln.id * 331 % 20_000_000
            data = _addition_json(ln, items_by_id[ln.item_id], status_of[ln.contract_id], lu)
            if not addition_fields:
                addition_fields = set(data) | {"lastUpdated"}
            self.additions[ln.contract_id].add(_Rec(ln.id, data, lu))
            self.addition_parent[ln.id] = ln.contract_id
        if not addition_fields:
            addition_fields = set(
                _addition_json(
                    SimLine(0, 0, 0, Decimal(1), Decimal(0), Decimal(0), False, ""),
                    SimItem(
                        0,
                        "",
                        "",
                        "",
                        Decimal(0),
                        Decimal(0),
                        "USD",
                        True,
                        "",
                        None,
                        None,
                        None,
                        True,
                        "",
                    ),
                    "Active",
                    0,
                )
            ) | {"lastUpdated"}
        for coll in self.additions.values():
            coll.fields = addition_fields
        self._addition_fields = addition_fields
        self.patches: dict[tuple[str, int], int] = {}

    def _now(self) -> int:
        return int(time.time()) + self._clock_offset

    def _item_rec(self, item_id: int) -> _Rec:
        return self.catalog.by_id[item_id]

    def _addition_rec(self, line_id: int) -> tuple[_Collection, _Rec]:
        coll = self.additions[self.addition_parent[line_id]]
        return coll, coll.by_id[line_id]

    # ---- control surface for tests and benchmarks (not part of the fake API) -----------------

    def set_item_cost(self, item_id: int, cost: Decimal | str) -> None:
        """Someone changed the catalogue cost in the ConnectWise UI."""
        rec = self._item_rec(item_id)
        rec.data["cost"] = Decimal(cost)
        if rec.data.get("recurringFlag"):
            rec.data["recurringCost"] = Decimal(cost)
        rec.touch(self._now())
        self.catalog.changed()

    def set_line_cost(self, line_id: int, cost: Decimal | str) -> None:
        """Someone changed an agreement addition's unit cost in the UI."""
        coll, rec = self._addition_rec(line_id)
        self._set_addition_cost(rec, Decimal(cost))
        rec.touch(self._now())
        coll.changed()
        self._after_addition_write(rec)

    def item_cost(self, item_id: int) -> Decimal:
        return self._item_rec(item_id).data["cost"]

    def line_cost(self, line_id: int) -> Decimal:
        return self._addition_rec(line_id)[1].data["unitCost"]

    def patch_count(self, kind: str | None = None, rec_id: int | None = None) -> int:
        """PATCH requests that reached a record: ``kind`` is "catalog" or "addition"."""
        return sum(
            n
            for (k, i), n in self.patches.items()
            if (kind is None or k == kind) and (rec_id is None or i == rec_id)
        )

    def set_role(self, **flags: bool) -> None:
        """``set_role(catalog_edit=False)`` etc.; see :class:`Role`."""
        for name, value in flags.items():
            if not hasattr(self.role, name):
                raise AttributeError(f"Role has no setting {name!r}")
            setattr(self.role, name, value)

    def advance_clock(self, seconds: int) -> None:
        """Move the server clock (writes stamp ``_info.lastUpdated`` from it)."""
        self._clock_offset += seconds

    def add_item(self, item: SimItem) -> None:
        lu = self._now()
        self.catalog.add(_Rec(item.id, _item_json(item, lu, {}, {}), lu))

    def delete_line(self, line_id: int) -> None:
        coll, rec = self._addition_rec(line_id)
        del coll.by_id[line_id]
        coll.ids.remove(line_id)
        del self.addition_parent[line_id]
        coll.changed()

    # ---- HTTP --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                recording_middleware("connectwise", self),
                fault_middleware(self.knobs, self.stats, _cw_fault),
                self._auth_middleware,
            ],
            client_max_size=4 * 1024 * 1024,
        )
        root = f"/{self.codebase}apis/3.0"
        r = app.router
        r.add_get("/login/companyinfo/{company}", self._companyinfo)
        r.add_get(root + "/procurement/catalog", self._list_catalog)
        r.add_get(root + "/procurement/catalog/count", self._count_catalog)
        r.add_get(root + r"/procurement/catalog/{id:\d+}", self._get_catalog)
        r.add_patch(root + r"/procurement/catalog/{id:\d+}", self._patch_catalog)
        r.add_get(root + "/finance/agreements", self._list_agreements)
        r.add_get(root + "/finance/agreements/count", self._count_agreements)
        r.add_get(root + r"/finance/agreements/{id:\d+}", self._get_agreement)
        r.add_get(root + r"/finance/agreements/{id:\d+}/additions", self._list_additions)
        r.add_get(root + r"/finance/agreements/{id:\d+}/additions/count", self._count_additions)
        r.add_get(root + r"/finance/agreements/{id:\d+}/additions/{aid:\d+}", self._get_addition)
        r.add_patch(
            root + r"/finance/agreements/{id:\d+}/additions/{aid:\d+}", self._patch_addition
        )
        return app

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path.startswith("/login/companyinfo/"):
            return await handler(request)
        if not request.path.startswith(f"/{self.codebase}apis/3.0"):
            # A stale codebase (§1.1: clients re-read companyinfo after a 404).
            return _error(404, "NotFound", "The requested URL was not found.")
        if not request.headers.get("clientId"):
            return _error(
                401,
                "Unauthorized",
                "A clientId header is required. For more information see https://developer.connectwise.com/ClientID",
            )
        if not self._auth_ok(request.headers.get("Authorization", "")):
            return _error(401, "Unauthorized", "Authentication failed.")
        if not self.role.can_login:
            return _error(401, "ConnectWiseApi", "UserNotAuthenticated")
        resp = await handler(request)
        resp.headers["api-current-version"] = API_VERSION
        resp.headers["x-server-name"] = "sim-cw-01"
        return resp

    def _auth_ok(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        company, plus, public = user.partition("+")
        return (
            bool(plus)
            and company.lower() == self.company.lower()
            and public == self.public_key
            and password == self.private_key
        )

    async def _companyinfo(self, request: web.Request) -> web.Response:
        if request.match_info["company"].lower() != self.company.lower():
            return web.Response(text="null", content_type="application/json")
        info = {
            "CompanyName": self.company,
            "Codebase": self.codebase,
            "VersionCode": "v" + API_VERSION,
            "VersionNumber": "v2025.1.0.0",
            "CompanyID": self.company,
            "IsCloud": True,
        }
        return web.Response(text=json.dumps(info), content_type="application/json")

    # ---- lists -------------------------------------------------------------------------------

    def _list(self, request: web.Request, coll: _Collection) -> web.Response:
        q = request.query
        conditions = q.get("conditions", "")
        order_by = q.get("orderBy", "")
        fields = q.get("fields") or None
        try:
            page_size = int(q.get("pageSize", DEFAULT_PAGE_SIZE))
            page = int(q.get("page", 1))
            page_id = int(q["pageId"]) if "pageId" in q else None
        except ValueError:
            return _error(400, "InvalidObject", "page, pageSize and pageId must be whole numbers.")
        if page_size <= 0:
            page_size = DEFAULT_PAGE_SIZE
        page_size = min(page_size, MAX_PAGE_SIZE)
        if page < 1:
            return _error(400, "InvalidObject", "page must be 1 or greater.")
        forward = request.headers.get("pagination-type", "").lower() == "forward-only"
        try:
            recs = coll.view(conditions, "" if forward else order_by)
        except ConditionError as exc:
            return _error(
                400,
                "InvalidObject",
                f"conditions is invalid: {exc}",
                [
                    {
                        "code": "InvalidCondition",
                        "message": str(exc),
                        "resource": "conditions",
                        "field": "conditions",
                    }
                ],
            )
        links: list[str] = []
        base = f"{request.scheme}://{request.host}{request.path}"
        params = {k: v for k, v in q.items() if k not in ("page", "pageId")}
        params["pageSize"] = str(page_size)

        def link(rel: str, **extra: Any) -> str:
            query = urlencode({**params, **{k: str(v) for k, v in extra.items()}})
            return f'<{base}?{query}>; rel="{rel}"'

        if forward:
            # The server treats pageId as an extra `id > pageId` condition (§1.2) over id order.
            start = 0
            if page_id is not None:
                start = _bisect_recs(recs, page_id)
            chunk = recs[start : start + page_size]
            if start + page_size < len(recs) and chunk:
                links.append(link("next", pageId=chunk[-1].id))
        else:
            last = max(1, -(-len(recs) // page_size))
            start = (page - 1) * page_size
            chunk = recs[start : start + page_size]
            if page > 1:
                links.append(link("first", page=1))
                links.append(link("prev", page=min(page - 1, last)))
            if page < last:
                links.append(link("next", page=page + 1))
                links.append(link("last", page=last))
        body = "[" + ",".join(r.json(fields) for r in chunk) + "]"
        resp = web.Response(text=body, content_type="application/json")
        if links:
            resp.headers["Link"] = ", ".join(links)
        return resp

    def _count(self, request: web.Request, coll: _Collection) -> web.Response:
        try:
            recs = coll.view(request.query.get("conditions", ""), "")
        except ConditionError as exc:
            return _error(400, "InvalidObject", f"conditions is invalid: {exc}")
        return web.Response(text=json.dumps({"count": len(recs)}), content_type="application/json")

    def _forbidden(self) -> web.Response:
        return _error(
            403, "Forbidden", "You do not have sufficient permissions to perform this action."
        )

    def _not_found(self, what: str, rec_id: int) -> web.Response:
        return _error(404, "NotFound", f"{what} recId {rec_id} not found")

    async def _list_catalog(self, request: web.Request) -> web.Response:
        if not self.role.catalog_read:
            return self._forbidden()
        return self._list(request, self.catalog)

    async def _count_catalog(self, request: web.Request) -> web.Response:
        if not self.role.catalog_read:
            return self._forbidden()
        return self._count(request, self.catalog)

    async def _get_catalog(self, request: web.Request) -> web.Response:
        if not self.role.catalog_read:
            return self._forbidden()
        rec = self.catalog.by_id.get(int(request.match_info["id"]))
        if rec is None:
            return self._not_found("CatalogItem", int(request.match_info["id"]))
        return _one(rec, request.query.get("fields") or None)

    async def _list_agreements(self, request: web.Request) -> web.Response:
        if not self.role.agreements_read:
            return self._forbidden()
        return self._list(request, self.agreements)

    async def _count_agreements(self, request: web.Request) -> web.Response:
        if not self.role.agreements_read:
            return self._forbidden()
        return self._count(request, self.agreements)

    async def _get_agreement(self, request: web.Request) -> web.Response:
        if not self.role.agreements_read:
            return self._forbidden()
        rec = self.agreements.by_id.get(int(request.match_info["id"]))
        if rec is None:
            return self._not_found("Agreement", int(request.match_info["id"]))
        return _one(rec, request.query.get("fields") or None)

    def _additions_of(self, request: web.Request) -> _Collection | web.Response:
        if not self.role.agreements_read:
            return self._forbidden()
        agreement_id = int(request.match_info["id"])
        coll = self.additions.get(agreement_id)
        if coll is None:
            return self._not_found("Agreement", agreement_id)
        return coll

    async def _list_additions(self, request: web.Request) -> web.Response:
        coll = self._additions_of(request)
        return coll if isinstance(coll, web.Response) else self._list(request, coll)

    async def _count_additions(self, request: web.Request) -> web.Response:
        coll = self._additions_of(request)
        return coll if isinstance(coll, web.Response) else self._count(request, coll)

    async def _get_addition(self, request: web.Request) -> web.Response:
        coll = self._additions_of(request)
        if isinstance(coll, web.Response):
            return coll
        rec = coll.by_id.get(int(request.match_info["aid"]))
        if rec is None:
            return self._not_found("AgreementAddition", int(request.match_info["aid"]))
        return _one(rec, request.query.get("fields") or None)

    # ---- writes ------------------------------------------------------------------------------

    async def _patch_catalog(self, request: web.Request) -> web.Response:
        # Security comes first: a member without edit gets 403 whatever the body says.
        if not (self.role.catalog_read and self.role.catalog_edit):
            return self._forbidden()
        item_id = int(request.match_info["id"])
        rec = self.catalog.by_id.get(item_id)
        if rec is None:
            return self._not_found("CatalogItem", item_id)
        ops = await _read_patch(request, "catalogItem", _ITEM_WRITABLE)
        if isinstance(ops, web.Response):
            return ops
        if ops:  # see _patch_addition: only whole, non-empty patches count as writes
            self.patches[("catalog", item_id)] = self.patches.get(("catalog", item_id), 0) + 1
        if ops and self._apply(rec, ops):
            if rec.data.get("recurringFlag") and any(p == "cost" for _, p, _ in ops):
                rec.data["recurringCost"] = rec.data["cost"]
            rec.touch(self._now())
            self.catalog.changed()
        return _one(rec, None)

    async def _patch_addition(self, request: web.Request) -> web.Response:
        if not (self.role.agreements_read and self.role.agreements_edit):
            return self._forbidden()
        coll = self._additions_of(request)
        if isinstance(coll, web.Response):
            return coll
        line_id = int(request.match_info["aid"])
        rec = coll.by_id.get(line_id)
        if rec is None:
            return self._not_found("AgreementAddition", line_id)
        ops = await _read_patch(request, "agreementAddition", _ADDITION_WRITABLE)
        if isinstance(ops, web.Response):
            return ops
        if ops:
            # Counted once the whole body has arrived with operations in it: a request cut off
            # mid-body (the client died) or an empty permission probe changes nothing.
            self.patches[("addition", line_id)] = self.patches.get(("addition", line_id), 0) + 1
        if ops and self._apply(rec, ops):
            data = rec.data
            data["extCost"] = data["unitCost"] * data["quantity"]
            data["extPrice"] = data["unitPrice"] * data["quantity"]
            data["margin"] = data["extPrice"] - data["extCost"]
            rec.touch(self._now())
            coll.changed()
            self._after_addition_write(rec)
        if self.fail_after_applying_writes:
            return _cw_fault(504, None)
        return _one(rec, None)

    def _apply(self, rec: _Rec, ops: list[tuple[str, str, Any]]) -> bool:
        changed = False
        for op, path, value in ops:
            if self.ignore_cost_writes and path in _COST_FIELDS:
                continue
            if op == "remove":
                value = None
            if isinstance(value, int) and not isinstance(value, bool):
                value = Decimal(value)
            if rec.data.get(path) != value or type(rec.data.get(path)) is not type(value):
                rec.data[path] = value
                changed = True
        return changed

    def _set_addition_cost(self, rec: _Rec, cost: Decimal) -> None:
        data = rec.data
        data["unitCost"] = cost
        data["extCost"] = cost * data["quantity"]
        data["margin"] = data["extPrice"] - data["extCost"]

    def _after_addition_write(self, rec: _Rec) -> None:
        if self.bump_agreement_on_addition_write:
            parent = self.agreements.by_id[rec.data["agreementId"]]
            parent.touch(self._now())
            self.agreements.changed()


def _bisect_recs(recs: list[_Rec], page_id: int) -> int:
    lo, hi = 0, len(recs)
    while lo < hi:
        mid = (lo + hi) // 2
        if recs[mid].id <= page_id:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _one(rec: _Rec, fields: str | None) -> web.Response:
    return web.Response(text=rec.json(fields), content_type="application/json")


async def _read_patch(
    request: web.Request, resource: str, writable: dict[str, type | tuple[type, ...]]
) -> list[tuple[str, str, Any]] | web.Response:
    raw = await request.read()
    try:
        body = json.loads(raw or b"null", parse_float=Decimal)
    except ValueError:
        return _invalid(resource, "The request body is not valid JSON.", code="InvalidJson")
    if not isinstance(body, list):
        return _invalid(
            resource, "A PATCH body must be an array of patch operations.", code="InvalidPatch"
        )
    ops: list[tuple[str, str, Any]] = []
    for entry in body:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("op"), str)
            or not isinstance(entry.get("path"), str)
        ):
            return _invalid(
                resource, "Each patch operation needs op and path.", code="InvalidPatch"
            )
        op = entry["op"].lower()
        path = entry["path"].lstrip("/")
        if op not in ("add", "replace", "remove"):
            return _invalid(
                resource, f"Unsupported patch operation {entry['op']!r}.", path, "InvalidPatch"
            )
        if path not in writable:
            return _invalid(resource, f"{path} cannot be updated.", path, "ReadOnly")
        value = entry.get("value")
        if op != "remove" and (problems := _contract_value_problems(resource, path, value)):
            return _invalid(resource, problems[0], path, "InvalidValue")
        if op != "remove":
            if "value" not in entry:
                return _invalid(resource, f"{path} needs a value.", path, "Required")
            if (
                not isinstance(value, writable[path])
                or isinstance(value, bool)
                and bool not in _types(writable[path])
            ):
                return _invalid(resource, f"{path} has an invalid value.", path, "InvalidValue")
            if (
                isinstance(value, Decimal | int)
                and not isinstance(value, bool)
                and (value < 0 or value > Decimal("999999999"))
            ):
                return _invalid(resource, f"{path} is out of range.", path, "OutOfRange")
        ops.append((op, path, value))
    return ops


_CONTRACT_ENTITY = {"catalogItem": "CatalogItem", "agreementAddition": "Addition"}


def _contract_value_problems(resource: str, path: str, value: Any) -> list[str]:
    """A PATCH value checked against the entity's property in the published spec (type, enum,
    max length); PatchOperation.value itself is typed loosely there (contracts/README)."""
    contract = load("connectwise")
    prop = contract.schemas[_CONTRACT_ENTITY[resource]]["properties"].get(path)
    if prop is None:
        return [f"{path} is not a field of {resource}."]
    return check(contract.schemas, prop, value, path)


def _types(t: type | tuple[type, ...]) -> Iterable[type]:
    return t if isinstance(t, tuple) else (t,)


# ---- running it -------------------------------------------------------------------------------


@dataclass
class RunningSim:
    sim: ConnectWiseSim
    runner: web.AppRunner
    base_url: str  # the "site": what goes in config as `site`
    port: int

    @property
    def api_root(self) -> str:
        return f"{self.base_url}/{self.sim.codebase}apis/3.0"

    async def close(self) -> None:
        await self.runner.cleanup()

    async def __aenter__(self) -> RunningSim:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_connectwise_sim(
    dataset: Dataset,
    host: str = "127.0.0.1",
    port: int = 0,
    company: str = "acme",
    public_key: str = "pubkey0123456789",
    private_key: str = "privkey0123456789",
    client_id: str = "9f1c0d2e-4b7a-4d7e-9a51-3c2f6b8e1a00",
    codebase: str = "v2025_1/",
    knobs: Knobs | None = None,
) -> RunningSim:
    sim = ConnectWiseSim(
        dataset,
        company=company,
        public_key=public_key,
        private_key=private_key,
        client_id=client_id,
        codebase=codebase,
        knobs=knobs,
    )
    runner = web.AppRunner(sim.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    sockets = server_sockets(site)
    bound = sockets[0].getsockname()[1] if sockets else port
    return RunningSim(sim=sim, runner=runner, base_url=f"http://{host}:{bound}", port=bound)


def config_snippet(
    base_url: str, company: str, public_key: str, private_key: str, client_id: str
) -> str:
    # Settings live in a [psa.connectwise] table: config.py refuses other keys under [psa].
    return (
        "[psa]\n"
        'kind = "connectwise"\n'
        "\n[psa.connectwise]\n"
        f'site = "{base_url}"\n'
        f'company = "{company}"\n'
        f'public_key = "{public_key}"\n'
        f'private_key = "{private_key}"\n'
        f'client_id = "{client_id}"\n'
    )


def run_standalone(
    port: int = 8089,
    size: str = "demo",
    company: str = "acme",
    public_key: str = "pubkey0123456789",
    private_key: str = "privkey0123456789",
    client_id: str = "9f1c0d2e-4b7a-4d7e-9a51-3c2f6b8e1a00",
    host: str = "127.0.0.1",
    seed: int = 7,
) -> None:
    """Serve a simulated tenant until interrupted (``costrecond sim connectwise``)."""
    from costrecon_daemon.sim.dataset import generate

    serve_until_interrupted(
        lambda: start_connectwise_sim(
            generate(size, seed=seed),
            host=host,
            port=port,
            company=company,
            public_key=public_key,
            private_key=private_key,
            client_id=client_id,
        ),
        lambda running: (
            f"ConnectWise PSA simulator ({size} data set) listening on {running.base_url}\n"
            f"API root: {running.api_root}\nPut this in your costrecon config file:\n\n"
            + config_snippet(running.base_url, company, public_key, private_key, client_id)
        ),
    )
