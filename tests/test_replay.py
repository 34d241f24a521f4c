"""Replays (issue 9, finding 5), against real ``disco serve`` processes: a signed
request names the LAB it is meant for, so another node refuses it, and a node
refuses a request it already took even after a restart, a kill -9 included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.sync import encode_frontier, encode_wants
from tests.nodes import Nodes, add_member, federation, node_group, post, signed_headers

PULL = "/v1/sync/pull"


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group() as n:
        yield n


@pytest.mark.parametrize("stop", ["terminate", "kill"])
def test_a_request_taken_once_is_refused_after_a_restart(tmp_path: Path, nodes: Nodes,
                                                         stop: str) -> None:
    fed = federation(tmp_path, ["Keeper", "Member"])
    keeper, member_home = fed.homes
    add_member(keeper)
    node = nodes.start_one(keeper.path)
    body = encode_wants({keeper.lab_id: 0}, 100)
    headers = signed_headers(member_home.signer(), PULL, body, to=keeper.lab_id)
    first = post(node.url, PULL, body, headers)
    assert first.status == 200 and first.body
    if stop == "kill":
        node.kill()
    else:
        node.stop()
    again = nodes.start_one(keeper.path)
    replay = post(again.url, PULL, body, headers)
    assert replay.status == 401 and "replayed" in replay.error
    # A fresh request from the same member is fine.
    fresh = post(again.url, PULL, body, signed_headers(member_home.signer(), PULL, body,
                                                       to=keeper.lab_id))
    assert fresh.status == 200 and fresh.body == first.body


def test_a_request_signed_for_one_node_is_refused_by_another(tmp_path: Path,
                                                             nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Sender", "First", "Second"])
    sender, first, second = fed.homes
    a, b = nodes.start(first.path, second.path)
    body = encode_frontier({})
    path = "/v1/sync/frontier"
    meant_for_a = signed_headers(sender.signer(), path, body, to=first.lab_id)
    elsewhere = post(b.url, path, body, meant_for_a)
    assert elsewhere.status == 401 and "meant for LAB" in elsewhere.error
    # Claiming B in the header does not help: the target is part of the signature.
    relabelled = {**meant_for_a, "X-Disco-To": second.lab_id.hex()}
    forged = post(b.url, path, body, relabelled)
    assert forged.status == 401 and "does not verify" in forged.error
    assert post(a.url, path, body, meant_for_a).status == 200
