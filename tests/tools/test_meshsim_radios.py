"""Which radio each meshsim node gets: SimRadio, or a board with an emulated chip."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tools.meshsim import launcher
from tools.meshsim.launcher import Mesh, emulated_board


def test_emulated_boards_are_wired_as_their_presets() -> None:
    v2 = emulated_board("heltec-v2", "n0", 47000)
    assert v2 == {
        "chip": "sx1276",
        "pins": {"nss": 18, "sck": 5, "mosi": 27, "miso": 19, "nreset": 14, "dio0": 26, "dio1": 35},
        "tcxo_mv": None,
        "medium": ["127.0.0.1", 47000],
        "name": "n0",
        "preset": launcher.fwboards.BOARDS["heltec-v2"],
    }
    v3 = emulated_board("heltec-v3", "n1", None)
    assert v3["chip"] == "sx1262" and v3["tcxo_mv"] == 1800 and v3["medium"] is None
    assert v3["pins"] == {
        "nss": 8,
        "sck": 9,
        "mosi": 10,
        "miso": 11,
        "nreset": 12,
        "busy": 13,
        "dio1": 14,
    }


def test_mesh_gives_each_node_its_radio_and_config(tmp_path: Path) -> None:
    mesh = Mesh(3, "line", tmp_path, speed=1.0, radios={"n1": "sx1276", "n2": "tbeam-sx1262"})
    assert [n.board for n in mesh.nodes] == [None, "heltec-v2", "tbeam-sx1262"]
    sim, v2, tbeam = (mesh.raw_config(n) for n in mesh.nodes)
    assert sim["sim"]["name"] == "n0" and "sim" not in v2 and "sim" not in tbeam
    assert (v2["board"], tbeam["board"]) == ("heltec-v2", "tbeam-sx1262")
    argv = mesh.node_argv(mesh.nodes[1])
    assert argv[-4:] == [str(launcher.CHIPBOOT), "chipsim.json", "main.py", "config.json"]
    assert mesh.node_argv(mesh.nodes[0])[-2:] == ["main.py", "config.json"]
    assert mesh.env(mesh.nodes[1])["MICROPYPATH"].startswith(str(launcher.TOOLS) + ":")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"radio": "sx1280"}, "radio 'sx1280' is not one of sim, sx1276, sx1262, heltec-v2"),
        ({"radios": {"n9": "sx1276"}}, "radios: no node named 'n9'"),
        ({"radio": "sx1262", "speed": 10.0}, "emulated boards run in real time"),
    ],
)
def test_bad_radio_choices_are_one_line_errors(
    kwargs: dict[str, object], needle: str, tmp_path: Path
) -> None:
    args: dict[str, object] = {"speed": 1.0, **kwargs}
    with pytest.raises(ValueError, match=needle):
        Mesh(2, "line", tmp_path, **args)  # type: ignore[arg-type]


def test_cli_radio_option_errors_in_one_line() -> None:
    r = CliRunner().invoke(launcher.main, ["--nodes", "2", "--radio", "sx1276", "--speed", "10"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        "Error: speed 10: emulated boards run in real time, so a mesh with one runs at speed 1"
    ]
    r = CliRunner().invoke(launcher.main, ["--nodes", "2", "--radio", "n5=sx1262", "--speed", "1"])
    assert r.exit_code == 1 and "no node named 'n5'" in r.output
