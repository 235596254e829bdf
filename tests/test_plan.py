"""Plan and pay once: prices, the money gate, incremental re-renders, continuity, takes."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import ImageChops, ImageStat

from compiler.cli import main
from compiler.media import extract_frame, probe
from compiler.pipeline import compile_file
from compiler.plan import Selection, what_changed
from compiler.run import plan_board
from tests.rendering import BOARD, FakeTime, lock_of, make_emulator, render, write_image

# -- prices ---------------------------------------------------------------------------------

# kling-api.md §6.2, units per second: (model, mode) -> (silent, sound, with video input).
PRICE_TABLE = {
    ("kling-v3-omni", "std"): (0.6, 0.8, 0.9),
    ("kling-v3-omni", "pro"): (0.8, 1.0, 1.2),
    ("kling-v3-omni", "4k"): (3.0, 3.0, 3.0),
    ("kling-video-o1", "std"): (0.6, None, 0.9),
    ("kling-video-o1", "pro"): (0.8, None, 1.2),
}


def _estimate(tmp_path: Path, model: str, mode: str, kind: str) -> dict[str, object]:
    """Compile a one-scene board of `kind` (silent, sound, feature, base) and its price."""
    scene = {
        "silent": 'prompt: "Waves at dusk."\n    duration: 10',
        "sound": 'sound: on\n    prompt: "Waves at dusk."\n    duration: 10',
        "feature": (
            "video: {ref: clip, refer_type: feature}\n"
            '    prompt: "After {{ video.clip }}, the sea calms."\n    duration: 10'
        ),
        "base": (
            'video: {ref: clip, refer_type: base}\n    prompt: "Make {{ video.clip }} stormy."'
        ),
    }[kind]
    (tmp_path / ".git").mkdir(exist_ok=True)
    board = tmp_path / f"{model}-{mode}-{kind}.yaml"
    board.write_text(
        f"storyboard: 1\nmodel: {model}\nmode: {mode}\n"
        "refs:\n  videos:\n    clip: {url: 'https://example.com/c.mp4', duration: 7.4}\n"
        f"scenes:\n  - id: one\n    {scene}\n",
        encoding="utf-8",
    )
    result = compile_file(board)
    assert result.ok, [d.headline() for d in result.diagnostics]
    return result.tasks[0].as_json()


PRICE_CASES = [
    (model, mode, kind)
    for (model, mode), (silent, sound, video) in PRICE_TABLE.items()
    for kind in ("silent", "sound", "feature", "base")
    if not (kind == "sound" and sound is None)  # O1 has no native audio (R15)
]


@pytest.mark.parametrize(("model", "mode", "kind"), PRICE_CASES)
def test_the_estimate_is_the_price_table(tmp_path: Path, model: str, mode: str, kind: str) -> None:
    silent, sound, video = PRICE_TABLE[(model, mode)]
    task = _estimate(tmp_path, model, mode, kind)
    rate = {"silent": silent, "sound": sound, "feature": video, "base": video}[kind]
    assert rate is not None
    seconds = 7 if kind == "base" else 10  # a base edit bills the input, 7.4 s -> 7 s (R13)
    assert task["seconds"] == seconds
    assert task["units"] == pytest.approx(rate * seconds)
    assert task["usd"] == pytest.approx(round(rate * seconds * 0.14, 4))


def test_every_price_case_is_enumerated() -> None:
    # 3 v3-omni modes x 4 kinds, 2 O1 modes x 3 kinds (no native audio).
    assert len(PRICE_CASES) == 18


# -- incremental re-renders -----------------------------------------------------------------


def _edit(old: str, new: str) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        board = project / "film.yaml"
        text = board.read_text(encoding="utf-8")
        assert old in text
        board.write_text(text.replace(old, new), encoding="utf-8")

    return apply


def _reorder(project: Path) -> None:
    board = project / "film.yaml"
    head, scenes = BOARD.split("scenes:\n")
    opening, climb, coda = ("  - id:" + part for part in scenes.split("  - id:")[1:])
    board.write_text(head + "scenes:\n" + coda + opening + climb, encoding="utf-8")


def _new_image(project: Path) -> None:
    write_image(project / "coast.png", shade=200)


VARS_BOARD = BOARD.replace("refs:", "vars:\n  hour: dusk\n  unused: nothing\nrefs:").replace(
    "at dusk.", "at {{ hour }}."
)


@pytest.mark.parametrize(
    ("edit", "creates", "changed"),
    [
        (_edit("Dolly in over", "Crane up over"), 1, {"opening": ["prompt"]}),
        (_edit("He lights the lamp.", "He trims the wick."), 1, {"climb": ["shot 2 prompt"]}),
        (
            _edit("duration: 3\n  - id: climb", "duration: 4\n  - id: climb"),
            1,
            {"opening": ["duration"]},
        ),
        (_new_image, 1, {"opening": ["coast.png (file content)"]}),
        (_edit("mode: std", "mode: pro"), 3, {}),
        (_edit("title: Test Film", "title: Another Title  # renamed"), 0, {}),
        (_edit("storyboard: 1", "# a comment\nstoryboard: 1  # and another"), 0, {}),
        (_reorder, 0, {}),
    ],
    ids=["prompt", "shot", "duration", "image-file", "mode", "title", "comments", "reorder"],
)
def test_an_edit_resubmits_exactly_the_scenes_it_touches(
    project: Path, edit: Callable[[Path], None], creates: int, changed: dict[str, list[str]]
) -> None:
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    edit(project)
    result = compile_file(project / "film.yaml", "film.yaml")
    plan = plan_board(result, "emulator", project / "renders")
    assert len(plan.paid) == creates
    for take in plan.takes:
        if take.job.scene in changed:
            assert (take.state, list(take.reasons)) == ("changed", changed[take.job.scene])
    outcome = render(project, emulator)
    assert emulator.stats()["total_creates"] == 3 + creates
    assert outcome.film is not None
    render(project, emulator)  # and a no-op render after it pays nothing
    assert emulator.stats()["total_creates"] == 3 + creates


@pytest.mark.parametrize(
    ("edit", "creates"),
    [(_edit("hour: dusk", "hour: dawn"), 1), (_edit("unused: nothing", "unused: else"), 0)],
    ids=["used-var", "unused-var"],
)
def test_vars_resubmit_only_the_scenes_whose_prompts_use_them(
    project: Path, edit: Callable[[Path], None], creates: int
) -> None:
    (project / "film.yaml").write_text(VARS_BOARD, encoding="utf-8")
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    edit(project)
    render(project, emulator)
    assert emulator.stats()["total_creates"] == 3 + creates


def test_what_changed_names_fields_shots_and_files() -> None:
    old = {
        "prompt": "a",
        "duration": "5",
        "multi_prompt": [{"index": 1, "prompt": "x", "duration": "2"}],
        "image_list": [{"image_url": {"file": "a.png", "sha256": "0" * 64}, "type": "first_frame"}],
    }
    new = {
        "prompt": "b",
        "duration": "5",
        "multi_prompt": [{"index": 1, "prompt": "x", "duration": "3"}],
        "image_list": [{"image_url": {"file": "a.png", "sha256": "1" * 64}, "type": "first_frame"}],
        "sound": "on",
    }
    assert what_changed(old, new) == [
        "a.png (file content)",
        "shot 1 duration",
        "prompt",
        "sound",
    ]


# -- the money gate --------------------------------------------------------------------------


@pytest.fixture
def paid_env(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    monkeypatch.setenv("KLING_API_KEY", "a-real-looking-key")
    monkeypatch.setenv("KLING_BASE_URL", "https://api-singapore.klingai.com")
    return project


def test_over_budget_is_refused_with_exit_4_before_any_request(
    paid_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = paid_env / "film.yaml"
    board.write_text(BOARD.replace("title: Test Film", "title: T\nbudget_usd: 0.50"), "utf-8")
    # The autouse network guard turns any request into a crash: exit 4 proves none was made.
    code = main(["render", "film.yaml"])
    out, err = capsys.readouterr()
    assert code == 4
    assert "render: refused: about $0.92 of paid work (film.yaml: $0.92, budget_usd $0.50)" in err
    assert "Plan: 3 to submit (6.60 units, ≈ $0.92); 3 new." in out
    assert not (paid_env / "film.lock").exists()


def test_no_budget_and_no_yes_is_refused(
    paid_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", "film.yaml"]) == 4
    assert "no budget_usd" in capsys.readouterr().err
    assert main(["render", "film.yaml", "--budget", "0.10"]) == 4
    assert "--budget $0.10" in capsys.readouterr().err


def test_the_emulator_is_free(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project)
    for name in ("KLING_API_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    (project / "film.yaml").write_text(BOARD.replace("mode: std", "mode: std\nbudget_usd: 0"))
    assert main(["plan", "film.yaml", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["submit"] == 3
    assert [row["state"] for row in doc["scenes"]] == ["new", "new", "new"]


# -- plan, continuity, takes, disabled scenes, --force --------------------------------------

CHAIN = """\
storyboard: 1
mode: std
refs:
  images:
    coast: coast.png
scenes:
  - id: opening
    first_frame: coast
    prompt: "Dolly in over {{ image.coast }}."
    duration: 3
  - id: follow
    first_frame: {after: opening}
    prompt: "The camera keeps moving along the cliff."
    duration: 3
  - id: ending
    enabled: false
    prompt: "Fade to black."
    duration: 3
"""


def test_continuity_starts_a_scene_from_the_last_frame_of_another(project: Path) -> None:
    (project / "film.yaml").write_text(CHAIN, encoding="utf-8")
    emulator = make_emulator(FakeTime(), clip_max_side=640)
    outcome = render(project, emulator)
    assert {r.scene: r.outcome for r in outcome.results} == {
        "opening": "rendered",
        "follow": "rendered",
    }
    clips = project / "renders" / "film"
    last = extract_frame(clips / "opening.mp4", "last")
    first = extract_frame(clips / "follow.mp4", "first")
    assert first.size == last.size
    assert max(ImageStat.Stat(ImageChops.difference(first, last)).mean) < 8
    assert abs(probe(project / "renders" / "film.mp4").duration - 6.0) <= 1 / 24

    # Editing the source re-renders it and its follower; nothing else is paid.
    text = CHAIN.replace("Dolly in over", "Crane up over")
    (project / "film.yaml").write_text(text, encoding="utf-8")
    plan = plan_board(
        compile_file(project / "film.yaml", "film.yaml"), "emulator", project / "renders"
    )
    assert [(t.job.scene, t.state) for t in plan.takes] == [
        ("opening", "changed"),
        ("follow", "changed"),
    ]
    assert plan.disabled == ("ending",)
    render(project, emulator)
    assert emulator.stats()["total_creates"] == 4
    render(project, emulator)
    assert emulator.stats()["total_creates"] == 4


def test_only_a_continuing_scene_starts_from_its_kept_source(project: Path) -> None:
    (project / "film.yaml").write_text(CHAIN, encoding="utf-8")
    emulator = make_emulator(FakeTime(), clip_max_side=640)
    render(project, emulator)
    text = CHAIN.replace("keeps moving along", "glides along")
    (project / "film.yaml").write_text(text, encoding="utf-8")
    (project / "renders" / "film" / "opening.last.png").unlink()  # saved again from the clip
    result = compile_file(project / "film.yaml", "film.yaml")
    plan = plan_board(result, "emulator", project / "renders", Selection(frozenset({"follow"})))
    # The source is outside the run, but its clip is kept: its last frame is known now,
    # so the follower's work (and its external_task_id) is decided by the plan.
    assert [(t.job.scene, t.action, t.reasons) for t in plan.takes] == [
        ("follow", "submit", ("prompt",))
    ]
    assert plan.takes[0].external_task_id is not None
    assert plan.sources == {"opening": project / "renders" / "film" / "opening.mp4"}
    outcome = render(project, emulator, only={"follow"})
    assert [(r.scene, r.outcome) for r in outcome.results] == [("follow", "rendered")]
    assert emulator.stats()["total_creates"] == 3
    assert lock_of(project).task("follow", 1).external_task_id == plan.takes[0].external_task_id  # type: ignore[union-attr]


def test_continuity_must_name_an_earlier_enabled_scene(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    board = project / "film.yaml"
    board.write_text(CHAIN.replace("{after: opening}", "{after: ending}"), encoding="utf-8")
    assert main(["validate", "film.yaml"]) == 1
    assert (
        "film.yaml:12:26: error[continuity-order]: scene 'follow' starts from scene 'ending', "
        "which does not come before it" in capsys.readouterr().out
    )
    board.write_text(CHAIN.replace("{after: opening}", "{after: openin}"), encoding="utf-8")
    assert main(["validate", "film.yaml"]) == 1
    out = capsys.readouterr().out
    assert "film.yaml:12:26: error[continuity-unknown]: no scene 'openin' to continue from" in out
    assert "hint: did you mean 'opening'?" in out


TAKES = BOARD.replace(
    '    prompt: "The beam sweeps the sea."', '    takes: 2\n    prompt: "The beam sweeps the sea."'
)


def test_takes_render_variants_and_selected_picks_one_without_api_calls(project: Path) -> None:
    (project / "film.yaml").write_text(TAKES, encoding="utf-8")
    emulator = make_emulator(FakeTime())
    outcome = render(project, emulator)
    assert sorted((r.scene, r.take) for r in outcome.results) == [
        ("climb", 1),
        ("coda", 1),
        ("coda", 2),
        ("opening", 1),
    ]
    stats = emulator.stats()
    assert stats["total_creates"] == 4 and set(stats["creates"].values()) == {1}
    coda = lock_of(project).scenes["coda"].takes
    assert coda[1].external_task_id.endswith("-t1") and coda[2].external_task_id.endswith("-t2")
    assert coda[2].clip is not None and coda[2].clip.file == "film/coda.take2.mp4"
    film = lock_of(project).film
    assert film is not None and coda[1].clip is not None
    assert film.clips[-1] == coda[1].clip.sha256

    (project / "film.yaml").write_text(
        TAKES.replace("takes: 2", "takes: 2\n    selected: 2"), encoding="utf-8"
    )
    outcome = render(project, emulator)
    assert emulator.stats()["total_creates"] == 4
    assert outcome.film_note.startswith("film assembled")
    film = lock_of(project).film
    assert film is not None and film.clips[-1] == coda[2].clip.sha256


def test_disabled_scenes_are_skipped_and_left_out_of_the_film(project: Path) -> None:
    text = BOARD.replace("  - id: climb\n", "  - id: climb\n    enabled: false\n")
    (project / "film.yaml").write_text(text, encoding="utf-8")
    emulator = make_emulator(FakeTime())
    outcome = render(project, emulator)
    assert sorted(r.scene for r in outcome.results) == ["coda", "opening"]
    assert emulator.stats()["total_creates"] == 2
    assert outcome.film is not None
    assert abs(probe(outcome.film).duration - 6.0) <= 1 / 24


def test_force_pays_again_and_plan_counts_it(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    result = compile_file(project / "film.yaml", "film.yaml")
    selection = Selection(force=frozenset({"climb"}))
    plan = plan_board(result, "emulator", project / "renders", selection)
    assert [(t.job.scene, t.state) for t in plan.takes if t.paid] == [("climb", "forced")]
    render(project, emulator, force={"climb"})
    assert emulator.stats()["total_creates"] == 4
    scene = lock_of(project).scenes["climb"]
    assert scene.takes[1].attempt == 2 and len(scene.history) == 1
    assert scene.units_charged() == Decimal("4.8")  # 4 s at 0.6 units/s, twice


def test_plan_json_is_stable_and_shows_charged_to_date(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    _edit("Dolly in over", "Crane up over")(project)
    monkeypatch.chdir(project)
    assert main(["plan", "film.yaml", "--json", "--backend", "emulator"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["storyboard"] == "film.yaml"
    assert [(r["scene"], r["state"], r["reasons"]) for r in doc["scenes"]] == [
        ("opening", "changed", ["prompt"]),
        ("climb", "unchanged", []),
        ("coda", "unchanged", []),
    ]
    assert doc["scenes"][0] | {"reasons": None} == {
        "scene": "opening",
        "take": 1,
        "takes": 1,
        "selected": True,
        "shots": 1,
        "seconds": 3.0,
        "mode": "std",
        "sound": "off",
        "units": 1.8,
        "usd": 0.252,
        "state": "changed",
        "reasons": None,
        "action": "submit",
        "paid": True,
        "creates": True,
        "external_task_id": doc["scenes"][0]["external_task_id"],
        "attempt": 1,
        "after": None,
    }
    assert doc["scenes"][0]["external_task_id"].startswith("sb-opening-")
    assert [r["action"] for r in doc["scenes"]] == ["submit", "reuse", "reuse"]
    assert doc["totals"] == {
        "submit": 1,
        "creates": 1,
        "units": 1.8,
        "image_submit": 0,
        "image_creates": 0,
        "image_units": 0.0,
        "sound_submit": 0,
        "sound_creates": 0,
        "sound_units": 0.0,
        "usd": 0.252,
        "charged_units": 6.6,
        "charged_usd": 0.924,
    }


@pytest.mark.parametrize(("answer", "code"), [("n", 4), ("", 4)])
def test_on_a_terminal_render_asks_before_paying(
    paid_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    code: int,
) -> None:
    asked: list[str] = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or answer)
    assert main(["render", "film.yaml"]) == code
    assert asked == [
        "render: this costs about $0.92 (film.yaml: $0.92, no budget_usd). Submit? [y/N] "
    ]
    assert "nothing was submitted" in capsys.readouterr().err


def test_undoing_an_edit_brings_back_the_earlier_clip_unpaid(project: Path) -> None:
    emulator = make_emulator(FakeTime())  # standing in for Kling: its results stay downloadable
    render(project, emulator, kling=True)
    _edit("Dolly in over", "Crane up over")(project)
    render(project, emulator, kling=True)
    assert emulator.stats()["total_creates"] == 4
    _edit("Crane up over", "Dolly in over")(project)
    result = compile_file(project / "film.yaml", "film.yaml")
    plan = plan_board(result, "kling", project / "renders")
    assert [(t.job.scene, t.action, t.state, t.reasons) for t in plan.takes][0] == (
        "opening",
        "download",
        "unchanged",
        ("clip not on disk: downloaded again, free", "as rendered before the last edit"),
    )
    assert plan.paid == ()
    outcome = render(project, emulator, kling=True)
    assert emulator.stats()["total_creates"] == 4
    # Its file was overwritten by the edited clip: downloaded again, not paid again.
    assert {r.scene: r.outcome for r in outcome.results}["opening"] == "downloaded"
