"""Who sees which values of a record (docs/sharing.md). Pure: the caller fetches the
grants, this decides.

Every value has a classification: ``public`` (its public-read permission bit is set:
anyone), ``shared`` (not public, marked ``"classification": "shared"``: the readers
granted it) or ``private`` (not public and not shared: whoever administers the
identifier only). A value written before classifications existed without the
public-read bit is private, as it was owner-only then.

A grant lets one party (an application identity, an operator, or the members of a
group) read the shared values of the identifiers under a prefix (and its descendants),
or of one identifier, whose type matches the grant's pattern, optionally only in
records that follow one template. No grant ever reveals a private value.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from resolver.core.identifier import Identifier, Prefix

Classification = Literal["public", "shared", "private"]
CLASSIFICATIONS: tuple[Classification, ...] = ("public", "shared", "private")
# the permission bits each classification keeps (Handle: admin read, admin write, public
# read, public write): shared and private values are not publicly readable
PERMISSIONS: dict[str, str] = {"public": "1110", "shared": "1100", "private": "1100"}


def token_hash(token: str) -> bytes:
    """How a bearer token is kept (operators' and readers' alike): its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


def classification(value: dict[str, Any]) -> Classification:
    """The classification of a stored value."""
    if value["permissions"][2] == "1":
        return "public"
    return "shared" if value.get("classification") == "shared" else "private"


@functools.lru_cache(maxsize=4096)
def glob(types: str) -> re.Pattern[str]:
    """A pattern with ``*`` for any run of characters, everything else literal, case
    ignored, matched whole: grants' value types, reverse-lookup terms."""
    return re.compile(".*".join(re.escape(part) for part in types.split("*")) + r"\Z",
                      re.IGNORECASE | re.DOTALL)


def type_matches(types: str, type_: str) -> bool:
    """Whether a value type matches a grant's pattern (``*``: any run of characters;
    case ignored, as value types are compared by the Handle System)."""
    return types == "*" or glob(types).match(type_) is not None


@dataclass(frozen=True, slots=True)
class Grant:
    """One grant as a reader's view holds it."""

    id: int
    scope: str                  # a prefix text ("88.100.7") or an identifier key
    types: str = "*"
    template: str | None = None  # the template's key: records that follow it only
    expires: float | None = None  # epoch seconds; None: until revoked

    def covers(self, ident: Identifier, template: str | None, now: float) -> bool:
        """Whether the grant applies to the record at all (scope, template, expiry)."""
        if self.expires is not None and self.expires <= now:
            return False
        if self.template is not None and self.template != template:
            return False
        if "/" in self.scope:
            return self.scope == ident.key
        return any(p.text == self.scope for p in ident.prefix.lineage())


@dataclass(frozen=True, slots=True)
class View:
    """What a caller with credentials may read: everything that is readable of the
    identifiers it administers (``admin``: of all, an administrator; ``owns``: the
    prefixes it owns, with their descendants), and elsewhere the public values plus the
    shared values its ``grants`` cover. ``party`` names the caller (``reader:NAME``,
    ``operator:NAME``)."""

    party: str
    admin: bool = False
    grants: tuple[Grant, ...] = ()
    owns: frozenset[str] = frozenset()

    @property
    def timeless(self) -> bool:
        """No grant of the view expires: what it shows of a record changes only when the
        record or the grants do (an answer derived from it may be kept with the record)."""
        return all(g.expires is None for g in self.grants)

    def owner_of(self, prefix: Prefix) -> bool:
        """Whether the caller administers ``prefix`` (owns it or an ancestor)."""
        return self.admin or (bool(self.owns) and any(p.text in self.owns
                                                      for p in prefix.lineage()))

    def administers(self, ident: Identifier) -> bool:
        return self.owner_of(ident.prefix)

    def may_cover(self, ident: Identifier) -> bool:
        """Whether the caller may see more of the identifier than anyone (before its
        template and values are known): if not, it gets the public values, as anyone."""
        if self.administers(ident):
            return True
        if not self.grants:
            return False
        keys = {ident.key, *(p.text for p in ident.prefix.lineage())}
        return any(g.scope in keys for g in self.grants)

    def visible(self, values: Sequence[dict[str, Any]], ident: Identifier,
                template: str | None, now: float) -> list[dict[str, Any]]:
        """The stored values of a record the caller sees: all readable ones where it
        administers, else :func:`shared_view`."""
        if self.administers(ident):
            return [v for v in values if v["permissions"][2] == "1" or v["permissions"][0] == "1"]
        return shared_view(values, ident, template, self.grants, now)


def granted(shared: Sequence[dict[str, Any]], ident: Identifier, template: str | None,
            grants: Sequence[Grant], now: float) -> list[dict[str, Any]]:
    """The values among ``shared`` (shared values of one record, either form) that
    ``grants`` cover by scope, template and type."""
    live = [g for g in grants if g.covers(ident, template, now)]
    if not live:
        return []
    return [v for v in shared if any(type_matches(g.types, v["type"]) for g in live)]


def shared_view(values: Sequence[dict[str, Any]], ident: Identifier, template: str | None,
                grants: Sequence[Grant], now: float) -> list[dict[str, Any]]:
    """The values (stored form) a reader with ``grants`` sees, in index order: the
    public ones, and the shared ones a grant covers by scope, template and type. Never a
    private value."""
    shown = granted([v for v in values if classification(v) == "shared"], ident, template,
                    grants, now)
    shown += [v for v in values if classification(v) == "public"]
    return sorted(shown, key=lambda v: v["index"])


def shared_types(values: Sequence[dict[str, Any]] | None) -> list[str]:
    """The types of the shared values among ``values`` (either form): what a read log
    records of a read."""
    return [v["type"] for v in values or () if v.get("classification") == "shared"]
