"""One render run: plan → (the CLI gates money on the plan) → execute → film → contact sheet.

`plan_board` makes the plan `render` prints and prices; `render_all` carries out exactly
those plans, then assembles each film and refreshes its contact sheet (README "Render").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from .backends import Backend
from .cache import Cache
from .execute import AccountSlots, Executor, ImageResult, Progress, SceneResult, SoundResult
from .film import assemble_animatic, assemble_film
from .lockfile import Lockfile
from .pipeline import CompileResult
from .plan import ImageJob, Plan, Selection, SoundJob, plan
from .progress import Display


@dataclass(slots=True)
class BoardRender:
    """What one render of one storyboard did."""

    storyboard: str
    results: list[SceneResult] = field(default_factory=list)
    film: Path | None = None
    film_note: str = ""
    film_detail: str = ""  # how the film was joined: copied, or what was re-encoded and why
    timeline: Path | None = None  # renders/NAME.otio
    captions: Path | None = None  # renders/NAME.srt, when scenes with sound quote dialogue
    preview: Path | None = None
    notes: list[str] = field(default_factory=list)  # warnings: what failed beside the clips
    stills: list[ImageResult] = field(default_factory=list)  # `--stills`
    animatic: Path | None = None  # renders/NAME.animatic.mp4
    sounds: list[SoundResult] = field(default_factory=list)  # voices, narration, effects

    @property
    def failed(self) -> list[SceneResult | ImageResult]:
        scenes: list[SceneResult | ImageResult] = [
            r for r in self.results if r.outcome in ("failed", "pending")
        ]
        return scenes + [r for r in (*self.stills, *self.sounds) if r.outcome == "failed"]


def plan_board(
    result: CompileResult,
    backend: str,
    renders: Path,
    selection: Selection | None = None,
    cache: Cache | None = None,
    *,
    stills: bool = False,
) -> Plan:
    """The plan of one compiled storyboard against its lockfile. No writes; no request to
    Kling (the cache, when one is set, is asked which clips it holds)."""
    return plan(
        result.tasks,
        Lockfile.for_storyboard(result.file),
        backend,
        renders / result.file.stem,
        elements=dict(result.board.refs.elements) if result.board else {},
        selection=selection or Selection(),
        cache=cache,
        images=image_jobs(result),
        stills=still_jobs(result, selection or Selection()) if stills else None,
        sounds=sound_jobs(result, selection),
        voices=voice_jobs(result),
    )


def sound_jobs(result: CompileResult, selection: Selection | None = None) -> list[SoundJob]:
    """Each enabled scene's narration (one TTS call) and sound effect, in scene order;
    `--force SCENE` makes them again too."""
    forced = (selection or Selection()).force
    jobs = []
    for task in result.tasks:
        if not task.enabled:
            continue
        force = task.scene in forced
        if task.narration is not None:
            units, usd = task.narration_units, task.narration_usd
            jobs.append(SoundJob("speech", task.scene, task.narration, units, usd, force))
        if task.sfx is not None:
            jobs.append(
                SoundJob("effect", task.scene, task.sfx, task.sfx_units, task.sfx_usd, force)
            )
    return jobs


def voice_jobs(result: CompileResult) -> dict[str, SoundJob]:
    """The custom voices the storyboard uses, by name, as calls to plan."""
    return {v.name: SoundJob("voice", v.name, v.request, v.units, v.usd) for v in result.voices}


def image_jobs(result: CompileResult) -> dict[str, ImageJob]:
    """The generated image refs of a compiled storyboard, as image tasks to plan."""
    return {
        made.name: ImageJob("image", made.name, made.request, made.units, made.usd)
        for made in result.images
    }


def still_jobs(result: CompileResult, selection: Selection) -> list[ImageJob]:
    """One still per shot of every enabled scene the selection wants (README "Stills")."""
    jobs = []
    for task in result.tasks:
        if not task.enabled or not selection.wants(task.scene):
            continue
        request = task.request
        seconds: list[float] = [float(s.duration) for s in request.shots] or [
            float(request.duration or task.seconds)
        ]
        for n, still in enumerate(task.stills, 1):
            shot = float(seconds[n - 1] if n <= len(seconds) else seconds[-1])
            key = f"{task.scene}-{n}"
            jobs.append(
                ImageJob("still", key, still, task.still_units, task.still_usd, task.scene, n, shot)
            )
    return jobs


async def render_board(
    result: CompileResult,
    planned: Plan,
    backend: Backend,
    renders: Path,
    progress: Progress,
    *,
    concurrency: int = 4,
    poll_timeout: float = 3600.0,
    slots: AccountSlots | None = None,
    preview: bool = True,
    cache: Cache | None = None,
) -> BoardRender:
    """Carry out `planned`, then assemble the film when every clip exists (or, for a
    `--stills` plan, the animatic)."""
    from .media import probe

    if planned.backend != backend.name:
        raise ValueError(f"a plan for {planned.backend} cannot run on {backend.name}")
    file = result.file
    outcome = BoardRender(result.path)
    client = backend.client()
    try:
        executor = Executor(
            client,
            planned.lock,
            base_dir=file.resolve().parent,
            clips_dir=renders / file.stem,
            backend=backend.name,
            concurrency=concurrency,
            poll_interval=backend.poll_interval,
            sleep=backend.sleep,
            clock=backend.clock,
            poll_timeout=poll_timeout,
            progress=progress,
            probe=lambda path: probe(path).duration,
            slots=slots,
            cache=cache,
        )
        if planned.stills:
            outcome.stills = await executor.run_stills(planned)
        else:
            outcome.results = await executor.run(planned)
            outcome.sounds = executor.sounds
        outcome.notes += executor.notes
    finally:
        await client.aclose()
    if planned.stills:
        outcome.animatic, outcome.film_note = await asyncio.to_thread(
            assemble_animatic, result, planned, outcome.stills, renders
        )
        if preview:
            from .preview import write_preview

            outcome.preview = await asyncio.to_thread(write_preview, result, renders, backend.name)
        return outcome
    made = await asyncio.to_thread(
        assemble_film,
        planned.lock,
        planned.film,
        renders,
        file.stem,
        result.tasks,
        title=result.board.title if result.board else None,
        storyboard=result.path,
        soundtrack=result.board.soundtrack if result.board else None,
        base_dir=file.resolve().parent,
        aspect_ratio=result.board.settings.aspect_ratio if result.board else None,
    )
    outcome.film, outcome.film_note, outcome.film_detail = made.path, made.note, made.detail
    outcome.notes += made.warnings
    outcome.timeline, outcome.captions = made.timeline, made.captions
    if preview:
        from .preview import write_preview

        outcome.preview = await asyncio.to_thread(write_preview, result, renders, backend.name)
    return outcome


async def render_all(
    results: list[CompileResult],
    plans: dict[str, Plan],
    backend: Backend,
    renders: Path,
    display: Display,
    *,
    concurrency: int = 4,
    poll_timeout: float = 3600.0,
    cache: Cache | None = None,
) -> list[BoardRender]:
    """Render several storyboards at once: they share the account's task slots."""
    slots = AccountSlots(concurrency, backend.sleep)
    return list(
        await asyncio.gather(
            *(
                render_board(
                    result,
                    plans[result.path],
                    backend,
                    renders,
                    display.for_board(result.path),
                    concurrency=concurrency,
                    poll_timeout=poll_timeout,
                    slots=slots,
                    cache=cache,
                )
                for result in results
            )
        )
    )
