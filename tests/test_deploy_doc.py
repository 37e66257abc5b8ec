"""docs/DEPLOY.md and README.md tried as a reader tries them, where that can be done here.

The commands are read out of the documents' code blocks, not copied into this file, so a
command the documents show and nothing runs is a failure here:

* the `tools.deploy` commands (keygen, flash, config) run as shown, flash with
  `--dry-run` (no board here), and flash prints what DEPLOY.md says it prints;
* the `make flash` line of README.md runs with `DRY_RUN=1`, as README shows it;
* every `loragate` command and option DEPLOY.md names exists (`--help` lists it);
* the install command is the one tests/test_install.py runs, and no paragraph says the
  gateway is still being built.

What needs a board, root or a Pi (esptool, mip install, systemctl) stays untried.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = (ROOT / "docs" / "DEPLOY.md").read_text()
README = (ROOT / "README.md").read_text()
LORAGATE = str(Path(sys.executable).with_name("loragate"))


def shell_commands(text: str) -> list[str]:
    """Every command in the ```sh blocks, continuation lines joined, comments dropped."""
    out: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def deploy_tool(text: str, command: str) -> list[list[str]]:
    """The argument lists of the `.venv/bin/python -m tools.deploy COMMAND` lines."""
    prefix = ".venv/bin/python -m tools.deploy "
    found = []
    for line in shell_commands(text):
        if line.startswith(prefix + command + " "):
            found.append(shlex.split(line[len(prefix) :]))
    assert found, f"no `tools.deploy {command}` command shown"
    return found


def run_deploy(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "tools.deploy", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )  # fmt: skip


def redirect(args: list[str]) -> tuple[list[str], str | None]:
    """`args` without a trailing `> FILE`, and FILE."""
    if len(args) >= 2 and args[-2] == ">":
        return args[:-2], args[-1]
    return args, None


def matches(shown: str, printed: str) -> bool:
    """A line of the document against a printed line: `...` stands for anything."""
    pattern = ".*".join(re.escape(part) for part in shown.split("..."))
    return re.fullmatch(pattern, printed) is not None


def test_keygen_as_shown_writes_a_key_only_its_owner_reads(tmp_path: Path) -> None:
    for text in (DEPLOY, README):
        for args in deploy_tool(text, "keygen"):
            made = run_deploy(args, tmp_path)
            assert made.returncode == 0, made.stderr
            out = tmp_path / args[args.index("--out") + 1]
            assert out.stat().st_mode & 0o777 == 0o600
            assert re.fullmatch(r"[0-9a-f]{64}\n", out.read_text())
            out.unlink()


def test_flash_prints_what_deploy_md_says_it_prints(tmp_path: Path) -> None:
    (args,) = deploy_tool(DEPLOY, "flash --port /dev/ttyUSB0 --board heltec-v3")
    key = run_deploy(["keygen", "--out", str(tmp_path / "network.key")], tmp_path)
    assert key.returncode == 0, key.stderr
    args = [str(tmp_path / a) if a == "network.key" else a for a in args]
    made = run_deploy([*args, "--dry-run"], ROOT)  # the paths it prints are the tree's
    assert made.returncode == 0, made.stderr
    printed = made.stdout.splitlines()
    block = DEPLOY.split("this is the `--dry-run` output for the command above", 1)[1]
    shown = re.search(r"```\n(.*?)```", block, re.S)
    assert shown is not None
    lines = shown.group(1).splitlines()
    i = 0
    for n, doc_line in enumerate(lines):
        if doc_line == "...":  # any number of printed lines, up to the next shown one
            nxt = lines[n + 1]
            while i < len(printed) and not matches(nxt, printed[i]):
                i += 1
            continue
        assert i < len(printed), f"DEPLOY.md shows {doc_line!r}, flash printed no more"
        assert matches(doc_line, printed[i]), (doc_line, printed[i])
        i += 1
    assert i == len(printed), printed[i:]


def test_config_then_flash_from_it_as_shown(tmp_path: Path) -> None:
    key = run_deploy(["keygen", "--out", "network.key"], tmp_path)
    assert key.returncode == 0, key.stderr
    (config,) = deploy_tool(DEPLOY, "config")
    config, out = redirect(config)
    assert out is not None
    made = run_deploy(config, tmp_path)
    assert made.returncode == 0, made.stderr
    (tmp_path / out).write_text(made.stdout)
    (flash,) = [a for a in deploy_tool(DEPLOY, "flash") if "--config" in a]
    # The config the board reads holds the network key; flash needs no other key option.
    done = run_deploy([*flash, "--dry-run"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("mpremote connect /dev/ttyUSB0 exec ")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_readmes_make_flash_line_runs_as_shown(tmp_path: Path) -> None:
    (line,) = [c for c in shell_commands(README) if c.startswith("make flash ")]
    key = run_deploy(["keygen", "--out", str(tmp_path / "network.key")], tmp_path)
    assert key.returncode == 0, key.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    argv = ["make", "-s", "--no-print-directory", "-o", ".venv/.installed", *shlex.split(line)[1:]]
    argv.append(f"NETWORK_KEY={tmp_path / 'network.key'}")
    made = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "mip install lora-sx126x lora-async" in made.stdout


def test_every_loragate_command_and_option_deploy_md_names_exists() -> None:
    table = DEPLOY.split("The `loragate` commands", 1)[1].split("Metrics (", 1)[0]
    named: dict[str, set[str]] = {}
    first = ""
    for cell in re.findall(r"^\| (.*?) \|", table, re.M):
        for code in re.findall(r"`([^`]+)`", cell):
            words = code.split()
            if words[0].startswith("--"):  # an option of the row's first command
                named[first].update(w for w in words if w.startswith("--"))
                continue
            first = words[0]
            named.setdefault(first, set()).update(w for w in words if w.startswith("--"))
    for line in shell_commands(DEPLOY):
        words = line.split()
        if any(w.endswith("/loragate") for w in words):
            i = next(n for n, w in enumerate(words) if w.endswith("/loragate"))
            rest = words[i + 1 :]
            if rest and not rest[0].startswith("-"):
                named.setdefault(rest[0], set()).update(w for w in rest if w.startswith("--"))
    assert {"status", "peers", "peer", "bans", "disconnect", "connect", "clearbanned"} <= set(
        named
    ), named
    for command, options in sorted(named.items()):
        helped = subprocess.run(
            [LORAGATE, command, "--help"], capture_output=True, text=True, timeout=60
        )
        assert helped.returncode == 0, (command, helped.stderr)
        for option in options:
            assert re.search(rf"(^|[ /,]){re.escape(option)}\b", helped.stdout, re.M), (
                command,
                option,
            )


def test_the_install_shown_is_the_install_tested() -> None:
    assert "still being built" not in DEPLOY + README
    shown = [c for c in shell_commands(DEPLOY) if c.startswith("make install-gateway")]
    assert shown and set(shown) == {"make install-gateway GATEWAY_VENV=/opt/lorachain/venv"}
    tested = (ROOT / "tests" / "test_install.py").read_text()
    assert '"install-gateway", f"GATEWAY_VENV={env_dir}"' in tested
    assert "pip wheel --no-deps ." in DEPLOY and '"wheel", "--no-deps"' in tested
