"""Network commands: ``serve``, ``peer add|list|remove``, ``sync`` and ``status``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import aiohttp
import click

from node.cli.common import (
    Failure,
    ago,
    emit,
    examples,
    home_path,
    json_option,
    load_signer,
    progress_bar,
    shows_progress,
    warn_unchecked,
)
from node.client import PeerError, SyncOutcome, sync_until_in_sync
from node.home import Home
from node.limits import Limits
from node.service import NodeService, load_peers, peer_status, save_peers, status_of


def _service(ctx: click.Context) -> NodeService:
    home = Home.open(home_path(ctx))
    service = NodeService.open(home, load_signer(home))
    service.log = lambda line: click.echo(line, err=True)
    return service


def _listen(text: str, option: str = "--listen") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise click.BadParameter(f"{text!r}: want HOST:PORT, e.g. 127.0.0.1:8750",
                                 param_hint=option)
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
@click.option("--dashboard", "dashboard_at", default="127.0.0.1:0", show_default=True,
              metavar="HOST:PORT",
              help="Where the LAB's dashboard listens (port 0 picks a free one); "
                   "keep it on 127.0.0.1 unless a tunnel or proxy of yours guards it.")
@click.option("--no-dashboard", is_flag=True, help="Serve no dashboard.")
@json_option
@click.pass_context
@examples("  disco --home ./farm serve --listen 0.0.0.0:8750\n"
          "  disco serve --max-connections 256 --idle-timeout 10\n"
          "  disco serve --dashboard 127.0.0.1:8751   # then open the printed link\n"
          "  disco serve --listen 127.0.0.1:0 --json   # one line: {\"url\": ..., \"lab_id\": ...}")
def serve(ctx: click.Context, listen: str, max_connections: int, max_body: int,
          body_budget: int, idle_timeout: float, body_timeout: float, dashboard_at: str,
          no_dashboard: bool, as_json: bool) -> None:
    """Run the node: the sync API, the status API, gossip with peers and the dashboard.

    One node per home: a second 'disco serve' on the same folder is refused (exit 1).
    At start it logs how far the ledger's catch-up has come. The limits protect the
    node from hostile peers and strangers (docs/sync.md, "Under attack").

    The dashboard (a web page of the LAB's books: balances, flows, transfers,
    contributions, payout, federation, peers, audit) listens on its own address, apart
    from the sync API. 'serve' prints 'dashboard: URL': the link signs one browser in,
    once (kill -USR1 the node for a new one)."""
    from node.scheduler import serve as run

    host, port = _listen(listen)
    dashboard = None
    if not no_dashboard:
        from node.dashboard import Dashboard

        dashboard = Dashboard(*_listen(dashboard_at, "--dashboard"))
    if body_budget < max_body:
        raise click.BadParameter("must be at least --max-body", param_hint="--body-budget")
    limits = Limits(max_body=max_body, body_budget=body_budget, body_timeout=body_timeout,
                    idle_timeout=idle_timeout, max_connections=max_connections)
    home = Home.open(home_path(ctx))
    with home.serve_lock():  # one node per home: a second serve stops here
        service = _service(ctx)
        warn_unchecked(service.home)
        service.log = _serve_log(service, as_json)
        try:
            asyncio.run(run(service, host, port, limits, dashboard))
        except OSError as e:
            raise Failure(f"cannot listen on {listen}: {e.strerror}") from None
        finally:
            service.close()


def _serve_log(service: NodeService, as_json: bool) -> Callable[[str], None]:
    """The node's log lines on stdout; with ``--json`` the line that says it is
    listening (which names the LAB by the roster: :func:`node.scheduler.serve`)
    becomes one JSON line ``{"url", "lab_id"}`` and the rest go to stderr."""

    def log(line: str) -> None:
        ready = line.startswith("disco node ") and " listening on " in line
        if ready and as_json:
            print(json.dumps({"url": service.url, "lab_id": service.node.lab_id.hex(),
                              "dashboard": service.dashboard_url}), flush=True)
        else:
            print(line, file=sys.stderr if as_json else sys.stdout, flush=True)
    return log


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
        raise Failure(f"{url} is not a peer of this node")
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
        click.echo(f"{p['url']}  last contact {ago(p.get('last_contact'))}  "
                   f"failures {p.get('failures', 0)}")


async def _peer_name(service: NodeService, url: str) -> str:
    """``NAME (URL)`` once the LAB at ``url`` is known (a LAB of the roster in force),
    else the URL."""
    lab = service.peer_labs.get(url)
    if not lab:
        return url
    ledger = await service.write(service.node.ledger)
    return f"{ledger.lab_name(lab)} ({url})" if lab in ledger.roster else url


def _rounds(n: int) -> str:
    return f"{n} round{'s' if n != 1 else ''}"


def _sync_line(r: dict[str, Any]) -> str:
    rounds = _rounds(r["rounds"])
    moved = f"pulled {r['pulled']}, pushed {r['pushed']}"
    if r["forks"]:
        moved += f", {r['forks']} fork proof(s)"
    if r["in_sync"]:
        return f"{r['peer']}: in sync ({moved} in {rounds})"
    return (f"{r['peer']}: not in sync yet ({moved} in {rounds}; {r['lacking']} entries "
            "left; run 'disco sync' again)")


@click.command()
@click.argument("urls", nargs=-1)
@click.option("--once", is_flag=True,
              help="One round per peer (at most 5000 entries pulled), as the gossip does.")
@json_option
@click.pass_context
@examples("  disco sync                       # every configured peer, until in sync\n"
          "  disco sync http://10.0.0.5:8750\n"
          "  disco sync --once --json")
def sync(ctx: click.Context, urls: tuple[str, ...], once: bool, as_json: bool) -> None:
    """Sync with the given peers (default: all configured peers) until in sync.

    Runs rounds with each peer until both hold the same entries, then prints one
    line per peer: what was pulled and pushed, in how many rounds. A progress bar
    shows on a terminal (not with --json). Exit 1 when a peer fails, or when a
    round moves nothing while the two still differ (the peer cannot give more)."""
    service = _service(ctx)
    targets = [_check_url(u) for u in urls] or load_peers(service.home)
    if not targets:
        service.close()
        raise Failure("no peers: give a URL or run 'disco peer add URL'")
    bar = shows_progress(as_json)

    async def one(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
        seen = SyncOutcome()
        loop = asyncio.get_running_loop()

        def on_round(outcome: SyncOutcome) -> None:
            nonlocal seen
            seen = outcome
            done = outcome.pulled + outcome.pushed
            update(done, done + outcome.lacking)

        with progress_bar(f"sync {url}", None, enabled=bar) as update:
            try:
                o = await sync_until_in_sync(service, session, url, once=once,
                                             on_round=on_round)
            except PeerError as e:
                service.gossip.failed(url, loop.time(), str(e))
                return {"url": url, "peer": await _peer_name(service, url), "ok": False,
                        "error": str(e), "pulled": seen.pulled, "pushed": seen.pushed,
                        "rounds": seen.rounds}
        service.gossip.succeeded(url, loop.time(), wall=time.time())
        if o.last is not None:
            service.peer_frontiers[url] = o.last.remote_frontier
        return {"url": url, "peer": await _peer_name(service, url), "ok": not o.stalled,
                "pulled": o.pulled, "pushed": o.pushed, "forks": o.forks,
                "in_sync": o.in_sync, "requests": o.requests, "rounds": o.rounds,
                "lacking": o.lacking, "stalled": o.stalled}

    async def run() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            out = [await one(session, url) for url in targets]
        try:
            service.save_peer_state(only=targets)
        except OSError as e:
            click.echo(f"disco: warning: cannot save the peer state: {e}", err=True)
        total = await service.read(service.node.store.max_notification_id)
        with progress_bar("ledger", total, enabled=bar) as update:
            await service.write(service.node.ledger, update)
        return out

    try:
        results = asyncio.run(run())
    finally:
        service.close()
    if as_json:
        emit({"peers": [{k: v for k, v in r.items() if k != "peer"} for r in results]})
    else:
        for r in results:
            if not r["ok"] and "error" in r:
                click.echo(f"disco: sync with {r['peer']} failed: {r['error']}", err=True)
            elif r["stalled"]:
                click.echo(f"disco: {r['peer']}: not in sync, and a round moved nothing: "
                           f"the peer cannot give more now ({r['lacking']} entries differ;"
                           f" pulled {r['pulled']}, pushed {r['pushed']} in "
                           f"{_rounds(r['rounds'])})", err=True)
            else:
                click.echo(_sync_line(r))
    if not all(r["ok"] for r in results):
        sys.exit(1)


@click.command()
@json_option
@click.pass_context
@examples("  disco status --json")
def status(ctx: click.Context, as_json: bool) -> None:
    """Identity, the roster, peers, lag, fork proofs and the state digest.

    For each feed of the roster: the seq held here and how far behind or ahead of
    the peers it is; for each peer: its LAB (known after the first contact), the
    last contact and the entries each side lacks, by the frontier the peer showed
    in its last round."""
    from node.cli.common import open_node

    with open_node(ctx) as node:
        doc = status_of(node, peer_status(node.home))
    doc["verified"] = warn_unchecked(node.home)
    if as_json:
        emit(doc)
        return
    click.echo(f"LAB        {doc['name']} ({doc['lab_id']})")
    click.echo(f"federation {doc['federation_id']}")
    click.echo(f"digest     {doc['state_digest']}")
    for lab in doc["roster"]:
        lag = doc["lag"].get(lab["lab"], {})
        notes = [f"{lag['we_lack']} behind a peer" if lag.get("we_lack") else "",
                 f"a peer lacks {lag['peers_lack']}" if lag.get("peers_lack") else ""]
        note = "; ".join(n for n in notes if n)
        if lab.get("state", "member") != "member":
            note = "; ".join(n for n in (lab["state"], note) if n)
        if lab.get("key", lab["lab"]) != lab["lab"]:
            note = "; ".join(n for n in (note, f"key {lab['key'][:16]}") if n)
        click.echo(f"feed       {lab['name']:<16} seq {lab['seq']:<7} {lab['lab'][:16]}"
                   + (f"  ({note})" if note else ""))
    for p in doc["peers"]:
        who = f"{p['name']} ({p['url']})" if p.get("name") else p["url"]
        line = f"peer       {who}  last contact {ago(p.get('last_contact'))}"
        if p.get("we_lack") is not None:
            line += (", in sync" if not (p["we_lack"] or p["they_lack"]) else
                     f", we lack {p['we_lack']}, it lacks {p['they_lack']}")
        if p.get("failures"):
            line += f", {p['failures']} failure(s): {p.get('last_error')}"
        click.echo(line)
    for f in doc["forks"]:
        click.echo(f"FORK       {f['author']} at seq {f['seq']}: " + (
            "repaired by vote" if f.get("repaired") else "feed frozen"))
    if doc.get("restored"):
        click.echo("RESTORED   from a backup: authors nothing until a sync with a peer "
                   "brings its own feed ('disco sync')")
