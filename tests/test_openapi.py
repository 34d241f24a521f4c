"""The OpenAPI document and the server agree (issue 9, finding 10): every route is
documented and every documented operation exists; a real request to each, against
a real ``disco serve`` process, gets the documented status and content type, signed
or not. Also: what ``/v1/status`` shows anyone, and what only members see."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.openapi import OPENAPI
from node.server import make_app
from node.service import NodeService
from protocol import canonical
from protocol.keys import Signer
from protocol.sync import encode_frontier, encode_wants
from tests.nodes import (
    Nodes,
    Reply,
    add_member,
    federation,
    feed_raws,
    node_group,
    post,
    set_peers,
    signed_headers,
    stream,
)


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group() as n:
        yield n


def _documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in OPENAPI["paths"].items()
            for method in ops}


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    home = federation(tmp_path, ["Here", "There"]).homes[0]
    service = NodeService.open(home, home.signer())
    try:
        app = make_app(service)
        routes = {(r.method, r.resource.canonical) for r in app.router.routes()
                  if r.method != "HEAD" and r.resource is not None}
    finally:
        service.close()
    assert routes == _documented()


def _get(url: str, headers: dict[str, str] | None = None) -> Reply:
    """GET ``url``; any status comes back as a :class:`Reply`."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return Reply(r.status, r.read(), r.headers.get_content_type())
    except urllib.error.HTTPError as e:
        with e:
            return Reply(e.code, e.read(), e.headers.get_content_type())


def _content_types(op: dict[str, Any], status: int) -> set[str]:
    response = op["responses"][str(status)]
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        response = OPENAPI["components"]["responses"][name]
    return set(response.get("content", {}))


def test_each_operation_answers_as_documented(tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Here", "Member"])
    here, member_home = fed.homes
    add_member(member_home)
    member = member_home.signer()
    node = nodes.start_one(here.path)
    entries = stream(feed_raws(member_home, member.public_key))
    bodies: dict[str, bytes | None] = {
        "/v1/sync/frontier": encode_frontier({}),
        "/v1/sync/pull": encode_wants({member.public_key: 0}, 10),
        "/v1/sync/push": entries,
        "/v1/sync/forks": None,
        "/v1/sync/forks/push": canonical.encode([]),
        "/v1/sync/checkpoints": canonical.encode({"want": [here.lab_id], "give": []}),
    }
    assert set(bodies) == {p for p in OPENAPI["paths"] if p.startswith("/v1/sync/")}
    for path, body in bodies.items():
        op = OPENAPI["paths"][path]["post"]
        assert ("requestBody" in op) == (body is not None), path
        headers = signed_headers(member, path, body or b"", to=here.lab_id)
        if body is None:
            del headers["Content-Type"]  # no body, no content type: as documented
        reply = post(node.url, path, body or b"", headers)
        assert reply.status == 200, (path, reply)
        assert reply.content_type in _content_types(op, 200), (path, reply.content_type)
        if path.endswith("push"):
            assert isinstance(reply.value(), dict)
        unsigned = post(node.url, path, body or b"")
        assert unsigned.status == 401 and "unsigned" in unsigned.error
        assert unsigned.content_type in _content_types(op, 401)
    for path in ("/v1/status", "/v1/openapi.json"):
        reply = _get(node.url + path)
        assert reply.content_type in _content_types(OPENAPI["paths"][path]["get"], 200)
    assert _get(node.url + "/v1/openapi.json").json() == OPENAPI


def test_status_shows_anyone_little_and_members_the_peers(tmp_path: Path,
                                                          nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Here", "Member"])
    here, member_home = fed.homes
    set_peers(here, ["http://127.0.0.1:9"])  # unreachable: its error is recorded
    node = nodes.start_one(here.path, env={"DISCO_GOSSIP_INTERVAL": "1"})
    public = node.status()
    assert "peers" not in public and "127.0.0.1:9" not in str(public)
    assert public["lab_id"] == here.lab_id.hex() and "state_digest" in public
    headers = signed_headers(member_home.signer(), "/v1/status", b"", method="GET",
                             to=here.lab_id)
    del headers["Content-Type"]
    full = _get(node.url + "/v1/status", headers).json()
    assert [p["url"] for p in full["peers"]] == ["http://127.0.0.1:9"]
    # A stranger's signature gets a refusal, not the details.
    stranger = signed_headers(Signer.generate(), "/v1/status", b"", method="GET",
                              to=here.lab_id)
    refused = _get(node.url + "/v1/status", stranger)
    assert refused.status == 403 and "not a member" in refused.error
