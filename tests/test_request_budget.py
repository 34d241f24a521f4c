"""What a request may cost a node (issue 9, findings 2, 7 and 10), against real
``disco serve`` processes: the sender is authenticated from the headers before any
body is read, bodies in flight share one budget (503 with Retry-After beyond it),
a body must arrive in time and match its signed hash, and what a request asks for
is checked before the answer starts."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.auth import HEADER_BODY, HEADER_LAB
from protocol.keys import Signer
from protocol.sync import MAX_SEQ, MEDIA_TYPE, encode_wants, frame
from tests.nodes import (
    Nodes,
    add_member,
    federation,
    feed_raws,
    node_group,
    post,
    raw_connect,
    read_answer,
    request_head,
    signed_headers,
    signed_post,
    stream,
)

PUSH = "/v1/sync/push"
PULL = "/v1/sync/pull"
MiB = 1024 * 1024


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group() as n:
        yield n


def test_a_stranger_gets_401_before_any_body_is_read(tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Keeper", "Member"])
    keeper, member = fed.homes
    node = nodes.start_one(keeper.path)
    stranger = Signer.generate()
    # In a member's name, with the stranger's signature, announcing 8 MiB bodies.
    headers = {**signed_headers(stranger, PUSH, b"x" * 8 * MiB, to=keeper.lab_id),
               HEADER_LAB: member.lab_id.hex()}
    before = node.memory_kb(peak=True)
    socks = []
    for _ in range(100):
        sock = raw_connect(node.url)
        sock.sendall(request_head(PUSH, headers, 8 * MiB) + b"x" * 64 * 1024)
        socks.append(sock)
    answers = [read_answer(s) for s in socks]  # answered with 8 MiB - 64 KiB unsent
    for sock in socks:
        sock.close()
    assert {status for status, _, _ in answers} == {401}
    assert all(b"does not verify" in body for _, _, body in answers)
    grown_mb = (node.memory_kb(peak=True) - before) / 1024
    assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"
    assert node.status()["frontier"][keeper.lab_id.hex()]["seq"] == 1


def test_bodies_in_flight_share_one_budget(tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Keeper", "Member"])
    keeper, member_home = fed.homes
    member = member_home.signer()
    node = nodes.start_one(keeper.path, args=["--max-body", str(MiB),
                                              "--body-budget", str(2 * MiB)])
    bodies = [bytes([i]) * MiB for i in range(4)]
    held = []
    for body in bodies[:2]:  # two members' pushes that send their bodies slowly
        sock = raw_connect(node.url)
        sock.sendall(request_head(PUSH, signed_headers(member, PUSH, body, to=keeper.lab_id),
                                  len(body)) + body[:1000])
        held.append(sock)
    time.sleep(0.5)  # let the node take both heads in
    third = raw_connect(node.url)
    third.sendall(request_head(PUSH, signed_headers(member, PUSH, bodies[2],
                                                    to=keeper.lab_id), len(bodies[2])))
    status, headers, body = read_answer(third)
    third.close()
    assert status == 503 and headers["retry-after"] == "1", (status, body)
    assert b"busy" in body
    # The held bodies arrive whole: each is answered (not a member's valid entries:
    # 400), and the budget is free again.
    for sock, body in zip(held, bodies[:2], strict=True):
        sock.sendall(body[1000:])
        status, _, answer = read_answer(sock)
        sock.close()
        assert status == 400, answer
    reply = signed_post(node.url, PUSH, bodies[3], member, to=keeper.lab_id)
    assert reply.status == 400 and "entry stream" in reply.error


def test_a_body_must_arrive_in_time_and_within_its_size(tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Keeper", "Member"])
    keeper, member_home = fed.homes
    member = member_home.signer()
    node = nodes.start_one(keeper.path, args=["--max-body", str(MiB), "--body-timeout", "1"])
    body = b"\x00" * 10_000
    slow = raw_connect(node.url)
    slow.sendall(request_head(PUSH, signed_headers(member, PUSH, body, to=keeper.lab_id),
                              len(body)) + body[:100])
    status, _, answer = read_answer(slow)  # nothing more is sent
    slow.close()
    assert status == 408 and b"not received within" in answer

    big = b"\x00" * (MiB + 1)
    announced = raw_connect(node.url)
    announced.sendall(request_head(PUSH, signed_headers(member, PUSH, big, to=keeper.lab_id),
                                   len(big)))
    status, _, answer = read_answer(announced)
    announced.close()
    assert status == 413 and b"over" in answer
    # Chunked: no length announced, cut off once past the limit.
    chunked = raw_connect(node.url)
    chunked.sendall(request_head(PUSH, signed_headers(member, PUSH, big, to=keeper.lab_id),
                                 None))
    try:
        for i in range(0, len(big), 64 * 1024):
            part = big[i:i + 64 * 1024]
            chunked.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        chunked.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the node may close as soon as it has answered
    status, _, answer = read_answer(chunked)
    chunked.close()
    assert status == 413 and b"over" in answer


def test_a_body_that_is_not_the_signed_one_is_401_and_stores_nothing(
        tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Keeper", "Member"])
    keeper, member_home = fed.homes
    add_member(member_home)
    member = member_home.signer()
    node = nodes.start_one(keeper.path)
    good = stream(feed_raws(member_home, member.public_key))
    headers = signed_headers(member, PUSH, good, to=keeper.lab_id)
    swapped = post(node.url, PUSH, good[:-1] + b"\x00", headers)
    assert swapped.status == 401 and "does not match its signed hash" in swapped.error
    headers[HEADER_BODY] = base64.b64encode(b"\x00" * 32).decode()
    assert post(node.url, PUSH, good, headers).status == 401
    assert member.public_key.hex() not in node.status()["frontier"]


def test_a_pull_past_the_largest_seq_is_refused_before_the_answer(
        tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Keeper", "Member"])
    keeper, member_home = fed.homes
    member = member_home.signer()
    node = nodes.start_one(keeper.path)
    for after, limit in [(MAX_SEQ - 10, 5000), (2**63 - 1, 1), (2**64 - 1, 10)]:
        reply = signed_post(node.url, PULL, encode_wants({keeper.lab_id: after}, limit),
                            member, to=keeper.lab_id)
        assert reply.status == 400, (after, reply)
        assert "wants" in reply.error
    reply = signed_post(node.url, PULL, encode_wants({keeper.lab_id: 0}, 10), member,
                        to=keeper.lab_id)
    assert reply.status == 200 and reply.content_type == MEDIA_TYPE and reply.body
    assert node.running


def test_a_push_of_millions_of_empty_items_is_refused(tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Keeper", "Member"])
    keeper, member_home = fed.homes
    member = member_home.signer()
    node = nodes.start_one(keeper.path)
    body = frame(b"") * (4 * MiB)  # 8 MiB: four million empty items
    reply = signed_post(node.url, PUSH, body, member, to=keeper.lab_id)
    assert reply.status == 413 and "more than 5000 entries" in reply.error
    assert member.public_key.hex() not in node.status()["frontier"]
    assert node.status()["lab_id"] == keeper.lab_id.hex()
