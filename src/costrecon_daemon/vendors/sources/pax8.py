"""Pax8 Partner API as a vendor-cost source (reference/distributor-apis.md §1, recipe §1.13).

A pull: a client-credentials token (cached until shortly before it expires; a 401 on a business
call refreshes it once), the product list paged at 200, then ``/products/{id}/pricing`` for the
products the caller asked about and for no other. Pricing starts as soon as the page holding a
product arrives, so paging and pricing overlap. The whole pull stays within Pax8's 1,000 requests
a minute, token calls included, through the shared connector transport (psa/http.py) with one
rolling-window budget; 429 and 5xx are retried there.

Cost of a (product, billing term, commitment term) = the partner buy rate of the band that holds
the quantity asked for (1 unless the ref names one); every band is kept on the row, and each term
is its own row because a monthly and an annual price are different vendor costs (§1.6).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from costrecon_daemon.money import normalise_currency
from costrecon_daemon.psa.base import PSAError
from costrecon_daemon.psa.http import HttpResponse, Transport
from costrecon_daemon.psa.limits import Concurrency, RollingWindow
from costrecon_daemon.vendors.normalise import normalise_mpn, normalise_sku
from costrecon_daemon.vendors.sources.errors import (
    VendorAuthError,
    VendorClassifier,
    VendorResponseError,
    as_vendor_error,
)
from costrecon_daemon.vendors.sources.prices import (
    NotPriced,
    ProductRef,
    PullResult,
    RateBand,
    VendorPrice,
    band_for,
)
from costrecon_daemon.vendors.sources.settings import Pax8Settings

__all__ = ["Pax8Source", "Subscription", "TERM_KEYS"]

SOURCE = "pax8"
VENDOR = "Pax8"
FIX_CREDENTIALS = (
    "check vendors.pax8.client_id and client_secret (or COSTRECON_PAX8_CLIENT_ID and "
    "COSTRECON_PAX8_CLIENT_SECRET) against the Pax8 app, Integrations > API credentials"
)
# Commitment words → normalised term; billing words → normalised billing (§1.6, §6).
TERM_KEYS = {"monthly": "P1M", "1-year": "P1Y", "annual": "P1Y", "2-year": "P2Y", "3-year": "P3Y"}
BILLING_KEYS = {
    "monthly": "Monthly",
    "annual": "Annual",
    "2-year": "Biennial",
    "3-year": "Triennial",
    "one-time": "OneTime",
    "activation": "OneTime",
}
TERM_MONTHS = {"P1M": 1, "P1Y": 12, "P2Y": 24, "P3Y": 36}
# Refresh this long before the token says it expires (Pax8's CLI refreshes a 24 h token at 23 h).
REFRESH_MARGIN = 3600.0


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise VendorResponseError(f"Pax8 sent {what} that is not a number; pull again later.")
    try:
        return Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise VendorResponseError(
            f"Pax8 sent {what} that is not a number; pull again later."
        ) from None


def _charge_type(text: Any) -> str:
    # CONFLICT (§1.6): the spec says "Per Unit"/"Flat Rate", a client library per_unit/flat_rate.
    key = str(text or "").replace("_", " ").casefold()
    return {"per unit": "Per Unit", "flat rate": "Flat Rate"}.get(key, str(text or ""))


@dataclass(frozen=True, slots=True)
class Subscription:
    """An active subscription on one of the MSP's Pax8 companies: its product must be priced even
    when no catalogue item is mapped to it yet (issue 16 item 2)."""

    id: str
    company_id: str
    product_id: str
    quantity: int
    billing_term: str | None
    commitment_term: str | None  # None for monthly (Pax8 sends null, §1.7)
    currency: str | None
    partner_cost: Decimal | None  # only when Pax8 sends partnerCost (§1.7 CONFLICT on "price")


class Pax8Source:
    """One Pax8 account. ``pull(refs)`` prices the referenced products; ``aclose()`` at the end."""

    def __init__(
        self,
        settings: Pax8Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        # §1.11: 1,000 requests a minute, token calls included: one budget for every call.
        self.budget = RollingWindow.per_minute(settings.requests_per_minute)
        self.http = Transport(
            classifier=VendorClassifier("Pax8"),
            slots=[Concurrency(settings.concurrency)],
            budgets=[self.budget],
            timeout=settings.timeout,
            connections=settings.concurrency,
            max_retries=settings.max_retries,
            backoff_base=settings.retry_backoff,
            seed=seed,
        )
        self._token: str | None = None
        self._token_expires = 0.0  # monotonic
        self._token_lock = asyncio.Lock()
        self.token_requests = 0

    async def aclose(self) -> None:
        await self.http.aclose()

    # ---- auth ------------------------------------------------------------------------------

    async def _fresh_token(self, stale: str | None = None) -> str:
        """The cached token, or a new one when it is near expiry or was refused (``stale``).
        Concurrent callers share one token request: each token call spends rate budget."""
        async with self._token_lock:
            if (
                self._token is not None
                and self._token != stale
                and time.monotonic() < self._token_expires
            ):
                return self._token
            s = self.settings
            body = json.dumps(
                {
                    "client_id": s.client_id,
                    "client_secret": s.client_secret,
                    "audience": s.audience,
                    "grant_type": "client_credentials",
                }
            )
            self.token_requests += 1
            reply = await self._send(
                "POST",
                s.effective_token_url,
                endpoint="token",
                content=body,
                headers={"Accept": "application/json", "Content-Type": "application/json"},
            )
            if reply.status_code in (400, 401, 403):
                raise VendorAuthError(f"Pax8 refused the API credentials; {FIX_CREDENTIALS}.")
            if reply.status_code != 200:
                raise VendorResponseError(
                    f"Pax8's token endpoint answered {reply.status_code}; check "
                    "vendors.pax8.base_url and pull again."
                )
            data = reply.json()
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                raise VendorResponseError("Pax8's token answer held no access token; pull again.")
            try:
                lifetime = float(data.get("expires_in", 86400))
            except (TypeError, ValueError):
                lifetime = 86400.0
            margin = min(REFRESH_MARGIN, lifetime / 10)
            self._token = token
            self._token_expires = time.monotonic() + max(0.0, lifetime - margin)
            return token

    async def _send(self, method: str, url: str, **kw: Any) -> HttpResponse:
        """One request through the shared transport; its own failures become pull errors. Every
        Pax8 request is a read (the token POST included), so a 5xx may always be retried."""
        try:
            return await self.http.request(method, url, mutates=False, **kw)
        except PSAError as exc:
            raise as_vendor_error(exc) from None

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> HttpResponse:
        """Every business call goes through here: a bearer token, refreshed once on a 401."""
        url = f"{self.settings.base_url.rstrip('/')}{path}"
        query = {k: str(v) for k, v in (params or {}).items()}
        await self._fresh_token()
        sent: list[str] = []

        def headers() -> dict[str, str]:
            # The token is read when the request leaves (after the limiters), not when it was
            # queued: a request that waited for its turn must not carry a token refreshed since.
            token = self._token or ""
            sent.append(token)
            return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

        for attempt in (0, 1):
            reply = await self._send("GET", url, endpoint=path, params=query, headers=headers)
            if reply.status_code != 401:
                return reply
            if attempt == 0:
                # A token can die before its expires_in (revoked, rotated): refresh once.
                await self._fresh_token(stale=sent[-1])
        if reply.status_code == 401:
            raise VendorAuthError(
                f"Pax8 refused a fresh token for {path}; {FIX_CREDENTIALS}, and that the "
                "credential has access to the partner API."
            )
        return reply  # pragma: no cover

    # ---- products --------------------------------------------------------------------------

    async def _page(self, number: int) -> tuple[list[dict[str, Any]], int]:
        reply = await self._get("/products", {"page": number, "size": self.settings.page_size})
        if reply.status_code == 403:
            raise VendorAuthError(
                "Pax8 answered 403 to the product list; the API credential needs access to "
                "products (Integrations > API credentials)."
            )
        if reply.status_code != 200:
            raise VendorResponseError(
                f"Pax8 answered {reply.status_code} to the product list (page {number}); pull "
                "again later."
            )
        data = reply.json()
        content = data.get("content") if isinstance(data, dict) else None
        page = data.get("page") if isinstance(data, dict) else None
        if not isinstance(content, list) or not isinstance(page, dict):
            raise VendorResponseError("Pax8's product list had no content/page; pull again later.")
        try:
            total_pages = int(page.get("totalPages", 0))
        except (TypeError, ValueError):
            total_pages = 0
        return [p for p in content if isinstance(p, dict)], total_pages

    async def products(self) -> list[dict[str, Any]]:
        """The whole product list (for mapping candidates)."""
        out: list[dict[str, Any]] = []
        await self._each_page(out.extend)
        return out

    async def _each_page(self, consume: Callable[[list[dict[str, Any]]], None]) -> int:
        first, total_pages = await self._page(0)
        consume(first)
        seen = len(first)
        if not first:
            return seen

        async def one(n: int) -> int:
            rows, _ = await self._page(n)
            consume(rows)
            return len(rows)

        # page = number + 1 while page < totalPages (§1.4); pages after the first in parallel.
        counts = await asyncio.gather(*(one(n) for n in range(1, total_pages)))
        return seen + sum(counts)

    async def subscriptions(self) -> list[Subscription]:
        """Active subscriptions across the partner's companies (paged like products)."""
        out: list[Subscription] = []
        number, pages = 0, 1
        while number < pages:
            params = {"page": number, "size": self.settings.page_size, "status": "Active"}
            reply = await self._get("/subscriptions", params)
            if reply.status_code != 200:
                raise VendorResponseError(
                    f"Pax8 answered {reply.status_code} to the subscription list; pull again later."
                )
            data = reply.json()
            if not isinstance(data, dict) or not isinstance(data.get("content"), list):
                raise VendorResponseError("Pax8's subscription list had no content; pull again.")
            for sub in data["content"]:
                if isinstance(sub, dict) and sub.get("productId"):
                    out.append(self._subscription(sub))
            try:
                pages = int((data.get("page") or {}).get("totalPages", 0))
            except (TypeError, ValueError):
                pages = 0
            if not data["content"]:
                break  # an empty page ends the walk whatever the totals say
            number += 1
        return out

    @staticmethod
    def _subscription(sub: dict[str, Any]) -> Subscription:
        # §1.7 CONFLICT: the field is commitmentTerm (an object, null when monthly) or, on older
        # wires, commitment.
        commitment = sub.get("commitmentTerm", sub.get("commitment"))
        term = commitment.get("term") if isinstance(commitment, dict) else None
        cost = sub.get("partnerCost")
        try:
            partner_cost = None if cost is None else Decimal(str(cost))
        except InvalidOperation:
            partner_cost = None
        try:
            quantity = int(sub.get("quantity") or 0)
        except (TypeError, ValueError):
            quantity = 0
        return Subscription(
            id=str(sub.get("id") or ""),
            company_id=str(sub.get("companyId") or ""),
            product_id=str(sub["productId"]),
            quantity=quantity,
            billing_term=sub.get("billingTerm"),
            commitment_term=term,
            currency=sub.get("currencyCode") or None,
            partner_cost=partner_cost,
        )

    # ---- pricing ---------------------------------------------------------------------------

    async def pull(self, refs: Sequence[ProductRef]) -> PullResult:
        """Price exactly the referenced products. Raises a :class:`VendorSourceError` when the pull
        cannot complete (nothing partial is returned: an import is all or nothing)."""
        started = self._clock()
        result = PullResult(source=SOURCE, vendor=VENDOR, started_at=started)
        requests_before = self.http.requests_made
        index = _RefIndex(refs)
        pricing_tasks: list[asyncio.Task[None]] = []
        priced: dict[tuple[str, int], list[ProductRef]] = {}

        def consume(products: list[dict[str, Any]]) -> None:
            for product in products:
                pid = str(product.get("id") or "")
                for ref in index.claim(product):
                    group = (pid, ref.quantity)
                    if group in priced:
                        priced[group].append(ref)
                        continue
                    priced[group] = [ref]
                    pricing_tasks.append(
                        asyncio.ensure_future(
                            self._price(product, ref.quantity, priced[group], result)
                        )
                    )

        try:
            result.products_seen = await self._each_page(consume)
            await asyncio.gather(*pricing_tasks)
        except BaseException:
            for task in pricing_tasks:
                task.cancel()
            await asyncio.gather(*pricing_tasks, return_exceptions=True)
            raise
        for ref in index.unclaimed():
            result.not_found.append(
                NotPriced((ref.key,), ref.describe(), "Pax8 has no product with this identifier.")
            )
        result.rows.sort(key=lambda r: (r.sku, r.billing_term or "", r.commitment_term or ""))
        result.requests = self.http.requests_made - requests_before
        result.finished_at = self._clock()
        return result

    async def _price(
        self, product: dict[str, Any], quantity: int, refs: list[ProductRef], result: PullResult
    ) -> None:
        pid = str(product["id"])
        params = {"companyId": self.settings.company_id} if self.settings.company_id else None
        reply = await self._get(f"/products/{pid}/pricing", params)
        keys = tuple(r.key for r in refs)
        what = f"Pax8 product {product.get('sku') or pid}"
        if reply.status_code == 404:
            # Pricing is not available for every product (§1.6): reported, not fatal.
            result.not_found.append(
                NotPriced(keys, what, "Pax8 publishes no pricing for this product (404).")
            )
            return
        if reply.status_code != 200:
            raise VendorResponseError(
                f"Pax8 answered {reply.status_code} to the pricing of {what}; pull again later."
            )
        data = reply.json()
        entries = data.get("content") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise VendorResponseError(f"Pax8's pricing of {what} had no content; pull again later.")
        pulled_at = self._clock()
        rows = [
            row
            for entry in entries
            if isinstance(entry, dict)
            and (row := self._row(product, entry, quantity, keys, pulled_at)) is not None
        ]
        if not rows:
            result.not_found.append(
                NotPriced(keys, what, f"Pax8 has no rate band for quantity {quantity}.")
            )
        result.rows.extend(rows)
        result.rows.sort(key=lambda r: r.identity)  # keep concurrent arrivals in a stable order

    def _row(
        self,
        product: dict[str, Any],
        entry: dict[str, Any],
        quantity: int,
        keys: tuple[str, ...],
        pulled_at: datetime,
    ) -> VendorPrice | None:
        what = f"a rate for {product.get('sku') or product.get('id')}"
        bands = tuple(
            RateBand(
                start=int(_decimal(r.get("startQuantityRange", 0) or 0, what)),
                end=None
                if r.get("endQuantityRange") is None
                else int(_decimal(r["endQuantityRange"], what)),
                cost=_decimal(r.get("partnerBuyRate"), what),
                list_price=None
                if r.get("suggestedRetailPrice") is None
                else _decimal(r["suggestedRetailPrice"], what),
                charge_type=_charge_type(r.get("chargeType")),
            )
            for r in entry.get("rates") or []
            if isinstance(r, dict)
        )
        band = band_for(bands, quantity)
        if band is None:
            return None
        billing_term = entry.get("billingTerm")
        commitment = entry.get("commitmentTerm")
        term = TERM_KEYS.get(str(commitment or "").casefold())
        billing = BILLING_KEYS.get(str(billing_term or "").casefold())
        months = entry.get("commitmentTermInMonths")
        try:
            months = int(months) if months is not None else TERM_MONTHS.get(term or "")
        except (TypeError, ValueError):
            months = TERM_MONTHS.get(term or "")
        if billing == "OneTime":
            term = None  # a one-off fee has no recurring term (§1.6: counts 0 recurring)
        return VendorPrice(
            source=SOURCE,
            vendor=VENDOR,
            product_id=str(product["id"]),
            sku=str(product.get("sku") or product["id"]),
            vendor_sku=product.get("vendorSku") or None,
            manufacturer=product.get("vendorName") or None,
            description=str(product.get("name") or entry.get("productName") or ""),
            billing_term=billing_term,
            commitment_term=commitment,
            commitment_months=months,
            term=term,
            billing=billing,
            # Pax8 pricing carries no currency: it is the partner's billing currency (§1.6).
            currency=normalise_currency(self.settings.currency),
            cost=band.cost,
            list_price=band.list_price,
            quantity=quantity,
            pulled_at=pulled_at,
            bands=bands,
            pricing_type=entry.get("type"),
            unit=entry.get("unitOfMeasurement"),
            requested_by=keys,
        )


class _RefIndex:
    """Finds which refs a catalogue product answers: by id, SKU, vendor SKU, or MPN (the
    vendorSku is the manufacturer's part number for non-Microsoft products)."""

    def __init__(self, refs: Sequence[ProductRef]) -> None:
        self._by: dict[tuple[str, str], list[ProductRef]] = {}
        self._claimed: set[int] = set()
        self._refs = list(refs)
        for ref in self._refs:
            for kind, value in self._keys(ref):
                self._by.setdefault((kind, value), []).append(ref)

    @staticmethod
    def _keys(ref: ProductRef) -> list[tuple[str, str]]:
        keys = []
        if ref.product_id:
            keys.append(("id", ref.product_id.strip().casefold()))
        if ref.sku:
            keys.append(("sku", normalise_sku(ref.sku)))
        if ref.vendor_sku:
            keys.append(("vsku", normalise_sku(ref.vendor_sku)))
        if ref.mpn:
            keys.append(("mpn", normalise_mpn(ref.mpn)))
        return keys

    def claim(self, product: dict[str, Any]) -> list[ProductRef]:
        pid = str(product.get("id") or "").strip().casefold()
        sku = normalise_sku(str(product.get("sku") or ""))
        vsku = str(product.get("vendorSku") or "")
        found: list[ProductRef] = []
        for key in (
            ("id", pid),
            ("sku", sku),
            ("vsku", normalise_sku(vsku)),
            ("mpn", normalise_mpn(vsku)),
        ):
            if not key[1]:
                continue
            for ref in self._by.get(key, ()):
                if id(ref) not in self._claimed:
                    self._claimed.add(id(ref))
                    found.append(ref)
        return found

    def unclaimed(self) -> list[ProductRef]:
        return [r for r in self._refs if id(r) not in self._claimed]
