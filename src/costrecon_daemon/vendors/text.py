"""Stage 1 for delimited text (CSV/TXT/TSV): decode the bytes, sniff the delimiter, split
records."""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from typing import IO, Any

from costrecon_daemon.vendors import limits
from costrecon_daemon.vendors.convert import STREAM_CHUNK, finish_read, to_stored
from costrecon_daemon.vendors.layout import (
    choose_profile,
    locate_columns,
)
from costrecon_daemon.vendors.profiles import (
    DELIMITERS,
    Profile,
)
from costrecon_daemon.vendors.rows import (
    PEEK_CHARS,
    FileUnreadable,
    ReadResult,
    first_records,
)


def read_text(
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
        prof = forced or choose_profile(
            name, first_records(opener_for(sniffed or ",", peek=True)), all_profiles, sniffed
        )
        delimiter = prof.delimiter or sniffed or ","
        opener = opener_for(delimiter)
        plan, skip = locate_columns(prof, opener, name)
        return finish_read(
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
                f"{name} is not {encoding} text as its profile says (byte {exc.start} does not "
                "decode)."
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


# ------------------------------------------------------------------------------------ streaming


def _valid_utf8(open_binary: Callable[[], IO[bytes]]) -> bool:
    """One pass over the whole file with an incremental decoder (C speed, a chunk at a time): the
    head alone cannot prove a 500 MB file is UTF-8, and a cp1252 byte on row 1,900,000 must not
    fail the file halfway through the import."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open_binary() as fh:
        try:
            while chunk := fh.read(1 << 20):
                if chunk.isascii() and not decoder.getstate()[0]:
                    continue  # ASCII is UTF-8 (nothing of a character is pending): 10x faster
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def stream_text(
    name: str,
    open_binary: Callable[[], IO[bytes]],
    forced: Profile | None,
    all_profiles: Mapping[str, Profile],
    default_currency: str,
    vendor: str | None,
    today: date | None,
    sink: Callable[[list[Any]], None],
    *,
    list_prices: bool = True,
    stored_vendor: str | None = None,
) -> ReadResult:
    """:func:`read_text` for a file that is never held whole: the head (1 MiB) decides encoding,
    delimiter and profile; then the rows are decoded, split and validated as they stream from
    disk and handed to ``sink`` in chunks (issue 15: bounded memory at 2,000,000 rows), as
    VendorRows or, with ``stored_vendor``, in their stored form (see :func:`.finish_read`)."""
    with open_binary() as fh:
        head = fh.read(PEEK_CHARS)
    if not head.strip():
        raise FileUnreadable(f"{name} is empty; the copy may have failed — drop the file again.")
    cut = head.rfind(b"\n")
    if len(head) >= PEEK_CHARS and cut > 0:
        head = head[: cut + 1]  # never split a multi-byte character at the cut
    text, encoding = _decode(name, head, forced.encoding if forced else None)
    errors = "strict"
    stream_encoding = encoding
    if encoding == "utf-8":
        if not _valid_utf8(open_binary):
            stream_encoding = encoding = "cp1252"
            errors = "replace"
            text = head.decode("cp1252", errors="replace")
        else:
            stream_encoding = "utf-8-sig"
    elif encoding in ("cp1252", "utf-16-le"):
        errors = "replace"
    head_lines = [line for line in text[:65536].splitlines()[:40] if line.strip()]
    if not head_lines:
        raise FileUnreadable(f"{name} is empty; the copy may have failed — drop the file again.")
    first = head_lines[0].strip().lower()
    if first.startswith("sep=") and len(first) in (5, 6):
        hinted = head_lines[0].strip()[4:] or "\t"
        sniffed = hinted if hinted in DELIMITERS else _sniff_delimiter(head_lines[1:])
    else:
        sniffed = _sniff_delimiter(head_lines)

    def opener_for(delimiter: str, peek: bool = False) -> Callable[[], Iterator[list[str]]]:
        def opener() -> Iterator[list[str]]:
            if peek:
                return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            stream = io.TextIOWrapper(
                open_binary(), encoding=stream_encoding, errors=errors, newline=""
            )
            return csv.reader(stream, delimiter=delimiter)

        return opener

    try:
        prof = forced or choose_profile(
            name, first_records(opener_for(sniffed or ",", peek=True)), all_profiles, sniffed
        )
        delimiter = prof.delimiter or sniffed or ","
        opener = opener_for(delimiter)
        plan, skip = locate_columns(prof, opener_for(delimiter, peek=True), name)
        if "effective_start" in plan.index:
            # Effective-dated lists (Microsoft) resolve overlapping ranges across the whole file;
            # they run to thousands of rows, not millions, so they are read whole.
            with open_binary() as fh:
                data = fh.read(limits.MAX_TEXT_BYTES + 1)
            limits.check_text_size(name, len(data))
            result = read_text(name, data, prof, all_profiles, default_currency, vendor, today)
            for start in range(0, len(result.rows), STREAM_CHUNK):
                chunk = result.rows[start : start + STREAM_CHUNK]
                sink(chunk if stored_vendor is None else to_stored(chunk, stored_vendor))
            result.streamed, result.rows = len(result.rows), []
            result.key_hashes = None  # repeats were already resolved
            return result
        return finish_read(
            prof,
            plan,
            opener,
            skip,
            name,
            default_currency,
            vendor,
            today,
            delimiter,
            encoding,
            sink=sink,
            list_prices=list_prices,
            stored_vendor=stored_vendor,
        )
    except csv.Error as exc:
        raise FileUnreadable(f"{name} cannot be read as delimited text ({exc}).") from exc
    except UnicodeDecodeError as exc:
        raise FileUnreadable(
            f"{name} is not {encoding} text throughout (byte {exc.start} of a later part does "
            "not decode); export it again."
        ) from exc
