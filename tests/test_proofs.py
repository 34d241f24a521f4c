"""Inclusion and consistency proofs a third party checks offline, with only a LAB id.

``disco prove`` writes them from a node; ``disco audit --proof`` and
``disco audit --consistency`` check them with no node at hand. Any changed byte of
a proof makes it fail; so does another LAB's key, and a checkpoint of a rewritten
history. (The C2SP signed-note format itself is checked against the specification's
published examples in ``test_checkpoint.py``.)
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.checkpoints import CheckpointBook
from node.store import FeedStore, StoreConfig
from protocol import merkle
from protocol.checkpoint import (
    Checkpoint,
    ConsistencyError,
    key_hash,
    origin_for,
    sign_checkpoint,
    verify_checkpoint,
)
from protocol.entry import Entry, sign_entry
from protocol.errors import ProtocolError, VerificationError
from protocol.keys import Signer
from protocol.proofs import (
    encode_consistency,
    verify_consistency_file,
    verify_inclusion_file,
)
from tests.conftest import Cli, Federation, make_federation

T0 = 1_700_000_000_000_000


@dataclass
class Proven:
    fed: Federation
    farm: bytes
    fab: bytes
    proof: Path
    data: bytes
    cli: Cli


@pytest.fixture(scope="module")
def proven(tmp_path_factory: pytest.TempPathFactory) -> Proven:
    """A Farm feed of six entries and a proof of its third, written by ``disco prove``."""
    root = tmp_path_factory.mktemp("proofs")
    fed = make_federation(root, ["Farm", "FabLab"])
    farm, fab = (h.lab_id for h in fed.homes)
    with fed.node(0) as node:
        node.author_many([
            ("member.added", {"handle": "ana", "name": "Ana"}),
            ("contribution.recorded", {"member": "ana", "stream": "care", "minutes": 90}),
            ("contribution.recorded", {"member": "ana", "stream": "love", "minutes": 45}),
            ("transfer.offered", {"to": fab, "amount": 300, "unit": "JXC"}),
            ("member.added", {"handle": "bo", "name": "Bo"}),
        ], T0 + 1)
    cli = Cli(root)
    proof = root / "entry.proof"
    out = cli("prove", f"{farm.hex()[:10]}:3", "--out", str(proof), home=fed.homes[0].path)
    assert "proof written" in out.stdout
    return Proven(fed, farm, fab, proof, proof.read_bytes(), cli)


def _feed(signer: Signer, federation_id: bytes, items: list[tuple[str, dict[str, object]]],
          ts_us: int) -> list[Entry]:
    """A chain of entries signed by ``signer``, from seq 1."""
    entries: list[Entry] = []
    for kind, body in items:
        entries.append(sign_entry(signer, federation_id=federation_id, seq=len(entries) + 1,
                                  prev=entries[-1].hash if entries else None, ts_us=ts_us,
                                  kind=kind, body=body))
    return entries


def _variants(data: bytes) -> list[tuple[int, int, bytes]]:
    """Every copy of ``data`` with one byte XOR 0x01 or XOR 0x80."""
    out = []
    for at in range(len(data)):
        for mask in (0x01, 0x80):
            changed = bytearray(data)
            changed[at] ^= mask
            out.append((at, mask, bytes(changed)))
    return out


# -- inclusion -----------------------------------------------------------------------


def test_an_inclusion_proof_verifies_offline(proven: Proven, tmp_path: Path) -> None:
    # No home: the proof file and the LAB id are all the auditor has.
    cli = Cli(tmp_path)
    result = cli("audit", "--proof", str(proven.proof), "--key", proven.farm.hex())
    assert result.returncode == 0
    assert "proof holds: contribution.recorded" in result.stdout
    doc = cli.json("audit", "--proof", str(proven.proof), "--key", proven.farm.hex())
    assert doc["ok"] is True and doc["kind"] == "contribution.recorded"
    assert doc["ref"].startswith(f"{proven.farm.hex()}:3:") and doc["tree_size"] == 6

    checked = verify_inclusion_file(proven.data, proven.farm)
    assert (checked.entry.author, checked.entry.seq) == (proven.farm, 3)
    assert checked.checkpoint.size == 6
    assert checked.entry.fields() == {"member": "ana", "stream": "care", "minutes": 90}


def test_the_proof_file_is_a_tlog_proof_with_a_signed_checkpoint(proven: Proven) -> None:
    head, _, note = proven.data.partition(b"\n\n")
    lines = head.decode("ascii").split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1].startswith("extra ") and lines[2] == "index 2"
    assert len(lines[3:]) == 3  # leaf 2 of a tree of 6: three sibling hashes
    assert all(len(base64.b64decode(h, validate=True)) == 32 for h in lines[3:])
    fid = proven.fed.genesis.federation_id
    origin = origin_for(fid, proven.farm)
    body, _, signature = note.decode().rpartition("\n\n")
    assert body.split("\n")[:2] == [origin, "6"]
    assert signature.startswith(f"\u2014 {origin} ") and signature.endswith("\n")
    raw = base64.b64decode(signature.rstrip("\n").rsplit(" ", 1)[1], validate=True)
    assert raw[:4] == key_hash(origin, proven.farm) and len(raw) == 4 + 64
    assert verify_checkpoint(note, proven.farm, fid).size == 6


def test_any_modified_byte_of_an_inclusion_proof_fails(proven: Proven) -> None:
    accepted, other = [], []
    for at, mask, changed in _variants(proven.data):
        try:
            verify_inclusion_file(changed, proven.farm)
        except ProtocolError:
            continue
        except Exception as e:  # anything but a ProtocolError is a bug
            other.append((at, mask, repr(e)))
            continue
        accepted.append((at, mask))
    assert accepted == [] and other == []
    assert len(proven.data) > 900


def test_a_proof_checked_with_another_labs_key_fails(proven: Proven, tmp_path: Path) -> None:
    with pytest.raises(VerificationError):
        verify_inclusion_file(proven.data, proven.fab)
    cli = Cli(tmp_path)
    result = cli("audit", "--proof", str(proven.proof), "--key", proven.fab.hex(), check=False)
    assert result.returncode == 1
    assert "proof FAILED" in result.stderr and "Traceback" not in result.stderr
    doc = json.loads(cli("audit", "--proof", str(proven.proof), "--key", proven.fab.hex(),
                         "--json", check=False).stdout)
    assert doc["ok"] is False and "not this LAB's" in doc["error"]


def test_a_proof_under_a_checkpoint_signed_by_another_key_fails(proven: Proven) -> None:
    # Same entry, same path, but the checkpoint re-signed by the FabLab's key.
    head, _, note = proven.data.partition(b"\n\n")
    fid = proven.fed.genesis.federation_id
    cp = verify_checkpoint(note, proven.farm, fid)
    forged = sign_checkpoint(cp, proven.fed.homes[1].signer()).encode()
    with pytest.raises(VerificationError):
        verify_inclusion_file(head + b"\n\n" + forged, proven.farm)


# -- consistency ---------------------------------------------------------------------


def test_consistency_between_two_checkpoints_and_a_rewritten_history(tmp_path: Path) -> None:
    fed = make_federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0].lab_id
    home = fed.homes[0].path
    fid = fed.genesis.federation_id
    cli = Cli(tmp_path)
    with fed.node(0) as node:
        node.author_many([("member.added", {"handle": "ana", "name": "Ana"}),
                          ("contribution.recorded",
                           {"member": "ana", "stream": "care", "minutes": 90})], T0 + 1)
    old = tmp_path / "old.checkpoint"
    cli("checkpoint", "--out", str(old), home=home)
    old_cp = verify_checkpoint(old.read_bytes(), farm, fid)
    assert old_cp.size == 3

    with fed.node(0) as node:
        node.author_many([("member.added", {"handle": "bo", "name": "Bo"}),
                          ("contribution.recorded",
                           {"member": "bo", "stream": "love", "minutes": 30}),
                          ("member.updated", {"handle": "ana", "name": "Ana R."})], T0 + 2)
    new = tmp_path / "new.consistency"
    cli("prove", "--from", str(old), "--out", str(new), home=home)

    # Checked offline, with nothing but the two files (and, optionally, the LAB id).
    offline = Cli(tmp_path / "elsewhere")
    offline.cwd.mkdir()
    result = offline("audit", "--consistency", str(old), str(new))
    assert result.returncode == 0 and "extends the tree of 3" in result.stdout
    doc = offline.json("audit", "--consistency", str(old), str(new), "--key", farm.hex())
    assert doc == {"ok": True, "old_size": 3, "new_size": 6}

    # Any modified byte of the consistency proof fails.
    data = new.read_bytes()
    accepted, other = [], []
    for at, mask, changed in _variants(data):
        try:
            verify_consistency_file(old.read_bytes(), changed, farm, fid)
        except ProtocolError:
            continue
        except Exception as e:
            other.append((at, mask, repr(e)))
            continue
        accepted.append((at, mask))
    assert accepted == [] and other == []

    # The same key signs a second chain, in another store, and a checkpoint of it
    # at the old size: the LAB rewrote its history.
    signer = fed.homes[0].signer()
    rewritten = _feed(signer, fid, [
        ("lab.joined", {"federation": fid, "name": "Farm"}),
        ("member.added", {"handle": "ana", "name": "Ana"}),
        ("contribution.recorded", {"member": "ana", "stream": "care", "minutes": 900}),
    ], T0 + 1)
    store = FeedStore(StoreConfig("sqlite", path=tmp_path / "rewritten.sqlite"))
    try:
        store.insert(rewritten)
        forged_cp, forged_note = CheckpointBook(store, fid).sign_own(signer)
    finally:
        store.close()
    assert forged_cp.size == old_cp.size and forged_cp.root != old_cp.root
    forged = tmp_path / "rewritten.checkpoint"
    forged.write_bytes(forged_note)
    result = offline("audit", "--consistency", str(old), str(forged), check=False)
    assert result.returncode == 1, result.stderr
    assert "rewrote its history" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(ConsistencyError) as caught:
        verify_consistency_file(old.read_bytes(), forged_note, farm, fid)
    assert caught.value.proves_fork

    # A longer rewritten chain cannot be shown to extend the old checkpoint either.
    longer = _feed(signer, fid, [
        ("lab.joined", {"federation": fid, "name": "Farm"}),
        ("member.added", {"handle": "ana", "name": "Ana"}),
        ("contribution.recorded", {"member": "ana", "stream": "care", "minutes": 900}),
        ("member.added", {"handle": "bo", "name": "Bo"}),
        ("member.added", {"handle": "cy", "name": "Cy"}),
    ], T0 + 1)
    leaves = [merkle.leaf_hash(e.hash) for e in longer]
    cp = Checkpoint(origin_for(fid, farm), len(leaves), merkle.root_from_leaf_hashes(leaves))
    note = sign_checkpoint(cp, signer).encode()
    proof = encode_consistency(old_cp.size, merkle.consistency_proof(leaves, old_cp.size), note)
    with pytest.raises(ConsistencyError):
        verify_consistency_file(old.read_bytes(), proof, farm, fid)
    longer_file = tmp_path / "longer.consistency"
    longer_file.write_bytes(proof)
    result = offline("audit", "--consistency", str(old), str(longer_file), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
