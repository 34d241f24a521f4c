"""Tests of protocol.checkpoint: C2SP signed notes and checkpoints, and proofs against them."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.checkpoint import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointError,
    ConsistencyError,
    InclusionError,
    MissingSignatureError,
    NoteOversizeError,
    WrongOriginError,
    check_consistency,
    check_inclusion,
    decode_b64,
    decode_decimal,
    encode_b64,
    key_hash,
    open_note,
    origin_for,
    parse_checkpoint_body,
    parse_note,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verifier_key,
    verify_checkpoint,
)
from protocol.errors import (
    BadSignatureError,
    DecodeError,
    LocalProtocolError,
    OversizeError,
    ProtocolError,
    VerificationError,
)
from protocol.keys import Signer
from protocol.merkle import EMPTY_ROOT, consistency_proof, inclusion_proof, leaf_hash
from protocol.merkle import root_from_leaf_hashes as root_of

# --------------------------------------------------------------------------
# Published examples
#
# The signed-note format was first specified in the documentation of the Go package
# golang.org/x/mod/sumdb/note (sumdb/note/note.go, section "Example"); c2sp.org/signed-note
# is its successor. That documentation publishes a note together with its verifier key
# (and its signer key), so it is the one example that can be verified end to end.
# The strings below are copied from it byte for byte.

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG_LINE = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXg"
    "KvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_SIG_LINE
# The same documentation's doubly-signed message; EnochRoot's key is not published.
GO_DOUBLE_NOTE = GO_NOTE + (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGw"
    "nWLox33WWd1RvMc+QQ=\n"
)

# The example notes printed at the top of c2sp.org/signed-note and c2sp.org/tlog-checkpoint.
# Their keys are not published, so they can be parsed but not verified.
C2SP_NOTE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed \u00e8 subito sera.\n"
    "\n"
    "\u2014 quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONr"
    "MouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/"
    "Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)


def go_public_key() -> bytes:
    return base64.b64decode(GO_VKEY.split("+", 2)[2])[1:]


def go_signer() -> Signer:
    return Signer.from_seed(base64.b64decode(GO_SKEY.split("+", 4)[4])[1:])


def mutations(data: bytes, exhaustive: bool) -> list[bytes]:
    """Every copy of ``data`` with one byte changed (all values, or bit flips and a few)."""
    out: list[bytes] = []
    for i, b in enumerate(data):
        if exhaustive:
            values = set(range(256))
        else:
            values = {b ^ (1 << k) for k in range(8)} | set(b"\n \x00+=A/-")
        values.discard(b)
        out.extend(data[:i] + bytes([v]) + data[i + 1 :] for v in sorted(values))
    return out


def test_spec_example_note_verifies_with_its_published_key() -> None:
    name, public_key = parse_verifier_key(GO_VKEY)
    assert name == "PeterNeumann"
    assert open_note(GO_NOTE, name, public_key) == GO_TEXT
    assert open_note(GO_NOTE.encode("utf-8"), name, public_key) == GO_TEXT


def test_signing_the_spec_example_reproduces_it_byte_for_byte() -> None:
    signer = go_signer()
    assert signer.public_key == go_public_key()
    assert sign_note(GO_TEXT, "PeterNeumann", signer) == GO_NOTE


def test_spec_example_doubly_signed_note_ignores_the_unknown_key() -> None:
    assert open_note(GO_DOUBLE_NOTE, "PeterNeumann", go_public_key()) == GO_TEXT
    note = parse_note(GO_DOUBLE_NOTE)
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]


def test_spec_example_with_any_byte_modified_is_rejected() -> None:
    data = GO_NOTE.encode("utf-8")
    public_key = go_public_key()
    for changed in mutations(data, exhaustive=False):
        with pytest.raises((CheckpointError, BadSignatureError)):
            open_note(changed, "PeterNeumann", public_key)


def test_spec_example_with_another_key_is_rejected() -> None:
    other = Signer.from_seed(bytes(32)).public_key
    with pytest.raises(MissingSignatureError, match="PeterNeumann\\+c74f20a3"):
        open_note(GO_NOTE, "PeterNeumann", other)
    with pytest.raises(MissingSignatureError):
        open_note(GO_NOTE, "PaulNeumann", go_public_key())


def test_key_hash_known_answer_from_the_spec_example() -> None:
    public_key = go_public_key()
    assert key_hash("PeterNeumann", public_key) == bytes.fromhex("c74f20a3")
    assert (
        key_hash("PeterNeumann", public_key)
        == (hashlib.sha256(b"PeterNeumann\n\x01" + public_key).digest()[:4])
    )
    # The key hash is the first four bytes of every signature by that key.
    assert parse_note(GO_NOTE).signatures[0].key_hash == bytes.fromhex("c74f20a3")
    assert verifier_key("PeterNeumann", public_key) == GO_VKEY


def test_verifier_key_manglings_are_rejected() -> None:
    # As golang.org/x/mod/sumdb/note's TestNewVerifier: every proper substring and every
    # single-byte increment of the published key, and two keys with adjusted hashes.
    bad = [GO_VKEY[i:j] for i in range(len(GO_VKEY)) for j in range(i + 1, len(GO_VKEY) + 1)]
    bad.remove(GO_VKEY)
    b = GO_VKEY.encode()
    bad += [(b[:i] + bytes([b[i] + 1]) + b[i + 1 :]).decode() for i in range(len(b))]
    bad += [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ]
    for text in bad:
        with pytest.raises(CheckpointError):
            parse_verifier_key(text)


def test_c2sp_example_note_splits_at_the_last_blank_line() -> None:
    note = parse_note(C2SP_NOTE)
    assert note.text == (
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\n"
        "ed \u00e8 subito sera.\n"
    )
    (sig,) = note.signatures
    assert sig.name == "quasimodo.example/salvatore"
    assert sig.key_hash == bytes.fromhex("367ba04b")
    assert len(sig.signature) == 64
    with pytest.raises(MissingSignatureError):
        open_note(C2SP_NOTE, "quasimodo.example/salvatore", go_public_key())


def test_c2sp_example_checkpoint_parses() -> None:
    note = parse_note(C2SP_CHECKPOINT)
    cp = parse_checkpoint_body(note.text)
    assert cp == Checkpoint(
        "example.com/behind-the-sofa",
        20852163,
        base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
    )
    assert cp.body() == note.text
    assert note.signatures[0].name == cp.origin  # the key name matches the origin line


# --------------------------------------------------------------------------
# Our checkpoints

LAB = Signer.from_seed(bytes(range(32)))
OTHER = Signer.from_seed(bytes(range(1, 33)))
FID = hashlib.sha256(b"federation").digest()
FID2 = hashlib.sha256(b"another federation").digest()
ORIGIN = origin_for(FID, LAB.public_key)
ROOT = hashlib.sha256(b"some root").digest()


def checkpoint(size: int = 7, root: bytes = ROOT, origin: str = ORIGIN) -> Checkpoint:
    return Checkpoint(origin, size, root)


def test_origin_for() -> None:
    assert ORIGIN == f"disco-ledger/{FID.hex()}/{LAB.public_key.hex()}"
    with pytest.raises(LocalProtocolError):
        origin_for(FID[:31], LAB.public_key)
    with pytest.raises(LocalProtocolError):
        origin_for(FID, LAB.public_key + b"\x00")


def test_sign_and_verify_round_trip() -> None:
    cp = checkpoint()
    note = sign_checkpoint(cp, LAB)
    lines = note.split("\n")
    assert lines[:4] == [ORIGIN, "7", base64.b64encode(ROOT).decode(), ""]
    assert lines[4].startswith(f"\u2014 {ORIGIN} ")  # the signer line names the feed
    assert lines[5:] == [""]  # the note ends with a newline
    assert verify_checkpoint(note, LAB.public_key, FID) == cp
    assert verify_checkpoint(note.encode("utf-8"), LAB.public_key, FID) == cp
    # Any signed-note verifier holding the LAB's verifier key accepts it.
    name, public_key = parse_verifier_key(verifier_key(ORIGIN, LAB.public_key))
    assert parse_checkpoint_body(open_note(note, name, public_key)) == cp
    # Deterministic: the same checkpoint always gives the same note.
    assert sign_checkpoint(cp, LAB) == note


def test_round_trip_with_extensions_and_empty_tree() -> None:
    for cp in (
        Checkpoint(ORIGIN, 12, ROOT, ("ext one", "\u00e9 two")),
        Checkpoint(ORIGIN, 0, EMPTY_ROOT),
        Checkpoint(ORIGIN, 2**64 - 1, ROOT),
    ):
        assert parse_checkpoint_body(cp.body()) == cp
        assert verify_checkpoint(sign_checkpoint(cp, LAB), LAB.public_key, FID) == cp


def test_cosignatures_by_other_keys_are_ignored() -> None:
    cp = checkpoint()
    note = sign_checkpoint(cp, LAB)
    witness = sign_note(cp.body(), "witness.example/w1", OTHER).split("\n\n")[1]
    for combined in (note + witness, cp.body() + "\n" + witness + note.split("\n\n")[1]):
        assert verify_checkpoint(combined, LAB.public_key, FID) == cp
    # Our name with another key hash, or our key hash with another name: unknown keys.
    ours = parse_note(note).signatures[0]
    other_hash = base64.b64encode(b"\x00\x00\x00\x00" + ours.signature).decode()
    other_name = base64.b64encode(ours.key_hash + bytes(64)).decode()
    extra = f"\u2014 {ORIGIN} {other_hash}\n\u2014 someone.else {other_name}\n"
    assert verify_checkpoint(note + extra, LAB.public_key, FID) == cp


def test_a_bad_signature_by_our_key_is_rejected_even_next_to_a_good_one() -> None:
    cp = checkpoint()
    note = sign_checkpoint(cp, LAB)
    kh = key_hash(ORIGIN, LAB.public_key)
    # Our name and key hash, but signed by another key.
    forged_sig = OTHER.sign(cp.body().encode())
    forged = f"\u2014 {ORIGIN} {base64.b64encode(kh + forged_sig).decode()}\n"
    short = f"\u2014 {ORIGIN} {base64.b64encode(kh + bytes(10)).decode()}\n"
    for bad_line in (forged, short):
        with pytest.raises(BadSignatureError, match="does not verify"):
            verify_checkpoint(note + bad_line, LAB.public_key, FID)
        with pytest.raises(BadSignatureError, match="does not verify"):
            verify_checkpoint(cp.body() + "\n" + bad_line, LAB.public_key, FID)


def test_signature_by_another_key_is_rejected() -> None:
    cp = checkpoint()
    with pytest.raises(MissingSignatureError, match="no signature by"):
        verify_checkpoint(sign_checkpoint(cp, LAB), OTHER.public_key, FID)
    # Another LAB's key under our LAB's name (the key hash differs): unknown, so unsigned.
    with pytest.raises(MissingSignatureError):
        verify_checkpoint(sign_checkpoint(cp, OTHER), LAB.public_key, FID)
    assert issubclass(MissingSignatureError, BadSignatureError)


def test_wrong_origin_is_rejected() -> None:
    # Signed by the right key for another federation: no signature under our origin.
    other_fed = Checkpoint(origin_for(FID2, LAB.public_key), 7, ROOT)
    with pytest.raises(MissingSignatureError):
        verify_checkpoint(sign_checkpoint(other_fed, LAB), LAB.public_key, FID)
    # Signed under our key name, but the origin line names another log.
    for origin in (other_fed.origin, ORIGIN + "x", "example.com/log"):
        note = sign_note(checkpoint(origin=origin).body(), ORIGIN, LAB)
        with pytest.raises(WrongOriginError, match="want"):
            verify_checkpoint(note, LAB.public_key, FID)


BASE_BODY = f"{ORIGIN}\n7\n{base64.b64encode(ROOT).decode()}\n"
ROOT_B64 = base64.b64encode(ROOT).decode()
URLSAFE_B64 = base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode()  # has '-' and '_'


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(BASE_BODY[:-1], id="no final newline"),
        pytest.param(f"{ORIGIN}\n7\n", id="two lines"),
        pytest.param(f"\n7\n{ROOT_B64}\n", id="empty origin"),
        pytest.param(f"{ORIGIN}\r\n7\n{ROOT_B64}\n", id="CR in origin"),
        pytest.param(f"{ORIGIN}\n\n{ROOT_B64}\n", id="empty size"),
        pytest.param(f"{ORIGIN}\nseven\n{ROOT_B64}\n", id="size not decimal"),
        pytest.param(f"{ORIGIN}\n07\n{ROOT_B64}\n", id="leading zero"),
        pytest.param(f"{ORIGIN}\n00\n{ROOT_B64}\n", id="double zero"),
        pytest.param(f"{ORIGIN}\n+7\n{ROOT_B64}\n", id="plus sign"),
        pytest.param(f"{ORIGIN}\n-7\n{ROOT_B64}\n", id="minus sign"),
        pytest.param(f"{ORIGIN}\n 7\n{ROOT_B64}\n", id="space before size"),
        pytest.param(f"{ORIGIN}\n7 \n{ROOT_B64}\n", id="space after size"),
        pytest.param(f"{ORIGIN}\n7.0\n{ROOT_B64}\n", id="decimal point"),
        pytest.param(f"{ORIGIN}\n1_000\n{ROOT_B64}\n", id="underscore"),
        pytest.param(f"{ORIGIN}\n\u0667\n{ROOT_B64}\n", id="arabic-indic digit"),
        pytest.param(f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n", id="size over 2**64-1"),
        pytest.param(f"{ORIGIN}\n{'9' * 5000}\n{ROOT_B64}\n", id="huge size"),
        pytest.param(f"{ORIGIN}\n7\n\n", id="empty root"),
        pytest.param(f"{ORIGIN}\n7\n{ROOT_B64[:-1]}\n", id="root without padding"),
        pytest.param(f"{ORIGIN}\n7\n{ROOT_B64[:-2]}!=\n", id="root not base64"),
        pytest.param(f"{ORIGIN}\n7\n{ROOT.hex()}\n", id="root in hex"),
        pytest.param(f"{ORIGIN}\n7\n{URLSAFE_B64}\n", id="urlsafe base64"),
        pytest.param(f"{ORIGIN}\n7\n{ROOT_B64[:20]}\n{ROOT_B64[20:]}\n", id="root split"),
        pytest.param(f"{ORIGIN}\n7\n{base64.b64encode(ROOT[:31]).decode()}\n", id="root 31 bytes"),
        pytest.param(
            f"{ORIGIN}\n7\n{base64.b64encode(ROOT + b'x').decode()}\n", id="root 33 bytes"
        ),
        pytest.param(f"{ORIGIN}\n0\n{ROOT_B64}\n", id="size 0 with another root"),
        pytest.param(BASE_BODY + "\n", id="empty extension line"),
        pytest.param(BASE_BODY + "ext\x00\n", id="NUL in extension"),
    ],
)
def test_checkpoint_body_parse_is_strict(body: str) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint_body(body)


def test_root_base64_with_only_padding_bits_changed_is_rejected() -> None:
    # 32 bytes encode to 43 characters and '='; the last character carries 2 unused bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(ROOT_B64[42])
    for low in range(1, 4):
        mangled = ROOT_B64[:42] + alphabet[last ^ low] + "="
        assert base64.b64decode(mangled) == ROOT
        with pytest.raises(CheckpointError, match="canonical"):
            parse_checkpoint_body(f"{ORIGIN}\n7\n{mangled}\n")


GOOD_NOTE = sign_checkpoint(checkpoint(), LAB)
GOOD_BODY, GOOD_SIGS = GOOD_NOTE.split("\n\n")
SIG_B64 = GOOD_SIGS.split(" ")[2].rstrip("\n")


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(GOOD_BODY + "\n" + GOOD_SIGS, id="missing blank line"),
        pytest.param(GOOD_BODY + "\n\n", id="no signature lines"),
        pytest.param(GOOD_NOTE[:-1], id="no final newline"),
        pytest.param(GOOD_NOTE + "\n", id="blank line at the end"),
        pytest.param(GOOD_NOTE.replace("\u2014", "-"), id="hyphen instead of em dash"),
        pytest.param(GOOD_NOTE.replace("\u2014", "\u2013"), id="en dash instead of em dash"),
        pytest.param(GOOD_NOTE.replace("\u2014 ", "\u2014"), id="no space after the dash"),
        pytest.param(GOOD_NOTE.replace(f" {SIG_B64}", f"  {SIG_B64}"), id="two spaces"),
        pytest.param(GOOD_NOTE.replace(f" {SIG_B64}", ""), id="no signature"),
        pytest.param(GOOD_NOTE.replace(f" {SIG_B64}", f" {SIG_B64} "), id="trailing space"),
        pytest.param(GOOD_NOTE.replace(ORIGIN + " ", "a+b "), id="plus in key name"),
        pytest.param(GOOD_NOTE.replace(f"\u2014 {ORIGIN}", "\u2014 "), id="empty key name"),
        pytest.param(GOOD_NOTE.replace(SIG_B64, SIG_B64[:-1]), id="signature without padding"),
        pytest.param(GOOD_NOTE.replace(SIG_B64, "!" + SIG_B64[1:]), id="signature not base64"),
        pytest.param(
            GOOD_NOTE.replace(SIG_B64, base64.b64encode(b"\x01\x02\x03\x04").decode()),
            id="signature of four bytes",
        ),
        pytest.param(GOOD_NOTE.replace("\n", "\r\n"), id="CRLF line endings"),
        pytest.param(GOOD_NOTE.replace("\n7\n", "\n7\t\n"), id="tab"),
        pytest.param(GOOD_NOTE.replace("\n7\n", "\n7\x00\n"), id="NUL"),
        pytest.param(GOOD_NOTE.replace("\n7\n", "\n7\ud800\n"), id="lone surrogate"),
        pytest.param(GOOD_NOTE.encode() + b"\xff", id="not UTF-8"),
        pytest.param(GOOD_NOTE.encode().replace(b"\xe2\x80\x94", b"\xe2\x80"), id="cut em dash"),
        pytest.param(
            GOOD_NOTE + f"\u2014 someone.else {SIG_B64}\n" * MAX_SIGNATURES,
            id="too many signatures",
        ),
        pytest.param(12, id="not text"),
    ],
)
def test_malformed_notes_are_rejected(note: str | bytes) -> None:
    with pytest.raises(CheckpointError):
        verify_checkpoint(note, LAB.public_key, FID)
    with pytest.raises(CheckpointError):
        parse_note(note)


def test_oversize_note_is_rejected_before_anything_else() -> None:
    padding = f"\u2014 someone.else {SIG_B64}\n"
    huge = GOOD_NOTE + "x" * MAX_NOTE_SIZE
    for note in (huge, huge.encode(), GOOD_BODY + "\n\n" + padding * 10_000):
        with pytest.raises(NoteOversizeError):
            verify_checkpoint(note, LAB.public_key, FID)
    assert issubclass(NoteOversizeError, OversizeError)
    # Just at the limit is fine (extension lines make up the size).
    body = checkpoint().body()
    fill = MAX_NOTE_SIZE - len(sign_note(body + "e\n", ORIGIN, LAB).encode())
    cp = Checkpoint(ORIGIN, 7, ROOT, ("e" * (fill + 1),))
    assert len(sign_checkpoint(cp, LAB).encode()) == MAX_NOTE_SIZE
    assert verify_checkpoint(sign_checkpoint(cp, LAB), LAB.public_key, FID) == cp
    too_big = Checkpoint(ORIGIN, 7, ROOT, ("e" * (fill + 2),))
    with pytest.raises(LocalProtocolError):
        sign_checkpoint(too_big, LAB)


def test_error_classes_fit_the_protocol_hierarchy() -> None:
    assert issubclass(CheckpointError, DecodeError)
    assert issubclass(WrongOriginError, VerificationError)
    assert issubclass(ConsistencyError, VerificationError)
    assert issubclass(InclusionError, VerificationError)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        ("a\x00", 1, ROOT, ()),
        ("a\ud800", 1, ROOT, ()),
        (b"origin", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, 2**64, ROOT, ()),
        pytest.param(ORIGIN, 10**5000, ROOT, (), id="huge size"),
        (ORIGIN, True, ROOT, ()),
        (ORIGIN, 1.0, ROOT, ()),
        (ORIGIN, 1, ROOT[:31], ()),
        (ORIGIN, 1, ROOT.hex(), ()),
        (ORIGIN, 0, ROOT, ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("a\nb",)),
        (ORIGIN, 1, ROOT, ["ext"]),
    ],
)
def test_checkpoint_checks_itself(
    origin: object, size: object, root: object, extensions: object
) -> None:
    with pytest.raises(LocalProtocolError):
        Checkpoint(origin, size, root, extensions)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ("no newline", "n"),
        ("tab\t\n", "n"),
        ("fine\n", ""),
        ("fine\n", "a b"),
        ("fine\n", "a+b"),
        ("fine\n", "a\u00a0b"),
    ],
)
def test_sign_note_refuses_what_open_note_would_reject(body: str, name: str) -> None:
    with pytest.raises(LocalProtocolError):
        sign_note(body, name, LAB)


def test_note_bodies_with_blank_lines_round_trip() -> None:
    for body in ("\n", "a\n\nb\n", "a\n\n", "a\n\n\u2014 x AAAAAAA=\n"):
        assert open_note(sign_note(body, "n", LAB), "n", LAB.public_key) == body


@pytest.mark.slow
def test_every_single_byte_change_of_a_signed_checkpoint_is_rejected() -> None:
    data = GOOD_NOTE.encode("utf-8")
    assert verify_checkpoint(data, LAB.public_key, FID) == checkpoint()
    accepted = []
    for changed in mutations(data, exhaustive=True):  # about 110,000 notes
        try:
            verify_checkpoint(changed, LAB.public_key, FID)
        except (CheckpointError, BadSignatureError):
            continue
        accepted.append(changed)
    assert accepted == []


# --------------------------------------------------------------------------
# Consistency and inclusion


def random_leaves(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [leaf_hash(rng.randbytes(rng.randrange(0, 40))) for _ in range(n)]


def cp_of(leaves: list[bytes], origin: str = ORIGIN) -> Checkpoint:
    return Checkpoint(origin, len(leaves), root_of(leaves))


def test_consistency_between_every_pair_of_sizes() -> None:
    leaves = random_leaves(33, seed=1)
    for m in range(0, 34):
        for n in range(m, 34):
            proof = consistency_proof(leaves[:n], m) if m else []
            check_consistency(cp_of(leaves[:m]), cp_of(leaves[:n]), proof)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**32))
def test_consistency_property(a: int, b: int, seed: int) -> None:
    m, n = min(a, b), max(a, b)
    leaves = random_leaves(n, seed)
    old, new = cp_of(leaves[:m]), cp_of(leaves)
    proof = consistency_proof(leaves, m)
    check_consistency(old, new, proof)
    # Rewriting any one leaf of the old prefix is caught, whatever proof the log offers.
    rewritten = list(leaves)
    rewritten[seed % m] = leaf_hash(b"rewritten")
    with pytest.raises(ConsistencyError) as info:
        check_consistency(old, cp_of(rewritten), consistency_proof(rewritten, m))
    assert info.value.proves_fork == (m == n)


def test_tampered_proofs_are_rejected() -> None:
    leaves = random_leaves(21, seed=2)
    old, new = cp_of(leaves[:13]), cp_of(leaves)
    proof = consistency_proof(leaves, 13)
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        with pytest.raises(ConsistencyError, match="sizes 13 and 21") as info:
            check_consistency(old, new, bad)
        assert not info.value.proves_fork
        assert (info.value.old_size, info.value.new_size) == (13, 21)
    for bad in (proof[:-1], [*proof, proof[0]], [], [b"short"] * len(proof)):
        with pytest.raises(ConsistencyError):
            check_consistency(old, new, bad)
    # Right proof, claims swapped or wrong.
    with pytest.raises(ConsistencyError):
        check_consistency(cp_of(leaves[:12]), new, proof)
    with pytest.raises(ConsistencyError):
        check_consistency(old, cp_of(leaves[:20]), proof)


def test_same_size_different_roots_proves_a_fork() -> None:
    leaves = random_leaves(8, seed=3)
    other = [*leaves[:7], leaf_hash(b"other")]
    with pytest.raises(ConsistencyError, match="sizes 8 and 8") as info:
        check_consistency(cp_of(leaves), cp_of(other), [])
    assert info.value.proves_fork
    check_consistency(cp_of(leaves), cp_of(leaves), [])
    with pytest.raises(ConsistencyError):  # equal sizes take an empty proof
        check_consistency(cp_of(leaves), cp_of(leaves), [leaves[0]])


def test_smaller_new_tree_and_other_logs_are_rejected() -> None:
    leaves = random_leaves(10, seed=4)
    with pytest.raises(ConsistencyError, match="sizes 10 and 4") as info:
        check_consistency(cp_of(leaves), cp_of(leaves[:4]), consistency_proof(leaves, 4))
    assert not info.value.proves_fork
    other_origin = origin_for(FID2, LAB.public_key)
    with pytest.raises(WrongOriginError):
        check_consistency(cp_of(leaves[:4]), cp_of(leaves, other_origin), [])


def test_consistency_from_the_empty_tree() -> None:
    leaves = random_leaves(5, seed=5)
    empty = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    check_consistency(empty, cp_of(leaves), [])
    check_consistency(empty, empty, [])
    with pytest.raises(ConsistencyError, match="want 0"):
        check_consistency(empty, cp_of(leaves), [leaves[0]])


def test_signed_checkpoints_end_to_end() -> None:
    leaves = random_leaves(40, seed=6)
    notes = [sign_checkpoint(cp_of(leaves[:n]), LAB) for n in (1, 17, 40)]
    cps = [verify_checkpoint(note, LAB.public_key, FID) for note in notes]
    for old, new in itertools.pairwise(cps):
        check_consistency(old, new, consistency_proof(leaves[: new.size], old.size))
    for index in (0, 16, 39):
        check_inclusion(cps[2], leaves[index], index, inclusion_proof(leaves, index))


def test_inclusion() -> None:
    leaves = random_leaves(11, seed=7)
    cp = cp_of(leaves)
    for index, leaf in enumerate(leaves):
        check_inclusion(cp, leaf, index, inclusion_proof(leaves, index))
    proof = inclusion_proof(leaves, 3)
    with pytest.raises(InclusionError, match=r"leaf 3 .* size 11"):
        check_inclusion(cp, leaves[4], 3, proof)
    with pytest.raises(InclusionError):
        check_inclusion(cp, leaves[3], 3, proof[:-1])
    with pytest.raises(InclusionError):
        check_inclusion(cp, leaves[3], 11, proof)


def test_nothing_but_protocol_errors_escape_open_note() -> None:
    for junk in ("", "\n", "\n\n", "\n\n\n", "\u2014 \n\n", "a\n\n\u2014 a b\n", b"\x80"):
        with pytest.raises(ProtocolError):
            open_note(junk, "PeterNeumann", go_public_key())


# -- the base64 and decimal helpers (notes here, proof files in protocol.proofs) --------


class _OtherError(DecodeError):
    """A caller's own decode error (as protocol.proofs' ProofFileError)."""


@pytest.mark.parametrize("text", ["AQI", "AQI=\n", "AQJ=", " AQI=", "AQI==", "AQ-_", "\u00e9"])
def test_decode_b64_takes_only_the_canonical_form(text: str) -> None:
    assert decode_b64("x", encode_b64(b"\x01\x02")) == b"\x01\x02"
    with pytest.raises(CheckpointError, match=r"^x: not"):
        decode_b64("x", text)
    with pytest.raises(_OtherError, match=r"^y: not"):
        decode_b64("y", text, _OtherError)


@pytest.mark.parametrize("text", ["", "01", "-1", "+1", " 1", "1 ", "1.0", "1e3", "\u0661",
                                  "1" * 21])
def test_decode_decimal_takes_plain_digits_only(text: str) -> None:
    assert [decode_decimal("n", t) for t in ("0", "7", "1" * 20)] == [0, 7, int("1" * 20)]
    with pytest.raises(CheckpointError, match=r"^n .*: want a decimal number"):
        decode_decimal("n", text)
    with pytest.raises(_OtherError, match="want a decimal number"):
        decode_decimal("n", text, _OtherError)
