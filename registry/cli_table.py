"""The shape of a command-line command (registry/cli.py): its group, name, help,
arguments and the coroutine that runs it on an open database."""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from registry.permissions import Principal
from registry.store import Db

Result = tuple[dict[str, Any], str]
Run = Callable[[Db, argparse.Namespace], Awaitable[Result]]


@dataclass(frozen=True)
class Command:
    group: str
    name: str
    help: str
    run: Run
    arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None


def local_actor() -> Principal:
    """The principal of command-line work: whoever can reach the database is in charge."""
    user = os.environ.get("USER") or str(os.geteuid())
    return Principal(0, f"cli:{user}", "", True)


