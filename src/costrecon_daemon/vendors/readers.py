"""Read vendor price files (CSV/TXT/XLSX) into validated :class:`VendorRow` s.

One pipeline for every source (vendors.md §4): bytes → text (BOM, UTF-8, cp1252) or workbook →
records (1-based row number as a person counts it, list of cells) → profile choice and column plan →
:func:`_convert`, which validates every row and collects *all* errors (an import is all-or-nothing
downstream, DESIGN.md §3 "The watched folder never loses a file", so the error report must name
every bad row at once). API sources feed the same conversion through :func:`rows_from_records`.

Nothing here touches the database or the watched folder; nothing ever turns an amount into a float.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from itertools import chain, islice
from pathlib import Path
from typing import Any

from costrecon_daemon.vendors import limits, spreadsheet
from costrecon_daemon.vendors.convert import STREAM_CHUNK, finish_read, to_stored
from costrecon_daemon.vendors.layout import (
    lookup_profile,
    match_header,
    needed_columns,
)
from costrecon_daemon.vendors.profiles import (
    Profile,
    merged_profiles,
)
from costrecon_daemon.vendors.rows import (
    PEEK_ROWS,
    FileUnreadable,
    ReadResult,
    RowError,
    VendorRow,
    cell_text,
)
from costrecon_daemon.vendors.text import read_text, stream_text
from costrecon_daemon.vendors.workbook import read_zip

__all__ = [
    "FileUnreadable",
    "ReadResult",
    "RowError",
    "VendorRow",
    "read_price_file",
    "rows_from_records",
    "stream_price_file",
]

# ------------------------------------------------------------------------------------ public API

ZIP_SUFFIXES = (".xlsx", ".xlsm", ".ods", ".zip")  # read as archives whatever their first bytes


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
    subfolder) and beats the profile's vendor and any Vendor column; ``today`` is the date price
    validity is judged against (Microsoft price lists).

    Raises :class:`FileUnreadable` when the file as a whole cannot be used; row problems are
    returned in :attr:`ReadResult.errors`, all of them.
    """
    path = Path(path)
    name = path.name
    all_profiles = merged_profiles(profiles)
    forced = lookup_profile(profile, all_profiles)
    try:
        with path.open("rb") as fh:
            # Checked on the open file, before its bytes are held (issue 13: a 300 MB+ file).
            limits.check_text_size(name, os.fstat(fh.fileno()).st_size)
            data = fh.read()
    except OSError as exc:
        raise FileUnreadable(f"{name} could not be opened ({exc.strerror or exc}).") from exc
    if not data.strip():
        raise FileUnreadable(f"{name} is empty; the copy may have failed — drop the file again.")

    if data[:4] == b"PK\x03\x04" or path.suffix.lower() in ZIP_SUFFIXES:
        return read_zip(path, data, forced, all_profiles, default_currency, vendor, today)
    if data[:8] == spreadsheet.OLE_MAGIC:
        return spreadsheet.read_workbook(
            name, data, "xls", forced, all_profiles, default_currency, vendor, today
        )
    return read_text(name, data, forced, all_profiles, default_currency, vendor, today)


def stream_price_file(
    path: Path,
    sink: Callable[[list[Any]], None],
    *,
    profile: str | None = None,
    profiles: Mapping[str, Profile] | None = None,
    default_currency: str = "USD",
    vendor: str | None = None,
    today: date | None = None,
    list_prices: bool = True,
    stored_vendor: str | None = None,
) -> ReadResult:
    """:func:`read_price_file` for the import: rows go to ``sink`` in chunks as they are
    validated and are never all held (``result.rows`` is empty; ``result.streamed`` counts them).
    Delimited text, plain or zipped, streams from disk; a workbook (at most Excel's 1,048,576 rows,
    and capped by :mod:`.limits`) is read whole and then handed over in chunks.

    The sink sees rows of a file that may still turn out bad: every problem is in
    ``result.errors`` only once the last row was read, so the caller stages what it gets and
    decides at the end (all or nothing). ``list_prices=False``: rows of delimited text carry no
    list price (the import stores none; it saves Decimal work on every row). ``stored_vendor``:
    the sink gets rows in their stored form (:data:`.rows.StoredRow`) instead of VendorRows,
    with that vendor where a row names none (the reader process: no VendorRow, and no Decimal
    for a plain cost)."""
    path = Path(path)
    name = path.name
    all_profiles = merged_profiles(profiles)
    forced = lookup_profile(profile, all_profiles)
    try:
        with path.open("rb") as fh:
            magic = fh.read(8)
    except OSError as exc:
        raise FileUnreadable(f"{name} could not be opened ({exc.strerror or exc}).") from exc
    args = (forced, all_profiles, default_currency, vendor, today)
    if magic[:4] == b"PK\x03\x04" or path.suffix.lower() in ZIP_SUFFIXES:
        try:
            archive = zipfile.ZipFile(path)
            members = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            archive = None
        if archive is not None:
            with archive:
                limits.check_archive(name, archive)
                texts = [
                    m
                    for m in members
                    if m.lower().endswith((".txt", ".csv", ".tsv")) and not m.endswith("/")
                ]
                if "xl/workbook.xml" not in members and len(texts) == 1:
                    member = texts[0]
                    return stream_text(
                        Path(member).name,
                        lambda: archive.open(member),
                        *args,
                        sink,
                        list_prices=list_prices,
                        stored_vendor=stored_vendor,
                    )
    elif magic != spreadsheet.OLE_MAGIC:
        return stream_text(
            name,
            lambda: path.open("rb"),
            *args,
            sink,
            list_prices=list_prices,
            stored_vendor=stored_vendor,
        )
    result = read_price_file(
        path,
        profile=profile,
        profiles=profiles,
        default_currency=default_currency,
        vendor=vendor,
        today=today,
    )
    for start in range(0, len(result.rows), STREAM_CHUNK):
        chunk = result.rows[start : start + STREAM_CHUNK]
        sink(chunk if stored_vendor is None else to_stored(chunk, stored_vendor))
    result.streamed, result.rows = len(result.rows), []
    return result


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
        else lookup_profile(profile, merged_profiles(profiles))
    )
    assert prof is not None
    iterator = iter(records)
    first = next(iterator, None)
    if first is None:
        raise FileUnreadable(f"the {prof.name} source returned no price rows.")
    keys = list(first.keys())
    plan = match_header(prof, keys)
    if plan is None:
        raise FileUnreadable(
            f"the {prof.name} source does not carry the columns its profile needs "
            f"({needed_columns(prof)})."
        )

    def cells(source: Iterable[Mapping[str, object]]) -> Iterator[list[str]]:
        for record in source:
            yield [cell_text(record.get(k)) for k in keys]

    head = [[cell_text(first.get(k)) for k in keys], *cells(islice(iterator, PEEK_ROWS))]

    def opener() -> Iterator[list[str]]:
        return chain(head, cells(iterator))

    return finish_read(prof, plan, opener, 0, "source", default_currency, vendor, today, None, None)
