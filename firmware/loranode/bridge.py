"""Bridge mode: the board forwards frames between its radio and its UART (the gateway).

The bridge is a node too: `Bridge` subclasses `loranode.node.Node`, so it announces
itself, keeps its peer table, relays, and answers pings like any node. Its own frames
and the gateway's frames share ONE transmit queue and ONE duty-cycle accountant, so the
region's limit holds for everything the radio sends, whoever asked for it.

UART: lorawire.uart packets (COBS + CRC-16, 0x00-delimited; every packet written is
preceded by an extra 0x00 so stray console bytes before it are flushed as one bad
packet, not glued onto it) carrying lorawire.link messages:

* radio -> FRAME_UP(frame, rssi, snr_q4) for every frame heard whose source is not
  banned at this radio (`frame.peek_source` + BanTable.is_banned: no tag check, no
  decode); banned ones are counted (`banned_drops`), frames with an unreadable header
  are not forwarded (counted in `dropped`). Every frame also goes through the node's
  own receive path.
* FRAME_DOWN(frame, priority, handle) -> the node's TxQueue at that priority
  (0 control, 1 blocks, 2 gossip; anything else is treated as gossip). Answers, one
  per handle, always:
    TX_DONE(handle, airtime_ms)             after the radio sent it;
    TX_DEFERRED(handle, DEFER_DUTY_CYCLE, w) the budget has no room now; w = real ms until
                                            it has (-1: this frame can never be sent);
    TX_DEFERRED(handle, DEFER_DWELL, -1)    longer than the channel's dwell limit;
    TX_DEFERRED(handle, DEFER_QUEUE_FULL, 0) queue or handle table full, the frame was
                                            evicted by a more urgent one, it waited
                                            HOLD_MS without getting airtime, or the
                                            radio failed to send it (then also ERROR);
    TX_DEFERRED(handle, DEFER_BANNED, -1)   its destination is banned here.
  A deferred frame is NOT kept: the gateway may offer it again after the wait. The
  check runs on arrival and again every timer tick while the frame waits, so a frame
  whose airtime was taken meanwhile (by the node's own traffic) is handed back at once.
* BAN(node_id, seconds) / UNBAN(node_id) -> the node's BanTable (the same table the
  receive path checks; bans.bin in the state directory). seconds = 0xFFFFFFFF is
  permanent. A pushed ban never shortens a longer one, and a re-push of the same ban
  (the gateway re-pushes its list after every HELLO) changes nothing. The file is written
  as a plain node writes it (Node.tick -> BanTable.maybe_save, so the flash is spared):
  the first change after boot at the next timer tick, later ones at most once per
  SAVE_INTERVAL_MS (a minute of node clock) -- so a ban survives a hard restart that
  comes more than one save interval after the push -- and on a clean stop (shutdown).
* HELLO: sent when the UART opens (also after a reopen) and in answer to every HELLO.
  Fields: link_version, wire_version, firmware (FIRMWARE), node_id, role "bridge".
* RADIO_STATS every `stats_interval_s` (default STATS_INTERVAL_S; 0 = never) and after
  each HELLO: rx (frames heard), tx (frames sent, the node's and the gateway's),
  airtime_used_ms / airtime_budget_ms (the accountant's window, node-clock ms),
  channel_busy (per mille of the time since the previous stats that the channel carried
  frames heard or sent, from their time on air), dropped (radio receive-queue overflow
  + unreadable headers + FRAME_DOWN refused for bad length + UART packets lost because
  the output buffer was full), banned_drops.
* CONFIG_GET(key) -> CONFIG_VALUE for CONFIG_KEYS; CONFIG_SET(key, value) for
  CONFIG_WRITABLE, answered with CONFIG_VALUE (the value now in force) or ERROR. Set
  values last until reboot (the config file is not touched). The announced record keeps
  the boot SF until reboot.
* Anything malformed: the StreamDecoder resynchronises at the next delimiter (bad CRC /
  COBS counted), a packet that fails `link.decode` is counted and answered with
  ERROR(link.ERR_BAD_PACKET), a board->gateway message type with ERROR(link.ERR_UNEXPECTED).

Time: the node clock runs at the medium's speed factor (1 on a board). Duty-cycle
figures (airtime, budget) are node-clock ms; waits sent to the gateway (TX_DEFERRED
wait_ms) and ban durations received from it are real time and converted.

UART errors (a tty whose other end went away: uart_port raises EIO): the port is closed,
output not yet written is dropped, and the port is reopened every REOPEN_MS until it
works; HELLO and RADIO_STATS follow each reopen. Frames handed down keep their handles.
"""

from loranode import counters as C
from loranode.clock import diff, ticks_add, ticks_diff, ticks_ms
from loranode.node import Node
from loranode.txqueue import BLOCKS, CONTROL, GOSSIP
from lorawire import frame as fr
from lorawire import link, uart
from lorawire import messages as msg
from lorawire.airtime import NEVER, airtime_ms
from lorawire.errors import DecodeError

FIRMWARE = "loranode-0.1"
ROLE = "bridge"
PENDING_DOWN = 8  # FRAME_DOWN handles held at once (the gateway keeps 2 in flight)
HOLD_MS = 6000  # real ms a gateway frame may wait for the radio (gateway times out at 10 s)
STATS_INTERVAL_S = 5
REOPEN_MS = 1000
OUT_CAP = 2048  # bytes of encoded packets waiting for the UART
READS_PER_TURN = 8
# CONFIG_SET sf: the node's largest own frame (loranode.config.LARGEST_OWN_FRAME, an
# ANNOUNCE with the largest record) must still be sendable under the new SF, as the config
# check at boot demands (the config module is unloaded by then, hence the copy).
LARGEST_OWN_FRAME = 187

CONFIG_KEYS = (
    "sf",
    "bandwidth_hz",
    "coding_rate",
    "frequency_hz",
    "tx_power_dbm",
    "region",
    "role",
    "status_interval_s",
    "stats_interval_s",
)
CONFIG_WRITABLE = ("sf", "tx_power_dbm", "status_interval_s", "stats_interval_s")
SF_MIN = 7
SF_MAX = 12
INTERVAL_MAX_S = 86400

_BACKGROUND = (msg.ANNOUNCE, msg.PEX_REQUEST, msg.PEX_RESPONSE)
_FREE = 0
_QUEUED = 1
_SENDING = 2
_B_COUNTERS = (
    "rx",
    "up",
    "banned_drops",
    "bad_header",
    "down",
    "tx_done",
    "deferred_duty",
    "deferred_full",
    "deferred_banned",
    "tx_failed",
    "bad_down",
    "link_errors",
    "unexpected",
    "out_overflow",
    "io_errors",
    "reopens",
    "hellos_rx",
    "bans_rx",
    "unbans_rx",
    "config_rx",
    "stats_tx",
)


class Bridge(Node):
    """A Node whose radio is shared with the gateway on the other end of `uart_port`."""

    def __init__(
        self,
        cfg,
        identity,
        radio,
        uart_port,
        app=None,
        name=None,
        out=None,
        firmware=FIRMWARE,
        clock=None,
    ):
        Node.__init__(self, cfg, identity, radio, app, name, out, clock)
        self.uart = uart_port
        self.firmware = firmware
        self.stats_ms = cfg["bridge"]["stats_interval_s"] * 1000
        self.region = cfg["region"]  # for CONFIG_GET: the node keeps no parsed config
        self.power_max = cfg["tx_power_dbm"]
        self.power = cfg["tx_power_dbm"]
        self.decoder = uart.StreamDecoder()
        self._out = bytearray(OUT_CAP)
        self._olen = 0
        self.b = {}
        for k in _B_COUNTERS:
            self.b[k] = 0
        self._p_handle = [0] * PENDING_DOWN
        self._p_frame = [None] * PENDING_DOWN
        self._p_state = bytearray(PENDING_DOWN)
        self._p_t = [ticks_ms()] * PENDING_DOWN  # when each slot's frame was queued
        self._busy_ms = 0  # channel airtime (node ms) since the last stats
        self._busy_from = 0
        self._stats_due = 0
        self._reopen_at = 0

    # --- UART output -----------------------------------------------------------------

    def send(self, msg_type, **fields):
        """Queue one link message for the UART; False if the output buffer is full."""
        try:
            pkt = uart.encode_packet(link.encode(msg_type, **fields))
        except ValueError:
            self.b["link_errors"] += 1
            return False
        n = len(pkt) + 1
        o = self._olen
        if o + n > OUT_CAP:
            self.b["out_overflow"] += 1
            return False
        self._out[o] = 0
        self._out[o + 1 : o + n] = pkt
        self._olen = o + n
        return True

    def flush(self):
        """Write to the UART what it takes of the queued output."""
        o = self._olen
        if not o or not self.uart.is_open:
            return
        n = self.uart.write(memoryview(self._out)[:o])
        if n >= o:
            self._olen = 0
        elif n:
            self._out[0 : o - n] = self._out[n:o]
            self._olen = o - n

    def error(self, code, text):
        self.send(link.ERROR, code=code, text=text[:64])

    def hello(self):
        self.send(
            link.HELLO,
            link_version=link.LINK_VERSION,
            wire_version=fr.VERSION,
            firmware=self.firmware,
            node_id=self.id,
            role=ROLE,
        )

    def radio_stats(self):
        now = self.clock.now()
        span = diff(now, self._busy_from)
        busy = self._busy_ms * 1000 // span if span > 0 else 0
        self._busy_ms = 0
        self._busy_from = now
        b = self.b
        dropped = (
            b["bad_header"]
            + b["bad_down"]
            + b["out_overflow"]
            + int(getattr(self.radio, "rx_dropped", 0))
        )
        self.b["stats_tx"] += 1
        self.send(
            link.RADIO_STATS,
            rx=b["rx"],
            tx=self.c[C.TX],
            airtime_used_ms=self.duty.used_ms(now),
            airtime_budget_ms=self.duty.budget_ms(),
            channel_busy=busy if busy < 1000 else 1000,
            dropped=dropped,
            banned_drops=b["banned_drops"],
        )

    # --- UART input ------------------------------------------------------------------

    def feed(self, data):
        """Bytes from the UART: decode packets and act on each; never raises on bad input."""
        for payload in self.decoder.feed(data):
            try:
                mt, f = link.decode(payload)
            except DecodeError as e:
                self.b["link_errors"] += 1
                self.error(link.ERR_BAD_PACKET, str(e))
                continue
            try:
                self.on_link(mt, f)
            except Exception as e:  # noqa: BLE001 - a bug in one message must not stop the link
                self.b["link_errors"] += 1
                self.error(link.ERR_BAD_VALUE, repr(e))

    def on_link(self, mt, f):
        if mt == link.FRAME_DOWN:
            self.frame_down(f["frame"], f["priority"], f["handle"])
        elif mt == link.HELLO:
            self.b["hellos_rx"] += 1
            self.hello()
            self.radio_stats()
        elif mt == link.BAN:
            self.b["bans_rx"] += 1
            self.ban_pushed(f["node_id"], f["seconds"])
        elif mt == link.UNBAN:
            self.b["unbans_rx"] += 1
            self.unban_pushed(f["node_id"])
        elif mt == link.CONFIG_GET:
            self.b["config_rx"] += 1
            self.config_get(f["key"])
        elif mt == link.CONFIG_SET:
            self.b["config_rx"] += 1
            self.config_set(f["key"], f["value"])
        elif mt == link.ERROR:
            self.b["unexpected"] += 1  # the gateway complains: counted, nothing to answer
        else:
            self.b["unexpected"] += 1
            self.error(link.ERR_UNEXPECTED, "message type 0x%02x is board-to-gateway" % mt)

    # --- frames down -----------------------------------------------------------------

    def _airtime(self, data):
        return airtime_ms(len(data), self.sf, self.bw, self.cr)

    def _wait(self, data):
        """Node-clock ms until the accountant has room for `data` (0 now, NEVER never)."""
        bg = data[1] in _BACKGROUND
        return self.duty.wait_ms(self._airtime(data), self.clock.now(), bg)

    def _never_reason(self, data):
        dwell = self.duty.dwell_ms
        if dwell and self._airtime(data) > dwell:
            return link.DEFER_DWELL
        return link.DEFER_DUTY_CYCLE

    def _deferred(self, handle, reason, wait_ms):
        if reason == link.DEFER_QUEUE_FULL:
            self.b["deferred_full"] += 1
        elif reason == link.DEFER_BANNED:
            self.b["deferred_banned"] += 1
        else:
            self.b["deferred_duty"] += 1
        self.send(link.TX_DEFERRED, handle=handle, reason=reason, wait_ms=wait_ms)

    def _real_wait(self, w):
        if w == NEVER:
            return NEVER
        return self.clock.wall_ms(w) + 1

    def frame_down(self, data, prio, handle):
        self.b["down"] += 1
        n = len(data)
        if n < fr.MIN_FRAME or n > fr.MAX_LORA_FRAME:
            self.b["bad_down"] += 1
            self.error(link.ERR_BAD_VALUE, "frame of %d bytes" % n)
            self._deferred(handle, link.DEFER_DUTY_CYCLE, NEVER)
            return
        if prio != CONTROL and prio != BLOCKS:
            prio = GOSSIP
        dest = fr.peek_dest(data)
        if dest is not None and self.bans.is_banned(dest, self.clock.now()):
            self._deferred(handle, link.DEFER_BANNED, NEVER)
            return
        w = self._wait(data)
        if w == NEVER:
            self._deferred(handle, self._never_reason(data), NEVER)
            return
        if w > 0:
            self._deferred(handle, link.DEFER_DUTY_CYCLE, self._real_wait(w))
            return
        i = self._free_slot()
        if i < 0 or not self.txq.push(data, prio, self.clock.now()):
            self._deferred(handle, link.DEFER_QUEUE_FULL, 0)
            return
        self._p_handle[i] = handle
        self._p_frame[i] = data
        self._p_state[i] = _QUEUED
        self._p_t[i] = ticks_ms()

    def _free_slot(self):
        for i in range(PENDING_DOWN):
            if self._p_state[i] == _FREE:
                return i
        return -1

    def _release(self, i):
        self._p_frame[i] = None
        self._p_state[i] = _FREE

    def _txq_take(self, data):
        """Remove `data` (by identity) from the transmit queue; False if it is not there."""
        q = self.txq
        for s in range(q.capacity):
            if q.frames[s] is data:
                q.frames[s] = None
                q.count -= 1
                q.dropped[q.prio[s]] += 1  # keeps pushed == sent + dropped + expired + queued
                return True
        return False

    def _in_txq(self, data):
        frames = self.txq.frames
        for s in range(self.txq.capacity):
            if frames[s] is data:
                return True
        return False

    def sweep(self):
        """Hand back gateway frames that lost their slot, their airtime, or waited too long."""
        now = ticks_ms()
        for i in range(PENDING_DOWN):
            if self._p_state[i] != _QUEUED:
                continue
            data = self._p_frame[i]
            h = self._p_handle[i]
            if not self._in_txq(data):  # evicted by a more urgent frame, or expired
                self._release(i)
                self._deferred(h, link.DEFER_QUEUE_FULL, 0)
                continue
            w = self._wait(data)
            if w != 0:
                self._txq_take(data)
                self._release(i)
                reason = link.DEFER_DUTY_CYCLE if w != NEVER else self._never_reason(data)
                self._deferred(h, reason, self._real_wait(w))
            elif ticks_diff(now, self._p_t[i]) > HOLD_MS:
                self._txq_take(data)
                self._release(i)
                self._deferred(h, link.DEFER_QUEUE_FULL, 0)

    def next_frame(self):
        for i in range(PENDING_DOWN):
            if self._p_state[i] == _SENDING:  # popped earlier but never charged: send failed
                self.b["tx_failed"] += 1
                h = self._p_handle[i]
                self._release(i)
                self.error(link.ERR_TX_FAILED, "radio failed to send handle %d" % h)
                self._deferred(h, link.DEFER_QUEUE_FULL, 0)
        data = Node.next_frame(self)
        if data is not None:
            for i in range(PENDING_DOWN):
                if self._p_state[i] == _QUEUED and self._p_frame[i] is data:
                    self._p_state[i] = _SENDING
                    break
        return data

    def charge(self, data, now):
        Node.charge(self, data, now)
        air = self._airtime(data)
        self._busy_ms += air
        for i in range(PENDING_DOWN):
            if self._p_state[i] == _SENDING and self._p_frame[i] is data:
                h = self._p_handle[i]
                self._release(i)
                self.b["tx_done"] += 1
                self.send(link.TX_DONE, handle=h, airtime_ms=air)
                return

    # --- frames up -------------------------------------------------------------------

    def handle_frame(self, data, rssi=None, snr=None):
        b = self.b
        b["rx"] += 1
        try:
            self._busy_ms += self._airtime(data)
        except ValueError:
            pass
        try:
            src = fr.peek_source(data)
        except DecodeError:
            b["bad_header"] += 1
            src = None
        if src is not None:
            if self.bans.is_banned(src, self.clock.now()):
                b["banned_drops"] += 1
            else:
                r = -200 if rssi is None else int(rssi)
                q = 0 if snr is None else int(round(snr * 4))
                if self.send(link.FRAME_UP, frame=bytes(data), rssi=r, snr_q4=q):
                    b["up"] += 1
        Node.handle_frame(self, data, rssi, snr)

    # --- bans ------------------------------------------------------------------------

    def _remaining(self, node_id, t):
        for e in self.bans.dump(t):
            if e[0] == node_id:
                return e[1]
        return 0

    def ban_pushed(self, node_id, seconds):
        if node_id == self.id:
            self.error(link.ERR_BAD_VALUE, "cannot ban this bridge's own id")
            return
        t = self.clock.now()
        rem = self._remaining(node_id, t)
        if seconds >= link.BAN_PERMANENT_SECONDS:
            if rem == -1:
                return
            self.bans.ban(node_id, t, permanent=True)
        else:
            want = seconds * self.clock.milli  # real s -> node-clock ms
            if want > self.bans.max_ms:
                want = self.bans.max_ms
            if want < 1:
                want = 1
            if rem == -1 or rem >= want - want // 10 - 1000:
                return  # never shorten a ban; a re-push changes nothing
            self.bans.ban(node_id, t, duration_ms=want)
        self.forget(node_id)

    def unban_pushed(self, node_id):
        self.bans.unban(node_id)  # saved by Node.tick (BanTable.maybe_save)

    # --- config ----------------------------------------------------------------------

    def config_value(self, key):
        if key == "tx_power_dbm":
            return self.power
        if key == "status_interval_s":
            return self.status_ms // 1000
        if key == "stats_interval_s":
            return self.stats_ms // 1000
        if key == "sf":
            return self.sf
        if key == "bandwidth_hz":
            return self.bw
        if key == "coding_rate":
            return self.cr
        if key == "frequency_hz":
            return self.freq
        if key == "role":
            return ROLE
        return self.region  # the one key left: CONFIG_KEYS

    def config_get(self, key):
        if key not in CONFIG_KEYS:
            self.error(link.ERR_UNKNOWN_KEY, "unknown config key " + key)
            return
        self.send(link.CONFIG_VALUE, key=key, value=self.config_value(key))

    def config_set(self, key, v):
        if key not in CONFIG_KEYS:
            self.error(link.ERR_UNKNOWN_KEY, "unknown config key " + key)
            return
        if key not in CONFIG_WRITABLE:
            self.error(link.ERR_READ_ONLY, key + " is read-only")
            return
        if isinstance(v, bool) or not isinstance(v, int):
            self.error(link.ERR_BAD_VALUE, key + " must be an integer")
            return
        if key == "sf":
            if not SF_MIN <= v <= SF_MAX:
                self.error(link.ERR_BAD_VALUE, "sf must be %d..%d" % (SF_MIN, SF_MAX))
                return
            air = airtime_ms(LARGEST_OWN_FRAME, v, self.bw, self.cr)
            if self.duty.wait_ms(air, self.clock.now(), True) == NEVER:
                self.error(
                    link.ERR_BAD_VALUE,
                    "sf %d: a %d-byte frame (%d ms) is over the dwell or duty limit"
                    % (v, LARGEST_OWN_FRAME, air),
                )
                return
            if not self._reconfigure(v, self.power):
                return
            self.sf = v
        elif key == "tx_power_dbm":
            if not 0 <= v <= self.power_max:
                self.error(link.ERR_BAD_VALUE, "tx_power_dbm must be 0..%d" % self.power_max)
                return
            if not self._reconfigure(self.sf, v):
                return
            self.power = v
        else:
            if not 0 <= v <= INTERVAL_MAX_S:
                self.error(link.ERR_BAD_VALUE, "%s must be 0..%d" % (key, INTERVAL_MAX_S))
                return
            if key == "status_interval_s":
                self.status_ms = v * 1000
            else:
                self.stats_ms = v * 1000
                self._stats_due = ticks_ms()
        self.send(link.CONFIG_VALUE, key=key, value=self.config_value(key))

    def _reconfigure(self, sf, power):
        try:
            self.radio.configure(self.freq, sf, self.bw, self.cr, power)
            return True
        except (OSError, ValueError) as e:
            self.error(link.ERR_BAD_VALUE, "radio: %s" % (e,))
            return False

    # --- main loop -------------------------------------------------------------------

    def tick(self, now):
        Node.tick(self, now)
        self.sweep()
        if self.stats_ms and ticks_diff(ticks_ms(), self._stats_due) >= 0:
            self._stats_due = ticks_add(ticks_ms(), self.stats_ms)
            self.radio_stats()

    def _uart_opened(self):
        self.decoder = uart.StreamDecoder()
        self.hello()
        self.radio_stats()

    def _uart_failed(self):
        self.b["io_errors"] += 1
        self.uart.close()
        self._olen = 0
        self._reopen_at = ticks_add(ticks_ms(), REOPEN_MS)

    async def uart_task(self, sleep_ms):
        port = self.uart
        self._busy_from = self.clock.now()
        self._stats_due = ticks_add(ticks_ms(), self.stats_ms)
        if port.is_open:
            self._uart_opened()
        while self.running:
            if not port.is_open:
                if ticks_diff(ticks_ms(), self._reopen_at) < 0:
                    await sleep_ms(50)
                    continue
                try:
                    port.open()
                except OSError:
                    self._reopen_at = ticks_add(ticks_ms(), REOPEN_MS)
                    continue
                self.b["reopens"] += 1
                self._uart_opened()
            try:
                for _ in range(READS_PER_TURN):
                    data = port.read_available()
                    if not data:
                        break
                    self.feed(data)
                self.flush()
            except OSError:
                self._uart_failed()
                continue
            if self._olen:
                await sleep_ms(2)
            else:
                await port.wait_readable(20)

    async def run(self, extra=None):
        await Node.run(self, self.uart_task)

    def shutdown(self):
        Node.shutdown(self)
        try:
            self.flush()
        except OSError:
            pass


def open_port(cfg):
    """The UartPort of a validated config: `uart.path` (a tty, unix port) or the board UART."""
    from loranode.uart_port import UartPort

    u = cfg.get("uart") or {}
    path = u.get("path")
    baud = u.get("baud") or 115200
    if path:
        return UartPort(path=path, baud=baud)
    return UartPort(uart_id=u.get("id", 0), baud=baud, tx=u.get("tx"), rx=u.get("rx"))


def console_uart(cfg):
    """True when the bridge UART is the board's console (uart id 0 without a tty path)."""
    u = cfg.get("uart") or {}
    return not u.get("path") and u.get("id", 0) == 0


def run(cfg, identity, radio, name=None, port=None):
    """Run bridge mode until stopped (stdin `quit`, SIGINT); saves bans on the way out.

    On the console UART (uart id 0) nothing else may write to it: stdin commands and
    STATUS lines are switched off.
    """
    import asyncio

    if console_uart(cfg):
        cfg = dict(cfg)
        opts = dict(cfg["node"])
        opts["stdin"] = False
        opts["status_interval_s"] = 0
        cfg["node"] = opts
    if port is None:
        port = open_port(cfg)
    b = Bridge(cfg, identity, radio, port, name=name)
    if not console_uart(cfg):
        print("BRIDGE %s %s" % (identity.hex_id(), b.name))
    try:
        asyncio.run(b.run())
    except KeyboardInterrupt:
        pass
    finally:
        b.shutdown()
        port.close()
    return b
