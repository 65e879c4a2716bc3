"""HDL over HTTP: the native protocol's messages in HTTP requests, as the Handle.Net
client sends them to an HTTP interface of a site (``POST /<handle>`` with
``Content-Type: application/x-hdl-message``; the body is the envelope and the message,
as on TCP; the answer likewise). Whatever the message asks is answered by the TCP path's
code (``server.Native``): resolution, site information, administration with
challenge-response. A ``POST`` of anything else to such a path is not an endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from resolver.core.errors import MethodNotAllowed, ProtocolError
from resolver.native import wire
from resolver.native.server import Native, bare_error

CONTENT_TYPE = "application/x-hdl-message"


@dataclass
class Tunnel:
    """Set once the native protocol is on (``resolver/node.py``)."""

    native: Native | None = None


TUNNEL = web.AppKey("hdl_tunnel", Tunnel)


async def tunnel(request: web.Request) -> web.Response:
    native = request.app[TUNNEL].native
    if native is None or CONTENT_TYPE not in request.headers.get("Content-Type", "") \
            or request.path.startswith("/api/"):
        # (as before this route: these paths answer GET, so any other POST is 405)
        raise MethodNotAllowed("method not allowed (a POST here is HDL over HTTP: "
                               f"{CONTENT_TYPE}, when the native protocol is on)")
    body = (await request.content.read(wire.MAX_MESSAGE + wire.ENVELOPE_SIZE + 3)).lstrip(b"\r\n")
    try:
        env = wire.parse_envelope(body)
        if len(body) != wire.ENVELOPE_SIZE + env[6]:
            raise ProtocolError("the body is not one message of the length its envelope says")
        msg = wire.parse_message(env, body[wire.ENVELOPE_SIZE:])
    except ProtocolError as exc:
        native.ctx.errors += 1
        data = bare_error(body, exc.message)
    else:
        native.ctx.requests += 1
        data = native.fast_raw(body) or await native.slow(msg, request)  # network op
    return web.Response(body=data, content_type=CONTENT_TYPE)
