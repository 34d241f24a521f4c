"""The node's own files (issue 9, finding 8): a LAB key others may read is refused as
ssh refuses it; ``disco rebuild`` and every re-derivation of the ledger check each
entry they apply and report what they skip; ``status``, ``balance`` and ``serve``
say when the store was never verified, not for a long time, or failed its check."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from node.home import CHECKED, LOCK, Home
from node.lab import LabNode
from protocol import canonical
from protocol.entry import Entry
from tests.conftest import (
    DISCO,
    POSTGRES_DSN,
    REPO,
    Cli,
    Federation,
    drop_schema,
    make_federation,
)
from tests.nodes import NodeProcess

NOW = 1_700_000_000_000_000


# -- helpers ---------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def fed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Federation]:
    """Two LABs, each with one member, on every backend."""
    if request.param == "postgres" and not POSTGRES_DSN:
        pytest.skip("DISCO_TEST_POSTGRES is not set (CI sets it)")
    federation = make_federation(tmp_path, ["Farm", "FabLab"], NOW,
                                 postgres_dsn=POSTGRES_DSN if request.param == "postgres"
                                 else None)
    try:
        yield federation
    finally:
        if request.param == "postgres":
            for h in federation.homes:
                drop_schema(POSTGRES_DSN or "", h.config["store"]["schema"])


def _farm_history(fed: Federation) -> tuple[Entry, Entry]:
    """The farm holds the fab lab's feed, adds a member, offers 12.50 JXC to the fab
    lab, records work: returns (the offer, the contribution after it)."""
    fab = fed.homes[1].lab_id
    with fed.node(0) as farm, fed.node(1) as fab_node:
        farm.ingest(e.raw for e in fab_node.log(fab))
        farm.author("member.added", {"handle": "ana", "name": "Ana"}, NOW)
        offer = farm.author("transfer.offered", {"to": fab, "unit": "JXC", "amount": 1250},
                            NOW)
        work = farm.author("contribution.recorded",
                           {"member": "ana", "stream": "care", "minutes": 90}, NOW)
        assert farm.ledger().balance(farm.lab_id, "JXC") == -1250
    return offer, work


def _rows_sql(home: Home, sql: str, params: list[Any]) -> list[Any]:
    """Run ``sql`` (``{events}``, ``{views}``... and ``?`` placeholders) on the home's
    store, outside the node, as someone editing its files would."""
    store = home.config["store"]
    if store["backend"] == "sqlite":
        names = {"events": "stored_events", "views": "projection_views",
                 "summaries": "projection_summaries"}
        with sqlite3.connect(home.path / store["path"]) as conn:
            rows = conn.execute(sql.format(**names), params).fetchall()
        return rows
    import psycopg

    schema = store["schema"]
    names = {k: f'"{schema}".{v}' for k, v in (
        ("events", "stored_events"), ("views", "projection_views"),
        ("summaries", "projection_summaries"))}
    with psycopg.connect(POSTGRES_DSN or "", autocommit=True) as conn:
        cur = conn.execute(sql.format(**names).replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


def _edit_entry(home: Home, entry: Entry, change: Callable[[Entry], bytes]) -> None:
    """Replace the stored bytes of ``entry`` with ``change(entry)``."""
    _rows_sql(home, "UPDATE {events} SET state = ? WHERE originator_id = ? AND "
              "originator_version = ?", [change(entry), entry.author.hex(), entry.seq])


def _stored(home: Home, entry: Entry) -> bytes:
    rows = _rows_sql(home, "SELECT state FROM {events} WHERE originator_id = ? AND "
                     "originator_version = ?", [entry.author.hex(), entry.seq])
    return bytes(rows[0][0])


def _amount_changed(entry: Entry) -> bytes:
    """The offer with a larger amount in its body (header and signature kept)."""
    body = entry.fields()
    assert body is not None
    body["amount"] = 99_999
    return canonical.encode([entry.header.as_list(), entry.signature,
                             canonical.encode(body)])


def _timestamp_changed(entry: Entry) -> bytes:
    """The entry with another timestamp in its header: its signature fails, and the
    next entry's link to it breaks."""
    header = entry.header.as_list()
    header[5] += 1
    return canonical.encode([header, entry.signature, entry.body])


def _forget_saved_ledger(home: Home) -> None:
    for table in ("views", "summaries"):
        _rows_sql(home, f"DELETE FROM {{{table}}}", [])


def _one_line(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


# -- the key file ------------------------------------------------------------------


@pytest.mark.parametrize("mode,how", [(0o644, "readable"), (0o640, "readable"),
                                      (0o604, "readable"), (0o620, "writable"),
                                      (0o602, "writable")])
def test_a_key_file_others_may_use_is_refused_naming_the_fix(
        cli: Cli, tmp_path: Path, mode: int, how: str) -> None:
    federation = make_federation(tmp_path, ["Farm", "FabLab"], NOW)
    home = federation.homes[0]
    cli("member", "add", "ana", home=home.path)
    before = cli("log", "--json", home=home.path).stdout
    home.key_path.chmod(mode)
    result = cli("record", "--member", "ana", "--stream", "care", "--hours", "1",
                 home=home.path, check=False)
    _one_line(result, 2, f"disco: key file {home.key_path} is {how} by others "
                         f"(mode {mode:04o}); run 'chmod 600 {home.key_path}'")
    assert cli("log", "--json", home=home.path).stdout == before
    home.key_path.chmod(0o600)
    cli("record", "--member", "ana", "--stream", "care", "--hours", "1", home=home.path)


def test_an_encrypted_key_others_may_read_is_refused_before_the_passphrase(
        cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "farm"
    env = {"DISCO_PASSPHRASE": "correct horse battery staple"}
    cli("init", "--name", "Farm", "--encrypt", home=home, env=env)
    (home / "lab.key").chmod(0o640)
    result = cli("member", "add", "ana", home=home, env=env, check=False)
    _one_line(result, 2, "is readable by others (mode 0640); run 'chmod 600")


def test_serve_refuses_a_key_file_others_may_read(tmp_path: Path) -> None:
    home = make_federation(tmp_path, ["Farm", "FabLab"], NOW).homes[0]
    home.key_path.chmod(0o644)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DISCO_HOME", None)
    result = subprocess.run([*DISCO, "--home", str(home.path), "serve", "--listen",
                             "127.0.0.1:0"], env=env, capture_output=True, text=True,
                            timeout=60)
    _one_line(result, 2, "run 'chmod 600")


def test_the_files_the_node_writes_itself_are_private(tmp_path: Path) -> None:
    """Whatever the umask: the key 0600, the writer lock 0600, the folder 0700."""
    home = tmp_path / "farm"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DISCO_HOME", None)
    subprocess.run([*DISCO, "--home", str(home), "init", "--name", "Farm"], env=env,
                   check=True, capture_output=True, preexec_fn=lambda: os.umask(0))
    assert (home / "lab.key").stat().st_mode & 0o777 == 0o600
    assert home.stat().st_mode & 0o077 == 0
    opened = Home.open(home)
    with opened.writer_lock():
        pass
    assert (home / LOCK).stat().st_mode & 0o777 == 0o600
    opened.check_key_file()  # no complaint about its own files


# -- rebuild and re-derivations check what they apply ----------------------------------


def test_rebuild_skips_a_tampered_amount_and_reports_it(cli: Cli, tmp_path: Path) -> None:
    """The tampered amount does not become the balance: the offer is skipped, and
    the rest of the farm's feed with it; the CLI names feed, seq and reason."""
    federation = make_federation(tmp_path, ["Farm", "FabLab"], NOW)
    farm = federation.homes[0]
    offer, work = _farm_history(federation)
    _edit_entry(farm, offer, _amount_changed)
    tampered = _stored(farm, offer)

    result = cli("rebuild", home=farm.path, check=False)
    assert result.returncode == 1, result.stderr
    a = farm.lab_id.hex()
    assert result.stderr.splitlines() == [
        f"skipped feed {a} seq {offer.seq}: body-hash-mismatch: entry {offer.where}: "
        "body does not match body_hash (later entries unchecked)",
        f"held feed {a} before seq {offer.seq}: 2 entries not applied"]
    assert "state digest" in result.stdout
    report = json.loads(cli("rebuild", "--json", home=farm.path, check=False).stdout)
    assert report["ok"] is False
    assert [(p["author"], p["seq"], p["code"]) for p in report["skipped"]] == [
        (a, offer.seq, "body-hash-mismatch")]
    assert report["held"] == [{"author": a, "from_seq": offer.seq, "not_applied": 2}]

    balances = cli.json("balance", home=farm.path)["balances"]
    assert balances[a] == {"JXC": 0}
    assert _stored(farm, offer) == tampered  # the store itself is left as it was
    with LabNode.open(farm) as node:
        assert node.ledger().applied(farm.lab_id) == offer.seq - 1
        assert not node.ledger().contributions

    # The feed is held: the node signs nothing on top of an entry it cannot vouch for.
    refused = cli("record", "--member", "ana", "--stream", "care", "--hours", "1",
                  home=farm.path, check=False)
    _one_line(refused, 1, f"holds this LAB's feed at seq {offer.seq - 1} of {work.seq}")
    assert "disco verify" in refused.stderr
    with LabNode.open(farm) as node:
        assert node.store.head(farm.lab_id)[0] == work.seq


@pytest.mark.parametrize("change", [_amount_changed, _timestamp_changed])
def test_rebuild_finds_what_verify_finds(fed: Federation,
                                         change: Callable[[Entry], bytes]) -> None:
    """One set of rules: what rebuild skips is exactly what verify reports."""
    farm = fed.homes[0]
    offer, work = _farm_history(fed)
    _edit_entry(farm, offer, change)
    with LabNode.open(farm) as node:
        ledger = node.rebuild()
        assert node.skipped is not None
        found = node.verify()
        assert found and node.skipped.problems == found
        assert [p.seq for p in found] == ([offer.seq] if change is _amount_changed
                                          else [offer.seq, work.seq])
        assert node.skipped.held == {farm.lab_id.hex(): [offer.seq, 2]}
        assert ledger.balance(farm.lab_id, "JXC") == 0
        assert ledger.applied(farm.lab_id) == offer.seq - 1
        assert ledger.applied(fed.homes[1].lab_id) == 1  # the other feed is untouched


def test_rebuild_of_a_sound_store_skips_nothing(fed: Federation) -> None:
    offer, _ = _farm_history(fed)
    with LabNode.open(fed.homes[0]) as node:
        digest = node.ledger().digest()
        assert node.rebuild().digest() == digest
        assert node.skipped is not None
        assert node.skipped.problems == [] and node.skipped.held == {}
        assert node.skipped.checked == offer.seq + 2  # 4 of the farm, 1 of the fab lab
        assert node.home.last_check() is not None
        assert node.home.last_check()["by"] == "rebuild"  # type: ignore[index]


def test_a_catch_up_from_nothing_checks_what_it_applies(fed: Federation) -> None:
    """Without a saved ledger to start from (lost, damaged), the node derives it again
    from the log: that catch-up checks the entries as rebuild does."""
    farm = fed.homes[0]
    offer, _ = _farm_history(fed)
    _edit_entry(farm, offer, _amount_changed)
    _forget_saved_ledger(farm)
    with LabNode.open(farm) as node:
        summary = node.summary()
        assert summary["balances"] == []
        assert [farm.lab_id, offer.seq - 1] in summary["heads"]
        assert node.skipped is not None and [p.seq for p in node.skipped.problems] == [
            offer.seq]
    assert farm.last_check() is not None
    assert farm.last_check()["ok"] is False  # type: ignore[index]
    assert farm.last_check()["by"] == "catch-up"  # type: ignore[index]
    _rows_sql(farm, "UPDATE {views} SET state = ?", [b"\x00damaged"])
    with LabNode.open(farm) as node:
        assert node.ledger().balance(farm.lab_id, "JXC") == 0


def test_a_held_feed_is_not_read_past_when_a_reference_wakes_it(tmp_path: Path) -> None:
    """The fab lab accepts the farm's offer; the offer is tampered with in the fab
    lab's store. The acceptance waits for an offer the ledger cannot vouch for: it is
    never credited from the tampered bytes."""
    federation = make_federation(tmp_path, ["Farm", "FabLab"], NOW)
    offer, _ = _farm_history(federation)
    with federation.node(0) as farm, federation.node(1) as fab:
        fab.ingest(e.raw for e in farm.log(farm.lab_id))
        accepted = fab.author("transfer.accepted", {"offer": offer.ref.as_list()}, NOW)
        assert fab.ledger().balance(fab.lab_id, "JXC") == 1250
    _edit_entry(federation.homes[1], offer, _amount_changed)
    with federation.node(1) as fab:
        ledger = fab.rebuild()
        assert ledger.balance(fab.lab_id, "JXC") == 0
        assert ledger.balance(offer.author, "JXC") == 0
        assert fab.lab_id in ledger.pending
        assert ledger.applied(fab.lab_id) == accepted.seq - 1


# -- when the store was last checked ----------------------------------------------------


def _write_check(home: Path, **fields: Any) -> None:
    (home / CHECKED).write_text(json.dumps(fields), encoding="utf-8")


def test_status_and_balance_warn_when_the_store_was_never_verified(
        cli: Cli, tmp_path: Path) -> None:
    home = make_federation(tmp_path, ["Farm", "FabLab"], NOW).homes[0].path
    assert cli("status", home=home).stderr == ""  # a new node: its empty store was sound
    (home / CHECKED).unlink()  # (and its ledger, derived and checked, is saved by now)
    warning = ("disco: warning: this node's store has never been verified; "
               "run 'disco verify'\n")
    for args in (["status"], ["balance"], ["balance", "--json"]):
        result = cli(*args, home=home)
        assert result.stderr == warning, args
    assert json.loads(cli("status", "--json", home=home).stdout)["verified"] is None
    _write_check(home, at="not a time", ok=True, problems=0, by="verify")
    assert cli("balance", home=home).stderr == warning  # an unreadable record: never

    cli("verify", home=home)
    assert cli("status", home=home).stderr == ""
    assert cli("balance", home=home).stderr == ""
    verified = json.loads(cli("status", "--json", home=home).stdout)["verified"]
    assert verified["ok"] is True and verified["problems"] == 0
    assert verified["by"] == "verify"
    assert abs(datetime.strptime(verified["at"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC) - datetime.now(UTC)) < timedelta(hours=1)


def test_status_and_balance_warn_when_the_last_check_is_old(cli: Cli, tmp_path: Path) -> None:
    home = make_federation(tmp_path, ["Farm", "FabLab"], NOW).homes[0].path
    cli("status", home=home)  # (its ledger, derived and checked, is saved from now on)
    at = datetime.now(UTC) - timedelta(days=40, hours=1)
    _write_check(home, at=at.strftime("%Y-%m-%dT%H:%M:%SZ"), ok=True, problems=0,
                 by="verify")
    for args in (["status"], ["balance"]):
        assert cli(*args, home=home).stderr == (
            f"disco: warning: the store was last verified 40 days ago ({at:%Y-%m-%d}); "
            "run 'disco verify'\n")
    assert cli("balance", home=home, env={"DISCO_CHECK_MAX_AGE_DAYS": "60"}).stderr == ""
    recent = datetime.now(UTC) - timedelta(days=29)
    _write_check(home, at=recent.strftime("%Y-%m-%dT%H:%M:%SZ"), ok=True, problems=0,
                 by="verify")
    assert cli("balance", home=home).stderr == ""


def test_status_balance_and_serve_warn_when_the_last_check_failed(
        cli: Cli, tmp_path: Path) -> None:
    federation = make_federation(tmp_path, ["Farm", "FabLab"], NOW)
    farm = federation.homes[0]
    offer, _ = _farm_history(federation)
    _edit_entry(farm, offer, _amount_changed)
    assert cli("verify", home=farm.path, check=False).returncode == 1
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    warning = (f"disco: warning: the store failed its last check ('disco verify' on {today}"
               ": 1 problem(s)); run 'disco verify' to see them")
    for args in (["status"], ["balance"]):
        assert cli(*args, home=farm.path).stderr == warning + "\n"
    verified = json.loads(cli("status", "--json", home=farm.path).stdout)["verified"]
    assert verified["ok"] is False and verified["problems"] == 1

    node = NodeProcess(farm.path).wait_ready()
    try:
        assert warning in node.log_lines
    finally:
        node.terminate()

    assert cli("rebuild", home=farm.path, check=False).returncode == 1
    assert "('disco rebuild' on" in cli("status", home=farm.path).stderr


def test_an_audit_of_the_home_counts_as_a_check(cli: Cli, tmp_path: Path) -> None:
    home = make_federation(tmp_path, ["Farm", "FabLab"], NOW).homes[0].path
    cli("status", home=home)  # (its ledger, derived and checked, is saved from now on)
    (home / CHECKED).unlink()
    cli("audit", home=home)
    assert cli("status", home=home).stderr == ""
    assert json.loads(cli("status", "--json", home=home).stdout)["verified"]["by"] == "audit"

