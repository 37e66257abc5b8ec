"""A misbehaving internet peer for the demo: real handshake, then garbage.

    python -m tools.demo.badpeer --connect HOST:PORT [--host 127.13.0.1] [--every 2.0]

It dials the gateway from `--host`, completes the real signed handshake
(`loragate.session.PeerSession` over `lorawire.handshake`), and then, every `--every`
seconds, sends a TX frame whose body is not msgpack (the byte 0xC1, which msgpack never
uses) -- sealed with the session's valid send key, so the gateway can prove who sent it
and charges MALFORMED_FRAME points to its node id and address until it bans it. After
the gateway closes the session it tries again every few seconds (a banned address is
refused at once). Prints one line per event (`BADPEER ...`); exits 0 on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import click

from loragate.session import PeerSession, SessionLimits
from loragate.transport import FrameStream
from lorawire import messages
from lorawire import record as wrecord
from lorawire.identity import Identity

GARBAGE = b"\xc1"  # never valid msgpack
RETRY_S = 3.0


def say(text: str) -> None:
    print("BADPEER " + text, flush=True)


async def one_session(
    identity: Identity, record: wrecord.Record, host: str, port: int, local: str, every: float
) -> None:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=(local, 0)), 5.0
    )
    stream = FrameStream(reader, writer)
    session = PeerSession(
        stream,
        identity,
        record,
        outbound=True,
        addr=(host, port),
        handshake_timeout_s=5.0,
        limits=SessionLimits(),
    )
    try:
        await session.handshake()
    except Exception as exc:  # refused, banned, timed out
        await stream.close()
        say(f"handshake failed: {exc}")
        return
    peer = session.node_id.hex() if session.node_id else "?"
    say(f"connected to {peer} as {identity.hex_id()}")
    session.start()
    sent = 0
    while not session.closed:
        await asyncio.sleep(every)
        if session.send_body(messages.TX, GARBAGE):
            sent += 1
            say(f"sent malformed tx #{sent}")
    await session.wait_closed()
    say(f"session closed: {session.close_reason}")


async def run(connect: str, local: str, every: float) -> None:
    host, _, port_s = connect.rpartition(":")
    port = int(port_s)
    identity = Identity.generate()
    record = wrecord.decode_record(
        wrecord.encode_record(
            {"kind": wrecord.KIND_FULL, "services": wrecord.SVC_RELAY, "seq": 1}, identity
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    say(f"id {identity.hex_id()} from {local}")
    while not stop.is_set():
        task = asyncio.create_task(one_session(identity, record, host, port, local, every))
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task not in done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            break
        exc = task.exception()
        if exc is not None:
            say(f"connect failed: {exc!r}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RETRY_S)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--connect", required=True, help="Gateway HOST:PORT.")
@click.option("--host", "local", default="127.13.0.1", show_default=True, help="Local address.")
@click.option("--every", default=2.0, show_default=True, type=click.FloatRange(min=0.05))
def main(connect: str, local: str, every: float) -> None:
    """A peer that handshakes properly, then sends malformed frames."""
    asyncio.run(run(connect, local, every))
    sys.exit(0)


if __name__ == "__main__":
    main(prog_name="python -m tools.demo.badpeer")
