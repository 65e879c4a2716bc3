"""Native resolution over real TCP and UDP sockets against a running ``idres serve``:
values as REST wrote them, filters, every response code, multi-packet UDP answers, the
same cache coherence as HTTP, and site information."""

from __future__ import annotations

import base64

import pytest
import requests

from resolver.core import hauth, hsdata
from resolver.native import wire
from tests.conftest import Operator, Server, Tenant, free_port, new_operator
from tests.native.conftest import NativeNode
from tests.native.client import TCP, UDP, parse, request, resolution


@pytest.fixture
def native(node: NativeNode) -> tuple[Server, int]:
    return node.server, node.port


@pytest.fixture
def admin(node: NativeNode) -> Operator:
    return node.admin


@pytest.fixture
def owner(native: tuple[Server, int], admin: Operator) -> Tenant:
    srv = native[0]
    op = new_operator(srv, admin, f"native-{free_port()}")
    prefix = f"88.{free_port()}.7"
    r = requests.post(f"{srv.url}/api/prefixes", json={"prefix": prefix, "owner": op.name},
                      headers=admin.bearer, timeout=10)
    assert r.status_code == 201, r.text
    return Tenant(op, prefix, srv.url)


VALUES = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com/o/1"}},
    {"index": 2, "type": "EMAIL", "data": "ops@example.com", "ttl": 60},
    {"index": 3, "type": "BLOB", "data": {"format": "base64",
                                          "value": base64.b64encode(bytes(range(256))).decode()}},
    {"index": 4, "type": "order.status", "data": "released", "ttlType": 1, "ttl": 1900000000,
     "refs": [{"handle": "88.1/REF", "index": 7}]},
    {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
        "handle": "0.NA/88.1", "index": 200, "permissions": "011111110011"}}},
    {"index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": [
        {"handle": "0.OPERATOR/A", "index": 300}, {"handle": "0.OPERATOR/B", "index": 301}]}},
    {"index": 5, "type": "HS_ALIAS", "data": "88.1/OTHER"},
    {"index": 6, "type": "SECRET", "data": "hidden", "permissions": "1100"},
]


def put(t: Tenant, suffix: str, values: list[dict]) -> None:
    r = requests.put(t.handle_url(suffix), json={"values": values}, headers=t.op.bearer,
                     timeout=10)
    assert r.status_code in (200, 201), r.text


@pytest.mark.parametrize("transport", [TCP, UDP])
def test_a_record_written_over_rest_reads_the_same_over_both_transports(
        native: tuple[Server, int], owner: Tenant, transport: type) -> None:
    put(owner, "ORDER-1", VALUES)
    rest = requests.get(owner.handle_url("ORDER-1"), timeout=10).json()["values"]
    client = transport(native[1])
    try:
        for attempt in range(2):   # the second answer comes from the cache
            got = client.ask(resolution(f"{owner.prefix}/order-1", request_id=7 + attempt))
            assert (got.code, got.request_id) == (1, 7 + attempt)
            values = got.values()
            by_index = {v["index"]: v for v in values}
            assert sorted(by_index) == [1, 2, 3, 4, 5, 100, 200]   # 6 is not public
            for v in rest:
                mine = by_index[v["index"]]
                assert mine["type"] == v["type"]
                assert mine["data"] == v["data"]
                assert mine["ttl"] == v["ttl"]
                assert mine.get("ttlType", 0) == v.get("ttlType", 0)
                assert mine.get("refs", []) == v.get("refs", [])
                assert mine["permissions"] == v.get("permissions", "1110")
            assert by_index[3]["data"]["value"] == VALUES[2]["data"]["value"]
    finally:
        client.close()


@pytest.mark.parametrize("transport", [TCP, UDP])
def test_filters_and_response_codes(native: tuple[Server, int], owner: Tenant,
                                    transport: type) -> None:
    put(owner, "F", VALUES[:4])
    client = transport(native[1])
    try:
        got = client.ask(resolution(f"{owner.prefix}/F", types=("EMAIL",)))
        assert got.code == 1 and [v["index"] for v in got.values()] == [2]
        got = client.ask(resolution(f"{owner.prefix}/F", indexes=(1, 3)))
        assert sorted(v["index"] for v in got.values()) == [1, 3]
        got = client.ask(resolution(f"{owner.prefix}/F", types=("order.",)))
        assert [v["index"] for v in got.values()] == [4]
        got = client.ask(resolution(f"{owner.prefix}/F", types=("NOPE",)))
        assert got.code == wire.RC_VALUES_NOT_FOUND
        got = client.ask(resolution(f"{owner.prefix}/MISSING"))
        assert got.code == wire.RC_HANDLE_NOT_FOUND and "not found" in got.message()
        got = client.ask(resolution("77.404/X"))
        assert got.code == wire.RC_SERVER_NOT_RESP
        got = client.ask(resolution(b"88.1/\xff\xfe"))
        assert got.code == wire.RC_INVALID_HANDLE
        got = client.ask(resolution("/X"))
        assert got.code == wire.RC_INVALID_HANDLE
        got = client.ask(request(300, b""))   # HOME_NA
        assert got.code == wire.RC_OPERATION_NOT_SUPPORTED
    finally:
        client.close()


def test_a_large_answer_leaves_udp_in_several_packets(native: tuple[Server, int],
                                                      owner: Tenant) -> None:
    big = "x" * 3000
    put(owner, "BIG", [{"index": 1, "type": "NOTE", "data": big}])
    client = UDP(native[1])
    try:
        for _ in range(2):
            got = client.ask(resolution(f"{owner.prefix}/BIG"))
            assert got.code == 1 and got.values()[0]["data"]["value"] == big
    finally:
        client.close()


@pytest.mark.parametrize("transport", [TCP, UDP])
def test_a_native_answer_after_an_acknowledged_write_is_never_stale(
        native: tuple[Server, int], owner: Tenant, transport: type) -> None:
    client = transport(native[1])
    try:
        for n in range(20):
            put(owner, "LIVE", [{"index": 1, "type": "order.status", "data": f"s{n}"}])
            got = client.ask(resolution(f"{owner.prefix}/LIVE"))
            assert got.values()[0]["data"]["value"] == f"s{n}"
        requests.delete(owner.handle_url("LIVE"), headers=owner.op.bearer, timeout=10)
        assert client.ask(resolution(f"{owner.prefix}/LIVE")).code == wire.RC_HANDLE_NOT_FOUND
    finally:
        client.close()


def test_site_information_names_the_native_port(native: tuple[Server, int]) -> None:
    srv, port = native
    client = TCP(port)
    try:
        got = client.ask(request(wire.OC_GET_SITE_INFO, b""))
    finally:
        client.close()
    assert got.code == 1
    site = hsdata.to_json("HS_SITE", got.body)
    assert site["format"] == "site"
    rest = requests.get(f"{srv.url}/api/site", timeout=10).json()["site"]
    mine = site["value"]
    assert mine["protocolVersion"] == rest["protocolVersion"]
    assert mine["servers"][0]["address"] == rest["servers"][0]["address"]
    assert mine["servers"][0]["interfaces"] == rest["servers"][0]["interfaces"]
    assert {"protocol": "UDP", "port": port, "query": True, "admin": False} in \
        mine["servers"][0]["interfaces"]


@pytest.mark.parametrize("transport", [TCP, UDP])
def test_prefix_handles_point_clients_at_this_node(native: tuple[Server, int], owner: Tenant,
                                                   transport: type) -> None:
    srv, port = native
    client = transport(port)
    try:
        for asked in (f"0.NA/{owner.prefix}", f"0.na/{owner.prefix}", owner.prefix):
            got = client.ask(resolution(asked))
            assert got.code == 1, (asked, got.message() if got.code != 1 else "")
            assert wire.Reader(got.body).text() == asked   # echoed as asked
            by_type = {v["type"]: v for v in got.values()}
            site = by_type["HS_SITE"]["data"]
            assert site["format"] == "site"
            interfaces = site["value"]["servers"][0]["interfaces"]
            assert {"query": True, "admin": True, "protocol": "TCP", "port": port} in interfaces
            admin = by_type["HS_ADMIN"]["data"]["value"]
            assert f'{admin["index"]}:{admin["handle"]}' == owner.op.identity
    finally:
        client.close()
    rest = requests.get(f"{srv.url}/api/handles/0.NA/{owner.prefix}", timeout=10).json()
    assert {v["type"] for v in rest["values"]} == {"HS_SITE", "HS_ADMIN"}
    got_site = requests.get(f"{srv.url}/api/site", timeout=10).json()["site"]
    stored = next(v for v in rest["values"] if v["type"] == "HS_SITE")["data"]["value"]
    assert stored["servers"][0]["interfaces"] == got_site["servers"][0]["interfaces"]
    assert stored["servers"][0]["address"] == got_site["servers"][0]["address"]


@pytest.mark.parametrize("transport", [TCP, UDP])
def test_certified_answers_verify_with_the_key_of_the_site(native: tuple[Server, int],
                                                          owner: Tenant, transport: type) -> None:
    put(owner, "SIGNED", VALUES[:2])
    client = transport(native[1])
    try:
        site = hsdata.to_json("HS_SITE", client.ask(request(wire.OC_GET_SITE_INFO, b"")).body)
        jwk = site["value"]["servers"][0]["publicKey"]["value"]
        key = hauth.public_key({"format": "key", "value": jwk})
        for _ in range(2):   # the second is a cache hit: signed all the same
            raw = client.raw(resolution(f"{owner.prefix}/SIGNED", flags=wire.CT | wire.RD))
            env = wire.parse_envelope(raw)
            msg = wire.parse_message(env, raw[wire.ENVELOPE_SIZE:])
            assert msg.code == 1 and msg.flags & wire.CT
            c = hsdata.Cursor(msg.credential)
            c.take(12)
            assert c.text() == "HS_SIGNED"
            c.num()
            alg, signature = c.text(), c.blob()
            data = wire.signed_data(msg.major, msg.minor, msg.session_id, msg.request_id,
                                    msg.raw[:wire.HEADER_SIZE + len(msg.body)])
            assert hauth.verify_signature(key, alg, signature, data)
            assert not hauth.verify_signature(key, alg, signature, data[:-1] + b"x")
    finally:
        client.close()


def test_hdl_over_http(native: tuple[Server, int], owner: Tenant) -> None:
    """The native messages tunnelled in HTTP, as the CNRI client sends them to an HTTP
    interface of the site."""
    srv, _ = native
    put(owner, "TUNNEL", VALUES[:2])
    headers = {"Content-Type": "application/x-hdl-message",
               "Accept": "application/x-hdl-message"}
    for _ in range(2):
        r = requests.post(f"{srv.url}/{owner.prefix}/TUNNEL",
                          data=resolution(f"{owner.prefix}/TUNNEL", request_id=41),
                          headers=headers, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-hdl-message"
        got = parse(r.content)
        assert (got.code, got.request_id) == (1, 41)
        assert [v["index"] for v in got.values()] == [1, 2]
    bad = requests.post(f"{srv.url}/x", data=b"\x02\x0a" + bytes(30), headers=headers, timeout=10)
    assert parse(bad.content).code == wire.RC_PROTOCOL_ERROR
    other = requests.post(f"{srv.url}/{owner.prefix}/TUNNEL", data=b"{}",
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert other.status_code == 405 and other.json()["responseCode"] == 5


def test_request_digests_fit_each_request_over_udp(native: tuple[Server, int],
                                                   owner: Tenant) -> None:
    """RD: the answer starts with the digest of the request as sent, expiration included;
    asking again with another expiration (as a client does a second later) gets its own."""
    import hashlib
    import struct
    put(owner, "DIGEST", VALUES[:1])
    client = UDP(native[1])
    try:
        for n in range(4):
            req = bytearray(resolution(f"{owner.prefix}/DIGEST", flags=wire.RD, request_id=n))
            struct.pack_into(">i", req, 36, 1_900_000_000 + n)   # the header's expiration
            got = client.ask(bytes(req))
            assert got.code == 1 and got.flags & wire.RD
            body_len = int.from_bytes(req[40:44], "big")
            assert got.body[0] == wire.HASH_SHA256
            assert got.body[1:33] == hashlib.sha256(bytes(req[20:44 + body_len])).digest()
    finally:
        client.close()
