"""Misbehaving servers for the fault tests: raw asyncio TCP servers that send exact bytes.

A :class:`RawUpstream` runs one ``behave(conn)`` coroutine per accepted connection;
:class:`RawConn` reads requests off it and writes bytes, closes (FIN) or resets (RST)
it. The server counts the connections it accepted and keeps every request head it read,
so a test can tell a retry or a reused connection from a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable


class RawConn:
    """One accepted connection, as a behaviour sees it."""

    def __init__(
        self, server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.number = server.accepted  # 1 for the first connection the server accepted

    async def request(self) -> bytes | None:
        """The next request's head (its Content-Length body is read too); None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                await self.reader.readexactly(int(value))
        self.server.requests.append(head)
        return head

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_closed(self) -> None:
        """Wait until the peer closes (or resets) the connection."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass

    def close(self) -> None:
        """A clean close: FIN."""
        self.writer.close()

    def reset(self) -> None:
        """An abortive close: RST (SO_LINGER with a zero timeout)."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Behaviour = Callable[[RawConn], Awaitable[None]]


class RawUpstream:
    """A TCP server on 127.0.0.1 whose every connection runs ``behave``."""

    def __init__(self, behave: Behaviour) -> None:
        self.behave = behave
        self.accepted = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[object]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def open(self) -> int:
        """Connections accepted and not yet closed."""
        return len(self._writers)

    def methods(self) -> list[str]:
        return [head.split(b" ", 1)[0].decode() for head in self.requests]

    async def start(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.behave(RawConn(self, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()


def response(body: bytes = b"ok", *, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    """A well-formed keep-alive response with a Content-Length."""
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body
    )


async def serve_ok(conn: RawConn) -> None:
    """A healthy keep-alive upstream: 200 ``ok`` to every request."""
    while await conn.request() is not None:
        await conn.send(response())
