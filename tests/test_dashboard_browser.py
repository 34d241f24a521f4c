"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by
Playwright; ``make install`` installs it), against two real ``disco serve`` nodes
that sync with each other.

One federation and one browser for the module. Screenshots of every page go to
``$DISCO_ARTEFACTS/dashboard`` (default: the test's temporary folder); the path is
printed. Every page is watched for console errors and uncaught exceptions.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import Cli, Federation, make_federation
from tests.nodes import NodeProcess, node_group, one_line_error, set_peers, wait_until
from tests.test_dashboard import PAGES, dashboard_link

pytestmark = pytest.mark.slow  # ~45 s: two nodes, a browser (they still run)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Site:
    """One LAB's node, its dashboard page in the browser, and what the page logged."""

    node: NodeProcess
    base: str
    page: Any
    problems: list[str] = field(default_factory=list)

    def open(self, path: str) -> Any:
        """Go to ``path``; return the navigation's response."""
        return self.page.goto(self.base + path)

    def chart(self, element_id: str) -> Any:
        """The option the chart in ``element_id`` is drawn from, read from ECharts."""
        return self.page.evaluate(
            "id => { const c = echarts.getInstanceByDom(document.getElementById(id));"
            " return c ? c.getOption() : null; }", element_id)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("DISCO_ARTEFACTS")
    path = (Path(root) if root else tmp_path_factory.mktemp("artefacts")) / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {path}")
    return path


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return make_federation(tmp_path_factory.mktemp("browser"), ["Farm", "FabLab"],
                           credit_limit=50_000)


@pytest.fixture(scope="module")
def cli(fed: Federation) -> Cli:
    return Cli(fed.homes[0].path.parent)


@pytest.fixture(scope="module")
def sites(fed: Federation, cli: Cli) -> Iterator[dict[str, Site]]:
    assert Path(CHROMIUM).exists(), "chromium is missing: run 'make install' (Debian package)"
    for home, member in ((fed.homes[0].path, "ana"), (fed.homes[1].path, "ben")):
        cli("member", "add", member, "--name", member.title(), home=home)
    with node_group({"DISCO_GOSSIP_INTERVAL": "1"}) as nodes:
        farm, fab = nodes.start(fed.homes[0].path, fed.homes[1].path)
        set_peers(fed.homes[0], [fab.url])
        set_peers(fed.homes[1], [farm.url])
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=["--no-sandbox", "--disable-gpu"])
            out = {}
            for name, node in (("farm", farm), ("fab", fab)):
                context = browser.new_context(viewport={"width": 1100, "height": 900})
                page = context.new_page()
                base, token = dashboard_link(node)
                site = Site(node, base, page)
                page.on("console", lambda m, s=site: s.problems.append(
                    f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
                page.on("pageerror", lambda e, s=site: s.problems.append(f"page error: {e}"))
                page.goto(f"{base}/?token={token}")  # the printed link signs in
                out[name] = site
            yield out
            browser.close()


def test_sign_in_with_the_printed_link(sites: dict[str, Site]) -> None:
    # The two nodes sync in the background from the start: once they agree, each
    # overview shows the digest its node serves.
    wait_until(lambda: len({s.node.status()["state_digest"] for s in sites.values()}) == 1,
               what="the two nodes in sync")
    for site in sites.values():
        page = site.page
        assert page.url == site.base + "/"
        page.reload()
        assert page.locator("h1").inner_text() == "Overview"
        digest = site.node.status()["state_digest"]
        assert page.locator("#state-digest").inner_text() == digest
        # Dates are shown in the browser's locale: no raw ISO text left.
        times = page.locator("time[datetime]")
        assert times.count() > 0
        first = times.first
        assert first.inner_text() != first.get_attribute("datetime")
    # The cookie cannot be read by a script.
    assert sites["farm"].page.evaluate("document.cookie") == ""


def test_record_work_and_see_it_in_the_table_and_the_chart(sites: dict[str, Site]) -> None:
    farm = sites["farm"]
    page = farm.page
    farm.open("/contributions")
    assert farm.chart("stream-chart")["series"][2]["data"] == []  # no care hours yet
    page.select_option("#record-form select[name=member]", "ana")
    page.select_option("#record-form select[name=stream]", "care")
    page.fill("#record-form input[name=hours]", "2:30")
    page.fill("#record-form input[name=note]", "childcare rota")
    with page.expect_navigation():
        page.click("#record-form button[type=submit]")
    assert page.url.endswith("/contributions?member=ana")
    assert "recorded: contribution.recorded" in page.locator(".flash").inner_text()
    row = page.locator("#contributions-table tbody tr").first
    assert row.locator("td").nth(1).inner_text() == "ana"
    assert row.locator("td").nth(2).inner_text() == "care"
    assert row.locator("td").nth(3).inner_text() == "2:30"
    option = farm.chart("stream-chart")
    assert option["xAxis"][0]["data"] == ["ana"]
    by_stream = {s["name"]: s["data"] for s in option["series"]}
    assert by_stream == {"livelihood": [0.0], "love": [0.0], "care": [2.5]}


def test_offer_from_the_cli_accepted_on_the_other_dashboard(
        sites: dict[str, Site], cli: Cli, fed: Federation) -> None:
    fab = sites["fab"]
    fab.open("/transfers")
    fab.page.evaluate("window.notReloaded = true")
    assert fab.page.locator("#to-me tr[data-ref]").count() == 0
    offer = cli.json("transfer", "offer", "--to", "FabLab", "--amount", "120.50",
                     "--unit", "JXC", "--memo", "seedlings", home=fed.homes[0].path)
    # It reaches FabLab by gossip and appears without a reload (the live refresh).
    row = fab.page.locator(f'#to-me tr[data-ref="{offer["ref"]}"]')
    row.wait_for(timeout=30_000)
    assert fab.page.evaluate("window.notReloaded") is True
    assert "120.50 JXC" in row.inner_text() and "Farm" in row.inner_text()
    with fab.page.expect_navigation():
        row.locator("button[value=accept]").click()
    assert "accepted: transfer.accepted" in fab.page.locator(".flash").inner_text()
    assert fab.page.locator("#to-me tr[data-ref]").count() == 0
    history = fab.page.locator("#history tbody tr").first.inner_text()
    assert "accepted" in history and "120.50 JXC" in history

    # The acceptance reaches the farm; its flows page draws the Sankey.
    farm = sites["farm"]
    wait_until(lambda: any(t["state"] == "accepted" for t in cli.json(
        "transfers", home=fed.homes[0].path)["transfers"]), timeout=30,
        what="the acceptance at the farm")
    for site in (farm, fab):
        site.open("/flows")
        series = site.chart("sankey")["series"][0]
        assert series["type"] == "sankey"
        assert series["links"] == [{"source": "Farm pays", "target": "FabLab receives",
                                    "value": 120.5}]
        assert "120.50 JXC" in site.page.locator("#transfers-table").inner_text()
    balances = farm.page.evaluate("fetch('/api/overview').then(r => r.json())")
    by_name = {r["name"]: r["units"][0]["text"] for r in balances["balances"]}
    assert by_name == {"Farm": "-120.50 JXC", "FabLab": "120.50 JXC"}

    # Both hold the same entries: each overview says the peers agree.
    for site in (farm, fab):
        wait_until(lambda s=site: s.page.evaluate(
            "fetch('/api/overview').then(r => r.json())")["sync"]["agreement"] == "agree",
            timeout=30, what="the peers to agree")
        digest = site.node.status()["state_digest"]  # (the node saves its ledger)
        site.open("/")
        assert site.page.locator("#agreement").inner_text().startswith("agree")
        assert site.page.locator("#state-digest").inner_text() == digest


def test_a_refused_offer_shows_the_reason(sites: dict[str, Site], cli: Cli,
                                          fed: Federation) -> None:
    farm = sites["farm"]
    expected = one_line_error(cli("transfer", "offer", "--to", "FabLab", "--amount", "400",
                                  "--unit", "JXC", home=fed.homes[0].path, check=False), 1)
    farm.open("/transfers")
    page = farm.page
    page.select_option("#offer-form select[name=to]", label="FabLab")
    page.fill("#offer-form input[name=amount]", "400")
    with page.expect_navigation() as navigation:
        page.click("#offer-form button[type=submit]")
    assert navigation.value.status == 409
    # Chromium logs the refused page's status as a console error: that one is expected.
    expected_log = ("console error: Failed to load resource: the server responded with a "
                    "status of 409 (Conflict)")
    assert farm.problems.count(expected_log) == 1, farm.problems
    farm.problems.remove(expected_log)
    assert page.locator("#error").inner_text() == expected.removeprefix("disco: ")
    assert "over-credit-limit" in expected
    assert page.locator("#offer-form input[name=amount]").input_value() == "400"


def test_a_proposal_voted_in_on_the_federation_page(sites: dict[str, Site], cli: Cli,
                                                    fed: Federation, artefacts: Path) -> None:
    farm = sites["farm"]
    page = farm.page
    farm.open("/federation")
    assert page.locator("#open tr[data-ref]").count() == 0
    newcomer = "9f" * 32
    ref = cli.json("propose", "admit", "--lab", newcomer, "--name", "Nueva", "--note",
                   "vetted by the assembly", home=fed.homes[1].path)["ref"]
    # It reaches the farm by gossip and appears without a reload (the live refresh).
    row = page.locator(f'#open tr[data-ref="{ref}"]')
    row.wait_for(timeout=30_000)
    text = row.inner_text()
    assert "admit Nueva (9f9f9f9f)" in text and "vetted by the assembly" in text
    assert "FabLab" in text and "1 yes, 0 no; 2 needed of 2" in text
    page.screenshot(path=str(artefacts / "federation-proposal.png"), full_page=True)
    with page.expect_navigation():
        row.locator("button[value=yes]").click()
    assert "voted yes: proposal.voted" in page.locator(".flash").inner_text()
    assert page.locator("#open tr[data-ref]").count() == 0
    decided = page.locator(f'#decided tr[data-ref="{ref}"]').inner_text()
    assert "passed" in decided and "2 yes, 0 no" in decided
    nueva = page.locator(f'#roster tr[data-lab="{newcomer}"]').inner_text()
    assert "Nueva" in nueva and "member" in nueva and "admission" in nueva


def test_screenshots_of_every_page_and_no_console_errors(
        sites: dict[str, Site], artefacts: Path) -> None:
    farm = sites["farm"]
    for path in PAGES:
        farm.open(path)
        name = path.strip("/") or "overview"
        farm.page.screenshot(path=str(artefacts / f"{name}.png"), full_page=True)
    farm.page.set_viewport_size({"width": 390, "height": 844})  # a phone
    for path in ("/", "/transfers"):
        farm.open(path)
        width = farm.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide on a phone"
        farm.page.screenshot(path=str(artefacts / f"phone-{path.strip('/') or 'overview'}"
                                                  ".png"), full_page=True)
    assert len(list(artefacts.glob("*.png"))) == len(PAGES) + 3  # (+ federation-proposal)
    for site in sites.values():
        assert site.problems == [], site.problems
