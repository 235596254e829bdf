"""Benchmark: incremental re-renders pay only for what changed, and planning stays fast.

1. A 20-scene storyboard is rendered through the in-process emulator (simulated time,
   small clips), one scene's prompt is edited, and it is rendered again: prints the
   creates of the second render (target exactly 1) and of a third, no-op render
   (target 0).
2. A 1,000-scene storyboard with a full lockfile (every scene rendered): prints the time
   of `plan` (the median of several runs), with compile time alongside.

    .venv/bin/python bench/incremental.py [--scenes 20] [--plan-scenes 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.backends import emulator_backend  # noqa: E402
from compiler.emulator import Emulator  # noqa: E402
from compiler.lockfile import Clip, Lockfile, TaskLock, external_task_id  # noqa: E402
from compiler.pipeline import compile_file  # noqa: E402
from compiler.plan import Selection  # noqa: E402
from compiler.run import plan_board, render_board  # noqa: E402
from compiler.wire import record_json, request_digest  # noqa: E402


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Quiet:
    def update(self, scene: str, state: str, detail: str = "") -> None:
        pass


def _board(path: Path, scenes: int, edited: int | None = None) -> None:
    lines = ["storyboard: 1", "mode: std", "vars:", "  light: low winter sun", "scenes:"]
    for i in range(scenes):
        verb = "drifts" if i == edited else "rolls"
        lines += [
            f"  - id: s{i:04d}",
            "    shots:",
            f'      - prompt: "Scene {i}: fog {verb} over the quay, {{{{ light }}}}."',
            "        duration: 2",
            f'      - prompt: "Scene {i}: a gull lands on a bollard."',
            "        duration: 2",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _render(board: Path, emulator: Emulator) -> None:
    result = compile_file(board, board.name)
    assert result.ok, [d.headline() for d in result.diagnostics]
    renders = board.parent / "renders"
    plan = plan_board(result, "emulator", renders)
    outcome = asyncio.run(
        render_board(result, plan, emulator_backend(emulator), renders, Quiet(), preview=False)
    )
    failed = outcome.failed
    if failed:
        raise SystemExit(f"{len(failed)} scene(s) failed: {failed[0].error}")


def incremental(folder: Path, scenes: int) -> tuple[int, int, int]:
    time_ = FakeTime()
    emulator = Emulator(
        latency=30, concurrency=8, clip_max_side=96, clock=time_.clock, sleep=time_.sleep
    )
    board = folder / "incremental.yaml"
    _board(board, scenes)
    _render(board, emulator)
    first = emulator.stats()["total_creates"]
    _board(board, scenes, edited=scenes // 2)
    _render(board, emulator)
    second = emulator.stats()["total_creates"] - first
    _render(board, emulator)
    third = emulator.stats()["total_creates"] - first - second
    return first, second, third


def _full_lock(board: Path) -> None:
    """Write the lockfile a finished render of `board` would leave (no clips needed)."""
    result = compile_file(board, board.name)
    lock = Lockfile.for_storyboard(board)
    for task in result.tasks:
        digest = request_digest(task.request)
        clip = Clip(f"{board.stem}/{task.scene}.mp4", "0" * 64, 1, task.seconds)
        done = TaskLock(
            external_task_id(task.scene, digest),
            "succeed",
            task_id=str(10**17 + len(lock.scenes)),
            units_charged=f"{task.units:g}",
            video_url="https://cdn.example/clip.mp4",
            clip=clip,
            digest=digest,
            take=1,
        )
        lock.install(task.scene, 1, digest, record_json(task.request), done)
    lock.save()


def planning(folder: Path, scenes: int, repeat: int) -> tuple[float, float, int]:
    board = folder / "plan.yaml"
    _board(board, scenes)
    _full_lock(board)
    compiles, plans = [], []
    unchanged = 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = compile_file(board, board.name)
        middle = time.perf_counter()
        plan = plan_board(result, "kling", folder / "renders", Selection())
        end = time.perf_counter()
        compiles.append(middle - start)
        plans.append(end - middle)
        unchanged = sum(t.state == "unchanged" for t in plan.takes)
    return statistics.median(compiles), statistics.median(plans), unchanged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--plan-scenes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="storyboard-bench-") as tmp:
        folder = Path(tmp)
        (folder / ".git").mkdir()
        first, second, third = incremental(folder, args.scenes)
        print(f"{args.scenes}-scene storyboard: first render {first} creates")
        print(f"one prompt edited, second render: {second} create(s)  (target exactly 1)")
        print(f"no-op third render:               {third} create(s)  (target 0)")
        compile_s, plan_s, unchanged = planning(folder, args.plan_scenes, args.repeat)
        print(
            f"{args.plan_scenes} scenes against a full lockfile ({unchanged} unchanged): "
            f"compile {compile_s:.3f} s, plan {plan_s:.3f} s (medians of {args.repeat})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
