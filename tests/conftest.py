"""Shared fixtures: store backends, a ready federation, and the real ``disco`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from federation.genesis import Genesis, Lab, create_genesis
from node.home import Home, write_genesis_file
from node.lab import LabNode
from node.store import StoreConfig

REPO = Path(__file__).resolve().parents[1]
DISCO = [sys.executable, "-c", "from node.cli import run; run()"]
POSTGRES_DSN = os.environ.get("DISCO_TEST_POSTGRES")


def disco_on_path(bin_dir: Path) -> dict[str, str]:
    """An environment where a plain ``disco`` (and ``python3``) is this repository's,
    as a person's shell has it after ``make install``: a ``disco`` shim in
    ``bin_dir``, first on the PATH. For tests that run shell scripts."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "disco"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c '
                    '"from node.cli import run; run()" "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("DISCO_HOME", None)
    return env


def read_ahead_children(parent: int) -> list[int]:
    """Pids of the read-ahead processes (node/readahead.py) that ``parent`` started
    (Linux /proc)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if b"node.readahead" in cmdline and int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(pid))
    return found


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreConfig]:
    """One storage test case, run against every backend."""
    if request.param == "sqlite":
        yield StoreConfig("sqlite", path=tmp_path / "ledger.sqlite")
        return
    if not POSTGRES_DSN:
        pytest.skip("DISCO_TEST_POSTGRES is not set (CI sets it)")
    schema = "test_" + uuid.uuid4().hex[:12]
    yield StoreConfig("postgres", dsn=POSTGRES_DSN, schema=schema)
    drop_schema(POSTGRES_DSN, schema)


@dataclass
class Cli:
    """Runs the real ``disco`` command in a subprocess."""

    cwd: Path

    def __call__(self, *args: str, home: Path | None = None, check: bool = True,
                 env: dict[str, str] | None = None, input: str | None = None,
                 ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        full_env.pop("DISCO_HOME", None)
        cmd = [*DISCO, *(["--home", str(home)] if home else []), *args]
        result = subprocess.run(cmd, cwd=self.cwd, env=full_env, capture_output=True,
                                text=True, input=input, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"disco {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str, home: Path | None = None) -> Any:
        return json.loads(self(*args, "--json", home=home).stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@dataclass
class Federation:
    """Two or more LAB nodes (Python API) that joined one genesis."""

    genesis: Genesis
    genesis_file: Path
    homes: list[Home]

    def node(self, i: int, store: StoreConfig | None = None) -> LabNode:
        home = self.homes[i]
        node = LabNode.open(home, home.signer())
        return node


def make_federation(root: Path, names: list[str], now_us: int = 1_700_000_000_000_000,
                    credit_limit: int = 100_000, postgres_dsn: str | None = None,
                    ) -> Federation:
    homes, signers = [], []
    for name in names:
        home, signer = Home.create(root / name.lower(), name, postgres_dsn=postgres_dsn)
        homes.append(home)
        signers.append(signer)
    genesis = create_genesis(
        "Test Federation", labs=[Lab(s.public_key, n) for s, n in zip(signers, names, strict=True)],
        units={"JXC": 2}, credit_limits={"JXC": credit_limit}, now_us=now_us)
    path = root / "genesis.json"
    write_genesis_file(path, genesis)
    for home, signer in zip(homes, signers, strict=True):
        with LabNode.open(home, signer) as node:
            node.join(path, now_us)
    return Federation(genesis, path, homes)


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return make_federation(tmp_path, ["Farm", "FabLab", "LandTrust"])
