"""The node's HTTP API (aiohttp): sync between nodes and a small JSON status.

Handlers only decode, call the store or the core in a worker thread, and encode.
Every ``/v1/sync/*`` request must be signed by a roster LAB (:mod:`node.auth`);
anything else gets 401/403 before anything is read. Malformed input gets a 400
naming the reason and changes nothing stored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node.auth import AuthError
from node.openapi import OPENAPI
from node.service import NodeService, now_ms, peer_status, status_of
from node.store import StoreError
from protocol import canonical
from protocol.errors import ProtocolError
from protocol.sync import (
    MEDIA_TYPE,
    decode_entry_stream,
    decode_fork_proof,
    decode_frontier,
    decode_wants,
    encode_frontier,
    frame,
)

MAX_BODY = 8 * 1024 * 1024
MAX_PULL = 5000
SERVICE: web.AppKey[NodeService] = web.AppKey("service", NodeService)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal is JSON with a reason; a peer's bad bytes are a 400, never a 500."""
    try:
        return await handler(request)
    except AuthError as e:
        return problem(e.status, e.reason)
    except ProtocolError as e:
        return problem(400, str(e))
    except web.HTTPRequestEntityTooLarge:
        return problem(413, f"request body over {MAX_BODY} bytes")
    except web.HTTPException:
        raise
    except StoreError as e:
        return problem(503, f"store unavailable: {e}")


async def signed_body(request: web.Request) -> tuple[bytes, bytes]:
    """Read the (bounded) body and authenticate the request; return (lab, body)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise AuthError(413, f"request body over {MAX_BODY} bytes")
    body = await request.read()
    service = request.app[SERVICE]
    lab = service.verifier.check(request.method, request.path_qs, request.headers, body,
                                 now_ms())
    if request.content_type != MEDIA_TYPE:
        raise web.HTTPUnsupportedMediaType(text=json.dumps(
            {"error": f"want Content-Type {MEDIA_TYPE}"}), content_type="application/json")
    return lab, body


def msgpack_response(data: bytes) -> web.Response:
    return web.Response(body=data, content_type=MEDIA_TYPE)


async def frontier(request: web.Request) -> web.StreamResponse:
    """Frontier exchange: the peer's frontier in, ours out (and fork authors)."""
    service = request.app[SERVICE]
    _, body = await signed_body(request)
    decode_frontier(body)
    ours = await service.read(service.node.frontier)
    forks = await service.read(service.node.store.fork_proofs)
    return msgpack_response(encode_frontier(ours, forks))


async def pull(request: web.Request) -> web.StreamResponse:
    """Stream the entries the peer wants, oldest first per feed, bounded."""
    service = request.app[SERVICE]
    lab, body = await signed_body(request)
    wants, limit = decode_wants(body, MAX_PULL)
    roster = service.node.require_genesis().roster
    response = web.StreamResponse(headers={"Content-Type": MEDIA_TYPE})
    await response.prepare(request)
    async with service.peer_slot(lab):
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
    lab, body = await signed_body(request)
    raws = list(decode_entry_stream(body))
    if len(raws) > MAX_PULL:
        return problem(413, f"at most {MAX_PULL} entries per push")
    async with service.peer_slot(lab):
        result = await service.write(service.node.ingest, raws)
    if result.stored or result.forks:
        for proof in result.forks:
            service.log(f"fork detected in the feed of {proof.author.hex()} at seq "
                        f"{proof.seq}: feed frozen")
        service.gossip.nudge(asyncio.get_running_loop().time())
    return web.json_response({"stored": result.stored, "skipped": result.skipped,
                              "forks": len(result.forks)})


async def forks_get(request: web.Request) -> web.StreamResponse:
    """The fork proofs this node holds (canonical list of proof bytes)."""
    service = request.app[SERVICE]
    await signed_body(request)
    proofs = await service.read(service.node.store.fork_proofs)
    return msgpack_response(canonical.encode([p.encode() for p in proofs.values()]))


async def forks_push(request: web.Request) -> web.StreamResponse:
    """Take fork proofs from a peer; each must verify on its own."""
    service = request.app[SERVICE]
    _, body = await signed_body(request)
    items = canonical.decode(body, max_size=MAX_BODY, what="fork proofs")
    if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
        return problem(400, "fork proofs: want a list of proofs")
    proofs = [decode_fork_proof(i) for i in items]
    new = 0
    for proof in proofs:
        if await service.write(service.node.add_fork_proof, proof):
            service.log(f"fork proof received for {proof.author.hex()} at seq {proof.seq}: "
                        "feed frozen")
            new += 1
    if new:
        service.gossip.nudge(asyncio.get_running_loop().time())  # relay the proof
    return web.json_response({"stored": new})


async def checkpoints(request: web.Request) -> web.StreamResponse:
    """Swap signed checkpoints: take the peer's (checked against our entries), return
    ours (the own feed's freshly signed) for the authors it asks about."""
    service = request.app[SERVICE]
    _, body = await signed_body(request)
    msg = canonical.decode(body, max_size=MAX_BODY, what="checkpoints")
    if (not isinstance(msg, dict) or set(msg) != {"want", "give"}
            or not isinstance(msg["want"], list) or not isinstance(msg["give"], list)):
        return problem(400, "checkpoints: want a map with want and give lists")
    given = [g for g in msg["give"] if isinstance(g, list) and len(g) == 2
             and isinstance(g[0], bytes) and isinstance(g[1], bytes)]
    if len(given) != len(msg["give"]):
        return problem(400, "checkpoints: give must be [author, note] pairs")
    roster = service.node.require_genesis().roster
    for author, note in given:
        if author not in roster:
            return problem(403, "checkpoint of an author outside the roster")
        conflict = await service.write(service.book.accept, author, note)
        if conflict:
            service.log(conflict)
    await service.write(service.book.sign_own, service.signer)
    out = []
    for author in msg["want"]:
        if isinstance(author, bytes) and author in roster:
            held = await service.read(service.book.latest, author)
            if held is not None:
                out.append([author, held[1]])
    return msgpack_response(canonical.encode(out))


async def status(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICE]
    peers = peer_status(service.home)
    doc: dict[str, Any] = await service.write(status_of, service.node, peers)
    doc["url"] = service.url
    return web.json_response(doc)


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(OPENAPI)


def make_app(service: NodeService) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app[SERVICE] = service
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/sync/frontier", frontier)
    app.router.add_post("/v1/sync/pull", pull)
    app.router.add_post("/v1/sync/push", push)
    app.router.add_post("/v1/sync/forks", forks_get)
    app.router.add_post("/v1/sync/forks/push", forks_push)
    app.router.add_post("/v1/sync/checkpoints", checkpoints)
    return app
