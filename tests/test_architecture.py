"""The structure the code promises (README "How the code is laid out"), checked with `ast`.

- the plan decides and the executor carries out: plan.py imports nothing that executes;
- media travel as typed values: their `local:…@sha256:`-style spellings are written only
  in wire.py, at the JSON edge, and nothing anywhere parses them back;
- the CLI parses and reports: it holds no money rule and hashes no file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "compiler"
SPELLINGS = ("local:", "frame:", "after:", "element:", "@sha256:")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "emulator" not in p.parts)


def _imports(path: Path) -> set[str]:
    """The compiler modules `path` imports, as names relative to the package."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # for the type checker only: nothing is loaded or called
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("compiler")
        ):
            found.add(node.module.split(".")[1] if "." in node.module else "")
    return found


def _reaches(start: str) -> set[str]:
    """Every compiler module `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = PACKAGE / f"{name}.py"
        if path.is_file():
            todo += sorted(_imports(path))
    return seen - {start}


def test_the_plan_never_reaches_the_executor_or_the_network() -> None:
    reached = _reaches("plan")
    assert not reached & {"execute", "client", "run", "backends", "emulator", "cli"}, reached


def test_the_compile_stages_never_reach_the_render_stack() -> None:
    reached = _reaches("pipeline")
    assert not reached & {"execute", "client", "run", "backends", "emulator", "plan"}, reached


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_media_spellings_are_written_only_at_the_json_edge(path: Path) -> None:
    if path.name == "wire.py":
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    spelled = [
        f"{path.name}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and any(node.value.startswith(s) or s == "@sha256:" and s in node.value for s in SPELLINGS)
    ]
    assert not spelled, "media spelled outside wire.py: " + "; ".join(spelled)


def test_the_cli_holds_no_money_rule_and_hashes_nothing() -> None:
    imported = _imports(PACKAGE / "cli.py")
    text = (PACKAGE / "cli.py").read_text(encoding="utf-8")
    assert "sha256" not in text
    assert ".budget_usd" not in text and "usd_per_unit" not in text
    assert "gate" in imported and "execute" not in imported and "lockfile" not in imported


def test_only_the_backend_factory_reaches_the_emulator() -> None:
    reaching = sorted(
        path.name
        for path in _modules()
        if "emulator" in _imports(path) and path.name != "backends.py"
    )
    assert reaching == []
