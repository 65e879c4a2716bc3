"""Checking a record against a template version (``registry/template_model.py``). Pure.

Each item's checks are compiled once per definition (:class:`Plan`, kept with the
definition): length limits, the data type, then the pattern (RE2, linear time). A bulk
request checks thousands of values against one plan, so the cost per value is a dict
lookup and a few comparisons (docs/records.md, benchmarks/records.py).
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import re2

from registry.template_model import DIGESTS, SYSTEM_TYPE, Definition, Item, Problem
from resolver.core.errors import InvalidIdentifier
from resolver.core.identifier import parse
from resolver.core.sharing import PERMISSIONS

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_INTEGER = re.compile(r"[-+]?[0-9]+\Z")
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")
_HEX = re.compile(r"[0-9a-fA-F]+\Z")
# a scheme (RFC 3986 §3.1) and an authority, or a scheme that needs none
_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*://[^/?#\s]|(?i:urn|mailto|tel):)")


def _text(value: dict[str, Any]) -> str | None:
    data = value["data"]
    return data["value"] if data["format"] == "string" else None


Check = Callable[[str], "str | None"]


def _numeric(item: Item) -> list[Check]:
    integer = item.datatype == "integer"
    shape, noun = (_INTEGER, "an integer") if integer else (_DECIMAL, "a number")
    low = None if item.minimum is None else decimal.Decimal(str(item.minimum))
    high = None if item.maximum is None else decimal.Decimal(str(item.maximum))
    wrong = f"must be {'an integer' if integer else 'a decimal number'}"

    def number(text: str) -> str | None:
        if not shape.match(text):
            return wrong
        if low is None and high is None:
            return None
        value = decimal.Decimal(text)
        if low is not None and value < low:
            return f"must be {noun} ≥ {item.minimum}"
        if high is not None and value > high:
            return f"must be {noun} ≤ {item.maximum}"
        return None
    return [number]


def _date(item: Item) -> list[Check]:
    low = None if item.minimum is None else dt.date.fromisoformat(str(item.minimum))
    high = None if item.maximum is None else dt.date.fromisoformat(str(item.maximum))

    def date(text: str) -> str | None:
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            return "must be a date YYYY-MM-DD"
        if len(text) != 10:
            return "must be a date YYYY-MM-DD"
        if low is not None and day < low:
            return f"must be on or after {item.minimum}"
        if high is not None and day > high:
            return f"must be on or before {item.maximum}"
        return None
    return [date]


def _datetime(text: str) -> str | None:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return "must be a date-time, RFC 3339 (2026-12-01T08:00:00Z)"
    if when.tzinfo is None or "T" not in text:
        return "must be a date-time with its offset, RFC 3339 (2026-12-01T08:00:00Z)"
    return None


def _reference(text: str) -> str | None:
    try:
        parse(text)
    except InvalidIdentifier as exc:
        return f"must be an identifier PREFIX/SUFFIX ({exc.message})"
    return None


def _kind(item: Item) -> list[Check]:
    """The data type's checks of one item."""
    kind = item.datatype
    if kind in ("integer", "decimal"):
        return _numeric(item)
    if kind == "date":
        return _date(item)
    if kind == "datetime":
        return [_datetime]
    if kind == "reference":
        return [_reference]
    if kind == "boolean":
        return [lambda text: None if text in ("true", "false") else "must be true or false"]
    if kind == "enum":
        allowed, said = frozenset(item.values or ()), "must be one of " + ", ".join(item.values or ())
        return [lambda text: None if text in allowed else said]
    if kind == "url":
        return [lambda text: None if _URL.match(text) else
                "must be a URL with a scheme (https://...)"]
    if kind == "email":
        return [lambda text: None if _EMAIL.match(text) else "must be an e-mail address"]
    if kind == "digest":
        size = DIGESTS[item.digest or "sha256"]
        said = f"must be a {item.digest} digest: {size} hexadecimal digits"
        return [lambda text: None if len(text) == size and _HEX.match(text) else said]
    return []


def _pattern(pattern: str) -> Check:
    """A whole-text match of an RE2 pattern, on UTF-8 bytes (the binding's str path maps
    offsets in Python: 2.5x the cost). The binding's match object is not needed: where
    the compiled RE2 object is reachable (google-re2 1.1), it is asked directly (a
    third of the cost again); tests/registry/test_templates.py compares both ways."""
    rx, said = re2.compile(pattern), f"must match the pattern {pattern}"
    raw, anchors = getattr(rx, "_regexp", None), getattr(re2, "_Anchor", None)
    if raw is None or not hasattr(raw, "Match") or anchors is None:
        return lambda text: None if rx.fullmatch(text.encode()) is not None else said
    both = anchors.ANCHOR_BOTH

    def match(text: str) -> str | None:
        data = text.encode()
        return None if raw.Match(both, data, 0, len(data))[0][0] != -1 else said
    return match


def _anything(text: str) -> str | None:
    return None


def checker(item: Item) -> Check:
    """What is wrong with one value's text for ``item`` (None: nothing), compiled once:
    its length limits, its data type, then its pattern."""
    checks: list[Check] = []
    low, high = item.min_length, item.max_length
    if low is not None:
        checks.append(lambda text: None if len(text) >= low else
                      f"must be at least {low} characters long")
    if high is not None:
        checks.append(lambda text: None if len(text) <= high else
                      f"must be at most {high} characters long")
    checks += _kind(item)
    if item.pattern is not None:
        checks.append(_pattern(item.pattern))
    if len(checks) <= 1:
        return checks[0] if checks else _anything

    def every(text: str) -> str | None:
        for check in checks:
            wrong = check(text)
            if wrong is not None:
                return wrong
        return None
    return every


class Plan:
    """What checking records against one definition needs, computed once: for each item
    (by upper-cased type) the item, its compiled check, its defaults (TTL, permissions,
    whether it is shared) and whether it is indexed; the required items; the items
    that are indexed or reference other identifiers."""

    items: dict[str, tuple[Item, Check | None, int | None, str, bool, bool]]
    required: list[tuple[str, Item]]
    __slots__ = ("items", "required", "indexed", "references")

    def __init__(self, definition: Definition) -> None:
        self.items = {
            i.type.upper(): (i, None if i.datatype == "handle" else checker(i), i.ttl,
                             PERMISSIONS[i.classification], i.classification == "shared",
                             i.unique or i.searchable)
            for i in definition.items}
        self.required = [(key, i) for key, (i, *_) in self.items.items() if i.required]
        self.indexed = {key: i for key, (i, *_) in self.items.items() if i.unique or i.searchable}
        self.references = {key: i for key, (i, *_) in self.items.items()
                           if i.datatype == "reference"}


def plan(definition: Definition) -> Plan:
    """The definition's :class:`Plan`, made on first use and kept with it."""
    found: Plan | None = definition.__dict__.get("plan")
    if found is None:
        found = definition.__dict__["plan"] = Plan(definition)
    return found


Code = tuple[str, str, bool, bool]   # (type, value, unique, public) of a value to index
# an indexed value's longest: the code index's key holds it twice (folded and as written,
# migration 0010) with its type, prefix and identifier, within a B-tree entry's 2,704 bytes
MAX_CODE_BYTES = 1000
_UNSENT: dict[str, Any] = {}
_PUBLIC = PERMISSIONS["public"]


def check_record(values: Sequence[dict[str, Any]], definition: Definition) -> list[Problem]:
    """Every problem of a record (values in the stored form) against a template version:
    values of types the template does not have, missing required items, several values
    of a single item, and each value's data. References are checked for syntax here;
    whether they exist is the caller's business (:func:`reference_checks`)."""
    return conform_values(values, None, definition)[0]


def conform_values(values: Sequence[dict[str, Any]], sent: Sequence[object] | None,
                   definition: Definition) -> tuple[list[Problem], list[Code]]:
    """:func:`check_record`, and the codes to index (:func:`indexed`), in one pass over the
    values; with ``sent`` (the entries as the write sent them: usually ``values`` one
    for one, else matched by index), each value first gets its item's TTL and
    classification where the write gave none (values of other types: public)."""
    compiled = plan(definition)
    items = compiled.items
    problems: list[Problem] = []
    codes: list[Code] = []
    seen: set[str] = set()
    by_index: dict[str, Any] | None = None
    positional = sent is not None and len(sent) == len(values)
    for n, v in enumerate(values):
        key = v["type"].upper()
        found = items.get(key)
        if sent is not None:
            e = sent[n] if positional else None
            if e.__class__ is not dict or e.get("index") != v["index"]:
                if by_index is None:
                    by_index = {str(x["index"]): x for x in sent if isinstance(x, dict)
                                and isinstance(x.get("index"), (int, str))}
                e = by_index.get(str(v["index"]), _UNSENT)
            if found is None:
                if "permissions" not in e and "classification" not in e:
                    v["permissions"] = _PUBLIC
            else:
                if found[2] is not None and "ttl" not in e:
                    v["ttl"] = found[2]
                if "permissions" not in e and "classification" not in e:
                    v["permissions"] = found[3]
                    if found[4]:
                        v["classification"] = "shared"
        if found is None:
            if not SYSTEM_TYPE.match(key):
                problems.append(Problem(v["index"], v["type"], "is not an item of the template"))
            continue
        item, check = found[0], found[1]
        if key in seen:
            if not item.many:
                problems.append(Problem(v["index"], v["type"], "may have one value only"))
        else:
            seen.add(key)
        data = v["data"]
        if found[5] and data["format"] == "string":
            if len(data["value"].encode("utf-8", "surrogatepass")) > MAX_CODE_BYTES:
                problems.append(Problem(v["index"], v["type"], f"is indexed (unique or "
                                        f"searchable) and may be at most {MAX_CODE_BYTES} bytes"))
            else:
                codes.append((item.type, data["value"], item.unique,
                              v["permissions"][2] == "1"))
        if check is None:
            continue  # a "handle" item: any Handle format, the value's own checks apply
        if data["format"] != "string":
            problems.append(Problem(v["index"], v["type"],
                                    f"must be string data (a {item.datatype})"))
            continue
        wrong = check(data["value"])
        if wrong is not None:
            problems.append(Problem(v["index"], v["type"], wrong))
    for key, item in compiled.required:
        if key not in seen:
            problems.append(Problem(None, item.type, "is required"))
    return problems, codes


def _texts(values: Iterable[dict[str, Any]],
           items: dict[str, Item]) -> Iterator[tuple[dict[str, Any], Item, str]]:
    """(value, its item, its text) of the string values whose type is one of ``items``."""
    for v in values:
        item = items.get(v["type"].upper())
        text = _text(v) if item is not None else None
        if item is not None and text is not None:
            yield v, item, text


def reference_checks(values: Sequence[dict[str, Any]],
                     definition: Definition) -> list[tuple[dict[str, Any], str, str | None]]:
    """(value, referenced identifier key, template key it must follow or None) for the
    reference values whose target must exist."""
    references = plan(definition).references
    if not references:
        return []
    out = []
    for v, item, text in _texts(values, references):
        try:
            target = parse(text).key
        except InvalidIdentifier:
            continue
        out.append((v, target, parse(item.template).key if item.template else None))
    return out


def indexed(values: Iterable[dict[str, Any]], definition: Definition) -> list[Code]:
    """(type, value, unique, public) of the values to index for lookup by code: those of
    unique and searchable items."""
    items = plan(definition).indexed
    if not items:
        return []
    return [(item.type, text, item.unique, v["permissions"][2] == "1")
            for v, item, text in _texts(values, items)]
