"""Backups: ``backup`` and ``restore`` (:mod:`node.backup`)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from node.backup import restore_backup, take_backup
from node.cli.common import (
    EXIT_UNUSABLE,
    Failure,
    check_postgres_dsn,
    emit,
    examples,
    home_path,
    json_option,
    load_signer,
    now_us,
)
from node.home import Home
from node.service import load_peers

PASSPHRASE_ENV = "DISCO_BACKUP_PASSPHRASE"


def backup_passphrase(*, confirm: bool) -> bytes:
    """The backup's passphrase: DISCO_BACKUP_PASSPHRASE, else a hidden prompt on a
    terminal (typed twice when ``confirm``). Raises :class:`Failure` (exit 2)
    without either."""
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env.encode()
    if not sys.stdin.isatty():
        raise Failure(f"the key needs a backup passphrase: set {PASSPHRASE_ENV} (no "
                      "terminal to ask on)", EXIT_UNUSABLE)
    text = str(click.prompt("Passphrase for the key in the backup", hide_input=True,
                            confirmation_prompt=confirm))
    if not text:
        raise Failure("the backup passphrase cannot be empty", EXIT_UNUSABLE)
    return text.encode()


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.command()
@click.option("--out", required=True, type=click.Path(path_type=Path), metavar="FILE",
              help="The archive to write (a .tar.gz); refused when it exists.")
@click.option("--with-key", is_flag=True,
              help=f"Put the LAB key in the backup, encrypted with a passphrase "
                   f"({PASSPHRASE_ENV} or a prompt, typed twice).")
@json_option
@click.pass_context
@examples("  disco --home ./farm backup --out farm-$(date +%F).tar.gz\n"
          "  DISCO_BACKUP_PASSPHRASE=... disco backup --out farm.tar.gz --with-key --json")
def backup(ctx: click.Context, out: Path, with_key: bool, as_json: bool) -> None:
    """Write a consistent copy of this node to FILE, also while 'disco serve' runs.

    The archive holds the store (one snapshot: SQLite's online backup, or for a node
    on PostgreSQL its stored entries read in one transaction and written as an
    SQLite store), the config (node.json), the genesis and the peer list, and a
    manifest with every file's sha256. The LAB key only with --with-key, and then
    encrypted with the backup's passphrase (an encrypted home key is read with
    DISCO_PASSPHRASE first). Without it, keep the key (lab.key) safe elsewhere:
    the node cannot author or serve without it. 'disco restore' brings it back."""
    home = Home.open(home_path(ctx))
    key = None
    if with_key:
        signer = load_signer(home)
        key = signer.to_pem(backup_passphrase(confirm=True))
    done = take_backup(home, out, now_us(), key)
    manifest = done.manifest
    if as_json:
        emit({"out": str(done.out), "entries": done.entries, "with_key": done.with_key,
              "bytes": done.size, "lab_id": manifest["lab_id"],
              "federation_id": manifest["federation_id"],
              "created_us": manifest["created_us"], "store": manifest["store"],
              "feeds": manifest["feeds"]})
        return
    own = manifest["feeds"].get(manifest["lab_id"], 0)
    click.echo(f"backup of LAB {manifest['name']!r} written to {done.out}: "
               f"{done.entries} entries in {len(manifest['feeds'])} feeds (its own at seq "
               f"{own}), {done.size} bytes")
    click.echo("key: in the backup, encrypted" if done.with_key else
               "key: not in the backup (keep lab.key safe elsewhere, or use --with-key)")


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--decrypt-key", is_flag=True,
              help="Save the key from the backup unencrypted (mode 0600), as 'disco "
                   "init' does; by default it stays encrypted with the backup's "
                   "passphrase, which the node then reads from DISCO_PASSPHRASE.")
@click.option("--postgres", "dsn", metavar="DSN",
              help="Keep the restored entries in PostgreSQL (the LAB's own schema, as "
                   "'disco init --postgres' makes it, which must hold none yet) instead "
                   "of the SQLite file.")
@click.option("--no-wait-for-peers", is_flag=True,
              help="Let the node author at once, without first syncing its own feed "
                   "from a peer. Only for a federation of one, or when you know the "
                   "backup holds every entry this LAB ever wrote: if it does not, the "
                   "next entry forks the LAB's own feed, and every node freezes it.")
@json_option
@click.pass_context
@examples("  disco restore farm-2026-03-01.tar.gz --home ./farm\n"
          "  disco --home ./farm sync http://fablab.example.org:8750   # then it records")
def restore(ctx: click.Context, file: Path, decrypt_key: bool, dsn: str | None,
            no_wait_for_peers: bool, as_json: bool) -> None:
    """Make a node folder (--home DIR) from a backup written by 'disco backup'.

    DIR must not exist or be empty. The manifest and every file's sha256 are checked
    first: a damaged or foreign archive is refused and nothing is written. The store
    is restored as an SQLite store (ledger.sqlite), also from a node that kept its
    entries in PostgreSQL; with --postgres DSN in PostgreSQL, from either. A key in
    the backup asks for its passphrase (DISCO_BACKUP_PASSPHRASE or a prompt); a
    wrong one is refused.

    The backup may be older than the LAB's own feed as its peers hold it: the
    restored node authors nothing (record, transfer, ...) until a sync with a peer
    ('disco sync', or 'disco serve' with peers) has brought it its own feed, so it
    does not fork it. 'disco status' shows the wait."""
    dest = home_path(ctx)
    if dsn:
        check_postgres_dsn(dsn)
    asked: list[bytes] = []

    def passphrase() -> bytes:
        if not asked:
            asked.append(backup_passphrase(confirm=False))
        return asked[0]

    done = restore_backup(file, dest, now_us(), passphrase=passphrase,
                          decrypt_key=decrypt_key, wait_for_peers=not no_wait_for_peers,
                          postgres_dsn=dsn)
    manifest = done.manifest
    peers = load_peers(done.home)
    if as_json:
        emit({"home": str(done.home.path), "lab_id": manifest["lab_id"],
              "store": done.home.config["store"]["backend"],
              "federation_id": manifest["federation_id"], "entries": done.entries,
              "feeds": manifest["feeds"], "created_us": manifest["created_us"],
              "with_key": done.key is not None, "key": done.key,
              "waiting_for_sync": done.waiting_for_sync, "peers": peers})
        return
    click.echo(f"LAB {manifest['name']!r} restored into {done.home.path}: "
               f"{done.entries} entries, backup of {_when(manifest['created_us'])}")
    if done.key is None:
        click.echo(f"key: not in the backup; copy the LAB's lab.key into "
                   f"{done.home.path} (mode 0600) before it syncs or authors")
    elif done.key == "encrypted":
        click.echo("key: encrypted with the backup's passphrase (set DISCO_PASSPHRASE "
                   "to it, or restore with --decrypt-key)")
    if done.waiting_for_sync:
        where = (f"{len(peers)} peer(s) configured" if peers
                 else "no peers configured: 'disco peer add URL' first")
        click.echo(f"it authors nothing until it has synced its own feed from a peer: "
                   f"run 'disco sync' or 'disco serve' ({where})")
