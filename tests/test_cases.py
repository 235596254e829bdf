"""The golden cases on disk: every valid board compiles to its JSON, every invalid one fails
with exactly the expected diagnostics, exit code 1, no traceback and no file written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compiler.cli import main
from tests.golden import CASES, ROOT, display

VALID = sorted((CASES / "valid").glob("*.yaml"))
INVALID = sorted((CASES / "invalid").glob("*.yaml"))


def test_enough_cases() -> None:
    assert len(VALID) >= 12
    assert len(INVALID) >= 60


@pytest.mark.parametrize("case", VALID, ids=lambda p: p.stem)
def test_valid_case(
    case: Path, chdir_root: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["compile", "--json", "--out", str(tmp_path), display(case)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "error[" not in err
    golden = json.loads(case.with_suffix(".json").read_text(encoding="utf-8"))
    assert json.loads(out) == golden
    written = json.loads((tmp_path / f"{case.stem}.json").read_text(encoding="utf-8"))
    assert written == golden


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_invalid_case(
    case: Path, chdir_root: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    code = main(["compile", "--out", str(out_dir), display(case)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in out + err
    assert out == ""
    assert not out_dir.exists(), "nothing may be written for a storyboard with errors"
    prefix = display(case) + ":"
    got = [line.removeprefix(prefix) for line in err.splitlines() if line.startswith(prefix)]
    expected = case.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    assert got == expected
    assert any("error[" in line for line in got)


def test_cases_root_is_a_project() -> None:
    # Paths in cases are checked against the project root: the repository itself.
    assert (ROOT / ".git").exists() or (ROOT / "pyproject.toml").exists()


def test_a_copied_scene_is_a_warning_and_both_are_rendered(
    chdir_root: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    case = CASES / "valid" / "duplicate-payload-aliases.yaml"
    code = main(["compile", "--json", display(case)])
    out, err = capsys.readouterr()
    assert code == 0
    assert [task["scene"] for task in json.loads(out)["tasks"]] == ["beam", "beam-again"]
    assert (
        f"{display(case)}:15:9: warning[duplicate-payload]: scene 'beam-again' compiles to the "
        "same task as scene 'beam': each is a separate paid generation"
    ) in err.splitlines()
    assert "hint: for variants of one scene, use `takes: N` on it instead" in err


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_no_problem_is_reported_twice(case: Path) -> None:
    lines = case.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    places = [line.split(": ", 1)[0] + " " + line.split("[", 1)[1].split("]")[0] for line in lines]
    assert len(places) == len(set(places)), "two diagnostics of one kind at one place"


def test_many_independent_mistakes_are_all_reported() -> None:
    case = CASES / "invalid" / "many-mistakes.yaml"
    text = case.read_text(encoding="utf-8")
    expected = case.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    # Every line marked with a comment naming a diagnostic gets that diagnostic.
    for number, line in enumerate(text.splitlines(), 1):
        if "  # " not in line or line.lstrip().startswith("#"):
            continue
        codes = [c.strip(" ,(").split(" ")[0] for c in line.split("  # ", 1)[1].split(", ")]
        got = {e.split("[")[1].split("]")[0] for e in expected if e.startswith(f"{number}:")}
        assert codes[0] in got, (number, line, got)
    assert len(expected) >= 20
