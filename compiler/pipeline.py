"""The compile pipeline: the few lines that name every stage.

load → check_schema → resolve → render_scene → check_scene → lower → estimate
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .diagnostics import Diagnostic, Severity, sort_diagnostics
from .load import load
from .lockfile import external_task_id
from .lower import lower
from .model import REF_KINDS, RenderedScene, Storyboard, Task
from .price import estimate
from .prompts import TemplateBudget, check_vars, render_scene
from .resolve import resolve
from .rules import check_scene, merge_per_scene
from .validate import check_schema


@dataclass(slots=True)
class CompileResult:
    """The outcome for one storyboard file: its tasks, or the reasons there are none."""

    path: str  # as shown in diagnostics
    file: Path  # where it was read from
    board: Storyboard | None = None
    tasks: list[Task] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)

    def as_json(self) -> dict[str, object]:
        return {"storyboard": self.path, "tasks": [task.as_json() for task in self.tasks]}


def compile_file(file: Path, display_path: str | None = None) -> CompileResult:
    """Compile one storyboard file to Kling payloads. No network."""
    doc, problems = load(file, display_path)
    result = CompileResult(doc.path, file, diagnostics=problems)
    if doc.data is None:
        return result
    schema_problems, broken = check_schema(doc)
    # A value the loader already explained (a rejected tag, say) is not reported twice.
    explained = {d.loc for d in problems}
    problems += [d for d in schema_problems if d.loc not in explained]
    board, resolve_problems = resolve(doc, file, broken)
    problems += resolve_problems
    if board is None:
        result.diagnostics = sort_diagnostics(problems)
        return result
    result.board = board
    problems += check_vars(board)
    rendered: list[RenderedScene] = []
    budget = TemplateBudget()
    for scene in board.scenes:
        rs, render_problems = render_scene(board, scene, budget)
        problems += render_problems
        problems += check_scene(board, rs)
        rendered.append(rs)
    problems = merge_per_scene(problems)
    scenes = doc.data.get("scenes")
    every_scene = (
        isinstance(scenes, list)
        and len(rendered) == len(scenes)
        and all(rs.complete for rs in rendered)
    )
    problems += _unused_refs(board, rendered, complete=every_scene)
    if not any(d.is_error for d in problems):
        result.tasks = [_task(board, rs) for rs in rendered if rs.complete]
        problems += _duplicate_payloads(board, result.tasks)
        if any(d.is_error for d in problems):
            result.tasks = []
    result.diagnostics = sort_diagnostics(problems)
    return result


def _task(board: Storyboard, rs: RenderedScene) -> Task:
    video = board.refs.videos.get(rs.scene.video.ref) if rs.scene.video else None
    scene = rs.scene
    cost = estimate(scene, video, board.usd_per_unit)
    return Task(
        scene.id,
        lower(rs),
        cost.seconds,
        cost.units,
        cost.usd,
        cost.note,
        takes=scene.takes,
        selected=scene.selected,
        enabled=scene.enabled,
        after=scene.after,
    )


def _unused_refs(
    board: Storyboard, rendered: list[RenderedScene], *, complete: bool
) -> list[Diagnostic]:
    if not complete:
        return []  # a scene that failed to render may be the one that uses the ref
    used = {
        *(("image", r.name) for rs in rendered for r in rs.images),
        *(("element", r.name) for rs in rendered for r in rs.elements),
        *(("video", r.name) for rs in rendered for r in rs.videos),
    }
    problems = []
    for kind in REF_KINDS:
        for name, ref in board.refs.table(kind).items():
            if (kind, name) not in used:
                problems.append(
                    Diagnostic(
                        board.loc(ref.path, key=True),
                        "unused-ref",
                        f"{kind} '{name}' is never used",
                        f"reference it as {{{{ {kind}.{name} }}}}, or remove it",
                        Severity.WARNING,
                    )
                )
    return problems


def _duplicate_payloads(board: Storyboard, tasks: list[Task]) -> list[Diagnostic]:
    """Two scenes that compile to the same task: a warning, since rendering both is what
    a user who copied a scene means, but each is a separate paid generation.

    Kling keeps `external_task_id` unique per account (R16); it includes the scene id,
    so the two stay apart, unless the ids agree as far as the external id keeps them.
    """
    seen: dict[str, str] = {}
    problems = []
    scenes = {scene.id: scene for scene in board.scenes}
    for task in tasks:
        key = json.dumps(task.payload, sort_keys=True, separators=(",", ":"))
        first = seen.setdefault(key, task.scene)
        if first == task.scene:
            continue
        loc = board.loc((*scenes[task.scene].path, "id"))
        if external_task_id(first, "") == external_task_id(task.scene, ""):
            problems.append(
                Diagnostic(
                    loc,
                    "duplicate-payload",
                    f"scene '{task.scene}' compiles to the same task as scene '{first}', and "
                    "their ids begin alike, so Kling would take them for one task (R16)",
                    "change its prompt or settings, or give one of them a shorter id",
                )
            )
            continue
        problems.append(
            Diagnostic(
                loc,
                "duplicate-payload",
                f"scene '{task.scene}' compiles to the same task as scene '{first}': each is "
                "a separate paid generation",
                "for variants of one scene, use `takes: N` on it instead; to reuse a clip, "
                "cut it in your editor",
                Severity.WARNING,
            )
        )
    return problems
