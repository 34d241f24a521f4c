"""Verification throughput and memory: a full check of a stored feed on SQLite.

Builds one LAB's feed of N signed entries (``lab.joined``, ``member.added``, then
``contribution.recorded``) straight into a :class:`node.store.FeedStore`, then, in
a fresh child process, consumes :meth:`FeedStore.verify` completely (decode,
canonical form, chain links, signatures) and reports its time and peak RSS
(``ru_maxrss`` of that child only, so building the feed is not counted).

- Speed (default, N = 100k, ``--n``): entries/s >= 0.80 x the machine's
  single-core Ed25519 verification rate with ``cryptography``, measured in the
  same run (bench/_limits.py). The same child also reports its peak RSS.
- Memory (``--memory N``): peak RSS of the verifying process for an N-entry feed,
  target < 200 MB; ``ratio`` is then peak_rss_mb / 200 and ``ok`` means ratio < 1.
  The 1M-entry check (here about 1 min to build the feed and 1.5 min to verify it):
  ``.venv/bin/python bench/verify.py --memory 1000000``

Progress goes to stderr; stdout ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._limits import log, peak_rss_mb, report, verify_rate
from federation.genesis import Lab, create_genesis
from node.store import FeedStore, StoreConfig
from protocol.entry import Entry, sign_entry
from protocol.keys import Signer

SPEED_TARGET = 0.80
RSS_TARGET_MB = 200.0
BATCH = 1000
STREAMS = ("livelihood", "love", "care")


def build(db: Path, n: int) -> tuple[bytes, bytes]:
    """Sign and store an n-entry feed; return (federation_id, author)."""
    signer = Signer.generate()
    now_us = time.time_ns() // 1000
    genesis = create_genesis("Bench Federation", labs=[Lab(signer.public_key, "Bench Lab")],
                             units={"JXC": 2}, credit_limits={"JXC": 100_000}, now_us=now_us)
    fid = genesis.federation_id
    head: bytes | None = None
    with FeedStore(StoreConfig("sqlite", path=db)) as store:
        batch: list[Entry] = []
        for seq in range(1, n + 1):
            body: dict[str, Any]
            if seq == 1:
                kind, body = "lab.joined", {"federation": fid, "name": "Bench Lab"}
            elif seq == 2:
                kind, body = "member.added", {"handle": "ada", "name": "Ada Lovelace"}
            else:
                kind, body = "contribution.recorded", {
                    "member": "ada", "stream": STREAMS[seq % 3], "minutes": 30 + seq % 90,
                    "project": "urban farm"}
            entry = sign_entry(signer, federation_id=fid, seq=seq, prev=head,
                               ts_us=now_us + seq, kind=kind, body=body)
            head = entry.hash
            batch.append(entry)
            if len(batch) == BATCH or seq == n:
                store.insert(batch)
                batch = []
            if seq % 100_000 == 0:
                log(f"  built {seq:,} entries")
    return fid, signer.public_key


def child(db: Path, fid: bytes, author: bytes) -> None:
    """The measured process: one full verification pass; prints its figures as JSON."""
    with FeedStore(StoreConfig("sqlite", path=db)) as store:
        start = time.perf_counter()
        problems = list(store.verify(fid, [author]))
        seconds = time.perf_counter() - start
        entries = store.max_notification_id()
    print(json.dumps({"seconds": seconds, "entries": entries, "problems": len(problems),
                      "peak_rss_mb": peak_rss_mb()}))


def measure(db: Path, fid: bytes, author: bytes, profile: bool) -> dict[str, float]:
    """Run :func:`child` in a fresh interpreter and return what it printed."""
    cmd = [sys.executable]
    if profile:  # profile stats go to the child's stdout: pass them on to stderr
        cmd += ["-m", "cProfile", "-s", "tottime"]
    cmd += [__file__, "--child", str(db), fid.hex(), author.hex()]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    lines = out.strip().splitlines()
    if profile:
        log("\n".join(lines[1:40]))
    figures: dict[str, float] = json.loads(lines[0])
    if figures["problems"]:
        raise SystemExit(f"verification found {figures['problems']} problems in a sound feed")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="entries for the speed run")
    parser.add_argument("--memory", type=int, metavar="N", help="memory run on an N-entry feed")
    parser.add_argument("--profile", action="store_true", help="cProfile the verify pass")
    parser.add_argument("--child", nargs=3, metavar=("DB", "FID", "AUTHOR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        db, fid, author = args.child
        child(Path(db), bytes.fromhex(fid), bytes.fromhex(author))
        return

    n = args.memory or args.n
    log("measuring the single-core Ed25519 verification rate ...")
    limit = verify_rate()
    log(f"  {limit:,.0f} verifications/s")
    with tempfile.TemporaryDirectory(prefix="disco-bench-") as tmp:
        db = Path(tmp) / "ledger.sqlite"
        log(f"building a feed of {n:,} entries ...")
        start = time.perf_counter()
        fid, author = build(db, n)
        log(f"  built in {time.perf_counter() - start:.1f} s; verifying in a child process ...")
        figures = measure(db, fid, author, args.profile)
    assert figures["entries"] == n, "the store does not hold the feed that was built"
    rate = n / figures["seconds"]
    rss = figures["peak_rss_mb"]
    log(f"verified {n:,} entries in {figures['seconds']:.2f} s: {rate:,.0f} entries/s, "
        f"{rate / limit:.3f} x the verification rate; peak RSS {rss} MB")
    if args.memory:
        ratio = rss / RSS_TARGET_MB
        report("verify-memory", n=n, peak_rss_mb=rss, ratio=ratio, target=RSS_TARGET_MB,
               ok=ratio < 1.0, entries_per_s=rate, limit_per_s=limit)
    else:
        ratio = rate / limit
        report("verify", n=n, seconds=figures["seconds"], entries_per_s=rate,
               limit_per_s=limit, ratio=ratio, target=SPEED_TARGET, ok=ratio >= SPEED_TARGET,
               peak_rss_mb=rss, rss_target_mb=RSS_TARGET_MB)


if __name__ == "__main__":
    main()
