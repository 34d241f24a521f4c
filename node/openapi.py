"""The OpenAPI 3.1 description of the node's HTTP API, served at /v1/openapi.json."""

from __future__ import annotations

from typing import Any

_SIGNED: list[dict[str, list[str]]] = [{"discoSignature": []}]
_MSGPACK = "application/vnd.disco-ledger+msgpack"


def _op(summary: str, request: str | None, response: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": _SIGNED,
        "responses": {
            "200": {"description": response,
                    "content": {_MSGPACK: {"schema": {"type": "string",
                                                      "format": "binary"}}}},
            "400": {"$ref": "#/components/responses/Problem"},
            "401": {"$ref": "#/components/responses/Problem"},
            "403": {"$ref": "#/components/responses/Problem"},
            "413": {"$ref": "#/components/responses/Problem"},
            "415": {"$ref": "#/components/responses/Problem"},
        },
    }
    if request:
        op["requestBody"] = {"required": True, "description": request,
                             "content": {_MSGPACK: {"schema": {"type": "string",
                                                               "format": "binary"}}}}
    return op


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "DisCO federation ledger node", "version": "1",
             "description": "Sync between the nodes of a federation of DisCO LABs. "
             "Bodies are canonical msgpack (DESIGN.md). Sync requests carry "
             "X-Disco-Lab, X-Disco-Time (ms) and X-Disco-Signature (base64 Ed25519 over "
             "'disco-ledger/request/v1\\0' + packb([method, path, time, sha256(body)]))."},
    "paths": {
        "/v1/status": {"get": {
            "summary": "Identity, frontier, fork proofs, peers and state digest (JSON)",
            "responses": {"200": {"description": "status",
                                  "content": {"application/json": {"schema": {
                                      "type": "object",
                                      "required": ["lab_id", "federation_id",
                                                   "state_digest", "frontier", "peers",
                                                   "forks"]}}}}}}},
        "/v1/openapi.json": {"get": {"summary": "This document",
                                     "responses": {"200": {"description": "OpenAPI"}}}},
        "/v1/sync/frontier": {"post": _op(
            "Exchange frontiers", "{frontier: [[author, seq, head]], forks: [author]}",
            "the node's own frontier message")},
        "/v1/sync/pull": {"post": _op(
            "Entries after given seqs, oldest first per feed",
            "{wants: [[author, after_seq]], limit: int}",
            "entry stream: concatenated msgpack bin items, each one entry verbatim")},
        "/v1/sync/push": {"post": _op(
            "Send entries (all verified before any is stored)",
            "entry stream", "JSON {stored, skipped, forks}")},
        "/v1/sync/forks": {"post": _op("The fork proofs held", None,
                                       "canonical list of fork proofs")},
        "/v1/sync/forks/push": {"post": _op("Send fork proofs",
                                            "canonical list of fork proofs",
                                            "JSON {stored}")},
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
