"""DNS over UDP and TCP on one loopback port, around an async answering function.

UDP answers larger than the client's buffer (512 bytes, or its EDNS payload size) are cut and
carry the TC bit, so the client asks again over TCP and gets the whole answer, as RFC 1035/7766
prescribe. Each datagram is answered in a task of its own: a slow answer never holds up others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.rcode

log = logging.getLogger(__name__)

#: How long a TCP connection may stay idle between queries (CoreDNS: 10 s read timeout).
TCP_IDLE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Request:
    """How a query arrived: ``proto`` is "udp" or "tcp"; ``family`` 1 (IPv4) or 2 (IPv6)."""

    proto: str
    client: tuple[str, int]
    family: int = 1


Answerer = Callable[[dns.message.Message, Request], Awaitable[dns.message.Message]]


class DnsServer:
    """``await DnsServer(answer).start()`` listens on 127.0.0.1 at a free port (UDP and TCP)."""

    def __init__(self, answer: Answerer, host: str = "127.0.0.1") -> None:
        self._answer = answer
        self._host = host
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.address: tuple[str, int] = (host, 0)

    async def start(self, attempts: int = 20) -> tuple[str, int]:
        """Bind UDP and TCP to the same free port; return ``(host, port)``."""
        loop = asyncio.get_running_loop()
        for _ in range(attempts):
            udp, _protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self._host, 0), family=socket.AF_INET
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self._host, port)
            except OSError:
                udp.close()
                continue
            self._udp = udp
            self.address = (self._host, port)
            return self.address
        raise OSError(f"no port free for both UDP and TCP on {self._host} after {attempts} tries")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._writers):
                writer.close()
            await self._tcp.wait_closed()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- UDP -----------------------------------------------------------------------------------

    def _datagram(self, data: bytes, client: tuple[str, int]) -> None:
        task = asyncio.create_task(self._answer_datagram(data, client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_datagram(self, data: bytes, client: tuple[str, int]) -> None:
        wire = await self._respond(data, Request("udp", client[:2]))
        if wire is not None and self._udp is not None:
            self._udp.sendto(wire, client)

    # -- TCP -----------------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = writer.get_extra_info("peername")[:2]
        self._writers.add(writer)
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                (length,) = struct.unpack("!H", header)
                data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                wire = await self._respond(data, Request("tcp", client))
                if wire is None:
                    return
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    # -- both ----------------------------------------------------------------------------------

    async def _respond(self, data: bytes, request: Request) -> bytes | None:
        """The wire answer to ``data``; None to drop it (not even a header to answer)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return _formerr(data)
        try:
            response = await self._answer(query, request)
        except Exception:
            log.exception("answering %s over %s failed", query.question, request.proto)
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
        if request.proto == "tcp":
            return response.to_wire(max_size=65535)
        limit = max(512, query.payload) if query.edns >= 0 else 512
        return response.to_wire(max_size=limit, prefer_truncation=True)


def _formerr(data: bytes) -> bytes | None:
    """A FORMERR header answering an unparsable query, or None if it has no header at all."""
    if len(data) < 12:
        return None
    (query_id,) = struct.unpack("!H", data[:2])
    response = dns.message.Message(id=query_id)
    response.flags = dns.flags.QR
    response.set_rcode(dns.rcode.FORMERR)
    return response.to_wire()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._server._datagram(data, addr)
