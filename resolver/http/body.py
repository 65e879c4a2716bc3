"""Reading request bodies safely: size limit before and while reading, media type.

Shared by the resolver's batch endpoint and the registry's write endpoints (the one
resolver.http module the registry may import; tests/test_meta.py says so).
"""

from __future__ import annotations

from aiohttp import web

from resolver.core.errors import PayloadTooLarge, UnsupportedMediaType

JSON = "application/json"
MSGPACK = "application/msgpack"


def is_json(ctype: str) -> bool:
    return ctype in (JSON, "text/json") or ctype.endswith("+json")


async def read_body(request: web.Request, limit: int, msgpack_ok: bool = False) -> bytes:
    """The request body, refusing more than ``limit`` bytes and other media types.

    A missing Content-Type is taken as JSON (curl and scripts often omit it).

    :raises PayloadTooLarge: declared or actual size over the limit (nothing is read past it).
    :raises UnsupportedMediaType: neither JSON nor (when allowed) msgpack.
    """
    ctype = request.content_type  # aiohttp: 'application/octet-stream' when absent
    if "Content-Type" in request.headers and not (
        is_json(ctype) or (msgpack_ok and ctype in (MSGPACK, "application/x-msgpack"))
    ):
        wanted = "application/json or application/msgpack" if msgpack_ok else JSON
        raise UnsupportedMediaType(f"unsupported media type {ctype!r}: send Content-Type: {wanted}")
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes is over the "
                              f"limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(1 << 16):  # network op
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
