"""Serve a simulator's aiohttp application from a background thread.

Used by `costrecon demo` and by tests, so that a daemon in another process (and synchronous
code in this one) can reach the simulator while this process does other things.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

from aiohttp import web


def server_sockets(site: web.TCPSite) -> Sequence[socket.socket]:
    """The listening sockets of a started site (none before it starts)."""
    # aiohttp has no public getter, and its annotation says AbstractServer, which lacks `sockets`;
    # loop.create_server always returns an asyncio.Server.
    server = cast("asyncio.Server | None", site._server)  # noqa: SLF001
    return server.sockets if server else []


class ServedApp:
    """An aiohttp application served on 127.0.0.1 from its own thread and event loop."""

    def __init__(
        self, make_app: Callable[[], web.Application], host: str = "127.0.0.1", port: int = 0
    ):
        self._make_app = make_app
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def __enter__(self) -> ServedApp:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("simulator did not start")
        return self

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (to touch simulator state without races)."""

        async def _wrap() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(_wrap(), self.loop).result(30)

    def __exit__(self, *exc: object) -> None:
        async def _stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


async def serve_on_loopback(sim: Any, host: str, port: int, path: str) -> None:
    """Serve ``sim.make_app()`` on ``host:port`` (0 = a free port); set ``sim._runner`` (for its
    ``close``) and ``sim.base_url`` (the real port, then ``path``)."""
    runner = web.AppRunner(sim.make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = server_sockets(site)
    real_port = sockets[0].getsockname()[1] if sockets else port
    sim._runner = runner
    sim.base_url = f"http://{host}:{real_port}{path}"


def serve_until_interrupted(start: Callable[[], Any], describe: Callable[[Any], str]) -> None:
    """`costrecond sim …`: start a simulator (``await start()`` returns a running handle with
    ``close()``), print ``describe(handle)`` — its URL and the config snippet — and serve until
    Ctrl-C or SIGTERM."""

    async def main() -> None:
        running = await start()
        print(describe(running), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await running.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
