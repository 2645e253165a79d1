"""What a distributor API pull asks for and what it brings back (issue 16).

The caller (the daemon's pull job) passes :class:`ProductRef` s: the products it has mapped to
catalogue items, each by whatever identifier the mapping knows. A source answers with one
:class:`PullResult`: every price row with its provenance, and every asked-for product it could not
price with the reason. The result is built whole before anything is stored, so the daemon can
import it as one all-or-nothing import, like a price file (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from costrecon_daemon.money import QUANT

__all__ = ["NotPriced", "ProductRef", "PullResult", "RateBand", "VendorPrice", "band_for"]


@dataclass(frozen=True, slots=True)
class ProductRef:
    """One product the caller wants priced, by any identifier its mapping knows.

    ``key`` is the caller's own handle (a catalogue item id, a mapping id) and is echoed on every
    row and not-found entry the ref produces. Identifiers are tried strongest first: the
    distributor's own product id, its SKU / part number, the vendor SKU, the manufacturer part
    number. ``quantity`` picks the rate band (default 1).
    """

    key: str
    product_id: str | None = None
    sku: str | None = None
    vendor_sku: str | None = None
    mpn: str | None = None
    quantity: int = 1

    def __post_init__(self) -> None:
        if not any((self.product_id, self.sku, self.vendor_sku, self.mpn)):
            raise ValueError(f"product reference {self.key!r} names no identifier")
        if self.quantity < 1:
            raise ValueError(f"product reference {self.key!r}: quantity must be at least 1")

    def describe(self) -> str:
        for label, value in (
            ("product id", self.product_id),
            ("SKU", self.sku),
            ("vendor SKU", self.vendor_sku),
            ("MPN", self.mpn),
        ):
            if value:
                return f"{label} {value}"
        return self.key  # pragma: no cover - __post_init__ guarantees an identifier


@dataclass(frozen=True, slots=True)
class RateBand:
    """One quantity band of a price (Pax8 ``rates[]``); ``end`` None = open-ended."""

    start: int
    end: int | None
    cost: Decimal
    list_price: Decimal | None
    charge_type: str  # "Per Unit" | "Flat Rate" (either spelling on the wire)

    def holds(self, quantity: int) -> bool:
        return self.start <= quantity and (self.end is None or quantity <= self.end)


def band_for(bands: Iterable[RateBand], quantity: int) -> RateBand | None:
    """The band whose range holds ``quantity``; a first band starting at 0 or 1 holds 1."""
    for band in bands:
        if band.holds(quantity):
            return band
    return None


_BILLING_MONTHS = {"Monthly": 1, "Annual": 12, "Biennial": 24, "Triennial": 36}


@dataclass(frozen=True, slots=True)
class VendorPrice:
    """One vendor cost with its provenance: source, product, terms, currency, when pulled, bands.

    ``cost`` is what the distributor charges per unit per *billing period* for ``quantity`` (Pax8's
    partner buy rate of the band; Ingram's ``customerPrice``); ``monthly_cost`` is the same spread
    per month, which is how PSA catalogue costs are kept (None for one-time charges).
    """

    source: str  # "pax8" | "ingram"
    vendor: str  # who the MSP buys from, as saved mappings name it: "Pax8", "Ingram Micro"
    product_id: str  # Pax8 product id / Ingram part number
    sku: str  # Pax8 SKU / Ingram part number
    vendor_sku: str | None  # Pax8 vendorSku / Ingram vendorPartNumber
    manufacturer: str | None
    description: str
    billing_term: str | None  # as the source says it: "Monthly", "Annual", "3-Year", "One-Time"
    commitment_term: str | None  # "Monthly", "1-Year", "3-Year"
    commitment_months: int | None
    term: str | None  # normalised commitment: "P1M", "P1Y", "P2Y", "P3Y"; None = no term
    billing: str | None  # normalised: "Monthly", "Annual", "Biennial", "Triennial", "OneTime"
    currency: str
    cost: Decimal
    list_price: Decimal | None
    quantity: int
    pulled_at: datetime
    bands: tuple[RateBand, ...] = ()
    pricing_type: str | None = None  # Pax8 "Flat" | "Volume" | "Tiered" | "Mark-Up"
    unit: str | None = None
    requested_by: tuple[str, ...] = ()  # ProductRef keys

    @property
    def monthly_cost(self) -> Decimal | None:
        if self.billing == "OneTime":
            return None
        months = _BILLING_MONTHS.get(self.billing or "Monthly", 1)
        return (self.cost / months).quantize(QUANT, rounding=ROUND_HALF_EVEN)

    @property
    def identity(self) -> tuple[str, str | None, str | None, int]:
        """What makes two rows different costs: product, both terms, and the quantity priced."""
        return (self.product_id, self.billing_term, self.commitment_term, self.quantity)


@dataclass(frozen=True, slots=True)
class NotPriced:
    """An asked-for product the source could not price, with the reason in one sentence."""

    keys: tuple[str, ...]
    identifier: str  # what was looked up: "SKU MST-NCE-100-C100", "part number 4A0036"
    reason: str


@dataclass
class PullResult:
    source: str
    vendor: str
    started_at: datetime
    finished_at: datetime | None = None
    rows: list[VendorPrice] = field(default_factory=list)
    not_found: list[NotPriced] = field(default_factory=list)
    products_seen: int = 0  # catalogue entries read (Pax8 products paged)
    requests: int = 0  # HTTP requests the pull made, token calls included

    def summary(self) -> str:
        """How the Files view names the import: "Pax8 API pull, 342 prices, 2 not found"."""
        text = f"{self.vendor} API pull, {len(self.rows)} price{'s' if len(self.rows) != 1 else ''}"
        if self.not_found:
            text += f", {len(self.not_found)} not found"
        return text

    def records(self) -> list[dict[str, object]]:
        """Rows as records for ``readers.rows_from_records`` (cost per unit per month, so the
        profile must not divide by the term again); one-time charges are left out because a PSA
        catalogue cost is recurring."""
        out: list[dict[str, object]] = []
        for row in self.rows:
            monthly = row.monthly_cost
            if monthly is None:
                continue
            list_price = row.list_price
            if list_price is not None and row.cost:
                list_price = (list_price * monthly / row.cost).quantize(QUANT, ROUND_HALF_EVEN)
            out.append(
                {
                    "sku": row.sku,
                    "mpn": row.vendor_sku or "",
                    "manufacturer": row.manufacturer or "",
                    "description": row.description,
                    "term": row.term or "",
                    "billing": row.billing or "",
                    "currency": row.currency,
                    "cost": monthly,
                    "list_price": list_price if list_price is not None else "",
                    "vendor": row.vendor,
                }
            )
        return out
