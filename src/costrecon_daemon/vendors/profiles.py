"""Price-file profiles: which column of a vendor's file holds which of our fields.

A :class:`Profile` describes one file layout (vendors.md §4). The reader picks one by, in order:
the name passed explicitly; a header row that carries a profile's *signature* headers (the most
specific profile wins); a profile's file-name fragment in the file name (``ingram-PRICE.TXT``,
``STDPRICE_FULL.TXT``, ``ITEMLIST.txt``); the shape of a headerless first row (field count and
delimiter); and finally the ``generic`` profile, which recognises common header synonyms.

Users add their own layouts in the config file; :func:`profile_from_config` validates one table
and names the bad key when it is wrong.
"""

from __future__ import annotations

import codecs
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from costrecon_daemon.money import MoneyError, normalise_currency
from costrecon_daemon.vendors.normalise import normalise_term

# Our fields. ``sku`` and ``cost`` are required; the last three are only used by some layouts.
FIELDS = (
    "sku", "mpn", "manufacturer", "description", "term", "billing", "currency", "cost",
    "list_price", "vendor", "action", "effective_start", "effective_end",
)  # fmt: skip
REQUIRED_FIELDS = ("sku", "cost")
DELIMITERS = (",", ";", "\t", "|", "~")

# A column: a header name, a 0-based position, or a tuple of alternatives (the first present wins).
ColumnRef = str | int | tuple[str | int, ...]


class ProfileError(ValueError):
    """A profile from the config file that cannot be used; the message names the bad key."""


def header_key(text: object) -> str:
    """How header cells are compared: case-folded, ``_`` as space, spaces collapsed, BOM dropped."""
    return " ".join(str(text or "").replace("\ufeff", "").replace("_", " ").casefold().split())


@dataclass(frozen=True)
class Profile:
    name: str
    columns: Mapping[str, ColumnRef]
    delimiter: str | None = None  # None: sniffed among DELIMITERS
    decimal_mark: str | None = None  # None: detected per file from the cost column
    encoding: str | None = None  # None: BOM, else UTF-8, else cp1252
    currency: str | None = None  # the file's currency when no column says it
    vendor: str | None = None  # who we buy from (the distributor), as saved mappings know it
    term: str | None = None  # the file's term when no column says it
    has_header: bool = True
    sheet: str | None = None  # xlsx: sheet name; None = first sheet
    signature: frozenset[str] = frozenset()  # header_key()s that identify this layout
    file_names: tuple[str, ...] = ()  # lower-case fragments of file names that identify it
    # Fields built from several columns: field -> (columns, separator).
    joined: Mapping[str, tuple[tuple[str | int, ...], str]] = field(default_factory=dict)
    field_count: tuple[int, int] | None = None  # headerless: accepted number of fields
    skip_actions: frozenset[str] = frozenset()  # action-column values whose rows are dropped
    # Rows are kept only when these columns (header name or position) hold one of the values
    # (compared case-insensitively); a column the file does not have filters nothing.
    keep_only: Mapping[str | int, frozenset[str]] = field(default_factory=dict)
    price_per_term: bool = False  # cost is for the whole term; divide to a monthly cost
    labels: Mapping[str, str] = field(default_factory=dict)  # column names for headerless files
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", MappingProxyType(dict(self.columns)))
        object.__setattr__(self, "joined", MappingProxyType(dict(self.joined)))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "keep_only", MappingProxyType(dict(self.keep_only)))


def _alts(*names: str) -> tuple[str, ...]:
    return names


GENERIC = Profile(
    name="generic",
    description="Any CSV/XLSX with a header row using common column names",
    columns={
        "sku": _alts(
            "SKU",
            "Part Number",
            "Item Number",
            "Vendor SKU",
            "Distributor SKU",
            "Part No",
            "Part #",
            "Item #",
            "Item No",
            "Product Code",
            "Artikelnummer",
            "Art.-Nr.",
            "Référence",
        ),
        "mpn": _alts(
            "MPN",
            "Manufacturer Part Number",
            "Mfr Part",
            "Mfr Part Number",
            "Mfg Part Number",
            "Manufacturer Part",
            "Manufacturer Part No",
            "Herstellerartikelnummer",
            "Herstellernummer",
        ),
        "cost": _alts(
            "Cost",
            "Unit Cost",
            "Buy Price",
            "Your Price",
            "Customer Price",
            "Partner Price",
            "Partner Cost",
            "Partner Buy Rate",
            "Net Price",
            "Einkaufspreis",
            "EK-Preis",
            "EK",
            "Preis",
            "Prix",
        ),
        "currency": _alts("Currency", "Currency Code", "Währung", "Devise"),
        "description": _alts(
            "Description",
            "Name",
            "Product",
            "Product Name",
            "Item Description",
            "Beschreibung",
            "Bezeichnung",
            "Désignation",
        ),
        # Pax8's "Billing Term" (Monthly/Annual/2-Year…) is the commitment term (vendors.md §1.5).
        "term": _alts("Term", "Term Duration", "Commitment Term", "Billing Term", "Laufzeit"),
        "billing": _alts("Billing", "Billing Plan", "Billing Frequency", "Billing Cycle"),
        "vendor": _alts("Vendor", "Distributor", "Supplier", "Lieferant"),
        "manufacturer": _alts("Manufacturer", "Mfr", "Brand", "Publisher", "Hersteller"),
        "list_price": _alts(
            "List Price", "MSRP", "Retail Price", "RRP", "ERP Price", "Listenpreis"
        ),
    },  # fmt: skip
)

# vendors.md §4.1. Headerless; positions are Ingram's layout (0-based). The file has 23 fields per
# one parser and 25 per another, so any count in between is accepted and only positions 0-14 used.
INGRAM_PRICE_TXT = Profile(
    name="ingram_price",
    description="Ingram Micro US PRICE.TXT (headerless, positional)",
    vendor="Ingram Micro",
    delimiter=",",
    decimal_mark=".",
    has_header=False,
    file_names=("price.txt", "price.zip", "ingram_price"),
    field_count=(23, 25),
    columns={"action": 0, "sku": 1, "manufacturer": 3, "list_price": 6, "mpn": 7, "cost": 14},
    joined={"description": ((4, 5), " ")},
    skip_actions=frozenset({"D"}),  # D = deleted from Ingram's list: not a price
    labels={
        "action": "Action Indicator",
        "sku": "Ingram Part Number",
        "manufacturer": "Vendor Name",
        "description": "Description",
        "list_price": "Retail Price",
        "mpn": "Vendor Part Number",
        "cost": "Customer Price",
    },  # fmt: skip
)

# vendors.md §4.2. The file also carries "Customer Price with Tax": cost is the ex-tax column.
INGRAM_STDPRICE = Profile(
    name="ingram_stdprice",
    description="Ingram Micro STDPRICE_FULL.TXT (header row, SAP-style)",
    vendor="Ingram Micro",
    delimiter=",",
    file_names=("stdprice",),
    signature=frozenset(
        {"ingram part number", "vendor part number", "customer price", "customer currency code"}
    ),
    columns={
        "sku": "Ingram Part Number",
        "mpn": "Vendor Part Number",
        "description": ("Ingram Part Description", "Material Long Description"),
        "manufacturer": "Vendor Name",
        "cost": "Customer Price",
        "list_price": "Retail Price",
        "currency": ("Customer Currency Code", "Company code Currency"),
    },
)

# vendors.md §4.5. UnitPrice is the price of the whole term (P1Y = a year); the reader divides it to
# a monthly cost. SKU is ProductId:SkuId, which is also what MSPs put in the PSA's MPN field.
MS_CSP_NCE = Profile(
    name="ms_csp",
    description="Microsoft CSP new-commerce license-based price list",
    vendor="Microsoft",
    delimiter=",",
    decimal_mark=".",
    file_names=("nce", "pricelist_nce", "csp"),
    signature=frozenset({"productid", "skuid", "termduration", "unitprice"}),
    columns={
        "description": ("SkuTitle", "ProductTitle"),
        "manufacturer": "Publisher",
        "term": "TermDuration",
        "billing": "BillingPlan",
        "currency": "Currency",
        "cost": "UnitPrice",
        "list_price": "ERP Price",
        "effective_start": "EffectiveStartDate",
        "effective_end": "EffectiveEndDate",
    },
    joined={"sku": (("ProductId", "SkuId"), ":"), "mpn": (("ProductId", "SkuId"), ":")},
    price_per_term=True,
    # Trials (BillingPlan "None") are not costs. Segment-specific prices (Education, Government,
    # Charity) would collide with the commercial price of the same ProductId:SkuId; an MSP that
    # buys at those prices makes a profile of its own with another keep_only.
    keep_only={
        "BillingPlan": frozenset({"monthly", "annual", "triennial"}),
        "Segment": frozenset({"commercial", ""}),
    },
)

# vendors.md §4.3. Cost is Unit_Cost, not Contract_Price: Contract_Price includes promotions and
# rebates that expire (Promotion_Expiration_Date), so using it would make catalogue costs flap
# down and back up; the PSA cost should be the standing price. A promo is a margin bonus, not a
# cost change.
TD_SYNNEX = Profile(
    name="td_synnex",
    description="TD SYNNEX price & availability file (~ delimited)",
    vendor="TD SYNNEX",
    delimiter="~",
    decimal_mark=".",
    file_names=("synnex",),
    signature=frozenset({"manufacturer part", "synnex sku", "unit cost"}),
    columns={
        "sku": "SYNNEX_SKU",
        "mpn": "Manufacturer_Part",
        "description": "Part_Description",
        "manufacturer": "Manufacturer_Name",
        "cost": "Unit_Cost",
        "list_price": "MSRP",
    },
)

# vendors.md §4.4. Headerless, 17 fields; unit cost is zero-padded ("00010.00").
DH_ITEMLIST = Profile(
    name="dh_itemlist",
    description="D&H ITEMLIST (| delimited, headerless)",
    vendor="D&H",
    delimiter="|",
    decimal_mark=".",
    has_header=False,
    file_names=("itemlist",),
    field_count=(17, 17),
    columns={"sku": 4, "mpn": 5, "manufacturer": 8, "cost": 9, "description": (15, 16)},
    labels={
        "sku": "D&H Item Number",
        "mpn": "Manufacturer Item Number",
        "manufacturer": "Vendor Name",
        "cost": "Unit Cost",
        "description": "Short Description",
    },  # fmt: skip
)

BUILTIN_PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        p.name: p
        for p in (GENERIC, INGRAM_PRICE_TXT, INGRAM_STDPRICE, MS_CSP_NCE, TD_SYNNEX, DH_ITEMLIST)
    }
)


def merged_profiles(extra: Mapping[str, Profile] | None) -> dict[str, Profile]:
    """Built-in profiles plus the user's; a user profile with a built-in's name replaces it."""
    merged = dict(BUILTIN_PROFILES)
    if extra:
        merged.update(extra)
    return merged


# ------------------------------------------------------------------------------- config profiles

_CONFIG_KEYS = (
    "columns", "delimiter", "decimal_mark", "encoding", "currency", "vendor", "term", "has_header",
    "sheet", "signature", "file_names", "price_per_term", "description", "keep_only",
)  # fmt: skip
_DELIMITER_WORDS = {
    "tab": "\t",
    "\\t": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
    "tilde": "~",
}


def _bad(name: str, key: str, why: str) -> ProfileError:
    return ProfileError(f"price-file profile {name!r}: {key} {why}")


def _suggest(word: str, options: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def profile_from_config(name: str, table: Mapping[str, Any]) -> Profile:
    """Build a :class:`Profile` from one ``[vendor_profiles.NAME]`` config table.

    Example::

        [vendor_profiles.acme]
        vendor = "Acme Distribution"
        delimiter = ";"
        decimal_mark = ","
        currency = "EUR"
        columns = { sku = "Art.Nr", cost = "EK netto", description = "Bezeichnung", mpn = 3 }
        signature = ["Art.Nr", "EK netto"]

    A column is a header name, a 0-based position (headerless files), or a list of header names
    (the first one present is used). Raises :class:`ProfileError` naming the bad key.
    """
    if not name or not str(name).strip():
        raise ProfileError("a price-file profile needs a name")
    for key in table:
        if key not in _CONFIG_KEYS:
            raise _bad(name, repr(key), "is not a profile setting" + _suggest(key, _CONFIG_KEYS))
    raw_columns = table.get("columns")
    if not isinstance(raw_columns, Mapping) or not raw_columns:
        raise _bad(name, "columns", 'must be a table such as { sku = "Part No", cost = "Price" }')
    has_header = table.get("has_header", True)
    if not isinstance(has_header, bool):
        raise _bad(name, "has_header", "must be true or false")
    columns: dict[str, ColumnRef] = {}
    for fld, ref in raw_columns.items():
        if fld not in FIELDS:
            raise _bad(
                name, f"columns.{fld}", "is not a field costrecon reads" + _suggest(fld, FIELDS)
            )
        columns[fld] = _column_ref(name, fld, ref, has_header)
    for fld in REQUIRED_FIELDS:
        if fld not in columns:
            raise _bad(name, f"columns.{fld}", "is required (which column holds it?)")

    delimiter = table.get("delimiter")
    if delimiter is not None:
        delimiter = _DELIMITER_WORDS.get(str(delimiter).lower(), delimiter)
        if delimiter not in DELIMITERS:
            raise _bad(name, "delimiter", "must be one of , ; tab | ~")
    decimal_mark = table.get("decimal_mark")
    if decimal_mark not in (None, ".", ","):
        raise _bad(name, "decimal_mark", 'must be "." or ","')
    encoding = table.get("encoding")
    if encoding is not None:
        try:
            codecs.lookup(str(encoding))
        except LookupError:
            raise _bad(name, "encoding", f"{encoding!r} is not an encoding Python knows") from None
    currency = table.get("currency")
    if currency is not None:
        try:
            currency = normalise_currency(str(currency))
        except MoneyError as exc:
            raise _bad(name, "currency", str(exc)) from None
    term = table.get("term")
    if term is not None:
        try:
            term = normalise_term(str(term))
        except ValueError as exc:
            raise _bad(name, "term", str(exc)) from None
    for key in ("vendor", "sheet", "description"):
        if key in table and not isinstance(table[key], str):
            raise _bad(name, key, "must be text")
    signature = table.get("signature", [])
    file_names = table.get("file_names", [])
    for key, value in (("signature", signature), ("file_names", file_names)):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise _bad(name, key, "must be a list of text")
    price_per_term = table.get("price_per_term", False)
    if not isinstance(price_per_term, bool):
        raise _bad(name, "price_per_term", "must be true or false")
    keep_only = table.get("keep_only", {})
    if not isinstance(keep_only, Mapping) or not all(
        isinstance(v, list | tuple) and all(isinstance(x, str) for x in v)
        for v in keep_only.values()
    ):
        raise _bad(
            name,
            "keep_only",
            'must be a table of column = ["value", …] such as { Segment = ["Charity"] }',
        )
    return Profile(
        name=str(name),
        keep_only={k: frozenset(x.strip().casefold() for x in v) for k, v in keep_only.items()},
        columns=columns,
        delimiter=delimiter,
        decimal_mark=decimal_mark,
        encoding=encoding,
        currency=currency,
        vendor=table.get("vendor"),
        term=term,
        has_header=has_header,
        sheet=table.get("sheet"),
        signature=frozenset(header_key(s) for s in signature),
        file_names=tuple(f.lower() for f in file_names) or (str(name).lower(),),
        price_per_term=price_per_term,
        description=table.get("description", ""),
    )


def _column_ref(name: str, fld: str, ref: Any, has_header: bool) -> ColumnRef:
    key = f"columns.{fld}"
    if isinstance(ref, bool):
        raise _bad(name, key, "must be a header name or a column position")
    if isinstance(ref, int):
        if ref < 0:
            raise _bad(name, key, "must be a position counted from 0")
        return ref
    if isinstance(ref, str) and ref.strip():
        if not has_header:
            raise _bad(name, key, "must be a column position (0, 1, …): the file has no header row")
        return ref
    if isinstance(ref, list | tuple) and ref and all(isinstance(r, str) and r.strip() for r in ref):
        if not has_header:
            raise _bad(name, key, "must be a column position (0, 1, …): the file has no header row")
        return tuple(ref)
    raise _bad(name, key, "must be a header name, a list of header names, or a column position")
