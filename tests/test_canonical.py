"""Tests of protocol.canonical: the one byte form of every signed or hashed value."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import DEFAULT_MAX_SIZE, MAX_DEPTH, decode, encode, unpack
from protocol.errors import (
    DecodeError,
    LocalProtocolError,
    NonCanonicalError,
    OversizeError,
    ProtocolError,
)

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


def same(a: Any, b: Any) -> bool:
    """Equality that also compares types (so True != 1) and treats tuples as lists."""
    if isinstance(a, tuple):
        a = list(a)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# -- strategies ------------------------------------------------------------

scalars: st.SearchStrategy[Any] = st.one_of(
    st.integers(INT_MIN, INT_MAX),
    st.sampled_from([0, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, 2**32, INT_MIN, INT_MAX]),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.booleans(),
    st.none(),
)

canonical_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=8), children, max_size=5),
    ),
    max_leaves=30,
)


# -- round trips -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\xcc\x80"),
        (256, b"\xcd\x01\x00"),
        (-1, b"\xff"),
        (-33, b"\xd0\xdf"),
        (INT_MAX, b"\xcf" + b"\xff" * 8),
        (INT_MIN, b"\xd3\x80" + b"\x00" * 7),
        ("é", b"\xa2\xc3\xa9"),
        (b"\x00", b"\xc4\x01\x00"),
        (True, b"\xc3"),
        (False, b"\xc2"),
        (None, b"\xc0"),
        ([1, "a"], b"\x92\x01\xa1a"),
        ((1, "a"), b"\x92\x01\xa1a"),
        ({}, b"\x80"),
    ],
)
def test_known_encodings(value: Any, expected: bytes) -> None:
    assert encode(value) == expected
    assert same(value, decode(expected))


def test_encode_sorts_keys_by_utf8_bytes() -> None:
    # "Z" (0x5a) < "a" (0x61) < "é" (0xc3 0xa9) < "😀" (0xf0 ...), whatever order given.
    value = {"😀": 4, "é": 3, "a": 2, "Z": 1}
    raw = encode(value)
    assert raw == b"\x84\xa1Z\x01\xa1a\x02\xa2\xc3\xa9\x03\xa4\xf0\x9f\x98\x80\x04"
    assert list(decode(raw)) == ["Z", "a", "é", "😀"]


def test_nested_map_keys_are_sorted() -> None:
    raw = encode({"b": [{"y": 1, "x": 2}], "a": {"d": None, "c": True}})
    assert raw == msgpack.packb(
        {"a": {"c": True, "d": None}, "b": [{"x": 2, "y": 1}]}, use_bin_type=True
    )


@settings(max_examples=200, deadline=None)
@given(canonical_values)
def test_decode_encode_round_trip(value: Any) -> None:
    raw = encode(value)
    decoded = decode(raw)
    assert same(value, decoded)
    assert encode(decoded) == raw


@settings(max_examples=200, deadline=None)
@given(canonical_values)
def test_encode_is_msgpack_with_sorted_keys(value: Any) -> None:
    """Canonical bytes are plain msgpack: any msgpack reader gets the value back."""
    raw = encode(value)
    assert same(value, msgpack.unpackb(raw, raw=False))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=40), canonical_values.map(encode)), st.data())
def test_decode_of_any_bytes_is_typed(raw: bytes, data: st.DataObject) -> None:
    """Random or mutated bytes either decode canonically or raise a DecodeError."""
    if raw and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :]
    try:
        value = decode(raw)
    except DecodeError:
        return
    assert encode(value) == raw


# -- decode rejects --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(b"\xca\x3f\x80\x00\x00", NonCanonicalError, id="float32"),
        pytest.param(b"\xcb\x3f\xf0" + b"\x00" * 6, NonCanonicalError, id="float64"),
        pytest.param(b"\x91\xca\x00\x00\x00\x00", NonCanonicalError, id="nested-float"),
        pytest.param(b"\x81\xa1a\xcb" + b"\x00" * 8, NonCanonicalError, id="float-in-map"),
        pytest.param(b"\xd4\x01\x00", DecodeError, id="fixext1"),
        pytest.param(b"\xc7\x02\x05ab", DecodeError, id="ext8"),
        pytest.param(b"\xd6\xff\x00\x00\x00\x00", DecodeError, id="timestamp-ext"),
        pytest.param(b"\xd5\xff\x00\x00", DecodeError, id="bad-timestamp-ext"),
        pytest.param(b"\x91\xd4\x01\x00", DecodeError, id="nested-ext"),
        pytest.param(b"\x82\xa1b\x01\xa1a\x02", NonCanonicalError, id="unsorted-keys"),
        pytest.param(b"\x82\xa1a\x01\xa1a\x02", NonCanonicalError, id="duplicate-keys"),
        pytest.param(b"\x82\xa1a\x01\xa1a\x01", NonCanonicalError, id="duplicate-same-value"),
        pytest.param(b"\xcd\x00\x01", NonCanonicalError, id="uint16-for-1"),
        pytest.param(b"\xcc\x01", NonCanonicalError, id="uint8-for-1"),
        pytest.param(b"\xce\x00\x00\x01\x00", NonCanonicalError, id="uint32-for-256"),
        pytest.param(b"\xcf" + b"\x00" * 7 + b"\x01", NonCanonicalError, id="uint64-for-1"),
        pytest.param(b"\xd0\x01", NonCanonicalError, id="int8-for-positive"),
        pytest.param(b"\xd0\xff", NonCanonicalError, id="int8-for-fixneg"),
        pytest.param(b"\xd1\xff\xff", NonCanonicalError, id="int16-for-minus-1"),
        pytest.param(b"\xd9\x01a", NonCanonicalError, id="str8-for-fixstr"),
        pytest.param(b"\xc5\x00\x01a", NonCanonicalError, id="bin16-for-short"),
        pytest.param(b"\xdc\x00\x01\x01", NonCanonicalError, id="array16-for-short"),
        pytest.param(b"\xde\x00\x00", NonCanonicalError, id="map16-for-empty"),
        pytest.param(b"\xa1\xff", DecodeError, id="str-not-utf8"),
        pytest.param(b"\xa2\xc3\x28", DecodeError, id="str-bad-continuation"),
        pytest.param(b"\xa3\xed\xa0\x80", DecodeError, id="str-encoded-surrogate"),
        pytest.param(b"\x81\xa1\xff\x01", DecodeError, id="map-key-not-utf8"),
        pytest.param(b"\x01\x02", DecodeError, id="trailing-bytes"),
        pytest.param(b"\x80\xc0", DecodeError, id="trailing-nil"),
        pytest.param(b"", DecodeError, id="empty"),
        pytest.param(b"\x92\x01", DecodeError, id="truncated-array"),
        pytest.param(b"\xa5abc", DecodeError, id="truncated-str"),
        pytest.param(b"\xcd\x01", DecodeError, id="truncated-int"),
        pytest.param(b"\xc4\x05ab", DecodeError, id="truncated-bin"),
        pytest.param(b"\xdd\xff\xff\xff\xff", DecodeError, id="huge-array-claim"),
        pytest.param(b"\xc1", DecodeError, id="reserved-byte"),
        pytest.param(b"\x81\x01\x02", DecodeError, id="int-map-key"),
        pytest.param(b"\x81\xc4\x01a\x02", DecodeError, id="bin-map-key"),
        pytest.param(b"\x81\xc0\x02", DecodeError, id="nil-map-key"),
        pytest.param(b"\x81\x90\x02", DecodeError, id="array-map-key"),
    ],
)
def test_decode_rejects(raw: bytes, error: type[DecodeError]) -> None:
    with pytest.raises(error):
        decode(raw)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 600, 1000, 1100, 5000])
def test_decode_rejects_deep_nesting_with_a_typed_error(depth: int) -> None:
    with pytest.raises(DecodeError):
        decode(b"\x91" * depth + b"\xc0")


def test_decode_accepts_nesting_up_to_max_depth() -> None:
    raw = b"\x91" * MAX_DEPTH + b"\xc0"
    value = decode(raw)
    assert encode(value) == raw
    # A map counts as a level too.
    with pytest.raises(NonCanonicalError):
        decode(b"\x91" * MAX_DEPTH + b"\x81\xa1a\xc0")


def test_decode_oversize() -> None:
    raw = encode(b"x" * 100)
    assert decode(raw, max_size=len(raw)) == b"x" * 100
    with pytest.raises(OversizeError, match=str(len(raw) - 1)):
        decode(raw, max_size=len(raw) - 1)
    with pytest.raises(OversizeError):
        unpack(raw, max_size=len(raw) - 1)


def test_decode_default_limit_is_64_kib() -> None:
    assert DEFAULT_MAX_SIZE == 64 * 1024
    at_limit = b"\xc5\xff\xfd" + b"x" * (DEFAULT_MAX_SIZE - 3)
    assert len(decode(at_limit)) == DEFAULT_MAX_SIZE - 3
    with pytest.raises(OversizeError):
        decode(at_limit + b"x")
    # Oversize is detected before parsing, whatever the bytes are.
    with pytest.raises(OversizeError):
        decode(b"\xc1" * (DEFAULT_MAX_SIZE + 1))


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError):
        decode("\x01")  # type: ignore[arg-type]


def test_decode_accepts_bytearray_and_memoryview() -> None:
    raw = encode({"a": [1, 2]})
    assert decode(bytearray(raw)) == {"a": [1, 2]}  # type: ignore[arg-type]
    assert decode(memoryview(raw)) == {"a": [1, 2]}  # type: ignore[arg-type]


def test_decode_errors_name_what_and_where() -> None:
    with pytest.raises(NonCanonicalError, match=r"^body is not canonical.*byte 2"):
        decode(b"\x82\xa1b\x01\xa1a\x02", what="body")
    with pytest.raises(DecodeError, match=r"^body has 1 trailing bytes"):
        decode(b"\x01\x02", what="body")


def test_decode_errors_are_remote() -> None:
    from protocol.errors import RemoteProtocolError

    with pytest.raises(RemoteProtocolError):
        decode(b"\xca\x00\x00\x00\x00")


# -- encode rejects --------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(1.0, id="float"),
        pytest.param(float("nan"), id="nan"),
        pytest.param([1, 0.5], id="nested-float"),
        pytest.param({"a": {"b": 1.5}}, id="float-in-map"),
        pytest.param({1, 2}, id="set"),
        pytest.param(frozenset(), id="frozenset"),
        pytest.param({1: "a"}, id="int-key"),
        pytest.param({b"a": 1}, id="bytes-key"),
        pytest.param({None: 1}, id="none-key"),
        pytest.param({("a",): 1}, id="tuple-key"),
        pytest.param({"a": {2: 1}}, id="nested-int-key"),
        pytest.param(INT_MAX + 1, id="int-too-big"),
        pytest.param(INT_MIN - 1, id="int-too-small"),
        pytest.param(10**5000, id="int-huge"),
        pytest.param(-(10**5000), id="int-huge-negative"),
        pytest.param(bytearray(b"a"), id="bytearray"),
        pytest.param(object(), id="object"),
        pytest.param("\ud800", id="lone-surrogate"),
        pytest.param({"\udc00": 1}, id="lone-surrogate-key"),
        pytest.param(["ok", {"k": "\ud83d"}], id="nested-lone-surrogate"),
    ],
)
def test_encode_rejects(value: Any) -> None:
    with pytest.raises(LocalProtocolError):
        encode(value)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000])
def test_encode_rejects_deep_nesting_with_a_typed_error(depth: int) -> None:
    value: Any = None
    for _ in range(depth):
        value = [value] if depth % 2 else {"k": value}
    with pytest.raises(LocalProtocolError, match="deeper"):
        encode(value)


def test_encode_error_says_where() -> None:
    with pytest.raises(LocalProtocolError, match=r"\$\.a\[1\]"):
        encode({"a": [1, 2.5]})


def test_errors_are_protocol_errors() -> None:
    assert issubclass(NonCanonicalError, DecodeError)
    assert issubclass(OversizeError, DecodeError)
    assert issubclass(LocalProtocolError, ProtocolError)
