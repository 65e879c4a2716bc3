"""The lifecycle of an identifier, and what the world sees of it in each state. Pure.

* ``draft``: visible to its owner only (resolution skips it: it does not exist yet);
* ``active``: the default, what every identifier was before typed records;
* ``retired``: resolves to a tombstone, one value saying when and why (``410 Gone`` on
  the proxy path); never reused, never changed again;
* ``replaced``: resolves to an ``HS_ALIAS`` value naming its successor, as the Handle
  System says "this identifier is an alias of that one" (the proxy path answers ``301``
  to the successor, following aliases at most ``MAX_ALIAS_HOPS``).

The record's own values are kept in every state (its owner, the audit trail); only its
public view (``handles.public_json``) changes, so every resolution path, the cache
included, answers the state without knowing about it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from resolver.core import codec

STATES = ("draft", "active", "retired", "replaced")
TOMBSTONE_TYPE = "idres.tombstone"
ALIAS_TYPE = "HS_ALIAS"
MAX_ALIAS_HOPS = 20   # the Handle.Net proxy's bound (HDLProxy.java)
# from → the states it may move to; retired is final
MOVES = {"draft": {"active"}, "active": {"retired", "replaced"},
         "replaced": {"active", "retired"}, "retired": set()}


def public_view(values: Sequence[dict[str, Any]], state: str,
                info: dict[str, Any] | None = None) -> bytes:
    """What anonymous clients see of a record in ``state`` (output-form JSON)."""
    if state in ("active", "draft"):
        return codec.public_json(values)
    info = info or {}
    now = int(info.get("epoch") or time.time())
    if state == "retired":
        said = {"retired": info.get("at"), "reason": info.get("reason", "")}
        value = {"index": 1, "type": TOMBSTONE_TYPE,
                 "data": {"format": "string", "value": orjson.dumps(said).decode()}}
    else:
        value = {"index": 1, "type": ALIAS_TYPE,
                 "data": {"format": "string", "value": info.get("successor", "")}}
    return codec.public_json([{**value, "ttl": 86400, "timestamp": now, "permissions": "1110"}])


def columns(values: Sequence[dict[str, Any]], state: str,
            info: dict[str, Any] | None = None) -> tuple[bytes, bytes]:
    """(``handles.values``, ``handles.public_json``) of a record in ``state``: an active
    record's public JSON is not stored when it derives from its stored JSON
    (``codec.stored_columns``)."""
    if state == "active":
        return codec.stored_columns(values)
    return orjson.dumps(values), public_view(values, state, info)


def shared_view(values: Sequence[dict[str, Any]], state: str) -> bytes | None:
    """The shared values granted readers may see of a record in ``state``: an active
    record's (``codec.shared_json``); none in any other state (a draft is its owner's, a
    retired or replaced record shows its tombstone or alias to everyone else)."""
    return codec.shared_json(values) if state == "active" else None


def tombstone(values: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The tombstone's content, when these (output-form) values are one."""
    for v in values:
        if v["type"] == TOMBSTONE_TYPE and v["data"]["format"] == "string":
            said: dict[str, Any] = orjson.loads(v["data"]["value"])
            return said
    return None


def alias(values: Sequence[dict[str, Any]]) -> str | None:
    """The identifier an ``HS_ALIAS`` value names, if any."""
    for v in values:
        if v["type"].upper() == ALIAS_TYPE and v["data"]["format"] == "string":
            target: str = v["data"]["value"]
            return target
    return None
