"""Deploy tool (tools/deploy): dry-run command lines per board and option, generated
configs, staging, key handling and one-line errors.

No board is attached here: the real-run tests put a stand-in `mpremote` first (through
LORACHAIN_MPREMOTE) that keeps the board's filesystem in a directory, so the files the
tool would copy can be checked, and the .mpy files it compiles are imported by the real
MicroPython unix port.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tools.deploy import cli, romfs
from upy import micropython_binary

ROOT = Path(__file__).resolve().parents[2]
KEY = hashlib.sha256(b"deploy test mesh").hexdigest()
PORT = "/dev/ttyUSB0"
NODE_ID_LINE = (
    "mpremote connect {port} exec 'import binascii, loranode.identity as i; "
    'print("NODE_ID", binascii.hexlify(i.load_or_create().id).decode())\''
)
DRIVER = {
    "heltec-v2": "lora-sx127x",
    "heltec-v3": "lora-sx126x",
    "tbeam-sx1276": "lora-sx127x",
    "tbeam-sx1262": "lora-sx126x",
    "ttgo-lora32-v21": "lora-sx127x",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small source tree shaped like the repository (files the tool must pick up)."""
    root = tmp_path / "src"
    files = {
        "shared/lorawire/__init__.py": "",
        "shared/lorawire/codec.py": "X = 1\n",
        "shared/lorawire/_fastcodec.py": "import msgpack\n",  # CPython only: never shipped
        "shared/lorawire/handshake.py": "",  # the gateway's TCP handshake: never shipped
        "shared/lorawire/__pycache__/codec.cpython-311.pyc": "junk",
        "shared/lorawire/README.txt": "not code",
        "firmware/main.py": "import loranode\n",
        "firmware/boot.py": "",
        "firmware/mypy.ini": "[mypy]\n",
        "firmware/loranode/__init__.py": "",
        "firmware/loranode/node.py": "Y = 2\n",
        "firmware/loranode/radio_sim.py": "",  # unix port only: never shipped
        "firmware/loranode/radio/__init__.py": "",
        "firmware/loranode/radio/sx.py": "Z = 3\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "network.key"
    path.write_text(KEY + "\n")
    return path


def flash_args(board: str, tree: Path, build: Path, key_file: Path, *extra: str) -> list[str]:
    return [
        "flash",
        "--port",
        PORT,
        "--board",
        board,
        "--region",
        "EU868",
        "--network-key-file",
        str(key_file),
        "--root",
        str(tree),
        "--build-dir",
        str(build),
        *extra,
    ]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    cli.main(args)
    captured = capsys.readouterr()
    return captured.out, captured.err


MPY = "mpy-cross -O3 -march=xtensawin -o"


def compile_lines(tree: Path, dest: Path) -> list[str]:
    """The mpy-cross lines for the `tree` fixture: every shipped package module."""
    s = tree / "shared" / "lorawire"
    f = tree / "firmware" / "loranode"
    return [
        f"{MPY} {dest}/lorawire/__init__.mpy {s}/__init__.py",
        f"{MPY} {dest}/lorawire/codec.mpy {s}/codec.py",
        f"{MPY} {dest}/loranode/__init__.mpy {f}/__init__.py",
        f"{MPY} {dest}/loranode/node.mpy {f}/node.py",
        f"{MPY} {dest}/loranode/radio/__init__.mpy {f}/radio/__init__.py",
        f"{MPY} {dest}/loranode/radio/sx.mpy {f}/radio/sx.py",
    ]


def expected_lines(board: str, build: Path, tree: Path, *, key_on_host: bool = False) -> list[str]:
    """Every line for the `tree` fixture: compile, then mpremote with one `cp` per board
    directory (packages as .mpy, main.py and boot.py as source)."""
    mp = f"mpremote connect {PORT}"
    b = build / "board"
    ext = "mpy"
    lines = compile_lines(tree, b) + [
        f"{mp} mip install {DRIVER[board]} lora-async",
        f"{mp} run {build}/board_clean.py",
        f"{mp} cp {b}/loranode/__init__.{ext} {b}/loranode/node.{ext} :loranode/",
        f"{mp} cp {b}/loranode/radio/__init__.{ext} {b}/loranode/radio/sx.{ext} :loranode/radio/",
        f"{mp} cp {b}/lorawire/__init__.{ext} {b}/lorawire/codec.{ext} :lorawire/",
        f"{mp} cp {b}/boot.py :boot.py",
        f"{mp} cp {b}/main.py :main.py",
        f"{mp} cp {b}/config.json :config.json",
    ]
    if key_on_host:
        lines.append(f"{mp} cp {b}/key.bin :key.bin")
    lines.append(NODE_ID_LINE.format(port=PORT))
    return lines


@pytest.mark.parametrize("board", sorted(DRIVER))
def test_dry_run_lines_per_preset(board, tree, tmp_path, key_file, capsys):
    build = tmp_path / "build"
    out, _ = run_main(flash_args(board, tree, build, key_file, "--dry-run"), capsys)
    assert out.splitlines() == expected_lines(board, build, tree)
    assert not build.exists(), "a dry run must not stage anything"
    assert not [x for x in out.splitlines() if " cp " in x and "/lor" in x and ".py " in x]


@pytest.mark.parametrize("board", sorted(DRIVER))
def test_generated_config_validates(board, key_file, capsys):
    out, _ = run_main(
        ["config", "--board", board, "--region", "EU868", "--network-key-file", str(key_file)],
        capsys,
    )
    cfg = json.loads(out)
    assert cli.fw_config.validate(cfg) == cfg
    assert cfg["board"] == board and cfg["network_key"] == KEY


def test_dry_run_key_on_host_adds_key_copy(tree, tmp_path, key_file, capsys):
    build = tmp_path / "build"
    args = flash_args("heltec-v3", tree, build, key_file, "--dry-run", "--key-on-host")
    out, _ = run_main(args, capsys)
    assert out.splitlines() == expected_lines("heltec-v3", build, tree, key_on_host=True)


def test_dry_run_romfs_builds_one_image_and_deploys_it(tree, tmp_path, key_file, capsys):
    build = tmp_path / "build"
    out, _ = run_main(
        flash_args("heltec-v3", tree, build, key_file, "--dry-run", "--romfs"), capsys
    )
    r = build / "rom"
    mp = f"mpremote connect {PORT}"
    b = build / "board"
    assert out.splitlines() == [
        f"{mp} exec {shlex.quote(cli.ROMFS_CHECK_CODE)}",  # first: is there a partition?
        *compile_lines(tree, r),
        f"mpremote romfs --no-mpy -o {build}/firmware.romfs build {r}",
        f"{mp} mip install lora-sx126x lora-async",
        f"{mp} run {build}/board_clean.py",
        f"{mp} romfs deploy {build}/firmware.romfs",
        f"{mp} cp {b}/boot.py :boot.py",
        f"{mp} cp {b}/main.py :main.py",
        f"{mp} cp {b}/config.json :config.json",
        NODE_ID_LINE.format(port=PORT),
    ]


def test_romfs_image_holds_the_firmware_packages_and_runs_on_the_unix_port(tmp_path, upy):
    """The image tools.deploy.romfs builds mounts with vfs.VfsRom and imports in place."""
    image = tmp_path / "fw.romfs"
    size = romfs.write_image(image)
    assert size == image.stat().st_size and image.read_bytes().startswith(b"\xd2\xcd\x31")
    code = (
        "import os, sys, vfs\n"
        f"img = open({str(image)!r}, 'rb').read()\n"
        "vfs.mount(vfs.VfsRom(img), '/rom')\n"
        "sys.path[:] = ['/rom', '.frozen']\n"
        "import lorawire.frame, loranode.node\n"
        "print(sorted(os.listdir('/rom')), loranode.node.__file__)\n"
        "print(sorted(os.listdir('/rom/lorawire')))\n"
    )
    first, second = upy(code, heap="1M").stdout.splitlines()
    assert first == "['loranode', 'lorawire'] /rom/loranode/node.mpy"
    shipped = set(ast.literal_eval(second))
    expected = {
        p.with_suffix(".mpy").name
        for p in (ROOT / "shared" / "lorawire").glob("*.py")
        if f"lorawire/{p.name}" not in romfs.CPYTHON_ONLY
    }
    assert shipped == expected and "_fastcodec.mpy" not in shipped


def test_dry_run_paths_relative_to_working_directory(tree, tmp_path, key_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out, _ = run_main(flash_args("heltec-v2", tree, Path("out"), key_file, "--dry-run"), capsys)
    lines = out.splitlines()
    assert lines[0] == "mpy-cross -O3 -march=xtensawin -o out/board/lorawire/__init__.mpy " + (
        "src/shared/lorawire/__init__.py"
    )
    assert f"mpremote connect {PORT} cp out/board/config.json :config.json" in lines


def test_dry_run_with_config_file_and_set(tree, tmp_path, key_file, capsys):
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"board": "heltec-v3", "region": "US915", "role": "bridge"}))
    out, _ = run_main(
        [
            "config",
            "--config",
            str(base),
            "--network-key",
            KEY,
            "--set",
            "capacities.peers=64",
            "--set",
            "uart.baud=921600",
            "--sf",
            "7",
        ],
        capsys,
    )
    cfg = json.loads(out)
    # US915 125 kHz allows SF7 only: the 187-byte ANNOUNCE must fit the 400 ms dwell limit
    assert (cfg["region"], cfg["role"], cfg["sf"]) == ("US915", "bridge", 7)
    assert cfg["capacities"]["peers"] == 64 and cfg["uart"]["baud"] == 921600


def test_custom_board_from_set_options(key_file, capsys):
    pins = {"chip": "sx1262", "sck": 9, "mosi": 10, "miso": 11, "cs": 8, "busy": 13, "dio1": 14}
    sets = [x for k, v in pins.items() for x in ("--set", f"pins.{k}={json.dumps(v)}")]
    out, _ = run_main(
        ["config", "--board", "custom", "--region", "EU868", "--network-key-file", str(key_file)]
        + sets,
        capsys,
    )
    cfg = json.loads(out)
    assert cfg["pins"]["chip"] == "sx1262" and cfg["pins"]["busy"] == 13


def test_keygen_prints_fresh_hex_key(capsys):
    first, _ = run_main(["keygen"], capsys)
    second, _ = run_main(["keygen"], capsys)
    assert len(first.strip()) == 64 and bytes.fromhex(first.strip())
    assert first != second


def test_keygen_out_writes_a_file_only_its_owner_reads(tmp_path: Path) -> None:
    out = tmp_path / "network.key"
    old = os.umask(0o022)  # the usual umask, under which `keygen > file` gives 0644
    try:
        made = run_cli("keygen", "--out", str(out))
    finally:
        os.umask(old)
    assert made.returncode == 0, made.stderr
    assert made.stdout == ""  # the key goes to the file only
    assert (out.stat().st_mode & 0o777) == 0o600
    key = out.read_text().strip()
    assert len(key) == 64 and bytes.fromhex(key) and key not in made.stderr
    again = run_cli("keygen", "--out", str(out))
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "already exists" in again.stderr and out.read_text().strip() == key


def test_a_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    missing = tmp_path / "network.key"
    made = run_cli(
        "flash", "--port", PORT, "--board", "heltec-v3", "--region", "EU868",
        "--network-key-file", str(missing), "--dry-run",
    )  # fmt: skip
    assert made.returncode == 2 and made.stdout == ""
    assert made.stderr == (
        f"deploy: network key file {missing} does not exist "
        f"(make one with: python -m tools.deploy keygen --out {missing})\n"
    )


def test_the_board_may_come_from_the_config_file(tmp_path: Path, key_file: Path) -> None:
    made = run_cli(
        "config", "--board", "heltec-v3", "--region", "EU868", "--network-key-file", str(key_file)
    )
    assert made.returncode == 0, made.stderr
    base = tmp_path / "board.json"
    base.write_text(made.stdout)
    common = ["--port", PORT, "--network-key-file", str(key_file), "--dry-run"]
    from_config = run_cli("flash", "--config", str(base), *common)
    named = run_cli("flash", "--board", "heltec-v3", "--region", "EU868", *common)
    assert from_config.returncode == named.returncode == 0, from_config.stderr
    assert from_config.stdout == named.stdout
    neither = run_cli("flash", "--region", "EU868", *common)
    assert neither.returncode == 2 and neither.stderr.count("\n") == 1
    assert neither.stderr.startswith("config: board is missing (one of heltec-v2, ")


def test_board_choices_are_one_line_without_tabs() -> None:
    # click lists the choices of a missing option with newlines and tabs; --board is
    # no longer required, and every click message is joined into one plain line.
    for args in (["flash", "--port", PORT, "--board", "nope"], ["config", "--board", "nope"]):
        made = run_cli(*args)
        assert made.returncode == 2 and made.stderr.count("\n") == 1
        assert "\t" not in made.stderr and "'heltec-v3', 'tbeam-sx1262'" in made.stderr


# The digits of pi: a leak of any 6 of them in a row is found in any output.
PI = "31415926535897932384626433832795028841971693993751058209749445923078164062862"
WEAK_KEYS = {
    "all zeros": "00" * 32,
    "one byte repeated": "11" * 32,
    "counting": bytes(range(32)).hex(),
    "pi repeated (16 digits)": PI[:16] * 4,
}
BAD_KEYS = {"too short": PI[:40], "too long": PI[:70], "not hex": PI[:60] + "zzzz"}


def _leaks(secret: str, text: str) -> list[str]:
    return sorted({secret[i : i + 6] for i in range(len(secret) - 5)} & _pieces(text))


def _pieces(text: str) -> set[str]:
    low = text.lower()
    return {low[i : i + 6] for i in range(len(low) - 5)}


@pytest.mark.parametrize("key", [*WEAK_KEYS.values(), *BAD_KEYS.values()],
                         ids=[*WEAK_KEYS, *BAD_KEYS])  # fmt: skip
@pytest.mark.parametrize("where", ["flag", "file", "set"])
def test_weak_or_malformed_keys_are_refused_and_never_shown(
    tmp_path: Path, key: str, where: str
) -> None:
    # issue 13: the gateway refuses a key anyone could guess; so does the tool that puts
    # it on the boards, in one line, with no digit of it.
    given = {
        "flag": ["--network-key", key],
        "file": ["--network-key-file", str(tmp_path / "k")],
        "set": ["--set", f'network_key="{key}"'],
    }[where]
    (tmp_path / "k").write_text(key + "\n")
    for command in (["config"], ["flash", "--port", PORT, "--dry-run"]):
        made = run_cli(*command, "--board", "heltec-v3", "--region", "EU868", *given)
        assert made.returncode == 2 and made.stdout == "", made.stdout
        assert made.stderr.count("\n") == 1, made.stderr
        assert _leaks(key, made.stderr) == [], made.stderr
        if key in WEAK_KEYS.values():
            assert "keygen --out" in made.stderr, made.stderr
            assert "not a random key" in made.stderr or "all zeros" in made.stderr
        else:
            assert "need 64 hex characters" in made.stderr, made.stderr


def test_one_way_to_ship_code_so_mpy_with_romfs_is_refused(key_file: Path) -> None:
    # flash always ships .mpy files (or, with --romfs, one image of them); `--mpy`, which
    # once could be given with --romfs, is refused in one line (issue 13).
    common = ["flash", "--port", PORT, "--board", "heltec-v3", "--region", "EU868",
              "--network-key-file", str(key_file), "--dry-run"]  # fmt: skip
    for extra in (["--mpy", "--romfs"], ["--romfs", "--mpy"], ["--mpy"]):
        made = run_cli(*common, *extra)
        assert made.returncode == 2 and made.stdout == "", made.stdout
        assert made.stderr == "deploy: No such option '--mpy'.\n"
    assert run_cli(*common, "--romfs").returncode == 0


# --- modules a board never runs are not shipped ------------------------------------------


def _board_modules() -> list[Path]:
    """Every module of the real tree (packages and main/boot) a plain deploy would copy."""
    return [src for src, _ in cli.deployed_sources(ROOT)]


@pytest.mark.parametrize("mode", [(), ("--romfs",)], ids=["mpy", "romfs"])
def test_excluded_modules_are_not_shipped(mode, tmp_path, key_file, capsys):
    build = tmp_path / "build"
    out, _ = run_main(flash_args("heltec-v3", ROOT, build, key_file, "--dry-run", *mode), capsys)
    # every package module is compiled by one mpy-cross line
    words = [line.split() for line in out.splitlines() if line.startswith("mpy-cross ")]
    sources = {(Path.cwd() / w[-1]).relative_to(ROOT).as_posix() for w in words}
    shipped = {s.removeprefix("shared/").removeprefix("firmware/") for s in sources}
    packaged = {
        src.relative_to(src.parents[1]).as_posix()
        for src in _board_modules()
        if src.parent.name in ("lorawire", "loranode")
    }
    assert romfs.BOARD_EXCLUDE <= packaged  # the list names real modules
    assert shipped == packaged - romfs.BOARD_EXCLUDE
    for name in ("_fastcodec", "_ed25519_fast", "handshake", "radio_sim"):
        assert f"/{name}." not in out


def _guarded_imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(module, guarded) for every import: guarded = inside a try, an if or a function."""
    found: list[tuple[str, bool]] = []

    def walk(node: ast.AST, guarded: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, guarded) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.append((child.module, guarded))
                found.extend((f"{child.module}.{a.name}", guarded) for a in child.names)
            inner = isinstance(child, ast.Try | ast.If | ast.FunctionDef | ast.AsyncFunctionDef)
            walk(child, guarded or inner)

    walk(tree, False)
    return found


def test_board_code_imports_excluded_modules_only_behind_a_guard():
    """Nothing a board runs needs an excluded module: the handshake is never imported, the
    others only where a CPython or unix-port check (try/except ImportError, `if cfg["sim"]`)
    keeps a board away from them."""
    excluded = {x.removesuffix(".py").replace("/", ".") for x in romfs.BOARD_EXCLUDE}
    shipped = [src for src in _board_modules() if romfs.ships(src.relative_to(src.parents[1]))]
    seen = set()
    for src in shipped:
        for module, guarded in _guarded_imports(ast.parse(src.read_text())):
            if module in excluded:
                seen.add(module)
                assert module != "lorawire.handshake", f"{src} imports the gateway handshake"
                assert guarded, f"{src} imports {module} unconditionally"
    assert "loranode.radio_sim" in seen  # the scan does find the simulator's import


@pytest.mark.upy
def test_staged_board_tree_imports_without_excluded_modules(tmp_path, key_file):
    """Every shipped module imports on the unix port with only the shipped files on the path."""
    build = tmp_path / "build"
    cfg = cli.build_config(
        base=None,
        board="heltec-v3",
        region="EU868",
        role=None,
        network_key=KEY,
        network_key_file=None,
        overrides={},
        sets=(),
    )
    plan = cli.plan_flash(
        port=PORT,
        preset=cli.fw_config.radio(cfg),
        root=ROOT,
        build_dir=build,
        key_on_host=False,
    )
    cli.stage(plan, build, cfg, None)
    cli.run_steps([s for s in plan.steps if s.argv[0] == "mpy-cross"])
    board = build / "board"
    assert not list(board.glob("*/*.py"))  # the packages are staged compiled only
    names = sorted(
        p.relative_to(board).with_suffix("").as_posix().replace("/", ".")
        for p in board.glob("*/*.mpy")
    )
    assert "lorawire.codec" in names and "loranode.radio_sim" not in names
    code = (
        "bad = []\n"
        f"for m in {names!r}:\n"
        "    try:\n"
        "        __import__(m)\n"
        "    except ImportError as e:\n"
        "        bad.append((m, str(e)))\n"
        "print('BAD', bad)\n"
        "import lorawire.codec\n"
        "print('CODEC', lorawire.codec.BACKEND)\n"
    )
    env = dict(os.environ, MICROPYPATH=f"{board}:.frozen")  # no shared/ or firmware/
    proc = subprocess.run(
        [micropython_binary(), "-X", "heapsize=1M", "-c", code],
        cwd=board,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["BAD []", "CODEC pure"]


@pytest.mark.slow  # compiles every module (3 s idle, more on a busy machine)
def test_romfs_board_image_leaves_out_the_unix_port_radio():
    assert b"radio_sim.mpy" not in romfs.build_image(board=True)


def test_flash_refuses_a_sim_config(tmp_path, key_file, capsys):
    args = flash_args("heltec-v3", ROOT, tmp_path / "build", key_file, "--dry-run")
    args += ["--set", "sim.medium_port=47000", "--set", "sim.name=n0"]
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "sim section" in captured.err


# --- `make flash ... DRY_RUN=1` ---------------------------------------------------------


def _make_flash(key_file: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    # -s: no recipe echo, so stdout is the tool's own; -o: never rebuild the venv from a test.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    argv = ["make", "-s", "--no-print-directory", "-o", ".venv/.installed", "flash"]
    argv += [f"PORT={PORT}", "BOARD=heltec-v3", f"NETWORK_KEY={key_file}", *variables]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _cli_flash(key_file: Path, *options: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tools.deploy", "flash", "--port", PORT, "--board", "heltec-v3"]
    argv += ["--network-key-file", str(key_file), *options]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.parametrize(
    ("variables", "options"),
    [
        (("REGION=EU868", "DRY_RUN=1"), ("--region", "EU868", "--dry-run")),
        (
            ("REGION=US915", "KEY_ON_HOST=1", "DRY_RUN=1"),
            ("--region", "US915", "--key-on-host", "--dry-run"),
        ),
        (("REGION=EU868", "ROMFS=1", "DRY_RUN=1"), ("--region", "EU868", "--romfs", "--dry-run")),
    ],
    ids=["plain", "key-on-host", "romfs"],
)
def test_make_flash_dry_run_prints_what_the_cli_prints(variables, options, key_file):
    made = _make_flash(key_file, *variables)
    direct = _cli_flash(key_file, *options)
    assert made.returncode == direct.returncode == 0, made.stderr + direct.stderr
    assert made.stdout == direct.stdout
    lines = made.stdout.splitlines()
    assert lines[-1] == NODE_ID_LINE.format(port=PORT)
    assert f"mpremote connect {PORT} mip install lora-sx126x lora-async" in lines
    assert any(x.startswith("mpy-cross -O3 -march=xtensawin ") for x in lines)
    assert not any(" cp " in x and "/lorawire/" in x and ".py " in x for x in lines)
    assert any(" romfs deploy " in x for x in lines) == ("ROMFS=1" in variables)
    assert any(x.endswith(" :key.bin") for x in lines) == ("KEY_ON_HOST=1" in variables)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_flash_without_arguments_names_what_it_needs():
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    argv = ["make", "-s", "--no-print-directory", "-o", ".venv/.installed", "flash"]
    made = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode != 0 and made.stdout == ""
    first = made.stderr.splitlines()[0]
    assert first.startswith("error: make flash needs PORT, BOARD and REGION, e.g. make flash ")
    assert "--board" not in made.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_flash_without_region_fails_in_one_line(key_file):
    made = _make_flash(key_file, "DRY_RUN=1")
    direct = _cli_flash(key_file, "--dry-run")
    assert direct.returncode == 2 and direct.stdout == ""
    assert direct.stderr.startswith("config: region is missing")
    assert made.returncode != 0 and made.stdout == ""
    assert made.stderr.splitlines()[0] == direct.stderr.strip()


# --- command-line errors: one line on stderr, non-zero exit, no traceback -----------------


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "tools.deploy", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


BAD_ARGS = [
    (
        "unknown-board",
        ["flash", "--port", PORT, "--board", "heltec-v9", "--region", "EU868"],
        "'heltec-v9' is not one of",
    ),
    (
        "bad-port",
        [
            "flash",
            "--port",
            "not a port",
            "--board",
            "heltec-v3",
            "--region",
            "EU868",
            "--network-key",
            KEY,
            "--dry-run",
        ],
        "--port 'not a port' is not a serial port",
    ),
    (
        "missing-port-device",
        [
            "flash",
            "--port",
            "/dev/ttyNOPE9",
            "--board",
            "heltec-v3",
            "--region",
            "EU868",
            "--network-key",
            KEY,
        ],
        "/dev/ttyNOPE9 does not exist",
    ),
    (
        "bad-region",
        ["config", "--board", "heltec-v3", "--region", "EU999", "--network-key", KEY],
        "'EU999' is not one of",
    ),
    ("no-key", ["config", "--board", "heltec-v3", "--region", "EU868"], "no network key"),
    (
        "bad-key",
        ["config", "--board", "heltec-v3", "--region", "EU868", "--network-key", "abc"],
        "config: network_key has 3 characters",
    ),
    (
        "power",
        [
            "config",
            "--board",
            "heltec-v3",
            "--region",
            "EU868",
            "--network-key",
            KEY,
            "--tx-power-dbm",
            "30",
        ],
        "config: tx_power_dbm=30 is outside",
    ),
    ("missing-option", ["flash", "--board", "heltec-v3"], "Missing option '--port'"),
    (
        "bad-set",
        [
            "config",
            "--board",
            "heltec-v3",
            "--region",
            "EU868",
            "--network-key",
            KEY,
            "--set",
            "sf",
        ],
        "--set 'sf' is not KEY=VALUE",
    ),
    ("unknown-command", ["burn"], "No such command 'burn'"),
    (
        "config-not-json",
        ["config", "--config", "tests/../pyproject.toml", "--board", "heltec-v3"],
        "is not valid JSON",
    ),
]


@pytest.mark.parametrize(("name", "args", "fragment"), BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_one_line_no_traceback(name, args, fragment):
    proc = run_cli(*args)
    assert proc.returncode == 2  # usage / bad value; 1 is kept for failed steps
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert fragment in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_build_dir_that_is_not_ours_is_left_alone(tree, tmp_path, key_file, capsys):
    build = tmp_path / "precious"
    build.mkdir()
    (build / "thesis.tex").write_text("keep me")
    with pytest.raises(SystemExit) as exc:
        cli.main(flash_args("heltec-v3", tree, build, key_file, "--port", "u0"))
    assert exc.value.code == 1
    assert "not a deploy build directory" in capsys.readouterr().err
    assert (build / "thesis.tex").read_text() == "keep me"


# --- real runs against a stand-in board ---------------------------------------------------

# No board is attached here. This stand-in runs mpremote's own command line and file-copy
# code unchanged; only the serial connection is replaced: the board's filesystem is the
# directory FAKE_BOARD, and code sent to the board (`run`, `exec`) runs in the MicroPython
# unix port inside that directory. `mip install` only records the packages (no network).
FAKE_MPREMOTE = r"""#!{python}
import json, os, subprocess, sys
from pathlib import Path

from mpremote import main as mp_main

BOARD = Path(os.environ["FAKE_BOARD"])
with open(BOARD.parent / "mpremote.log", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
if sys.argv[3] == os.environ.get("FAKE_FAIL"):
    print("mpremote: failure", file=sys.stderr)
    sys.exit(1)


class DirTransport:
    in_raw_repl = True
    mounted = False
    device_name = "stand-in"

    def __init__(self):
        self.code = b""

    def path(self, p):
        return BOARD / p.lstrip("/")

    def enter_raw_repl(self, soft_reset=True):
        pass

    def exit_raw_repl(self):
        pass

    def close(self):
        pass

    def fs_stat(self, p):
        return os.stat(self.path(p))

    def fs_exists(self, p):
        return self.path(p).exists()

    def fs_isdir(self, p):
        return self.path(p).is_dir()

    def fs_mkdir(self, p):
        os.mkdir(self.path(p))

    def fs_hashfile(self, p, algo):
        raise OSError(2, "no hash")  # mpremote then copies the file

    def fs_writefile(self, p, data, progress_callback=None):
        if p.endswith("key.bin") and os.environ.get("FAKE_DROP_KEY"):
            return  # a board that silently loses the key
        self.path(p).write_bytes(data)

    def exec_raw_no_follow(self, code):
        self.code = code if isinstance(code, bytes) else code.encode()

    def follow(self, timeout, data_consumer=None):
        env = dict(os.environ, MICROPYPATH=f"{BOARD}:{BOARD}/lib:.frozen")
        proc = subprocess.run(
            [os.environ["FAKE_MICROPYTHON"], "-c", self.code.decode()],
            cwd=BOARD, capture_output=True, env=env,
        )
        if data_consumer:
            data_consumer(proc.stdout)
        return proc.stdout, (proc.stderr or b"error") if proc.returncode else b""


def connect(state, args=None):
    state.transport = DirTransport()


def mip(state, args):
    state.did_action()
    (BOARD / "lib").mkdir(exist_ok=True)
    for package in args.packages:
        (BOARD / "lib" / (package + ".installed")).write_text("")


mp_main._COMMANDS["connect"] = (connect, mp_main._COMMANDS["connect"][1])
mp_main._COMMANDS["mip"] = (mip, mp_main._COMMANDS["mip"][1])
sys.exit(mp_main.main())
"""


@pytest.fixture
def fake_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    board = tmp_path / "board-fs"
    board.mkdir()
    (board / "lorawire").mkdir()
    (board / "lorawire" / "stale.py").write_text("raise ImportError('stale file shadows .mpy')")
    script = tmp_path / "mpremote"
    script.write_text(FAKE_MPREMOTE.replace("{python}", sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("LORACHAIN_MPREMOTE", str(script))
    monkeypatch.setenv("FAKE_BOARD", str(board))
    monkeypatch.setenv("FAKE_MICROPYTHON", micropython_binary())
    return board


def node_id_of(seed: bytes) -> str:
    raw = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return hashlib.sha256(raw).digest()[:8].hex()


def real_args(board: str, build: Path, key_file: Path, *extra: str) -> list[str]:
    args = flash_args(board, ROOT, build, key_file, *extra)
    args[2] = "u0"  # an mpremote shortcut: no /dev path that must exist
    return args


def mpremote_log(tmp_path: Path) -> list[str]:
    lines = (tmp_path / "mpremote.log").read_text().splitlines()
    return [shlex.join(["mpremote", *json.loads(x)]) for x in lines]


@pytest.mark.upy
def test_flash_key_on_board_runs_what_dry_run_prints(tmp_path, key_file, fake_board, capsys):
    build = tmp_path / "build"
    dry, _ = run_main(real_args("heltec-v2", build, key_file, "--dry-run"), capsys)
    out, err = run_main(real_args("heltec-v2", build, key_file), capsys)
    assert mpremote_log(tmp_path) == [x for x in dry.splitlines() if x.startswith("mpremote ")]
    seed = (fake_board / "key.bin").read_bytes()  # made by the firmware on the board
    assert len(seed) == 32
    assert out == f"node id: {node_id_of(seed)}\n"
    assert err.count("+ ") == len(dry.splitlines())
    assert not (fake_board / "lorawire" / "stale.py").exists()
    assert sorted(p.name for p in fake_board.rglob("*.py")) == ["boot.py", "main.py"]
    shipped = sorted(p.relative_to(fake_board).as_posix() for p in fake_board.rglob("*.mpy"))
    every = sorted(
        [f"lorawire/{p.name}" for p in (ROOT / "shared" / "lorawire").glob("*.py")]
        + [f"loranode/{p.name}" for p in (ROOT / "firmware" / "loranode").glob("*.py")]
    )
    assert shipped == [p[:-3] + ".mpy" for p in every if p not in romfs.BOARD_EXCLUDE]
    assert romfs.BOARD_EXCLUDE < set(every)  # each excluded module exists (no stale name)
    assert not list(fake_board.rglob("__pycache__"))
    assert sorted(p.name for p in (fake_board / "lib").iterdir()) == [
        "lora-async.installed",
        "lora-sx127x.installed",
    ]
    cfg = json.loads((fake_board / "config.json").read_text())
    assert cfg["board"] == "heltec-v2" and cfg["radio"] == cli.fw_boards.get("heltec-v2")
    assert cfg["duty"] == {"budget_ms": 36000, "window_ms": 3600000, "dwell_ms": 0}
    written = {k: v for k, v in cfg.items() if k not in ("duty", "radio", "region_index")}
    assert cli.fw_config.validate(written) == written
    # redeploying keeps the board's identity
    out2, _ = run_main(real_args("heltec-v2", build, key_file), capsys)
    assert out2 == out and (fake_board / "key.bin").read_bytes() == seed


@pytest.mark.upy
def test_flash_key_on_host_and_the_board_reads_its_config(
    tmp_path, key_file, fake_board, capsys, upy
):
    """--key-on-host: compiled firmware on the board reports the host-made key's id, and
    reads the config the tool wrote with its own loader (no schema on the board)."""
    build = tmp_path / "build"
    out, _ = run_main(real_args("tbeam-sx1262", build, key_file, "--key-on-host"), capsys)
    seed = (fake_board / "key.bin").read_bytes()
    assert out == f"node id: {node_id_of(seed)}\n"
    assert not (build / "board" / "key.bin").exists(), "the private key must not stay on the host"
    assert (fake_board / "loranode" / "start.mpy").exists()
    assert not (fake_board / "loranode" / "config.mpy").exists()  # the schema stays here
    assert not list((fake_board / "loranode").glob("*.py"))
    assert not list((fake_board / "lorawire").glob("*.py"))
    code = (
        "from loranode import start\n"
        "c = start.load('config.json')\n"
        "print(c['board'], c['region'], c['radio']['busy'], start.__file__)\n"
    )
    words = upy(code, cwd=fake_board, path=[fake_board], heap="256K").stdout.split()
    assert words[:3] == ["tbeam-sx1262", "EU868", "32"]
    assert words[3].endswith(".mpy")


@pytest.mark.upy
def test_flash_romfs_on_a_board_without_a_romfs_partition_is_refused_in_one_line(
    tmp_path, key_file, fake_board, capsys
):
    """The unix port, like stock ESP32 firmware, has no vfs.rom_ioctl: the tool asks the
    board first and stops with one line naming the frozen-firmware route, having written
    nothing to the board."""
    before = sorted(p.relative_to(fake_board).as_posix() for p in fake_board.rglob("*"))
    with pytest.raises(SystemExit) as exc:
        cli.main(real_args("heltec-v2", tmp_path / "build", key_file, "--romfs"))
    assert exc.value.code != 0
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last == f"deploy: {cli.NO_ROMFS}"
    assert "Traceback" not in err
    assert not any(" romfs deploy " in x for x in mpremote_log(tmp_path))
    after = sorted(p.relative_to(fake_board).as_posix() for p in fake_board.rglob("*"))
    assert after == before


@pytest.mark.upy
def test_flash_node_id_mismatch_is_an_error(tmp_path, key_file, fake_board, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_DROP_KEY", "1")
    with pytest.raises(SystemExit) as exc:
        cli.main(real_args("heltec-v3", tmp_path / "build", key_file, "--key-on-host"))
    assert exc.value.code == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("deploy: board reports node id ")
    assert ", the provisioned key gives " in last
    assert not (tmp_path / "build" / "board" / "key.bin").exists()


def test_flash_failed_step_stops_and_removes_key(
    tmp_path, key_file, fake_board, capsys, monkeypatch
):
    monkeypatch.setenv("FAKE_FAIL", "cp")
    build = tmp_path / "build"
    with pytest.raises(SystemExit) as exc:
        cli.main(real_args("heltec-v3", build, key_file, "--key-on-host"))
    assert exc.value.code == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("deploy: step failed (exit 1): mpremote connect u0 cp ")
    assert len(mpremote_log(tmp_path)) == 3  # mip, run, the failing cp; nothing after it
    assert not (build / "board" / "key.bin").exists()


# --- Raspberry Pi files: sample gateway.toml and the systemd unit --------------------------


def test_sample_gateway_toml_is_accepted_by_the_gateway():
    import tomllib

    from loragate import config as gw_config

    path = ROOT / "deploy" / "gateway.toml"
    cfg = gw_config.load(path)
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 8333)
    assert (cfg.outbound_target, cfg.inbound_cap) == (8, 32)
    assert cfg.data_dir == Path("/var/lib/loragate")
    assert cfg.network_key_file == Path("/etc/lorachain/network.key")
    raw = tomllib.loads(path.read_text())
    for key in (
        "dns_seeds",
        "connect",
        "mdns",
        "metrics_port",
        "serial_port",
        "serial_baud",
        "log_level",
    ):
        assert key in raw, key
    assert raw["bans"]["threshold"] == cfg.bans.threshold
    assert raw["bans"]["points"] == cfg.bans.points == gw_config.MISBEHAVIOUR_POINTS
    assert set(raw["score"]) >= {"reliability_weight", "performance_weight", "behaviour_weight"}


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (ROOT / "deploy" / "loragate.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_systemd_unit_runs_loragate_hardened():
    s = unit_settings()
    assert s["User"] == ["loragate"]
    assert s["ExecStart"] == [
        "/opt/lorachain/venv/bin/loragate run --config /etc/lorachain/gateway.toml"
    ]
    assert s["Restart"] == ["on-failure"]
    assert s["StateDirectory"] == ["loragate"]
    assert s["Environment"] == ["LORAGATE_DATA_DIR=/var/lib/loragate"]
    for key, value in (
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("DevicePolicy", "closed"),
    ):
        assert s[key] == [value], key
    assert "char-ttyUSB rw" in s["DeviceAllow"]


def test_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "loragate.service"
    text = (ROOT / "deploy" / "loragate.service").read_text()
    # verify checks that ExecStart exists; the real path is only there on the Pi
    unit.write_text(text.replace("/opt/lorachain/venv/bin/loragate", "/bin/true"))
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


# --- firmware type check: the merged MicroPython typeshed -----------------------------------


def test_typeshed_makes_mypy_check_against_the_board_api(tmp_path):
    """With the merged stubs, a CPython-only call is an error and a MicroPython one is not."""
    from tools.deploy import typeshed

    out = tmp_path / "typeshed"
    assert typeshed.build(out) > 50
    assert typeshed.build(out) > 50  # rebuilding its own directory is fine
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "good.py").write_text(
        "import time\nimport machine\n"
        "t = time.ticks_ms()\n"
        "spi = machine.SPI(1, baudrate=2000000, sck=machine.Pin(9))\n"
        "from asyncio import core\n"
    )
    (tmp_path / "fw" / "bad.py").write_text("import time\nt = time.monotonic()\n")
    ini = tmp_path / "mypy.ini"
    ini.write_text(f"[mypy]\npython_version = 3.11\ncustom_typeshed_dir = {out}\n")

    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ini), "--no-incremental", "."],
        capture_output=True,
        text=True,
        cwd=tmp_path / "fw",
        timeout=300,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert proc.returncode == 1, proc.stdout
    assert len(errors) == 1 and errors[0].startswith("bad.py:2:"), proc.stdout
    assert 'Module has no attribute "monotonic"' in errors[0]


def test_typeshed_refuses_a_directory_it_did_not_make(tmp_path):
    from tools.deploy import typeshed

    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(typeshed.TypeshedError):
        typeshed.build(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep"
