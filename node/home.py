"""A node's home folder: its config, its LAB key, its genesis and its store.

Layout::

    DIR/node.json      {"format": "disco-node/1", "lab_id": hex, "name": str,
                        "store": {"backend": "sqlite", "path": "ledger.sqlite"}
                               | {"backend": "postgres", "dsn": ..., "schema": ...}}
    DIR/lab.key        Ed25519 private key, PKCS#8 PEM, mode 0600, maybe encrypted
                       (the LAB id's key, or the key a rotation or recovery put in
                       force; a replaced one is kept as lab.key.old-TIMESTAMP)
    DIR/genesis.json   the federation joined (after ``disco join``)
    DIR/ledger.sqlite  the embedded store (SQLite backend)
    DIR/lab.lock       held (flock) by the process appending to the LAB's own feed
    DIR/serve.lock     held (flock) by the running ``disco serve``; holds its pid
    DIR/checked.json   the outcome of the last full check of the store:
                       {"at": ISO 8601 UTC, "ok": bool, "problems": int,
                        "by": "init" | "verify" | "rebuild" | "audit" | "catch-up"}
    DIR/restored.json  written by ``disco restore``: the node waits for a sync with a
                       peer before it authors anything (:meth:`Home.restored`)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from federation.errors import GenesisError
from federation.genesis import Genesis, decode_genesis_json, encode_genesis_json
from node.errors import NodeError
from node.store import StoreConfig
from protocol.errors import KeyFileError, PassphraseError
from protocol.keys import Signer, is_encrypted_pem

HOME_FORMAT = "disco-node/1"
CONFIG = "node.json"
KEY = "lab.key"
GENESIS = "genesis.json"
SQLITE = "ledger.sqlite"
LOCK = "lab.lock"
SERVE_LOCK = "serve.lock"
CHECKED = "checked.json"
RESTORED = "restored.json"
WRITER_WAIT_S = 30.0
"""How long a writer waits for another process appending to the same feed."""

try:
    import fcntl
except ImportError:  # not on Windows: writers there rely on the store's retry alone
    fcntl = None  # type: ignore[assignment]


class HomeError(NodeError):
    """The home folder is missing, foreign or damaged; the message says which."""


class NodeRunning(NodeError):
    """Another ``disco serve`` holds this home (:meth:`Home.serve_lock`)."""


class WaitingForSync(NodeError):
    """This node was restored from a backup and has not synced its own feed from a
    peer yet (:meth:`Home.check_may_author`): what it would author now could fork
    its own feed."""


def _open_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise HomeError(f"cannot open {path}: {e.strerror}") from None


def _flock(fd: int, wait_s: float) -> bool:
    """Take an exclusive ``flock`` on ``fd``, waiting at most ``wait_s`` seconds (0:
    one try) for another holder; False when it could not. (Always True where there
    is no ``flock``.)"""
    if fcntl is None:
        return True
    deadline = time.monotonic() + wait_s
    pause = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


@dataclass(frozen=True)
class Home:
    """An opened node folder. Use :meth:`create` or :meth:`open`."""

    path: Path
    config: dict[str, Any]

    @property
    def lab_id(self) -> bytes:
        return bytes.fromhex(self.config["lab_id"])

    @property
    def name(self) -> str:
        return str(self.config["name"])

    @property
    def key_path(self) -> Path:
        return self.path / KEY

    @property
    def genesis_path(self) -> Path:
        return self.path / GENESIS

    @classmethod
    def create(
        cls, path: Path, name: str, *, passphrase: bytes | None = None,
        postgres_dsn: str | None = None,
    ) -> tuple[Home, Signer]:
        """Make a new node folder with a fresh LAB key.

        Refuses a folder that already holds anything. Raises :class:`HomeError`.
        """
        if not name.strip() or len(name) > 120:
            raise HomeError("LAB name must be 1 to 120 characters")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise HomeError(f"{path} already exists and is not empty; choose another --home")
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise HomeError(f"cannot create {path}: {e.strerror}") from None
        signer = Signer.generate()
        store: dict[str, Any]
        if postgres_dsn:
            store = {"backend": "postgres", "dsn": postgres_dsn,
                     "schema": "disco_" + signer.public_key.hex()[:16]}
        else:
            store = {"backend": "sqlite", "path": SQLITE}
        config = {"format": HOME_FORMAT, "lab_id": signer.public_key.hex(), "name": name,
                  "store": store}
        save_private_key(path / KEY, signer, passphrase)
        write_json(path / CONFIG, config)
        home = cls(path, config)
        home.record_check(ok=True, problems=0, by="init")  # an empty store holds nothing wrong
        return home, signer

    @classmethod
    def open(cls, path: Path) -> Home:
        """Open an existing node folder. Raises :class:`HomeError` when it is missing,
        is not a disco node folder, or its config is damaged."""
        if not path.is_dir():
            raise HomeError(f"{path}: no node folder here; run 'disco init' first")
        cfg = path / CONFIG
        if not cfg.is_file():
            raise HomeError(f"{path} is not a disco node folder (no {CONFIG})")
        try:
            config = json.loads(cfg.read_text(encoding="utf-8"))
            if config.get("format") != HOME_FORMAT:
                raise ValueError("format")
            bytes.fromhex(config["lab_id"])
            str(config["name"])
            dict(config["store"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise HomeError(f"{cfg} is damaged or not a disco node config") from None
        return cls(path, config)

    def signer(self, passphrase: bytes | None = None) -> Signer:
        """The LAB key: its first key (the LAB id) or a later one (``disco key
        rotate``, ``disco key new`` for a recovery); whether it signs the LAB's feed
        now is the ledger's to say (:meth:`LabNode.author_many`). Raises
        ``KeyFileError``/``PassphraseError`` (protocol.errors), ``KeyFileError`` too
        for a key file others may read (:meth:`check_key_file`)."""
        self.check_key_file()
        return load_private_key(self.key_path, passphrase)

    def check_key_file(self) -> None:
        """Refuse a key file that the group or others may read or write, as ssh does:
        raises ``KeyFileError`` naming the fix. The node writes its key mode 0600; a
        looser mode comes from a copy or a restore, and the key *is* the LAB. (A
        missing file is left to the loader to report.)"""
        path = self.key_path
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            return
        if os.name == "posix" and mode & 0o077:
            how = "readable" if mode & 0o044 else "writable"
            raise KeyFileError(f"key file {path} is {how} by others (mode {mode:04o}); "
                               f"run 'chmod 600 {path}'")

    def key_is_encrypted(self) -> bool:
        try:
            return is_encrypted_pem(self.key_path.read_bytes())
        except OSError:
            return False

    def store_config(self) -> StoreConfig:
        """Where this node keeps its entries. Raises :class:`HomeError` on a bad config."""
        store = self.config["store"]
        backend = store.get("backend")
        if backend == "sqlite":
            return StoreConfig("sqlite", path=self.path / store.get("path", SQLITE))
        if backend == "postgres":
            return StoreConfig("postgres", dsn=store.get("dsn"), schema=store.get("schema"))
        raise HomeError(f"{self.path / CONFIG}: unknown store backend {backend!r}")

    @contextmanager
    def writer_lock(self, wait_s: float = WRITER_WAIT_S) -> Iterator[None]:
        """Hold this LAB's writer lock (``flock`` on DIR/lab.lock) for the block, so
        that the processes appending to the LAB's own feed take turns.

        Waits at most ``wait_s`` seconds for another holder, then raises
        :class:`TimeoutError` with a message for a person. The lock goes with the
        process: a writer that dies releases it.
        """
        path = self.path / LOCK
        fd = _open_lock(path)
        try:
            if not _flock(fd, wait_s):
                raise TimeoutError(
                    f"another disco process has been writing to this LAB's "
                    f"feed for over {wait_s:g} s (it holds {path}); "
                    "try again when it has finished")
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def serve_lock(self) -> Iterator[None]:
        """Hold this home's serve lock (``flock`` on DIR/serve.lock, which then holds
        the pid) for the block: one ``disco serve`` per home. Raises
        :class:`NodeRunning` at once when another process holds it. The lock goes
        with the process: a node that dies releases it."""
        path = self.path / SERVE_LOCK
        fd = _open_lock(path)
        try:
            if not _flock(fd, 0.0):
                try:
                    pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                except OSError:
                    pid = "unknown"
                raise NodeRunning(f"another disco serve is running on this home (pid {pid})")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def record_check(self, *, ok: bool, problems: int, by: str,
                     at: datetime | None = None) -> None:
        """Note the outcome of a full check of the store (``disco verify``, a verified
        ``disco rebuild``, ``disco audit --home``, a catch-up of the ledger from
        nothing), for :meth:`last_check`."""
        at = at or datetime.now(UTC)
        write_json(self.path / CHECKED, {
            "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "ok": ok,
            "problems": problems, "by": by})

    def last_check(self) -> dict[str, Any] | None:
        """``{"at", "ok", "problems", "by"}`` of the last full check of the store; None
        when it was never checked (or the record is unreadable, which counts as never)."""
        try:
            data = json.loads((self.path / CHECKED).read_text(encoding="utf-8"))
            at = str(data["at"])
            datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ")
            checked = {"at": at, "ok": data["ok"] is True,
                       "problems": int(data["problems"]), "by": str(data["by"])}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return checked

    def restored(self) -> dict[str, Any] | None:
        """While this node waits, after ``disco restore``, to sync its own feed from a
        peer: ``{"waiting_for_sync": True, ...}`` with what the marker file says of
        the backup (``backup_created_us``, ``own_seq``: the seq of its own feed in
        the backup, ``restored_us``). None once a sync has cleared it (or when the
        node was never restored). A damaged marker still counts as waiting."""
        try:
            data = json.loads((self.path / RESTORED).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            data = {}
        kept = {k: v for k, v in (data.items() if isinstance(data, dict) else [])
                if k in ("backup_created_us", "own_seq", "restored_us")
                and type(v) is int}
        return {"waiting_for_sync": True, **kept}

    def check_may_author(self) -> None:
        """Raise :class:`WaitingForSync` while :meth:`restored` says the node waits."""
        if (self.path / RESTORED).exists():
            raise WaitingForSync(
                "this node was restored from a backup and has not synced its own feed "
                "from a peer yet; sync with a peer first ('disco sync', or 'disco serve' "
                "with peers), so that it does not fork its own feed")

    def clear_restored(self) -> bool:
        """End the wait of :meth:`restored` (a sync has brought the node its own feed
        as a peer holds it); True when there was one."""
        try:
            (self.path / RESTORED).unlink()
        except FileNotFoundError:
            return False
        return True

    def genesis(self) -> Genesis | None:
        """The joined federation's genesis, or None before ``disco join``."""
        if not self.genesis_path.exists():
            return None
        return load_genesis_file(self.genesis_path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path``: a temp file, synced, then renamed over it."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # (two writers: two temp files)
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def save_private_key(path: Path, signer: Signer, passphrase: bytes | None = None) -> None:
    """Write the key as PEM (:meth:`Signer.to_pem`), readable by the owner only (mode
    0600), synced to disk.

    Refuses to overwrite: raises :class:`KeyFileError` if ``path`` exists or cannot
    be created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: a key file already exists; not overwriting it") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot create key file: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(signer.to_pem(passphrase))
        f.flush()
        os.fsync(f.fileno())


def load_private_key(path: Path, passphrase: bytes | None = None) -> Signer:
    """Load a key saved by :func:`save_private_key` (:meth:`Signer.from_pem`).

    Raises :class:`PassphraseError` when the key is encrypted and the passphrase is
    missing or wrong, :class:`KeyFileError` when the file is missing, unreadable,
    damaged or holds another kind of key; the message names the file.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no key file") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file: {e.strerror}") from None
    try:
        return Signer.from_pem(data, passphrase)
    except PassphraseError as e:
        raise PassphraseError(f"{path}: {e}") from None
    except KeyFileError as e:
        raise KeyFileError(f"{path}: {e}") from None


def load_genesis_file(path: Path) -> Genesis:
    """Read a genesis file (:func:`~federation.genesis.decode_genesis_json`).

    Raises :class:`GenesisError` with one clear line naming the file: missing,
    unreadable, not a genesis file, or damaged.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GenesisError(f"{path}: no such genesis file") from None
    except OSError as e:
        raise GenesisError(f"{path}: cannot read genesis file ({e.strerror})") from None
    try:
        return decode_genesis_json(data)
    except GenesisError as e:
        raise GenesisError(f"{path}: {e}") from None


def write_genesis_file(path: Path, genesis: Genesis) -> None:
    """Write the genesis file (:func:`~federation.genesis.encode_genesis_json`).

    Refuses to overwrite: raises :class:`GenesisError` if ``path`` exists or cannot
    be written.
    """
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(encode_genesis_json(genesis))
    except FileExistsError:
        raise GenesisError(f"{path}: already exists; not overwriting it") from None
    except OSError as e:
        raise GenesisError(f"{path}: cannot write ({e.strerror})") from None
