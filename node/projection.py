"""The federation ledger kept up to date from the store's notification log.

The ledger's state is saved as one snapshot together with an eventsourcing
tracking record (the last notification id it reflects), in one transaction: a
crash at any moment leaves either the old snapshot and position or the new ones,
so catching up is exactly-once and resumes where it stopped. A small summary
(digest, balances, heads) is saved beside it, so that ``disco balance`` reads a
few bytes whatever the size of the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from federation.genesis import Genesis
from federation.ledger import Ledger
from node.store import FORKS, PAGE, FeedStore, is_feed
from protocol import canonical
from protocol.entry import Entry, decode_entry, sha256
from protocol.errors import ProtocolError

VIEW = "ledger"
CHECKPOINT_EVERY = 200_000
FIRST_PAGE = 16


@dataclass
class StoreFeeds:
    """:class:`federation.ledger.Feeds` over a :class:`FeedStore`."""

    store: FeedStore

    def entry(self, author: bytes, seq: int) -> Entry | None:
        return self.store.get(author, seq)

    def entries_after(self, author: bytes, seq: int) -> Iterator[Entry]:
        # Pages start small and grow: a feed woken from pending often settles only a
        # few entries before it waits again, and reading a full page on every wake
        # made catching up a log with many pending answers quadratic.
        page = FIRST_PAGE
        while True:
            rows = list(self.store.read_raw(author, after=seq, upto=seq + page,
                                            page=page + 1))
            for _, raw in rows:
                yield decode_entry(raw)
            if len(rows) < page:
                return
            seq = rows[-1][0]
            page = min(page * 4, PAGE)


def summary_of(ledger: Ledger, position: int, state: bytes | None = None) -> dict[str, Any]:
    """The small part of the ledger that ``disco balance`` and ``status`` show.

    ``state``, when given, is ``ledger.encode()`` already made: its hash is the digest.
    """
    return {
        "position": position,
        "state_digest": ledger.digest() if state is None else sha256(state),
        "balances": sorted([a, u, v] for (a, u), v in ledger.balances.items()),
        "heads": sorted([a, s.seq] for a, s in ledger.labs.items()),
        "invalid": len(ledger.invalid),
        "pending": len(ledger.pending),
    }


class LedgerProjection:
    """Loads, catches up and saves the ledger of one node's store."""

    def __init__(self, store: FeedStore, genesis: Genesis) -> None:
        self.store = store
        self.genesis = genesis
        self.feeds = StoreFeeds(store)

    def load(self) -> tuple[Ledger, int]:
        """The saved ledger and its position; a fresh one if none (or if damaged)."""
        position, state, _ = self.store.load_view(VIEW)
        if state is not None:
            try:
                return Ledger.restore(self.genesis, self.feeds, state), position
            except (ProtocolError, KeyError, ValueError, TypeError, IndexError):
                pass  # a damaged snapshot is rebuilt from the log, which is the truth
        return Ledger(self.genesis, self.feeds), 0

    def catch_up(self, ledger: Ledger | None = None, position: int = 0,
                 checkpoint_every: int = CHECKPOINT_EVERY) -> tuple[Ledger, int]:
        """Feed every notification after the saved position to the ledger and save it.

        Saves every ``checkpoint_every`` notifications and at the end. Returns the
        ledger and its new position.
        """
        if ledger is None:
            ledger, position = self.load()
        frozen = {a: p.seq for a, p in self.store.fork_proofs().items()}
        if frozen != ledger.frozen:
            # A fork proof freezes a feed at seq - 1: recompute without its tail.
            ledger, position = Ledger(self.genesis, self.feeds, frozen), 0
        saved = position
        since_save = 0
        feed: dict[str, bool] = {}  # is_feed of the few originators there are
        for nid, originator, _, raw in self.store.notifications(after=position):
            if originator == FORKS:
                if any(a not in ledger.frozen for a in self.store.fork_proofs()):
                    return self.catch_up(ledger, position, checkpoint_every)
                position = nid
                continue
            is_a_feed = feed.get(originator)
            if is_a_feed is None:
                is_a_feed = feed[originator] = is_feed(originator)
            if is_a_feed:
                ledger.receive(decode_entry(raw))
            position = nid
            since_save += 1
            if since_save >= checkpoint_every:
                self.save(ledger, position)
                saved, since_save = position, 0
        if position != saved:  # (a checkpoint at the very end is not written twice)
            self.save(ledger, position)
        return ledger, position

    def save(self, ledger: Ledger, position: int) -> None:
        state = ledger.encode()  # once: the digest is its hash
        self.store.save_view(VIEW, position, state,
                             canonical.encode(summary_of(ledger, position, state)))

    def rebuild(self) -> tuple[Ledger, int]:
        """Recompute the ledger from nothing over the whole log, and save it."""
        frozen = {a: p.seq for a, p in self.store.fork_proofs().items()}
        return self.catch_up(Ledger(self.genesis, self.feeds, frozen), 0)

    def summary(self) -> dict[str, Any]:
        """The saved summary, caught up first if the log has moved on."""
        position, _, summary = self.store.load_view(VIEW, state=False)
        if summary is None or position < self.store.max_notification_id():
            ledger, position = self.catch_up()
            return summary_of(ledger, position)
        value = canonical.decode(summary, max_size=2**31, what="ledger summary")
        assert isinstance(value, dict)
        return value
