"""Every request counted and logged, whichever front end answered it.

* :class:`Route`: requests by method and status and a latency histogram, plain integers
  (a cached GET on the fast path pays a few dictionary and list operations, no lock);
  ``resolver/metrics.py`` exposes them as ``idres_requests_total{route,method,status}``
  and ``idres_request_duration_seconds{route}``.
* :func:`request_id`: the client's ``X-Request-ID`` when it is one a log line can hold
  (visible ASCII, at most 128 characters), echoed on the answer; else one made here
  (process id and a counter), for the access log only.
* :class:`AccessLog`: one line per request, the same fields for the fast path and
  aiohttp (:class:`AiohttpAccess`); with ``--log-format json`` (:class:`JsonFormatter`)
  every log line is a JSON object and an access line carries its fields as keys.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from bisect import bisect_left
from typing import Any

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

# seconds: from a cache hit (tens of microseconds) to a bulk load (seconds)
BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
          0.5, 1.0, 2.5, 5.0, 10.0)
MAX_ROUTES = 200      # route names come from the router; a bound all the same
_RID = re.compile(rb"[\x21-\x7e]{1,128}")
_made = itertools.count(1)
_PID = f"{os.getpid():x}"
log = logging.getLogger("idres.access")
Meta = tuple[float, "bytes | None", bytes, bytes]   # (start, X-Request-ID, target, method)


class Route:
    """One route's requests with one method: by status, and their latencies."""

    __slots__ = ("name", "method", "statuses", "buckets", "seconds")

    def __init__(self, name: str, method: bytes) -> None:
        self.name, self.method = name, method
        self.statuses: dict[bytes, int] = {}
        self.buckets = [0] * (len(BOUNDS) + 1)   # the last: over the largest bound
        self.seconds = 0.0

    def observe(self, status: bytes, seconds: float) -> None:
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1
        self.buckets[bisect_left(BOUNDS, seconds)] += 1
        self.seconds += seconds


class Traffic:
    """The routes of one process, by (route, method)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, bytes], Route] = {}

    def route(self, name: str, method: bytes) -> Route:
        found = self.routes.get((name, method))
        if found is None:
            if len(self.routes) >= MAX_ROUTES:
                name = "other"
                found = self.routes.get((name, method))
            if found is None:
                found = self.routes[(name, method)] = Route(name, method)
        return found


def request_id(given: bytes | None) -> tuple[bytes | None, str]:
    """(the id to echo, or None; the id to log)."""
    if given is not None:
        given = given.strip()
        if _RID.fullmatch(given):
            return given, given.decode("ascii")
    return None, f"{_PID}-{next(_made):x}"


class AccessLog:
    """One line per request (``--access-log``)."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger

    def line(self, peer: str, method: str, target: str, status: int, size: int,
             seconds: float, rid: str, agent: str = "-") -> None:
        target, agent = _printable(target), _printable(agent)   # no line a client forges
        self.logger.info('%s "%s %s" %d %d %.3fms %s "%s"', peer, method, target, status, size,
                         seconds * 1000, rid, agent, extra={"access": {
                             "remote": peer, "method": method, "target": target,
                             "status": status, "bytes": size,
                             "duration_ms": round(seconds * 1000, 3), "request_id": rid,
                             "user_agent": agent}})


def _printable(text: str) -> str:
    """``text`` with control characters (a line break in a request target) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


class AiohttpAccess(AbstractAccessLogger):
    """aiohttp's requests in the same lines as the fast path's."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        rid = request.get("request_id") or request_id(
            request.headers.get("X-Request-ID", "").encode("latin-1", "replace") or None)[1]
        ACCESS.line(request.remote or "-", request.method, request.path_qs, response.status,
                    response.body_length, time, rid, request.headers.get("User-Agent", "-"))


ACCESS = AccessLog()


class JsonFormatter(logging.Formatter):
    """``--log-format json``: each line a JSON object (time, level, logger, message, and an
    access line's fields; a traceback under ``exception``)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "pid": record.process,
            "message": record.getMessage()}
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            out.update(access)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def configure_logging(level: str, form: str) -> None:
    """The root logger: ``form`` ``text`` (the default) or ``json``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
