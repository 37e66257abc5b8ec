"""lorawire.x25519: RFC 7748 vectors on both paths and in the unix port, small-order
peers, and the Ed25519 -> X25519 conversion (libsodium's)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import ed25519
from lorawire import x25519 as X

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "x25519_rfc7748.json"
DOC = json.loads(VECTORS.read_text())
P = X.P

PATHS = {
    "pure": (X.pure_x25519, X.pure_public_key),
    "cryptography": (X.x25519, X.public_key),
}

# u coordinates of points of small order (and their non-canonical aliases, u + p)
SMALL_ORDER_U = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    P - 1,
    P,
    P + 1,
]


def h(s: str) -> bytes:
    return bytes.fromhex(s)


def test_fast_path_chosen_on_cpython() -> None:
    assert X.FAST
    assert X.x25519 is not X.pure_x25519


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("vec", DOC["vectors"], ids=["5.2-1", "5.2-2"])
def test_rfc7748_vectors(path: str, vec: dict[str, str]) -> None:
    dh, _ = PATHS[path]
    assert dh(h(vec["scalar"]), h(vec["u"])).hex() == vec["output"]


@pytest.mark.parametrize("path", PATHS)
def test_rfc7748_iterated(path: str) -> None:
    dh, _ = PATHS[path]
    it = DOC["iterated"]
    k = u = h(it["start"])
    for i in range(1, 1001):
        k, u = dh(k, u), k
        if i == 1:
            assert k.hex() == it["after_1"]
    assert k.hex() == it["after_1000"]


@pytest.mark.parametrize("path", PATHS)
def test_rfc7748_diffie_hellman(path: str) -> None:
    dh, pk = PATHS[path]
    d = DOC["diffie_hellman"]
    a, b = h(d["alice_private"]), h(d["bob_private"])
    assert pk(a).hex() == d["alice_public"]
    assert pk(b).hex() == d["bob_public"]
    assert dh(a, h(d["bob_public"])).hex() == d["shared"]
    assert dh(b, h(d["alice_public"])).hex() == d["shared"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("u", SMALL_ORDER_U, ids=lambda u: hex(u)[:10])
def test_small_order_peer_raises_value_error(path: str, u: int) -> None:
    dh, _ = PATHS[path]
    u_bytes = u.to_bytes(32, "little")
    for seed in range(3):
        with pytest.raises(ValueError):
            dh(random.Random(seed).randbytes(32), u_bytes)


@settings(max_examples=40)
@given(scalar=st.binary(min_size=32, max_size=32), u=st.binary(min_size=32, max_size=32))
def test_pure_matches_cryptography(scalar: bytes, u: bytes) -> None:
    try:
        ref = (
            X25519PrivateKey.from_private_bytes(scalar)
            .exchange(X25519PublicKey.from_public_bytes(u))
            .hex()
        )
    except ValueError:
        ref = "error"
    for dh in (X.pure_x25519, X.x25519):
        try:
            got = dh(scalar, u).hex()
        except ValueError:
            got = "error"
        assert got == ref


@pytest.mark.parametrize("path", PATHS)
def test_bad_lengths_and_types(path: str) -> None:
    dh, pk = PATHS[path]
    with pytest.raises(ValueError):
        dh(bytes(31), bytes(32))
    with pytest.raises(ValueError):
        dh(bytes(32), bytes(33))
    with pytest.raises(TypeError):
        dh("a" * 32, bytes(32))
    with pytest.raises(ValueError):
        pk(bytes(16))


def test_libsodium_conversion_vector() -> None:
    c = DOC["ed25519_conversion"][0]
    seed = h(c["seed"])
    assert ed25519.public_key(seed).hex() == c["ed25519_public"]
    assert X.ed25519_seed_to_x25519(seed).hex() == c["x25519_private"]
    assert X.ed25519_pk_to_x25519(h(c["ed25519_public"])).hex() == c["x25519_public"]


def test_conversions_agree_and_give_a_working_dh() -> None:
    rnd = random.Random(7748)
    for _ in range(30):
        s1, s2 = rnd.randbytes(32), rnd.randbytes(32)
        x1, x2 = X.ed25519_seed_to_x25519(s1), X.ed25519_seed_to_x25519(s2)
        p1 = X.ed25519_pk_to_x25519(ed25519.public_key(s1))
        p2 = X.ed25519_pk_to_x25519(ed25519.public_key(s2))
        assert X.public_key(x1) == p1 and X.pure_public_key(x2) == p2
        assert X.x25519(x1, p2) == X.pure_x25519(x2, p1)


def test_conversion_refuses_bad_ed25519_keys() -> None:
    for bad in list(ed25519.SMALL_ORDER_ENCODINGS) + [(P + 3).to_bytes(32, "little")]:
        with pytest.raises(ValueError):
            X.ed25519_pk_to_x25519(bad)
    with pytest.raises(ValueError):
        X.ed25519_pk_to_x25519(bytes(31))
    with pytest.raises(TypeError):
        X.ed25519_seed_to_x25519("x" * 32)


UPY_CODE = """
import json, binascii
from lorawire import x25519 as X, ed25519
assert X.x25519 is X.pure_x25519
u = binascii.unhexlify
h = lambda b: binascii.hexlify(b).decode()
with open(%r) as f:
    doc = json.load(f)
for v in doc["vectors"]:
    assert h(X.x25519(u(v["scalar"]), u(v["u"]))) == v["output"]
d = doc["diffie_hellman"]
a, b = u(d["alice_private"]), u(d["bob_private"])
assert h(X.public_key(a)) == d["alice_public"] and h(X.public_key(b)) == d["bob_public"]
assert h(X.x25519(a, u(d["bob_public"]))) == d["shared"] == h(X.x25519(b, u(d["alice_public"])))
c = doc["ed25519_conversion"][0]
seed = u(c["seed"])
assert h(X.ed25519_seed_to_x25519(seed)) == c["x25519_private"]
assert h(X.ed25519_pk_to_x25519(ed25519.public_key(seed))) == c["x25519_public"]
errors = 0
for small in (0, 1, %d):
    try:
        X.x25519(a, small.to_bytes(32, "little"))
    except ValueError:
        errors += 1
assert errors == 3
it = doc["iterated"]
k = w = u(it["start"])
for i in range(%d):
    k, w = X.x25519(k, w), k
    if i == 0:
        assert h(k) == it["after_1"]
print("ok", h(k))
"""


@pytest.mark.upy
def test_unix_port_vectors(upy: Callable[..., object]) -> None:
    res = upy(UPY_CODE % (str(VECTORS), SMALL_ORDER_U[2], 1))
    assert res.stdout.split() == ["ok", DOC["iterated"]["after_1"]]  # type: ignore[attr-defined]


@pytest.mark.upy
@pytest.mark.slow
def test_unix_port_iterated_1000(upy: Callable[..., object]) -> None:
    res = upy(UPY_CODE % (str(VECTORS), SMALL_ORDER_U[2], 1000))
    assert res.stdout.split() == ["ok", DOC["iterated"]["after_1000"]]  # type: ignore[attr-defined]
