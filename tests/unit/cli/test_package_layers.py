"""The command line sits on top: ``replay/`` is a library (no argparse, no ``pipeline/``, no
``cli/``), and no product package imports ``cli/`` (docs/ARCHITECTURE.md, dependency direction)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _imports(package: str) -> set[tuple[str, str]]:
    """(file, top-level module) for every import statement under ``package``."""
    found = set()
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.update((path.relative_to(ROOT).as_posix(), n.split(".")[0]) for n in names)
    return found


@pytest.mark.parametrize(
    "package", ["aggregates", "eventstore", "projections", "adapters", "pipeline", "replay"]
)
def test_imports_when_a_product_package_is_scanned_then_none_reaches_the_command_line(
    package: str,
) -> None:
    assert [f for f, module in _imports(package) if module == "cli"] == []


def test_imports_when_replay_is_scanned_then_it_is_a_library_without_argparse_or_services() -> None:
    forbidden = {"argparse", "pipeline", "cli"}
    assert sorted((f, m) for f, m in _imports("replay") if m in forbidden) == []
