"""ValueFlows export: the settled ledger of a real two-LAB federation as JSON-LD."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyld import jsonld

from federation.ledger import Ledger
from federation.valueflows import (
    CONTEXT,
    OM2,
    VF,
    amount_text,
    entry_iri,
    hours,
    iso_time,
    lab_iri,
    member_iri,
    project_iri,
    stream_iri,
    write_jsonld,
)
from node.projection import LedgerProjection
from protocol.entry import Entry, redact, sign_entry
from tests.conftest import make_federation

T0 = 1_700_000_000_000_000
XSD_DECIMAL = "http://www.w3.org/2001/XMLSchema#decimal"
XSD_DATETIME = "http://www.w3.org/2001/XMLSchema#dateTime"


def no_network(url: str, options: Any = None) -> Any:
    raise AssertionError(f"the export must expand without fetching {url}")


@dataclass
class Built:
    ledger: Ledger
    entries: list[Entry]
    farm: bytes
    fab: bytes
    contributions: dict[str, Entry]
    offers: dict[str, Entry]


@pytest.fixture
def built(tmp_path: Path) -> Built:
    """Farm and FabLab: contributions in every stream, three offers, one bad entry.

    Farm's store ends up holding both feeds (through ``LabNode.ingest``, which
    verifies them); FabLab's ``redacted`` contribution is held there redacted.
    """
    fed = make_federation(tmp_path, ["Farm", "FabLab"])
    farm_id, fab_id = fed.genesis.labs[0].id, fed.genesis.labs[1].id
    ts = iter(range(T0 + 1, T0 + 1000))
    with fed.node(0) as farm, fed.node(1) as fab:
        farm.author("member.added", {"handle": "ana", "name": "Ana"}, next(ts))
        contributions = {
            "livelihood": farm.author("contribution.recorded", {
                "member": "ana", "stream": "livelihood", "minutes": 150}, next(ts)),
            "love": farm.author("contribution.recorded", {
                "member": "ana", "stream": "love", "minutes": 60, "for_lab": fab_id,
                "project": "Tool library", "note": "fixed the drill press"}, next(ts)),
            "care": farm.author("contribution.recorded", {
                "member": "ana", "stream": "care", "minutes": 80}, next(ts)),
        }
        offers = {
            "accepted": farm.author("transfer.offered", {
                "to": fab_id, "amount": 1250, "unit": "JXC", "memo": "seedlings"}, next(ts)),
            "declined": farm.author("transfer.offered", {
                "to": fab_id, "amount": 700, "unit": "JXC"}, next(ts)),
            "unanswered": farm.author("transfer.offered", {
                "to": fab_id, "amount": 300, "unit": "JXC"}, next(ts)),
        }
        # LabNode refuses to sign this (unknown member), so sign it directly.
        seq, head = farm.store.head(farm_id)
        ghost = sign_entry(fed.homes[0].signer(), federation_id=fed.genesis.federation_id,
                           seq=seq + 1, prev=head, ts_us=next(ts),
                           kind="contribution.recorded",
                           body={"member": "ghost", "stream": "care", "minutes": 30})
        farm.store.insert([ghost])
        contributions["ghost"] = ghost

        fab.ingest(e.raw for e in farm.log(farm_id))  # FabLab must hold the offers
        fab.author("member.added", {"handle": "bo", "name": "Bo"}, next(ts))
        contributions["fab-care"] = fab.author("contribution.recorded", {
            "member": "bo", "stream": "care", "minutes": 45}, next(ts))
        contributions["redacted"] = fab.author("contribution.recorded", {
            "member": "bo", "stream": "livelihood", "minutes": 90}, next(ts))
        fab.author("transfer.accepted", {"offer": offers["accepted"].ref.as_list()}, next(ts))
        fab.author("transfer.declined", {"offer": offers["declined"].ref.as_list()}, next(ts))

        farm.ingest(redact(e).raw if e.hash == contributions["redacted"].hash else e.raw
                    for e in fab.log(fab_id))
        ledger, _ = LedgerProjection(farm.store, fed.genesis).catch_up()
        entries = list(farm.log())
    ledger.check_invariant()
    assert not ledger.pending
    assert ledger.invalid[(farm_id, ghost.seq)][0] == "unknown-member"
    assert ledger.offers[(farm_id, offers["accepted"].seq)].state == "accepted"
    assert ledger.offers[(farm_id, offers["unanswered"].seq)].state == "offered"
    return Built(ledger, entries, farm_id, fab_id, contributions, offers)


def export(built: Built) -> tuple[dict[str, Any], int]:
    out = io.StringIO()
    count = write_jsonld(out, iter(built.entries), built.ledger)
    return json.loads(out.getvalue()), count


def expand(doc: dict[str, Any]) -> list[dict[str, Any]]:
    expanded: list[dict[str, Any]] = jsonld.expand(doc, {"documentLoader": no_network})
    return expanded


def one(node: dict[str, Any], term: str) -> Any:
    values = node[VF + term] if not term.startswith("http") else node[term]
    assert len(values) == 1, (term, values)
    return values[0]


def test_export_expands_and_every_event_has_action_provider_receiver_and_quantity(
    built: Built,
) -> None:
    doc, count = export(built)
    assert doc["@context"] == CONTEXT
    nodes = expand(doc)
    events = [n for n in nodes if VF + "EconomicEvent" in n.get("@type", [])]
    assert len(events) == count > 0
    for event in events:
        action = one(event, "action")["@id"]
        assert action in (VF + "work", VF + "transfer")
        assert one(event, "provider")["@id"].startswith("urn:disco:lab:")
        assert one(event, "receiver")["@id"].startswith("urn:disco:lab:")
        quantity_term = "effortQuantity" if action == VF + "work" else "resourceQuantity"
        quantity = one(event, quantity_term)
        assert quantity["@type"] == [OM2 + "Measure"]
        value = one(quantity, OM2 + "hasNumericalValue")
        assert value["@type"] == XSD_DECIMAL and isinstance(value["@value"], str)
        assert one(quantity, OM2 + "hasUnit")["@id"]
        assert one(event, "hasPointInTime")["@type"] == XSD_DATETIME


def test_work_events_are_the_valid_unredacted_contributions(built: Built) -> None:
    doc, _ = export(built)
    events = {n["@id"]: n for n in expand(doc)
              if VF + "EconomicEvent" in n.get("@type", [])}
    work = {i: n for i, n in events.items() if one(n, "action")["@id"] == VF + "work"}
    c = built.contributions
    expected = {entry_iri(e.author, e.seq, e.hash): e
                for k, e in c.items() if k not in ("ghost", "redacted")}
    assert set(work) == set(expected)
    for key in ("ghost", "redacted"):
        assert entry_iri(c[key].author, c[key].seq, c[key].hash) not in events

    love = work[entry_iri(built.farm, c["love"].seq, c["love"].hash)]
    assert one(love, "provider")["@id"] == member_iri(built.farm, "ana")
    assert one(love, "receiver")["@id"] == lab_iri(built.fab)
    assert one(love, "inScopeOf")["@id"] == lab_iri(built.farm)
    assert {v["@id"] for v in love[VF + "resourceClassifiedAs"]} == {
        stream_iri("love"), project_iri("Tool library")}
    assert one(love, "note")["@value"] == "fixed the drill press"
    hours_value = one(one(love, "effortQuantity"), OM2 + "hasNumericalValue")["@value"]
    assert hours_value == "1"
    assert one(one(love, "effortQuantity"), OM2 + "hasUnit")["@id"] == OM2 + "hour"

    livelihood = work[entry_iri(built.farm, c["livelihood"].seq, c["livelihood"].hash)]
    assert one(livelihood, "receiver")["@id"] == lab_iri(built.farm)
    assert [v["@id"] for v in livelihood[VF + "resourceClassifiedAs"]] == [
        stream_iri("livelihood")]
    effort = one(livelihood, "effortQuantity")
    assert one(effort, OM2 + "hasNumericalValue")["@value"] == "2.5"
    assert one(livelihood, "hasPointInTime")["@value"] == iso_time(c["livelihood"].header.ts_us)

    fab_care = work[entry_iri(built.fab, c["fab-care"].seq, c["fab-care"].hash)]
    assert one(fab_care, "provider")["@id"] == member_iri(built.fab, "bo")
    assert one(fab_care, "receiver")["@id"] == lab_iri(built.fab)
    assert [v["@id"] for v in fab_care[VF + "resourceClassifiedAs"]] == [stream_iri("care")]


def test_only_the_accepted_offer_is_a_transfer_event(built: Built) -> None:
    doc, _ = export(built)
    transfers = [n for n in expand(doc) if VF + "EconomicEvent" in n.get("@type", [])
                 and one(n, "action")["@id"] == VF + "transfer"]
    assert len(transfers) == 1
    (event,) = transfers
    offer = built.offers["accepted"]
    assert event["@id"] == entry_iri(built.farm, offer.seq, offer.hash)
    assert one(event, "provider")["@id"] == lab_iri(built.farm)
    assert one(event, "receiver")["@id"] == lab_iri(built.fab)
    quantity = one(event, "resourceQuantity")
    assert one(quantity, OM2 + "hasNumericalValue")["@value"] == "12.50"
    assert one(quantity, OM2 + "hasUnit")["@id"] == "urn:disco:unit:JXC"
    assert one(event, "note")["@value"] == "seedlings"


def test_agents_are_the_labs_and_their_members(built: Built) -> None:
    doc, _ = export(built)
    agents = {n["@id"]: n for n in expand(doc) if "@type" in n
              and n["@type"][0] in (VF + "Organization", VF + "Person")}
    foaf_name = "http://xmlns.com/foaf/0.1/name"
    assert agents[lab_iri(built.farm)]["@type"] == [VF + "Organization"]
    assert agents[lab_iri(built.farm)][foaf_name][0]["@value"] == "Farm"
    assert agents[lab_iri(built.fab)][foaf_name][0]["@value"] == "FabLab"
    ana = agents[member_iri(built.farm, "ana")]
    assert ana["@type"] == [VF + "Person"] and ana[foaf_name][0]["@value"] == "Ana"
    assert ana["http://schema.org/memberOf"][0]["@id"] == lab_iri(built.farm)
    assert member_iri(built.fab, "bo") in agents
    assert len(agents) == 4


def test_agents_come_first_and_events_stream_in_entry_order(built: Built) -> None:
    doc, _ = export(built)
    graph = doc["@graph"]
    kinds = [n["@type"] for n in graph]
    assert kinds == sorted(kinds, key=lambda t: t == "EconomicEvent")
    order = {entry_iri(e.author, e.seq, e.hash): i for i, e in enumerate(built.entries)}
    positions = [order[n["@id"]] for n in graph if n["@type"] == "EconomicEvent"]
    assert positions == sorted(positions)


def test_an_empty_entry_stream_gives_agents_only(built: Built) -> None:
    out = io.StringIO()
    assert write_jsonld(out, [], built.ledger) == 0
    nodes = expand(json.loads(out.getvalue()))
    assert nodes and all(VF + "EconomicEvent" not in n["@type"] for n in nodes)


@pytest.mark.parametrize(("minutes", "text"), [
    (150, "2.5"), (60, "1"), (3, "0.05"), (45, "0.75"), (600, "10"),
    (80, "1.333333"), (1, "0.016667"), (44640, "744"),
])
def test_hours_are_decimal_text(minutes: int, text: str) -> None:
    assert hours(minutes) == text


def test_amounts_use_the_unit_decimals_and_times_are_utc() -> None:
    assert amount_text(1250, 2) == "12.50"
    assert amount_text(5, 2) == "0.05"
    assert amount_text(7, 0) == "7"
    assert amount_text(100_000_000, 8) == "1.00000000"
    assert iso_time(T0) == "2023-11-14T22:13:20Z"
    assert iso_time(T0 + 5) == "2023-11-14T22:13:20.000005Z"
    assert iso_time(2**63 - 1) is None
