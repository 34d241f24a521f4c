"""The export bundle: one file holding a federation's genesis, feeds, checkpoints and
fork proofs, written and read as a stream (layout in ``docs/bundle.md``).

A bundle is a sequence of canonical msgpack arrays ("records")::

    ["bundle", 1, federation_id, created_us]          first
    ["genesis", genesis document bytes]
    ["checkpoint", author, signed note bytes]         before that author's entries
    ["entry", entry bytes]                            each feed's entries, seq order
    ["fork", fork proof bytes]
    ["end", record count, SHA-256 of every byte before this record]   last

Every byte is covered: entries by their signatures and hashes, checkpoints by their
note signatures, the genesis by the federation id, and all of it, framing included,
by the ``end`` record's digest, which also reveals a truncated file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack

from federation.errors import BundleError
from protocol import canonical
from protocol.entry import MAX_ENTRY_SIZE
from protocol.errors import DecodeError, ProtocolError

MAGIC = "bundle"
BUNDLE_VERSION = 1
MAX_RECORD = 2 * MAX_ENTRY_SIZE + 1024
FIRST_READ = 4096
KINDS = ("bundle", "genesis", "checkpoint", "entry", "fork", "end")
SHAPES: dict[str, tuple[type, ...]] = {
    "bundle": (int, bytes, int), "genesis": (bytes,), "checkpoint": (bytes, bytes),
    "entry": (bytes,), "fork": (bytes,),
}
"""The field types of each record but ``end`` (a wrong end is reported, not raised)."""


class BundleWriter:
    """Writes records to a binary stream, keeping the running digest and count."""

    def __init__(self, out: BinaryIO, federation_id: bytes, created_us: int) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.count = 0
        self.entries = 0
        self._write(["bundle", BUNDLE_VERSION, federation_id, created_us])

    def _write(self, record: list[Any]) -> None:
        data = canonical.encode(record)
        self.out.write(data)
        self.digest.update(data)
        self.count += 1

    def genesis(self, document: bytes) -> None:
        self._write(["genesis", document])

    def checkpoint(self, author: bytes, note: bytes) -> None:
        self._write(["checkpoint", author, note])

    def entry(self, raw: bytes) -> None:
        self._write(["entry", raw])
        self.entries += 1

    def fork(self, proof: bytes) -> None:
        self._write(["fork", proof])

    def close(self) -> None:
        """Write the ``end`` record (the caller closes the stream)."""
        data = canonical.encode(["end", self.count, self.digest.digest()])
        self.out.write(data)


@dataclass(frozen=True)
class Record:
    """One record read back: its kind, its fields and its byte offset in the file."""

    kind: str
    fields: list[Any]
    offset: int


def read_records(f: BinaryIO) -> Iterator[Record]:
    """Stream the records of a bundle, checking framing, order and the end digest.

    A wrong or missing ``end`` record is yielded as a record of kind ``problem``
    (fields: code, message), so that the auditor can still report everything else.
    Raises :class:`BundleError` for anything that makes the file unusable: not a
    bundle, unknown record, damaged or non-canonical framing, bytes after the end.
    """
    unpacker = msgpack.Unpacker(raw=False, use_list=True, strict_map_key=True,
                                max_buffer_size=4 * MAX_RECORD, max_bin_len=MAX_RECORD,
                                ext_hook=_no_ext)
    pack = msgpack.Packer(use_bin_type=True).pack
    digest = hashlib.sha256()
    buffer = bytearray()
    base = 0  # file offset of buffer[0]
    count = 0
    offset = 0
    ended = False
    eof = False
    while True:
        try:
            value = unpacker.unpack()
        except msgpack.OutOfData:
            if eof:
                break
            chunk = f.read(256 * 1024)
            if not chunk:
                eof = True
                if len(buffer) > offset - base:
                    break  # a partial record: reported as truncated below
                continue
            unpacker.feed(chunk)
            buffer += chunk
            continue
        except (ValueError, msgpack.UnpackException, DecodeError) as e:
            raise BundleError(f"bundle: damaged framing at byte {offset}: {e}") from None
        end = unpacker.tell()
        raw = bytes(buffer[offset - base:end - base])
        if end - base > 1 << 20:
            del buffer[:end - base]
            base = end
        if ended:
            raise BundleError(f"bundle: bytes after the end record at byte {offset}")
        if not isinstance(value, list) or not value or value[0] not in KINDS:
            raise BundleError(f"bundle: unknown record at byte {offset}")
        plain_entry = len(value) == 2 and value[0] == "entry" and type(value[1]) is bytes
        if plain_entry:
            # What canonical.encode makes of [str, bin], without its walk: most records.
            canonical_form = pack(value)
        else:
            try:
                canonical_form = canonical.encode(value)
            except ProtocolError:
                canonical_form = b""
        if canonical_form != raw:
            raise BundleError(f"bundle: record at byte {offset} is not canonical")
        data = raw
        kind = value[0]
        if count == 0 and (kind != "bundle" or len(value) != 4 or value[1] != BUNDLE_VERSION):
            raise BundleError("not a disco bundle (version 1)")
        shape = None if plain_entry else SHAPES.get(kind)  # (an entry has its shape)
        if shape is not None and (len(value) != 1 + len(shape) or any(
                type(v) is not t for v, t in zip(value[1:], shape, strict=False))):
            raise BundleError(f"bundle: malformed {kind} record at byte {offset}")
        if kind == "end":
            if len(value) != 3 or value[1] != count or value[2] != digest.digest():
                yield Record("problem", ["bundle-digest", "the end record does not match "
                                         "the bundle's contents (damaged or edited)"], offset)
            ended = True
        else:
            digest.update(data)
            count += 1
            yield Record(kind, value[1:], offset)
        offset = end
    if count == 0:
        raise BundleError("not a disco bundle (empty file)")
    if not ended:
        yield Record("problem", ["truncated", f"the bundle ends after {count} records, "
                                 "without its end record"], offset)


def _no_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"ext type {code} in a bundle")


def read_record_at(f: BinaryIO, offset: int) -> list[Any]:
    """The record starting at ``offset`` (random access for the auditor's ledger)."""
    f.seek(offset)
    unpacker = msgpack.Unpacker(raw=False, use_list=True, max_buffer_size=4 * MAX_RECORD)
    # Most records are a few hundred bytes: read a little first, the rest if need be
    # (MAX_RECORD + 64 bytes in all, as a single read would).
    unpacker.feed(f.read(FIRST_READ))
    try:
        value = unpacker.unpack()
    except msgpack.OutOfData:
        unpacker.feed(f.read(MAX_RECORD + 64 - FIRST_READ))
        value = unpacker.unpack()
    if not isinstance(value, list):
        raise BundleError(f"bundle: no record at byte {offset}")
    return value
