"""The codec against traffic of the real Handle.Net server and client (tests/native/vectors):
every message parses, values re-encode to the same bytes, the digests and proofs of real
challenge-response exchanges check out, and a certified answer verifies with idres's
signed-data layout. Then the recorded requests, byte for byte, get answers from idres."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from resolver.core import hauth, hsdata
from resolver.native import wire
from resolver.native.server import parse_resolution
from resolver.native.values import decode_values, encode_values
from resolver.native.wire import Message, Reader
from tests.native.client import TCP, UDP
from tests.native.conftest import NativeNode

HERE = Path(__file__).parent / "vectors"
NAMES = sorted(p.stem for p in HERE.glob("*.hex"))


def load(name: str) -> bytes:
    """One whole message (the datagrams of a UDP message put together)."""
    packets = [bytes.fromhex(line) for line in (HERE / f"{name}.hex").read_text().split()]
    if len(packets) == 1:
        return packets[0]
    parts = {wire.parse_envelope(p)[5]: p[wire.ENVELOPE_SIZE:] for p in packets}
    return packets[0][:wire.ENVELOPE_SIZE] + b"".join(parts[i] for i in sorted(parts))


def message(name: str) -> Message:
    raw = load(name)
    return wire.parse_message(wire.parse_envelope(raw), raw[wire.ENVELOPE_SIZE:])


def key(name: str) -> object:
    return load_pem_public_key((HERE / f"{name}.pem").read_bytes())


@pytest.mark.parametrize("name", NAMES)
def test_every_recorded_message_parses(name: str) -> None:
    msg = message(name)
    assert msg.major == 2
    assert (msg.code == 0) == name.endswith(("request", "answer"))


@pytest.mark.parametrize("name", ["resolve_tcp_response", "resolve_0NA_prefix_response",
                                  "resolve_udp_multipacket_response",
                                  "resolve_types_filter_response"])
def test_values_re_encode_to_the_same_bytes(name: str) -> None:
    body = message(name).body
    r = Reader(body)
    r.bytes()
    start = r.pos
    values = decode_values(r)
    assert encode_values(values) == body[start:r.pos]
    formats = {v["type"]: v["data"]["format"] for v in values}
    if name == "resolve_0NA_prefix_response":
        assert formats == {"HS_SITE": "site", "HS_ADMIN": "admin", "HS_PUBKEY": "key"}
        kinds = sorted(v["data"]["value"]["kty"] for v in values if v["type"] == "HS_PUBKEY")
        assert kinds == ["DSA", "RSA"]
    if name == "resolve_tcp_response":
        assert formats["BINARY"] == "base64" and formats["URL"] == "string"
        assert [v.get("ttlType", 0) for v in values if v["type"] == "DESC"] == [1]


def test_site_information_reads_and_writes_back_exactly() -> None:
    body = message("get_site_info_response").body
    site = hsdata.to_json("HS_SITE", body)
    assert site["format"] == "site"
    assert hsdata.site_bytes(site["value"]) == body
    assert site["value"]["servers"][0]["address"] == "127.0.0.1"


def test_a_recorded_resolution_request_reads_as_sent() -> None:
    handle, indexes, types = parse_resolution(message("resolve_types_filter_request").body)
    assert (handle, indexes, types) == ("88.100.7/ORDER-1", (3, 100), ("URL", "EMAIL"))


@pytest.mark.parametrize("kind", ["pubkey", "seckey", "dsa"])
def test_real_challenges_and_answers_check_out(kind: str) -> None:
    request = message(f"create_{kind}_1_request")
    challenge = message(f"create_{kind}_2_challenge")
    answer = message(f"create_{kind}_3_answer")
    assert challenge.code == wire.RC_AUTHENTICATION_NEEDED and challenge.flags & wire.RD
    # idres's digest of the recorded request is the one the real server sent
    assert challenge.body[:33] == request.digest()
    nonce = Reader(challenge.body, 33).bytes()
    r = Reader(answer.body)
    auth_type, handle, index, proof = r.text(), r.text(), r.int4(), r.bytes()
    assert answer.session_id == challenge.session_id and handle == "0.NA/88.100.7"
    data = nonce + challenge.body[1:33]
    if kind == "seckey":
        assert auth_type == "HS_SECKEY" and proof[0] == 0x22
        assert hauth.verify_mac(b"s3cret", proof, data)
        assert not hauth.verify_mac(b"s3cre7", proof, data)
        return
    c = hsdata.Cursor(proof)
    alg, signature = c.text(), c.blob()
    public = key("admpub" if kind == "pubkey" else "admpub_dsa")
    assert hauth.verify_signature(public, alg, signature, data)
    assert not hauth.verify_signature(public, alg, signature, data[::-1])
    assert message(f"create_{kind}_4_result").code == wire.RC_SUCCESS


def test_a_certified_answer_verifies_with_idres_signed_data_layout() -> None:
    msg = message("resolve_certify_response")
    c = hsdata.Cursor(msg.credential)
    c.take(12)
    assert c.text() == "HS_SIGNED"
    c.num()
    alg, signature = c.text(), c.blob()
    data = wire.signed_data(msg.major, msg.minor, msg.session_id, msg.request_id,
                            msg.raw[:wire.HEADER_SIZE + len(msg.body)])
    assert hauth.verify_signature(key("server_pubkey"), alg, signature, data)


@pytest.mark.parametrize("name", ["resolve_tcp_request", "resolve_types_filter_request",
                                  "get_site_info_request", "resolve_certify_request"])
def test_recorded_requests_get_answers_from_idres(node: NativeNode, name: str) -> None:
    raw = load(name)
    for client in (TCP(node.port), UDP(node.port)):
        try:
            got = client.ask(raw)
        finally:
            client.close()
        expected = wire.RC_SUCCESS if name.startswith("get_site") else wire.RC_SERVER_NOT_RESP
        assert got.code == expected
        assert got.request_id == wire.parse_envelope(raw)[4]
        assert (got.major, got.minor) == (2, 11)
