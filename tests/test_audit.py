"""Offline audit of export bundles: a clean bundle passes, any tampering is named.

A federation of three LABs (members, contributions, a transfer offered and accepted,
feeds moved between nodes by ``ingest``) is exported once through the real ``disco``
command. Tampered bundles are rewritten from its records with
:class:`~federation.bundle.BundleWriter`, which recomputes the end digest, so each
tampering must be caught by the entry and checkpoint checks themselves.
"""

from __future__ import annotations

import base64
import io
import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest

from federation.audit import AuditReport, audit_bundle
from federation.bundle import BundleError, BundleWriter, read_records
from federation.genesis import Lab, create_genesis
from node.bundle import export_bundle
from node.checkpoints import CheckpointBook
from node.cli import main
from node.cli.common import run_main
from protocol import canonical, merkle
from protocol.checkpoint import Checkpoint, origin_for, sign_checkpoint
from protocol.entry import Entry, decode_entry, sign_entry
from protocol.keys import Signer
from tests.conftest import Cli, Federation, make_federation

T0 = 1_700_000_000_000_000
LIMIT = 10_000  # JXC 100.00 in minor units
ANA = "Ana Ruiz-Personal"

Records = list[tuple[str, list[Any]]]


# -- building ------------------------------------------------------------------


def _copy(fed: Federation, src: int, dst: int) -> None:
    """Move ``src``'s own feed into ``dst`` (as gossip would)."""
    author = fed.homes[src].lab_id
    with fed.node(src) as s, fed.node(dst) as d:
        d.ingest(raw for _, raw in s.store.read_raw(author))


def _share_checkpoints(fed: Federation, into: int) -> None:
    """Every other LAB signs a checkpoint of its feed; node ``into`` keeps it."""
    fid = fed.genesis.federation_id
    with fed.node(into) as holder:
        book = CheckpointBook(holder.store, fid)
        for i in range(len(fed.homes)):
            if i == into:
                continue
            with fed.node(i) as node:
                assert node.signer is not None
                _, note = CheckpointBook(node.store, fid).sign_own(node.signer)
            assert book.accept(fed.homes[i].lab_id, note) is None


@dataclass
class World:
    fed: Federation
    ids: list[bytes]
    signers: list[Signer]
    bundle: Path
    data: bytes
    cli: Cli

    @property
    def farm(self) -> bytes:
        return self.ids[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("audit")
    fed = make_federation(root, ["Farm", "FabLab", "LandTrust"], credit_limit=LIMIT)
    ids = [h.lab_id for h in fed.homes]
    with fed.node(0) as farm:
        farm.author_many([
            ("member.added", {"handle": "ana", "name": ANA}),
            ("member.added", {"handle": "bo", "name": "Bo"}),
            ("contribution.recorded", {"member": "ana", "stream": "care", "minutes": 90}),
            ("contribution.recorded", {"member": "bo", "stream": "love", "minutes": 60,
                                       "note": "greenhouse"}),
            ("transfer.offered", {"to": ids[1], "amount": 2500, "unit": "JXC"}),
        ], T0 + 1)
        offer = farm.store.get(ids[0], 6)
        assert offer is not None and offer.kind == "transfer.offered"
    _copy(fed, 0, 1)
    with fed.node(1) as fab:
        fab.author_many([
            ("member.added", {"handle": "kofi", "name": "Kofi"}),
            ("contribution.recorded", {"member": "kofi", "stream": "livelihood",
                                       "minutes": 30, "for_lab": ids[0]}),
            ("transfer.accepted", {"offer": offer.ref.as_list()}),
        ], T0 + 2)
    with fed.node(2) as trust:
        trust.author_many([
            ("member.added", {"handle": "zed", "name": "Zed"}),
            ("contribution.recorded", {"member": "zed", "stream": "care", "minutes": 15}),
        ], T0 + 3)
    _copy(fed, 1, 0)
    _copy(fed, 2, 0)
    _share_checkpoints(fed, 0)
    cli = Cli(root)
    bundle = root / "clean.bundle"
    cli("export", "--out", str(bundle), home=fed.homes[0].path)
    return World(fed, ids, [h.signer() for h in fed.homes], bundle, bundle.read_bytes(), cli)


# -- reading and rewriting bundles ------------------------------------------------


def _records(data: bytes) -> Records:
    out = []
    for record in read_records(io.BytesIO(data)):
        assert record.kind != "problem", record.fields
        out.append((record.kind, list(record.fields)))
    return out


def _write(records: Records) -> bytes:
    """A bundle of these records, with a freshly computed end record."""
    kind, fields = records[0]
    assert kind == "bundle"
    out = io.BytesIO()
    writer = BundleWriter(out, fields[1], fields[2])
    for kind, fields in records[1:]:
        getattr(writer, kind)(*fields)
    writer.close()
    return out.getvalue()


def _find(records: Records, author: bytes, seq: int) -> int:
    for i, (kind, fields) in enumerate(records):
        if kind == "entry":
            entry = decode_entry(fields[0])
            if entry.author == author and entry.seq == seq:
                return i
    raise AssertionError(f"no entry {author.hex()[:8]}:{seq} in the bundle")


def _checkpoint_at(records: Records, author: bytes) -> int:
    for i, (kind, fields) in enumerate(records):
        if kind == "checkpoint" and fields[0] == author:
            return i
    raise AssertionError("no checkpoint of that author in the bundle")


def _feed(records: Records, author: bytes) -> list[Entry]:
    entries = [decode_entry(f[0]) for k, f in records if k == "entry"]
    return [e for e in entries if e.author == author]


def _repack(raw: bytes, change: Callable[[list[Any]], None]) -> bytes:
    """The entry's msgpack array, changed in place by ``change``, re-encoded."""
    value = msgpack.unpackb(raw, raw=False)
    change(value)
    return bytes(msgpack.packb(value, use_bin_type=True))


def _flip(data: bytes, at: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[at] ^= 1 << bit
    return bytes(out)


def _audit(data: bytes) -> AuditReport:
    return audit_bundle(io.BytesIO(data))


def _found(violations: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    return {(v["code"], v["author"], v["seq"]) for v in violations}


def _disco(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The ``disco`` command run in this process (same code as the console script)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, list(args))
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return code if isinstance(code, int) else 1, out, err


# -- a clean bundle --------------------------------------------------------------


def test_a_clean_bundle_audits_with_exit_0(world: World) -> None:
    result = world.cli("audit", str(world.bundle))
    assert result.returncode == 0
    assert "audit passed" in result.stdout
    assert "13 entries in 3 feeds, 3 checkpoints, 0 fork proofs, 0 redacted" in result.stdout

    report = world.cli.json("audit", str(world.bundle))
    assert {"ok", "entries", "violations", "redacted"} <= set(report)
    assert report["ok"] is True and report["violations"] == []
    assert report["entries"] == 13 and report["redacted"] == 0
    assert report["federation_id"] == world.fed.genesis.federation_id.hex()
    assert report["feeds"] == {world.ids[0].hex(): 6, world.ids[1].hex(): 4,
                               world.ids[2].hex(): 3}
    assert report["checkpoints"] == 3
    assert report["balances"][world.ids[0].hex()] == {"JXC": -2500}
    assert report["balances"][world.ids[1].hex()] == {"JXC": 2500}


def test_the_bundle_holds_the_signed_checkpoints_and_every_feed(world: World) -> None:
    records = _records(world.data)
    kinds = [k for k, _ in records]
    assert kinds[:2] == ["bundle", "genesis"] and kinds.count("entry") == 13
    assert kinds.count("checkpoint") == 3
    # Every checkpoint comes before every entry; entries are in the order the
    # exporting node stored them (each feed in seq order).
    assert max(i for i, (k, _) in enumerate(records) if k == "checkpoint") < kinds.index("entry")
    with world.fed.node(0) as node:
        stored = [raw for _, originator, _, raw in node.store.notifications()
                  if originator in {a.hex() for a in world.ids}]
    assert [f[0] for k, f in records if k == "entry"] == stored
    assert _write(records) == world.data  # rewriting an untouched bundle changes nothing


# -- tampered bundles --------------------------------------------------------------


def _tamper_signature(w: World, records: Records) -> tuple[str, int]:
    i = _find(records, w.farm, 3)

    def change(v: list[Any]) -> None:
        v[1] = _flip(v[1], 17, 3)

    records[i] = ("entry", [_repack(records[i][1][0], change)])
    return "bad-signature", 3


def _tamper_header(w: World, records: Records) -> tuple[str, int]:
    i = _find(records, w.farm, 3)

    def change(v: list[Any]) -> None:
        v[0][5] ^= 1 << 20  # ts_us: a different instant, same encoding size

    records[i] = ("entry", [_repack(records[i][1][0], change)])
    return "bad-signature", 3


def _tamper_header_prev(w: World, records: Records) -> tuple[str, int]:
    i = _find(records, w.farm, 4)

    def change(v: list[Any]) -> None:
        v[0][4] = _flip(v[0][4], 0, 7)

    records[i] = ("entry", [_repack(records[i][1][0], change)])
    return "broken-chain", 4


def _tamper_body(w: World, records: Records) -> tuple[str, int]:
    i = _find(records, w.farm, 3)

    def change(v: list[Any]) -> None:
        v[2] = _flip(v[2], len(v[2]) - 1, 0)  # minutes 90 -> 91

    records[i] = ("entry", [_repack(records[i][1][0], change)])
    return "bad-entry", 3


def _tamper_drop(w: World, records: Records) -> tuple[str, int]:
    del records[_find(records, w.farm, 3)]
    return "broken-chain", 4


def _tamper_swap(w: World, records: Records) -> tuple[str, int]:
    i, j = _find(records, w.farm, 3), _find(records, w.farm, 4)
    records[i], records[j] = records[j], records[i]
    return "broken-chain", 4


def _tamper_other_federation(w: World, records: Records) -> tuple[str, int]:
    # The Farm's own key, in another federation it is also a member of: the entry
    # continues the Farm's chain here, seq and prev, but belongs elsewhere.
    other = create_genesis("Other Federation", labs=[Lab(w.farm, "Farm")],
                           units={"JXC": 2}, credit_limits={"JXC": LIMIT}, now_us=T0)
    head = _feed(records, w.farm)[-1]
    spliced = sign_entry(w.signers[0], federation_id=other.federation_id, seq=head.seq + 1,
                         prev=head.hash, ts_us=T0 + 5, kind="member.added",
                         body={"handle": "cy", "name": "Cy"})
    records.insert(_find(records, w.farm, head.seq) + 1, ("entry", [spliced.raw]))
    return "wrong-federation", head.seq + 1


def _tamper_checkpoint_other_tree(w: World, records: Records) -> tuple[str, int]:
    # The Farm signs a checkpoint of a rewritten history: same size, its last
    # entry replaced by a smaller offer.
    feed = _feed(records, w.farm)
    last = feed[-1]
    rewritten = sign_entry(w.signers[0], federation_id=w.fed.genesis.federation_id,
                           seq=last.seq, prev=last.header.prev, ts_us=last.header.ts_us,
                           kind="transfer.offered",
                           body={"to": w.ids[1], "amount": 1, "unit": "JXC"})
    leaves = [merkle.leaf_hash(e.hash) for e in [*feed[:-1], rewritten]]
    cp = Checkpoint(origin_for(w.fed.genesis.federation_id, w.farm), len(leaves),
                    merkle.root_from_leaf_hashes(leaves))
    records[_checkpoint_at(records, w.farm)] = (
        "checkpoint", [w.farm, sign_checkpoint(cp, w.signers[0]).encode()])
    return "checkpoint-mismatch", last.seq


def _tamper_checkpoint_signature(w: World, records: Records) -> tuple[str, int]:
    i = _checkpoint_at(records, w.farm)
    note = records[i][1][1].decode()
    body, _, line = note.rpartition("\n\n")
    prefix, _, b64 = line.rstrip("\n").rpartition(" ")
    sig = bytearray(base64.b64decode(b64))
    sig[-5] ^= 0x10  # in the Ed25519 signature, after the 4-byte key hash
    forged = f"{body}\n\n{prefix} {base64.b64encode(bytes(sig)).decode()}\n"
    records[i] = ("checkpoint", [w.farm, forged.encode()])
    return "bad-checkpoint", 0


def _tamper_checkpoint_by_another_lab(w: World, records: Records) -> tuple[str, int]:
    feed = _feed(records, w.farm)
    cp = Checkpoint(origin_for(w.fed.genesis.federation_id, w.farm), len(feed),
                    merkle.root_from_leaf_hashes([merkle.leaf_hash(e.hash) for e in feed]))
    records[_checkpoint_at(records, w.farm)] = (
        "checkpoint", [w.farm, sign_checkpoint(cp, w.signers[1]).encode()])
    return "bad-checkpoint", 0


def _tamper_checkpoint_after_entries(w: World, records: Records) -> tuple[str, int]:
    # A checkpoint of a rewritten history, moved after the feed's entries, where its
    # root can no longer be compared with theirs.
    _tamper_checkpoint_other_tree(w, records)
    moved = records.pop(_checkpoint_at(records, w.farm))
    records.insert(_find(records, w.farm, _feed(records, w.farm)[-1].seq) + 1, moved)
    return "checkpoint-misplaced", 0


TAMPERINGS: dict[str, Callable[[World, Records], tuple[str, int]]] = {
    "flipped bit in a signature": _tamper_signature,
    "flipped bit in a header (ts)": _tamper_header,
    "flipped bit in a header (prev)": _tamper_header_prev,
    "flipped bit in a body": _tamper_body,
    "dropped entry": _tamper_drop,
    "two entries swapped": _tamper_swap,
    "entry of another federation spliced in": _tamper_other_federation,
    "checkpoint over a different tree": _tamper_checkpoint_other_tree,
    "forged checkpoint signature": _tamper_checkpoint_signature,
    "checkpoint signed by another LAB": _tamper_checkpoint_by_another_lab,
    "checkpoint moved after its feed's entries": _tamper_checkpoint_after_entries,
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_a_tampered_bundle_fails_and_names_what_and_where(
        world: World, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = _records(world.data)
    code, seq = TAMPERINGS[name](world, records)
    data = _write(records)
    assert data != world.data

    report = _audit(data)
    assert not report.ok
    found = _found([v.as_json() for v in report.violations])
    assert (code, world.farm.hex(), seq) in found, report.violations
    # The end digest was recomputed: the entry/checkpoint checks caught it.
    assert "bundle-digest" not in {c for c, _, _ in found}

    path = tmp_path / "tampered.bundle"
    path.write_bytes(data)
    exit_code, out, _ = _disco(capsys, "audit", str(path), "--json")
    assert exit_code == 1
    doc = json.loads(out)
    assert doc["ok"] is False and (code, world.farm.hex(), seq) in _found(doc["violations"])
    exit_code, out, _ = _disco(capsys, "audit", str(path))
    assert exit_code == 1 and "audit FAILED" in out and code in out


def test_a_body_flip_is_reported_at_its_entry(world: World) -> None:
    records = _records(world.data)
    _tamper_body(world, records)
    report = _audit(_write(records))
    first = report.violations[0]
    assert (first.code, first.author, first.seq) == ("bad-entry", world.farm.hex(), 3)
    assert "body does not match" in first.message


def test_an_entry_of_a_stranger_lab_is_not_in_the_roster(world: World, tmp_path: Path) -> None:
    stranger_fed = make_federation(tmp_path, ["Stranger"])
    with stranger_fed.node(0) as node:
        raw = next(node.store.read_raw(node.lab_id))[1]
    records = _records(world.data)
    records.insert(_find(records, world.farm, 3), ("entry", [raw]))
    report = _audit(_write(records))
    stranger = stranger_fed.homes[0].lab_id.hex()
    assert ("not-in-roster", stranger, 1) in _found([v.as_json() for v in report.violations])


def test_a_bit_flipped_in_place_is_caught_by_the_cli(world: World, tmp_path: Path) -> None:
    records = _records(world.data)
    entry = decode_entry(records[_find(records, world.farm, 3)][1][0])
    at = world.data.index(entry.signature)
    assert world.data.count(entry.signature) == 1
    path = tmp_path / "flipped.bundle"
    path.write_bytes(_flip(world.data, at + 10, 2))
    result = world.cli("audit", str(path), "--json", check=False)
    assert result.returncode == 1, result.stderr
    found = _found(json.loads(result.stdout)["violations"])
    assert ("bundle-digest", "", 0) in found
    assert ("bad-signature", world.farm.hex(), 3) in found


def test_a_truncated_bundle_fails(world: World, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    records = _records(world.data)
    # Cut the end record off: everything else is sound.
    last = list(read_records(io.BytesIO(world.data)))[-1]
    end_at = last.offset + len(canonical.encode([last.kind, *last.fields]))
    assert end_at < len(world.data)
    report = _audit(world.data[:end_at])
    assert [(v.code, v.author) for v in report.violations] == [("truncated", "")]

    # Cut in the middle of the Farm's fourth entry.
    offset = list(read_records(io.BytesIO(world.data)))[_find(records, world.farm, 4)].offset
    path = tmp_path / "cut.bundle"
    path.write_bytes(world.data[:offset + 100])
    exit_code, out, _ = _disco(capsys, "audit", str(path), "--json")
    assert exit_code == 1
    found = _found(json.loads(out)["violations"])
    assert ("truncated", "", 0) in found
    assert ("checkpoint-beyond-feed", world.farm.hex(), 4) in found


def test_an_unusable_file_exits_2(world: World, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    records = _records(world.data)
    at = _find(records, world.farm, 2)
    cases = {
        "empty": b"",
        "not a bundle": b"hello, auditor\n",
        "only the first bytes": world.data[:20],
        # A record of the right kind but the wrong shape (text where bytes belong).
        "malformed entry record": _write([*records[:at], ("entry", ["text"]),
                                          *records[at:]]),
        "malformed checkpoint record": _write([*records[:at], ("checkpoint", [b"x", "text"]),
                                               *records[at:]]),
        "unknown record": world.data.replace(b"\xa5entry", b"\xa5fntry", 1),
        "bytes after the end": world.data + b"\x90",
    }
    for name, data in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.bundle"
        path.write_bytes(data)
        exit_code, out, err = _disco(capsys, "audit", str(path))
        assert exit_code == 2, (name, out, err)
        assert out == "" and len(err.strip().splitlines()) == 1, (name, err)
        assert "Traceback" not in err
    path = tmp_path / "not-a-bundle.bundle"
    result = world.cli("audit", str(path), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr


# -- the faulty author -------------------------------------------------------------


def test_an_over_limit_transfer_signed_by_a_faulty_author_is_listed(
        cli: Cli, tmp_path: Path) -> None:
    fed = make_federation(tmp_path, ["Farm", "FabLab"], credit_limit=LIMIT)
    farm, fab = (h.lab_id for h in fed.homes)
    with fed.node(0) as node:
        node.author_many([("member.added", {"handle": "ana", "name": "Ana"}),
                          ("transfer.offered", {"to": fab, "amount": 2500, "unit": "JXC"})],
                         T0 + 1)
        over = {"to": fab, "amount": LIMIT, "unit": "JXC"}
        with pytest.raises(Exception, match="credit"):  # the honest check refuses it
            node.author("transfer.offered", over, T0 + 2)
        seq, head = node.store.head(farm)
        assert node.signer is not None
        faulty = sign_entry(node.signer, federation_id=fed.genesis.federation_id,
                            seq=seq + 1, prev=head, ts_us=T0 + 2,
                            kind="transfer.offered", body=over)
        node.store.insert([faulty])
    bundle = tmp_path / "faulty.bundle"
    cli("export", "--out", str(bundle), home=fed.homes[0].path)

    result = cli("audit", str(bundle), "--json", check=False)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert _found(report["violations"]) == {("over-credit-limit", farm.hex(), faulty.seq)}
    assert report["balances"][farm.hex()] == {"JXC": -2500}  # only the honest offer counts
    text = cli("audit", str(bundle), check=False)
    assert text.returncode == 1 and "over-credit-limit" in text.stdout


# -- redaction -----------------------------------------------------------------------


def test_a_redacted_bundle_verifies_and_counts_redactions(world: World, tmp_path: Path) -> None:
    records = _records(world.data)
    about_ana = 0
    for entry in _feed(records, world.farm):
        body = entry.fields() or {}
        if entry.kind in ("member.added", "contribution.recorded") and \
                "ana" in (body.get("handle"), body.get("member")):
            about_ana += 1
    assert about_ana == 2

    redacted = tmp_path / "redacted.bundle"
    world.cli("export", "--redact", "ana", "--out", str(redacted), home=world.fed.homes[0].path)
    data = redacted.read_bytes()
    assert ANA.encode() in world.data and ANA.encode() not in data

    report = world.cli.json("audit", str(redacted))
    assert report["ok"] is True and report["violations"] == []
    assert report["redacted"] == about_ana
    assert report["entries"] == 13
    assert report["balances"] == world.cli.json("audit", str(world.bundle))["balances"]
    # The digest differs from the nodes' (redacted entries count for nothing), and the
    # audit says so; a bundle without redactions carries no such note.
    full = world.cli.json("audit", str(world.bundle))
    assert report["state_digest"] != full["state_digest"] and "digest_note" not in full
    assert "differs from the one the nodes show" in report["digest_note"]
    text = world.cli("audit", str(redacted)).stdout
    assert "note: 2 redacted entries count for nothing here" in text


# -- every single bit ----------------------------------------------------------------


def _flips_missed(data: bytes, start: int, stop: int) -> list[str]:
    """Every single-bit change of ``data[start:stop]`` audited; what went undetected."""
    missed = []
    for at in range(start, stop):
        for bit in range(8):
            changed = _flip(data, at, bit)
            try:
                report = audit_bundle(io.BytesIO(changed))
            except BundleError:
                continue
            except Exception as e:  # any other exception is a failure of the auditor
                missed.append(f"byte {at} bit {bit}: {type(e).__name__}: {e}")
                continue
            if report.ok:
                missed.append(f"byte {at} bit {bit}: audit passed")
    return missed


def test_any_single_bit_change_anywhere_is_detected(tmp_path: Path) -> None:
    fed = make_federation(tmp_path, ["Farm"], credit_limit=LIMIT)
    with fed.node(0) as node:
        node.author_many([("member.added", {"handle": "ana", "name": "Ana"}),
                          ("contribution.recorded",
                           {"member": "ana", "stream": "care", "minutes": 90})], T0 + 1)
        out = io.BytesIO()
        assert export_bundle(node, out, T0 + 2) == 3
    data = out.getvalue()
    assert 1000 < len(data) < 2500
    assert _audit(data).ok

    workers = max(1, min(4, os.cpu_count() or 1))
    step = -(-len(data) // (4 * workers))
    ranges = [(at, min(at + step, len(data))) for at in range(0, len(data), step)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        results = pool.map(_flips_missed, [data] * len(ranges), *zip(*ranges, strict=True))
        missed = [m for chunk in results for m in chunk]
    assert missed == []


def test_a_peer_checkpoint_beyond_the_entries_held_is_not_exported(tmp_path: Path) -> None:
    """A sync that stopped half-way leaves a node with a peer's checkpoint over more
    entries than it holds: its export carries an older checkpoint it can back, or
    none, and audits clean."""
    fed = make_federation(tmp_path, ["Farm", "FabLab"])
    farm, fid = fed.homes[0].lab_id, fed.genesis.federation_id
    with fed.node(0) as a:
        assert a.signer is not None
        a.author("member.added", {"handle": "x", "name": "X"}, T0 + 1)
        _, small = CheckpointBook(a.store, fid).sign_own(a.signer)  # 2 entries
        for h in ("y", "z"):
            a.author("member.added", {"handle": h, "name": h.upper()}, T0 + 2)
        _, big = CheckpointBook(a.store, fid).sign_own(a.signer)  # 4 entries
        entries = list(a.store.read_feed(farm))
    with fed.node(1) as b:
        b.store.insert(entries[:3])
        book = CheckpointBook(b.store, fid)
        assert book.accept(farm, small) is None and book.accept(farm, big) is None
        out = io.BytesIO()
        export_bundle(b, out, T0 + 10)
    out.seek(0)
    report = audit_bundle(out)
    assert report.ok, report.violations
    assert [f for k, f in _records(out.getvalue()) if k == "checkpoint" and f[0] == farm] \
        == [[farm, small]]
