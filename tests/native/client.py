"""A small Handle native-protocol client for the tests: builds requests with the same
byte layout the CNRI client sends (RFC 3652) and reads answers over TCP and UDP."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

from resolver.native import wire
from resolver.native.values import decode_values
from resolver.native.wire import Reader, int4, string


def request(op: int, body: bytes, request_id: int = 1, flags: int = 0, session: int = 0,
            minor: int = 10) -> bytes:
    """A request message, envelope included."""
    return wire.encode(2, minor, session, request_id, op, 0, flags, body, expiration=0)


def resolution(handle: str | bytes, indexes: tuple[int, ...] = (), types: tuple[str, ...] = (),
               **kw: Any) -> bytes:
    raw = handle.encode() if isinstance(handle, str) else handle
    body = string(raw) + int4(len(indexes)) + b"".join(int4(i) for i in indexes) \
        + int4(len(types)) + b"".join(string(t) for t in types)
    return request(wire.OC_RESOLUTION, body, **kw)


@dataclass
class Answer:
    request_id: int
    op: int
    code: int
    body: bytes
    major: int
    minor: int
    session: int = 0
    flags: int = 0

    def values(self) -> list[dict[str, Any]]:
        r = Reader(self.body)
        r.bytes()   # the handle
        return decode_values(r)

    def message(self) -> str:
        return Reader(self.body).text()


def parse(data: bytes) -> Answer:
    env = wire.parse_envelope(data)
    msg = wire.parse_message(env, data[wire.ENVELOPE_SIZE:wire.ENVELOPE_SIZE + env[6]])
    return Answer(msg.request_id, msg.op, msg.code, msg.body, msg.major, msg.minor,
                  msg.session_id, msg.flags)


class TCP:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> Answer:
        while True:
            if len(self.buf) >= wire.ENVELOPE_SIZE:
                length = struct.unpack_from(">I", self.buf, 16)[0]
                end = wire.ENVELOPE_SIZE + length
                if len(self.buf) >= end:
                    data, self.buf = self.buf[:end], self.buf[end:]
                    return parse(data)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def ask(self, data: bytes) -> Answer:
        self.send(data)
        return self.read()

    def raw(self, data: bytes) -> bytes:
        """The answer's bytes (one message, envelope included)."""
        self.send(data)
        while True:
            if len(self.buf) >= wire.ENVELOPE_SIZE:
                end = wire.ENVELOPE_SIZE + struct.unpack_from(">I", self.buf, 16)[0]
                if len(self.buf) >= end:
                    out, self.buf = self.buf[:end], self.buf[end:]
                    return out
            self.buf += self.sock.recv(65536)

    def close(self) -> None:
        self.sock.close()


class UDP:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        self.addr = (host, port)

    def ask(self, data: bytes) -> Answer:
        return parse(self.raw(data))

    def raw(self, data: bytes) -> bytes:
        """The answer's bytes, its packets put together (envelope of the first)."""
        for packet in wire.datagrams(data):
            self.sock.sendto(packet, self.addr)
        parts: dict[int, bytes] = {}
        while True:
            packet, _ = self.sock.recvfrom(65536)
            env = wire.parse_envelope(packet)
            parts[env[5]] = packet[wire.ENVELOPE_SIZE:]
            if sum(map(len, parts.values())) >= env[6]:
                head = bytearray(packet[:wire.ENVELOPE_SIZE])
                head[2] &= ~wire.ENV_TRUNCATED & 0xff
                head[12:16] = bytes(4)
                return bytes(head) + b"".join(parts[i] for i in sorted(parts))

    def read(self) -> Answer:
        parts: dict[int, bytes] = {}
        while True:
            packet, _ = self.sock.recvfrom(65536)
            env = wire.parse_envelope(packet)
            if not env[2] & wire.ENV_TRUNCATED:
                return parse(packet)
            parts[env[5]] = packet[wire.ENVELOPE_SIZE:]
            if sum(map(len, parts.values())) >= env[6]:
                whole = b"".join(parts[i] for i in sorted(parts))
                return parse(packet[:wire.ENVELOPE_SIZE] + whole)

    def close(self) -> None:
        self.sock.close()


def create(handle: str, values: list[bytes], **kw: Any) -> bytes:
    return request(wire.OC_CREATE_HANDLE, string(handle) + int4(len(values)) + b"".join(values),
                   **kw)


def values_op(op: int, handle: str, values: list[bytes], **kw: Any) -> bytes:
    return request(op, string(handle) + int4(len(values)) + b"".join(values), **kw)


def handle_op(op: int, handle: str, **kw: Any) -> bytes:
    return request(op, string(handle), **kw)


def remove(handle: str, indexes: list[int], **kw: Any) -> bytes:
    return request(wire.OC_REMOVE_VALUE, string(handle) + int4(len(indexes))
                   + b"".join(int4(i) for i in indexes), **kw)


def challenge_parts(answer: Answer) -> tuple[bytes, bytes]:
    """(raw digest, nonce) of a 402 answer: hash code, digest, then the nonce."""
    code = answer.body[0]
    size = wire.HASH_SIZES[code]
    digest = answer.body[1:1 + size]
    return digest, Reader(answer.body, 1 + size).bytes()


def pubkey_answer(handle: str, index: int, signature: bytes, session: int, request_id: int,
                  alg: str = "SHA-256") -> bytes:
    proof = string(alg) + string(signature)
    body = string("HS_PUBKEY") + string(handle) + int4(index) + string(proof)
    return request(wire.OC_RESPONSE_TO_CHALLENGE, body, request_id=request_id, session=session)
