"""What a write of a typed record must satisfy, decided before anything is written.

For each record (one PUT, or every record of a bulk request): the template it follows
(the one the write names, else the record's own, else the one its prefix requires), the
template's defaults (TTL, classification as permission bits) for values that did not say,
every problem of the values against the template version, references that must exist
(and follow a given template), and the codes to index for lookup by code, which must not
be taken. Nothing here writes; ``registry/store`` writes what it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import asyncpg

from registry import record_check as rc
from registry import template_model as tm
from registry import templates
from registry.store.codes import fold
from resolver.core.errors import RecordInvalid
from resolver.core.identifier import Identifier

Stored = dict[str, Any]
Code = tuple[str, str, str, str, bool, bool]  # (prefix, type, value, handle, unique, public)



class Requested(NamedTuple):
    """What a write says beyond the values: the template (``""``: none; None: keep the
    record's own or the prefix's), its version (None: the newest published), and the
    entries as sent (to tell a default TTL or permission from one the client gave).
    (A named tuple: a bulk request makes one per record, and a frozen dataclass costs
    five times as much to make.)"""

    template: str | None = None
    version: int | None = None
    raw: Sequence[object] = ()


@dataclass(slots=True)
class Conformed:
    values: list[Stored]
    template: str | None = None
    version: int | None = None
    codes: list[Code] = field(default_factory=list)
    problems: list[tm.Problem] = field(default_factory=list)
    definition: tm.Definition | None = None


Known = dict[tuple[str, int | None, bool], templates.Version]
Choice = tuple[str, int | None, bool]   # (template, version or None: newest, already followed)


def choose(ident: Identifier, requested: Requested, own: tuple[str | None, int | None],
           required: str | None) -> Choice | None:
    """Which template version the write must follow (None: none).

    ``own`` is the template and version the record follows now (None: new or untyped);
    ``required`` the template its prefix requires.

    :raises RecordInvalid: the prefix requires another template (or one, and none is named).
    """
    name = requested.template if requested.template is not None else own[0] or required
    if required and name != required:
        raise RecordInvalid(f"identifiers under {ident.prefix.text} must follow template "
                            f"{required}", problems=[tm.Problem(None, None,
                                                                f"must follow {required}")])
    if not name:
        return None
    version = requested.version
    if version is None and requested.template is None and own[0] == name:
        version = own[1]                     # a record keeps its version unless told
    return name, version, version is not None and own == (name, version)


async def version_of(conn: asyncpg.Connection, choice: Choice,
                     known: Known | None = None) -> templates.Version:
    """The template version of a :func:`choose` answer (kept in ``known``, when given, for
    the other records of a request).

    :raises BadRequest: the template named is unknown, a draft or retired."""
    found = known.get(choice) if known is not None else None
    if found is None:
        name, version, existing = choice
        found = await (templates.for_existing(conn, name, version) if existing and version
                       else templates.for_write(conn, name, version))  # network op
        if known is not None:
            known[choice] = found
    return found


def conform_to(ident: Identifier, values: list[Stored], requested: Requested,
               found: templates.Version) -> Conformed:
    """The record as it will be written against ``found``, with its problems and codes."""
    out = Conformed(values, found.handle, found.version, definition=found.definition)
    out.problems, codes = rc.conform_values(values, requested.raw, found.definition)
    if codes:
        prefix, key = ident.prefix.text, ident.key
        # (a searchable item's value given twice is one code: the index holds it once)
        out.codes = list(dict.fromkeys((prefix, t, v, key, unique, public)
                                       for t, v, unique, public in codes))
    return out


async def conform(conn: asyncpg.Connection, ident: Identifier, values: list[Stored],
                  requested: Requested, own: tuple[str | None, int | None] = (None, None),
                  required: str | None = None, known: Known | None = None) -> Conformed:
    """The record as it will be written, or every problem at once (:func:`choose`,
    :func:`version_of`, :func:`conform_to`).

    :raises RecordInvalid: with the problems (index, type, message), nothing written.
    :raises BadRequest: the template named is unknown, a draft or retired.
    """
    choice = choose(ident, requested, own, required)
    if choice is None:
        return Conformed(values)
    return conform_to(ident, values, requested, await version_of(conn, choice, known))


async def check_references(conn: asyncpg.Connection, records: Sequence[Conformed],
                           within: dict[str, str | None] | None = None) -> None:
    """Reference values must name identifiers that exist (here, or in the same bulk
    request: ``within`` maps their keys to their templates), following the template the
    item names. Adds to each record's problems."""
    wanted: dict[str, list[tuple[Conformed, Stored, str | None]]] = {}
    for rec in records:
        if rec.definition is None:
            continue
        for value, target, template in rc.reference_checks(rec.values, rec.definition):
            wanted.setdefault(target, []).append((rec, value, template))
    if not wanted:
        return
    rows = await conn.fetch("SELECT handle, template FROM handles WHERE handle = ANY($1::text[]) "
                            "AND state <> 'draft'", list(wanted))  # network op
    known: dict[str, str | None] = {r["handle"]: r["template"] for r in rows}
    known.update(within or {})
    for target, uses in wanted.items():
        for rec, value, template in uses:
            if target not in known:
                rec.problems.append(tm.Problem(value["index"], value["type"],
                                               f"names {target}, which does not exist"))
            elif template is not None and known[target] != template:
                rec.problems.append(tm.Problem(value["index"], value["type"],
                                               f"names {target}, which does not follow "
                                               f"template {template}"))


async def check_codes(conn: asyncpg.Connection, records: Sequence[Conformed],
                      stored: bool = True, others: str = "of this request") -> None:
    """A unique item's value may be held by one identifier of a prefix: not by another
    one stored (``stored``: asked of the database here; otherwise the caller relies on
    the unique index and asks only when it refuses), nor by another record of the same
    request (``others`` says what they are, in the message). Adds to the problems."""
    mine: dict[tuple[str, str, str], str] = {}
    holders: dict[str, Conformed] = {}
    for rec in records:
        for prefix, type_, value, handle, unique, _ in rec.codes:
            if not unique:
                continue
            holders[handle] = rec
            other = mine.setdefault((prefix, type_, value), handle)
            if other != handle:
                rec.problems.append(_taken(rec, type_, value, f"{other} {others}",
                                           "too"))
    if not mine or not stored:
        return
    rows = await conn.fetch(
        f"""SELECT c.prefix, c.type, c.value, c.handle FROM codes c
           JOIN unnest($1::text[], $2::text[], $3::text[]) AS w(prefix, type, value)
             ON c.type = w.type AND {fold('c.value')} = {fold('w.value')}
            AND c.prefix = w.prefix AND c.value = w.value
           WHERE c.is_unique""",
        *map(list, zip(*mine)))  # network op
    for row in rows:
        holder = mine[(row["prefix"], row["type"], row["value"])]
        if row["handle"] != holder:
            rec = holders[holder]
            rec.problems.append(_taken(rec, row["type"], row["value"], row["handle"], "already"))


def _taken(rec: Conformed, type_: str, value: str, holder: str, when: str) -> tm.Problem:
    index = next((v["index"] for v in rec.values
                  if v["type"].upper() == type_.upper() and v["data"].get("value") == value), None)
    return tm.Problem(index, type_, f"{value!r} is unique within the prefix and {holder} "
                                    f"has it {when}")


def raise_problems(rec: Conformed) -> None:
    """:raises RecordInvalid: when the record has problems."""
    if rec.problems:
        raise RecordInvalid(f"the record does not conform to template {rec.template} "
                            f"version {rec.version}: {len(rec.problems)} problem(s)",
                            problems=rec.problems)
