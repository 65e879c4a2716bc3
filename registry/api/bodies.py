"""Request bodies as msgspec types: the same definitions decode and validate the requests
(``decode``) and describe them in the OpenAPI document (``@takes``, resolver/http/openapi.py).

The Handle-compatible bodies (a ``PUT`` of values, a bulk registration) keep the codec's
checks, which accept what Handle clients send (an index as a string, ``data`` as a bare
string or an object) and name the offending value; their types here describe those shapes.
"""

from __future__ import annotations

from typing import Any

import msgspec

from resolver.core.errors import BadRequest


def decode(body: Any, kind: type[Any]) -> Any:
    """``body`` (decoded JSON) as ``kind``.

    :raises BadRequest: naming the field that is wrong or missing."""
    try:
        return msgspec.convert(body, type=kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"the request body is not valid: {exc}") from None


class NewPrefix(msgspec.Struct, forbid_unknown_fields=True):
    """A prefix to allocate, and its owner (default: the caller)."""
    prefix: str
    owner: str | None = None


class PrefixOwner(msgspec.Struct, forbid_unknown_fields=True):
    """The operator a prefix is given to."""
    owner: str


class NewOperator(msgspec.Struct, forbid_unknown_fields=True):
    """An operator: its name, its Handle admin identity (INDEX:HANDLE), administrator or not."""
    name: str
    identity: str | None = None
    admin: bool = False


class NewToken(msgspec.Struct, forbid_unknown_fields=True):
    """A bearer token: a label, for whom (administrators: another operator), until when."""
    label: str = ""
    operator: str | None = None
    expires: str | None = None
    expires_in: int | None = None


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    """A public key (PEM text, or a JWK object; RSA or DSA) for the identity's index."""
    index: int
    publicKey: str | dict[str, str]


class ServerIn(msgspec.Struct, forbid_unknown_fields=True):
    """A node serving a delegated prefix: its base URL, its Ed25519 key, its binary port."""
    url: str
    key: str
    binary: str | None = None


class NewDelegation(msgspec.Struct, forbid_unknown_fields=True):
    """A prefix delegated to other nodes."""
    prefix: str
    servers: list[ServerIn]
    ttl: int = 86400


class DataIn(msgspec.Struct):
    """A value's data: its format (string, hex, base64, admin, vlist, ...) and value."""
    value: Any
    format: str = "string"


class ValueIn(msgspec.Struct):
    """A value as Handle clients send it."""
    index: int | str
    type: str
    data: str | DataIn
    ttl: int | str = 86400
    permissions: str | None = None
    classification: str | None = None


class ValuesIn(msgspec.Struct):
    """A record: its values (a bare array of values, or one value, is accepted too)."""
    values: list[ValueIn]
    handle: str | None = None
    template: str | None = None
    templateVersion: int | None = None


class RecordIn(msgspec.Struct):
    """One record of a bulk registration."""
    handle: str
    values: list[ValueIn]
    template: str | None = None
    templateVersion: int | None = None


class BulkIn(msgspec.Struct):
    """A bulk registration (a bare array of records, or ``{"handleRecords": {...}}``, is
    accepted too)."""
    records: list[RecordIn]


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """A batch resolution (JSON, or the same in msgpack)."""
    handles: list[str]
