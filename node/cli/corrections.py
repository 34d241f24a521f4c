"""Commands that mend a mistake of the LAB's own feed: ``correct`` and ``void``.

The rules (which entries, by whom, how often) are the ledger's
(:mod:`federation.corrections`); these commands build the entry a person means and
let the ledger refuse it, with its reason and code (exit 1). What cannot be an
entry at all (a bad ref, hours, amount, date, an option that does not fit the
entry named) is a usage error (exit 2).
"""

from __future__ import annotations

from typing import Any

import click

from federation.corrections import in_force, not_amendable
from federation.kinds import CORRECTION_OF, SCHEMAS, STREAMS, entry_body
from node.cli.common import (
    Failure,
    examples,
    json_option,
    now_us,
    open_node,
    parse_amount,
    parse_day,
    parse_hours,
    resolve_ref,
)
from node.cli.entries import _report
from node.cli.ledger import _period, _unit_decimals
from node.lab import LabNode

_CONTRIBUTION = ("member", "stream", "hours", "project", "note")
_INCOME = ("amount", "unit", "period", "source")


def _reason(text: str | None) -> str | None:
    """``--reason`` checked as the bodies check it; a usage error (exit 2) otherwise."""
    if text is None:
        return None
    problem = SCHEMAS["entry.voided"].fields["reason"](text)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--reason")
    return text


def _misfit(given: dict[str, Any], names: tuple[str, ...], what: str, takes: str) -> None:
    """A usage error (exit 2) when an option of ``names`` was given for ``what``."""
    wrong = [name for name in names if given.get(name) is not None]
    if wrong:
        raise click.UsageError(f"--{wrong[0]} does not apply to {what}; it takes {takes}")


@click.command()
@click.argument("ref")
@click.option("--member", help="Contribution: the member's handle.")
@click.option("--stream", type=click.Choice(STREAMS), help="Contribution: value stream.")
@click.option("--hours", help="Contribution: hours worked, 2.5 or 2:30.")
@click.option("--project", help="Contribution: project name.")
@click.option("--note", help="Contribution: a short note.")
@click.option("--date", "day", metavar="YYYY-MM-DD",
              help="Contribution: the day the work was done (it moves the hours to that "
                   "month). Income: a day of its month, instead of --period.")
@click.option("--amount", help="Income: the amount in the unit's decimals.")
@click.option("--unit", help="Income: unit code.")
@click.option("--period", help="Income: month, YYYY-MM.")
@click.option("--source", help="Income: where it came from.")
@click.option("--reason", help="Why it is corrected (kept in the log).")
@json_option
@click.pass_context
@examples("  disco correct 3f2a:7 --hours 2:30 --date 2026-10-30 --reason 'typo'\n"
          "  disco correct 3f2a:9 --amount 420.00 --reason 'invoice was 420'")
def correct(ctx: click.Context, /, ref: str, day: str | None, reason: str | None,
            as_json: bool, **given: Any) -> None:
    """Correct a contribution or an income of this LAB (REF or an unambiguous prefix):
    contribution.corrected or income.corrected.

    The options name what changes; the rest stays as it is (as recorded, or as last
    corrected). Reports, payout and export-vf count the corrected figures; the
    original stays in the log. Correcting again replaces the last correction (give
    the original's REF). The LAB a contribution was for stays: void it and record it
    again. Transfers cannot be corrected (mutual credit with another LAB): decline,
    reclaim, or offer a transfer back."""
    day, reason = parse_day(day), _reason(reason)
    if day is None and all(v is None for v in given.values()):
        raise click.UsageError("nothing to correct: give what changes (--hours, --stream, "
                               "--member, --date, --project, --note for a contribution; "
                               "--amount, --unit, --period, --date, --source for an income)")
    with open_node(ctx, writer=True) as node:
        target_ref = resolve_ref(node, ref)
        target = node.store.get(target_ref.author, target_ref.seq)
        assert target is not None  # resolve_ref names held entries only
        problem = not_amendable(target.kind, None)
        if problem is not None:
            raise Failure(f"refused: {problem} [not-correctable]")
        now = in_force(node.ledger(), target) or target  # voided: the ledger says so
        held = entry_body(now)
        if held is None:
            raise Failure("refused: the entry's body is redacted here: nothing to correct")
        body = {k: v for k, v in held.items() if k not in ("entry", "reason")}
        if target.kind == "contribution.recorded":
            _misfit(given, _INCOME, "a contribution", "--" + ", --".join(_CONTRIBUTION)
                    + ", --date")
            _contribution(body, given, day)
        else:
            _misfit(given, _CONTRIBUTION, "an income", "--" + ", --".join(_INCOME)
                    + ", --date")
            _income(node, body, given, day)
        body["entry"] = target_ref.as_list()
        if reason is not None:
            body["reason"] = reason
        entry = node.author(CORRECTION_OF[target.kind], body, now_us())
    _report(entry, as_json)


def _contribution(body: dict[str, Any], given: dict[str, Any], day: str | None) -> None:
    """Change a contribution ``body`` as the options say."""
    for name in ("member", "stream", "project", "note"):
        if given[name] is not None:
            body[name] = given[name]
    if given["hours"] is not None:
        body["minutes"] = parse_hours(given["hours"])
    if day is not None:
        body["date"] = day


def _income(node: LabNode, body: dict[str, Any], given: dict[str, Any], day: str | None) -> None:
    """Change an income ``body`` as the options say (amounts in the unit's decimals)."""
    period = _period(given["period"])
    if day is not None and period is not None and day[:7] != period:
        raise click.BadParameter(f"{day} is not in {period}; give one of them",
                                 param_hint="--date")
    if given["unit"] is not None:
        decimals = _unit_decimals(node, given["unit"])
        if given["amount"] is None and decimals != _unit_decimals(node, body["unit"]):
            raise click.UsageError("--unit: give --amount too (the units' decimals differ)")
        body["unit"] = given["unit"]
    if given["amount"] is not None:
        body["amount"] = parse_amount(given["amount"], _unit_decimals(node, body["unit"]))
    if period or day:
        body["period"] = period or (day[:7] if day else None)
    if given["source"] is not None:
        body["source"] = given["source"]


@click.command()
@click.argument("ref")
@click.option("--reason", required=True, help="Why it is cancelled (kept in the log).")
@json_option
@click.pass_context
@examples("  disco void 3f2a:9 --reason 'booked twice'")
def void(ctx: click.Context, ref: str, reason: str, as_json: bool) -> None:
    """Cancel a contribution, an income or an acknowledgement of this LAB (REF or an
    unambiguous prefix): entry.voided.

    Reports, payout and export-vf no longer count it; the original and the void stay
    in the log. A voided entry cannot be corrected or voided again. A voided
    acknowledgement lets the contribution be acknowledged again. Transfers cannot be
    voided (mutual credit with another LAB): decline, reclaim, or offer a transfer
    back."""
    reason = _reason(reason) or reason
    with open_node(ctx, writer=True) as node:
        body = {"entry": resolve_ref(node, ref).as_list(), "reason": reason}
        entry = node.author("entry.voided", body, now_us())
    _report(entry, as_json)
