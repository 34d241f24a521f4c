"""Nodes as separate ``disco serve`` processes on 127.0.0.1, syncing over HTTP.

Every test starts real node processes (tests/nodes.py) and stops all of them when
it ends, pass or fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from federation.genesis import Lab, create_genesis
from node import scheduler
from node.client import PeerError, sync_round
from node.home import Home
from node.lab import LabNode
from node.limits import Limits
from node.service import NodeService, now_ms
from protocol.entry import MAX_ENTRY_SIZE, Entry, decode_entry, sign_entry
from protocol.keys import Signer
from protocol.sync import MEDIA_TYPE, EntryStreamDecoder, encode_frontier, encode_wants
from tests.conftest import Cli
from tests.nodes import (
    CONTRIBUTION,
    NodeProcess,
    Nodes,
    Reply,
    add_member,
    author_contributions,
    fake_peer,
    federation,
    feed_raws,
    feed_seqs,
    in_parallel,
    node_group,
    now_us,
    post,
    set_peers,
    signed_headers,
    signed_post,
    stream,
    sync_once,
    wait_until,
)

PUSH = "/v1/sync/push"
PULL = "/v1/sync/pull"


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group() as group:
        yield group


def _view(node: NodeProcess) -> dict[str, Any]:
    """What must not change when a peer's input is refused."""
    s = node.status()
    return {"frontier": s["frontier"], "state_digest": s["state_digest"], "forks": s["forks"]}


def _converged(procs: list[NodeProcess], want: dict[str, int]) -> list[dict[str, Any]]:
    """The statuses once every node holds ``want`` ({lab: seq}) with the same heads and
    digest; else raise AssertionError saying how far each node is (for wait_until)."""
    statuses = [p.status() for p in procs]
    frontiers = [{a: h["seq"] for a, h in s["frontier"].items()} for s in statuses]
    heads = {tuple(sorted((a, h["head"]) for a, h in s["frontier"].items()))
             for s in statuses}
    digests = {s["state_digest"] for s in statuses}
    if any(f != want for f in frontiers) or len(heads) != 1 or len(digests) != 1:
        raise AssertionError([(p.home.name, f, s["state_digest"][:8])
                              for p, f, s in zip(procs, frontiers, statuses, strict=True)])
    return statuses


def _verify_cli(cli: Cli, homes: list[Path]) -> None:
    results = in_parallel([lambda h=h: cli("verify", home=h, check=False) for h in homes])
    for home, r in zip(homes, results, strict=True):
        assert r.returncode == 0, f"disco verify {home}: {r.stdout}\n{r.stderr}"


# -- 1. five nodes in a line -----------------------------------------------------------


def test_five_nodes_in_a_line_converge_while_all_write(tmp_path: Path, nodes: Nodes,
                                                       cli: Cli) -> None:
    per_node = 200
    fed = federation(tmp_path, ["A", "B", "C", "D", "E"])
    homes = fed.homes
    procs = nodes.start(*(h.path for h in homes))
    for i, home in enumerate(homes):
        neighbours = [procs[j].url for j in (i - 1, i + 1) if 0 <= j < len(procs)]
        set_peers(home, neighbours)

    def write(home: Home) -> int:
        add_member(home)
        # In batches, with pauses, so that gossip runs while every node writes.
        return author_contributions(home, per_node, batch=25, pause=0.15)

    assert in_parallel([lambda h=h: write(h) for h in homes]) == [per_node] * 5

    want = {h.lab_id.hex(): 2 + per_node for h in homes}
    statuses = wait_until(lambda: _converged(procs, want), timeout=90,
                          what="five nodes to converge")
    assert all(s["forks"] == [] and s["invalid"] == 0 and s["pending"] == 0
               for s in statuses)

    nodes.stop_all()
    assert [p.proc.returncode for p in procs] == [0] * 5
    every_seq = list(range(1, 2 + per_node + 1))
    for home in homes:
        assert feed_seqs(home) == {h.lab_id.hex(): every_seq for h in homes}, home.name
    heads = set()
    for home in homes:
        with LabNode.open(home) as node:
            heads.add(tuple(sorted(node.frontier().items())))
            # The digest the node served equals one recomputed from nothing.
            assert node.rebuild().digest().hex() == statuses[0]["state_digest"], home.name
    assert len(heads) == 1
    _verify_cli(cli, [h.path for h in homes])


# -- 2. kill -9 in the middle of a big pull ------------------------------------------


def test_node_killed_mid_sync_recovers_and_verifies(tmp_path: Path, nodes: Nodes,
                                                    cli: Cli) -> None:
    total = 20_002  # lab.joined, member.added and 20 000 contributions
    fed = federation(tmp_path, ["Big", "Fresh"])
    big, fresh = fed.homes
    add_member(big)
    author_contributions(big, total - 2, batch=1000)
    big_hex = big.lab_id.hex()

    source = nodes.start_one(big.path)
    set_peers(fresh, [source.url])
    sink = nodes.start_one(fresh.path)

    def pulling(node: NodeProcess, above: int) -> int:
        seq = node.frontier().get(big_hex, 0)
        assert seq < total, "the pull finished before a node could be killed"
        return seq if seq > above else 0

    # The pulling node dies (kill -9) in the middle of the stream.
    got = wait_until(lambda: pulling(sink, 0), timeout=60, interval=0.1,
                     what="the pull to start")
    sink.kill()
    assert sink.proc.returncode == -9
    sink = nodes.start_one(fresh.path)

    # Then, while the restarted node pulls again, the node it pulls from dies.
    wait_until(lambda: pulling(sink, got), timeout=60, interval=0.1,
               what="the pull to resume")
    source.kill()
    wait_until(lambda: any(f"sync with {source.url} failed" in line
                           for line in sink.log_lines), timeout=30,
               what="the node to notice its peer is gone")
    assert sink.running
    source = nodes.start_one(big.path)
    set_peers(fresh, [source.url])

    want = {big_hex: total, fresh.lab_id.hex(): 1}
    statuses = wait_until(lambda: _converged([source, sink], want), timeout=90,
                          what="the restarted nodes to converge")
    assert statuses[0]["state_digest"] == statuses[1]["state_digest"]
    assert not any("Traceback" in line or "failed here" in line for line in sink.log_lines), (
        sink.log)
    nodes.stop_all()
    _verify_cli(cli, [fresh.path, big.path])
    assert feed_seqs(fresh)[big_hex] == list(range(1, total + 1))


# -- 3. a peer sending bad entries --------------------------------------------------------


def _resigned(signer: Signer, entry: Entry, **change: Any) -> Entry:
    fields = {"federation_id": entry.header.federation_id, "seq": entry.seq,
              "prev": entry.header.prev, "ts_us": entry.header.ts_us, "kind": entry.kind,
              "body": {"member": "ana", "stream": "love", "minutes": 7}}
    return sign_entry(signer, **{**fields, **change})


def _flip_signature(raw: bytes) -> bytes:
    entry = decode_entry(raw)
    at = 1 + len(entry.header_bytes) + 2  # fixarray, header, bin 8 marker and length
    assert raw[at:at + 64] == entry.signature
    return raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1:]


def test_bad_pushes_get_a_reason_and_change_nothing(tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Receiver", "Sender"])
    receiver_home, sender_home = fed.homes
    add_member(receiver_home)
    add_member(sender_home)
    author_contributions(sender_home, 3)
    sender = sender_home.signer()
    raws = feed_raws(sender_home, sender.public_key)          # seq 1..5
    node = nodes.start_one(receiver_home.path)
    assert signed_post(node.url, PUSH, stream(raws[:2]), sender).value()["stored"] == 2
    before = _view(node)
    assert before["frontier"][sender.public_key.hex()]["seq"] == 2

    third = decode_entry(raws[2])
    bad_signature, bad_fourth = _flip_signature(raws[2]), _flip_signature(raws[3])
    non_canonical = b"\xdc\x00\x03" + raws[2][1:]  # array 16 where a fixarray is canonical
    assert raws[2][0] == 0x93
    other = create_genesis("Other federation", labs=[Lab(sender.public_key, "Sender")],
                           units={"JXC": 2}, credit_limits={"JXC": 1}, now_us=1)
    foreign = _resigned(sender, third, federation_id=other.federation_id)
    stranger = Signer.generate()
    strangers = sign_entry(stranger, federation_id=third.header.federation_id, seq=1,
                           prev=None, ts_us=now_us(), kind=CONTRIBUTION,
                           body={"member": "ana", "stream": "care", "minutes": 5})
    oversize_item = stream([b"\x00" * (MAX_ENTRY_SIZE + 1)])

    cases: list[tuple[str, bytes, int, str]] = [
        ("garbage", b"\xc1\xc1 this is not msgpack", 400, "entry stream item 0"),
        ("not a bin item", b"\x81\xa1a\x01", 400, "entry stream item 0"),
        ("truncated", stream(raws[2:3])[:-3], 400, "ends inside item"),
        ("cut after a header", stream(raws[2:3]) + b"\xc5\x01", 400, "ends inside item 1"),
        ("not an entry", stream([b"hello"]), 400, "trailing bytes"),
        ("non-canonical entry", stream([non_canonical]), 400, "not canonical"),
        ("wrong signature", stream([bad_signature]), 400, "signature does not verify"),
        ("valid then bad", stream([raws[2], bad_fourth]), 400, "signature does not verify"),
        ("another federation", stream([foreign.raw]), 400, "another federation"),
        ("unknown author", stream([strangers.raw]), 400, "not a member"),
        ("gap in seq", stream([raws[3]]), 400, "does not follow"),
        ("prev mismatch", stream([_resigned(sender, third, prev=b"\x00" * 32).raw]), 400,
         "prev does not match"),
        ("oversize item", oversize_item, 413, "exceeds"),
        ("oversize body", b"\x00" * (Limits().max_body + 1), 413, "over"),
    ]
    for name, body, status, reason in cases:
        reply = signed_post(node.url, PUSH, body, sender)
        assert (reply.status, reply.content_type) == (status, "application/json"), (
            name, reply)
        assert reason in reply.error, (name, reply.error)
        assert _view(node) == before, name

    # The node goes on serving: a normal sync round from the sender moves seq 3..5.
    [result] = sync_once(sender_home, node.url)
    assert result.pushed == 3
    assert node.frontier()[sender.public_key.hex()] == 5
    with_more = signed_post(node.url, PUSH, stream(raws), sender)
    assert with_more.status == 200 and with_more.value()["stored"] == 0
    assert not any("Traceback" in line for line in node.log_lines), node.log


# -- 4. unauthenticated and unauthorised requests -----------------------------------------


def _assert_refused(reply: Reply, status: int, reason: str) -> None:
    assert reply.status == status, reply
    assert reply.content_type == "application/json", reply
    assert reason in reply.error
    assert len(reply.body) < 300  # only the error, no entries


def test_requests_must_be_signed_by_a_member(tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Keeper", "Member"])
    keeper, member_home = fed.homes
    add_member(keeper)
    node = nodes.start_one(keeper.path)
    member = member_home.signer()
    stranger = Signer.generate()
    body = encode_wants({keeper.lab_id: 0, member.public_key: 0}, 100)

    _assert_refused(post(node.url, PULL, body), 401, "unsigned request")
    _assert_refused(post(node.url, "/v1/sync/frontier", encode_frontier({})), 401,
                    "unsigned request")
    wrong_key = signed_headers(stranger, PULL, body, to=keeper.lab_id)
    wrong_key["X-Disco-Lab"] = member.public_key.hex()
    _assert_refused(post(node.url, PULL, body, wrong_key), 401, "does not verify")
    other_body = signed_headers(member, PULL, encode_wants({keeper.lab_id: 1}, 100),
                                to=keeper.lab_id)
    _assert_refused(post(node.url, PULL, body, other_body), 401, "does not match")
    other_path = signed_headers(member, "/v1/sync/frontier", body, to=keeper.lab_id)
    _assert_refused(post(node.url, PULL, body, other_path), 401, "does not verify")
    stale = signed_headers(member, PULL, body, ts_ms=now_ms() - 10 * 60 * 1000,
                           to=keeper.lab_id)
    _assert_refused(post(node.url, PULL, body, stale), 401, "timestamp")
    garbled = {**signed_headers(member, PULL, body, to=keeper.lab_id),
               "X-Disco-Signature": "not base64!"}
    _assert_refused(post(node.url, PULL, body, garbled), 401, "malformed")
    _assert_refused(signed_post(node.url, PULL, body, stranger), 403, "not a member")

    once = signed_headers(member, PULL, body, to=keeper.lab_id)
    first = post(node.url, PULL, body, once)
    assert first.status == 200 and first.content_type == MEDIA_TYPE
    entries = [decode_entry(raw) for raw in EntryStreamDecoder().feed(first.body)]
    assert [(e.author, e.seq) for e in entries] == [(keeper.lab_id, 1), (keeper.lab_id, 2)]
    _assert_refused(post(node.url, PULL, body, once), 401, "replayed")

    wrong_type = {**signed_headers(member, PULL, body, to=keeper.lab_id),
                  "Content-Type": "application/json"}
    reply = post(node.url, PULL, body, wrong_type)
    assert reply.status == 415 and "Content-Type" in reply.error


# -- 5. a fork ------------------------------------------------------------------------------


def test_a_fork_is_proven_everywhere_and_freezes_the_feed(tmp_path: Path, nodes: Nodes,
                                                          cli: Cli) -> None:
    fed = federation(tmp_path, ["X", "Z", "Y", "Liar"])
    x_home, z_home, y_home, liar_home = fed.homes
    x, z, y = procs = nodes.start(x_home.path, z_home.path, y_home.path)
    # X - Z - Y: X and Y reach each other only through Z.
    cli("peer", "add", z.url, home=x_home.path)
    cli("peer", "add", x.url, home=z_home.path)
    cli("peer", "add", y.url, home=z_home.path)
    cli("peer", "add", z.url, home=y_home.path)

    liar = liar_home.signer()
    liar_hex = liar.public_key.hex()
    add_member(liar_home)
    honest = feed_raws(liar_home, liar.public_key)
    for node in (x, y):
        assert signed_post(node.url, PUSH, stream(honest), liar).value()["stored"] == 2
    wait_until(lambda: all(p.frontier().get(liar_hex) == 2 for p in procs), timeout=30,
               what="the liar's honest entries everywhere")

    head = decode_entry(honest[-1])
    fid = head.header.federation_id

    def at_3(minutes: int) -> Entry:
        return sign_entry(liar, federation_id=fid, seq=3, prev=head.hash, ts_us=now_us(),
                          kind=CONTRIBUTION,
                          body={"member": "ana", "stream": "care", "minutes": minutes})

    a, b = at_3(60), at_3(90)
    assert signed_post(x.url, PUSH, stream([a.raw]), liar).status == 200
    assert signed_post(y.url, PUSH, stream([b.raw]), liar).status == 200

    def proven() -> list[dict[str, Any]] | None:
        statuses = [p.status() for p in procs]
        for s in statuses:
            if [(f["author"], f["seq"]) for f in s["forks"]] != [(liar_hex, 3)]:
                return None
            assert sorted(s["forks"][0]["hashes"]) == sorted([a.hash.hex(), b.hash.hex()])
        return statuses

    statuses = wait_until(proven, timeout=60, what="the fork proof on every node")
    # Frozen at seq 2 on every node: the ledgers agree although the heads differ.
    wait_until(lambda: len({p.status()["state_digest"] for p in procs}) == 1, timeout=20,
               what="equal digests")
    assert statuses[0]["frontier"][liar_hex]["seq"] == 3

    after = sign_entry(liar, federation_id=fid, seq=4, prev=a.hash, ts_us=now_us(),
                       kind=CONTRIBUTION, body={"member": "ana", "stream": "care",
                                                "minutes": 1})
    for node in procs:
        reply = signed_post(node.url, PUSH, stream([a.raw, after.raw]), liar)
        assert reply.status == 200 and reply.value()["stored"] == 0, reply
        assert node.frontier()[liar_hex] == 3

    for home in (x_home, z_home, y_home):
        text = cli("status", home=home.path).stdout
        assert f"FORK       {liar_hex} at seq 3" in text, text
    for node in procs:
        assert any("fork" in line.lower() and liar_hex in line for line in node.log_lines), (
            node.home.name, node.log)
    nodes.stop_all()
    for home in (x_home, z_home, y_home):
        assert feed_seqs(home)[liar_hex] == [1, 2, 3]


# -- 6. already in sync: one request of O(feeds) bytes ------------------------------------


def test_nodes_in_sync_settle_it_in_one_small_request(tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Near", "Far", "Third", "Fourth"])
    near, far, third, fourth = fed.homes
    for home in fed.homes:
        add_member(home)
    with LabNode.open(near) as node:
        for home in (third, fourth):
            assert node.ingest(feed_raws(home, home.lab_id)).stored == 2
    peer = nodes.start_one(far.path)

    first, second = sync_once(near, peer.url, rounds=2)
    assert (first.pushed, first.pulled, first.in_sync) == (6, 2, False)
    feeds = len(fed.homes)
    assert second.requests == 1
    assert second.in_sync is True
    assert (second.pushed, second.pulled, second.forks) == (0, 0, 0)
    assert second.frontier_bytes <= 100 * feeds + 64
    with LabNode.open(near) as node:
        ours = {a.hex(): s for a, (s, _) in node.frontier().items()}
    assert peer.frontier() == ours == {h.lab_id.hex(): 2 for h in fed.homes}


# -- a peer that dies in the middle of a stream; local failures in a round ---------------


async def test_a_peer_cut_off_mid_stream_fails_the_round_cleanly(tmp_path: Path) -> None:
    fed = federation(tmp_path, ["Puller", "Dying"])
    puller, dying = fed.homes
    add_member(dying)
    author_contributions(dying, 1198, batch=600)
    raws = feed_raws(dying, dying.lab_id)
    data = stream(raws)

    async def frontier(request: web.Request) -> web.Response:
        head = decode_entry(raws[-1])
        return web.Response(body=encode_frontier({dying.lab_id: (head.seq, head.hash)}),
                            content_type=MEDIA_TYPE)

    async def pull(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": MEDIA_TYPE})
        await response.prepare(request)
        await response.write(data[:len(data) * 2 // 3])   # then the peer dies
        assert request.transport is not None
        request.transport.abort()
        return response

    service = NodeService.open(puller, puller.signer())
    try:
        async with fake_peer(dying.lab_id, {"/v1/sync/frontier": frontier,
                                            "/v1/sync/pull": pull}) as url:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(PeerError, match="cut off"):
                    await sync_round(service, session, url)
    finally:
        service.close()
    seqs = feed_seqs(puller)[dying.lab_id.hex()]
    assert 500 <= len(seqs) < len(raws)          # whole batches that arrived were kept
    assert seqs == list(range(1, len(seqs) + 1))
    with LabNode.open(puller) as node:
        assert node.verify() == []


async def test_a_local_failure_in_a_round_does_not_drop_the_peer(tmp_path: Path) -> None:
    fed = federation(tmp_path, ["Here", "There"])
    url = "http://127.0.0.1:9"
    service = NodeService.open(fed.homes[0], fed.homes[0].signer())
    lines: list[str] = []
    service.log = lines.append
    service.gossip.set_peers([url])
    service.node.store.close()  # the store fails under the round: a local failure
    loop = asyncio.get_running_loop()
    try:
        async with aiohttp.ClientSession() as session:
            service.gossip.start(url)
            await scheduler.run_round(service, session, url)
    finally:
        service.writer.shutdown(wait=True)
        service.verifier.memory.close()
    peer = service.gossip.peers[url]
    assert peer.failures == 1 and not peer.running and peer.last_error
    assert loop.time() < peer.next_due < loop.time() + service.gossip.interval
    assert any("failed here" in line for line in lines)
