"""Offline audit of an export bundle: trust nothing, check everything.

Checks, streaming the bundle once and holding O(feeds) state plus the ledger:
canonical form and framing, every signature (on every core), every chain link and
seq, roster membership and federation, the Merkle roots against the LABs' signed
checkpoints, fork proofs, cross-feed references and the ledger rules (by running
the same :class:`~federation.ledger.Ledger` a node runs), and the zero-sum
invariant. Redacted entries are counted, not faulted.

The ledger re-reads entries it must revisit through an index of byte offsets, so
a million-entry bundle is never held in memory.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import msgpack

from federation.bundle import BundleError, Record, read_record_at, read_records
from federation.errors import GenesisError
from federation.genesis import Genesis, decode_genesis
from federation.ledger import InvariantError, Ledger
from protocol import merkle
from protocol.checkpoint import Checkpoint, verify_checkpoint
from protocol.entry import SIGNING_PREFIX, Entry, FeedVerifier, decode_entry, short
from protocol.errors import ProtocolError
from protocol.keys import verify_signature
from protocol.sync import decode_fork_proof

BATCH = 4096


@dataclass(frozen=True)
class Violation:
    """One finding: where (author hex, seq; empty/0 when not tied to an entry), what."""

    author: str
    seq: int
    code: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"author": self.author, "seq": self.seq, "code": self.code,
                "message": self.message}


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
        for s in range(seq + 1, self.held(author) + 1):
            entry = self.entry(author, s)
            if entry is not None:
                yield entry


@dataclass
class _Feed:
    verifier: FeedVerifier
    tree: merkle.RootBuilder = field(default_factory=merkle.RootBuilder)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    broken: bool = False
    seen: int = 0


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
        self.progress = progress

    def violation(self, author: bytes | str, seq: int, code: str, message: str) -> None:
        a = author.hex() if isinstance(author, bytes) else author
        self.report.violations.append(Violation(a, seq, code, message))

    def run(self) -> AuditReport:
        batch: list[Record] = []
        try:
            for record in read_records(self.f):
                if record.kind == "entry":
                    batch.append(record)
                    if len(batch) >= BATCH:
                        self.entries(batch)
                        batch = []
                    continue
                if batch:
                    self.entries(batch)
                    batch = []
                self.other(record)
            if batch:
                self.entries(batch)
        finally:
            self.pool.shutdown()
        self.finish()
        return self.report

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
        self._feed(author).checkpoints.append(cp)
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

    def entries(self, records: list[Record]) -> None:
        genesis = self._genesis()
        decoded: list[tuple[Record, Entry | None]] = []
        for record in records:
            try:
                decoded.append((record, decode_entry(record.fields[0])))
            except (ProtocolError, IndexError) as e:
                decoded.append((record, None))
                author, seq = _where(record.fields[0])
                self.violation(author, seq, "bad-entry",
                               f"entry record at byte {record.offset}: {e}")
        good = [e for _, e in decoded if e is not None]
        chunks = [good[i::self.workers] for i in range(self.workers)]
        results = list(self.pool.map(_signatures_ok, chunks))
        ok: dict[int, bool] = {}
        for chunk, flags in zip(chunks, results, strict=True):
            for checked, flag in zip(chunk, flags, strict=True):
                ok[id(checked)] = flag
        ledger = self._ledger()
        for record, entry in decoded:
            if entry is None:
                continue
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
                self.violation(author, entry.seq, _code(e), str(e))
                feed.broken = True
                feed.verifier.advance(entry)
                continue
            feed.verifier.advance(entry)
            if not ok[id(entry)]:
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
            self.progress(len(records))

    def finish(self) -> None:
        genesis = self._genesis()
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
        from federation.reports import balances

        self.report.balances = balances(ledger)
        del genesis


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


def _signatures_ok(entries: list[Entry]) -> list[bool]:
    return [verify_signature(e.author, e.signature, SIGNING_PREFIX + e.header_bytes)
            for e in entries]


def _code(error: ProtocolError) -> str:
    import re

    name = type(error).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def audit_bundle(f: BinaryIO, *, workers: int = 2,
                 progress: Callable[[int], None] | None = None) -> AuditReport:
    """Audit the bundle in the seekable binary stream ``f``.

    Returns the report (``ok`` False when any violation was found). Raises
    :class:`BundleError` when the file is not a usable bundle.
    """
    return Auditor(f, workers, progress).run()
