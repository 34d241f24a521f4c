"""The node's side of key recoveries and fork repairs (:mod:`federation.governance`
decides them): which received entries wait for a vote, and what a repair in force
sets aside in the store."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from federation.ledger import Ledger
from node.store import FeedStore
from protocol.entry import Entry, check_signature, decode_entry
from protocol.errors import BadSignatureError, ProtocolError


def awaits_key(entry: Entry, ledger: Ledger, raws: Iterable[bytes]) -> bool:
    """Whether ``entry``, whose signature fails under its LAB's key in force here,
    is signed with a key a recovery or repair proposal names for its LAB (held, or in
    this batch ``raws``): its feed then waits for the vote rather than being refused."""
    proposals = [a.body for a in ledger.acts.values() if a.kind == "proposal.made"]
    for raw in raws:
        try:
            other = decode_entry(raw)
            body = other.fields() if other.kind == "proposal.made" else None
        except ProtocolError:
            continue
        if body is not None:
            proposals.append(body)
    for body in proposals:
        if (body.get("action") in ("recover", "repair") and body.get("lab") == entry.author
                and isinstance(body.get("key"), bytes) and len(body["key"]) == 32):
            try:
                check_signature(entry, body["key"])
                return True
            except ProtocolError:
                continue
    return False


def set_aside_stale_branches(store: FeedStore, ledger: Ledger,
                             checked: dict[Any, Any]) -> bool:
    """Set aside, as evidence, what each repair in force says no longer belongs to a
    forked feed: the entries after the one it keeps that the new key did not sign
    (:meth:`FeedStore.set_aside`); and what each recovery says the replaced key no
    longer signs: its entries from the recovery's first seq. True when anything
    moved (the caller builds the ledger again). One signature check per repaired or
    recovered feed and store head: ``checked`` remembers what was looked at."""
    moved = False
    proofs = store.fork_proofs()
    for lab, keep in ledger.outcome.repairs.items():
        proof = proofs.get(lab)
        head = store.head(lab)
        if proof is None or not ledger.is_repaired(lab, proof.seq) or head[0] <= keep.seq:
            continue
        if checked.get(lab) == (keep, head):
            continue
        kept = store.get(lab, keep.seq) if keep.seq else None
        after = store.get(lab, keep.seq + 1)
        if (keep.seq and (kept is None or kept.hash != keep.hash)) or after is None:
            continue
        key = ledger.outcome.key_at(lab, keep.seq + 1) or lab
        try:
            check_signature(after, key)
        except BadSignatureError:
            store.set_aside(lab, keep.seq + 1, keep.hash.hex()[:16])
            moved = True
        checked[lab] = (keep, store.head(lab))
    for lab, from_seq in ledger.outcome.recoveries.items():
        # Entries the replaced key signed from the recovery's first seq on (stored
        # before the vote passed here, perhaps a thief's) are set aside the same way.
        head = store.head(lab)
        if head[0] < from_seq or checked.get((lab, "recover")) == (from_seq, head):
            continue
        first = store.get(lab, from_seq)
        key = ledger.outcome.key_at(lab, from_seq) or lab
        try:
            if first is not None:
                check_signature(first, key)
        except BadSignatureError:
            store.set_aside(lab, from_seq, f"recover-{from_seq}")
            moved = True
        checked[(lab, "recover")] = (from_seq, store.head(lab))
    return moved
