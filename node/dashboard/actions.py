"""The dashboard's writes: each a POST (with the session's CSRF token, checked by
:mod:`node.dashboard.access`) that goes through the node's own methods, as the
command line does, with the command line's parsers and messages.

A write that succeeds redirects (303) to its page with a message; one that is
refused renders the page again with the form's values and the reason, the same
words ``disco`` prints: 400 for input that cannot be used, 409 for an entry the
ledger's rules refuse (over the credit limit, an offer already answered).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import urlencode

import click
from aiohttp import web

from federation.audit import audit_bundle
from federation.errors import FederationError
from federation.kinds import STREAMS
from node.audit_workers import SignatureWorkers
from node.bundle import export_bundle
from node.cli.common import (
    now_us,
    parse_amount,
    parse_day,
    parse_hours,
    resolve_lab,
    resolve_ref,
    translate,
)
from node.cli.governance import VOTES, author_vote, parse_note, resolve_proposal
from node.cli.ledger import author_offer, author_reclaim
from node.dashboard.access import ACCESS, SESSION
from node.dashboard.pages import AUDIT, SERVICE, render
from node.errors import NodeError
from node.lab import LabNode
from protocol.entry import Entry
from protocol.errors import ProtocolError

CHUNK = 1 << 20


def refusal(error: Exception) -> tuple[int, str]:
    """The status and the one-line reason for a refused write (the CLI's words)."""
    if isinstance(error, (click.BadParameter, click.UsageError)):
        return 400, error.format_message()
    if isinstance(error, click.ClickException):
        return 409, error.format_message()
    if isinstance(error, (FederationError, NodeError, ProtocolError)):
        return 409, translate(error).format_message()
    raise error


async def _form(request: web.Request) -> dict[str, str]:
    return {k: str(v).strip() for k, v in (await request.post()).items() if k != "csrf"}


async def _write(request: web.Request, page: str, form: dict[str, str],
                 fn: Callable[[LabNode], Entry], done: Callable[[Entry], str],
                 back: str) -> web.Response:
    """Author an entry with ``fn`` in the writer thread; on success 303 to ``back``
    with the message ``done(entry)``, else the page with the reason."""
    service = request.app[SERVICE]
    try:
        entry = await service.write(fn, service.node)
    except (click.ClickException, FederationError, NodeError, ProtocolError) as e:
        status, reason = refusal(e)
        return await render(request, page, {"error": reason, "form": form}, status)
    service.nudge()  # peers hear of it at once
    request[SESSION].flash = done(entry)
    raise web.HTTPSeeOther(back)


async def record(request: web.Request) -> web.Response:
    """Record a member's contribution (``disco record``)."""
    form = await _form(request)

    def author(node: LabNode) -> Entry:
        if form.get("stream") not in STREAMS:
            raise click.BadParameter(f"{form.get('stream')!r}: want one of "
                                     f"{', '.join(STREAMS)}", param_hint="stream")
        if not form.get("member"):
            raise click.BadParameter("give the member's handle", param_hint="member")
        body: dict[str, Any] = {"member": form["member"], "stream": form["stream"],
                                "minutes": parse_hours(form.get("hours", ""), "hours")}
        if form.get("date"):
            body["date"] = parse_day(form["date"], "date")
        for key in ("project", "note"):
            if form.get(key):
                body[key] = form[key]
        if form.get("for_lab"):
            body["for_lab"] = resolve_lab(node, form["for_lab"], "for")
        return node.author("contribution.recorded", body, now_us())

    return await _write(request, "contributions", form, author,
                        lambda e: f"recorded: contribution.recorded seq {e.seq}",
                        "/contributions?" + urlencode({"member": form.get("member", "")}))


async def offer(request: web.Request) -> web.Response:
    """Offer a transfer to another LAB (``disco transfer offer``)."""
    form = await _form(request)

    def author(node: LabNode) -> Entry:
        units = node.require_genesis().units
        unit = form.get("unit", "")
        if unit not in units:
            raise click.BadParameter(f"unit {unit!r} is not a unit of this federation "
                                     f"({', '.join(units)})", param_hint="unit")
        body: dict[str, Any] = {"to": resolve_lab(node, form.get("to", ""), "to"),
                                "unit": unit, "amount": parse_amount(
                                    form.get("amount", ""), units[unit], hint="amount")}
        if form.get("memo"):
            body["memo"] = form["memo"]
        return author_offer(node, body)

    return await _write(request, "transfers", form, author,
                        lambda e: f"offered: transfer.offered seq {e.seq} ({e.ref})",
                        "/transfers")


async def answer(request: web.Request) -> web.Response:
    """Accept or decline an offer made to this LAB (``disco transfer accept|decline``)."""
    form = await _form(request)
    kind = {"accept": "transfer.accepted", "decline": "transfer.declined"}.get(
        form.get("answer", ""))

    def author(node: LabNode) -> Entry:
        if kind is None:
            raise click.BadParameter(f"{form.get('answer')!r}: want accept or decline",
                                     param_hint="answer")
        body: dict[str, Any] = {"offer": resolve_ref(node, form.get("ref", "")).as_list()}
        if form.get("reason"):
            body["reason"] = form["reason"]
        return node.author(kind, body, now_us())

    return await _write(request, "transfers", form, author,
                        lambda e: f"{e.kind.split('.')[1]}: {e.kind} seq {e.seq}",
                        "/transfers")


async def reclaim(request: web.Request) -> web.Response:
    """Take back a declined offer of this LAB (``disco transfer reclaim``)."""
    form = await _form(request)
    return await _write(request, "transfers", form,
                        lambda node: author_reclaim(node, form.get("ref", "")),
                        lambda e: f"reclaimed: transfer.reclaimed seq {e.seq}",
                        "/transfers")


async def vote(request: web.Request) -> web.Response:
    """Vote yes or no on an open proposal (``disco vote``)."""
    form = await _form(request)

    def author(node: LabNode) -> Entry:
        choice = form.get("vote", "")
        if choice not in VOTES:
            raise click.BadParameter(f"{choice!r}: want yes or no", param_hint="vote")
        note = parse_note(form.get("note") or None, "note")
        proposal = resolve_proposal(node, form.get("ref", ""))
        return author_vote(node, proposal, choice, note, now_us())[0]

    return await _write(request, "federation", form, author,
                        lambda e: f"voted {form.get('vote')}: proposal.voted seq {e.seq}",
                        "/federation")


def _export(node: LabNode, out: BinaryIO, redact: str | None) -> int:
    return export_bundle(node, out, now_us(), redact_member=redact or None)


async def run_audit(request: web.Request) -> web.Response:
    """Audit the node's own store as an outsider would (``disco audit --home``):
    export a bundle of every feed, then check it trusting nothing."""
    service = request.app[SERVICE]
    state = request.app[AUDIT]
    if state.get("running"):
        request[SESSION].flash = "an audit is running already"
        raise web.HTTPSeeOther("/audit")
    state["running"] = True
    try:
        with tempfile.TemporaryFile() as f:
            await service.write(_export, service.node, f, None)
            f.seek(0)

            def check() -> Any:
                with SignatureWorkers.for_bundle(f) as workers:
                    return audit_bundle(f, check_signatures=workers)

            report = await asyncio.to_thread(check)
        service.home.record_check(ok=report.ok, problems=len(report.violations), by="audit")
        state.update(report=report.as_json(), at=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime()))
    finally:
        state["running"] = False
    request[SESSION].flash = ("audit passed" if report.ok
                              else f"audit FAILED: {len(report.violations)} violations")
    raise web.HTTPSeeOther("/audit")


async def export(request: web.Request) -> web.StreamResponse:
    """Download an export bundle (``disco export``), optionally with one member's
    entries redacted."""
    service = request.app[SERVICE]
    form = await _form(request)
    redact = form.get("redact") or None
    name = f"{service.home.name or 'lab'}-{time.strftime('%Y-%m-%d')}.bundle"
    name = "".join(c if c.isalnum() or c in "-._" else "-" for c in name)
    with tempfile.TemporaryFile() as f:
        await service.write(_export, service.node, f, redact)
        size = f.tell()
        f.seek(0)
        response = web.StreamResponse(headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{name}"'})
        await response.prepare(request)
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            await response.write(chunk)
        await response.write_eof()
    return response


async def sign_out(request: web.Request) -> web.Response:
    request.app[ACCESS].sign_out(request)
    response = web.HTTPSeeOther("/signin")
    response.del_cookie(request.app[ACCESS].cookie, path="/")
    raise response


def add_routes(app: web.Application) -> None:
    app.router.add_post("/contributions", record)
    app.router.add_post("/transfers/offer", offer)
    app.router.add_post("/transfers/answer", answer)
    app.router.add_post("/transfers/reclaim", reclaim)
    app.router.add_post("/federation/vote", vote)
    app.router.add_post("/audit/run", run_audit)
    app.router.add_post("/audit/export", export)
    app.router.add_post("/signout", sign_out)
