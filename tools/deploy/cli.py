"""Deploy tool: install drivers, copy code and config, provision a key, read the node id.

    python -m tools.deploy flash --port /dev/ttyUSB0 --board heltec-v3 --region EU868 \
        --network-key-file network.key [--romfs] [--key-on-host|--key-on-board] [--dry-run]
    python -m tools.deploy config --board heltec-v3 --region EU868 --network-key-file network.key
    python -m tools.deploy keygen --out network.key

Every step is an external command (mpy-cross, mpremote); `--dry-run` prints them, one
per line, exactly as they would run, and runs nothing. The config is generated from the
board preset plus options and checked with the firmware's own `loranode.config` before
any command runs. Errors are one line on stderr and a non-zero exit, never a traceback.

What goes on the board: lorawire and loranode compiled to .mpy (`mpy-cross -O3
-march=xtensawin`; never .py sources, which a board cannot compile within its C stack),
or with --romfs one ROMFS image of them (a board whose firmware has a ROMFS partition;
the tool asks the board first); main.py and boot.py as source (the board runs them by
name); and config.json as `fwconfig.board_config` writes it, the only config a board
reads (it does not validate: this tool did).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import click

from loragate.config import key_weakness
from tools.deploy import boards as fw_boards
from tools.deploy import fwconfig as fw_config
from tools.deploy import romfs as fw_romfs

ROOT = Path(__file__).resolve().parent.parent.parent

MARKER = ".lorachain-deploy"
KEY_FILE = "key.bin"  # 32-byte Ed25519 seed, read by loranode.identity.load_or_create()
KEY_BYTES = 32
NODE_ID_TAG = "NODE_ID"
CLEAN_SCRIPT = Path(__file__).resolve().parent / "board_clean.py"
MPY_ARCH = "xtensawin"
MPY_OPT = "-O3"  # no line numbers, no asserts: a few KB less heap on a board
ROMFS_IMAGE = "firmware.romfs"
# Run a different mpremote / mpy-cross than the venv's (another install, or a test double).
TOOL_ENV = {"mpremote": "LORACHAIN_MPREMOTE", "mpy-cross": "LORACHAIN_MPY_CROSS"}
# Read back the node id: loranode.identity.load_or_create() returns the board's Identity,
# creating key.bin (a random 32-byte Ed25519 seed) on the first call.
# Ask the board for its ROMFS partitions before writing one (vfs.rom_ioctl(1): how many;
# an AttributeError or a negative answer: the firmware has none).
ROMFS_TAG = "ROMFS"
ROMFS_CHECK_CODE = (
    'import vfs; f = getattr(vfs, "rom_ioctl", None); print("' + ROMFS_TAG + '", f(1) if f else 0)'
)
NO_ROMFS = (
    "this board's MicroPython has no ROMFS partition (stock ESP32 firmware has none): "
    "deploy .mpy files (drop --romfs), or build firmware with the code frozen in "
    "(FROZEN_MANIFEST=firmware/manifest.py, docs/DEPLOY.md)"
)
NODE_ID_CODE = (
    "import binascii, loranode.identity as i; "
    'print("' + NODE_ID_TAG + '", binascii.hexlify(i.load_or_create().id).decode())'
)

_PORT_RE = re.compile(
    r"^(auto|/dev/[A-Za-z0-9._/+-]+|COM[0-9]{1,3}|[acu][0-9]{1,2}|id:[A-Za-z0-9._-]+"
    r"|port:[^\s]+|rfc2217://[^\s]+|socket://[^\s]+)$"
)
_BOARD_CHOICE = click.Choice(fw_boards.names())
_REGION_CHOICE = click.Choice(list(fw_config.REGIONS))


class DeployError(Exception):
    """A deploy step cannot go on; the message is one line. Exit status 1."""

    exit_code = 1


class ArgumentError(DeployError):
    """A bad option value (port, key, --set, --config). Exit status 2, as for usage errors."""

    exit_code = 2


def _fail(message: str) -> NoReturn:
    raise DeployError(message)


def _bad_arg(message: str) -> NoReturn:
    raise ArgumentError(message)


@dataclass
class Step:
    argv: list[str]
    capture: bool = False

    def line(self) -> str:
        return shlex.join(self.argv)


@dataclass
class Plan:
    """What `flash` does: files to stage on the host, then commands in order."""

    board_dir: Path
    copies: list[tuple[Path, Path]] = field(default_factory=list)  # (source .py, staged .py)
    steps: list[Step] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)  # board directories, parents first


def _disp(path: Path) -> str:
    """A path as printed: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def deployed_sources(root: Path) -> list[tuple[Path, Path]]:
    """(source file, path relative to the board's root) for every file that is deployed."""
    out: list[tuple[Path, Path]] = []
    for pkg_dir, name in (
        (root / "shared" / "lorawire", "lorawire"),
        (root / "firmware" / "loranode", "loranode"),
    ):
        if not (pkg_dir / "__init__.py").is_file():
            _bad_arg(f"{_disp(pkg_dir)} is not a package (no __init__.py); wrong --root?")
        for src in sorted(pkg_dir.rglob("*.py")):
            rel = src.relative_to(pkg_dir)
            if "__pycache__" in rel.parts:
                continue
            out.append((src, Path(name) / rel))
    for name in ("boot.py", "main.py"):
        src = root / "firmware" / name
        if src.is_file():
            out.append((src, Path(name)))
    return out


def plan_flash(
    *,
    port: str,
    preset: dict[str, Any],
    root: Path,
    build_dir: Path,
    key_on_host: bool,
    romfs: bool = False,
) -> Plan:
    """Every host copy and command of a deploy, in order (nothing runs here).

    Files go with one `cp a b c :dir/` per board directory into directories the board
    script made: `mpremote cp -r` fails on a new directory without subdirectories.
    With `romfs` the packages are compiled into build/rom, packed into one ROMFS image
    by `mpremote romfs build` and written to the board's ROMFS partition: the board
    mounts it at /rom and runs the bytecode in place (about half the heap of .mpy
    files on the filesystem; tools/deploy/romfs.py). The filesystem copies of the
    packages are removed, since "" comes before /rom on sys.path.
    Modules in tools.deploy.romfs.BOARD_EXCLUDE (CPython-only, unix-port-only) are never
    shipped, whichever way the code goes.
    """
    board_dir = build_dir / "board"
    rom_dir = build_dir / "rom"
    image = build_dir / ROMFS_IMAGE
    plan = Plan(board_dir=board_dir)
    mpremote = ["mpremote", "connect", port]
    by_dir: dict[str, list[str]] = {}
    tops: list[str] = []
    for src, rel in deployed_sources(root):
        if len(rel.parts) == 1:  # main.py / boot.py stay source: the board runs them by name
            plan.copies.append((src, board_dir / rel))
            tops.append(rel.name)
            continue
        if not fw_romfs.ships(rel):  # CPython-only and unix-port-only modules
            continue
        staged = (rom_dir if romfs else board_dir) / rel.with_suffix(".mpy")
        plan.steps.append(
            Step(["mpy-cross", MPY_OPT, f"-march={MPY_ARCH}", "-o", _disp(staged), _disp(src)])
        )
        if romfs:
            continue
        for i in range(1, len(rel.parts)):
            by_dir.setdefault(str(PurePosixPath(*rel.parts[:i])), [])
        by_dir[str(PurePosixPath(*rel.parts[:-1]))].append(_disp(staged))
    plan.dirs = sorted(by_dir)
    if romfs:
        build = ["romfs", "--no-mpy", "-o", _disp(image), "build", _disp(rom_dir)]
        plan.steps.append(Step(["mpremote", *build]))
    if romfs:  # before anything is written: a board without a partition is refused
        plan.steps.insert(0, Step(mpremote + ["exec", ROMFS_CHECK_CODE], capture=True))
    plan.steps.append(Step(mpremote + ["mip", "install", *fw_boards.packages(preset)]))
    plan.steps.append(Step(mpremote + ["run", _disp(build_dir / CLEAN_SCRIPT.name)]))
    if romfs:
        plan.steps.append(Step(mpremote + ["romfs", "deploy", _disp(image)]))
    for remote_dir in plan.dirs:
        if by_dir[remote_dir]:
            plan.steps.append(Step(mpremote + ["cp", *by_dir[remote_dir], f":{remote_dir}/"]))
    for name in [*sorted(tops), "config.json"]:
        plan.steps.append(Step(mpremote + ["cp", _disp(board_dir / name), ":" + name]))
    if key_on_host:
        plan.steps.append(Step(mpremote + ["cp", _disp(board_dir / KEY_FILE), ":" + KEY_FILE]))
    plan.steps.append(Step(mpremote + ["exec", NODE_ID_CODE], capture=True))
    return plan


def board_script(dirs: list[str]) -> str:
    """board_clean.py with the directories to create filled in."""
    text = CLEAN_SCRIPT.read_text(encoding="utf-8")
    listed = "".join(f'"{d}", ' for d in dirs)
    return re.sub(r"(?m)^DIRS = \(\).*$", f"DIRS = ({listed})", text, count=1)


# --- config generation ---------------------------------------------------------------


def _parse_set(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        _bad_arg(f"--set {item!r} is not KEY=VALUE (e.g. --set capacities.peers=64)")
    key, raw = item.split("=", 1)
    parts = key.split(".")
    if not all(parts):
        _bad_arg(f"--set {item!r} has an empty key part")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return parts, value


def _read_network_key(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        _bad_arg(
            f"network key file {path} does not exist "
            f"(make one with: python -m tools.deploy keygen --out {path})"
        )
    except OSError as e:
        _bad_arg(f"cannot read network key file {path}: {e.strerror or e.__class__.__name__}")
    except UnicodeDecodeError:
        _bad_arg(f"network key file {path} is not text (need 64 hex characters)")
    return text


def build_config(
    *,
    base: Path | None,
    board: str | None,
    region: str | None,
    role: str | None,
    network_key: str | None,
    network_key_file: Path | None,
    overrides: dict[str, Any],
    sets: tuple[str, ...],
) -> dict[str, Any]:
    """Merge a base config file, the options and --set items; return the validated config."""
    raw: dict[str, Any] = {}
    if base is not None:
        try:
            loaded = json.loads(base.read_text(encoding="utf-8"))
        except OSError as e:
            _bad_arg(f"cannot read --config {base}: {e.strerror or e.__class__.__name__}")
        except ValueError as e:
            _bad_arg(f"--config {base} is not valid JSON ({str(e).splitlines()[0]})")
        if not isinstance(loaded, dict):
            _bad_arg(f"--config {base} is not a JSON object")
        raw.update(loaded)
    if board is not None:
        if "board" in raw and raw["board"] != board:
            _bad_arg(f"--board {board} does not match board {raw['board']!r} in --config {base}")
        raw["board"] = board
    for key, value in (("region", region), ("role", role)):
        if value is not None:
            raw[key] = value
    if network_key is not None and network_key_file is not None:
        _bad_arg("give --network-key or --network-key-file, not both")
    if network_key_file is not None:
        raw["network_key"] = _read_network_key(network_key_file)
    elif network_key is not None:
        raw["network_key"] = network_key
    for key, value in overrides.items():
        if value is not None:
            raw[key] = value
    for item in sets:
        parts, value = _parse_set(item)
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    if "network_key" not in raw:
        _bad_arg(
            "no network key: pass --network-key-file FILE "
            "(make one with: python -m tools.deploy keygen --out network.key)"
        )
    result: dict[str, Any] = fw_config.validate(raw)
    # The gateway refuses such a key (loragate.config): refuse it before it is on a board.
    weakness = key_weakness(bytes.fromhex(result["network_key"]))
    if weakness is not None:
        _bad_arg(
            f"the network key {weakness}: make a random one with: "
            "python -m tools.deploy keygen --out network.key"
        )
    return result


def config_json(cfg: dict[str, Any]) -> str:
    return json.dumps(cfg, sort_keys=True, indent=1) + "\n"


# --- keys ------------------------------------------------------------------------------


def node_id_for_seed(seed: bytes) -> str:
    """node_id = sha256(ed25519 public key)[:8], as hex (see notes/wire.md)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


# --- running ---------------------------------------------------------------------------


def _check_port(port: str, dry_run: bool) -> None:
    if not _PORT_RE.match(port):
        _bad_arg(
            f"--port {port!r} is not a serial port "
            "(e.g. /dev/ttyUSB0, /dev/ttyACM0, COM3, auto, u0)"
        )
    if not dry_run and port.startswith("/dev/") and not os.path.exists(port):
        _bad_arg(f"--port {port} does not exist (is the board plugged in?)")


def _tool(name: str) -> str:
    override = os.environ.get(TOOL_ENV.get(name, ""))
    if override:
        return override
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        _fail(f"{name} not found (pip install {name})")
    return found


def _prepare_build_dir(build_dir: Path) -> None:
    """Empty `build_dir` for a new stage, but only if it is ours (or new, or empty)."""
    if build_dir.exists():
        if not build_dir.is_dir():
            _fail(f"--build-dir {build_dir} is not a directory")
        if any(build_dir.iterdir()) and not (build_dir / MARKER).exists():
            _fail(f"--build-dir {build_dir} is not empty and not a deploy build directory")
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    (build_dir / MARKER).write_text("staging area of python -m tools.deploy\n")


def stage(plan: Plan, build_dir: Path, cfg: dict[str, Any], seed: bytes | None) -> None:
    _prepare_build_dir(build_dir)
    (build_dir / CLEAN_SCRIPT.name).write_text(board_script(plan.dirs), encoding="utf-8")
    for src, dst in plan.copies:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    for remote_dir in plan.dirs:
        (plan.board_dir / remote_dir).mkdir(parents=True, exist_ok=True)
    (plan.board_dir / "config.json").write_text(
        config_json(fw_config.board_config(cfg)), encoding="utf-8"
    )
    if seed is not None:
        key_path = plan.board_dir / KEY_FILE
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(seed)


def run_steps(steps: list[Step]) -> str | None:
    """Run the steps in order, stop at the first failure; return the node id the board printed."""
    tools = {name: _tool(name) for name in sorted({s.argv[0] for s in steps})}
    node_id = None
    for step in steps:
        argv = [tools[step.argv[0]], *step.argv[1:]]
        click.echo(f"+ {step.line()}", err=True)
        if step.argv[0] == "mpy-cross":
            Path(argv[argv.index("-o") + 1]).parent.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run(argv, capture_output=step.capture, text=True, check=False)
        except OSError as e:
            _fail(f"cannot run {step.argv[0]}: {e.strerror}")
        if proc.returncode != 0 and ROMFS_TAG in step.argv[-1]:
            _fail(NO_ROMFS)  # rom_ioctl raised: no partition either
        if proc.returncode != 0:
            detail = ""
            if step.capture:
                lines = (proc.stderr or proc.stdout or "").strip().splitlines()
                detail = f": {lines[-1]}" if lines else ""
            _fail(f"step failed (exit {proc.returncode}): {step.line()}{detail}")
        if step.capture:
            answers = {}
            for out_line in (proc.stdout or "").splitlines():
                parts = out_line.split()
                if len(parts) == 2:
                    answers[parts[0]] = parts[1]
            if ROMFS_TAG in step.argv[-1]:
                if (
                    not answers.get(ROMFS_TAG, "0").lstrip("-").isdigit()
                    or int(answers.get(ROMFS_TAG, "0")) <= 0
                ):
                    _fail(NO_ROMFS)
                continue
            node_id = answers.get(NODE_ID_TAG)
            if node_id is None:
                _fail("the board did not print its node id (is loranode.identity deployed?)")
    return node_id


# --- click ---------------------------------------------------------------------------


def _config_options(f: Any) -> Any:
    options = [
        click.option("--region", type=_REGION_CHOICE, help="radio region (legal limits)"),
        click.option("--role", type=click.Choice(list(fw_config.ROLES)), help="node or bridge"),
        click.option("--frequency-hz", type=int, help="centre frequency (default: region's)"),
        click.option("--sf", type=int, help="spreading factor 7..12"),
        click.option("--bandwidth-hz", type=int, help="125000, 250000 or 500000"),
        click.option("--coding-rate", type=int, help="5..8 (4/5..4/8)"),
        click.option("--tx-power-dbm", type=int, help="output power (region and board limits)"),
        click.option("--network-key", help="network key, 64 hex characters"),
        click.option(
            "--network-key-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="file holding the network key (64 hex characters)",
        ),
        click.option(
            "--config",
            "base",
            type=click.Path(path_type=Path, dir_okay=False),
            help="JSON config to start from (options override it)",
        ),
        click.option(
            "--set",
            "sets",
            multiple=True,
            metavar="KEY=VALUE",
            help="any config key, dotted for sections: --set capacities.peers=64",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _config_from(board: str | None, kw: dict[str, Any]) -> dict[str, Any]:
    return build_config(
        base=kw.pop("base"),
        board=board,
        region=kw.pop("region"),
        role=kw.pop("role"),
        network_key=kw.pop("network_key"),
        network_key_file=kw.pop("network_key_file"),
        sets=kw.pop("sets"),
        overrides={
            "frequency_hz": kw.pop("frequency_hz"),
            "sf": kw.pop("sf"),
            "bandwidth_hz": kw.pop("bandwidth_hz"),
            "coding_rate": kw.pop("coding_rate"),
            "tx_power_dbm": kw.pop("tx_power_dbm"),
        },
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Deploy Lorachain firmware to LoRa boards with mpremote."""


@cli.command("config")
@click.option("--board", type=_BOARD_CHOICE, help="board preset (or custom + --set pins.*)")
@_config_options
def config_cmd(board: str | None, **kw: Any) -> None:
    """Generate and validate a board config.json on stdout."""
    click.echo(config_json(_config_from(board, kw)), nl=False)


@cli.command("keygen")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="write the key to this file, readable by you only (0600); never replaces one",
)
def keygen_cmd(out: Path | None) -> None:
    """Make a new random network key (64 hex characters): to FILE with --out, else stdout."""
    key = os.urandom(KEY_BYTES).hex() + "\n"
    if out is None:
        click.echo(key, nl=False)
        return
    write_secret(out, key.encode("ascii"))
    click.echo(f"wrote {out} (mode 0600): give it to every board and to the gateway", err=True)


def write_secret(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 from the start (never wider, not even for a moment);
    an existing file is left alone (ArgumentError): it may be the key a mesh uses."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        _bad_arg(f"{path} already exists: keep it (every board of the mesh uses it) or remove it")
    except OSError as e:
        _bad_arg(f"cannot create {path}: {e.strerror}")
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@cli.command("flash")
@click.option("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0")
@click.option("--board", type=_BOARD_CHOICE, help="board preset (may come from --config instead)")
@click.option(
    "--romfs",
    is_flag=True,
    help="ship lorawire and loranode as one ROMFS image run in place from flash "
    "(custom firmware with a ROMFS partition; stock ESP32 firmware has none: refused)",
)
@click.option(
    "--key-on-host/--key-on-board",
    default=False,
    help="generate the node key here and copy it (replaces the node's identity), "
    "or let the board create it at first boot (default)",
)
@click.option("--dry-run", is_flag=True, help="print the commands, run nothing")
@click.option(
    "--build-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("build/deploy"),
    show_default=True,
    help="host staging directory (emptied on each run)",
)
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=ROOT,
    hidden=True,
    help="source tree holding shared/ and firmware/",
)
@_config_options
def flash_cmd(
    port: str,
    board: str | None,
    romfs: bool,
    key_on_host: bool,
    dry_run: bool,
    build_dir: Path,
    root: Path,
    **kw: Any,
) -> None:
    """Install drivers, copy code + config, provision the key, print the node id."""
    _check_port(port, dry_run)
    cfg = _config_from(board, kw)
    if cfg.get("sim"):
        _bad_arg("config has a sim section: that is for the unix port (radio_sim is not deployed)")
    build_dir = build_dir.absolute()
    plan = plan_flash(
        port=port,
        preset=fw_config.radio(cfg),
        root=root.absolute(),
        build_dir=build_dir,
        key_on_host=key_on_host,
        romfs=romfs,
    )
    if dry_run:
        for step in plan.steps:
            click.echo(step.line())
        return
    seed = os.urandom(KEY_BYTES) if key_on_host else None
    try:
        stage(plan, build_dir, cfg, seed)
        node_id = run_steps(plan.steps)
    finally:
        key_path = plan.board_dir / KEY_FILE
        if key_path.exists():  # a private key never stays on the host
            key_path.unlink()
    if seed is not None and node_id != node_id_for_seed(seed):
        _fail(
            f"board reports node id {node_id}, the provisioned key gives {node_id_for_seed(seed)}"
        )
    click.echo(f"node id: {node_id}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: click errors and deploy errors become one line and a non-zero exit."""
    try:
        cli.main(args=argv, prog_name="python -m tools.deploy", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("deploy: aborted", err=True)
        sys.exit(1)
    except click.exceptions.NoArgsIsHelpError as e:  # no command given: show the help
        click.echo(e.format_message(), err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        # one line: click joins long lists with newlines and tabs (Missing option ...)
        click.echo("deploy: " + " ".join(e.format_message().split()), err=True)
        sys.exit(e.exit_code)
    except fw_config.ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(2)
    except DeployError as e:
        click.echo(f"deploy: {e}", err=True)
        sys.exit(e.exit_code)
