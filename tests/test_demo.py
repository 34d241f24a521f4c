"""``make demo`` (``python -m node.demo``) run as a person runs it: it cleans up after
itself. Its temporary folder is gone when it ends, whether it finished, was
interrupted (Ctrl-C) or was terminated, and its nodes are stopped; ``DEMO_KEEP=1``
keeps the folder and says where it is (issue 13, point 14)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from node import demo
from tests.conftest import REPO

DEMO = [sys.executable, "-m", "node.demo"]


def demo_env(tmpdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DEMO_KEEP", "DEMO_DIR")}
    return {**env, "TMPDIR": str(tmpdir), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
            **extra}


def demo_folders(tmpdir: Path) -> list[Path]:
    return sorted(tmpdir.glob("disco-demo-*"))


def listening(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v1/status", timeout=5):
            return True
    except (urllib.error.URLError, OSError):
        return False


AS_IN_A_TERMINAL = [sys.executable, "-c",
                    "import runpy, signal; signal.signal(signal.SIGINT, "
                    "signal.default_int_handler); runpy.run_module('node.demo', "
                    "run_name='__main__', alter_sys=True)"]
"""The demo with Ctrl-C's Python default (KeyboardInterrupt), as a terminal starts it:
a shell's background job (CI's runner may be one) would hand it SIGINT ignored."""


class RunningDemo:
    """The demo in its own process group (as a terminal runs it), its output read
    line by line as it comes."""

    def __init__(self, tmpdir: Path, **env: str) -> None:
        self.proc = subprocess.Popen(AS_IN_A_TERMINAL, cwd=REPO, env=demo_env(tmpdir, **env),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return
        pytest.fail(f"the demo never printed {text!r}:\n{''.join(self.lines)}")

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def urls(self) -> list[str]:
        return re.findall(r"^\w+ +(http://127\.0\.0\.1:\d+)$", self.output, re.MULTILINE)

    def kill(self) -> None:
        """Whatever is left of the demo's process group (its nodes included)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[RunningDemo]]:
    started: list[RunningDemo] = []
    yield started
    for d in started:
        d.kill()


@pytest.mark.slow
def test_the_demo_removes_its_folder_when_it_is_done(tmp_path: Path) -> None:
    result = subprocess.run(DEMO, cwd=REPO, env=demo_env(tmp_path), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all three state digests match" in result.stdout
    assert "audit passed" in result.stdout
    folder = re.search(r"^== Three LABs in (.+)$", result.stdout, re.MULTILINE)
    assert folder and Path(folder[1]).parent == tmp_path, result.stdout
    assert not Path(folder[1]).exists()
    assert demo_folders(tmp_path) == []


def test_ctrl_c_stops_the_nodes_and_removes_the_folder(
        tmp_path: Path, running: list[RunningDemo]) -> None:
    d = RunningDemo(tmp_path)
    running.append(d)
    d.wait_for_line("== Members and their work")  # three nodes are up and peered
    urls = d.urls()
    assert len(urls) == 3 and all(listening(u) for u in urls), d.output
    assert len(demo_folders(tmp_path)) == 1

    os.killpg(d.proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C

    assert d.finish() == 130, d.output
    assert "demo: interrupted" in d.output
    assert "Traceback" not in d.output
    assert not any(listening(u) for u in urls)
    assert demo_folders(tmp_path) == []


def test_demo_keep_keeps_the_folder_even_when_terminated(
        tmp_path: Path, running: list[RunningDemo]) -> None:
    d = RunningDemo(tmp_path, DEMO_KEEP="1")
    running.append(d)
    d.wait_for_line("== Members and their work")
    urls = d.urls()
    assert len(urls) == 3, d.output

    d.proc.send_signal(signal.SIGTERM)  # to the demo alone: it stops its nodes itself

    assert d.finish() == 128 + signal.SIGTERM, d.output
    assert not any(listening(u) for u in urls)  # not a finished run: no node is left
    [folder] = demo_folders(tmp_path)
    assert f"== The demo's folder is kept: {folder}" in d.output
    assert (folder / "farm" / "node.json").is_file()


def test_finish_removes_the_folder_or_says_where_it_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kept, removed = tmp_path / "kept", tmp_path / "removed"
    for folder in (kept, removed):
        (folder / "farm").mkdir(parents=True)
        (folder / "farm" / "ledger.sqlite").write_bytes(b"x")

    demo.finish(kept, remove=False)
    demo.finish(removed, remove=True)

    assert (kept / "farm" / "ledger.sqlite").exists()
    assert not removed.exists()
    assert capsys.readouterr().out == f"== The demo's folder is kept: {kept}\n"
