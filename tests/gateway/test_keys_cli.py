"""`loragate keygen` / `loragate id` and the 0600 key file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from loragate import keys
from loragate.cli import cli
from lorawire.identity import Identity

LORAGATE = Path(sys.executable).with_name("loragate")


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_keygen_writes_a_0600_key_and_id_prints_its_node_id(tmp_path: Path) -> None:
    data = tmp_path / "gw"
    code, out, err = _invoke("keygen", "--data-dir", str(data))
    assert code == 0, err
    key = data / "node.key"
    seed = key.read_bytes()
    assert len(seed) == 32
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    node_id = Identity(seed).hex_id()
    assert out == node_id + "\n" and len(node_id) == 16
    assert str(key) in err
    assert not (data / "node.key.tmp").exists()
    code, out, _ = _invoke("id", "--data-dir", str(data))
    assert code == 0 and out == node_id + "\n"


def test_keygen_refuses_to_replace_without_force(tmp_path: Path) -> None:
    _invoke("keygen", "--data-dir", str(tmp_path))
    before = (tmp_path / "node.key").read_bytes()
    code, out, err = _invoke("keygen", "--data-dir", str(tmp_path))
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert (tmp_path / "node.key").read_bytes() == before
    code, out, _ = _invoke("keygen", "--data-dir", str(tmp_path), "--force")
    after = (tmp_path / "node.key").read_bytes()
    assert code == 0 and after != before
    assert out.strip() == Identity(after).hex_id()
    assert stat.S_IMODE((tmp_path / "node.key").stat().st_mode) == 0o600


def test_id_errors_are_one_line(tmp_path: Path) -> None:
    code, out, err = _invoke("id", "--data-dir", str(tmp_path))
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "loragate keygen" in err
    key = tmp_path / "node.key"
    _invoke("keygen", "--data-dir", str(tmp_path))
    os.chmod(key, 0o644)
    code, _, err = _invoke("id", "--data-dir", str(tmp_path))
    assert code != 0 and err.count("\n") == 1
    assert "readable by group/others" in err and "0644" in err and "chmod 600" in err
    os.chmod(key, 0o600)
    with open(key, "ab") as f:
        f.write(b"\x00")
    code, _, err = _invoke("id", "--data-dir", str(tmp_path))
    assert code != 0 and "33 bytes, expected 32" in err


def test_a_damaged_node_key_is_described_without_its_bytes(tmp_path: Path) -> None:
    # The digits of pi, as raw bytes and as text: none of them may reach a message.
    pi = "31415926535897932384626433832795028841971693993751058209749445923078164062862"
    key = tmp_path / "node.key"
    for content in (bytes.fromhex(pi[:62]), bytes.fromhex(pi[:66]), pi[:64].encode()):
        key.write_bytes(content)
        os.chmod(key, 0o600)
        for command in ("id", "keygen"):
            code, out, err = _invoke(command, "--data-dir", str(tmp_path))
            assert code != 0 and out == "" and err.count("\n") == 1, err
            secret = content.hex() + content.decode("latin-1")
            leaked = {secret[i : i + 6] for i in range(len(secret) - 5)} & {
                err[i : i + 6].lower() for i in range(len(err) - 5)
            }
            assert not leaked, err
        assert key.read_bytes() == content  # and never replaced


def test_env_var_and_platform_default(tmp_path: Path) -> None:
    env_dir = tmp_path / "from-env"
    code, out, _ = _invoke("keygen", env={"LORAGATE_DATA_DIR": str(env_dir)})
    assert code == 0 and (env_dir / "node.key").exists()
    code, out2, _ = _invoke("id", env={"LORAGATE_DATA_DIR": str(env_dir)})
    assert out2 == out
    # --data-dir wins over the environment
    code, out3, _ = _invoke(
        "id", "--data-dir", str(tmp_path / "nowhere"), env={"LORAGATE_DATA_DIR": str(env_dir)}
    )
    assert code != 0


def test_default_data_dir_is_the_user_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.delenv("LORAGATE_DATA_DIR", raising=False)
    assert keys.default_data_dir() == Path(platformdirs.user_data_dir("loragate"))
    assert keys.key_path() == Path(platformdirs.user_data_dir("loragate")) / "node.key"


def test_load_refuses_a_directory(tmp_path: Path) -> None:
    (tmp_path / "node.key").mkdir()
    with pytest.raises(keys.KeyFileError, match="not a regular file"):
        keys.load_identity(tmp_path / "node.key")


def test_installed_command_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    env = dict(os.environ, LORAGATE_DATA_DIR=str(tmp_path))
    proc = subprocess.run(
        [str(LORAGATE), "id"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("loragate: error: no key at ")
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [str(LORAGATE), "keygen"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == keys.load_identity(tmp_path / "node.key").hex_id()
