"""Stage 1 for workbooks and archives: a zip holding one text file, or an xlsx (a fast reader for
plain workbooks, openpyxl for unusual ones)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree as ET

from costrecon_daemon.vendors import limits, spreadsheet
from costrecon_daemon.vendors.convert import read_sheet
from costrecon_daemon.vendors.profiles import (
    Profile,
)
from costrecon_daemon.vendors.rows import (
    FileUnreadable,
    ReadResult,
    cell_text,
)
from costrecon_daemon.vendors.text import read_text


def read_zip(
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
    limits.check_archive(name, archive)
    if "xl/workbook.xml" in members:
        return _read_xlsx(
            name, data, archive, forced, all_profiles, default_currency, vendor, today
        )
    if spreadsheet.is_ods(archive):
        return spreadsheet.read_workbook(
            name, data, "ods", forced, all_profiles, default_currency, vendor, today
        )
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
        inner = limits.read_member(name, archive, texts[0], limits.MAX_TEXT_BYTES)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FileUnreadable(
            f"{name} is damaged or was only partly copied; copy it again."
        ) from exc
    inner_name = Path(texts[0]).name
    if not inner.strip():
        raise FileUnreadable(f"{name} holds an empty {inner_name}; download the price file again.")
    return read_text(inner_name, inner, forced, all_profiles, default_currency, vendor, today)


def _read_xlsx(
    name: str,
    data: bytes,
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
        workbook = _Workbook(archive, name)
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
                f"{name} has no sheet named {sheet_name!r} (it has: "
                f"{', '.join(workbook.sheet_names)})."
            ) from None
        except (KeyError, ET.ParseError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise FileUnreadable(damaged) from exc

    return read_sheet(
        name,
        sheet_rows,
        forced,
        all_profiles,
        default_currency,
        vendor,
        today,
        lambda sheet_name: _calamine_opener(name, data, archive, workbook, sheet_name),
    )


def _calamine_opener(
    name: str, data: bytes, archive: zipfile.ZipFile, workbook: _Workbook, sheet_name: str | None
) -> Callable[[], Iterator[list[str]]] | None:
    """calamine's rows of the sheet when :func:`.spreadsheet.xlsx_sheet_is_plain` says it may read
    it (1.7× faster on a 50,000-row list); None keeps this module's reader (formulas, oddities,
    bombs)."""
    paths = [p for n, p in workbook.sheets if sheet_name is None or n == sheet_name]
    if not paths or not spreadsheet.xlsx_sheet_is_plain(name, data, archive, paths[0]):
        return None
    chosen = sheet_name if sheet_name is not None else workbook.sheet_names[0]
    try:
        sheet = spreadsheet.load_sheet(name, spreadsheet.open_workbook(name, data), chosen)
    except spreadsheet.CalamineFailed:
        return None
    return lambda: spreadsheet.calamine_rows(sheet)


class _NotPlainXlsx(Exception):
    """A workbook flavour the lean reader does not handle (strict OOXML): openpyxl reads it."""


class _NoSuchSheet(Exception):
    pass


_SMALL_PART = 64 << 20  # workbook.xml and its relationships: a list of sheets
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

    def __init__(self, archive: zipfile.ZipFile, name: str = "the workbook") -> None:
        self.archive = archive
        self.name = name
        root = ET.fromstring(limits.read_member(name, archive, "xl/workbook.xml", _SMALL_PART))
        if not root.tag.startswith("{" + _MAIN_NS + "}"):
            raise _NotPlainXlsx(root.tag)
        rels_root = ET.fromstring(
            limits.read_member(name, archive, "xl/_rels/workbook.xml.rels", _SMALL_PART)
        )
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
            chars = 0
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
                            text = "".join(parts)
                            chars += len(text)
                            strings.append(text)
                            el.clear()
                            if (
                                len(strings) > limits.MAX_SHARED_STRINGS
                                or chars > limits.MAX_SHARED_CHARS
                            ):
                                raise limits.refuse(
                                    self.name,
                                    f"its shared strings pass {limits.MAX_SHARED_STRINGS:,} "
                                    f"entries or {limits.MAX_SHARED_CHARS >> 20} MiB of text",
                                )
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
        cells_read = 0
        name = self.name
        with self.archive.open(path) as fh:
            for _, el in ET.iterparse(fh):
                if el.tag != row_tag:
                    continue
                r = el.get("r")
                number = int(r) if r else expected
                if number > limits.MAX_ROW_INDEX or number < 1:
                    # Rows Excel left out are yielded as empty rows: r="2000000000" would be
                    # two billion of them.
                    raise limits.refuse(
                        name,
                        f"it has a row numbered {number:,} (Excel stops at row "
                        f"{limits.MAX_ROW_INDEX:,})",
                    )
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
                            if not 0 <= col < limits.MAX_COLUMNS:
                                # Cells before it are padded: ZZZZZZ2 would be 321 million.
                                raise limits.refuse(
                                    name,
                                    f"it has a cell at column {letters[:12]} (Excel "
                                    f"stops at column XFD, the {limits.MAX_COLUMNS:,}th)",
                                )
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
                cells_read += len(cells)
                if cells_read > limits.MAX_CELLS:
                    raise limits.refuse(name, f"a sheet has more than {limits.MAX_CELLS:,} cells")
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
        workbook = openpyxl.load_workbook(archive.fp, read_only=True, data_only=False)
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
                        f"{name} has no sheet named {sheet_name!r} (it has: "
                        f"{', '.join(workbook.sheetnames)})."
                    )
                sheet = workbook[sheet_name]
            else:
                sheet = workbook.worksheets[0]
            sheet.reset_dimensions()  # some exporters write a wrong <dimension>; read what is there
            cells_read = 0
            try:
                for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                    if number > limits.MAX_ROW_INDEX:
                        raise limits.refuse(name, f"a sheet goes past row {limits.MAX_ROW_INDEX:,}")
                    if len(values) > limits.MAX_COLUMNS:
                        raise limits.refuse(
                            name, f"a row has more than {limits.MAX_COLUMNS:,} columns"
                        )
                    cells_read += len(values)
                    if cells_read > limits.MAX_CELLS:
                        raise limits.refuse(
                            name, f"a sheet has more than {limits.MAX_CELLS:,} cells"
                        )
                    yield [cell_text(v) for v in values]
            except (zipfile.BadZipFile, EOFError, KeyError, OSError) as exc:
                raise FileUnreadable(
                    f"{name} is damaged or was only partly copied; export it again."
                ) from exc

        return read_sheet(name, sheet_rows, forced, all_profiles, default_currency, vendor, today)
    finally:
        workbook.close()
