"""Process-wide interpreter tweaks, in one place so none of them is a surprise.

- ``gc`` paused (``no_gc``): around bulk building of many small acyclic objects (price-file rows,
  match results), where the cyclic collector would rescan the growing list again and again.
- ``sys.setswitchinterval`` (``tune_daemon``): the daemon's event loop shares the GIL with the
  database writer thread.
- glibc malloc (``tune_daemon``): two arenas and a fixed mmap threshold, so memory a sync or a
  preview used is given back instead of staying in the daemon's RSS during a long push.
- ``release_memory``: after a big transient job (a sync, a preview, an approval's plan and
  journal, a push's start), collect cyclic garbage and hand freed heap back to the system.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (restored only if it was on).

    Hundreds of thousands of new rows make the cyclic GC rescan the growing list again and again
    (it doubled the intake time in benchmarks/intake.py); rows and results hold no cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def tune_daemon() -> None:
    """Settings for the costrecond process (not for tools that import the package)."""
    # The event loop (API, PSA calls) shares the GIL with the database writer thread; the default
    # 5 ms switch interval would let one write hold back every in-flight PSA request that long.
    sys.setswitchinterval(0.001)
    _tune_malloc()


# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _tune_malloc() -> None:
    """Keep glibc from holding freed memory for the daemon's lifetime (issue 14 item 5).

    Measured on the ConnectWise `large` data set, RSS during the push: nine per-thread arenas
    (database reader and writer threads, executor threads) held 123 MB of the sync's and the
    preview's leftovers; two arenas held 32 MB. A fixed 128 KiB mmap threshold (glibc raises it
    up to 32 MiB after the first large free) makes big temporaries (query results, JSON pages)
    mmap-backed, so they go back to the system when freed instead of fragmenting the heap.
    Not glibc (musl, macOS): nothing to tune this way."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, 2)
    mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    mallopt(_M_TRIM_THRESHOLD, 128 * 1024)


def release_memory() -> None:
    """Collect cyclic garbage and return freed heap to the system (glibc ``malloc_trim``).

    Called after a big transient job only (a sync, a preview, an approval's plan and journal,
    the start of a push): a full collection costs tens of milliseconds with the cost table and
    the matcher loaded. Why: a plan of 120,000 steps leaves its frames and rows in reference
    cycles that the cyclic collector reaches only at its next full pass, and until then they
    pin Python's 1 MiB arenas, which are given back to the system only when entirely empty;
    glibc keeps freed heap (the SQLite page caches, result buffers) until trimmed."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_trim: Any = None


def _malloc_trim() -> Any:
    global _trim
    if _trim is None:
        try:
            _trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc: nothing to hand back this way
            _trim = False
    return _trim or None
