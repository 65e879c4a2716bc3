"""Replies: the one place that turns a resolution or an error into what a client sees.
Sans-I/O.

Every front end (the HTTP fast path, the aiohttp handlers, the batch endpoint, the
binary protocol) asks here for a :class:`Reply`: the HTTP status, the Handle
``responseCode``, the binary-protocol status, the body as Handle JSON and the headers
that go with it. The codes of an error come from the one table in
``resolver/core/errors.py``. A front end only *renders* a reply in its form
(:class:`Form`): the fast path as HTTP bytes (:func:`http_head`), aiohttp as a
``web.Response`` with the same headers (:func:`http_headers`), the binary protocol
and msgpack batches as msgpack of the same body (:meth:`Reply.msgpack`). So the same
request gets the same answer on every path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import msgpack
import orjson

from resolver.core import codec, signing
from resolver.core.delegation import Delegation
from resolver.core.errors import IdresError, PrefixNotHomed
from resolver.native.values import from_reply

Header = tuple[str, str]

STALE: Header = ("Warning", '110 - "Response is Stale"')  # RFC 7234 §5.5.1, as RFC 8767 advises
SERVER: Header = ("Server", "idres")
# CORS on every answer (handle-facts §2.5: the Handle.Net server enables it everywhere):
# any origin may read, with no credentials mode (no cookies: Allow-Credentials is never
# sent), and may see the Warning of a stale answer; writes still need Authorization
CORS: tuple[Header, ...] = (("Access-Control-Allow-Origin", "*"),
                            ("Access-Control-Expose-Headers", "Warning, Content-Length"))
PREFLIGHT: tuple[Header, ...] = (
    ("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    ("Access-Control-Allow-Headers",
     "Authorization, Content-Type, Accept, Origin, X-Requested-With, X-Request-ID"),
    ("Access-Control-Max-Age", "86400"),
)
JSON: Header = ("Content-Type", "application/json; charset=utf-8")
CHALLENGE: Header = ("WWW-Authenticate", 'Basic realm="idres", Bearer')
_STALE_FIELD = b',"stale":true}'


class Form:
    """How a front end keeps an encoded reply in the cache (coalesce.py), by spelling.
    Plain strings, not an Enum: they are hashed on every cache hit (an Enum member hashes
    in Python code, a str in C)."""

    JSON: Final = "json"        # bytes: the Handle JSON body (aiohttp GET, JSON batches)
    MSGPACK: Final = "msgpack"  # (wire status, msgpack bytes): binary protocol, msgpack batches
    HTTP: Final = "http"        # (head, body): the fast path's response, less Date/Connection
    HDL: Final = "hdl"          # (responseCode, body): the Handle native protocol's answer


@dataclass(frozen=True, slots=True)
class Reply:
    status: int           # HTTP status
    code: int             # Handle responseCode, as in the body
    wire: int             # status of a binary-protocol response frame
    body: bytes           # the Handle JSON body
    headers: tuple[Header, ...] = ()

    def msgpack(self) -> bytes:
        """The body as msgpack (binary protocol, msgpack batches)."""
        data: bytes = msgpack.packb(orjson.loads(self.body), use_bin_type=True)
        return data


def record(requested: str, public: bytes | None, *, stale: bool = False,
           homed: bool = True) -> Reply:
    """The reply for an unfiltered resolution: ``public`` is the stored public values
    (None: no such identifier). A stale one says so in its body and its headers. An
    identifier that does not exist under a prefix this node does not serve (``homed``
    false) gets the Handle.Net server's "that prefix doesn't live here"."""
    if public is None and not homed:
        return error(not_homed(requested), requested)
    body = codec.splice_record(requested, public)
    if public is None:
        status, code, wire = 404, 100, 100
    elif public == codec.EMPTY:
        status, code, wire = 200, 200, 1
    else:
        status, code, wire = 200, 1, 1
    if stale:
        return Reply(status, code, wire, body[:-1] + _STALE_FIELD, (STALE,))
    return Reply(status, code, wire, body)


def selected(requested: str, values: list[dict[str, Any]] | None, *, stale: bool = False,
             homed: bool = True, **extra: Any) -> Reply:
    """The reply for values already chosen (a filter, an authenticated read) in the output
    form, None for no such identifier; ``extra`` fields (trace, signature) follow."""
    if values is None and not homed:
        return error(not_homed(requested), requested)
    if values is None:
        body = codec.message(100, requested, message=f"handle {requested} not found")
        status, code, wire = 404, 100, 100
    elif values:
        body = codec.message(1, requested, values=values)
        status, code, wire = 200, 1, 1
    else:  # the Handle.Net server's order for "no values" (handle-facts §2.2)
        body = {"responseCode": 200, "values": [], "handle": requested}
        status, code, wire = 200, 200, 1
    if stale:
        body["stale"] = True
    body.update(extra)
    return Reply(status, code, wire, orjson.dumps(body), (STALE,) if stale else ())


def not_homed(requested: str) -> PrefixNotHomed:
    prefix = requested.partition("/")[0]
    return PrefixNotHomed(f"That prefix doesn't live here: {prefix} is neither allocated "
                          "nor delegated on this node")


def error(exc: IdresError, requested: str | None = None) -> Reply:
    """The reply for an error, with the codes of the error table; ``requested`` (the
    identifier as the client wrote it) is echoed when there is one."""
    body = codec.encode_message(exc.response_code, requested, message=exc.message,
                                **(exc.details or {}))
    headers = (CHALLENGE,) if exc.http_status == 401 else ()
    return Reply(exc.http_status, exc.response_code, exc.wire_status, body, headers)


def referral(requested: str, normalised: str, delegation: Delegation, key: Any,
             now: int) -> Reply:
    """HTTP 300 / responseCode 303 naming the delegated servers, signed by this node: it
    vouches for the child's servers and key (the chain of trust, docs/trust.md)."""
    ref = delegation.to_json()
    sig = signing.signed(key, {"kind": "referral", "handle": normalised, **ref}, delegation.ttl,
                         now)
    body = codec.message(303, requested, message=f"prefix {delegation.prefix} is delegated: "
                         f"ask {delegation.servers[0].url}", referral=ref, signature=sig)
    return Reply(300, 303, 303, orjson.dumps(body))


def redirect(url: str, ttl: int, *, stale: bool = False, status: int = 302) -> Reply:
    """The proxy's redirect: to a record's URL value (302, as the Handle.Net proxy sends
    by default), or to the identifier an alias names (301); cacheable for the smallest
    TTL of the record."""
    headers = (("Location", url), ("Cache-Control", f"max-age={ttl}"))
    return Reply(status, 1, 1, b"", (*headers, STALE) if stale else headers)


def gone(requested: str, values: list[dict[str, Any]], said: dict[str, Any]) -> Reply:
    """The proxy's answer for a retired identifier: 410 Gone, with its tombstone."""
    body = codec.message(1, requested, values=values, retired=said.get("retired"),
                         reason=said.get("reason", ""))
    return Reply(410, 1, 1, orjson.dumps(body))


def message(status: int, code: int, /, **fields: Any) -> Reply:
    """A reply that is not about one identifier (service answers)."""
    return Reply(status, code, code, codec.encode_message(code, **fields))


_STATUS_LINE = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}


def http_headers(reply: Reply) -> list[Header]:
    """Every header of the reply but Date, Content-Length and Connection (which the
    HTTP layer adds), in order: the same list on the fast path and through aiohttp."""
    kind = [JSON] if reply.body else []
    return [*kind, SERVER, *CORS, *reply.headers]


def http_head(reply: Reply) -> bytes:
    """The status line and headers of the fast path's response, without Date,
    Connection and the blank line (added per request)."""
    lines = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in http_headers(reply))
    return _STATUS_LINE[reply.status] + lines + b"Content-Length: %d\r\n" % len(reply.body)


def _json(r: Reply) -> bytes:
    return r.body


def _msgpack(r: Reply) -> tuple[int, bytes]:
    return r.wire, r.msgpack()


def _http(r: Reply) -> tuple[bytes, bytes]:
    return http_head(r), r.body


def _hdl(r: Reply) -> tuple[int, bytes]:
    return from_reply(r.code, r.body)


# what each form keeps of a reply, and its size for the cache's byte bound
RENDER: dict[str, tuple[Callable[[Reply], Any], Callable[[Any], int]]] = {
    Form.JSON: (_json, len),
    Form.MSGPACK: (_msgpack, lambda v: len(v[1])),
    Form.HTTP: (_http, lambda v: len(v[0]) + len(v[1])),
    Form.HDL: (_hdl, lambda v: len(v[1])),
}
