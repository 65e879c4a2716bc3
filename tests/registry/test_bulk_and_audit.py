"""Bulk registration (all or nothing, COPY) and the append-only audit trail."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import requests

from tests.conftest import Server, Tenant


def records(t: Tenant, n: int, tag: str = "B") -> list[dict[str, Any]]:
    return [{"handle": f"{t.prefix}/{tag}-{i:05d}", "values": [
        {"index": 1, "type": "URL", "data": f"https://wms.example/batch/{i}"},
        {"index": 2, "type": "batch.material", "data": "steel-304"},
    ]} for i in range(n)]


def count(sql: Any, prefix: str) -> int:
    return int(sql("SELECT count(*) AS n FROM handles WHERE prefix = $1", prefix)[0]["n"])


def test_bulk_registers_thousands_in_one_request(tenant: Tenant, sql: Any) -> None:
    r = requests.post(f"{tenant.url}/api/bulk", json={"records": records(tenant, 5000)},
                      headers=tenant.op.bearer)
    assert r.status_code == 201, r.text
    assert r.json()["count"] == 5000 and r.json()["created"] == 5000
    assert count(sql, tenant.prefix) == 5000
    got = requests.get(tenant.handle_url("B-04999")).json()
    assert got["values"][0]["data"]["value"] == "https://wms.example/batch/4999"
    n = sql("SELECT count(*) AS n FROM audit WHERE prefix = $1 AND action = 'create'",
            tenant.prefix)[0]["n"]
    assert n == 5000


def test_bulk_is_all_or_nothing(tenant: Tenant, sql: Any) -> None:
    requests.post(f"{tenant.url}/api/bulk", json=records(tenant, 3), headers=tenant.op.bearer)
    # one existing identifier among new ones: nothing of the batch is written
    batch = records(tenant, 10, "N") + records(tenant, 1)
    r = requests.post(f"{tenant.url}/api/bulk", json=batch, headers=tenant.op.bearer)
    assert r.status_code == 409 and r.json()["responseCode"] == 101
    assert f"{tenant.prefix}/B-00000" in r.json()["message"]
    assert count(sql, tenant.prefix) == 3
    # one invalid record: 400 naming it, nothing written
    bad = records(tenant, 10, "V")
    bad[7]["values"][1]["index"] = 1
    r = requests.post(f"{tenant.url}/api/bulk", json=bad, headers=tenant.op.bearer)
    assert r.status_code == 400
    assert r.json()["message"].startswith(f"record 7 ({tenant.prefix}/V-00007): duplicate index 1")
    # the same identifier twice in one request
    r = requests.post(f"{tenant.url}/api/bulk", json=records(tenant, 2, "D") * 2,
                      headers=tenant.op.bearer)
    assert r.status_code == 400 and "appears twice" in r.json()["message"]
    assert count(sql, tenant.prefix) == 3


def test_bulk_overwrite_replaces_and_audits_before(tenant: Tenant, sql: Any) -> None:
    requests.post(f"{tenant.url}/api/bulk", json=records(tenant, 2), headers=tenant.op.bearer)
    batch = records(tenant, 4)
    for rec in batch:
        rec["values"][1]["data"] = "aluminium"
    r = requests.post(f"{tenant.url}/api/bulk?overwrite=true", json={"handleRecords": {
        rec["handle"]: {"values": rec["values"]} for rec in batch}}, headers=tenant.op.bearer)
    assert r.status_code == 201 and (r.json()["created"], r.json()["replaced"]) == (2, 2)
    rows = sql("SELECT action, before, after FROM audit WHERE handle = $1 ORDER BY id",
               f"{tenant.prefix}/B-00000")
    assert [r["action"] for r in rows] == ["create", "replace"]
    assert rows[1]["before"][1]["data"]["value"] == "steel-304"
    assert rows[1]["after"][1]["data"]["value"] == "aluminium"


def test_bulk_limits(tenant: Tenant, server: Server) -> None:
    r = requests.post(f"{server.url}/api/bulk", json=[], headers=tenant.op.bearer)
    assert r.status_code == 400 and "no records" in r.json()["message"]
    r = requests.post(f"{server.url}/api/bulk", json={"x": 1}, headers=tenant.op.bearer)
    assert r.status_code == 400


def test_every_write_is_audited_with_before_and_after(tenant: Tenant) -> None:
    h = tenant.handle_url("AUD")
    requests.put(h, json=[{"index": 1, "type": "URL", "data": "u1"}], headers=tenant.op.bearer)
    requests.put(h + "?index=2", json=[{"index": 2, "type": "A", "data": "a"}],
                 headers=tenant.op.bearer)
    requests.delete(h + "?index=2", headers=tenant.op.bearer)
    requests.delete(h, headers=tenant.op.bearer)
    r = requests.get(f"{tenant.url}/api/audit", params={"handle": f"{tenant.prefix}/AUD"},
                     headers=tenant.op.bearer)
    entries = r.json()["entries"]
    assert [e["action"] for e in entries] == ["delete", "remove_values", "add_values", "create"]
    assert all(e["actor"] == tenant.op.name for e in entries)
    assert entries[0]["after"] is None and len(entries[0]["before"]) == 1
    assert entries[3]["before"] is None
    assert requests.get(f"{tenant.url}/api/audit", params={"handle": f"{tenant.prefix}/AUD"}
                        ).status_code == 401


def _trail(t: Tenant, suffix: str) -> list[dict[str, Any]]:
    r = requests.get(f"{t.url}/api/audit", params={"handle": f"{t.prefix}/{suffix}"},
                     headers=t.op.bearer)
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["entries"]))


def _data(values: list[dict[str, Any]] | None) -> list[str] | None:
    return None if values is None else [v["data"]["value"] for v in values]


def test_a_creation_row_refers_to_the_record_and_shows_it_as_created(
        tenant: Tenant, sql: Any) -> None:
    """A creation's audit row stores no copy of the record (after NULL: bytes per
    identifier); the trail still shows every creation as it was, whatever came after it:
    created in bulk, by PUT, replaced, changed value by value, deleted and created again,
    the identity's secret reset."""
    bearer = tenant.op.bearer
    assert requests.post(f"{tenant.url}/api/bulk", json=records(tenant, 3, "R"),
                         headers=bearer).status_code == 201
    first = ["https://wms.example/batch/0", "steel-304"]
    # untouched since: the record as it is now
    assert _data(_trail(tenant, "R-00000")[0]["after"]) == first
    # replaced by PUT, then a value added, then the record deleted and made again by PUT
    h = tenant.handle_url("R-00000")
    assert requests.put(h, json=[{"index": 1, "type": "URL", "data": "u2"}],
                        headers=bearer).status_code in (200, 201)
    assert requests.put(h + "?index=2", json=[{"index": 2, "type": "A", "data": "a"}],
                        headers=bearer).status_code in (200, 201)
    assert requests.delete(h, headers=bearer).status_code == 200
    assert requests.put(h, json=[{"index": 1, "type": "URL", "data": "u3"}],
                        headers=bearer).status_code == 201
    trail = _trail(tenant, "R-00000")
    assert [e["action"] for e in trail] == ["create", "replace", "add_values", "delete",
                                            "create"]
    assert [_data(e["after"]) for e in trail if e["action"] == "create"] == [first, ["u3"]]
    assert _data(trail[1]["before"]) == first and _data(trail[1]["after"]) == ["u2"]
    # moves change no values: replaced by another, active again, then replaced by PUT
    moved = f"{tenant.url}/api/lifecycle/{tenant.prefix}/R-00002"
    assert requests.post(moved, json={"state": "replaced", "successor":
                                      f"{tenant.prefix}/R-00001"}, headers=bearer).status_code == 200
    assert requests.post(moved, json={"state": "active"}, headers=bearer).status_code == 200
    assert requests.put(tenant.handle_url("R-00002"), json=[
        {"index": 1, "type": "URL", "data": "v2"}], headers=bearer).status_code == 200
    trail = _trail(tenant, "R-00002")
    assert [e["action"] for e in trail] == ["create", "state_replaced", "state_active", "replace"]
    assert _data(trail[0]["after"]) == ["https://wms.example/batch/2", "steel-304"]
    # stored: no copy in any creation row
    assert sql("SELECT count(*) AS n FROM audit WHERE handle = $1 AND action = 'create' "
               "AND after IS NOT NULL", f"{tenant.prefix}/R-00000")[0]["n"] == 0
    # by PUT, then replaced in bulk with overwrite
    h1 = tenant.handle_url("P-1")
    requests.put(h1, json=[{"index": 1, "type": "URL", "data": "p1"}], headers=bearer)
    assert _data(_trail(tenant, "P-1")[0]["after"]) == ["p1"]
    r = requests.post(f"{tenant.url}/api/bulk?overwrite=true", json=[
        {"handle": f"{tenant.prefix}/P-1", "values": [{"index": 1, "type": "URL", "data": "p2"}]},
        {"handle": f"{tenant.prefix}/P-2", "values": [{"index": 1, "type": "URL", "data": "q"}]}],
        headers=bearer)
    assert r.status_code == 201, r.text
    assert [(e["action"], _data(e["after"])) for e in _trail(tenant, "P-1")] == [
        ("create", ["p1"]), ("replace", ["p2"])]
    assert [(e["action"], _data(e["after"])) for e in _trail(tenant, "P-2")] == [
        ("create", ["q"])]
    # changed by a value-level write and a removal: each keeps what it changed
    requests.put(tenant.handle_url("R-00001") + "?index=3",
                 json=[{"index": 3, "type": "C", "data": "c"}], headers=bearer)
    requests.delete(tenant.handle_url("R-00001") + "?index=1", headers=bearer)
    trail = _trail(tenant, "R-00001")
    assert [(e["action"], _data(e["after"])) for e in trail] == [
        ("create", ["https://wms.example/batch/1", "steel-304"]),
        ("add_values", ["https://wms.example/batch/1", "steel-304", "c"]),
        ("remove_values", ["steel-304", "c"])]


def test_audit_table_is_append_only(pg_dsn: str) -> None:
    import asyncio

    async def tamper() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute("UPDATE audit SET actor = 'someone else'")
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute("DELETE FROM audit")
        finally:
            await conn.close()

    asyncio.run(tamper())


def test_audit_trail_of_a_prefix(tenant: Tenant, server: Server, admin: Any) -> None:
    child = tenant.prefix + ".9"
    requests.post(f"{server.url}/api/prefixes", json={"prefix": child}, headers=tenant.op.bearer)
    requests.put(tenant.handle_url("PA"), json=[{"index": 1, "type": "URL", "data": "u"}],
                 headers=tenant.op.bearer)
    requests.put(f"{server.url}/api/handles/{child}/PB", headers=tenant.op.bearer,
                 json=[{"index": 1, "type": "URL", "data": "u"}])
    r = requests.get(f"{server.url}/api/audit", params={"prefix": tenant.prefix},
                     headers=tenant.op.bearer)
    entries = r.json()["entries"]
    # the prefix's own identifiers, not those of its child prefix
    assert [e["handle"] for e in entries if e["handle"]] == [f"{tenant.prefix}/PA"]
    r = requests.get(f"{server.url}/api/audit", params={"prefix": child}, headers=admin.bearer)
    got = [(e["action"], e["handle"]) for e in r.json()["entries"]]
    assert got == [("create", f"{child}/PB"), ("prefix_create", None)]


def test_bulk_overwrite_never_changes_a_retired_or_replaced_record(tenant: Tenant) -> None:
    """Untyped records too: a retired identifier is never changed or reused, and a replaced
    one is made active first; the whole request is refused, nothing of it stored."""
    bearer = tenant.op.bearer
    assert requests.post(f"{tenant.url}/api/bulk", json=records(tenant, 2, "L"),
                         headers=bearer).status_code == 201
    gone = f"{tenant.url}/api/lifecycle/{tenant.prefix}/L-00000"
    assert requests.post(gone, json={"state": "retired", "reason": "scrapped"},
                         headers=bearer).status_code == 200
    tombstone = requests.get(tenant.handle_url("L-00000")).json()
    batch = records(tenant, 2, "L") + records(tenant, 1, "M")
    r = requests.post(f"{tenant.url}/api/bulk?overwrite=true", json=batch, headers=bearer)
    assert r.status_code == 409 and "is retired" in r.json()["message"], r.text
    assert requests.get(tenant.handle_url("L-00000")).json() == tombstone
    assert requests.get(tenant.handle_url("M-00000")).status_code == 404


def test_records_stored_once_read_back_exactly(tenant: Tenant, sql: Any) -> None:
    """A record whose public view derives from its stored JSON is stored once (empty
    public_json) and resolves to the same values it was written with, non-ASCII, escapes
    and a "timestamp" inside a value included, by PUT and in bulk."""
    values = [{"index": 1, "type": "URL", "data": "https://e.example/订单?x=\"timestamp\":1"},
              {"index": 2, "type": "order.note", "data": "Ärger \\ \u2028 ✓"}]
    assert requests.put(tenant.handle_url("ONCE-P"), json=values,
                        headers=tenant.op.bearer).status_code == 201
    assert requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer, json=[
        {"handle": f"{tenant.prefix}/ONCE-B", "values": values}]).status_code == 201
    for suffix in ("ONCE-P", "ONCE-B"):
        key = f"{tenant.prefix}/{suffix}"
        assert sql("SELECT public_json FROM handles WHERE handle = $1", key)[0][
            "public_json"] == b""
        got = requests.get(tenant.handle_url(suffix)).json()["values"]
        assert [(v["index"], v["type"], v["data"]["value"]) for v in got] == [
            (v["index"], v["type"], v["data"]) for v in values]
        assert all("permissions" not in v and v["timestamp"].endswith("Z") for v in got)
