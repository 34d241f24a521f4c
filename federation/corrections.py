"""Corrections and voids: a mistake is mended by a new entry; the original stays.

A LAB corrects or cancels an earlier entry of its own feed:

- ``contribution.corrected`` replaces the figures of a ``contribution.recorded``
  (member, stream, minutes, project, note, date). Its body is a whole
  contribution body (checked by the same schema and feed rules) plus ``entry``, the
  corrected entry's ref, and an optional ``reason``. Without a ``date`` it books in
  the month of the original entry's timestamp, as the original did.
- ``income.corrected`` replaces an ``income.recorded`` (amount, unit, period, source)
  the same way.
- ``entry.voided`` (``entry``, ``reason``) cancels a contribution, an income, or an
  acknowledgement (``contribution.acknowledged``; the contribution may then be
  acknowledged again).

Reports, payouts and the ValueFlows export count the figures in force: the latest
correction's, none after a void. Rules, with their codes:

- the entry named is an earlier entry of the same feed (``not-own-entry``,
  ``bad-reference``: :meth:`~federation.kinds.LabState.check`), with the hash named
  and itself valid (``bad-reference``);
- its kind may be amended so (``not-correctable``, :func:`not_amendable`): a
  correction fits one kind; an acknowledgement has no figures, so it is voided, not
  corrected. Transfers are not correctable: an offer and its answers are mutual
  credit with another LAB, which one side cannot undo (decline, reclaim, or offer a
  transfer back). Corrections and voids are not amended themselves: a second
  correction names the original entry and replaces the first;
- a voided entry is neither corrected nor voided again (``already-voided``);
- a correction keeps the LAB a contribution was for (``for-lab-fixed``): that LAB
  acknowledges the contribution as recorded (void it and record it again instead);
- totals stay in range (``out-of-range``, :func:`~federation.kinds.check_total`).

Every rule reads the author's own feed only (the entry named and what earlier
corrections of it did), so the verdict and the effect are the same on every node,
in every arrival order, and in the offline audit. For the same reason an
acknowledgement is judged against the contribution as recorded: its author's later
correction or void does not make it invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from federation.errors import RuleViolation
from federation.kinds import AMENDING, CORRECTION_OF, VOIDABLE, check_total, entry_body
from protocol.entry import Entry, Ref

if TYPE_CHECKING:
    from federation.ledger import Ledger

VOID = "entry.voided"
CORRECTED_BY = {fixed: kind for kind, fixed in CORRECTION_OF.items()}
"""The kind each correction kind corrects."""
Row = tuple[Any, int]
"""A key of one of the ledger's totals and what one entry adds to it."""


def not_amendable(target: str, kind: str | None) -> str | None:
    """Why an entry of kind ``target`` may not be corrected or voided by an entry of
    ``kind`` (``entry.voided``, a correction kind, or None for the correction that
    fits ``target``); None when it may. The reason is said to a person."""
    if target.startswith("transfer."):
        return ("a transfer is mutual credit with another LAB, which one side cannot "
                "correct or void: decline or reclaim the offer, or offer a transfer back")
    if target in AMENDING:
        return (f"this entry is a {target}, which is not corrected or voided itself: "
                "name the entry it corrects")
    if kind == VOID:
        return None if target in VOIDABLE else _only(target)
    fits = CORRECTION_OF.get(target)
    if fits is not None and kind in (None, fits):
        return None
    if target == "contribution.acknowledged":
        return ("an acknowledgement has no figures to correct: void it (and acknowledge "
                "the right contribution)")
    if fits is not None:
        return f"a {kind} cannot correct a {target} (a {fits} does)"
    return _only(target)


def _only(target: str) -> str:
    return (f"a {target} cannot be corrected or voided: only contributions, incomes "
            "and acknowledgements (void only) can")


def in_force(ledger: Ledger, entry: Entry) -> Entry | None:
    """The entry whose figures count for ``entry`` (of a settled feed) now: ``entry``
    itself, its latest correction, or None when it was voided."""
    state = ledger.amended.get((entry.author, entry.seq))
    if state is None:
        return entry
    by, voided = state
    return None if voided else ledger.feeds.entry(entry.author, by)


def amend(ledger: Ledger, author: bytes, seq: int, kind: str,
          body: Mapping[str, Any]) -> Callable[[], None]:
    """The effect of entry ``seq`` of ``author``'s feed, a correction or a void with
    ``body`` (schema and feed rules already checked), on ``ledger``.

    Raises :class:`RuleViolation` when a rule of the module's list refuses it."""
    ref = Ref.from_value(body["entry"])
    target = ledger._lookup(ref)  # held: an earlier entry of this feed
    ledger._check_hash(ref, target.hash)
    key = (author, ref.seq)
    if key in ledger.invalid:
        raise RuleViolation("bad-reference", f"entry {ref.seq} is invalid: it had no "
                            "effect to correct or void")
    problem = not_amendable(target.kind, kind)
    if problem is not None:
        raise RuleViolation("not-correctable", problem)
    state = ledger.amended.get(key)
    if state is not None and state[1]:
        raise RuleViolation("already-voided", f"entry {ref.seq} was voided by entry "
                            f"{state[0]}")
    current = in_force(ledger, target)
    old = entry_body(current) if current is not None else None  # None: redacted here
    void = kind == VOID
    if target.kind == "contribution.acknowledged":
        return _void_acknowledgement(ledger, key, seq, old)
    table: MutableMapping[Any, int]
    old_row: Row | None
    new_row: Row | None
    ts_us = target.header.ts_us
    if target.kind == "contribution.recorded":
        if not void:
            recorded = entry_body(target)
            if recorded is not None and recorded.get("for_lab") != body.get("for_lab"):
                raise RuleViolation("for-lab-fixed", "a correction keeps the LAB the work "
                                    "was for (it may have acknowledged it): void the "
                                    "contribution and record it again")
        table, what = ledger.contributions, "the contributed minutes"
        old_row = (ledger.contribution_key(author, old, ts_us), old["minutes"]) if old else None
        new_row = None if void else (ledger.contribution_key(author, body, ts_us),
                                     body["minutes"])
    else:
        if not void:
            ledger._unit(body["unit"])
        table = ledger.income
        what = "the income" if void else f"the income of {body['period']} in {body['unit']}"
        old_row = ((author, old["period"], old["unit"]), old["amount"]) if old else None
        new_row = None if void else ((author, body["period"], body["unit"]), body["amount"])
    totals = _moved(table, old_row, new_row, what)

    def effect() -> None:
        for row, total in totals.items():
            if total:
                table[row] = total
            else:
                table.pop(row, None)
        ledger.amended[key] = (seq, void)
    return effect


def _moved(table: Mapping[Any, int], old: Row | None, new: Row | None,
           what: str) -> dict[Any, int]:
    """The totals of ``table`` that change when the figures ``old`` are replaced by
    ``new`` (either may be None). Raises :class:`RuleViolation` (``out-of-range``)."""
    totals: dict[Any, int] = {}
    if old is not None:
        totals[old[0]] = table.get(old[0], 0) - old[1]
    if new is not None:
        totals[new[0]] = totals.get(new[0], table.get(new[0], 0)) + new[1]
    return {row: check_total(total, what) for row, total in totals.items()}


def _void_acknowledgement(ledger: Ledger, key: tuple[bytes, int], seq: int,
                          ack: Mapping[str, Any] | None) -> Callable[[], None]:
    """The effect of voiding the acknowledgement at ``key`` (its body ``ack``; None
    when redacted here): the contribution it acknowledged is no longer acknowledged."""
    acked = Ref.from_value(ack["contribution"]) if ack is not None else None

    def effect() -> None:
        if acked is not None and ledger.acks.get((acked.author, acked.seq)) == key:
            del ledger.acks[(acked.author, acked.seq)]
        ledger.amended[key] = (seq, True)
    return effect
