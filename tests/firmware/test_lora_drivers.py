"""micropython-lib's real SX1276 and SX1262 drivers, under loranode.radio_lora, on the
emulated chips of tools/chipsim, on the board-shaped 32-bit interpreters (drivers from
.mpy files on the plain build, frozen on the frozen one), through the meshsim medium.

Each test runs tests/firmware/chip_scenarios.py in a unix port; the medium is a
subprocess; CPython SimRadios are the other radios on the air. Every scenario reports
the faults the emulated chip raised, and a test of normal operation asserts there were
none.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lorawire.airtime import time_on_air_ms
from mediumproc import MediumProc
from tools.meshsim.launcher import CHIP_BOARDS, emulated_board
from upy import current, micropython_binary, micropython_path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TOOLS = ROOT / "tools"
SCENARIOS = HERE / "chip_scenarios.py"
FREQ = 868_100_000
CHIPS = ("sx1276", "sx1262")
BOARD_BUILDS = ("plain", "frozen")


class Script:
    """chip_scenarios.py SCENARIO in the current interpreter, line by line."""

    def __init__(
        self,
        tmp: Path,
        scenario: str,
        chip: str,
        port: int | None,
        *args: str,
        path: list[Path | str] | None = None,
    ) -> None:
        board = tmp / f"board-{scenario}.json"
        board.write_text(json.dumps(emulated_board(CHIP_BOARDS[chip], "c", port)))
        argv = [micropython_binary(), "-X", "heapsize=1M", str(SCENARIOS), scenario, str(board)]
        env = {
            "MICROPYPATH": micropython_path(*(path or []), TOOLS, HERE),
            "PATH": "/usr/bin:/bin",
        }
        self.proc = subprocess.Popen(
            [*argv, *args],
            cwd=tmp,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = None
                if time.monotonic() < deadline:
                    continue
            if line is None:
                self.proc.kill()
                tail = "\n".join(self.seen[-30:])
                raise AssertionError(f"no {prefix!r} from the unix port:\n{tail}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line[len(prefix) :]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def result(self, timeout: float = 90.0) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.wait_for("RESULT ", timeout))
        self.proc.wait(30)
        return out


def _sim(port: int, name: str, sf: int = 7) -> Any:  # noqa: ANN401 - loranode.radio_sim.SimRadio
    from loranode.radio_sim import SimRadio

    r = SimRadio(name.encode().ljust(8, b"\0")[:8], name, "127.0.0.1", port)
    r.configure(FREQ, sf, 125_000, 5, 14)
    return r


def _drain(radio: Any) -> list[tuple[bytes, int, float, float, float]]:  # noqa: ANN401
    out = []
    while (p := radio.recv()) is not None:
        out.append((p[0], p[1], p[2], *radio.last_rx_time))
    return out


@pytest.fixture(params=CHIPS)
def chip(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- configuration, no antenna ---------------------------------------------------------


@pytest.mark.upy(*BOARD_BUILDS)
def test_settings_reach_the_chip_and_refusals_do_not(chip: str, tmp_path: Path) -> None:
    r = Script(tmp_path, "config", chip, None).result()
    first = r["first"]
    assert abs(first["freq"] - FREQ) <= 61  # one synthesizer step (SX1276 61 Hz)
    assert (first["sf"], first["bw"], first["cr"], first["power"]) == (9, 250_000, 7, 14)
    assert first["preamble"] == 8 and first["crc"] is True and first["implicit"] is False
    assert first["ldro"] is False  # Tsym 2 ms at SF9/250 kHz
    assert first["syncword"] == (0x12 if chip == "sx1276" else 0x1424)  # private network
    rx = 5 if chip == "sx1276" else "RX"  # RXCONTINUOUS / RX
    assert first["mode"] == rx and r["rx_crc_error"] is True
    if chip == "sx1262":
        assert first["tcxo_mv"] == 1800 and first["dio2_rf_sw"] is True  # Heltec V3
    again = r["reconfigured"]
    assert (again["sf"], again["cr"], again["power"], again["ldro"]) == (12, 8, 10, True)
    assert again["mode"] == rx  # the receive was re-armed after the driver's standby
    assert r["bandwidths"] == [
        7800,
        10400,
        15600,
        20800,
        31250,
        41700,
        62500,
        125000,
        250000,
        500000,
    ]
    assert abs(r["fractional_freq"] - 868_012_500) <= 61
    assert [m.split()[0] for m in r["refused"]] == ["sf", "bw_hz", "sf", "tx_power_dbm"]
    assert r["transactions_while_refusing"] == 0  # nothing reached the chip
    assert r["airtime_ms"] == r["driver_toa_us"] / 1000 == r["chip_toa_us"] / 1000
    assert r["after_send"]["mode"] == rx  # receiving again after the send
    assert r["recv_after_standby"] is None and r["rearmed"] == rx
    assert r["closed"] == (0 if chip == "sx1276" else "SLEEP") and r["recv_after_close"] is None
    assert r["faults"] == []


@pytest.mark.upy(*BOARD_BUILDS)
def test_gpio_antenna_switch_follows_the_send(chip: str, tmp_path: Path) -> None:
    r = Script(tmp_path, "rf_switch", chip, None).result()
    assert 1 in r["tx"] and r["rx"][r["tx"].index(1)] == 0  # TX path on, RX path off
    assert (r["tx_now"], r["rx_now"]) == (0, 1)  # back to receive after the send
    assert r["faults"] == []


# -- on the air -------------------------------------------------------------------------


REFERENCE_MS = {(7, 10): 41.216, (12, 10): 991.232, (9, 13): 164.864}  # CR 4/5, preamble 8, CRC


@pytest.mark.slow
@pytest.mark.upy(*BOARD_BUILDS)
def test_time_on_air_per_sf_matches_lorawire_and_references(chip: str, tmp_path: Path) -> None:
    sfs = range(7, 13)
    topo = {"links": [["c", f"l{sf}", {"rssi": -80, "snr": 10}] for sf in sfs]}
    with MediumProc(topo, tmp_path) as medium:
        listeners = {sf: _sim(medium.port, f"l{sf}", sf) for sf in sfs}
        r = Script(tmp_path, "airtime", chip, medium.port).result()
        heard = {sf: _drain(listeners[sf]) for sf in sfs}
        node = medium.stats()["nodes"]["c"]
        for lst in listeners.values():
            lst.close()
    assert r["faults"] == []
    on_air = {}
    for sf, frames in heard.items():
        for payload, _rssi, _snr, t0, t1 in frames:
            assert payload == bytes([sf]) * len(payload)
            on_air[(sf, len(payload))] = (t1 - t0) * 1000
    total = 0.0
    for f in r["frames"]:
        key = (f["sf"], f["n"])
        chip_ms = f["chip_us"] / 1000
        assert f["driver_us"] == f["chip_us"]  # driver and chip agree (LDRO as set)
        assert f["adapter_ms"] == chip_ms
        assert abs(on_air[key] - chip_ms) < 1e-3  # what the medium kept it on air
        assert abs(chip_ms - time_on_air_ms(f["n"], f["sf"], 125_000)) < 1.0
        if key in REFERENCE_MS:
            assert abs(chip_ms - REFERENCE_MS[key]) < 1e-6
            assert abs(time_on_air_ms(f["n"], f["sf"], 125_000) - REFERENCE_MS[key]) < 1e-6
        total += chip_ms
    assert {f["sf"] for f in r["frames"]} == set(sfs)
    assert abs(node["tx_airtime_ms"] - total) < 0.01


@pytest.mark.slow
@pytest.mark.upy(*BOARD_BUILDS)
def test_rssi_snr_as_delivered_and_corrupted_frames_counted(chip: str, tmp_path: Path) -> None:
    topo = {
        "links": [
            ["neg", "c", {"rssi": -118, "snr": -6.5, "oneway": True}],
            ["pos", "c", {"rssi": -87, "snr": 9.25, "oneway": True}],
            ["bad", "c", {"rssi": -90, "snr": 5, "corrupt": 1.0, "oneway": True}],
        ]
    }
    with MediumProc(topo, tmp_path) as medium:
        senders = {n: _sim(medium.port, n) for n in ("neg", "pos", "bad")}
        s = Script(tmp_path, "receive", chip, medium.port, "4")
        s.wait_for("READY")
        for i in (1, 2):
            for name in ("bad", "neg", "pos"):
                senders[name].send(f"{name}-{i}".encode())
        r = s.result()
        stats = medium.stats()
        for snd in senders.values():
            snd.close()
    assert r["faults"] == [] and r["irq_lost"] == 0
    assert r["asend_ms"] == r["asend_chip_ms"]  # the async send the node uses
    assert r["irqs"] > 0  # the driver was woken by DIO interrupts, not only by polling
    got = {p: (rssi, snr) for p, rssi, snr in r["got"]}
    assert set(got) == {"neg-1", "neg-2", "pos-1", "pos-2"}  # the corrupted ones never
    for p, (rssi, snr) in got.items():
        want_rssi, want_snr = (-118, -6.5) if p.startswith("neg") else (-87, 9.25)
        assert abs(rssi - want_rssi) <= 1 and abs(snr - want_snr) <= 1
    assert r["crc_errors"] == 2 and r["modem_crc_errors"] == 2 and r["rx_frames"] == 4
    assert stats["corrupted"] == 2 and stats["nodes"]["c"]["corrupted"] == 2
    assert r["chip_counters"]["rx_crc"] == 2


@pytest.mark.slow
@pytest.mark.upy(*BOARD_BUILDS)
def test_vendored_sx126x_driver_alone_takes_bad_crc_for_good(chip: str, tmp_path: Path) -> None:
    """micropython-lib issue #1112, reproduced on the emulated chip: lora-sx126x 0.1.5
    leaves CrcErr out of the IrqMask and the SX126x flags only unmasked IRQs, so the
    driver alone returns a corrupted frame as valid (what make_modem corrects; see
    test_rssi_snr_as_delivered_and_corrupted_frames_counted). The SX127x has no mask
    of that kind and its driver sees the error."""
    topo = {"links": [["bad", "c", {"rssi": -90, "snr": 5, "corrupt": 1.0}]]}
    with MediumProc(topo, tmp_path) as medium:
        bad = _sim(medium.port, "bad")
        s = Script(tmp_path, "receive_driver_alone", chip, medium.port, "1")
        s.wait_for("READY")
        bad.send(b"garbled")
        r = s.result()
        bad.close()
    assert r["faults"] == []
    [(payload, crc_error)] = r["got"]
    assert bytes.fromhex(payload) != b"garbled" and len(payload) == 2 * len(b"garbled")
    if chip == "sx1262":
        assert crc_error is False and r["driver_crc_errors"] == 0
    else:
        assert crc_error is True and r["driver_crc_errors"] == 1


@pytest.mark.slow
@pytest.mark.upy(*BOARD_BUILDS)
def test_send_while_a_frame_is_arriving(chip: str, tmp_path: Path) -> None:
    """The chip does what its datasheet says: a mode request takes effect at once. The
    driver's prepare_send() puts the modem in Stand-by (SX1276 DS 4.1.3: the mode changes
    immediately; SX1262 DS 13.1.2 SetStandby), which abandons the packet being received
    -- no RxDone, no CRC error, nothing in the FIFO -- and the TX mode request (SX1276 DS
    4.1.6 / SX1262 DS 13.1.4 SetTx) starts the transmission at once: it is not deferred
    until the incoming frame has ended. The medium counts the abandoned frame half-duplex."""
    sf = 11
    topo = {
        "links": [["far", "c", {"rssi": -95, "snr": 6}], ["c", "ear", {"rssi": -80, "snr": 10}]]
    }
    with MediumProc(topo, tmp_path) as medium:
        far = _sim(medium.port, "far", sf)
        ear = _sim(medium.port, "ear", sf)
        s = Script(tmp_path, "tx_during_rx", chip, medium.port, str(sf))
        s.wait_for("READY")
        long_frame = b"L" * 200  # about 4 s on air at SF11
        sent: dict[str, Any] = {}
        sender = threading.Thread(target=lambda: sent.update(airtime=far.send(long_frame)))
        sender.start()
        time.sleep(0.3)  # well into the preamble-and-payload of the long frame
        s.send("go")
        r = s.result()
        sender.join(30)
        far_end = far.sim_time
        frames = _drain(ear)
        stats = medium.stats()["nodes"]
        far.close()
        ear.close()
    assert r["faults"] == [] and r["listening_before"] is True
    far_start = far_end - sent["airtime"] / 1000
    [(payload, _rssi, _snr, t0, t1)] = frames
    assert payload == b"interrupting"
    assert far_start < t0 < far_end  # sent at once, while the long frame was on the air
    assert abs((t1 - t0) * 1000 - r["chip_toa_us"] / 1000) < 1e-3
    assert r["airtime_ms"] == r["chip_toa_us"] / 1000
    assert r["received"] == [] and r["crc_errors"] == 0  # the long frame was abandoned
    assert stats["c"]["half_duplex"] == 1 and stats["c"]["delivered"] == 0


@pytest.mark.upy(*BOARD_BUILDS)
def test_bad_presets_are_refused_before_any_radio_work(chip: str, tmp_path: Path) -> None:
    path: list[Path | str] = []
    if current().name == "plain":  # a board that installed lora-async, not lora-sync
        from tools.board import mpytree

        pkgs = ("lora", "lora-async", "lora-sx127x", "lora-sx126x")
        path.append(mpytree.ensure_lora(tmp_path / "lib", pkgs))
    r = Script(tmp_path, "bad_presets", chip, None, path=path).result()
    assert r["chip"] == "ValueError: preset chip sx9999 not one of sx1276..9, sx1261/2"
    assert r["cs"] == "ValueError: preset needs cs"
    if chip == "sx1262":
        assert r["busy"] == "ValueError: preset needs busy for sx1262"
        assert r["tcxo"] == "ValueError: dio3_tcxo_millivolts out of range"
    else:  # an SX127x has no BUSY line and no TCXO control: the keys are not read
        assert r["busy"] is None and r["tcxo"] is None
    pkg = "lora-sx127x" if chip == "sx1276" else "lora-sx126x"
    assert r["sync_api"] == (
        f"ImportError: lora driver class {chip.upper()} missing: install {pkg} and lora-sync"
    )
    assert r["faults"] == []


# -- what the chip refuses --------------------------------------------------------------


WRONG_ACCESSES = {
    "sx1276": {
        "write_read_only": "read-only register 0x42",
        "outside_map": "no register at 0x05",
        "long_range_in_standby": "LongRangeMode changed in STDBY",
        "fifo_write_in_rx": "FIFO write in RXCONTINUOUS",
        "config_in_rx": "configuration register 0x1d written in RXCONTINUOUS",
        "reserved_bandwidth": "Bw 0xf is reserved",
    },
    "sx1262": {
        "coding_rate_4_4": "coding rate 0 outside 1..4",
        "unknown_opcode": "unknown opcode 0x55",
        "outside_map": "no register at 0x1234",
        "command_while_busy": "while BUSY is high",
        "sleep_from_rx": "SetSleep is not accepted in RX",
    },
}


@pytest.mark.upy(*BOARD_BUILDS)
def test_wrong_accesses_raise(chip: str, tmp_path: Path) -> None:
    r = Script(tmp_path, "wrong_access", chip, None).result()
    assert r["normal_faults"] == []  # opening the radio was clean
    for what, needle in WRONG_ACCESSES[chip].items():
        assert r[what] is not None and needle in r[what], (what, r[what])
    assert len(r["faults"]) == len(WRONG_ACCESSES[chip])  # each one recorded, nothing else


@pytest.mark.upy(*BOARD_BUILDS)
@pytest.mark.parametrize("what", ["wrong_cs", "no_tcxo", "spi_mode"])
def test_a_preset_that_does_not_match_the_board_fails_as_on_the_board(
    chip: str, what: str, tmp_path: Path
) -> None:
    if what == "no_tcxo" and chip == "sx1276":
        pytest.skip("the Heltec V2's SX1276 runs from a crystal")
    r = Script(tmp_path, "bad_board", chip, None, what).result()
    want = {
        ("sx1276", "wrong_cs"): "RuntimeError: Unexpected silicon version 0",
        ("sx1262", "wrong_cs"): "RuntimeError: Invalid initial status (0, 0)",
        ("sx1262", "no_tcxo"): "RuntimeError: Internal radio Status (2, 0) OpError 0x20",
        ("sx1276", "spi_mode"): "ChipFault: sx1276: SPI polarity 1 phase 1",
        ("sx1262", "spi_mode"): "ChipFault: sx1262: SPI polarity 1 phase 1",
    }[(chip, what)]
    assert r["error"] is not None and r["error"].startswith(want), r["error"]
