"""Vocabulary shared by the readers and the matcher: amounts, terms, part numbers, manufacturers.

Everything here is a pure function of text. The readers use the amount and term parsers at the
file edge; the matcher uses the key normalisers on both sides (vendor row and catalogue item) so
the two always agree (vendors.md §5.2).
"""

from __future__ import annotations

import re

from costrecon_daemon.money import parse_amount_and_currency

# The strict amount parser lives with the money type (one way in); readers know it by this name.
parse_cost = parse_amount_and_currency

# ------------------------------------------------------------------------------------------- terms

# vendors.md §5.3: one vocabulary for term words from every source. Only terms a PSA item can carry
# as a recurring cost are kept; one-off and usage words mean "no term".
_TERM_WORDS = {
    "P1M": "p1m, monthly, month, 1 month, 1-month, one month, mth, mon, m, 1m, 1 mo, 1mo",
    "P1Y": "p1y, annual, annually, yearly, year, 1 year, 1-year, one year, ann, yr, a, 1y, "
    "12 months, 12m",
    "P2Y": "p2y, 2-year, 2 year, 2 years, 24 months, 24m, 2y",
    "P3Y": "p3y, 3-year, 3 year, 3 years, triennial, 36 months, 36m, 36 mo, 3y",
}
TERMS: dict[str, str | None] = {"": None, "none": None, "n/a": None, "-": None}
TERMS.update({w: code for code, words in _TERM_WORDS.items() for w in words.split(", ")})
TERM_MONTHS = {"P1M": 1, "P1Y": 12, "P2Y": 24, "P3Y": 36}


def normalise_term(text: str | None) -> str | None:
    """``"Monthly"``/``"P1M"``/``"1 month"``/``"MTH"`` → ``"P1M"``; ``"Annual"``/``"1-Year"`` →
    ``"P1Y"``.

    Empty means "no term" (hardware, one-off). Unknown words raise ``ValueError``.
    """
    key = " ".join((text or "").casefold().split())
    try:
        return TERMS[key]
    except KeyError:
        raise ValueError(
            f"{text!r} is not a term costrecon knows (use Monthly, Annual, P1M or P1Y)"
        ) from None


_BILLING = {
    "monthly": "Monthly",
    "month": "Monthly",
    "m": "Monthly",
    "mth": "Monthly",
    "annual": "Annual",
    "annually": "Annual",
    "yearly": "Annual",
    "a": "Annual",
    "ann": "Annual",
    "triennial": "Triennial",
    "one-time": "OneTime",
    "onetime": "OneTime",
    "one time": "OneTime",
    "none": None,
    "": None,
}


def normalise_billing(text: str | None) -> str | None:
    """Billing frequency words → ``Monthly``/``Annual``/``Triennial``/``OneTime``/None."""
    key = " ".join((text or "").casefold().split())
    try:
        return _BILLING[key]
    except KeyError:
        raise ValueError(
            f"{text!r} is not a billing frequency costrecon knows (Monthly or Annual)"
        ) from None


# ---------------------------------------------------------------------------------- matching keys

# HP-style regional option codes after '#' (HP/HPE localisation suffixes: ABA US, ABU UK, ABB
# Europe, ABD Germany…). Only these are stripped: a '#' or '-ABA' elsewhere may be a real part of a
# manufacturer's part number, and stripping it would merge different products (vendors.md §5.2).
_HP_CODES = """ABA ABB ABC ABD ABE ABF ABG ABH ABJ ABL ABM ABN ABS ABT ABU ABV ABX ABY ABZ AB0 AB1
    AB2 AB4 AB5 AB6 AB8 AB9 ACB ACJ AC3 AC4 AKB AKC AKD AKE AKL AKN AKQ AKR ARL B19 B1H BCM BED BEW
    UUF UUG UUS UUZ"""
HP_REGION_CODES = frozenset(_HP_CODES.split())


def normalise_mpn(text: str | None) -> str:
    """Comparable manufacturer part number: case-folded, without spaces, dashes, dots, slashes,
    underscores, and without a known HP regional suffix (``"5CD-12 34#ABA"`` → ``"5cd1234"``).
    ``""`` if empty. (Chained ``replace`` rather than ``translate``: 4x faster on short strings,
    and this runs for every row of every import.)"""
    if not text:
        return ""
    text = text.strip()
    hash_at = text.rfind("#")
    if hash_at > 0 and text[hash_at + 1 :].upper() in HP_REGION_CODES:
        text = text[:hash_at]
    return (
        text.casefold()
        .replace("-", "")
        .replace(" ", "")
        .replace(".", "")
        .replace("/", "")
        .replace("_", "")
        .replace("\t", "")
    )


def normalise_sku(text: str | None) -> str:
    """Comparable distributor SKU or PSA identifier: trimmed, case-folded, inner spaces removed.
    Leading zeros and punctuation are kept: distributor SKUs are exact codes."""
    if not text:
        return ""
    text = text.strip().casefold()
    if " " in text or "\t" in text:
        text = "".join(text.split())
    return text


_CORPORATE_WORDS = (
    "inc inc. incorporated corp corp. corporation co co. company ltd ltd. limited llc plc gmbh ag "
    "sa s.a. bv b.v. nv srl spa pty oy ab as"
)
_CORPORATE = frozenset(_CORPORATE_WORDS.split())
_MANUFACTURER_ALIASES = {
    "hewlett packard enterprise": "hpe",
    "hewlett packard": "hp",
    "hp enterprise": "hpe",
    "microsoft software": "microsoft",
}
_NON_WORD = re.compile(r"[^\w]+")


def normalise_manufacturer(text: str | None) -> str:
    """``"Microsoft Corporation"`` → ``"microsoft"``; ``"HP Inc."`` → ``"hp"``; ``""`` if empty."""
    if not text:
        return ""
    known = _MANUFACTURER_CACHE.get(text)
    if known is not None:
        return known
    if len(_MANUFACTURER_CACHE) > 10_000:  # a few hundred names in practice; bound it anyway
        _MANUFACTURER_CACHE.clear()
    name = _MANUFACTURER_CACHE[text] = _normalise_manufacturer(text)
    return name


_MANUFACTURER_CACHE: dict[str, str] = {}


def _normalise_manufacturer(text: str) -> str:
    words = [w for w in _NON_WORD.sub(" ", text.casefold().replace("&", " and ")).split()]
    while words and words[-1] in _CORPORATE:
        words.pop()
    name = " ".join(words)
    return _MANUFACTURER_ALIASES.get(name, name)


def manufacturers_agree(a: str, b: str) -> bool:
    """Two normalised manufacturer names name the same company, as far as text can tell.

    Equal, or one is a word-prefix of the other (``"microsoft"`` / ``"microsoft licensing"``).
    Either side empty means unknown, which never rules a match out.
    """
    if not a or not b or a == b:
        return True
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return long.startswith(short + " ")
