"""Hostile and clumsy API input (issue 13 items 6 and 7): every bad request is a 4xx with the
API's JSON error body naming the field, never a 500 or a plain-text page.

The daemon runs in this process (its real app, store and socket); the requests go over the real
Unix socket with aiohttp's client, or as raw bytes where the HTTP itself is the hostile part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from costrecon_daemon.app import Daemon
from costrecon_daemon.config import load_config

from .harness import copy_database, migrated_template, write_config


class Api:
    def __init__(self, session: aiohttp.ClientSession, socket: Path):
        self.session = session
        self.socket = socket

    async def call(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self.session.request(
            method, "http://costrecond" + path, data=data, headers=headers
        ) as resp:
            assert resp.content_type == "application/json", await resp.text()
            return resp.status, await resp.json()

    async def raw(self, request: bytes) -> tuple[int, str, dict[str, Any]]:
        """Send bytes as they are (aiohttp's client would refuse to send what we test)."""
        reader, writer = await asyncio.open_unix_connection(str(self.socket))
        try:
            writer.write(request)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        ctype = next(
            (ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("content-type")),
            "",
        )
        return status, ctype, json.loads(body) if ctype.startswith("application/json") else {}


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    # A short path: a Unix socket path must fit in 108 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="crh-"))
    cfg_path = write_config(
        tmp / "config.toml",
        {
            "daemon": {"state_dir": str(tmp / "state"), "runtime_dir": str(tmp / "run")},
            "inbox": {"stable_seconds": 0.3, "rescan_seconds": 60},
        },
    )
    # A copy of the migrated template: the daemon finds its schema at head (Alembic once a worker).
    copy_database(migrated_template(), tmp / "state" / "costrecon.db")
    daemon = Daemon(load_config(cfg_path))
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.run(ready=ready.set))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        connector = aiohttp.UnixConnector(path=str(daemon.cfg.socket_path))
        async with aiohttp.ClientSession(connector=connector) as session:
            yield Api(session, daemon.cfg.socket_path)
    finally:
        daemon.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        shutil.rmtree(tmp, ignore_errors=True)


def _names(body: dict[str, Any], field: str) -> bool:
    return field in body["error"]["message"]


HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        # Ids beyond 64 bits, in the body and in the path.
        ("POST", "/v1/mappings", {"vendor": "v", "sku": "s", "item_id": 2**63}, "item_id"),
        ("POST", "/v1/mappings", {"vendor": "v", "sku": "s", "item_id": 2**70}, "item_id"),
        ("GET", f"/v1/costs/{2**64}", None, "item id"),
        ("GET", f"/v1/change-sets/{2**63}", None, "cs id"),
        ("DELETE", f"/v1/mappings/{2**63}", None, "mapping id"),
        ("GET", f"/v1/imports/{2**63}", None, "import id"),
        ("GET", "/v1/imports/%C2%B2", None, "import id"),  # "²" passes str.isdigit()
        # 5,000-digit ids.
        ("GET", f"/v1/costs/{HUGE}", None, "item id"),
        ("POST", "/v1/costs/rows", b'{"ids": [' + HUGE.encode() + b"]}", "ids"),
        ("POST", "/v1/unmatched/suggestions", {"ids": [1, 2.5]}, "ids"),
        ("POST", "/v1/unmatched/suggestions", {"ids": "1,2"}, "ids"),
        ("GET", "/v1/unmatched?suggest=-1", None, "suggest"),
        # Fractional ids are refused, not truncated to item 1.
        ("POST", "/v1/mappings", {"vendor": "v", "sku": "s", "item_id": 1.9}, "item_id"),
        # Costs beyond any price, non-finite, with more than 4 places.
        ("PUT", "/v1/costs/1/manual", {"cost": "1e309"}, "cost"),
        ("PUT", "/v1/costs/1/manual", {"cost": "9" * 30}, "cost"),
        ("PUT", "/v1/costs/1/manual", {"cost": "920000000000000"}, "cost"),
        ("PUT", "/v1/costs/1/manual", {"cost": "1000000000000.0001"}, "cost"),
        ("PUT", "/v1/costs/1/manual", {"cost": "Infinity"}, "cost"),
        ("PUT", "/v1/costs/1/manual", {"cost": "1.00001"}, "cost"),
        (
            "POST",
            "/v1/change-sets",
            {"items": [{"item_id": 1, "cost": "1e309", "seen_catalog_cost": None}]},
            "cost",
        ),
        (
            "POST",
            "/v1/change-sets",
            {"items": [{"item_id": 1.9, "cost": "1", "seen_catalog_cost": None}]},
            "item_id",
        ),
        # Query strings.
        ("GET", "/v1/events?timeout=abc", None, "timeout"),
        ("GET", "/v1/events?timeout=nan", None, "timeout"),
        ("GET", "/v1/events?since=1e23", None, "since"),
        ("GET", f"/v1/events?since={HUGE}", None, "since"),
        ("GET", f"/v1/activity?before_id={2**64}", None, "before_id"),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else None,
)
async def test_bad_numbers_are_refused_with_a_400_naming_the_field(api, method, path, body, field):
    if isinstance(body, bytes):
        status, answer = await api.call(method, path, raw=body)
    else:
        status, answer = await api.call(method, path, body)
    assert status == 400, answer
    assert answer["error"]["code"] == "bad_field"
    assert _names(answer, field), answer
    assert HUGE not in answer["error"]["message"]  # not echoed back whole


async def test_a_raw_huge_number_in_the_body_names_its_field(api):
    status, answer = await api.call(
        "PUT", "/v1/costs/1/manual", raw=b'{"cost": ' + b"1" * 5000 + b"}"
    )
    assert status == 400 and _names(answer, "cost"), answer


async def test_deeply_nested_json_is_a_400(api):
    raw = b'{"ids": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, answer = await api.call("POST", "/v1/costs/rows", raw=raw)
    assert status == 400, answer
    assert answer["error"]["code"] == "bad_json"
    raw = b'{"ids": ' + b"[" * 50 + b"]" * 50 + b"}"
    status, answer = await api.call("POST", "/v1/costs/rows", raw=raw)
    assert status == 400 and "nested" in answer["error"]["message"], answer


async def test_a_lone_surrogate_is_refused_naming_the_field(api):
    raw = b'{"vendor": "pax8", "sku": "\\ud800", "item_id": 1}'
    status, answer = await api.call("POST", "/v1/mappings", raw=raw)
    assert status == 400, answer
    assert _names(answer, "sku"), answer
    raw = b'{"cost": "1.00", "note": "a\\udfffb"}'
    status, answer = await api.call("PUT", "/v1/costs/1/manual", raw=raw)
    assert status == 400 and _names(answer, "note"), answer


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/mappings", {"vendor": "pax8\x1b]0;owned\x07", "sku": "s", "item_id": 1}, "vendor"),
        ("/v1/mappings", {"vendor": "pax8", "sku": "A\nINFO forged", "item_id": 1}, "sku"),
        ("/v1/mappings", {"vendor": "pax8", "sku": "s", "term": "P1M\r", "item_id": 1}, "term"),
        ("/v1/costs/1/manual", {"cost": "1.00", "note": "ok\x1b[2J"}, "note"),
        ("/v1/costs/1/manual", {"cost": "1.00", "currency": "US\u202eD"}, "currency"),
    ],
)
async def test_control_characters_are_refused_in_text_fields(api, path, body, field):
    method = "PUT" if path.endswith("manual") else "POST"
    status, answer = await api.call(method, path, body)
    assert status == 400, answer
    assert _names(answer, field) and "control characters" in answer["error"]["message"], answer


async def test_a_valid_bounded_request_still_passes_validation(api):
    # The largest accepted cost and id get past the field checks (the item simply does not exist).
    status, answer = await api.call(
        "PUT", f"/v1/costs/{2**63 - 1}/manual", {"cost": "1000000000000.0000", "note": "ok"}
    )
    assert status == 404, answer
    status, answer = await api.call("GET", "/v1/events?since=0&timeout=0")
    assert status == 200 and answer["events"] is not None


async def test_a_body_too_large_is_a_json_413(api):
    status, answer = await api.call("POST", "/v1/costs/rows", raw=b" " * (9 * 1024 * 1024))
    assert status == 413
    assert answer["error"]["code"] == "too_large"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/health?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        b"G\x01T /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"BREW /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    ],
    ids=["long-request-line", "long-header", "bad-method", "unknown-method", "bad-length"],
)
async def test_http_level_errors_are_json(api, request_bytes):
    status, ctype, body = await api.raw(request_bytes)
    assert 400 <= status < 500
    assert ctype.startswith("application/json")
    assert body["error"]["code"] and body["error"]["message"]


async def test_an_unknown_method_on_a_route_is_json(api):
    status, ctype, body = await api.raw(
        b"PATCH /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 405 and ctype.startswith("application/json"), body
