"""Ingram Micro Xvantage Integration (XI) Reseller API v6 as a vendor-cost source
(reference/distributor-apis.md §2).

A pull: a client-credentials token (cached; a 401 refreshes it once), then price and availability
in POSTs of at most 50 part numbers, each with the required ``IM-*`` headers and a fresh
correlation id. ``customerPrice`` is the cost, in the element's ``currencyCode``. A 207 answer's
``productStatusCode: "E"`` elements are reported as not found with Ingram's message; the rest is
priced. Catalogue search (for mapping candidates) is a GET, held to Ingram's 60 a minute per
endpoint and to whatever its ``X-RateLimit-*`` headers say is left.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from costrecon_daemon.money import MoneyError, normalise_currency
from costrecon_daemon.psa.base import PSAError
from costrecon_daemon.psa.http import HttpResponse, Transport, dumps, parse_retry_after
from costrecon_daemon.psa.limits import Concurrency, Limiter, PerEndpointWindow
from costrecon_daemon.vendors.sources.errors import (
    VendorAuthError,
    VendorClassifier,
    VendorResponseError,
    VendorSourceError,
    as_vendor_error,
)
from costrecon_daemon.vendors.sources.prices import NotPriced, ProductRef, PullResult, VendorPrice
from costrecon_daemon.vendors.sources.settings import IngramSettings

__all__ = ["CatalogCandidate", "IngramSource"]

SOURCE = "ingram"
VENDOR = "Ingram Micro"
PNA_PATH = "/resellers/v6/catalog/priceandavailability"
SEARCH_PATH = "/resellers/v6/catalog"
FIX_CREDENTIALS = (
    "check vendors.ingram.client_id and client_secret (or COSTRECON_INGRAM_CLIENT_ID and "
    "COSTRECON_INGRAM_CLIENT_SECRET) against your app on developer.ingrammicro.com"
)
REFRESH_MARGIN = 3600.0
MAX_BATCH = 50  # §2.5: "up to 50 products" per call
MAX_HINT = 120.0  # never hold requests longer than this on one rate-limit header


@dataclass(frozen=True, slots=True)
class CatalogCandidate:
    """A catalogue search hit a person can map a catalogue item to (no price: use P&A)."""

    ingram_part_number: str
    vendor_part_number: str | None
    description: str
    vendor_name: str | None
    upc: str | None
    discontinued: bool


def _error_text(reply: HttpResponse) -> str:
    """Ingram's message from either error shape (application ``errors[]`` or gateway ``fault``)."""
    try:
        data = reply.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        if isinstance(data.get("errors"), list) and data["errors"]:
            first = data["errors"][0]
            if isinstance(first, dict):
                fields = ", ".join(
                    f"{f.get('field')}: {f.get('message')}"
                    for f in first.get("fields") or []
                    if isinstance(f, dict)
                )
                return f"{first.get('message', '')}{f' ({fields})' if fields else ''}"
        if isinstance(data.get("fault"), dict):
            return str(data["fault"].get("faultstring", ""))
        for key in ("faultstring", "message"):
            if data.get(key):
                return str(data[key])
    return ""


def _money(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def reset_wait(headers: Any) -> float | None:
    """Seconds until Ingram's window resets: ``Retry-After``, else ``X-RateLimit-Reset``."""
    wait = parse_retry_after(headers.get("Retry-After"))
    if wait is not None:
        return wait
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    try:
        stamp = float(reset)
    except ValueError:
        return None
    # CONFLICT (§2.8): documented as an epoch, also described as seconds to wait. A small
    # number cannot be an epoch, so read it as seconds.
    return max(0.0, stamp - time.time()) if stamp > 1e9 else max(0.0, stamp)


class _IngramClassifier(VendorClassifier):
    def wait_hint(self, resp: HttpResponse) -> float | None:
        wait = reset_wait(resp.headers)
        return None if wait is None else min(wait, MAX_HINT)


class IngramSource:
    """One Ingram Micro reseller account."""

    def __init__(
        self,
        settings: IngramSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        # §2.8: 60 GETs a minute per endpoint (GET endpoints are named "GET <path>"); the P&A
        # POST limit is unpublished, so it is limited only when the config names one.
        self.get_window = PerEndpointWindow(settings.get_requests_per_minute, 60.0, prefix="GET ")
        budgets: list[Limiter] = [self.get_window]
        if settings.post_requests_per_minute:
            budgets.append(
                PerEndpointWindow(settings.post_requests_per_minute, 60.0, prefix="POST ")
            )
        self.http = Transport(
            classifier=_IngramClassifier("Ingram Micro"),
            slots=[Concurrency(settings.concurrency)],
            budgets=budgets,
            timeout=settings.timeout,
            connections=settings.concurrency,
            max_retries=settings.max_retries,
            backoff_base=settings.retry_backoff,
            seed=seed,
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self.token_requests = 0
        self.correlation_ids: list[str] = []

    async def aclose(self) -> None:
        await self.http.aclose()

    # ---- auth and headers ------------------------------------------------------------------

    async def _fresh_token(self, stale: str | None = None) -> str:
        async with self._token_lock:
            if (
                self._token is not None
                and self._token != stale
                and time.monotonic() < self._token_expires
            ):
                return self._token
            s = self.settings
            self.token_requests += 1
            reply = await self._send(
                "POST",
                s.token_url,
                endpoint="token",
                content=urlencode(
                    {
                        "grant_type": "client_credentials",
                        "client_id": s.client_id,
                        "client_secret": s.client_secret,
                    }
                ),
                headers={
                    "Accept": "application/json",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
            if reply.status_code in (400, 401, 403):
                raise VendorAuthError(
                    f"Ingram Micro refused the API credentials; {FIX_CREDENTIALS}."
                )
            if reply.status_code != 200:
                raise VendorResponseError(
                    f"Ingram Micro's token endpoint answered {reply.status_code}; check "
                    "vendors.ingram.base_url and pull again."
                )
            data = reply.json()
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                raise VendorResponseError("Ingram Micro's token answer held no access token.")
            # UNCERTAIN (§2.3): expires_in is a string in the spec, a number in the docs' example.
            try:
                lifetime = float(str(data.get("expires_in", "86399")).strip())
            except ValueError:
                lifetime = 86399.0
            margin = min(REFRESH_MARGIN, lifetime / 10)
            self._token = token
            self._token_expires = time.monotonic() + max(0.0, lifetime - margin)
            return token

    def _headers(self, token: str) -> dict[str, str]:
        s = self.settings
        # §2.4 CONFLICT on the correlation id's length: 32 hex characters fits every reading.
        correlation = uuid.uuid4().hex
        self.correlation_ids.append(correlation)
        return {
            "Authorization": f"Bearer {token}",
            "IM-CustomerNumber": s.customer_number,
            "IM-CountryCode": s.country_code,
            "IM-CorrelationID": correlation,
            "IM-SenderID": s.sender_id,
            "Accept": "application/json",
        }

    async def _send(self, method: str, url: str, **kw: Any) -> HttpResponse:
        """One request through the shared transport; its own failures become pull errors. Every
        Ingram call made here only reads (P&A is a POST that reads), so a 5xx may be retried."""
        try:
            return await self.http.request(method, url, mutates=False, **kw)
        except PSAError as exc:
            raise as_vendor_error(exc) from None

    async def _call(
        self, method: str, path: str, *, params: Any = None, body: Any = None
    ) -> HttpResponse:
        """Every business call goes through here: token, ``IM-*`` headers, one 401 refresh."""
        url = f"{self.settings.resellers_root}{path}"
        endpoint = f"{method} {path}"
        await self._fresh_token()
        tokens: list[str] = []

        def headers() -> dict[str, str]:
            # A fresh correlation id on every attempt: it is unique per transaction (§2.4); the
            # token is the one cached when the request leaves, not when it was queued.
            tokens.append(self._token or "")
            sent = self._headers(tokens[-1])
            if body is not None:
                sent["Content-Type"] = "application/json"
            return sent

        for attempt in (0, 1):
            reply = await self._send(
                method,
                url,
                endpoint=endpoint,
                params=params,
                content=dumps(body) if body is not None else None,
                headers=headers,
            )
            if method == "GET":
                self._obey_rate_headers(endpoint, reply)
            if reply.status_code != 401:
                break
            if attempt == 0:
                await self._fresh_token(stale=tokens[-1])
        if reply.status_code == 401:
            raise VendorAuthError(
                f"Ingram Micro refused a fresh token for {path}; {FIX_CREDENTIALS}."
            )
        if reply.status_code == 400 and "customer number" in _error_text(reply).casefold():
            raise VendorAuthError(
                "Ingram Micro says the customer number does not match these credentials; set "
                "vendors.ingram.customer_number to the one shown in Xvantage."
            )
        return reply

    def _obey_rate_headers(self, endpoint: str, reply: HttpResponse) -> None:
        """When Ingram says nothing is left this minute, hold further GETs to that endpoint
        until its reset (the server's count wins over ours: other tools share the account)."""
        remaining = reply.headers.get("X-RateLimit-Remaining")
        if remaining is None or reply.status_code == 429:
            return
        try:
            left = int(remaining)
        except ValueError:
            return
        if left <= 0:
            wait = reset_wait({"X-RateLimit-Reset": reply.headers.get("X-RateLimit-Reset", "")})
            if wait:
                self.get_window.hold(endpoint, min(wait, MAX_HINT))

    # ---- price and availability -------------------------------------------------------------

    async def pull(self, refs: Sequence[ProductRef]) -> PullResult:
        """Price the referenced parts. Raises :class:`VendorSourceError` when the pull cannot
        complete; part numbers Ingram does not know are reported in ``not_found``."""
        started = self._clock()
        result = PullResult(source=SOURCE, vendor=VENDOR, started_at=started)
        before = self.http.requests_made
        # One lookup per distinct identifier; refs that share one share the answer.
        wanted: dict[tuple[str, str], list[ProductRef]] = {}
        for ref in refs:
            wanted.setdefault(self._identifier(ref), []).append(ref)
        keys = list(wanted)
        size = min(self.settings.batch_size, MAX_BATCH)
        batches = [keys[i : i + size] for i in range(0, len(keys), size)]
        await asyncio.gather(*(self._batch(b, wanted, result) for b in batches))
        result.rows.sort(key=lambda r: r.sku)
        result.not_found.sort(key=lambda n: n.identifier)
        result.products_seen = len(keys)
        result.requests = self.http.requests_made - before
        result.finished_at = self._clock()
        return result

    @staticmethod
    def _identifier(ref: ProductRef) -> tuple[str, str]:
        if ref.product_id:
            return ("ingramPartNumber", ref.product_id.strip())
        if ref.sku:
            return ("ingramPartNumber", ref.sku.strip())
        return ("vendorPartNumber", (ref.mpn or ref.vendor_sku or "").strip())

    async def _batch(
        self,
        batch: list[tuple[str, str]],
        wanted: dict[tuple[str, str], list[ProductRef]],
        result: PullResult,
    ) -> None:
        reply = await self._call(
            "POST",
            PNA_PATH,
            params={"includeAvailability": "false", "includePricing": "true"},
            body={
                "showAvailableDiscounts": False,
                "showReserveInventoryDetails": False,
                "products": [{kind: value} for kind, value in batch],
            },
        )
        if reply.status_code not in (200, 207):
            detail = _error_text(reply)
            raise VendorSourceError(
                f"Ingram Micro answered {reply.status_code} to price and availability"
                f"{f' ({detail})' if detail else ''}; pull again later."
            )
        data = reply.json()
        if not isinstance(data, list):
            raise VendorResponseError(
                "Ingram Micro's price answer was not a list; pull again later."
            )
        pulled_at = self._clock()
        answered: set[int] = set()
        for position, element in enumerate(data):
            if not isinstance(element, dict):
                continue
            try:
                index = int(element.get("index", position))
            except (TypeError, ValueError):
                index = position
            if not 0 <= index < len(batch):
                continue
            answered.add(index)
            kind, value = batch[index]
            refs = wanted[(kind, value)]
            self._element(element, kind, value, refs, pulled_at, result)
        for index, (kind, value) in enumerate(batch):
            if index not in answered:
                result.not_found.append(
                    NotPriced(
                        tuple(r.key for r in wanted[(kind, value)]),
                        self._label(kind, value),
                        "Ingram Micro's answer left this part out.",
                    )
                )

    @staticmethod
    def _label(kind: str, value: str) -> str:
        return f"{'part number' if kind == 'ingramPartNumber' else 'vendor part number'} {value}"

    def _element(
        self,
        el: dict[str, Any],
        kind: str,
        value: str,
        refs: list[ProductRef],
        pulled_at: datetime,
        result: PullResult,
    ) -> None:
        keys = tuple(r.key for r in refs)
        label = self._label(kind, value)
        if str(el.get("productStatusCode") or "").upper() == "E":
            reason = " ".join(str(el.get("productStatusMessage") or "not found").split())
            result.not_found.append(NotPriced(keys, label, f"Ingram Micro: {reason}."))
            return
        pricing = el.get("pricing")
        if not isinstance(pricing, dict) and isinstance(el.get("availability"), dict):
            pricing = el["availability"].get("pricing")  # the 207 example's misplaced block (§2.5)
        cost = _money(pricing.get("customerPrice")) if isinstance(pricing, dict) else None
        if cost is None or not isinstance(pricing, dict):
            result.not_found.append(
                NotPriced(keys, label, "Ingram Micro returned no customer price for this part.")
            )
            return
        try:
            currency = normalise_currency(str(pricing.get("currencyCode") or ""))
        except MoneyError:
            result.not_found.append(
                NotPriced(keys, label, "Ingram Micro priced this part in an unknown currency.")
            )
            return
        ipn = str(el.get("ingramPartNumber") or value)
        for quantity in sorted({r.quantity for r in refs}):
            result.rows.append(
                VendorPrice(
                    source=SOURCE,
                    vendor=VENDOR,
                    product_id=ipn,
                    sku=ipn,
                    vendor_sku=el.get("vendorPartNumber") or None,
                    manufacturer=el.get("vendorName") or None,
                    description=str(el.get("description") or ""),
                    billing_term=None,
                    commitment_term=None,
                    commitment_months=None,
                    term=None,
                    billing=None,
                    currency=currency,
                    cost=cost,
                    list_price=_money(pricing.get("retailPrice")),
                    quantity=quantity,
                    pulled_at=pulled_at,
                    unit=el.get("uom"),
                    requested_by=tuple(r.key for r in refs if r.quantity == quantity),
                )
            )

    # ---- catalogue search -------------------------------------------------------------------

    async def search(
        self, keyword: str, *, vendor: str | None = None, limit: int = 100
    ) -> list[CatalogCandidate]:
        """Catalogue entries matching ``keyword`` (part number, MPN, title or vendor), at most
        ``limit``; no results is an empty list (Ingram answers 404 "No Records Found")."""
        out: list[CatalogCandidate] = []
        page = 1
        page_size = min(100, max(1, limit))
        while len(out) < limit:
            params = {"pageNumber": str(page), "pageSize": str(page_size), "keyword": keyword}
            if vendor:
                params["vendor"] = vendor
            reply = await self._call("GET", SEARCH_PATH, params=params)
            if reply.status_code == 404:
                break
            if reply.status_code != 200:
                detail = _error_text(reply)
                raise VendorSourceError(
                    f"Ingram Micro answered {reply.status_code} to a catalogue search"
                    f"{f' ({detail})' if detail else ''}; try again later."
                )
            data = reply.json()
            rows = data.get("catalog") if isinstance(data, dict) else None
            if not isinstance(rows, list) or not rows:
                break
            for row in rows:
                if isinstance(row, dict) and row.get("ingramPartNumber"):
                    out.append(
                        CatalogCandidate(
                            ingram_part_number=str(row["ingramPartNumber"]),
                            vendor_part_number=row.get("vendorPartNumber") or None,
                            description=str(row.get("description") or ""),
                            vendor_name=row.get("vendorName") or None,
                            upc=row.get("upcCode") or None,
                            # Booleans arrive as strings (§2.6).
                            discontinued=str(row.get("discontinued", "")).casefold() == "true",
                        )
                    )
            try:
                found = int(data.get("recordsFound", 0))
            except (TypeError, ValueError):
                found = 0
            # The nextPage link can be malformed (§2.6): compute the next page ourselves.
            if page * page_size >= found:
                break
            page += 1
        return out[:limit]
