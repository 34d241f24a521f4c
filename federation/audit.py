"""Offline audit of an export bundle: trust nothing, check everything.

Checks, streaming the bundle once and holding O(feeds) state plus the ledger:
canonical form and framing, every signature (on every core), every chain link and
seq, roster membership and federation, the Merkle roots against the LABs' signed
checkpoints, fork proofs, cross-feed references and the ledger rules (by running
the same :class:`~federation.ledger.Ledger` a node runs), and the zero-sum
invariant. Redacted entries are counted, not faulted.

The ledger re-reads entries it must revisit through an index of byte offsets, so
a million-entry bundle is never held in memory. Signatures are checked a batch ahead
of the ledger by a :data:`SignatureCheck` the caller passes in (the command line's
checks on every core: :mod:`node.audit_workers`), while this thread decodes and
settles the batch before. This module starts no thread or process itself.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import msgpack

from federation.bundle import MAX_RECORD, Record, read_record_at, read_records
from federation.errors import BundleError, GenesisError, InvariantError, Violation
from federation.genesis import Genesis, decode_genesis
from federation.governance import Outcome, decide_signed
from federation.ledger import Ledger
from federation.reports import balances
from protocol import merkle
from protocol.checkpoint import (
    Checkpoint,
    origin_for,
    parse_checkpoint_body,
    parse_note,
    verify_checkpoint,
)
from protocol.entry import Entry, FeedVerifier, check_signature, decode_entry, where
from protocol.errors import BadSignatureError, ProtocolError
from protocol.sync import decode_fork_proof

BATCH = 4096
MIN_READ_AHEAD = 16 * 1024
MAX_READ_AHEAD = 256 * 1024

SignatureCheck = Callable[[Sequence[bytes]], Callable[[], bytes]]
"""Starts checking the signatures of a batch of entries (their bytes, each already
decoded once); the function it returns waits for the outcome: one byte per entry, 1
where its signature verifies (:func:`signatures_ok`), else 0."""


def signatures_ok(raws: Iterable[bytes]) -> bytes:
    """One byte per entry, 1 where its signature verifies under the feed's key
    (``check_signature``), else 0. For entry bytes :func:`decode_entry` has accepted
    (the audit's own batches): they are decoded again without its checks."""
    return bytes(_signature_ok(raw) for raw in raws)


def _signature_ok(raw: bytes) -> bool:
    try:
        check_signature(decode_entry(raw, _trusted=True))
    except ProtocolError:
        return False
    return True


def check_here(raws: Sequence[bytes]) -> Callable[[], bytes]:
    """The plain :data:`SignatureCheck`: checks the batch at once, in this thread."""
    flags = signatures_ok(raws)
    return lambda: flags


@dataclass
class AuditReport:
    """The outcome of an audit; ``ok`` when there is no violation."""

    federation_id: bytes = b""
    federation: str = ""
    entries: int = 0
    redacted: int = 0
    feeds: dict[bytes, int] = field(default_factory=dict)
    checkpoints: int = 0
    forks: int = 0
    violations: list[Violation] = field(default_factory=list)
    state_digest: bytes = b""
    balances: dict[bytes, dict[str, int]] = field(default_factory=dict)
    roster: list[dict[str, Any]] = field(default_factory=list)
    """Each LAB of the roster decided: lab, name, state, key (in force now), admitted
    (the admission's ref, for a LAB admitted after the genesis)."""
    proposals: list[dict[str, Any]] = field(default_factory=list)
    """Each proposal: ref, action, proposer, state, votes, needed."""
    repaired: list[dict[str, Any]] = field(default_factory=list)
    """Forks a passed repair mended: author, seq, and the entry kept."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "entries": self.entries, "redacted": self.redacted,
            "federation_id": self.federation_id.hex(), "federation": self.federation,
            "feeds": {a.hex(): n for a, n in self.feeds.items()},
            "checkpoints": self.checkpoints, "forks": self.forks,
            "state_digest": self.state_digest.hex(),
            "balances": {a.hex(): u for a, u in self.balances.items()},
            "violations": [v.as_json() for v in self.violations],
            "roster": self.roster, "proposals": self.proposals, "repaired": self.repaired,
        }


class BundleFeeds:
    """:class:`federation.ledger.Feeds` over the accepted entries of a bundle file."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.offsets: dict[bytes, array[int]] = {}

    def add(self, author: bytes, offset: int) -> None:
        self.offsets.setdefault(author, array("Q")).append(offset)

    def held(self, author: bytes) -> int:
        return len(self.offsets.get(author, ()))

    def entry(self, author: bytes, seq: int) -> Entry | None:
        offsets = self.offsets.get(author)
        if not offsets or not 0 < seq <= len(offsets):
            return None
        position = self.f.tell()
        try:
            return decode_entry(read_record_at(self.f, offsets[seq - 1])[1])
        finally:
            self.f.seek(position)

    def entries_after(self, author: bytes, seq: int) -> Iterator[Entry]:
        """The held entries after ``seq``, read a block at a time: a feed that resumes
        is re-read sequentially, not with one seek and read per entry (records of
        other feeds in between are passed over)."""
        offsets = self.offsets.get(author)
        end = len(offsets) if offsets else 0
        s = seq + 1
        size = MIN_READ_AHEAD
        while offsets and s <= end:
            start = s
            for offset, raw in self._records(offsets[s - 1], size):
                if offset < offsets[s - 1]:
                    continue  # an entry of another feed
                if offset != offsets[s - 1]:
                    break  # the feed's next entry is elsewhere in the file
                yield decode_entry(raw)
                s += 1
                if s > end:
                    return
            if s == start:  # no whole record in the block: the plain path says why
                entry = self.entry(author, s)
                if entry is not None:
                    yield entry
                s += 1
            size = min(2 * size, MAX_READ_AHEAD)

    def _records(self, offset: int, size: int) -> Iterator[tuple[int, bytes]]:
        """(offset, entry bytes) of the whole entry records in ``size`` bytes read at
        ``offset``. The file position is restored before anything is yielded, so the
        caller may read elsewhere between items."""
        position = self.f.tell()
        try:
            self.f.seek(offset)
            data = self.f.read(size)
        finally:
            self.f.seek(position)
        unpacker = msgpack.Unpacker(raw=False, use_list=True,
                                    max_buffer_size=max(size, 4 * MAX_RECORD))
        unpacker.feed(data)
        while True:
            at = offset + unpacker.tell()
            try:
                value = unpacker.unpack()
            except Exception:  # the end of the block, or anything odd: stop here
                return
            if (not isinstance(value, list) or len(value) != 2 or value[0] != "entry"
                    or not isinstance(value[1], bytes)):
                return
            yield at, value[1]


@dataclass
class _Feed:
    verifier: FeedVerifier
    tree: merkle.RootBuilder = field(default_factory=merkle.RootBuilder)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    broken: bool = False
    seen: int = 0


@dataclass
class _Batch:
    """A batch of entry records, decoded, its signatures being checked."""

    good: list[tuple[Record, Entry]]
    bad: list[tuple[Record, ProtocolError | IndexError]]
    signed: Callable[[], bytes]  # waits for the good entries' signature flags


class Auditor:
    """One audit run over one bundle stream (see :func:`audit_bundle`)."""

    def __init__(self, f: BinaryIO, check_signatures: SignatureCheck,
                 progress: Callable[[int], None] | None) -> None:
        self.f = f
        self.report = AuditReport()
        self.index = BundleFeeds(f)
        self.genesis: Genesis | None = None
        self.ledger: Ledger | None = None
        self.frozen: dict[bytes, int] = {}
        self.unsigned: set[tuple[bytes, int]] = set()
        self.unsigned_checkpoints: list[tuple[bytes, bytes, int]] = []
        self.unsigned_forks: list[bytes] = []
        self.decided: Outcome | None = None
        """The governance decided from the entries signed by the keys in force."""
        """Fork proofs not signed under their LAB's id."""
        """Checkpoints not signed under their LAB's id: (author, note, size)."""
        """Entries whose signature does not verify under their LAB's id."""
        self.feeds: dict[bytes, _Feed] = {}
        self.check_signatures = check_signatures
        self.progress = progress

    def violation(self, author: bytes | str, seq: int, code: str, message: str) -> None:
        a = author.hex() if isinstance(author, bytes) else author
        self.report.violations.append(Violation(a, seq, code, message))

    def run(self) -> AuditReport:
        batch: list[Record] = []
        ahead: _Batch | None = None  # decoded, its signatures being checked
        for record in read_records(self.f):
            if record.kind == "entry":
                batch.append(record)
                if len(batch) >= BATCH:
                    ahead = self._next(ahead, batch)
                    batch = []
                continue
            if batch:
                ahead = self._next(ahead, batch)
                batch = []
            if ahead is not None:
                self.settle(ahead)
                ahead = None
            self.other(record)
        if batch:
            ahead = self._next(ahead, batch)
        if ahead is not None:
            self.settle(ahead)
        self.finish()
        return self.report

    def _next(self, ahead: _Batch | None, records: list[Record]) -> _Batch:
        """Start the signature checks of ``records``, then settle the batch before it
        while they run: the checker verifies one batch as this thread settles another."""
        batch = self.prepare(records)
        if ahead is not None:
            self.settle(ahead)
        return batch

    def other(self, record: Record) -> None:
        fields = record.fields
        if record.kind == "bundle":
            self.report.federation_id = fields[1] if isinstance(fields[1], bytes) else b""
        elif record.kind == "genesis":
            try:
                self.genesis = decode_genesis(fields[0])
            except (GenesisError, IndexError) as e:
                raise BundleError(f"bundle: unusable genesis: {e}") from None
            if self.genesis.federation_id != self.report.federation_id:
                raise BundleError("bundle: the genesis is not that of the bundle's federation")
            self.report.federation = self.genesis.name
        elif record.kind == "checkpoint":
            self.checkpoint(fields)
        elif record.kind == "fork":
            self.fork(fields)
        elif record.kind == "problem":
            self.violation("", 0, fields[0], fields[1])

    def _genesis(self) -> Genesis:
        if self.genesis is None:
            raise BundleError("bundle: entries before the genesis record")
        return self.genesis

    def _ledger(self) -> Ledger:
        if self.ledger is None:
            self.ledger = Ledger(self._genesis(), self.index, self.frozen)
        return self.ledger

    def _feed(self, author: bytes) -> _Feed:
        feed = self.feeds.get(author)
        if feed is None:
            feed = self.feeds[author] = _Feed(FeedVerifier(self._genesis().federation_id,
                                                           author))
        return feed

    def checkpoint(self, fields: list[Any]) -> None:
        genesis = self._genesis()
        try:
            author, note = fields
            try:
                cp = verify_checkpoint(bytes(note), author, genesis.federation_id)
            except BadSignatureError:
                # Perhaps signed by a later key of the LAB (a rotation or a recovery
                # further on in the bundle): its root is compared as any, and its
                # signature judged at the end, under the key in force then.
                cp = parse_checkpoint_body(parse_note(bytes(note)).text)
                if cp.origin != origin_for(genesis.federation_id, author):
                    raise
                self.unsigned_checkpoints.append((author, bytes(note), cp.size))
        except (ProtocolError, ValueError, TypeError) as e:
            author = fields[0] if fields and isinstance(fields[0], bytes) else b""
            self.violation(author, 0, "bad-checkpoint", f"checkpoint: {e}")
            return
        feed = self._feed(author)
        if feed.seen:
            # Its root can no longer be compared with the entries it covers.
            self.violation(author, 0, "checkpoint-misplaced",
                           f"a checkpoint at size {cp.size} after entries of its feed: "
                           "checkpoints come before the feeds' entries")
        feed.checkpoints.append(cp)
        self.report.checkpoints += 1

    def fork(self, fields: list[Any]) -> None:
        try:
            try:
                proof = decode_fork_proof(fields[0])
            except BadSignatureError:  # perhaps under a later key: judged at the end
                proof = decode_fork_proof(fields[0], _trusted=True)
                self.unsigned_forks.append(fields[0])
        except (ProtocolError, IndexError) as e:
            self.violation("", 0, "bad-fork-proof", str(e))
            return
        self.report.forks += 1
        self.frozen.setdefault(proof.author, proof.seq)  # (judged at the end: repaired?)

    def prepare(self, records: list[Record]) -> _Batch:
        """Decode a batch and start checking its signatures (:data:`SignatureCheck`)."""
        self._genesis()
        good: list[tuple[Record, Entry]] = []
        bad: list[tuple[Record, ProtocolError | IndexError]] = []
        for record in records:
            try:
                good.append((record, decode_entry(record.fields[0])))
            except (ProtocolError, IndexError) as e:
                bad.append((record, e))
        return _Batch(good, bad, self.check_signatures([entry.raw for _, entry in good]))

    def settle(self, batch: _Batch) -> None:
        """Report a prepared batch: framing, chains, signatures, Merkle, the ledger."""
        for record, e in batch.bad:
            author, seq = _where(record.fields[0])
            self.violation(author, seq, "bad-entry",
                           f"entry record at byte {record.offset}: {e}")
        signed = batch.signed()
        ledger = self._ledger()
        for (record, entry), signed_ok in zip(batch.good, signed, strict=True):
            self.report.entries += 1
            author = entry.author
            feed = self._feed(author)
            feed.seen += 1
            if entry.redacted:
                self.report.redacted += 1
            try:
                feed.verifier.check_link(entry)
            except ProtocolError as e:
                self.violation(author, entry.seq, e.code, str(e))
                feed.broken = True
                feed.verifier.advance(entry)
                continue
            feed.verifier.advance(entry)
            if not signed_ok:
                # Not under the LAB's id: judged at the end under the key in force
                # then (a rotation or a recovery may be decided later in the bundle).
                self.unsigned.add((author, entry.seq))
            if feed.broken:
                continue
            feed.tree.append(merkle.leaf_hash(entry.hash))
            for cp in feed.checkpoints:
                if cp.size == feed.tree.size and cp.root != feed.tree.root():
                    self.violation(author, entry.seq, "checkpoint-mismatch",
                                   f"the signed checkpoint at size {cp.size} has another "
                                   "root than the entries: history was rewritten")
            self.index.add(author, record.offset)
            ledger.receive(entry)
        if self.progress:
            self.progress(len(batch.good) + len(batch.bad))

    def _judge_keys(self, ledger: Ledger) -> None:
        """Every feed outside the roster decided, and every signature under the key in
        force at its entry: the workers checked each under the LAB's id, which is the
        key in force until a rotation or a recovery (O(1) per entry before one)."""
        outcome, forged = decide_signed(self._genesis(), ledger.acts, self.index.entry)
        self.unsigned |= forged  # (governance entries not signed by the key in force)
        self.decided = outcome
        for author, feed in self.feeds.items():
            member = outcome.members.get(author)
            if member is None:
                self.violation(author, 1, "not-in-roster",
                               "entries of an author outside the roster")
                continue
            if all(key == author for _, _, key in member.keys):
                continue
            for seq in range(1, feed.seen + 1):
                key = member.key_at(seq)
                entry = self.index.entry(author, seq) if key != author else None
                if entry is not None:
                    try:
                        check_signature(entry, key)
                        self.unsigned.discard((author, seq))
                    except ProtocolError:
                        self.unsigned.add((author, seq))
        for author, note, size in self.unsigned_checkpoints:
            member = outcome.members.get(author)
            keys = {member.key_at(max(size, 1)), member.key_at(size + 1)} if member else set()
            if not any(_note_signed(note, author, self._genesis().federation_id, key)
                       for key in keys):
                self.violation(author, 0, "bad-checkpoint", f"checkpoint at size {size}: "
                               "not signed by the LAB's key in force")
        for raw in self.unsigned_forks:
            try:
                decode_fork_proof(raw, outcome.key_at)
            except ProtocolError as e:
                self.violation("", 0, "bad-fork-proof", str(e))
        for author, seq in sorted(self.unsigned):
            if author in outcome.members:
                self.violation(author, seq, "bad-signature", f"entry {where(author, seq)}: "
                               "signature does not verify under the key in force")

    def _judge_governance(self, ledger: Ledger) -> None:
        """Forks (a violation unless a passed repair mended them), and the roster and
        proposals the governance entries decided, into the report (those signed by
        the keys in force: :func:`~federation.governance.decide_signed`)."""
        outcome = self.decided or ledger.outcome
        for author, seq in sorted(self.frozen.items()):
            if ledger.is_repaired(author, seq):
                keep = outcome.repairs[author]
                self.report.repaired.append({"author": author.hex(), "seq": seq,
                                             "kept": str(keep)})
            else:
                self.violation(author, seq, "fork", f"two validly signed entries at seq "
                               f"{seq}: the feed is frozen at seq {seq - 1}")
        self.report.roster = [
            {"lab": lab.hex(), "name": m.name, "state": m.state, "key": m.key().hex(),
             "admitted": str(m.admitted) if m.admitted else None}
            for lab, m in outcome.members.items()]
        self.report.proposals = [
            {"ref": str(p.ref), "action": p.action, "proposer": p.ref.author.hex(),
             "state": p.state, "votes": {lab.hex(): v for lab, v in p.votes.items()},
             "needed": p.needed}
            for _, p in sorted(outcome.proposals.items())]

    def finish(self) -> None:
        ledger = self._ledger()
        self._judge_keys(ledger)
        self._judge_governance(ledger)
        for author, feed in self.feeds.items():
            self.report.feeds[author] = feed.seen
            for cp in feed.checkpoints:
                if cp.size > feed.tree.size:
                    self.violation(author, feed.tree.size + 1, "checkpoint-beyond-feed",
                                   f"checkpoint at size {cp.size} but only "
                                   f"{feed.tree.size} sound entries in the bundle")
        for (author, seq), (code, message) in sorted(ledger.invalid.items()):
            self.violation(author, seq, code, message)
        for author, (seq, ref) in sorted(ledger.pending.items()):
            self.violation(author, seq, "unresolved-reference",
                           f"references {where(ref.author, ref.seq)}, not in the bundle")
        try:
            ledger.check_invariant()
        except InvariantError as e:
            self.violation("", 0, "invariant", str(e))
        self.report.state_digest = ledger.digest()
        self.report.balances = balances(ledger)


def _note_signed(note: bytes, author: bytes, federation_id: bytes, key: bytes) -> bool:
    try:
        verify_checkpoint(note, author, federation_id, key)
    except ProtocolError:
        return False
    return True


def _where(raw: bytes) -> tuple[bytes, int]:
    """(author, seq) named by an entry that fails to decode, when its header can be
    read (a damaged body, say); else (b"", 0). Only to say where: nothing is trusted."""
    try:
        header = msgpack.unpackb(raw, raw=False)[0]
        author, seq = header[2], header[3]
    except Exception:
        return b"", 0
    if isinstance(author, bytes) and len(author) == 32 and type(seq) is int and seq > 0:
        return author, seq
    return b"", 0


def audit_bundle(f: BinaryIO, *, check_signatures: SignatureCheck = check_here,
                 progress: Callable[[int], None] | None = None) -> AuditReport:
    """Audit the bundle in the seekable binary stream ``f``.

    ``check_signatures`` checks each batch's signatures (by default here, at once;
    :mod:`node.audit_workers` checks them on every core, a batch ahead). Returns the
    report (``ok`` False when any violation was found). Raises :class:`BundleError`
    when the file is not a usable bundle.
    """
    return Auditor(f, check_signatures, progress).run()
