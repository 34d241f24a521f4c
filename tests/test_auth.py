"""Unit tests: signed node-to-node requests (node.auth): the headers checked before
any body is read, the body against its signed hash, and replays refused even by a
node that restarted (the memory of seen signatures is a file)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from node.auth import (
    HEADER_BODY,
    HEADER_LAB,
    HEADER_SIGNATURE,
    HEADER_TIME,
    HEADER_TO,
    SKEW_MS,
    AuthError,
    BodyHash,
    ReplayMemory,
    RequestVerifier,
    sign_request,
)
from protocol.keys import Signer
from protocol.sync import hash_body

NOW = 1_700_000_000_000
PATH = "/v1/sync/pull"
BODY = b"\x81\xa4some\xa4body"
MEMBER = Signer.from_seed(b"m" * 32)
OTHER = Signer.from_seed(b"o" * 32)
STRANGER = Signer.from_seed(b"s" * 32)
HERE = OTHER.public_key
"""The receiving node is OTHER's."""
ROSTER = {MEMBER.public_key: "Member", OTHER.public_key: "Other"}


def verifier(memory: ReplayMemory | None = None) -> RequestVerifier:
    return RequestVerifier(lambda lab: (lab,) if lab in ROSTER else None, HERE,
                           memory or ReplayMemory())


def signed(signer: Signer = MEMBER, ts: int = NOW, body: bytes = BODY, method: str = "POST",
           to: bytes = HERE) -> dict[str, str]:
    return sign_request(signer, method, PATH, body, ts, to)


def refused(v: RequestVerifier, headers: dict[str, str], *, path: str = PATH,
            method: str = "POST", now: int = NOW) -> AuthError:
    with pytest.raises(AuthError) as info:
        v.check(method, path, headers, now)
    return info.value


def test_a_signed_request_names_its_lab_its_target_and_its_body() -> None:
    headers = signed()
    assert set(headers) == {HEADER_LAB, HEADER_TO, HEADER_TIME, HEADER_BODY, HEADER_SIGNATURE}
    assert headers[HEADER_LAB] == MEMBER.public_key.hex()
    assert headers[HEADER_TO] == HERE.hex()
    assert headers[HEADER_TIME] == str(NOW)
    assert base64.b64decode(headers[HEADER_BODY]) == hash_body(BODY)
    assert len(base64.b64decode(headers[HEADER_SIGNATURE])) == 64
    assert verifier().check("POST", PATH, headers, NOW) == (MEMBER.public_key,
                                                           hash_body(BODY))
    # The method is signed upper-case, whatever the caller wrote.
    lower = sign_request(OTHER, "post", PATH, BODY, NOW, HERE)
    assert verifier().check("POST", PATH, lower, NOW)[0] == OTHER.public_key


@pytest.mark.parametrize("missing", [HEADER_LAB, HEADER_TO, HEADER_TIME, HEADER_BODY,
                                     HEADER_SIGNATURE])
def test_missing_headers_are_401(missing: str) -> None:
    headers = signed()
    del headers[missing]
    e = refused(verifier(), headers)
    assert (e.status, "unsigned request" in e.reason) == (401, True)
    assert refused(verifier(), {}).status == 401
    assert refused(verifier(), {**headers, missing: ""}).status == 401


@pytest.mark.parametrize("header,value", [
    (HEADER_LAB, "not hex"),
    (HEADER_TO, "zz"),
    (HEADER_TIME, "soon"),
    (HEADER_TIME, "1.5e12"),
    (HEADER_SIGNATURE, "***"),
    (HEADER_SIGNATURE, "YWJj=x"),
    (HEADER_SIGNATURE, base64.b64encode(b"x" * 10).decode()),
    (HEADER_BODY, "***"),
    (HEADER_BODY, base64.b64encode(b"x" * 31).decode()),
])
def test_malformed_headers_are_401(header: str, value: str) -> None:
    e = refused(verifier(), {**signed(), header: value})
    assert e.status == 401 and "malformed" in e.reason


def test_a_lab_outside_the_roster_is_403() -> None:
    e = refused(verifier(), signed(STRANGER))
    assert e.status == 403 and "not a member" in e.reason
    # Also when it claims a short or long id.
    assert refused(verifier(), {**signed(), HEADER_LAB: MEMBER.public_key.hex()[:62]}
                   ).status == 403


def test_a_request_meant_for_another_node_is_401() -> None:
    elsewhere = signed(to=MEMBER.public_key)  # signed for the member's own node
    e = refused(verifier(), elsewhere)
    assert e.status == 401 and "meant for LAB" in e.reason
    # Naming this node in the header does not help: the target is signed.
    e = refused(verifier(), {**elsewhere, HEADER_TO: HERE.hex()})
    assert e.status == 401 and "does not verify" in e.reason


@pytest.mark.parametrize("offset", [SKEW_MS + 1, -SKEW_MS - 1, 10 * 60 * 1000, -3_600_000])
def test_timestamps_outside_the_window_are_401(offset: int) -> None:
    e = refused(verifier(), signed(ts=NOW + offset))
    assert e.status == 401 and "timestamp" in e.reason


@pytest.mark.parametrize("offset", [SKEW_MS, -SKEW_MS, 0])
def test_timestamps_at_the_edge_of_the_window_pass(offset: int) -> None:
    assert verifier().check("POST", PATH, signed(ts=NOW + offset), NOW)[0] == MEMBER.public_key


def test_bad_signatures_are_401() -> None:
    v = verifier()
    good = signed()
    cases = [
        # signed by another key (a member's or a stranger's) in the member's name
        {**signed(OTHER), HEADER_LAB: MEMBER.public_key.hex()},
        {**signed(STRANGER), HEADER_LAB: MEMBER.public_key.hex()},
        # the time or the body hash changed after signing
        {**good, HEADER_TIME: str(NOW + 1)},
        {**good, HEADER_BODY: base64.b64encode(hash_body(b"other")).decode()},
    ]
    for headers in cases:
        e = refused(v, headers)
        assert e.status == 401 and "does not verify" in e.reason
    # the path or method changed after signing
    assert refused(v, good, path="/v1/sync/push").status == 401
    assert refused(v, good, method="GET").status == 401
    # and none of that used up the good request
    assert v.check("POST", PATH, good, NOW)[0] == MEMBER.public_key


def test_the_body_is_checked_against_its_signed_hash_as_it_arrives() -> None:
    check = BodyHash(hash_body(BODY))
    for i in range(0, len(BODY), 3):
        check.update(BODY[i:i + 3])
    check.check()
    assert check.size == len(BODY)
    for body in (BODY + b"!", BODY[:-1], b""):
        other = BodyHash(hash_body(BODY))
        other.update(body)
        with pytest.raises(AuthError) as info:
            other.check()
        assert info.value.status == 401 and "does not match" in info.value.reason


def test_a_replayed_request_is_401() -> None:
    v = verifier()
    headers = signed()
    assert v.check("POST", PATH, headers, NOW)[0] == MEMBER.public_key
    e = refused(v, headers, now=NOW + 1000)
    assert e.status == 401 and "replayed" in e.reason
    # The same request a millisecond later is a new request.
    assert v.check("POST", PATH, signed(ts=NOW + 1), NOW + 1)[0] == MEMBER.public_key
    # Once outside the window, a replay is refused for its age.
    assert refused(v, headers, now=NOW + SKEW_MS + 1).status == 401


def test_a_replay_is_refused_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "seen.sqlite3"
    first = ReplayMemory(path, NOW)
    headers = signed()
    verifier(first).check("POST", PATH, headers, NOW)
    first.close()  # the node stops (or is killed: each signature is committed at once)
    again = ReplayMemory(path, NOW + 1000)
    e = refused(verifier(again), headers, now=NOW + 1000)
    assert e.status == 401 and "replayed" in e.reason
    again.close()
    # Signatures whose window has passed are forgotten at the next start.
    later = ReplayMemory(path, NOW + SKEW_MS + 1)
    assert not later.seen(MEMBER.public_key, base64.b64decode(headers[HEADER_SIGNATURE]))
    later.close()


def test_a_flooding_member_is_told_to_slow_down_and_others_are_not() -> None:
    v = verifier(ReplayMemory(per_lab=10))
    for i in range(10):
        v.check("POST", PATH, signed(ts=NOW + i), NOW + i)
    e = refused(v, signed(ts=NOW + 10), now=NOW + 10)
    assert e.status == 429 and "slow down" in e.reason
    # Nothing was forgotten to make room: the old requests are still replays.
    assert refused(v, signed(ts=NOW), now=NOW + 10).reason == "replayed request"
    # Another member is not affected.
    assert v.check("POST", PATH, signed(OTHER, ts=NOW + 10), NOW + 10)[0] == OTHER.public_key
    # Once the window has passed, the member's old requests make room.
    later = NOW + 11 + SKEW_MS
    assert v.check("POST", PATH, signed(ts=later), later)[0] == MEMBER.public_key
