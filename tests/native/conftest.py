"""One node speaking the Handle native protocol, on a database of its own (its prefix
handles name its ports: another node on the same database would rewrite them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import Operator, Server, fresh_database, free_port, run_cli


@dataclass
class NativeNode:
    server: Server
    port: int
    dsn: str
    admin: Operator


@pytest.fixture(scope="package")
def node(pg_dsn: str) -> Iterator[NativeNode]:
    dsn = fresh_database(pg_dsn, "native")
    out = json.loads(run_cli("operator", "create", "native-admin", "--admin", "--json",
                             dsn=dsn).stdout)
    admin = Operator(out["name"], out["identity"], out["secret"], out["token"])
    port = free_port()
    srv = Server(dsn, "--handle-port", str(port)).wait_ready()
    yield NativeNode(srv, port, dsn, admin)
    assert srv.stop() == 0, srv.output()
