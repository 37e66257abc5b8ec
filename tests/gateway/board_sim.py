"""A bridge board in a CPython process: speaks the UART link protocol on a real tty path.

Stands in for the firmware's bridge mode in gateway tests until that exists (the firmware
on the unix port will take its place on the same pty). Usage:

    python tests/gateway/board_sim.py TTY_PATH [CONFIG_JSON]

It opens TTY_PATH (a pty slave; raw, VMIN=0/VTIME=0, non-blocking), sends HELLO as a board
does on boot, and then:

* HELLO from the gateway -> answers HELLO (role "bridge");
* FRAME_DOWN -> TX_DONE when the scripted budget has room, else TX_DEFERRED(duty cycle,
  wait until the scripted refill; NEVER when the frame alone exceeds the budget);
* BAN / UNBAN -> kept in a table; FRAME_UP for a banned source is dropped and counted in
  RADIO_STATS.banned_drops;
* CONFIG_GET -> CONFIG_VALUE for sf / bandwidth_hz / coding_rate / frequency_hz /
  tx_power_dbm / region / role;
* RADIO_STATS every `stats_interval_s` (0 = only on command) and after each refill.

Commands arrive as JSON lines on stdin; events leave as JSON lines on stdout (each with
"t" = time.monotonic(), the same clock as the test process on Linux):

    {"cmd": "up", "frames": [hex, ...], "rssi": -80, "snr_q4": 22}   FRAME_UP each frame
    {"cmd": "raw", "hex": "..."}         write these bytes to the tty as they are (noise tests)
    {"cmd": "budget", "used_ms": 0, "budget_ms": 1000, "refill_ms": 1500}
    {"cmd": "stats"}                     send RADIO_STATS now
    {"cmd": "mute_tx", "on": true}       ignore FRAME_DOWN (the gateway must count it lost)
    {"cmd": "hello"}                     send an unsolicited HELLO (as after a reboot)
    {"cmd": "ping", "id": 1}             -> {"ev": "pong", "id": 1} (all earlier cmds done)
    {"cmd": "quit"}

Events: ready, hello, tx, deferred, ban, unban, banned_drop, config_get, bad_packet,
pong, io_error, exit.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import sys
import termios
import time
import tty

from lorawire import airtime, link, uart
from lorawire import frame as wireframe
from lorawire.errors import DecodeError

DEFAULTS = {
    "node_id": "b0a4d00000000001",
    "firmware": "boardsim-1",
    "role": "bridge",
    "link_version": link.LINK_VERSION,
    "sf": 7,
    "bandwidth_hz": 125000,
    "coding_rate": 5,
    "region": "EU868",
    "frequency_hz": 868100000,
    "tx_power_dbm": 14,
    "budget_ms": 36000,
    "used_ms": 0,
    "refill_ms": 1000,
    "stats_interval_s": 0.5,
    "rssi": -90,
    "snr_q4": 24,
}
OUT_MAX = 1 << 20
# What the firmware's bridge answers CONFIG_GET for (loranode/bridge.py CONFIG_KEYS).
CONFIG_KEYS = (
    "sf",
    "bandwidth_hz",
    "coding_rate",
    "frequency_hz",
    "tx_power_dbm",
    "region",
    "role",
)


class Board:
    def __init__(self, path: str, cfg: dict) -> None:
        self.cfg = cfg
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        attrs = termios.tcgetattr(self.fd)
        attrs[6][termios.VMIN] = 0
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        self.decoder = uart.StreamDecoder()
        self.out = bytearray()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ, "tty")
        self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
        os.set_blocking(sys.stdin.fileno(), False)
        self.stdin_buf = b""
        self.bans: dict[bytes, float] = {}
        self.used = cfg["used_ms"]
        self.budget = cfg["budget_ms"]
        self.refill_ms = cfg["refill_ms"]
        self.refill_at: float | None = None
        self.mute_tx = False
        self.rx = self.tx = self.dropped = self.banned_drops = 0
        self.next_stats = time.monotonic() + cfg["stats_interval_s"]
        self.running = True

    # -- io -------------------------------------------------------------------------------

    def event(self, ev: str, **kw: object) -> None:
        kw["ev"] = ev
        kw["t"] = time.monotonic()
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    def send(self, msg_type: int, **fields: object) -> None:
        self.write(b"\x00" + uart.encode_packet(link.encode(msg_type, **fields)))

    def write(self, data: bytes) -> None:
        if len(self.out) + len(data) > OUT_MAX:
            self.dropped += 1
            return
        self.out += data
        self._update_interest()

    def _update_interest(self) -> None:
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.out else 0)
        self.sel.modify(self.fd, mask, "tty")

    def flush(self) -> None:
        try:
            n = os.write(self.fd, self.out)
        except BlockingIOError:
            return
        del self.out[:n]
        self._update_interest()

    # -- protocol -------------------------------------------------------------------------

    def hello(self) -> None:
        c = self.cfg
        self.send(
            link.HELLO,
            link_version=c["link_version"],
            wire_version=wireframe.VERSION,
            firmware=c["firmware"],
            node_id=bytes.fromhex(c["node_id"]),
            role=c["role"],
        )

    def stats(self) -> None:
        self.send(
            link.RADIO_STATS,
            rx=self.rx,
            tx=self.tx,
            airtime_used_ms=self.used,
            airtime_budget_ms=self.budget,
            channel_busy=0,
            dropped=self.dropped,
            banned_drops=self.banned_drops,
        )

    def banned(self, node_id: bytes) -> bool:
        exp = self.bans.get(node_id)
        if exp is None:
            return False
        if exp <= time.monotonic():
            del self.bans[node_id]
            return False
        return True

    def on_packet(self, payload: bytes) -> None:
        try:
            msg_type, f = link.decode(payload)
        except DecodeError as exc:
            self.event("bad_packet", error=str(exc))
            return
        if msg_type == link.HELLO:
            self.event("hello", role=f["role"], node_id=f["node_id"].hex())
            self.hello()
        elif msg_type == link.FRAME_DOWN:
            self.frame_down(f)
        elif msg_type == link.BAN:
            secs = f["seconds"]
            permanent = secs == link.BAN_PERMANENT_SECONDS
            self.bans[f["node_id"]] = math.inf if permanent else time.monotonic() + secs
            self.event("ban", node_id=f["node_id"].hex(), seconds=secs)
        elif msg_type == link.UNBAN:
            self.bans.pop(f["node_id"], None)
            self.event("unban", node_id=f["node_id"].hex())
        elif msg_type == link.CONFIG_GET:
            key = f["key"]
            self.event("config_get", key=key)
            if key in CONFIG_KEYS:
                self.send(link.CONFIG_VALUE, key=key, value=self.cfg[key])
            else:
                self.send(link.ERROR, code=1, text="unknown config key")
        else:
            self.event("unexpected", type=msg_type)

    def frame_down(self, f: dict) -> None:
        handle, data = f["handle"], f["frame"]
        if self.mute_tx:
            self.event("muted", handle=handle)
            return
        self.timers()  # a refill that is due counts now, as the firmware's accountant would
        c = self.cfg
        ms = airtime.time_on_air_ms(len(data), c["sf"], c["bandwidth_hz"], c["coding_rate"])
        ms = int(math.ceil(ms))
        now = time.monotonic()
        if ms > self.budget:
            self.send(link.TX_DEFERRED, handle=handle, reason=link.DEFER_DUTY_CYCLE, wait_ms=-1)
            self.event("deferred", handle=handle, wait_ms=-1, frame=data.hex())
            return
        if self.used + ms > self.budget:
            if self.refill_at is None and self.refill_ms >= 0:
                self.refill_at = now + self.refill_ms / 1000
            wait = -1 if self.refill_at is None else max(1, int((self.refill_at - now) * 1000))
            self.send(link.TX_DEFERRED, handle=handle, reason=link.DEFER_DUTY_CYCLE, wait_ms=wait)
            self.event("deferred", handle=handle, wait_ms=wait, frame=data.hex())
            return
        self.used += ms
        self.tx += 1
        self.send(link.TX_DONE, handle=handle, airtime_ms=ms)
        self.event("tx", handle=handle, frame=data.hex(), priority=f["priority"], airtime_ms=ms)

    def frame_up(self, frames: list[str], rssi: int, snr_q4: int) -> None:
        for h in frames:
            data = bytes.fromhex(h)
            try:
                src = wireframe.peek_source(data)
            except DecodeError:
                src = None
            if src is not None and self.banned(src):
                self.banned_drops += 1
                self.event("banned_drop", node_id=src.hex())
                continue
            self.rx += 1
            self.send(link.FRAME_UP, frame=data, rssi=rssi, snr_q4=snr_q4)

    def command(self, cmd: dict) -> None:
        name = cmd.get("cmd")
        if name == "up":
            self.frame_up(
                cmd["frames"],
                cmd.get("rssi", self.cfg["rssi"]),
                cmd.get("snr_q4", self.cfg["snr_q4"]),
            )
        elif name == "raw":
            self.write(bytes.fromhex(cmd["hex"]))
        elif name == "budget":
            self.used = cmd.get("used_ms", self.used)
            self.budget = cmd.get("budget_ms", self.budget)
            self.refill_ms = cmd.get("refill_ms", self.refill_ms)
            self.refill_at = None
            self.stats()
        elif name == "stats":
            self.stats()
        elif name == "mute_tx":
            self.mute_tx = bool(cmd.get("on", True))
        elif name == "hello":
            self.hello()
        elif name == "ping":
            self.event("pong", id=cmd.get("id"), bans=sorted(k.hex() for k in self.bans))
        elif name == "quit":
            self.running = False

    # -- loop -----------------------------------------------------------------------------

    def timers(self) -> None:
        now = time.monotonic()
        if self.refill_at is not None and now >= self.refill_at:
            self.refill_at = None
            self.used = 0
            self.event("refill")
            self.stats()
        interval = self.cfg["stats_interval_s"]
        if interval > 0 and now >= self.next_stats:
            self.next_stats = now + interval
            self.stats()

    def run(self) -> int:
        self.hello()
        self.event("ready", node_id=self.cfg["node_id"])
        while self.running:
            for key, mask in self.sel.select(timeout=0.05):
                if key.data == "tty":
                    if mask & selectors.EVENT_WRITE:
                        try:
                            self.flush()
                        except OSError as exc:
                            self.event("io_error", error=str(exc))
                            return 1
                    if mask & selectors.EVENT_READ:
                        try:
                            data = os.read(self.fd, 4096)
                        except BlockingIOError:
                            data = b""
                        except OSError as exc:
                            self.event("io_error", error=str(exc))
                            return 1
                        for payload in self.decoder.feed(data):
                            self.on_packet(payload)
                else:
                    chunk = os.read(sys.stdin.fileno(), 65536)
                    if not chunk:
                        self.running = False
                        break
                    self.stdin_buf += chunk
                    while b"\n" in self.stdin_buf:
                        line, self.stdin_buf = self.stdin_buf.split(b"\n", 1)
                        if line.strip():
                            self.command(json.loads(line))
            self.timers()
        # Drain what is queued for the tty (briefly) before leaving.
        deadline = time.monotonic() + 1.0
        while self.out and time.monotonic() < deadline:
            try:
                self.flush()
            except OSError:
                break
            time.sleep(0.01)
        self.event("exit")
        return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: board_sim.py TTY_PATH [CONFIG_JSON]\n")
        return 2
    cfg = dict(DEFAULTS)
    if len(argv) > 2:
        cfg.update(json.loads(argv[2]))
    return Board(argv[1], cfg).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
