"""Harness for integration tests that run real ``disco serve`` processes.

- :class:`NodeProcess`: one ``disco --home DIR serve --listen 127.0.0.1:0``
  subprocess; waits for its "listening on URL" line, collects its output lines in
  a background thread, and can be stopped (SIGTERM) or killed (SIGKILL).
- :class:`Nodes` / :func:`node_group` (wrap it in a fixture): starts processes and
  stops every one of them when the test ends, pass or fail.
- :func:`wait_until`: poll a predicate until it holds.
- :func:`signed_post` / :func:`post`: raw HTTP requests to a node, signed with a
  given :class:`~protocol.keys.Signer` (or deliberately not), for adversarial tests.
- Entry helpers: author entries in-process, read feeds, build entry streams.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from eventsourcing.persistence import OperationalError

from node.auth import sign_request
from node.client import RoundResult, sync_round
from node.home import Home
from node.lab import LabNode
from node.service import NodeService, now_ms, save_peers
from protocol import canonical
from protocol.entry import Entry
from protocol.keys import Signer
from protocol.sync import MEDIA_TYPE, frame
from tests.conftest import DISCO, REPO, Federation, make_federation

T = TypeVar("T")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
URL_LINE = re.compile(r"disco node .* listening on (http://\S+)")


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(extra or {})}
    env.pop("DISCO_HOME", None)
    return env


class NodeProcess:
    """A running ``disco serve`` subprocess for one home folder."""

    def __init__(self, home: Path, env: dict[str, str] | None = None,
                 listen: str = "127.0.0.1:0", args: Sequence[str] = (),
                 preexec_fn: Callable[[], None] | None = None) -> None:
        self.home = Path(home)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.url: str | None = None
        self._terminated = False
        self.proc = subprocess.Popen(
            [*DISCO, "--home", str(self.home), "serve", "--listen", listen, *args],
            cwd=str(self.home.parent), env=node_env(env), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, preexec_fn=preexec_fn)
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"disco-log-{self.home.name}")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self._cond:
                self.lines.append(line)
                m = URL_LINE.search(line)
                if m and self.url is None:
                    self.url = m.group(1)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> NodeProcess:
        """Block until the node printed its URL; raise (with its output) if it did not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.url is None:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(left, 0.2))
        if self.url is None:
            self.kill()
            raise AssertionError(f"disco serve for {self.home} did not start within "
                                 f"{timeout} s:\n{self.log}")
        return self

    @property
    def log_lines(self) -> list[str]:
        with self._cond:
            return list(self.lines)

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    def memory_kb(self, peak: bool = False) -> int:
        """Resident memory now (or its peak), in KiB, read from /proc."""
        return proc_memory_kb(self.proc.pid, "VmHWM" if peak else "VmRSS")

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        assert self.url, "node not ready"
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def status(self) -> dict[str, Any]:
        """``GET /v1/status``."""
        value: dict[str, Any] = self.get_json("/v1/status")
        return value

    def frontier(self) -> dict[str, int]:
        """{lab hex: seq} from the node's status."""
        return {a: h["seq"] for a, h in self.status()["frontier"].items()}

    def terminate(self) -> None:
        """Send SIGTERM once (a second one during shutdown would kill the process)."""
        if self.proc.poll() is None and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait; SIGKILL if it does not stop in time. Returns the exit code."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"{self.home} did not stop on SIGTERM within "
                                     f"{timeout} s:\n{self.log}") from None
        self._reader.join(5)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (kill -9), then reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)
        self._reader.join(5)

    def __repr__(self) -> str:
        return f"NodeProcess({self.home.name!r}, url={self.url!r}, pid={self.proc.pid})"


class Nodes:
    """Starts node processes for one test and stops all of them at its end."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env or {}
        self.started: list[NodeProcess] = []

    def start(self, *homes: Path, env: dict[str, str] | None = None,
              args: Sequence[str] = (), preexec_fn: Callable[[], None] | None = None
              ) -> list[NodeProcess]:
        """Start one node per home (in parallel) and wait until all are listening;
        ``args`` are added to ``serve``'s command line."""
        procs = []
        for home in homes:
            p = NodeProcess(home, {**self.env, **(env or {})}, args=args,
                            preexec_fn=preexec_fn)
            self.started.append(p)
            procs.append(p)
        for p in procs:
            p.wait_ready()
        return procs

    def start_one(self, home: Path, env: dict[str, str] | None = None,
                  args: Sequence[str] = (), preexec_fn: Callable[[], None] | None = None
                  ) -> NodeProcess:
        return self.start(home, env=env, args=args, preexec_fn=preexec_fn)[0]

    def stop_all(self) -> None:
        """SIGTERM every running node at once, then wait for each to exit."""
        for p in self.started:
            p.terminate()
        errors = []
        for p in self.started:
            try:
                p.stop()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise AssertionError("\n".join(errors))

    def cleanup(self) -> None:
        """Stop everything still running; SIGKILL what does not stop."""
        for p in self.started:
            try:
                p.terminate()
            except OSError:
                pass
        for p in self.started:
            try:
                p.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
            p._reader.join(5)


@contextmanager
def node_group(env: dict[str, str] | None = None) -> Iterator[Nodes]:
    """Start ``disco serve`` processes inside; every one is stopped on the way out,
    whatever happened (use it in a fixture)."""
    n = Nodes(env)
    try:
        yield n
    finally:
        n.cleanup()


def proc_memory_kb(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of process ``pid`` from /proc/PID/status (VmRSS, VmHWM), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def set_peers(home: Path | Home, urls: Sequence[str | None]) -> None:
    """Write the peer list (as ``disco peer add`` does); a running node re-reads it."""
    h = home if isinstance(home, Home) else Home.open(Path(home))
    save_peers(h, [u for u in urls if u])


def federation(root: Path, names: Sequence[str]) -> Federation:
    """N LABs that joined one genesis (real home folders, built in-process)."""
    return make_federation(root, list(names))


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.2,
               what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Exceptions from the predicate count as "not yet" (a node may be busy).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except (OSError, ValueError, AssertionError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                 f"last: {last!r}")
        time.sleep(interval)


# -- raw HTTP -------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)

    def value(self) -> Any:
        """The answer decoded by its content type (msgpack or JSON)."""
        if self.content_type == MEDIA_TYPE:
            return canonical.decode(self.body)
        return self.json()

    @property
    def error(self) -> str:
        value = self.json()
        assert isinstance(value, dict) and set(value) == {"error"}, value
        return str(value["error"])


def post(url: str, path: str, body: bytes, headers: dict[str, str] | None = None,
         timeout: float = 60.0, context: ssl.SSLContext | None = None) -> Reply:
    """POST ``body`` as-is with ``headers``; any status comes back as a :class:`Reply`.
    ``context``: the TLS context of an https URL (e.g. one trusting a test CA)."""
    request = urllib.request.Request(url + path, data=body, method="POST",
                                     headers={"Content-Type": MEDIA_TYPE, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as r:
            return Reply(r.status, r.read(), r.headers.get_content_type())
    except urllib.error.HTTPError as e:
        with e:
            return Reply(e.code, e.read(), e.headers.get_content_type())


def signed_headers(signer: Signer, path: str, body: bytes, ts_ms: int | None = None,
                   method: str = "POST", *, to: bytes, lab: bytes | None = None
                   ) -> dict[str, str]:
    """Headers of a request signed by ``signer`` for the node of LAB ``to`` (as LAB
    ``lab``: default the signer's key)."""
    headers = sign_request(signer, method, path, body, now_ms() if ts_ms is None else ts_ms,
                           to, lab)
    headers["Content-Type"] = MEDIA_TYPE
    return headers


def lab_at(url: str) -> bytes:
    """The LAB id of the node at ``url`` (from its public status)."""
    with urllib.request.urlopen(url + "/v1/status", timeout=30) as r:
        return bytes.fromhex(json.loads(r.read())["lab_id"])


def signed_post(url: str, path: str, body: bytes, signer: Signer,
                ts_ms: int | None = None, to: bytes | None = None,
                lab: bytes | None = None) -> Reply:
    """POST signed by ``signer`` (a roster LAB or a stranger; as LAB ``lab``) for the
    node at ``url`` (or for the LAB ``to``)."""
    to = lab_at(url) if to is None else to
    return post(url, path, body, signed_headers(signer, path, body, ts_ms, to=to, lab=lab))


@asynccontextmanager
async def fake_peer(lab: bytes, routes: dict[str, Callable[[web.Request], Awaitable[
        web.StreamResponse]]]) -> AsyncIterator[str]:
    """An in-process HTTP peer answering as LAB ``lab`` (``GET /v1/status``) and with
    ``routes`` ({path: handler} of POSTs); yields its URL. For hostile-peer tests."""

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"lab_id": lab.hex()})

    app = web.Application()
    app.router.add_get("/v1/status", status)
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def stream(raws: Sequence[bytes]) -> bytes:
    """An entry stream (the body of /v1/sync/push)."""
    return b"".join(frame(r) for r in raws)


# -- entries --------------------------------------------------------------------

CONTRIBUTION = "contribution.recorded"


def now_us() -> int:
    return time.time_ns() // 1000


def when_unlocked(fn: Callable[[], T], attempts: int = 50) -> T:
    """Call ``fn``, again while SQLite says "database is locked".

    Known store issue: a write from this process while a node process writes to the
    same SQLite file can fail at once (``FeedStore.save_view`` reads, then upgrades to
    a write in one deferred transaction: SQLITE_BUSY_SNAPSHOT, no busy wait). Nothing
    is stored by the failed call, so trying again is safe.
    """
    for attempt in range(attempts):
        try:
            return fn()
        except OperationalError as e:
            if "locked" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")


def add_member(home: Home, handle: str = "ana") -> Entry:
    def once() -> Entry:
        with LabNode.open(home, home.signer()) as node:
            return node.author("member.added", {"handle": handle, "name": handle.title()},
                               now_us())

    return when_unlocked(once)


def author_contributions(home: Home, count: int, batch: int = 50, handle: str = "ana",
                         pause: float = 0.0) -> int:
    """Author ``count`` contributions of ``handle`` in batches of ``batch``; return count."""
    done = 0
    with LabNode.open(home, home.signer()) as node:
        while done < count:
            n = min(batch, count - done)
            body = {"member": handle, "stream": "care", "minutes": 1 + done % 600}
            when_unlocked(lambda n=n, body=body: node.author_many(
                [(CONTRIBUTION, body)] * n, now_us()))
            done += n
            if pause:
                time.sleep(pause)
    return done


def in_parallel(fns: Sequence[Callable[[], T]]) -> list[T]:
    with ThreadPoolExecutor(len(fns)) as pool:
        return [f.result() for f in [pool.submit(fn) for fn in fns]]


def feed_raws(home: Home, author: bytes) -> list[bytes]:
    with LabNode.open(home) as node:
        return [raw for _, raw in node.store.read_raw(author)]


def feed_seqs(home: Home) -> dict[str, list[int]]:
    """{lab hex: [seq, ...]} of every roster feed stored in ``home`` (read after stop)."""
    with LabNode.open(home) as node:
        return {lab.hex(): [e.seq for e in node.log(lab)] for lab in node.feeds()}


def sync_once(home: Home, url: str, rounds: int = 1) -> list[RoundResult]:
    """Run ``rounds`` sync rounds of ``home`` (in-process) with the node at ``url``."""

    async def run() -> list[RoundResult]:
        service = NodeService.open(home, home.signer())
        service.log = lambda line: None
        try:
            async with aiohttp.ClientSession() as session:
                return [await sync_round(service, session, url) for _ in range(rounds)]
        finally:
            service.close()

    return asyncio.run(run())


# -- raw connections (slow, partial or abandoned requests) ------------------------------


def raw_connect(url: str, timeout: float = 10.0) -> socket.socket:
    """A plain TCP connection to the node at ``url``."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def request_head(path: str, headers: dict[str, str], length: int | None,
                 method: str = "POST") -> bytes:
    """The head of an HTTP/1.1 request (``length`` None: chunked)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {length}" if length is not None
                 else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket, timeout: float = 20.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the answer on ``sock`` (body up to Content-Length);
    raises AssertionError when the connection closes before an answer."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines)}
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when the other side closes ``sock`` within ``timeout`` seconds (whatever it
    sent first is read and dropped)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


@contextmanager
def fake_peer_thread(lab: bytes, routes: dict[str, Callable[[web.Request], Awaitable[
        web.StreamResponse]]]) -> Iterator[str]:
    """:func:`fake_peer` served from a thread of its own, for tests that run
    subprocesses meanwhile; yields its URL."""
    url: list[str] = []
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        async with fake_peer(lab, routes) as u:
            url.append(u)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10), "the fake peer did not start"
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """Check a refused command: exit ``code``, one ``disco:`` line on stderr and no
    traceback; return that line."""
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("disco: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]
