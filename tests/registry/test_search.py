"""Reverse lookup (GET /hrls/handles, the B2HANDLE-HRLS contract pyhandle's search_handle
uses): what matches, who may find what, and clear errors."""

from __future__ import annotations

from typing import Any

import requests
from pyhandle.handleclient import PyHandleClient

from tests.conftest import Operator, Server, Tenant, new_operator


def put(t: Tenant, suffix: str, *values: dict[str, Any]) -> None:
    r = requests.put(t.handle_url(suffix), headers=t.op.bearer, json=list(values))
    assert r.status_code in (200, 201), r.text


def url(i: int, data: str, **extra: Any) -> dict[str, Any]:
    return {"index": i, "type": "URL", "data": data, **extra}


def find(t: Tenant, query: str, who: Operator | None = None) -> requests.Response:
    return requests.get(f"{t.url}/hrls/handles?{query}", headers=(who or t.op).bearer)


def test_terms_wildcards_and_paging(tenant: Tenant) -> None:
    p = tenant.prefix
    put(tenant, "S1", url(1, "https://wms.example.org/pallet/S1"),
        {"index": 2, "type": "CHECKSUM", "data": "md5:aa11"})
    put(tenant, "S2", url(1, "https://wms.example.org/pallet/S2"),
        {"index": 2, "type": "CHECKSUM", "data": "md5:bb22"})
    put(tenant, "S3", url(1, "https://mes.example.org/order/S3"))
    put(tenant, "S4", url(1, "https://wms.example.org/100%_sure"))
    r = find(tenant, "URL=*wms.example.org*")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.json() == [f"{p}/S1", f"{p}/S2", f"{p}/S4"]
    # every term must match; case does not matter; no wildcard = the whole value
    assert find(tenant, "URL=*WMS*&CHECKSUM=md5:bb*").json() == [f"{p}/S2"]
    assert find(tenant, "URL=https://mes.example.org/order/S3").json() == [f"{p}/S3"]
    assert find(tenant, "URL=mes.example.org").json() == []
    # % and _ are literal text, not wildcards
    assert find(tenant, "URL=*100%25_sure").json() == [f"{p}/S4"]
    assert find(tenant, "URL=*1_0*").json() == []
    # limit and page (from 0), and a prefix to narrow it
    assert find(tenant, "URL=*wms*&limit=2").json() == [f"{p}/S1", f"{p}/S2"]
    assert find(tenant, "URL=*wms*&limit=2&page=1").json() == [f"{p}/S4"]
    assert find(tenant, f"URL=*wms*&prefix={p}").json() == [f"{p}/S1", f"{p}/S2", f"{p}/S4"]


def test_who_finds_what(tenant: Tenant, server: Server, admin: Operator) -> None:
    p = tenant.prefix
    put(tenant, "W1", url(1, "https://erp.example.org/w1"),
        {"index": 2, "type": "cost.center", "data": "CC-7788", "permissions": "1100"})
    # the owner matches its admin-readable value; nobody matches a secret's hash
    assert find(tenant, "cost.center=CC-7788").json() == [f"{p}/W1"]
    assert find(tenant, "HS_SECKEY=*idres*", admin).json() == []
    # another operator finds nothing of ours and may not name our prefix
    other = new_operator(server, admin, f"searcher-{tenant.op.name}")
    assert find(tenant, "URL=*erp.example.org/w1*", other).json() == []
    r = find(tenant, f"URL=*w1*&prefix={p}", other)
    assert r.status_code == 403 and r.json()["responseCode"] == 401
    # an administrator searches everywhere
    assert f"{p}/W1" in find(tenant, "URL=*erp.example.org/w1*", admin).json()


def test_bad_searches_get_clear_errors(tenant: Tenant) -> None:
    r = requests.get(f"{tenant.url}/hrls/handles?URL=*x*")
    assert r.status_code == 401 and r.json()["responseCode"] == 402
    for query, words in [("", "at least one"), ("URL=**", "matches everything"),
                         ("URL=*x*&limit=0", "between"), ("URL=*x*&prefix=88..1", "empty segment"),
                         ("&".join(f"T{i}=x" for i in range(11)), "at most 10")]:
        r = find(tenant, query)
        assert r.status_code == 400 and words in r.json()["message"], (query, r.text)
    r = find(tenant, "URL=*x*&retrieverecords=true")
    assert r.status_code == 501 and "POST /api/resolve" in r.json()["message"]


def test_pyhandle_search_handle(tenant: Tenant) -> None:
    put(tenant, "PY-S1", url(1, "https://tracking.example.org/shipment/77"),
        {"index": 2, "type": "CHECKSUM", "data": "sha256:77"})
    client = PyHandleClient("rest").instantiate_with_username_and_password(
        tenant.url, tenant.op.identity, tenant.op.secret, HTTPS_verify=False)
    found = client.search_handle(URL="*tracking.example.org*", CHECKSUM="sha256:77")
    assert found == [f"{tenant.prefix}/PY-S1"]
    assert client.search_handle(URL="*tracking.example.org*", prefix="88.0") == []


def test_scopes_and_patterns() -> None:
    from registry.search import like_pattern, outermost
    # descendants are covered by their ancestor's range; ranges come in key order
    assert outermost(["88.1.5", "88.1", "88.10", "88.1-x", "90"]) == ["88.1-x", "88.1", "88.10", "90"]
    assert like_pattern(r"*a%b_c\d*") == r"%a\%b\_c\\d%"


def test_paging_runs_across_prefixes(tenant: Tenant, server: Server, admin: Operator) -> None:
    second = f"{tenant.prefix}9"          # a second prefix of the same operator
    r = requests.post(f"{server.url}/api/prefixes", headers=admin.bearer,
                      json={"prefix": second, "owner": tenant.op.name})
    assert r.status_code == 201, r.text
    for n in range(3):
        put(tenant, f"PG{n}", url(1, f"https://pg.example.org/{n}"))
        r = requests.put(f"{tenant.url}/api/handles/{second}/PG{n}", headers=tenant.op.bearer,
                         json=[url(1, f"https://pg.example.org/b{n}")])
        assert r.status_code == 201, r.text
    everything = [f"{tenant.prefix}/PG{n}" for n in range(3)] + [f"{second}/PG{n}" for n in range(3)]
    assert find(tenant, "URL=*pg.example.org*").json() == everything
    pages = [find(tenant, f"URL=*pg.example.org*&limit=4&page={n}").json() for n in range(3)]
    assert pages == [everything[:4], everything[4:], []]
