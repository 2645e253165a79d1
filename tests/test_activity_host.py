"""Actors in the activity log: the bare OS user when one daemon owns the database, ``user@host``
when several share it (a team install), never longer than the 64-character column."""

from __future__ import annotations

import pytest

from costrecon_daemon import activity


@pytest.fixture
def shared_log():
    activity.name_host("jump1")
    try:
        yield
    finally:
        activity.name_host(None)


def test_one_daemon_names_the_user_alone():
    assert activity.qualify("alice") == "alice"


def test_a_shared_log_names_user_and_host(shared_log):
    assert activity.qualify("alice") == "alice@jump1"
    # an approver qualified on another host keeps that host when the leader pushes for them
    assert activity.qualify("alice@jump2") == "alice@jump2"


def test_a_long_host_name_is_shortened_not_the_user(shared_log):
    activity.name_host("branch-office-jump-host-" + "x" * 60)
    actor = activity.qualify("technician.with.a.long.name")
    assert len(actor) == activity.ACTOR_WIDTH
    assert actor.startswith("technician.with.a.long.name@branch-office")
