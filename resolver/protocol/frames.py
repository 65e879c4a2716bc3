"""The idres binary protocol, sans-I/O: frames, operations, status codes.

Wire format (docs/protocol.md is the full description):

* a frame is a 4-byte big-endian unsigned length N, then N bytes of msgpack;
* a request is the msgpack array ``[request_id, op, *args]``; a response is
  ``[request_id, status, body]``. ``request_id`` is chosen by the client
  (0..2**32-1) and echoed; answers to pipelined requests may come in any order;
* ``status`` is the binary-protocol status of the error table
  (``resolver/core/errors.py``): 1 success, 100 not found, 102 invalid identifier,
  3 server unavailable, 4 protocol error, 5 unknown operation, ...

This module imports no asyncio: :class:`FrameReader` turns bytes into payloads,
:func:`decode_request` payloads into requests, and the ``encode_*`` functions build
response frames, splicing in answers that were encoded once and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from resolver.core.errors import ProtocolError, UnknownOperation

OP_PING = 0
OP_RESOLVE = 1
OP_BATCH = 2
OP_AUTH = 3     # a reader's bearer token: the connection's later answers are what it sees
OPS = {OP_PING: "ping", OP_RESOLVE: "resolve", OP_BATCH: "batch", OP_AUTH: "auth"}

STATUS_OK = 1
STATUS_NOT_FOUND = 100

MAX_REQUEST_ID = 2**32 - 1
MAX_BATCH = 10_000
DEFAULT_MAX_FRAME = 1 << 20
_HEADER = 4

_packer = msgpack.Packer(use_bin_type=True)
_ARRAY3 = _packer.pack_array_header(3)


class FrameReader:
    """Splits a byte stream into frame payloads. Feed bytes, take complete payloads."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = b""

    def feed(self, data: bytes) -> tuple[list[bytes], ProtocolError | None]:
        """Every complete payload now available (partial frames wait for more bytes),
        and a fatal error if a frame declares a length over ``max_frame``: the
        payloads before it are still returned, and nothing after it is read."""
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= _HEADER:
            size = int.from_bytes(buf[pos:pos + _HEADER], "big")
            if size > self.max_frame:
                self._buf = b""
                return out, ProtocolError(f"frame of {size} bytes is over the limit of "
                                          f"{self.max_frame} bytes", fatal=True)
            if end - pos - _HEADER < size:
                break
            out.append(buf[pos + _HEADER:pos + _HEADER + size])
            pos += _HEADER + size
        self._buf = buf[pos:] if pos < end else b""
        return out, None

    @property
    def pending(self) -> int:
        return len(self._buf)


@dataclass(frozen=True, slots=True)
class Request:
    request_id: int
    op: int
    args: tuple[Any, ...]


def decode_request(payload: bytes) -> Request:
    """A request from one payload.

    :raises ProtocolError: not msgpack, not ``[id, op, ...]``, bad arguments; carries
        the request id when it could be read.
    :raises UnknownOperation: an operation this server does not have.
    """
    try:
        data = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise ProtocolError("payload is not valid msgpack") from None
    if not isinstance(data, list) or len(data) < 2:
        raise ProtocolError("a request is the array [request_id, op, args...]")
    rid, op = data[0], data[1]
    if not isinstance(rid, int) or isinstance(rid, bool) or not 0 <= rid <= MAX_REQUEST_ID:
        raise ProtocolError("request_id must be an integer 0..2**32-1")
    if not isinstance(op, int) or isinstance(op, bool) or op not in OPS:
        raise UnknownOperation(f"unknown operation {op!r}", rid)
    args = tuple(data[2:])
    if op == OP_RESOLVE and (len(args) != 1 or not isinstance(args[0], str)):
        raise ProtocolError("resolve takes one identifier string", rid)
    if op == OP_AUTH and (len(args) != 1 or not isinstance(args[0], str) or not args[0]):
        raise ProtocolError("auth takes one token string", rid)
    if op == OP_BATCH:
        if len(args) != 1 or not isinstance(args[0], list) \
                or not all(isinstance(h, str) for h in args[0]):
            raise ProtocolError("batch takes one array of identifier strings", rid)
        if len(args[0]) > MAX_BATCH:
            raise ProtocolError(f"batch of {len(args[0])} is over the limit of {MAX_BATCH}", rid)
    return Request(rid, op, args)


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(_HEADER, "big") + payload


def encode_response(request_id: int, status: int, body_msgpack: bytes) -> bytes:
    """A response frame whose body is already msgpack (e.g. a cached answer)."""
    payload = _ARRAY3 + _packer.pack(request_id) + _packer.pack(status) + body_msgpack
    return frame(payload)


def encode_batch(request_id: int, bodies: list[bytes]) -> bytes:
    """A batch response frame: status 1 and the array of per-identifier answers."""
    payload = b"".join([_ARRAY3, _packer.pack(request_id), _packer.pack(STATUS_OK),
                        _packer.pack_array_header(len(bodies)), *bodies])
    return frame(payload)




def encode_request(request_id: int, op: int, *args: Any) -> bytes:
    return frame(_packer.pack([request_id, op, *args]))


def decode_response(payload: bytes) -> tuple[int, int, Any]:
    """(request_id, status, body) of a response payload (client side).

    :raises ProtocolError: not a valid response.
    """
    try:
        data = msgpack.unpackb(payload, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise ProtocolError("response is not valid msgpack") from None
    if not isinstance(data, list) or len(data) != 3:
        raise ProtocolError("a response is the array [request_id, status, body]")
    return data[0], data[1], data[2]
