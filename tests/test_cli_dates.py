"""Closing a month late (issue 13, point 1), through the real ``disco`` process: work
and income booked with ``--date`` count in the month they happened, and payout, flows
and the ValueFlows export find them there; every mistake is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from tests import test_cli_bookkeeper as bookkeeper
from tests.conftest import Cli
from tests.test_cli_bookkeeper import Fed, mistake

fed = bookkeeper.fed
"""Two LABs that joined one federation (the bookkeeper tests' fixture)."""


def test_work_and_income_of_october_are_paid_in_november(cli: Cli, fed: Fed,
                                                         tmp_path: Path) -> None:
    cli("member", "add", "ana", "--name", "Ana", home=fed.farm)
    cli("member", "add", "bo", "--name", "Bo", home=fed.farm)
    # Typed today, done in October 2025: booked in 2025-10.
    cli("record", "--member", "ana", "--stream", "care", "--hours", "2", "--date",
        "2025-10-30", home=fed.farm)
    cli("record", "--member", "bo", "--stream", "love", "--hours", "1:30", "--date",
        "2025-10-02", home=fed.farm)
    cli("record", "--member", "bo", "--stream", "livelihood", "--hours", "5", home=fed.farm)
    cli("income", "--amount", "100.00", "--unit", "JXC", "--date", "2025-10-31",
        "--source", "late invoice", home=fed.farm)

    flows = cli.json("flows", "--by", "member", "--period", "2025-10", home=fed.farm)
    assert flows["contributions"] == [{"key": [fed.a, "ana", "care"], "minutes": 120},
                                      {"key": [fed.a, "bo", "love"], "minutes": 90}]
    payout = cli.json("payout", "--period", "2025-10", home=fed.farm)
    assert payout["income"] == 10000 and set(payout["shares"]) == {"ana", "bo"}
    assert sum(payout["shares"].values()) == 10000
    # The undated work is in the month it was typed, not in October.
    assert not any(c["key"][2] == "livelihood" for c in flows["contributions"])

    out = tmp_path / "cj.jsonld"
    cli("export-vf", "--out", str(out), home=fed.farm)
    times = {n.get("hasPointInTime") for n in json.loads(out.read_text())["@graph"]
             if n.get("action") == "vf:work"}
    assert {"2025-10-30T00:00:00Z", "2025-10-02T00:00:00Z"} <= times
    # The audit of the node's own store agrees: the dates are part of the signed bodies.
    assert "audit passed" in cli("audit", "--home", str(fed.farm)).stdout


def test_dates_that_are_no_day_are_refused(cli: Cli, fed: Fed) -> None:
    cli("member", "add", "ana", "--name", "Ana", home=fed.farm)
    before = cli("log", "--json", home=fed.farm).stdout
    for bad in ("2025-13-01", "2025-02-30", "30/10/2025", "2025-10", "yesterday"):
        line = mistake(cli, 2, "record", "--member", "ana", "--stream", "care", "--hours",
                       "1", "--date", bad, home=fed.farm)
        assert "--date" in line, line
    line = mistake(cli, 2, "income", "--amount", "1.00", "--unit", "JXC", "--date",
                   "2025-10-31", "--period", "2025-11", "--source", "x", home=fed.farm)
    assert "not in 2025-11" in line
    line = mistake(cli, 2, "income", "--amount", "1.00", "--unit", "JXC", "--source", "x",
                   home=fed.farm)
    assert "--period" in line and "--date" in line
    assert cli("log", "--json", home=fed.farm).stdout == before
