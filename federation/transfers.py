"""Transfers of mutual credit between LABs: offers, answers and reclaims.

The rules (DESIGN.md, "Ledger rules"), kept here for :class:`~federation.ledger.Ledger`:

- ``transfer.offered`` debits the payer at once and must keep its balance >=
  -credit_limit (the limit in force at the offer's timestamp: the genesis's, or a
  rule change passed by vote, :func:`credit_limit`);
- ``transfer.accepted`` by the payee credits the payee; ``transfer.declined`` lets
  the payer record ``transfer.reclaimed``, which credits it back. Each offer is
  answered at most once, in the payee's feed order;
- an offer to a LAB that left or was removed, unanswered in the part of its feed
  that counts, is declined by that departure: the payer reclaims it naming the
  ``lab.left`` entry or the removal proposal as the decline.

Each function checks one entry against the ledger and returns its effect, or raises
:class:`RuleViolation` or :class:`PendingReference`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from federation.errors import PendingReference, RuleViolation
from federation.kinds import check_total
from protocol.entry import Ref, where

if TYPE_CHECKING:
    from federation.ledger import Ledger

OFFERED, ACCEPTED, DECLINED, RECLAIMED = "offered", "accepted", "declined", "reclaimed"
OUTSTANDING = (OFFERED, DECLINED)
Effect = Callable[[], None]


@dataclass(slots=True)
class Offer:
    """A valid ``transfer.offered`` and what became of it."""

    payer: bytes
    seq: int
    hash: bytes
    payee: bytes
    amount: int
    unit: str
    ts_us: int
    state: str = OFFERED
    answer: tuple[bytes, int] | None = None
    answer_hash: bytes | None = None

    def ref(self) -> Ref:
        return Ref(self.payer, self.seq, self.hash)

    def row(self) -> list[Any]:
        answer = list(self.answer) if self.answer else None
        return [self.payer, self.seq, self.hash, self.payee, self.amount, self.unit,
                self.ts_us, self.state, answer, self.answer_hash]

    @classmethod
    def from_row(cls, row: list[Any]) -> Offer:
        answer = (row[8][0], row[8][1]) if row[8] else None
        return cls(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], answer,
                   row[9])


def credit_limit(ledger: Ledger, unit: str, ts_us: int) -> int:
    """The credit limit in ``unit`` for an offer timestamped ``ts_us``."""
    changes = ledger.outcome.limits.get(unit)
    limit = ledger.limits.get(unit, 0)
    if changes:
        for at, value in changes:
            if at <= ts_us:
                limit = value
    return limit

def offer(ledger: Ledger, author: bytes, seq: int, body: Mapping[str, Any], ts_us: int,
           digest: bytes) -> Effect:
    unit, amount, payee = body["unit"], body["amount"], body["to"]
    ledger._unit(unit)
    if payee not in ledger.roster:
        raise RuleViolation("unknown-lab", "the payee is not a member LAB")
    if payee == author:
        raise RuleViolation("self-transfer", "a LAB cannot pay itself")
    unit, payee = ledger._same[unit], ledger._same[payee]
    limit = credit_limit(ledger, unit, ts_us)
    after = ledger.balance(author, unit) - amount
    if after < -limit:
        raise RuleViolation(
            "over-credit-limit",
            f"offer of {amount} {unit} would take the balance to {after}, "
            f"below the credit limit of -{limit}")
    check_total(after, f"the balance in {unit}")

    def effect() -> None:
        ledger.balances[(author, unit)] = after
        ledger.offers[(author, seq)] = Offer(author, seq, digest, payee, amount, unit, ts_us)
    return effect

def offer_at(ledger: Ledger, ref: Ref) -> Offer:
    ledger._referenced(ref)
    offer = ledger.offers.get((ref.author, ref.seq))
    if offer is None:
        reason = ledger.invalid.get((ref.author, ref.seq))
        raise RuleViolation("bad-reference", f"{where(ref.author, ref.seq)} is not a "
                            + ("valid offer" if reason else "transfer offer"))
    ledger._check_hash(ref, offer.hash)
    return offer

def answer(ledger: Ledger, author: bytes, seq: int, kind: str, body: Mapping[str, Any],
            digest: bytes) -> Effect:
    offer = offer_at(ledger, Ref.from_value(body["offer"]))
    if offer.payee != author:
        raise RuleViolation("not-payee", "only the payee may answer an offer")
    if offer.state != OFFERED:
        # The message must not name the offer's current state: that depends on
        # arrival order (declined vs reclaimed); the fact of an answer does not.
        raise RuleViolation("already-answered",
                            f"offer {where(offer.payer, offer.seq)} was already answered")

    key = (author, offer.unit)
    credited = (check_total(ledger.balance(*key) + offer.amount, f"the balance in {offer.unit}")
                if kind == "transfer.accepted" else 0)

    def effect() -> None:
        offer.answer, offer.answer_hash = (author, seq), digest
        if kind == "transfer.accepted":
            offer.state = ACCEPTED
            ledger.balances[key] = credited
        else:
            offer.state = DECLINED
    return effect

def reclaim(ledger: Ledger, author: bytes, body: Mapping[str, Any]) -> Effect:
    offer = offer_at(ledger, Ref.from_value(body["offer"]))
    decline = Ref.from_value(body["decline"])
    if offer.payer != author:
        raise RuleViolation("not-payer", "only the payer may reclaim an offer")
    payee = ledger.outcome.members.get(offer.payee)
    if payee is not None and payee.gone_by is not None and (
            (decline.author, decline.seq) == (payee.gone_by.author, payee.gone_by.seq)):
        return _reclaim_from_gone(ledger, offer, decline, payee.gone_by, payee.last or 0)
    ledger._referenced(decline)
    if offer.state == RECLAIMED:
        raise RuleViolation("already-reclaimed", "this offer was already reclaimed")
    if offer.state != DECLINED or offer.answer != (decline.author, decline.seq):
        raise RuleViolation("not-declined", "the referenced decline is not this offer's "
                            "answer")
    ledger._check_hash(decline, offer.answer_hash or b"")
    key = (author, offer.unit)
    credited = check_total(ledger.balance(*key) + offer.amount, f"the balance in {offer.unit}")

    def effect() -> None:
        offer.state = RECLAIMED
        ledger.balances[key] = credited
    return effect

def _reclaim_from_gone(ledger: Ledger, offer: Offer, decline: Ref, gone: Ref, last: int) -> Effect:
    """An offer to a LAB that left or was removed, unanswered in the part of its
    feed that counts, is declined by its departure (``decline`` names the
    ``lab.left`` entry or the removal proposal): the payer reclaims it."""
    ledger._check_hash(decline, gone.hash)
    if ledger.applied(offer.payee) < last:
        raise PendingReference(Ref(offer.payee, last, b"\0" * 32),
                               f"waits for {where(offer.payee, last)}")
    if offer.state == RECLAIMED:
        raise RuleViolation("already-reclaimed", "this offer was already reclaimed")
    if offer.state != OFFERED:
        raise RuleViolation("not-declined", "the payee answered this offer before it left")
    key = (offer.payer, offer.unit)
    credited = check_total(ledger.balance(*key) + offer.amount, f"the balance in {offer.unit}")

    def effect() -> None:
        offer.state, offer.answer, offer.answer_hash = RECLAIMED, (gone.author,
                                                                    gone.seq), gone.hash
        ledger.balances[key] = credited
    return effect
