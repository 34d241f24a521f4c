"""The command line tried as a new user would, through the real ``disco`` process."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click
import pytest

from node.cli import main
from tests.conftest import Cli


def _two_labs(cli: Cli, tmp_path: Path) -> tuple[Path, Path, str, str, Path]:
    farm, fab = tmp_path / "farm", tmp_path / "fab"
    a = cli.json("init", "--name", "Freedom Farms", home=farm)["lab_id"]
    b = cli.json("init", "--name", "Fab Lab", home=fab)["lab_id"]
    assert len(a) == 64 and len(b) == 64
    genesis = tmp_path / "genesis.json"
    fid = cli.json("federation", "create", "--name", "Cooperation Jackson",
                   "--founder", f"{a}=Freedom Farms", "--founder", f"{b}=Fab Lab",
                   "--unit", "JXC:2", "--credit-limit", "JXC=1000.00",
                   "--out", str(genesis))["federation_id"]
    for home, lab in ((farm, a), (fab, b)):
        joined = cli.json("join", str(genesis), home=home)
        assert joined == {"lab_id": lab, "federation_id": fid, "ref": joined["ref"],
                          "name": joined["name"]}
    return farm, fab, a, b, genesis


def test_new_user_journey_then_tampering_is_caught(cli: Cli, tmp_path: Path) -> None:
    farm, fab, a, _, _ = _two_labs(cli, tmp_path)
    cli("member", "add", "ana", "--name", "Ana Ruiz", home=farm)
    cli("member", "add", "kofi", home=fab)
    refs = []
    for stream, hours in (("livelihood", "4"), ("love", "2.5"), ("care", "1:15")):
        refs.append(cli.json("record", "--member", "ana", "--stream", stream, "--hours", hours,
                             "--note", f"note-{stream}-unique", home=farm)["ref"])
    cli("record", "--member", "kofi", "--stream", "love", "--hours", "3", "--for", a,
        "--project", "greenhouse", home=fab)
    assert all(r.startswith(a + ":") for r in refs)

    log = cli.json("log", home=farm)
    farm_entries = [e for e in log if e["author"] == a]
    assert [e["kind"] for e in farm_entries] == [
        "lab.joined", "member.added", "contribution.recorded", "contribution.recorded",
        "contribution.recorded"]
    assert [e["body"].get("minutes") for e in farm_entries[2:]] == [240, 150, 75]
    assert {"author", "seq", "hash", "kind", "ts_us", "body"} <= set(farm_entries[0])
    text = cli("log", home=farm).stdout
    assert "contribution.recorded" in text and "note-care-unique" in text
    assert cli("verify", home=farm).returncode == 0
    assert cli("verify", home=fab).returncode == 0

    # Change one byte of one stored entry inside the SQLite file (first folding the
    # write-ahead log into it, so that the entry's bytes are in the file itself).
    db = farm / "ledger.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    at = data.find(b"note-love-unique")
    assert at > 0, "entry bytes not found in the database file"
    data[at] ^= 0x01
    db.write_bytes(bytes(data))
    result = cli("verify", home=farm, check=False)
    assert result.returncode == 1
    assert f"feed {a} seq 4" in result.stderr
    report = json.loads(cli("verify", "--json", home=farm, check=False).stdout)
    assert report["ok"] is False
    assert [(p["author"], p["seq"]) for p in report["problems"]] == [(a, 4)]


def _log(cli: Cli, home: Path) -> str:
    return cli("log", "--json", home=home).stdout


@pytest.mark.parametrize("args,code,message", [
    (["record", "--member", "ana", "--stream", "fun", "--hours", "2"], 2, "'fun' is not one of"),
    (["record", "--member", "ana", "--stream", "care", "--hours", "-2"], 2, "more than zero"),
    (["record", "--member", "ana", "--stream", "care", "--hours", "0"], 2, "more than zero"),
    (["record", "--member", "ana", "--stream", "care", "--hours", "1e9"], 2, "2.5 or 2:30"),
    (["record", "--member", "ana", "--stream", "care", "--hours", "999999999"], 2,
     "at most 744 hours"),
    (["record", "--member", "ana", "--stream", "care", "--hours", "lots"], 2, "2.5 or 2:30"),
    (["record", "--member", "ana", "--stream", "care", "--hours", "1:75"], 2, "2.5 or 2:30"),
    (["record", "--member", "ana", "--stream", "care", "--hours", "0.001"], 2, "whole minutes"),
    (["record", "--member", "nobody", "--stream", "care", "--hours", "2"], 1, "no member"),
    (["record", "--member", "ana", "--stream", "care", "--hours", "2", "--for", "abc"], 2,
     "names no LAB of the federation"),
    (["record", "--member", "ana", "--stream", "care", "--hours", "2", "--for", "ab" * 32], 2,
     "names no LAB of the federation"),
    (["member", "add", "ana"], 1, "already added"),
    (["member", "add", "Bad Handle!"], 1, "handle"),
    (["member", "update", "ghost", "--name", "G"], 1, "no member"),
])
def test_bad_input_is_one_line_and_writes_nothing(
    cli: Cli, tmp_path: Path, args: list[str], code: int, message: str,
) -> None:
    farm, _, _, _, _ = _two_labs(cli, tmp_path)
    cli("member", "add", "ana", home=farm)
    before = _log(cli, farm)
    result = cli(*args, home=farm, check=False)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert _log(cli, farm) == before


def test_damaged_genesis_and_homes(cli: Cli, tmp_path: Path) -> None:
    farm, _, _, _, genesis = _two_labs(cli, tmp_path)
    other = tmp_path / "other"
    cli("init", "--name", "Other", home=other)
    doc = json.loads(genesis.read_text())
    doc["name"] = "Edited"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    cases = [
        (cli("join", str(edited), home=other, check=False), 2, "damaged or edited"),
        (cli("join", str(garbage), home=other, check=False), 2, "invalid JSON"),
        (cli("join", str(tmp_path / "missing.json"), home=other, check=False), 2, "no such"),
        (cli("join", str(genesis), home=other, check=False), 1, "not a founder"),
        (cli("log", home=tmp_path / "nowhere", check=False), 2, "disco init"),
        (cli("log", home=tmp_path, check=False), 2, "not a disco node folder"),
        (cli("init", "--name", "X", home=farm, check=False), 2, "not empty"),
        (cli("member", "add", "x", home=other, check=False), 1, "not joined"),
    ]
    for result, code, message in cases:
        assert result.returncode == code, (message, result.stderr)
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (other / "genesis.json").exists()
    assert cli("verify", home=farm).returncode == 0


def test_encrypted_key_needs_the_right_passphrase(cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "lab"
    lab = cli("init", "--name", "Lab", "--encrypt", "--json", home=home,
              env={"DISCO_PASSPHRASE": "correct horse"})
    lab_id = json.loads(lab.stdout)["lab_id"]
    assert b"ENCRYPTED" in (home / "lab.key").read_bytes()
    assert (home / "lab.key").stat().st_mode & 0o777 == 0o600
    genesis = tmp_path / "g.json"
    cli("federation", "create", "--name", "F", "--founder", f"{lab_id}=Lab",
        "--unit", "JXC:2", "--out", str(genesis))
    wrong = cli("join", str(genesis), home=home, check=False,
                env={"DISCO_PASSPHRASE": "wrong"})
    assert wrong.returncode == 1 and "wrong passphrase" in wrong.stderr
    missing = cli("join", str(genesis), home=home, check=False)
    assert missing.returncode == 1 and "DISCO_PASSPHRASE" in missing.stderr
    assert not (home / "genesis.json").exists()
    cli("join", str(genesis), home=home, env={"DISCO_PASSPHRASE": "correct horse"})


def test_federation_create_rejects_bad_options(cli: Cli, tmp_path: Path) -> None:
    lab = "ab" * 32
    out = tmp_path / "g.json"
    bad = [
        (["--founder", "xyz=Farm", "--unit", "JXC:2"], "64 hex"),
        (["--founder", f"{lab}=Farm", "--unit", "JXC"], "CODE:DECIMALS"),
        (["--founder", f"{lab}=Farm", "--unit", "jx:2"], "capital letters"),
        (["--founder", f"{lab}=Farm", "--unit", "JXC:2", "--credit-limit", "ABC=5"],
         "not a --unit"),
        (["--founder", f"{lab}=Farm", "--unit", "JXC:2", "--credit-limit", "JXC=1.234"],
         "decimals"),
        (["--founder", f"{lab}=Farm", "--founder", f"{lab}=Again", "--unit", "JXC:2"],
         "named twice"),
    ]
    for args, message in bad:
        result = cli("federation", "create", "--name", "F", *args, "--out", str(out),
                     check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr
        assert not out.exists()


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    commands = main.all_commands() if group is main else group.commands
    for name, command in commands.items():
        found.append((prefix + name, command))
        if isinstance(command, click.Group):
            found += _commands(command, prefix + name + " ")
    return found


@pytest.mark.parametrize("name,command", _commands(main))
def test_every_command_has_help_with_an_example(name: str, command: click.Command) -> None:
    assert command.help, f"disco {name} has no help"
    if not isinstance(command, click.Group):
        assert "Example:" in command.help, f"disco {name} help has no example"


def test_sqlite_file_is_an_eventsourcing_store(cli: Cli, tmp_path: Path) -> None:
    farm, _, a, _, _ = _two_labs(cli, tmp_path)
    with sqlite3.connect(farm / "ledger.sqlite") as db:
        rows = db.execute("SELECT originator_id, originator_version, topic "
                          "FROM stored_events ORDER BY rowid").fetchall()
    assert rows == [(a, 1, "lab.joined")]


def test_cli_reference_in_docs_is_current() -> None:
    from node.cli.reference import render

    path = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    assert path.read_text(encoding="utf-8") == render(), "run 'make docs'"


def test_a_store_failing_under_a_command_is_one_line(cli: Cli, tmp_path: Path) -> None:
    """The store raises the storage libraries' errors as its own (StoreError): a
    damaged store is one line on stderr, exit 1, whichever command met it."""
    farm, *_ = _two_labs(cli, tmp_path)
    with sqlite3.connect(farm / "ledger.sqlite") as db:
        # The store opens as before, then fails at its first read: its table is now a
        # view of a table that is gone.
        db.execute("ALTER TABLE stored_events RENAME TO gone")
        db.execute("CREATE VIEW stored_events AS SELECT * FROM gone")
        db.execute("DROP TABLE gone")
    for args in (["log"], ["balance"], ["member", "add", "ana"], ["status"]):
        result = cli(*args, home=farm, check=False)
        assert result.returncode == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("disco: store error: "), (args, result.stderr)
        assert "no such table: main.gone" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
