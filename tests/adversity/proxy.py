"""A TCP proxy that can cut the link between idres and PostgreSQL (after asyncpg's
TCPFuzzingProxy idea): real sockets, a real outage."""

from __future__ import annotations

import asyncio
import threading


class TcpProxy:
    """``cut()`` drops every connection (both ends see it) and refuses new ones;
    ``blackhole()`` silently stops forwarding, keeping every connection open, as a
    network partition does (nobody notices until a timeout); ``restore()`` ends both."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._cut = False
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()  # a blackhole holds the bytes here
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        def go() -> None:
            self._cut = True
            for w in list(self._writers):
                w.transport.abort()
        self._loop.call_soon_threadsafe(go)

    def blackhole(self) -> None:
        """Stop forwarding, silently: connections stay open, bytes stop moving."""
        def go() -> None:
            assert self._flowing is not None
            self._flowing.clear()
        self._loop.call_soon_threadsafe(go)

    def restore(self) -> None:
        def go() -> None:
            assert self._flowing is not None
            self._cut = False
            self._flowing.set()
        self._loop.call_soon_threadsafe(go)

    def close(self) -> None:
        def go() -> None:
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            self._loop.stop()
        self._loop.call_soon_threadsafe(go)
        self._thread.join(5)
        self._loop.run_until_complete(self._server.wait_closed())
        self._loop.close()
