"""Request limiters the transport (psa/http.py) takes, one kind per PSA rule (DESIGN.md §3 "Rate
limits are honoured, not discovered"; psa-apis.md §1.5, §2.5, §3.5).

Two families, taken in this order for every request:

- *slots* bound how many requests are in flight (:class:`Concurrency` for the whole connector,
  :class:`PerEndpoint` for Autotask's 3 threads per object endpoint); a slot is held until the
  answer is read;
- *budgets* bound how many requests start in a rolling window (:class:`RollingWindow`: Autotask's
  10,000 an hour per database, Syncro's 180 a minute per IP); taken last, so the stamp is the
  moment the request leaves.

Between the two the transport waits out its :class:`Pause`: after a 429 that concerns every
request of the connector, no request of that connector leaves until the pause is over.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from typing import Protocol

__all__ = ["Concurrency", "Limiter", "Pause", "PerEndpoint", "PerEndpointWindow", "RollingWindow"]


class Limiter(Protocol):
    async def acquire(self, endpoint: str) -> None: ...

    def release(self, endpoint: str) -> None: ...


class Concurrency:
    """At most ``limit`` requests of the connector in flight."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._sem = asyncio.Semaphore(self.limit)

    async def acquire(self, endpoint: str) -> None:
        await self._sem.acquire()

    def release(self, endpoint: str) -> None:
        self._sem.release()


class PerEndpoint:
    """At most ``limit`` requests in flight per endpoint (Autotask: 3 threads per object endpoint
    per tracking identifier, §2.5). Endpoint names are compared case-insensitively, as Autotask
    routes them."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._sems: dict[str, asyncio.Semaphore] = {}

    def _sem(self, endpoint: str) -> asyncio.Semaphore:
        key = endpoint.lower()
        sem = self._sems.get(key)
        if sem is None:
            sem = self._sems[key] = asyncio.Semaphore(self.limit)
        return sem

    async def acquire(self, endpoint: str) -> None:
        await self._sem(endpoint).acquire()

    def release(self, endpoint: str) -> None:
        self._sem(endpoint).release()


class RollingWindow:
    """At most ``limit`` request starts in any ``window`` seconds.

    :meth:`seed` records requests others already spent (Autotask's allowance is per database and
    shared by every integration, §2.5; the connector reads the count at connect)."""

    # The server stamps a request when it arrives, a little after we send it: keep a margin.
    MARGIN = 1.02

    def __init__(self, limit: int, window: float) -> None:
        self.limit = max(1, limit)
        self.window = window
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()

    @classmethod
    def per_hour(cls, limit: int) -> RollingWindow:
        return cls(limit, 3600.0)

    @classmethod
    def per_minute(cls, limit: int) -> RollingWindow:
        return cls(limit, 60.0)

    def seed(self, already_used: int) -> None:
        now = time.monotonic()
        self._starts.extend([now] * max(0, min(already_used, self.limit)))

    @property
    def used(self) -> int:
        self._expire(time.monotonic())
        return len(self._starts)

    def _expire(self, now: float) -> None:
        while self._starts and now - self._starts[0] >= self.window * self.MARGIN:
            self._starts.popleft()

    async def acquire(self, endpoint: str = "") -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._expire(now)
                if len(self._starts) < self.limit:
                    self._starts.append(now)
                    return
                await asyncio.sleep(self._starts[0] + self.window * self.MARGIN - now)

    def release(self, endpoint: str = "") -> None:
        pass


class Pause:
    """A connector-wide pause after a 429 that concerns every request (an hourly or per-minute
    limit): retries then wait for the window to roll together instead of each meeting the limit
    again on its own. Jittered twice: the pause is 1-1.25x the wait, so two daemons on one
    tenant drift apart, and each waiting request comes back a little after the end of the pause,
    not all at the same instant."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.until = 0.0  # time.monotonic() at which requests may leave again
        self._rng = rng or random.Random()

    def hold(self, seconds: float) -> None:
        self.until = max(self.until, time.monotonic() + seconds * self._rng.uniform(1.0, 1.25))

    async def wait(self) -> None:
        waited = 0.0
        while (left := self.until - time.monotonic()) > 0:
            await asyncio.sleep(left)
            waited += left
        if waited:
            await asyncio.sleep(self._rng.uniform(0, min(1.0, waited * 0.1)))


class PerEndpointWindow:
    """At most ``limit`` request starts in any ``window`` seconds *per endpoint*, for endpoints
    whose name starts with ``prefix`` (others pass freely). Ingram Micro counts 60 GETs a minute
    per endpoint and says what is left in ``X-RateLimit-*`` headers (distributor-apis.md §2.8):
    name GET endpoints ``"GET <path>"`` and pass ``prefix="GET "``. :meth:`hold` takes the
    server's word that an endpoint's budget is spent until a moment it names."""

    def __init__(self, limit: int, window: float, *, prefix: str = "") -> None:
        self.limit = max(1, limit)
        self.window = window
        self.prefix = prefix
        self._windows: dict[str, RollingWindow] = {}
        self._held: dict[str, float] = {}  # endpoint -> time.monotonic() it may start again

    def _for(self, endpoint: str) -> RollingWindow:
        win = self._windows.get(endpoint)
        if win is None:
            win = self._windows[endpoint] = RollingWindow(self.limit, self.window)
        return win

    async def acquire(self, endpoint: str) -> None:
        if not endpoint.startswith(self.prefix):
            return
        while (left := self._held.get(endpoint, 0.0) - time.monotonic()) > 0:
            await asyncio.sleep(left)
        await self._for(endpoint).acquire(endpoint)

    def release(self, endpoint: str) -> None:
        pass

    def hold(self, endpoint: str, seconds: float) -> None:
        self._held[endpoint] = max(self._held.get(endpoint, 0.0), time.monotonic() + seconds)
