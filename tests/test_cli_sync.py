"""Issue 13, point 9: ``disco sync`` runs until the node is in sync, with a progress
bar on a terminal and one summary line per peer; ``--once`` keeps one round.
Progress bars on ``verify``, ``rebuild``, ``export`` and ``audit`` only on a terminal
and never with ``--json``; ``disco serve`` logs its catch-up. Each is driven as a
person would: ``disco`` in a subprocess (``script`` gives it a terminal)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from node.cli.common import progress_bar
from node.client import PULL_LIMIT, lacking
from protocol import canonical
from protocol.sync import MEDIA_TYPE, encode_frontier
from tests.conftest import DISCO, Cli
from tests.nodes import (
    Nodes,
    add_member,
    author_contributions,
    fake_peer_thread,
    federation,
    feed_seqs,
    node_env,
    node_group,
    one_line_error,
    sync_once,
    wait_until,
)

BIG = PULL_LIMIT + 300
"""More entries than one round pulls."""


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group(env={"DISCO_GOSSIP_INTERVAL": "600"}) as n:
        yield n



def test_sync_runs_until_in_sync_past_one_round(tmp_path: Path, nodes: Nodes,
                                                cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab", "LandTrust"])
    farm, fablab, land = fed.homes
    add_member(farm)
    author_contributions(farm, BIG, batch=1000)
    held = BIG + 2  # lab.joined, member.added
    url = nodes.start_one(farm.path).url
    assert url is not None

    # --once: one round, as before: 5000 entries, not in sync, exit 0, said so.
    cli("peer", "add", url, home=land.path)
    once = cli("sync", "--once", home=land.path, input="")
    assert once.stderr == "", once.stderr  # no terminal: no progress bar
    [line] = once.stdout.splitlines()
    assert line.startswith(f"Farm ({url}): not in sync yet (pulled {PULL_LIMIT}, pushed 1 "
                           "in 1 round;"), line
    assert f"{held - PULL_LIMIT} entries left" in line, line
    status = cli.json("status", home=land.path)
    [peer] = status["peers"]
    assert peer["we_lack"] == held - PULL_LIMIT and peer["they_lack"] == 0, peer

    # Without --once: rounds until in sync, one line.
    result = cli("sync", url, home=fablab.path, input="")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    [line] = result.stdout.splitlines()
    # (Farm's entries, and the lab.joined LandTrust pushed to it)
    assert line.startswith(f"Farm ({url}): in sync (pulled {held + 1}, pushed 1 in "), line
    assert int(line.rsplit(" in ", 1)[1].split()[0]) >= 2, line  # rounds
    assert feed_seqs(fablab)[farm.lab_id.hex()] == list(range(1, held + 1))

    # --json: the same, no bar, the numbers; a second sync is one round, in sync.
    doc = cli.json("sync", url, home=land.path)
    [peer] = doc["peers"]
    assert peer["ok"] and peer["in_sync"] and not peer["stalled"], peer
    assert peer["pulled"] == held - PULL_LIMIT + 1 and peer["lacking"] == 0, peer
    again = cli.json("sync", url, home=land.path)
    assert again["peers"][0]["rounds"] == 1 and again["peers"][0]["pulled"] == 0


async def _empty_pull(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"", content_type=MEDIA_TYPE)


def test_sync_stops_and_says_so_when_the_peer_cannot_give_more(tmp_path: Path,
                                                               cli: Cli) -> None:
    """A peer that shows entries it never sends: a round moves nothing and the two
    still differ; ``disco sync`` stops there (no endless loop) and exits 1."""
    fed = federation(tmp_path, ["Syncing", "Stuck"])
    syncing, stuck = fed.homes
    fake_head = b"\x07" * 32

    async def frontier(request: web.Request) -> web.Response:
        return web.Response(body=encode_frontier(
            {stuck.lab_id: (40, fake_head), syncing.lab_id: (1, b"\x00" * 32)}),
            content_type=MEDIA_TYPE)

    async def nothing(request: web.Request) -> web.Response:
        return web.Response(body=canonical.encode([]), content_type=MEDIA_TYPE)

    async def push(request: web.Request) -> web.Response:
        return web.Response(body=canonical.encode({"stored": 0, "skipped": 0, "forks": 0}),
                            content_type=MEDIA_TYPE)

    routes: dict[str, Any] = {"/v1/sync/frontier": frontier, "/v1/sync/pull": _empty_pull,
                              "/v1/sync/push": push, "/v1/sync/forks": nothing,
                              "/v1/sync/checkpoints": nothing}
    with fake_peer_thread(stuck.lab_id, routes) as url:
        result = cli("sync", url, home=syncing.path, check=False, input="")
        line = one_line_error(result, 1)
        assert "not in sync, and a round moved nothing" in line, line
        assert "the peer cannot give more" in line, line
        assert result.stdout == ""
        doc = json.loads(cli("sync", url, "--json", home=syncing.path, check=False).stdout)
    [peer] = doc["peers"]
    assert peer["ok"] is False and peer["stalled"] and not peer["in_sync"], peer
    assert peer["rounds"] == 1


def test_sync_mistakes_are_one_line(tmp_path: Path, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0]
    line = one_line_error(cli("sync", home=farm.path, check=False, input=""), 1)
    assert "no peers" in line and "disco peer add" in line, line
    line = one_line_error(cli("sync", "ftp://x", home=farm.path, check=False), 2)
    assert "want http(s)://HOST:PORT" in line, line
    line = one_line_error(cli("sync", "--once", "http://127.0.0.1:1", home=farm.path,
                               check=False, input=""), 1)
    assert line.startswith("disco: sync with http://127.0.0.1:1 failed:"), line
    line = one_line_error(cli("sync", "--rounds", "3", home=farm.path, check=False), 2)
    assert "--rounds" in line
    line = one_line_error(cli("sync", home=tmp_path / "nowhere", check=False), 2)
    assert "no node folder" in line


def test_no_progress_bar_without_a_terminal_or_with_json(tmp_path: Path, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0]
    add_member(farm)
    author_contributions(farm, 1500, batch=500)
    for args in (["verify"], ["rebuild"], ["export", "--out", str(tmp_path / "a.bundle")],
                 ["audit", str(tmp_path / "a.bundle")], ["audit"]):
        result = cli(*args, home=farm.path, input="")
        assert result.stderr == "", (args, result.stderr)
        result = cli(*args[:1], *(["--out", str(tmp_path / "b.bundle")]
                                  if args[0] == "export" else args[1:]), "--json",
                     home=farm.path, input="")
        assert result.stderr == "" and json.loads(result.stdout), (args, result.stderr)


def _in_a_terminal(args: list[str], home: Path) -> tuple[int, str]:
    """Run ``disco --home HOME ARGS`` with a terminal (``script``); its exit code and
    everything it wrote to the terminal."""
    command = shlex.join([*DISCO, "--home", str(home), *args])
    result = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                            text=True, timeout=120, cwd=home.parent,
                            env={**node_env(), "TERM": "xterm", "COLUMNS": "100"})
    return result.returncode, result.stdout


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script")
def test_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0]
    add_member(farm)
    author_contributions(farm, 3000, batch=1000)
    code, out = _in_a_terminal(["rebuild"], farm.path)
    assert code == 0, out
    assert "rebuilding" in out and "ledger rebuilt" in out, out
    code, out = _in_a_terminal(["verify"], farm.path)
    assert code == 0 and "verifying" in out and "store verified" in out, out
    code, out = _in_a_terminal(["export", "--out", str(tmp_path / "f.bundle")], farm.path)
    assert code == 0 and "exporting" in out and "entries written" in out, out
    code, out = _in_a_terminal(["rebuild", "--json"], farm.path)
    assert code == 0 and "rebuilding" not in out, out
    assert json.loads(out[out.index("{"):])["ok"] is True


def test_the_progress_helper() -> None:
    seen: list[int] = []
    with progress_bar("x", 10, enabled=False) as update:
        update(5)
        update(7, 20)
        seen.append(1)
    assert seen == [1]  # disabled: nothing drawn, nothing raised
    assert lacking({b"a": 5, b"b": 2}, {b"a": 3, b"b": 4, b"c": 1}) == (3, 2)


def test_serve_logs_its_catch_up(tmp_path: Path, nodes: Nodes) -> None:
    """A node whose store holds far more than its ledger has read logs how far the
    catch-up has come when it starts."""
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm, fablab = fed.homes
    add_member(farm)
    author_contributions(farm, 2500, batch=500)
    farm_node = nodes.start_one(farm.path)
    assert farm_node.url is not None
    [r] = sync_once(fablab, farm_node.url)  # stored, the ledger not caught up
    assert r.pulled == 2502
    node = nodes.start_one(fablab.path)
    line = wait_until(lambda: next((x for x in node.lines if "catching up:" in x), None),
                      timeout=20, what="a catch-up line")
    assert " of " in line and line.endswith(" entries"), line
