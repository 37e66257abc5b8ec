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

`run_view(net, ...)` refreshes about once a second: on a terminal it clears the screen
and redraws (plain ANSI: clear + home); otherwise (or with `plain=True`) it prints a
compact snapshot every `plain_every` seconds. It also drives the traffic: every
`tx_interval` seconds one mesh node (in turn) makes a transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tools.demo.network import PEER_HOSTS, Network

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


def _where(p: dict[str, Any], name: str) -> str:
    if p.get("direction") == "mesh":
        if name == "bridge":
            return "the bridge board itself (UART)"
        hops = p.get("hops")
        if hops is None:
            return "mesh via bridge"
        radio = int(hops) + 1
        return f"mesh via bridge, {radio} hop{'s' if radio != 1 else ''}"
    way = {"out": "we dialled", "in": "it dialled us"}.get(p.get("direction") or "", "")
    return f"{p.get('address')} ({way})" if way else str(p.get("address"))


def _quality(p: dict[str, Any]) -> str:
    if p.get("rssi") is not None:
        snr = p.get("snr")
        tail = f"  SNR {snr:+.1f} dB" if snr is not None else ""
        return f"RSSI {p['rssi']:.0f} dBm{tail}"
    if p.get("latency_ms") is not None:
        return f"ping {p['latency_ms']:.1f} ms"
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


def render(net: Network, snap: dict[str, Any], width: int = 100) -> str:
    """The whole view as text (no escape codes)."""
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
    out.append(
        f"  Internet  : peer1 {PEER_HOSTS[0]} (loragate run), peer2 {PEER_HOSTS[1]} "
        f"(makes transactions),"
    )
    out.append(f"              badpeer {PEER_HOSTS[2]} (misbehaving)")
    out.append(f"  Up {up}; logs in {net.workdir}")
    out.append("")
    known, total = snap["known"], snap["total"]
    pct = 100 * known // total if total else 100
    if snap["converged"]:
        out.append(
            f"mesh discovery: complete, every node knows every other ({known}/{total} peer records)"
        )
    else:
        out.append(
            f"mesh discovery: {known}/{total} peer records known ({pct}%) {bar(known / total)}"
        )
    out.append("")
    peers = snap["peers"]
    internet = [p for p in peers if p.get("direction") != "mesh"]
    mesh = [p for p in peers if p.get("direction") == "mesh"]
    out.append(f"PEERS OF THE GATEWAY: {len(internet)} internet, {len(mesh)} mesh")
    out.append(
        "  (score 0-100 from reliability, performance, behaviour; mesh link quality as the "
        "bridge radio heard it)"
    )
    out.append(f"  {'kind':<9}{'name':<9}{'id':<18}{'where':<34}{'score':>6}  link quality")
    rows = sorted(internet, key=lambda p: str(p.get("address"))) + sorted(
        mesh, key=lambda p: (p.get("hops") if p.get("hops") is not None else 99, _peer_name(net, p))
    )
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
        who = ""
        if target.startswith("node:"):
            nm = net.name_of(target[5:])
            who = f" = {nm}" if nm else ""
        else:
            who = f" = {PEER_ROLES.get(target, 'address')}"
        until = b.get("until")
        left = "permanent" if until is None else f"{_ago(until - snap['now'])} left"
        out.append(f"  {target}{who}: {b['reason']}  ({left}, ban #{b.get('count', 1)})")
        out.append(f"      evidence: {_evidence(b)}")
    if not bans:
        out.append("  (none yet)")
    out.append("")
    air = status.get("airtime") if status else None
    if air and air.get("budget_ms"):
        used, budget = air["used_ms"], air["budget_ms"]
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
    bs = snap.get("bridge") or {}
    drops = (bs.get("counters") or {}).get("dropped_banned")
    if drops is not None:
        out.append(f"  frames from banned nodes dropped at the bridge radio: {drops}")
    m = snap["metrics"]
    rel = status.get("relayed", {}) if status else {}
    out.append("RELAYED by the gateway (objects and inventory items sent):")
    out.append(
        f"  to internet peers: tx {rel.get('tx', 0)}, inv {rel.get('inv', 0)}, "
        f"block {rel.get('block', 0)}"
    )
    out.append(
        f"  to the mesh      : tx {_metric(m, 'relayed_total', kind='mesh_tx')}, "
        f"inv {_metric(m, 'relayed_total', kind='mesh_inv')}, "
        f"block {_metric(m, 'relayed_total', kind='mesh_block')}"
    )
    t = snap["tally"]
    out.append(
        f"  end to end: up (mesh -> internet) {t.up()}/{len(t.made_mesh)} transactions, "
        f"down (internet -> mesh) {t.down()}/{len(t.made_inet)}"
    )
    out.append("")
    out.append("Ctrl-C stops everything.")
    return "\n".join(line[:width] if len(line) > width else line for line in out)


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
        text = render(net, snap, width)
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
