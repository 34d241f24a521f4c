"""The federation over time, in the ledger: proposals and votes, admission, removal
and departure, keys, rule changes, and the same outcome in every arrival order."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.audit import audit_bundle
from federation.bundle import BundleWriter
from federation.errors import RuleViolation
from federation.genesis import Genesis
from federation.governance import DAY_US, LAPSED, LEFT, OPEN, PASSED, REJECTED, REMOVED
from federation.intake import KeysInForce
from federation.ledger import Ledger
from protocol.entry import Entry, sign_entry
from protocol.keys import Signer
from tests.test_ledger import (
    LIMIT,
    T0,
    Author,
    Held,
    interleave,
    project,
    random_history,
    world,
)

S = 1_000_000


def newcomer(genesis: Genesis, n: int = 9) -> Author:
    return Author(Signer.from_seed(bytes([n]) * 32), genesis.federation_id)


def propose(a: Author, ts: int, action: str, **fields: object) -> Entry:
    return a.write("proposal.made", {"action": action, **fields}, ts)


def vote(a: Author, proposal: Entry, ts: int, choice: str = "yes") -> Entry:
    return a.write("proposal.voted", {"proposal": proposal.ref.as_list(), "vote": choice}, ts)


def joins(genesis: Genesis, a: Author, name: str, ts: int) -> None:
    a.write("lab.joined", {"federation": genesis.federation_id, "name": name}, ts)
    a.write("member.added", {"handle": "m", "name": "M"}, ts)


def every_order(genesis: Genesis, authors: list[Author], tries: int = 6) -> Ledger:
    """The ledger of the feeds in order, checked against reversed and shuffled
    arrival orders (same document), and against its own snapshot."""
    rng = random.Random(len(authors))
    first = project(genesis, [e for a in authors for e in a.entries])
    document = first.document()
    assert project(genesis, [e for a in reversed(authors) for e in a.entries]).document() \
        == document
    for _ in range(tries):
        assert project(genesis, interleave(rng, authors)).document() == document
    assert Ledger.restore(genesis, first.feeds, first.encode()).document() == document
    return first


def test_two_of_three_admit_a_lab_that_then_trades_like_a_founder() -> None:
    genesis, (a, b, c) = world(3)
    n = newcomer(genesis)
    p = propose(a, T0 + S, "admit", lab=n.signer.public_key, name="Nueva")
    joins(genesis, n, "Nueva", T0 + 3 * S)
    offer = n.write("transfer.offered", {"to": a.signer.public_key, "amount": 300,
                                         "unit": "JXC"}, T0 + 4 * S)
    a.write("transfer.accepted", {"offer": offer.ref.as_list()}, T0 + 5 * S)
    open_ = project(genesis, [e for x in (a, b, c, n) for e in x.entries])
    assert n.signer.public_key not in open_.roster  # one vote of the three: still open
    assert open_.outcome.proposals[(p.author, p.seq)].state == OPEN
    assert open_.balance(a.signer.public_key, "JXC") == 0  # (its answer waits for the offer)

    vote(b, p, T0 + 2 * S)
    ledger = every_order(genesis, [a, b, c, n])
    proposal = ledger.outcome.proposals[(p.author, p.seq)]
    assert (proposal.state, proposal.needed, proposal.decided_us) == (PASSED, 2, T0 + 2 * S)
    assert ledger.roster[n.signer.public_key] == "Nueva"
    assert ledger.balance(n.signer.public_key, "JXC") == -300
    assert ledger.balance(a.signer.public_key, "JXC") == 300
    assert not ledger.invalid
    ledger.check_invariant()


def test_the_deciding_vote_counts_before_the_feeds_hold_it() -> None:
    # A node checks its own entry (Ledger.receive) before it stores it. The vote that
    # passes an admission makes the ledger settle every feed again, from feeds that
    # do not hold the vote yet: the vote is settled all the same.
    genesis, (a, b, c) = world(3)
    n = newcomer(genesis)
    p = propose(a, T0 + S, "admit", lab=n.signer.public_key, name="Nueva")
    held = Held()
    ledger = Ledger(genesis, held)
    for entry in [*a.entries, *b.entries, *c.entries]:
        held.add(entry)
        ledger.receive(entry)
    v = vote(b, p, T0 + 2 * S)
    ledger.receive(v)
    assert ledger.applied(b.signer.public_key) == v.seq
    assert ledger.lab_name(n.signer.public_key) == "Nueva"
    held.add(v)
    assert ledger.document() == project(genesis, [*a.entries, *b.entries, *c.entries]
                                        ).document()


def test_votes_that_do_not_count_and_the_ways_a_proposal_ends() -> None:
    genesis, (a, b, c) = world(3)
    outsider = newcomer(genesis, 7)
    p = propose(a, T0, "rule", unit="JXC", credit_limit=9_000)
    late = propose(b, T0 + S, "rule", threshold=[1, 1])
    down = propose(c, T0 + 2 * S, "admit", lab=outsider.signer.public_key, name="X")
    vote(a, p, T0 + 3 * S)  # its own proposal: already its yes
    vote(a, late, T0 + 31 * DAY_US + S)  # after the expiry
    vote(a, down, T0 + 3 * S, "no")
    vote(b, down, T0 + 3 * S, "no")
    vote(a, down, T0 + 4 * S)  # a second vote: the first counts
    ledger = every_order(genesis, [a, b, c])
    states = {key: prop.state for key, prop in ledger.outcome.proposals.items()}
    assert states == {(p.author, p.seq): OPEN, (late.author, late.seq): OPEN,
                      (down.author, down.seq): REJECTED}
    codes = sorted(code for code, _ in ledger.invalid.values())
    assert codes == ["already-voted", "already-voted", "vote-late"]
    assert ledger.outcome.proposals[(late.author, late.seq)].state_at(T0 + 40 * DAY_US) \
        == LAPSED


def test_removal_cuts_the_feed_and_offers_to_the_removed_lab_come_back() -> None:
    genesis, (a, b, c) = world(3)
    lab_c = c.signer.public_key
    offer = a.write("transfer.offered", {"to": lab_c, "amount": 500, "unit": "JXC"}, T0)
    c_offer = c.write("transfer.offered", {"to": b.signer.public_key, "amount": 200,
                                           "unit": "JXC"}, T0)
    last = len(c.entries)
    p = propose(a, T0 + S, "remove", lab=lab_c, last_seq=last)
    vote(b, p, T0 + 2 * S)
    vote(c, p, T0 + 2 * S, "no")  # (after its last counted entry; nor a voter on it)
    late = c.write("transfer.accepted", {"offer": offer.ref.as_list()}, T0 + 3 * S)
    b.write("transfer.accepted", {"offer": c_offer.ref.as_list()}, T0 + 3 * S)
    a.write("transfer.reclaimed", {"offer": offer.ref.as_list(), "decline": p.ref.as_list()},
            T0 + 4 * S)
    ledger = every_order(genesis, [a, b, c])
    assert ledger.outcome.members[lab_c].state == REMOVED
    assert ledger.invalid[(lab_c, late.seq - 1)][0] == "removed"
    assert ledger.invalid[(lab_c, late.seq)][0] == "removed"
    assert ledger.balance(a.signer.public_key, "JXC") == 0  # reclaimed
    assert ledger.balance(lab_c, "JXC") == -200  # its balance stays on the books
    assert ledger.balance(b.signer.public_key, "JXC") == 200
    ledger.check_invariant()


def test_a_lab_that_leaves_counts_to_its_departure() -> None:
    genesis, (a, b, c) = world(3)
    offer = a.write("transfer.offered", {"to": c.signer.public_key, "amount": 50,
                                         "unit": "JXC"}, T0)
    gone = c.write("lab.left", {"note": "merging"}, T0 + S)
    c.write("member.added", {"handle": "z", "name": "Z"}, T0 + 2 * S)
    a.write("transfer.reclaimed", {"offer": offer.ref.as_list(),
                                   "decline": gone.ref.as_list()}, T0 + 3 * S)
    p = propose(a, T0 + 4 * S, "rule", expiry_days=10)  # two voters now: both needed
    ledger = every_order(genesis, [a, b, c])
    assert ledger.outcome.members[c.signer.public_key].state == LEFT
    assert ledger.invalid[(c.signer.public_key, gone.seq + 1)][0] == "left"
    assert ledger.balance(a.signer.public_key, "JXC") == 0
    assert ledger.outcome.proposals[(p.author, p.seq)].needed == 2



def test_a_ledger_restored_after_a_departure_judges_later_entries_alike() -> None:
    # A snapshot does not hold LabState.left: the restored ledger finds it again from
    # the lab.left act, so what the LAB writes after it is invalid for the same
    # reason ('left', not 'removed') and the digest is the same as from nothing.
    genesis, (a, b, c) = world(3)
    c.write("lab.left", {}, T0 + S)
    before = project(genesis, [e for x in (a, b, c) for e in x.entries])
    restored = Ledger.restore(genesis, before.feeds, before.encode())
    late = c.write("member.added", {"handle": "z", "name": "Z"}, T0 + 2 * S)
    restored.receive(late)
    fresh = project(genesis, [e for x in (a, b, c) for e in x.entries])
    assert restored.invalid[(late.author, late.seq)][0] == "left"
    assert restored.document() == fresh.document()
    with pytest.raises(RuleViolation) as refused:
        Ledger.restore(genesis, before.feeds, before.encode()).validate(
            c.signer.public_key, "member.added", {"handle": "y", "name": "Y"}, T0 + 3 * S)
    assert refused.value.code == "left"

def test_keys_follow_rotations_and_recoveries() -> None:
    genesis, (a, b, c) = world(3)
    k1, k2 = Signer.from_seed(b"\x01" * 32).public_key, Signer.from_seed(b"\x02" * 32).public_key
    rotated = a.write("key.rotated", {"key": k1}, T0)
    p = propose(b, T0 + S, "recover", lab=a.signer.public_key, key=k2, from_seq=rotated.seq + 3)
    vote(c, p, T0 + 2 * S)
    ledger = every_order(genesis, [a, b, c])
    keys = ledger.outcome
    lab_a = a.signer.public_key
    assert keys.key_at(lab_a, rotated.seq) == lab_a
    assert keys.key_at(lab_a, rotated.seq + 1) == k1
    assert keys.key_at(lab_a, rotated.seq + 3) == k2
    assert keys.key_at(lab_a, 10**9) == k2
    assert keys.key_at(b"\x09" * 32, 1) is None


def test_a_credit_limit_raised_by_vote_applies_from_the_deciding_vote() -> None:
    genesis, (a, b, c) = world(3)
    lab_b = b.signer.public_key
    p = propose(a, T0, "rule", unit="JXC", credit_limit=3 * LIMIT)
    before = a.write("transfer.offered", {"to": lab_b, "amount": 2 * LIMIT, "unit": "JXC"},
                     T0 + S)
    vote(c, p, T0 + 2 * S)
    after = a.write("transfer.offered", {"to": lab_b, "amount": 2 * LIMIT, "unit": "JXC"},
                    T0 + 3 * S)
    ledger = every_order(genesis, [a, b, c])
    assert ledger.invalid[(a.signer.public_key, before.seq)][0] == "over-credit-limit"
    assert (a.signer.public_key, after.seq) not in ledger.invalid
    assert ledger.balance(a.signer.public_key, "JXC") == -2 * LIMIT


def test_a_rule_for_a_unit_the_federation_lacks_is_rejected() -> None:
    genesis, (a, b, c) = world(3)
    p = propose(a, T0, "rule", unit="EUR", credit_limit=10)
    vote(b, p, T0 + S)
    ledger = every_order(genesis, [a, b, c])
    proposal = ledger.outcome.proposals[(p.author, p.seq)]
    assert (proposal.state, proposal.reason) == (REJECTED, "EUR is not a unit of the federation")
    assert not ledger.outcome.limits


def test_competing_proposals_the_first_made_wins() -> None:
    genesis, (a, b, c) = world(3)
    n = newcomer(genesis)
    first = propose(b, T0 + S, "admit", lab=n.signer.public_key, name="First")
    second = propose(a, T0 + 2 * S, "admit", lab=n.signer.public_key, name="Second")
    vote(c, second, T0 + 3 * S)  # the second passes its vote first...
    vote(c, first, T0 + 4 * S)  # ...but the first was made first
    ledger = every_order(genesis, [a, b, c])
    assert ledger.roster[n.signer.public_key] == "First"
    assert ledger.outcome.proposals[(a.signer.public_key, second.seq)].reason == \
        "the LAB is already in the roster"


def test_validate_refuses_what_governance_would_not_count() -> None:
    genesis, (a, b, c) = world(3)
    p = propose(a, T0, "rule", expiry_days=7)
    ledger = project(genesis, [e for x in (a, b, c) for e in x.entries])
    body = {"proposal": p.ref.as_list(), "vote": "yes"}
    ledger.validate(b.signer.public_key, "proposal.voted", body, T0 + S)
    for who, ts, code in ((a, T0 + S, "already-voted"), (b, T0 + 31 * DAY_US, "vote-late")):
        with pytest.raises(RuleViolation) as refused:
            ledger.validate(who.signer.public_key, "proposal.voted", body, ts)
        assert refused.value.code == code


def governed_history(rng: random.Random, genesis: Genesis, authors: list[Author],
                     steps: int) -> list[Author]:
    """A random history with proposals of every action passing, lapsing and
    competing, votes (some late, some twice), rotations, a departure, and newcomers
    that write whether or not they are admitted; returns every author."""
    newcomers = [newcomer(genesis, 40 + i) for i in range(3)]
    for i, n in enumerate(newcomers):
        joins(genesis, n, f"N{i}", T0)
    proposals: list[Entry] = []
    everyone = [*authors, *newcomers]
    for step in range(steps):
        ts = T0 + step * DAY_US // 4
        a = rng.choice(everyone)
        roll = rng.random()
        target = rng.choice(everyone)
        lab = target.signer.public_key
        if roll < 0.12:
            action = rng.choice(["admit", "admit", "remove", "recover", "rule", "rule"])
            fields: dict[str, object] = {
                "admit": {"lab": lab, "name": f"N{step}"},
                "remove": {"lab": lab, "last_seq": len(target.entries) + rng.randint(0, 3)},
                "recover": {"lab": lab, "key": bytes([step % 256]) * 32,
                            "from_seq": len(target.entries) + 1},
                "rule": rng.choice([{"unit": "JXC", "credit_limit": rng.randint(0, 20_000)},
                                    {"threshold": [rng.randint(1, 3), 3]},
                                    {"expiry_days": rng.randint(1, 20)}]),
            }[action]
            proposals.append(propose(a, ts, action, **fields))
        elif roll < 0.45 and proposals:
            vote(a, rng.choice(proposals), ts, rng.choice(["yes", "yes", "no"]))
        elif roll < 0.47:
            a.write("key.rotated", {"key": bytes([step % 256, 1]) * 16}, ts)
        elif roll < 0.475:
            a.write("lab.left", {}, ts)
        elif roll < 0.6:
            others = [x.signer.public_key for x in everyone if x is not a]
            a.write("transfer.offered", {"to": rng.choice(others), "amount": rng.randint(1, 3000),
                                         "unit": "JXC"}, ts)
    random_history(rng, genesis, everyone, steps // 2)
    return everyone


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_labs=st.integers(3, 5), steps=st.integers(40, 160))
def test_any_arrival_order_gives_the_same_roster_keys_and_digest(seed: int, n_labs: int,
                                                                 steps: int) -> None:
    rng = random.Random(seed)
    genesis, authors = world(n_labs, seed)
    everyone = governed_history(rng, genesis, authors, steps)
    in_order = project(genesis, [e for a in everyone for e in a.entries])
    for _ in range(3):
        other = project(genesis, interleave(rng, everyone))
        assert other.outcome.effects() == in_order.outcome.effects()
        assert other.digest() == in_order.digest()
    reverse = project(genesis, [e for a in reversed(everyone) for e in a.entries])
    assert reverse.document() == in_order.document()
    assert Ledger.restore(genesis, in_order.feeds, in_order.encode()).document() == \
        in_order.document()


# -- found in review: each of these failed before its fix --------------------------


def test_a_decision_held_where_its_entry_is_not_due_still_takes_effect() -> None:
    """The vote that removes C waits behind an acknowledgement of D's entry; the
    removal is decided (votes are read when held) and C's later entries stop
    counting in every order, through a snapshot taken meanwhile too."""
    genesis, (a, b, c, d) = world(4)
    for _ in range(2):
        c.write("contribution.recorded", {"member": "m", "stream": "care", "minutes": 60},
                T0 + S)
    contrib = d.write("contribution.recorded", {"member": "m", "stream": "care",
                                                "minutes": 60, "for_lab": b.signer.public_key},
                      T0 + S)
    p = propose(a, T0 + 2 * S, "remove", lab=c.signer.public_key, last_seq=2)
    b.write("contribution.acknowledged", {"contribution": contrib.ref.as_list()}, T0 + 3 * S)
    vote(b, p, T0 + 4 * S)

    def run(order: list[Entry], snapshot_after: int | None = None) -> Ledger:
        held = Held()
        ledger = Ledger(genesis, held)
        for i, entry in enumerate(order):
            held.add(entry)
            ledger.receive(entry)
            if i == snapshot_after:
                ledger = Ledger.restore(genesis, held, ledger.encode())
        return ledger

    first = [*a.entries, *c.entries, *b.entries]
    other = [*b.entries, *a.entries, *c.entries]
    assert run(first).digest() == run(other).digest()
    whole = run([*first, *d.entries], snapshot_after=len(first) - 1)
    assert whole.digest() == run([*other, *d.entries]).digest()
    assert not [v for k, v in whole.contributions.items() if k[0] == c.signer.public_key]


def test_governance_entries_in_a_forked_tail_count_for_nothing() -> None:
    genesis, (a, b, f) = world(3)
    n = newcomer(genesis)
    p = propose(a, T0 + S, "admit", lab=n.signer.public_key, name="Nueva")
    twin = Author(f.signer, f.genesis_id, list(f.entries))
    vote(f, p, T0 + 2 * S)  # one branch votes at seq 3, the other does not
    twin.write("member.added", {"handle": "q", "name": "Q"}, T0 + 2 * S)

    def node(branch: Author) -> Ledger:
        held = Held()
        ledger = Ledger(genesis, held, frozen={f.signer.public_key: 3})
        for entry in [*a.entries, *b.entries, *branch.entries]:
            held.add(entry)
            ledger.receive(entry)
        return ledger

    one, two = node(f), node(twin)
    assert n.signer.public_key not in one.roster
    assert one.digest() == two.digest()


def test_a_key_rotation_does_not_make_the_ledger_settle_again() -> None:
    genesis, (a, b, c) = world(3)
    for i in range(50):
        b.write("member.added", {"handle": f"h{i}", "name": "x"}, T0 + i)
    for i in range(5):
        a.write("key.rotated", {"key": Signer.from_seed(bytes([i + 1]) * 32).public_key},
                T0 + 1000 + i)
    ledger = Ledger(genesis, Held())
    replays = []
    ledger._replay = lambda: replays.append(1)  # type: ignore[method-assign]
    for entry in [*b.entries, *c.entries, *a.entries]:
        ledger.feeds.add(entry)  # type: ignore[attr-defined]
        ledger.receive(entry)
    assert not replays
    assert ledger.outcome.key_at(a.signer.public_key, 10**6) == \
        Signer.from_seed(bytes([5]) * 32).public_key


def test_the_audit_does_not_let_forged_entries_vouch_for_each_others_keys() -> None:
    """Every entry after the LABs' first two is signed by an attacker's key, with
    forged recoveries of each LAB's key to it, voted by the others' forged entries:
    the offline audit refuses all of them (a node takes an entry only under the keys
    already in force; the audit grows the keys the same way)."""
    genesis, (a, b, c) = world(3)
    attacker = Signer.from_seed(b"\x77" * 32)

    def forge(who: Author, kind: str, body: dict[str, object], ts: int) -> Entry:
        e = sign_entry(attacker, federation_id=genesis.federation_id, seq=len(who.entries) + 1,
                       prev=who.entries[-1].hash, ts_us=ts, kind=kind, body=body,
                       author=who.signer.public_key)
        who.entries.append(e)
        return e

    def recover(who: Author, lab: Author, ts: int) -> Entry:
        return forge(who, "proposal.made", {"action": "recover", "lab": lab.signer.public_key,
                                            "key": attacker.public_key, "from_seq": 3}, ts)

    def yes(who: Author, p: Entry, ts: int) -> None:
        forge(who, "proposal.voted", {"proposal": p.ref.as_list(), "vote": "yes"}, ts)

    p1 = recover(b, a, T0 + S)
    yes(c, p1, T0 + 2 * S)
    p2 = recover(a, b, T0 + 3 * S)
    yes(c, p2, T0 + 4 * S)
    p3 = recover(c, c, T0 + 5 * S)
    yes(a, p3, T0 + 6 * S)
    yes(b, p3, T0 + 6 * S)
    out = io.BytesIO()
    writer = BundleWriter(out, genesis.federation_id, T0)
    writer.genesis(genesis.encode())
    for x in (a, b, c):
        for e in x.entries:
            writer.entry(e.raw)
    writer.close()
    report = audit_bundle(io.BytesIO(out.getvalue()))
    assert not report.ok
    forged = {(v.author, v.seq) for v in report.violations if v.code == "bad-signature"}
    assert forged == {(x.signer.public_key.hex(), e.seq) for x in (a, b, c)
                      for e in x.entries[2:]}
    assert all(m["key"] == m["lab"] for m in report.roster)


def test_a_rotation_in_a_batch_does_not_override_a_recovery_decided_for_a_later_seq(
        ) -> None:
    genesis, (a, b, x) = world(3)
    new = Signer.from_seed(b"\x02" * 32).public_key
    p = propose(a, T0 + S, "recover", lab=x.signer.public_key, key=new, from_seq=5)
    vote(b, p, T0 + 2 * S)
    ledger = project(genesis, [*a.entries, *b.entries, *x.entries])
    thief = Signer.from_seed(b"\x66" * 32)
    rotated = x.write("key.rotated", {"key": thief.public_key}, T0 + 3 * S)
    fourth = sign_entry(thief, federation_id=genesis.federation_id, seq=4, prev=rotated.hash,
                        ts_us=T0 + 4 * S, kind="member.added", body={"handle": "z", "name": "Z"},
                        author=x.signer.public_key)
    fifth = sign_entry(thief, federation_id=genesis.federation_id, seq=5, prev=fourth.hash,
                       ts_us=T0 + 5 * S, kind="member.added", body={"handle": "y", "name": "Y"},
                       author=x.signer.public_key)
    keys = KeysInForce(ledger.outcome)
    assert [keys.take(e) for e in (rotated, fourth, fifth)] == [
        x.signer.public_key, thief.public_key, new]
