"""Workbooks read by python-calamine (issue 15 item 6): Excel 97-2003 (.xls) and OpenDocument (.ods)
price lists are read, plain .xlsx sheets read the same through calamine as through the lean
reader, formulas are never taken as costs, and bombs are refused before calamine holds them."""

from __future__ import annotations

import datetime as dt
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from costrecon_daemon.vendors import workbook
from costrecon_daemon.vendors.readers import read_price_file, stream_price_file
from costrecon_daemon.vendors.rows import FileUnreadable

from . import pricefiles as pf
from .harness import ThreadedDaemon

D = Decimal
HEADER = ["SKU", "MPN", "Product Name", "Manufacturer", "Cost", "Currency"]


def write_xls(path: Path, rows: list[list[object]], *, formula_at: tuple[int, int] | None = None):
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Prices")
    for r, values in enumerate([HEADER, *rows]):
        for c, value in enumerate(values):
            if formula_at == (r, c):
                sheet.write(r, c, xlwt.Formula("E2*2"))
            elif value is not None:
                sheet.write(r, c, value)
    notes = book.add_sheet("Totals")  # a formula on another sheet is no cost: never looked at
    notes.write(2, 4, xlwt.Formula("1+1"))
    book.save(str(path))
    return path


def cost_of(result) -> dict[str, Decimal]:
    return {r.sku: r.cost for r in result.rows}


XLS_ROWS: list[list[object]] = [
    ["8RT112", "818D2UT#ABA", "HP EliteBook 840 G10", "HP Inc.", 1189.0, "USD"],
    ["2GH018", "2GH018#ABA", "HP USB-C Dock G5", "HP Inc.", 74.34, "USD"],
    ["CP-8841", None, "Cisco IP Phone 8841", "Cisco", 0.1, "USD"],
]


def test_an_xls_price_list_is_read_exactly_and_a_formula_cost_is_refused_naming_its_cell(
    tmp_path: Path,
) -> None:
    good = read_price_file(write_xls(tmp_path / "distributor.xls", XLS_ROWS))
    assert good.errors == [], good.errors
    assert cost_of(good) == {"8RT112": D("1189"), "2GH018": D("74.34"), "CP-8841": D("0.1")}
    assert [r.row for r in good.rows] == [2, 3, 4]

    bad = read_price_file(write_xls(tmp_path / "formula.xls", XLS_ROWS, formula_at=(2, 4)))
    [error] = bad.errors
    assert error.row == 3 and error.column == "Cost"
    assert "formula" in error.message and error.message.startswith("row 3, column Cost:")


def test_an_xls_is_streamed_to_the_importer_like_any_file(tmp_path: Path) -> None:
    path = write_xls(tmp_path / "stream.xls", XLS_ROWS)
    got: list = []
    result = stream_price_file(path, got.extend)
    assert result.errors == [] and result.streamed == 3
    assert got == read_price_file(path).rows


def test_a_damaged_xls_is_refused_with_a_sentence(tmp_path: Path) -> None:
    path = write_xls(tmp_path / "cut.xls", XLS_ROWS)
    path.write_bytes(path.read_bytes()[:1100])
    with pytest.raises(FileUnreadable, match="damaged or was only partly copied"):
        read_price_file(path)


# ---------------------------------------------------------------------------- .ods

_ODS_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:of="urn:oasis:names:tc:opendocument:xmlns:of:1.2" office:version="1.2">'
    '<office:body><office:spreadsheet><table:table table:name="Prices">'
)
_ODS_TAIL = "</table:table></office:spreadsheet></office:body></office:document-content>"


def _text(value: str) -> str:
    return (
        f'<table:table-cell office:value-type="string"><text:p>{value}</text:p></table:table-cell>'
    )


def _number(value: str, extra: str = "") -> str:
    return (
        f'<table:table-cell office:value-type="float" office:value="{value}"{extra}>'
        f"<text:p>{value}</text:p></table:table-cell>"
    )


def write_ods(path: Path, rows: list[str]) -> Path:
    body = "".join(f"<table:table-row>{r}</table:table-row>" for r in rows)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("META-INF/manifest.xml", _ODS_MANIFEST, zipfile.ZIP_DEFLATED)
        archive.writestr("content.xml", _ODS_HEAD + body + _ODS_TAIL, zipfile.ZIP_DEFLATED)
    return path


_ODS_MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
    'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
    '<manifest:file-entry manifest:full-path="/" '
    'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
    '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
    "</manifest:manifest>"
)
ODS_HEADER = _text("SKU") + _text("Description") + _text("Cost") + _text("Currency")


def test_an_ods_price_list_is_read_exactly(tmp_path: Path) -> None:
    path = write_ods(
        tmp_path / "prices.ods",
        [
            ODS_HEADER,
            _text("ABC-1") + _text("Widget") + _number("74.34") + _text("EUR"),
            _text("ABC-2") + _text("Gadget") + _number("1189") + _text("EUR"),
            # LibreOffice writes the empty rows below the data as one repeated row
            '<table:table-cell table:number-columns-repeated="4"/></table:table-row>'
            '<table:table-row table:number-rows-repeated="1048570">'
            '<table:table-cell table:number-columns-repeated="1024"/>',
        ],
    )
    result = read_price_file(path)
    assert result.errors == []
    assert cost_of(result) == {"ABC-1": D("74.34"), "ABC-2": D("1189")}
    assert {r.currency for r in result.rows} == {"EUR"}


def test_an_ods_with_a_formula_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    path = write_ods(
        tmp_path / "formulas.ods",
        [
            ODS_HEADER,
            _text("ABC-1") + _text("Widget") + _number("20", ' table:formula="of:=[.C3]*2"'),
            _text("ABC-2") + _text("Gadget") + _number("10"),
        ],
    )
    with pytest.raises(FileUnreadable, match="formula cells.*paste the sheet as values"):
        read_price_file(path)


def test_an_ods_repeating_a_cell_past_excels_last_column_is_refused(tmp_path: Path) -> None:
    path = write_ods(
        tmp_path / "repeat-bomb.ods",
        [ODS_HEADER, _text("ABC-1") + _number("1", ' table:number-columns-repeated="100000000"')],
    )
    with pytest.raises(FileUnreadable, match="was refused"):
        read_price_file(path)


# ---------------------------------------------------------------------------- .xlsx


def write_mixed_xlsx(path: Path) -> Path:
    """Cells of every kind a price list has, starting at column B under two empty rows."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Prices"
    sheet.append([])
    sheet.append([])
    sheet.append([None, "SKU", "Product Name", "Cost", "Currency", "Start date", "Active"])
    sheet.append([None, "A-1", "Integer cost", 12, "USD", dt.date(2026, 1, 2), True])
    sheet.append([None, "A-2", "Binary fraction", 74.34, "USD", dt.date(2026, 1, 2), False])
    sheet.append([None, "A-3", "Tiny", 0.0001, "USD", None, True])
    sheet.append([])
    sheet.append([None, "12345", "Numeric SKU", 1e6, "USD", None, None])
    book.save(path)
    return path


def test_a_plain_xlsx_reads_the_same_through_calamine_as_through_the_lean_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_mixed_xlsx(tmp_path / "mixed.xlsx")
    calls: list[object] = []
    real = workbook._calamine_opener

    def spy(*args):
        opener = real(*args)
        calls.append(opener)
        return opener

    monkeypatch.setattr(workbook, "_calamine_opener", spy)
    fast = read_price_file(path)
    assert calls and calls[0] is not None  # calamine read it
    monkeypatch.setattr(workbook, "_calamine_opener", lambda *args: None)
    lean = read_price_file(path)
    assert fast.rows == lean.rows and fast.errors == lean.errors == []
    assert [(r.row, r.sku, r.cost) for r in fast.rows] == [
        (4, "A-1", D("12")),
        (5, "A-2", D("74.34")),
        (6, "A-3", D("0.0001")),
        (8, "12345", D("1000000")),
    ]


def test_an_xlsx_with_formulas_is_read_by_the_lean_reader_which_names_the_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[object] = []
    real = workbook._calamine_opener
    monkeypatch.setattr(
        workbook, "_calamine_opener", lambda *a: opened.append(real(*a)) or opened[-1]
    )
    result = read_price_file(pf.write_xlsx(tmp_path, pf.SAMPLE_HARDWARE, formula_rows=[1]))
    assert opened == [None]
    [error] = result.errors
    assert error.row == 5 and error.column == "Cost" and "formula" in error.message


def test_an_xlsx_declaring_a_huge_dimension_is_read_by_the_lean_reader(tmp_path: Path) -> None:
    path = tmp_path / "dimension.xlsx"
    with zipfile.ZipFile(pf.write_xlsx_far_cell(tmp_path)) as src:
        parts = {n: src.read(n) for n in src.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    sheet = sheet.replace("<sheetData>", '<dimension ref="A1:XFD1048576"/><sheetData>')
    sheet = sheet.replace('<c r="ZZZZZZ2"><v>12.5</v></c>', '<c r="B2"><v>12.5</v></c>')
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for n, data in parts.items():
            dst.writestr(n, data)
    result = read_price_file(path)
    assert cost_of(result) == {"ABC-1": D("12.5")}


def test_an_xlsx_member_that_inflates_past_its_declared_size_is_refused(tmp_path: Path) -> None:
    path = pf.write_xlsx(tmp_path, pf.SAMPLE_HARDWARE, title=None)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
    smaller = (info.file_size // 2).to_bytes(4, "little")
    # The declared size sits in the local header (offset 22) and the central directory entry.
    data[info.header_offset + 22 : info.header_offset + 26] = smaller
    entry = data.rindex(b"xl/worksheets/sheet1.xml") - 46  # its central directory entry
    data[entry + 24 : entry + 28] = smaller
    path.write_bytes(bytes(data))
    with pytest.raises(FileUnreadable):
        read_price_file(path)


# ---------------------------------------------------------------------------- the inbox


def test_an_xls_and_an_ods_dropped_in_the_inbox_are_imported(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with ThreadedDaemon(tmp_path / "d") as d:
        inbox = d.state / "inbox"
        d.wait_for(inbox.is_dir, 10, "the inbox")
        write_xls(tmp_path / "old-excel.xls", XLS_ROWS).rename(inbox / "old-excel.xls")
        write_ods(
            tmp_path / "libre.ods",
            [ODS_HEADER, _text("ODS-1") + _text("Widget") + _number("9.5") + _text("USD")],
        ).rename(inbox / "libre.ods")

        def done():
            got = {i["file_name"]: i for i in d.get("/v1/imports")["imports"]}
            return got if {"old-excel.xls", "libre.ods"} <= set(got) else None

        records = d.wait_for(done, 30, "both imports")
        assert records["old-excel.xls"]["status"] == "imported", records["old-excel.xls"]
        assert records["old-excel.xls"]["rows_imported"] == 3
        assert records["libre.ods"]["status"] == "imported", records["libre.ods"]
        assert records["libre.ods"]["rows_imported"] == 1


def test_an_xlsx_with_a_legal_cell_at_the_sheets_last_corner_is_streamed_not_gridded(
    tmp_path: Path,
) -> None:
    """XFD1048576 is a legal cell; read as a dense grid it is 17 billion cells (calamine aborts
    the process). The lean reader streams it instead."""
    path = pf._write_hand_xlsx(
        tmp_path / "corner.xlsx",
        '<row r="2"><c r="A2" t="inlineStr"><is><t>ABC-1</t></is></c><c r="B2"><v>12.5</v></c>'
        '</row><row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>end</t></is></c></row>',
    )
    result = read_price_file(path)
    assert cost_of(result) == {"ABC-1": D("12.5")}


def test_an_xls_whose_cells_span_a_huge_grid_is_refused(tmp_path: Path) -> None:
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Prices")
    for c, h in enumerate(HEADER):
        sheet.write(0, c, h)
    sheet.write(65535, 255, "far")
    path = tmp_path / "grid.xls"
    book.save(str(path))
    with pytest.raises(FileUnreadable, match="used area passes"):
        read_price_file(path)


def test_an_ods_repeating_a_row_of_values_a_million_times_is_refused(tmp_path: Path) -> None:
    path = write_ods(
        tmp_path / "rows-bomb.ods",
        [
            ODS_HEADER,
            _text("ABC-1") + _number("1") + "</table:table-row>"
            '<table:table-row table:number-rows-repeated="1000000">'
            + _number("2", ' table:number-columns-repeated="50"'),
        ],
    )
    with pytest.raises(FileUnreadable, match="used area passes"):
        read_price_file(path)
