"""Tests of protocol.keys: generate, encode as PEM and decode, sign and verify Ed25519
keys. (The key file itself, mode 0600 and all: tests/test_home.py.)"""

from __future__ import annotations

import os

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


# -- generate, PEM ------------------------------------------------------------


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


def test_pem_round_trip(signer: Signer) -> None:
    pem = signer.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert not is_encrypted_pem(pem)
    loaded = Signer.from_pem(pem)
    assert loaded.public_key == signer.public_key
    assert verify_signature(signer.public_key, loaded.sign(MESSAGE), MESSAGE)


def test_unencrypted_key_loads_even_when_a_passphrase_is_given(signer: Signer) -> None:
    assert Signer.from_pem(signer.to_pem(), b"unused").public_key == signer.public_key


def test_encrypted_round_trip(signer: Signer) -> None:
    data = signer.to_pem(b"correct horse")
    assert is_encrypted_pem(data)
    assert signer.to_pem() not in data
    assert Signer.from_pem(data, b"correct horse").public_key == signer.public_key


def test_wrong_passphrase(signer: Signer) -> None:
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        Signer.from_pem(signer.to_pem(b"correct horse"), b"battery staple")


@pytest.mark.parametrize("missing", [None, b""])
def test_missing_passphrase(signer: Signer, missing: bytes | None) -> None:
    with pytest.raises(PassphraseError, match="passphrase is needed"):
        Signer.from_pem(signer.to_pem(b"correct horse"), missing)


def test_empty_passphrase_encodes_unencrypted(signer: Signer) -> None:
    pem = signer.to_pem(b"")
    assert not is_encrypted_pem(pem)
    assert Signer.from_pem(pem).public_key == signer.public_key


# -- damaged, foreign ----------------------------------------------------------


def only_key_file_error(data: bytes, passphrase: bytes | None = None) -> KeyFileError:
    """Decode ``data`` expecting a KeyFileError that is not about the passphrase."""
    with pytest.raises(KeyFileError) as info:
        Signer.from_pem(data, passphrase)
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
def test_garbage(content: bytes) -> None:
    only_key_file_error(content)


def test_truncated_pem(signer: Signer) -> None:
    pem = signer.to_pem()
    for cut in (len(pem) // 2, len(pem) - 30, 40):
        only_key_file_error(pem[:cut])


def test_damaged_body_of_pem(signer: Signer) -> None:
    lines = signer.to_pem().splitlines(keepends=True)
    only_key_file_error(lines[0] + b"AAAA" + lines[1][4:] + b"".join(lines[2:]))


def test_truncated_encrypted_pem(signer: Signer) -> None:
    pem = signer.to_pem(b"pw")
    with pytest.raises(KeyFileError):
        Signer.from_pem(pem[: len(pem) // 2], b"pw")


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda: rsa.generate_private_key(65537, 1024), id="rsa"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="ec"),
        pytest.param(lambda: ed448.Ed448PrivateKey.generate(), id="ed448"),
    ],
)
def test_other_key_types(make_key: object) -> None:
    key: PrivateKeyTypes = make_key()  # type: ignore[operator]
    assert "Ed25519" in str(only_key_file_error(pem_of(key)))
    assert "Ed25519" in str(only_key_file_error(pem_of(key, b"pw"), b"pw"))


def test_traditional_openssl_rsa_pem() -> None:
    key = rsa.generate_private_key(65537, 1024)
    only_key_file_error(key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ))


def test_public_key_pem_is_not_a_private_key(signer: Signer) -> None:
    only_key_file_error(signer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ))


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
