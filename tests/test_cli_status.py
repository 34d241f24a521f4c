"""Issue 13, point 10: ``disco status`` shows the roster, the lag per feed and per peer
(the entries each side lacks), the last contact as a person reads it ("2 min ago")
and the peers' names once they have been contacted. Driven as a person would:
``disco`` in a subprocess, peers as real ``disco serve`` processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.cli.common import ago
from tests.conftest import Cli
from tests.nodes import (
    Nodes,
    add_member,
    author_contributions,
    federation,
    node_group,
    one_line_error,
)

DEAD = "http://127.0.0.1:1"


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group(env={"DISCO_GOSSIP_INTERVAL": "600"}) as n:
        yield n



def test_status_shows_roster_peers_and_lag(tmp_path: Path, nodes: Nodes, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab", "LandTrust"])
    farm, fablab, land = fed.homes
    add_member(farm)
    author_contributions(farm, 5)
    url = nodes.start_one(farm.path).url
    assert url is not None
    cli("peer", "add", url, home=fablab.path)
    cli("peer", "add", DEAD, home=fablab.path)

    # Before any contact: the roster, peers by URL, never contacted, lag unknown.
    doc = cli.json("status", home=fablab.path)
    assert doc["roster"] == [{"lab": h.lab_id.hex(), "name": n, "state": "member",
                              "key": h.lab_id.hex(), "seq": 1 if h is fablab else 0}
                             for h, n in ((farm, "Farm"), (fablab, "FabLab"),
                                          (land, "LandTrust"))]
    by_url = {p["url"]: p for p in doc["peers"]}
    assert by_url[url]["name"] is None and by_url[url]["we_lack"] is None, by_url
    text = cli("status", home=fablab.path).stdout
    assert f"peer       {url}  last contact never" in text, text
    assert "feed       LandTrust        seq 0" in text, text

    # One sync: the peer's name, its frontier, the last contact "just now".
    result = cli("sync", home=fablab.path, check=False, input="")
    assert result.returncode == 1  # the dead peer failed
    assert f"Farm ({url}): in sync" in result.stdout, result.stdout
    doc = cli.json("status", home=fablab.path)
    by_url = {p["url"]: p for p in doc["peers"]}
    farm_peer = by_url[url]
    assert farm_peer["name"] == "Farm" and farm_peer["lab"] == farm.lab_id.hex()
    assert isinstance(farm_peer["last_contact"], float)
    assert abs(farm_peer["last_contact"] - time.time()) < 60
    assert farm_peer["we_lack"] == 0 and farm_peer["they_lack"] == 0, farm_peer
    assert by_url[DEAD]["failures"] == 1 and by_url[DEAD]["name"] is None
    assert doc["lag"] == {}
    text = cli("status", home=fablab.path).stdout
    assert f"peer       Farm ({url})  last contact just now, in sync" in text, text
    assert f"peer       {DEAD}  last contact never, 1 failure(s): " in text, text

    # FabLab writes 3 more: the peer lacks them, per feed and per peer.
    add_member(fablab, "bo")
    author_contributions(fablab, 2, handle="bo")
    doc = cli.json("status", home=fablab.path)
    farm_peer = {p["url"]: p for p in doc["peers"]}[url]
    assert farm_peer["they_lack"] == 3 and farm_peer["we_lack"] == 0, farm_peer
    assert farm_peer["lag"] == {fablab.lab_id.hex(): {"we_lack": 0, "they_lack": 3}}
    assert doc["lag"] == {fablab.lab_id.hex(): {"we_lack": 0, "peers_lack": 3}}
    text = cli("status", home=fablab.path).stdout
    assert "feed       FabLab           seq 4 " in text and "(a peer lacks 3)" in text, text
    assert "we lack 0, it lacks 3" in text, text

    # Time passes: the last contact reads as a person reads it.
    state_path = fablab.path / "peer-state.json"
    state = json.loads(state_path.read_text())
    state[url]["last_contact"] = time.time() - 125
    state_path.write_text(json.dumps(state))
    text = cli("status", home=fablab.path).stdout
    assert f"peer       Farm ({url})  last contact 2 min ago" in text, text


def test_status_mistakes_are_one_line(tmp_path: Path, cli: Cli) -> None:
    line = one_line_error(cli("status", home=tmp_path / "nowhere", check=False), 2)
    assert "no node folder" in line
    cli("init", "--name", "Alone", home=tmp_path / "alone")
    line = one_line_error(cli("status", home=tmp_path / "alone", check=False), 1)
    assert "has not joined a federation" in line, line
    line = one_line_error(cli("status", "--peers", home=tmp_path / "alone", check=False), 2)
    assert "--peers" in line


def test_ago_reads_like_a_person() -> None:
    now = 1_800_000_000.0
    assert ago(None, now) == "never"
    assert ago(now - 3, now) == "just now"
    assert ago(now - 42, now) == "42 s ago"
    assert ago(now - 125, now) == "2 min ago"
    assert ago(now - 3 * 3600, now) == "3 h ago"
    assert ago(now - 5 * 86400, now) == "5 days ago"
    assert "clock" in ago(now + 600, now)
