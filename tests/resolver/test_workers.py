"""--workers N: processes sharing the port, every one of them coherent after writes."""

from __future__ import annotations

import re
from typing import Any

import requests

from tests.conftest import Operator, Server, new_operator


def test_two_workers_share_the_port_and_never_answer_stale(pg_dsn: str, server: Server,
                                                            admin: Operator) -> None:
    srv = Server(pg_dsn, "--workers", "2")
    try:
        srv.wait_ready()
        op = new_operator(server, admin, "workers-op")
        requests.post(f"{server.url}/api/prefixes", json={"prefix": "88.222", "owner": op.name},
                      headers=admin.bearer)
        url = f"{srv.url}/api/handles/88.222/W"
        assert requests.put(url, headers=op.bearer, json=[
            {"index": 1, "type": "URL", "data": "https://example.org/v0"}]).status_code == 201
        for i in range(1, 40):
            for _ in range(4):      # new connections: the kernel spreads them over workers
                assert requests.get(url).status_code == 200
            r = requests.put(url + "?index=1", headers=op.bearer, json=[
                {"index": 1, "type": "URL", "data": f"https://example.org/v{i}"}])
            assert r.status_code == 200
            for _ in range(4):
                got: Any = requests.get(url).json()["values"][0]["data"]["value"]
                assert got == f"https://example.org/v{i}", f"stale answer after write {i}"
        assert requests.delete(url, headers=op.bearer).status_code == 200
        assert all(requests.get(url).status_code == 404 for _ in range(8))
        pids = set(re.findall(r"idres\[(\d+)\]: idres listening", srv.output()))
        assert len(pids) == 2, srv.output()
    finally:
        assert srv.stop() == 0, srv.output()
    assert "stopping 2 workers" in srv.output()
