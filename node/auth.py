"""Signed requests between nodes.

Every node-to-node request carries the sender's LAB id, the LAB it is meant for, a
timestamp, the SHA-256 of its body and an Ed25519 signature over all of them with
the method and path (:func:`protocol.sync.request_message`). The receiver checks
the headers *before it reads any body*: a roster member, this node as the target,
inside the clock-skew window, a signature that verifies, never seen before (the
memory of seen signatures outlives a restart: :class:`ReplayMemory`). The body is
then checked against the signed hash as it streams in (:class:`BodyHash`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.errors import NodeError
from protocol.keys import Signer, verify_signature
from protocol.sync import hash_body, request_message

HEADER_LAB = "X-Disco-Lab"
HEADER_TO = "X-Disco-To"
HEADER_TIME = "X-Disco-Time"
HEADER_BODY = "X-Disco-Body-SHA256"
HEADER_SIGNATURE = "X-Disco-Signature"
SKEW_MS = 5 * 60 * 1000
PER_LAB_REMEMBERED = 50_000
"""Signatures remembered per sender inside the window; a member past it gets 429."""


class AuthError(NodeError):
    """Refused request: ``status`` is 401 (unauthenticated), 403 (not allowed) or
    429 (a member sent more requests in the window than the node remembers)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sign_request(signer: Signer, method: str, path: str, body: bytes, now_ms: int,
                 to: bytes, lab: bytes | None = None) -> dict[str, str]:
    """The headers that authenticate one request of LAB ``lab`` (default: the
    signer's key, which is the LAB's id until it rotates it) to the node of LAB
    ``to``, signed with the LAB's key in force (``signer``)."""
    digest = hash_body(body)
    signature = signer.sign(request_message(method, path, now_ms, digest, to))
    return {HEADER_LAB: (lab or signer.public_key).hex(), HEADER_TO: to.hex(),
            HEADER_TIME: str(now_ms), HEADER_BODY: base64.b64encode(digest).decode(),
            HEADER_SIGNATURE: base64.b64encode(signature).decode()}


class ReplayMemory:
    """Signatures accepted inside the window, kept in memory and, when given a path,
    in a small SQLite file so that a restarted node still refuses them.

    Each entry lives until its request's timestamp leaves the window; after that
    the timestamp check refuses the request anyway.
    """

    def __init__(self, path: Path | None = None, now_ms: int = 0,
                 per_lab: int = PER_LAB_REMEMBERED) -> None:
        self.per_lab = per_lab
        self._seen: dict[bytes, dict[bytes, int]] = {}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS seen (signature BLOB PRIMARY KEY,"
                             " lab BLOB NOT NULL, expires_ms INTEGER NOT NULL)")
            self._db.execute("DELETE FROM seen WHERE expires_ms < ?", (now_ms,))
            for signature, lab, expires in self._db.execute("SELECT * FROM seen"):
                self._seen.setdefault(bytes(lab), {})[bytes(signature)] = expires

    def seen(self, lab: bytes, signature: bytes) -> bool:
        return signature in self._seen.get(lab, {})

    def remember(self, lab: bytes, signature: bytes, expires_ms: int, now_ms: int) -> None:
        """Keep ``signature`` until ``expires_ms``. Raises :class:`AuthError` (429)
        when ``lab`` already has ``per_lab`` requests inside the window."""
        mine = self._seen.setdefault(lab, {})
        if len(mine) >= self.per_lab:
            mine = self._seen[lab] = {s: t for s, t in mine.items() if t >= now_ms}
            if self._db is not None:
                self._db.execute("DELETE FROM seen WHERE expires_ms < ?", (now_ms,))
            if len(mine) >= self.per_lab:
                raise AuthError(429, f"more than {self.per_lab} requests from this LAB "
                                     "inside the clock-skew window; slow down")
        if self._db is not None:
            self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
                             (signature, lab, expires_ms))
        mine[signature] = expires_ms

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


@dataclass
class RequestVerifier:
    """Checks the headers of signed requests meant for the node of LAB ``lab``.

    ``keys_of`` gives the keys of a LAB of the roster, the one in force first (its
    requests are signed with it: after a rotation or a recovery, the new one), then
    those it used before; None for a LAB outside the roster or gone from it."""

    keys_of: Callable[[bytes], Sequence[bytes] | None]
    lab: bytes
    memory: ReplayMemory = field(default_factory=ReplayMemory)
    skew_ms: int = SKEW_MS

    def check(self, method: str, path: str, headers: Mapping[str, str], now_ms: int
              ) -> tuple[bytes, bytes]:
        """Return (sender LAB id, signed body hash); the body is not needed yet.

        Raises :class:`AuthError`: 401 for missing, malformed, stale, misaddressed,
        badly signed or replayed requests, 403 for a sender outside the roster.
        """
        lab_hex, to_hex = headers.get(HEADER_LAB), headers.get(HEADER_TO)
        ts_text, sig_text = headers.get(HEADER_TIME), headers.get(HEADER_SIGNATURE)
        body_text = headers.get(HEADER_BODY)
        if not (lab_hex and to_hex and ts_text and sig_text and body_text):
            raise AuthError(401, f"unsigned request: {HEADER_LAB}, {HEADER_TO}, "
                                 f"{HEADER_TIME}, {HEADER_BODY} and {HEADER_SIGNATURE} "
                                 "are required")
        try:
            lab, to = bytes.fromhex(lab_hex), bytes.fromhex(to_hex)
            ts_ms = int(ts_text)
            signature = base64.b64decode(sig_text, validate=True)
            digest = base64.b64decode(body_text, validate=True)
        except (ValueError, binascii.Error):
            raise AuthError(401, "malformed authentication headers") from None
        if len(digest) != 32 or len(signature) != 64:
            raise AuthError(401, "malformed authentication headers")
        keys = self.keys_of(lab)
        if not keys:
            raise AuthError(403, "the signing LAB is not a member of this federation")
        if to != self.lab:
            raise AuthError(401, f"the request is meant for LAB {to.hex()[:16]}, "
                                 f"this node is LAB {self.lab.hex()[:16]}")
        if abs(now_ms - ts_ms) > self.skew_ms:
            raise AuthError(401, f"request timestamp is off by more than "
                                 f"{self.skew_ms // 1000} s")
        message = request_message(method, path, ts_ms, digest, to)
        if not verify_signature(keys[0], signature, message):
            if any(verify_signature(old, signature, message) for old in keys[1:]):
                raise AuthError(403, "the request is signed with a key this LAB no longer "
                                     "uses (it was rotated or recovered)")
            raise AuthError(401, "request signature does not verify")
        if self.memory.seen(lab, signature):
            raise AuthError(401, "replayed request")
        self.memory.remember(lab, signature, ts_ms + self.skew_ms, now_ms)
        return lab, digest


class BodyHash:
    """The body of a signed request, checked against its signed hash as it arrives."""

    def __init__(self, expected: bytes) -> None:
        self.expected = expected
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def check(self) -> None:
        """Raises :class:`AuthError` (401) when the body is not the one signed."""
        if self._hash.digest() != self.expected:
            raise AuthError(401, "request body does not match its signed hash: the "
                                 "request signature does not verify for this body")
