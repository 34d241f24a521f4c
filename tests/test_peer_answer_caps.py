"""A hostile or intercepted peer cannot make a node read without bound (issue 9,
finding 4): every answer is read as it streams in, with a cap derived from the
roster and the batch sizes; past it the round fails, the peer is backed off and
logged. Memory is read from the syncing process (its peak RSS), not guessed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from node.client import answer_caps
from protocol import canonical
from protocol.sync import MEDIA_TYPE, encode_frontier, frame
from tests.nodes import (
    Nodes,
    add_member,
    fake_peer_thread,
    federation,
    feed_raws,
    node_env,
    node_group,
    set_peers,
    wait_until,
)

HUGE = 300 * 1024 * 1024
PEAK_THEN_DISCO = (
    "import atexit, os\n"
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            open(os.environ['PEAK_FILE'], 'w').write(line.split()[1])\n"
    "atexit.register(peak)\n"
    "from node.cli import run; run()\n")
"""``disco`` that writes its own peak RSS (VmHWM, KiB) to $PEAK_FILE as it exits. Not
the rusage of the child: a child forked (or vforked) from the test process inherits
that process's high-water mark through exec, which is not the syncing node's."""
MiB = 1024 * 1024


async def _flood(request: web.Request) -> web.StreamResponse:
    """A 300 MB answer, streamed (no length announced), until the client hangs up."""
    response = web.StreamResponse(headers={"Content-Type": MEDIA_TYPE})
    await response.prepare(request)
    chunk = b"\x91" * MiB
    try:
        for _ in range(HUGE // MiB):
            await response.write(chunk)
    except (ConnectionError, RuntimeError):
        pass
    return response


def _msgpack(value: Any) -> web.Response:
    return web.Response(body=canonical.encode(value), content_type=MEDIA_TYPE)


def _routes(case: str, lab: bytes, other: bytes, entry: bytes) -> dict[str, Any]:
    """A peer (LAB ``lab``) hostile in one way; ``other`` is a feed it claims to hold."""

    async def frontier(request: web.Request) -> web.StreamResponse:
        if case == "frontier":
            return await _flood(request)
        if case == "forks":
            return web.Response(body=encode_frontier({}, [other]), content_type=MEDIA_TYPE)
        if case == "pull":
            return web.Response(body=encode_frontier({other: (10**6, b"\x01" * 32)}),
                                content_type=MEDIA_TYPE)
        return web.Response(body=encode_frontier({}), content_type=MEDIA_TYPE)

    async def pull(request: web.Request) -> web.StreamResponse:
        # Far more entries than the 5000 asked for (copies of one real entry).
        response = web.StreamResponse(headers={"Content-Type": MEDIA_TYPE})
        await response.prepare(request)
        try:
            for _ in range(20):
                await response.write(frame(entry) * 1000)
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def push(request: web.Request) -> web.StreamResponse:
        if case == "push":
            return await _flood(request)
        return _msgpack({"stored": 0, "skipped": 0, "forks": 0})

    hostile = {"forks": "/v1/sync/forks", "checkpoints": "/v1/sync/checkpoints"}
    routes: dict[str, Any] = {"/v1/sync/frontier": frontier, "/v1/sync/pull": pull,
                              "/v1/sync/push": push}
    for name, path in hostile.items():
        routes[path] = _flood if case == name else _nothing
    return routes


async def _nothing(request: web.Request) -> web.Response:
    return _msgpack([])


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group(env={"DISCO_GOSSIP_INTERVAL": "1"}) as n:
        yield n


@pytest.mark.parametrize("case", ["frontier", "forks", "checkpoints", "push", "pull"])
def test_an_oversize_answer_fails_the_round_with_bounded_memory(tmp_path: Path,
                                                                 case: str) -> None:
    fed = federation(tmp_path, ["Syncing", "Hostile"])
    syncing, hostile = fed.homes
    add_member(syncing)
    add_member(hostile)
    entry = feed_raws(hostile, hostile.lab_id)[0]
    with fake_peer_thread(hostile.lab_id, _routes(case, hostile.lab_id, hostile.lab_id,
                                                  entry)) as url:
        peak_file = tmp_path / "peak-kb"
        proc = subprocess.run([sys.executable, "-c", PEAK_THEN_DISCO, "--home",
                               str(syncing.path), "sync", url, "--json"],
                              capture_output=True, text=True, timeout=120,
                              env=node_env({"PEAK_FILE": str(peak_file)}))
        out, err = proc.stdout, proc.stderr
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err, err
    [result] = json.loads(out)["peers"]
    assert result["ok"] is False
    reason = result["error"]
    if case == "pull":
        assert "more than 5000 entries" in reason, reason
    else:
        assert "over the" in reason and "bytes this request may take" in reason, reason
    peak_mb = int(peak_file.read_text()) / 1024
    assert peak_mb < 150, f"peak RSS {peak_mb:.0f} MB reading a hostile {case} answer"


def test_caps_follow_the_roster() -> None:
    small, large = answer_caps(3), answer_caps(30)
    assert set(small) == set(large)
    assert all(large[k] > small[k] for k in small)
    assert small["/v1/sync/frontier"] < 1024


def test_a_serving_node_backs_off_and_logs_a_peer_that_answers_too_much(
        tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Serving", "Hostile"])
    serving, hostile = fed.homes
    with fake_peer_thread(hostile.lab_id, _routes("frontier", hostile.lab_id,
                                                  hostile.lab_id, b"")) as url:
        node = nodes.start_one(serving.path)
        set_peers(serving, [url])
        wait_until(lambda: any(f"sync with {url} failed" in ln and "over the" in ln
                               for ln in node.log_lines), timeout=30,
                   what="the failed round in the log")

        def state() -> dict[str, Any]:
            value: dict[str, Any] = json.loads(
                (serving.path / "peer-state.json").read_text())[url]
            return value

        wait_until(lambda: state()["failures"] >= 1, timeout=10, what="a failure recorded")
        assert "over the" in state()["last_error"]
        assert node.memory_kb(peak=True) < 200 * 1024
        assert node.running and "Traceback" not in node.log
