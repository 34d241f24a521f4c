"""Ledger commands: transfers, income, policy, acknowledgements and the reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from federation import reports
from federation.errors import RuleViolation
from federation.kinds import PERIOD
from federation.valueflows import amount_text, write_jsonld
from node.cli.common import (
    EXIT_UNUSABLE,
    Failure,
    emit,
    examples,
    json_option,
    now_us,
    open_node,
    parse_amount,
    parse_day,
    progress_bar,
    resolve_lab,
    resolve_ref,
    short_ref,
    shows_progress,
    warn_unchecked,
)
from node.cli.entries import _report
from node.lab import LabNode
from protocol.entry import Entry


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _period(value: str | None) -> str | None:
    if value is not None and not PERIOD.match(value):
        raise click.BadParameter(f"{value!r}: want a month like 2026-11", param_hint="--period")
    return value


def _unit_decimals(node: LabNode, unit: str) -> int:
    units = node.require_genesis().units
    if unit not in units:
        raise Failure(f"unit {unit!r} is not a unit of this federation "
                      f"({', '.join(units)})", 2)
    return units[unit]


def _write(ctx: click.Context, kind: str, body: dict[str, Any], as_json: bool) -> None:
    with open_node(ctx, writer=True) as node:
        entry = node.author(kind, body, now_us())
    _report(entry, as_json)


@click.group()
def transfer() -> None:
    """Mutual-credit transfers between LABs."""


@transfer.command("offer")
@click.option("--to", "to", required=True, metavar="LAB",
              help="The payee LAB: its name or a unique prefix of its id.")
@click.option("--amount", required=True, help="Amount in the unit's decimals, e.g. 12.50.")
@click.option("--unit", required=True, help="Federation unit code, e.g. JXC.")
@click.option("--memo", help="What it is for.")
@json_option
@click.pass_context
@examples("  disco transfer offer --to 'Fab Lab' --amount 12.50 --unit JXC --memo seedlings\n"
          "  disco transfer offer --to 9c1b --amount 12.50 --unit JXC")
def transfer_offer(ctx: click.Context, to: str, amount: str, unit: str, memo: str | None,
                   as_json: bool) -> None:
    """Offer a transfer: debits this LAB now, credits the payee when it accepts."""
    with open_node(ctx, writer=True) as node:
        decimals = _unit_decimals(node, unit)
        body: dict[str, Any] = {"to": resolve_lab(node, to, "--to"), "unit": unit,
                                "amount": parse_amount(amount, decimals)}
        if memo:
            body["memo"] = memo
        entry = author_offer(node, body)
    _report(entry, as_json)


def author_offer(node: LabNode, body: dict[str, Any]) -> Entry:
    """Author ``transfer.offered`` with ``body`` (the CLI and the dashboard).

    An offer past the credit limit raises :class:`Failure` saying, in the unit, the
    balance it would leave and the limit; any other refusal raises as
    :meth:`LabNode.author` does."""
    try:
        return node.author("transfer.offered", body, now_us())
    except RuleViolation as e:
        if e.code != "over-credit-limit":
            raise
        unit = body["unit"]
        decimals = _unit_decimals(node, unit)
        after = node.ledger().balance(node.lab_id, unit) - body["amount"]
        limit = node.require_genesis().credit_limits.get(unit, 0)
        raise Failure(f"refused: an offer of {amount_text(body['amount'], decimals)} "
                      f"{unit} would take the balance to {amount_text(after, decimals)} "
                      f"{unit}, below the credit limit of "
                      f"{amount_text(-limit, decimals)} {unit} [over-credit-limit]"
                      ) from None


def _answer(ctx: click.Context, kind: str, ref: str, reason: str | None,
            as_json: bool) -> None:
    with open_node(ctx, writer=True) as node:
        body: dict[str, Any] = {"offer": resolve_ref(node, ref).as_list()}
        if reason:
            body["reason"] = reason
        entry = node.author(kind, body, now_us())
    _report(entry, as_json)


@transfer.command("accept")
@click.argument("ref")
@click.option("--reason", help="A note for the payer.")
@json_option
@click.pass_context
@examples("  disco transfer accept 3f2a:7")
def transfer_accept(ctx: click.Context, ref: str, reason: str | None, as_json: bool) -> None:
    """Accept an offer made to this LAB (REF or an unambiguous prefix)."""
    _answer(ctx, "transfer.accepted", ref, reason, as_json)


@transfer.command("decline")
@click.argument("ref")
@click.option("--reason", help="Why.")
@json_option
@click.pass_context
@examples("  disco transfer decline 3f2a:7 --reason 'not ours'")
def transfer_decline(ctx: click.Context, ref: str, reason: str | None, as_json: bool) -> None:
    """Decline an offer made to this LAB; the payer may then reclaim it."""
    _answer(ctx, "transfer.declined", ref, reason, as_json)


@transfer.command("reclaim")
@click.argument("ref")
@json_option
@click.pass_context
@examples("  disco transfer reclaim 3f2a:7")
def transfer_reclaim(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Take back a declined offer of this LAB: credits its amount again."""
    with open_node(ctx, writer=True) as node:
        entry = author_reclaim(node, ref)
    _report(entry, as_json)


def author_reclaim(node: LabNode, ref: str) -> Entry:
    """Author ``transfer.reclaimed`` for the declined offer ``ref`` names (the CLI
    and the dashboard), or for an offer its payee never answered before it left or
    was removed (the departure is then the decline). Raises :class:`Failure` when it
    has not been declined or the decline is not held here."""
    offer = resolve_ref(node, ref)
    ledger = node.ledger()
    state = ledger.offers.get((offer.author, offer.seq))
    payee = ledger.outcome.members.get(state.payee) if state is not None else None
    if state is not None and state.state == "offered" and payee and payee.gone_by:
        # The payee left or was removed without answering: its departure declines it.
        return node.author("transfer.reclaimed", {"offer": offer.as_list(),
                                                  "decline": payee.gone_by.as_list()},
                           now_us())
    if state is None or state.answer is None or state.state != "declined":
        raise Failure(f"refused: offer {ref} has not been declined (it is "
                      f"{state.state if state else 'not a valid offer'})")
    decline = node.store.get(*state.answer)
    if decline is None:
        raise Failure("refused: the decline is not held here; sync first")
    return node.author("transfer.reclaimed",
                       {"offer": offer.as_list(), "decline": decline.ref.as_list()},
                       now_us())


@click.command()
@click.argument("ref")
@click.option("--note", help="A note.")
@json_option
@click.pass_context
@examples("  disco acknowledge 9c1b:12")
def acknowledge(ctx: click.Context, ref: str, note: str | None, as_json: bool) -> None:
    """Acknowledge another LAB's contribution made for this LAB."""
    with open_node(ctx, writer=True) as node:
        body: dict[str, Any] = {"contribution": resolve_ref(node, ref).as_list()}
        if note:
            body["note"] = note
        entry = node.author("contribution.acknowledged", body, now_us())
    _report(entry, as_json)


@click.command()
@click.option("--amount", required=True, help="Income in the unit's decimals.")
@click.option("--unit", required=True, help="Unit code.")
@click.option("--period", help="Month, YYYY-MM (or give --date).")
@click.option("--date", "day", metavar="YYYY-MM-DD",
              help="A day of the month the income belongs to (instead of --period).")
@click.option("--source", required=True, help="Where it came from.")
@json_option
@click.pass_context
@examples("  disco income --amount 4200.00 --unit JXC --period 2026-11 --source 'market sales'\n"
          "  disco income --amount 300.00 --unit JXC --date 2026-10-28 --source 'late invoice'")
def income(ctx: click.Context, amount: str, unit: str, period: str | None, day: str | None,
           source: str, as_json: bool) -> None:
    """Record the LAB's income for a period: income.recorded."""
    day = parse_day(day)
    if day is not None and period is not None and day[:7] != period:
        raise click.BadParameter(f"{day} is not in {period}; give one of them",
                                 param_hint="--date")
    period = period or (day[:7] if day else None)
    if period is None:
        raise click.UsageError("give --period YYYY-MM or --date YYYY-MM-DD")
    with open_node(ctx, writer=True) as node:
        body = {"amount": parse_amount(amount, _unit_decimals(node, unit)), "unit": unit,
                "period": _period(period), "source": source}
        entry = node.author("income.recorded", body, now_us())
    _report(entry, as_json)


@click.command()
@click.option("--livelihood", type=click.IntRange(0, 1000), help="Weight of livelihood hours.")
@click.option("--love", type=click.IntRange(0, 1000), help="Weight of love hours.")
@click.option("--care", type=click.IntRange(0, 1000), help="Weight of care hours.")
@click.option("--care-ratio", type=click.IntRange(0, 100),
              help="Percent of income set aside for care work.")
@json_option
@click.pass_context
@examples("  disco policy                        # the policy in force\n"
          "  disco policy --care 2 --care-ratio 10")
def policy(ctx: click.Context, livelihood: int | None, love: int | None, care: int | None,
           care_ratio: int | None, as_json: bool) -> None:
    """Show the LAB's payout policy, or change what the options name.

    Without an option it shows the policy in force (weights 1, 1, 1 and a care
    ratio of 0 until one is set). An option changes only what it names; the rest
    stays as it is: policy.set."""
    changes = {"livelihood": livelihood, "love": love, "care": care}
    with open_node(ctx, writer=care_ratio is not None or any(
            v is not None for v in changes.values())) as node:
        held = node.ledger().policies.get(node.lab_id)
        weights, ratio = held if held is not None else (reports.DEFAULT_WEIGHTS, 0)
        weights = dict(weights)
        if care_ratio is None and all(v is None for v in changes.values()):
            doc = {"weights": weights, "care_ratio": ratio, "set": held is not None}
            if as_json:
                emit(doc)
            else:
                click.echo(_policy_line(weights, ratio)
                           + ("" if held is not None else " (the default: none set yet)"))
            return
        weights.update({k: v for k, v in changes.items() if v is not None})
        ratio = ratio if care_ratio is None else care_ratio
        entry = node.author("policy.set", {"weights": weights, "care_ratio": ratio},
                            now_us())
    if as_json:
        emit({"ref": str(entry.ref), "kind": entry.kind, "seq": entry.seq,
              "weights": weights, "care_ratio": ratio})
    else:
        _report(entry, False)
        click.echo(_policy_line(weights, ratio))


def _policy_line(weights: dict[str, int], ratio: int) -> str:
    return ("weights " + ", ".join(f"{s} {weights.get(s, 0)}" for s in
                                   ("livelihood", "love", "care"))
            + f"; care ratio {ratio}%")


@click.command()
@json_option
@click.pass_context
@examples("  disco balance --json")
def balance(ctx: click.Context, as_json: bool) -> None:
    """Balances per LAB and unit (from the projection, not the log)."""
    with open_node(ctx) as node:
        summary = node.summary()
        genesis = node.require_genesis()
    warn_unchecked(node.home)
    names: dict[bytes, str] = dict(summary["roster"])  # (the ledger's names: lab_name)
    table: dict[bytes, dict[str, int]] = {lab: dict.fromkeys(genesis.units, 0)
                                          for lab in names}
    for lab, unit, amount in summary["balances"]:
        table[lab][unit] = amount  # (only a LAB of the roster has a balance)
    if as_json:
        emit({"balances": {lab.hex(): units for lab, units in table.items()},
              "state_digest": summary["state_digest"].hex()})
        return
    out = Table("LAB", *genesis.units, title="Balances")
    for lab, units in table.items():
        out.add_row(names[lab],
                    *(amount_text(units.get(u, 0), d) for u, d in genesis.units.items()))
    _console().print(out)


@click.command()
@click.option("--pending", is_flag=True, help="Only offers awaiting an answer or reclaim.")
@json_option
@click.pass_context
@examples("  disco transfers --pending")
def transfers(ctx: click.Context, pending: bool, as_json: bool) -> None:
    """Transfers and their states."""
    with open_node(ctx) as node:
        ledger = node.ledger()
        rows = reports.transfers(ledger, pending_only=pending)
        genesis = node.require_genesis()
    if as_json:
        emit({"transfers": rows})
        return
    out = Table("ref", "from", "to", "amount", "state", title="Transfers")
    for r in rows:
        author, seq, digest = r["ref"].split(":")
        out.add_row(short_ref(author, int(seq), digest), ledger.lab_name(r["from"]),
                    ledger.lab_name(r["to"]),
                    f"{amount_text(r['amount'], genesis.units[r['unit']])} {r['unit']}",
                    r["state"])
    _console().print(out)


@click.command()
@click.option("--period", help="One month, YYYY-MM.")
@click.option("--by", type=click.Choice(["stream", "lab", "member"]), default="stream",
              show_default=True)
@json_option
@click.pass_context
@examples("  disco flows --period 2026-11 --by lab")
def flows(ctx: click.Context, period: str | None, by: str, as_json: bool) -> None:
    """Value flows: contributed hours and completed transfers."""
    with open_node(ctx) as node:
        ledger = node.ledger()
        report = reports.flows(ledger, period=_period(period), by=by)
        genesis = node.require_genesis()
    if as_json:
        emit(report)
        return
    out = Table(*(["stream"] if by == "stream" else ["LAB", "for" if by == "lab" else
                                                       "member", "stream"]), "hours",
                title=f"Contributions by {by}" + (f" in {period}" if period else ""))
    for row in report["contributions"]:
        key = [ledger.lab_name(k) if isinstance(k, bytes) else k for k in row["key"]]
        out.add_row(*key, f"{row['minutes'] / 60:.2f}")
    _console().print(out)
    moved = Table("from", "to", "amount", title="Completed transfers")
    for t in report["transfers"]:
        moved.add_row(ledger.lab_name(t["from"]), ledger.lab_name(t["to"]),
                      f"{amount_text(t['amount'], genesis.units[t['unit']])} {t['unit']}")
    _console().print(moved)


@click.command()
@click.option("--period", required=True, help="Month, YYYY-MM.")
@click.option("--unit", help="Unit (default: the federation's first).")
@click.option("--lab", metavar="LAB", help="Another LAB, by name or id prefix (default: "
              "this one).")
@json_option
@click.pass_context
@examples("  disco payout --period 2026-11")
def payout(ctx: click.Context, period: str, unit: str | None, lab: str | None,
           as_json: bool) -> None:
    """DisCO creditflow: share a period's income among members by policy and hours."""
    with open_node(ctx) as node:
        genesis = node.require_genesis()
        unit = unit or next(iter(genesis.units))
        decimals = _unit_decimals(node, unit)
        lab_id = resolve_lab(node, lab, "--lab") if lab else node.lab_id
        result = reports.payout(node.ledger(), lab_id, _period(period) or period, unit)
    if as_json:
        emit(result.as_json())
        return
    click.echo(f"Income {amount_text(result.income, decimals)} {unit} for {period}; "
               + _policy_line(dict(result.weights), result.care_ratio))
    click.echo(f"Formula: {result.formula}")
    out = Table("member", "livelihood h", "love h", "care h", f"share {unit}")
    for member, amount in result.shares.items():
        m = result.minutes.get(member, {})
        out.add_row(member, *(f"{m.get(s, 0) / 60:.2f}" for s in ("livelihood", "love", "care")),
                    amount_text(amount, decimals))
    _console().print(out)


@click.command()
@json_option
@click.pass_context
@examples("  disco rebuild")
def rebuild(ctx: click.Context, as_json: bool) -> None:
    """Recompute the ledger projection from nothing; prints the state digest.

    Every entry is checked before it is applied (signature, chain link, body hash,
    seq: what 'disco verify' checks). An entry that fails is skipped and named,
    with the later entries of its feed; the exit code is then 1. A progress bar shows
    on a terminal (not with --json).
    """
    with open_node(ctx) as node:
        total = node.store.max_notification_id()
        with progress_bar("rebuilding", total, enabled=shows_progress(as_json)) as update:
            digest = node.rebuild(update).digest().hex()
        skipped = node.skipped
    assert skipped is not None
    report = skipped.as_json()
    ok = not report["skipped"] and not report["held"]
    if as_json:
        emit({"state_digest": digest, "ok": ok, **report})
    else:
        click.echo(f"ledger rebuilt; state digest {digest}")
        for p in skipped.problems:
            click.echo(f"skipped feed {p.author} seq {p.seq}: {p.code}: {p.message}", err=True)
        for held in report["held"]:
            click.echo(f"held feed {held['author']} before seq {held['from_seq']}: "
                       f"{held['not_applied']} entries not applied", err=True)
    if not ok:
        ctx.exit(1)


@click.command("export-vf")
@click.option("--out", type=click.Path(path_type=Path), help="Write to FILE (default: stdout).")
@json_option
@click.pass_context
@examples("  disco export-vf --out federation.jsonld\n"
          "  disco export-vf --out federation.jsonld --json   # {\"events\": N, \"file\": ...}")
def export_vf(ctx: click.Context, out: Path | None, as_json: bool) -> None:
    """ValueFlows JSON-LD: contributions as work events, completed transfers as transfers.

    Without --out the JSON-LD document itself goes to stdout (it is JSON already);
    with --out and --json a summary does. An existing FILE is not overwritten (exit 2)."""
    with open_node(ctx) as node:
        ledger = node.ledger()
        if out is None:
            count = write_jsonld(sys.stdout, node.log(), ledger)
        else:
            try:
                f = out.open("x", encoding="utf-8")
            except FileExistsError:
                raise Failure(f"{out} exists; not overwriting it", EXIT_UNUSABLE) from None
            with f:
                count = write_jsonld(f, node.log(), ledger)
    if out is not None and as_json:
        emit({"events": count, "file": str(out)})
    elif out is not None:
        click.echo(f"{count} ValueFlows events written to {out}", err=True)
