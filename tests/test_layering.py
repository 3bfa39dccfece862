"""The package's rooms import only downwards, and the pure core loads no I/O library."""

from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "notifier"

# What each room may import of the package, besides itself. notifier.errors (the exception tree),
# notifier.hints (the commands messages tell the user to run) and notifier's __version__ sit
# under every room. testing/ is the shipped offline harness: only cli/ (and tests) may use it.
BASE = frozenset({"errors", "hints", "version"})
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "version": frozenset(),
    "hints": frozenset(),
    "core": frozenset({"errors"}),
    "store": BASE | {"core"},
    "config": BASE | {"core", "store"},
    "net": BASE | {"core", "config"},
    "pipeline": BASE | {"core", "config", "store", "net"},
    "web": BASE | {"core", "config", "store", "net", "pipeline"},
    "daemon": BASE | {"core", "config", "store", "net", "pipeline", "web"},
    "testing": BASE | {"core", "config", "store", "net", "pipeline", "web"},
    "cli": BASE | {"core", "config", "store", "net", "pipeline", "web", "daemon", "testing"},
    "main": frozenset({"cli"}),
}
ROOMS = frozenset(ALLOWED) - {"version", "main"}
IO_LIBRARIES = (
    "sqlalchemy",
    "alembic",
    "httpx",
    "aiosmtplib",
    "starlette",
    "uvicorn",
    "apscheduler",
    "asyncpg",
    "aiosqlite",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "version"
    if parts[1] == "__main__":
        return "main"
    if parts[1] not in ROOMS:
        raise AssertionError(f"{module} is in no room: put it in one of {sorted(ROOMS)}")
    return parts[1]


def imports(module: str) -> Iterator[tuple[int, str]]:
    """(line, module) of every import of the package in `module`, at any depth (function-level too)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (
                (node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "notifier"
            )
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "notifier":
                continue
            for alias in node.names:
                # `from notifier.web import customer` imports the submodule notifier.web.customer.
                yield node.lineno, f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def test_the_rooms_form_no_cycle() -> None:
    graphlib.TopologicalSorter(ALLOWED).static_order()  # raises CycleError


def test_every_import_points_down_or_within_its_room() -> None:
    wrong = []
    for module in MODULES:
        here = room(module)
        for line, target in imports(module):
            there = room(target)
            if there != here and there not in ALLOWED[here]:
                wrong.append(
                    f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}: {here} imports {target} ({there})"
                )
    assert not wrong, "imports against the layering rule:\n" + "\n".join(wrong)


def test_the_modules_form_no_import_cycle() -> None:
    graph = {module: {target for _, target in imports(module) if target != module} for module in MODULES}
    try:
        graphlib.TopologicalSorter(graph).static_order()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


CORE = sorted(name for name in MODULES if room(name) == "core")


def test_the_core_is_every_pure_module() -> None:
    assert {
        "notifier.core.rules",
        "notifier.core.parser",
        "notifier.core.mime",
        "notifier.core.sending",
    } <= set(CORE)


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_loads_no_io_library(module: str) -> None:
    probe = f"import sys, {module}\nprint(' '.join(n for n in {IO_LIBRARIES!r} if n in sys.modules))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert run.returncode == 0, f"importing {module} alone fails:\n{run.stderr}"
    loaded = run.stdout.split()
    assert not loaded, f"importing {module} loads {', '.join(loaded)}"


def test_importing_the_core_opens_no_file_but_its_code() -> None:
    """Core data tables (country_zones.csv, destination_posts.toml) are read on first use and
    cached, never at import (see docs/explanation/architecture.md)."""
    probe = "\n".join(
        [
            "import json, sys",
            "opened = []",
            "sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == 'open' else None)",
            *(f"import {module}" for module in CORE),
            "data = [p for p in opened if not p.endswith(('.py', '.pyc', '.so', '.pth'))]",
            "mark = len(opened)",
            "notifier.core.zones.country_zones()",
            "read = any(p.endswith('country_zones.csv') for p in opened[mark:])",
            "print(json.dumps([data, read]))",
        ]
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert run.returncode == 0, run.stderr
    data, read = json.loads(run.stdout)
    assert read, "the audit hook saw no data file read: the check below would prove nothing"
    assert not data, f"importing the core opens {data}"
