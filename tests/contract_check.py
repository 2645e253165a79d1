"""Checks of recorded simulator exchanges against the PSAs' published contracts (jsonschema).

The simulators check write bodies with their own small validator (sim/contract.py); here every
response and request body is checked with ``jsonschema`` instead, so one implementation's mistake
does not hide the other's.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jsonschema

from costrecon_daemon.sim.contract import Contract

_DROP = {"nullable", "readOnly", "writeOnly", "discriminator", "example", "required"}


def to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema 2020-12, every value nullable.

    The specs' nullability is unreliable (contracts/README.md), so null passes everywhere, while
    types, enums and formats are enforced. ``required`` is dropped for responses: the Syncro
    skeletons have none and the others are create rules, not read guarantees.
    """
    if isinstance(node, list):
        return [to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key.startswith("x-"):
            continue
        if key == "$ref":
            out["$ref"] = value.replace("#/components/schemas/", "#/$defs/")
        elif key == "properties":
            out[key] = {name: to_jsonschema(s) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = to_jsonschema(value)
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [to_jsonschema(x) for x in value]
        else:
            out[key] = value
    if "$ref" in out:
        return {"anyOf": [out, {"type": "null"}]}
    if "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if "T" not in value:
        raise ValueError("a date-time needs a time part")
    datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    return True


def _describe(error: jsonschema.ValidationError) -> str:
    """The innermost reason: every value is wrapped in "anyOf [schema, null]", whose own message
    ("not valid under any of the given schemas") names nothing."""
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    return f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message[:200]}"


class Checker:
    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self._defs = {k: to_jsonschema(v) for k, v in contract.schemas.items()}
        self._cache: dict[tuple[str, str, str], jsonschema.Draft202012Validator] = {}

    def _validator(self, key: tuple[str, str, str], schema: dict[str, Any]) -> Any:
        if key not in self._cache:
            full = {**to_jsonschema(schema), "$defs": self._defs}
            self._cache[key] = jsonschema.Draft202012Validator(full, format_checker=_FORMATS)
        return self._cache[key]

    def _errors(self, key: tuple[str, str, str], schema: dict[str, Any], value: Any) -> list[str]:
        v = self._validator(key, schema)
        return [_describe(e) for e in v.iter_errors(value)]

    def response_problems(self, op: dict[str, Any], status: int, text: str | None) -> list[str]:
        declared = op["responses"].get(str(status))
        if declared is None or "schema" not in declared:
            return []  # no schema for this status in the spec
        try:
            body = json.loads(text or "null")
        except ValueError:
            return ["the response is not JSON"]
        body = self._unwrap_placeholder(op, declared["schema"], body)
        return self._errors((op["method"], op["path"], str(status)), declared["schema"], body)

    def _unwrap_placeholder(self, op: dict[str, Any], schema: dict[str, Any], body: Any) -> Any:
        """Autotask single-item wrappers were not extracted (open placeholders): validate the
        ``item`` inside against the entity model instead (contracts/README)."""
        ref = schema.get("$ref", "")
        if self.contract.psa == "autotask" and "ItemQueryResultModel[" in ref:
            model = ref.split("[", 1)[1].split("]", 1)[0].split(",", 1)[0]
            if isinstance(body, dict) and model in self.contract.schemas:
                schema_of_item = {"$ref": f"#/components/schemas/{model}"}
                errs = self._errors(("item", op["path"], model), schema_of_item, body.get("item"))
                return body if not errs else {"item": errs}
        return body

    def item_problems(self, op: dict[str, Any], text: str | None) -> list[str]:
        """Autotask single-item GETs: the entity inside ``item`` against its model."""
        ref = op["responses"]["200"]["schema"].get("$ref", "")
        model = ref.split("[", 1)[1].split("]", 1)[0].split(",", 1)[0]
        body = json.loads(text or "null")
        return self._errors(
            ("item", op["path"], model),
            {"$ref": f"#/components/schemas/{model}"},
            (body or {}).get("item"),
        )

    def request_problems(self, entry: dict[str, Any]) -> tuple[str, list[str]]:
        """(operation label, problems) of one recorded request."""
        match = self.contract.match(entry["method"], entry["path"])
        if match is None:
            return f"{entry['method']} {entry['path']}", ["not an operation in the contract"]
        label = f"{entry['method']} {match.template}"
        if match.op is None:
            return label, []  # a deliberate deviation (sim/contract.py DEVIATIONS)
        problems = self.contract.query_problems(match.op, entry["query"])
        spec = match.op.get("requestBody")
        raw = entry.get("body")
        if spec is None:
            if raw:
                problems.append("a body on an operation that takes none")
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                problems.append("the body is not JSON")
            else:
                problems += self._errors(("req", match.op["method"], match.op["path"]),
                                         spec["schema"], body)  # fmt: skip
        elif spec.get("required"):
            problems.append("a request body is required")
        return label, problems


def _records(psa: str, schemas: dict[str, Any], schema: dict[str, Any], body: Any):
    """(model name, records) of a reply, for replies whose entity model was extracted."""
    ref = schema.get("$ref", "").rsplit("/", 1)[-1]
    if psa == "connectwise":
        if schema.get("type") == "array":
            return schema["items"]["$ref"].rsplit("/", 1)[-1], body
        return ref, [body]
    if psa == "autotask" and "[" in ref:
        model = ref.split("[", 1)[1].split("]", 1)[0].split(",", 1)[0]
        return model, body.get("items") or [body.get("item")]
    return ref, []


def undeclared_fields(contract: Any, op: dict[str, Any], text: str) -> set[str]:
    """Fields a reply carries that the entity's model in the contract does not declare."""
    body = json.loads(text)
    schema = op["responses"]["200"].get("schema") or {}
    if contract.psa == "syncro":
        out: set[str] = set()
        for key, sub in schema.get("properties", {}).items():
            value = body.get(key)
            declared = sub.get("properties") or sub.get("items", {}).get("properties")
            rows = value if isinstance(value, list) else [value]
            if declared and key != "meta":
                out |= {f"{key}.{f}" for r in rows if isinstance(r, dict) for f in r} - {
                    f"{key}.{f}" for f in declared
                }
        return out
    model, rows = _records(contract.psa, contract.schemas, schema, body)
    entity = contract.schemas.get(model) or {}
    if entity.get("x-not-extracted") or "properties" not in entity:
        return set()
    return {f for r in rows if isinstance(r, dict) for f in r} - set(entity["properties"])
