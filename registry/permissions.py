"""Who may write what. Pure: the caller fetches the facts, this decides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
