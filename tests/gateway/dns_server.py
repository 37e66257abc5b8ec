"""A tiny authoritative DNS server for tests: real UDP (and TCP) on 127.0.0.1.

Built with dnspython's message API. The zone is a dict ``{name: [ip, ...]}``; A and AAAA
answers are picked by address family. Unknown names get NXDOMAIN. Like a real server it
truncates UDP answers that do not fit the client's buffer (512 bytes, or the EDNS
payload size) and sets TC, and it answers the same questions over TCP, so a resolver
that retries over TCP gets the whole answer.

``silent=True`` makes a server that reads queries and never answers (for timeouts).

    async with DnsServer({"seed.test.": ["127.0.0.2", "::2"]}) as server:
        server.port, server.queries  # bound port; list of (name, rdtype text, "udp"/"tcp")
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from types import TracebackType
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 60


class DnsServer:
    def __init__(self, zone: dict[str, list[str]], *, silent: bool = False) -> None:
        self.zone = {dns.name.from_text(name): addrs for name, addrs in zone.items()}
        self.silent = silent
        self.host = "127.0.0.1"
        self.port = 0
        self.queries: list[tuple[str, str, str]] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> tuple[str, int]:
        return self.host, self.port

    def count(self, name: str) -> int:
        """How many queries (any type, any transport) named `name`."""
        wanted = dns.name.from_text(name).to_text()
        return sum(1 for qname, _, _ in self.queries if qname == wanted)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # UDP on port 0, then TCP on the same port; retry if that TCP port is taken.
        for _ in range(20):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, 0)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError:
                transport.close()
                continue
            self._udp = transport
            self.port = port
            return
        raise OSError("no free port for UDP and TCP together")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._tcp_tasks):
                task.cancel()
            await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
            await self._tcp.wait_closed()

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def answer(self, wire: bytes, transport: str) -> tuple[dns.message.Message, int] | None:
        """(response, client's UDP buffer size) for one query; None: unreadable or silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if not query.question:
            return None
        question = query.question[0]
        self.queries.append(
            (question.name.to_text(), dns.rdatatype.to_text(question.rdtype), transport)
        )
        if self.silent:
            return None
        limit = max(512, query.payload) if query.edns >= 0 else 512
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        addrs = self.zone.get(question.name)
        if addrs is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response, limit
        family = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(question.rdtype)
        picked = [a for a in addrs if ipaddress.ip_address(a).version == family]
        if picked:
            rrset = dns.rrset.from_text_list(
                question.name, TTL, dns.rdataclass.IN, question.rdtype, picked
            )
            response.answer.append(rrset)
        return response, limit

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tcp_tasks.add(task)
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                answered = self.answer(await reader.readexactly(length), "tcp")
                if answered is None:
                    continue
                wire = answered[0].to_wire(max_size=65535)
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tcp_tasks.discard(task)
            writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        answered = self.server.answer(data, "udp")
        if answered is None or self.transport is None:
            return
        response, limit = answered
        try:
            wire = response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            wire = response.to_wire(max_size=limit)
        self.transport.sendto(wire, addr)


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
