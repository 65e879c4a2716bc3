"""Authorized resolution (docs/sharing.md): readers, groups, grants, classifications;
each party sees exactly what it is granted, on every path tried here, and a change
takes effect on the next read."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import msgpack
import requests

from tests.conftest import Server, Tenant, new_operator, stored_values
from tests.registry.test_templates import put, template

ITEMS = [
    {"type": "order.product", "required": True},
    {"type": "order.quantity", "datatype": "integer", "classification": "shared"},
    {"type": "order.due", "datatype": "date", "classification": "shared"},
    {"type": "order.address", "classification": "shared"},
    {"type": "order.price", "datatype": "decimal", "classification": "private"},
    {"type": "order.ref", "unique": True, "classification": "shared"},
    {"type": "order.cost_code", "unique": True, "classification": "private"},
]


def order() -> list[dict[str, Any]]:
    return [{"index": 1, "type": "order.product", "data": "gearbox GX-200"},
            {"index": 2, "type": "order.quantity", "data": "500"},
            {"index": 3, "type": "order.due", "data": "2026-12-24"},
            {"index": 4, "type": "order.address", "data": "Dock 4, Ningbo port"},
            {"index": 5, "type": "order.price", "data": "1250.00"}]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def reader(t: Tenant, name: str, **extra: Any) -> str:
    r = requests.post(f"{t.url}/api/readers", headers=t.op.bearer, json={"name": name, **extra})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == name and "token" in r.json()
    token: str = r.json()["token"]
    return token


def grant(t: Tenant, grantee: str, scope: str, **extra: Any) -> requests.Response:
    return requests.post(f"{t.url}/api/grants", headers=t.op.bearer,
                         json={"grantee": grantee, "scope": scope, **extra})


def types_seen(t: Tenant, suffix: str, headers: dict[str, str], query: str = "") -> list[str]:
    r = requests.get(t.handle_url(suffix) + query, headers=headers)
    assert r.status_code == 200, r.text
    return [v["type"] for v in r.json()["values"]]


def test_supplier_and_carrier_see_exactly_what_they_are_granted(tenant: Tenant, sql: Any) -> None:
    tag = str(time.monotonic_ns())
    h = template(tenant, "TPL-SHARED-ORDER", ITEMS)
    codes = [{"index": 6, "type": "order.ref", "data": "PO-77"},
             {"index": 7, "type": "order.cost_code", "data": "CC-77"}]
    assert put(tenant, "ORDER-1", order() + codes, h).status_code == 201
    assert put(tenant, "ORDER-2", order(), h).status_code == 201
    supplier, carrier = reader(tenant, f"supplier-{tag}"), reader(tenant, f"carrier-{tag}")
    assert grant(tenant, f"reader:supplier-{tag}", tenant.prefix,
                 types="order.quantity").status_code == 201
    assert grant(tenant, f"reader:supplier-{tag}", tenant.prefix,
                 types="ORDER.DUE").status_code == 201             # types ignore case
    assert grant(tenant, f"reader:carrier-{tag}", f"{tenant.prefix}/ORDER-1",
                 types="order.addr*").status_code == 201

    anonymous = types_seen(tenant, "ORDER-1", {})
    assert anonymous == ["order.product"]
    assert types_seen(tenant, "ORDER-1", bearer(supplier)) == [
        "order.product", "order.quantity", "order.due"]
    assert types_seen(tenant, "ORDER-1", bearer(carrier)) == ["order.product", "order.address"]
    assert types_seen(tenant, "ORDER-1", bearer(supplier), "?type=order.ref") == []
    assert types_seen(tenant, "ORDER-2", bearer(carrier)) == ["order.product"]   # one identifier
    owner = types_seen(tenant, "ORDER-1", tenant.op.bearer)
    assert owner == ["order.product", "order.quantity", "order.due", "order.address",
                     "order.price", "order.ref", "order.cost_code"]
    # lookup by code finds an identifier only by a value the caller may read
    assert grant(tenant, f"reader:carrier-{tag}", tenant.prefix,
                 types="order.ref").status_code == 201

    def found(type_: str, value: str, headers: dict[str, str]) -> list[str]:
        r = requests.get(f"{tenant.url}/api/lookup", headers=headers, params={
            "prefix": tenant.prefix, "type": type_, "value": value})
        assert r.status_code == 200, r.text
        return list(r.json()["handles"])
    one = [f"{tenant.prefix}/ORDER-1"]
    assert found("order.ref", "PO-77", {}) == []
    assert found("order.ref", "PO-77", bearer(supplier)) == []
    assert found("order.ref", "PO-77", bearer(carrier)) == one
    assert found("order.cost_code", "CC-77", bearer(carrier)) == []
    assert found("order.cost_code", "CC-77", tenant.op.bearer) == one
    # a private value is never granted: not by type filter, not by index
    assert types_seen(tenant, "ORDER-1", bearer(supplier), "?type=order.price") == []
    assert types_seen(tenant, "ORDER-1", bearer(supplier), "?index=5") == []
    # nothing leaks through the cache: anonymous reads after authorized ones
    assert types_seen(tenant, "ORDER-1", {}) == anonymous
    r = requests.post(f"{tenant.url}/api/resolve", json={"handles": [f"{tenant.prefix}/ORDER-1"]})
    assert [v["type"] for v in r.json()["results"][0]["values"]] == anonymous
    # the classification is shown to who may see the value, and kept in the bits
    shown = requests.get(tenant.handle_url("ORDER-1"), headers=bearer(supplier)).json()
    assert shown["values"][1]["permissions"] == "1100"
    assert shown["values"][1]["classification"] == "shared"

    # revoking takes effect on the next read
    grants = requests.get(f"{tenant.url}/api/grants", headers=tenant.op.bearer,
                          params={"scope": tenant.prefix}).json()["grants"]
    quantity = next(g for g in grants if g["types"] == "order.quantity")
    assert requests.delete(f"{tenant.url}/api/grants/{quantity['id']}",
                           headers=tenant.op.bearer).status_code == 200
    assert types_seen(tenant, "ORDER-1", bearer(supplier)) == ["order.product", "order.due"]
    assert requests.delete(f"{tenant.url}/api/grants/{quantity['id']}",
                           headers=tenant.op.bearer).status_code == 404
    # a revoked reader is refused, and says so
    assert requests.delete(f"{tenant.url}/api/readers/carrier-{tag}",
                           headers=tenant.op.bearer).status_code == 200
    r = requests.get(tenant.handle_url("ORDER-1"), headers=bearer(carrier))
    assert r.status_code == 401 and "revoked" in r.json()["message"]
    assert carrier not in r.text
    # every step is in the audit trail, no token in it
    audit = sql(f"SELECT action, after::text AS a FROM audit WHERE action IN "
                f"('reader_create', 'reader_revoke', 'grant', 'grant_revoke') "
                f"AND after::text LIKE '%{tag}%' ORDER BY id")
    assert [r["action"] for r in audit][:2] == ["reader_create", "reader_create"]
    assert all(supplier not in r["a"] and carrier not in r["a"] for r in audit)
    assert sql("SELECT count(*) AS n FROM readers WHERE token_hash = "
               f"sha256('{supplier}'::bytea)")[0]["n"] == 1          # stored hashed


def test_groups_reach_members_of_other_enterprises(tenant: Tenant, server: Server,
                                                   admin: Any) -> None:
    tag = str(time.monotonic_ns())
    h = template(tenant, "TPL-CITY", ITEMS)
    assert put(tenant, "UNIT-1", order(), h).status_code == 201
    other = new_operator(server, admin, f"city-{tag}")          # another enterprise's operator
    app = reader(tenant, f"platform-{tag}")
    r = requests.post(f"{tenant.url}/api/groups", headers=tenant.op.bearer, json={
        "name": f"city-{tag}", "members": [f"operator:city-{tag}"]})
    assert r.status_code == 201, r.text
    assert grant(tenant, f"group:city-{tag}", tenant.prefix, types="order.due",
                 template=h).status_code == 201
    assert types_seen(tenant, "UNIT-1", other.bearer) == ["order.product", "order.due"]
    assert types_seen(tenant, "UNIT-1", bearer(app)) == ["order.product"]
    r = requests.patch(f"{tenant.url}/api/groups/city-{tag}", headers=tenant.op.bearer,
                       json={"add": [f"reader:platform-{tag}"], "remove": [f"operator:city-{tag}"]})
    assert r.status_code == 200 and r.json()["members"] == [f"reader:platform-{tag}"], r.text
    assert types_seen(tenant, "UNIT-1", bearer(app)) == ["order.product", "order.due"]
    assert types_seen(tenant, "UNIT-1", other.bearer) == ["order.product"]
    # sharing upward: a city platform batch-resolves many community objects, and gets for
    # each exactly what it is granted (JSON and msgpack)
    units = [f"{tenant.prefix}/UNIT-B{n:04d}" for n in range(300)]
    r = requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer, json=[
        {"handle": u, "template": h, "values": order()} for u in units])
    assert r.status_code == 201, r.text
    ask = [*units, f"{tenant.prefix}/NO-SUCH", "bad id"]
    got = requests.post(f"{tenant.url}/api/resolve", headers=bearer(app),
                        json={"handles": ask}).json()["results"]
    assert [[v["type"] for v in g["values"]] for g in got[:300]] == \
        [["order.product", "order.due"]] * 300
    assert got[300]["responseCode"] == 100 and got[301]["responseCode"] == 102
    packed = requests.post(f"{tenant.url}/api/resolve", headers={
        **bearer(app), "Content-Type": "application/msgpack"}, data=msgpack.packb(units[:5]))
    assert [[v["type"] for v in g["values"]] for g in msgpack.unpackb(packed.content)[
        "results"]] == [["order.product", "order.due"]] * 5
    anonymous = requests.post(f"{tenant.url}/api/resolve", json={"handles": units[:3]}).json()
    assert [[v["type"] for v in g["values"]] for g in anonymous["results"]] == \
        [["order.product"]] * 3
    owner = requests.post(f"{tenant.url}/api/resolve", headers=tenant.op.bearer,
                          json={"handles": units[:1]}).json()["results"][0]
    assert len(owner["values"]) == 5
    # a grant bound to a template does not reach records of another
    assert put(tenant, "PLAIN-1", [{"index": 1, "type": "order.due", "data": "2027-01-01",
                                    "classification": "shared"}]).status_code == 201
    assert types_seen(tenant, "PLAIN-1", bearer(app)) == []


def test_bad_credentials_and_bad_grants_are_refused_and_change_nothing(
        tenant: Tenant, server: Server, admin: Any, sql: Any) -> None:
    tag = str(time.monotonic_ns())
    h = template(tenant, "TPL-GUARD", ITEMS)
    assert put(tenant, "G-1", order(), h).status_code == 201
    before = stored_values(sql, f"{tenant.prefix}/G-1")
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)).isoformat()
    short = reader(tenant, f"short-{tag}", expires=soon)
    app = reader(tenant, f"app-{tag}")
    assert grant(tenant, f"reader:app-{tag}", tenant.prefix).status_code == 201
    # a reader's token writes nothing and manages nothing
    for method, url, body in [
            ("PUT", tenant.handle_url("G-1"), {"values": order(), "template": h}),
            ("DELETE", tenant.handle_url("G-1"), None),
            ("POST", f"{tenant.url}/api/grants", {"grantee": f"reader:app-{tag}",
                                                  "scope": tenant.prefix}),
            ("POST", f"{tenant.url}/api/readers", {"name": f"x-{tag}"})]:
        r = requests.request(method, url, json=body, headers=bearer(app))
        assert r.status_code == 403 and "reader" in r.json()["message"], (url, r.text)
    # forged token; expired token
    r = requests.get(tenant.handle_url("G-1"), headers=bearer("idres_forged"))
    assert r.status_code == 401
    time.sleep(2.5)
    r = requests.get(tenant.handle_url("G-1"), headers=bearer(short))
    assert r.status_code == 401 and "expired" in r.json()["message"], r.text
    # grants: on a prefix the granter does not own, to nobody, badly formed
    stranger = new_operator(server, admin, f"stranger-{tag}")
    r = requests.post(f"{tenant.url}/api/grants", headers=stranger.bearer,
                      json={"grantee": f"reader:app-{tag}", "scope": tenant.prefix})
    assert r.status_code == 403, r.text
    for body, status in [({"grantee": "reader:nobody-here", "scope": tenant.prefix}, 404),
                         ({"grantee": "someone", "scope": tenant.prefix}, 400),
                         ({"grantee": f"reader:app-{tag}", "scope": "not a prefix"}, 400),
                         ({"grantee": f"reader:app-{tag}", "scope": tenant.prefix,
                           "expires": "2001-01-01T00:00:00Z"}, 400),
                         ({"grantee": f"reader:app-{tag}", "scope": tenant.prefix,
                           "template": f"{tenant.prefix}/NO-SUCH"}, 400),
                         ({"grantee": f"reader:app-{tag}", "scope": tenant.prefix,
                           "colour": "red"}, 400)]:
        r = grant(tenant, body.pop("grantee"), body.pop("scope"), **body)
        assert r.status_code == status, (body, r.text)
    # classifications that do not exist, or contradict the bits
    for value in [{"index": 9, "type": "x", "data": "y", "classification": "secret"},
                  {"index": 9, "type": "x", "data": "y", "classification": "public",
                   "permissions": "1100"},
                  {"index": 9, "type": "x", "data": "y", "classification": "shared",
                   "permissions": "1110"}]:
        r = requests.put(tenant.handle_url("G-1") + "?index=9", headers=tenant.op.bearer,
                         json=[value])
        assert r.status_code == 400 and "classification" in r.json()["message"], r.text
    # a reader with grants does not see drafts; another reader's view is unchanged
    assert requests.put(tenant.handle_url("G-DRAFT") + "?state=draft", headers=tenant.op.bearer,
                        json=order()).status_code == 201
    assert requests.get(tenant.handle_url("G-DRAFT"), headers=bearer(app)).status_code == 404
    assert types_seen(tenant, "G-1", bearer(app)) == [
        "order.product", "order.quantity", "order.due", "order.address"]
    assert stored_values(sql, f"{tenant.prefix}/G-1") == before


def test_many_readers_at_once_over_two_workers_never_see_each_others_values(
        tenant: Tenant, pg_dsn: str) -> None:
    """Twelve readers, each granted a different value type, read the same identifiers
    concurrently (single GETs, proxy with ?noredirect, batches) from a --workers 2
    server, anonymous readers among them, while grants of half of them are revoked: no
    answer ever shows a type that reader was not granted at the time it was sent."""
    import concurrent.futures
    import random

    from tests.conftest import Server, free_port

    tag = str(time.monotonic_ns())
    n = 12
    values = [{"index": 1, "type": "unit.name", "data": "Building 7, unit 301"}] + [
        {"index": i + 2, "type": f"unit.item{i}", "data": f"v{i}", "classification": "shared"}
        for i in range(n)] + [{"index": n + 2, "type": "unit.resident", "data": "private person",
                               "classification": "private"}]
    ids = [f"UNIT-C{k}" for k in range(20)]
    for suffix in ids:
        assert requests.put(tenant.handle_url(suffix), headers=tenant.op.bearer,
                            json=values).status_code == 201
    tokens = [reader(tenant, f"r{i}-{tag}") for i in range(n)]
    grant_ids = [grant(tenant, f"reader:r{i}-{tag}", tenant.prefix,
                       types=f"unit.item{i}").json()["id"] for i in range(n)]
    srv = Server(pg_dsn, "--workers", "2", port=free_port()).wait_ready()
    revoked: dict[int, float] = {}    # reader → when its revocation was acknowledged
    try:
        def one(k: int) -> list[str]:
            rnd = random.Random(k)
            who = rnd.randrange(n + 1)          # n: anonymous
            headers = bearer(tokens[who]) if who < n else {}
            sent = time.monotonic()
            suffix = rnd.choice(ids)
            way = rnd.randrange(3)
            if way == 0:
                r = requests.get(f"{srv.url}/api/handles/{tenant.prefix}/{suffix}",
                                 headers=headers)
                seen = [[v["type"] for v in r.json()["values"]]]
            elif way == 1:
                r = requests.get(f"{srv.url}/{tenant.prefix}/{suffix}?noredirect",
                                 headers=headers)
                seen = [[v["type"] for v in r.json()["values"]]]
            else:
                r = requests.post(f"{srv.url}/api/resolve", headers=headers, json={
                    "handles": [f"{tenant.prefix}/{s}" for s in rnd.sample(ids, 5)]})
                seen = [[v["type"] for v in res["values"]] for res in r.json()["results"]]
            assert r.status_code == 200, r.text
            wrong = []
            for types in seen:
                allowed = {"unit.name"} | ({f"unit.item{who}"} if who < n else set())
                if not set(types) <= allowed:
                    wrong.append(f"reader {who} saw {types}")
                if who < n and who in revoked and revoked[who] < sent and len(types) > 1:
                    wrong.append(f"reader {who} saw unit.item{who} after its revocation")
            return wrong

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            first = list(pool.map(one, range(300)))
            for i in range(0, n, 2):
                assert requests.delete(f"{tenant.url}/api/grants/{grant_ids[i]}",
                                       headers=tenant.op.bearer).status_code == 200
                revoked[i] = time.monotonic()
            second = list(pool.map(one, range(300, 600)))
        problems = [p for batch in (*first, *second) for p in batch]
        assert problems == [], problems[:5]
        # the granted ones still see theirs
        r = requests.get(f"{srv.url}/api/handles/{tenant.prefix}/{ids[0]}", headers=bearer(tokens[1]))
        assert [v["type"] for v in r.json()["values"]] == ["unit.name", "unit.item1"]
    finally:
        srv.stop()


def test_counts_over_what_the_city_may_see(tenant: Tenant) -> None:
    """Identifiers per template and per value of an enumeration item, for a party with a
    grant under the prefix; private values are never counted for it."""
    tag = str(time.monotonic_ns())
    h = template(tenant, "TPL-DETECTOR", [
        {"type": "device.kind", "datatype": "enum", "values": ["smoke", "gas"], "required": True},
        {"type": "device.status", "datatype": "enum", "values": ["ok", "fault"],
         "classification": "shared"},
        {"type": "device.owner_phone", "datatype": "enum", "values": ["a", "b"],
         "classification": "private"}])
    statuses = ["ok", "ok", "fault", "ok", "fault"]
    for n, status in enumerate(statuses):
        assert put(tenant, f"DET-{n}", [
            {"index": 1, "type": "device.kind", "data": "smoke" if n < 4 else "gas"},
            {"index": 2, "type": "device.status", "data": status},
            {"index": 3, "type": "device.owner_phone", "data": "a"}], h).status_code == 201
    city = reader(tenant, f"city-{tag}")
    nobody = reader(tenant, f"nobody-{tag}")
    assert grant(tenant, f"reader:city-{tag}", tenant.prefix, types="device.status",
                 template=h).status_code == 201

    def stats(headers: dict[str, str], **q: str) -> requests.Response:
        return requests.get(f"{tenant.url}/api/stats", headers=headers,
                            params={"prefix": tenant.prefix, **q})
    per_template = stats(bearer(city)).json()["templates"]
    assert {"template": h.upper(), "count": 5} in per_template
    by = stats(bearer(city), template=h, item="device.status").json()["values"]
    assert by == [{"value": "fault", "count": 2}, {"value": "ok", "count": 3}]
    assert stats(bearer(city), template=h, item="device.kind").json()["values"] == [
        {"value": "gas", "count": 1}, {"value": "smoke", "count": 4}]          # public
    r = stats(bearer(city), template=h, item="device.owner_phone")
    assert r.status_code == 403 and "private" in r.json()["message"]
    assert stats(tenant.op.bearer, template=h, item="device.owner_phone").json()["values"] == [
        {"value": "a", "count": 5}]                                             # the owner
    assert stats(bearer(nobody)).status_code == 403
    assert stats({}).status_code == 401
    assert stats(bearer(city), item="device.status").status_code == 400


def test_the_read_log_says_who_read_which_shared_values(tenant: Tenant, sql: Any) -> None:
    tag = str(time.monotonic_ns())
    h = template(tenant, "TPL-RESIDENT", ITEMS)
    assert put(tenant, "HOME-1", order(), h).status_code == 201
    assert put(tenant, "HOME-2", order(), h).status_code == 201
    app = reader(tenant, f"service-{tag}")
    assert grant(tenant, f"reader:service-{tag}", tenant.prefix,
                 types="order.due").status_code == 201
    types_seen(tenant, "HOME-1", bearer(app))                      # before: not logged
    r = requests.put(f"{tenant.url}/api/readlogs/{h}", headers=tenant.op.bearer,
                     json={"enabled": True})
    assert r.status_code == 200, r.text
    assert requests.put(f"{tenant.url}/api/readlogs/{tenant.prefix}", headers=bearer(app),
                        json={"enabled": True}).status_code == 403
    types_seen(tenant, "HOME-1", bearer(app))
    types_seen(tenant, "HOME-1", bearer(app), "?type=order.product")   # no shared value shown
    types_seen(tenant, "HOME-1", tenant.op.bearer)                 # the owner: not logged
    types_seen(tenant, "HOME-1", {})
    requests.post(f"{tenant.url}/api/resolve", headers=bearer(app),
                  json={"handles": [f"{tenant.prefix}/HOME-1", f"{tenant.prefix}/HOME-2"]})
    got = requests.get(f"{tenant.url}/api/reads", headers=tenant.op.bearer,
                       params={"prefix": tenant.prefix}).json()["entries"]
    assert [(e["party"], e["handle"], e["types"]) for e in got] == [
        (f"reader:service-{tag}", f"{tenant.prefix}/HOME-2", ["order.due"]),
        (f"reader:service-{tag}", f"{tenant.prefix}/HOME-1", ["order.due"]),
        (f"reader:service-{tag}", f"{tenant.prefix}/HOME-1", ["order.due"])]
    one = requests.get(f"{tenant.url}/api/reads", headers=tenant.op.bearer,
                       params={"handle": f"{tenant.prefix}/HOME-2"}).json()["entries"]
    assert len(one) == 1 and one[0]["template"] == h.upper()
    assert requests.get(f"{tenant.url}/api/reads", headers=bearer(app),
                        params={"prefix": tenant.prefix}).status_code == 403
    assert requests.put(f"{tenant.url}/api/readlogs/{h}", headers=tenant.op.bearer,
                        json={"enabled": False}).status_code == 200
    types_seen(tenant, "HOME-1", bearer(app))
    assert len(requests.get(f"{tenant.url}/api/reads", headers=tenant.op.bearer,
                            params={"prefix": tenant.prefix}).json()["entries"]) == 3


def test_the_read_log_stays_within_its_bound(tenant: Tenant, pg_dsn: str, sql: Any) -> None:
    from tests.conftest import Server, free_port

    tag = str(time.monotonic_ns())
    h = template(tenant, "TPL-BOUND", ITEMS)
    units = [f"{tenant.prefix}/B{n:04d}" for n in range(500)]
    assert requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer, json=[
        {"handle": u, "template": h, "values": order()} for u in units]).status_code == 201
    app = reader(tenant, f"bound-{tag}")
    assert grant(tenant, f"reader:bound-{tag}", tenant.prefix, types="order.*").status_code == 201
    assert requests.put(f"{tenant.url}/api/readlogs/{tenant.prefix}", headers=tenant.op.bearer,
                        json={"enabled": True}).status_code == 200
    srv = Server(pg_dsn, port=free_port(), env={"IDRES_READ_LOG_ROWS": "100"}).wait_ready()
    try:
        for _ in range(5):
            r = requests.post(f"{srv.url}/api/resolve", headers=bearer(app),
                              json={"handles": units})
            assert r.status_code == 200
    finally:
        srv.stop()
    kept = sql("SELECT count(*) AS n FROM read_log")[0]["n"]
    assert kept <= 100 + 1000, kept            # trimmed to 100 at each thousandth row
    assert sql("SELECT count(*) AS n FROM read_log WHERE party = $1",
               f"reader:bound-{tag}")[0]["n"] >= 100


def test_readers_are_answered_on_the_fast_path_as_aiohttp_answers_them(
        tenant: Tenant, server: Server) -> None:
    """A reader's cached resolution is derived on the fast path from the cached record
    and its grants: the same status, headers and bytes as the database's path through
    aiohttp; a change of grants is seen by the next read."""
    from tests.resolver.test_structure import _raw, slow_requests

    tag = str(time.monotonic_ns())
    h = template(tenant, "TPL-FAST-SHARE", ITEMS)
    assert put(tenant, "FS-1", order(), h).status_code == 201
    app = reader(tenant, f"fast-{tag}")
    assert grant(tenant, f"reader:fast-{tag}", tenant.prefix, types="order.due").status_code == 201

    def metric(name: str) -> float:
        text = requests.get(f"{server.url}/metrics").text
        return float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith(name + " ")))

    paths = [f"{tenant.prefix}/FS-1", f"{tenant.prefix}/fs-1", f"{tenant.prefix}/FS-NONE",
             "88.999999/ELSEWHERE", f"{tenant.prefix}/%zz"]
    before = metric("idres_http_fast_authorized_total")
    for path in paths:
        for method in ("GET", "HEAD"):
            request = (f"{method} /api/handles/{path} HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {app}\r\n\r\n").encode()
            for _ in range(2):       # a miss, then a hit
                fast = _raw(server.port, request, handed_off=False)
                slow = _raw(server.port, request, handed_off=True)
                fast[1].pop("date"), slow[1].pop("date")
                assert fast == slow, (path, method, fast, slow)
    assert metric("idres_http_fast_authorized_total") - before >= 8   # FS-1 and fs-1, 2x2 each
    # two Authorization headers: the full parser decides (aiohttp reads the first)
    twice = (f"GET /api/handles/{tenant.prefix}/FS-1 HTTP/1.1\r\nHost: x\r\n"
             f"Authorization: Bearer {app}\r\nAuthorization: Bearer forged\r\n\r\n").encode()
    handoffs = slow_requests(server)
    status, _, body = _raw(server.port, twice, handed_off=False)
    assert status == 200 and b"order.due" in body
    assert slow_requests(server) - handoffs == 2     # it, and /metrics
    seen = requests.get(tenant.handle_url("FS-1"), headers=bearer(app)).json()["values"]
    assert [v["type"] for v in seen] == ["order.product", "order.due"]
    # the grant widens: the next read shows it (the snapshot was dropped before the ack)
    assert grant(tenant, f"reader:fast-{tag}", f"{tenant.prefix}/FS-1",
                 types="order.quantity").status_code == 201
    seen = requests.get(tenant.handle_url("FS-1"), headers=bearer(app)).json()["values"]
    assert [v["type"] for v in seen] == ["order.product", "order.quantity", "order.due"]
    # the record changes: the next read shows the new shared value
    r = requests.put(tenant.handle_url("FS-1") + "?index=3", headers=tenant.op.bearer,
                     json=[{"index": 3, "type": "order.due", "data": "2027-02-02"}])
    assert r.status_code == 200, r.text
    seen = requests.get(tenant.handle_url("FS-1"), headers=bearer(app)).json()["values"]
    assert seen[2]["data"]["value"] == "2027-02-02"
    # revoked: refused at once
    assert requests.delete(f"{tenant.url}/api/readers/fast-{tag}",
                           headers=tenant.op.bearer).status_code == 200
    assert requests.get(tenant.handle_url("FS-1"), headers=bearer(app)).status_code == 401


def test_a_reader_searches_only_what_it_may_read(tenant: Tenant) -> None:
    """Reverse lookup (pyhandle's search_handle) with a reader's token: identifiers under
    the prefixes its grants reach, found only by values it may read."""
    tag = str(time.monotonic_ns())
    assert requests.put(tenant.handle_url(f"SR-{tag}"), headers=tenant.op.bearer, json=[
        {"index": 1, "type": "unit.name", "data": f"Unit {tag}"},
        {"index": 2, "type": "unit.area", "data": f"88-{tag}", "classification": "shared"},
        {"index": 3, "type": "unit.owner", "data": f"Li-{tag}", "classification": "shared"},
        {"index": 4, "type": "unit.resident", "data": f"Wang-{tag}",
         "classification": "private"}]).status_code == 201
    app = reader(tenant, f"search-{tag}")
    assert grant(tenant, f"reader:search-{tag}", tenant.prefix, types="unit.area").status_code == 201

    def hrls(**terms: str) -> Any:
        r = requests.get(f"{tenant.url}/hrls/handles", headers=bearer(app), params=terms)
        assert r.status_code == 200, r.text
        return r.json()
    mine = [f"{tenant.prefix}/SR-{tag}"]
    assert hrls(**{"unit.name": f"*{tag}"}) == mine                     # public
    assert hrls(**{"unit.area": f"*{tag}"}) == mine                     # shared, granted
    assert hrls(**{"unit.owner": f"*{tag}"}) == []                      # shared, not granted
    assert hrls(**{"unit.resident": f"Wang-{tag}"}) == []               # private
    assert hrls(**{"unit.name": f"*{tag}", "unit.resident": "Wang*"}) == []
    assert hrls(**{"unit.area": f"*{tag}", "prefix": tenant.prefix}) == mine
    assert hrls(**{"unit.area": f"*{tag}", "prefix": "88.999998"}) == []  # not granted there
    owner = requests.get(f"{tenant.url}/hrls/handles", headers=tenant.op.bearer,
                         params={"unit.resident": f"Wang-{tag}"}).json()
    assert owner == mine
