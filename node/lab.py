"""A LAB's node as a synchronous service: join, author entries, read, verify.

The command line and (later) the HTTP server call this; it ties the home folder,
the key, the genesis and the store together. Every authored entry is checked
against the LAB's own feed (:class:`federation.kinds.LabState`) before it is
signed, so an honest node never signs an invalid entry; the check and the append
happen at the same head, retried if another writer got there first.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.errors import FederationError, RuleViolation
from federation.genesis import Genesis, load_genesis_file
from federation.kinds import LabState
from node.home import Home
from node.store import FeedStore, Problem
from protocol.entry import Entry, sign_entry
from protocol.keys import Signer


class NodeError(Exception):
    """A request the node refuses; the message is one line for a person."""


@dataclass
class LabNode:
    """An opened node: home, store, genesis (once joined) and, for writing, the key."""

    home: Home
    store: FeedStore
    genesis: Genesis | None
    signer: Signer | None = None
    _states: dict[bytes, LabState] = field(default_factory=dict)

    @classmethod
    def open(cls, home: Home, signer: Signer | None = None) -> LabNode:
        """Open the node's store. Raises ``StoreError`` or ``GenesisError``."""
        genesis = home.genesis()
        return cls(home, FeedStore(home.store_config()), genesis, signer)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> LabNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def lab_id(self) -> bytes:
        return self.home.lab_id

    def require_genesis(self) -> Genesis:
        if self.genesis is None:
            raise NodeError("this LAB has not joined a federation yet; run 'disco join FILE'")
        return self.genesis

    # -- writing ---------------------------------------------------------------

    def join(self, genesis_file: Path, now_us: int) -> Entry:
        """Join the federation of ``genesis_file``: keep a copy, author ``lab.joined``.

        Raises ``GenesisError`` for a damaged file, :class:`NodeError` when this LAB
        is not on its roster or already joined another federation.
        """
        genesis = load_genesis_file(genesis_file)
        if not genesis.is_member(self.lab_id):
            raise NodeError(
                f"LAB {self.lab_id.hex()} is not named in {genesis_file}; "
                "ask the federation to add it"
            )
        if self.genesis is not None and self.genesis.federation_id != genesis.federation_id:
            raise NodeError("this LAB already joined another federation")
        if self.store.head(self.lab_id)[0] > 0:
            raise NodeError("this LAB has already joined")
        if self.genesis is None:
            tmp = self.home.genesis_path.with_suffix(".tmp")
            shutil.copyfile(genesis_file, tmp)
            tmp.replace(self.home.genesis_path)
            self.genesis = genesis
        return self.author("lab.joined", {"federation": genesis.federation_id,
                                          "name": self.home.name}, now_us)

    def author(self, kind: str, body: Mapping[str, Any], now_us: int) -> Entry:
        """Check, sign and store one entry of this LAB's feed; return it.

        Raises :class:`RuleViolation` (nothing signed or stored) when the entry would
        be invalid, :class:`NodeError` when the node has no key or no federation.
        """
        return self.author_many([(kind, body)], now_us)[0]

    def author_many(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], now_us: int
    ) -> list[Entry]:
        """Check, sign and store several entries in one transaction (all or none)."""
        genesis = self.require_genesis()
        signer = self.signer
        if signer is None:
            raise NodeError("this command needs the LAB key")
        fid = genesis.federation_id

        def build(seq: int, head: bytes | None) -> list[Entry]:
            state = copy.deepcopy(self.feed_state(self.lab_id, upto=seq))
            entries = []
            for kind, body in items:
                state.check(kind, body)
                seq += 1
                entry = sign_entry(signer, federation_id=fid, seq=seq, prev=head,
                                   ts_us=now_us, kind=kind, body=body)
                state.apply(kind, body)
                entries.append(entry)
                head = entry.hash
            return entries

        return self.store.append_own(build, self.lab_id)

    # -- reading ---------------------------------------------------------------

    def feed_state(self, author: bytes, upto: int | None = None) -> LabState:
        """The chain-local state of ``author``'s feed, caught up to ``upto`` (or the head).

        Cached and advanced incrementally; entries are read from the store, which
        verified them when they were stored.
        """
        genesis = self.require_genesis()
        state = self._states.get(author)
        if state is None or (upto is not None and state.seq > upto):
            state = LabState(genesis.federation_id, genesis.roster, author)
            self._states[author] = state
        for entry in self.store.read_feed(author, after=state.seq, upto=upto):
            state.observe(entry)
        return state

    def feeds(self) -> list[bytes]:
        """The roster's LAB ids, this LAB first."""
        genesis = self.require_genesis()
        others = [lab.id for lab in genesis.labs if lab.id != self.lab_id]
        return [self.lab_id, *others]

    def log(self, author: bytes | None = None) -> Iterator[Entry]:
        """Entries of one feed, or of every roster feed in turn, streamed."""
        for a in [author] if author else self.feeds():
            yield from self.store.read_feed(a)

    def verify(self) -> list[Problem]:
        """Every problem in the store (empty when sound)."""
        genesis = self.require_genesis()
        return list(self.store.verify(genesis.federation_id, [lab.id for lab in genesis.labs]))


__all__ = ["FederationError", "LabNode", "NodeError", "RuleViolation"]
