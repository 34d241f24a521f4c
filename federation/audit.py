"""Offline audit of an export bundle: trust nothing, check everything.

Checks, streaming the bundle once and holding O(feeds) state plus the ledger:
canonical form and framing, every signature (on every core), every chain link and
seq, roster membership and federation, the Merkle roots against the LABs' signed
checkpoints, fork proofs, cross-feed references and the ledger rules (by running
the same :class:`~federation.ledger.Ledger` a node runs), and the zero-sum
invariant. Redacted entries are counted, not faulted.

The ledger re-reads entries it must revisit through an index of byte offsets, so
a million-entry bundle is never held in memory. Signatures are checked a batch ahead
of the ledger, in threads for a small bundle and in worker processes for a big one,
while this thread decodes and settles the batch before.
"""

from __future__ import annotations

import multiprocessing
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import (
    BrokenExecutor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import msgpack

from federation.bundle import MAX_RECORD, BundleError, Record, read_record_at, read_records
from federation.errors import GenesisError, Violation
from federation.genesis import Genesis, decode_genesis
from federation.ledger import InvariantError, Ledger
from federation.reports import balances
from protocol import merkle
from protocol.checkpoint import Checkpoint, verify_checkpoint
from protocol.entry import Entry, FeedVerifier, decode_entry, short, signature_ok
from protocol.errors import ProtocolError
from protocol.sync import decode_fork_proof

BATCH = 4096
PROCESSES_MIN_BYTES = 4 * 1024 * 1024
"""From this bundle size on (about 14k entries), signatures are checked in forked
worker processes rather than threads: libsodium releases the GIL, but a verifying
thread needs it back after every signature while this thread decodes and runs the
ledger, so threads alone leave much of the second core idle. Small bundles are not
worth forking for."""
MIN_READ_AHEAD = 16 * 1024
MAX_READ_AHEAD = 256 * 1024


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
    chunks: list[_Run]  # the good entries, a run per worker
    futures: list[Future[bytes]]


@dataclass(frozen=True)
class _Run:
    """A run of entries as two byte strings (cheap to send to a worker process): their
    bytes one after another, and their lengths (``array('I')``)."""

    data: bytes
    lengths: bytes

    @classmethod
    def of(cls, raws: list[bytes]) -> _Run:
        return cls(b"".join(raws), array("I", map(len, raws)).tobytes())

    def entries(self) -> Iterator[bytes]:
        view, at = memoryview(self.data), 0
        for size in array("I", self.lengths):
            yield bytes(view[at:at + size])
            at += size


class Auditor:
    """One audit run over one bundle stream (see :func:`audit_bundle`)."""

    def __init__(self, f: BinaryIO, workers: int, progress: Callable[[int], None] | None
                 ) -> None:
        self.f = f
        self.report = AuditReport()
        self.index = BundleFeeds(f)
        self.genesis: Genesis | None = None
        self.ledger: Ledger | None = None
        self.frozen: dict[bytes, int] = {}
        self.feeds: dict[bytes, _Feed] = {}
        self.pool = ThreadPoolExecutor(max(1, workers))
        self.workers = max(1, workers)
        self.processes = _worker_processes(f, self.workers)
        self.progress = progress

    def violation(self, author: bytes | str, seq: int, code: str, message: str) -> None:
        a = author.hex() if isinstance(author, bytes) else author
        self.report.violations.append(Violation(a, seq, code, message))

    def run(self) -> AuditReport:
        batch: list[Record] = []
        ahead: _Batch | None = None  # decoded, its signatures being checked
        try:
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
        finally:
            self.pool.shutdown()
            if self.processes is not None:
                self.processes.shutdown()
        self.finish()
        return self.report

    def _next(self, ahead: _Batch | None, records: list[Record]) -> _Batch:
        """Start the signature checks of ``records``, then settle the batch before it
        while they run: the pool verifies one batch as this thread settles another."""
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
            cp = verify_checkpoint(bytes(note), author, genesis.federation_id)
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
            proof = decode_fork_proof(fields[0])
        except (ProtocolError, IndexError) as e:
            self.violation("", 0, "bad-fork-proof", str(e))
            return
        self.report.forks += 1
        self.frozen.setdefault(proof.author, proof.seq)
        self.violation(proof.author, proof.seq, "fork",
                       f"two validly signed entries at seq {proof.seq}: the feed is frozen "
                       f"at seq {proof.seq - 1}")

    def prepare(self, records: list[Record]) -> _Batch:
        """Decode a batch and start checking its signatures on the pool. A worker gets
        its run of entries as bytes (cheap to send) and checks them from the bytes."""
        self._genesis()
        good: list[tuple[Record, Entry]] = []
        bad: list[tuple[Record, ProtocolError | IndexError]] = []
        for record in records:
            try:
                good.append((record, decode_entry(record.fields[0])))
            except (ProtocolError, IndexError) as e:
                bad.append((record, e))
        raws = [entry.raw for _, entry in good]
        run = -(-len(raws) // self.workers) or 1
        chunks = [_Run.of(raws[i:i + run]) for i in range(0, len(raws), run)]
        if self.processes is not None:
            try:
                futures = [self.processes.submit(_signatures_ok, chunk) for chunk in chunks]
                return _Batch(good, bad, chunks, futures)
            except (OSError, BrokenExecutor):  # cannot fork here, or a worker died
                self.processes.shutdown(wait=False, cancel_futures=True)
                self.processes = None  # threads from now on
        futures = [self.pool.submit(_signatures_ok, chunk) for chunk in chunks]
        return _Batch(good, bad, chunks, futures)

    def settle(self, batch: _Batch) -> None:
        """Report a prepared batch: framing, chains, signatures, Merkle, the ledger."""
        genesis = self._genesis()
        for record, e in batch.bad:
            author, seq = _where(record.fields[0])
            self.violation(author, seq, "bad-entry",
                           f"entry record at byte {record.offset}: {e}")
        signed = [flag for f, chunk in zip(batch.futures, batch.chunks, strict=True)
                  for flag in _result(f, chunk)]
        ledger = self._ledger()
        for (record, entry), signed_ok in zip(batch.good, signed, strict=True):
            self.report.entries += 1
            author = entry.author
            if author not in genesis.roster:
                self.violation(author, entry.seq, "not-in-roster",
                               "entry of an author outside the roster")
                continue
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
                self.violation(author, entry.seq, "bad-signature",
                               f"entry {entry.where}: signature does not verify")
                feed.broken = True
                continue
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

    def finish(self) -> None:
        ledger = self._ledger()
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
                           f"references {short(ref.author)}#{ref.seq}, not in the bundle")
        try:
            ledger.check_invariant()
        except InvariantError as e:
            self.violation("", 0, "invariant", str(e))
        self.report.state_digest = ledger.digest()
        self.report.balances = balances(ledger)


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


def _signatures_ok(run: _Run) -> bytes:
    """One byte per entry of the run, 1 where its signature verifies (in a worker):
    see ``signature_ok``."""
    return bytes(signature_ok(raw) for raw in run.entries())


def _result(future: Future[bytes], run: _Run) -> bytes:
    """The flags a worker computed; computed here if the worker process died."""
    try:
        return future.result()
    except BrokenExecutor:
        return _signatures_ok(run)


def _worker_processes(f: BinaryIO, workers: int) -> ProcessPoolExecutor | None:
    """Worker processes for a big bundle, forked (so they import nothing and run
    nothing of the caller's ``__main__``) before any thread of the audit starts; None
    for a small bundle or where processes cannot be forked."""
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    position = f.tell()
    size = f.seek(0, 2) - position
    f.seek(position)
    if size < PROCESSES_MIN_BYTES:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


def audit_bundle(f: BinaryIO, *, workers: int = 2,
                 progress: Callable[[int], None] | None = None) -> AuditReport:
    """Audit the bundle in the seekable binary stream ``f``.

    Returns the report (``ok`` False when any violation was found). Raises
    :class:`BundleError` when the file is not a usable bundle.
    """
    return Auditor(f, workers, progress).run()
