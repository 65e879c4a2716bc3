"""Project rules as tests: module size, import contracts, no print, no machine paths,
strict types."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*REPO.glob("resolver/**/*.py"), *REPO.glob("registry/**/*.py")])
TESTS = sorted(REPO.glob("tests/**/*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


@pytest.mark.parametrize("path", SOURCES + TESTS, ids=lambda p: str(p.relative_to(REPO)))
def test_module_size(path: Path) -> None:
    limit = 800 if "tests" in path.parts else 400
    assert len(path.read_text().splitlines()) <= limit


# --- the import contract: an allow-list per package, checked on the real import graph ----
# (grimp resolves every form of import, ``from resolver import store`` included, to the
# module it names; external packages appear under their top-level name)

# what a pure module may import from outside idres: no I/O, no event loop
PURE = {"__future__", "base64", "binascii", "collections", "dataclasses", "enum", "functools",
        "calendar", "hashlib", "hmac", "html", "http", "ipaddress", "json", "struct", "math", "re", "secrets", "string", "time", "typing",
        "unicodedata", "urllib", "cryptography", "msgpack", "orjson"}
# the sans-I/O modules outside the core: decisions and data structures, no I/O
SANS_IO = ("resolver.cache", "resolver.reply", "resolver.protocol.frames",
           "resolver.recursion.walk", "resolver.page", "resolver.native.wire",
           "resolver.native.values")
# package prefix -> (idres modules it may import, external packages it may import; None: any)
CONTRACTS: dict[str, tuple[tuple[str, ...], set[str] | None]] = {
    "resolver.core": (("resolver.core",), PURE),
    **{m: (("resolver.core", "resolver.cache", "resolver.native.wire",
            "resolver.native.values"), PURE) for m in SANS_IO},
    "registry": (("registry", "resolver.core"), None),
    "resolver": (("resolver",), None),
    # the composition root and the command line put the two packages together
    "resolver.node": (("resolver", "registry"), None),
    "resolver.cli": (("resolver", "registry"), None),
    "resolver.cli_data": (("resolver", "registry"), None),
}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("resolver", "registry", include_external_packages=True)


def _contract(module: str) -> tuple[tuple[str, ...], set[str] | None]:
    """The most specific contract that applies to ``module``."""
    best = max((p for p in CONTRACTS if module == p or module.startswith(p + ".")), key=len)
    return CONTRACTS[best]


def test_every_import_is_allowed_by_its_package_contract(graph: grimp.ImportGraph) -> None:
    offences = []
    for module in sorted(graph.modules):
        if not module.startswith(("resolver", "registry")):
            continue
        internal, external = _contract(module)
        for target in sorted(graph.find_modules_directly_imported_by(module)):
            if target.startswith(("resolver", "registry")):
                ok = any(target == p or target.startswith(p + ".") for p in internal)
            else:
                ok = external is None or target in external
            if not ok:
                offences.append(f"{module} imports {target}")
    assert offences == []


def test_the_contract_catches_what_it_forbids(graph: grimp.ImportGraph) -> None:
    """The checker itself: these imports would be offences."""
    assert "aiohttp" not in _contract("resolver.core.codec")[1]  # type: ignore[operator]
    assert "asyncio" not in _contract("resolver.cache")[1]  # type: ignore[operator]
    assert not any(p.startswith("resolver.http") for p in _contract("registry.api.common")[0]
                   if p != "resolver.core")
    assert "registry" not in _contract("resolver.lookup")[0]
    assert "registry" in _contract("resolver.node")[0]
    # the registry reaches the resolver's core and nothing else of it
    registry_imports = {t for m in graph.modules if m.startswith("registry")
                        for t in graph.find_modules_directly_imported_by(m)
                        if t.startswith("resolver")}
    assert registry_imports and all(t.startswith("resolver.core") for t in registry_imports)


def test_no_print_outside_the_cli() -> None:
    offenders = []
    for path in SOURCES:
        if module_name(path) in ("resolver.cli", "resolver.cli_data"):
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
