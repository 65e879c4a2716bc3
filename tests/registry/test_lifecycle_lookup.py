"""The lifecycle of an identifier (draft, active, retired, replaced; HS_ALIAS), and lookup
by any of an object's codes: the code index on every write path, in the reverse lookup."""

from __future__ import annotations

import time
from typing import Any

import requests

from tests.conftest import Server, Tenant, new_operator, stored_values
from tests.registry.test_templates import put, template

ASSET_ITEMS = [
    {"type": "asset.name", "required": True},
    {"type": "asset.equipment_code", "unique": True, "required": True},
    {"type": "asset.finance_code", "unique": True},
    {"type": "asset.resource_code", "unique": True, "classification": "private"},
    {"type": "asset.site", "searchable": True},
]
ORDER_OF = [{"type": "shipment.carrier", "required": True},
            {"type": "shipment.order", "datatype": "reference"}]


def asset(n: int, **over: str) -> list[dict[str, Any]]:
    values = {"asset.name": f"5-axis CNC #{n}", "asset.equipment_code": f"EQ-CNC-5AX-{n:04d}",
              "asset.finance_code": f"FA-2024-{n:05d}", "asset.resource_code": f"RES-{n:06d}",
              "asset.site": "Plant 2, hall B", **over}
    return [{"index": i + 1, "type": t, "data": d} for i, (t, d) in enumerate(values.items())
            if d != ""]


def lookup(t: Tenant, type_: str, value: str, auth: bool = False, key: str = "value",
           prefix: str | None = None) -> requests.Response:
    return requests.get(f"{t.url}/api/lookup", params={
        "prefix": prefix or t.prefix, "type": type_, key: value},
        headers=t.op.bearer if auth else {})


def move(t: Tenant, suffix: str, state: str, **extra: str) -> requests.Response:
    return requests.post(f"{t.url}/api/lifecycle/{t.prefix}/{suffix}", headers=t.op.bearer,
                         json={"state": state, **extra})


def proxy(t: Tenant, suffix: str, query: str = "") -> requests.Response:
    return requests.get(f"{t.url}/{t.prefix}/{suffix}{query}", allow_redirects=False)


def test_draft_is_its_owners_only_until_activated(tenant: Tenant, sql: Any) -> None:
    r = requests.put(tenant.handle_url("L-DRAFT") + "?state=draft", headers=tenant.op.bearer,
                     json=[{"index": 1, "type": "URL", "data": "https://example.org/d"}])
    assert r.status_code == 201, r.text
    assert requests.get(tenant.handle_url("L-DRAFT")).status_code == 404
    assert proxy(tenant, "L-DRAFT").status_code == 404
    batch = requests.post(f"{tenant.url}/api/resolve",
                          json={"handles": [f"{tenant.prefix}/L-DRAFT"]}).json()
    assert batch["results"][0]["responseCode"] == 100, batch
    owner = requests.get(tenant.handle_url("L-DRAFT"), headers=tenant.op.bearer)
    assert owner.status_code == 200 and owner.json()["values"][0]["type"] == "URL"
    assert move(tenant, "L-DRAFT", "active").status_code == 200
    assert requests.get(tenant.handle_url("L-DRAFT")).status_code == 200
    assert proxy(tenant, "L-DRAFT").headers["Location"] == "https://example.org/d"
    assert sql("SELECT state FROM handles WHERE handle = $1",
               f"{tenant.prefix}/L-DRAFT")[0]["state"] == "active"


def test_retired_resolves_to_a_tombstone_and_is_never_reused(tenant: Tenant,
                                                             sql: Any) -> None:
    url = [{"index": 1, "type": "URL", "data": "https://example.org/r"}]
    assert requests.put(tenant.handle_url("L-RET"), json=url,
                        headers=tenant.op.bearer).status_code == 201
    assert proxy(tenant, "L-RET").status_code == 302          # cached as active
    r = move(tenant, "L-RET", "retired", reason="asset scrapped")
    assert r.status_code == 200 and r.json()["state"] == "retired"
    gone = proxy(tenant, "L-RET")                               # the cache saw the move
    assert gone.status_code == 410, gone.text
    assert gone.json()["reason"] == "asset scrapped"
    assert gone.json()["retired"].endswith("Z")
    values = requests.get(tenant.handle_url("L-RET")).json()["values"]
    assert [v["type"] for v in values] == ["idres.tombstone"]
    # never changed again, never reused, and the owner still sees what it was
    for write in (requests.put(tenant.handle_url("L-RET"), json=url, headers=tenant.op.bearer),
                  requests.delete(tenant.handle_url("L-RET"), headers=tenant.op.bearer),
                  move(tenant, "L-RET", "active")):
        assert write.status_code == 409, write.text
        assert "retired" in write.json()["message"]
    assert stored_values(sql, f"{tenant.prefix}/L-RET")[0]["data"]["value"] == \
        "https://example.org/r"
    trail = requests.get(f"{tenant.url}/api/audit?handle={tenant.prefix}/L-RET",
                         headers=tenant.op.bearer).json()
    assert trail["entries"][0]["action"] == "state_retired"


def test_replaced_answers_its_successor_and_aliases_are_bounded(tenant: Tenant) -> None:
    for name in ("L-OLD", "L-NEW"):
        assert requests.put(tenant.handle_url(name), headers=tenant.op.bearer, json=[
            {"index": 1, "type": "URL", "data": f"https://example.org/{name}"}]).status_code == 201
    r = move(tenant, "L-OLD", "replaced", successor=f"{tenant.prefix}/L-NEW")
    assert r.status_code == 200, r.text
    moved = proxy(tenant, "L-OLD")
    assert moved.status_code == 301 and moved.headers["Location"] == f"/{tenant.prefix}/L-NEW"
    values = requests.get(tenant.handle_url("L-OLD")).json()["values"]
    assert values[0]["type"] == "HS_ALIAS" and values[0]["data"]["value"] == \
        f"{tenant.prefix}/L-NEW"
    shown = proxy(tenant, "L-OLD", "?ignore_aliases")
    assert shown.status_code == 200 and shown.json()["values"][0]["type"] == "HS_ALIAS"
    # a successor that does not exist is refused; a chain is followed to its end
    assert move(tenant, "L-NEW", "replaced", successor=f"{tenant.prefix}/NOPE").status_code \
        == 400
    assert requests.put(tenant.handle_url("L-NEWER"), headers=tenant.op.bearer, json=[
        {"index": 1, "type": "URL", "data": "https://example.org/newer"}]).status_code == 201
    assert move(tenant, "L-NEW", "replaced", successor=f"{tenant.prefix}/L-NEWER"
                ).status_code == 200
    assert proxy(tenant, "L-OLD").headers["Location"] == f"/{tenant.prefix}/L-NEWER"
    # a loop of aliases (HS_ALIAS values written by hand too) ends in 508, not a hang
    assert requests.put(tenant.handle_url("L-LOOP"), headers=tenant.op.bearer, json=[
        {"index": 1, "type": "HS_ALIAS", "data": f"{tenant.prefix}/L-OLD"}]).status_code == 201
    assert move(tenant, "L-NEWER", "replaced", successor=f"{tenant.prefix}/L-LOOP"
                ).status_code == 200
    looped = proxy(tenant, "L-OLD")
    assert looped.status_code == 508 and "loop" in looped.json()["message"]
    # back to active: resolves as itself again
    assert move(tenant, "L-NEWER", "active").status_code == 200
    assert proxy(tenant, "L-OLD").headers["Location"] == f"/{tenant.prefix}/L-NEWER"
    assert proxy(tenant, "L-NEWER").headers["Location"] == "https://example.org/newer"


def test_a_long_alias_chain_stops_at_the_bound(tenant: Tenant) -> None:
    for n in range(23):
        data = f"{tenant.prefix}/L-CHAIN-{n + 1}" if n < 22 else "https://example.org/end"
        kind = "HS_ALIAS" if n < 22 else "URL"
        assert requests.put(tenant.handle_url(f"L-CHAIN-{n}"), headers=tenant.op.bearer, json=[
            {"index": 1, "type": kind, "data": data}]).status_code == 201
    r = proxy(tenant, "L-CHAIN-0")
    assert r.status_code == 508 and "20 hops" in r.json()["message"]
    ok = proxy(tenant, "L-CHAIN-5")       # 17 hops: followed to its end
    assert ok.status_code == 301 and ok.headers["Location"] == f"/{tenant.prefix}/L-CHAIN-22"


def test_bad_moves_are_refused(tenant: Tenant, server: Server, admin: Any) -> None:
    assert requests.put(tenant.handle_url("L-BAD"), headers=tenant.op.bearer, json=[
        {"index": 1, "type": "URL", "data": "https://example.org"}]).status_code == 201
    for body, status, fragment in [
            ({"state": "gone"}, 400, "state must be one of"),
            ({"state": "draft"}, 409, "cannot become draft"),
            ({"state": "replaced"}, 400, "needs its successor"),
            ({"state": "replaced", "successor": f"{tenant.prefix}/L-BAD"}, 400, "does not exist"),
            ({"state": "active", "colour": "red"}, 400, "colour")]:
        r = requests.post(f"{tenant.url}/api/lifecycle/{tenant.prefix}/L-BAD",
                          headers=tenant.op.bearer, json=body)
        assert r.status_code == status and fragment in r.text, (body, r.text)
    stranger = new_operator(server, admin, f"stranger-{time.monotonic_ns()}")
    r = requests.post(f"{tenant.url}/api/lifecycle/{tenant.prefix}/L-BAD",
                      headers=stranger.bearer, json={"state": "retired"})
    assert r.status_code == 403
    assert requests.post(f"{tenant.url}/api/lifecycle/{tenant.prefix}/L-NONE",
                         headers=tenant.op.bearer, json={"state": "retired"}).status_code == 404
    assert requests.get(tenant.handle_url("L-BAD")).json()["values"][0]["type"] == "URL"


def test_an_asset_is_found_by_any_of_its_codes(tenant: Tenant) -> None:
    h = template(tenant, "META_ASSET", ASSET_ITEMS)
    assert put(tenant, "ASSET-42", asset(42), h).status_code == 201
    assert put(tenant, "ASSET-43", asset(43), h).status_code == 201
    want = [f"{tenant.prefix}/ASSET-42"]
    for type_, value in [("asset.equipment_code", "EQ-CNC-5AX-0042"),
                         ("asset.finance_code", "FA-2024-00042")]:
        r = lookup(tenant, type_, value)
        assert r.status_code == 200 and r.json()["handles"] == want, r.text
    # a private code: found by who may read it, not anonymously
    assert lookup(tenant, "asset.resource_code", "RES-000042").json()["handles"] == []
    assert lookup(tenant, "asset.resource_code", "RES-000042", auth=True).json()["handles"] \
        == want
    # by the beginning of a code; searchable (not unique) items too
    found = lookup(tenant, "asset.equipment_code", "EQ-CNC-5AX-004", key="start").json()
    assert found["handles"] == [f"{tenant.prefix}/ASSET-42", f"{tenant.prefix}/ASSET-43"]
    assert len(lookup(tenant, "asset.site", "Plant 2, hall B").json()["handles"]) == 2
    assert lookup(tenant, "asset.equipment_code", "EQ-NOPE").json()["handles"] == []
    # a changed code moves in the index; the old one is free again
    r = requests.put(tenant.handle_url("ASSET-42") + "?index=2", headers=tenant.op.bearer,
                     json=[{"index": 2, "type": "asset.equipment_code", "data": "EQ-NEW-1"}])
    assert r.status_code == 200, r.text
    assert lookup(tenant, "asset.equipment_code", "EQ-NEW-1").json()["handles"] == want
    assert lookup(tenant, "asset.equipment_code", "EQ-CNC-5AX-0042").json()["handles"] == []
    assert requests.delete(tenant.handle_url("ASSET-43"), headers=tenant.op.bearer
                           ).status_code == 200
    assert lookup(tenant, "asset.finance_code", "FA-2024-00043").json()["handles"] == []
    # bad lookups: clear errors
    for params, fragment in [({"prefix": tenant.prefix, "type": "asset.name"}, "give ?prefix"),
                             ({"prefix": "not a prefix", "type": "t", "value": "v"}, "prefix"),
                             ({"prefix": tenant.prefix, "type": "t", "start": ""}, "empty")]:
        r = requests.get(f"{tenant.url}/api/lookup", params=params)
        assert r.status_code == 400 and fragment in r.json()["message"], r.text
    odd = lookup(tenant, "asset.equipment_code", "EQ-\ud7ff\U0010ffff", key="start")
    assert odd.status_code == 200 and odd.json()["handles"] == []


def test_a_unique_code_taken_is_refused_on_every_path(tenant: Tenant, sql: Any) -> None:
    h = template(tenant, "META_UNIQ", ASSET_ITEMS)
    assert put(tenant, "U-1", asset(1), h).status_code == 201
    r = put(tenant, "U-2", asset(2, **{"asset.equipment_code": "EQ-CNC-5AX-0001"}), h)
    assert r.status_code == 400, r.text
    assert {"index": 2, "type": "asset.equipment_code",
            "message": f"'EQ-CNC-5AX-0001' is unique within the prefix and {tenant.prefix}/U-1 "
                       "has it already"} in r.json()["errors"]
    assert stored_values(sql, f"{tenant.prefix}/U-2") is None
    bulk = [{"handle": f"{tenant.prefix}/U-{n}", "template": h, "values": asset(n)}
            for n in (3, 4)]
    bulk[1]["values"] = asset(4, **{"asset.finance_code": "FA-2024-00003"})
    r = requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer, json=bulk)
    assert r.status_code == 400 and r.json()["failing"] == 1, r.text
    assert r.json()["records"][0]["errors"][0]["message"] == (
        f"'FA-2024-00003' is unique within the prefix and {tenant.prefix}/U-3 of this request "
        "has it too")
    bulk[1]["values"] = asset(4, **{"asset.finance_code": "FA-2024-00001"})
    r = requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer, json=bulk)
    assert r.status_code == 400 and f"{tenant.prefix}/U-1 has it already" in r.text
    assert stored_values(sql, f"{tenant.prefix}/U-3") is None
    assert sql("SELECT count(*) AS n FROM codes WHERE prefix = $1", tenant.prefix)[0]["n"] == 4
    # a good bulk: its codes go in with it
    bulk[1]["values"] = asset(4)
    assert requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer,
                         json=bulk).status_code == 201
    assert lookup(tenant, "asset.finance_code", "FA-2024-00004").json()["handles"] == [
        f"{tenant.prefix}/U-4"]


def test_references_must_name_instances_of_the_template(tenant: Tenant, sql: Any) -> None:
    assets = template(tenant, "META_REF_ASSET", ASSET_ITEMS)
    moved = template(tenant, "META_REF_MOVE", [
        {"type": "move.asset", "datatype": "reference", "template": assets, "required": True}])
    other = template(tenant, "META_REF_OTHER", [{"type": "x"}])
    assert put(tenant, "R-A", asset(7), assets).status_code == 201
    assert put(tenant, "R-X", [{"index": 1, "type": "x", "data": "1"}], other).status_code == 201
    ok = [{"index": 1, "type": "move.asset", "data": f"{tenant.prefix}/R-A"}]
    assert put(tenant, "R-M1", ok, moved).status_code == 201
    for target, fragment in [(f"{tenant.prefix}/R-NONE", "does not exist"),
                             (f"{tenant.prefix}/R-X", f"which does not follow template {assets.upper()}"),
                             ("not an identifier", "identifier")]:
        r = put(tenant, "R-M2", [{"index": 1, "type": "move.asset", "data": target}], moved)
        assert r.status_code == 400 and fragment in r.text, (target, r.text)
    assert stored_values(sql, f"{tenant.prefix}/R-M2") is None
    # within one bulk request: a reference to another record of the same request
    r = requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer, json=[
        {"handle": f"{tenant.prefix}/R-M3", "template": moved,
         "values": [{"index": 1, "type": "move.asset", "data": f"{tenant.prefix}/R-B"}]},
        {"handle": f"{tenant.prefix}/R-B", "template": assets, "values": asset(8)}])
    assert r.status_code == 201, r.text
    r = requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer, json=[
        {"handle": f"{tenant.prefix}/R-M4", "template": moved,
         "values": [{"index": 1, "type": "move.asset", "data": f"{tenant.prefix}/R-C"}]}])
    assert r.status_code == 400 and "does not exist" in r.text


def test_reverse_lookup_uses_the_code_index_and_answers_as_the_scan(
        tenant: Tenant, server: Server, sql: Any) -> None:
    h = template(tenant, "META_HRLS", ASSET_ITEMS)
    for n in range(1, 6):
        assert put(tenant, f"H-{n}", asset(n), h).status_code == 201

    def search(**terms: str) -> list[str]:
        r = requests.get(f"{tenant.url}/hrls/handles", headers=tenant.op.bearer,
                         params={"prefix": tenant.prefix, **terms})
        assert r.status_code == 200, r.text
        found: list[str] = r.json()
        return found

    queries = [{"asset.equipment_code": "EQ-CNC-5AX-0003"},
               {"asset.equipment_code": "eq-cnc-5ax-000*"},            # case ignored
               {"asset.equipment_code": "EQ-CNC-5AX-000*", "asset.name": "*#4"},
               {"asset.resource_code": "RES-000002"},                 # private: admin-readable
               {"asset.finance_code": "FA-*"}]
    scanned = [search(**q) for q in queries]       # no template required: the scan
    assert scanned[0] == [f"{tenant.prefix}/H-3"] and len(scanned[1]) == 5
    assert scanned[2] == [f"{tenant.prefix}/H-4"]
    r = requests.put(f"{server.url}/api/prefixes/{tenant.prefix}", headers=tenant.op.bearer,
                     json={"template": h})
    assert r.status_code == 200 and r.json()["complete"] is True, r.text
    assert [search(**q) for q in queries] == scanned
    # the index answers now: a value only the index still holds is found (a test hook)
    sql("UPDATE codes SET value = 'EQ-INDEX-ONLY' WHERE handle = $1 AND type = $2",
        f"{tenant.prefix}/H-1", "asset.equipment_code")
    assert search(**{"asset.equipment_code": "EQ-INDEX-ONLY"}) == []   # checked by the terms
    assert search(**{"asset.equipment_code": "EQ-CNC-5AX-0001"}) == []  # not a candidate
    assert search(**{"asset.equipment_code": "*5AX-0001"}) == [f"{tenant.prefix}/H-1"]  # scan


def test_requiring_a_template_names_the_records_that_do_not_follow_it(
        tenant: Tenant, server: Server) -> None:
    h = template(tenant, "META_LEGACY", ASSET_ITEMS)
    assert requests.put(tenant.handle_url("LEGACY-1"), headers=tenant.op.bearer, json=[
        {"index": 1, "type": "URL", "data": "https://example.org"}]).status_code == 201
    r = requests.put(f"{server.url}/api/prefixes/{tenant.prefix}", headers=tenant.op.bearer,
                     json={"template": h})
    assert r.status_code == 409 and r.json()["records"] == [f"{tenant.prefix}/LEGACY-1"]
    r = requests.put(f"{server.url}/api/prefixes/{tenant.prefix}", headers=tenant.op.bearer,
                     json={"template": h, "force": True})
    assert r.status_code == 200 and r.json()["complete"] is False


def test_search_without_a_prefix_covers_the_operators_prefixes(tenant: Tenant,
                                                               server: Server) -> None:
    h = template(tenant, "META_OWN", ASSET_ITEMS)
    assert put(tenant, "P-1", asset(9), h).status_code == 201
    assert requests.put(f"{server.url}/api/prefixes/{tenant.prefix}", headers=tenant.op.bearer,
                        json={"template": h}).status_code == 200
    found = requests.get(f"{tenant.url}/hrls/handles", headers=tenant.op.bearer,
                         params={"asset.equipment_code": "EQ-CNC-5AX-0009"})
    assert found.status_code == 200 and found.json() == [f"{tenant.prefix}/P-1"]


def test_anonymous_lookups_on_the_fast_path_answer_as_the_registry_does(
        tenant: Tenant, server: Server) -> None:
    """``GET /api/lookup?prefix=&type=&value=`` without credentials is answered on the
    fast path (batched, never cached): the same status, headers and bytes as the
    registry's route through aiohttp; what does not fit (start, limit, credentials,
    other parameters, bad prefixes) is handed to aiohttp."""
    from urllib.parse import quote

    from tests.resolver.test_structure import _raw, slow_requests

    h = template(tenant, "META_FAST", [*ASSET_ITEMS, {"type": "asset.label", "unique": True}])
    assert put(tenant, "F-1", asset(1, **{"asset.label": "工位 7+A"}), h).status_code == 201
    assert put(tenant, "f-two", asset(2), h).status_code == 201
    r = requests.put(tenant.handle_url("F-DRAFT") + "?state=draft", headers=tenant.op.bearer,
                     json={"template": h, "values": asset(3)})
    assert r.status_code == 201, r.text

    def metric(name: str) -> float:
        text = requests.get(f"{server.url}/metrics").text
        return float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith(name + " ")))

    cases = [("asset.equipment_code", "EQ-CNC-5AX-0001"), ("asset.equipment_code", "EQ-NONE"),
             ("asset.label", "工位 7+A"), ("asset.resource_code", "RES-000001"),
             ("asset.site", "Plant 2, hall B"), ("asset.equipment_code", "EQ-CNC-5AX-0003")]
    before = slow_requests(server)
    for type_, value in cases:
        query = f"prefix={tenant.prefix}&type={type_}&value={quote(value)}"
        request = f"GET /api/lookup?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        fast = _raw(server.port, request, handed_off=False)
        slow = _raw(server.port, request, handed_off=True)
        fast[1].pop("date"), slow[1].pop("date")
        assert fast == slow, (value, fast, slow)
    # one hand-off per slow request (and the reading of the metric) only: the fast ones
    # stayed on the fast path
    assert slow_requests(server) - before == len(cases) + 1
    assert lookup(tenant, "asset.label", "工位 7+A").json()["handles"] == [f"{tenant.prefix}/F-1"]
    found = lookup(tenant, "asset.site", "Plant 2, hall B").json()["handles"]
    assert found == [f"{tenant.prefix}/F-1", f"{tenant.prefix}/f-two"]   # the draft is not
    mine = lookup(tenant, "asset.site", "Plant 2, hall B", auth=True).json()["handles"]
    assert mine == [f"{tenant.prefix}/F-1", f"{tenant.prefix}/F-DRAFT", f"{tenant.prefix}/f-two"]
    assert move(tenant, "F-DRAFT", "active").status_code == 200   # its codes become public
    for key in ("value", "start"):
        found = lookup(tenant, "asset.equipment_code", "EQ-CNC-5AX-0003", key=key).json()
        assert found["handles"] == [f"{tenant.prefix}/F-DRAFT"], (key, found)
    plus = f"prefix={tenant.prefix}&type=asset.label&value=%E5%B7%A5%E4%BD%8D+7%2BA"
    assert requests.get(f"{tenant.url}/api/lookup?{plus}").json()["handles"] == \
        [f"{tenant.prefix}/F-1"]                               # '+' is a space, as in aiohttp
    for odd in [f"prefix={tenant.prefix}&type=t&value=v&limit=5",
                f"prefix={tenant.prefix}&type=t&value=%FF", "prefix=no%20good&type=t&value=v",
                f"prefix={tenant.prefix}&prefix={tenant.prefix}&type=t&value=v"]:
        before = slow_requests(server)
        got = requests.get(f"{tenant.url}/api/lookup?{odd}")
        assert got.status_code in (200, 400), (odd, got.text)
        assert slow_requests(server) - before == 2, odd   # it, and /metrics


def test_lookups_wait_for_a_query_in_flight_and_go_together(pg_dsn: str,
                                                             tenant: Tenant) -> None:
    """At most ``MAX_IN_FLIGHT`` lookup queries run at once: lookups started while they
    run are asked for together in the next one, and each gets its own answer."""
    import asyncio

    from resolver import store
    from resolver.codes import MAX_IN_FLIGHT, CodeFinder
    from resolver.pg.pool import create_pool

    h = template(tenant, "META_WAVES", ASSET_ITEMS)
    for n in range(1, 41):
        assert put(tenant, f"W-{n}", asset(n), h).status_code == 201

    async def go() -> None:
        pool = await create_pool(pg_dsn)
        running, most, sizes = 0, 0, []

        async def find_many(wanted: list[tuple[str, str, str]], limit: int) -> list[list[str]]:
            nonlocal running, most
            running += 1
            most = max(most, running)
            sizes.append(len(wanted))
            try:
                return await store.find_codes(pool, wanted, limit)  # the real query
            finally:
                running -= 1

        try:
            finder = CodeFinder(find_many)
            futures = []
            for n in range(1, 41):          # a lookup each loop turn, as connections do
                futures.append(finder.find(tenant.prefix, "asset.equipment_code",
                                           f"EQ-CNC-5AX-{n:04d}"))
                await asyncio.sleep(0)
            got = await asyncio.gather(*futures)
        finally:
            await pool.close()
        assert got == [[f"{tenant.prefix}/W-{n}"] for n in range(1, 41)]
        assert most <= MAX_IN_FLIGHT and finder.in_flight == 0
        assert len(sizes) < 40 and sum(sizes) == 40, sizes   # some went together

    asyncio.run(go())
