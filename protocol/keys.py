"""Ed25519 keys: generate, encode as PEM (optionally encrypted) and decode, sign, verify.

Only bytes here: the node reads and writes the key file (``node.home``, mode 0600).

Keys are generated and stored with ``cryptography``; signatures are checked with
libsodium (PyNaCl), which verifies about twice as fast here and releases the GIL, so
verification can use every core. Both implement RFC 8032 Ed25519, so either verifies
what the other signs.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None) -> Signer:
        """The key in the PKCS#8 PEM ``data`` (:meth:`to_pem`).

        Raises :class:`PassphraseError` when the key is encrypted and the passphrase
        is missing or wrong, :class:`KeyFileError` when ``data`` is damaged or holds
        another kind of key. (A passphrase for a plain key is ignored.)
        """
        encrypted = is_encrypted_pem(data)
        if encrypted and not passphrase:
            raise PassphraseError("the key is encrypted; a passphrase is needed")
        try:
            key = serialization.load_pem_private_key(
                data, password=passphrase if encrypted else None
            )
        except (ValueError, TypeError, UnsupportedAlgorithm):
            if encrypted:
                raise PassphraseError("wrong passphrase (or the key file is damaged)") from None
            raise KeyFileError("damaged key file, not a PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"holds a {type(key).__name__}, want an Ed25519 key")
        return cls.from_private_key(key)

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


def is_encrypted_pem(data: bytes) -> bool:
    """True when ``data`` is an encrypted PKCS#8 PEM."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
