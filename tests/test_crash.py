"""SIGKILL a real `storyboard render` at the worst moments, run it again, count the creates.

The emulator runs as a real server on 127.0.0.1 (`storyboard emulator`) and the render as
a real subprocess with `--backend kling`, exactly as a user's crashed terminal would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from compiler.media import probe

BOARD = """\
storyboard: 1
mode: std
scenes:
  - id: dawn
    prompt: "Fog lifts over the harbour."
    duration: 3
  - id: noon
    prompt: "Gulls wheel over the market."
    duration: 4
  - id: dusk
    sound: on
    prompt: "The lighthouse beam starts to turn."
    duration: 3
"""
SCENES = ("dawn", "noon", "dusk")
KEY = "crash-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}  # the control endpoints take the API's credentials


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    # Waiting on a real subprocess is the point of these tests; nothing here is timed.
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Server:
    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = process

    def get(self, path: str) -> Any:
        return httpx.get(self.url + path, headers=AUTH, timeout=5).json()

    def fault(self, **fault: object) -> None:
        response = httpx.post(self.url + "/_emulator/faults", json=fault, headers=AUTH, timeout=5)
        response.raise_for_status()

    def clear_faults(self) -> None:
        httpx.delete(self.url + "/_emulator/faults", headers=AUTH, timeout=5).raise_for_status()

    def up(self) -> bool:
        try:
            self.get("/_emulator/stats")
        except httpx.TransportError:
            return False
        return True


@contextmanager
def emulator_server(folder: Path, *flags: str) -> Iterator[Server]:
    """`storyboard emulator` as a server on a free loopback port, with `flags`; its log in
    `folder`. Killed on the way out."""
    port = _free_port()
    log = (folder / "emulator.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "compiler", "emulator", "--port", str(port), *flags],
        env={**os.environ, "KLING_API_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    running = Server(port, process)
    try:
        _wait_for(running.up, "the emulator to listen")
        yield running
    finally:
        process.kill()
        process.wait()
        log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with emulator_server(tmp_path, "--latency", "3", "--clip-max-side", "160") as running:
        yield running


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()
    (tmp_path / "film.yaml").write_text(BOARD, encoding="utf-8")
    return tmp_path


def _render(project: Path, server: Server) -> subprocess.Popen[str]:
    env = {**os.environ, "KLING_API_KEY": KEY, "KLING_BASE_URL": server.url}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "compiler",
            "render",
            "film.yaml",
            "--backend",
            "kling",
            "--yes",
            "--poll-interval",
            "0.2",
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lock(project: Path) -> dict[str, Any]:
    """Each scene's (only) take, as the lockfile has it now."""
    path = project / "film.lock"
    if not path.exists():
        return {}
    scenes = json.loads(path.read_text(encoding="utf-8"))["scenes"]
    return {scene: entry["takes"]["1"] for scene, entry in scenes.items() if entry["takes"]}


def _kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate()  # reaps it and closes its pipes


def _finish(project: Path, server: Server) -> None:
    """Run render again to the end: the film completes and every scene was paid once."""
    server.clear_faults()
    rerun = _render(project, server)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    stats = server.get("/_emulator/stats")
    assert stats["total_creates"] == len(SCENES), stats
    assert set(stats["creates"].values()) == {1}
    assert not [p for p in project.rglob("*") if p.name.endswith((".part", ".tmp"))]
    film = probe(project / "renders" / "film.mp4")
    assert abs(film.duration - 10.0) <= 1 / 24
    assert "film assembled" in out


def test_killed_while_creates_are_in_flight(project: Path, server: Server) -> None:
    server.fault(kind="slow", op="create", times=3, delay=4.0)
    run = _render(project, server)
    _wait_for(
        lambda: (
            len(_lock(project)) == 3
            and all(e["status"] == "creating" for e in _lock(project).values())
        ),
        "every create to be sent",
    )
    _kill(run)
    _finish(project, server)


def test_killed_after_create_before_the_task_id_is_saved(project: Path, server: Server) -> None:
    server.fault(kind="slow", op="create", times=3, delay=4.0)
    run = _render(project, server)
    _wait_for(lambda: server.get("/_emulator/stats")["total_creates"] == 3, "three creates")
    assert all("task_id" not in e for e in _lock(project).values())
    _kill(run)
    _finish(project, server)


def test_killed_mid_poll(project: Path, server: Server) -> None:
    run = _render(project, server)
    _wait_for(
        lambda: len(_lock(project)) == 3 and all("task_id" in e for e in _lock(project).values()),
        "every task id to be saved",
    )
    _kill(run)
    assert all(e["status"] in ("submitted", "processing") for e in _lock(project).values())
    _finish(project, server)


def test_killed_mid_download(project: Path, server: Server) -> None:
    server.fault(kind="slow", op="download", times=3, delay=4.0)
    run = _render(project, server)
    _wait_for(
        lambda: any(e["status"] == "succeed" for e in _lock(project).values()),
        "a task to finish",
    )
    _kill(run)
    _finish(project, server)


def test_a_failed_task_exits_3_naming_the_scene_and_reason(project: Path, server: Server) -> None:
    server.fault(kind="fail_task", op="create", match="Gulls", message="risk control: gulls")
    run = _render(project, server)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 3
    task = _lock(project)["noon"]
    assert task["status"] == "failed"
    assert (
        f"film.yaml: failed: scene 'noon': task {task['task_id']} failed: risk control: gulls"
        in err
    )
    assert "film.yaml: no film yet: 1 scene(s) without a clip (noon)" in out
    # Nothing was substituted: the other scenes are there, the failed one is not.
    clips = sorted(p.name for p in (project / "renders" / "film").glob("*.mp4"))
    assert clips == ["dawn.mp4", "dusk.mp4"]
