"""Show render progress: a rich bar per scene on a terminal, plain lines anywhere else.

One display covers every storyboard of a run (they render at the same time, sharing the
account); `for_board` hands each executor a view that prefixes its scenes.
"""

from __future__ import annotations

import sys
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


class Display:
    """The parts both displays share: per-board views, and use as a context manager."""

    def show(self, board: str, scene: str, state: str, detail: str) -> None:
        raise NotImplementedError

    def for_board(self, board: str) -> BoardView:
        return BoardView(self, board)

    def __enter__(self) -> Display:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass


class BoardView:
    """What an executor reports to: its storyboard's rows of the display."""

    def __init__(self, display: Display, board: str) -> None:
        self.display = display
        self.board = board

    def update(self, scene: str, state: str, detail: str = "") -> None:
        self.display.show(self.board, scene, state, detail)


class PlainProgress(Display):
    """One line per change of state, for logs and CI."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._last: dict[tuple[str, str], str] = {}

    def show(self, board: str, scene: str, state: str, detail: str) -> None:
        line = f"{board}: {scene}: {state}" + (f" ({detail})" if detail else "")
        if self._last.get((board, scene)) == line:
            return
        self._last[(board, scene)] = line
        print(line, file=self.out, flush=True)


class RichProgress(Display):
    """A bar per scene that moves through queued → submitted → processing → downloading."""

    def __init__(self, rows: list[tuple[str, str]], console: Console | None = None) -> None:
        self.console = console or Console()
        boards = {board for board, _ in rows}
        names = [f"{_stem(b)}/{s}" if len(boards) > 1 else s for b, s in rows]
        width = min(32, max(map(len, names), default=8))
        self.bars = Progress(
            TextColumn(f"[bold]{{task.fields[scene]:<{width}}}"),
            BarColumn(bar_width=16),
            TextColumn("{task.fields[state]:<11}"),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[detail]}"),
            console=self.console,
        )
        self.tasks: dict[tuple[str, str], TaskID] = {}
        for (board, scene), shown in zip(rows, names, strict=True):
            self.tasks[(board, scene)] = self.bars.add_task(
                shown, total=_STEPS["done"], scene=shown, state="queued", detail=""
            )

    def show(self, board: str, scene: str, state: str, detail: str) -> None:
        task = self.tasks.get((board, scene))
        if task is None:  # e.g. an element being created: print it above the bars
            self.console.print(f"[dim]{board}: {scene}: {state}[/]")
            return
        style = _STYLE.get(state)
        shown = f"[{style}]{state}[/]" if style else state
        self.bars.update(task, completed=_STEPS.get(state, 0), state=shown, detail=detail[:40])
        if state == "failed":
            self.console.print(f"[bold red]{board}: {scene} failed:[/] {detail}")

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


def _stem(board: str) -> str:
    name = board.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0]
