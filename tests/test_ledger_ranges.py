"""Ledger ranges: no sequence of validly signed entries takes a total the ledger keeps
past ±MAX_TOTAL, or stops the projection, a snapshot, a report, the ValueFlows export
or the offline audit. An entry that would take a total past the range is invalid
(``out-of-range``), with the same verdict on every path, in every arrival order and
in the audit.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from federation import reports, valueflows
from federation.audit import AuditReport, audit_bundle
from federation.bundle import BundleWriter
from federation.errors import FederationError, RuleViolation
from federation.genesis import Genesis, Lab, create_genesis
from federation.kinds import MAX_AMOUNT, MAX_MINUTES, MAX_TOTAL, STREAMS
from federation.ledger import Ledger, month_of
from protocol import canonical
from protocol.entry import Entry, redact
from protocol.keys import Signer
from tests.conftest import make_federation
from tests.test_ledger import Author, Held, interleave, project

T0 = 1_780_000_000_000_000
NO_LIMIT = 2**64 - 1
"""The largest credit limit a genesis can hold: only the range stops a payer."""
CHUNK = MAX_AMOUNT
TO_BOUND = MAX_TOTAL // CHUNK
"""Entries of the largest amount that take a total exactly to the bound (512)."""
OUT = "out-of-range"
LISTED = frozenset({
    "bad-body", "unknown-kind", "not-in-roster", "not-joined", "joined-twice",
    "wrong-federation", "member-exists", "unknown-member", "unknown-lab", "unknown-unit",
    "self-transfer", "over-credit-limit", OUT, "bad-reference", "not-payee",
    "already-answered", "not-payer", "already-reclaimed", "not-declined",
    "not-for-this-lab", "already-acknowledged",
})
"""The codes an invalid entry is listed with."""


def world(n_labs: int, limit: int = NO_LIMIT, seed: int = 7) -> tuple[Genesis, list[Author]]:
    """LABs that joined (seq 1) and added member ``m`` (seq 2); units JXC and HRS."""
    signers = [Signer.from_seed(bytes([seed, i]) * 16) for i in range(n_labs)]
    genesis = create_genesis("Ranges", labs=[Lab(s.public_key, f"L{i}")
                                             for i, s in enumerate(signers)],
                             units={"JXC": 2, "HRS": 0},
                             credit_limits={"JXC": limit, "HRS": limit}, now_us=T0)
    authors = [Author(s, genesis.federation_id) for s in signers]
    for i, a in enumerate(authors):
        a.write("lab.joined", {"federation": genesis.federation_id, "name": f"L{i}"}, T0)
        a.write("member.added", {"handle": "m", "name": "M"}, T0)
    return genesis, authors


def feeds(authors: Sequence[Author]) -> list[Entry]:
    return [e for a in authors for e in a.entries]


def both(genesis: Genesis, order: list[Entry]) -> Ledger:
    """The ledger of ``order`` from Entry objects, checked equal to the one from the
    stored bytes (document and snapshot bytes)."""
    by_entry = project(genesis, order, check_each=False)
    by_bytes = project(genesis, order, check_each=False, stored=True)
    assert by_bytes.document() == by_entry.document()
    assert by_bytes.encode() == by_entry.encode()
    return by_entry


def audit(genesis: Genesis, authors: Sequence[Author]) -> AuditReport:
    """The offline audit of a bundle of every feed."""
    out = io.BytesIO()
    writer = BundleWriter(out, genesis.federation_id, T0)
    writer.genesis(genesis.encode())
    for entry in feeds(authors):
        writer.entry(entry.raw)
    writer.close()
    return audit_bundle(io.BytesIO(out.getvalue()))


def listed(ledger: Ledger) -> list[tuple[str, int, str, str]]:
    return [(a.hex(), s, c, m) for (a, s), (c, m) in sorted(ledger.invalid.items())]


def assert_in_range(ledger: Ledger) -> None:
    """Every total the ledger keeps is within the range, and the snapshot encodes."""
    for totals in (ledger.balances, ledger.income, ledger.contributions):
        assert all(-MAX_TOTAL <= v <= MAX_TOTAL for v in totals.values())
    assert canonical.decode(ledger.encode(), max_size=2**31) == ledger.document()


def offer(a: Author, to: Author, amount: int = CHUNK, unit: str = "JXC") -> Entry:
    return a.write("transfer.offered", {"to": to.signer.public_key, "amount": amount,
                                        "unit": unit}, T0)


def answer(a: Author, kind: str, offered: Entry) -> Entry:
    return a.write(f"transfer.{kind}", {"offer": offered.ref.as_list()}, T0)


def income(a: Author, amount: int = CHUNK, period: str = "2026-11") -> Entry:
    return a.write("income.recorded", {"amount": amount, "unit": "JXC", "period": period,
                                       "source": "sales"}, T0)


# -- each total at its bound ----------------------------------------------------


def test_income_past_the_range_is_invalid_with_its_own_code() -> None:
    genesis, (a, b) = world(2)
    past = [income(a) for _ in range(TO_BOUND + 2)][TO_BOUND:]
    income(a, period="2026-12")
    ledger = both(genesis, feeds([a, b]))
    A = a.signer.public_key
    assert sorted(ledger.invalid) == [(A, e.seq) for e in past]
    assert {code for code, _ in ledger.invalid.values()} == {OUT}
    assert ledger.income == {(A, "2026-11", "JXC"): MAX_TOTAL, (A, "2026-12", "JXC"): CHUNK}
    assert_in_range(ledger)


def test_a_payer_cannot_offer_its_balance_below_the_range() -> None:
    genesis, (a, b) = world(2)
    offers = [offer(a, b) for _ in range(TO_BOUND + 1)]
    for o in offers:
        answer(b, "accepted", o)
    ledger = both(genesis, feeds([a, b]))
    A, B = a.signer.public_key, b.signer.public_key
    assert ledger.invalid[(A, offers[-1].seq)][0] == OUT
    assert ledger.invalid[(B, b.entries[-1].seq)][0] == "bad-reference"  # not a valid offer
    assert len(ledger.invalid) == 2
    assert (ledger.balance(A, "JXC"), ledger.balance(B, "JXC")) == (-MAX_TOTAL, MAX_TOTAL)
    ledger.check_invariant()
    assert_in_range(ledger)


def test_a_payee_cannot_accept_its_balance_past_the_range() -> None:
    genesis, (a, b, c) = world(3)
    offers = [offer(a, b) for _ in range(TO_BOUND)]
    last = offer(c, b)
    accepts = [answer(b, "accepted", o) for o in [*offers, last]]
    decline = answer(b, "declined", last)  # the offer it could not take stays open
    reclaim = c.write("transfer.reclaimed", {"offer": last.ref.as_list(),
                                             "decline": decline.ref.as_list()}, T0)
    ledger = both(genesis, feeds([a, b, c]))
    B = b.signer.public_key
    assert list(ledger.invalid) == [(B, accepts[-1].seq)]
    assert ledger.invalid[(B, accepts[-1].seq)][0] == OUT
    assert (c.signer.public_key, reclaim.seq) not in ledger.invalid
    assert [ledger.balance(x.signer.public_key, "JXC") for x in (a, b, c)] == [
        -MAX_TOTAL, MAX_TOTAL, 0]
    ledger.check_invariant()
    assert_in_range(ledger)


def test_a_reclaim_past_the_range_is_invalid_and_may_come_again_later() -> None:
    genesis, (a, b, c) = world(3)
    mine = offer(a, b)
    decline = answer(b, "declined", mine)
    for o in [offer(c, a) for _ in range(TO_BOUND)] + [offer(b, a)]:
        answer(a, "accepted", o)  # a: -CHUNK + 513 x CHUNK = MAX_TOTAL
    body = {"offer": mine.ref.as_list(), "decline": decline.ref.as_list()}
    early = a.write("transfer.reclaimed", body, T0)
    offer(a, c)  # a pays out: MAX_TOTAL - CHUNK
    later = a.write("transfer.reclaimed", body, T0)
    ledger = both(genesis, feeds([a, b, c]))
    A = a.signer.public_key
    assert list(ledger.invalid) == [(A, early.seq)]
    assert ledger.invalid[(A, early.seq)][0] == OUT
    assert (A, later.seq) not in ledger.invalid
    assert ledger.offers[(A, mine.seq)].state == "reclaimed"
    assert ledger.balance(A, "JXC") == MAX_TOTAL
    ledger.check_invariant()
    assert_in_range(ledger)


@pytest.mark.parametrize("stored", [False, True], ids=["entry", "bytes"])
def test_contribution_minutes_past_the_range_are_invalid_on_every_path(stored: bool) -> None:
    """A row near the bound (as ages of records would leave it) comes from a snapshot."""
    genesis, (a, b) = world(2)
    A = a.signer.public_key
    body = {"member": "m", "stream": "care", "minutes": MAX_MINUTES}
    held = Held()
    ledger = Ledger(genesis, held)
    for entry in feeds([a, b]):
        held.add(entry)
        ledger.receive(entry)
    key = (A, b"", "m", "care", month_of(T0))
    ledger.contributions[key] = MAX_TOTAL - MAX_MINUTES
    ledger = Ledger.restore(genesis, held, ledger.encode())
    ledger.validate(A, "contribution.recorded", body, T0)  # exactly at the bound: valid
    at, past = (a.write("contribution.recorded", body, T0) for _ in range(2))
    for entry in (at, past):
        held.add(entry)
        if stored:
            ledger.receive(entry.raw, _trusted=True)
        else:
            ledger.receive(entry)
    assert ledger.contributions[key] == MAX_TOTAL
    assert list(ledger.invalid) == [(A, past.seq)]
    assert ledger.invalid[(A, past.seq)][0] == OUT
    with pytest.raises(RuleViolation) as caught:  # an honest node does not sign it
        ledger.validate(A, "contribution.recorded", body, T0)
    assert caught.value.code == OUT
    assert_in_range(ledger)


def test_the_verdict_is_the_same_in_every_arrival_order_and_in_the_audit() -> None:
    genesis, (a, b, c) = world(3)
    offers = [offer(a, b) for _ in range(TO_BOUND - 1)] + [offer(c, b) for _ in range(3)]
    for o in offers:
        answer(b, "accepted", o)
    past = b.entries[-2:]  # B's balance reaches MAX_TOTAL with the one before them
    authors = [a, b, c]
    ledger = both(genesis, feeds(authors))
    expected = [(b.signer.public_key.hex(), e.seq, OUT) for e in past]
    assert [row[:3] for row in listed(ledger)] == expected
    rng = random.Random(3)
    orders = [interleave(rng, authors) for _ in range(3)] + [feeds(authors[::-1])]
    for order in orders:
        other = project(genesis, order, check_each=False)
        assert other.digest() == ledger.digest()
        assert listed(other) == listed(ledger)
    report = audit(genesis, authors)
    assert [v.as_json() for v in report.violations] == [
        {"author": a_, "seq": s, "code": c_, "message": m} for a_, s, c_, m in listed(ledger)]
    assert report.state_digest == ledger.digest()


def test_a_node_keeps_its_status_and_rebuild_after_entries_past_the_range(
        tmp_path: Path) -> None:
    """The reported failure: a member's income past what a snapshot could encode
    stopped ``status``, ``balance`` and ``rebuild`` on every node that stored it."""
    fed = make_federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0]
    with fed.node(0) as node:
        own = list(node.log(farm.lab_id))
    a = Author(farm.signer(), fed.genesis.federation_id, own)
    count = 4 * TO_BOUND + 2  # more than 2**64 - 1 in all
    for _ in range(count):
        income(a)
    with fed.node(1) as node:
        node.ingest(e.raw for e in a.entries)
        summary = node.summary()
        assert summary["invalid"] == count - TO_BOUND
        rebuilt = node.rebuild()
    assert rebuilt.digest() == summary["state_digest"]
    assert rebuilt.income == {(farm.lab_id, "2026-11", "JXC"): MAX_TOTAL}


# -- property: nothing escapes but listed violations ------------------------------

AMOUNTS = (1, 2**31, MAX_AMOUNT - 1, MAX_AMOUNT)
TIMES = (T0, 0, -(2**63), 2**63 - 1, 2**52 - 1)
KINDS = ("income", "offer", "accept-all", "decline-all", "answer-any", "reclaim-all",
         "contribution", "acknowledge", "policy", "member")
Op = tuple[int, str, int, int, int, int]
OPS = st.tuples(st.integers(0, 2), st.sampled_from(KINDS), st.integers(0, 2**16),
                st.sampled_from(AMOUNTS), st.sampled_from(TIMES),
                st.sampled_from((1, 1, 2, 600)))
BUDGET = 1100
"""Entries per example at most: enough for a total to cross the bound, or to pass
what msgpack can encode had there been no range (1025 offers of the largest amount)."""


class Full(Exception):
    """The example has its budget of entries."""


@dataclass
class History:
    """Signs entries for a list of ops, remembering what later ops may reference."""

    authors: list[Author]
    offers: list[tuple[Entry, int]] = field(default_factory=list)
    answered: set[bytes] = field(default_factory=set)
    declines: list[tuple[Entry, Entry, int]] = field(default_factory=list)
    reclaimed: set[bytes] = field(default_factory=set)
    contributions: list[Entry] = field(default_factory=list)

    def write(self, who: int, kind: str, body: dict[str, Any], ts: int) -> Entry:
        if sum(len(a.entries) for a in self.authors) >= BUDGET:
            raise Full
        return self.authors[who].write(kind, body, ts)

    def run(self, ops: Sequence[Op]) -> None:
        try:
            for who, kind, pick, value, ts, repeat in ops:
                for _ in range(repeat):
                    self.step(who, kind, pick, value, ts)
        except Full:
            pass

    def step(self, who: int, kind: str, pick: int, value: int, ts: int) -> None:
        labs = [a.signer.public_key for a in self.authors]
        unit = ("JXC", "HRS", "NOPE")[pick % 3 if pick % 7 == 0 else pick % 2]
        if kind == "income":
            period = ("2026-11", "1970-01")[pick // 2 % 2]
            self.write(who, "income.recorded", {"amount": value, "unit": unit,
                                                "period": period, "source": "s"}, ts)
        elif kind == "offer":
            to = pick // 3 % 3  # sometimes itself: self-transfer
            entry = self.write(who, "transfer.offered", {"to": labs[to], "amount": value,
                                                         "unit": unit}, ts)
            self.offers.append((entry, to))
        elif kind in ("accept-all", "decline-all"):
            for entry, to in self.offers:
                if to == who and entry.hash not in self.answered:
                    self.answered.add(entry.hash)
                    self.answer(who, kind == "accept-all", entry, ts)
        elif kind == "answer-any" and self.offers:  # perhaps not its own, or again
            self.answer(who, value % 2 == 0, self.offers[pick % len(self.offers)][0], ts)
        elif kind == "reclaim-all":
            for entry, decline, payer in self.declines:
                if payer == who and (entry.hash not in self.reclaimed or pick % 5 == 0):
                    self.reclaimed.add(entry.hash)
                    self.write(who, "transfer.reclaimed", {"offer": entry.ref.as_list(),
                                                           "decline": decline.ref.as_list()},
                               ts)
        elif kind == "contribution":
            body: dict[str, Any] = {"member": "m", "stream": STREAMS[pick % 3],
                                    "minutes": (1, MAX_MINUTES)[pick // 3 % 2]}
            if pick // 6 % 2:
                body["for_lab"] = labs[pick // 12 % 3]
            self.contributions.append(self.write(who, "contribution.recorded", body, ts))
        elif kind == "acknowledge" and self.contributions:
            target = self.contributions[pick % len(self.contributions)]
            self.write(who, "contribution.acknowledged", {"contribution": target.ref.as_list()},
                       ts)
        elif kind == "policy":
            weights = {s: (0, 1, 1000)[pick // 3**i % 3] for i, s in enumerate(STREAMS)}
            self.write(who, "policy.set", {"weights": weights,
                                           "care_ratio": (0, 50, 100)[pick % 3]}, ts)
        elif kind == "member":
            self.write(who, "member.added", {"handle": ("m", "n", "o")[pick % 3],
                                             "name": "N"}, ts)

    def answer(self, who: int, accept: bool, entry: Entry, ts: int) -> None:
        kind = "transfer.accepted" if accept else "transfer.declined"
        decline = self.write(who, kind, {"offer": entry.ref.as_list()}, ts)
        if not accept:
            payer = [a.signer.public_key for a in self.authors].index(entry.author)
            self.declines.append((entry, decline, payer))


def run_reports(ledger: Ledger, entries: list[Entry]) -> None:
    """Every report and the ValueFlows export; only their documented refusals pass."""
    reports.balances(ledger)
    reports.transfers(ledger)
    reports.transfers(ledger, pending_only=True)
    reports.invalid_entries(ledger)
    for period in (None, "2026-11", "1970-01"):
        for by in ("stream", "lab", "member"):
            json.dumps(reports.flows(ledger, period=period, by=by), default=bytes.hex)
    for lab, period, unit in [*ledger.income, *((lab, "2026-11", "JXC") for lab in ledger.roster)]:
        try:
            result = reports.payout(ledger, lab, period, unit)
        except FederationError as e:
            assert "no income" in str(e) or "nothing to share by" in str(e)
            continue
        assert sum(result.shares.values()) == result.income <= MAX_TOTAL
        assert all(0 <= v <= result.income for v in result.shares.values())
        json.dumps(result.as_json(), default=bytes.hex)
    out = io.StringIO()
    valueflows.write_jsonld(out, entries, ledger)
    json.loads(out.getvalue())


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=st.lists(OPS, max_size=14), limit=st.sampled_from((0, 5_000, MAX_TOTAL, NO_LIMIT)),
       seed=st.integers(0, 2**32 - 1))
@example(ops=[(0, "income", 0, MAX_AMOUNT, T0, 600)], limit=0, seed=0)
@example(ops=[(0, "offer", 3, MAX_AMOUNT, T0, 600)] * 2 + [(1, "accept-all", 0, 1, T0, 1)],
         limit=NO_LIMIT, seed=1)  # past what msgpack can encode, had there been no range
def test_no_sequence_of_signed_entries_stops_the_ledger(ops: list[Op], limit: int,
                                                        seed: int) -> None:
    """Random kinds with extreme values and long repetitions: projection (from
    entries and from bytes, in several orders, through a snapshot), digest, reports,
    export and audit all finish, every total stays in range, and every invalid entry
    is listed with a known code, the same as the audit lists it."""
    rng = random.Random(seed)
    genesis, authors = world(3, limit, seed % 250)
    History(authors).run(ops)
    for a in authors:  # some bodies redacted, as an export can hold them
        a.entries = [redact(e) if e.seq > 2 and rng.random() < 0.03 else e for e in a.entries]
    entries = feeds(authors)
    ledger = both(genesis, entries)
    ledger.check_invariant()
    assert_in_range(ledger)
    codes = {code for code, _ in ledger.invalid.values()}
    assert codes <= LISTED
    assert not ledger.pending
    event("a total reached the range" if OUT in codes else "within the range")
    event(f"entries: {'hundreds' if len(entries) >= 100 else 'tens'}")
    # Another arrival order, caught up through a snapshot half way: the same ledger.
    order = interleave(rng, authors)
    held = Held()
    other = Ledger(genesis, held)
    for i, entry in enumerate(order):
        if i == len(order) // 2:
            other = Ledger.restore(genesis, held, other.encode())
        held.add(entry)
        other.receive(entry.raw, _trusted=True)
    assert other.digest() == ledger.digest()
    # References before their targets: feeds in reverse order.
    assert project(genesis, feeds(authors[::-1]), check_each=False).digest() == ledger.digest()
    run_reports(ledger, entries)
    report = audit(genesis, authors)
    assert [(v.author, v.seq, v.code, v.message) for v in report.violations] == listed(ledger)
    assert report.state_digest == ledger.digest()
    assert report.balances == reports.balances(ledger)
