"""ValueFlows export: the settled ledger as JSON-LD (``disco export-vf``).

The document is ``{"@context": CONTEXT, "@graph": [agents..., events...]}`` with an
inline context (:data:`CONTEXT`), so it expands without fetching anything.

Agents:

- each LAB of the roster (the founders in the genesis's order, then the LABs the
  federation admitted, in the order the votes decided them; those that left or were
  removed too) is a ``vf:Organization``, ``urn:disco:lab:<LAB id hex>``, with its
  roster name (``foaf:name``);
- each member the ledger knows is a ``vf:Person``,
  ``urn:disco:lab:<LAB id hex>:member:<handle>``, with its display name and
  ``schema:memberOf`` its LAB. A member whose ``member.added`` was redacted has no
  node; events may still name its IRI.

Events (``vf:EconomicEvent``), each with ``@id`` the ledger entry it comes from,
``urn:disco:entry:<author hex>:<seq>:<hash hex>`` (the text form of a ref):

- a valid, unredacted ``contribution.recorded`` is a ``vf:work`` event: provider the
  member, receiver the ``for_lab`` LAB if given, else the member's own LAB,
  ``inScopeOf`` the author LAB, ``effortQuantity`` in ``om2:hour``, and
  ``resourceClassifiedAs`` the stream, ``urn:disco:stream:<livelihood|love|care>``,
  plus ``urn:disco:project:<percent-encoded project>`` when a project is named;
  the note, if any, is ``vf:note``. A corrected contribution's event has the figures
  of its latest correction (``contribution.corrected``) under the original entry's
  ``@id``; a voided one (``entry.voided``) has no event;
- a ``transfer.offered`` the payee accepted is a ``vf:transfer`` event: provider the
  payer LAB, receiver the payee LAB, ``resourceQuantity`` in the federation unit
  ``urn:disco:unit:<CODE>``; the memo, if any, is ``vf:note``.

Quantities are ``om2:Measure`` nodes whose ``om2:hasNumericalValue`` is an
``xsd:decimal`` string, never a float: amounts are exact, with the unit's
decimals (``1250`` minor units of a 2-decimal unit is ``"12.50"``). Hours are exact
when the minutes are a multiple of 3 (``150`` minutes is ``"2.5"``); otherwise
minutes / 60 has no finite decimal form and is rounded half-even to
:data:`HOUR_DECIMALS` places (``80`` minutes is ``"1.333333"``). The signed entry the
event's ``@id`` names holds the exact minutes.

``vf:hasPointInTime`` is the author's timestamp claim (of the offer, for a
transfer) as ``xsd:dateTime`` in UTC; it is left out when the claim is outside the
years 1 to 9999.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TextIO
from urllib.parse import quote

from federation.corrections import in_force
from federation.errors import RuleViolation
from federation.kinds import entry_body
from federation.ledger import Ledger
from federation.transfers import ACCEPTED
from protocol.entry import Entry

VF = "https://w3id.org/valueflows#"
OM2 = "http://www.ontology-of-units-of-measure.org/resource/om-2/"
FOAF = "http://xmlns.com/foaf/0.1/"
SCHEMA = "http://schema.org/"
XSD = "http://www.w3.org/2001/XMLSchema#"

HOUR_DECIMALS = 6
"""Decimal places of an hour count that minutes / 60 cannot give exactly."""

CONTEXT: dict[str, Any] = {
    "@vocab": VF,
    "vf": VF,
    "om2": OM2,
    "foaf": FOAF,
    "schema": SCHEMA,
    "xsd": XSD,
    "EconomicEvent": "vf:EconomicEvent",
    "Agent": "vf:Agent",
    "Organization": "vf:Organization",
    "Person": "vf:Person",
    "action": {"@id": "vf:action", "@type": "@id"},
    "provider": {"@id": "vf:provider", "@type": "@id"},
    "receiver": {"@id": "vf:receiver", "@type": "@id"},
    "inScopeOf": {"@id": "vf:inScopeOf", "@type": "@id"},
    "resourceClassifiedAs": {"@id": "vf:resourceClassifiedAs", "@type": "@id"},
    "effortQuantity": {"@id": "vf:effortQuantity"},
    "resourceQuantity": {"@id": "vf:resourceQuantity"},
    "hasPointInTime": {"@id": "vf:hasPointInTime", "@type": "xsd:dateTime"},
    "note": {"@id": "vf:note"},
    "Measure": "om2:Measure",
    "hasNumericalValue": {"@id": "om2:hasNumericalValue", "@type": "xsd:decimal"},
    "hasUnit": {"@id": "om2:hasUnit", "@type": "@id"},
    "name": {"@id": "foaf:name"},
    "memberOf": {"@id": "schema:memberOf", "@type": "@id"},
}
"""The inline JSON-LD context of the export: ValueFlows terms, OM 2 measures, names."""

WORK = "vf:work"
TRANSFER = "vf:transfer"
HOUR = "om2:hour"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lab_iri(lab: bytes) -> str:
    """The IRI of a LAB (an Organization)."""
    return f"urn:disco:lab:{lab.hex()}"


def member_iri(lab: bytes, handle: str) -> str:
    """The IRI of a member (a Person) of ``lab``; handles need no escaping."""
    return f"{lab_iri(lab)}:member:{handle}"


def entry_iri(author: bytes, seq: int, digest: bytes) -> str:
    """The IRI of a ledger entry: ``urn:disco:entry:`` and its ref's text form."""
    return f"urn:disco:entry:{author.hex()}:{seq}:{digest.hex()}"


def stream_iri(stream: str) -> str:
    """The classification of a contribution's value stream."""
    return f"urn:disco:stream:{stream}"


def project_iri(project: str) -> str:
    """The classification of a contribution's project (free text, percent-encoded)."""
    return f"urn:disco:project:{quote(project, safe='')}"


def unit_iri(code: str) -> str:
    """The IRI of a federation unit, e.g. ``urn:disco:unit:JXC``."""
    return f"urn:disco:unit:{code}"


def hours(minutes: int) -> str:
    """``minutes`` as an hour count in decimal notation, exact where it can be.

    Exact when ``minutes`` is a multiple of 3 (at most 2 decimals, no trailing
    zeros: 150 -> "2.5", 120 -> "2"); otherwise rounded half-even to
    :data:`HOUR_DECIMALS` places.
    """
    if minutes % 3 == 0:
        value = Decimal(minutes) / 60
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    quantum = Decimal(1).scaleb(-HOUR_DECIMALS)
    return format((Decimal(minutes) / 60).quantize(quantum, ROUND_HALF_EVEN), "f")


def amount_text(amount: int, decimals: int) -> str:
    """Minor units as the unit's decimal notation: (1250, 2) -> "12.50", (-5, 2) -> "-0.05"."""
    if decimals <= 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, minor = divmod(abs(amount), 10**decimals)
    return f"{sign}{whole}.{minor:0{decimals}d}"


def iso_time(ts_us: int) -> str | None:
    """A timestamp claim in microseconds as ISO 8601 UTC (``...Z``); None if out of range."""
    try:
        moment = _EPOCH + timedelta(microseconds=ts_us)
    except OverflowError:
        return None
    return moment.replace(tzinfo=None).isoformat() + "Z"


def _measure(value: str, unit: str) -> dict[str, Any]:
    return {"@type": "om2:Measure", "hasNumericalValue": value, "hasUnit": unit}


def iter_agents(ledger: Ledger) -> Iterator[dict[str, Any]]:
    """The agent nodes: each LAB of the roster (an Organization), then its members
    (Persons).

    Members come from the ledger's view of each LAB's feed, sorted by handle.
    """
    for lab in ledger.outcome.members:  # (in the order decided: the same on every node)
        yield {"@id": lab_iri(lab), "@type": "Organization", "name": ledger.lab_name(lab)}
        state = ledger.labs.get(lab)
        for handle, name in sorted(state.members.items()) if state else ():
            yield {"@id": member_iri(lab, handle), "@type": "Person", "name": name,
                   "memberOf": lab_iri(lab)}


def _settled_valid(entry: Entry, ledger: Ledger) -> bool:
    author, seq = entry.author, entry.seq
    return (author in ledger.roster and seq <= ledger.applied(author)
            and (author, seq) not in ledger.invalid and not entry.redacted)


def _event(entry: Entry, action: str, provider: str, receiver: str,
           ts_us: int) -> dict[str, Any]:
    node: dict[str, Any] = {
        "@id": entry_iri(entry.author, entry.seq, entry.hash),
        "@type": "EconomicEvent",
        "action": action,
        "provider": provider,
        "receiver": receiver,
    }
    when = iso_time(ts_us)
    if when is not None:
        node["hasPointInTime"] = when
    return node


def _work(entry: Entry, body: dict[str, Any]) -> dict[str, Any]:
    author = entry.author
    receiver = body.get("for_lab", author)
    node = _event(entry, WORK, member_iri(author, body["member"]), lab_iri(receiver),
                  entry.header.ts_us)
    if "date" in body:  # the day the work was done, not when it was typed
        node["hasPointInTime"] = body["date"] + "T00:00:00Z"
    node["inScopeOf"] = lab_iri(author)
    node["effortQuantity"] = _measure(hours(body["minutes"]), HOUR)
    classes = [stream_iri(body["stream"])]
    if "project" in body:
        classes.append(project_iri(body["project"]))
    node["resourceClassifiedAs"] = classes
    if "note" in body:
        node["note"] = body["note"]
    return node


def _transfer(entry: Entry, body: dict[str, Any], ledger: Ledger) -> dict[str, Any] | None:
    offer = ledger.offers.get((entry.author, entry.seq))
    if offer is None or offer.state != ACCEPTED or offer.hash != entry.hash:
        return None
    decimals = ledger.genesis.units.get(offer.unit, 0)
    node = _event(entry, TRANSFER, lab_iri(offer.payer), lab_iri(offer.payee), offer.ts_us)
    node["resourceQuantity"] = _measure(amount_text(offer.amount, decimals),
                                        unit_iri(offer.unit))
    if "memo" in body:
        node["note"] = body["memo"]
    return node


def iter_events(entries: Iterable[Entry], ledger: Ledger) -> Iterator[dict[str, Any]]:
    """The event nodes of ``entries`` (any order; feed by feed, oldest first is usual).

    Yields a ``work`` event for each ``contribution.recorded`` the ledger settled
    as valid (applied, not invalid, not redacted), with the figures in force
    (:func:`~federation.corrections.in_force`; none when voided), and a ``transfer``
    event for each ``transfer.offered`` whose offer the ledger holds, with this
    entry's hash, as accepted. Every other entry, and any entry of a feed the ledger has not
    settled that far (pending or not held), yields nothing. Never raises for an
    entry's content: a body that does not parse was invalid to the ledger too.
    """
    for entry in entries:
        if entry.kind not in ("contribution.recorded", "transfer.offered"):
            continue
        if not _settled_valid(entry, ledger):
            continue
        current = in_force(ledger, entry) if entry.kind == "contribution.recorded" else entry
        if current is None:  # voided
            continue
        try:
            body = entry_body(current)
        except RuleViolation:
            continue
        if body is None:
            continue
        if entry.kind == "contribution.recorded":
            yield _work(entry, body)
        else:
            node = _transfer(entry, body, ledger)
            if node is not None:
                yield node


def write_jsonld(out: TextIO, entries: Iterable[Entry], ledger: Ledger) -> int:
    """Stream the export document to ``out``; return the number of events written.

    Writes the context, the agents, then each event as it is produced, so neither
    ``entries`` nor the graph is held in memory. Raises only what ``out.write``
    or iterating ``entries`` raises (then ``out`` holds a truncated document).
    """
    out.write('{\n"@context": ')
    out.write(json.dumps(CONTEXT, indent=1, ensure_ascii=False))
    out.write(',\n"@graph": [')
    first = True

    def put(node: dict[str, Any]) -> None:
        nonlocal first
        out.write("\n" if first else ",\n")
        out.write(json.dumps(node, ensure_ascii=False))
        first = False

    for agent in iter_agents(ledger):
        put(agent)
    count = 0
    for event in iter_events(entries, ledger):
        put(event)
        count += 1
    out.write("\n]\n}\n")
    return count


__all__ = [
    "CONTEXT", "HOUR_DECIMALS", "OM2", "VF", "amount_text", "entry_iri", "hours",
    "iso_time", "iter_agents", "iter_events", "lab_iri", "member_iri", "project_iri",
    "stream_iri", "unit_iri", "write_jsonld",
]
