"""A LAB admitted by vote is named by the roster everywhere (``disco balance``,
``transfers``, ``flows``, ``log``, ``member list``, ``export-vf``), and ``disco log``
tells governance entries in words (issue 12).

The admission is built through the library, as tests/test_cli_governance.py does:
entries move between the homes as a sync would move them (:func:`share`); the
newcomer keeps the genesis, takes the founders' feeds and joins. Its folder was made
with another name than the federation gave it: the roster's name is the one shown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from node.home import Home
from node.lab import LabNode
from node.projection import VIEW, LedgerProjection
from protocol import canonical
from tests.conftest import Cli, Federation, make_federation
from tests.nodes import now_us
from tests.test_cli_governance import everyone, lab_ids, share

NAME = "Nueva Coop"
"""The name the federation admits the newcomer by (its folder says 'Nueva')."""
WIDE = {"COLUMNS": "200"}


def admit(fed: Federation, root: Path) -> Home:
    """Admit a fourth LAB (Farm proposes, FabLab votes yes: 2 of 3), let it join, and
    share every feed with every home (the newcomer's too, now one of ``fed.homes``)."""
    nueva, signer = Home.create(root / "nueva", "Nueva")
    with fed.node(0) as farm:
        made = farm.author("proposal.made", {"action": "admit", "lab": nueva.lab_id,
                                             "name": NAME, "note": "vetted"}, now_us())
    everyone(fed)
    with fed.node(1) as fab:
        fab.author("proposal.voted", {"proposal": made.ref.as_list(), "vote": "yes"},
                   now_us())
    everyone(fed)
    with LabNode.open(nueva, signer) as node:
        node.keep_genesis(fed.genesis_file)
    share(fed.homes[1], nueva)
    with LabNode.open(nueva, signer) as node:
        node.join(fed.genesis_file, now_us())
    fed.homes.append(nueva)
    everyone(fed)
    return nueva


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    fed = make_federation(tmp_path, ["Farm", "FabLab", "LandTrust"])
    everyone(fed)
    return fed


def log_lines(cli: Cli, home: Path, *args: str) -> list[str]:
    return cli("log", *args, home=home).stdout.splitlines()


def test_an_admitted_lab_is_named_by_the_roster_everywhere(cli: Cli, fed: Federation,
                                                           tmp_path: Path) -> None:
    nueva = admit(fed, tmp_path)
    farm = fed.homes[0].path
    new = nueva.lab_id.hex()
    cli("member", "add", "ana", "--name", "Ana", home=nueva.path)
    cli("record", "--member", "ana", "--stream", "care", "--hours", "1:30", "--for", "Farm",
        home=nueva.path)
    offer = cli.json("transfer", "offer", "--to", "Farm", "--amount", "5.00", "--unit", "JXC",
                     home=nueva.path)["ref"]
    everyone(fed)
    cli("transfer", "accept", offer, home=farm)
    everyone(fed)

    balances = cli.json("balance", home=farm)["balances"]
    assert balances[new] == {"JXC": -500} and len(balances) == 4
    table = cli("balance", home=farm, env=WIDE).stdout
    assert re.search(rf"{NAME}\s.*-5\.00", table), table
    assert new[:8] not in table
    moved = cli("transfers", home=farm, env=WIDE).stdout
    assert re.search(rf"{NAME}\s.*Farm\s.*5\.00 JXC\s.*accepted", moved), moved
    assert cli.json("transfers", home=farm)["transfers"][0]["from"] == new  # (JSON: ids)
    flows = cli("flows", "--by", "lab", home=farm, env=WIDE).stdout
    assert re.search(rf"{NAME}\s.*Farm\s.*care", flows) and f"{NAME} " in flows.split(
        "Completed transfers")[1], flows
    members = cli.json("member", "list", "--lab", NAME, home=farm)
    assert (members["lab"], members["name"]) == (new, NAME)

    lines = log_lines(cli, farm, "--author", NAME)
    assert all(f"  {NAME:<16} {new[:8]}:" in line for line in lines), lines
    assert lines[0].endswith(f"{'lab.joined':<25} joined 'Test Federation' as {NAME}")
    assert any(line.endswith("5.00 JXC to Farm") for line in lines), lines
    accepted = [line for line in log_lines(cli, farm, "--author", "Farm")
                if "transfer.accepted" in line]
    assert len(accepted) == 1 and f"offer {new[:8]}:" in accepted[0]

    document = json.loads(cli("export-vf", home=farm).stdout)
    organizations = {n["@id"]: n["name"] for n in document["@graph"]
                     if n["@type"] == "Organization"}
    assert list(organizations.values()) == ["Farm", "FabLab", "LandTrust", NAME]
    assert organizations[f"urn:disco:lab:{new}"] == NAME
    assert {"@id": f"urn:disco:lab:{new}:member:ana", "@type": "Person", "name": "Ana",
            "memberOf": f"urn:disco:lab:{new}"} in document["@graph"]
    farm_iri = f"urn:disco:lab:{fed.homes[0].lab_id.hex()}"
    events = {n["action"]: n for n in document["@graph"] if n["@type"] == "EconomicEvent"}
    assert (events["vf:work"]["provider"], events["vf:work"]["receiver"]) == (
        f"urn:disco:lab:{new}:member:ana", farm_iri)
    assert (events["vf:transfer"]["provider"], events["vf:transfer"]["receiver"]) == (
        f"urn:disco:lab:{new}", farm_iri)

    # Outside the roster a LAB is the first 8 hex digits of its id.
    with fed.node(0) as node:
        ledger = node.ledger()
        assert ledger.lab_name(nueva.lab_id) == NAME
        assert ledger.lab_name(b"\x03" * 32) == "03030303"


def test_a_summary_saved_without_the_roster_is_saved_again_with_it(
        cli: Cli, fed: Federation, tmp_path: Path) -> None:
    # A node upgraded from a version whose saved summary had no roster: 'disco
    # balance' reads the roster from the ledger once, and saves the summary again.
    nueva = admit(fed, tmp_path)
    home = fed.homes[0]
    with LabNode.open(home) as node:
        node.ledger()
        position, state, summary = node.store.load_view(VIEW)
        assert state is not None and summary is not None
        old = canonical.decode(summary)
        assert isinstance(old, dict)
        assert old.pop("roster")[-1] == [nueva.lab_id, NAME]
        node.store.save_view(VIEW, position, state, canonical.encode(old))
    assert cli.json("balance", home=home.path)["balances"][nueva.lab_id.hex()] == {"JXC": 0}
    assert NAME in cli("balance", home=home.path, env=WIDE).stdout
    with LabNode.open(home) as node:
        saved = canonical.decode(node.store.load_view(VIEW, state=False)[2] or b"")
        assert isinstance(saved, dict) and saved["roster"][-1] == [nueva.lab_id, NAME]
        assert LedgerProjection(node.store, fed.genesis).summary() == saved


def test_the_log_tells_governance_entries_in_words(cli: Cli, fed: Federation) -> None:
    farm, fab, land = (h.path for h in fed.homes)
    a, _, c = lab_ids(fed)
    newcomer = "9f" * 32
    admit_ref = cli.json("propose", "admit", "--lab", newcomer, "--name", "Nueva", "--note",
                         "vetted", home=farm)["ref"]
    cli("propose", "rule", "--credit-limit", "JXC=2000.00", "--threshold", "3/4",
        "--expiry-days", "14", home=farm)
    land_head = cli.json("log", "--author", "LandTrust", home=farm)[-1]["seq"]
    cli("propose", "remove", "--lab", "LandTrust", "--last-seq", str(land_head), home=farm)
    cli("propose", "recover", "--lab", "LandTrust", "--key", "ab" * 32, "--from-seq", "7",
        home=farm)
    cli("propose", "repair", "--lab", "LandTrust", "--keep", f"{c[:8]}:{land_head}",
        "--key", "cd" * 32, home=farm)
    everyone(fed)
    seq = admit_ref.split(":")[1]
    cli("vote", admit_ref, "no", "--note", "not yet", home=fab)
    rotated = cli.json("key", "rotate", home=fab)
    cli("leave", "--yes", "--note", "merging", home=land)
    everyone(fed)

    # Each line: date, time, LAB, ref, then the kind (padded) and what it says.
    said = {tuple(line.split(None, 4)[2::2]) for line in log_lines(cli, farm)}
    land_hash = cli.json("log", "--author", "LandTrust", home=farm)[land_head - 1]["hash"]
    expected = [
        ("Farm", "proposal.made", f"proposes to admit Nueva ({newcomer[:8]}), note 'vetted'"),
        ("Farm", "proposal.made", "proposes a rule change: credit limit 2000.00 JXC; "
         "threshold 3/4; expiry 14 days"),
        ("Farm", "proposal.made", f"proposes to remove LandTrust after seq {land_head}"),
        ("Farm", "proposal.made", "proposes to recover LandTrust: key abababab from seq 7"),
        ("Farm", "proposal.made", f"proposes to repair LandTrust: keep {c[:8]}:{land_head}:"
         f"{land_hash[:8]}, key cdcdcdcd"),
        ("FabLab", "proposal.voted", f"votes no on {a[:8]}:{seq}, note 'not yet'"),
        ("FabLab", "key.rotated", f"rotates its key to {rotated['key'][:8]} (it signs from "
         f"seq {rotated['from_seq']})"),
        ("LandTrust", "lab.left", "leaves the federation, note 'merging'"),
    ]
    for lab, kind, text in expected:
        assert (lab, f"{kind:<25} {text}") in said, (lab, kind, text, sorted(said))
