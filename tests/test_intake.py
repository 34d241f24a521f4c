"""Unit tests: the decisions of ingest (federation.intake), with dicts for a store."""

from __future__ import annotations

import pytest

from federation.intake import Intake, Verdict
from protocol.entry import Entry, sign_entry
from protocol.errors import BrokenChainError, WrongAuthorError, WrongFederationError
from protocol.keys import Signer

FID = b"\x0f" * 32
LAB = Signer.from_seed(b"l" * 32)
OTHER = Signer.from_seed(b"o" * 32)
STRANGER = Signer.from_seed(b"s" * 32)
ROSTER = {LAB.public_key, OTHER.public_key}


def feed(signer: Signer, n: int, fid: bytes = FID, note: str = "") -> list[Entry]:
    out: list[Entry] = []
    for seq in range(1, n + 1):
        out.append(sign_entry(signer, federation_id=fid, seq=seq,
                              prev=out[-1].hash if out else None, ts_us=seq,
                              kind="member.added", body={"handle": f"m{seq}{note}",
                                                         "name": "M"}))
    return out


def intake(stored: list[Entry] = (), frozen: dict[bytes, int] | None = None) -> Intake:
    by_seq = {(e.author, e.seq): e for e in stored}
    heads: dict[bytes, tuple[int, bytes | None]] = {}
    for e in stored:
        heads[e.author] = (e.seq, e.hash)
    return Intake(ROSTER, FID, frozen or {}, lambda a: heads.get(a, (0, None)),
                  lambda a, s: by_seq.get((a, s)))


def test_new_entries_that_continue_their_feeds_are_kept_in_order() -> None:
    mine, theirs = feed(LAB, 3), feed(OTHER, 2)
    i = intake(stored=mine[:1])
    verdicts = [i.take(e) for e in [mine[1], theirs[0], mine[2], theirs[1]]]
    assert verdicts == [Verdict.KEEP] * 4
    assert i.kept() == [mine[1], theirs[0], mine[2], theirs[1]] and i.passed_over == 0


def test_entries_held_already_are_passed_over() -> None:
    mine = feed(LAB, 3)
    i = intake(stored=mine[:2])
    assert [i.take(e) for e in mine] == [Verdict.HELD, Verdict.HELD, Verdict.KEEP]
    assert i.kept() == [mine[2]] and i.passed_over == 2


@pytest.mark.parametrize("entry,error,text", [
    (feed(STRANGER, 1)[0], WrongAuthorError, "not a member"),
    (feed(LAB, 1, fid=b"\x01" * 32)[0], WrongFederationError, "another federation"),
    (feed(LAB, 2)[1], BrokenChainError, "does not follow"),
])
def test_what_is_refused(entry: Entry, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        intake().take(entry)


def test_a_link_to_another_history_is_refused() -> None:
    ours, other_history = feed(LAB, 1), feed(LAB, 2, note="x")
    with pytest.raises(BrokenChainError, match="prev"):
        intake(stored=ours).take(other_history[1])


def test_another_entry_at_a_held_seq_is_a_fork_and_freezes_the_feed() -> None:
    ours, theirs = feed(LAB, 3), feed(LAB, 3, note="x")
    i = intake(stored=ours[:1])
    assert i.take(ours[1]) is Verdict.KEEP
    assert i.take(theirs[0]) is Verdict.FORK  # seq 1 differs from the stored one
    assert i.fork == (ours[0], theirs[0])
    assert i.take(ours[2]) is Verdict.FROZEN
    assert i.kept() == []  # seq 2 was kept before the fork at seq 1 was seen
    # Within a batch too: the pair's first entry may be one kept a moment ago.
    j = intake()
    assert j.take(ours[0]) is Verdict.KEEP
    assert j.take(theirs[0]) is Verdict.FORK and j.fork == (ours[0], theirs[0])


def test_a_frozen_feed_passes_over_entries_from_its_fork() -> None:
    mine = feed(LAB, 3)
    i = intake(frozen={LAB.public_key: 2})
    assert [i.take(e) for e in mine] == [Verdict.KEEP, Verdict.FROZEN, Verdict.FROZEN]
    assert i.kept() == [mine[0]] and i.passed_over == 2
