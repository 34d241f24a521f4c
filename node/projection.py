"""The federation ledger kept up to date from the store's notification log.

The ledger's state is saved as one snapshot together with an eventsourcing
tracking record (the last notification id it reflects), in one transaction: a
crash at any moment leaves either the old snapshot and position or the new ones,
so catching up is exactly-once and resumes where it stopped. A small summary
(digest, balances, heads) is saved beside it, so that ``disco balance`` reads a
few bytes whatever the size of the log.

Which catch-ups check the entries they apply. A catch-up from a saved position
trusts the entries after it: this node verified each one when it stored it (at
ingest, or when it signed it), and reading them back without checking their bytes
again (``decode_entry(raw, _trusted=True)``) is what keeps a node's catch-up quick.
A *re-derivation* checks every entry it applies with the rules of ``disco verify``
(:class:`node.store.StoreCheck`: signature, chain link, body hash, seq) and applies
none that fails, nor any later entry of that feed, reporting each in
:attr:`LedgerProjection.skipped`. The re-derivations are
``disco rebuild`` (:meth:`LedgerProjection.rebuild` with ``verify=True``) and a
catch-up that starts from nothing because no saved ledger is there or it is
damaged. Recomputing after a new fork proof, from entries this node verified when
it stored them, trusts them as a catch-up does; so does :meth:`LedgerProjection.rebuild`
without ``verify`` (benchmarks, tests comparing two derivations).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from federation.errors import SnapshotError
from federation.genesis import Genesis
from federation.ledger import Ledger
from node.readahead import READ_AHEAD_MIN, rows
from node.store import (
    ASIDE,
    FORKS,
    PAGE,
    FeedStore,
    Problem,
    StoreCheck,
    check_signatures,
    is_feed,
)
from protocol import canonical
from protocol.entry import Entry, check_signature, decode_entry, sha256
from protocol.errors import ProtocolError

VIEW = "ledger"
CHECKPOINT_EVERY = 500_000
FIRST_PAGE = 16
VERIFY_BATCH = 2048
"""A verified catch-up checks the signatures of this many entries at a time."""


RECENT = 8192
"""A catch-up keeps at hand the last RECENT to 2 x RECENT entries it has passed."""

PROGRESS_EVERY = 1000
"""A catch-up with a ``progress`` callback calls it every this many notifications."""
NEVER = 1 << 62
"""A notification id no store reaches (no ``progress``: no report; an int compares
fastest with an int)."""


@dataclass
class StoreFeeds:
    """:class:`federation.ledger.Feeds` over a :class:`FeedStore`.

    A catch-up tells it each entry it passes (:meth:`passing`), and the most recent
    of them are kept at hand (:data:`RECENT`): a reference to a recent entry, like
    the acknowledgement of a recent contribution, then costs no query (one query
    costs about as much as settling ten entries). Stored entries never change.
    """

    store: FeedStore
    limit: dict[str, int] | None = None
    """During a verified catch-up: per feed (hex), the last seq checked and sound;
    nothing past it is served (it is served once the catch-up has checked it)."""
    held: dict[str, int] = field(default_factory=dict)
    """Feeds (hex) held at a seq because the next entry failed its check: nothing past
    that seq is served."""
    _recent: dict[tuple[str, int], bytes] = field(default_factory=dict, init=False,
                                                  repr=False)
    _older: dict[tuple[str, int], bytes] = field(default_factory=dict, init=False,
                                                 repr=False)

    def _top(self, author: str) -> int | None:
        """The last seq of ``author``'s feed that may be served; None: no bound."""
        top = self.held.get(author)
        if self.limit is not None:
            checked = self.limit.get(author, 0)
            top = checked if top is None else min(top, checked)
        return top

    def entry(self, author: bytes, seq: int) -> Entry | None:
        key = (author.hex(), seq)
        if self.limit is not None or self.held:
            top = self._top(key[0])
            if top is not None and seq > top:
                return None
        raw = self._recent.get(key) or self._older.get(key)
        if raw is None:
            rows = list(self.store.read_raw(author, after=seq - 1, upto=seq, page=1))
            if not rows:
                return None
            raw = rows[0][1]
        return decode_entry(raw, _trusted=True)

    def passing(self, originator: str, version: int, raw: bytes) -> None:
        """Keep at hand ``raw``, the stored entry (originator, version) a catch-up is
        passing."""
        recent = self._recent
        recent[originator, version] = raw
        if len(recent) >= RECENT:
            self._older, self._recent = recent, {}

    def forget(self) -> None:
        """Drop the entries kept at hand (when a catch-up ends)."""
        self._recent, self._older = {}, {}

    def entries_after(self, author: bytes, seq: int) -> Iterator[Entry]:
        # Pages start small and grow: a feed woken from pending often settles only a
        # few entries before it waits again, and reading a full page on every wake
        # made catching up a log with many pending answers quadratic.
        page = FIRST_PAGE
        top = self._top(author.hex()) if self.limit is not None or self.held else None
        while True:
            upto = seq + page if top is None else min(seq + page, top)
            if upto <= seq:
                return
            rows = list(self.store.read_raw(author, after=seq, upto=upto,
                                            page=page + 1))
            for _, raw in rows:
                yield decode_entry(raw, _trusted=True)
            if len(rows) < page:
                return
            seq = rows[-1][0]
            page = min(page * 4, PAGE)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector, then restore its previous state.

    Catching up creates millions of long-lived objects (the ledger's records) and
    no reference cycles, so the collector's passes, each over more objects than the
    last, would only spend time: more than a tenth of a large catch-up.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def summary_of(ledger: Ledger, position: int, state: bytes | None = None) -> dict[str, Any]:
    """The small part of the ledger that ``disco balance`` and ``status`` show, with
    the roster's names (``[id, name]``, in the order decided: founders first).

    ``state``, when given, is ``ledger.encode()`` already made: its hash is the digest.
    """
    return {
        "position": position,
        "state_digest": ledger.digest() if state is None else sha256(state),
        "balances": sorted([a, u, v] for (a, u), v in ledger.balances.items()),
        "heads": sorted([a, s.seq] for a, s in ledger.labs.items()),
        "roster": [[lab, ledger.lab_name(lab)] for lab in ledger.outcome.members],
        "invalid": len(ledger.invalid),
        "pending": len(ledger.pending),
    }


@dataclass
class Skipped:
    """What a verified catch-up did not apply: each entry that failed a check (feed,
    seq, code, reason), and per feed held back the first seq not applied and how
    many of its entries from there on were not applied."""

    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    held: dict[str, list[int]] = field(default_factory=dict)

    def hold(self, author: str, seq: int) -> None:
        """Entry ``seq`` of ``author``'s feed is not applied (nor any after it)."""
        held = self.held.get(author)
        if held is None:
            self.held[author] = [seq, 1]
        else:
            held[1] += 1

    def as_json(self) -> dict[str, Any]:
        return {"checked": self.checked,
                "skipped": [p.as_json() for p in self.problems],
                "held": [{"author": a, "from_seq": s, "not_applied": n}
                         for a, (s, n) in sorted(self.held.items())]}


def _signs(entry: Entry, key: bytes) -> bool:
    """Whether ``entry``'s signature verifies under ``key``."""
    try:
        check_signature(entry, key)
    except ProtocolError:
        return False
    return True


class LedgerProjection:
    """Loads, catches up and saves the ledger of one node's store."""

    def __init__(self, store: FeedStore, genesis: Genesis,
                 read_ahead_min: int = READ_AHEAD_MIN) -> None:
        """``read_ahead_min``: from this many notifications behind, a catch-up reads
        ahead in a second process (:mod:`node.readahead`)."""
        self.store = store
        self.genesis = genesis
        self.feeds = StoreFeeds(store)
        self.read_ahead_min = read_ahead_min
        self.skipped: Skipped | None = None
        """What the last verified catch-up skipped (None when it trusted the entries)."""
        self.progress: Callable[[int], None] | None = None

    def load(self) -> tuple[Ledger, int]:
        """The saved ledger and its position; a fresh one if none (or if damaged)."""
        position, state, _ = self.store.load_view(VIEW)
        if state is not None:
            try:
                return Ledger.restore(self.genesis, self.feeds, state), position
            except SnapshotError:
                pass  # a damaged snapshot is rebuilt from the log, which is the truth
        return Ledger(self.genesis, self.feeds), 0

    def catch_up(self, ledger: Ledger | None = None, position: int = 0,
                 checkpoint_every: int = CHECKPOINT_EVERY, *,
                 verify: bool | None = None,
                 progress: Callable[[int], None] | None = None) -> tuple[Ledger, int]:
        """Feed every notification after the saved position to the ledger and save it.

        Saves every ``checkpoint_every`` notifications and at the end. Returns the
        ledger and its new position. ``verify`` checks each entry before applying it
        (see the module's notes); by default only a catch-up that finds no saved
        ledger (or a damaged one) to start from does. ``progress``, if given, is
        called with the notification id reached every :data:`PROGRESS_EVERY`
        notifications (from the thread that catches up).
        """
        self.progress = progress
        try:
            with _collector_paused():
                return self._catch_up(ledger, position, checkpoint_every, verify)
        finally:
            self.feeds.forget()
            self.feeds.limit = None

    def _catch_up(self, ledger: Ledger | None, position: int,
                  checkpoint_every: int, verify: bool | None) -> tuple[Ledger, int]:
        if ledger is None:
            ledger, position = self.load()
            if verify is None:
                verify = position == 0
        frozen = {a: p.seq for a, p in self.store.fork_proofs().items()}
        if frozen != ledger.frozen:
            # A fork proof freezes a feed at seq - 1: recompute without its tail.
            ledger, position = Ledger(self.genesis, self.feeds, frozen), 0
        if verify:
            return self._verified_catch_up(ledger, position, checkpoint_every)
        saved = position
        since_save = 0
        feed: dict[str, bool] = {}  # is_feed of the few originators there are
        notifications = rows(self.store, position, read_ahead_min=self.read_ahead_min)
        new_fork = False
        started = position
        progress = self.progress
        report_at = position + PROGRESS_EVERY if progress is not None else NEVER
        try:
            for nid, originator, version, raw in notifications:
                if nid >= report_at:
                    progress(nid)  # type: ignore[misc]
                    report_at = nid + PROGRESS_EVERY
                if originator == FORKS:
                    if any(a not in ledger.frozen for a in self.store.fork_proofs()):
                        new_fork = True
                        break
                    position = nid
                    continue
                if started and originator.startswith(ASIDE):
                    # A repair set entries aside (here or in another process): this
                    # ledger may have settled them. Recompute from the log, which no
                    # longer holds them.
                    ledger, new_fork = Ledger(self.genesis, self.feeds, frozen), True
                    position = 0
                    break
                is_a_feed = feed.get(originator)
                if is_a_feed is None:
                    is_a_feed = feed[originator] = is_feed(originator)
                if is_a_feed:
                    self.feeds.passing(originator, version, raw)
                    ledger.receive(raw, _trusted=True)
                position = nid
                since_save += 1
                if since_save >= checkpoint_every:
                    self.save(ledger, position)
                    saved, since_save = position, 0
        finally:
            notifications.close()  # stops a reader process, if any
        if new_fork:  # (its reader stopped first: the recomputation starts its own)
            return self._catch_up(ledger, position, checkpoint_every, False)
        if position != saved:  # (a checkpoint at the very end is not written twice)
            self.save(ledger, position)
        return ledger, position

    def _verified_catch_up(self, ledger: Ledger, position: int,
                           checkpoint_every: int) -> tuple[Ledger, int]:
        """:meth:`_catch_up` applying only entries that pass :class:`StoreCheck`.

        Rows are checked in order; signatures a batch at a time on the other cores
        while the batch before is applied here. A feed whose entry fails is held
        before it (``feeds.held``): the ledger never reads past that entry, neither
        here nor when a reference wakes the feed.
        """
        # Membership and the key in force are read from the ledger as it is built (a
        # roster grows, keys rotate, as the log is read), at the row's turn in apply.
        check = StoreCheck(self.genesis.federation_id, None, signatures=False)
        skipped = self.skipped = Skipped()
        feeds = self.feeds
        feeds.held = {}
        feeds.limit = limit = {}
        saved = position
        since_save = 0
        Batch = list[tuple[int, str, int, Entry | Problem | None]]
        batch: Batch = []
        waiting: tuple[Batch, Callable[[], list[bool]]] | None = None
        notifications = rows(self.store, position, read_ahead_min=self.read_ahead_min)
        new_fork = False
        progress = self.progress

        def apply(batch: Batch, signatures: Callable[[], list[bool]]) -> None:
            nonlocal position, since_save, saved
            if progress is not None and batch:
                progress(batch[0][0])
            sound = iter(signatures())
            for nid, originator, version, found in batch:
                if isinstance(found, Entry):
                    signed = next(sound)  # (under the LAB's id; else under its key now)
                    key = ledger.outcome.key_at(found.author, found.seq)
                    if key is None:
                        found = Problem(originator, version, "not-in-roster",
                                        "feed of an author outside the roster")
                    elif key != found.author:
                        found = StoreCheck.bad_signature(found, key) if not _signs(
                            found, key) else found
                    elif not signed:
                        found = StoreCheck.bad_signature(found)
                if isinstance(found, Problem):
                    skipped.problems.append(found)
                if is_feed(originator) and bytes.fromhex(originator) in ledger.roster:
                    skipped.checked += 1
                    if found is None or isinstance(found, Problem) or originator in feeds.held:
                        # (None: a row after one that could not be read at all)
                        feeds.held.setdefault(originator, version - 1)
                        skipped.hold(originator, version)
                    else:
                        limit[originator] = version
                        feeds.passing(originator, version, found.raw)
                        ledger.receive(found)
                position = nid
                since_save += 1
                if since_save >= checkpoint_every:
                    self.save(ledger, position)
                    saved, since_save = position, 0

        def push(batch: Batch, last: bool = False) -> None:
            """Start checking the signatures of ``batch``; apply the batch before it
            meanwhile (and this one too when it is the ``last`` before a pause)."""
            nonlocal waiting
            signatures = check_signatures([f for *_, f in batch if isinstance(f, Entry)])
            if waiting is not None:
                apply(*waiting)
            waiting = None
            if last:
                apply(batch, signatures)
            else:
                waiting = (batch, signatures)

        try:
            for nid, originator, version, raw in notifications:
                if originator == FORKS:
                    push(batch, last=True)
                    batch = []
                    if any(a not in ledger.frozen for a in self.store.fork_proofs()):
                        new_fork = True
                        break
                batch.append((nid, originator, version, check.row(originator, version, raw)))
                if len(batch) >= VERIFY_BATCH:
                    push(batch)
                    batch = []
            if not new_fork:
                push(batch, last=True)
        finally:
            notifications.close()  # stops a reader process, if any
        if new_fork:
            return self._catch_up(ledger, position, checkpoint_every, True)
        if position != saved:
            self.save(ledger, position)
        return ledger, position

    def save(self, ledger: Ledger, position: int) -> None:
        state = ledger.encode()  # once: the digest is its hash
        self.store.save_view(VIEW, position, state,
                             canonical.encode(summary_of(ledger, position, state)))

    def rebuild(self, *, verify: bool = False,
                progress: Callable[[int], None] | None = None) -> tuple[Ledger, int]:
        """Recompute the ledger from nothing over the whole log, and save it.

        ``verify`` checks every entry first and skips what fails (``disco rebuild``;
        :attr:`skipped` says what); without it the stored entries are trusted.
        """
        frozen = {a: p.seq for a, p in self.store.fork_proofs().items()}
        return self.catch_up(Ledger(self.genesis, self.feeds, frozen), 0, verify=verify,
                             progress=progress)

    def summary(self) -> dict[str, Any]:
        """The saved summary, caught up first if the log has moved on (and saved again
        when it was saved without the roster, by an older version)."""
        position, _, summary = self.store.load_view(VIEW, state=False)
        value = (canonical.decode(summary, max_size=2**31, what="ledger summary")
                 if summary is not None and position >= self.store.max_notification_id()
                 else None)
        if isinstance(value, dict) and "roster" in value:
            return value
        ledger, position = self.catch_up()
        if value is not None:
            self.save(ledger, position)
        return summary_of(ledger, position)
