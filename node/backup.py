"""Backups of a node: a consistent copy of its store, config and genesis in one
archive (``disco backup``), and a new home made from one (``disco restore``).

The archive is a gzip'd tar file. Its first member is ``manifest.json``::

    {"format": "disco-backup/1", "lab_id": hex, "name": str, "federation_id": hex,
     "created_us": int, "store": "sqlite" | "postgres" (the node's backend),
     "entries": int, "feeds": {author hex: seq},
     "files": {name: {"sha256": hex, "size": int}}}

then the files it names: ``node.json``, ``genesis.json``, ``ledger.sqlite``, and
``peers.json`` and ``lab.key`` when there are. ``ledger.sqlite`` is an SQLite store
in every case: a node on SQLite is copied with SQLite's online backup (one
consistent snapshot, while ``disco serve`` writes); a node on PostgreSQL has its
stored events read in one REPEATABLE READ transaction and written into a new SQLite
store, in their order (its ledger is recomputed from them on the first read). The
key is in the archive only when asked for, and then encrypted (PKCS#8 PEM,
:meth:`~protocol.keys.Signer.to_pem` with a passphrase).

A restore checks the manifest and every file's hash, builds the home in a temporary
folder beside the target and renames it into place at the end: a damaged or foreign
archive writes nothing. The restored home holds ``restored.json``
(:meth:`Home.restored`): the node authors nothing until a sync with a peer has
brought it its own feed (:mod:`node.client`), so a restore from an old backup does
not fork the LAB's own feed. Nothing here loads the whole store into memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from eventsourcing.persistence import StoredEvent

from federation.errors import GenesisError
from federation.genesis import decode_genesis_json
from node.errors import NodeError
from node.home import (
    CONFIG,
    GENESIS,
    HOME_FORMAT,
    KEY,
    RESTORED,
    SQLITE,
    Home,
    HomeError,
    save_private_key,
    write_json,
)
from node.service import PEERS
from node.store import PAGE, FeedStore, StoreConfig, StoreError, is_feed
from protocol.errors import KeyFileError, PassphraseError
from protocol.keys import Signer

FORMAT = "disco-backup/1"
MANIFEST = "manifest.json"
FILES = (CONFIG, GENESIS, PEERS, KEY, SQLITE)
"""The files an archive may hold, in the order it holds them."""
REQUIRED = (CONFIG, GENESIS, SQLITE)
SMALL_FILE = 1 << 20
"""The most bytes the manifest or a file other than the store may take."""
CHUNK = 1 << 20


class BackupError(NodeError):
    """An archive that is damaged, foreign or of another format, or a backup that
    cannot be written; the message names the file and says which."""


@dataclass(frozen=True)
class Backup:
    """What :func:`take_backup` wrote."""

    out: Path
    manifest: dict[str, Any]
    size: int

    @property
    def entries(self) -> int:
        return int(self.manifest["entries"])

    @property
    def with_key(self) -> bool:
        return KEY in self.manifest["files"]


@dataclass(frozen=True)
class Restored:
    """What :func:`restore_backup` made."""

    home: Home
    manifest: dict[str, Any]
    key: str | None
    """``"encrypted"`` (with the backup's passphrase), ``"decrypted"``, or None when
    the archive held no key."""
    waiting_for_sync: bool

    @property
    def entries(self) -> int:
        return int(self.manifest["entries"])


# -- taking a backup -------------------------------------------------------------------


def take_backup(home: Home, out: Path, now_us: int, key_pem: bytes | None = None) -> Backup:
    """Write a backup of ``home`` to ``out`` (refused when it exists): its store as one
    consistent snapshot, taken while other processes may write to it, its config,
    genesis and peers, and ``key_pem`` (the LAB key, encrypted by the caller) when
    given. The archive appears at ``out`` only once complete.

    Raises :class:`NodeError` before ``disco join``, :class:`BackupError` when ``out``
    exists or cannot be written, :class:`StoreError` when the store cannot be read.
    """
    genesis = home.genesis()
    if genesis is None:
        raise NodeError("this LAB has not joined a federation yet; nothing to back up")
    if out.exists():
        raise BackupError(f"{out} already exists; not overwriting it")
    config = home.store_config()
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise BackupError(f"cannot write in {out.parent}: {e.strerror}") from None
    try:
        store = work / SQLITE
        if config.backend == "postgres":
            _postgres_snapshot(config, store)
        else:
            assert config.path is not None
            _sqlite_snapshot(config.path, store)
        feeds, entries = _feeds_of(store)
        files: dict[str, Path] = {SQLITE: store}
        small = {CONFIG: _config_bytes(home), GENESIS: home.genesis_path.read_bytes()}
        if (home.path / PEERS).is_file():
            small[PEERS] = (home.path / PEERS).read_bytes()
        if key_pem is not None:
            small[KEY] = key_pem
        for name, data in small.items():
            files[name] = work / name
            files[name].write_bytes(data)
        manifest = {
            "format": FORMAT, "lab_id": home.lab_id.hex(), "name": home.name,
            "federation_id": genesis.federation_id.hex(), "created_us": now_us,
            "store": config.backend, "entries": entries, "feeds": feeds,
            "files": {name: _described(files[name]) for name in FILES if name in files},
        }
        archive = work / "archive.tar.gz"
        _write_archive(archive, manifest, files, now_us // 1_000_000)
        try:
            os.link(archive, out)  # never over a file that appeared meanwhile
        except FileExistsError:
            raise BackupError(f"{out} already exists; not overwriting it") from None
        return Backup(out, manifest, out.stat().st_size)
    except OSError as e:
        raise BackupError(f"cannot write the backup {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _config_bytes(home: Home) -> bytes:
    """The home's config as the archive keeps it: a PostgreSQL store's DSN, which may
    hold a password and which a restore never uses, left out."""
    config = dict(home.config)
    config["store"] = {k: v for k, v in dict(config["store"]).items() if k != "dsn"}
    return json.dumps(config, indent=2).encode() + b"\n"


def _sqlite_snapshot(source: Path, target: Path) -> None:
    """Copy the SQLite store at ``source`` to ``target`` with SQLite's online backup,
    in one step: one consistent snapshot while writers go on (they wait, at most the
    store's lock timeout, or keep writing to the WAL)."""
    if not source.is_file():
        raise StoreError(f"no store at {source}")
    try:
        src = sqlite3.connect(source, timeout=60)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # one file (a node sets WAL)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot copy the store {source}: {e}") from None


def _postgres_snapshot(config: StoreConfig, target: Path) -> None:
    """Copy every stored event of the PostgreSQL store into a new SQLite store at
    ``target``, read in one REPEATABLE READ transaction (one snapshot while writers
    go on) through a server-side cursor, in notification order, a page at a time."""
    FeedStore(config).close()  # its tables exist, as any node's store has them
    import psycopg
    from psycopg import sql

    query = sql.SQL("SELECT originator_id, originator_version, topic, state "
                    "FROM {}.stored_events ORDER BY notification_id").format(
                        sql.Identifier(config.schema or "public"))
    copy = FeedStore(StoreConfig("sqlite", path=target))
    try:
        with psycopg.connect(config.dsn or "", connect_timeout=10) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction(), conn.cursor(name="disco_backup") as cursor:
                cursor.itersize = PAGE
                cursor.execute(query)
                page: list[StoredEvent] = []
                for originator, version, topic, state in cursor:
                    page.append(StoredEvent(str(originator), int(version), str(topic),
                                            bytes(state)))
                    if len(page) >= PAGE:
                        copy.recorder.insert_events(page)
                        page = []
                if page:
                    copy.recorder.insert_events(page)
    except psycopg.Error as e:
        raise StoreError(f"cannot read the PostgreSQL store: {' '.join(str(e).split())}"
                         ) from None
    finally:
        copy.close()
    try:
        db = sqlite3.connect(target)
        try:
            db.execute("PRAGMA journal_mode=DELETE")  # one file (a node sets WAL)
        finally:
            db.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot write the store copy: {e}") from None


def _feeds_of(store: Path) -> tuple[dict[str, int], int]:
    """({author hex: seq} of every feed in the SQLite store at ``store``, entries)."""
    try:
        db = sqlite3.connect(f"{store.absolute().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT originator_id, MAX(originator_version), COUNT(*) "
                              "FROM stored_events GROUP BY originator_id").fetchall()
        finally:
            db.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the store copy: {e}") from None
    feeds = {str(a): int(seq) for a, seq, _ in rows if is_feed(str(a))}
    return dict(sorted(feeds.items())), sum(int(n) for a, _, n in rows if is_feed(str(a)))


def _described(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "size": path.stat().st_size}


def _tar_info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o600
    return info


def _write_archive(archive: Path, manifest: dict[str, Any], files: dict[str, Path],
                   mtime: int) -> None:
    """The manifest, then each file it names, streamed into a gzip'd tar readable by
    its owner only; synced."""
    data = json.dumps(manifest, indent=2).encode() + b"\n"
    with os.fdopen(os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                   "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6,
                           mtime=mtime) as gz, \
                tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_tar_info(MANIFEST, len(data), mtime), io.BytesIO(data))
            for name in manifest["files"]:
                with files[name].open("rb") as f:
                    tar.addfile(_tar_info(name, files[name].stat().st_size, mtime), f)
        raw.flush()
        os.fsync(raw.fileno())


# -- restoring -------------------------------------------------------------------------


def restore_backup(archive: Path, dest: Path, now_us: int, *,
                   passphrase: Callable[[], bytes] | None = None, decrypt_key: bool = False,
                   wait_for_peers: bool = True, postgres_dsn: str | None = None
                   ) -> Restored:
    """Make the home ``dest`` from the backup ``archive``, its store an SQLite store
    whatever the backed-up node's was, or with ``postgres_dsn`` the LAB's schema in
    that database (as ``disco init --postgres`` names it), which must hold no entries.
    ``dest`` must not exist or be empty.

    Everything is checked first (the manifest, every file's size and sha256, the
    config and genesis against the manifest, the key against the passphrase), in a
    temporary folder beside ``dest`` that is renamed into place at the end, so a
    failure writes nothing. ``passphrase()`` is called only when the archive holds a
    key; the key is kept encrypted with it, or saved unencrypted with
    ``decrypt_key``. Unless ``wait_for_peers`` is False the home holds the
    ``restored.json`` marker (:meth:`Home.restored`).

    Raises :class:`HomeError` for a ``dest`` that is in use, :class:`BackupError` for
    a damaged, foreign or unreadable archive, ``PassphraseError`` for a wrong
    passphrase, :class:`StoreError` for a PostgreSQL schema that holds entries or
    cannot be written.
    """
    dest = Path(os.path.abspath(dest))
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise HomeError(f"{dest} already exists and is not empty; restore into a new "
                        "folder")
    if not archive.is_file():
        raise BackupError(f"{archive}: no such backup file")
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.restore-", dir=parent))
    except OSError as e:
        raise HomeError(f"cannot create {dest}: {e.strerror}") from None
    loaded: StoreConfig | None = None
    try:
        manifest = _extract(archive, work)
        config = _checked_home(archive, work, manifest)
        key = None
        if KEY in manifest["files"]:
            key = _restore_key(archive, work, manifest, passphrase, decrypt_key)
        config["store"] = {"backend": "sqlite", "path": SQLITE}
        if postgres_dsn:
            config["store"] = {"backend": "postgres", "dsn": postgres_dsn,
                               "schema": "disco_" + manifest["lab_id"][:16]}
            target = StoreConfig("postgres", dsn=postgres_dsn,
                                 schema=config["store"]["schema"])
            _load_postgres(work / SQLITE, target)
            loaded = target
            (work / SQLITE).unlink()
        write_json(work / CONFIG, config)
        waiting = wait_for_peers
        if waiting:
            write_json(work / RESTORED, {
                "backup_created_us": manifest["created_us"], "restored_us": now_us,
                "own_seq": manifest["feeds"].get(manifest["lab_id"], 0)})
        for path in work.iterdir():
            with path.open("rb") as f:
                os.fsync(f.fileno())
        os.rename(work, dest)  # onto nothing, or onto an empty folder
        _sync_dir(parent)
    except BaseException as e:
        shutil.rmtree(work, ignore_errors=True)
        if loaded is not None:
            _unload_postgres(loaded)
        if isinstance(e, OSError):
            raise HomeError(f"cannot restore into {dest}: {e.strerror or e}") from None
        raise
    return Restored(Home.open(dest), manifest, key, waiting)


def _events_table(config: StoreConfig) -> Any:
    from psycopg import sql

    return sql.SQL("{}.stored_events").format(sql.Identifier(config.schema or "public"))


def _load_postgres(source: Path, config: StoreConfig) -> None:
    """Copy the stored events of the SQLite store at ``source``, in their order, into
    the PostgreSQL store of ``config`` (its tables made as a node makes them), in one
    transaction with COPY, a row at a time. Raises :class:`StoreError` when that
    store already holds events (the LAB's old store?) or cannot be written."""
    FeedStore(config).close()
    import psycopg
    from psycopg import sql

    table = _events_table(config)
    try:
        db = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True)
        try:
            with psycopg.connect(config.dsn or "", connect_timeout=10) as conn, \
                    conn.transaction():
                conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))
                held = conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(table))
                count = held.fetchone()
                if count and count[0]:
                    raise StoreError(
                        f"the PostgreSQL schema {config.schema} already holds {count[0]} "
                        "stored events (the LAB's old store?); restore into another "
                        "database, or drop that schema first")
                copy_sql = sql.SQL("COPY {} (originator_id, originator_version, topic, "
                                   "state) FROM STDIN").format(table)
                with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
                    for row in db.execute("SELECT originator_id, originator_version, "
                                          "topic, state FROM stored_events ORDER BY rowid"):
                        copy.write_row(row)
        finally:
            db.close()
    except psycopg.Error as e:
        raise StoreError(f"cannot write the PostgreSQL store: {' '.join(str(e).split())}"
                         ) from None
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the store copy: {e}") from None


def _unload_postgres(config: StoreConfig) -> None:
    """Take back what :func:`_load_postgres` stored (a restore that failed after it),
    as far as the database lets us."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(config.dsn or "", connect_timeout=10) as conn:
            conn.execute(sql.SQL("TRUNCATE {}").format(_events_table(config)))
    except psycopg.Error:
        pass


def _damaged(archive: Path, why: str) -> BackupError:
    return BackupError(f"{archive} is damaged or not a disco backup: {why}")


_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


@contextmanager
def _reading(archive: Path) -> Iterator[tarfile.TarFile]:
    """The archive opened as a stream; its format's errors become :func:`_damaged`.
    After the block the rest is read, so that gzip checks its trailer (the CRC and
    length of everything), which a tar stream alone would not."""
    try:
        with gzip.open(archive, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            yield tar
            while gz.read(CHUNK):
                pass
    except _ARCHIVE_ERRORS as e:
        why = str(e) or type(e).__name__
        if isinstance(e, EOFError) or why in ("empty file", "unexpected end of data"):
            why = "it ends too soon (a copy cut short?)"
        elif why.startswith("Not a gzipped file"):
            why = "not a gzip'd file"
        raise _damaged(archive, why) from None


def _extract(archive: Path, work: Path) -> dict[str, Any]:
    """Extract the archive's files into ``work``, checking each against the manifest
    (its first member) as it streams; return the manifest. Raises
    :class:`BackupError`."""
    manifest: dict[str, Any] | None = None
    seen: set[str] = set()
    with _reading(archive) as tar:
        for member in tar:
            if not member.isreg():
                raise _damaged(archive, f"{member.name!r} is not a regular file")
            source = tar.extractfile(member)
            assert source is not None
            if manifest is None:
                if member.name != MANIFEST or member.size > SMALL_FILE:
                    raise _damaged(archive, f"it does not start with {MANIFEST}")
                manifest = _checked_manifest(archive, source.read())
                continue
            described = manifest["files"].get(member.name)
            if described is None or member.name in seen:
                raise _damaged(archive, f"{member.name!r} is not in its manifest")
            seen.add(member.name)
            if member.size != described["size"]:
                raise _damaged(archive, f"{member.name} holds {member.size} bytes, its "
                                        f"manifest says {described['size']}")
            if _copy_hashed(source, work / member.name) != described["sha256"]:
                raise _damaged(archive, f"{member.name} does not match its sha256")
    if manifest is None:
        raise _damaged(archive, "it holds nothing")
    missing = sorted(set(manifest["files"]) - seen)
    if missing:
        raise _damaged(archive, f"{', '.join(missing)} missing (the archive is cut short?)")
    return manifest


def _checked_manifest(archive: Path, data: bytes) -> dict[str, Any]:
    """The manifest, when it is one of :data:`FORMAT` naming the files it must."""
    try:
        manifest = json.loads(data)
        fmt = manifest["format"]
    except (ValueError, TypeError, KeyError):
        raise _damaged(archive, f"{MANIFEST} is not a manifest") from None
    if fmt != FORMAT:
        raise BackupError(f"{archive}: a backup of format {fmt!r}, not {FORMAT!r}; "
                          "this version of disco cannot restore it")
    try:
        for field in ("lab_id", "federation_id"):
            if len(bytes.fromhex(manifest[field])) != 32:
                raise ValueError(field)
        files, feeds = manifest["files"], manifest["feeds"]
        ok = (type(manifest["created_us"]) is int and type(manifest["entries"]) is int
              and isinstance(files, dict) and isinstance(feeds, dict)
              and set(files) <= set(FILES) and set(REQUIRED) <= set(files)
              and all(type(f["size"]) is int and f["size"] >= 0
                      and isinstance(f["sha256"], str) for f in files.values())
              and all(type(s) is int for s in feeds.values()))
    except (ValueError, TypeError, KeyError, AttributeError):
        ok = False
    if not ok:
        raise _damaged(archive, f"{MANIFEST} lacks a field or has a wrong one")
    for name, described in files.items():
        if name != SQLITE and described["size"] > SMALL_FILE:
            raise _damaged(archive, f"{name} is too large ({described['size']} bytes)")
    return dict(manifest)


def _copy_hashed(source: IO[bytes], target: Path) -> str:
    """Copy ``source`` to ``target`` (mode 0600) a chunk at a time; its sha256."""
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def _checked_home(archive: Path, work: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The archive's node config, once it, the genesis and the store agree with the
    manifest. Raises :class:`BackupError`."""
    try:
        config = json.loads((work / CONFIG).read_bytes())
        ok = (isinstance(config, dict) and config.get("format") == HOME_FORMAT
              and config.get("lab_id") == manifest["lab_id"]
              and isinstance(config.get("name"), str))
    except ValueError:
        ok = False
    if not ok:
        raise _damaged(archive, f"its {CONFIG} is not the config of LAB "
                                f"{manifest['lab_id'][:8]}")
    try:
        genesis = decode_genesis_json((work / GENESIS).read_bytes())
    except GenesisError as e:
        raise _damaged(archive, f"its {GENESIS}: {e}") from None
    if genesis.federation_id.hex() != manifest["federation_id"]:
        raise _damaged(archive, f"its {GENESIS} is not of federation "
                                f"{manifest['federation_id'][:8]}")
    try:
        feeds, entries = _feeds_of(work / SQLITE)
    except StoreError:
        raise _damaged(archive, f"its {SQLITE} is not a store") from None
    if feeds != manifest["feeds"] or entries != manifest["entries"]:
        raise _damaged(archive, f"its {SQLITE} does not hold the feeds its manifest names")
    return dict(config)


def _restore_key(archive: Path, work: Path, manifest: dict[str, Any],
                 passphrase: Callable[[], bytes] | None, decrypt: bool) -> str:
    """Check the archive's key with the passphrase and write it (mode 0600): kept
    encrypted, or unencrypted with ``decrypt``. Raises ``PassphraseError`` or
    :class:`BackupError`."""
    path = work / KEY
    data = path.read_bytes()
    path.unlink()
    if passphrase is None:
        raise BackupError(f"{archive} holds the LAB key: a passphrase is needed")
    secret = passphrase()
    try:
        signer = Signer.from_pem(data, secret)
    except PassphraseError as e:
        raise PassphraseError(f"{archive}: the LAB key in this backup: {e}") from None
    except KeyFileError as e:
        raise _damaged(archive, f"its {KEY}: {e}") from None
    if signer.public_key.hex() != manifest["lab_id"]:
        raise _damaged(archive, f"its {KEY} is not the key of LAB {manifest['lab_id'][:8]}")
    save_private_key(path, signer, None if decrypt else secret)
    return "decrypted" if decrypt else "encrypted"


def _sync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["FORMAT", "Backup", "BackupError", "Restored", "restore_backup", "take_backup"]
