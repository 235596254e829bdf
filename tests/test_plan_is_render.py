"""What `render` shows is what it does (design.md §7), as a property.

A small storyboard with sound (a preset and a custom voice, narration on some scenes, an
effect on one) goes through a random sequence of edits (prompts, durations, takes,
`selected`, `enabled`, a narration line, a scene's narrator, the effect's prompt or
duration, a deleted clip or audio file, an undone edit, a switch to Kling credentials, a
new emulator). After each step it is planned and rendered, and the render must have done
exactly what its plan said: as many video creates as the plan's submit and remake rows,
as many TTS calls, sound-effect tasks and custom voices as its sound rows that create
(and a voice the plan reuses made again, free, only when a new emulator lost it), the
planned task reused or the planned `external_task_id` created, and a film made of the
clips and sounds the plan names. First against the in-process emulator in simulated
time, then against `storyboard emulator` as a real server driven through the command line.

PLAN_IS_RENDER_EXAMPLES runs the property with more examples than the suite's 20.

Every clip is square and 304 px: a continuing scene sends its source's last frame as an
image, and Kling (so the emulator) refuses images with a side under 300 px.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from compiler import mix
from compiler.backends import Backend, emulator_backend
from compiler.cli import main
from compiler.emulator import Emulator
from compiler.lockfile import Lockfile
from compiler.pipeline import compile_file
from compiler.plan import Action, Plan
from compiler.run import plan_board, render_board
from tests import test_crash
from tests.rendering import FakeTime, Recorder, make_emulator, plan_of, render, write_image

CLIP_SIDE = 304  # the smallest even side a continuing scene's first frame may have
SCENES = ("opening", "follow", "variants", "coda")
PROMPTS = {
    "opening": (
        "Dolly in over the coast at dusk.",
        "Crane up over the coast at dawn.",
        "Pan across the coast in fog.",
    ),
    "follow": (
        "The camera keeps moving along the cliff.",
        "The camera drifts down to the rocks.",
        "The camera rises to the lighthouse.",
    ),
    "variants": (
        "The keeper climbs the stairs.",
        "The keeper lights the lamp.",
        "The keeper winds the clockwork.",
    ),
    "coda": (
        "The beam sweeps the sea.",
        "The beam fades at sunrise.",
        "The beam catches a passing ship.",
    ),
}
LINES = {  # narration
    "opening": (
        "The lamp had not been lit for a year.",
        "Nobody had climbed the tower since spring.",
        "The coast was dark that winter.",
    ),
    "follow": (
        "I climbed every night.",
        "I counted every step of the way up.",
        "The wind pushed at the door.",
    ),
    "variants": (
        "He kept the clockwork wound.",
        "He trimmed the wick at dusk.",
        "His hands knew the brass by heart.",
    ),
    "coda": (
        "And the light came back.",
        "Ships found the harbour again.",
        "The beam swept on until morning.",
    ),
}
EFFECTS = ("waves on rocks", "a distant foghorn", "gulls over the harbour")
EFFECT_SECONDS = (None, 3, 5)  # None: the scene's length, kept within 3-10 s
NARRATORS = (None, "narrator", "mira")  # None: the board's narrator
HEADER = """\
storyboard: 1
title: Plan Is Render
mode: std
aspect_ratio: "1:1"
voices:
  narrator: {preset: oversea_male1, language: en}
  mira: {sample: {url: "https://samples.example/mira.wav"}, language: en}
narrator: narrator
refs:
  images:
    coast: coast.png
scenes:
"""
FRAMES = {"opening": "first_frame: coast", "follow": "first_frame: {after: opening}"}


@dataclasses.dataclass(frozen=True)
class Scene:
    prompt: int = 0
    duration: int = 3
    takes: int = 1
    selected: int = 1
    enabled: bool = True
    line: int | None = None  # narration: an index into LINES, or none
    narrator: str | None = None  # the scene's own narrator, or the board's
    sfx: int | None = None  # an effect: an index into EFFECTS, or none
    sfx_seconds: int | None = None


Board = tuple[Scene, ...]  # in SCENES order
START: Board = (
    Scene(line=0),
    Scene(line=0, narrator="mira"),
    Scene(duration=4, takes=2, selected=2),
    Scene(sfx=0),
)


def board_yaml(board: Board) -> str:
    lines = [HEADER.rstrip("\n")]
    for name, scene in zip(SCENES, board, strict=True):
        lines.append(f"  - id: {name}")
        if name in FRAMES:
            lines.append(f"    {FRAMES[name]}")
        if not scene.enabled:
            lines.append("    enabled: false")
        if scene.takes > 1:
            lines.append(f"    takes: {scene.takes}")
            lines.append(f"    selected: {scene.selected}")
        if scene.narrator is not None:
            lines.append(f"    narrator: {scene.narrator}")
        if scene.line is not None:
            lines.append(f'    narration: "{LINES[name][scene.line]}"')
        if scene.sfx is not None and scene.sfx_seconds is None:
            lines.append(f'    sfx: "{EFFECTS[scene.sfx]}"')
        elif scene.sfx is not None:
            lines.append(
                f'    sfx: {{prompt: "{EFFECTS[scene.sfx]}", duration: {scene.sfx_seconds}}}'
            )
        lines.append(f'    prompt: "{PROMPTS[name][scene.prompt]}"')
        lines.append(f"    duration: {scene.duration}")
    return "\n".join(lines) + "\n"


def new_project(root: Path, board: Board) -> Path:
    (root / ".git").mkdir()  # the project root for path checks
    write_image(root / "coast.png", size=(320, 320))
    (root / "film.yaml").write_text(board_yaml(board), encoding="utf-8")
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- edits --------------------------------------------------------------------------------


def edited(board: Board, op: tuple[Any, ...]) -> Board:
    """`board` after the YAML edit `op`; unchanged when `op` would make it invalid."""
    kind = op[0]
    scenes = list(board)
    if kind in ("prompt", "duration", "takes", "enabled", "line", "narrator"):
        index = SCENES.index(op[1])
        scene = scenes[index]
        if kind == "prompt":
            scene = dataclasses.replace(scene, prompt=op[2])
        elif kind == "duration":
            scene = dataclasses.replace(scene, duration=op[2])
        elif kind == "takes":
            scene = dataclasses.replace(scene, takes=op[2], selected=min(scene.selected, op[2]))
        elif kind == "line":
            scene = dataclasses.replace(scene, line=op[2])
        elif kind == "narrator":
            scene = dataclasses.replace(scene, narrator=op[2])
        else:
            scene = dataclasses.replace(scene, enabled=not scene.enabled)
        scenes[index] = scene
    elif kind == "sfx":  # the effect (on the last scene): its prompt, or its duration
        coda = scenes[-1]
        if op[1] == "prompt":
            scenes[-1] = dataclasses.replace(coda, sfx=op[2])
        else:
            scenes[-1] = dataclasses.replace(coda, sfx_seconds=EFFECT_SECONDS[op[2]])
    elif kind == "selected":  # another take of a scene that has several
        several = [i for i, scene in enumerate(scenes) if scene.takes > 1]
        if several:
            index = several[op[1] % len(several)]
            scene = scenes[index]
            scenes[index] = dataclasses.replace(scene, selected=scene.selected % scene.takes + 1)
    if not scenes[0].enabled:  # 'follow' continues 'opening', even while it is disabled
        return board  # (error[continuity-disabled])
    if not any(scene.enabled for scene in scenes):
        return board
    return tuple(scenes)


OPS = st.one_of(
    st.tuples(st.just("prompt"), st.sampled_from(SCENES), st.integers(0, 2)),
    st.tuples(st.just("duration"), st.sampled_from(SCENES), st.sampled_from([3, 4])),
    st.tuples(st.just("selected"), st.integers(0, 3)),
    st.tuples(st.just("takes"), st.sampled_from(SCENES), st.integers(1, 2)),
    st.tuples(st.just("enabled"), st.sampled_from(SCENES)),
    st.tuples(st.just("delete"), st.integers(0, 7)),
    st.tuples(st.just("undo")),
    st.tuples(st.just("kling")),
    st.tuples(st.just("line"), st.sampled_from(SCENES), st.sampled_from([None, 0, 1, 2])),
    st.tuples(st.just("narrator"), st.sampled_from(SCENES), st.sampled_from(NARRATORS)),
    st.tuples(st.just("sfx"), st.sampled_from(["prompt", "duration"]), st.integers(0, 2)),
    st.tuples(st.just("unhear"), st.integers(0, 7)),  # delete an audio file
    st.tuples(st.just("restart")),  # a new emulator (`make render` starts one each time)
)


# -- one step: plan, render, and compare ----------------------------------------------------


SOUND_STATS = {"voice": "voice_creates", "speech": "tts_calls", "effect": "sfx_calls"}
# Outside the suite: PLAN_IS_RENDER_EXAMPLES=500 pytest -k any_edits (every film mixed).
EXAMPLES = int(os.environ.get("PLAN_IS_RENDER_EXAMPLES", "0") or 0)


class Mixes:
    """`compiler.mix.mix_film` with each call's cues recorded: what the film was mixed with.

    With `real` False the film keeps the sound it was assembled with, after the checks
    mix_film makes before it decodes anything: a mix (about 0.3 s a film here) is the
    costliest step of a render by far, and it makes no API call (tests/test_mix.py and
    test_sound_render.py test it). In the suite only the explicit examples mix for real;
    with PLAN_IS_RENDER_EXAMPLES every film is mixed.
    """

    real_mix = mix.mix_film

    def __init__(self, real: bool) -> None:
        self.real = real
        self.calls: list[list[mix.Cue]] = []

    def __call__(
        self, film: Path, dest: Path, *, cues: Sequence[mix.Cue], **kwargs: Any
    ) -> mix.MixResult:
        self.calls.append(list(cues))
        if self.real:
            return Mixes.real_mix(film, dest, cues=cues, **kwargs)
        seconds = mix.probe(film).duration
        for cue in cues:
            assert cue.path.is_file() and 0 <= cue.start < seconds, (cue, seconds)
        assert film == dest
        return mix.MixResult(dest, seconds, -14.0, -2.0, "linear", 0.0, 0.0)


def plan_and_render(
    project: Path,
    emulator: Emulator,
    backend: Backend,
    *,
    renewed: bool = False,
    mixes: Mixes | None = None,
) -> Plan:
    """Plan and render `project` on `backend`, and check the render did the plan.

    `renewed`: the emulator is not the one that rendered before (it may lack a voice).
    `mixes`: the mix, spied on (installed by the caller).
    """
    result = compile_file(project / "film.yaml", "film.yaml")
    assert result.ok, [d.headline() for d in result.diagnostics]
    renders = project / "renders"
    plan = plan_board(result, backend.name, renders)
    rows = [(t.job.label, str(t.action), t.state) for t in plan.takes]
    rows += [(s.job.label, str(s.action), s.state) for s in plan.sounds]
    before = emulator.stats()
    # A custom voice the plan reuses that this emulator never made (a new emulator): the
    # render makes it again, free (README "What render does with sound").
    lost = [
        s.job.key
        for s in plan.sounds
        if s.job.kind == "voice"
        and s.action is Action.REUSE
        and (s.entry is None or s.entry.external_task_id not in before["voices"])
    ]
    assert renewed or lost == [], lost  # the same emulator keeps every voice it made
    # Never a paid create under an external_task_id the emulator already holds (Kling
    # refuses it, and the render would take that task back, free, against its plan): an
    # undone edit takes its earlier record back, and a new create gets a new attempt
    # (test_an_undone_sound_edit_is_planned_as_the_render_does).
    held = {"voice": before["voices"], "effect": before["sfx"], "speech": {}}
    assert [
        s.job.label
        for s in plan.sounds
        if s.action is Action.SUBMIT and s.external_task_id in held[s.job.kind]
    ] == [], rows
    mixed_before = len(mixes.calls) if mixes is not None else 0
    outcome = asyncio.run(render_board(result, plan, backend, renders, Recorder(), preview=False))
    after = emulator.stats()
    sent = after["total_creates"] - before["total_creates"]

    # (a) the creates sent are the plan's submit and remake rows
    remakes = sum(t.action is Action.REMAKE for t in plan.takes)
    creating = sum(t.action in (Action.SUBMIT, Action.REMAKE) for t in plan.takes)
    assert sent == creating == plan.creates == sum(t.creates for t in plan.takes), rows
    assert sent == len(plan.paid) + remakes, rows
    if backend.name == "kling":
        assert remakes == 0, rows
        assert [s for s in plan.sounds if s.action is Action.REMAKE] == [], rows
        assert lost == [], rows  # Kling keeps its voices: a reused one is never checked
    # ... and so are the sound calls: TTS, effects, custom voices (plus those lost)
    for kind, counter in SOUND_STATS.items():
        making = sum(s.creates for s in plan.sounds if s.job.kind == kind)
        if kind == "voice":
            making += len(lost)
        assert after[counter] - before[counter] == making, (counter, rows, lost)
    assert plan.sound_creates == sum(
        s.action in (Action.SUBMIT, Action.REMAKE) for s in plan.sounds
    )
    # (b) nothing failed
    assert not outcome.failed, [
        (getattr(r, "scene", getattr(r, "label", "")), str(r.error)) for r in outcome.failed
    ]
    # (c) the planned task is the one the lockfile now holds
    lock = Lockfile.for_storyboard(project / "film.yaml")
    for planned in plan.takes:
        scene, take = planned.job.scene, planned.job.take
        task = lock.task(scene, take)
        assert task is not None and task.status == "succeed" and task.clip is not None, rows
        if planned.action in (Action.REUSE, Action.DOWNLOAD, Action.REATTACH):
            assert planned.task is not None
            assert task.task_id == planned.task.task_id, (planned.job.label, rows)
            if backend.name == "kling":  # (e) a placeholder is never kept for Kling
                assert planned.task.backend == "kling", (planned.job.label, rows)
        else:
            assert task.backend == backend.name, (planned.job.label, rows)
            if planned.external_task_id is not None:
                assert task.external_task_id == planned.external_task_id, (planned.job.label, rows)
    # ... and the planned sound is the one the lockfile now holds
    check_sounds(plan, lock, renders / "film", backend.name, lost, rows)
    # (d) the film is made of the clips the plan names
    assert lock.film is not None, outcome.film_note
    film_tasks = [lock.task(scene, take) for scene, take in plan.film]
    assert [t.clip.sha256 for t in film_tasks if t and t.clip] == lock.film.clips, rows
    assert len(lock.film.clips) == len(plan.film)
    assert outcome.film == renders / lock.film.file
    assert sha256(renders / lock.film.file) == lock.film.sha256
    for task in film_tasks:
        assert task is not None and task.clip is not None
        assert sha256(renders / task.clip.file) == task.clip.sha256
    # ... and the sounds the plan names, each at its scene (the timeline says what was laid)
    assert outcome.timeline is not None
    laid = timeline_sounds(outcome.timeline)
    film_scenes = [scene for scene, _ in plan.film]
    wanted = {
        ("narration" if s.job.kind == "speech" else "sfx", s.job.key): s
        for s in plan.sounds
        if s.job.kind != "voice"
    }
    assert sorted(laid) == sorted(wanted), (laid, rows)
    assert [scene for kind, scene in laid if kind == "narration"] == [
        scene for scene in film_scenes if ("narration", scene) in wanted
    ]
    for (kind, scene), digest in laid.items():
        records = lock.speech if kind == "narration" else lock.effects
        assert (
            records[scene].sha256 == digest and records[scene].digest == wanted[kind, scene].digest
        )
    assert (lock.film.mix is not None) == bool(wanted), rows
    if mixes is not None and outcome.film_note.startswith("film assembled") and wanted:
        # What the mix was given: each planned sound's file at its scene's first frame.
        assert len(mixes.calls) == mixed_before + 1
        starts, at = {}, 0.0
        for task in film_tasks:
            assert task is not None and task.clip is not None
            starts[film_scenes[len(starts)]] = at
            at += task.clip.duration
        cues = sorted((c.kind, c.path.name, sha256(c.path), c.start) for c in mixes.calls[-1])
        kinds = {"narration": lock.speech, "sfx": lock.effects}
        assert [cue[:3] for cue in cues] == sorted(
            (kind, Path(kinds[kind][scene].file or "").name, kinds[kind][scene].sha256)
            for kind, scene in wanted
        ), (cues, rows)
        for kind, name, _, start in cues:
            assert abs(start - starts[name.split(".")[0]]) < 0.05, (kind, name, start, starts)
    elif mixes is not None:
        assert len(mixes.calls) == mixed_before, outcome.film_note  # unchanged: not mixed
    # (e) an emulator placeholder never stands in for Kling's work
    if backend.name == "kling":
        assert [t for t in film_tasks if t and t.backend == "emulator"] == [], rows
    # ... and a render leaves nothing to do: planned again, every take and sound is reused
    again = plan_board(result, backend.name, renders)
    assert [str(t.action) for t in again.takes] == ["reuse"] * len(again.takes), [
        (t.job.label, str(t.action), t.state, t.reasons) for t in again.takes
    ]
    assert [str(s.action) for s in again.sounds] == ["reuse"] * len(again.sounds), [
        (s.job.label, str(s.action), s.state, s.reasons) for s in again.sounds
    ]
    return plan


def check_sounds(
    plan: Plan, lock: Lockfile, folder: Path, backend: str, lost: list[str], rows: object
) -> None:
    """Each sound row's record after the render: the planned work, made or kept as planned."""
    records = {"voice": lock.voices, "speech": lock.speech, "effect": lock.effects}
    for planned in plan.sounds:
        label, kind = planned.job.label, planned.job.kind
        entry = records[kind].get(planned.job.key)
        assert entry is not None and entry.status == "succeed", (label, rows)
        assert entry.digest == planned.digest, (label, rows)
        kept = planned.action in (Action.REUSE, Action.FETCH, Action.DOWNLOAD, Action.REATTACH)
        if kind == "voice":
            assert entry.voice_id is not None, (label, rows)
            if planned.action is Action.REUSE and planned.job.key not in lost:
                assert planned.entry is not None
                assert (entry.task_id, entry.voice_id) == (
                    planned.entry.task_id,
                    planned.entry.voice_id,
                ), (label, rows)
                continue
        else:
            path = entry.intact(folder)
            assert path is not None and path.parent == folder / "audio", (label, rows)
        if kept and planned.job.key not in lost:
            assert planned.entry is not None
            assert entry.task_id == planned.entry.task_id, (label, rows)
            if backend == "kling":
                assert planned.entry.backend == "kling", (label, rows)
        else:
            assert entry.backend == backend, (label, rows)
            if planned.creates:
                assert entry.external_task_id == planned.external_task_id, (label, rows)


def timeline_sounds(path: Path) -> dict[tuple[str, str], str]:
    """The narration and effects the film's timeline lays, by (kind, scene): their sha256."""
    import opentimelineio as otio

    timeline = otio.adapters.read_from_file(str(path))
    laid: dict[tuple[str, str], str] = {}
    for track in timeline.tracks:
        if track.name not in ("Narration", "Effects"):
            continue
        for clip in track.find_clips():
            about = clip.metadata["storyboard"]
            laid[about["kind"], about["scene"]] = about["sha256"]
    return laid


@settings(
    max_examples=EXAMPLES or 20,
    deadline=None,
    derandomize=not EXAMPLES,  # a longer run outside the suite explores new sequences
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(OPS, min_size=3, max_size=6),
    switch=st.one_of(st.none(), st.integers(0, 3)),
    real_mix=st.just(False),  # the explicit examples mix for real (see Mixes)
)
# A voice a new emulator lost, made again (free) for a narration it has to remake, then
# reused by the next edit's narration; and the same on Kling, where the voice is kept.
@example(steps=[("restart",), ("unhear", 1), ("line", "follow", 2)], switch=None, real_mix=False)
@example(
    steps=[("narrator", "opening", "mira"), ("unhear", 2), ("sfx", "duration", 2)],
    switch=1,
    real_mix=True,
)
def test_a_render_does_what_its_plan_says_through_any_edits(
    steps: list[tuple[Any, ...]], switch: int | None, real_mix: bool
) -> None:
    if switch is not None:  # half the sequences move to Kling, most of them early
        steps = [*steps[:switch], ("kling",), *steps[switch:]]
    mixes = Mixes(real=real_mix or EXAMPLES > 0)
    event("mixed for real" if mixes.real else "mix spied on")
    with tempfile.TemporaryDirectory() as folder, mock.patch.object(mix, "mix_film", mixes):
        project = new_project(Path(folder), START)
        emulator = make_emulator(FakeTime(), latency=10.0, clip_max_side=CLIP_SIDE)
        backend = emulator_backend(emulator, poll_interval=5.0)
        plan_and_render(project, emulator, backend, mixes=mixes)
        board, history, renewed = START, [START], False
        for op in steps:
            switched = False
            event(f"op {op[0]}")
            if op[0] == "kling":
                switched = backend.name == "emulator"
                kling = emulator_backend(emulator, poll_interval=5.0)
                backend = dataclasses.replace(kling, name="kling")
            elif op[0] == "restart" and backend.name == "emulator":
                # Kling's work lives on Kling; only the emulator's own is lost with it.
                emulator = make_emulator(FakeTime(), latency=10.0, clip_max_side=CLIP_SIDE)
                backend = emulator_backend(emulator, poll_interval=5.0)
                renewed = True
            elif op[0] == "delete":
                clips = sorted((project / "renders" / "film").glob("*.mp4"))
                clips[op[1] % len(clips)].unlink()
            elif op[0] == "unhear":
                sounds = sorted((project / "renders" / "film" / "audio").glob("*.*"))
                if sounds:
                    sounds[op[1] % len(sounds)].unlink()
            elif op[0] == "undo":
                if len(history) > 1:
                    history.pop()
                    board = history[-1]
            else:
                changed = edited(board, op)
                if changed != board:
                    board = changed
                    history.append(board)
            (project / "film.yaml").write_text(board_yaml(board), encoding="utf-8")
            plan = plan_and_render(project, emulator, backend, renewed=renewed, mixes=mixes)
            for action in sorted({str(t.action) for t in plan.takes}):
                event(f"{backend.name} plan with {action}")  # --hypothesis-show-statistics
            for sound in plan.sounds:
                lost = sound.job.kind == "voice" and sound.action is Action.REUSE and renewed
                event(
                    f"{backend.name} plan with {sound.job.kind} {sound.action}"
                    + " (renewed)" * lost
                )
            if switched:  # every take and sound so far was the emulator's: Kling makes each
                assert {str(t.action) for t in plan.takes} == {"submit"}
                assert {str(s.action) for s in plan.sounds} <= {"submit"}


CHAIN = """\
storyboard: 1
mode: std
aspect_ratio: "1:1"
refs:
  images:
    coast: coast.png
scenes:
  - id: opening
    first_frame: coast
    prompt: "Dolly in over the coast at dusk."
    duration: 3
  - id: follow
    first_frame: {after: opening}
    prompt: "The camera keeps moving along the cliff."
    duration: 3
"""


@pytest.mark.parametrize("how", ["clip deleted", "edit undone"])
def test_a_source_downloaded_again_does_not_pay_its_continuation_again(
    tmp_path: Path, how: str
) -> None:
    project = new_project(tmp_path, START)
    board = project / "film.yaml"
    board.write_text(CHAIN, encoding="utf-8")
    emulator = make_emulator(FakeTime(), latency=10.0, clip_max_side=CLIP_SIDE)
    kling = dataclasses.replace(emulator_backend(emulator, poll_interval=5.0), name="kling")
    plan_and_render(project, emulator, kling)
    if how == "clip deleted":
        (project / "renders" / "film" / "opening.mp4").unlink()
    else:
        board.write_text(CHAIN.replace("at dusk", "at dawn"), encoding="utf-8")
        plan_and_render(project, emulator, kling)  # both scenes changed: paid, rightly
        board.write_text(CHAIN, encoding="utf-8")
    # 'opening' comes back by a free download of the same clip, so 'follow' would send
    # the request (same last frame, same digest) that Kling already made and was paid for.
    before = emulator.stats()["total_creates"]
    plan = plan_and_render(project, emulator, kling)
    assert [t.job.label for t in plan.paid] == [], [
        (t.job.label, str(t.action), t.state, t.reasons) for t in plan.takes
    ]
    assert emulator.stats()["total_creates"] == before


# -- found by the property: minimal reproducers ---------------------------------------------

UNDONE = """\
storyboard: 1
mode: std
aspect_ratio: "1:1"
voices:
  mira: {sample: {url: "https://samples.example/SAMPLE.wav"}, language: en}
narrator: mira
scenes:
  - id: coda
    narration: "And the light came back."
    sfx: "EFFECT"
    prompt: "The beam sweeps the sea."
    duration: 3
"""


@pytest.mark.parametrize(
    ("kind", "counter", "field", "values"),
    [
        ("effect", "sfx_calls", "EFFECT", ("waves on rocks", "a distant foghorn")),
        ("voice", "voice_creates", "SAMPLE", ("mira", "mira-2")),
    ],
)
def test_an_undone_sound_edit_is_planned_as_the_render_does(
    project: Path, kind: str, counter: str, field: str, values: tuple[str, str]
) -> None:
    """Edit an effect's prompt (or a voice's sample), render, undo the edit, render: each
    render makes exactly the creates its plan shows. Undone, the record that made the work
    before is taken back from the lockfile's sound_history (found by a bug this test was
    written for: the plan said `submit`, paid, and the render took the old task back)."""
    emulator = make_emulator(FakeTime())
    first, second = values
    for value in (first, second, first):
        text = UNDONE.replace(field, value)
        text = text.replace("EFFECT", "waves on rocks").replace("SAMPLE", "mira")
        (project / "film.yaml").write_text(text, encoding="utf-8")
        [planned] = [s for s in plan_of(project).sounds if s.job.kind == kind]
        before = emulator.stats()[counter]
        assert not render(project, emulator).failed
        made = emulator.stats()[counter] - before
        assert made == planned.creates, (value, str(planned.action), planned.external_task_id)


# -- the same contract through the command line, against `storyboard emulator` -------------

KEY = "plan-is-render-key"
# The crash tests' helpers for a real subprocess: a free loopback port, and waiting on it.
_free_port, _wait_for = test_crash._free_port, test_crash._wait_for


class Server:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def stats(self) -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {KEY}"}  # control endpoints take the API's keys
        doc: dict[str, Any] = httpx.get(
            self.url + "/_emulator/stats", headers=auth, timeout=5
        ).json()
        return doc

    def up(self) -> bool:
        try:
            self.stats()
        except httpx.TransportError:
            return False
        return True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = _free_port()
    env = {**os.environ, "KLING_API_KEY": KEY}
    command = [sys.executable, "-m", "compiler", "emulator", "--port", str(port)]
    command += ["--latency", "0.3", "--clip-max-side", str(CLIP_SIDE)]
    with (tmp_path / "emulator.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        running = Server(port)
        try:
            _wait_for(running.up, "the emulator to listen")
            yield running
        finally:
            process.kill()
            process.wait()


def test_the_cli_sends_the_creates_its_plan_json_shows(
    tmp_path: Path,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "project").mkdir()
    project = new_project(tmp_path / "project", START)
    monkeypatch.chdir(project)
    monkeypatch.setenv("KLING_API_KEY", KEY)
    monkeypatch.setenv("KLING_BASE_URL", server.url)
    monkeypatch.delenv("KLING_ACCESS_KEY", raising=False)
    monkeypatch.delenv("KLING_SECRET_KEY", raising=False)
    clips = project / "renders" / "film"

    def step(board: Board, expect_creates: int, expect_sound: int = 0) -> None:
        (project / "film.yaml").write_text(board_yaml(board), encoding="utf-8")
        capsys.readouterr()
        assert main(["plan", "film.yaml", "--json", "--backend", "kling"]) == 0
        shown = json.loads(capsys.readouterr().out)
        rows, sounds = shown["scenes"], shown["sounds"]
        lock = Lockfile.for_storyboard(project / "film.yaml")
        kept = {}
        for row in rows:
            if row["action"] == "reuse":
                task = lock.task(row["scene"], row["take"])
                assert task is not None and task.clip is not None
                kept[task.clip.file] = sha256(project / "renders" / task.clip.file)
                assert kept[task.clip.file] == task.clip.sha256
        before = server.stats()
        code = main(
            ["render", "film.yaml", "--backend", "kling", "--yes", "--poll-interval", "0.1"]
        )
        assert code == 0, capsys.readouterr().err
        stats = server.stats()
        sent = stats["total_creates"] - before["total_creates"]
        creates = [row for row in rows if row["creates"]]
        assert sent == len(creates) == len([row for row in rows if row["paid"]]) == expect_creates
        assert all(row["action"] != "remake" for row in [*rows, *sounds])
        for kind, counter in SOUND_STATS.items():  # each sound call shown, and no other
            shown_calls = [row for row in sounds if row["kind"] == kind and row["creates"]]
            assert stats[counter] - before[counter] == len(shown_calls), (counter, sounds)
        assert sum(row["creates"] for row in sounds) == expect_sound, sounds
        for file, digest in kept.items():
            assert sha256(project / "renders" / file) == digest, file
        after = Lockfile.for_storyboard(project / "film.yaml")
        assert after.film is not None
        assert all(
            (task := after.task(scene, take)) is not None and task.backend == "kling"
            for scene, take in [(row["scene"], row["take"]) for row in rows]
        )

    step(START, 5, 4)  # opening, follow, two takes of variants, coda; mira, 2 lines, an effect
    coda = edited(START, ("prompt", "coda", 1))
    step(coda, 1)
    (clips / "variants.take2.mp4").unlink()
    step(coda, 0)  # downloaded again, free
    step(START, 0)  # the edit undone: coda's earlier clip is downloaded again
    step(edited(START, ("selected", 0)), 0)  # the film takes variants' other take
    spoken = edited(edited(START, ("selected", 0)), ("line", "opening", 1))
    (clips / "audio" / "coda.sfx.wav").unlink()
    step(spoken, 0, 1)  # one TTS call, no clip; the effect downloaded again, free
    step(spoken, 0)  # nothing changed: everything reused
