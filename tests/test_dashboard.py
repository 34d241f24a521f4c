"""The dashboard over plain HTTP: who gets in, what a refusal says, what the pages hold.

Real ``disco serve`` processes; requests through :class:`Browser`, a cookie-keeping
HTTP client that does not follow redirects (so each answer is seen as sent).
"""

from __future__ import annotations

import html
import http.client
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from tests.conftest import Cli, Federation, make_federation
from tests.nodes import NodeProcess, node_group, one_line_error, wait_until

DASHBOARD_LINE = re.compile(r"^dashboard: (http://\S+)/\?token=(\S+)$")
PAGES = ["/", "/flows", "/transfers", "/contributions", "/payout", "/federation", "/peers",
         "/audit"]
APIS = ["/api/overview", "/api/flows", "/api/transfers", "/api/contributions",
        "/api/payout", "/api/federation", "/api/peers", "/api/audit", "/api/live"]
POSTS = ["/contributions", "/transfers/offer", "/transfers/answer", "/transfers/reclaim",
         "/federation/vote", "/audit/run", "/audit/export", "/signout"]


def dashboard_link(node: NodeProcess) -> tuple[str, str]:
    """(base URL, token) from the ``dashboard: URL`` line ``disco serve`` printed."""
    def find() -> tuple[str, str] | None:
        for line in node.log_lines:
            m = DASHBOARD_LINE.match(line)
            if m:
                return m.group(1), m.group(2)
        return None
    return wait_until(find, timeout=10, what="the dashboard line")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: list[str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Browser:
    """HTTP requests to one dashboard with the cookies it set; redirects not followed."""

    base: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        parts = urlsplit(self.base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=sent)
            r = conn.getresponse()
            data = r.read()
            cookies = r.headers.get_all("Set-Cookie") or []
            for c in cookies:
                name, _, rest = c.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
            return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, data, cookies)
        finally:
            conn.close()

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str],
             headers: dict[str, str] | None = None) -> Answer:
        return self.request("POST", path, form, headers)

    def sign_in(self, token: str) -> Answer:
        return self.get(f"/?token={token}")

    def csrf(self, path: str = "/transfers") -> str:
        m = re.search(r'name="csrf" value="([^"]+)"', self.get(path).text)
        assert m, "no CSRF field on the page"
        return m.group(1)


def signed_in(node: NodeProcess) -> Browser:
    base, token = dashboard_link(node)
    b = Browser(base)
    assert b.sign_in(token).status == 303
    return b


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return make_federation(tmp_path_factory.mktemp("dash"), ["Farm", "FabLab"],
                           credit_limit=10_000)


@pytest.fixture(scope="module")
def farm(fed: Federation) -> Iterator[NodeProcess]:
    with node_group() as nodes:
        yield nodes.start_one(fed.homes[0].path)


@pytest.fixture(scope="module")
def cli(fed: Federation) -> Cli:
    return Cli(fed.homes[0].path.parent)


def _head(cli: Cli, home: Path) -> int:
    status = cli.json("status", home=home)
    return next(r["seq"] for r in status["roster"] if r["lab"] == status["lab_id"])


def test_the_sync_port_serves_no_dashboard_path(farm: NodeProcess) -> None:
    assert farm.url is not None
    sync = Browser(farm.url)
    for path in [*PAGES, *APIS, "/signin", "/static/dashboard.js"]:
        answer = sync.get(path)
        assert answer.status == 404, (path, answer.status)
        assert b"state_digest" not in answer.body
    base, _ = dashboard_link(farm)
    assert urlsplit(base).port != urlsplit(farm.url).port


def test_no_session_gets_no_data(farm: NodeProcess) -> None:
    base, _ = dashboard_link(farm)
    status = farm.status()
    stranger = Browser(base)
    secrets = [status["state_digest"], "Farm", "FabLab", "JXC"]
    for path in PAGES:
        answer = stranger.get(path)
        assert answer.status == 303 and answer.headers["location"] == "/signin", path
        assert not any(s.encode() in answer.body for s in secrets), path
    for path in APIS:
        answer = stranger.get(path)
        assert answer.status == 401, path
        assert set(answer.json()) == {"error"} and "sign in" in answer.json()["error"]
    for path in POSTS:
        answer = stranger.post(path, {"csrf": "x", "member": "ana", "hours": "1",
                                      "stream": "care"})
        assert answer.status == 401, path
    page = stranger.get("/signin")
    assert page.status == 401 and "disco serve" in page.text
    assert not any(s.encode() in page.body for s in secrets)
    assert page.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert stranger.cookies == {}


def test_the_link_signs_in_once(farm: NodeProcess) -> None:
    base, token = dashboard_link(farm)
    wrong = Browser(base)
    answer = wrong.sign_in(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert answer.status == 303 and answer.headers["location"] == "/signin?spent=1"
    assert wrong.cookies == {} and wrong.get("/api/overview").status == 401
    first = Browser(base)
    answer = first.sign_in(token)
    assert answer.status == 303 and answer.headers["location"] == "/"
    (cookie,) = answer.cookies
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    overview = first.get("/api/overview")
    assert overview.status == 200
    assert overview.json()["state_digest"] == farm.status()["state_digest"]
    second = Browser(base)
    assert second.sign_in(token).headers["location"] == "/signin?spent=1"
    assert second.get("/api/overview").status == 401
    # Signing out ends the session.
    assert first.post("/signout", {"csrf": first.csrf()}).status == 303
    assert first.get("/api/overview").status == 401


def test_every_page_and_its_json_twin(farm: NodeProcess, cli: Cli, fed: Federation) -> None:
    home = fed.homes[0].path
    cli("member", "add", "ana", "--name", "Ana Ruiz", home=home)
    cli("record", "--member", "ana", "--stream", "love", "--hours", "1:15", home=home)
    b = _new_session(farm)
    for path in PAGES:
        answer = b.get(path)
        assert answer.status == 200, (path, answer.text[:500])
        assert "text/html" in answer.headers["content-type"]
    flows = b.get("/api/flows").json()
    assert flows["hours_by_lab"] == [{"lab": "Farm", "livelihood": "0:00", "love": "1:15",
                                      "care": "0:00"}]
    contributions = b.get("/api/contributions?member=ana").json()
    assert [(c["member"], c["stream"], c["hours"]) for c in contributions["latest"]] == [
        ("ana", "love", "1:15")]
    assert "1:15" in b.get("/contributions?member=ana").text
    assert b.get("/api/flows?period=November").status == 400
    bad = b.get("/flows?period=November")
    assert bad.status == 400 and "want a month like 2026-11" in bad.text
    assert b.get("/api/payout?unit=EUR").json() == {
        "error": "unit 'EUR' is not a unit of this federation (JXC)"}


def _new_session(farm: NodeProcess) -> Browser:
    """A session through a fresh link (SIGUSR1 makes the node print one)."""
    import signal

    before = len([line for line in farm.log_lines if DASHBOARD_LINE.match(line)])
    farm.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: len([line for line in farm.log_lines
                            if DASHBOARD_LINE.match(line)]) > before, timeout=10,
               what="a new dashboard link")
    line = [m for line in farm.log_lines if (m := DASHBOARD_LINE.match(line))][-1]
    b = Browser(line.group(1))
    assert b.sign_in(line.group(2)).status == 303
    return b


def test_writes_need_the_csrf_token_and_this_site(farm: NodeProcess, cli: Cli,
                                                   fed: Federation) -> None:
    home = fed.homes[0].path
    b = _new_session(farm)
    head = _head(cli, home)
    form = {"member": "ana", "stream": "care", "hours": "2"}
    for sent in ({}, {"csrf": "forged"}):
        answer = b.post("/contributions", {**form, **sent})
        assert answer.status == 403 and "CSRF" in answer.json()["error"]
    answer = b.post("/contributions", {**form, "csrf": b.csrf()},
                    headers={"Origin": "http://evil.example"})
    assert answer.status == 403 and "another site" in answer.json()["error"]
    assert _head(cli, home) == head  # nothing stored
    answer = b.post("/contributions", {**form, "csrf": b.csrf()})
    assert answer.status == 303 and answer.headers["location"] == "/contributions?member=ana"
    assert _head(cli, home) == head + 1


def test_refusals_say_what_the_cli_says(farm: NodeProcess, cli: Cli,
                                        fed: Federation) -> None:
    home = fed.homes[0].path
    b = _new_session(farm)
    head = _head(cli, home)
    over = one_line_error(cli("transfer", "offer", "--to", "FabLab", "--amount", "150.00",
                              "--unit", "JXC", home=home, check=False), 1)
    assert over.startswith("disco: refused: an offer of 150.00 JXC would take the balance")
    answer = b.post("/transfers/offer", {"csrf": b.csrf(), "to": "FabLab",
                                         "amount": "150.00", "unit": "JXC"})
    assert answer.status == 409
    assert over.removeprefix("disco: ") in answer.text
    assert 'value="150.00"' in answer.text  # the form keeps what was typed
    cases = [
        ("/contributions", {"member": "ana", "stream": "care", "hours": "0"}, 400,
         "hours must be more than zero"),
        ("/contributions", {"member": "ana", "stream": "care", "hours": "2",
                            "date": "2026-13-01"}, 400, "2026-13-01"),
        ("/contributions", {"member": "nobody", "stream": "care", "hours": "2"}, 409,
         "refused: "),
        ("/contributions", {"member": "ana", "stream": "joy", "hours": "2"}, 400,
         "want one of livelihood, love, care"),
        ("/transfers/offer", {"to": "Nowhere", "amount": "1", "unit": "JXC"}, 400,
         "names no LAB of the federation"),
        ("/transfers/offer", {"to": "FabLab", "amount": "1e2", "unit": "JXC"}, 400,
         "want an amount like 12.50"),
        ("/transfers/offer", {"to": "FabLab", "amount": "1", "unit": "EUR"}, 400,
         "not a unit of this federation"),
        ("/transfers/answer", {"ref": "zz", "answer": "accept"}, 400, "want a ref"),
        ("/transfers/answer", {"ref": "abcdef", "answer": "accept"}, 409,
         "names no offer held here"),
    ]
    for path, form, status, reason in cases:
        answer = b.post(path, {"csrf": b.csrf(), **form})
        assert answer.status == status, (form, answer.status, answer.text[-800:])
        assert reason in answer.text, (form, reason)
        assert 'role="alert"' in answer.text and "Traceback" not in answer.text
    assert _head(cli, home) == head  # nothing stored


def test_decline_then_reclaim_on_the_dashboard(farm: NodeProcess, cli: Cli,
                                               fed: Federation) -> None:
    farm_home, fab_home = fed.homes[0].path, fed.homes[1].path
    assert farm.url is not None
    offer = cli.json("transfer", "offer", "--to", "FabLab", "--amount", "3.00", "--unit",
                     "JXC", home=farm_home)["ref"]
    b = _new_session(farm)
    refused = b.post("/transfers/reclaim", {"csrf": b.csrf(), "ref": offer})
    assert refused.status == 409 and "has not been declined (it is offered)" in refused.text
    cli("sync", farm.url, home=fab_home)
    cli("transfer", "decline", offer, "--reason", "not ours", home=fab_home)
    cli("sync", farm.url, home=fab_home)
    wait_until(lambda: any(t["ref"] == offer and t["state"] == "declined"
                           for t in b.get("/api/transfers").json()["from_me"]),
               what="the decline on the farm's dashboard")
    assert 'action="/transfers/reclaim"' in b.get("/transfers").text
    answer = b.post("/transfers/reclaim", {"csrf": b.csrf(), "ref": offer})
    assert answer.status == 303, answer.text[-600:]
    states = {t["ref"]: t["state"] for t in cli.json("transfers", home=farm_home)["transfers"]}
    assert states[offer] == "reclaimed"


def test_payout_is_the_cli_payout(farm: NodeProcess, cli: Cli, fed: Federation) -> None:
    home = fed.homes[0].path
    month = time.strftime("%Y-%m", time.gmtime())
    cli("income", "--amount", "100.00", "--unit", "JXC", "--period", month, "--source",
        "market", home=home)
    cli("policy", "--care", "2", "--care-ratio", "10", home=home)
    b = _new_session(farm)
    mine = b.get(f"/api/payout?period={month}").json()
    theirs = cli.json("payout", "--period", month, home=home)
    assert {s["member"]: s["amount"] for s in mine["shares"]} == theirs["shares"]
    assert mine["policy"] == {"weights": theirs["weights"], "care_ratio": 10, "set": True}
    page = html.unescape(b.get(f"/payout?period={month}").text)
    assert "care ratio 10%" in page and theirs["formula"] in page
    empty = b.get("/api/payout?period=2001-01").json()
    assert empty["shares"] == [] and empty["error"] == "no income recorded for 2001-01 in JXC"


def test_audit_and_export_from_the_dashboard(farm: NodeProcess, cli: Cli,
                                            fed: Federation, tmp_path: Path) -> None:
    b = _new_session(farm)
    assert b.get("/api/audit").json()["report"] is None  # none run since the start
    answer = b.post("/audit/run", {"csrf": b.csrf("/audit")})
    assert answer.status == 303 and answer.headers["location"] == "/audit"
    report = b.get("/api/audit").json()["report"]
    status = farm.status()
    assert report["ok"] is True and report["violations"] == []
    assert report["entries"] == sum(f["seq"] for f in status["frontier"].values())
    assert "audit passed" in b.get("/audit").text
    bundle = b.post("/audit/export", {"csrf": b.csrf("/audit")})
    assert bundle.status == 200
    assert bundle.headers["content-disposition"].startswith("attachment; filename=")
    path = tmp_path / "farm.bundle"
    path.write_bytes(bundle.body)
    audited = cli.json("audit", str(path))
    assert audited["ok"] is True and audited["entries"] == report["entries"]
    assert audited["state_digest"] == report["state_digest"]


def test_the_federation_page_votes_as_disco_vote_does(farm: NodeProcess, cli: Cli,
                                                      fed: Federation) -> None:
    farm_home, fab_home = fed.homes[0].path, fed.homes[1].path
    assert farm.url is not None
    newcomer = "9f" * 32
    proposal = cli.json("propose", "admit", "--lab", newcomer, "--name", "Nueva", "--note",
                        "vetted", home=fab_home)["ref"]
    cli("sync", farm.url, home=fab_home)
    b = _new_session(farm)

    def held() -> dict[str, Any] | None:
        rows = {p["ref"]: p for p in b.get("/api/federation").json()["proposals"]}
        return rows.get(proposal)

    row = wait_until(held, what="the proposal on the farm's dashboard")
    # The rows of 'disco proposals --json', with what the page adds.
    listed = {r["ref"]: r for r in cli.json("proposals", home=farm_home)}
    assert {k: row[k] for k in listed[proposal]} == listed[proposal]
    assert (row["action"], row["about"], row["by"], row["state"], row["needed"]) == (
        "admit", f"Nueva ({newcomer[:8]})", "FabLab", "open", 2)
    assert (row["yes"], row["no"], row["can_vote"]) == (1, 0, True)
    assert row["voted"] == [{"lab": fed.homes[1].lab_id.hex(), "name": "FabLab",
                             "vote": "yes"}]
    roster = b.get("/api/federation").json()["roster"]
    assert [(r["name"], r["state"], r["admitted"]) for r in roster] == [
        ("Farm", "member", None), ("FabLab", "member", None)]
    assert roster[0]["key"] == fed.homes[0].lab_id.hex() and roster[0]["self"]
    page = html.unescape(b.get("/federation").text)
    assert 'href="/federation" aria-current="page"' in page
    assert "Nueva (9f9f9f9f)" in page and 'name="vote" value="yes"' in page

    head = _head(cli, farm_home)
    form = {"ref": proposal, "vote": "yes"}
    for sent in ({}, {"csrf": "forged"}):
        answer = b.post("/federation/vote", {**form, **sent})
        assert answer.status == 403 and "CSRF" in answer.json()["error"]
    cases = [({"ref": proposal, "vote": "maybe"}, 400, "'maybe': want yes or no"),
             ({"ref": "12#8", "vote": "yes"}, 400, "want a proposal's ref"),
             ({"ref": proposal, "vote": "yes", "note": "x" * 2000}, 400, "note"),
             ({"ref": "abcdef12", "vote": "yes"}, 409, "names no proposal held here")]
    for sent, status, reason in cases:
        answer = b.post("/federation/vote", {"csrf": b.csrf("/federation"), **sent})
        assert answer.status == status, (sent, answer.status, answer.text[-800:])
        assert reason in html.unescape(answer.text) and 'role="alert"' in answer.text
    assert _head(cli, farm_home) == head  # nothing stored

    answer = b.post("/federation/vote", {"csrf": b.csrf("/federation"), **form})
    assert answer.status == 303 and answer.headers["location"] == "/federation"
    assert _head(cli, farm_home) == head + 1
    assert f"voted yes: proposal.voted seq {head + 1}" in b.get("/federation").text
    doc = b.get("/api/federation").json()
    after = {p["ref"]: p for p in doc["proposals"]}[proposal]
    assert (after["state"], after["yes"], after["can_vote"]) == ("passed", 2, False)
    nueva = doc["roster"][-1]
    assert (nueva["lab"], nueva["name"], nueva["state"]) == (newcomer, "Nueva", "member")
    assert nueva["admitted"]["ref"] == proposal
    assert "Nueva" in [r["name"] for r in b.get("/api/overview").json()["balances"]]

    # A second vote: the ledger refuses it, in the words 'disco vote' prints (409).
    said = one_line_error(cli("vote", proposal, "no", home=farm_home, check=False), 1)
    assert said.endswith("[already-voted]")
    answer = b.post("/federation/vote", {"csrf": b.csrf("/federation"), **form,
                                         "vote": "no"})
    assert answer.status == 409
    assert said.removeprefix("disco: ") in html.unescape(answer.text)
    assert _head(cli, farm_home) == head + 1


def test_serve_without_a_dashboard_and_a_bad_address(fed: Federation, cli: Cli,
                                                     tmp_path: Path) -> None:
    other = make_federation(tmp_path, ["Solo", "Other"])
    with node_group() as nodes:
        node = nodes.start_one(other.homes[0].path, args=["--no-dashboard"])
        assert not any(line.startswith("dashboard:") for line in node.log_lines)
    result = cli("serve", "--listen", "127.0.0.1:0", "--dashboard", "localhost",
                 home=other.homes[0].path, check=False)
    assert "--dashboard" in one_line_error(result, 2)


def test_the_shipped_chart_library_is_the_pinned_one() -> None:
    """node/dashboard/static/vendor/echarts.min.js is the version web/package.json pins
    (and package-lock.json resolved), with its licence files beside it."""
    repo = Path(__file__).resolve().parents[1]
    pinned = json.loads((repo / "web" / "package.json").read_text())["dependencies"]["echarts"]
    lock = json.loads((repo / "web" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/echarts"]["version"] == pinned
    vendor = repo / "node" / "dashboard" / "static" / "vendor"
    shipped = re.findall(r'version="(\d+\.\d+\.\d+)"', (vendor / "echarts.min.js").read_text())
    assert shipped == [pinned]
    for name in ("echarts.LICENSE", "echarts.NOTICE", "zrender.LICENSE"):
        assert (vendor / name).stat().st_size > 0
