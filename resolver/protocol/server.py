"""The binary-protocol server: length-prefixed msgpack frames over TCP, pipelined.

Per connection: every complete frame in a packet is decoded; a ``resolve`` whose
identifier text is cached is answered at once from the kept msgpack bytes; misses
and batches run as tasks and answer when ready (so answers may come out of order,
matched by request id). Replies produced while handling one packet leave in one
write. A malformed payload gets an error answer and the connection stays; an
oversized frame gets an error answer and the connection is closed, since the
stream cannot be trusted after it.
"""

from __future__ import annotations

import asyncio
import logging

import msgpack

from resolver.connections import TrackedProtocol
from resolver.core.errors import IdresError, Referral, ServiceUnavailable
from resolver.core.identifier import parse
from resolver.lookup import Resolver, referral_answer
from resolver.protocol.frames import (
    OP_BATCH,
    OP_PING,
    STATUS_NOT_FOUND,
    STATUS_OK,
    FrameError,
    FrameReader,
    Request,
    decode_request,
    encode_batch,
    encode_error,
    encode_response,
)

log = logging.getLogger("idres.binary")
_NIL = b"\xc0"


class BinaryContext:
    def __init__(self, resolver: Resolver, database_down: tuple[type[BaseException], ...],
                 max_frame: int) -> None:
        self.resolver = resolver
        self.database_down = database_down
        self.max_frame = max_frame
        self.connections: set[BinaryProtocol] = set()
        self.requests = 0
        self.errors = 0


class BinaryProtocol(TrackedProtocol):
    def __init__(self, ctx: BinaryContext) -> None:
        super().__init__(ctx.connections)
        self.ctx = ctx
        self.reader = FrameReader(ctx.max_frame)

    def data_received(self, data: bytes) -> None:
        payloads, fatal = self.reader.feed(data)
        cache = self.ctx.resolver.cache
        out = []
        for payload in payloads:
            try:
                req = decode_request(payload)
            except FrameError as exc:
                self.ctx.errors += 1
                out.append(encode_error(exc.request_id, exc.status, exc.message))
                continue
            self.ctx.requests += 1
            if req.op == 1:  # OP_RESOLVE, the hot one
                hit = cache.answer(("bin", req.args[0]))
                if hit is not None:
                    out.append(encode_response(req.request_id, hit[0], hit[1]))
                    continue
            elif req.op == OP_PING:
                out.append(encode_response(req.request_id, STATUS_OK, _NIL))
                continue
            self._spawn(req)
        if fatal is not None:
            out.append(encode_error(0, fatal.status, fatal.message))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if fatal is not None and self.transport is not None:
            self.ctx.errors += 1
            self.transport.close()

    def _spawn(self, req: Request) -> None:
        asyncio.get_running_loop().create_task(self._slow(req))

    async def _slow(self, req: Request) -> None:
        resolver = self.ctx.resolver
        try:
            if req.op == OP_BATCH:
                bodies = await resolver.answers(req.args[0], use_msgpack=True)  # network op
                data = encode_batch(req.request_id, bodies)
            else:
                text = req.args[0]
                result = await resolver.resolve(parse(text))  # network op
                status = STATUS_OK if result.public is not None else STATUS_NOT_FOUND
                body = resolver.msgpack_answer(text, result.public, result.entry)
                if result.entry is not None:
                    resolver.cache.alias(("bin", text), result.entry, (status, body), len(body))
                data = encode_response(req.request_id, status, body)
        except Referral as exc:
            data = encode_response(req.request_id, exc.response_code,
                                   msgpack.packb(referral_answer(req.args[0], exc)))
        except IdresError as exc:
            data = encode_error(req.request_id, exc.response_code, exc.message)
        except self.ctx.database_down as exc:
            log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
            err = ServiceUnavailable()
            data = encode_error(req.request_id, err.response_code, err.message)
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
