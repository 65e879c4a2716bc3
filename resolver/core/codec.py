"""Converters between the Handle JSON forms, idres storage and :class:`HandleValue`.

Three representations of a value:

* **input**: what Handle REST clients send in a PUT (handle-facts §2.4, §4.4):
  ``data`` as an object or a bare string, an admin ``index`` as a string, ...;
* **stored**: the dict kept in the ``handles.values`` JSONB array, always complete:
  ``{"index", "type", "data": {"format", "value"}, "ttl", "timestamp", "permissions"}``
  with ``timestamp`` in epoch seconds;
* **output**: the Handle.Net GET shape (handle-facts §2.2): ISO timestamp, omitted
  when 0, and ``permissions`` only when it is not ``1110``.

The read path works on stored dicts directly (no object per value), the write
path on :class:`HandleValue`, which validates.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from resolver.core import sharing
from resolver.core.filters import select as select, visible as visible  # (re-exported)
from resolver.core.errors import BadRequest, InvalidValue
from resolver.core.record import (
    ADMIN_PERMISSIONS_ALL,
    DEFAULT_PERMISSIONS,
    DEFAULT_TTL,
    HandleValue,
    check_index,
    check_value,
    decode_hex,
    extras,
)

Stored = dict[str, Any]


# --- input (Handle REST PUT bodies) -------------------------------------------


def _int_or_digits(value: object, what: str) -> int:
    """Handle clients send some indexes as strings ("200"); accept digit strings."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 10:
        value = int(value)
    return check_index(value, what)


def _admin_permissions(index: int, perms: object) -> str:
    if isinstance(perms, bool):
        return ADMIN_PERMISSIONS_ALL if perms else "0" * 12
    if isinstance(perms, list) and len(perms) == 12 and all(p in (0, 1, True, False) for p in perms):
        return "".join("1" if p else "0" for p in perms)
    if isinstance(perms, str):
        return perms
    raise InvalidValue(f"value {index}: admin permissions must be a string of 12 characters of 0/1")


def _data_from_input(index: int, type_: str, data: object) -> tuple[str, Any]:
    if isinstance(data, str):
        return "string", data
    if not isinstance(data, dict):
        raise InvalidValue(f"value {index}: data must be an object {{format, value}} or a string")
    if "value" not in data:
        raise InvalidValue(f"value {index}: data has no 'value'")
    fmt = data.get("format")
    value = data["value"]
    if fmt is None:
        fmt = "admin" if type_ == "HS_ADMIN" and isinstance(value, dict) else "string"
    if not isinstance(fmt, str):
        raise InvalidValue(f"value {index}: data format must be a string")
    fmt = fmt.lower()
    if fmt == "hex":
        return "base64", decode_hex(index, value)
    if fmt == "admin":
        if not isinstance(value, dict):
            raise InvalidValue(f"value {index}: admin data must be an object")
        return "admin", {
            "handle": value.get("handle"),
            "index": _int_or_digits(value.get("index"), f"value {index}: admin index"),
            "permissions": _admin_permissions(index, value.get("permissions", ADMIN_PERMISSIONS_ALL)),
        }
    if fmt == "vlist" and isinstance(value, list):
        refs = []
        for ref in value:
            if not isinstance(ref, dict):
                raise InvalidValue(f"value {index}: vlist entries must be {{handle, index}}")
            refs.append(
                {
                    "handle": ref.get("handle"),
                    "index": _int_or_digits(ref.get("index"), f"value {index}: vlist index"),
                }
            )
        return "vlist", refs
    return fmt, value


def value_from_input(obj: object, timestamp: int) -> Stored:
    """A validated value, in the stored form, from one Handle REST input entry.

    :raises InvalidValue: with a message naming the index and the problem.
    """
    # bulk registration runs this for millions of values: the common shapes (an int
    # index, bare string data) skip the helpers; check_value still checks everything
    if not isinstance(obj, dict):
        raise InvalidValue("each value must be a JSON object with index, type and data")
    try:
        index, type_, data = obj["index"], obj["type"], obj["data"]
    except KeyError as exc:
        raise InvalidValue(f"a value is missing {exc.args[0]!r}: {_short(obj)}") from None
    if type(index) is not int:
        index = _int_or_digits(index, "value index")
    if not isinstance(type_, str):
        raise InvalidValue(f"value {index}: type must be a string")
    if type(data) is str:
        fmt, value = "string", data
    else:
        fmt, value = _data_from_input(index, type_, data)
    ttl = obj.get("ttl", DEFAULT_TTL)
    if type(ttl) is str and ttl.isdigit():
        ttl = int(ttl)
    perms = obj.get("permissions", DEFAULT_PERMISSIONS)
    classified = obj.get("classification")
    if classified is not None:
        perms = _classified(index, classified, obj.get("permissions"))
    check_value(index, type_, fmt, value, ttl, perms)
    out: Stored = {"index": index, "type": type_, "data": {"format": fmt, "value": value},
                   "ttl": ttl, "timestamp": timestamp, "permissions": perms}
    if "ttlType" in obj or "refs" in obj:  # (rare: kept only when set: see record.extras)
        out.update(extras(index, obj.get("ttlType", 0), obj.get("refs", [])))
    if classified == "shared":
        out["classification"] = "shared"
    return out


def _classified(index: int, classified: object, perms: object) -> str:
    """The permissions of a value that names its classification (resolver/core/sharing.py);
    permissions given with it must agree (public read for public values only).

    :raises InvalidValue:"""
    if classified not in sharing.CLASSIFICATIONS:
        raise InvalidValue(f"value {index}: classification must be one of "
                           f"{', '.join(sharing.CLASSIFICATIONS)}, not {_short(classified)}")
    if perms is None:
        return sharing.PERMISSIONS[str(classified)]
    if not isinstance(perms, str) or len(perms) != 4 or \
            (perms[2:3] == "1") != (classified == "public"):
        raise InvalidValue(f"value {index}: permissions {_short(perms)} do not fit classification "
                           f"{classified} (only public values have the public-read bit)")
    return perms


def values_from_body(body: object, handle: str | None = None) -> list[object]:
    """The raw value entries of a PUT body: an array, ``{"values": [...]}`` or one value.

    :raises BadRequest: an unrecognised shape, or a ``handle`` in the body that
        differs from the one in the path.
    """
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        if "values" in body:
            if handle is not None and "handle" in body and body["handle"] != handle:
                raise BadRequest(
                    f"the body names handle {body['handle']!r} but the path names {handle!r}"
                )
            if not isinstance(body["values"], list):
                raise BadRequest("'values' must be a JSON array")
            return list(body["values"])
        if {"index", "type", "data"} <= body.keys():
            return [body]
    raise BadRequest("the body must be an array of values, {\"values\": [...]} or one value")


def parse_values(entries: Iterable[object], timestamp: int | None = None) -> list[Stored]:
    """Validate every entry (all of them, before anything is written); stored form."""
    ts = int(time.time()) if timestamp is None else timestamp
    return [value_from_input(e, ts) for e in entries]


def _short(obj: object) -> str:
    text = orjson.dumps(obj, default=str).decode()
    return text if len(text) <= 120 else text[:120] + "…"


def parse_json(body: bytes) -> Any:
    """Decode a JSON request body.

    :raises BadRequest: when the body is not JSON, with the parser's position.
    """
    if not body:
        raise BadRequest("the request body is empty; send JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


# --- stored --------------------------------------------------------------------


def to_stored(v: HandleValue) -> Stored:
    return {
        "index": v.index,
        "type": v.type,
        "data": {"format": v.format, "value": v.value},
        "ttl": v.ttl,
        "timestamp": v.timestamp,
        "permissions": v.permissions,
    }


def from_stored(d: Stored) -> HandleValue:
    data = d["data"]
    return HandleValue(
        d["index"], d["type"], data["format"], data["value"], d["ttl"], d["timestamp"],
        d["permissions"],
    )


# --- output (Handle REST GET) -----------------------------------------------------


@functools.lru_cache(maxsize=4096)
def iso_timestamp(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _data_output(data: Stored) -> Stored:
    # JSONB stores object keys in its own order; answer in the Handle server's order.
    value = data["value"]
    fmt = data["format"]
    if fmt == "string" and next(iter(data)) == "format":
        return data  # built by us, already in order
    if fmt == "admin":
        value = {"handle": value["handle"], "index": value["index"],
                 "permissions": value["permissions"]}
    return {"format": fmt, "value": value}


def to_output(d: Stored) -> Stored:
    data = d["data"]
    if data["format"] != "string" or next(iter(data)) != "format":  # else: ours, in order
        data = _data_output(data)
    out: Stored = {"index": d["index"], "type": d["type"], "data": data, "ttl": d["ttl"]}
    if "ttlType" in d:
        out["ttlType"] = d["ttlType"]
    if d["timestamp"]:
        out["timestamp"] = iso_timestamp(d["timestamp"])
    if d["permissions"] != DEFAULT_PERMISSIONS:
        out["permissions"] = d["permissions"]
        if "classification" in d:
            out["classification"] = d["classification"]
    if "refs" in d:
        out["refs"] = d["refs"]
    return out


def public_json(values: Sequence[Stored]) -> bytes:
    """What anonymous clients see of a record, in the output form, as a JSON array.

    Computed by every write and stored next to the record (``handles.public_json``),
    so that resolution splices bytes instead of decoding and encoding JSON."""
    return orjson.dumps([to_output(v) for v in visible(values)])


def shared_json(values: Sequence[Stored]) -> bytes | None:
    """The shared values of a record (resolver/core/sharing.py), in the output form, as a
    JSON array; None when it has none. Stored next to the record (``handles.shared_json``)
    and cached with its public values, for authorized answers."""
    shared = [to_output(v) for v in values
              if v.get("classification") == "shared" and v["permissions"][2] != "1"]
    return orjson.dumps(shared) if shared else None


_DEFAULT_PERMS = b',"permissions":"%s"' % DEFAULT_PERMISSIONS.encode()
_TIMESTAMP = re.compile(rb'"timestamp":(\d+)')
_KEYS = ("index", "type", "data", "ttl", "timestamp", "permissions")
_DATA_KEYS = ("format", "value")

# what ``handles.public_json`` holds when the public JSON is derived from the stored JSON
# (:func:`stored_columns`): an empty byte string, never valid JSON (an empty record is
# ``[]``); NULL still means a row written before migration 0002
DERIVED = b""


def derivable(values: Sequence[Stored]) -> bool:
    """Whether the public JSON of ``values`` is :func:`derive_public` of their stored
    JSON: every value public, with string data and one timestamp (not 0), keys in the
    stored form's order, as most records are. Their output form is their stored JSON with
    the timestamp in ISO form and the default permissions left out (inside a JSON string
    those patterns would have escaped quotes, so they cannot match there)."""
    ts = values[0]["timestamp"] if values else 0
    for v in values if ts else ():
        if v["timestamp"] != ts or v["permissions"][2] != "1" or tuple(v) != _KEYS \
                or tuple(v["data"]) != _DATA_KEYS or v["data"]["format"] != "string":
            return False
    return bool(ts)


def derive_public(stored: bytes) -> bytes:
    """The public JSON of a :func:`derivable` record, from its stored JSON: two byte
    replacements (about a microsecond for the benchmark's records)."""
    found = _TIMESTAMP.search(stored)
    if found is None:
        raise ValueError("a derived public view needs a stored record with a timestamp")
    ts = int(found.group(1))
    public = stored.replace(b'"timestamp":%d' % ts, b'"timestamp":"%s"' % iso_timestamp(ts).encode())
    return public.replace(_DEFAULT_PERMS, b"")


def encode_stored(values: Sequence[Stored]) -> tuple[bytes, bytes]:
    """(the stored JSON of a record, its public JSON); the common record (:func:`derivable`)
    takes a short cut (:func:`derive_public`); tests/core: both ways give the same bytes."""
    stored = orjson.dumps(values)
    return stored, (derive_public(stored) if derivable(values) else public_json(values))


def stored_columns(values: Sequence[Stored]) -> tuple[bytes, bytes]:
    """(``handles.values``, ``handles.public_json``) of an active record: the public JSON
    is :data:`DERIVED` whenever it can be (:func:`derivable`), so most records are stored
    once, not twice (resolver/store.py reads them back)."""
    stored = orjson.dumps(values)
    return stored, (DERIVED if derivable(values) else public_json(values))


EMPTY = b"[]"
# a "ttl" key in output-form JSON; inside a string the quotes would be escaped
_TTL = re.compile(rb'"ttl":(\d+)')


def min_ttl(public: bytes) -> int | None:
    """The smallest value TTL in output-form JSON bytes (None when there is no value)."""
    found = _TTL.findall(public)
    return min(int(t) for t in found) if found else None


def splice_record(handle: str, public: bytes | None) -> bytes:
    """The Handle JSON of a resolution, from stored ``public_json`` bytes (None: not
    found), spliced without decoding: the same bytes as ``orjson.dumps`` of the
    message ``{"responseCode": 1, "handle", "values"}`` (200 and ``[]`` when no value
    is public; 100 with a ``message`` when the identifier does not exist)."""
    h = orjson.dumps(handle)
    if public is None:
        return (b'{"responseCode":100,"handle":' + h + b',"message":'
                + orjson.dumps(f"handle {handle} not found") + b"}")
    if public == EMPTY:
        return b'{"responseCode":200,"values":[],"handle":' + h + b"}"
    return b'{"responseCode":1,"handle":' + h + b',"values":' + public + b"}"


def record_json(handle: str, output_values: Sequence[Stored]) -> bytes:
    """The Handle JSON of a resolution for values already in the output form (filtered or
    authenticated reads)."""
    if output_values:
        return orjson.dumps({"responseCode": 1, "handle": handle, "values": list(output_values)})
    return orjson.dumps({"responseCode": 200, "values": [], "handle": handle})


def message(response_code: int, handle: str | None = None, **fields: Any) -> dict[str, Any]:
    """A Handle message: ``responseCode`` first, then ``handle`` if given, then ``fields``."""
    body: dict[str, Any] = {"responseCode": response_code}
    if handle is not None:
        body["handle"] = handle
    body.update(fields)
    return body


def encode_message(response_code: int, handle: str | None = None, **fields: Any) -> bytes:
    """:func:`message` as JSON bytes."""
    return orjson.dumps(message(response_code, handle, **fields))
