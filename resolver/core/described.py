"""What an HTTP handler takes, for the API description (resolver/http/openapi.py). Pure.

A handler that decodes its body with a msgspec type says so with ``@takes(body=Type)``:
the same type validates the request and is described in the OpenAPI document, so the two
cannot differ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Handler = Callable[..., Any]
Query = dict[str, tuple[dict[str, Any], bool]]   # name -> (JSON Schema, required)


def takes(body: Any = None, query: Query | None = None, auth: str = "optional",
          answer: dict[str, Any] | None = None) -> Callable[[Handler], Handler]:
    """What a handler takes: ``body`` (the msgspec type it decodes the request body with),
    ``query`` (its query parameters) and ``auth`` (``none``, ``optional``, ``required``);
    ``answer``: the JSON Schema of a successful answer that is not a Handle message."""
    def mark(handler: Handler) -> Handler:
        handler.__openapi__ = {"body": body, "query": query or {}, "auth": auth,  # type: ignore[attr-defined]
                               "answer": answer}
        return handler
    return mark
