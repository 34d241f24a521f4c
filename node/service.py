"""The node's shared state for the async layer: the opened LAB node, its locks and
executors, the request verifier and the gossip schedule.

The eventsourcing library is synchronous, so every store call runs in a worker
thread: writes (ingest, projection catch-up) in one dedicated thread, so the node
has one writer; reads in the default pool.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from federation.gossip import Gossip
from node.auth import ReplayMemory, RequestVerifier
from node.checkpoints import CheckpointBook
from node.home import KEY, Home, load_private_key
from node.lab import LabNode
from protocol.errors import ProtocolError
from protocol.keys import Signer

T = TypeVar("T")
PEERS = "peers.json"
PEER_STATE = "peer-state.json"
REPLAY_MEMORY = "seen-requests.sqlite3"
"""Signatures of requests accepted inside the clock-skew window (replays)."""


def load_peers(home: Home) -> list[str]:
    """The peer URLs configured with ``disco peer add``."""
    path = home.path / PEERS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [str(u) for u in data.get("peers", [])]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, AttributeError):
        return []


def save_peers(home: Home, urls: list[str]) -> None:
    tmp = home.path / (PEERS + ".tmp")
    tmp.write_text(json.dumps({"peers": urls}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(home.path / PEERS)


def load_peer_state(home: Home) -> dict[str, Any]:
    try:
        value = json.loads((home.path / PEER_STATE).read_text(encoding="utf-8"))
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


@dataclass
class NodeService:
    """Everything the server, the scheduler and ``disco sync`` share."""

    home: Home
    node: LabNode
    signer: Signer
    verifier: RequestVerifier
    gossip: Gossip = field(default_factory=Gossip)
    writer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="disco-writer"))
    peer_locks: dict[bytes, asyncio.Semaphore] = field(default_factory=dict)
    peer_labs: dict[str, bytes] = field(default_factory=dict)
    """URL -> the LAB id its node answered with (signed requests name it)."""
    peer_frontiers: dict[str, dict[bytes, int]] = field(default_factory=dict)
    """URL -> the peer's frontier (seq per author) as the last round left it."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the schedule changed (a nudge): the scheduler looks at once."""
    url: str | None = None
    dashboard_url: str | None = None
    """The dashboard's sign-in link while ``disco serve`` runs one."""
    log: Callable[[str], None] = print
    peer_signer: dict[str, int] = field(default_factory=dict)
    """URL -> which of :meth:`request_signers` that peer last heard (a peer that has
    not yet synced this LAB's key rotation still knows it by its previous key)."""
    _signers: list[Signer] | None = None

    def reload_key(self) -> str:
        """Take the home's key file again (``disco key rotate`` or ``key new`` replaced
        it while the node runs; an encrypted one is read with ``DISCO_PASSPHRASE``).
        Returns the line to log: what now signs, or why the old key still does."""
        passphrase = os.environ.get("DISCO_PASSPHRASE")
        try:
            signer = self.home.signer(passphrase.encode() if passphrase else None)
        except (ProtocolError, OSError) as e:
            return f"key: the key file changed but cannot be read ({e}); restart the node"
        self.signer = self.node.signer = signer
        self._signers = None
        return f"key: now signing with {signer.public_key.hex()[:16]}"

    def request_signers(self) -> list[Signer]:
        """The key in force, then the LAB's previous keys kept in its home
        (``lab.key.old-*``, newest first, those the ledger lists as this LAB's keys,
        readable with ``DISCO_PASSPHRASE`` if encrypted): a peer that has not yet
        learned of a rotation is spoken to with the key it knows, once."""
        if self._signers is None:
            me = self.node.ledger().outcome.members.get(self.node.lab_id)
            known = {k for _, _, k in me.keys} if me is not None else set()
            older = []
            passphrase = os.environ.get("DISCO_PASSPHRASE")
            for path in sorted(self.home.path.glob(KEY + ".old-*"), reverse=True):
                try:
                    old = load_private_key(path, passphrase.encode() if passphrase else None)
                except (ProtocolError, OSError):
                    continue
                if old.public_key in known and old.public_key != self.signer.public_key:
                    older.append(old)
            self._signers = [self.signer, *older]
        return self._signers

    @property
    def book(self) -> CheckpointBook:
        return CheckpointBook(self.node.store, self.node.require_genesis().federation_id,
                              self.node.keys_of)

    @classmethod
    def open(cls, home: Home, signer: Signer) -> NodeService:
        node = LabNode.open(home, signer)
        node.require_genesis()
        interval = float(os.environ.get("DISCO_GOSSIP_INTERVAL", "30") or 30)
        memory = ReplayMemory(home.path / REPLAY_MEMORY, now_ms())
        service = cls(home, node, signer, RequestVerifier(node.keys_of, node.lab_id,
                                                          memory),
                      Gossip(interval=max(0.5, interval)))
        service.gossip.set_peers(load_peers(home))
        for url, state in load_peer_state(home).items():
            if not isinstance(state, dict):
                continue
            if "frontier" in state:
                service.peer_frontiers[url] = _frontier_of(state)
            known = service.gossip.peers.get(url)
            if known is not None and isinstance(state.get("last_contact"), (int, float)):
                known.last_contact = float(state["last_contact"])
            try:
                lab = bytes.fromhex(state["lab"])
            except (TypeError, KeyError, ValueError):
                continue
            if len(lab) == 32:
                service.peer_labs[url] = lab
        return service

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking read in a worker thread."""
        return await asyncio.to_thread(fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking write in the node's single writer thread."""
        return await asyncio.get_running_loop().run_in_executor(self.writer, fn, *args)

    def nudge(self) -> None:
        """New entries here: every healthy peer is due now; wake the scheduler.
        Call from the event loop."""
        self.gossip.nudge(asyncio.get_running_loop().time())
        self.wake.set()

    def peer_slot(self, lab: bytes, per_peer: int = 2) -> asyncio.Semaphore:
        return self.peer_locks.setdefault(lab, asyncio.Semaphore(per_peer))

    def save_peer_state(self, only: Iterable[str] | None = None) -> None:
        """Write what the schedule knows of each peer to ``peer-state.json``: its LAB,
        last contact, failures, last error and frontier (seq per author, hex). With
        ``only``, just those peers are written over the file as it is (``disco
        sync`` beside a running node)."""
        keep = None if only is None else set(only)
        state = {
            url: {"lab": lab.hex() if (lab := self.peer_labs.get(url)) else None,
                  "last_contact": p.last_contact, "failures": p.failures,
                  "last_error": p.last_error,
                  **({"frontier": {a.hex(): seq for a, seq in sorted(frontier.items())}}
                     if (frontier := self.peer_frontiers.get(url)) is not None else {})}
            for url, p in self.gossip.peers.items() if keep is None or url in keep
        }
        if keep is not None:
            state = {**load_peer_state(self.home), **state}
        tmp = self.home.path / f"{PEER_STATE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.home.path / PEER_STATE)

    def close(self) -> None:
        self.writer.shutdown(wait=True)
        self.verifier.memory.close()
        self.node.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def fork_line(author: bytes, seq: int, how: str) -> str:
    """The log line for a fork proof ``how`` ("detected", "received") at ``seq``."""
    return f"fork {how} in the feed of {author.hex()} at seq {seq}: feed frozen"


def _frontier_of(state: dict[str, Any]) -> dict[bytes, int]:
    """The frontier kept in a peer's state (``{author hex: seq}``); {} when none."""
    out = {}
    value = state.get("frontier")
    for author, seq in (value.items() if isinstance(value, dict) else []):
        try:
            lab = bytes.fromhex(author)
        except (TypeError, ValueError):
            continue
        if len(lab) == 32 and type(seq) is int and seq >= 0:
            out[lab] = seq
    return out


def _with_lag(peer: dict[str, Any], roster: dict[bytes, str], held: dict[bytes, int]
              ) -> dict[str, Any]:
    """A peer's status with its roster name and, once its frontier is known, the
    entries each side lacks: in total (``we_lack``, ``they_lack``) and per feed
    (``lag: {lab_id: {we_lack, they_lack}}``, feeds that differ only)."""
    out = dict(peer)
    try:
        lab = bytes.fromhex(str(peer.get("lab")))
    except ValueError:
        lab = b""
    out["name"] = roster.get(lab)
    if "frontier" not in peer:
        out.update(we_lack=None, they_lack=None, lag={})
        return out
    theirs = _frontier_of(peer)
    lag = {}
    for author in sorted({*held, *theirs}):
        we, they = theirs.get(author, 0) - held.get(author, 0), 0
        if we < 0:
            we, they = 0, -we
        if we or they:
            lag[author.hex()] = {"we_lack": we, "they_lack": they}
    out.update(we_lack=sum(v["we_lack"] for v in lag.values()),
               they_lack=sum(v["they_lack"] for v in lag.values()), lag=lag)
    return out


def status_of(node: LabNode, peers: list[dict[str, Any]],
              summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status document (``disco status --json`` and ``GET /v1/status``).

    ``name`` is the LAB's name in the roster (``home_name``, when given, the one
    ``disco init`` was given). Beside the frontier: ``roster`` (each LAB's name and
    the seq held of its feed),
    ``peers`` with their names and what each side lacks (:func:`_with_lag`), and
    ``lag`` per feed: the most entries a peer holds that this node lacks
    (``we_lack``) and the most this node holds that a peer lacks (``peers_lack``),
    by the frontiers the peers last showed. ``summary``: :meth:`LabNode.summary`'s
    document when the caller has it already (the dashboard's, from the ledger it
    holds). ``restored``: :meth:`Home.restored` (null unless a restored node waits
    to sync its own feed)."""
    genesis = node.require_genesis()
    summary = summary if summary is not None else node.summary()
    forks = node.store.fork_proofs()
    frozen = node.frozen()
    frontier = node.frontier()
    held = {a: s for a, (s, _) in frontier.items()}
    members = node.ledger().outcome.members
    roster = {lab: m.name for lab, m in members.items()}
    peers = [_with_lag(p, roster, held) for p in peers]
    feed_lag: dict[str, dict[str, int]] = {}
    for p in peers:
        for author, lag in p["lag"].items():
            row = feed_lag.setdefault(author, {"we_lack": 0, "peers_lack": 0})
            row["we_lack"] = max(row["we_lack"], lag["we_lack"])
            row["peers_lack"] = max(row["peers_lack"], lag["they_lack"])
    # One name per LAB: the roster's, even when 'disco init --name' gave another.
    name = roster.get(node.lab_id, node.home.name)
    return {
        "lab_id": node.lab_id.hex(),
        "name": name,
        **({"home_name": node.home.name} if name != node.home.name else {}),
        "federation_id": genesis.federation_id.hex(),
        "state_digest": summary["state_digest"].hex(),
        "frontier": {a.hex(): {"seq": s, "head": h.hex() if h else None}
                     for a, (s, h) in frontier.items()},
        "ledger_heads": {a.hex(): s for a, s in summary["heads"]},
        "peers": peers,
        "forks": [{"author": a.hex(), "seq": p.seq, "hashes": [p.first.hash.hex(),
                                                               p.second.hash.hex()],
                   "repaired": a not in frozen}
                  for a, p in forks.items()],
        "checkpoint_conflicts": sorted({a.hex() for a, _ in CheckpointBook(
            node.store, genesis.federation_id).conflicts()}),
        "invalid": summary["invalid"],
        "pending": summary["pending"],
        "verified": node.home.last_check(),
        "restored": node.home.restored(),
        "roster": [{"lab": lab.hex(), "name": m.name, "state": m.state, "key": m.key().hex(),
                    "seq": held.get(lab, 0)} for lab, m in members.items()],
        "lag": feed_lag,
    }


def peer_status(home: Home) -> list[dict[str, Any]]:
    """Configured peers with what the running node last recorded of each."""
    state = load_peer_state(home)
    return [{"url": u, **state.get(u, {})} for u in load_peers(home)]


__all__ = ["NodeService", "fork_line", "load_peers", "peer_status", "save_peers",
           "status_of"]
