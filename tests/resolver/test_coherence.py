"""Cache coherence, coalescing, negative caching and the memory bound, on real processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from resolver.cache import AnswerCache
from resolver.lookup import Resolver
from resolver.pg.pool import create_pool
from tests.conftest import Server, Tenant

URL = [{"index": 1, "type": "URL", "data": "https://example.org/v0"}]


def metric(server: Server, name: str) -> float:
    for line in requests.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


@pytest.fixture(scope="module")
def second(pg_dsn: str) -> Iterator[Server]:
    """Another server process on the same database (another node or worker)."""
    srv = Server(pg_dsn, "--negative-ttl", "1", "--cache-entries", "10").wait_ready()
    yield srv
    assert srv.stop() == 0, srv.output()


def test_concurrent_misses_make_one_query(pg_dsn: str, tenant: Tenant) -> None:
    for i in range(5):
        requests.put(tenant.handle_url(f"CO{i}"), json=URL, headers=tenant.op.bearer)

    async def go() -> None:
        pool = await create_pool(pg_dsn)
        try:
            r = Resolver(pool, AnswerCache())
            key = f"{tenant.prefix}/CO0"
            c = r.coalescer
            got = await asyncio.gather(*(c.local(key) for _ in range(50)))
            assert c.queries == 1
            assert all(v[0] is not None and b"/v0" in v[0] for v in got)
            keys = [f"{tenant.prefix}/CO{i}" for i in range(5)] + [f"{tenant.prefix}/NONE"]
            many = await c.local_many(keys * 3)
            assert c.queries == 2          # one query for the 5 misses
            assert many[f"{tenant.prefix}/NONE"][0] is None
            await c.local_many(keys)
            assert c.queries == 2          # all cached now, negative entry included
        finally:
            await pool.close()

    asyncio.run(go())


def test_a_reader_after_an_invalidation_does_not_join_the_read_it_tainted(
        pg_dsn: str, tenant: Tenant) -> None:
    """A read in flight when a write's notification arrives may predate the write: it is
    not cached, and a resolution that starts after the invalidation (after the write was
    acknowledged) asks again instead of sharing its answer."""
    r = requests.put(tenant.handle_url("TJ"), json=URL, headers=tenant.op.bearer)
    assert r.status_code in (200, 201), r.text

    async def go() -> None:
        pool = await create_pool(pg_dsn)
        try:
            c = Resolver(pool, AnswerCache()).coalescer
            key = f"{tenant.prefix}/TJ"
            early = asyncio.ensure_future(c.local(key))
            for _ in range(10):              # the read leaves (a few loop turns)
                if c.queries:
                    break
                await asyncio.sleep(0)
            assert c.queries == 1 and not early.done()
            c.invalidate([key])              # a write committed meanwhile
            late = await c.local(key)
            assert c.queries == 2            # its own read, not the tainted one
            assert (await early)[1] is None  # the tainted read was not cached
            assert late[1] is not None and c.fresh(key) is late[1]
            # without the lease (a write may have been acknowledged by its running out,
            # unheard here), a read in flight is not shared either
            c.cache.evict(key)
            first = asyncio.ensure_future(c.local(key))
            for _ in range(10):
                if c.queries == 3:
                    break
                await asyncio.sleep(0)
            assert c.queries == 3 and not first.done()
            c.set_lease(0.0)
            await c.local(key)
            assert c.queries == 4
            await first
        finally:
            await pool.close()

    asyncio.run(go())


def test_misses_of_one_loop_turn_share_a_query(pg_dsn: str, tenant: Tenant) -> None:
    """Single resolutions of different identifiers, started together, are asked for in
    one query; each gets its own answer (or None), and a later one gets its own query."""
    for i in range(20):
        r = requests.put(tenant.handle_url(f"TU{i}"), headers=tenant.op.bearer,
                         json=[{"index": 1, "type": "URL", "data": f"https://example.org/tu{i}"}])
        assert r.status_code in (200, 201), r.text

    async def go() -> None:
        pool = await create_pool(pg_dsn)
        try:
            r = Resolver(pool, AnswerCache(max_entries=0))   # no cache: every call a miss
            keys = [f"{tenant.prefix}/TU{i}" for i in range(20)] + [f"{tenant.prefix}/NOPE"]
            c = r.coalescer
            got = await asyncio.gather(*(c.local(k) for k in keys))
            assert c.queries == 1
            for i, (public, _) in enumerate(got[:20]):
                assert public is not None and f"/tu{i}\"".encode() in public
            assert got[20][0] is None
            alone = await c.local(keys[3])
            assert c.queries == 2 and alone[0] == got[3][0]
        finally:
            await pool.close()

    asyncio.run(go())


def test_a_write_is_seen_at_once_by_another_process(tenant: Tenant, server: Server,
                                                    second: Server) -> None:
    h = f"/api/handles/{tenant.prefix}/COH"
    requests.put(server.url + h, json=URL, headers=tenant.op.bearer)
    for i in range(1, 30):
        assert requests.get(second.url + h).status_code == 200     # cached on the second
        r = requests.put(server.url + h + "?index=1", headers=tenant.op.bearer,
                         json=[{"index": 1, "type": "URL", "data": f"https://example.org/v{i}"}])
        assert r.status_code == 200
        # every process confirmed at once: no write waited for a lease to run out
        assert r.elapsed.total_seconds() < 1.0, r.elapsed
        got = requests.get(second.url + h).json()["values"][0]["data"]["value"]
        assert got == f"https://example.org/v{i}", f"stale answer after write {i}"
    requests.delete(server.url + h, headers=tenant.op.bearer)
    assert requests.get(second.url + h).status_code == 404


def test_negative_answers_are_cached_then_expire(tenant: Tenant, second: Server,
                                                 sql: Any) -> None:
    key = f"{tenant.prefix}/LATE"
    assert requests.get(f"{second.url}/api/handles/{key}").status_code == 404
    # written behind idres's back (no NOTIFY): the negative entry hides it for negative-ttl
    sql("""INSERT INTO handles (handle, prefix, "values") VALUES ($1, $2, $3)""", key,
        tenant.prefix, [{"index": 1, "type": "URL", "ttl": 60, "timestamp": 0,
                         "permissions": "1110", "data": {"format": "string", "value": "x"}}])
    assert requests.get(f"{second.url}/api/handles/{key}").status_code == 404
    time.sleep(1.1)
    assert requests.get(f"{second.url}/api/handles/{key}").status_code == 200


def test_the_entry_bound_is_honoured(tenant: Tenant, second: Server) -> None:
    before = metric(second, 'idres_cache_evictions_total{reason="size"}')
    for i in range(30):
        requests.put(tenant.handle_url(f"MEM{i}"), json=URL, headers=tenant.op.bearer)
        requests.get(f"{second.url}/api/handles/{tenant.prefix}/MEM{i}")
    assert metric(second, "idres_cache_entries") <= 10
    assert metric(second, 'idres_cache_evictions_total{reason="size"}') - before >= 20


def test_bulk_creation_clears_negative_answers_everywhere(tenant: Tenant, server: Server,
                                                         second: Server) -> None:
    keys = [f"{tenant.prefix}/BULKNEG-{i}" for i in range(3)]
    for srv in (server, second):
        for k in keys:
            assert requests.get(f"{srv.url}/api/handles/{k}").status_code == 404   # now cached
    r = requests.post(f"{server.url}/api/bulk", headers=tenant.op.bearer,
                      json=[{"handle": k, "values": URL} for k in keys])
    assert r.status_code == 201
    for srv in (server, second):
        for k in keys:
            assert requests.get(f"{srv.url}/api/handles/{k}").status_code == 200, srv.url


def test_zone_changes_forget_only_under_their_prefix(tenant: Tenant, server: Server,
                                                     second: Server, admin: Any) -> None:
    """A new prefix or delegation reaches the identifiers under it at once, in every
    process, and leaves the rest of the cache alone."""
    child = f"{tenant.prefix}.5"
    r = requests.post(f"{server.url}/api/prefixes", headers=tenant.op.bearer,
                      json={"prefix": child, "owner": tenant.op.name})
    assert r.status_code == 201, r.text
    inside, outside = f"{child}/C1", f"{tenant.prefix}/C2"
    for h in (inside, outside):
        assert requests.put(f"{tenant.url}/api/handles/{h}", json=URL,
                            headers=tenant.op.bearer).status_code == 201
        for _ in range(2):
            assert requests.get(f"{server.url}/api/handles/{h}").status_code == 200
    # a prefix allocated elsewhere: what is cached stays cached
    r = requests.post(f"{server.url}/api/prefixes", headers=admin.bearer,
                      json={"prefix": f"{tenant.prefix}0", "owner": tenant.op.name})
    assert r.status_code == 201, r.text
    hits = metric(server, "idres_cache_hits_total")
    for h in (inside, outside):
        assert requests.get(f"{server.url}/api/handles/{h}").status_code == 200
    assert metric(server, "idres_cache_hits_total") == hits + 2
    # delegating the child: its identifiers are referred at once, everywhere
    assert requests.get(f"{second.url}/api/handles/{inside}").status_code == 200
    key = requests.get(f"{server.url}/api/node").json()["publicKey"]
    r = requests.post(f"{server.url}/api/delegations", headers=tenant.op.bearer, json={
        "prefix": child, "servers": [{"url": "http://127.0.0.1:9", "key": key}], "ttl": 60})
    assert r.status_code == 201, r.text
    for srv in (server, second):
        r = requests.get(f"{srv.url}/api/handles/{inside}")
        assert r.status_code == 300 and r.json()["responseCode"] == 303, r.text
    hits = metric(server, "idres_cache_hits_total")
    assert requests.get(f"{server.url}/api/handles/{outside}").status_code == 200
    assert metric(server, "idres_cache_hits_total") == hits + 1
    requests.delete(f"{server.url}/api/delegations/{child}", headers=tenant.op.bearer)
    assert requests.get(f"{server.url}/api/handles/{inside}").status_code == 200


def test_zone_keys_and_eviction_under_a_prefix() -> None:
    from resolver.core.channel import ZONE_MARK, heartbeat_key, split_keys, zone_key
    assert split_keys(["88.1/A", zone_key("88.1"), "88.2/B", heartbeat_key("l1", 7)]) == (
        ["88.1/A", "88.2/B"], ["88.1"], False, [("l1", 7)])
    assert split_keys([ZONE_MARK]) == ([], [], True, [])
    cache = AnswerCache()
    for key in ("88.1/A", "88.1.5/B", "88.10/C", "88.1-x/D", "88/E"):
        cache.put(key, b"[]", 60)
    assert cache.evict_under(["88.1"]) == 2
    assert sorted(cache.keys()) == ["88.1-x/D", "88.10/C", "88/E"]


def test_a_writer_without_a_cache_waits_for_the_resolvers(pg_dsn: str, tenant: Tenant) -> None:
    """The CLI's writes (AckListener) return only once every resolver applied them: here a
    resolver in this very process, which can only catch up once the writer yields."""
    from registry.permissions import Principal
    from registry.prefixes import create_prefix
    from registry.store import Db
    from resolver.core.identifier import parse_prefix
    from resolver.acks import AckListener
    from resolver.invalidate import Invalidator

    async def go() -> None:
        pool = await create_pool(pg_dsn)
        resolver = Resolver(pool, AnswerCache())
        listener, writer = Invalidator(pg_dsn, resolver), AckListener(pg_dsn)
        await listener.start()
        await writer.start()
        try:
            child = f"{tenant.prefix}.77"
            resolver.cache.put(f"{child}/X", b"[]", 60)          # cached before the change
            actor = Principal(0, "cli:test", "", True)
            await create_prefix(Db(pool, writer), actor, parse_prefix(child), tenant.op.name)
            assert f"{child}/X" not in resolver.cache.keys()     # forgotten before we return
            assert resolver.zone.classify(parse_prefix(child))[0] == "local"
        finally:
            await writer.close()
            await listener.close()
            await pool.close()

    asyncio.run(go())


def test_operator_identity_writes_are_acknowledged_everywhere(server: Server, second: Server,
                                                              admin: Any) -> None:
    """An operator's identity handle, written by the registry (on create), goes through the
    one write transaction: another process that had cached "not found" answers the new
    record as soon as the creation is acknowledged."""
    name = f"ident-{time.monotonic_ns()}"
    handle = f"0.OPERATOR/{name}"
    assert requests.get(f"{second.url}/api/handles/{handle}").status_code == 404   # cached
    r = requests.post(f"{server.url}/api/operators", json={"name": name}, headers=admin.bearer)
    assert r.status_code == 201, r.text
    got = requests.get(f"{second.url}/api/handles/{handle}")
    assert got.status_code == 200 and got.json()["values"][0]["type"] == "HS_ADMIN"
    # a secret reset rewrites the record (its HS_SECKEY): acknowledged the same way
    secret = requests.post(f"{server.url}/api/operators/{name}/secret",
                           headers=admin.bearer).json()["secret"]
    assert requests.get(f"{second.url}/api/handles/{handle}").status_code == 200
    assert secret not in requests.get(f"{second.url}/api/handles/{handle}").text
