"""``disco export``: write an offline bundle of the feeds this node holds.

Streams the store's notification log into :class:`federation.bundle.BundleWriter`;
nothing is loaded whole. Before writing, the node signs a fresh checkpoint of its own
feed; the latest checkpoint held of each feed goes before all entries. ``redact``
drops the bodies of one member's entries (personal data): their headers, hashes and
signatures still verify, so the bundle still audits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

from federation.bundle import BundleWriter
from federation.errors import RuleViolation
from federation.kinds import entry_body
from node.checkpoints import CheckpointBook
from node.lab import LabNode
from protocol.entry import Entry, decode_entry, redact


def is_about(entry: Entry, handle: str) -> bool:
    """True for the entries that carry personal data of member ``handle``."""
    if entry.kind not in ("member.added", "member.updated", "contribution.recorded",
                          "contribution.corrected"):
        return False
    try:
        body = entry_body(entry)
    except RuleViolation:
        return False
    if body is None:
        return False
    return body.get("handle") == handle or body.get("member") == handle


def export_bundle(node: LabNode, out: BinaryIO, now_us: int, *,
                  authors: Iterable[bytes] | None = None,
                  redact_member: str | None = None) -> int:
    """Write a bundle of the given feeds (default: every roster feed held).

    Returns the number of entries written.
    """
    genesis = node.require_genesis()
    book = CheckpointBook(node.store, genesis.federation_id, node.keys_of)
    if node.signer is not None and node.signs_checkpoints():
        book.sign_own(node.signer, node.lab_id)
    writer = BundleWriter(out, genesis.federation_id, now_us)
    writer.genesis(genesis.encode())
    for proof in node.store.fork_proofs().values():
        writer.fork(proof.encode())
    chosen = list(authors or node.feeds())
    for author in chosen:
        # (a peer's checkpoint may cover entries not held yet: the latest one that
        # covers no more than the entries written is the one that can be checked)
        held = book.latest(author, max_size=node.store.head(author)[0])
        if held is not None:
            writer.checkpoint(author, held[1])
    # The entries in the order this node stored them (each feed in seq order): an
    # auditor then mostly meets an entry after those it references, as this node did.
    feeds = {author.hex() for author in chosen}
    for _, originator, _, raw in node.store.notifications():
        if originator not in feeds:
            continue
        if redact_member:
            entry = decode_entry(raw, _trusted=True)
            if is_about(entry, redact_member):
                raw = redact(entry).raw
        writer.entry(raw)
    writer.close()
    return writer.entries
