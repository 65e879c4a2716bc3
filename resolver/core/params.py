"""Query-parameter rules of the Handle REST API (handle-facts §2.2-2.4), pure."""

from __future__ import annotations

from collections.abc import Sequence

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
