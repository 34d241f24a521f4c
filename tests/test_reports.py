"""Reports over a hand-built ledger: exact payouts, share(), flows and transfers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation import reports
from federation.errors import FederationError
from federation.genesis import Genesis, Lab, create_genesis
from federation.kinds import STREAMS
from federation.ledger import Ledger
from federation.transfers import ACCEPTED, DECLINED, OFFERED, RECLAIMED, Offer
from protocol.entry import Entry

FARM, FAB, LAND = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
PERIOD = "2026-11"


class NoFeeds:
    """A Feeds that holds nothing: reports never read entries."""

    def entry(self, author: bytes, seq: int) -> Entry | None:
        return None

    def entries_after(self, author: bytes, seq: int) -> Iterator[Entry]:
        return iter(())


def _genesis() -> Genesis:
    return create_genesis("Reports", labs=[Lab(FARM, "Farm"), Lab(FAB, "Fab"), Lab(LAND, "Land")],
                          units={"JXC": 2}, credit_limits={"JXC": 100_000}, now_us=1)


GENESIS = _genesis()


def _ledger() -> Ledger:
    return Ledger(GENESIS, NoFeeds())


# -- share() ---------------------------------------------------------------------------


def test_share_known_answers() -> None:
    assert reports.share(100, {"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    # Ties in the remainder go to the handle that sorts first, whatever the dict order.
    assert reports.share(100, {"c": 1, "b": 1, "a": 1}) == {"a": 34, "b": 33, "c": 33}
    assert reports.share(2, {"z": 1, "y": 1, "x": 1}) == {"x": 1, "y": 1, "z": 0}
    assert reports.share(10, {"a": 1, "b": 3}) == {"a": 3, "b": 7}  # 2.5 / 7.5: a tie
    assert reports.share(7, {"a": 2, "b": 1}) == {"a": 5, "b": 2}  # 4.67 / 2.33
    assert reports.share(1, {"a": 1, "b": 2}) == {"a": 0, "b": 1}  # larger remainder wins
    assert reports.share(5, {"only": 9}) == {"only": 5}
    assert reports.share(9, {"a": 0, "b": 1}) == {"a": 0, "b": 9}


def test_share_of_nothing_and_by_nothing() -> None:
    assert reports.share(0, {"a": 1, "b": 2}) == {"a": 0, "b": 0}
    assert reports.share(0, {"a": 0}) == {"a": 0}
    assert reports.share(0, {}) == {}
    with pytest.raises(FederationError, match="nothing to share"):
        reports.share(100, {"a": 0, "b": 0})
    with pytest.raises(FederationError):
        reports.share(100, {})


@settings(max_examples=200, deadline=None)
@given(pool=st.integers(0, 10**12),
       points=st.dictionaries(st.from_regex(r"[a-z]{1,4}", fullmatch=True),
                              st.integers(0, 10**6), min_size=1, max_size=10))
def test_share_is_exact_and_proportional(pool: int, points: dict[str, int]) -> None:
    total = sum(points.values())
    if pool and not total:
        with pytest.raises(FederationError):
            reports.share(pool, points)
        return
    shares = reports.share(pool, points)
    assert set(shares) == set(points)
    assert sum(shares.values()) == pool
    for m, p in points.items():
        exact_floor = pool * p // total if total else 0
        assert exact_floor <= shares[m] <= exact_floor + 1
    assert reports.share(pool, dict(reversed(list(points.items())))) == shares


# -- payout() --------------------------------------------------------------------------

HANDLES = ("ana", "bo", "cy", "dee", "eli", "fay", "gus", "hal")

minutes_st = st.tuples(*[st.integers(0, 3000)] * 3).filter(any)


@st.composite
def payout_inputs(draw: st.DrawFn) -> tuple[dict[str, int], int, dict[str, tuple[int, ...]], int]:
    weights = draw(st.tuples(*[st.integers(0, 10)] * 3).filter(any))
    ratio = draw(st.integers(0, 100))
    n = draw(st.integers(1, 8))
    members = {h: draw(minutes_st) for h in HANDLES[:n]}
    income = draw(st.integers(1, 10**9))
    return dict(zip(STREAMS, weights, strict=True)), ratio, members, income


def _payout_ledger(weights: dict[str, int], ratio: int, members: dict[str, tuple[int, ...]],
                   income: int) -> Ledger:
    ledger = _ledger()
    ledger.income[(FARM, PERIOD, "JXC")] = income
    ledger.policies[FARM] = (dict(weights), ratio)
    for member, mins in members.items():
        for stream, m in zip(STREAMS, mins, strict=True):
            if m:
                ledger.contributions[(FARM, b"", member, stream, PERIOD)] = m
    # Noise that must not count: another LAB, another month, another LAB's income.
    ledger.contributions[(FAB, b"", "ana", "care", PERIOD)] = 999
    ledger.contributions[(FARM, b"", "ana", "love", "2026-10")] = 999
    ledger.income[(FAB, PERIOD, "JXC")] = 12345
    return ledger


@settings(max_examples=200, deadline=None)
@given(payout_inputs())
def test_payout_shares_are_exact_deterministic_and_fair(
    inputs: tuple[dict[str, int], int, dict[str, tuple[int, ...]], int],
) -> None:
    weights, ratio, members, income = inputs
    ledger = _payout_ledger(weights, ratio, members, income)
    points = {m: sum(w * x for w, x in zip(weights.values(), mins, strict=True))
              for m, mins in members.items()}
    care = {m: mins[2] for m, mins in members.items()}
    care_pool = income * ratio // 100 if any(care.values()) else 0
    if sum(points.values()) == 0 and income - care_pool > 0:
        with pytest.raises(FederationError, match="nothing to share"):
            reports.payout(ledger, FARM, PERIOD, "JXC")
        return
    result = reports.payout(ledger, FARM, PERIOD, "JXC")
    shares = dict(result.shares)
    assert set(shares) == set(members)
    assert all(type(v) is int and v >= 0 for v in shares.values())
    assert sum(shares.values()) == income
    assert result.income == income and result.care_pool == care_pool
    assert result.minutes == {m: dict(zip(STREAMS, mins, strict=True))
                              for m, mins in members.items()}

    # Same inputs, same shares: again, and with members inserted in another order.
    assert dict(reports.payout(ledger, FARM, PERIOD, "JXC").shares) == shares
    reordered = _payout_ledger(weights, ratio, dict(reversed(list(members.items()))), income)
    assert dict(reports.payout(reordered, FARM, PERIOD, "JXC").shares) == shares

    # More points with equal care never gets less (when points share anything at all:
    # with the whole income in the care pool, equal care is an exact tie, by handle).
    if care_pool == income:
        return
    for a in members:
        for b in members:
            if care[a] == care[b] and points[a] > points[b]:
                assert shares[a] >= shares[b], (a, b, shares, points, care)


def test_payout_known_answer_and_errors() -> None:
    ledger = _payout_ledger({"livelihood": 2, "love": 1, "care": 1}, 10,
                            {"ana": (60, 0, 60), "bo": (0, 120, 0)}, 10_000)
    result = reports.payout(ledger, FARM, PERIOD, "JXC")
    # care pool 1000 all to ana; rest 9000 by points ana 180, bo 120 -> 5400 / 3600.
    assert result.care_pool == 1000
    assert dict(result.shares) == {"ana": 6400, "bo": 3600}
    assert result.as_json()["shares"] == {"ana": 6400, "bo": 3600}
    with pytest.raises(FederationError, match="no income"):
        reports.payout(ledger, FARM, "2026-12", "JXC")
    with pytest.raises(FederationError, match="no income"):
        reports.payout(ledger, LAND, PERIOD, "JXC")
    # Income but nobody tracked any time in the period.
    ledger.income[(LAND, PERIOD, "JXC")] = 500
    with pytest.raises(FederationError, match="nothing to share"):
        reports.payout(ledger, LAND, PERIOD, "JXC")


def test_payout_rounds_once_over_both_pools() -> None:
    # Exact totals: ana 1.008, bo 5.038, cy 5.955. Rounding the care pool (1, a tie
    # between bo and cy) and the points pool (11) apart gave bo 6 and cy 5.
    ledger = _payout_ledger({"livelihood": 1, "love": 0, "care": 1}, 9,
                            {"ana": (0, 0, 1), "bo": (0, 0, 5), "cy": (1, 0, 5)}, 12)
    result = reports.payout(ledger, FARM, PERIOD, "JXC")
    assert result.care_pool == 1
    assert dict(result.shares) == {"ana": 1, "bo": 5, "cy": 6}


def test_payout_whole_income_to_care() -> None:
    ledger = _payout_ledger({"livelihood": 1, "love": 0, "care": 0}, 100,
                            {"ana": (0, 0, 30), "bo": (0, 0, 90), "cy": (600, 0, 0)}, 1000)
    assert dict(reports.payout(ledger, FARM, PERIOD, "JXC").shares) == {
        "ana": 250, "bo": 750, "cy": 0}


def test_payout_default_policy_counts_every_stream_once() -> None:
    ledger = _payout_ledger({"livelihood": 1, "love": 1, "care": 1}, 0,
                            {"ana": (30, 30, 40), "bo": (100, 0, 0)}, 101)
    del ledger.policies[FARM]
    result = reports.payout(ledger, FARM, PERIOD, "JXC")
    assert result.weights == reports.DEFAULT_WEIGHTS and result.care_ratio == 0
    assert dict(result.shares) == {"ana": 51, "bo": 50}


# -- flows() and transfers() -------------------------------------------------------------

def _offer(payer: bytes, seq: int, payee: bytes, amount: int, state: str,
           ts_us: int) -> Offer:
    answer = (payee, seq + 100) if state != OFFERED else None
    return Offer(payer, seq, bytes([seq]) * 32, payee, amount, "JXC", ts_us, state, answer,
                 b"\xaa" * 32 if answer else None)


# 2026-11-15 and 2026-10-15, UTC, in microseconds.
NOV = 1_794_700_800_000_000
OCT = 1_792_022_400_000_000


def _flows_ledger() -> Ledger:
    ledger = _ledger()
    c = ledger.contributions
    c[(FARM, b"", "ana", "care", "2026-11")] = 60
    c[(FARM, b"", "ana", "love", "2026-11")] = 30
    c[(FARM, b"", "bo", "care", "2026-11")] = 15
    c[(FARM, FAB, "ana", "love", "2026-11")] = 45
    c[(FAB, b"", "kofi", "livelihood", "2026-11")] = 120
    c[(FAB, FARM, "kofi", "love", "2026-10")] = 90
    for o in (_offer(FARM, 3, FAB, 500, ACCEPTED, NOV),
              _offer(FARM, 4, FAB, 250, ACCEPTED, NOV + 1),
              _offer(FAB, 5, FARM, 70, ACCEPTED, OCT),
              _offer(FARM, 6, LAND, 10, OFFERED, NOV + 2),
              _offer(LAND, 2, FARM, 20, DECLINED, OCT + 5),
              _offer(FAB, 7, LAND, 30, RECLAIMED, NOV + 3)):
        ledger.offers[(o.payer, o.seq)] = o
    return ledger


def test_flows_by_stream_lab_member_and_period() -> None:
    ledger = _flows_ledger()
    by_stream = reports.flows(ledger)
    assert by_stream["by"] == "stream" and by_stream["period"] is None
    assert by_stream["contributions"] == [
        {"key": ["care"], "minutes": 75}, {"key": ["livelihood"], "minutes": 120},
        {"key": ["love"], "minutes": 165}]
    assert by_stream["transfers"] == [
        {"from": FARM, "to": FAB, "unit": "JXC", "amount": 750},
        {"from": FAB, "to": FARM, "unit": "JXC", "amount": 70}]

    nov = reports.flows(ledger, period="2026-11", by="stream")
    assert nov["contributions"] == [
        {"key": ["care"], "minutes": 75}, {"key": ["livelihood"], "minutes": 120},
        {"key": ["love"], "minutes": 75}]
    assert nov["transfers"] == [{"from": FARM, "to": FAB, "unit": "JXC", "amount": 750}]

    by_lab = reports.flows(ledger, by="lab")
    assert by_lab["contributions"] == [
        {"key": [FARM, FARM, "care"], "minutes": 75},
        {"key": [FARM, FARM, "love"], "minutes": 30},
        {"key": [FARM, FAB, "love"], "minutes": 45},
        {"key": [FAB, FARM, "love"], "minutes": 90},
        {"key": [FAB, FAB, "livelihood"], "minutes": 120}]

    by_member = reports.flows(ledger, period="2026-11", by="member")
    assert by_member["contributions"] == [
        {"key": [FARM, "ana", "care"], "minutes": 60},
        {"key": [FARM, "ana", "love"], "minutes": 75},
        {"key": [FARM, "bo", "care"], "minutes": 15},
        {"key": [FAB, "kofi", "livelihood"], "minutes": 120}]

    oct_ = reports.flows(ledger, period="2026-10", by="member")
    assert oct_["contributions"] == [{"key": [FAB, "kofi", "love"], "minutes": 90}]
    assert oct_["transfers"] == [{"from": FAB, "to": FARM, "unit": "JXC", "amount": 70}]
    empty = reports.flows(ledger, period="2025-01", by="lab")
    assert empty["contributions"] == [] and empty["transfers"] == []
    with pytest.raises(FederationError, match="--by"):
        reports.flows(ledger, by="colour")


def test_transfers_lists_states_and_pending_only() -> None:
    ledger = _flows_ledger()
    rows = reports.transfers(ledger)
    assert [r["ts_us"] for r in rows] == sorted(r["ts_us"] for r in rows)
    assert [r["state"] for r in rows] == [ACCEPTED, DECLINED, ACCEPTED, ACCEPTED, OFFERED,
                                          RECLAIMED]
    first = rows[0]
    assert first["ref"] == f"{FAB.hex()}:5:{(bytes([5]) * 32).hex()}"
    assert first["from"] == FAB and first["to"] == FARM and first["amount"] == 70
    assert first["unit"] == "JXC" and first["answer"] == [FARM, 105]
    pending = reports.transfers(ledger, pending_only=True)
    assert [(r["from"], r["state"]) for r in pending] == [(LAND, DECLINED), (FARM, OFFERED)]
    assert all(r["answer"] is None for r in pending if r["state"] == OFFERED)
    assert reports.transfers(_ledger()) == []


def test_balances_list_every_lab_and_unit() -> None:
    ledger = _ledger()
    ledger.balances[(FARM, "JXC")] = -750
    ledger.balances[(FAB, "JXC")] = 750
    assert reports.balances(ledger) == {FARM: {"JXC": -750}, FAB: {"JXC": 750},
                                        LAND: {"JXC": 0}}
