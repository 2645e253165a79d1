"""The one HTTP transport under every PSA connector: one pooled aiohttp session, the connector's
limiters (psa/limits.py), retries with exponential backoff and full jitter, and a per-PSA
:class:`Classifier` that says what an answer means (DESIGN.md §3 "Rate limits are honoured").

What is retried, for every PSA alike:

- a refusal that certainly changed nothing: 429 (the wait from ``Retry-After`` or the PSA's
  documented default; a limit that concerns every request pauses the whole connector), and a
  connection that could not be opened (refused, DNS, connect timeout: nothing was sent);
- a read (and a query that only reads) after any failure the classifier calls retryable (5xx,
  timeouts, dropped connections).

A write (``mutates``) is **never re-sent** after a failure that leaves open whether it landed
(a timeout after sending, a 5xx, a connection dropped mid-request): it raises
:class:`PSAWriteAmbiguous` at once, and the caller re-reads the target before deciding anything
(psa/guarded.py). Re-sending blind overwrote a value a person set between the two requests.
A 503 is treated as ambiguous too: no PSA reference says it means "rejected before processing"
(psa-apis.md is silent; UNCERTAIN, so the safe reading).

Nothing here logs or raises headers, bodies or query strings with secrets: log lines name the
method, the path and the status only.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from costrecon_daemon.psa.base import (
    PSAError,
    PSARateLimited,
    PSAUnavailable,
    PSAWriteAmbiguous,
)
from costrecon_daemon.psa.limits import Limiter, Pause

__all__ = [
    "Call",
    "Measured",
    "TransportStats",
    "Classifier",
    "HttpResponse",
    "Retry",
    "Transport",
    "dumps",
    "loads",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

SERVER_ERRORS = frozenset({500, 502, 503, 504})
MAX_WAIT = 300.0  # never sleep longer than this on one Retry-After or pause


# ---- JSON: money never goes through float -----------------------------------------------------

_DEC_MARK = "\u0000D"


def _dec_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError("money must be a finite number")
        text = format(obj, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return _DEC_MARK + (text if text not in ("", "-", "-0") else "0")
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(obj: Any) -> str:
    """``json.dumps`` that writes :class:`Decimal` as a JSON number literal, digit for digit
    (``Decimal("42.5")`` -> ``42.5``), as the PSA APIs expect money (psa-apis.md §1.7)."""
    text = json.dumps(obj, default=_dec_default, separators=(",", ":"), ensure_ascii=False)
    if "\\u0000D" not in text:
        return text
    # The marker strings are the only JSON strings that start with \u0000D: unquote them.
    parts = text.split('"\\u0000D')
    out = [parts[0]]
    for part in parts[1:]:
        number, _, rest = part.partition('"')
        out.append(number)
        out.append(rest)
    return "".join(out)


def loads(data: bytes | str) -> Any:
    """JSON numbers with a fraction become :class:`Decimal`; integers stay ``int``."""
    return json.loads(data, parse_float=Decimal)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` is seconds (ConnectWise) or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# ---- what a classifier sees and says ------------------------------------------------------------


class HttpResponse:
    """An answer, read in full: ``status_code``, ``headers``, ``content``, ``text``, ``json()``."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return loads(self.content)


@dataclass(frozen=True, slots=True)
class Call:
    """One request as the classifier and the error messages know it."""

    method: str
    path: str  # for logs and messages: never the query string (it may carry a token)
    endpoint: str  # the limiter key (Autotask: the object endpoint)
    what: str  # "update the cost of Services 12": finishes "... while trying to <what>"
    setting: str | None  # the PSA setting to name if the answer is a missing right
    mutates: bool  # a write: never re-sent after an ambiguous failure


@dataclass(frozen=True, slots=True)
class Retry:
    """A failure that trying again may cure. ``error`` is raised when retries run out."""

    error: PSAError
    wait: float | None = None  # at least this long before trying again (None: backoff)
    pause_all: bool = False  # the wait concerns every request of the connector (a rate limit)
    maybe_applied: bool = True  # False only when the PSA certainly refused without acting


class Classifier:
    """How one PSA's answers are read. The defaults are plain HTTP; a connector subclasses this
    for its PSA's error bodies and limit replies (override :meth:`error`, :meth:`rate_limited`,
    :meth:`server_error`)."""

    name = "The PSA"
    rate_limit_wait: float | None = None  # 429 without Retry-After: wait this long (None: backoff)

    def classify(self, resp: HttpResponse, call: Call) -> Retry | PSAError | None:
        """None: hand the answer to the connector. A :class:`Retry`: maybe try again. A
        :class:`PSAError`: raise it."""
        status = resp.status_code
        if status < 400:
            return None
        if status == 429:
            return self.rate_limited(resp, call)
        if status in SERVER_ERRORS:
            return self.server_error(resp, call)
        return self.error(resp, call)

    def rate_limited(self, resp: HttpResponse, call: Call) -> Retry:
        # A 429 is a refusal: the PSA did not act on the request, so even a write may be re-sent.
        wait = parse_retry_after(resp.headers.get("Retry-After"))
        if wait is None:
            wait = self.rate_limit_wait
        return Retry(
            PSARateLimited(
                f"{self.name} kept answering 'too many requests' while trying to {call.what}; "
                "wait a few minutes and retry.",
                retry_after=wait,
            ),
            wait=wait,
            pause_all=True,
            maybe_applied=False,
        )

    def server_error(self, resp: HttpResponse, call: Call) -> Retry | PSAError:
        return Retry(
            PSAUnavailable(
                f"{self.name} returned server error {resp.status_code} while trying to "
                f"{call.what}; try again later.",
                status=resp.status_code,
                detail=resp.text[:500],
            )
        )

    def error(self, resp: HttpResponse, call: Call) -> PSAError | None:
        return PSAError(
            f"{self.name} answered HTTP {resp.status_code} while trying to {call.what}.",
            status=resp.status_code,
            detail=resp.text[:300],
        )


# Request headers, or a function that makes them for each attempt.
Headers = Mapping[str, str] | Callable[[], Mapping[str, str]] | None


# ---- what the transport measures (the preview's time estimate, issue 20 item 8) -----------------


@dataclass(frozen=True, slots=True)
class Measured:
    """Requests of one busy stretch (a sync or a push): their mean latency and their rate."""

    requests: int
    writes: int
    # Seconds per request, limiter waits excluded: the 20th percentile, i.e. a small request.
    # A sync's mean is dominated by pages of 1,000 records, which is not what one write costs.
    latency: float
    rate: float  # requests per second over the stretch
    kind: str = ""  # "push" when the push worker opened the stretch; else a sync or other reads


class TransportStats:
    """Latency and request rate per busy stretch. A stretch ends after ``idle`` seconds with
    nothing in flight, so a sync and a later push are measured apart."""

    MIN_REQUESTS = 20  # fewer than this says little about a PSA's pace
    SAMPLES = 2000  # latencies kept per stretch (a rolling sample beyond that)

    def __init__(self, idle: float = 0.75):
        self.idle = idle
        self._kind = ""
        self.last: Measured | None = None
        self._in_flight = 0
        self._start = self._end = 0.0
        self._n = self._writes = 0
        self._samples: list[float] = []

    def begin(self) -> float:
        now = time.monotonic()
        if self._in_flight == 0 and self._n and now - self._end > self.idle:
            self._close()
        if self._n == 0 and self._in_flight == 0 and now - self._start > self.idle:
            self._start = now
        self._in_flight += 1
        return now

    def end(self, started: float, write: bool) -> None:
        now = time.monotonic()
        self._in_flight -= 1
        self._n += 1
        self._writes += write
        self._end = now
        if len(self._samples) < self.SAMPLES:
            self._samples.append(now - started)
        else:
            self._samples[self._n % self.SAMPLES] = now - started

    def restart(self, kind: str = "") -> None:
        """A new stretch begins here (a push starting): measured apart from what came before."""
        self._close()
        self._start = self._end = time.monotonic()
        self._kind = kind

    def _close(self) -> None:
        if self._n >= self.MIN_REQUESTS:
            self.last = self._current()
        self._n = self._writes = 0
        self._samples = []
        self._kind = ""

    def _current(self) -> Measured:
        span = max(self._end - self._start, 1e-6)
        small = sorted(self._samples)[len(self._samples) // 5]
        return Measured(self._n, self._writes, small, self._n / span, self._kind)

    def measured(self) -> Measured | None:
        """The stretch under way if it has enough requests, else the last finished one."""
        if self._n >= self.MIN_REQUESTS:
            return self._current()
        return self.last


# ---- the transport ------------------------------------------------------------------------------

# Failures where nothing of the request left this machine: always safe to try again.
_NOT_SENT: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,  # refused, DNS, TLS handshake
    aiohttp.ConnectionTimeoutError,  # connect (or pool) timeout, before any byte was written
)
# Failures after the request may have been sent: the PSA may have acted on it.
_MAYBE_SENT: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)


class Transport:
    """One pooled HTTP client per connector with its limiters, retries and classifier.

    aiohttp, not httpx: it costs about a quarter of the CPU per request under concurrency
    (measured: ~0.9 ms vs ~3.7 ms per request with 8 in flight on loopback), which is what lets a
    bulk pull or push reach requests x latency / concurrency.
    """

    def __init__(
        self,
        *,
        classifier: Classifier,
        slots: Sequence[Limiter] = (),
        budgets: Sequence[Limiter] = (),
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        connections: int = 8,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        verify_tls: bool = True,
        seed: int | None = None,
    ):
        self.classifier = classifier
        self.name = classifier.name
        self.slots = list(slots)
        self.budgets = list(budgets)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.requests_made = 0  # every request sent, retries included
        self.retries = 0
        self.rate_limited = 0  # 429s met
        self.stats = TransportStats()
        self._rng = random.Random(seed)
        self.pause = Pause(self._rng)
        self._timeout = timeout
        self._connections = max(1, connections)
        self._verify_tls = verify_tls
        self._headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=self._verify_tls),
                auto_decompress=True,
            )
            # aiohttp re-sends a GET, PUT or DELETE once, silently, when a kept-alive connection
            # drops mid-request (RFC 9112 §9.3.1). For a PUT that is a blind re-send of a write
            # that may have landed; retries are decided here, so switch it off. (No public switch
            # exists; aiohttp's own test client sets the same attribute.)
            self._session._retry_connection = False
        return self._session

    def _backoff(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self.backoff_cap, self.backoff_base * (2**attempt)))

    async def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        content: str | bytes | None,
        headers: Headers,
        endpoint: str,
        limited: bool,
    ) -> HttpResponse:
        taken: list[Limiter] = []
        try:
            if limited:
                for lim in self.slots:
                    await lim.acquire(endpoint)
                    taken.append(lim)
                # After the slot: a request queued for a slot during a 429 still waits it out.
                await self.pause.wait()
                for lim in self.budgets:
                    await lim.acquire(endpoint)
            self.requests_made += 1
            if callable(headers):
                # Made per attempt, after the limiters: a fresh correlation id or token each time.
                headers = headers()
            data = content.encode() if isinstance(content, str) else content
            started = self.stats.begin()
            try:
                async with self._client().request(
                    method, url, params=params, data=data, headers=headers, allow_redirects=False
                ) as r:
                    # Read the body while holding the slot so the connection goes back to the pool.
                    return HttpResponse(r.status, r.headers, await r.read())
            finally:
                self.stats.end(started, method not in ("GET", "HEAD"))
        finally:
            for lim in reversed(taken):
                lim.release(endpoint)

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str = "",
        endpoint: str = "",
        setting: str | None = None,
        params: Mapping[str, str] | None = None,
        content: str | bytes | None = None,
        headers: Headers = None,
        mutates: bool | None = None,
        limited: bool = True,
        classifier: Classifier | None = None,
    ) -> HttpResponse:
        """Send, retrying what may be retried; return the answer the classifier accepts, raise
        what it refuses. ``mutates`` defaults to "any method but GET/HEAD": pass False for a
        POST that only reads (Autotask queries) or a probe that cannot change anything.
        ``limited=False`` skips the limiters (Autotask's zone lookup is exempt, §2.5);
        ``classifier`` reads this one call's answers differently (the same lookup again).
        ``headers`` may be a function called for every attempt (Ingram wants a new correlation
        id per transaction, distributor-apis.md §2.4)."""
        classify = (classifier or self.classifier).classify
        path = urlsplit(url).path
        if mutates is None:
            mutates = method not in ("GET", "HEAD")
        call = Call(method, path, endpoint, what or f"{method} {path}", setting, mutates)
        attempt = 0
        while True:
            try:
                resp = await self._send(method, url, params, content, headers, endpoint, limited)
            except aiohttp.InvalidURL:
                raise PSAError(
                    f"{self.name}: {url.split('?')[0]!r} is not a valid address; check the "
                    "site/base URL in the config file."
                ) from None
            except _NOT_SENT as exc:
                verdict: Retry | PSAError | None = Retry(
                    self._unreachable(call, "could not connect", attempt, exc),
                    maybe_applied=False,
                )
            except _MAYBE_SENT as exc:
                kind = "timed out" if isinstance(exc, TimeoutError) else "failed"
                verdict = Retry(self._unreachable(call, kind, attempt, exc))
            else:
                verdict = classify(resp, call)
                if verdict is None:
                    return resp
                if resp.status_code == 429:
                    self.rate_limited += 1
            if isinstance(verdict, PSAError):
                raise verdict
            assert isinstance(verdict, Retry)
            if mutates and verdict.maybe_applied:
                status = verdict.error.status
                raise PSAWriteAmbiguous(
                    f"{self.name} did not confirm a write ({call.what}: "
                    f"{f'HTTP {status}' if status else 'no answer'}); it may or may not have "
                    "been applied, so it is read back before anything is sent again.",
                    status=status,
                    detail=verdict.error.detail,
                )
            if attempt >= self.max_retries:
                raise verdict.error
            log.info("%s %s -> %s; retrying", method, path, type(verdict.error).__name__)
            attempt += 1
            self.retries += 1
            if verdict.wait is not None and verdict.pause_all:
                self.pause.hold(min(verdict.wait, MAX_WAIT))
                continue  # the shared pause is the wait
            if verdict.wait is not None:
                delay = min(verdict.wait, MAX_WAIT) * self._rng.uniform(1.0, 1.25)
            else:
                delay = self._backoff(attempt)
            if delay > 0:
                await asyncio.sleep(delay)

    def _unreachable(self, call: Call, kind: str, attempt: int, exc: BaseException) -> PSAError:
        return PSAUnavailable(
            f"{self.name} could not be reached while trying to {call.what} ({kind} after "
            f"{attempt + 1} attempts); check the site address and network, then retry.",
            detail=type(exc).__name__,
        )
