"""The signed entry, format version 1 (DESIGN.md, "The signed entry").

::

    header     = [1, federation_id, author, seq, prev, ts_us, kind, body_hash]
    entry_hash = SHA-256(packb(header))
    signature  = Ed25519 over b"disco-ledger/entry/v1\\x00" + packb(header)
    entry      = packb([header, signature, body])   body: bin (canonical map) or nil

Rules this module keeps:
- an entry's bytes are kept verbatim (``Entry.raw``); nothing here re-encodes a
  received entry, except :func:`redact`, which drops the body and keeps the header
  bytes, so the hash, the signature and the chain still hold;
- a body of nil means redacted;
- which key verifies a feed at a seq is decided in one place, :func:`verifying_key`.

Builders raise :class:`LocalProtocolError`; decoders and verifiers raise
subclasses of :class:`RemoteProtocolError` naming the author and seq where known.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from protocol import canonical
from protocol.errors import (
    BadSignatureError,
    BodyHashMismatchError,
    BrokenChainError,
    DecodeError,
    LocalProtocolError,
    NonCanonicalError,
    OversizeError,
    SchemaError,
    UnsupportedVersionError,
    WrongAuthorError,
    WrongFederationError,
)
from protocol.keys import Signer, verify_signature

FORMAT_VERSION = 1
SIGNING_PREFIX = b"disco-ledger/entry/v1\x00"
MAX_ENTRY_SIZE = 64 * 1024
HASH_SIZE = 32
MAX_KIND_LENGTH = 64


def sha256(data: bytes) -> bytes:
    """SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def short(b: bytes) -> str:
    """First 8 hex digits of an id, for messages."""
    return b.hex()[:8]


def where(author: bytes, seq: int) -> str:
    """An entry as messages name it: ``AUTHOR8:SEQ``, the spelling a person types
    back (as a ref prefix) wherever the command line takes a ref."""
    return f"{author.hex()[:8]}:{seq}"


def _show(v: Any) -> str:
    """A short, safe description of a decoded value for an error message.

    Never ``repr`` an arbitrary decoded value: a 1000-deep array raises RecursionError
    and a huge int raises ValueError, and either would escape as a non-protocol error.
    """
    if type(v) is int and v.bit_length() <= 64:
        return repr(v)
    return f"a {type(v).__name__}"


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_SEQ_MAX = 2**63 - 1
_TS_MIN, _TS_MAX = -(2**63), 2**63 - 1


def _header_problem(
    federation_id: Any, author: Any, seq: Any, prev: Any, ts_us: Any, kind: Any, body_hash: Any
) -> str | None:
    """The first thing wrong with these header fields, or None. (A hash is bin 32:
    ``isinstance(v, bytes) and len(v) == HASH_SIZE``, written out, not called, for
    each of the four: this runs for every entry decoded.)"""
    if not (isinstance(federation_id, bytes) and len(federation_id) == HASH_SIZE):
        return "federation_id: want bin 32"
    if not (isinstance(author, bytes) and len(author) == HASH_SIZE):
        return "author: want bin 32"
    if type(seq) is not int or not 1 <= seq <= _SEQ_MAX:
        return f"seq: got {_show(seq)}, want int >= 1"
    if seq == 1:
        if prev is not None:
            return "prev: must be nil when seq == 1"
    elif not (isinstance(prev, bytes) and len(prev) == HASH_SIZE):
        return f"prev: want bin 32 when seq > 1 (seq {seq})"
    if type(ts_us) is not int or not _TS_MIN <= ts_us <= _TS_MAX:
        return f"ts_us: got {_show(ts_us)}, want int"
    if not isinstance(kind, str) or not 0 < len(kind) <= MAX_KIND_LENGTH or not (
            kind.isascii() or _utf8_ok(kind)):
        return f"kind: want a UTF-8 str of 1 to {MAX_KIND_LENGTH} characters"
    if not (isinstance(body_hash, bytes) and len(body_hash) == HASH_SIZE):
        return "body_hash: want bin 32"
    return None


@dataclass(frozen=True, slots=True, init=False)
class Header:
    """The signed part of an entry. Checks its own fields when built."""

    federation_id: bytes
    author: bytes
    seq: int
    prev: bytes | None
    ts_us: int
    kind: str
    body_hash: bytes

    def __init__(self, federation_id: bytes, author: bytes, seq: int, prev: bytes | None,
                 ts_us: int, kind: str, body_hash: bytes, *, _trusted: bool = False) -> None:
        """Raises :class:`LocalProtocolError` naming the first bad field.

        ``_trusted`` (private, as h11's ``_parsed``): :func:`_header_problem` has
        already accepted these fields (:func:`decode_entry` checked them, or the
        bytes they come from); they are not checked again."""
        if not _trusted:
            problem = _header_problem(federation_id, author, seq, prev, ts_us, kind,
                                      body_hash)
            if problem:
                raise LocalProtocolError(f"header: {problem}")
        # Each field through its slot (as the frozen dataclass's own __init__ does
        # through object.__setattr__, which costs twice as much).
        _fid, _author, _seq, _prev, _ts, _kind, _body_hash = _HEADER_SLOTS
        _fid(self, federation_id)
        _author(self, author)
        _seq(self, seq)
        _prev(self, prev)
        _ts(self, ts_us)
        _kind(self, kind)
        _body_hash(self, body_hash)

    def as_list(self) -> list[Any]:
        return [FORMAT_VERSION, self.federation_id, self.author, self.seq, self.prev,
                self.ts_us, self.kind, self.body_hash]

    def encode(self) -> bytes:
        """``packb(header)``: the bytes that are hashed and signed."""
        return canonical.encode(self.as_list())


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to an entry: ``[author, seq, entry_hash]``."""

    author: bytes
    seq: int
    hash: bytes

    def as_list(self) -> list[Any]:
        return [self.author, self.seq, self.hash]

    @classmethod
    def from_value(cls, value: Any, where: str = "ref") -> Ref:
        """Parse the msgpack form. Raises :class:`SchemaError`."""
        if (
            not isinstance(value, list) or len(value) != 3
            or not isinstance(value[0], bytes) or len(value[0]) != HASH_SIZE
            or type(value[1]) is not int or not 1 <= value[1] <= 2**63 - 1
            or not isinstance(value[2], bytes) or len(value[2]) != HASH_SIZE
        ):
            raise SchemaError(f"{where}: want [author bin 32, seq int >= 1, hash bin 32]")
        return cls(value[0], value[1], value[2])

    def __str__(self) -> str:
        return f"{self.author.hex()}:{self.seq}:{self.hash.hex()}"

    @classmethod
    def parse(cls, text: str) -> Ref:
        """Parse the full text form ``AUTHOR_HEX:SEQ:HASH_HEX``. Raises :class:`SchemaError`."""
        parts = text.strip().split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            author, seq, digest = bytes.fromhex(parts[0]), int(parts[1]), bytes.fromhex(parts[2])
        except ValueError:
            raise SchemaError(f"ref {text!r}: want AUTHOR_HEX:SEQ:HASH_HEX") from None
        return cls.from_value([author, seq, digest], f"ref {text!r}")


@dataclass(frozen=True, slots=True, init=False)
class Entry:
    """A decoded entry. ``raw`` is its exact bytes, ``hash`` its entry hash."""

    header: Header
    signature: bytes
    body: bytes | None
    raw: bytes = field(repr=False)
    hash: bytes
    header_bytes: bytes = field(repr=False)

    def __init__(self, header: Header, signature: bytes, body: bytes | None, raw: bytes,
                 hash: bytes, header_bytes: bytes) -> None:
        _header, _signature, _body, _raw, _hash, _header_bytes = _ENTRY_SLOTS  # (see Header)
        _header(self, header)
        _signature(self, signature)
        _body(self, body)
        _raw(self, raw)
        _hash(self, hash)
        _header_bytes(self, header_bytes)

    @property
    def author(self) -> bytes:
        return self.header.author

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def kind(self) -> str:
        return self.header.kind

    @property
    def redacted(self) -> bool:
        return self.body is None

    @property
    def ref(self) -> Ref:
        return Ref(self.header.author, self.header.seq, self.hash)

    def fields(self) -> dict[str, Any] | None:
        """The decoded body map, or None when redacted (:func:`decode_body`)."""
        return decode_body(self.body, self.header.author, self.header.seq)

    @property
    def where(self) -> str:
        return where(self.header.author, self.header.seq)


def _slots(cls: type) -> tuple[Callable[[Any, Any], None], ...]:
    """The setters of the slots of the frozen dataclass ``cls``, in field order, for
    its own ``__init__``."""
    return tuple(getattr(cls, f.name).__set__ for f in fields(cls))


_HEADER_SLOTS = _slots(Header)
_ENTRY_SLOTS = _slots(Entry)


def sign_entry(
    signer: Signer,
    *,
    federation_id: bytes,
    seq: int,
    prev: bytes | None,
    ts_us: int,
    kind: str,
    body: Mapping[str, Any],
    author: bytes | None = None,
) -> Entry:
    """Build and sign a new entry of ``author``'s feed (default: ``signer``'s own, a
    LAB whose key is its id; a key put in force by a rotation or recovery signs its
    LAB's feed under the LAB's id).

    Raises :class:`LocalProtocolError` for invalid header fields or a body that is
    not canonically encodable or makes the entry exceed :data:`MAX_ENTRY_SIZE`.
    """
    body_bytes = canonical.encode(dict(body))
    header = Header(federation_id, signer.public_key if author is None else author, seq, prev,
                    ts_us, kind, sha256(body_bytes))
    header_bytes = header.encode()
    signature = signer.sign(SIGNING_PREFIX + header_bytes)
    raw = canonical.encode([header.as_list(), signature, body_bytes])
    if len(raw) > MAX_ENTRY_SIZE:
        raise LocalProtocolError(
            f"entry of {len(raw)} bytes exceeds the {MAX_ENTRY_SIZE}-byte limit"
        )
    return Entry(header, signature, body_bytes, raw, sha256(header_bytes), header_bytes)


def decode_body(body: bytes | None, author: bytes, seq: int) -> dict[str, Any] | None:
    """The body of entry ``seq`` of ``author``'s feed decoded: a map, or None when
    redacted. Raises :class:`DecodeError` (or its subclasses :class:`OversizeError`,
    :class:`NonCanonicalError`, :class:`SchemaError`) naming the entry."""
    if body is None:
        return None
    try:
        value = canonical.decode(body, max_size=MAX_ENTRY_SIZE, what="body")
    except DecodeError:  # again, naming the entry (only now: naming it costs)
        value = canonical.decode(body, max_size=MAX_ENTRY_SIZE,
                                 what=f"body of {where(author, seq)}")
    if type(value) is not dict:
        raise SchemaError(f"body of {where(author, seq)}: want a map")
    return value


EntryParts = tuple[list[Any], bytes, "bytes | None", bytes]
"""What :func:`entry_parts` reads from entry bytes: the header fields ``[version,
federation_id, author, seq, prev, ts_us, kind, body_hash]``, the signature, the body
(None when redacted) and the header bytes (hashed and signed)."""


def decode_entry(raw: bytes, *, _trusted: bool = False) -> Entry:
    """Decode and structurally check one entry; signatures are not checked here.

    Checks size, msgpack well-formedness, canonical form, the header schema and
    version, the signature length, and the body hash when a body is present.
    Raises :class:`OversizeError`, :class:`DecodeError`, :class:`NonCanonicalError`,
    :class:`SchemaError`, :class:`UnsupportedVersionError` or
    :class:`BodyHashMismatchError`.

    ``_trusted`` (private, as h11's ``_parsed``): ``raw`` has passed this function
    before, as every entry this node stores has (the node's own store, a batch the
    caller decoded already). It is decoded the same way into the same :class:`Entry`,
    without checking again what only the bytes can get wrong: the canonical form,
    the header fields and the body hash. Never pass it for bytes from elsewhere.
    """
    if type(raw) is not bytes:
        raw = bytes(raw)
    hdr, signature, body, header_bytes = entry_parts(raw, _trusted=_trusted)
    return Entry(Header(*hdr[1:], _trusted=True), signature, body, raw, sha256(header_bytes),
                 header_bytes)


def entry_parts(raw: bytes, *, _trusted: bool = False) -> EntryParts:
    """:func:`decode_entry`'s reading of ``raw`` (bytes), with its checks, errors
    and ``_trusted``, before it builds the :class:`Entry`: its parts
    (:data:`EntryParts`), for a reader that needs only a few of them, such as the
    ledger catching up (no objects built, no hash computed)."""
    if type(raw) is not bytes:
        raw = bytes(raw)
    if _trusted:
        # Bytes from the node's own store passed every check below when they were
        # stored: here they are only taken apart.
        try:
            hdr, signature, body = canonical.unpack(raw, max_size=MAX_ENTRY_SIZE, what="entry")
            return hdr, signature, body, raw[1:len(raw) - _packed_size(body) - 66]
        except (TypeError, ValueError):  # (damaged on disk: as decode_entry says)
            return entry_parts(raw)
    if len(raw) > MAX_ENTRY_SIZE:
        raise OversizeError(f"entry is {len(raw)} bytes, limit is {MAX_ENTRY_SIZE}")
    value = canonical.unpack(raw, max_size=MAX_ENTRY_SIZE, what="entry")
    if type(value) is not list or len(value) != 3:
        raise SchemaError("entry: want [header, signature, body]")
    hdr, signature, body = value
    if type(hdr) is not list or len(hdr) != 8:
        raise SchemaError("entry header: want an array of 8 fields")
    if type(hdr[0]) is not int or hdr[0] != FORMAT_VERSION:
        raise UnsupportedVersionError(f"entry header: format version {_show(hdr[0])}, want 1")
    problem = _header_problem(*hdr[1:])
    if problem:
        raise SchemaError(f"entry header: {problem}")
    if type(signature) is not bytes or len(signature) != 64:
        raise SchemaError(f"entry {_where(hdr)}: signature must be bin 64")
    if body is not None and type(body) is not bytes:
        raise SchemaError(f"entry {_where(hdr)}: body must be bin or nil")
    if canonical.encode(value, _checked=True) != raw:  # (its fields: checked above)
        raise NonCanonicalError(f"entry {_where(hdr)} is not canonical msgpack")
    if body is not None and sha256(body) != hdr[7]:
        raise BodyHashMismatchError(f"entry {_where(hdr)}: body does not match body_hash")
    return hdr, signature, body, raw[1:len(raw) - _packed_size(body) - 66]


def _packed_size(body: bytes | None) -> int:
    """The size of ``body`` packed (nil, or bin 8 / bin 16 of at most
    :data:`MAX_ENTRY_SIZE` bytes). An entry's header bytes (hashed and signed) are
    those between its canonical bytes' array mark and the packed signature (bin 8 of
    64 bytes) and body: a slice, no packing."""
    return 1 if body is None else len(body) + (2 if len(body) < 0x100 else 3)


def _where(hdr: list[Any]) -> str:
    return where(hdr[2], hdr[3])




def verifying_key(author: bytes, seq: int) -> bytes:
    """The public key that verifies ``author``'s feed at ``seq``.

    Today always the LAB id itself; key rotation will answer here, from the feed's
    own ``key.rotated`` entries, without a change to the format or the store.
    """
    return author


def check_signature(entry: Entry, key: bytes | None = None) -> None:
    """Raise :class:`BadSignatureError` unless the entry's signature verifies.

    ``key`` defaults to :func:`verifying_key` for the entry's author and seq.
    """
    if key is None:
        key = verifying_key(entry.header.author, entry.header.seq)
    if not verify_signature(key, entry.signature, SIGNING_PREFIX + entry.header_bytes):
        raise BadSignatureError(f"entry {entry.where}: signature does not verify")


def redact(entry: Entry) -> Entry:
    """The same entry with its body dropped. Header, hash and signature still verify."""
    raw = canonical.encode([entry.header.as_list(), entry.signature, None])
    return Entry(entry.header, entry.signature, None, raw, entry.hash, entry.header_bytes)


@dataclass
class FeedVerifier:
    """Checks the entries of one feed, fed in seq order, as a chain.

    ``head_seq``/``head_hash`` start at an already-verified point (0/None for a new
    feed). :meth:`check` raises :class:`WrongFederationError`,
    :class:`WrongAuthorError`, :class:`BrokenChainError` or
    :class:`BadSignatureError`; on success it advances the head.
    """

    federation_id: bytes
    author: bytes
    head_seq: int = 0
    head_hash: bytes | None = None

    def check_link(self, entry: Entry) -> None:
        """The checks that need no cryptography: federation, author, seq, prev."""
        h = entry.header
        if h.federation_id != self.federation_id:
            raise WrongFederationError(
                f"entry {entry.where}: federation {short(h.federation_id)}, "
                f"want {short(self.federation_id)}"
            )
        if h.author != self.author:
            raise WrongAuthorError(
                f"entry {entry.where}: in the feed of {short(self.author)}"
            )
        if h.seq != self.head_seq + 1:
            raise BrokenChainError(
                f"entry {entry.where}: seq {h.seq} does not follow {self.head_seq}"
            )
        if h.prev != self.head_hash:
            raise BrokenChainError(
                f"entry {entry.where}: prev does not match the hash of seq {self.head_seq}"
            )

    def check(self, entry: Entry) -> None:
        """Check link and signature, then advance the head."""
        self.check_link(entry)
        check_signature(entry)
        self.advance(entry)

    def advance(self, entry: Entry) -> None:
        self.head_seq = entry.header.seq
        self.head_hash = entry.hash


__all__ = [
    "FORMAT_VERSION", "HASH_SIZE", "MAX_ENTRY_SIZE", "SIGNING_PREFIX", "DecodeError",
    "Entry", "EntryParts", "FeedVerifier", "Header", "Ref", "check_signature", "decode_body",
    "decode_entry", "entry_parts", "redact", "sha256", "short", "sign_entry", "verifying_key",
    "where",
]
