"""Entry kinds, their body schemas, and the chain-local rules of a LAB's feed.

A body is a canonical msgpack map. Each kind names its fields; a body with a
missing, unknown or mistyped field is invalid (``RuleViolation`` with code
``bad-body``). Rules that need the author's own feed up to the entry (is the
member known? is this the first entry?) live in :class:`LabState`, so that the
node that authors an entry, the node that receives it and the offline auditor all
apply the same code.

Kinds and bodies:

==========================  ===================================================
``lab.joined``              federation bin32, name str
``member.added``            handle, name str
``member.updated``          handle, name str
``contribution.recorded``   member handle, stream, minutes int,
                            [for_lab bin32], [project str], [note str],
                            [date "YYYY-MM-DD": the day the work was done, which
                            books it in its month; else the author's timestamp]
``contribution.acknowledged`` contribution ref, [note str]
``transfer.offered``        to bin32, amount int, unit str, [memo str]
``transfer.accepted``       offer ref, [reason str]
``transfer.declined``       offer ref, [reason str]
``transfer.reclaimed``      offer ref, decline ref
``income.recorded``         amount int, unit str, period "YYYY-MM", source str
``policy.set``              weights {livelihood, love, care: int}, care_ratio int %
``contribution.corrected``  entry ref, the fields of ``contribution.recorded``,
                            [reason str]
``income.corrected``        entry ref, the fields of ``income.recorded``,
                            [reason str]
``entry.voided``            entry ref, reason str
``proposal.made``           action "admit" | "remove" | "recover" | "repair" |
                            "rule", the action's fields (:data:`ACTION_FIELDS`),
                            [note str]
``proposal.voted``          proposal ref, vote "yes" | "no", [note str]
``key.rotated``             key bin32 (signs this feed from the next seq)
``lab.left``                [note str] (the LAB's last counted entry)
==========================  ===================================================

Proposals, votes, key rotations and departures are decided in
:mod:`federation.governance`.

Corrections and voids (:mod:`federation.corrections`) name an earlier entry of the
same feed: the schema of a correction is its kind's own schema plus ``entry`` and
``reason`` (:func:`_correction`), so the figures are checked by the same checkers.

Rules across feeds (credit limits, answers to offers) are in
:mod:`federation.ledger`.

Ranges: every total the ledger keeps (a LAB's balance in a unit, its income of a
period in a unit, the minutes of one contribution row) stays within
-:data:`MAX_TOTAL` to :data:`MAX_TOTAL`. An entry that would take one past it is
invalid with code ``out-of-range`` (:func:`check_total`, the one place the rule
lives). Each such total is a sum over entries of one feed (the author's own, with
the offers its answers and reclaims reference), so the verdict is the same on every
node, in every arrival order, and in the offline audit.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from federation.errors import RuleViolation
from federation.genesis import MAX_EXPIRY_DAYS, threshold_problem
from protocol import canonical
from protocol.entry import MAX_ENTRY_SIZE, Entry, Ref, decode_body
from protocol.errors import ProtocolError

STREAMS = ("livelihood", "love", "care")
HANDLE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MAX_MINUTES = 31 * 24 * 60
"""One record covers at most a month of someone's time: more is a typo."""
MAX_TEXT = 1000
MAX_AMOUNT = 2**53
MAX_TOTAL = 2**62
"""The bound of every total the ledger keeps (see "Ranges" above): any such total,
and its sum with another or with one entry's amount, fits a signed 64-bit integer
(msgpack int64, a fixed-width auditor), so a snapshot can always be encoded. 2**62
minor units of a 2-decimal unit are 4.6e16 units; 2**62 minutes are 8.8e12 years."""
OUT_OF_RANGE = "out-of-range"
PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
DAY = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")

Checker = Callable[[Any], str | None]


def _text(limit: int) -> Checker:
    def check(v: Any) -> str | None:
        if not isinstance(v, str):
            return "want text"
        if not v or v.isspace():  # (what strips to nothing)
            return "must not be empty"
        return None if len(v) <= limit else f"longer than {limit} characters"
    return check


HANDLE_WANTED = "want a handle: 1 to 32 of a-z 0-9 . _ -, starting with a letter or digit"


def _handle(v: Any) -> str | None:
    return _handle_text(v) if isinstance(v, str) else HANDLE_WANTED


@lru_cache(maxsize=4096)  # (a LAB's few handles, met in most of its entries)
def _handle_text(v: str) -> str | None:
    return None if HANDLE.match(v) else HANDLE_WANTED


def _bin32(v: Any) -> str | None:
    return None if isinstance(v, bytes) and len(v) == 32 else "want 32 bytes"


def _int_range(low: int, high: int) -> Checker:
    def check(v: Any) -> str | None:
        if type(v) is not int:
            return "want a whole number"
        return None if low <= v <= high else f"got {v}, want {low} to {high}"
    return check


def _one_of(*choices: str) -> Checker:
    def check(v: Any) -> str | None:
        return None if v in choices else f"got {v!r}, want one of {', '.join(choices)}"
    return check


def _period(v: Any) -> str | None:
    if isinstance(v, str) and PERIOD.match(v):
        return None
    return "want a month as YYYY-MM"


def day_problem(v: Any) -> str | None:
    """What is wrong with ``v`` as a day (YYYY-MM-DD of the calendar), or None."""
    return _day_text_problem(v) if isinstance(v, str) else DAY_WANTED


DAY_WANTED = "want a day as YYYY-MM-DD"


@lru_cache(maxsize=4096)  # (the days of a few years)
def _day_text_problem(v: str) -> str | None:
    if not DAY.match(v):
        return DAY_WANTED
    try:
        datetime.date.fromisoformat(v)
    except ValueError:
        return f"{v} is no day of the calendar"
    return None


def _weights(v: Any) -> str | None:
    if not isinstance(v, dict) or set(v) != set(STREAMS):
        return f"want a weight for each of {', '.join(STREAMS)}"
    if any(type(w) is not int or not 0 <= w <= 1000 for w in v.values()):
        return "weights must be whole numbers from 0 to 1000"
    return None if sum(v.values()) > 0 else "at least one weight must be above 0"


def _fraction(v: Any) -> str | None:
    return threshold_problem(v)


def _ref(v: Any) -> str | None:
    try:
        Ref.from_value(v)
    except ProtocolError as e:
        return str(e)
    return None


@dataclass(frozen=True)
class Schema:
    """Required and optional fields of one kind's body, each with its checker."""

    required: Mapping[str, Checker]
    optional: Mapping[str, Checker] = field(default_factory=dict)

    @cached_property
    def fields(self) -> Mapping[str, Checker]:
        """The checker of every field, required or optional."""
        return {**self.required, **self.optional}

    @cached_property
    def layouts(self) -> Mapping[tuple[str, ...], tuple[tuple[str, Checker], ...]]:
        """Every sorted tuple of field names a body may have (all required fields,
        any optional ones), each with its fields' checkers in the order :meth:`check`
        runs them: required fields, then optional ones, each in schema order."""
        optional = sorted(self.optional)
        layouts = {}
        for mask in range(2 ** len(optional)):
            present = {name for i, name in enumerate(optional) if mask >> i & 1}
            names = tuple(sorted([*self.required, *present]))
            layouts[names] = (*self.required.items(),
                              *((n, c) for n, c in self.optional.items() if n in present))
        return layouts

    @cached_property
    def flat(self) -> bool:
        """No field of this kind holds a map (the body is the only one): then
        :func:`body_of` may judge a body in one pass. :func:`_weights` is the one
        checker that accepts a map; a new one must be named here too (a test checks
        ``flat`` against a good body of every kind)."""
        return _weights not in self.fields.values()

    def check(self, kind: str, body: Mapping[str, Any]) -> bool:
        """Raise :class:`RuleViolation` (``bad-body``) naming the first unknown field,
        else the first missing one, else the first bad one (required fields first).
        Return whether the fields came in sorted order (a canonical body's).

        A body whose fields come in sorted order finds its fields' checkers in one
        look-up (:attr:`layouts`); any other takes them from the schema, name by
        name."""
        layout = self.layouts.get(tuple(body))
        in_order = layout is not None
        if layout is None:
            for name in body:
                if name not in self.fields:
                    raise RuleViolation("bad-body", f"{kind}: unknown field {name!r}")
            for name in self.required:
                if name not in body:
                    raise RuleViolation("bad-body", f"{kind}: missing field {name!r}")
            layout = self.layouts[tuple(sorted(body))]
        for name, checker in layout:
            problem = checker(body[name])
            if problem:
                raise RuleViolation("bad-body", f"{kind}: {name}: {problem}")
        return in_order


SCHEMAS: dict[str, Schema] = {
    "lab.joined": Schema({"federation": _bin32, "name": _text(120)}),
    "member.added": Schema({"handle": _handle, "name": _text(120)}),
    "member.updated": Schema({"handle": _handle, "name": _text(120)}),
    "contribution.recorded": Schema(
        {"member": _handle, "stream": _one_of(*STREAMS),
         "minutes": _int_range(1, MAX_MINUTES)},
        {"for_lab": _bin32, "project": _text(200), "note": _text(MAX_TEXT), "date": day_problem},
    ),
    "contribution.acknowledged": Schema({"contribution": _ref}, {"note": _text(MAX_TEXT)}),
    "transfer.offered": Schema(
        {"to": _bin32, "amount": _int_range(1, MAX_AMOUNT), "unit": _text(12)},
        {"memo": _text(MAX_TEXT)},
    ),
    "transfer.accepted": Schema({"offer": _ref}, {"reason": _text(MAX_TEXT)}),
    "transfer.declined": Schema({"offer": _ref}, {"reason": _text(MAX_TEXT)}),
    "transfer.reclaimed": Schema({"offer": _ref, "decline": _ref}),
    "income.recorded": Schema({"amount": _int_range(1, MAX_AMOUNT), "unit": _text(12),
                               "period": _period, "source": _text(200)}),
    "policy.set": Schema({"weights": _weights, "care_ratio": _int_range(0, 100)}),
    "entry.voided": Schema({"entry": _ref, "reason": _text(MAX_TEXT)}),
    "proposal.voted": Schema({"proposal": _ref, "vote": _one_of("yes", "no")},
                             {"note": _text(MAX_TEXT)}),
    "key.rotated": Schema({"key": _bin32}, {"note": _text(MAX_TEXT)}),
    "lab.left": Schema({}, {"note": _text(MAX_TEXT)}),
}

MAX_SEQ = 2**53
ACTION_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "admit": (frozenset({"lab", "name"}), frozenset()),
    "remove": (frozenset({"lab", "last_seq"}), frozenset()),
    "recover": (frozenset({"lab", "key", "from_seq"}), frozenset()),
    "repair": (frozenset({"lab", "keep", "key"}), frozenset()),
    "rule": (frozenset(), frozenset({"unit", "credit_limit", "threshold", "expiry_days"})),
}
"""Each proposal action's required and optional fields (besides ``action`` and
``note``). A ``rule`` proposal changes at least one rule; ``unit`` and
``credit_limit`` come together."""
SCHEMAS["proposal.made"] = Schema(
    {"action": _one_of(*ACTION_FIELDS)},
    {"lab": _bin32, "name": _text(120), "last_seq": _int_range(0, MAX_SEQ), "key": _bin32,
     "from_seq": _int_range(1, MAX_SEQ), "keep": _ref, "unit": _text(12),
     "credit_limit": _int_range(0, MAX_AMOUNT), "threshold": _fraction,
     "expiry_days": _int_range(1, MAX_EXPIRY_DAYS), "note": _text(MAX_TEXT)})


def action_problem(body: Mapping[str, Any]) -> str | None:
    """What is wrong with a schema-checked ``proposal.made`` body's fields for its
    action (a missing field, a field of another action), or None."""
    action = body["action"]
    required, optional = ACTION_FIELDS[action]
    fields = set(body) - {"action", "note"}
    for name in sorted(required - fields):
        return f"{action}: missing field {name!r}"
    for name in sorted(fields - required - optional):
        return f"{action}: field {name!r} is not one of this action's"
    if action == "rule":
        if not fields:
            return "rule: name at least one rule to change"
        if ("unit" in fields) != ("credit_limit" in fields):
            return "rule: unit and credit_limit come together"
    return None


def _correction(kind: str) -> Schema:
    """The schema of a correction of ``kind``: the fields of ``kind``'s own schema, with
    their checkers, plus the corrected entry's ref (``entry``) and an optional
    ``reason``."""
    schema = SCHEMAS[kind]
    return Schema({**schema.required, "entry": _ref},
                  {**schema.optional, "reason": _text(MAX_TEXT)})


CORRECTION_OF = {"contribution.recorded": "contribution.corrected",
                 "income.recorded": "income.corrected"}
"""The kind that corrects each correctable kind (its figures replaced)."""
VOIDABLE = frozenset({*CORRECTION_OF, "contribution.acknowledged"})
"""The kinds an ``entry.voided`` may cancel."""
AMENDING = frozenset({*CORRECTION_OF.values(), "entry.voided"})
"""The kinds that correct or void an earlier entry of their own feed."""
SCHEMAS.update({fixed: _correction(kind) for kind, fixed in CORRECTION_OF.items()})


def check_total(total: int, what: str) -> int:
    """Return ``total`` when it lies within -:data:`MAX_TOTAL` to :data:`MAX_TOTAL`.

    Raises :class:`RuleViolation` with code ``out-of-range`` otherwise, saying that
    ``what`` (e.g. "the balance") would leave the ledger's range. Every path that
    changes a total the ledger keeps calls this before the change takes effect.
    """
    if -MAX_TOTAL <= total <= MAX_TOTAL:
        return total
    bound = f"2**{MAX_TOTAL.bit_length() - 1}"
    raise RuleViolation(OUT_OF_RANGE, f"{what} would be {total}, outside the ledger's "
                        f"range of -{bound} to {bound}")


def check_body(kind: str, body: Mapping[str, Any]) -> None:
    """Check a body against its kind's schema. Raises :class:`RuleViolation`."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise RuleViolation("unknown-kind", f"unknown entry kind {kind!r}")
    schema.check(kind, body)


def entry_body(entry: Entry) -> dict[str, Any] | None:
    """The entry's body, schema-checked; None when redacted (:func:`body_of`)."""
    return body_of(entry.header.kind, entry.body, entry.header.author, entry.header.seq)


def body_of(kind: str, body: bytes | None, author: bytes, seq: int) -> dict[str, Any] | None:
    """The body of entry ``seq`` of ``author``'s feed, of ``kind``: decoded
    (:func:`~protocol.entry.decode_body`) and schema-checked (:func:`check_body`);
    None when redacted. Raises :class:`RuleViolation` (``bad-body``, ``unknown-kind``),
    with the message of the first of those two checks that fails.

    A body that passes both (the usual one) is found to in one pass; any other
    takes the two checks in order.
    """
    if body is None:
        return None
    schema = SCHEMAS.get(kind)
    if schema is not None and schema.flat:
        # One pass for a good body: unpacked, checked against the schema, packed
        # back. The fields a flat schema accepts are str, bin, ints in range and
        # refs (lists of those), so once they are known to come in sorted order,
        # packing them as they are is the canonical check (packs_back). Any fault
        # found here says only: ask the two checks below, in their order.
        try:
            fields = canonical.unpack(body, MAX_ENTRY_SIZE, "body")
            if (type(fields) is dict and schema.check(kind, fields)
                    and canonical.packs_back(fields, body)):
                return fields
        except (ProtocolError, RuleViolation):
            pass
    try:
        fields = decode_body(body, author, seq)
    except ProtocolError as e:
        raise RuleViolation("bad-body", str(e)) from None
    if fields is not None:
        if schema is None:
            check_body(kind, fields)  # (which says so)
        else:
            schema.check(kind, fields)
    return fields


@dataclass(slots=True)
class LabState:
    """What a LAB's own feed says up to some seq: joined?, name, members.

    :meth:`check` raises :class:`RuleViolation` if an entry with this kind and body
    may not come next; :meth:`apply` records a checked entry. A redacted entry is
    taken as it was (its effects are unknown, so later references to its member
    are accepted), which keeps redaction from invalidating what follows.
    """

    federation_id: bytes
    roster: Mapping[bytes, str]
    author: bytes
    seq: int = 0
    name: str | None = None
    members: dict[str, str] = field(default_factory=dict)
    redactions: int = 0
    left: int = 0
    """The seq of this feed's ``lab.left`` (0: it has not left)."""
    last: int | None = None
    """The last seq of this feed that counts, when a removal or departure decided in
    :mod:`federation.governance` cut it (the ledger sets it); None: no cut."""

    def check(self, kind: str, body: Mapping[str, Any] | None, *,
              _schema_checked: bool = False) -> None:
        """Raise :class:`RuleViolation` unless an entry of ``kind`` with ``body``
        (None: redacted) may come next in this feed.

        ``_schema_checked`` (private): :func:`check_body` has just accepted ``body``
        (as :func:`entry_body` does); it is not checked against its schema again."""
        if self.author not in self.roster:
            raise RuleViolation("not-in-roster", "author is not a member LAB of the federation")
        if self.seq == 0:
            if kind != "lab.joined":
                raise RuleViolation("not-joined", "a feed must begin with lab.joined")
        elif kind == "lab.joined":
            raise RuleViolation("joined-twice", "lab.joined may only be the first entry")
        if self.left:
            raise RuleViolation("left", f"this LAB left the federation at seq {self.left}")
        if body is not None:
            if not _schema_checked:
                check_body(kind, body)
            rules = _BODY_RULES.get(kind)  # the rules of the feed so far that read a body
            if rules is not None:
                rules(self, body)

    def _joined(self, body: Mapping[str, Any]) -> None:
        if body["federation"] != self.federation_id:
            raise RuleViolation("wrong-federation", "lab.joined names another federation")

    def _member_added(self, body: Mapping[str, Any]) -> None:
        if body["handle"] in self.members:
            raise RuleViolation("member-exists", f"member {body['handle']!r} already added")

    def _member_updated(self, body: Mapping[str, Any]) -> None:
        if not self._known(body["handle"]):
            raise RuleViolation("unknown-member", f"no member {body['handle']!r} in this LAB")

    def _contribution_recorded(self, body: Mapping[str, Any]) -> None:
        """The rules of this feed for a ``contribution.recorded`` body: its member is
        known, its ``for_lab`` is a member LAB. Raises :class:`RuleViolation`."""
        if not self._known(body["member"]):
            raise RuleViolation("unknown-member", f"no member {body['member']!r} in this LAB")
        for_lab = body.get("for_lab")
        if for_lab is not None and for_lab not in self.roster:
            raise RuleViolation("unknown-lab", "for_lab is not a member LAB")

    def _amends(self, body: Mapping[str, Any]) -> None:
        """The rule of this feed for a correction or a void: it names an earlier entry
        of this same feed. Raises :class:`RuleViolation` (``not-own-entry``,
        ``bad-reference``)."""
        ref = Ref.from_value(body["entry"])
        if ref.author != self.author:
            raise RuleViolation("not-own-entry", "a LAB corrects or voids only its own "
                                "entries, and this one is another LAB's")
        if ref.seq > self.seq:
            raise RuleViolation("bad-reference", f"entry {ref.seq} does not come before "
                                "this one in the LAB's feed")

    def _contribution_corrected(self, body: Mapping[str, Any]) -> None:
        self._amends(body)
        self._contribution_recorded(body)

    def _proposal(self, body: Mapping[str, Any]) -> None:
        problem = action_problem(body)
        if problem:
            raise RuleViolation("bad-body", f"proposal.made: {problem}")

    def _known(self, handle: str) -> bool:
        return handle in self.members or self.redactions > 0

    def apply(self, kind: str, body: Mapping[str, Any] | None) -> None:
        """Record an entry that :meth:`check` accepted."""
        self.seq += 1
        if body is None:
            self.redactions += 1
        elif kind == "lab.left":
            self.left = self.seq
        elif kind in _NAMING:
            if kind == "lab.joined":
                self.name = body["name"]
            else:
                self.members[body["handle"]] = body["name"]


_BODY_RULES: dict[str, Callable[[LabState, Mapping[str, Any]], None]] = {
    "lab.joined": LabState._joined,
    "member.added": LabState._member_added,
    "member.updated": LabState._member_updated,
    "contribution.recorded": LabState._contribution_recorded,
    "contribution.corrected": LabState._contribution_corrected,
    "income.corrected": LabState._amends,
    "entry.voided": LabState._amends,
    "proposal.made": LabState._proposal,
}
"""The rules of a LAB's own feed that look at a body, by kind."""
_NAMING = frozenset({"lab.joined", "member.added", "member.updated"})
"""The kinds that name the LAB or its members (what :meth:`LabState.apply` records)."""
