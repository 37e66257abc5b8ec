"""A misbehaving mesh node for the demo: a real identity on the simulated radio.

    python -m tools.demo.badnode --medium-port P --network-key-file F [--name bad]
                                 [--state-dir DIR] [--announce-every S] [--garbage-every S]

Runs on CPython with the firmware's `SimRadio` (firmware/loranode/radio_sim.py). It
  1. broadcasts its signed peer record (ANNOUNCE, network tag) every `--announce-every`
     simulated-time-free real seconds, so the gateway learns its public key;
  2. listens for the gateway's own ANNOUNCE (a record of kind gateway) to learn the
     gateway's id and public key -- or takes the public key from `--gateway-public`
     (the gateway announces only every 15 minutes, and a node that joins after one
     announce, or loses it in a collision, would wait that long);
  3. then every `--garbage-every` seconds sends the gateway a unicast INV whose body is
     well-formed msgpack but not an inventory -- sealed with the pairwise LINK key, so
     the gateway can prove the source (lorawire.auth attribution) and charges it
     MALFORMED_FRAME points until it bans it. The bridge then drops its frames at the
     radio: nothing more of it reaches the gateway, although it keeps sending.
Prints `NODE <id> <name>` at start, then `BADNODE ...` lines; exits 0 on SIGINT/SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "firmware", ROOT / "shared"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from loranode.radio_sim import SimRadio  # noqa: E402
from lorawire import auth, codec, messages  # noqa: E402
from lorawire import frame as wframe  # noqa: E402
from lorawire import record as wrecord  # noqa: E402
from lorawire.errors import DecodeError  # noqa: E402
from lorawire.identity import Identity, node_id  # noqa: E402

FREQ_HZ = 868_100_000  # as tools.meshsim.launcher
SF, BW, CR, POWER = 7, 125_000, 5, 14
GARBAGE = codec.packb({0: "not an inventory"})


def say(text: str) -> None:
    print("BADNODE " + text, flush=True)


def load_identity(state_dir: Path) -> Identity:
    from loragate import keys

    path = state_dir / "node.key"
    if path.exists():
        return keys.load_identity(path)
    state_dir.mkdir(parents=True, exist_ok=True)
    return keys.create_identity(path)


class BadNode:
    def __init__(self, identity: Identity, network_key: bytes, radio: SimRadio) -> None:
        self.identity = identity
        self.key = network_key
        self.radio = radio
        self.seq = int(time.time()) & 0xFFFF  # fresh sequences after a restart
        fields = {"kind": wrecord.KIND_MESH, "services": 0, "seq": int(time.time())}
        self.record = wrecord.encode_record(fields, identity)
        self.gateway: bytes | None = None
        self.link_key: bytes | None = None
        self.sent_garbage = 0

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def announce(self) -> None:
        # The ANNOUNCE body is the signed record itself (one msgpack map).
        f = wframe.Frame(messages.ANNOUNCE, self.identity.id, self.next_seq(), hop_limit=0)
        self.radio.send(auth.seal_frame(f, self.record, network_key=self.key))

    def know_gateway(self, public: bytes, how: str) -> None:
        rec_id = node_id(public)
        if rec_id == self.gateway:
            return
        self.gateway = rec_id
        self.link_key = auth.link_key(self.identity.x_secret(), self.identity.id, public)
        say(f"gateway {rec_id.hex()} ({how})")

    def hear(self) -> None:
        while True:
            pkt = self.radio.recv()
            if pkt is None:
                return
            if self.gateway is not None:
                continue
            v = auth.open_frame(pkt[0], network_key=self.key)
            if not v.accepted or v.frame.type != messages.ANNOUNCE:
                continue
            try:
                rec = wrecord.verify_record(wrecord.decode_record(v.value))
            except DecodeError:
                continue
            if rec.kind == wrecord.KIND_GATEWAY:
                self.know_gateway(bytes(rec.public), "heard its announce")

    def garbage(self) -> None:
        if self.gateway is None or self.link_key is None:
            return
        f = wframe.Frame(
            messages.INV,
            self.identity.id,
            self.next_seq(),
            dest=self.gateway,
            flags=wframe.FLAG_LINK,
            hop_limit=0,
        )
        self.radio.send(auth.seal_frame(f, GARBAGE, link_key=self.link_key))
        self.sent_garbage += 1
        say(f"sent link-tagged garbage #{self.sent_garbage}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--medium-port", required=True, type=int)
@click.option("--medium-host", default="127.0.0.1", show_default=True)
@click.option("--network-key-file", required=True, type=click.Path(dir_okay=False))
@click.option("--name", default="bad", show_default=True, help="Topology name.")
@click.option("--state-dir", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--announce-every", default=3.0, show_default=True, type=float)
@click.option("--garbage-every", default=1.0, show_default=True, type=float)
@click.option(
    "--gateway-public",
    default=None,
    help="The gateway's Ed25519 public key (hex), as its signed record publishes it; "
    "without it the node waits to hear the gateway's ANNOUNCE.",
)
def main(
    medium_port: int,
    medium_host: str,
    network_key_file: str,
    name: str,
    state_dir: Path,
    announce_every: float,
    garbage_every: float,
    gateway_public: str | None,
) -> None:
    """A mesh node that announces itself, then sends the gateway attributable garbage."""
    key = bytes.fromhex(Path(network_key_file).read_text().strip())
    identity = load_identity(state_dir)
    radio = SimRadio(identity.id, name, medium_host, medium_port)
    radio.configure(FREQ_HZ, SF, BW, CR, POWER)
    node = BadNode(identity, key, radio)
    if gateway_public:
        node.know_gateway(bytes.fromhex(gateway_public), "given")
    print(f"NODE {identity.hex_id()} {name}", flush=True)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    next_announce = 0.0
    next_garbage = time.monotonic() + garbage_every
    try:
        while not stopping:
            now = time.monotonic()
            node.hear()
            if now >= next_announce:
                node.announce()
                next_announce = now + announce_every
            if now >= next_garbage:
                node.garbage()
                next_garbage = now + garbage_every
            time.sleep(0.05)
    except OSError as exc:
        say(f"radio error: {exc}")
    finally:
        radio.close()
    sys.exit(0)


if __name__ == "__main__":
    main(prog_name="python -m tools.demo.badnode")
