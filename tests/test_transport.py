"""The one connector transport (psa/http.py) against a local aiohttp server over loopback: its
limiters (rolling window, per-endpoint concurrency, the connector-wide pause after a 429) and
what it re-sends and what it never re-sends."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from costrecon_daemon.psa.autotask import AutotaskClassifier
from costrecon_daemon.psa.base import (
    PSAPermissionError,
    PSAUnavailable,
    PSAWriteAmbiguous,
)
from costrecon_daemon.psa.http import Classifier, Transport
from costrecon_daemon.psa.limits import Concurrency, PerEndpoint, RollingWindow

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """Records when each request arrived and how many were in flight per endpoint."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.arrivals: list[tuple[float, str, str]] = []  # (monotonic, method, path)
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.max_total = 0
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.path.strip("/").split("/")[0]
        self.arrivals.append((time.monotonic(), request.method, request.path))
        self.in_flight[endpoint] += 1
        self.max_in_flight[endpoint] = max(self.max_in_flight[endpoint], self.in_flight[endpoint])
        self.max_total = max(self.max_total, sum(self.in_flight.values()))
        try:
            return await self.handler(request)
        finally:
            self.in_flight[endpoint] -= 1

    def count(self, method: str) -> int:
        return sum(1 for _, m, _ in self.arrivals if m == method)


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[Server]:
    server = Server(handler)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server._handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def transport(**kw) -> Transport:
    kw.setdefault("classifier", Classifier())
    kw.setdefault("backoff_base", 0.01)
    return Transport(**kw)


async def ok(request: web.Request) -> web.Response:
    await asyncio.sleep(0.1)  # long enough for concurrent requests to overlap on a busy machine
    return web.json_response({"ok": True})


# ---- limiters -----------------------------------------------------------------------------------


async def test_a_rolling_window_never_lets_more_than_its_limit_start_in_any_window():
    window, limit = 1.0, 3
    async with serve(ok) as server:
        t = transport(connections=20)
        try:
            # Open the connections first, so what the server sees is the limiter's pacing, not
            # connection set-up on a busy machine.
            await asyncio.gather(*(t.request("GET", f"{server.url}/warm") for _ in range(8)))
            server.arrivals.clear()
            t.budgets.append(RollingWindow(limit, window))
            await asyncio.gather(*(t.request("GET", f"{server.url}/x") for _ in range(7)))
        finally:
            await t.aclose()
    stamps = sorted(a for a, _, _ in server.arrivals)
    assert len(stamps) == 7
    for i, start in enumerate(stamps):
        # Arrivals by the server's clock, in any 0.9 s (a tenth allowed for delivery): without
        # the limiter all seven arrive within a few milliseconds.
        assert sum(1 for s in stamps[i:] if s - start < window * 0.9) <= limit


async def test_per_endpoint_concurrency_bounds_each_endpoint_not_the_whole_connector():
    async with serve(ok) as server:
        t = transport(slots=[PerEndpoint(3)], connections=20)
        try:
            await asyncio.gather(
                *(
                    t.request("GET", f"{server.url}/{ep}/1", endpoint=ep)
                    for ep in ("Services", "Products")
                    for _ in range(9)
                )
            )
        finally:
            await t.aclose()
    assert server.max_in_flight == {"Services": 3, "Products": 3}
    assert server.max_total == 6  # both endpoints used their three at once


async def test_a_429_pauses_every_request_of_the_connector_not_only_the_refused_one():
    first = True

    async def limited(request: web.Request) -> web.Response:
        nonlocal first
        if first:
            first = False
            return web.Response(status=429, text="slow down", headers={"Retry-After": "1"})
        return await ok(request)

    async with serve(limited) as server:
        t = transport(slots=[Concurrency(2)])
        try:
            await asyncio.gather(*(t.request("GET", f"{server.url}/r{n}") for n in range(5)))
        finally:
            await t.aclose()
    refused_at = server.arrivals[0][0]
    after = [a for a, _, _ in server.arrivals[1:]]
    # One other request was already on its way when the 429 came back; every request sent after
    # it, the refused one's retry included, waited out Retry-After.
    late = [a for a in after if a - refused_at >= 1.0]
    assert len(server.arrivals) == 6 and len(late) >= 4
    assert t.rate_limited == 1


async def test_a_429_without_retry_after_waits_the_psas_documented_default():
    calls = 0

    async def retry_later(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:  # Syncro's Rack::Attack reply: text, no Retry-After (§3.5)
            return web.Response(status=429, text="Retry later")
        return await ok(request)

    classifier = Classifier()
    classifier.rate_limit_wait = 0.5
    async with serve(retry_later) as server:
        t = transport(classifier=classifier)
        try:
            await t.request("GET", f"{server.url}/products")
        finally:
            await t.aclose()
    (first, *_), (second, *_) = server.arrivals
    assert second - first >= 0.5


# ---- what is re-sent and what never is
# ------------------------------------------------------------


async def test_a_write_answered_504_is_sent_once_and_reported_ambiguous():
    async def gateway(request: web.Request) -> web.Response:
        return web.Response(status=504, text="gateway timeout")

    async with serve(gateway) as server:
        t = transport()
        try:
            with pytest.raises(PSAWriteAmbiguous):
                await t.request("PATCH", f"{server.url}/item/1", content="[]")
            with pytest.raises(PSAUnavailable):  # a read is retried, then given up
                await t.request("GET", f"{server.url}/item/1")
        finally:
            await t.aclose()
    assert server.count("PATCH") == 1
    assert server.count("GET") == 1 + t.max_retries


@pytest.mark.parametrize("method", ["PUT", "PATCH", "POST"])
async def test_a_write_whose_connection_drops_is_sent_once(method):
    # aiohttp itself re-sends a PUT once on a dropped kept-alive connection; the transport turns
    # that off, since the first PUT may have landed.
    async def drop(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            return await ok(request)
        await request.read()
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError

    async with serve(drop) as server:
        t = transport()
        try:
            await t.request("GET", f"{server.url}/warm")  # a kept-alive connection to reuse
            with pytest.raises(PSAWriteAmbiguous):
                await t.request(method, f"{server.url}/line/1", content='{"cost": 1}')
        finally:
            await t.aclose()
    assert server.count(method) == 1


async def test_a_write_refused_with_429_is_sent_again():
    calls = 0

    async def busy(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=429, headers={"Retry-After": "0"})
        return web.json_response({"id": 1})

    async with serve(busy) as server:
        t = transport()
        try:
            resp = await t.request("PATCH", f"{server.url}/item/1", content="[]")
        finally:
            await t.aclose()
    assert resp.status_code == 200 and server.count("PATCH") == 2


async def test_a_write_that_could_not_connect_is_retried_and_never_called_ambiguous():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    t = transport(max_retries=2)
    try:
        with pytest.raises(PSAUnavailable) as err:
            await t.request("PATCH", f"http://127.0.0.1:{port}/item/1", content="[]")
    finally:
        await t.aclose()
    assert not isinstance(err.value, PSAWriteAmbiguous)
    assert t.requests_made == 3
    assert "could not be reached" in err.value.message


async def test_autotask_500_with_a_permission_text_is_an_answer_not_a_fault():
    async def refuse(request: web.Request) -> web.Response:
        body = {"errors": ["The logged in Resource does not have the adequate permissions."]}
        return web.json_response(body, status=500)

    async with serve(refuse) as server:
        t = transport(classifier=AutotaskClassifier(rate_limit_wait=1, thread_wait=0.01))
        try:
            with pytest.raises(PSAPermissionError) as err:
                await t.request(
                    "PATCH", f"{server.url}/Services", content="{}", setting="Admin > X",
                    what="update Services",
                )  # fmt: skip
        finally:
            await t.aclose()
    assert server.count("PATCH") == 1 and err.value.setting == "Admin > X"
