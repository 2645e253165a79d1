"""What the API serves: the daemon's parts, handed over by the composition root (app.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..activity import qualify
from ..changes import Approvals
from ..costs.table import CostTable
from ..events import EventBus
from ..intake import Intake
from ..mirror import SyncLoop
from ..peers import Gate
from ..store import Store


@dataclass(slots=True)
class Services:
    store: Store
    bus: EventBus
    gate: Gate
    stopping: asyncio.Event
    table: CostTable
    intake: Intake
    approvals: Approvals
    mirror: SyncLoop
    status: Callable[[], Awaitable[dict[str, Any]]]
    pid: int
    schema_version: str
    vendors: Any = None  # vendors.pulls.VendorPulls (issue 16)


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def actor_of(request: web.Request) -> str:
    # user@host on a shared database, so a change set pushed by another daemon names its approver
    return qualify(request["peer"].user)
