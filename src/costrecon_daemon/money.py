"""Money: Decimal in Python, integer ten-thousandths at rest, never float (DESIGN.md §3).

Every amount travels with an ISO-4217 currency code. Two amounts in different currencies are never
compared or subtracted: :class:`CurrencyMismatch` is raised instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

SCALE = 4
UNITS_PER_ONE = 10**SCALE
QUANT = Decimal(1).scaleb(-SCALE)  # Decimal("0.0001")

# Codes seen in PSA tenants and distributor files (vendors.md §4-5). A code outside this list is
# refused at the edge rather than guessed.
KNOWN_CURRENCIES = frozenset(
    ["USD", "EUR", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "ZAR", "JPY", "SGD", "HKD", "INR", "MXN", "BRL", "AED", "ILS", "RON"]
)

_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}


class MoneyError(ValueError):
    """An amount or currency that cannot be used: the message says why, for a person."""


class CurrencyMismatch(MoneyError):
    pass


def quantize(value: Decimal) -> Decimal:
    """Round to the stored scale (banker's rounding, as distributors' 4-dp prices need no more)."""
    return value.quantize(QUANT, rounding=ROUND_HALF_EVEN)


def to_units(value: Decimal) -> int:
    """Decimal -> integer ten-thousandths. Refuses floats so nothing binary slips in."""
    if isinstance(value, float):
        raise TypeError("money must be Decimal, not float")
    if not isinstance(value, Decimal):
        value = Decimal(value)
    return int(quantize(value) * UNITS_PER_ONE)


def from_units(units: int | None) -> Decimal | None:
    if units is None:
        return None
    return (Decimal(int(units)) / UNITS_PER_ONE).quantize(QUANT)


def normalise_currency(code: str | None) -> str:
    code = (code or "").strip().upper()
    code = _SYMBOLS.get(code, code)
    if code not in KNOWN_CURRENCIES:
        raise MoneyError(f"unknown currency {code!r}; expected an ISO code such as USD or EUR")
    return code


_NUMBER_CHARS = re.compile(r"[^0-9,.\-+]")


def parse_amount(text: str | int | Decimal, *, decimal_mark: str = ".") -> Decimal:
    """Parse an amount as people and distributors write it.

    Accepts currency symbols and codes, thousands separators, zero padding (``0000074.34``), a
    decimal comma when ``decimal_mark=","`` (EU files: ``1.234,50``), and a trailing or leading
    minus. Never accepts floats.
    """
    if isinstance(text, float):
        raise TypeError("money must be parsed from text or Decimal, not float")
    if isinstance(text, Decimal | int):
        return quantize(Decimal(text))
    raw = str(text).strip()
    if not raw:
        raise MoneyError("empty amount")
    negative = raw.startswith("(") and raw.endswith(")")
    cleaned = _NUMBER_CHARS.sub("", raw)
    if cleaned.endswith("-"):
        negative, cleaned = True, cleaned[:-1]
    if cleaned.startswith("-"):
        negative, cleaned = True, cleaned[1:]
    cleaned = cleaned.lstrip("+")
    if not cleaned or not any(ch.isdigit() for ch in cleaned):
        raise MoneyError(f"{raw!r} is not a number")
    if decimal_mark == ",":
        cleaned = cleaned.replace(".", "").replace(",", ".")
    else:
        cleaned = cleaned.replace(",", "")
    if cleaned.count(".") > 1:
        raise MoneyError(f"{raw!r} is not a number")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise MoneyError(f"{raw!r} is not a number") from None
    if not value.is_finite():
        raise MoneyError(f"{raw!r} is not a number")
    return quantize(-value if negative else value)


def json_amount(value: Decimal | None) -> str | None:
    """Amounts cross the local API as strings so no JSON parser turns them into floats."""
    if value is None:
        return None
    return format(quantize(value), "f")


def display(value: Decimal | None, places: int = 2) -> str:
    """Human display: at least ``places`` decimals, more only when the value has them."""
    if value is None:
        return "—"
    value = quantize(value)
    text = format(value.normalize(), "f")
    if "." in text:
        whole, frac = text.split(".")
        frac = frac.rstrip("0")
    else:
        whole, frac = text, ""
    frac = frac.ljust(places, "0")
    return f"{whole}.{frac}" if frac else whole


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError("Money.amount must be Decimal")

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(quantize(self.amount - other.amount), self.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(quantize(self.amount + other.amount), self.currency)

    def __str__(self) -> str:
        return f"{display(self.amount)} {self.currency}"
