"""The compile pipeline: the few lines that name every stage.

load → check_schema → resolve → render_image → check_image → render_scene → check_scene
→ lower → estimate
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from .diagnostics import Diagnostic, Severity, sort_diagnostics
from .load import load
from .lockfile import external_task_id
from .lower import lower, lower_image, lower_narration, lower_sfx, lower_stills
from .model import (
    REF_KINDS,
    ImageTask,
    RenderedImage,
    RenderedScene,
    Scene,
    Storyboard,
    Task,
    VoiceTask,
    sound,
)
from .price import estimate, image_units, image_usd, sound_units, sound_usd
from .prompts import TemplateBudget, check_vars, render_image, render_narration, render_scene
from .request import GeneratedImage, ImageRequest, SpeechRequest, VoiceToMake
from .resolve import resolve
from .rules import check_image, check_scene, merge_per_scene
from .validate import check_schema
from .wire import image_digest


@dataclass(slots=True)
class CompileResult:
    """The outcome for one storyboard file: its tasks, or the reasons there are none.

    `images` holds one Omni-Image task per generated image ref that an enabled scene
    uses, in the order of `refs.images`; the scenes' requests carry each as the
    `GeneratedImage` medium of the same name.
    """

    path: str  # as shown in diagnostics
    file: Path  # where it was read from
    board: Storyboard | None = None
    tasks: list[Task] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    images: list[ImageTask] = field(default_factory=list)
    # The custom voices some enabled scene's narration or some used element speaks in,
    # in the order of `voices:` (preset voices need no task).
    voices: list[VoiceTask] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)

    def as_json(self) -> dict[str, object]:
        return {
            "storyboard": self.path,
            "images": [image.as_json() for image in self.images],
            "voices": [voice.as_json() for voice in self.voices],
            "tasks": [task.as_json() for task in self.tasks],
        }


def compile_file(
    file: Path, display_path: str | None = None, *, cache: str | None = None
) -> CompileResult:
    """Compile one storyboard file to Kling payloads. No network.

    `cache` is the render cache URL a render would use (a local voice sample needs an
    s3:// one); by default STORYBOARD_CACHE's.
    """
    if cache is None:
        cache = os.environ.get("STORYBOARD_CACHE")
    doc, problems = load(file, display_path)
    result = CompileResult(doc.path, file, diagnostics=problems)
    if doc.data is None:
        return result
    schema_problems, broken = check_schema(doc)
    # A value the loader already explained (a rejected tag, say) is not reported twice.
    explained = {d.loc for d in problems}
    problems += [d for d in schema_problems if d.loc not in explained]
    board, resolve_problems = resolve(doc, file, broken, cache)
    problems += resolve_problems
    if board is None:
        result.diagnostics = sort_diagnostics(problems)
        return result
    problems += check_vars(board)
    budget = TemplateBudget()
    board, made, image_problems = _generated_images(board, budget)
    problems += image_problems
    result.board = board
    rendered: list[RenderedScene] = []
    narrations: dict[int, SpeechRequest] = {}
    narrated = True  # every narration rendered (else unused voices are not judged)
    for scene in board.scenes:
        rs, render_problems = render_scene(board, scene, budget)
        problems += render_problems
        problems += check_scene(board, rs)
        rendered.append(rs)
        speech, found = _narration(board, scene, budget)
        problems += found
        narrated &= scene.narration is None or speech is not None or scene.narrator is None
        if speech is not None:
            narrations[id(scene)] = speech
    problems = merge_per_scene(problems)
    scenes = doc.data.get("scenes")
    every_scene = (
        isinstance(scenes, list)
        and len(rendered) == len(scenes)
        and all(rs.complete for rs in rendered)
        and all(ri.complete for ri, _ in made.values())
    )
    problems += _unused_refs(board, rendered, made, complete=every_scene)
    problems += _unused_voices(board, rendered, complete=every_scene and narrated)
    if not any(d.is_error for d in problems):
        result.tasks = [
            _task(board, rs, narrations.get(id(rs.scene))) for rs in rendered if rs.complete
        ]
        result.images = _image_tasks(board, rendered, made)
        result.voices = _voice_tasks(board, rendered, result.tasks)
        problems += _duplicate_payloads(board, result.tasks)
        if any(d.is_error for d in problems):
            result.tasks, result.images, result.voices = [], [], []
    result.diagnostics = sort_diagnostics(problems)
    return result


Made = dict[str, tuple[RenderedImage, ImageRequest]]


def _generated_images(
    board: Storyboard, budget: TemplateBudget
) -> tuple[Storyboard, Made, list[Diagnostic]]:
    """Render and check every generated image ref, and give each its medium: the digest
    of its Omni-Image request, so a scene using it changes when the image would."""
    made: Made = {}
    problems: list[Diagnostic] = []
    images = dict(board.refs.images)
    for name, ref in board.refs.images.items():
        if not ref.is_generated:
            continue
        ri, found = render_image(board, ref, budget)
        problems += found + check_image(board, ri)
        request = lower_image(ri)
        made[name] = (ri, request)
        if ri.complete:
            images[name] = replace(ref, generated=GeneratedImage(name, image_digest(request)))
    if not made:
        return board, made, problems
    return replace(board, refs=replace(board.refs, images=images)), made, problems


def _image_tasks(board: Storyboard, rendered: list[RenderedScene], made: Made) -> list[ImageTask]:
    """The generated images some enabled scene uses, in the order they are declared."""
    used = {image.name for rs in rendered if rs.scene.enabled for image in rs.images}
    tasks = []
    for name, (ri, request) in made.items():
        if name in used:
            units = image_units(request)
            usd = image_usd(units, board.usd_per_image_unit)
            tasks.append(ImageTask(name, request, units, usd, ri.ref.path))
    return tasks


def _narration(
    board: Storyboard, scene: Scene, budget: TemplateBudget
) -> tuple[SpeechRequest | None, list[Diagnostic]]:
    """A scene's narration as a TTS request, checked; None when it has none or failed."""
    if scene.narration is None:
        return None, []
    text, problems = render_narration(board, scene, budget)
    if text is None or scene.narrator is None:
        return None, problems
    limit = sound()["narration_chars"]
    if len(text) > limit:
        problems.append(
            Diagnostic(
                board.loc((*scene.path, "narration")),
                "narration-length",
                f"narration is {len(text):,} characters rendered; Kling speaks at most "
                f"{limit:,} in one call",
                "shorten it, or move part of it to the next scene",
            )
        )
        return None, problems
    if not text:
        return None, problems
    return lower_narration(text, board.voices[scene.narrator]), problems


def _voice_tasks(
    board: Storyboard, rendered: list[RenderedScene], tasks: list[Task]
) -> list[VoiceTask]:
    """The custom voices that an enabled scene's narration, or an element an enabled
    scene shows, speaks in: each made once."""
    used: set[VoiceToMake] = set()
    for task in tasks:
        if task.enabled and task.narration is not None:
            if isinstance(task.narration.voice, VoiceToMake):
                used.add(task.narration.voice)
    for rs in rendered:
        if rs.scene.enabled:
            used.update(e.voice for e in rs.elements if isinstance(e.voice, VoiceToMake))
    units = sound_units("voice")
    return [
        VoiceTask(name, voice.request, units, sound_usd(units, board.usd_per_unit), voice.path)
        for name, voice in board.voices.items()
        if voice.request is not None and voice.media in used
    ]


def _unused_voices(
    board: Storyboard, rendered: list[RenderedScene], *, complete: bool
) -> list[Diagnostic]:
    if not complete:
        return []
    used = {scene.narrator for scene in board.scenes if scene.narration is not None}
    spoken = {e.voice for e in board.refs.elements.values() if e.voice is not None}
    return [
        Diagnostic(
            board.loc(voice.path, key=True),
            "unused-voice",
            f"voice '{name}' is never used",
            "name it in `narrator:` or in an element's `voice:`, or remove it",
            Severity.WARNING,
        )
        for name, voice in board.voices.items()
        if name not in used and voice.media not in spoken
    ]


def _task(board: Storyboard, rs: RenderedScene, narration: SpeechRequest | None = None) -> Task:
    video = board.refs.videos.get(rs.scene.video.ref) if rs.scene.video else None
    scene = rs.scene
    cost = estimate(scene, video, board.usd_per_unit)
    request = lower(rs)
    stills, stills_note = lower_stills(rs, request)
    still_units = image_units(stills[0]) if stills else Decimal(0)
    sfx = lower_sfx(scene, cost.seconds)
    tts = sound_units("tts") if narration is not None else Decimal(0)
    effect = sound_units("sfx") if sfx is not None else Decimal(0)
    return Task(
        scene.id,
        request,
        cost.seconds,
        cost.units,
        cost.usd,
        cost.note,
        takes=scene.takes,
        selected=scene.selected,
        enabled=scene.enabled,
        after=scene.after,
        stills=stills,
        stills_note=stills_note,
        still_units=still_units,
        still_usd=image_usd(still_units, board.usd_per_image_unit),
        narration=narration,
        narration_units=tts,
        narration_usd=sound_usd(tts, board.usd_per_unit),
        sfx=sfx,
        sfx_units=effect,
        sfx_usd=sound_usd(effect, board.usd_per_unit),
    )


def _unused_refs(
    board: Storyboard, rendered: list[RenderedScene], made: Made, *, complete: bool
) -> list[Diagnostic]:
    if not complete:
        return []  # a prompt that failed to render may be the one that uses the ref
    used = {
        *(("image", r.name) for rs in rendered for r in rs.images),
        *(("element", r.name) for rs in rendered for r in rs.elements),
        *(("video", r.name) for rs in rendered for r in rs.videos),
        # what a generated image mentions is used by it (it is itself warned of if unused)
        *(("image", r.name) for ri, _ in made.values() for r in ri.images),
        *(("element", r.name) for ri, _ in made.values() for r in ri.elements),
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
