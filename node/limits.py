"""What a node lets a peer or a stranger cost it: bytes, connections, time.

- :class:`Limits`: the numbers (``disco serve`` options set them).
- :class:`BodyBudget`: bytes of request bodies held at once, across all requests;
  a request that would pass it gets 503 with Retry-After before its body is read.
- :class:`ConnectionCap`: the listening socket's protocol factory around aiohttp's
  server. At the cap, the oldest connection with no request in progress is closed
  to make room (an idle or slowloris connection); when every connection is busy,
  the newcomer gets a 503 and is closed, so descriptors never run out.
- :func:`connection_cap`: the cap actually used, below the descriptor limit.

The header and idle timeout is aiohttp's keep-alive timeout, which also runs from
the moment a connection opens: a connection that has not sent a whole request
head within it (or sits idle after a response) is closed.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

MiB = 1024 * 1024
RESERVED_FDS = 128
"""Descriptors kept for the store, peers, the read-ahead pipe and the log."""
BACKLOG = 32
"""Listen backlog. asyncio accepts up to this many sockets at each wakeup before the
cap sees them, and a turned-away socket closes a loop iteration later: three
backlogs are kept apart from the cap for them (measured: connections + ~2 backlogs
at the peak of a flood)."""


@dataclass(frozen=True)
class Limits:
    """The limits of one serving node (defaults are what ``disco serve`` uses)."""

    max_body: int = 8 * MiB
    """Largest request body accepted (413 beyond)."""
    body_budget: int = 64 * MiB
    """Request bodies held at once, all requests together (503 beyond)."""
    body_timeout: float = 60.0
    """Seconds to receive a whole request body once its head is in (408 beyond)."""
    idle_timeout: float = 15.0
    """Seconds a connection may take to send a request head, or sit idle."""
    max_connections: int = 512
    """Open connections at most (lowered to fit the descriptor limit)."""


class BodyBudget:
    """Bytes reserved for request bodies in flight (event-loop thread only)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def reserve(self, size: int) -> bool:
        """Reserve ``size`` bytes; False (nothing reserved) when they do not fit."""
        if self.used + size > self.total:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used -= size


def connection_cap(wanted: int) -> int:
    """The connection cap to use: ``wanted``, lowered below the descriptor limit.

    Raises the soft descriptor limit towards the hard one first (as servers do),
    then keeps :data:`RESERVED_FDS` for everything that is not a connection and
    three :data:`BACKLOG` for sockets accepted but not yet turned away.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < min(target, 65536):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, 65536), hard))
            soft = min(target, 65536)
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_FDS - 3 * BACKLOG))


_BUSY_BODY = b'{"error": "too many connections; try later"}\n'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Retry-After: 5\r\nConnection: close\r\n"
         b"Content-Length: %d\r\n\r\n" % len(_BUSY_BODY) + _BUSY_BODY)


class _Refuse(asyncio.Protocol):
    """Answers 503 at once and closes: the cap is reached and nothing is idle."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY)
        transport.close()


class ConnectionCap:
    """Protocol factory: aiohttp's handlers, at most ``cap`` of them at once.

    ``busy`` holds the handlers with a request in progress (the server's middleware
    keeps it); every other connection is idle or still sending a request head.
    """

    def __init__(self, server: web.Server, cap: int, busy: set[RequestHandler]
                 ) -> None:
        self.server = server
        self.cap = cap
        self.busy = busy
        self.evicted = 0
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        handlers = [h for h in self.server.connections if h.transport is not None]
        if len(handlers) >= self.cap:
            idle = next((h for h in handlers if h not in self.busy), None)
            if idle is None:
                self.refused += 1
                return _Refuse()
            self.evicted += 1
            idle.force_close()
        return self.server()
