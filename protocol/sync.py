"""Sync messages between nodes (sans-I/O): frontiers, wants, entry streams, fork
proofs and the signed-request envelope.

- A frontier is ``[[author, seq, head_hash], ...]`` sorted by author: O(feeds) bytes,
  so two nodes already in sync settle it in one round trip.
- Entries travel as an *entry stream*: concatenated msgpack ``bin`` items, each one
  entry's bytes verbatim. :class:`EntryStreamDecoder` takes arbitrary chunks and
  yields entry bytes, refusing oversize items and anything that is not a bin.
- A fork proof is two validly signed entries of one author at one seq with
  different hashes; it verifies on its own.
- A node-to-node request is signed over
  ``b"disco-ledger/request/v2\\x00" + packb([method, path, ts_ms, body_sha256, to])``
  where ``to`` is the LAB id of the node the request is meant for; the body hash
  travels in a header too, so the receiver checks the signature before it reads any
  body, then the body against the hash as it streams in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol import canonical
from protocol.entry import (
    HASH_SIZE,
    MAX_ENTRY_SIZE,
    Entry,
    check_signature,
    decode_entry,
    sha256,
    short,
)
from protocol.errors import DecodeError, OversizeError, SchemaError, VerificationError

MEDIA_TYPE = "application/vnd.disco-ledger+msgpack"
REQUEST_PREFIX = b"disco-ledger/request/v2\x00"
MAX_MESSAGE = 1024 * 1024
"""A frontier or wants message: 1 MiB is ~20k feeds."""
MAX_SEQ = 2**63 - 1
"""The largest seq a feed can reach (the store keeps seqs as signed 64-bit)."""

Frontier = dict[bytes, tuple[int, bytes]]


def encode_frontier(frontier: Mapping[bytes, tuple[int, bytes | None]],
                    forks: Iterable[bytes] = ()) -> bytes:
    """``{"frontier": [[author, seq, head]...], "forks": [author...]}``, canonical."""
    rows = sorted([a, s, h] for a, (s, h) in frontier.items() if s > 0)
    return canonical.encode({"frontier": rows, "forks": sorted(forks)})


def _is_hash(v: Any) -> bool:
    return isinstance(v, bytes) and len(v) == HASH_SIZE


def decode_frontier(data: bytes) -> tuple[Frontier, list[bytes]]:
    """Parse a frontier message. Raises :class:`DecodeError`/:class:`SchemaError`."""
    msg = canonical.decode(data, max_size=MAX_MESSAGE, what="frontier")
    if not isinstance(msg, dict) or set(msg) != {"frontier", "forks"}:
        raise SchemaError("frontier: want a map with frontier and forks")
    frontier: Frontier = {}
    for row in msg["frontier"] if isinstance(msg["frontier"], list) else [None]:
        if (not isinstance(row, list) or len(row) != 3 or not _is_hash(row[0])
                or type(row[1]) is not int or row[1] < 1 or not _is_hash(row[2])):
            raise SchemaError("frontier: want rows of [author bin 32, seq >= 1, head bin 32]")
        if row[0] in frontier:
            raise SchemaError(f"frontier: author {short(row[0])} twice")
        frontier[row[0]] = (row[1], row[2])
    forks = msg["forks"]
    if not isinstance(forks, list) or not all(_is_hash(f) for f in forks):
        raise SchemaError("frontier: forks must be a list of authors")
    return frontier, forks


def encode_wants(wants: Mapping[bytes, int], limit: int) -> bytes:
    """A pull request: for each author, the seq after which entries are wanted."""
    return canonical.encode({"wants": sorted([a, s] for a, s in wants.items()),
                             "limit": limit})


def decode_wants(data: bytes, max_limit: int) -> tuple[dict[bytes, int], int]:
    """Parse a pull request; the limit is capped at ``max_limit``. Raises SchemaError."""
    msg = canonical.decode(data, max_size=MAX_MESSAGE, what="wants")
    if not isinstance(msg, dict) or set(msg) != {"wants", "limit"}:
        raise SchemaError("wants: want a map with wants and limit")
    limit = msg["limit"]
    if type(limit) is not int or limit < 1:
        raise SchemaError("wants: limit must be a whole number >= 1")
    limit = min(limit, max_limit)
    wants: dict[bytes, int] = {}
    for row in msg["wants"] if isinstance(msg["wants"], list) else [None]:
        if (not isinstance(row, list) or len(row) != 2 or not _is_hash(row[0])
                or type(row[1]) is not int or row[1] < 0):
            raise SchemaError("wants: want rows of [author bin 32, after seq >= 0]")
        if row[1] > MAX_SEQ - limit:
            raise SchemaError(f"wants: after seq {row[1]} plus the limit passes the "
                              f"largest seq a feed can have ({MAX_SEQ})")
        if row[0] in wants:
            raise SchemaError(f"wants: author {short(row[0])} twice")
        wants[row[0]] = row[1]
    return wants, limit


def frame(raw: bytes) -> bytes:
    """One entry as an item of an entry stream."""
    return msgpack.packb(raw, use_bin_type=True)  # type: ignore[no-any-return]


class EntryStreamDecoder:
    """Incremental decoder of an entry stream (concatenated msgpack bin items).

    :meth:`feed` takes any chunk and returns the complete entries' bytes so far;
    :meth:`close` raises :class:`DecodeError` if the stream ended mid-item. Items
    that are not bin, or larger than an entry may be, raise at once; so does the
    item past ``max_items`` (:class:`OversizeError`), when given.
    """

    def __init__(self, max_items: int | None = None) -> None:
        self.max_items = max_items
        self._unpacker = msgpack.Unpacker(
            raw=False, max_bin_len=MAX_ENTRY_SIZE, max_str_len=0, max_array_len=0,
            max_map_len=0, max_ext_len=0, max_buffer_size=2 * MAX_ENTRY_SIZE + 16)
        self._count = 0
        self._fed = 0
        self._done = 0  # stream offset just past the last complete item

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        view = memoryview(chunk)
        step = MAX_ENTRY_SIZE
        for start in range(0, len(view), step):
            try:
                part = view[start:start + step]
                self._unpacker.feed(part)
                self._fed += len(part)
                for item in self._unpacker:
                    if not isinstance(item, bytes):
                        raise DecodeError(f"entry stream item {self._count}: "
                                          f"got {type(item).__name__}, want bin")
                    self._count += 1
                    if self.max_items is not None and self._count > self.max_items:
                        raise OversizeError(f"entry stream: more than {self.max_items} "
                                            "entries")
                    self._done = self._unpacker.tell()
                    out.append(item)
            except (DecodeError, OversizeError):
                raise
            except msgpack.BufferFull:
                raise OversizeError(f"entry stream item {self._count} exceeds "
                                    f"{MAX_ENTRY_SIZE} bytes") from None
            except (ValueError, msgpack.UnpackException) as e:
                if "max_bin_len" in str(e):
                    raise OversizeError(f"entry stream item {self._count} exceeds "
                                        f"{MAX_ENTRY_SIZE} bytes") from None
                raise DecodeError(f"entry stream item {self._count}: {e}") from None
        return out

    def close(self) -> None:
        """Raise :class:`DecodeError` if the stream ended inside an item."""
        # Not the unpacker's tell(): it counts the bytes of a header read before
        # the item's data, so a stream cut just after a header would pass.
        if self._done != self._fed:
            raise DecodeError(f"entry stream ends inside item {self._count}")


def decode_entry_stream(data: bytes, max_items: int | None = None) -> Iterator[bytes]:
    """All entry bytes in a complete stream. Raises :class:`DecodeError`, and
    :class:`OversizeError` past ``max_items`` entries."""
    decoder = EntryStreamDecoder(max_items)
    yield from decoder.feed(data)
    decoder.close()


@dataclass(frozen=True)
class ForkProof:
    """Two validly signed entries of one feed at one seq with different hashes."""

    first: Entry
    second: Entry

    @property
    def author(self) -> bytes:
        return self.first.author

    @property
    def seq(self) -> int:
        return self.first.seq

    def encode(self) -> bytes:
        a, b = sorted([self.first.raw, self.second.raw])
        return canonical.encode([a, b])


def make_fork_proof(a: Entry, b: Entry, key: bytes | None = None) -> ForkProof:
    """Check that ``a`` and ``b`` fork one feed, and pair them.

    ``key``: the key in force at that seq of the feed (its LAB id unless the LAB
    rotated or recovered its key; :func:`~protocol.entry.check_signature`). Raises
    :class:`VerificationError` when they are not a fork (another author, seq or
    federation, the same entry) or a signature fails.
    """
    if (a.author, a.seq, a.header.federation_id) != (b.author, b.seq, b.header.federation_id):
        raise VerificationError("fork proof: entries differ in author, seq or federation")
    if a.hash == b.hash:
        raise VerificationError("fork proof: both entries are the same")
    check_signature(a, key)
    check_signature(b, key)
    first, second = sorted([a, b], key=lambda e: e.raw)
    return ForkProof(first, second)


def decode_fork_proof(data: bytes,
                      key_at: Callable[[bytes, int], bytes | None] | None = None, *,
                      _trusted: bool = False) -> ForkProof:
    """Parse and verify a fork proof, its signatures under ``key_at(author, seq)``
    (the key in force there; default, or when it gives None: the LAB id). Raises
    DecodeError or VerificationError.

    ``_trusted`` (private): the bytes are a proof this node verified when it stored
    it; the signatures are not checked again (a key rotated since may no longer be
    the one ``key_at`` names)."""
    value = canonical.decode(data, max_size=2 * MAX_ENTRY_SIZE + 64, what="fork proof")
    if not isinstance(value, list) or len(value) != 2 or not all(
            isinstance(v, bytes) for v in value):
        raise SchemaError("fork proof: want [entry bin, entry bin]")
    a, b = decode_entry(value[0]), decode_entry(value[1])
    if _trusted:
        first, second = sorted([a, b], key=lambda e: e.raw)
        return ForkProof(first, second)
    return make_fork_proof(a, b, key_at(a.author, a.seq) if key_at else None)


def request_message(method: str, path: str, ts_ms: int, body_hash: bytes, to: bytes
                    ) -> bytes:
    """The bytes a node signs for one HTTP request to the node of LAB ``to``;
    ``body_hash`` is the SHA-256 of the request body (:func:`hash_body`)."""
    packed: bytes = msgpack.packb([method.upper(), path, ts_ms, body_hash, to],
                                  use_bin_type=True)
    return REQUEST_PREFIX + packed


def hash_body(body: bytes) -> bytes:
    """The hash a signed request carries for its body."""
    return sha256(body)
