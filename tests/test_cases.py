"""The golden cases on disk: every valid board compiles to its JSON, every invalid one fails
with exactly the expected diagnostics, exit code 1, no traceback and no file written."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from compiler import wire
from compiler.cli import main
from compiler.emulator.rules import Invalid, check_body, check_image_body
from compiler.pipeline import compile_file
from compiler.request import (
    ElementId,
    ElementToMake,
    FrameFile,
    GeneratedImage,
    LastFrame,
    LocalFile,
    Media,
    Url,
)
from compiler.wire import image_digest, omni_image_json, omni_video_json
from tests.golden import CASES, ROOT, display

VALID = sorted((CASES / "valid").glob("*.yaml"))
INVALID = sorted((CASES / "invalid").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The golden files are made without a render cache: a local voice sample is then a
    diagnostic (sound-sample-local)."""
    monkeypatch.delenv("STORYBOARD_CACHE", raising=False)


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


# -- what the emulator (Kling's rules, read independently) says of every valid case ------


def _kling_value(folder: Path) -> Callable[[Media], Any]:
    """Media as the executor sends them: files as bare Base64, ids as numbers; a generated
    image or a last frame, which exist only at render time, as a stand-in PNG."""
    stand_in = io.BytesIO()
    Image.new("RGB", (1024, 576), "gray").save(stand_in, "PNG")
    made = base64.b64encode(stand_in.getvalue()).decode()

    def value(media: Media) -> Any:
        match media:
            case Url(url):
                return url
            case LocalFile(file, _):
                return base64.b64encode((folder / file).read_bytes()).decode()
            case ElementId(number):
                return number
            case ElementToMake():
                return 1
            case GeneratedImage() | LastFrame() | FrameFile():
                return made

    return value


@pytest.mark.parametrize("case", VALID, ids=lambda p: p.stem)
def test_every_valid_case_lowers_to_bodies_the_emulator_accepts(case: Path) -> None:
    result = compile_file(case, display(case))
    assert result.ok
    value = _kling_value(case.parent)
    for task in result.tasks:
        body = omni_video_json(task.request, value)
        try:
            check_body(body)
        except Invalid as exc:
            pytest.fail(f"scene {task.scene}: {exc}")
        assert bool(task.stills) != bool(task.stills_note), task.scene
        shots = len(task.request.shots) or 1
        assert len(task.stills) in (0, shots), task.scene
        for n, still in enumerate(task.stills, 1):
            try:
                check_image_body(omni_image_json(still, value))
            except Invalid as exc:
                pytest.fail(f"still {n} of scene {task.scene}: {exc}")
    for image in result.images:
        try:
            check_image_body(omni_image_json(image.request, value))
        except Invalid as exc:
            pytest.fail(f"generated image {image.name}: {exc}")


def test_shots_auto_lowers_to_intelligence_with_the_whole_prompt(chdir_root: Path) -> None:
    case = CASES / "valid" / "shots-auto.yaml"
    result = compile_file(case, display(case))
    tasks = {task.scene: task for task in result.tasks}
    request = tasks["after-the-storm"].request
    assert request.auto_shots and request.shots == () and request.multi_shot
    body = tasks["after-the-storm"].payload
    assert body["multi_shot"] is True and body["shot_type"] == "intelligence"
    assert "multi_prompt" not in body and body["duration"] == "15"
    assert body["prompt"].startswith("Based on <<<video_1>>>: shot 1")
    assert body["video_list"] == [
        {"video_url": "https://example.com/storm.mp4", "refer_type": "feature"}
    ]
    # one still for the whole scene, and none with a video
    assert len(tasks["night-watch"].stills) == 1 and tasks["after-the-storm"].stills == ()


def test_a_generated_image_is_known_by_its_request(chdir_root: Path, tmp_path: Path) -> None:
    case = CASES / "valid" / "generated-images.yaml"
    text = case.read_text(encoding="utf-8")
    result = compile_file(case, display(case))
    images = {image.name: image for image in result.images}
    assert list(images) == ["cliff", "portrait", "night"]  # not the disabled scene's poster
    opening = next(task for task in result.tasks if task.scene == "opening")
    first = opening.request.images[0]
    assert first.type == "first_frame"
    assert first.media == GeneratedImage("cliff", image_digest(images["cliff"].request))
    assert images["night"].units == Decimal(16) and images["portrait"].units == Decimal(8)
    assert images["night"].usd == Decimal("0.064")
    assert images["portrait"].request.resolution == "2k"
    assert images["portrait"].request.elements == (ElementId(829301938475),)
    assert images["cliff"].path == ("refs", "images", "cliff")

    def digests(source: str) -> dict[str, str]:
        copy = tmp_path / "valid" / case.name
        copy.parent.mkdir(exist_ok=True)
        (tmp_path / ".git").mkdir(exist_ok=True)  # the project's root
        (tmp_path / "assets").mkdir(exist_ok=True)
        for asset in (CASES / "assets").glob("*.png"):
            (tmp_path / "assets" / asset.name).write_bytes(asset.read_bytes())
        copy.write_text(source, encoding="utf-8")
        compiled = compile_file(copy)
        assert compiled.ok, [d.headline() for d in compiled.diagnostics]
        return {task.scene: wire.request_digest(task.request) for task in compiled.tasks}

    before = digests(text)
    # the image's settings change the scenes that use it, and only those
    after = digests(text.replace("resolution: 4k", "resolution: 2k"))
    assert after["opening"] != before["opening"]
    assert after["lamp-room"] == before["lamp-room"]
    # and so does a file it mentions
    (tmp_path / "assets" / "lamp-copy.png").write_bytes((CASES / "assets" / "map.png").read_bytes())
    after = digests(text.replace("../assets/coast.png", "../assets/lamp-copy.png"))
    assert after["opening"] != before["opening"]
    assert after["lamp-room"] == before["lamp-room"]


def test_hints_cite_the_date_of_the_change_a_user_may_remember() -> None:
    expected = {
        "rule-o1-multi-shot-frames": "since 05/07/2026",
        "rule-multi-shot-end-frame-alone": "since 05/07/2026",
        "rule-shots-with-feature-video": "since 06/17/2026",
        "rule-o1-4k-with-video": "since 04/23/2026",
        "rule-video-duration-o1-12": "since 06/17/2026",
        "rule-duration-o1-feature-video-11": "since 06/17/2026",
    }
    for name, date in expected.items():
        case = CASES / "invalid" / f"{name}.yaml"
        hints = [d.hint or "" for d in compile_file(case, display(case)).diagnostics]
        assert any(date in hint for hint in hints), (name, hints)


def test_the_2026_rules_hold_no_strict_reading_the_change_log_settled() -> None:
    from compiler.model import capabilities, model_data

    assert set(model_data()["strict_readings"]) == {"shot_seconds"}
    omni, o1 = capabilities("kling-v3-omni"), capabilities("kling-video-o1")
    assert omni["multi_shot_frames"] and omni["auto_shots"] and "4k" in omni["modes"]
    assert omni["durations"]["feature_video"] == {"min": 3, "max": 15}
    assert omni["video_input_seconds"] == {"min": 3, "max": 15}
    # kling-video-o1 keeps its older limits
    assert not o1["multi_shot"] and not o1["auto_shots"] and "4k" not in o1["modes"]
    assert o1["durations"]["feature_video"] == {"min": 3, "max": 10}
    assert o1["video_input_seconds"] == {"min": 3, "max": 10}


def test_the_readme_language_example_compiles(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("## The language by example\n\n```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / ".git").mkdir()
    (tmp_path / "assets").mkdir()
    images = {
        "coast.jpg": "dusk.jpg",
        "keeper-front.png": "keeper.png",
        "keeper-side.png": "door.jpg",
    }
    for name, source in images.items():
        (tmp_path / "assets" / name).write_bytes((CASES / "assets" / source).read_bytes())
    board = tmp_path / "film.yaml"
    board.write_text(example, encoding="utf-8")
    result = compile_file(board, "film.yaml")
    assert [d.headline() for d in result.diagnostics if d.is_error] == []
    assert [image.name for image in result.images] == ["cliff"]
    tasks = {task.scene: task for task in result.tasks}
    assert tasks["night-watch"].request.auto_shots
    assert tasks["climb"].request.images[0].media == GeneratedImage(
        "cliff", image_digest(result.images[0].request)
    )
