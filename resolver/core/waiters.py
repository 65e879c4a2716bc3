"""Answering the waiters of a batched query (lookups by code, bearer tokens, misses) when
the query failed. Pure: it only calls the futures' own methods."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class Waiter(Protocol):
    def done(self) -> bool: ...

    def set_exception(self, exception: BaseException) -> None: ...

    def exception(self) -> Any: ...


def fail_waiters(waiters: Iterable[Waiter], exc: BaseException) -> None:
    """Give ``exc`` to every waiter not answered yet, marked retrieved (so that a waiter
    whose caller went away logs no "exception was never retrieved")."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(exc)
            waiter.exception()
