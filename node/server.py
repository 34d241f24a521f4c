"""The node's HTTP API (aiohttp): sync between nodes and a small JSON status.

Handlers only decode, call the store or the core in a worker thread, and encode.
Every ``/v1/sync/*`` request must be signed by a roster LAB (:mod:`node.auth`);
anything else gets 401/403 before anything is read. Malformed input gets a 400
naming the reason and changes nothing stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from node.auth import HEADER_SIGNATURE, AuthError, BodyHash
from node.limits import BodyBudget, Limits
from node.openapi import OPENAPI
from node.service import NodeService, fork_line, now_ms, peer_status, status_of
from node.store import StoreError
from protocol import canonical
from protocol.errors import OversizeError, ProtocolError
from protocol.sync import (
    MEDIA_TYPE,
    decode_entry_stream,
    decode_fork_proof,
    decode_frontier,
    decode_wants,
    encode_frontier,
    frame,
)

MAX_PULL = 5000
SERVICE: web.AppKey[NodeService] = web.AppKey("service", NodeService)
LIMITS: web.AppKey[Limits] = web.AppKey("limits", Limits)
BUDGET: web.AppKey[BodyBudget] = web.AppKey("budget", BodyBudget)
BUSY: web.AppKey[set[RequestHandler]] = web.AppKey("busy", set)
LAB: web.RequestKey[bytes] = web.RequestKey("lab", bytes)
BODY: web.RequestKey[bytes] = web.RequestKey("body", bytes)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, reason: str, headers: dict[str, str] | None = None
            ) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal is JSON with a reason; a peer's bad bytes are a 400, never a 500.
    Also keeps the set of connections with a request in progress (:class:`ConnectionCap`
    closes only the others)."""
    busy = request.app[BUSY]
    busy.add(request.protocol)
    try:
        return await handler(request)
    except AuthError as e:
        return problem(e.status, e.reason)
    except OversizeError as e:
        return problem(413, str(e))
    except ProtocolError as e:
        return problem(400, str(e))
    except web.HTTPException:
        raise
    except StoreError as e:
        return problem(503, f"store unavailable: {e}")
    finally:
        busy.discard(request.protocol)


@web.middleware
async def signed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate ``/v1/sync/*`` requests from their headers alone, then read the
    body (bounded, within the node's budget and time limit, checked against the
    signed hash as it streams in) into ``request[BODY]``; the sender is
    ``request[LAB]``. Nothing of a body is read before the sender is known."""
    if not request.path.startswith("/v1/sync/"):
        return await handler(request)
    service, limits = request.app[SERVICE], request.app[LIMITS]
    lab, digest = service.verifier.check(request.method, request.path_qs, request.headers,
                                         now_ms())
    size = request.content_length
    if request.body_exists and request.content_type != MEDIA_TYPE:
        return problem(415, f"want Content-Type {MEDIA_TYPE}")
    if size is not None and size > limits.max_body:
        return problem(413, f"request body over {limits.max_body} bytes")
    reserved = limits.max_body if size is None else size
    budget = request.app[BUDGET]
    if not budget.reserve(reserved):
        return problem(503, "the node is busy receiving other bodies; try again shortly",
                       {"Retry-After": "1"})
    try:
        check = BodyHash(digest)
        chunks = []
        try:
            async with asyncio.timeout(limits.body_timeout):
                async for chunk in request.content.iter_chunked(64 * 1024):
                    check.update(chunk)
                    if check.size > reserved:
                        return problem(413, f"request body over {limits.max_body} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            return problem(408, f"request body not received within {limits.body_timeout} s")
        check.check()
        request[LAB], request[BODY] = lab, b"".join(chunks)
        del chunks
        return await handler(request)
    finally:
        budget.release(reserved)


def msgpack_response(data: bytes) -> web.Response:
    return web.Response(body=data, content_type=MEDIA_TYPE)


async def frontier(request: web.Request) -> web.StreamResponse:
    """Frontier exchange: the peer's frontier in, ours out (and fork authors)."""
    service = request.app[SERVICE]
    decode_frontier(request[BODY])
    ours = await service.read(service.node.frontier)
    forks = await service.read(service.node.store.fork_proofs)
    return msgpack_response(encode_frontier(ours, forks))


async def pull(request: web.Request) -> web.StreamResponse:
    """Stream the entries the peer wants, oldest first per feed, bounded."""
    service = request.app[SERVICE]
    wants, limit = decode_wants(request[BODY], MAX_PULL)
    roster = service.node.require_genesis().roster
    response = web.StreamResponse(headers={"Content-Type": MEDIA_TYPE})
    await response.prepare(request)
    async with service.peer_slot(request[LAB]):
        left = limit
        for author, after in sorted(wants.items()):
            if author not in roster or left <= 0:
                continue
            while left > 0:
                page = min(left, 500)
                rows = await service.read(
                    lambda a=author, s=after, n=page: list(
                        service.node.store.read_raw(a, after=s, upto=s + n)))
                if not rows:
                    break
                await response.write(b"".join(frame(raw) for _, raw in rows))
                left -= len(rows)
                after = rows[-1][0]
                if len(rows) < page:
                    break
    await response.write_eof()
    return response


async def push(request: web.Request) -> web.StreamResponse:
    """Verify and store entries a peer sends (all or nothing)."""
    service = request.app[SERVICE]
    # Decoded in a worker thread: millions of tiny items must not stall the loop.
    raws = await service.read(lambda: list(decode_entry_stream(request[BODY],
                                                               max_items=MAX_PULL)))
    async with service.peer_slot(request[LAB]):
        result = await service.write(service.node.ingest, raws)
    if result.stored or result.forks:
        for proof in result.forks:
            service.log(fork_line(proof.author, proof.seq, "detected"))
        service.nudge()
    return msgpack_response(canonical.encode({"stored": result.stored,
                                              "skipped": result.skipped,
                                              "forks": len(result.forks)}))


async def forks_get(request: web.Request) -> web.StreamResponse:
    """The fork proofs this node holds (canonical list of proof bytes)."""
    service = request.app[SERVICE]
    proofs = await service.read(service.node.store.fork_proofs)
    return msgpack_response(canonical.encode([p.encode() for p in proofs.values()]))


async def forks_push(request: web.Request) -> web.StreamResponse:
    """Take fork proofs from a peer; each must verify on its own. Work is bounded by
    the distinct content: identical proofs count once, at most one per author, and
    authors whose feed is already frozen here are passed over."""
    service = request.app[SERVICE]
    limits = request.app[LIMITS]
    items = canonical.decode(request[BODY], max_size=limits.max_body, what="fork proofs")
    if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
        return problem(400, "fork proofs: want a list of proofs")
    distinct = list(dict.fromkeys(items))
    roster = service.node.require_genesis().roster
    if len(distinct) > len(roster):
        return problem(400, f"fork proofs: at most one per LAB ({len(roster)})")
    held = await service.read(service.node.store.fork_proofs)
    new = 0
    for item in distinct:
        proof = decode_fork_proof(item, service.node.key_at)
        if proof.author in held:
            continue
        if await service.write(service.node.add_fork_proof, proof):
            service.log(fork_line(proof.author, proof.seq, "received"))
            held[proof.author] = proof
            new += 1
    if new:
        service.nudge()  # relay the proof
    return msgpack_response(canonical.encode({"stored": new}))


async def checkpoints(request: web.Request) -> web.StreamResponse:
    """Swap signed checkpoints: take the peer's (checked against our entries), return
    ours (the own feed's freshly signed) for the authors it asks about. At most one
    checkpoint per author is taken and each author is answered once, so the work
    of a request is bounded by the roster, whatever its length."""
    service = request.app[SERVICE]
    msg = canonical.decode(request[BODY], max_size=request.app[LIMITS].max_body,
                           what="checkpoints")
    if (not isinstance(msg, dict) or set(msg) != {"want", "give"}
            or not isinstance(msg["want"], list) or not isinstance(msg["give"], list)):
        return problem(400, "checkpoints: want a map with want and give lists")
    given = [g for g in msg["give"] if isinstance(g, list) and len(g) == 2
             and isinstance(g[0], bytes) and isinstance(g[1], bytes)]
    if len(given) != len(msg["give"]):
        return problem(400, "checkpoints: give must be [author, note] pairs")
    roster = await service.read(service.node.known_roster)
    if len({author for author, _ in given}) != len(given):
        return problem(400, "checkpoints: give at most one checkpoint per author")
    if any(author not in roster for author, _ in given):
        return problem(403, "checkpoint of an author outside the roster")
    for author, note in given:
        conflict = await service.write(service.book.accept, author, note)
        if conflict:
            service.log(conflict)
    if await service.read(service.node.signs_checkpoints):
        await service.write(service.book.sign_own, service.signer, service.node.lab_id)
    out = []
    for author in dict.fromkeys(msg["want"]):
        if isinstance(author, bytes) and author in roster:
            held = await service.read(service.book.latest, author)
            if held is not None:
                out.append([author, held[1]])
    return msgpack_response(canonical.encode(out))


async def status(request: web.Request) -> web.StreamResponse:
    """Who this node is and what it holds; a request signed by a member (a GET with
    the sync headers) also gets the peers, their errors and the invalid entries."""
    service = request.app[SERVICE]
    member = False
    if HEADER_SIGNATURE in request.headers:
        service.verifier.check(request.method, request.path_qs, request.headers, now_ms())
        member = True
    peers = peer_status(service.home)
    doc: dict[str, Any] = await service.write(status_of, service.node, peers)
    doc["url"] = service.url
    if not member:
        doc = {k: doc[k] for k in PUBLIC_STATUS}
    return web.json_response(doc)


PUBLIC_STATUS = ("lab_id", "name", "federation_id", "state_digest", "frontier", "forks",
                 "checkpoint_conflicts", "invalid", "pending", "url")
"""What anyone may see: identity, what is held, whether the ledgers agree."""


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(OPENAPI)


def make_app(service: NodeService, limits: Limits | None = None) -> web.Application:
    """The node's aiohttp application, with ``limits`` (defaults: :class:`Limits`)."""
    limits = limits or Limits()
    app = web.Application(middlewares=[errors, signed], client_max_size=limits.max_body)
    app[SERVICE] = service
    app[LIMITS] = limits
    app[BUDGET] = BodyBudget(limits.body_budget)
    app[BUSY] = set()
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/sync/frontier", frontier)
    app.router.add_post("/v1/sync/pull", pull)
    app.router.add_post("/v1/sync/push", push)
    app.router.add_post("/v1/sync/forks", forks_get)
    app.router.add_post("/v1/sync/forks/push", forks_push)
    app.router.add_post("/v1/sync/checkpoints", checkpoints)
    return app
