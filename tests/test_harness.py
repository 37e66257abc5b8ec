"""The unix-port harness itself: it must surface MicroPython failures, not hide them."""

from __future__ import annotations

import pytest

from upy import MicroPythonError, run_upy


def test_runs_under_micropython_with_project_path() -> None:
    result = run_upy("import sys, lorawire; print(sys.implementation.name)")
    assert result.stdout.strip() == "micropython"


def test_traceback_fails_the_test() -> None:
    with pytest.raises(MicroPythonError, match="ZeroDivisionError"):
        run_upy("1/0")


def test_heap_limit_is_enforced() -> None:
    with pytest.raises(MicroPythonError, match="MemoryError"):
        run_upy("x = bytearray(200000)", heap="64K")


def test_timeout_fails_with_the_output_so_far() -> None:
    code = "import sys\nprint('started')\nsys.stdout.flush()\nwhile True:\n    pass\n"
    with pytest.raises(MicroPythonError) as exc:
        run_upy(code, timeout=2)
    assert "timed out after 2 s" in str(exc.value)
    assert "started" in str(exc.value)
