"""Process-wide interpreter tweaks, in one place so none of them is a surprise.

- ``gc`` paused (``no_gc``): around bulk building of many small acyclic objects (price-file rows,
  match results), where the cyclic collector would rescan the growing list again and again.
- ``sys.setswitchinterval`` (``tune_daemon``): the daemon's event loop shares the GIL with the
  database writer thread.
"""

from __future__ import annotations

import contextlib
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
