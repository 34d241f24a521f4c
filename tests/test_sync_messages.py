"""Unit tests: the sync messages (protocol.sync): frontiers, wants, entry streams,
fork proofs and the signed-request message."""

from __future__ import annotations

import msgpack
import pytest

from protocol import canonical
from protocol.entry import MAX_ENTRY_SIZE, Entry, decode_entry, sign_entry
from protocol.errors import (
    BadSignatureError,
    DecodeError,
    NonCanonicalError,
    OversizeError,
    SchemaError,
    VerificationError,
)
from protocol.keys import Signer
from protocol.sync import (
    MAX_MESSAGE,
    MAX_SEQ,
    REQUEST_PREFIX,
    EntryStreamDecoder,
    ForkProof,
    decode_entry_stream,
    decode_fork_proof,
    decode_frontier,
    decode_wants,
    encode_frontier,
    encode_wants,
    frame,
    hash_body,
    make_fork_proof,
    request_message,
)

NOW = 1_700_000_000_000
PATH = "/v1/sync/pull"
BODY = b"\x81\xa4some\xa4body"
FID = bytes(range(32))
MEMBER = Signer.from_seed(b"m" * 32)
OTHER = Signer.from_seed(b"o" * 32)
TO = b"\x07" * 32


def test_request_message_binds_every_part() -> None:
    digest = hash_body(BODY)
    base = request_message("POST", PATH, NOW, digest, TO)
    assert base.startswith(REQUEST_PREFIX)
    assert request_message("post", PATH, NOW, digest, TO) == base
    others = {request_message("GET", PATH, NOW, digest, TO),
              request_message("POST", "/v1/x", NOW, digest, TO),
              request_message("POST", PATH, NOW + 1, digest, TO),
              request_message("POST", PATH, NOW, hash_body(BODY + b"x"), TO),
              request_message("POST", PATH, NOW, digest, b"\x08" * 32)}
    assert base not in others and len(others) == 5


# -- frontier and wants -------------------------------------------------------------------


A, B, C = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
HA, HB = b"\xaa" * 32, b"\xbb" * 32


def test_frontier_round_trip() -> None:
    body = encode_frontier({B: (7, HB), A: (3, HA), C: (0, None)}, [B])
    assert canonical.decode(body) == {"frontier": [[A, 3, HA], [B, 7, HB]], "forks": [B]}
    assert decode_frontier(body) == ({A: (3, HA), B: (7, HB)}, [B])
    assert decode_frontier(encode_frontier({})) == ({}, [])
    # O(feeds): a row is about 70 bytes.
    many = {bytes([i]) * 32: (i + 1, HA) for i in range(100)}
    assert len(encode_frontier(many)) <= 100 * 100 + 64


@pytest.mark.parametrize("message", [
    [],
    {"frontier": []},
    {"frontier": [], "forks": [], "extra": 1},
    {"frontier": "rows", "forks": []},
    {"frontier": [[A, 1]], "forks": []},
    {"frontier": [[A[:31], 1, HA]], "forks": []},
    {"frontier": [[A, 0, HA]], "forks": []},
    {"frontier": [[A, -1, HA]], "forks": []},
    {"frontier": [[A, True, HA]], "forks": []},
    {"frontier": [[A, "1", HA]], "forks": []},
    {"frontier": [[A, 1, None]], "forks": []},
    {"frontier": [[A, 1, HA], [A, 2, HA]], "forks": []},
    {"frontier": [], "forks": "none"},
    {"frontier": [], "forks": [b"short"]},
])
def test_bad_frontiers_are_refused(message: object) -> None:
    with pytest.raises(SchemaError):
        decode_frontier(canonical.encode(message))


def test_frontier_bytes_must_be_canonical_and_bounded() -> None:
    good = encode_frontier({A: (3, HA)})
    with pytest.raises(NonCanonicalError):
        decode_frontier(msgpack.packb({"frontier": [[A, 3, HA]], "forks": []}))  # unsorted
    with pytest.raises(DecodeError):
        decode_frontier(good + b"\x00")
    with pytest.raises(DecodeError):
        decode_frontier(good[:-1])
    with pytest.raises(OversizeError):
        decode_frontier(b"\x00" * (MAX_MESSAGE + 1))


def test_wants_round_trip_and_cap() -> None:
    body = encode_wants({B: 5, A: 0}, 100)
    assert canonical.decode(body) == {"wants": [[A, 0], [B, 5]], "limit": 100}
    assert decode_wants(body, 5000) == ({A: 0, B: 5}, 100)
    assert decode_wants(encode_wants({A: 0}, 10**9), 5000) == ({A: 0}, 5000)
    # The last seqs a feed can hold may still be asked for (after + limit fits).
    assert decode_wants(encode_wants({A: MAX_SEQ - 10}, 10), 5000) == ({A: MAX_SEQ - 10}, 10)


@pytest.mark.parametrize("message", [
    {"wants": []},
    {"wants": [], "limit": 1, "more": 2},
    {"wants": [], "limit": 0},
    {"wants": [], "limit": -5},
    {"wants": [], "limit": True},
    {"wants": [], "limit": "10"},
    {"wants": "all", "limit": 10},
    {"wants": [[A]], "limit": 10},
    {"wants": [[A, -1]], "limit": 10},
    {"wants": [[A, False]], "limit": 10},
    {"wants": [[b"x", 0]], "limit": 10},
    {"wants": [[A, 0], [A, 1]], "limit": 10},
    {"wants": [[A, MAX_SEQ]], "limit": 1},
    {"wants": [[A, 2**63 - 100]], "limit": 5000},
    {"wants": [[A, 2**64 - 1]], "limit": 10},
])
def test_bad_wants_are_refused(message: object) -> None:
    with pytest.raises(SchemaError):
        decode_wants(canonical.encode(message), 5000)


# -- entry streams --------------------------------------------------------------------------


def entry(signer: Signer, seq: int, prev: bytes | None, minutes: int = 5) -> Entry:
    return sign_entry(signer, federation_id=FID, seq=seq, prev=prev, ts_us=seq,
                      kind="contribution.recorded",
                      body={"member": "ana", "stream": "care", "minutes": minutes})


def small_feed(n: int = 3) -> list[bytes]:
    raws, prev = [], None
    for seq in range(1, n + 1):
        e = entry(MEMBER, seq, prev)
        raws.append(e.raw)
        prev = e.hash
    return raws


def test_entry_stream_decodes_at_every_split_point() -> None:
    raws = [*small_feed(3), b"", b"x"]
    data = b"".join(frame(r) for r in raws)
    assert list(decode_entry_stream(data)) == raws
    for cut in range(len(data) + 1):
        d = EntryStreamDecoder()
        got = d.feed(data[:cut]) + d.feed(data[cut:])
        d.close()
        assert got == raws, cut
    for cut in range(0, len(data) + 1, 7):
        for cut2 in range(cut, len(data) + 1, 11):
            d = EntryStreamDecoder()
            got = d.feed(data[:cut]) + d.feed(data[cut:cut2]) + d.feed(data[cut2:])
            d.close()
            assert got == raws
    d = EntryStreamDecoder()
    assert [r for i in range(len(data)) for r in d.feed(data[i:i + 1])] == raws
    d.close()


def test_empty_stream_and_large_chunks() -> None:
    assert list(decode_entry_stream(b"")) == []
    raws = [bytes([i % 256]) * 1000 for i in range(300)]  # 300 kB in one chunk
    assert list(decode_entry_stream(b"".join(frame(r) for r in raws))) == raws
    biggest = b"\x07" * MAX_ENTRY_SIZE
    assert list(decode_entry_stream(frame(biggest) * 3)) == [biggest] * 3


def test_a_truncated_stream_is_refused() -> None:
    data = b"".join(frame(r) for r in small_feed(2))
    for cut in range(1, len(data)):
        d = EntryStreamDecoder()
        got = d.feed(data[:cut])
        if cut == len(frame(small_feed(1)[0])):
            d.close()  # ends between items: fine
            continue
        with pytest.raises(DecodeError, match="ends inside item"):
            d.close()
        assert len(got) <= 1
    with pytest.raises(DecodeError):
        list(decode_entry_stream(data[:-1]))


@pytest.mark.parametrize("item", [
    msgpack.packb(1), msgpack.packb(None), msgpack.packb("text"), msgpack.packb(""),
    msgpack.packb([]), msgpack.packb([b"x"]), msgpack.packb({}), msgpack.packb(True),
    msgpack.packb(1.5), msgpack.packb(msgpack.ExtType(1, b"x")),
    b"\xc1",
])
def test_items_that_are_not_bin_are_refused(item: bytes) -> None:
    good = frame(small_feed(1)[0])
    with pytest.raises(DecodeError, match="entry stream item 1"):
        list(decode_entry_stream(good + item + good))


def test_oversize_items_are_refused() -> None:
    with pytest.raises(OversizeError, match="item 0 exceeds"):
        list(decode_entry_stream(frame(b"\x00" * (MAX_ENTRY_SIZE + 1))))
    # A huge declared length is refused once the buffer holds more than an entry
    # may be, long before the declared length arrives.
    d = EntryStreamDecoder()
    header = b"\xc6" + (1 << 31).to_bytes(4, "big")
    with pytest.raises(OversizeError):
        d.feed(header)
        for _ in range(4):
            d.feed(b"\x00" * MAX_ENTRY_SIZE)


# -- fork proofs --------------------------------------------------------------------------


def fork() -> tuple[Entry, Entry, Entry]:
    first = entry(MEMBER, 1, None)
    a = entry(MEMBER, 2, first.hash, minutes=10)
    b = entry(MEMBER, 2, first.hash, minutes=20)
    return first, a, b


def test_a_fork_proof_verifies_on_its_own() -> None:
    _, a, b = fork()
    proof = make_fork_proof(a, b)
    assert (proof.author, proof.seq) == (MEMBER.public_key, 2)
    assert make_fork_proof(b, a) == proof  # order-free
    back = decode_fork_proof(proof.encode())
    assert isinstance(back, ForkProof)
    assert {back.first.hash, back.second.hash} == {a.hash, b.hash}
    assert back.encode() == proof.encode()


def test_non_forks_are_not_proofs() -> None:
    first, a, b = fork()
    other_author = entry(OTHER, 2, first.hash)
    other_fed = sign_entry(MEMBER, federation_id=b"\x09" * 32, seq=2, prev=first.hash,
                           ts_us=2, kind="contribution.recorded",
                           body={"member": "ana", "stream": "care", "minutes": 10})
    for x, y in [(a, a), (first, a), (a, other_author), (a, other_fed)]:
        with pytest.raises(VerificationError):
            make_fork_proof(x, y)
    raw = bytearray(b.raw)
    at = 1 + len(b.header_bytes) + 2
    raw[at] ^= 1
    forged = decode_entry(bytes(raw))
    with pytest.raises(BadSignatureError):
        make_fork_proof(a, forged)
    with pytest.raises(BadSignatureError):
        decode_fork_proof(canonical.encode(sorted([a.raw, bytes(raw)])))


@pytest.mark.parametrize("value", [
    [], [b"x"], "proof", {"a": b"x"}, [b"x", b"y", b"z"], [b"x", 1],
])
def test_malformed_fork_proofs_are_refused(value: object) -> None:
    with pytest.raises(DecodeError):
        decode_fork_proof(canonical.encode(value))


def test_fork_proof_bytes_must_be_canonical_entries() -> None:
    _, a, b = fork()
    with pytest.raises(DecodeError):
        decode_fork_proof(b"\xc1")
    with pytest.raises(DecodeError):
        decode_fork_proof(canonical.encode([a.raw, b"not an entry"]))
    with pytest.raises(NonCanonicalError):
        decode_fork_proof(canonical.encode([b"\xdc\x00\x03" + a.raw[1:], b.raw]))


def test_an_entry_stream_stops_at_its_item_cap() -> None:
    items = [b""] * 10
    assert list(decode_entry_stream(b"".join(frame(i) for i in items), max_items=10)) == items
    with pytest.raises(OversizeError, match="more than 10 entries"):
        list(decode_entry_stream(b"".join(frame(i) for i in items * 1000), max_items=10))
    decoder = EntryStreamDecoder(max_items=3)
    assert decoder.feed(frame(b"a") * 3) == [b"a"] * 3
    with pytest.raises(OversizeError):
        decoder.feed(frame(b"a"))
