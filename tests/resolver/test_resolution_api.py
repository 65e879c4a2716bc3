"""GET /api/handles/... and the proxy, against a running server (Handle checklist §6.1)."""

from __future__ import annotations

import http.client
import json
from typing import Any

import requests

from tests.conftest import Server, Tenant

ORDER = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://mes.example/o/1"}},
    {"index": 2, "type": "order.status", "data": "released"},
    {"index": 3, "type": "order.cost", "data": "1200.50", "permissions": "1100"},
]


def register(t: Tenant, suffix: str, values: list[dict[str, Any]]) -> None:
    r = requests.put(t.handle_url(suffix), json={"values": values}, headers=t.op.bearer)
    assert r.status_code in (200, 201), r.text


def test_resolve_returns_the_handle_json(tenant: Tenant) -> None:
    register(tenant, "ORDER-1", ORDER)
    r = requests.get(tenant.handle_url("ORDER-1"))
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["responseCode", "handle", "values"]
    assert body["responseCode"] == 1
    assert body["handle"] == f"{tenant.prefix}/ORDER-1"
    assert [v["index"] for v in body["values"]] == [1, 2]   # index 3 is not public
    v = body["values"][0]
    assert list(v) == ["index", "type", "data", "ttl", "timestamp"]
    assert v["data"] == {"format": "string", "value": "https://mes.example/o/1"}
    assert v["ttl"] == 86400 and v["timestamp"].endswith("Z") and len(v["timestamp"]) == 20


def test_identifiers_are_case_insensitive_and_echoed_as_requested(tenant: Tenant,
                                                                  sql: Any) -> None:
    """As the Handle.Net server by default: ASCII case does not matter (stored spelling
    kept, lookups folded, no Unicode folding), and the answer echoes the request."""
    register(tenant, "Mixed-Case", ORDER[:1])
    for asked in (f"{tenant.prefix.lower()}/Mixed-Case", f"{tenant.prefix}/mixed-case",
                  f"{tenant.prefix}/MIXED-CASE"):
        for url in (f"{tenant.url}/api/handles/{asked}",             # fast path, twice
                    f"{tenant.url}/api/handles/{asked}",
                    f"{tenant.url}/api/handles/{asked}?index=1"):     # aiohttp
            r = requests.get(url)
            assert r.status_code == 200 and r.json()["handle"] == asked, (url, r.text)
    batch = requests.post(f"{tenant.url}/api/resolve", json=[f"{tenant.prefix}/mIxEd-cAsE"])
    assert batch.json()["results"][0]["responseCode"] == 1
    # a second identifier differing only in case is refused; the first stays as written
    r = requests.put(tenant.handle_url("MIXED-case?overwrite=false"), json=ORDER[:1],
                     headers=tenant.op.bearer)
    assert r.status_code == 409 and r.json()["responseCode"] == 101
    r = requests.post(f"{tenant.url}/api/bulk", headers=tenant.op.bearer,
                      json=[{"handle": f"{tenant.prefix}/TWIN", "values": ORDER[:1]},
                            {"handle": f"{tenant.prefix}/twin", "values": ORDER[:1]}])
    assert r.status_code == 400 and "appears twice" in r.json()["message"]
    listed = requests.get(f"{tenant.url}/api/handles?prefix={tenant.prefix}",
                          headers=tenant.op.bearer).json()["handles"]
    assert f"{tenant.prefix}/Mixed-Case" in listed and f"{tenant.prefix}/TWIN" not in listed
    assert [r["handle"] for r in sql("SELECT handle FROM handles WHERE spelling = $1",
                                     f"{tenant.prefix}/Mixed-Case")] == [
        f"{tenant.prefix}/MIXED-CASE"]
    # only ASCII letters fold
    register(tenant, "ÄRGER", ORDER[:1])
    assert requests.get(tenant.handle_url("ärger")).status_code == 404
    assert requests.get(tenant.handle_url("ÄrGeR")).status_code == 200


def test_not_found_is_404_with_response_code_100_and_the_handle(server: Server,
                                                                tenant: Tenant) -> None:
    for _ in range(2):     # a miss, then the negative cache's answer
        r = requests.get(tenant.handle_url("NOPE"))
        assert r.status_code == 404
        body = r.json()
        assert body["responseCode"] == 100 and body["handle"] == f"{tenant.prefix}/NOPE"
        assert "not found" in body["message"]


def test_a_prefix_not_served_here_is_301_as_on_the_handle_server(server: Server,
                                                                 tenant: Tenant) -> None:
    """Neither allocated nor delegated here: 400 + responseCode 301, "That prefix doesn't
    live here" (the Handle.Net server's answer, measured against 9.3.1), on every path."""
    for url in (f"{server.url}/api/handles/99.1/NOPE", f"{server.url}/api/handles/99.1/NOPE?type=URL",
                f"{server.url}/99.1/NOPE"):
        for _ in range(2):
            r = requests.get(url)
            assert r.status_code == 400, (url, r.text)
            assert r.json()["responseCode"] == 301 and r.json()["handle"] == "99.1/NOPE"
            assert r.json()["message"].startswith("That prefix doesn't live here")
    batch = requests.post(f"{server.url}/api/resolve", json=["99.1/NOPE"]).json()["results"]
    assert batch[0]["responseCode"] == 301
    # once allocated, the same identifier is simply not found
    r = requests.post(f"{server.url}/api/prefixes", headers=tenant.op.bearer,
                      json={"prefix": f"{tenant.prefix}.301", "owner": tenant.op.name})
    assert r.status_code == 201
    assert requests.get(f"{server.url}/api/handles/{tenant.prefix}.301/NOPE").status_code == 404


def test_type_and_index_filters_are_ored_and_repeatable(tenant: Tenant) -> None:
    register(tenant, "F", ORDER)
    url = tenant.handle_url("F")
    assert [v["index"] for v in requests.get(url, params={"type": "URL"}).json()["values"]] == [1]
    got = requests.get(url + "?index=2&type=URL").json()["values"]
    assert [v["index"] for v in got] == [1, 2]
    got = requests.get(url + "?type=order.").json()["values"]   # subtypes
    assert [v["index"] for v in got] == [2]
    # a filter that matches nothing: 200 with responseCode 200
    r = requests.get(url + "?index=77")
    assert r.status_code == 200
    assert r.json() == {"responseCode": 200, "values": [], "handle": f"{tenant.prefix}/F"}
    # a restricted value is not reachable through a filter either
    assert requests.get(url + "?index=3").json()["responseCode"] == 200


def test_head_answers_headers_without_a_body(tenant: Tenant) -> None:
    register(tenant, "H", ORDER)
    r = requests.head(tenant.handle_url("H"))
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["Content-Length"]) == len(requests.get(tenant.handle_url("H")).content)
    assert requests.head(tenant.handle_url("missing")).status_code == 404


def test_malformed_identifier_is_400_with_a_message(server: Server) -> None:
    for path, fragment in [
        ("88.1/%ZZ", "malformed percent-escape"),
        ("88.1/%C3%28", "UTF-8"),
        ("88..1/X", "empty segment"),
        ("88.1/a%00b", "control character"),
        ("88.1/" + "x" * 3000, "longer than 2048"),
    ]:
        # http.client sends the path as written (requests would re-quote '%ZZ')
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", f"/api/handles/{path}")
        resp = conn.getresponse()
        assert resp.status == 400, path
        body = json.loads(resp.read())
        conn.close()
        assert body["responseCode"] == 102 and fragment in body["message"], body
    r = requests.get(f"{server.url}/api/handles/88.1/X?index=abc")
    assert r.status_code == 400 and "index must be a positive integer" in r.json()["message"]


def test_authenticated_owner_sees_admin_readable_values(tenant: Tenant, server: Server,
                                                        admin: Any) -> None:
    register(tenant, "PRIV", ORDER)
    mine = requests.get(tenant.handle_url("PRIV"), headers=tenant.op.bearer).json()
    assert [v["index"] for v in mine["values"]] == [1, 2, 3]
    assert mine["values"][2]["permissions"] == "1100"
    r = requests.get(tenant.handle_url("PRIV"), headers={"Authorization": "Bearer idr_wrong"})
    assert r.status_code == 401 and r.json()["responseCode"] == 402


def test_proxy_redirects_to_the_first_url(tenant: Tenant) -> None:
    register(tenant, "P", ORDER)
    r = requests.get(f"{tenant.url}/{tenant.prefix}/P", allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "https://mes.example/o/1"
    r = requests.get(f"{tenant.url}/{tenant.prefix}/P?noredirect", allow_redirects=False)
    assert r.status_code == 200 and r.json()["responseCode"] == 1
    r = requests.get(f"{tenant.url}/{tenant.prefix}/NOPE", allow_redirects=False)
    assert r.status_code == 404 and r.json()["responseCode"] == 100


def test_unknown_api_path_is_a_json_error(server: Server) -> None:
    r = requests.get(f"{server.url}/api/nothing-here")
    assert r.status_code == 404 and r.json()["message"] == "no such endpoint"
    r = requests.post(f"{server.url}/api/handles/88.1/X")
    assert r.status_code == 405 and r.json()["responseCode"] == 5


def test_metrics_count_requests(server: Server) -> None:
    requests.get(f"{server.url}/api/handles/88.0.0/METRIC")
    text = requests.get(f"{server.url}/metrics").text
    assert 'idres_requests_total{method="GET",route="/api/handles/{handle}",status="404"}' \
        in text or 'idres_requests_total{route="/api/handles/{handle}",method="GET",status="404"}' \
        in text, text


def test_health_check(server: Server) -> None:
    r = requests.get(f"{server.url}/healthz")
    assert r.status_code == 200
    assert r.json() == {"responseCode": 1, "status": "ok", "database": "ok", "cache": "on"}


def test_cors_lets_browser_applications_read(tenant: Tenant, server: Server) -> None:
    """Every answer carries Access-Control-Allow-Origin: * (never Allow-Credentials), on
    the fast path and through aiohttp; a preflight gets the methods and headers."""
    register(tenant, "CORS", ORDER[:1])
    origin = {"Origin": "https://app.example"}
    for url in (tenant.handle_url("CORS"), tenant.handle_url("CORS") + "?index=1",
                tenant.handle_url("NOPE"), f"{server.url}/api/prefixes"):
        r = requests.get(url, headers=origin)
        assert r.headers["Access-Control-Allow-Origin"] == "*", url
        assert "Warning" in r.headers["Access-Control-Expose-Headers"]
        assert "Access-Control-Allow-Credentials" not in r.headers
    pre = requests.options(tenant.handle_url("CORS"), headers={
        **origin, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code == 200
    assert "PUT" in pre.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    assert pre.headers["Access-Control-Max-Age"] == "86400"
    assert "Access-Control-Allow-Credentials" not in pre.headers
    plain = requests.options(f"{server.url}/api/handles")
    assert plain.status_code == 200 and "PUT" in plain.headers["Allow"]
    # the preflight grants nothing: the write still needs credentials
    r = requests.put(tenant.handle_url("CORS"), json=ORDER[:1], headers=origin)
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == "*"


def test_pretty_indents_as_the_handle_server(tenant: Tenant, server: Server) -> None:
    register(tenant, "PRETTY", ORDER[:1])
    for flag in ("pretty", "pretty=true"):
        r = requests.get(tenant.handle_url("PRETTY") + "?" + flag)
        assert r.text.startswith('{\n  "responseCode": 1,\n  "handle": ')
        assert r.json() == requests.get(tenant.handle_url("PRETTY")).json()
    assert "\n" not in requests.get(tenant.handle_url("PRETTY") + "?pretty=false").text
    assert requests.get(f"{server.url}/api/site?pretty").text.startswith('{\n  "responseCode"')


def test_site_information_has_the_handle_server_shape(server: Server) -> None:
    body = requests.get(f"{server.url}/api/site").json()
    assert body["responseCode"] == 1 and list(body) == ["responseCode", "site"]
    site = body["site"]
    assert list(site) == ["version", "protocolVersion", "serialNumber", "primarySite",
                          "multiPrimary", "attributes", "servers"]
    assert site["primarySite"] is True and site["multiPrimary"] is False
    (only,) = site["servers"]
    assert only["serverId"] == 1 and only["address"] == "127.0.0.1"
    key = requests.get(f"{server.url}/api/node").json()["publicKey"]
    assert only["publicKey"] == {"format": "key",
                                 "value": {"kty": "OKP", "crv": "Ed25519", "x": key}}
    assert only["interfaces"] == [{"query": True, "admin": True, "protocol": "HTTP",
                                   "port": server.port}]
