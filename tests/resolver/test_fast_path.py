"""HTTP/1.1 behaviour of the fast path, over raw sockets against a running server."""

from __future__ import annotations

import socket
import time
from typing import Any

import requests

from tests.conftest import Server, Tenant

URL = [{"index": 1, "type": "URL", "data": "https://example.org/fast"}]


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Read ``count`` HTTP responses (Content-Length framed) from ``sock``."""
    data = b""
    out = []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed after {len(out)} responses")
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(data) < length:
            data += sock.recv(65536)
        out.append((status, headers, data[:length]))
        data = data[length:]
    return out


def closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def get(path: str, extra: str = "", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def test_pipelined_requests_are_answered_in_order(tenant: Tenant, server: Server) -> None:
    for name in ("P1", "P2", "P3"):
        requests.put(tenant.handle_url(name), json=URL, headers=tenant.op.bearer)
    requests.get(tenant.handle_url("P2"))    # P2 cached, P1/P3 not yet
    base = f"/api/handles/{tenant.prefix}"
    with connect(server) as s:
        s.sendall(b"".join(get(f"{base}/{n}") for n in ("P1", "P2", "MISSING", "P3", "P2")))
        got = read_responses(s, 5)
    assert [r[0] for r in got] == [200, 200, 404, 200, 200]
    assert [r[2].split(b'"handle":"')[1].split(b'"')[0].decode().split("/")[1]
            for r in got] == ["P1", "P2", "MISSING", "P3", "P2"]
    assert all("date" in r[1] for r in got)


def test_head_has_the_headers_and_no_body(tenant: Tenant, server: Server) -> None:
    requests.put(tenant.handle_url("H"), json=URL, headers=tenant.op.bearer)
    path = f"/api/handles/{tenant.prefix}/H"
    with connect(server) as s:
        for _ in range(2):     # a miss, then a hit
            s.sendall(get(path, method="HEAD") + get(path))
            head = s.recv(65536)
            while head.count(b"HTTP/1.1") < 2 or not head.endswith(b"}"):
                head += s.recv(65536)
            first, second = head.split(b"HTTP/1.1 ")[1:]
            assert first.startswith(b"200") and first.endswith(b"\r\n\r\n")
            length = int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert second.split(b"\r\n\r\n", 1)[1].__len__() == length


def test_connection_close_and_http10(tenant: Tenant, server: Server) -> None:
    requests.put(tenant.handle_url("C"), json=URL, headers=tenant.op.bearer)
    path = f"/api/handles/{tenant.prefix}/C"
    with connect(server) as s:
        s.sendall(get(path, "Connection: close\r\n") + get(path))
        (status, headers, _), = read_responses(s, 1)
        assert status == 200 and headers["connection"] == "close"
        assert closed(s)                              # the second request is not answered
    with connect(server) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        assert read_responses(s, 1)[0][0] == 200 and closed(s)
    with connect(server) as s:                        # HTTP/1.0 keep-alive stays open
        s.sendall(f"GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode() * 2)
        assert [r[0] for r in read_responses(s, 2)] == [200, 200]


def test_malformed_request_line_is_400(server: Server) -> None:
    for junk in (b"GARBAGE\r\n\r\n", b"GET /api/handles/88.1/X HTTP/9.9\r\n\r\n",
                 b"GET  /api/handles/88.1/X HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\xa5\r\n\r\n"):
        with connect(server) as s:
            s.sendall(junk)
            data = s.recv(65536)
            assert data.startswith(b"HTTP/1.1 400") or data.startswith(b"HTTP/1.0 400"), junk


def test_oversized_headers_are_431(server: Server) -> None:
    with connect(server) as s:
        s.sendall(get("/api/handles/88.1/X", "X-Big: " + "a" * 9000 + "\r\n"))
        (status, headers, body), = read_responses(s, 1)
        assert status == 431 and b"too large" in body and closed(s)
    with connect(server) as s:                        # no end of head in sight
        s.sendall(b"GET /api/handles/88.1/X HTTP/1.1\r\nX-Big: " + b"a" * 9000)
        assert read_responses(s, 1)[0][0] == 431


def test_other_requests_hand_the_connection_to_aiohttp(tenant: Tenant, server: Server) -> None:
    requests.put(tenant.handle_url("M"), json=URL, headers=tenant.op.bearer)
    path = f"/api/handles/{tenant.prefix}/M"
    body = b'[{"index": 2, "type": "STATUS", "data": "ok"}]'
    put = (f"PUT {path}?index=2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tenant.op.token}"
           f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with connect(server) as s:
        s.sendall(get(path) + put + body + get(path) + get(path + "?type=STATUS"))
        got = read_responses(s, 4)
    assert [r[0] for r in got] == [200, 200, 200, 200]
    assert b"STATUS" not in got[0][2]
    assert b"STATUS" in got[2][2]                      # read-your-write on one connection
    assert b'"index":1' not in got[3][2]               # the filter, answered by aiohttp


def test_idle_connections_close_and_shutdown_is_graceful(pg_dsn: str) -> None:
    srv = Server(pg_dsn).wait_ready()
    try:
        with connect(srv) as idle, connect(srv) as busy:
            busy.sendall(get("/api/handles/88.0.0/X"))
            assert read_responses(busy, 1)[0][0] == 400      # that prefix doesn't live here
            started = time.monotonic()
            assert srv.stop() == 0
            assert closed(idle) and closed(busy)
            assert time.monotonic() - started < 10
    finally:
        srv.stop()


def test_cache_metrics_are_exposed(tenant: Tenant, server: Server) -> None:
    requests.put(tenant.handle_url("MET"), json=URL, headers=tenant.op.bearer)
    for _ in range(3):
        requests.get(tenant.handle_url("MET"))
    text = requests.get(f"{server.url}/metrics").text
    metrics: dict[str, Any] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            metrics[name] = float(value)
    assert metrics["idres_cache_hits_total"] >= 2
    assert metrics["idres_cache_entries"] >= 1 and metrics["idres_cache_bytes"] > 0
    assert 'idres_cache_evictions_total{reason="invalidated"}' in metrics
    assert metrics["idres_invalidate_connected"] == 1
    assert metrics["idres_http_fast_requests_total"] >= 3


def test_metric_names_follow_the_conventions(server: Server) -> None:
    """snake_case, the idres_ prefix, _total on counters; every name is in the README."""
    import re

    from tests.conftest import REPO

    text = requests.get(f"{server.url}/metrics").text
    readme = (REPO / "resolver" / "README.md").read_text()
    declared = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    ours = [(n, t) for n, t in declared if n.startswith("idres_")]
    assert len(ours) >= 10
    for name, kind in ours:
        assert re.fullmatch(r"idres_[a-z0-9_]+", name), name
        shown = name if name.endswith("_total") or kind != "counter" else name + "_total"
        assert f"`{shown}`" in readme, f"{shown} is not documented in resolver/README.md"
    assert all(n.startswith(("idres_", "python_", "process_")) for n, _ in declared)
