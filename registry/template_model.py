"""Metadata templates: what an identifier of a kind must hold. Pure (no I/O).

A template (idis-facts §1: the templates of China's enterprise nodes, gone further) is a
list of items; each item names a value type (``order.quantity``) and what its values
must be: a data type, required or not, one or many, unique within the prefix, length or
range limits, a pattern (RE2: linear time, so a template, which is input too, cannot
make a write take exponential time), a default TTL and classification, a description.

:func:`parse_definition` checks a template as submitted (every problem at once);
``registry/record_check.py`` checks a record's values against a version of it, returning
every problem with the value's index and type; ``registry/template_schema.py`` describes
the PUT body a record of the template takes, as JSON Schema 2020-12.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import re2

from resolver.core.errors import InvalidIdentifier
from resolver.core.identifier import parse

DataType = Literal["string", "integer", "decimal", "boolean", "date", "datetime", "enum",
                   "url", "email", "reference", "digest", "handle"]
Classification = Literal["public", "shared", "private"]
DIGESTS = {"sha256": 64, "sha384": 96, "sha512": 128, "sha1": 40, "md5": 32, "sm3": 64}
MAX_ITEMS = 500
# value types of the Handle System itself, always allowed beside a template's items
SYSTEM_TYPE = re.compile(r"HS_[A-Z0-9_.]+\Z|10320/loc\Z")


class Item(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One item of a template (the JSON a client sends, field for field)."""

    type: str
    datatype: DataType = "string"
    required: bool = False
    many: bool = False
    unique: bool = False
    searchable: bool = False
    min_length: int | None = None
    max_length: int | None = None
    minimum: str | int | float | None = None
    maximum: str | int | float | None = None
    pattern: str | None = None
    values: list[str] | None = None          # enum
    template: str | None = None              # reference: to instances of this template
    digest: str | None = None                # digest: the algorithm
    ttl: int | None = None
    classification: Classification = "public"
    description: str = ""


class Definition(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, dict=True):
    """A template version as submitted: ``{"description", "items": [...]}``. Its
    ``record_check.Plan`` (what checking a record needs, compiled once) is kept beside it."""

    items: list[Item]
    description: str = ""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a record: the value's index (None: the record as a whole),
    its type, and what is wrong."""

    index: int | None
    type: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.index is not None:
            out["index"] = self.index
        if self.type is not None:
            out["type"] = self.type
        out["message"] = self.message
        return out


class DefinitionError(ValueError):
    """A template that cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def decode_definition(body: bytes | Any) -> Definition:
    """A definition from JSON bytes or an already decoded object.

    :raises DefinitionError: not a definition (unknown fields, wrong types, bad values)."""
    try:
        if isinstance(body, (bytes, str)):
            return msgspec.json.decode(body, type=Definition)
        return msgspec.convert(body, type=Definition)
    except msgspec.ValidationError as exc:
        raise DefinitionError([f"not a template definition: {exc}"]) from None


def _number(item: Item, which: str, value: object) -> decimal.Decimal | dt.date | None:
    if value is None:
        return None
    if item.datatype in ("integer", "decimal"):
        try:
            return decimal.Decimal(str(value))
        except decimal.InvalidOperation:
            raise ValueError(f"{which} {value!r} is not a number") from None
    if item.datatype == "date":
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"{which} {value!r} is not a date YYYY-MM-DD") from None
    raise ValueError(f"{which} applies to integer, decimal and date items only")


def parse_definition(body: bytes | Any) -> Definition:
    """The definition, checked whole: every problem at once.

    :raises DefinitionError: contradictory limits, invalid patterns, items of one type
        twice, options that do not fit the data type, too many items.
    """
    definition = decode_definition(body)
    problems: list[str] = []
    seen: set[str] = set()
    if not definition.items:
        problems.append("a template needs at least one item")
    if len(definition.items) > MAX_ITEMS:
        problems.append(f"at most {MAX_ITEMS} items, got {len(definition.items)}")
    for n, item in enumerate(definition.items):
        where = f"item {n} ({item.type})"
        if not item.type or len(item.type) > 255 or any(c.isspace() for c in item.type):
            problems.append(f"{where}: type must be 1-255 characters without spaces")
        if item.type.upper() in seen:
            problems.append(f"{where}: type {item.type} appears twice")
        seen.add(item.type.upper())
        if SYSTEM_TYPE.match(item.type.upper()):
            problems.append(f"{where}: {item.type} is a Handle System type, not a template item")
        for name in ("min_length", "max_length", "ttl"):
            value = getattr(item, name)
            if value is not None and value < 0:
                problems.append(f"{where}: {name} must not be negative")
        if item.min_length is not None and item.max_length is not None \
                and item.min_length > item.max_length:
            problems.append(f"{where}: min_length {item.min_length} is over max_length "
                            f"{item.max_length}")
        try:
            low, high = _number(item, "minimum", item.minimum), _number(item, "maximum",
                                                                        item.maximum)
            if low is not None and high is not None and low > high:  # type: ignore[operator]
                problems.append(f"{where}: minimum {item.minimum} is over maximum {item.maximum}")
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
        if item.pattern is not None:
            try:
                re2.compile(item.pattern)
            except re2.error as exc:
                problems.append(f"{where}: pattern is not a valid (RE2) expression: {exc}")
        if item.datatype == "enum" and not item.values:
            problems.append(f"{where}: an enum item needs its values")
        if item.values is not None and item.datatype != "enum":
            problems.append(f"{where}: values applies to enum items only")
        if item.template is not None:
            if item.datatype != "reference":
                problems.append(f"{where}: template applies to reference items only")
            else:
                try:
                    parse(item.template)
                except InvalidIdentifier as exc:
                    problems.append(f"{where}: template {item.template!r}: {exc.message}")
        if item.datatype == "digest" and item.digest not in DIGESTS:
            problems.append(f"{where}: a digest item needs its algorithm, one of "
                            f"{', '.join(sorted(DIGESTS))}")
        if item.digest is not None and item.datatype != "digest":
            problems.append(f"{where}: digest applies to digest items only")
        if item.unique and item.many:
            problems.append(f"{where}: a unique item cannot have many values")
    if problems:
        raise DefinitionError(problems)
    return definition


def references(definition: Definition) -> set[str]:
    """The templates (keys) this one's reference items point to."""
    return {parse(i.template).key for i in definition.items if i.template}


def find_cycle(start: str, edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of template references through ``start`` (keys), if any."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in path:
                stack.append((nxt, [*path, nxt]))
    return None
