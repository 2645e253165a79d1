"""The one map from ``[psa] kind`` to its settings and connector classes.

Config validation (config.py) asks for the settings class; the composition root builds the
connector. Connector modules are imported on first use: each pulls in its PSA's whole client.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from costrecon_daemon.psa.base import Connector

__all__ = ["KINDS", "PSAKind", "build", "kind", "settings_class"]


@dataclass(frozen=True, slots=True)
class PSAKind:
    module: str
    settings: str  # class names in ``module``
    connector: str

    def settings_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.settings)

    def connector_class(self) -> Callable[[Any], Connector]:
        return getattr(importlib.import_module(self.module), self.connector)


KINDS: dict[str, PSAKind] = {
    "connectwise": PSAKind(
        "costrecon_daemon.psa.connectwise", "ConnectWiseSettings", "ConnectWiseConnector"
    ),
    "autotask": PSAKind("costrecon_daemon.psa.autotask", "AutotaskSettings", "AutotaskConnector"),
    "syncro": PSAKind("costrecon_daemon.psa.syncro", "SyncroSettings", "SyncroConnector"),
}


def kind(name: str) -> PSAKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown PSA kind {name!r}; expected one of {', '.join(KINDS)}") from None


def settings_class(name: str) -> type:
    return kind(name).settings_class()


def build(name: str, settings: dict[str, Any]) -> Connector:
    """The connector for ``name`` from its validated ``[psa.<name>]`` table."""
    k = kind(name)
    return k.connector_class()(k.settings_class()(**settings))
