"""Query-parameter rules of the Handle REST API (handle-facts §2.2-2.4), pure."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl

from resolver.core.errors import BadRequest, InvalidValue
from resolver.core.record import check_index

_TRUE = {"", "true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def flag(name: str, values: Sequence[str], default: bool) -> bool:
    """A boolean parameter: absent → default; ``?x``, ``true``, ``yes`` → True.

    :raises BadRequest: for any other text.
    """
    if not values:
        return default
    text = values[-1].strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadRequest(f"parameter {name!r} must be true or false, got {values[-1]!r}")


def indexes(values: Sequence[str]) -> frozenset[int]:
    """Repeated ``index=`` parameters as integers.

    :raises BadRequest: for a value that is not a positive integer.
    """
    out = set()
    for text in values:
        try:
            out.add(check_index(int(text), "index"))
        except ValueError:
            raise BadRequest(f"index must be a positive integer, got {text!r}") from None
        except InvalidValue as exc:
            raise BadRequest(exc.message) from None
    return frozenset(out)


def integer(name: str, values: Sequence[str], default: int, low: int, high: int) -> int:
    """An integer parameter within [low, high].

    :raises BadRequest: not an integer, or out of range.
    """
    if not values:
        return default
    try:
        n = int(values[-1])
    except ValueError:
        raise BadRequest(f"parameter {name!r} must be an integer, got {values[-1]!r}") from None
    if not low <= n <= high:
        raise BadRequest(f"parameter {name!r} must be between {low} and {high}, got {n}")
    return n


Selection = tuple[bytes, frozenset[int], tuple[str, ...]]   # (path, indexes, types)


def selection(target: bytes) -> Selection | None:
    """(path, indexes, types) of a request target whose query string is only the Handle
    API's value filters (``?index=N&type=T``, each repeatable, at least one), read as
    aiohttp reads them (percent escapes, ``+`` a space); None for any other query string
    or one that is not well formed, which the full parser then answers (its errors
    included)."""
    path, mark, query = target.partition(b"?")
    if not mark or not query:
        return None
    try:
        pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True,
                          strict_parsing=True, errors="strict", max_num_fields=64)
        found = indexes([v for k, v in pairs if k == "index"])
    except (UnicodeDecodeError, ValueError, BadRequest):
        return None
    if any(k not in ("index", "type") for k, _ in pairs):
        return None
    return path, found, tuple(v for k, v in pairs if k == "type")
