"""Who may use the dashboard: a one-time sign-in link, sessions and CSRF tokens.

The dashboard is for the LAB's operator and members on the node's own machine (or
behind their own tunnel), never for the federation's peers: it listens on its own
address, apart from the sync API, and every request needs a session.

- ``disco serve`` prints a link ``/?token=T`` (as Jupyter does). The first request
  that shows ``T`` gets a session cookie (HttpOnly, SameSite=Strict) and ``T`` is
  spent; a new link is made by :meth:`Access.new_link` (SIGUSR1 to the node).
- Without a session a page redirects (303) to ``/signin``, which shows no data; a
  JSON endpoint or a POST gets 401.
- Every POST carries the session's CSRF token (form field ``csrf`` or header
  ``X-CSRF-Token``): 403 without it. A POST whose ``Origin`` is another site is
  refused too.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_SESSIONS = 64
"""Sessions held at once; signing in past it ends the oldest."""
SESSION_HOURS = 12.0
"""A session ends this many hours after sign-in."""
OPEN_PATHS = ("/signin", "/static/")
"""What answers without a session: the sign-in page and the stylesheet and scripts,
none of which holds any of the ledger's data."""
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; "
                                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                "connect-src 'self'; frame-ancestors 'none'; "
                                "form-action 'self'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""On every answer. ``style-src 'unsafe-inline'``: the chart library positions its
tooltips with style attributes; no script runs inline."""


@dataclass
class Session:
    """A signed-in browser: its CSRF token and a message for the next page."""

    csrf: str
    expires: float
    flash: str | None = None


@dataclass
class Access:
    """The sign-in token and the sessions of one dashboard (in memory: a restart
    signs everyone out and prints a new link)."""

    cookie: str = "disco_dashboard"
    token: str | None = field(default_factory=lambda: secrets.token_urlsafe(32))
    sessions: OrderedDict[str, Session] = field(default_factory=OrderedDict)

    def new_link(self) -> str:
        """A new one-time sign-in token (the one before it no longer works)."""
        self.token = secrets.token_urlsafe(32)
        return self.token

    def sign_in(self, token: str) -> tuple[str, Session] | None:
        """A new session for ``token`` when it is the current one (it is then
        spent); None otherwise."""
        current = self.token
        if current is None or not hmac.compare_digest(token.encode(), current.encode()):
            return None
        self.token = None
        sid = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), time.time() + SESSION_HOURS * 3600)
        self.sessions[sid] = session
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return sid, session

    def session(self, request: web.Request) -> Session | None:
        """The request's session, if its cookie names a live one."""
        sid = request.cookies.get(self.cookie)
        if not sid:
            return None
        session = self.sessions.get(sid)
        if session is None:
            return None
        if session.expires < time.time():
            del self.sessions[sid]
            return None
        return session

    def sign_out(self, request: web.Request) -> None:
        self.sessions.pop(request.cookies.get(self.cookie, ""), None)


ACCESS: web.AppKey[Access] = web.AppKey("access", Access)
SESSION: web.RequestKey[Session] = web.RequestKey("session", Session)


def unauthorized(reason: str, status: int = 401) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.scheme}://{request.host}"


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let a request through only with a session (and, for a POST, its CSRF token);
    exchange a sign-in token for a session; add the security headers."""
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as e:
        e.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    access = request.app[ACCESS]
    path = request.path
    if path == "/signin" or path.startswith("/static/"):
        return await handler(request)
    token = request.query.get("token")
    if token is not None and request.method == "GET":
        signed = access.sign_in(token)
        if signed is None:
            raise web.HTTPSeeOther("/signin?spent=1")
        sid, _ = signed
        response = web.HTTPSeeOther(path)
        response.set_cookie(access.cookie, sid, httponly=True, samesite="Strict",
                            path="/", max_age=int(SESSION_HOURS * 3600))
        raise response
    session = access.session(request)
    if session is None:
        if request.method == "GET" and not path.startswith("/api/"):
            raise web.HTTPSeeOther("/signin")
        return unauthorized("sign in first: open the link 'disco serve' printed")
    if request.method not in ("GET", "HEAD"):
        if not _same_origin(request):
            return unauthorized("refused: a request from another site", 403)
        sent = request.headers.get("X-CSRF-Token")
        if sent is None and request.content_type in ("application/x-www-form-urlencoded",
                                                     "multipart/form-data"):
            sent = str((await request.post()).get("csrf", ""))
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            return unauthorized("refused: the form's CSRF token is missing or wrong; "
                                "reload the page", 403)
    request[SESSION] = session
    return await handler(request)


def context(request: web.Request) -> dict[str, Any]:
    """What every template sees of the session: the CSRF token and a message."""
    session = request.get(SESSION)
    if session is None:
        return {"csrf": "", "flash": None}
    flash, session.flash = session.flash, None
    return {"csrf": session.csrf, "flash": flash}
