"""The binary-protocol server: length-prefixed msgpack frames over TCP, pipelined.

Per connection: every complete frame in a packet is decoded; a ``resolve`` whose
identifier text is cached is answered at once from the kept msgpack bytes; misses
and batches run as tasks and answer when ready (so answers may come out of order,
matched by request id). Replies produced while handling one packet leave in one
write. A malformed payload gets an error answer and the connection stays; an
oversized frame gets an error answer and the connection is closed, since the
stream cannot be trusted after it. The connection is read only while its client
keeps up (``resolver/connections.py``): frames wait, undecoded, while its answers are
not read or too many are in progress.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import msgpack

from resolver import reply
from resolver.authorized import resolve_as
from resolver.connections import MAX_PENDING, TrackedProtocol
from resolver.core.errors import AuthenticationFailed, IdresError, ProtocolError
from resolver.core.identifier import Identifier, parse
from resolver.lookup import Resolver
from resolver.protocol.frames import (
    OP_AUTH,
    OP_BATCH,
    OP_PING,
    OP_RESOLVE,
    STATUS_OK,
    FrameReader,
    Request,
    decode_request,
    encode_batch,
    encode_response,
)
from resolver.reply import Form, Reply
from resolver.sharing import ReadLog
from resolver.usage import cached

log = logging.getLogger("idres.binary")
_NIL = b"\xc0"


def _frame(request_id: int, rep: Reply) -> bytes:
    return encode_response(request_id, rep.wire, rep.msgpack())


class BinaryContext:
    def __init__(self, resolver: Resolver, max_frame: int,
                 read_log: ReadLog | None = None) -> None:
        self.resolver = resolver
        self.read_log = read_log      # (party, reads): the registry's read log, if mounted
        self.max_frame = max_frame
        self.connections: set[BinaryProtocol] = set()
        self.requests = 0
        self.errors = 0


class BinaryProtocol(TrackedProtocol):
    def __init__(self, ctx: BinaryContext) -> None:
        super().__init__(ctx.connections)
        self.ctx = ctx
        self.reader = FrameReader(ctx.max_frame)
        self.backlog: deque[bytes] = deque()  # payloads read, not yet handled
        self.fatal: ProtocolError | None = None
        self.inflight = 0
        self.token: str | None = None   # a reader's, after an ``auth`` (docs/protocol.md)

    def busy(self) -> bool:
        return self.inflight >= MAX_PENDING

    def on_writable(self) -> None:
        self._run()

    def data_received(self, data: bytes) -> None:
        if self.fatal is not None:
            return
        payloads, self.fatal = self.reader.feed(data)
        self.backlog.extend(payloads)
        self._run()
        self.sync_reading()

    def _run(self) -> None:
        """Handle what was read, while the client keeps up (connections.py); replies made
        for one batch of frames leave in one write."""
        lookup, usage = self.ctx.resolver.coalescer.lookup, self.ctx.resolver.usage
        out = []
        while self.backlog and self.can_work():
            payload = self.backlog.popleft()
            try:
                req = decode_request(payload)
            except ProtocolError as exc:
                self.ctx.errors += 1
                out.append(_frame(exc.request_id, reply.error(exc)))
                continue
            self.ctx.requests += 1
            if req.op == OP_RESOLVE:  # the hot one
                hit = lookup(Form.MSGPACK, req.args[0]) if self.token is None else \
                    self._kept(req.args[0])
                if hit is not None:
                    usage.count(req.args[0], "binary", cached(hit))
                    out.append(encode_response(req.request_id, hit[0], hit[1]))
                    continue
            elif req.op == OP_PING:
                out.append(encode_response(req.request_id, STATUS_OK, _NIL))
                continue
            self._spawn(req)
        fatal = self.fatal if not self.backlog else None
        if fatal is not None:
            out.append(_frame(0, reply.error(fatal)))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if fatal is not None and self.transport is not None:
            self.ctx.errors += 1
            self.transport.close()

    def _kept(self, text: str) -> tuple[int, bytes] | None:
        """A reader's answer kept with the cached record (resolver/authorized.py)."""
        reader = self.ctx.resolver.sharing.reader(self.token or "")
        if reader is None:
            return None
        kept = self.ctx.resolver.coalescer.lookup(Form.MSGPACK, (text, reader[0].party,
                                                                 reader[1]))
        if kept is None or (kept[1] and not self.ctx.resolver.sharing.no_read_logs()):
            return None
        encoded: tuple[int, bytes] = kept[0]
        return encoded

    async def _as_reader(self, req: Request) -> bytes:
        """``auth``, or a resolution or batch of an authenticated connection."""
        resolver = self.ctx.resolver
        token = req.args[0] if req.op == OP_AUTH else self.token or ""
        await resolver.sharing.ready()  # network op (when it must be loaded)
        reader = resolver.sharing.reader(token)
        if reader is None:
            if req.op == OP_AUTH:
                raise AuthenticationFailed("not a reader's token, or revoked, or expired (an "
                                           "operator reads over HTTP)")
            raise AuthenticationFailed("the connection's reader token is no longer valid")
        view, generation = reader
        if req.op == OP_AUTH:
            self.token = token
            return encode_response(req.request_id, STATUS_OK, msgpack.packb(
                {"reader": view.party.partition(":")[2]}))
        reads: list[tuple[str, list[str]]] = []
        if req.op == OP_BATCH:
            parts, reads = await resolver.resolve_batch_as(req.args[0], Form.MSGPACK, view,
                                                           generation)  # network op
            data = encode_batch(req.request_id, [b for _, b in parts])
        else:
            ident = parse(req.args[0])
            (wire, body), types, _ = await resolve_as(
                resolver, ident, req.args[0], req.args[0], Form.MSGPACK, view,
                generation)  # network op
            reads = [(ident.key, types)] if types else []
            data = encode_response(req.request_id, wire, body)
        if reads and self.ctx.read_log is not None and not resolver.sharing.no_read_logs():
            await self.ctx.read_log(view.party, reads)  # network op
        return data

    def _spawn(self, req: Request) -> None:
        self.inflight += 1
        asyncio.get_running_loop().create_task(self._slow(req))

    async def _slow(self, req: Request) -> None:
        resolver = self.ctx.resolver
        ident: Identifier | None = None
        requested = req.args[0] if req.op == OP_RESOLVE else None
        try:
            if req.op == OP_AUTH or self.token is not None:
                data = await self._as_reader(req)  # network op
            elif req.op == OP_BATCH:
                bodies = await resolver.resolve_batch(req.args[0], Form.MSGPACK)  # network op
                data = encode_batch(req.request_id, [b for _, b in bodies])
            else:
                ident = parse(req.args[0])
                resolution = await resolver.resolve(ident, via="binary")  # network op
                wire, body = resolver.encoded(resolution, Form.MSGPACK, req.args[0])
                data = encode_response(req.request_id, wire, body)
        except IdresError as exc:
            key = ident.key if ident is not None else None
            data = _frame(req.request_id, resolver.reply_for(requested, exc, key))
        self.inflight -= 1
        if self.transport is not None:
            self.transport.write(data)
            self._run()
            self.sync_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
