"""Signed requests between nodes: every node-to-node request carries the sender's
LAB id, a timestamp and an Ed25519 signature over (method, path, timestamp, body
hash) (:func:`protocol.sync.request_message`). The receiver accepts it only from a
roster member, inside a clock-skew window, and never twice.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field

from protocol.keys import Signer, verify_signature
from protocol.sync import request_message

HEADER_LAB = "X-Disco-Lab"
HEADER_TIME = "X-Disco-Time"
HEADER_SIGNATURE = "X-Disco-Signature"
SKEW_MS = 5 * 60 * 1000


class AuthError(Exception):
    """Refused request: ``status`` is 401 (unauthenticated) or 403 (not allowed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sign_request(signer: Signer, method: str, path: str, body: bytes, now_ms: int
                 ) -> dict[str, str]:
    """The headers that authenticate one request."""
    signature = signer.sign(request_message(method, path, now_ms, body))
    return {HEADER_LAB: signer.public_key.hex(), HEADER_TIME: str(now_ms),
            HEADER_SIGNATURE: base64.b64encode(signature).decode()}


@dataclass
class RequestVerifier:
    """Checks signed requests; remembers signatures inside the window (replays)."""

    roster: Mapping[bytes, str]
    skew_ms: int = SKEW_MS
    max_remembered: int = 100_000
    _seen: dict[bytes, int] = field(default_factory=dict)

    def check(self, method: str, path: str, headers: Mapping[str, str], body: bytes,
              now_ms: int) -> bytes:
        """Return the sender's LAB id, or raise :class:`AuthError`."""
        lab_hex = headers.get(HEADER_LAB)
        ts_text = headers.get(HEADER_TIME)
        sig_text = headers.get(HEADER_SIGNATURE)
        if not lab_hex or not ts_text or not sig_text:
            raise AuthError(401, "unsigned request: X-Disco-Lab, X-Disco-Time and "
                                 "X-Disco-Signature are required")
        try:
            lab = bytes.fromhex(lab_hex)
            ts_ms = int(ts_text)
            signature = base64.b64decode(sig_text, validate=True)
        except (ValueError, binascii.Error):
            raise AuthError(401, "malformed authentication headers") from None
        if lab not in self.roster:
            raise AuthError(403, "the signing LAB is not a member of this federation")
        if abs(now_ms - ts_ms) > self.skew_ms:
            raise AuthError(401, f"request timestamp is off by more than "
                                 f"{self.skew_ms // 1000} s")
        if not verify_signature(lab, signature, request_message(method, path, ts_ms, body)):
            raise AuthError(401, "request signature does not verify")
        if signature in self._seen:
            raise AuthError(401, "replayed request")
        self._remember(signature, ts_ms + self.skew_ms, now_ms)
        return lab

    def _remember(self, signature: bytes, expires_ms: int, now_ms: int) -> None:
        if len(self._seen) >= self.max_remembered:
            self._seen = {s: t for s, t in self._seen.items() if t >= now_ms}
            if len(self._seen) >= self.max_remembered:  # flooded: forget the oldest half
                keep = sorted(self._seen.items(), key=lambda kv: kv[1])
                self._seen = dict(keep[len(keep) // 2:])
        self._seen[signature] = expires_ms
