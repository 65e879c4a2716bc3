"""Handle values on the wire (RFC 3651 §3.1, the Handle.Net Encoder's order), sans-I/O.

A value is: index int4, timestamp int4, TTL type byte (0 relative, 1 absolute), TTL
int4, permissions byte (admin read 0x8, admin write 0x4, public read 0x2, public write
0x1), type string, data (int4 length and bytes), references (int4 count, then a handle
string and an index int4 each).

Values go out from the output form that resolution keeps (``resolver/core/codec.py``
``to_output``: ISO timestamps, permissions left out when ``1110``) and come in to the
stored form that every write takes (``codec.value_from_input``'s dicts); the data bytes
are those of ``resolver/core/hsdata.py`` both ways, so a record reads the same over REST
and over this protocol.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable
from typing import Any

import orjson

from resolver.core import hsdata
from resolver.core.errors import InvalidValue
from resolver.core.record import DEFAULT_PERMISSIONS, DEFAULT_TTL, check_extras, check_value
from resolver.native.wire import Reader, int4, string

Value = dict[str, Any]


def _epoch(stamp: object) -> int:
    if isinstance(stamp, int):
        return stamp
    if isinstance(stamp, str):
        return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    return 0


def encode_value(v: Value) -> bytes:
    """One value, from its output (or stored) form."""
    data = hsdata.data_bytes(v["type"], v["data"])
    refs = v.get("refs", ())
    return b"".join((
        int4(v["index"]), int4(_epoch(v.get("timestamp", 0))),
        bytes([v.get("ttlType", 0)]), int4(v.get("ttl", DEFAULT_TTL)),
        bytes([int(v.get("permissions", DEFAULT_PERMISSIONS), 2)]),
        string(v["type"]), string(data),
        int4(len(refs)), *(string(r["handle"]) + int4(r["index"]) for r in refs)))


def encode_values(values: Iterable[Value]) -> bytes:
    encoded = [encode_value(v) for v in values]
    return int4(len(encoded)) + b"".join(encoded)


def decode_value(r: Reader, timestamp: int | None = None) -> Value:
    """One value in the stored form (``timestamp``: the write's, replacing the sent one,
    as a REST write stamps its values).

    :raises ProtocolError: the bytes do not hold a value.
    :raises InvalidValue: a value idres does not take (the rules of ``check_value``)."""
    index, stamp, ttl_type, ttl = r.int4(), r.int4(), r.byte(), r.int4()
    perms, type_, data = r.byte(), r.text(), r.bytes()
    refs = [{"handle": r.text(), "index": r.int4()} for _ in range(r.count())]
    out: Value = {"index": index, "type": type_, "data": hsdata.to_json(type_, data),
                  "ttl": ttl, "timestamp": stamp if timestamp is None else timestamp,
                  "permissions": f"{perms & 0xf:04b}"}
    if ttl_type:
        out["ttlType"] = ttl_type
    if refs:
        out["refs"] = refs
    check_value(index, type_, out["data"]["format"], out["data"]["value"], ttl,
                out["permissions"])
    check_extras(index, ttl_type, refs)
    if perms > 0xf:
        raise InvalidValue(f"value {index}: permissions byte {perms} has unknown bits")
    return out


def decode_values(r: Reader, timestamp: int | None = None) -> list[Value]:
    return [decode_value(r, timestamp) for _ in range(r.count())]


def from_reply(code: int, body: bytes) -> tuple[int, bytes]:
    """(responseCode, body) of a native answer from a reply's Handle JSON (``reply.py``):
    a resolution's body is the handle as asked and its values; any other answer is an
    error, whose body is its message. A referral to a delegated node (303 over REST,
    which names an HTTP server a native client cannot use) is "that prefix doesn't live
    here" (301), naming the node."""
    data = orjson.loads(body)
    if code == 1:
        return 1, string(data["handle"]) + encode_values(data["values"])
    if code == 200:
        return 200, string(f"no values of {data.get('handle', '')} match the request")
    return (301 if code == 303 else code), string(str(data.get("message", "")))
