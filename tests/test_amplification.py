"""A request's work is bounded by its distinct content (issue 9, finding 6), against
real ``disco serve`` processes: copies of one checkpoint or fork proof cost nothing
more than one, a conflicting checkpoint is stored once however often it comes, and
``/v1/status`` lists each conflict once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.checkpoints import CheckpointBook
from node.home import Home
from node.lab import LabNode
from protocol import canonical, merkle
from protocol.checkpoint import Checkpoint, origin_for, sign_checkpoint
from protocol.entry import decode_entry, sign_entry
from protocol.sync import make_fork_proof
from tests.nodes import (
    Nodes,
    add_member,
    federation,
    feed_raws,
    node_group,
    now_us,
    signed_post,
    stream,
)

CHECKPOINTS = "/v1/sync/checkpoints"


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group() as n:
        yield n


def test_a_conflicting_checkpoint_is_stored_once(tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Keeper", "Liar"])
    keeper, liar_home = fed.homes
    add_member(liar_home)
    liar = liar_home.signer()
    node = nodes.start_one(keeper.path)
    raws = feed_raws(liar_home, liar.public_key)
    assert signed_post(node.url, "/v1/sync/push", stream(raws), liar).status == 200
    fid = fed.genesis.federation_id
    rewritten = sign_checkpoint(Checkpoint(origin_for(fid, liar.public_key), len(raws),
                                           b"\x55" * 32), liar).encode()
    honest = sign_checkpoint(Checkpoint(origin_for(fid, liar.public_key), 1,
                                        _root_of_first(keeper, liar.public_key)),
                             liar).encode()

    # 2000 copies in one request: refused before any work (one per author).
    for note in (rewritten, honest):
        copies = canonical.encode({"want": [], "give": [[liar.public_key, note]] * 2000})
        reply = signed_post(node.url, CHECKPOINTS, copies, liar)
        assert reply.status == 400 and "one checkpoint per author" in reply.error
    # The same conflict in three requests: kept once, listed once.
    once = canonical.encode({"want": [liar.public_key] * 2000,
                             "give": [[liar.public_key, rewritten]]})
    for _ in range(3):
        reply = signed_post(node.url, CHECKPOINTS, once, liar)
        assert reply.status == 200
        assert len(canonical.decode(reply.body)) <= 1  # each wanted author answered once
    assert node.status()["checkpoint_conflicts"] == [liar.public_key.hex()]
    node.stop()
    with LabNode.open(keeper) as lab:
        conflicts = CheckpointBook(lab.store, fid).conflicts()
    assert conflicts == [(liar.public_key, rewritten)]


def _root_of_first(home: Home, author: bytes) -> bytes:
    """The Merkle root of a one-entry feed: the leaf hash of its entry."""
    return merkle.leaf_hash(decode_entry(feed_raws(home, author)[0]).hash)


def test_copies_of_a_fork_proof_count_once(tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Keeper", "Liar"])
    keeper, liar_home = fed.homes
    add_member(liar_home)
    liar = liar_home.signer()
    node = nodes.start_one(keeper.path)
    first, second = (decode_entry(r) for r in feed_raws(liar_home, liar.public_key))
    other = sign_entry(liar, federation_id=fed.genesis.federation_id, seq=2, prev=first.hash,
                       ts_us=now_us(), kind="member.added", body={"handle": "bo", "name": "Bo"})
    proof = make_fork_proof(second, other).encode()
    reply = signed_post(node.url, "/v1/sync/forks/push", canonical.encode([proof] * 2), liar)
    assert reply.status == 200 and reply.value() == {"stored": 1}
    many = canonical.encode([proof] * 100)
    reply = signed_post(node.url, "/v1/sync/forks/push", many, liar)
    assert reply.status == 200 and reply.value() == {"stored": 0}  # held: passed over
    assert [f["author"] for f in node.status()["forks"]] == [liar.public_key.hex()]
    third = sign_entry(liar, federation_id=fed.genesis.federation_id, seq=2,
                       prev=first.hash, ts_us=now_us(), kind="member.added",
                       body={"handle": "cy", "name": "Cy"})
    distinct = [make_fork_proof(second, third).encode(), proof,
                make_fork_proof(other, third).encode()]
    reply = signed_post(node.url, "/v1/sync/forks/push", canonical.encode(distinct), liar)
    assert reply.status == 400 and "at most one per LAB" in reply.error
