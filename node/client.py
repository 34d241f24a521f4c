"""The node as a client of its peers: one sync round with one peer.

A round: exchange frontiers (one request when already in sync), pull what the
peer has beyond us (streamed, stored in bounded batches as it arrives), push what
we have beyond it (bounded batches), and exchange fork proofs; when both hold the
same seq of a feed with different heads, fetch the peer's entry and, if it is a
validly signed fork, keep the proof.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

from node.auth import sign_request
from node.gossip import plan
from node.service import NodeService, now_ms
from protocol import canonical
from protocol.entry import decode_entry
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


class PeerError(Exception):
    """A peer refused a request or could not be reached; the message says why."""


@dataclass
class RoundResult:
    """What one round moved."""

    pulled: int = 0
    pushed: int = 0
    forks: int = 0
    in_sync: bool = False
    requests: int = 0
    frontier_bytes: int = 0
    notes: list[str] = field(default_factory=list)


class PeerClient:
    """Signed requests to one peer."""

    def __init__(self, session: aiohttp.ClientSession, service: NodeService, url: str
                 ) -> None:
        self.session = session
        self.service = service
        self.url = url.rstrip("/")
        self.requests = 0

    async def _post(self, path: str, body: bytes) -> aiohttp.ClientResponse:
        headers = sign_request(self.service.signer, "POST", path, body, now_ms())
        headers["Content-Type"] = MEDIA_TYPE
        self.requests += 1
        try:
            response = await self.session.post(self.url + path, data=body, headers=headers,
                                               timeout=TIMEOUT)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise PeerError(f"{self.url}: {type(e).__name__}: {e}") from None
        if response.status != 200:
            try:
                reason = (await response.json()).get("error", response.reason)
            except (aiohttp.ContentTypeError, ValueError):
                reason = response.reason
            response.release()
            raise PeerError(f"{self.url}{path}: {response.status} {reason}")
        return response

    async def frontier(self, body: bytes) -> bytes:
        async with await self._post("/v1/sync/frontier", body) as r:
            return await r.read()

    async def pull(self, wants: dict[bytes, int], limit: int) -> AsyncIterator[list[bytes]]:
        """Entries the peer sends, in batches as they arrive."""
        decoder = EntryStreamDecoder()
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

    async def push(self, raws: list[bytes]) -> dict[str, int]:
        async with await self._post("/v1/sync/push", b"".join(frame(r) for r in raws)) as r:
            result: dict[str, int] = await r.json()
            return result

    async def forks(self) -> list[bytes]:
        async with await self._post("/v1/sync/forks", b"") as r:
            value = canonical.decode(await r.read(), max_size=1 << 24, what="fork proofs")
        return [v for v in value if isinstance(v, bytes)] if isinstance(value, list) else []

    async def checkpoints(self, want: list[bytes], give: list[list[bytes]]
                          ) -> list[tuple[bytes, bytes]]:
        body = canonical.encode({"want": want, "give": give})
        async with await self._post("/v1/sync/checkpoints", body) as r:
            value = canonical.decode(await r.read(), max_size=1 << 24, what="checkpoints")
        if not isinstance(value, list):
            return []
        return [(v[0], v[1]) for v in value if isinstance(v, list) and len(v) == 2
                and isinstance(v[0], bytes) and isinstance(v[1], bytes)]

    async def push_forks(self, proofs: list[bytes]) -> None:
        async with await self._post("/v1/sync/forks/push", canonical.encode(proofs)):
            pass


async def sync_round(service: NodeService, session: aiohttp.ClientSession, url: str
                     ) -> RoundResult:
    """One full round with the peer at ``url``. Raises :class:`PeerError`."""
    node = service.node
    genesis = node.require_genesis()
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
    frozen = {a: p.seq for a, p in local_forks.items()}
    todo = plan(local, remote, genesis.roster, frozen)

    if set(remote_forks) - set(local_forks):
        for raw in await client.forks():
            try:
                proof = decode_fork_proof(raw)
                if await service.write(node.add_fork_proof, proof):
                    result.forks += 1
                    service.log(f"fork proof received for {proof.author.hex()} at seq "
                                f"{proof.seq}: feed frozen")
            except ProtocolError as e:
                result.notes.append(f"bad fork proof from peer: {e}")
    if set(local_forks) - set(remote_forks):
        await client.push_forks([p.encode() for a, p in local_forks.items()
                                 if a not in remote_forks])

    suspects = list(todo.suspect)
    if todo.pull:
        try:
            async for batch in client.pull(todo.pull, PULL_LIMIT):
                got = await service.write(node.ingest, batch)
                result.pulled += got.stored
                result.forks += len(got.forks)
                for proof in got.forks:
                    service.log(f"fork detected in the feed of {proof.author.hex()} at seq "
                                f"{proof.seq}: feed frozen")
        except BrokenChainError as e:
            # The peer's feed does not continue ours: look for a fork below.
            result.notes.append(str(e))
            suspects += [a for a in todo.pull if a not in suspects]
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
            await client.push([raw for _, raw in rows])
            result.pushed += len(rows)
            after = rows[-1][0]
    if not todo.in_sync or result.pulled:
        await _swap_checkpoints(service, client, list(genesis.roster), result)
    result.requests = client.requests
    result.in_sync = todo.in_sync and not result.forks
    return result


async def _swap_checkpoints(service: NodeService, client: PeerClient, roster: list[bytes],
                            result: RoundResult) -> None:
    """Sign our checkpoint, give it, and check the peer's checkpoints of every feed."""
    book = service.book
    _, note = await service.write(book.sign_own, service.signer)
    for author, theirs in await client.checkpoints(roster, [[service.signer.public_key,
                                                             note]]):
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
    """Compare the peer's entries of ``author`` with ours, newest common seq down."""
    node = service.node
    if remote_head is None:
        return 0
    local_seq, _ = await service.read(node.store.head, author)
    top = min(local_seq, remote_head[0])
    after = max(0, top - 64)
    theirs: dict[int, bytes] = {}
    async for batch in client.pull({author: after}, top - after):
        for raw in batch:
            entry = decode_entry(raw)
            theirs[entry.seq] = raw
    for seq in sorted(theirs):
        ours = await service.read(node.store.get, author, seq)
        other = decode_entry(theirs[seq])
        if ours is not None and ours.hash != other.hash:
            try:
                proof = make_fork_proof(ours, other)
            except ProtocolError:
                return 0
            stored = await service.write(node.store.add_fork_proof, proof)
            if stored:
                service.log(f"fork detected in the feed of {author.hex()} at seq {seq}: "
                            "feed frozen")
            return 1 if stored else 0
    return 0
