"""Templates: versions created, published, retired and read; what a write of a record
needs of them (docs/records.md).

A template is an identifier too (``88.100.7/META_ORDER``): its owner is the owner of
its prefix; its versions live in ``templates``; its own record (one value of type
``idres.template`` holding the newest published version, or the draft until one is
published, then in the draft state) resolves like any identifier. Every change goes
through the one write transaction, with its audit row and its invalidation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from registry import record_check as rc
from registry import template_model as tm
from registry.ownership import check_write
from registry.permissions import Principal
from registry.store import Db, WriteTx, audit, write_transaction
from resolver.core.errors import (
    BadRequest,
    IdentifierNotFound,
    TemplateConflict,
    TemplateInvalid,
)
from resolver.core.identifier import Identifier, parse

TEMPLATE_TYPE = "idres.template"   # the value of a template's own record
CHECK_LIMIT = 100_000              # records checked by a publish report, at most
EXAMPLES = 20

GET_VERSION = """SELECT handle, version, state, definition, created_at, published_at, retired_at
                 FROM templates WHERE handle = $1 AND version = $2"""
NEWEST = """SELECT handle, version, state, definition, created_at, published_at, retired_at
            FROM templates WHERE handle = $1 AND state = 'published'
            ORDER BY version DESC LIMIT 1"""
VERSIONS = """SELECT handle, version, state, definition, created_at, published_at, retired_at
              FROM templates WHERE handle = $1 ORDER BY version"""
UNDER = """SELECT DISTINCT ON (handle) handle, version, state, definition, created_at,
                  published_at, retired_at FROM templates
           WHERE handle >= $1 AND handle < $2 AND ($3 OR state <> 'draft')
           ORDER BY handle, (state = 'published') DESC, version DESC"""


@dataclass(frozen=True)
class Version:
    handle: str
    version: int
    state: str
    definition: tm.Definition
    created: str
    published: str | None
    retired: str | None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"handle": self.handle, "version": self.version,
                                "state": self.state, "created": self.created}
        if self.published:
            body["published"] = self.published
        if self.retired:
            body["retired"] = self.retired
        body.update(msgspec.to_builtins(self.definition))
        return body


def _iso(t: Any) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


# a version's definition never changes once declared (publishing and retiring change its
# state only): decoded once per process, with the checks compiled for it
# (record_check.Plan), instead of once per write
_DEFINITIONS: dict[tuple[str, int], tm.Definition] = {}
_KEPT = 1024


def _definition(handle: str, version: int, raw: Any) -> tm.Definition:
    found = _DEFINITIONS.get((handle, version))
    if found is None:
        if len(_DEFINITIONS) >= _KEPT:
            del _DEFINITIONS[next(iter(_DEFINITIONS))]
        found = _DEFINITIONS[(handle, version)] = tm.decode_definition(raw)
    return found


class Published:
    """This process's copy of each template's newest published version, for the checks
    of writes (one query fewer per typed write). Kept coherent as the answer cache is:
    every change of a template rewrites the template's own record, whose notification
    drops the copy before it is acknowledged (``forget``, a hook of the invalidation
    listener); a copy read before a drop is never kept (the generation), and none is used
    outside the cache's lease or across its epochs (``usable``, given by the node)."""

    def __init__(self) -> None:
        self.usable: Callable[[], tuple[bool, int]] = lambda: (False, 0)
        self.generation = 0
        self._kept: dict[str, tuple[Version, int]] = {}

    def get(self, key: str) -> Version | None:
        ok, epoch = self.usable()
        kept = self._kept.get(key)
        return kept[0] if ok and kept is not None and kept[1] == epoch else None

    def keep(self, key: str, version: Version, generation: int) -> None:
        ok, epoch = self.usable()
        if ok and generation == self.generation:
            if len(self._kept) >= _KEPT:
                del self._kept[next(iter(self._kept))]
            self._kept[key] = (version, epoch)

    def forget(self, keys: list[str]) -> None:
        self.generation += 1
        for key in keys:
            self._kept.pop(key, None)


PUBLISHED = Published()


def _version(row: asyncpg.Record) -> Version:
    return Version(row["handle"], row["version"], row["state"],
                   _definition(row["handle"], row["version"], row["definition"]),
                   _iso(row["created_at"]) or "", _iso(row["published_at"]),
                   _iso(row["retired_at"]))


def _parse(body: Any) -> tm.Definition:
    try:
        return tm.parse_definition(body)
    except tm.DefinitionError as exc:
        raise TemplateInvalid(f"the template is not valid: {exc}", exc.problems) from None


async def _references(conn: asyncpg.Connection, key: str, definition: tm.Definition) -> None:
    """Referenced templates exist, and no chain of references comes back to ``key``.

    :raises TemplateInvalid:"""
    wanted = tm.references(definition)
    if not wanted:
        return
    edges: dict[str, set[str]] = {key: wanted}
    seen: set[str] = set()
    todo = set(wanted)
    problems = []
    while todo:
        rows = await conn.fetch("""SELECT DISTINCT ON (handle) handle, definition FROM templates
                                   WHERE handle = ANY($1::text[])
                                   ORDER BY handle, version DESC""", sorted(todo))  # network op
        found = {r["handle"]: tm.decode_definition(r["definition"]) for r in rows}
        for ref in todo:
            if ref not in found and ref != key:
                if ref in wanted:
                    problems.append(f"the template {ref} that a reference item names does "
                                    "not exist")
                continue
        seen |= todo
        todo = set()
        for ref, d in found.items():
            if ref != key:  # the new version's references stand for the template's own
                edges[ref] = tm.references(d)
                todo |= edges[ref] - seen
    cycle = tm.find_cycle(key, edges)
    if cycle:
        problems.append("template references go round in a cycle: " + " -> ".join(cycle))
    if problems:
        raise TemplateInvalid("; ".join(problems), problems)


async def _refresh_record(tx: WriteTx, ident: Identifier) -> None:
    """Rewrite the template's own record from its versions: the newest published one, or
    while none is, the newest draft (the record then in the draft state)."""
    row = await tx.conn.fetchrow(NEWEST, ident.key) or await tx.conn.fetchrow(
        "SELECT * FROM templates WHERE handle = $1 ORDER BY version DESC LIMIT 1", ident.key)
    version = _version(row)
    text = msgspec.json.encode(version.to_json()).decode()
    state = "active" if version.state != "draft" else "draft"
    from registry.store.rows import put_system_record   # (rows imports this module)

    await put_system_record(tx, ident, [{"index": 1, "type": TEMPLATE_TYPE,
                                         "data": {"format": "string", "value": text}}], state)


async def create_version(db: Db, actor: Principal, ident: Identifier, body: Any,
                         publish: bool = False) -> tuple[Version, dict[str, Any] | None]:
    """A new draft version of the template at ``ident`` (version 1 if it is new), and
    with ``publish`` published in the same transaction (then the report, else None).

    :raises TemplateInvalid: every problem of the definition, references included.
    :raises InsufficientPermissions, PrefixNotHomed: see ownership.check_write.
    """
    definition = _parse(body)
    async with write_transaction(db) as tx:
        conn = tx.conn
        await check_write(conn, actor, [ident.key], [ident.prefix])
        record = await conn.fetchval("SELECT true FROM handles WHERE handle = $1", ident.key)
        known = await conn.fetchval("SELECT true FROM templates WHERE handle = $1 LIMIT 1",
                                    ident.key)
        if record and not known:
            raise TemplateConflict(f"{ident.spelling} is an identifier already, not a template")
        await _references(conn, ident.key, definition)
        version = await conn.fetchval(
            "SELECT coalesce(max(version), 0) + 1 FROM templates WHERE handle = $1", ident.key)
        await conn.execute("INSERT INTO templates (handle, version, definition) VALUES ($1, $2, $3)",
                           ident.key, version, msgspec.to_builtins(definition))
        await _refresh_record(tx, ident)
        await audit(conn, actor, "template_create", handle=ident.key, prefix=ident.prefix.text,
                    after={"version": version, **msgspec.to_builtins(definition)})
        report = await _publish(tx, actor, ident, version, False) if publish else None
        row = await conn.fetchrow(GET_VERSION, ident.key, version)
    return _version(row), report


async def check_existing(conn: asyncpg.Connection, key: str,
                         definition: tm.Definition) -> dict[str, Any]:
    """What the records that follow any version of the template would say of this
    definition: how many were checked, how many fail, and some of them with why."""
    checked = failing = 0
    examples: list[dict[str, Any]] = []
    async with conn.transaction(readonly=True):
        async for row in conn.cursor(
                'SELECT coalesce(spelling, handle) AS h, "values" FROM handles '
                "WHERE template = $1 ORDER BY handle LIMIT $2", key, CHECK_LIMIT):
            checked += 1
            problems = rc.check_record(row["values"], definition)
            if problems:
                failing += 1
                if len(examples) < EXAMPLES:
                    examples.append({"handle": row["h"],
                                     "errors": [p.to_json() for p in problems]})
    total = await conn.fetchval("SELECT count(*) FROM handles WHERE template = $1", key)
    return {"records": total, "checked": checked, "failing": failing, "examples": examples}


async def publish(db: Db, actor: Principal, ident: Identifier, version: int,
                  force: bool = False) -> dict[str, Any]:
    """Publish a draft version, once the records that follow the template were checked
    against it: if some would fail, only with ``force`` (they stay as they are, on their
    own versions). Returns the report.

    :raises TemplateConflict: not a draft, or records would fail and not ``force``.
    """
    async with write_transaction(db) as tx:
        await check_write(tx.conn, actor, [ident.key], [ident.prefix])
        return await _publish(tx, actor, ident, version, force)


async def _publish(tx: WriteTx, actor: Principal, ident: Identifier, version: int,
                   force: bool) -> dict[str, Any]:
    conn = tx.conn
    current = await _locked(conn, ident, version)
    if current.state != "draft":
        raise TemplateConflict(f"version {version} of {ident.spelling} is {current.state}, "
                               "not a draft")
    report = await check_existing(conn, ident.key, current.definition)
    if report["failing"] and not force:
        raise TemplateConflict(
            f"{report['failing']} of the {report['checked']} records checked would fail "
            f"version {version}; fix them, or publish with force=true (they keep their "
            "own versions)", report=report)
    await conn.execute("UPDATE templates SET state = 'published', published_at = now() "
                       "WHERE handle = $1 AND version = $2", ident.key, version)
    await _refresh_record(tx, ident)
    await audit(conn, actor, "template_publish", handle=ident.key, prefix=ident.prefix.text,
                after={"version": version, "report": {k: report[k] for k in (
                    "records", "checked", "failing")}})
    return report


async def retire(db: Db, actor: Principal, ident: Identifier, version: int) -> None:
    """Retire a version: no new record may follow it; those that do stay."""
    async with write_transaction(db) as tx:
        conn = tx.conn
        await check_write(conn, actor, [ident.key], [ident.prefix])
        current = await _locked(conn, ident, version)
        if current.state == "retired":
            return
        await conn.execute("UPDATE templates SET state = 'retired', retired_at = now() "
                           "WHERE handle = $1 AND version = $2", ident.key, version)
        await _refresh_record(tx, ident)
        await audit(conn, actor, "template_retire", handle=ident.key, prefix=ident.prefix.text,
                    before={"version": version, "state": current.state})


async def _locked(conn: asyncpg.Connection, ident: Identifier, version: int) -> Version:
    row = await conn.fetchrow(GET_VERSION + " FOR UPDATE", ident.key, version)
    if row is None:
        raise IdentifierNotFound(f"template {ident.spelling} has no version {version}")
    return _version(row)


async def get(conn: asyncpg.Connection, ident: Identifier, version: int | None,
              drafts: bool) -> Version:
    """A version (None: the newest published; with ``drafts``, else the newest draft).

    :raises IdentifierNotFound: no such template or version (drafts are not shown to
        who may not see them)."""
    if version is not None:
        row = await conn.fetchrow(GET_VERSION, ident.key, version)
    else:
        row = await conn.fetchrow(NEWEST, ident.key)
        if row is None and drafts:
            row = await conn.fetchrow(
                "SELECT * FROM templates WHERE handle = $1 ORDER BY version DESC LIMIT 1",
                ident.key)
    if row is None or (row["state"] == "draft" and not drafts):
        what = f"version {version} of template" if version else "template"
        raise IdentifierNotFound(f"no {what} {ident.spelling}")
    return _version(row)


async def versions(conn: asyncpg.Connection, ident: Identifier, drafts: bool) -> list[Version]:
    return [v for v in map(_version, await conn.fetch(VERSIONS, ident.key))
            if drafts or v.state != "draft"]


async def under(conn: asyncpg.Connection, prefix: str, drafts: bool) -> list[Version]:
    """The templates under ``prefix`` (its descendants included), each by the version a
    record would follow (the newest published; else, with ``drafts``, the newest)."""
    rows = await conn.fetch(UNDER, prefix + ".", prefix + "0", drafts)  # network op
    exact = await conn.fetch(UNDER, prefix + "/", prefix + "0", drafts)  # network op
    return [_version(r) for r in sorted({r["handle"]: r for r in [*rows, *exact]}.values(),
                                        key=lambda r: r["handle"])]


async def for_existing(conn: asyncpg.Connection, key: str, version: int) -> Version:
    """The version a record already follows (published or retired: a record keeps the
    version it was written with)."""
    row = await conn.fetchrow(GET_VERSION, key, version)  # network op
    if row is None:
        raise BadRequest(f"the record follows version {version} of template {key}, which "
                         "does not exist")
    return _version(row)


async def for_write(conn: asyncpg.Connection, text: str, version: int | None) -> Version:
    """The version a record names (None: the newest published), which must be published.

    :raises BadRequest: malformed, unknown, draft or retired (the message says which)."""
    try:
        ident = parse(text)
    except Exception:  # noqa: BLE001 - any malformed name is the client's error
        raise BadRequest(f"template {text!r} is not an identifier") from None
    if version is None:
        kept = PUBLISHED.get(ident.key)
        if kept is not None:
            return kept
    generation = PUBLISHED.generation
    row = await (conn.fetchrow(GET_VERSION, ident.key, version) if version is not None
                 else conn.fetchrow(NEWEST, ident.key))  # network op
    if row is None:
        which = f"version {version} of template" if version is not None else "published template"
        raise BadRequest(f"there is no {which} {text}")
    found = _version(row)
    if found.state != "published":
        raise BadRequest(f"version {found.version} of template {text} is {found.state}: "
                         "records may follow published versions only")
    if version is None:
        PUBLISHED.keep(ident.key, found, generation)
    return found


async def indexes_throughout(conn: asyncpg.Connection, keys: Sequence[str], type_: str) -> bool:
    """Whether every version records may follow (published or retired) of each template
    in ``keys`` indexes ``type_`` (a unique or searchable item holding string values), so
    that the code index holds every value of that type of their records."""
    rows = await conn.fetch("SELECT handle, definition FROM templates "
                            "WHERE handle = ANY($1::text[]) AND state <> 'draft'",
                            list(keys))  # network op
    if {r["handle"] for r in rows} != set(keys):
        return False
    for r in rows:
        items = [i for i in tm.decode_definition(r["definition"]).items if i.type == type_]
        if not items or not all((i.unique or i.searchable) and i.datatype != "handle"
                                for i in items):
            return False
    return True
