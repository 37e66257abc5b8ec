"""The local control socket: how the CLI talks to a running gateway.

A Unix domain socket at ``<data dir>/control.sock``, mode 0600 (only the gateway's user
may connect; whoever can connect can ban and unban). The socket is bound under a
``0o177`` umask and chmod-ed to 0600 before ``listen``, so it is never reachable with
wider permissions.

Protocol: one JSON object per line each way (UTF-8, ``\\n``-terminated). A client may send
several requests on one connection; each gets one answer, in order::

    -> {"cmd": "peers" | "bans" | "status" | "ban" | "unban" | "clearbanned"
              | "disconnect" | "connect", "args": {...}}
    <- {"ok": true, "result": ...}
    <- {"ok": false, "error": "one line"}

``args``: ``ban`` takes ``target`` (str), ``duration_s`` (number > 0, or null for a
permanent ban) and optional ``reason`` (str); ``unban`` takes ``target``;
``disconnect`` takes ``target`` (a node id or IP:PORT); ``connect`` takes ``address``
(IP:PORT) and optional ``remove`` (bool: stop keeping it connected); the others take
none (``args`` may be left out). Unknown keys are an error.

Limits: a request line longer than ``MAX_REQUEST`` bytes gets an error and the
connection is closed (nothing larger is ever buffered); a request not complete within
``REQUEST_TIMEOUT_S`` likewise (slow or idle clients cannot hold a slot); at most
``MAX_CLIENTS`` connections at once (more are told so and closed). A malformed request,
or a view that raises, produces an error answer; it never stops the server.

Start-up: if the socket path exists and a gateway answers on it, ``start`` refuses
(``ControlError``: two gateways must not share a data dir); a stale socket left by a
killed gateway is removed; any other file there is left alone and refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

from loragate.view import GatewayView, ViewError

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
REQUEST_TIMEOUT_S = 10.0
MAX_CLIENTS = 32
CLIENT_TIMEOUT_S = 15.0
PROBE_TIMEOUT_S = 1.0
COMMANDS = ("peers", "bans", "status", "ban", "unban", "clearbanned", "disconnect", "connect")
MAX_SOCKET_PATH = 107  # bytes: sun_path is 108 on Linux, including the final NUL


class ControlError(Exception):
    """A control-socket problem; str(error) is one line for the user."""


class GatewayNotRunning(ControlError):
    """Nothing answers at the socket path (no file, or a stale socket)."""


class RequestError(Exception):
    """The request is malformed; str(error) is returned to the client."""


_ARGS: dict[str, dict[str, bool]] = {  # command -> {argument: required}
    "peers": {},
    "bans": {},
    "status": {},
    "ban": {"target": True, "duration_s": True, "reason": False},
    "unban": {"target": True},
    "clearbanned": {},
    "disconnect": {"target": True},
    "connect": {"address": True, "remove": False},
}


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """Validate one request line; returns (cmd, args) or raises RequestError."""
    try:
        req = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"request is not JSON: {exc}") from None
    if not isinstance(req, dict):
        raise RequestError("request must be a JSON object")
    extra = set(req) - {"cmd", "args"}
    if extra:
        raise RequestError(f"unknown request keys: {sorted(extra)}")
    cmd = req.get("cmd")
    if not isinstance(cmd, str) or cmd not in _ARGS:
        raise RequestError(f"unknown cmd {cmd!r}; one of: {', '.join(COMMANDS)}")
    args = req.get("args", {})
    if not isinstance(args, dict):
        raise RequestError("args must be a JSON object")
    spec = _ARGS[cmd]
    unknown = set(args) - set(spec)
    if unknown:
        raise RequestError(f"{cmd}: unknown args {sorted(unknown)}")
    missing = [k for k, required in spec.items() if required and k not in args]
    if missing:
        raise RequestError(f"{cmd}: missing args {missing}")
    if "target" in args and not isinstance(args["target"], str):
        raise RequestError(f"{cmd}: target must be a string")
    if "reason" in args and not isinstance(args["reason"], str):
        raise RequestError(f"{cmd}: reason must be a string")
    if "address" in args and not isinstance(args["address"], str):
        raise RequestError(f"{cmd}: address must be a string")
    if "remove" in args and not isinstance(args["remove"], bool):
        raise RequestError(f"{cmd}: remove must be true or false")
    if "duration_s" in args:
        d = args["duration_s"]
        if d is not None and (isinstance(d, bool) or not isinstance(d, int | float) or d <= 0):
            raise RequestError(f"{cmd}: duration_s must be a number > 0 or null (permanent)")
    return cmd, args


async def dispatch(view: GatewayView, cmd: str, args: dict[str, Any]) -> Any:
    if cmd == "peers":
        return await view.peers()
    if cmd == "bans":
        return await view.bans()
    if cmd == "status":
        return await view.status()
    if cmd == "ban":
        d = args["duration_s"]
        return await view.ban(
            args["target"], None if d is None else float(d), args.get("reason", "manual")
        )
    if cmd == "unban":
        return await view.unban(args["target"])
    if cmd == "clearbanned":
        return await view.clear_bans()
    if cmd == "disconnect":
        return await view.disconnect(args["target"])
    if cmd == "connect":
        return await view.connect(args["address"], bool(args.get("remove", False)))
    raise RequestError(f"unknown cmd {cmd!r}")  # pragma: no cover - parse_request checks


def _encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":"), allow_nan=False).encode() + b"\n"


async def answer(view: GatewayView, line: bytes) -> bytes:
    """The response line for one request line (never raises, except CancelledError)."""
    try:
        cmd, args = parse_request(line)
        result = await dispatch(view, cmd, args)
        return _encode({"ok": True, "result": result})
    except (RequestError, ViewError, ValueError) as exc:
        return _encode({"ok": False, "error": _one_line(str(exc))})
    except Exception as exc:
        log.exception("control request failed")
        return _encode({"ok": False, "error": _one_line(f"internal error: {exc!r}")})


def _too_long(path: Path) -> bool:
    return len(os.fsencode(path)) > MAX_SOCKET_PATH


async def is_running(path: str | Path) -> bool:
    """True if something accepts connections on the Unix socket at path."""
    if _too_long(Path(path)):
        return False
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            _, writer = await asyncio.open_unix_connection(str(path))
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class ControlServer:
    def __init__(
        self,
        view: GatewayView,
        path: str | Path,
        *,
        max_request: int = MAX_REQUEST,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.view = view
        self.path = Path(path)
        self.max_request = max_request
        self.request_timeout_s = request_timeout_s
        self.max_clients = max_clients
        self.requests = 0
        self.errors = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._inode: int | None = None

    async def start(self) -> None:
        path = self.path
        if _too_long(path):
            raise ControlError(
                f"control socket path {path} is longer than {MAX_SOCKET_PATH} bytes, "
                "the limit of a Unix socket: use a shorter data dir"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ControlError(f"cannot create {path.parent}: {exc.strerror}") from None
        if path.exists() or path.is_symlink():
            if await is_running(path):
                raise ControlError(f"a gateway is already running with control socket {path}")
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise ControlError(f"{path} exists and is not a socket; remove it")
            log.info("removing stale control socket %s", path)
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)
            try:
                sock.bind(str(path))
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
            self._inode = path.stat().st_ino
            self._server = await asyncio.start_unix_server(
                self._client, sock=sock, limit=self.max_request + 1
            )
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot listen on {path}: {exc.strerror or exc}") from None
        log.info("control socket listening at %s", path)

    @property
    def clients(self) -> int:
        """Connections being served now (at most max_clients get an answer)."""
        return len(self._handlers)

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()  # only our own socket, not a successor's

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if len(self._handlers) > self.max_clients:
                writer.write(_encode({"ok": False, "error": "too many control clients"}))
                await writer.drain()
                return
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass  # client went away
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        while True:
            try:
                async with asyncio.timeout(self.request_timeout_s):
                    line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    self.errors += 1
                    await send(_encode({"ok": False, "error": "request must end with a newline"}))
                return
            except asyncio.LimitOverrunError:
                self.errors += 1
                await send(
                    _encode({"ok": False, "error": f"request longer than {self.max_request} bytes"})
                )
                return
            except TimeoutError:
                self.errors += 1
                await send(
                    _encode(
                        {
                            "ok": False,
                            "error": f"no complete request within {self.request_timeout_s:g} s",
                        }
                    )
                )
                return
            if not line.strip():
                continue
            self.requests += 1
            response = await answer(self.view, line)
            if response.startswith(b'{"ok":false'):
                self.errors += 1
            await send(response)


async def call(path: str | Path, cmd: str, **args: Any) -> Any:
    """Send one request to the gateway at ``path``; its result, or ControlError.

    Raises ``GatewayNotRunning`` when no gateway listens there (missing or stale socket).
    """
    path = Path(path)
    if _too_long(path):  # no gateway can listen there (ControlServer.start refuses)
        raise GatewayNotRunning(f"no gateway can listen at {path} (path too long)")
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S * 5):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=64 * 2**20)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        raise GatewayNotRunning(f"no gateway is running at {path}") from None
    except TimeoutError:
        raise ControlError(f"the gateway at {path} does not accept connections") from None
    except OSError as exc:
        raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            writer.write(_encode({"cmd": cmd, "args": args}))
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        raise ControlError(
            f"the gateway at {path} did not answer within {CLIENT_TIMEOUT_S:g} s"
        ) from None
    except (OSError, ValueError) as exc:
        raise ControlError(f"control socket {path}: {exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    try:
        msg = json.loads(line)
        ok = msg["ok"]
    except (ValueError, KeyError, TypeError):
        raise ControlError(f"the gateway at {path} sent a malformed answer") from None
    if not ok:
        raise ControlError(str(msg.get("error", "unknown error")))
    return msg.get("result")
