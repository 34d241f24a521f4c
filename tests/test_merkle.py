"""Tests of protocol.merkle: RFC 9162 vectors, known answers and properties."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError, VerificationError
from protocol.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    LEAF_PREFIX,
    NODE_PREFIX,
    HashSizeError,
    MerkleError,
    ProofError,
    RootBuilder,
    RootMismatchError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# Shipped with the tests (tests/vectors/README.md says where they come from).
VECTOR_DIR = Path(__file__).resolve().parent / "vectors" / "rfc9162"


# --------------------------------------------------------------------------
# transparency-dev/merkle testdata vectors


def _vector_files() -> list[Any]:
    if not VECTOR_DIR.is_dir():
        # Keep one case so that a missing directory fails instead of skipping.
        return [pytest.param(None, id="vector-directory-missing")]
    return [
        pytest.param(p, id=p.relative_to(VECTOR_DIR).as_posix())
        for p in sorted(VECTOR_DIR.rglob("*.json"))
    ]


def _b64(value: object) -> bytes:
    """A base64 JSON field; null or missing is empty bytes."""
    if value is None:
        return b""
    assert isinstance(value, str)
    return base64.b64decode(value, validate=True)


def _proof(value: object) -> list[bytes]:
    """A JSON proof: null or missing is the empty list."""
    if value is None:
        return []
    assert isinstance(value, list)
    return [_b64(v) for v in value]


def test_vector_directory_is_complete() -> None:
    assert VECTOR_DIR.is_dir(), f"test vectors missing: {VECTOR_DIR}"
    inclusion = list((VECTOR_DIR / "inclusion").rglob("*.json"))
    consistency = list((VECTOR_DIR / "consistency").rglob("*.json"))
    assert len(inclusion) >= 50
    assert len(consistency) >= 50


@pytest.mark.parametrize("path", _vector_files())
def test_vector(path: Path | None) -> None:
    if path is None:
        pytest.fail(f"test vector directory missing: {VECTOR_DIR}")
    vector = json.loads(path.read_text())
    kind = path.relative_to(VECTOR_DIR).parts[0]
    want_err = vector["wantErr"]
    assert isinstance(want_err, bool)

    if kind == "inclusion":
        leaf = _b64(vector.get("leafHash"))
        index = vector["leafIdx"]
        size = vector["treeSize"]
        proof = _proof(vector.get("proof"))
        root = _b64(vector.get("root"))
        if want_err:
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, proof, root)
        else:
            verify_inclusion(leaf, index, size, proof, root)
            assert root_from_inclusion_proof(leaf, index, size, proof) == root
    elif kind == "consistency":
        size1 = vector["size1"]
        size2 = vector["size2"]
        proof = _proof(vector.get("proof"))
        root1 = _b64(vector.get("root1"))
        root2 = _b64(vector.get("root2"))
        if want_err:
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, proof, root1, root2)
        else:
            verify_consistency(size1, size2, proof, root1, root2)
            assert root_from_consistency_proof(size1, size2, proof, root1) == root2
    else:
        pytest.fail(f"unknown vector kind {kind!r}")


# --------------------------------------------------------------------------
# Known answers

# The RFC 6962 reference tree of transparency-dev/merkle (testonly/constants.go):
# leaf inputs and the root of each prefix of sizes 1..8.
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
REFERENCE_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    builder = RootBuilder()
    assert builder.size == 0
    assert builder.root() == EMPTY_ROOT


def test_constants_and_hashes() -> None:
    assert LEAF_PREFIX == b"\x00"
    assert NODE_PREFIX == b"\x01"
    assert HASH_SIZE == 32
    assert leaf_hash(b"data") == hashlib.sha256(b"\x00data").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()


def test_reference_tree_roots() -> None:
    hashes = [leaf_hash(d) for d in REFERENCE_LEAVES]
    builder = RootBuilder()
    for n, (h, want) in enumerate(zip(hashes, REFERENCE_ROOTS, strict=True), start=1):
        builder.append(h)
        assert builder.size == n
        assert builder.root() == want
        assert root_from_leaf_hashes(hashes[:n]) == want


def test_reference_proofs_match_vectors() -> None:
    # Proofs of the transparency-dev reference tree (the same ones the happy
    # path vectors hold), built by our generators.
    hashes = [leaf_hash(d) for d in REFERENCE_LEAVES]
    assert inclusion_proof(hashes[:8], 0) == [
        bytes.fromhex("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        bytes.fromhex("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        bytes.fromhex("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ]
    assert inclusion_proof(hashes[:3], 2) == [
        bytes.fromhex("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    ]
    assert consistency_proof(hashes[:8], 6) == [
        bytes.fromhex("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        bytes.fromhex("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        bytes.fromhex("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ]
    assert consistency_proof(hashes[:5], 2) == [
        bytes.fromhex("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        bytes.fromhex("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    ]
    assert consistency_proof(hashes[:1], 1) == []


def test_builder_state_is_logarithmic() -> None:
    builder = RootBuilder()
    leaf = leaf_hash(b"x")
    for n in range(1, 5000):
        builder.append(leaf)
        assert len(builder.hashes) == n.bit_count()
    assert builder.size == 4999


# --------------------------------------------------------------------------
# Errors


def test_error_hierarchy() -> None:
    assert issubclass(RootMismatchError, ProofError)
    assert issubclass(ProofError, MerkleError)
    assert issubclass(ProofError, VerificationError)
    assert issubclass(HashSizeError, MerkleError)
    assert issubclass(HashSizeError, LocalProtocolError)
    err = RootMismatchError(expected=b"\xaa" * 32, calculated=b"\xbb" * 32)
    assert err.expected == b"\xaa" * 32
    assert err.calculated == b"\xbb" * 32
    assert "aa" * 32 in str(err)
    assert "bb" * 32 in str(err)


def test_invalid_arguments_say_got_and_want() -> None:
    leaf = leaf_hash(b"a")
    with pytest.raises(ProofError, match="index: got 1, want < size 1"):
        verify_inclusion(leaf, 1, 1, [], leaf)
    with pytest.raises(ProofError, match="index: got -1, want >= 0"):
        verify_inclusion(leaf, -1, 1, [], leaf)
    with pytest.raises(ProofError, match="leaf_hash: got 3 bytes, want 32"):
        verify_inclusion(b"abc", 0, 1, [], leaf)
    with pytest.raises(ProofError, match="proof length: got 1, want 0"):
        verify_inclusion(leaf, 0, 1, [leaf], leaf)
    with pytest.raises(ProofError, match=r"proof\[0\]: got 31 bytes, want 32"):
        verify_inclusion(leaf, 0, 2, [leaf[:31]], leaf)
    with pytest.raises(ProofError, match="size1: got 3, want <= size2 2"):
        verify_consistency(3, 2, [], leaf, leaf)
    with pytest.raises(ProofError, match="size1: got 0, want > 0"):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(ProofError, match="index: got 2, want < size 2"):
        inclusion_proof([leaf, leaf], 2)
    with pytest.raises(ProofError, match="size1: got 3, want <= size2 2"):
        consistency_proof([leaf, leaf], 3)
    with pytest.raises(ProofError, match="size1: got 0, want > 0"):
        consistency_proof([leaf, leaf], 0)
    with pytest.raises(HashSizeError, match="right: got 0 bytes, want 32"):
        node_hash(leaf, b"")
    builder = RootBuilder()
    with pytest.raises(HashSizeError, match="leaf_hash: got 33 bytes, want 32"):
        builder.append(leaf + b"x")
    assert builder.size == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: verify_inclusion(None, 0, 1, [], EMPTY_ROOT),  # type: ignore[arg-type]
        lambda: verify_inclusion(EMPTY_ROOT, "0", 1, [], EMPTY_ROOT),  # type: ignore[arg-type]
        lambda: verify_inclusion(EMPTY_ROOT, 0, 2, None, EMPTY_ROOT),  # type: ignore[arg-type]
        lambda: verify_inclusion(EMPTY_ROOT, 0, 2, EMPTY_ROOT, EMPTY_ROOT),  # type: ignore[arg-type]
        lambda: verify_inclusion(EMPTY_ROOT, 0, 2, [None], EMPTY_ROOT),  # type: ignore[list-item]
        lambda: verify_inclusion(EMPTY_ROOT, 0, 1, [], None),  # type: ignore[arg-type]
        lambda: verify_inclusion(EMPTY_ROOT, 2**64 - 1, 1, [], EMPTY_ROOT),
        lambda: verify_consistency(1, 1, [], None, EMPTY_ROOT),  # type: ignore[arg-type]
        lambda: verify_consistency(1, 2, [], EMPTY_ROOT, EMPTY_ROOT),
        lambda: verify_consistency(1, 2, [b""], EMPTY_ROOT, EMPTY_ROOT),
        lambda: verify_consistency(3, 4, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT),
        lambda: verify_consistency(1, 2, [EMPTY_ROOT], b"short", EMPTY_ROOT),
        lambda: verify_consistency(1, 2, [EMPTY_ROOT], EMPTY_ROOT, None),  # type: ignore[arg-type]
        lambda: verify_consistency(-1, 2, [], EMPTY_ROOT, EMPTY_ROOT),
        lambda: verify_consistency(1.0, 2, [], EMPTY_ROOT, EMPTY_ROOT),  # type: ignore[arg-type]
    ],
)
def test_garbage_is_rejected_with_proof_error_only(call: Any) -> None:
    with pytest.raises(ProofError):
        call()


def test_root_mismatch_reports_both_roots() -> None:
    hashes = [leaf_hash(bytes([i])) for i in range(5)]
    root = root_from_leaf_hashes(hashes)
    proof = inclusion_proof(hashes, 3)
    with pytest.raises(RootMismatchError) as info:
        verify_inclusion(hashes[2], 3, 5, proof, root)
    assert info.value.expected == root
    assert info.value.calculated == root_from_inclusion_proof(hashes[2], 3, 5, proof)


# --------------------------------------------------------------------------
# Properties


def _reference_mth(hashes: list[bytes]) -> bytes:
    """MTH of RFC 9162 section 2.1.1, written directly from the definition."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(
        b"\x01" + _reference_mth(hashes[:k]) + _reference_mth(hashes[k:])
    ).digest()


# Distinct leaf data, so that no two leaves share a hash: with equal leaves a
# proof for one index can honestly be a valid proof for another.
leaf_lists = st.lists(st.binary(max_size=16), min_size=1, max_size=200, unique=True).map(
    lambda data: [leaf_hash(d) for d in data]
)


@settings(max_examples=60, deadline=None)
@given(leaf_lists)
def test_builder_matches_batch_root(hashes: list[bytes]) -> None:
    builder = RootBuilder()
    for n, h in enumerate(hashes, start=1):
        builder.append(h)
        assert builder.size == n
        assert len(builder.hashes) == n.bit_count()
    root = root_from_leaf_hashes(hashes)
    assert builder.root() == root
    assert root == _reference_mth(hashes)


@settings(max_examples=40, deadline=None)
@given(leaf_lists)
def test_every_inclusion_proof_verifies(hashes: list[bytes]) -> None:
    size = len(hashes)
    root = root_from_leaf_hashes(hashes)
    for index, h in enumerate(hashes):
        proof = inclusion_proof(hashes, index)
        verify_inclusion(h, index, size, proof, root)
        assert root_from_inclusion_proof(h, index, size, proof) == root


@settings(max_examples=100, deadline=None)
@given(leaf_lists, st.data())
def test_consistency_proof_verifies(hashes: list[bytes], data: st.DataObject) -> None:
    size2 = data.draw(st.integers(1, len(hashes)), label="size2")
    size1 = data.draw(st.integers(1, size2), label="size1")
    prefix = hashes[:size2]
    root1 = root_from_leaf_hashes(hashes[:size1])
    root2 = root_from_leaf_hashes(prefix)
    proof = consistency_proof(prefix, size1)
    if size1 == size2:
        assert proof == []
    verify_consistency(size1, size2, proof, root1, root2)
    assert root_from_consistency_proof(size1, size2, proof, root1) == root2


def _flip(proof: list[bytes], element: int, bit: int) -> list[bytes]:
    changed = bytearray(proof[element])
    changed[bit // 8] ^= 1 << (bit % 8)
    return [*proof[:element], bytes(changed), *proof[element + 1 :]]


@settings(max_examples=150, deadline=None)
@given(leaf_lists.filter(lambda h: len(h) >= 2), st.data())
def test_tampered_inclusion_proof_fails(hashes: list[bytes], data: st.DataObject) -> None:
    size = len(hashes)
    root = root_from_leaf_hashes(hashes)
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(hashes, index)
    assert proof  # size >= 2: at least one sibling

    element = data.draw(st.integers(0, len(proof) - 1), label="element")
    bit = data.draw(st.integers(0, HASH_SIZE * 8 - 1), label="bit")
    with pytest.raises(RootMismatchError):
        verify_inclusion(hashes[index], index, size, _flip(proof, element, bit), root)

    wrong = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="wrong")
    with pytest.raises(ProofError):
        verify_inclusion(hashes[index], wrong, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(hashes[wrong], index, size, proof, root)


@settings(max_examples=150, deadline=None)
@given(leaf_lists.filter(lambda h: len(h) >= 2), st.data())
def test_tampered_consistency_proof_fails(hashes: list[bytes], data: st.DataObject) -> None:
    size2 = len(hashes)
    size1 = data.draw(st.integers(1, size2 - 1), label="size1")
    root1 = root_from_leaf_hashes(hashes[:size1])
    root2 = root_from_leaf_hashes(hashes)
    proof = consistency_proof(hashes, size1)
    assert proof  # size1 < size2: never empty

    element = data.draw(st.integers(0, len(proof) - 1), label="element")
    bit = data.draw(st.integers(0, HASH_SIZE * 8 - 1), label="bit")
    with pytest.raises(RootMismatchError):
        verify_consistency(size1, size2, _flip(proof, element, bit), root1, root2)

    wrong1 = data.draw(st.integers(1, size2).filter(lambda s: s != size1), label="wrong size1")
    with pytest.raises(ProofError):
        verify_consistency(wrong1, size2, proof, root1, root2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, root2, root1)
    # A well-formed root1 of another tree: only the root1 check can catch it
    # when size1 is not a power of two (the proof then carries its own seed).
    other_root1 = root_from_leaf_hashes([leaf_hash(b"other"), *hashes[1:size1]])
    with pytest.raises(RootMismatchError) as info:
        verify_consistency(size1, size2, proof, other_root1, root2)
    if size1 & (size1 - 1):
        assert info.value.expected == other_root1
