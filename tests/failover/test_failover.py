"""idres on a pg_auto_failover formation: the primary is killed (keeper and server, as a
node dies) during writes and during a bulk load; idres follows the new primary by itself
(a multi-host DSN with target_session_attrs=read-write, its pool and listener
reconnecting), no acknowledged write is lost, a cut bulk load is all or nothing, and no
answer is older than an acknowledged write, from the cache or from the standby it
reads. ``-m long`` runs 100 failovers in a row (the figure of docs/deploy.md)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import requests

from tests.conftest import Server, Tenant, make_tenant, run_sql
from tests.failover.conftest import Formation
from tests.replicas.test_replicas import metric

URL = "https://example.org/order/{}"


def replicas(f: Formation) -> list[str]:
    """Every node as a replica: whichever is the standby answers misses (the primary
    answers its polls as a primary: idres counts it down, not broken)."""
    return [a for node in f.nodes for a in ("--replica", node)]


def tenant_on(server: Server, f: Formation, n: int) -> Tenant:
    return make_tenant(server, f.admin, f"fo-op-{n}-{os.getpid()}-{int(time.time())}",
                       f"88.{900 + n}.{int(time.time()) % 100000}")


@dataclass
class Writes:
    """A writer: each write creates W<i> and sets HOT to i; what was acknowledged."""

    t: Tenant
    acked: dict[str, int] = field(default_factory=dict)
    ack_times: list[float] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)   # status -> count
    stale: int = 0          # a GET of HOT older than the newest acknowledged HOT
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        session = requests.Session()
        i = 0
        while not self.stop.is_set():
            i += 1
            ok = True
            for suffix in (f"W{i}", "HOT"):
                body = {"values": [{"index": 1, "type": "URL", "data": URL.format(i)}]}
                try:
                    r = session.put(self.t.handle_url(suffix), json=body,
                                    headers=self.t.op.bearer, timeout=30)
                    status = r.status_code
                except requests.RequestException:
                    status = 0
                if status in (200, 201):
                    self.acked[suffix] = i
                    self.ack_times.append(time.monotonic())
                else:
                    self.refused[status] = self.refused.get(status, 0) + 1
                    ok = False
                    break
            if ok:
                self.check_hot(session)
            else:
                time.sleep(0.05)

    def check_hot(self, session: requests.Session) -> None:
        floor = self.acked.get("HOT", 0)
        try:
            r = session.get(f"{self.t.url}/api/handles/{self.t.prefix}/HOT", timeout=30)
        except requests.RequestException:
            return
        if r.status_code == 200:
            seen = int(r.json()["values"][0]["data"]["value"].rsplit("/", 1)[1])
            self.stale += seen < floor


def through_failover(f: Formation, writes: Writes, before: float = 1.5,
                     after: float = 2.0, limit: float = 90) -> float:
    """Writes go on; the primary is killed; returns the seconds from the kill to the
    first write acknowledged after it (writes go on ``after`` seconds more)."""
    worker = threading.Thread(target=writes.run, daemon=True)
    worker.start()
    try:
        time.sleep(before)
        killed = f.kill_primary()
        deadline = killed + limit
        while time.monotonic() < deadline and not [t for t in writes.ack_times if t > killed]:
            time.sleep(0.05)
        later = [t for t in writes.ack_times if t > killed]
        assert later, f"no write acknowledged {limit} s after the kill: {writes.refused}"
        time.sleep(after)
        return later[0] - killed
    finally:
        writes.stop.set()
        worker.join(60)


def lost(f: Formation, server: Server, writes: Writes) -> list[str]:
    """Acknowledged writes the new primary does not hold, or that idres answers older."""
    keys = {f"{writes.t.prefix}/{s}".upper(): v for s, v in writes.acked.items()}
    rows = retried(lambda: run_sql(
        f.dsn, 'SELECT handle, "values" FROM handles WHERE handle = ANY($1)', list(keys)))
    stored = {r["handle"]: int(r["values"][0]["data"]["value"].rsplit("/", 1)[1]) for r in rows}
    missing = [k for k, v in keys.items() if stored.get(k) != v]
    for suffix, v in writes.acked.items():
        r = retried(lambda: answered(f"{server.url}/api/handles/{writes.t.prefix}/{suffix}"))
        if r.status_code != 200 or r.json()["values"][0]["data"]["value"] != URL.format(v):
            missing.append(f"{suffix} answered {r.status_code} {r.text[:80]}")
    return missing


def answered(url: str) -> requests.Response:
    """A GET that idres answered (503: no writable node yet, asked again by retried)."""
    r = requests.get(url, timeout=30)
    if r.status_code == 503:
        raise ConnectionError(r.text)
    return r


def retried(read: Any, limit: float = 60) -> Any:
    """``read()`` again while no node takes connections as the DSN asks: pg_auto_failover
    holds a new primary read-only for a moment while it makes sure the old one is gone."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return read()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_idres_follows_a_failover_and_loses_no_acknowledged_write(formation: Formation) -> None:
    srv = Server(formation.dsn, *replicas(formation), "--db-timeout", "2",
                 env={"IDRES_LEASE": "1"}).wait_ready()
    try:
        writes = Writes(tenant_on(srv, formation, 1))
        took = through_failover(formation, writes)
        print(f"failover: first acknowledged write {took:.2f} s after the kill; "
              f"{len(writes.acked)} identifiers, refused meanwhile {writes.refused}")
        assert len(writes.acked) > 10
        assert lost(formation, srv, writes) == []
        assert writes.stale == 0
        # refusals during the outage were clear (503), never a 500
        assert set(writes.refused) <= {503, 0}, (writes.refused, srv.output()[-6000:])
        health = requests.get(f"{srv.url}/healthz", timeout=10).json()
        assert health["database"] == "ok"
        formation.restore()
        # the old primary is the standby now: read again once it is back
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            health = requests.get(f"{srv.url}/healthz", timeout=10).json()
            if health["status"] == "ok":
                break
            time.sleep(0.5)
        assert health["status"] == "ok", health
        assert [r["up"] or r["primary"] for r in health["replicas"]] == [True, True]
        # the old primary, the standby now, answers misses once it has replayed them
        t = writes.t
        for n in range(20):
            r = requests.put(t.handle_url(f"AFTER{n}"), headers=t.op.bearer, timeout=30,
                             json={"values": [{"index": 1, "type": "URL", "data": URL.format(n)}]})
            assert r.status_code == 201, r.text
        time.sleep(1.0)
        before = metric(srv, "idres_replica_reads_total")
        for n in range(20):
            assert answered(f"{srv.url}/api/handles/{t.prefix}/AFTER{n}").status_code == 200
        assert metric(srv, "idres_replica_reads_total") > before
    finally:
        assert srv.stop() == 0, srv.output()


def test_a_bulk_load_cut_by_a_failover_is_all_or_nothing(formation: Formation) -> None:
    srv = Server(formation.dsn, "--db-timeout", "2").wait_ready()
    try:
        t = tenant_on(srv, formation, 2)
        records = [{"handle": f"{t.prefix}/B{i}", "values": [
            {"index": 1, "type": "URL", "data": URL.format(i)}]} for i in range(60_000)]
        outcome: dict[str, Any] = {}

        def load() -> None:
            try:
                r = requests.post(f"{srv.url}/api/bulk", json={"records": records},
                                  headers=t.op.bearer, timeout=120)
                outcome["status"], outcome["body"] = r.status_code, r.text[:300]
            except requests.RequestException as exc:
                outcome["status"], outcome["body"] = 0, str(exc)

        worker = threading.Thread(target=load)
        worker.start()
        time.sleep(0.4)
        formation.kill_primary()
        worker.join(150)
        count = lambda: run_sql(formation.dsn, "SELECT count(*) AS n FROM handles "  # noqa: E731
                                "WHERE handle LIKE $1", f"{t.prefix}/B%".upper())[0]["n"]
        deadline = time.monotonic() + 90
        while True:
            try:
                stored = count()
                break
            except Exception:  # noqa: BLE001 - the new primary is not there yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        print(f"bulk cut by a failover: {outcome}, {stored} stored")
        if outcome["status"] in (200, 201):
            assert stored == len(records)
        else:
            assert outcome["status"] in (0, 503), outcome
            assert stored == 0, f"{stored} of a refused bulk load stored"
            # the same load again, on the new primary: all of it
            deadline = time.monotonic() + 60
            while True:
                load()
                if outcome["status"] in (200, 201) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert outcome["status"] in (200, 201), outcome
            assert count() == len(records)
    finally:
        assert srv.stop() == 0, srv.output()
        formation.restore()


@pytest.mark.long
@pytest.mark.timeout(6000)
def test_a_hundred_failovers_lose_no_acknowledged_write(formation: Formation) -> None:
    rounds = int(os.environ.get("IDRES_FAILOVERS", "100"))
    srv = Server(formation.dsn, *replicas(formation), "--db-timeout", "2",
                 env={"IDRES_LEASE": "1"}).wait_ready()
    times: list[float] = []
    total = missing = stale = 0
    try:
        for n in range(rounds):
            writes = Writes(tenant_on_retry(srv, formation, 100 + n))
            times.append(through_failover(formation, writes, before=1.0, after=1.0))
            gone = lost(formation, srv, writes)
            total, missing, stale = total + len(writes.acked), missing + len(gone), \
                stale + writes.stale
            formation.restore()
            print(f"failover {n + 1}: {times[-1]:.2f} s, {len(writes.acked)} acknowledged, "
                  f"lost {len(gone)}, stale {writes.stale}", flush=True)
    finally:
        assert srv.stop() == 0, srv.output()
    times.sort()
    print(f"{rounds} failovers: first write after the kill median {times[len(times) // 2]:.2f} s, "
          f"max {times[-1]:.2f} s; {total} identifiers acknowledged, {missing} lost, "
          f"{stale} stale answers")
    assert missing == 0 and stale == 0


def tenant_on_retry(server: Server, f: Formation, n: int) -> Tenant:
    deadline = time.monotonic() + 30
    while True:
        try:
            return tenant_on(server, f, n)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
