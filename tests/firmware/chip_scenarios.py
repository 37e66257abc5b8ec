# mypy: ignore-errors
"""Scenarios for test_lora_drivers.py, run inside a unix port: micropython-lib's real
LoRa drivers, under loranode.radio_lora, on an emulated chip (tools/chipsim).

    micropython chip_scenarios.py SCENARIO BOARD_JSON [args...]

BOARD_JSON is chipsim/boot.py's board description (its "medium" may be null: no
antenna). The scenario prints `RESULT <json>` last; `READY` where the test must act
(it then answers on stdin). Every result carries "faults": what the chip refused.
"""

import json
import sys

from chipsim import boot, faults
from chipsim.faults import ChipFault

FREQ = 868100000


def _desc():
    with open(sys.argv[2]) as f:
        return json.loads(f.read())


def _preset(desc):
    # the board preset the host wrote beside the wiring (config.json's "radio" on a board)
    return dict(desc["preset"])


def _open(preset, sf=7, bw=125000, cr=5, power=14, freq=FREQ):
    from loranode.radio_lora import open_radio

    return open_radio(preset, freq, sf, bw, cr, power)


def _done(out, chip=None, board=None):
    out["faults"] = list(faults.LOG)
    if chip is not None:
        out["chip_counters"] = chip.counters()
    if board is not None:
        out["irqs"] = board.irqs
        out["irq_lost"] = board.irq_lost
    print("RESULT " + json.dumps(out))


def _settings(chip):
    """What the chip was configured to, read from its own registers / commands."""
    freq, sf, bw, power, cr = chip.channel()
    out = {"freq": freq, "sf": sf, "bw": bw, "cr": cr, "power": power}
    if chip.NAME == "sx1276":
        r = chip.regs
        out.update(
            preamble=chip.preamble(),
            crc=bool(r[0x1E] & 0x04),
            implicit=bool(r[0x1D] & 1),
            ldro=bool(r[0x26] & 0x08),
            syncword=r[0x39],
            mode=chip.mode(),
        )
        return out
    out.update(
        preamble=chip.preamble,
        crc=bool(chip.crc_on),
        implicit=bool(chip.implicit),
        ldro=bool(chip.ldro),
        syncword=(chip.registers[0x0740] << 8) | chip.registers[0x0741],
        mode=chip.mode,
        tcxo_mv=chip.tcxo[0] if chip.tcxo else None,
        dio2_rf_sw=chip.dio2_rf_sw,
    )
    return out


def scenario_config():
    """Settings reach the chip; what the adapter refuses never reaches the driver."""
    desc = _desc()
    chip, board = boot.build(desc)
    preset = _preset(desc)
    out = {}
    r = _open(preset, sf=9, bw=250000, cr=7, power=14)
    out["first"] = _settings(chip)
    out["rx_crc_error"] = r.modem.rx_crc_error
    r.configure(FREQ, 12, 125000, 8, 10)
    out["reconfigured"] = _settings(chip)
    out["bandwidths"] = []
    for hz in (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000):
        r.configure(FREQ, 7, hz, 5, 14)
        out["bandwidths"].append(chip.channel()[2])
    r.configure(868012500, 7, 125000, 5, 14)
    out["fractional_freq"] = chip.channel()[0]
    before = board.transactions
    refused = []
    too_strong = preset["max_power_dbm"] + 1
    for args in (
        (FREQ, 13, 125000, 5, 14),
        (FREQ, 7, 100000, 5, 14),
        (FREQ, 6, 125000, 5, 14),
        (FREQ, 7, 125000, 5, too_strong),
    ):
        try:
            r.configure(*args)
        except ValueError as e:
            refused.append(str(e))
    out["refused"] = refused
    out["transactions_while_refusing"] = board.transactions - before
    r.configure(FREQ, 7, 125000, 5, 14)
    out["airtime_ms"] = r.send(b"hello")
    out["driver_toa_us"] = r.modem.get_time_on_air_us(5)
    out["chip_toa_us"] = chip.time_on_air_us(5)
    out["after_send"] = _settings(chip)
    r.modem.standby()  # something else stopped the receive: recv() re-arms it
    out["recv_after_standby"] = r.recv()
    out["rearmed"] = _settings(chip)["mode"]
    r.close()
    out["closed"] = _settings(chip)["mode"]
    out["recv_after_close"] = r.recv()
    _done(out, chip, board)


def scenario_airtime():
    """One frame per (SF, length) on the medium; the test reads the medium's timing."""
    desc = _desc()
    chip, board = boot.build(desc)
    r = _open(_preset(desc))
    frames = []
    for sf, n in ((7, 10), (8, 10), (9, 13), (10, 10), (11, 10), (12, 10), (7, 40), (12, 13)):
        r.configure(FREQ, sf, 125000, 5, 14)
        payload = bytes([sf]) * n
        t = r.send(payload)
        frames.append(
            {
                "sf": sf,
                "n": n,
                "adapter_ms": t,
                "driver_us": r.modem.get_time_on_air_us(n),
                "chip_us": chip.time_on_air_us(n),
            }
        )
    _done({"frames": frames}, chip, board)


def _ready():
    print("READY")
    line = sys.stdin.readline()
    return line.strip()


def scenario_receive():
    """Frames from the medium, good and corrupted, through the adapter (async, IRQs)."""
    import asyncio

    desc = _desc()
    chip, board = boot.build(desc)
    want = int(sys.argv[3])
    r = _open(_preset(desc))
    asyncio.create_task(boot.pump(chip))
    got = []

    async def main():
        deadline = 30000
        from time import ticks_diff, ticks_ms

        start = ticks_ms()
        while len(got) < want and ticks_diff(ticks_ms(), start) < deadline:
            pkt = await r.arecv(1000)
            if pkt is not None:
                got.append([pkt[0].decode(), pkt[1], pkt[2]])

    async def send_first():
        return await r.asend(b"hello")

    sent_ms = asyncio.run(send_first())
    print("READY")
    asyncio.run(main())
    c = r.counters()
    out = {
        "asend_ms": sent_ms,
        "asend_chip_ms": chip.time_on_air_us(5) / 1000,
        "got": got,
        "rx_frames": r.rx_frames,
        "crc_errors": r.crc_errors,
        "modem_crc_errors": c["modem_crc_errors"],
    }
    _done(out, chip, board)


def scenario_receive_driver_alone():
    """The vendored driver without the adapter: what poll_recv() says of each frame."""
    desc = _desc()
    chip, board = boot.build(desc)
    want = int(sys.argv[3])
    import lora
    from machine import SPI, Pin

    from loranode.radio_lora import lora_cfg

    p = _preset(desc)
    spi = SPI(1, baudrate=2000000, sck=Pin(p["sck"]), mosi=Pin(p["mosi"]), miso=Pin(p["miso"]))
    if desc["chip"] == "sx1262":  # the async class: the frozen build has no lora-sync
        modem = lora.AsyncSX1262(
            spi,
            Pin(p["cs"]),
            Pin(p["busy"]),
            dio1=Pin(p["dio1"]),
            dio3_tcxo_millivolts=p["tcxo_mv"],
            reset=Pin(p["reset"]),
        )
    else:
        modem = lora.AsyncSX1276(
            spi, Pin(p["cs"]), dio0=Pin(p["dio0"]), dio1=Pin(p["dio1"]), reset=Pin(p["reset"])
        )
    modem.rx_crc_error = True
    modem.configure(lora_cfg(FREQ, 7, 125000, 5, 14, desc["chip"]))
    modem.start_recv(None, True)
    print("READY")
    from time import sleep_ms, ticks_diff, ticks_ms

    got = []
    start = ticks_ms()
    while len(got) < want and ticks_diff(ticks_ms(), start) < 30000:
        pkt = modem.poll_recv()
        if pkt is not True and pkt is not False:
            got.append([bytes(pkt).hex(), pkt.crc_error])
        sleep_ms(5)
    _done({"got": got, "driver_crc_errors": modem.crc_errors}, chip, board)


def scenario_tx_during_rx():
    """Asked to send while a long frame is arriving: what the chip does with both."""
    desc = _desc()
    chip, board = boot.build(desc)
    r = _open(_preset(desc), sf=int(sys.argv[3]))
    from time import sleep_ms, ticks_diff, ticks_ms

    _ready()  # the test has started the long frame and waited into it
    listening = chip.listening()
    airtime = r.send(b"interrupting")
    after = []
    start = ticks_ms()
    while ticks_diff(ticks_ms(), start) < 4000:
        pkt = r.recv()
        if pkt is not None:
            after.append(pkt[0].hex())
        sleep_ms(10)
    out = {
        "listening_before": listening,
        "airtime_ms": airtime,
        "chip_toa_us": chip.time_on_air_us(len(b"interrupting")),
        "received": after,
        "crc_errors": r.crc_errors,
    }
    _done(out, chip, board)


def _refused(out, what, fn, cs):
    """Run fn, which should make the chip raise; NSS goes high afterwards, as the driver
    does not do when an SPI call raises."""
    n = len(faults.LOG)
    try:
        fn()
    except ChipFault as e:
        out[what] = str(e)
        return
    except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
        out[what] = "not a ChipFault: %r" % (e,)
        return
    finally:
        cs(1)
    out[what] = None if len(faults.LOG) == n else "recorded without raising"


class _RawSpi:
    """The chip's SPI bus on the board preset's pins, driven as micropython-lib's drivers
    drive it (sx127x `_reg_write` / `_reg_read`, sx126x `_cmd`), for accesses their public
    API never makes: the emulated chip must refuse them as the real one would."""

    def __init__(self, preset):
        import machine  # the stand-in boot.build installed

        self.spi = machine.SPI(
            preset["spi_id"],
            baudrate=preset.get("spi_baudrate", 2000000),
            polarity=0,
            phase=0,
            sck=machine.Pin(preset["sck"]),
            mosi=machine.Pin(preset["mosi"]),
            miso=machine.Pin(preset["miso"]),
        )
        self.cs = machine.Pin(preset["cs"], machine.Pin.OUT, value=1)
        busy = preset.get("busy")
        self.busy = None if busy is None else machine.Pin(busy)

    def reg_write(self, reg, value):  # sx127x: address | 0x80, then the bytes
        self.cs(0)
        self.spi.write(bytes([reg | 0x80]))
        self.spi.write(bytes([value]) if isinstance(value, int) else value)
        self.cs(1)

    def reg_read(self, reg):  # sx127x
        buf = bytearray([reg, 0xFF])
        self.cs(0)
        self.spi.write_readinto(buf, buf)
        self.cs(1)
        return buf[1]

    def cmd(self, *data):  # sx126x: wait for BUSY low, then one transaction
        from time import sleep_ms, ticks_diff, ticks_ms

        start = ticks_ms()
        while self.busy.value():
            if ticks_diff(ticks_ms(), start) > 100:
                raise RuntimeError("BUSY timeout")
            sleep_ms(1)
        buf = bytearray(data)
        self.cs(0)
        self.spi.write_readinto(buf, buf)
        self.cs(1)
        return buf

    def reg_read_126x(self, addr):  # ReadRegister (0x1D): address, a status byte, data
        return self.cmd(0x1D, addr >> 8, addr & 0xFF, 0, 0)[4]


def scenario_wrong_access():
    """Accesses the real chip would not accept, made on purpose on its SPI bus."""
    desc = _desc()
    chip, board = boot.build(desc)
    r = _open(_preset(desc))
    m = r.modem
    raw = _RawSpi(_preset(desc))
    cs = raw.cs
    out = {"normal_faults": list(faults.LOG)}
    if desc["chip"] == "sx1276":
        _refused(out, "write_read_only", lambda: raw.reg_write(0x42, 0x00), cs)
        _refused(out, "outside_map", lambda: raw.reg_read(0x05), cs)
        m.standby()
        _refused(out, "long_range_in_standby", lambda: raw.reg_write(0x01, 0x01), cs)
        r.configure(FREQ, 7, 125000, 5, 14)  # receiving again
        _refused(out, "fifo_write_in_rx", lambda: raw.reg_write(0x00, b"x"), cs)
        _refused(out, "config_in_rx", lambda: raw.reg_write(0x1D, 0x72), cs)
        m.standby()
        _refused(out, "reserved_bandwidth", lambda: raw.reg_write(0x1D, 0xF2), cs)
    else:
        m.standby()
        _refused(out, "coding_rate_4_4", lambda: m.configure({"coding_rate": 4}), cs)
        _refused(out, "unknown_opcode", lambda: raw.cmd(0x55), cs)
        _refused(out, "outside_map", lambda: raw.reg_read_126x(0x1234), cs)

        def while_busy():
            raw.cmd(0x80, 0)  # STDBY_RC
            raw.cmd(0x89, 0x7F)  # Calibrate: BUSY high for 3.5 ms
            cs(0)  # and a command at once, without waiting for BUSY
            try:
                raw.spi.write(b"\xc0\x00")
            finally:
                cs(1)

        _refused(out, "command_while_busy", while_busy, cs)
        r.configure(FREQ, 7, 125000, 5, 14)  # receiving again
        _refused(out, "sleep_from_rx", lambda: raw.cmd(0x84, 0x04), cs)
    _done(out, chip, board)


def scenario_bad_board():
    """A preset that does not match the board: the driver's own error, as on a board."""
    desc = _desc()
    chip, board = boot.build(desc)
    p = _preset(desc)
    what = sys.argv[3]
    if what == "wrong_cs":
        p["cs"] = 4
    elif what == "no_tcxo":
        p["tcxo_mv"] = None
    out = {}
    try:
        if what == "spi_mode":
            from machine import SPI, Pin

            spi = SPI(
                1, polarity=1, phase=1, sck=Pin(p["sck"]), mosi=Pin(p["mosi"]), miso=Pin(p["miso"])
            )
            Pin(p["cs"]).init(Pin.OUT, value=0)
            spi.write(b"\x42")
        else:
            _open(p)
        out["error"] = None
    except Exception as e:  # noqa: BLE001 - the test checks which
        out["error"] = "%s: %s" % (type(e).__name__, e)
    _done(out, chip, board)


def scenario_bad_presets():
    """make_modem's own checks, and what the driver refuses, before any radio work."""
    from loranode.radio_lora import make_modem

    desc = _desc()
    chip, board = boot.build(desc)
    base = _preset(desc)
    out = {}
    for what, change in (
        ("chip", {"chip": "sx9999"}),
        ("cs", {"cs": None}),
        ("busy", {"busy": None}),
        ("tcxo", {"tcxo_mv": 5000}),
        ("sync_api", {"modem_api": "sync"}),
    ):
        p = dict(base)
        p.update(change)
        try:
            make_modem(p)
            out[what] = None
        except Exception as e:  # noqa: BLE001 - the test checks which
            out[what] = "%s: %s" % (type(e).__name__, e)
    _done(out, chip, board)


def scenario_rf_switch():
    """A board whose antenna switch is on two GPIOs (preset rf_switch)."""
    desc = _desc()
    chip, board = boot.build(desc)
    p = _preset(desc)
    p["rf_switch"] = {"tx": 2, "rx": 3}
    r = _open(p)
    tx, rx = board.gpio(2), board.gpio(3)
    tx.history[:] = []
    rx.history[:] = []
    r.send(b"switched")
    _done({"tx": tx.history, "rx": rx.history, "tx_now": tx.out, "rx_now": rx.out}, chip, board)


SCENARIOS = {
    "bad_presets": scenario_bad_presets,
    "rf_switch": scenario_rf_switch,
    "config": scenario_config,
    "airtime": scenario_airtime,
    "receive": scenario_receive,
    "receive_driver_alone": scenario_receive_driver_alone,
    "tx_during_rx": scenario_tx_during_rx,
    "wrong_access": scenario_wrong_access,
    "bad_board": scenario_bad_board,
}

SCENARIOS[sys.argv[1]]()
