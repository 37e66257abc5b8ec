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
