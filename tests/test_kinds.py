"""Entry kinds: body schemas, the range of totals, and the rules of a LAB's own feed."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.errors import RuleViolation
from federation.kinds import (
    MAX_MINUTES,
    MAX_TOTAL,
    SCHEMAS,
    STREAMS,
    LabState,
    body_of,
    check_body,
    check_total,
    entry_body,
)
from protocol.entry import (
    SIGNING_PREFIX,
    Entry,
    Header,
    decode_body,
    decode_entry,
    sha256,
    sign_entry,
)
from protocol.errors import ProtocolError
from protocol.keys import Signer

FID = bytes(range(32))
ME = Signer.from_seed(b"\1" * 32)
OTHER = b"\2" * 32
ROSTER = {ME.public_key: "me", OTHER: "other"}
STRANGER = b"\x09" * 32
CONTRIBUTION = {"member": "ana", "stream": "care", "minutes": 90}


def violation(kind: str, body: dict[str, Any]) -> tuple[str, str] | None:
    """The (code, message) check_body raises for ``body``, or None."""
    try:
        check_body(kind, body)
    except RuleViolation as v:
        return v.code, v.message
    return None


def entry_with_body(body_bytes: bytes | None, kind: str = "contribution.recorded") -> Entry:
    """A signed entry carrying ``body_bytes`` as they are (a faulty author's body)."""
    header = Header(FID, ME.public_key, 1, None, 0, kind, sha256(body_bytes or b""))
    signature = ME.sign(SIGNING_PREFIX + header.encode())
    return decode_entry(msgpack.packb([header.as_list(), signature, body_bytes],
                                      use_bin_type=True))


# -- body schemas ------------------------------------------------------------


def test_a_good_body_passes_and_each_fault_is_named() -> None:
    assert violation("contribution.recorded", CONTRIBUTION) is None
    assert violation("contribution.recorded", {**CONTRIBUTION, "zzz": 1}) == (
        "bad-body", "contribution.recorded: unknown field 'zzz'")
    assert violation("contribution.recorded", {"member": "ana", "stream": "care"}) == (
        "bad-body", "contribution.recorded: missing field 'minutes'")
    assert violation("contribution.recorded", {**CONTRIBUTION, "minutes": 0}) == (
        "bad-body", f"contribution.recorded: minutes: got 0, want 1 to {MAX_MINUTES}")
    assert violation("contribution.recorded", {**CONTRIBUTION, "note": " "}) == (
        "bad-body", "contribution.recorded: note: must not be empty")
    assert violation("no.such.kind", {}) == ("unknown-kind", "unknown entry kind 'no.such.kind'")


def test_the_first_fault_is_named_in_schema_order_whatever_the_key_order() -> None:
    """Required fields first, in the schema's order, then optional ones: the message
    (part of the ledger's digest) never depends on how the body's keys are ordered."""
    body = {"stream": "rest", "member": "Not A Handle", "minutes": 0, "note": ""}
    expected = violation("contribution.recorded", body)
    assert expected is not None and expected[1].startswith("contribution.recorded: member:")
    for keys in (sorted(body), sorted(body, reverse=True), ["note", "minutes", "stream",
                                                            "member"]):
        assert violation("contribution.recorded", {k: body[k] for k in keys}) == expected


FIELD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 2000), st.text(max_size=4),
                         st.binary(max_size=33), st.just("care"), st.just(b"\3" * 32),
                         st.just(["x"]), st.dictionaries(st.sampled_from(STREAMS),
                                                         st.integers(0, 3)))


@settings(deadline=None)  # no timings in tests: the machine is shared and noisy
@given(kind=st.sampled_from(sorted(SCHEMAS)), data=st.data())
def test_any_key_order_gives_the_same_verdict(kind: str, data: st.DataObject) -> None:
    """A canonical (sorted) body finds its checkers in one look-up; any other order
    takes them field by field: both are :meth:`Schema.check`, with one verdict."""
    schema = SCHEMAS[kind]
    names = data.draw(st.lists(st.sampled_from([*schema.fields, "extra"]), unique=True))
    body = {name: data.draw(FIELD_VALUES, label=name) for name in sorted(names)}
    shuffled = list(body)
    random.Random(data.draw(st.integers(0, 2**16))).shuffle(shuffled)
    assert violation(kind, {k: body[k] for k in shuffled}) == violation(kind, body)


# -- the body of an entry --------------------------------------------------------


def test_entry_body_decodes_checks_and_says_what_is_wrong() -> None:
    entry = sign_entry(ME, federation_id=FID, seq=1, prev=None, ts_us=0,
                       kind="contribution.recorded", body=CONTRIBUTION)
    assert entry_body(entry) == CONTRIBUTION
    unsorted = msgpack.packb({"stream": "care", "minutes": 90, "member": "ana"},
                             use_bin_type=True)
    for body_bytes, says in [
        (unsorted, "not canonical"),
        (msgpack.packb([1, 2], use_bin_type=True), "want a map"),
        (msgpack.packb(dict(sorted({**CONTRIBUTION, "zzz": 1}.items())), use_bin_type=True),
         "unknown field"),
    ]:
        with pytest.raises(RuleViolation, match=says) as caught:
            entry_body(entry_with_body(body_bytes))
        assert caught.value.code == "bad-body"
    assert entry_body(entry_with_body(None)) is None  # redacted


def two_checks(kind: str, body_bytes: bytes) -> dict[str, Any] | tuple[str, str]:
    """The verdict of the body's two checks taken in order, as the ledger defines it:
    the canonical form (decode_body), then the schema (check_body)."""
    try:
        fields = decode_body(body_bytes, ME.public_key, 1)
    except ProtocolError as e:
        return "bad-body", str(e)
    assert fields is not None
    return violation(kind, fields) or fields


def one_pass(kind: str, body_bytes: bytes) -> dict[str, Any] | tuple[str, str]:
    try:
        fields = body_of(kind, body_bytes, ME.public_key, 1)
    except RuleViolation as v:
        return v.code, v.message
    assert fields is not None
    return fields


def _uint_wide(n: int) -> bytes:
    """``n`` packed as uint 64: a non-minimal int."""
    return b"\xcf" + n.to_bytes(8, "big")


ODD_ENCODINGS = st.sampled_from([
    lambda k, v: msgpack.packb(k, use_bin_type=True) + msgpack.packb(v, use_bin_type=True),
    lambda k, v: msgpack.packb(k, use_bin_type=True) + (
        _uint_wide(v) if type(v) is int and 0 <= v < 2**63 else msgpack.packb(v)),
    lambda k, v: msgpack.packb(k.encode(), use_bin_type=True) + msgpack.packb(v),  # bin key
    lambda k, v: msgpack.packb(k, use_bin_type=False) + msgpack.packb(v, use_bin_type=False),
    lambda k, v: msgpack.packb(k) + msgpack.packb(float(v) if type(v) is int else v),
])


@given(kind=st.sampled_from([*sorted(SCHEMAS), "no.such.kind"]), data=st.data())
def test_one_pass_gives_the_two_checks_verdict(kind: str, data: st.DataObject) -> None:
    """body_of finds a good body good in one pass (unpack, schema, pack back): for any
    bytes, canonical or not, its verdict (the fields, or the code and message) is the
    one the canonical check and then the schema give."""
    names = data.draw(st.lists(st.sampled_from([*SCHEMAS.get(kind, SCHEMAS["lab.joined"]).fields,
                                                "extra"]), unique=True))
    values = {name: data.draw(FIELD_VALUES | st.just("ana") | st.integers(1, 90), label=name)
              for name in names}
    order = sorted(values) if data.draw(st.booleans()) else list(values)
    pairs = [data.draw(ODD_ENCODINGS, label="encoding")(name, values[name])
             if data.draw(st.integers(0, 9)) == 0 else
             msgpack.packb(name) + msgpack.packb(values[name], use_bin_type=True)
             for name in order]
    if pairs and data.draw(st.integers(0, 19)) == 0:
        pairs.append(pairs[0])  # a duplicate key
    body_bytes = (bytes([0x80 | len(pairs)]) if len(pairs) < 16 else b"\xde" +
                  len(pairs).to_bytes(2, "big")) + b"".join(pairs)
    try:
        verdict = two_checks(kind, body_bytes)
    except TypeError:  # (a value msgpack cannot pack back: not what is asked here)
        return
    assert one_pass(kind, body_bytes) == verdict


def test_one_pass_and_two_checks_agree_on_good_and_faulty_bodies() -> None:
    good = msgpack.packb(CONTRIBUTION | {"for_lab": OTHER}, use_bin_type=True)
    sorted_good = msgpack.packb(dict(sorted((CONTRIBUTION | {"for_lab": OTHER}).items())),
                                use_bin_type=True)
    assert one_pass("contribution.recorded", sorted_good) == CONTRIBUTION | {"for_lab": OTHER}
    assert isinstance(one_pass("contribution.recorded", good), tuple)  # (keys not sorted)
    policy = msgpack.packb({"care_ratio": 5, "weights": {"love": 1, "care": 2,
                                                         "livelihood": 3}})
    assert one_pass("policy.set", policy) == two_checks("policy.set", policy)
    assert "not canonical" in one_pass("policy.set", policy)[1]  # (a map's keys unsorted)
    for body_bytes in [msgpack.packb([1]), b"\xc1", b"\x81\xa6member\xa3ana\x00",
                       b"\x83" + msgpack.packb("member") + _uint_wide(1)]:
        for kind in ("contribution.recorded", "policy.set", "no.such.kind"):
            assert one_pass(kind, body_bytes) == two_checks(kind, body_bytes)


REF = [OTHER, 3, b"\4" * 32]
GOOD_BODIES: dict[str, dict[str, Any]] = {
    "lab.joined": {"federation": FID, "name": "Farm"},
    "member.added": {"handle": "ana", "name": "Ana"},
    "member.updated": {"handle": "ana", "name": "Ana B."},
    "contribution.recorded": {**CONTRIBUTION, "for_lab": OTHER, "date": "2026-10-31",
                              "note": "n", "project": "p"},
    "contribution.acknowledged": {"contribution": REF, "note": "thanks"},
    "transfer.offered": {"to": OTHER, "amount": 300, "unit": "JXC", "memo": "m"},
    "transfer.accepted": {"offer": REF, "reason": "ok"},
    "transfer.declined": {"offer": REF, "reason": "no"},
    "transfer.reclaimed": {"offer": REF, "decline": REF},
    "income.recorded": {"amount": 5, "unit": "JXC", "period": "2026-10", "source": "s"},
    "policy.set": {"weights": {"care": 1, "livelihood": 2, "love": 3}, "care_ratio": 5},
    "entry.voided": {"entry": REF, "reason": "booked twice"},
}
GOOD_BODIES["contribution.corrected"] = {**GOOD_BODIES["contribution.recorded"], "entry": REF,
                                         "reason": "typo"}
GOOD_BODIES["income.corrected"] = {**GOOD_BODIES["income.recorded"], "entry": REF,
                                   "reason": "typo"}
GOOD_BODIES["proposal.made"] = {  # (every field the schema has: no action takes them all)
    "action": "rule", "threshold": [3, 4], "expiry_days": 14, "unit": "JXC",
    "credit_limit": 5000, "note": "why", "lab": FID, "name": "New LAB", "last_seq": 4,
    "key": FID, "from_seq": 5, "keep": REF}
GOOD_BODIES["proposal.voted"] = {"proposal": REF, "vote": "yes", "note": "ok"}
GOOD_BODIES["key.rotated"] = {"key": FID, "note": "yearly"}
GOOD_BODIES["lab.left"] = {"note": "we are merging"}


def test_a_schema_is_flat_when_no_field_holds_a_map() -> None:
    """body_of's one pass does not look at the key order of a map inside a body, so
    only schemas without one may take it."""
    for kind, body in GOOD_BODIES.items():
        assert SCHEMAS[kind].flat == (dict not in map(type, body.values())), kind


def test_every_kind_has_a_good_body_here() -> None:
    assert set(GOOD_BODIES) == set(SCHEMAS)


def _packed_value(value: Any, odd: str) -> bytes:
    """``value`` packed, canonically or in one ``odd`` way."""
    if odd == "wide int" and type(value) is int:
        return _uint_wide(value)
    if odd == "float" and type(value) is int:
        return msgpack.packb(float(value))
    if odd == "str as bin" and type(value) is str:
        return msgpack.packb(value.encode(), use_bin_type=True)
    if odd == "long str" and type(value) is str:
        return b"\xda" + len(value.encode()).to_bytes(2, "big") + value.encode()
    if odd == "ref of 4" and type(value) is list:
        return msgpack.packb([*value, 1], use_bin_type=True)
    return msgpack.packb(value, use_bin_type=True)


@pytest.mark.parametrize("kind", sorted(GOOD_BODIES))
def test_one_pass_gives_the_two_checks_verdict_for_every_odd_encoding(kind: str) -> None:
    """Each field of a good body of each kind packed in each odd way (and the keys
    reversed, a key twice): body_of gives exactly the verdict of the two checks."""
    body = dict(sorted(GOOD_BODIES[kind].items()))
    assert set(body) == set(SCHEMAS[kind].fields)  # (every field, optional ones too)
    assert one_pass(kind, msgpack.packb(body, use_bin_type=True)) == body
    refused = 0
    for name in body:
        for odd in ("wide int", "float", "str as bin", "long str", "ref of 4"):
            pairs = [msgpack.packb(k) + (_packed_value(v, odd) if k == name else
                                         msgpack.packb(v, use_bin_type=True))
                     for k, v in body.items()]
            for layout in (pairs, pairs[::-1], [*pairs, pairs[0]]):
                body_bytes = bytes([0x80 | len(layout)]) + b"".join(layout)
                verdict = two_checks(kind, body_bytes)
                assert one_pass(kind, body_bytes) == verdict, (name, odd, body_bytes)
                refused += isinstance(verdict, tuple)
    assert refused > len(body)  # (the odd encodings were refused, as they must be)


# -- ranges ----------------------------------------------------------------------


def test_check_total_keeps_the_range() -> None:
    assert check_total(MAX_TOTAL, "x") == MAX_TOTAL
    assert check_total(-MAX_TOTAL, "x") == -MAX_TOTAL
    for total in (MAX_TOTAL + 1, -MAX_TOTAL - 1):
        with pytest.raises(RuleViolation) as caught:
            check_total(total, "the balance")
        assert caught.value.code == "out-of-range"
        assert "the balance would be" in caught.value.message


# -- the rules of a LAB's own feed ------------------------------------------------


def joined() -> LabState:
    lab = LabState(FID, ROSTER, ME.public_key)
    body = {"federation": FID, "name": "Farm"}
    lab.check("lab.joined", body)
    lab.apply("lab.joined", body)
    return lab


def code_of(lab: LabState, kind: str, body: dict[str, Any] | None, **flags: bool) -> str | None:
    try:
        lab.check(kind, body, **flags)
    except RuleViolation as v:
        return v.code
    return None


def test_a_feed_begins_with_lab_joined_once_and_for_its_federation() -> None:
    fresh = LabState(FID, ROSTER, ME.public_key)
    assert code_of(fresh, "member.added", {"handle": "ana", "name": "Ana"}) == "not-joined"
    assert code_of(fresh, "lab.joined", {"federation": OTHER, "name": "F"}) == "wrong-federation"
    assert code_of(LabState(FID, ROSTER, STRANGER), "lab.joined",
                   {"federation": FID, "name": "F"}) == "not-in-roster"
    lab = joined()
    assert (lab.seq, lab.name) == (1, "Farm")
    assert code_of(lab, "lab.joined", {"federation": FID, "name": "F"}) == "joined-twice"


def test_members_and_contributions_follow_the_feed() -> None:
    lab = joined()
    assert code_of(lab, "contribution.recorded", CONTRIBUTION) == "unknown-member"
    assert code_of(lab, "member.updated", {"handle": "ana", "name": "A"}) == "unknown-member"
    lab.apply("member.added", {"handle": "ana", "name": "Ana"})
    assert lab.members == {"ana": "Ana"}
    assert code_of(lab, "member.added", {"handle": "ana", "name": "Ana"}) == "member-exists"
    assert code_of(lab, "contribution.recorded", CONTRIBUTION) is None
    assert code_of(lab, "contribution.recorded", {**CONTRIBUTION, "for_lab": STRANGER}) \
        == "unknown-lab"
    assert code_of(lab, "contribution.recorded", {**CONTRIBUTION, "for_lab": OTHER}) is None


def test_a_schema_checked_body_skips_only_the_schema() -> None:
    """``_schema_checked`` (as the ledger passes after ``entry_body``) skips the schema,
    never the feed's own rules."""
    lab = joined()
    bad_schema = {**CONTRIBUTION, "minutes": 0}
    assert code_of(lab, "contribution.recorded", bad_schema) == "bad-body"
    assert code_of(lab, "contribution.recorded", bad_schema, _schema_checked=True) \
        == "unknown-member"
    lab.apply("member.added", {"handle": "ana", "name": "Ana"})
    assert code_of(lab, "contribution.recorded", CONTRIBUTION, _schema_checked=True) is None


def test_after_a_redaction_unknown_members_are_taken_as_they_were() -> None:
    lab = joined()
    lab.apply("member.added", None)  # redacted: its effects are unknown
    assert (lab.seq, lab.redactions) == (2, 1)
    assert code_of(lab, "contribution.recorded", CONTRIBUTION) is None
    assert code_of(lab, "member.updated", {"handle": "bob", "name": "B"}) is None
    assert code_of(lab, "member.added", None) is None  # a redacted entry's place only


# -- corrections and voids ----------------------------------------------------------


def test_a_correction_is_checked_by_its_kinds_own_schema() -> None:
    """``contribution.corrected`` and ``income.corrected`` take the fields of the kind
    they correct, with the same checkers (one copy of the rule), plus the ref."""
    ref = [ME.public_key, 2, b"\5" * 32]
    fixed = {**CONTRIBUTION, "entry": ref}
    assert violation("contribution.corrected", fixed) is None
    assert violation("contribution.corrected", {**fixed, "date": "2025-10-30",
                                                "reason": "typo"}) is None
    assert violation("contribution.corrected", {**fixed, "minutes": 0}) == (
        "bad-body", f"contribution.corrected: minutes: got 0, want 1 to {MAX_MINUTES}")
    assert violation("contribution.corrected", {**fixed, "date": "2025-02-30"}) == (
        "bad-body", "contribution.corrected: date: 2025-02-30 is no day of the calendar")
    assert violation("contribution.corrected", CONTRIBUTION) == (
        "bad-body", "contribution.corrected: missing field 'entry'")
    income = {"amount": 100, "unit": "JXC", "period": "2025-10", "source": "sales"}
    assert violation("income.corrected", {**income, "entry": ref}) is None
    assert violation("income.corrected", {**income, "entry": ref, "amount": -5}) is not None
    assert violation("income.corrected", {**income, "entry": ref, "minutes": 5}) == (
        "bad-body", "income.corrected: unknown field 'minutes'")
    for required in ("entry", "reason"):
        void = {"entry": ref, "reason": "booked twice"}
        del void[required]
        assert violation("entry.voided", void) == (
            "bad-body", f"entry.voided: missing field {required!r}")
    assert violation("entry.voided", {"entry": ref, "reason": " "}) == (
        "bad-body", "entry.voided: reason: must not be empty")
    assert violation("entry.voided", {"entry": [ME.public_key, 2], "reason": "x"}) is not None


def test_a_lab_corrects_and_voids_only_earlier_entries_of_its_own_feed() -> None:
    lab = joined()
    lab.apply("member.added", {"handle": "ana", "name": "Ana"})
    mine = [ME.public_key, 2, b"\5" * 32]
    for kind, body in (("entry.voided", {"reason": "x"}),
                       ("income.corrected", {"amount": 1, "unit": "JXC", "period": "2025-10",
                                             "source": "s"}),
                       ("contribution.corrected", CONTRIBUTION)):
        assert code_of(lab, kind, {**body, "entry": mine}) is None
        assert code_of(lab, kind, {**body, "entry": [OTHER, 2, b"\5" * 32]}) \
            == "not-own-entry"
        assert code_of(lab, kind, {**body, "entry": [ME.public_key, 3, b"\5" * 32]}) \
            == "bad-reference"  # not before it: the entry itself would be seq 3
    # A corrected contribution follows the feed's rules for contributions too.
    assert code_of(lab, "contribution.corrected",
                   {**CONTRIBUTION, "member": "bo", "entry": mine}) == "unknown-member"
    assert code_of(lab, "contribution.corrected",
                   {**CONTRIBUTION, "for_lab": STRANGER, "entry": mine}) == "unknown-lab"
