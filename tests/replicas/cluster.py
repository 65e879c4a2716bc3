"""A primary and streaming replicas on loopback, from the embedded PostgreSQL's binaries.

The primary is an :class:`EmbeddedPostgres` of its own; each :class:`Standby` is made
with ``pg_basebackup -R`` from it and started on a port of its own, optionally with
``recovery_min_apply_delay`` (a replica that lags on purpose).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from benchmarks.run import server_pids
from resolver.pg.embedded import EmbeddedPostgres
from tests.conftest import free_port


def with_port(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Standby:
    """A streaming replica of ``primary`` in ``root`` (see module docstring)."""

    def __init__(self, primary: EmbeddedPostgres, primary_dsn: str, root: Path,
                 delay_ms: int = 0) -> None:
        self.primary = primary
        self.pgdata = root / "pg"
        self.port = free_port()
        self.dsn = with_port(primary_dsn, self.port)
        self.logfile = root / "server.log"
        root.mkdir(parents=True)
        os.chmod(root, 0o777)
        bins = primary._binaries()
        self.bins = bins
        conn = primary_dsn.rsplit("/", 1)[0] + "/postgres"
        primary._run([str(bins / "pg_basebackup"), "-d", conn, "-D", str(self.pgdata),
                      "-R", "-X", "stream", "-c", "fast"], timeout=120)
        with open(self.pgdata / "local.conf", "a") as f:
            f.write(f"hot_standby = on\nrecovery_min_apply_delay = {delay_ms}\n"
                    "max_standby_streaming_delay = -1\n")
        self.start()

    def _ctl(self, *args: str) -> None:
        self.primary._run([str(self.bins / "pg_ctl"), "-D", str(self.pgdata), *args],
                          timeout=90)

    def start(self) -> None:
        self._ctl("-l", str(self.logfile), "-w", "-t", "60", "-o", f"-p {self.port}", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-w", "-t", "60", "-m", mode, "stop")

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def set_delay(self, ms: int) -> None:
        """Change ``recovery_min_apply_delay`` while it runs."""
        async def go() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = {int(ms)}")
                await conn.execute("SELECT pg_reload_conf()")
            finally:
                await conn.close()
        asyncio.run(go())

    def wait_caught_up(self, primary_dsn: str, timeout: float = 30) -> None:
        """Until it has replayed what the primary had written when asked."""
        async def go() -> None:
            p = await asyncpg.connect(primary_dsn)
            r = await asyncpg.connect(self.dsn)
            try:
                target = await p.fetchval("SELECT pg_current_wal_insert_lsn()::text")
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if await r.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                                        target):
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"the replica did not reach {target} in {timeout} s")
            finally:
                await p.close()
                await r.close()
        asyncio.run(go())

    def freeze(self) -> None:
        """SIGSTOP the whole server: connections stay open, nothing answers."""
        for pid in server_pids(self.pgdata):
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in server_pids(self.pgdata):
            os.kill(pid, signal.SIGCONT)

    def remove(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except Exception:  # noqa: BLE001 - already gone
                pass
        shutil.rmtree(self.pgdata.parent, ignore_errors=True)

