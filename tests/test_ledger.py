"""The federation ledger: determinism across arrival orders, rules, pending references."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.genesis import Genesis, Lab, create_genesis
from federation.kinds import VOIDABLE
from federation.ledger import Ledger
from protocol import canonical
from protocol.entry import (
    SIGNING_PREFIX,
    Entry,
    Header,
    Ref,
    decode_entry,
    redact,
    sha256,
    sign_entry,
)
from protocol.errors import ProtocolError
from protocol.keys import Signer

T0 = 1_780_000_000_000_000
LIMIT = 5_000


@dataclass
class Held:
    """In-memory :class:`federation.ledger.Feeds`: the entries delivered so far."""

    feeds: dict[bytes, list[Entry]] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        feed = self.feeds.setdefault(entry.author, [])
        assert entry.seq == len(feed) + 1
        feed.append(entry)

    def entry(self, author: bytes, seq: int) -> Entry | None:
        feed = self.feeds.get(author, [])
        return feed[seq - 1] if 0 < seq <= len(feed) else None

    def entries_after(self, author: bytes, seq: int) -> Iterator[Entry]:
        return iter(self.feeds.get(author, [])[seq:])


@dataclass
class Author:
    signer: Signer
    genesis_id: bytes
    entries: list[Entry] = field(default_factory=list)

    def write(self, kind: str, body: dict[str, object], ts: int) -> Entry:
        prev = self.entries[-1].hash if self.entries else None
        e = sign_entry(self.signer, federation_id=self.genesis_id, seq=len(self.entries) + 1,
                       prev=prev, ts_us=ts, kind=kind, body=body)
        self.entries.append(e)
        return e

    def write_bytes(self, kind: str, body_bytes: bytes, ts: int) -> Entry:
        """Sign ``body_bytes`` as they are: a faulty author's non-canonical body."""
        prev = self.entries[-1].hash if self.entries else None
        header = Header(self.genesis_id, self.signer.public_key, len(self.entries) + 1, prev,
                        ts, kind, sha256(body_bytes))
        signature = self.signer.sign(SIGNING_PREFIX + header.encode())
        e = decode_entry(msgpack.packb([header.as_list(), signature, body_bytes],
                                       use_bin_type=True))
        self.entries.append(e)
        return e


def world(n_labs: int, seed: int = 0) -> tuple[Genesis, list[Author]]:
    signers = [Signer.from_seed(bytes([seed % 256, i]) * 16) for i in range(n_labs)]
    genesis = create_genesis("F", labs=[Lab(s.public_key, f"L{i}") for i, s in enumerate(signers)],
                             units={"JXC": 2}, credit_limits={"JXC": LIMIT}, now_us=T0)
    authors = [Author(s, genesis.federation_id) for s in signers]
    for i, a in enumerate(authors):
        a.write("lab.joined", {"federation": genesis.federation_id, "name": f"L{i}"}, T0)
        a.write("member.added", {"handle": "m", "name": "M"}, T0)
    return genesis, authors


def random_history(rng: random.Random, genesis: Genesis, authors: list[Author], steps: int,
                   ) -> None:
    """Honest-looking and faulty entries: author 0 is deliberately faulty."""
    labs = [a.signer.public_key for a in authors]
    offers: list[Entry] = []
    answers: list[Entry] = []
    contributions: list[Entry] = []
    for step in range(steps):
        i = rng.randrange(len(authors))
        a, me = authors[i], labs[i]
        ts = T0 + step * 1_000_000
        faulty = i == 0
        if rng.random() < 0.15:
            amend_randomly(rng, a, authors, ts, faulty)
            continue
        roll = rng.random()
        if roll < 0.25:
            body: dict[str, object] = {"member": "m", "stream": rng.choice(["love", "care",
                                                                            "livelihood"]),
                                       "minutes": rng.randint(1, 600)}
            if rng.random() < 0.5:
                body["for_lab"] = rng.choice(labs)
            contributions.append(a.write("contribution.recorded", body, ts))
        elif roll < 0.55:
            to = rng.choice([lab for lab in labs if lab != me])
            amount = rng.randint(1, 9_000 if faulty else 2_000)
            offers.append(a.write("transfer.offered", {"to": to, "amount": amount,
                                                       "unit": "JXC"}, ts))
        elif roll < 0.8 and offers:
            mine = [o for o in offers if o.fields()["to"] == me]  # type: ignore[index]
            pool = offers if faulty else (mine or offers)
            offer = rng.choice(pool)
            kind = rng.choice(["transfer.accepted", "transfer.declined"])
            answers.append(a.write(kind, {"offer": offer.ref.as_list()}, ts))
        elif roll < 0.88 and answers:
            decline = rng.choice(answers)
            offer_ref = decline.fields()["offer"]  # type: ignore[index]
            a.write("transfer.reclaimed", {"offer": offer_ref,
                                           "decline": decline.ref.as_list()}, ts)
        elif roll < 0.95 and contributions:
            c = rng.choice(contributions)
            a.write("contribution.acknowledged", {"contribution": c.ref.as_list()}, ts)
        elif faulty and roll < 0.97:
            ghost = Ref(rng.choice(labs), 10_000 + step, bytes(32))
            a.write("transfer.accepted", {"offer": ghost.as_list()}, ts)
        elif faulty:  # bodies that break their schema or canonical form
            bad = rng.choice([{"member": "m", "stream": "love", "minutes": 0},
                              {"member": "m", "stream": "love", "minutes": 5, "zzz": 1},
                              {"member": "nobody", "stream": "care", "minutes": 5}])
            if rng.random() < 0.5:
                a.write("contribution.recorded", bad, ts)
            else:  # keys out of order: a map, but not canonical
                a.write_bytes("contribution.recorded",
                              msgpack.packb(dict(reversed(bad.items())), use_bin_type=True), ts)


MONTH_US = 31 * 24 * 3600 * 1_000_000


def amend_randomly(rng: random.Random, a: Author, authors: list[Author], ts: int,
                   faulty: bool) -> None:
    """An income, or a correction or void of an earlier entry of ``a``'s own feed (or,
    from the faulty author, of another feed; of a transfer; with another for_lab)."""
    if rng.random() < 0.3:
        a.write("income.recorded", {"amount": rng.randint(1, 90_000), "unit": "JXC",
                                    "period": rng.choice(["2026-05", "2026-06"]),
                                    "source": "sales"}, ts)
        return
    if rng.random() < 0.1:  # (a map inside the ledger's document)
        a.write("policy.set", {"weights": {"love": rng.randint(0, 3), "care": 1,
                                           "livelihood": rng.randint(0, 3)},
                               "care_ratio": rng.randint(0, 100)}, ts)
        return
    pool = a.entries[1:]
    if faulty and rng.random() < 0.3:
        pool = rng.choice(authors).entries[1:]
    elif rng.random() < 0.8:  # mostly what may be amended
        pool = [e for e in pool if e.kind in VOIDABLE] or pool
    target = rng.choice(pool)
    try:
        fields = target.fields() or {}
    except ProtocolError:  # the faulty author's non-canonical body
        fields = {}
    if rng.random() < 0.4 or target.kind not in ("contribution.recorded", "income.recorded"):
        a.write("entry.voided", {"entry": target.ref.as_list(), "reason": "mistake"}, ts)
        return
    body = {k: v for k, v in fields.items() if k not in ("entry", "reason")}
    body["entry"] = target.ref.as_list()
    if target.kind == "contribution.recorded":
        body["minutes"] = rng.randint(1, 600)
        if rng.random() < 0.5:  # moved to another month, or back to the original's
            body["date"] = rng.choice(["2026-04-30", "2026-05-01"])
        elif "date" in body:
            del body["date"]
        if faulty and rng.random() < 0.3:
            body["for_lab"] = rng.choice(authors).signer.public_key
        a.write("contribution.corrected", body, ts + rng.choice([0, MONTH_US]))
    else:
        body["amount"] = rng.randint(1, 90_000)
        a.write("income.corrected", body, ts)


def interleave(rng: random.Random, authors: list[Author]) -> list[Entry]:
    """A random arrival order that keeps each feed's own order (as a store does)."""
    cursors = [0] * len(authors)
    out = []
    while True:
        open_ = [i for i, a in enumerate(authors) if cursors[i] < len(a.entries)]
        if not open_:
            return out
        i = rng.choice(open_)
        out.append(authors[i].entries[cursors[i]])
        cursors[i] += 1


def project(genesis: Genesis, order: list[Entry], check_each: bool = True,
            stored: bool = False) -> Ledger:
    """The ledger of ``order``; ``stored`` feeds it entry bytes as a node's store
    hands them back (``Ledger.receive(raw, _trusted=True)``)."""
    held = Held()
    ledger = Ledger(genesis, held)
    for entry in order:
        held.add(entry)
        if stored:
            ledger.receive(entry.raw, _trusted=True)
        else:
            ledger.receive(entry)
        if check_each:
            ledger.check_invariant()
    return ledger


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_labs=st.integers(3, 8), steps=st.integers(100, 300))
def test_any_arrival_order_gives_the_same_ledger(seed: int, n_labs: int, steps: int) -> None:
    rng = random.Random(seed)
    genesis, authors = world(n_labs, seed)
    random_history(rng, genesis, authors, steps)
    in_order = project(genesis, [e for a in authors for e in a.entries])
    digests = {in_order.digest()}
    for _ in range(4):
        digests.add(project(genesis, interleave(rng, authors)).digest())
    assert len(digests) == 1
    # References that arrive before their targets: deliver feeds in reverse order.
    reverse = project(genesis, [e for a in reversed(authors) for e in a.entries])
    assert reverse.digest() == in_order.digest()
    assert in_order.document() == reverse.document()
    # The snapshot is msgpack of the document with its keys sorted (its weight maps
    # come sorted from canonical bodies), and restores to the same ledger.
    document = in_order.document()
    snapshot = in_order.encode()
    assert snapshot == msgpack.packb(dict(sorted(document.items())), use_bin_type=True)
    assert snapshot == canonical.encode(document)  # (the walk skipped: nothing to change)
    assert Ledger.restore(genesis, Held(), snapshot).document() == document
    # The faulty author's rejected entries are listed with reasons, never applied.
    assert all(code and message for code, message in in_order.invalid.values())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_labs=st.integers(3, 6), steps=st.integers(100, 250))
def test_stored_bytes_give_the_same_ledger_as_entries(seed: int, n_labs: int,
                                                      steps: int) -> None:
    rng = random.Random(seed)
    genesis, authors = world(n_labs, seed)
    random_history(rng, genesis, authors, steps)
    for a in authors:  # some bodies redacted, as an export can hold them
        a.entries = [redact(e) if e.seq > 2 and rng.random() < 0.05 else e
                     for e in a.entries]
    order = interleave(rng, authors)
    by_entry = project(genesis, order, check_each=False)
    by_bytes = project(genesis, order, check_each=False, stored=True)
    assert by_bytes.document() == by_entry.document()
    assert by_bytes.encode() == by_entry.encode()


def test_a_faulty_authors_bad_bodies_are_listed_the_same_from_bytes() -> None:
    genesis, authors = world(3, 1)
    a = authors[0]
    a.write("contribution.recorded", {"member": "m", "stream": "love", "minutes": 0}, T0)
    a.write("contribution.recorded", {"member": "m", "stream": "love", "minutes": 5,
                                      "zzz": 1}, T0)
    a.write_bytes("contribution.recorded",
                  msgpack.packb({"stream": "love", "minutes": 5, "member": "m"},
                                use_bin_type=True), T0)
    a.write("contribution.recorded", {"member": "m", "stream": "love", "minutes": 5}, T0)
    order = [e for x in authors for e in x.entries]
    by_entry, by_bytes = project(genesis, order), project(genesis, order, stored=True)
    A = a.signer.public_key
    assert [by_bytes.invalid[(A, s)][0] for s in (3, 4, 5)] == ["bad-body"] * 3
    assert by_bytes.invalid == by_entry.invalid
    assert (A, 6) not in by_bytes.invalid and by_bytes.digest() == by_entry.digest()


def _two(limit_note: str = "") -> tuple[Genesis, Author, Author]:
    genesis, (a, b) = world(2, 99)
    return genesis, a, b


def test_faulty_entries_have_no_effect_and_are_listed() -> None:
    genesis, a, b = _two()
    A, B = a.signer.public_key, b.signer.public_key
    over = a.write("transfer.offered", {"to": B, "amount": LIMIT + 1, "unit": "JXC"}, T0)
    ok = a.write("transfer.offered", {"to": B, "amount": 100, "unit": "JXC"}, T0)
    self_answer = a.write("transfer.accepted", {"offer": ok.ref.as_list()}, T0)
    first = b.write("transfer.accepted", {"offer": ok.ref.as_list()}, T0)
    second = b.write("transfer.declined", {"offer": ok.ref.as_list()}, T0)
    missing = b.write("transfer.accepted", {"offer": Ref(A, 999, bytes(32)).as_list()}, T0)
    ledger = project(genesis, a.entries + b.entries)
    codes = {(e.author, e.seq): ledger.invalid.get((e.author, e.seq), ("",))[0]
             for e in (over, self_answer, second)}
    assert codes == {(A, over.seq): "over-credit-limit", (A, self_answer.seq): "not-payee",
                     (B, second.seq): "already-answered"}
    assert (B, first.seq) not in ledger.invalid
    assert ledger.balance(A, "JXC") == -100 and ledger.balance(B, "JXC") == 100
    # The reference to a missing entry leaves B's feed pending there, not invalid.
    assert ledger.pending[B] == (missing.seq, Ref(A, 999, bytes(32)))
    assert (B, missing.seq) not in ledger.invalid


def test_a_pending_entry_takes_effect_when_its_reference_arrives() -> None:
    genesis, a, b = _two()
    B = b.signer.public_key
    offer = a.write("transfer.offered", {"to": B, "amount": 250, "unit": "JXC"}, T0)
    accept = b.write("transfer.accepted", {"offer": offer.ref.as_list()}, T0)
    later = b.write("contribution.recorded", {"member": "m", "stream": "care", "minutes": 30},
                    T0)
    held = Held()
    ledger = Ledger(genesis, held)
    for e in b.entries:  # B's feed first: its accept references an offer not held yet
        held.add(e)
        ledger.receive(e)
    assert ledger.pending[B][0] == accept.seq
    assert ledger.applied(B) == accept.seq - 1 and ledger.balance(B, "JXC") == 0
    for e in a.entries:
        held.add(e)
        ledger.receive(e)
    assert B not in ledger.pending
    assert ledger.applied(B) == later.seq
    assert ledger.balance(B, "JXC") == 250
    ledger.check_invariant()


def test_decline_then_reclaim_restores_the_payer_and_only_once() -> None:
    genesis, a, b = _two()
    A, B = a.signer.public_key, b.signer.public_key
    offer = a.write("transfer.offered", {"to": B, "amount": 700, "unit": "JXC"}, T0)
    decline = b.write("transfer.declined", {"offer": offer.ref.as_list()}, T0)
    body = {"offer": offer.ref.as_list(), "decline": decline.ref.as_list()}
    a.write("transfer.reclaimed", body, T0)
    again = a.write("transfer.reclaimed", body, T0)
    ledger = project(genesis, b.entries + a.entries)
    assert ledger.balance(A, "JXC") == 0 and ledger.balance(B, "JXC") == 0
    assert ledger.invalid[(A, again.seq)][0] == "already-reclaimed"


def test_the_snapshot_is_the_canonical_encoding_of_the_document() -> None:
    """encode() packs the document as it is built (maps in sorted order, a policy's
    weights among them): the very bytes of the encoder's walk."""
    genesis, authors = world(3, 9)
    authors[0].write("policy.set", {"weights": {"love": 2, "care": 1, "livelihood": 3},
                                    "care_ratio": 10}, T0)
    authors[1].write("income.recorded", {"amount": 7, "unit": "JXC", "period": "2026-05",
                                         "source": "s"}, T0)
    ledger = project(genesis, [e for a in authors for e in a.entries])
    assert ledger.policies and ledger.income
    assert ledger.encode() == canonical.encode(ledger.document())
    assert list(ledger.document()) == sorted(ledger.document())
    assert Ledger.restore(genesis, Held(), ledger.encode()).encode() == ledger.encode()


def test_snapshot_restores_exactly() -> None:
    rng = random.Random(5)
    genesis, authors = world(4, 5)
    random_history(rng, genesis, authors, 200)
    order = interleave(rng, authors)
    held = Held()
    ledger = Ledger(genesis, held)
    for e in order[:150]:
        held.add(e)
        ledger.receive(e)
    restored = Ledger.restore(genesis, held, ledger.encode())
    assert restored.encode() == ledger.encode()
    assert ledger.encode() == canonical.encode(ledger.document())  # the fast path's bytes
    assert len(ledger.offers) > 3
    for e in order[150:]:
        held.add(e)
        ledger.receive(e)
        restored.receive(e)
    assert restored.digest() == ledger.digest()
