"""Reports over the projected ledger: balances, transfers, flows and payouts.

Pure functions of a :class:`~federation.ledger.Ledger`; amounts and minutes stay
integers. The payout is DisCO's creditflow: a period's recorded income shared among
a LAB's members by its policy and their tracked hours.

Ranges: every total a report reads from the ledger is within
±:data:`~federation.kinds.MAX_TOTAL`. What a report computes from them (sums over
LABs, members and months in :func:`flows`, the products of income, weights and
minutes in :func:`payout`) is exact Python integers, never a fixed-width number: no
sequence of entries makes a report overflow or stop. A payout's income and every
share are within the range (the shares sum to the income); the sums :func:`flows`
returns are not bounded by it (completed transfers add up over time), so they are
rendered as JSON or text, never packed into the ledger's msgpack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from federation.errors import FederationError
from federation.kinds import STREAMS
from federation.ledger import Ledger
from federation.transfers import OUTSTANDING

DEFAULT_WEIGHTS = {"livelihood": 1, "love": 1, "care": 1}


def balances(ledger: Ledger) -> dict[bytes, dict[str, int]]:
    """Balance per LAB and unit, in minor units; every roster LAB and unit appears."""
    out = {lab: dict.fromkeys(ledger.units, 0) for lab in ledger.roster}
    for (lab, unit), amount in ledger.balances.items():
        out.setdefault(lab, {})[unit] = amount
    return out


def transfers(ledger: Ledger, *, pending_only: bool = False) -> list[dict[str, Any]]:
    """Every valid offer with its state, oldest claim first; ``pending_only`` keeps
    offers awaiting an answer (offered) or a reclaim (declined)."""
    rows = [
        {"ref": str(o.ref()), "from": o.payer, "to": o.payee, "amount": o.amount,
         "unit": o.unit, "state": o.state, "ts_us": o.ts_us,
         "answer": list(o.answer) if o.answer else None}
        for o in ledger.offers.values()
        if not pending_only or o.state in OUTSTANDING
    ]
    rows.sort(key=lambda r: (r["ts_us"], r["from"], r["ref"]))
    return rows


def flows(ledger: Ledger, *, period: str | None = None, by: str = "stream") -> dict[str, Any]:
    """Contributed minutes grouped ``by`` stream, lab (author -> for_lab) or member,
    and completed transfers between LABs, optionally for one month (YYYY-MM)."""
    if by not in ("stream", "lab", "member"):
        raise FederationError(f"--by {by!r}: want stream, lab or member")
    groups: dict[tuple[Any, ...], int] = {}
    for (lab, for_lab, member, stream, month), minutes in ledger.contributions.items():
        if period and month != period:
            continue
        if by == "stream":
            key: tuple[Any, ...] = (stream,)
        elif by == "lab":
            key = (lab, for_lab or lab, stream)
        else:
            key = (lab, member, stream)
        groups[key] = groups.get(key, 0) + minutes
    moved: dict[tuple[bytes, bytes, str], int] = {}
    for o in ledger.offers.values():
        if o.state == "accepted" and (not period or _month(o.ts_us) == period):
            k = (o.payer, o.payee, o.unit)
            moved[k] = moved.get(k, 0) + o.amount
    return {
        "by": by,
        "period": period,
        "contributions": [{"key": list(k), "minutes": v} for k, v in sorted(groups.items())],
        "transfers": [{"from": a, "to": b, "unit": u, "amount": v}
                      for (a, b, u), v in sorted(moved.items())],
    }


def _month(ts_us: int) -> str:
    from federation.ledger import month_of

    return month_of(ts_us)


def share(pool: int, points: Mapping[str, int]) -> dict[str, int]:
    """Split ``pool`` in proportion to ``points`` exactly (largest remainder).

    Integer shares summing to ``pool``; ties in the remainder go to the member whose
    handle sorts first. Raises FederationError when no one has any points.
    """
    total = sum(points.values())
    if pool and total <= 0:
        raise FederationError("nothing to share by: no tracked hours in this period")
    if not pool:
        return dict.fromkeys(points, 0)
    base = {m: pool * p // total for m, p in points.items()}
    left = pool - sum(base.values())
    order = sorted(points, key=lambda m: (-(pool * points[m] % total), m))
    for m in order[:left]:
        base[m] += 1
    return base


@dataclass(frozen=True)
class Payout:
    """One period's creditflow for one LAB and unit."""

    lab: bytes
    period: str
    unit: str
    income: int
    weights: Mapping[str, int]
    care_ratio: int
    minutes: Mapping[str, Mapping[str, int]]
    care_pool: int
    shares: Mapping[str, int]
    formula: str

    def as_json(self) -> dict[str, Any]:
        return {"lab": self.lab, "period": self.period, "unit": self.unit,
                "income": self.income, "weights": dict(self.weights),
                "care_ratio": self.care_ratio, "care_pool": self.care_pool,
                "minutes": {m: dict(v) for m, v in self.minutes.items()},
                "shares": dict(self.shares), "formula": self.formula}


FORMULA = ("care_pool = income x care_ratio% (rounded down), shared by care minutes; "
           "the rest shared by points = sum over streams of weight x minutes; "
           "each member's exact total (care part + points part) rounded down, leftover "
           "minor units to the largest remainders (ties: handle order)")


def payout(ledger: Ledger, lab: bytes, period: str, unit: str) -> Payout:
    """Share ``lab``'s income of ``period`` in ``unit`` among its members.

    Raises FederationError when there is no income or no tracked time to share by.
    """
    income = ledger.income.get((lab, period, unit), 0)
    if income <= 0:
        raise FederationError(f"no income recorded for {period} in {unit}")
    weights, ratio = ledger.policies.get(lab, (DEFAULT_WEIGHTS, 0))
    minutes: dict[str, dict[str, int]] = {}
    for (author, _, member, stream, month), m in ledger.contributions.items():
        if author == lab and month == period:
            row = minutes.setdefault(member, dict.fromkeys(STREAMS, 0))
            row[stream] += m
    care = {m: row["care"] for m, row in minutes.items() if row["care"] > 0}
    care_pool = income * ratio // 100 if care else 0
    points = {m: sum(weights[s] * row[s] for s in STREAMS) for m, row in minutes.items()}
    rest = income - care_pool
    care_total, points_total = sum(care.values()) or 1, sum(points.values())
    if rest and points_total <= 0:
        raise FederationError("nothing to share by: no tracked hours in this period")
    # Round once, over each member's exact total: care_pool x care / care_total +
    # rest x points / points_total, scaled to a common denominator. Rounding the two
    # pools separately could give a member with more points (and the same care) less.
    exact = {m: care_pool * care.get(m, 0) * (points_total or 1) + rest * p * care_total
             for m, p in points.items()}
    shares = share(income, exact)
    return Payout(lab, period, unit, income, weights, ratio, minutes, care_pool,
                  dict(sorted(shares.items())), FORMULA)


def invalid_entries(ledger: Ledger) -> Sequence[dict[str, Any]]:
    """Invalid entries with their reasons, and pending ones with what they wait for."""
    rows: list[dict[str, Any]] = [
        {"author": a, "seq": s, "code": c, "message": m, "status": "invalid"}
        for (a, s), (c, m) in sorted(ledger.invalid.items())]
    rows += [{"author": a, "seq": s, "code": "pending", "status": "pending",
              "message": f"waits for {r}"} for a, (s, r) in sorted(ledger.pending.items())]
    return rows
