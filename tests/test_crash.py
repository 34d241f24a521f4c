"""A node killed with SIGKILL during a burst of appends keeps every acknowledged entry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from node.lab import LabNode
from protocol.entry import Ref
from tests.conftest import REPO, make_federation

APPENDER = """
import sys, time
from pathlib import Path
from node.home import Home
from node.lab import LabNode
home = Home.open(Path(sys.argv[1]))
with LabNode.open(home, home.signer()) as node:
    i = 0
    while True:
        body = {"member": "ana", "stream": "care", "minutes": 1 + i % 600}
        if i % 3 == 0:
            entries = node.author_many([("contribution.recorded", body)] * 5,
                                       time.time_ns() // 1000)
        else:
            entries = [node.author("contribution.recorded", body, time.time_ns() // 1000)]
        for e in entries:
            print(e.ref, flush=True)
        i += 1
"""


def test_kill_9_during_appends_loses_nothing_acknowledged(tmp_path: Path) -> None:
    fed = make_federation(tmp_path, ["Farm", "Fab"])
    with fed.node(0) as node:
        node.author("member.added", {"handle": "ana", "name": "Ana"}, 1)
    proc = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(fed.homes[0].path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    acknowledged: list[str] = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Whatever the pipe still held was acknowledged before the kill, too.
    acknowledged += [line.strip() for line in proc.stdout if line.strip()]
    assert len(acknowledged) >= 300

    with LabNode.open(fed.homes[0]) as node:
        assert node.verify() == []
        for text in acknowledged:
            ref = Ref.parse(text)
            stored = node.store.get(ref.author, ref.seq)
            assert stored is not None and stored.hash == ref.hash
        seqs = [e.seq for e in node.log(fed.homes[0].lab_id)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= 2 + len(acknowledged)
