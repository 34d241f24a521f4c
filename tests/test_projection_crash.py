"""``kill -9`` during the catch-up of a large projection, then restart: the digest
equals what ``disco rebuild`` gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from node.home import Home
from node.projection import VIEW, LedgerProjection
from node.store import FeedStore
from protocol.entry import Entry, sign_entry
from protocol.keys import Signer
from tests.conftest import REPO, Cli, make_federation, read_ahead_children

BATCHES = 15  # of 1000 entries per LAB: 30k entries in all
BATCH = 1000
OFFER_EVERY = 10  # every 10th Farm entry is an offer to FabLab...
DECLINE_EVERY = 5  # ...every 5th offer FabLab declines, and Farm reclaims it later
AMOUNT = 100
T0 = 1_780_000_000_000_000

CATCH_UP = """
import sys
from pathlib import Path
from node.home import Home
from node.projection import LedgerProjection
from node.store import FeedStore

home = Home.open(Path(sys.argv[1]))
store = FeedStore(home.store_config())
projection = LedgerProjection(store, home.genesis(), read_ahead_min=int(sys.argv[3]))
save = projection.save

def save_and_say(ledger, position):
    save(ledger, position)
    print("saved", position, flush=True)

projection.save = save_and_say
print("started", store.max_notification_id(), flush=True)
projection.catch_up(checkpoint_every=int(sys.argv[2]))
print("done", flush=True)
"""


class Feed:
    """Signs the next entries of one LAB's feed, without a ledger in the way."""

    def __init__(self, signer: Signer, fid: bytes, head: Entry) -> None:
        self.signer, self.fid, self.head = signer, fid, head

    def next(self, kind: str, body: dict[str, Any]) -> Entry:
        entry = sign_entry(self.signer, federation_id=self.fid, seq=self.head.seq + 1,
                           prev=self.head.hash, ts_us=T0 + self.head.seq, kind=kind, body=body)
        self.head = entry
        return entry


def _build(store: FeedStore, farm: Feed, fab: Feed) -> tuple[int, int]:
    """30k entries of two feeds, stored batch by batch and never projected. In odd
    batches FabLab's entries are stored first, so its answers wait (pending) for
    offers stored later. Returns (offers accepted, offers declined)."""
    members = [farm.next("member.added", {"handle": "ana", "name": "Ana"}),
               fab.next("member.added", {"handle": "kofi", "name": "Kofi"})]
    store.insert(members)
    accepted = declined = 0
    to_reclaim: list[tuple[Entry, Entry]] = []
    for batch in range(BATCHES):
        mine: list[Entry] = []
        offers: list[Entry] = []
        for i in range(BATCH):
            if to_reclaim and i % OFFER_EVERY == 5:
                offer, decline = to_reclaim.pop()
                mine.append(farm.next("transfer.reclaimed", {
                    "offer": offer.ref.as_list(), "decline": decline.ref.as_list()}))
            elif i % OFFER_EVERY == 0:
                offers.append(farm.next("transfer.offered", {
                    "to": fab.signer.public_key, "amount": AMOUNT, "unit": "JXC"}))
                mine.append(offers[-1])
            else:
                mine.append(farm.next("contribution.recorded", {
                    "member": "ana", "stream": ("livelihood", "love", "care")[i % 3],
                    "minutes": 1 + i % 240}))
        theirs: list[Entry] = []
        for n, offer in enumerate(offers):
            if n % DECLINE_EVERY == 0:
                theirs.append(fab.next("transfer.declined", {"offer": offer.ref.as_list()}))
                to_reclaim.append((offer, theirs[-1]))
                declined += 1
            else:
                theirs.append(fab.next("transfer.accepted", {"offer": offer.ref.as_list()}))
                accepted += 1
        while len(theirs) < BATCH:
            theirs.append(fab.next("contribution.recorded", {
                "member": "kofi", "stream": "love", "minutes": 30,
                "for_lab": farm.signer.public_key}))
        for part in ((theirs, mine) if batch % 2 else (mine, theirs)):
            store.insert(part)
    return accepted, declined


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("read_ahead", [False, True], ids=["in-process", "read-ahead"])
def test_kill_9_during_projection_catch_up_then_restart(cli: Cli, tmp_path: Path,
                                                        read_ahead: bool) -> None:
    fed = make_federation(tmp_path, ["Farm", "FabLab"], credit_limit=10**9)
    farm_home, fab_home = fed.homes
    fid = fed.genesis.federation_id
    with fed.node(0) as farm_node, fed.node(1) as fab_node:
        fab_joined = fab_node.store.get(fab_home.lab_id, 1)
        farm_joined = farm_node.store.get(farm_home.lab_id, 1)
        assert fab_joined is not None and farm_joined is not None
        farm_node.store.insert([fab_joined])
        accepted, declined = _build(
            farm_node.store, Feed(farm_home.signer(), fid, farm_joined),
            Feed(fab_home.signer(), fid, fab_joined))
        store = farm_node.store
        total = store.max_notification_id()
        assert total >= BATCHES * BATCH * 2
        # The projection never ran over these entries.
        assert store.load_view(VIEW, state=False)[0] == 0

    proc = subprocess.Popen(
        [sys.executable, "-c", CATCH_UP, str(farm_home.path), "2000",
         "1" if read_ahead else str(10**9)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    lines = []
    try:
        started = time.monotonic()
        lines.append(proc.stdout.readline())
        assert lines[0].startswith("started"), lines
        # Let it checkpoint once, then kill it without warning.
        lines.append(proc.stdout.readline())
        assert lines[1].startswith("saved"), lines
        time.sleep(0.05)
        readers = read_ahead_children(proc.pid)
        assert len(readers) == (1 if read_ahead else 0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines += proc.stdout.readlines()
    assert proc.returncode == -signal.SIGKILL
    assert not any(line.startswith("done") for line in lines), (
        f"catch-up finished within {took:.2f} s before the kill; raise BATCHES")
    # A read-ahead process, orphaned, stops at its next write.
    deadline = time.monotonic() + 20
    while any(map(_running, readers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_running, readers))

    home = Home.open(farm_home.path)
    genesis = home.genesis()
    assert genesis is not None
    with FeedStore(home.store_config()) as store:
        saved = store.load_view(VIEW, state=False)[0]
        assert 0 < saved < total, (saved, total, lines)
        said = [int(line.split()[1]) for line in lines if line.startswith("saved")]
        assert saved >= max(said)  # (it may have died between saving and saying so)

        resumed, position = LedgerProjection(store, genesis).catch_up()
        assert position == total
        digest = resumed.digest().hex()
        resumed.check_invariant()
        assert resumed.invalid == {} and resumed.pending == {}
        farm, fab = farm_home.lab_id, fab_home.lab_id
        assert resumed.balances[(farm, "JXC")] == -accepted * AMOUNT - (
            declined - sum(o.state == "reclaimed" for o in resumed.offers.values())) * AMOUNT
        assert resumed.balances[(fab, "JXC")] == accepted * AMOUNT
        assert len(resumed.offers) == accepted + declined

    assert cli.json("balance", home=farm_home.path)["state_digest"] == digest
    assert cli.json("rebuild", home=farm_home.path)["state_digest"] == digest
