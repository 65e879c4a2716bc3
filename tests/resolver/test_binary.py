"""The binary protocol: framing, errors, pipelining, and the shipped client."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import requests

from resolver.protocol.client import BinaryClient, RemoteError
from resolver.protocol.frames import (
    FrameReader,
    decode_request,
    encode_request,
    frame,
)
from tests.conftest import Server, Tenant, free_port

URL = [{"index": 1, "type": "URL", "data": "https://example.org/bin"}]


@pytest.fixture(scope="module")
def binary(pg_dsn: str) -> Iterator[tuple[Server, int]]:
    port = free_port()
    srv = Server(pg_dsn, "--binary-port", str(port), "--max-frame-bytes", "4096")
    srv.wait_ready()
    yield srv, port
    assert srv.stop() == 0, srv.output()


def read_frames(sock: socket.socket, count: int) -> list[Any]:
    reader = FrameReader(1 << 24)
    out: list[Any] = []
    while len(out) < count:
        data = sock.recv(65536)
        if not data:
            break
        payloads, _ = reader.feed(data)
        out.extend(msgpack.unpackb(p) for p in payloads)
    return out


def test_frame_reader_splits_partial_and_joined_frames() -> None:
    frames = b"".join(encode_request(i, 1, f"88.1/{i}") for i in range(3))
    reader = FrameReader()
    got = []
    for i in range(0, len(frames), 5):          # 5 bytes at a time
        payloads, err = reader.feed(frames[i:i + 5])
        assert err is None
        got.extend(payloads)
    assert [decode_request(p).args[0] for p in got] == ["88.1/0", "88.1/1", "88.1/2"]
    payloads, err = FrameReader(max_frame=10).feed(frame(b"\x90") + struct.pack(">I", 11))
    assert len(payloads) == 1 and err is not None and err.fatal


def test_many_frames_in_one_packet_and_pipelining(tenant: Tenant, binary: Any) -> None:
    srv, port = binary
    for n in ("A", "B"):
        requests.put(tenant.handle_url(n), json=URL, headers=tenant.op.bearer)
    ids = [f"{tenant.prefix}/A", f"{tenant.prefix}/B", f"{tenant.prefix}/NONE", "bad"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"".join(encode_request(100 + i, 1, h) for i, h in enumerate(ids))
                  + encode_request(7, 0))
        answers = {a[0]: a for a in read_frames(s, 5)}
    assert answers[100][1] == 1 and answers[100][2]["handle"] == ids[0]
    assert answers[101][2]["values"][0]["data"]["value"] == "https://example.org/bin"
    assert answers[102][1] == 100 and answers[102][2]["responseCode"] == 100
    assert answers[103][1] == 102 and "no '/'" in answers[103][2]["message"]
    assert answers[7] == [7, 1, None]


def test_malformed_payloads_get_errors_and_the_connection_stays(binary: Any) -> None:
    _, port = binary
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(frame(b"\xc1") + frame(msgpack.packb({"a": 1})) +
                  frame(msgpack.packb([5, 99])) + frame(msgpack.packb([6, 1, 42])) +
                  encode_request(8, 0))
        got = read_frames(s, 5)
    assert got[0][:2] == [0, 4] and "not valid msgpack" in got[0][2]["message"]
    assert got[1][:2] == [0, 4]
    assert got[2][:2] == [5, 5] and "unknown operation 99" in got[2][2]["message"]
    assert got[3][:2] == [6, 4]
    assert got[4] == [8, 1, None]


def test_oversized_frame_is_an_error_and_closes(binary: Any) -> None:
    _, port = binary
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(encode_request(1, 0) + struct.pack(">I", 1 << 20) + b"x" * 100)
        got = read_frames(s, 3)
        assert got[0] == [1, 1, None]
        assert got[1][1] == 4 and "over the limit of 4096" in got[1][2]["message"]
        assert len(got) == 2 and s.recv(10) == b""


def test_client_round_trips(tenant: Tenant, binary: Any) -> None:
    _, port = binary
    ids = [f"{tenant.prefix}/C{i}" for i in range(50)]
    requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer,
                  json=[{"handle": h, "values": URL} for h in ids])

    async def go() -> None:
        async with BinaryClient("127.0.0.1", port, connections=3) as client:
            await client.ping()
            one = await client.resolve(ids[0])
            assert one["responseCode"] == 1 and one["handle"] == ids[0]
            got = await asyncio.gather(*(client.resolve(h) for h in ids * 4))
            assert [g["handle"] for g in got] == ids * 4
            assert (await client.resolve(f"{tenant.prefix}/NOPE"))["responseCode"] == 100
            many = await client.resolve_many(ids + ["bad"])
            assert [m["handle"] for m in many] == ids + ["bad"]
            assert many[-1]["responseCode"] == 102
            with pytest.raises(RemoteError) as err:
                await client.resolve("no-slash")
            assert err.value.status == 102

    asyncio.run(go())


def test_the_documented_example_is_what_the_code_sends() -> None:
    from tests.conftest import REPO

    doc = (REPO / "docs" / "protocol.md").read_text()
    example = doc.split("## Example")[1].split("```")[1]
    hexes = " ".join(line.split("  ")[0] for line in example.strip().splitlines())
    assert bytes.fromhex(hexes) == encode_request(7, 1, "88.100.7/ORDER-1")


def test_a_reader_authenticates_its_connection(tenant: Tenant, binary: Any) -> None:
    """``auth`` with a reader's token: that connection's resolutions and batches answer
    what the reader's grants show, as HTTP does; other tokens are refused; a revocation
    is seen by the connection's next request."""
    import time

    _, port = binary
    tag = str(time.monotonic_ns())
    values = [{"index": 1, "type": "unit.name", "data": "unit 7"},
              {"index": 2, "type": "unit.area", "data": "75", "classification": "shared"},
              {"index": 3, "type": "unit.resident", "data": "x", "classification": "private"}]
    ids = [f"{tenant.prefix}/BR{i}" for i in range(3)]
    for h in ids:
        assert requests.put(f"{tenant.url}/api/handles/{h}", headers=tenant.op.bearer,
                            json=values).status_code == 201
    made = requests.post(f"{tenant.url}/api/readers", headers=tenant.op.bearer,
                         json={"name": f"bin-{tag}"}).json()
    g = requests.post(f"{tenant.url}/api/grants", headers=tenant.op.bearer, json={
        "grantee": f"reader:bin-{tag}", "scope": tenant.prefix, "types": "unit.*"}).json()

    async def go() -> None:
        async with BinaryClient("127.0.0.1", port, connections=1,
                                token=made["token"]) as client:
            for _ in range(2):                       # a miss, then the kept answer
                one = await client.resolve(ids[0])
                assert [v["type"] for v in one["values"]] == ["unit.name", "unit.area"]
                many = await client.resolve_many(ids)
                assert [[v["type"] for v in m["values"]] for m in many] == \
                    [["unit.name", "unit.area"]] * 3
            http = requests.get(f"{tenant.url}/api/handles/{ids[0]}", headers={
                "Authorization": f"Bearer {made['token']}"}).json()
            assert one["values"] == http["values"]
            assert requests.delete(f"{tenant.url}/api/grants/{g['id']}",
                                   headers=tenant.op.bearer).status_code == 200
            one = await client.resolve(ids[0])
            assert [v["type"] for v in one["values"]] == ["unit.name"]
            assert requests.delete(f"{tenant.url}/api/readers/bin-{tag}",
                                   headers=tenant.op.bearer).status_code == 200
            with pytest.raises(RemoteError) as err:
                await client.resolve(ids[0])
            assert err.value.status == 402 and "no longer valid" in str(err.value)
        async with BinaryClient("127.0.0.1", port, connections=1) as anonymous:
            one = await anonymous.resolve(ids[0])
            assert [v["type"] for v in one["values"]] == ["unit.name"]
        with pytest.raises(RemoteError) as err:
            async with BinaryClient("127.0.0.1", port, connections=1,
                                    token=tenant.op.token) as operator:
                await operator.ping()
        assert err.value.status == 402

    asyncio.run(go())
