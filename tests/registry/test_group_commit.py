"""Group commit of whole-record writes (registry/store/group.py): concurrent PUTs share
transactions, each keeps its own outcome, a group the database refuses is made write by
write, and an acknowledged write survives kill -9 of idres and of PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from tests.conftest import (
    Operator,
    Server,
    Tenant,
    make_temp_dir,
    new_operator,
    run_cli,
    run_sql,
)
from tests.registry.test_templates import template


def _metric(server: Server, name: str) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return float(next(line.split()[-1] for line in text.splitlines()
                      if line.startswith(name + " ")))


def _value(n: int) -> list[dict[str, Any]]:
    return [{"index": 1, "type": "URL", "data": f"https://example.org/g/{n}"}]


async def _put_all(calls: list[tuple[str, Any, dict[str, str]]]) -> list[tuple[int, Any]]:
    """The PUTs at once, each on its own connection; (status, JSON body) of each."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
            async with session.put(url, json=body, headers=headers) as r:
                return r.status, await r.json()
        return list(await asyncio.gather(*(one(*c) for c in calls)))


def test_concurrent_puts_share_transactions_and_each_keeps_its_outcome(
        tenant: Tenant, server: Server, admin: Operator, sql: Any) -> None:
    other = new_operator(server, admin, f"other-{tenant.prefix}")
    h = template(tenant, "META_GROUP", [{"type": "g.qty", "datatype": "integer",
                                         "required": True}])
    assert requests.put(tenant.handle_url("G-TAKEN"), json=_value(0),
                        headers=tenant.op.bearer).status_code == 201
    groups, writes = (_metric(server, "idres_write_groups_total"),
                      _metric(server, "idres_write_group_writes_total"))
    calls = [(tenant.handle_url(f"G-{n}"), _value(n), tenant.op.bearer) for n in range(40)]
    calls += [(tenant.handle_url("G-TAKEN") + "?overwrite=false", _value(1), tenant.op.bearer),
              (tenant.handle_url("G-OTHER"), _value(2), other.bearer),          # not theirs
              (tenant.handle_url("G-BAD"), {"template": h, "values": [
                  {"index": 1, "type": "g.qty", "data": "many"}]}, tenant.op.bearer),
              (tenant.handle_url("G-TYPED"), {"template": h, "values": [
                  {"index": 1, "type": "g.qty", "data": "7"}]}, tenant.op.bearer)]
    got = asyncio.run(_put_all(calls))
    assert [s for s, _ in got[:40]] == [201] * 40, got[:40]
    taken, foreign, bad, typed = got[40:]
    assert taken[0] == 409 and "already exists" in taken[1]["message"]
    assert foreign[0] == 403 and "may not write under" in foreign[1]["message"]
    assert bad[0] == 400 and bad[1]["errors"][0]["type"] == "g.qty"
    assert typed[0] == 201
    # fewer transactions than writes: they went in groups (44 writes were made)
    made = _metric(server, "idres_write_group_writes_total") - writes
    assert made == 44 and _metric(server, "idres_write_groups_total") - groups < made
    # each stored once, with its own values, readable at once; nothing of the refused
    for n in (0, 17, 39):
        r = requests.get(f"{tenant.url}/api/handles/{tenant.prefix}/G-{n}")
        assert r.json()["values"][0]["data"]["value"] == f"https://example.org/g/{n}"
    assert requests.get(tenant.handle_url("G-TAKEN")).json()["values"][0]["data"][
        "value"] == "https://example.org/g/0"
    for suffix in ("G-OTHER", "G-BAD"):
        assert requests.get(tenant.handle_url(suffix)).status_code == 404
    rows = sql("SELECT handle, count(*) AS n FROM audit WHERE prefix = $1 AND action = 'create' "
               "GROUP BY handle", tenant.prefix)
    assert len(rows) == 42 and all(r["n"] == 1 for r in rows)   # 40, G-TAKEN, G-TYPED


@pytest.mark.parametrize("errcode", ["deadlock_detected", "string_data_right_truncation"])
def test_a_group_the_database_refuses_is_made_write_by_write(
        tenant: Tenant, server: Server, sql: Any, errcode: str) -> None:
    """A refusal only the database can make (here a deadlock, or one write's data it will
    not take, reported by a trigger for one identifier) rolls the group back whole; its
    writes are then made alone: that one fails, every other succeeds, once."""
    doomed = f"{tenant.prefix}/G-DOOMED"
    sql(f"""CREATE FUNCTION refuse_doomed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.handle = '{doomed}' THEN
                RAISE EXCEPTION 'injected' USING ERRCODE = '{errcode}';
              END IF;
              RETURN NEW;
            END $$""")
    sql("CREATE TRIGGER refuse_doomed BEFORE INSERT ON handles FOR EACH ROW "
        "EXECUTE FUNCTION refuse_doomed()")
    try:
        groups = _metric(server, "idres_write_groups_total")
        calls = [(tenant.handle_url(f"D-{n}"), _value(n), tenant.op.bearer) for n in range(20)]
        calls.insert(7, (tenant.handle_url("G-DOOMED"), _value(99), tenant.op.bearer))
        got = asyncio.run(_put_all(calls))
    finally:
        sql("DROP TRIGGER refuse_doomed ON handles")
        sql("DROP FUNCTION refuse_doomed()")
    statuses = [s for s, _ in got]
    assert statuses.pop(7) >= 500 and statuses == [201] * 20, got
    assert _metric(server, "idres_write_groups_total") - groups < 21   # grouped at first
    assert sql("SELECT count(*) AS n FROM handles WHERE prefix = $1", tenant.prefix)[0]["n"] == 20
    rows = sql("SELECT count(*) AS n FROM audit WHERE prefix = $1 AND action = 'create'",
               tenant.prefix)
    assert rows[0]["n"] == 20
    assert requests.put(tenant.handle_url("G-DOOMED"), json=_value(99),
                        headers=tenant.op.bearer).status_code == 201   # the fault is gone


def test_acknowledged_writes_survive_kill_9_of_idres_and_postgres() -> None:
    """Writes go on at 32 connections; idres and then PostgreSQL are killed with SIGKILL.
    Every write acknowledged before that is there after PostgreSQL restarts, with its
    audit row."""
    from resolver.pg.embedded import EmbeddedPostgres
    from resolver.pg.pool import _ensure_database, migrate_dsn

    root = make_temp_dir()
    pg = EmbeddedPostgres(root / "data")
    try:
        dsn = pg.start()
        asyncio.run(_ensure_database(dsn))
        asyncio.run(migrate_dsn(dsn))
        admin = run_cli("operator", "create", "kill-admin", "--admin", "--json", dsn=dsn)
        token = json.loads(admin.stdout)["token"]
        run_cli("prefix", "create", "88.77", "--owner", "kill-admin", dsn=dsn)
        srv = Server(dsn).wait_ready()
        acked: list[str] = []
        children: list[int] = []

        async def write_until_killed() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession() as session:
                async def worker(w: int) -> None:
                    for n in range(10_000):
                        key = f"88.77/K-{w}-{n}"
                        try:
                            async with session.put(f"{srv.url}/api/handles/{key}",
                                                   json=_value(n), headers=headers) as r:
                                if r.status == 201:
                                    acked.append(key)
                        except (TimeoutError, aiohttp.ClientError):
                            return
                await asyncio.gather(*(worker(w) for w in range(32)))

        async def killer() -> None:
            while len(acked) < 300:
                await asyncio.sleep(0.05)
            os.kill(srv.proc.pid, signal.SIGKILL)
            postmaster = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
            children.extend(_children(postmaster))
            os.kill(postmaster, signal.SIGKILL)

        async def both() -> None:
            await asyncio.gather(write_until_killed(), killer())

        asyncio.run(both())
        srv.proc.wait(10)
        _gone(children, 10)
        dsn = pg.start()                  # crash recovery replays the WAL
        stored = {r["handle"] for r in run_sql(dsn, "SELECT handle FROM handles "
                                                    "WHERE prefix = '88.77'")}
        audited = {r["handle"] for r in run_sql(dsn, "SELECT handle FROM audit "
                                                     "WHERE prefix = '88.77'")}
        assert len(acked) >= 300
        assert set(acked) <= stored and set(acked) <= audited
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _gone(pids: list[int], seconds: float) -> None:
    """Wait for ``pids`` to exit (backends leave soon after their postmaster dies), then
    kill what is left."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_value_writes_share_transactions_too(tenant: Tenant, server: Server, sql: Any) -> None:
    """``PUT ?index=`` (a status update) goes in groups as well: each adds or replaces
    its values on its own record, a missing record or a taken index is refused alone."""
    for n in range(20):
        assert requests.put(tenant.handle_url(f"V-{n}"), json=_value(n),
                            headers=tenant.op.bearer).status_code == 201
    groups, writes = (_metric(server, "idres_write_groups_total"),
                      _metric(server, "idres_write_group_writes_total"))
    status = [{"index": 2, "type": "order.status", "data": "shipped"}]
    calls = [(tenant.handle_url(f"V-{n}") + "?index=2", status, tenant.op.bearer)
             for n in range(20)]
    calls += [(tenant.handle_url("V-NONE") + "?index=2", status, tenant.op.bearer),
              (tenant.handle_url("V-0") + "?index=1&overwrite=false",
               [{"index": 1, "type": "URL", "data": "https://example.org/other"}],
               tenant.op.bearer)]
    got = asyncio.run(_put_all(calls))
    assert [s for s, _ in got[:20]] == [200] * 20, got
    assert got[20][0] == 404 and got[21][0] == 409, got[20:]
    assert _metric(server, "idres_write_group_writes_total") - writes == 22
    assert _metric(server, "idres_write_groups_total") - groups < 22
    for n in (0, 19):
        values = requests.get(tenant.handle_url(f"V-{n}")).json()["values"]
        assert [(v["index"], v["data"]["value"]) for v in values] == [
            (1, f"https://example.org/g/{n}"), (2, "shipped")]
    rows = sql("SELECT count(*) AS n FROM audit WHERE prefix = $1 AND action = 'add_values'",
               tenant.prefix)
    assert rows[0]["n"] == 20


def test_a_refused_write_takes_no_code_and_bad_data_is_refused_alone(
        tenant: Tenant, server: Server, sql: Any) -> None:
    """Within a group, a write refused for its own problems does not hold a unique code
    against another write; NUL characters and indexed values too long to index are clear
    400s for that write only."""
    h = template(tenant, "META_CODES", [{"type": "g.code", "unique": True, "required": True},
                                        {"type": "g.qty", "datatype": "integer"}])

    def rec(code: str, qty: str = "1") -> dict[str, Any]:
        return {"template": h, "values": [{"index": 1, "type": "g.code", "data": code},
                                          {"index": 2, "type": "g.qty", "data": qty}]}
    calls = [(tenant.handle_url("C-BAD"), rec("C1", "many"), tenant.op.bearer),
             (tenant.handle_url("C-GOOD"), rec("C1"), tenant.op.bearer),
             (tenant.handle_url("C-NUL"), [{"index": 1, "type": "URL", "data": "a\u0000b"}],
              tenant.op.bearer),
             (tenant.handle_url("C-LONG"), rec("L" * 1500), tenant.op.bearer)]
    calls += [(tenant.handle_url(f"C-{n}"), _value(n), tenant.op.bearer) for n in range(10)]
    got = asyncio.run(_put_all(calls))
    bad, good, nul, long_ = got[:4]
    assert bad[0] == 400 and good[0] == 201, (bad, good)
    assert nul[0] == 400 and "U+0000" in nul[1]["message"], nul
    assert long_[0] == 400 and "at most 1000 bytes" in long_[1]["errors"][0]["message"], long_
    assert [s for s, _ in got[4:]] == [201] * 10
    stored = {r["handle"] for r in sql("SELECT handle FROM handles WHERE prefix = $1",
                                       tenant.prefix)}
    assert {f"{tenant.prefix}/C-BAD", f"{tenant.prefix}/C-NUL",
            f"{tenant.prefix}/C-LONG"}.isdisjoint(stored)
    assert f"{tenant.prefix}/C-GOOD" in stored
