"""The federation over time: the roster, keys and rules in force, decided from the
proposals, votes, key rotations and departures in the feeds (DESIGN.md, "The
federation over time").

:func:`decide` is a pure function of those entries (:class:`Act`), so every node
that holds the same feeds, in whatever order they arrived, and the offline audit
decide the same :class:`Outcome`. The rules it keeps:

- **Order.** Proposals are decided one after another in the order they were made:
  by their author's timestamp, then by entry hash. Each proposal sees the roster and
  the rules that the proposals before it left.
- **Voting body.** The LABs in the roster when the proposal is decided, less those
  removed, those whose ``lab.left`` is timestamped at or before the proposal, and
  the LAB a removal, recovery or repair is about (its key cannot be trusted to
  speak for it).
- **Threshold.** A proposal passes with at least ``ceil(N/D * voters)`` yes votes
  (the rule in force, from the genesis: default 2/3). The proposer's proposal is
  its yes vote. It is rejected once so many voters said no that it cannot pass.
- **Votes.** A voter's first vote on a proposal counts (``already-voted`` after
  that); a vote from a LAB outside the voting body does not (``not-a-voter``), nor
  one timestamped more than ``expiry_days`` after the proposal (``vote-late``): a
  proposal not passed by then lapses.
- **Decided at.** A passed proposal takes effect at the timestamp of the vote that
  completed it (votes in timestamp order). A rule change applies to entries
  timestamped from then on; a change of threshold or expiry applies to proposals
  made from then on.
- **Effects.** ``admit`` adds a LAB (its key is its id, from seq 1); ``remove``
  names the last seq of the LAB's feed that counts; ``recover`` names a new key and
  the seq it signs from; ``repair`` names the entry a forked feed continues from,
  and a new key from the next seq; ``rule`` changes a credit limit, the threshold
  or the expiry. A passed proposal whose effect cannot apply (admit a member,
  remove a LAB already gone, a unit that is not the federation's) is ``rejected``
  with that reason, and competing proposals are settled by the order above: the
  first to pass wins.
- **Own acts.** ``key.rotated`` (signed by the key in force) names the key that
  signs the feed from the next seq; ``lab.left`` is the LAB's last counted entry.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from federation.genesis import Genesis
from protocol.entry import Entry, Ref, check_signature, short, where
from protocol.errors import ProtocolError

GOVERNANCE = frozenset({"proposal.made", "proposal.voted", "key.rotated", "lab.left"})
"""The kinds :func:`decide` reads."""
MEMBER, LEFT, REMOVED = "member", "left", "removed"
OPEN, PASSED, REJECTED, LAPSED = "open", "passed", "rejected", "lapsed"
ABOUT_A_LAB = frozenset({"remove", "recover", "repair"})
"""The actions whose LAB does not vote on them."""
DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class Act:
    """One governance entry, valid by its own feed's rules (:class:`~federation.kinds.LabState`)."""

    author: bytes
    seq: int
    hash: bytes
    ts_us: int
    kind: str
    body: Mapping[str, Any]

    def ref(self) -> Ref:
        return Ref(self.author, self.seq, self.hash)

    def row(self) -> list[Any]:
        return [self.author, self.seq, self.hash, self.ts_us, self.kind, dict(self.body)]

    @classmethod
    def from_row(cls, row: list[Any]) -> Act:
        return cls(row[0], row[1], row[2], row[3], row[4], row[5])


@dataclass(slots=True)
class Member:
    """A LAB of the roster: its name, state, the last seq of its feed that counts
    (None: all of it), and the keys that sign its feed, each from a seq."""

    lab: bytes
    name: str
    state: str = MEMBER
    last: int | None = None
    keys: list[tuple[int, int, bytes]] = field(default_factory=list)
    """(from seq, order, key), sorted: rotations have order 0, a recovery or repair
    decided later a higher one, so it wins over a rotation from the same seq."""
    left_us: int | None = None
    admitted: Ref | None = None
    gone_by: Ref | None = None
    """The ``lab.left`` entry or the removal proposal that ended its feed."""

    def key_at(self, seq: int) -> bytes:
        """The key in force for entry ``seq`` of this LAB's feed (O(log keys))."""
        if len(self.keys) == 1:
            return self.keys[0][2]
        i = bisect.bisect_right(self.keys, (seq, 2**62, b""))
        return self.keys[max(i - 1, 0)][2]

    def rotate(self, seq: int, key: bytes) -> None:
        """Take the ``key.rotated`` entry at ``seq`` of this LAB's feed: ``key`` signs
        from the next seq (the one place this rule is kept)."""
        entry = (seq + 1, 0, key)
        if entry not in self.keys:
            bisect.insort(self.keys, entry)

    def key(self) -> bytes:
        """The key in force for the next entry (the latest)."""
        return self.keys[-1][2] if self.keys else self.lab

    def active(self, ts_us: int) -> bool:
        """In the roster and not gone at ``ts_us``."""
        return self.state != REMOVED and (self.left_us is None or ts_us < self.left_us)

    def row(self) -> list[Any]:
        return [self.lab, self.name, self.state, self.last,
                [[f, o, k] for f, o, k in self.keys]]


@dataclass(slots=True)
class Proposal:
    """A proposal, its voting body and what became of it."""

    ref: Ref
    action: str
    body: Mapping[str, Any]
    ts_us: int
    voters: tuple[bytes, ...] = ()
    needed: int = 0
    votes: dict[bytes, str] = field(default_factory=dict)
    state: str = OPEN
    reason: str = ""
    decided_us: int | None = None
    expires_us: int = 0

    def state_at(self, now_us: int) -> str:
        """``state``, or ``lapsed`` for an open proposal past its expiry at ``now_us``
        (a clock's judgement, shown to people, never part of the ledger)."""
        return LAPSED if self.state == OPEN and now_us > self.expires_us else self.state

    def row(self) -> list[Any]:
        return [self.ref.author, self.ref.seq, self.state, self.needed, self.decided_us,
                sorted([lab, v] for lab, v in self.votes.items())]


@dataclass
class Outcome:
    """What :func:`decide` decided: the roster, the rules over time, every proposal,
    and why governance entries that do not count do not."""

    members: dict[bytes, Member]
    proposals: dict[tuple[bytes, int], Proposal] = field(default_factory=dict)
    problems: dict[tuple[bytes, int], tuple[str, str]] = field(default_factory=dict)
    limits: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """unit -> [(in force from ts_us, credit limit)] of passed rule changes, in order."""
    repairs: dict[bytes, Ref] = field(default_factory=dict)
    """LAB -> the entry its forked feed continues from."""
    recoveries: dict[bytes, int] = field(default_factory=dict)
    """LAB -> the seq from which its recovered key signs (the latest recovery)."""
    units: frozenset[str] = frozenset()
    """The federation's units (a rule change names one of them)."""

    def effects(self, keys: bool = True) -> tuple[Any, ...]:
        """What the decisions change: the roster, the limits and the repairs, and
        (``keys``) the keys. The ledger settles entries again when the rest changes;
        keys are not its business (signatures are checked before it), so a key
        rotation costs it nothing."""
        return (sorted(m.row() if keys else m.row()[:4] for m in self.members.values()),
                sorted(self.limits.items()), sorted(self.repairs.items()),
                sorted(self.recoveries.items()) if keys else ())

    def key_at(self, lab: bytes, seq: int) -> bytes | None:
        """The key in force for entry ``seq`` of ``lab``'s feed; None outside the
        roster."""
        member = self.members.get(lab)
        return member.key_at(seq) if member else None


def founders(genesis: Genesis) -> dict[bytes, Member]:
    """The genesis roster, each LAB signing with its id."""
    return {lab.id: Member(lab.id, lab.name, keys=[(1, 0, lab.id)]) for lab in genesis.labs}


def decide(genesis: Genesis, acts: Iterable[Act]) -> Outcome:
    """The roster, keys, rules and proposals that ``acts`` make (see the module).

    Pure and deterministic: the same set of acts in any order gives the same
    :class:`Outcome`. Never raises for any content of a schema-checked act.
    """
    out = Outcome(founders(genesis), units=frozenset(genesis.units))
    acts = sorted(acts, key=lambda a: (a.author, a.seq))
    first_left: dict[bytes, int] = {}
    for act in acts:
        if act.kind == "lab.left":
            first_left.setdefault(act.author, act.seq)
    # What a feed says after its lab.left does not count (LabState: "left"), nor its
    # first entry, which must be its lab.joined.
    acts = [a for a in acts if a.seq > 1 and a.seq <= first_left.get(a.author, a.seq)]
    proposals: list[Act] = []
    votes: dict[tuple[bytes, int], list[Act]] = {}
    rotations: list[Act] = []
    seen_votes: set[tuple[bytes, bytes, int]] = set()
    for act in acts:
        if act.kind == "proposal.made":
            proposals.append(act)
        elif act.kind == "proposal.voted":
            target = Ref.from_value(act.body["proposal"])
            once = (act.author, target.author, target.seq)
            if once in seen_votes:
                out.problems[(act.author, act.seq)] = (
                    "already-voted", f"{short(act.author)} already voted on "
                    f"{where(target.author, target.seq)}")
                continue
            seen_votes.add(once)
            votes.setdefault((target.author, target.seq), []).append(act)
        elif act.kind == "key.rotated":
            rotations.append(act)
    lefts = {a.author: a for a in reversed(acts) if a.kind == "lab.left"}  # (the first)
    _apply_own(out, lefts, rotations)
    threshold, expiry_days = genesis.threshold, genesis.expiry_days
    rules: list[tuple[int, str, Any]] = []  # (from ts, rule, value) of passed rule changes
    for act in sorted(proposals, key=lambda a: (a.ts_us, a.hash)):
        for _, rule, value in [r for r in rules if r[0] <= act.ts_us]:
            if rule == "threshold":
                threshold = value
            else:
                expiry_days = value
        rules = [r for r in rules if r[0] > act.ts_us]
        passed = _decide_one(out, act, votes.get((act.author, act.seq), []), threshold,
                             expiry_days)
        if passed is not None:
            rules += passed
            rules.sort()
        _apply_own(out, lefts, rotations)
    for key, acts_ in votes.items():
        if key not in out.proposals:
            for vote in acts_:
                out.problems.setdefault((vote.author, vote.seq), (
                    "bad-reference", f"{where(*key)} is not a proposal that counts"))
    return out


def decide_signed(genesis: Genesis, acts: Mapping[tuple[bytes, int], Act],
                  entry_of: Callable[[bytes, int], Entry | None],
                  ) -> tuple[Outcome, set[tuple[bytes, int]]]:
    """:func:`decide` over the acts whose entries are signed by the key in force at
    them, as decided by acts so signed themselves: the least such set, grown from
    the genesis keys (a rotation signed by a LAB's id, then what its new key signs,
    and so on), so a set of forged entries cannot vouch for one another's keys (the
    offline audit: a node takes only entries under keys already in force).
    ``entry_of`` gives an act's entry. Returns the outcome and the acts left out."""
    trusted: set[tuple[bytes, int]] = set()
    for _ in range(len(acts) + 2):
        outcome = decide(genesis, [acts[k] for k in sorted(trusted)])
        signed = {k for k, act in acts.items() if _signed(entry_of(act.author, act.seq),
                                                          outcome.key_at(act.author, act.seq))}
        if signed == trusted:
            break
        trusted = signed
    else:  # (no fixed point: keep only what every last round agreed on)
        trusted &= signed
    outcome = decide(genesis, [acts[k] for k in sorted(trusted)])
    return outcome, set(acts) - trusted


def _signed(entry: Entry | None, key: bytes | None) -> bool:
    if entry is None or key is None:
        return False
    try:
        check_signature(entry, key)
    except ProtocolError:
        return False
    return True


def _counts(out: Outcome, lab: bytes, seq: int) -> bool:
    member = out.members.get(lab)
    return member is not None and (member.last is None or seq <= member.last)


def _apply_own(out: Outcome, lefts: Mapping[bytes, Act], rotations: list[Act]) -> None:
    """Apply the departures and key rotations of the LABs now in the roster."""
    for lab, act in lefts.items():
        member = out.members.get(lab)
        if member is not None and member.state == MEMBER and _counts(out, lab, act.seq):
            member.state, member.left_us, member.gone_by = LEFT, act.ts_us, act.ref()
            member.last = act.seq if member.last is None else min(member.last, act.seq)
    for act in rotations:
        member = out.members.get(act.author)
        if member is not None and _counts(out, act.author, act.seq):
            member.rotate(act.seq, act.body["key"])


def _decide_one(out: Outcome, act: Act, votes: list[Act], threshold: tuple[int, int],
                expiry_days: int) -> list[tuple[int, str, Any]] | None:
    """Decide one proposal; apply its effect when it passes. Returns the rule changes
    it makes (for the proposals after it), or None."""
    key = (act.author, act.seq)
    if not _counts(out, act.author, act.seq) or not out.members[act.author].active(act.ts_us):
        out.problems[key] = ("not-a-member", "the proposer is not a member LAB at this entry")
        for vote in votes:
            out.problems[(vote.author, vote.seq)] = (
                "bad-reference", f"{where(*key)} is not a proposal that counts")
        return None
    action = act.body["action"]
    target = act.body.get("lab") if action in ABOUT_A_LAB else None
    voters = tuple(sorted(lab for lab, m in out.members.items()
                          if m.active(act.ts_us) and lab != target))
    n, d = threshold
    needed = max(1, -(-n * len(voters) // d))
    expires = act.ts_us + expiry_days * DAY_US
    proposal = out.proposals[key] = Proposal(act.ref(), action, act.body, act.ts_us, voters,
                                             needed, expires_us=expires)
    reason = _effect(out, act, 0, check_only=True)
    if reason is not None:  # (a competing proposal decided before it got there first)
        proposal.state, proposal.reason = REJECTED, reason
        return None
    yes: list[tuple[int, bytes]] = []
    no = 0
    if act.author in voters:
        proposal.votes[act.author] = "yes"
        yes.append((act.ts_us, act.author))
    for vote in votes:
        vkey = (vote.author, vote.seq)
        if vote.author == act.author:
            out.problems[vkey] = ("already-voted", "a proposal is its proposer's yes vote")
        elif Ref.from_value(vote.body["proposal"]).hash != act.hash:
            out.problems[vkey] = ("bad-reference", f"{where(*key)} has another hash "
                                  "than referenced")
        elif not _counts(out, vote.author, vote.seq):
            out.problems[vkey] = ("removed", "the voter's feed does not count here")
        elif vote.author not in voters:
            out.problems[vkey] = ("not-a-voter", f"{short(vote.author)} does not vote on "
                                  f"{where(*key)}")
        elif vote.ts_us > expires:
            out.problems[vkey] = ("vote-late", f"{where(*key)} lapsed before this vote")
        else:
            proposal.votes[vote.author] = vote.body["vote"]
            if vote.body["vote"] == "yes":
                yes.append((vote.ts_us, vote.author))
            else:
                no += 1
    if len(yes) >= needed:
        proposal.decided_us = max(act.ts_us, sorted(yes)[needed - 1][0])
        _effect(out, act, proposal.decided_us)
        proposal.state = PASSED
        return _rules_of(act, proposal.decided_us)
    if no > len(voters) - needed:
        proposal.state, proposal.reason = REJECTED, "voted down"
    return None


def _rules_of(act: Act, at: int) -> list[tuple[int, str, Any]]:
    body = act.body
    out: list[tuple[int, str, Any]] = []
    if body["action"] == "rule":
        if "threshold" in body:
            out.append((at, "threshold", (body["threshold"][0], body["threshold"][1])))
        if "expiry_days" in body:
            out.append((at, "expiry_days", body["expiry_days"]))
    return out


def _effect(out: Outcome, act: Act, at: int, check_only: bool = False) -> str | None:
    """Apply a passed proposal's effect, or with ``check_only`` only say why it
    cannot apply to the roster as it stands (None: it can)."""
    body, action = act.body, act.body["action"]
    lab: bytes = body.get("lab", b"")
    member = out.members.get(lab)
    if action == "admit":
        if member is not None:
            return "the LAB is already in the roster"
        if check_only:
            return None
        out.members[lab] = Member(lab, body["name"], keys=[(1, 0, lab)], admitted=act.ref())
        return None
    if action == "rule":
        if "unit" in body and body["unit"] not in out.units:
            return f"{body['unit']} is not a unit of the federation"
        if check_only:
            return None
        if "unit" in body:
            out.limits.setdefault(body["unit"], []).append((at, body["credit_limit"]))
        return None
    if member is None:
        return "the LAB is not in the roster"
    if member.state == REMOVED:
        return "the LAB was already removed"
    if action == "repair" and Ref.from_value(body["keep"]).author != lab:
        return "the entry to keep is not in the repaired LAB's feed"
    if check_only:
        return None
    if action == "remove":
        member.state, member.gone_by = REMOVED, act.ref()
        member.last = body["last_seq"] if member.last is None else min(member.last,
                                                                      body["last_seq"])
        return None
    order = max(o for _, o, _ in member.keys) + 1
    if action == "recover":
        member.keys = [k for k in member.keys if k[0] < body["from_seq"]]
        member.keys.append((body["from_seq"], order, body["key"]))
        out.recoveries[lab] = body["from_seq"]
        return None
    keep = Ref.from_value(body["keep"])  # repair
    member.keys = [k for k in member.keys if k[0] <= keep.seq]
    member.keys.append((keep.seq + 1, order, body["key"]))
    out.repairs[lab] = keep
    return None
