"""Identifier and prefix value types.

An identifier is ``PREFIX/SUFFIX``, split at the first ``/`` (Handle TM §1.1).
The prefix is dot-separated segments; its parent drops the last segment
(``88.100.7`` → ``88.100`` → ``88``). Suffixes are UTF-8 and may themselves contain
``/``.

Case, as the Handle.Net server does by default (``case_sensitive = no``, "highly
recommended" by its manual, TM §1.1, §5.5): identifiers compare case-insensitively for
ASCII letters only, no Unicode folding. An identifier's ``key`` (what storage, the
cache and invalidations use) is its prefix upper-cased and its suffix with ASCII
letters upper-cased; its ``spelling`` keeps the suffix as written (what a record is
listed as). A database may instead be case-sensitive for suffixes (the prefix always
folds): :func:`set_case_sensitive`, called once at start-up with the database's mode.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from resolver.core.errors import InvalidIdentifier, InvalidPrefix

MAX_IDENTIFIER_BYTES = 2048  # Handle Common.MAX_HANDLE_LENGTH
MAX_PREFIX_BYTES = 255
MAX_SEGMENT_BYTES = 64
MAX_SEGMENTS = 16

_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+\Z")
# C0 controls, DEL and C1 controls; also the Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_case_sensitive = False


def set_case_sensitive(flag: bool) -> None:  # (for identifiers parsed from then on)
    """The node's mode for suffixes (the database's, read at start-up)."""
    global _case_sensitive
    _case_sensitive = flag


def case_sensitive() -> bool:
    return _case_sensitive


def fold(text: str) -> str:
    """ASCII letters upper-cased, everything else as is (no Unicode case folding)."""
    return text.upper() if text.isascii() else text.translate(_ASCII_UPPER)


def _shown(text: str, limit: int = 80) -> str:
    """Repr of user text, shortened so that error messages stay readable."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


@dataclass(frozen=True, slots=True)
class Prefix:
    """A normalised prefix such as ``88.100.7``. Build it with :func:`parse_prefix`."""

    text: str

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.text.split("."))

    @property
    def depth(self) -> int:
        return self.text.count(".") + 1

    def parent(self) -> Prefix | None:
        """The prefix with its last segment removed, or None at the top level."""
        head, dot, _ = self.text.rpartition(".")
        return Prefix(head) if dot else None

    def lineage(self) -> tuple[Prefix, ...]:
        """This prefix and all its ancestors, nearest first."""
        parts = self.text.split(".")
        return tuple(Prefix(".".join(parts[:n])) for n in range(len(parts), 0, -1))

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Identifier:
    """A parsed identifier: ``key`` is what it is stored and cached under, ``spelling``
    how it was written (prefix normalised); see the module docstring."""

    prefix: Prefix
    suffix: str
    # made once, in the case mode of the process (a write reads it a dozen times)
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.prefix.text}/{self.suffix}" if _case_sensitive
                           else f"{self.prefix.text}/{fold(self.suffix)}")

    @property
    def spelling(self) -> str:
        return f"{self.prefix.text}/{self.suffix}"

    def __str__(self) -> str:
        return self.key


@functools.lru_cache(maxsize=4096)
def parse_prefix(text: str) -> Prefix:
    """Validate and normalise a prefix.

    :raises InvalidPrefix: empty, too long, an empty segment, or a character
        outside ``A-Z a-z 0-9 _ -`` in a segment.
    """
    if not isinstance(text, str) or not text:
        raise InvalidPrefix("prefix is empty")
    if len(text.encode("utf-8")) > MAX_PREFIX_BYTES:
        raise InvalidPrefix(f"prefix is longer than {MAX_PREFIX_BYTES} bytes")
    segments = text.split(".")
    if len(segments) > MAX_SEGMENTS:
        raise InvalidPrefix(f"prefix {_shown(text)} has more than {MAX_SEGMENTS} segments")
    for seg in segments:
        if not seg:
            raise InvalidPrefix(f"prefix {_shown(text)} has an empty segment")
        if len(seg) > MAX_SEGMENT_BYTES:
            raise InvalidPrefix(
                f"prefix segment {_shown(seg)} is longer than {MAX_SEGMENT_BYTES} characters"
            )
        if not _SEGMENT.match(seg):
            bad = next(c for c in seg if not _SEGMENT.match(c))
            raise InvalidPrefix(
                f"prefix {_shown(text)} contains {bad!r}; segments use A-Z, a-z, 0-9, '_' and '-'"
            )
    return Prefix(text.upper())


def parse(text: str) -> Identifier:
    """Parse ``PREFIX/SUFFIX`` text (already percent-decoded).

    :raises InvalidIdentifier: no ``/``, an empty suffix, control characters,
        more than 2048 UTF-8 bytes, or an invalid prefix.
    """
    if not isinstance(text, str):
        raise InvalidIdentifier("identifier must be a string")
    if not text:
        raise InvalidIdentifier("identifier is empty")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidIdentifier("identifier is not valid UTF-8") from None
    if size > MAX_IDENTIFIER_BYTES:
        raise InvalidIdentifier(f"identifier is longer than {MAX_IDENTIFIER_BYTES} bytes")
    m = _CONTROL.search(text)
    if m:
        raise InvalidIdentifier(
            f"identifier {_shown(text)} contains control character U+{ord(m.group()):04X}"
        )
    prefix_text, slash, suffix = text.partition("/")
    if not slash:
        raise InvalidIdentifier(f"identifier {_shown(text)} has no '/' between prefix and suffix")
    if not suffix:
        raise InvalidIdentifier(f"identifier {_shown(text)} has an empty suffix")
    try:
        prefix = parse_prefix(prefix_text)
    except InvalidPrefix as exc:
        raise InvalidIdentifier(f"identifier {_shown(text)}: {exc.message}") from None
    return Identifier(prefix, suffix)


def decode_path(raw: str) -> str:
    """Percent-decode an identifier taken from a raw URL path, strictly.

    ``%`` must start a two-digit hex escape and the decoded bytes must be UTF-8.

    :raises InvalidIdentifier: a malformed escape or bytes that are not UTF-8.
    """
    if "%" not in raw:
        return raw
    m = _BAD_ESCAPE.search(raw)
    if m:
        raise InvalidIdentifier(
            f"malformed percent-escape at position {m.start()} in {_shown(raw)}"
        )
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidIdentifier(
            f"percent-escapes in {_shown(raw)} do not decode to UTF-8"
        ) from None


def parse_raw(raw: str) -> tuple[str, Identifier]:
    """(decoded text, identifier) from the identifier part of a raw URL path.

    :raises InvalidIdentifier: see :func:`decode_path` and :func:`parse`.
    """
    text = decode_path(raw)
    return text, parse(text)


def key_starts(prefixes: Iterable[str]) -> tuple[str, ...]:
    """How the keys of identifiers under ``prefixes`` (descendant prefixes included)
    begin, for ``str.startswith``: ``P/`` and ``P.`` for each P."""
    return tuple(s for p in prefixes for s in (p + "/", p + "."))
