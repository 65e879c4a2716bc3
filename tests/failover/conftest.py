"""A pg_auto_failover formation on loopback (Debian's PostgreSQL 15 and
postgresql-15-auto-failover; ``.ci/run`` installs them): a monitor, a primary and a
synchronous standby, made and driven by ``deploy/pg_auto_failover/formation.sh``, the
script docs/deploy.md gives operators."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, Operator, make_temp_dir, run_cli

SCRIPT = REPO / "deploy" / "pg_auto_failover" / "formation.sh"


def _ports_free(base: int) -> bool:
    for port in range(base, base + 3):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@dataclass
class Formation:
    folder: Path
    dsn: str            # every node, the one that takes writes first
    nodes: list[str]    # each node alone: idres's --replica, one per server
    admin: Operator

    def run(self, *args: str, timeout: float = 240) -> str:
        proc = subprocess.run([str(SCRIPT), args[0], str(self.folder), *args[1:]],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"formation.sh {' '.join(args)} failed:\n{proc.stdout}\n"
                                 f"{proc.stderr}")
        return proc.stdout

    def kill_primary(self) -> float:
        """SIGKILL the primary's keeper and server (a node that dies); the time it did."""
        self.run("kill-primary")
        return time.monotonic()

    def restore(self) -> None:
        """The killed node back, as the standby; both in sync again."""
        self.run("restore")


@pytest.fixture(scope="package")
def formation() -> Iterator[Formation]:
    if shutil.which("pg_autoctl") is None:
        pytest.fail("pg_auto_failover is not installed: apt-get install "
                    "postgresql-15-auto-failover (.ci/run installs it)")
    folder = make_temp_dir() / "formation"
    base = next(b for b in (random.randrange(20000, 40000, 3) for _ in range(50))
                if _ports_free(b))
    f = Formation(folder, "", [], Operator("", "", "", ""))
    try:
        f.run("up", str(base))
        dsn = f.run("uri").strip()
        f.dsn = dsn
        head, rest = dsn.split("@", 1)
        hosts, tail = rest.split("/", 1)
        f.nodes = [f"{head}@{host}/{tail.split('?')[0]}?sslmode=disable"
                   for host in hosts.split(",")]
        run_cli("migrate", dsn=dsn)
        out = json.loads(run_cli("operator", "create", "failover-admin", "--admin", "--json",
                                 dsn=dsn).stdout)
        f.admin = Operator(out["name"], out["identity"], out["secret"], out["token"])
        yield f
    finally:
        subprocess.run([str(SCRIPT), "down", str(folder), "--purge"], capture_output=True,
                       timeout=120)
        shutil.rmtree(folder.parent, ignore_errors=True)
