"""The bookkeeper's and the operator's day (issue 13), through the real ``disco`` process:
one test per point, every listed mistake with its exit code (0 ok, 1 failure, 2 usage
error or unusable input) and one ``disco:`` line on stderr, never a traceback."""

from __future__ import annotations

import json
import os
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
    cli("join", str(genesis), home=farm)
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
