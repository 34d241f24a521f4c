"""``disco serve``: run the HTTP API and the gossip schedule until SIGTERM.

The scheduler carries out what :class:`federation.gossip.Gossip` decides: it reloads
the peer list when it changes, nudges every peer when the LAB's own feed grows (so
new entries reach peers within a second or two), starts the rounds that are due and
reports how each ended. It sleeps until the schedule's next wakeup, a nudge
(:meth:`NodeService.nudge`: a push or fork proof came in) or the next look for what
other processes changed (``disco record``, ``disco peer add``), every
:data:`WATCH` seconds. On SIGTERM or SIGINT it stops taking requests, lets the write
in progress finish, and exits.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from node.client import PeerError, sync_round
from node.limits import BACKLOG, ConnectionCap, Limits, connection_cap
from node.server import BUSY, make_app
from node.service import NodeService, load_peers

if TYPE_CHECKING:
    from node.dashboard import Dashboard

WATCH = 1.0
"""Seconds between looks at the peer list and the own feed's head, which other
processes (the command line) may change."""


async def run_round(service: NodeService, session: aiohttp.ClientSession, url: str) -> None:
    """One round with ``url``, reported to the schedule; never raises (a local failure,
    e.g. the store busy, backs the peer off like a failing peer, never drops it)."""
    loop = asyncio.get_running_loop()
    try:
        result = await sync_round(service, session, url)
    except PeerError as e:
        service.gossip.failed(url, loop.time(), str(e))
        service.log(f"sync with {url} failed: {e}")
    except Exception as e:
        service.gossip.failed(url, loop.time(), f"{type(e).__name__}: {e}")
        service.log(f"sync with {url} failed here: {type(e).__name__}: {e}")
    else:
        service.gossip.succeeded(url, loop.time(), wall=time.time())
        service.peer_frontiers[url] = result.remote_frontier
        if result.pulled or result.forks:
            service.nudge()  # relay what we learned
            try:
                await service.write(service.node.ledger)
            except Exception as e:
                service.log(f"ledger catch-up failed: {type(e).__name__}: {e}")
    try:
        service.save_peer_state()
    except OSError as e:  # e.g. out of descriptors: the next round writes it again
        service.log(f"cannot save the peer state: {e}")


CATCH_UP_LOG_S = 5.0
"""While ``serve`` catches the ledger up at start, a log line at most this often."""


def catch_up_log(service: NodeService, every_s: float = CATCH_UP_LOG_S
                 ) -> Callable[[int], None]:
    """A ``progress`` callback for the ledger's catch-up that logs "catching up: N of
    M entries" at its first report, then every ``every_s`` seconds at most (M: the
    store's notifications when the catch-up starts)."""
    total = service.node.store.max_notification_id()
    next_at = time.monotonic()  # the first report at once

    def progress(done: int) -> None:
        nonlocal next_at
        now = time.monotonic()
        if now >= next_at:
            next_at = now + every_s
            service.log(f"catching up: {done} of {total} entries")

    return progress


async def schedule(service: NodeService, stop: asyncio.Event) -> None:
    """Run the gossip rounds until ``stop``; a failing look (out of descriptors, the
    store busy) is logged and retried, never the end of gossip."""
    loop = asyncio.get_running_loop()
    running: dict[str, asyncio.Task[None]] = {}
    watch = {"peers_mtime": -1.0, "own_head": -1, "next_look": 0.0}
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            service.wake.clear()
            try:
                if loop.time() >= watch["next_look"]:
                    watch["next_look"] = loop.time() + WATCH
                    await _look(service, watch)
                for url in service.gossip.due(loop.time()):
                    service.gossip.start(url)  # not due again until it reports back
                    running[url] = asyncio.create_task(run_round(service, session, url))
            except Exception as e:
                service.log(f"gossip: {type(e).__name__}: {e}; retrying")
            running = {u: t for u, t in running.items() if not t.done()}
            now = loop.time()
            sleep = min(service.gossip.next_wakeup(now), max(0.0, watch["next_look"] - now))
            waiters = [asyncio.ensure_future(stop.wait()),
                       asyncio.ensure_future(service.wake.wait())]
            await asyncio.wait(waiters, timeout=max(sleep, 0.01),
                               return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)


async def _look(service: NodeService, watch: dict[str, float]) -> None:
    """What other processes changed: the peer list, the LAB's own feed (the ledger
    then catches up)."""
    try:
        mtime = (service.home.path / "peers.json").stat().st_mtime
    except OSError:
        mtime = 0.0
    if mtime != watch["peers_mtime"]:
        watch["peers_mtime"] = mtime
        service.gossip.set_peers(load_peers(service.home))
    try:
        key_mtime = service.home.key_path.stat().st_mtime
    except OSError:
        key_mtime = 0.0
    if key_mtime != watch.setdefault("key_mtime", key_mtime):
        watch["key_mtime"] = key_mtime
        service.log(service.reload_key())
    head = (await service.read(service.node.store.head, service.node.lab_id))[0]
    if head != watch["own_head"]:
        if watch["own_head"] >= 0:
            # Another process wrote to this LAB's feed (a vote, a key rotation): the
            # ledger that requests are judged by (the roster, the keys) follows it.
            await service.write(service.node.ledger)
            service.nudge()
        watch["own_head"] = head


async def serve(service: NodeService, host: str, port: int, limits: Limits | None = None,
                dashboard: Dashboard | None = None) -> None:
    """Serve until SIGTERM/SIGINT with ``limits``; prints the URL when ready, and the
    ``dashboard``'s sign-in link if there is one (a new link on SIGUSR1)."""
    limits = limits or Limits()
    app = make_app(service, limits)
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           keepalive_timeout=limits.idle_timeout)
    await runner.setup()
    assert runner.server is not None
    cap = connection_cap(limits.max_connections)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(ConnectionCap(runner.server, cap, app[BUSY]),
                                        host, port, backlog=BACKLOG, reuse_address=True)
    bound = listener.sockets[0].getsockname()
    service.url = f"http://{host}:{bound[1]}"
    if dashboard is not None:
        await dashboard.start(service)
        service.dashboard_url = dashboard.link()
    ledger = await service.write(service.node.ledger, catch_up_log(service))
    # From the line that says it listens, a signal stops the node in order (a
    # supervisor or a test may send one as soon as it reads that line).
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if dashboard is not None:
        loop.add_signal_handler(signal.SIGUSR1,
                                lambda: service.log(f"dashboard: {dashboard.new_link()}"))
    # One name per LAB: the roster's, even when 'disco init --name' gave another.
    service.log(f"disco node {ledger.lab_name(service.node.lab_id)!r} listening on "
                f"{service.url}")
    if dashboard is not None:
        service.log(f"dashboard: {service.dashboard_url}")
    service.log(f"limits: {cap} connections, bodies up to {limits.max_body} bytes "
                f"({limits.body_budget} in flight), idle timeout {limits.idle_timeout:g} s, "
                f"body timeout {limits.body_timeout:g} s")
    scheduler = asyncio.create_task(schedule(service, stop))
    await stop.wait()
    service.log("stopping: finishing writes in progress")
    listener.close()
    await scheduler
    if dashboard is not None:
        await dashboard.stop()
    await runner.cleanup()
