"""PUT/DELETE /api/handles as Handle clients send them (Handle checklist §6.2-6.3)."""

from __future__ import annotations

from typing import Any

import requests

from tests.conftest import Server, Tenant, stored_values

URL1 = {"index": 1, "type": "URL", "data": "https://example.org/1"}


def indexes(t: Tenant, suffix: str) -> list[int]:
    return [v["index"] for v in requests.get(t.handle_url(suffix), headers=t.op.bearer)
            .json().get("values", [])]


def test_create_with_overwrite_false_is_201_then_409(tenant: Tenant, sql: Any) -> None:
    url = tenant.handle_url("C1") + "?overwrite=false"
    r = requests.put(url, json={"values": [URL1]}, headers=tenant.op.bearer)
    assert r.status_code == 201
    assert r.json() == {"responseCode": 1, "handle": f"{tenant.prefix}/C1"}
    r = requests.put(url, json=[{**URL1, "data": "https://other"}], headers=tenant.op.bearer)
    assert r.status_code == 409 and r.json()["responseCode"] == 101
    assert r.json()["handle"] == f"{tenant.prefix}/C1"
    stored = stored_values(sql, f"{tenant.prefix}/C1")
    assert stored[0]["data"]["value"] == "https://example.org/1"   # unchanged


def test_put_replaces_the_whole_record_by_default(tenant: Tenant) -> None:
    requests.put(tenant.handle_url("R"), json=[URL1, {"index": 2, "type": "A", "data": "a"}],
                 headers=tenant.op.bearer)
    r = requests.put(tenant.handle_url("R"), json={"index": 5, "type": "B", "data": "b"},
                     headers=tenant.op.bearer)   # a single value on its own
    assert r.status_code == 200
    assert indexes(tenant, "R") == [5]


def test_put_with_index_adds_and_replaces_values(tenant: Tenant) -> None:
    h = tenant.handle_url("I")
    requests.put(h, json=[URL1, {"index": 2, "type": "A", "data": "a"}], headers=tenant.op.bearer)
    r = requests.put(h + "?index=2&index=3", headers=tenant.op.bearer, json={"values": [
        {"index": 2, "type": "A", "data": "a2"}, {"index": 3, "type": "B", "data": "b"}]})
    assert r.status_code == 200, r.text
    values = requests.get(h).json()["values"]
    assert [(v["index"], v["data"]["value"]) for v in values] == [
        (1, "https://example.org/1"), (2, "a2"), (3, "b")]
    # ?index must match the body
    r = requests.put(h + "?index=4", json=[{"index": 5, "type": "C", "data": "c"}],
                     headers=tenant.op.bearer)
    assert r.status_code == 400 and "mismatched indexes" in r.json()["message"]
    # index=various takes whatever the body holds; overwrite=false refuses a taken index
    r = requests.put(h + "?index=various&overwrite=false", headers=tenant.op.bearer,
                     json=[{"index": 1, "type": "URL", "data": "https://dup"}])
    assert r.status_code == 409 and r.json()["responseCode"] == 201
    r = requests.put(h + "?index=various", json=[{"index": 9, "type": "D", "data": "d"}],
                     headers=tenant.op.bearer)
    assert r.status_code == 200 and indexes(tenant, "I") == [1, 2, 3, 9]
    # adding values to a record that does not exist
    r = requests.put(tenant.handle_url("nope") + "?index=1", json=[URL1], headers=tenant.op.bearer)
    assert r.status_code == 404 and r.json()["responseCode"] == 100


def test_mint_new_suffix(tenant: Tenant) -> None:
    r = requests.put(f"{tenant.url}/api/handles/{tenant.prefix}/BATCH-?mintNewSuffix=true",
                     json=[URL1], headers=tenant.op.bearer)
    assert r.status_code == 201
    minted = r.json()["handle"]
    assert minted.startswith(f"{tenant.prefix}/BATCH-") and len(minted) > len(tenant.prefix) + 30
    assert requests.get(f"{tenant.url}/api/handles/{minted}").json()["responseCode"] == 1


def test_delete_values_and_record(tenant: Tenant, sql: Any) -> None:
    h = tenant.handle_url("D")
    requests.put(h, json=[URL1, {"index": 2, "type": "A", "data": "a"},
                          {"index": 3, "type": "B", "data": "b"}], headers=tenant.op.bearer)
    r = requests.delete(h + "?index=2&index=3", headers=tenant.op.bearer)
    assert r.status_code == 200 and r.json() == {"responseCode": 1, "handle": f"{tenant.prefix}/D"}
    assert indexes(tenant, "D") == [1]
    # a missing index: 400 + responseCode 200, nothing removed
    r = requests.delete(h + "?index=1&index=42", headers=tenant.op.bearer)
    assert r.status_code == 400 and r.json()["responseCode"] == 200
    assert indexes(tenant, "D") == [1]
    r = requests.delete(h, headers=tenant.op.bearer)
    assert r.status_code == 200
    assert stored_values(sql, f"{tenant.prefix}/D") is None
    r = requests.delete(h, headers=tenant.op.bearer)
    assert r.status_code == 404 and r.json() == {
        "responseCode": 100, "handle": f"{tenant.prefix}/D",
        "message": f"handle {tenant.prefix}/D not found"}


def test_list_handles_of_a_prefix(tenant: Tenant) -> None:
    for i in range(5):
        requests.put(tenant.handle_url(f"L{i}"), json=[URL1], headers=tenant.op.bearer)
    url = f"{tenant.url}/api/handles"
    r = requests.get(url, params={"prefix": tenant.prefix, "page": 1, "pageSize": 2},
                     headers=tenant.op.bearer)
    body = r.json()
    assert r.status_code == 200
    assert body["totalCount"] == "5" and body["page"] == 1 and body["pageSize"] == 2
    assert body["handles"] == [f"{tenant.prefix}/L2", f"{tenant.prefix}/L3"]
    r = requests.get(url, params={"prefix": tenant.prefix, "pageSize": 0}, headers=tenant.op.bearer)
    assert r.json()["totalCount"] == "5" and r.json()["handles"] == []
    assert requests.get(url, params={"prefix": tenant.prefix}).status_code == 401


def test_child_prefix_allocation(tenant: Tenant, server: Server, admin: Any) -> None:
    from tests.conftest import new_operator

    other = new_operator(server, admin, f"child-of-{tenant.op.name}")
    child = tenant.prefix + ".5"
    r = requests.post(f"{server.url}/api/prefixes", json={"prefix": child, "owner": other.name},
                      headers=tenant.op.bearer)
    assert r.status_code == 201 and r.json()["owner"] == other.name
    # the child's owner writes under it; the parent's owner may too
    r = requests.put(f"{server.url}/api/handles/{child}/X", json=[URL1], headers=other.bearer)
    assert r.status_code == 201
    r = requests.put(f"{server.url}/api/handles/{child}/Y", json=[URL1], headers=tenant.op.bearer)
    assert r.status_code == 201
    # but the child's owner cannot write under the parent
    r = requests.put(tenant.handle_url("Z"), json=[URL1], headers=other.bearer)
    assert r.status_code == 403 and r.json()["responseCode"] == 401
    # again: already allocated; a stranger allocating under it: refused
    r = requests.post(f"{server.url}/api/prefixes", json={"prefix": child, "owner": other.name},
                      headers=tenant.op.bearer)
    assert r.status_code == 409
    r = requests.post(f"{server.url}/api/prefixes", json={"prefix": child + ".1"},
                      headers=tenant.op.bearer)
    assert r.status_code == 201   # owner defaults to the caller
    r = requests.post(f"{server.url}/api/prefixes", json={"prefix": "89"}, headers=other.bearer)
    assert r.status_code == 403 and "administrator" in r.json()["message"]
    listed = requests.get(f"{server.url}/api/prefixes").json()["prefixes"]
    assert child in listed and tenant.prefix in listed
