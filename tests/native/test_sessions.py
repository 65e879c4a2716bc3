"""Handle protocol sessions (SESSION_SETUP mode 4), as the Handle.Net 9 client sets one up
before writing: a Diffie-Hellman exchange whose answer the server signs, the session key
both derive, writes MAC-signed with it (the first challenged, the rest on the MAC alone),
encrypted requests, and each refusal (no MAC 404, wrong MAC 502, replay 505, no session
500). The stock tools ran against idres by hand too (docs/handle-protocol.md)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

import requests
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from resolver.core import hauth, hsdata
from resolver.native import wire
from resolver.native.sessions import session_key
from resolver.native.wire import Reader, int4, string
from tests.native.client import TCP, UDP, challenge_parts, pubkey_answer, request
from tests.native.conftest import NativeNode
from tests.native.test_admin import KEY, keyed, value

# RFC 2409 group 2, the group the Handle.Net client's DH keys use
P = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
        "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
        "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF", 16)


class Session:
    def __init__(self, client: TCP | UDP, handle: str, index: int) -> None:
        self.client = client
        x = secrets.randbelow(P - 3) + 2
        dh = hsdata.blob("DH_PUB_KEY") + bytes(2) + b"".join(
            hsdata.blob(n.to_bytes(n.bit_length() // 8 + 1, "big")) for n in (pow(2, x, P), P, 2))
        body = (4).to_bytes(2, "big") + int4(86400) + string(handle) + int4(index) \
            + string(dh) + bytes(2)
        raw = client.raw(request(wire.OC_SESSION_SETUP, body, flags=wire.CT | wire.RD))
        msg = wire.parse_message(wire.parse_envelope(raw), raw[20:])
        assert msg.code == 1 and msg.session_id > 0 and msg.credential
        self.signed = msg
        r = Reader(msg.body, 33)              # after the request digest
        assert r.int2() == 4
        c = hsdata.Cursor(r.bytes())
        assert c.num() == 3                   # AES
        c.text(), c.num(2)
        y_server = int.from_bytes(c.blob(), "big")
        self.sid, self.key, self.counter = msg.session_id, session_key(pow(y_server, x, P), P), 0

    def message(self, op: int, body: bytes, request_id: int, *, counter: int | None = None,
                mac: bool = True, tamper: bool = False, encrypt: bool = False) -> bytes:
        """A request in the session, MAC-signed as the client signs it."""
        self.counter += 1
        n = self.counter if counter is None else counter
        head_body = wire.HEADER.pack(op, 0, 0, 0, 0, 0, 0, len(body)) + body
        cred = b""
        if mac:
            data = wire.signed_data(2, 11, self.sid, request_id, head_body, n)
            code = hmac.new(self.key, data, hashlib.sha256).digest()
            if tamper:
                code = bytes([code[0] ^ 1]) + code[1:]
            section = string("HMAC-SHA256") + string(code)
            cred = bytes(8) + int4(n) + string("HS_MAC") + int4(len(section)) + section
        plain = head_body + int4(len(cred)) + cred
        flags = wire.MAJOR
        if encrypt:
            iv = os.urandom(16)
            pad = padding.PKCS7(128).padder()
            e = Cipher(algorithms.AES(self.key[:16]), modes.CBC(iv)).encryptor()
            plain = iv + e.update(pad.update(plain) + pad.finalize()) + e.finalize()
            flags |= wire.ENV_ENCRYPTED
        return wire.ENVELOPE.pack(2, 11, flags, 11, self.sid, request_id, 0, len(plain)) + plain


def create_body(name: str) -> bytes:
    return string(name) + int4(1) + value(1, "URL", b"https://example.com/s")


def test_a_session_set_up_then_writes_on_its_mac(node: NativeNode) -> None:
    srv, port = node.server, node.port
    t, handle, index = keyed(srv, node.admin)
    client = TCP(port)
    try:
        s = Session(client, handle, index)
        site = hsdata.to_json("HS_SITE", client.ask(request(wire.OC_GET_SITE_INFO, b"")).body)
        key = hauth.public_key(site["value"]["servers"][0]["publicKey"])
        c = hsdata.Cursor(s.signed.credential)
        c.take(12)
        assert c.text() == "HS_SIGNED"
        c.num()
        alg, signature = c.text(), c.blob()
        assert hauth.verify_signature(key, alg, signature, wire.signed_data(
            2, 11, s.sid, s.signed.request_id, s.signed.raw[:24 + len(s.signed.body)]))
        # the first write of the session is challenged, under the session's id
        name = f"{t.prefix}/S-1"
        challenge = client.ask(s.message(wire.OC_CREATE_HANDLE, create_body(name), 11))
        assert (challenge.code, challenge.session) == (wire.RC_AUTHENTICATION_NEEDED, s.sid)
        digest, nonce = challenge_parts(challenge)
        sig = KEY.sign(nonce + digest, rsa_padding.PKCS1v15(), hashes.SHA256())
        done = client.ask(pubkey_answer(handle, index, sig, s.sid, 12))
        assert (done.code, done.request_id, done.session) == (1, 12, s.sid)
        # then the MAC alone; encrypted requests too
        gone = client.ask(s.message(wire.OC_DELETE_HANDLE, string(name), 13))
        assert gone.code == 1
        name2 = f"{t.prefix}/S-2"
        made = client.ask(s.message(wire.OC_CREATE_HANDLE, create_body(name2), 14, encrypt=True))
        assert made.code == 1
        assert requests.get(f"{srv.url}/api/handles/{name2}", timeout=10).status_code == 200
        # refusals
        replay = client.ask(s.message(wire.OC_DELETE_HANDLE, string(name2), 15,
                                      counter=s.counter))
        assert replay.code == 505
        assert client.ask(s.message(wire.OC_DELETE_HANDLE, string(name2), 16,
                                    tamper=True)).code == 502
        assert client.ask(s.message(wire.OC_DELETE_HANDLE, string(name2), 17,
                                    mac=False)).code == wire.RC_INVALID_CREDENTIAL
        assert requests.get(f"{srv.url}/api/handles/{name2}", timeout=10).status_code == 200
        s.sid += 1   # a session that does not exist cannot decrypt
        assert client.ask(s.message(wire.OC_DELETE_HANDLE, string(name2), 18,
                                    encrypt=True)).code == 500
    finally:
        client.close()


def test_a_session_set_up_over_udp_serves_writes_over_tcp(node: NativeNode) -> None:
    """As the stock tools do: the setup over UDP (its signed answer in two datagrams), the
    writes over TCP."""
    srv, port = node.server, node.port
    t, handle, index = keyed(srv, node.admin)
    udp, tcp = UDP(port), TCP(port)
    try:
        s = Session(udp, handle, index)
        s.client = tcp
        challenge = tcp.ask(s.message(wire.OC_CREATE_HANDLE, create_body(f"{t.prefix}/U-1"), 21))
        digest, nonce = challenge_parts(challenge)
        sig = KEY.sign(nonce + digest, rsa_padding.PKCS1v15(), hashes.SHA256())
        assert tcp.ask(pubkey_answer(handle, index, sig, s.sid, 22)).code == 1
        assert tcp.ask(s.message(wire.OC_DELETE_HANDLE, string(f"{t.prefix}/U-1"), 23)).code == 1
    finally:
        udp.close()
        tcp.close()
    assert requests.get(f"{srv.url}/api/handles/{t.prefix}/U-1", timeout=10).status_code == 404


def test_other_key_exchange_modes_are_refused(node: NativeNode) -> None:
    client = TCP(node.port)
    try:
        body = (2).to_bytes(2, "big") + int4(60) + string("") + int4(-1) + bytes(2)
        got = client.ask(request(wire.OC_SESSION_SETUP, body))
        assert got.code == wire.RC_SESSION_FAILED and "mode" in got.message()
        bad_key = (4).to_bytes(2, "big") + int4(60) + string("") + int4(-1) + string(b"junk")
        assert client.ask(request(wire.OC_SESSION_SETUP, bad_key)).code == wire.RC_SESSION_FAILED
    finally:
        client.close()
