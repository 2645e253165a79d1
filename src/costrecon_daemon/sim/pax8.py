"""A faithful fake Pax8 Partner API v1 (reference/distributor-apis.md §1, checklist §1.15).

What it gets right, because the vendor source must cope with it:

- ``POST /v1/token`` (also ``/oauth/token``) with a JSON body in which ``client_id``,
  ``client_secret``, ``audience`` and ``grant_type`` are all required; anything wrong is 401
  ``{"error":"access_denied","error_description":"Unauthorized"}`` (§1.2). The answer always says
  ``expires_in: 86400``; the ``token_ttl`` knob makes tokens die sooner than they claim, and
  :meth:`Pax8Sim.revoke_tokens` kills them at once, so a client must survive a 401 mid-pull;
- token calls spend the same 1,000-requests-per-minute budget as business calls (§1.11); above it,
  429 in the error envelope, ``Retry-After`` only when the knob says so (not documented);
- zero-based paging with ``size`` default 10, at most 200: ``size_policy`` decides what a larger
  size does ("clamp" and report 200, "honour", or "reject" with 400) because the real behaviour is
  unknown (§1.4); a page past the end has empty ``content`` and the same totals;
- ``GET /products/{id}/pricing`` answers ``{"content": [...]}`` with no ``page``: one entry per
  billing/commitment term (Monthly/Monthly, Monthly/1-Year, Annual/1-Year, 3-Year, One-Time),
  multi-band Volume/Tiered rates with open-ended last bands and 3-decimal rates; some products have
  no pricing and answer 404 in the error envelope (§1.6). ``charge_type_spelling`` switches the
  ``chargeType`` words between the spec's ``Per Unit`` and a client library's ``per_unit``;
- ``/subscriptions`` and ``/companies`` (one company per PSA customer, one subscription per live
  contract line selling a Pax8 product) with ``currencyCode``, ``partnerCost`` or only ``price``
  by knob, ``commitmentTerm`` null for monthly or the legacy ``commitment`` name by knob, and
  timestamps mixing ``Z``, ``-05:00``, ``-0700`` and bare dates (§1.7, §1.12);
- every error is ``{type, message, instance, status, details}`` with ``instance`` under
  ``/public/v1/`` (§1.10).

Data: every catalogue item the demo MSP buys through Pax8 (the Microsoft NCE items, Acronis,
SentinelOne, Proofpoint, DNSFilter, Keeper, Adobe...) is a Pax8 product, priced near the item's
catalogue cost with a realistic share of increases, next to products the MSP does not sell.
"""

from __future__ import annotations

import argparse
import base64
import contextvars
import json
import math
import random
import secrets
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from aiohttp import web

from costrecon_daemon.psa.http import dumps
from costrecon_daemon.sim.dataset import Dataset, SimItem, generate
from costrecon_daemon.sim.knobs import Knobs, RequestStats, fault_middleware
from costrecon_daemon.sim.serve import serve_on_loopback, serve_until_interrupted

__all__ = [
    "Pax8Sim",
    "RunningPax8Sim",
    "config_snippet",
    "main",
    "run_standalone",
    "start_pax8_sim",
]

AUDIENCES = ("https://api.pax8.com", "api://p8p.client", "api://provisioning", "api://usage")
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 10
TOKEN_CLAIMED_TTL = 86400  # the spec's only allowed expires_in (§1.2)
RATE = Decimal("0.001")
CENT = Decimal("0.01")

_path: contextvars.ContextVar[str] = contextvars.ContextVar("pax8_sim_path", default="/")

# Products a Pax8 partner can buy but this MSP does not sell: (vendor, families, editions, unit).
_OTHER_VENDORS = [
    (
        "Microsoft",
        ["Dynamics 365", "Windows 365", "Power Apps", "Copilot", "Defender for Endpoint"],
        ["Business", "Enterprise", "Plan 1", "Plan 2", "Premium"],
        "User",
    ),
    (
        "Acronis",
        ["Cyber Protect", "Cyber Files Cloud", "Cyber Disaster Recovery"],
        ["Standard", "Advanced", "per GB", "Workload"],
        "Each",
    ),
    (
        "Bitdefender",
        ["GravityZone", "GravityZone Email Security"],
        ["Business", "Elite", "Ultra"],
        "Each",
    ),
    (
        "Dropsuite",
        ["Backup for Microsoft 365", "Email Archiving"],
        ["Standard", "Professional"],
        "User",
    ),
    ("Egnyte", ["Business", "Enterprise Lite"], ["Monthly", "Pro"], "User"),
    ("ESET", ["PROTECT", "PROTECT Mail"], ["Entry", "Advanced", "Complete"], "Each"),
    ("Intermedia", ["Unite", "SecuriSync"], ["Pro", "Enterprise"], "User"),
    ("Sophos", ["Intercept X", "Central Email"], ["Essentials", "Advanced", "XDR"], "Each"),
    ("Nerdio", ["Manager for MSP"], ["Core", "Premium"], "User"),
    ("Zoom", ["Workplace", "Phone"], ["Pro", "Business", "Business Plus"], "User"),
    ("Dropbox", ["Business", "Business Plus"], ["Standard", "Advanced"], "User"),
    ("Barracuda", ["Email Protection", "Cloud-to-Cloud Backup"], ["Advanced", "Premium"], "User"),
    ("Cisco", ["Webex Suite", "Secure Email"], ["Meet", "Call", "Advantage"], "User"),
    (
        "SentinelOne",
        ["Singularity Identity", "Singularity Cloud Workload"],
        ["Core", "Plus"],
        "Each",
    ),
    ("Proofpoint", ["Essentials Archive", "Security Awareness"], ["Standard", "Plus"], "User"),
]


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=dumps(payload), status=status, content_type="application/json", headers=headers
    )


def error_body(status: int, kind: str, message: str, path: str) -> dict[str, Any]:
    """Pax8's error envelope (§1.10); ``instance`` shows the internal ``/public/v1`` prefix."""
    tail = path.split("/v1", 1)[-1] if "/v1" in path else path
    return {
        "type": kind,
        "message": message,
        "instance": f"/public/v1{tail}",
        "status": status,
        "details": [],
    }


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _rate(value: Decimal) -> Decimal:
    return value.quantize(RATE)


def _srp(buy: Decimal, rng: random.Random) -> Decimal:
    return (buy * Decimal(108 + rng.randrange(0, 15)) / 100).quantize(CENT)


class Pax8Sim:
    """The fake Pax8 partner account. Start with :func:`start_pax8_sim`."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        client_id: str = "pax8-sim-client-7d3f",
        client_secret: str = "pax8-sim-secret-Qm81vX2kLp",
        extra_products: int = 400,
        requests_per_minute: int | None = 1000,
        token_ttl: float = TOKEN_CLAIMED_TTL,
        size_policy: str = "clamp",
        charge_type_spelling: str = "spec",
        send_retry_after: bool = False,
        currency: str = "USD",
        subscription_cost_field: str = "partnerCost",
        legacy_commitment_name: bool = False,
        knobs: Knobs | None = None,
        seed: int = 7,
    ) -> None:
        if size_policy not in ("clamp", "honour", "reject"):
            raise ValueError("size_policy must be clamp, honour or reject")
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.size_policy = size_policy
        self.charge_type_spelling = charge_type_spelling
        self.knobs = knobs or Knobs(seed=seed)
        # §1.11: 1,000 requests a minute, token calls included; no Retry-After documented.
        self.knobs.rate_limit = requests_per_minute
        self.knobs.rate_window = 60.0
        self.knobs.send_retry_after = send_retry_after
        self.request_stats = RequestStats()
        self.base_url = ""
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.token_requests = 0
        self.products: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}
        self.pricing: dict[str, list[dict[str, Any]]] = {}
        self.sold: dict[int, str] = {}  # dataset item id -> Pax8 product id
        self.currency = currency
        # §1.7 CONFLICT: "partnerCost" (the spec) or only "price" (Pax8's CLI reads it as cost).
        self.subscription_cost_field = subscription_cost_field
        self.legacy_commitment_name = legacy_commitment_name  # "commitment" instead (§1.7)
        self.companies: list[dict[str, Any]] = []
        self.subscriptions: list[dict[str, Any]] = []
        self._rng = random.Random(seed * 7919 + 11)
        self._load(dataset, extra_products)

    # ---- data ----------------------------------------------------------------------------

    def _add(self, product: dict[str, Any], pricing: list[dict[str, Any]] | None) -> None:
        self.products.append(product)
        self.by_id[product["id"]] = product
        if pricing is not None:
            for p in pricing:
                p["productId"] = product["id"]
                p["productName"] = product["name"]
            self.pricing[product["id"]] = pricing

    def _entry(
        self,
        billing: str,
        commitment: str,
        months: int,
        bands: Sequence[tuple[int, int | None, Decimal]],
        *,
        kind: str = "Flat",
        unit: str = "User",
        charge: str = "Per Unit",
    ) -> dict[str, Any]:
        rng = self._rng
        return {
            "billingTerm": billing,
            "commitmentTerm": commitment,
            "commitmentTermInMonths": months,
            "type": kind,
            "unitOfMeasurement": unit,
            "rates": [
                {
                    "partnerBuyRate": _rate(buy),
                    "suggestedRetailPrice": _srp(buy, rng),
                    "startQuantityRange": start,
                    "endQuantityRange": end,
                    "chargeType": charge,
                }
                for start, end, buy in bands
            ],
        }

    def _drift(self) -> Decimal:
        # A quarter of the products moved since the MSP last set its catalogue cost.
        if self._rng.random() < 0.25:
            return Decimal(103 + self._rng.randrange(0, 6)) / 100
        return Decimal(1)

    def _microsoft(self, monthly: SimItem, annual: SimItem | None) -> None:
        rng = self._rng
        drift = self._drift()
        name = monthly.name.replace(" (NCE Monthly)", "").replace(" (NCE Annual)", "")
        # UNCERTAIN (§1.5): the spec's Microsoft vendorSku example is a GUID (legacy CSP offer);
        # for NCE products we put the ProductId:SkuId there, which is what MSPs keep as MPN, and
        # the legacy GUID in the deprecated altVendorSku.
        product: dict[str, Any] = {
            "id": _uuid(rng),
            "name": name,
            "vendorName": "Microsoft",
            "shortDescription": f"{name} (New Commerce Experience)",
            "sku": monthly.vendor_sku,
            "vendorSku": monthly.mpn,
            "altVendorSku": _uuid(rng).upper(),
            "requiresCommitment": True,
        }
        month_rate = monthly.cost * drift
        year_rate = (annual.cost if annual else monthly.cost / Decimal("1.2")) * drift
        pricing = [
            self._entry("Monthly", "Monthly", 1, [(1, None, month_rate)]),
            # Annual commitment billed monthly: +5 % over annual billing (§4 NCE facts).
            self._entry("Monthly", "1-Year", 12, [(1, None, year_rate * Decimal("1.05"))]),
            self._entry("Annual", "1-Year", 12, [(1, None, year_rate * 12)]),
        ]
        if rng.random() < 0.4:
            pricing.append(self._entry("3-Year", "3-Year", 36, [(1, None, year_rate * 36)]))
        self._add(product, pricing)
        self.sold[monthly.id] = product["id"]
        if annual is not None:
            self.sold[annual.id] = product["id"]

    def _third_party(self, it: SimItem) -> None:
        rng = self._rng
        drift = self._drift()
        base = it.cost * drift
        unit = "User" if "user" in it.name.lower() or "seat" in it.name.lower() else "Each"
        product: dict[str, Any] = {
            "id": _uuid(rng),
            "name": it.name,
            "vendorName": it.manufacturer or "Pax8",
            "shortDescription": it.description[:120],
            "sku": it.vendor_sku,
            "vendorSku": it.mpn or "",
            "requiresCommitment": False,
        }
        pricing: list[dict[str, Any]] = []
        roll = rng.random()
        if roll < 0.45:
            # Volume: the band holding the total quantity prices every unit (UNCERTAIN, §1.6).
            bands = [
                (1, 99, base),
                (100, 499, base * Decimal("0.92")),
                (500, None, base * Decimal("0.85")),
            ]
            pricing.append(self._entry("Monthly", "Monthly", 1, bands, kind="Volume", unit=unit))
        else:
            pricing.append(self._entry("Monthly", "Monthly", 1, [(1, None, base)], unit=unit))
        if roll > 0.6:
            yearly = base * 12 * Decimal("0.95")
            bands = [(1, 50, yearly), (51, None, yearly * Decimal("0.9"))]
            pricing.append(self._entry("Annual", "1-Year", 12, bands, kind="Tiered", unit=unit))
        if roll > 0.85:
            fee = Decimal(25 + rng.randrange(0, 200))
            pricing.append(
                self._entry(
                    "One-Time", "One-Time", 0, [(0, None, fee)], unit="Each", charge="Flat Rate"
                )
            )
        self._add(product, pricing)
        self.sold[it.id] = product["id"]

    def _other(self, n: int) -> None:
        rng = self._rng
        vendor, families, editions, unit = _OTHER_VENDORS[n % len(_OTHER_VENDORS)]
        family = families[(n // len(_OTHER_VENDORS)) % len(families)]
        edition = editions[(n // 7) % len(editions)]
        name = f"{vendor} {family} {edition} #{1000 + n}"
        code = "".join(w[0] for w in f"{vendor} {family}".split() if w[0].isalnum()).upper()
        legacy_ms = vendor == "Microsoft"
        product: dict[str, Any] = {
            "id": _uuid(rng),
            "name": name,
            "vendorName": vendor,
            "shortDescription": f"{vendor} {family} - {edition}",
            "sku": f"{code[:3]}-{code[3:6] or 'GEN'}-{1000 + n}-C100",
            # Legacy Microsoft products carry the GUID-like vendorSku of the spec's example.
            "vendorSku": _uuid(rng).upper()
            if legacy_ms
            else f"{code}{rng.randrange(10000, 99999)}",
            "requiresCommitment": rng.random() < 0.2,
        }
        if rng.random() < 0.06:
            # Pricing is not available for every product (arrears-billed, quote-only): 404.
            self._add(product, None)
            return
        buy = Decimal(rng.randrange(40, 9000)) / 100 + Decimal(rng.randrange(0, 10)) / 1000
        pricing = [self._entry("Monthly", "Monthly", 1, [(1, None, buy)], unit=unit)]
        if product["requiresCommitment"]:
            pricing.append(self._entry("Annual", "1-Year", 12, [(1, None, buy * 11)], unit=unit))
        self._add(product, pricing)

    def _load(self, ds: Dataset, extra: int) -> None:
        ms: dict[str, list[SimItem]] = {}
        others: list[SimItem] = []
        for it in ds.items:
            if it.vendor_name != "Pax8" or not it.vendor_sku:
                continue
            if it.manufacturer == "Microsoft" and it.mpn:
                ms.setdefault(it.mpn, []).append(it)
            else:
                others.append(it)
        for group in ms.values():
            monthly = next((i for i in group if i.identifier.endswith("-M")), group[0])
            annual = next((i for i in group if i.identifier.endswith("-A")), None)
            self._microsoft(monthly, annual)
        for it in others:
            self._third_party(it)
        for n in range(extra):
            self._other(n)
        # A real catalogue is not in the MSP's order: interleave sold and unsold products.
        self._rng.shuffle(self.products)
        self._load_subscriptions(ds)

    def _load_subscriptions(self, ds: Dataset) -> None:
        """One Pax8 company per PSA customer and one subscription per live contract line that
        sells a Pax8 product, in the term the catalogue item names."""
        rng = self._rng
        # §1.12: timestamps mix Z, -05:00 and -0700 offsets, and some carry plain dates.
        stamps = ("2025-11-03T09:12:44Z", "2025-08-19T14:02:11.120-05:00",
                  "2026-01-07T08:30:00-0700", "2025-12-03")  # fmt: skip
        company_ids: dict[str, str] = {}
        for c in ds.contracts:
            if c.company in company_ids:
                continue
            cid = _uuid(rng)
            company_ids[c.company] = cid
            self.companies.append(
                {
                    "id": cid,
                    "name": c.company,
                    "address": {"street": f"{100 + len(company_ids)} Main St", "city": "Denver",
                                "stateOrProvince": "CO", "postalCode": "80202", "country": "US"},
                    "phone": "303-555-0100",
                    "website": "example.com",
                    "externalId": str(c.id),
                    "billOnBehalfOfEnabled": True,
                    "selfServiceAllowed": False,
                    "orderApprovalRequired": False,
                    "status": "Active",
                    "updatedDate": stamps[len(company_ids) % len(stamps)],
                }
            )  # fmt: skip
        contracts = {c.id: c for c in ds.contracts}
        items = {it.id: it for it in ds.items}
        for ln in ds.lines:
            pid = self.sold.get(ln.item_id)
            if pid is None or ln.cancelled:
                continue
            item = items[ln.item_id]
            annual = item.identifier.endswith("-A")
            terms = ("Annual", "1-Year") if annual else ("Monthly", "Monthly")
            entry = next(
                (
                    e
                    for e in self.pricing.get(pid, [])
                    if (e["billingTerm"], e["commitmentTerm"]) == terms
                ),
                None,
            )
            cost = entry["rates"][0]["partnerBuyRate"] if entry else _rate(item.cost)
            sub: dict[str, Any] = {
                "id": _uuid(rng),
                "companyId": company_ids[contracts[ln.contract_id].company],
                "productId": pid,
                "productName": self.by_id[pid]["name"],
                "quantity": int(ln.quantity),
                "startDate": stamps[ln.id % len(stamps)],
                "createdDate": stamps[(ln.id + 1) % len(stamps)],
                "billingStart": "2025-12-01",
                "status": "Active",
                "price": ln.unit_price,
                "currencyCode": self.currency,
                "billingTerm": terms[0],
                "vendorSubscriptionId": _uuid(rng),
            }
            if self.subscription_cost_field == "partnerCost":
                sub["partnerCost"] = cost
            commitment = (
                {"id": _uuid(rng), "term": "1-Year", "endDate": "2026-11-30T23:59:59Z"}
                if annual
                else None  # monthly subscriptions carry null here (§1.7)
            )
            if self.legacy_commitment_name:
                sub["commitment"] = commitment
            elif commitment is not None:
                sub["commitmentTerm"] = commitment
            else:
                sub["commitmentTerm"] = None
            self.subscriptions.append(sub)

    # ---- in-process control for tests ------------------------------------------------------

    def product_for_sku(self, sku: str) -> dict[str, Any]:
        return next(p for p in self.products if p["sku"] == sku)

    def remove_pricing(self, product_id: str) -> None:
        self.pricing.pop(product_id, None)

    def revoke_tokens(self) -> None:
        """Every issued token is refused from now on (as after a credential rotation)."""
        self.tokens.clear()

    def fail_next(self, count: int = 1, kind: str = "503") -> None:
        self.knobs.fail_next(count, kind)

    @property
    def requests_per_minute(self) -> int | None:
        return self.knobs.rate_limit

    # ---- the app -------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                self._remember_path,
                fault_middleware(self.knobs, self.request_stats, self._shape),
            ]
        )
        r = app.router
        r.add_post("/v1/token", self._token)
        r.add_post("/oauth/token", self._token)
        r.add_get("/v1/products", self._products)
        r.add_get("/v1/products/{id}", self._product)
        r.add_get("/v1/products/{id}/pricing", self._pricing)
        r.add_get("/v1/subscriptions", self._subscriptions)
        r.add_get("/v1/companies", self._companies)
        return app

    @web.middleware
    async def _remember_path(self, request: web.Request, handler: Any) -> web.StreamResponse:
        _path.set(request.path)
        return await handler(request)

    @staticmethod
    def _shape(status: int, retry_after: int | None) -> web.Response:
        kinds = {429: "TOO_MANY_REQUESTS", 408: "REQUEST_TIMEOUT"}  # UNCERTAIN token (§1.15)
        kind = kinds.get(status, "INTERNAL_SERVER_ERROR" if status >= 500 else "BAD_REQUEST")
        message = "Too many requests" if status == 429 else "An unexpected error occurred"
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return _json(error_body(status, kind, message, _path.get()), status, headers)

    def _error(self, status: int, kind: str, message: str) -> web.Response:
        return _json(error_body(status, kind, message, _path.get()), status)

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        denied = _json({"error": "access_denied", "error_description": "Unauthorized"}, 401)
        try:
            body = json.loads(await request.text() or "null")
        except ValueError:
            return denied
        if not isinstance(body, dict):
            return denied
        if (
            body.get("grant_type") != "client_credentials"
            or body.get("audience") not in AUDIENCES
            or body.get("client_id") != self.client_id
            or body.get("client_secret") != self.client_secret
        ):
            return denied
        token = self._mint()
        self.tokens[token] = time.monotonic() + self.token_ttl
        return _json(
            {"access_token": token, "expires_in": TOKEN_CLAIMED_TTL, "token_type": "Bearer"}
        )

    def _mint(self) -> str:
        def part(obj: dict[str, Any]) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        now = int(time.time())
        header = part({"alg": "RS256", "typ": "JWT", "kid": "sim"})
        claims = part(
            {"iss": "https://login.pax8.com/", "sub": f"{self.client_id}@clients",
             "aud": "https://api.pax8.com", "iat": now, "exp": now + TOKEN_CLAIMED_TTL,
             "gty": "client-credentials", "jti": secrets.token_hex(8)}
        )  # fmt: skip
        return f"{header}.{claims}.{secrets.token_urlsafe(32)}"

    def _authorised(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        expiry = self.tokens.get(token)
        if expiry is None or expiry <= time.monotonic():
            self.tokens.pop(token, None)
            return self._error(401, "UNAUTHORIZED", "Full authentication is required")
        return None

    def _paging(self, request: web.Request) -> tuple[int, int] | web.Response:
        q = request.query
        try:
            page = int(q.get("page", "0"))
            size = int(q.get("size", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            return self._error(400, "BAD_REQUEST", "page and size must be numbers")
        if page < 0 or size < 1:
            return self._error(400, "BAD_REQUEST", "page must be >= 0 and size >= 1")
        if size > MAX_PAGE_SIZE:
            if self.size_policy == "reject":
                return self._error(400, "BAD_REQUEST", f"size must be <= {MAX_PAGE_SIZE}")
            if self.size_policy == "clamp":
                size = MAX_PAGE_SIZE
        return page, size

    async def _products(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        paging = self._paging(request)
        if isinstance(paging, web.Response):
            return paging
        page, size = paging
        rows = self.products
        q = request.query
        if "vendorName" in q:
            rows = [p for p in rows if p["vendorName"] == q["vendorName"]]
        if q.get("search"):
            needle = q["search"].casefold()
            rows = [
                p
                for p in rows
                if any(
                    needle in str(p.get(k, "")).casefold()
                    for k in ("name", "vendorName", "sku", "id")
                )
            ]
        sort = q.get("sort", "")
        if sort:
            field, _, direction = sort.partition(",")
            key = {"name": "name", "vendor": "vendorName"}.get(field)
            if key is None:
                return self._error(400, "BAD_REQUEST", f"cannot sort by {field!r}")
            rows = sorted(rows, key=lambda p: p[key].casefold(), reverse=direction == "desc")
        total = len(rows)
        content = [self._public(p) for p in rows[page * size : (page + 1) * size]]
        return _json(
            {
                "content": content,
                "page": {
                    "size": size,
                    "totalElements": total,
                    "totalPages": math.ceil(total / size),
                    "number": page,
                },
            }
        )

    @staticmethod
    def _public(product: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in product.items() if k != "description"}

    def _envelope(self, request: web.Request, rows: list[dict[str, Any]]) -> web.Response:
        paging = self._paging(request)
        if isinstance(paging, web.Response):
            return paging
        page, size = paging
        total = len(rows)
        return _json(
            {
                "content": rows[page * size : (page + 1) * size],
                "page": {"size": size, "totalElements": total,
                         "totalPages": math.ceil(total / size), "number": page},
            }
        )  # fmt: skip

    async def _subscriptions(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        rows = self.subscriptions
        q = request.query
        if "companyId" in q:
            if not any(c["id"] == q["companyId"] for c in self.companies):
                return self._error(403, "FORBIDDEN", "Invalid companyId")
            rows = [r for r in rows if r["companyId"] == q["companyId"]]
        for key in ("status", "billingTerm", "productId"):
            if key in q:
                rows = [r for r in rows if r.get(key) == q[key]]
        return self._envelope(request, rows)

    async def _companies(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        return self._envelope(request, self.companies)

    async def _product(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        product = self.by_id.get(request.match_info["id"])
        if product is None:
            return self._error(404, "NOT_FOUND", f"Product Not Found: {request.match_info['id']}")
        return _json(dict(product, description=f"{product['shortDescription']}. Sold per seat."))

    async def _pricing(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        company = request.query.get("companyId")
        if company is not None:
            try:
                uuid.UUID(company)
            except ValueError:
                return self._error(400, "BAD_REQUEST", "companyId must be a UUID")
        pid = request.match_info["id"]
        if pid not in self.by_id:
            return self._error(404, "NOT_FOUND", f"Product Not Found: {pid}")
        pricing = self.pricing.get(pid)
        if pricing is None:
            return self._error(404, "NOT_FOUND", f"Pricing Not Found for product: {pid}")
        return _json({"content": [self._spelled(p) for p in pricing]})

    def _spelled(self, entry: dict[str, Any]) -> dict[str, Any]:
        if self.charge_type_spelling == "spec":
            return entry
        # The PyPI client's enum spells chargeType per_unit/flat_rate (§1.6 CONFLICT).
        words = {"Per Unit": "per_unit", "Flat Rate": "flat_rate"}
        rates = [
            dict(r, chargeType=words.get(r["chargeType"], r["chargeType"])) for r in entry["rates"]
        ]
        return dict(entry, rates=rates)


# ---- starting it ----------------------------------------------------------------------------


class RunningPax8Sim(Pax8Sim):
    _runner: web.AppRunner

    async def close(self) -> None:
        await self._runner.cleanup()


async def start_pax8_sim(
    dataset: Dataset | None = None, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> RunningPax8Sim:
    """Serve a fake Pax8 account on loopback; ``base_url`` ends in ``/v1``."""
    sim = RunningPax8Sim(dataset if dataset is not None else generate("demo"), **options)
    await serve_on_loopback(sim, host, port, "/v1")
    return sim


def config_snippet(sim: Pax8Sim) -> str:
    """The ``[vendors.pax8]`` TOML block that points costrecond at this sim."""
    return (
        "[vendors.pax8]\n"
        f'base_url = "{sim.base_url}"\n'
        f'client_id = "{sim.client_id}"\n'
        f'client_secret = "{sim.client_secret}"\n'
        f"requests_per_minute = {sim.requests_per_minute or 1000}\n"
    )


def run_standalone(
    port: int = 8093, size: str = "demo", seed: int = 7, host: str = "127.0.0.1", **options: Any
) -> None:
    """Serve until interrupted; print the base URL and the config snippet (``costrecond sim
    pax8``)."""
    serve_until_interrupted(
        lambda: start_pax8_sim(
            generate(size, seed=seed), host=host, port=port, seed=seed, **options
        ),
        lambda sim: (
            f"Pax8 simulator ({len(sim.products)} products) listening on {sim.base_url}\n"
            f"Add this to your costrecon config (or set COSTRECON_PAX8_CLIENT_ID and "
            f"COSTRECON_PAX8_CLIENT_SECRET):\n\n{config_snippet(sim)}"
        ),
    )


def build_parser(prog: str = "costrecond sim pax8") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Serve a faithful fake Pax8 Partner API.")
    p.add_argument("--port", type=int, default=8093, help="loopback port (default 8093)")
    p.add_argument("--size", default="demo", choices=["tiny", "demo", "large"])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--extra-products", type=int, default=400, help="products the MSP does not sell")
    p.add_argument("--client-id", help="client id the simulator accepts")
    p.add_argument("--client-secret", help="client secret the simulator accepts")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    p.add_argument("--token-ttl", type=float, help="seconds a token really lives (claims 86400)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``costrecond sim pax8 --port P``: the CLI hands its remaining arguments here."""
    args = build_parser().parse_args(argv)
    options: dict[str, Any] = {"extra_products": args.extra_products}
    if args.client_id:
        options["client_id"] = args.client_id
    if args.client_secret:
        options["client_secret"] = args.client_secret
    if args.token_ttl:
        options["token_ttl"] = args.token_ttl
    if args.latency:
        options["knobs"] = Knobs(latency=args.latency, seed=args.seed)
    run_standalone(port=args.port, size=args.size, seed=args.seed, **options)
    return 0
