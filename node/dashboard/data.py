"""What each dashboard page shows, as JSON-ready documents (the pages' JSON twins).

Every figure comes from the ledger projection the command line reads
(:meth:`LabNode.ledger`) through the same reports (:mod:`federation.reports`), in
the federation's units (:func:`~federation.valueflows.amount_text`) and with the
CLI's one-line entry summaries (:func:`node.cli.inspect.summary`): no rule is kept a
second time here. Builders run in the node's writer thread (the ledger is not read
while a catch-up changes it) and are cached per projection position: a page is
computed once per state, not once per request.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from federation import reports
from federation.errors import FederationError, RuleViolation
from federation.genesis import Genesis
from federation.governance import MEMBER, OPEN
from federation.kinds import PERIOD, STREAMS, entry_body
from federation.ledger import Ledger
from federation.transfers import OFFERED, OUTSTANDING, Offer
from federation.valueflows import amount_text
from node.checkpoints import CheckpointBook
from node.cli.common import short_ref
from node.cli.governance import proposal_about, proposal_rows
from node.cli.inspect import hours_text, summary
from node.lab import LabNode
from node.projection import VIEW, summary_of
from node.service import NodeService, peer_status, status_of
from protocol import canonical
from protocol.entry import Entry, Ref, decode_entry

RECENT = 12
"""Latest entries on the overview."""
HISTORY = 100
"""Rows in each transfers table at most (offers to this LAB oldest first, the others
newest first); the document says how many there are in all."""
OWN_RECENT = 50
"""The LAB's latest contributions on the contributions page."""
CACHED = 64
"""Page documents kept (one per page and parameters); the cache empties past it."""
STREAM_COLOURS = {"livelihood": "#2f7d4f", "love": "#c2417a", "care": "#d08a1e"}


def iso(ts_us: int) -> str:
    """An author's timestamp as ISO 8601 UTC (the page's JS shows it in the
    browser's locale)."""
    try:
        return datetime.fromtimestamp(ts_us / 1e6, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return ""


def _money(genesis: Genesis, amount: int, unit: str) -> str:
    return f"{amount_text(amount, genesis.units.get(unit, 0))} {unit}"


def _hours(minutes: int) -> float:
    return round(minutes / 60, 2)


def current_month() -> str:
    return time.strftime("%Y-%m", time.gmtime())


def check_period(value: str | None) -> str | None:
    """A month YYYY-MM, or None for every period; raises ValueError otherwise."""
    if value in (None, ""):
        return None
    if not PERIOD.match(value):
        raise ValueError(f"{value!r}: want a month like 2026-11")
    return value


def _entry_row(entry: Entry, ledger: Ledger) -> dict[str, Any]:
    return {"ref": str(entry.ref), "short": short_ref(entry.author, entry.seq, entry.hash),
            "lab": ledger.lab_name(entry.author), "kind": entry.kind,
            "summary": summary(entry, ledger), "at": iso(entry.header.ts_us)}


def latest_entries(node: LabNode, labs: list[bytes], count: int,
                   keep: Callable[[Entry], bool] = lambda e: True,
                   window: int = RECENT) -> list[Entry]:
    """The ``count`` latest entries (by the author's clock) among the last ``window``
    of each feed in ``labs`` that ``keep`` passes: a few rows per feed, never a scan."""
    found: list[Entry] = []
    for lab in labs:
        head = node.store.head(lab)[0]
        for _, raw in node.store.read_raw(lab, after=max(0, head - window), upto=head):
            entry = decode_entry(raw, _trusted=True)
            if keep(entry):
                found.append(entry)
    found.sort(key=lambda e: e.header.ts_us, reverse=True)
    return found[:count]


def _body(entry: Entry) -> dict[str, Any]:
    """An entry's body; {} when redacted or unreadable (it is then shown as such)."""
    try:
        return entry_body(entry) or {}
    except RuleViolation:
        return {}


def _lab_rows(ledger: Ledger, me: bytes) -> list[dict[str, Any]]:
    """The LABs a form may name (an offer's payee, the LAB work was for): the members
    of the roster in force, founders first."""
    return [{"id": lab.hex(), "name": ledger.lab_name(lab), "self": lab == me}
            for lab, m in ledger.outcome.members.items() if m.state == MEMBER]


def held_summary(node: LabNode) -> dict[str, Any]:
    """:meth:`LabNode.summary`'s document for the ledger this node holds in memory,
    without hashing the whole ledger again: ``state_digest`` is the digest of the
    projection saved in the store, ``digest_position`` the position it was saved
    at and ``digest_current`` whether that is the ledger's position now.

    (``summary()`` itself, when the saved projection is behind, loads it again and
    catches it up: seconds on a large log, after every entry this node authors.
    The node saves the projection at its next catch-up.)"""
    ledger = node.ledger()
    saved, _, held = node.store.load_view(VIEW, state=False)
    doc = summary_of(ledger, node.position, state=b"")  # (its digest is replaced here)
    saved_doc = canonical.decode(held, max_size=2**31, what="ledger summary") if held else {}
    digest = saved_doc.get("state_digest", b"") if isinstance(saved_doc, dict) else b""
    doc.update(state_digest=digest, digest_position=saved,
               digest_current=bool(digest) and saved >= node.position)
    return doc


def agreement(peers: list[dict[str, Any]]) -> str:
    """Whether the peers hold what this node holds, by the frontiers they showed
    (the same entries give the same digest: the ledger is deterministic)."""
    known = [p for p in peers if p.get("we_lack") is not None]
    if not peers:
        return "no peers"
    if not known:
        return "not known yet"
    return "agree" if all(not p["lag"] for p in known) else "differ"


# -- pages -------------------------------------------------------------------


def overview(node: LabNode, ledger: Ledger) -> dict[str, Any]:
    """Each LAB's balance per unit against its credit limit, and the latest entries
    (the state digest is :func:`digest_state`'s, read at every request)."""
    genesis = node.require_genesis()
    rows = []
    for lab, units in reports.balances(ledger).items():
        cells = []
        for unit, amount in units.items():
            limit = genesis.credit_limits.get(unit, 0)
            used = min(100.0, max(0.0, -amount / limit * 100)) if limit else 0.0
            cells.append({"unit": unit, "balance": amount, "text": _money(genesis, amount, unit),
                          "limit": limit, "limit_text": _money(genesis, -limit, unit),
                          "used_pct": round(used, 1)})
        rows.append({"lab": lab.hex(), "name": ledger.lab_name(lab),
                     "self": lab == node.lab_id, "units": cells})
    return {"federation": genesis.name, "units": list(genesis.units), "balances": rows,
            "latest": [_entry_row(e, ledger) for e in latest_entries(node, node.feeds(),
                                                                     RECENT)]}


def digest_state(node: LabNode) -> dict[str, Any]:
    """The state digest (:func:`held_summary`: as last saved, and whether that is
    the ledger's position now) and the invalid and pending entries."""
    held = held_summary(node)
    return {"state_digest": held["state_digest"].hex(), "position": node.position,
            "digest_position": held["digest_position"],
            "digest_current": held["digest_current"], "invalid": held["invalid"],
            "pending": held["pending"]}


def sync_state(service: NodeService) -> dict[str, Any]:
    """Peers, lag per feed, fork proofs and checkpoints (``disco status``'s document,
    with each peer's agreement and each feed's latest checkpoint). Not cached: the
    peers' state changes without the ledger changing."""
    node = service.node
    genesis = node.require_genesis()
    held = held_summary(node)
    doc = status_of(node, peer_status(service.home), held)
    doc.update(digest_position=held["digest_position"],
               digest_current=held["digest_current"])
    for peer in doc["peers"]:
        lag = peer.get("we_lack")
        peer["agrees"] = None if lag is None else not peer["lag"]
        peer["last_contact_at"] = (iso(int(peer["last_contact"] * 1e6))
                                   if isinstance(peer.get("last_contact"), (int, float))
                                   else None)
    book = CheckpointBook(node.store, genesis.federation_id, node.keys_of)
    ledger = node.ledger()
    for row in doc["roster"]:
        checkpoint = book.latest(bytes.fromhex(row["lab"]))
        row["checkpoint"] = checkpoint[0].size if checkpoint is not None else None
        lag = doc["lag"].get(row["lab"], {"we_lack": 0, "peers_lack": 0})
        row.update(we_lack=lag["we_lack"], peers_lack=lag["peers_lack"])
    for fork in doc["forks"]:
        fork["name"] = ledger.lab_name(bytes.fromhex(fork["author"]))
    doc["agreement"] = agreement(doc["peers"])
    return doc


def _stream_option(title: str, categories: list[str],
                   minutes: dict[str, list[int]]) -> dict[str, Any]:
    """An ECharts option: hours per value stream, stacked, one bar per category."""
    return {
        "animation": False,
        "title": {"text": title, "left": 0, "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}},
        "legend": {"top": 24},
        "grid": {"left": 8, "right": 8, "top": 60, "bottom": 8, "containLabel": True},
        "xAxis": {"type": "category", "data": categories,
                  "axisLabel": {"interval": 0, "rotate": 30 if len(categories) > 4 else 0}},
        "yAxis": {"type": "value", "name": "hours"},
        "series": [{"name": s, "type": "bar", "stack": "hours", "barMaxWidth": 56,
                    "itemStyle": {"color": STREAM_COLOURS[s]},
                    "data": [_hours(m) for m in minutes[s]]} for s in STREAMS],
    }


def _by_stream(rows: list[tuple[tuple[Any, ...], str, int]]
               ) -> tuple[list[tuple[Any, ...]], dict[str, list[int]]]:
    """(keys in order, minutes per stream aligned with them) from (key, stream,
    minutes) rows."""
    table: dict[tuple[Any, ...], dict[str, int]] = {}
    for key, stream, minutes in rows:
        cell = table.setdefault(key, dict.fromkeys(STREAMS, 0))
        cell[stream] += minutes
    keys = sorted(table)
    return keys, {s: [table[k][s] for k in keys] for s in STREAMS}


def flows(node: LabNode, ledger: Ledger, period: str | None, unit: str) -> dict[str, Any]:
    """The Sankey of completed transfers between LABs in ``unit`` (payers on the
    left, payees on the right: a LAB that both pays and receives appears on each
    side, so the diagram has no cycle) and hours by value stream per LAB and per
    member, for ``period`` (None: every period)."""
    genesis = node.require_genesis()
    by_member = reports.flows(ledger, period=period, by="member")  # (LAB, member, stream)
    name = ledger.lab_name
    decimals = genesis.units[unit]
    moved = [t for t in by_member["transfers"] if t["unit"] == unit]
    nodes: dict[str, None] = {}
    links = []
    for t in moved:
        source, target = f"{name(t['from'])} pays", f"{name(t['to'])} receives"
        nodes.update({source: None, target: None})
        links.append({"source": source, "target": target,
                      "value": t["amount"] / 10**decimals})
    sankey = {
        "animation": False,
        "title": {"text": f"Completed transfers ({unit})", "left": 0,
                  "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "item"},
        "series": [{"type": "sankey", "left": 8, "right": 140, "top": 40, "bottom": 8,
                    "nodeAlign": "justify", "emphasis": {"focus": "adjacency"},
                    "lineStyle": {"color": "gradient", "curveness": 0.5},
                    "data": [{"name": n} for n in nodes], "links": links}],
    }
    lab_keys, lab_minutes = _by_stream([((name(k[0]),), k[2], row["minutes"])
                                        for row in by_member["contributions"]
                                        for k in [row["key"]]])
    member_keys, member_minutes = _by_stream([((name(k[0]), k[1]), k[2], row["minutes"])
                                              for row in by_member["contributions"]
                                              for k in [row["key"]]])
    return {
        "period": period, "unit": unit, "units": list(genesis.units),
        "transfers": [{"from": name(t["from"]), "to": name(t["to"]), "amount": t["amount"],
                       "text": _money(genesis, t["amount"], unit)} for t in moved],
        "hours_by_lab": [{"lab": k[0], **{s: hours_text(lab_minutes[s][i]) for s in STREAMS}}
                         for i, k in enumerate(lab_keys)],
        "hours_by_member": [{"lab": k[0], "member": k[1],
                             **{s: hours_text(member_minutes[s][i]) for s in STREAMS}}
                            for i, k in enumerate(member_keys)],
        "charts": {
            "sankey": sankey,
            "streams_by_lab": _stream_option("Hours by value stream, per LAB",
                                             [k[0] for k in lab_keys], lab_minutes),
            "streams_by_member": _stream_option("Hours by value stream, per member",
                                                [f"{k[1]} ({k[0]})" for k in member_keys],
                                                member_minutes),
        },
    }


def _transfer_row(ledger: Ledger, o: Offer, me: bytes) -> dict[str, Any]:
    """An offer as ``disco transfers`` lists it (:func:`federation.reports.transfers`),
    with names and the amount in its unit."""
    genesis = ledger.genesis
    return {"ref": str(o.ref()), "short": short_ref(o.payer, o.seq, o.hash),
            "from": ledger.lab_name(o.payer), "to": ledger.lab_name(o.payee),
            "incoming": o.payee == me, "outgoing": o.payer == me,
            "amount": o.amount, "unit": o.unit, "text": _money(genesis, o.amount, o.unit),
            "state": o.state, "at": iso(o.ts_us)}


def _claim_order(o: Offer) -> tuple[int, bytes, int]:
    """The order of :func:`federation.reports.transfers`: oldest claim first."""
    return o.ts_us, o.payer, o.seq


def transfers(node: LabNode, ledger: Ledger) -> dict[str, Any]:
    """Offers awaiting this LAB's answer (the oldest first), this LAB's offers still
    outstanding and the latest transfers of the federation (newest first), at most
    :data:`HISTORY` of each, with their totals. Only the rows shown are built: a
    large ledger holds hundreds of thousands of offers."""
    genesis = node.require_genesis()
    me = node.lab_id
    offers = ledger.offers.values()
    to_me = [o for o in offers if o.payee == me and o.state == OFFERED]
    from_me = [o for o in offers if o.payer == me and o.state in OUTSTANDING]
    return {"to_me": [_transfer_row(ledger, o, me)
                      for o in heapq.nsmallest(HISTORY, to_me, key=_claim_order)],
            "to_me_total": len(to_me),
            "from_me": [_transfer_row(ledger, o, me)
                        for o in heapq.nlargest(HISTORY, from_me, key=_claim_order)],
            "from_me_total": len(from_me),
            "history": [_transfer_row(ledger, o, me)
                        for o in heapq.nlargest(HISTORY, offers, key=_claim_order)],
            "history_total": len(ledger.offers), "labs": _lab_rows(ledger, me),
            "units": list(genesis.units)}


def contributions(node: LabNode, ledger: Ledger, member: str | None,
                  period: str | None) -> dict[str, Any]:
    """This LAB's members, its latest contributions (of ``member`` only, if given),
    that member's hours per month and stream, and hours by stream per member for
    ``period`` (None: every period)."""
    me = node.lab_id
    state = ledger.labs.get(me)
    members = sorted((state.members if state else {}).items())

    def ours(entry: Entry) -> bool:
        if entry.kind != "contribution.recorded":
            return False
        return member is None or _body(entry).get("member") == member

    latest = [(e, _body(e)) for e in latest_entries(node, [me], OWN_RECENT, ours,
                                                    window=4 * OWN_RECENT)]
    months: dict[str, dict[str, int]] = {}
    per_member: list[tuple[tuple[Any, ...], str, int]] = []
    for (author, _, handle, stream, month), minutes in ledger.contributions.items():
        if author != me:
            continue
        if member is not None and handle == member:
            months.setdefault(month, dict.fromkeys(STREAMS, 0))[stream] += minutes
        if period is None or month == period:
            per_member.append(((handle,), stream, minutes))
    keys, minutes_by = _by_stream(per_member)
    return {
        "lab": ledger.lab_name(me), "member": member, "period": period,
        "members": [{"handle": h, "name": n} for h, n in members],
        "streams": list(STREAMS), "labs": _lab_rows(ledger, me),
        "latest": [{**_entry_row(e, ledger), "member": b.get("member"),
                    "stream": b.get("stream"), "hours": hours_text(int(b.get("minutes", 0))),
                    "for": ledger.lab_name(b["for_lab"]) if b.get("for_lab") else None,
                    "date": b.get("date")} for e, b in latest],
        "history": [{"month": m, **{s: hours_text(v[s]) for s in STREAMS}}
                    for m, v in sorted(months.items(), reverse=True)],
        "charts": {"streams": _stream_option(
            f"Hours by value stream, {ledger.lab_name(me)}"
            + (f", {period}" if period else ""), [k[0] for k in keys], minutes_by)},
    }


def payout(node: LabNode, ledger: Ledger, period: str, unit: str) -> dict[str, Any]:
    """The DisCO creditflow of this LAB for ``period`` in ``unit`` (as ``disco
    payout``), with the policy in force; ``error`` says why there is none."""
    genesis = node.require_genesis()
    me = node.lab_id
    decimals = genesis.units[unit]
    held = ledger.policies.get(me)
    weights, ratio = held if held is not None else (reports.DEFAULT_WEIGHTS, 0)
    doc: dict[str, Any] = {
        "period": period, "unit": unit, "units": list(genesis.units),
        "policy": {"weights": dict(weights), "care_ratio": ratio, "set": held is not None},
        "periods": sorted({p for (lab, p, u) in ledger.income if lab == me and u == unit},
                          reverse=True),
        "error": None, "shares": [],
    }
    try:
        result = reports.payout(ledger, me, period, unit)
    except FederationError as e:
        doc["error"] = str(e)
        return doc
    doc.update(income=result.income, income_text=_money(genesis, result.income, unit),
               care_pool_text=_money(genesis, result.care_pool, unit),
               formula=result.formula,
               shares=[{"member": m, "amount": a, "text": amount_text(a, decimals),
                        **{s: hours_text(result.minutes.get(m, {}).get(s, 0))
                           for s in STREAMS}} for m, a in result.shares.items()])
    return doc


def federation(node: LabNode, ledger: Ledger, now: int) -> dict[str, Any]:
    """The roster in force and every proposal (``disco status`` and ``disco
    proposals``, in one page).

    ``roster``: each LAB of the roster (founders first, then those admitted, in the
    order decided) with its name, state (member, left, removed), key in force, and
    the proposal that admitted it (``admitted``: None for a founder) or the entry
    that ended its feed (``gone_by``). ``proposals``: the rows of ``disco proposals
    --json`` (:func:`~node.cli.governance.proposal_rows`, states at ``now``: an open
    proposal past its expiry is lapsed), each with ``about`` (what it would do, in
    words), ``by`` (the proposer's name), ``yes`` and ``no`` (the tally), ``voted``
    (who voted what) and ``can_vote``: open, this LAB among its voters, and no vote
    of this LAB on it yet (the ledger refuses any other vote: the page does not
    offer it). Not cached: a proposal lapses while the ledger stands still."""
    me = node.lab_id.hex()

    def ref(r: Ref | None) -> dict[str, str] | None:
        return None if r is None else {"ref": str(r), "short": short_ref(r.author, r.seq)}

    roster = [{"lab": lab.hex(), "name": ledger.lab_name(lab), "state": m.state,
               "key": m.key().hex(), "self": lab.hex() == me, "admitted": ref(m.admitted),
               "gone_by": ref(m.gone_by)} for lab, m in ledger.outcome.members.items()]
    proposals = []
    for row in proposal_rows(ledger, now):
        author, seq, _ = row["ref"].split(":")
        yes = sum(1 for v in row["votes"].values() if v == "yes")
        proposals.append({
            **row, "short": short_ref(author, int(seq)), "about": proposal_about(row, ledger),
            "by": ledger.lab_name(bytes.fromhex(row["proposer"])),
            "yes": yes, "no": len(row["votes"]) - yes,
            "voted": [{"lab": lab, "name": ledger.lab_name(bytes.fromhex(lab)), "vote": v}
                      for lab, v in row["votes"].items()],
            "can_vote": (row["state"] == OPEN and me in row["voters"]
                         and me not in row["votes"])})
    return {"lab": me, "roster": roster, "proposals": proposals,
            "open": sum(1 for p in proposals if p["state"] == OPEN)}


class PageCache:
    """Page documents per (page, parameters), each kept while the projection stays
    at the position it was computed at."""

    def __init__(self) -> None:
        self._held: dict[tuple[Any, ...], tuple[int, dict[str, Any]]] = {}

    def get(self, position: int, key: tuple[Any, ...],
            build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        hit = self._held.get(key)
        if hit is not None and hit[0] == position:
            return hit[1]
        value = build()
        if len(self._held) >= CACHED:
            self._held.clear()
        self._held[key] = (position, value)
        return value
