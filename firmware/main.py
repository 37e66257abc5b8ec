"""Firmware entry point: config -> identity -> radio -> peer manager main loop.

Board: runs at boot with no arguments and reads "config.json" from the flash.
Unix port: `micropython firmware/main.py CONFIG` (MICROPYPATH=shared:firmware:.frozen).

The config file is the JSON that loranode.config validates, its optional "node"
section included (the peer manager's runtime options: status interval, state directory,
hop limit, relay, record kind, PEX/ping intervals, flood limit, stdin commands).
A bad config prints one line and exits with status 2. State files (key.bin,
state.bin, bans.bin) live in node.state_dir (default: the current directory).

A config with "role": "bridge" runs bridge mode instead (loranode.bridge.main: the
UART link to the gateway; it prints `BRIDGE <id hex> <name>`).
The line `NODE <id hex> <name>` is printed once the radio is up; STATUS lines follow
(loranode.status). On the unix port, stdin takes `status` and `quit`; SIGINT also
stops the node after saving its ban list.
"""

import gc
import sys


def _config_path():
    argv = getattr(sys, "argv", None) or []
    return argv[1] if len(argv) > 1 else "config.json"


def _load(path):
    import json

    from loranode import config

    try:
        with open(path) as f:
            raw = json.loads(f.read())
    except OSError as e:
        raise config.ConfigError("config: cannot read %s (%s)" % (path, e)) from None
    except ValueError as e:
        raise config.ConfigError(
            "config: %s is not valid JSON (%s)" % (path, str(e)[:40])
        ) from None
    cfg = config.validate(raw)
    preset = None if cfg["sim"] else config.radio(cfg)
    return cfg, preset


def _forget_boot_modules():
    # config and boards are boot-time only (loranode.config docstring): free their code.
    for name in ("loranode.config", "loranode.boards"):
        if name in sys.modules:
            del sys.modules[name]
    try:
        import loranode

        for attr in ("config", "boards"):
            if hasattr(loranode, attr):
                delattr(loranode, attr)
    except (ImportError, AttributeError, TypeError):
        pass
    gc.collect()


def _radio(cfg, preset, node_id):
    if cfg["sim"]:
        from loranode.radio_sim import SimRadio

        sim = cfg["sim"]
        r = SimRadio(node_id, sim["name"], sim["medium_host"], sim["medium_port"])
        r.configure(
            cfg["frequency_hz"],
            cfg["sf"],
            cfg["bandwidth_hz"],
            cfg["coding_rate"],
            cfg["tx_power_dbm"],
        )
        return r
    from loranode.radio_lora import open_radio

    return open_radio(
        preset,
        cfg["frequency_hz"],
        cfg["sf"],
        cfg["bandwidth_hz"],
        cfg["coding_rate"],
        cfg["tx_power_dbm"],
    )


def _role(path):
    # Bridge mode has its own entry (loranode.bridge.main: uart path, "bridge" section).
    import json

    try:
        with open(path) as f:
            raw = json.loads(f.read())
    except (OSError, ValueError):
        return None  # _load reports it
    return raw.get("role") if isinstance(raw, dict) else None


def main():
    if _role(_config_path()) == "bridge":
        from loranode import bridge

        bridge.main(_config_path())
        return
    try:
        cfg, preset = _load(_config_path())
    except ValueError as e:
        print(str(e).split("\n")[0])
        sys.exit(2)
    _forget_boot_modules()
    from loranode.identity import load_or_create

    d = cfg["node"]["state_dir"]
    ident = load_or_create("key.bin" if d in ("", ".") else d + "/key.bin")
    try:
        radio = _radio(cfg, preset, ident.id)
    except (OSError, ValueError) as e:
        print("radio: %s" % (e,))
        sys.exit(1)
    from loranode.node import Node

    name = cfg["sim"]["name"] if cfg["sim"] else None
    node = Node(cfg, ident, radio, name=name)  # options: cfg["node"]
    print("NODE %s %s" % (ident.hex_id(), node.name))
    gc.collect()
    import asyncio

    try:
        asyncio.run(node.run())
    except KeyboardInterrupt:
        pass
    finally:
        node.shutdown()
        radio.close()


main()
