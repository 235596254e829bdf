"""The command line as a user meets it: exit codes, output streams, formats, files written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compiler.cli import main
from tests.conftest import ROOT

BAD = """\
storyboard: 1
scenes:
  - id: opening
    prompt: "A quiet harbour at dawn."
    duration: 20
  - id: climb
    shots:
      - prompt: "The keeper climbs."
        duration: 9
      - prompt: "He lights the lamp."
        duration: 8
"""

UNUSED_REF = """\
refs:
  images:
    lamp: {url: "https://example.com/lamp.png"}
"""


@pytest.fixture
def bad_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(BAD, encoding="utf-8")
    return tmp_path / "bad.yaml"


def test_text_diagnostics_are_sorted_with_hints(
    bad_board: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "bad.yaml"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "bad.yaml:5:15: error[duration-range]: duration 20 s is not allowed here (R5)",
        "  hint: allowed for text-to-video on kling-v3-omni: 3-15 s",
        "bad.yaml:8:7: error[shot-duration-sum]: shots add up to 17 s; a task is 3-15 s (R4, R5)",
        "  hint: split the scene in two, or shorten shot 2",
        "2 errors in 1 file",
    ]


def test_github_format(bad_board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--format", "github", "bad.yaml"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "::error file=bad.yaml,line=5,col=15,title=duration-range::"
        "duration 20 s is not allowed here (R5)%0A"
        "allowed for text-to-video on kling-v3-omni: 3-15 s"
    )
    assert lines[1].startswith("::error file=bad.yaml,line=8,col=7,title=shot-duration-sum::")
    assert len(lines) == 2


def _validate_github(cwd: Path, *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "compiler", "validate", "--format", "github", *files],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
        timeout=60,
    )


def test_github_annotations_end_to_end(tmp_path: Path) -> None:
    # A real process, as in a workflow step: errors and warnings become annotations; the
    # file property escapes ',' and ':', the message escapes '%' and puts the hint on a
    # second line (%0A).
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "take,2.yaml").write_text(
        BAD.replace("scenes:", UNUSED_REF + "scenes:", 1), encoding="utf-8"
    )
    (tmp_path / "boards" / "mode.yaml").write_text(
        "storyboard: 1\nmode: pro%\n" + BAD.removeprefix("storyboard: 1\n"), encoding="utf-8"
    )
    proc = _validate_github(tmp_path, "boards/take,2.yaml", "boards/mode.yaml")
    assert proc.returncode == 1
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == [
        "::error file=boards/mode.yaml,line=2,col=7,title=enum::"
        "'mode' must be one of std, pro, 4k; got a string 'pro%25'%0Adid you mean 'pro'?",
        # A broken top-level value no longer hides the rest: its scenes are still checked.
        "::error file=boards/mode.yaml,line=6,col=15,title=duration-range::duration 20 s "
        "is not allowed here (R5)%0Aallowed for text-to-video on kling-v3-omni: 3-15 s",
        "::error file=boards/mode.yaml,line=9,col=7,title=shot-duration-sum::shots add up "
        "to 17 s; a task is 3-15 s (R4, R5)%0Asplit the scene in two, or shorten shot 2",
        "::warning file=boards/take%2C2.yaml,line=4,col=5,title=unused-ref::"
        "image 'lamp' is never used%0Areference it as {{ image.lamp }}, or remove it",
        "::error file=boards/take%2C2.yaml,line=8,col=15,title=duration-range::"
        "duration 20 s is not allowed here (R5)%0A"
        "allowed for text-to-video on kling-v3-omni: 3-15 s",
        "::error file=boards/take%2C2.yaml,line=11,col=7,title=shot-duration-sum::"
        "shots add up to 17 s; a task is 3-15 s (R4, R5)%0A"
        "split the scene in two, or shorten shot 2",
    ]


def test_github_warnings_alone_do_not_fail_the_job(tmp_path: Path) -> None:
    (tmp_path / "warn.yaml").write_text(
        "storyboard: 1\n" + UNUSED_REF + "scenes:\n  - id: opening\n"
        '    prompt: "A quiet harbour at dawn."\n    duration: 5\n',
        encoding="utf-8",
    )
    proc = _validate_github(tmp_path, "warn.yaml")
    assert proc.returncode == 0
    assert proc.stdout == (
        "::warning file=warn.yaml,line=4,col=5,title=unused-ref::"
        "image 'lamp' is never used%0Areference it as {{ image.lamp }}, or remove it\n"
    )


def test_json_format(bad_board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--format", "json", "bad.yaml"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["errors"] == 2
    assert doc["diagnostics"][0] == {
        "path": "bad.yaml",
        "line": 5,
        "col": 15,
        "severity": "error",
        "code": "duration-range",
        "message": "duration 20 s is not allowed here (R5)",
        "hint": "allowed for text-to-video on kling-v3-omni: 3-15 s",
    }


def test_compile_errors_go_to_stderr_and_write_nothing(
    bad_board: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile", "--json", "--out", "out", "bad.yaml"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "error[duration-range]" in err
    assert not Path("out").exists()


def test_problems_of_every_file_are_reported_at_once(
    bad_board: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("also.yaml").write_text("storyboard: 1\nscenes: []\n", encoding="utf-8")
    assert main(["validate", "bad.yaml", "also.yaml"]) == 1
    out = capsys.readouterr().out
    assert "also.yaml:2:9: error[size]" in out
    assert "bad.yaml:5:15: error[duration-range]" in out
    assert out.index("also.yaml") < out.index("bad.yaml")
    assert out.splitlines()[-1] == "3 errors in 2 files"


def test_compile_json_of_several_files(
    chdir_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["compile", "--json", "storyboards/lighthouse.yaml", "storyboards/harbour.yaml"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert [d["storyboard"] for d in doc["storyboards"]] == [
        "storyboards/lighthouse.yaml",
        "storyboards/harbour.yaml",
    ]


def test_compile_defaults_to_the_storyboards_folder(
    chdir_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile"]) == 0
    out = capsys.readouterr().out
    assert "storyboards/lighthouse.yaml: 4 task(s)" in out
    assert "storyboards/harbour.yaml: 4 task(s)" in out


def test_lighthouse_payloads(chdir_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "--json", "storyboards/lighthouse.yaml"]) == 0
    tasks = {t["scene"]: t for t in json.loads(capsys.readouterr().out)["tasks"]}
    opening = tasks["opening"]["payload"]
    assert "aspect_ratio" not in opening  # the first frame sets the shape (R14)
    assert opening["image_list"][0]["type"] == "first_frame"
    assert opening["image_list"][0]["image_url"].startswith("local:assets/coast.jpg@sha256:")
    assert opening["prompt"].startswith("Dolly in over <<<image_1>>> at dusk")
    climb = tasks["climb"]["payload"]
    assert climb["duration"] == "7" and climb["sound"] == "on"
    assert [s["index"] for s in climb["multi_prompt"]] == [1, 2]
    assert climb["element_list"] == [{"element_id": 829301938475}]
    squall = tasks["squall"]["payload"]
    assert "duration" not in squall and "aspect_ratio" not in squall
    assert squall["video_list"] == [
        {
            "video_url": "https://example.com/media/storm.mp4",
            "refer_type": "base",
            "keep_original_sound": "yes",
        }
    ]
    assert tasks["squall"]["units"] == 7.2  # 6 s of pro with video input at 1.2 u/s
    assert tasks["aftermath"]["payload"]["aspect_ratio"] == "16:9"


def test_usage_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "missing.yaml"]) == 2
    assert main(["validate"]) == 2  # no storyboards/ folder here
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_schema_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["title"] == "Kling storyboard"
    assert main(["schema", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8")) == printed


def test_new_writes_a_starter_that_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new", "first-film"]) == 0
    text = (tmp_path / "storyboards" / "first-film.yaml").read_text(encoding="utf-8")
    assert text.splitlines()[0] == (
        "# yaml-language-server: $schema=../schemas/storyboard.schema.json"
    )
    assert (tmp_path / "schemas" / "storyboard.schema.json").is_file()
    capsys.readouterr()
    assert main(["validate", "storyboards/first-film.yaml"]) == 0
    assert capsys.readouterr().out == "ok: 1 storyboard(s), 2 scene(s)\n"
    assert main(["new", "first-film"]) == 2  # never overwrites
    assert main(["new", "Bad Name"]) == 2


def test_real_process_on_every_invalid_case_shows_no_traceback() -> None:
    cases = sorted((ROOT / "tests" / "cases" / "invalid").glob("*.yaml"))
    proc = subprocess.run(
        [sys.executable, "-m", "compiler", "validate", *map(str, cases)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr == ""


def test_hints_for_common_slips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    quoted = 'storyboard: 1\nscenes:\n  - id: x\n    prompt: "Waves."\n    duration: "5"\n'
    (tmp_path / "a.yaml").write_text(quoted, encoding="utf-8")
    (tmp_path / "b.yaml").write_text("- storyboard: 1\n", encoding="utf-8")
    assert main(["validate", "a.yaml", "b.yaml"]) == 1
    out = capsys.readouterr().out
    assert (
        "a.yaml:5:15: error[type]: 'duration' must be a whole number, not a string '5'\n"
        "  hint: write it without quotes: duration: 5\n"
    ) in out
    assert (
        "b.yaml:1:1: error[type]: the file must be a mapping of keys "
        "(storyboard:, scenes:, ...), not a list\n"
    ) in out
    assert out.splitlines()[-1] == "2 errors in 2 files"


def test_render_then_status_on_the_built_in_emulator(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project)
    for name in ("KLING_API_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["render", "film.yaml"]) == 0
    out, err = capsys.readouterr()
    assert "render: using the built-in Kling EMULATOR" in err
    assert "Plan: 3 to submit (6.60 units, ≈ $0.92 on Kling, free on the emulator); 3 new." in out
    assert "film.yaml: film assembled: 10.00 s -> renders/film.mp4" in out
    # The contact sheet is refreshed by the render itself, and shows this render's clips.
    assert out.splitlines()[-1] == "film.yaml: contact sheet renders/film/index.html"
    page = (project / "renders" / "film" / "index.html").read_text(encoding="utf-8")
    assert 'title="plan">unchanged<' in page and 'title="plan">new<' not in page

    (project / "renders" / "film" / "climb.mp4").unlink()
    assert main(["status", "film.yaml"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "film.yaml:"
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["opening", "succeed"],
        ["climb", "succeed"],
        ["coda", "succeed"],
    ]
    assert "est. 2.4" in lines[2] and "2.4 units" in lines[2]
    assert lines[2].endswith("clip deleted (render makes the placeholder again, free)")
    assert lines[1].endswith("emulator clip ok")
    assert lines[4] == "  charged so far: 0 units (every attempt and take)"
    assert lines[5] == "  counted by the emulator: 6.6 units (never billed)"
