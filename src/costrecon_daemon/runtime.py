"""Process-wide interpreter tweaks, in one place so none of them is a surprise.

- ``gc`` paused (``no_gc``): around bulk building of many small acyclic objects (price-file rows,
  match results), where the cyclic collector would rescan the growing list again and again.
- ``sys.setswitchinterval`` (``tune_daemon``): the daemon's event loop shares the GIL with the
  database writer thread.
- glibc malloc (``tune_daemon``): two arenas and a fixed mmap threshold, so memory a sync or a
  preview used is given back instead of staying in the daemon's RSS during a long push.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
from collections.abc import Iterator


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
