"""Tests of federation.genesis: building, encoding and decoding the genesis document
(canonical msgpack and its JSON text), and every way a document is refused. (The
genesis *file*: tests/test_home.py; ``disco federation create`` and ``join``:
tests/test_cli.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from federation.errors import FederationError, GenesisError
from federation.genesis import (
    MAX_DECIMALS,
    MAX_NAME,
    Genesis,
    Lab,
    create_genesis,
    decode_genesis,
    decode_genesis_json,
    encode_genesis_json,
    genesis_from_json,
)
from protocol import canonical
from protocol.entry import sha256

FARM, FAB = Lab(b"\x01" * 32, "Freedom Farms"), Lab(b"\x02" * 32, "Fab Lab")
NOW = 1_700_000_000_000_000


def make(**changes: Any) -> Genesis:
    args: dict[str, Any] = {"labs": [FARM, FAB], "units": {"JXC": 2, "HRS": 0},
                            "credit_limits": {"JXC": 50_000}, "now_us": NOW}
    name = changes.pop("name", "Cooperation Jackson")
    args.update(changes)
    return create_genesis(name, **args)


@pytest.fixture
def genesis() -> Genesis:
    return make()


def document(genesis: Genesis, **changes: Any) -> bytes:
    return canonical.encode({**genesis.document(), **changes})


# -- building and round trips ------------------------------------------------------


def test_the_federation_id_is_the_hash_of_the_canonical_document(genesis: Genesis) -> None:
    assert genesis.federation_id == sha256(genesis.encode())
    assert genesis.encode() == canonical.encode(genesis.document())
    assert make().federation_id == genesis.federation_id
    assert make(now_us=NOW + 1).federation_id != genesis.federation_id


def test_msgpack_round_trip(genesis: Genesis) -> None:
    again = decode_genesis(genesis.encode())
    assert again == genesis and again.federation_id == genesis.federation_id


def test_json_text_round_trip(genesis: Genesis) -> None:
    text = encode_genesis_json(genesis)
    assert text.endswith("}\n") and json.loads(text)["federation_id"] == genesis.federation_id.hex()
    assert decode_genesis_json(text) == genesis
    assert decode_genesis_json(text.encode()) == genesis
    without_id = {k: v for k, v in genesis.to_json().items() if k != "federation_id"}
    assert genesis_from_json(without_id) == genesis  # the id is checked only when stated


def test_roster_and_names(genesis: Genesis) -> None:
    assert genesis.roster == {FARM.id: FARM.name, FAB.id: FAB.name}


def test_genesis_errors_are_federation_errors() -> None:
    assert issubclass(GenesisError, FederationError)


# -- the rules of a genesis (create_genesis and every decoder) --------------------------

RULES: dict[str, tuple[dict[str, Any], str]] = {
    "empty name": ({"name": "  "}, "federation name must be 1 to"),
    "long name": ({"name": "x" * (MAX_NAME + 1)}, "federation name must be 1 to"),
    "no unit": ({"units": {}, "credit_limits": {}}, "at least one unit"),
    "lower-case unit": ({"units": {"jxc": 2}, "credit_limits": {}}, "capital letters"),
    "one-letter unit": ({"units": {"J": 2}, "credit_limits": {}}, "capital letters"),
    "too many decimals": ({"units": {"JXC": MAX_DECIMALS + 1}}, "decimals must be 0 to"),
    "negative decimals": ({"units": {"JXC": -1}}, "decimals must be 0 to"),
    "decimals not an int": ({"units": {"JXC": True}}, "decimals must be 0 to"),
    "limit of no unit": ({"credit_limits": {"ABC": 5}}, "which is not a unit"),
    "negative limit": ({"credit_limits": {"JXC": -1}}, "must be a whole amount >= 0"),
    "limit not an int": ({"credit_limits": {"JXC": 1.5}}, "must be a whole amount >= 0"),
    "no LAB": ({"labs": []}, "at least one founding LAB"),
    "short LAB id": ({"labs": [Lab(b"\x01" * 31, "Farm")]}, "want 64 hex digits"),
    "LAB named twice": ({"labs": [FARM, Lab(FARM.id, "Again")]}, "is named twice"),
    "LAB without a name": ({"labs": [Lab(FARM.id, " ")]}, "name must be 1 to"),
}


@pytest.mark.parametrize("name", list(RULES))
def test_create_refuses(name: str) -> None:
    changes, message = RULES[name]
    with pytest.raises(GenesisError, match=message):
        make(**changes)


@pytest.mark.parametrize("name", [n for n in RULES if "not an int" not in n])
def test_decoders_refuse_what_create_refuses(name: str, genesis: Genesis) -> None:
    """The same rules hold for a document read back, in msgpack or in JSON."""
    changes, message = RULES[name]
    doc = genesis.document()
    if "name" in changes:
        doc["name"] = changes["name"]
    if "units" in changes:
        doc["units"] = changes["units"]
    if "credit_limits" in changes or "units" in changes:
        doc["rules"] = {"credit_limit": changes.get("credit_limits", {})}
    if "labs" in changes:
        doc["labs"] = [{"id": lab.id, "name": lab.name} for lab in changes["labs"]]
    with pytest.raises(GenesisError, match=message):
        decode_genesis(canonical.encode(doc))
    as_json = {**doc, "labs": [{"id": lab["id"].hex(), "name": lab["name"]}
                               for lab in doc["labs"]]}
    with pytest.raises(GenesisError, match=message):
        decode_genesis_json(json.dumps(as_json))


# -- decoding: every rejection -------------------------------------------------------


@pytest.mark.parametrize(("data", "message"), [
    (b"", "genesis"),
    (b"\xc1", "genesis"),
    (b"\x82\xa1b\x01\xa1a\x01", "canonical"),  # keys out of order
    (canonical.encode([1, 2]), "want a map"),
    (canonical.encode({"version": 2}), "genesis version 2, want 1"),
    (canonical.encode({"version": 1}), "missing or misshaping a field"),
])
def test_decode_genesis_refuses_bytes(data: bytes, message: str) -> None:
    with pytest.raises(GenesisError, match=message):
        decode_genesis(data)


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": 7}, "name must be text"),
    ({"created_us": "now"}, "created_us an integer"),
    ({"created_us": True}, "created_us an integer"),
    ({"labs": [{"id": "01" * 32, "name": "Farm"}]}, "each LAB needs an id and a text name"),
    ({"labs": [{"id": b"\x01" * 32, "name": 1}]}, "each LAB needs an id and a text name"),
    ({"labs": [{"id": b"\x01" * 32}]}, "missing or misshaping a field"),
    ({"labs": 5}, "missing or misshaping a field"),
    ({"units": [1]}, "missing or misshaping a field"),
    ({"rules": {}}, "missing or misshaping a field"),
])
def test_decode_genesis_refuses_a_misshapen_document(genesis: Genesis,
                                                     changes: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(GenesisError, match=message):
        decode_genesis(document(genesis, **changes))


@pytest.mark.parametrize(("text", "message"), [
    (b"\xff\xfe{", "not UTF-8"),
    ("{\n  \"version\": 1,\n  oops", "invalid JSON at line 3"),
    ("", "invalid JSON at line 1"),
    ("[1, 2]", "want a JSON object"),
    ("\"text\"", "want a JSON object"),
    ("{\"version\": 1}", "missing or misshaping a field"),
])
def test_decode_genesis_json_refuses_text(text: str | bytes, message: str) -> None:
    with pytest.raises(GenesisError, match=message):
        decode_genesis_json(text)


def test_an_edited_genesis_file_is_refused(genesis: Genesis) -> None:
    doc = genesis.to_json()
    doc["name"] = "Edited"
    with pytest.raises(GenesisError, match="damaged or edited"):
        decode_genesis_json(json.dumps(doc))
    doc = genesis.to_json()
    doc["federation_id"] = "00" * 32
    with pytest.raises(GenesisError, match="damaged or edited"):
        decode_genesis_json(json.dumps(doc))


def test_a_lab_id_that_is_not_hex_is_refused(genesis: Genesis) -> None:
    doc = genesis.to_json()
    doc["labs"][0]["id"] = "zz" * 32
    with pytest.raises(GenesisError, match="missing or misshaping a field"):
        decode_genesis_json(json.dumps(doc))
