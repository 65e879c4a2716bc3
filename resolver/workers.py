"""``idres serve --workers N``: N server processes sharing the ports (SO_REUSEPORT).

The supervisor prepares the database once (starts the embedded PostgreSQL when no
DSN is given, applies migrations), then starts N workers with the DSN. The kernel
spreads connections over the workers; each worker has its own cache, kept
coherent by its own LISTEN connection. SIGTERM/SIGINT stop the workers gracefully;
a worker that dies is restarted (at most 5 times a minute), then the database is
stopped if the supervisor started it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from resolver.config import Settings, StartupError
from resolver.pg.embedded import EmbeddedPostgres
from resolver.pg.pool import _ensure_database, migrate_dsn, redact
from resolver.traffic import configure_logging

log = logging.getLogger("idres.workers")


def worker_main(settings: Settings, level: str) -> None:
    import uvloop

    from resolver.node import serve

    configure_logging(level, settings.log_format)
    uvloop.run(serve(settings))


def _check_port(host: str, port: int) -> None:
    """Fail now, with the reason, rather than in every worker in turn.

    :raises StartupError: the port is taken by a process that does not share it."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise StartupError(f"cannot listen for HTTP (--port) on {host}:{port}: "
                               f"{exc.strerror}") from None


def supervise(settings: Settings) -> int:
    """Run the workers until a stop signal; returns the exit code."""
    if settings.port == 0:
        raise ValueError("--workers needs a fixed --port (not 0)")
    _check_port(settings.host, settings.port)
    embedded = None
    dsn = settings.dsn
    if not dsn:
        embedded = EmbeddedPostgres(settings.data_dir)
        dsn = embedded.start(create=True)
        asyncio.run(_ensure_database(dsn))
    try:
        applied = asyncio.run(migrate_dsn(dsn, settings.case_sensitive))
        if applied:
            log.info("schema migrated: %s", ", ".join(applied))
        log.info("database: %s; starting %d workers", redact(dsn), settings.workers)
        return _run(dataclasses.replace(settings, dsn=dsn))
    finally:
        if embedded is not None:
            embedded.stop()


def _run(settings: Settings) -> int:
    ctx = multiprocessing.get_context("spawn")
    level = logging.getLevelName(logging.getLogger().level)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    folder = Path(tempfile.mkdtemp(prefix="idres-metrics-"))   # one /metrics for all

    def start(n: int) -> BaseProcess:
        own = dataclasses.replace(settings, worker=n, metrics_dir=folder)
        p = ctx.Process(target=worker_main, args=(own, level), daemon=False)
        p.start()
        return p

    workers = [start(n) for n in range(settings.workers)]
    restarts: list[float] = []
    code = 0
    while not stopping:
        time.sleep(0.2)
        for i, p in enumerate(workers):
            if p.exitcode is None or stopping:
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > 5:
                log.error("workers keep dying (last exit code %s): stopping", p.exitcode)
                stopping, code = True, 1
                break
            log.warning("worker %d exited with %s: restarting it", p.pid, p.exitcode)
            workers[i] = start(i)
    log.info("stopping %d workers", len(workers))
    for p in workers:
        if p.exitcode is None and p.pid is not None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in workers:
        p.join(timeout=20)
        if p.exitcode is None:
            p.kill()
            p.join()
    shutil.rmtree(folder, ignore_errors=True)
    return code
