"""Node identity: id derivation, Identity keys, X25519 derivation consistency."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import ed25519, x25519
from lorawire.identity import ID_LEN, Identity, id_hex, node_id

SEED = bytes(range(32))


def test_node_id_is_first_8_bytes_of_sha256_of_public_key() -> None:
    ident = Identity(SEED)
    assert ident.public == ed25519.public_key(SEED)
    assert ident.id == hashlib.sha256(ident.public).digest()[:8]
    assert node_id(ident.public) == ident.id
    assert len(ident.id) == ID_LEN
    assert ident.hex_id() == hashlib.sha256(ident.public).hexdigest()[:16]
    assert id_hex(b"\x00\xff") == "00ff"


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), "x" * 32, None])
def test_identity_rejects_bad_seed(seed: object) -> None:
    with pytest.raises(ValueError):
        Identity(seed)


@pytest.mark.parametrize("pub", [b"", bytes(31), bytes(33), "x" * 32])
def test_node_id_rejects_bad_key(pub: object) -> None:
    with pytest.raises(ValueError):
        node_id(pub)


def test_generate_gives_distinct_identities() -> None:
    ids = {Identity.generate().id for _ in range(8)}
    assert len(ids) == 8


def test_x25519_secret_is_cached_and_matches_the_converted_public_key() -> None:
    ident = Identity(SEED)
    secret = ident.x_secret()
    assert ident.x_secret() is secret  # computed once
    assert secret == x25519.ed25519_seed_to_x25519(SEED)
    # the X25519 public key of the derived secret is the converted Ed25519 public key
    assert x25519.public_key(secret) == ident.x_public()
    assert ident.x_public() == x25519.ed25519_pk_to_x25519(ident.public)


@settings(max_examples=50)
@given(st.binary(min_size=32, max_size=32))
def test_identity_signs_verifiably(seed: bytes) -> None:
    ident = Identity(seed)
    sig = ident.sign(b"hello")
    assert ed25519.verify(ident.public, b"hello", sig)
    assert x25519.public_key(ident.x_secret()) == ident.x_public()
