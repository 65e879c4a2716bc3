"""Resolution misses from streaming replicas, and read-your-writes across them
(resolver/replicas.py; docs/architecture.md, "Replicas"): real servers on loopback, a
replica delayed with ``recovery_min_apply_delay`` and one stopped."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import Operator, Server, Tenant, make_tenant, run_sql
from tests.registry.test_templates import put as put_typed
from tests.registry.test_templates import template
from tests.replicas.conftest import Replicated

_n = itertools.count(1)


def metric(server: Server, name: str, label: str = "") -> float:
    """The sum of the series ``name`` (those whose labels hold ``label``)."""
    total, seen = 0.0, False
    for line in requests.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        series = line.split(" ")[0]
        if series.split("{")[0] == name and label in series:
            total, seen = total + float(line.split()[-1]), True
    assert seen, f"no metric {name}{label}"
    return total


def tenant_on(server: Server, admin: Operator) -> Tenant:
    n = next(_n)
    return make_tenant(server, admin, f"rep-op-{n}-{int(time.time())}",
                       f"88.{700 + n}.{int(time.time()) % 100000}")


def url_value(n: int) -> list[dict[str, Any]]:
    return [{"index": 1, "type": "URL", "data": f"https://example.org/v{n}"}]


def put(t: Tenant, suffix: str, n: int) -> None:
    r = requests.put(t.handle_url(suffix), json={"values": url_value(n)},
                     headers=t.op.bearer, timeout=30)
    assert r.status_code in (200, 201), r.text


def version(t: Tenant, suffix: str) -> int | None:
    """The n of the record's URL as resolved now (None: not found)."""
    r = requests.get(f"{t.url}/api/handles/{t.prefix}/{suffix}", timeout=10)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return int(r.json()["values"][0]["data"]["value"].rsplit("v", 1)[1])


@pytest.fixture
def node(replicated: Replicated) -> Iterator[Any]:
    started: list[Server] = []

    def start(*replicas: str, extra: tuple[str, ...] = ()) -> Server:
        args = [a for dsn in replicas for a in ("--replica", dsn)]
        srv = Server(replicated.dsn, *args, *extra).wait_ready()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        assert srv.stop() == 0, srv.output()


def test_misses_are_answered_by_a_replica_once_it_has_replayed(replicated: Replicated,
                                                                node: Any) -> None:
    srv = node(replicated.fast.dsn)
    t = tenant_on(srv, replicated.admin)
    for i in range(20):
        put(t, f"R{i}", i)
    replicated.fast.wait_caught_up(replicated.dsn)
    time.sleep(0.3)  # a poll or two: the node learns where the replica is
    before = metric(srv, "idres_replica_reads_total")
    assert [version(t, f"R{i}") for i in range(20)] == list(range(20))
    assert metric(srv, "idres_replica_reads_total") - before >= 10
    health = requests.get(f"{srv.url}/healthz", timeout=10).json()
    assert health["status"] == "ok" and health["replicas"][0]["up"] is True
    assert "password" not in str(health) and replicated.dsn.split("@")[0] not in str(health)


@pytest.mark.parametrize("cache", ["on", "off", "two workers"])
def test_a_lagging_replica_never_answers_older_than_an_acknowledged_write(
        replicated: Replicated, node: Any, cache: str) -> None:
    """The slow replica applies commits 1.5 s late. Every write is read back at once, and
    other identifiers are read meanwhile: no answer is older than the write before it, and
    the replica still answers for what was not written. With two workers, a write and
    the read after it may be served by different processes."""
    replicated.slow.set_delay(1500)
    try:
        extra = {"on": (), "off": ("--cache-entries", "0"),
                 "two workers": ("--workers", "2")}[cache]
        srv = node(replicated.slow.dsn, extra=extra)
        t = tenant_on(srv, replicated.admin)
        for i in range(10):
            put(t, f"STILL-{i}", 0)
        time.sleep(2.0)   # the replica has the records meant to be read from it
        reads_before = metric(srv, "idres_replica_reads_total")
        stale = 0
        for round_ in range(1, 16):
            put(t, "HOT", round_)              # acknowledged here
            got = version(t, "HOT")
            stale += got != round_
            put(t, f"NEW-{round_}", round_)    # a creation: never "not found" afterwards
            stale += version(t, f"NEW-{round_}") != round_
            for i in range(10):
                assert version(t, f"STILL-{i}") == 0
        r = requests.delete(t.handle_url("HOT"), headers=t.op.bearer, timeout=30)
        assert r.status_code == 200, r.text
        stale += version(t, "HOT") is not None
        assert stale == 0
        # the replica answered the identifiers no write had touched since it replayed them
        assert metric(srv, "idres_replica_reads_total") > reads_before
        assert metric(srv, "idres_replica_primary_reads_total", 'reason="behind"') \
            + metric(srv, "idres_replica_primary_reads_total", 'reason="held"') > 0
    finally:
        replicated.slow.set_delay(0)


def test_lookup_by_code_sees_a_write_a_lagging_replica_has_not(replicated: Replicated,
                                                               node: Any) -> None:
    replicated.slow.set_delay(1500)
    try:
        srv = node(replicated.slow.dsn)
        t = tenant_on(srv, replicated.admin)
        h = template(t, "META_SERIAL", [{"type": "asset.serial", "unique": True}])
        values = [{"index": 1, "type": "asset.serial", "data": "SN-1"}]
        assert put_typed(t, "A1", values, h).status_code == 201
        time.sleep(2.0)
        for n in range(2, 6):
            values = [{"index": 1, "type": "asset.serial", "data": f"SN-{n}"}]
            r = put_typed(t, "A1", values, h)
            assert r.status_code == 200, r.text
            found = requests.get(f"{srv.url}/api/lookup", params={
                "prefix": t.prefix, "type": "asset.serial", "value": f"SN-{n}"}, timeout=10)
            assert found.json()["handles"] == [f"{t.prefix}/A1"], found.text
    finally:
        replicated.slow.set_delay(0)


def test_a_stopped_replica_sends_its_reads_to_the_primary(replicated: Replicated,
                                                          node: Any) -> None:
    srv = node(replicated.fast.dsn, replicated.slow.dsn)
    slow = f":{replicated.slow.port}/"
    t = tenant_on(srv, replicated.admin)
    for i in range(10):
        put(t, f"S{i}", i)
    replicated.slow.stop("immediate")
    try:
        deadline = time.monotonic() + 10
        while metric(srv, "idres_replica_up", slow) and time.monotonic() < deadline:
            time.sleep(0.1)
        health = requests.get(f"{srv.url}/healthz", timeout=10).json()
        assert health["status"] == "degraded", health
        assert [r["up"] for r in health["replicas"]] == [True, False]
        for round_ in range(10, 20):
            put(t, "S0", round_)
            assert version(t, "S0") == round_
            assert [version(t, f"S{i}") for i in range(1, 10)] == list(range(1, 10))
    finally:
        replicated.slow.start()
    deadline = time.monotonic() + 15
    while not metric(srv, "idres_replica_up", slow) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(srv, "idres_replica_up", slow) == 1
    assert requests.get(f"{srv.url}/healthz", timeout=10).json()["status"] == "ok"
    # every replica down at once: answers from the primary, nothing lost
    replicated.fast.stop("immediate")
    replicated.slow.stop("immediate")
    try:
        put(t, "S1", 99)
        assert version(t, "S1") == 99
        assert [version(t, f"S{i}") for i in range(2, 10)] == list(range(2, 10))
    finally:
        replicated.fast.start()
        replicated.slow.start()


def test_a_replica_that_is_not_a_standby_is_never_read(replicated: Replicated,
                                                       node: Any) -> None:
    """A --replica that names a primary (a promoted standby, a mistake) answers nothing:
    its reads go to the primary, and health says it is down."""
    srv = node(replicated.dsn)
    t = tenant_on(srv, replicated.admin)
    put(t, "P1", 1)
    assert version(t, "P1") == 1
    assert metric(srv, "idres_replica_up") == 0
    assert metric(srv, "idres_replica_reads_total") == 0
    assert metric(srv, "idres_replica_primary_reads_total", 'reason="down"') >= 1
    assert "not a standby" in srv.output()


def test_a_replica_that_stops_answering_costs_at_most_its_timeout(replicated: Replicated,
                                                                  node: Any) -> None:
    """Its server frozen (SIGSTOP: connections open, nothing answers): a miss waits at most
    a second for it, then the primary answers; the next polls mark it down."""
    srv = node(replicated.slow.dsn, extra=("--cache-entries", "0", "--db-timeout", "2"))
    t = tenant_on(srv, replicated.admin)
    for i in range(5):
        put(t, f"F{i}", i)
    replicated.slow.wait_caught_up(replicated.dsn)
    time.sleep(0.3)
    before = metric(srv, "idres_replica_reads_total")
    assert version(t, "F0") == 0
    assert metric(srv, "idres_replica_reads_total") > before      # it was in use
    replicated.slow.freeze()
    try:
        for i in range(5):
            started = time.monotonic()
            assert version(t, f"F{i}") == i
            assert time.monotonic() - started < 1.8
        health = requests.get(f"{srv.url}/healthz", timeout=10).json()
        assert health["status"] == "degraded" and health["replicas"][0]["up"] is False
        assert metric(srv, "idres_replica_primary_reads_total", 'reason="failed"') \
            + metric(srv, "idres_replica_primary_reads_total", 'reason="down"') >= 5
    finally:
        replicated.slow.thaw()
    deadline = time.monotonic() + 15
    while not metric(srv, "idres_replica_up") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(srv, "idres_replica_up") == 1


def test_a_listener_cut_while_a_replica_lags_sends_reads_to_the_primary(
        replicated: Replicated, node: Any) -> None:
    """The LISTEN connection terminated just before each write (it misses the write's
    notification): the write is acknowledged when the lease runs out, and the process,
    without a lease, then after a reconnection that resets every position, never takes
    the old record from the lagging replica."""
    replicated.slow.set_delay(4000)     # longer than a lease (2 s): the write's wait
    try:
        srv = node(replicated.slow.dsn, extra=("--cache-entries", "0"))
        t = tenant_on(srv, replicated.admin)
        put(t, "CUT", 0)
        time.sleep(4.5)
        for round_ in range(1, 6):
            run_sql(replicated.dsn, "SELECT count(pg_terminate_backend(pid)) FROM "
                    "pg_stat_activity WHERE application_name = 'idres-listener'")
            put(t, "CUT", round_)
            assert version(t, "CUT") == round_
            time.sleep(0.3)
            assert version(t, "CUT") == round_
        assert metric(srv, "idres_invalidate_reconnects_total") >= 5
        assert metric(srv, "idres_replica_primary_reads_total", 'reason="lease"') \
            + metric(srv, "idres_replica_primary_reads_total", 'reason="held"') \
            + metric(srv, "idres_replica_primary_reads_total", 'reason="behind"') >= 10
    finally:
        replicated.slow.set_delay(0)


def test_a_primary_that_takes_no_writes_for_a_moment_answers_503(replicated: Replicated,
                                                                 node: Any) -> None:
    """pg_auto_failover holds a new primary read-only until it is sure the old one is
    gone (default_transaction_read_only): writes meanwhile get 503, not 500, nothing is
    half-stored, and once it takes writes again they succeed on new connections."""
    srv = node()
    t = tenant_on(srv, replicated.admin)
    put(t, "RO", 1)
    run_sql(replicated.dsn, "ALTER SYSTEM SET default_transaction_read_only = on")
    run_sql(replicated.dsn, "SELECT pg_reload_conf()")
    try:
        time.sleep(0.3)
        for n in range(2, 6):
            r = requests.put(t.handle_url("RO"), json={"values": url_value(n)},
                             headers=t.op.bearer, timeout=30)
            assert r.status_code == 503 and r.json()["responseCode"] == 3, r.text
        assert version(t, "RO") == 1
    finally:
        run_sql(replicated.dsn, "ALTER SYSTEM RESET default_transaction_read_only")
        run_sql(replicated.dsn, "SELECT pg_reload_conf()")
    time.sleep(0.3)
    put(t, "RO", 7)
    assert version(t, "RO") == 7
    assert "Traceback" not in srv.output()
