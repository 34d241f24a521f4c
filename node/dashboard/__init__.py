"""A LAB's dashboard: the federation's books in a browser, served by ``disco serve``.

A separate aiohttp application on its own address (127.0.0.1 by default), apart
from the sync API the peers call: pages rendered on the server with Jinja2
(:mod:`node.dashboard.pages`), writes through the node's own methods
(:mod:`node.dashboard.actions`), access by a one-time sign-in link, a session
cookie and CSRF tokens (:mod:`node.dashboard.access`). The charts are drawn by
Apache ECharts, shipped in ``static/vendor`` (no CDN: a node may run offline).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from node.dashboard import actions, pages
from node.dashboard.access import ACCESS, Access, guard
from node.dashboard.data import PageCache
from node.errors import NodeError
from node.service import NodeService

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"


def make_app(service: NodeService, access: Access | None = None) -> web.Application:
    """The dashboard's aiohttp application for ``service``'s LAB."""
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[ACCESS] = access or Access()
    app[pages.SERVICE] = service
    app[pages.CACHE] = PageCache()
    app[pages.AUDIT] = {"running": False, "report": None, "at": None}
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                         autoescape=jinja2.select_autoescape(["html"]))
    pages.add_routes(app)
    actions.add_routes(app)
    app.router.add_static("/static/", STATIC)
    return app


class Dashboard:
    """The dashboard's site: :meth:`start` listens, :meth:`link` is the one-time
    sign-in URL, :meth:`stop` closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.access = Access()
        self.url: str | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, service: NodeService) -> str:
        """Listen; return the base URL. Raises :class:`NodeError` when the address
        cannot be used."""
        runner = web.AppRunner(make_app(service, self.access), handle_signals=False,
                               access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise NodeError(f"cannot open the dashboard on {self.host}:{self.port}: "
                            f"{e.strerror}") from None
        assert runner.server is not None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.access.cookie = f"disco_dashboard_{port}"  # cookies are per host, not port
        self._runner = runner
        self.url = f"http://{self.host}:{port}"
        return self.url

    def link(self) -> str:
        """The sign-in link for the current token."""
        token = self.access.token or self.access.new_link()
        return f"{self.url}/?token={token}"

    def new_link(self) -> str:
        """A fresh sign-in link (the unused one before it stops working)."""
        self.access.new_link()
        return self.link()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


__all__ = ["Dashboard", "make_app"]
