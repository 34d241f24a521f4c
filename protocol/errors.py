"""Typed errors of the sans-I/O protocol layer.

The split follows h11: a :class:`LocalProtocolError` means *we* tried to build
something the format forbids (a float in a body, a seq of zero); a
:class:`RemoteProtocolError` means bytes we were handed (by a peer, a file, a
store) are not a valid entry. Every message says what was wrong and where, so
that a command line or an HTTP handler can show it as one line.
"""

from __future__ import annotations

import re


class ProtocolError(Exception):
    """Base of every error raised by ``protocol``. Do not raise it directly."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    @property
    def code(self) -> str:
        """A stable code for reports, from the class: BadSignatureError -> bad-signature."""
        name = type(self).__name__.removesuffix("Error")
        return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


class LocalProtocolError(ProtocolError):
    """We tried to build something invalid (a programming or user error)."""


class RemoteProtocolError(ProtocolError):
    """Bytes we received or read back are invalid; the sender is at fault."""


class DecodeError(RemoteProtocolError):
    """The bytes are not well-formed msgpack or not of the expected shape."""


class NonCanonicalError(DecodeError):
    """Well-formed msgpack, but not in the one canonical form (DESIGN.md)."""


class OversizeError(DecodeError):
    """The input is larger than the decoder's size limit."""


class SchemaError(DecodeError):
    """Canonical msgpack, but a field has the wrong type, length or range."""


class UnsupportedVersionError(DecodeError):
    """The entry's format version is not one this code understands."""


class VerificationError(RemoteProtocolError):
    """A well-formed entry that fails a cryptographic or chain check."""


class BadSignatureError(VerificationError):
    """The Ed25519 signature does not verify under the feed's key."""


class BodyHashMismatchError(VerificationError):
    """The body is present but its SHA-256 differs from the header's body_hash."""


class BrokenChainError(VerificationError):
    """An entry's seq or prev does not continue the feed before it."""


class WrongFederationError(VerificationError):
    """The entry belongs to another federation than the one expected."""


class WrongAuthorError(VerificationError):
    """The entry was expected in one feed but names another author."""


class KeyFileError(LocalProtocolError):
    """A private key file is missing, damaged or not an Ed25519 key."""


class PassphraseError(KeyFileError):
    """The key file is encrypted and the passphrase is missing or wrong."""
