"""Rendering against the in-process emulator: every fault survived without paying twice."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from compiler.backends import emulator_backend
from compiler.lockfile import TaskLock, external_task_id
from compiler.media import extract_frame, probe
from compiler.pipeline import compile_file
from compiler.plan import Job, jobs_for
from compiler.run import plan_board, render_all, render_board
from compiler.wire import display_json, record_json, request_digest
from tests.rendering import (
    SCENES,
    FakeTime,
    Recorder,
    assert_paid_once,
    lock_of,
    make_emulator,
    render,
)


def test_render_makes_clips_lockfile_and_film(project: Path) -> None:
    time = FakeTime()
    emulator = make_emulator(time)
    outcome = render(project, emulator)

    assert [r.outcome for r in outcome.results] == ["rendered"] * 3
    assert_paid_once(emulator)
    lock = lock_of(project)
    assert sorted(lock.scenes) == sorted(SCENES)
    for scene, seconds in (("opening", 3.0), ("climb", 4.0), ("coda", 3.0)):
        entry = lock.scenes[scene].takes[1]
        assert entry.status == "succeed"
        assert entry.task_id and entry.external_task_id.startswith("sb-")
        assert entry.clip is not None
        clip = project / "renders" / entry.clip.file
        assert clip == project / "renders" / "film" / f"{scene}.mp4"
        assert abs(probe(clip).duration - seconds) <= 1 / 24
        assert entry.clip.duration == pytest.approx(seconds, abs=1 / 24)
    # std, silent: 0.6 units/s; std with sound: 0.8 units/s (kling-api.md §6.2).
    assert lock.scenes["opening"].takes[1].units_charged == "1.8"
    assert lock.scenes["climb"].takes[1].units_charged == "2.4"
    assert lock.scenes["coda"].takes[1].units_charged == "2.4"
    assert outcome.film == project / "renders" / "film.mp4"
    film = probe(outcome.film)
    assert abs(film.duration - 10.0) <= 1 / 24
    assert film.has_audio  # the coda has sound
    assert not list((project / "renders").rglob("*.part"))
    # The lockfile is sorted JSON with no media in it.
    text = (project / "film.lock").read_text(encoding="utf-8")
    assert json.loads(text)["lock_version"] == 2
    assert len(text) < 4000


def test_first_frame_is_sent_as_base64_and_shows_in_the_clip(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    clip = project / "renders" / "film" / "opening.mp4"
    frame = extract_frame(clip, "first").convert("RGB")
    source = Image.open(project / "coast.png").convert("RGB").resize(frame.size)
    error = ImageStat.Stat(ImageChops.difference(frame, source)).mean
    assert max(error) < 8, error


def test_a_second_render_pays_nothing_and_keeps_the_film(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    film_before = (project / "renders" / "film.mp4").stat().st_mtime_ns
    outcome = render(project, emulator)
    assert [r.outcome for r in outcome.results] == ["reused"] * 3
    assert emulator.stats()["total_creates"] == 3
    assert outcome.film_note == "film unchanged"
    assert (project / "renders" / "film.mp4").stat().st_mtime_ns == film_before


def test_a_deleted_clip_is_downloaded_again_not_paid_again(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    render(project, emulator, kling=True)
    (project / "renders" / "film" / "climb.mp4").unlink()
    outcome = render(project, emulator, kling=True)
    assert {r.scene: r.outcome for r in outcome.results} == {
        "opening": "reused",
        "climb": "downloaded",
        "coda": "reused",
    }
    assert emulator.stats()["total_creates"] == 3


@pytest.mark.parametrize(
    ("kind", "op"),
    [
        ("http_500", "create"),
        ("code_1302", "create"),
        ("code_1303", "create"),
        ("drop_before", "create"),
        ("drop_after", "create"),
        ("slow", "create"),
        ("http_500", "query"),
        ("drop_before", "query"),
        ("slow", "query"),
        ("truncate", "download"),
        ("drop_before", "download"),
        ("http_500", "download"),
    ],
)
def test_every_fault_is_survived_without_a_second_create(project: Path, kind: str, op: str) -> None:
    emulator = make_emulator(FakeTime())
    emulator.faults.add(kind, op, times=2, delay=20.0)
    outcome = render(project, emulator)
    assert [r.outcome for r in outcome.results] == ["rendered"] * 3, [
        str(r.error) for r in outcome.results
    ]
    assert_paid_once(emulator)
    assert outcome.film is not None
    assert not list((project / "renders").rglob("*.part"))


def test_a_busy_account_slows_the_run_but_never_duplicates(project: Path) -> None:
    emulator = make_emulator(FakeTime(), concurrency=1)
    recorder = Recorder()
    outcome = render(project, emulator, concurrency=8, progress=recorder)
    assert [r.outcome for r in outcome.results] == ["rendered"] * 3
    assert_paid_once(emulator)
    assert any(detail == "account busy (1303)" for _, _, detail in recorder.events)


def test_a_failed_task_names_the_scene_and_reason_and_is_retried_next_run(
    project: Path,
) -> None:
    emulator = make_emulator(FakeTime())
    emulator.faults.add("fail_task", "create", match="lights the lamp", message="risk control")
    outcome = render(project, emulator)
    results = {r.scene: r for r in outcome.results}
    assert results["climb"].outcome == "failed"
    task_id = lock_of(project).scenes["climb"].takes[1].task_id
    assert str(results["climb"].error) == f"scene 'climb': task {task_id} failed: risk control"
    assert results["opening"].outcome == results["coda"].outcome == "rendered"
    assert outcome.film is None
    assert "climb" in outcome.film_note
    entry = lock_of(project).scenes["climb"].takes[1]
    assert (entry.status, entry.status_msg, entry.attempt) == ("failed", "risk control", 1)

    retry = render(project, emulator)
    assert {r.scene: r.outcome for r in retry.results}["climb"] == "rendered"
    scene = lock_of(project).scenes["climb"]
    assert scene.takes[1].attempt == 2
    assert scene.takes[1].external_task_id == external_task_id("climb", scene.digest, 1, 2)
    assert [t.status for t in scene.history] == ["failed"]
    assert emulator.stats()["total_creates"] == 4  # one paid retry, nothing else
    assert retry.film is not None


def _job(project: Path, scene: str) -> Job:
    result = compile_file(project / "film.yaml", "film.yaml")
    return next(job for job in jobs_for(result.tasks) if job.scene == scene)


def _intent(project: Path, job: Job) -> str:
    """Leave the lockfile as a run killed just before or after its create leaves it."""
    digest = request_digest(job.request)
    ext = external_task_id(job.scene, digest)
    lock = lock_of(project)
    task = TaskLock(ext, "creating", backend="emulator", digest=digest, take=1)
    lock.install(job.scene, 1, digest, record_json(job.request), task)
    lock.save()
    return ext


def test_a_run_killed_after_create_reattaches_by_external_id(project: Path) -> None:
    """The create reached Kling, but the task id never reached the lockfile."""
    emulator = make_emulator(FakeTime())
    job = _job(project, "coda")
    ext = _intent(project, job)

    async def killed_runs_create() -> None:
        client = emulator_backend(emulator).client()
        await client.create_task({**display_json(job.request), "external_task_id": ext})
        await client.aclose()

    asyncio.run(killed_runs_create())
    outcome = render(project, emulator)
    assert [r.outcome for r in outcome.results] == ["rendered"] * 3
    assert_paid_once(emulator)
    assert outcome.film is not None


def test_a_run_killed_before_create_creates_once(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    _intent(project, _job(project, "coda"))
    render(project, emulator)
    assert_paid_once(emulator)


def test_a_run_killed_mid_poll_reattaches_by_task_id(project: Path) -> None:
    time = FakeTime()
    emulator = make_emulator(time)
    kling = replace(emulator_backend(emulator, poll_interval=5.0), name="kling")
    render(project, emulator, only={"opening"}, backend=kling)
    lock = lock_of(project)
    entry = lock.scenes["opening"].takes[1]
    # Rewind the lockfile to "processing", as a run killed while polling leaves it.
    entry.status, entry.clip, entry.video_url = "processing", None, None
    lock.save()
    (project / "renders" / "film" / "opening.mp4").unlink()
    recorder = Recorder()
    outcome = render(project, emulator, progress=recorder, backend=kling)
    assert {r.scene: r.outcome for r in outcome.results}["opening"] == "rendered"
    assert_paid_once(emulator)
    assert ("opening", "processing", f"re-attached to task {entry.task_id}") in recorder.events


def test_slow_is_not_failed(project: Path) -> None:
    emulator = make_emulator(FakeTime(), latency=600.0)
    outcome = render(project, emulator, poll_timeout=60.0, kling=True)
    assert [r.outcome for r in outcome.results] == ["pending"] * 3
    lock = lock_of(project)
    assert {e.takes[1].status for e in lock.scenes.values()} <= {"submitted", "processing"}
    later = render(project, emulator, kling=True)
    assert [r.outcome for r in later.results] == ["rendered"] * 3
    assert_paid_once(emulator)


def test_an_unreachable_api_fails_loudly_and_the_next_run_pays_once(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    emulator.faults.add("drop_before", "create", times=1000)
    outcome = render(project, emulator)
    assert [r.outcome for r in outcome.results] == ["failed"] * 3
    error = str(outcome.results[0].error)
    assert error.endswith(
        "(tried 8 times; run `storyboard render` again later: nothing is paid twice)"
    )
    assert {e.takes[1].status for e in lock_of(project).scenes.values()} == {"creating"}
    assert emulator.stats()["total_creates"] == 0
    emulator.faults.clear()
    assert [r.outcome for r in render(project, emulator).results] == ["rendered"] * 3
    assert_paid_once(emulator)


def test_an_emulator_clip_that_is_gone_is_made_again_for_free(project: Path) -> None:
    render(project, make_emulator(FakeTime()))
    (project / "renders" / "film" / "coda.mp4").unlink()
    fresh = make_emulator(FakeTime())  # the old in-process emulator, and its clips, are gone
    outcome = render(project, fresh)
    assert {r.scene: r.outcome for r in outcome.results}["coda"] == "rendered"
    assert fresh.stats()["total_creates"] == 1
    assert lock_of(project).scenes["coda"].takes[1].attempt == 2


def test_a_kling_clip_that_is_gone_asks_for_force(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    kling = replace(emulator_backend(emulator, poll_interval=5.0), name="kling")
    result = compile_file(project / "film.yaml", "film.yaml")
    plan = plan_board(result, "kling", project / "renders")
    asyncio.run(render_board(result, plan, kling, project / "renders", Recorder(), preview=False))
    (project / "renders" / "film" / "coda.mp4").unlink()
    gone = replace(kling, transport=make_emulator(FakeTime()).transport())
    plan = plan_board(result, "kling", project / "renders")
    assert [str(t.action) for t in plan.takes] == ["reuse", "reuse", "download"]
    outcome = asyncio.run(
        render_board(result, plan, gone, project / "renders", Recorder(), preview=False)
    )
    coda = {r.scene: r for r in outcome.results}["coda"]
    assert coda.outcome == "failed"
    assert str(coda.error).startswith("scene 'coda': its clip can no longer be downloaded (")
    assert str(coda.error).endswith("`storyboard render --force coda` pays for it again")


def test_storyboards_rendered_together_share_the_account(project: Path) -> None:
    (project / "film2.yaml").write_text(
        (project / "film.yaml").read_text(encoding="utf-8").replace("mode: std", "mode: pro"),
        encoding="utf-8",
    )
    emulator = make_emulator(FakeTime(), concurrency=2)
    results = [compile_file(project / name, name) for name in ("film.yaml", "film2.yaml")]

    class Display(Recorder):
        def for_board(self, board: str) -> Recorder:
            return self

    display = Display()
    backend = emulator_backend(emulator, poll_interval=5.0)
    plans = {r.path: plan_board(r, "emulator", project / "renders") for r in results}
    outcomes = asyncio.run(
        render_all(results, plans, backend, project / "renders", display, concurrency=2)  # type: ignore[arg-type]
    )
    assert [o.film is not None for o in outcomes] == [True, True]
    assert emulator.stats()["total_creates"] == 6
    # Two boards, one account of 2 slots: the shared limit never asked for a third.
    assert not [e for e in display.events if e[2] == "account busy (1303)"]
