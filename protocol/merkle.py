"""RFC 9162 (Certificate Transparency v2, same hashing as RFC 6962) Merkle trees.

Pure functions on bytes, no I/O, in the style of transparency-dev/merkle. The
rules this module keeps:

* Hashing is SHA-256 with domain separation: a leaf is
  ``SHA-256(LEAF_PREFIX || data)``, an inner node is
  ``SHA-256(NODE_PREFIX || left || right)``, and the empty tree's root is
  ``SHA-256(b"")`` (:data:`EMPTY_ROOT`). Every hash is :data:`HASH_SIZE` bytes.
* The tree over ``n`` leaves is the one of RFC 9162 section 2.1.1: its left
  subtree holds the largest power of two of leaves strictly below ``n``. Leaf
  indices are 0-based; a tree of ``size`` leaves has indices ``0 .. size-1``.
* Proofs are lists of hashes ordered from the leaf level up to the root, as in
  RFC 9162 sections 2.1.3 and 2.1.4 (PATH and PROOF/SUBPROOF).
* Verification follows transparency-dev/merkle ``proof/verify.go``
  (RFC 9162 sections 2.1.3.2 and 2.1.4.2) decision for decision. Every input
  is checked first (sizes, index, hash lengths, proof length) and a bad one
  raises :class:`ProofError` whose message reads ``"<what>: got X, want Y"``;
  only then are hashes computed, and a computed root that differs from the
  expected one raises :class:`RootMismatchError`. Success returns ``None``.
  Nothing is raised but these two (no ``IndexError``, ``TypeError`` ...).
* A consistency proof needs ``0 < size1 <= size2``: one from size 0 is
  meaningless and is rejected, even towards size 0 (as in current Go). Between
  equal sizes the proof is empty and the two roots are only compared byte for
  byte.
* Tree-building helpers (:func:`node_hash`, :class:`RootBuilder`,
  :func:`root_from_leaf_hashes`) reject a hash that is not ``HASH_SIZE``
  bytes with :class:`HashSizeError`: that is a local programming error.

Errors fit the ``protocol.errors`` split: :class:`ProofError` is a
:class:`~protocol.errors.VerificationError` (the proof or the claims checked
against it came from elsewhere and are wrong), :class:`HashSizeError` is a
:class:`~protocol.errors.LocalProtocolError`; both are :class:`MerkleError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from protocol.errors import LocalProtocolError, ProtocolError, VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "HashSizeError",
    "MerkleError",
    "ProofError",
    "RootBuilder",
    "RootMismatchError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

LEAF_PREFIX = b"\x00"
"""Domain-separation prefix of a leaf hash (RFC 9162 section 2.1.1)."""

NODE_PREFIX = b"\x01"
"""Domain-separation prefix of an inner node hash (RFC 9162 section 2.1.1)."""

HASH_SIZE = 32
"""Length in bytes of every hash: leaf, node, root and proof element."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root of the tree with no leaves: ``SHA-256(b"")``."""


class MerkleError(ProtocolError):
    """Base of the errors raised by :mod:`protocol.merkle`. Not raised directly."""


class ProofError(MerkleError, VerificationError):
    """A proof, or the sizes, index or hashes it is checked against, is invalid.

    Raised for bad arguments (``"<what>: got X, want Y"``) before any hashing,
    and, through :class:`RootMismatchError`, when the proof does not verify.
    """


class RootMismatchError(ProofError):
    """The root computed from a proof differs from the expected root.

    ``expected`` is the root the caller supplied, ``calculated`` the one the
    proof leads to.
    """

    def __init__(self, expected: bytes, calculated: bytes) -> None:
        super().__init__(f"root mismatch: calculated {_hex(calculated)}, expected {_hex(expected)}")
        self.expected = expected
        self.calculated = calculated


class HashSizeError(MerkleError, LocalProtocolError):
    """A tree-building function was given a hash that is not HASH_SIZE bytes."""


def _hex(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else repr(value)


# --------------------------------------------------------------------------
# Hashing


def _hash_children(left: bytes, right: bytes) -> bytes:
    # Unchecked: callers have validated both inputs.
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _check_hash(what: str, value: object, error: type[MerkleError]) -> bytes:
    if not isinstance(value, bytes):
        raise error(f"{what}: got {type(value).__name__}, want bytes")
    if len(value) != HASH_SIZE:
        raise error(f"{what}: got {len(value)} bytes, want {HASH_SIZE}")
    return value


def _check_size(what: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProofError(f"{what}: got {type(value).__name__}, want int")
    if value < 0:
        raise ProofError(f"{what}: got {value}, want >= 0")
    return value


def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 hash of one leaf: ``SHA-256(LEAF_PREFIX || data)``.

    Accepts any ``data`` (including empty); returns HASH_SIZE bytes; raises
    nothing for bytes input.
    """
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 hash of an inner node: ``SHA-256(NODE_PREFIX || left || right)``.

    Raises :class:`HashSizeError` unless both children are HASH_SIZE bytes.
    """
    _check_hash("left", left, HashSizeError)
    _check_hash("right", right, HashSizeError)
    return _hash_children(left, right)


# --------------------------------------------------------------------------
# Tree hashes


class RootBuilder:
    """Incremental RFC 9162 tree hash over leaf hashes appended one at a time.

    Keeps only the roots of the perfect subtrees that make up the tree so far
    (a compact range starting at 0): one per set bit of :attr:`size`, so at
    most ``size.bit_length()`` hashes. Suitable for streaming a feed of any
    length; ``root()`` may be called at any point and costs O(log size).
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._hashes: list[bytes] = []
        self._size = 0

    @classmethod
    def from_state(cls, size: int, hashes: Sequence[bytes]) -> RootBuilder:
        """Resume from a saved ``(size, hashes)``. Raises :class:`ProofError` unless
        there is one HASH_SIZE hash per set bit of ``size``."""
        if type(size) is not int or size < 0 or len(hashes) != bin(size).count("1"):
            raise ProofError(f"compact range: got {len(hashes)} hashes for size {size!r}, "
                             f"want one per set bit")
        for h in hashes:
            _check_hash("compact range hash", h, ProofError)
        builder = cls()
        builder._hashes = [bytes(h) for h in hashes]
        builder._size = size
        return builder

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees covering ``[0, size)``, largest (leftmost) first."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Append the next leaf, given by its leaf hash (see :func:`leaf_hash`).

        Raises :class:`HashSizeError` unless ``leaf_hash`` is HASH_SIZE bytes;
        the builder is unchanged in that case.
        """
        _check_hash("leaf_hash", leaf_hash, HashSizeError)
        hashes = self._hashes
        hashes.append(leaf_hash)
        # Each trailing 1-bit of the old size is a perfect subtree of the same
        # height as the one just completed on its right: merge them.
        n = self._size
        while n & 1:
            right = hashes.pop()
            hashes[-1] = _hash_children(hashes[-1], right)
            n >>= 1
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append each leaf hash in order. Raises like :meth:`append`.

        On error the leaves before the bad one stay appended.
        """
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """The RFC 9162 root of the leaves appended so far (EMPTY_ROOT if none)."""
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = _hash_children(h, acc)
        return acc


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 root (MTH) of the tree with these leaf hashes, in order.

    Returns EMPTY_ROOT for an empty sequence. Raises :class:`HashSizeError` if a
    leaf hash is not HASH_SIZE bytes.
    """
    builder = RootBuilder()
    builder.extend(leaf_hashes)
    return builder.root()


# --------------------------------------------------------------------------
# Proof generation (RFC 9162 sections 2.1.3.1 and 2.1.4.1)


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_root(leaf_hashes: Sequence[bytes], begin: int, end: int) -> bytes:
    """MTH(D[begin:end]) for ``begin < end``, leaf hashes already checked."""
    n = end - begin
    if n == 1:
        return leaf_hashes[begin]
    k = _split(n)
    return _hash_children(
        _subtree_root(leaf_hashes, begin, begin + k),
        _subtree_root(leaf_hashes, begin + k, end),
    )


def _checked_leaves(leaf_hashes: Sequence[bytes]) -> Sequence[bytes]:
    for i, h in enumerate(leaf_hashes):
        _check_hash(f"leaf_hashes[{i}]", h, ProofError)
    return leaf_hashes


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The inclusion proof PATH(index, D[n]) of RFC 9162 section 2.1.3.1.

    ``n = len(leaf_hashes)``. The proof lists sibling subtree roots from the
    leaf level up; it verifies with ``verify_inclusion(leaf_hashes[index],
    index, n, proof, root_from_leaf_hashes(leaf_hashes))``. O(n) time.

    Raises :class:`ProofError` unless ``0 <= index < n`` and every leaf hash is
    HASH_SIZE bytes.
    """
    size = len(leaf_hashes)
    index = _check_size("index", index)
    if index >= size:
        raise ProofError(f"index: got {index}, want < size {size}")
    leaves = _checked_leaves(leaf_hashes)

    proof: list[bytes] = []
    begin, end, m = 0, size, index
    # PATH(m, D[begin:end]) = PATH(m', half containing m) : MTH(other half).
    # Walking down collects the siblings root-first; reverse at the end.
    while end - begin > 1:
        k = _split(end - begin)
        if m < k:
            proof.append(_subtree_root(leaves, begin + k, end))
            end = begin + k
        else:
            proof.append(_subtree_root(leaves, begin, begin + k))
            begin, m = begin + k, m - k
    proof.reverse()
    return proof


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """The consistency proof PROOF(size1, D[n]) of RFC 9162 section 2.1.4.1.

    Proves that the tree of the first ``size1`` leaves is a prefix of the tree
    of all ``n = len(leaf_hashes)`` leaves. It verifies with
    ``verify_consistency(size1, n, proof, root1, root2)``. The proof is empty
    when ``size1 == n``. O(n) time.

    Raises :class:`ProofError` unless ``0 < size1 <= n`` (a proof from the
    empty tree is meaningless and :func:`verify_consistency` rejects it) and
    every leaf hash is HASH_SIZE bytes.
    """
    size1, size2 = _check_consistency_sizes(size1, len(leaf_hashes))
    leaves = _checked_leaves(leaf_hashes)
    if size1 == size2:
        return []

    proof: list[bytes] = []
    begin, end, m, complete = 0, size2, size1, True
    # SUBPROOF(m, D[begin:end], complete), walked top-down, reversed at the end.
    while m != end - begin:
        k = _split(end - begin)
        if m <= k:
            proof.append(_subtree_root(leaves, begin + k, end))
            end = begin + k
        else:
            proof.append(_subtree_root(leaves, begin, begin + k))
            begin, m, complete = begin + k, m - k, False
    if not complete:
        # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        proof.append(_subtree_root(leaves, begin, end))
    proof.reverse()
    return proof


# --------------------------------------------------------------------------
# Verification (transparency-dev/merkle proof/verify.go)


def _verify_match(calculated: bytes, expected: bytes) -> None:
    if calculated != expected:
        raise RootMismatchError(expected=expected, calculated=calculated)


def _decomp_incl_proof(index: int, size: int) -> tuple[int, int]:
    """Lengths of the inner and border parts of the inclusion proof of ``index``.

    The split is where the paths to leaves ``index`` and ``size - 1`` diverge.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 0:
            seed = _hash_children(seed, h)
        else:
            seed = _hash_children(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = _hash_children(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = _hash_children(h, seed)
    return seed


def _proof_items(proof: Sequence[bytes]) -> list[bytes]:
    if not isinstance(proof, Sequence) or isinstance(proof, (bytes, bytearray, str)):
        raise ProofError(f"proof: got {type(proof).__name__}, want a sequence of hashes")
    return list(proof)


def _check_proof(items: list[bytes], want: int) -> list[bytes]:
    if len(items) != want:
        raise ProofError(f"proof length: got {len(items)}, want {want}")
    for i, h in enumerate(items):
        _check_hash(f"proof[{i}]", h, ProofError)
    return items


def _check_inclusion_args(leaf_hash: bytes, index: int, size: int) -> tuple[int, int]:
    index = _check_size("index", index)
    size = _check_size("size", size)
    if index >= size:
        raise ProofError(f"index: got {index}, want < size {size}")
    _check_hash("leaf_hash", leaf_hash, ProofError)
    return index, size


def _check_consistency_sizes(size1: int, size2: int) -> tuple[int, int]:
    size1 = _check_size("size1", size1)
    size2 = _check_size("size2", size2)
    if size2 < size1:
        raise ProofError(f"size1: got {size1}, want <= size2 {size2}")
    if size1 == 0:
        raise ProofError("size1: got 0, want > 0 (a proof from the empty tree is meaningless)")
    return size1, size2


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root of a ``size``-leaf tree implied by an inclusion proof.

    Given the hash of the leaf at ``index`` and its proof, returns the root the
    proof leads to (RFC 9162 section 2.1.3.2). It does not compare it with
    anything: use :func:`verify_inclusion` for that.

    Raises :class:`ProofError` unless ``0 <= index < size``, ``leaf_hash`` and
    every proof element are HASH_SIZE bytes, and ``len(proof)`` is the exact
    length for ``(index, size)``.
    """
    index, size = _check_inclusion_args(leaf_hash, index, size)
    inner, border = _decomp_incl_proof(index, size)
    items = _check_proof(_proof_items(proof), inner + border)

    res = _chain_inner(leaf_hash, items[:inner], index)
    return _chain_border_right(res, items[inner:])


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the ``size``-leaf tree with ``root``.

    Returns ``None`` on success. Raises :class:`ProofError` on an invalid
    argument (as :func:`root_from_inclusion_proof`, plus a ``root`` that is
    not HASH_SIZE bytes), and :class:`RootMismatchError` if the proof leads to
    another root.
    """
    _check_inclusion_args(leaf_hash, index, size)
    _check_hash("root", root, ProofError)
    calculated = root_from_inclusion_proof(leaf_hash, index, size, proof)
    _verify_match(calculated, root)


def root_from_consistency_proof(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> bytes:
    """The root of the ``size2``-leaf tree implied by a consistency proof from ``root1``.

    Requires ``0 < size1 <= size2``. Checks the part of the proof that
    rebuilds ``root1`` (RFC 9162 section 2.1.4.2) and returns the ``size2``
    root the proof leads to. If ``size1 == size2`` the proof must be empty and
    ``root1`` is returned as is.

    Raises :class:`ProofError` if ``size2 < size1``, if ``size1 == 0`` (even
    when ``size2 == 0``: a proof from the empty tree is meaningless, as in
    transparency-dev/merkle), if ``size1 == size2`` and the proof is not
    empty, if ``root1`` or a proof element is not HASH_SIZE bytes, or if
    ``len(proof)`` is wrong for ``(size1, size2)``; raises
    :class:`RootMismatchError` if the proof does not rebuild ``root1``.
    """
    size1, size2 = _check_consistency_sizes(size1, size2)
    items = _proof_items(proof)
    if size1 == size2:
        _check_proof(items, 0)
        return root1
    if not items:
        raise ProofError("proof length: got 0, want > 0 when size1 < size2")
    _check_hash("root1", root1, ProofError)

    inner, border = _decomp_incl_proof(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros of size1
    inner -= shift  # shift < inner since size1 < size2

    # The proof starts with the root of the perfect subtree of size 2^shift
    # that ends at size1, unless size1 is that subtree (then it is root1).
    start = 0 if size1 == 1 << shift else 1
    _check_proof(items, start + inner + border)
    seed = root1 if start == 0 else items[0]
    items = items[start:]
    # Now items is the suffix of the inclusion proof of leaf size1-1 in the
    # tree of size2, from level `shift` up.

    mask = (size1 - 1) >> shift
    hash1 = _chain_inner_right(seed, items[:inner], mask)
    hash1 = _chain_border_right(hash1, items[inner:])
    _verify_match(hash1, root1)

    hash2 = _chain_inner(seed, items[:inner], mask)
    return _chain_border_right(hash2, items[inner:])


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the ``size1`` tree with ``root1`` is a prefix of the ``size2`` tree (``root2``).

    Requires ``0 < size1 <= size2``. Returns ``None`` on success. With
    ``size1 == size2`` the proof must be empty and the roots are only compared
    byte for byte, as in transparency-dev/merkle.

    Raises :class:`ProofError` on an invalid argument (see
    :func:`root_from_consistency_proof`; also a ``root2`` that is not HASH_SIZE
    bytes when ``size1 < size2``) and :class:`RootMismatchError` if either root
    does not match what the proof leads to.
    """
    size1, size2 = _check_consistency_sizes(size1, size2)
    if size1 != size2:
        _check_hash("root2", root2, ProofError)
    calculated = root_from_consistency_proof(size1, size2, proof, root1)
    _verify_match(calculated, root2)
