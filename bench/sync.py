"""Initial sync over loopback HTTP, the receiver's memory, and gossip convergence.

Builds a federation of two LABs, A and B (temp dir), and fills A's feed with N signed
entries (``lab.joined``, ``member.added``, then ``contribution.recorded``; signed on
every core, not timed). Then, in the same run:

(a) limit: the machine's single-core Ed25519 verification rate with ``cryptography``
    (bench/_limits.py);
(b) ingest: a fresh copy of B's node, in a child process, takes A's raw entries in
    batches of 500 through :meth:`node.lab.LabNode.ingest` (decode, verify, store)
    -> entries/s; ``ingest_ratio`` = b / a, target >= 1.0;
(c) sync: A runs as a real ``disco serve`` subprocess on 127.0.0.1 (port 0); B, in a
    child process, runs :func:`node.client.sync_round` against it until it holds all N
    entries -> entries/s; ``ratio`` = c / b, target >= 0.60 (HTTP may cost 40%);
(d) gossip: :func:`federation.gossip.plan` driven over in-memory frontiers, no sockets: 100
    nodes in seeded random connected 3-regular graphs, each holding only its own feed
    of K entries; each round every node syncs with each neighbour (pull, bounded as a
    real round is, and push, applied from the frontiers as they were at the start of
    the round: a message travels one hop per round) -> rounds until every frontier is
    equal, the worst of several graphs; target <= 2 x log2(100).

Memory (``--memory N``, e.g. ``--memory 1000000``): (c) with N entries; the figure is
the peak RSS (``ru_maxrss``) of the receiving child, target < 200 MB; ``ratio`` is then
peak_rss_mb / 200 and ``ok`` means ratio < 1. (b) then runs on the first 100k entries.

Run: ``.venv/bin/python bench/sync.py [--n 100000] [--memory N] [--profile ingest|sync]``.
Progress goes to stderr; stdout ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._limits import image_peak_rss_mb, log, report, verify_rate
from federation.genesis import Genesis, Lab, create_genesis
from federation.gossip import plan
from node.checkpoints import CheckpointBook
from node.home import Home, write_genesis_file
from node.lab import LabNode
from node.store import FeedStore
from protocol import canonical
from protocol.entry import SIGNING_PREFIX, Entry, Header, sha256
from protocol.keys import Signer

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.60
INGEST_TARGET = 1.0
RSS_TARGET_MB = 200.0
INGEST_BATCH = 500
MEMORY_INGEST_N = 100_000
BUILD_CHUNK = 20_000
STORE_BATCH = 1000
GOSSIP_NODES = 100
GOSSIP_DEGREE = 3
GOSSIP_FEED = 100
GOSSIP_GRAPHS = 10
GOSSIP_PULL_LIMIT = 5000  # node.client.PULL_LIMIT
STREAMS = ("livelihood", "love", "care")
NOW_US = 1_700_000_000_000_000
DISCO = [sys.executable, "-c", "from node.cli import run; run()"]


# -- building (not timed) -------------------------------------------------------


def make_federation(root: Path, names: list[str]) -> tuple[Genesis, list[Home], list[Signer]]:
    """LAB homes on SQLite that joined one genesis (as tests/conftest.py does)."""
    homes, signers = [], []
    for name in names:
        home, signer = Home.create(root / name.lower(), name)
        homes.append(home)
        signers.append(signer)
    genesis = create_genesis(
        "Bench Federation", labs=[Lab(s.public_key, n) for s, n in zip(signers, names,
                                                                        strict=True)],
        units={"JXC": 2}, credit_limits={"JXC": 100_000}, now_us=NOW_US)
    path = root / "genesis.json"
    write_genesis_file(path, genesis)
    for home, signer in zip(homes, signers, strict=True):
        with LabNode.open(home, signer) as node:
            node.join(path, NOW_US)
    return genesis, homes, signers


def _sign_all(seed: bytes, messages: list[bytes]) -> list[bytes]:
    signer = Signer.from_seed(seed)
    return [signer.sign(m) for m in messages]


def fill(home: Home, signer: Signer, genesis: Genesis, n: int) -> None:
    """Grow the LAB's feed to ``n`` entries: headers chained here, signed on every core
    (the entry hash does not depend on the signature), stored in batches."""
    fid = genesis.federation_id
    author = signer.public_key
    seed = signer.private_key.private_bytes_raw()
    workers = os.cpu_count() or 1
    start = time.perf_counter()
    with FeedStore(home.store_config()) as store, ProcessPoolExecutor(workers) as pool:
        seq, prev = store.head(author)
        while seq < n:
            todo: list[tuple[Header, bytes, bytes]] = []
            for s in range(seq + 1, min(n, seq + BUILD_CHUNK) + 1):
                if s == 2:
                    kind, body = "member.added", {"handle": "ada", "name": "Ada Lovelace"}
                else:
                    kind, body = "contribution.recorded", {
                        "member": "ada", "stream": STREAMS[s % 3], "minutes": 30 + s % 90,
                        "project": "urban farm"}
                body_bytes = canonical.encode(body)
                header = Header(fid, author, s, prev, NOW_US + s, kind, sha256(body_bytes))
                header_bytes = header.encode()
                prev = sha256(header_bytes)
                todo.append((header, header_bytes, body_bytes))
            parts = [todo[i::workers] for i in range(workers)]
            signed = list(pool.map(_sign_all, [seed] * workers,
                                   [[SIGNING_PREFIX + hb for _, hb, _ in p] for p in parts]))
            signatures: list[bytes] = [b""] * len(todo)
            for i, sigs in enumerate(signed):
                signatures[i::workers] = sigs
            entries = [
                Entry(h, sig, body, msgpack.packb([h.as_list(), sig, body], use_bin_type=True),
                      sha256(hb), hb)
                for (h, hb, body), sig in zip(todo, signatures, strict=True)]
            for i in range(0, len(entries), STORE_BATCH):
                store.insert(entries[i:i + STORE_BATCH])
            if entries[-1].seq // 100_000 != seq // 100_000 or entries[-1].seq == n:
                log(f"  built {entries[-1].seq:,} / {n:,} "
                    f"({time.perf_counter() - start:.0f} s)")
            seq = entries[-1].seq
        # A running node keeps its own feed's Merkle range current (every sync round
        # signs a checkpoint): bring it up to date here, untimed, as it would be.
        CheckpointBook(store, fid).sign_own(signer)


# -- the measured children ------------------------------------------------------


def ingest_child(home_dir: str, source_home: str, author_hex: str, n: int) -> dict[str, Any]:
    """Ingest the first ``n`` entries of A's feed into the node at ``home_dir``, timed."""
    home = Home.open(Path(home_dir))
    author = bytes.fromhex(author_hex)
    source = Home.open(Path(source_home))
    with FeedStore(source.store_config()) as store:
        raws = [raw for _, raw in store.read_raw(author, upto=n)]
    with LabNode.open(home, home.signer()) as node:
        stored = 0
        start = time.perf_counter()
        for i in range(0, len(raws), INGEST_BATCH):
            stored += node.ingest(raws[i:i + INGEST_BATCH]).stored
        seconds = time.perf_counter() - start
        held = node.store.head(author)[0]
    return {"seconds": seconds, "stored": stored, "held": held,
            "peak_rss_mb": image_peak_rss_mb()}


async def _sync_until(home: Home, url: str, author: bytes, n: int) -> dict[str, Any]:
    import aiohttp

    from node.client import sync_round
    from node.service import NodeService

    service = NodeService.open(home, home.signer())
    service.log = log
    try:
        rounds = requests = 0
        async with aiohttp.ClientSession() as session:
            start = time.perf_counter()
            while True:
                result = await sync_round(service, session, url)
                rounds += 1
                requests += result.requests
                held = (await service.read(service.node.store.head, author))[0]
                if held >= n:
                    break
                if not result.pulled:
                    raise SystemExit(f"sync stalled at {held:,} of {n:,} entries: "
                                     f"{result.notes}")
            seconds = time.perf_counter() - start
        return {"seconds": seconds, "rounds": rounds, "requests": requests, "held": held,
                "peak_rss_mb": image_peak_rss_mb()}
    finally:
        service.close()


def sync_child(home_dir: str, url: str, author_hex: str, n: int) -> dict[str, Any]:
    """Pull A's feed from ``url`` into B's node at ``home_dir`` until it holds n entries."""
    return asyncio.run(_sync_until(Home.open(Path(home_dir)), url, bytes.fromhex(author_hex),
                                   n))


def run_child(what: str, args: list[str], profile: bool) -> dict[str, Any]:
    """Run a child in a fresh interpreter; return the JSON it printed last."""
    cmd = [sys.executable]
    if profile:  # the profile goes to the child's stdout: pass it on to stderr
        cmd += ["-m", "cProfile", "-s", "tottime"]
    cmd += [__file__, "--child", what, *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    lines = out.strip().splitlines()
    if profile:
        log("\n".join(lines[1:45]))
    figures: dict[str, Any] = json.loads(lines[0])
    return figures


class Server:
    """``disco serve`` for a home, on 127.0.0.1 and a free port."""

    def __init__(self, home: Home) -> None:
        self.proc = subprocess.Popen(
            [*DISCO, "--home", str(home.path), "serve", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                self.url = found.group(1)
                # Keep reading what it prints, so a full pipe never blocks it.
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return
        raise SystemExit(f"disco serve exited {self.proc.wait()} without listening")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- gossip simulation (no sockets) ---------------------------------------------


def random_regular(n: int, degree: int, rng: random.Random) -> list[list[int]]:
    """A random connected ``degree``-regular simple graph (pairing model, retried)."""
    while True:
        stubs = [v for v in range(n) for _ in range(degree)]
        rng.shuffle(stubs)
        edges = {(min(a, b), max(a, b)) for a, b in zip(stubs[::2], stubs[1::2],
                                                        strict=True)}
        if len(edges) != len(stubs) // 2 or any(a == b for a, b in edges):
            continue
        adjacent: list[list[int]] = [[] for _ in range(n)]
        for a, b in sorted(edges):
            adjacent[a].append(b)
            adjacent[b].append(a)
        seen, todo = {0}, [0]
        while todo:
            for w in adjacent[todo.pop()]:
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        if len(seen) == n:
            return adjacent


def _head(author: bytes, seq: int) -> bytes:
    return sha256(author + seq.to_bytes(8, "big"))


def simulate(n: int, degree: int, feed: int, seed: int) -> int:
    """Rounds until every node's frontier is equal (see the module docstring, (d))."""
    rng = random.Random(seed)
    graph = random_regular(n, degree, rng)
    authors = [sha256(f"gossip-lab-{i}".encode()) for i in range(n)]
    frontiers: list[dict[bytes, tuple[int, bytes | None]]] = [
        {a: (feed, _head(a, feed))} for a in authors]

    def take(frontier: dict[bytes, tuple[int, bytes | None]], author: bytes, seq: int) -> None:
        if seq > frontier.get(author, (0, None))[0]:
            frontier[author] = (seq, _head(author, seq))

    rounds = 0
    while any(f != frontiers[0] for f in frontiers):
        rounds += 1
        if rounds > 10 * n:
            raise SystemExit("gossip did not converge")
        old: list[Mapping[bytes, tuple[int, bytes | None]]] = [dict(f) for f in frontiers]
        for u in range(n):
            for v in graph[u]:
                todo = plan(old[u], old[v], authors)
                left = GOSSIP_PULL_LIMIT  # one bounded pull per round, oldest first per feed
                for author, after in sorted(todo.pull.items()):
                    if left <= 0:
                        break
                    upto = min(old[v][author][0], after + left)
                    take(frontiers[u], author, upto)
                    left -= upto - after
                for author in todo.push:  # pushes run until the peer has everything
                    take(frontiers[v], author, old[u][author][0])
                if todo.suspect:
                    raise SystemExit("a fork in a simulation without forks")
    return rounds


# -- main -------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="entries to sync")
    parser.add_argument("--memory", type=int, metavar="N", help="memory run with N entries")
    parser.add_argument("--profile", choices=("ingest", "sync"),
                        help="cProfile one measured child (stderr)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, *rest = args.child
        fn = {"ingest": ingest_child, "sync": sync_child}[what]
        print(json.dumps(fn(*rest[:3], int(rest[3]))), flush=True)
        return

    n = args.memory or args.n
    log("measuring the single-core Ed25519 verification rate ...")
    limit = verify_rate()
    log(f"  {limit:,.0f} verifications/s")

    log(f"gossip: {GOSSIP_NODES} nodes, random {GOSSIP_DEGREE}-regular graphs ...")
    gossip = [simulate(GOSSIP_NODES, GOSSIP_DEGREE, GOSSIP_FEED, seed)
              for seed in range(GOSSIP_GRAPHS)]
    gossip_target = 2 * math.log2(GOSSIP_NODES)
    log(f"  rounds to converge per graph: {gossip} (target <= {gossip_target:.1f})")

    with tempfile.TemporaryDirectory(prefix="disco-bench-sync-") as tmp:
        root = Path(tmp)
        genesis, (home_a, home_b), (signer_a, _) = make_federation(root, ["A", "B"])
        fresh = root / "b-fresh"
        shutil.copytree(home_b.path, fresh)
        log(f"building A's feed of {n:,} entries (not timed) ...")
        fill(home_a, signer_a, genesis, n)
        author = signer_a.public_key.hex()

        ingest_n = min(n, MEMORY_INGEST_N) if args.memory else n
        log(f"ingest: a fresh copy of B takes {ingest_n:,} entries in batches of "
            f"{INGEST_BATCH} (child process) ...")
        ingest = run_child("ingest", [str(fresh), str(home_a.path), author, str(ingest_n)],
                           args.profile == "ingest")
        assert ingest["held"] == ingest_n, f"ingest left {ingest['held']} entries"
        ingest_rate = ingest_n / ingest["seconds"]
        log(f"  {ingest_rate:,.0f} entries/s ({ingest_rate / limit:.3f} x the verification "
            f"rate), peak RSS {ingest['peak_rss_mb']} MB")

        log("sync: starting A's disco serve ...")
        server = Server(home_a)
        try:
            log(f"  A listens on {server.url}; B syncs (child process) ...")
            sync = run_child("sync", [str(home_b.path), server.url, author, str(n)],
                             args.profile == "sync")
        finally:
            server.stop()
    assert sync["held"] == n, f"sync left {sync['held']} entries"
    sync_rate = n / sync["seconds"]
    rss = sync["peak_rss_mb"]
    ratio = sync_rate / ingest_rate
    ingest_ratio = ingest_rate / limit
    gossip_rounds = max(gossip)
    log(f"synced {n:,} entries in {sync['seconds']:.2f} s ({sync['rounds']} rounds): "
        f"{sync_rate:,.0f} entries/s, {ratio:.3f} x the ingest rate; receiver peak RSS "
        f"{rss} MB")
    common = dict(entries_per_s=sync_rate, ingest_per_s=ingest_rate, limit_per_s=limit,
                  sync_ratio=ratio, ingest_ratio=ingest_ratio, ingest_target=INGEST_TARGET,
                  rounds=sync["rounds"], gossip_rounds=gossip_rounds,
                  gossip_target=round(gossip_target, 2))
    if args.memory:
        mem_ratio = rss / RSS_TARGET_MB
        report("sync-memory", n=n, peak_rss_mb=rss, ratio=mem_ratio, target=RSS_TARGET_MB,
               ok=mem_ratio < 1.0, seconds=sync["seconds"], **common)
    else:
        ok = ratio >= TARGET and ingest_ratio >= INGEST_TARGET and gossip_rounds <= gossip_target
        report("sync", n=n, seconds=sync["seconds"], ratio=ratio, target=TARGET, ok=ok,
               ingest_seconds=ingest["seconds"], peak_rss_mb=rss,
               rss_target_mb=RSS_TARGET_MB, **{k: v for k, v in common.items()
                                               if k != "sync_ratio"})


if __name__ == "__main__":
    main()
