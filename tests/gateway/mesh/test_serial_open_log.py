"""A serial port that will not open is reported: a WARNING at once, then at most one per
interval while it keeps failing, and an INFO line when it finally opens.

Real SerialLink on real paths: a path that does not exist yet (then a real pty cable is
plugged in under that name), /dev/null (a character device that is not a tty), and the
`loragate run` process with a missing `--serial-port`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import pytest
from meshkit import NETKEY

from loragate.mesh.serial import SerialLink, open_error_text
from tools import procs
from tools.ptycable import PtyCable

LOGGER = "loragate.mesh.serial"
LORAGATE = str(Path(sys.executable).with_name("loragate"))


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def _fail_for(link: SerialLink, seconds: float) -> None:
    await link.start()
    await asyncio.sleep(seconds)


async def test_missing_port_warns_once_then_info_when_plugged_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    path = tmp_path / "ttyLATER"
    link = SerialLink(
        str(path), 115200, on_packet=lambda p: None, backoff_min=0.01, backoff_max=0.02
    )
    cable = PtyCable(path)
    try:
        await _fail_for(link, 0.6)
        assert link.open_failures >= 5 and not link.connected
        warnings = _records(caplog, logging.WARNING)
        assert warnings == [
            f"serial {path} cannot be opened: No such file or directory (errno ENOENT) (retrying)"
        ]
        assert len(_records(caplog, logging.DEBUG)) == link.open_failures - 1
        assert _records(caplog, logging.INFO) == []

        cable.start()  # the device appears under the configured name
        await link.wait_connected(5)
        failures = link.open_failures
        assert _records(caplog, logging.INFO) == [
            f"serial {path} open at 115200 baud (after {failures} failed attempts)"
        ]
        assert len(_records(caplog, logging.WARNING)) == 1
    finally:
        await link.close()
        cable.close()


async def test_repeated_warning_at_most_once_per_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    path = tmp_path / "ttyNEVER"
    link = SerialLink(
        str(path),
        115200,
        on_packet=lambda p: None,
        backoff_min=0.01,
        backoff_max=0.02,
        open_warn_interval=0.25,
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        await _fail_for(link, 1.0)
    finally:
        await link.close()
    elapsed = loop.time() - t0
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert warnings[0].getMessage().startswith(f"serial {path} cannot be opened: No such file")
    repeats = warnings[1:]
    assert 1 <= len(repeats) <= elapsed / 0.25 + 1
    for r in repeats:
        assert r.getMessage().startswith(f"serial {path} still cannot be opened after ")
        assert r.getMessage().endswith(": No such file or directory (errno ENOENT)")
    gaps = [b.created - a.created for a, b in zip(warnings, warnings[1:], strict=False)]
    assert all(g >= 0.24 for g in gaps), gaps
    assert link.open_failures > 3 * len(warnings)  # the rest went to DEBUG


async def test_a_device_that_is_not_a_tty_is_named_as_such(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    link = SerialLink("/dev/null", 115200, on_packet=lambda p: None, backoff_min=0.01)
    try:
        await _fail_for(link, 0.2)
    finally:
        await link.close()
    assert _records(caplog, logging.WARNING) == [
        "serial /dev/null cannot be opened: not a serial device: "
        "Inappropriate ioctl for device (errno ENOTTY) (retrying)"
    ]


async def test_a_port_in_use_is_named_as_such(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    path = tmp_path / "ttyBUSY"
    cable = PtyCable(path).start()
    first = SerialLink(str(path), 115200, on_packet=lambda p: None)
    second = SerialLink(str(path), 115200, on_packet=lambda p: None, backoff_min=0.01)
    try:
        await first.start()
        await first.wait_connected(5)
        await _fail_for(second, 0.2)
        assert second.open_failures >= 2 and second.opens == 0
        assert "exclusively lock" in second.last_error  # pyserial's own text is kept
    finally:
        await second.close()
        await first.close()
        cable.close()
    assert _records(caplog, logging.WARNING) == [
        f"serial {path} cannot be opened: in use by another program "
        "(could not exclusively lock it: Resource temporarily unavailable) (retrying)"
    ]


def test_open_error_text_is_one_line_without_the_port() -> None:
    try:
        open(os.path.join("/nonexistent-dir", "tty"))  # noqa: PTH123, SIM115
    except OSError as exc:
        assert open_error_text(exc) == "No such file or directory (errno ENOENT)"
    assert open_error_text(ValueError("bad\nbaud  rate")) == "bad baud rate"
    assert open_error_text(ValueError()) == "ValueError"


async def test_gateway_process_warns_about_a_missing_serial_port(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB-missing"
    key_file = tmp_path / "network.key"
    key_file.write_text(NETKEY.hex() + "\n")
    env = {k: v for k, v in os.environ.items() if k != "LORAGATE_DATA_DIR"}
    proc = await asyncio.create_subprocess_exec(
        LORAGATE,
        "run",
        "--data-dir",
        str(tmp_path / "gw"),
        "--listen-port",
        "0",
        "--log-level",
        "warning",
        "--serial-port",
        str(port),
        "--network-key-file",
        str(key_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        **procs.child_options(new_session=False),
    )
    assert proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), 20)
        await asyncio.wait_for(proc.wait(), 20)
    text = line.decode()
    assert f"WARNING loragate.mesh.serial: serial {port} cannot be opened: " in text, text
    assert "No such file or directory (errno ENOENT)" in text
    assert "cannot be opened" not in rest.decode()  # no repeat within the minute
    assert proc.returncode == 0, rest.decode()
