"""Hard caps on what a price file may make the daemon hold (issue 13 item 1: memory bombs).

A price file comes from outside: a 10 MB zip can inflate to 4 GiB, a 3 MB xlsx can carry
sharedStrings that expand to GiBs, a 4.7 KB xlsx can name a cell at ``ZZZZZZ2`` or a row
``r="2000000000"``. Each cap is checked while streaming (before the bytes are held), and a file
over a cap fails as a whole with one sentence naming the cap, so it lands in ``failed/`` instead
of killing the daemon (and again after every restart).

The numbers are generous for real price lists: Ingram Micro's PRICE.TXT for a whole country is a
few hundred MB; Excel itself stops at 1,048,576 rows and 16,384 columns.
"""

from __future__ import annotations

import zipfile

from costrecon_daemon.vendors.rows import FileUnreadable

MAX_TEXT_BYTES = 1 << 30  # a text file, or the text inside a zip, once uncompressed
MAX_MEMBER_BYTES = 1 << 30  # any one member of a workbook, uncompressed
MAX_RATIO = 200  # uncompressed / compressed, for members big enough to matter
RATIO_FLOOR = 1 << 20  # members smaller than this are never refused for their ratio
MAX_ROW_INDEX = 1_048_576  # Excel's last row
MAX_COLUMNS = 16_384  # Excel's last column (XFD)
MAX_CELLS = 50_000_000  # cells read from one sheet
MAX_SHARED_STRINGS = 5_000_000  # entries in sharedStrings.xml
MAX_SHARED_CHARS = 256 << 20  # characters in all shared strings together


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


def refuse(name: str, what: str) -> FileUnreadable:
    return FileUnreadable(
        f"{name} was refused: {what}, beyond what costrecon reads from one price file "
        "(it may be a damaged or malicious file); export the price list again."
    )


def check_text_size(name: str, size: int) -> None:
    if size > MAX_TEXT_BYTES:
        raise refuse(name, f"it holds {_mib(size)} of text (limit {_mib(MAX_TEXT_BYTES)})")


def check_archive(name: str, archive: zipfile.ZipFile) -> None:
    """Every member's declared size and compression ratio, before anything is inflated. Python's
    zipfile never returns more than a member's declared size, so the declared size bounds it."""
    for info in archive.infolist():
        if info.file_size > MAX_MEMBER_BYTES:
            raise refuse(
                name,
                f"{info.filename} inflates to {_mib(info.file_size)} "
                f"(limit {_mib(MAX_MEMBER_BYTES)})",
            )
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(1, info.compress_size):
            ratio = info.file_size // max(1, info.compress_size)
            raise refuse(
                name,
                f"{info.filename} is compressed {ratio:,} to 1 (limit {MAX_RATIO} to 1)",
            )


def read_member(name: str, archive: zipfile.ZipFile, member: str, limit: int) -> bytes:
    """A member's bytes, read in chunks and refused as soon as they pass ``limit``."""
    out = bytearray()
    with archive.open(member) as fh:
        while chunk := fh.read(1 << 20):
            out += chunk
            if len(out) > limit:
                raise refuse(name, f"{member} inflates to more than {_mib(limit)}")
    return bytes(out)
