"""Requests lent to aiohttp (resolver/http/loan.py): a write on a connection does not cost
the connection its fast path; what cannot be lent is still handed over for good; the
connection closes when the answer, the request or aiohttp says so."""

from __future__ import annotations

import json
import socket
import time

import requests

from tests.conftest import Server, Tenant
from tests.resolver.test_fast_path import closed, read_responses


def counters(server: Server) -> tuple[float, float, float]:
    """(hand-offs for good, loans, fast-path resolutions) so far."""
    text = requests.get(f"{server.url}/metrics").text
    got = {line.split()[0]: float(line.split()[-1]) for line in text.splitlines()
           if line.startswith(("idres_http_handoffs_total ", "idres_http_lent_total ",
                               "idres_http_fast_requests_total "))}
    return (got["idres_http_handoffs_total"], got["idres_http_lent_total"],
            got["idres_http_fast_requests_total"])


def put_request(tenant: Tenant, suffix: str, url: str, extra: str = "") -> bytes:
    body = json.dumps([{"index": 1, "type": "URL", "data": url}]).encode()
    token = tenant.op.bearer["Authorization"]
    return (f"PUT /api/handles/{tenant.prefix}/{suffix} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def get_request(tenant: Tenant, suffix: str) -> bytes:
    return f"GET /api/handles/{tenant.prefix}/{suffix} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_a_write_is_lent_and_the_connection_comes_back(server: Server, tenant: Tenant) -> None:
    """GET, PUT, GET, PUT, GET pipelined on one connection: the PUTs are answered by
    aiohttp, the GETs by the fast path, in order, each GET seeing the write before it."""
    handoffs, lent, fast = counters(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(put_request(tenant, "LOAN-1", "https://example.org/1"))
        assert read_responses(s, 1)[0][0] == 201
        s.sendall(get_request(tenant, "LOAN-1")
                  + put_request(tenant, "LOAN-1", "https://example.org/2")
                  + get_request(tenant, "LOAN-1")
                  + put_request(tenant, "LOAN-1", "https://example.org/3")
                  + get_request(tenant, "LOAN-1"))
        got = read_responses(s, 5)
        assert [status for status, _, _ in got] == [200, 200, 200, 200, 200]
        urls = [json.loads(body)["values"][0]["data"]["value"] for _, _, body in got[::2]]
        assert urls == ["https://example.org/1", "https://example.org/2",
                        "https://example.org/3"]                     # read-your-writes
        # the body arrives in pieces: the loan waits for all of it
        request = put_request(tenant, "LOAN-2", "https://example.org/pieces")
        for n in range(0, len(request), 7):
            s.sendall(request[n:n + 7])
            time.sleep(0.002)
        assert read_responses(s, 1)[0][0] == 201
        s.sendall(get_request(tenant, "LOAN-2"))
        assert read_responses(s, 1)[0][0] == 200
    handoffs2, lent2, fast2 = counters(server)
    assert handoffs2 == handoffs                   # never handed over for good
    assert lent2 - lent == 4 + 1                   # the four PUTs, and the metrics read
    assert fast2 - fast >= 4                       # the GETs stayed on the fast path


def test_a_lent_request_asking_to_close_closes_and_what_cannot_be_lent_is_handed_over(
        server: Server, tenant: Tenant) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(put_request(tenant, "LOAN-3", "https://example.org/c", "Connection: close\r\n")
                  + get_request(tenant, "LOAN-3"))
        status, headers, _ = read_responses(s, 1)[0]
        assert status == 201 and headers.get("connection") == "close"
        assert closed(s)                           # the GET after it is not answered
    handoffs, lent, _ = counters(server)
    # a chunked body, and one over the loan's limit: handed over, and still answered
    big = json.dumps([{"index": 1, "type": "URL", "data": "https://example.org/" + "x" * 300_000}])
    token = tenant.op.bearer["Authorization"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall((f"PUT /api/handles/{tenant.prefix}/LOAN-4 HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: {token}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(big)}\r\n\r\n").encode() + big.encode())
        assert read_responses(s, 1)[0][0] in (201, 400, 413)
    chunk = json.dumps([{"index": 1, "type": "URL", "data": "https://example.org/ch"}]).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall((f"PUT /api/handles/{tenant.prefix}/LOAN-5 HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: {token}\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n").encode()
                  + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"
                  + get_request(tenant, "LOAN-5"))
        got = read_responses(s, 2)
        assert [g[0] for g in got] == [201, 200]
    handoffs2, lent2, _ = counters(server)
    assert handoffs2 - handoffs == 2 and lent2 - lent == 1     # (+1: the metrics read)


def test_a_client_gone_during_a_loan_leaves_the_server_serving(server: Server,
                                                                tenant: Tenant) -> None:
    """The client sends a write and half of the next request, then goes; and another
    sends a body shorter than it said, then goes. Nothing is left waiting, nothing
    breaks, and the write that was sent whole is stored."""
    for n in range(20):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(put_request(tenant, f"GONE-{n}", f"https://example.org/{n}")
                  + get_request(tenant, "GONE-0")[:20])
        s.close()
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(put_request(tenant, f"SHORT-{n}", "https://example.org/s")[:-10])
        s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stored = [requests.get(tenant.handle_url(f"GONE-{n}")).status_code for n in range(20)]
        if stored == [200] * 20:
            break
        time.sleep(0.2)
    assert stored == [200] * 20
    assert requests.get(tenant.handle_url("SHORT-0")).status_code == 404
    assert requests.get(f"{server.url}/healthz").status_code == 200
    text = requests.get(f"{server.url}/metrics").text
    held = next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("idres_http_fast_connections "))
    assert held <= 2, held        # (the metrics request's own, at most one other)
