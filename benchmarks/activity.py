"""The Activity view during an MSP-size push: folded and batched vs one row per entry, in one run.

    /work/venv/bin/python benchmarks/activity.py [--lines 120000] [--conflicts 3000] [--items 6705]

The fake daemon journals a change set of --lines contract lines. While j/k are pressed in the
Activity view, a feeder logs what costrecond logs for such a push: one ``push.line.conflict``
entry per conflict spread over the run, progress events twice a second, then one ``push.item``
per item and ``push.done`` in one burst (journal.finish_change_set). Printed: key → repaint
(p50/p95/max; goal p95 ≤ 50 ms), how many times live entries were drawn, table rows, RSS. The
baseline is the view as it was before issue 14 (a DataTable row added per entry, as it arrives),
fed the same entries in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid import CPU_SAMPLES, Painter, key_to_paint, pct, rss_mb  # noqa: E402
from tests.fake_client import FakeClient, all_views_ready, make_app, settle  # noqa: E402

from costrecon_tui.screens.activity import ActivityView  # noqa: E402

SIZE = (80, 24)


def naive_add_entry(self: ActivityView, entry: dict[str, Any]) -> None:
    """The view before issue 14: every entry its own row, drawn when it arrives."""
    if not self.loaded:
        return
    key = f"e{entry['id']}"
    self.rows[key] = entry
    self.table.add_row(*self._cells(key), key=key)
    self.flushes += 1
    self._update_line()


async def feed(client: FakeClient, cs_id: int, args: argparse.Namespace, seconds: float) -> None:
    ticks = int(seconds / 0.05)
    per_tick = max(1, args.conflicts // ticks)
    sent = done = 0
    step_lines = args.lines // ticks
    for tick in range(ticks):
        for _ in range(per_tick):
            if sent >= args.conflicts:
                break
            sent += 1
            client._add_activity(
                "push.line.conflict",
                f"ITEM-{sent % args.items:05d} line {200000 + sent}",
                "12.5000",
                "13.1250",
                {"change_set_id": cs_id, "step_id": sent, "message": "negotiated line"},
                actor="costrecond",
            )
        done += step_lines
        if tick % 10 == 0:
            client.emit(
                "push",
                {"change_set_id": cs_id, "done": done, "total": args.lines, "status": "pushing"},
            )
        await asyncio.sleep(0.05)
    for n in range(args.items):
        client._add_activity(
            "push.item",
            f"ITEM-{n:05d}",
            "10.0000",
            "10.5000",
            {"change_set_id": cs_id, "done": args.lines // args.items},
            actor="costrecond",
        )
    client._add_activity(
        "push.done",
        f"change set {cs_id}",
        None,
        None,
        {"change_set_id": cs_id, "status": "partial", "done": args.lines - sent, "conflict": sent},
        actor="costrecond",
    )
    client.emit(
        "push",
        {"change_set_id": cs_id, "done": args.lines, "total": args.lines, "status": "partial"},
    )


async def run(args: argparse.Namespace, *, naive: bool) -> dict[str, Any]:
    original = ActivityView.add_entry
    if naive:
        ActivityView.add_entry = naive_add_entry  # type: ignore[method-assign]
    try:
        client = FakeClient(record_calls=False)
        app = make_app(client)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: all_views_ready(app))
            await pilot.press("2")
            view = app.activity_view
            cs_id = client.add_big_change_set(args.lines)
            await settle(pilot, lambda: view.table.row_count >= 6, timeout=30)
            await pilot.pause(0.5)
            await pilot.press("f")  # paused: j/k move the cursor, new rows do not
            base = view.flushes
            feeder = asyncio.create_task(feed(client, cs_id, args, args.seconds))
            samples: list[float] = []
            CPU_SAMPLES.clear()
            t_end = None
            key = "k"
            while t_end is None or time.perf_counter() < t_end:
                before = view.table.cursor_row
                samples.append(
                    await key_to_paint(
                        app,
                        Painter,
                        key,
                        lambda b=before: view.table.cursor_row != b,
                    )
                )
                key = "j" if key == "k" else "k"
                await asyncio.sleep(0.03)
                if feeder.done() and t_end is None:
                    t_end = time.perf_counter() + 2.0  # keys through the final burst too
            return {
                "keys": samples,
                "cpu": list(CPU_SAMPLES),
                "draws": view.flushes - base,
                "rows": view.table.row_count,
                "rss": rss_mb(),
            }
    finally:
        ActivityView.add_entry = original  # type: ignore[method-assign]


def report(name: str, r: dict[str, Any]) -> None:
    k = [s * 1000 for s in r["keys"]]
    print(
        f"{name:<22} key → repaint p50 {statistics.median(k):6.1f} ms  p95 {pct(k, 95):6.1f} ms"
        f"  max {max(k):6.1f} ms  ({len(k)} keys) · {r['draws']:>5} draws · "
        f"{r['rows']:>5} rows · RSS {r['rss']:.0f} MB"
    )
    c = [s * 1000 for s in r["cpu"]]
    print(
        f"{'':<22}   CPU time of this process p50 {statistics.median(c):6.1f} ms"
        f"  p95 {pct(c, 95):6.1f} ms  (wall minus CPU = other processes, frame pacing)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=120_000)
    p.add_argument("--conflicts", type=int, default=3000)
    p.add_argument("--items", type=int, default=6705)
    p.add_argument("--seconds", type=float, default=8.0, help="how long the conflicts trickle")
    args = p.parse_args()
    Painter.install()
    print(
        f"Activity during a {args.lines:,}-line push: {args.conflicts:,} conflict entries over "
        f"{args.seconds:.0f} s, then {args.items:,} push.item entries at once ({SIZE[0]}×{SIZE[1]})"
    )
    report("folded + batched", asyncio.run(run(args, naive=False)))
    report("row per entry (before)", asyncio.run(run(args, naive=True)))
    print("goal: key → repaint p95 ≤ 50 ms; rows stay one per change set")


if __name__ == "__main__":
    main()
