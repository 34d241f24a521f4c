"""Ed25519 keys: generate, save as PEM (mode 0600, optionally encrypted), load, sign, verify.

Keys are generated and stored with ``cryptography``; signatures are checked with
libsodium (PyNaCl), which verifies about twice as fast here and releases the GIL, so
verification can use every core. Both implement RFC 8032 Ed25519, so either verifies
what the other signs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import KeyFileError, LocalProtocolError, PassphraseError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


@dataclass(frozen=True)
class Signer:
    """A LAB's private key. ``public_key`` is the raw 32-byte Ed25519 public key."""

    private_key: Ed25519PrivateKey
    public_key: bytes

    @classmethod
    def generate(cls) -> Signer:
        """A fresh random key (the protocol layer's only use of randomness)."""
        return cls.from_private_key(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey) -> Signer:
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(key, raw)

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        """A key from 32 seed bytes (tests and vectors). Raises LocalProtocolError."""
        if len(seed) != 32:
            raise LocalProtocolError(f"seed: got {len(seed)} bytes, want 32")
        return cls.from_private_key(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self.private_key.sign(message)

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted with the best available scheme when a passphrase is given."""
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc
        )


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``.

    Never raises for bad input: a wrong-length key or signature is simply invalid.
    """
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError,
            nacl.exceptions.TypeError):
        return False
    return True


def save_private_key(path: Path, signer: Signer, passphrase: bytes | None = None) -> None:
    """Write the key as PEM, readable by the owner only (mode 0600).

    Refuses to overwrite: raises :class:`KeyFileError` if ``path`` exists.
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


def is_encrypted_pem(data: bytes) -> bool:
    """True when ``data`` is an encrypted PKCS#8 PEM."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data


def load_private_key(path: Path, passphrase: bytes | None = None) -> Signer:
    """Load a key saved by :func:`save_private_key`.

    Raises :class:`PassphraseError` when the key is encrypted and the passphrase is
    missing or wrong, :class:`KeyFileError` when the file is missing, damaged or
    holds another kind of key.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no key file") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file: {e.strerror}") from None
    encrypted = is_encrypted_pem(data)
    if encrypted and not passphrase:
        raise PassphraseError(f"{path}: the key is encrypted; a passphrase is needed")
    try:
        key = serialization.load_pem_private_key(
            data, password=passphrase if encrypted else None
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        if encrypted:
            raise PassphraseError(
                f"{path}: wrong passphrase (or the key file is damaged)"
            ) from None
        raise KeyFileError(f"{path}: damaged key file, not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: holds a {type(key).__name__}, want an Ed25519 key")
    return Signer.from_private_key(key)
