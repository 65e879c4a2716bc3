"""The database goes away: clear 503 answers, no hang, nothing lost, automatic recovery."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from resolver.protocol.frames import encode_request
from tests.adversity.proxy import TcpProxy
from tests.conftest import Operator, Server, free_port, new_operator, stored_values
from tests.resolver.test_binary import read_frames

URL = [{"index": 1, "type": "URL", "data": "https://example.org/outage"}]


@pytest.fixture
def proxied(pg_dsn: str) -> Iterator[tuple[Server, TcpProxy]]:
    parts = urlsplit(pg_dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    dsn = pg_dsn.replace(f":{parts.port}/", f":{proxy.port}/")
    srv = Server(dsn).wait_ready()
    yield srv, proxy
    proxy.restore()
    assert srv.stop() == 0, srv.output()
    proxy.close()


def test_outage_gives_503_and_loses_nothing(proxied: Any, server: Server, admin: Operator,
                                            sql: Any) -> None:
    srv, proxy = proxied
    op = new_operator(server, admin, "outage-op")
    requests.post(f"{server.url}/api/prefixes", json={"prefix": "88.503", "owner": op.name},
                  headers=admin.bearer)
    assert requests.put(f"{srv.url}/api/handles/88.503/KEEP", json=URL,
                        headers=op.bearer).status_code == 201
    before = stored_values(sql, "88.503/KEEP")
    health = requests.get(f"{srv.url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["database"] == "ok"

    proxy.cut()
    started = time.monotonic()
    health = requests.get(f"{srv.url}/healthz", timeout=10)
    assert health.status_code == 503
    assert {k: v for k, v in health.json().items() if k not in ("cache", "reason")} == {
        "responseCode": 3, "status": "unavailable", "database": "unreachable"}
    # never read since it was written: a miss, which the outage answers with 503 at once
    r = requests.get(f"{srv.url}/api/handles/88.503/KEEP", timeout=30)
    assert r.status_code == 503
    body = r.json()
    assert body["responseCode"] == 3 and "database cannot be reached" in body["message"]
    assert body["handle"] == "88.503/KEEP"
    r = requests.put(f"{srv.url}/api/handles/88.503/KEEP", headers=op.bearer, timeout=30,
                     json=[{"index": 1, "type": "URL", "data": "https://changed"}])
    assert r.status_code == 503
    assert time.monotonic() - started < 15, "answers during the outage must not hang"
    assert stored_values(sql, "88.503/KEEP") == before

    proxy.restore()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = requests.get(f"{srv.url}/api/handles/88.503/KEEP", timeout=30)
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert r.status_code == 200 and r.json()["values"][0]["data"]["value"].endswith("/outage")
    assert requests.get(f"{srv.url}/healthz", timeout=10).status_code == 200
    r = requests.put(f"{srv.url}/api/handles/88.503/KEEP?index=2", headers=op.bearer,
                     json=[{"index": 2, "type": "STATUS", "data": "back"}])
    assert r.status_code == 200
    assert "database unavailable" in srv.output()


def test_cached_answers_flow_stale_while_the_database_is_away(pg_dsn: str, server: Server,
                                                              admin: Operator) -> None:
    """PostgreSQL unreachable: what is cached is still answered, marked stale the same way
    on every path (Warning header and "stale": true); misses and writes fail fast with
    503; once it is back nothing is served fresh before it is read again, so a write
    made meanwhile by another process shows."""
    parts = urlsplit(pg_dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    bport = free_port()
    srv = Server(pg_dsn.replace(f":{parts.port}/", f":{proxy.port}/"),
                 "--binary-port", str(bport)).wait_ready()
    try:
        op = new_operator(server, admin, "stale-op")
        assert requests.post(f"{server.url}/api/prefixes", headers=admin.bearer,
                             json={"prefix": "88.504", "owner": op.name}).status_code == 201
        h = "88.504/KEEP"
        assert requests.put(f"{server.url}/api/handles/{h}", json=URL,
                            headers=op.bearer).status_code == 201
        url = f"{srv.url}/api/handles/{h}"
        assert requests.get(url).status_code == 200                 # cached now
        assert requests.post(f"{srv.url}/api/resolve", json=[h]).status_code == 200
        proxy.cut()
        started = time.monotonic()
        # the cache's lease (2 s at most) may run until the listener notices: fresh
        # answers until then are right (no write can be acknowledged without outwaiting it)
        while requests.get(f"{srv.url}/healthz", timeout=10).json()["cache"] != "off":
            assert time.monotonic() - started < 3
            time.sleep(0.05)
        for target in (url, f"{url}?type=URL", f"{srv.url}/{h}?noredirect"):
            r = requests.get(target, timeout=10)
            assert r.status_code == 200, (target, r.text)
            assert r.headers["Warning"] == '110 - "Response is Stale"', target
            assert r.json()["stale"] is True and r.json()["values"][0]["data"]["value"] \
                .endswith("/outage")
        batch = requests.post(f"{srv.url}/api/resolve", json=[h, "88.504/NEVER"]).json()
        assert batch["results"][0]["stale"] is True and batch["results"][1]["responseCode"] == 3
        with socket.create_connection(("127.0.0.1", bport), timeout=10) as s:
            s.sendall(encode_request(1, 1, h) + encode_request(2, 1, "88.504/NEVER"))
            frames = {f[0]: f for f in read_frames(s, 2)}
        assert frames[1][1] == 1 and frames[1][2]["stale"] is True
        assert frames[2][1] == 3
        miss = requests.get(f"{srv.url}/api/handles/88.504/NEVER", timeout=10)
        assert miss.status_code == 503 and miss.json()["responseCode"] == 3
        w = requests.put(url, json=URL, headers=op.bearer, timeout=10)
        assert w.status_code == 503
        assert time.monotonic() - started < 8, "the outage must be answered fast"
        # another process changes the record meanwhile
        assert requests.put(f"{server.url}/api/handles/{h}?index=1", headers=op.bearer, json=[
            {"index": 1, "type": "URL", "data": "https://example.org/changed"}]).status_code == 200
        proxy.restore()
        deadline = time.monotonic() + 10
        while True:
            r = requests.get(url, timeout=10)
            if r.status_code == 200 and "stale" not in r.json():
                break
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
        assert r.json()["values"][0]["data"]["value"] == "https://example.org/changed"
        assert "Warning" not in r.headers
    finally:
        proxy.restore()
        assert srv.stop() == 0, srv.output()
        proxy.close()
