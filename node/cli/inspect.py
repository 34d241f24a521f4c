"""Commands that read: ``log`` and ``verify``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from federation.errors import RuleViolation
from federation.kinds import entry_body
from federation.ledger import Ledger
from federation.valueflows import amount_text
from node.cli.common import (
    emit,
    examples,
    json_option,
    open_node,
    progress_bar,
    resolve_lab,
    short_ref,
    shows_progress,
)
from node.cli.governance import proposal_about, proposal_fields
from protocol.entry import Entry, Ref


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


def _date(ts_us: int) -> str:
    """The author's clock as a person reads it (UTC, to the minute)."""
    try:
        return datetime.fromtimestamp(ts_us / 1e6, UTC).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return "????-??-?? ??:??"


def hours_text(minutes: int) -> str:
    """Minutes as hours the way ``--hours`` takes them: 150 -> "2:30"."""
    return f"{minutes // 60}:{minutes % 60:02d}"


def _ref_text(value: Any) -> str:
    ref = value if isinstance(value, Ref) else Ref(*value)
    return short_ref(ref.author, ref.seq, ref.hash)


def summary(entry: Entry, ledger: Ledger) -> str:
    """One line that says what an entry records, in the user's units: amounts in the
    unit's decimals, hours as H:MM, LABs by their name in the roster in force
    (:meth:`~federation.ledger.Ledger.lab_name`), refs as AUTHOR:SEQ:HASH
    (abbreviated), timestamps as dates, keys by their first 8 hex digits, proposals
    in words."""
    try:
        body = entry_body(entry)
    except RuleViolation:
        return "(invalid body)"
    if body is None:
        return "(redacted)"
    kind = entry.kind
    genesis = ledger.genesis

    def amount() -> str:
        decimals = genesis.units.get(body["unit"], 0)
        return f"{amount_text(body['amount'], decimals)} {body['unit']}"

    def extra(*keys: str) -> str:
        return "".join(f", {k} {body[k]!r}" for k in keys if body.get(k))

    if kind == "lab.joined":
        return f"joined {genesis.name!r} as {ledger.lab_name(entry.author)}"
    if kind in ("member.added", "member.updated"):
        return f"{body['handle']} ({body['name']})"
    fixes = f"corrects {_ref_text(body['entry'])}: " if "entry" in body else ""
    if kind in ("contribution.recorded", "contribution.corrected"):
        text = f"{body['member']}: {hours_text(body['minutes'])} h {body['stream']}"
        if body.get("for_lab"):
            text += f" for {ledger.lab_name(body['for_lab'])}"
        return fixes + text + extra("project", "note", "date", "reason")
    if kind == "contribution.acknowledged":
        return f"contribution {_ref_text(body['contribution'])}" + extra("note")
    if kind == "transfer.offered":
        return f"{amount()} to {ledger.lab_name(body['to'])}" + extra("memo")
    if kind in ("transfer.accepted", "transfer.declined"):
        return f"offer {_ref_text(body['offer'])}" + extra("reason")
    if kind == "transfer.reclaimed":
        return f"offer {_ref_text(body['offer'])} (declined in {_ref_text(body['decline'])})"
    if kind in ("income.recorded", "income.corrected"):
        return fixes + f"{amount()} for {body['period']} from {body['source']!r}" + extra(
            "reason")
    if kind == "entry.voided":
        return f"voids {_ref_text(body['entry'])}: {body['reason']!r}"
    if kind == "proposal.made":
        fields = proposal_fields(body, genesis.units)
        what = (f"a rule change: {proposal_about(fields, ledger)}" if body["action"] == "rule"
                else f"to {body['action']} {proposal_about(fields, ledger)}")
        return f"proposes {what}" + extra("note")
    if kind == "proposal.voted":
        target = Ref.from_value(body["proposal"])
        return f"votes {body['vote']} on {short_ref(target.author, target.seq)}" + extra("note")
    if kind == "key.rotated":
        return (f"rotates its key to {body['key'].hex()[:8]} (it signs from seq "
                f"{entry.seq + 1})" + extra("note"))
    if kind == "lab.left":
        return "leaves the federation" + extra("note")
    if kind == "policy.set":
        w = body["weights"]
        return (f"weights livelihood {w.get('livelihood', 0)}, love {w.get('love', 0)}, "
                f"care {w.get('care', 0)}; care ratio {body['care_ratio']}%")
    return " ".join(f"{k}={v}" for k, v in _hexify(body).items())


@click.command()
@click.option("--author", metavar="LAB",
              help="Only this LAB's feed: its name or a unique prefix of its id.")
@json_option
@click.pass_context
@examples("  disco log --json | jq '.[] | select(.kind == \"contribution.recorded\")'")
def log(ctx: click.Context, author: str | None, as_json: bool) -> None:
    """Show entries, oldest first per feed (streamed, not loaded whole).

    Each line: the author's date (UTC), the LAB, the ref (AUTHOR:SEQ:HASH, abbreviated;
    any command taking a REF takes it back), the kind and what it records, with
    amounts in the unit's decimals, hours as H:MM, LABs by their roster name and
    proposals, votes, key rotations and departures in words. --json gives the raw
    bodies."""
    with open_node(ctx) as node:
        lab = resolve_lab(node, author, "--author") if author else None
        ledger = None if as_json else node.ledger()  # (the names of the roster in force)
        first = True
        if as_json:
            click.echo("[")
        for entry in node.log(lab):
            if as_json:
                click.echo(("" if first else ",\n") + json.dumps(entry_json(entry)), nl=False)
            elif ledger is not None:
                click.echo(f"{_date(entry.header.ts_us)}  {ledger.lab_name(entry.author):<16} "
                           f"{short_ref(entry.author, entry.seq, entry.hash)}  "
                           f"{entry.kind:<25} {summary(entry, ledger)}")
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
