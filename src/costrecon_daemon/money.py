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
    [
        "USD",
        "EUR",
        "GBP",
        "CAD",
        "AUD",
        "NZD",
        "CHF",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "ZAR",
        "JPY",
        "SGD",
        "HKD",
        "INR",
        "MXN",
        "BRL",
        "AED",
        "ILS",
        "RON",
    ]
)

_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "US$": "USD", "A$": "AUD"}


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


_CURRENCY_TOKEN = r"(?:US\$|A\$|[$€£¥]|[A-Z]{3})"
_AMOUNT = re.compile(
    rf"""^\(?\s*(?P<sign1>[-+])?\s*(?P<cur1>{_CURRENCY_TOKEN})?\s*(?P<sign2>[-+])?\s*
    (?P<num>\d[\d.,'\u00a0\u202f ]*)
    \s*(?P<cur2>{_CURRENCY_TOKEN})?\s*(?P<sign3>-)?\s*\)?$""",
    re.VERBOSE,
)
# Grouped numbers must group in threes; anything else ("12,5" in a dot-decimal file) is refused
# rather than guessed, because a wrong guess is a 10x or 100x cost change.
_GROUPED = {
    ".": re.compile(r"^\d{1,3}(?:([,'\u00a0\u202f ])\d{3})(?:\1\d{3})*(?:\.\d+)?$|^\d+(?:\.\d+)?$"),
    ",": re.compile(r"^\d{1,3}(?:([.'\u00a0\u202f ])\d{3})(?:\1\d{3})*(?:,\d+)?$|^\d+(?:,\d+)?$"),
}


def parse_amount_and_currency(text: str, decimal_mark: str = ".") -> tuple[Decimal, str | None]:
    """Parse an amount cell strictly: ``(value, currency code from a symbol or None)``.

    Accepts what distributors and people write — ``1,234.50``, ``1.234,50`` (with
    ``decimal_mark=","``), ``0000074.34``, ``€ 12,50``, ``12.50 EUR``, ``(3.00)``, ``3.00-`` — and
    refuses anything with stray characters (``12,5x``). Raises :class:`MoneyError` with a message
    for people.
    """
    raw = text.strip()
    if not raw:
        raise MoneyError("is empty")
    if raw.startswith("="):
        raise MoneyError(
            f"{raw!r} is a spreadsheet formula; save the sheet with values, not formulas"
        )
    match = _AMOUNT.match(raw)
    if match is None:
        raise MoneyError(f"{raw!r} is not a number")
    cur1, cur2 = match["cur1"], match["cur2"]
    if cur1 and cur2:
        raise MoneyError(f"{raw!r} is not a number")
    symbol = cur1 or cur2
    currency = _SYMBOLS.get(symbol, symbol) if symbol else None
    num = match["num"].strip()
    if not _GROUPED[decimal_mark].match(num):
        other = "," if decimal_mark == "." else "."
        hint = f" (this file uses {decimal_mark!r} as the decimal mark, not {other!r})"
        raise MoneyError(f"{raw!r} is not a number{hint}")
    digits = "".join(ch for ch in num if ch.isdigit() or ch == decimal_mark)
    if decimal_mark == ",":
        digits = digits.replace(",", ".")
    try:
        value = Decimal(digits)
    except InvalidOperation:  # pragma: no cover - the pattern above already guarantees digits
        raise MoneyError(f"{raw!r} is not a number") from None
    negative = bool(match["sign1"] == "-" or match["sign2"] == "-" or match["sign3"])
    negative = negative or (raw.startswith("(") and raw.endswith(")"))
    return quantize(-value if negative else value), currency


def parse_amount(text: str | int | Decimal, *, decimal_mark: str = ".") -> Decimal:
    """Parse an amount as people and distributors write it (see :func:`parse_amount_and_currency`);
    Decimal and int pass through. Never accepts floats."""
    if isinstance(text, float):
        raise TypeError("money must be parsed from text or Decimal, not float")
    if isinstance(text, Decimal | int):
        return quantize(Decimal(text))
    return parse_amount_and_currency(str(text), decimal_mark)[0]


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
