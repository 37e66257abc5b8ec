"""The boot sequence, written once: config -> identity -> radio -> node or bridge, run.

`run(path)` is what main.py does on a board; the unix-port demo app calls it with its
own node class and application. The config at `path` is the JSON the deploy tool (or
the simulator) validated and wrote (tools/deploy/fwconfig.py `board_config`): the board
only reads it, so a missing or unreadable file, or one written by another version of
the tool, stops the boot with one line and exit status 2. A radio that does not start
stops it with status 1 (a missing `lora` driver says which package to install).

Roles: "node" prints `NODE <id hex> <name>` once the radio is up; "bridge" runs
loranode.bridge over the config's UART (it prints `BRIDGE <id hex> <name>` unless that
UART is the board's console). State files (key.bin, state.bin, bans.bin) live in
node.state_dir.
"""

import sys

CONFIG_FORMAT = ("duty", "region_index", "radio", "node", "bridge")  # written by board_config


def _stop(code, text):
    print(text)
    sys.exit(code)


def load(path):
    import json

    try:
        with open(path) as f:
            cfg = json.loads(f.read())
    except OSError as e:
        _stop(2, "config: cannot read %s (%s)" % (path, e))
    except ValueError as e:
        _stop(2, "config: %s is not valid JSON (%s)" % (path, str(e)[:40]))
    if not isinstance(cfg, dict):
        _stop(2, "config: %s is not a JSON object" % path)
    for key in CONFIG_FORMAT:
        if key not in cfg:
            _stop(2, "config: %s lacks %r: write it with the deploy tool" % (path, key))
    return cfg


def open_radio(cfg, node_id):
    """The configured radio: the meshsim medium (unix port) or the board's LoRa chip."""
    sim = cfg.get("sim")
    if sim:
        from loranode.radio_sim import SimRadio

        r = SimRadio(node_id, sim["name"], sim["medium_host"], sim["medium_port"])
        r.configure(
            cfg["frequency_hz"],
            cfg["sf"],
            cfg["bandwidth_hz"],
            cfg["coding_rate"],
            cfg["tx_power_dbm"],
        )
        return r
    # micropython-lib's `lora` package is imported by make_modem, inside the call, so a
    # board without it fails there and not at the import of radio_lora.
    try:
        from loranode.radio_lora import open_radio as lora_radio

        return lora_radio(
            cfg["radio"],
            cfg["frequency_hz"],
            cfg["sf"],
            cfg["bandwidth_hz"],
            cfg["coding_rate"],
            cfg["tx_power_dbm"],
        )
    except ImportError as e:
        _stop(
            1,
            "radio: %s: install the driver with `mpremote mip install lora-%s lora-async`"
            % (e, "sx126x" if cfg["radio"]["chip"] in ("sx1261", "sx1262") else "sx127x"),
        )


def run(path="config.json", node_class=None, app=None):
    import gc

    from loranode.constants import GC_THRESHOLD
    from loranode.identity import load_or_create

    gc.threshold(GC_THRESHOLD)
    cfg = load(path)
    d = cfg["node"]["state_dir"]
    ident = load_or_create("key.bin" if d in ("", ".") else d + "/key.bin")
    try:
        radio = open_radio(cfg, ident.id)
    except (OSError, ValueError, ImportError) as e:
        _stop(1, "radio: %s" % (e,))
    name = cfg["sim"]["name"] if cfg.get("sim") else None
    gc.collect()
    try:
        if cfg["role"] == "bridge":
            from loranode import bridge

            bridge.run(cfg, ident, radio, name)
            return
        if node_class is None:
            from loranode.node import Node as node_class
        node = node_class(cfg, ident, radio, app=app, name=name)
        cfg = None  # the node copied what it needs: the parsed config is garbage now
        print("NODE %s %s" % (ident.hex_id(), node.name))
        gc.collect()
        import asyncio

        try:
            asyncio.run(node.run())
        except KeyboardInterrupt:
            pass
        finally:
            node.shutdown()
    finally:
        radio.close()
