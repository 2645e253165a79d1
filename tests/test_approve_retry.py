"""Approvals that never look failed (issue 14 item 3): the client sends a request id, and when
the daemon does not answer in time it says what the daemon has for that id — never "try again".

The daemon here is a small aiohttp app on a real Unix socket that is slow to answer POST
/v1/change-sets (a real daemon cannot be made slow on purpose); it records approvals by request
id exactly as the real route does, so the client's lookup goes over the real API shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from costrecon_tui.client import ApprovalItem, DaemonClient, NotAnswered


class SlowDaemon:
    def __init__(self, records: bool):
        self.records = records  # False: the daemon never got as far as journaling it
        self.sets: dict[str, dict[str, Any]] = {}
        self.posts: list[str | None] = []

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        rid = body.get("request_id")
        self.posts.append(rid)
        if rid in self.sets:
            return web.json_response({"change_set": self.sets[rid]}, status=201)
        if self.records:
            self.sets[rid] = {"id": 1, "status": "pushing", "total": 122982, "request_id": rid}
        await asyncio.sleep(2)  # busy journaling 120,000 steps, longer than the client waits
        return web.json_response({"change_set": self.sets.get(rid)}, status=201)

    async def lookup(self, request: web.Request) -> web.Response:
        found = self.sets.get(request.query.get("request_id", ""))
        return web.json_response({"change_sets": [found] if found else []})


@asynccontextmanager
async def slow_daemon(tmp_path: Path, records: bool) -> AsyncIterator[tuple[SlowDaemon, Path]]:
    fake = SlowDaemon(records)
    app = web.Application()
    app.router.add_post("/v1/change-sets", fake.create)
    app.router.add_get("/v1/change-sets", fake.lookup)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = tmp_path / "costrecond.sock"
    site = web.UnixSite(runner, str(sock))
    await site.start()
    try:
        yield fake, sock
    finally:
        await runner.cleanup()


ITEMS = [ApprovalItem(7, Decimal("22.05"), Decimal("21.00"))]


async def test_an_approval_the_daemon_recorded_is_reported_after_a_client_timeout(tmp_path):
    async with slow_daemon(tmp_path, records=True) as (fake, sock):
        client = DaemonClient(sock)
        client.approve_timeout = 0.3
        try:
            cs = await client.approve(ITEMS, "all")
        finally:
            await client.aclose()
        assert cs["id"] == 1 and cs["status"] == "pushing"
        assert fake.posts and fake.posts[0] and cs["request_id"] == fake.posts[0]
        assert len(fake.posts) == 1  # looked up, not sent again


async def test_an_approval_the_daemon_never_recorded_is_said_so_not_try_again(tmp_path):
    async with slow_daemon(tmp_path, records=False) as (fake, sock):
        client = DaemonClient(sock)
        client.approve_timeout = 0.3
        try:
            with pytest.raises(NotAnswered) as caught:
                await client.approve(ITEMS, "all")
        finally:
            await client.aclose()
        message = str(caught.value)
        assert "has not recorded" in message and fake.posts[0] in message
        assert "try again" not in message.lower()


async def test_a_retry_with_the_same_request_id_gets_the_same_change_set(tmp_path):
    async with slow_daemon(tmp_path, records=True) as (fake, sock):
        client = DaemonClient(sock)
        client.approve_timeout = 0.3
        try:
            first = await client.approve(ITEMS, "all", request_id="retry-1")
            client.approve_timeout = 30
            again = await client.approve(ITEMS, "all", request_id="retry-1")
        finally:
            await client.aclose()
        assert first["id"] == again["id"] == 1
        assert fake.posts == ["retry-1", "retry-1"] and len(fake.sets) == 1
