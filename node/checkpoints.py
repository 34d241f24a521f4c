"""Signed checkpoints of feeds, kept in the store.

- Each feed is a Merkle log over its entry hashes (leaf = RFC 9162 leaf hash of the
  entry hash). A compact range per feed (O(log n) hashes) is kept as a projection
  view and extended with new entries, so the root at the head costs O(new entries).
- A LAB signs checkpoints of its own feed (C2SP signed note); the node keeps the
  latest checkpoint it has seen of every feed (aggregate ``checkpoints-<author>``).
- A checkpoint from a peer is checked against the entries held: same size and
  another root means the LAB rewrote its history; the conflicting checkpoint is
  kept as evidence (aggregate ``conflicts``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from eventsourcing.persistence import IntegrityError, StoredEvent

from node.store import FeedStore
from protocol import canonical, merkle
from protocol.checkpoint import Checkpoint, origin_for, sign_checkpoint, verify_checkpoint
from protocol.entry import decode_entry
from protocol.errors import ProtocolError
from protocol.keys import Signer

CONFLICTS = "conflicts"
LATEST_PAGE = 50
"""Checkpoints read per query when looking for the latest within a size."""


def _aggregate(author: bytes) -> str:
    return f"checkpoints-{author.hex()}"


@dataclass
class CheckpointBook:
    """Checkpoints and Merkle roots of the feeds in one store."""

    store: FeedStore
    federation_id: bytes
    keys_of: Callable[[bytes], Sequence[bytes] | None] | None = None
    """A LAB's keys: the one in force first (a rotated or recovered one), then those
    it used before (:meth:`~node.lab.LabNode.keys_of`); default: its id alone."""

    def _key(self, author: bytes) -> bytes | None:
        keys = self.keys_of(author) if self.keys_of is not None else None
        return keys[0] if keys else None

    def _verified(self, note: bytes, author: bytes) -> Checkpoint:
        """A checkpoint this store kept: it verified under the LAB's key in force when
        it came, which may since have been rotated. Raises ``ProtocolError``."""
        keys = self.keys_of(author) if self.keys_of is not None else None
        error: ProtocolError | None = None
        for key in (author, *(keys or ())):
            try:
                return verify_checkpoint(note, author, self.federation_id, key)
            except ProtocolError as e:
                error = error or e
        assert error is not None
        raise error

    def builder(self, author: bytes) -> merkle.RootBuilder:
        """The feed's Merkle compact range, caught up with the stored entries."""
        name = f"merkle-{author.hex()}"
        _, state, _ = self.store.load_view(name)
        builder = merkle.RootBuilder()
        if state is not None:
            size, hashes = canonical.decode(state, max_size=1 << 16, what="merkle state")
            builder = merkle.RootBuilder.from_state(size, hashes)
        start = builder.size
        builder.extend(_leaves(self.store, author, after=builder.size))
        if builder.size != start:
            self.store.save_view(name, 0, canonical.encode([builder.size,
                                                            list(builder.hashes)]), b"")
        return builder

    def root_at(self, author: bytes, size: int) -> bytes | None:
        """The feed's root over its first ``size`` entries, or None if not held."""
        head = self.builder(author)
        if size == head.size:
            return head.root()
        if size > head.size:
            return None
        partial = merkle.RootBuilder()
        partial.extend(_leaves(self.store, author, upto=size))
        return partial.root()

    def latest(self, author: bytes, max_size: int | None = None,
               ) -> tuple[Checkpoint, bytes] | None:
        """The latest checkpoint held of ``author``'s feed and its note bytes; with
        ``max_size``, the latest of at most that many entries (None if none is)."""
        below: int | None = None  # version bound of the next page, newest first
        while True:
            rows = self.store.recorder.select_events(_aggregate(author), desc=True,
                                                     lte=below, limit=LATEST_PAGE)
            for row in rows:
                cp = self._verified(row.state, author)
                if max_size is None or cp.size <= max_size:
                    return cp, row.state
            if len(rows) < LATEST_PAGE:
                return None
            below = rows[-1].originator_version - 1

    def _keep(self, author: bytes, note: bytes) -> None:
        rows = self.store.recorder.select_events(_aggregate(author), desc=True, limit=1)
        version = rows[0].originator_version + 1 if rows else 1
        try:
            self.store.recorder.insert_events(
                [StoredEvent(_aggregate(author), version, "checkpoint", note)])
        except IntegrityError:
            pass  # another writer kept one at the same moment: either will do

    def sign_own(self, signer: Signer, author: bytes | None = None) -> tuple[Checkpoint, bytes]:
        """Sign (if the feed grew) and keep a checkpoint of this LAB's own feed
        (``author``, the LAB id: the signer's key until the LAB rotates it)."""
        author = author or signer.public_key
        builder = self.builder(author)
        held = self.latest(author)
        if held is not None and held[0].size == builder.size:
            return held
        cp = Checkpoint(origin_for(self.federation_id, author), builder.size, builder.root())
        note = sign_checkpoint(cp, signer).encode()
        self._keep(author, note)
        return cp, note

    def accept(self, author: bytes, note: bytes) -> str | None:
        """Check a checkpoint a peer passed on; keep it if newer. Returns a conflict
        message when it contradicts the entries held (the LAB rewrote its history),
        else None. A note already held costs one lookup; the first conflict of an
        author is kept as evidence, and no more (one proves the rewrite).
        Raises ``ProtocolError`` when the note does not verify."""
        held = self.latest(author)
        if held is not None and held[1] == note:
            return None
        cp = verify_checkpoint(note, author, self.federation_id, self._key(author))
        root = self.root_at(author, cp.size)
        if root is not None and root != cp.root:
            if all(a != author for a, _ in self.conflicts()):
                try:
                    self.store.recorder.insert_events(
                        [StoredEvent(CONFLICTS, self._next_conflict(), "checkpoint.conflict",
                                     canonical.encode([author, note]))])
                except IntegrityError:
                    pass  # another writer kept one at the same moment
            return (f"LAB {author.hex()[:8]} signed a checkpoint at size {cp.size} whose "
                    "root differs from its entries held here: it rewrote its history")
        if held is None or cp.size > held[0].size:
            self._keep(author, note)
        return None

    def _next_conflict(self) -> int:
        rows = self.store.recorder.select_events(CONFLICTS, desc=True, limit=1)
        return rows[0].originator_version + 1 if rows else 1

    def conflicts(self) -> list[tuple[bytes, bytes]]:
        """(author, checkpoint note) of every conflicting checkpoint received."""
        out = []
        for row in self.store.recorder.select_events(CONFLICTS):
            author, note = canonical.decode(row.state, max_size=1 << 20, what="conflict")
            out.append((author, note))
        return out


def _leaves(store: FeedStore, author: bytes, after: int = 0,
            upto: int | None = None) -> Iterator[bytes]:
    """Leaf hashes (RFC 9162 leaf hash of the entry hash) of a feed's stored entries."""
    for _, raw in store.read_raw(author, after=after, upto=upto):
        yield merkle.leaf_hash(decode_entry(raw).hash)


def leaf_hashes(store: FeedStore, author: bytes, size: int) -> list[bytes]:
    """Leaf hashes of the first ``size`` entries of a feed (32 bytes each)."""
    return list(_leaves(store, author, upto=size))
