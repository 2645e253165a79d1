"""Stage 1 for workbooks read by python-calamine (Rust): Excel 97-2003 (.xls), OpenDocument (.ods)
and plain .xlsx sheets (issue 15 item 6; 1.7× the lean reader in workbook.py on a 50,000-row
price list: benchmarks/intake.py prints both).

calamine hands back a formula cell's last computed value, never the formula, and reads a sheet
whole. costrecon's rules are that a formula is never taken as a cost (a cost must be a typed value:
a cached result may be stale, or absent in files written by tools) and that a price file never
decides how much memory the daemon uses. So before calamine sees a file, cheap checks run here:

- every zip member calamine will inflate is inflated here first, to check it ends at its declared
  size (Python's zipfile trusts the declared size; a Rust zip reader may not), under the caps of
  :mod:`.limits`;
- .xlsx: the sheet's XML is scanned once. Any formula, a row or column beyond Excel's, or a used
  area (or a declared ``<dimension>``) beyond ``MAX_GRID_CELLS`` sends the sheet to the lean
  reader instead, which reads formulas as ``=…`` text (refused as costs, row by row, naming the
  cell) and refuses bombs with a sentence;
- .xls: the BIFF records are walked for formula cells, which then read as ``=…`` (refused as
  costs the same way);
- .ods: formulas fail the file as a whole (there is no second reader to name the cells), and so do
  repeat counts beyond Excel's rows and columns.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Set
from datetime import date
from typing import Any
from xml.etree import ElementTree as ET

from costrecon_daemon.vendors import limits
from costrecon_daemon.vendors.convert import read_sheet
from costrecon_daemon.vendors.profiles import Profile
from costrecon_daemon.vendors.rows import FileUnreadable, ReadResult, cell_text

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ODS_MIMETYPE = b"application/vnd.oasis.opendocument.spreadsheet"
MAX_XLS_BYTES = 256 << 20  # an .xls is not compressed: its size bounds what calamine holds
# calamine holds a sheet as a dense grid of ~32-byte cells over its used area: 4 million cells is
# ~130 MB (200,000 rows of 20 columns). A bigger .xlsx is read by the lean reader, which streams;
# a bigger .xls or .ods is refused (Excel 97-2003 stops at 65,536 rows anyway).
MAX_GRID_CELLS = 4_000_000
FORMULA_TEXT = "=…"  # what a formula cell reads as: the converter refuses it as a cost
_CHUNK = 1 << 20
_OVERLAP = 64  # bytes kept between scanned chunks, so a tag cut in two is still seen


class CalamineFailed(FileUnreadable):
    """calamine could not read a workbook the checks here passed (for an .xlsx, the lean reader
    then tries: it reads workbooks calamine does not, e.g. without package relationships)."""


def damaged(name: str, kind: type[FileUnreadable] = FileUnreadable) -> FileUnreadable:
    return kind(
        f"{name} is not a readable workbook (the file is damaged or was only partly copied); "
        "export it again."
    )


# ---------------------------------------------------------------------------- zip members


def _inflate(name: str, data: bytes, info: zipfile.ZipInfo, scan: Callable[[bytes], None]) -> None:
    """Inflate one member from the archive's bytes, chunk by chunk, handing each chunk to
    ``scan``; refuse a member whose data does not end exactly at its declared size."""
    if info.file_size > limits.MAX_MEMBER_BYTES:
        raise limits.refuse(name, f"{info.filename} inflates to more than the limit")
    start = info.header_offset
    if data[start : start + 4] != b"PK\x03\x04":
        raise damaged(name)
    name_len, extra_len = struct.unpack_from("<HH", data, start + 26)
    begin = start + 30 + name_len + extra_len
    raw = memoryview(data)[begin : begin + info.compress_size]
    if len(raw) != info.compress_size:
        raise damaged(name)
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise damaged(name)
        for at in range(0, len(raw), _CHUNK):
            scan(bytes(raw[at : at + _CHUNK]))
        return
    if info.compress_type != zipfile.ZIP_DEFLATED:
        raise damaged(name)
    inflater = zlib.decompressobj(-15)
    out = 0
    crc = 0
    for at in range(0, len(raw), _CHUNK):
        pending = bytes(raw[at : at + _CHUNK])
        while pending:
            try:
                chunk = inflater.decompress(pending, _CHUNK)
            except zlib.error as exc:
                raise damaged(name) from exc
            pending = inflater.unconsumed_tail
            out += len(chunk)
            if out > info.file_size:
                raise limits.refuse(
                    name, f"{info.filename} inflates past the size its archive declares"
                )
            crc = zlib.crc32(chunk, crc)
            if chunk:
                scan(chunk)
            if not chunk and not pending:
                break
    if not inflater.eof or out != info.file_size or crc != info.CRC:
        raise damaged(name)


class _Scanner:
    """Regular expressions run over a member as it is inflated, chunk by chunk. The last bytes of
    each chunk are scanned again with the next one, so a match cut in two is seen; a match (or a
    counted needle) lying wholly in those bytes was seen already and is not taken twice."""

    def __init__(self, *patterns: re.Pattern[bytes]) -> None:
        self.patterns = patterns
        self.found: list[list[Any]] = [[] for _ in patterns]
        self.counts: dict[bytes, int] = {}
        self._tail = b""

    def count(self, *needles: bytes) -> _Scanner:
        self.counts = dict.fromkeys(needles, 0)
        return self

    def __call__(self, chunk: bytes) -> None:
        window = self._tail + chunk
        seen = len(self._tail)
        for i, pattern in enumerate(self.patterns):
            found = self.found[i]
            for match in pattern.finditer(window):
                if match.end() > seen:
                    found.append(match.groups() or match.group())
        for needle in self.counts:
            self.counts[needle] += window.count(needle, max(0, seen - len(needle) + 1))
        self._tail = window[-_OVERLAP:]


class _Highest:
    """Keeps the count and the highest number of a one-group pattern's matches (a million rows'
    numbers need not be held to know the last one)."""

    def __init__(self) -> None:
        self.seen = 0
        self.highest = 0

    def append(self, groups: tuple[bytes, ...]) -> None:
        self.seen += 1
        number = int(groups[0])
        if number > self.highest:
            self.highest = number


# Unprefixed SpreadsheetML (what Excel, LibreOffice and every library write): patterns that start
# with a literal run at C speed. A sheet that prefixes its namespace goes to the lean reader.
_FORMULA = re.compile(rb"<f[\s>/]")
_ROW = re.compile(rb'<row r="(\d+)"')
_WIDE_COLUMN = re.compile(rb' r="([A-Z]{2,})\d')
_DIMENSION = re.compile(rb'<dimension ref="([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?"')


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ch - 64)
    return n


def xlsx_sheet_is_plain(name: str, data: bytes, archive: zipfile.ZipFile, sheet: str) -> bool:
    """Whether calamine may read ``sheet`` (a member path) of this .xlsx: no formula, nothing
    beyond Excel's rows and columns, a used area under ``MAX_GRID_CELLS``, and honest members.
    False sends the sheet to the lean reader, which handles each of those cases cell by cell."""
    try:
        infos = {i.filename: i for i in archive.infolist()}
        sheet_info = infos[sheet]
    except KeyError:
        return False
    scanner = _Scanner(_FORMULA, _ROW, _WIDE_COLUMN, _DIMENSION).count(
        b"<c ", b"<c>", b"<row", b"<worksheet"
    )
    rows = scanner.found[1] = _Highest()  # type: ignore[call-overload]
    _inflate(name, data, sheet_info, scanner)
    formulas, _rows, wide, dimension = scanner.found
    counts = scanner.counts
    # A formula, a prefixed namespace, or a row whose r is not its first attribute (its number
    # then unseen here): the lean reader takes the sheet.
    if formulas or counts[b"<worksheet"] != 1 or counts[b"<row"] != rows.seen:
        return False
    last_row = rows.highest
    last_column = max((_column_number(c) for (c,) in wide), default=26)
    if last_row > limits.MAX_ROW_INDEX or last_column > limits.MAX_COLUMNS:
        return False
    cells = counts[b"<c "] + counts[b"<c>"]
    if last_row * last_column > MAX_GRID_CELLS or cells > MAX_GRID_CELLS:
        return False
    for found in dimension:
        first_col, first_row, end_col, end_row = found
        if end_col and end_row:
            area = (int(end_row) - int(first_row) + 1) * (
                _column_number(end_col) - _column_number(first_col) + 1
            )
            if area > MAX_GRID_CELLS:
                return False
    strings = infos.get("xl/sharedStrings.xml")
    if strings is not None:
        if strings.file_size > limits.MAX_SHARED_CHARS:
            return False
        counter = _Scanner().count(b"<si>", b"<si ")
        _inflate(name, data, strings, counter)
        if sum(counter.counts.values()) > limits.MAX_SHARED_STRINGS:
            return False
    # What else calamine opens: the workbook, its relationships and styles (number formats).
    for other in ("xl/workbook.xml", "xl/_rels/workbook.xml.rels", "xl/styles.xml"):
        if other in infos:
            _inflate(name, data, infos[other], lambda _chunk: None)
    return True


# ---------------------------------------------------------------------------- .ods

_ODS_FORMULA = re.compile(rb":formula=")
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"


def _too_big(name: str) -> FileUnreadable:
    return limits.refuse(
        name,
        f"a sheet's used area passes {MAX_GRID_CELLS:,} cells (save it as CSV, which costrecon "
        "reads in any size)",
    )


def check_ods(name: str, data: bytes, archive: zipfile.ZipFile) -> None:
    """Refuse an .ods calamine must not read: formulas anywhere in it, or a used area (repeats
    counted: a 2 KB file can repeat a cell a billion times) beyond ``MAX_GRID_CELLS``. Rows and
    cells without a value, repeated to the sheet's end, are what LibreOffice writes below and
    beside the data; calamine skips them, and so does this count."""
    try:
        content = archive.getinfo("content.xml")
    except KeyError:
        raise damaged(name) from None
    scanner = _Scanner(_ODS_FORMULA)
    _inflate(name, data, content, scanner)
    if scanner.found[0]:
        raise FileUnreadable(
            f"{name} has formula cells, and costrecon takes costs only as typed values; in the "
            "spreadsheet, paste the sheet as values (or save it as CSV) and drop it again."
        )
    row_tag, cell_tag = _TABLE + "table-row", _TABLE + "table-cell"
    covered_tag, table_tag = _TABLE + "covered-table-cell", _TABLE + "table"
    rows_repeated, cols_repeated = (
        _TABLE + "number-rows-repeated",
        _TABLE + "number-columns-repeated",
    )
    value_type = _OFFICE + "value-type"
    row = last_row = widest = 0
    try:
        with archive.open(content) as fh:
            for event, el in ET.iterparse(fh, events=("start", "end")):
                if event == "start":
                    if el.tag == table_tag:
                        row = last_row = widest = 0
                    continue
                if el.tag == row_tag:
                    repeat = int(el.get(rows_repeated, "1"))
                    column = width = 0
                    for cell in el:
                        if cell.tag not in (cell_tag, covered_tag):
                            continue
                        span = int(cell.get(cols_repeated, "1"))
                        column += span
                        if cell.get(value_type) is not None or len(cell):
                            width = column
                    if width:
                        widest, last_row = max(widest, width), row + repeat
                        if last_row * widest > MAX_GRID_CELLS:
                            raise _too_big(name)
                    row += repeat
                    el.clear()
    except (ET.ParseError, ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise damaged(name) from exc
    if "styles.xml" in archive.namelist():
        _inflate(name, data, archive.getinfo("styles.xml"), lambda _chunk: None)


def is_ods(archive: zipfile.ZipFile) -> bool:
    try:
        return archive.read("mimetype").strip() == ODS_MIMETYPE
    except (KeyError, zipfile.BadZipFile, OSError):
        return False


# ---------------------------------------------------------------------------- .xls

_BOF, _BOUNDSHEET, _EOF = 0x0809, 0x0085, 0x000A
_FORMULA_RECORDS = (0x0006, 0x0206, 0x0406)  # FORMULA in BIFF5/8, BIFF3, BIFF4
# Records of one cell (row and column first): NUMBER, LABEL, BLANK, BOOLERR, RK, LABELSST, RSTRING
# and the formulas; MULRK and MULBLANK span columns, their last column closes the record.
_CELL_RECORDS = frozenset({0x0203, 0x0204, 0x0201, 0x0205, 0x027E, 0x00FD, 0x00D6})
_MULTI_RECORDS = frozenset({0x00BD, 0x00BE})


def xls_formula_cells(name: str, data: bytes) -> dict[str, set[tuple[int, int]]]:
    """The formula cells of each sheet of an Excel 97-2003 workbook, as (row, column) from 0,
    found by walking the BIFF records of its Workbook stream; a sheet whose cells span a grid
    beyond ``MAX_GRID_CELLS`` is refused here, before calamine would hold that grid."""
    import olefile  # only .xls files need it

    if len(data) > MAX_XLS_BYTES:
        raise limits.refuse(name, f"it is an .xls of more than {MAX_XLS_BYTES >> 20} MiB")
    try:
        with olefile.OleFileIO(io.BytesIO(data)) as ole:
            stream = next(
                (s for s in (["Workbook"], ["Book"]) if ole.exists("/".join(s))),
                None,
            )
            if stream is None:
                raise damaged(name)
            book = ole.openstream(stream).read()
    except (OSError, ValueError, struct.error, IndexError) as exc:
        raise damaged(name) from exc
    sheets_at: dict[int, str] = {}
    cells: dict[int, set[tuple[int, int]]] = {}
    corner: dict[int, tuple[int, int]] = {}
    pos = 0
    current = -1
    size = len(book)
    while pos + 4 <= size:
        kind, length = struct.unpack_from("<HH", book, pos)
        body = pos + 4
        if kind == _BOF:
            current = pos
        elif kind == _BOUNDSHEET and length >= 8:
            offset = struct.unpack_from("<I", book, body)[0]
            chars, flags = book[body + 6], book[body + 7]
            raw = book[body + 8 : body + 8 + chars * (2 if flags & 1 else 1)]
            sheets_at[offset] = raw.decode("utf-16-le" if flags & 1 else "latin-1", "replace")
        elif length >= 4 and (
            kind in _FORMULA_RECORDS or kind in _CELL_RECORDS or kind in _MULTI_RECORDS
        ):
            row, column = struct.unpack_from("<HH", book, body)
            if kind in _FORMULA_RECORDS:
                cells.setdefault(current, set()).add((row, column))
            elif kind in _MULTI_RECORDS and length >= 6:
                column = struct.unpack_from("<H", book, body + length - 2)[0]
            rows, columns = corner.get(current, (0, 0))
            rows, columns = max(rows, row + 1), max(columns, column + 1)
            corner[current] = (rows, columns)
            if rows * columns > MAX_GRID_CELLS:
                raise _too_big(name)
        pos = body + length
    return {sheets_at.get(at, ""): found for at, found in cells.items()}


# ---------------------------------------------------------------------------- reading


def read_workbook(
    name: str,
    data: bytes,
    kind: str,
    forced: Profile | None,
    all_profiles: Mapping[str, Profile],
    default_currency: str,
    vendor: str | None,
    today: date | None,
) -> ReadResult:
    """Read an .xls (``kind`` "xls") or .ods ("ods") through calamine, after the checks above."""
    formulas: dict[str, set[tuple[int, int]]] = {}
    if kind == "xls":
        formulas = xls_formula_cells(name, data)
    else:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise damaged(name) from exc
        with archive:
            limits.check_archive(name, archive)
            check_ods(name, data, archive)
    book = open_workbook(name, data)
    names = book.sheet_names
    loaded: dict[str, Any] = {}

    def sheet_rows(sheet_name: str | None) -> Iterator[list[str]]:
        chosen = sheet_name if sheet_name is not None else (names[0] if names else "")
        if chosen not in names:
            raise FileUnreadable(
                f"{name} has no sheet named {sheet_name!r} (it has: {', '.join(names)})."
            )
        if chosen not in loaded:  # calamine reads a sheet whole: once, not per pass
            loaded[chosen] = load_sheet(name, book, chosen)
        return calamine_rows(loaded[chosen], formulas.get(chosen, set()))

    return read_sheet(name, sheet_rows, forced, all_profiles, default_currency, vendor, today)


def open_workbook(name: str, data: bytes) -> Any:
    from python_calamine import CalamineWorkbook

    try:
        return CalamineWorkbook.from_filelike(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - calamine raises its own types and ValueError
        raise damaged(name, CalamineFailed) from exc


def load_sheet(name: str, book: Any, sheet_name: str) -> Any:
    """One sheet, read whole by calamine, refused when its used area passes the caps."""
    try:
        sheet = book.get_sheet_by_name(sheet_name)
        first_row, first_column = sheet.start or (0, 0)
        height, width = sheet.height, sheet.width
    except Exception as exc:  # noqa: BLE001 - calamine raises its own types
        raise damaged(name, CalamineFailed) from exc
    if first_column + width > limits.MAX_COLUMNS or first_row + height > limits.MAX_ROW_INDEX:
        raise limits.refuse(name, "a sheet goes past Excel's last row or column")
    if (first_column + width) * (first_row + height) > MAX_GRID_CELLS:
        raise _too_big(name)
    return sheet


def calamine_rows(sheet: Any, formulas: Set[tuple[int, int]] = frozenset()) -> Iterator[list[str]]:
    """A loaded sheet's rows as cell text, from row 1 and column A (empty rows kept, so row numbers
    are the sheet's), formula cells as ``=…``."""
    first_column = (sheet.start or (0, 0))[1]
    pad = [""] * first_column
    by_row: dict[int, list[int]] = {}
    for row, column in formulas:
        by_row.setdefault(row, []).append(column)
    text = cell_text
    # iter_rows starts at the sheet's row 1, its cells at the used area's first column.
    for number, values in enumerate(sheet.iter_rows()):
        cells = [*pad, *map(text, values)] if pad else [text(v) for v in values]
        for column in by_row.get(number, ()):
            if column < len(cells):
                cells[column] = FORMULA_TEXT
        yield cells
