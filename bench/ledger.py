"""Ledger projection: catch-up rate and memory from zero, and ``disco balance`` time.

Builds (once, cached under ``/tmp/disco-bench-ledger/``, keyed by N) a SQLite store of
N signed entries across the 4 LABs of one genesis, in one global arrival order:
~70% ``contribution.recorded``, ~15% ``transfer.offered`` (kept within the credit
limit, except a few on purpose), ~10% ``transfer.accepted``/``declined`` answering
earlier offers, and the rest ``member.added``/``updated``, ``income.recorded``,
``policy.set``, ``transfer.reclaimed`` and ``contribution.acknowledged`` (plus a few
invalid entries: over-limit offers, second answers). Then, in the same run:

(a) raw read rate: :meth:`FeedStore.notifications` over the whole store, no decoding
    (best of two passes, one before and one after (b)) -> notifications/s;
(b) catch-up from zero: ``LedgerProjection(store, genesis).rebuild()`` in a fresh
    spawned child (which reads ahead in a second process, :mod:`node.readahead`)
    -> entries/s; ``ratio`` = b / a, target >= 0.25; CPU time includes the reader;
(c) peak RSS (``ru_maxrss``) of that child plus its reader's, target < 300 MB;
(d) ``disco balance``: median time of ``LedgerProjection(store, genesis).summary()``
    (the call ``LabNode.summary`` makes) on the caught-up store, at N and at 10k
    entries; ``balance_ratio`` = t(N) / t(10k), target <= 2.0. Also reported: the
    same with the store opened each time, and the real ``disco balance --json``
    subprocess on a node home made over each store (``--no-cli`` skips it).

Run: ``.venv/bin/python bench/ledger.py [--n 1000000] [--profile] [--rebuild-cache]``.
``--profile`` runs the catch-up in this process under cProfile (stderr; its rate is
then not reported as the figure). Progress goes to stderr; stdout ends with one JSON
line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import json
import multiprocessing
import os
import pstats
import random
import resource
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._limits import log, peak_rss_mb, report
from federation.genesis import Genesis, Lab, create_genesis
from node.home import save_private_key, write_genesis_file
from node.projection import LedgerProjection
from node.store import FeedStore, StoreConfig
from protocol.entry import Entry, Ref, sha256, sign_entry
from protocol.keys import Signer

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.25
RSS_TARGET_MB = 300
BALANCE_TARGET = 2.0
SMALL_N = 10_000
BATCH = 2000
BALANCE_CALLS = 20
CLI_CALLS = 5
CACHE = Path("/tmp/disco-bench-ledger")
GENERATOR = "v3"  # bump when the generated mix changes, so old caches are not reused
CREDIT_LIMIT = 50_000_000  # 500,000.00 JXC: ~1/3 of the offers stay outstanding
GENESIS_US = 1_700_000_000_000_000
STEP_US = 90_000_000  # one entry every 90 s: 1M entries span about 2.9 years
LAB_NAMES = ("Urban Farm", "Landscaping Coop", "Fab Lab", "Land Trust")
STREAMS = ("livelihood", "love", "care")
MEMBERS = 8  # to start with; a LAB grows to at most MAX_MEMBERS
MAX_MEMBERS = 20
DISCO = [sys.executable, "-c", "from node.cli import run; run()"]


def signers() -> list[Signer]:
    """The 4 LAB keys, fixed so that a cached store matches its genesis."""
    return [Signer.from_seed(sha256(f"disco-bench-ledger/lab/{i}".encode()))
            for i in range(len(LAB_NAMES))]


def make_genesis(keys: list[Signer]) -> Genesis:
    return create_genesis(
        "Bench Federation", labs=[Lab(k.public_key, n) for k, n in zip(keys, LAB_NAMES,
                                                                      strict=True)],
        units={"JXC": 2}, credit_limits={"JXC": CREDIT_LIMIT}, now_us=GENESIS_US)


# -- building the store (not timed) -------------------------------------------


class Generator:
    """Signs a realistic federation history, entry by entry, in arrival order."""

    names: tuple[str, ...] = LAB_NAMES
    """The LABs' names, one per key (a subclass may have more LABs)."""

    def __init__(self, genesis: Genesis, keys: list[Signer], seed: int = 7) -> None:
        self.genesis = genesis
        self.fid = genesis.federation_id
        self.keys = keys
        self.ids = [k.public_key for k in keys]
        self.rng = random.Random(seed)
        self.heads: list[tuple[int, bytes | None]] = [(0, None)] * len(keys)
        self.balance = [0] * len(keys)
        self.handles: list[list[str]] = [[] for _ in keys]
        self.inbox: list[deque[tuple[Ref, int, int]]] = [deque() for _ in keys]  # offers to me
        self.answered: list[deque[Ref]] = [deque(maxlen=50) for _ in keys]  # for 2nd answers
        self.reclaims: list[deque[tuple[Ref, Ref, int]]] = [deque() for _ in keys]  # declined
        self.for_me: list[deque[Ref]] = [deque(maxlen=200) for _ in keys]  # contributions
        self.ts = GENESIS_US
        self.count = 0

    def sign(self, lab: int, kind: str, body: dict[str, Any]) -> Entry:
        seq, prev = self.heads[lab]
        self.ts += STEP_US + self.rng.randrange(-30_000_000, 30_000_000)
        entry = sign_entry(self.keys[lab], federation_id=self.fid, seq=seq + 1, prev=prev,
                           ts_us=self.ts, kind=kind, body=body)
        self.heads[lab] = (seq + 1, entry.hash)
        self.count += 1
        return entry

    def entries(self, n: int) -> Iterator[Entry]:
        rng = self.rng
        for lab, name in enumerate(self.names):
            yield self.sign(lab, "lab.joined", {"federation": self.fid, "name": name})
        for lab in range(len(self.names)):
            for _ in range(MEMBERS):
                yield self.member(lab)
        while self.count < n:
            lab = rng.randrange(len(self.keys))
            r = rng.random()
            if r < 0.70:
                yield self.contribution(lab)
            elif r < 0.85:
                yield self.offer(lab)
            elif r < 0.95:
                yield self.answer(lab)
            else:
                yield self.other(lab, rng.random())

    def member(self, lab: int) -> Entry:
        handle = f"m{len(self.handles[lab])}-{lab}"
        self.handles[lab].append(handle)
        return self.sign(lab, "member.added", {"handle": handle,
                                               "name": f"Member {handle.upper()}"})

    def contribution(self, lab: int) -> Entry:
        rng = self.rng
        body: dict[str, Any] = {"member": rng.choice(self.handles[lab]),
                                "stream": rng.choice(STREAMS),
                                "minutes": rng.randrange(15, 8 * 60, 15)}
        other = None
        if rng.random() < 0.3:
            other = rng.choice([i for i in range(len(self.ids)) if i != lab])
            body["for_lab"] = self.ids[other]
        if rng.random() < 0.5:
            body["project"] = rng.choice(("urban farm", "solar roof", "land trust intake",
                                          "fab lab classes", "community kitchen"))
        if rng.random() < 0.2:
            body["note"] = "weekly shift, see the team notes"
        entry = self.sign(lab, "contribution.recorded", body)
        if other is not None:
            self.for_me[other].append(entry.ref)
        return entry

    def offer(self, lab: int) -> Entry:
        rng = self.rng
        payee = rng.choice([i for i in range(len(self.ids)) if i != lab])
        amount = rng.randrange(100, 5_000)
        if rng.random() < 0.001:
            amount = CREDIT_LIMIT * 3  # invalid on purpose: over the credit limit
        elif self.balance[lab] - amount < -CREDIT_LIMIT:
            return self.contribution(lab)
        body: dict[str, Any] = {"to": self.ids[payee], "amount": amount, "unit": "JXC"}
        if rng.random() < 0.5:
            body["memo"] = "seedlings and compost, May delivery"
        entry = self.sign(lab, "transfer.offered", body)
        if amount <= CREDIT_LIMIT:
            self.balance[lab] -= amount
            self.inbox[payee].append((entry.ref, lab, amount))
        return entry

    def answer(self, lab: int) -> Entry:
        rng = self.rng
        if rng.random() < 0.002 and self.answered[lab]:
            # invalid on purpose: a second answer to an offer already answered
            return self.sign(lab, "transfer.accepted", {"offer": rng.choice(
                self.answered[lab]).as_list()})
        if not self.inbox[lab]:
            return self.contribution(lab)
        ref, payer, amount = self.inbox[lab].popleft()
        self.answered[lab].append(ref)
        if rng.random() < 0.8:
            self.balance[lab] += amount
            return self.sign(lab, "transfer.accepted", {"offer": ref.as_list()})
        entry = self.sign(lab, "transfer.declined", {"offer": ref.as_list(),
                                                     "reason": "not ordered"})
        self.reclaims[payer].append((ref, entry.ref, amount))
        return entry

    def other(self, lab: int, r: float) -> Entry:
        rng = self.rng
        if r < 0.45 and self.reclaims[lab]:
            offer, decline, amount = self.reclaims[lab].popleft()
            self.balance[lab] += amount
            return self.sign(lab, "transfer.reclaimed", {"offer": offer.as_list(),
                                                         "decline": decline.as_list()})
        if r < 0.55 and self.for_me[lab]:
            ref = self.for_me[lab].popleft()
            return self.sign(lab, "contribution.acknowledged", {"contribution": ref.as_list()})
        if r < 0.70:
            return self.sign(lab, "income.recorded", {
                "amount": rng.randrange(10_000, 5_000_000), "unit": "JXC",
                "period": time.strftime("%Y-%m", time.gmtime(self.ts / 1e6)),
                "source": "market sales"})
        if r < 0.85 or len(self.handles[lab]) >= MAX_MEMBERS:
            return self.sign(lab, "member.updated", {"handle": rng.choice(self.handles[lab]),
                                                     "name": "Renamed Member"})
        if r < 0.95:
            return self.sign(lab, "policy.set", {
                "weights": {s: rng.randrange(1, 5) for s in STREAMS},
                "care_ratio": rng.randrange(0, 30)})
        return self.member(lab)


def build(path: Path, n: int, genesis: Genesis, keys: list[Signer],
          generator: type[Generator] = Generator) -> None:
    """Sign and insert n entries made by ``generator`` into a new SQLite store at
    ``path`` (atomically named)."""
    tmp = path.with_name(path.name + f".building-{os.getpid()}")
    for p in (tmp, *tmp.parent.glob(tmp.name + "-*")):
        p.unlink(missing_ok=True)
    start = time.perf_counter()
    gen = generator(genesis, keys)
    with FeedStore(StoreConfig("sqlite", path=tmp)) as store:
        batch: list[Entry] = []
        for entry in gen.entries(n):
            batch.append(entry)
            if len(batch) >= BATCH:
                store.insert(batch)
                batch = []
                if gen.count % 100_000 < BATCH:
                    log(f"  built {gen.count:,} / {n:,} ({time.perf_counter() - start:.0f} s)")
        store.insert(batch)
    tmp.replace(path)
    log(f"  built {n:,} entries in {time.perf_counter() - start:.0f} s -> {path}")


def store_for(n: int, genesis: Genesis, keys: list[Signer], fresh: bool) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{GENERATOR}-{genesis.federation_id.hex()[:8]}-n{n}.sqlite"
    if fresh:
        path.unlink(missing_ok=True)
    if path.exists():
        log(f"using the cached store {path}")
    else:
        log(f"building a {n:,}-entry store (not timed) ...")
        build(path, n, genesis, keys)
    return path


def node_home(store: Path, genesis: Genesis, key: Signer) -> Path:
    """A node folder over ``store`` for the real ``disco balance`` (made once)."""
    home = store.with_suffix(".home")
    if not (home / "node.json").exists():
        home.mkdir(mode=0o700, exist_ok=True)
        for name in ("lab.key", "genesis.json"):
            (home / name).unlink(missing_ok=True)
        save_private_key(home / "lab.key", key)
        write_genesis_file(home / "genesis.json", genesis)
        config = {"format": "disco-node/1", "lab_id": key.public_key.hex(),
                  "name": LAB_NAMES[0], "store": {"backend": "sqlite", "path": str(store)}}
        (home / "node.json").write_text(json.dumps(config, indent=2) + "\n")
    return home


# -- measuring ------------------------------------------------------------------


def read_rate(path: Path) -> tuple[int, float, float]:
    """(notifications, per wall second, per CPU second) of one raw pass over the store."""
    with FeedStore(StoreConfig("sqlite", path=path)) as store:
        count = 0
        start, cpu = time.perf_counter(), time.process_time()
        for _ in store.notifications():
            count += 1
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return count, count / elapsed, count / cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def catch_up_child(path: str, genesis: Genesis) -> dict[str, Any]:
    """Run in a fresh spawned process: rebuild the projection from zero, timed. CPU
    time and memory include the read-ahead process the catch-up starts."""
    with FeedStore(StoreConfig("sqlite", path=Path(path))) as store:
        rss_before = peak_rss_mb()
        start, cpu, reader_cpu = time.perf_counter(), time.process_time(), _children_cpu()
        ledger, position = LedgerProjection(store, genesis).rebuild()
        elapsed = time.perf_counter() - start
        reader_cpu = _children_cpu() - reader_cpu
        cpu = time.process_time() - cpu + reader_cpu
        reader_rss = peak_rss_mb(children=True) if reader_cpu else 0.0
        return {"seconds": elapsed, "cpu_seconds": cpu, "position": position,
                "digest": ledger.digest().hex(),
                "offers": len(ledger.offers), "invalid": len(ledger.invalid),
                "pending": len(ledger.pending),
                "peak_rss_mb": round(peak_rss_mb() + reader_rss, 1),
                "reader_peak_rss_mb": reader_rss, "reader_cpu_seconds": reader_cpu,
                "rss_before_mb": rss_before,
                "balances": sorted([a.hex()[:8], u, v] for (a, u), v
                                   in ledger.balances.items())}


def catch_up(path: Path, genesis: Genesis) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(catch_up_child, str(path), genesis).result()


def profile_catch_up(path: Path, genesis: Genesis) -> None:
    with FeedStore(StoreConfig("sqlite", path=path)) as store:
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        _, position = LedgerProjection(store, genesis).rebuild()
        profiler.disable()
        log(f"profiled catch-up: {position:,} entries in {time.perf_counter() - start:.1f} s "
            "(under cProfile)")
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)


def caught_up(path: Path, genesis: Genesis) -> None:
    """Make sure the saved projection of ``path`` is at the head of its log (untimed)."""
    with FeedStore(StoreConfig("sqlite", path=path)) as store:
        if store.load_view("ledger", state=False)[0] < store.max_notification_id():
            log(f"  catching up {path.name} first (not timed) ...")
            LedgerProjection(store, genesis).rebuild()


def balance_ms(paths: list[Path], genesis: Genesis) -> list[dict[str, float]]:
    """Per store: median ms of summary() on an open store, and of open + summary() +
    close. The stores are measured in turns, call by call, so that a busy moment of
    the machine does not land on one of them only."""
    for path in paths:
        caught_up(path, genesis)
    stores = [FeedStore(StoreConfig("sqlite", path=p)) for p in paths]
    try:
        projections = [LedgerProjection(s, genesis) for s in stores]
        tops = [s.max_notification_id() for s in stores]
        times: list[list[float]] = [[] for _ in paths]
        for i in range(BALANCE_CALLS + 2):
            for k, projection in enumerate(projections):
                start = time.perf_counter()
                summary = projection.summary()
                if i >= 2:
                    times[k].append(time.perf_counter() - start)
                assert summary["position"] == tops[k], "summary() had to catch up"
    finally:
        for s in stores:
            s.close()
    opened: list[list[float]] = [[] for _ in paths]
    for _ in range(BALANCE_CALLS):
        for k, path in enumerate(paths):
            start = time.perf_counter()
            with FeedStore(StoreConfig("sqlite", path=path)) as store:
                LedgerProjection(store, genesis).summary()
            opened[k].append(time.perf_counter() - start)
    return [{"summary_ms": statistics.median(t) * 1000,
             "open_summary_ms": statistics.median(o) * 1000}
            for t, o in zip(times, opened, strict=True)]


def cli_balance_ms(homes: list[Path]) -> list[float]:
    """Median ms of the real ``disco balance --json`` subprocess, per home, in turns."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DISCO_HOME", None)
    times: list[list[float]] = [[] for _ in homes]
    for _ in range(CLI_CALLS):
        for k, home in enumerate(homes):
            start = time.perf_counter()
            out = subprocess.run([*DISCO, "--home", str(home), "balance", "--json"], env=env,
                                 capture_output=True, text=True, timeout=600, check=True)
            times[k].append(time.perf_counter() - start)
            assert "balances" in json.loads(out.stdout)
    return [statistics.median(t) * 1000 for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="entries in the store")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile the catch-up in this process (stderr)")
    parser.add_argument("--rebuild-cache", action="store_true",
                        help="build the stores again instead of reusing /tmp caches")
    parser.add_argument("--no-cli", action="store_true",
                        help="skip timing the real 'disco balance --json' subprocess")
    args = parser.parse_args()

    keys = signers()
    genesis = make_genesis(keys)
    big = store_for(args.n, genesis, keys, args.rebuild_cache)
    small = store_for(SMALL_N, genesis, keys, args.rebuild_cache)

    log("(a) raw notification read ...")
    count, read1, read1_cpu = read_rate(big)
    log(f"  {count:,} notifications at {read1:,.0f}/s ({read1_cpu:,.0f} per CPU second)")
    log("(b, c) projection catch-up from zero, in a spawned child ...")
    child = catch_up(big, genesis)
    assert child["position"] == count, (child["position"], count)
    catch_up_per_s = count / child["seconds"]
    catch_up_cpu_per_s = count / child["cpu_seconds"]
    log(f"  {count:,} entries in {child['seconds']:.1f} s: {catch_up_per_s:,.0f}/s "
        f"({catch_up_cpu_per_s:,.0f} per CPU second); "
        f"peak RSS {child['peak_rss_mb']} MB, read-ahead process included "
        f"({child['reader_peak_rss_mb']} MB, {child['reader_cpu_seconds']:.1f} CPU s; "
        f"before: {child['rss_before_mb']} MB); "
        f"offers {child['offers']:,}, invalid {child['invalid']:,}, "
        f"pending {child['pending']}")
    log(f"  balances {child['balances']}")
    _, read2, read2_cpu = read_rate(big)
    read_per_s, read_cpu_per_s = max(read1, read2), max(read1_cpu, read2_cpu)
    log(f"  raw read again: {read2:,.0f}/s ({read2_cpu:,.0f} per CPU second); using the "
        f"best, {read_per_s:,.0f}/s")
    ratio = catch_up_per_s / read_per_s
    ratio_cpu = catch_up_cpu_per_s / read_cpu_per_s
    log(f"  ratio {ratio:.3f} (wall), {ratio_cpu:.3f} (CPU time); target {TARGET}")

    log("(d) balance: summary() at N and at 10k ...")
    at_n, at_small = balance_ms([big, small], genesis)
    balance_ratio = at_n["summary_ms"] / at_small["summary_ms"]
    open_ratio = at_n["open_summary_ms"] / at_small["open_summary_ms"]
    log(f"  summary(): {at_n['summary_ms']:.3f} ms at N, {at_small['summary_ms']:.3f} ms "
        f"at 10k (x{balance_ratio:.2f}); with open: {at_n['open_summary_ms']:.2f} ms vs "
        f"{at_small['open_summary_ms']:.2f} ms (x{open_ratio:.2f})")
    cli: dict[str, Any] = {}
    if not args.no_cli:
        cli_n, cli_small = cli_balance_ms([node_home(big, genesis, keys[0]),
                                           node_home(small, genesis, keys[0])])
        cli = {"cli_balance_ms_n": cli_n, "cli_balance_ms_10k": cli_small,
               "cli_balance_ratio": cli_n / cli_small}
        log(f"  disco balance --json: {cli_n:.0f} ms at N, {cli_small:.0f} ms at 10k "
            f"(x{cli_n / cli_small:.2f})")

    if args.profile:
        profile_catch_up(big, genesis)

    ok = (ratio >= TARGET and child["peak_rss_mb"] < RSS_TARGET_MB
          and balance_ratio <= BALANCE_TARGET)
    report("ledger", n=count, read_per_s=read_per_s, catch_up_per_s=catch_up_per_s,
           catch_up_s=child["seconds"], ratio=ratio, target=TARGET,
           read_cpu_per_s=read_cpu_per_s, catch_up_cpu_per_s=catch_up_cpu_per_s,
           ratio_cpu=ratio_cpu,
           peak_rss_mb=child["peak_rss_mb"], rss_target_mb=RSS_TARGET_MB,
           balance_ms_n=at_n["summary_ms"], balance_ms_10k=at_small["summary_ms"],
           balance_ratio=balance_ratio, balance_target=BALANCE_TARGET,
           open_balance_ms_n=at_n["open_summary_ms"],
           open_balance_ms_10k=at_small["open_summary_ms"], **cli,
           invalid=child["invalid"], pending=child["pending"], ok=ok)


if __name__ == "__main__":
    main()
