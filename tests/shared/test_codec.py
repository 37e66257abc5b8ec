"""The body codec: canonical msgpack subset, pure and C paths, both runtimes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorawire import _fastcodec, _purecodec, codec
from lorawire.errors import DecodeError
from upy import run_upy

VECTORS_PATH = Path(__file__).parents[1] / "vectors" / "codec.json"
VECTORS = json.loads(VECTORS_PATH.read_text())
PATHS = {"pure": _purecodec, "fast": _fastcodec}


def untyped(v: Any) -> Any:
    if isinstance(v, dict):
        if "$bin" in v:
            return bytes.fromhex(v["$bin"])
        return {untyped(k): untyped(item) for k, item in v["$map"]}
    if isinstance(v, list):
        return [untyped(x) for x in v]
    return v


def canonical_msgpack(value: Any) -> bytes:
    """The oracle: the msgpack package, given map items in canonical key order."""

    def order(v: Any) -> Any:
        if isinstance(v, dict):
            items = sorted(v.items(), key=lambda kv: msgpack.packb(kv[0], use_bin_type=True))
            return {k: order(x) for k, x in items}
        if isinstance(v, list | tuple):
            return [order(x) for x in v]
        return v

    return msgpack.packb(order(value), use_bin_type=True)


def test_vector_set_is_large_and_a_third_errors() -> None:
    errors = [v for v in VECTORS if v.get("error")]
    assert len(VECTORS) >= 100
    assert len(errors) * 3 >= len(VECTORS)


def test_cpython_picks_the_c_backend() -> None:
    assert codec.BACKEND == "msgpack-c"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(path: str, vec: dict[str, Any]) -> None:
    impl = PATHS[path]
    data = bytes.fromhex(vec["hex"])
    if vec.get("error"):
        with pytest.raises(DecodeError):
            impl.unpackb(data)
        return
    value = untyped(vec["value"])
    assert impl.packb(value) == data
    decoded = impl.unpackb(data)
    assert decoded == value
    assert impl.packb(decoded) == data


@pytest.mark.upy
def test_vectors_inside_micropython() -> None:
    script = Path(__file__).with_name("vectors_codec_check.py")
    result = run_upy(script=script, args=[str(VECTORS_PATH)])
    match = re.search(r"vectors: (\d+) failures: (\d+)", result.stdout)
    assert match, result.stdout
    assert int(match.group(1)) == len(VECTORS)
    assert int(match.group(2)) == 0, result.stdout


@pytest.mark.upy
def test_micropython_uses_the_pure_backend() -> None:
    out = run_upy("import lorawire.codec as c; print(c.BACKEND)").stdout.strip()
    assert out == "pure"


keys = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1), st.text(max_size=8), st.binary(max_size=8)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=12),
    st.binary(max_size=12),
    # Rarer long forms (str8/str16, bin8/bin16) without slowing every example.
    st.text(min_size=30, max_size=300),
    st.binary(min_size=250, max_size=300),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=18), st.dictionaries(keys, children, max_size=18)
    ),
    max_leaves=12,
)


@settings(max_examples=2000)
@given(values)
def test_byte_identical_to_msgpack_on_both_paths(value: Any) -> None:
    expected = canonical_msgpack(value)
    assert _purecodec.packb(value) == expected
    assert _fastcodec.packb(value) == expected
    assert _purecodec.unpackb(expected) == value
    assert _fastcodec.unpackb(expected) == value


def _decode_outcome(impl: Any, data: bytes) -> Any:
    try:
        return ("ok", impl.unpackb(data))
    except DecodeError:
        return ("error",)


@settings(max_examples=3000)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error_and_paths_agree(data: bytes) -> None:
    pure = _decode_outcome(_purecodec, data)
    fast = _decode_outcome(_fastcodec, data)
    assert pure == fast


@settings(max_examples=2000)
@given(values, st.data())
def test_mutated_encodings_are_rejected_or_canonical(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(_purecodec.packb(value))
    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[index] = data.draw(st.integers(min_value=0, max_value=255))
    pure = _decode_outcome(_purecodec, bytes(encoded))
    assert pure == _decode_outcome(_fastcodec, bytes(encoded))
    if pure[0] == "ok":
        # Whatever decodes must be the one encoding of its value.
        assert _purecodec.packb(pure[1]) == bytes(encoded)


@pytest.mark.parametrize("path", PATHS)
def test_map_is_written_in_canonical_order_whatever_the_insertion_order(path: str) -> None:
    impl = PATHS[path]
    one = impl.packb({"b": 1, 1: 2, "aa": 3, b"k": 4})
    other = impl.packb({b"k": 4, "aa": 3, 1: 2, "b": 1})
    assert one == other == bytes.fromhex("840102a16201a261610" + "3c4016b04")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (1.5, TypeError),
        (object(), TypeError),
        ({None: 1}, TypeError),
        ({True: 1}, TypeError),
        ({(1, 2): 1}, TypeError),
        (2**64, ValueError),
        (-(2**63) - 1, ValueError),
        ([[[[[[[[[[[[[0]]]]]]]]]]]]], ValueError),
    ],
)
def test_encoding_outside_the_subset_is_refused(path: str, value: Any, error: type) -> None:
    with pytest.raises(error):
        PATHS[path].packb(value)


@pytest.mark.parametrize("path", PATHS)
def test_non_bytes_input_is_a_decode_error(path: str) -> None:
    with pytest.raises(DecodeError):
        PATHS[path].unpackb("c0")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", PATHS)
def test_lying_length_does_not_allocate(path: str) -> None:
    # A 5-byte input claiming 4 Gi array items is refused from the length alone.
    with pytest.raises(DecodeError):
        PATHS[path].unpackb(bytes.fromhex("ddfffffff0"))
