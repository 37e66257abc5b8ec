"""lorawire.sha512: the pure SHA-512 (both word layouts) against hashlib, on both runtimes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import sha512 as S

# FIPS 180-2 appendix C examples (one block, two blocks) and the empty message.
KNOWN = [
    (
        b"abc",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    ),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
        b"jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
        "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
        "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
    ),
    (
        b"",
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    ),
]


@pytest.fixture(params=[True, False], ids=["halves", "words64"])
def layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run the pure hash with 32-bit halves (64-bit ports) and 64-bit words (ESP32)."""
    monkeypatch.setattr(S, "HALVES", request.param)
    return request.param


@pytest.mark.parametrize(("msg", "digest"), KNOWN)
def test_known_answers(layout: bool, msg: bytes, digest: str) -> None:
    assert S.pure_sha512(msg).hex() == digest
    assert S.sha512(msg).hex() == digest


@pytest.mark.parametrize("n", [0, 1, 111, 112, 113, 127, 128, 129, 239, 240, 256, 1000])
def test_padding_boundaries(layout: bool, n: int) -> None:
    data = bytes((i * 7 + 3) & 0xFF for i in range(n))
    assert S.pure_sha512(data) == hashlib.sha512(data).digest()


@settings(max_examples=300)
@given(data=st.binary(max_size=700), cuts=st.lists(st.integers(0, 700), max_size=5))
def test_incremental_matches_hashlib(data: bytes, cuts: list[int]) -> None:
    for halves in (True, False):
        S.HALVES = halves
        try:
            h = S.PureSHA512()
            last = 0
            for c in sorted(min(c, len(data)) for c in cuts):
                h.update(data[last:c])
                last = c
            h.update(memoryview(data)[last:])
            assert h.digest() == hashlib.sha512(data).digest()
        finally:
            S.HALVES = S._wide_small_ints()  # restore the module's table after the test


def test_digest_ends_the_object() -> None:
    h = S.PureSHA512(b"x")
    h.digest()
    with pytest.raises(ValueError):
        h.update(b"y")
    with pytest.raises(ValueError):
        h.digest()


def test_cpython_uses_hashlib() -> None:
    assert S.new is hashlib.sha512


@pytest.mark.upy
def test_unix_port_matches_hashlib(upy) -> None:  # noqa: ANN001
    lengths = [0, 3, 111, 112, 127, 128, 129, 250, 1000]
    code = (
        "import binascii\n"
        "from lorawire import sha512 as S\n"
        f"for n in {lengths!r}:\n"
        "    d = bytes((i * 7 + 3) & 0xFF for i in range(n))\n"
        "    h = S.PureSHA512()\n"
        "    h.update(d[:n // 3]); h.update(d[n // 3:])\n"
        "    a = h.digest()\n"
        "    assert a == S.sha512(d)\n"
        "    print(n, binascii.hexlify(a).decode())\n"
        "for n in (0, 128, 250):\n"
        "    d = bytes((i * 7 + 3) & 0xFF for i in range(n))\n"
        "    print(n, binascii.hexlify(S.pure_sha512(d, not S.HALVES)).decode())\n"
    )
    out = upy(code).stdout.split()
    got = dict(zip(out[0::2], out[1::2], strict=True))
    pairs = list(zip(out[0::2], out[1::2], strict=True))
    assert len(pairs) == len(lengths) + 3
    for n_str, hexd in pairs:
        n = int(n_str)
        data = bytes((i * 7 + 3) & 0xFF for i in range(n))
        assert hexd == hashlib.sha512(data).hexdigest(), n
    assert set(got) >= {str(n) for n in lengths}
