"""A :class:`resolver.reply.Reply` as an aiohttp response: the same status, headers and
body the fast path writes (Date and Content-Length are aiohttp's)."""

from __future__ import annotations

from aiohttp import web

from resolver import reply
from resolver.reply import Reply


def respond(rep: Reply) -> web.Response:
    return web.Response(body=rep.body, status=rep.status, headers=reply.http_headers(rep))
