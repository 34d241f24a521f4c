"""Dashboard: response time of every page, and its ratio to the page's JSON twin.

Builds (once, cached under ``/tmp/disco-bench-dashboard/``, keyed by N) a SQLite store
of N signed entries across the 10 LABs of one genesis, with the mix of
``bench/ledger.py`` (its :class:`~bench.ledger.Generator`: ~70% contributions, ~15%
offers, ~10% answers, the rest members, income, policies, reclaims and
acknowledgements), and catches its projection up (not timed). Then it runs a real
``disco serve`` over it with the dashboard, signs in with the printed link, and for
each page measures over HTTP (keep-alive, this machine):

- ``warm``: the median time of the page while the ledger stays put (the page's
  document is cached per ledger position);
- ``fresh``: the median time of the page's first request after a new entry
  (recorded through the dashboard's own form), when its document is built anew
  from the projection;
- ``json``: the same for the page's JSON twin (``/api/PAGE``), warm;
  ``ratio`` = warm page / warm JSON: what rendering the HTML adds.

Target: every page under 200 ms warm (``ok``); ``fresh`` is reported beside it.
The entries recorded for ``fresh`` stay in the cached store (3 per run), so a later
run catches its saved projection up first (not timed).
Run: ``.venv/bin/python bench/dashboard.py [--n 1000000] [--rebuild-cache]``.
Progress on stderr; stdout ends with one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._limits import log, report
from bench.ledger import GENESIS_US, Generator, build, caught_up, node_home
from federation.genesis import Genesis, Lab, create_genesis
from protocol.entry import sha256
from protocol.keys import Signer

REPO = Path(__file__).resolve().parent.parent
CACHE = Path("/tmp/disco-bench-dashboard")
GENERATOR = "v1"
NAMES = ("Urban Farm", "Landscaping Coop", "Fab Lab", "Land Trust", "Care Collective",
         "Bakery", "Repair Cafe", "Radio", "Tool Library", "Seed Bank")
CREDIT_LIMIT = 50_000_000
TARGET_MS = 200.0
WARM_CALLS = 15
FRESH_ROUNDS = 3
PAGES = ["overview", "flows", "transfers", "contributions", "payout", "peers", "audit"]
DISCO = [sys.executable, "-c", "from node.cli import run; run()"]
LINK = re.compile(r"^dashboard: (http://\S+)/\?token=(\S+)$")


def signers() -> list[Signer]:
    return [Signer.from_seed(sha256(f"disco-bench-dashboard/lab/{i}".encode()))
            for i in range(len(NAMES))]


def make_genesis(keys: list[Signer]) -> Genesis:
    return create_genesis(
        "Bench Federation of Ten", labs=[Lab(k.public_key, n) for k, n in zip(keys, NAMES,
                                                                            strict=True)],
        units={"JXC": 2}, credit_limits={"JXC": CREDIT_LIMIT}, now_us=GENESIS_US)


class TenLabs(Generator):
    """bench/ledger.py's generator over the ten LABs of :data:`NAMES`."""

    names = NAMES


def store_for(n: int, genesis: Genesis, keys: list[Signer], fresh: bool) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{GENERATOR}-{genesis.federation_id.hex()[:8]}-n{n}.sqlite"
    if fresh:
        path.unlink(missing_ok=True)
    if path.exists():
        log(f"using the cached store {path}")
    else:
        log(f"building a {n:,}-entry store of {len(NAMES)} LABs (not timed) ...")
        build(path, n, genesis, keys, TenLabs)
    caught_up(path, genesis)
    return path


class Client:
    """A keep-alive HTTP connection to the dashboard with its session cookie."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        self.cookie = ""

    def get(self, path: str) -> tuple[int, bytes, float]:
        start = time.perf_counter()
        self.conn.request("GET", path, headers={"Cookie": self.cookie})
        r = self.conn.getresponse()
        body = r.read()
        elapsed = (time.perf_counter() - start) * 1000
        for c in r.headers.get_all("Set-Cookie") or []:
            self.cookie = c.split(";", 1)[0]
        return r.status, body, elapsed

    def post(self, path: str, form: dict[str, str]) -> int:
        self.conn.request("POST", path, body=urlencode(form).encode(),
                          headers={"Cookie": self.cookie,
                                   "Content-Type": "application/x-www-form-urlencoded"})
        r = self.conn.getresponse()
        r.read()
        return r.status


def serve(home: Path) -> tuple[subprocess.Popen[str], str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DISCO_HOME", None)
    proc = subprocess.Popen([*DISCO, "--home", str(home), "serve", "--listen", "127.0.0.1:0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = LINK.match(line.strip())
        if m:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain it
            return proc, m.group(1), m.group(2)
    raise SystemExit(f"disco serve ended before printing its dashboard line ({proc.wait()})")


def path_of(page: str, api: bool = False) -> str:
    if api:
        return f"/api/{page}"
    return "/" if page == "overview" else f"/{page}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="entries in the store")
    parser.add_argument("--rebuild-cache", action="store_true",
                        help="build the store again instead of reusing the /tmp cache")
    args = parser.parse_args()
    keys = signers()
    genesis = make_genesis(keys)
    store = store_for(args.n, genesis, keys, args.rebuild_cache)
    home = node_home(store, genesis, keys[0])
    log("starting disco serve (it loads the saved projection) ...")
    started = time.perf_counter()
    proc, base, token = serve(home)
    log(f"  ready in {time.perf_counter() - started:.1f} s: {base}")
    try:
        client = Client(base)
        status, _, _ = client.get(f"/?token={token}")
        assert status == 303 and client.cookie, "sign-in failed"
        pages: dict[str, dict[str, Any]] = {p: {"fresh": []} for p in PAGES}
        for _ in range(FRESH_ROUNDS):
            csrf = re.search(rb'name="csrf" value="([^"]+)"',
                             client.get("/contributions")[1])
            assert csrf is not None
            assert client.post("/contributions", {
                "csrf": csrf.group(1).decode(), "member": "m0-0", "stream": "care",
                "hours": "1"}) == 303, "recording through the form failed"
            client.get("/api/live")  # the projection takes the new entry
            for page in PAGES:
                code, _, ms = client.get(path_of(page))
                assert code == 200, (page, code)
                pages[page]["fresh"].append(ms)
        for page in PAGES:
            warm, twin = [], []
            for _ in range(WARM_CALLS):
                code, body, ms = client.get(path_of(page))
                assert code == 200 and body
                warm.append(ms)
                code, body, ms = client.get(path_of(page, api=True))
                assert code == 200 and json.loads(body)["page"] == page
                twin.append(ms)
            row = pages[page]
            row.update(warm_ms=statistics.median(warm), json_ms=statistics.median(twin),
                       fresh_ms=statistics.median(row.pop("fresh")))
            row["ratio"] = row["warm_ms"] / row["json_ms"]
            log(f"  {page:<14} warm {row['warm_ms']:7.1f} ms  json {row['json_ms']:7.1f} ms "
                f"(x{row['ratio']:.2f})  fresh after a new entry {row['fresh_ms']:8.1f} ms")
    finally:
        proc.terminate()
        proc.wait(60)
    worst = max(r["warm_ms"] for r in pages.values())
    worst_fresh = max(r["fresh_ms"] for r in pages.values())
    report("dashboard", n=args.n, labs=len(NAMES), target_ms=TARGET_MS,
           worst_warm_ms=worst, worst_fresh_ms=worst_fresh,
           pages={p: {k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()}
                  for p, r in pages.items()},
           ok=worst < TARGET_MS)


if __name__ == "__main__":
    main()
