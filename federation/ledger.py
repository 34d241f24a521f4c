"""The federation ledger: a deterministic projection of every member LAB's feed.

Rules it keeps (DESIGN.md, "Ledger rules"):

- The validity of an entry depends only on its author's feed up to it and on the
  entries it references. Every balance change of a LAB is an entry of its own feed
  (its offers, its acceptances, its reclaims), so a credit-limit check needs no
  other feed.
- A reference to an entry not yet settled (not held, or held behind a pending
  entry) makes the entry **pending**: its feed waits there, and resumes when the
  reference settles. Hash references cannot form cycles, so every wait ends once
  the referenced entries arrive.
- ``transfer.offered`` debits the payer at once and must keep its balance >=
  -credit_limit; ``transfer.accepted`` by the payee credits the payee;
  ``transfer.declined`` lets the payer record ``transfer.reclaimed``, which credits
  it back. Each offer is answered at most once, in the payee's feed order.
- ``contribution.corrected``, ``income.corrected`` and ``entry.voided`` replace or
  cancel the figures of an earlier entry of the same feed
  (:mod:`federation.corrections`); the original stays in the feed.
- An invalid entry has no effect; it is listed with its reason.
- Every total it keeps (balances, income, contribution minutes) stays within
  ±:data:`~federation.kinds.MAX_TOTAL`: an entry that would take one past it is
  invalid (``out-of-range``, :func:`~federation.kinds.check_total`, called on every
  path). Each total is a sum over one feed, so the verdict is order-independent.
- Invariant: per unit, balances plus outstanding offers sum to zero.
- The state digest is SHA-256 of the canonical encoding of :meth:`Ledger.document`:
  the same feeds give the same digest whatever order they arrived in.

The ledger reads entries it must re-visit through a :class:`Feeds` object (the
node's store, a test's dict, an audit bundle), so it holds no feed in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from federation.corrections import amend
from federation.errors import InvariantError, PendingReference, RuleViolation, SnapshotError
from federation.genesis import Genesis
from federation.governance import GOVERNANCE, Act, Outcome, decide
from federation.kinds import (
    AMENDING,
    LabState,
    action_problem,
    body_of,
    check_total,
    entry_body,
)
from federation.transfers import OUTSTANDING, Offer, answer, offer, reclaim
from protocol import canonical
from protocol.entry import Entry, Ref, entry_parts, sha256, short, where
from protocol.errors import ProtocolError

LEDGER_VERSION = 3


class Feeds(Protocol):
    """Read access to the entries a ledger is built from (held entries only)."""

    def entry(self, author: bytes, seq: int) -> Entry | None:
        """The entry at (author, seq), or None if not held."""

    def entries_after(self, author: bytes, seq: int) -> Iterator[Entry]:
        """The held entries of ``author``'s feed after ``seq``, in seq order."""


def _month_of(ts_us: int) -> str:
    try:
        return datetime.fromtimestamp(ts_us / 1_000_000, UTC).strftime("%Y-%m")
    except (OverflowError, OSError, ValueError):
        return "0000-00"


DAY_US = 86_400_000_000
_EXACT_DAYS_BELOW_US = 2**52
"""Below this, ``ts_us / 1e6`` is within half a microsecond of the truth, so every
timestamp of a UTC day has the month of the day's first microsecond."""
_months: dict[int, str] = {}


def month_of(ts_us: int) -> str:
    """The UTC month (YYYY-MM) of an author's timestamp claim (memoised per day)."""
    if not 0 <= ts_us < _EXACT_DAYS_BELOW_US:
        return _month_of(ts_us)
    day = ts_us // DAY_US
    month = _months.get(day)
    if month is None:
        if len(_months) >= 100_000:
            _months.clear()
        month = _months[day] = _month_of(day * DAY_US)
    return month


Effect = Callable[[], None]

Arrival = tuple[bytes, int, str, int, "bytes | None", bytes, "bytes | None"]
"""What the ledger reads of an entry, whether it came as an :class:`Entry` or as
stored bytes (:func:`_arrival`): author, seq, kind, ts_us, body bytes (None when
redacted), header bytes, and the entry hash (None when not computed yet: it is the
SHA-256 of the header bytes, computed only for a rule that needs it)."""


def _arrival(entry: Entry | bytes, trusted: bool = False) -> Arrival:
    """The :data:`Arrival` of an :class:`Entry`, or of entry bytes read as
    :func:`~protocol.entry.decode_entry` reads them (``trusted``: its ``_trusted``)
    without building the objects. Raises :class:`~protocol.errors.ProtocolError`
    for bytes it refuses."""
    if isinstance(entry, Entry):
        h = entry.header
        return h.author, h.seq, h.kind, h.ts_us, entry.body, entry.header_bytes, entry.hash
    hdr, _, body, header_bytes = entry_parts(entry, _trusted=trusted)
    return hdr[2], hdr[3], hdr[6], hdr[5], body, header_bytes, None


def _no_effect() -> None:
    """The effect of an entry that changes nothing the ledger counts."""


class Ledger:
    """The projected federation ledger. Feed it entries with :meth:`receive`."""

    def __init__(self, genesis: Genesis, feeds: Feeds,
                 frozen: Mapping[bytes, int] | None = None) -> None:
        """``frozen`` maps a forked feed to its fork seq: entries from there on are
        ignored (the feed is frozen at seq - 1)."""
        self.genesis = genesis
        self.feeds = feeds
        self.frozen = dict(frozen or {})
        self.federation_id = genesis.federation_id
        self.roster: dict[bytes, str] = dict(genesis.roster)
        """Every LAB whose feed counts (founders and admitted LABs, gone ones too)."""
        self.acts: dict[tuple[bytes, int], Act] = {}
        """The governance entries settled (:mod:`federation.governance`)."""
        self.outcome: Outcome = decide(genesis, ())
        self._replay_due = False
        self._kept: dict[bytes, tuple[Ref, bool]] = {}
        """Per repaired LAB: the repair's kept entry, and whether it is held."""
        self.units = dict(genesis.units)
        # One bytes/str object per LAB id and unit, shared by every record that names
        # it (equal values, less memory: a ledger holds one Offer per transfer).
        self._same: dict[Any, Any] = {**{lab: lab for lab in self.roster},
                                      **{unit: unit for unit in self.units}}
        self.limits = dict(genesis.credit_limits)
        self.labs: dict[bytes, LabState] = {}
        self.balances: dict[tuple[bytes, str], int] = {}
        self.offers: dict[tuple[bytes, int], Offer] = {}
        self.acks: dict[tuple[bytes, int], tuple[bytes, int]] = {}
        self.contributions: dict[tuple[bytes, bytes, str, str, str], int] = {}
        self.income: dict[tuple[bytes, str, str], int] = {}
        self.policies: dict[bytes, tuple[dict[str, int], int]] = {}
        self.amended: dict[tuple[bytes, int], tuple[int, bool]] = {}
        """(author, seq) of a corrected or voided entry -> (seq of its latest
        correction or its void, voided?)."""
        self.invalid: dict[tuple[bytes, int], tuple[str, str]] = {}
        self.pending: dict[bytes, tuple[int, Ref]] = {}
        self.waiting: dict[tuple[bytes, int], set[bytes]] = {}
        self.redacted = 0

    # -- state ---------------------------------------------------------------

    def lab(self, author: bytes) -> LabState:
        state = self.labs.get(author)
        if state is None:
            author = self._same.get(author, author)
            state = self.labs[author] = LabState(self.federation_id, self.roster, author)
            member = self.outcome.members.get(author)
            state.last = member.last if member else None
        return state

    def applied(self, author: bytes) -> int:
        """The last settled (applied, invalid or redacted) seq of ``author``'s feed."""
        state = self.labs.get(author)
        return state.seq if state else 0

    def lab_name(self, lab: bytes) -> str:
        """How people read ``lab``: its name in the roster in force (founders and
        admitted LABs, gone ones too), else the first 8 hex digits of its id. The one
        rule every report, page and command names LABs by."""
        return self.roster.get(lab) or lab.hex()[:8]

    def balance(self, lab: bytes, unit: str) -> int:
        return self.balances.get((lab, unit), 0)

    def outstanding(self, unit: str) -> int:
        return sum(o.amount for o in self.offers.values()
                   if o.unit == unit and o.state in OUTSTANDING)

    def check_invariant(self) -> None:
        """Raise :class:`InvariantError` unless balances + outstanding sum to 0 per unit."""
        for unit in self.units:
            total = sum(v for (_, u), v in self.balances.items() if u == unit)
            if total + self.outstanding(unit) != 0:
                raise InvariantError(f"unit {unit}: balances {total} + outstanding "
                                     f"{self.outstanding(unit)} != 0")

    # -- feeding -------------------------------------------------------------

    def receive(self, entry: Entry | bytes, *, _trusted: bool = False) -> None:
        """Take one held entry (any order across feeds, seq order within a feed): an
        :class:`Entry`, or its bytes, read as :func:`~protocol.entry.decode_entry`
        reads them (raising :class:`~protocol.errors.ProtocolError` for bad bytes).
        Either way the ledger reads the same :data:`Arrival` and applies the same
        rules.

        ``_trusted`` (private, as h11's ``_parsed``): the bytes were read back from
        the node's own store, which holds only entries that passed ``decode_entry``,
        so they are read without its checks (``decode_entry(raw, _trusted=True)``).

        Entries already settled, or behind a pending entry of their feed, are
        ignored here: the feed is re-read through ``feeds`` when it resumes.

        ``feeds`` need not hold the entry yet (a node checks its own entry here
        before it stores it): when the entry makes the ledger settle again
        (:meth:`_replay`), it is taken again if the feeds did not bring it back.
        """
        came = _arrival(entry, _trusted)
        author, seq = came[0], came[1]
        if came[2] in GOVERNANCE:
            self._hold(came)
        while True:
            if self._replay_due:  # (a decision held even where the entry is not due)
                self._replay()
            # Is it the entry due next in its feed? (its author in the roster, the
            # feed not waiting, seq one past the feed's head, not past a fork)
            if author not in self.roster or author in self.pending:
                return
            lab = self.labs.get(author)
            if seq != (lab.seq + 1 if lab else 1) or (self.frozen
                                                     and self._is_frozen(author, seq)):
                return
            woken = self._settle(came, lab or self.lab(author))
            if woken:
                self._resume(woken)
            if not self._replay_due:
                return

    def catch_up(self, author: bytes) -> None:
        """Settle every held entry of ``author``'s feed that can be settled now."""
        self._resume([author])
        if self._replay_due:
            self._replay()

    def _replay(self) -> None:
        """Settle every feed again from its start under the governance outcome now in
        force, keeping the governance entries settled: a decision (an admission, a
        removal's cut, a key, a rule) may change how entries already settled count,
        and the ledger must be what it would be had the decision been known from the
        start. Repeats while settling again finds a further decision."""
        while self._replay_due:
            self._replay_due = False
            acts, outcome = self.acts, self.outcome
            self.__init__(self.genesis, self.feeds, self.frozen)  # type: ignore[misc]
            self.acts = acts
            self._follow(outcome)
            self._resume(sorted(self.roster))

    def _resume(self, authors: list[bytes]) -> None:
        work = list(authors)
        while work:
            author = work.pop()
            if author not in self.roster:
                continue
            self.pending.pop(author, None)
            for entry in self.feeds.entries_after(author, self.applied(author)):
                if entry.seq != self.applied(author) + 1 or self._is_frozen(author, entry.seq):
                    break
                work += self._settle(_arrival(entry), self.lab(author))
                if author in self.pending:
                    break

    def _is_frozen(self, author: bytes, seq: int) -> bool:
        fork = self.frozen.get(author)
        return fork is not None and seq >= fork and not self.is_repaired(author, fork)

    def is_repaired(self, author: bytes, fork: int) -> bool:
        """Whether a repair in force keeps an entry of ``author``'s feed before its
        fork at ``fork``, the entry held with the hash the repair names: the feed is
        then no longer frozen by that fork."""
        repair = self.outcome.repairs.get(author)
        if repair is None or repair.seq >= fork:
            return False
        if repair.seq == 0:
            return True
        known = self._kept.get(author)
        if known is None or known[0] != repair or not known[1]:
            entry = self.feeds.entry(author, repair.seq)
            known = self._kept[author] = (repair, entry is not None
                                          and entry.hash == repair.hash)
        return known[1]

    # -- governance ----------------------------------------------------------

    def _hold(self, came: Arrival) -> None:
        """Take a governance entry held (received, settled or not) into the decisions,
        when its body is one of its kind's (:func:`~federation.kinds.body_of`, and
        a proposal's action fields): governance reads every held governance entry,
        whatever waits in the feeds around it, so its outcome is a function of the
        feeds held. When the outcome changes how settled entries count, the ledger
        settles again (:meth:`_replay`)."""
        author, seq, kind, ts_us, data, header_bytes, digest = came
        if (author, seq) in self.acts or data is None:
            return
        if self.frozen and self._is_frozen(author, seq):
            return  # (a forked feed's tail counts for nothing, governance included)
        try:
            body = body_of(kind, data, author, seq)
        except RuleViolation:
            return
        if body is None or (kind == "proposal.made" and action_problem(body)):
            return
        self.acts[(author, seq)] = Act(author, seq, digest or sha256(header_bytes), ts_us,
                                       kind, body)
        before = self.outcome
        outcome = decide(self.genesis, self.acts.values())
        if outcome.effects(keys=False) != before.effects(keys=False) or (
                self._settled_problems(outcome) != self._settled_problems(before)):
            self._replay_due = True
        self._follow(outcome)

    def _settled_problems(self, outcome: Outcome) -> dict[tuple[bytes, int], tuple[str, str]]:
        return {k: v for k, v in outcome.problems.items() if k[1] <= self.applied(k[0])}

    def _follow(self, outcome: Outcome) -> None:
        """Make ``outcome`` the governance in force: the roster, the cuts."""
        self.outcome = outcome
        for lab in [lab for lab in self.roster if lab not in outcome.members]:
            del self.roster[lab]
        for lab, member in outcome.members.items():
            self.roster[lab] = member.name
            self._same.setdefault(lab, lab)
            state = self.labs.get(lab)
            if state is not None:
                state.last = member.last

    def _settle(self, came: Arrival, lab: LabState) -> list[bytes]:
        """Apply, reject or park one entry of ``lab``'s feed; return the feeds its
        settling wakes."""
        _, seq, kind, ts_us, data, header_bytes, digest = came
        author = lab.author
        try:
            body = body_of(kind, data, author, seq)  # a bad body comes before any rule
            lab.check(kind, body, _schema_checked=True)
            if kind in GOVERNANCE and body is not None and (author, seq) not in self.acts:
                self._hold(came)
            if lab.last is not None and seq > lab.last:
                raise RuleViolation("removed", f"{where(author, seq)} comes after the last "
                                    f"entry of this LAB that counts ({lab.last})")
            effect = self._evaluate(author, seq, kind, body, ts_us, digest, header_bytes)
        except PendingReference as p:
            missing: Ref = p.missing  # type: ignore[assignment]
            self.pending[author] = (seq, missing)
            self.waiting.setdefault((missing.author, missing.seq), set()).add(author)
            return []
        except RuleViolation as v:
            return self._reject(lab, seq, v)
        lab.apply(kind, body)
        if body is None:
            self.redacted += 1
        effect()
        return self._woken(author, seq) if self.waiting else []

    def _reject(self, lab: LabState, seq: int, v: RuleViolation) -> list[bytes]:
        """Settle entry ``seq`` of ``lab``'s feed as invalid; return the feeds it wakes."""
        lab.seq += 1
        self.invalid[(lab.author, seq)] = (v.code, v.message)
        return self._woken(lab.author, seq)

    def _woken(self, author: bytes, seq: int) -> list[bytes]:
        """The feeds that were waiting for (author, seq), now settled (sorted)."""
        if not self.waiting:
            return []
        return sorted(self.waiting.pop((author, seq), ()))

    # -- rules ---------------------------------------------------------------

    def validate(self, author: bytes, kind: str, body: Mapping[str, Any], ts_us: int) -> None:
        """Check an entry ``author`` is about to sign, at the head the ledger holds.

        Raises :class:`RuleViolation`, or :class:`PendingReference` when it names
        an entry this ledger does not hold (an honest node does not sign that).
        """
        lab, seq = self.lab(author), self.applied(author) + 1
        lab.check(kind, body)
        if lab.last is not None and seq > lab.last:
            raise RuleViolation("removed", "this LAB's feed no longer counts in the "
                                "federation (it left or was removed)")
        if kind in GOVERNANCE:
            if kind == "proposal.voted":
                self._referenced(Ref.from_value(body["proposal"]))
            act = Act(author, seq, b"\0" * 32, ts_us, kind, body)
            problem = decide(self.genesis, [*self.acts.values(), act]).problems.get(
                (author, seq))
            if problem:
                raise RuleViolation(*problem)
            return
        self._evaluate(author, seq, kind, body, ts_us, b"\0" * 32, b"")

    def _evaluate(self, author: bytes, seq: int, kind: str, body: Mapping[str, Any] | None,
                  ts_us: int, digest: bytes | None, header_bytes: bytes) -> Effect:
        """Cross-feed rules for one entry; returns its effect or raises
        :class:`RuleViolation` or :class:`PendingReference`. ``digest`` is the entry
        hash, or None for the hash of ``header_bytes``.

        The caller has checked the body against its kind's schema (``check_body``)
        and the rules of the author's own feed (``LabState``).
        """
        if body is None:
            return _no_effect
        if kind == "contribution.recorded":
            key, minutes = self._contribution(author, body, ts_us)
            return partial(self.contributions.__setitem__, key, minutes)
        if kind == "transfer.offered":
            return offer(self, author, seq, body, ts_us, digest or sha256(header_bytes))
        if kind in ("transfer.accepted", "transfer.declined"):
            return answer(self, author, seq, kind, body, digest or sha256(header_bytes))
        if kind == "transfer.reclaimed":
            return reclaim(self, author, body)
        if kind == "contribution.acknowledged":
            return self._acknowledge(author, seq, body)
        if kind == "income.recorded":
            self._unit(body["unit"])
            key3 = (author, body["period"], body["unit"])
            income = check_total(self.income.get(key3, 0) + body["amount"],
                                 f"the income of {body['period']} in {body['unit']}")
            return partial(self.income.__setitem__, key3, income)
        if kind == "policy.set":
            weights, ratio = dict(body["weights"]), body["care_ratio"]
            return partial(self.policies.__setitem__, author, (weights, ratio))
        if kind in AMENDING:
            return amend(self, author, seq, kind, body)
        if kind in GOVERNANCE:
            if kind == "proposal.voted":
                self._referenced(Ref.from_value(body["proposal"]))
            problem = self.outcome.problems.get((author, seq))
            if problem:
                raise RuleViolation(*problem)
        return _no_effect

    def _contribution(self, author: bytes, body: Mapping[str, Any], ts_us: int,
                      ) -> tuple[tuple[bytes, bytes, str, str, str], int]:
        """The contributions row of ``author``'s contribution ``body`` and its minutes
        with it. Raises :class:`RuleViolation` (``out-of-range``) past the range."""
        key = self.contribution_key(author, body, ts_us)
        return key, check_total(self.contributions.get(key, 0) + body["minutes"],
                                "the contributed minutes")

    @staticmethod
    def contribution_key(author: bytes, body: Mapping[str, Any], ts_us: int,
                         ) -> tuple[bytes, bytes, str, str, str]:
        """The contributions row a contribution ``body`` of ``author`` counts in: its
        LAB, the LAB it was for, member, stream, and the month of its ``date``, else
        of ``ts_us`` (the author's timestamp of the entry that recorded it)."""
        day = body.get("date")
        month = day[:7] if day is not None else month_of(ts_us)
        return (author, body.get("for_lab", b""), body["member"], body["stream"], month)

    def _unit(self, unit: str) -> None:
        if unit not in self.units:
            raise RuleViolation("unknown-unit", f"unit {unit!r} is not a federation unit")

    def _referenced(self, ref: Ref) -> Entry | None:
        """Raise PendingReference unless ``ref``'s target is settled; check its hash."""
        if ref.author not in self.roster:
            raise RuleViolation("bad-reference", f"reference to {short(ref.author)}, "
                                "which is not a member LAB")
        if ref.seq > self.applied(ref.author):
            raise PendingReference(ref, f"waits for {where(ref.author, ref.seq)}")
        return None

    def _check_hash(self, ref: Ref, actual: bytes) -> None:
        if actual != ref.hash:
            raise RuleViolation("bad-reference",
                                f"{where(ref.author, ref.seq)} has another hash than referenced")

    def _acknowledge(self, author: bytes, seq: int, body: Mapping[str, Any]) -> Effect:
        ref = Ref.from_value(body["contribution"])
        self._referenced(ref)
        key = (ref.author, ref.seq)
        if key in self.invalid:
            raise RuleViolation("bad-reference", "the acknowledged contribution is invalid")
        target = self._lookup(ref)
        self._check_hash(ref, target.hash)
        if target.kind != "contribution.recorded":
            raise RuleViolation("bad-reference", "the reference is not a contribution")
        fields = entry_body(target)
        if fields is not None and fields.get("for_lab") != author:
            raise RuleViolation("not-for-this-lab", "the contribution was not made for this LAB")
        if key in self.acks:
            raise RuleViolation("already-acknowledged", "this contribution was already "
                                "acknowledged")
        return partial(self.acks.__setitem__, key, (author, seq))

    def _lookup(self, ref: Ref) -> Entry:
        entry = self.feeds.entry(ref.author, ref.seq)
        if entry is None:
            raise PendingReference(ref, f"waits for {where(ref.author, ref.seq)}")
        return entry

    # -- the projected document, digest and snapshots ------------------------

    def document(self) -> dict[str, Any]:
        """The projected ledger as one canonical value: every list sorted, every map's
        keys in sorted order, of the ledger's own values (ids, counts, totals that
        :func:`~federation.kinds.check_total` keeps in range, text of checked
        bodies), so that :meth:`encode` packs it as it is."""
        doc = {
            "version": LEDGER_VERSION,
            "federation": self.federation_id,
            "heads": sorted([a, s.seq] for a, s in self.labs.items()),
            "labs": sorted([a, s.name, s.redactions] for a, s in self.labs.items()),
            "members": sorted([a, h, n] for a, s in self.labs.items()
                              for h, n in s.members.items()),
            "balances": sorted([a, u, v] for (a, u), v in self.balances.items()),
            "acks": sorted([c[0], c[1], a[0], a[1]] for c, a in self.acks.items()),
            "contributions": sorted([*k, v] for k, v in self.contributions.items()),
            "income": sorted([*k, v] for k, v in self.income.items()),
            "policies": sorted([a, dict(sorted(w.items())), r]
                               for a, (w, r) in self.policies.items()),
            "amended": sorted([a, s, by, v] for (a, s), (by, v) in self.amended.items()),
            "invalid": sorted([a, s, c, m] for (a, s), (c, m) in self.invalid.items()),
            "pending": sorted([a, s, r.as_list()] for a, (s, r) in self.pending.items()),
            "redacted": self.redacted,
            "forks": sorted([a, s] for a, s in self.frozen.items()),
            "offers": [self.offers[key].row() for key in sorted(self.offers)],
            "acts": [self.acts[key].row() for key in sorted(self.acts)],
            "roster": sorted(m.row() for m in self.outcome.members.values()),
            "proposals": sorted(p.row() for p in self.outcome.proposals.values()),
        }
        return dict(sorted(doc.items()))

    def encode(self) -> bytes:
        """Canonical bytes of :meth:`document`: the snapshot a node stores.

        :meth:`document` is built canonical, so the encoder's walk, which would only
        find nothing to change, is skipped (``_checked``; a test compares the bytes
        with the walk's over random federations)."""
        return canonical.encode(self.document(), _checked=True)

    def digest(self) -> bytes:
        """The state digest: SHA-256 of the canonical projected ledger."""
        return sha256(self.encode())

    @classmethod
    def restore(cls, genesis: Genesis, feeds: Feeds, data: bytes) -> Ledger:
        """Rebuild a ledger from :meth:`encode` bytes. Raises :class:`SnapshotError`
        when they are damaged or of another ledger version or federation (the caller
        then rebuilds from nothing)."""
        try:
            return cls._restore(genesis, feeds, data)
        except (ProtocolError, KeyError, TypeError, ValueError, IndexError) as e:
            raise SnapshotError(f"ledger snapshot: {e}") from None

    @classmethod
    def _restore(cls, genesis: Genesis, feeds: Feeds, data: bytes) -> Ledger:
        doc = canonical.decode(data, max_size=2**31, what="ledger snapshot")
        ledger = cls(genesis, feeds, {a: s for a, s in doc["forks"]})
        if doc["version"] != LEDGER_VERSION or doc["federation"] != ledger.federation_id:
            raise SnapshotError("snapshot of another ledger version or federation")
        ledger.acts = {(r[0], r[1]): Act.from_row(r) for r in doc["acts"]}
        ledger._follow(decide(genesis, ledger.acts.values()))
        for author, seq in doc["heads"]:
            ledger.lab(author).seq = seq
        for author, name, redactions in doc["labs"]:
            ledger.lab(author).name = name
            ledger.lab(author).redactions = redactions
        for author, handle, name in doc["members"]:
            ledger.lab(author).members[handle] = name
        ledger.balances = {(a, u): v for a, u, v in doc["balances"]}
        ledger.offers = {(r[0], r[1]): Offer.from_row(r) for r in doc["offers"]}
        ledger.acks = {(c0, c1): (a0, a1) for c0, c1, a0, a1 in doc["acks"]}
        ledger.contributions = {tuple(r[:5]): r[5] for r in doc["contributions"]}
        ledger.income = {tuple(r[:3]): r[3] for r in doc["income"]}
        ledger.policies = {a: (w, r) for a, w, r in doc["policies"]}
        ledger.amended = {(a, s): (by, v) for a, s, by, v in doc["amended"]}
        ledger.invalid = {(a, s): (c, m) for a, s, c, m in doc["invalid"]}
        for (author, seq), act in sorted(ledger.acts.items(), reverse=True):
            # A feed's departure (LabState.left): its first lab.left settled valid.
            state = ledger.labs.get(author)
            if (act.kind == "lab.left" and state is not None and seq <= state.seq
                    and (author, seq) not in ledger.invalid):
                state.left = seq
        for author, seq, ref in doc["pending"]:
            missing = Ref.from_value(ref)
            ledger.pending[author] = (seq, missing)
            ledger.waiting.setdefault((missing.author, missing.seq), set()).add(author)
        ledger.redacted = doc["redacted"]
        return ledger
