"""Gossip decisions, free of sockets and clocks (callers pass ``now``): whom to sync
with and when (:class:`Gossip`), and what one round with a peer moves
(:func:`plan`, :class:`Plan`). The node's scheduler and ``disco sync`` only carry
them out; tests drive them with a fake clock (tests/test_gossip.py) and
``bench/sync.py`` simulates a federation with them.

- Anti-entropy: every peer is synced every ``interval`` seconds, with jitter, so a
  federation of nodes does not synchronise its bursts.
- Failures back off exponentially (doubling, capped at ``max_backoff``).
- A new local entry makes every healthy peer due now (push within seconds); a peer
  whose round is running when that happens is due again as soon as it ends.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

FORK_DEPTH = 64
"""How far below the common head a round looks for the seq where two feeds part."""


@dataclass
class PeerState:
    """What the node knows of one peer."""

    url: str
    failures: int = 0
    next_due: float = 0.0
    last_contact: float | None = None
    """Wall-clock time (seconds since the epoch) of the last good round."""
    last_error: str | None = None
    running: bool = False
    nudged: bool = False
    """New entries arrived while a round with this peer was running."""


@dataclass(frozen=True)
class Plan:
    """What one sync round with a peer should move, decided from two frontiers."""

    pull: dict[bytes, int]
    """author -> seq after which to ask the peer for entries."""
    push: dict[bytes, int]
    """author -> seq after which to send the peer entries."""
    suspect: list[bytes]
    """authors whose heads disagree at the same seq: a fork to look into."""
    fetch_forks: bool = False
    """the peer holds fork proofs of authors we hold none of."""
    give_forks: list[bytes] = field(default_factory=list)
    """authors whose fork proofs we hold and the peer lacks."""

    @property
    def in_sync(self) -> bool:
        return not (self.pull or self.push or self.suspect)

    def swap_checkpoints(self, pulled: int) -> bool:
        """Whether the round ends with a checkpoint swap: when anything moved."""
        return not self.in_sync or pulled > 0

    def suspects_after_broken_chain(self) -> list[bytes]:
        """A pulled entry did not continue our head: every pulled feed may have forked."""
        return [*self.suspect, *(a for a in self.pull if a not in self.suspect)]


def plan(local: Mapping[bytes, tuple[int, bytes | None]],
         remote: Mapping[bytes, tuple[int, bytes | None]],
         roster: Iterable[bytes], frozen: Mapping[bytes, int] | None = None,
         remote_forks: Iterable[bytes] = ()) -> Plan:
    """Compare two frontiers over the roster's feeds. ``frozen`` maps the authors
    whose fork proof we hold to the forked seq (nothing at or past it is pulled)."""
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
    theirs = set(remote_forks)
    return Plan(pull, push, suspect, fetch_forks=bool(theirs - set(frozen)),
                give_forks=sorted(set(frozen) - theirs))


def fork_window(local_seq: int, remote_seq: int, depth: int = FORK_DEPTH
                ) -> tuple[int, int] | None:
    """(after, limit) of the peer's entries to compare with ours when looking for a
    fork, or None when there is nothing to compare."""
    top = min(local_seq, remote_seq)
    if top < 1:
        return None
    after = max(0, top - depth)
    return after, top - after


def first_fork(ours: Mapping[int, bytes], theirs: Mapping[int, bytes]) -> int | None:
    """The lowest seq held on both sides ({seq: entry hash}) with different hashes."""
    for seq in sorted(theirs):
        if seq in ours and ours[seq] != theirs[seq]:
            return seq
    return None


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
        """Peers whose next round is due (and not running)."""
        return [u for u, p in self.peers.items() if not p.running and p.next_due <= now]

    def start(self, url: str) -> None:
        """A round with ``url`` begins: not due again until it reports back."""
        p = self.peers.get(url)
        if p is not None:
            p.running = True

    def nudge(self, now: float) -> None:
        """New local entries: every healthy peer is due now (or once its round ends)."""
        for p in self.peers.values():
            if p.failures == 0:
                if p.running:
                    p.nudged = True
                else:
                    p.next_due = min(p.next_due, now)

    def succeeded(self, url: str, now: float, wall: float | None = None) -> None:
        """A round ended well at ``now`` (``wall``: the time a person reads)."""
        p = self.peers.get(url)
        if p is None:
            return
        p.failures, p.last_error, p.running = 0, None, False
        p.last_contact = wall if wall is not None else p.last_contact
        if p.nudged:
            p.next_due, p.nudged = now, False
        else:
            p.next_due = now + self.interval * (1 + self.jitter * (2 * self.rng.random() - 1))

    def failed(self, url: str, now: float, error: str) -> None:
        """A round failed at ``now``: back off, doubling with each failure."""
        p = self.peers.get(url)
        if p is None:
            return
        p.failures += 1
        p.last_error = error
        p.running = p.nudged = False
        backoff = min(self.interval * 2 ** (p.failures - 1) / 4, self.max_backoff)
        p.next_due = now + backoff * (1 + self.jitter * self.rng.random())

    def next_wakeup(self, now: float) -> float:
        """Seconds until the next peer is due (at most the interval)."""
        waiting = [p.next_due for p in self.peers.values() if not p.running]
        if not waiting:
            return self.interval
        return max(0.0, min(min(waiting) - now, self.interval))
