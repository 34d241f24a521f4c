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
from federation.governance import GOVERNANCE, MEMBER
from federation.intake import Intake, KeysInForce, Verdict
from federation.ledger import Ledger
from node.errors import NodeError
from node.home import WRITER_WAIT_S, Home, load_genesis_file
from node.projection import PROGRESS_EVERY, LedgerProjection, Skipped
from node.repairs import awaits_key, set_aside_stale_branches
from node.store import SIGNATURE_CHUNK, FeedStore, Problem, SeqTaken, StoreCheck, verify_pool
from protocol.entry import Entry, Ref, check_signature, decode_entry, short, sign_entry
from protocol.errors import (
    BadSignatureError,
    WrongAuthorError,
    WrongFederationError,
)
from protocol.keys import Signer
from protocol.sync import ForkProof, make_fork_proof


def _first_bad_signature(entries: list[tuple[Entry, bytes]]) -> int:
    """Index of the first entry whose signature does not verify under the key given
    with it, or -1. Runs in a worker thread: libsodium releases the GIL, so the
    workers use every core."""
    for i, (entry, key) in enumerate(entries):
        try:
            check_signature(entry, key)
        except BadSignatureError:
            return i
    return -1


class SignatureChecks:
    """Entries' signatures checked in a pool of threads, in chunks, while the caller
    goes on; :meth:`finish` raises :class:`BadSignatureError` for the first entry, in
    the order added, whose signature fails."""

    def __init__(self) -> None:
        self._chunk: list[tuple[Entry, bytes]] = []
        self._running: list[tuple[list[tuple[Entry, bytes]], Future[int]]] = []

    def add(self, entry: Entry, key: bytes) -> None:
        """Check ``entry``'s signature under ``key`` (the key in force at its seq)."""
        self._chunk.append((entry, key))
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
                try:
                    check_signature(*chunk[bad])  # raises the entry's own error
                except BadSignatureError as e:
                    e.entry = chunk[bad][0]  # type: ignore[attr-defined]
                    raise


@dataclass(frozen=True)
class IngestResult:
    """What :meth:`LabNode.ingest` did: new entries stored, entries skipped (held or
    frozen), and fork proofs newly learned."""

    stored: int
    skipped: int
    forks: list[ForkProof]
    governance: bool = False
    """Whether governance entries were stored (the decisions in force may change)."""


class NotAdmitted(NodeError):
    """This LAB is not in the roster the node holds (not a founder, no admission)."""


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
    _repairs_checked: dict[Any, Any] = field(default_factory=dict, repr=False)

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
        if self.genesis is None and self.lab_id not in genesis.roster:
            raise NotAdmitted(
                f"LAB {self.lab_id.hex()} is not a founder of this federation: once the "
                "federation voted it in ('disco propose admit'), join through a member's "
                f"node: 'disco join {genesis_file} --peer URL'")
        if self.store.head(self.lab_id)[0] > 0:
            raise NodeError("this LAB has already joined")
        genesis = self.keep_genesis(genesis_file)
        if self.lab_id not in self.ledger().roster:
            raise NotAdmitted(
                f"LAB {self.lab_id.hex()} is not a founder of this federation, and this "
                "node holds no passed admission of it yet (sync with a member's node "
                "after the vote: 'disco sync')")
        return self.author("lab.joined", {"federation": genesis.federation_id,
                                          "name": self.home.name}, now_us)

    def keep_genesis(self, genesis_file: Path) -> Genesis:
        """Keep a copy of the genesis file (the federation this node is for), before
        its LAB joins. Raises ``GenesisError`` for a damaged file, :class:`NodeError`
        when the node already keeps another federation's."""
        genesis = load_genesis_file(genesis_file)
        if self.genesis is not None and self.genesis.federation_id != genesis.federation_id:
            raise NodeError("this LAB already joined another federation")
        if self.genesis is None:
            tmp = self.home.genesis_path.with_suffix(".tmp")
            shutil.copyfile(genesis_file, tmp)
            tmp.replace(self.home.genesis_path)
            self.genesis = genesis
        return genesis

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

        Each entry is signed only by the key in force for its seq (``Outcome.key_at``):
        a key rotated away, or one waiting for a recovery to pass, raises
        :class:`NodeError` saying which (:meth:`_key_message`).

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
                in_force = ledger.outcome.key_at(self.lab_id, seq + 1)
                if in_force is not None and in_force != signer.public_key:
                    raise NodeError(self._key_message(ledger, signer, seq))
                ledger.validate(self.lab_id, kind, body, now_us)
                seq += 1
                entry = sign_entry(signer, federation_id=fid, seq=seq, prev=head,
                                   ts_us=now_us, kind=kind, body=body, author=self.lab_id)
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

    def _key_message(self, ledger: Ledger, signer: Signer, seq: int) -> str:
        """Why ``signer`` may not sign entry ``seq + 1`` of this LAB's feed, whose key
        in force is another: it was rotated or recovered away, it signs from a later
        seq than this node holds, or no decision has made it the LAB's key yet."""
        keys = ledger.outcome.members[self.lab_id].keys
        name, mine = ledger.roster[self.lab_id], signer.public_key
        in_force = ledger.outcome.members[self.lab_id].key_at(seq + 1)
        since = [f for f, _, k in keys if k == mine]
        if since and since[0] <= seq + 1:
            by, order = next((f, o) for f, o, k in reversed(keys) if k == in_force)
            how = "key rotation" if order == 0 else "a recovery the federation voted"
            return (f"this key was replaced by {how}: key {short(in_force)} signs LAB "
                    f"{name}'s feed from seq {by}; put that key in {self.home.key_path}")
        if since:
            return (f"this key signs LAB {name}'s feed from seq {since[0]}; this node "
                    f"holds it to seq {seq} (sync first)")
        return (f"this key does not sign LAB {name}'s feed yet: it waits for a recovery "
                "to pass (disco proposals)")

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
        raws = list(raws)
        # The roster and keys in force: the ledger as last caught up, which is enough
        # unless an entry says otherwise; then it is caught up and the batch taken
        # again (a sync does not pay a catch-up per batch).
        fresh = self._ledger is None
        ledger = self.ledger() if fresh else self._ledger
        assert ledger is not None
        if self._apply_repairs(ledger):
            ledger, fresh = self.ledger(), True
        waiting: dict[bytes, int] = {}
        while True:
            try:
                result = self._ingest(raws, ledger, waiting)
                break
            except (BadSignatureError, WrongAuthorError) as e:
                if not fresh:
                    ledger, fresh = self.ledger(), True
                    if self._apply_repairs(ledger):
                        ledger = self.ledger()
                    continue
                entry: Entry | None = getattr(e, "entry", None)
                if (not isinstance(e, BadSignatureError) or entry is None
                        or entry.author in waiting or not awaits_key(entry, ledger, raws)):
                    raise
                waiting[entry.author] = entry.seq  # (signed with a key being voted on)
        if result.governance:
            self._apply_repairs(self.ledger())  # decisions in force at once
        return result

    def _ingest(self, raws: list[bytes], ledger: Ledger, waiting: Mapping[bytes, int]
                ) -> IngestResult:
        """:meth:`ingest`'s one pass over a batch, with the feeds in ``waiting``
        passed over from the seq given."""
        genesis = self.require_genesis()
        frozen = self.frozen(ledger)
        keys = KeysInForce(ledger.outcome)
        intake = Intake(ledger.roster, genesis.federation_id, frozen, self.store.head,
                        self.store.get, waiting)
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
                    signatures.add(entry, keys.take(entry))
                elif verdict is Verdict.FORK and intake.fork is not None:
                    signatures.finish()  # the held entry may be from this batch
                    try:
                        held, got = intake.fork
                        forks.append(make_fork_proof(held, got, keys.outcome.key_at(
                            got.author, got.seq)))
                    except BadSignatureError as e:
                        e.entry = intake.fork[1]  # type: ignore[attr-defined]
                        raise
        except Exception as e:
            error = e
        signatures.finish()
        if error is not None:
            raise error
        todo = intake.kept()
        self.store.insert(todo)
        stored_forks = [p for p in forks if self.store.add_fork_proof(p)]
        governance = any(e.kind in GOVERNANCE for e in todo)
        if governance:
            self.ledger()  # decisions in force at once (a peer admitted, a key recovered)
        return IngestResult(len(todo), intake.passed_over, stored_forks, governance)

    def _apply_repairs(self, ledger: Ledger) -> bool:
        """Set aside, as evidence, what a repair in force says no longer belongs to a
        forked feed: the entries after the one it keeps that the new key did not
        sign (:meth:`FeedStore.set_aside`); the ledger is then built again. True when
        anything moved. One signature check per repaired feed and store head."""
        moved = set_aside_stale_branches(self.store, ledger, self._repairs_checked)
        if moved:  # (the entries left were verified when stored: no check again)
            projection = LedgerProjection(self.store, self.require_genesis())
            self._ledger, self._position = projection.rebuild()
        return moved

    def frozen(self, ledger: Ledger | None = None) -> dict[bytes, int]:
        """The forked feeds still frozen (a fork proof held, no repair in force), each
        with its fork seq: nothing at or past it is taken or pulled. Reads the ledger
        last caught up (a sync does not wait for a catch-up)."""
        ledger = ledger or self._ledger or self.ledger()
        return {a: p.seq for a, p in self.store.fork_proofs().items()
                if not ledger.is_repaired(a, p.seq)}

    def signs_checkpoints(self) -> bool:
        """Whether this node may sign checkpoints of its own feed now: not while that
        feed is frozen by a fork (until a repair is in force, the node may still hold
        the branch the repair sets aside, and a checkpoint would vouch for it), nor
        with a key that is not in force."""
        if self.signer is None or self.lab_id in self.frozen():
            return False
        return self.current_key(self.lab_id) in (self.signer.public_key, None)

    def add_fork_proof(self, proof: ForkProof) -> bool:
        """Store a verified proof from a peer; True when it was new here."""
        genesis = self.require_genesis()
        if proof.author not in self.ledger().roster:
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
        if self._ledger.outcome.repairs or self._ledger.outcome.recoveries:
            self._apply_repairs(self._ledger)  # (which builds the ledger again if needed)
        assert self._ledger is not None
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
        self.require_genesis()
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
                name = self.ledger().lab_name(labs[0])
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
        """The roster's LAB ids, this LAB first (by the ledger last caught up:
        :meth:`roster` with ``fresh=False``)."""
        others = [lab for lab in self.roster(fresh=False) if lab != self.lab_id]
        return [self.lab_id, *others]

    def roster(self, fresh: bool = True) -> dict[bytes, str]:
        """Every LAB whose feed counts (founders and admitted LABs, gone ones too),
        with its name, as the ledger decides, caught up with the store; with
        ``fresh=False``, as the ledger last caught up decided (a sync round does
        not catch the ledger up: a LAB admitted since is taken once ingest has
        caught up on a governance entry or on an entry of a LAB it did not know)."""
        self.require_genesis()
        ledger = self._ledger if not fresh and self._ledger is not None else self.ledger()
        return dict(ledger.roster)

    def known_roster(self) -> dict[bytes, str]:
        """:meth:`roster` as the ledger last caught up decided (no catch-up)."""
        return self.roster(fresh=False)

    def key_at(self, lab: bytes, seq: int) -> bytes | None:
        """The key in force for entry ``seq`` of ``lab``'s feed, by the ledger last
        caught up (no catch-up); None outside the roster."""
        ledger = self._ledger
        if ledger is None:
            return lab if lab in self.require_genesis().roster else None
        return ledger.outcome.key_at(lab, seq)

    def current_key(self, lab: bytes) -> bytes | None:
        """The key in force for ``lab`` now (:meth:`keys_of`'s first), or None."""
        keys = self.keys_of(lab)
        return keys[0] if keys else None

    def keys_of(self, lab: bytes) -> tuple[bytes, ...] | None:
        """The key that signs ``lab``'s requests and next entries now, then the keys it
        used before; None for a LAB outside the roster, or gone (left, removed).
        Reads the ledger last caught up, without catching up (cheap, per request)."""
        ledger = self._ledger
        if ledger is None:
            genesis = self.require_genesis()
            return (lab,) if lab in genesis.roster else None
        member = ledger.outcome.members.get(lab)
        if member is None or member.state != MEMBER:
            return None
        return (member.key(), *{k for _, _, k in member.keys if k != member.key()})

    def log(self, author: bytes | None = None) -> Iterator[Entry]:
        """Entries of one feed, or of every roster feed in turn, streamed."""
        for a in [author] if author else self.feeds():
            yield from self.store.read_feed(a)

    def verify(self, progress: Callable[[int], None] | None = None) -> list[Problem]:
        """Every problem in the store (empty when sound). The outcome is noted in the
        home (:meth:`Home.record_check`). ``progress``, if given, is called with the
        notification id reached every :data:`PROGRESS_EVERY` rows."""
        genesis = self.require_genesis()
        ledger = self.ledger()
        roster, key_at = list(ledger.roster), ledger.outcome.key_at
        if progress is None:
            problems = list(self.store.verify(genesis.federation_id, roster, key_at))
        else:
            check = StoreCheck(genesis.federation_id, roster, key_at=key_at)  # as verify
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
