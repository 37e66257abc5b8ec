"""LoraRadio scenarios against fake_modem, written to run unchanged on CPython (pytest,
test_radio_lora.py) and inside the MicroPython unix port (one run_upy call).

Each `case_*` function raises AssertionError on failure.
"""

import fake_modem as fm

from loranode import radio_lora
from loranode.radio_lora import LoraRadio, make_modem, open_radio

try:
    import asyncio
except ImportError:  # pragma: no cover
    asyncio = None

FREQ = 868100000

SX1276_PRESET = {
    "chip": "sx1276",
    "spi_id": 1,
    "sck": 5,
    "mosi": 27,
    "miso": 19,
    "cs": 18,
    "reset": 14,
    "dio0": 26,
    "dio1": 33,
    "pa_boost": True,
    "max_power_dbm": 20,
}

SX1262_PRESET = {
    "chip": "sx1262",
    "spi_id": 1,
    "sck": 9,
    "mosi": 10,
    "miso": 11,
    "cs": 8,
    "reset": 12,
    "busy": 13,
    "dio1": 14,
    "tcxo_mv": 1800,
    "rf_switch": {"tx": 2, "rx": 3},
    "modem_api": "async",
}


def _radio(preset=SX1276_PRESET, sf=7, bw=125000, cr=5, power=14):
    r = open_radio(preset, FREQ, sf, bw, cr, power, fm, fm)
    r.modem.speed = 1000
    return r


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError(f"expected {exc.__name__}")


def case_lora_cfg_sent_to_driver():
    r = _radio(sf=9, bw=250000, cr=7, power=17)
    cfgs = [c[1][0] for c in r.modem.calls if c[0] == "configure"]
    assert len(cfgs) == 1
    cfg = cfgs[0]
    assert cfg["freq_khz"] == 868100 and isinstance(cfg["freq_khz"], int)
    assert cfg["sf"] == 9
    assert cfg["bw"] == "250"
    assert cfg["coding_rate"] == 7
    assert cfg["output_power"] == 17
    assert cfg["preamble_len"] == 8
    assert cfg["crc_en"] is True and cfg["implicit_header"] is False
    assert cfg["syncword"] == 0x12
    assert cfg["tx_ant"] == "PA_BOOST"
    assert r.modem._bw_hz == 250000 and r.modem._rf_freq_hz == 868100000
    # the driver refuses configure() while receiving: the adapter went to standby first
    names = [c[0] for c in r.modem.calls]
    assert names.index("standby") < names.index("configure") < names.index("start_recv")
    assert ("start_recv", (None, True, 0xFF)) in r.modem.calls
    assert r.modem.rx_crc_error is True


def case_every_bandwidth_maps_to_driver_table():
    for hz in (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000):
        r = _radio(bw=hz)
        assert r.modem._bw_hz == hz


def case_fractional_khz_frequency():
    r = open_radio(SX1276_PRESET, 868012500, 7, 125000, 5, 14, fm, fm)
    assert r.modem.config["freq_khz"] == 868012.5
    # The driver takes Hz back as int(freq_khz * 1000): exact with double floats; with a
    # board's single-precision floats (ESP32) within one synthesizer step, which is all
    # the radio can tune to (FSTEP = 32 MHz / 2**19 = 61 Hz, SX1276 datasheet 4.1.4).
    single = 16777217.0 == 16777216.0
    err = abs(r.modem._rf_freq_hz - 868012500)
    assert err < 61 if single else err == 0, r.modem._rf_freq_hz


def case_reconfigure_while_receiving():
    r = _radio()
    r.configure(FREQ, 12, 125000, 8, 10)
    assert r.modem._sf == 12 and r.modem._coding_rate == 8
    assert r.modem._rx is True  # receive re-armed


def case_bad_settings_rejected_before_driver():
    r = _radio()
    n = len(r.modem.calls)
    assert "sf 13" in str(_raises(ValueError, r.configure, FREQ, 13, 125000, 5, 14))
    assert "bw_hz 100000" in str(_raises(ValueError, r.configure, FREQ, 7, 100000, 5, 14))
    assert "sf 6" in str(_raises(ValueError, r.configure, FREQ, 6, 125000, 5, 14))
    assert "above this board" in str(_raises(ValueError, r.configure, FREQ, 7, 125000, 5, 21))
    assert len(r.modem.calls) == n  # nothing reached the modem


def case_send_returns_airtime_and_records():
    r = _radio()
    t = r.send(b"hello")
    assert r.modem.sent == [b"hello"]
    assert t == r.modem.get_time_on_air_us(5) / 1000
    assert r.tx_frames == 1 and r.tx_airtime_ms == t
    names = [c[0] for c in r.modem.calls]
    assert names[-2:] == ["prepare_send", "start_send"]
    _raises(ValueError, r.send, b"x" * 256)
    _raises(ValueError, r.send, b"")
    assert r.modem.sent == [b"hello"]


def case_time_on_air_matches_lorawire():
    from lorawire.airtime import time_on_air_ms

    for sf in (7, 9, 12):
        r = _radio(sf=sf)
        for n in (1, 20, 255):
            got = r.airtime_ms(n)
            want = time_on_air_ms(n, sf, 125000)
            assert abs(got - want) < 0.01, (sf, n, got, want)


def case_recv_converts_packets():
    r = _radio()
    assert r.recv() is None
    r.modem.air(b"frame-1", rssi=-97, snr_q=-22)
    r.modem.air(b"frame-2", rssi=-60, snr_q=40)
    p1 = r.recv()
    assert p1 == (b"frame-1", -97, -5.5)
    assert isinstance(p1[0], bytes)
    assert r.recv() == (b"frame-2", -60, 10.0)
    assert r.recv() is None
    assert r.rx_frames == 2


def case_bad_crc_dropped_and_counted():
    r = _radio()
    r.modem.air(b"bad", crc_ok=False)
    r.modem.air(b"good")
    r.modem.air(b"bad2", crc_ok=False)
    assert r.recv()[0] == b"good"
    assert r.recv() is None
    assert r.crc_errors == 2 and r.rx_frames == 1
    assert r.counters()["modem_crc_errors"] == 2


def case_receive_rearmed_after_standby():
    r = _radio()
    r.modem.standby()  # e.g. another user of the modem stopped the receive
    assert r.recv() is None
    assert r.modem._rx is True
    r.modem.air(b"again")
    assert r.recv()[0] == b"again"


def case_no_packets_while_sending():
    r = _radio()
    r.modem.prepare_send(b"abc")
    r.modem.start_send()
    r.modem.air(b"during")
    assert r.recv() is None  # poll_recv says "still busy" while sending
    while r.modem.poll_send() is True:
        pass
    assert r.recv()[0] == b"during"


def case_async_send_and_recv():
    r = _radio()

    async def main():
        t = await r.asend(b"async")
        got = await r.arecv(50)
        assert got is None
        r.modem.air(b"irq!")
        got = await r.arecv(1000)
        return t, got

    t, got = asyncio.run(main())
    assert r.modem.sent == [b"async"]
    assert t > 0 and got[0] == b"irq!"


def case_async_recv_wakes_on_irq_callback():
    r = _radio()
    assert r._will_irq
    flags = []

    async def feeder():
        await asyncio.sleep_ms(20) if hasattr(asyncio, "sleep_ms") else await asyncio.sleep(0.02)
        flags.append(r._irq)
        r.modem.air(b"late")
        flags.append(r._irq)

    async def main():
        asyncio.create_task(feeder())
        return await r.arecv(2000)

    got = asyncio.run(main())
    assert got[0] == b"late"
    assert flags == [False, True]


def case_factory_sx1276_pins():
    m = make_modem(SX1276_PRESET, fm, fm)
    assert type(m) is fm.SX1276
    assert m.spi.id == 1 and m.spi.sck.id == 5 and m.spi.mosi.id == 27 and m.spi.miso.id == 19
    assert m.cs.id == 18 and m.reset.id == 14 and m.dio0.id == 26 and m.dio1.id == 33
    assert m.dio0.handler is not None  # the driver hooked its ISR on DIO0


def case_factory_sx1262_async_tcxo_rf_switch():
    r = _radio(SX1262_PRESET)
    m = r.modem
    assert type(m) is fm.AsyncSX1262 and m.ASYNC
    assert m.busy.id == 13 and m.dio1.id == 14 and m.tcxo_mv == 1800 and m.dio2_rf_sw is True
    assert "tx_ant" not in m.config  # SX1262 has no tx_ant key
    sw = m._ant_sw
    r.send(b"x")
    assert 1 in sw._tx.history  # tx() switched the antenna for the send
    i = sw._tx.history.index(1)
    assert sw._rx.history[i] == 0  # ... with rx off at the same time
    assert sw._tx() == 0 and sw._rx() == 1  # back to rx: the receive resumed


def case_factory_rejects_bad_presets():
    p = dict(SX1276_PRESET)
    p["chip"] = "sx9999"
    assert "sx9999" in str(_raises(ValueError, make_modem, p, fm, fm))
    p = dict(SX1262_PRESET)
    del p["busy"]
    assert "busy" in str(_raises(ValueError, make_modem, p, fm, fm))
    p = dict(SX1276_PRESET)
    del p["cs"]
    assert "cs" in str(_raises(ValueError, make_modem, p, fm, fm))
    p = dict(SX1262_PRESET)
    p["tcxo_mv"] = 5000
    _raises(ValueError, make_modem, p, fm, fm)


def case_factory_missing_driver_class():
    class NoDrivers:
        pass

    e = _raises(ImportError, make_modem, SX1276_PRESET, NoDrivers, fm)
    assert "lora-sx127x" in str(e) and "lora-sync" in str(e)


def case_fake_is_strict_like_the_driver():
    m = fm.SX1276(fm.SPI(1), fm.Pin(1))
    _raises(KeyError, m.configure, {"bw": 125000})  # Hz, not the driver's "125"
    _raises(fm.ConfigError, m.configure, {"sf": 6})  # SF6 without implicit header
    _raises(fm.ConfigError, m.configure, {"coding_rate": 4})
    _raises(fm.ConfigError, m.configure, {"spreading_factor": 7})
    m.start_recv(None, True)
    _raises(RuntimeError, m.configure, {"sf": 7})
    _raises(fm.ConfigError, fm.SX1262(fm.SPI(1), fm.Pin(1), fm.Pin(2)).configure, {"tx_ant": "x"})


def case_module_imports_without_lora_or_machine():
    # the real `lora` and `machine` are absent here; importing the adapter worked
    assert radio_lora.LoraRadio is LoraRadio


def case_close_sleeps_modem():
    r = _radio()
    r.close()
    assert r.modem.calls[-1][0] == "sleep"
    assert r.recv() is None


CASES = [
    case_lora_cfg_sent_to_driver,
    case_every_bandwidth_maps_to_driver_table,
    case_fractional_khz_frequency,
    case_reconfigure_while_receiving,
    case_bad_settings_rejected_before_driver,
    case_send_returns_airtime_and_records,
    case_time_on_air_matches_lorawire,
    case_recv_converts_packets,
    case_bad_crc_dropped_and_counted,
    case_receive_rearmed_after_standby,
    case_no_packets_while_sending,
    case_async_send_and_recv,
    case_async_recv_wakes_on_irq_callback,
    case_factory_sx1276_pins,
    case_factory_sx1262_async_tcxo_rf_switch,
    case_factory_rejects_bad_presets,
    case_factory_missing_driver_class,
    case_fake_is_strict_like_the_driver,
    case_module_imports_without_lora_or_machine,
    case_close_sleeps_modem,
]


def run_all():
    for case in CASES:
        case()
        print("ok", case.__name__)
