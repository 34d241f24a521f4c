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
from functools import partial
from itertools import chain
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


class _Unfit(Exception):
    """Internal: a value cannot be encoded. ``problem`` says why, with ``{where}``
    standing for the path to it, which grows as the walk unwinds."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.path = ""

    def error(self) -> LocalProtocolError:
        return LocalProtocolError(self.problem.replace("{where}", "$" + self.path))


_PLAIN = frozenset({int, str, bytes, bool, type(None)})
"""The scalar types msgpack packs as the rules say. (It refuses, itself, an int out
of range and a str that is not UTF-8 encodable.)"""
_STR = frozenset({str})
_PLAIN_OR_LIST = _PLAIN | {list}
_is_list = partial(type.__instancecheck__, list)
_flat = chain.from_iterable


def _plain_lists(value: list[Any], depth: int) -> bool:
    """Whether ``value``, a list at ``depth``, holds at every level only lists and
    plain scalars, nested within :data:`MAX_DEPTH`: then nothing in it changes. Its
    elements are looked over a level at a time, by type, in C (a document's rows of
    rows pass in a few calls, not one each). False says only: walk it."""
    level = [value]
    while True:
        types = set(map(type, _flat(level)))
        if _PLAIN.issuperset(types):
            return True
        depth += 1
        if depth >= MAX_DEPTH or not _PLAIN_OR_LIST.issuperset(types):
            return False
        level = list(filter(_is_list, _flat(level)))  # (only lists: types says)


def _fit_scalar(value: Any, where: str = "{where}") -> None:
    """Raise :class:`_Unfit` for an int out of range or a str not UTF-8 encodable."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise _Unfit(f"str at {where} is not encodable as UTF-8 ({e.reason})") from None
    elif isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        shown = value if value.bit_length() <= 256 else f"{value.bit_length()}-bit int"
        raise _Unfit(f"integer out of msgpack range at {where}: {shown}")


_SORTED_KEYS: dict[tuple[Any, ...], bool] = {}
"""The key tuples of maps met before, and whether they are str keys in sorted order:
the check in :func:`_normalise_map`, remembered (maps of one kind share their keys)."""


def _normalise(value: Value, depth: int = 0, scalars: bool = False,
               lists: bool = True) -> Value:
    """``value`` with every map's keys sorted by their UTF-8 bytes, and ``value``
    itself (no copy) wherever nothing needs to change: msgpack then packs it exactly
    as the rules say. Raises :class:`_Unfit` for a forbidden type or nesting past
    :data:`MAX_DEPTH`, and, with ``scalars``, for an int out of range or a str that
    is not UTF-8 encodable (which the packer refuses anyway: :func:`encode` asks
    only to say where).

    The one walk of the encoder. Containers of plain scalars (the usual case) are
    looked over by type in C, not value by value; str sorts by code point, which
    for encodable text is the order of its UTF-8 bytes. Lists of lists are first
    looked over by :func:`_plain_lists` (``lists``: not already, by an outer list).
    """
    t = type(value)
    if t is dict or t is list:
        if depth >= MAX_DEPTH:
            raise _Unfit(f"arrays and maps nest deeper than {MAX_DEPTH} at {{where}}")
        if t is dict:
            if not scalars and _SORTED_KEYS.get(tuple(value)) \
                    and _PLAIN.issuperset(map(type, value.values())):
                return value  # (a map met before, of plain scalars: the usual body)
            return _normalise_map(value, depth + 1, scalars)
    elif t in _PLAIN or isinstance(value, (int, str, bytes)):  # (bool is an int)
        if scalars:
            _fit_scalar(value)
        return value
    elif not isinstance(value, (list, tuple, Mapping)):
        raise _Unfit(f"type {t.__name__} at {{where}} is not allowed in canonical msgpack")
    elif depth >= MAX_DEPTH:
        raise _Unfit(f"arrays and maps nest deeper than {MAX_DEPTH} at {{where}}")
    elif isinstance(value, Mapping):
        return _normalise_map(value, depth + 1, scalars)
    if not scalars and _PLAIN.issuperset(map(type, value)):
        return value if t is list or t is tuple else list(value)
    if lists and not scalars and t is list:
        if _plain_lists(value, depth):
            return value
        lists = False  # (what is below was looked over, and failed: walk it)
    out = None
    for i, v in enumerate(value):
        if not scalars and type(v) in _PLAIN:
            continue
        try:
            w = _normalise(v, depth + 1, scalars, lists)
        except _Unfit as e:
            e.path = f"[{i}]{e.path}"
            raise
        if w is not v:
            if out is None:
                out = list(value)
            out[i] = w
    if out is not None:
        return out
    return value if t is list or t is tuple else list(value)


def _normalise_map(value: Mapping[Any, Value], depth: int, scalars: bool) -> Value:
    """:func:`_normalise` of a map (``depth``: of its values)."""
    keys = tuple(value)
    in_order = _SORTED_KEYS.get(keys)
    if in_order is None:
        if not _STR.issuperset(map(type, keys)):
            for k in keys:
                if not isinstance(k, str):
                    raise _Unfit(f"map key at {{where}} is {type(k).__name__}, want str")
        if len(_SORTED_KEYS) >= 4096:
            _SORTED_KEYS.clear()
        in_order = _SORTED_KEYS[keys] = list(keys) == sorted(keys)
    if scalars:
        for k in keys:
            _fit_scalar(k, "{where} (a key)")
    if not in_order:
        keys = tuple(sorted(keys))
    elif type(value) is dict and not scalars and _PLAIN.issuperset(map(type, value.values())):
        return value
    out = {}
    same = type(value) is dict and in_order
    for k in keys:
        v = value[k]
        try:
            w = _normalise(v, depth, scalars)
        except _Unfit as e:
            e.path = f".{k}{e.path}"
            raise
        out[k] = w
        same = same and w is v
    return value if same else out


class _Packers(threading.local):
    """A msgpack packer for each thread (a packer is not thread-safe; making one for
    each call costs as much as packing a small value)."""

    def __init__(self) -> None:
        self.pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True).pack


_PACKERS = _Packers()


def encode(value: Value, *, _checked: bool = False) -> bytes:
    """Encode ``value`` canonically.

    Raises :class:`LocalProtocolError` for floats, ext types, non-str map keys,
    ints outside msgpack's range, str that is not UTF-8 encodable (lone surrogates)
    or nesting deeper than :data:`MAX_DEPTH`, naming where (``$.key[index]``).

    ``_checked`` (private, as h11's ``_parsed``): the caller has just checked, or
    built, ``value`` to hold only arrays and str-keyed maps with their keys in
    sorted order (at most :data:`MAX_DEPTH` deep) of str, bytes, int, bool and None
    (no float), as :func:`~protocol.entry.decode_entry` checks an entry's fields and
    the ledger builds its document; the walk that would check it again is skipped.
    (An int out of range or a str that is not UTF-8 is still refused, by the packer.)
    """
    try:
        return _PACKERS.pack(value if _checked else _normalise(value))
    except _Unfit as e:
        raise e.error() from None
    except (OverflowError, UnicodeEncodeError) as e:
        refused = e
    try:  # the same walk, checking each int and str, to say which one it was
        _normalise(value, scalars=True)
    except _Unfit as e:
        raise e.error() from None
    raise LocalProtocolError(f"not encodable: {refused}") from None


def packs_back(value: Value, data: bytes) -> bool:
    """Whether packing ``value`` as it is gives ``data`` back.

    For a value known to hold only str, bytes, bool, None, ints in msgpack's range
    and lists of them, inside maps whose keys are str in sorted order (what a schema
    may have checked already), :func:`encode`'s walk has nothing to change: then this
    *is* the canonical check of ``data`` (:func:`decode`'s), without the walk.
    """
    try:
        return bool(_PACKERS.pack(value) == data)
    except (OverflowError, UnicodeEncodeError, TypeError, ValueError):
        return False


_unpackb = msgpack.unpackb
assert msgpack.version >= (1, 0), "msgpack >= 1.0: str as str, lists, str map keys only"


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"ext type {code} is not allowed")


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def unpack(data: bytes, max_size: int = DEFAULT_MAX_SIZE, what: str = "value") -> Value:
    """Unpack msgpack bytes without the canonical check (see :func:`decode`).

    Raises :class:`OversizeError` above ``max_size`` and :class:`DecodeError` for
    malformed msgpack, trailing bytes, invalid UTF-8 or ext types.
    """
    if type(data) is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{what}: got {type(data).__name__}, want bytes")
    if len(data) > max_size:
        raise OversizeError(f"{what} is {len(data)} bytes, limit is {max_size}")
    try:
        # (msgpack's defaults: raw=False, use_list=True, strict_map_key=True)
        return _unpackb(data, ext_hook=_reject_ext)
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
    value = unpack(data, max_size, what)
    try:
        again = _PACKERS.pack(_normalise(value))  # encode(value), one call shorter
    except (_Unfit, OverflowError, UnicodeEncodeError):
        try:
            encode(value)  # (to say what is wrong, and where)
        except LocalProtocolError as e:
            raise NonCanonicalError(f"{what} is not canonical: {e}") from None
        raise
    if again != data:
        at = _first_difference(again, bytes(data))
        raise NonCanonicalError(f"{what} is not canonical msgpack (first difference at byte {at})")
    return value
