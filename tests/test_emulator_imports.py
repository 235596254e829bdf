"""The emulator imports nothing from the rest of the compiler.

It exists to catch the compiler's bugs, so it must not share the compiler's code (or its
mistakes): every module of compiler/emulator/ may import the standard library, third-party
packages and its own package, nothing else. Read with `ast`, so a lazy import inside a
function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ("compiler", "emulator")
PACKAGE_DIR = ROOT.joinpath(*PACKAGE)
BEYOND = "<beyond the top-level package>"


def package_of(path: Path) -> tuple[str, ...]:
    """The dotted package a module file belongs to (for `__init__.py`, the package itself)."""
    folder = path.parent.relative_to(ROOT)
    return tuple(folder.parts)


def imported(tree: ast.AST, package: tuple[str, ...]) -> Iterator[tuple[int, str, str]]:
    """(line, the import as written, each module or name it reaches, absolute and dotted)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, f"import {alias.name}", alias.name
        elif isinstance(node, ast.ImportFrom):
            written = f"from {'.' * node.level}{node.module or ''} import "
            written += ", ".join(alias.name for alias in node.names)
            module = node.module or ""
            if node.level:
                # `from .x` is the module's own package; each further dot climbs one level.
                keep = len(package) - (node.level - 1)
                base = package[:keep] if keep > 0 else (BEYOND,)
                module = ".".join((*base, module) if module else base)
            for alias in node.names:
                yield node.lineno, written, f"{module}.{alias.name}"


def outside_the_emulator(target: str) -> bool:
    """A compiler module other than the emulator package (or something beyond the top)."""
    parts = tuple(target.split("."))
    return parts[0] == BEYOND or (parts[0] == PACKAGE[0] and parts[: len(PACKAGE)] != PACKAGE)


def violations(path: Path, source: str) -> list[str]:
    tree = ast.parse(source, filename=str(path))
    package = package_of(path)
    found = []
    for line, written, target in imported(tree, package):
        if outside_the_emulator(target):
            found.append(f"{path.relative_to(ROOT)}:{line}: `{written}` reaches {target}")
    return sorted(set(found))


def module_files() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def test_the_package_has_modules() -> None:
    names = {path.name for path in module_files()}
    assert {"__init__.py", "app.py", "rules.py", "clips.py", "transport.py"} <= names


@pytest.mark.parametrize("path", module_files(), ids=lambda path: path.name)
def test_module_imports_nothing_from_the_compiler(path: Path) -> None:
    found = violations(path, path.read_text(encoding="utf-8"))
    assert not found, (
        "the emulator must import nothing from the rest of the compiler; found:\n  "
        + "\n  ".join(found)
    )


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("from .rules import Body", False),
        ("from . import faults", False),
        ("from compiler.emulator.rules import Body", False),
        ("import compiler.emulator.clips", False),
        ("import httpx\nfrom PIL import Image", False),
        ("from ..media import Card", True),
        ("from .. import media", True),
        ("from ... import anything", True),
        ("import compiler.errors", True),
        ("from compiler import errors", True),
        ("from compiler.model import Shot", True),
        ("def later():\n    from ..lockfile import read", True),
    ],
)
def test_the_check_catches_what_it_should(source: str, bad: bool) -> None:
    found = violations(PACKAGE_DIR / "app.py", source)
    assert bool(found) == bad, found
