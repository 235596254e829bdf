"""Which backend made each task, and the findings of issue 9 that followed from not knowing.

- an emulator placeholder never stands in for Kling's work, and a Kling result serves
  any backend;
- on the emulator, a deleted clip and an undone edit are planned as the creates render
  then sends;
- a render refreshes the contact sheet (tests/test_cli.py) and removes what a render
  killed while assembling left;
- lockfiles of version 1 still load, under a stated rule that never pays twice for Kling;
- the example storyboards' lockfiles are ignored by git, and nobody else's.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from compiler.lockfile import Lockfile
from compiler.pipeline import compile_file
from compiler.plan import Action
from compiler.wire import display_json, request_digest
from tests.rendering import FakeTime, lock_of, make_emulator, plan_of, render
from tests.test_elements import BOARD as ELEMENT_BOARD

ROOT = Path(__file__).resolve().parent.parent


def _actions(project: Path, backend: str) -> list[tuple[str, str, str]]:
    plan = plan_of(project, backend)
    return [(t.job.scene, str(t.action), t.state) for t in plan.takes]


def test_an_emulator_placeholder_never_stands_in_for_kling(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    assert emulator.stats()["total_creates"] == 3
    # Kling credentials are set now: every placeholder is planned as paid work...
    plan = plan_of(project, "kling")
    assert [(t.job.scene, t.action, t.reasons) for t in plan.takes] == [
        ("opening", Action.SUBMIT, ("rendered on the emulator before",)),
        ("climb", Action.SUBMIT, ("rendered on the emulator before",)),
        ("coda", Action.SUBMIT, ("rendered on the emulator before",)),
    ]
    assert len(plan.paid) == 3
    # ...and render sends exactly those three creates, and films Kling's clips.
    outcome = render(project, emulator, kling=True)
    assert [r.outcome for r in outcome.results] == ["rendered"] * 3
    assert emulator.stats()["total_creates"] == 6
    lock = lock_of(project)
    shown = [lock.task(scene, 1) for scene in ("opening", "climb", "coda")]
    assert [task.backend for task in shown if task is not None] == ["kling"] * 3
    assert lock.film is not None
    assert lock.film.clips == [task.clip.sha256 for task in shown if task and task.clip]
    # The placeholders are kept in the ledger, marked as the emulator's.
    assert {t.backend for e in lock.scenes.values() for t in e.history} == {"emulator"}
    assert lock.charged("kling") == lock.charged("emulator")  # same units, only one billed
    # Nothing left to pay for.
    assert [t.action for t in plan_of(project, "kling").takes] == [Action.REUSE] * 3


def test_a_kling_result_serves_the_emulator_backend(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    render(project, emulator, kling=True)
    assert _actions(project, "emulator") == [
        ("opening", "reuse", "unchanged"),
        ("climb", "reuse", "unchanged"),
        ("coda", "reuse", "unchanged"),
    ]
    render(project, emulator)
    assert emulator.stats()["total_creates"] == 3


def test_an_element_made_on_the_emulator_is_made_again_for_kling(project: Path) -> None:
    from tests.rendering import write_image

    write_image(project / "keeper-front.png", shade=40)
    write_image(project / "keeper-side.png", shade=160)
    (project / "film.yaml").write_text(ELEMENT_BOARD, encoding="utf-8")
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    assert [e.action for e in plan_of(project, "emulator").elements] == []  # nothing to make
    plan = plan_of(project, "kling")
    assert [(e.element.name, e.action) for e in plan.elements] == [("keeper", Action.SUBMIT)]
    render(project, emulator, kling=True)
    assert emulator.stats()["element_creates"] == 2
    assert lock_of(project).elements["keeper"].backend == "kling"


def test_on_the_emulator_a_deleted_clip_and_an_undone_edit_are_planned_as_sent(
    project: Path,
) -> None:
    emulator = make_emulator(FakeTime())
    board = project / "film.yaml"
    original = board.read_text(encoding="utf-8")
    render(project, emulator)
    board.write_text(original.replace("Dolly in over", "Crane up over"), encoding="utf-8")
    render(project, emulator)
    board.write_text(original, encoding="utf-8")  # the edit undone
    (project / "renders" / "film" / "climb.mp4").unlink()
    before = emulator.stats()["total_creates"]
    plan = plan_of(project, "emulator")
    # The undone edit's clip was overwritten by the edited one, and the climb is gone:
    # the emulator makes both placeholders again (free), and says so.
    assert [(t.job.scene, str(t.action)) for t in plan.takes] == [
        ("opening", "remake"),
        ("climb", "remake"),
        ("coda", "reuse"),
    ]
    assert plan.paid == ()
    render(project, emulator)
    assert emulator.stats()["total_creates"] - before == plan.creates == 2
    assert [t.action for t in plan_of(project, "emulator").takes] == [Action.REUSE] * 3


def test_a_render_removes_what_a_killed_assembly_left(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    renders = project / "renders"
    # What media.assemble's temp file looks like when its process was SIGKILLed.
    stale = [renders / ".film.mp4.k1l2.part", renders / ".film.mp4.x9y8.part"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    other = renders / ".other.mp4.abcd.part"  # another storyboard's, maybe being written
    other.write_bytes(b"")
    outcome = render(project, emulator)
    assert outcome.film_note == "film unchanged"
    assert not [p for p in stale if p.exists()]
    assert other.exists()


# -- lockfiles of version 1 ------------------------------------------------------------------

COMPILER_SALT_V1 = "storyboard-lowering-1"  # what version 1 salted its digests with


def _v1_digest(payload: dict[str, Any]) -> str:
    """The digest version 1 took: media strings replaced by their content digest."""
    pattern = re.compile(r"^(?:local|frame|element):.*@sha256:([0-9a-f]{64})$")

    def by_content(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: by_content(item) for key, item in value.items()}
        if isinstance(value, list):
            return [by_content(item) for item in value]
        if isinstance(value, str) and (match := pattern.match(value)):
            return f"sha256:{match.group(1)}"
        return value

    canonical = json.dumps(
        {"salt": COMPILER_SALT_V1, "payload": by_content(payload)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_digests_are_those_version_1_took_so_an_upgrade_pays_nothing(project: Path) -> None:
    result = compile_file(project / "film.yaml", "film.yaml")
    for task in result.tasks:
        assert request_digest(task.request) == _v1_digest(display_json(task.request))


def _v1_lock(project: Path) -> None:
    """A lockfile as version 1 wrote it: one scene rendered on Kling, one on the emulator,
    and superseded tasks of both kinds in the ledger."""
    result = compile_file(project / "film.yaml", "film.yaml")
    renders = project / "renders" / "film"
    renders.mkdir(parents=True)
    scenes = {}
    for n, (task, backend) in enumerate(
        zip(result.tasks, ("kling", "emulator", "kling"), strict=True)
    ):
        digest = _v1_digest(task.payload)
        clip = renders / f"{task.scene}.mp4"
        clip.write_bytes(f"clip {n}".encode())
        scenes[task.scene] = {
            "backend": backend,
            "digest": digest,
            "payload": task.payload,
            "takes": {
                "1": {
                    "external_task_id": f"sb-{task.scene}-{digest[:32]}-t1",
                    "status": "succeed",
                    "task_id": str(900 + n),
                    "units_charged": "1.8",
                    "video_url": f"https://cdn.example/{n}.mp4",
                    "clip": {
                        "file": f"film/{task.scene}.mp4",
                        "sha256": hashlib.sha256(clip.read_bytes()).hexdigest(),
                        "bytes": clip.stat().st_size,
                        "duration": 3.0,
                    },
                }
            },
            "history": [
                {
                    "external_task_id": f"sb-{task.scene}-{'e' * 32}-t1",
                    "status": "succeed",
                    "task_id": "old-emulated",
                    "video_url": "http://emulator.invalid/_emulator/clips/1.mp4",
                },
                {
                    "external_task_id": f"sb-{task.scene}-{'f' * 32}-t1",
                    "status": "succeed",
                    "task_id": "old-paid",
                    "video_url": "https://cdn.example/old.mp4",
                },
            ],
        }
    doc = {"lock_version": 1, "storyboard": "film.yaml", "scenes": scenes}
    (project / "film.lock").write_text(json.dumps(doc, indent=2, sort_keys=True), "utf-8")


def test_a_version_1_lockfile_loads_under_the_stated_origin_rule(project: Path) -> None:
    _v1_lock(project)
    lock = Lockfile.for_storyboard(project / "film.yaml")
    assert [lock.task(s, 1).backend for s in ("opening", "climb", "coda")] == [  # type: ignore[union-attr]
        "kling",
        "emulator",
        "kling",
    ]
    # Superseded tasks: the emulator's only on its .invalid host; unknown means Kling's.
    assert [t.backend for t in lock.scenes["opening"].history] == ["emulator", "kling"]
    # Kling's work is reused on Kling (not paid again); the emulator's is paid for once.
    assert _actions(project, "kling") == [
        ("opening", "reuse", "unchanged"),
        ("climb", "submit", "changed"),
        ("coda", "reuse", "unchanged"),
    ]
    # Saved again, it is version 2 and keeps the origins.
    lock.save()
    again = Lockfile.for_storyboard(project / "film.yaml")
    assert json.loads((project / "film.lock").read_text("utf-8"))["lock_version"] == 2
    assert [t.backend for t in again.scenes["opening"].history] == ["emulator", "kling"]
    assert again.task("climb", 1).backend == "emulator"  # type: ignore[union-attr]


# -- git ---------------------------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)
def test_only_the_example_lockfiles_are_ignored_by_git() -> None:
    def ignored(path: str) -> bool:
        check = subprocess.run(
            ["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, check=False
        )
        return check.returncode == 0

    examples = sorted(p.with_suffix(".lock").name for p in (ROOT / "storyboards").glob("*.yaml"))
    assert examples, "the repository ships example storyboards"
    assert all(ignored(f"storyboards/{name}") for name in examples)
    # A storyboard a user writes here keeps its lockfile in git, as the README asks.
    assert not ignored("storyboards/my-film.lock")
    assert not ignored("storyboards/harbour-2.lock")


def test_a_lockfile_save_cut_short_by_a_kill_leaves_nothing_behind(project: Path) -> None:
    render(project, make_emulator(FakeTime()))
    stale = project / ".film.lock.k9x2.tmp"  # what fsutil's atomic write leaves on SIGKILL
    stale.write_text('{"lock_version": 2, "scen', encoding="utf-8")
    other = project / ".other.lock.k9x2.tmp"
    other.write_text("", encoding="utf-8")
    assert lock_of(project).scenes  # the lockfile itself is whole
    assert not stale.exists() and other.exists()
