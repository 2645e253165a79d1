"""Factories for simulators served in-process on loopback (import from any test module)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from costrecon_daemon.psa.base import SyncChunk
from costrecon_daemon.psa.connectwise import ConnectWiseConnector, ConnectWiseSettings
from costrecon_daemon.sim.connectwise import RunningSim, start_connectwise_sim
from costrecon_daemon.sim.dataset import Dataset, generate

CW_KEYS = dict(
    company="acme",
    public_key="pub-8fA2kq",
    private_key="priv-Zr91xLq0Wd",
    client_id="6c1f7a3e-0b0d-4c7b-9f2e-2b7d8a4c5e11",
)


def connectwise_connector(running: RunningSim, **settings: Any) -> ConnectWiseConnector:
    """A connector to a running sim with quick retries for tests (call ``aclose`` when done)."""
    opts: dict[str, Any] = dict(CW_KEYS, backoff_base=0.01, timeout=5.0)
    opts.update(settings)
    return ConnectWiseConnector(ConnectWiseSettings(site=running.base_url, **opts))


def connectwise_config(running: RunningSim, **settings: Any) -> dict[str, dict[str, Any]]:
    """The config tables that point a daemon at a running sim (quick retries for tests)."""
    opts: dict[str, Any] = dict(CW_KEYS, site=running.base_url, backoff_base=0.05, timeout=10.0)
    opts.update(settings)
    return {"psa": {"kind": "connectwise"}, "psa.connectwise": opts}


@asynccontextmanager
async def connectwise(
    dataset: Dataset | None = None, **settings: Any
) -> AsyncIterator[tuple[RunningSim, ConnectWiseConnector]]:
    """A ConnectWise sim plus a connected connector with quick retries for tests."""
    running = await start_connectwise_sim(dataset or generate("tiny"), **CW_KEYS)
    connector = connectwise_connector(running, **settings)
    try:
        yield running, connector
    finally:
        await connector.aclose()
        await running.close()


class Collect:
    """A pull sink that keeps every chunk's records."""

    def __init__(self) -> None:
        self.chunks: list[SyncChunk] = []

    async def __call__(self, chunk: SyncChunk) -> None:
        self.chunks.append(chunk)

    @property
    def items(self) -> list:
        return [r for c in self.chunks for r in c.items]

    @property
    def contracts(self) -> list:
        return [r for c in self.chunks for r in c.contracts]

    @property
    def lines(self) -> list:
        return [r for c in self.chunks for r in c.lines]
