"""An asyncio client for the idres binary protocol: a pool of pipelined connections.

    async with BinaryClient("127.0.0.1", 8001, connections=4) as client:
        answer = await client.resolve("88.100.7/ORDER-1")     # the Handle answer as a dict
        answers = await client.resolve_many(["88.100.7/A", "88.100.7/B"])

Each connection carries many requests at once, matched to answers by request id;
calls are spread over the connections round-robin. ``resolve`` returns the answer
map (``responseCode`` 1 with ``values``, or 100 when not found); protocol-level
failures (invalid identifier, server unavailable, protocol error) raise
:class:`RemoteError`. A connection that drops fails its in-flight calls with
``ConnectionError`` and is re-opened by the next call.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from resolver.protocol.frames import (
    DEFAULT_MAX_FRAME,
    MAX_REQUEST_ID,
    OP_AUTH,
    OP_BATCH,
    OP_PING,
    OP_RESOLVE,
    STATUS_NOT_FOUND,
    STATUS_OK,
    FrameReader,
    decode_response,
    encode_request,
)


class RemoteError(Exception):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (status {status})")
        self.status = status
        self.message = message


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = FrameReader(DEFAULT_MAX_FRAME * 64)
        self.transport: Any = None
        self.waiting: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self.ids = itertools.count(1)
        self.lost: BaseException | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionError("connection closed by the server")
        self.transport = None
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError(str(self.lost)))
        self.waiting.clear()

    def data_received(self, data: bytes) -> None:
        payloads, fatal = self.reader.feed(data)
        for payload in payloads:
            rid, status, body = decode_response(payload)
            fut = self.waiting.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result((status, body))
        if fatal is not None and self.transport is not None:
            self.transport.close()

    def send(self, op: int, *args: Any) -> asyncio.Future[tuple[int, Any]]:
        rid = next(self.ids) % (MAX_REQUEST_ID + 1)
        fut: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        self.transport.write(encode_request(rid, op, *args))
        return fut


class BinaryClient:
    """A pool of pipelined connections to one idres binary-protocol port."""

    def __init__(self, host: str, port: int, connections: int = 4,
                 timeout: float | None = 5.0, token: str | None = None) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.host = host
        self.port = port
        self.size = connections
        self.timeout = timeout
        self.token = token    # a reader's: each connection authenticates with it first
        self._conns: list[_Connection | None] = [None] * connections
        self._next = itertools.cycle(range(connections))
        self._opening: dict[int, asyncio.Task[_Connection]] = {}

    async def __aenter__(self) -> BinaryClient:
        await asyncio.gather(*(self._conn(i) for i in range(self.size)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for conn in self._conns:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
        self._conns = [None] * self.size

    async def _conn(self, i: int) -> _Connection:
        conn = self._conns[i]
        if conn is not None and conn.transport is not None:
            return conn
        task = self._opening.get(i)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._open(i))
            self._opening[i] = task
        try:
            return await task
        finally:
            self._opening.pop(i, None)

    async def _open(self, i: int) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        if self.token is not None:
            fut = conn.send(OP_AUTH, self.token)
            try:
                self._check(*(await fut if self.timeout is None
                              else await asyncio.wait_for(fut, self.timeout)))
            except BaseException:
                if conn.transport is not None:
                    conn.transport.close()
                raise
        self._conns[i] = conn
        return conn

    async def call(self, op: int, *args: Any) -> tuple[int, Any]:
        """Send one request and wait for its (status, body)."""
        conn = await self._conn(next(self._next))
        fut = conn.send(op, *args)
        if self.timeout is None:
            return await fut
        return await asyncio.wait_for(fut, self.timeout)

    @staticmethod
    def _check(status: int, body: Any) -> dict[str, Any]:
        if status in (STATUS_OK, STATUS_NOT_FOUND):
            answer: dict[str, Any] = body
            return answer
        message = body.get("message", "") if isinstance(body, dict) else str(body)
        raise RemoteError(status, message)

    async def resolve(self, handle: str) -> dict[str, Any]:
        """The answer for one identifier (responseCode 1 or 100).

        :raises RemoteError: invalid identifier, server unavailable, protocol error.
        """
        return self._check(*await self.call(OP_RESOLVE, handle))

    async def resolve_many(self, handles: list[str]) -> list[dict[str, Any]]:
        """Answers for many identifiers in one request, in order (see docs/protocol.md)."""
        status, body = await self.call(OP_BATCH, handles)
        if status != STATUS_OK:
            self._check(status, body)
        answers: list[dict[str, Any]] = body
        return answers

    async def ping(self) -> None:
        self._check(*await self.call(OP_PING))
