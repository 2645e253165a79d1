"""Price files as technicians drop them: what costrecon reads out of each, and what it says when a
file or a row is wrong (vendors.md §4)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from costrecon_daemon.vendors.profiles import ProfileError, profile_from_config
from costrecon_daemon.vendors.readers import (
    FileUnreadable,
    read_price_file,
    rows_from_records,
)

from .pricefiles import (
    SAMPLE_CLOUD,
    SAMPLE_HARDWARE,
    PriceLine,
    with_currency,
    write_bad_costs_csv,
    write_binary_csv,
    write_cp1252_csv,
    write_dh_itemlist,
    write_empty,
    write_eu_csv,
    write_generic_csv,
    write_ingram_price_txt,
    write_ingram_price_zip,
    write_ingram_stdprice,
    write_ms_csp,
    write_synnex,
    write_truncated_xlsx,
    write_utf16_tab,
    write_xlsx,
    write_xlsx_far_cell,
    write_xlsx_far_row,
    write_xlsx_shared_strings_bomb,
    write_zip_bomb_csv,
)

TODAY = date(2026, 11, 15)
D = Decimal


def costs(result) -> dict[str, Decimal]:
    return {r.sku: r.cost for r in result.rows}


# ------------------------------------------------------------------------------ generic files


def test_generic_csv_gives_decimal_costs_with_thousands_separators(tmp_path: Path) -> None:
    path = write_generic_csv(tmp_path, SAMPLE_HARDWARE, vendor="Acme Distribution")
    result = read_price_file(path)

    assert result.profile == "generic"
    assert result.ok and result.errors == []
    assert result.vendor == "Acme Distribution"
    assert result.total_rows == len(SAMPLE_HARDWARE)
    laptop = result.rows[0]
    assert laptop.row == 2  # line 1 is the header
    assert (laptop.sku, laptop.mpn, laptop.manufacturer) == ("8RT112", "818D2UT#ABA", "HP Inc.")
    assert laptop.cost == D("1189.00") and isinstance(laptop.cost, Decimal)
    assert laptop.list_price == D("1549.00")
    assert laptop.currency == "USD"


def test_id_columns_stay_text_with_leading_zeros(tmp_path: Path) -> None:
    result = read_price_file(write_generic_csv(tmp_path, SAMPLE_HARDWARE))
    assert "0071234" in costs(result)  # Ubiquiti SKU, not 71234


def test_terms_in_a_generic_file_are_normalised(tmp_path: Path) -> None:
    result = read_price_file(write_generic_csv(tmp_path, SAMPLE_CLOUD))
    basic = [r for r in result.rows if r.sku == "CFQ7TTC0LH18:0001"]
    assert {(r.term, r.cost) for r in basic} == {("P1M", D("7.20")), ("P1Y", D("6.00"))}


def test_eu_semicolon_file_with_decimal_comma_and_bom(tmp_path: Path) -> None:
    path = write_eu_csv(tmp_path, with_currency(SAMPLE_HARDWARE, "EUR"))
    result = read_price_file(path)

    assert result.delimiter == ";" and result.decimal_mark == ","
    assert result.errors == []
    assert costs(result)["8RT112"] == D("1189.00")  # written "1.189,00"
    assert costs(result)["5QW091"] == D("219.99")  # written "219,99"
    assert {r.currency for r in result.rows} == {"EUR"}
    assert result.rows[0].sku == "8RT112"  # the BOM is not part of the first header


def test_cp1252_file_takes_currency_from_the_symbol_in_the_amount(tmp_path: Path) -> None:
    lines = [
        PriceLine("ESP-100", None, "Licença anual Café Pro — edição", D("12.50"), currency="EUR")
    ]
    lines += with_currency(SAMPLE_HARDWARE[:2], "GBP")
    result = read_price_file(write_cp1252_csv(tmp_path, lines))

    assert result.encoding == "cp1252"
    first = result.rows[0]
    assert first.description == "Licença anual Café Pro — edição"
    assert (first.cost, first.currency) == (D("12.50"), "EUR")
    assert (result.rows[1].cost, result.rows[1].currency) == (D("1189.00"), "GBP")


def test_utf16_tab_separated_unicode_text(tmp_path: Path) -> None:
    result = read_price_file(write_utf16_tab(tmp_path, SAMPLE_HARDWARE))
    assert result.delimiter == "\t" and result.encoding == "utf-16"
    assert costs(result)["2GH018"] == D("74.34")


def test_xlsx_with_a_title_line_reads_costs_exactly_and_refuses_formulas(tmp_path: Path) -> None:
    result = read_price_file(write_xlsx(tmp_path, SAMPLE_HARDWARE, formula_rows=[2]))

    assert result.profile == "generic"
    assert costs(result)["2GH018"] == D("74.34")  # not 74.3400000000000034
    assert result.rows[0].row == 4  # title, blank line, header
    [formula] = result.errors
    assert formula.row == 6 and formula.column == "Cost"
    assert "formula" in formula.message and formula.message.startswith("row 6, column Cost:")


# ---------------------------------------------------------------------------- distributor files


def test_ingram_price_txt_is_recognised_by_name_and_read_by_position(tmp_path: Path) -> None:
    path = write_ingram_price_txt(
        tmp_path, SAMPLE_HARDWARE, name="ingram-PRICE.TXT", deleted=[SAMPLE_HARDWARE[0]]
    )
    result = read_price_file(path)

    assert result.profile == "ingram_price" and result.vendor == "Ingram Micro"
    assert result.skipped == 1  # the action-D row is a deletion, not a price
    mouse = next(r for r in result.rows if r.sku == "2GH018")  # "2GH018      " unpadded
    assert mouse.cost == D("74.34")  # customer price "0000074.34", not retail
    assert mouse.list_price == D("99.99")
    assert mouse.mpn == "920-009295"
    assert mouse.description == "LOGITECH MX KEYS WIRELESS KEYBOARD"


def test_headerless_ingram_file_is_recognised_by_its_shape(tmp_path: Path) -> None:
    result = read_price_file(
        write_ingram_price_txt(tmp_path, SAMPLE_HARDWARE, name="feed-0600.txt")
    )
    assert result.profile == "ingram_price"


def test_stdprice_full_uses_the_ex_tax_customer_price(tmp_path: Path) -> None:
    result = read_price_file(write_ingram_stdprice(tmp_path, with_currency(SAMPLE_HARDWARE, "AUD")))
    assert result.profile == "ingram_stdprice"
    laptop = result.rows[0]
    assert (laptop.sku, laptop.mpn, laptop.cost, laptop.currency) == (
        "8RT112", "818D2UT#ABA", D("1189.00"), "AUD",
    )  # fmt: skip


def test_microsoft_csp_annual_prices_become_monthly_and_only_todays_rows_count(
    tmp_path: Path,
) -> None:
    result = read_price_file(write_ms_csp(tmp_path, SAMPLE_CLOUD, today=TODAY), today=TODAY)

    assert result.profile == "ms_csp" and result.vendor == "Microsoft"
    assert result.errors == []
    assert len(result.rows) == len(SAMPLE_CLOUD)
    assert result.skipped == 2 * len(SAMPLE_CLOUD)  # last month's and next month's prices
    by_key = {(r.sku, r.term): r for r in result.rows}
    annual = by_key[("CFQ7TTC0LCHC:0002", "P1Y")]
    assert annual.cost == D("22.00")  # UnitPrice 264.00 for the year ÷ 12
    assert annual.billing == "Annual" and annual.mpn == "CFQ7TTC0LCHC:0002"
    assert by_key[("CFQ7TTC0LCHC:0002", "P1M")].cost == D("26.40")


def test_microsoft_overlapping_price_ranges_resolve_to_the_newest(tmp_path: Path) -> None:
    path = write_ms_csp(tmp_path, SAMPLE_CLOUD[:1], today=TODAY, with_history=False)
    text = path.read_text("utf-8-sig").splitlines()
    newer = text[1].replace("7.20", "7.50").replace("11/1/2026", "11/10/2026")
    path.write_text("\n".join([*text, newer]) + "\n", "utf-8")

    [row] = read_price_file(path, today=TODAY).rows
    assert row.cost == D("7.50")


def test_microsoft_multi_currency_list_keeps_currency_per_row(tmp_path: Path) -> None:
    lines = [
        *SAMPLE_CLOUD[:1],
        *with_currency(SAMPLE_CLOUD[:1], "EUR"),
        *with_currency(SAMPLE_CLOUD[:1], "SEK"),
    ]
    result = read_price_file(
        write_ms_csp(tmp_path, lines, name="NCE_EU.csv", today=TODAY), today=TODAY
    )
    assert sorted(r.currency for r in result.rows) == ["EUR", "SEK", "USD"]
    assert result.errors == []


def test_td_synnex_uses_unit_cost_not_the_promotional_contract_price(tmp_path: Path) -> None:
    result = read_price_file(write_synnex(tmp_path, SAMPLE_HARDWARE))
    assert result.profile == "td_synnex" and result.delimiter == "~"
    assert costs(result)["8RT112"] == D("1189.00")  # Contract_Price is 1129.55


def test_dh_itemlist_reads_zero_padded_unit_cost(tmp_path: Path) -> None:
    result = read_price_file(write_dh_itemlist(tmp_path, SAMPLE_HARDWARE))
    assert result.profile == "dh_itemlist" and result.vendor == "D&H"
    printer = next(r for r in result.rows if r.mpn == "SL-M2020W/XAA")
    assert printer.cost == D("0.99")  # "00000.99"


def test_a_profile_can_be_forced_by_name(tmp_path: Path) -> None:
    path = write_dh_itemlist(tmp_path, SAMPLE_HARDWARE, name="nightly.dat")
    assert read_price_file(path, profile="dh_itemlist").profile == "dh_itemlist"


# ------------------------------------------------------------------------------- row problems


def test_every_bad_row_is_reported_with_its_row_and_column(tmp_path: Path) -> None:
    result = read_price_file(write_bad_costs_csv(tmp_path, SAMPLE_HARDWARE))

    assert not result.ok
    assert [str(e) for e in result.errors] == [
        "row 3, column Cost: '-219.99' is negative; a cost cannot be below zero",
        "row 4, column Cost: '12,5x' is not a number",
        "row 5, column Cost: no cost; every price row needs one",
        "row 6, column SKU: no SKU; every price row needs one",
    ]
    assert len(result.rows) == len(SAMPLE_HARDWARE) - 4  # the good rows are still read


def test_a_sku_priced_twice_differently_names_both_rows(tmp_path: Path) -> None:
    path = tmp_path / "dupes.csv"
    path.write_text(
        "SKU,Description,Cost\n"
        "8RT112,HP EliteBook 840,1189.00\n"
        "2GH018,MX Keys,74.34\n"
        "2GH018,MX Keys,74.34\n"
        "8RT112,HP EliteBook 840,1199.00\n"
    )
    result = read_price_file(path)
    assert result.duplicates == 1  # the identical MX Keys line collapses
    [error] = result.errors
    assert error.row == 5
    assert (
        "'8RT112' appears twice with different costs: row 2 says 1189 USD, row 5 says 1199 USD"
        in error.message
    )


def test_unknown_currency_and_term_are_row_errors(tmp_path: Path) -> None:
    path = tmp_path / "cloud.csv"
    path.write_text(
        "SKU,Cost,Currency,Term\nA1,5.00,USD,Monthly\nA2,5.00,XYZ,Monthly\nA3,5.00,USD,Fortnightly\n"
    )
    result = read_price_file(path)
    assert [(e.row, e.column) for e in result.errors] == [(3, "Currency"), (4, "Term")]


def test_a_decimal_comma_in_a_dot_file_is_refused_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text('SKU,Cost\nA1,10.50\nA2,11.25\nA3,"12,5"\n')
    [error] = read_price_file(path).errors
    assert error.message == (
        "row 4, column Cost: '12,5' is not a number (this file uses '.' as the decimal mark, not "
        "',')"
    )


def test_blank_lines_quotes_and_trailing_columns_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "messy.csv"
    path.write_text(
        'Item Number,Name,Partner Price,,\r\n\r\n"A-1","Widget, large","$1,024.00",,\r\n'
        ",,,,\r\nA-2,Gadget,3.5,,\r\n"
    )
    result = read_price_file(path)
    assert result.errors == []
    assert [(r.row, r.sku, r.cost) for r in result.rows] == [
        (3, "A-1", D("1024")),
        (5, "A-2", D("3.5")),
    ]


# ------------------------------------------------------------------------------ whole files


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda d: write_empty(d), "is empty"),
        (lambda d: write_binary_csv(d), "not a text price file"),
        (lambda d: write_truncated_xlsx(d, SAMPLE_HARDWARE), "damaged or was only partly copied"),
    ],
    ids=["empty", "binary-named-csv", "truncated-xlsx"],
)
def test_unreadable_files_get_one_clear_sentence(tmp_path: Path, make, says: str) -> None:
    with pytest.raises(FileUnreadable, match=says) as info:
        read_price_file(make(tmp_path))
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


def test_a_file_without_a_recognisable_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("Customer,Seats,Notes\nContoso,25,renewal in May\n")
    with pytest.raises(FileUnreadable, match="no header row costrecon recognises"):
        read_price_file(path)


def test_a_file_with_only_a_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "header-only.csv"
    path.write_text("SKU,Cost\n\n")
    with pytest.raises(FileUnreadable, match="no price rows"):
        read_price_file(path)


def test_a_file_whose_rows_are_all_deletions_has_no_usable_rows(tmp_path: Path) -> None:
    path = write_ingram_price_txt(tmp_path, [], deleted=SAMPLE_HARDWARE)
    with pytest.raises(FileUnreadable, match="no usable price rows"):
        read_price_file(path)


# ------------------------------------------------------------------ config profiles and records


def test_a_config_profile_reads_a_vendor_specific_layout(tmp_path: Path) -> None:
    acme = profile_from_config(
        "acme",
        {
            "vendor": "Acme Distribution",
            "delimiter": "semicolon",
            "decimal_mark": ",",
            "currency": "EUR",
            "columns": {"sku": "Art.Nr", "cost": "EK netto", "description": "Bezeichnung"},
            "signature": ["Art.Nr", "EK netto"],
        },
    )
    path = tmp_path / "export.csv"
    path.write_text("Art.Nr;Bezeichnung;EK netto\n100-200;Switch 24 Port;1.299,00\n")
    result = read_price_file(path, profiles={"acme": acme})
    assert result.profile == "acme" and result.vendor == "Acme Distribution"
    assert (result.rows[0].cost, result.rows[0].currency) == (D("1299.00"), "EUR")


@pytest.mark.parametrize(
    ("table", "names"),
    [
        ({"colums": {}}, "'colums' is not a profile setting (did you mean 'columns'?)"),
        ({"columns": {"sku": "A", "cots": "B"}}, "columns.cots"),
        ({"columns": {"sku": "A"}}, "columns.cost is required"),
        ({"columns": {"sku": "A", "cost": "B"}, "delimiter": ":"}, "delimiter"),
        ({"columns": {"sku": "A", "cost": "B"}, "currency": "EURO"}, "currency"),
        (
            {"columns": {"sku": "A", "cost": "B"}, "has_header": False},
            "columns.sku must be a column position",
        ),
    ],
)
def test_a_bad_config_profile_names_the_bad_key(table: dict, names: str) -> None:
    with pytest.raises(ProfileError, match="profile 'acme'") as info:
        profile_from_config("acme", table)
    assert names in str(info.value)


def test_api_records_go_through_the_same_validation() -> None:
    records = [
        {
            "sku": "MST-OFC-EE3-C100",
            "vendorSku": "CFQ7TTC0LFLX:0001",
            "partnerBuyRate": Decimal("9.90"),
            "billingTerm": "Monthly",
        },
        {
            "sku": "MST-OFC-EE3-C100",
            "vendorSku": "CFQ7TTC0LFLX:0001",
            "partnerBuyRate": "n/a",
            "billingTerm": "Annual",
        },
    ]
    pax8 = profile_from_config(
        "pax8",
        {
            "vendor": "Pax8",
            "columns": {
                "sku": "sku",
                "mpn": "vendorSku",
                "cost": "partnerBuyRate",
                "term": "billingTerm",
            },
        },
    )
    result = rows_from_records(records, pax8)
    assert [(r.sku, r.term, r.cost) for r in result.rows] == [
        ("MST-OFC-EE3-C100", "P1M", D("9.90"))
    ]
    assert [str(e) for e in result.errors] == [
        "row 2, column partnerBuyRate: 'n/a' is not a number"
    ]


def test_a_price_txt_name_on_a_file_with_a_header_is_read_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "acme-price.txt"
    path.write_text("SKU,Description,Cost\nA-1,Widget,10.00\n")
    assert read_price_file(path).profile == "generic"


def test_ingram_price_zip_is_read_through_the_txt_inside(tmp_path: Path) -> None:
    result = read_price_file(write_ingram_price_zip(tmp_path, SAMPLE_HARDWARE))
    assert result.profile == "ingram_price"
    assert costs(result)["2GH018"] == D("74.34")


def test_utf16_big_endian_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "be.txt"
    path.write_bytes("SKU\tCost\nA-1\t10.25\n".encode("utf-16"))  # native order with BOM
    path.write_bytes(b"\xfe\xff" + "SKU\tCost\nA-1\t10.25\n".encode("utf-16-be"))
    assert costs(read_price_file(path)) == {"A-1": D("10.25")}


def test_xlsx_sheet_named_by_a_profile_and_empty_rows_keep_row_numbers(tmp_path: Path) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Read me"
    workbook.active["A1"] = "This workbook has two sheets"
    sheet = workbook.create_sheet("Pricing")
    sheet["A1"], sheet["B1"], sheet["C1"] = "Part No", "Net", "Currency"
    sheet["A2"], sheet["B2"], sheet["C2"] = "00417", 12.3, "EUR"
    sheet["A5"], sheet["B5"], sheet["C5"] = "00418", 0.1 + 0.2, "EUR"  # 0.30000000000000004
    path = tmp_path / "two-sheets.xlsx"
    workbook.save(path)
    profile = profile_from_config(
        "acme-xlsx",
        {"sheet": "Pricing", "columns": {"sku": "Part No", "cost": "Net", "currency": "Currency"}},
    )
    result = read_price_file(path, profile="acme-xlsx", profiles={"acme-xlsx": profile})
    assert [(r.row, r.sku, r.cost) for r in result.rows] == [
        (2, "00417", D("12.3")),
        (5, "00418", D("0.3")),
    ]


def test_a_pax8_style_export_reads_through_the_generic_profile(tmp_path: Path) -> None:
    path = tmp_path / "pax8-pricebook.csv"
    path.write_text(
        "Product Name,Vendor,SKU,Vendor SKU,Billing Term,Partner Buy Rate,Suggested Retail "
        "Price,Currency\nMicrosoft 365 Business "
        "Premium,Microsoft,MST-365-BP,CFQ7TTC0LCHC:0002,Annual,22.00,26.40,USD\nMicrosoft 365 "
        "Business Premium,Microsoft,MST-365-BP,CFQ7TTC0LCHC:0002,Monthly,26.40,31.68,USD\n"
    )
    result = read_price_file(path, vendor="Pax8")
    assert result.errors == [] and result.vendor == "Pax8"
    assert [(r.sku, r.term, r.cost) for r in result.rows] == [
        ("MST-365-BP", "P1Y", D("22.00")),
        ("MST-365-BP", "P1M", D("26.40")),
    ]


def test_microsoft_trials_and_other_segments_are_not_commercial_costs(tmp_path: Path) -> None:
    path = write_ms_csp(tmp_path, SAMPLE_CLOUD[:1], today=TODAY, with_history=False)
    lines = path.read_text("utf-8-sig").splitlines()
    trial = lines[1].replace(",Monthly,", ",None,").replace(",7.20,", ",0.00,")
    education = lines[1].replace(",Commercial", ",Education").replace(",7.20,", ",2.50,")
    path.write_text("\n".join([*lines, trial, education]) + "\n", "utf-8")

    result = read_price_file(path, today=TODAY)
    assert [(r.billing, r.cost) for r in result.rows] == [("Monthly", D("7.20"))]
    assert result.skipped == 2 and result.errors == []


def test_excels_sep_hint_line_sets_the_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "hinted.csv"
    path.write_text("sep=;\nSKU;Description;Cost\nA-1;Widget, large;10,50\n")
    result = read_price_file(path)
    assert [(r.row, r.sku, r.description, r.cost) for r in result.rows] == [
        (3, "A-1", "Widget, large", D("10.50"))
    ]


# ------------------------------------------------------------------ hostile files (issue 13 #1)


def test_a_small_zip_holding_gigabytes_of_csv_is_refused_before_it_is_inflated(
    tmp_path: Path,
) -> None:
    path = write_zip_bomb_csv(tmp_path, gib=4)
    assert path.stat().st_size < 40 << 20
    with pytest.raises(FileUnreadable, match="was refused: PRICES.CSV"):
        read_price_file(path)


def test_an_xlsx_whose_shared_strings_expand_to_hundreds_of_mib_is_refused(
    tmp_path: Path,
) -> None:
    path = write_xlsx_shared_strings_bomb(tmp_path, mib=600)
    assert path.stat().st_size < 20 << 20
    with pytest.raises(FileUnreadable, match="sharedStrings.xml"):
        read_price_file(path)


def test_an_xlsx_with_a_cell_at_column_zzzzzz_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileUnreadable, match="column ZZZZZZ"):
        read_price_file(write_xlsx_far_cell(tmp_path))


def test_an_xlsx_with_row_two_billion_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileUnreadable, match="row numbered 2,000,000,000"):
        read_price_file(write_xlsx_far_row(tmp_path))


def test_a_text_file_over_the_size_cap_is_refused_without_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from costrecon_daemon.vendors import limits

    path = write_generic_csv(tmp_path, SAMPLE_HARDWARE)
    monkeypatch.setattr(limits, "MAX_TEXT_BYTES", path.stat().st_size - 1)
    with pytest.raises(FileUnreadable, match="was refused"):
        read_price_file(path)


# ------------------------------------------------------------------ streaming (issue 15)

from costrecon_daemon.vendors.readers import stream_price_file  # noqa: E402

STREAMED_FILES = {
    "generic": lambda d: write_generic_csv(d, SAMPLE_HARDWARE + SAMPLE_CLOUD),
    "eu": lambda d: write_eu_csv(d, SAMPLE_HARDWARE),
    "cp1252": lambda d: write_cp1252_csv(d, SAMPLE_HARDWARE),
    "utf16": lambda d: write_utf16_tab(d, SAMPLE_HARDWARE),
    "ingram": lambda d: write_ingram_price_txt(d, SAMPLE_HARDWARE),
    "ingram-zip": lambda d: write_ingram_price_zip(d, SAMPLE_HARDWARE),
    "stdprice": lambda d: write_ingram_stdprice(d, SAMPLE_HARDWARE),
    "synnex": lambda d: write_synnex(d, SAMPLE_HARDWARE),
    "dh": lambda d: write_dh_itemlist(d, SAMPLE_HARDWARE),
    "csp": lambda d: write_ms_csp(d, SAMPLE_CLOUD, today=date(2026, 11, 15)),
    "xlsx": lambda d: write_xlsx(d, SAMPLE_HARDWARE),
}


@pytest.mark.parametrize("kind", sorted(STREAMED_FILES))
def test_the_streaming_reader_gives_the_same_rows_as_the_whole_file_reader(
    tmp_path: Path, kind: str
) -> None:
    path = STREAMED_FILES[kind](tmp_path)
    whole = read_price_file(path, today=date(2026, 11, 15))
    got: list = []
    streamed = stream_price_file(path, got.extend, today=date(2026, 11, 15))
    assert got == whole.rows
    assert streamed.streamed == len(whole.rows) and streamed.rows == []
    assert (streamed.profile, streamed.vendor, streamed.errors) == (
        whole.profile,
        whole.vendor,
        whole.errors,
    )
    assert (streamed.encoding, streamed.delimiter) == (whole.encoding, whole.delimiter)


def test_the_streaming_reader_finds_a_bad_row_late_in_a_big_file(tmp_path: Path) -> None:
    lines = [PriceLine(f"S{i:06d}", None, f"Item {i}", Decimal("1.25")) for i in range(50_000)]
    path = write_generic_csv(tmp_path, lines)
    text = path.read_text().replace("S049990,", "S049990X,").replace(",1.25,USD", ",1.2x5,USD", 1)
    text = text[: text.rindex("1.25")] + "oops" + text[text.rindex("1.25") + 4 :]
    path.write_text(text)
    got: list = []
    result = stream_price_file(path, got.extend)
    assert [e.row for e in result.errors] == [2, 50_001]
    assert len(got) + 2 == 50_000
