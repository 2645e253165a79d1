"""A faithful fake Syncro REST API v1 (reference/psa-apis.md §3, checklist §5 "Syncro").

What it gets right, because the connector must cope with it:

- auth by ``Authorization: Bearer <token>``, the bare token in ``Authorization``, or ``api_key`` in
  the query string (§3.1); a token lacking a permission gets **401** (not 403) with
  ``{"error":"Not authorized. Please ask account admin to update your group permissions."}``;
- ``/products`` and ``/schedules`` in pages of 25 (pages start at 1) with ``meta``;
- ``PUT /products/{id}`` needs ``name`` and ``description`` (422 in the products shape) and resets
  every boolean the body leaves out to its default (§3.4, SY-MCP Test 7), so a client that sends a
  partial body loses ``maintain_stock``/``taxable``... exactly as on a real tenant;
- the schedule *list* view does not carry the lines: ``lines`` comes back as ``[]`` (the spec's
  example, §3.3 UNCERTAIN). A client must ``GET /schedules/{id}`` for each schedule; reading lines
  from the list would silently see none. ``schedule_list_lines="full"`` switches this off;
- ``PUT /schedules/{id}/line_items/{lid}`` and ``POST /schedules/{id}/add_line_item`` take the
  spec's line body (integer ``cost_cents``, numeric ``quantity``...; sim/contracts/syncro.json) and
  need ``name`` (422 ``{"error":["Name can't be blank"]}``), answering ``{"schedule_line_item":
  ...}``; a body of the wrong type is refused with 422 in the same shape (the spec types it; a real
  Rails server may cast instead, but a connector that sends the wrong type is wrong either way);
- write bodies are checked against the published contract (types, enums): products answer 422
  ``{"success":false,"message":[...],"params":{...}}``, schedule lines ``{"error":[...]}`` (§3.5);
- schedules carry ``subtotal`` as a number and ``next_run`` as a date-time (the spec's example);
- 180 requests per minute per IP: 429 ``text/plain`` "Retry later" with **no** Retry-After (§3.5).

Money: product ``price_cost`` is a JSON number; lines carry ``cost_cents`` (int) plus ``price_cost``
(decimal dollars); line ``quantity`` is a string.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from costrecon_daemon.psa.http import dumps
from costrecon_daemon.sim.contract import Recorder, env_recorder, load, recording_middleware
from costrecon_daemon.sim.dataset import Dataset, generate
from costrecon_daemon.sim.knobs import Knobs, RequestStats, fault_middleware
from costrecon_daemon.sim.serve import serve_on_loopback, serve_until_interrupted

PER_PAGE = 25
CENT = Decimal("0.01")
NOT_AUTHORIZED = "Not authorized. Please ask account admin to update your group permissions."
ALL_PERMISSIONS = frozenset({"products_list", "products_edit", "recurring_list", "recurring_edit"})
# Booleans a PUT resets to these values when the body leaves them out (§3.4).
PRODUCT_BOOL_DEFAULTS = {
    "disabled": False,
    "taxable": False,
    "maintain_stock": False,
    "serialized": False,
}
PRODUCT_READ_ONLY = {"id", "category_path", "product_skus", "location_quantities", "photos"}


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(payload), status=status, content_type="application/json")


def _contract_problems(method: str, template: str, body: dict[str, Any]) -> list[str]:
    """The body checked against Syncro's published request schema (types, enums)."""
    contract = load("syncro")
    return contract.body_problems(contract.operation(method, template), body)


def _cents_to_dollars(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(CENT)


class SyncroSim:
    """The fake Syncro account. Start with :func:`start_syncro_sim`."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        api_token: str = "T0k3n-sim-0123456789abcdef",
        requests_per_minute: int = 180,
        permissions: frozenset[str] | set[str] = ALL_PERMISSIONS,
        schedule_list_lines: str = "empty",
        knobs: Knobs | None = None,
        seed: int = 7,
    ) -> None:
        self.api_token = api_token
        self.permissions = set(permissions)
        self.schedule_list_lines = schedule_list_lines
        self.knobs = knobs or Knobs(seed=seed)
        # §3.5: 180/minute per IP, answered by Rack::Attack's plain "Retry later" with no header.
        self.knobs.rate_limit = requests_per_minute
        self.knobs.rate_window = 60.0
        self.knobs.send_retry_after = False
        self.request_stats = RequestStats()
        self.writes: Counter[str] = Counter()  # "product:12" / "line:7" -> PUTs
        self.base_url = ""
        self.products: dict[int, dict[str, Any]] = {}
        self.schedules: dict[int, dict[str, Any]] = {}
        self.recorder: Recorder | None = env_recorder()
        self._load(dataset)

    @property
    def requests_per_minute(self) -> int | None:
        return self.knobs.rate_limit

    @requests_per_minute.setter
    def requests_per_minute(self, value: int | None) -> None:
        self.knobs.rate_limit = value

    # ---- data mapping --------------------------------------------------------------------

    def _load(self, ds: Dataset) -> None:
        self.product_for_item: dict[int, int] = {}
        for it in ds.items:
            pid = 11_000 + it.id
            self.product_for_item[it.id] = pid
            skus = (
                [{"id": 900_000 + it.id, "vendor_name": it.vendor_name, "sku": it.vendor_sku}]
                if it.vendor_sku
                else []
            )
            self.products[pid] = {
                "id": pid,
                "name": it.name,
                "description": it.description[:255],
                "long_description": it.description,
                "price_cost": it.cost.quantize(CENT),
                "price_retail": it.price.quantize(CENT),
                "price_wholesale": Decimal("0.0"),
                "discount_percent": Decimal("0.0"),
                "disabled": not it.active,
                "taxable": not it.recurring,
                "maintain_stock": not it.recurring,
                "quantity": 0 if it.recurring else 5,
                "reorder_at": None,
                "desired_stock_level": None,
                "condition": "New",
                "warranty": None,
                "warranty_template_id": None,
                "sort_order": None,
                "product_category": it.category,
                "category_path": it.category,
                "upc_code": None,
                "qb_item_id": None,
                "tax_rate_id": None,
                "physical_location": None,
                "serialized": False,
                "vendor_ids": [],
                "product_skus": skus,
                "location_quantities": [],
                "photos": [],
                "notes": None,
            }
        customers: dict[str, int] = {}
        today = datetime.now(UTC).date()
        first = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
        # A date-time in the spec's form (milliseconds, offset), not a bare date.
        next_run = f"{first.isoformat()}T00:00:00.000-05:00"
        for c in ds.contracts:
            cust = customers.setdefault(c.company, 31_000 + len(customers))
            self.schedules[c.id + 4_000] = {
                "id": c.id + 4_000,
                "account_id": 1,
                "customer_id": cust,
                "name": c.name,
                "frequency": "Monthly",
                "next_run": next_run,
                "paused": c.status != "Active",
                "email_customer": True,
                "snail_mail": False,
                "charge_mop": False,
                "subtotal": None,
                "invoice_unbilled_ticket_charges": False,
                "last_invoice_paid": True,
                "lines": [],
            }
        line_id = 70_000
        for ln in ds.lines:
            if ln.cancelled:
                continue  # Syncro has no cancelled line: a cancelled service is removed
            sched = self.schedules[ln.contract_id + 4_000]
            line_id += 1
            cost_cents = int((ln.unit_cost * 100).to_integral_value())
            retail_cents = int((ln.unit_price * 100).to_integral_value())
            line = self._line(line_id, sched["id"], self.product_for_item[ln.item_id],
                              ln.description, ln.quantity, cost_cents, retail_cents,
                              len(sched["lines"]) + 1)  # fmt: skip
            # A one-off item on a recurring invoice is billed once (Syncro has no line dates,
            # so a future-dated line is simply on the schedule).
            line["one_time_charge"] = not ds.item(ln.item_id).recurring
            sched["lines"].append(line)
        # Ad-hoc lines with no product (labour, a one-off fee) exist on real schedules too.
        for n, sched in enumerate(self.schedules.values()):
            if n % 7 == 3:
                line_id += 1
                sched["lines"].append(
                    self._line(line_id, sched["id"], None, "Onsite labour block", Decimal(2),
                               9500, 15000, len(sched["lines"]) + 1)
                )  # fmt: skip
        for sched in self.schedules.values():
            sched["subtotal"] = self._subtotal(sched)

    @staticmethod
    def _line(lid: int, sid: int, pid: int | None, name: str, qty: Decimal, cost: int,
              retail: int, position: int) -> dict[str, Any]:  # fmt: skip
        return {
            "id": lid,
            "schedule_id": sid,
            "product_id": pid,
            "name": name,
            "description": name,
            "quantity": format(qty.normalize(), "f") if qty == qty.to_integral() else str(qty),
            "cost_cents": cost,
            "retail_cents": retail,
            "price_cost": _cents_to_dollars(cost),
            "price_retail": _cents_to_dollars(retail),
            "taxable": False,
            "position": position,
            "user_id": None,
            "one_time_charge": False,
            "recurring_type_id": 1,
            "asset_type_id": None,
            "device_ids": [],
            "product_category": None,
        }

    @staticmethod
    def _subtotal(sched: dict[str, Any]) -> Decimal:
        total = sum(
            (Decimal(ln["retail_cents"]) * Decimal(ln["quantity"]) for ln in sched["lines"]),
            Decimal(0),
        )
        return (total / 100).quantize(CENT)  # a number, as in the spec's example

    # ---- in-process control for tests ------------------------------------------------------

    def set_product_cost(self, pid: int, cost: Decimal) -> None:
        self.products[pid]["price_cost"] = Decimal(cost)

    def line(self, lid: int) -> dict[str, Any]:
        for sched in self.schedules.values():
            for ln in sched["lines"]:
                if ln["id"] == lid:
                    return ln
        raise KeyError(lid)

    def set_line_cost_cents(self, lid: int, cents: int) -> None:
        ln = self.line(lid)
        ln["cost_cents"] = cents
        ln["price_cost"] = _cents_to_dollars(cents)

    def set_permissions(self, *names: str) -> None:
        """Permissions the token carries: products_list/_edit, recurring_list/_edit."""
        self.permissions = set(names)

    def fail_next(self, count: int = 1, kind: str = "503") -> None:
        self.knobs.fail_next(count, kind)

    # ---- the app -------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                recording_middleware("syncro", self),
                self._auth,
                fault_middleware(self.knobs, self.request_stats, self._shape),
            ]
        )
        r = app.router
        r.add_get("/api/v1/products", self._products)
        r.add_get("/api/v1/products/{id}", self._product)
        r.add_put("/api/v1/products/{id}", self._put_product)
        r.add_get("/api/v1/schedules", self._schedules)
        r.add_get("/api/v1/schedules/{id}", self._schedule)
        r.add_put("/api/v1/schedules/{id}/line_items/{lid}", self._put_line)
        r.add_post("/api/v1/schedules/{id}/add_line_item", self._add_line)
        return app

    @staticmethod
    def _shape(status: int, retry_after: int | None) -> web.Response:
        if status == 429:
            return web.Response(status=429, text="Retry later\n", content_type="text/plain")
        return web.Response(
            status=status,
            text="<html><body>We're sorry, but something went wrong.</body></html>",
            content_type="text/html",
        )

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else header
        if not token:
            token = request.query.get("api_key", "")
        if token.strip() != self.api_token:
            return _json({"error": "Unauthorized: invalid or expired API token"}, status=401)
        return await handler(request)

    def _allowed(self, permission: str) -> web.Response | None:
        if permission in self.permissions:
            return None
        return _json({"error": NOT_AUTHORIZED}, status=401)

    @staticmethod
    def _page_of(request: web.Request, rows: list[Any]) -> tuple[list[Any], dict[str, int]]:
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            page = 1
        total_pages = max(1, math.ceil(len(rows) / PER_PAGE))
        chunk = rows[(page - 1) * PER_PAGE : page * PER_PAGE]
        meta = {
            "total_pages": total_pages,
            "total_entries": len(rows),
            "per_page": PER_PAGE,
            "page": page,
        }
        return chunk, meta

    async def _products(self, request: web.Request) -> web.Response:
        if (denied := self._allowed("products_list")) is not None:
            return denied
        rows = sorted(self.products.values(), key=lambda p: p["id"])
        q = request.query
        if "sku" in q:
            rows = [p for p in rows if any(s["sku"] == q["sku"] for s in p["product_skus"])]
        if "name" in q:
            rows = [p for p in rows if q["name"].lower() in p["name"].lower()]
        chunk, meta = self._page_of(request, rows)
        return _json({"products": chunk, "meta": meta})

    def _find_product(self, request: web.Request) -> dict[str, Any] | None:
        raw = request.match_info["id"]
        return self.products.get(int(raw)) if raw.isdigit() else None

    async def _product(self, request: web.Request) -> web.Response:
        if (denied := self._allowed("products_list")) is not None:
            return denied
        product = self._find_product(request)
        if product is None:
            return _json({"message": "Not found"}, status=404)
        return _json({"product": product})

    async def _read_body(self, request: web.Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.text() or "{}", parse_float=Decimal)
        except ValueError:
            return None
        if isinstance(body, dict) and isinstance(body.get("product"), dict):
            body = body["product"]  # Rails accepts the wrapped form too
        return body if isinstance(body, dict) else None

    async def _put_product(self, request: web.Request) -> web.Response:
        if (denied := self._allowed("products_edit")) is not None:
            return denied
        product = self._find_product(request)
        if product is None:
            return _json({"message": "Not found"}, status=404)
        body = await self._read_body(request)
        if body is None:
            return _json({"success": False, "message": ["Invalid JSON"], "params": {}}, status=422)
        problems = [
            f"{f.capitalize()} can't be blank"
            for f in ("name", "description")
            if not str(body.get(f) or "").strip()
        ]
        problems += _contract_problems("PUT", "/products/{id}", body)
        if problems:
            return _json({"success": False, "message": problems, "params": body}, status=422)
        updated = dict(product)
        for key, value in body.items():
            if key in PRODUCT_READ_ONLY or key not in product:
                continue
            if key in ("price_cost", "price_retail", "price_wholesale") and value is not None:
                try:
                    value = Decimal(str(value))
                except InvalidOperation:
                    return _json(
                        {"success": False, "message": [f"{key} is not a number"], "params": body},
                        status=422,
                    )
            updated[key] = value
        for key, default in PRODUCT_BOOL_DEFAULTS.items():
            if key not in body:
                updated[key] = default  # the real PUT resets omitted booleans (§3.4)
        product.update(updated)
        self.writes[f"product:{product['id']}"] += 1
        return _json({"product": product})

    def _schedule_view(self, sched: dict[str, Any], full: bool) -> dict[str, Any]:
        out = dict(sched)
        if not full:
            if self.schedule_list_lines == "empty":
                out["lines"] = []
            elif self.schedule_list_lines == "omit":
                out.pop("lines")
        return out

    async def _schedules(self, request: web.Request) -> web.Response:
        if (denied := self._allowed("recurring_list")) is not None:
            return denied
        rows = sorted(self.schedules.values(), key=lambda s: s["id"])
        if "customer_id" in request.query:
            rows = [s for s in rows if str(s["customer_id"]) == request.query["customer_id"]]
        chunk, meta = self._page_of(request, rows)
        return _json(
            {
                "schedules": [
                    self._schedule_view(s, self.schedule_list_lines == "full") for s in chunk
                ],
                "meta": meta,
            }
        )

    async def _schedule(self, request: web.Request) -> web.Response:
        if (denied := self._allowed("recurring_list")) is not None:
            return denied
        raw = request.match_info["id"]
        sched = self.schedules.get(int(raw)) if raw.isdigit() else None
        if sched is None:
            return _json({"message": "Not found"}, status=404)
        return _json({"schedule": self._schedule_view(sched, True)})

    async def _put_line(self, request: web.Request) -> web.Response:
        if (denied := self._allowed("recurring_edit")) is not None:
            return denied
        raw_sid, raw_lid = request.match_info["id"], request.match_info["lid"]
        sched = self.schedules.get(int(raw_sid)) if raw_sid.isdigit() else None
        line = None
        if sched is not None and raw_lid.isdigit():
            line = next((ln for ln in sched["lines"] if ln["id"] == int(raw_lid)), None)
        if line is None or sched is None:
            return web.Response(status=404, text="")
        body = await self._read_body(request)
        if body is None:
            return _json({"error": ["Invalid JSON"]}, status=422)
        problems = _contract_problems(
            "PUT", "/schedules/{id}/line_items/{schedule_line_item_id}", body
        )
        if not str(body.get("name") or "").strip():
            problems.insert(0, "Name can't be blank")
        if problems:
            return _json({"error": problems}, status=422)
        self._apply_line(line, body)
        sched["subtotal"] = self._subtotal(sched)
        self.writes[f"line:{line['id']}"] += 1
        return _json({"schedule_line_item": line})

    async def _add_line(self, request: web.Request) -> web.Response:
        if (denied := self._allowed("recurring_edit")) is not None:
            return denied
        raw_sid = request.match_info["id"]
        sched = self.schedules.get(int(raw_sid)) if raw_sid.isdigit() else None
        if sched is None:
            return _json({"message": "Not found"}, status=404)
        body = await self._read_body(request)
        if body is None:
            return _json({"error": ["Invalid JSON"]}, status=422)
        problems = _contract_problems("POST", "/schedules/{id}/add_line_item", body)
        if not str(body.get("name") or "").strip():
            problems.insert(0, "Name can't be blank")
        pid = body.get("product_id")
        if pid is not None and int(pid) not in self.products:
            problems.append("Product must exist")
        if problems:
            return _json({"error": problems}, status=422)
        lid = 1 + max(
            (ln["id"] for s in self.schedules.values() for ln in s["lines"]), default=70_000
        )
        line = self._line(lid, sched["id"], None if pid is None else int(pid), "", Decimal(1),
                          0, 0, len(sched["lines"]) + 1)  # fmt: skip
        self._apply_line(line, body)
        sched["lines"].append(line)
        sched["subtotal"] = self._subtotal(sched)
        self.writes[f"line:{lid}"] += 1
        return _json({"schedule_line_item": line})

    @staticmethod
    def _apply_line(line: dict[str, Any], body: dict[str, Any]) -> None:
        for key in ("name", "description", "taxable", "position", "one_time_charge"):
            if key in body:
                line[key] = body[key]
        if body.get("quantity") is not None:
            qty = Decimal(str(body["quantity"]))
            # Read back as a string (the spec's line-item reply shows "quantity": "1.0").
            line["quantity"] = (
                format(qty.normalize(), "f") if qty == qty.to_integral() else str(qty)
            )
        for key in ("cost_cents", "retail_cents", "recurring_type_id"):
            if body.get(key) is not None:
                line[key] = int(body[key])
        line["price_cost"] = _cents_to_dollars(line["cost_cents"])
        line["price_retail"] = _cents_to_dollars(line["retail_cents"])


# ---- starting it ----------------------------------------------------------------------------


class RunningSyncroSim(SyncroSim):
    _runner: web.AppRunner

    async def close(self) -> None:
        await self._runner.cleanup()


async def start_syncro_sim(
    dataset: Dataset | None = None, host: str = "127.0.0.1", port: int = 0, **knobs: Any
) -> RunningSyncroSim:
    """Serve a fake Syncro account on loopback; ``base_url`` ends in ``/api/v1``."""
    sim = RunningSyncroSim(dataset if dataset is not None else generate("demo"), **knobs)
    await serve_on_loopback(sim, host, port, "/api/v1")
    return sim


def config_snippet(sim: SyncroSim) -> str:
    """The ``[psa]`` TOML block that points costrecond at this sim."""
    # Settings live in a [psa.syncro] table: config.py refuses other keys under [psa].
    return (
        "[psa]\n"
        'kind = "syncro"\n'
        "\n[psa.syncro]\n"
        f'base_url = "{sim.base_url}"\n'
        f'api_token = "{sim.api_token}"\n'
        "concurrency = 3\n"
        f"requests_per_minute = {sim.requests_per_minute or 180}\n"
    )


def run_standalone(
    port: int = 8091, size: str = "demo", seed: int = 7, host: str = "127.0.0.1", **knobs: Any
) -> None:
    """Serve until interrupted; print the base URL and the config snippet (``costrecond sim
    syncro``)."""

    serve_until_interrupted(
        lambda: start_syncro_sim(generate(size, seed=seed), host=host, port=port, **knobs),
        lambda sim: (
            f"Syncro simulator listening on {sim.base_url}\n"
            f"Add this to your costrecon config:\n\n{config_snippet(sim)}"
        ),
    )
