"""Handle values and records: the Handle System data model (RFC 3651, TM §14.8).

A record is the set of an identifier's values. Each :class:`HandleValue` is
immutable and validated when built, so code that holds one can trust it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resolver.core import hsdata
from resolver.core.errors import InvalidValue

MAX_INDEX = 2**31 - 1
MAX_TTL = 2**31 - 1
MAX_TYPE_BYTES = 255
MAX_DATA_BYTES = 65536
MAX_VALUES = 2048  # Handle Common.MAX_HANDLE_VALUES
DEFAULT_TTL = 86400
DEFAULT_PERMISSIONS = "1110"  # admin read, admin write, public read; no public write
ADMIN_PERMISSIONS_ALL = "111111111111"

FORMATS = ("string", "base64", "admin", "vlist", "site", "key")
_TYPE_OK = re.compile(r"[^\x00-\x20\x7f]+\Z")
_PERMISSIONS = frozenset(f"{n:04b}" for n in range(16))
_BITS12 = re.compile(r"[01]{12}\Z")


@dataclass(frozen=True, slots=True)
class HandleValue:
    """One typed value of a record.

    ``value`` is a ``str`` for the ``string`` and ``base64`` formats, a dict
    ``{"handle", "index", "permissions"}`` for ``admin`` and a list of
    ``{"handle", "index"}`` for ``vlist``. ``permissions`` is the Handle bit
    string admin-read, admin-write, public-read, public-write. ``timestamp`` is
    epoch seconds of the last change (0 = unknown).
    """

    index: int
    type: str
    format: str
    value: Any
    ttl: int = DEFAULT_TTL
    timestamp: int = 0
    permissions: str = DEFAULT_PERMISSIONS

    def __post_init__(self) -> None:
        check_value(self.index, self.type, self.format, self.value, self.ttl, self.permissions)

    @property
    def admin_read(self) -> bool:
        return self.permissions[0] == "1"

    @property
    def admin_write(self) -> bool:
        return self.permissions[1] == "1"

    @property
    def public_read(self) -> bool:
        return self.permissions[2] == "1"

    @property
    def public_write(self) -> bool:
        return self.permissions[3] == "1"

    def with_timestamp(self, timestamp: int) -> HandleValue:
        return HandleValue(
            self.index, self.type, self.format, self.value, self.ttl, timestamp, self.permissions
        )


_seen_types: set[str] = set()  # valid types already checked (bounded)


def check_value(index: object, type_: object, fmt: str, value: Any, ttl: object,
                permissions: object) -> None:
    """Every rule a value must follow (the one place they are written).

    :raises InvalidValue: naming the index and the broken rule.
    """
    check_index(index, "index")
    if type_ not in _seen_types:  # a few types recur in millions of values
        if not isinstance(type_, str) or not _TYPE_OK.match(type_):
            raise InvalidValue(
                f"value {index}: type must be a non-empty string without spaces or controls"
            )
        if len(type_.encode("utf-8")) > MAX_TYPE_BYTES:
            raise InvalidValue(f"value {index}: type is longer than {MAX_TYPE_BYTES} bytes")
        if len(_seen_types) < 10_000:
            _seen_types.add(type_)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= MAX_TTL:
        raise InvalidValue(f"value {index}: ttl must be an integer number of seconds, 0..{MAX_TTL}")
    if permissions not in _PERMISSIONS:
        raise InvalidValue(f"value {index}: permissions must be 4 characters of 0/1, e.g. '1110'")
    _check_data(index, fmt, value)  # type: ignore[arg-type]


def check_index(index: object, what: str) -> int:
    """Return ``index`` if it is a positive 32-bit integer, else raise InvalidValue."""
    if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= MAX_INDEX:
        raise InvalidValue(f"{what} must be an integer 1..{MAX_INDEX}, got {index!r}")
    return index


def _check_data(index: int, fmt: str, value: Any) -> None:
    if fmt == "string":
        if not isinstance(value, str):
            raise InvalidValue(f"value {index}: string data must be a JSON string")
        if "\x00" in value:   # (PostgreSQL's JSON cannot hold it)
            raise InvalidValue(f"value {index}: string data must not contain U+0000 (NUL)")
        # a UTF-8 character takes at most 4 bytes: encode only when it could matter
        if len(value) * 4 > MAX_DATA_BYTES and \
                len(value.encode("utf-8", "surrogatepass")) > MAX_DATA_BYTES:
            raise InvalidValue(f"value {index}: data is longer than {MAX_DATA_BYTES} bytes")
        return
    where = f"value {index}"
    if fmt == "base64":
        if not isinstance(value, str):
            raise InvalidValue(f"{where}: base64 data must be a JSON string")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidValue(f"{where}: data is not valid base64") from None
        if len(raw) > MAX_DATA_BYTES:
            raise InvalidValue(f"{where}: data is longer than {MAX_DATA_BYTES} bytes")
    elif fmt == "admin":
        if not isinstance(value, dict) or set(value) != {"handle", "index", "permissions"}:
            raise InvalidValue(f"{where}: admin data must have handle, index and permissions")
        if not isinstance(value["handle"], str) or "/" not in value["handle"] \
                or "\x00" in value["handle"]:
            raise InvalidValue(f"{where}: admin handle must be an identifier PREFIX/SUFFIX")
        check_index(value["index"], f"{where}: admin index")
        if not isinstance(value["permissions"], str) or not _BITS12.match(value["permissions"]):
            raise InvalidValue(f"{where}: admin permissions must be 12 characters of 0/1")
    elif fmt == "vlist":
        if not isinstance(value, list) or len(value) > MAX_VALUES:
            raise InvalidValue(f"{where}: vlist data must be a list of {{handle, index}}")
        for ref in value:
            if (
                not isinstance(ref, dict)
                or set(ref) != {"handle", "index"}
                or not isinstance(ref["handle"], str)
            ):
                raise InvalidValue(f"{where}: vlist entries must be {{handle, index}}")
            check_index(ref["index"], f"{where}: vlist index")
    elif fmt in ("site", "key"):  # checked by encoding them (resolver/core/hsdata.py)
        if len(hsdata.data_bytes("HS_SITE" if fmt == "site" else "HS_PUBKEY",
                                 {"format": fmt, "value": value})) > MAX_DATA_BYTES:
            raise InvalidValue(f"{where}: data is longer than {MAX_DATA_BYTES} bytes")
    else:
        raise InvalidValue(f"{where}: data format {fmt!r} is not supported; use string, "
                           "base64, hex, admin, vlist, site or key")


def check_record(values: Sequence[dict[str, Any]]) -> None:
    """Check record-level rules on stored values: at most MAX_VALUES, indexes unique.

    :raises InvalidValue: naming the duplicate index.
    """
    if len(values) > MAX_VALUES:
        raise InvalidValue(f"a record holds at most {MAX_VALUES} values, got {len(values)}")
    seen: set[int] = set()
    for v in values:
        if v["index"] in seen:
            raise InvalidValue(f"duplicate index {v['index']} in the record")
        seen.add(v["index"])


def check_extras(index: int, ttl_type: object, refs: object) -> None:
    """A value's TTL type (0 relative, 1 absolute: ``ttl`` is then an epoch time) and
    its references (``[{handle, index}]``, RFC 3651 §3.1; almost always empty)."""
    if ttl_type not in (0, 1) or isinstance(ttl_type, bool):
        raise InvalidValue(f"value {index}: ttlType must be 0 (relative) or 1 (absolute)")
    if not isinstance(refs, list) or len(refs) > MAX_VALUES or not all(
            isinstance(r, dict) and set(r) == {"handle", "index"}
            and isinstance(r["handle"], str) and isinstance(r["index"], int)
            and not isinstance(r["index"], bool) and 0 <= r["index"] <= MAX_INDEX
            for r in refs):
        raise InvalidValue(f"value {index}: refs must be a list of {{handle, index}}")


def extras(index: int, ttl_type: object, refs: object) -> dict[str, Any]:
    """The stored fields of a TTL type and references, checked: only those that are set,
    so that most values keep the six fields of the stored form."""
    check_extras(index, ttl_type, refs)
    out: dict[str, Any] = {"ttlType": ttl_type} if ttl_type else {}
    if refs:
        out["refs"] = [{"handle": r["handle"], "index": r["index"]} for r in refs]  # type: ignore[attr-defined]
    return out


def decode_hex(index: int, value: object) -> str:
    """Hex input data → the base64 text idres stores (Handle has no hex output format)."""
    if not isinstance(value, str):
        raise InvalidValue(f"value {index}: hex data must be a JSON string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise InvalidValue(f"value {index}: data is not valid hex") from None
    return base64.b64encode(raw).decode("ascii")
