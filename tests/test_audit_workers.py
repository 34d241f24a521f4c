"""Tests of node.audit_workers: the audit's signature checks on threads or forked
worker processes give the flags the plain check gives, in order, and survive a dead
worker; the audit's report does not depend on which check it was given."""

from __future__ import annotations

import io
import os
import signal

import pytest

from federation.audit import audit_bundle, check_here, signatures_ok
from federation.bundle import BundleWriter
from federation.genesis import Lab, create_genesis
from node.audit_workers import PROCESSES_MIN_BYTES, SignatureWorkers
from protocol import canonical
from protocol.entry import sign_entry
from protocol.keys import Signer

T0 = 1_700_000_000_000_000


def raws_with_a_bad_signature(n: int = 9, bad: int = 4) -> tuple[bytes, list[bytes]]:
    """(federation id, n entry bytes of one feed), entry ``bad`` with a forged
    signature (its bytes still decode)."""
    signer = Signer.from_seed(bytes(32))
    genesis = create_genesis("Workers", labs=[Lab(signer.public_key, "Farm")],
                             units={"JXC": 2}, credit_limits={"JXC": 0}, now_us=T0)
    fid, prev, raws = genesis.federation_id, None, []
    for seq in range(1, n + 1):
        entry = sign_entry(signer, federation_id=fid, seq=seq, prev=prev, ts_us=T0 + seq,
                           kind="member.added", body={"handle": f"m{seq}", "name": "M"})
        prev = entry.hash
        raw = entry.raw
        if seq == bad:
            forged = bytes(64 - 1) + b"\x01"
            raw = canonical.encode([entry.header.as_list(), forged, entry.body])
        raws.append(raw)
    return fid, raws


@pytest.mark.parametrize("processes", [False, True])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_flags_are_the_plain_checks_in_order(processes: bool, workers: int) -> None:
    _, raws = raws_with_a_bad_signature()
    want = signatures_ok(raws)
    assert want == b"\x01\x01\x01\x00\x01\x01\x01\x01\x01"
    with SignatureWorkers(workers, processes=processes) as check:
        waiters = [check(raws[:k]) for k in (0, 1, 4, 9)]  # several batches under way
        assert [w() for w in waiters] == [want[:k] for k in (0, 1, 4, 9)]
        assert (check.processes is not None) == (processes and workers >= 2)
    assert check_here(raws)() == want


def test_a_dead_worker_process_changes_no_flag() -> None:
    _, raws = raws_with_a_bad_signature()
    with SignatureWorkers(2, processes=True) as check:
        assert check(raws)() == signatures_ok(raws)  # the workers are up
        assert check.processes is not None
        for pid in list(check.processes._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        for _ in range(3):
            assert check(raws)() == signatures_ok(raws)


def test_processes_for_a_big_bundle_threads_for_a_small_one() -> None:
    small = io.BytesIO(b"x" * 100)
    small.seek(10)
    with SignatureWorkers.for_bundle(small) as check:
        assert check.processes is None and small.tell() == 10
    big = io.BytesIO(bytes(PROCESSES_MIN_BYTES + 1))
    with SignatureWorkers.for_bundle(big) as check:
        assert check.processes is not None and big.tell() == 0
    with SignatureWorkers.for_bundle(big, workers=1) as check:
        assert check.processes is None


def test_the_report_does_not_depend_on_the_check() -> None:
    fid, raws = raws_with_a_bad_signature()
    out = io.BytesIO()
    writer = BundleWriter(out, fid, T0)
    signer = Signer.from_seed(bytes(32))
    writer.genesis(create_genesis("Workers", labs=[Lab(signer.public_key, "Farm")],
                                  units={"JXC": 2}, credit_limits={"JXC": 0},
                                  now_us=T0).encode())
    for raw in raws:
        writer.entry(raw)
    writer.close()
    data = out.getvalue()
    plain = audit_bundle(io.BytesIO(data)).as_json()
    assert {(v["code"], v["seq"]) for v in plain["violations"]} >= {("bad-signature", 4)}
    for processes in (False, True):
        with SignatureWorkers(2, processes=processes) as check:
            assert audit_bundle(io.BytesIO(data), check_signatures=check).as_json() == plain
