"""Project rules as tests: module size, import contracts, no print, no machine paths,
strict types."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*REPO.glob("resolver/**/*.py"), *REPO.glob("registry/**/*.py")])
TESTS = sorted(REPO.glob("tests/**/*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", SOURCES + TESTS, ids=lambda p: str(p.relative_to(REPO)))
def test_module_size(path: Path) -> None:
    limit = 800 if "tests" in path.parts else 400
    assert len(path.read_text().splitlines()) <= limit


def _violations(prefix: str, forbidden: tuple[str, ...], allow: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in SOURCES:
        mod = module_name(path)
        if not mod.startswith(prefix) or mod in allow:
            continue
        for name in imports(path):
            if name.startswith(forbidden) and not name.startswith(prefix):
                out.append(f"{mod} imports {name}")
    return out


def test_core_is_pure() -> None:
    assert _violations("resolver.core", ("asyncio", "aiohttp", "asyncpg", "resolver.",
                                         "registry", "uvloop", "socket")) == []


def test_registry_uses_only_the_resolver_core() -> None:
    found = _violations("registry", ("resolver.http", "resolver.pg", "resolver.lookup",
                                     "resolver.store", "resolver.node", "resolver.cli",
                                     "resolver.cache", "resolver.protocol"))
    # the one shared aiohttp helper: reading a request body within limits
    assert [v for v in found if not v.endswith("imports resolver.http.body")] == []


def test_resolver_does_not_import_the_registry_outside_the_composition_root() -> None:
    assert _violations("resolver", ("registry",), allow=("resolver.node", "resolver.cli")) == []


def test_no_print_outside_the_cli() -> None:
    offenders = []
    for path in SOURCES:
        if module_name(path) == "resolver.cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{module_name(path)}:{node.lineno}")
    assert offenders == []


def test_no_machine_paths_in_tracked_files() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    pattern = re.compile("/" + "(work|farm|root)" + "/")
    hits = [f for f in files if (REPO / f).is_file() and not f.endswith(".lock")
            and pattern.search((REPO / f).read_text(errors="ignore"))]
    assert hits == []


def test_types_check_strictly() -> None:
    """mypy --strict (settings in pyproject.toml) over resolver/ and registry/."""
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(REPO / ".mypy_cache")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
