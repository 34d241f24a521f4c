"""Commands that create things: ``init``, ``federation create``, ``join``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from federation.genesis import Lab, create_genesis
from node.cli.common import (
    EXIT_UNUSABLE,
    Failure,
    check_postgres_dsn,
    emit,
    examples,
    home_path,
    json_option,
    now_us,
    open_node,
    parse_amount,
    parse_lab_id,
)
from node.home import Home, write_genesis_file


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
    passphrase = None
    if encrypt:
        env = os.environ.get("DISCO_PASSPHRASE")
        if not env and not sys.stdin.isatty():
            raise Failure("--encrypt needs a passphrase: set DISCO_PASSPHRASE (no terminal "
                          "to ask on)", EXIT_UNUSABLE)
        passphrase = (env or click.prompt("New passphrase", hide_input=True,
                                          confirmation_prompt=True)).encode()
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
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Where to write the genesis file (JSON).")
@json_option
@examples("  disco federation create --name 'Cooperation Jackson' \\\n"
          "    --founder 3f2a...=Farm --founder 9c1b...=FabLab \\\n"
          "    --unit JXC:2 --credit-limit JXC=1000.00 --out genesis.json")
def federation_create(
    name: str, founders: tuple[str, ...], units: tuple[str, ...], limits: tuple[str, ...],
    out: Path, as_json: bool,
) -> None:
    """Write the genesis document of a new federation."""
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
    genesis = create_genesis(name, labs=labs, units=unit_map, credit_limits=credit,
                             now_us=now_us())
    write_genesis_file(out, genesis)
    if as_json:
        emit({"federation_id": genesis.federation_id.hex(), "file": str(out)})
    else:
        click.echo(f"federation {name!r} written to {out}")
        click.echo(f"federation_id {genesis.federation_id.hex()}")


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@json_option
@click.pass_context
@examples("  disco --home ./farm join genesis.json")
def join(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Join the federation of a genesis file: the LAB's first entry, lab.joined."""
    with open_node(ctx, writer=True) as node:
        entry = node.join(file, now_us())
        genesis = node.require_genesis()
        fid = genesis.federation_id.hex()
        name, home_name = genesis.lab_name(node.lab_id), node.home.name
    if name != home_name:
        click.echo(f"disco: warning: the federation's roster names this LAB {name!r}, its "
                   f"folder was made with 'disco init --name {home_name!r}': {name!r} is "
                   "the name shown everywhere", err=True)
    if as_json:
        emit({"lab_id": node.lab_id.hex(), "federation_id": fid, "ref": str(entry.ref),
              "name": name})
    else:
        click.echo(f"joined federation {genesis.name!r} ({fid}) as {name!r}")
