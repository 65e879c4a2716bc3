"""``Authorization: Handle``: challenge-response over HTTP (handle-facts §2.5), and
operators' public keys.

* ``POST /api/sessions`` answers a challenge ``{"sessionId", "nonce"}`` (any 401 carries
  one too, in ``WWW-Authenticate: Handle sessionId="…", nonce="…"``);
* the client proves an identity with ``Authorization: Handle sessionId="…",
  id="301:0.OPERATOR/ALICE", type="HS_PUBKEY", cnonce="…", alg="SHA256",
  signature="…"``: a signature of ``nonce ‖ cnonce`` (both base64-decoded) by the private
  key of an HS_PUBKEY value of that identity; on any request, or on
  ``PUT /api/sessions/this``;
* later requests send ``Authorization: Handle sessionId="…"`` alone, until the session
  expires (an hour after its last proof) or ``DELETE /api/sessions/this``.

``POST /api/operators/{name}/keys`` ``{"index", "publicKey"}`` (a PEM public key or a
JWK, RSA or DSA) adds an HS_PUBKEY value to the operator's identity handle.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote

from aiohttp import web

from registry import challenges
from registry.api.bodies import NewKey, decode
from registry.api.common import context, json_body, ok, principal
from registry.api.operators import _owner
from registry.permissions import Principal
from resolver.core import hauth, hsdata
from resolver.core.described import takes
from resolver.core.errors import AuthenticationFailed, AuthenticationNeeded

_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


def parse_header(header: str) -> dict[str, str]:
    """The parameters of ``Handle k="v", k=v...`` (quoted or not)."""
    out: dict[str, str] = {}
    rest = header.strip()[len("handle"):]
    for m in _PARAM.finditer(rest):
        value = m.group(2)
        out[m.group(1).lower()] = value[1:-1].replace('\\"', '"') if value[:1] == '"' else value
    return out


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationFailed(f"{what} is not base64") from None


async def authenticate(request: web.Request, header: str) -> Principal:
    """The operator of an ``Authorization: Handle`` header: a session proven before, or
    one proven by this header.

    :raises AuthenticationFailed: no such session, a stale challenge, a wrong proof."""
    ctx = context(request)
    p = parse_header(header)
    sid = p.get("sessionid", "")
    if "signature" not in p:
        who = await challenges.session_principal(ctx.pool, sid) if sid else None
        if who is None:
            raise AuthenticationFailed("the Handle session is unknown, expired or not "
                                       "authenticated: POST /api/sessions for a new one")
        return who
    nonce = challenges.session_nonce(ctx.session_key, sid)
    if nonce is None:
        raise AuthenticationFailed("the sessionId is not one this node issued, or it expired")
    identity = unquote(p.get("id", ""))
    index_text, colon, handle = identity.partition(":")
    if not colon or not handle:
        raise AuthenticationFailed('id must be INDEX:HANDLE, e.g. id="301:0.OPERATOR/ALICE"')
    index = int(index_text) if index_text.isdigit() and len(index_text) <= 10 else 0
    kind = p.get("type", "HS_PUBKEY").upper()
    signature = _b64(p.get("signature", ""), "signature")
    alg = p.get("alg", "SHA256")
    if kind == "HS_PUBKEY":
        proof = hsdata.blob(alg) + hsdata.blob(signature)
    else:
        mac = hauth.http_mac_answer(alg, signature, _b64(p.get("salt", ""), "salt"),
                                    int(p.get("iterations", "0") or 0),
                                    int(p.get("length", "160") or 160))
        if mac is None:
            raise AuthenticationFailed(f"unknown alg {alg!r} for HS_SECKEY")
        proof = mac
    data = nonce + _b64(p.get("cnonce", ""), "cnonce")
    who = await challenges.prove(ctx.pool, handle, index, kind, proof, data,
                                 ctx.seal_key)  # network op
    await challenges.open_session(ctx.pool, sid, who, f"{index}:{handle}")  # network op
    return who


def challenge_header(request: web.Request) -> str:
    """The ``WWW-Authenticate`` value of a 401: a new challenge."""
    sid, nonce = challenges.new_session(context(request).session_key)
    return f'Handle sessionId="{sid}", nonce="{nonce}"'


async def post_session(request: web.Request) -> web.Response:
    """A new challenge; with an ``Authorization: Handle`` proof, that session, proven."""
    ctx = context(request)
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("handle ") and "signature" in header.lower():
        who = await authenticate(request, header)
        sid = parse_header(header).get("sessionid", "")
        return ok(201, None, sessionId=sid, authenticated=True, id=who.identity)
    sid, nonce = challenges.new_session(ctx.session_key)
    response = ok(201, None, sessionId=sid, nonce=nonce)
    response.headers["Location"] = "/api/sessions/this"
    return response


async def this_session(request: web.Request) -> web.Response:
    """GET: who the session is; PUT/POST: prove it (the Authorization header); DELETE:
    end it (204)."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("handle "):
        raise AuthenticationNeeded('send Authorization: Handle sessionId="…"')
    sid = parse_header(header).get("sessionid", "")
    if request.method == "DELETE":
        await challenges.close_session(context(request).pool, sid)
        return web.Response(status=204)
    who = await authenticate(request, header)
    return ok(200, None, sessionId=sid, authenticated=True, id=who.identity,
              operator=who.name)


@takes(body=NewKey, auth="required")
async def post_key(request: web.Request) -> web.Response:
    """``POST /api/operators/{name}/keys`` ``{"index", "publicKey"}``."""
    ctx = context(request)
    who = await principal(request)
    owner = await _owner(ctx.pool, who, request.match_info["name"])
    body: NewKey = decode(await json_body(request, ctx.max_body_bytes), NewKey)
    identity = await challenges.add_public_key(ctx.db, who, owner, body.index, body.publicKey)
    return ok(201, None, name=owner.name, identity=identity)
