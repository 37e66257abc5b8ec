"""The `loragate` command line.

* ``run``: every ``GatewayConfig`` setting from ``--config FILE`` (TOML) and as a flag
  (flags win). The flags are generated from the dataclass fields, so they never drift:
  ``outbound_target`` -> ``--outbound-target``, lists are repeatable singular flags
  (``--connect``, ``--dns-seed``, ``--preferred-kind``), booleans are ``--mdns/--no-mdns``,
  and the sections ``[score]``, ``[bans]``, ``[relay]``, ``[peer_prefix]`` become
  ``--score-...``, ``--ban-...``, ``--relay-...``, ``--peer-prefix-...``
  (``bans.threshold`` -> ``--ban-threshold``).
* ``peers`` (``--wide``, ``--iso``), ``peer TARGET``, ``bans``, ``status``, ``ban``,
  ``unban`` (``--all``), ``clearbanned``: ask the gateway running with this data dir
  over its control socket; when none answers, read (or, for ban/unban, write) its
  database directly and say so on stderr.
* ``disconnect TARGET``, ``connect ADDRESS`` (``addnode``; ``--remove``): only a
  running gateway has connections to change.
* ``keygen``, ``id``: the node key.

Every user mistake prints one line ``loragate: error: ...`` and exits non-zero (2 for
usage and configuration errors, 1 otherwise); never a traceback (set LORAGATE_DEBUG=1
to see one for an unexpected internal error).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from loragate import config as config_mod
from loragate import control, keys
from loragate.config import ConfigError, GatewayConfig
from loragate.store import StoreError
from loragate.view import (
    BanInfo,
    PeerInfo,
    StatusInfo,
    StoppedGatewayView,
    ViewError,
    check_target,
    summarize_evidence,
)

F = TypeVar("F", bound=Callable[..., Any])

PROG = "loragate"
DEBUG_ENV = "LORAGATE_DEBUG"
USAGE_EXIT = 2


def _fail_line(message: str) -> str:
    return f"{PROG}: error: " + " ".join(str(message).split())


class LoragateGroup(click.Group):
    """A click group whose errors are always one line on stderr, never a traceback."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        code = 0
        try:
            rv = super().main(args, prog_name or PROG, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            code = USAGE_EXIT
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(_fail_line(exc.format_message()) + hint, err=True)
            code = USAGE_EXIT
        except click.ClickException as exc:
            click.echo(_fail_line(exc.format_message()), err=True)
            code = exc.exit_code
        except ConfigError as exc:
            click.echo(_fail_line(str(exc)), err=True)
            code = USAGE_EXIT
        except (
            keys.KeyFileError,
            ViewError,
            control.ControlError,
            StoreError,
        ) as exc:
            click.echo(_fail_line(str(exc)), err=True)
            code = 1
        except OSError as exc:  # e.g. the listen port is taken
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(_fail_line(f"{exc.strerror or exc}{where}"), err=True)
            code = 1
        except (click.Abort, KeyboardInterrupt):
            click.echo(f"{PROG}: interrupted", err=True)
            code = 130
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            click.echo(
                _fail_line(f"internal error: {exc!r} (set {DEBUG_ENV}=1 for the traceback)"),
                err=True,
            )
            code = 1
        sys.exit(code)


@click.group(cls=LoragateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lorachain-peers")
def cli() -> None:
    """Lorachain gateway: bridges a LoRa mesh to internet peers and manages who to talk to."""


def data_dir_option(func: F) -> F:
    """`--data-dir`, also from $LORAGATE_DATA_DIR; None means the platform default."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=keys.DATA_DIR_ENV,
        default=None,
        help="Directory for the key, database and control socket "
        "(default: the user data directory; env LORAGATE_DATA_DIR).",
    )(func)


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="TOML settings file (the same names as the flags of 'loragate run').",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        func
    )


@cli.command()
@data_dir_option
@click.option("--force", is_flag=True, help="Replace an existing key (the node id changes).")
def keygen(data_dir: Path | None, force: bool) -> None:
    """Create this gateway's node key and print its node id."""
    path = keys.key_path(data_dir)
    try:
        identity = keys.create_identity(path, force=force)
    except keys.KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {path}", err=True)
    click.echo(identity.hex_id())


@cli.command("id")
@data_dir_option
def show_id(data_dir: Path | None) -> None:
    """Print the node id of the existing key."""
    try:
        identity = keys.load_identity(keys.key_path(data_dir))
    except keys.KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(identity.hex_id())


# ---- settings flags, generated from GatewayConfig ----------------------------------------

SETTING_PREFIX = "set__"
_SECTION_FLAG = {
    "score": "score",
    "bans": "ban",
    "relay": "relay",
    "peer_prefix": "peer-prefix",
}
_LIST_FLAG = {"dns_seeds": "dns-seed", "preferred_kinds": "preferred-kind"}
_NOT_FLAGS = {"data_dir"}  # --data-dir is shared by every command (and has an env var)
_TOML_ONLY = {("bans", "points")}  # a table (the price list): only in the settings file


@dataclasses.dataclass(frozen=True)
class SettingFlag:
    path: tuple[str, ...]  # ("listen_port",) or ("bans", "threshold")
    flag: str  # "--listen-port"
    dest: str  # click parameter name
    kind: str  # the field's annotation, e.g. "int", "list[str]", "Path | None"


def _flag_name(path: tuple[str, ...]) -> str:
    if len(path) == 2:
        return f"--{_SECTION_FLAG[path[0]]}-{path[1].replace('_', '-')}"
    return "--" + _LIST_FLAG.get(path[0], path[0]).replace("_", "-")


def setting_flags() -> list[SettingFlag]:
    """One flag per GatewayConfig setting (nested sections included)."""
    out: list[SettingFlag] = []
    for f in dataclasses.fields(GatewayConfig):
        if f.name in _NOT_FLAGS:
            continue
        kind = str(f.type)
        if f.name in _SECTION_FLAG:
            section = getattr(GatewayConfig(), f.name)
            for sf in dataclasses.fields(section):
                sub = (f.name, sf.name)
                if sub in _TOML_ONLY:
                    continue
                out.append(
                    SettingFlag(sub, _flag_name(sub), SETTING_PREFIX + "__".join(sub), str(sf.type))
                )
            continue
        top = (f.name,)
        out.append(SettingFlag(top, _flag_name(top), SETTING_PREFIX + f.name, kind))
    return out


def _default_of(path: tuple[str, ...]) -> Any:
    obj: Any = GatewayConfig()
    for part in path:
        obj = getattr(obj, part)
    return obj


def _click_option(s: SettingFlag) -> click.Option:
    toml = ".".join(s.path)
    default = _default_of(s.path)
    shown = "none" if default in (None, []) else default
    if isinstance(default, list):
        shown = ", ".join(default) if default else "none"
    help_text = f"Setting {toml} (default: {shown})."
    if s.kind == "bool":
        flag = s.flag[2:]
        return click.Option(
            [f"--{flag}/--no-{flag}", s.dest], default=None, help=help_text, show_default=False
        )
    if s.kind == "list[str]":
        return click.Option(
            [s.flag, s.dest], multiple=True, default=(), help=help_text + " Repeatable."
        )
    ptype: click.ParamType
    if s.kind == "int":
        ptype = click.INT
    elif s.kind == "float":
        ptype = click.FLOAT
    elif s.kind.startswith("Path"):
        ptype = click.Path(dir_okay=False, path_type=Path)
    elif s.kind.startswith("str"):
        ptype = click.STRING
    else:  # pragma: no cover - a new field type needs a rule here
        raise AssertionError(f"no flag rule for {toml}: {s.kind}")
    if s.path == ("log_level",):
        help_text = f"Log level: {', '.join(config_mod.LOG_LEVELS)} (default: {default})."
    if s.path == ("network_key",):
        help_text += " Visible in the process list: prefer --network-key-file."
    return click.Option([s.flag, s.dest], type=ptype, default=None, help=help_text)


def overrides_from(params: dict[str, Any]) -> dict[str, Any]:
    """The flags actually given, as a (nested) settings dict for ``config.load``."""
    out: dict[str, Any] = {}
    for s in setting_flags():
        value = params.get(s.dest)
        if value is None or (s.kind == "list[str]" and not value):
            continue
        if s.kind == "list[str]":
            value = list(value)
        target = out
        for part in s.path[:-1]:
            target = target.setdefault(part, {})
        target[s.path[-1]] = value
    return out


def load_config(
    config_file: Path | None, data_dir: Path | None, overrides: dict[str, Any] | None = None
) -> GatewayConfig:
    merged = dict(overrides or {})
    if data_dir is not None:
        merged["data_dir"] = data_dir
    return config_mod.load(config_file, merged)


def ensure_writable_dir(path: Path) -> None:
    """Create the data dir (0700) if needed and prove it is writable; ClickException."""
    if path.exists() and not path.is_dir():
        raise click.ClickException(f"data dir {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise click.ClickException(
            f"data dir {path} is not writable: {exc.strerror or exc}"
        ) from None


def _config_dict(cfg: GatewayConfig) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        return str(v) if isinstance(v, Path) else v

    d = {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}
    if d.get("network_key"):
        d["network_key"] = "<set>"
    return d


@cli.command()
@config_option
@data_dir_option
@click.option(
    "--check-config",
    is_flag=True,
    help="Validate the settings, print the effective configuration as JSON and exit.",
)
@click.pass_context
def run(ctx: click.Context, config_file: Path | None, data_dir: Path | None, **params: Any) -> None:
    """Run the gateway (settings: defaults < --config FILE < flags)."""
    check_only = bool(params.pop("check_config", False))
    cfg = load_config(config_file, data_dir, overrides_from(params))
    cfg.require_network_key()  # a missing, malformed or weak key is reported now
    ensure_writable_dir(cfg.data_dir)
    if check_only:
        click.echo(json.dumps(_config_dict(cfg), indent=2, sort_keys=True))
        return
    if asyncio.run(control.is_running(cfg.control_path)):
        raise click.ClickException(
            f"a gateway is already running with data dir {cfg.data_dir} "
            f"(control socket {cfg.control_path})"
        )
    from loragate.logsetup import setup_logging
    from loragate.runner import run_gateway  # heavy: only the run command needs it

    setup_logging(cfg.log_level)
    try:
        asyncio.run(run_gateway(cfg))
    except KeyboardInterrupt:
        ctx.exit(130)


for _s in setting_flags():
    run.params.append(_click_option(_s))


# ---- talking to a gateway ------------------------------------------------------------


def _ask(cfg: GatewayConfig, cmd: str, **args: Any) -> tuple[Any, bool]:
    """(result, running): over the control socket, else from the database."""

    async def go() -> tuple[Any, bool]:
        try:
            return await control.call(cfg.control_path, cmd, **args), True
        except control.GatewayNotRunning:
            pass
        view = StoppedGatewayView(cfg)
        if cmd == "peers":
            return await view.peers(), False
        if cmd == "bans":
            return await view.bans(), False
        if cmd == "status":
            return await view.status(), False
        if cmd == "ban":
            return await view.ban(args["target"], args["duration_s"], args["reason"]), False
        if cmd == "unban":
            return await view.unban(args["target"]), False
        if cmd == "clearbanned":
            return await view.clear_bans(), False
        if cmd == "disconnect":
            return await view.disconnect(args["target"]), False
        if cmd == "connect":
            return await view.connect(args["address"], args.get("remove", False)), False
        raise AssertionError(cmd)

    return asyncio.run(go())


def _note_stopped(cfg: GatewayConfig, wrote: bool = False) -> None:
    if wrote:
        click.echo(
            f"(gateway stopped; written to {cfg.db_path}, applied at its next start)", err=True
        )
    else:
        click.echo(f"(gateway stopped; read from {cfg.db_path})", err=True)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def fmt_time(t: float | None, iso: bool = False, now: float | None = None) -> str:
    """'12s ago' / 'in 5m 00s' (relative to `now`), or with `iso` the local time in ISO
    8601 with its zone ('2026-12-03T16:04:05+01:00'); '-' for none."""
    if not t:
        return "-"
    if iso:
        return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
    delta = (time.time() if now is None else now) - t
    if abs(delta) < 1:
        return "now"
    return f"{fmt_duration(delta)} ago" if delta > 0 else f"in {fmt_duration(-delta)}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h:02d}h"
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def _num(v: float | int | None, digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    max_width: int | None = None,
    shrink: int | None = None,
    drop: Sequence[int] = (),
) -> tuple[str, list[str]]:
    """Aligned columns; a column that is '-' in every row is left out. With `max_width`,
    the columns in `drop` are left out, in that order, while the lines would not fit even
    with column `shrink` cut to its header's width; then `shrink` is cut (values end in
    '…') as far as it must be. Returns the table and the headers of the columns left out
    to fit."""
    keep = [i for i in range(len(headers)) if any(r[i] not in ("", "-") for r in rows)]
    widths = {i: max(len(headers[i]), *(len(r[i]) for r in rows)) for i in keep}
    dropped: list[str] = []

    def total(cut: bool = False) -> int:
        w = sum(widths[i] for i in keep) + 2 * (len(keep) - 1)
        return w - (widths[shrink] - len(headers[shrink]) if cut and shrink in keep else 0)

    if max_width is not None:
        for i in drop:
            if total(cut=True) <= max_width:
                break
            if i in keep:
                keep.remove(i)
                dropped.append(headers[i])
        if shrink in keep and total() > max_width:
            widths[shrink] = max(len(headers[shrink]), widths[shrink] - (total() - max_width))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(_cut(cells[i], widths[i]).ljust(widths[i]) for i in keep).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)]), dropped


PEERS_WIDTH = 100  # `loragate peers` fits this many columns; --wide shows every column


def _where(p: PeerInfo) -> str:
    """An internet peer's address, or how a mesh node is reached."""
    if p.get("direction") == "mesh":
        hops = p.get("hops")
        if hops is None:
            return "mesh"
        return "mesh, direct" if hops == 0 else f"mesh, {hops} hop{'s' if hops != 1 else ''}"
    return p.get("address") or "-"


def _link(p: PeerInfo) -> str:
    if p.get("rssi") is not None:
        snr = p.get("snr")
        return f"{p['rssi']:.0f} dBm" + (f" {snr:+.1f} dB" if snr is not None else "")
    if p.get("latency_ms") is not None:
        return f"ping {p['latency_ms']:.0f} ms"
    return "-"


def _points(p: PeerInfo, exact: bool = True) -> str:
    if "points" not in p:
        return "-"
    points = f"{p['points']:g}" if exact else f"{p['points']:.0f}"
    return f"{points}/{p.get('ban_threshold', '?')}"


def _state(p: PeerInfo) -> str:
    state = p.get("state") or "-"
    return state + " (manual)" if p.get("manual") else state


def _connection(p: PeerInfo) -> str:
    """The direction, or "manual" for a `connect` peer (an outbound connection kept up,
    bitcoin-cli's connection_type "manual")."""
    return "manual" if p.get("manual") else p.get("direction") or "-"


# When the 100 columns are not enough (an ISO time, a manual peer and a mesh node's RSSI
# and SNR in one table), these go, whole and in this order, and `peers` says so: never a
# cut number. STATE first, but only beside DIR: a running gateway's peers are "connected"
# (in, out, manual) or "heard" (mesh), so DIR says it all; a stopped gateway's are
# "tried" or "new" and have no DIR.
PEERS_DROP_ORDER = ("STATE", "KIND", "SCORE", "LINK", "POINTS")


def peers_table(
    peers: list[PeerInfo], *, wide: bool = False, iso: bool = False, now: float | None = None
) -> tuple[str, list[str]]:
    """The peers as `loragate peers` prints them: at most PEERS_WIDTH columns, only the
    address cut and columns left out whole to fit (their headers are returned), or with
    `wide` every field."""
    now = time.time() if now is None else now
    if wide:
        all_headers = (
            "NODE ID", "ADDRESS", "KIND", "STATE", "DIR", "SCORE", "POINTS", "LATENCY MS",
            "RSSI", "SNR", "HOPS", "CONNECTED", "LAST SEEN", "BYTES IN", "BYTES OUT", "GROUP",
        )  # fmt: skip
        all_rows = [
            (
                p.get("node_id") or "-",
                p.get("address") or "-",
                p.get("kind") or "-",
                _state(p),
                p.get("direction") or "-",
                _num(p.get("score")),
                _points(p),
                _num(p.get("latency_ms"), 0),
                _num(p.get("rssi"), 0),
                _num(p.get("snr"), 1),
                _num(p.get("hops")),
                fmt_time(p.get("connected_since"), iso, now),
                fmt_time(p.get("last_seen"), iso, now),
                str(p.get("bytes_in") or "-"),
                str(p.get("bytes_out") or "-"),
                p.get("group") or "-",
            )
            for p in peers
        ]
        return render_table(all_headers, all_rows)[0], []
    headers = ("NODE ID", "KIND", "STATE", "DIR", "ADDRESS / VIA", "SCORE", "POINTS", "LINK",
               "LAST SEEN")  # fmt: skip
    rows = [
        (
            p.get("node_id") or "-",
            p.get("kind") or "-",
            p.get("state") or "-",
            _connection(p),
            _where(p),
            _num(p.get("score")),
            _points(p, exact=False),
            _link(p),
            fmt_time(p.get("last_seen"), iso, now),
        )
        for p in peers
    ]
    with_dir = any(r[3] != "-" for r in rows)
    drop = [headers.index(h) for h in PEERS_DROP_ORDER if with_dir or h != "STATE"]
    return render_table(headers, rows, max_width=PEERS_WIDTH, shrink=4, drop=drop)


def peer_text(p: PeerInfo, bans: list[BanInfo], iso: bool = False) -> str:
    """One peer, every field on its own line (the single-peer view)."""
    now = time.time()
    pairs = [
        ("node id", p.get("node_id") or "-"),
        ("kind", p.get("kind") or "-"),
        ("state", _state(p)),
        ("direction", p.get("direction") or "-"),
        ("address", p.get("address") or "-"),
        ("reached", _where(p)),
        ("score", _num(p.get("score"))),
        ("misbehaviour", f"{_points(p)} points (a ban at the threshold)" if "points" in p else "-"),
        (
            "latency",
            f"{_num(p.get('latency_ms'), 1)} ms" if p.get("latency_ms") is not None else "-",
        ),
        ("radio link", _link(p) if p.get("rssi") is not None else "-"),
        ("hops", _num(p.get("hops"))),
        ("connected", fmt_time(p.get("connected_since"), iso, now)),
        ("last seen", fmt_time(p.get("last_seen"), iso, now)),
        ("bytes in/out", f"{p.get('bytes_in') or 0} / {p.get('bytes_out') or 0}"),
        ("group", p.get("group") or "-"),
    ]
    for b in bans:
        until = b.get("until")
        pairs.append(
            (
                "banned",
                f"{b['target']}: {_reason(b)}, "
                + ("permanent" if until is None else f"until {fmt_time(until, iso, now)}"),
            )
        )
    width = max(len(k) for k, _ in pairs) + 1
    return "\n".join(f"{(k + ':').ljust(width)} {v}" for k, v in pairs)


def _reason(b: BanInfo) -> str:
    reason = b.get("reason") or "-"
    if b.get("manual") and "manual" not in reason:
        reason += " (manual)"
    return reason


def bans_table(bans: list[BanInfo], iso: bool = False) -> str:
    headers = ("TARGET", "REASON", "SINCE", "UNTIL", "COUNT", "EVIDENCE")
    now = time.time()
    rows = []
    for b in bans:
        until = b.get("until")
        rows.append(
            (
                b["target"],
                _reason(b),
                fmt_time(b.get("since"), iso, now),
                "permanent" if until is None else fmt_time(until, iso, now),
                str(b.get("count", "-")),
                summarize_evidence(b.get("evidence") or []) or "-",
            )
        )
    return render_table(headers, rows)[0]


def _bridge_lines(br: dict[str, Any] | None, iso: bool) -> list[tuple[str, str]]:
    if br is None:
        return [("bridge", "none (no serial_port configured)")]
    now = time.time()
    state = br.get("state", "?")
    line = f"{state} since {fmt_time(br.get('since'), iso, now)} on {br.get('port')}"
    if state != "up" and br.get("last_error"):
        line += f" ({br['last_error']})"
    out = [("bridge", line)]
    if br.get("board_id"):
        out.append(
            (
                "  board",
                f"{br['board_id']} ({br.get('firmware') or '?'}), last HELLO "
                f"{fmt_time(br.get('last_hello'), iso, now)}",
            )
        )
    radio = []
    if br.get("region"):
        radio.append(str(br["region"]))
    if br.get("frequency_hz"):
        radio.append(f"{br['frequency_hz'] / 1e6:.3f} MHz")
    if br.get("sf"):
        radio.append(f"SF{br['sf']}")
    if br.get("bandwidth_hz"):
        radio.append(f"{br['bandwidth_hz'] / 1000:g} kHz")
    if br.get("coding_rate"):
        radio.append(f"CR 4/{br['coding_rate']}")
    if br.get("tx_power_dbm") is not None:
        radio.append(f"{br['tx_power_dbm']} dBm")
    if radio:
        out.append(("  radio", ", ".join(radio)))
    used, budget = br.get("airtime_used_ms"), br.get("airtime_budget_ms")
    if used is not None and budget is not None:
        left = br.get("budget_left_ms")
        tail = "  BUDGET EXHAUSTED" if br.get("budget_exhausted") else ""
        out.append(
            (
                "  airtime",
                f"{used / 1000:.1f} of {budget / 1000:.1f} s per hour used, "
                f"{(left or 0) / 1000:.1f} s left{tail}",
            )
        )
    else:
        out.append(("  airtime", "no duty-cycle figures from the board yet"))
    down = br.get("downlink") or {}
    if down:
        out.append(
            (
                "  downlink",
                f"{down.get('sent', 0)} frames sent, {down.get('queued', 0)} queued, "
                f"{down.get('inv_items_offered', 0)} objects offered, "
                f"{down.get('refused', 0)} refused or shed",
            )
        )
    return out


def status_text(st: StatusInfo, iso: bool = False) -> str:
    def counts(d: dict[str, int] | None) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted((d or {}).items())) or "-"

    pairs = [
        ("state", st.get("state", "-")),
        ("node id", st.get("node_id") or "(no key yet)"),
        ("version", st.get("version", "-")),
        ("uptime", fmt_duration(st.get("uptime_s"))),
        ("listen", st.get("listen", "-")),
        (
            "peers",
            f"{st.get('peers_total', 0)} (by kind: {counts(st.get('peers_by_kind'))}; "
            f"by direction: {counts(st.get('peers_by_direction'))})",
        ),
    ]
    if "outbound_target" in st:
        manual = st.get("manual_peers") or []
        pairs.append(
            (
                "slots",
                f"outbound {st.get('outbound', 0)}/{st['outbound_target']}, inbound "
                f"{st.get('inbound', 0)}/{st.get('inbound_cap', '?')}"
                + (f", manual: {', '.join(manual)}" if manual else ""),
            )
        )
    pairs += [
        ("address book", f"{st.get('addrman_new', 0)} new, {st.get('addrman_tried', 0)} tried"),
        ("bans active", str(st.get("bans_active", 0))),
        ("relayed", counts(st.get("relayed"))),
    ]
    if st.get("state") == "running":
        pairs += _bridge_lines(st.get("bridge"), iso)
    pairs += [("database", st.get("database", "-"))]
    if st.get("metrics_url"):
        pairs.append(("metrics", str(st["metrics_url"])))
    width = max(len(k) for k, _ in pairs) + 1
    return "\n".join(f"{(k + ':').ljust(width)} {v}" for k, v in pairs)


def iso_option(func: F) -> F:
    return click.option(
        "--iso", is_flag=True, help="Times as ISO 8601 with the zone instead of '12s ago'."
    )(func)


@cli.command()
@config_option
@data_dir_option
@json_option
@iso_option
@click.option("--wide", is_flag=True, help="Every column (the default fits 100 columns).")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Show at most this many peers (0: all).",
)
def peers(
    config_file: Path | None,
    data_dir: Path | None,
    as_json: bool,
    iso: bool,
    wide: bool,
    limit: int,
) -> None:
    """List connected peers and mesh nodes heard (stopped: the best known addresses)."""
    cfg = load_config(config_file, data_dir)
    result, running = _ask(cfg, "peers")
    if not running:
        _note_stopped(cfg)
    if limit and len(result) > limit:
        click.echo(f"(showing {limit} of {len(result)}; --limit 0 shows all)", err=True)
        result = result[:limit]
    if as_json:
        _print_json(result)
    elif result:
        table, left_out = peers_table(result, wide=wide, iso=iso)
        click.echo(table)
        if left_out:
            shown = ", ".join(left_out)
            click.echo(
                f"(left out to fit {PEERS_WIDTH} columns: {shown}; --wide shows all)", err=True
            )
    else:
        click.echo("no peers" if running else "no known addresses")


def _matches(p: PeerInfo, target: str) -> bool:
    t = target.strip().lower().removeprefix("node:")
    return t in ((p.get("node_id") or "").lower(), (p.get("address") or "").lower())


@cli.command("peer")
@config_option
@data_dir_option
@json_option
@iso_option
@click.argument("target")
def peer_cmd(
    config_file: Path | None, data_dir: Path | None, as_json: bool, iso: bool, target: str
) -> None:
    """One peer in full: TARGET is its node id (16 hex digits) or its address (IP:PORT)."""
    cfg = load_config(config_file, data_dir)
    result, running = _ask(cfg, "peers")
    found = [p for p in result if _matches(p, target)]
    if not found:
        where = "connected or heard" if running else "in the address book"
        raise click.ClickException(f"no peer {target} {where} (see 'loragate peers')")
    if not running:
        _note_stopped(cfg)
    peer = found[0]
    bans_now, _ = _ask(cfg, "bans")
    mine = {f"node:{peer.get('node_id')}", (peer.get("address") or "").rpartition(":")[0]}
    covering = [b for b in bans_now if b["target"] in mine]
    if as_json:
        _print_json({**peer, "bans": covering})
    else:
        click.echo(peer_text(peer, covering, iso=iso))


@cli.command()
@config_option
@data_dir_option
@json_option
@iso_option
def bans(config_file: Path | None, data_dir: Path | None, as_json: bool, iso: bool) -> None:
    """List active bans with reason, expiry and evidence."""
    cfg = load_config(config_file, data_dir)
    result, running = _ask(cfg, "bans")
    if not running:
        _note_stopped(cfg)
    if as_json:
        _print_json(result)
    elif result:
        click.echo(bans_table(result, iso=iso))
    else:
        click.echo("no active bans")


@cli.command()
@config_option
@data_dir_option
@json_option
@iso_option
def status(config_file: Path | None, data_dir: Path | None, as_json: bool, iso: bool) -> None:
    """The gateway's state: peers and slots, address book, bans, relay, the bridge."""
    cfg = load_config(config_file, data_dir)
    result, running = _ask(cfg, "status")
    if not running:
        _note_stopped(cfg)
    if as_json:
        _print_json(result)
    else:
        click.echo(status_text(result, iso=iso))


@cli.command()
@config_option
@data_dir_option
@click.argument("target")
@json_option
def disconnect(config_file: Path | None, data_dir: Path | None, target: str, as_json: bool) -> None:
    """Drop the connection to TARGET (node id or IP:PORT) now; a manual peer is redialled."""
    cfg = load_config(config_file, data_dir)
    result, _ = _ask(cfg, "disconnect", target=target)
    if not result.get("count"):
        raise click.ClickException(f"no connection to {target}")
    if as_json:
        _print_json(result)
    else:
        click.echo(f"disconnected {target}")


@cli.command("connect")
@config_option
@data_dir_option
@click.argument("address")
@click.option("--remove", is_flag=True, help="Stop keeping ADDRESS connected.")
@json_option
def connect_cmd(
    config_file: Path | None, data_dir: Path | None, address: str, remove: bool, as_json: bool
) -> None:
    """Keep a connection to ADDRESS (IP:PORT) from now on, as the `connect` setting does,
    until the gateway stops (Bitcoin Core's addnode); --remove undoes it."""
    cfg = load_config(config_file, data_dir)
    result, _ = _ask(cfg, "connect", address=address, remove=remove)
    if as_json:
        _print_json(result)
    elif remove:
        done = "no longer kept connected" if result["added"] else "was not a manual peer"
        click.echo(f"{result['address']} {done}")
    else:
        done = "will be kept connected" if result["added"] else "is a manual peer already"
        click.echo(f"{result['address']} {done} (until the gateway stops)")


cli.add_command(connect_cmd, "addnode")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float | None:
    """'3600', '45s', '30m', '1h30m', '2d', '1w' -> seconds; 'permanent' -> None.

    Raises click.BadParameter (a usage error) for anything else or for zero.
    """
    t = text.strip().lower()
    if t in ("permanent", "forever", "perm"):
        return None
    seconds = 0.0
    try:
        seconds = float(t)
    except ValueError:
        pos = 0
        for m in _DURATION_RE.finditer(t):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(t) or not t:
            raise click.BadParameter(
                f"{text!r} is not a duration (e.g. 3600, 30m, 1h, 2d, 1w or permanent)",
                param_hint="'--duration'",
            ) from None
    if not 0 < seconds < 1e10:
        raise click.BadParameter(
            f"{text!r}: a ban must last more than 0 s (or be permanent)",
            param_hint="'--duration'",
        )
    return seconds


def _target(text: str) -> str:
    try:
        return check_target(text)
    except ViewError as exc:
        raise click.BadParameter(str(exc), param_hint="'TARGET'") from None


@cli.command()
@config_option
@data_dir_option
@click.argument("target")
@click.option(
    "--duration",
    default=None,
    metavar="DURATION",
    help="3600, 30m, 1h, 2d, 1w or permanent (default: the bans.base_duration_s setting).",
)
@click.option("--reason", default="manual", show_default=True, help="Recorded with the ban.")
@json_option
def ban(
    config_file: Path | None,
    data_dir: Path | None,
    target: str,
    duration: str | None,
    reason: str,
    as_json: bool,
) -> None:
    """Ban TARGET: a node id (16 hex digits), an IP address or a subnet (CIDR)."""
    canonical = _target(target)
    cfg = load_config(config_file, data_dir)
    seconds = float(cfg.bans.base_duration_s) if duration is None else parse_duration(duration)
    result, running = _ask(cfg, "ban", target=canonical, duration_s=seconds, reason=reason)
    if not running:
        _note_stopped(cfg, wrote=True)
    if as_json:
        _print_json(result)
        return
    until = result.get("until")
    when = "permanently" if until is None else f"until {fmt_time(until)}"
    click.echo(f"banned {result['target']} {when} (ban #{result.get('count')}; {reason})")


@cli.command()
@config_option
@data_dir_option
@click.argument("target", required=False)
@click.option("--all", "every", is_flag=True, help="Lift every ban (as 'clearbanned').")
@json_option
def unban(
    config_file: Path | None, data_dir: Path | None, target: str | None, every: bool, as_json: bool
) -> None:
    """Lift the ban on TARGET (node id, IP address or subnet, as it was banned)."""
    if every == (target is not None):
        raise click.UsageError("give a TARGET or --all")
    cfg = load_config(config_file, data_dir)
    if every:
        _clear(cfg, as_json)
        return
    assert target is not None
    canonical = _target(target)
    result, running = _ask(cfg, "unban", target=canonical)
    if not result.get("removed"):
        raise click.ClickException(f"{result.get('target', canonical)} is not banned")
    if not running:
        _note_stopped(cfg, wrote=True)
    if as_json:
        _print_json(result)
    else:
        click.echo(f"unbanned {result['target']}")


def _clear(cfg: GatewayConfig, as_json: bool) -> None:
    result, running = _ask(cfg, "clearbanned")
    if not running:
        _note_stopped(cfg, wrote=True)
    if as_json:
        _print_json(result)
    else:
        n = result["count"]
        click.echo(f"lifted {n} ban{'s' if n != 1 else ''}")


@cli.command()
@config_option
@data_dir_option
@json_option
def clearbanned(config_file: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Lift every ban (the same as 'unban --all')."""
    _clear(load_config(config_file, data_dir), as_json)


def main() -> None:
    cli()
