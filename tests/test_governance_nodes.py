"""The federation over time with real ``disco serve`` processes: a LAB admitted by
vote joins through one peer and trades; a rotated key no longer speaks for its LAB."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.audit import audit_bundle
from federation.bundle import BundleWriter
from node.bundle import export_bundle
from node.checkpoints import CheckpointBook
from node.home import Home, save_private_key
from node.lab import LabNode
from protocol.entry import sign_entry
from protocol.errors import BadSignatureError
from protocol.keys import Signer
from protocol.sync import decode_fork_proof
from tests.conftest import Cli
from tests.nodes import (
        Nodes,
    federation,
    node_group,
    now_us,
    set_peers,
    signed_post,
    stream,
    wait_until,
)

FAST = {"DISCO_GOSSIP_INTERVAL": "0.5"}


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with node_group(FAST) as group:
        yield group


def author(home: Path, kind: str, body: dict[str, object]) -> str:
    """Author one entry in ``home`` (while its node runs, as the CLI does)."""
    h = Home.open(home)
    with LabNode.open(h, h.signer()) as node:
        return str(node.author(kind, body, now_us()).ref)


def digests(urls: list[str], cli: Cli, homes: list[Path]) -> set[str]:
    """The state digests the nodes of ``homes`` show (``disco status``)."""
    return {json.loads(cli("status", "--json", home=h).stdout)["state_digest"] for h in homes}


def test_three_founders_admit_a_fourth_lab_that_joins_records_and_trades(
        tmp_path: Path, nodes: Nodes, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab", "LandTrust"])
    farm, fablab, land = (h.path for h in fed.homes)
    procs = nodes.start(farm, fablab, land)
    urls = [p.url for p in procs]
    for i, home in enumerate((farm, fablab, land)):
        set_peers(home, [u for j, u in enumerate(urls) if j != i])
    new = json.loads(cli("init", "--name", "Nueva", "--json", home=tmp_path / "nueva").stdout)
    nueva, new_id = tmp_path / "nueva", new["lab_id"]

    # Before any vote, Nueva cannot join (the federation holds no admission of it).
    refused = cli("join", str(fed.genesis_file), "--peer", urls[0], home=nueva, check=False)
    assert refused.returncode == 1 and "not a member of this federation" in refused.stderr

    ref = author(farm, "proposal.made", {"action": "admit", "lab": bytes.fromhex(new_id),
                                         "name": "Nueva"})
    wait_until(lambda: procs[1].frontier().get(fed.homes[0].lab_id.hex(), 0) >= 2,
               what="the proposal at FabLab")
    with LabNode.open(Home.open(fablab)) as node:
        proposal = node.resolve_ref(ref)
    author(fablab, "proposal.voted", {"proposal": proposal.as_list(), "vote": "yes"})
    wait_until(lambda: procs[0].frontier().get(fed.homes[1].lab_id.hex(), 0) >= 2,
               what="the vote at Farm")

    joined = cli("join", str(fed.genesis_file), "--peer", urls[0], "--json", home=nueva)
    assert json.loads(joined.stdout)["name"] == "Nueva"
    cli("member", "add", "ana", "--name", "Ana", home=nueva)
    cli("record", "--member", "ana", "--stream", "care", "--hours", "2", home=nueva)
    offer = json.loads(cli("transfer", "offer", "--to", "Farm", "--amount", "12.50",
                           "--unit", "JXC", "--json", home=nueva).stdout)
    p4 = nodes.start_one(nueva)
    set_peers(nueva, urls)
    wait_until(lambda: procs[0].frontier().get(new_id, 0) >= 4, what="Nueva's feed at Farm")
    cli("transfer", "accept", offer["ref"], home=farm)
    homes = [farm, fablab, land, nueva]
    wait_until(lambda: len(digests([*urls, p4.url], cli, homes)) == 1, timeout=60,
               what="four equal digests")
    status = json.loads(cli("status", "--json", home=land).stdout)
    roster = {r["lab"]: r for r in status["roster"]}
    assert roster[new_id]["name"] == "Nueva" and roster[new_id]["state"] == "member"
    assert roster[new_id]["key"] == new_id
    balance = json.loads(cli("balance", "--json", home=fablab).stdout)
    assert json.dumps(balance).count("1250") >= 2  # Farm +12.50, Nueva -12.50

    out = tmp_path / "export.bundle"
    cli("export", "--out", str(out), home=land)
    audit = json.loads(cli("audit", str(out), "--json", home=land).stdout)
    assert audit["ok"], audit
    assert audit["state_digest"] == status["state_digest"]
    [admitted] = [r for r in audit["roster"] if r["lab"] == new_id]
    assert admitted["name"] == "Nueva" and admitted["admitted"] == ref
    [admission] = audit["proposals"]
    assert (admission["action"], admission["state"], admission["needed"]) == ("admit", "passed", 2)


def test_a_rotated_key_no_longer_speaks_for_its_lab(tmp_path: Path, nodes: Nodes,
                                                   cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm, fablab = (h.path for h in fed.homes)
    old = Home.open(farm).signer()
    new = Signer.generate()
    author(farm, "key.rotated", {"key": new.public_key})
    _, p_fab = nodes.start(farm, fablab)
    set_peers(farm, [p_fab.url])
    wait_until(lambda: p_fab.frontier().get(old.public_key.hex(), 0) >= 2,
               what="the rotation at FabLab")
    # A request signed with the old key: refused (403), the new key: heard.
    old_try = signed_post(p_fab.url, "/v1/sync/frontier", b"", old, lab=old.public_key)
    assert old_try.status == 403 and b"no longer" in old_try.body
    new_try = signed_post(p_fab.url, "/v1/sync/frontier", b"", new, lab=old.public_key)
    assert new_try.status not in (401, 403), new_try.body


def test_a_key_rotated_while_the_node_serves_takes_over_at_once(
        tmp_path: Path, nodes: Nodes, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm, fablab = (h.path for h in fed.homes)
    p_farm, p_fab = nodes.start(farm, fablab)
    set_peers(farm, [p_fab.url])
    set_peers(fablab, [p_farm.url])
    rotated = cli.json("key", "rotate", home=farm)
    wait_until(lambda: any("now signing with" in line for line in p_farm.log_lines),
               what="the serving node took the new key")
    cli("member", "add", "ana", "--name", "Ana", home=farm)  # signed with the new key
    lab = fed.homes[0].lab_id.hex()
    wait_until(lambda: p_fab.frontier().get(lab, 0) == 3, what="both entries at FabLab")
    roster = {r["lab"]: r for r in p_fab.status().get("roster", [])} or {
        r["lab"]: r for r in cli.json("status", home=fablab)["roster"]}
    assert roster[lab]["key"] == rotated["key"]
    assert not any("401" in line or "403" in line for line in p_fab.log_lines), p_fab.log


def forged_after_rotation(farm: Path, old: Signer) -> bytes:
    """An entry at the head of Farm's feed signed with its rotated-away key."""
    h = Home.open(farm)
    with LabNode.open(h) as node:
        seq, head = node.store.head(node.lab_id)
        fid = node.require_genesis().federation_id
    return sign_entry(old, federation_id=fid, seq=seq + 1, prev=head, ts_us=now_us(),
                      kind="member.added", body={"handle": "eve", "name": "Eve"}).raw


def test_an_entry_signed_with_the_rotated_away_key_is_refused_everywhere(
        tmp_path: Path, nodes: Nodes, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab", "LandTrust"])
    farm, fablab, land = (h.path for h in fed.homes)
    old = Home.open(farm).signer()
    author(farm, "key.rotated", {"key": Signer.generate().public_key})
    procs = nodes.start(farm, fablab, land)
    for i, home in enumerate((farm, fablab, land)):
        set_peers(home, [p.url for j, p in enumerate(procs) if j != i])
    lab = old.public_key.hex()
    wait_until(lambda: all(p.frontier().get(lab, 0) >= 2 for p in procs), what="the rotation")
    forged = forged_after_rotation(farm, old)
    for p in procs[1:]:  # pushed by a member, as a relay would
        reply = signed_post(p.url, "/v1/sync/push", stream([forged]),
                            Home.open(land).signer(), lab=fed.homes[2].lab_id)
        assert reply.status == 400 and b"signature does not verify" in reply.body, reply.body
        assert p.frontier()[lab] == 2
    # The offline audit: a bundle with the forged entry appended to Farm's feed.
    out = tmp_path / "export.bundle"
    cli("export", "--out", str(out), home=fablab)
    forged_bundle = tmp_path / "forged.bundle"
    with open(forged_bundle, "wb") as f:
        writer = BundleWriter(f, fed.genesis.federation_id, now_us())
        writer.genesis(fed.genesis.encode())
        with LabNode.open(Home.open(fablab)) as node:
            for author_id in node.feeds():
                for raw in [r for _, r in node.store.read_raw(author_id)]:
                    writer.entry(raw)
        writer.entry(forged)
        writer.close()
    clean = json.loads(cli("audit", str(out), "--json", home=fablab).stdout)
    assert clean["ok"], clean
    audit = cli("audit", str(forged_bundle), "--json", home=fablab, check=False)
    report = json.loads(audit.stdout)
    assert audit.returncode == 1 and not report["ok"]
    assert [(v["author"], v["seq"], v["code"]) for v in report["violations"]] == [
        (lab, 3, "bad-signature")]


def test_a_lost_key_is_recovered_by_vote(tmp_path: Path, nodes: Nodes, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab", "LandTrust"])
    farm, fablab, land = (h.path for h in fed.homes)
    lost = fed.homes[2].lab_id
    new = Signer.generate()
    (land / "lab.key").unlink()  # lost
    save_private_key(land / "lab.key", new)
    ref = author(farm, "proposal.made", {"action": "recover", "lab": lost, "key": new.public_key,
                                         "from_seq": 2})
    with LabNode.open(Home.open(farm)) as node:
        farm_feed = [r for _, r in node.store.read_raw(fed.homes[0].lab_id)]
    with LabNode.open(Home.open(fablab), Home.open(fablab).signer()) as node:
        node.ingest(farm_feed)
        node.author("proposal.voted", {"proposal": node.resolve_ref(ref).as_list(),
                                       "vote": "yes"}, now_us())
    procs = nodes.start(farm, fablab, land)
    for i, home in enumerate((farm, fablab, land)):
        set_peers(home, [p.url for j, p in enumerate(procs) if j != i])
    wait_until(lambda: procs[2].frontier().get(fed.homes[1].lab_id.hex(), 0) >= 2,
               what="the vote at LandTrust")
    cli("member", "add", "ana", "--name", "Ana", home=land)  # signed with the new key
    homes = [farm, fablab, land]
    wait_until(lambda: len(digests([], cli, homes)) == 1 and all(
        p.frontier().get(lost.hex(), 0) >= 2 for p in procs), timeout=60,
        what="the federation converged")
    status = json.loads(cli("status", "--json", home=farm).stdout)
    assert {r["lab"]: r["key"] for r in status["roster"]}[lost.hex()] == new.public_key.hex()
    out = tmp_path / "export.bundle"
    cli("export", "--out", str(out), home=farm)
    audit = json.loads(cli("audit", str(out), "--json", home=farm).stdout)
    assert audit["ok"], audit


def test_a_hand_made_fork_is_repaired_by_vote(tmp_path: Path, nodes: Nodes, cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab", "LandTrust"])
    farm, fablab, land = (h.path for h in fed.homes)
    land_id = fed.homes[2].lab_id
    copy = tmp_path / "landtrust-copy"
    shutil.copytree(land, copy)
    cli("member", "add", "ana", "--name", "Ana", home=land)
    cli("member", "add", "bo", "--name", "Bo", home=copy)  # the same seq: a fork
    procs = nodes.start(farm, fablab, land)
    for i, home in enumerate((farm, fablab, land)):
        set_peers(home, [p.url for j, p in enumerate(procs) if j != i])
    # The copy pushes its branch to Farm once: Farm now holds the fork proof.
    sync = cli("sync", procs[0].url, home=copy, check=False)
    assert sync.returncode in (0, 1), sync.stderr
    wait_until(lambda: all(p.status()["forks"] for p in procs), what="the fork everywhere")
    refused = cli("member", "add", "cy", "--name", "Cy", home=land, check=False)
    assert refused.returncode == 1 and "frozen" in refused.stderr

    new = Signer.generate()
    with LabNode.open(Home.open(farm)) as node:
        keep = node.store.get(land_id, 1)
        assert keep is not None
    ref = author(farm, "proposal.made", {"action": "repair", "lab": land_id,
                                         "keep": keep.ref.as_list(), "key": new.public_key})
    wait_until(lambda: procs[1].frontier().get(fed.homes[0].lab_id.hex(), 0) >= 2,
               what="the proposal at FabLab")
    with LabNode.open(Home.open(fablab), Home.open(fablab).signer()) as node:
        node.author("proposal.voted", {"proposal": node.resolve_ref(ref).as_list(),
                                       "vote": "yes"}, now_us())
    # LandTrust installs the new key and restarts its node, which learns the repair.
    (land / "lab.key").unlink()
    save_private_key(land / "lab.key", new)
    procs[2].stop()
    procs[2] = nodes.start_one(land)
    set_peers(land, [p.url for p in procs[:2]])
    for i, home in enumerate((farm, fablab)):
        set_peers(home, [p.url for j, p in enumerate(procs) if j != i])
    wait_until(lambda: not cli("member", "add", "dee", "--name", "Dee", home=land,
                               check=False).returncode, what="LandTrust records again")
    homes = [farm, fablab, land]
    wait_until(lambda: len(digests([], cli, homes)) == 1 and all(
        p.frontier().get(land_id.hex(), 0) == 2 for p in procs), timeout=60,
        what="the federation converged on the repaired feed")
    for home in homes:
        names = json.loads(cli("log", "--json", home=home).stdout)
        assert "Dee" in json.dumps(names) and "Bo" not in json.dumps(names)
        assert [f["repaired"] for f in cli.json("status", home=home)["forks"]] == [True]
        assert "repaired by vote" in cli("status", home=home).stdout
    out = tmp_path / "export.bundle"
    cli("export", "--out", str(out), home=fablab)
    audit = json.loads(cli("audit", str(out), "--json", home=fablab).stdout)
    assert audit["ok"], audit
    assert [r["author"] for r in audit["repaired"]] == [land_id.hex()]
    # The copy, which never learned of the repair, speaks with the old key: the
    # federation no longer hears it.
    late = cli("sync", procs[0].url, home=copy, check=False)
    assert late.returncode == 1 and "no longer uses" in late.stdout + late.stderr
    assert procs[0].frontier()[land_id.hex()] == 2


def test_a_removed_labs_later_entries_count_nowhere(tmp_path: Path, nodes: Nodes,
                                                    cli: Cli) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab", "LandTrust"])
    farm, fablab, land = (h.path for h in fed.homes)
    land_id = fed.homes[2].lab_id.hex()
    offer = cli.json("transfer", "offer", "--to", "LandTrust", "--amount", "5.00",
                     "--unit", "JXC", home=farm)
    cli("transfer", "offer", "--to", "FabLab", "--amount", "2.00", "--unit", "JXC", home=land)
    procs = nodes.start(farm, fablab, land)
    for i, home in enumerate((farm, fablab, land)):
        set_peers(home, [p.url for j, p in enumerate(procs) if j != i])
    wait_until(lambda: all(p.frontier().get(land_id, 0) == 2 for p in procs[:2]),
               what="LandTrust's offer everywhere")
    procs[2].stop()  # LandTrust is away while the others vote
    ref = author(farm, "proposal.made", {"action": "remove", "lab": bytes.fromhex(land_id),
                                         "last_seq": 2})
    wait_until(lambda: procs[1].frontier().get(fed.homes[0].lab_id.hex(), 0) >= 3,
               what="the proposal at FabLab")
    with LabNode.open(Home.open(fablab), Home.open(fablab).signer()) as node:
        node.author("proposal.voted", {"proposal": node.resolve_ref(ref).as_list(),
                                       "vote": "yes"}, now_us())
    # Not knowing yet, LandTrust records on, and accepts Farm's offer.
    cli("member", "add", "zed", "--name", "Zed", home=land)
    cli("transfer", "accept", offer["ref"], home=land)
    procs[2] = nodes.start_one(land)
    set_peers(land, [p.url for p in procs[:2]])
    for i, home in enumerate((farm, fablab)):
        set_peers(home, [p.url for j, p in enumerate(procs) if j != i])
    homes = [farm, fablab, land]
    wait_until(lambda: all(p.frontier().get(land_id, 0) == 4 for p in procs) and len(
        digests([], cli, homes)) == 1, timeout=60, what="every node holds LandTrust's tail")
    # Its entries after the cut count nowhere: Farm's offer is still unanswered, and
    # Farm reclaims it, the removal standing as the decline.
    cli("transfer", "reclaim", offer["ref"], home=farm)
    wait_until(lambda: len(digests([], cli, homes)) == 1 and all(
        p.frontier().get(fed.homes[0].lab_id.hex(), 0) >= 4 for p in procs), timeout=60,
        what="the reclaim everywhere")
    for home in homes:
        status = cli.json("status", home=home)
        assert {r["lab"]: r["state"] for r in status["roster"]}[land_id] == "removed"
        assert "(removed" in cli("status", home=home).stdout
        assert status["invalid"] == 2
        out = tmp_path / f"{home.name}.bundle"
        cli("export", "--out", str(out), home=home)
        audit = json.loads(cli("audit", str(out), "--json", home=home, check=False).stdout)
        assert [(v["author"], v["seq"], v["code"]) for v in audit["violations"]] == [
            (land_id, 3, "removed"), (land_id, 4, "removed")]
        assert audit["state_digest"] == status["state_digest"]
        balances = cli.json("balance", home=home)
        assert sum(amount for lab in balances["balances"].values()
                   for amount in lab.values()) + sum(
            t["amount"] for t in cli.json("transfers", home=home)["transfers"]
            if t["state"] in ("offered", "declined")) == 0
        assert balances["balances"][fed.homes[0].lab_id.hex()]["JXC"] == 0
        assert balances["balances"][land_id]["JXC"] == -200  # its balance stays


def test_a_fork_in_a_rotated_feed_is_proven_under_the_key_in_force(tmp_path: Path) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm, fablab = fed.homes
    new = Signer.generate()
    author(farm.path, "key.rotated", {"key": new.public_key})
    with LabNode.open(farm) as node:
        feed = [r for _, r in node.store.read_raw(farm.lab_id)]
        seq, head = node.store.head(farm.lab_id)
    twins = [sign_entry(new, federation_id=fed.genesis.federation_id, seq=seq + 1, prev=head,
                        ts_us=now_us(), kind="member.added", body={"handle": h, "name": h},
                        author=farm.lab_id).raw for h in ("ann", "bob")]
    with LabNode.open(fablab, fablab.signer()) as node:
        assert node.ingest([*feed, twins[0]]).stored == 3
        [proof] = node.ingest([twins[1]]).forks
        assert proof.author == farm.lab_id and proof.seq == 3
        assert decode_fork_proof(proof.encode(), node.key_at).seq == 3
        with pytest.raises(BadSignatureError):
            decode_fork_proof(proof.encode())  # (under the LAB id: not its key now)
        assert node.store.fork_proofs()[farm.lab_id].seq == 3


def test_a_ledger_follows_entries_set_aside_by_another_process(tmp_path: Path) -> None:
    """A repair applied by one process (a CLI command) sets entries aside; the
    running node's ledger, which had settled them, is recomputed when it catches up."""
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0]
    author(farm.path, "member.added", {"handle": "ana", "name": "Ana"})
    with LabNode.open(farm) as serving, LabNode.open(farm) as other:
        assert serving.ledger().applied(farm.lab_id) == 2
        other.store.set_aside(farm.lab_id, 2, "test")
        assert serving.ledger().applied(farm.lab_id) == 1
        assert serving.ledger().digest() == other.rebuild().digest()


def test_a_recovery_sets_aside_what_the_replaced_key_signed_from_its_seq(
        tmp_path: Path) -> None:
    """A thief's entry stored before the theft was known is set aside once the
    recovery passes, and the LAB's entry under its new key takes its place."""
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm, fablab = fed.homes
    stolen, new = farm.signer(), Signer.generate()
    with LabNode.open(farm) as node:
        [(_, first)] = list(node.store.read_raw(farm.lab_id))
        _, head = node.store.head(farm.lab_id)

    def second(signer: Signer, handle: str) -> bytes:
        return sign_entry(signer, federation_id=fed.genesis.federation_id, seq=2, prev=head,
                          ts_us=now_us(), kind="member.added",
                          body={"handle": handle, "name": handle}, author=farm.lab_id).raw

    with LabNode.open(fablab, fablab.signer()) as node:
        node.ingest([first, second(stolen, "thief")])
        node.author("proposal.made", {"action": "recover", "lab": farm.lab_id,
                                      "key": new.public_key, "from_seq": 2}, now_us())
        assert node.ingest([second(new, "honest")]).stored == 1
        members = node.ledger().labs[farm.lab_id].members
        assert "honest" in members and "thief" not in members
        assert not node.verify()


def test_checkpoints_survive_two_key_rotations(tmp_path: Path) -> None:
    fed = federation(tmp_path, ["Farm", "FabLab"])
    farm = fed.homes[0]
    k1, k2, k3 = farm.signer(), Signer.generate(), Signer.generate()
    with LabNode.open(farm, k1) as node:
        node.author("key.rotated", {"key": k2.public_key}, now_us())
    with LabNode.open(farm, k2) as node:
        node.author("member.added", {"handle": "a", "name": "A"}, now_us())
        CheckpointBook(node.store, fed.genesis.federation_id, node.keys_of).sign_own(
            k2, farm.lab_id)  # under the middle key
        node.author("key.rotated", {"key": k3.public_key}, now_us())
    with LabNode.open(farm, k3) as node:
        assert node.signs_checkpoints()
        book = CheckpointBook(node.store, fed.genesis.federation_id, node.keys_of)
        book.sign_own(k3, farm.lab_id)
        out = io.BytesIO()
        export_bundle(node, out, now_us())
    report = audit_bundle(io.BytesIO(out.getvalue()))
    assert report.ok, report.violations
