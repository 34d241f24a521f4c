"""Governance commands: ``propose``, ``vote``, ``proposals``, ``leave`` and ``key``.

The rules (who votes, the threshold, expiry, what a decision does) are the
federation's (:mod:`federation.governance`); these commands build the entry a
person means and let the ledger refuse it, with its reason and code (exit 1). What
cannot be an entry at all (a bad id, key, ref, fraction or amount) is a usage
error (exit 2). A proposal that could not pass as the roster stands (admitting a
LAB already in it, removing one already removed) is refused before it is signed,
with the reason the ledger would reject it for (``cannot-apply``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Column, Table

from federation.genesis import MAX_EXPIRY_DAYS
from federation.governance import LAPSED, OPEN, REJECTED, Act, Proposal, decide
from federation.kinds import MAX_SEQ, SCHEMAS
from federation.ledger import Ledger
from federation.valueflows import amount_text
from node.cli.common import (
    EXIT_UNUSABLE,
    Failure,
    emit,
    examples,
    home_path,
    json_option,
    new_passphrase,
    now_us,
    open_node,
    parse_amount,
    parse_key,
    parse_lab_id,
    parse_threshold,
    passphrase_for,
    resolve_lab,
    resolve_ref,
    short_ref,
)
from node.cli.entries import _report
from node.cli.ledger import _console, _unit_decimals
from node.home import KEY, Home, load_private_key, save_private_key
from node.lab import LabNode
from protocol.entry import Entry, Ref
from protocol.keys import Signer

NEW_KEY = KEY + ".new"
"""A new key waits here until the entry that puts it in force is stored."""


def parse_note(text: str | None, hint: str = "--note") -> str | None:
    """``--note`` checked as the bodies check it; a usage error (exit 2) otherwise."""
    if text is None:
        return None
    problem = SCHEMAS["proposal.made"].fields["note"](text)
    if problem is not None:
        raise click.BadParameter(problem, param_hint=hint)
    return text


def note_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--note", help="Why (kept in the log with the entry).")(f)


# -- proposals -------------------------------------------------------------------


def author_proposal(node: LabNode, body: dict[str, Any], now: int) -> Entry:
    """Author ``proposal.made`` with ``body`` (its action's fields), after checking
    that the proposal could pass as the roster stands: one the ledger would reject
    at once (:func:`~federation.governance.decide`) raises :class:`Failure` with the
    ledger's reason (``cannot-apply``); any other refusal raises as
    :meth:`LabNode.author` does."""
    ledger = node.ledger()
    seq = max(node.store.head(node.lab_id)[0], ledger.applied(node.lab_id)) + 1
    trial = Act(node.lab_id, seq, b"\0" * 32, now, "proposal.made", body)
    outcome = decide(node.require_genesis(), [*ledger.acts.values(), trial])
    proposal = outcome.proposals.get((node.lab_id, seq))
    if proposal is not None and proposal.state == REJECTED:
        raise Failure(f"refused: this proposal could not pass: {proposal.reason} "
                      "[cannot-apply]")
    return node.author("proposal.made", body, now)


def _propose(ctx: click.Context, note: str | None, as_json: bool,
             build: Callable[[LabNode], dict[str, Any]]) -> None:
    """Open the node with its key, build the proposal's body, author it, report it."""
    note = parse_note(note)
    with open_node(ctx, writer=True) as node:
        body = build(node)
        if note is not None:
            body["note"] = note
        entry = author_proposal(node, body, now_us())
    _report(entry, as_json)


@click.group()
def propose() -> None:
    """Propose a change to the federation: proposal.made.

    The proposal is this LAB's yes vote; it passes once enough LABs vote yes ('disco
    vote'; the threshold is a rule of the federation, 2/3 of the voting LABs unless
    changed) and lapses if it has not passed within the expiry (30 days unless
    changed). 'disco proposals' lists them."""


@propose.command("admit")
@click.option("--lab", "lab", required=True, metavar="LAB_ID",
              help="The new LAB's id (64 hex digits: 'disco init' prints it).")
@click.option("--name", required=True, help="The new LAB's name.")
@note_option
@json_option
@click.pass_context
@examples("  disco propose admit --lab 5e0d...c41a --name 'Green Roofs'")
def propose_admit(ctx: click.Context, lab: str, name: str, note: str | None,
                  as_json: bool) -> None:
    """Propose to admit a LAB: once passed, it joins with the genesis file and a peer,
    and records and transfers like a founder."""
    lab_id = parse_lab_id(lab)
    problem = SCHEMAS["proposal.made"].fields["name"](name)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--name")
    _propose(ctx, note, as_json, lambda node: {"action": "admit", "lab": lab_id, "name": name})


@propose.command("remove")
@click.option("--lab", "lab", required=True, metavar="LAB",
              help="The LAB: its name or a unique prefix of its id.")
@click.option("--last-seq", type=click.IntRange(0, MAX_SEQ),
              help="The last entry of its feed that counts (default: the last one this "
                   "node holds).")
@note_option
@json_option
@click.pass_context
@examples("  disco propose remove --lab 'Fab Lab' --note 'gone silent for a year'\n"
          "  disco propose remove --lab 9c1b --last-seq 120")
def propose_remove(ctx: click.Context, lab: str, last_seq: int | None, note: str | None,
                   as_json: bool) -> None:
    """Propose to remove a LAB: nothing of its feed after --last-seq counts, its
    balance stays on the books, and offers to it that it did not answer can be
    reclaimed. The LAB does not vote on it."""
    def build(node: LabNode) -> dict[str, Any]:
        lab_id = resolve_lab(node, lab, "--lab")
        last = node.store.head(lab_id)[0] if last_seq is None else last_seq
        return {"action": "remove", "lab": lab_id, "last_seq": last}
    _propose(ctx, note, as_json, build)


@propose.command("recover")
@click.option("--lab", "lab", required=True, metavar="LAB",
              help="The LAB whose key was lost or stolen: its name or id prefix.")
@click.option("--key", required=True, metavar="PUBKEY_HEX",
              help="Its new public key (64 hex digits: 'disco key new' prints it).")
@click.option("--from-seq", type=click.IntRange(1, MAX_SEQ),
              help="The first entry the new key signs (default: one past the LAB's last "
                   "entry this node holds).")
@note_option
@json_option
@click.pass_context
@examples("  disco propose recover --lab Farm --key 7d3e...90ab --from-seq 42")
def propose_recover(ctx: click.Context, lab: str, key: str, from_seq: int | None,
                    note: str | None, as_json: bool) -> None:
    """Propose a new key for a LAB that lost its key (or had it stolen): once passed,
    the new key signs its feed from --from-seq, and entries the old key signs from
    there do not count. The LAB does not vote on it."""
    new_key = parse_key(key)

    def build(node: LabNode) -> dict[str, Any]:
        lab_id = resolve_lab(node, lab, "--lab")
        start = node.store.head(lab_id)[0] + 1 if from_seq is None else from_seq
        return {"action": "recover", "lab": lab_id, "key": new_key, "from_seq": start}
    _propose(ctx, note, as_json, build)


@propose.command("repair")
@click.option("--lab", "lab", required=True, metavar="LAB",
              help="The LAB whose feed forked: its name or id prefix.")
@click.option("--keep", required=True, metavar="REF",
              help="The entry of its feed the feed continues from (REF or a prefix).")
@click.option("--key", required=True, metavar="PUBKEY_HEX",
              help="The key that signs the feed after it (the old one signed two "
                   "histories).")
@note_option
@json_option
@click.pass_context
@examples("  disco propose repair --lab Farm --keep 3f2a:41 --key 7d3e...90ab")
def propose_repair(ctx: click.Context, lab: str, keep: str, key: str, note: str | None,
                   as_json: bool) -> None:
    """Propose to repair a forked feed: once passed, the feed continues from --keep
    signed by --key, on every node; entries of the other branch stay as evidence and
    count for nothing. The LAB does not vote on it."""
    new_key = parse_key(key)

    def build(node: LabNode) -> dict[str, Any]:
        lab_id = resolve_lab(node, lab, "--lab")
        return {"action": "repair", "lab": lab_id, "keep": resolve_ref(node, keep).as_list(),
                "key": new_key}
    _propose(ctx, note, as_json, build)


@propose.command("rule")
@click.option("--credit-limit", metavar="CODE=AMOUNT",
              help="A new credit limit per LAB in a unit, in its decimals, e.g. "
                   "JXC=2000.00.")
@click.option("--threshold", metavar="N/D",
              help="A new voting threshold: at least N/D of the voting LABs, e.g. 3/4.")
@click.option("--expiry-days", type=click.IntRange(1, MAX_EXPIRY_DAYS),
              help="A new expiry: a proposal not passed within this many days lapses.")
@note_option
@json_option
@click.pass_context
@examples("  disco propose rule --credit-limit JXC=2000.00\n"
          "  disco propose rule --threshold 3/4 --expiry-days 14")
def propose_rule(ctx: click.Context, credit_limit: str | None, threshold: str | None,
                 expiry_days: int | None, note: str | None, as_json: bool) -> None:
    """Propose to change the federation's rules (any of the options, at least one).

    Once passed, a credit limit applies to offers made from the deciding vote on; a
    threshold or an expiry to proposals made from then on."""
    if credit_limit is None and threshold is None and expiry_days is None:
        raise click.UsageError("name a rule to change: --credit-limit, --threshold or "
                               "--expiry-days")
    fraction = parse_threshold(threshold) if threshold is not None else None
    if credit_limit is not None and "=" not in credit_limit:
        raise click.BadParameter(f"{credit_limit!r}: want CODE=AMOUNT",
                                 param_hint="--credit-limit")

    def build(node: LabNode) -> dict[str, Any]:
        body: dict[str, Any] = {"action": "rule"}
        if credit_limit is not None:
            code, _, amount = credit_limit.partition("=")
            body["unit"] = code
            body["credit_limit"] = parse_amount(amount, _unit_decimals(node, code),
                                                at_least=0, hint="--credit-limit")
        if fraction is not None:
            body["threshold"] = list(fraction)
        if expiry_days is not None:
            body["expiry_days"] = expiry_days
        return body
    _propose(ctx, note, as_json, build)


# -- votes -----------------------------------------------------------------------


def resolve_proposal(node: LabNode, text: str) -> Proposal:
    """The proposal a person named: its ref ``AUTHOR:SEQ[:HASH]`` (hex prefixes
    allowed) or 4 or more hex digits of its hash. Raises click.BadParameter (exit 2)
    for what cannot be a ref, :class:`Failure` (exit 1) when it names no proposal
    held here, or several."""
    wanted = text.strip().lower()
    parts = wanted.split(":")
    hexdigits = set("0123456789abcdef")
    ok = (len(parts) == 1 and len(parts[0]) >= 4 and set(parts[0]) <= hexdigits) or (
        len(parts) in (2, 3) and parts[0] and set(parts[0]) <= hexdigits
        and parts[1].isascii() and parts[1].isdigit()
        and (len(parts) == 2 or set(parts[2]) <= hexdigits))
    if not ok:
        raise click.BadParameter(f"{text!r}: want a proposal's ref AUTHOR:SEQ:HASH (hex "
                                 "prefixes will do, e.g. 3f2a:7) or 4 or more hex digits "
                                 "of its hash", param_hint="REF")
    proposals = list(node.ledger().outcome.proposals.values())
    if len(parts) == 1:
        found = [p for p in proposals if p.ref.hash.hex().startswith(parts[0])]
    else:
        found = [p for p in proposals if p.ref.author.hex().startswith(parts[0])
                 and p.ref.seq == int(parts[1])
                 and (len(parts) == 2 or p.ref.hash.hex().startswith(parts[2]))]
    if not found:
        raise Failure(f"{text!r} names no proposal held here ('disco proposals' lists "
                      "them; run 'disco sync' first if it was made lately)")
    if len(found) > 1:
        listed = ", ".join(short_ref(p.ref.author, p.ref.seq, p.ref.hash) for p in found[:5])
        raise Failure(f"{text!r} names several proposals ({listed}); give more of the ref")
    return found[0]


VOTES = ("yes", "no")


def author_vote(node: LabNode, proposal: Proposal, choice: str, note: str | None,
                now: int) -> tuple[Entry, Proposal]:
    """Author this LAB's ``proposal.voted`` ``choice`` (yes or no, checked by the
    caller, as ``note`` is) on ``proposal`` (:func:`resolve_proposal`); returns the
    entry and the proposal as the vote left it. Raises as :meth:`LabNode.author`
    does when the ledger refuses the vote (``already-voted``, ``not-a-voter``,
    ``vote-late``): ``disco vote`` and the dashboard's vote both come here."""
    body: dict[str, Any] = {"proposal": proposal.ref.as_list(), "vote": choice}
    if note is not None:
        body["note"] = note
    entry = node.author("proposal.voted", body, now)
    return entry, node.ledger().outcome.proposals[(proposal.ref.author, proposal.ref.seq)]


@click.command()
@click.argument("ref")
@click.argument("choice", metavar="yes|no", type=click.Choice(VOTES))
@note_option
@json_option
@click.pass_context
@examples("  disco vote 3f2a:7 yes\n  disco vote 3f2a:7 no --note 'not before the assembly'")
def vote(ctx: click.Context, ref: str, choice: str, note: str | None, as_json: bool) -> None:
    """Vote on a proposal (REF or an unambiguous prefix; 'disco proposals' lists them):
    proposal.voted. A LAB's first vote on a proposal counts; its proposer's proposal
    is already its yes."""
    note = parse_note(note)
    with open_node(ctx, writer=True) as node:
        proposal = resolve_proposal(node, ref)
        entry, after = author_vote(node, proposal, choice, note, now_us())
        state = after.state_at(now_us())
    if as_json:
        emit({"ref": str(entry.ref), "kind": entry.kind, "seq": entry.seq,
              "proposal": str(proposal.ref), "state": state})
    else:
        _report(entry, False)
        click.echo(f"proposal {short_ref(proposal.ref.author, proposal.ref.seq)} is {state}: "
                   f"{_tally(after)}")


def _tally(p: Proposal) -> str:
    yes = sum(1 for v in p.votes.values() if v == "yes")
    return (f"{yes} yes, {len(p.votes) - yes} no; {p.needed} yes needed of "
            f"{len(p.voters)} voters")


# -- the list --------------------------------------------------------------------


def _iso(ts_us: int | None) -> str | None:
    if ts_us is None:
        return None
    try:
        return datetime.fromtimestamp(ts_us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return None


def proposal_fields(body: Mapping[str, Any], units: Mapping[str, int]) -> dict[str, Any]:
    """A proposal's action and fields (its checked ``proposal.made`` body) as a person
    reads them: ids and keys in hex, refs as text, a credit limit in its unit's
    decimals, a threshold as N/D."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name == "keep":
            out[name] = str(Ref.from_value(value))
        elif name == "credit_limit":
            out[name] = amount_text(value, units.get(body.get("unit", ""), 0))
        elif name == "threshold":
            out[name] = f"{value[0]}/{value[1]}"
        elif isinstance(value, bytes):
            out[name] = value.hex()
        else:
            out[name] = value
    return out


def proposal_rows(ledger: Ledger, now: int, open_only: bool = False) -> list[dict[str, Any]]:
    """Every proposal that counts, in the order they are decided (made, then hash):
    ``{ref, action, proposer, state, votes, needed}`` with ``state`` open, passed,
    lapsed (open past its expiry at ``now``) or rejected, and ``reason``,
    ``voters``, ``made``, ``expires``, ``decided`` and the action's fields
    (:func:`proposal_fields`)."""
    rows = []
    units = ledger.genesis.units
    for p in sorted(ledger.outcome.proposals.values(), key=lambda p: (p.ts_us, p.ref.hash)):
        state = p.state_at(now)
        if open_only and state != OPEN:
            continue
        rows.append({"ref": str(p.ref), "action": p.action, "proposer": p.ref.author.hex(),
                     "state": state, "votes": {lab.hex(): v for lab, v in p.votes.items()},
                     "needed": p.needed, "reason": p.reason,
                     "voters": [lab.hex() for lab in p.voters], "made": _iso(p.ts_us),
                     "expires": _iso(p.expires_us), "decided": _iso(p.decided_us),
                     **proposal_fields(p.body, units)})
    return rows


def proposal_about(row: Mapping[str, Any], ledger: Ledger) -> str:
    """What a proposal is about, in one line (``row``: :func:`proposal_fields`'s, or
    :func:`proposal_rows`'), the LAB it names by its roster name."""
    def lab() -> str:
        return ledger.lab_name(bytes.fromhex(row["lab"]))
    action = row["action"]
    if action == "admit":
        return f"{row['name']} ({row['lab'][:8]})"
    if action == "remove":
        return f"{lab()} after seq {row['last_seq']}"
    if action == "recover":
        return f"{lab()}: key {row['key'][:8]} from seq {row['from_seq']}"
    if action == "repair":
        author, seq, digest = row["keep"].split(":")
        return f"{lab()}: keep {short_ref(author, int(seq), digest)}, key {row['key'][:8]}"
    rules = []
    if "unit" in row:
        rules.append(f"credit limit {row['credit_limit']} {row['unit']}")
    if "threshold" in row:
        rules.append(f"threshold {row['threshold']}")
    if "expiry_days" in row:
        rules.append(f"expiry {row['expiry_days']} days")
    return "; ".join(rules)


@click.command()
@click.option("--open", "open_only", is_flag=True, help="Only proposals still open.")
@json_option
@click.pass_context
@examples("  disco proposals --open\n"
          "  disco proposals --json | jq '.[] | select(.state == \"open\")'")
def proposals(ctx: click.Context, open_only: bool, as_json: bool) -> None:
    """Proposals and their states: open, passed, lapsed (not passed within the
    expiry, by this node's clock) or rejected (voted down, or unable to apply, with
    the reason), with the votes held here and the yes votes needed."""
    with open_node(ctx) as node:
        ledger = node.ledger()
        rows = proposal_rows(ledger, now_us(), open_only)
    if as_json:
        emit(rows)  # (the contract: a list of proposals)
        return
    if not rows:
        click.echo("no open proposals" if open_only else
                   "no proposals yet; 'disco propose --help' says how to make one")
        return
    out = Table(Column("ref", no_wrap=True), "action", "about", "by", "state", "votes",
                Column("expires", no_wrap=True), title="Proposals")
    for r in rows:
        author, seq, digest = r["ref"].split(":")
        yes = sum(1 for v in r["votes"].values() if v == "yes")
        state = r["state"] + (f" ({r['reason']})" if r["reason"] else "")
        out.add_row(short_ref(author, int(seq), digest), r["action"], proposal_about(r, ledger),
                    ledger.lab_name(bytes.fromhex(r["proposer"])), state,
                    f"{yes} yes, {len(r['votes']) - yes} no; {r['needed']} needed",
                    (r["expires"] or "")[:10] if r["state"] in (OPEN, LAPSED) else "")
    _console().print(out)


# -- leaving ---------------------------------------------------------------------


@click.command()
@note_option
@click.option("--yes", "confirmed", is_flag=True, help="Do not ask: leaving is final.")
@json_option
@click.pass_context
@examples("  disco leave --note 'merged into Fab Lab' --yes")
def leave(ctx: click.Context, note: str | None, confirmed: bool, as_json: bool) -> None:
    """Leave the federation: lab.left, this LAB's last counted entry. It is final.

    The LAB's balance stays on the books; offers to it that it has not answered can
    be reclaimed by their payers; nothing it writes after this counts. Without --yes
    it asks first."""
    note = parse_note(note)
    with open_node(ctx, writer=True) as node:
        name = node.ledger().roster.get(node.lab_id, node.home.name)
        if not confirmed:
            click.confirm(f"LAB {name} leaves the federation for good: nothing it writes "
                          "after this counts. Leave?", abort=True, err=True)
        entry = node.author("lab.left", {} if note is None else {"note": note}, now_us())
    _report(entry, as_json)
    if not as_json:
        click.echo(f"LAB {name} has left the federation; its feed counts to seq {entry.seq}")


# -- keys ------------------------------------------------------------------------


@click.group()
def key() -> None:
    """The LAB's key: rotate it, or make a new one when it is lost."""


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _set_aside(path: Path) -> Path:
    """Copy the key file ``path`` to ``path.old-TIMESTAMP`` (mode 0600, synced) and
    return the copy's path; ``path`` stays as it is."""
    aside = path.with_name(f"{path.name}.old-{_stamp()}")
    data = path.read_bytes()
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return aside


def _put_in_place(home: Home, fresh: Path) -> Path | None:
    """Make ``fresh`` the home's key file (an atomic rename), the old one kept aside
    first (:func:`_set_aside`); returns where the old one is kept (None: there was
    none)."""
    aside = _set_aside(home.key_path) if home.key_path.exists() else None
    fresh.replace(home.key_path)
    try:
        fd = os.open(home.path, os.O_RDONLY)
    except OSError:  # (no directory fsync here)
        return aside
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return aside


@key.command("rotate")
@note_option
@json_option
@click.pass_context
@examples("  disco key rotate")
def key_rotate(ctx: click.Context, note: str | None, as_json: bool) -> None:
    """Replace the LAB key by a new one: key.rotated, signed by the current key,
    names the new key, which signs the LAB's feed from the next entry on.

    The new key is written beside the old one first (encrypted with the same
    passphrase if the old one is), then put in place of lab.key; the old key is kept
    as lab.key.old-TIMESTAMP (it no longer signs anything). Peers take the new key
    once they hold the rotation: sync soon after."""
    note = parse_note(note)
    home = Home.open(home_path(ctx))
    home.check_key_file()
    passphrase = passphrase_for(home)
    signer = home.signer(passphrase)
    fresh = home.path / NEW_KEY
    with LabNode.open(home, signer) as node:
        if fresh.exists():
            _finish_rotation(node, fresh, passphrase, as_json)
            return
        new = Signer.generate()
        save_private_key(fresh, new, passphrase)
        try:
            body: dict[str, Any] = {"key": new.public_key}
            if note is not None:
                body["note"] = note
            entry = node.author("key.rotated", body, now_us())
        except BaseException:
            fresh.unlink(missing_ok=True)
            raise
    aside = _put_in_place(home, fresh)
    _rotated(new.public_key, entry.seq + 1, aside, as_json, entry)


def _finish_rotation(node: LabNode, fresh: Path, passphrase: bytes | None,
                     as_json: bool) -> None:
    """A key rotation stopped between its entry and its rename left ``fresh``: put
    it in place if it is the key in force now, else remove it (a key no entry names
    signs nothing) and say to run the command again."""
    waiting = load_private_key(fresh, passphrase)
    head = node.store.head(node.lab_id)[0]
    if node.ledger().outcome.key_at(node.lab_id, head + 1) != waiting.public_key:
        fresh.unlink()
        raise Failure(f"removed {fresh}, left by a key rotation that did not finish (no "
                      "entry names its key); run 'disco key rotate' again")
    aside = _put_in_place(node.home, fresh)
    _rotated(waiting.public_key, head + 1, aside, as_json, None)


def _rotated(public: bytes, from_seq: int, aside: Path | None, as_json: bool,
             entry: Entry | None) -> None:
    if as_json:
        emit({"key": public.hex(), "from_seq": from_seq,
              "ref": str(entry.ref) if entry else None,
              "old_key_file": str(aside) if aside else None})
        return
    if entry is not None:
        _report(entry, False)
    click.echo(f"new key {public.hex()} signs this LAB's feed from seq {from_seq}")
    if aside is not None:
        click.echo(f"the old key is kept in {aside}; it signs nothing from now on")


@key.command("new")
@click.option("--force", is_flag=True,
              help="Even though a lab.key exists (it is kept as lab.key.old-TIMESTAMP).")
@click.option("--encrypt", is_flag=True,
              help="Encrypt the key with a passphrase (DISCO_PASSPHRASE or a prompt).")
@json_option
@click.pass_context
@examples("  disco key new\n  disco key new --force   # the key file is there but stolen")
def key_new(ctx: click.Context, force: bool, encrypt: bool, as_json: bool) -> None:
    """Make a new key for a LAB whose key is lost (or stolen), and print the line the
    other LABs run to propose its recovery.

    The node authors nothing with it until the recovery passes ('disco proposals';
    then 'disco sync'). Without --force it refuses when a lab.key exists."""
    home = Home.open(home_path(ctx))
    if home.key_path.exists() and not force:
        raise Failure(f"{home.key_path} exists; give --force to make a new key anyway "
                      "(the old file is kept beside it)", EXIT_UNUSABLE)
    passphrase = new_passphrase() if encrypt else None
    with LabNode.open(home) as node:
        from_seq = node.store.head(node.lab_id)[0] + 1
        joined = node.genesis is not None
    new = Signer.generate()
    fresh = home.path / f"{NEW_KEY}-{_stamp()}"
    save_private_key(fresh, new, passphrase)
    aside = _put_in_place(home, fresh)
    command = (f"disco propose recover --lab {home.lab_id.hex()} --key {new.public_key.hex()}"
               f" --from-seq {from_seq}")
    if as_json:
        emit({"key": new.public_key.hex(), "lab": home.lab_id.hex(), "from_seq": from_seq,
              "command": command, "old_key_file": str(aside) if aside else None})
        return
    click.echo(f"new key {new.public_key.hex()} saved in {home.key_path}")
    if aside is not None:
        click.echo(f"the old key file is kept in {aside}")
    if joined:
        click.echo("It signs this LAB's feed once the federation recovers the LAB's key. "
                   "Ask the other LABs to run:")
        click.echo(f"  {command}")
