"""Read vendor price files (CSV/TXT/XLSX) into validated :class:`VendorRow` s.

One pipeline for every source (vendors.md §4): bytes → text (BOM, UTF-8, cp1252) or workbook →
records (1-based row number as a person counts it, list of cells) → profile choice and column plan →
:func:`_convert`, which validates every row and collects *all* errors (an import is all-or-nothing
downstream, DESIGN.md §3 "The watched folder never loses a file", so the error report must name
every bad row at once). API sources feed the same conversion through :func:`rows_from_records`.

Nothing here touches the database or the watched folder; nothing ever turns an amount into a float.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from itertools import chain, islice
from operator import attrgetter
from pathlib import Path
from xml.etree import ElementTree as ET

from costrecon_daemon.money import QUANT, MoneyError, normalise_currency
from costrecon_daemon.runtime import no_gc
from costrecon_daemon.vendors.normalise import (
    TERM_MONTHS,
    normalise_billing,
    normalise_term,
    parse_cost,
)
from costrecon_daemon.vendors.profiles import (
    DELIMITERS,
    Profile,
    header_key,
    merged_profiles,
)

__all__ = [
    "FileUnreadable",
    "ReadResult",
    "RowError",
    "VendorRow",
    "read_price_file",
    "rows_from_records",
]

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

    @property
    def ok(self) -> bool:
        """True when the file can be imported: at least one row and no errors."""
        return bool(self.rows) and not self.errors


class FileUnreadable(Exception):
    """The file as a whole cannot be read; ``str()`` is one sentence that says what to do."""


# ------------------------------------------------------------------------------------ public API


def read_price_file(
    path: Path,
    *,
    profile: str | None = None,
    profiles: Mapping[str, Profile] | None = None,
    default_currency: str = "USD",
    vendor: str | None = None,
    today: date | None = None,
) -> ReadResult:
    """Read one price file and validate every row.

    ``profile`` forces a layout by name; otherwise it is chosen from the header, the file name and
    the shape of the first row (see :mod:`.profiles`). ``profiles`` are extra (config) profiles,
    added to the built-in ones. ``vendor`` says who the rows are from (e.g. from the inbox
    subfolder) and beats the profile's vendor and any Vendor column; ``today`` is the date price validity is judged against (Microsoft price lists).

    Raises :class:`FileUnreadable` when the file as a whole cannot be used; row problems are
    returned in :attr:`ReadResult.errors`, all of them.
    """
    path = Path(path)
    name = path.name
    all_profiles = merged_profiles(profiles)
    forced = _lookup_profile(profile, all_profiles)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileUnreadable(f"{name} could not be opened ({exc.strerror or exc}).") from exc
    if not data.strip():
        raise FileUnreadable(f"{name} is empty; the copy may have failed — drop the file again.")

    if data[:4] == b"PK\x03\x04" or path.suffix.lower() in (".xlsx", ".xlsm", ".zip"):
        return _read_zip(path, data, forced, all_profiles, default_currency, vendor, today)
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise FileUnreadable(
            f"{name} is an old Excel 97-2003 (.xls) workbook; save it as .xlsx or CSV and drop it again."
        )
    return _read_text(name, data, forced, all_profiles, default_currency, vendor, today)


def rows_from_records(
    records: Iterable[Mapping[str, object]],
    profile: Profile | str,
    *,
    vendor: str | None = None,
    default_currency: str = "USD",
    today: date | None = None,
    profiles: Mapping[str, Profile] | None = None,
) -> ReadResult:
    """Validate rows that arrive as dicts (a distributor API, a parsed JSON export).

    Keys are matched to the profile's columns like a header row; row numbers are the 1-based
    position of each record. Values may be text, ``int`` or ``Decimal``; API clients should parse
    JSON numbers as ``Decimal`` (``json.loads(..., parse_float=Decimal)``).
    """
    prof = (
        profile
        if isinstance(profile, Profile)
        else _lookup_profile(profile, merged_profiles(profiles))
    )
    assert prof is not None
    iterator = iter(records)
    first = next(iterator, None)
    if first is None:
        raise FileUnreadable(f"the {prof.name} source returned no price rows.")
    keys = list(first.keys())
    plan = _match_header(prof, keys)
    if plan is None:
        raise FileUnreadable(
            f"the {prof.name} source does not carry the columns its profile needs "
            f"({_needed_columns(prof)})."
        )

    def cells(source: Iterable[Mapping[str, object]]) -> Iterator[list[str]]:
        for record in source:
            yield [_cell_text(record.get(k)) for k in keys]

    head = [[_cell_text(first.get(k)) for k in keys], *cells(islice(iterator, PEEK_ROWS))]

    def opener() -> Iterator[list[str]]:
        return chain(head, cells(iterator))

    return _finish(prof, plan, opener, 0, "source", default_currency, vendor, today, None, None)


# ------------------------------------------------------------------------------------ text files


def _read_text(
    name: str,
    data: bytes,
    forced: Profile | None,
    all_profiles: Mapping[str, Profile],
    default_currency: str,
    vendor: str | None,
    today: date | None,
) -> ReadResult:
    text, encoding = _decode(name, data, forced.encoding if forced else None)
    head_lines = [line for line in text[:65536].splitlines()[:40] if line.strip()]
    if not head_lines:
        raise FileUnreadable(f"{name} is empty; the copy may have failed — drop the file again.")
    first = head_lines[0].strip().lower()
    if first.startswith("sep=") and len(first) in (5, 6):
        # Excel's separator hint line ("sep=;"): trust it; the header search steps over it.
        hinted = head_lines[0].strip()[4:] or "\t"
        sniffed = hinted if hinted in DELIMITERS else _sniff_delimiter(head_lines[1:])
    else:
        sniffed = _sniff_delimiter(head_lines)

    cut = text.rfind("\n", 0, PEEK_CHARS)
    head_text = text if len(text) <= PEEK_CHARS or cut < 0 else text[: cut + 1]
    split: dict[bool, list[str] | None] = {}

    def opener_for(delimiter: str, peek: bool = False) -> Callable[[], Iterator[list[str]]]:
        def opener() -> Iterator[list[str]]:
            source = head_text if peek else text
            if peek not in split:  # split once: the file is read ahead two or three times
                split[peek] = _lines(source)
            lines = split[peek]
            if lines is None:
                return csv.reader(io.StringIO(source, newline=""), delimiter=delimiter)
            return csv.reader(lines, delimiter=delimiter)

        return opener

    try:
        prof = forced or _choose_profile(
            name, _first_records(opener_for(sniffed or ",", peek=True)), all_profiles, sniffed
        )
        delimiter = prof.delimiter or sniffed or ","
        opener = opener_for(delimiter)
        plan, skip = _locate_columns(prof, opener, name)
        return _finish(
            prof, plan, opener, skip, name, default_currency, vendor, today, delimiter, encoding
        )
    except csv.Error as exc:
        raise FileUnreadable(f"{name} cannot be read as delimited text ({exc}).") from exc


_EXOTIC_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _lines(text: str) -> list[str] | None:
    """Lines for csv.reader, or None when only a StringIO will do. ``str.splitlines`` is the
    fastest split but also breaks at form feeds and Unicode separators that may sit inside a
    description, so it is used only when the text has none of them."""
    if any(ch in text for ch in _EXOTIC_BREAKS):
        return None
    return text.splitlines(keepends=True)


def _decode(name: str, data: bytes, encoding: str | None) -> tuple[str, str]:
    """Bytes → text. BOMs win; then UTF-8; then cp1252, the Windows code page Excel's plain "CSV"
    save uses in the US and western Europe (vendors.md §4.8)."""
    if encoding:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            raise FileUnreadable(
                f"{name} is not {encoding} text as its profile says (byte {exc.start} does not decode)."
            ) from exc
    if data.startswith(b"\xff\xfe") or data.startswith(b"\xfe\xff"):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise FileUnreadable(f"{name} starts like UTF-16 text but is damaged.") from exc
    head = data[:8192]
    if b"\x00" in head:
        # UTF-16 saved without a BOM shows a NUL in every other byte; anything else with NULs is
        # not text.
        if len(head) >= 8 and head[1::2].count(0) > len(head) // 2 * 0.9:
            return data.decode("utf-16-le", errors="replace"), "utf-16-le"
        raise FileUnreadable(
            f"{name} is not a text price file (it contains binary data); export the price list "
            "from the vendor portal as CSV or XLSX and drop that instead."
        )
    if data.startswith(b"%PDF"):
        raise FileUnreadable(f"{name} is a PDF; costrecon reads CSV, TXT and XLSX price files.")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    text = data.decode("cp1252", errors="replace")
    controls = sum(1 for ch in text[:4096] if ch < " " and ch not in "\r\n\t")
    if controls > 8:
        raise FileUnreadable(
            f"{name} is not a text price file (it contains binary data); export the price list "
            "from the vendor portal as CSV or XLSX and drop that instead."
        )
    return text, "cp1252"


def _sniff_delimiter(lines: list[str]) -> str | None:
    """The delimiter among , ; tab | ~ that splits the first lines most consistently into the
    most columns. Parsing (not counting characters) keeps quoted commas and decimal commas from
    voting."""
    best: tuple[float, int] | None = None
    choice = None
    sample = lines[:20]
    for delimiter in DELIMITERS:
        try:
            counts = [len(r) for r in csv.reader(sample, delimiter=delimiter) if r]
        except csv.Error:
            continue
        if not counts or max(counts) < 2:
            continue
        common, _ = Counter(counts).most_common(1)[0]
        if common < 2:
            continue
        share = sum(1 for c in counts if c == common) / len(counts)
        score = (round(share, 1), common)
        if best is None or score > best:
            best, choice = score, delimiter
    return choice


def _numbered(records: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
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


def _first_records(opener: Callable[[], Iterator[list[str]]]) -> list[tuple[int, list[str]]]:
    return list(islice(_numbered(islice(opener(), PEEK_ROWS)), HEADER_SEARCH_ROWS))


# -------------------------------------------------------------------------------- zip and xlsx


def _read_zip(
    path: Path,
    data: bytes,
    forced: Profile | None,
    all_profiles: Mapping[str, Profile],
    default_currency: str,
    vendor: str | None,
    today: date | None,
) -> ReadResult:
    name = path.name
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileUnreadable(
            f"{name} is not a readable Excel workbook or zip (the file is damaged or was only "
            "partly copied); export or copy it again."
        ) from exc
    if "xl/workbook.xml" in members:
        return _read_xlsx(name, archive, forced, all_profiles, default_currency, vendor, today)
    # Distributors ship zipped text (Ingram PRICE.ZIP, STDPRICE_FULL.ZIP): read the one price
    # file inside, named as itself so the file-name rules still apply.
    texts = [
        m for m in members if m.lower().endswith((".txt", ".csv", ".tsv")) and not m.endswith("/")
    ]
    if len(texts) != 1:
        raise FileUnreadable(
            f"{name} is a zip archive with {len(texts)} price files inside; costrecon reads a zip "
            "only when it holds exactly one .txt/.csv file."
        )
    try:
        inner = archive.read(texts[0])
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FileUnreadable(
            f"{name} is damaged or was only partly copied; copy it again."
        ) from exc
    inner_name = Path(texts[0]).name
    if not inner.strip():
        raise FileUnreadable(f"{name} holds an empty {inner_name}; download the price file again.")
    return _read_text(inner_name, inner, forced, all_profiles, default_currency, vendor, today)


def _read_xlsx(
    name: str,
    archive: zipfile.ZipFile,
    forced: Profile | None,
    all_profiles: Mapping[str, Profile],
    default_currency: str,
    vendor: str | None,
    today: date | None,
) -> ReadResult:
    damaged = (
        f"{name} is not a readable Excel workbook (the file is damaged or was only partly "
        "copied); export it again."
    )
    try:
        workbook = _Workbook(archive)
    except _NotPlainXlsx:
        return _read_xlsx_openpyxl(
            name, archive, forced, all_profiles, default_currency, vendor, today
        )
    except (KeyError, ET.ParseError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise FileUnreadable(damaged) from exc

    def sheet_rows(sheet_name: str | None) -> Iterator[list[str]]:
        try:
            yield from workbook.rows(sheet_name)
        except _NoSuchSheet:
            raise FileUnreadable(
                f"{name} has no sheet named {sheet_name!r} (it has: {', '.join(workbook.sheet_names)})."
            ) from None
        except (KeyError, ET.ParseError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise FileUnreadable(damaged) from exc

    prof = forced or _choose_profile(
        name, _first_records(lambda: sheet_rows(None)), all_profiles, None, workbook=True
    )
    sheet_name = prof.sheet

    def opener() -> Iterator[list[str]]:
        return sheet_rows(sheet_name)

    plan, skip = _locate_columns(prof, opener, name)
    return _finish(prof, plan, opener, skip, name, default_currency, vendor, today, None, None)


class _NotPlainXlsx(Exception):
    """A workbook flavour the lean reader does not handle (strict OOXML): openpyxl reads it."""


class _NoSuchSheet(Exception):
    pass


_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"


class _Workbook:
    """A lean streaming reader for the sheet data of an .xlsx: cell text only, no styles.

    openpyxl's read-only mode builds descriptor objects for every row and cell and took 8 s for a
    50,000-row price list on the 2-core reference machine (goal: under 5 s). Price files need
    only values, so this reads the sheet XML with expat (``iterparse``) and the shared strings,
    nothing else. Formulas are data: a cell with ``<f>`` reads as ``=formula`` and is refused as a
    cost. Numbers keep the digits Excel wrote; the rare 17-digit binary expansions
    ("74.340000000000003") are reduced to their shortest round-trip form so they read as people
    typed them.
    """

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        root = ET.fromstring(archive.read("xl/workbook.xml"))
        if not root.tag.startswith("{" + _MAIN_NS + "}"):
            raise _NotPlainXlsx(root.tag)
        rels_root = ET.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
        targets = {
            rel.get("Id"): rel.get("Target", "")
            for rel in rels_root.iter(f"{{{_PKG_REL_NS}}}Relationship")
        }
        self.sheets: list[tuple[str, str]] = []
        for sheet in root.iter(f"{{{_MAIN_NS}}}sheet"):
            target = targets.get(sheet.get(f"{{{_REL_NS}}}id"), "")
            path = target.lstrip("/") if target.startswith("/") else "xl/" + target
            self.sheets.append((sheet.get("name", ""), path))
        if not self.sheets:
            raise KeyError("no sheets")
        self.sheet_names = [n for n, _ in self.sheets]
        self._shared: list[str] | None = None

    def shared_strings(self) -> list[str]:
        if self._shared is None:
            strings: list[str] = []
            if "xl/sharedStrings.xml" in self.archive.namelist():
                si_tag, t_tag = f"{{{_MAIN_NS}}}si", f"{{{_MAIN_NS}}}t"
                rph_tag = f"{{{_MAIN_NS}}}rPh"
                with self.archive.open("xl/sharedStrings.xml") as fh:
                    for _, el in ET.iterparse(fh):
                        if el.tag == si_tag:
                            # rich text: the runs' <t>s joined; phonetic hints (<rPh>) skipped
                            parts = []
                            for child in el:
                                if child.tag == t_tag:
                                    parts.append(child.text or "")
                                elif child.tag != rph_tag:
                                    parts.extend(t.text or "" for t in child.iter(t_tag))
                            strings.append("".join(parts))
                            el.clear()
            self._shared = strings
        return self._shared

    def rows(self, sheet_name: str | None) -> Iterator[list[str]]:
        if sheet_name is None:
            path = self.sheets[0][1]
        else:
            found = [p for n, p in self.sheets if n == sheet_name]
            if not found:
                raise _NoSuchSheet(sheet_name)
            path = found[0]
        shared = self.shared_strings()
        ns = "{" + _MAIN_NS + "}"
        row_tag, v_tag, f_tag, is_tag = ns + "row", ns + "v", ns + "f", ns + "is"
        t_tag = ns + "t"
        columns: dict[str, int] = {}
        expected = 1
        with self.archive.open(path) as fh:
            for _, el in ET.iterparse(fh):
                if el.tag != row_tag:
                    continue
                r = el.get("r")
                number = int(r) if r else expected
                while expected < number:  # rows Excel left out are empty rows
                    yield []
                    expected += 1
                expected = number + 1
                cells: list[str] = []
                for c in el:
                    ref = c.get("r")
                    if ref:
                        letters = ref.rstrip("0123456789")
                        col = columns.get(letters)
                        if col is None:
                            col = columns[letters] = _column_index(letters)
                        if col > len(cells):
                            cells.extend([""] * (col - len(cells)))
                    kind = c.get("t")
                    formula = c.find(f_tag)
                    if formula is not None:
                        cells.append("=" + (formula.text or "…"))
                        continue
                    if kind == "inlineStr":
                        box = c.find(is_tag)
                        text = (
                            "".join(t.text or "" for t in box.iter(t_tag))
                            if box is not None
                            else ""
                        )
                        cells.append(text)
                        continue
                    value = c.find(v_tag)
                    text = value.text or "" if value is not None else ""
                    if kind == "s":
                        cells.append(shared[int(text)] if text else "")
                    elif kind is None or kind == "n":
                        cells.append(_number_text(text))
                    elif kind == "b":
                        cells.append("TRUE" if text == "1" else "FALSE")
                    else:  # "str" (formula text result), "e" (#N/A…), "d" (ISO date)
                        cells.append(text)
                el.clear()
                yield cells


def _column_index(letters: str) -> int:
    index = 0
    for ch in letters.upper():
        index = index * 26 + (ord(ch) - 64)
    return index - 1


def _number_text(text: str) -> str:
    """A number as Excel stored it, made readable: "1189" and "74.34" pass through; binary
    expansions (more than 15 significant digits) and exponents take the shortest round-trip
    form. The float here is only a formatting step on text; no float reaches a cost."""
    if len(text) <= 15 and "E" not in text and "e" not in text:
        return text
    try:
        shortest = repr(float(text))
    except ValueError:
        return text
    if shortest.endswith(".0"):
        shortest = shortest[:-2]
    return format(Decimal(shortest), "f") if "e" in shortest else shortest


def _read_xlsx_openpyxl(
    name: str,
    archive: zipfile.ZipFile,
    forced: Profile | None,
    all_profiles: Mapping[str, Profile],
    default_currency: str,
    vendor: str | None,
    today: date | None,
) -> ReadResult:
    import openpyxl  # imported here: only unusual workbooks need it

    try:
        # data_only=False: a formula cell arrives as its text ("=B2*1.1") and is refused as a
        # cost. Cached formula results can be stale or absent; a price must be a typed value.
        workbook = openpyxl.load_workbook(archive.fp, read_only=True, data_only=False)  # type: ignore[arg-type]
    except Exception as exc:  # openpyxl raises many types for damaged workbooks
        raise FileUnreadable(
            f"{name} is not a readable Excel workbook (the file is damaged or was only partly "
            "copied); export it again."
        ) from exc
    try:

        def sheet_rows(sheet_name: str | None) -> Iterator[list[str]]:
            if sheet_name:
                if sheet_name not in workbook.sheetnames:
                    raise FileUnreadable(
                        f"{name} has no sheet named {sheet_name!r} (it has: {', '.join(workbook.sheetnames)})."
                    )
                sheet = workbook[sheet_name]
            else:
                sheet = workbook.worksheets[0]
            sheet.reset_dimensions()  # some exporters write a wrong <dimension>; read what is there
            try:
                for values in sheet.iter_rows(values_only=True):
                    yield [_cell_text(v) for v in values]
            except (zipfile.BadZipFile, EOFError, KeyError, OSError) as exc:
                raise FileUnreadable(
                    f"{name} is damaged or was only partly copied; export it again."
                ) from exc

        prof = forced or _choose_profile(
            name, _first_records(lambda: sheet_rows(None)), all_profiles, None, workbook=True
        )
        sheet_name = prof.sheet

        def opener() -> Iterator[list[str]]:
            return sheet_rows(sheet_name)

        plan, skip = _locate_columns(prof, opener, name)
        return _finish(prof, plan, opener, skip, name, default_currency, vendor, today, None, None)
    finally:
        workbook.close()


def _cell_text(value: object) -> str:
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


# ---------------------------------------------------------------------------- profile choice


@dataclass
class _Plan:
    index: dict[str, int]  # field -> column position
    joined: dict[str, tuple[tuple[int, ...], str]]
    names: dict[str, str]  # field -> column name for messages
    width: int
    keep_only: tuple[tuple[int, frozenset[str]], ...] = ()  # (column, accepted casefolded values)


def _lookup_profile(name: str | None, all_profiles: Mapping[str, Profile]) -> Profile | None:
    if name is None:
        return None
    try:
        return all_profiles[name]
    except KeyError:
        known = ", ".join(sorted(all_profiles))
        raise FileUnreadable(
            f"there is no price-file profile named {name!r} (known: {known})."
        ) from None


def _match_header(prof: Profile, cells: list[str]) -> _Plan | None:
    """Resolve a profile's columns against a header row; None if a required column is missing."""
    positions: dict[str, int] = {}
    for i, cell in enumerate(cells):
        positions.setdefault(header_key(cell), i)

    def find(ref: str | int | tuple[str | int, ...]) -> int | None:
        for alt in ref if isinstance(ref, tuple) else (ref,):
            if isinstance(alt, int):
                return alt if alt < len(cells) else None
            found = positions.get(header_key(alt))
            if found is not None:
                return found
        return None

    index: dict[str, int] = {}
    names: dict[str, str] = {}
    for fld, ref in prof.columns.items():
        found = find(ref)
        if found is not None:
            index[fld] = found
            names[fld] = str(cells[found]).replace("\ufeff", "").strip()
    joined: dict[str, tuple[tuple[int, ...], str]] = {}
    for fld, (refs, sep) in prof.joined.items():
        parts = [find(r) for r in refs]
        if any(p is None for p in parts):
            continue
        joined[fld] = (tuple(p for p in parts if p is not None), sep)
        names[fld] = "+".join(str(cells[p]).strip() for p in parts if p is not None)
    if "sku" not in index and "sku" not in joined and "mpn" in index:
        index["sku"], names["sku"] = index["mpn"], names["mpn"]  # a file keyed by MPN only
    if ("sku" not in index and "sku" not in joined) or "cost" not in index:
        return None
    keep = tuple(
        (at, accepted) for ref, accepted in prof.keep_only.items() if (at := find(ref)) is not None
    )
    width = (
        max(
            [
                *index.values(),
                *(p for parts, _ in joined.values() for p in parts),
                *(a for a, _ in keep),
            ]
        )
        + 1
    )
    return _Plan(index, joined, names, width, keep)


def _positional_plan(prof: Profile) -> _Plan:
    index = {f: r for f, r in prof.columns.items() if isinstance(r, int)}
    # A tuple of positions in a headerless profile means "first non-empty": handled as a join of
    # one column here (the first position), the rest being fallbacks people rarely need.
    for f, r in prof.columns.items():
        if isinstance(r, tuple) and r and isinstance(r[0], int):
            index[f] = r[0]
    joined = {f: (tuple(int(p) for p in refs), sep) for f, (refs, sep) in prof.joined.items()}
    names = {f: f"{prof.labels.get(f, f)} (field {i + 1})" for f, i in index.items()}
    for f, (parts, _) in joined.items():
        names[f] = f"{prof.labels.get(f, f)} (fields {'+'.join(str(p + 1) for p in parts)})"
    keep = tuple((r, a) for r, a in prof.keep_only.items() if isinstance(r, int))
    width = (
        max(
            [
                *index.values(),
                *(p for parts, _ in joined.values() for p in parts),
                *(a for a, _ in keep),
            ]
        )
        + 1
    )
    return _Plan(index, joined, names, width, keep)  # type: ignore[arg-type]


def _choose_profile(
    name: str,
    first: list[tuple[int, list[str]]],
    all_profiles: Mapping[str, Profile],
    sniffed: str | None,
    *,
    workbook: bool = False,
) -> Profile:
    """Header signature → file name → headerless shape → generic header synonyms."""
    if not first:
        raise FileUnreadable(f"{name} has no rows.")
    lowered = name.lower()
    # 1. A header row with a profile's signature headers (most specific first).
    signed = sorted(
        (p for p in all_profiles.values() if p.has_header and p.signature),
        key=lambda p: -len(p.signature),
    )
    for _, cells in first:
        keys = {header_key(c) for c in cells}
        for prof in signed:
            if prof.signature <= keys and _match_header(prof, cells) is not None:
                return prof
    # 2. The file name (longest fragment first, so STDPRICE_FULL.TXT is not PRICE.TXT).
    by_name = sorted(
        ((frag, p) for p in all_profiles.values() for frag in (*p.file_names, p.name.lower())),
        key=lambda fp: -len(fp[0]),
    )
    for frag, prof in by_name:
        if (
            prof.name != "generic"
            and frag
            and frag in lowered
            and (
                _fits_shape(prof, first[0][1])
                if not prof.has_header
                else any(_match_header(prof, c) for _, c in first)
            )
        ):
            return prof
    # 3. Headerless layouts recognised by their shape.
    cells = first[0][1]
    for prof in all_profiles.values():
        if prof.has_header or prof.field_count is None:
            continue
        if not workbook and prof.delimiter and prof.delimiter != sniffed:
            continue
        low, high = prof.field_count
        if not low <= len(cells) <= high:
            continue
        action = prof.columns.get("action")
        if isinstance(action, int) and cells[action].strip().upper() not in {"A", "C", "D"}:
            continue
        return prof
    # 4. Any header with a SKU (or MPN) column and a cost column.
    for prof in all_profiles.values():
        if prof.has_header and not prof.signature:
            for _, cells in first:
                if _match_header(prof, cells) is not None:
                    return prof
    raise FileUnreadable(
        f"{name} has no header row costrecon recognises: it needs a SKU (or part number) column "
        "and a cost column, or a vendor profile named in the config or in the file name."
    )


def _fits_shape(prof: Profile, cells: list[str]) -> bool:
    if prof.field_count is None:
        return True
    low, high = prof.field_count
    return low <= len(cells) <= high


def _locate_columns(
    prof: Profile, opener: Callable[[], Iterator[list[str]]], name: str
) -> tuple[_Plan, int]:
    """Find the header row for ``prof`` within the first rows: the column plan and how many raw
    records (blank ones included) precede the data."""
    if not prof.has_header:
        return _positional_plan(prof), 0
    seen = 0
    for position, cells in enumerate(islice(opener(), PEEK_ROWS), start=1):
        plan = _match_header(prof, cells)
        if plan is not None:
            return plan, position
        if any(str(c).strip() for c in cells):
            seen += 1
            if seen >= HEADER_SEARCH_ROWS:
                break
    raise FileUnreadable(
        f"{name} does not have the header the {prof.name} profile expects ({_needed_columns(prof)})."
    )


def _needed_columns(prof: Profile) -> str:
    def show(ref: object) -> str:
        return " or ".join(repr(r) for r in ref) if isinstance(ref, tuple) else repr(ref)

    needed = []
    for fld in ("sku", "cost"):
        if fld in prof.columns:
            needed.append(f"{fld}: {show(prof.columns[fld])}")
        elif fld in prof.joined:
            needed.append(f"{fld}: {' + '.join(repr(r) for r in prof.joined[fld][0])}")
    return "; ".join(needed)


# -------------------------------------------------------------------------------- conversion


def _detect_decimal_mark(samples: list[str], delimiter: str | None) -> str:
    """Vote per cost cell on which separator is the decimal mark. A last separator followed by
    other than three digits is a decimal mark; ``1,234`` alone proves nothing. Undecided files
    follow the delimiter: Excel writes ``;`` exactly where the decimal mark is ``,`` (§4.8)."""
    comma = dot = 0
    for raw in samples:
        text = raw.strip()
        last_c, last_d = text.rfind(","), text.rfind(".")
        if last_c == last_d:  # both -1
            continue
        mark = "," if last_c > last_d else "."
        at = max(last_c, last_d)
        digits = 0
        for ch in text[at + 1 :]:
            if not ch.isdigit():
                break
            digits += 1
        other_before = (last_d if mark == "," else last_c) != -1
        if digits != 3 or other_before:
            if mark == ",":
                comma += 1
            else:
                dot += 1
        elif mark == "." and text.count(".") > 1:
            comma += 1  # 1.234.567: dots group thousands
        elif mark == "," and text.count(",") > 1:
            dot += 1
    if comma != dot:
        return "," if comma > dot else "."
    return "," if delimiter == ";" else "."


_DATE_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y")


def _parse_date(text: str) -> date:
    text = text.strip()
    if text.replace(".", "", 1).isdigit() and 1 <= float(text) < 2958466:
        # an Excel date cell read without its style: days since 1899-12-30
        return date(1899, 12, 30) + timedelta(days=int(float(text)))
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date")


def _finish(
    prof: Profile,
    plan: _Plan,
    opener: Callable[[], Iterator[list[str]]],
    skip: int,
    name: str,
    default_currency: str,
    vendor: str | None,
    today: date | None,
    delimiter: str | None,
    encoding: str | None,
) -> ReadResult:
    if prof.decimal_mark:
        decimal_mark = prof.decimal_mark
    else:
        cost_at = plan.index["cost"]
        head = islice(opener(), skip, skip + DECIMAL_SAMPLE_ROWS)
        samples = [cells[cost_at] for cells in head if cost_at < len(cells)]
        decimal_mark = _detect_decimal_mark(samples, delimiter)
    records = opener()
    if skip:
        next(islice(records, skip - 1, skip), None)  # past the header
    with no_gc():
        result = _convert(
            records,
            skip,
            plan,
            prof,
            vendor=vendor or prof.vendor,
            vendor_forced=vendor is not None,
            default_currency=default_currency,
            decimal_mark=decimal_mark,
            today=today or date.today(),
        )
    if result.total_rows == 0:
        raise FileUnreadable(f"{name} has a header but no price rows.")
    if not result.rows and not result.errors:
        raise FileUnreadable(
            f"{name} has no usable price rows: all {result.total_rows} rows were skipped "
            "(deleted items, or prices not in effect today)."
        )
    result.delimiter, result.encoding = delimiter, encoding
    return result


def _convert(
    records: Iterator[list[str]],
    skipped_records: int,
    plan: _Plan,
    prof: Profile,
    *,
    vendor: str | None,
    vendor_forced: bool = False,
    default_currency: str,
    decimal_mark: str,
    today: date,
) -> ReadResult:
    """Validate and convert rows. This loop is the intake hot path (benchmarks/intake.py): plain
    amounts take a fast path with no regex, lookups of repeated text (currency, term) are cached,
    and each row costs one list and one VendorRow."""
    rows: list[VendorRow] = []
    errors: list[RowError] = []
    index, joined, names = plan.index, plan.joined, plan.names
    width = plan.width
    get = index.get
    i_sku, i_cost = get("sku"), index["cost"]
    i_mpn, i_mfr, i_desc = get("mpn"), get("manufacturer"), get("description")
    i_term, i_bill, i_cur = get("term"), get("billing"), get("currency")
    i_list, i_vendor, i_action = get("list_price"), get("vendor"), get("action")
    if vendor_forced:
        i_vendor = None  # the caller knows better than a "Vendor" column (often the publisher)
    i_start, i_end = get("effective_start"), get("effective_end")
    sku_join = joined.get("sku")
    desc_join = joined.get("description")
    mpn_join = joined.get("mpn")
    skip_actions = prof.skip_actions
    keep_only = plan.keep_only
    per_term = prof.price_per_term
    file_vendor = vendor or ""
    vendor_counts: Counter[str] = Counter()

    try:
        file_currency = normalise_currency(prof.currency or default_currency)
    except MoneyError as exc:
        raise FileUnreadable(f"the default currency is not usable: {exc}.") from exc
    try:
        file_term = normalise_term(prof.term) if prof.term else None
    except ValueError as exc:  # pragma: no cover - validated in profile_from_config
        raise FileUnreadable(str(exc)) from exc

    quant, half_even = QUANT, ROUND_HALF_EVEN
    dec = Decimal
    fast_comma = decimal_mark == ","
    currency_cache: dict[str, str] = {}
    term_cache: dict[str, str | None] = {}
    billing_cache: dict[str, str | None] = {}
    missing = object()
    date_cache: dict[str, date | ValueError] = {}
    starts: list[date] = []
    total = skipped = duplicates = 0
    new_row = VendorRow
    append = rows.append

    def error(number: int, fld: str | None, text: str) -> None:
        column = names.get(fld) if fld else None
        where = f"row {number}, column {column}" if column else f"row {number}"
        errors.append(RowError(number, column, f"{where}: {text}"))

    def cached_date(raw: str) -> date | ValueError:
        got = date_cache.get(raw)
        if got is None:
            try:
                got = _parse_date(raw)
            except ValueError as exc:
                got = exc
            date_cache[raw] = got
        return got

    csv_reader = records if hasattr(records, "line_num") else None
    previous = csv_reader.line_num if csv_reader is not None else skipped_records  # type: ignore[attr-defined]
    number = previous
    for f in records:
        if csv_reader is not None:
            number, previous = previous + 1, csv_reader.line_num
        else:
            number += 1
        if not f:
            continue
        if len(f) < width:
            f = f + [""] * (width - len(f))
        if sku_join is None:
            sku = f[i_sku].strip()  # type: ignore[index]
        else:
            parts = [f[i].strip() for i in sku_join[0]]
            sku = sku_join[1].join(parts) if all(parts) else ""
        raw_cost = f[i_cost].strip()
        if not sku and not raw_cost:
            filled = sum(1 for c in f if c.strip())
            if filled == 0:
                continue  # an empty row (",,,,")
            if filled == 1:
                total += 1
                skipped += 1  # a heading or note line ("Microsoft cloud", "End of list")
                continue
        total += 1
        if i_action is not None and skip_actions and f[i_action].strip().upper() in skip_actions:
            skipped += 1
            continue
        if keep_only and any(f[at].strip().casefold() not in ok for at, ok in keep_only):
            skipped += 1
            continue
        bad = False
        if not sku:
            error(number, "sku", "no SKU; every price row needs one")
            bad = True

        # Cost: fast path for plain amounts ("123.45", "0000074.34"), strict parser otherwise.
        symbol_currency = None
        cost = None
        plain = raw_cost.replace(decimal_mark, "", 1)
        try:
            if plain.isdigit() and plain.isascii():
                cost = dec(raw_cost.replace(",", ".") if fast_comma else raw_cost).quantize(
                    quant, rounding=half_even
                )
            else:
                cost, symbol_currency = parse_cost(raw_cost, decimal_mark)
                if cost < 0:
                    error(number, "cost", f"{raw_cost!r} is negative; a cost cannot be below zero")
                    bad = True
        except MoneyError as exc:
            text = str(exc)
            if text == "is empty":
                text = "no cost; every price row needs one"
            error(number, "cost", text)
            bad = True
        except InvalidOperation:
            error(number, "cost", f"{raw_cost!r} is too large to be a cost")
            bad = True

        # Currency, term and billing words repeat on every row: each distinct text is
        # normalised once. Only good values are cached; a bad one is reported on every row.
        if i_cur is not None:
            raw_currency = f[i_cur]
            currency = currency_cache.get(raw_currency)
            if currency is None:
                try:
                    currency = currency_cache[raw_currency] = (
                        normalise_currency(raw_currency) if raw_currency.strip() else file_currency
                    )
                except MoneyError as exc:
                    error(number, "currency", str(exc))
                    bad = True
            if symbol_currency and currency and symbol_currency != currency:
                error(
                    number,
                    "cost",
                    f"{raw_cost!r} is in {symbol_currency} but the row's currency is {currency}",
                )
                bad = True
        else:
            currency = symbol_currency or file_currency

        if i_term is not None:
            raw_term = f[i_term]
            term = term_cache.get(raw_term, missing)
            if term is missing:
                try:
                    term = term_cache[raw_term] = (
                        normalise_term(raw_term) if raw_term.strip() else file_term
                    )
                except ValueError as exc:
                    error(number, "term", str(exc))
                    bad = True
        else:
            term = file_term

        if i_bill is not None:
            raw_bill = f[i_bill]
            billing = billing_cache.get(raw_bill, missing)
            if billing is missing:
                try:
                    billing = billing_cache[raw_bill] = normalise_billing(raw_bill)
                except ValueError as exc:
                    error(number, "billing", str(exc))
                    bad = True
        else:
            billing = None

        start = None
        if i_start is not None:
            # Microsoft lists carry past and future prices side by side: only the row in effect
            # today is a cost (vendors.md §4.5).
            raw_start = f[i_start].strip()
            raw_end = f[i_end].strip() if i_end is not None else ""
            start = cached_date(raw_start) if raw_start else date.min
            end = cached_date(raw_end) if raw_end else date.max
            if isinstance(start, ValueError):
                error(number, "effective_start", str(start))
                bad = True
            elif isinstance(end, ValueError):
                error(number, "effective_end", str(end))
                bad = True
            elif not start <= today <= end:
                skipped += 1
                continue

        if bad:
            continue

        list_price = None
        if i_list is not None:
            raw_list = f[i_list].strip()
            if raw_list:
                try:
                    list_price, _ = parse_cost(raw_list, decimal_mark)
                except MoneyError:
                    list_price = None  # informational only: a bad MSRP never blocks a cost import

        if per_term:
            months = TERM_MONTHS.get(term) if isinstance(term, str) else None  # type: ignore[arg-type]
            if months and months > 1 and billing != "OneTime":
                # vendors.md §4.5/§5.4: UnitPrice is for the whole term; the PSA cost is monthly.
                cost = (cost / months).quantize(quant, rounding=half_even)  # type: ignore[operator]
                if list_price is not None:
                    list_price = (list_price / months).quantize(quant, rounding=half_even)

        if desc_join is not None:
            description = desc_join[1].join(p for p in (f[i].strip() for i in desc_join[0]) if p)
        else:
            description = f[i_desc].strip() if i_desc is not None else ""
        if i_vendor is not None:
            row_vendor = f[i_vendor].strip() or file_vendor
            vendor_counts[row_vendor] += 1
        else:
            row_vendor = file_vendor

        if mpn_join is not None:
            parts = [f[i].strip() for i in mpn_join[0]]
            mpn = mpn_join[1].join(parts) if all(parts) else None
        else:
            mpn = (f[i_mpn].strip() or None) if i_mpn is not None else None

        append(
            new_row(
                number,
                row_vendor,
                sku,
                mpn,
                (f[i_mfr].strip() or None) if i_mfr is not None else None,
                description,
                term,  # type: ignore[arg-type]
                billing,  # type: ignore[arg-type]
                currency,  # type: ignore[arg-type]
                cost,  # type: ignore[arg-type]
                list_price,
            )
        )
        if start is not None:
            starts.append(start)  # type: ignore[arg-type]

    # Duplicates: one C-speed set over the SKUs proves the common case (no SKU twice) without a
    # per-row dict; only files that repeat a SKU (every Microsoft list does, per term) take the
    # keyed pass.
    if len(set(map(_SKU, rows))) != len(rows):
        rows, duplicates = _collapse_duplicates(rows, starts or None, error)
    errors.sort(key=_ROW)

    result_vendor = vendor_counts.most_common(1)[0][0] if vendor_counts else file_vendor
    return ReadResult(
        profile=prof.name,
        vendor=result_vendor or "",
        rows=rows,
        errors=errors,
        total_rows=total,
        skipped=skipped,
        duplicates=duplicates,
        decimal_mark=decimal_mark,
    )


_SKU = attrgetter("sku")
_ROW = attrgetter("row")


def _collapse_duplicates(
    rows: list[VendorRow],
    starts: list[date] | None,
    error: Callable[[int, str | None, str], None],
) -> tuple[list[VendorRow], int]:
    """One row per (vendor, SKU, term, billing, currency). Identical repeats collapse; a repeat
    with another cost is an error naming both rows, except in effective-dated files (Microsoft),
    where overlapping ranges resolve to the one that started last (vendors.md §4.5)."""
    kept: list[VendorRow] = []
    kept_start: list[date] = []
    seen: dict[tuple, int] = {}
    duplicates = 0
    for i, row in enumerate(rows):
        key = (row.vendor, row.sku, row.term, row.billing, row.currency)
        earlier = seen.get(key)
        start = starts[i] if starts is not None else None
        if earlier is None:
            seen[key] = len(kept)
            kept.append(row)
            if start is not None:
                kept_start.append(start)
            continue
        first = kept[earlier]
        if first.cost == row.cost:
            duplicates += 1
            continue
        if start is not None and kept_start[earlier] != start:
            if start > kept_start[earlier]:
                kept[earlier], kept_start[earlier] = row, start
            continue
        label = f"{row.sku!r}" + (f" ({row.term})" if row.term else "")
        error(
            row.row,
            "cost",
            f"SKU {label} appears twice with different costs: row {first.row} says "
            f"{first.cost.normalize():f} {first.currency}, row {row.row} says "
            f"{row.cost.normalize():f} {row.currency}",
        )
    return kept, duplicates
