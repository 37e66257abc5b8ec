"""What the CLI can ask a gateway, and the answer for a gateway that is not running.

``GatewayView`` is the interface the control socket serves (``control.py``).
``liveview.RunningGatewayView`` implements it for a running gateway (over its peer
manager); ``StoppedGatewayView`` here implements it by reading the gateway's SQLite
database directly, so every CLI command also works when the gateway is down. Both
score with the configured weights (``[score]``), so a peer shows the same score with
the gateway stopped as it did while it ran.

Results are plain JSON-able dicts (the ``TypedDict`` s below document their keys):
times are Unix seconds (float), ``None`` means "unknown / not applicable".

Writes on a stopped gateway: ``ban``/``unban`` go straight into the ban tables through
``BanManager`` + ``Store`` (the same code path the running gateway uses, so durations
grow on repeat bans exactly as they would live). A gateway reads the ban tables when it
starts (``Store.load_bans`` + ``load_ban_counts`` -> ``BanManager.restore``), so such a
ban takes effect at the next start. The CLI uses this view only while it holds the data
dir's lock (``datadir``), which a gateway holds from before that read until it exits, so
an offline write never falls after a starting gateway's read. The database is in WAL
mode: reading it while a gateway runs is safe.
"""

from __future__ import annotations

import asyncio
import heapq
import importlib.metadata
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NotRequired, Protocol, TypedDict, TypeVar

from loragate import keys
from loragate.bans import Ban, BanManager, BanTarget, Evidence, parse_target, policy_from
from loragate.config import GatewayConfig
from loragate.scoring import PeerScore, node_key, weights_from
from loragate.store import AddrRow, Store, StoreError

EVIDENCE_PER_BAN = 8  # newest evidence rows returned with each ban
STOPPED_PEER_LIMIT = 1000  # known addresses listed for a stopped gateway (best first)

_T = TypeVar("_T")


class ViewError(Exception):
    """The request cannot be done; str(error) is one line for the user."""


class PeerInfo(TypedDict):
    node_id: str | None  # 16 hex digits
    address: str | None  # "host:port"; None for mesh peers
    kind: str  # full | light | gateway | mesh
    # "connected" (TCP), "heard" (a mesh node heard through the bridge), or for a
    # stopped gateway's address book "tried" / "new"
    state: str
    direction: str | None  # "in" | "out" | "mesh"; None when not connected
    score: float | None  # 0..100
    latency_ms: float | None
    rssi: float | None  # the bridge radio's link to a mesh node: direct neighbours only
    snr: float | None
    hops: int | None  # mesh: relays between the node and the bridge (0: direct neighbour)
    connected_since: float | None
    last_seen: float | None
    bytes_in: int
    bytes_out: int
    group: str | None  # address group (e.g. "ipv4 127.3.0.0/16", "mesh <bridge id>")
    # misbehaviour points now (the node id's and its address's, the larger), and the
    # threshold at which a ban follows: how close the peer is to one
    points: NotRequired[float]
    ban_threshold: NotRequired[int]
    manual: NotRequired[bool]  # a `connect` peer, kept connected


class EvidenceInfo(TypedDict):
    time: float
    misbehaviour: str
    points: int
    msg_type: int | None
    reason: str
    frame_sha256: str | None  # hex


class BanInfo(TypedDict):
    target: str  # "node:<16 hex>", an IP or a CIDR subnet
    reason: str
    since: float
    until: float | None  # None: permanent
    count: int  # this is the count-th ban of the target
    manual: bool
    evidence: list[EvidenceInfo]  # newest first, at most EVIDENCE_PER_BAN


class UnbanInfo(TypedDict):
    target: str
    removed: bool  # False: there was no ban on that target


class AirtimeInfo(TypedDict):
    used_ms: float
    budget_ms: float
    window_s: float


class StatusInfo(TypedDict):
    state: str  # "running" | "stopped"
    node_id: str | None
    version: str
    uptime_s: float | None
    listen: str  # "host:port"
    peers_total: int
    peers_by_kind: dict[str, int]
    peers_by_direction: dict[str, int]
    addrman_new: int
    addrman_tried: int
    bans_active: int
    relayed: dict[str, int]  # e.g. {"tx": 10, "block": 2, "inv": 40}
    airtime: AirtimeInfo | None  # only with a bridge attached
    database: str
    data_dir: NotRequired[str]
    outbound: NotRequired[int]  # regular outbound connections, against outbound_target
    outbound_target: NotRequired[int]
    inbound: NotRequired[int]
    inbound_cap: NotRequired[int]
    manual_peers: NotRequired[list[str]]
    ban_threshold: NotRequired[int]
    # The bridge board's link (None: no serial port configured): state "up"/"down" and
    # since when, last HELLO, board id and firmware, region, frequency_hz, sf,
    # bandwidth_hz, coding_rate, tx_power_dbm, airtime used / budget / left (ms),
    # budget_exhausted, and the downlink's queued / offered / refused counts.
    bridge: NotRequired[dict[str, Any] | None]
    metrics_url: NotRequired[str | None]


class CountInfo(TypedDict):
    count: int  # how many bans were lifted / connections dropped


class ConnectInfo(TypedDict):
    address: str
    added: bool  # False: it was a manual peer already (connect) or was not one (remove)


class GatewayView(Protocol):
    """What the CLI may ask; served over the control socket (``control.py``).

    ``ban``: ``duration_s=None`` means permanent. ``target`` is ``node:HEX``, 16 hex
    digits, an IP or a CIDR subnet (``bans.parse_target``); a bad one raises
    ``ViewError`` (or ``ValueError``), which the control socket returns as an error.
    """

    async def peers(self) -> list[PeerInfo]: ...

    async def bans(self) -> list[BanInfo]: ...

    async def status(self) -> StatusInfo: ...

    async def ban(self, target: str, duration_s: float | None, reason: str) -> BanInfo: ...

    async def unban(self, target: str) -> UnbanInfo: ...

    async def clear_bans(self) -> CountInfo: ...

    async def disconnect(self, target: str) -> CountInfo: ...

    async def connect(self, address: str, remove: bool) -> ConnectInfo: ...


def version() -> str:
    try:
        return importlib.metadata.version("lorachain-peers")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


def evidence_info(ev: Evidence) -> EvidenceInfo:
    return EvidenceInfo(
        time=ev.time,
        misbehaviour=ev.misbehaviour,
        points=ev.points,
        msg_type=ev.msg_type,
        reason=ev.reason,
        frame_sha256=None if ev.frame_sha256 is None else ev.frame_sha256.hex(),
    )


def ban_info(ban: Ban, evidence: list[Evidence]) -> BanInfo:
    return BanInfo(
        target=str(ban.target),
        reason=ban.reason,
        since=ban.created,
        until=ban.until,
        count=ban.count,
        manual=ban.manual,
        evidence=[evidence_info(e) for e in evidence[:EVIDENCE_PER_BAN]],
    )


def check_target(text: str) -> str:
    """Canonical form of a ban target; ViewError (one line) if it is not one."""
    try:
        return str(parse_target(text))
    except ValueError:
        raise ViewError(f"not a node id (16 hex digits), IP address or subnet: {text!r}") from None


class StoppedGatewayView:
    """``GatewayView`` for a gateway that is not running: reads and writes its database.

    Each call opens the database on a worker thread, does its work and closes it
    (``Store`` objects are bound to their thread), so the event loop never blocks.
    Reads raise ``ViewError`` when there is no database yet (wrong ``--data-dir``?);
    ``ban`` creates it, so a target can be banned before the first start.
    """

    def __init__(self, cfg: GatewayConfig, *, peer_limit: int = STOPPED_PEER_LIMIT) -> None:
        self.cfg = cfg
        self.peer_limit = peer_limit

    @property
    def db_path(self) -> Path:
        return self.cfg.db_path

    def _open(self, create: bool) -> Store:
        path = self.db_path
        if not create and not path.exists():
            raise ViewError(
                f"no gateway database at {path} (has a gateway run with this data dir? "
                "see --data-dir / LORAGATE_DATA_DIR)"
            )
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise ViewError(f"cannot create data dir {path.parent}: {exc.strerror}") from None
        try:
            return Store(path)
        except StoreError as exc:
            raise ViewError(str(exc).replace("\n", " ")) from None
        except OSError as exc:
            raise ViewError(f"cannot open database {path}: {exc.strerror}") from None

    def _with_store(self, create: bool, fn: Callable[[Store], _T]) -> _T:
        store = self._open(create)
        try:
            return fn(store)
        except StoreError as exc:
            raise ViewError(str(exc).replace("\n", " ")) from None
        finally:
            store.close()

    # ---- reads -------------------------------------------------------------------

    async def peers(self) -> list[PeerInfo]:
        return await asyncio.to_thread(self._with_store, False, self._peers)

    def _peers(self, store: Store) -> list[PeerInfo]:
        stats = store.load_peer_stats()
        weights = weights_from(self.cfg.score)

        def rank(r: AddrRow) -> tuple[bool, float, float]:
            return (r.in_tried, r.last_success, r.last_seen)

        rows = heapq.nlargest(self.peer_limit, store.load_addresses(), key=rank)
        now = time.time()
        out: list[PeerInfo] = []
        for r in rows:
            node = r.node_id.hex() if r.node_id else None
            data = stats.get(node_key(r.node_id)) if r.node_id else None
            if data is None:
                data = stats.get(f"{r.host}:{r.port}")
            score = latency = rssi = snr = None
            if data is not None:
                try:
                    ps = PeerScore.from_dict(data, weights)
                    score = round(ps.score(now), 1)
                    latency, rssi, snr = ps.latency_ms, ps.rssi, ps.snr
                except (TypeError, ValueError):
                    pass  # stats written by another version: show the address anyway
            out.append(
                PeerInfo(
                    node_id=node,
                    address=_join(r.host, r.port),
                    kind=r.kind,
                    state="tried" if r.in_tried else "new",
                    direction=None,
                    score=score,
                    latency_ms=latency,
                    rssi=rssi,
                    snr=snr,
                    hops=None,
                    connected_since=None,
                    last_seen=r.last_seen or None,
                    bytes_in=0,
                    bytes_out=0,
                    group=None,
                )
            )
        return out

    async def bans(self) -> list[BanInfo]:
        return await asyncio.to_thread(self._with_store, False, self._bans)

    @staticmethod
    def _active(store: Store, now: float) -> list[Ban]:
        bans = [b for b in store.load_bans() if b.active(now)]
        bans.sort(key=lambda b: b.created, reverse=True)
        return bans

    def _bans(self, store: Store) -> list[BanInfo]:
        return [
            ban_info(b, store.load_evidence(b.target, EVIDENCE_PER_BAN))
            for b in self._active(store, time.time())
        ]

    async def status(self) -> StatusInfo:
        return await asyncio.to_thread(self._with_store, False, self._status)

    def _status(self, store: Store) -> StatusInfo:
        new = tried = 0
        for r in store.load_addresses():
            if r.in_tried:
                tried += 1
            else:
                new += 1
        try:
            node_id: str | None = keys.load_identity(self.cfg.key_path).hex_id()
        except keys.KeyFileError:
            node_id = None
        return StatusInfo(
            state="stopped",
            node_id=node_id,
            version=version(),
            uptime_s=None,
            listen=_join(self.cfg.listen_host, self.cfg.listen_port),
            peers_total=0,
            peers_by_kind={},
            peers_by_direction={},
            addrman_new=new,
            addrman_tried=tried,
            bans_active=len(self._active(store, time.time())),
            relayed={},
            airtime=None,
            database=str(self.db_path),
        )

    # ---- writes ------------------------------------------------------------------

    def _manager(self, store: Store) -> BanManager:
        bm = BanManager(policy_from(self.cfg.bans, self.cfg.peer_prefix), sink=store)
        bm.restore(store.load_bans(), store.load_ban_counts())
        return bm

    async def ban(self, target: str, duration_s: float | None, reason: str) -> BanInfo:
        parsed = parse_ban_target(target)
        check_duration(duration_s)

        def run(store: Store) -> BanInfo:
            ban = self._manager(store).ban(
                parsed,
                duration_s=duration_s,
                permanent=duration_s is None,
                reason=reason or "manual",
            )
            return ban_info(ban, store.load_evidence(parsed, EVIDENCE_PER_BAN))

        return await asyncio.to_thread(self._with_store, True, run)

    async def unban(self, target: str) -> UnbanInfo:
        parsed = parse_ban_target(target)

        def run(store: Store) -> UnbanInfo:
            return UnbanInfo(target=str(parsed), removed=self._manager(store).unban(parsed))

        return await asyncio.to_thread(self._with_store, False, run)

    async def clear_bans(self) -> CountInfo:
        def run(store: Store) -> CountInfo:
            bm = self._manager(store)
            targets = [b.target for b in bm.bans()]
            return CountInfo(count=sum(1 for t in targets if bm.unban(t)))

        return await asyncio.to_thread(self._with_store, False, run)

    async def disconnect(self, target: str) -> CountInfo:
        raise ViewError("the gateway is not running: there is no connection to drop")

    async def connect(self, address: str, remove: bool) -> ConnectInfo:
        raise ViewError("the gateway is not running: add the peer to the `connect` setting instead")


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_ban_target(text: str) -> BanTarget:
    """A ban target from user input; ViewError (one line) if it is not one."""
    return parse_target(check_target(text))


def check_duration(duration_s: float | None) -> None:
    if duration_s is not None and not duration_s > 0:
        raise ViewError("ban duration must be positive")


def summarize_evidence(evidence: list[EvidenceInfo]) -> str:
    """'2x bad_tag, 1x replay' (most frequent first)."""
    counts = Counter(e["misbehaviour"] for e in evidence)
    return ", ".join(f"{n}x {kind}" for kind, n in counts.most_common())
