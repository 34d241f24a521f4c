"""Entry kinds: body schemas, the range of totals, and the rules of a LAB's own feed."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.errors import RuleViolation
from federation.kinds import (
    MAX_MINUTES,
    MAX_TOTAL,
    SCHEMAS,
    STREAMS,
    LabState,
    check_body,
    check_total,
    entry_body,
)
from protocol.entry import SIGNING_PREFIX, Entry, Header, decode_entry, sha256, sign_entry
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
