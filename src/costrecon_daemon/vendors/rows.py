"""What every reading stage shares: the row and result types, the read-ahead limits and the
record helpers (records are ``(1-based row number, cells)``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from itertools import islice
from typing import Any

HEADER_SEARCH_ROWS = 10  # a header may sit under a title line or two ("Price list November 2026")
DECIMAL_SAMPLE_ROWS = 500
PEEK_ROWS = 1000  # rows read ahead to find the header and the decimal mark
PEEK_CHARS = 1 << 20


@dataclass(slots=True)
class VendorRow:
    row: int  # 1-based line (CSV) or sheet row (XLSX), as a person counts it
    vendor: str
    sku: str
    mpn: str | None
    manufacturer: str | None
    description: str
    term: str | None  # "P1M", "P1Y", "P2Y", "P3Y" or None (no term: hardware, one-off)
    billing: str | None  # "Monthly", "Annual", "Triennial", "OneTime" or None
    currency: str
    cost: Decimal  # per unit per month when the file prices whole terms (profile.price_per_term)
    list_price: Decimal | None


# A row as ``vendor_costs`` stores it (the stored form): ``(row, vendor, sku, mpn, manufacturer,
# description[:512], term, cost in integer ten-thousandths, currency)``. The reader process sends
# these; reading straight into them (``finish_read``'s ``stored_vendor``) makes no VendorRow, and
# no Decimal for a plain cost (issue 15: a distributor's 2,000,000 rows).
StoredRow = tuple[int, str, str, str | None, str | None, str, str | None, int, str]
DESCRIPTION_STORED = 512  # characters of a description vendor_costs keeps


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str | None
    message: str  # the whole sentence for people: "row 14, column Cost: '12,5x' is not a number"

    def __str__(self) -> str:
        return self.message


@dataclass
class ReadResult:
    profile: str
    vendor: str
    rows: list[VendorRow]
    errors: list[RowError]
    total_rows: int  # data rows in the file (blank lines and the header not counted)
    skipped: int = 0  # rows dropped on purpose: deletions, prices not in effect today, notes
    duplicates: int = 0  # identical repeated rows collapsed into one
    decimal_mark: str = "."
    delimiter: str | None = None  # None for workbooks and records
    encoding: str | None = None
    streamed: int = 0  # rows handed to a sink instead of kept in ``rows`` (streaming import)
    key_hashes: Any = None  # array('q') of row-key hashes when streamed (repeated-SKU check)

    @property
    def ok(self) -> bool:
        """True when the file can be imported: at least one row and no errors."""
        return bool(self.rows) and not self.errors


class FileUnreadable(Exception):
    """The file as a whole cannot be read; ``str()`` is one sentence that says what to do."""


def numbered(records: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) for the rows that have any content. Row numbers are physical lines for
    a csv reader (a quoted field may span lines) and positions otherwise."""
    line_num = getattr(records, "line_num", None)
    previous = 0
    for fields in records:
        if line_num is not None:
            number, previous = previous + 1, records.line_num  # type: ignore[attr-defined]
        else:
            number = previous = previous + 1
        if fields and any(str(c).strip() for c in fields):
            yield number, fields


def first_records(opener: Callable[[], Iterator[list[str]]]) -> list[tuple[int, list[str]]]:
    return list(islice(numbered(islice(opener(), PEEK_ROWS)), HEADER_SEARCH_ROWS))


def cell_text(value: object) -> str:
    """A workbook or API value as the text a person sees. Floats (openpyxl's numbers) go through
    their shortest repr, so 74.34 stays "74.34" and never becomes 74.3400000000000034."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        text = repr(value)
        return format(Decimal(text), "f") if "e" in text or "E" in text else text
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
