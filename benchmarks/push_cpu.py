"""Per-request CPU of the push path, in-process (issue 14): the ConnectWise connector's guard
reads and writes against the simulator served from another process, and the journal's writes on
a real SQLite file, each timed in CPU seconds of this process (``time.process_time``), so a
loaded machine gives the same figure as a quiet one.

    python benchmarks/push_cpu.py [--lines 6000] [--profile]

``--profile`` prints the top functions by own time (cProfile) for each part.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing as mp
import os
import pstats
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.push import tenant  # noqa: E402

from costrecon_daemon.psa.base import LineKey  # noqa: E402
from costrecon_daemon.psa.connectwise import ConnectWiseConnector, ConnectWiseSettings  # noqa: E402


def serve(conn: object) -> None:
    from costrecon_daemon.sim.connectwise import ConnectWiseSim
    from costrecon_daemon.sim.serve import ServedApp

    ds = tenant()
    sim = ConnectWiseSim(ds)
    with ServedApp(sim.app) as served:
        lines = [(ln.id, ln.contract_id) for ln in ds.lines]
        conn.send(  # type: ignore[attr-defined]
            (served.base_url, sim.company, sim.public_key, sim.private_key, sim.client_id, lines)
        )
        conn.recv()  # type: ignore[attr-defined]  # until told to stop


async def push_lines(cw: ConnectWiseConnector, keys: list[LineKey], value: Decimal) -> None:
    sem = asyncio.Semaphore(16)

    async def group(ks: list[LineKey]) -> None:
        async with sem:
            await cw.read_line_costs(ks)
            await asyncio.gather(*(cw.write_line_cost(k, value) for k in ks))

    by: dict[str, list[LineKey]] = {}
    for k in keys:
        by.setdefault(k.contract_psa_id, []).append(k)
    await asyncio.gather(*(group(g) for g in by.values()))


def journal_part(tmp: Path, n_lines: int, per_round: int = 16, per_contract: int = 14) -> None:
    """The journal's writes of a push of ``n_lines`` lines (plus their items), as the worker
    makes them: rounds of 16 groups, each round one transaction with the next groups' ``sending``
    marks and the last groups' outcomes."""
    import importlib
    import sqlite3
    import tracemalloc

    jr = importlib.import_module("costrecon_daemon.changes.journal")
    from costrecon_daemon.changes.push import _write_batch
    from costrecon_daemon.store import Store, migrate

    tmp.mkdir()
    db = tmp / "j.db"
    url = f"sqlite:///{db}"
    migrate(url)
    items = max(1, n_lines // 10)
    contracts = max(1, n_lines // per_contract)
    stamp = "2026-01-01T00:00:00.000000Z"
    raw = sqlite3.connect(db)
    raw.executemany(
        "INSERT INTO catalog_items (id, psa_id, identifier, name, kind, cost, currency, active, "
        "gone, synced_at) VALUES (?, ?, ?, ?, 'item', 100000, 'USD', 1, 0, ?)",
        [(i, str(i), f"SKU-{i}", f"Item {i}", stamp) for i in range(1, items * 4 + 1)],
    )
    raw.executemany(
        "INSERT INTO contract_lines (psa_id, contract_psa_id, item_psa_id, kind, description, "
        "quantity, unit_cost, currency, active, gone, synced_at) "
        "VALUES (?, ?, ?, 'addition', '', 10000, 100000, 'USD', 1, 0, ?)",
        [(str(100000 + k), str(k % contracts), str(k % items + 1), stamp) for k in range(n_lines)],
    )
    raw.execute(
        "INSERT INTO change_sets (id, created_at, actor, kind, policy, status, preview) "
        "VALUES (1, ?, 'bench', 'apply', 'all', 'pushing', '{}')",
        (stamp,),
    )
    steps = [(1, i, "item", str(i), None, None, 100000, 105000) for i in range(1, items + 1)]
    steps += [
        (1, k % items + 1, "line", str(100000 + k), str(k % contracts), "addition", 100000, 105000)
        for k in range(n_lines)
    ]
    raw.executemany(
        "INSERT INTO change_steps (change_set_id, item_id, target, target_psa_id, "
        "contract_psa_id, line_kind, before, after, currency, status, attempts, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'USD', 'pending', 0, '" + stamp + "')",
        steps,
    )
    raw.commit()
    raw.close()
    store = Store(url)
    try:
        tracemalloc.start()
        rows = store.read_sync(jr.open_steps, 1)
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if per_round == 1:
            print(
                f"open steps: {len(rows)} held in {held / 1e6:.1f} MB ({held / len(rows):.0f} "
                f"bytes a step), {peak / 1e6:.1f} MB at the peak of loading them"
            )
        groups: dict[str, list[Any]] = {}
        for r in rows:
            groups.setdefault(
                "items" if r.target == "item" else r.contract_psa_id or "", []
            ).append(r)
        glist = [g for k, g in groups.items() if k != "items"]
        t0 = time.process_time()
        last: list[Any] = []
        for start in range(0, len(glist), per_round):
            now = [s for g in glist[start : start + per_round] for s in g]
            ops = [([s.id for s in now], [])] + [([], [(s, "done", s.after, None)]) for s in last]
            store.write_sync(_write_batch, ops, 1, "bench", False)
            last = now
        store.write_sync(
            _write_batch, [([], [(s, "done", s.after, None) for s in last])], 1, "bench", False
        )
        cpu = time.process_time() - t0
        print(
            f"journal: {n_lines} lines in {len(glist)} groups, {per_round} group(s) a commit: "
            f"{cpu:.2f} s CPU = {cpu * 1000 / n_lines:.3f} ms/line"
        )
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=6000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--journal-lines", type=int, default=0, help="also time the journal's writes")
    args = ap.parse_args()
    if args.journal_lines:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for per_round in (1, 4, 16):
                journal_part(Path(tmp) / str(per_round), args.journal_lines, per_round)
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=serve, args=(child,), daemon=True)
    proc.start()
    base, company, pub, priv, client, lines = parent.recv()
    keys = [LineKey(str(i), str(c), "addition") for i, c in lines[: args.lines]]

    async def run(value: Decimal) -> float:
        cw = ConnectWiseConnector(
            ConnectWiseSettings(base, company, pub, priv, client, concurrency=8)
        )
        await cw.connect()
        try:
            t0, u0 = time.process_time(), os.times()
            prof = cProfile.Profile() if args.profile else None
            if prof:
                prof.enable()
            await push_lines(cw, keys, value)
            if prof:
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            u1 = os.times()
            print(f"  user {u1.user - u0.user:.2f} s, system {u1.system - u0.system:.2f} s")
            return time.process_time() - t0
        finally:
            await cw.aclose()

    cpu = asyncio.run(run(Decimal("10.25")))
    print(
        f"connector: {len(keys)} lines (guard read per agreement + one PATCH each): "
        f"{cpu:.2f} s CPU = {cpu * 1000 / len(keys):.3f} ms/line"
    )
    parent.send("stop")
    proc.join(10)


if __name__ == "__main__":
    main()
