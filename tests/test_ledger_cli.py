"""Transfers, balances and reports through the real ``disco`` process, as a LAB would."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from subprocess import CompletedProcess

from tests.conftest import Cli, Federation, make_federation

LIMIT = 10_000  # JXC 100.00 in minor units


def _fed(tmp_path: Path) -> tuple[Federation, Path, Path, str, str]:
    fed = make_federation(tmp_path, ["Farm", "FabLab"], credit_limit=LIMIT)
    farm, fab = fed.homes
    return fed, farm.path, fab.path, farm.lab_id.hex(), fab.lab_id.hex()


def _copy(fed: Federation, src: int, dst: int) -> int:
    """Move ``src``'s own feed into ``dst`` (nodes do not gossip yet)."""
    author = fed.homes[src].lab_id
    with fed.node(src) as s, fed.node(dst) as d:
        result = d.ingest(raw for _, raw in s.store.read_raw(author))
    return int(getattr(result, "stored", result))


def _entries(fed: Federation, i: int) -> int:
    with fed.node(i) as node:
        return node.store.max_notification_id()


def _refused(result: CompletedProcess[str], code: int, message: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def _month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def test_offer_accept_and_refusals_then_both_nodes_agree(cli: Cli, tmp_path: Path) -> None:
    fed, farm, fab, a, b = _fed(tmp_path)
    offer = cli.json("transfer", "offer", "--to", b, "--amount", "60.00", "--unit", "JXC",
                     "--memo", "seedlings", home=farm)
    assert offer["ref"].startswith(f"{a}:2:")
    before = cli("log", "--json", home=farm).stdout

    over = cli("transfer", "offer", "--to", b, "--amount", "50.00", "--unit", "JXC", "--json",
               home=farm, check=False)
    _refused(over, 1, "credit limit")
    assert cli("log", "--json", home=farm).stdout == before

    assert _copy(fed, 0, 1) == 2
    accepted = cli.json("transfer", "accept", f"{a[:8]}:2", home=fab)
    assert accepted["ref"].startswith(f"{b}:2:") and accepted["kind"] == "transfer.accepted"

    held = _entries(fed, 1)
    _refused(cli("transfer", "decline", offer["ref"], home=fab, check=False), 1, "already")
    _refused(cli("transfer", "accept", f"{a}:99", home=fab, check=False), 1,
             "run 'disco sync' first")
    assert _entries(fed, 1) == held
    _refused(cli("transfer", "accept", offer["ref"], home=farm, check=False), 1, "payee")
    assert cli("log", "--json", home=farm).stdout == before

    assert _copy(fed, 1, 0) == 2
    want = {a: {"JXC": -6000}, b: {"JXC": 6000}}
    on_farm = cli.json("balance", home=farm)
    on_fab = cli.json("balance", home=fab)
    assert on_farm["balances"] == want and on_fab["balances"] == want
    assert len(on_farm["state_digest"]) == 64
    assert on_farm["state_digest"] == on_fab["state_digest"]
    assert cli.json("rebuild", home=fab)["state_digest"] == on_fab["state_digest"]


def test_decline_then_reclaim_restores_the_payer(cli: Cli, tmp_path: Path) -> None:
    fed, farm, fab, a, b = _fed(tmp_path)
    ref = cli.json("transfer", "offer", "--to", b, "--amount", "99.99", "--unit", "JXC",
                   home=farm)["ref"]
    assert cli.json("balance", home=farm)["balances"][a] == {"JXC": -9999}
    _copy(fed, 0, 1)
    # A hash prefix alone names an offer too.
    cli("transfer", "decline", ref.split(":")[2][:10], "--reason", "not ours", home=fab)
    _copy(fed, 1, 0)
    assert cli.json("balance", home=farm)["balances"] == {a: {"JXC": -9999}, b: {"JXC": 0}}

    reclaimed = cli.json("transfer", "reclaim", ref, home=farm)
    assert reclaimed["kind"] == "transfer.reclaimed" and reclaimed["ref"].startswith(f"{a}:3:")
    after = cli.json("balance", home=farm)
    assert after["balances"] == {a: {"JXC": 0}, b: {"JXC": 0}}
    held = _entries(fed, 0)
    _refused(cli("transfer", "reclaim", ref, home=farm, check=False), 1, "reclaimed")
    assert _entries(fed, 0) == held

    _copy(fed, 0, 1)
    assert cli.json("balance", home=fab)["state_digest"] == after["state_digest"]


def test_transfers_flows_and_payout(cli: Cli, tmp_path: Path) -> None:
    fed, farm, _, a, b = _fed(tmp_path)
    period = _month()
    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    with fed.node(0) as node:
        node.author_many([("member.added", {"handle": "ana", "name": "Ana"}),
                          ("member.added", {"handle": "bo", "name": "Bo"}),
                          ("transfer.offered", {"to": fed.homes[1].lab_id, "amount": 1500,
                                                "unit": "JXC"}),
                          ("transfer.offered", {"to": fed.homes[1].lab_id, "amount": 250,
                                                "unit": "JXC"})], now)
    _copy(fed, 0, 1)
    with fed.node(1) as node:
        offer = node.resolve_ref(f"{a}:5")
        node.author("transfer.accepted", {"offer": offer.as_list()}, now)
    _copy(fed, 1, 0)

    rows = cli.json("transfers", home=farm)["transfers"]
    assert [(r["from"], r["to"], r["amount"], r["unit"], r["state"]) for r in rows] == [
        (a, b, 1500, "JXC", "offered"), (a, b, 250, "JXC", "accepted")]
    assert rows[0]["ref"].startswith(f"{a}:4:") and rows[0]["answer"] is None
    assert rows[1]["answer"] == [b, 2]
    pending = cli.json("transfers", "--pending", home=farm)["transfers"]
    assert [r["ref"] for r in pending] == [rows[0]["ref"]]

    cli("policy", "--care-ratio", "10", home=farm)
    cli("income", "--amount", "100.00", "--unit", "JXC", "--period", period,
        "--source", "market sales", home=farm)
    for member, stream, hours in (("ana", "livelihood", "2"), ("ana", "care", "1:30"),
                                  ("bo", "love", "3.5")):
        cli("record", "--member", member, "--stream", stream, "--hours", hours, home=farm)

    report = cli.json("flows", "--by", "member", "--period", period, home=farm)
    assert report["by"] == "member" and report["period"] == period
    assert report["contributions"] == [
        {"key": [a, "ana", "care"], "minutes": 90},
        {"key": [a, "ana", "livelihood"], "minutes": 120},
        {"key": [a, "bo", "love"], "minutes": 210}]
    assert report["transfers"] == [{"from": a, "to": b, "unit": "JXC", "amount": 250}]

    result = cli.json("payout", "--period", period, home=farm)
    assert result["income"] == 10000 and result["care_ratio"] == 10
    assert result["care_pool"] == 1000
    assert set(result["shares"]) == {"ana", "bo"}
    assert sum(result["shares"].values()) == 10000
    # care pool 1000 to ana; 9000 by points ana 210, bo 210.
    assert result["shares"] == {"ana": 5500, "bo": 4500}

    _refused(cli("payout", "--period", "1999-01", "--json", home=farm, check=False), 1,
             "no income")


def test_bad_input_is_one_line_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    _, farm, _, _, b = _fed(tmp_path)
    before = cli("log", "--json", home=farm).stdout
    stranger = "ab" * 32
    cases = [
        (["income", "--amount", "1.00", "--unit", "JXC", "--period", "2026-13",
          "--source", "x"], 2, "2026-13"),
        (["transfer", "offer", "--to", b, "--amount", "1.234", "--unit", "JXC"], 2,
         "decimals"),
        (["transfer", "offer", "--to", b, "--amount", "1.00", "--unit", "EUR"], 2, "EUR"),
        (["transfer", "offer", "--to", stranger, "--amount", "1.00", "--unit", "JXC"], 2,
         "names no LAB of the federation"),
    ]
    for args, code, message in cases:
        _refused(cli(*args, "--json", home=farm, check=False), code, message)
    after = cli("log", "--json", home=farm).stdout
    assert after == before
    assert [e["kind"] for e in json.loads(after)] == ["lab.joined"]
