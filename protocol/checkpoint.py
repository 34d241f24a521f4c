"""Signed checkpoints of a feed's Merkle log, in the C2SP formats (DESIGN.md, "Checkpoints").

A checkpoint is a C2SP *signed note* (https://c2sp.org/signed-note) whose text is a
C2SP *checkpoint* body (https://c2sp.org/tlog-checkpoint)::

    disco-ledger/<federation_id hex>/<lab_id hex>      origin (also the key name)
    1234                                               tree size, decimal
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=       root hash, base64
                                                       blank line
    — disco-ledger/<fid hex>/<lab hex> base64(key hash || Ed25519 signature)

Rules this module keeps, as the specifications and golang.org/x/mod/sumdb/note do:

* A note is valid UTF-8 without ASCII control characters other than newline, at most
  :data:`MAX_NOTE_SIZE` bytes and :data:`MAX_SIGNATURES` signature lines. Its text ends
  in a newline and is separated from the signature lines by the *last* blank line.
* A signature line is ``"— " name " " base64(4-byte key hash || signature)``. Key
  names are non-empty, without spaces, ``+`` or control characters. For an Ed25519
  key the key hash is ``SHA-256(name || "\\n" || 0x01 || public key)[:4]`` and the
  signature is Ed25519 over the note text, final newline included.
* Lines by other keys (another name *or* another key hash) are ignored, but must be
  well formed. Every line by the expected key must verify; at least one must exist.
* Base64 is the standard alphabet with padding, and only the canonical encoding is
  accepted (no stray bits in the last character), so a note has exactly one spelling.
* A checkpoint body has at least three lines: a non-empty origin, the tree size in
  decimal without leading zeros (< 2**64), the 32-byte root; then optional non-empty
  extension lines. A tree of size 0 has root ``SHA-256(b"")`` (RFC 9162).

Builders raise :class:`~protocol.errors.LocalProtocolError`. Parsers and verifiers
raise :class:`CheckpointError` (a :class:`~protocol.errors.DecodeError`) for malformed
input and :class:`~protocol.errors.VerificationError` subclasses for well-formed input
that fails a check. Nothing else escapes. No I/O, no clock, no randomness.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from protocol import merkle
from protocol.errors import (
    BadSignatureError,
    DecodeError,
    LocalProtocolError,
    OversizeError,
    VerificationError,
)
from protocol.keys import PUBLIC_KEY_SIZE, Signer, verify_signature

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "KEY_HASH_SIZE",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "MAX_TREE_SIZE",
    "ORIGIN_PREFIX",
    "SIGNATURE_PREFIX",
    "Checkpoint",
    "CheckpointError",
    "ConsistencyError",
    "InclusionError",
    "MissingSignatureError",
    "NoteOversizeError",
    "NoteSignature",
    "SignedNote",
    "WrongOriginError",
    "check_consistency",
    "check_inclusion",
    "key_hash",
    "open_note",
    "origin_for",
    "parse_checkpoint_body",
    "parse_note",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
    "verifier_key",
    "verify_checkpoint",
]

ED25519_SIGNATURE_TYPE = 0x01
"""The signed-note signature type byte of Ed25519 (c2sp.org/signed-note)."""

KEY_HASH_SIZE = 4
"""Bytes of key hash (key ID) in front of every note signature."""

SIGNATURE_PREFIX = "\u2014 "
"""Start of every signature line: em dash (U+2014) and a space."""

MAX_NOTE_SIZE = 64 * 1024
"""Largest signed note accepted or produced, in UTF-8 bytes."""

MAX_SIGNATURES = 100
"""Most signature lines accepted in one note (the spec asks for at least 16)."""

MAX_TREE_SIZE = 2**64 - 1
"""Largest tree size a checkpoint may state (an unsigned 64-bit integer)."""

ORIGIN_PREFIX = "disco-ledger/"
"""First part of the origin line (and key name) of every disco-ledger checkpoint."""

_ED25519_SIGNATURE_SIZE = 64
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_SPACE_OR_PLUS = re.compile(r"[\s+]")  # \s: every char whose str.isspace() is True


class CheckpointError(DecodeError):
    """A signed note, signature line, verifier key or checkpoint body is malformed."""


class NoteOversizeError(CheckpointError, OversizeError):
    """A note is larger than :data:`MAX_NOTE_SIZE` bytes."""


class MissingSignatureError(BadSignatureError):
    """A well-formed note carries no signature line by the expected key."""


class WrongOriginError(VerificationError):
    """A checkpoint names another log (origin) than the one expected."""


class ConsistencyError(VerificationError):
    """Two checkpoints of one log are not shown to be consistent.

    ``old_size`` and ``new_size`` are the two tree sizes. ``proves_fork`` is True when
    both checkpoints have the same size and different roots: two such checkpoints,
    both validly signed, are by themselves the proof that the log rewrote its history.
    Otherwise the proof given did not verify (a bad proof, or a rewritten history:
    this error alone does not tell which).
    """

    def __init__(
        self, message: str, old_size: int, new_size: int, proves_fork: bool = False
    ) -> None:
        super().__init__(message)
        self.old_size = old_size
        self.new_size = new_size
        self.proves_fork = proves_fork


class InclusionError(VerificationError):
    """An inclusion proof does not show a leaf to be in a checkpoint's tree."""


# --------------------------------------------------------------------------
# Small checks


def _text_problem(what: str, value: object) -> str | None:
    """Why ``value`` cannot be one line of a note, or None."""
    if not isinstance(value, str):
        return f"{what}: got {type(value).__name__}, want str"
    if "\n" in value or _CONTROL.search(value):
        return f"{what}: contains a newline or control character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what}: not encodable as UTF-8"
    return None


def _clip(text: str, limit: int = 80) -> str:
    """``text`` for an error message: repr, cut to about ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid key name, or None."""
    if not name:
        return "key name: empty"
    problem = _text_problem("key name", name)
    if problem:
        return problem
    if _SPACE_OR_PLUS.search(name):
        return f"key name {_clip(name)}: contains a space or '+'"
    return None


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise LocalProtocolError(f"key name: got {type(name).__name__}, want str")
    problem = _name_problem(name)
    if problem:
        raise LocalProtocolError(problem)
    return name


def _check_public_key(public_key: object) -> bytes:
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        got = len(public_key) if isinstance(public_key, bytes) else type(public_key).__name__
        raise LocalProtocolError(f"public key: got {got}, want {PUBLIC_KEY_SIZE} bytes")
    return public_key


def encode_b64(data: bytes) -> str:
    """Standard base64 with padding: the one encoding notes and proof files use."""
    return base64.b64encode(data).decode("ascii")


def decode_b64(what: str, text: str, error: type[DecodeError] = CheckpointError) -> bytes:
    """The bytes of ``text``, which must be their canonical :func:`encode_b64`.

    Raises ``error`` (a :class:`DecodeError`, :class:`CheckpointError` by default)
    naming ``what`` when ``text`` is not base64, or not its one canonical form.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII characters
        raise error(f"{what}: not valid base64") from None
    if encode_b64(raw) != text:
        raise error(f"{what}: not the canonical base64 encoding")
    return raw


def decode_decimal(what: str, text: str, error: type[DecodeError] = CheckpointError) -> int:
    """The number ``text`` writes in decimal: digits only, no sign, space or leading
    zero, at most 20 of them (the bound of the callers' 64-bit sizes is theirs).

    Raises ``error`` (a :class:`DecodeError`, :class:`CheckpointError` by default)
    naming ``what`` otherwise.
    """
    if not _DECIMAL.fullmatch(text):
        raise error(f"{what} {text[:24]!r}: want a decimal number without leading zeros")
    return int(text)


# --------------------------------------------------------------------------
# Keys


def key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte key hash (key ID) of an Ed25519 note key.

    ``SHA-256(name || 0x0A || 0x01 || public_key)[:4]`` (c2sp.org/signed-note). Raises
    :class:`LocalProtocolError` for an invalid key name or a key that is not 32 bytes.
    """
    name = _check_name(name)
    public_key = _check_public_key(public_key)
    data = name.encode("utf-8") + b"\n" + bytes([ED25519_SIGNATURE_TYPE]) + public_key
    return hashlib.sha256(data).digest()[:KEY_HASH_SIZE]


def verifier_key(name: str, public_key: bytes) -> str:
    """The verifier key string ``name+<hex key hash>+<base64(0x01 || public_key)>``.

    Other tools (Go's sumdb/note, witnesses) accept it as is. Raises like
    :func:`key_hash`.
    """
    kh = key_hash(name, public_key)
    return f"{name}+{kh.hex()}+{encode_b64(bytes([ED25519_SIGNATURE_TYPE]) + public_key)}"


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    """The ``(name, 32-byte Ed25519 public key)`` of a verifier key string.

    Raises :class:`CheckpointError` unless ``text`` is ``name+hash+key`` with a valid
    name, 8 hex digits of hash, canonical base64 of the type byte 0x01 followed by 32
    key bytes, and a hash equal to :func:`key_hash` of the name and key.
    """
    if not isinstance(text, str):
        raise CheckpointError(f"verifier key: got {type(text).__name__}, want str")
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("verifier key: want name+hash+key")
    name, hash_hex, key_b64 = parts
    problem = _name_problem(name)
    if problem:
        raise CheckpointError(f"verifier key: {problem}")
    if not _HEX8.fullmatch(hash_hex):
        raise CheckpointError(f"verifier key: hash {hash_hex!r}, want 8 hex digits")
    key = decode_b64("verifier key", key_b64)
    if not key or key[0] != ED25519_SIGNATURE_TYPE:
        got = f"0x{key[0]:02x}" if key else "nothing"
        raise CheckpointError(f"verifier key: type {got}, want 0x01 (Ed25519)")
    public_key = key[1:]
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise CheckpointError(
            f"verifier key: got {len(public_key)} key bytes, want {PUBLIC_KEY_SIZE}"
        )
    want = key_hash(name, public_key)
    if bytes.fromhex(hash_hex) != want:
        raise CheckpointError(f"verifier key: hash {hash_hex}, want {want.hex()}")
    return name, public_key


# --------------------------------------------------------------------------
# Signed notes


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key hash, and the signature bytes after it."""

    name: str
    key_hash: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A parsed, *unverified* note. Do not act on ``text`` before :func:`open_note`."""

    text: str
    signatures: tuple[NoteSignature, ...]


def _note_str(note: str | bytes) -> str:
    """The note as a str, after the size, UTF-8 and control-character checks."""
    if isinstance(note, str):
        if len(note) > MAX_NOTE_SIZE:  # a char is at least one byte: cheap early exit
            raise NoteOversizeError(f"note: over {MAX_NOTE_SIZE} bytes")
        try:
            data = note.encode("utf-8")
        except UnicodeEncodeError:
            raise CheckpointError("note: not valid UTF-8 (lone surrogate)") from None
    elif isinstance(note, bytes):
        data = note
    else:
        raise CheckpointError(f"note: got {type(note).__name__}, want str or bytes")
    if len(data) > MAX_NOTE_SIZE:
        raise NoteOversizeError(f"note: got {len(data)} bytes, want <= {MAX_NOTE_SIZE}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"note: not valid UTF-8 at byte {e.start}") from None
    m = _CONTROL.search(text)
    if m:
        raise CheckpointError(
            f"note: control character U+{ord(m.group()):04X} at character {m.start()}"
        )
    return text


def parse_note(note: str | bytes) -> SignedNote:
    """Split a signed note into its text and signature lines, verifying nothing.

    The text is everything up to and including the newline before the last blank line.
    Raises :class:`NoteOversizeError` over :data:`MAX_NOTE_SIZE` bytes, and
    :class:`CheckpointError` if the note is not UTF-8, holds a control character other
    than newline, has no blank line, no signature line, more than
    :data:`MAX_SIGNATURES`, or a signature line that is not ``"— name base64"`` with a
    valid name and canonical base64 of at least 5 bytes.
    """
    text = _note_str(note)
    split = text.rfind("\n\n")
    if split < 0:
        raise CheckpointError("note: no blank line before the signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise CheckpointError("note: no signature line after the blank line")
    if not block.endswith("\n"):
        raise CheckpointError("note: last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"note: got {len(lines)} signature lines, want <= {MAX_SIGNATURES}")
    signatures = []
    for i, line in enumerate(lines, 1):
        where = f"note: signature line {i}"
        if not line.startswith(SIGNATURE_PREFIX):
            raise CheckpointError(f"{where}: does not start with an em dash and a space")
        name, sep, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        problem = _name_problem(name)
        if problem:
            raise CheckpointError(f"{where}: {problem}")
        if not sep or not b64:
            raise CheckpointError(f"{where}: no signature after the key name")
        raw = decode_b64(where, b64)
        if len(raw) <= KEY_HASH_SIZE:
            raise CheckpointError(f"{where}: got {len(raw)} bytes, want a key hash and a signature")
        signatures.append(NoteSignature(name, raw[:KEY_HASH_SIZE], raw[KEY_HASH_SIZE:]))
    return SignedNote(body, tuple(signatures))


def sign_note(body: str, name: str, signer: Signer) -> str:
    """The signed note of ``body``: body, blank line, one Ed25519 signature line.

    ``name`` is the key name written in the signature line and hashed into the key
    hash. The result is deterministic and :func:`open_note` with ``name`` and
    ``signer.public_key`` returns ``body``. Raises :class:`LocalProtocolError` unless
    ``body`` is a str ending in a newline without other control characters, ``name``
    is a valid key name, and the note fits in :data:`MAX_NOTE_SIZE` bytes.
    """
    name = _check_name(name)
    if not isinstance(body, str) or not body.endswith("\n"):
        raise LocalProtocolError("note body: want a str ending in a newline")
    if _CONTROL.search(body):
        raise LocalProtocolError("note body: contains a control character")
    try:
        message = body.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("note body: not encodable as UTF-8") from None
    kh = key_hash(name, signer.public_key)
    line = f"{SIGNATURE_PREFIX}{name} {encode_b64(kh + signer.sign(message))}\n"
    note = f"{body}\n{line}"
    size = len(note.encode("utf-8"))
    if size > MAX_NOTE_SIZE:
        raise LocalProtocolError(f"note: got {size} bytes, want <= {MAX_NOTE_SIZE}")
    return note


def open_note(note: str | bytes, name: str, public_key: bytes) -> str:
    """The text of ``note`` once it is shown signed by the Ed25519 key ``(name, public_key)``.

    Signature lines by other keys (other name or other key hash) are ignored. Every
    line by this key must verify, and there must be at least one. Raises
    :class:`LocalProtocolError` for an invalid ``name`` or ``public_key``; like
    :func:`parse_note` for a malformed note; :class:`MissingSignatureError` if no line
    is by this key; :class:`~protocol.errors.BadSignatureError` if one fails to verify.
    """
    kh = key_hash(name, public_key)
    parsed = parse_note(note)
    message = parsed.text.encode("utf-8")
    found = False
    for sig in parsed.signatures:
        if sig.name != name or sig.key_hash != kh:
            continue
        found = True
        if len(sig.signature) != _ED25519_SIGNATURE_SIZE or not verify_signature(
            public_key, sig.signature, message
        ):
            raise BadSignatureError(f"note: signature by {name}+{kh.hex()} does not verify")
    if not found:
        present = [f"{s.name[:60]}+{s.key_hash.hex()}" for s in parsed.signatures[:4]]
        if len(parsed.signatures) > 4:
            present.append("...")
        raise MissingSignatureError(
            f"note: no signature by {name}+{kh.hex()} (signed by: {', '.join(present)})"
        )
    return parsed.text


# --------------------------------------------------------------------------
# Checkpoints


def _checkpoint_problem(
    origin: object, size: object, root: object, extensions: object
) -> str | None:
    """The first thing wrong with these checkpoint fields, or None."""
    problem = _text_problem("origin", origin)
    if problem:
        return problem
    if not origin:
        return "origin: empty, want the log's name"
    if type(size) is not int or not 0 <= size <= MAX_TREE_SIZE:
        shown = size if type(size) is int and size.bit_length() <= 80 else type(size).__name__
        return f"size: got {shown}, want an int from 0 to 2**64-1"
    if not isinstance(root, bytes) or len(root) != merkle.HASH_SIZE:
        got = f"{len(root)} bytes" if isinstance(root, bytes) else type(root).__name__
        return f"root: got {got}, want {merkle.HASH_SIZE} bytes"
    if size == 0 and root != merkle.EMPTY_ROOT:
        return f'root: got {root.hex()} for size 0, want SHA-256("") {merkle.EMPTY_ROOT.hex()}'
    if not isinstance(extensions, tuple):
        return f"extensions: got {type(extensions).__name__}, want tuple"
    for i, ext in enumerate(extensions):
        problem = _text_problem(f"extension {i}", ext)
        if problem:
            return problem
        if not ext:
            return f"extension {i}: empty line"
    return None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's signed claim: the tree of its first ``size`` leaves has root ``root``.

    Checks its own fields when built and raises :class:`LocalProtocolError` if one is
    invalid (see the module rules).
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = _checkpoint_problem(self.origin, self.size, self.root, self.extensions)
        if problem:
            raise LocalProtocolError(f"checkpoint: {problem}")

    def body(self) -> str:
        """The note text: origin, size, base64 root, extension lines; each ends in a newline."""
        lines = [self.origin, str(self.size), encode_b64(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint_body(body: str) -> Checkpoint:
    """The checkpoint whose :meth:`Checkpoint.body` is exactly ``body``.

    Raises :class:`CheckpointError` unless ``body`` is a str of at least three lines,
    each ending in a newline, without control characters: a non-empty origin, a
    decimal size without sign, spaces or leading zeros below 2**64, the canonical
    base64 of a 32-byte root (``SHA-256(b"")`` for size 0), then non-empty extension
    lines.
    """
    if not isinstance(body, str):
        raise CheckpointError(f"checkpoint: got {type(body).__name__}, want str")
    if not body.endswith("\n"):
        raise CheckpointError("checkpoint: does not end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(f"checkpoint: got {len(lines)} lines, want at least 3")
    origin, size_line, root_line, *extensions = lines
    size = decode_decimal("checkpoint: size", size_line)
    root = decode_b64("checkpoint: root", root_line)
    ext = tuple(extensions)
    problem = _checkpoint_problem(origin, size, root, ext)
    if problem:
        raise CheckpointError(f"checkpoint: {problem}")
    return Checkpoint(origin, size, root, ext)


def origin_for(federation_id: bytes, lab_id: bytes) -> str:
    """The origin line and key name of a LAB's feed: ``disco-ledger/<fid hex>/<lab hex>``.

    Raises :class:`LocalProtocolError` unless both ids are 32 bytes.
    """
    for what, value in (("federation_id", federation_id), ("lab_id", lab_id)):
        if not isinstance(value, bytes) or len(value) != 32:
            raise LocalProtocolError(f"{what}: want 32 bytes")
    return f"{ORIGIN_PREFIX}{federation_id.hex()}/{lab_id.hex()}"


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The signed note of ``checkpoint``, signed under the key name ``checkpoint.origin``.

    A LAB signs its own feed's checkpoints, whose origin is :func:`origin_for`; the
    result is then accepted by :func:`verify_checkpoint`. Raises like :func:`sign_note`
    (for an origin that is not a valid key name, for instance).
    """
    return sign_note(checkpoint.body(), checkpoint.origin, signer)


def verify_checkpoint(note: str | bytes, lab_id: bytes, federation_id: bytes,
                      key: bytes | None = None) -> Checkpoint:
    """The checkpoint in ``note``, once shown to be the LAB's, for its feed in this federation.

    The note must carry a valid signature by the key ``(origin_for(federation_id,
    lab_id), key)`` (``key``: the LAB's key in force at the checkpoint's size, which
    is its id until it rotates it; default ``lab_id``) and its origin line must be
    that origin. Raises
    :class:`LocalProtocolError` for ids that are not 32 bytes; like :func:`open_note`
    (malformed note, missing or bad signature); :class:`CheckpointError` for a
    malformed body; :class:`WrongOriginError` for another origin.
    """
    origin = origin_for(federation_id, lab_id)
    checkpoint = parse_checkpoint_body(open_note(note, origin, key or lab_id))
    if checkpoint.origin != origin:
        raise WrongOriginError(
            f"checkpoint: origin {_clip(checkpoint.origin, 160)}, want {origin!r}"
        )
    return checkpoint


# --------------------------------------------------------------------------
# Proofs against checkpoints


def check_consistency(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check that ``new``'s tree extends ``old``'s, by an RFC 9162 consistency proof.

    Returns None when ``old.size <= new.size`` and ``proof`` shows the first
    ``old.size`` leaves of ``new``'s tree have root ``old.root``. From size 0 the
    proof must be empty; at equal sizes the proof must be empty and the roots equal.
    Raises :class:`WrongOriginError` if the origins differ, and
    :class:`ConsistencyError` (naming both sizes) otherwise: with ``proves_fork`` True
    when the sizes are equal and the roots differ.
    """
    if old.origin != new.origin:
        raise WrongOriginError(
            f"consistency: checkpoints of two logs, {_clip(old.origin)} and {_clip(new.origin)}"
        )
    where = f"checkpoints of {_clip(old.origin, 160)} at sizes {old.size} and {new.size}"
    if old.size > new.size:
        raise ConsistencyError(
            f"{where}: the new tree is smaller than the old one", old.size, new.size
        )
    if old.size == new.size and old.root != new.root:
        raise ConsistencyError(
            f"{where}: same size, different roots ({old.root.hex()[:16]} and "
            f"{new.root.hex()[:16]}): the log rewrote its history",
            old.size,
            new.size,
            proves_fork=True,
        )
    if old.size == 0:  # the empty tree is a prefix of every tree (root checked by Checkpoint)
        if len(proof) != 0:
            raise ConsistencyError(
                f"{where}: proof length: got {len(proof)}, want 0 from size 0",
                old.size,
                new.size,
            )
        return
    try:
        merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
    except merkle.ProofError as e:
        raise ConsistencyError(f"{where}: {e}", old.size, new.size) from e


def check_inclusion(
    checkpoint: Checkpoint, leaf_hash: bytes, index: int, proof: Sequence[bytes]
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of ``checkpoint``'s tree (RFC 9162).

    Returns None on success. Raises :class:`InclusionError` naming the index and the
    size if the proof is malformed or leads to another root.
    """
    try:
        merkle.verify_inclusion(leaf_hash, index, checkpoint.size, proof, checkpoint.root)
    except merkle.ProofError as e:
        raise InclusionError(
            f"leaf {index} of {_clip(checkpoint.origin, 160)} at size {checkpoint.size}: {e}"
        ) from e
