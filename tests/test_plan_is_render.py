"""What `render` shows is what it does (design.md §7), as a property.

A small storyboard goes through a random sequence of edits (prompts, durations, takes,
`selected`, `enabled`, a deleted clip, an undone edit, a switch to Kling credentials).
After each step it is planned and rendered, and the render must have done exactly what
its plan said: as many creates as the plan's submit and remake rows, the planned task
reused or the planned `external_task_id` created, and a film made of the clips the plan
names. First against the in-process emulator in simulated time, then against
`storyboard emulator` as a real server driven through the command line.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compiler.backends import Backend, emulator_backend
from compiler.cli import main
from compiler.emulator import Emulator
from compiler.lockfile import Lockfile
from compiler.pipeline import compile_file
from compiler.plan import Action, Plan
from compiler.run import plan_board, render_board
from tests import test_crash
from tests.rendering import FakeTime, Recorder, make_emulator, write_image

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
HEADER = """\
storyboard: 1
title: Plan Is Render
mode: std
aspect_ratio: "1:1"
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


Board = tuple[Scene, ...]  # in SCENES order
START: Board = (Scene(), Scene(), Scene(duration=4, takes=2, selected=2), Scene())


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
    if kind in ("prompt", "duration", "takes", "enabled"):
        index = SCENES.index(op[1])
        scene = scenes[index]
        if kind == "prompt":
            scene = dataclasses.replace(scene, prompt=op[2])
        elif kind == "duration":
            scene = dataclasses.replace(scene, duration=op[2])
        elif kind == "takes":
            scene = dataclasses.replace(scene, takes=op[2], selected=min(scene.selected, op[2]))
        else:
            scene = dataclasses.replace(scene, enabled=not scene.enabled)
        scenes[index] = scene
    elif kind == "selected":  # another take of a scene that has several
        several = [i for i, scene in enumerate(scenes) if scene.takes > 1]
        if several:
            index = several[op[1] % len(several)]
            scene = scenes[index]
            scenes[index] = dataclasses.replace(scene, selected=scene.selected % scene.takes + 1)
    opening, follow = scenes[0], scenes[1]
    if follow.enabled and not opening.enabled:  # 'follow' continues 'opening'
        return board
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
)


# -- one step: plan, render, and compare ----------------------------------------------------


def plan_and_render(project: Path, emulator: Emulator, backend: Backend) -> Plan:
    """Plan and render `project` on `backend`, and check the render did the plan."""
    result = compile_file(project / "film.yaml", "film.yaml")
    assert result.ok, [d.headline() for d in result.diagnostics]
    renders = project / "renders"
    plan = plan_board(result, backend.name, renders)
    rows = [(t.job.label, str(t.action), t.state) for t in plan.takes]
    before = emulator.stats()["total_creates"]
    outcome = asyncio.run(render_board(result, plan, backend, renders, Recorder(), preview=False))
    sent = emulator.stats()["total_creates"] - before

    # (a) the creates sent are the plan's submit and remake rows
    remakes = sum(t.action is Action.REMAKE for t in plan.takes)
    creating = sum(t.action in (Action.SUBMIT, Action.REMAKE) for t in plan.takes)
    assert sent == creating == plan.creates == sum(t.creates for t in plan.takes), rows
    assert sent == len(plan.paid) + remakes, rows
    if backend.name == "kling":
        assert remakes == 0, rows
    # (b) nothing failed
    assert not outcome.failed, [(r.scene, r.take, str(r.error)) for r in outcome.failed]
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
    # (e) an emulator placeholder never stands in for Kling's work
    if backend.name == "kling":
        assert [t for t in film_tasks if t and t.backend == "emulator"] == [], rows
    # ... and a render leaves nothing to do: planned again, every take is reused
    again = plan_board(result, backend.name, renders)
    assert [str(t.action) for t in again.takes] == ["reuse"] * len(again.takes), [
        (t.job.label, str(t.action), t.state, t.reasons) for t in again.takes
    ]
    return plan


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(OPS, min_size=3, max_size=6), switch=st.one_of(st.none(), st.integers(0, 3)))
def test_a_render_does_what_its_plan_says_through_any_edits(
    steps: list[tuple[Any, ...]], switch: int | None
) -> None:
    if switch is not None:  # half the sequences move to Kling, most of them early
        steps = [*steps[:switch], ("kling",), *steps[switch:]]
    with tempfile.TemporaryDirectory() as folder:
        project = new_project(Path(folder), START)
        emulator = make_emulator(FakeTime(), latency=10.0, clip_max_side=CLIP_SIDE)
        backend = emulator_backend(emulator, poll_interval=5.0)
        plan_and_render(project, emulator, backend)
        board, history = START, [START]
        for op in steps:
            switched = False
            event(f"op {op[0]}")
            if op[0] == "kling":
                switched = backend.name == "emulator"
                kling = emulator_backend(emulator, poll_interval=5.0)
                backend = dataclasses.replace(kling, name="kling")
            elif op[0] == "delete":
                clips = sorted((project / "renders" / "film").glob("*.mp4"))
                clips[op[1] % len(clips)].unlink()
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
            plan = plan_and_render(project, emulator, backend)
            for action in sorted({str(t.action) for t in plan.takes}):
                event(f"{backend.name} plan with {action}")  # --hypothesis-show-statistics
            if switched:  # every take so far was the emulator's: Kling makes each one
                assert {str(t.action) for t in plan.takes} == {"submit"}


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

    def step(board: Board, expect_creates: int) -> None:
        (project / "film.yaml").write_text(board_yaml(board), encoding="utf-8")
        capsys.readouterr()
        assert main(["plan", "film.yaml", "--json", "--backend", "kling"]) == 0
        rows = json.loads(capsys.readouterr().out)["scenes"]
        lock = Lockfile.for_storyboard(project / "film.yaml")
        kept = {}
        for row in rows:
            if row["action"] == "reuse":
                task = lock.task(row["scene"], row["take"])
                assert task is not None and task.clip is not None
                kept[task.clip.file] = sha256(project / "renders" / task.clip.file)
                assert kept[task.clip.file] == task.clip.sha256
        before = server.stats()["total_creates"]
        code = main(
            ["render", "film.yaml", "--backend", "kling", "--yes", "--poll-interval", "0.1"]
        )
        assert code == 0, capsys.readouterr().err
        sent = server.stats()["total_creates"] - before
        creates = [row for row in rows if row["creates"]]
        assert sent == len(creates) == len([row for row in rows if row["paid"]]) == expect_creates
        assert all(row["action"] != "remake" for row in rows)
        for file, digest in kept.items():
            assert sha256(project / "renders" / file) == digest, file
        after = Lockfile.for_storyboard(project / "film.yaml")
        assert after.film is not None
        assert all(
            (task := after.task(scene, take)) is not None and task.backend == "kling"
            for scene, take in [(row["scene"], row["take"]) for row in rows]
        )

    step(START, 5)  # opening, follow, two takes of variants, coda
    coda = edited(START, ("prompt", "coda", 1))
    step(coda, 1)
    (clips / "variants.take2.mp4").unlink()
    step(coda, 0)  # downloaded again, free
    step(START, 0)  # the edit undone: coda's earlier clip is downloaded again
    step(edited(START, ("selected", 0)), 0)  # the film takes variants' other take
    step(edited(START, ("selected", 0)), 0)  # nothing changed: everything reused
