"""Which received entries a node keeps: the decisions of ingest, free of I/O.

An :class:`Intake` takes the entries of one batch (from a peer, a bundle) in order
and decides for each, from the roster, the federation id, the fork proofs held and
what the store holds (through the two lookups it is given):

- a LAB outside the roster, or another federation: the batch is refused (raises);
- at or past the seq where a fork proof froze its feed: passed over;
- at a seq already held: passed over, or, with another hash, a fork (the held entry
  and this one make a proof; the feed is frozen from that seq);
- otherwise it must continue its feed (seq and prev: raises when it does not) and is
  kept.

Signatures are not its business: the node checks the entries it is told to keep,
on every core, before it stores any (node/lab.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from enum import Enum

from federation.errors import RuleViolation
from federation.governance import Member, Outcome
from federation.kinds import entry_body
from protocol.entry import Entry, FeedVerifier
from protocol.errors import WrongAuthorError, WrongFederationError

HeadLookup = Callable[[bytes], tuple[int, bytes | None]]
"""author -> (seq, head hash) of the feed as stored (0, None when empty)."""
EntryLookup = Callable[[bytes, int], Entry | None]
"""(author, seq) -> the stored entry, or None."""


class Verdict(Enum):
    """What :meth:`Intake.take` decided for one entry."""

    KEEP = "keep"
    HELD = "held"
    FROZEN = "frozen"
    FORK = "fork"


class Intake:
    """The decisions for one batch of received entries (see the module)."""

    def __init__(self, roster: Collection[bytes], federation_id: bytes,
                 frozen: Mapping[bytes, int], head: HeadLookup, stored: EntryLookup,
                 waiting: Mapping[bytes, int] | None = None) -> None:
        """``waiting`` maps a feed to the seq from which its entries wait for a key
        not yet in force here (a recovery or repair being voted): they are passed
        over in this batch, and taken once the decision is held."""
        self.roster = roster
        self.federation_id = federation_id
        self.frozen = dict(frozen)
        self.waiting = dict(waiting or {})
        self._head = head
        self._stored = stored
        self._feeds: dict[bytes, FeedVerifier] = {}
        self._kept: dict[tuple[bytes, int], Entry] = {}
        self.passed_over = 0
        self.fork: tuple[Entry, Entry] | None = None
        """The (held, received) pair of the last :attr:`Verdict.FORK`."""

    def take(self, entry: Entry) -> Verdict:
        """Decide for ``entry``, the next of the batch.

        Raises :class:`WrongAuthorError` (not a roster LAB), :class:`WrongFederationError`
        or :class:`BrokenChainError` (does not continue its feed).
        """
        if entry.author not in self.roster:
            raise WrongAuthorError(f"entry {entry.where}: author is not a member LAB")
        if entry.header.federation_id != self.federation_id:
            raise WrongFederationError(f"entry {entry.where}: another federation's entry")
        limit = self.frozen.get(entry.author)
        if limit is None:
            limit = self.waiting.get(entry.author)
        if limit is not None and entry.seq >= limit:
            self.passed_over += 1
            return Verdict.FROZEN
        feed = self._feeds.get(entry.author)
        if feed is None:
            seq, head = self._head(entry.author)
            feed = self._feeds[entry.author] = FeedVerifier(self.federation_id,
                                                            entry.author, seq, head)
        if entry.seq <= feed.head_seq:
            self.passed_over += 1
            held = self._kept.get((entry.author, entry.seq)) or self._stored(entry.author,
                                                                             entry.seq)
            if held is None or held.hash == entry.hash:
                return Verdict.HELD
            self.frozen[entry.author] = entry.seq
            self.fork = (held, entry)
            return Verdict.FORK
        feed.check_link(entry)
        feed.advance(entry)
        self._kept[(entry.author, entry.seq)] = entry
        return Verdict.KEEP

    def kept(self) -> list[Entry]:
        """The entries to store, in the order taken: those kept, less any at or past
        a fork found later in the batch."""
        return [e for e in self._kept.values()
                if e.author not in self.frozen or e.seq < self.frozen[e.author]]


class KeysInForce:
    """The key that verifies each entry of a batch taken in feed order: the key in
    force by the decisions held (:meth:`~federation.governance.Member.key_at`), with
    the ``key.rotated`` entries met earlier in the batch taken as the decisions take
    them (:meth:`~federation.governance.Member.rotate`), so a recovery decided for
    a later seq still wins over them."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self._rotated: dict[bytes, Member] = {}
        """Per LAB that rotated in this batch: its roster entry with those rotations."""

    def take(self, entry: Entry) -> bytes:
        """The key for ``entry``, the next of its feed in this batch (O(1) unless its
        LAB rotated in the batch)."""
        author, seq = entry.author, entry.seq
        member = self._rotated.get(author) or self.outcome.members.get(author)
        key = member.key_at(seq) if member is not None else author
        if entry.kind == "key.rotated" and member is not None:
            try:
                body = entry_body(entry)
            except RuleViolation:
                body = None
            if body is not None:
                if author not in self._rotated:
                    member = self._rotated[author] = replace(member, keys=list(member.keys))
                member.rotate(seq, body["key"])
        return key
