"""Checking a record against a template version (``registry/template_model.py``). Pure.

Each item's checks are compiled once per definition (:class:`Plan`, kept with the
definition): length limits, the data type, then the pattern (RE2, linear time). A bulk
request checks thousands of values against one plan, so the cost per value is a dict
lookup and a few comparisons (docs/records.md, benchmarks/records.py).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import re2

from registry.patterns import deterministic
from registry.template_model import DIGESTS, SYSTEM_TYPE, Definition, Item, Problem
from resolver.core.errors import InvalidIdentifier
from resolver.core.identifier import parse
from resolver.core.record import DEFAULT_PERMISSIONS
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

    # a float comparison settles a value clearly inside the limits (float parsing errs
    # by far less than the margin); only values near a limit are compared exactly
    low_f = -math.inf if low is None else float(low) + abs(float(low)) * 1e-9 + 1e-9
    high_f = math.inf if high is None else float(high) - abs(float(high)) * 1e-9 - 1e-9

    def number(text: str) -> str | None:
        if not shape.match(text):
            return wrong
        if low is None and high is None:
            return None
        rough = float(text)
        if low_f < rough < high_f:
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
    """A whole-text match of a pattern: by ``re`` when it is deterministic
    (``registry/patterns.py``); else by RE2, on UTF-8 bytes (the binding's str path maps
    offsets in Python: 2.5x the cost). The binding's match object is not needed: where
    the compiled RE2 object is reachable (google-re2 1.1), it is asked directly (a
    third of the cost again); tests/registry/test_templates.py compares both ways."""
    said = f"must match the pattern {pattern}"
    simple = deterministic(pattern)   # one way to match at most: re is linear too
    if simple is not None:
        whole = simple.fullmatch
        return lambda text: None if whole(text) is not None else said
    rx = re2.compile(pattern)
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
    """What checking records against one definition needs, computed once: each item's
    slot (:data:`Slot`), found by its type as declared and upper-cased (value types match
    ignoring case; the declared spelling is the usual one and saves folding), the
    required items, the items that are indexed or reference other identifiers."""

    __slots__ = ("defaults", "indexed", "references", "required", "slots")

    def __init__(self, definition: Definition) -> None:
        slots = [_slot(i) for i in definition.items]
        # whether any default differs from what a value that says nothing has already
        # (resolver/core/record.py: TTL 86400, permissions 1110, public): else applying
        # the defaults is skipped
        self.defaults = _PUBLIC != DEFAULT_PERMISSIONS or any(
            s[3] is not None or s[4] != DEFAULT_PERMISSIONS or s[6] for s in slots)
        self.slots = {s[0]: s for s in slots} | {s[1].type: s for s in slots}
        self.required = [(s[0], s[1]) for s in slots if s[1].required]   # (key, item)
        self.indexed = {s[0]: s[1] for s in slots if s[5]}
        self.references = {s[0]: s[1] for s in slots if s[1].datatype == "reference"}


# one item as checking needs it (a tuple: the loop over a bulk request's values unpacks
# it in one step): its key (upper-cased type), the item, its compiled check (None: a
# "handle" item, any Handle format), default TTL and permissions, whether it is indexed,
# shared, or may have many values
Slot = tuple[str, Item, "Check | None", "int | None", str, bool, bool, bool]


def _slot(item: Item) -> Slot:
    return (item.type.upper(), item, None if item.datatype == "handle" else checker(item),
            item.ttl, PERMISSIONS[item.classification], item.unique or item.searchable,
            item.classification == "shared", item.many)


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
_PUBLIC = PERMISSIONS["public"]


def check_record(values: Sequence[dict[str, Any]], definition: Definition) -> list[Problem]:
    """Every problem of a record (values in the stored form) against a template version:
    values of types the template does not have, missing required items, several values
    of a single item, and each value's data. References are checked for syntax here;
    whether they exist is the caller's business (:func:`reference_checks`)."""
    return conform_values(values, None, definition)[0]


def _sent_as(values: Sequence[dict[str, Any]], sent: Sequence[object]) -> Sequence[Any]:
    """The entry each value was sent as, matched by position where the indexes agree,
    else by index (None: a value the write did not send, such as the record's other
    values when it adds one)."""
    if len(sent) == len(values):
        n = 0
        for e in sent:
            if e.__class__ is not dict or e.get("index") != values[n]["index"]:
                break
            n += 1
        else:
            return sent
    by_index = {str(x["index"]): x for x in sent
                if isinstance(x, dict) and isinstance(x.get("index"), (int, str))}
    return [by_index.get(str(v["index"])) for v in values]


def conform_values(values: Sequence[dict[str, Any]], sent: Sequence[object] | None,
                   definition: Definition) -> tuple[list[Problem], list[Code]]:
    """:func:`check_record`, and the codes to index (:func:`indexed`), in one pass over the
    values; with ``sent`` (the entries as the write sent them), each value sent first
    gets its item's TTL and classification where its entry gave none (values of other
    types: public). Values the write did not send keep theirs: they got them when they
    were written, and a private value stays private when another one is added. A bulk
    request runs this for every value it holds: the loop is kept plain."""
    compiled = plan(definition)
    slots = compiled.slots
    problems: list[Problem] = []
    codes: list[Code] = []
    seen: set[str] = set()
    entries = _sent_as(values, sent) if sent and compiled.defaults else None
    n = -1
    for v in values:
        n += 1
        type_ = v["type"]
        slot = slots.get(type_) or slots.get(type_.upper())
        if slot is None:
            if entries is not None:
                e = entries[n]
                if e is not None and "permissions" not in e and "classification" not in e:
                    v["permissions"] = _PUBLIC
            if not SYSTEM_TYPE.match(type_.upper()):
                problems.append(Problem(v["index"], type_, "is not an item of the template"))
            continue
        key, item, check, ttl, permissions, indexed, shared, many = slot
        if entries is not None and (e := entries[n]) is not None:
            if ttl is not None and "ttl" not in e:
                v["ttl"] = ttl
            if "permissions" not in e and "classification" not in e:
                v["permissions"] = permissions
                if shared:
                    v["classification"] = "shared"
        if key not in seen:
            seen.add(key)
        elif not many:
            problems.append(Problem(v["index"], type_, "may have one value only"))
        data = v["data"]
        if data["format"] != "string":
            if check is not None:
                problems.append(Problem(v["index"], type_,
                                        f"must be string data (a {item.datatype})"))
            continue                # a "handle" item: any Handle format, its own checks
        text = data["value"]
        if indexed:
            if len(text.encode("utf-8", "surrogatepass")) > MAX_CODE_BYTES:
                problems.append(Problem(v["index"], type_, f"is indexed (unique or "
                                        f"searchable) and may be at most {MAX_CODE_BYTES} bytes"))
            else:
                codes.append((item.type, text, item.unique, v["permissions"][2] == "1"))
        if check is not None:
            wrong = check(text)
            if wrong is not None:
                problems.append(Problem(v["index"], type_, wrong))
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
