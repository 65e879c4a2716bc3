"""Bad input on the native protocol: random bytes into every parser (only the protocol's
errors come out), and on real sockets truncated, oversized and inconsistent messages,
garbage datagrams, a flood of multi-packet pieces and a client that never reads: each
gets a clear code (or is dropped, for what cannot be answered), the server keeps serving,
stored data is intact and memory stays bounded."""

from __future__ import annotations

import socket
import struct
import time

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core.errors import IdresError
from resolver.native import wire
from resolver.native.server import parse_resolution
from resolver.native.values import decode_values
from resolver.native.wire import Reader
from tests.adversity.test_abuse import flood_without_reading, rss
from tests.conftest import Tenant, new_operator
from tests.native.client import TCP, UDP, parse, request, resolution
from tests.native.conftest import NativeNode


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_parsers_take_any_bytes(data: bytes) -> None:
    for parse_one in (
        lambda: wire.parse_message(wire.parse_envelope(data), data[20:]),
        lambda: parse_resolution(data),
        lambda: decode_values(Reader(data)),
        lambda: wire.StreamReader().feed(data),
        lambda: wire.Assembler().add("a", wire.parse_envelope(data), data[20:], 0.0),
    ):
        try:
            parse_one()
        except IdresError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 120), st.binary(min_size=1, max_size=8))
def test_a_real_message_cut_or_flipped_is_refused_cleanly(cut: int, noise: bytes) -> None:
    good = resolution("88.100.7/ORDER-1", indexes=(1,), types=("URL",))
    for data in (good[:cut], good[:cut] + noise + good[cut + len(noise):]):
        try:
            msg = wire.parse_message(wire.parse_envelope(data), data[20:])
            parse_resolution(msg.body)
        except IdresError:
            pass


@pytest.fixture
def owner(node: NativeNode) -> Tenant:
    op = new_operator(node.server, node.admin, f"fuzz-{time.monotonic_ns() % 10**9}")
    prefix = f"88.{time.monotonic_ns() % 10**6}.3"
    r = requests.post(f"{node.server.url}/api/prefixes", json={"prefix": prefix, "owner": op.name},
                      headers=node.admin.bearer, timeout=10)
    assert r.status_code == 201, r.text
    t = Tenant(op, prefix, node.server.url)
    r = requests.put(t.handle_url("KEEP"), json=[{"index": 1, "type": "URL", "data": "u"}],
                     headers=op.bearer, timeout=10)
    assert r.status_code == 201
    return t


def envelope(length: int, request_id: int = 7, flags: int = 0) -> bytes:
    return wire.ENVELOPE.pack(2, 10, flags | 2, 11, 0, request_id, 0, length)


def still_serving(node: NativeNode, t: Tenant) -> None:
    for client in (TCP(node.port), UDP(node.port)):
        try:
            got = client.ask(resolution(f"{t.prefix}/KEEP"))
            assert got.code == 1 and got.values()[0]["data"]["value"] == "u"
        finally:
            client.close()


def test_malformed_messages_get_clear_codes_and_the_connection_stays(node: NativeNode,
                                                                       owner: Tenant) -> None:
    good = resolution(f"{owner.prefix}/KEEP", request_id=1)
    header = good[20:44]
    cases = {
        # a body longer than the message says
        "body overruns": envelope(28) + header[:20] + struct.pack(">i", 999) + bytes(4),
        # a header cut short
        "short header": envelope(10) + bytes(10),
        # a credential length past the end
        "credential": envelope(len(good) - 20) + good[20:-4] + struct.pack(">i", 50),
        # version 3
        "version": bytes([3]) + good[1:],
        # not a resolution body
        "body": request(wire.OC_RESOLUTION, b"\xff\xff\xff\xff", request_id=9),
        # an unknown operation
        "op": request(999, b"", request_id=10),
    }
    client = TCP(node.port)
    try:
        for name, data in cases.items():
            got = client.ask(data)
            assert got.code in (wire.RC_PROTOCOL_ERROR, wire.RC_OPERATION_NOT_SUPPORTED,
                                wire.RC_ERROR), (name, got.code)
            assert got.code != wire.RC_ERROR or name == "op", name
            assert client.ask(good).code == 1, name      # the same connection still works
    finally:
        client.close()
    still_serving(node, owner)
    metrics = requests.get(f"{node.server.url}/metrics", timeout=10).text
    errors = next(line for line in metrics.splitlines()
                  if line.startswith("idres_native_errors_total "))
    assert float(errors.split()[-1]) >= len(cases) - 1


def test_an_oversized_message_is_refused_and_the_connection_closed(node: NativeNode,
                                                                     owner: Tenant) -> None:
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        s.sendall(envelope(wire.MAX_MESSAGE + 1) + bytes(100))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    got = parse(data)
    assert got.code == wire.RC_PROTOCOL_ERROR and "over the limit" in got.message()
    still_serving(node, owner)


def test_garbage_datagrams_and_piece_floods_leave_udp_serving(node: NativeNode,
                                                              owner: Tenant) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(b"\x00" * 5, ("127.0.0.1", node.port))           # no envelope: dropped
        s.sendto(envelope(100) + bytes(30), ("127.0.0.1", node.port))
        answer = parse(s.recvfrom(65536)[0])                        # wrong length: 4
        assert answer.code == wire.RC_PROTOCOL_ERROR and answer.request_id == 7
        before = rss(node.server)
        for n in range(5000):   # first pieces of messages that never complete
            s.sendto(envelope(4000, request_id=n, flags=wire.ENV_TRUNCATED) + bytes(400),
                     ("127.0.0.1", node.port))
        time.sleep(0.5)
        assert rss(node.server) - before < 20 << 20
    finally:
        s.close()
    still_serving(node, owner)


def test_a_client_that_never_reads_is_throttled(node: NativeNode, owner: Tenant) -> None:
    client = UDP(node.port)
    client.ask(resolution(f"{owner.prefix}/KEEP"))   # cached
    client.close()
    before = rss(node.server)
    sent = flood_without_reading(node.port, lambda i: resolution(f"{owner.prefix}/KEEP",
                                                                 request_id=i), 3.0)
    grown = rss(node.server) - before
    assert grown < 40 << 20, f"RSS grew {grown >> 20} MB ({sent >> 20} MB sent)"
    still_serving(node, owner)
