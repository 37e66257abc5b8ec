"""The mesh network key on the gateway: required with a serial port, never weak, never
shown. Every message is checked for the key's own digits (a key made of recognisable
digits, so a leak of any 6 of them in a row is found)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from loragate.cli import cli
from loragate.config import ConfigError, key_weakness, load

# The digits of pi: recognisable in any output, and no accident of formatting.
PI = "31415926535897932384626433832795028841971693993751058209749445923078164062862"
GOOD_KEY = hashlib.sha256(b"a mesh").hexdigest()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.stdout, result.stderr


def leaks(secret: str, text: str, run_len: int = 6) -> list[str]:
    """Every `run_len`-character piece of `secret` that appears in `text`."""
    low = text.lower()
    pieces = {secret[i : i + run_len].lower() for i in range(len(secret) - run_len + 1)}
    return sorted(p for p in pieces if p in low)


def test_a_serial_port_without_a_network_key_is_a_config_error(tmp_path: Path) -> None:
    code, out, err = run(
        "run", "--check-config", "--data-dir", str(tmp_path), "--serial-port", "/dev/ttyNONE9"
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "no network key" in err and "network_key_file" in err and "keygen --out" in err


def test_without_a_serial_port_no_key_is_needed(tmp_path: Path) -> None:
    code, _, err = run("run", "--check-config", "--data-dir", str(tmp_path))
    assert code == 0, err


def test_a_missing_key_file_names_the_file_and_how_to_make_one(tmp_path: Path) -> None:
    missing = tmp_path / "network.key"
    code, _, err = run(
        "run", "--check-config", "--data-dir", str(tmp_path), "--network-key-file", str(missing)
    )
    assert code == 2 and err.count("\n") == 1
    assert str(missing) in err and "python -m tools.deploy keygen --out" in err


WEAK = {
    "all zeros": "00" * 32,
    "one byte repeated": "11" * 32,
    "counting": bytes(range(32)).hex(),
    "a short pattern": "deadbeef" * 8,
    "pi repeated (16 digits)": PI[:16] * 4,
}


@pytest.mark.parametrize("key", list(WEAK.values()), ids=list(WEAK))
@pytest.mark.parametrize("where", ["flag", "file", "toml"])
def test_weak_keys_are_refused_without_showing_them(tmp_path: Path, key: str, where: str) -> None:
    args = ["run", "--check-config", "--data-dir", str(tmp_path)]
    if where == "flag":
        args += ["--network-key", key]
    elif where == "file":
        (tmp_path / "k").write_text(key + "\n")
        args += ["--network-key-file", str(tmp_path / "k")]
    else:
        (tmp_path / "gw.toml").write_text(f'network_key = "{key}"\n')
        args += ["--config", str(tmp_path / "gw.toml")]
    code, out, err = run(*args)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "not a random key" in err or "all zeros" in err
    assert "keygen" in err
    assert leaks(key, err) == []


MALFORMED = {
    "too short": PI[:40],
    "too long": PI[:70],
    "odd length": PI[:63],
    "not hex": PI[:60] + "zzzz",
    "spaces inside": PI[:30] + " " + PI[30:63],
}


@pytest.mark.parametrize("text", list(MALFORMED.values()), ids=list(MALFORMED))
@pytest.mark.parametrize("where", ["flag", "file"])
def test_malformed_keys_are_described_by_their_length_only(
    tmp_path: Path, text: str, where: str
) -> None:
    args = ["run", "--check-config", "--data-dir", str(tmp_path)]
    if where == "flag":
        args += ["--network-key", text]
    else:
        (tmp_path / "k").write_text(text + "\n")
        args += ["--network-key-file", str(tmp_path / "k")]
    code, out, err = run(*args)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "64 hex digits" in err
    assert leaks(text, err) == [], err


def test_a_good_key_runs_and_is_never_echoed(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(GOOD_KEY + "\n")
    code, out, err = run(
        "run", "--check-config", "--data-dir", str(tmp_path),
        "--network-key-file", str(tmp_path / "k"), "--serial-port", "/dev/ttyNONE9",
    )  # fmt: skip
    assert code == 0, err
    assert leaks(GOOD_KEY, out + err) == []
    cfg = load(overrides={"network_key": GOOD_KEY})
    assert cfg.network_key_bytes() == bytes.fromhex(GOOD_KEY)


def test_keys_from_the_os_are_never_called_weak() -> None:
    for _ in range(2000):
        assert key_weakness(os.urandom(32)) is None


def test_the_weakness_message_holds_no_key_material() -> None:
    key = bytes.fromhex(PI[:16] * 4)
    with pytest.raises(ConfigError) as err:
        load(overrides={"network_key": key.hex()})
    assert leaks(key.hex(), str(err.value), 4) == []
