"""The vendors' published API contracts, as the simulators and the contract tests use them.

``contracts/*.json`` are compact extracts of each PSA's published API description (see
``contracts/README.md`` for their provenance). This module:

- finds the contract operation a concrete request is (method + path template + query names);
- checks a JSON body against the operation's request schema: types, enums, lengths, date-time
  strings and fields that are read-only. It is a small validator of its own so that the simulators
  (which run in ``costrecon demo`` too) need no schema library; the tests check responses with
  ``jsonschema`` instead, so each side is checked by a second implementation;
- records every request and response a simulator serves, when a test switches recording on
  (``sim.recorder = Recorder()`` or the ``COSTRECON_SIM_RECORD`` file for a whole pytest run);
- lists, in one place, every request the connectors send that the contract does not have.

Nulls are accepted everywhere: the specs' nullability is unreliable (contracts/README.md), and the
real APIs send ``null`` for unset fields.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

CONTRACT_DIR = Path(__file__).with_name("contracts")
PSAS = ("connectwise", "autotask", "syncro")
RECORD_ENV = "COSTRECON_SIM_RECORD"


@dataclass(frozen=True)
class Deviation:
    """A request the connectors send on purpose although the contract does not have it."""

    method: str
    path: str  # a template in the contract's own form
    why: str


# Every request outside the contracts, with the reason it is sent anyway. A request that is neither
# in the contract nor here fails tests/test_psa_contract.py.
DEVIATIONS: dict[str, list[Deviation]] = {
    "connectwise": [
        Deviation(
            "GET",
            "/login/companyinfo/{company}",
            "Codebase discovery is served outside apis/3.0 and so is in no spec; every public "
            "client uses it (psa-apis.md §1.1, CW-DJ, CW-PY).",
        ),
    ],
    "autotask": [
        Deviation(
            "GET",
            "/V1.0/ThresholdInformation",
            "The usage meter the connector seeds its hourly budget from; it exists in the full "
            "swagger but was not extracted into the contract (psa-apis.md §2.1, AT-GO, AT-N8N).",
        ),
        Deviation(
            "POST",
            "/V1.0/{entity}/query/next",
            "The URL the API hands out in pageDetails.nextPageUrl; the spec does not describe "
            "it. The connector repeats the first request's method and body (§2.2, AT-NEXT).",
        ),
        Deviation(
            "POST",
            "/V1.0/Companies/query",
            "Company names for contracts; Companies exists in the full swagger but was not "
            "extracted into the contract (it carries no cost).",
        ),
    ],
    "syncro": [],
}

_BASE = {
    # The part of a sim's URL before the contract's paths begin.
    "connectwise": re.compile(r"^/[^/]+/apis/3\.0(?=/)"),
    "autotask": re.compile(r"^/atservicesrest(?=/)", re.IGNORECASE),
    "syncro": re.compile(r"^/api/v1(?=/)"),
}


@dataclass(frozen=True)
class Match:
    op: dict[str, Any] | None  # None: a deviation
    template: str
    deviation: Deviation | None = None


class Contract:
    def __init__(self, psa: str, data: dict[str, Any]) -> None:
        self.psa = psa
        self.data = data
        self.schemas: dict[str, Any] = data["components"]["schemas"]
        self.operations: list[dict[str, Any]] = data["operations"]
        flags = re.IGNORECASE if psa == "autotask" else 0
        self._routes: list[tuple[re.Pattern[str], str, dict[str, Any] | None, Any]] = []
        for op in self.operations:
            types = {p["name"]: p["schema"].get("type") for p in op["parameters"].get("path", [])}
            self._routes.append((_template_re(op["path"], types, flags), op["method"], op, None))
        for dev in DEVIATIONS[psa]:
            self._routes.append((_template_re(dev.path, {}, flags), dev.method, None, dev))
        # Literal segments win over parameters (``/catalog/count`` is not ``/catalog/{id}``).
        self._routes.sort(key=lambda r: r[0].pattern.count("[^/]") + r[0].pattern.count(r"\d"))

    def api_path(self, raw_path: str) -> str | None:
        """The path as the contract writes it, or None when it is outside the API root."""
        if self.psa == "connectwise" and raw_path.startswith("/login/companyinfo/"):
            return raw_path
        m = _BASE[self.psa].match(raw_path)
        return raw_path[m.end() :] if m else None

    def match(self, method: str, raw_path: str) -> Match | None:
        path = self.api_path(raw_path)
        if path is None:
            return None
        for rx, m, op, dev in self._routes:
            if m == method.upper() and rx.fullmatch(path):
                return Match(op, op["path"] if op else dev.path, dev)
        return None

    def operation(self, method: str, template: str) -> dict[str, Any]:
        for op in self.operations:
            if op["method"] == method and op["path"] == template:
                return op
        raise KeyError(f"{method} {template} is not in the {self.psa} contract")

    # ---- requests ----------------------------------------------------------------------

    def query_problems(self, op: dict[str, Any], query: dict[str, list[str]]) -> list[str]:
        declared = {p["name"]: p for p in op["parameters"].get("query", [])}
        out = []
        for name, values in query.items():
            param = declared.get(name)
            if param is None:
                out.append(f"query parameter {name!r} is not in the contract")
                continue
            kind = param["schema"].get("type")
            for v in values:
                if kind == "integer" and not re.fullmatch(r"-?\d+", v):
                    out.append(f"query parameter {name}={v!r} is not an integer")
        for name, param in declared.items():
            if param.get("required") and name not in query:
                out.append(f"required query parameter {name!r} is missing")
        return out

    def body_problems(
        self, op: dict[str, Any], body: Any, *, read_only: frozenset[str] = frozenset()
    ) -> list[str]:
        """What is wrong with ``body`` for ``op``; ``read_only`` names top-level fields the
        PSA refuses on this write (the specs rarely mark them)."""
        spec = op.get("requestBody")
        if spec is None:
            return [] if body is None else ["the operation takes no request body"]
        if body is None:
            return ["a request body is required"] if spec.get("required") else []
        out = check(self.schemas, spec["schema"], body, "body")
        if isinstance(body, dict):
            out += [f"body.{k} is read-only" for k in body if k in read_only]
        return out


def _template_re(template: str, types: dict[str, Any], flags: int) -> re.Pattern[str]:
    def repl(m: re.Match[str]) -> str:
        return r"\d+" if types.get(m.group(1)) == "integer" else "[^/]+"

    parts = re.split(r"(\{[^}]+\})", template)
    rx = "".join(
        re.sub(r"\{([^}]+)\}", repl, p) if p.startswith("{") else re.escape(p) for p in parts
    )
    return re.compile(rx, flags)


# Where the extracted spec itself is known to be wrong (contracts/README "Known gaps and doubts";
# docs/psa-fidelity.md records each decision). Applied on load, so the simulators and the tests
# read the same corrected contract. (psa, schema, property) -> the property's schema.
SCHEMA_OVERRIDES: dict[tuple[str, str, str], dict[str, Any]] = {
    # Typed ``object`` in the spec, but every client sends the new value itself (a number for
    # cost): the value is checked against the patched entity property instead.
    ("connectwise", "PatchOperation", "value"): {},
    # Typed as an empty object in the spec; the documented reply is {"itemId": <integer>}.
    ("autotask", "OperationResultModel", "itemId"): {"type": "integer", "format": "int64"},
}


@functools.cache
def load(psa: str) -> Contract:
    with (CONTRACT_DIR / f"{psa}.json").open(encoding="utf-8") as fh:
        data = json.load(fh)
    for (name, schema, prop), replacement in SCHEMA_OVERRIDES.items():
        if name == psa:
            data["components"]["schemas"][schema]["properties"][prop] = replacement
    return Contract(psa, data)


# ---- a small validator for request bodies --------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def _is_date_time(v: str) -> bool:
    text = v[:-1] + "+00:00" if v.endswith("Z") else v
    if "T" not in text:
        return False  # a bare date is not a date-time
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


_TYPES: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, (float, Decimal)) and v == int(v))
    ),
    "number": _is_number,
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def check(schemas: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> list[str]:
    """Problems of ``value`` against an OpenAPI 3.0 schema (nulls always pass)."""
    if value is None:
        return []
    if "$ref" in schema:
        return check(schemas, schemas[schema["$ref"].rsplit("/", 1)[1]], value, where)
    if schema.get("x-not-extracted"):
        return []
    kind = schema.get("type")
    if kind in _TYPES and not _TYPES[kind](value):
        return [f"{where} should be {kind}, not {type(value).__name__} {value!r}"]
    out: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}={value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{where} is longer than {schema['maxLength']} characters")
        if schema.get("format") == "date-time" and not _is_date_time(value):
            out.append(f"{where}={value!r} is not a date-time")
    if isinstance(value, list) and "items" in schema:
        for n, v in enumerate(value):
            out += check(schemas, schema["items"], v, f"{where}[{n}]")
    if isinstance(value, dict):
        for k, v in value.items():
            if k in schema.get("properties", {}):
                out += check(schemas, schema["properties"][k], v, f"{where}.{k}")
    return out


# ---- recording ----------------------------------------------------------------------------


class Recorder:
    """Keeps every exchange a simulator serves (thread-safe: sims run in their own thread)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.entries.append(entry)


class FileRecorder(Recorder):
    """Appends exchanges as JSON lines, for a whole pytest run in another process."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def add(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)


def env_recorder() -> Recorder | None:
    path = os.environ.get(RECORD_ENV)
    return FileRecorder(path) if path else None


def recording_middleware(psa: str, owner: Any) -> Any:
    """Records exchanges while ``owner.recorder`` is set; costs nothing otherwise."""

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        recorder = getattr(owner, "recorder", None)
        if recorder is None:
            return await handler(request)
        raw = await request.read()  # cached: the handler can read the body again
        resp = await handler(request)
        text = resp.text if isinstance(resp, web.Response) and resp.body is not None else None
        recorder.add(
            {
                "psa": psa,
                "method": request.method,
                "path": request.path,
                "query": {k: request.query.getall(k) for k in request.query},
                "body": raw.decode("utf-8", "replace") if raw else None,
                "status": resp.status,
                "response": text,
            }
        )
        return resp

    return record
