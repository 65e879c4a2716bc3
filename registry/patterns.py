"""Template patterns that Python's own ``re`` may run: the deterministic ones. Pure.

A template's pattern is input, so it is matched by RE2 (linear time whatever the
pattern). Calling RE2 through its binding costs about 1.2 µs a value on this project's
machines, six times ``re.fullmatch`` on a short code; a bulk request checks millions of
values, most against patterns like ``FA-[0-9]{8}``.

A backtracking engine is slow only when a text can be matched in more than one way.
:func:`deterministic` accepts the patterns where that cannot happen and gives them to
``re``; every other pattern stays with RE2:

* the pattern is a plain sequence of atoms: a literal character, an escaped punctuation
  character, ``\\d``, ``.``, or a bracket class of characters and ranges (not negated,
  no escapes but ``\\d`` and escaped punctuation): no groups, alternation, anchors,
  flags, Unicode classes or lazy and possessive quantifiers;
* each atom may repeat (``? * + {m} {m,} {m,n}``); where the count may vary, no
  character the atom takes may start what can follow it: the atoms after it, up to
  and including the first one that must occur at least once.

Then at every character at most one atom can take it, so the match is found in one
pass and a failure is known after one step back per atom: linear time in ``re`` too.
The meaning is the same in both engines for these atoms (``\\d`` is written
``[0-9]``, RE2's ASCII digit; ``.`` is any character but a newline in both);
tests/registry/test_patterns.py compares the two on generated texts.
"""

from __future__ import annotations

import re

Ranges = list[tuple[int, int]]   # inclusive code point ranges
_ANY: Ranges = [(0, 9), (11, 0x10FFFF)]
_DIGIT: Ranges = [(48, 57)]
_SPECIAL = set("\\^$.|?*+()[]{}")
_PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ ")
_QUANTITY = re.compile(r"\{([0-9]{1,4})(?:(,)([0-9]{1,4})?)?\}")
MAX_REPEAT = 1000                 # RE2's limit too


class _NotSimple(Exception):
    pass


def _escape(text: str, at: int) -> tuple[Ranges, int]:
    """The atom ``\\X`` at ``at`` (the backslash) and where it ends."""
    if at + 1 >= len(text):
        raise _NotSimple
    c = text[at + 1]
    if c == "d":
        return _DIGIT, at + 2
    if c in _PUNCTUATION:
        return [(ord(c), ord(c))], at + 2
    raise _NotSimple          # \w \s \b \p{..} \x.. \Q and the rest: RE2's business


def _bracket(text: str, at: int) -> tuple[Ranges, int]:
    """The class ``[...]`` at ``at`` and where it ends."""
    n = at + 1
    if n < len(text) and text[n] == "^":
        raise _NotSimple
    chars: Ranges = []
    first = True
    while True:
        if n >= len(text):
            raise _NotSimple
        c = text[n]
        if c == "]" and not first:
            return chars, n + 1
        first = False
        if c == "[":
            raise _NotSimple      # [[:alpha:]] and the like
        if c == "\\":
            got, n = _escape(text, n)
            if got is _DIGIT:
                chars += got
                continue
            low = got[0][0]
        else:
            low, n = ord(c), n + 1
        if n + 1 < len(text) and text[n] == "-" and text[n + 1] != "]":
            hi_c = text[n + 1]
            if hi_c in "\\[":
                raise _NotSimple
            if ord(hi_c) < low:
                raise _NotSimple
            chars.append((low, ord(hi_c)))
            n += 2
        else:
            chars.append((low, low))


def _quantifier(text: str, at: int) -> tuple[int, int | None, int]:
    """(least, most or None: unbounded, where it ends) of the quantifier at ``at``."""
    if at >= len(text):
        return 1, 1, at
    c = text[at]
    if c in "?*+":
        low, high, end = {"?": (0, 1), "*": (0, None), "+": (1, None)}[c] + (at + 1,)
    elif c == "{":
        m = _QUANTITY.match(text, at)
        if m is None:
            raise _NotSimple
        low = int(m.group(1))
        high = low if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
        end = m.end()
        if low > MAX_REPEAT or (high is not None and (high > MAX_REPEAT or high < low)):
            raise _NotSimple
    else:
        return 1, 1, at
    if end < len(text) and text[end] in "?+*{":
        raise _NotSimple          # lazy, possessive or a quantifier repeated
    return low, high, end


def _atoms(pattern: str) -> list[tuple[Ranges, int, int | None]]:
    atoms = []
    n = 0
    while n < len(pattern):
        c = pattern[n]
        if c == "\\":
            chars, n = _escape(pattern, n)
        elif c == "[":
            chars, n = _bracket(pattern, n)
        elif c == ".":
            chars, n = _ANY, n + 1
        elif c in _SPECIAL:
            raise _NotSimple
        else:
            chars, n = [(ord(c), ord(c))], n + 1
        low, high, n = _quantifier(pattern, n)
        atoms.append((chars, low, high))
    return atoms


def _meet(a: Ranges, b: Ranges) -> bool:
    return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in a for lo2, hi2 in b)


def _written(chars: Ranges) -> str:
    return "[" + "".join(re.escape(chr(lo)) if lo == hi else
                         f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
                         for lo, hi in chars) + "]"


def deterministic(pattern: str) -> re.Pattern[str] | None:
    """The pattern compiled for ``re`` when it is a deterministic sequence of atoms (see
    the module docstring); None when RE2 must match it."""
    try:
        atoms = _atoms(pattern)
    except _NotSimple:
        return None
    for n, (chars, low, high) in enumerate(atoms):
        if high == low:
            continue
        for following, at_least, _ in atoms[n + 1:]:
            if _meet(chars, following):
                return None
            if at_least > 0:
                break
    written = "".join(_written(chars) + ("" if (low, high) == (1, 1) else
                                         f"{{{low},{'' if high is None else high}}}")
                      for chars, low, high in atoms)
    return re.compile(written)
