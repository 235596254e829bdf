"""The pre-commit hook this repository publishes (.pre-commit-hooks.yaml), run the way
pre-commit runs it: its `entry` plus the staged files its `files` pattern selects, from the
repository root, judged by the exit code."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

BAD = """\
storyboard: 1
scenes:
  - id: opening
    prompt: "A quiet harbour at dawn."
    duration: 20
"""

GOOD = """\
storyboard: 1
scenes:
  - id: opening
    prompt: "A quiet harbour at dawn."
    duration: 5
"""


@pytest.fixture(scope="module")
def hook() -> dict[str, Any]:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    (found,) = [h for h in hooks if h["id"] == "storyboard-validate"]
    return dict(found)


def test_the_hook_is_a_python_hook_that_takes_filenames(hook: dict[str, Any]) -> None:
    assert {"id", "name", "entry", "language"} <= hook.keys()  # what pre-commit requires
    assert hook["language"] == "python"
    assert hook.get("pass_filenames", True) is True
    # pre-commit installs this repository and runs the console script `entry` names.
    program = shlex.split(hook["entry"])[0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"][program] == "compiler.cli:main"


def test_the_hook_selects_storyboards_only(hook: dict[str, Any]) -> None:
    files = re.compile(hook["files"])
    assert files.search("storyboards/lighthouse.yaml")
    assert files.search("storyboards/harbour.yml")
    assert not files.search("storyboards/storm-edit.lock")
    assert not files.search("storyboards/assets/coast.jpg")
    assert not files.search(".github/workflows/ci.yaml")
    assert not files.search("tests/cases/invalid/load-empty.yaml")


def _run_hook(
    hook: dict[str, Any], repo: Path, staged: list[str]
) -> subprocess.CompletedProcess[str]:
    """Run the hook as pre-commit would: from the repository root, with the staged files
    that match `files` appended to `entry`; `storyboard` is this checkout's module."""
    selected = [name for name in staged if re.search(hook["files"], name)]
    program, *args = shlex.split(hook["entry"])
    assert program == "storyboard"
    return subprocess.run(
        [sys.executable, "-m", "compiler", *args, *selected],
        capture_output=True,
        text=True,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
        timeout=60,
    )


def _repo(tmp_path: Path, boards: dict[str, str]) -> Path:
    (tmp_path / "storyboards").mkdir()
    (tmp_path / "README.md").write_text("# a film\n", encoding="utf-8")
    for name, text in boards.items():
        (tmp_path / "storyboards" / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_the_hook_fails_a_bad_storyboard_at_its_position(
    hook: dict[str, Any], tmp_path: Path
) -> None:
    repo = _repo(tmp_path, {"bad.yaml": BAD, "good.yaml": GOOD})
    proc = _run_hook(hook, repo, ["README.md", "storyboards/bad.yaml", "storyboards/good.yaml"])
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        "storyboards/bad.yaml:5:15: error[duration-range]: duration 20 s is not allowed here (R5)"
    )
    assert proc.stdout.splitlines()[-1] == "1 error in 1 of 2 files"
    assert "Traceback" not in proc.stderr


def test_the_hook_passes_a_good_storyboard(hook: dict[str, Any], tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"good.yaml": GOOD})
    proc = _run_hook(hook, repo, ["README.md", "storyboards/good.yaml"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "ok: 1 storyboard(s), 1 scene(s)\n"
