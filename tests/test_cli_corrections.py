"""Correcting a mistake (issue 13, point 2), through the real ``disco`` process:
``disco correct`` and ``disco void`` mend a wrong income or contribution; payout,
flows and the ValueFlows export use the figures in force, ``disco log`` keeps the
original, and the audit replays the same rules. Every mistake is one ``disco:``
line: a usage error exits 2, a refusal 1, and nothing is stored."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.home import Home
from node.lab import LabNode
from protocol.entry import sign_entry
from tests.conftest import Cli
from tests.nodes import Nodes, node_group
from tests.test_cli_bookkeeper import Fed, mistake


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group(env={"DISCO_GOSSIP_INTERVAL": "600"}) as n:
        yield n


def _home_sharing_a_digit(path: Path, name: str, first: str) -> str:
    """A LAB made as ``disco init`` makes one (:meth:`Home.create`) whose id begins
    with the hex digit ``first``, so that a ref ``first:SEQ`` names two entries."""
    for _ in range(2000):
        _, signer = Home.create(path, name)
        if signer.public_key.hex().startswith(first):
            return signer.public_key.hex()
        shutil.rmtree(path)
    raise AssertionError("no key with that first digit in 2000 tries")


@pytest.fixture
def fed(cli: Cli, tmp_path: Path) -> Fed:
    """Two LABs of one federation whose ids begin with the same hex digit."""
    farm, fab = tmp_path / "farm", tmp_path / "fab"
    a = cli.json("init", "--name", "Freedom Farms", home=farm)["lab_id"]
    b = _home_sharing_a_digit(fab, "Fab Lab", a[0])
    genesis = tmp_path / "genesis.json"
    cli("federation", "create", "--name", "Cooperation Jackson",
        "--founder", f"{a}=Freedom Farms", "--founder", f"{b}=Fab Lab",
        "--unit", "JXC:2", "--credit-limit", "JXC=1000.00", "--out", str(genesis))
    cli("join", str(genesis), home=farm)
    cli("join", str(genesis), home=fab)
    return Fed(farm, fab, a, b, genesis)


def short(ref: str) -> str:
    """A ref as a person copies it from ``disco log``: AUTHOR8:SEQ:HASH8."""
    author, seq, digest = ref.split(":")
    return f"{author[:8]}:{seq}:{digest[:8]}"


def test_a_wrong_income_and_wrong_hours_are_mended(cli: Cli, fed: Fed,
                                                   tmp_path: Path) -> None:
    farm = fed.farm
    cli("member", "add", "ana", "--name", "Ana", home=farm)
    cli("member", "add", "bo", "--name", "Bo", home=farm)
    work = cli.json("record", "--member", "ana", "--stream", "care", "--hours", "2",
                    "--date", "2025-10-30", home=farm)["ref"]
    cli("record", "--member", "bo", "--stream", "love", "--hours", "1", "--date",
        "2025-10-02", home=farm)
    wrong = cli.json("income", "--amount", "5000.00", "--unit", "JXC", "--period",
                     "2025-10", "--source", "market", home=farm)["ref"]
    twice = cli.json("income", "--amount", "20.00", "--unit", "JXC", "--period", "2025-10",
                     "--source", "market", home=farm)["ref"]
    assert cli.json("payout", "--period", "2025-10", home=farm)["income"] == 502000

    # The bookkeeper typed 5000 for 50, and booked the 20 twice.
    fixed = cli.json("correct", short(wrong), "--amount", "50.00", "--reason", "typo",
                     home=farm)
    assert fixed["kind"] == "income.corrected"
    voided = cli("void", short(twice), "--reason", "booked twice", home=farm).stdout
    assert voided.startswith("entry.voided seq ")
    payout = cli.json("payout", "--period", "2025-10", home=farm)
    assert payout["income"] == 5000 and sum(payout["shares"].values()) == 5000
    assert "Income 50.00 JXC for 2025-10" in cli("payout", "--period", "2025-10",
                                                 home=farm).stdout

    # Ana's two hours were two and a half, done on the 1st of November.
    cli("correct", short(work)[:11], "--hours", "2:30", "--date", "2025-11-01", home=farm)
    october = cli.json("flows", "--by", "member", "--period", "2025-10", home=farm)
    assert october["contributions"] == [{"key": [fed.a, "bo", "love"], "minutes": 60}]
    november = cli.json("flows", "--by", "member", "--period", "2025-11", home=farm)
    assert november["contributions"] == [{"key": [fed.a, "ana", "care"], "minutes": 150}]
    assert set(cli.json("payout", "--period", "2025-10", home=farm)["shares"]) == {"bo"}
    # A second correction replaces the first: back to October, the hours kept.
    cli("correct", work, "--date", "2025-10-31", home=farm)
    october = cli.json("flows", "--by", "member", "--period", "2025-10", home=farm)
    assert {"key": [fed.a, "ana", "care"], "minutes": 150} in october["contributions"]

    out = tmp_path / "cj.jsonld"
    cli("export-vf", "--out", str(out), home=farm)
    events = [n for n in json.loads(out.read_text())["@graph"] if n.get("action") == "vf:work"]
    ana = [n for n in events if n["provider"].endswith(":member:ana")]
    assert len(ana) == 1 and ana[0]["effortQuantity"]["hasNumericalValue"] == "2.5"
    assert ana[0]["hasPointInTime"] == "2025-10-31T00:00:00Z"
    assert ana[0]["@id"] == f"urn:disco:entry:{work}"  # the contribution, as corrected

    # The log keeps every original, with what corrected or voided it.
    log = cli("log", home=farm).stdout
    assert "5000.00 JXC for 2025-10" in log and "20.00 JXC for 2025-10" in log
    assert f"corrects {short(wrong)}: 50.00 JXC for 2025-10 from 'market', reason 'typo'" \
        in log
    assert f"voids {short(twice)}: 'booked twice'" in log
    assert f"corrects {short(work)}: ana: 2:30 h care, date '2025-11-01'" in log
    # The audit of the node's own store replays the same rules: it passes.
    assert "audit passed" in cli("audit", "--home", str(farm)).stdout


def test_every_mistake_is_one_line_and_changes_nothing(cli: Cli, fed: Fed) -> None:
    farm = fed.farm
    cli("member", "add", "ana", home=farm)
    work = cli.json("record", "--member", "ana", "--stream", "care", "--hours", "2",
                    home=farm)["ref"]
    income = cli.json("income", "--amount", "10.00", "--unit", "JXC", "--period", "2025-10",
                      "--source", "sales", home=farm)["ref"]
    offer = cli.json("transfer", "offer", "--to", "Fab Lab", "--amount", "5", "--unit",
                     "JXC", home=farm)["ref"]
    fixed = cli.json("correct", work, "--hours", "3", home=farm)["ref"]
    gone = cli.json("income", "--amount", "1.00", "--unit", "JXC", "--period", "2025-10",
                    "--source", "dup", home=farm)["ref"]
    cli("void", gone, "--reason", "dup", home=farm)
    before = cli("log", "--json", home=farm).stdout

    # Refused by the ledger's rules (exit 1), with the rule's code.
    for args in (["void", offer, "--reason", "x"], ["correct", offer, "--amount", "1"]):
        line = mistake(cli, 1, *args, home=farm)
        assert "mutual credit with another LAB" in line and "[not-correctable]" in line
    line = mistake(cli, 1, "void", gone, "--reason", "again", home=farm)
    assert "[already-voided]" in line
    assert "[already-voided]" in mistake(cli, 1, "correct", gone, "--amount", "2", home=farm)
    line = mistake(cli, 1, "correct", fixed, "--hours", "1", home=farm)
    assert "name the entry it corrects" in line and "[not-correctable]" in line
    line = mistake(cli, 1, "correct", f"{fed.a[:8]}:2", "--note", "x", home=farm)
    assert "member.added cannot be corrected" in line
    assert "[unknown-member]" in mistake(cli, 1, "correct", work, "--member", "zed", home=farm)
    # Refs that name nothing held (exit 1) or cannot be refs (exit 2).
    assert "run 'disco sync' first" in mistake(cli, 1, "void", f"{fed.a[:8]}:99",
                                               "--reason", "x", home=farm)
    assert "want a ref" in mistake(cli, 2, "void", "12#8", "--reason", "x", home=farm)
    # Usage errors (exit 2): no reason, an empty one, nothing to correct, options that
    # do not fit the entry, amounts, hours and dates that cannot be.
    assert "--reason" in mistake(cli, 2, "void", income, home=farm)
    assert "--reason" in mistake(cli, 2, "void", income, "--reason", " ", home=farm)
    assert "nothing to correct" in mistake(cli, 2, "correct", income, home=farm)
    assert "--hours does not apply to an income" in mistake(cli, 2, "correct", income,
                                                           "--hours", "2", home=farm)
    assert "--amount does not apply to a contribution" in mistake(
        cli, 2, "correct", work, "--amount", "2", home=farm)
    for amount in ("-5", "1e2", "12,50"):
        line = mistake(cli, 2, "correct", income, "--amount", amount, home=farm)
        assert "--amount" in line, line
    assert "unit 'EUR' is not a unit" in mistake(cli, 2, "correct", income, "--unit", "EUR",
                                                 home=farm)
    assert "--hours" in mistake(cli, 2, "correct", work, "--hours", "2:75", home=farm)
    assert "--date" in mistake(cli, 2, "correct", work, "--date", "2025-02-30", home=farm)
    assert "not in 2025-10" in mistake(cli, 2, "correct", income, "--period", "2025-10",
                                       "--date", "2025-11-02", home=farm)
    assert cli("log", "--json", home=farm).stdout == before


def test_another_labs_entries_acknowledgements_and_the_audit(
        cli: Cli, fed: Fed, nodes: Nodes, tmp_path: Path) -> None:
    cli("member", "add", "kofi", home=fed.fab)
    theirs = cli.json("record", "--member", "kofi", "--stream", "livelihood", "--hours", "3",
                      "--for", "Freedom Farms", home=fed.fab)["ref"]
    cli("member", "add", "ana", home=fed.farm)
    cli("record", "--member", "ana", "--stream", "care", "--hours", "1", home=fed.farm)
    url = nodes.start_one(fed.fab).url
    assert url is not None
    cli("sync", url, home=fed.farm, input="")
    nodes.stop_all()

    # Another LAB's entry: held here, but not this LAB's to mend (exit 1).
    for args in (["void", theirs, "--reason", "x"], ["correct", theirs, "--hours", "1"]):
        line = mistake(cli, 1, *args, home=fed.farm)
        assert "[not-own-entry]" in line and "another LAB's" in line, line
    # Both ids begin with the same digit: "X:3" names an entry of each (exit 1).
    assert fed.a[0] == fed.b[0]
    line = mistake(cli, 1, "void", f"{fed.a[0]}:3", "--reason", "x", home=fed.farm)
    assert "names several entries" in line and "give more of the ref" in line
    # An acknowledgement is voided (withdrawn), then given again; it is not corrected.
    ack = cli.json("acknowledge", theirs, home=fed.farm)["ref"]
    assert "[already-acknowledged]" in mistake(cli, 1, "acknowledge", theirs, home=fed.farm)
    cli("void", ack, "--reason", "acknowledged before the work was done", home=fed.farm)
    again = cli.json("acknowledge", theirs, home=fed.farm)
    assert again["kind"] == "contribution.acknowledged"
    line = mistake(cli, 1, "correct", again["ref"], "--note", "x", home=fed.farm)
    assert "no figures to correct: void it" in line

    # The audit replays the same rules: a bundle with the void passes...
    clean = tmp_path / "clean.bundle"
    cli("export", "--out", str(clean), home=fed.farm)
    report = cli.json("audit", str(clean))
    assert report["ok"] is True and report["violations"] == [] and report["entries"] == 9
    # ...and a void of another LAB's entry, signed properly by this LAB's key and
    # stored past the honest check (as a faulty node would), is named as a violation.
    home = Home.open(fed.farm)
    with LabNode.open(home, home.signer()) as node:
        seq, head = node.store.head(node.lab_id)
        author, s, digest = theirs.split(":")
        body = {"entry": [bytes.fromhex(author), int(s), bytes.fromhex(digest)],
                "reason": "forged"}
        assert node.signer is not None
        forged = sign_entry(node.signer, federation_id=node.require_genesis().federation_id,
                            seq=seq + 1, prev=head, ts_us=1_800_000_000_000_000,
                            kind="entry.voided", body=body)
        node.store.insert([forged])
    bundle = tmp_path / "forged.bundle"
    cli("export", "--out", str(bundle), home=fed.farm)
    result = cli("audit", str(bundle), "--json", check=False)
    assert result.returncode == 1, result.stderr
    violations = json.loads(result.stdout)["violations"]
    assert [(v["code"], v["author"], v["seq"]) for v in violations] == [
        ("not-own-entry", fed.a, forged.seq)]
