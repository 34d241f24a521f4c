"""Tests of protocol.entry: the signed entry, format version 1 (DESIGN.md)."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import canonical
from protocol.entry import (
    FORMAT_VERSION,
    MAX_ENTRY_SIZE,
    SIGNING_PREFIX,
    Entry,
    FeedVerifier,
    Header,
    Ref,
    check_signature,
    decode_entry,
    redact,
    sign_entry,
    verifying_key,
)
from protocol.errors import (
    BadSignatureError,
    BodyHashMismatchError,
    BrokenChainError,
    DecodeError,
    LocalProtocolError,
    NonCanonicalError,
    OversizeError,
    ProtocolError,
    RemoteProtocolError,
    SchemaError,
    UnsupportedVersionError,
    WrongAuthorError,
    WrongFederationError,
)
from protocol.keys import Signer

FED = hashlib.sha256(b"a canonical genesis document").digest()
OTHER_FED = hashlib.sha256(b"another genesis document").digest()
ALICE = Signer.from_seed(b"\x01" * 32)
BOB = Signer.from_seed(b"\x02" * 32)
TS = 1_700_000_000_000_000
BODY = {"hours": 3, "note": "wrote the spec", "tags": ["doc", "care"]}


def pack(value: Any) -> bytes:
    """Plain msgpack, independent of protocol.canonical."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def make(
    signer: Signer = ALICE,
    seq: int = 1,
    prev: bytes | None = None,
    *,
    federation_id: bytes = FED,
    ts_us: int = TS,
    kind: str = "contribution.recorded",
    body: dict[str, Any] | None = None,
) -> Entry:
    return sign_entry(
        signer,
        federation_id=federation_id,
        seq=seq,
        prev=prev,
        ts_us=ts_us,
        kind=kind,
        body=BODY if body is None else body,
    )


def chain(n: int, signer: Signer = ALICE, federation_id: bytes = FED) -> list[Entry]:
    entries: list[Entry] = []
    for seq in range(1, n + 1):
        prev = entries[-1].hash if entries else None
        entries.append(
            make(signer, seq, prev, federation_id=federation_id, ts_us=TS + seq, body={"n": seq})
        )
    return entries


def forge(header: list[Any], signer: Signer, body: bytes | None) -> bytes:
    """An entry with an arbitrary header, signed by ``signer`` over that header."""
    signature = signer.sign(SIGNING_PREFIX + pack(header))
    return pack([header, signature, body])


def flip(raw: bytes, bit: int) -> bytes:
    out = bytearray(raw)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def accept(raw: bytes) -> Entry:
    """Everything a receiver checks on one entry alone."""
    entry = decode_entry(raw)
    check_signature(entry)
    return entry


def same(a: Any, b: Any) -> bool:
    """Equality that also compares types, so that True != 1."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# -- strategies ------------------------------------------------------------

hashes = st.binary(min_size=32, max_size=32)
signers = st.binary(min_size=32, max_size=32).map(Signer.from_seed)
body_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.integers(-(2**63), 2**64 - 1),
        st.text(max_size=16),
        st.binary(max_size=16),
        st.booleans(),
        st.none(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=20,
)
bodies = st.dictionaries(st.text(max_size=12), body_values, max_size=6)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    seq = draw(st.one_of(st.just(1), st.integers(1, 2**63 - 1)))
    return sign_entry(
        draw(signers),
        federation_id=draw(hashes),
        seq=seq,
        prev=None if seq == 1 else draw(hashes),
        ts_us=draw(st.integers(-(2**63), 2**63 - 1)),
        kind=draw(st.text(min_size=1, max_size=64)),
        body=draw(bodies),
    )


# -- building and decoding -------------------------------------------------


def test_first_entry() -> None:
    e = make()
    assert e.seq == 1 and e.header.prev is None
    assert e.author == ALICE.public_key
    assert e.kind == "contribution.recorded"
    assert not e.redacted
    assert e.fields() == BODY
    assert e.ref == Ref(ALICE.public_key, 1, e.hash)
    check_signature(e)
    assert decode_entry(e.raw) == e


def test_entry_with_empty_body() -> None:
    e = make(body={})
    assert e.body == b"\x80"
    assert accept(e.raw).fields() == {}


def test_wire_format_pinned_independently() -> None:
    """DESIGN.md's format, computed with msgpack, hashlib and cryptography only."""
    e = make(ALICE, 2, b"\x07" * 32, body={"tags": ["x"], "hours": 3, "note": "n"})
    body = pack({"hours": 3, "note": "n", "tags": ["x"]})  # keys in sorted order
    header = [
        1,
        FED,
        ALICE.public_key,
        2,
        b"\x07" * 32,
        TS,
        "contribution.recorded",
        hashlib.sha256(body).digest(),
    ]
    header_bytes = pack(header)
    assert e.body == body
    assert e.header_bytes == header_bytes
    assert e.hash == hashlib.sha256(header_bytes).digest()
    assert e.raw == pack([header, e.signature, body])
    Ed25519PublicKey.from_public_bytes(ALICE.public_key).verify(
        e.signature, b"disco-ledger/entry/v1\x00" + header_bytes
    )
    with pytest.raises(InvalidSignature):  # the prefix is part of the signed message
        Ed25519PublicKey.from_public_bytes(ALICE.public_key).verify(e.signature, header_bytes)


def test_known_answer() -> None:
    """Fixed key and fields give fixed bytes (Ed25519 is deterministic)."""
    signer = Signer.from_seed(bytes(range(32)))
    e = make(signer, 1, None, federation_id=bytes(32), ts_us=0, kind="k", body={"a": 1})
    expected = [
        "93",  # entry: array of 3
        "98",  # header: array of 8
        "01",  # version 1
        "c420" + "00" * 32,  # federation_id
        "c420" + signer.public_key.hex(),  # author
        "01",  # seq 1
        "c0",  # prev nil
        "00",  # ts_us 0
        "a16b",  # kind "k"
        "c420" + hashlib.sha256(b"\x81\xa1a\x01").hexdigest(),  # body_hash
        "c440" + KNOWN_SIGNATURE,  # signature
        "c404" + "81a16101",  # body {"a": 1}
    ]
    assert e.raw.hex() == "".join(expected)
    assert e.hash.hex() == KNOWN_ENTRY_HASH
    assert e.signature.hex() == KNOWN_SIGNATURE
    check_independently(e)


KNOWN_ENTRY_HASH = "c4192198f1c9a8564865f16aa5c58657a9590444c29131627699253000450496"
KNOWN_SIGNATURE = (
    "f9666fe37b7096e62a6616dfcb753db797185bc6a1fd669f6c4c8356e30eb649"
    "733cb80918b8fdfeb53c767daca612582e8c26f70e1640086471e92d7cfcdb03"
)


def test_seq_1_requires_nil_prev_and_later_seqs_require_prev() -> None:
    with pytest.raises(LocalProtocolError, match="prev"):
        make(seq=1, prev=b"\x00" * 32)
    with pytest.raises(LocalProtocolError, match="prev"):
        make(seq=2, prev=None)
    assert make(seq=2, prev=b"\x00" * 32).header.prev == b"\x00" * 32


GOOD_HEADER: dict[str, Any] = {
    "federation_id": FED,
    "author": ALICE.public_key,
    "seq": 2,
    "prev": b"\x05" * 32,
    "ts_us": TS,
    "kind": "k",
    "body_hash": b"\x06" * 32,
}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("federation_id", b"\x00" * 31),
        ("federation_id", b"\x00" * 33),
        ("federation_id", "0" * 32),
        ("federation_id", None),
        ("author", b"\x00" * 31),
        ("author", bytearray(32)),
        ("seq", 0),
        ("seq", -1),
        ("seq", True),
        ("seq", "2"),
        ("seq", 2.0),
        ("seq", 2**63),
        pytest.param("seq", 10**5000, id="seq-huge"),
        ("prev", None),
        ("prev", b"\x00" * 31),
        ("prev", "x" * 32),
        ("ts_us", 1.5),
        ("ts_us", True),
        ("ts_us", None),
        ("ts_us", 2**63),
        ("ts_us", -(2**63) - 1),
        pytest.param("ts_us", 10**5000, id="ts_us-huge"),
        ("kind", ""),
        ("kind", "k" * 65),
        ("kind", b"k"),
        ("kind", None),
        ("kind", "\ud800"),
        ("body_hash", b"\x00" * 31),
        ("body_hash", None),
    ],
)
def test_header_rejects_bad_field(name: str, value: Any) -> None:
    with pytest.raises(LocalProtocolError, match=f"^header: {name}"):
        Header(**{**GOOD_HEADER, name: value})


def test_header_errors_show_the_bad_value_briefly() -> None:
    with pytest.raises(LocalProtocolError, match="seq: got 0, want"):
        Header(**{**GOOD_HEADER, "seq": 0})
    with pytest.raises(SchemaError, match="seq: got a list, want"):
        decode_entry(replaced(E1, 3, [1] * 1000))
    with pytest.raises(UnsupportedVersionError, match="format version 2, want 1"):
        decode_entry(replaced(E1, 0, 2))


def test_header_accepts_edge_values() -> None:
    for changes in (
        {"seq": 2**63 - 1},
        {"ts_us": -(2**63)},
        {"ts_us": 2**63 - 1},
        {"kind": "é" * 64},
        {"seq": 1, "prev": None},
    ):
        h = Header(**{**GOOD_HEADER, **changes})
        assert msgpack.unpackb(h.encode(), raw=False) == h.as_list()


@pytest.mark.parametrize(
    "body",
    [{"x": 1.0}, {"x": {1, 2}}, {"x": {1: 2}}, {"x": 2**64}, {"x": "\ud800"}],
)
def test_sign_entry_rejects_bad_body(body: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        make(body=body)


def test_sign_entry_rejects_oversize_entry() -> None:
    with pytest.raises(LocalProtocolError, match="limit"):
        make(body={"blob": b"x" * MAX_ENTRY_SIZE})


def test_size_limit_is_exact() -> None:
    small = make(body={"blob": b"x" * 1000})
    n = MAX_ENTRY_SIZE - (len(small.raw) - 1000)
    at_limit = make(body={"blob": b"x" * n})
    assert len(at_limit.raw) == MAX_ENTRY_SIZE == 64 * 1024
    assert accept(at_limit.raw) == at_limit
    with pytest.raises(LocalProtocolError):
        make(body={"blob": b"x" * (n + 1)})
    # A valid-looking entry one byte over the limit is refused before parsing.
    bigger = pack({"blob": b"x" * (n + 1)})
    header = at_limit.header.as_list()
    header[7] = hashlib.sha256(bigger).digest()
    over = forge(header, ALICE, bigger)
    assert len(over) == MAX_ENTRY_SIZE + 1
    with pytest.raises(OversizeError):
        decode_entry(over)
    with pytest.raises(OversizeError):
        decode_entry(b"\xc1" * (MAX_ENTRY_SIZE + 1))


# -- decode rejects ----------------------------------------------------------


def replaced(
    entry: Entry,
    index: int | None = None,
    value: Any = None,
    *,
    signature: Any = ...,
    body: Any = ...,
) -> bytes:
    """``entry`` re-packed with one header field, the signature or the body replaced."""
    header = entry.header.as_list()
    if index is not None:
        header[index] = value
    return pack(
        [
            header,
            entry.signature if signature is ... else signature,
            entry.body if body is ... else body,
        ]
    )


E1 = make()
E2 = make(seq=2, prev=E1.hash)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(replaced(E1, 0, 2), UnsupportedVersionError, id="version-2"),
        pytest.param(replaced(E1, 0, 0), UnsupportedVersionError, id="version-0"),
        pytest.param(replaced(E1, 0, "1"), UnsupportedVersionError, id="version-str"),
        pytest.param(replaced(E1, 0, True), UnsupportedVersionError, id="version-true"),
        pytest.param(replaced(E1, 0, None), UnsupportedVersionError, id="version-nil"),
        pytest.param(pack({"header": 1}), SchemaError, id="entry-map"),
        pytest.param(pack(1), SchemaError, id="entry-int"),
        pytest.param(pack(None), SchemaError, id="entry-nil"),
        pytest.param(pack([E1.header.as_list(), E1.signature]), SchemaError, id="entry-len-2"),
        pytest.param(
            pack([E1.header.as_list(), E1.signature, E1.body, None]), SchemaError, id="entry-len-4"
        ),
        pytest.param(pack([E1.header_bytes, E1.signature, E1.body]), SchemaError, id="header-bin"),
        pytest.param(
            pack([E1.header.as_list()[:7], E1.signature, E1.body]), SchemaError, id="header-len-7"
        ),
        pytest.param(
            pack([[*E1.header.as_list(), None], E1.signature, E1.body]),
            SchemaError,
            id="header-len-9",
        ),
        pytest.param(pack([[], E1.signature, E1.body]), SchemaError, id="header-empty"),
        pytest.param(replaced(E1, 1, "f" * 32), SchemaError, id="federation-str"),
        pytest.param(replaced(E1, 1, b"f" * 31), SchemaError, id="federation-31"),
        pytest.param(replaced(E1, 2, b"a" * 33), SchemaError, id="author-33"),
        pytest.param(replaced(E1, 2, None), SchemaError, id="author-nil"),
        pytest.param(replaced(E1, 3, 0), SchemaError, id="seq-0"),
        pytest.param(replaced(E1, 3, -1), SchemaError, id="seq-negative"),
        pytest.param(replaced(E1, 3, "1"), SchemaError, id="seq-str"),
        pytest.param(replaced(E1, 3, True), SchemaError, id="seq-true"),
        pytest.param(replaced(E2, 3, 2**64 - 1), SchemaError, id="seq-uint64"),
        pytest.param(replaced(E1, 3, [[[[1]]]]), SchemaError, id="seq-array"),
        pytest.param(replaced(E1, 4, b"p" * 32), SchemaError, id="prev-on-seq-1"),
        pytest.param(replaced(E2, 4, None), SchemaError, id="no-prev-on-seq-2"),
        pytest.param(replaced(E2, 4, b"p" * 31), SchemaError, id="prev-31"),
        pytest.param(replaced(E2, 4, False), SchemaError, id="prev-false"),
        pytest.param(replaced(E1, 5, "0"), SchemaError, id="ts-str"),
        pytest.param(replaced(E1, 5, None), SchemaError, id="ts-nil"),
        pytest.param(replaced(E1, 5, 2**63), SchemaError, id="ts-uint64"),
        pytest.param(replaced(E1, 6, b"kind"), SchemaError, id="kind-bin"),
        pytest.param(replaced(E1, 6, ""), SchemaError, id="kind-empty"),
        pytest.param(replaced(E1, 6, "k" * 65), SchemaError, id="kind-65"),
        pytest.param(replaced(E1, 6, 7), SchemaError, id="kind-int"),
        pytest.param(replaced(E1, 7, b"h" * 31), SchemaError, id="body-hash-31"),
        pytest.param(replaced(E1, 7, None), SchemaError, id="body-hash-nil"),
        pytest.param(replaced(E1, signature=E1.signature[:63]), SchemaError, id="sig-63"),
        pytest.param(replaced(E1, signature=E1.signature + b"\x00"), SchemaError, id="sig-65"),
        pytest.param(replaced(E1, signature=None), SchemaError, id="sig-nil"),
        pytest.param(replaced(E1, signature="s" * 64), SchemaError, id="sig-str"),
        pytest.param(replaced(E1, body=1), SchemaError, id="body-int"),
        pytest.param(replaced(E1, body="body"), SchemaError, id="body-str"),
        pytest.param(replaced(E1, body=BODY), SchemaError, id="body-map-not-bin"),
        pytest.param(replaced(E1, body=[]), SchemaError, id="body-array"),
        pytest.param(replaced(E1, body=False), SchemaError, id="body-false"),
    ],
)
def test_decode_rejects_bad_shape(raw: bytes, error: type[DecodeError]) -> None:
    with pytest.raises(error) as info:
        decode_entry(raw)
    assert type(info.value) is error


@pytest.mark.parametrize("depth", [200, 1000, 1023])
def test_decode_rejects_deeply_nested_fields(depth: int) -> None:
    nested = b"\x91" * depth + b"\xc0"
    for index in range(8):
        fields = [pack(x) for x in E1.header.as_list()]
        fields[index] = nested
        raw = b"\x93\x98" + b"".join(fields) + pack(E1.signature) + pack(E1.body)
        with pytest.raises(DecodeError):
            decode_entry(raw)


def fields_of(entry: Entry) -> list[bytes]:
    return [pack(x) for x in entry.header.as_list()]


def assemble(
    fields: list[bytes],
    signature: bytes,
    body: bytes,
    *,
    outer: bytes = b"\x93",
    header: bytes = b"\x98",
) -> bytes:
    return outer + header + b"".join(fields) + signature + body


def test_assemble_matches_pack() -> None:
    assert assemble(fields_of(E1), pack(E1.signature), pack(E1.body)) == E1.raw


def widened(index: int, wide: bytes, entry: Entry = E1) -> bytes:
    fields = fields_of(entry)
    fields[index] = wide
    return assemble(fields, pack(entry.signature), pack(entry.body))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(widened(0, b"\xcc\x01"), id="version-uint8"),
        pytest.param(widened(3, b"\xcd\x00\x01"), id="seq-uint16"),
        pytest.param(widened(3, b"\xcf" + (1).to_bytes(8, "big")), id="seq-uint64"),
        pytest.param(widened(3, b"\xd0\x01"), id="seq-int8"),
        pytest.param(widened(5, b"\xd3" + TS.to_bytes(8, "big")), id="ts-int64"),
        pytest.param(widened(1, b"\xc5\x00\x20" + FED), id="federation-bin16"),
        pytest.param(widened(6, b"\xd9\x15contribution.recorded"), id="kind-str8"),
        pytest.param(
            assemble(fields_of(E1), b"\xc5\x00\x40" + E1.signature, pack(E1.body)),
            id="signature-bin16",
        ),
        pytest.param(
            assemble(
                fields_of(E1),
                pack(E1.signature),
                b"\xc5" + len(E1.body or b"").to_bytes(2, "big") + (E1.body or b""),
            ),
            id="body-bin16",
        ),
        pytest.param(
            assemble(fields_of(E1), pack(E1.signature), pack(E1.body), outer=b"\xdc\x00\x03"),
            id="entry-array16",
        ),
        pytest.param(
            assemble(fields_of(E1), pack(E1.signature), pack(E1.body), header=b"\xdc\x00\x08"),
            id="header-array16",
        ),
    ],
)
def test_decode_rejects_non_canonical(raw: bytes) -> None:
    with pytest.raises(NonCanonicalError):
        decode_entry(raw)


def test_non_canonical_header_rejected_even_when_signed_as_sent() -> None:
    """A wider int in the header, signed over exactly those bytes, is still refused."""
    fields = fields_of(E1)
    fields[3] = b"\xcd\x00\x01"
    header_bytes = b"\x98" + b"".join(fields)
    signature = ALICE.sign(SIGNING_PREFIX + header_bytes)
    raw = b"\x93" + header_bytes + pack(signature) + pack(E1.body)
    with pytest.raises(NonCanonicalError):
        decode_entry(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(E1.raw[:-1], id="truncated"),
        pytest.param(E1.raw[: len(E1.raw) // 2], id="half"),
        pytest.param(E1.raw + b"\x00", id="trailing"),
        pytest.param(E1.raw + E1.raw, id="two-entries"),
        pytest.param(b"\xc1", id="reserved"),
        pytest.param(replaced(E1, 6, "x")[:-1], id="truncated-after-edit"),
    ],
)
def test_decode_rejects_malformed(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_entry(raw)


def test_body_hash_mismatch() -> None:
    raw = replaced(E1, body=canonical.encode({"hours": 300}))
    with pytest.raises(BodyHashMismatchError, match=f"{ALICE.public_key.hex()[:8]}:1"):
        decode_entry(raw)


def test_body_that_is_not_a_canonical_map_is_refused_by_fields() -> None:
    """decode_entry treats the body as opaque bytes; fields() checks it."""
    for body, error in (
        (b"\x82\xa1b\x01\xa1a\x02", NonCanonicalError),
        (b"\x01", SchemaError),
        (b"\xca\x00\x00\x00\x00", NonCanonicalError),
        (b"\x80\x80", DecodeError),
    ):
        header = [1, FED, ALICE.public_key, 1, None, TS, "k", hashlib.sha256(body).digest()]
        e = accept(forge(header, ALICE, body))
        with pytest.raises(error):
            e.fields()


# -- signatures and chains ---------------------------------------------------


def test_signature_by_another_key() -> None:
    header = E1.header.as_list()  # names ALICE as author ...
    raw = forge(header, BOB, E1.body)  # ... but BOB signs
    e = decode_entry(raw)
    with pytest.raises(BadSignatureError, match="does not verify"):
        check_signature(e)
    with pytest.raises(BadSignatureError):
        FeedVerifier(FED, ALICE.public_key).check(e)
    check_signature(e, BOB.public_key)


def test_check_signature_with_explicit_key() -> None:
    check_signature(E1, ALICE.public_key)
    with pytest.raises(BadSignatureError):
        check_signature(E1, BOB.public_key)
    with pytest.raises(BadSignatureError):
        check_signature(E1, b"")


def test_verifying_key_is_the_author_today() -> None:
    assert verifying_key(ALICE.public_key, 1) == ALICE.public_key
    assert verifying_key(ALICE.public_key, 2**40) == ALICE.public_key


CHAIN = chain(20)


def run(verifier: FeedVerifier, entries: list[Entry]) -> None:
    for e in entries:
        verifier.check(decode_entry(e.raw))


def test_feed_verifier_accepts_valid_chain() -> None:
    v = FeedVerifier(FED, ALICE.public_key)
    run(v, CHAIN)
    assert v.head_seq == 20 and v.head_hash == CHAIN[-1].hash
    assert [e.header.prev for e in CHAIN[1:]] == [e.hash for e in CHAIN[:-1]]


def test_feed_verifier_resumes_from_a_verified_head() -> None:
    v = FeedVerifier(FED, ALICE.public_key, head_seq=10, head_hash=CHAIN[9].hash)
    run(v, CHAIN[10:])
    assert v.head_seq == 20
    with pytest.raises(BrokenChainError):
        FeedVerifier(FED, ALICE.public_key, head_seq=10, head_hash=CHAIN[8].hash).check(CHAIN[10])


@pytest.mark.parametrize(
    ("order", "bad_at"),
    [
        pytest.param([*range(0, 5), *range(6, 20)], 5, id="gap"),
        pytest.param([0, 1, 2, 4, 3, *range(5, 20)], 3, id="swapped-pair"),
        pytest.param([0, 1, 2, 2, 3], 3, id="duplicate"),
        pytest.param([1, 2], 0, id="no-first-entry"),
        pytest.param([0, 1, 0], 2, id="restart"),
    ],
)
def test_feed_verifier_broken_chain(order: list[int], bad_at: int) -> None:
    v = FeedVerifier(FED, ALICE.public_key)
    entries = [CHAIN[i] for i in order]
    run(v, entries[:bad_at])
    with pytest.raises(BrokenChainError):
        v.check(entries[bad_at])
    assert v.head_seq == (entries[bad_at - 1].seq if bad_at else 0)


def test_feed_verifier_wrong_prev() -> None:
    wrong = make(seq=4, prev=CHAIN[1].hash, body={"n": 4})  # seq is right, prev is not
    v = FeedVerifier(FED, ALICE.public_key)
    run(v, CHAIN[:3])
    with pytest.raises(BrokenChainError, match="prev"):
        v.check(wrong)
    v.check(CHAIN[3])  # the head did not move; the real entry 4 still fits


def test_feed_verifier_fork_is_refused() -> None:
    fork = make(seq=2, prev=CHAIN[0].hash, body={"fork": True})
    v = FeedVerifier(FED, ALICE.public_key)
    run(v, CHAIN[:2])
    with pytest.raises(BrokenChainError):
        v.check(fork)


def test_feed_verifier_wrong_federation() -> None:
    other = chain(1, federation_id=OTHER_FED)[0]
    with pytest.raises(WrongFederationError):
        FeedVerifier(FED, ALICE.public_key).check(other)


def test_feed_verifier_wrong_author() -> None:
    bobs = chain(1, signer=BOB)[0]
    with pytest.raises(WrongAuthorError):
        FeedVerifier(FED, ALICE.public_key).check(bobs)


def test_feed_verifier_does_not_advance_on_bad_signature() -> None:
    v = FeedVerifier(FED, ALICE.public_key)
    bad = decode_entry(forge(CHAIN[0].header.as_list(), BOB, CHAIN[0].body))
    with pytest.raises(BadSignatureError):
        v.check(bad)
    assert v.head_seq == 0 and v.head_hash is None
    v.check(CHAIN[0])


# -- refs ------------------------------------------------------------------


def test_ref_text_round_trip() -> None:
    for e in CHAIN[:3]:
        text = str(e.ref)
        assert text == f"{ALICE.public_key.hex()}:{e.seq}:{e.hash.hex()}"
        assert Ref.parse(text) == e.ref
        assert Ref.parse(f"  {text}\n") == e.ref
        assert Ref.parse(text.upper()) == e.ref


def test_ref_msgpack_round_trip() -> None:
    ref = CHAIN[4].ref
    raw = canonical.encode(ref.as_list())
    assert Ref.from_value(canonical.decode(raw)) == ref


A = "ab" * 32
H = "cd" * 32


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "::",
        f"{A}:1",
        f"{A}:1:{H}:extra",
        f"{A}:x:{H}",
        f"{A}::{H}",
        f"{A}:0:{H}",
        f"{A}:-1:{H}",
        f"{A}:1.5:{H}",
        f"{A[:-2]}:1:{H}",
        f"{A}:1:{H}00",
        f"{A}:1:{H[:-1]}",
        f"zz{A[2:]}:1:{H}",
        f"{A}:1:0x{H[2:]}",
        f"{A}:{2**63}:{H}",
        pytest.param(f"{A}:{'9' * 5000}:{H}", id="huge-seq"),
        f"{A};1;{H}",
    ],
)
def test_ref_parse_rejects(text: str) -> None:
    with pytest.raises(SchemaError):
        Ref.parse(text)


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        [b"a" * 32, 1],
        [b"a" * 32, 1, b"h" * 32, 0],
        [b"a" * 31, 1, b"h" * 32],
        [b"a" * 32, True, b"h" * 32],
        [b"a" * 32, 0, b"h" * 32],
        [b"a" * 32, 1, "h" * 32],
        [b"a" * 32, 2**63, b"h" * 32],
        (b"a" * 32, 1, b"h" * 32),
    ],
)
def test_ref_from_value_rejects(value: Any) -> None:
    with pytest.raises(SchemaError):
        Ref.from_value(value)


# -- properties ------------------------------------------------------------


def check_independently(e: Entry) -> None:
    header = [
        1,
        e.header.federation_id,
        e.author,
        e.seq,
        e.header.prev,
        e.header.ts_us,
        e.kind,
        hashlib.sha256(e.body or b"").digest(),
    ]
    assert e.hash == hashlib.sha256(pack(header)).digest()
    Ed25519PublicKey.from_public_bytes(e.author).verify(e.signature, SIGNING_PREFIX + pack(header))


@settings(max_examples=150, deadline=None)
@given(entries())
def test_any_valid_entry_round_trips(e: Entry) -> None:
    d = accept(e.raw)
    assert d.raw == e.raw
    assert d == e
    assert d.header == e.header and d.hash == e.hash and d.signature == e.signature
    assert d.header.as_list()[0] == FORMAT_VERSION
    assert same(d.fields(), canonical.decode(e.body or b""))
    assert d.ref == Ref.parse(str(e.ref))
    check_independently(d)


@settings(max_examples=50, deadline=None)
@given(signers, hashes, bodies)
def test_body_fields_round_trip(signer: Signer, federation_id: bytes, body: dict[str, Any]) -> None:
    e = sign_entry(
        signer, federation_id=federation_id, seq=1, prev=None, ts_us=0, kind="k", body=body
    )
    assert same(accept(e.raw).fields(), body)


def assert_never_accepted(raw: bytes) -> type[ProtocolError]:
    try:
        accept(raw)
    except RemoteProtocolError as e:
        return type(e)
    raise AssertionError(f"a corrupted entry was accepted: {raw.hex()}")


def test_every_single_bit_flip_is_caught() -> None:
    """Exhaustively: no single-bit change of an entry or of its redaction is accepted."""
    e = make(ALICE, 2, CHAIN[0].hash, kind="k", body={"a": 1})
    errors: dict[type[ProtocolError], int] = {}
    for raw in (e.raw, redact(e).raw):
        for bit in range(len(raw) * 8):
            error = assert_never_accepted(flip(raw, bit))
            errors[error] = errors.get(error, 0) + 1
    # Each layer does its part: framing, header signature, body hash.
    assert {BadSignatureError, BodyHashMismatchError, DecodeError} <= set(errors)


def test_bit_flips_by_region() -> None:
    e = make(ALICE, 2, CHAIN[0].hash, kind="k", body={"a": 1})
    header_at = e.raw.index(e.header_bytes)
    sig_at = e.raw.index(e.signature)
    body_at = len(e.raw) - len(e.body or b"")
    # Payload bytes of the header's bin and int fields: the signature catches these.
    author_at = header_at + e.header_bytes.index(ALICE.public_key)
    for bit in range(author_at * 8, (author_at + 32) * 8):
        assert assert_never_accepted(flip(e.raw, bit)) is BadSignatureError
    for bit in range(sig_at * 8, (sig_at + 64) * 8):
        assert assert_never_accepted(flip(e.raw, bit)) is BadSignatureError
    for bit in range(body_at * 8, len(e.raw) * 8):  # the body is opaque bytes to decode_entry
        assert assert_never_accepted(flip(e.raw, bit)) is BodyHashMismatchError


@settings(max_examples=100, deadline=None)
@given(entries(), st.data())
def test_random_bit_flips_are_caught(e: Entry, data: st.DataObject) -> None:
    raws = [e.raw, redact(e).raw]
    for _ in range(16):
        raw = data.draw(st.sampled_from(raws))
        assert_never_accepted(flip(raw, data.draw(st.integers(0, len(raw) * 8 - 1))))


@settings(max_examples=100, deadline=None)
@given(entries(), st.data())
def test_random_byte_changes_are_caught(e: Entry, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(e.raw) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != e.raw[i]))
    assert_never_accepted(e.raw[:i] + bytes([new]) + e.raw[i + 1 :])


def redact_at(feed: list[Entry], i: int) -> list[Entry]:
    """``feed`` with entry ``i`` redacted and decoded back from its bytes."""
    out = list(feed)
    out[i] = decode_entry(redact(out[i]).raw)
    return out


def test_redacted_entry_still_verifies_and_chains() -> None:
    e = CHAIN[5]
    r = decode_entry(redact(e).raw)
    assert r.redacted and r.body is None and r.fields() is None
    assert r.hash == e.hash and r.header == e.header and r.signature == e.signature
    assert r.header_bytes == e.header_bytes
    assert r.raw == pack([e.header.as_list(), e.signature, None])
    assert r.raw.endswith(b"\xc0") and len(r.raw) < len(e.raw)
    assert redact(r) == r
    check_signature(r)
    check_independently(e)
    run(FeedVerifier(FED, ALICE.public_key), redact_at(CHAIN, 5))


@settings(max_examples=100, deadline=None)
@given(signers, hashes, st.lists(bodies, min_size=3, max_size=3), st.integers(0, 2))
def test_redaction_property(
    signer: Signer, federation_id: bytes, bodies_: list[dict[str, Any]], index: int
) -> None:
    feed: list[Entry] = []
    for seq, body in enumerate(bodies_, start=1):
        feed.append(
            sign_entry(
                signer,
                federation_id=federation_id,
                seq=seq,
                prev=feed[-1].hash if feed else None,
                ts_us=seq,
                kind="k",
                body=body,
            )
        )
    redacted = redact_at(feed, index)
    r = redacted[index]
    assert r.redacted and not feed[index].redacted
    assert r.hash == feed[index].hash
    assert r.raw == redact(feed[index]).raw
    check_signature(r)
    v = FeedVerifier(federation_id, signer.public_key)
    run(v, redacted)
    assert v.head_hash == feed[-1].hash


def test_trusted_decode_equals_the_checked_decode_for_stored_entries() -> None:
    """Decoding stored bytes without their checks (``_trusted``) gives exactly the
    same Entry as the checked decode, redacted entries included."""
    signer = Signer.from_seed(bytes(range(32)))
    prev = None
    for seq in range(1, 40):
        e = sign_entry(signer, federation_id=bytes(32), seq=seq, prev=prev, ts_us=seq * 7,
                       kind="contribution.recorded",
                       body={"member": "m", "stream": "care", "minutes": seq,
                             "note": "x" * (seq * 11)})
        prev = e.hash
        for raw in (e.raw, redact(e).raw):
            assert decode_entry(raw, _trusted=True) == decode_entry(raw)
