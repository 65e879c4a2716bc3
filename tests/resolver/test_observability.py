"""Every request counted by route and status with its latency, on the fast path as on
aiohttp; request ids echoed and logged; an access line for every path, as text or JSON;
one /metrics for all workers (resolver/traffic.py, resolver/metrics.py)."""

from __future__ import annotations

import json
import re
import socket
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Operator, Server, Tenant, new_operator


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"{url}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _count(samples: dict, route: str, status: str, method: str = "GET") -> float:
    return sum(v for (name, labels), v in samples.items() if name == "idres_requests_total"
               and dict(labels).get("route") == route and dict(labels).get("status") == status
               and dict(labels).get("method") == method)


def test_every_path_is_counted_with_its_latency(server: Server, tenant: Tenant) -> None:
    requests.put(tenant.handle_url("OBS"), headers=tenant.op.bearer,
                 json=[{"index": 1, "type": "URL", "data": "https://example.org/o"}])
    before = _samples(server.url)
    with requests.Session() as s:           # one connection: hits on the fast path
        for _ in range(20):
            assert s.get(tenant.handle_url("OBS")).status_code == 200
        assert s.get(tenant.handle_url("NOPE")).status_code == 404
        assert s.get(f"{tenant.url}/{tenant.prefix}/OBS", allow_redirects=False
                     ).status_code == 302         # lent to aiohttp: the proxy route
        assert s.get(f"{tenant.url}/api/nothing").status_code == 404
    after = _samples(server.url)
    handles = "/api/handles/{handle}"
    assert _count(after, handles, "200") - _count(before, handles, "200") >= 20
    assert _count(after, handles, "404") - _count(before, handles, "404") >= 1
    assert _count(after, "/{handle}", "302") - _count(before, "/{handle}", "302") == 1
    # the histogram: cumulative buckets, the count equal to the requests of the route
    buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in after.items()
                     if name == "idres_request_duration_seconds_bucket"
                     and dict(labels)["route"] == handles)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    total = after[("idres_request_duration_seconds_count", (("route", handles),))]
    assert total == sum(v for (name, labels), v in after.items() if name ==
                        "idres_requests_total" and dict(labels)["route"] == handles)
    assert buckets[-1] == (float("inf"), total)
    build = [(dict(labels), v) for (name, labels), v in after.items()
             if name == "idres_build_info"]
    assert len(build) == 1 and build[0][0]["version"] and build[0][1] == 1.0


def test_request_ids_are_echoed_on_every_path(server: Server, tenant: Tenant) -> None:
    url = tenant.handle_url("RID")
    requests.put(url, headers=tenant.op.bearer, json=[{"index": 1, "type": "x", "data": "y"}])
    for target in (url, url, f"{tenant.url}/{tenant.prefix}/RID", f"{server.url}/api/prefixes"):
        r = requests.get(target, headers={"X-Request-ID": "mes-42-abc"})
        assert r.headers["X-Request-ID"] == "mes-42-abc", target
    # one a log line cannot hold safely is not echoed (and the answer is the same)
    for hostile in ("a b", "x" * 300, "\u00e9t\u00e9"):
        r = requests.get(url, headers={"X-Request-ID": hostile.encode("utf-8")})
        assert r.status_code == 200 and "X-Request-ID" not in r.headers
    assert "X-Request-ID" not in requests.get(url).headers


def _raw_get(port: int, path: str, rid: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Request-ID: {rid}\r\n"
                     "Connection: close\r\n\r\n".encode())
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_the_access_log_covers_every_path_as_text_and_as_json(
        pg_dsn: str, server: Server, admin: Operator) -> None:
    op = new_operator(server, admin, "access-op")
    requests.post(f"{server.url}/api/prefixes", json={"prefix": "88.333", "owner": op.name},
                  headers=admin.bearer)
    requests.put(f"{server.url}/api/handles/88.333/LOG", headers=op.bearer,
                 json=[{"index": 1, "type": "URL", "data": "https://example.org/l"}])
    for form in ("text", "json"):
        srv = Server(pg_dsn, "--access-log", "--log-format", form)
        try:
            srv.wait_ready()
            port = int(srv.url.rsplit(":", 1)[1])
            for _ in range(2):   # a miss, then a hit: both on the fast path
                assert b"200 OK" in _raw_get(port, "/api/handles/88.333/LOG", f"{form}-fast")
            assert b" 302 " in _raw_get(port, "/88.333/LOG", f"{form}-proxy")
            time.sleep(0.3)
        finally:
            assert srv.stop() == 0, srv.output()
        out = srv.output()
        if form == "text":
            fast = [ln for ln in out.splitlines() if "text-fast" in ln]
            assert len(fast) == 2 and all(
                '"GET /api/handles/88.333/LOG" 200' in ln for ln in fast), out
            assert re.search(r'"GET /88\.333/LOG" 302 \d+ [\d.]+ms text-proxy', out), out
        else:
            lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
            assert lines and all({"time", "level", "logger", "message"} <= ln.keys()
                                 for ln in lines)
            fast = [ln for ln in lines if ln.get("request_id") == "json-fast"]
            assert len(fast) == 2 and {ln["status"] for ln in fast} == {200}
            assert all(ln["target"] == "/api/handles/88.333/LOG" and ln["bytes"] > 0
                       and ln["duration_ms"] >= 0 for ln in fast)
            [proxy] = [ln for ln in lines if ln.get("request_id") == "json-proxy"]
            assert proxy["status"] == 302 and proxy["method"] == "GET"


def test_an_access_line_cannot_be_forged_by_a_client() -> None:
    from resolver.traffic import AccessLog

    class Keep:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def info(self, fmt: str, *args: object, **kw: object) -> None:
            self.lines.append(fmt % args)

    kept = Keep()
    AccessLog(kept).line("1.2.3.4", "GET", "/x\n1.2.3.4 \"GET /admin\" 200", 404, 0, 0.001,
                         "r", "agent\r\nforged")  # type: ignore[arg-type]
    assert len(kept.lines) == 1 and "\n" not in kept.lines[0] and "\r" not in kept.lines[0]
    assert "\\x0a" in kept.lines[0] and "\\x0d\\x0a" in kept.lines[0]


def test_one_scrape_shows_every_worker(pg_dsn: str) -> None:
    srv = Server(pg_dsn, "--workers", "2")
    try:
        srv.wait_ready()
        deadline = time.monotonic() + 20
        seen: set[str] = set()
        while time.monotonic() < deadline:
            for _ in range(10):       # new connections: the kernel spreads them
                requests.get(f"{srv.url}/api/handles/88.0.0/SPREAD")
            samples = _samples(srv.url)
            seen = {dict(labels)["worker"] for (name, labels), _ in samples.items()
                    if name == "idres_cache_entries"}
            if seen == {"0", "1"}:
                break
            time.sleep(0.5)
        assert seen == {"0", "1"}, seen
        # every scrape, whichever worker answers it, shows both, and counts what both did
        for _ in range(6):
            samples = _samples(srv.url)
            workers = {dict(labels)["worker"] for (name, labels), _ in samples.items()
                       if name == "idres_requests_total"}
            assert workers == {"0", "1"}
    finally:
        assert srv.stop() == 0, srv.output()
