"""Gossip decisions, free of sockets and clocks: whom to sync with, when, and what
to ask for or send. The server's scheduler and ``disco sync`` only run this object;
tests drive it directly (see the simulation in ``bench/sync.py``).

- Anti-entropy: every peer is synced every ``interval`` seconds, with jitter, so a
  federation of nodes does not synchronise its bursts.
- Failures back off exponentially (doubling, capped at ``max_backoff``).
- A new local entry makes every peer due now (push within seconds).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass
class PeerState:
    """What the node knows of one peer."""

    url: str
    failures: int = 0
    next_due: float = 0.0
    last_contact: float | None = None
    last_error: str | None = None
    lab: str | None = None


@dataclass(frozen=True)
class Plan:
    """What one sync round with a peer should move."""

    pull: dict[bytes, int]
    """author -> seq after which to ask the peer for entries."""
    push: dict[bytes, int]
    """author -> seq after which to send the peer entries."""
    suspect: list[bytes]
    """authors whose heads disagree at the same seq: a fork to look into."""

    @property
    def in_sync(self) -> bool:
        return not (self.pull or self.push or self.suspect)


def plan(local: Mapping[bytes, tuple[int, bytes | None]],
         remote: Mapping[bytes, tuple[int, bytes | None]],
         roster: Iterable[bytes], frozen: Mapping[bytes, int] | None = None) -> Plan:
    """Compare two frontiers over the roster's feeds."""
    pull, push, suspect = {}, {}, []
    frozen = frozen or {}
    for author in roster:
        ls, lh = local.get(author, (0, None))
        rs, rh = remote.get(author, (0, None))
        limit = frozen.get(author)
        if rs > ls and (limit is None or ls + 1 < limit):
            pull[author] = ls
        elif ls > rs:
            push[author] = rs
        elif ls == rs and ls > 0 and lh != rh and author not in frozen:
            suspect.append(author)
    return Plan(pull, push, suspect)


@dataclass
class Gossip:
    """The schedule of sync rounds with a node's peers."""

    interval: float = 30.0
    jitter: float = 0.25
    max_backoff: float = 600.0
    rng: random.Random = field(default_factory=random.Random)
    peers: dict[str, PeerState] = field(default_factory=dict)

    def set_peers(self, urls: Iterable[str]) -> None:
        """Keep the state of known peers, add new ones (due now), drop removed ones."""
        urls = list(urls)
        self.peers = {u: self.peers.get(u) or PeerState(u) for u in urls}

    def due(self, now: float) -> list[str]:
        """Peers whose next round is due."""
        return [u for u, p in self.peers.items() if p.next_due <= now]

    def nudge(self, now: float) -> None:
        """New local entries: every healthy peer is due now."""
        for p in self.peers.values():
            if p.failures == 0:
                p.next_due = min(p.next_due, now)

    def succeeded(self, url: str, now: float, lab: str | None = None) -> None:
        p = self.peers.get(url)
        if p is None:
            return
        p.failures, p.last_contact, p.last_error = 0, now, None
        p.lab = lab or p.lab
        p.next_due = now + self.interval * (1 + self.jitter * (2 * self.rng.random() - 1))

    def failed(self, url: str, now: float, error: str) -> None:
        p = self.peers.get(url)
        if p is None:
            return
        p.failures += 1
        p.last_error = error
        backoff = min(self.interval * 2 ** (p.failures - 1) / 4, self.max_backoff)
        p.next_due = now + backoff * (1 + self.jitter * self.rng.random())

    def next_wakeup(self, now: float) -> float:
        """Seconds until the next peer is due (at most the interval)."""
        if not self.peers:
            return self.interval
        return max(0.0, min(min(p.next_due for p in self.peers.values()) - now,
                            self.interval))
