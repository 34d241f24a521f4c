"""Commands that author entries of the LAB's own feed: members and contributions."""

from __future__ import annotations

from typing import Any

import click

from federation.kinds import STREAMS
from node.cli.common import (
    emit,
    examples,
    json_option,
    now_us,
    open_node,
    parse_hours,
    parse_lab_id,
)
from protocol.entry import Entry


def _report(entry: Entry, as_json: bool) -> None:
    if as_json:
        emit({"ref": str(entry.ref), "kind": entry.kind, "seq": entry.seq})
    else:
        click.echo(f"{entry.kind} #{entry.seq}  ref {entry.ref}")


def _author(ctx: click.Context, kind: str, body: dict[str, Any], as_json: bool) -> None:
    with open_node(ctx, writer=True) as node:
        entry = node.author(kind, body, now_us())
    _report(entry, as_json)


@click.group()
def member() -> None:
    """Members of this LAB."""


@member.command("add")
@click.argument("handle")
@click.option("--name", help="Display name (defaults to the handle).")
@json_option
@click.pass_context
@examples("  disco member add ana --name 'Ana Ruiz'")
def member_add(ctx: click.Context, handle: str, name: str | None, as_json: bool) -> None:
    """Add a member: member.added."""
    _author(ctx, "member.added", {"handle": handle, "name": name or handle}, as_json)


@member.command("update")
@click.argument("handle")
@click.option("--name", required=True, help="The new display name.")
@json_option
@click.pass_context
@examples("  disco member update ana --name 'Ana R. Ruiz'")
def member_update(ctx: click.Context, handle: str, name: str, as_json: bool) -> None:
    """Change a member's display name: member.updated."""
    _author(ctx, "member.updated", {"handle": handle, "name": name}, as_json)


@click.command()
@click.option("--member", "member_handle", required=True, help="The member's handle.")
@click.option("--stream", type=click.Choice(STREAMS), required=True, help="Value stream.")
@click.option("--hours", required=True, help="Hours worked: 2.5 or 2:30.")
@click.option("--for", "for_lab", metavar="LAB_ID", help="The LAB the work was for.")
@click.option("--project", help="Project name.")
@click.option("--note", help="A short note.")
@json_option
@click.pass_context
@examples("  disco record --member ana --stream care --hours 2:30 --note 'childcare rota'")
def record(
    ctx: click.Context, member_handle: str, stream: str, hours: str, for_lab: str | None,
    project: str | None, note: str | None, as_json: bool,
) -> None:
    """Record a member's contribution: contribution.recorded."""
    body: dict[str, Any] = {"member": member_handle, "stream": stream,
                            "minutes": parse_hours(hours)}
    if for_lab:
        body["for_lab"] = parse_lab_id(for_lab)
    if project:
        body["project"] = project
    if note:
        body["note"] = note
    _author(ctx, "contribution.recorded", body, as_json)
