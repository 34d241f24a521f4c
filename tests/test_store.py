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


def test_projection_views_and_fork_proofs(store_config: StoreConfig) -> None:
    signer = Signer.generate()
    entries = chain(signer, 3)
    other = sign_entry(signer, federation_id=FID, seq=3, prev=entries[1].hash, ts_us=7,
                       kind="member.added", body={"handle": "x", "name": "y"})
    from protocol.sync import make_fork_proof

    with FeedStore(store_config) as store:
        store.insert(entries)
        assert store.load_view("v") == (0, None, None)
        store.save_view("v", 3, b"state-1", b"summary-1")
        assert store.load_view("v") == (3, b"state-1", b"summary-1")
        assert store.load_view("v", state=False) == (3, None, b"summary-1")
        assert store.save_view("v", 3, b"state-2", b"summary-2")  # same position
        assert store.load_view("v") == (3, b"state-2", b"summary-2")
        # A save from an older position (another process lagging) changes nothing.
        assert store.save_view("v", 2, b"old", b"old") is False
        assert store.load_view("v") == (3, b"state-2", b"summary-2")
        assert store.recorder.max_tracking_id("v") == 3
        proof = make_fork_proof(entries[2], other)
        assert store.add_fork_proof(proof) is True
        assert store.add_fork_proof(proof) is False
        assert list(store.fork_proofs()) == [signer.public_key]
        assert list(store.verify(FID, [signer.public_key])) == []


def test_a_whole_node_on_this_backend(store_config: StoreConfig, tmp_path: Path) -> None:
    """A federation whose first LAB keeps its store on this backend: author, ledger,
    summary, export and audit agree."""
    import io

    from federation.audit import audit_bundle
    from node.bundle import export_bundle
    from tests.conftest import make_federation

    dsn = store_config.dsn if store_config.backend == "postgres" else None
    fed = make_federation(tmp_path / "fed", ["Farm", "Fab"], postgres_dsn=dsn)
    try:
        with fed.node(0) as farm, fed.node(1) as fab:
            fab_id = fed.homes[1].lab_id
            farm.author("member.added", {"handle": "ana", "name": "Ana"}, 1)
            offer = farm.author("transfer.offered", {"to": fab_id, "amount": 500,
                                                     "unit": "JXC"}, 2)
            fab.ingest(raw for _, raw in farm.store.read_raw(farm.lab_id))
            fab.author("transfer.accepted", {"offer": offer.ref.as_list()}, 3)
            farm.ingest(raw for _, raw in fab.store.read_raw(fab_id))
            digest = farm.ledger().digest()
            assert farm.rebuild().digest() == digest == fab.ledger().digest()
            summary = farm.summary()
            assert summary["state_digest"] == digest
            assert sorted(summary["balances"]) == sorted(
                [[farm.lab_id, "JXC", -500], [fab_id, "JXC", 500]])
            bundle = io.BytesIO()
            export_bundle(farm, bundle, 10)
            bundle.seek(0)
            report = audit_bundle(bundle)
            assert report.ok, report.violations
            assert report.state_digest == digest
    finally:
        if dsn:
            from tests.conftest import drop_schema

            for home in fed.homes:
                schema = home.config["store"].get("schema")
                if schema:
                    drop_schema(dsn, schema)
