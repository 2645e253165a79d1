"""The activity log's chain as an auditor relies on it: edits, forged re-hashes and a cut-off
tail are all detected (issue 13 item 8)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from costrecon_daemon import activity
from costrecon_daemon.store import Store

from .harness import migrated


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    migrated(url)
    s = Store(url)
    yield s
    s.close()
    activity.use_key(None)


def _append(store: Store, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        store.write_sync(
            lambda c, i=i: activity.append(
                c, actor="alice", action="cost.manual", subject=f"item {i}", before="1", after="2"
            )
        )


def _forge_entry(store: Store, entry_id: int, **values: str) -> None:
    """What someone with write access to the file does: edit, then recompute every plain hash."""
    sets = ", ".join(f"{k} = :{k}" for k in values)
    store.write_sync(
        lambda c: c.execute(
            text(f"UPDATE activity SET {sets} WHERE id = :id"), {**values, "id": entry_id}
        )
    )
    rows = store.read_sync(lambda c: c.execute(text("SELECT * FROM activity ORDER BY id")).all())
    prev = activity.GENESIS
    for r in rows:
        digest = activity._digest(
            r.id,
            r.at if isinstance(r.at, str) else activity._at_text(r.at),
            r.actor,
            r.action,
            r.subject,
            r.before,
            r.after,
            r.details,
            prev,
        )
        store.write_sync(
            lambda c, r=r, prev=prev, digest=digest: c.execute(
                text("UPDATE activity SET prev_hash = :p, hash = :h WHERE id = :id"),
                {"p": prev, "h": digest, "id": r.id},
            )
        )
        prev = digest


def test_an_edited_entry_breaks_the_chain(store):
    _append(store, 5)
    store.write_sync(lambda c: c.execute(text("UPDATE activity SET after = '9' WHERE id = 3")))
    result = store.read_sync(activity.verify)
    assert not result.ok and result.first_broken == 3


def test_without_a_key_a_recomputed_chain_passes_but_with_a_key_it_is_caught(store, tmp_path):
    _append(store, 3)
    _forge_entry(store, 2, after="0.01")
    # The plain chain cannot tell: this is the weakness the key exists for.
    assert store.read_sync(activity.verify).ok

    key = activity.load_key(tmp_path / "activity.key", next_entry=store.read_sync(activity.next_id))
    assert key.since == 4
    activity.use_key(key)
    _append(store, 3, start=3)
    assert store.read_sync(activity.verify).ok
    head = store.read_sync(
        lambda c: c.execute(text("SELECT hash FROM activity WHERE id = 6")).scalar()
    )
    assert head.startswith(activity.KEYED) and len(head) == 64
    # A daemon without the key says so rather than passing a keyed log.
    activity.use_key(None)
    result = store.read_sync(activity.verify)
    assert not result.ok and "activity_key_file" in result.reason
    activity.use_key(key)
    # Someone edits a keyed entry and recomputes plain hashes: no key, so it is caught.
    _forge_entry(store, 5, after="0.01")
    result = store.read_sync(activity.verify)
    assert not result.ok and result.first_broken == 4 and "signed from entry 4" in result.reason


def test_a_tail_cut_after_an_export_is_detected_against_its_checkpoint(store, tmp_path):
    activity.use_key(activity.load_key(tmp_path / "activity.key", next_entry=1))
    _append(store, 6)
    cp = store.read_sync(activity.checkpoint)
    assert cp.id == 6 and activity.checkpoint_is_genuine(cp)
    store.write_sync(lambda c: c.execute(text("DELETE FROM activity WHERE id > 4")))
    assert store.read_sync(activity.verify).ok  # consistent on its own...
    result = store.read_sync(lambda c: activity.verify(c, checkpoint=cp))
    assert not result.ok and "removed from the end" in result.reason
    forged = activity.Checkpoint(cp.id, cp.hash, "0" * 64)
    assert not activity.checkpoint_is_genuine(forged)


def test_the_key_file_is_created_private_and_a_readable_one_is_refused(tmp_path):
    path = tmp_path / "cfg" / "activity.key"
    key = activity.load_key(path, next_entry=7)
    assert (path.stat().st_mode & 0o777) == 0o600 and len(key.secret) == 64 and key.since == 7
    assert activity.load_key(path, next_entry=99) == key  # the pin is kept, not moved
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        activity.load_key(path, next_entry=1)
