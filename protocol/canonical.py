"""Canonical msgpack: the one byte form of every signed or hashed value.

Rules (DESIGN.md, "The signed entry"):
- ints in minimal form, str as UTF-8, bin, array, map, bool, nil;
- map keys are unique str, sorted by their UTF-8 bytes;
- no floats, no ext types;
- a decoder rejects anything where ``encode(decode(b)) != b`` and anything over its
  size limit;
- arrays and maps nest at most :data:`MAX_DEPTH` deep (deeper values would overflow
  the stack of this encoder, or msgpack's own limit, instead of failing cleanly).

``encode`` sorts map keys itself, so callers may pass dicts in any order.
``decode`` never lets a msgpack exception escape: it raises
:class:`~protocol.errors.DecodeError` or a subclass saying what and where.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from protocol.errors import (
    DecodeError,
    LocalProtocolError,
    NonCanonicalError,
    OversizeError,
)

Value = Any
"""A canonical value: int, str, bytes, bool, None, list of values, str-keyed map."""

DEFAULT_MAX_SIZE = 64 * 1024

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

MAX_DEPTH = 100
"""How deep arrays and maps may nest; a top-level array or map is depth 1."""


def _utf8(text: str, where: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise LocalProtocolError(f"str at {where} is not encodable as UTF-8 ({e.reason})") from None


def _normalise(value: Value, where: str, depth: int = 0) -> Value:
    """Return ``value`` with maps sorted by key bytes; raise on forbidden types."""
    if value is None or isinstance(value, (bool, bytes)):
        return value
    if isinstance(value, str):
        _utf8(value, where)
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            shown = value if value.bit_length() <= 256 else f"{value.bit_length()}-bit int"
            raise LocalProtocolError(f"integer out of msgpack range at {where}: {shown}")
        return value
    if isinstance(value, (list, tuple, Mapping)) and depth >= MAX_DEPTH:
        raise LocalProtocolError(f"arrays and maps nest deeper than {MAX_DEPTH} at {where}")
    if isinstance(value, (list, tuple)):
        return [_normalise(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise LocalProtocolError(f"map key at {where} is {type(k).__name__}, want str")
            items.append((_utf8(k, f"{where} (a key)"), k, v))
        items.sort()
        return {k: _normalise(v, f"{where}.{k}", depth + 1) for _, k, v in items}
    raise LocalProtocolError(
        f"type {type(value).__name__} at {where} is not allowed in canonical msgpack"
    )


def encode(value: Value) -> bytes:
    """Encode ``value`` canonically.

    Raises :class:`LocalProtocolError` for floats, ext types, non-str map keys,
    ints outside msgpack's range, str that is not UTF-8 encodable (lone surrogates)
    or nesting deeper than :data:`MAX_DEPTH`.
    """
    return msgpack.packb(_normalise(value, "$"), use_bin_type=True)  # type: ignore[no-any-return]


class _Packers(threading.local):
    """A msgpack packer for each thread (a packer is not thread-safe; making one for
    each call costs as much as the packing)."""

    def __init__(self) -> None:
        self.pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True).pack


_PACKERS = _Packers()


def packer() -> Callable[[Any], bytes]:
    """This thread's ``msgpack.packb(value, use_bin_type=True)``, made once per thread.

    Not a canonical encoder: it packs maps in their own key order and floats as they
    are. For values already known to be canonical-shaped (see :func:`encode`)."""
    return _PACKERS.pack


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"ext type {code} is not allowed")


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def unpack(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, what: str = "value") -> Value:
    """Unpack msgpack bytes without the canonical check (see :func:`decode`).

    Raises :class:`OversizeError` above ``max_size`` and :class:`DecodeError` for
    malformed msgpack, trailing bytes, invalid UTF-8 or ext types.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{what}: got {type(data).__name__}, want bytes")
    if len(data) > max_size:
        raise OversizeError(f"{what} is {len(data)} bytes, limit is {max_size}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_reject_ext,
        )
    except DecodeError:
        raise
    except msgpack.ExtraData as e:
        raise DecodeError(f"{what} has {len(e.extra)} trailing bytes") from None
    except UnicodeDecodeError as e:
        raise DecodeError(f"{what} holds a str that is not UTF-8 ({e.reason})") from None
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise DecodeError(f"{what} is not valid msgpack: {e}") from None


def decode(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, what: str = "value") -> Value:
    """Decode canonical msgpack bytes.

    Raises :class:`OversizeError`, :class:`DecodeError` (malformed, ext types,
    invalid UTF-8) or :class:`NonCanonicalError` (floats, unsorted or duplicate
    keys, non-minimal ints, ...), each naming ``what`` and the byte offset.
    """
    value = unpack(data, max_size=max_size, what=what)
    try:
        again = encode(value)
    except LocalProtocolError as e:
        raise NonCanonicalError(f"{what} is not canonical: {e}") from None
    if again != bytes(data):
        at = _first_difference(again, bytes(data))
        raise NonCanonicalError(f"{what} is not canonical msgpack (first difference at byte {at})")
    return value
