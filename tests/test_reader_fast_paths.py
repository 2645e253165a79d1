"""The reader process's fast paths (issue 15: 2,000,000 rows) must never change what is stored:
rows read straight into their stored form equal the VendorRows of the full path in stored form,
the bulk candidate check never loses a row that ``match`` matches, and the chunk's JSON text is
the standard encoder's. Each test runs the same input through both paths, on tricky input."""

from __future__ import annotations

import json
import random
from array import array
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costrecon_daemon.vendors.convert import to_stored
from costrecon_daemon.vendors.matching import (
    NO_MATCH,
    CatalogKey,
    Mapping,
    Matcher,
    split_chunk,
    split_stored,
)
from costrecon_daemon.vendors.reader_process import loose_json, stored_json
from costrecon_daemon.vendors.readers import FileUnreadable, ReadResult, stream_price_file
from costrecon_daemon.vendors.rows import VendorRow

from .test_readers import STREAMED_FILES

TODAY = date(2026, 11, 15)
FALLBACK = "Vendor From The File Name"

# Costs that take every branch of the cost parser: plain digits with 0-6 decimals (rounded
# half-even past 4), leading zeros, thousands separators, currency symbols and codes, negative,
# zero, too long for Decimal's 28 digits, unicode digits, and text that is no number at all.
TRICKY_COSTS = [
    "74.34", "0000074.34", "12", "12.", ".5", "0", "0.00", "1.2345", "1.23455", "1.23465",
    "0.00005", "0.00015", "99999999999999.99995", "1,234.56", '"1,234,567.891"', "$1,234.5678",
    "USD 12.50", "12.50 USD", "€12.50", "-5.00", "-0", " 12.5 ", "", "abc", "1.2.3",
    "123456789012345678901234", "1234567890123456789012345", "12345678901234567890123.4567",
    "1234567890123456789012.34567", "9" * 40 + ".5", "١٢٣", "１２３.４", "922337203685477.5807",
]  # fmt: skip


def _tricky_csv(directory: Path) -> Path:
    lines = ["SKU,MPN,Manufacturer,Description,Cost,Currency,Term"]
    terms = ["", "Monthly", "Annual", "P1M", "P3Y", "nonsense"]
    for i, cost in enumerate(TRICKY_COSTS * 3):
        term = terms[i % len(terms)]
        currency = ["USD", "", "usd", "EUR", "XXX"][i % 5]
        mpn = ["5CD-12 34#ABA", "", "ab.cd/ef_gh", "Straße-1", '"a ""quoted"" mpn"'][i % 5]
        description = ["Wide " * 150, "", "tab\there", "émoji 😀", "back\\slash"][i % 5]
        sku = ["", f"SKU-{i}", f" sku {i} ", f"ÉCRAN-{i}", f"X#{i}"][i % 5] if i % 7 else f"S{i}"
        lines.append(f'{sku},{mpn},HP Inc.,"{description}",{cost},{currency},{term}')
    lines.append("SKU-dup,,,,12.50,USD,")
    lines.append("SKU-dup,,,,12.50,USD,")
    lines.append("sku-dup,,,,13.50,USD,")
    path = directory / "tricky.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _decimal_comma_csv(directory: Path) -> Path:
    rows = ["Artikelnummer;Beschreibung;Einkaufspreis;Währung"]
    for i, cost in enumerate(["12,50", "1.234,56", "0,0001", "0,00005", "7", "12,3456", "x"] * 3):
        rows.append(f"A{i};Teil {i};{cost};EUR")
    path = directory / "preise.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _ingram_tricky(directory: Path) -> Path:
    lines = []
    for i, cost in enumerate(["0000074.34", "0000000.00", "0001234.5", "12.34567", "x", "-1.00"]):
        action = "D" if i == 4 else "A"
        fields = [
            action, f"ING{i:06d}", "1234", "HP INC", f"DESC {i}", "", "0000099.99",
            f"5CD12{i}#ABA", "004.50", "012345678905", "0012.00", "0008.00", "0002.00", "Y",
            cost, "", "Y", "", "", "", "0701", "", "",
        ]  # fmt: skip
        lines.append(",".join(f'"{f}"' for f in fields))
    path = directory / "PRICE.TXT"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="ascii")
    return path


FILES = {
    **STREAMED_FILES,
    "tricky": _tricky_csv,
    "decimal-comma": _decimal_comma_csv,
    "ingram-tricky": _ingram_tricky,
}


def _read(path: Path, stored_vendor: str | None) -> tuple[list, ReadResult]:
    got: list = []
    result = stream_price_file(
        path, got.extend, today=TODAY, list_prices=False, stored_vendor=stored_vendor
    )
    return got, result


@pytest.mark.parametrize("kind", sorted(FILES))
def test_rows_read_straight_into_their_stored_form_equal_the_full_paths(
    tmp_path: Path, kind: str
) -> None:
    path = FILES[kind](tmp_path)
    full, full_result = _read(path, None)
    fast, fast_result = _read(path, FALLBACK)
    assert all(isinstance(r, VendorRow) for r in full)
    assert fast == to_stored(full, FALLBACK)
    assert all(type(values) is tuple and len(values) == 9 for values in fast)
    assert fast_result.errors == full_result.errors
    assert (fast_result.total_rows, fast_result.skipped, fast_result.streamed) == (
        full_result.total_rows,
        full_result.skipped,
        full_result.streamed,
    )
    assert (fast_result.vendor, fast_result.decimal_mark) == (
        full_result.vendor,
        full_result.decimal_mark,
    )
    if full_result.key_hashes is None:
        assert fast_result.key_hashes is None
    else:
        assert list(fast_result.key_hashes) == list(full_result.key_hashes)
    if kind == "tricky":
        # The file exercises what it is meant to: good rows, bad rows of each kind.
        assert len(fast) > 20 and len(fast_result.errors) > 20
        units = {values[7] for values in fast}
        assert {743_400, 12_346, 0} <= units  # 74.34; 1.23455 and 1.23465 round half-even


def test_a_whole_file_read_gives_the_same_rows_as_the_stored_form_and_errors(
    tmp_path: Path,
) -> None:
    """The figures behind every stored cost: Decimal exactness of a few by hand."""
    path = tmp_path / "prices.csv"
    path.write_text(
        "SKU,Cost\nA,0000074.34\nB,1.23455\nC,1.23465\nD,12.\nE,.5\nF,1234567890123456789012.34\n",
        encoding="ascii",
    )
    fast, _ = _read(path, FALLBACK)
    assert [v[7] for v in fast] == [
        743_400,
        12_346,  # half-even: 1.2346
        12_346,  # half-even: 1.2346 (not 1.2347)
        120_000,
        5_000,
        12_345_678_901_234_567_890_123_400,
    ]


# ------------------------------------------------------------------------------------ matching

CATALOGUE = [
    CatalogKey(1, "ABC-123", "Widget", vendor_sku="SKU 1", mpn="5CD-12 34#ABA", manufacturer="HP"),
    CatalogKey(2, "X#Y", "Hash item", mpn="X#Y-Z", manufacturer="Acme"),
    CatalogKey(3, "ÉCRAN-27", "Écran 27", mpn="Straße-1", manufacturer="Société Générale"),
    CatalogKey(4, "ab.cd/ef_gh", "Punctuation", mpn="AB.CD/EF_GH"),
    CatalogKey(5, "M365BB-MTH", "Microsoft 365 Business Basic (Monthly)", mpn="CFQ7:0001"),
    CatalogKey(6, "M365BB-ANN", "Microsoft 365 Business Basic (Annual)", mpn="CFQ7:0001"),
    CatalogKey(7, "DUP-1", "Duplicate A", mpn="SAME-MPN"),
    CatalogKey(8, "DUP-2", "Duplicate B", mpn="SAME-MPN"),
    CatalogKey(9, "ΣΊΣΥΦΟΣ", "Greek", mpn="İSTANBUL"),
    CatalogKey(10, "0001234", "Leading zeros", vendor_sku="00ING1"),
    CatalogKey(11, "--", "Only punctuation", mpn="./_"),  # keys that loosen to nothing
]
MAPPINGS = [Mapping("Ingram Micro", "MAPPED-1", None, 4), Mapping("TD Synnex", "MS-1", "P1Y", 6)]

# Keys a row may carry: catalogue keys written the ways files write them, near misses, and
# characters the bulk check must treat exactly as ``match`` does.
_PIECES = [
    "5CD1234", "5cd-1234#ABA", "5CD1234#abu", "5CD1234#XYZ", "#ABA", "5CD-12 34", "X#Y", "x#y-z",
    "X#Y#ABA", "STRASSE1", "strasse-1", "Straße-1", "STRAßE 1", "écran-27", "ÉCRAN 27",
    "ab.cd/ef_gh",
    "abcdefgh", "AB CD EF GH", "SKU 1", "sku1", " SKU1 ", "CFQ7:0001", "cfq70001", "same-mpn",
    "SAMEMPN", "σίσυφοσ", "ΣΊΣΥΦΟΣ", "i̇stanbul", "İSTANBUL", "ISTANBUL", "00ING1", "0ING1",
    "MAPPED-1", "mapped 1", "MS-1", "abc\u00a0123", "ABC\t123", "ABC-123", "abc–123", "None",
    "NONE", "0001234", "1234", "ＡＢＣ-123", "abc-123\u3000", "M12345678-001", "--", "-", "./_",
]  # fmt: skip


def _rows(rnd: random.Random, n: int, odd: bool) -> list[VendorRow]:
    # Whitespace other than spaces sends a chunk down the full path (``odd``); else the fast one.
    pieces = (
        _PIECES if odd else [p for p in _PIECES if not any(c.isspace() and c != " " for c in p)]
    )
    rows = []
    for i in range(n):
        roll = rnd.random()
        sku = rnd.choice(pieces) if roll < 0.3 else f"ING{i:08d}"
        mpn = rnd.choice(pieces) if 0.2 < roll < 0.6 else (None if roll > 0.9 else f"M{i:06d}")
        term = rnd.choice([None, None, "P1M", "P1Y"])
        vendor = rnd.choice(["Ingram Micro", "TD Synnex", "ingram  micro"])
        manufacturer = rnd.choice([None, "HP", "Hewlett Packard", "Acme", "Société Générale"])
        rows.append(
            VendorRow(
                i + 2, vendor, sku, mpn, manufacturer, "d", term, None, "USD", Decimal(1), None
            )
        )
    return rows


@pytest.mark.parametrize("seed", range(12))
def test_the_bulk_candidate_check_matches_exactly_the_rows_match_matches(seed: int) -> None:
    matcher = Matcher(CATALOGUE, MAPPINGS)
    rnd = random.Random(seed)
    rows = _rows(rnd, 400, odd=seed % 4 == 3)
    expected = [matcher.match(r) for r in rows]
    assert any(m.item_id is not None for m in expected)  # the test has something to find

    found = matcher.candidates([r.sku for r in rows], [r.mpn for r in rows], len(rows))
    if seed % 4 != 3:
        assert found is not None  # '#', unicode and case take the fast path, not the fallback
    if found is not None:
        assert {i for i, m in enumerate(expected) if m != NO_MATCH} <= set(found)

    assert matcher.match_all(rows) == expected

    numbers: array[int] = array("q")
    loose, loose_results, matched = split_chunk(rows, matcher, FALLBACK, numbers)
    stored_rows = to_stored(rows, FALLBACK)
    stored_numbers: array[int] = array("q")
    s_loose, s_results, s_matched = split_stored(stored_rows, matcher, stored_numbers)
    assert s_loose == to_stored(loose, FALLBACK)
    assert s_results == loose_results
    assert [(values, m) for values, m in s_matched] == [
        (to_stored([r], FALLBACK)[0], m) for r, m in matched
    ]
    assert list(stored_numbers) == list(numbers) == [r.row for r in rows]
    # The JSON text the daemon stores is the same whichever path built it.
    assert stored_json("f.csv", s_loose, s_results) == loose_json("f.csv", loose, loose_results)


def test_a_pickled_matcher_finds_the_same_candidates() -> None:
    import pickle

    matcher = Matcher(CATALOGUE, MAPPINGS)
    matcher.candidates(["x"] * 64, [None] * 64, 64)  # fills the loose-key cache before pickling
    copy = pickle.loads(pickle.dumps(matcher))
    rows = _rows(random.Random(99), 300, odd=False)
    args = ([r.sku for r in rows], [r.mpn for r in rows], len(rows))
    assert copy.candidates(*args) == matcher.candidates(*args)
    assert copy.match_all(rows) == matcher.match_all(rows)


# ---------------------------------------------------------------------------------------- JSON


def _standard(values: list) -> str:
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def test_the_chunk_json_is_the_standard_encoders_text() -> None:
    nasty = [
        'quote " and backslash \\',
        "control \x00\x01\x08\x09\x0a\x0c\x0d\x1f\x7f",
        "unicode é ß 中文 😀 \u2028\u2029 \ufeff",
        "",
    ]
    rows = [
        (i, text, text[::-1], None if i % 2 else text, None, text[:512], "P1M", 10**18 + i, "EUR")
        for i, text in enumerate(nasty)
    ]
    # Rows go out in (vendor, SKU) order, the database index's: see the next test.
    by_key = sorted(rows, key=lambda r: (r[1], r[2]))
    assert stored_json("f.csv", rows, None) == _standard([list(r) for r in by_key])
    results = [NO_MATCH, NO_MATCH._replace(method="mpn", candidates=(1, 2)), NO_MATCH, NO_MATCH]
    assert stored_json("f.csv", rows, results) == _standard(
        sorted(
            ([*r, m.method] for r, m in zip(rows, results, strict=True)),
            key=lambda r: (r[1], r[2]),
        )
    )
    # A lone surrogate is not UTF-8: written as the standard encoder writes it, not refused.
    odd = [(1, "lone \ud800 surrogate", "s", None, None, "", None, 1, "USD")]
    assert stored_json("f.csv", odd, None) == _standard([list(odd[0])])


def test_a_chunk_goes_to_the_database_in_index_order_only_when_it_is_not_already() -> None:
    """The writer keeps an index on (vendor, SKU, term): a chunk in that order walks it in one
    direction. A chunk already in order (a list sorted by part number) goes as it is; another
    is sorted, each row keeping its row number and its match method."""
    ascending = [(n + 2, "V", f"SKU{n:03d}", None, None, "", None, n, "USD") for n in range(5)]
    assert stored_json("f.csv", ascending, None) == _standard([list(r) for r in ascending])
    shuffled = [ascending[i] for i in (3, 0, 4, 1, 2)]
    results = [NO_MATCH._replace(method=f"m{r[0]}") for r in shuffled]
    sent = json.loads(stored_json("f.csv", shuffled, results))
    assert [r[2] for r in sent] == [f"SKU{n:03d}" for n in range(5)]
    assert [(r[0], r[-1]) for r in sent] == [(n + 2, f"m{n + 2}") for n in range(5)]
    two_vendors = [(2, "B", "A1", *ascending[0][3:]), (3, "A", "Z9", *ascending[0][3:])]
    assert [r[1] for r in json.loads(stored_json("f.csv", two_vendors, None))] == ["A", "B"]


def test_a_cost_past_64_bits_fails_the_file_in_both_paths() -> None:
    big = (2, "V", "S", None, None, "", None, 1 << 63, "USD")
    with pytest.raises(FileUnreadable, match="too large to store"):
        stored_json("f.csv", [big], None)
    row = VendorRow(2, "V", "S", None, None, "", None, None, "USD", Decimal(1 << 63) / 10_000, None)
    with pytest.raises(FileUnreadable, match="too large to store"):
        loose_json("f.csv", [row], None)


# ------------------------------------------------------------------------- the reader process


def _catalogue_file(directory: Path) -> Path:
    """A generic CSV whose rows name catalogue items by every key, ambiguously, and not at all,
    spread over several chunks, with repeated SKUs for the repeated-key check."""
    lines = ["SKU,MPN,Manufacturer,Description,Cost,Currency"]
    names = ["SKU 1", "x#y-z", "5cd-1234#ABA", "same-mpn", "MAPPED-1", "İSTANBUL", "0001234"]
    for i in range(45_000):
        if i % 997 == 0:
            sku, mpn = f"R{i}", names[(i // 997) % len(names)]
        else:
            sku, mpn = f"ING{i:07d}", f"M{i:06d}-{i % 13}"
        if i % 20_011 == 5:
            sku = "ING0000001"  # the same SKU again, further down
        lines.append(f"{sku},{mpn},HP,Item {i},{i % 5000}.{i % 100:02d},USD")
    path = directory / "catalogue.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _request(path: Path, matcher: Matcher) -> dict[str, Any]:
    """What the daemon asks the reader process for, for ``path``."""
    return {
        "path": str(path),
        "profile": None,
        "profiles": {},
        "default_currency": "USD",
        "vendor": None,
        "fallback_vendor": "Ingram Micro",
        "matcher": matcher,
    }


def test_the_reader_process_sends_what_the_full_path_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from costrecon_daemon.vendors import convert, reader_process
    from costrecon_daemon.vendors.convert import repeated_rows
    from costrecon_daemon.vendors.reader_process import stored

    monkeypatch.setattr(convert, "STREAM_CHUNK", 20_000)  # three chunks

    path = _catalogue_file(tmp_path)
    matcher = Matcher(CATALOGUE, MAPPINGS)
    request = _request(path, matcher)
    sent: list[tuple] = []
    reader_process.read(request, sent.append)

    # The same file the way the reader process read it before its fast paths.
    expected: list[tuple] = []
    numbers: array[int] = array("q")

    def sink(rows: list[VendorRow]) -> None:
        rest, results, pairs = split_chunk(rows, matcher, "Ingram Micro", numbers)
        text = loose_json(path.name, rest, results)
        matched = [(stored(r), m.item_id, m.method, tuple(m.candidates)) for r, m in pairs]
        expected.append(("chunk", text, len(rest), results is not None, matched))

    result = stream_price_file(path, sink, list_prices=False)
    chunks = [m for m in sent if m[0] == "chunk"]
    assert len(chunks) == 3
    assert chunks == expected
    assert sum(len(m[4]) for m in chunks) > 10 and any(m[3] for m in chunks)
    done = sent[-1][1]
    assert done["suspects"] == repeated_rows(result.key_hashes, numbers) != []
    assert done["errors"] == [(e.row, e.column, e.message) for e in result.errors]
    assert done["total_rows"] == result.total_rows == 45_000


def test_a_chunk_of_wide_rows_goes_in_pieces_with_every_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon holds a message's text while it inserts it and receives the next: a chunk
    whose text passes MAX_TEXT (long descriptions) is sent in pieces, its matched rows with the
    last, and the rows are the same as whole."""
    from costrecon_daemon.vendors import reader_process

    path = _catalogue_file(tmp_path)
    request = _request(path, Matcher(CATALOGUE, MAPPINGS))
    whole: list[tuple] = []
    reader_process.read(request, whole.append)
    monkeypatch.setattr(reader_process, "MAX_TEXT", 200_000)
    pieces: list[tuple] = []
    reader_process.read(request, pieces.append)
    whole_chunks = [m for m in whole if m[0] == "chunk"]
    piece_chunks = [m for m in pieces if m[0] == "chunk"]
    assert len(piece_chunks) > 3 * len(whole_chunks)
    assert all(len(m[1]) <= 200_000 * 1.1 for m in piece_chunks)
    for m in piece_chunks:
        assert len(json.loads(m[1])) == m[2]

    def rows_of(chunks: list[tuple]) -> list[list]:
        return sorted((r for m in chunks for r in json.loads(m[1])), key=lambda r: r[0])

    assert rows_of(piece_chunks) == rows_of(whole_chunks)
    assert [x for m in piece_chunks for x in m[4]] == [x for m in whole_chunks for x in m[4]]
    assert pieces[-1] == whole[-1]  # the same outcome


def _skus_csv(directory: Path, skus: list[str]) -> Path:
    lines = ["SKU,Cost", *(f"{sku},{1 + i % 7}.25" for i, sku in enumerate(skus))]
    path = directory / "skus.csv"
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


@pytest.mark.parametrize(
    ("order", "repeats"),
    [
        ("ascending", None),  # a list sorted by part number: nothing to check
        ("repeat-across-chunks", [12, 261]),  # ascending for chunks, then an early SKU again
        ("repeat-inside-a-chunk", [101, 102]),  # the same SKU twice in a row is not ascending
        ("descending", []),  # not ascending, no repeats: the check runs and finds none
    ],
)
def test_repeated_skus_are_found_whatever_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str, repeats: list[int] | None
) -> None:
    from costrecon_daemon.vendors import convert

    monkeypatch.setattr(convert, "STREAM_CHUNK", 50)  # several chunks from a small file
    skus = [f"S{i:05d}" for i in range(300)]
    if order == "repeat-across-chunks":
        skus[259] = skus[10]  # rows are numbered from 2 (the header is row 1)
    elif order == "repeat-inside-a-chunk":
        skus[100] = skus[99]
    elif order == "descending":
        skus.reverse()
    path = _skus_csv(tmp_path, skus)
    for stored_vendor in (None, FALLBACK):
        numbers: array[int] = array("q")
        got: list = []

        def sink(rows: list, numbers: array[int] = numbers, got: list = got) -> None:
            got.extend(rows)
            numbers.extend(r[0] if isinstance(r, tuple) else r.row for r in rows)

        result = stream_price_file(path, sink, stored_vendor=stored_vendor)
        assert len(got) == 300
        if repeats is None:
            assert result.key_hashes is None
        else:
            assert result.key_hashes is not None
            assert convert.repeated_rows(result.key_hashes, numbers) == repeats
