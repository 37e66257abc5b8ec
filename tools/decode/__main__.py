"""`python -m tools.decode`: dump Lorachain frames in readable form.

    python -m tools.decode FRAME [FRAME ...]            hex or base64, one frame each
    python -m tools.decode -  < capture.txt              stdin, one frame per line
    python -m tools.decode --file capture.txt --network-key-file network.key --json
    python -m tools.decode --uart 0a1b...00              UART stream bytes -> link packets

Lines read from stdin and from --file are capture lines: `[TIMESTAMP] [DIRECTION] FRAME`
(see tools.decode.dump for the exact format); blank lines and `#` comments are skipped.
Keys are hex (network key file: hex text, as the gateway and deploy tool write it).

Exit status: 0 when every frame decoded and every check that could run passed; 1 when
any frame failed (undecodable, unknown type, tag BAD under the given key, peer record
signature INVALID, a fragment that contradicts earlier ones), each explained on a
`frame N: error: ...` line; 2 for usage errors (bad key, unreadable file), one line on
stderr. Never a traceback.

FRAGMENT frames seen in one run are reassembled per (source, msg_id); the frame that
completes a message also shows the decoded inner message.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from tools.decode.dump import (
    Decoder,
    InputError,
    Keys,
    Report,
    UartDecoder,
    parse_capture_line,
    parse_key,
    render_text,
    render_uart,
)

MIN_MAX_LEN = 22
MAX_MAX_LEN = 0xFFFF


def _usage(message: str) -> NoReturn:
    click.echo(f"decode: error: {message}", err=True)
    sys.exit(2)


def _key_option(text: str | None, what: str) -> bytes | None:
    if text is None:
        return None
    try:
        return parse_key(text, what)
    except ValueError as exc:
        _usage(str(exc))


def _read_key_file(path: str) -> bytes:
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        _usage(f"cannot read --network-key-file {path}: {reason}")
    try:
        return parse_key(text, f"--network-key-file {path}")
    except ValueError as exc:
        _usage(str(exc))


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()
    except OSError as exc:
        _usage(f"cannot read --file {path}: {exc.strerror or type(exc).__name__}")


# (text, origin, timestamp, direction) or (None, origin, reason) for an unreadable line.
Item = tuple[str | None, str, str | None, str | None]


def _lines_items(lines: list[str], name: str) -> Iterator[tuple[Item, str | None]]:
    for number, line in enumerate(lines, 1):
        origin = f"{name}:{number}"
        try:
            parsed = parse_capture_line(line)
        except InputError as exc:
            yield (None, origin, None, None), str(exc)
            continue
        if parsed is not None:
            yield (parsed.text, origin, parsed.timestamp, parsed.direction), None


def _items(
    frames: tuple[str, ...], capture: str | None, capture_lines: list[str]
) -> Iterator[tuple[Item, str | None]]:
    stdin_lines: list[str] | None = None
    for index, text in enumerate(frames, 1):
        if text == "-":
            if stdin_lines is None:
                stdin_lines = sys.stdin.read().splitlines()
                yield from _lines_items(stdin_lines, "stdin")
            continue
        yield (text, f"arg {index}", None, None), None
    if capture is not None:
        yield from _lines_items(capture_lines, capture)


def _emit(report: Report, as_json: bool, render: object) -> None:
    if as_json:
        click.echo(json.dumps(report, sort_keys=False))
    else:
        assert callable(render)
        click.echo(render(report))
        click.echo("")


class _OneLineCommand(click.Command):
    """Usage errors as one line on stderr (exit 2), not click's three-line block."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rc = super().main(*args, **kwargs)
        except click.UsageError as exc:
            _usage(exc.format_message().replace("\n", " "))
        except click.Abort:
            click.echo("decode: aborted", err=True)
            sys.exit(1)
        sys.exit(rc if isinstance(rc, int) else 0)


@click.command(
    cls=_OneLineCommand,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Decode Lorachain frames (hex or base64) into a readable dump.",
    epilog=(
        "FRAME is hex (optional 0x) or base64; prefix hex: or b64: to force one. '-' reads "
        "stdin. Capture lines (stdin, --file): [TIMESTAMP] [DIRECTION] FRAME, e.g. "
        "'2026-11-25T16:00:00Z up 1004...'; blank and # lines skipped. Exit 0: all frames "
        "fine; 1: some frame failed (explained); 2: usage error."
    ),
)
@click.argument("frames", nargs=-1)
@click.option("--file", "capture", metavar="CAPTURE", help="Capture file, one frame per line.")
@click.option("--network-key", metavar="HEX", help="Network key (hex) to check tags with.")
@click.option("--network-key-file", metavar="F", help="File holding the network key as hex.")
@click.option("--link-key", metavar="HEX", help="Link or session key (hex) for LINK frames.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per frame.")
@click.option(
    "--max-len",
    type=click.IntRange(MIN_MAX_LEN, MAX_MAX_LEN),
    default=255,
    show_default=True,
    help="Largest frame accepted: 255 on LoRa, 65535 on TCP and UART.",
)
@click.option("--uart", is_flag=True, help="Inputs are UART stream bytes (COBS + CRC-16).")
def main(
    frames: tuple[str, ...],
    capture: str | None,
    network_key: str | None,
    network_key_file: str | None,
    link_key: str | None,
    as_json: bool,
    max_len: int,
    uart: bool,
) -> None:
    if network_key is not None and network_key_file is not None:
        _usage("give --network-key or --network-key-file, not both")
    if not frames and capture is None:
        _usage("no input: give FRAME arguments, '-' for stdin, or --file CAPTURE")
    keys = Keys(
        network=_key_option(network_key, "--network-key")
        if network_key_file is None
        else _read_key_file(network_key_file),
        link=_key_option(link_key, "--link-key"),
    )
    # An unreadable file is a usage error, reported before any output.
    capture_lines = _read_lines(capture) if capture is not None else []
    decoder = Decoder(keys=keys, max_len=max_len)
    uart_decoder = UartDecoder(decoder) if uart else None
    for (text, origin, timestamp, direction), problem in _items(frames, capture, capture_lines):
        if uart_decoder is not None:
            if problem is not None or text is None:
                reports = [uart_decoder.error_report(problem or "no input", origin)]
            else:
                reports = uart_decoder.feed_text(text, origin)
            for report in reports:
                _emit(report, as_json, render_uart)
            continue
        if problem is not None or text is None:
            report = decoder.error_report(problem or "no input", origin)
        else:
            report = decoder.decode_text(text, origin, timestamp=timestamp, direction=direction)
        _emit(report, as_json, render_text)
    failed = uart_decoder.failed if uart_decoder is not None else decoder.failed
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
