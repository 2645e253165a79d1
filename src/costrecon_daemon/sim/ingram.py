"""A faithful fake Ingram Micro Xvantage Integration (XI) Reseller API v6
(reference/distributor-apis.md §2, checklist §2.11).

What it gets right, because the vendor source must cope with it:

- token on ``/oauth/oauth20/token`` by POST form *and* GET query (§2.3); ``expires_in`` is a
  **string** as the official SDK types it (knob: number); a wrong secret is 400 ``{"message"}``
  (knob ``bad_secret_style="fault"``: 401 with the gateway ``fault`` body); tokens live
  ``token_ttl`` seconds and :meth:`IngramSim.revoke_tokens` kills them;
- every ``/resellers/...`` call (also under ``/sandbox``) needs ``IM-CustomerNumber`` (≤ 10),
  ``IM-CountryCode`` (2) and ``IM-CorrelationID`` (≤ 32, enforced behind ``enforce_lengths``):
  400 ``errors[].fields[]`` naming each missing or bad header; another customer number gets the
  ``faultcode/faultstring`` body; the ``IM-*`` headers are echoed (§2.4);
- price and availability: ≤ 50 products per POST (51+ is 400), any identifier kind, the answer an
  array in request order with ``index``; an unknown part is ``productStatusCode: "E"`` with the
  double-spaced message and makes the whole answer **207**; ``customerPrice`` below ``retailPrice``
  in the country's currency; ``includePricing=false`` drops ``pricing``; knobs for the spec
  example's quirks (integer ``warehouseId``, ``pricing`` inside ``availability`` in 207 answers);
- catalogue search: one-based ``pageNumber``, ``pageSize`` ≤ 100, ``recordsFound``, next/previous
  links, booleans as strings, 404 ``No Records Found`` with a numeric error id (§2.6);
- ``X-RateLimit-Limit/Remaining/Reset`` on every answer; 60 GETs a minute per endpoint, a POST
  limit by knob; 429 ``{"errors":[{"field":null,"message":"too many requests"}]}`` (§2.8).

Data: the catalogue items the demo MSP buys from Ingram Micro (CrowdStrike, Cisco Duo/Umbrella/
Meraki, HP and Fortinet HaaS, Yubico, Lenovo...) keyed by their Ingram part number (the items'
vendor SKU) and manufacturer part number, plus products the MSP does not sell.
"""

from __future__ import annotations

import argparse
import math
import random
import secrets
import time
from collections import defaultdict, deque
from decimal import Decimal
from typing import Any

from aiohttp import web

from costrecon_daemon.psa.http import dumps, loads
from costrecon_daemon.sim.dataset import Dataset, SimItem, generate
from costrecon_daemon.sim.knobs import Knobs, RequestStats, fault_middleware
from costrecon_daemon.sim.serve import serve_on_loopback, serve_until_interrupted

__all__ = [
    "IngramSim",
    "RunningIngramSim",
    "config_snippet",
    "main",
    "run_standalone",
    "start_ingram_sim",
]

MAX_PNA_PRODUCTS = 50
MAX_SEARCH_PAGE = 100
CENT = Decimal("0.01")
CURRENCIES = {"US": "USD", "CA": "CAD", "GB": "GBP", "AU": "AUD", "NZ": "NZD", "DE": "EUR",
              "FR": "EUR", "NL": "EUR", "MX": "MXN", "IN": "INR", "SE": "SEK"}  # fmt: skip
# Rough price level per currency against USD, so a CA account sees CAD-looking prices.
FX = {
    "USD": Decimal("1"),
    "CAD": Decimal("1.37"),
    "GBP": Decimal("0.79"),
    "EUR": Decimal("0.92"),
    "AUD": Decimal("1.52"),
    "NZD": Decimal("1.66"),
    "MXN": Decimal("17.1"),
    "INR": Decimal("83.2"),
    "SEK": Decimal("10.4"),
}
REQUIRED_HEADERS = (
    ("IM-CustomerNumber", 10, None),
    ("IM-CountryCode", 2, 2),
    ("IM-CorrelationID", 32, None),
)
ECHOED = ("IM-CorrelationID", "IM-CountryCode", "IM-SenderID")

_OTHER = [
    (
        "APC",
        "Power",
        ["Back-UPS Pro 1500", "Smart-UPS 1500", "Smart-UPS 3000 RM", "NetShelter 42U"],
    ),
    ("Lenovo", "Notebooks", ["ThinkPad E14", "ThinkPad T14s", "ThinkPad X1 Carbon", "IdeaPad 5"]),
    ("HP", "Printers", ["LaserJet Pro 4001n", "Color LaserJet M479", "OfficeJet Pro 9125"]),
    ("Dell", "Monitors", ["P2423D", "P2723QE", "E2424HS", "S2721DS"]),
    ("Logitech", "Peripherals", ["MX Keys", "MX Master 3S", "C920 Webcam", "Zone Vibe 100"]),
    ("Cisco", "Networking", ["Catalyst 1000-24T", "Meraki MS120-8", "Meraki MR36", "CBS350-24P"]),
    (
        "Microsoft",
        "Software",
        ["Windows 11 Pro OEM", "Office Home & Business 2024", "Surface Dock 2"],
    ),
    ("Samsung", "Storage", ["990 PRO 1TB", "870 EVO 2TB", "T7 Shield 2TB"]),
    ("Fortinet", "Security", ["FortiGate 40F", "FortiGate 80F", "FortiAP 231G"]),
    ("Jabra", "Audio", ["Evolve2 55", "Evolve2 65", "Speak2 75"]),
]


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=dumps(payload), status=status, content_type="application/json", headers=headers
    )


def validation_error(fields: list[dict[str, Any]], message: str = "Validation failed") -> dict:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000-08:00")
    return {
        "errors": [
            {
                "id": f"C{secrets.randbelow(900) + 100}-bw0a10u3-{stamp}",
                "type": "/errors/validation-failed",
                "message": message,
                "fields": fields,
            }
        ]
    }


class IngramSim:
    """The fake Ingram Micro reseller account. Start with :func:`start_ingram_sim`."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        client_id: str = "im-sim-client-4b2e9c",
        client_secret: str = "im-sim-secret-Vn72pQ0x",
        customer_number: str = "20-222222",
        extra_products: int = 300,
        token_ttl: float = 86400,
        expires_in_as_string: bool = True,
        bad_secret_style: str = "400",
        get_requests_per_minute: int | None = 60,
        post_requests_per_minute: int | None = None,
        rate_window: float = 60.0,
        enforce_lengths: bool = True,
        warehouse_id_as_int: bool = False,
        pricing_inside_availability: bool = False,
        trailing_comma_429: bool = False,
        knobs: Knobs | None = None,
        seed: int = 7,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.customer_number = customer_number
        self.token_ttl = token_ttl
        self.expires_in_as_string = expires_in_as_string
        self.bad_secret_style = bad_secret_style
        self.get_limit = get_requests_per_minute
        self.post_limit = post_requests_per_minute
        self.rate_window = rate_window  # seconds; tests shorten the documented minute
        self.rate_limited = 0  # 429s the per-endpoint limiter answered
        self.enforce_lengths = enforce_lengths
        self.warehouse_id_as_int = warehouse_id_as_int
        self.pricing_inside_availability = pricing_inside_availability
        self.trailing_comma_429 = trailing_comma_429
        self.knobs = knobs or Knobs(seed=seed)
        self.request_stats = RequestStats()
        self.base_url = ""
        self.tokens: dict[str, float] = {}
        self.token_requests = 0
        self.pna_batches: list[int] = []  # products per P&A call, in arrival order
        self.correlation_ids: list[str] = []
        self.products: list[dict[str, Any]] = []
        self.by_ipn: dict[str, dict[str, Any]] = {}
        self.by_vpn: dict[str, dict[str, Any]] = {}
        self.by_upc: dict[str, dict[str, Any]] = {}
        self.sold: dict[int, str] = {}  # dataset item id -> Ingram part number
        self._windows: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._rng = random.Random(seed * 104729 + 3)
        self._load(dataset, extra_products)

    # ---- data ----------------------------------------------------------------------------

    def _add(self, product: dict[str, Any]) -> None:
        self.products.append(product)
        self.by_ipn[product["ingramPartNumber"].upper()] = product
        self.by_vpn[product["vendorPartNumber"].upper()] = product
        self.by_upc[product["upc"]] = product

    def _upc(self) -> str:
        return f"{self._rng.randrange(10**11, 10**12)}"

    def _sold_item(self, it: SimItem) -> None:
        rng = self._rng
        drift = Decimal(1)
        if rng.random() < 0.3:
            drift = Decimal(rng.choice([96, 102, 104, 106, 109])) / 100
        cost = (it.cost * drift).quantize(CENT)
        product: dict[str, Any] = {
            "ingramPartNumber": it.vendor_sku,
            "vendorPartNumber": it.mpn or it.vendor_sku,
            "upc": self._upc(),
            "vendorName": (it.manufacturer or "Ingram Micro").upper(),
            "vendorNumber": f"{rng.randrange(1000, 9999)}",
            "description": it.name.upper()[:60],
            "category": it.category,
            "productType": "IM::digital" if it.recurring else "IM::physical",
            "usd_cost": cost,
            "usd_retail": (cost * Decimal(118 + rng.randrange(0, 40)) / 100).quantize(CENT),
            "priced": True,
            "discontinued": False,
        }
        self._add(product)
        self.sold[it.id] = product["ingramPartNumber"]

    def _other(self, n: int) -> None:
        rng = self._rng
        vendor, category, models = _OTHER[n % len(_OTHER)]
        model = models[(n // len(_OTHER)) % len(models)]
        cost = Decimal(rng.randrange(900, 250000)) / 100
        product: dict[str, Any] = {
            "ingramPartNumber": f"{rng.choice('0123456789ABCDEFGHJK')}"
            f"{rng.randrange(10000, 99999)}",
            "vendorPartNumber": f"{vendor[:2].upper()}{rng.randrange(100000, 999999)}",
            "upc": self._upc(),
            "vendorName": vendor.upper(),
            "vendorNumber": f"{rng.randrange(1000, 9999)}",
            "description": f"{vendor} {model} #{n}".upper(),
            "category": category,
            "productType": "IM::physical",
            "usd_cost": cost,
            "usd_retail": (cost * Decimal("1.25")).quantize(CENT),
            # A discontinued line is still in the catalogue but has no price any more.
            "priced": rng.random() >= 0.04,
            "discontinued": False,
        }
        product["discontinued"] = not product["priced"]
        if product["ingramPartNumber"].upper() in self.by_ipn:
            return
        self._add(product)

    def _load(self, ds: Dataset, extra: int) -> None:
        for it in ds.items:
            if it.vendor_name == "Ingram Micro" and it.vendor_sku:
                self._sold_item(it)
        for n in range(extra):
            self._other(n)
        self._rng.shuffle(self.products)

    # ---- in-process control for tests ------------------------------------------------------

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def fail_next(self, count: int = 1, kind: str = "503") -> None:
        self.knobs.fail_next(count, kind)

    def unprice(self, ingram_part_number: str) -> None:
        self.by_ipn[ingram_part_number.upper()]["priced"] = False

    # ---- the app -------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                self._rate_headers,
                fault_middleware(self.knobs, self.request_stats, self._shape),
            ]
        )
        r = app.router
        for prefix in ("", "/sandbox"):
            r.add_route("*", f"{prefix}/oauth/oauth20/token", self._token)
            r.add_route("*", f"{prefix}/oauth/oauth30/token", self._token)
            r.add_post(f"{prefix}/resellers/v6/catalog/priceandavailability", self._pna)
            r.add_get(f"{prefix}/resellers/v6/catalog", self._search)
            r.add_get(f"{prefix}/resellers/v6/catalog/details/{{ipn}}", self._details)
        return app

    def _too_many(self, reset: int) -> web.Response:
        # No Retry-After: the wait is told by X-RateLimit-Reset (epoch seconds), added by
        # _rate_headers (§2.8 CONFLICT: the page also speaks of seconds; the example is an epoch).
        headers: dict[str, str] = {}
        if self.trailing_comma_429:
            # The documented example body is invalid JSON (a trailing comma, §2.8).
            return web.Response(
                status=429,
                text='{"errors": [{"field": null, "message": "too many requests"},]}',
                content_type="application/json",
                headers=headers,
            )
        return _json({"errors": [{"field": None, "message": "too many requests"}]}, 429, headers)

    def _shape(self, status: int, retry_after: int | None) -> web.Response:
        if status == 429:
            return self._too_many(int(time.time()) + (retry_after or 1))  # reset is re-stamped
        body = {
            "errors": [
                {
                    "id": f"C500-{secrets.token_hex(4)}",
                    "type": "/errors/system-errors",
                    "message": "Some unexpected error occured, please contact support team for "
                    "more details.",
                    "fields": [],
                }
            ]
        }
        return _json(body, status)

    @web.middleware
    async def _rate_headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Per-endpoint, per-method minute windows; ``X-RateLimit-*`` on every answer (§2.8)."""
        resource = request.match_info.route.resource
        endpoint = resource.canonical if resource else request.path
        limit = self.get_limit if request.method == "GET" else self.post_limit
        if "/oauth/" in endpoint:
            limit = None  # token calls are not counted by this limiter (UNCERTAIN)
        now = time.time()
        window = self._windows[(request.method, endpoint)]
        while window and now - window[0] >= self.rate_window:
            window.popleft()
        reset = math.ceil((window[0] if window else now) + self.rate_window)
        shown_limit = limit if limit is not None else 500
        if limit is not None and len(window) >= limit:
            resp: web.StreamResponse = self._too_many(reset)
            remaining = 0
            self.rate_limited += 1
        else:
            if limit is not None:
                window.append(now)
            resp = await handler(request)
            remaining = max(0, shown_limit - len(window))
            if resp.status == 429:  # an injected storm (knobs): come back in a second
                reset, remaining = int(now) + self.knobs.retry_after, 0
        resp.headers["X-RateLimit-Limit"] = str(shown_limit)
        resp.headers["X-RateLimit-Remaining"] = str(remaining)
        resp.headers["X-RateLimit-Reset"] = str(reset)
        for name in ECHOED:
            if name in request.headers and "/oauth/" not in endpoint:
                resp.headers[name] = request.headers[name]
        return resp

    async def _token(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "POST"):
            return web.Response(status=405)
        self.token_requests += 1
        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        if params.get("grant_type") != "client_credentials":
            return _json({"message": "Invalid grant_type"}, 400)
        if (
            params.get("client_id") != self.client_id
            or params.get("client_secret") != self.client_secret
        ):
            if self.bad_secret_style == "fault":
                body = {
                    "fault": {
                        "faultstring": "Invalid client identifier {0}",
                        "detail": {"errorcode": "oauth.v2.InvalidClientIdentifier"},
                    }
                }
                return _json(body, 401)
            return _json({"message": "Invalid client identifier"}, 400)
        token = secrets.token_urlsafe(21)
        self.tokens[token] = time.monotonic() + self.token_ttl
        claimed = int(min(self.token_ttl, 86399))
        return _json(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": str(claimed) if self.expires_in_as_string else claimed,
            }
        )

    def _check(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        expiry = self.tokens.get(token)
        if expiry is None or expiry <= time.monotonic():
            self.tokens.pop(token, None)
            body = {
                "fault": {
                    "faultstring": "Invalid Access Token",
                    "detail": {"errorcode": "keymanagement.service.invalid_access_token"},
                }
            }
            return _json(body, 401)
        fields = []
        for name, longest, shortest in REQUIRED_HEADERS:
            value = request.headers.get(name, "")
            if not value:
                fields.append({"field": name, "value": "", "message": "Required field is missing"})
            elif self.enforce_lengths and (
                len(value) > longest or (shortest is not None and len(value) < shortest)
            ):
                want = f"exactly {shortest}" if shortest else f"at most {longest}"
                fields.append(
                    {"field": name, "value": value, "message": f"Must be {want} characters"}
                )
        if fields:
            return _json(validation_error(fields), 400)
        if request.headers["IM-CustomerNumber"] != self.customer_number:
            # UNCERTAIN: the status for this body is not documented (§2.4); 400 is the safe guess.
            return _json(
                {"faultcode": "Server",
                 "faultstring": "Invalid customer number. The customer number provided on the API "
                 "call does not match the registered customer number."},
                400,
            )  # fmt: skip
        self.correlation_ids.append(request.headers["IM-CorrelationID"])
        return None

    @staticmethod
    def _flag(request: web.Request, name: str) -> bool | None:
        raw = request.query.get(name)
        if raw is None:
            return None
        return raw.lower() == "true"

    def _currency(self, request: web.Request) -> str:
        return CURRENCIES.get(request.headers.get("IM-CountryCode", "US").upper(), "USD")

    def _find(self, wanted: dict[str, Any]) -> tuple[dict[str, Any] | None, str, str]:
        tables: dict[str, dict[str, dict[str, Any]]] = {
            "ingramPartNumber": self.by_ipn,
            "vendorPartNumber": self.by_vpn,
            "upc": self.by_upc,
            "customerPartNumber": {},  # needs a cross-reference set up with Ingram (§2.5)
        }
        for key, table in tables.items():
            value = wanted.get(key)
            if value:
                return table.get(str(value).upper()), key, str(value)
        return None, "ingramPartNumber", ""

    async def _pna(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        availability = self._flag(request, "includeAvailability")
        pricing = self._flag(request, "includePricing")
        missing = [
            {"field": n, "value": "", "message": "Required field is missing"}
            for n, v in (("includeAvailability", availability), ("includePricing", pricing))
            if v is None
        ]
        if missing:
            return _json(validation_error(missing), 400)
        try:
            body = loads(await request.read() or b"null")
        except ValueError:
            return _json(validation_error([], "Request body is not valid JSON"), 400)
        products = body.get("products") if isinstance(body, dict) else None
        if not isinstance(products, list) or not products:
            return _json(
                validation_error(
                    [{"field": "products", "value": "", "message": "Required field is missing"}]
                ),
                400,
            )
        if len(products) > MAX_PNA_PRODUCTS:
            # UNCERTAIN (§2.5): the limit is documented, the answer above it is not.
            return _json(
                validation_error(
                    [{"field": "products", "value": str(len(products)),
                      "message": f"A maximum of {MAX_PNA_PRODUCTS} products is allowed"}]
                ),
                400,
            )  # fmt: skip
        self.pna_batches.append(len(products))
        currency = self._currency(request)
        answer: list[dict[str, Any]] = []
        partial = False
        for index, wanted in enumerate(products):
            product, key, value = self._find(wanted if isinstance(wanted, dict) else {})
            if product is None:
                partial = True
                label = {
                    "ingramPartNumber": "IngramPartNumber",
                    "vendorPartNumber": "VendorPartNumber",
                    "upc": "UPC",
                    "customerPartNumber": "CustomerPartNumber",
                }[key]
                answer.append(
                    {
                        "index": index,
                        "productStatusCode": "E",
                        # The double space is the spec example's (§2.5).
                        "productStatusMessage": f"Product not found for {label}:  {value}",
                        key: value,
                    }
                )
                continue
            answer.append(self._element(index, product, currency, availability, pricing, partial))
        if partial and self.pricing_inside_availability:
            for el in answer:
                if "pricing" in el and isinstance(el.get("availability"), dict):
                    el["availability"]["pricing"] = el.pop("pricing")
        return _json(answer, 207 if partial else 200)

    def _element(
        self,
        index: int,
        product: dict[str, Any],
        currency: str,
        availability: bool | None,
        pricing: bool | None,
        partial: bool,
    ) -> dict[str, Any]:
        rng = self._rng
        el: dict[str, Any] = {
            "index": index,
            "productStatusMessage": "ACOPS ARE AVAILABLE FOR THIS CUSTOMER AND SKU",
            "ingramPartNumber": product["ingramPartNumber"],
            "vendorPartNumber": product["vendorPartNumber"],
            "extendedVendorPartNumber": product["vendorPartNumber"],
            "upc": product["upc"],
            "partNumberType": "Ingram Part Number",
            "vendorNumber": product["vendorNumber"],
            "vendorName": product["vendorName"],
            "description": product["description"],
            "productClass": "C" if product["discontinued"] else "A",
            "uom": "EA",
            "productStatus": "Discontinued" if product["discontinued"] else "Active",
            "acceptBackOrder": True,
            "productAuthorized": True,
            "returnableProduct": product["productType"] == "IM::physical",
            "endUserInfoRequired": product["productType"] == "IM::digital",
            "govtSpecialPriceAvailable": False,
            "bundlePartIndicator": False,
        }
        if pricing:
            fx = FX.get(currency, Decimal(1))
            priced = product["priced"]
            el["pricing"] = {
                "currencyCode": currency,
                "retailPrice": (product["usd_retail"] * fx).quantize(CENT) if priced else None,
                "mapPrice": Decimal(0),
                "customerPrice": (product["usd_cost"] * fx).quantize(CENT) if priced else None,
                "specialBidPricingAvailable": False,
                "webDiscountsAvailable": False,
            }
        if availability:
            qty = rng.randrange(0, 400)
            warehouse: Any = 40 if self.warehouse_id_as_int else "40"
            el["availability"] = {
                "available": qty > 0,
                "totalAvailability": qty,
                "availabilityByWarehouse": [
                    {
                        "location": "Mira Loma, CA",
                        "warehouseId": warehouse,
                        "quantityAvailable": qty,
                        "quantityBackordered": 0,
                        "quantityBackorderedEta": None,
                        "quantityOnOrder": 0,
                        "backOrderInfo": [],
                    }
                ],
            }
        return el

    async def _search(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        q = request.query
        try:
            page = int(q.get("pageNumber", "1"))
            size = int(q.get("pageSize", "25"))
        except ValueError:
            return _json(
                validation_error(
                    [{"field": "pageNumber", "value": "", "message": "Must be a number"}]
                ),
                400,
            )
        if page < 1 or not 1 <= size <= MAX_SEARCH_PAGE:
            return _json(
                validation_error(
                    [
                        {
                            "field": "pageSize",
                            "value": str(size),
                            "message": f"pageSize must be between 1 and {MAX_SEARCH_PAGE}",
                        }
                    ]
                ),
                400,
            )
        rows = self.products
        keywords = [k.casefold() for k in q.getall("keyword", [])]
        vendors = [v.casefold() for v in q.getall("vendor", [])]
        vpns = [v.upper() for v in q.getall("vendorPartNumber", [])]
        if keywords:
            rows = [
                p
                for p in rows
                if all(
                    any(
                        k in str(p[f]).casefold()
                        for f in (
                            "ingramPartNumber",
                            "vendorPartNumber",
                            "description",
                            "vendorName",
                        )
                    )
                    for k in keywords
                )
            ]
        if vendors:
            rows = [p for p in rows if p["vendorName"].casefold() in vendors]
        if vpns:
            rows = [p for p in rows if p["vendorPartNumber"].upper() in vpns]
        if not rows:
            return _json(
                {
                    "errors": [
                        {"id": 123, "type": "Validation error", "message": "No Records Found"}
                    ]
                },
                404,
            )
        total = len(rows)
        chunk = rows[(page - 1) * size : page * size]
        base = f"/resellers/v6/catalog?pageSize={size}"
        for k in q.getall("keyword", []):
            base += f"&keyword={k}"
        out: dict[str, Any] = {
            "recordsFound": total,
            "pageSize": size,
            "pageNumber": page,
            "catalog": [self._catalog_row(p) for p in chunk],
        }
        if page < math.ceil(total / size):
            out["nextPage"] = f"{base}&pageNumber={page + 1}"
        if page > 1:
            out["previousPage"] = f"{base}&pageNumber={page - 1}"
        return _json(out)

    @staticmethod
    def _catalog_row(p: dict[str, Any]) -> dict[str, Any]:
        # Booleans come back as strings in search results (§2.6).
        return {
            "description": p["description"],
            "category": p["category"],
            "subCategory": "",
            "productType": "P" if p["productType"] == "IM::physical" else "D",
            "ingramPartNumber": p["ingramPartNumber"],
            "vendorPartNumber": p["vendorPartNumber"],
            "upcCode": p["upc"],
            "vendorName": p["vendorName"],
            "endUserRequired": "true" if p["productType"] == "IM::digital" else "false",
            "hasDiscounts": "false",
            "type": "IM::Physical" if p["productType"] == "IM::physical" else "IM::Digital",
            "discontinued": "true" if p["discontinued"] else "false",
            "newProduct": "false",
            "directShip": "",
            "hasWarranty": "false",
            "authorizedToPurchase": "true",
            "links": [
                {
                    "topic": "priceAndAvailability",
                    "href": "/resellers/v6/catalog/priceandavailability",
                    "type": "POST",
                }
            ],
        }

    async def _details(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        product = self.by_ipn.get(request.match_info["ipn"].upper())
        if product is None:
            return _json(
                {
                    "errors": [
                        {"id": "404", "type": "/errors/not-found", "message": "Product not found"}
                    ]
                },
                404,
            )
        return _json(
            {
                "ingramPartNumber": product["ingramPartNumber"],
                "vendorPartNumber": product["vendorPartNumber"],
                "description": product["description"],
                "upc": product["upc"],
                "productCategory": product["category"],
                "vendorName": product["vendorName"],
                "vendorNumber": product["vendorNumber"],
                "productStatusCode": "D" if product["discontinued"] else "A",
            }
        )


# ---- starting it ----------------------------------------------------------------------------


class RunningIngramSim(IngramSim):
    _runner: web.AppRunner

    async def close(self) -> None:
        await self._runner.cleanup()


async def start_ingram_sim(
    dataset: Dataset | None = None, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> RunningIngramSim:
    """Serve a fake Ingram Micro account on loopback; ``base_url`` is the host root."""
    sim = RunningIngramSim(dataset if dataset is not None else generate("demo"), **options)
    await serve_on_loopback(sim, host, port, "")
    return sim


def config_snippet(sim: IngramSim) -> str:
    """The ``[vendors.ingram]`` TOML block that points costrecond at this sim."""
    return (
        "[vendors.ingram]\n"
        f'base_url = "{sim.base_url}"\n'
        f'client_id = "{sim.client_id}"\n'
        f'client_secret = "{sim.client_secret}"\n'
        f'customer_number = "{sim.customer_number}"\n'
        'country_code = "US"\n'
    )


def run_standalone(
    port: int = 8094, size: str = "demo", seed: int = 7, host: str = "127.0.0.1", **options: Any
) -> None:
    """Serve until interrupted; print the base URL and config snippet (``costrecond sim
    ingram``)."""
    serve_until_interrupted(
        lambda: start_ingram_sim(
            generate(size, seed=seed), host=host, port=port, seed=seed, **options
        ),
        lambda sim: (
            f"Ingram Micro simulator ({len(sim.products)} products) listening on {sim.base_url}\n"
            f"Add this to your costrecon config (or set COSTRECON_INGRAM_CLIENT_ID and "
            f"COSTRECON_INGRAM_CLIENT_SECRET):\n\n{config_snippet(sim)}"
        ),
    )


def build_parser(prog: str = "costrecond sim ingram") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Serve a faithful fake Ingram Micro XI API.")
    p.add_argument("--port", type=int, default=8094, help="loopback port (default 8094)")
    p.add_argument("--size", default="demo", choices=["tiny", "demo", "large"])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--extra-products", type=int, default=300, help="products the MSP does not sell")
    p.add_argument("--client-id", help="client id the simulator accepts")
    p.add_argument("--client-secret", help="client secret the simulator accepts")
    p.add_argument("--customer-number", help="IM-CustomerNumber the simulator accepts")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    return p


def main(argv: list[str] | None = None) -> int:
    """``costrecond sim ingram --port P``: the CLI hands its remaining arguments here."""
    args = build_parser().parse_args(argv)
    options: dict[str, Any] = {"extra_products": args.extra_products}
    for name in ("client_id", "client_secret", "customer_number"):
        if getattr(args, name):
            options[name] = getattr(args, name)
    if args.latency:
        options["knobs"] = Knobs(latency=args.latency, seed=args.seed)
    run_standalone(port=args.port, size=args.size, seed=args.seed, **options)
    return 0
