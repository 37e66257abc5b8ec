from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tools.board import interpreters
from tools.board.__main__ import REQUIRE_ENV
from upy import run_upy

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.load_profile("ci")

# Every test marked `upy` runs once per interpreter: the PyPI 64-bit port and the
# board-shaped 32-bit build with code from .mpy files. `@pytest.mark.upy("plain",
# "frozen")` names other interpreters (memory tests run on the board-shaped builds).
DEFAULT_INTERPRETERS = ("pypi", "plain")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "solo: runs with no other test beside it (pytest-xdist's other workers wait): a "
        "scenario whose figures shift when it shares the cores",
    )
    config.addinivalue_line(
        "markers",
        "upy(*interpreters): runs code inside MicroPython unix ports, once per interpreter "
        f"(default {', '.join(DEFAULT_INTERPRETERS)}; names: {', '.join(interpreters.NAMES)})",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("upy")
    if marker is None:
        return
    names = tuple(marker.args) or DEFAULT_INTERPRETERS
    for name in names:
        interpreters.get(name)  # an unknown name is a mistake in the test
    if "upy_interpreter" not in metafunc.fixturenames:
        metafunc.fixturenames.append("upy_interpreter")
    metafunc.parametrize("upy_interpreter", names, indirect=True)


def _select_interpreter(name: str, monkeypatch: pytest.MonkeyPatch) -> interpreters.Interpreter:
    reason = interpreters.missing(name)
    if reason is not None:
        if name in interpreters.BOARD_NAMES and os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{reason} ({REQUIRE_ENV} is set)")
        pytest.skip(reason)
    monkeypatch.setenv(interpreters.ENV, name)
    return interpreters.get(name)


@pytest.fixture(autouse=True)
def _upy_run_interpreter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point LORACHAIN_MICROPYTHON at the interpreter of this parametrized `upy` run.

    Autouse, because pytest prunes a fixture that the test function does not name from
    its closure: the indirect `upy_interpreter` parameter alone would never set it."""
    callspec = getattr(request.node, "callspec", None)
    name = callspec.params.get("upy_interpreter") if callspec is not None else None
    if name is not None:
        _select_interpreter(name, monkeypatch)


@pytest.fixture
def upy_interpreter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """The interpreter of this test run (LORACHAIN_MICROPYTHON is set to it)."""
    name = getattr(request, "param", None) or os.environ.get(interpreters.ENV) or "pypi"
    return _select_interpreter(name, monkeypatch)


@pytest.fixture
def upy():  # noqa: ANN201 - a callable fixture
    """Run code under the MicroPython unix port: `upy(code, heap="64K")`."""
    return run_upy


def _lock(name: str, run: str) -> int:
    path = Path(tempfile.gettempdir()) / f"lorachain-{run}-{name}.lock"
    return os.open(path, os.O_RDWR | os.O_CREAT)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """`solo` tests hold the run's lock exclusively, every other test holds it shared.

    A gate taken first keeps a waiting solo test from being starved by the other worker's
    stream of shared holders. Outermost (tryfirst), so the wait is not counted by
    pytest-timeout. Without xdist there is nobody beside a test and nothing to lock."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        yield
        return
    solo = item.get_closest_marker("solo") is not None
    gate, main = _lock("gate", run), _lock("main", run)
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(main, fcntl.LOCK_EX if solo else fcntl.LOCK_SH)
        if not solo:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield
    finally:
        os.close(main)  # closing drops the flock
        os.close(gate)
