"""The node's store: one eventsourcing aggregate sequence per feed.

- originator id = the author's LAB id in hex; originator version = seq;
  topic = the entry kind; state = the entry bytes, verbatim.
- Own entries and peers' entries take the same path, :meth:`FeedStore.insert`.
  The recorder's uniqueness on (originator, version) makes a second entry at a
  taken seq fail loudly (:class:`SeqTaken`) instead of forking the feed.
- Reads stream in pages; nothing here loads a whole feed into memory.
- The libraries' errors (eventsourcing's, sqlite3's) leave this module as
  :class:`StoreError`, so no caller needs to know them; only eventsourcing's
  ``IntegrityError`` (a taken position) reaches the direct users of
  :attr:`FeedStore.recorder`, who handle it.

SQLite (the embedded default) or PostgreSQL, chosen by :class:`StoreConfig`. The
eventsourcing library is synchronous: async callers run these methods in a worker
thread. One :class:`FeedStore` per process; several processes may share a store,
their writes serialised by the database.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    PersistenceError,
    ProcessRecorder,
    StoredEvent,
    Tracking,
)

from federation.errors import Violation
from node.errors import NodeError
from protocol.entry import Entry, FeedVerifier, check_signature, decode_entry, short, where
from protocol.errors import BadSignatureError, ProtocolError
from protocol.sync import ForkProof, decode_fork_proof

PAGE = 1000
FORKS = "forks"
"""The aggregate that holds fork proofs (version k = the k-th proof learned)."""
ASIDE = "aside-"
"""The prefix of the aggregates that keep entries a fork repair set aside."""
SQLITE_LOCK_TIMEOUT_S = 60
OPEN_ATTEMPTS = 10


_HEX = frozenset("0123456789abcdef")


def is_feed(originator: str) -> bool:
    """True for a feed's aggregate (an author id in hex); False for the store's other
    aggregates (fork proofs, checkpoints, conflicts)."""
    return len(originator) == 64 and set(originator) <= _HEX


class StoreError(NodeError):
    """The store cannot be opened, read or written (missing, damaged, unreachable,
    locked too long): the storage libraries' errors, translated."""


_LIBRARY_ERRORS = (PersistenceError, sqlite3.Error)


@contextmanager
def _translated() -> Iterator[None]:
    """Raise the storage libraries' errors in the block as :class:`StoreError`."""
    try:
        yield
    except _LIBRARY_ERRORS as e:
        raise StoreError(f"store error: {e}") from e


class _Recorder:
    """An eventsourcing recorder whose methods raise the libraries' errors as
    :class:`StoreError`, but ``IntegrityError`` (a taken position: its callers
    handle it) as it is."""

    def __init__(self, recorder: ProcessRecorder) -> None:
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._recorder, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except IntegrityError:
                raise
            except _LIBRARY_ERRORS as e:
                raise StoreError(f"store error: {e}") from e

        setattr(self, name, call)  # found directly from now on
        return call


class SeqTaken(StoreError):
    """Another entry already holds this (author, seq): a concurrent writer or a fork."""

    def __init__(self, author: bytes, seq: int) -> None:
        super().__init__(f"seq {seq} of {short(author)} is already taken")
        self.author = author
        self.seq = seq


@dataclass(frozen=True)
class StoreConfig:
    """Where a node keeps its entries: ``sqlite`` at ``path`` or ``postgres`` at ``dsn``."""

    backend: str = "sqlite"
    path: Path | None = None
    dsn: str | None = None
    schema: str | None = None

    def environment(self) -> dict[str, str]:
        """The eventsourcing environment for this store. Raises :class:`StoreError`."""
        env = {"ORIGINATOR_ID_TYPE": "text", "CREATE_TABLE": "yes"}
        if self.backend == "sqlite":
            if self.path is None:
                raise StoreError("sqlite store needs a path")
            env.update(
                PERSISTENCE_MODULE="eventsourcing.sqlite",
                SQLITE_DBNAME=str(self.path),
                SQLITE_LOCK_TIMEOUT=str(SQLITE_LOCK_TIMEOUT_S),
            )
            return env
        if self.backend == "postgres":
            if not self.dsn:
                raise StoreError("postgres store needs a DSN")
            from psycopg.conninfo import conninfo_to_dict

            try:
                info = conninfo_to_dict(self.dsn)
            except Exception as e:  # psycopg raises ProgrammingError for bad DSNs
                raise StoreError(f"invalid PostgreSQL DSN: {e}") from None
            env.update(
                PERSISTENCE_MODULE="eventsourcing.postgres",
                POSTGRES_DBNAME=str(info.get("dbname", "postgres")),
                POSTGRES_HOST=str(info.get("host", "127.0.0.1")),
                POSTGRES_PORT=str(info.get("port", "5432")),
                POSTGRES_USER=str(info.get("user", "postgres")),
                POSTGRES_PASSWORD=str(info.get("password", "")),
                POSTGRES_SCHEMA=self.schema or "public",
                POSTGRES_LOCK_TIMEOUT="30",
                POSTGRES_CONNECT_TIMEOUT="10",
            )
            return env
        raise StoreError(f"unknown store backend {self.backend!r}: want sqlite or postgres")


def _ensure_postgres_schema(config: StoreConfig) -> None:
    if not config.schema:
        return
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", config.schema):
        raise StoreError(f"invalid PostgreSQL schema name {config.schema!r}")
    import psycopg

    try:
        with psycopg.connect(config.dsn or "", autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{config.schema}"')
    except psycopg.Error as e:
        raise StoreError(f"cannot reach PostgreSQL: {str(e).strip()}") from None


def check_postgres(dsn: str) -> None:
    """Connect to ``dsn`` once. Raises :class:`StoreError` naming the DSN (its
    password hidden) and the reason when it is no DSN or cannot be reached."""
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise StoreError("--postgres needs psycopg: pip install 'disco-ledger[postgres]'"
                         ) from None
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error as e:
        raise StoreError(f"--postgres: not a PostgreSQL DSN: {_first_line(e)}") from None
    shown = _without_password(dsn, info)
    try:
        with psycopg.connect(dsn, connect_timeout=10):
            pass
    except psycopg.Error as e:
        raise StoreError(f"cannot reach PostgreSQL at {shown}: {_first_line(e)}") from None


def _without_password(dsn: str, info: Mapping[str, Any]) -> str:
    """The DSN as a person typed it, with any password replaced by ``***``."""
    password = info.get("password")
    if not password:
        return dsn
    parts = urlsplit(dsn)
    if parts.scheme in ("postgresql", "postgres") and parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        shown = urlunsplit(parts._replace(netloc=netloc))
    else:
        shown = dsn
    return shown.replace(str(password), "***")


def _first_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


Problem = Violation
"""A problem found in a store: the same shape as an audit's violations."""


class FeedStore:
    """Feeds of signed entries kept through an eventsourcing process recorder."""

    def __init__(self, config: StoreConfig) -> None:
        """Open (creating tables if needed). Raises :class:`StoreError`."""
        self.config = config
        for attempt in range(OPEN_ATTEMPTS):
            try:
                if config.backend == "postgres":
                    _ensure_postgres_schema(config)
                self.factory = InfrastructureFactory.construct(env=config.environment())
                self.recorder: ProcessRecorder = _Recorder(  # type: ignore[assignment]
                    self.factory.process_recorder())
                self._create_view_tables()
                return
            except (StoreError, PersistenceError, OSError, sqlite3.Error) as e:
                # Two processes creating the schema, tables and PostgreSQL functions at
                # once can collide ("tuple concurrently updated", "duplicate key"): the
                # loser closes what it opened and tries again.
                factory = getattr(self, "factory", None)
                if factory is not None:
                    factory.close()
                racing = "concurrent" in str(e) or "duplicate key" in str(e)
                if config.backend == "postgres" and racing and attempt + 1 < OPEN_ATTEMPTS:
                    time.sleep(0.1 * (attempt + 1))
                    continue
                if isinstance(e, StoreError):
                    raise
                raise StoreError(f"cannot open the store: {e}") from None

    def close(self) -> None:
        with _translated():
            self.factory.close()

    def __enter__(self) -> FeedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------

    def _last(self, author: bytes) -> StoredEvent | None:
        rows = self.recorder.select_events(author.hex(), desc=True, limit=1)
        return rows[0] if rows else None

    def head(self, author: bytes) -> tuple[int, bytes | None]:
        """(seq, entry hash) of the feed's last stored entry; (0, None) if empty."""
        last = self._last(author)
        if last is None:
            return 0, None
        return last.originator_version, decode_entry(last.state).hash

    def get(self, author: bytes, seq: int) -> Entry | None:
        """The stored entry at (author, seq), or None."""
        rows = self.recorder.select_events(author.hex(), gt=seq - 1, lte=seq, limit=1)
        return decode_entry(rows[0].state) if rows else None

    def read_raw(
        self, author: bytes, after: int = 0, upto: int | None = None, page: int = PAGE
    ) -> Iterator[tuple[int, bytes]]:
        """(seq, entry bytes) of one feed from seq ``after + 1``, streamed in pages."""
        while True:
            rows = self.recorder.select_events(author.hex(), gt=after, lte=upto, limit=page)
            for row in rows:
                yield row.originator_version, row.state
            if len(rows) < page:
                return
            after = rows[-1].originator_version

    def read_feed(
        self, author: bytes, after: int = 0, upto: int | None = None, page: int = PAGE
    ) -> Iterator[Entry]:
        """Decoded entries of one feed from seq ``after + 1``, streamed in pages."""
        for _, raw in self.read_raw(author, after, upto, page):
            yield decode_entry(raw)

    def notifications(
        self, after: int = 0, page: int = PAGE
    ) -> Iterator[tuple[int, str, int, bytes]]:
        """(notification id, originator, version, entry bytes) in store order, streamed."""
        while True:
            rows = self.recorder.select_notifications(
                after, page, inclusive_of_start=False
            )
            for n in rows:
                yield n.id, str(n.originator_id), n.originator_version, n.state
            if len(rows) < page:
                return
            after = rows[-1].id

    def max_notification_id(self) -> int:
        return self.recorder.max_notification_id() or 0

    # -- writing ---------------------------------------------------------------

    def insert(self, entries: Sequence[Entry]) -> list[int]:
        """Store entries, all or none, in one transaction; return their notification ids.

        The caller has verified them. Raises :class:`SeqTaken` when any
        (author, seq) is already stored, and then stores none of them.
        """
        if not entries:
            return []
        events = [StoredEvent(e.author.hex(), e.seq, e.kind, e.raw) for e in entries]
        try:
            ids = self.recorder.insert_events(events)
        except IntegrityError:
            raise SeqTaken(entries[0].author, entries[0].seq) from None
        return list(ids or [])

    def append_own(
        self,
        build: Callable[[int, bytes | None], Sequence[Entry]],
        author: bytes,
        *,
        attempts: int = 200,
    ) -> tuple[list[Entry], list[int]]:
        """Sign-and-store in one step, safe against concurrent writers.

        ``build(head_seq, head_hash)`` returns the signed entries that continue the
        feed. If another writer took the seq first (the insert finds it taken, or
        ``build`` raises :class:`SeqTaken` because what it read is past the head),
        the head is re-read and ``build`` called again, so two writers never produce
        two entries at one seq. Returns the entries and their notification ids.
        Raises :class:`StoreError` after ``attempts`` lost races, and whatever else
        ``build`` raises (nothing is stored then).
        """
        for attempt in range(attempts):
            seq, head_hash = self.head(author)
            try:
                entries = list(build(seq, head_hash))
                ids = self.insert(entries)
            except SeqTaken:
                time.sleep(min(0.001 * (attempt + 1), 0.05))
                continue
            return entries, ids
        raise StoreError(f"gave up appending to {short(author)} after {attempts} conflicts")

    # -- fork proofs -------------------------------------------------------------

    def fork_proofs(self) -> dict[bytes, ForkProof]:
        """Every stored fork proof, by forked author (the first learned per author)."""
        proofs: dict[bytes, ForkProof] = {}
        for row in self.recorder.select_events(FORKS):
            proof = decode_fork_proof(row.state, _trusted=True)
            proofs.setdefault(proof.author, proof)
        return proofs

    def add_fork_proof(self, proof: ForkProof) -> bool:
        """Store a (verified) proof unless one for its author is held; True if stored."""
        for _ in range(20):
            rows = self.recorder.select_events(FORKS)
            if any(decode_fork_proof(r.state, _trusted=True).author == proof.author
                   for r in rows):
                return False
            version = rows[-1].originator_version + 1 if rows else 1
            try:
                self.recorder.insert_events(
                    [StoredEvent(FORKS, version, "fork.proof", proof.encode())])
            except IntegrityError:
                continue
            return True
        raise StoreError("could not store a fork proof after 20 conflicts")

    # -- fork repair -------------------------------------------------------------

    def set_aside(self, author: bytes, from_seq: int, tag: str) -> int:
        """Move the entries of ``author``'s feed from ``from_seq`` on out of the feed,
        into the evidence aggregate ``aside-AUTHOR-TAG`` (same versions), where they
        stay (as evidence: the store keeps them) but are no longer the feed: the feed
        then ends at ``from_seq - 1`` and continues from there. Used once a repair of
        a forked feed is in force (:mod:`federation.governance`). Safe to repeat
        after a crash part way (a copy already kept is not kept twice). Returns how
        many entries moved. Raises :class:`StoreError`."""
        aside = f"{ASIDE}{author.hex()}-{tag}"
        rows = list(self.recorder.select_events(author.hex(), gt=from_seq - 1))
        for row in rows:
            try:
                self.recorder.insert_events([StoredEvent(aside, row.originator_version,
                                                         row.topic, row.state)])
            except IntegrityError:
                pass  # kept by an earlier, interrupted call
        sql = self._view_sql("DELETE FROM {e} WHERE originator_id = ? "
                             "AND originator_version >= ?")
        datastore: Any = self.recorder.datastore  # type: ignore[attr-defined]
        with _translated(), datastore.transaction(commit=True) as c:
            c.execute(sql, [author.hex(), from_seq])
            # Its checkpoints were signed over the branch set aside (or under the key
            # a repair replaced): they go too; the LAB signs new ones.
            c.execute(sql, [f"checkpoints-{author.hex()}", 0])
            for table in ("{t}", "{s}"):  # its Merkle range, to be built again
                c.execute(self._view_sql(f"DELETE FROM {table} WHERE name=?"),
                          [f"merkle-{author.hex()}"])
        return len(rows)

    # -- projection views (state saved atomically with a tracking record) -------
    #
    # A view is a projection's saved state at a notification position. The state and
    # its summary live in two tables (SQLite reads a column stored after a large blob
    # by walking the blob's pages, so the summary gets a row of its own). A save never
    # replaces a state saved at a later position, and records the eventsourcing
    # tracking record in the same transaction, whose first statement is a write: a
    # read-then-write transaction would fail at once in SQLite when another process
    # committed in between.

    def _view_sql(self, sql: str) -> str:
        """``sql`` for this backend: ``{t}``, ``{s}`` and ``{e}`` name the views, the
        summaries and the stored events tables (in the schema, on PostgreSQL)."""
        events = self.recorder.events_table_name  # type: ignore[attr-defined]
        if self.config.backend == "postgres":
            schema = f'"{self.config.schema or "public"}".'
            sql = sql.replace("{t}", schema + "projection_views")
            sql = sql.replace("{s}", schema + "projection_summaries")
            sql = sql.replace("{e}", schema + events)
            return sql.replace("?", "%s")
        return (sql.replace("{t}", "projection_views").replace("{s}", "projection_summaries")
                .replace("{e}", events))

    def _create_view_tables(self) -> None:
        blob = "BYTEA" if self.config.backend == "postgres" else "BLOB"
        datastore: Any = self.recorder.datastore  # type: ignore[attr-defined]
        with _translated(), datastore.transaction(commit=True) as c:
            for table, column in (("{t}", "state"), ("{s}", "summary")):
                c.execute(self._view_sql(
                    f"CREATE TABLE IF NOT EXISTS {table} (name TEXT PRIMARY KEY, "
                    f"pos BIGINT NOT NULL, {column} {blob})"))

    def load_view(self, name: str, *, state: bool = True) -> tuple[int, bytes | None,
                                                                   bytes | None]:
        """(position, state, summary) of a projection; (0, None, None) if none saved.

        With ``state=False`` only the small summary is read (the position is then
        the summary's, the same as the state's: they are saved together).
        """
        datastore: Any = self.recorder.datastore  # type: ignore[attr-defined]
        with _translated(), datastore.transaction(commit=False) as c:
            c.execute(self._view_sql("SELECT pos, summary FROM {s} WHERE name=?"), [name])
            summary_row = c.fetchone()
            state_row = None
            if state:
                c.execute(self._view_sql("SELECT pos, state FROM {t} WHERE name=?"), [name])
                state_row = c.fetchone()
        summary_pos, summary = _row(summary_row)
        if not state:
            return summary_pos, None, summary
        state_pos, saved = _row(state_row)
        return state_pos, saved, summary if summary_pos == state_pos else None

    def save_view(self, name: str, position: int, state: bytes, summary: bytes) -> bool:
        """Store a projection's state and summary at ``position`` with its tracking
        record, atomically. Returns False (and changes nothing) when a state at a
        later position is already saved (by another process, say)."""
        datastore: Any = self.recorder.datastore  # type: ignore[attr-defined]
        upsert = ("INSERT INTO {t} VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                  "pos = excluded.pos, {c} = excluded.{c} WHERE {t}.pos <= excluded.pos")
        with _translated(), datastore.transaction(commit=True) as c:
            c.execute(self._view_sql(upsert.replace("{c}", "state")),
                      [name, position, state])
            c.execute(self._view_sql("SELECT pos FROM {t} WHERE name=?"), [name])
            if _row(c.fetchone())[0] != position:
                return False
            c.execute(self._view_sql(upsert.replace("{t}", "{s}").replace("{c}", "summary")),
                      [name, position, summary])
            tracked = self.recorder._max_tracking_id(name, c)  # type: ignore[attr-defined]
            if position > (tracked or 0):
                self.recorder._insert_tracking(c, Tracking(name, position))  # type: ignore[attr-defined]
        return True

    # -- verification ----------------------------------------------------------

    def verify(self, federation_id: bytes, roster: Sequence[bytes],
               key_at: Callable[[bytes, int], bytes | None] | None = None) -> Iterator[Problem]:
        """Check every stored entry (the rules of :class:`StoreCheck`; ``key_at`` the
        key in force at an entry). Streams the notification log once, keeping
        O(feeds) state; yields each problem found.
        """
        check = StoreCheck(federation_id, roster, key_at=key_at)
        for _, originator, version, raw in self.notifications():
            found = check.row(originator, version, raw)
            if isinstance(found, Problem):
                yield found


class StoreCheck:
    """The checks of ``disco verify``, one stored row at a time in notification order:
    decoding and canonical form (the body hash included), row/entry agreement,
    roster membership, federation, seq continuity, chain link to the previous entry,
    and the signature. O(feeds) state.

    :meth:`FeedStore.verify` and a verified catch-up of the ledger (``disco
    rebuild``, :mod:`node.projection`) both use it, so the rules exist once. With
    ``signatures=False`` the caller checks signatures itself, in bulk
    (:func:`check_signatures`), and reports a bad one with :meth:`bad_signature`.
    """

    def __init__(self, federation_id: bytes, roster: Sequence[bytes] | None, *,
                 signatures: bool = True,
                 key_at: Callable[[bytes, int], bytes | None] | None = None) -> None:
        """``roster``: the LABs whose feeds may be stored (None: the caller checks
        membership itself, as a roster grows while a log is read); ``key_at``: the
        key in force at an entry (default: its LAB's id)."""
        self.federation_id = federation_id
        self.members = {a.hex() for a in roster} if roster is not None else None
        self.signatures = signatures
        self.key_at = key_at
        self.verifiers: dict[str, FeedVerifier] = {}
        self.broken: set[str] = set()

    def row(self, originator: str, version: int, raw: bytes) -> Entry | Problem | None:
        """The entry of a feed's row when it passes; the :data:`Problem` when it
        fails; None for a sound row that holds no entry (a fork proof, a checkpoint)
        and for the rows of a feed whose earlier row could not be read at all."""
        if originator == FORKS:
            try:
                decode_fork_proof(raw, self.key_at)
            except ProtocolError as e:
                return Problem(originator, version, "bad-fork-proof", str(e))
            return None
        if not is_feed(originator) and originator.startswith(("checkpoints-", "conflicts",
                                                              ASIDE)):
            return None
        if self.members is not None and originator not in self.members:
            return Problem(originator, version, "not-in-roster",
                           "feed of an author outside the roster")
        if originator in self.broken:
            return None
        v = self.verifiers.get(originator)
        if v is None:
            v = self.verifiers[originator] = FeedVerifier(self.federation_id,
                                                          bytes.fromhex(originator))
        try:
            entry = decode_entry(raw)
        except ProtocolError as e:
            self.broken.add(originator)
            return Problem(originator, version, e.code, f"{e} (later entries unchecked)")
        if entry.seq != version or entry.author.hex() != originator:
            self.broken.add(originator)
            return Problem(originator, version, "misfiled",
                           f"row says {where(bytes.fromhex(originator), version)} "
                           f"but the entry is {entry.where} (later entries unchecked)")
        try:
            if self.signatures:
                v.check_link(entry)
                key = self.key_at(entry.author, entry.seq) if self.key_at else None
                check_signature(entry, key or entry.author)
                v.advance(entry)
            else:
                v.check_link(entry)
                v.advance(entry)
        except ProtocolError as e:
            v.advance(entry)
            return Problem(originator, version, e.code, str(e))
        return entry

    @staticmethod
    def bad_signature(entry: Entry, key: bytes | None = None) -> Problem:
        """The problem of an entry whose signature :func:`check_signatures` (or a check
        under ``key``) refused."""
        try:
            check_signature(entry, key)
        except ProtocolError as e:
            return Problem(entry.author.hex(), entry.seq, e.code, str(e))
        raise ValueError(f"entry {entry.where}: its signature verifies")


SIGNATURE_CHUNK = 64
_verify_pool: ThreadPoolExecutor | None = None


def verify_pool() -> ThreadPoolExecutor:
    """The threads that check signatures on every core (libsodium releases the GIL)."""
    global _verify_pool
    if _verify_pool is None:
        _verify_pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1),
                                          thread_name_prefix="disco-verify")
    return _verify_pool


def _signatures_ok(entries: Sequence[Entry]) -> list[bool]:
    ok = []
    for entry in entries:
        try:
            check_signature(entry)
            ok.append(True)
        except BadSignatureError:
            ok.append(False)
    return ok


def check_signatures(entries: Sequence[Entry]) -> Callable[[], list[bool]]:
    """Start checking the entries' signatures, in chunks, on every core; the function
    returned waits for them and says, for each entry, whether its signature verifies."""
    pool = verify_pool()
    futures = [pool.submit(_signatures_ok, entries[i:i + SIGNATURE_CHUNK])
               for i in range(0, len(entries), SIGNATURE_CHUNK)]
    return lambda: [ok for future in futures for ok in future.result()]


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _row(row: Any) -> tuple[int, bytes | None]:
    """(pos, blob) of a views row from either backend; (0, None) for no row."""
    if row is None:
        return 0, None
    values = list(row.values()) if isinstance(row, dict) else list(row)
    return int(values[0]), _bytes(values[1]) if len(values) > 1 else None


