"""Proof files a third party checks with nothing else at hand.

Inclusion (modelled on C2SP tlog-proof)::

    c2sp.org/tlog-proof@v1
    extra <base64 entry bytes>
    index <leaf index = seq - 1>
    <base64 proof hash>            one per line
    <blank line>
    <signed checkpoint note>

The leaf is the RFC 9162 leaf hash of the entry hash, so the entry (in ``extra``)
proves itself: its signature, its position and its inclusion under a checkpoint
signed by the same LAB key.

Consistency (same shape)::

    disco-ledger/consistency@v1
    old <size>
    <base64 proof hash>            one per line
    <blank line>
    <signed checkpoint note of the newer tree>

Parsing is strict (canonical base64, decimal without leading zeros, exact lines),
so any modified byte makes a proof fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol import merkle
from protocol.checkpoint import (
    Checkpoint,
    check_consistency,
    check_inclusion,
    decode_b64,
    decode_decimal,
    encode_b64,
    verify_checkpoint,
)
from protocol.entry import Entry, check_signature, decode_entry
from protocol.errors import DecodeError, VerificationError

INCLUSION_HEADER = "c2sp.org/tlog-proof@v1"
CONSISTENCY_HEADER = "disco-ledger/consistency@v1"
MAX_PROOF_FILE = 256 * 1024


class ProofFileError(DecodeError):
    """The proof file is malformed."""


def _unb64(what: str, text: str) -> bytes:
    return decode_b64(what, text, ProofFileError)


def _decimal(what: str, text: str) -> int:
    return decode_decimal(what, text, ProofFileError)


def encode_inclusion(entry: Entry, proof: Sequence[bytes], note: bytes) -> bytes:
    """The inclusion proof file of ``entry`` under the checkpoint ``note``."""
    lines = [INCLUSION_HEADER, f"extra {encode_b64(entry.raw)}", f"index {entry.seq - 1}",
             *(encode_b64(h) for h in proof)]
    return ("\n".join(lines) + "\n\n").encode() + note


def encode_consistency(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """A consistency proof file from ``old_size`` to the checkpoint ``note``."""
    lines = [CONSISTENCY_HEADER, f"old {old_size}", *(encode_b64(h) for h in proof)]
    return ("\n".join(lines) + "\n\n").encode() + note


def _split(data: bytes, header: str) -> tuple[list[str], bytes]:
    if len(data) > MAX_PROOF_FILE:
        raise ProofFileError(f"proof file over {MAX_PROOF_FILE} bytes")
    head, sep, note = data.partition(b"\n\n")
    if not sep:
        raise ProofFileError("proof file: no blank line before the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise ProofFileError("proof file: non-ASCII characters in the proof") from None
    if lines[0] != header:
        raise ProofFileError(f"proof file: first line must be {header!r}")
    return lines[1:], note


def _hashes(lines: Sequence[str]) -> list[bytes]:
    out = []
    for i, line in enumerate(lines):
        h = _unb64(f"proof hash {i}", line)
        if len(h) != merkle.HASH_SIZE:
            raise ProofFileError(f"proof hash {i}: got {len(h)} bytes, want 32")
        out.append(h)
    return out


@dataclass(frozen=True)
class InclusionResult:
    entry: Entry
    checkpoint: Checkpoint


def verify_inclusion_file(data: bytes, lab_id: bytes) -> InclusionResult:
    """Check an inclusion proof file against the LAB key ``lab_id``.

    Raises :class:`ProofFileError` (malformed) or a ``VerificationError`` subclass:
    the entry is not the LAB's, its signature fails, the checkpoint's signature
    fails, or the proof does not lead to the checkpoint's root.
    """
    lines, note = _split(data, INCLUSION_HEADER)
    if len(lines) < 2 or not lines[0].startswith("extra ") or not lines[1].startswith("index "):
        raise ProofFileError("proof file: want 'extra' and 'index' lines")
    entry = decode_entry(_unb64("extra", lines[0][6:]))
    index = _decimal("index", lines[1][6:])
    if entry.author != lab_id:
        raise VerificationError("proof file: the entry is not this LAB's")
    if index != entry.seq - 1:
        raise VerificationError(f"proof file: index {index} is not the entry's seq "
                                f"{entry.seq} - 1")
    check_signature(entry)
    checkpoint = verify_checkpoint(note, lab_id, entry.header.federation_id)
    check_inclusion(checkpoint, merkle.leaf_hash(entry.hash), index, _hashes(lines[2:]))
    return InclusionResult(entry, checkpoint)


def verify_consistency_file(old_note: bytes, data: bytes, lab_id: bytes,
                            federation_id: bytes) -> tuple[Checkpoint, Checkpoint]:
    """Check that the newer checkpoint in ``data`` extends ``old_note``.

    ``data`` may be a consistency proof file or a bare checkpoint note (then the
    sizes must be equal). Raises ProofFileError or a VerificationError subclass
    (``ConsistencyError`` when the LAB's history was rewritten).
    """
    old = verify_checkpoint(old_note, lab_id, federation_id)
    if data.startswith(CONSISTENCY_HEADER.encode()):
        lines, note = _split(data, CONSISTENCY_HEADER)
        if not lines or not lines[0].startswith("old "):
            raise ProofFileError("consistency file: want an 'old' line")
        if _decimal("old", lines[0][4:]) != old.size:
            raise VerificationError("consistency file: made for another old size")
        proof = _hashes(lines[1:])
    else:
        note, proof = data, []
    new = verify_checkpoint(note, lab_id, federation_id)
    check_consistency(old, new, proof)
    return old, new


def origin_ids(note: bytes) -> tuple[bytes, bytes]:
    """(federation id, LAB id) named by a checkpoint note's origin line."""
    first = note.split(b"\n", 1)[0].decode("ascii", "replace")
    parts = first.split("/")
    try:
        if len(parts) != 3 or parts[0] != "disco-ledger":
            raise ValueError
        fid, lab = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
        if len(fid) != 32 or len(lab) != 32:
            raise ValueError
    except ValueError:
        raise ProofFileError("checkpoint: origin is not disco-ledger/<federation>/<lab>") \
            from None
    return fid, lab
