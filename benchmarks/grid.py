"""Cost grid at scale: the virtual Line-API grid vs Textual's DataTable, in one run.

    /work/venv/bin/python benchmarks/grid.py [--rows 100000] [--baseline-rows 10000,20000]

Measures, headless (``run_test``) with the in-process fake client (no socket, no JSON — add
``--latency 0.003`` to simulate the ~3 ms of a real request): time to first paint, filter keystroke
→ repainted (p50/p95), cursor move, mark-all + open the approval preview, RSS. The DataTable
baseline loads the same rows and rebuilds on each filter keystroke, which is what a DataTable-based
view would have to do; it is measured at smaller sizes (printed) and extrapolated linearly to
--rows. Goals: first paint ≤ 1 s, filter p95 ≤ 50 ms, ≥ 50× faster than the DataTable rebuild.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fake_client import FakeClient, costs_ready, make_app, settle  # noqa: E402
from textual import events  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.screen import Screen  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from costrecon_tui.screens.costs import CONFIRM_DELAY  # noqa: E402
from costrecon_tui.screens.preview import ApproveScreen  # noqa: E402
from costrecon_tui.widgets import display  # noqa: E402

CPU_SAMPLES: list[float] = []
QUERIES = ["microsoft", "s1-c", "datto 1tb", "keeper"]
SIZE = (120, 40)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


class Painter:
    """Timestamps every compositor refresh (what reaches the terminal)."""

    last = 0.0

    @classmethod
    def install(cls) -> None:
        original = Screen._compositor_refresh

        def refresh(screen: Screen[Any]) -> None:
            original(screen)
            cls.last = time.perf_counter()

        Screen._compositor_refresh = refresh  # type: ignore[method-assign]


async def painted_after(mark: float) -> float:
    while Painter.last < mark:
        await asyncio.sleep(0.0005)
    return Painter.last


def send_key(app: Any, key: str) -> None:
    """Deliver a key the way the terminal driver does, without Pilot's idle waits (≥ 40 ms each)."""
    char = {"space": " ", "backspace": None, "slash": "/"}.get(key, key if len(key) == 1 else None)
    event = events.Key(key, char)
    event.set_sender(app)
    app._driver.send_message(event)


async def key_to_paint(
    app: Any, painter: type[Painter], key: str, done: Any, timeout: float = 30
) -> float:
    """Seconds from the key to the first repaint after ``done()`` holds (CPU time in
    CPU_SAMPLES)."""
    t0 = time.perf_counter()
    c0 = time.process_time()
    send_key(app, key)
    ready_at = None
    while True:
        now = time.perf_counter()
        if ready_at is None and done():
            ready_at = now
        if ready_at is not None and painter.last >= ready_at:
            CPU_SAMPLES.append(time.process_time() - c0)
            return painter.last - t0
        if now - t0 > timeout:
            raise TimeoutError(key)
        await asyncio.sleep(0.0005)


def keystrokes() -> list[tuple[str, str]]:
    """(key, query after the key): type each query, then erase it with backspace."""
    out = []
    for q in QUERIES:
        for n in range(1, len(q) + 1):
            out.append(("space" if q[n - 1] == " " else q[n - 1], q[:n]))
        for n in range(len(q) - 1, -1, -1):
            out.append(("backspace", q[:n]))
    return out


async def bench_grid(n: int, latency: float) -> dict[str, Any]:
    client = FakeClient(n, record_calls=False, latency=latency)
    app = make_app(client)
    res: dict[str, Any] = {}
    t0 = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        while not (app.screen_stack and app.costs.loaded and costs_ready(app)):
            await asyncio.sleep(0.0005)
        res["first_paint"] = await painted_after(time.perf_counter()) - t0
        costs = app.costs
        grid = costs.grid
        painter = Painter
        # the background prefetch of every row (for exact local filtering) finishes first
        await settle(pilot, lambda: grid.prefetched, timeout=120)
        res["prefetch_done"] = time.perf_counter() - t0

        # filter: each keystroke until the new id list is painted with its visible rows loaded;
        # "shown" = the (exact) local result, "confirmed" = the daemon's answer painted too
        await pilot.press("slash")
        samples, confirmed = [], []
        CPU_SAMPLES.clear()
        for key, query in keystrokes():
            q = query.strip()
            t0 = time.perf_counter()
            samples.append(
                await key_to_paint(
                    app,
                    painter,
                    key,
                    lambda q=q: (
                        (costs.local_query == q or (costs.loaded_query or ("",))[0] == q)
                        and costs.query_text == q
                        and costs_ready(app)
                    ),
                )
            )
            while not ((costs.loaded_query or ("",))[0] == q and costs_ready(app)):
                await asyncio.sleep(0.0005)
            confirmed.append(await painted_after(time.perf_counter()) - t0)
        res["filter"] = samples
        res["filter_cpu"] = list(CPU_SAMPLES)
        res["filter_confirmed"] = confirmed
        await pilot.press("enter")

        # cursor moves
        moves = []
        for key in ["j"] * 40 + ["pagedown"] * 10 + ["k"] * 10:
            before = grid.cursor
            moves.append(
                await key_to_paint(
                    app, painter, key, lambda b=before: grid.cursor != b and costs_ready(app)
                )
            )
            await asyncio.sleep(0.02)
        res["cursor"] = moves

        # mark all + open the approval preview
        t = time.perf_counter()
        await pilot.press("ctrl+a", "a")
        await settle(pilot, lambda: isinstance(app.screen, ApproveScreen), timeout=120)
        await pilot.pause()
        res["mark_all_preview"] = time.perf_counter() - t
        res["marked"] = len(grid.marked)
        res["preview_items"] = app.screen.preview["items"]
        res["rss"] = rss_mb()
        await pilot.press("escape")
    return res


def table_rows(client: FakeClient, ids: list[int]) -> list[tuple[str, ...]]:
    out = []
    for r in client._rows.values() if ids is None else (client._rows[i] for i in ids):
        change = None if r["vendor_cost"] is None else r["vendor_cost"] - r["catalog_cost"]
        out.append(
            (
                r["identifier"],
                r["name"],
                str(r["contracts"]),
                display.amount(r["catalog_cost"]),
                display.amount(r["vendor_cost"]),
                display.change_text(change, None),
                r["state"] or "approve",
            )
        )
    return out


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        t: DataTable[str] = DataTable(cursor_type="row")
        t.add_columns("PSA ID", "Name", "#Ctr", "Catalogue", "Vendor", "Change", "Action")
        yield t


async def bench_datatable(n: int, keys: int) -> dict[str, Any]:
    client = FakeClient(n, record_calls=False)
    all_rows = table_rows(client, list(client._rows))
    app = TableApp()
    res: dict[str, Any] = {}
    async with app.run_test(size=SIZE):
        table = app.query_one(DataTable)
        t = time.perf_counter()
        table.add_rows(all_rows)
        res["first_paint"] = await painted_after(time.perf_counter()) - t
        samples = []
        for _key, query in keystrokes()[:keys]:
            t = time.perf_counter()
            ids = (await client.cost_view(query=query)).ids
            rows = table_rows(client, ids)
            table.clear()
            table.add_rows(rows)
            samples.append(await painted_after(time.perf_counter()) - t)
        res["filter"] = samples
        # a full rebuild (filter cleared): what every "show all" costs
        t = time.perf_counter()
        table.clear()
        table.add_rows(all_rows)
        res["rebuild_all"] = await painted_after(time.perf_counter()) - t
    return res


def ms(x: float) -> str:
    return f"{x * 1000:8.1f} ms"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--baseline-rows", default="10000,20000")
    ap.add_argument("--baseline-keys", type=int, default=8)
    ap.add_argument("--latency", type=float, default=0.0, help="simulated seconds per client call")
    args = ap.parse_args()

    Painter.install()
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"costrecon grid benchmark — {args.rows:,} rows, terminal {SIZE[0]}x{SIZE[1]}, latency "
        f"{args.latency * 1000:.0f} ms/call"
    )
    gc.collect()
    rss0 = rss_mb()
    g = await bench_grid(args.rows, args.latency)
    f = g["filter"]
    print("\nCostGrid (virtual, Line API)")
    print(f"  first paint                    {ms(g['first_paint'])}   (goal ≤ 1000 ms)")
    fc = g["filter_confirmed"]
    print(
        f"  all rows loaded in background  {ms(g['prefetch_done'])}   (from start, incl. warming "
        "1-char filters; enables exact local filtering)"
    )
    print(
        f"  filter keystroke → repainted   p50 {ms(statistics.median(f))}  p95 {ms(pct(f, 95))}  "
        f"max {ms(max(f))}  ({len(f)} keystrokes; goal p95 ≤ 50 ms)"
    )
    fcpu = g["filter_cpu"]
    print(
        f"    CPU time of this process     p50 {ms(statistics.median(fcpu))}  p95 "
        f"{ms(pct(fcpu, 95))}  (wall minus CPU = waiting for the frame / other processes)"
    )
    print(
        f"    … daemon answer painted too  p50 {ms(statistics.median(fc))}  p95 {ms(pct(fc, 95))}  "
        f"(confirmation is debounced {CONFIRM_DELAY * 1000:.0f} ms)"
    )
    c = g["cursor"]
    print(f"  cursor move                    p50 {ms(statistics.median(c))}  p95 {ms(pct(c, 95))}")
    print(
        f"  mark all ({g['marked']:,}) + open preview {ms(g['mark_all_preview'])}   (preview of "
        f"{g['preview_items']:,} items)"
    )
    print(
        f"  RSS                            {g['rss']:.0f} MB (process before the run: {rss0:.0f} "
        "MB)"
    )

    base = []
    for n in [int(x) for x in args.baseline_rows.split(",") if x]:
        d = await bench_datatable(n, args.baseline_keys)
        base.append((n, d))
        df = d["filter"]
        print(f"\nDataTable baseline, MEASURED AT {n:,} rows")
        print(f"  first paint (add_rows)         {ms(d['first_paint'])}")
        print(
            f"  filter keystroke (clear+add)   p50 {ms(statistics.median(df))}  p95 "
            f"{ms(pct(df, 95))}  ({len(df)} keystrokes)"
        )
        print(f"  full rebuild                   {ms(d['rebuild_all'])}")
    if base:
        n, d = base[-1]
        scale = args.rows / n
        est_paint = d["first_paint"] * scale
        est_rebuild = d["rebuild_all"] * scale
        print(f"\nDataTable extrapolated linearly from {n:,} to {args.rows:,} rows (×{scale:.1f}):")
        print(
            f"  first paint ≈ {est_paint:.1f} s · full rebuild per keystroke ≈ {est_rebuild:.1f} s"
        )
        p95 = pct(f, 95)
        print(
            f"\nSpeed-up: first paint ×{est_paint / g['first_paint']:.0f} · filter p95 vs full "
            f"rebuild ×{est_rebuild / p95:.0f} (goal ≥ 50×)"
        )


if __name__ == "__main__":
    asyncio.run(main())
