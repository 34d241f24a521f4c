"""Commands that create things: ``init``, ``federation create``, ``join``."""

from __future__ import annotations

from pathlib import Path

import click

from federation.genesis import (
    DEFAULT_EXPIRY_DAYS,
    DEFAULT_THRESHOLD,
    MAX_EXPIRY_DAYS,
    Lab,
    create_genesis,
)
from node.cli.common import (
    EXIT_UNUSABLE,
    Failure,
    check_postgres_dsn,
    emit,
    examples,
    home_path,
    json_option,
    new_passphrase,
    now_us,
    open_node,
    parse_amount,
    parse_lab_id,
    parse_threshold,
)
from node.home import Home, write_genesis_file
from protocol.entry import Entry


@click.command()
@click.option("--name", required=True, help="The LAB's name, e.g. 'Freedom Farms'.")
@click.option("--encrypt", is_flag=True,
              help="Encrypt the key with a passphrase (DISCO_PASSPHRASE or a prompt).")
@click.option("--postgres", "dsn", metavar="DSN",
              help="Keep entries in PostgreSQL instead of the embedded SQLite file.")
@json_option
@click.pass_context
@examples("  disco --home ./farm init --name 'Freedom Farms'")
def init(ctx: click.Context, name: str, encrypt: bool, dsn: str | None, as_json: bool) -> None:
    """Create a LAB: a new key and node folder.

    With --postgres the DSN is tried at once; with --encrypt and no terminal the
    passphrase comes from DISCO_PASSPHRASE. Either failing creates nothing (exit 2)."""
    passphrase = new_passphrase() if encrypt else None
    if dsn:
        check_postgres_dsn(dsn)
    home, signer = Home.create(home_path(ctx), name, passphrase=passphrase, postgres_dsn=dsn)
    if as_json:
        emit({"lab_id": signer.public_key.hex(), "name": name, "home": str(home.path)})
    else:
        click.echo(f"LAB {name!r} created in {home.path}")
        click.echo(f"lab_id {signer.public_key.hex()}")


@click.group()
def federation() -> None:
    """Federations: create a genesis document."""


def _founder(text: str) -> Lab:
    lab_id, sep, name = text.partition("=")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r}: want LAB_ID=NAME", param_hint="--founder")
    return Lab(parse_lab_id(lab_id), name.strip())


def _unit(text: str) -> tuple[str, int]:
    code, sep, decimals = text.partition(":")
    if not sep or not decimals.isdigit():
        raise click.BadParameter(f"{text!r}: want CODE:DECIMALS, e.g. JXC:2", param_hint="--unit")
    return code, int(decimals)


@federation.command("create")
@click.option("--name", required=True, help="The federation's name.")
@click.option("--founder", "founders", multiple=True, required=True, metavar="LAB_ID=NAME",
              help="A founding LAB (repeat for each).")
@click.option("--unit", "units", multiple=True, required=True, metavar="CODE:DECIMALS",
              help="A mutual-credit unit, e.g. JXC:2.")
@click.option("--credit-limit", "limits", multiple=True, metavar="CODE=AMOUNT",
              help="Credit limit per LAB in a unit, e.g. JXC=1000.00.")
@click.option("--threshold", metavar="N/D",
              help="Votes a proposal needs: at least N/D of the voting LABs (default 2/3).")
@click.option("--expiry-days", type=click.IntRange(1, MAX_EXPIRY_DAYS),
              default=DEFAULT_EXPIRY_DAYS, show_default=True,
              help="A proposal not passed within this many days lapses.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Where to write the genesis file (JSON).")
@json_option
@examples("  disco federation create --name 'Cooperation Jackson' \\\n"
          "    --founder 3f2a...=Farm --founder 9c1b...=FabLab \\\n"
          "    --unit JXC:2 --credit-limit JXC=1000.00 --out genesis.json\n"
          "  disco federation create ... --threshold 3/4 --expiry-days 14 --out genesis.json")
def federation_create(
    name: str, founders: tuple[str, ...], units: tuple[str, ...], limits: tuple[str, ...],
    threshold: str | None, expiry_days: int, out: Path, as_json: bool,
) -> None:
    """Write the genesis document of a new federation.

    Its rules: the credit limits, the votes a proposal needs (--threshold) and how
    long it stays open (--expiry-days); the LABs may change each later by a
    proposal ('disco propose rule')."""
    labs = [_founder(f) for f in founders]
    unit_map = dict(_unit(u) for u in units)
    credit: dict[str, int] = {}
    for text in limits:
        code, sep, amount = text.partition("=")
        if not sep:
            raise click.BadParameter(f"{text!r}: want CODE=AMOUNT", param_hint="--credit-limit")
        if code not in unit_map:
            raise Failure(f"--credit-limit names {code!r}, which is not a --unit", EXIT_UNUSABLE)
        credit[code] = parse_amount(amount, unit_map[code], at_least=0,
                                    hint="--credit-limit")
    fraction = parse_threshold(threshold) if threshold is not None else DEFAULT_THRESHOLD
    genesis = create_genesis(name, labs=labs, units=unit_map, credit_limits=credit,
                             now_us=now_us(), threshold=fraction, expiry_days=expiry_days)
    write_genesis_file(out, genesis)
    if as_json:
        emit({"federation_id": genesis.federation_id.hex(), "file": str(out)})
    else:
        click.echo(f"federation {name!r} written to {out}")
        click.echo(f"federation_id {genesis.federation_id.hex()}")


def _sync_first(ctx: click.Context, file: Path, url: str) -> Entry | None:
    """Join at once (a founder: the ``lab.joined`` entry), or keep the genesis of
    ``file`` and the peer ``url`` and sync from it (a LAB admitted after the genesis
    learns of its admission so; None). Raises :class:`Failure`."""
    import asyncio  # (the network, only for this path)

    import aiohttp

    from node.cli.network import _check_url, _service
    from node.client import PeerError, sync_until_in_sync
    from node.lab import NotAdmitted
    from node.service import load_peers, save_peers

    url = _check_url(url)
    with open_node(ctx, writer=True) as node:
        try:
            return node.join(file, now_us())  # (a founder, or admitted already)
        except NotAdmitted:
            node.keep_genesis(file)
        save_peers(node.home, [*[u for u in load_peers(node.home) if u != url], url])
    service = _service(ctx)

    async def pull() -> None:
        async with aiohttp.ClientSession() as session:
            await sync_until_in_sync(service, session, url)

    try:
        asyncio.run(pull())
    except PeerError as e:
        raise Failure(f"could not sync from {url}: {e}") from None
    finally:
        service.close()
    return None


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--peer", "peer_url", metavar="URL",
              help="A member's node to sync from first (and keep as a peer): how a LAB "
                   "admitted after the genesis learns its admission.")
@json_option
@click.pass_context
@examples("  disco --home ./farm join genesis.json\n"
          "  disco --home ./nueva join genesis.json --peer https://farm.example:8750")
def join(ctx: click.Context, file: Path, peer_url: str | None, as_json: bool) -> None:
    """Join the federation of a genesis file: the LAB's first entry, lab.joined.

    A founder joins at once. A LAB admitted later by a vote gives --peer: the node
    keeps the genesis, syncs from that member's node (which then holds its
    admission), and joins."""
    joined = _sync_first(ctx, file, peer_url) if peer_url is not None else None
    with open_node(ctx, writer=True) as node:
        entry = joined or node.join(file, now_us())
        genesis = node.require_genesis()
        fid = genesis.federation_id.hex()
        name, home_name = node.roster().get(node.lab_id, node.home.name), node.home.name
    if name != home_name:
        click.echo(f"disco: warning: the federation's roster names this LAB {name!r}, its "
                   f"folder was made with 'disco init --name {home_name!r}': {name!r} is "
                   "the name shown everywhere", err=True)
    if as_json:
        emit({"lab_id": node.lab_id.hex(), "federation_id": fid, "ref": str(entry.ref),
              "name": name})
    else:
        click.echo(f"joined federation {genesis.name!r} ({fid}) as {name!r}")
