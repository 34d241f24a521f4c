"""Issue 12, point 5: ``disco backup`` takes a consistent copy of a node, also while
``disco serve`` runs on it and entries are being recorded; ``disco restore`` checks
the archive before it writes anything, and the restored node syncs its own feed from
a peer before it authors, so a restore from an old backup does not fork the LAB's
own feed. Real ``disco serve`` processes and the real command line."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from node.home import Home
from protocol import canonical
from protocol.sync import MEDIA_TYPE, encode_frontier
from tests.conftest import POSTGRES_DSN, Cli, drop_schema, make_federation
from tests.nodes import (
    NodeProcess,
    Nodes,
    add_member,
    author_contributions,
    fake_peer_thread,
    federation,
    feed_raws,
    node_group,
    one_line_error,
    set_peers,
    wait_until,
)

PASS = {"DISCO_BACKUP_PASSPHRASE": "correct horse battery"}
OWN = {"DISCO_PASSPHRASE": "correct horse battery"}
"""The key restored encrypted: the node reads the backup's passphrase as its own."""
RECORD = ("record", "--member", "ana", "--stream", "care", "--hours", "1")
WAITING = "restored from a backup and has not synced its own feed from a peer yet"


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group() as group:
        yield group


def _converged(procs: list[NodeProcess], want: dict[str, int]) -> list[dict[str, Any]]:
    """The statuses once every node holds ``want`` ({lab: seq}) at the same heads and
    digest (else AssertionError, for wait_until)."""
    statuses = [p.status() for p in procs]
    frontiers = [{a: h["seq"] for a, h in s["frontier"].items()} for s in statuses]
    heads = {json.dumps(s["frontier"], sort_keys=True) for s in statuses}
    digests = {s["state_digest"] for s in statuses}
    if any(f != want for f in frontiers) or len(heads) != 1 or len(digests) != 1:
        raise AssertionError([(p.home.name, f) for p, f in zip(procs, frontiers,
                                                                  strict=True)])
    return statuses


def _verified(cli: Cli, home: Path) -> None:
    result = cli("verify", home=home, check=False)
    assert result.returncode == 0 and "every entry sound" in result.stdout, (
        result.stdout, result.stderr)


def _leftovers(parent: Path) -> list[str]:
    """Temporary folders a restore or backup left behind in ``parent``."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# -- the must-show: a restore from a backup 20 entries old ----------------------------


def test_a_node_restored_from_an_old_backup_syncs_before_it_records_and_never_forks(
        tmp_path: Path, nodes: Nodes, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm, fablab = fed.homes
    farm_id, fab_id = farm.lab_id.hex(), fablab.lab_id.hex()
    add_member(farm)
    farm_proc, fab_proc = nodes.start(farm.path, fablab.path)
    set_peers(farm, [fab_proc.url])
    set_peers(fablab, [farm_proc.url])
    wait_until(lambda: _converged([farm_proc, fab_proc], {farm_id: 2, fab_id: 1}),
               what="the two nodes to sync")

    # The backup, taken while Farm's node runs; then 20 entries it does not hold,
    # which FabLab gets.
    archive = tmp_path / "farm.tar.gz"
    made = json.loads(cli("backup", "--out", str(archive), "--with-key", "--json",
                          home=farm.path, env=PASS).stdout)
    assert made["entries"] == 3 and made["with_key"] is True, made  # 2 joins, 1 member
    author_contributions(farm, 20, batch=1)
    wait_until(lambda: _converged([farm_proc, fab_proc], {farm_id: 22, fab_id: 1}),
               what="FabLab to hold Farm's 20 new entries")

    # Farm's machine is lost; the LAB restores last week's backup on a new one.
    assert farm_proc.stop() == 0
    shutil.rmtree(farm.path)
    home = tmp_path / "farm-again"
    restored = json.loads(cli("restore", str(archive), "--decrypt-key", "--json",
                              home=home, env=PASS).stdout)
    assert restored["waiting_for_sync"] is True and restored["key"] == "decrypted"
    assert restored["feeds"] == {farm_id: 2, fab_id: 1}, restored

    # It refuses to record: its own feed ends at seq 2 here, at 22 at FabLab.
    line = one_line_error(cli(*RECORD, home=home, check=False), 1)
    assert WAITING in line and "'disco sync'" in line, line
    status = cli.json("status", home=home)
    assert status["restored"]["waiting_for_sync"] is True, status["restored"]
    assert status["restored"]["own_seq"] == 2
    assert status["frontier"][farm_id]["seq"] == 2
    assert "RESTORED" in cli("status", home=home).stdout

    # 'disco serve' (its peer list came with the backup) syncs, and the wait ends.
    again = nodes.start_one(home)
    wait_until(lambda: any("it may author again" in line for line in again.log_lines),
               what="the restored node to sync")
    assert cli.json("status", home=home)["restored"] is None
    assert again.frontier()[farm_id] == 22

    # Now it records, at seq 23, while it serves; FabLab takes it: no fork anywhere.
    ref = cli.json(*RECORD, home=home)["ref"]
    assert ref.startswith(f"{farm_id}:23:"), ref
    set_peers(fablab, [again.url])
    statuses = wait_until(lambda: _converged([again, fab_proc], {farm_id: 23, fab_id: 1}),
                          what="both nodes to hold entry 23")
    assert all(s["forks"] == [] and s["invalid"] == 0 for s in statuses), statuses
    nodes.stop_all()
    for path in (home, fablab.path):
        _verified(cli, path)
        assert cli.json("status", home=path)["forks"] == []
    assert feed_raws(Home.open(home), farm.lab_id) == feed_raws(fablab, farm.lab_id)


def test_a_peer_that_has_not_given_the_whole_own_feed_keeps_the_wait(
        tmp_path: Path, cli: Cli) -> None:
    """Only a round after which the node holds its own feed as the peer holds it
    ends the wait: a peer that shows more of it than it sends leaves it on."""
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm, fablab = fed.homes
    add_member(farm)
    archive = tmp_path / "farm.tar.gz"
    cli("backup", "--out", str(archive), home=farm.path)
    home = tmp_path / "farm-again"
    cli("restore", str(archive), home=home)
    shutil.copy(farm.key_path, home / "lab.key")
    os.chmod(home / "lab.key", 0o600)

    async def frontier(request: web.Request) -> web.Response:
        return web.Response(body=encode_frontier({farm.lab_id: (40, b"\x07" * 32)}),
                            content_type=MEDIA_TYPE)

    async def nothing(request: web.Request) -> web.Response:
        return web.Response(body=canonical.encode([]), content_type=MEDIA_TYPE)

    async def push(request: web.Request) -> web.Response:
        return web.Response(body=canonical.encode({"stored": 0, "skipped": 0, "forks": 0}),
                            content_type=MEDIA_TYPE)

    async def empty(request: web.Request) -> web.Response:
        return web.Response(body=b"", content_type=MEDIA_TYPE)

    routes: dict[str, Any] = {"/v1/sync/frontier": frontier, "/v1/sync/pull": empty,
                              "/v1/sync/push": push, "/v1/sync/forks": nothing,
                              "/v1/sync/checkpoints": nothing}
    with fake_peer_thread(fablab.lab_id, routes) as url:
        cli("sync", "--once", url, home=home, check=False)
    assert cli.json("status", home=home)["restored"]["waiting_for_sync"] is True
    assert WAITING in one_line_error(cli(*RECORD, home=home, check=False), 1)

    # A round with a real peer, which holds no more of it than this node, ends the
    # wait ('disco sync').
    with node_group() as group:
        fab_url = group.start_one(fablab.path).url
        assert fab_url is not None
        result = cli("sync", fab_url, home=home)
    assert "it may author again" in result.stderr, result.stderr
    assert cli.json("status", home=home)["restored"] is None
    assert cli.json(*RECORD, home=home)["ref"].startswith(f"{farm.lab_id.hex()}:3:")


def test_no_wait_for_peers_authors_at_once(tmp_path: Path, cli: Cli) -> None:
    fed = federation(tmp_path, ["Solo", "Other"])
    solo = fed.homes[0]
    add_member(solo)
    archive = tmp_path / "solo.tar.gz"
    cli("backup", "--out", str(archive), "--with-key", home=solo.path, env=PASS)
    home = tmp_path / "solo-again"
    done = json.loads(cli("restore", str(archive), "--no-wait-for-peers", "--json",
                          home=home, env=PASS).stdout)
    assert done["waiting_for_sync"] is False and not (home / "restored.json").exists()
    ref = json.loads(cli(*RECORD, "--json", home=home, env=OWN).stdout)["ref"]
    assert ref.startswith(f"{solo.lab_id.hex()}:3:")

    # A marker that cannot be read still means: wait.
    (home / "restored.json").write_text("{not json")
    assert cli.json("status", home=home)["restored"] == {"waiting_for_sync": True}
    assert WAITING in one_line_error(cli(*RECORD, home=home, check=False, env=OWN), 1)


# -- a consistent copy while the node serves and records -------------------------------


def test_a_backup_while_the_node_serves_and_records_is_consistent(
        tmp_path: Path, nodes: Nodes, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0]
    add_member(farm)
    nodes.start_one(farm.path)
    stop = threading.Event()
    written: list[int] = []

    def record() -> None:
        while not stop.is_set():
            written.append(author_contributions(farm, 10, batch=2))

    writer = threading.Thread(target=record)
    writer.start()
    try:
        wait_until(lambda: len(written) >= 2, what="entries being recorded")
        archives = []
        for i in range(3):
            archives.append(tmp_path / f"farm-{i}.tar.gz")
            cli("backup", "--out", str(archives[-1]), home=farm.path)
        wait_until(lambda: len(written) >= 4 + len(archives), what="more entries")
    finally:
        stop.set()
        writer.join()
    nodes.stop_all()
    final = feed_raws(farm, farm.lab_id)
    seqs = []
    for i, archive in enumerate(archives):
        home = tmp_path / f"restored-{i}"
        done = json.loads(cli("restore", str(archive), "--no-wait-for-peers", "--json",
                              home=home).stdout)
        _verified(cli, home)
        own = feed_raws(Home.open(home), farm.lab_id)
        assert own == final[:len(own)], "the backup holds a prefix of the feed"
        assert done["feeds"][farm.lab_id.hex()] == len(own)
        assert done["entries"] == len(own)
        status = cli.json("status", home=home)
        assert status["invalid"] == 0 and status["pending"] == 0, status
        assert status["ledger_heads"][farm.lab_id.hex()] == len(own)
        seqs.append(len(own))
    assert seqs == sorted(seqs) and seqs[-1] < len(final), (seqs, len(final))


# -- the key -----------------------------------------------------------------------


def test_the_key_round_trip_and_a_wrong_passphrase(tmp_path: Path, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0]
    add_member(farm)
    archive = tmp_path / "farm.tar.gz"

    # No passphrase and no terminal: one line, nothing written.
    line = one_line_error(cli("backup", "--out", str(archive), "--with-key",
                              home=farm.path, check=False, input=""), 2)
    assert "DISCO_BACKUP_PASSPHRASE" in line and not archive.exists()
    cli("backup", "--out", str(archive), "--with-key", home=farm.path, env=PASS)
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        member = tar.extractfile("lab.key")
        assert member is not None
        assert b"BEGIN ENCRYPTED PRIVATE KEY" in member.read()

    home = tmp_path / "farm-again"
    line = one_line_error(cli("restore", str(archive), home=home, check=False,
                              env={"DISCO_BACKUP_PASSPHRASE": "wrong"}), 1)
    assert "wrong passphrase" in line and "farm.tar.gz" in line, line
    assert not home.exists() and _leftovers(tmp_path) == []
    line = one_line_error(cli("restore", str(archive), home=home, check=False, input=""), 2)
    assert "DISCO_BACKUP_PASSPHRASE" in line and not home.exists()

    cli("restore", str(archive), "--no-wait-for-peers", home=home, env=PASS)
    assert (home / "lab.key").stat().st_mode & 0o777 == 0o600
    assert Home.open(home).key_is_encrypted()
    line = one_line_error(cli(*RECORD, home=home, check=False, input=""), 1)
    assert "DISCO_PASSPHRASE" in line, line
    ref = json.loads(cli(*RECORD, "--json", home=home, env=OWN).stdout)["ref"]
    assert ref.startswith(f"{farm.lab_id.hex()}:3:")

    plain = tmp_path / "farm-plain"
    cli("restore", str(archive), "--decrypt-key", home=plain, env=PASS)
    assert not Home.open(plain).key_is_encrypted()
    assert Home.open(plain).signer().public_key == farm.lab_id


def test_an_encrypted_home_key_is_read_with_its_own_passphrase(tmp_path: Path,
                                                               cli: Cli) -> None:
    home = tmp_path / "farm"
    cli("init", "--name", "Farm", "--encrypt", home=home, env={"DISCO_PASSPHRASE": "own"})
    lab = Home.open(home).lab_id.hex()
    genesis = tmp_path / "genesis.json"
    cli("federation", "create", "--name", "F", "--founder", f"{lab}=Farm", "--unit",
        "JXC:2", "--credit-limit", "JXC=100", "--out", str(genesis))
    cli("join", str(genesis), home=home, env={"DISCO_PASSPHRASE": "own"})
    archive = tmp_path / "farm.tar.gz"
    line = one_line_error(cli("backup", "--out", str(archive), "--with-key", home=home,
                              check=False, env=PASS, input=""), 1)
    assert "DISCO_PASSPHRASE" in line and not archive.exists()
    cli("backup", "--out", str(archive), "--with-key", home=home,
        env={**PASS, "DISCO_PASSPHRASE": "own"})
    restored = tmp_path / "restored"
    cli("restore", str(archive), "--decrypt-key", home=restored, env=PASS)
    assert Home.open(restored).signer().public_key.hex() == lab


# -- refusals ------------------------------------------------------------------------


def _rewrite(archive: Path, out: Path, change: Any) -> None:
    """A copy of ``archive`` whose members pass through ``change(name, data)``, which
    returns the new (name, data), or None to drop the member."""
    with tarfile.open(archive) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    with tarfile.open(out, "w:gz") as tar:
        for name, data in members:
            changed = change(name, data)
            if changed is None:
                continue
            info = tarfile.TarInfo(changed[0])
            info.size = len(changed[1])
            tar.addfile(info, io.BytesIO(changed[1]))


def _manifest(edit: Any) -> Any:
    def change(name: str, data: bytes) -> tuple[str, bytes]:
        if name != "manifest.json":
            return name, data
        manifest = json.loads(data)
        edit(manifest)
        return name, json.dumps(manifest).encode()
    return change


def test_a_damaged_or_foreign_archive_is_one_line_and_writes_nothing(
        tmp_path: Path, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0]
    add_member(farm)
    author_contributions(farm, 30)
    archive = tmp_path / "farm.tar.gz"
    cli("backup", "--out", str(archive), home=farm.path)
    data = archive.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()

    cases: dict[str, bytes] = {"truncated": data[: len(data) // 2],
                               "cut-at-the-end": data[:-9],
                               "empty": b"", "not-a-tar": os.urandom(4000),
                               "gzip-not-tar": gzip.compress(b"hello " * 500)}
    # A flipped bit anywhere past gzip's 10-byte header (whose time and OS bytes
    # nothing checks, and nothing reads).
    for at in range(10, len(data), len(data) // 12):
        flipped = bytearray(data)
        flipped[at] ^= 0x04
        cases[f"flip-{at}"] = bytes(flipped)
    edits: dict[str, Any] = {
        "wrong-format": _manifest(lambda m: m.update(format="disco-backup/9")),
        "no-manifest": lambda n, d: None if n == "manifest.json" else (n, d),
        "manifest-last": None,
        "lying-hash": _manifest(lambda m: m["files"]["genesis.json"].update(
            sha256="0" * 64)),
        "lying-feeds": _manifest(lambda m: m["feeds"].update({m["lab_id"]: 99})),
        "missing-store": lambda n, d: None if n == "ledger.sqlite" else (n, d),
        "foreign-member": lambda n, d: ("../evil" if n == "node.json" else n, d),
        "no-lab": _manifest(lambda m: m.pop("lab_id")),
    }
    for name, change in edits.items():
        out = bad / f"{name}.tar.gz"
        if change is None:  # every file, but the manifest after them
            with tarfile.open(archive) as tar:
                members = [(m.name, tar.extractfile(m).read())  # type: ignore[union-attr]
                           for m in tar]
            with tarfile.open(out, "w:gz") as tar:
                for n, d in members[1:] + members[:1]:
                    info = tarfile.TarInfo(n)
                    info.size = len(d)
                    tar.addfile(info, io.BytesIO(d))
        else:
            _rewrite(archive, out, change)
        cases[name] = out.read_bytes()

    home = tmp_path / "restored"
    for name, content in cases.items():
        path = bad / f"{name}.tar.gz"
        path.write_bytes(content)
        result = cli("restore", str(path), home=home, check=False)
        assert result.returncode == 1, (name, result.stdout)
        line = one_line_error(result, 1)
        assert str(path) in line, (name, line)
        if name == "wrong-format":
            assert "format 'disco-backup/9'" in line, line
        else:
            assert "is damaged or not a disco backup" in line, (name, line)
        assert not home.exists(), name
        assert _leftovers(tmp_path) == [], name
    line = one_line_error(cli("restore", str(tmp_path / "nothing.tar.gz"), home=home,
                              check=False), 1)
    assert "no such backup file" in line and not home.exists()

    # The archive itself restores, into an empty folder too.
    home.mkdir()
    cli("restore", str(archive), home=home)
    _verified(cli, home)


def test_restore_refuses_a_folder_in_use_and_backup_an_existing_file(
        tmp_path: Path, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0]
    archive = tmp_path / "farm.tar.gz"
    cli("backup", "--out", str(archive), home=farm.path)
    before = archive.read_bytes()
    line = one_line_error(cli("backup", "--out", str(archive), home=farm.path,
                              check=False), 1)
    assert "already exists" in line and archive.read_bytes() == before
    line = one_line_error(cli("backup", "--out", str(tmp_path / "no" / "x.tar.gz"),
                              home=farm.path, check=False), 1)
    assert "cannot write" in line, line

    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    line = one_line_error(cli("restore", str(archive), home=used, check=False), 2)
    assert "already exists and is not empty" in line
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]
    line = one_line_error(cli("restore", str(archive), home=farm.path, check=False), 2)
    assert "not empty" in line

    lone = tmp_path / "lone"
    cli("init", "--name", "Lone", home=lone)
    line = one_line_error(cli("backup", "--out", str(tmp_path / "l.tar.gz"), home=lone,
                              check=False), 1)
    assert "not joined" in line, line


# -- PostgreSQL --------------------------------------------------------------------


def test_a_postgres_node_backs_up_and_restores_to_sqlite_or_postgres(
        tmp_path: Path, nodes: Nodes, cli: Cli) -> None:
    if not POSTGRES_DSN:
        pytest.skip("DISCO_TEST_POSTGRES is not set (CI sets it)")
    fed = make_federation(tmp_path, ["Farm", "FabLab"], postgres_dsn=POSTGRES_DSN)
    farm = fed.homes[0]
    schema = farm.config["store"]["schema"]
    try:
        add_member(farm)
        author_contributions(farm, 40, batch=7)
        proc = nodes.start_one(farm.path)
        archive = tmp_path / "farm.tar.gz"
        made = json.loads(cli("backup", "--out", str(archive), "--json",
                              home=farm.path).stdout)
        assert made["store"] == "postgres" and made["entries"] == 42, made
        digest = proc.status()["state_digest"]
        nodes.stop_all()
        with tarfile.open(archive) as tar:
            member = tar.extractfile("node.json")
            assert member is not None
            assert "dsn" not in json.loads(member.read())["store"]  # no password inside
        original = feed_raws(farm, farm.lab_id)

        home = tmp_path / "farm-sqlite"
        cli("restore", str(archive), "--no-wait-for-peers", home=home)
        assert Home.open(home).config["store"] == {"backend": "sqlite",
                                                   "path": "ledger.sqlite"}
        _verified(cli, home)
        assert cli.json("status", home=home)["state_digest"] == digest
        assert feed_raws(Home.open(home), farm.lab_id) == original

        # Into PostgreSQL: not over the LAB's store that is still there ...
        into_pg = tmp_path / "farm-pg"
        line = one_line_error(cli("restore", str(archive), "--postgres", POSTGRES_DSN,
                                  home=into_pg, check=False), 1)
        assert f"schema {schema} already holds 42 stored events" in line, line
        assert not into_pg.exists() and _leftovers(tmp_path) == []
        assert feed_raws(farm, farm.lab_id) == original
        line = one_line_error(cli("restore", str(archive), "--postgres",
                                  "postgresql://postgres@127.0.0.1:1/test", home=into_pg,
                                  check=False), 2)
        assert "cannot reach PostgreSQL" in line and not into_pg.exists()
        # ... and once it is gone, in its place.
        drop_schema(POSTGRES_DSN, schema)
        cli("restore", str(archive), "--postgres", POSTGRES_DSN, "--no-wait-for-peers",
            home=into_pg)
        restored = Home.open(into_pg)
        assert restored.config["store"]["backend"] == "postgres"
        assert not (into_pg / "ledger.sqlite").exists()
        _verified(cli, into_pg)
        assert cli.json("status", home=into_pg)["state_digest"] == digest
        assert feed_raws(restored, farm.lab_id) == original
        shutil.copy(farm.key_path, restored.key_path)  # (mode 0600 kept)
        ref = cli.json(*RECORD, home=into_pg)["ref"]  # the store takes new entries
        assert ref.startswith(f"{farm.lab_id.hex()}:43:"), ref
    finally:
        for h in fed.homes:
            drop_schema(POSTGRES_DSN, h.config["store"]["schema"])
