"""The dashboard's pages: each an HTML page and its JSON twin from one document.

``GET /NAME`` renders ``NAME.html`` from the document :mod:`node.dashboard.data`
builds; ``GET /api/NAME`` answers the same document as JSON (the live update and
the bench read it). Bad query parameters get a 400 with the reason, on the page or
in the JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from node.cli.common import now_us
from node.dashboard import data
from node.dashboard.access import ACCESS, context
from node.errors import NodeError
from node.lab import LabNode
from node.service import NodeService, peer_status
from node.service import _with_lag as with_lag

SERVICE: web.AppKey[NodeService] = web.AppKey("dashboard_service", NodeService)
CACHE: web.AppKey[data.PageCache] = web.AppKey("dashboard_cache", data.PageCache)
AUDIT: web.AppKey[dict[str, Any]] = web.AppKey("dashboard_audit")
"""The last audit's report (``report``, ``at``) and whether one is running."""


class BadQuery(NodeError):
    """A query parameter a page cannot use (400)."""


def _unit(node: LabNode, value: str | None) -> str:
    units = node.require_genesis().units
    if value in (None, ""):
        return next(iter(units))
    if value not in units:
        raise BadQuery(f"unit {value!r} is not a unit of this federation "
                       f"({', '.join(units)})")
    return value


def _period(value: str | None, default: str | None = None) -> str | None:
    try:
        return data.check_period(value) if value is not None else default
    except ValueError as e:
        raise BadQuery(str(e)) from None


@dataclass(frozen=True)
class Page:
    """One page: its title, whether its document is cached per ledger position, and
    how the document is built from the query."""

    name: str
    title: str
    build: Callable[[NodeService, dict[str, str]], tuple[tuple[Any, ...],
                                                         Callable[[], dict[str, Any]]]]
    cached: bool = True
    fresh: Callable[[NodeService], dict[str, Any]] | None = None
    """What the page adds uncached (the peers' agreement changes without the ledger)."""


def _overview(s: NodeService, q: dict[str, str]) -> tuple[tuple[Any, ...],
                                                          Callable[[], dict[str, Any]]]:
    node = s.node
    return (), lambda: data.overview(node, node.ledger())


def _flows(s: NodeService, q: dict[str, str]) -> tuple[tuple[Any, ...],
                                                       Callable[[], dict[str, Any]]]:
    node = s.node
    period, unit = _period(q.get("period")), _unit(node, q.get("unit"))
    return (period, unit), lambda: data.flows(node, node.ledger(), period, unit)


def _transfers(s: NodeService, q: dict[str, str]) -> tuple[tuple[Any, ...],
                                                           Callable[[], dict[str, Any]]]:
    node = s.node
    return (), lambda: data.transfers(node, node.ledger())


def _contributions(s: NodeService, q: dict[str, str]
                   ) -> tuple[tuple[Any, ...], Callable[[], dict[str, Any]]]:
    node = s.node
    member = q.get("member") or None
    period = _period(q.get("period"))
    return (member, period), lambda: data.contributions(node, node.ledger(), member, period)


def _payout(s: NodeService, q: dict[str, str]) -> tuple[tuple[Any, ...],
                                                        Callable[[], dict[str, Any]]]:
    node = s.node
    period = _period(q.get("period"), data.current_month()) or data.current_month()
    unit = _unit(node, q.get("unit"))
    return (period, unit), lambda: data.payout(node, node.ledger(), period, unit)


def _peers(s: NodeService, q: dict[str, str]) -> tuple[tuple[Any, ...],
                                                       Callable[[], dict[str, Any]]]:
    return (), lambda: data.sync_state(s)


def _federation(s: NodeService, q: dict[str, str]
                ) -> tuple[tuple[Any, ...], Callable[[], dict[str, Any]]]:
    node = s.node
    return (), lambda: data.federation(node, node.ledger(), now_us())


def _audit(s: NodeService, q: dict[str, str]) -> tuple[tuple[Any, ...],
                                                       Callable[[], dict[str, Any]]]:
    node = s.node

    def members() -> dict[str, Any]:
        state = node.ledger().labs.get(node.lab_id)
        return {"members": sorted(state.members) if state else []}

    return (), members


def status_peers(s: NodeService) -> list[dict[str, Any]]:
    """The peers with what each side lacks (as ``disco status`` shows them)."""
    node = s.node
    held = {a: seq for a, (seq, _) in node.frontier().items()}
    return [with_lag(p, node.roster(), held) for p in peer_status(s.home)]


PAGES = {p.name: p for p in (
    Page("overview", "Overview", _overview,
         fresh=lambda s: {**data.digest_state(s.node),
                          "sync": {"agreement": data.agreement(status_peers(s))}}),
    Page("flows", "Flows", _flows),
    Page("transfers", "Transfers", _transfers),
    Page("contributions", "Contributions", _contributions),
    Page("payout", "Payout", _payout),
    Page("federation", "Federation", _federation, cached=False),
    Page("peers", "Peers & sync", _peers, cached=False),
    Page("audit", "Audit", _audit),
)}


async def document(request: web.Request, name: str) -> dict[str, Any]:
    """The page's document for the request's query (built in the writer thread, so
    the ledger is read between catch-ups; cached per ledger position). Raises
    :class:`BadQuery`."""
    service = request.app[SERVICE]
    cache = request.app[CACHE]
    page = PAGES[name]
    query = dict(request.query)

    def build() -> dict[str, Any]:
        node = service.node
        node.ledger()  # what other processes (the CLI, a sync) stored meanwhile
        key, make = page.build(service, query)
        doc = (cache.get(node.position, (name, *key), make) if page.cached else make())
        if page.fresh is not None:
            doc = {**doc, **page.fresh(service)}
        return {**doc, "page": name, "position": node.position}

    return await service.write(build)


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON: {type(value).__name__}")


def json_answer(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status,
                             dumps=lambda v: json.dumps(v, default=jsonable))


async def render(request: web.Request, name: str, extra: dict[str, Any] | None = None,
                 status: int = 200) -> web.Response:
    """Page ``name`` as HTML: its document, the session's CSRF token and message,
    and ``extra`` (an error, the form's values)."""
    service = request.app[SERVICE]
    try:
        doc = await document(request, name)
    except BadQuery as e:
        doc, status = {"page": name, "position": None}, 400
        extra = {**(extra or {}), "error": str(e)}
    genesis = service.node.require_genesis()
    ctx = {"doc": doc, "page": PAGES[name], "pages": PAGES.values(),
           "lab_name": await service.write(own_name, service.node), "federation": genesis.name,
           "query": dict(request.query), "audit": request.app[AUDIT],
           **context(request), **(extra or {})}
    return aiohttp_jinja2.render_template(f"{name}.html", request, ctx, status=status)


def own_name(node: LabNode) -> str:
    """This LAB's name in the roster in force (run in the writer thread)."""
    return node.ledger().lab_name(node.lab_id)


def page_handler(name: str) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        return await render(request, name)
    return handler


def api_handler(name: str) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        try:
            doc = await document(request, name)
        except BadQuery as e:
            return json_answer({"error": str(e)}, 400)
        if name == "audit":
            audit: dict[str, Any] = request.app[AUDIT]
            doc = {**doc, **audit}
        return json_answer(doc)
    return handler


async def live(request: web.Request) -> web.Response:
    """Where the ledger is: the page polls this and refreshes its live parts when
    the position moves (new entries, here or from peers)."""
    service = request.app[SERVICE]

    def look() -> dict[str, Any]:
        service.node.ledger()
        return {"position": service.node.position}

    return json_answer(await service.write(look))


async def signin(request: web.Request) -> web.Response:
    """The page a browser without a session lands on: how to sign in, no data."""
    access = request.app[ACCESS]
    signed_in = access.session(request) is not None
    ctx: dict[str, Any] = {"spent": "spent" in request.query, "signed_in": signed_in, "page": None,
           "pages": [], "lab_name": None, "federation": None, "csrf": "", "flash": None}
    status = 200 if signed_in else 401
    return aiohttp_jinja2.render_template("signin.html", request, ctx, status=status)


def add_routes(app: web.Application) -> None:
    for name in PAGES:
        app.router.add_get("/" if name == "overview" else f"/{name}", page_handler(name))
        app.router.add_get(f"/api/{name}", api_handler(name))
    app.router.add_get("/api/live", live)
    app.router.add_get("/signin", signin)
