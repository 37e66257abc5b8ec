"""The whole Lorachain network on one machine: mesh, bridge, gateway and internet peers.

`Network(workdir, nodes=8, speed=10, seed=0).start()` starts, in this order:

1. the meshsim medium (`python -m tools.meshsim`) with `TOPOLOGY`: the bridge at one
   end, mesh nodes n0..n7 behind it (2, 3 and 4 hops away), and the misbehaving node
   `bad`, whose only neighbour is the bridge;
2. the mesh nodes: unix-port MicroPython processes (`tools.meshsim.launcher.Mesh`),
   each running the firmware with the small demo application of tools/demo/upy_app.py
   (it can make a transaction on stdin `tx <hex>`, fetches offered ones by GETDATA,
   prints `OBJ tx <hash> <source>` for each new one);
3. a `PtyCable` (tools/ptycable.py) of two real pseudo-terminals joined by a relay
   thread: the bridge opens one side by its /dev/pts path, the gateway opens a stable
   symlink (workdir/ttyBRIDGE) to the other side, which `unplug()` / `replug()`
   re-create, as when a USB serial adapter is pulled and plugged back;
4. the bridge node: `micropython firmware/main.py config.json` with role "bridge"
   (main.py hands over to loranode.bridge), the pty as its UART, the same radio;
5. the gateway: `loragate run` with its own data dir, listening on 127.0.0.1:<free>,
   `--serial-port <symlink>`, the mesh's network key file, metrics on a free port;
6. three internet peers on loopback: `loragate run` on 127.11.0.1, `python -m
   tools.demo.peer` on 127.12.0.1 (the real peer manager plus a transaction maker,
   since `loragate run` has no command to make one), and `python -m tools.demo.badpeer`
   on 127.13.0.1 (real handshake, then malformed frames); each `--connect`s to the
   gateway;
7. `python -m tools.demo.badnode`: a CPython node on the simulated radio that announces
   itself and then sends the gateway link-tagged garbage (it is given the gateway's
   public key, which the gateway's signed record publishes anyway).

Every child runs in its own session (process group); its output goes to
workdir/<name>.log and, for the ones the view reads, into a bounded line buffer.
`stop()` ends them in reverse order: SIGINT to the group, SIGTERM after
`STOP_GRACE_S`, SIGKILL after as long again (tools/procs.py); it is idempotent and also
runs at interpreter exit. Nothing here blocks for long: queries to the gateway go through
its control socket (`loragate.control.call`) with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loragate.bounded import BoundedDict
from tools import procs
from tools.deploy import fwconfig
from tools.meshsim import status as node_status
from tools.meshsim.launcher import MAIN, Mesh, NodeProc, micropython_binary
from tools.meshsim.topology import Topology, from_dict
from tools.ptycable import PtyCable

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().with_name("upy_app.py")
STOP_GRACE_S = 5.0
KEEP_LINES = 400
BUF_MAX = 1 << 16  # the cable's buffer per direction
GATEWAY_HOST = "127.0.0.1"
PEER_HOSTS = ("127.11.0.1", "127.12.0.1", "127.13.0.1")
TX_BYTES = 48
TALLY_MAX = 10000
MESH_NAMES = tuple(f"n{i}" for i in range(8))

# Who hears whom (both directions), with the link's RSSI dBm / SNR dB at 14 dBm.
# Hops from the bridge: n0 n1 -> 1, n2 n3 -> 2, n4 n5 -> 3, n6 n7 -> 4; bad -> 1.
LINKS: tuple[tuple[str, str, int, float], ...] = (
    ("bridge", "n0", -92, 6.5),
    ("bridge", "n1", -101, 2.0),
    ("bridge", "bad", -95, 4.75),
    ("n0", "n1", -97, 3.5),
    ("n0", "n2", -104, 1.25),
    ("n1", "n3", -99, 3.0),
    ("n2", "n3", -96, 5.0),
    ("n2", "n4", -108, -1.5),
    ("n3", "n5", -103, 0.5),
    ("n4", "n5", -100, 2.5),
    ("n4", "n6", -106, -0.75),
    ("n5", "n7", -98, 4.0),
    ("n6", "n7", -102, 1.0),
)


def demo_topology(nodes: int = 8) -> Topology:
    """The demo's topology for `nodes` mesh nodes (2..8): links among n0..n<nodes-1>."""
    names = {"bridge", "bad", *MESH_NAMES[:nodes]}
    links = [[a, b, {"rssi": r, "snr": s}] for a, b, r, s in LINKS if a in names and b in names]
    return from_dict({"links": links, "nodes": sorted(names)}, "demo topology")


def loragate_cmd() -> list[str]:
    """How to run the `loragate` CLI: its console script beside this Python, if any."""
    script = Path(sys.executable).with_name("loragate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from loragate.cli import main; main()"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ---- child processes ---------------------------------------------------------------------


def stop_steps(grace: float) -> tuple[tuple[int, float], ...]:
    """SIGINT to the process group, then SIGTERM, then SIGKILL, `grace` seconds apart."""
    return ((signal.SIGINT, grace), (signal.SIGTERM, grace), (signal.SIGKILL, grace))


class Child:
    """One child process: its own session, output to a log file and a line buffer."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log: Path,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.log = log
        self.on_line = on_line
        self.lines: deque[str] = deque(maxlen=KEEP_LINES)
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self.cond = threading.Condition()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Child:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.proc = procs.spawn(self.argv, cwd=self.cwd, env=self.env)
        self._reader = threading.Thread(
            target=self._read, args=(self.proc,), name=f"read-{self.name}", daemon=True
        )
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        with self.log.open("a") as logf:
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                logf.write(raw)
                logf.flush()
                with self.cond:
                    self.lines.append(line)
                    if self.on_line is not None:
                        with contextlib.suppress(Exception):
                            self.on_line(line)
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def send(self, text: str) -> bool:
        return procs.send_line(self.proc, text)

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str] | None:
        """The first buffered line matching `pattern` (regex search), waiting for it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    return None
                self.cond.wait(min(left, 0.2))

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        # Whatever the child left in its group (it should be nothing) goes too: sweep.
        rc = procs.end_process(self.proc, stop_steps(grace), sweep=True)
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()
        if self._reader is not None:
            self._reader.join(2)
        return rc

    def kill(self) -> None:
        """SIGKILL, no goodbye (a crash or power cut)."""
        procs.kill(self.proc)
        if self._reader is not None:
            self._reader.join(2)

    def tail(self, n: int = 20) -> str:
        return "\n".join(list(self.lines)[-n:])


class Tally:
    """Transactions by hash: where they were made and where they arrived (bounded)."""

    def __init__(self) -> None:
        # hash -> the mesh node / internet peer that made it; -> those that received it
        self.made_mesh: BoundedDict[str, str] = BoundedDict(TALLY_MAX)
        self.made_inet: BoundedDict[str, str] = BoundedDict(TALLY_MAX)
        self.got_mesh: BoundedDict[str, set[str]] = BoundedDict(TALLY_MAX)
        self.got_inet: BoundedDict[str, set[str]] = BoundedDict(TALLY_MAX)

    def up(self) -> int:
        """Mesh-made transactions that reached an internet peer (through the bridge)."""
        return sum(1 for h in self.made_mesh if h in self.got_inet)

    def down(self) -> int:
        """Internet-made transactions that reached at least one mesh node."""
        return sum(1 for h in self.made_inet if h in self.got_mesh)


class DemoMesh(Mesh):
    """The launcher's Mesh on the demo topology: nodes n0.. run the demo application."""

    def __init__(self, n: int, workdir: Path, speed: float, seed: int, **kw: Any) -> None:
        super().__init__(n, demo_topology(n), workdir, speed, seed, **kw)
        self.names = list(MESH_NAMES[:n])
        self.nodes = [NodeProc(i, nm, self.workdir / nm) for i, nm in enumerate(self.names)]

    def node_argv(self, node: NodeProc) -> list[str]:
        return [micropython_binary(), "-X", f"heapsize={self.heap}", str(APP), "config.json"]


_LIVE = procs.LiveSet()


class Network:
    """Everything of the demo (module docstring); `start()`, queries, `stop()`."""

    def __init__(
        self,
        workdir: str | Path | None = None,
        nodes: int = 8,
        speed: float = 10.0,
        seed: int = 0,
        *,
        tx_every: float = 0.0,
        badpeer_every: float = 2.0,
        badnode_every: float = 1.5,
        gateway_args: list[str] | None = None,
    ) -> None:
        if not 2 <= nodes <= len(MESH_NAMES):
            raise ValueError(f"nodes must be 2..{len(MESH_NAMES)}")
        self._tmp: str | None = None
        if workdir is None:
            # Short: the gateway's control socket path must fit sun_path (107 bytes).
            self._tmp = workdir = tempfile.mkdtemp(prefix="lcdemo-", dir="/tmp")
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.n = nodes
        self.speed = speed
        self.seed = seed
        self.tx_every = tx_every
        self.badpeer_every = badpeer_every
        self.badnode_every = badnode_every
        self.gateway_args = list(gateway_args or [])
        self.network_key = os.urandom(32).hex()
        self.key_file = self.workdir / "network.key"
        self.mesh = DemoMesh(
            nodes,
            self.workdir / "mesh",
            speed,
            seed,
            network_key=self.network_key,
            announce_min_s=30,
            announce_max_s=600,
        )
        self.cable: PtyCable | None = None
        self.bridge: Child | None = None
        self.bridge_id: str | None = None
        self.bridge_status: dict[str, Any] | None = None
        self.bridge_status_count = 0
        self.gateway: Child | None = None
        self.gateway_port = 0
        self.metrics_port = 0
        self.peers: list[Child] = []
        self.badnode: Child | None = None
        self.badnode_id: str | None = None
        self.names: dict[str, str] = {}  # node id hex -> friendly name
        self.started_at = 0.0
        self._tally = Tally()
        self._stopped = False
        self._lock = threading.Lock()

    # ---- paths and environments ------------------------------------------------------

    @property
    def gateway_dir(self) -> Path:
        return self.workdir / "gateway"

    @property
    def control_path(self) -> Path:
        return self.gateway_dir / "control.sock"

    @property
    def link_path(self) -> Path:
        return self.workdir / "ttyBRIDGE"

    def env(self) -> dict[str, str]:
        env = self.mesh.env()
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(ROOT / "shared"), str(ROOT / "gateway")]
        )
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _child(self, name: str, argv: list[str], cwd: Path | None = None, **kw: Any) -> Child:
        return Child(
            name,
            argv,
            cwd=cwd or self.workdir / name,
            env=self.env(),
            log=self.workdir / f"{name}.log",
            **kw,
        )

    # ---- start ----------------------------------------------------------------------------

    def start(self, step: Callable[[str], None] | None = None) -> Network:
        """Start everything (module docstring); `step(text)` is told what starts next."""
        say = step or (lambda text: None)
        _LIVE.add(self)
        try:
            self.key_file.write_text(self.network_key + "\n")
            self.key_file.chmod(0o600)
            say(f"starting the radio simulator and {self.n} MicroPython mesh nodes")
            self.mesh.start()  # medium, then the mesh nodes
            for node in self.mesh.nodes:
                if node.node_id:
                    self.names[node.node_id] = node.name
            say("starting the bridge board on a pseudo-terminal")
            self.cable = PtyCable(self.link_path, buf_max=BUF_MAX).start()
            self.start_bridge()
            say("starting the gateway (loragate run)")
            self.start_gateway()
            say("starting 3 internet peers on loopback")
            self.start_peers()
            say("starting the misbehaving mesh node")
            self.start_badnode()
        except BaseException:
            self.stop()
            raise
        self.started_at = time.monotonic()
        return self

    def bridge_config(self) -> dict[str, Any]:
        assert self.cable is not None
        d = self.workdir / "bridge"
        raw = self.mesh.raw_config(NodeProc(-1, "bridge", d))
        raw["role"] = "bridge"
        raw["uart"] = {"path": self.cable.board_path, "baud": 115200}
        raw["node"]["status_interval_s"] = 0
        raw["bridge"] = {"stats_interval_s": 5}
        return fwconfig.board_config(fwconfig.validate(raw))

    def _on_bridge_line(self, line: str) -> None:
        if line.startswith("STATUS "):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.bridge_status = node_status.parse(line)
                self.bridge_status_count += 1
        elif line.startswith("BRIDGE "):
            parts = line.split()
            if len(parts) >= 2:
                self.bridge_id = parts[1]
                self.names[parts[1]] = "bridge"

    def start_bridge(self) -> None:
        d = self.workdir / "bridge"
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(self.bridge_config(), indent=1) + "\n")
        # firmware/main.py runs the role the config names ("bridge"), as at boot
        shutil.copyfile(MAIN, d / "main.py")
        argv = [micropython_binary(), "-X", "heapsize=512K", "main.py", "config.json"]
        self.bridge = self._child("bridge", argv, on_line=self._on_bridge_line)
        self.bridge.start()
        if self.bridge.wait_line(r"^BRIDGE ", 30) is None:
            raise RuntimeError("the bridge did not start:\n" + self.bridge.tail())

    def gateway_argv(self) -> list[str]:
        return [
            *loragate_cmd(), "run",
            "--data-dir", str(self.gateway_dir),
            "--listen-host", GATEWAY_HOST, "--listen-port", str(self.gateway_port),
            "--serial-port", str(self.link_path),
            "--network-key-file", str(self.key_file),
            "--metrics-port", str(self.metrics_port),
            "--ping-interval-s", "5",
            *self.gateway_args,
        ]  # fmt: skip

    def start_gateway(self, timeout: float = 30.0) -> None:
        if not self.gateway_port:
            self.gateway_port = free_port(GATEWAY_HOST)
            self.metrics_port = free_port(GATEWAY_HOST)
        self.gateway = self._child("gateway", self.gateway_argv(), cwd=self.workdir)
        self.gateway.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.gateway.running:
                raise RuntimeError("the gateway exited:\n" + self.gateway.tail())
            if self.query("status") is not None:
                return
            time.sleep(0.2)
        raise RuntimeError("the gateway did not answer on its control socket")

    def kill_gateway(self) -> None:
        """SIGKILL the gateway (a crash); `start_gateway()` brings it back, same dir/ports."""
        if self.gateway is not None:
            self.gateway.kill()

    @property
    def gateway_endpoint(self) -> str:
        return f"{GATEWAY_HOST}:{self.gateway_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{GATEWAY_HOST}:{self.metrics_port}/metrics"

    def start_peers(self) -> None:
        gw = self.gateway_endpoint
        py = sys.executable
        specs = [
            ("peer1", [*loragate_cmd(), "run", "--data-dir", "data",
                       "--listen-host", PEER_HOSTS[0], "--listen-port", "0", "--connect", gw]),
            ("peer2", [py, "-m", "tools.demo.peer", "--data-dir", "data",
                       "--host", PEER_HOSTS[1], "--connect", gw,
                       "--tx-every", str(self.tx_every)]),
            ("badpeer", [py, "-m", "tools.demo.badpeer", "--connect", gw,
                         "--host", PEER_HOSTS[2], "--every", str(self.badpeer_every)]),
        ]  # fmt: skip
        for name, argv in specs:
            child = self._child(name, argv)
            child.cwd.mkdir(parents=True, exist_ok=True)
            if name != "badpeer":
                argv[argv.index("data")] = str(child.cwd / "data")
            child.start()
            self.peers.append(child)
        for child in self.peers:
            if child.name == "peer1":
                self._wait_control(child.cwd / "data" / "control.sock", child)
                st = self.query("status", path=child.cwd / "data" / "control.sock")
                if st and st.get("node_id"):
                    self.names[st["node_id"]] = "peer1"
            else:
                m = child.wait_line(r"^(?:PEER|BADPEER id) ([0-9a-f]{16})", 20)
                if m is None:
                    raise RuntimeError(f"{child.name} did not start:\n" + child.tail())
                self.names[m.group(1)] = child.name

    def _wait_control(self, path: Path, child: Child, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.running:
                raise RuntimeError(f"{child.name} exited:\n" + child.tail())
            if self.query("status", path=path) is not None:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{child.name} did not answer on its control socket")

    def peer(self, name: str) -> Child:
        for p in self.peers:
            if p.name == name:
                return p
        raise KeyError(name)

    def gateway_public(self) -> str:
        """The gateway's public key (hex), from its key file (public in its record)."""
        from loragate import keys

        return bytes(keys.load_identity(self.gateway_dir / "node.key").public).hex()

    def start_badnode(self) -> None:
        argv = [
            sys.executable, "-m", "tools.demo.badnode",
            "--medium-port", str(self.mesh.port),
            "--network-key-file", str(self.key_file),
            "--name", "bad", "--state-dir", ".",
            "--garbage-every", str(self.badnode_every),
            "--gateway-public", self.gateway_public(),
        ]  # fmt: skip
        self.badnode = self._child("badnode", argv)
        self.badnode.start()
        m = self.badnode.wait_line(r"^NODE ([0-9a-f]{16})", 20)
        if m is None:
            raise RuntimeError("the bad mesh node did not start:\n" + self.badnode.tail())
        self.badnode_id = m.group(1)
        self.names[self.badnode_id] = "bad"

    # ---- queries -----------------------------------------------------------------------------

    def query(self, cmd: str, path: Path | None = None, **args: Any) -> Any:
        """A control-socket command to the gateway (or the socket at `path`); None on error."""
        from loragate.control import ControlError, call

        try:
            return asyncio.run(call(path or self.control_path, cmd, **args))
        except (ControlError, OSError, TimeoutError, ValueError):
            return None

    def metrics(self) -> dict[str, float]:
        """The gateway's Prometheus samples, `name{labels}` -> value ({} if unreachable)."""
        if not self.metrics_port:
            return {}
        url = f"http://{GATEWAY_HOST}:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
        return out

    def refresh_bridge(self, wait: float = 0.0) -> dict[str, Any] | None:
        """Ask the bridge for a STATUS line; with `wait`, wait that long for it."""
        b = self.bridge
        if b is None:
            return None
        with b.cond:
            before = self.bridge_status_count
        if b.send("status") and wait > 0:
            deadline = time.monotonic() + wait
            with b.cond:
                while self.bridge_status_count == before and b.running:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    b.cond.wait(min(left, 0.2))
        return self.bridge_status

    def make_mesh_tx(self, index: int, raw: bytes | None = None) -> bool:
        """Ask mesh node `index` to make (broadcast) a transaction of `raw` bytes."""
        raw = raw if raw is not None else os.urandom(TX_BYTES)
        return self.mesh.nodes[index].send("tx " + raw.hex())

    def make_peer_tx(self, raw: bytes | None = None) -> bool:
        """Ask the internet peer peer2 to make a transaction of `raw` bytes."""
        raw = raw if raw is not None else os.urandom(TX_BYTES)
        return self.peer("peer2").send("tx " + raw.hex())

    def tally(self) -> Tally:
        """Transactions made and received so far, from the processes' output."""
        t = self._tally
        for node in self.mesh.nodes:
            with node.cond:
                lines = list(node.lines)
            for line in lines:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "TXNEW":
                    t.made_mesh.setdefault(parts[1], node.name)
                elif len(parts) >= 4 and parts[:2] == ["OBJ", "tx"]:
                    t.got_mesh.setdefault(parts[2], set()).add(node.name)
        for name in ("peer2",):
            with contextlib.suppress(KeyError):
                child = self.peer(name)
                with child.cond:
                    lines = list(child.lines)
                for line in lines:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0] == "TXNEW":
                        t.made_inet.setdefault(parts[1], name)
                    elif len(parts) >= 4 and parts[:2] == ["OBJ", "tx"] and parts[3] != "local":
                        t.got_inet.setdefault(parts[2], set()).add(name)
        return t

    def name_of(self, node_id: str | None) -> str:
        if not node_id:
            return "?"
        return self.names.get(node_id, "")

    # ---- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """End every process this network started (reverse order); idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        early = [c for c in (self.badnode, *self.peers) if c is not None]
        threads = [threading.Thread(target=c.stop, daemon=True) for c in early]
        for t in threads:  # the peers and the bad node at once
            t.start()
        for t in threads:
            t.join(STOP_GRACE_S * 3 + 5)
        for c in (self.gateway, self.bridge):  # then the gateway, then the bridge
            if c is not None:
                c.stop()
        self.mesh.stop()
        if self.cable is not None:
            self.cable.close()
        _LIVE.discard(self)

    def cleanup(self) -> None:
        """stop(), then remove the work directory if this object created it."""
        self.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        out = self.mesh.pids()
        for c in (self.bridge, self.gateway, self.badnode, *self.peers):
            if c is not None and c.proc is not None:
                out.append(c.proc.pid)
        return out
