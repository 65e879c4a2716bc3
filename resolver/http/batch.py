"""``POST /api/resolve``: many identifiers in one request, every one answered.

Body: ``{"handles": ["88.100.7/A", ...]}`` or a bare array, as JSON or as msgpack
(``Content-Type: application/msgpack``). The answer has the request's format:
``{"responseCode": 1, "count": N, "results": [...]}`` where each result is exactly
the body a single ``GET /api/handles/{id}`` would return (responseCode 1, 100, or
102 for a malformed identifier), in request order. Cache hits are answered from
their kept bytes; all misses go to the database in ONE query (``Resolver.resolve_batch``).
With credentials, each identifier answers what they may see (docs/sharing.md): those
they see more of than anyone are read again, in one more query.
"""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
from aiohttp import web

from resolver.core import codec
from resolver.core.described import takes
from resolver.core.errors import BadRequest
from resolver.http.body import MSGPACK, read_body
from resolver.http.keys import READ_AUTH, READ_LOG, RESOLVER, SETTINGS
from resolver.reply import Form

MAX_BATCH = 10_000


def decode_request(body: bytes, use_msgpack: bool) -> list[str]:
    """The identifiers of a batch request.

    :raises BadRequest: undecodable body, wrong shape, too many identifiers.
    """
    if use_msgpack:
        try:
            data: Any = msgpack.unpackb(body, raw=False, strict_map_key=True)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise BadRequest(f"the request body is not valid msgpack: {exc}") from None
    else:
        data = codec.parse_json(body)
    if isinstance(data, dict):
        data = data.get("handles")
    if not isinstance(data, list) or not all(isinstance(h, str) for h in data):
        raise BadRequest('send {"handles": ["PREFIX/SUFFIX", ...]} or a bare array of strings')
    if len(data) > MAX_BATCH:
        raise BadRequest(f"{len(data)} identifiers is over the limit of {MAX_BATCH} per request")
    return data


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """A batch resolution (JSON, or the same in msgpack with Content-Type
    application/msgpack): at most 10,000 identifiers."""
    handles: list[str]


@takes(body=BatchIn)
async def resolve_batch(request: web.Request) -> web.Response:
    """Resolve many identifiers at once (see the module docstring)."""
    use_msgpack = request.content_type in (MSGPACK, "application/x-msgpack")
    body = await read_body(request, request.app[SETTINGS].max_body_bytes, msgpack_ok=True)
    handles = decode_request(body, use_msgpack)
    form = Form.MSGPACK if use_msgpack else Form.JSON
    resolver = request.app[RESOLVER]
    if "Authorization" in request.headers:
        scheme, _, token = request.headers["Authorization"].strip().partition(" ")
        snap = resolver.sharing.reader(token.strip()) if scheme.lower() == "bearer" else None
        if snap is not None:     # a reader, from this process's snapshot (its answers keep)
            view, generation = snap
        else:
            view, generation = await request.app[READ_AUTH](request, None), None  # network op
        parts, reads = await resolver.resolve_batch_as(handles, form, view,
                                                       generation)  # network op
        if reads and not resolver.sharing.no_read_logs():
            await request.app[READ_LOG](view.party, reads)  # network op
    else:
        parts = await resolver.resolve_batch(handles, form)  # network op
    if use_msgpack:
        packer = msgpack.Packer()
        out = b"".join([packer.pack_map_header(3), packer.pack("responseCode"), packer.pack(1),
                        packer.pack("count"), packer.pack(len(parts)), packer.pack("results"),
                        packer.pack_array_header(len(parts)), *(p[1] for p in parts)])
        return web.Response(body=out, content_type=MSGPACK)
    out = b'{"responseCode":1,"count":%d,"results":[%s]}' % (len(parts), b",".join(parts))
    return web.Response(body=out, content_type="application/json", charset="utf-8")
