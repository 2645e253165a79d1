"""Full and incremental ConnectWise pulls of the `large` data set against the simulator.

    /work/venv/bin/python benchmarks/sync_connectwise.py [--latency 0.025] [--naive-agreements 1000]
        [--database postgresql]

Prints requests, wall time, peak traced memory, the latency bound (requests × latency ÷
concurrency) and the ratio to it, the same pull by a naive sequential client (pageSize 1000, one
request at a time; run over the first N agreements and extrapolated unless --naive-agreements 0 is
given, which runs it in full), and an incremental pull after 1 % of the rows changed.

The sink only counts rows: writing the mirror is measured elsewhere, except with
``--database postgresql``, which adds a full sync into the mirror (pull + writes, as the daemon
runs it) on SQLite and on a throwaway PostgreSQL server, both printed. The simulator runs in a
separate process so its CPU time does not eat into the client's (in production they are
different machines).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing as mp
import random
import resource
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

from costrecon_daemon.psa.base import SyncChunk
from costrecon_daemon.psa.connectwise import ConnectWiseConnector, ConnectWiseSettings
from costrecon_daemon.psa.http import loads

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import backends  # noqa: E402

KEYS = dict(
    company="acme",
    public_key="pubkey0123456789",
    private_key="privkey0123456789",
    client_id="bench",
)


def _serve(conn, size: str, latency: float) -> None:  # child process
    from costrecon_daemon.sim.connectwise import start_connectwise_sim
    from costrecon_daemon.sim.dataset import generate

    async def main() -> None:
        running = await start_connectwise_sim(generate(size), **KEYS)
        sim = running.sim
        sim.knobs.latency = latency
        conn.send(running.base_url)
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "stop":
                break
            if cmd[0] == "change":  # ("change", fraction, seed): 1 % of items and of additions
                rng = random.Random(cmd[2])
                sim.advance_clock(120)  # changes land well after the full pull's cursor
                items = rng.sample(
                    sorted(sim.catalog.by_id), max(1, int(len(sim.catalog.by_id) * cmd[1]))
                )
                lines = rng.sample(
                    sorted(sim.addition_parent), max(1, int(len(sim.addition_parent) * cmd[1]))
                )
                for i in items:
                    sim.set_item_cost(i, sim.item_cost(i) + Decimal("0.01"))
                for line_id in lines:
                    sim.set_line_cost(line_id, sim.line_cost(line_id) + Decimal("0.01"))
                conn.send((len(items), len(lines)))
            if cmd[0] == "latency":
                sim.knobs.latency = cmd[1]
                conn.send(True)
        await running.close()

    asyncio.run(main())


class Counter:
    def __init__(self) -> None:
        self.items = self.contracts = self.lines = 0

    async def __call__(self, chunk: SyncChunk) -> None:
        self.items += len(chunk.items)
        self.contracts += len(chunk.contracts)
        self.lines += len(chunk.lines)

    def __str__(self) -> str:
        return f"{self.items} items, {self.contracts} agreements, {self.lines} additions"


async def naive(base_url: str, agreement_limit: int | None) -> tuple[int, int, float, int]:
    """One request at a time, pageSize 1000, page=N paging, no `fields`: what a first script
    does."""
    token = base64.b64encode(
        f"{KEYS['company']}+{KEYS['public_key']}:{KEYS['private_key']}".encode()
    ).decode()
    headers = {"Authorization": f"Basic {token}", "clientId": KEYS["client_id"]}
    requests = rows = 0
    started = time.perf_counter()
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        info = (await client.get(f"{base_url}/login/companyinfo/{KEYS['company']}")).json()
        requests += 1
        root = f"{base_url}/{info['Codebase']}apis/3.0"

        async def all_pages(path: str) -> list:
            nonlocal requests, rows
            out: list = []
            page = 1
            while True:
                resp = await client.get(root + path, params={"page": page, "pageSize": 1000})
                requests += 1
                batch = loads(resp.content)
                out.extend(batch)
                if len(batch) < 1000:
                    break
                page += 1
            rows += len(out)
            return out

        await all_pages("/procurement/catalog")
        agreements = await all_pages("/finance/agreements")
        if agreement_limit:
            agreements = agreements[:agreement_limit]
        for ag in agreements:
            await all_pages(f"/finance/agreements/{ag['id']}/additions")
    return requests, rows, time.perf_counter() - started, len(agreements)


async def run(args: argparse.Namespace) -> None:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(
        target=_serve, args=(child, args.size, args.latency), daemon=True
    )
    proc.start()
    base_url = parent.recv()
    settings = ConnectWiseSettings(
        site=base_url, **KEYS, concurrency=args.concurrency, page_size=1000
    )

    print(
        f"ConnectWise sim: {args.size} data set, {args.latency * 1000:.0f} ms injected latency, "
        f"concurrency {args.concurrency}; sink counts rows only (no mirror writes)"
    )

    connector = ConnectWiseConnector(settings)
    await connector.connect()
    sink = Counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before = connector.requests_made
    started = time.perf_counter()
    full = await connector.pull(None, sink)
    wall = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reqs = connector.requests_made - before
    bound = reqs * args.latency / args.concurrency
    print("\nfull pull (costrecon connector)")
    print(f"  rows:           {sink}")
    print(f"  requests:       {reqs}")
    print(f"  wall time:      {wall:.2f} s")
    print(f"  bound:          {bound:.2f} s  (requests × latency ÷ concurrency)")
    print(f"  ratio to bound: {wall / bound:.2f}×")
    print(
        f"  peak memory:    {rss_after / 1024:.1f} MB peak RSS of the client process "
        f"(+{(rss_after - rss_before) / 1024:.1f} MB during the pull; tracemalloc is not used "
        "because it slows the client down several-fold)"
    )

    # The simulator renders each record's JSON on first use and caches it, so the first pull also
    # pays the sim's rendering while its (single) event loop stalls every request in flight. A
    # second pull shows the connector against a server that is not the bottleneck.
    sink_w = Counter()
    before = connector.requests_made
    started = time.perf_counter()
    await connector.pull(None, sink_w)
    warm = time.perf_counter() - started
    warm_reqs = connector.requests_made - before
    warm_bound = warm_reqs * args.latency / args.concurrency
    print(
        f"  second full pull (sim caches warm): {warm_reqs} requests, {warm:.2f} s, "
        f"ratio to bound {warm / warm_bound:.2f}×"
    )

    n_req, n_rows, n_wall, n_agreements = await naive(base_url, args.naive_agreements or None)
    total_agreements = sink.contracts
    if args.naive_agreements and n_agreements < total_agreements:
        # Extrapolate only the per-agreement part, which is linear in agreements.
        fixed = 1 + -(-sink.items // 1000) + -(-total_agreements // 1000)
        per_agreement = (n_req - fixed) / n_agreements
        est_req = fixed + per_agreement * total_agreements
        est_wall = n_wall * est_req / n_req
        print(
            f"\nnaive sequential client: ran {n_agreements} of {total_agreements} agreements "
            f"({n_req} requests, {n_rows} rows, {n_wall:.2f} s); EXTRAPOLATED to all agreements:"
        )
        print(f"  requests ≈ {est_req:.0f}, wall time ≈ {est_wall:.1f} s")
    else:
        est_wall = n_wall
        print(
            f"\nnaive sequential client (full run): {n_req} requests, {n_rows} rows, {n_wall:.2f} s"
        )
    print(f"  speed-up of the connector over naive: {est_wall / wall:.1f}×")

    parent.send(("change", 0.01, 11))
    changed_items, changed_lines = parent.recv()
    sink2 = Counter()
    before = connector.requests_made
    started = time.perf_counter()
    await connector.pull(full.cursor, sink2)
    inc_wall = time.perf_counter() - started
    inc_reqs = connector.requests_made - before
    print(
        f"\nincremental pull after changing {changed_items} items and {changed_lines} additions (1 "
        "%), safe mode"
    )
    print(f"  rows received:  {sink2}")
    print(f"  requests:       {inc_reqs} ({inc_reqs / reqs:.2f} of full)")
    print(f"  wall time:      {inc_wall:.2f} s ({inc_wall / wall:.2f} of full)")
    await connector.aclose()

    # The opt-in variant that trusts agreement stamps, shown for comparison only: the simulator
    # does not bump agreement stamps on addition writes (the real API may not either), so it
    # misses the addition changes. That is why it is not the default.
    unsafe = ConnectWiseConnector(
        ConnectWiseSettings(
            site=base_url, **KEYS, concurrency=args.concurrency, trust_agreement_timestamps=True
        )
    )
    sink3 = Counter()
    started = time.perf_counter()
    await unsafe.pull(full.cursor, sink3)
    print("\nincremental pull, trust_agreement_timestamps = true (UNSAFE, for comparison)")
    print(f"  rows received:  {sink3}  <- additions changed without an agreement stamp are missed")
    print(f"  requests:       {unsafe.requests_made} ({unsafe.requests_made / reqs:.3f} of full)")
    print(f"  wall time:      {time.perf_counter() - started:.2f} s")
    await unsafe.aclose()

    if args.database == "postgresql":
        await mirror_sync_on_each_backend(base_url, args)

    parent.send(("stop",))
    proc.join(timeout=10)


async def mirror_sync(url: str, base_url: str, args: argparse.Namespace) -> None:
    from costrecon_daemon.mirror.sync import run_sync
    from costrecon_daemon.store import Store, migrate

    migrate(url)
    store = Store(url)
    connector = ConnectWiseConnector(
        ConnectWiseSettings(site=base_url, **KEYS, concurrency=args.concurrency, page_size=1000)
    )
    try:
        await connector.connect()
        started = time.perf_counter()
        out = await run_sync(store, connector, actor="bench", full=True)
        wall = time.perf_counter() - started
        again = time.perf_counter()
        await run_sync(store, connector, actor="bench", full=True)  # nothing changed: no writes
        rewall = time.perf_counter() - again
    finally:
        await connector.aclose()
        store.close()
    print(
        f"  {'PostgreSQL' if url.startswith('postgresql') else 'SQLite':<11} full sync "
        f"{out.items} items, {out.contracts} agreements, {out.lines} additions: {wall:.2f} s "
        f"({(out.items + out.contracts + out.lines) / wall:,.0f} rows/s); "
        f"unchanged re-sync {rewall:.2f} s"
    )


async def mirror_sync_on_each_backend(base_url: str, args: argparse.Namespace) -> None:
    """The pull written into the mirror, as the daemon's sync does, on both databases."""
    from tests.pgserver import running_server

    print("\nfull sync into the mirror (pull + database writes, one transaction per chunk)")
    with tempfile.TemporaryDirectory() as tmp:
        await mirror_sync(f"sqlite:///{Path(tmp) / 'costrecon.db'}", base_url, args)
    with running_server(durable=True) as server:
        url = backends.fresh_database(server)
        await mirror_sync(url, base_url, args)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", default="large")
    ap.add_argument("--latency", type=float, default=0.025)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument(
        "--naive-agreements",
        type=int,
        default=1000,
        help="agreements the naive client walks before extrapolating (0 = all)",
    )
    backends.add_option(ap)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
