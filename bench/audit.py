"""Offline audit throughput and memory: :func:`federation.audit.audit_bundle` on a bundle.

Builds (once, cached under ``/tmp/disco-bench-audit/``, keyed by N) an export bundle
of N signed entries written straight through :class:`federation.bundle.BundleWriter`
as ``disco export`` lays it out: the genesis of 4 LABs, each LAB's signed checkpoint,
then the entries in one arrival order (feeds interleaved), with the
realistic mix of ``bench/ledger.py`` (contributions, transfers offered, answered and
reclaimed, income, members, policies, acknowledgements, and a few entries invalid by
the ledger rules on purpose). Then, in the same run:

(a) limit: the machine's single-core Ed25519 verification rate with ``cryptography``
    (bench/_limits.py), measured before and after (b): the best of the two;
(b) the audit, in a fresh child process: ``audit_bundle(f)`` over the whole file, its
    signatures checked by ``node.audit_workers.SignatureWorkers`` as ``disco audit``
    does (framing, canonical form, every signature on both cores, chains, Merkle roots
    against the checkpoints, the ledger rules, the invariant) -> entries/s;
    ``ratio`` = b / a, target >= 1.6; and the child's peak RSS, target < 300 MB
    (``workers_peak_rss_mb``: the largest of the worker processes the audit forks
    for a big bundle, shared pages included). Also reported: ``cores_used`` (CPU
    seconds of the child and its workers per second of audit) and the 1-minute load
    average before and after, since other work on the machine takes cores from the
    audit but hardly from the single-core limit.

Default N = 200k; the full check: ``.venv/bin/python bench/audit.py --n 1000000``
(building its bundle takes a few minutes, once).

Run: ``.venv/bin/python bench/audit.py [--n 200000] [--profile] [--rebuild-cache]``.
Progress goes to stderr; stdout ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._limits import image_peak_rss_mb, log, peak_rss_mb, report, verify_rate
from bench.ledger import GENERATOR, LAB_NAMES, Generator, make_genesis, signers
from federation.audit import audit_bundle
from federation.bundle import BundleWriter
from node.audit_workers import SignatureWorkers
from protocol import merkle
from protocol.checkpoint import Checkpoint, origin_for, sign_checkpoint
from protocol.sync import frame

TARGET = 1.6
RSS_TARGET_MB = 300.0
CACHE = Path("/tmp/disco-bench-audit")
LAYOUT = "interleaved"  # as disco export writes (part of the cache key)
CREATED_US = 1_800_000_000_000_000
STRUCTURAL = ("bad-", "broken-", "checkpoint-", "wrong-", "not-in-roster", "fork",
              "truncated", "bundle-digest", "non-canonical", "invariant", "unresolved-")
"""Violation codes that would mean the bundle is unsound (the generated mix breaks
only ledger rules on purpose: over-limit offers, second answers)."""


def build(path: Path, n: int) -> None:
    """Write an n-entry bundle to ``path`` (atomically), laid out as ``disco export``
    writes one: every checkpoint first, then the entries in the order a node stored
    them (the generator's one arrival order). The entries go to a spool file first,
    so the checkpoints can be signed before them without holding the entries."""
    keys = signers()
    genesis = make_genesis(keys)
    fid = genesis.federation_id
    index = {k.public_key: i for i, k in enumerate(keys)}
    trees = [merkle.RootBuilder() for _ in keys]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="disco-bench-audit-", dir=path.parent) as tmp:
        spooled = Path(tmp) / "entries"
        with open(spooled, "wb") as spool:
            gen = Generator(genesis, keys)
            for entry in gen.entries(n):
                spool.write(frame(entry.raw))
                trees[index[entry.author]].append(merkle.leaf_hash(entry.hash))
                if gen.count % 100_000 == 0:
                    log(f"  signed {gen.count:,} / {n:,} ({time.perf_counter() - start:.0f} s)")
        part = Path(tmp) / "bundle"
        with open(part, "wb") as out:
            writer = BundleWriter(out, fid, CREATED_US)
            writer.genesis(genesis.encode())
            for i, key in enumerate(keys):
                cp = Checkpoint(origin_for(fid, key.public_key), trees[i].size,
                                trees[i].root())
                writer.checkpoint(key.public_key, sign_checkpoint(cp, key).encode())
            with open(spooled, "rb") as spool:
                for raw in msgpack.Unpacker(spool, raw=False, max_bin_len=1 << 20):
                    writer.entry(raw)
            writer.close()
        assert writer.entries == n, f"wrote {writer.entries} entries, want {n}"
        part.replace(path)
    log(f"  built {n:,} entries ({path.stat().st_size / 1e6:.0f} MB) in "
        f"{time.perf_counter() - start:.0f} s -> {path}")


def bundle_for(n: int, fresh: bool) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    fid = make_genesis(signers()).federation_id
    path = CACHE / f"{GENERATOR}-{fid.hex()[:8]}-{len(LAB_NAMES)}labs-{LAYOUT}-n{n}.bundle"
    if fresh:
        path.unlink(missing_ok=True)
    if path.exists():
        log(f"using the cached bundle {path}")
    else:
        log(f"building a {n:,}-entry bundle (not timed) ...")
        build(path, n)
    return path


def child(path: str) -> dict[str, Any]:
    """The measured process: one audit of the whole bundle."""
    with open(path, "rb") as f:
        start = time.perf_counter()
        with SignatureWorkers.for_bundle(f) as workers:
            audit = audit_bundle(f, check_signatures=workers)
        seconds = time.perf_counter() - start
    own, workers = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
    cpu = own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime
    codes = Counter(v.code for v in audit.violations)
    return {"seconds": seconds, "entries": audit.entries, "ok": audit.ok,
            "violations": len(audit.violations), "codes": dict(codes),
            "checkpoints": audit.checkpoints, "peak_rss_mb": image_peak_rss_mb(),
            "workers_peak_rss_mb": peak_rss_mb(children=True), "cores_used": cpu / seconds,
            "main_cpu_us": (own.ru_utime + own.ru_stime) / audit.entries * 1e6,
            "workers_cpu_us": (workers.ru_utime + workers.ru_stime) / audit.entries * 1e6}


def measure(path: Path, profile: bool) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and return what it printed."""
    cmd = [sys.executable]
    if profile:  # profile stats go to the child's stdout: pass them on to stderr
        cmd += ["-m", "cProfile", "-s", "tottime"]
    cmd += [__file__, "--child", str(path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
                         ).stdout
    lines = out.strip().splitlines()
    if profile:
        log("\n".join(lines[1:45]))
    figures: dict[str, Any] = json.loads(lines[0])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="entries in the bundle")
    parser.add_argument("--profile", action="store_true", help="cProfile the audit (stderr)")
    parser.add_argument("--rebuild-cache", action="store_true", help="build the bundle anew")
    parser.add_argument("--child", metavar="BUNDLE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)), flush=True)
        return

    path = bundle_for(args.n, args.rebuild_cache)
    log("measuring the single-core Ed25519 verification rate ...")
    before = verify_rate()
    log(f"  {before:,.0f} verifications/s")
    log("auditing in a child process ...")
    load_before = os.getloadavg()[0]
    figures = measure(path, args.profile)
    load_after = os.getloadavg()[0]
    after = verify_rate()
    limit = max(before, after)
    log(f"  verification rate again: {after:,.0f}/s; using the best, {limit:,.0f}/s")
    if figures["entries"] != args.n:
        raise SystemExit(f"the audit counted {figures['entries']:,} entries, want {args.n:,}")
    unsound = {c: k for c, k in figures["codes"].items() if c.startswith(STRUCTURAL)}
    if unsound or figures["checkpoints"] != len(LAB_NAMES):
        raise SystemExit(f"the audit found the bundle unsound: {unsound}, "
                         f"{figures['checkpoints']} checkpoints")
    rate = args.n / figures["seconds"]
    ratio = rate / limit
    rss = figures["peak_rss_mb"]
    log(f"audited {args.n:,} entries in {figures['seconds']:.2f} s: {rate:,.0f} entries/s, "
        f"{ratio:.3f} x the verification rate (target {TARGET}); peak RSS {rss} MB "
        f"(target < {RSS_TARGET_MB:.0f}; worker processes {figures['workers_peak_rss_mb']} "
        f"MB each at most); ledger-rule violations found on purpose: {figures['codes']}")
    log(f"CPU per entry: {figures['main_cpu_us']:.1f} us in the auditing process, "
        f"{figures['workers_cpu_us']:.1f} us in its workers; {figures['cores_used']:.2f} "
        "cores used")
    report("audit", n=args.n, seconds=figures["seconds"], entries_per_s=rate,
           limit_per_s=limit, ratio=ratio, target=TARGET, peak_rss_mb=rss,
           rss_target_mb=RSS_TARGET_MB, ok=ratio >= TARGET and rss < RSS_TARGET_MB,
           workers_peak_rss_mb=figures["workers_peak_rss_mb"],
           cores_used=figures["cores_used"], main_cpu_us=figures["main_cpu_us"],
           workers_cpu_us=figures["workers_cpu_us"], load_before=load_before,
           load_after=load_after,
           violations=figures["violations"])


if __name__ == "__main__":
    main()
