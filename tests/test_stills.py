"""Stills before paid video, and images Kling generates (issue 11), end to end.

`render --stills` makes one Omni-Image still per shot and an animatic that holds each for
its shot; stills are paid once like clips. A generated image ref is made once, used by
the scenes that show it, and re-made (with exactly those scenes) when its prompt changes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from compiler.backends import emulator_backend
from compiler.cli import main
from compiler.emulator import Emulator
from compiler.media import probe
from compiler.pipeline import compile_file
from compiler.plan import Action, Plan
from compiler.run import BoardRender, plan_board, render_board
from tests.rendering import BOARD, FakeTime, Recorder, lock_of, make_emulator, render
from tests.test_crash import AUTH, KEY, Server, _wait_for, server  # noqa: F401 (a fixture)

SHOTS = ["opening-1", "climb-1", "climb-2", "coda-1"]  # BOARD: 1 + 2 + 1 shots
SECONDS = 3 + 2 + 2 + 3


def _stills(project: Path, emulator: Emulator) -> tuple[Plan, BoardRender]:
    result = compile_file(project / "film.yaml", "film.yaml")
    assert result.ok, [d.headline() for d in result.diagnostics]
    renders = project / "renders"
    plan = plan_board(result, "emulator", renders, stills=True)
    backend = emulator_backend(emulator, poll_interval=5.0)
    done = asyncio.run(render_board(result, plan, backend, renders, Recorder(), preview=False))
    return plan, done


def test_stills_make_one_image_per_shot_and_an_animatic(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    plan, done = _stills(project, emulator)
    assert [s.job.key for s in plan.stills] == SHOTS
    assert [s.action for s in plan.stills] == [Action.SUBMIT] * 4
    assert plan.takes == () and plan.image_units == 32  # 8 image units a still
    assert float(plan.usd) == pytest.approx(32 * 0.0035)
    assert [r.outcome for r in done.stills] == ["submit"] * 4
    stats = emulator.stats()
    assert stats["image_creates"] == 4 and stats["total_creates"] == 0  # no clip at all
    folder = project / "renders" / "film" / "stills"
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"{k}.png" for k in SHOTS)
    assert done.animatic == project / "renders" / "film.animatic.mp4"
    info = probe(done.animatic)
    assert abs(info.duration - SECONDS) <= 1 / 24
    assert (info.width, info.height) == (1280, 720)

    # Paid once: a second run makes nothing; one edited shot makes one still again.
    again, _ = _stills(project, emulator)
    assert [s.action for s in again.stills] == [Action.REUSE] * 4
    assert emulator.stats()["image_creates"] == 4
    board = project / "film.yaml"
    board.write_text(board.read_text("utf-8").replace("He lights the lamp.", "He trims the wick."))
    edited, _ = _stills(project, emulator)
    assert [(s.job.key, s.action) for s in edited.stills if s.action != Action.REUSE] == [
        ("climb-2", Action.SUBMIT)
    ]
    assert emulator.stats()["image_creates"] == 5
    assert lock_of(project).stills["climb-2"].attempt == 1  # a new request, not a retry


GENERATED = BOARD.replace(
    "    coast: coast.png\n",
    "    coast: coast.png\n"
    "    dusk:\n"
    '      generate: "A lighthouse on {{ image.coast }} at dusk, storm clouds"\n',
).replace(
    '    prompt: "The beam sweeps the sea."',
    '    first_frame: dusk\n    prompt: "The beam sweeps the sea."',
)


def test_a_generated_image_is_made_once_and_its_change_rerenders_its_scenes(
    project: Path,
) -> None:
    (project / "film.yaml").write_text(GENERATED, encoding="utf-8")
    emulator = make_emulator(FakeTime())
    outcome = render(project, emulator)
    assert [r.outcome for r in outcome.results] == ["rendered"] * 3
    stats = emulator.stats()
    assert (stats["image_creates"], stats["total_creates"]) == (1, 3)
    made = lock_of(project).images["dusk"]
    assert made.status == "succeed" and made.file == "images/dusk.png" and made.sha256
    render(project, emulator)  # nothing changed: nothing made
    assert (emulator.stats()["image_creates"], emulator.stats()["total_creates"]) == (1, 3)

    board = project / "film.yaml"
    board.write_text(GENERATED.replace("storm clouds", "clear sky"), encoding="utf-8")
    result = compile_file(board, "film.yaml")
    plan = plan_board(result, "emulator", project / "renders")
    assert [(t.job.scene, t.action) for t in plan.takes] == [
        ("opening", Action.REUSE),
        ("climb", Action.REUSE),
        ("coda", Action.SUBMIT),  # the only scene that shows the image
    ]
    assert [(i.job.key, i.action) for i in plan.images] == [("dusk", Action.SUBMIT)]
    render(project, emulator)
    assert (emulator.stats()["image_creates"], emulator.stats()["total_creates"]) == (2, 4)


def test_stills_are_priced_and_the_budget_gate_counts_them(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("KLING_API_KEY", "a-real-looking-key")
    monkeypatch.setenv("KLING_BASE_URL", "https://api-singapore.klingai.com")
    (project / "film.yaml").write_text(
        BOARD.replace("title: Test Film", "title: T\nbudget_usd: 0.05"), "utf-8"
    )
    assert main(["plan", "film.yaml", "--stills", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["action"], r["image_units"]) for r in doc["images"]] == [
        (key, "submit", 8.0) for key in SHOTS
    ]
    assert doc["totals"]["image_units"] == 32.0 and doc["totals"]["usd"] == pytest.approx(0.112)
    # The autouse network guard turns any request into a crash: exit 4 proves none was made.
    assert main(["render", "film.yaml", "--stills"]) == 4
    err = capsys.readouterr().err
    assert "render: refused: about $0.11 of paid work (film.yaml: $0.11, budget_usd $0.05)" in err


def test_stills_against_storyboard_emulator_killed_resumed_and_edited(
    tmp_path: Path,
    server: Server,  # noqa: F811 (the fixture)
) -> None:
    project = tmp_path / "film"
    project.mkdir()
    from tests.test_crash import BOARD as CRASH_BOARD

    (project / "film.yaml").write_text(CRASH_BOARD, encoding="utf-8")
    env = {**__import__("os").environ, "KLING_API_KEY": KEY, "KLING_BASE_URL": server.url}
    command = [sys.executable, "-m", "compiler", "render", "film.yaml", "--stills"]
    command += ["--backend", "kling", "--yes", "--poll-interval", "0.2"]
    first = subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _wait_for(lambda: server.get("/_emulator/stats")["image_creates"] >= 1, "a still's create")
    first.kill()
    first.communicate()

    def run() -> None:
        done = subprocess.run(
            command, cwd=project, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr

    run()
    stats = server.get("/_emulator/stats")
    assert stats["image_creates"] == 3  # the crash board: three single-shot scenes
    assert set(stats["images"].values()) == {1}
    animatic = probe(project / "renders" / "film.animatic.mp4")
    assert abs(animatic.duration - (3 + 4 + 3)) <= 1 / 24
    assert not [p for p in project.rglob("*") if p.name.endswith((".part", ".tmp"))]
    run()  # nothing changed: no image made
    assert server.get("/_emulator/stats")["image_creates"] == 3
    board = project / "film.yaml"
    board.write_text(board.read_text("utf-8").replace("Gulls wheel", "Terns wheel"), "utf-8")
    run()  # one shot edited: its still alone is made again
    assert server.get("/_emulator/stats")["image_creates"] == 4
    assert server.get("/_emulator/stats")["total_creates"] == 0  # and never a clip
    assert AUTH  # the server fixture's credentials were used for stats


def test_an_undone_shot_edit_takes_its_earlier_still_back_free(project: Path) -> None:
    from dataclasses import replace

    emulator = make_emulator(FakeTime())
    backend = replace(emulator_backend(emulator, poll_interval=5.0), name="kling")  # as Kling
    board, renders = project / "film.yaml", project / "renders"

    def stills() -> Plan:
        result = compile_file(board, "film.yaml")
        plan = plan_board(result, "kling", renders, stills=True)
        asyncio.run(render_board(result, plan, backend, renders, Recorder(), preview=False))
        return plan

    stills()
    edited = BOARD.replace("He lights the lamp.", "He trims the wick.")
    board.write_text(edited, encoding="utf-8")
    stills()
    made = emulator.stats()["image_creates"]
    board.write_text(BOARD, encoding="utf-8")  # the edit undone
    plan = stills()
    rows = {s.job.key: (s.action, s.reasons) for s in plan.stills if s.action != Action.REUSE}
    assert rows == {
        "climb-2": (
            Action.DOWNLOAD,
            ("image not on disk: downloaded again, free", "as made before the last edit"),
        )
    }
    assert emulator.stats()["image_creates"] == made  # taken back, not made again
    lock = lock_of(project)
    [replaced] = lock.image_history["stills"]["climb-2"]  # the edited shot's still
    assert replaced.digest != lock.stills["climb-2"].digest
    assert lock.stills["climb-2"].intact(renders / "film") is not None
