"""``make demo``: a local three-LAB federation, end to end, in real processes.

A farm, a fab lab and a land trust, each with its own node folder, key and SQLite
store, run ``disco serve`` on 127.0.0.1 with peers in a line (farm - fablab -
landtrust: the farm and the land trust never talk directly). Members record work in
all three value streams, one contribution is for another LAB, the farm offers the
land trust credit and the land trust accepts. The demo waits until all three state
digests match, then shows balances, flows and an offline audit of an export.

Everything is done through the ``disco`` command, as a person would. The demo works
in a new temporary folder (``disco-demo-*`` under ``TMPDIR``) and removes it when it
ends, however it ends (done, failed, Ctrl-C or SIGTERM), after stopping its nodes.
With ``DEMO_KEEP=1`` the folder is kept and its path printed, and after a run that
succeeds the nodes are left running and their URLs printed. ``DEMO_DIR=PATH`` works
in that folder instead, and never removes it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

DISCO = [sys.executable, "-m", "node.cli"]
LABS = [("farm", "Freedom Farms"), ("fablab", "Community Fab Lab"),
        ("landtrust", "Land Trust")]


def disco(*args: str, home: Path | None = None, quiet: bool = False) -> str:
    cmd = [*DISCO, *(["--home", str(home)] if home else []), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"demo: `disco {' '.join(args)}` failed:\n{result.stderr}")
    if not quiet and "--json" not in args:
        print(result.stdout.rstrip())
    return result.stdout


def jdisco(*args: str, home: Path | None = None) -> Any:
    return json.loads(disco(*args, "--json", home=home))


def status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/v1/status", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def start(key: str, home: Path, procs: dict[str, subprocess.Popen[str]]) -> str:
    """Start ``disco serve`` for ``home`` (in ``procs`` at once, so that it is stopped
    however the demo ends) and return its URL when it listens."""
    procs[key] = proc = subprocess.Popen([*DISCO, "--home", str(home), "serve", "--listen",
                             "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "DISCO_GOSSIP_INTERVAL": "2"})
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            return line.strip().rsplit(" ", 1)[-1]
    sys.exit(f"demo: the node in {home} did not start")


def wait_for(what: str, check: Any, timeout: float = 45) -> None:
    """Poll ``check`` until it is true; a node that does not answer (yet, or any more:
    on Ctrl-C the nodes may stop a moment before the demo does) is a no for now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:  # (urllib's URLError is one)
            pass
        time.sleep(0.3)
    sys.exit(f"demo: timed out waiting for {what}")


def stop(procs: dict[str, subprocess.Popen[str]]) -> None:
    """Stop the demo's nodes (SIGTERM, then SIGKILL after 15 s) and wait for them."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def finish(root: Path, *, remove: bool) -> None:
    """Remove the demo's folder, or say where it is kept."""
    if remove:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"== The demo's folder is kept: {root}")


def path_hint() -> str | None:
    """How to run ``disco`` by hand, when it is not on the PATH already."""
    script = Path(sys.executable).parent / "disco"
    if not script.exists() or shutil.which("disco") == str(script):
        return None
    try:
        shown = f"./{script.relative_to(Path.cwd())}"
    except ValueError:
        shown = str(script)
    return (f"`disco` is {shown}; to type `disco` alone: "
            f"source {Path(shown).parent / 'activate'} (see README.md)")


def _terminated(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # unwinds through main's cleanup, as Ctrl-C does


def main() -> None:
    t0 = time.monotonic()
    signal.signal(signal.SIGTERM, _terminated)
    chosen = os.environ.get("DEMO_DIR")
    root = Path(chosen or tempfile.mkdtemp(prefix="disco-demo-"))
    keep = os.environ.get("DEMO_KEEP") == "1"
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        run(t0, root, procs, keep)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cleanup finish
        stop(procs)
        finish(root, remove=not (keep or chosen))
    hint = path_hint()
    if hint:
        print(hint)


def run(t0: float, root: Path, procs: dict[str, subprocess.Popen[str]], keep: bool) -> None:
    """The demo itself. Nodes it starts go into ``procs``; the ones still there when
    it returns or raises are stopped by the caller."""
    homes = {key: root / key for key, _ in LABS}
    print(f"== Three LABs in {root}")
    ids = {key: jdisco("init", "--name", name, home=homes[key])["lab_id"]
           for key, name in LABS}
    genesis = root / "genesis.json"
    founders = [a for key, name in LABS for a in ("--founder", f"{ids[key]}={name}")]
    fid = jdisco("federation", "create", "--name", "Cooperation Jackson", *founders,
                 "--unit", "JXC:2", "--credit-limit", "JXC=500.00",
                 "--out", str(genesis))["federation_id"]
    print(f"federation Cooperation Jackson: {fid}")
    for key in homes:
        disco("join", str(genesis), home=homes[key], quiet=True)

    print("== Nodes in a line: farm - fablab - landtrust")
    urls: dict[str, str] = {}
    for key in homes:
        urls[key] = start(key, homes[key], procs)
        print(f"{key:<10} {urls[key]}")
    disco("peer", "add", urls["fablab"], home=homes["farm"], quiet=True)
    disco("peer", "add", urls["farm"], home=homes["fablab"], quiet=True)
    disco("peer", "add", urls["landtrust"], home=homes["fablab"], quiet=True)
    disco("peer", "add", urls["fablab"], home=homes["landtrust"], quiet=True)

    print("== Members and their work")
    for key, handle, name in (("farm", "ana", "Ana Ruiz"), ("farm", "kwame", "Kwame"),
                              ("fablab", "li", "Li Wei"), ("landtrust", "rosa", "Rosa")):
        disco("member", "add", handle, "--name", name, home=homes[key], quiet=True)
    for key, member, stream, hours, extra in (
            ("farm", "ana", "livelihood", "6", []),
            ("farm", "kwame", "care", "2:30", ["--note", "childcare rota"]),
            ("fablab", "li", "love", "4", ["--for", ids["farm"], "--project",
                                           "irrigation controller"]),
            ("landtrust", "rosa", "care", "3", [])):
        disco("record", "--member", member, "--stream", stream, "--hours", hours, *extra,
              home=homes[key])

    print("== The farm offers the land trust 120.00 JXC (they never talk directly)")
    offer = jdisco("transfer", "offer", "--to", ids["landtrust"], "--amount", "120.00",
                   "--unit", "JXC", "--memo", "seedlings", home=homes["farm"])["ref"]
    wait_for("the offer to reach the land trust", lambda: status(urls["landtrust"])[
        "frontier"].get(ids["farm"], {}).get("seq", 0) >= int(offer.split(":")[1]))
    disco("transfer", "accept", offer, home=homes["landtrust"])

    print("== Waiting until every node computes the same ledger")
    def reconciled() -> bool:
        digests = {status(u)["state_digest"] for u in urls.values()}
        heads = {json.dumps(status(u)["frontier"], sort_keys=True) for u in urls.values()}
        return len(digests) == 1 and len(heads) == 1
    wait_for("the federation to reconcile", reconciled)
    for key, url in urls.items():
        print(f"{key:<10} state digest {status(url)['state_digest']}")
    print("all three state digests match")

    disco("balance", home=homes["fablab"])
    disco("flows", "--by", "lab", home=homes["landtrust"])
    audit(root, homes["landtrust"])
    print(f"== Done in {time.monotonic() - t0:.1f} s")
    if keep:
        print("DEMO_KEEP=1: the nodes keep running:")
        for key, url in urls.items():
            print(f"  {key:<10} {url}  (pid {procs[key].pid}, home {homes[key]})")
        procs.clear()


def audit(root: Path, home: Path) -> None:
    """Export and audit offline, when this version has those commands."""
    help_text = subprocess.run([*DISCO, "--help"], capture_output=True, text=True).stdout
    if " audit " not in help_text or " export " not in help_text:
        return
    bundle = root / "federation.bundle"
    print("== Offline audit of an export")
    disco("export", "--out", str(bundle), home=home)
    disco("audit", str(bundle))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        sys.exit(130)
