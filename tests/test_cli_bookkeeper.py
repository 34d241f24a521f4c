"""The bookkeeper's and the operator's day (issue 13), through the real ``disco`` process:
one test per point, every listed mistake with its exit code (0 ok, 1 failure, 2 usage
error or unusable input) and one ``disco:`` line on stderr, never a traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DISCO, REPO, Cli


@dataclass
class Fed:
    farm: Path
    fab: Path
    a: str
    b: str
    genesis: Path


@pytest.fixture
def fed(cli: Cli, tmp_path: Path) -> Fed:
    """Two LABs whose init names differ from their roster names."""
    farm, fab = tmp_path / "farm", tmp_path / "fab"
    a = cli.json("init", "--name", "Freedom Farms Home", home=farm)["lab_id"]
    b = cli.json("init", "--name", "fab-node", home=fab)["lab_id"]
    genesis = tmp_path / "genesis.json"
    cli("federation", "create", "--name", "Cooperation Jackson",
        "--founder", f"{a}=Freedom Farms", "--founder", f"{b}=Fab Lab",
        "--unit", "JXC:2", "--credit-limit", "JXC=1000.00", "--out", str(genesis))
    joined = cli("join", str(genesis), home=farm)
    # The init name differs from the roster's: join says which one is shown.
    assert "roster names this LAB 'Freedom Farms'" in joined.stderr
    assert "joined federation 'Cooperation Jackson'" in joined.stdout
    cli("join", str(genesis), home=fab)
    return Fed(farm, fab, a, b, genesis)


def mistake(cli: Cli, code: int, *args: str, home: Path | None = None,
            env: dict[str, str] | None = None) -> str:
    """Run a mistake: exit ``code``, nothing on stdout, one ``disco:`` line on stderr."""
    result = cli(*args, home=home, check=False, env=env)
    assert result.returncode == code, (args, result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("disco: "), (args, result.stderr)
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr
    return lines[0]


# 8. Options where a person types them


def test_home_before_or_after_the_command_name(cli: Cli, fed: Fed, tmp_path: Path) -> None:
    # `disco audit --home DIR`, as the README and `audit --help` say, audits the store.
    result = cli("audit", "--home", str(fed.farm))
    assert "audit passed" in result.stdout
    assert cli("audit", "--home", str(fed.farm), "--json").returncode == 0
    # --home after the name works for every command, sub-commands too, and wins over
    # the one before the name and over DISCO_HOME.
    before = cli.json("status", home=fed.farm)
    after = json.loads(cli("status", "--json", "--home", str(fed.farm)).stdout)
    assert before["lab_id"] == after["lab_id"] == fed.a
    cli("member", "add", "ana", "--home", str(fed.farm))
    over = json.loads(cli("member", "list", "--json", "--home", str(fed.farm),
                          home=fed.fab).stdout)
    assert [m["handle"] for m in over["members"]] == ["ana"]
    # DISCO_HOME names a home; --home after the name wins over it.
    env = {**os.environ, "DISCO_HOME": str(fed.fab), "PYTHONPATH": str(REPO)}
    for args, lab in ((["status", "--json"], fed.b),
                      (["status", "--json", "--home", str(fed.farm)], fed.a)):
        run = subprocess.run([*DISCO, *args], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=120)
        assert json.loads(run.stdout)["lab_id"] == lab
    # Every command's help names the option.
    assert "--home DIR" in cli("transfer", "offer", "--help").stdout
    # Mistakes: no home for an audit, a home that is not one.
    assert "give a bundle FILE or --home DIR" in mistake(cli, 2, "audit")
    assert "nowhere" in mistake(cli, 2, "log", "--home", str(tmp_path / "nowhere"))
    mistake(cli, 2, "log", "--home")


# 6. Messages that say what to do


def test_messages_say_what_to_do(cli: Cli, fed: Fed) -> None:
    offer = cli.json("transfer", "offer", "--to", "Fab Lab", "--amount", "12.50",
                     "--unit", "JXC", home=fed.farm)
    short = f"{fed.a[:8]}:2"
    # The offer is not held by the payee yet: accept says to sync first (exit 1).
    for ref in (short, offer["ref"], offer["ref"].split(":")[2][:8]):
        line = mistake(cli, 1, "transfer", "accept", ref, home=fed.fab)
        assert "run 'disco sync' first" in line, line
    # A ref that cannot be one is a usage error (exit 2), in every command that takes one.
    for args in (["transfer", "accept", "zz"], ["transfer", "decline", "ab"],
                 ["transfer", "reclaim", "x:y"], ["acknowledge", "12#8"],
                 ["prove", "ref?", "--out", "p.proof"]):
        assert "want a ref" in mistake(cli, 2, *args, home=fed.fab)
    # No LAB id starts so: says so, rather than "give more of the ref".
    other = "0000" if not fed.a.startswith("0000") and not fed.b.startswith("0000") else "ffff"
    assert "no LAB of the federation" in mistake(cli, 1, "transfer", "accept", f"{other}:2",
                                                 home=fed.fab)
    # One "disco:" prefix, click's own errors included; never "Error:".
    mistake(cli, 2, "nosuch")
    mistake(cli, 2, "transfer", "offer", "--to", "Fab Lab")
    mistake(cli, 2, "log", "--bogus", home=fed.farm)
    # `disco` or a group alone shows its help and is no mistake.
    assert "Commands:" in cli().stdout and "add" in cli("member").stdout


def test_log_into_head_ends_quietly(fed: Fed) -> None:
    from node.home import Home
    from node.lab import LabNode

    home = Home.open(fed.farm)
    node = LabNode.open(home, home.signer())
    try:
        node.author("member.added", {"handle": "ana", "name": "Ana"}, 1_800_000_000_000_000)
        node.author_many([("contribution.recorded", {"member": "ana", "stream": "care",
                                                      "minutes": 30 + i})
                          for i in range(1500)], 1_800_000_000_000_000)
    finally:
        node.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DISCO_HOME", None)
    proc = subprocess.Popen([*DISCO, "--home", str(fed.farm), "log"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=fed.farm.parent)
    assert proc.stdout is not None and proc.stderr is not None
    assert b"lab.joined" in proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and err == b"", err


# 3. Policy


def test_policy_shows_and_changes_only_what_it_names(cli: Cli, fed: Fed) -> None:
    before = cli("log", "--json", home=fed.farm).stdout
    shown = cli.json("policy", home=fed.farm)
    assert shown == {"weights": {"livelihood": 1, "love": 1, "care": 1}, "care_ratio": 0,
                     "set": False}
    assert "care ratio 0%" in cli("policy", home=fed.farm).stdout
    # Showing the policy, with or without --json, writes nothing.
    assert cli("log", "--json", home=fed.farm).stdout == before
    changed = cli.json("policy", "--care", "2", home=fed.farm)
    assert changed["kind"] == "policy.set" and changed["weights"]["care"] == 2
    cli("policy", "--care-ratio", "10", home=fed.farm)
    assert cli.json("policy", home=fed.farm) == {
        "weights": {"livelihood": 1, "love": 1, "care": 2}, "care_ratio": 10, "set": True}
    cli("policy", "--love", "3", home=fed.farm)
    now = cli.json("policy", home=fed.farm)
    assert now["weights"] == {"livelihood": 1, "love": 3, "care": 2} and now["care_ratio"] == 10
    held = cli("log", "--json", home=fed.farm).stdout
    for args in (["--care", "-1"], ["--care-ratio", "101"], ["--love", "lots"],
                 ["--care", "1e2"]):
        mistake(cli, 2, "policy", *args, home=fed.farm)
    assert cli("log", "--json", home=fed.farm).stdout == held


# 5. Amounts and hours in the user's units


def test_amounts_and_hours_in_the_users_units(cli: Cli, fed: Fed, tmp_path: Path) -> None:
    cli("member", "add", "ana", home=fed.farm)
    before = cli("log", "--json", home=fed.farm).stdout
    line = mistake(cli, 1, "transfer", "offer", "--to", "Fab Lab", "--amount", "1500.00",
                   "--unit", "JXC", home=fed.farm)
    assert "offer of 1500.00 JXC" in line and "-1500.00 JXC" in line, line
    assert "credit limit of -1000.00 JXC" in line and "150000" not in line, line
    offer = ["transfer", "offer", "--to", "Fab Lab", "--unit", "JXC", "--amount"]
    income = ["income", "--unit", "JXC", "--period", "2026-11", "--source", "x", "--amount"]
    hours = ["record", "--member", "ana", "--stream", "care", "--hours"]
    for bad in ("1e2", "12,50", "NaN", "Infinity", "1.234", ""):
        assert "want an amount like 12.50" in mistake(cli, 2, *offer, bad, home=fed.farm) \
            or bad == "1.234"
        mistake(cli, 2, *income, bad, home=fed.farm)
    for bad in ("1e1", "2,5", "NaN", "2:75", "0"):
        mistake(cli, 2, *hours, bad, home=fed.farm)
    # Limits are told in the user's units, not in minutes or minor units.
    assert "at most 744 hours" in mistake(cli, 2, *hours, "99999999", home=fed.farm)
    assert "more than zero" in mistake(cli, 2, *offer, "0", home=fed.farm)
    assert "more than zero" in mistake(cli, 2, *income, "-1", home=fed.farm)
    assert "at most 90071992547409.92" in mistake(cli, 2, *offer, "99999999999999999",
                                                  home=fed.farm)
    # The same mistake, the same exit code, in every command: an unknown unit is 2.
    for args in (["transfer", "offer", "--to", "Fab Lab", "--amount", "1", "--unit", "EUR"],
                 ["income", "--amount", "1", "--unit", "EUR", "--period", "2026-11",
                  "--source", "x"],
                 ["payout", "--period", "2026-11", "--unit", "EUR"]):
        assert "'EUR' is not a unit" in mistake(cli, 2, *args, home=fed.farm)
    mistake(cli, 2, "federation", "create", "--name", "X", "--founder", f"{fed.a}=A",
            "--unit", "JXC:2", "--credit-limit", "JXC=1e3", "--out", str(tmp_path / "x.json"))
    assert cli("log", "--json", home=fed.farm).stdout == before
    cli(*offer, "12.50", home=fed.farm)
    cli(*hours, "2:30", home=fed.farm)
    text = cli("log", home=fed.farm).stdout
    assert "12.50 JXC to Fab Lab" in text and "ana: 2:30 h care" in text, text
    assert "1250" not in text and "minutes" not in text


# 4. People and LABs by name


def test_people_and_labs_by_name(cli: Cli, fed: Fed) -> None:
    assert "no members yet" in cli("member", "list", home=fed.farm).stdout
    cli("member", "add", "ana", "--name", "Ana Ruiz", home=fed.farm)
    cli("member", "add", "kofi", home=fed.fab)
    assert cli("member", "list", home=fed.farm).stdout.split() == ["ana", "Ana", "Ruiz"]
    listed = cli.json("member", "list", home=fed.farm)
    assert listed == {"lab": fed.a, "name": "Freedom Farms",
                      "members": [{"handle": "ana", "name": "Ana Ruiz"}]}
    assert cli.json("member", "list", "--lab", "fab lab", home=fed.fab)["members"] == [
        {"handle": "kofi", "name": "kofi"}]
    # A LAB by its roster name or a unique prefix of its id, wherever a LAB is taken.
    by_name = cli.json("transfer", "offer", "--to", "Fab Lab", "--amount", "1.00",
                       "--unit", "JXC", home=fed.farm)
    by_prefix = cli.json("transfer", "offer", "--to", fed.b[:6], "--amount", "2.00",
                         "--unit", "JXC", home=fed.farm)
    cli("record", "--member", "ana", "--stream", "love", "--hours", "1", "--for",
        "FAB LAB", home=fed.farm)
    bodies = [e["body"] for e in cli.json("log", "--author", "Freedom Farms", home=fed.farm)]
    assert [b.get("to") for b in bodies[-3:-1]] == [fed.b, fed.b]
    assert bodies[-1]["for_lab"] == fed.b
    assert cli.json("log", "--author", fed.a[:5], home=fed.farm)[-1]["body"] == bodies[-1]
    assert cli.json("log", "--author", "fab lab", home=fed.farm) == []
    for flag, args in (("--to", ["transfer", "offer", "--amount", "1", "--unit", "JXC",
                                 "--to"]),
                       ("--for", ["record", "--member", "ana", "--stream", "care",
                                  "--hours", "1", "--for"]),
                       ("--author", ["log", "--author"]),
                       ("--lab", ["member", "list", "--lab"])):
        for bad in ("Nobody", "ab" * 32, "a"):
            line = mistake(cli, 2, *args, bad, home=fed.farm)
            assert flag in line and "Freedom Farms" in line and "Fab Lab" in line, line
    # One name per LAB: the roster's, in status, balance, log and transfers.
    assert cli.json("status", home=fed.farm)["name"] == "Freedom Farms"
    assert "Freedom Farms (" in cli("status", home=fed.farm).stdout
    assert "Freedom Farms Home" not in cli("log", home=fed.farm).stdout
    assert "Freedom Farms" in cli("balance", home=fed.farm).stdout
    # One spelling of a ref: AUTHOR:SEQ:HASH, abbreviated where short, ':' always.
    a8, seq, h = by_name["ref"].split(":")
    short = f"{a8[:8]}:{seq}:{h[:8]}"
    assert short in cli("transfers", home=fed.farm).stdout
    assert short in cli("log", home=fed.farm).stdout
    said = cli("transfer", "offer", "--to", "Fab Lab", "--amount", "1", "--unit", "JXC",
               home=fed.farm).stdout
    assert "#" not in said and f"ref {fed.a}:" in said
    for ref in (by_prefix["ref"], short, f"{fed.a[:8]}:3"):
        mistake(cli, 1, "transfer", "accept", ref, home=fed.fab)  # not held: sync first


# 7. --json on every command; a log people read


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    import click

    assert isinstance(group, click.Group)
    out: list[tuple[tuple[str, ...], object]] = []
    commands = getattr(group, "all_commands", lambda: group.commands)()
    for name, command in commands.items():
        if isinstance(command, click.Group):
            out += _commands(command, (*path, name))
        else:
            out.append(((*path, name), command))
    return out


def test_json_on_every_command(cli: Cli, fed: Fed, tmp_path: Path) -> None:
    from node.cli import main

    lacking = [" ".join(path) for path, command in _commands(main)
               if "--json" not in {o for p in command.params for o in p.opts}]  # type: ignore[attr-defined]
    assert lacking == []
    ref = cli.json("member", "add", "ana", home=fed.farm)["ref"]
    proved = cli.json("prove", ref[:12] + ":2", "--out", str(tmp_path / "e.proof"),
                      home=fed.farm)
    assert proved["ref"] == ref and proved["file"] == str(tmp_path / "e.proof")
    assert cli.json("audit", "--proof", str(tmp_path / "e.proof"), "--key", fed.a)["ok"]
    cp = cli.json("checkpoint", "--out", str(tmp_path / "a.checkpoint"), home=fed.farm)
    assert cp["size"] == 2 and cp["lab_id"] == fed.a and cp["note"].startswith("disco")
    assert (tmp_path / "a.checkpoint").read_text() == cp["note"]
    vf = cli.json("export-vf", "--out", str(tmp_path / "f.jsonld"), home=fed.farm)
    assert vf == {"events": vf["events"], "file": str(tmp_path / "f.jsonld")}
    mistake(cli, 2, "export-vf", "--out", str(tmp_path / "f.jsonld"), home=fed.farm)
    mistake(cli, 2, "checkpoint", "--out", str(tmp_path / "a.checkpoint"), home=fed.farm)
    # A log people read: dates, amounts in the unit, hours as H:MM, names, no raw lists.
    cli("transfer", "offer", "--to", "Fab Lab", "--amount", "7.5", "--unit", "JXC",
        home=fed.farm)
    text = cli("log", home=fed.farm).stdout
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d  Freedom Farms", text, re.M), text
    assert "7.50 JXC to Fab Lab" in text and "[" not in text and "b'" not in text, text


def test_serve_json_prints_one_line_when_ready(fed: Fed) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop("DISCO_HOME", None)
    for as_json in (["--json"], []):
        proc = subprocess.Popen([*DISCO, "serve", "--home", str(fed.farm), "--listen",
                                 "127.0.0.1:0", *as_json], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env,
                                cwd=fed.farm.parent)
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            if as_json:
                ready = json.loads(first)
                assert ready["lab_id"] == fed.a
                assert ready["url"].startswith("http://127.0.0.1:")
            else:
                while "listening on" not in first and first:
                    first = proc.stdout.readline()
                # One name per LAB: the roster's, not the init name.
                assert first.startswith("disco node 'Freedom Farms' listening on http://")
        finally:
            proc.send_signal(signal.SIGINT)  # at once: the ready line promises an orderly stop
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopping: finishing writes in progress" in (err if as_json else out)
        if as_json:
            assert all(json.loads(line) for line in out.splitlines() if line.strip())
