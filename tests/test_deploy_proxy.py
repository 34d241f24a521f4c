"""Issue 13, point 13: two real ``disco serve`` nodes behind a real proxy (nginx,
and Caddy) with TLS from a private CA, syncing through it.

The proxy's configuration is the shipped one (``deploy/nginx/disco.conf``,
``deploy/Caddyfile``) with only its names, ports and certificate paths replaced
(and, for Caddy, an access log added); each node's peer URL is the other's https
address on the proxy. The nodes trust the private CA the way the README tells an
operator to: ``SSL_CERT_FILE`` naming a bundle that holds it. A proxy's tests are
skipped only where its binary is absent (``make test`` installs both from Debian's
packages).
"""

from __future__ import annotations

import datetime
import grp
import ipaddress
import json
import os
import pwd
import re
import shutil
import signal
import ssl
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.limits import Limits
from tests.conftest import REPO, Cli
from tests.nodes import (
    Nodes,
    add_member,
    author_contributions,
    federation,
    feed_seqs,
    node_group,
    one_line_error,
    post,
    set_peers,
    signed_headers,
    wait_until,
)

SHIPPED = REPO / "deploy" / "nginx" / "disco.conf"
CADDYFILE = REPO / "deploy" / "Caddyfile"


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)),
        None)


NGINX = _binary("nginx")
CADDY = _binary("caddy")


# -- a private CA ---------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(folder: Path) -> Pki:
    """A CA and a server certificate for 127.0.0.1 and localhost it signed."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name("Test Federation CA"))
               .issuer_name(_name("Test Federation CA")).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                            crl_sign=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                              critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    pki.key.chmod(0o600)
    return pki


# -- the proxies, from the shipped files ------------------------------------------


def _replace_once(text: str, old: str, new: str, shipped: Path = SHIPPED) -> str:
    assert text.count(old) == 1, (f"{shipped.relative_to(REPO)} no longer has {old!r} "
                                  "once: adapt this test to what is shipped")
    return text.replace(old, new)


def site_config(port: int, node_port: int, pki: Pki) -> str:
    """The shipped server block, listening on 127.0.0.1:``port`` with the test's
    certificate and proxying to the node on ``node_port``; nothing else changed."""
    text = SHIPPED.read_text()
    for old, new in [
        ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
        ("listen [::]:443 ssl;", ""),
        ("/etc/letsencrypt/live/lab.example.org/fullchain.pem", str(pki.cert)),
        ("/etc/letsencrypt/live/lab.example.org/privkey.pem", str(pki.key)),
        ("server_name lab.example.org;", "server_name localhost;"),
        ("proxy_pass http://127.0.0.1:8750;", f"proxy_pass http://127.0.0.1:{node_port};"),
    ]:
        text = _replace_once(text, old, new)
    return text


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Proxy:
    """A running proxy in front of some nodes; ``urls[i]`` fronts the i-th node."""

    proc: subprocess.Popen[bytes]
    folder: Path
    urls: list[str]

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of each request in the access log (nginx's
        combined lines or Caddy's JSON lines)."""
        out = []
        for line in (self.folder / "access.log").read_text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                out.append((entry["request"]["method"], entry["request"]["uri"],
                            int(entry["status"])))
            else:
                m = re.search(r'"(\w+) (\S+) HTTP/[\d.]+" (\d{3})', line)
                assert m, line
                out.append((m.group(1), m.group(2), int(m.group(3))))
        return out

    @property
    def output(self) -> str:
        path = self.folder / "error.log"
        return path.read_text() if path.exists() else ""


@contextmanager
def running(command: list[str], folder: Path, ports: list[int], pki: Pki,
            stop: signal.Signals, env: dict[str, str] | None = None) -> Iterator[Proxy]:
    """Run the proxy ``command`` (its output in folder/error.log) until every
    https://127.0.0.1:PORT answers GET /v1/status; stop it with ``stop`` on the way
    out (SIGKILL if it lingers)."""
    with open(folder / "error.log", "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                                env=env)
    proxy = Proxy(proc, folder, [f"https://127.0.0.1:{p}" for p in ports])
    context = ssl.create_default_context(cafile=str(pki.ca))

    def ready() -> bool:
        assert proc.poll() is None, proxy.output
        for url in proxy.urls:
            with urllib.request.urlopen(url + "/v1/status", timeout=10, context=context):
                pass
        return True

    try:
        wait_until(ready, what=f"{Path(command[0]).name} in front of the nodes")
        yield proxy
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(20)


@contextmanager
def nginx(folder: Path, node_urls: list[str], pki: Pki) -> Iterator[Proxy]:
    """nginx (not a daemon, as the test's user) with one shipped server block per
    node; its access log in folder/access.log."""
    folder.mkdir()
    ports = [free_port() for _ in node_urls]
    includes = []
    for i, (port, url) in enumerate(zip(ports, node_urls, strict=True)):
        site = folder / f"site-{i}.conf"
        site.write_text(site_config(port, int(url.rsplit(":", 1)[1]), pki))
        includes.append(f"    include {site};")
    temps = "\n".join(f"    {kind}_temp_path {folder / kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = (f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
            if os.geteuid() == 0 else "")  # workers as the test's user, not nobody
    main = folder / "nginx.conf"
    main.write_text(f"""{user}
worker_processes 1;
pid {folder / "nginx.pid"};
events {{ worker_connections 256; }}
http {{
    access_log {folder / "access.log"};
{temps}
{chr(10).join(includes)}
}}
""")
    assert NGINX is not None
    with running([NGINX, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(main),
                  "-g", "daemon off;"], folder, ports, pki, signal.SIGQUIT) as proxy:
        yield proxy


def caddy_site(port: int, node_port: int, pki: Pki, access_log: Path) -> str:
    """The shipped Caddyfile's site, served on 127.0.0.1:``port`` with the test's
    certificate (Caddy's ``tls`` directive) and an access log, proxying to the node
    on ``node_port``; nothing else changed."""
    text = CADDYFILE.read_text()
    for old, new in [
        ("lab.example.org {", f"https://127.0.0.1:{port} {{\n\ttls {pki.cert} {pki.key}\n"
                              f"\tlog {{\n\t\toutput file {access_log}\n\t}}"),
        ("reverse_proxy 127.0.0.1:8750 {", f"reverse_proxy 127.0.0.1:{node_port} {{"),
    ]:
        text = _replace_once(text, old, new, CADDYFILE)
    return text


@contextmanager
def caddy(folder: Path, node_urls: list[str], pki: Pki) -> Iterator[Proxy]:
    """Caddy with one shipped site per node: no admin endpoint, no HTTP listener,
    its state in ``folder``."""
    folder.mkdir()
    ports = [free_port() for _ in node_urls]
    sites = [caddy_site(port, int(url.rsplit(":", 1)[1]), pki, folder / "access.log")
             for port, url in zip(ports, node_urls, strict=True)]
    config = folder / "Caddyfile"
    config.write_text("{\n\tadmin off\n\tauto_https disable_redirects\n"
                      f"\thttp_port {free_port()}\n\tdefault_sni localhost\n}}\n\n"
                      + "\n".join(sites))
    env = {**os.environ, "HOME": str(folder), "XDG_DATA_HOME": str(folder / "data"),
           "XDG_CONFIG_HOME": str(folder / "config")}
    assert CADDY is not None
    with running([CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
                 folder, ports, pki, signal.SIGTERM, env) as proxy:
        yield proxy


PROXIES = [pytest.param(nginx, id="nginx", marks=pytest.mark.skipif(
               NGINX is None, reason="nginx is not installed (make test installs it)")),
           pytest.param(caddy, id="caddy", marks=pytest.mark.skipif(
               CADDY is None, reason="caddy is not installed (make test installs it)"))]


# -- the tests ----------------------------------------------------------------------


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group() as n:
        yield n


def digest(home: Path, cli: Cli) -> str:
    value: str = cli.json("status", home=home)["state_digest"]
    return value


@pytest.mark.slow
@pytest.mark.parametrize("front", PROXIES)
def test_two_nodes_sync_through_the_proxy_with_tls(
        tmp_path: Path, nodes: Nodes, cli: Cli,
        front: Callable[[Path, list[str], Pki], AbstractContextManager[Proxy]]) -> None:
    """Each node's only peer is the other's https URL on the proxy: what is recorded
    on one appears on the other, both ways, and their state digests match."""
    pki = make_pki(tmp_path)
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm, fab = fed.homes
    add_member(farm)
    author_contributions(farm, 1200)  # a pull answer that streams through the proxy
    trust = {"SSL_CERT_FILE": str(pki.ca), "DISCO_GOSSIP_INTERVAL": "1"}
    a, b = nodes.start(farm.path, fab.path, env=trust)
    with front(tmp_path / "proxy", [str(a.url), str(b.url)], pki) as proxy:
        farm_url, fab_url = proxy.urls
        set_peers(fab, [farm_url])
        set_peers(farm, [fab_url])
        farm_id = farm.signer().public_key.hex()
        wait_until(lambda: b.frontier().get(farm_id) == 1202, timeout=60,
                   what="the farm's entries on the fab lab, through the proxy")
        cli("member", "add", "bo", "--name", "Bo", home=fab.path)
        cli("record", "--member", "bo", "--stream", "love", "--hours", "3", home=fab.path)
        fab_id = fab.signer().public_key.hex()
        wait_until(lambda: a.frontier().get(fab_id) == 3, timeout=60,
                   what="the fab lab's entries on the farm, through the proxy")
        wait_until(lambda: a.status()["state_digest"] == b.status()["state_digest"],
                   timeout=60, what="equal state digests")
    requests = proxy.requests()
    nodes.stop_all()
    assert feed_seqs(farm) == feed_seqs(fab)
    assert digest(farm.path, cli) == digest(fab.path, cli)
    # The gossip went through the proxy, signed requests and streamed pulls alike,
    # and the proxy refused none of them.
    for path in ("/v1/sync/frontier", "/v1/sync/pull", "/v1/sync/push"):
        assert ("POST", path, 200) in requests, requests
    assert [r for r in requests if r[2] != 200] == [], requests


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make test installs it)")
def test_disco_sync_trusts_a_private_ca_named_by_ssl_cert_file(
        tmp_path: Path, nodes: Nodes, cli: Cli) -> None:
    """``disco sync`` to an https peer whose certificate a private CA signed: refused
    in one line (saying how to trust it) while another CA is trusted, nothing stored;
    in sync once SSL_CERT_FILE names the federation's CA."""
    pki = make_pki(tmp_path)
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other")
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm, fab = fed.homes
    cli("member", "add", "ana", "--name", "Ana Ruiz", home=farm.path)
    a = nodes.start_one(farm.path)
    before = feed_seqs(fab)
    with nginx(tmp_path / "nginx", [str(a.url)], pki) as proxy:
        url = proxy.urls[0]
        refused = cli("sync", url, home=fab.path, check=False,
                      env={"SSL_CERT_FILE": str(other.ca)})
        line = one_line_error(refused, 1)
        assert "certificate" in line and "SSL_CERT_FILE" in line, line
        assert feed_seqs(fab) == before
        synced = cli("sync", url, home=fab.path, env={"SSL_CERT_FILE": str(pki.ca)})
        assert "in sync" in synced.stdout, synced.stdout
        assert a.status()["state_digest"] == digest(fab.path, cli)
    assert feed_seqs(fab)[farm.signer().public_key.hex()] == [1, 2]


@pytest.mark.parametrize("front", PROXIES)
def test_the_proxy_passes_the_bodies_the_node_takes_and_no_larger(
        tmp_path: Path, nodes: Nodes,
        front: Callable[[Path, list[str], Pki], AbstractContextManager[Proxy]]) -> None:
    """The shipped body limit is the node's --max-body: a signed body of exactly that
    size reaches the node (its signed headers intact: it answers about the body); one
    byte more gets 413 (nginx refuses it; Caddy hands the head on and the node
    refuses it before reading the body)."""
    pki = make_pki(tmp_path)
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm, fab = fed.homes
    a = nodes.start_one(farm.path)
    context = ssl.create_default_context(cafile=str(pki.ca))
    max_body = Limits().max_body
    path = "/v1/sync/push"
    with front(tmp_path / "proxy", [str(a.url)], pki) as proxy:
        url = proxy.urls[0]
        body = b"\xc0" * max_body  # msgpack nil: not an entry stream
        headers = signed_headers(fab.signer(), path, body, to=farm.signer().public_key)
        reply = post(url, path, body, headers, context=context)
        assert reply.status == 400 and reply.content_type == "application/json", reply
        assert "unsigned" not in reply.error and "signature" not in reply.error, reply.error
        over = body + b"\xc0"
        headers = signed_headers(fab.signer(), path, over, to=farm.signer().public_key)
        reply = post(url, path, over, headers, context=context)
        assert reply.status == 413, reply
