"""Issue 13: the README's examples run as written.

The rule: every ```` ```sh ```` block of README.md runs, in the README's order, as one
bash script (``set -euo pipefail``) in a scratch folder, with ``disco`` on the PATH
as ``make install`` puts it there; every command must exit 0, and a failure names
its README line. A block whose fence follows a line ``<!-- not run: REASON -->`` is
not run (``make demo``, the PATH set-up). Two things are added around the README's
lines, and nothing else is changed but ports:

- each ``127.0.0.1:PORT`` is given a free port (the same one wherever it recurs);
- after a line that starts ``disco ... serve --listen ADDR &`` in the background,
  the script waits until that node answers, as a person waits for its "listening"
  line; background nodes are stopped when the script ends.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, disco_on_path

README = REPO / "README.md"
SKIP = "<!-- not run"
FENCE = re.compile(r"^```(\S*)\s*$")
SERVE = re.compile(r"\bserve\b.*--listen\s+(\S+)\s*&\s*(#.*)?$")
ADDRESS = re.compile(r"127\.0\.0\.1:(\d+)")

PREAMBLE = r"""set -euo pipefail
__line=0
trap 'echo "README.md line $__line exited $?" >&2' ERR
trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT
__wait_for() {
    python3 - "$1" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + 60
while True:
    try:
        urllib.request.urlopen(f"http://{sys.argv[1]}/v1/status", timeout=5).read()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"no node answered on {sys.argv[1]}")
        time.sleep(0.2)
PY
}
"""


def runnable_lines(text: str) -> list[tuple[int, str]]:
    """(README line number, command) of every line of the ```sh blocks that run,
    a line ending in a backslash joined with the next."""
    lines = text.splitlines()
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        runs = m.group(1) == "sh" and not (i > 0 and lines[i - 1].startswith(SKIP))
        i += 1
        pending: tuple[int, str] | None = None
        while not lines[i].startswith("```"):
            if runs and lines[i].strip():
                start, text_so_far = pending or (i + 1, "")
                joined = text_so_far + lines[i]
                if joined.endswith("\\"):
                    pending = (start, joined[:-1] + " ")
                else:
                    out.append((start, joined))
                    pending = None
            i += 1
        assert pending is None, f"README.md line {pending[0]}: a block ends in a backslash"
        i += 1
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def script(lines: list[tuple[int, str]]) -> str:
    ports: dict[str, str] = {}

    def port(m: re.Match[str]) -> str:
        return "127.0.0.1:" + ports.setdefault(m.group(1), str(free_port()))

    body = [PREAMBLE]
    for number, line in lines:
        line = ADDRESS.sub(port, line)
        body += [f"__line={number}", line]
        serve = SERVE.search(line)
        if serve:
            body.append(f"__wait_for {serve.group(1)}")
    return "\n".join(body) + "\n"


def test_the_rule_finds_the_quick_start() -> None:
    lines = [line for _, line in runnable_lines(README.read_text())]
    assert any(line.startswith("FARM=$(disco --home ./farm init") for line in lines)
    assert any(SERVE.search(line) for line in lines)
    assert not any(line.startswith("make ") for line in lines)  # marked not run
    assert all("\\" not in line for line in lines)


@pytest.mark.slow
def test_the_readme_command_lines_run_as_written(tmp_path: Path) -> None:
    env = disco_on_path(tmp_path / "bin")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    path = tmp_path / "readme.sh"
    path.write_text(script(runnable_lines(README.read_text())))
    proc = subprocess.Popen(["bash", str(path)], cwd=scratch, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # ours: the script's own process group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, f"{err}\n--- stdout ---\n{out}"
    assert "Traceback" not in out + err, err
    # What the README's comments promise: the offer accepted (and seen by the farm
    # after its sync), the audit and the proof holding.
    assert re.search(r"12\.50 JXC\W+accepted", out), out
    assert re.search(r"Fab Lab\W+12\.50\b", out), out
    assert "audit passed" in out and "proof holds" in out, out
