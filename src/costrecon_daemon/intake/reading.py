"""The daemon's side of the reader process (issue 15): big files are read in a child.

A distributor's file of millions of rows is parsed, validated and matched by
:mod:`costrecon_daemon.vendors.reader_process` on the other core while the import thread only
receives ready rows and inserts them: two stages over two cores, and the daemon's GIL stays free
for the API. Memory stays bounded in both processes: the pipe holds at most a chunk or so and the
reader blocks until the daemon has taken it. The child runs under an address-space and a CPU
limit, so a hostile file kills only the child; the file then fails with one sentence.

Small files (most tests, a reseller's monthly list) stay in the daemon: starting a process costs
more than reading them.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime import no_gc
from ..vendors.matching import Matcher
from ..vendors.reader_process import HEADER, MEMORY_EXIT, profile_state
from ..vendors.rows import FileUnreadable, ReadResult, RowError

log = logging.getLogger(__name__)

# Files at least this big are read in a child (bytes; env COSTRECON_READER_MIN_BYTES overrides,
# e.g. 0 in tests that must take the child's path with a small file). Measured: a 2,000,000-row
# PRICE.TXT (407 MB) imports ~1.9x as fast through the child; the 200,000-row benchmark file
# (13 MB, half its rows matching a 50,000-item catalogue) ~15% slower, as the matcher and the
# matched rows cross the pipe. Below this size a file is read in the daemon's import thread.
MIN_BYTES = 32 << 20
MEMORY_BYTES = 1 << 30  # the child's address-space limit (env COSTRECON_READER_MEMORY_MB)
CPU_SECONDS = 1800  # the child's CPU limit: ~100x what a 2,000,000-row file needs
# Silence this long (no chunk, no outcome) means the reader hangs: it is killed. A workbook is
# read whole before its first chunk: ~1,000,000 rows take well under a minute.
SILENCE_SECONDS = 600.0
PIPE_BYTES = 1 << 20  # fewer, larger reads; the kernel caps it (pipe-max-size)


def min_bytes() -> int:
    try:
        return int(os.environ.get("COSTRECON_READER_MIN_BYTES", MIN_BYTES))
    except ValueError:
        return MIN_BYTES


def in_child(size: int) -> bool:
    """Whether a file of ``size`` bytes is read in a child process."""
    return size >= min_bytes()


def _memory_bytes() -> int:
    try:
        return int(os.environ["COSTRECON_READER_MEMORY_MB"]) << 20
    except (KeyError, ValueError):
        return MEMORY_BYTES


class _BuiltinsOnly(pickle.Unpickler):
    """The child parsed content from outside: whatever it sends, nothing but builtins is built
    from it (no class is ever looked up, so no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the reader sent a {module}.{name}; refused")


@dataclass(slots=True)
class ChildRead:
    result: ReadResult
    suspects: list[int]  # row numbers whose key hash repeats (compare their full keys)


class _Silent(Exception):
    pass


def _read_exact(fd: int, n: int, poller: select.poll) -> bytes | None:
    """``n`` bytes from the pipe, or None at its end; raises _Silent after SILENCE_SECONDS."""
    buf = bytearray()
    while len(buf) < n:
        if not poller.poll(SILENCE_SECONDS * 1000):
            raise _Silent
        got = os.read(fd, min(n - len(buf), PIPE_BYTES))
        if not got:
            return None
        buf += got
    return bytes(buf)


def read_in_child(
    path: Path,
    *,
    profile: str | None,
    profiles: Any,
    default_currency: str,
    vendor: str | None,
    fallback_vendor: str,
    matcher: Matcher | None,
    on_chunk: Callable[[str, int, bool, list[tuple[Any, ...]]], None],
) -> ChildRead:
    """Read ``path`` in a child process. ``on_chunk(loose_json, count, with_method, matched)`` is
    called in this thread for every chunk as it arrives (see the child's module for the forms).
    Raises :class:`FileUnreadable` with one sentence when the file, or the reader, fails as a
    whole."""
    request = {
        "path": str(path),
        "profile": profile,
        "profiles": {name: profile_state(p) for name, p in (profiles or {}).items()},
        "default_currency": default_currency,
        "vendor": vendor,
        "fallback_vendor": fallback_vendor,
        "matcher": matcher,
        "parent": os.getpid(),
        "memory_bytes": _memory_bytes(),
        "cpu_seconds": CPU_SECONDS,
    }
    name = path.name
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "costrecon_daemon.vendors.reader_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            close_fds=True,
            # Out of the terminal's process group: Ctrl-C stops the daemon, which then stops
            # the child; the child dies with the daemon anyway (PR_SET_PDEATHSIG).
            start_new_session=True,
        )
        log.info("reading %s in a reader process (pid %d)", name, proc.pid)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            fd = proc.stdout.fileno()
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            try:
                pickle.dump(request, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the child died at once: its exit status says why, below
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLHUP)
            while True:
                try:
                    header = _read_exact(fd, HEADER.size, poller)
                    data = (
                        None
                        if header is None
                        else _read_exact(fd, HEADER.unpack(header)[0], poller)
                    )
                except _Silent:
                    proc.kill()
                    proc.wait()
                    raise FileUnreadable(
                        f"{name} could not be read: the reader stopped responding for "
                        f"{SILENCE_SECONDS:.0f} s and was stopped; drop the file again, and if it "
                        "fails again export the price list again."
                    ) from None
                if data is None:
                    raise FileUnreadable(_death(name, proc, errors))
                with no_gc():  # 20,000 new tuples would set off the cyclic GC over the heap
                    message = _BuiltinsOnly(io.BytesIO(data)).load()
                del data
                kind = message[0]
                if kind == "chunk":
                    on_chunk(message[1], message[2], message[3], message[4])
                elif kind == "done":
                    return ChildRead(_result(message[1]), list(message[1]["suspects"]))
                elif kind == "unreadable":
                    raise FileUnreadable(message[1])
                else:
                    _log_stderr(name, errors)
                    raise FileUnreadable(
                        f"{name} could not be read ({message[1]}); see the daemon log."
                    )
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _result(meta: dict[str, Any]) -> ReadResult:
    return ReadResult(
        profile=meta["profile"],
        vendor=meta["vendor"],
        rows=[],
        errors=[RowError(row, column, message) for row, column, message in meta["errors"]],
        total_rows=meta["total_rows"],
        skipped=meta["skipped"],
        duplicates=meta["duplicates"],
        decimal_mark=meta["decimal_mark"],
        delimiter=meta["delimiter"],
        encoding=meta["encoding"],
        streamed=meta["streamed"],
    )


def _log_stderr(name: str, errors: Any) -> None:
    errors.seek(0)
    text = errors.read()[-8000:].decode("utf-8", "replace").strip()
    if text:
        log.error("the reader of %s said:\n%s", name, text)


def _death(name: str, proc: subprocess.Popen[bytes], errors: Any) -> str:
    """The sentence for a reader that ended without an outcome."""
    status = proc.wait()
    _log_stderr(name, errors)
    limit_mb = _memory_bytes() >> 20
    if status == MEMORY_EXIT:
        why = f"the reader ran out of memory (its limit is {limit_mb:,} MB)"
    elif status == -signal.SIGXCPU:
        why = f"the reader used more than its {CPU_SECONDS:,} CPU seconds"
    elif status < 0:
        try:
            sig = signal.Signals(-status).name
        except ValueError:
            sig = f"signal {-status}"
        why = f"the reader was killed ({sig})"
    else:
        why = f"the reader stopped unexpectedly (exit status {status})"
    log.warning("reading %s in a child process failed: %s", name, why)
    return (
        f"{name} could not be read: {why}; nothing from it was imported. It may be a damaged or "
        "malicious file: export the price list again."
    )
