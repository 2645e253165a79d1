"""The small HTTP layer under the distributor sources: retries with backoff for 429/5xx and
dropped connections (honouring ``Retry-After`` or an ``X-RateLimit-Reset`` epoch), a sliding-window
request budget, and the errors a pull can end with.

Each source sends every request through one method of its own that calls :meth:`VendorHttp.send`,
so the whole layer can later be swapped for the shared connector transport (psa/http.py).

Nothing here logs bodies, headers or query strings: tokens and secrets travel in them.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from costrecon_daemon.psa.http import loads

__all__ = [
    "Reply",
    "SlidingWindow",
    "VendorAuthError",
    "VendorHttp",
    "VendorRateLimited",
    "VendorResponseError",
    "VendorSourceError",
    "VendorUnavailable",
]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_WAIT = 120.0  # never sleep longer than this on one server hint


class VendorSourceError(Exception):
    """A pull that cannot go on; ``str()`` is one sentence saying what happened and what to do."""


class VendorAuthError(VendorSourceError):
    """The distributor refused the credentials (the fix is in its portal or the config)."""


class VendorUnavailable(VendorSourceError):
    pass


class VendorRateLimited(VendorSourceError):
    pass


class VendorResponseError(VendorSourceError):
    """An answer the source cannot read (a shape the reference does not describe)."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """JSON with fractions as Decimal (money never goes through float)."""
        return loads(self.body)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: ``Retry-After`` (seconds or an HTTP date), else ``X-RateLimit-Reset``
    (Ingram: an epoch timestamp, §2.8)."""
    value = (headers.get("Retry-After") or "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    if reset:
        try:
            stamp = float(reset)
        except ValueError:
            return None
        # CONFLICT (§2.8): documented as an epoch, also described as seconds to wait. A small
        # number cannot be an epoch, so read it as seconds.
        return max(0.0, stamp - time.time()) if stamp > 1e9 else max(0.0, stamp)
    return None


class SlidingWindow:
    """At most ``limit`` requests in any ``window`` seconds, counted when they start.

    The same shape as the distributors count (Pax8: 1,000 a minute, token calls included; Ingram:
    60 GETs a minute per endpoint), so a pull never earns a 429 on its own.
    """

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = max(1, limit)
        self.window = window
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()
        self.waited = 0.0

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._starts and now - self._starts[0] >= self.window:
                    self._starts.popleft()
                if len(self._starts) < self.limit:
                    self._starts.append(now)
                    return
                pause = self.window - (now - self._starts[0]) + 0.001
                self.waited += pause
                await asyncio.sleep(pause)

    def pause_until(self, seconds: float) -> None:
        """The server said the budget is spent: count the window as full for ``seconds``."""
        now = time.monotonic()
        fill = now + seconds - self.window
        self._starts.clear()
        self._starts.extend([fill] * self.limit)


class VendorHttp:
    """One pooled httpx client with bounded concurrency, a request budget and retries."""

    def __init__(
        self,
        name: str,
        *,
        timeout: float = 30.0,
        concurrency: int = 8,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        budget: SlidingWindow | None = None,
        seed: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.budget = budget
        self.requests = 0
        self.retries = 0
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._sem = asyncio.Semaphore(max(1, concurrency))
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=limits,
            follow_redirects=False,
            # TCP_NODELAY: small requests must not wait out a delayed ACK.
            transport=httpx.AsyncHTTPTransport(
                limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            ),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _backoff(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self.backoff_cap, self.backoff_base * (2**attempt)))

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        json_body: str | None = None,
        form: Mapping[str, str] | None = None,
        headers: Callable[[], Mapping[str, str]] | Mapping[str, str] | None = None,
        budget: SlidingWindow | None = None,
    ) -> Reply:
        """Send with retries; any status not retried comes back for the source to interpret.

        ``headers`` may be a function so each attempt gets fresh values (a new correlation id, a
        refreshed token). ``budget`` replaces the client-wide budget for this request (Ingram
        counts GETs per endpoint)."""
        path = httpx.URL(url).path
        window = budget if budget is not None else self.budget
        attempt = 0
        while True:
            hint: float | None = None
            if window is not None:
                await window.acquire()
            sent = dict(headers() if callable(headers) else (headers or {}))
            content = json_body.encode() if json_body is not None else None
            if json_body is not None:
                sent.setdefault("Content-Type", "application/json")
            try:
                async with self._sem:
                    self.requests += 1
                    resp = await self._client.request(
                        method, url, params=params, content=content, data=form, headers=sent
                    )
                    body = await resp.aread()
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if attempt >= self.max_retries:
                    raise VendorUnavailable(
                        f"{self.name} could not be reached ({method} {path} failed "
                        f"{attempt + 1} times); check the network and the base URL, then pull again."
                    ) from None
                log.info("%s %s failed (%s); retrying", method, path, type(exc).__name__)
            else:
                if resp.status_code not in RETRY_STATUSES:
                    return Reply(resp.status_code, resp.headers, body)
                if attempt >= self.max_retries:
                    if resp.status_code == 429:
                        raise VendorRateLimited(
                            f"{self.name} kept answering 'too many requests'; wait a few minutes "
                            "and pull again."
                        )
                    raise VendorUnavailable(
                        f"{self.name} answered server error {resp.status_code} to {method} {path} "
                        f"{attempt + 1} times; try the pull again later."
                    )
                if resp.status_code == 429:
                    hint = retry_after_seconds(resp.headers)
                    if hint is not None:
                        hint = min(hint, MAX_WAIT)
                        if window is not None:
                            # The budget's acquire() does the waiting for every request in flight.
                            window.pause_until(hint)
                            hint = 0.0
                log.info("%s %s -> %s; retrying", method, path, resp.status_code)
            delay = self._backoff(attempt) if hint is None else hint + self._backoff(0) * 0.1
            attempt += 1
            self.retries += 1
            if delay > 0:
                await self._sleep(delay)
