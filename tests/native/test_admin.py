"""Administration over the native protocol with challenge-response (RSA keys, as the CNRI
client signs), and the same proof over HTTP (``Authorization: Handle``): the writes are
the REST API's (ownership, audit, read-your-writes), and every failure has its code."""

from __future__ import annotations

import base64
import hashlib
import secrets

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from resolver.native import wire
from resolver.native.values import encode_value
from tests.conftest import Operator, Server, Tenant, free_port, new_operator, run_sql
from tests.native.conftest import NativeNode
from tests.native.client import (
    TCP,
    UDP,
    Answer,
    challenge_parts,
    create,
    handle_op,
    pubkey_answer,
    remove,
    resolution,
    values_op,
)


@pytest.fixture
def native(node: NativeNode) -> tuple[Server, int]:
    return node.server, node.port


@pytest.fixture
def admin(node: NativeNode) -> Operator:
    return node.admin


KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def keyed(srv: Server, admin: Operator, key: rsa.RSAPrivateKey = KEY) -> tuple[Tenant, str, int]:
    """An operator owning a fresh prefix, with ``key`` at index 301 of its identity."""
    op = new_operator(srv, admin, f"nat-{secrets.token_hex(4)}")
    prefix = f"88.{free_port()}.9"
    r = requests.post(f"{srv.url}/api/prefixes", json={"prefix": prefix, "owner": op.name},
                      headers=admin.bearer, timeout=10)
    assert r.status_code == 201, r.text
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    r = requests.post(f"{srv.url}/api/operators/{op.name}/keys",
                      json={"index": 301, "publicKey": pem}, headers=op.bearer, timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["identity"].startswith("301:")
    return Tenant(op, prefix, srv.url), r.json()["identity"].split(":", 1)[1], 301


def run(client: TCP, message: bytes, handle: str, index: int,
        key: rsa.RSAPrivateKey = KEY, tamper: bool = False) -> Answer:
    """Send a write, answer its challenge, return the final answer."""
    challenge = client.ask(message)
    assert challenge.code == wire.RC_AUTHENTICATION_NEEDED, challenge.message()
    digest, nonce = challenge_parts(challenge)
    request_bytes = message[wire.ENVELOPE_SIZE:]
    body_len = int.from_bytes(request_bytes[20:24], "big")
    assert digest == hashlib.sha256(request_bytes[:24 + body_len]).digest()
    assert len(nonce) == 16
    signature = key.sign(nonce + digest, padding.PKCS1v15(), hashes.SHA256())
    if tamper:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    assert challenge.flags & wire.RD and challenge.session > 0
    return client.ask(pubkey_answer(handle, index, signature, challenge.session, 99))


def value(index: int, type_: str, data: bytes, perms: int = 0b1110) -> bytes:
    return encode_value({"index": index, "type": type_, "ttl": 86400,
                         "permissions": f"{perms:04b}",
                         "data": {"format": "base64", "value": base64.b64encode(data).decode()}})


def test_create_add_modify_remove_delete_with_a_public_key(native: tuple[Server, int],
                                                           admin: Operator, node: NativeNode) -> None:
    srv, port = native
    t, handle, index = keyed(srv, admin)
    name = f"{t.prefix}/NATIVE-1"
    client = TCP(port)
    try:
        done = run(client, create(name, [value(1, "URL", b"https://example.com/a"),
                                         value(2, "BIN", bytes(range(200)))]), handle, index)
        assert (done.code, done.op, done.request_id) == (1, wire.OC_CREATE_HANDLE, 99)
        rest = requests.get(f"{srv.url}/api/handles/{name}", timeout=10).json()
        assert [v["data"]["value"] for v in rest["values"]] == [
            "https://example.com/a", base64.b64encode(bytes(range(200))).decode()]
        # read-your-writes over the native protocol too
        assert client.ask(resolution(name)).code == 1
        again = client.ask(create(name, [value(1, "URL", b"x")]))   # no challenge first
        assert again.code == wire.RC_HANDLE_ALREADY_EXISTS
        done = run(client, values_op(wire.OC_ADD_VALUE, name, [value(3, "EMAIL", b"a@b.c")]),
                   handle, index)
        assert done.code == 1
        taken = run(client, values_op(wire.OC_ADD_VALUE, name, [value(3, "EMAIL", b"x@y")]),
                    handle, index)
        assert taken.code == wire.RC_VALUE_ALREADY_EXISTS
        done = run(client, values_op(wire.OC_MODIFY_VALUE, name, [value(3, "EMAIL", b"new@b.c")]),
                   handle, index)
        assert done.code == 1
        # answered before any challenge, as the Handle.Net server does
        missing = client.ask(values_op(wire.OC_MODIFY_VALUE, name, [value(9, "X", b"y")]))
        assert missing.code == wire.RC_VALUES_NOT_FOUND
        elsewhere = client.ask(create("77.77/X", [value(1, "URL", b"x")]))
        assert elsewhere.code == wire.RC_SERVER_NOT_RESP
        # an overwrite says it replaced; a minted suffix comes back in the answer
        replaced = run(client, create(name, [value(1, "URL", b"https://example.com/a"),
                                             value(2, "BIN", bytes(range(200))),
                                             value(3, "EMAIL", b"new@b.c")],
                                      flags=wire.OVRW), handle, index)
        assert replaced.code == 1 and replaced.flags & wire.OVRW and replaced.session == 0
        minted = run(client, create(f"{t.prefix}/M-", [value(1, "URL", b"m")], flags=wire.MINT),
                     handle, index)
        minted_name = wire.Reader(minted.body).text()
        assert minted.code == 1 and minted_name.startswith(f"{t.prefix}/M-") and \
            len(minted_name) > len(f"{t.prefix}/M-") + 30
        assert client.ask(resolution(minted_name)).code == 1
        got = client.ask(resolution(name, indexes=(3,)))
        assert got.values()[0]["data"] == {"format": "string", "value": "new@b.c"}
        assert run(client, remove(name, [2]), handle, index).code == 1
        assert sorted(v["index"] for v in client.ask(resolution(name)).values()) == [1, 3]
        assert run(client, handle_op(wire.OC_DELETE_HANDLE, name), handle, index).code == 1
        assert client.ask(resolution(name)).code == wire.RC_HANDLE_NOT_FOUND
    finally:
        client.close()
    actions = [r["action"] for r in run_sql(
        node.dsn, "SELECT action FROM audit WHERE handle = $1 ORDER BY id", name.upper())]
    # the refused writes (exists, index taken, index missing) left no row
    assert actions == ["create", "add_values", "add_values", "replace", "remove_values",
                       "delete"]
    who = run_sql(node.dsn, "SELECT DISTINCT o.name FROM audit a JOIN operators o ON "
                  "o.id = a.operator_id WHERE a.handle = $1", name.upper())
    assert [r["name"] for r in who] == [t.op.name]


def test_refusals(native: tuple[Server, int], admin: Operator, node: NativeNode) -> None:
    srv, port = native
    t, handle, index = keyed(srv, admin)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other, other_handle, _ = keyed(srv, admin, other_key)
    name = f"{t.prefix}/REFUSED"
    client = TCP(port)
    try:
        bad = run(client, create(name, [value(1, "URL", b"x")]), handle, index, tamper=True)
        assert (bad.code, bad.op) == (wire.RC_AUTHENTICATION_FAILED, wire.OC_CREATE_HANDLE)
        # a valid proof, of an operator who does not own the prefix
        denied = run(client, create(name, [value(1, "URL", b"x")]), other_handle, 301, other_key)
        assert denied.code == wire.RC_INVALID_ADMIN
        # an answer to no challenge
        late = client.ask(pubkey_answer(handle, index, b"sig", 12345, 5))
        assert late.code == wire.RC_AUTHEN_TIMEOUT
        # a value idres does not take: refused before any challenge
        zero = client.ask(create(name, [value(0, "URL", b"x")]))
        assert zero.code == wire.RC_INVALID_VALUE
    finally:
        client.close()
    assert requests.get(f"{srv.url}/api/handles/{name}", timeout=10).status_code == 404
    udp = UDP(port)
    try:
        assert udp.ask(create(name, [value(1, "URL", b"x")])).code == wire.RC_PROTOCOL_ERROR
    finally:
        udp.close()


def test_authorization_handle_over_http(native: tuple[Server, int], admin: Operator) -> None:
    srv, _ = native
    t, handle, index = keyed(srv, admin)
    anonymous = requests.put(t.handle_url("H1"), json=[{"index": 1, "type": "URL", "data": "x"}],
                             timeout=10)
    assert anonymous.status_code == 401
    assert any(v.startswith("Handle sessionId=") for v in
               anonymous.raw.headers.getlist("WWW-Authenticate"))
    session = requests.post(f"{srv.url}/api/sessions", timeout=10).json()
    cnonce = secrets.token_bytes(16)
    data = base64.b64decode(session["nonce"]) + cnonce
    sig = KEY.sign(data, padding.PKCS1v15(), hashes.SHA256())
    proof = (f'Handle sessionId="{session["sessionId"]}", id="{index}%3A{handle}", '
             f'type="HS_PUBKEY", cnonce="{base64.b64encode(cnonce).decode()}", alg="SHA256", '
             f'signature="{base64.b64encode(sig).decode()}"')
    r = requests.put(t.handle_url("H1"), json=[{"index": 1, "type": "URL", "data": "x"}],
                     headers={"Authorization": proof}, timeout=10)
    assert r.status_code == 201, r.text
    later = {"Authorization": f'Handle sessionId="{session["sessionId"]}"'}
    r = requests.put(t.handle_url("H2"), json=[{"index": 1, "type": "URL", "data": "y"}],
                     headers=later, timeout=10)
    assert r.status_code == 201, r.text
    me = requests.get(f"{srv.url}/api/sessions/this", headers=later, timeout=10).json()
    assert me["operator"] == t.op.name
    wrong = proof.replace(base64.b64encode(sig).decode(),
                          base64.b64encode(bytes(len(sig))).decode())
    fresh = requests.post(f"{srv.url}/api/sessions", timeout=10).json()
    wrong = wrong.replace(session["sessionId"], fresh["sessionId"])
    r = requests.put(t.handle_url("H3"), json=[{"index": 1, "type": "URL", "data": "z"}],
                     headers={"Authorization": wrong}, timeout=10)
    assert r.status_code in (401, 403) and "does not prove" in r.text
    assert requests.delete(f"{srv.url}/api/sessions/this", headers=later,
                           timeout=10).status_code == 204
    r = requests.put(t.handle_url("H4"), json=[{"index": 1, "type": "URL", "data": "w"}],
                     headers=later, timeout=10)
    assert r.status_code in (401, 403)


def seckey_answer(handle: str, index: int, secret: bytes, nonce: bytes, digest: bytes,
                  session: int) -> bytes:
    """An HS_SECKEY answer as the CNRI client makes it from 2.7 on: PBKDF2-HMAC-SHA1 (16
    bytes of salt, 10,000 iterations, 160 bits), then HMAC-SHA1 of nonce ‖ digest."""
    import hmac
    from resolver.native.wire import int4, string
    salt = secrets.token_bytes(16)
    derived = hashlib.pbkdf2_hmac("sha1", secret, salt, 10_000, 20)
    mac = hmac.new(derived, nonce + digest, hashlib.sha1).digest()
    proof = bytes([0x22]) + string(salt) + int4(10_000) + int4(160) + string(mac)
    body = string("HS_SECKEY") + string(handle) + int4(index) + string(proof)
    return wire.encode(2, 11, session, 77, wire.OC_RESPONSE_TO_CHALLENGE, 0, 0, body)


def test_secret_keys_sealed_by_the_node_answer_challenges(node: NativeNode,
                                                          native: tuple[Server, int]) -> None:
    srv, port = native
    t, _, _ = keyed(srv, node.admin)      # created over REST: its secret is sealed
    index, handle = t.op.identity.split(":", 1)
    name = f"{t.prefix}/SECRET-1"
    client = TCP(port)
    try:
        for secret, expected in ((b"wrong", wire.RC_AUTHENTICATION_FAILED),
                                 (t.op.secret.encode(), wire.RC_SUCCESS)):
            challenge = client.ask(create(name, [value(1, "URL", b"x")]))
            digest, nonce = challenge_parts(challenge)
            done = client.ask(seckey_answer(handle, int(index), secret, nonce, digest,
                                            challenge.session))
            assert done.code == expected, done.body
        # an operator made by a command without the node's key keeps only a hash
        a_index, a_handle = node.admin.identity.split(":", 1)
        challenge = client.ask(create(f"{t.prefix}/SECRET-2", [value(1, "URL", b"x")]))
        digest, nonce = challenge_parts(challenge)
        done = client.ask(seckey_answer(a_handle, int(a_index), node.admin.secret.encode(),
                                        nonce, digest, challenge.session))
        assert done.code == wire.RC_AUTHENTICATION_FAILED
        assert "only a hash" in done.message()
    finally:
        client.close()
    # Basic authentication with a sealed secret works as before
    r = requests.put(t.handle_url("BASIC"), json=[{"index": 1, "type": "URL", "data": "b"}],
                     auth=t.op.basic, timeout=10)
    assert r.status_code == 201, r.text
    # and over HTTP, the secret-key proof of a Handle session
    session = requests.post(f"{srv.url}/api/sessions", timeout=10).json()
    cnonce, salt = secrets.token_bytes(16), secrets.token_bytes(16)
    import hmac
    derived = hashlib.pbkdf2_hmac("sha1", t.op.secret.encode(), salt, 10_000, 20)
    mac = hmac.new(derived, base64.b64decode(session["nonce"]) + cnonce, hashlib.sha1).digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    header = (f'Handle sessionId="{session["sessionId"]}", id="{index}%3A{handle}", '
              f'type="HS_SECKEY", cnonce="{b64(cnonce)}", alg="PBKDF2-HMAC-SHA1", '
              f'salt="{b64(salt)}", iterations="10000", length="160", signature="{b64(mac)}"')
    r = requests.put(t.handle_url("SESSION"), json=[{"index": 1, "type": "URL", "data": "s"}],
                     headers={"Authorization": header}, timeout=10)
    assert r.status_code == 201, r.text


def test_the_idis_login_authenticates_a_connection(native: tuple[Server, int],
                                                    admin: Operator) -> None:
    """The IDIS SDK logs a pooled connection in (opcode 2001, sent without a credential
    length, under a session id it chose) and then writes without a challenge each."""
    from resolver.native.wire import int4, string
    srv, port = native
    t, handle, index = keyed(srv, admin)
    body = string(handle) + int4(index)
    head = wire.HEADER.pack(2001, 0, wire.RD, 0, 0, 0, 0, len(body))
    login = wire.ENVELOPE.pack(2, 10, 2, 11, 10001, 5, 0, len(head) + len(body)) + head + body
    client = TCP(port)
    try:
        challenge = client.ask(login)
        assert (challenge.code, challenge.session) == (wire.RC_AUTHENTICATION_NEEDED, 10001)
        digest, nonce = challenge_parts(challenge)
        signature = KEY.sign(nonce + digest, padding.PKCS1v15(), hashes.SHA256())
        done = client.ask(pubkey_answer(handle, index, signature, 10001, 6))
        assert (done.code, done.op, done.request_id) == (1, 2001, 6)
        name = f"{t.prefix}/LOGGED-IN"
        made = client.ask(create(name, [value(1, "URL", b"x")], session=10001, request_id=7))
        assert (made.code, made.request_id) == (1, 7)
        # the same session id elsewhere is not logged in
        other = TCP(port)
        try:
            assert other.ask(handle_op(wire.OC_DELETE_HANDLE, name, session=10001)).code == \
                wire.RC_AUTHENTICATION_NEEDED
        finally:
            other.close()
    finally:
        client.close()
    assert requests.get(f"{srv.url}/api/handles/{name}", timeout=10).status_code == 200


def test_list_handles_after_a_challenge(native: tuple[Server, int], admin: Operator) -> None:
    srv, port = native
    t, handle, index = keyed(srv, admin)
    records = [{"handle": f"{t.prefix}/L-{i:03d}", "values": [
        {"index": 1, "type": "URL", "data": f"https://example.com/{i}"}]} for i in range(57)]
    r = requests.post(f"{srv.url}/api/bulk", json={"records": records}, headers=t.op.bearer,
                      timeout=30)
    assert r.status_code in (200, 201), r.text
    client = TCP(port)
    try:
        first = run(client, handle_op(wire.OC_LIST_HANDLES, t.prefix), handle, index)
        assert first.code == 1 and first.flags & wire.CN
        second = client.read()
        assert second.code == 1 and not second.flags & wire.CN
        names = []
        for part in (first, second):
            r_ = wire.Reader(part.body)
            names += [r_.text() for _ in range(r_.count())]
        assert sorted(names) == sorted(rec["handle"].upper() for rec in records)
        assert client.ask(handle_op(wire.OC_LIST_HANDLES, "77.77")).code == wire.RC_SERVER_NOT_RESP
    finally:
        client.close()
