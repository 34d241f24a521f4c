"""Tests of federation.bundle: writing a bundle and reading it back, and every way the
reader refuses a file (``BundleError``) or reports a damaged end (a ``problem``
record). (What the audit makes of a bundle's contents: tests/test_audit.py.)"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import msgpack
import pytest

from federation.bundle import (
    BUNDLE_VERSION,
    MAX_RECORD,
    BundleWriter,
    Record,
    read_record_at,
    read_records,
)
from federation.errors import BundleError, FederationError
from protocol import canonical

FID = b"\x07" * 32
CREATED = 1_800_000_000_000_000


def written(entries: int = 3) -> bytes:
    out = io.BytesIO()
    writer = BundleWriter(out, FID, CREATED)
    writer.genesis(b"genesis document")
    writer.checkpoint(b"\x01" * 32, b"signed note")
    for i in range(entries):
        writer.entry(b"entry %d" % i)
    writer.fork(b"fork proof")
    writer.close()
    assert writer.entries == entries
    return out.getvalue()


def records_of(data: bytes) -> list[Record]:
    return list(read_records(io.BytesIO(data)))


def framed(*records: list[Any], end: bool = True) -> bytes:
    """Records as given (canonical), then a correct end record."""
    parts = [canonical.encode(r) for r in records]
    body = b"".join(parts)
    if end:
        body += canonical.encode(["end", len(parts), hashlib.sha256(body).digest()])
    return body


HEAD = ["bundle", BUNDLE_VERSION, FID, CREATED]


def test_round_trip_kinds_fields_and_offsets() -> None:
    data = written()
    records = records_of(data)
    assert [r.kind for r in records] == ["bundle", "genesis", "checkpoint", "entry", "entry",
                                         "entry", "fork"]
    assert records[0].fields == [BUNDLE_VERSION, FID, CREATED]
    assert [r.fields for r in records if r.kind == "entry"] == [[b"entry 0"], [b"entry 1"],
                                                                [b"entry 2"]]
    for r in records:
        assert read_record_at(io.BytesIO(data), r.offset) == [r.kind, *r.fields]


def test_bundle_errors_are_federation_errors() -> None:
    assert issubclass(BundleError, FederationError)


# -- refused: the file is not a usable bundle -----------------------------------------

REFUSED: dict[str, tuple[bytes, str]] = {
    "empty file": (b"", "not a disco bundle (empty file)"),
    "not msgpack": (b"\xc1" + framed(HEAD), "damaged framing at byte 0"),
    "an ext type": (msgpack.packb(msgpack.ExtType(1, b"x")), "damaged framing at byte 0"),
    "a map key that is not text": (msgpack.packb({1: 2}, use_bin_type=True),
                                   "damaged framing at byte 0"),
    "a record that is not a list": (canonical.encode("bundle"), "unknown record at byte 0"),
    "an empty record": (canonical.encode([]), "unknown record at byte 0"),
    "an unknown kind": (framed(HEAD, ["chapter", b"x"]), "unknown record at byte"),
    "another first record": (framed(["genesis", b"x"]), "not a disco bundle (version 1)"),
    "another version": (framed(["bundle", 2, FID, CREATED]), "not a disco bundle (version 1)"),
    "a short first record": (framed(["bundle", 1, FID]), "not a disco bundle (version 1)"),
    "a non-canonical record": (b"\x94\xa6bundle\xcc\x01\xc4\x20" + FID  # 1 as uint 8
                               + b"\xcf" + CREATED.to_bytes(8, "big"),
                               "record at byte 0 is not canonical"),
    "a malformed entry record": (framed(HEAD, ["entry", "text"]),
                                 "malformed entry record at byte"),
    "an entry record of two fields": (framed(HEAD, ["entry", b"a", b"b"]),
                                      "malformed entry record at byte"),
    "a malformed checkpoint record": (framed(HEAD, ["checkpoint", b"x", "note"]),
                                      "malformed checkpoint record at byte"),
    "a malformed genesis record": (framed(HEAD, ["genesis"]), "malformed genesis record"),
    "a malformed first record": (framed(["bundle", 1, "fid", CREATED]),
                                 "malformed bundle record at byte 0"),
    "bytes after the end": (framed(HEAD) + b"\x90", "bytes after the end record at byte"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_read_records_refuses(name: str) -> None:
    data, message = REFUSED[name]
    with pytest.raises(BundleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        records_of(data)


def test_a_record_over_the_size_limit_is_damaged_framing() -> None:
    data = framed(HEAD, ["entry", b"x" * (MAX_RECORD + 1)])
    with pytest.raises(BundleError, match="damaged framing"):
        records_of(data)


# -- reported: a damaged end -------------------------------------------------------------


def test_a_missing_end_record_is_reported_as_truncated() -> None:
    data = written()
    cut = records_of(data)[-1].offset + len(canonical.encode(["fork", b"fork proof"]))
    records = records_of(data[:cut])
    assert records[-1].kind == "problem" and records[-1].fields[0] == "truncated"
    assert [r.kind for r in records[:-1]] == [r.kind for r in records_of(data)]


def test_a_record_cut_in_two_is_reported_as_truncated() -> None:
    data = written()
    last = records_of(data)[-1]
    records = records_of(data[:last.offset + 3])
    assert [(r.kind, r.fields[0]) for r in records[-1:]] == [("problem", "truncated")]
    assert "fork" not in [r.kind for r in records]


@pytest.mark.parametrize("end", [
    ["end", 7, b"\x00" * 32],  # wrong digest
    ["end", 6, None],  # wrong count, no digest
    ["end"],
])
def test_a_wrong_end_record_is_reported(end: list[Any]) -> None:
    data = written()
    body = data[:len(data) - len(canonical.encode(["end", 7, b"\x00" * 32]))]
    records = records_of(body + canonical.encode(end))
    assert records[-1].kind == "problem" and records[-1].fields[0] == "bundle-digest"
    assert len(records) == 8


def test_an_edited_record_breaks_the_end_digest() -> None:
    data = written().replace(b"entry 1", b"entry 9")
    assert [r.fields[0] for r in records_of(data) if r.kind == "problem"] == ["bundle-digest"]


def test_read_record_at_refuses_a_position_that_is_no_record() -> None:
    data = written()
    genesis = records_of(data)[1]
    with pytest.raises(BundleError, match="no record at byte"):
        read_record_at(io.BytesIO(data), genesis.offset + 1)  # inside its kind, a str
