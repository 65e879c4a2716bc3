"""Who may write what. Pure: the caller fetches the facts, this decides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resolver.core.identifier import Prefix


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated operator."""

    operator_id: int
    name: str
    identity: str
    is_admin: bool


def may_administer(principal: Principal, prefix: Prefix, owners: Mapping[str, int]) -> bool:
    """True if ``principal`` is an administrator or owns ``prefix`` or one of its ancestors.

    ``owners`` maps the registered prefixes of ``prefix.lineage()`` to their owner ids.
    """
    if principal.is_admin:
        return True
    return any(owners.get(p.text) == principal.operator_id for p in prefix.lineage())


HIDDEN = {"format": "string", "value": "(not readable)"}


def unreadable_hidden(snapshot: Any) -> Any:
    """Values as the audit trail keeps and shows them: the data of a value nobody may read
    (neither admin-read nor public-read: an ``HS_SECKEY`` holding a secret's hash) is
    replaced by :data:`HIDDEN`, as resolution hides it; anything not a list of values is
    returned as it is."""
    if not isinstance(snapshot, list):
        return snapshot
    return [{**v, "data": HIDDEN} if isinstance(v, dict) and isinstance(v.get("permissions"), str)
            and v["permissions"][0:1] == "0" and v["permissions"][2:3] == "0" else v
            for v in snapshot]
