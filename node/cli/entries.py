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
    parse_day,
    parse_hours,
    resolve_lab,
)
from protocol.entry import Entry


def _report(entry: Entry, as_json: bool) -> None:
    if as_json:
        emit({"ref": str(entry.ref), "kind": entry.kind, "seq": entry.seq})
    else:
        click.echo(f"{entry.kind} seq {entry.seq}  ref {entry.ref}")


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


@member.command("list")
@click.option("--lab", metavar="LAB", help="Another LAB, by name or id prefix (default: this one).")
@json_option
@click.pass_context
@examples("  disco member list\n  disco member list --lab 'Fab Lab' --json")
def member_list(ctx: click.Context, lab: str | None, as_json: bool) -> None:
    """List a LAB's members: handle and name, as its feed says."""
    with open_node(ctx) as node:
        lab_id = resolve_lab(node, lab, "--lab") if lab else node.lab_id
        state = node.ledger().labs.get(lab_id)
        members = sorted((state.members if state else {}).items())
        name = node.ledger().lab_name(lab_id)
    if as_json:
        emit({"lab": lab_id.hex(), "name": name,
              "members": [{"handle": h, "name": n} for h, n in members]})
        return
    if not members:
        click.echo(f"{name} has no members yet; add one with 'disco member add HANDLE'")
    for handle, member_name in members:
        click.echo(f"{handle:<16} {member_name}")


@click.command()
@click.option("--member", "member_handle", required=True, help="The member's handle.")
@click.option("--stream", type=click.Choice(STREAMS), required=True, help="Value stream.")
@click.option("--hours", required=True, help="Hours worked: 2.5 or 2:30.")
@click.option("--for", "for_lab", metavar="LAB",
              help="The LAB the work was for: its name or a unique prefix of its id.")
@click.option("--project", help="Project name.")
@click.option("--note", help="A short note.")
@click.option("--date", "day", metavar="YYYY-MM-DD",
              help="The day the work was done (default: today); it books the hours in "
                   "that month, so a late month can still be closed.")
@json_option
@click.pass_context
@examples("  disco record --member ana --stream care --hours 2:30 --note 'childcare rota'\n"
          "  disco record --member ana --stream love --hours 4 --date 2026-10-30")
def record(
    ctx: click.Context, member_handle: str, stream: str, hours: str, for_lab: str | None,
    project: str | None, note: str | None, day: str | None, as_json: bool,
) -> None:
    """Record a member's contribution: contribution.recorded."""
    body: dict[str, Any] = {"member": member_handle, "stream": stream,
                            "minutes": parse_hours(hours)}
    if day is not None:
        body["date"] = parse_day(day)
    if project:
        body["project"] = project
    if note:
        body["note"] = note
    with open_node(ctx, writer=True) as node:
        if for_lab:
            body["for_lab"] = resolve_lab(node, for_lab, "--for")
        entry = node.author("contribution.recorded", body, now_us())
    _report(entry, as_json)
