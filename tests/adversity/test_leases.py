"""No acknowledged write is ever hidden by a cache, with LISTEN connections cut at every
step of the protocol (resolver/core/channel.py), on three processes over one database:
``--workers 2`` plus a second instance whose every connection goes through a proxy
that can cut them or silently blackhole them. A fresh answer older than a write that
was acknowledged before the read began is a violation; an answer marked stale (RFC
8767) is allowed while a process cannot reach the database."""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.adversity.proxy import TcpProxy
from tests.conftest import Server, Tenant, run_sql

TERMINATE = """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE application_name = 'idres-listener'"""


@dataclass
class Cluster:
    workers: Server          # --workers 2, straight to the database
    far: Server              # another instance, every connection through ``proxy``
    proxy: TcpProxy
    dsn: str
    violations: list[str] = field(default_factory=list)
    stale_marked: int = 0
    reads: int = 0

    def terminate_listeners(self) -> int:
        return int(run_sql(self.dsn, TERMINATE)[0][0])


@pytest.fixture(scope="module")
def cluster(pg_dsn: str) -> Iterator[Cluster]:
    from tests.conftest import free_port

    parts = urlsplit(pg_dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    far_dsn = pg_dsn.replace(f":{parts.port}/", f":{proxy.port}/")
    lease = {"IDRES_LEASE": "1"}   # shorter than the default 2 s, to keep the suite quick
    workers = Server(pg_dsn, "--workers", "2", port=free_port(), env=lease).wait_ready()
    far = Server(far_dsn, "--db-timeout", "0.5", env=lease).wait_ready()
    yield Cluster(workers, far, proxy, pg_dsn)
    proxy.restore()
    for srv in (workers, far):
        assert srv.stop() == 0, srv.output()
    proxy.close()


def value(i: int) -> list[dict[str, Any]]:
    return [{"index": 1, "type": "URL", "data": f"https://example.org/v{i}"}]


def check(c: Cluster, url: str, newest: int, reads: int = 3) -> None:
    """Read ``reads`` times on new connections (so every worker is likely asked)."""
    for _ in range(reads):
        r = requests.get(url, timeout=15, headers={"Connection": "close"})
        c.reads += 1
        if r.status_code == 503:
            continue  # a miss the process could not answer: an error, not a stale answer
        body = r.json()
        if body.get("stale"):
            assert r.headers.get("Warning") == '110 - "Response is Stale"'
            c.stale_marked += 1
            continue
        got = int(body["values"][0]["data"]["value"].rsplit("v", 1)[1])
        if got < newest:
            c.violations.append(f"{url}: fresh v{got} after v{newest} was acknowledged")


def write(c: Cluster, tenant: Tenant, suffix: str, i: int) -> float:
    r = requests.put(f"{c.workers.url}/api/handles/{tenant.prefix}/{suffix}?index=1",
                     json=value(i), headers=tenant.op.bearer, timeout=30)
    assert r.status_code == 200, r.text
    return r.elapsed.total_seconds()


def test_a_silent_partition_cannot_hide_an_acknowledged_write(cluster: Cluster,
                                                            tenant: Tenant) -> None:
    """The far instance is cut off without noticing (blackhole): the writer waits its
    lease out, and from then on the far instance serves nothing cached as fresh."""
    c = cluster
    suffix = "PART"
    assert requests.put(f"{c.workers.url}/api/handles/{tenant.prefix}/{suffix}", json=value(0),
                        headers=tenant.op.bearer).status_code == 201
    far = f"{c.far.url}/api/handles/{tenant.prefix}/{suffix}"
    check(c, far, 0)                                       # cached on the far instance now
    assert requests.get(far).json()["values"][0]["data"]["value"].endswith("/v0")
    c.proxy.blackhole()
    try:
        waited = write(c, tenant, suffix, 1)
        assert waited >= 0.5, "the writer must outwait the silent process's lease"
        check(c, far, 1)
        check(c, f"{c.workers.url}/api/handles/{tenant.prefix}/{suffix}", 1)
        health = requests.get(f"{c.far.url}/healthz", timeout=15).json()
        assert health["cache"] == "off"
    finally:
        c.proxy.restore()
    deadline = time.monotonic() + 10
    while requests.get(f"{c.far.url}/healthz", timeout=15).json().get("status") != "ok":
        assert time.monotonic() < deadline, "the far instance did not come back"
        time.sleep(0.1)
    check(c, far, 1)
    assert c.violations == []
    assert c.stale_marked >= 1     # while cut off, the far instance said its answer was stale


def test_cuts_at_every_step_never_hide_an_acknowledged_write(cluster: Cluster,
                                                            tenant: Tenant) -> None:
    """Rounds of write-then-read; listeners terminated before the write, during it (from
    another thread, at random moments), after it, and the far instance's connections
    cut or blackholed around it."""
    c = cluster
    suffix = "CUTS"
    assert requests.put(f"{c.workers.url}/api/handles/{tenant.prefix}/{suffix}", json=value(0),
                        headers=tenant.op.bearer).status_code == 201
    urls = [f"{srv.url}/api/handles/{tenant.prefix}/{suffix}" for srv in (c.workers, c.far)]
    rng = random.Random(8)
    steps = ["none", "before", "during", "after", "far-cut", "far-blackhole"]
    rounds = int(os.environ.get("IDRES_CUT_ROUNDS", "24"))   # more by hand: e.g. 2000
    for i in range(1, rounds + 1):
        for url in urls:
            check(c, url, i - 1, reads=1)                  # warm: cached everywhere
        step = steps[i % len(steps)]
        if step == "before":
            c.terminate_listeners()
        elif step == "far-cut":
            c.proxy.cut()
        elif step == "far-blackhole":
            c.proxy.blackhole()
        cutter = None
        if step == "during":
            delay = rng.uniform(0, 0.01)
            cutter = threading.Timer(delay, c.terminate_listeners)
            cutter.start()
        write(c, tenant, suffix, i)
        if cutter is not None:
            cutter.join()
        if step == "after":
            c.terminate_listeners()
        for url in urls:
            check(c, url, i)
        c.proxy.restore()
    assert c.violations == [], c.violations
    assert c.reads >= rounds * 8
    print(f"\n{rounds} rounds, {c.reads} reads checked, {c.stale_marked} marked stale, "
          f"0 fresh answers older than an acknowledged write")


def test_the_listener_comes_back_after_a_burst_of_cuts(cluster: Cluster, tenant: Tenant) -> None:
    """Listeners terminated every 10 ms for 3 s: while it lasts /healthz says degraded and
    the metric says why; within about a second of the end every process listens again,
    with its cache on."""
    c = cluster
    seen_degraded = False
    ends = time.monotonic() + 3
    while time.monotonic() < ends:
        c.terminate_listeners()
        time.sleep(0.01)
        if not seen_degraded:
            health = requests.get(f"{c.far.url}/healthz", timeout=5).json()
            seen_degraded = health["status"] == "degraded" and health["cache"] == "off"
    stopped = time.monotonic()
    for srv in (c.workers, c.far):
        while True:
            health = requests.get(f"{srv.url}/healthz", timeout=5).json()
            metrics = requests.get(f"{srv.url}/metrics", timeout=5).text
            # (with workers, one scrape shows each worker's state: all must listen)
            listening = re.findall(r'idres_invalidate_state\{state="listening"[^}]*\} (\S+)',
                                   metrics)
            if health["status"] == "ok" and listening and set(listening) == {"1.0"}:
                break
            assert time.monotonic() - stopped < 2.0, (srv.url, health)
            time.sleep(0.05)
    assert seen_degraded
    # and coherent again: a write is seen everywhere at once
    suffix = "BURST"
    assert requests.put(f"{c.workers.url}/api/handles/{tenant.prefix}/{suffix}", json=value(5),
                        headers=tenant.op.bearer).status_code == 201
    for srv in (c.workers, c.far):
        check(c, f"{srv.url}/api/handles/{tenant.prefix}/{suffix}", 5)
    assert c.violations == []


def test_heartbeats_and_acknowledgements_take_turns(pg_dsn: str, tenant: Tenant) -> None:
    """Under a stream of writes the listener's heartbeats and acknowledgements share one
    connection (one query at a time): no write ever waits for a lease to run out and the
    listener is never dropped. (It was: asyncpg's "another operation is in progress"
    dropped the listener, retired the cache and made writers wait out leases.)"""
    from concurrent.futures import ThreadPoolExecutor

    srv = Server(pg_dsn, env={"IDRES_LEASE": "0.4"}).wait_ready()   # a heartbeat every 0.1 s
    try:
        url = f"{srv.url}/api/handles/{tenant.prefix}"
        assert requests.put(f"{url}/TURNS", json=value(0),
                            headers=tenant.op.bearer).status_code == 201

        def one(i: int) -> float:
            r = requests.put(f"{url}/TURNS?index=1", json=value(i), headers=tenant.op.bearer)
            assert r.status_code == 200
            return r.elapsed.total_seconds()

        with ThreadPoolExecutor(8) as pool:
            waits = list(pool.map(one, range(1, 241)))
        # no write outwaited a lease (the counter says so exactly; eight writers of one
        # record queue behind each other, so a slow machine alone makes a write slow)
        metrics = requests.get(f"{srv.url}/metrics").text
        counted = {line.split()[0]: float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith(("idres_invalidate_lease_waits_total",
                                       "idres_invalidate_reconnects_total"))}
        assert counted == {"idres_invalidate_lease_waits_total": 0.0,
                           "idres_invalidate_reconnects_total": 0.0}, counted
        assert "did not confirm a write" not in srv.output()
        assert max(waits) < 2.0, (sorted(waits)[-5:], run_sql(
            pg_dsn, "SELECT listener, expires - clock_timestamp() AS left FROM listener_leases "
            "WHERE expires > clock_timestamp()"), srv.output()[-2000:])
        assert "another operation is in progress" not in srv.output()
        assert "did not confirm" not in srv.output()
    finally:
        assert srv.stop() == 0, srv.output()


def test_a_revoked_grant_is_never_served_after_its_acknowledgement(cluster: Cluster,
                                                                  tenant: Tenant) -> None:
    """Readers' answers are derived from each process's cache and snapshot of grants
    (resolver/sharing.py): with listeners terminated around the revocation, or the far
    instance cut off or blackholed, no read sent after a revocation was acknowledged
    shows the revoked value, on any process."""
    c = cluster
    prefix = tenant.prefix
    r = requests.put(f"{c.workers.url}/api/handles/{prefix}/SHARED-R", headers=tenant.op.bearer,
                     json=[{"index": 1, "type": "unit.name", "data": "unit 1"},
                           {"index": 2, "type": "unit.area", "data": "80",
                            "classification": "shared"}])
    assert r.status_code == 201, r.text
    tag = str(time.monotonic_ns())
    token = requests.post(f"{c.workers.url}/api/readers", headers=tenant.op.bearer,
                          json={"name": f"lease-reader-{tag}"}).json()["token"]
    as_reader = {"Authorization": f"Bearer {token}", "Connection": "close"}
    urls = [f"{srv.url}/api/handles/{prefix}/SHARED-R" for srv in (c.workers, c.far)]
    leaks, granted_reads = [], 0
    for step in ["none", "before", "during", "after", "far-cut", "far-blackhole"]:
        g = requests.post(f"{c.workers.url}/api/grants", headers=tenant.op.bearer, json={
            "grantee": f"reader:lease-reader-{tag}", "scope": prefix, "types": "unit.area"})
        assert g.status_code == 201, g.text
        for url in urls:                        # cached, and derived, everywhere
            for _ in range(3):
                got = requests.get(url, headers=as_reader, timeout=15)
                if got.status_code == 200 and len(got.json()["values"]) == 2:
                    granted_reads += 1
        if step == "before":
            c.terminate_listeners()
        elif step == "far-cut":
            c.proxy.cut()
        elif step == "far-blackhole":
            c.proxy.blackhole()
        cutter = threading.Timer(0.002, c.terminate_listeners) if step == "during" else None
        if cutter is not None:
            cutter.start()
        assert requests.delete(f"{c.workers.url}/api/grants/{g.json()['id']}",
                               headers=tenant.op.bearer, timeout=30).status_code == 200
        if cutter is not None:
            cutter.join()
        if step == "after":
            c.terminate_listeners()
        for url in urls:
            for _ in range(3):
                got = requests.get(url, headers=as_reader, timeout=15)
                if got.status_code == 200 and any(v["type"] == "unit.area"
                                                  for v in got.json()["values"]):
                    leaks.append(f"{step}: {url} showed the revoked value")
        c.proxy.restore()
    assert leaks == [], leaks
    assert granted_reads >= 6 * 3    # the workers at least answered with the grant each time
