"""Issue 13, point 11: one node per home (a second ``disco serve`` on the same folder is
refused with one clear line), ``init --postgres`` tries the DSN at once, ``init
--encrypt`` without a terminal says to set DISCO_PASSPHRASE. Each mistake is one line
on stderr, exit code as promised, and nothing is created."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.home import Home
from tests.conftest import DISCO, POSTGRES_DSN, Cli, drop_schema
from tests.nodes import Nodes, federation, node_env, node_group, one_line_error


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group(env={"DISCO_GOSSIP_INTERVAL": "600"}) as n:
        yield n



def _serve(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DISCO, "--home", str(home), "serve", "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=60, env=node_env(),
                          stdin=subprocess.DEVNULL)


def test_a_second_serve_on_one_home_is_refused(tmp_path: Path, nodes: Nodes) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0]
    first = nodes.start_one(farm.path)
    second = _serve(farm.path)
    line = one_line_error(second, 1)
    assert line == (f"disco: another disco serve is running on this home "
                    f"(pid {first.proc.pid})"), line
    assert first.proc.poll() is None  # the first one runs on
    assert first.status()["lab_id"] == farm.lab_id.hex()

    first.kill()  # a node that dies releases the lock
    again = nodes.start_one(farm.path)
    assert again.url and again.proc.poll() is None


def test_init_checks_the_postgres_dsn_at_once(tmp_path: Path, cli: Cli) -> None:
    home = tmp_path / "farm"
    bad = "postgresql://postgres:s3cret@127.0.0.1:1/test"
    line = one_line_error(cli("init", "--name", "Farm", "--postgres", bad, home=home,
                               check=False, input=""), 2)
    assert "cannot reach PostgreSQL at postgresql://postgres:***@127.0.0.1:1/test" in line
    assert "s3cret" not in line and "refused" in line.lower(), line
    assert not home.exists()  # nothing created
    line = one_line_error(cli("init", "--name", "Farm", "--postgres", "not a dsn",
                               home=home, check=False, input=""), 2)
    assert "not a PostgreSQL DSN" in line and not home.exists()
    if not POSTGRES_DSN:
        pytest.skip("DISCO_TEST_POSTGRES is not set: the good DSN is not tried")
    doc = json.loads(cli("init", "--name", "Farm", "--postgres", POSTGRES_DSN, "--json",
                         home=home, input="").stdout)
    store = Home.open(home).config["store"]
    try:
        assert store["backend"] == "postgres" and doc["lab_id"]
    finally:
        drop_schema(POSTGRES_DSN, store["schema"])


def test_init_encrypt_without_a_terminal_asks_for_disco_passphrase(tmp_path: Path,
                                                                   cli: Cli) -> None:
    home = tmp_path / "farm"
    line = one_line_error(cli("init", "--name", "Farm", "--encrypt", home=home,
                               check=False, input="", env={"DISCO_PASSPHRASE": ""}), 2)
    assert "set DISCO_PASSPHRASE" in line, line
    assert not home.exists()
    cli("init", "--name", "Farm", "--encrypt", home=home, input="",
        env={"DISCO_PASSPHRASE": "correct horse"})
    assert Home.open(home).key_is_encrypted()
