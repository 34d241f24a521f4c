"""Unit tests: gossip decisions (federation.gossip), driven with a fake clock: what
one round moves, decided from two frontiers, and when each peer is due."""

from __future__ import annotations

import random

import pytest

from federation.gossip import Gossip, first_fork, fork_window, plan

A, B, C = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
H1, H2 = b"\xaa" * 32, b"\xbb" * 32
ROSTER = [A, B, C]


# -- a round's plan -----------------------------------------------------------------


def test_equal_frontiers_settle_in_one_step() -> None:
    same = {A: (3, H1), B: (1, H2)}
    todo = plan(same, dict(same), ROSTER)
    assert todo.in_sync and not todo.swap_checkpoints(pulled=0)
    assert (todo.pull, todo.push, todo.suspect) == ({}, {}, [])
    assert not todo.fetch_forks and todo.give_forks == []


def test_each_side_gets_what_it_lacks_oldest_first() -> None:
    local = {A: (5, H1), B: (2, H1)}
    remote = {A: (3, H2), B: (4, H2), C: (1, H1)}
    todo = plan(local, remote, ROSTER)
    assert todo.pull == {B: 2, C: 0}
    assert todo.push == {A: 3}
    assert not todo.in_sync and todo.swap_checkpoints(pulled=0)
    # Feeds outside the roster are neither pulled nor pushed.
    assert plan(local, remote, [A]).pull == {}


def test_heads_that_differ_at_one_seq_are_suspects() -> None:
    todo = plan({A: (3, H1)}, {A: (3, H2)}, ROSTER)
    assert todo.suspect == [A] and not todo.in_sync


def test_a_pulled_feed_that_breaks_its_chain_becomes_a_suspect() -> None:
    todo = plan({A: (3, H1), B: (1, H1)}, {A: (3, H2), B: (4, H2), C: (2, H1)}, ROSTER)
    assert todo.suspects_after_broken_chain() == [A, B, C]


def test_a_frozen_feed_is_pulled_only_below_its_fork() -> None:
    remote = {A: (9, H2)}
    assert plan({A: (3, H1)}, remote, ROSTER, frozen={A: 4}).pull == {}
    assert plan({A: (2, H1)}, remote, ROSTER, frozen={A: 4}).pull == {A: 2}
    # A frozen feed with another head at the same seq is no suspect: it is proven.
    assert plan({A: (3, H1)}, {A: (3, H2)}, ROSTER, frozen={A: 3}).suspect == []


def test_fork_proofs_go_where_they_are_missing() -> None:
    todo = plan({}, {}, ROSTER, frozen={A: 2, B: 5}, remote_forks=[B, C])
    assert todo.fetch_forks  # the peer proves C, we do not
    assert todo.give_forks == [A]
    assert not plan({}, {}, ROSTER, frozen={A: 2}, remote_forks=[A]).fetch_forks


def test_a_fork_is_looked_for_in_a_window_below_the_common_head() -> None:
    assert fork_window(0, 10) is None and fork_window(10, 0) is None
    assert fork_window(10, 30) == (0, 10)
    assert fork_window(500, 400, depth=64) == (336, 64)
    assert first_fork({1: H1, 2: H1, 3: H1}, {2: H1, 3: H2, 4: H2}) == 3
    assert first_fork({1: H1}, {1: H1, 2: H2}) is None


# -- the schedule, on a fake clock ----------------------------------------------------


def gossip(**kw: float) -> Gossip:
    return Gossip(rng=random.Random(7), **kw)


def test_new_peers_are_due_now_and_keep_their_state_across_reloads() -> None:
    g = gossip(interval=30)
    g.set_peers(["u1", "u2"])
    assert g.due(0.0) == ["u1", "u2"] and g.next_wakeup(0.0) == 0.0
    g.start("u1")
    g.succeeded("u1", 0.0, wall=1_700_000_000.0)
    g.set_peers(["u1", "u3"])
    assert g.peers["u1"].last_contact == 1_700_000_000.0
    assert set(g.peers) == {"u1", "u3"} and g.due(0.0) == ["u3"]


def test_a_good_round_makes_the_peer_due_after_the_interval_with_jitter() -> None:
    g = gossip(interval=30, jitter=0.25)
    g.set_peers(["u"])
    seen = []
    now = 0.0
    for _ in range(50):
        g.start("u")
        assert g.due(now) == [] and g.next_wakeup(now) == 30  # running: not due
        g.succeeded("u", now)
        seen.append(g.peers["u"].next_due - now)
        now = g.peers["u"].next_due
        assert g.due(now) == ["u"]
    assert all(22.5 <= s <= 37.5 for s in seen) and len(set(seen)) > 1


def test_a_nudge_makes_healthy_peers_due_now_and_a_running_one_right_after() -> None:
    g = gossip(interval=30)
    g.set_peers(["idle", "busy"])
    for u in ("idle", "busy"):
        g.start(u)
        g.succeeded(u, 0.0)
    g.start("busy")
    g.nudge(5.0)
    assert g.due(5.0) == ["idle"] and g.next_wakeup(5.0) == 0.0
    g.succeeded("busy", 6.0)  # the round ran while entries arrived: due again at once
    assert "busy" in g.due(6.0)
    g.start("busy")
    g.succeeded("busy", 7.0)  # no nudge this time: the regular interval
    assert "busy" not in g.due(7.0)


def test_failures_back_off_doubling_up_to_the_cap_and_are_not_hurried() -> None:
    g = gossip(interval=40, jitter=0.0, max_backoff=50)
    g.set_peers(["u"])
    waits = []
    for _ in range(4):
        g.start("u")
        g.failed("u", 100.0, "refused")
        waits.append(g.peers["u"].next_due - 100.0)
    assert waits == [10.0, 20.0, 40.0, 50.0]
    assert g.peers["u"].failures == 4 and g.peers["u"].last_error == "refused"
    g.nudge(101.0)  # new entries do not hurry a failing peer
    assert g.due(101.0) == [] and g.next_wakeup(101.0) == pytest.approx(40.0)
    g.start("u")
    g.succeeded("u", 150.0)
    assert g.peers["u"].failures == 0 and g.peers["u"].last_error is None


def test_next_wakeup_never_exceeds_the_interval() -> None:
    g = gossip(interval=30)
    assert g.next_wakeup(0.0) == 30
    g.set_peers(["u"])
    for _ in range(20):
        g.start("u")
        g.failed("u", 0.0, "x")
    assert g.peers["u"].next_due > 30 and g.next_wakeup(0.0) == 30
