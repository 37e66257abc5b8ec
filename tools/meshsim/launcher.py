"""Launch a simulated mesh: a meshsim medium plus N unix-port firmware nodes.

`launch(n, topology, workdir, speed, seed, ...)` (or `Mesh(...).start()`):
  * writes the topology (`line`, `grid`, `random`, a Topology, or a JSON file path)
    to workdir/topology.json and starts `python -m tools.meshsim` on an ephemeral port;
  * per node i (topology name n<i>): workdir/<name>/config.json, validated with the
    firmware's own loranode.config (imported on CPython from firmware/), a shared random
    network key, and the node's "node" runtime section; the node creates its key.bin on
    first boot in its directory (its cwd);
  * starts `micropython -X heapsize=H firmware/main.py config.json` per node on the
    interpreter LORACHAIN_MICROPYTHON names (tools.board.interpreters: the PyPI port
    runs the sources, the plain board-shaped build their .mpy files, the frozen one its
    frozen modules), one reader thread per process collecting
    `STATUS ` lines (the latest per node) and the last lines of other output;
  * `request_status()` writes `status` to every node's stdin; `wait_until(pred)` polls
    until a predicate over the statuses holds; `converged()` says whether every node
    has verified the record of every other node;
  * `stop()` ends every process it started: `quit` on stdin, then SIGINT, then SIGKILL
    after a timeout -- nodes first, the medium last; it is idempotent and also runs
    from `__exit__` and at interpreter exit, so no process is orphaned.

Radios: by default every node is a SimRadio (firmware/loranode/radio_sim.py). `radio=`
(CLI `--radio KIND`) gives every node another radio and `radios={name: KIND}` (CLI
`--radio NAME=KIND`) single nodes: KIND "sx1276" (a Heltec V2 board), "sx1262" (a Heltec
V3 board) or a board preset name of tools/deploy/boards.py. Such a node is a board whose radio
chip is emulated (tools/chipsim): its config names the board (no "sim" section), the
firmware opens the radio as on the board (loranode.radio_lora.open_radio with
micropython-lib's real driver: frozen in the frozen build, .mpy files on the plain one
and on the PyPI port), and tools/chipsim/boot.py wires the chip to the preset's pins and
to the medium. An emulated board keeps real time, like the board it stands for (its
clock and its driver's waits are not scaled), so a mesh with one runs at speed 1. At the
end such a node prints `CHIPSIM-END {...}` (the chip's counters and any access the chip
refused: NodeProc.chip_report).

Region: `region=` (CLI `--region`, default EU868) names a region of lorawire.regions; every
node gets its first 125 kHz default channel (`region_frequency`) and enforces its duty-cycle
and dwell limits, which `Mesh.limits()` / `duty_limits()` read from the same table.

CLI: `python -m tools.meshsim.launcher --nodes 10 --topology line --speed 10 [--region US915]`
prints a progress line while the mesh converges, then the convergence time and the
airtime of every node, and exits 0 (1 if it did not converge in --timeout seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from lorawire import regions

from .. import procs
from ..board import interpreters
from ..deploy import boards as fwboards
from ..deploy import fwconfig
from . import status as node_status
from . import topology as topo_mod
from .topology import Topology

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
SHARED = ROOT / "shared"
MAIN = FIRMWARE / "main.py"
TOOLS = ROOT / "tools"
CHIPBOOT = TOOLS / "chipsim" / "boot.py"
CHIP_REPORT_PREFIX = "CHIPSIM-END "
SIM_RADIO = "sim"
# emulated chip -> the board preset it sits on
CHIP_BOARDS = {"sx1276": "heltec-v2", "sx1262": "heltec-v3"}
VERIFIED = 0x10  # loranode.peers.VERIFIED
STATUS_PREFIX = "STATUS "
DEFAULT_HEAP = "512K"
DEFAULT_REGION = "EU868"
BANDWIDTH_HZ = 125000
KEEP_LINES = 200


def region_frequency(region: str, bw_hz: int = BANDWIDTH_HZ) -> int:
    """The region's first default channel of bandwidth bw_hz (lorawire.regions).

    ValueError (one line) for an unknown region or a bandwidth without a default channel.
    """
    reg = regions.region(region)
    for freq, bw in regions.default_channels(reg):
        if bw == bw_hz:
            return int(freq)
    raise ValueError(f"{reg['name']} has no default channel of {bw_hz} Hz")


def duty_limits(region: str, freq_hz: int, bw_hz: int = BANDWIDTH_HZ) -> dict[str, int]:
    """The region's rules at freq_hz, from lorawire.regions and its DutyCycle:
    duty_ppm, dwell_ms (0 = none), budget_ms and bg_budget_ms per duty-cycle window
    (what a node reports in STATUS "airtime"), window_ms."""
    band = regions.sub_band(region, freq_hz, bw_hz)
    duty = regions.DutyCycle(region)
    return {
        "duty_ppm": int(band[regions.SB_DUTY_PPM]),
        "dwell_ms": int(regions.dwell_limit_ms(region, freq_hz, bw_hz)),
        "budget_ms": int(duty.budget_ms(freq_hz)),
        "bg_budget_ms": int(duty.budget_ms(freq_hz, True)),
        "window_ms": int(duty.window_ms),
    }


FREQ_HZ = region_frequency(DEFAULT_REGION)  # 868.1 MHz, kept for existing importers


def radio_board(kind: str) -> str | None:
    """The board preset of radio KIND (None for a SimRadio); ValueError for an unknown one."""
    if kind == SIM_RADIO:
        return None
    if kind in CHIP_BOARDS:
        return CHIP_BOARDS[kind]
    if kind in fwboards.BOARDS:
        return kind
    known = [SIM_RADIO, *CHIP_BOARDS, *sorted(fwboards.BOARDS)]
    raise ValueError(f"radio {kind!r} is not one of {', '.join(known)}")


def emulated_board(board: str, name: str, medium_port: int | None) -> dict[str, Any]:
    """The BOARD_JSON of tools/chipsim/boot.py for preset `board` (its wiring, its TCXO),
    on the medium at 127.0.0.1:medium_port (None: no antenna)."""
    preset = fwboards.BOARDS[board]
    chip = preset["chip"]
    pins = {
        "nss": preset["cs"],
        "sck": preset["sck"],
        "mosi": preset["mosi"],
        "miso": preset["miso"],
        "nreset": preset["reset"],
        "dio1": preset["dio1"],
    }
    if chip == "sx1276":
        pins["dio0"] = preset["dio0"]
    else:
        pins["busy"] = preset["busy"]
    return {
        "chip": chip,
        "pins": {k: v for k, v in pins.items() if v is not None},
        "tcxo_mv": preset.get("tcxo_mv"),
        "medium": None if medium_port is None else ["127.0.0.1", medium_port],
        "name": name,
        "preset": preset,  # what the deploy tool writes into the board's config ("radio")
    }


def chip_module_path() -> str:
    """MICROPYPATH for a node on an emulated board: chipsim, the firmware, the drivers."""
    interp = interpreters.current()
    extra: list[Path | str] = [TOOLS]
    if interp.name == "pypi":  # the board-shaped builds have them (.mpy tree / frozen)
        from ..board import mpytree

        extra.append(mpytree.ensure_lora(mpytree.BUILD / "mpy-lora"))
    return interpreters.module_path(interp, *extra)


def micropython_binary() -> str:
    """The interpreter nodes run on: LORACHAIN_MICROPYTHON (tools.board.interpreters)."""
    return interpreters.binary()


def make_topology(spec: str | Path | Topology, n: int, seed: int = 0) -> Topology:
    """A Topology from a generator name, a file path or a Topology (n nodes n0..)."""
    if isinstance(spec, Topology):
        return spec
    if spec == "line":
        return topo_mod.line(n)
    if spec == "grid":
        return topo_mod.grid(n)
    if spec == "random":
        return topo_mod.random(n, seed=seed, area=4500.0 * max(1.0, (n / 4) ** 0.5))
    return topo_mod.load(spec)


def hops_diameter(topology: Topology, sf: int) -> int | None:
    """Longest shortest path (in links) between two nodes; None if disconnected."""
    names = sorted(topology.nodes)
    worst = 0
    for a in names:
        dist = topo_mod.hop_distances(topology, [a], sf)
        if len(dist) != len(names):
            return None
        worst = max(worst, max(dist.values()))
    return worst


class NodeProc:
    """One unix-port node process and what it printed."""

    def __init__(self, index: int, name: str, directory: Path, radio: str = SIM_RADIO) -> None:
        self.index = index
        self.name = name
        self.dir = directory
        self.radio = radio
        self.board = radio_board(radio)
        self.config_path = directory / "config.json"
        self.board_path = directory / "chipsim.json"
        self.chip_report: dict[str, Any] | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.node_id: str | None = None
        self.status: dict[str, Any] | None = None
        self.status_count = 0
        self.lines: deque[str] = deque(maxlen=KEEP_LINES)
        self.cond = threading.Condition()
        self._reader: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            with self.cond:
                if line.startswith(STATUS_PREFIX):
                    try:
                        self.status = node_status.parse(line)
                    except (ValueError, KeyError, TypeError):
                        self.lines.append(line[:200])
                    else:
                        self.status_count += 1
                else:
                    if line.startswith("NODE ") and len(line.split()) >= 2:
                        self.node_id = line.split()[1]
                    elif line.startswith(CHIP_REPORT_PREFIX):
                        try:
                            self.chip_report = json.loads(line[len(CHIP_REPORT_PREFIX) :])
                        except ValueError:
                            pass
                    self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = procs.spawn(argv, cwd=self.dir, env=env)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()

    def send(self, command: str) -> bool:
        return procs.send_line(self.proc, command)

    def wait_status(self, before: int, deadline: float) -> bool:
        """Wait until a STATUS line newer than count `before` arrives (False: none by
        `deadline`, or the process ended)."""
        with self.cond:
            while self.status_count == before and self.running:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.2))
            return self.status_count > before

    def ask(self, *commands: str, wait: float = 60.0) -> dict[str, Any]:
        """Send stdin commands, the last of which prints a STATUS line (`status`), and
        return that status. RuntimeError, with the node's last lines, if the node has
        stopped or answers nothing within `wait` s."""
        before = self.status_count
        sent = all(self.send(c) for c in commands)
        if not sent or not self.wait_status(before, time.monotonic() + wait) or not self.status:
            tail = "\n".join(list(self.lines)[-20:])
            raise RuntimeError(
                f"no STATUS from {self.name} within {wait} s (running={self.running}):\n{tail}"
            )
        return self.status

    def wait_id(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.node_id is None:
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    break
                self.cond.wait(min(left, 0.2))
        if self.node_id is None:
            raise RuntimeError(f"node {self.name} did not start:\n" + "\n".join(self.lines))
        return self.node_id

    def stop(self, timeout: float = 5.0) -> int | None:
        """quit on stdin, then SIGINT, then SIGKILL (the whole process group)."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            self.send("quit")
            try:
                p.wait(timeout / 2)
            except subprocess.TimeoutExpired:
                procs.end_process(p, ((signal.SIGINT, timeout / 2), (signal.SIGKILL, 5)))
        if p.stdin is not None:
            try:
                p.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(2)
        return p.returncode

    def kill(self) -> None:
        """SIGKILL, no goodbye (a power cut)."""
        procs.kill(self.proc)
        if self._reader is not None:
            self._reader.join(2)

    def known_ids(self) -> set[str]:
        s = self.status
        if not s:
            return set()
        return {p[0] for p in s.get("peers", []) if p[2] & VERIFIED}


_LIVE = procs.LiveSet()


class Mesh:
    """A medium and N nodes (see the module docstring)."""

    def __init__(
        self,
        n: int,
        topology: str | Path | Topology = "line",
        workdir: str | Path | None = None,
        speed: float = 10.0,
        seed: int = 0,
        *,
        heap: str = DEFAULT_HEAP,
        sf: int = 7,
        announce_min_s: int = 30,
        announce_max_s: int = 600,
        status_interval_s: int = 0,
        node_options: dict[str, Any] | None = None,
        capacities: dict[str, int] | None = None,
        network_key: str | None = None,
        region: str = DEFAULT_REGION,
        radio: str = SIM_RADIO,
        radios: dict[str, str] | None = None,
        frame_log: bool = False,
    ) -> None:
        if n < 1:
            raise ValueError("need at least one node")
        self.region = str(regions.region(region)["name"])
        self.frequency_hz = region_frequency(self.region, BANDWIDTH_HZ)
        self.n = n
        self.topology = make_topology(topology, n, seed)
        if len(self.topology.nodes) < n:
            raise ValueError(f"topology has {len(self.topology.nodes)} nodes, need {n}")
        self.names = sorted(self.topology.nodes, key=_natural)[:n]
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="meshsim-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.speed = speed
        self.seed = seed
        self.heap = heap
        self.sf = sf
        self.announce = (announce_min_s, announce_max_s)
        self.status_interval_s = status_interval_s
        self.node_options = dict(node_options or {})
        self.capacities = dict(capacities or {})
        self.network_key = network_key or os.urandom(32).hex()
        self.medium: subprocess.Popen[str] | None = None
        self.port = 0
        self.medium_lines: deque[str] = deque(maxlen=KEEP_LINES)
        self.frames_path = self.workdir / "frames.jsonl" if frame_log else None
        radios = dict(radios or {})
        unknown = sorted(set(radios) - set(self.names))
        if unknown:
            raise ValueError(
                f"radios: no node named {unknown[0]!r} (nodes {', '.join(self.names)})"
            )
        self.nodes = [
            NodeProc(i, nm, self.workdir / nm, radios.get(nm, radio))
            for i, nm in enumerate(self.names)
        ]
        if any(nd.board for nd in self.nodes):
            if speed != 1.0:
                raise ValueError(
                    f"speed {speed:g}: emulated boards run in real time, so a mesh with one "
                    "runs at speed 1"
                )
        self.started_at = 0.0

    # -- configuration -------------------------------------------------------

    def config_for(self, node: NodeProc) -> dict[str, Any]:
        """What the deploy tool would write to the board: the raw config, validated and
        completed by tools/deploy/fwconfig.py (ValueError, one line, when it is refused)."""
        return fwconfig.board_config(fwconfig.validate(self.raw_config(node)))

    def check_config(self) -> None:
        """Validate a node's config before anything starts (ValueError, one line)."""
        fwconfig.validate(self._raw(self.nodes[0], self.port or 1))

    def raw_config(self, node: NodeProc) -> dict[str, Any]:
        """The config a user would hand the deploy tool for `node`."""
        return self._raw(node, self.port)

    def _raw(self, node: NodeProc, port: int) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "board": node.board or "heltec-v3",
            "region": self.region,
            "frequency_hz": self.frequency_hz,
            "sf": self.sf,
            "bandwidth_hz": BANDWIDTH_HZ,
            "network_key": self.network_key,
            "announce_interval_min_s": self.announce[0],
            "announce_interval_max_s": self.announce[1],
        }
        if node.board is None:  # a SimRadio; an emulated board opens its radio as a board
            raw["sim"] = {"medium_host": "127.0.0.1", "medium_port": port, "name": node.name}
        if self.capacities:
            raw["capacities"] = dict(self.capacities)
        opts = {"status_interval_s": self.status_interval_s}
        opts.update(self.node_options)
        raw["node"] = opts
        return raw

    def limits(self) -> dict[str, int]:
        """The region's duty-cycle and dwell limits on the mesh's channel (see duty_limits)."""
        return duty_limits(self.region, self.frequency_hz, BANDWIDTH_HZ)

    def write_configs(self) -> None:
        """Each node's directory as a board's flash: config.json and main.py (run from
        there, so the interpreter imports our packages from MICROPYPATH, as a board
        imports them from its own copies, and never from firmware/ beside the script)."""
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            node.config_path.write_text(json.dumps(self.config_for(node), indent=1) + "\n")
            shutil.copyfile(MAIN, node.dir / "main.py")
            if node.board is not None:
                desc = emulated_board(node.board, node.name, self.port)
                node.board_path.write_text(json.dumps(desc, indent=1) + "\n")

    def env(self, node: NodeProc | None = None) -> dict[str, str]:
        env = dict(os.environ)
        if node is not None and node.board is not None:
            env["MICROPYPATH"] = chip_module_path()
        else:
            env["MICROPYPATH"] = interpreters.module_path(interpreters.current())
        env["PYTHONPATH"] = f"{ROOT}:{SHARED}"
        return env

    # -- lifecycle -------------------------------------------------------------

    def start_medium(self, timeout: float = 20.0) -> int:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "topology.json"
        self.topology.save(path)
        argv = [sys.executable, "-m", "tools.meshsim", "--topology", str(path), "--port", "0"]
        argv += ["--speed", str(self.speed), "--seed", str(self.seed)]
        if self.frames_path is not None:
            self.frames_path.unlink(missing_ok=True)
            argv += ["--frames", str(self.frames_path)]
        self.medium = procs.spawn(argv, cwd=ROOT, env=self.env(), stdin=subprocess.DEVNULL)
        _LIVE.add(self)
        assert self.medium.stdout is not None
        ready = threading.Event()

        def read(stream: Any) -> None:
            for raw in stream:
                line = raw.rstrip("\n")
                self.medium_lines.append(line)
                if line.startswith("meshsim listening on"):
                    self.port = int(line.split(":")[-1].split()[0])
                    ready.set()
            ready.set()

        threading.Thread(target=read, args=(self.medium.stdout,), daemon=True).start()
        if not ready.wait(timeout) or not self.port:
            self.stop()
            raise RuntimeError("medium did not start:\n" + "\n".join(self.medium_lines))
        return self.port

    def node_argv(self, node: NodeProc) -> list[str]:
        argv = [micropython_binary(), "-X", f"heapsize={self.heap}"]
        if node.board is not None:  # a board with an emulated radio chip
            argv += [str(CHIPBOOT), node.board_path.name]
        return [*argv, "main.py", "config.json"]

    def start_node(self, i: int, timeout: float = 20.0) -> str:
        node = self.nodes[i]
        if node.running:
            raise RuntimeError(f"node {node.name} is already running")
        node.node_id = None
        node.status = None
        node.start(self.node_argv(node), self.env(node))
        return node.wait_id(timeout)

    def start(self) -> Mesh:
        try:
            self.start_medium()
            self.write_configs()
            for node in self.nodes:
                node.start(self.node_argv(node), self.env(node))
            for node in self.nodes:
                node.wait_id(30.0)
        except BaseException:
            self.stop()
            raise
        self.started_at = time.monotonic()
        return self

    def stop_node(self, i: int, timeout: float = 5.0) -> int | None:
        return self.nodes[i].stop(timeout)

    def restart_node(self, i: int, timeout: float = 20.0) -> str:
        self.stop_node(i)
        return self.start_node(i, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every node, then the medium. Safe to call twice."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.send("quit")
        for node in self.nodes:
            node.stop(timeout)
        procs.end_process(self.medium, ((signal.SIGINT, timeout), (signal.SIGKILL, 5)))
        _LIVE.discard(self)

    def pids(self) -> list[int]:
        out = [n.proc.pid for n in self.nodes if n.proc is not None]
        if self.medium is not None:
            out.append(self.medium.pid)
        return out

    def __enter__(self) -> Mesh:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- statuses ---------------------------------------------------------------

    def request_status(self, wait: float = 5.0) -> list[dict[str, Any] | None]:
        """Ask every running node for a status line; wait for the answers."""
        before = [n.status_count for n in self.nodes]
        asked = [n.send("status") for n in self.nodes]
        deadline = time.monotonic() + wait
        for node, b, a in zip(self.nodes, before, asked, strict=True):
            if a:
                node.wait_status(b, deadline)
        return [n.status for n in self.nodes]

    def statuses(self) -> list[dict[str, Any] | None]:
        return [n.status for n in self.nodes]

    def ids(self) -> list[str]:
        return [n.node_id or "" for n in self.nodes]

    def converged(self) -> bool:
        """Every node has verified the record of every other node (latest statuses)."""
        ids = set(self.ids())
        for node in self.nodes:
            if node.node_id is None or not (ids - {node.node_id}) <= node.known_ids():
                return False
        return True

    def knowledge(self) -> int:
        """Sum over nodes of verified other nodes (n*(n-1) when converged)."""
        ids = set(self.ids())
        return sum(len(n.known_ids() & (ids - {n.node_id})) for n in self.nodes)

    def wait_until(
        self,
        predicate: Callable[[Mesh], bool],
        timeout: float,
        poll: float = 0.5,
        progress: Callable[[Mesh], None] | None = None,
    ) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.request_status()
            if predicate(self):
                return True
            if progress is not None:
                progress(self)
            if time.monotonic() >= deadline:
                return False
            dead = [n.name for n in self.nodes if not n.running]
            if dead:
                raise RuntimeError(f"nodes exited: {dead}\n" + self.tail(dead[0]))
            time.sleep(poll)

    def tail(self, name: str) -> str:
        for n in self.nodes:
            if n.name == name:
                return "\n".join(list(n.lines)[-30:])
        return ""

    def convergence_s(self) -> float | None:
        """Simulated seconds from the last node's start to the last new peer verified."""
        sts = [s for s in self.statuses() if s]
        if len(sts) != self.n or any(s.get("last_new_s") is None for s in sts):
            return None
        t0 = max(s["sim_s"] - s["up_s"] for s in sts)
        return max(s["last_new_s"] for s in sts) - t0

    def airtime(self) -> dict[str, int]:
        """Airtime (ms) each node has transmitted, from the latest statuses."""
        out = {}
        for node in self.nodes:
            s = node.status
            out[node.name] = s["airtime"]["tx_ms"] if s else -1
        return out

    def frames(self) -> list[dict[str, Any]]:
        """The medium's frame log so far (Mesh(frame_log=True); see tools.meshsim --frames)."""
        if self.frames_path is None or not self.frames_path.exists():
            return []
        out = []
        for line in self.frames_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                break  # the line being written
        return out

    def iter_status(self) -> Iterator[tuple[str, dict[str, Any] | None]]:
        for node in self.nodes:
            yield node.name, node.status


def _natural(name: str) -> tuple[str, int]:
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    return (head, int(tail) if tail else -1)


def launch(
    n: int,
    topology: str | Path | Topology = "line",
    workdir: str | Path | None = None,
    speed: float = 10.0,
    seed: int = 0,
    **kwargs: Any,
) -> Mesh:
    """Start a medium and n nodes; returns the running Mesh (call stop() or use `with`)."""
    return Mesh(n, topology, workdir, speed, seed, **kwargs).start()


def run_convergence(mesh: Mesh, timeout: float, echo: Callable[[str], None] | None = None) -> bool:
    """Wait for convergence, echoing a progress line; True if it converged."""
    total = mesh.n * (mesh.n - 1)

    def progress(m: Mesh) -> None:
        if echo is not None:
            wall = time.monotonic() - m.started_at
            echo(f"converging: {m.knowledge()}/{total} peer records known, {wall:.1f}s wall")

    return mesh.wait_until(lambda m: m.converged(), timeout, progress=progress)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--nodes", "n", default=10, show_default=True, type=click.IntRange(1, 64))
@click.option("--topology", default="line", show_default=True, help="line, grid, random or FILE.")
@click.option("--speed", default=10.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--heap", default=DEFAULT_HEAP, show_default=True, help="micropython -X heapsize.")
@click.option("--sf", default=7, show_default=True, type=click.IntRange(7, 12))
@click.option(
    "--region",
    default=DEFAULT_REGION,
    show_default=True,
    type=click.Choice(list(regions.REGION_NAMES), case_sensitive=False),
    help="Region (lorawire.regions): its first 125 kHz default channel and its limits.",
)
@click.option(
    "--radio",
    "radio_opts",
    multiple=True,
    metavar="KIND | NAME=KIND",
    help="sim (default), sx1276, sx1262 or a board preset: for every node, or NAME=KIND "
    "for one (repeatable). Emulated boards need --speed 1.",
)
@click.option("--timeout", default=120.0, show_default=True, help="Wall seconds to wait.")
@click.option("--workdir", default=None, help="Keep node files here (default: a temp dir).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON line.")
def main(
    n: int,
    topology: str,
    speed: float,
    seed: int,
    heap: str,
    sf: int,
    region: str,
    radio_opts: tuple[str, ...],
    timeout: float,
    workdir: str | None,
    as_json: bool,
) -> None:
    """Launch a simulated mesh of unix-port nodes and wait until it converges."""
    radio = SIM_RADIO
    radios: dict[str, str] = {}
    for opt in radio_opts:
        name, eq, kind = opt.partition("=")
        if eq:
            radios[name] = kind
        else:
            radio = opt
    try:
        mesh = Mesh(
            n,
            topology,
            workdir,
            speed,
            seed,
            heap=heap,
            sf=sf,
            region=region,
            radio=radio,
            radios=radios,
        )
        mesh.check_config()  # e.g. an SF over the region's dwell limit: one line, no process
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        with mesh:
            diameter = hops_diameter(mesh.topology, sf)
            click.echo(f"{n} nodes, topology {topology} (diameter {diameter} hops), speed {speed}")
            lim = mesh.limits()
            dwell = f"{lim['dwell_ms']} ms" if lim["dwell_ms"] else "none"
            click.echo(
                f"region {mesh.region}, {mesh.frequency_hz} Hz: duty cycle "
                f"{lim['duty_ppm'] / 10000:g} %, budget {lim['budget_ms']} ms per "
                f"{lim['window_ms'] // 1000} s, dwell {dwell}"
            )
            ok = run_convergence(mesh, timeout, lambda s: click.echo(s, err=True))
            conv = mesh.convergence_s()
            air = mesh.airtime()
            result = {"converged": ok, "convergence_s": conv, "airtime_ms": air}
            if as_json:
                click.echo(json.dumps(result, sort_keys=True))
            else:
                state = "converged" if ok else "did NOT converge"
                click.echo(f"{state}: convergence {conv if conv is None else round(conv, 1)} s")
                for name, ms in air.items():
                    click.echo(f"  {name}: airtime {ms} ms")
    except KeyboardInterrupt:
        click.echo("interrupted; stopped every process", err=True)
        sys.exit(130)
    except RuntimeError as e:
        raise click.ClickException(str(e).splitlines()[0]) from None
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(prog_name="python -m tools.meshsim.launcher")
