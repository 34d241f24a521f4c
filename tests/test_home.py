"""Tests of node.home's files: the LAB key file and the genesis file (the bytes inside
them are protocol.keys' and federation.genesis', tested in test_keys and test_genesis).
The folder itself, the key's mode checks and the last check: test_node_files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from federation.errors import GenesisError
from federation.genesis import Genesis, Lab, create_genesis, encode_genesis_json
from node.home import (
    load_genesis_file,
    load_private_key,
    save_private_key,
    write_genesis_file,
)
from protocol.errors import KeyFileError, PassphraseError
from protocol.keys import Signer, is_encrypted_pem, verify_signature

MESSAGE = b"some header bytes"


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def genesis() -> Genesis:
    return create_genesis("Jackson", labs=[Lab(bytes(range(32)), "Farm")], units={"JXC": 2},
                          credit_limits={"JXC": 10_000}, now_us=1_700_000_000_000_000)


# -- the key file ------------------------------------------------------------------


def test_key_file_round_trip_mode_0600(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "lab.key"
    save_private_key(path, signer)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(path)
    assert verify_signature(signer.public_key, loaded.sign(MESSAGE), MESSAGE)


def test_key_file_mode_is_0600_whatever_the_umask(tmp_path: Path, signer: Signer) -> None:
    old = os.umask(0)
    try:
        save_private_key(tmp_path / "lab.key", signer)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "lab.key").stat().st_mode) == 0o600


def test_encrypted_key_file(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "lab.key"
    save_private_key(path, signer, b"correct horse")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert is_encrypted_pem(path.read_bytes())
    assert load_private_key(path, b"correct horse").public_key == signer.public_key
    with pytest.raises(PassphraseError, match=r"lab\.key: wrong passphrase"):
        load_private_key(path, b"battery staple")
    with pytest.raises(PassphraseError, match=r"lab\.key: the key is encrypted"):
        load_private_key(path)


def test_a_damaged_key_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "lab.key"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError, match=r"lab\.key: damaged key file") as info:
        load_private_key(path)
    assert not isinstance(info.value, PassphraseError)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"nope\.key: no key file"):
        load_private_key(tmp_path / "nope.key")


def test_directory_instead_of_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read key file") as info:
        load_private_key(tmp_path)
    assert not isinstance(info.value, PassphraseError)


def test_key_file_is_never_overwritten(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "lab.key"
    path.write_bytes(b"precious")
    with pytest.raises(KeyFileError, match="not overwriting"):
        save_private_key(path, signer)
    assert path.read_bytes() == b"precious"
    other = tmp_path / "other.key"
    save_private_key(other, signer)
    before = other.read_bytes()
    with pytest.raises(KeyFileError):
        save_private_key(other, Signer.generate(), b"pw")
    assert other.read_bytes() == before


def test_key_file_into_a_missing_directory(tmp_path: Path, signer: Signer) -> None:
    with pytest.raises(KeyFileError, match="cannot create key file"):
        save_private_key(tmp_path / "no" / "such" / "lab.key", signer)


# -- the genesis file --------------------------------------------------------------


def test_genesis_file_round_trip(tmp_path: Path, genesis: Genesis) -> None:
    path = tmp_path / "genesis.json"
    write_genesis_file(path, genesis)
    assert path.read_text(encoding="utf-8") == encode_genesis_json(genesis)
    assert load_genesis_file(path) == genesis


def test_genesis_file_is_never_overwritten(tmp_path: Path, genesis: Genesis) -> None:
    path = tmp_path / "genesis.json"
    path.write_text("precious", encoding="utf-8")
    with pytest.raises(GenesisError, match="already exists; not overwriting it"):
        write_genesis_file(path, genesis)
    assert path.read_text(encoding="utf-8") == "precious"
    with pytest.raises(GenesisError, match="cannot write"):
        write_genesis_file(tmp_path / "no" / "genesis.json", genesis)


def test_genesis_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(GenesisError, match=r"nope\.json: no such genesis file"):
        load_genesis_file(tmp_path / "nope.json")
    with pytest.raises(GenesisError, match="cannot read genesis file"):
        load_genesis_file(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  oops", encoding="utf-8")
    with pytest.raises(GenesisError, match=r"bad\.json: not a genesis file \(invalid JSON "
                                           r"at line 2\)"):
        load_genesis_file(bad)
