"""Several writers on one LAB at once (issue 9, finding 9): real ``disco record``
processes started together on a fresh home must all succeed, and the feed must hold
every entry with gap-free seqs, on SQLite and on PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from node.home import LOCK, Home
from node.lab import LabNode, NodeError
from node.store import FeedStore
from tests.conftest import DISCO, POSTGRES_DSN, REPO, drop_schema, make_federation

WRITERS = 8
ROUNDS = 3
NOW = 1_700_000_000_000_000


def _records_at_once(home: Path, count: int,
                     round_no: int) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DISCO_HOME", None)
    procs = [subprocess.Popen(
        [*DISCO, "--home", str(home), "record", "--member", "ana", "--stream", "care",
         "--hours", "1", "--note", f"round {round_no} writer {i}", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(count)]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_records_on_a_fresh_home_all_succeed(tmp_path: Path, backend: str) -> None:
    if backend == "postgres" and not POSTGRES_DSN:
        pytest.skip("DISCO_TEST_POSTGRES is not set (CI sets it)")
    for round_no in range(ROUNDS):
        fed = make_federation(tmp_path / f"round{round_no}", ["Farm", "FabLab"], NOW,
                              postgres_dsn=POSTGRES_DSN if backend == "postgres" else None)
        home = fed.homes[0]
        try:
            with fed.node(0) as node:
                node.author("member.added", {"handle": "ana", "name": "Ana"}, NOW)
            results = _records_at_once(home.path, WRITERS, round_no)
            for r in results:
                assert r.returncode == 0, r.stderr
                assert r.stderr == ""
            seqs = sorted(int(r.stdout.split('"seq": ')[1].split("}")[0]) for r in results)
            assert seqs == list(range(3, 3 + WRITERS))
            with LabNode.open(home) as node:
                feed = list(node.log(node.lab_id))
                assert [e.seq for e in feed] == list(range(1, 3 + WRITERS))
                notes = sorted((e.fields() or {})["note"] for e in feed
                               if e.kind == "contribution.recorded")
                assert notes == sorted(f"round {round_no} writer {i}" for i in range(WRITERS))
                assert node.verify() == []
                assert node.ledger().applied(node.lab_id) == 2 + WRITERS
                assert node.summary()["heads"][0] == [node.lab_id, 2 + WRITERS]
                minutes = sum(v for (lab, *_), v in node.ledger().contributions.items()
                              if lab == node.lab_id)
                assert minutes == 60 * WRITERS
        finally:
            if backend == "postgres":
                for h in fed.homes:
                    drop_schema(POSTGRES_DSN or "", h.config["store"]["schema"])


def test_a_writer_that_read_the_head_before_another_append_builds_again(
        tmp_path: Path) -> None:
    """The race behind "feed stuck at seq 4 of 3": a writer reads the head, another
    writer appends (here a peer relaying this LAB's own entry back, which takes no
    lock), and the first writer's ledger then holds more than the head it read. It
    must read the head again and append after the other entry, not fail."""
    fed = make_federation(tmp_path, ["Farm", "FabLab"], NOW)
    home = fed.homes[0]
    backup = tmp_path / "farm-backup"
    shutil.copytree(home.path, backup)  # the same feed, elsewhere: it will author seq 2
    with LabNode.open(Home.open(backup), Home.open(backup).signer()) as elsewhere:
        relayed = elsewhere.author("member.added", {"handle": "kofi", "name": "Kofi"}, NOW)
    assert relayed.seq == 2

    class RelayAfterHeadRead(FeedStore):
        """The real store; the first time the writer has read its head, the relayed
        entry is stored by another node on the same home."""

        relay: bool = True

        def head(self, author: bytes) -> tuple[int, bytes | None]:
            head = super().head(author)
            if self.relay and author == home.lab_id:
                self.relay = False
                with LabNode.open(home) as peer_side:
                    assert peer_side.ingest([relayed.raw]).stored == 1
            return head

    store = RelayAfterHeadRead(home.store_config())
    with LabNode(home, store, home.genesis(), home.signer()) as node:
        node.ledger()
        entry = node.author("member.added", {"handle": "ana", "name": "Ana"}, NOW)
        assert not store.relay
        assert entry.seq == 3 and entry.header.prev == relayed.hash
        assert [e.seq for e in node.log(node.lab_id)] == [1, 2, 3]
        assert node.verify() == []
        assert set(node.ledger().labs[node.lab_id].members) == {"ana", "kofi"}


def test_a_writer_waits_for_the_lock_only_so_long(tmp_path: Path) -> None:
    """A writer that cannot get its turn gives up with one clear message and stores
    nothing."""
    fed = make_federation(tmp_path, ["Farm", "FabLab"], NOW)
    home = fed.homes[0]
    fd = os.open(home.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process in the middle of an append
        with fed.node(0) as node:
            node.lock_wait_s = 0
            with pytest.raises(NodeError, match="another disco process has been writing"):
                node.author("member.added", {"handle": "ana", "name": "Ana"}, NOW)
            assert node.store.head(node.lab_id)[0] == 1
    finally:
        os.close(fd)
    with fed.node(0) as node:
        assert node.author("member.added", {"handle": "ana", "name": "Ana"}, NOW).seq == 2
    assert (home.path / LOCK).stat().st_mode & 0o777 == 0o600

