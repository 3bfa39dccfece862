"""notifier.config's parsing modules do no I/O (sources.py alone reads files, the environment and
credentials), and no module of the package outgrows 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "notifier" / "config"
PURE = ("settings", "schema", "kinds", "watch_kinds", "keys", "toml", "checks", "watches", "rules", "parse")
IO_MODULES = {"os", "glob", "io", "shutil", "subprocess", "socket"}
IO_CALLS = {
    "open",
    "read_text",
    "read_bytes",
    "write_text",
    "is_dir",
    "is_file",
    "exists",
    "cwd",
    "glob",
    "iterdir",
}


@pytest.mark.parametrize("name", PURE)
def test_parsing_modules_do_no_io(name: str) -> None:
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] in IO_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in IO_MODULES:
            found.append(str(node.module))
        elif isinstance(node, ast.Call):
            callee = node.func
            called = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
            if called in IO_CALLS:
                found.append(f"line {node.lineno}: {called}()")
    assert found == [], f"{name}.py does I/O; it belongs in sources.py"


def test_no_config_module_is_over_600_lines() -> None:
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in PACKAGE.glob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 600} == {}
