"""The live view of the demo network: what a newcomer sees while `make run` runs.

`gather(net)` takes a snapshot (the gateway's control socket: status, peers, bans; its
metrics; the mesh nodes' STATUS lines; transactions made and received), and
`render(snapshot)` turns it into text:

* a header saying what is running and where the logs are;
* a progress line while the mesh discovers itself ("mesh discovery: 23/56 peer records
  known (41%)"), then how long it took;
* the gateway's peers: kind (internet / mesh), name, id, where it is ("mesh via bridge,
  2 hops" or an address), score (0..100) and link quality (RSSI/SNR as the bridge radio
  heard it, or TCP ping latency);
* bans with their reason and a summary of the evidence;
* the bridge radio's airtime against its duty-cycle budget (a bar);
* relayed counts (tx/inv/block towards internet peers and towards the mesh, and
  transactions that made it end to end between the two worlds);
* a footer: "Ctrl-C stops everything".

The header names the gateway's data dir, its metrics URL and the `loragate status
--data-dir ...` command that queries it. `render(net, snap, width, height)` draws that
full layout when it fits, else `render_compact`: one line per peer and per ban and one
for each of the rest, so 80x24 shows everything that matters (peers that do not fit are
counted in a last line that points at `loragate peers`). Hop counts are the CLI's
(relays between the node and the bridge: "direct", "2 hops").

`run_view(net, ...)` refreshes about once a second: on a terminal it clears the screen
and redraws (plain ANSI: clear + home); otherwise (or with `plain=True`) it prints a
compact snapshot every `plain_every` seconds. It also drives the traffic: every
`tx_interval` seconds one mesh node (in turn) makes a transaction.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.demo.network import PEER_HOSTS, Network, loragate_cmd

CLEAR = "\x1b[2J\x1b[H"
BAR = 30
PEER_ROLES = {
    PEER_HOSTS[0]: "peer1",
    PEER_HOSTS[1]: "peer2",
    PEER_HOSTS[2]: "badpeer",
}
PEER_NOTES = {
    "peer1": "loragate run",
    "peer2": "makes transactions",
    "badpeer": "misbehaves: sends malformed frames",
}


def bar(frac: float, width: int = BAR) -> str:
    frac = min(max(frac, 0.0), 1.0)
    full = round(frac * width)
    return "[" + "#" * full + "." * (width - full) + "]"


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}min"
    return f"{s // 3600}h"


def gather(net: Network) -> dict[str, Any]:
    """One snapshot of the whole network (see the module docstring)."""
    net.mesh.request_status(wait=0.5)
    net.refresh_bridge()
    n = net.mesh.n
    return {
        "now": time.time(),
        "up_s": time.monotonic() - net.started_at if net.started_at else 0.0,
        "status": net.query("status"),
        "peers": net.query("peers") or [],
        "bans": net.query("bans") or [],
        "metrics": net.metrics(),
        "known": net.mesh.knowledge(),
        "total": n * (n - 1),
        "converged": net.mesh.converged(),
        "tally": net.tally(),
        "bridge": net.bridge_status,
        "gateway_running": net.gateway is not None and net.gateway.running,
    }


def _peer_name(net: Network, p: dict[str, Any]) -> str:
    if p.get("direction") == "mesh":
        return net.name_of(p.get("node_id")) or "mesh node"
    host = (p.get("address") or "").rpartition(":")[0]
    return PEER_ROLES.get(host, "internet")


def _hops(p: dict[str, Any]) -> str:
    """The hop count as `loragate peers` gives it: relays between node and bridge."""
    hops = p.get("hops")
    if hops is None:
        return "mesh"
    return "direct" if hops == 0 else f"{hops} hop{'s' if hops != 1 else ''}"


def _where(p: dict[str, Any], name: str) -> str:
    if p.get("direction") == "mesh":
        return f"mesh via bridge, {_hops(p)}"
    way = {"out": "we dialled", "in": "it dialled us"}.get(p.get("direction") or "", "")
    return f"{p.get('address')} ({way})" if way else str(p.get("address"))


def _quality(p: dict[str, Any]) -> str:
    if p.get("rssi") is not None:
        snr = p.get("snr")
        tail = f"  SNR {snr:+.1f} dB" if snr is not None else ""
        return f"RSSI {p['rssi']:.0f} dBm{tail}"
    if p.get("latency_ms") is not None:
        return f"ping {p['latency_ms']:.1f} ms"
    if p.get("direction") == "mesh":
        return "relayed (no own radio link)"
    return "-"


def _evidence(ban: dict[str, Any]) -> str:
    ev = ban.get("evidence") or []
    if not ev:
        return "manual" if ban.get("manual") else "no evidence kept"
    kinds: dict[str, int] = {}
    points = 0
    for e in ev:
        kinds[e["misbehaviour"]] = kinds.get(e["misbehaviour"], 0) + 1
        points += int(e.get("points") or 0)
    parts = ", ".join(f"{k} x{v}" for k, v in kinds.items())
    return f"{len(ev)} reports ({parts}), {points} points"


def _metric(m: dict[str, float], name: str, **labels: str) -> int:
    lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = f"loragate_{name}{{{lab}}}" if lab else f"loragate_{name}"
    return int(m.get(key, 0))


def _rows(net: Network, peers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    internet = [p for p in peers if p.get("direction") != "mesh"]
    mesh = [p for p in peers if p.get("direction") == "mesh"]
    return sorted(internet, key=lambda p: str(p.get("address"))) + sorted(
        mesh, key=lambda p: (p.get("hops") if p.get("hops") is not None else 99, _peer_name(net, p))
    )


def _ban_who(net: Network, target: str) -> str:
    if target.startswith("node:"):
        return net.name_of(target[5:]) or "mesh node"
    return PEER_ROLES.get(target, "address")


def _air(snap: dict[str, Any]) -> tuple[float, float] | None:
    status = snap["status"] or {}
    air = status.get("airtime")
    if air and air.get("budget_ms"):
        return float(air["used_ms"]), float(air["budget_ms"])
    return None


def _downlink(snap: dict[str, Any]) -> dict[str, Any]:
    bridge = (snap["status"] or {}).get("bridge") or {}
    return bridge.get("downlink") or {}


def cli_hint(net: Network) -> str:
    """The command that points the CLI at the demo's gateway."""
    return f"{_cli_program()} status --data-dir {net.gateway_dir}"


def _cli_program() -> str:
    cmd = loragate_cmd()
    if len(cmd) == 1:
        path = Path(cmd[0])
        with contextlib.suppress(ValueError):
            path = path.relative_to(Path.cwd())
        return str(path)
    return "loragate"


def _where_lines(net: Network, width: int) -> list[str]:
    """The data dir and the CLI command, whole: a line too long for the terminal puts the
    path on a line of its own (the command with a shell continuation, so both lines can
    be pasted as they are); only a path wider than the terminal itself is cut."""
    path = str(net.gateway_dir)
    data = f"  data dir {path}"
    cli = f"  cli      {cli_hint(net)}"
    if len(data) <= width and len(cli) <= width:
        return [data, f"  metrics  {net.metrics_url}", cli]
    return [
        "  data dir (and the CLI's --data-dir):",
        f"    {path}",
        f"  metrics  {net.metrics_url}",
        f"  cli      {_cli_program()} status --data-dir \\",
        f"    {path}",
    ]


def render(net: Network, snap: dict[str, Any], width: int = 100, height: int = 60) -> str:
    """The whole view as text (no escape codes) for a terminal of `width` x `height`: the
    full layout, or the compact one when the terminal is smaller than it (80x24 shows
    everything that matters). At most height - 1 lines: the newline after the frame puts
    the cursor on the last line, and one more would scroll the first away."""
    full = render_full(net, snap, width)
    if len(full.splitlines()) < height and width >= FULL_WIDTH:
        return full
    return render_compact(net, snap, width, height - 1)


FULL_WIDTH = 100


def render_full(net: Network, snap: dict[str, Any], width: int = 100) -> str:
    out: list[str] = []
    status = snap["status"]
    up = _ago(snap["up_s"])
    out.append("LORACHAIN LIVE DEMO: a LoRa mesh and the internet, joined by a gateway")
    out.append("=" * min(width, 78))
    out.append(
        f"  LoRa mesh : {net.n} MicroPython nodes (n0..n{net.n - 1}) + 1 misbehaving node "
        f"('bad'), simulated radio at {net.speed:g}x speed"
    )
    gw_id = status["node_id"] if status else "?"
    out.append(
        f"  Bridge    : board 'bridge' {net.bridge_id or '?'} on a pseudo-terminal "
        f"(UART) to the gateway"
    )
    state = "running" if snap["gateway_running"] and status else "NOT ANSWERING"
    out.append(f"  Gateway   : {gw_id} on {net.gateway_endpoint} ({state})")
    out.append(f"  Data dir  : {net.gateway_dir}   metrics: {net.metrics_url}")
    out.append(f"  CLI       : {cli_hint(net)}")
    out.append(
        f"  Internet  : peer1 {PEER_HOSTS[0]} (loragate run), peer2 {PEER_HOSTS[1]} "
        f"(makes transactions),"
    )
    out.append(f"              badpeer {PEER_HOSTS[2]} (misbehaving)")
    out.append(f"  Up {up}; logs in {net.workdir}")
    out.append("")
    out.append(_discovery(snap, long=True))
    out.append("")
    peers = snap["peers"]
    rows = _rows(net, peers)
    n_mesh = sum(1 for p in peers if p.get("direction") == "mesh")
    out.append(f"PEERS OF THE GATEWAY: {len(peers) - n_mesh} internet, {n_mesh} mesh")
    out.append(
        "  (score 0-100 from reliability, performance, behaviour; mesh link quality as the "
        "bridge radio heard it)"
    )
    out.append(f"  {'kind':<9}{'name':<9}{'id':<18}{'where':<34}{'score':>6}  link quality")
    for p in rows:
        name = _peer_name(net, p)
        kind = "mesh" if p.get("direction") == "mesh" else "internet"
        score = p.get("score")
        sc = f"{score:.0f}" if isinstance(score, int | float) else "-"
        out.append(
            f"  {kind:<9}{name:<9}{(p.get('node_id') or '?'):<18}{_where(p, name):<34}"
            f"{sc:>6}  {_quality(p)}"
        )
    if not rows:
        out.append("  (none yet: the gateway is waiting for connections and announcements)")
    out.append("")
    bans = snap["bans"]
    out.append(
        f"BANS: {len(bans)} active (a peer is banned when its misbehaviour points "
        f"reach the threshold)"
    )
    for b in bans:
        target = b["target"]
        until = b.get("until")
        left = "permanent" if until is None else f"{_ago(until - snap['now'])} left"
        out.append(
            f"  {target} = {_ban_who(net, target)}: {b['reason']}  ({left}, "
            f"ban #{b.get('count', 1)})"
        )
        out.append(f"      evidence: {_evidence(b)}")
    if not bans:
        out.append("  (none yet)")
    out.append("")
    air = _air(snap)
    if air is not None:
        used, budget = air
        out.append(
            f"AIRTIME of the bridge radio: {bar(used / budget)} {100 * used / budget:.1f}% "
            f"of the duty-cycle budget"
        )
        out.append(
            f"  {used / 1000:.1f} s transmitted of {budget / 1000:.0f} s allowed per hour "
            f"(EU868, simulated time)"
        )
    else:
        out.append("AIRTIME of the bridge radio: waiting for the bridge's first radio stats")
    down = _downlink(snap)
    if down:
        out.append(
            f"  downlink: {down.get('objects_offered', 0)} objects offered, "
            f"{down.get('refused', 0)} refused for lack of airtime or over a limit, "
            f"{down.get('sent', 0)} frames sent"
        )
    bs = snap.get("bridge") or {}
    drops = (bs.get("counters") or {}).get("dropped_banned")
    if drops is not None:
        out.append(f"  frames from banned nodes dropped at the bridge radio: {drops}")
    out.extend(_relayed(snap, long=True))
    out.append("")
    out.append("Ctrl-C stops everything.")
    return "\n".join(line[:width] if len(line) > width else line for line in out)


def _discovery(snap: dict[str, Any], long: bool) -> str:
    known, total = snap["known"], snap["total"]
    pct = 100 * known // total if total else 100
    if snap["converged"]:
        if long:
            return (
                "mesh discovery: complete, every node knows every other "
                f"({known}/{total} peer records)"
            )
        return f"discovery done ({known}/{total})"
    if long:
        return f"mesh discovery: {known}/{total} peer records known ({pct}%) {bar(known / total)}"
    return f"discovery {known}/{total} ({pct}%)"


def _relayed(snap: dict[str, Any], long: bool) -> list[str]:
    m = snap["metrics"]
    status = snap["status"]
    rel = status.get("relayed", {}) if status else {}
    t = snap["tally"]
    to_mesh = (
        _metric(m, "relayed_total", kind="mesh_tx"),
        _metric(m, "relayed_total", kind="mesh_inv"),
        _metric(m, "relayed_total", kind="mesh_block"),
    )
    up = f"{t.up()}/{len(t.made_mesh)}"
    down = f"{t.down()}/{len(t.made_inet)}"
    if not long:
        return [
            f"RELAYED to inet tx {rel.get('tx', 0)} inv {rel.get('inv', 0)} | to mesh "
            f"tx {to_mesh[0]} inv {to_mesh[1]} | end to end up {up} down {down}"
        ]
    return [
        "RELAYED by the gateway (objects and inventory items sent):",
        f"  to internet peers: tx {rel.get('tx', 0)}, inv {rel.get('inv', 0)}, "
        f"block {rel.get('block', 0)}",
        f"  to the mesh      : tx {to_mesh[0]}, inv {to_mesh[1]}, block {to_mesh[2]}",
        f"  end to end: up (mesh -> internet) {up} transactions, down (internet -> mesh) {down}",
    ]


def render_compact(net: Network, snap: dict[str, Any], width: int = 80, height: int = 24) -> str:
    """The view in `width` x `height` (80x24 and up): one line per peer and per ban, the
    rest in a line each; peers that do not fit are summed up in a last line."""
    status = snap["status"]
    gw_id = status["node_id"] if status else "?"
    state = "running" if snap["gateway_running"] and status else "NOT ANSWERING"
    head = [
        f"LORACHAIN DEMO up {_ago(snap['up_s'])}: {net.n} nodes + 'bad' at {net.speed:g}x, "
        + _discovery(snap, long=False),
        f"gateway {gw_id} {net.gateway_endpoint} ({state})",
        *_where_lines(net, width),
    ]
    bans = snap["bans"]
    ban_lines = [f"BANS {len(bans)} active" + ("" if bans else " (none yet)")]
    for b in bans:
        target = b["target"]
        until = b.get("until")
        left = "permanent" if until is None else f"{_ago(until - snap['now'])} left"
        short = target if not target.startswith("node:") else target[5:13]
        ban_lines.append(f"  {_ban_who(net, target)} {short}: {b['reason']} ({left})")
    air = _air(snap)
    down = _downlink(snap)
    shed = f", {down.get('refused', 0)} refused" if down else ""
    if air is not None:
        used, budget = air
        offered = f"downlink {down.get('objects_offered', 0)} offered{shed}"
        air_line = (
            f"AIR {bar(used / budget, 16)} {100 * used / budget:4.1f}% of "
            f"{budget / 1000:.0f} s/h  {offered}"
        )
    else:
        air_line = "AIR waiting for the bridge's first radio stats"
    tail = [air_line, *_relayed(snap, long=False), "Ctrl-C stops everything."]
    peers = snap["peers"]
    rows = _rows(net, peers)
    n_mesh = sum(1 for p in peers if p.get("direction") == "mesh")
    peer_head = f"PEERS {len(peers) - n_mesh} internet, {n_mesh} mesh   score  link"
    room = max(1, height - len(head) - len(ban_lines) - len(tail) - 1)
    shown = rows if len(rows) <= room else rows[: room - 1]
    peer_lines = []
    for p in shown:
        name = _peer_name(net, p)
        mesh = p.get("direction") == "mesh"
        where = _hops(p) if mesh else f"{p.get('address')} {p.get('direction') or ''}"
        score = p.get("score")
        sc = f"{score:.0f}" if isinstance(score, int | float) else "-"
        link = _quality(p).replace("RSSI ", "").replace("  SNR ", " ")
        link = "relayed" if link.startswith("relayed") else link
        peer_lines.append(
            f"  {name[:7]:<7} {'mesh' if mesh else 'inet'} {(p.get('node_id') or '?')[:8]:<8} "
            f"{where[:26]:<26} {sc:>3}  {link}"
        )
    if not rows:
        peer_lines.append("  (none yet)")
    elif len(shown) < len(rows):
        peer_lines.append(f"  ... {len(rows) - len(shown)} more: loragate peers (cli above)")
    lines = [*head, peer_head, *peer_lines, *ban_lines, *tail]
    if len(lines) > height:  # more bans than rows: keep the summary lines, cut the bans
        keep = height - len(head) - 1 - len(peer_lines) - len(tail)
        lines = [*head, peer_head, *peer_lines, *ban_lines[: max(1, keep)], *tail]
    return "\n".join(_fit(line, width) for line in lines[:height])


def _fit(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def run_view(
    net: Network,
    *,
    duration: float | None = None,
    plain: bool = False,
    refresh_s: float = 1.0,
    plain_every: float = 5.0,
    tx_interval: float = 12.0,
    write: Callable[[str], None] | None = None,
    width: int = 120,
    height: int = 60,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Refresh the view until `duration` seconds passed or `should_stop()` is true."""
    import sys

    def emit(text: str) -> None:
        if write is not None:
            write(text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()

    start = time.monotonic()
    last_plain = -1e9
    next_tx = start + tx_interval
    turn = 0
    while not should_stop():
        now = time.monotonic()
        if duration is not None and now - start >= duration:
            break
        if tx_interval > 0 and now >= next_tx:
            net.make_mesh_tx(turn % net.n)
            turn += 1
            next_tx = now + tx_interval
        snap = gather(net)
        text = render(net, snap, width, height)
        if plain:
            if now - last_plain >= plain_every:
                stamp = time.strftime("%H:%M:%S")
                emit(f"----- {stamp} -----\n{text}\n")
                last_plain = now
        else:
            emit(CLEAR + text + "\n")
        left = refresh_s - (time.monotonic() - now)
        end = time.monotonic() + max(0.0, left)
        while time.monotonic() < end and not should_stop():
            time.sleep(0.05)
