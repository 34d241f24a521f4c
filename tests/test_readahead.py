"""Reading the notification log ahead in a second process (node/readahead.py): every
row once and in order, the same ledger, and nothing lost when the reader fails."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from node.projection import LedgerProjection
from node.readahead import BATCH, _Reader, rows
from node.store import FeedStore, StoreConfig
from protocol.entry import Entry, sign_entry
from protocol.keys import Signer
from tests.conftest import make_federation, read_ahead_children

T0 = 1_780_000_000_000_000


def _append(store: FeedStore, signer: Signer, fid: bytes, head: Entry | None, n: int,
            note: str = "") -> Entry | None:
    """Store ``n`` more contributions of ``signer``'s feed after ``head``."""
    batch = []
    for _ in range(n):
        seq = head.seq + 1 if head else 1
        body = ({"federation": fid, "name": "Farm"} if seq == 1 else
                {"member": "ana", "stream": "care", "minutes": 1 + seq % 300,
                 **({"note": note} if note else {})})
        kind = "lab.joined" if seq == 1 else "member.added" if seq == 2 else \
            "contribution.recorded"
        if seq == 2:
            body = {"handle": "ana", "name": "Ana"}
        head = sign_entry(signer, federation_id=fid, seq=seq, prev=head.hash if head else None,
                          ts_us=T0 + seq, kind=kind, body=body)
        batch.append(head)
        if len(batch) == 1000:
            store.insert(batch)
            batch = []
    store.insert(batch)
    return head


def _readers() -> list[int]:
    return read_ahead_children(os.getpid())


def test_read_ahead_gives_every_row_once_in_order(store_config: StoreConfig) -> None:
    signer = Signer.generate()
    with FeedStore(store_config) as store:
        _append(store, signer, b"\1" * 32, None, 3 * BATCH + 7)
        expected = [tuple(r) for r in store.notifications()]
        assert [tuple(r) for r in rows(store, 0, read_ahead_min=1)] == expected
        assert [tuple(r) for r in rows(store, 1234, read_ahead_min=1)] == expected[1234:]
        assert list(rows(store, len(expected), read_ahead_min=1)) == []
    assert _readers() == []


def test_read_ahead_catches_up_to_the_same_ledger(tmp_path: Path) -> None:
    fed = make_federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0].lab_id
    with fed.node(0) as node:
        head = node.store.get(farm, node.store.head(farm)[0])
        _append(node.store, fed.homes[0].signer(), fed.genesis.federation_id, head, 2500)
        total = node.store.max_notification_id()
        ahead, at = LedgerProjection(node.store, fed.genesis, read_ahead_min=1).rebuild()
        here, at_here = LedgerProjection(node.store, fed.genesis,
                                         read_ahead_min=10**9).rebuild()
    assert at == at_here == total
    assert ahead.encode() == here.encode()
    assert sum(ahead.contributions.values()) > 0 and not ahead.invalid


def test_a_reader_killed_midway_loses_no_row(tmp_path: Path) -> None:
    signer = Signer.generate()
    with FeedStore(StoreConfig("sqlite", path=tmp_path / "s.sqlite")) as store:
        # ~12 MB of rows: far more than the pipe holds, so the reader is mid-way.
        _append(store, signer, b"\1" * 32, None, 12 * BATCH, note="x" * 700)
        expected = [tuple(r) for r in store.notifications()]
        got = []
        stream = rows(store, 0, read_ahead_min=1)
        for row in stream:
            got.append(tuple(row))
            if len(got) == BATCH + 10:
                (pid,) = _readers()
                os.kill(pid, signal.SIGKILL)
        assert got == expected
    assert _readers() == []


def test_a_reader_that_cannot_read_sends_nothing_and_exits() -> None:
    reader = _Reader.start(
        StoreConfig("postgres", dsn="postgresql://nobody:S3cret@127.0.0.1:1/x"), 0, 100)
    assert reader is not None
    # The DSN (with its password) goes on stdin, never on the command line.
    cmdline = Path(f"/proc/{reader.process.pid}/cmdline").read_bytes()
    assert b"S3cret" not in cmdline and b"127.0.0.1" not in cmdline
    assert list(reader.rows(0, 100)) == []
    assert reader.process.wait(timeout=60) == 0  # it exits quietly, on its own
    reader.stop()


def test_rows_out_of_order_or_malformed_end_the_reader_not_the_catch_up(
        tmp_path: Path) -> None:
    """Whatever a reader sends that is not the next rows in order (a stray module
    writing to its pipe, say) ends its part: the rest is read here."""
    signer = Signer.generate()
    with FeedStore(StoreConfig("sqlite", path=tmp_path / "s.sqlite")) as store:
        _append(store, signer, b"\1" * 32, None, 50)
        expected = [tuple(r) for r in store.notifications()]
        for garbage in ([[1, "x", 1, b"r"], [1, "x", 1, b"r"]],  # a repeat
                        [[99, "x", 1, b"r"]],  # beyond upto
                        [[1, "x", 1]], 7, "hi"):
            reader = _FakeReader(garbage)
            assert list(reader.rows(0, 50)) in ([], [[1, "x", 1, b"r"]])
        assert [tuple(r) for r in rows(store, 0, read_ahead_min=1)] == expected


class _FakeReader(_Reader):
    """The real row checks, over bytes written to a real pipe by this test."""

    def __init__(self, message: object) -> None:
        import msgpack

        read_end, write_end = os.pipe()
        os.write(write_end, msgpack.packb(message) + msgpack.packb(None))
        os.close(write_end)
        self.pipe = open(read_end, "rb", buffering=0)


def test_the_reader_imports_nothing_from_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "json.py").write_text("raise SystemExit('imported from the cwd')\n")
    monkeypatch.chdir(tmp_path)
    signer = Signer.generate()
    with FeedStore(StoreConfig("sqlite", path=tmp_path / "s.sqlite")) as store:
        _append(store, signer, b"\1" * 32, None, 30)
        reader = _Reader.start(store.config, 0, 30)
        assert reader is not None
        try:
            got = [tuple(r) for r in reader.rows(0, 30)]
        finally:
            reader.stop()
        assert got == [tuple(r) for r in store.notifications()]


def test_stopping_early_stops_the_reader(tmp_path: Path) -> None:
    signer = Signer.generate()
    with FeedStore(StoreConfig("sqlite", path=tmp_path / "s.sqlite")) as store:
        _append(store, signer, b"\1" * 32, None, 6 * BATCH, note="y" * 700)
        stream = rows(store, 0, read_ahead_min=1)
        next(stream)
        assert len(_readers()) == 1
        stream.close()
        deadline = time.monotonic() + 10
        while _readers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _readers() == []
