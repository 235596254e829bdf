"""Show render progress: a rich bar per scene on a terminal, plain lines anywhere else."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

# How far along each state is, for the bars.
_STEPS = {
    "queued": 0,
    "creating": 1,
    "submitted": 2,
    "processing": 3,
    "succeed": 4,
    "downloading": 4,
    "done": 5,
    "failed": 5,
    "pending": 5,
}
_STYLE = {"failed": "bold red", "pending": "yellow", "done": "green"}


class PlainProgress:
    """One line per change of state, for logs and CI."""

    def __init__(self, board: str, out: TextIO | None = None) -> None:
        self.board = board
        self.out = out or sys.stdout
        self._last: dict[str, str] = {}

    def update(self, scene: str, state: str, detail: str = "") -> None:
        line = f"{self.board}: {scene}: {state}" + (f" ({detail})" if detail else "")
        if self._last.get(scene) == line:
            return
        self._last[scene] = line
        print(line, file=self.out, flush=True)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass


class RichProgress:
    """A bar per scene that moves through queued → submitted → processing → downloading."""

    def __init__(self, board: str, scenes: list[str], console: Console | None = None) -> None:
        self.board = board
        self.console = console or Console()
        self.bars = Progress(
            TextColumn("[bold]{task.fields[scene]:<24}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[state]:<12}"),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[detail]}"),
            console=self.console,
        )
        self.tasks: dict[str, TaskID] = {
            scene: self.bars.add_task(
                scene, total=_STEPS["done"], scene=scene, state="queued", detail=""
            )
            for scene in scenes
        }
        self.started = time.monotonic()

    def update(self, scene: str, state: str, detail: str = "") -> None:
        task = self.tasks.get(scene)
        if task is None:
            return
        style = _STYLE.get(state)
        shown = f"[{style}]{state}[/]" if style else state
        self.bars.update(task, completed=_STEPS.get(state, 0), state=shown, detail=detail[:60])
        if state == "failed":
            self.console.print(f"[bold red]{self.board}: {scene} failed:[/] {detail}")

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.bars.stop()
