"""Connections a node does not keep (issue 9, finding 3), against real ``disco serve``
processes: a request head must arrive within the idle timeout (slowloris), an idle
connection is closed, the number of connections stays below the descriptor limit
(at the cap the oldest idle one makes room), and gossip outlives a flood."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.limits import BACKLOG, RESERVED_FDS
from tests.nodes import (
    Nodes,
    add_member,
    closed_by_peer,
    federation,
    node_group,
    raw_connect,
    read_answer,
    set_peers,
    wait_until,
)


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group(env={"DISCO_GOSSIP_INTERVAL": "1"}) as n:
        yield n


def _status_ok(url: str) -> bool:
    sock = raw_connect(url)
    try:
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_answer(sock)[0] == 200
    finally:
        sock.close()


def test_slow_request_heads_and_idle_connections_are_closed(tmp_path: Path,
                                                           nodes: Nodes) -> None:
    keeper = federation(tmp_path, ["Keeper", "Member"]).homes[0]
    node = nodes.start_one(keeper.path, args=["--idle-timeout", "1"])
    slow = []
    for i in range(200):  # slowloris: a head that never ends
        sock = raw_connect(node.url)
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow-%d: " % i)
        slow.append(sock)
    idle = [raw_connect(node.url) for _ in range(20)]  # connect, send nothing
    time.sleep(0.5)
    for sock in slow:  # a byte now and then does not keep a head alive
        try:
            sock.sendall(b"a")
        except OSError:
            pass
    assert all(closed_by_peer(s, timeout=10) for s in slow + idle)
    for sock in slow + idle:
        sock.close()
    assert _status_ok(node.url)


def test_at_the_cap_the_oldest_idle_connection_makes_room(tmp_path: Path,
                                                         nodes: Nodes) -> None:
    keeper = federation(tmp_path, ["Keeper", "Member"]).homes[0]
    node = nodes.start_one(keeper.path, args=["--max-connections", "20",
                                              "--idle-timeout", "60"])
    idle = [raw_connect(node.url) for _ in range(20)]
    time.sleep(0.3)
    assert _status_ok(node.url)  # the 21st connection is served
    assert closed_by_peer(idle[0], timeout=5)  # the oldest idle one was closed for it
    for sock in idle:
        sock.close()


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_a_flood_of_connections_never_exhausts_descriptors_nor_stops_gossip(
        tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Flooded", "Peer"])
    flooded, peer = fed.homes
    # 256 descriptors and no way up: the cap must land below them (512 asked).
    target, other = nodes.start(flooded.path, peer.path, preexec_fn=_low_descriptor_limit)
    cap = 256 - RESERVED_FDS - 3 * BACKLOG
    wait_until(lambda: any(f"limits: {cap} connections" in ln for ln in target.log_lines),
               timeout=10, what="the limits line")
    set_peers(flooded, [other.url])
    set_peers(peer, [target.url])
    flood = [raw_connect(target.url) for _ in range(400)]
    assert _status_ok(target.url)
    add_member(peer)  # new entries on the peer reach the flooded node by gossip
    wait_until(lambda: target.frontier().get(peer.lab_id.hex()) == 2, timeout=30,
               what="gossip to the flooded node")
    for sock in flood:
        sock.close()
    assert target.running and other.running
    assert "Traceback" not in target.log and "Too many open files" not in target.log
