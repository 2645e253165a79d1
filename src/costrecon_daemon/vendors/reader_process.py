"""The price-file reader as a child process (issue 15): ``python -m`` this module.

The daemon hands a big file to this process, which reads, validates and matches its rows and
sends them back in chunks already in the stored forms (cost as integer ten-thousandths), so the
daemon's import thread only receives and inserts: parsing runs on the other core and the
daemon's GIL stays free for the API. The process imports only the readers (no SQLAlchemy, no
aiohttp: it must start in a few tens of milliseconds) and runs under resource limits, so a
hostile file that exhausts memory or CPU kills this process, never the daemon.

Protocol (private to :mod:`costrecon_daemon.intake.reading`): one pickled request on stdin
(trusted: the daemon wrote it); frames on stdout, each a 4-byte little-endian length and a pickle
of builtins only (tuples, lists, dicts, str, int, None; the daemon loads them with every class
refused):

- ``("chunk", loose, count, with_method, matched)``: ``loose`` is the JSON text of the ``count``
  rows no catalogue item matched, each ``[row, vendor, sku, mpn, manufacturer, description[:512],
  term, cost, currency]`` plus the match method when ``with_method`` (an ambiguous key): SQLite
  inserts them straight from the text (``json_each``), with no Python object per row in the
  daemon; ``matched`` as ``(stored row, item_id, method, candidates)``;
- ``("done", meta)``: the read's totals, every row error, and the row numbers whose
  (SKU, term, currency) hash repeats (the daemon compares their full keys exactly);
- ``("unreadable", sentence)``: the file as a whole cannot be read;
- ``("crash", text)``: a reader bug (the traceback went to stderr, which the daemon logs).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import pickle
import resource
import signal
import struct
import sys
import traceback
from array import array
from collections.abc import Callable, Mapping
from operator import itemgetter
from types import MappingProxyType
from typing import IO, Any

import orjson

from costrecon_daemon.runtime import no_gc
from costrecon_daemon.vendors import convert
from costrecon_daemon.vendors.convert import repeated_rows, to_stored
from costrecon_daemon.vendors.matching import Matcher, MatchResult, split_stored
from costrecon_daemon.vendors.profiles import Profile
from costrecon_daemon.vendors.readers import stream_price_file
from costrecon_daemon.vendors.rows import FileUnreadable, StoredRow, VendorRow

HEADER = struct.Struct("<I")
MEMORY_EXIT = 3  # exit status: the reader ran out of memory (RLIMIT_AS)
PR_SET_PDEATHSIG = 1
# Test-only fault injection, so tests can prove a reader that dies or exhausts its memory limit
# fails the file cleanly: "exit" kills this process after its first chunk, "hang" stops
# sending after it, "hog" allocates until the address-space limit stops it.
FAULT_ENV = "COSTRECON_READER_FAULT"


def profile_state(profile: Profile) -> dict[str, Any]:
    """A profile as plain values: its read-only mappings do not pickle."""
    state = {}
    for f in dataclasses.fields(profile):
        value = getattr(profile, f.name)
        state[f.name] = dict(value) if isinstance(value, MappingProxyType) else value
    return state


def stored(r: VendorRow) -> tuple[Any, ...]:
    """A row in the columns and forms ``vendor_costs`` stores (the reader quantized every cost to
    4 places, so ``scaleb`` is exact)."""
    return (
        r.row,
        r.vendor,
        r.sku,
        r.mpn,
        r.manufacturer,
        r.description[:512],
        r.term,
        int(r.cost.scaleb(4)),
        r.currency,
    )


MAX_UNITS = (1 << 63) - 1  # the largest cost (in ten-thousandths) a 64-bit column holds
MAX_TEXT = 8 << 20  # characters of JSON per message at most (wide rows): the daemon's memory
# Rows per chunk in this process: fewer, larger write transactions rewrite fewer index pages
# when a big list is not sorted by part number (2M shuffled rows: 76k rows/s at 20,000 a chunk,
# 103k at 50,000; about 8% slower for a sorted list). The rows are held here, not in the
# daemon, which receives at most MAX_TEXT at a time; the daemon's own reads of smaller files
# keep convert.STREAM_CHUNK (they hold their rows as objects: 50,000 of them grew the daemon by
# 91 MB on a 300,000-row file, against 55 MB at 20,000; the test's bound is 100 MB).
READER_CHUNK = 50_000
_std_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def _json(values: list[Any]) -> str:
    """The JSON text of a chunk's rows. orjson writes the very text the standard encoder writes
    (compact, non-ASCII as is, the same escapes), about 12x faster: 1.4 of the reader's 11 CPU
    seconds for 2,000,000 rows were this (issue 15)."""
    try:
        return orjson.dumps(values).decode()
    except orjson.JSONEncodeError:
        # A lone surrogate (none of our decoders makes one) is not UTF-8: the standard encoder
        # writes it as is, as it always did.
        return _std_json(values)


_UNITS = itemgetter(7)
_METHOD = itemgetter(slice(1, 2))  # a MatchResult's (method,)
_INDEX_KEY = itemgetter(1, 2)  # vendor, SKU: the leading columns of vendor_costs' key index


def _in_index_order(rows: list[Any]) -> list[Any]:
    """The chunk in (vendor, SKU) order, which it nearly always is already (a price list sorted
    by part number): checked at C speed, sorted only when not. The database keeps an index on
    (vendor, SKU, term) up to date as rows go in; in file order, a list that is not sorted by
    part number lands each row on another page of it, and every page touched is written again at
    the chunk's commit: 2,000,000 shuffled rows took the writer 28 s against 9 s sorted. Sorted,
    a chunk's rows walk the index in one direction. Rows keep their row numbers, so nothing the
    file said is lost; only the ids within a chunk follow the SKU instead of the line."""
    keys = list(map(_INDEX_KEY, rows))
    if keys == sorted(keys):
        return rows
    return sorted(rows, key=_INDEX_KEY)


def loose_json(name: str, rows: list[VendorRow], results: list[MatchResult] | None) -> str:
    """Rows no item matched as the JSON text ``importer.insert_json`` stores: their stored forms,
    plus each one's match method when ``results`` are given (a chunk where something matched)."""
    return stored_json(name, to_stored(rows, ""), results)  # "": each row's own vendor, as is


def stored_json(name: str, rows: list[StoredRow], results: list[MatchResult] | None) -> str:
    """:func:`loose_json` for rows already in their stored form: the same text."""
    if rows and max(map(_UNITS, rows)) > MAX_UNITS:
        # JSON numbers past 64 bits would reach the database as floats: never.
        raise FileUnreadable(
            f"{name} has a cost too large to store (beyond 922 trillion); check the cost column."
        )
    if results is None:
        return _json(_in_index_order(rows))
    if len(rows) != len(results):  # pragma: no cover - a reader bug
        raise RuntimeError("a chunk's rows and match results disagree")
    # Each row with its match method appended, at C speed: row + result[1:2].
    return _json(_in_index_order(list(map(tuple.__add__, rows, map(_METHOD, results)))))


def read(request: Mapping[str, Any], send: Callable[[tuple[Any, ...]], None]) -> None:
    """Read the requested file, sending its rows in chunks and its outcome at the end."""
    matcher: Matcher | None = request["matcher"]
    fallback: str = request["fallback_vendor"]
    profiles = {name: Profile(**state) for name, state in request["profiles"].items()}
    numbers = array("q")  # row numbers beside the reader's key hashes, same order
    fault = os.environ.get(FAULT_ENV, "")

    name = request["path"].rsplit("/", 1)[-1]

    def sink(rows: list[StoredRow]) -> None:
        rest, results, pairs = split_stored(rows, matcher, numbers)
        text = stored_json(name, rest, results)
        matched = [(values, m.item_id, m.method, tuple(m.candidates)) for values, m in pairs]
        if len(text) > MAX_TEXT and len(rest) > 1:
            # Wide rows (long descriptions): the daemon holds a chunk's text while it inserts
            # it and the next one arrives, so a chunk is sent in pieces of about MAX_TEXT.
            pieces = -(-len(text) // MAX_TEXT)
            step = -(-len(rest) // pieces)
            del text
            for at in range(0, len(rest), step):
                part = stored_json(
                    name, rest[at : at + step], None if results is None else results[at : at + step]
                )
                last = at + step >= len(rest)
                count = min(step, len(rest) - at)
                send(("chunk", part, count, results is not None, matched if last else []))
        else:
            send(("chunk", text, len(rest), results is not None, matched))
        if fault == "exit":
            os.kill(os.getpid(), signal.SIGKILL)
        elif fault == "hang":
            signal.pause()
        elif fault == "hog":
            hog = []
            while True:
                hog.append(bytearray(64 << 20))

    result = stream_price_file(
        request["path"],
        sink,
        profile=request["profile"],
        profiles=profiles,
        default_currency=request["default_currency"],
        vendor=request["vendor"],
        list_prices=False,  # vendor_costs has no column for them
        stored_vendor=fallback,  # rows come in their stored form: no VendorRow, no Decimal
    )
    suspects: list[int] = []
    if result.key_hashes is not None:
        if len(result.key_hashes) != len(numbers):  # pragma: no cover - a reader bug
            raise RuntimeError("the reader's key hashes and rows disagree")
        suspects = repeated_rows(result.key_hashes, numbers)
    send(
        (
            "done",
            {
                "profile": result.profile,
                "vendor": result.vendor,
                "errors": [(e.row, e.column, e.message) for e in result.errors],
                "total_rows": result.total_rows,
                "skipped": result.skipped,
                "duplicates": result.duplicates,
                "decimal_mark": result.decimal_mark,
                "delimiter": result.delimiter,
                "encoding": result.encoding,
                "streamed": result.streamed,
                "suspects": suspects,
            },
        )
    )


def _sender(out: IO[bytes]) -> Callable[[tuple[Any, ...]], None]:
    def send(message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(HEADER.pack(len(data)))
        out.write(data)
        out.flush()

    return send


def _die_with_parent(parent: int) -> None:
    """Linux: be killed when the daemon dies (even by SIGKILL), so no reader outlives it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux: the pipe closing ends us
        pass
    if parent and os.getppid() != parent:
        os._exit(1)  # the daemon died before the signal was armed


def _limit(kind: int, value: int) -> None:
    if value <= 0:
        return
    _soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, hard))


def main() -> None:
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing stray may corrupt the frames
    with no_gc():  # a big catalogue's matcher: thousands of small containers
        request = pickle.load(sys.stdin.buffer)
    _die_with_parent(int(request.get("parent") or 0))
    _limit(resource.RLIMIT_AS, int(request.get("memory_bytes") or 0))
    _limit(resource.RLIMIT_CPU, int(request.get("cpu_seconds") or 0))
    send = _sender(out)
    convert.STREAM_CHUNK = READER_CHUNK  # this process reads one file, then exits
    try:
        read(request, send)
    except FileUnreadable as exc:
        send(("unreadable", str(exc)))
    except MemoryError:
        os._exit(MEMORY_EXIT)
    except BrokenPipeError:
        os._exit(1)  # the daemon stopped listening: nothing to tell it
    except Exception as exc:  # noqa: BLE001 - a reader bug fails the file, the daemon logs it
        traceback.print_exc(file=sys.stderr)
        send(("crash", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    main()
