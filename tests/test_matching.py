"""Which catalogue item a vendor price row lands on (vendors.md §5), as a technician would check it
against a realistic MSP catalogue."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from costrecon_daemon.vendors.matching import (
    CatalogKey,
    Mapping,
    Matcher,
    item_term,
)
from costrecon_daemon.vendors.normalise import normalise_manufacturer, normalise_mpn
from costrecon_daemon.vendors.readers import VendorRow, read_price_file

from .pricefiles import SAMPLE_CLOUD, SAMPLE_HARDWARE, write_ingram_price_txt, write_ms_csp

CATALOGUE = [
    CatalogKey(
        101,
        "HP-840G10",
        "HP EliteBook 840 G10 Notebook",
        vendor_sku="8RT112",
        mpn="818D2UT",
        manufacturer="HP",
    ),
    CatalogKey(102, "DELL-P2423D", "Dell 24 Monitor - P2423D", mpn="P2423D", manufacturer="Dell"),
    CatalogKey(103, "U6-PRO", "UniFi 6 Pro AP"),
    CatalogKey(
        104, "MXKEYS", "Logitech MX Keys keyboard", mpn="920-009295", manufacturer="Logitech"
    ),
    CatalogKey(
        110,
        "M365BB-MTH",
        "Microsoft 365 Business Basic (Monthly)",
        mpn="CFQ7TTC0LH18:0001",
        manufacturer="Microsoft",
    ),
    CatalogKey(
        111,
        "M365BB-ANN",
        "Microsoft 365 Business Basic (Annual)",
        mpn="CFQ7TTC0LH18:0001",
        manufacturer="Microsoft",
    ),
    CatalogKey(
        112,
        "M365BP",
        "Microsoft 365 Business Premium",
        mpn="CFQ7TTC0LCHC:0002",
        manufacturer="Microsoft",
    ),
    CatalogKey(
        113,
        "M365BS",
        "Microsoft 365 Business Standard - annual, billed monthly",
        mpn="CFQ7TTC0LDPB:0001",
    ),
    CatalogKey(120, "APC-1500", "APC Back-UPS Pro 1500", mpn="BR1500MS2", manufacturer="APC"),
    CatalogKey(
        121, "APC-1500-SPARE", "APC Back-UPS Pro 1500 (spare)", mpn="BR1500MS2", manufacturer="APC"
    ),
    CatalogKey(130, "NET-SW24", "Netgear 24 port switch", mpn="GS324", manufacturer="Netgear"),
    CatalogKey(
        131, "CISCO-SW24", "Cisco 24 port switch", mpn="GS324", manufacturer="Cisco Systems"
    ),
]


def row(sku: str, mpn: str | None = None, *, term: str | None = None, vendor: str = "Ingram Micro",
        manufacturer: str | None = None, description: str = "") -> VendorRow:  # fmt: skip
    return VendorRow(
        1, vendor, sku, mpn, manufacturer, description, term, None, "USD", Decimal("1"), None
    )


def test_a_saved_mapping_wins_over_every_key() -> None:
    matcher = Matcher(CATALOGUE, [Mapping("Ingram Micro", "8RT112", None, 104)])
    # the Ingram SKU and the MPN both point at the laptop, but a person said otherwise
    assert _hit(matcher, row("8RT112", "818D2UT#ABA")) == (104, "mapping")


def test_a_mapping_is_per_vendor() -> None:
    matcher = Matcher(CATALOGUE, [Mapping("D&H", "8RT112", None, 104)])
    result = matcher.match(row("8RT112", vendor="Ingram Micro"))
    assert (result.item_id, result.method) == (101, "vendor_sku")


def test_a_mapping_saved_for_one_term_does_not_catch_the_other_term() -> None:
    matcher = Matcher(CATALOGUE, [Mapping("Pax8", "MST-365-BP", "P1Y", 112)])
    assert matcher.match(row("MST-365-BP", term="P1Y", vendor="Pax8")).item_id == 112
    assert matcher.match(row("MST-365-BP", term="P1M", vendor="Pax8")).item_id is None


def test_vendor_sku_then_mpn_then_identifier() -> None:
    matcher = Matcher(CATALOGUE)
    assert _hit(matcher, row("8RT112")) == (101, "vendor_sku")
    assert _hit(matcher, row("5QW091", "P2423D")) == (102, "mpn")
    assert _hit(matcher, row("0071234", "U6-PRO")) == (103, "identifier")
    assert _hit(matcher, row("9ZZ999", "NOPE-1")) == (None, None)


def test_hp_regional_suffix_and_punctuation_do_not_stop_an_mpn_match() -> None:
    matcher = Matcher(CATALOGUE)
    assert _hit(matcher, row("X", "818d2ut#ABA")) == (101, "mpn")
    assert _hit(matcher, row("X", "920 009295")) == (104, "mpn")
    assert normalise_mpn("818D2UT#ABA") == normalise_mpn("818D2UT")
    assert normalise_mpn("ABC#XYZ") != normalise_mpn("ABC")  # not a known regional code
    assert normalise_mpn("818D2UT-ABA") != normalise_mpn("818D2UT")  # a dash suffix may be real


def test_same_mpn_from_two_manufacturers_is_scoped_by_manufacturer() -> None:
    matcher = Matcher(CATALOGUE)
    assert _hit(matcher, row("X", "GS324", manufacturer="NETGEAR INC.")) == (130, "mpn")
    assert _hit(matcher, row("X", "GS324", manufacturer="Cisco")) == (131, "mpn")
    assert normalise_manufacturer("Microsoft Corporation") == "microsoft"


def test_two_items_with_the_same_key_are_ambiguous_and_both_reported() -> None:
    result = Matcher(CATALOGUE).match(row("9ZX443", "BR1500MS2", manufacturer="APC"))
    assert result.item_id is None and result.ambiguous
    assert (result.method, set(result.candidates)) == ("mpn", {120, 121})


def test_a_monthly_price_never_lands_on_the_annual_item() -> None:
    matcher = Matcher(CATALOGUE)
    monthly = row("CFQ7TTC0LH18:0001", "CFQ7TTC0LH18:0001", term="P1M", vendor="Microsoft")
    annual = row("CFQ7TTC0LH18:0001", "CFQ7TTC0LH18:0001", term="P1Y", vendor="Microsoft")
    assert _hit(matcher, monthly) == (110, "mpn")
    assert _hit(matcher, annual) == (111, "mpn")


def test_an_item_whose_term_is_unknown_is_suggested_not_matched_for_a_cloud_row() -> None:
    matcher = Matcher(CATALOGUE)
    premium = row("CFQ7TTC0LCHC:0002", "CFQ7TTC0LCHC:0002", term="P1Y", vendor="Microsoft",
                  description="Microsoft 365 Business Premium")  # fmt: skip
    assert matcher.match(premium).item_id is None
    [first, *_] = matcher.suggest(premium)
    assert first.item_id == 112 and first.score >= 90
    assert "item has no term" in first.reason


def test_item_terms_come_from_field_identifier_or_name() -> None:
    assert item_term(CatalogKey(1, "M365BB-MTH", "x")) == "P1M"
    assert item_term(CatalogKey(1, "CFQ7TTC0LH18:0001:P1Y:M", "x")) == "P1Y"
    assert item_term(CatalogKey(1, "BB", "Business Basic (Annual)")) == "P1Y"
    assert item_term(CatalogKey(1, "BS", "Standard - annual, billed monthly")) == "P1Y"
    assert item_term(CatalogKey(1, "BS", "Business Standard", term="Monthly")) == "P1M"
    assert item_term(CatalogKey(1, "LAPTOP-840", "HP EliteBook 840")) is None


def test_suggestions_rank_names_and_keep_near_identical_skus_apart() -> None:
    catalogue = [
        CatalogKey(1, "M365BB-M", "Microsoft 365 Business Basic (Monthly)"),
        CatalogKey(2, "M365BB-EEA-M", "Microsoft 365 Business Basic EEA (no Teams) (Monthly)"),
        CatalogKey(3, "M365BB-A", "Microsoft 365 Business Basic (Annual)"),
        CatalogKey(4, "EXO1-M", "Exchange Online (Plan 1) - Monthly"),
    ]
    matcher = Matcher(catalogue)
    suggestions = matcher.suggest(
        row("NEW-SKU", term="P1M", vendor="Pax8", description="Microsoft 365 Business Basic"),
        limit=3,
    )
    assert [s.item_id for s in suggestions][:2] == [1, 2]  # the annual item is left out
    assert suggestions[0].score > suggestions[1].score
    assert suggestions[0].reason.startswith("name 100% similar")


def test_files_from_the_sample_writers_match_a_catalogue_end_to_end(tmp_path: Path) -> None:
    ingram = read_price_file(write_ingram_price_txt(tmp_path, SAMPLE_HARDWARE))
    csp = read_price_file(
        write_ms_csp(tmp_path, SAMPLE_CLOUD, today=date(2026, 11, 15)), today=date(2026, 11, 15)
    )
    matcher = Matcher(CATALOGUE)
    matched = {r.sku: matcher.match(r).item_id for r in ingram.rows}
    assert matched["8RT112"] == 101 and matched["5QW091"] == 102 and matched["2GH018"] == 104
    cloud = {(r.sku, r.term): matcher.match(r).item_id for r in csp.rows}
    assert cloud[("CFQ7TTC0LH18:0001", "P1M")] == 110
    assert cloud[("CFQ7TTC0LH18:0001", "P1Y")] == 111
    assert cloud[("CFQ7TTC0LDPB:0001", "P1Y")] == 113  # "annual, billed monthly" is annual


def _hit(matcher: Matcher, vendor_row: VendorRow) -> tuple[int | None, str | None]:
    result = matcher.match(vendor_row)
    return result.item_id, result.method


def test_a_big_chunk_of_mostly_unknown_rows_matches_exactly_as_row_by_row() -> None:
    """match_all skips rows no index can find (issue 15): the few rows that name a catalogue
    item, in any spelling the exact keys accept, must still match as ``match`` matches them."""
    matcher = Matcher(CATALOGUE, [Mapping("Ingram Micro", "ING-777", None, 103)])
    known = [
        row("8rt112"),  # vendor SKU, other case
        row("X1", "818-D2UT#ABA", manufacturer="HP Inc."),  # MPN with a regional suffix
        row("X2", "p2423d"),
        row("u6-pro"),  # identifier
        row("X3", "BR1500MS2", manufacturer="APC"),  # ambiguous: two items
        row("ing-777"),  # a saved mapping
        row("X4", "CFQ7TTC0LH18:0001", term="P1M", manufacturer="Microsoft"),
        row("X5", "M365BP"),  # the MPN column holds an identifier
        row("M365 BB-MTH", term="P1M"),  # inner space
    ]
    chunk = [row(f"{i:012d}", f"M{i:08d}-123") for i in range(5_000)]
    for n, r in enumerate(known):
        chunk.insert(n * 500 + 7, r)
    chunk.append(row("\tu6-pro "))  # odd whitespace: the whole chunk takes the row-by-row path
    expected = [matcher.match(r) for r in chunk]
    assert matcher.match_all(chunk) == expected
    assert matcher.match_all(chunk[:-1]) == expected[:-1]
    # Every known row but the ambiguous one matched, and so did the odd-whitespace one.
    assert sum(1 for m in expected if m.item_id is not None) == len(known)
    assert any(m.ambiguous for m in expected)
