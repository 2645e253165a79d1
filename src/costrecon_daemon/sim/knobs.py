"""Fault injection shared by every simulator (DESIGN.md §3: "knobs for latency, rate limits,
429/5xx, timeouts"), plus per-request counters that tests and benchmarks assert on.

A simulator installs :func:`fault_middleware` in its aiohttp app and passes a ``shape`` callback
that renders errors in its own PSA's body format (ConnectWise ``{code,message}``, Syncro's
plain-text ``Retry later``...). Every random decision comes from one seeded ``random.Random`` so a
failing test replays the same faults.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

__all__ = ["ErrorShape", "Knobs", "RequestStats", "fault_middleware"]


@dataclass
class Knobs:
    """Mutable at any time, also while the server runs (tests flip them between calls)."""

    latency: float = 0.0  # seconds added before every request is answered
    latency_jitter: float = 0.0  # plus uniform(0, jitter)
    rate_limit: int | None = None  # at most this many requests per ``rate_window`` seconds...
    rate_window: float = 1.0
    retry_after: int = 1  # ...else 429 with ``Retry-After: <seconds>`` (when the PSA sends one)
    send_retry_after: bool = True
    error_rate: float = 0.0  # fraction of requests answered with ``error_status``
    error_status: int = 500
    slow_rate: float = 0.0  # fraction of requests that stall ``slow_seconds`` (client timeouts)
    slow_seconds: float = 60.0
    drop_rate: float = 0.0  # fraction of requests whose connection is closed without an answer
    # A gateway that times out after the PSA committed: this fraction of writes is applied and
    # then answered ``applied_error_status`` instead of the result. ``on_applied_error`` runs in
    # between, on the server's loop (a person editing the record right after, say).
    applied_error_rate: float = 0.0
    applied_error_status: int = 504
    on_applied_error: Callable[[web.Request], None] | None = None
    seed: int = 7
    # Deterministic faults for tests: each request pops one entry ("429", "500", "503", "slow",
    # "drop") before the random ones are considered.
    scripted: deque[str] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._window: deque[float] = deque()

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def fail_next(self, count: int, kind: str = "500") -> None:
        """Make the next ``count`` requests fail with ``kind`` ("429", "5xx code", "slow",
        "drop")."""
        self.scripted.extend([kind] * count)

    def calm(self) -> None:
        """Switch every fault off (latency included)."""
        self.latency = self.latency_jitter = 0.0
        self.rate_limit = None
        self.error_rate = self.slow_rate = self.drop_rate = self.applied_error_rate = 0.0
        self.scripted.clear()

    def _decide(self) -> str | None:
        if self.scripted:
            return self.scripted.popleft()
        if self.rate_limit is not None:
            now = time.monotonic()
            while self._window and now - self._window[0] >= self.rate_window:
                self._window.popleft()
            if len(self._window) >= self.rate_limit:
                return "429"
            self._window.append(now)
        if self.drop_rate and self._rng.random() < self.drop_rate:
            return "drop"
        if self.slow_rate and self._rng.random() < self.slow_rate:
            return "slow"
        if self.error_rate and self._rng.random() < self.error_rate:
            return str(self.error_status)
        return None

    def _retry_after_seconds(self) -> int:
        if self.rate_limit is not None and self._window:
            left = self.rate_window - (time.monotonic() - self._window[0])
            return max(self.retry_after, math.ceil(max(0.0, left)))
        return self.retry_after

    def _delay(self) -> float:
        if self.latency_jitter:
            return self.latency + self._rng.random() * self.latency_jitter
        return self.latency


@dataclass
class RequestStats:
    """Requests seen, by method + concrete path and by method + route template."""

    by_path: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_route: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    write_faults: Counter[str] = field(default_factory=Counter)  # the same, on writes only
    total: int = 0

    def reset(self) -> None:
        self.by_path.clear()
        self.by_route.clear()
        self.faults.clear()
        self.write_faults.clear()
        self.total = 0

    def count(self, method: str | None = None, contains: str = "") -> int:
        return sum(
            n
            for (m, p), n in self.by_path.items()
            if (method is None or m == method) and contains in p
        )


# status, retry_after (None: no header) -> response in the PSA's own error format
ErrorShape = Callable[[int, int | None], web.Response]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_write(request: web.Request) -> bool:
    """PATCH/PUT/DELETE, and POST except the query endpoints that only read (Autotask)."""
    if request.method in ("PATCH", "PUT", "DELETE"):
        return True
    return request.method == "POST" and "/query" not in request.path.lower()


def fault_middleware(knobs: Knobs, stats: RequestStats, shape: ErrorShape) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        stats.total += 1
        stats.by_path[(request.method, request.path)] += 1
        resource = request.match_info.route.resource
        stats.by_route[(request.method, resource.canonical if resource else request.path)] += 1
        delay = knobs._delay()
        if delay:
            await asyncio.sleep(delay)
        fault = knobs._decide()
        write = is_write(request)
        if fault is None:
            if not (write and knobs.applied_error_rate):
                return await handler(request)
            if knobs._rng.random() >= knobs.applied_error_rate:
                return await handler(request)
            response = await handler(request)
            if response.status >= 400:
                return response  # refused: nothing was applied, nothing to hide
            kind = f"applied-{knobs.applied_error_status}"
            stats.faults[kind] += 1
            stats.write_faults[kind] += 1
            if knobs.on_applied_error is not None:
                knobs.on_applied_error(request)
            return shape(knobs.applied_error_status, None)
        stats.faults[fault] += 1
        if write:
            stats.write_faults[fault] += 1
        if fault == "drop":
            # Close the socket with no status line: the client sees a dropped connection.
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        if fault == "slow":
            await asyncio.sleep(knobs.slow_seconds)
            return await handler(request)
        status = int(fault)
        retry_after = (
            knobs._retry_after_seconds() if status == 429 and knobs.send_retry_after else None
        )
        return shape(status, retry_after)

    return middleware
