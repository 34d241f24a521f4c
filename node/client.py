"""The node as a client of its peers: one sync round with one peer, and rounds
until the two are in sync (:func:`sync_until_in_sync`, ``disco sync``).

A round: exchange frontiers (one request when already in sync), pull what the
peer has beyond us (streamed, stored in bounded batches as it arrives), push what
we have beyond it (bounded batches), and exchange fork proofs; when both hold the
same seq of a feed with different heads, fetch the peer's entry and, if it is a
validly signed fork, keep the proof.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from federation.gossip import first_fork, fork_window, plan
from node.auth import sign_request
from node.errors import NodeError
from node.service import NodeService, fork_line, now_ms
from protocol import canonical
from protocol.checkpoint import MAX_NOTE_SIZE
from protocol.entry import MAX_ENTRY_SIZE, Entry, decode_entry
from protocol.errors import BrokenChainError, ProtocolError
from protocol.sync import (
    MEDIA_TYPE,
    EntryStreamDecoder,
    decode_fork_proof,
    decode_frontier,
    encode_frontier,
    encode_wants,
    frame,
    make_fork_proof,
)

PULL_LIMIT = 5000
PUSH_BATCH = 1000
INGEST_BATCH = 500
TIMEOUT = aiohttp.ClientTimeout(total=300, connect=10, sock_read=60)
SMALL_ANSWER = 4096
"""An error, a push or a fork-push answer: a short map."""


class PeerError(NodeError):
    """A peer refused a request, could not be reached, or answered more than it may;
    the message says why."""


def answer_caps(roster_size: int) -> dict[str, int]:
    """The most bytes each answer of a peer may take, from the roster's size: a
    frontier row, a fork proof, a checkpoint per LAB, and some room for framing."""
    n = max(1, roster_size)
    return {"/v1/status": 4096 + 512 * n,
            "/v1/sync/frontier": 256 + 128 * n,
            "/v1/sync/forks": 64 + (2 * MAX_ENTRY_SIZE + 64) * n,
            "/v1/sync/checkpoints": 64 + (MAX_NOTE_SIZE + 64) * n}


async def read_capped(response: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
    """The body of ``response``, read as it streams in; raises :class:`PeerError` as
    soon as it passes ``cap`` bytes (nothing more is read)."""
    if response.content_length is not None and response.content_length > cap:
        raise PeerError(f"{what}: answer of {response.content_length} bytes, "
                        f"over the {cap} this request may take")
    chunks, size = [], 0
    try:
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > cap:
                raise PeerError(f"{what}: answer over the {cap} bytes this request may take")
            chunks.append(chunk)
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        raise PeerError(f"{what}: answer cut off: {type(e).__name__}: {e}") from None
    return b"".join(chunks)


def _decode(data: bytes, cap: int, what: str) -> Any:
    """A peer's canonical answer; raises :class:`PeerError` when it is not one."""
    try:
        return canonical.decode(data, max_size=cap, what=what)
    except ProtocolError as e:
        raise PeerError(f"{what}: bad answer: {e}") from None


def _small_map(data: bytes, what: str) -> dict[str, Any]:
    value = _decode(data, SMALL_ANSWER, what)
    if not isinstance(value, dict):
        raise PeerError(f"{what}: bad answer: want a map")
    return value


@dataclass
class RoundResult:
    """What one round moved."""

    pulled: int = 0
    pushed: int = 0
    stored_there: int = 0
    """Of the entries pushed, how many the peer said it stored."""
    forks: int = 0
    in_sync: bool = False
    requests: int = 0
    frontier_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    remote_frontier: dict[bytes, int] = field(default_factory=dict)
    """The peer's frontier (seq per author) as the round leaves it: what it answered,
    raised by what the round pushed to it."""


_OTHER_KEY = (" 401 request signature does not verify", " 403 the request is signed with a key")
"""What a peer answers to a request signed with a key of this LAB it does not hold
in force (see :meth:`PeerClient._post`)."""


class PeerClient:
    """Signed requests to one peer; every answer is read with a cap."""

    def __init__(self, session: aiohttp.ClientSession, service: NodeService, url: str
                 ) -> None:
        self.session = session
        self.service = service
        self.url = url.rstrip("/")
        self.requests = 0
        self.caps = answer_caps(len(service.node.require_genesis().roster))

    async def _request(self, method: str, path: str, headers: dict[str, str],
                       body: bytes | None = None) -> aiohttp.ClientResponse:
        self.requests += 1
        try:
            response = await self.session.request(method, self.url + path, data=body,
                                                  headers=headers, timeout=TIMEOUT)
        except aiohttp.ClientConnectorCertificateError as e:
            raise PeerError(f"{self.url}: its TLS certificate is not trusted here "
                            f"({e.certificate_error}); a private CA is trusted by naming "
                            "a bundle that holds it in SSL_CERT_FILE (deploy/README.md)"
                            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise PeerError(f"{self.url}: {type(e).__name__}: {e}") from None
        if response.status != 200:
            try:
                reason = json.loads(await read_capped(response, SMALL_ANSWER,
                                                      self.url + path))["error"]
            except (PeerError, ValueError, KeyError, TypeError):
                reason = response.reason
            finally:
                response.release()
            if response.status == 401 and "meant for LAB" in str(reason):
                self.service.peer_labs.pop(self.url, None)  # another LAB serves it now
            raise PeerError(f"{self.url}{path}: {response.status} {reason}")
        return response

    async def lab(self) -> bytes:
        """The LAB id of the node at this URL (asked once, then remembered): the
        LAB every signed request to it is meant for."""
        known = self.service.peer_labs.get(self.url)
        if known is not None:
            return known
        path = "/v1/status"
        async with await self._request("GET", path, {}) as r:
            data = await read_capped(r, self.caps[path], self.url + path)
        try:
            lab = bytes.fromhex(json.loads(data)["lab_id"])
        except (ValueError, KeyError, TypeError):
            raise PeerError(f"{self.url}{path}: no LAB id in the answer") from None
        if len(lab) != 32:
            raise PeerError(f"{self.url}{path}: no LAB id in the answer")
        self.service.peer_labs[self.url] = lab
        return lab

    async def _post(self, path: str, body: bytes) -> aiohttp.ClientResponse:
        """POST signed with the LAB's key in force; a peer that refuses it as a key it
        does not know (it has not synced the LAB's key rotation yet) is asked once
        with the key it knows, until it learns the new one (then it refuses the old
        with 403, and the key in force is used again)."""
        to = await self.lab()
        signers = (await self.service.read(self.service.request_signers)
                   if self.service.peer_signer.get(self.url) or path.endswith("frontier")
                   else [self.service.signer])
        first = min(self.service.peer_signer.get(self.url, 0), len(signers) - 1)
        order = [first, *[i for i in range(len(signers)) if i != first]]
        for n, i in enumerate(order):
            headers = sign_request(signers[i], "POST", path, body, now_ms(), to,
                                   self.service.node.lab_id)
            headers["Content-Type"] = MEDIA_TYPE
            try:
                response = await self._request("POST", path, headers, body)
            except PeerError as e:
                if n + 1 < len(order) and any(m in str(e) for m in _OTHER_KEY):
                    continue
                raise
            self.service.peer_signer[self.url] = i
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _call(self, path: str, body: bytes) -> bytes:
        async with await self._post(path, body) as r:
            return await read_capped(r, self.caps.get(path, SMALL_ANSWER), self.url + path)

    async def frontier(self, body: bytes) -> bytes:
        return await self._call("/v1/sync/frontier", body)

    async def pull(self, wants: dict[bytes, int], limit: int) -> AsyncIterator[list[bytes]]:
        """Entries the peer sends, in batches as they arrive; at most ``limit``."""
        decoder = EntryStreamDecoder(max_items=limit)
        batch: list[bytes] = []
        async with await self._post("/v1/sync/pull", encode_wants(wants, limit)) as r:
            try:
                async for chunk in r.content.iter_chunked(64 * 1024):
                    batch += decoder.feed(chunk)
                    if len(batch) >= INGEST_BATCH:
                        yield batch
                        batch = []
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                # The peer went away mid-stream: what arrived whole was stored.
                raise PeerError(f"{self.url}: pull cut off: {type(e).__name__}: {e}"
                                ) from None
        decoder.close()
        if batch:
            yield batch

    async def push(self, raws: list[bytes]) -> dict[str, Any]:
        path = "/v1/sync/push"
        return _small_map(await self._call(path, b"".join(frame(r) for r in raws)),
                          self.url + path)

    async def forks(self) -> list[bytes]:
        path = "/v1/sync/forks"
        value = _decode(await self._call(path, b""), self.caps[path], self.url + path)
        return [v for v in value if isinstance(v, bytes)] if isinstance(value, list) else []

    async def checkpoints(self, want: list[bytes], give: list[list[bytes]]
                          ) -> list[tuple[bytes, bytes]]:
        body = canonical.encode({"want": want, "give": give})
        path = "/v1/sync/checkpoints"
        value = _decode(await self._call(path, body), self.caps[path], self.url + path)
        if not isinstance(value, list):
            return []
        return [(v[0], v[1]) for v in value if isinstance(v, list) and len(v) == 2
                and isinstance(v[0], bytes) and isinstance(v[1], bytes)]

    async def push_forks(self, proofs: list[bytes]) -> None:
        await self._call("/v1/sync/forks/push", canonical.encode(proofs))


async def sync_round(service: NodeService, session: aiohttp.ClientSession, url: str
                     ) -> RoundResult:
    """One full round with the peer at ``url``, as :func:`federation.gossip.plan`
    decides it from the two frontiers. Raises :class:`PeerError`."""
    node = service.node
    node.require_genesis()
    client = PeerClient(session, service, url)
    result = RoundResult()
    local = await service.read(node.frontier)
    local_forks = await service.read(node.store.fork_proofs)
    body = encode_frontier(local, local_forks)
    result.frontier_bytes = len(body)
    try:
        remote, remote_forks = decode_frontier(await client.frontier(body))
    except ProtocolError as e:
        raise PeerError(f"{url}: bad frontier: {e}") from None
    roster = await service.read(node.known_roster)
    todo = plan(local, remote, roster, await service.read(node.frozen), remote_forks)
    result.remote_frontier = {a: seq for a, (seq, _) in remote.items()}

    if todo.fetch_forks:
        for raw in await client.forks():
            try:
                proof = decode_fork_proof(raw, node.key_at)
                if await service.write(node.add_fork_proof, proof):
                    result.forks += 1
                    service.log(fork_line(proof.author, proof.seq, "received"))
            except ProtocolError as e:
                result.notes.append(f"bad fork proof from peer: {e}")
    if todo.give_forks:
        await client.push_forks([local_forks[a].encode() for a in todo.give_forks])

    suspects = todo.suspect
    if todo.pull:
        try:
            async for batch in client.pull(todo.pull, PULL_LIMIT):
                got = await service.write(node.ingest, batch)
                result.pulled += got.stored
                result.forks += len(got.forks)
                for proof in got.forks:
                    service.log(fork_line(proof.author, proof.seq, "detected"))
        except BrokenChainError as e:
            result.notes.append(str(e))
            suspects = todo.suspects_after_broken_chain()
        except ProtocolError as e:
            raise PeerError(f"{url}: sent a bad entry: {e}") from None
    for author in suspects:
        result.forks += await _find_fork(service, client, author, remote.get(author))
    for author, after in todo.push.items():
        while True:
            rows = await service.read(
                lambda a=author, s=after: list(node.store.read_raw(a, after=s,
                                                                   upto=s + PUSH_BATCH)))
            if not rows:
                break
            answer = await client.push([raw for _, raw in rows])
            result.pushed += len(rows)
            stored = answer.get("stored")
            result.stored_there += stored if type(stored) is int and stored > 0 else 0
            after = rows[-1][0]
            result.remote_frontier[author] = max(after, result.remote_frontier.get(author, 0))
    if service.home.restored() is not None:
        await _end_restored_wait(service, url, remote.get(node.lab_id))
    if todo.swap_checkpoints(result.pulled):
        await _swap_checkpoints(service, client, list(roster), result)
    result.requests = client.requests
    result.in_sync = todo.in_sync and not result.forks
    return result


@dataclass
class SyncOutcome:
    """What :func:`sync_until_in_sync` did with one peer, all rounds together."""

    rounds: int = 0
    pulled: int = 0
    pushed: int = 0
    forks: int = 0
    requests: int = 0
    in_sync: bool = False
    stalled: bool = False
    """A round moved nothing and the two nodes still differ: the peer cannot give
    (or take) more now."""
    lacking: int = 0
    """Entries either side still lacked, by the last round's frontiers."""
    last: RoundResult | None = None


def lacking(local: dict[bytes, int], remote: dict[bytes, int]) -> tuple[int, int]:
    """Entries (this node lacks, the peer lacks) between two frontiers (seq per
    author), counted over every author either holds."""
    here = sum(max(0, seq - local.get(a, 0)) for a, seq in remote.items())
    there = sum(max(0, seq - remote.get(a, 0)) for a, seq in local.items())
    return here, there


async def sync_until_in_sync(service: NodeService, session: aiohttp.ClientSession, url: str,
                             *, once: bool = False,
                             on_round: Callable[[SyncOutcome], None] | None = None
                             ) -> SyncOutcome:
    """Rounds with the peer at ``url`` until the two are in sync (one round with
    ``once``), or until a round moves nothing while they still differ
    (:attr:`SyncOutcome.stalled`: nothing pulled, nothing the peer stored, no fork
    proof). ``on_round`` sees the outcome after each round.
    Raises :class:`PeerError` (what earlier rounds stored stays stored)."""
    outcome = SyncOutcome()
    node = service.node
    while True:
        r = await sync_round(service, session, url)
        outcome.rounds += 1
        outcome.pulled += r.pulled
        outcome.pushed += r.pushed
        outcome.forks += r.forks
        outcome.requests += r.requests
        outcome.in_sync = r.in_sync
        outcome.last = r
        local = {a: seq for a, (seq, _) in (await service.read(node.frontier)).items()}
        outcome.lacking = sum(lacking(local, r.remote_frontier))
        if on_round is not None:
            on_round(outcome)
        if r.in_sync or once:
            return outcome
        if not (r.pulled or r.stored_there or r.forks):
            outcome.stalled = True
            return outcome


async def _end_restored_wait(service: NodeService, url: str,
                             theirs: tuple[int, bytes] | None) -> None:
    """The one place where a node restored from a backup (:meth:`Home.restored`) may
    author again: after a round in which the peer at ``url`` answered its frontier,
    once this node holds its own feed as far as that peer holds it (``theirs``: the
    peer's (seq, head) of it, None when it holds none), at the same head, and holds
    no fork proof of it. A round that pulled only part of it leaves the wait on."""
    node = service.node
    seq, _ = await service.read(node.store.head, node.lab_id)
    if theirs is not None:
        if seq < theirs[0]:
            return
        held = await service.read(node.store.get, node.lab_id, theirs[0])
        if held is None or held.hash != theirs[1]:
            return
    if node.lab_id in await service.read(node.store.fork_proofs):
        return
    if service.home.clear_restored():
        service.log(f"restored from a backup: this node now holds its own feed as {url} "
                    f"does (seq {seq}); it may author again")


async def _swap_checkpoints(service: NodeService, client: PeerClient, roster: list[bytes],
                            result: RoundResult) -> None:
    """Sign our checkpoint, give it, and check the peer's checkpoints of every feed."""
    book = service.book
    give = []
    if await service.read(service.node.signs_checkpoints):
        _, note = await service.write(book.sign_own, service.signer, service.node.lab_id)
        give = [[service.node.lab_id, note]]
    for author, theirs in await client.checkpoints(roster, give):
        if author not in roster:
            continue
        try:
            conflict = await service.write(book.accept, author, theirs)
        except ProtocolError as e:
            result.notes.append(f"bad checkpoint from peer: {e}")
            continue
        if conflict:
            service.log(conflict)
            result.notes.append(conflict)


async def _find_fork(service: NodeService, client: PeerClient, author: bytes,
                     remote_head: tuple[int, bytes] | None) -> int:
    """Fetch the peer's entries of ``author`` below the common head, and keep the
    fork proof of the first seq where they differ from ours (1 if new, else 0)."""
    node = service.node
    local_seq, _ = await service.read(node.store.head, author)
    window = fork_window(local_seq, remote_head[0]) if remote_head else None
    if window is None:
        return 0
    theirs: dict[int, Entry] = {}
    try:
        async for batch in client.pull({author: window[0]}, window[1]):
            for raw in batch:
                entry = decode_entry(raw)
                if entry.author == author:
                    theirs[entry.seq] = entry
    except ProtocolError as e:
        raise PeerError(f"{client.url}: sent a bad entry: {e}") from None
    ours = {e.seq: e for e in await service.read(
        lambda: list(node.store.read_feed(author, after=window[0], upto=sum(window))))}
    seq = first_fork({s: e.hash for s, e in ours.items()},
                     {s: e.hash for s, e in theirs.items()})
    if seq is None:
        return 0
    try:
        proof = make_fork_proof(ours[seq], theirs[seq], node.key_at(author, seq))
    except ProtocolError:
        return 0
    if not await service.write(node.add_fork_proof, proof):
        return 0
    service.log(fork_line(author, seq, "detected"))
    return 1
