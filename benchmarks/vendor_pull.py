"""A Pax8 cost pull: 2,000 products of which 400 are mapped, against the simulator with latency.

    /work/venv/bin/python benchmarks/vendor_pull.py [--products 2000] [--mapped 400]
        [--latency 0.05] [--concurrency 8] [--skip-naive]

Prints, for the real source and for a naive client in the same run: requests, wall time, and the
ratio to the bound. The bound is the larger of the latency bound (the token call and the first
product page must come one after the other; everything else can run ``concurrency`` at a time:
latency × (2 + ⌈(requests − 2) ÷ concurrency⌉)) and the rate-limit bound (Pax8 allows 1,000
requests a minute, token calls included, so requests beyond the first 1,000 wait for the window:
60 s × (requests − 1,000) ÷ 1,000). Goal for the source: ≤ 1.3× its bound.

The naive client is what a quick script does: page the products, then price every product one at
a time (no mapping), sleeping a second whenever Pax8 answers 429.

The simulator runs in a separate process so its CPU time does not eat into the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import time

import httpx

from costrecon_daemon.sim.dataset import generate_custom
from costrecon_daemon.vendors.sources import ProductRef
from costrecon_daemon.vendors.sources.pax8 import Pax8Source
from costrecon_daemon.vendors.sources.settings import Pax8Settings

RATE_LIMIT = 1000
PAGE = 200


def _dataset(mapped: int):
    # Filler items include Pax8-sold software every 7th item: enough items for `mapped` products.
    return generate_custom(items=mapped * 8 + 200, contracts=10, lines=10, seed=11)


def _serve(conn, products: int, mapped: int, latency: float) -> None:  # child process
    from costrecon_daemon.sim.knobs import Knobs
    from costrecon_daemon.sim.pax8 import Pax8Sim, start_pax8_sim

    async def main() -> None:
        ds = _dataset(mapped)
        sold = len(set(Pax8Sim(ds, extra_products=0).sold.values()))
        running = await start_pax8_sim(
            ds, extra_products=max(0, products - sold), knobs=Knobs(latency=latency)
        )
        pids = list(dict.fromkeys(running.sold.values()))[:mapped]
        refs = [(pid, running.by_id[pid]["sku"]) for pid in pids]
        conn.send(
            (
                running.base_url,
                running.client_id,
                running.client_secret,
                len(running.products),
                refs,
            )
        )
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "stop":
                break
            if cmd == "reset":
                # A fresh minute for the next client: the rate window is per credential.
                running.knobs._window.clear()
                running.tokens.clear()
                conn.send(running.request_stats.total)
                running.request_stats.reset()
        await running.close()

    asyncio.run(main())


def bound(requests: int, latency: float, concurrency: int) -> float:
    latency_bound = latency * (2 + math.ceil(max(0, requests - 2) / concurrency))
    rate_bound = 60.0 * max(0, requests - RATE_LIMIT) / RATE_LIMIT
    return max(latency_bound, rate_bound)


async def run_source(base_url: str, cid: str, secret: str, refs, concurrency: int):
    settings = Pax8Settings(
        client_id=cid, client_secret=secret, base_url=base_url, concurrency=concurrency
    )
    source = Pax8Source(settings)
    t0 = time.perf_counter()
    result = await source.pull(
        [ProductRef(f"item-{n}", sku=sku) for n, (_, sku) in enumerate(refs)]
    )
    wall = time.perf_counter() - t0
    await source.aclose()
    return result, wall


async def run_naive(base_url: str, cid: str, secret: str) -> tuple[int, float, int]:
    requests = 0
    throttled = 0
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=base_url + "/", timeout=30) as client:

        async def get(path: str, **kw):
            nonlocal requests, throttled
            while True:
                requests += 1
                resp = await client.get(path, **kw)
                if resp.status_code != 429:
                    return resp
                throttled += 1
                await asyncio.sleep(1.0)

        requests += 1
        token = (
            await client.post(
                "token",
                json={"client_id": cid, "client_secret": secret,
                      "audience": "https://api.pax8.com", "grant_type": "client_credentials"},
            )
        ).json()["access_token"]  # fmt: skip
        auth = {"Authorization": f"Bearer {token}"}
        ids: list[str] = []
        page, pages = 0, 1
        while page < pages:
            data = (await get("products", params={"page": page, "size": PAGE}, headers=auth)).json()
            ids += [p["id"] for p in data["content"]]
            pages = data["page"]["totalPages"]
            page += 1
        for pid in ids:
            await get(f"products/{pid}/pricing", headers=auth)
    return requests, time.perf_counter() - t0, throttled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=int, default=2000)
    ap.add_argument("--mapped", type=int, default=400)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()

    parent, child = mp.Pipe()
    proc = mp.Process(
        target=_serve, args=(child, args.products, args.mapped, args.latency), daemon=True
    )
    proc.start()
    base_url, cid, secret, total, refs = parent.recv()
    print(
        f"Pax8 simulator: {total} products, {len(refs)} mapped, "
        f"{args.latency * 1000:.0f} ms latency, {RATE_LIMIT} requests/min"
    )

    result, wall = asyncio.run(run_source(base_url, cid, secret, refs, args.concurrency))
    parent.send("reset")
    served = parent.recv()
    b = bound(result.requests, args.latency, args.concurrency)
    print(
        f"costrecon Pax8 source (concurrency {args.concurrency}): {result.requests} requests "
        f"(server saw {served}), {len(result.rows)} price rows, {len(result.not_found)} not found, "
        f"wall {wall:.2f} s, bound {b:.2f} s, ratio {wall / b:.2f}x"
    )

    if not args.skip_naive:
        requests, naive_wall, throttled = asyncio.run(run_naive(base_url, cid, secret))
        parent.send("reset")
        parent.recv()
        nb = bound(requests, args.latency, 1)
        print(
            f"naive client (one request at a time, prices every product): {requests} requests "
            f"({throttled} answered 429), wall {naive_wall:.2f} s, its own bound {nb:.2f} s; "
            f"the source is {naive_wall / wall:.1f}x faster"
        )
    parent.send("stop")
    proc.join(10)


if __name__ == "__main__":
    main()
