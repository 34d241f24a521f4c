"""Governance through the real ``disco`` process (issue 12): ``propose`` each action,
``vote``, ``proposals``, ``leave``, ``key rotate`` and ``key new``, and the genesis
rules of ``federation create``. Entries move between the homes as a sync would move
them (:func:`share`: the library's checked intake). Every mistake is one
``disco:`` line: a usage error exits 2, a refusal 1 (with the ledger's code), and
nothing is stored."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from federation.governance import DAY_US
from node.home import Home
from node.lab import LabNode
from protocol.entry import check_signature
from protocol.keys import Signer, is_encrypted_pem
from tests.conftest import Cli, Federation, make_federation
from tests.test_cli_bookkeeper import mistake

FULL_REF = re.compile(r"^proposal\.made seq (\d+)  ref ([0-9a-f]{64}:\d+:[0-9a-f]{64})$")
LONG_AGO = 1_700_000_100_000_000
"""A clock far back (November 2023): a proposal made then has lapsed by now."""


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    """Farm, FabLab and LandTrust, joined, each holding the others' feeds."""
    fed = make_federation(tmp_path, ["Farm", "FabLab", "LandTrust"])
    everyone(fed)
    return fed


def share(src: Home, dst: Home) -> int:
    """Bring every entry ``src`` holds to ``dst``, checked as a sync checks them;
    returns how many were new there."""
    with LabNode.open(src) as s:
        raws = [raw for lab in s.feeds() for _, raw in s.store.read_raw(lab)]
    with LabNode.open(dst) as d:
        return d.ingest(raws).stored


def everyone(fed: Federation) -> None:
    """Every home holds every entry any of them holds."""
    for _ in range(2):
        for src in fed.homes:
            for dst in fed.homes:
                if src is not dst:
                    share(src, dst)


def lab_ids(fed: Federation) -> list[str]:
    return [h.lab_id.hex() for h in fed.homes]


def listed(cli: Cli, home: Path, *args: str) -> dict[str, dict[str, object]]:
    """``disco proposals --json`` by ref."""
    rows = cli.json("proposals", *args, home=home)
    assert isinstance(rows, list)
    return {row["ref"]: row for row in rows}


def log_of(cli: Cli, home: Path) -> str:
    return cli("log", "--json", home=home).stdout


def test_each_action_is_proposed_voted_and_listed(cli: Cli, fed: Federation) -> None:
    farm, fab, land = (h.path for h in fed.homes)
    a, b, c = lab_ids(fed)
    newcomer = Signer.from_seed(b"\x07" * 32).public_key.hex()
    text = cli("propose", "admit", "--lab", newcomer, "--name", "Nueva", "--note", "vetted",
               home=farm).stdout.strip()
    match = FULL_REF.match(text)
    assert match, text
    admit = match[2]
    rule = cli.json("propose", "rule", "--credit-limit", "JXC=2000.00", home=farm)["ref"]
    both = cli.json("propose", "rule", "--threshold", "3/4", "--expiry-days", "14",
                    home=fab)["ref"]
    land_head = cli.json("log", "--author", "LandTrust", home=farm)[-1]["seq"]
    remove = cli.json("propose", "remove", "--lab", "landtrust", home=farm)["ref"]
    recover = cli.json("propose", "recover", "--lab", c[:6], "--key", "ab" * 32,
                       home=fab)["ref"]
    keep = f"{c[:8]}:{land_head}"
    repair = cli.json("propose", "repair", "--lab", "LandTrust", "--keep", keep,
                      "--key", "cd" * 32, home=fab)["ref"]
    assert all(ref.count(":") == 2 for ref in (rule, both, remove, recover, repair))

    held = listed(cli, farm)
    assert set(held) == {admit, rule, remove}  # (fab's are not held here yet)
    row = held[admit]
    assert {k: row[k] for k in ("action", "proposer", "state", "votes", "needed")} == {
        "action": "admit", "proposer": a, "state": "open", "votes": {a: "yes"}, "needed": 2}
    assert (row["lab"], row["name"], row["note"], row["reason"]) == (newcomer, "Nueva",
                                                                    "vetted", "")
    assert sorted(row["voters"]) == sorted([a, b, c])  # type: ignore[arg-type]
    assert row["expires"] and row["made"] and row["decided"] is None
    assert (held[rule]["unit"], held[rule]["credit_limit"]) == ("JXC", "2000.00")
    assert (held[remove]["lab"], held[remove]["last_seq"]) == (c, land_head)
    assert held[remove]["voters"] == sorted([a, b])  # LandTrust does not vote on it

    everyone(fed)
    # Fab votes the admission in (2 of 3); Fab and LandTrust vote the limit down.
    voted = cli("vote", admit.split(":")[2][:6], "yes", "--note", "welcome", home=fab).stdout
    assert voted.startswith("proposal.voted seq ")
    assert f"proposal {admit[:8]}:{admit.split(':')[1]} is passed: 2 yes, 0 no" in voted
    answer = cli.json("vote", rule, "no", home=fab)
    assert (answer["kind"], answer["proposal"], answer["state"]) == ("proposal.voted", rule,
                                                                    "open")
    cli("vote", rule, "no", home=land)
    held_fab = listed(cli, fab)
    assert held_fab[admit]["state"] == "passed" and held_fab[admit]["decided"]
    assert held_fab[admit]["votes"] == {a: "yes", b: "yes"}
    assert (held_fab[rule]["state"], held_fab[rule]["reason"]) == ("open", "")
    assert held_fab[both]["threshold"] == "3/4" and held_fab[both]["expiry_days"] == 14
    assert (held_fab[recover]["key"], held_fab[recover]["from_seq"]) == ("ab" * 32,
                                                                        land_head + 1)
    assert str(held_fab[repair]["keep"]).startswith(f"{c}:{land_head}:")
    assert held_fab[repair]["key"] == "cd" * 32
    everyone(fed)
    held_farm = listed(cli, farm)
    assert (held_farm[rule]["state"], held_farm[rule]["reason"]) == ("rejected", "voted down")
    assert held_farm[rule]["votes"] == {a: "yes", b: "no", c: "no"}
    still = listed(cli, farm, "--open")
    assert set(still) == {both, remove, recover, repair}
    # The admitted LAB is in the roster: --lab takes its name now.
    cli("propose", "remove", "--lab", "Nueva", "--last-seq", "0", home=farm)
    table = cli("proposals", home=farm, env={"COLUMNS": "200"}).stdout
    assert "Proposals" in table and f"{a[:8]}:{admit.split(':')[1]}:{admit.split(':')[2][:8]}" \
        in table
    assert "rejected (voted down)" in table and "Nueva" in table
    assert "no open proposals" not in table


def test_a_proposal_made_long_ago_lapses_and_takes_no_more_votes(cli: Cli,
                                                                 fed: Federation) -> None:
    farm, fab = fed.homes[0].path, fed.homes[1].path
    # The command line reads this machine's clock: an old proposal is made through
    # the library, with its author's timestamp far back.
    with fed.node(0) as node:
        old = node.author("proposal.made", {"action": "rule", "expiry_days": 7}, LONG_AGO)
    recent = cli.json("propose", "rule", "--expiry-days", "9", home=farm)["ref"]
    everyone(fed)
    held = listed(cli, fab)
    assert held[str(old.ref)]["state"] == "lapsed"
    assert held[str(old.ref)]["expires"] == "2023-12-14T22:15:00Z"  # 30 days on
    assert held[recent]["state"] == "open"
    assert set(listed(cli, fab, "--open")) == {recent}
    before = log_of(cli, fab)
    line = mistake(cli, 1, "vote", str(old.ref), "yes", home=fab)
    assert "lapsed before this vote" in line and line.endswith("[vote-late]")
    assert log_of(cli, fab) == before
    assert "lapsed" in cli("proposals", home=fab).stdout
    assert LONG_AGO + 30 * DAY_US < 1_800_000_000_000_000


def test_every_refusal_is_one_line_and_stores_nothing(cli: Cli, fed: Federation) -> None:
    farm, fab = fed.homes[0].path, fed.homes[1].path
    a, b, c = lab_ids(fed)
    land = fed.homes[2].path
    rule = cli.json("propose", "rule", "--expiry-days", "10", home=farm)["ref"]
    remove = cli.json("propose", "remove", "--lab", "LandTrust", home=farm)["ref"]
    everyone(fed)
    cli("vote", rule, "yes", home=fab)
    before = {home: log_of(cli, home) for home in (farm, fab, land)}

    # Refused by the ledger (exit 1), with its code.
    assert mistake(cli, 1, "vote", rule, "no", home=fab).endswith("[already-voted]")
    line = mistake(cli, 1, "vote", rule, "yes", home=farm)  # the proposer: already its yes
    assert "its proposer's yes vote" in line and line.endswith("[already-voted]")
    line = mistake(cli, 1, "vote", remove, "no", home=land)  # the LAB it is about
    assert f"{c[:8]} does not vote on" in line and line.endswith("[not-a-voter]")
    # A proposal that could not pass as the roster stands (exit 1).
    line = mistake(cli, 1, "propose", "admit", "--lab", b, "--name", "Again", home=farm)
    assert "could not pass: the LAB is already in the roster [cannot-apply]" in line
    line = mistake(cli, 1, "propose", "repair", "--lab", "LandTrust", "--keep", f"{a[:8]}:1",
                   "--key", "cd" * 32, home=fab)
    assert "the entry to keep is not in the repaired LAB's feed [cannot-apply]" in line
    # Refs that name no proposal held here (exit 1), or cannot be refs (exit 2).
    assert "names no proposal held here" in mistake(cli, 1, "vote", f"{c[:8]}:1", "yes",
                                                    home=fab)
    assert "names no proposal held here" in mistake(cli, 1, "vote", "abcdef12", "yes",
                                                    home=fab)
    assert "want a proposal's ref" in mistake(cli, 2, "vote", "12#8", "yes", home=fab)
    assert "yes|no" in mistake(cli, 2, "vote", rule, "maybe", home=fab)
    # Usage errors (exit 2): fractions, keys, ids, units, amounts, rules, notes.
    for bad in ("3/2", "0/3", "two/3", "2/3/4", "1/1001"):
        line = mistake(cli, 2, "propose", "rule", "--threshold", bad, home=farm)
        assert "--threshold" in line, line
    assert "--expiry-days" in mistake(cli, 2, "propose", "rule", "--expiry-days", "0",
                                      home=farm)
    assert "name a rule to change" in mistake(cli, 2, "propose", "rule", home=farm)
    line = mistake(cli, 2, "propose", "rule", "--credit-limit", "EUR=5.00", home=farm)
    assert "unit 'EUR' is not a unit of this federation" in line
    for bad in ("JXC", "JXC=-5", "JXC=1.234", "JXC=lots"):
        line = mistake(cli, 2, "propose", "rule", "--credit-limit", bad, home=farm)
        assert "--credit-limit" in line, line
    for bad in ("zz" * 32, "ab" * 31, "ab" * 33, "nope"):
        line = mistake(cli, 2, "propose", "recover", "--lab", "LandTrust", "--key", bad,
                       home=farm)
        assert "want a public key of 64 hex digits" in line, line
    assert "want a LAB id of 64 hex digits" in mistake(
        cli, 2, "propose", "admit", "--lab", "Nueva", "--name", "Nueva", home=farm)
    assert "names no LAB of the federation" in mistake(
        cli, 2, "propose", "remove", "--lab", "Atlantis", home=farm)
    assert "--note" in mistake(cli, 2, "propose", "remove", "--lab", "LandTrust", "--note",
                               " ", home=farm)
    assert "--from-seq" in mistake(cli, 2, "propose", "recover", "--lab", "LandTrust",
                                   "--key", "ab" * 32, "--from-seq", "0", home=farm)
    assert "want a ref" in mistake(cli, 2, "propose", "repair", "--lab", "LandTrust",
                                   "--keep", "x#1", "--key", "ab" * 32, home=farm)
    assert {home: log_of(cli, home) for home in (farm, fab, land)} == before


def test_the_ledger_takes_an_admission_of_a_member_as_an_entry_and_rejects_it(
        cli: Cli, fed: Federation) -> None:
    # The command line refuses it (above); a node that signs it anyway (the ledger's
    # rules allow the entry) sees it rejected at once, with the reason.
    b = fed.homes[1].lab_id
    with fed.node(0) as node:
        entry = node.author("proposal.made", {"action": "admit", "lab": b, "name": "Twice"},
                            1_700_000_200_000_000)
    row = listed(cli, fed.homes[0].path)[str(entry.ref)]
    assert (row["state"], row["reason"]) == ("rejected", "the LAB is already in the roster")


def test_leave_asks_first_and_is_final(cli: Cli, fed: Federation) -> None:
    land = fed.homes[2].path
    cli("member", "add", "ana", home=land)
    before = log_of(cli, land)
    for answer in ("n\n", ""):  # no, or no answer at all: nothing happens
        result = cli("leave", home=land, input=answer, check=False)
        assert result.returncode == 1 and "disco: aborted" in result.stderr
        assert "leaves the federation for good" in result.stderr
    assert log_of(cli, land) == before
    left = cli("leave", "--note", "merging with Farm", home=land, input="y\n").stdout
    assert "lab.left seq 3" in left and "has left the federation; its feed counts to seq 3" \
        in left
    line = mistake(cli, 1, "record", "--member", "ana", "--stream", "care", "--hours", "1",
                   home=land)
    assert "left the federation at seq 3" in line and line.endswith("[left]")
    assert mistake(cli, 1, "leave", "--yes", home=land).endswith("[left]")  # (restored)
    assert cli.json("log", "--author", "LandTrust", home=land)[-1]["kind"] == "lab.left"


def test_a_rotated_key_signs_from_the_next_entry_and_the_old_one_no_more(
        cli: Cli, fed: Federation) -> None:
    home = fed.homes[0]
    farm, lab = home.path, home.lab_id
    cli("member", "add", "ana", home=farm)
    first = home.key_path.read_bytes()
    text = cli("key", "rotate", home=farm).stdout
    assert "key.rotated seq 3  ref " in text
    new = re.search(r"new key ([0-9a-f]{64}) signs this LAB's feed from seq 4", text)
    assert new, text
    assert Home.open(farm).signer().public_key.hex() == new[1] != lab.hex()
    kept = sorted(farm.glob("lab.key.old-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == first
    assert {p.stat().st_mode & 0o777 for p in (kept[0], home.key_path)} == {0o600}
    assert not (farm / "lab.key.new").exists()

    recorded = cli.json("record", "--member", "ana", "--stream", "care", "--hours", "1",
                        home=farm)
    with LabNode.open(home) as node:
        entry = node.store.get(lab, recorded["seq"])
    assert entry is not None and entry.author == lab  # the LAB's feed, the new key's hand
    check_signature(entry, bytes.fromhex(new[1]))

    again = cli.json("key", "rotate", home=farm)
    assert set(again) >= {"key", "from_seq"} and again["from_seq"] == recorded["seq"] + 2
    assert Home.open(farm).signer().public_key.hex() == again["key"]
    # The old key, put back, cannot author any more: one line, nothing stored.
    current = home.key_path.read_bytes()
    home.key_path.write_bytes(first)
    before = log_of(cli, farm)
    line = mistake(cli, 1, "record", "--member", "ana", "--stream", "care", "--hours", "1",
                   home=farm)
    assert "this key was replaced by key rotation" in line
    assert f"signs LAB Farm's feed from seq {again['from_seq']}" in line
    assert log_of(cli, farm) == before
    home.key_path.write_bytes(current)
    cli("record", "--member", "ana", "--stream", "care", "--hours", "1", home=farm)


def test_a_rotation_cut_short_is_finished_or_undone(cli: Cli, fed: Federation) -> None:
    home = fed.homes[0]
    farm = home.path
    # A new key file that no entry names (the rotation stopped before its entry):
    # removed, and the command says to run it again.
    stray = Signer.generate()
    (farm / "lab.key.new").write_bytes(stray.to_pem())
    (farm / "lab.key.new").chmod(0o600)
    line = mistake(cli, 1, "key", "rotate", home=farm)
    assert "did not finish" in line and "run 'disco key rotate' again" in line
    assert not (farm / "lab.key.new").exists()
    # One whose entry was stored (it stopped before the rename): put in place.
    waiting = Signer.generate()
    with fed.node(0) as node:
        node.author("key.rotated", {"key": waiting.public_key}, 1_700_000_300_000_000)
    (farm / "lab.key.new").write_bytes(waiting.to_pem())
    (farm / "lab.key.new").chmod(0o600)
    done = cli.json("key", "rotate", home=farm)
    assert (done["key"], done["from_seq"], done["ref"]) == (waiting.public_key.hex(), 3, None)
    assert Home.open(farm).signer().public_key == waiting.public_key
    cli("member", "add", "bo", home=farm)


def test_an_encrypted_key_rotates_to_an_encrypted_key(cli: Cli, tmp_path: Path) -> None:
    secret = {"DISCO_PASSPHRASE": "correct horse"}
    farm, fab = tmp_path / "farm", tmp_path / "fab"
    a = json.loads(cli("init", "--name", "Farm", "--encrypt", "--json", home=farm,
                       env=secret).stdout)["lab_id"]
    b = cli.json("init", "--name", "Fab", home=fab)["lab_id"]
    genesis = tmp_path / "genesis.json"
    cli("federation", "create", "--name", "F", "--founder", f"{a}=Farm", "--founder",
        f"{b}=Fab", "--unit", "JXC:2", "--out", str(genesis))
    cli("join", str(genesis), home=farm, env=secret)
    assert "set DISCO_PASSPHRASE" in mistake(cli, 1, "key", "rotate", home=farm,
                                             env={"DISCO_PASSPHRASE": ""})
    out = json.loads(cli("key", "rotate", "--json", home=farm, env=secret).stdout)
    key_file = farm / "lab.key"
    assert is_encrypted_pem(key_file.read_bytes())
    assert Home.open(farm).signer(b"correct horse").public_key.hex() == out["key"]
    cli("member", "add", "ana", home=farm, env=secret)


def test_a_lost_key_is_replaced_and_signs_once_the_recovery_passes(
        cli: Cli, fed: Federation) -> None:
    farm, fab, land = (h.path for h in fed.homes)
    c = fed.homes[2].lab_id.hex()
    cli("member", "add", "ana", home=land)
    everyone(fed)
    line = mistake(cli, 2, "key", "new", home=land)
    assert "lab.key exists; give --force" in line
    lost = (land / "lab.key").read_bytes()
    text = cli("key", "new", "--force", home=land).stdout
    new = re.search(r"new key ([0-9a-f]{64}) saved in", text)
    assert new, text
    command = f"disco propose recover --lab {c} --key {new[1]} --from-seq 3"
    assert f"  {command}\n" in text
    [kept] = land.glob("lab.key.old-*")
    assert kept.read_bytes() == lost

    before = log_of(cli, land)
    line = mistake(cli, 1, "record", "--member", "ana", "--stream", "care", "--hours", "1",
                   home=land)
    assert line == ("disco: this key does not sign LAB LandTrust's feed yet: it waits for "
                    "a recovery to pass (disco proposals)")
    assert log_of(cli, land) == before

    # The others run the printed line, and vote it through.
    proposed = cli.json(*shlex.split(command)[1:], home=farm)["ref"]
    everyone(fed)
    assert listed(cli, land)[proposed]["state"] == "open"
    cli("vote", proposed, "yes", home=fab)
    everyone(fed)
    assert listed(cli, land)[proposed]["state"] == "passed"
    recorded = cli.json("record", "--member", "ana", "--stream", "care", "--hours", "1",
                        home=land)
    assert recorded["seq"] == 3
    with LabNode.open(fed.homes[2]) as node:
        entry = node.store.get(fed.homes[2].lab_id, 3)
    assert entry is not None
    check_signature(entry, bytes.fromhex(new[1]))

    # In a home whose key file is gone, no --force is needed.
    (land / "lab.key").unlink()
    again = cli.json("key", "new", home=land)
    assert set(again) >= {"key", "lab", "from_seq", "command"}
    assert (again["lab"], again["from_seq"]) == (c, 4)
    assert again["command"] == (f"disco propose recover --lab {c} --key {again['key']} "
                                "--from-seq 4")


def test_federation_create_takes_the_voting_rules(cli: Cli, tmp_path: Path) -> None:
    ids = [cli.json("init", "--name", n, home=tmp_path / n)["lab_id"] for n in "abc"]
    founders = [arg for i, n in zip(ids, "abc", strict=True)
                for arg in ("--founder", f"{i}={n}")]
    base = ["federation", "create", "--name", "F", *founders, "--unit", "JXC:2"]
    genesis = tmp_path / "genesis.json"
    cli(*base, "--threshold", "3/4", "--expiry-days", "14", "--out", str(genesis))
    rules = json.loads(genesis.read_text())["rules"]
    assert (rules["threshold"], rules["expiry_days"]) == ([3, 4], 14)
    cli("join", str(genesis), home=tmp_path / "a")
    ref = cli.json("propose", "rule", "--expiry-days", "3", home=tmp_path / "a")["ref"]
    row = listed(cli, tmp_path / "a")[ref]
    assert row["needed"] == 3  # ceil(3/4 of 3)
    for bad in (["--threshold", "4/3"], ["--threshold", "half"], ["--expiry-days", "0"],
                ["--expiry-days", "3651"]):
        line = mistake(cli, 2, *base, *bad, "--out", str(tmp_path / "other.json"))
        assert bad[0] in line, line
    assert not (tmp_path / "other.json").exists()
