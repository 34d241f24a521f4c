"""Tests of protocol.keys: generate, save, load, sign and verify Ed25519 keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from protocol.errors import KeyFileError, LocalProtocolError, PassphraseError
from protocol.keys import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    Signer,
    is_encrypted_pem,
    load_private_key,
    save_private_key,
    verify_signature,
)

MESSAGE = b"disco-ledger/entry/v1\x00some header bytes"
SEED = bytes(range(32))


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


def pem_of(key: PrivateKeyTypes, passphrase: bytes | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


# -- generate, save, load ----------------------------------------------------


def test_generate_gives_distinct_raw_keys() -> None:
    a, b = Signer.generate(), Signer.generate()
    assert len(a.public_key) == PUBLIC_KEY_SIZE == 32
    assert a.public_key != b.public_key


def test_from_seed_is_deterministic_and_checks_length() -> None:
    assert Signer.from_seed(SEED).public_key == Signer.from_seed(SEED).public_key
    assert Signer.from_seed(SEED).public_key == bytes(nacl.signing.SigningKey(SEED).verify_key)
    for bad in (b"", SEED[:31], SEED + b"\x00"):
        with pytest.raises(LocalProtocolError):
            Signer.from_seed(bad)


def test_save_load_round_trip(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "lab.key"
    save_private_key(path, signer)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert not is_encrypted_pem(path.read_bytes())
    loaded = load_private_key(path)
    assert loaded.public_key == signer.public_key
    assert verify_signature(signer.public_key, loaded.sign(MESSAGE), MESSAGE)


def test_mode_is_0600_whatever_the_umask(tmp_path: Path, signer: Signer) -> None:
    old = os.umask(0)
    try:
        save_private_key(tmp_path / "lab.key", signer)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "lab.key").stat().st_mode) == 0o600


def test_unencrypted_key_loads_even_when_a_passphrase_is_given(
    tmp_path: Path, signer: Signer
) -> None:
    path = tmp_path / "lab.key"
    save_private_key(path, signer)
    assert load_private_key(path, b"unused").public_key == signer.public_key


def test_encrypted_round_trip(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "lab.key"
    save_private_key(path, signer, b"correct horse")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert is_encrypted_pem(data)
    assert signer.to_pem() not in data
    assert load_private_key(path, b"correct horse").public_key == signer.public_key


def test_wrong_passphrase(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "lab.key"
    save_private_key(path, signer, b"correct horse")
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        load_private_key(path, b"battery staple")


@pytest.mark.parametrize("missing", [None, b""])
def test_missing_passphrase(tmp_path: Path, signer: Signer, missing: bytes | None) -> None:
    path = tmp_path / "lab.key"
    save_private_key(path, signer, b"correct horse")
    with pytest.raises(PassphraseError, match="passphrase is needed"):
        load_private_key(path, missing)


def test_empty_passphrase_saves_unencrypted(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "lab.key"
    save_private_key(path, signer, b"")
    assert not is_encrypted_pem(path.read_bytes())
    assert load_private_key(path).public_key == signer.public_key


# -- damaged, missing, foreign ---------------------------------------------


def only_key_file_error(path: Path, passphrase: bytes | None = None) -> KeyFileError:
    """Load ``path`` expecting a KeyFileError that is not about the passphrase."""
    with pytest.raises(KeyFileError) as info:
        load_private_key(path, passphrase)
    assert not isinstance(info.value, PassphraseError)
    return info.value


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(os.urandom(200), id="random"),
        pytest.param(b"\x00\xff" * 50, id="garbage"),
        pytest.param(
            b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
            id="bad-base64",
        ),
    ],
)
def test_garbage_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "lab.key"
    path.write_bytes(content)
    only_key_file_error(path)


def test_truncated_pem(tmp_path: Path, signer: Signer) -> None:
    pem = signer.to_pem()
    path = tmp_path / "lab.key"
    for cut in (len(pem) // 2, len(pem) - 30, 40):
        path.write_bytes(pem[:cut])
        only_key_file_error(path)


def test_damaged_body_of_pem(tmp_path: Path, signer: Signer) -> None:
    lines = signer.to_pem().splitlines(keepends=True)
    path = tmp_path / "lab.key"
    path.write_bytes(lines[0] + b"AAAA" + lines[1][4:] + b"".join(lines[2:]))
    only_key_file_error(path)


def test_truncated_encrypted_pem(tmp_path: Path, signer: Signer) -> None:
    pem = signer.to_pem(b"pw")
    path = tmp_path / "lab.key"
    path.write_bytes(pem[: len(pem) // 2])
    with pytest.raises(KeyFileError):
        load_private_key(path, b"pw")


def test_missing_file(tmp_path: Path) -> None:
    err = only_key_file_error(tmp_path / "nope.key")
    assert "nope.key" in str(err)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    only_key_file_error(tmp_path)


def test_refuses_to_overwrite(tmp_path: Path, signer: Signer) -> None:
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


def test_save_into_missing_directory(tmp_path: Path, signer: Signer) -> None:
    with pytest.raises(KeyFileError):
        save_private_key(tmp_path / "no" / "such" / "lab.key", signer)


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda: rsa.generate_private_key(65537, 1024), id="rsa"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="ec"),
        pytest.param(lambda: ed448.Ed448PrivateKey.generate(), id="ed448"),
    ],
)
def test_other_key_types(tmp_path: Path, make_key: object) -> None:
    key: PrivateKeyTypes = make_key()  # type: ignore[operator]
    plain, encrypted = tmp_path / "plain.key", tmp_path / "encrypted.key"
    plain.write_bytes(pem_of(key))
    encrypted.write_bytes(pem_of(key, b"pw"))
    assert "Ed25519" in str(only_key_file_error(plain))
    assert "Ed25519" in str(only_key_file_error(encrypted, b"pw"))


def test_traditional_openssl_rsa_pem(tmp_path: Path) -> None:
    key = rsa.generate_private_key(65537, 1024)
    path = tmp_path / "rsa.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    only_key_file_error(path)


def test_public_key_pem_is_not_a_private_key(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "lab.pub"
    path.write_bytes(
        signer.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    only_key_file_error(path)


# -- sign and verify -------------------------------------------------------


def test_verify_good_signature(signer: Signer) -> None:
    sig = signer.sign(MESSAGE)
    assert len(sig) == SIGNATURE_SIZE == 64
    assert verify_signature(signer.public_key, sig, MESSAGE)
    assert verify_signature(signer.public_key, signer.sign(b""), b"")


def test_verify_rejects_any_flipped_bit(signer: Signer) -> None:
    sig = signer.sign(MESSAGE)
    for i in range(len(sig) * 8):
        flipped = bytearray(sig)
        flipped[i // 8] ^= 1 << (i % 8)
        assert not verify_signature(signer.public_key, bytes(flipped), MESSAGE), i
    for i in range(len(MESSAGE) * 8):
        flipped = bytearray(MESSAGE)
        flipped[i // 8] ^= 1 << (i % 8)
        assert not verify_signature(signer.public_key, sig, bytes(flipped)), i
    for i in range(len(signer.public_key) * 8):
        flipped = bytearray(signer.public_key)
        flipped[i // 8] ^= 1 << (i % 8)
        assert not verify_signature(bytes(flipped), sig, MESSAGE), i


def test_verify_rejects_wrong_key(signer: Signer) -> None:
    assert not verify_signature(Signer.generate().public_key, signer.sign(MESSAGE), MESSAGE)


@pytest.mark.parametrize(
    ("key_len", "sig_len"),
    [(0, 64), (31, 64), (33, 64), (64, 64), (32, 0), (32, 63), (32, 65), (32, 128)],
)
def test_verify_rejects_wrong_lengths(signer: Signer, key_len: int, sig_len: int) -> None:
    sig = signer.sign(MESSAGE)
    key = (signer.public_key * 2)[:key_len]
    sig = (sig + sig)[:sig_len]
    assert verify_signature(key, sig, MESSAGE) is False


def test_verify_rejects_signature_with_message_appended(signer: Signer) -> None:
    # crypto_sign_open takes signature || message; a 64-byte check keeps them apart.
    sig = signer.sign(MESSAGE)
    assert not verify_signature(signer.public_key, sig + MESSAGE[:1], MESSAGE[1:])


def test_verify_rejects_small_order_key() -> None:
    identity = bytes([1]) + bytes(31)  # the neutral point: would accept a forged signature
    forged = identity + bytes(32)
    assert not verify_signature(identity, forged, MESSAGE)


def test_cryptography_and_pynacl_are_one_algorithm() -> None:
    """What cryptography signs, PyNaCl verifies, and the other way round (RFC 8032)."""
    ours = Signer.from_seed(SEED)
    theirs = nacl.signing.SigningKey(SEED)
    # Ed25519 is deterministic: both libraries make the same signature.
    assert ours.sign(MESSAGE) == theirs.sign(MESSAGE).signature
    assert verify_signature(ours.public_key, ours.sign(MESSAGE), MESSAGE)
    theirs.verify_key.verify(MESSAGE, ours.sign(MESSAGE))
    Ed25519PublicKey.from_public_bytes(ours.public_key).verify(
        theirs.sign(MESSAGE).signature, MESSAGE
    )


def test_rfc8032_test_vector_1() -> None:
    """RFC 8032 section 7.1, TEST 1 (empty message)."""
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    signer = Signer.from_seed(seed)
    assert signer.public_key == public
    assert signer.sign(b"") == signature
    assert verify_signature(public, signature, b"")
    assert not verify_signature(public, signature, b"\x00")


def test_signer_from_cryptography_key() -> None:
    key = Ed25519PrivateKey.generate()
    signer = Signer.from_private_key(key)
    key.public_key().verify(signer.sign(MESSAGE), MESSAGE)
