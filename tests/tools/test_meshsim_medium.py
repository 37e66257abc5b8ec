"""The simulated LoRa medium, over real UDP sockets on loopback.

The medium runs in a thread with its own event loop; the nodes are the real
`SimRadio` (CPython side of the firmware module). Assertions use the simulated
timestamps the medium reports, not wall-clock timing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loranode import radio_sim
from loranode.radio_sim import SimRadio
from lorawire import simproto
from lorawire.airtime import time_on_air_ms
from tools.meshsim import Medium, Topology, from_dict, grid, line, load, parse_stats
from tools.meshsim import medium as medium_mod
from tools.meshsim import random as random_topology
from tools.meshsim.topology import SNR_FLOOR_DB

ROOT = Path(__file__).resolve().parents[2]
FREQ = 868_100_000


class MediumThread:
    """A Medium serving on 127.0.0.1:0 from a background thread."""

    def __init__(self, topo: Topology, speed: float = 1.0, seed: int = 0) -> None:
        self.topo = topo
        self.speed = speed
        self.seed = seed
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.medium: Medium
        self._loop: asyncio.AbstractEventLoop
        self._stop: asyncio.Event
        self.radios: list[SimRadio] = []

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.medium = Medium(self.topo, speed=self.speed, seed=self.seed)
            await self.medium.start()
            self._ready.set()
            await self._stop.wait()
            self.medium.close()

        asyncio.run(main())

    def __enter__(self) -> MediumThread:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        for r in self.radios:
            r.close()
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def radio(self, name: str, sf: int = 7, power: int = 14, bw: int = 125_000) -> SimRadio:
        host, port = self.medium.address
        r = SimRadio(name.encode().ljust(8, b"\0")[:8], name, host, port)
        r.configure(FREQ, sf, bw, 5, power)
        self.radios.append(r)
        return r

    def stats(self) -> dict:
        fut = asyncio.run_coroutine_threadsafe(_call(self.medium.stats), self._loop)
        return fut.result(5)


async def _call(fn):  # noqa: ANN001, ANN202 - run a callable on the medium's loop
    return fn()


def recv_wait(radio: SimRadio, timeout_s: float = 2.0):  # noqa: ANN201
    return asyncio.run(radio.arecv(int(timeout_s * 1000)))


def drain(radio: SimRadio, settle_s: float = 0.05) -> list:
    time.sleep(settle_s)
    out = []
    while (p := radio.recv()) is not None:
        out.append(p)
    return out


@pytest.fixture
def two_nodes() -> Iterator[MediumThread]:
    topo = from_dict({"links": [["a", "b", {"rssi": -90, "snr": 5}]]})
    with MediumThread(topo, speed=10) as m:
        yield m


# -- (a) delivery with the topology's RSSI/SNR -------------------------------------


def test_in_range_delivery_carries_topology_rssi_snr(two_nodes: MediumThread) -> None:
    a, b = two_nodes.radio("a"), two_nodes.radio("b")
    a.send(b"hello")
    assert recv_wait(b) == (b"hello", -90, 5.0)
    # and the other way (links are symmetric unless "oneway")
    b.send(b"back")
    assert recv_wait(a) == (b"back", -90, 5.0)
    s = two_nodes.stats()
    assert (s["sent"], s["delivered"], s["collided"], s["lost"]) == (2, 2, 0, 0)


def test_sender_power_shifts_rssi_and_snr(two_nodes: MediumThread) -> None:
    a, b = two_nodes.radio("a", power=20), two_nodes.radio("b")
    a.send(b"loud")
    assert recv_wait(b) == (b"loud", -84, 11.0)  # +6 dB over the 14 dBm reference


def test_position_model_rssi() -> None:
    topo = line(2, 1000.0)
    link = topo.link("n0", "n1")
    assert link is not None
    # 14 - (40 + 27 * log10(1000)) = -107; SNR = -107 - (-120) = 13
    assert link.rssi == pytest.approx(-107.0)
    assert link.snr == pytest.approx(13.0)


# -- (b) out of range ----------------------------------------------------------------


def test_out_of_range_node_does_not_receive() -> None:
    topo = line(3)  # 4.5 km apart: n1 hears both, n0 and n2 do not hear each other at SF7
    assert topo.neighbours("n0", sf=7) == ["n1"]
    with MediumThread(topo, speed=20) as m:
        n0, n1, n2 = m.radio("n0"), m.radio("n1"), m.radio("n2")
        n0.send(b"x" * 10)
        assert recv_wait(n1)[0] == b"x" * 10
        assert drain(n2) == []
        assert m.stats()["delivered"] == 1


def test_higher_sf_reaches_further() -> None:
    topo = line(3)
    # 9 km: SNR = 94 - 27*log10(9000) = -12.8 dB: below SF7's -7.5, above SF12's -20
    assert topo.reception("n0", "n2", 7, 14) is None
    assert topo.reception("n0", "n2", 12, 14) is not None
    with MediumThread(topo, speed=50) as m:
        n0, n2 = m.radio("n0", sf=12), m.radio("n2", sf=12)
        m.radio("n1", sf=12)
        n0.send(b"far")
        assert recv_wait(n2)[0] == b"far"


def test_different_sf_does_not_hear(two_nodes: MediumThread) -> None:
    a, b = two_nodes.radio("a", sf=7), two_nodes.radio("b", sf=8)
    a.send(b"sf7")
    assert drain(b) == []


# -- (c) collisions and capture -------------------------------------------------------


def _capture_topo(weak_rssi: float) -> Topology:
    # receiver r; s (strong, -80 dBm) and w (weak); s and w cannot hear each other
    return from_dict(
        {
            "nodes": ["r", "s", "w"],
            "links": [["s", "r", {"rssi": -80, "snr": 10}], ["w", "r", {"rssi": weak_rssi}]],
        }
    )


async def _both(first: SimRadio, second: SimRadio, gap_s: float, payload: int = 100) -> None:
    async def later() -> float:
        await asyncio.sleep(gap_s)
        return await second.asend(b"2" * payload)

    await asyncio.gather(first.asend(b"1" * payload), later())


def test_overlap_of_similar_strengths_loses_both() -> None:
    with MediumThread(_capture_topo(-83), speed=1) as m:  # 3 dB apart: no capture
        r, s, w = m.radio("r"), m.radio("s"), m.radio("w")
        asyncio.run(_both(s, w, 0.0))
        assert drain(r) == []
        st_ = m.stats()
        assert st_["collided"] == 2 and st_["delivered"] == 0
        assert st_["nodes"]["r"]["collided"] == 2


def test_capture_stronger_first_survives() -> None:
    with MediumThread(_capture_topo(-90), speed=1) as m:  # 10 dB apart
        r, s, w = m.radio("r"), m.radio("s"), m.radio("w")
        asyncio.run(_both(s, w, 0.03))  # weak one starts 30 ms into the strong one
        got = drain(r)
        assert [p[0][:1] for p in got] == [b"1"]
        assert got[0][1] == -80
        st_ = m.stats()
        assert (st_["delivered"], st_["collided"]) == (1, 1)


def test_capture_stronger_within_preamble_survives() -> None:
    with MediumThread(_capture_topo(-90), speed=1) as m:
        r, s, w = m.radio("r"), m.radio("s"), m.radio("w")
        # weak first; strong 0-2 ms later, inside the 12.5 ms SF7 preamble
        asyncio.run(_both(w, s, 0.0))
        got = drain(r)
        assert [p[1] for p in got] == [-80]
        st_ = m.stats()
        assert (st_["delivered"], st_["collided"]) == (1, 1)


def test_stronger_after_preamble_loses_both() -> None:
    with MediumThread(_capture_topo(-90), speed=1) as m:
        r, s, w = m.radio("r"), m.radio("s"), m.radio("w")
        # weak first, strong 60 ms later: past the preamble, inside the ~190 ms frame
        asyncio.run(_both(w, s, 0.06))
        assert drain(r) == []
        assert m.stats()["collided"] == 2


# -- (d) half-duplex ----------------------------------------------------------------------


def test_transmitting_node_misses_frames() -> None:
    topo = from_dict({"links": [["a", "b", {"rssi": -70, "snr": 20}]]})
    with MediumThread(topo, speed=1) as m:
        a, b = m.radio("a"), m.radio("b")
        # a sends a long frame; b starts its own 30 ms later: neither gets the other's
        asyncio.run(_both(a, b, 0.03, payload=200))
        assert drain(a) == [] and drain(b) == []
        st_ = m.stats()
        assert st_["half_duplex"] == 2 and st_["delivered"] == 0


def test_busy_radio_is_refused() -> None:
    topo = from_dict({"links": [["a", "b", {"rssi": -70, "snr": 20}]]})
    with MediumThread(topo, speed=1) as m:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        try:
            reg = struct.pack(
                radio_sim.REGISTER_FMT, radio_sim.T_REGISTER, b"a" * 8, FREQ, 7, 125000, 14, 5
            )
            s.sendto(reg + b"a", m.medium.address)
            assert s.recv(100)[0] == radio_sim.T_REGISTERED
            for seq in (1, 2):
                hdr = struct.pack(radio_sim.TX_FMT, radio_sim.T_TX, seq, FREQ, 7, 125000, 14, 5)
                s.sendto(hdr + b"y" * 100, m.medium.address)
            answers = [struct.unpack(radio_sim.TX_DONE_FMT, s.recv(100)) for _ in range(2)]
        finally:
            s.close()
        by_seq = {a[1]: a for a in answers}
        assert by_seq[2][2] == radio_sim.ST_BUSY  # refused at once, while seq 1 is on air
        assert by_seq[1][2] == radio_sim.ST_OK
        assert answers[0][1] == 2  # the refusal came first
        assert m.stats()["rejected"] == 1 and m.stats()["sent"] == 1


def test_unregistered_and_bad_params() -> None:
    topo = from_dict({"links": [["a", "b", {"rssi": -70, "snr": 20}]]})
    with MediumThread(topo, speed=1) as m:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        try:
            hdr = struct.pack(radio_sim.TX_FMT, radio_sim.T_TX, 1, FREQ, 7, 125000, 14, 5)
            s.sendto(hdr + b"y", m.medium.address)
            assert struct.unpack(radio_sim.TX_DONE_FMT, s.recv(100))[2] == radio_sim.ST_UNREGISTERED
        finally:
            s.close()
        a = m.radio("a")
        a.bw_hz = 62_500  # a bandwidth the airtime model does not cover
        with pytest.raises(ValueError, match="rejected"):
            a.send(b"x")


# -- (e) airtime in simulated time ------------------------------------------------------


@pytest.mark.parametrize(("n", "sf"), [(50, 7), (200, 9), (12, 12)])
def test_airtime_matches_lorawire(n: int, sf: int) -> None:
    topo = from_dict({"links": [["a", "b", {"rssi": -70, "snr": 20}]]})
    expected = time_on_air_ms(n, sf, 125_000)
    with MediumThread(topo, speed=20) as m:
        a, b = m.radio("a", sf=sf), m.radio("b", sf=sf)
        t0 = time.monotonic()
        airtime = a.send(b"z" * n)
        elapsed = time.monotonic() - t0
        assert airtime == pytest.approx(expected, abs=1e-9)
        assert a.tx_airtime_ms == pytest.approx(expected)
        assert recv_wait(b)[0] == b"z" * n
        start, end = b.last_rx_time
        assert (end - start) * 1000 == pytest.approx(expected, abs=1e-6)
        assert a.sim_time == pytest.approx(end)
        # the medium cannot finish before the scaled airtime has passed
        assert elapsed >= expected / 1000 / 20 * 0.95


# -- (f) loss rate ------------------------------------------------------------------------


def _lossy_run(seed: int, frames: int = 200) -> list[int]:
    topo = from_dict({"links": [["a", "b", {"rssi": -70, "snr": 20, "loss": 0.3}]]})
    with MediumThread(topo, speed=200, seed=seed) as m:
        a, b = m.radio("a"), m.radio("b")
        got: list[int] = []
        for i in range(frames):
            a.send(struct.pack(">H", i))
            while (p := b.recv()) is not None:
                got.append(struct.unpack(">H", p[0])[0])
        got += [struct.unpack(">H", p[0])[0] for p in drain(b)]
        st_ = m.stats()
        assert st_["delivered"] + st_["lost"] == frames
        assert st_["delivered"] == len(got)
        return got


def test_loss_rate_is_configured_and_seeded() -> None:
    first = _lossy_run(seed=7)
    assert 0.2 <= 1 - len(first) / 200 <= 0.4
    assert _lossy_run(seed=7) == first  # same seed, same pattern
    assert _lossy_run(seed=8) != first


# -- stats datagram, protocol constants --------------------------------------------------


def test_stats_datagram(two_nodes: MediumThread) -> None:
    a, b = two_nodes.radio("a"), two_nodes.radio("b")
    a.send(b"1")
    recv_wait(b)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(bytes([radio_sim.T_STATS]), two_nodes.medium.address)
        st_ = parse_stats(s.recv(100))
        assert st_["sent"] == 1 and st_["delivered"] == 1
        assert st_["sim_time_s"] > 0
        s.sendto(bytes([radio_sim.T_STATS_JSON]), two_nodes.medium.address)
        data = s.recv(65535)
        assert data[0] == simproto.T_STATS_JSON_REPLY
        assert json.loads(data[1:])["nodes"]["a"]["tx"] == 1
    finally:
        s.close()


def test_both_ends_speak_the_one_protocol_definition() -> None:
    names = [n for n in dir(simproto) if n.startswith(("T_", "ST_", "MAX_", "DEFAULT_"))]
    names += [n for n in dir(simproto) if n.endswith("_FMT")]
    assert len(names) >= 22
    for n in names:  # the medium uses lorawire.simproto's own objects
        if hasattr(medium_mod, n):
            assert getattr(medium_mod, n) is getattr(simproto, n), n
    # and so does the firmware's SimRadio
    for n in names:
        if hasattr(radio_sim, n):
            assert getattr(radio_sim, n) is getattr(simproto, n), n
    for n in ("REGISTER_FMT", "TX_FMT", "REGISTERED_FMT", "TX_DONE_FMT", "RX_FMT", "T_RX"):
        assert getattr(radio_sim, n) == getattr(simproto, n)


def test_garbage_datagrams_do_not_stop_the_medium(two_nodes: MediumThread) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for junk in (b"\x01", b"\x02\x00", b"\x01" + b"\xff" * 40, b"\x7f" * 9, b"\x02" * 300):
            s.sendto(junk, two_nodes.medium.address)
    finally:
        s.close()
    a, b = two_nodes.radio("a"), two_nodes.radio("b")
    a.send(b"still alive")
    assert recv_wait(b)[0] == b"still alive"


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_medium_handles_any_datagram(datagrams: list[bytes]) -> None:
    async def run() -> None:
        m = Medium(line(2), speed=1000, airtime_fn=time_on_air_ms)
        await m.start()
        try:
            for i, d in enumerate(datagrams):
                m.handle(d, ("127.0.0.1", 40000 + i % 3))
            assert len(m.by_addr) <= 3
        finally:
            m.close()

    asyncio.run(run())


# -- topology files and generators -------------------------------------------------------


BAD_TOPOLOGIES = [
    ([], "top level"),
    ({}, "needs 'nodes'"),
    ({"nodes": {"a": [0]}}, "nodes['a']"),
    ({"nodes": {"a": ["x", 0]}}, "nodes['a'][0]"),
    ({"nodes": {"a": [0, 0]}, "model": {"path_loss_exponent": -1}}, "path_loss_exponent"),
    ({"nodes": {"a": [0, 0]}, "model": {"bogus": 1}}, "bogus"),
    ({"nodes": {"a": [0, 0]}, "model": {"loss": 2}}, "model.loss"),
    ({"nodes": {"a": [0, 0]}, "model": {"sensitivity_dbm": {"13": -130}}}, "sensitivity"),
    ({"links": [["a"]]}, "links[0]"),
    ({"links": [["a", "a", {"rssi": -90}]]}, "itself"),
    ({"links": [["a", "b", {"rssi": -90, "loss": -0.1}]]}, "links[0].loss"),
    ({"links": [["a", "b", {"colour": 1}]]}, "colour"),
    ({"links": [["a", "b"]]}, "needs 'rssi' or 'snr'"),
    ({"nodes": {"a": [0, 0]}, "links": [["a", "z", {"rssi": -1}]]}, "'z'"),
    ({"nodes": {"": [0, 0]}}, "node name"),
    ({"nodes": {"a": [0, 0]}, "extra": 1}, "extra"),
    ({"links": [["a", "b", {"rssi": True}]]}, "rssi"),
]


@pytest.mark.parametrize(("data", "needle"), BAD_TOPOLOGIES)
def test_bad_topology_is_one_line_value_error(data: object, needle: str, tmp_path: Path) -> None:
    f = tmp_path / "t.json"
    f.write_text(json.dumps(data))
    with pytest.raises(ValueError) as ei:
        load(f)
    msg = str(ei.value)
    assert "\n" not in msg and needle in msg and str(f) in msg


def test_unreadable_and_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load(tmp_path / "missing.json")
    f = tmp_path / "t.json"
    f.write_text("{nope")
    with pytest.raises(ValueError, match="invalid JSON at line 1"):
        load(f)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200)
@given(
    st.one_of(
        _json,
        st.fixed_dictionaries({"nodes": _json}),
        st.fixed_dictionaries({"links": _json}),
        st.fixed_dictionaries({"nodes": st.dictionaries(st.text(max_size=3), _json)}),
    )
)
def test_topology_rejects_garbage_with_value_error_only(data: object) -> None:
    try:
        topo = from_dict(data)
    except ValueError as e:
        assert "\n" not in str(e)
    else:
        for a in topo.nodes:
            for b in topo.nodes:
                topo.reception(a, b, 7, 14)


def test_explicit_links_and_oneway() -> None:
    topo = from_dict(
        {
            "links": [
                ["a", "b", {"rssi": -100}],
                ["b", "c", {"snr": -10, "oneway": True}],
            ],
            "nodes": ["a", "b", "c", "lonely"],
        }
    )
    ab = topo.link("a", "b")
    assert ab is not None and ab.snr == 20.0  # rssi - noise floor
    bc = topo.link("b", "c")
    assert bc is not None and bc.rssi == -130.0
    assert topo.link("c", "b") is None
    assert topo.reception("b", "c", 7, 14) is None  # -10 dB < SF7 floor
    assert topo.reception("b", "c", 9, 14) is not None
    assert topo.neighbours("lonely") == []


def test_snr_floor_table() -> None:
    assert SNR_FLOOR_DB[7] == -7.5 and SNR_FLOOR_DB[12] == -20.0


def test_generators_round_trip(tmp_path: Path) -> None:
    for topo in (line(5), grid(10), random_topology(12, seed=3, area=8000)):
        f = tmp_path / "t.json"
        topo.save(f)
        back = load(f)
        assert back.nodes == topo.nodes
        for a in topo.nodes:
            assert back.neighbours(a) == topo.neighbours(a)
    assert random_topology(5, seed=1).nodes == random_topology(5, seed=1).nodes
    assert random_topology(5, seed=1).nodes != random_topology(5, seed=2).nodes
    g = grid(9)
    assert g.neighbours("n4") == ["n1", "n3", "n5", "n7"]  # centre of 3x3, diagonals too far


def test_sensitivity_limits_range() -> None:
    topo = from_dict({"nodes": {"a": [0, 0], "b": [3000, 0]}, "model": {"sensitivity_dbm": -100}})
    assert topo.reception("a", "b", 7, 14) is None
    assert topo.reception("a", "b", 7, 22) is None
    topo2 = from_dict({"nodes": {"a": [0, 0], "b": [3000, 0]}})
    assert topo2.reception("a", "b", 7, 14) is not None


# -- (g) CLI -------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.meshsim", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'shared'}", "PATH": "/usr/bin:/bin"},
    )


def test_cli_bad_topology_one_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({"nodes": {"a": [0]}}))
    p = _cli("--topology", str(f), "--port", "0")
    out, err = p.communicate(timeout=30)
    assert p.returncode != 0
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "nodes['a']" in lines[0]


def test_cli_runs_and_prints_stats_on_sigterm(tmp_path: Path) -> None:
    f = tmp_path / "t.json"
    line(2).save(f)
    p = _cli("--topology", str(f), "--port", "0", "--speed", "50")
    try:
        assert p.stdout is not None
        first = p.stdout.readline()
        assert first.startswith("meshsim listening on 127.0.0.1:")
        port = int(first.split(":")[1].split()[0])
        a = SimRadio(b"a" * 8, "n0", "127.0.0.1", port)
        b = SimRadio(b"b" * 8, "n1", "127.0.0.1", port)
        a.configure(FREQ, 7, 125000)
        b.configure(FREQ, 7, 125000)
        a.send(b"via cli")
        assert recv_wait(b)[0] == b"via cli"
        a.close()
        b.close()
    finally:
        p.terminate()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "sent 1 delivered 1 collided 0 lost 0" in out


# -- emulated chips: timed transmissions, corrupted frames, synthesizer steps ------------


def _raw_node(m: MediumThread, name: str, freq: int = FREQ) -> socket.socket:
    """A node speaking the datagram protocol directly, registered on `freq`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    reg = struct.pack(
        medium_mod.REGISTER_FMT, medium_mod.T_REGISTER, b"r" * 8, freq, 7, 125000, 14, 5
    )
    s.sendto(reg + name.encode(), m.medium.address)
    assert s.recv(100)[0] == medium_mod.T_REGISTERED
    return s


def test_timed_tx_is_on_air_as_long_as_the_sender_says() -> None:
    topo = from_dict({"links": [["chip", "b", {"rssi": -70, "snr": 20}]]})
    with MediumThread(topo, speed=1) as m:
        b = m.radio("b")
        s = _raw_node(m, "chip", FREQ - 25)  # an SX1276 lands 25 Hz below 868.1 MHz
        try:
            hdr = struct.pack(
                medium_mod.TX_TIMED_FMT,
                medium_mod.T_TX_TIMED,
                9,
                FREQ - 25,
                7,
                125000,
                14,
                5,
                123_456,
            )
            s.sendto(hdr + b"timed", m.medium.address)
            done = struct.unpack(medium_mod.TX_DONE_FMT, s.recv(100))
        finally:
            s.close()
        assert done[1:4] == (9, medium_mod.ST_OK, 123.456)
        pkt = recv_wait(b)
        assert pkt is not None and pkt[0] == b"timed"  # same channel within one PLL step
        t0, t1 = b.last_rx_time
        assert abs((t1 - t0) - 0.123456) < 1e-9
        assert m.stats()["nodes"]["chip"]["tx_airtime_ms"] == 123.456


def test_channels_differ_beyond_the_tolerance() -> None:
    topo = from_dict({"links": [["a", "b", {"rssi": -70, "snr": 20}]]})
    with MediumThread(topo, speed=20) as m:
        a = m.radio("a")
        b = m.radio("b")
        b.configure(FREQ + medium_mod.CHANNEL_TOLERANCE_HZ + 1, 7, 125_000, 5, 14)
        a.send(b"elsewhere")
        assert recv_wait(b, 0.5) is None
        b.configure(FREQ + medium_mod.CHANNEL_TOLERANCE_HZ, 7, 125_000, 5, 14)
        a.send(b"close enough")
        assert recv_wait(b)[0] == b"close enough"


def test_corrupted_frames_arrive_as_rx_crc_and_simradio_never_sees_them() -> None:
    topo = from_dict(
        {
            "links": [
                ["a", "chip", {"rssi": -80, "snr": 9, "corrupt": 1.0, "oneway": True}],
                ["a", "b", {"rssi": -80, "snr": 9, "corrupt": 1.0, "oneway": True}],
            ]
        }
    )
    with MediumThread(topo, speed=10) as m:
        s = _raw_node(m, "chip")
        a, b = m.radio("a"), m.radio("b")
        try:
            a.send(b"payload!")
            data = s.recv(600)
        finally:
            s.close()
        assert data[0] == medium_mod.T_RX_CRC
        rssi, snr_q = struct.unpack(medium_mod.RX_FMT, data[: struct.calcsize(medium_mod.RX_FMT)])[
            1:3
        ]
        body = data[struct.calcsize(medium_mod.RX_FMT) :]
        assert (rssi, snr_q) == (-80, 36) and len(body) == 8 and body != b"payload!"
        assert drain(b) == [] and b.rx_frames == 0  # RX_CRC is not a type SimRadio takes
        st_ = m.stats()
        assert st_["corrupted"] == 2 and st_["delivered"] == 0
        assert st_["nodes"]["b"]["corrupted"] == 1


def test_corruption_rate_is_seeded_and_leaves_losses_alone() -> None:
    def run(corrupt: float) -> tuple[int, int]:
        topo = from_dict(
            {"links": [["a", "b", {"rssi": -70, "snr": 20, "loss": 0.3, "corrupt": corrupt}]]}
        )
        with MediumThread(topo, speed=50, seed=3) as m:
            a, b = m.radio("a"), m.radio("b")
            for i in range(60):
                a.send(bytes([i]))
            drain(b, 0.2)
            st_ = m.stats()
            return st_["lost"], st_["corrupted"]

    lost, corrupted = run(0.5)
    assert (lost, 0) == run(0.0)  # the loss stream is the same with or without corruption
    assert 10 <= corrupted <= 35 and run(0.5) == (lost, corrupted)


def test_topology_corrupt_option() -> None:
    topo = from_dict({"links": [["a", "b", {"rssi": -70, "corrupt": 0.25}]]})
    assert topo.reception("a", "b", 7, 14).corrupt == 0.25  # type: ignore[union-attr]
    assert topo.reception("b", "a", 7, 20).corrupt == 0.25  # type: ignore[union-attr]
    assert from_dict(topo.to_dict()).links == topo.links
    with pytest.raises(ValueError, match=r"links\[0\].corrupt: corrupt 2 outside 0..1"):
        from_dict({"links": [["a", "b", {"rssi": -70, "corrupt": 2}]]})
