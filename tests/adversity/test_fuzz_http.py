"""Property-based fuzzing of the HTTP API over raw sockets (hypothesis): random methods,
paths, query strings, headers (Authorization among them, bytes that are not ASCII or
not UTF-8), bodies. Whatever arrives: no 5xx, and a request that is refused stores
nothing. A few seconds in CI; ``HYPOTHESIS_PROFILE=long`` runs thousands of cases."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server, Tenant, run_sql

settings.register_profile("ci", max_examples=120, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.register_profile("long", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "5000")), deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

ROUTES = ["/api/handles/", "/api/handles", "/api/bulk", "/api/resolve", "/api/prefixes",
          "/api/operators", "/api/tokens", "/api/audit", "/hrls/handles", "/api/site", "/",
          "/api/delegations", "/api/operators/x/secret", "/api/tokens/1", "/healthz",
          "/api/node", "/metrics"]
junk = st.binary(max_size=40)
text = st.text(max_size=30)


@st.composite
def requests_(draw: Any, prefix: str, token: str) -> bytes:
    method = draw(st.sampled_from([b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS",
                                   b"PATCH"]) | st.binary(min_size=1, max_size=8))
    route = draw(st.sampled_from(ROUTES)).encode()
    tail = draw(st.sampled_from([b"", prefix.encode() + b"/FUZZ", prefix.encode() + b"/"])
                | junk.map(lambda b: b.replace(b" ", b"%20")))
    query = draw(st.sampled_from([b"", b"?index=1", b"?overwrite=false", b"?index=various",
                                  b"?prefix=" + prefix.encode(), b"?URL=*x*", b"?pretty",
                                  b"?mintNewSuffix=true", b"?type=URL&index=x"]) | junk)
    auth = draw(st.sampled_from([None, f"Bearer {token}".encode(), b"Bearer \xff", b"Basic \xfe",
                                 b"Basic " + b"A" * 40, b"Digest x"]) | junk)
    ctype = draw(st.sampled_from([None, b"application/json", b"application/msgpack",
                                  b"text/plain", b"\xff/\xfe"]))
    body = draw(st.sampled_from([b"", b"[]", b"{}", b'[{"index":1,"type":"URL","data":"u"}]',
                                 b'{"handles":["' + prefix.encode() + b'/FUZZ"]}',
                                 b'[{"handle":"' + prefix.encode() + b'/FUZZ","values":[]}]'])
                | st.binary(max_size=200) | text.map(str.encode))
    extra = draw(st.lists(st.tuples(st.binary(min_size=1, max_size=12), junk), max_size=3))
    head = [method + b" " + route + tail + query + b" HTTP/1.1", b"Host: x", b"Connection: close"]
    if auth is not None:
        head.append(b"Authorization: " + auth)
    if ctype is not None:
        head.append(b"Content-Type: " + ctype)
    head += [name.replace(b":", b"") + b": " + value for name, value in extra]
    head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _send(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return out


def _state(dsn: str, prefix: str) -> Any:
    rows = run_sql(dsn, """SELECT (SELECT count(*) FROM handles WHERE handle >= $1 AND handle < $2),
                                  (SELECT coalesce(sum(hashtext(handle || "values"::text)), 0)
                                   FROM handles WHERE handle >= $1 AND handle < $2),
                                  (SELECT count(*) FROM audit)""", prefix + "/", prefix + "0")
    return tuple(rows[0])


@pytest.mark.timeout(7200 if PROFILE == "long" else 120)
def test_random_requests_never_get_a_5xx_and_refusals_store_nothing(
        server: Server, tenant: Tenant, pg_dsn: str) -> None:
    seen: dict[int, int] = {}

    @settings(settings.get_profile(PROFILE))
    @given(requests_(tenant.prefix, tenant.op.token))
    def case(request: bytes) -> None:
        before = _state(pg_dsn, tenant.prefix)
        answer = _send(server.port, request)
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0
        seen[status] = seen.get(status, 0) + 1
        assert status and status < 500, (request[:300], answer[:500])
        if status >= 400:
            assert _state(pg_dsn, tenant.prefix) == before, (request[:300], answer[:300])

    case()
    assert sum(seen.values()) >= 50 and any(s >= 400 for s in seen)
    assert "Traceback" not in server.output(), server.output()[-3000:]
