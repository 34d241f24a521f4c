"""Append throughput: ``contribution.recorded`` entries through the batch API on SQLite.

Measures how many entries per second :meth:`node.lab.LabNode.author_many` checks,
signs and stores (SQLite store, one LAB that has joined and added a member), in
batches of ``--batch`` (default 1000), timing only the appends. The limit is the
machine's single-core Ed25519 signing rate with ``cryptography``, measured in the
same run (bench/_limits.py). Target: entries/s >= 0.30 x that rate.

Run: ``.venv/bin/python bench/append.py [--n 100000] [--batch 1000] [--profile]``.
Progress goes to stderr; stdout ends with one JSON line.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._limits import log, peak_rss_mb, report, sign_rate
from federation.genesis import Lab, create_genesis
from node.home import Home, write_genesis_file
from node.lab import LabNode

TARGET = 0.30
STREAMS = ("livelihood", "love", "care")


def setup(tmp: Path) -> LabNode:
    """A joined LAB node on a fresh SQLite store, with one member, ``ada``."""
    now_us = time.time_ns() // 1000
    home, signer = Home.create(tmp / "home", "Bench Lab")
    genesis = create_genesis(
        "Bench Federation", labs=[Lab(signer.public_key, "Bench Lab")],
        units={"JXC": 2}, credit_limits={"JXC": 100_000}, now_us=now_us,
    )
    genesis_file = tmp / "genesis.json"
    write_genesis_file(genesis_file, genesis)
    node = LabNode.open(home, signer)
    node.join(genesis_file, now_us)
    node.author("member.added", {"handle": "ada", "name": "Ada Lovelace"}, now_us)
    return node


def append(node: LabNode, n: int, batch: int) -> float:
    """Append ``n`` contributions in batches of ``batch``; return the seconds taken."""
    elapsed = 0.0
    done = 0
    while done < n:
        k = min(batch, n - done)
        items = [
            ("contribution.recorded",
             {"member": "ada", "stream": STREAMS[(done + i) % 3], "minutes": 30 + (done + i) % 90,
              "project": "urban farm"})
            for i in range(k)
        ]
        now_us = time.time_ns() // 1000
        start = time.perf_counter()
        node.author_many(items, now_us)
        elapsed += time.perf_counter() - start
        done += k
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="entries to append")
    parser.add_argument("--batch", type=int, default=1000, help="entries per author_many call")
    parser.add_argument("--profile", action="store_true", help="cProfile the appends (stderr)")
    args = parser.parse_args()

    log("measuring the single-core Ed25519 signing rate ...")
    limit = sign_rate()
    log(f"  {limit:,.0f} signatures/s")
    with tempfile.TemporaryDirectory(prefix="disco-bench-") as tmp:
        node = setup(Path(tmp))
        try:
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            elapsed = append(node, args.n, args.batch)
            if profiler:
                profiler.disable()
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
            assert node.store.head(node.lab_id)[0] == args.n + 2, "not every entry was stored"
        finally:
            node.close()
    rate = args.n / elapsed
    ratio = rate / limit
    log(f"appended {args.n:,} entries in {elapsed:.2f} s: {rate:,.0f} entries/s, "
        f"{ratio:.3f} x the signing rate (target {TARGET})")
    report("append", n=args.n, batch=args.batch, seconds=elapsed, entries_per_s=rate,
           limit_per_s=limit, ratio=ratio, target=TARGET, ok=ratio >= TARGET,
           peak_rss_mb=peak_rss_mb())


if __name__ == "__main__":
    main()
