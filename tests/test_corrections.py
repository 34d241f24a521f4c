"""Corrections and voids in the ledger (federation.corrections): what they replace or
cancel, every refusal with its code, the month a corrected contribution counts in,
acknowledgements, the range of totals, snapshots, and the ValueFlows export.

Arrival-order independence with corrections in the mix is the property test of
tests/test_ledger.py (its random histories correct and void)."""

from __future__ import annotations

import random
from typing import Any

from federation import reports
from federation.corrections import in_force, not_amendable
from federation.kinds import MAX_AMOUNT, MAX_TOTAL
from federation.ledger import Ledger, month_of
from federation.valueflows import iter_events
from protocol.entry import Entry, Ref, redact
from tests.test_ledger import T0, Author, Held, project, world

MONTH = month_of(T0)
LATER = T0 + 40 * 24 * 3600 * 1_000_000
"""A timestamp in another month than T0's."""
WORK = {"member": "m", "stream": "care", "minutes": 90}
INCOME = {"amount": 5000, "unit": "JXC", "period": "2026-05", "source": "sales"}


def fix(target: Entry, **fields: Any) -> dict[str, Any]:
    """A correction body of ``target``: its fields, changed by ``fields``."""
    body = {**(target.fields() or {}), **fields, "entry": target.ref.as_list()}
    return {k: v for k, v in body.items() if v is not None}


def void(target: Entry | Ref, reason: str = "mistake") -> dict[str, Any]:
    ref = target.ref if isinstance(target, Entry) else target
    return {"entry": ref.as_list(), "reason": reason}


def code(ledger: Ledger, entry: Entry) -> str | None:
    assert entry.seq <= ledger.applied(entry.author), "not settled"
    found = ledger.invalid.get((entry.author, entry.seq))
    return found[0] if found else None


def _authors(n: int = 2) -> tuple[Any, list[Author]]:
    return world(n, 42)


def test_a_void_cancels_an_income_and_a_correction_replaces_one() -> None:
    genesis, (a, b) = _authors()
    A = a.signer.public_key
    wrong = a.write("income.recorded", {**INCOME, "amount": 500_000}, T0)
    other = a.write("income.recorded", INCOME, T0)
    ledger = project(genesis, a.entries + b.entries)
    assert ledger.income[(A, "2026-05", "JXC")] == 505_000
    a.write("entry.voided", void(wrong), T0)
    ledger = project(genesis, a.entries + b.entries)
    assert ledger.income[(A, "2026-05", "JXC")] == 5000
    assert ledger.amended[(A, wrong.seq)] == (a.entries[-1].seq, True)
    # A correction replaces; a second one replaces the first (the latest counts), and
    # may move the income to another period and unit figure.
    first = a.write("income.corrected", fix(other, amount=7000), T0)
    second = a.write("income.corrected", fix(other, amount=8000, period="2026-06"), T0)
    ledger = project(genesis, a.entries + b.entries)
    assert code(ledger, first) is None and code(ledger, second) is None
    assert (A, "2026-05", "JXC") not in ledger.income  # a total of nothing is no row
    assert ledger.income[(A, "2026-06", "JXC")] == 8000
    assert in_force(ledger, other) == second
    # The original stays in the feed, with everything else; the payout counts the
    # income in force.
    a.write("contribution.recorded", {**WORK, "date": "2026-06-01"}, T0)
    ledger = project(genesis, a.entries + b.entries)
    assert reports.payout(ledger, A, "2026-06", "JXC").income == 8000
    assert [e.seq for e in a.entries] == list(range(1, len(a.entries) + 1))


def test_every_refusal_has_its_code() -> None:
    genesis, (a, b) = _authors()
    B = b.signer.public_key
    income = a.write("income.recorded", INCOME, T0)
    work = a.write("contribution.recorded", {**WORK, "for_lab": B}, T0)
    offer = a.write("transfer.offered", {"to": B, "amount": 100, "unit": "JXC"}, T0)
    theirs = b.write("contribution.recorded", WORK, T0)
    bad = a.write("contribution.recorded", {"member": "nobody", "stream": "care",
                                            "minutes": 5}, T0)
    cases = {
        "not-own-entry": a.write("entry.voided", void(theirs), T0),
        "bad-reference": a.write("entry.voided", void(Ref(a.signer.public_key, income.seq,
                                                          bytes(32))), T0),
        "not-correctable": a.write("entry.voided", void(offer), T0),
    }
    invalid_target = a.write("entry.voided", void(bad), T0)
    fixed = a.write("contribution.corrected", fix(work, minutes=60), T0)
    refused = {
        "not-correctable": [a.write("entry.voided", void(fixed), T0),  # not the original
                            a.write("income.corrected", {**INCOME, "entry":
                                                         work.ref.as_list()}, T0)],
        "for-lab-fixed": [a.write("contribution.corrected", fix(work, for_lab=None), T0)],
        "unknown-member": [a.write("contribution.corrected", fix(work, member="zed"), T0)],
        "bad-body": [a.write("income.corrected", {**INCOME, "amount": 0,
                                                  "entry": income.ref.as_list()}, T0)],
        "unknown-unit": [a.write("income.corrected", fix(income, unit="XXX"), T0)],
    }
    a.write("entry.voided", void(income), T0)
    refused["already-voided"] = [a.write("entry.voided", void(income), T0),
                                 a.write("income.corrected", fix(income, amount=1), T0)]
    # Another LAB's entry not held yet: refused at once, never pending.
    ledger = project(genesis, a.entries + b.entries)
    late = project(genesis, a.entries)
    assert a.signer.public_key not in late.pending
    assert code(late, cases["not-own-entry"]) == "not-own-entry"
    for expected, entry in cases.items():
        assert code(ledger, entry) == expected, expected
    assert code(ledger, invalid_target) == "bad-reference"
    assert "invalid" in ledger.invalid[(invalid_target.author, invalid_target.seq)][1]
    for expected, entries in refused.items():
        for entry in entries:
            assert code(ledger, entry) == expected, (expected, ledger.invalid.get(
                (entry.author, entry.seq)))
    # Refused entries have no effect: the valid correction's 60 minutes count.
    assert sum(ledger.contributions.values()) == 60 + 90  # a's corrected work + b's
    transfer = ledger.invalid[(cases["not-correctable"].author, cases["not-correctable"].seq)]
    assert "mutual credit" in transfer[1]


def test_a_corrected_contribution_counts_in_the_month_of_its_date() -> None:
    genesis, (a, b) = _authors()
    A = a.signer.public_key
    work = a.write("contribution.recorded", WORK, T0)
    dated = a.write("contribution.recorded", {**WORK, "date": "2026-01-15"}, T0)
    # Written a month later without a date: still the month of the original's
    # timestamp, as the original counted.
    a.write("contribution.corrected", fix(work, minutes=30), LATER)
    a.write("contribution.corrected", fix(dated, date="2025-12-31", stream="love"), LATER)
    ledger = project(genesis, a.entries + b.entries)
    assert ledger.contributions == {(A, b"", "m", "care", MONTH): 30,
                                    (A, b"", "m", "love", "2025-12"): 90}
    assert month_of(LATER) != MONTH
    # Dropping the date of a dated contribution: the original's timestamp month.
    a.write("contribution.corrected", fix(dated, date=None), LATER)
    ledger = project(genesis, a.entries + b.entries)
    assert ledger.contributions == {(A, b"", "m", "care", MONTH): 120}
    payout_minutes = reports.flows(ledger, period="2025-12")["contributions"]
    assert payout_minutes == []


def test_a_void_withdraws_an_acknowledgement_which_may_then_be_given_again() -> None:
    genesis, (a, b) = _authors()
    A, B = a.signer.public_key, b.signer.public_key
    work = a.write("contribution.recorded", {**WORK, "for_lab": B}, T0)
    ack = b.write("contribution.acknowledged", {"contribution": work.ref.as_list()}, T0)
    twice = b.write("contribution.acknowledged", {"contribution": work.ref.as_list()}, T0)
    withdrawn = b.write("entry.voided", void(ack), T0)
    again = b.write("contribution.acknowledged", {"contribution": work.ref.as_list()}, T0)
    corrected = b.write("contribution.corrected", {**WORK, "entry": ack.ref.as_list()}, T0)
    for order in (a.entries + b.entries, b.entries + a.entries):
        ledger = project(genesis, order)
        assert code(ledger, twice) == "already-acknowledged"
        assert code(ledger, withdrawn) is None and code(ledger, again) is None
        assert ledger.acks == {(A, work.seq): (B, again.seq)}
        assert code(ledger, corrected) == "not-correctable"
    assert "no figures to correct" in (not_amendable("contribution.acknowledged", None) or "")
    # The author's void of the contribution does not undo the acknowledgement, which
    # was judged against the contribution as recorded (whatever arrived first).
    a.write("entry.voided", void(work), T0)
    for order in (a.entries + b.entries, b.entries + a.entries):
        ledger = project(genesis, order)
        assert ledger.acks == {(A, work.seq): (B, again.seq)}
        assert ledger.contributions == {}


def test_totals_stay_in_range_through_corrections() -> None:
    genesis, (a, b) = _authors()
    A = a.signer.public_key
    big = {**INCOME, "amount": MAX_AMOUNT}
    for _ in range(MAX_TOTAL // MAX_AMOUNT - 1):
        a.write("income.recorded", big, T0)
    small = a.write("income.recorded", {**INCOME, "amount": 1}, T0)
    fits = a.write("income.corrected", fix(small, amount=MAX_AMOUNT), T0)
    over = a.write("income.recorded", {**INCOME, "amount": 1}, T0)
    back = a.write("income.corrected", fix(small, amount=MAX_AMOUNT - 1), T0)
    again = a.write("income.recorded", {**INCOME, "amount": 1}, T0)
    past = a.write("income.corrected", fix(small, amount=MAX_AMOUNT), T0)
    ledger = project(genesis, a.entries + b.entries, check_each=False)
    assert code(ledger, fits) is None and code(ledger, over) == "out-of-range"
    assert code(ledger, back) is None and code(ledger, again) is None
    assert code(ledger, past) == "out-of-range"
    assert ledger.income[(A, "2026-05", "JXC")] == MAX_TOTAL


def test_a_snapshot_keeps_what_was_amended() -> None:
    genesis, (a, b) = _authors()
    income = a.write("income.recorded", INCOME, T0)
    work = a.write("contribution.recorded", WORK, T0)
    a.write("entry.voided", void(income), T0)
    a.write("contribution.corrected", fix(work, minutes=10), T0)
    held = Held()
    ledger = Ledger(genesis, held)
    for e in a.entries + b.entries:
        held.add(e)
        ledger.receive(e)
    restored = Ledger.restore(genesis, held, ledger.encode())
    assert restored.amended == ledger.amended and len(ledger.amended) == 2
    late = a.write("entry.voided", void(income), T0)  # already voided, after the restore
    held.add(late)
    restored.receive(late)
    assert restored.invalid[(late.author, late.seq)][0] == "already-voided"
    # The effect is part of the state digest.
    without = project(genesis, a.entries[:-3] + b.entries)
    assert without.digest() != ledger.digest()


def test_a_redacted_correction_or_original_still_settles() -> None:
    """An export redacts a member's bodies: a correction whose original is redacted
    replaces nothing it can see, and the feed after it settles as before."""
    genesis, (a, b) = _authors()
    A = a.signer.public_key
    work = a.write("contribution.recorded", WORK, T0)
    a.write("contribution.corrected", fix(work, minutes=10), T0)
    then = a.write("entry.voided", void(work), T0)
    order = [redact(e) if e.seq == work.seq else e for e in a.entries] + b.entries
    ledger = project(genesis, order)
    assert code(ledger, then) is None and ledger.contributions == {}
    assert ledger.amended[(A, work.seq)] == (then.seq, True)


def test_valueflows_shows_the_figures_in_force() -> None:
    genesis, (a, b) = _authors()
    kept = a.write("contribution.recorded", WORK, T0)
    gone = a.write("contribution.recorded", WORK, T0)
    a.write("contribution.corrected", fix(kept, minutes=150, date="2026-01-02",
                                          note="fixed"), T0)
    a.write("entry.voided", void(gone), T0)
    ledger = project(genesis, a.entries + b.entries)
    work = [n for n in iter_events(a.entries, ledger) if n["action"] == "vf:work"]
    assert len(work) == 1
    assert work[0]["@id"].endswith(f":{kept.seq}:{kept.hash.hex()}")
    assert work[0]["effortQuantity"]["hasNumericalValue"] == "2.5"
    assert work[0]["hasPointInTime"] == "2026-01-02T00:00:00Z"
    assert work[0]["note"] == "fixed"


def test_amendments_in_any_arrival_order_give_one_ledger() -> None:
    """Two LABs acknowledging, correcting and voiding around each other's entries."""
    rng = random.Random(7)
    genesis, (a, b, c) = world(3, 8)
    B = b.signer.public_key
    works = [a.write("contribution.recorded", {**WORK, "for_lab": B, "minutes": m}, T0)
             for m in (10, 20, 30)]
    acks = [b.write("contribution.acknowledged", {"contribution": w.ref.as_list()}, T0)
            for w in works]
    a.write("contribution.corrected", fix(works[0], minutes=11), T0)
    a.write("entry.voided", void(works[1]), T0)
    b.write("entry.voided", void(acks[2]), T0)
    c.write("entry.voided", void(works[2]), T0)  # another LAB's: not-own-entry
    feeds = [a.entries, b.entries, c.entries]
    digests = set()
    for _ in range(6):
        cursors, order = [0, 0, 0], []
        while any(cursors[i] < len(f) for i, f in enumerate(feeds)):
            i = rng.choice([i for i, f in enumerate(feeds) if cursors[i] < len(f)])
            order.append(feeds[i][cursors[i]])
            cursors[i] += 1
        digests.add(project(genesis, order).digest())
    assert len(digests) == 1


def test_an_export_redacts_a_members_corrections_too() -> None:
    from node.bundle import is_about

    _, (a, _b) = _authors()
    work = a.write("contribution.recorded", WORK, T0)
    fixed = a.write("contribution.corrected", fix(work, minutes=10), T0)
    gone = a.write("entry.voided", void(work), T0)
    assert is_about(work, "m") and is_about(fixed, "m")
    assert not is_about(fixed, "other") and not is_about(gone, "m")  # no personal data
