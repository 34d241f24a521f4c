"""The OpenAPI 3.1 description of the node's HTTP API, served at /v1/openapi.json.

A test walks every route of the server against this document and makes a real
request to each (tests/test_openapi.py): the two must agree.
"""

from __future__ import annotations

from typing import Any

_SIGNED: list[dict[str, list[str]]] = [{"discoSignature": []}]
_MSGPACK = "application/vnd.disco-ledger+msgpack"
_PROBLEM = {"$ref": "#/components/responses/Problem"}
_REFUSALS = {
    "400": "malformed body",
    "401": "unsigned, misaddressed, stale, badly signed or replayed request; or a body "
           "that does not match its signed hash",
    "403": "the signing LAB is not a member of the federation",
    "408": "the body did not arrive within the node's body timeout",
    "413": "body over the node's limit, or more items than a request may carry",
    "415": "a body with another Content-Type than the wire type",
    "429": "the LAB sent more requests inside the clock-skew window than the node keeps",
    "503": "the node's budget for bodies in flight is spent (Retry-After), or the store "
           "is unavailable",
}


def _binary(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {_MSGPACK: {"schema": {"type": "string", "format": "binary"}}}}


def _op(summary: str, request: str | None, response: str) -> dict[str, Any]:
    """A signed sync operation: msgpack in (``request``; None: no body) and out."""
    op: dict[str, Any] = {
        "summary": summary,
        "security": _SIGNED,
        "responses": {"200": _binary(response),
                      **{code: {**_PROBLEM, "description": why}
                         for code, why in _REFUSALS.items()}},
    }
    if request:
        op["requestBody"] = {"required": True, **_binary(request)}
    return op


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "DisCO federation ledger node", "version": "2",
             "description": "Sync between the nodes of a federation of DisCO LABs. "
             "Bodies are canonical msgpack (DESIGN.md). Sync requests carry X-Disco-Lab "
             "(the sender's LAB id, hex), X-Disco-To (the receiving node's LAB id, hex), "
             "X-Disco-Time (ms), X-Disco-Body-SHA256 (base64) and X-Disco-Signature "
             "(base64 Ed25519 over 'disco-ledger/request/v2\\0' + packb([method, path, "
             "time, sha256(body), to])). The node checks them before it reads any body. "
             "Limits and what a node promises under attack: docs/sync.md."},
    "paths": {
        "/v1/status": {"get": {
            "summary": "Identity, frontier, fork proofs and state digest (JSON); a "
                       "request signed by a member also gets the peers and their errors",
            "security": [{}, *_SIGNED],
            "responses": {
                "200": {"description": "status",
                        "content": {"application/json": {"schema": {
                            "type": "object",
                            "required": ["lab_id", "federation_id", "state_digest",
                                         "frontier", "forks"]}}}},
                "401": {**_PROBLEM, "description": _REFUSALS["401"]},
                "403": {**_PROBLEM, "description": _REFUSALS["403"]}}}},
        "/v1/openapi.json": {"get": {
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI",
                                  "content": {"application/json": {}}}}}},
        "/v1/sync/frontier": {"post": _op(
            "Exchange frontiers", "{frontier: [[author, seq, head]], forks: [author]}",
            "the node's own frontier message")},
        "/v1/sync/pull": {"post": _op(
            "Entries after given seqs, oldest first per feed",
            "{wants: [[author, after_seq]], limit: int}; after_seq + limit must stay "
            "within a signed 64-bit seq",
            "entry stream: concatenated msgpack bin items, each one entry verbatim")},
        "/v1/sync/push": {"post": _op(
            "Send entries (at most 5000; all verified before any is stored)",
            "entry stream", "{stored: int, skipped: int, forks: int}")},
        "/v1/sync/forks": {"post": _op("The fork proofs held", None,
                                       "canonical list of fork proofs")},
        "/v1/sync/forks/push": {"post": _op(
            "Send fork proofs (at most one per LAB; copies count once)",
            "canonical list of fork proofs", "{stored: int}")},
        "/v1/sync/checkpoints": {"post": _op(
            "Swap signed checkpoints: give at most one per author, want any authors",
            "{want: [author], give: [[author, note]]}",
            "[[author, note]]: the latest checkpoint held of each wanted author")},
    },
    "components": {
        "securitySchemes": {"discoSignature": {"type": "apiKey", "in": "header",
                                               "name": "X-Disco-Signature"}},
        "responses": {"Problem": {"description": "refused, with a reason",
                                  "content": {"application/json": {"schema": {
                                      "type": "object",
                                      "properties": {"error": {"type": "string"}}}}}}},
    },
}
