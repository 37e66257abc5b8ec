"""`make board` built what a board is: two 32-bit interpreters of our variant.

Checked on the binaries the build left in build/board (CI builds them; without
gcc-multilib or the vendored source they skip in one line, fail under
LORACHAIN_REQUIRE_BOARD): the ELF class, the variant name each reports, and the
properties of an ESP32 the variant copies (31-bit small ints, ticks_ms wrapping at
2**30, a C stack of about 15 KB, our packages frozen in one and not in the other).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tools.board import interpreters
from tools.board.__main__ import REQUIRE_ENV

PROBE = """
import gc, sys, time
print(sys.implementation._build)
def allocated(text):
    gc.collect()
    a = gc.mem_alloc()
    int(text)
    return gc.mem_alloc() - a
allocated("1")
print(allocated("1073741823"), allocated("1073741824"))  # 2**30 - 1, 2**30
print(time.ticks_add(0, -1))
def depth(n):
    try:
        return depth(n + 1)
    except RuntimeError:
        return n
print(depth(0))
try:
    import lorawire.frame as f
    print(f.__file__ if hasattr(f, "__file__") else "frozen")
except ImportError:
    print("none")
"""


def _interpreter(name: str) -> interpreters.Interpreter:
    reason = interpreters.missing(name)
    if reason is not None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{reason} ({REQUIRE_ENV} is set)")
        pytest.skip(reason)
    return interpreters.get(name)


@pytest.mark.parametrize("name", interpreters.BOARD_NAMES)
def test_the_board_shaped_build_is_a_32_bit_interpreter_of_our_variant(name: str) -> None:
    interp = _interpreter(name)
    header = interp.path.read_bytes()[:5]
    assert header[:4] == b"\x7fELF" and header[4] == 1, "not an ELF 32-bit executable"
    out = subprocess.run(
        [str(interp.path), "-c", PROBE],
        capture_output=True,
        text=True,
        env={"MICROPYPATH": ".frozen"},  # nothing of ours on the path: only what is frozen
        timeout=60,
        check=True,
    ).stdout.split()
    build, small, big, wrapped, depth, ours = out
    assert build == f"lorachain-{name}"
    assert (int(small), int(big) > 0) == (0, True)  # 31-bit small ints, as on an ESP32
    assert int(wrapped) == 2**30 - 1  # ticks_ms wraps at 2**30 ms
    # a 15,360-byte C stack: about 50 nested calls here (the PyPI port manages 176)
    assert 20 < int(depth) < 120, depth
    assert (ours == "none") == (name == "plain")
