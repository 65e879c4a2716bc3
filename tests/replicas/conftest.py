"""A primary of its own (embedded binaries, a fresh cluster) with two streaming replicas:
``fast`` replays as soon as it receives, ``slow`` is the one tests delay or stop."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from resolver.pg.embedded import EmbeddedPostgres
from resolver.pg.pool import _ensure_database, migrate_dsn
from tests.conftest import Operator, make_temp_dir, run_cli
from tests.replicas.cluster import Standby


@dataclass
class Replicated:
    primary: EmbeddedPostgres
    dsn: str
    fast: Standby
    slow: Standby
    admin: Operator


@pytest.fixture(scope="package")
def replicated() -> Iterator[Replicated]:
    root = make_temp_dir()
    primary = EmbeddedPostgres(root / "primary")
    dsn = primary.start()
    standbys: list[Standby] = []
    try:
        asyncio.run(_ensure_database(dsn))
        asyncio.run(migrate_dsn(dsn))
        out = json.loads(run_cli("operator", "create", "replica-admin", "--admin", "--json",
                                 dsn=dsn).stdout)
        admin = Operator(out["name"], out["identity"], out["secret"], out["token"])
        standbys = [Standby(primary, dsn, root / "fast"), Standby(primary, dsn, root / "slow")]
        yield Replicated(primary, dsn, standbys[0], standbys[1], admin)
    finally:
        for standby in standbys:
            standby.remove()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)
