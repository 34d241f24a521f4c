"""Commands that read: ``log`` and ``verify``."""

from __future__ import annotations

import json
from typing import Any

import click

from federation.errors import RuleViolation
from federation.kinds import entry_body
from node.cli.common import (
    emit,
    examples,
    json_option,
    open_node,
    progress_bar,
    resolve_lab,
    shows_progress,
)
from protocol.entry import Entry


def entry_json(entry: Entry) -> dict[str, Any]:
    """The JSON shape of ``disco log`` (bytes as hex)."""
    try:
        body = entry_body(entry)
    except RuleViolation:
        body = {"_invalid_body": True}
    return {"author": entry.author.hex(), "seq": entry.seq, "hash": entry.hash.hex(),
            "kind": entry.kind, "ts_us": entry.header.ts_us,
            "body": _hexify(body)}


def _hexify(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _hexify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hexify(v) for v in value]
    return value


@click.command()
@click.option("--author", metavar="LAB",
              help="Only this LAB's feed: its name or a unique prefix of its id.")
@json_option
@click.pass_context
@examples("  disco log --json | jq '.[] | select(.kind == \"contribution.recorded\")'")
def log(ctx: click.Context, author: str | None, as_json: bool) -> None:
    """Show entries, oldest first per feed (streamed, not loaded whole)."""
    with open_node(ctx) as node:
        lab = resolve_lab(node, author, "--author") if author else None
        genesis = node.require_genesis()
        first = True
        if as_json:
            click.echo("[")
        for entry in node.log(lab):
            if as_json:
                click.echo(("" if first else ",\n") + json.dumps(entry_json(entry)), nl=False)
            else:
                body = entry_json(entry)["body"]
                text = "(redacted)" if body is None else " ".join(
                    f"{k}={v}" for k, v in body.items())
                click.echo(f"{genesis.lab_name(entry.author):<16} #{entry.seq:<5} "
                           f"{entry.kind:<24} {text}")
            first = False
        if as_json:
            click.echo("\n]")


@click.command()
@json_option
@click.pass_context
@examples("  disco --home ./farm verify")
def verify(ctx: click.Context, as_json: bool) -> None:
    """Check the local store: every signature, chain link and seq. Exit 1 on a problem.

    A progress bar shows on a terminal (not with --json)."""
    with open_node(ctx) as node:
        total = node.store.max_notification_id()
        bar = shows_progress(as_json)
        with progress_bar("verifying", total, enabled=bar) as update:
            problems = node.verify(update if bar else None)
    if as_json:
        emit({"ok": not problems, "problems": [p.as_json() for p in problems]})
    elif not problems:
        click.echo("store verified: every entry sound")
    else:
        for p in problems:
            click.echo(f"feed {p.author} seq {p.seq}: {p.code}: {p.message}", err=True)
    if problems:
        ctx.exit(1)
