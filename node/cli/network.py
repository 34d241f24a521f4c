"""Network commands: ``serve``, ``peer add|list|remove``, ``sync`` and ``status``."""

from __future__ import annotations

import asyncio
import sys
from typing import Any
from urllib.parse import urlparse

import aiohttp
import click

from node.cli.common import emit, examples, home_path, json_option, load_signer, warn_unchecked
from node.client import PeerError, sync_round
from node.home import Home
from node.limits import Limits
from node.service import NodeService, load_peers, peer_status, save_peers, status_of


def _service(ctx: click.Context) -> NodeService:
    home = Home.open(home_path(ctx))
    service = NodeService.open(home, load_signer(home))
    service.log = lambda line: click.echo(line, err=True)
    return service


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise click.BadParameter(f"{text!r}: want HOST:PORT, e.g. 127.0.0.1:8750",
                                 param_hint="--listen")
    return host, int(port)


_DEFAULT = Limits()


@click.command()
@click.option("--listen", default="127.0.0.1:8750", show_default=True,
              help="HOST:PORT to listen on (port 0 picks a free one).")
@click.option("--max-connections", type=click.IntRange(1), show_default=True,
              default=_DEFAULT.max_connections,
              help="Open connections at most (kept below the descriptor limit); at the "
                   "cap the oldest idle connection is closed.")
@click.option("--max-body", type=click.IntRange(1024), show_default=True,
              default=_DEFAULT.max_body, help="Largest request body in bytes (413).")
@click.option("--body-budget", type=click.IntRange(1024), show_default=True,
              default=_DEFAULT.body_budget,
              help="Bytes of request bodies held at once, all peers together (503).")
@click.option("--idle-timeout", type=click.FloatRange(0.1), show_default=True,
              default=_DEFAULT.idle_timeout,
              help="Seconds a connection may take to send a request head, or stay idle.")
@click.option("--body-timeout", type=click.FloatRange(0.1), show_default=True,
              default=_DEFAULT.body_timeout,
              help="Seconds to receive a whole request body (408).")
@click.pass_context
@examples("  disco --home ./farm serve --listen 0.0.0.0:8750\n"
          "  disco serve --max-connections 256 --idle-timeout 10")
def serve(ctx: click.Context, listen: str, max_connections: int, max_body: int,
          body_budget: int, idle_timeout: float, body_timeout: float) -> None:
    """Run the node: the sync API, the status API and gossip with peers.

    The limits protect the node from hostile peers and strangers (docs/sync.md,
    "Under attack")."""
    from node.scheduler import serve as run

    host, port = _listen(listen)
    if body_budget < max_body:
        raise click.BadParameter("must be at least --max-body", param_hint="--body-budget")
    limits = Limits(max_body=max_body, body_budget=body_budget, body_timeout=body_timeout,
                    idle_timeout=idle_timeout, max_connections=max_connections)
    service = _service(ctx)
    warn_unchecked(service.home)
    service.log = lambda line: print(line, flush=True)
    try:
        asyncio.run(run(service, host, port, limits))
    except OSError as e:
        raise click.ClickException(f"cannot listen on {listen}: {e.strerror}") from None
    finally:
        service.close()


@click.group()
def peer() -> None:
    """The peers this node syncs with."""


def _check_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise click.BadParameter(f"{url!r}: want http(s)://HOST:PORT", param_hint="URL")
    return url.rstrip("/")


@peer.command("add")
@click.argument("url")
@json_option
@click.pass_context
@examples("  disco peer add http://fablab.example.org:8750")
def peer_add(ctx: click.Context, url: str, as_json: bool) -> None:
    """Add a peer by URL (a running node notices within a second)."""
    home = Home.open(home_path(ctx))
    peers = load_peers(home)
    url = _check_url(url)
    if url not in peers:
        peers.append(url)
        save_peers(home, peers)
    _print_peers(home, as_json)


@peer.command("remove")
@click.argument("url")
@json_option
@click.pass_context
@examples("  disco peer remove http://fablab.example.org:8750")
def peer_remove(ctx: click.Context, url: str, as_json: bool) -> None:
    """Remove a peer."""
    home = Home.open(home_path(ctx))
    peers = load_peers(home)
    if url.rstrip("/") not in peers:
        raise click.ClickException(f"{url} is not a peer of this node")
    save_peers(home, [p for p in peers if p != url.rstrip("/")])
    _print_peers(home, as_json)


@peer.command("list")
@json_option
@click.pass_context
@examples("  disco peer list --json")
def peer_list(ctx: click.Context, as_json: bool) -> None:
    """List peers with their last contact."""
    _print_peers(Home.open(home_path(ctx)), as_json)


def _print_peers(home: Home, as_json: bool) -> None:
    peers = peer_status(home)
    if as_json:
        emit({"peers": peers})
        return
    for p in peers:
        click.echo(f"{p['url']}  failures={p.get('failures', 0)}  "
                   f"last_contact={p.get('last_contact')}")


@click.command()
@click.argument("urls", nargs=-1)
@json_option
@click.pass_context
@examples("  disco sync                       # every configured peer, once\n"
          "  disco sync http://10.0.0.5:8750")
def sync(ctx: click.Context, urls: tuple[str, ...], as_json: bool) -> None:
    """One sync round now with the given peers (default: all configured peers)."""
    service = _service(ctx)
    targets = [_check_url(u) for u in urls] or load_peers(service.home)
    if not targets:
        service.close()
        raise click.ClickException("no peers: give a URL or run 'disco peer add URL'")

    async def run() -> list[dict[str, Any]]:
        out = []
        async with aiohttp.ClientSession() as session:
            for url in targets:
                try:
                    r = await sync_round(service, session, url)
                    out.append({"url": url, "ok": True, "pulled": r.pulled,
                                "pushed": r.pushed, "forks": r.forks, "in_sync": r.in_sync,
                                "requests": r.requests})
                except PeerError as e:
                    out.append({"url": url, "ok": False, "error": str(e)})
        await service.write(service.node.ledger)
        return out

    try:
        results = asyncio.run(run())
    finally:
        service.close()
    if as_json:
        emit({"peers": results})
    else:
        for r in results:
            click.echo(f"{r['url']}: pulled {r['pulled']}, pushed {r['pushed']}"
                       if r["ok"] else f"{r['url']}: failed: {r['error']}")
    if not all(r["ok"] for r in results):
        sys.exit(1)


@click.command()
@json_option
@click.pass_context
@examples("  disco status --json")
def status(ctx: click.Context, as_json: bool) -> None:
    """Identity, peers, frontier, fork proofs and the state digest."""
    from node.cli.common import open_node

    with open_node(ctx) as node:
        doc = status_of(node, peer_status(node.home))
        genesis = node.require_genesis()
    doc["verified"] = warn_unchecked(node.home)
    if as_json:
        emit(doc)
        return
    click.echo(f"LAB        {doc['name']} ({doc['lab_id']})")
    click.echo(f"federation {doc['federation_id']}")
    click.echo(f"digest     {doc['state_digest']}")
    for lab, head in doc["frontier"].items():
        click.echo(f"feed       {genesis.lab_name(bytes.fromhex(lab)):<16} seq {head['seq']}")
    for p in doc["peers"]:
        click.echo(f"peer       {p['url']} last contact {p.get('last_contact')} "
                   f"failures {p.get('failures', 0)}")
    for f in doc["forks"]:
        click.echo(f"FORK       {f['author']} at seq {f['seq']}: feed frozen")
