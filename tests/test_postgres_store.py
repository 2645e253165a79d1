"""The store on both backends: what a writer commits a reader sees exactly (Money, times, the
hash-chained activity log, events), and two daemons writing to one database keep the activity
chain whole and the event ids gap-free, as one daemon does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, select, text

from costrecon_daemon import activity, events
from costrecon_daemon.db import CatalogItem, upsert
from costrecon_daemon.store import Store, alembic_config, head_revision, migrate

D = Decimal


def _items(n: int, cost: str) -> list[dict]:
    return [
        {
            "psa_id": str(1000 + i),
            "identifier": f"M365-{i:04d}",
            "name": f"Microsoft 365 Business Premium ({i})",
            "cost": D(cost) + D(i) / 10000,
            "currency": "USD",
        }
        for i in range(n)
    ]


def test_full_alembic_upgrade_downgrade_and_upgrade_on_postgresql(pg_url):
    migrate(pg_url)
    cfg = alembic_config(pg_url)
    command.downgrade(cfg, "base")
    store = Store(pg_url)
    try:
        tables = store.read_sync(
            lambda c: c.execute(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
            ).scalar()
        )
        assert tables == 1  # only alembic_version is left
    finally:
        store.close()
    migrate(pg_url)
    store = Store(pg_url)
    try:
        rev = store.read_sync(
            lambda c: c.execute(text("SELECT version_num FROM alembic_version")).scalar()
        )
        assert rev == head_revision()
    finally:
        store.close()


@pytest.mark.slow
def test_two_daemons_starting_together_on_an_empty_postgresql_migrate_it_once(pg_url):
    """Three daemon starts at once, as three processes (Alembic is per-process state)."""
    code = "import sys; from costrecon_daemon.store import migrate; migrate(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", code, pg_url], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    failures = []
    for p in starts:
        _, err = p.communicate(timeout=120)
        if p.returncode != 0:
            failures.append(err.strip().splitlines()[-3:])
    assert failures == []
    store = Store(pg_url)
    try:
        versions = store.read_sync(
            lambda c: c.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        )
        assert versions == [head_revision()]
    finally:
        store.close()


def test_a_written_catalogue_reads_back_to_the_ten_thousandth_with_its_activity_and_events(
    database_url,
):
    migrate(database_url)
    store = Store(database_url)
    try:

        def sync(conn, rows):
            upsert(
                conn,
                CatalogItem,
                rows,
                key=["psa_id"],
                update=["identifier", "name", "cost", "currency", "synced_at"],
                only_if_changed=["identifier", "name", "cost", "currency"],
            )
            activity.append(
                conn,
                actor="alice",
                action="sync.catalogue",
                subject=f"{len(rows)} items",
                before=None,
                after={"total": str(sum(r["cost"] for r in rows))},
            )

        store.write_sync(sync, _items(2500, "22.0001"))
        changed = _items(2500, "22.0001")
        changed[7]["cost"] = D("23.9999")
        store.write_sync(sync, changed)

        def cost_of(conn, psa_id):
            return conn.execute(
                select(CatalogItem.cost).where(CatalogItem.psa_id == psa_id)
            ).scalar_one()

        assert store.read_sync(cost_of, "1007") == D("23.9999")
        assert store.read_sync(cost_of, "1008") == D("22.0009")
        assert (
            store.read_sync(
                lambda c: c.execute(select(func.count()).select_from(CatalogItem)).scalar()
            )
            == 2500
        )

        log = store.read_sync(lambda c: activity.query(c, subject="2500 ITEMS"))
        assert [e["actor"] for e in log] == ["alice", "alice"]
        # 2500 × 22.0001 + Σi/10⁴ (312.375) + the one edit (23.9999 − 22.0008)
        assert log[0]["after"] == '{"total":"55314.6241"}'
        assert store.read_sync(activity.verify).to_json() == {
            "ok": True,
            "checked": 2,
            "first_broken": None,
            "reason": None,
        }
        feed = store.read_sync(events.after, 0)
        assert [e["kind"] for e in feed] == ["activity", "activity"]
        assert feed[0]["id"] < feed[1]["id"]
        assert feed[1]["data"]["subject"] == "2500 items"
        assert feed[1]["at"].endswith("Z")
    finally:
        store.close()


def test_tampering_with_an_entry_is_found_on_either_backend(database_url):
    migrate(database_url)
    store = Store(database_url)
    try:
        for n in range(3):
            store.write_sync(
                lambda c, n=n: activity.append(
                    c, actor="bob", action="cost.approve", subject=f"item {n}", after="12.5000"
                )
            )
        store.write_sync(
            lambda c: c.execute(text("UPDATE activity SET after = '1.0000' WHERE id = 2"))
        )
        result = store.read_sync(activity.verify)
        assert (result.ok, result.first_broken) == (False, 2)
    finally:
        store.close()


def test_two_daemons_writing_at_once_keep_one_chain_and_gap_free_event_ids(database_url):
    """Two Stores on one database stand for two daemons on two hosts."""
    migrate(database_url)
    stores = [Store(database_url), Store(database_url)]
    seen: list[int] = []
    done = threading.Event()

    def follow() -> None:
        # A client tailing /v1/events?since=N: every id must arrive, none skipped.
        last = 0
        reader = stores[1]
        while True:
            finished = done.is_set()
            for e in reader.read_sync(events.after, last):
                seen.append(e["id"])
                last = e["id"]
            if finished:
                return

    def daemon(store: Store, host: str) -> None:
        for n in range(40):
            store.write_sync(
                lambda c, n=n: activity.append(
                    c, actor=f"tech@{host}", action="cost.edit", subject=f"{host} {n}"
                )
            )

    tail = threading.Thread(target=follow)
    tail.start()
    writers = [
        threading.Thread(target=daemon, args=(s, host))
        for s, host in zip(stores, ("jump1", "jump2"), strict=True)
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    tail.join()
    try:
        result = stores[0].read_sync(activity.verify)
        assert (result.ok, result.checked) == (True, 80)
        assert sorted(seen) == seen and len(seen) == 80
        assert seen == list(range(seen[0], seen[0] + 80))
    finally:
        for s in stores:
            s.close()
