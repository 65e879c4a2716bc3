"""The embedded PostgreSQL's settings: sized to the machine, and the user's local.conf wins."""

from __future__ import annotations

import asyncio
import os
import shutil

import asyncpg

from resolver.pg.embedded import EmbeddedPostgres, shared_buffers
from tests.conftest import make_temp_dir


async def setting(dsn: str, name: str) -> str:
    conn = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres")
    try:
        value: str = await conn.fetchval("SELECT current_setting($1)", name)
        return value
    finally:
        await conn.close()


def test_shared_buffers_follow_memory_and_local_conf_wins() -> None:
    mb = int(shared_buffers().removesuffix("MB"))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 128 <= mb <= 2048 and mb == min(max(total // 8 >> 20, 128), 2048)
    root = make_temp_dir()
    pg = EmbeddedPostgres(root / "data")
    try:
        dsn = pg.start()
        shown = asyncio.run(setting(dsn, "shared_buffers"))
        assert shown in (f"{mb}MB", f"{mb // 1024}GB")
        pg.stop()
        local = pg.pgdata / "local.conf"
        local.write_text("work_mem = '7MB'\nshared_buffers = 160MB\n")
        if pg.run_as is not None:
            os.chown(local, pg.run_as.uid, pg.run_as.gid)
        dsn = pg.start()
        assert asyncio.run(setting(dsn, "work_mem")) == "7MB"
        assert asyncio.run(setting(dsn, "shared_buffers")) == "160MB"
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
