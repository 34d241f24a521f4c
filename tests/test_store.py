"""FeedStore against every backend: the same cases on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from node.store import FeedStore, SeqTaken, StoreConfig
from protocol.entry import Entry, sign_entry
from protocol.keys import Signer

FID = bytes(range(32))


def chain(signer: Signer, n: int, start: int = 1, prev: bytes | None = None,
          ) -> list[Entry]:
    out = []
    for seq in range(start, start + n):
        e = sign_entry(signer, federation_id=FID, seq=seq, prev=prev, ts_us=seq,
                       kind="member.added", body={"handle": f"m{seq}", "name": "x"})
        out.append(e)
        prev = e.hash
    return out


def test_insert_read_head_and_paging(store_config: StoreConfig) -> None:
    signer = Signer.generate()
    entries = chain(signer, 25)
    with FeedStore(store_config) as store:
        assert store.head(signer.public_key) == (0, None)
        store.insert(entries[:10])
        store.insert(entries[10:])
        assert store.head(signer.public_key) == (25, entries[-1].hash)
        got = list(store.read_feed(signer.public_key, page=7))
        assert [e.raw for e in got] == [e.raw for e in entries]
        assert [e.seq for e in store.read_feed(signer.public_key, after=20, page=2)] == [
            21, 22, 23, 24, 25]
        stored = store.get(signer.public_key, 13)
        assert stored is not None and stored.raw == entries[12].raw
        assert store.get(signer.public_key, 26) is None
        assert list(store.verify(FID, [signer.public_key])) == []


def test_second_entry_at_a_seq_is_refused_and_nothing_of_the_batch_is_stored(
    store_config: StoreConfig,
) -> None:
    signer = Signer.generate()
    first = chain(signer, 3)
    with FeedStore(store_config) as store:
        store.insert(first)
        fork = sign_entry(signer, federation_id=FID, seq=3, prev=first[1].hash, ts_us=99,
                          kind="member.added", body={"handle": "other", "name": "y"})
        fourth = sign_entry(signer, federation_id=FID, seq=4, prev=fork.hash, ts_us=100,
                            kind="member.added", body={"handle": "z", "name": "z"})
        with pytest.raises(SeqTaken):
            store.insert([fork, fourth])
        assert store.head(signer.public_key) == (3, first[2].hash)
        assert [e.raw for e in store.read_feed(signer.public_key)] == [e.raw for e in first]


def test_verify_names_feed_and_seq_of_a_bad_entry(store_config: StoreConfig) -> None:
    good, bad = Signer.generate(), Signer.generate()
    with FeedStore(store_config) as store:
        store.insert(chain(good, 5))
        # seq 3 of `bad`'s feed is signed by another key; seq 5 breaks the chain.
        entries = chain(bad, 2)
        forged = sign_entry(good, federation_id=FID, seq=3, prev=entries[1].hash, ts_us=3,
                            kind="member.added", body={"handle": "a", "name": "b"})
        forged = Entry(forged.header.__class__(FID, bad.public_key, 3, entries[1].hash, 3,
                                               "member.added", forged.header.body_hash),
                       forged.signature, forged.body, forged.raw, forged.hash,
                       forged.header_bytes)
        store.insert(entries)
        store.insert([_reencode(forged)])
        problems = list(store.verify(FID, [good.public_key, bad.public_key]))
    assert [(p.author, p.seq, p.code) for p in problems] == [
        (bad.public_key.hex(), 3, "bad-signature")]


def _reencode(e: Entry) -> Entry:
    import msgpack

    from protocol.entry import decode_entry

    raw = msgpack.packb([e.header.as_list(), e.signature, e.body], use_bin_type=True)
    return decode_entry(raw)


def test_verify_reports_a_feed_outside_the_roster(store_config: StoreConfig) -> None:
    member, stranger = Signer.generate(), Signer.generate()
    with FeedStore(store_config) as store:
        store.insert(chain(member, 2))
        store.insert(chain(stranger, 1))
        problems = list(store.verify(FID, [member.public_key]))
    assert [(p.author, p.code) for p in problems] == [(stranger.public_key.hex(), "not-in-roster")]


def _append_many(config: StoreConfig, seed: bytes, n: int, tag: str) -> None:
    signer = Signer.from_seed(seed)
    store = FeedStore(config)

    def build(seq: int, head: bytes | None) -> list[Entry]:
        return [sign_entry(signer, federation_id=FID, seq=seq + 1, prev=head, ts_us=seq,
                           kind="member.added", body={"handle": f"{tag}{seq}", "name": tag})]

    for _ in range(n):
        store.append_own(build, signer.public_key)
    store.close()


def test_two_processes_appending_at_once_never_fork(store_config: StoreConfig) -> None:
    seed = bytes(32 * [7])
    signer = Signer.from_seed(seed)
    FeedStore(store_config).close()  # create tables once, before the race
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(store_config, seed, 500, tag))
             for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    with FeedStore(store_config) as store:
        entries = list(store.read_feed(signer.public_key))
        assert [e.seq for e in entries] == list(range(1, 1001))
        assert list(store.verify(FID, [signer.public_key])) == []
        tags = [e.fields()["name"] for e in entries]  # type: ignore[index]
        assert tags.count("a") == 500 and tags.count("b") == 500


def test_a_file_that_is_not_a_database_gives_a_store_error(tmp_path: Path) -> None:
    from node.store import StoreError

    path = tmp_path / "x.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a database"):
        FeedStore(StoreConfig("sqlite", path=path))
    assert path.read_bytes() == b"this is not a database" * 100
