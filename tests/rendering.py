"""Render a small test film against the in-process emulator, in simulated time.

The executor and the emulator share a fake clock that sleeping advances, so a 30 s task
takes no real time and no test ever waits.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from compiler.backends import emulator_backend
from compiler.emulator import Emulator
from compiler.lockfile import Lockfile
from compiler.pipeline import compile_file
from compiler.plan import Plan, Selection
from compiler.run import BoardRender, plan_board, render_board

BOARD = """\
storyboard: 1
title: Test Film
mode: std
aspect_ratio: "16:9"
refs:
  images:
    coast: coast.png
scenes:
  - id: opening
    first_frame: coast
    prompt: "Dolly in over {{ image.coast }} at dusk."
    duration: 3
  - id: climb
    shots:
      - prompt: "The keeper climbs the stairs."
        duration: 2
      - prompt: "He lights the lamp."
        duration: 2
  - id: coda
    sound: on
    prompt: "The beam sweeps the sea."
    duration: 3
"""
SCENES = ["opening", "climb", "coda"]


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def update(self, scene: str, state: str, detail: str = "") -> None:
        self.events.append((scene, state, detail))


def make_emulator(time: FakeTime, **kwargs: Any) -> Emulator:
    options: dict[str, Any] = {
        "latency": 30.0,
        "concurrency": 4,
        "clip_max_side": 160,
        "api_key": "emulator",
    }
    options.update(kwargs)
    return Emulator(clock=time.clock, sleep=time.sleep, **options)


def write_image(path: Path, size: tuple[int, int] = (640, 360), shade: int = 90) -> None:
    """Smooth gradients survive video compression, so pixels can be compared."""
    across = Image.linear_gradient("L").resize(size)
    down = Image.linear_gradient("L").rotate(90).resize(size)
    Image.merge("RGB", (across, down, Image.new("L", size, shade))).save(path)


def render(
    project: Path, emulator: Emulator, *, concurrency: int = 4, **kwargs: Any
) -> BoardRender:
    result = compile_file(project / "film.yaml", "film.yaml")
    assert result.ok, [d.headline() for d in result.diagnostics]
    backend = emulator_backend(emulator, poll_interval=5.0)
    if "backend" in kwargs:  # a Kling backend (an emulator server, or a mock)
        backend = kwargs.pop("backend")
    elif kwargs.pop("kling", False):  # this emulator standing in for Kling: its tasks live on
        backend = replace(backend, name="kling")
    only = kwargs.pop("only", ())
    force = kwargs.pop("force", ())
    selection = Selection(frozenset(only), frozenset(force))
    plan = plan_board(result, backend.name, project / "renders", selection)
    kwargs.setdefault("preview", False)
    return asyncio.run(
        render_board(
            result,
            plan,
            backend,
            project / "renders",
            kwargs.pop("progress", Recorder()),
            concurrency=concurrency,
            **kwargs,
        )
    )


def plan_of(project: Path, backend: str = "emulator", **kwargs: Any) -> Plan:
    result = compile_file(project / "film.yaml", "film.yaml")
    assert result.ok, [d.headline() for d in result.diagnostics]
    selection = Selection(frozenset(kwargs.get("only", ())), frozenset(kwargs.get("force", ())))
    return plan_board(result, backend, project / "renders", selection, kwargs.get("cache"))


def lock_of(project: Path) -> Lockfile:
    return Lockfile.for_storyboard(project / "film.yaml")


def assert_paid_once(emulator: Emulator, scenes: int = 3) -> None:
    stats = emulator.stats()
    assert stats["total_creates"] == scenes
    assert set(stats["creates"].values()) == {1}
