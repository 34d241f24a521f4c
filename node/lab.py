"""A LAB's node as a synchronous service: join, author entries, read, verify.

The command line and (later) the HTTP server call this; it ties the home folder,
the key, the genesis and the store together. Every authored entry is checked
against the LAB's own feed (:class:`federation.kinds.LabState`) before it is
signed, so an honest node never signs an invalid entry; the check and the append
happen at the same head, the writers of one home taking turns, and are retried
if another writer got there first.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.errors import FederationError, PendingReference, RuleViolation
from federation.genesis import Genesis
from federation.intake import Intake, Verdict
from federation.ledger import Ledger
from node.errors import NodeError
from node.home import WRITER_WAIT_S, Home, load_genesis_file
from node.projection import PROGRESS_EVERY, LedgerProjection, Skipped
from node.store import SIGNATURE_CHUNK, FeedStore, Problem, SeqTaken, StoreCheck, verify_pool
from protocol.entry import Entry, Ref, check_signature, decode_entry, sign_entry
from protocol.errors import BadSignatureError, WrongAuthorError, WrongFederationError
from protocol.keys import Signer
from protocol.sync import ForkProof, make_fork_proof


def _first_bad_signature(entries: list[Entry]) -> int:
    """Index of the first entry whose signature does not verify, or -1. Runs in a
    worker thread: libsodium releases the GIL, so the workers use every core."""
    for i, entry in enumerate(entries):
        try:
            check_signature(entry)
        except BadSignatureError:
            return i
    return -1


class SignatureChecks:
    """Entries' signatures checked in a pool of threads, in chunks, while the caller
    goes on; :meth:`finish` raises :class:`BadSignatureError` for the first entry, in
    the order added, whose signature fails."""

    def __init__(self) -> None:
        self._chunk: list[Entry] = []
        self._running: list[tuple[list[Entry], Future[int]]] = []

    def add(self, entry: Entry) -> None:
        self._chunk.append(entry)
        if len(self._chunk) >= SIGNATURE_CHUNK:
            self._running.append((self._chunk, verify_pool().submit(_first_bad_signature,
                                                                    self._chunk)))
            self._chunk = []

    def finish(self) -> None:
        """Wait for every check so far; raise for the first bad signature."""
        last, self._chunk = self._chunk, []
        tail = _first_bad_signature(last)  # here, while the pool works on the rest
        running, self._running = self._running, []
        for chunk, future in [*running, (last, None)]:
            bad = future.result() if future is not None else tail
            if bad >= 0:
                for _, rest in running:
                    rest.cancel()
                check_signature(chunk[bad])  # raises the entry's own error


@dataclass(frozen=True)
class IngestResult:
    """What :meth:`LabNode.ingest` did: new entries stored, entries skipped (held or
    frozen), and fork proofs newly learned."""

    stored: int
    skipped: int
    forks: list[ForkProof]


@dataclass
class LabNode:
    """An opened node: home, store, genesis (once joined) and, for writing, the key."""

    home: Home
    store: FeedStore
    genesis: Genesis | None
    signer: Signer | None = None
    lock_wait_s: float = WRITER_WAIT_S
    skipped: Skipped | None = None
    """What the last :meth:`rebuild` did not apply, and why."""
    _ledger: Ledger | None = field(default=None, repr=False)
    _position: int = 0
    _pending_ledger: Ledger | None = field(default=None, repr=False)

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

    @property
    def position(self) -> int:
        """The store's notification id that the ledger of :meth:`ledger` has read up
        to: the same position, the same ledger (the dashboard caches pages by it)."""
        return self._position

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
        """Check, sign and store several entries in one transaction (all or none).

        Processes writing to this LAB's feed take turns (:meth:`Home.writer_lock`,
        at most ``lock_wait_s`` seconds of waiting): each checks, signs and appends
        at the head it has just read. A writer that does not take the lock (another
        machine on a shared PostgreSQL store, a peer relaying this LAB's entries back)
        is caught by the store: the loser re-reads the head and builds again, so a
        second writer never makes a LAB fork its own log. A node restored from a
        backup refuses (``WaitingForSync``) until a sync with a peer has brought it
        its own feed (:meth:`Home.check_may_author`).
        """
        self.home.check_may_author()
        genesis = self.require_genesis()
        signer = self.signer
        if signer is None:
            raise NodeError("this command needs the LAB key")
        fid = genesis.federation_id
        position = self._position

        def build(seq: int, head: bytes | None) -> list[Entry]:
            nonlocal position
            ledger = self.ledger()
            position = self._position
            applied = ledger.applied(self.lab_id)
            if applied > seq:
                # The ledger has read entries stored after ``head`` was: another
                # writer got there first. The store re-reads the head and retries.
                raise SeqTaken(self.lab_id, seq)
            if applied < seq and self.lab_id in ledger.pending:
                ledger.catch_up(self.lab_id)
                applied = ledger.applied(self.lab_id)
            if applied != seq:
                raise NodeError(self._held_message(ledger, applied, seq))
            self._ledger = None  # mutated below; reloaded unless the append succeeds
            entries = []
            for kind, body in items:
                ledger.validate(self.lab_id, kind, body, now_us)
                seq += 1
                entry = sign_entry(signer, federation_id=fid, seq=seq, prev=head,
                                   ts_us=now_us, kind=kind, body=body)
                ledger.receive(entry)
                entries.append(entry)
                head = entry.hash
            self._pending_ledger = ledger
            return entries

        self.ledger()  # the bulk of any catch-up, before taking turns with other writers
        try:
            with self.home.writer_lock(self.lock_wait_s):
                entries, ids = self.store.append_own(build, self.lab_id)
        except TimeoutError as e:
            raise NodeError(str(e)) from None
        except PendingReference as p:
            raise NodeError(f"refused: the entry names {p.missing}, which this node does not "
                            "hold (sync first)") from None
        self._ledger = self._pending_ledger
        if ids and ids[0] == position + 1 and ids == list(range(ids[0], ids[-1] + 1)):
            self._position = ids[-1]  # nobody wrote in between: the ledger holds exactly these
        return entries

    def _held_message(self, ledger: Ledger, applied: int, seq: int) -> str:
        """Why the ledger settled this LAB's feed only to ``applied`` of its ``seq``."""
        fork = ledger.frozen.get(self.lab_id)
        if fork is not None:
            return (f"this LAB's feed is frozen at seq {fork - 1} by a fork proof; "
                    "see 'disco status'")
        if self.lab_id in ledger.pending:
            return (f"this LAB's entry {applied + 1} waits for {ledger.pending[self.lab_id][1]}"
                    ", which this node does not hold (sync first)")
        return (f"the ledger holds this LAB's feed at seq {applied} of {seq}: entry "
                f"{applied + 1} failed a check; run 'disco verify'")

    def ingest(self, raws: Iterable[bytes]) -> IngestResult:
        """Verify and store entries received from elsewhere (a peer, a bundle).

        Two phases: every entry is checked first (roster member, continues its
        feed's stored head, signature), then all are stored in one transaction, so
        bad input changes nothing. Entries already held are skipped; an entry at a
        held seq with another hash is a fork: its proof is stored and the feed
        frozen. Callers bound the batch (a request body, a page of a stream).
        Raises a ``RemoteProtocolError`` subclass naming the first bad entry.
        """
        genesis = self.require_genesis()
        frozen = {a: p.seq for a, p in self.store.fork_proofs().items()}
        intake = Intake(genesis.roster, genesis.federation_id, frozen, self.store.head,
                        self.store.get)
        forks: list[ForkProof] = []
        # Signatures are checked on every core while decoding goes on; whatever this
        # raises, the first bad signature before it is raised instead, as an
        # entry-by-entry check would.
        signatures = SignatureChecks()
        error: Exception | None = None
        try:
            for raw in raws:
                entry = decode_entry(raw)
                verdict = intake.take(entry)
                if verdict is Verdict.KEEP:
                    signatures.add(entry)
                elif verdict is Verdict.FORK and intake.fork is not None:
                    signatures.finish()  # the held entry may be from this batch
                    forks.append(make_fork_proof(*intake.fork))
        except Exception as e:
            error = e
        signatures.finish()
        if error is not None:
            raise error
        todo = intake.kept()
        self.store.insert(todo)
        stored_forks = [p for p in forks if self.store.add_fork_proof(p)]
        return IngestResult(len(todo), intake.passed_over, stored_forks)

    def add_fork_proof(self, proof: ForkProof) -> bool:
        """Store a verified proof from a peer; True when it was new here."""
        genesis = self.require_genesis()
        if proof.author not in genesis.roster:
            raise WrongAuthorError("fork proof of an author outside the roster")
        if proof.first.header.federation_id != genesis.federation_id:
            raise WrongFederationError("fork proof of another federation")
        return self.store.add_fork_proof(proof)

    def frontier(self) -> dict[bytes, tuple[int, bytes | None]]:
        """{author: (seq, head hash)} for every roster feed held."""
        out = {}
        for lab in self.feeds():
            seq, head = self.store.head(lab)
            if seq:
                out[lab] = (seq, head)
        return out

    # -- reading ---------------------------------------------------------------

    def ledger(self, progress: Callable[[int], None] | None = None) -> Ledger:
        """The federation ledger, caught up with everything this node stores;
        ``progress`` as in :meth:`LedgerProjection.catch_up`."""
        genesis = self.require_genesis()
        projection = LedgerProjection(self.store, genesis)
        if self._ledger is None:
            self._ledger, self._position = projection.catch_up(progress=progress)
            self._note_check(projection)
        elif self._position < self.store.max_notification_id():
            self._ledger, self._position = projection.catch_up(self._ledger, self._position,
                                                               progress=progress)
        return self._ledger

    def _note_check(self, projection: LedgerProjection, by: str = "catch-up") -> None:
        """Note in the home what a catch-up that checked every entry found (one that
        started from nothing, or a rebuild): it was a full check of the store."""
        skipped = projection.skipped
        if skipped is not None:
            self.skipped = skipped
            problems = len(skipped.problems)
            self.home.record_check(ok=not problems and not skipped.held, problems=problems,
                                   by=by)

    def rebuild(self, progress: Callable[[int], None] | None = None) -> Ledger:
        """Recompute the ledger from nothing over the whole log (and save it),
        checking every entry before applying it: :attr:`skipped` then lists what
        failed and which feeds are held before it. The outcome is noted in the home
        (:meth:`Home.record_check`). ``progress`` as in
        :meth:`LedgerProjection.catch_up`."""
        projection = LedgerProjection(self.store, self.require_genesis())
        self._ledger, self._position = projection.rebuild(verify=True, progress=progress)
        self._note_check(projection, "rebuild")
        return self._ledger

    def summary(self) -> dict[str, Any]:
        """Digest, balances and heads from the saved projection (caught up if behind)."""
        projection = LedgerProjection(self.store, self.require_genesis())
        summary = projection.summary()
        self._note_check(projection)
        return summary

    def resolve_ref(self, text: str) -> Ref:
        """A ref from its full text or an unambiguous prefix a person would type:
        ``AUTHOR[:SEQ[:HASH]]`` with hex prefixes, or a hash prefix of an offer.

        Raises :class:`NodeError` when nothing or more than one entry matches; the
        message says what to do (sync first, or give more of the ref).
        """
        text = text.strip().lower()
        parts = text.split(":")
        genesis = self.require_genesis()
        if len(parts) == 1:
            if len(parts[0]) < 4:
                raise NodeError(f"{text!r}: want a ref AUTHOR:SEQ[:HASH] (hex prefixes "
                                "allowed), or 4 or more hex digits of an offer's hash")
            matches = [o.ref() for o in self.ledger().offers.values()
                       if o.hash.hex().startswith(parts[0])]
            if not matches:
                raise NodeError(f"{text!r} names no offer held here; if another LAB made "
                                "it lately, run 'disco sync' first ('disco transfers' "
                                "lists the offers held)")
        else:
            if not parts[1].isdigit() or len(parts) > 3 or not parts[0]:
                raise NodeError(f"{text!r}: want AUTHOR:SEQ[:HASH] (hex prefixes allowed)")
            labs = [lab for lab in self.feeds() if lab.hex().startswith(parts[0])]
            if not labs:
                raise NodeError(f"{text!r}: no LAB of the federation has an id starting "
                                f"{parts[0]!r}")
            seq = int(parts[1])
            matches = []
            for lab in labs:
                entry = self.store.get(lab, seq)
                if entry and (len(parts) == 2 or entry.hash.hex().startswith(parts[2])):
                    matches.append(entry.ref)
            if not matches and len(labs) == 1:
                head = self.store.head(labs[0])[0]
                name = genesis.lab_name(labs[0])
                if seq > head:
                    raise NodeError(f"{text!r}: entry {seq} of {name} is not held here "
                                    f"(its feed here ends at {head}); run 'disco sync' "
                                    "first")
                raise NodeError(f"{text!r}: entry {seq} of {name} has another hash; "
                                "check the ref")
        if len(matches) > 1:
            listed = ", ".join(f"{r.author.hex()[:8]}:{r.seq}:{r.hash.hex()[:8]}"
                               for r in matches[:5])
            raise NodeError(f"{text!r} names several entries ({listed}); give more of "
                            "the ref")
        if not matches:
            raise NodeError(f"{text!r} names no entry held here; run 'disco sync' first "
                            "if another LAB wrote it lately")
        return matches[0]

    def feeds(self) -> list[bytes]:
        """The roster's LAB ids, this LAB first."""
        genesis = self.require_genesis()
        others = [lab.id for lab in genesis.labs if lab.id != self.lab_id]
        return [self.lab_id, *others]

    def log(self, author: bytes | None = None) -> Iterator[Entry]:
        """Entries of one feed, or of every roster feed in turn, streamed."""
        for a in [author] if author else self.feeds():
            yield from self.store.read_feed(a)

    def verify(self, progress: Callable[[int], None] | None = None) -> list[Problem]:
        """Every problem in the store (empty when sound). The outcome is noted in the
        home (:meth:`Home.record_check`). ``progress``, if given, is called with the
        notification id reached every :data:`PROGRESS_EVERY` rows."""
        genesis = self.require_genesis()
        roster = [lab.id for lab in genesis.labs]
        if progress is None:
            problems = list(self.store.verify(genesis.federation_id, roster))
        else:
            check = StoreCheck(genesis.federation_id, roster)  # as FeedStore.verify
            problems = []
            for nid, originator, version, raw in self.store.notifications():
                if nid % PROGRESS_EVERY == 0:
                    progress(nid)
                found = check.row(originator, version, raw)
                if isinstance(found, Problem):
                    problems.append(found)
        self.home.record_check(ok=not problems, problems=len(problems), by="verify")
        return problems


__all__ = ["FederationError", "LabNode", "NodeError", "RuleViolation"]
