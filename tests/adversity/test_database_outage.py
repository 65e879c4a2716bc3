"""The database goes away: clear 503 answers, no hang, nothing lost, automatic recovery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.adversity.proxy import TcpProxy
from tests.conftest import Operator, Server, new_operator, stored_values

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
    assert health.json() == {"responseCode": 3, "status": "unavailable",
                             "database": "unreachable", "cache": health.json()["cache"]}
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
