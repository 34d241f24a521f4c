"""Issue 13, point 13: deploy/ as an operator uses it (the proxy: test_deploy_proxy.py).

The systemd unit reads the file its comments and node.env.example name, and serves
on the loopback only. The container: no Docker daemon runs where the suite runs, so
the image is not built here; what it runs is tested for real: its entrypoint
(``deploy/docker-entrypoint.sh``) initialises, joins, serves and health-checks a
node, with ``disco`` (this repository's) on the PATH as the image installs it. The
Dockerfile is checked for what the entrypoint relies on: a non-root user, the
healthcheck, no port exposed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, disco_on_path
from tests.nodes import one_line_error, wait_until

ENTRYPOINT = REPO / "deploy" / "docker-entrypoint.sh"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
UNIT = REPO / "deploy" / "systemd" / "disco-node.service"
NODE_ENV = REPO / "deploy" / "node.env.example"


@pytest.fixture
def entrypoint(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The entrypoint's path and an environment where ``disco`` is this repository's
    command, on the PATH as in the image."""
    return ENTRYPOINT, disco_on_path(tmp_path / "bin")


def run(entry: tuple[Path, dict[str, str]], *args: str, home: Path, listen: str = "",
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    script, env = entry
    env = {**env, "DISCO_HOME": str(home), **({"DISCO_LISTEN": listen} if listen else {})}
    return subprocess.run(["sh", str(script), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
def test_the_entrypoint_initialises_joins_serves_and_checks_health(
        tmp_path: Path, entrypoint: tuple[Path, dict[str, str]]) -> None:
    farm, fab = tmp_path / "farm", tmp_path / "fab"
    refused = run(entrypoint, home=farm)  # serve, before any init
    assert "init --name NAME" in one_line_error(refused, 2)

    ids = []
    for home, name, prefix in ((farm, "Freedom Farms", []), (fab, "Fab Lab", ["disco"])):
        made = run(entrypoint, *prefix, "init", "--name", name, home=home)
        assert made.returncode == 0, made.stderr
        ids.append(re.search(r"lab_id ([0-9a-f]{64})", made.stdout).group(1))  # type: ignore[union-attr]
    created = run(entrypoint, "federation", "create", "--name", "Cooperation Jackson",
                  "--founder", f"{ids[0]}=Freedom Farms", "--founder", f"{ids[1]}=Fab Lab",
                  "--unit", "JXC:2", "--out", str(tmp_path / "genesis.json"), home=farm)
    assert created.returncode == 0, created.stderr
    for home in (farm, fab):
        joined = run(entrypoint, "join", str(tmp_path / "genesis.json"), home=home)
        assert joined.returncode == 0 and "joined federation" in joined.stdout, joined.stderr

    listen = f"127.0.0.1:{free_port()}"
    down = run(entrypoint, "healthcheck", home=farm, listen=listen)
    assert f"http://{listen}/v1/status" in one_line_error(down, 1)

    script, env = entrypoint
    node = subprocess.Popen(["sh", str(script)], env={**env, "DISCO_HOME": str(farm),
                                                      "DISCO_LISTEN": listen},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: run(entrypoint, "healthcheck", home=farm, listen=listen
                               ).returncode == 0, what="a healthy node")
        status = run(entrypoint, "status", "--json", home=farm)
        assert status.returncode == 0 and ids[0] in status.stdout, status.stderr
        node.send_signal(signal.SIGTERM)  # the entrypoint exec'd disco: it gets the signal
        out, _ = node.communicate(timeout=30)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(30)
    assert node.returncode == 0, out
    assert f"listening on http://{listen}" in out, out
    assert run(entrypoint, "healthcheck", home=farm, listen=listen).returncode == 1


def test_the_image_runs_the_entrypoint_as_a_user_and_publishes_nothing() -> None:
    text = DOCKERFILE.read_text()
    lines = [line.strip() for line in text.splitlines() if not line.startswith("#")]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    assert not [line for line in lines if line.startswith("EXPOSE")]
    assert 'ENTRYPOINT ["disco-entrypoint"]' in lines
    assert "COPY deploy/docker-entrypoint.sh /usr/local/bin/disco-entrypoint" in lines
    assert re.search(r'^HEALTHCHECK .*\n\s*CMD \["disco-entrypoint", "healthcheck"\]', text,
                     re.M), text
    assert os.access(ENTRYPOINT, os.X_OK)


def test_the_systemd_unit_reads_the_file_it_names_and_serves_on_the_loopback() -> None:
    text = UNIT.read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines()
                    if "=" in line and not line.startswith("#"))
    env_file = settings["EnvironmentFile"].lstrip("-")
    assert env_file == "/etc/disco/node.env"
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert f"install -m 0600 /opt/disco/deploy/node.env.example {env_file}" in comments
    assert NODE_ENV.read_text().startswith(f"# {env_file} ")
    assert "DISCO_PASSPHRASE=" in NODE_ENV.read_text()
    assert settings["ExecStart"].endswith("serve --listen 127.0.0.1:8750")
    assert settings["ExecStart"].split()[0] in comments  # the command the steps use
    home = settings["Environment"].removeprefix("DISCO_HOME=")
    assert settings["ReadWritePaths"] == home and f"--home {home} init" in comments
