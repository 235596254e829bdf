"""Write a storyboard's contact sheet. CompileResult + lockfile + plan → renders/NAME/index.html.

One self-contained page per storyboard: the film at the top, then one card per scene with
the first and last frames of its selected take (or its reference images before it is
rendered), its final prompts with the reference tokens marked, its settings, cost, state
and takes. Everything it shows lives under `renders/` (thumbnails go to
`renders/NAME/thumbs/`), it needs no network and no script, and every write is atomic.
"""

from __future__ import annotations

import functools
import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from PIL import Image, UnidentifiedImageError

from .fsutil import atomic_write_bytes, atomic_write_text, sha256_file
from .lockfile import Clip, Lockfile, SceneLock, TaskLock
from .model import Storyboard, Task
from .pipeline import CompileResult
from .plan import Plan, PlannedTake
from .request import (
    ElementId,
    ElementMedia,
    FrameFile,
    GeneratedImage,
    ImageItem,
    LastFrame,
    LocalFile,
    PresetVoice,
)

__all__ = ["write_preview", "prompt_parts", "PromptPart"]

# The largest a thumbnail gets, at any aspect (16:9 480x270, 1:1 480x480, 9:16 360x640):
# sharp at twice the size the page shows it.
THUMB_BOX = (480, 640)
_JPEG_QUALITY = 82
_TOKEN = re.compile(r"<<<(image|element|video)_([1-9][0-9]*)>>>")
_ROLE = {"first_frame": "first frame", "end_frame": "end frame"}


# ── what the template shows ───────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class PromptPart:
    """A run of prompt text, or one reference token (`kind` set) with where it points."""

    text: str
    kind: str | None = None  # image | element | video
    href: str | None = None  # the reference's anchor in its card
    title: str = ""


@dataclass(frozen=True, slots=True)
class Shot:
    parts: tuple[PromptPart, ...]
    duration: str | None = None  # multi-shot only


@dataclass(frozen=True, slots=True)
class Picture:
    """A thumbnail in a card's frame strip or reference list."""

    src: str | None  # relative to index.html; None: nothing to show
    caption: str
    href: str | None = None
    empty: str = ""  # what the empty slot says
    ratio: float = 16 / 9  # width / height: the box keeps the picture's own aspect


@dataclass(frozen=True, slots=True)
class RefRow:
    anchor: str  # e.g. "opening-image-1"
    token: str  # e.g. "image_1"
    kind: str
    name: str  # the ref's name in the storyboard ("" when unknown)
    role: str  # first frame, reference, base edit, ...
    picture: Picture | None
    href: str | None  # where the ref itself is (the image, the URL, the source scene)
    detail: str


@dataclass(frozen=True, slots=True)
class TakeRow:
    take: int
    selected: bool
    state: str | None  # plan state; None for a disabled scene
    status: str  # the task's status in the lockfile, or "not rendered"
    status_msg: str | None
    clip: str | None
    clip_name: str | None
    charged: str | None


@dataclass(frozen=True, slots=True)
class SoundRow:
    """A scene's narration or sound effect: its words, and a player once it is made."""

    kind: str  # narration | sfx
    text: str
    detail: str  # the voice, language and speed; an effect's length
    src: str | None  # the audio, relative to the page; None until it is made


@dataclass(frozen=True, slots=True)
class SceneCard:
    number: int
    id: str
    enabled: bool
    state: str  # the selected take's plan state, or "disabled"
    reasons: tuple[str, ...]
    status: str
    status_msg: str | None
    meta: tuple[str, ...]
    frames: tuple[Picture, ...]
    frames_kind: str  # clip | stills | refs | none
    ratio: float  # the scene's width / height: its clip's, else the one it asks for
    shots: tuple[Shot, ...]
    multi_shot: bool
    refs: tuple[RefRow, ...]
    takes: tuple[TakeRow, ...]
    estimate: str
    estimate_note: str | None
    charged: str
    ledger: str | None  # the paid tasks this scene's current ones replaced
    after: str | None
    sounds: tuple[SoundRow, ...] = ()


@dataclass(frozen=True, slots=True)
class FilmView:
    name: str
    src: str | None  # None: there is no film yet
    poster: str | None
    duration: str
    note: str
    stale: bool
    ratio: float  # the film's width / height (the player keeps it)


@dataclass(frozen=True, slots=True)
class Total:
    label: str
    value: str
    detail: str = ""
    link: str = ""  # a link before the detail
    href: str | None = None
    warn: bool = False


# ── the entry point ───────────────────────────────────────────────────────────────────────


def write_preview(result: CompileResult, renders: Path, backend: str = "emulator") -> Path:
    """Write `renders/NAME/index.html` for a compiled storyboard and return its path.

    Reads the lockfile and the plan; writes only under `renders/NAME/` (the page and its
    thumbnails, atomically). Thumbnails are named by content, so an unchanged clip or
    image is never decoded again; thumbnails nothing shows any more are removed.
    """
    from .run import plan_board  # run imports the executor; keep `import` light

    if result.board is None or not result.ok:
        raise ValueError(f"{result.path}: a storyboard with errors has no contact sheet")
    plan = plan_board(result, backend, renders)
    lock = Lockfile.for_storyboard(result.file)
    sheet = _Sheet(result, result.board, renders, lock, plan, backend)
    html = _template().render(sheet.context())
    index = sheet.folder / "index.html"
    atomic_write_text(index, html)
    sheet.prune_thumbs()
    return index


def prompt_parts(
    text: str, anchors: Mapping[str, str] | None = None, titles: Mapping[str, str] | None = None
) -> tuple[PromptPart, ...]:
    """Split a final prompt into text runs and `<<<kind_N>>>` tokens (the template escapes
    each part, so no prompt text is ever trusted as markup)."""
    anchors, titles = anchors or {}, titles or {}
    parts: list[PromptPart] = []
    position = 0
    for match in _TOKEN.finditer(text):
        if match.start() > position:
            parts.append(PromptPart(text[position : match.start()]))
        key = f"{match[1]}_{match[2]}"
        href = f"#{anchors[key]}" if key in anchors else None
        parts.append(PromptPart(match[0], match[1], href, titles.get(key, key)))
        position = match.end()
    if position < len(text):
        parts.append(PromptPart(text[position:]))
    return tuple(parts)


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("preview.html.j2")


# ── building the page ─────────────────────────────────────────────────────────────────────


class _Sheet:
    """Everything one page needs, gathered once; thumbnails are made on the way."""

    def __init__(
        self,
        result: CompileResult,
        board: Storyboard,
        renders: Path,
        lock: Lockfile,
        plan: Plan,
        backend: str,
    ) -> None:
        self.result = result
        self.backend = backend
        self.board = board
        self.renders = renders
        self.name = result.file.stem
        self.folder = renders / self.name
        self.thumbs = self.folder / "thumbs"
        self.lock = lock
        self.plan = plan
        self.planned: dict[tuple[str, int], PlannedTake] = {
            (p.job.scene, p.job.take): p for p in plan.takes
        }
        self.used_thumbs: set[str] = set()
        self.sizes: dict[str, tuple[int, int]] = {}  # thumbnail → its pixel size
        self.base_dir = result.file.parent
        self.image_names = {ref.media: name for name, ref in board.refs.images.items()}
        self.elements = {ref.media: ref for ref in board.refs.elements.values()}
        self.video_names = {ref.url: name for name, ref in board.refs.videos.items()}

    # -- the whole page --------------------------------------------------------------------

    def context(self) -> dict[str, Any]:
        backend = self.backend
        cards = [self.card(number, task) for number, task in enumerate(self.result.tasks, 1)]
        film = self.film()
        return {
            "title": self.board.title or self.name,
            "path": self.result.path,
            "backend": backend,
            "film": film,
            "totals": self.totals(backend, film),
            "summary": self.summary(),
            "cards": cards,
        }

    def summary(self) -> str:
        enabled = [t for t in self.result.tasks if t.enabled]
        seconds = sum(t.seconds for t in enabled)
        parts = [_count(len(self.result.tasks), "scene")]
        if len(enabled) < len(self.result.tasks):
            parts.append(f"{len(self.result.tasks) - len(enabled)} disabled")
        parts.append(f"{seconds:g} s")
        models = sorted({t.request.model for t in enabled})
        return " · ".join(parts + models)

    def totals(self, backend: str, film: FilmView) -> list[Total]:
        usd_per_unit = Decimal(str(self.board.usd_per_unit))
        charged = self.plan.charged_units
        plan_usd = f"${self.plan.usd:.2f}"
        enabled = [t for t in self.result.tasks if t.enabled]
        voices = self.result.voices
        # Every take, and the sound: each scene's narration and effect, each custom voice.
        whole = sum(
            (Decimal(str(t.usd)) * t.takes + t.narration_usd + t.sfx_usd for t in enabled),
            sum((v.usd for v in voices), Decimal(0)),
        )
        whole_units = sum(
            (Decimal(str(t.units)) * t.takes + t.narration_units + t.sfx_units for t in enabled),
            sum((v.units for v in voices), Decimal(0)),
        )
        if self.plan.pays:
            work = []
            if self.plan.paid:
                work.append(f"{_count(len(self.plan.paid), 'take')}, {self.plan.units:.2f} units")
            if self.plan.paid_sounds:
                calls = _count(len(self.plan.paid_sounds), "sound call")
                work.append(f"{calls}, {self.plan.sound_units:.2f} units")
            if self.plan.paid_images:
                work.append(_count(len(self.plan.paid_images), "image"))
            to_render = " · ".join(work)
            if backend == "emulator":
                to_render += " · free on the emulator"
        else:
            to_render = "every take is rendered"
        budget = self.board.budget_usd
        totals = []
        if film.src is not None:
            totals.append(
                Total("film", film.duration, film.note, film.name, film.src, warn=film.stale)
            )
        if (sound := self.sound_total(enabled)) is not None:
            totals.append(sound)
        return totals + [
            Total("to render", plan_usd if self.plan.pays else "nothing", to_render),
            Total(
                "charged to date",
                "$0.00" if backend == "emulator" else f"${charged * usd_per_unit:.2f}",
                f"{float(charged):g} units counted by the emulator, nothing billed"
                if backend == "emulator"
                else f"{float(charged):g} units at ${self.board.usd_per_unit:g}/unit",
            ),
            Total(
                "whole film",
                f"${whole:.2f}",
                f"{whole_units:.2f} units, every take"
                + (" and sound" if voices or any(t.narration or t.sfx for t in enabled) else "")
                + (f" · budget ${budget:.2f}" if budget is not None else ""),
            ),
        ]

    def film(self) -> FilmView:
        path = self.renders / f"{self.name}.mp4"
        enabled = [t for t in self.result.tasks if t.enabled]
        poster = None
        if enabled:
            clip = self.clip_of(enabled[0].scene, enabled[0].selected)
            if clip is not None:
                poster = self.frame_thumb(clip, "first")
        if not path.is_file():
            waiting = [t.scene for t in enabled if self.clip_of(t.scene, t.selected) is None]
            note = (
                f"{_count(len(waiting), 'scene')} without a clip: {', '.join(waiting)}"
                if waiting
                else "every scene has a clip: render again to assemble the film"
            )
            return FilmView(path.name, None, None, "", note, False, self.board_ratio())
        current = [self.clip_of(t.scene, t.selected) for t in enabled]
        shas = [clip.sha256 for clip in current if clip is not None]
        outdated = any(
            self.planned[(t.scene, t.selected)].paid
            for t in enabled
            if (t.scene, t.selected) in self.planned
        )
        stale = (
            self.lock.film is None
            or self.lock.film.clips != shas
            or len(shas) != len(enabled)
            or outdated
        )
        duration = f"{self.lock.film.duration:g} s" if self.lock.film else "?"
        note = (
            "older than the storyboard: render again"
            if stale
            else f"{_count(len(shas), 'clip')}, up to date"
        )
        ratio = self.board_ratio()
        try:
            from .media import probe

            film = probe(path)
            ratio = film.width / film.height
        except (OSError, ValueError):
            pass  # a film being replaced: the storyboard's aspect will do
        return FilmView(path.name, self.href(path), poster, duration, note, stale, ratio)

    # -- one scene --------------------------------------------------------------------------

    def card(self, number: int, task: Task) -> SceneCard:
        request = task.request
        entry = self.lock.scenes.get(task.scene)
        refs = self.ref_rows(task)
        anchors = {row.token: row.anchor for row in refs}
        titles = {
            row.token: " · ".join(x for x in (row.token, row.name, row.role) if x) for row in refs
        }
        if request.shots:
            shots = tuple(
                Shot(prompt_parts(shot.prompt, anchors, titles), f"{shot.duration} s")
                for shot in request.shots
            )
        else:
            shots = (Shot(prompt_parts(request.prompt, anchors, titles)),)

        clip = self.clip_of(task.scene, task.selected)
        ratio = _aspect(request.aspect_ratio or self.board.settings.aspect_ratio)
        if clip is not None:
            href = self.href(clip.path(self.renders) or self.renders)
            first, last = self.frame_thumb(clip, "first"), self.frame_thumb(clip, "last")
            ratio = self.ratio_of(first) or self.ratio_of(last) or ratio
            frames: tuple[Picture, ...] = (
                Picture(first, "first frame", href, ratio=ratio),
                Picture(last, f"last frame · {clip.duration:g} s", href, ratio=ratio),
            )
            frames_kind = "clip"
        elif stills := self.stills_of(task, ratio):
            frames, frames_kind = stills, "stills"
        else:
            frames = tuple(
                Picture(
                    r.picture.src,
                    f"{r.token} · {r.role}",
                    f"#{r.anchor}",
                    r.picture.empty,
                    r.picture.ratio if r.picture.src else ratio,
                )
                for r in refs
                if r.kind == "image" and r.picture is not None
            )
            frames_kind = "refs" if frames else "none"

        selected = self.planned.get((task.scene, task.selected))
        selected_task = entry.takes.get(task.selected) if entry else None
        state = selected.state if selected and task.enabled else "disabled"
        charged = entry.units_charged() if entry else Decimal(0)
        usd_per_unit = Decimal(str(self.board.usd_per_unit))
        estimate = f"{task.units:.2f} units · ${task.usd:.2f}" + (
            f" per take × {task.takes}" if task.takes > 1 else ""
        )
        return SceneCard(
            number=number,
            id=task.scene,
            enabled=task.enabled,
            state=state,
            reasons=selected.reasons if selected and task.enabled else (),
            status=selected_task.status if selected_task else "not rendered",
            status_msg=selected_task.status_msg if selected_task else None,
            meta=self.meta(task),
            frames=frames,
            frames_kind=frames_kind,
            ratio=ratio,
            shots=shots,
            multi_shot=request.multi_shot,
            refs=refs,
            takes=self.take_rows(task, entry),
            estimate=estimate,
            estimate_note=task.estimate_note,
            charged=f"{float(charged):g} units · "
            + ("emulated" if self.backend == "emulator" else f"${charged * usd_per_unit:.2f}"),
            ledger=_ledger(entry),
            after=task.after,
            sounds=self.sound_rows(task),
        )

    def sound_total(self, enabled: list[Task]) -> Total | None:
        """The film's sound in one card: its loudness, the music under it (a link to the
        file), and how many narrations and effects it lays in."""
        soundtrack = self.board.soundtrack
        narrations = sum(t.narration is not None for t in enabled)
        effects = sum(t.sfx is not None for t in enabled)
        if soundtrack is None and not narrations and not effects:
            return None
        loudness = soundtrack.loudness if soundtrack is not None else -14.0
        parts = []
        if narrations:
            parts.append(_count(narrations, "narration"))
        if effects:
            parts.append(_count(effects, "effect"))
        parts.append(f"true peak ≤ {soundtrack.true_peak if soundtrack else -1.0:g} dBTP")
        music = soundtrack.music if soundtrack is not None else None
        if music is None:
            return Total("sound", f"{loudness:g} LUFS", " · ".join(parts))
        gain = f" {soundtrack.music_gain:+g} dB" if soundtrack and soundtrack.music_gain else ""
        href = self.href(self.base_dir / music.file)
        link = f"{Path(music.file).name}{gain}"
        return Total("sound", f"{loudness:g} LUFS", " · ".join(parts), link, href)

    def sound_rows(self, task: Task) -> tuple[SoundRow, ...]:
        """The scene's narration and effect, each with its audio when the one recorded is
        the one the storyboard asks for now."""
        from .soundwire import effect_digest, speech_digest

        rows = []
        if task.narration is not None:
            speech = task.narration
            voice = speech.voice
            name = voice.id if isinstance(voice, PresetVoice) else voice.name
            detail = f"{name} · {speech.language} · ×{speech.speed:g}"
            src = self.audio_of("speech", task.scene, speech_digest(speech))
            rows.append(SoundRow("narration", speech.text, detail, src))
        if task.sfx is not None:
            src = self.audio_of("effect", task.scene, effect_digest(task.sfx))
            rows.append(SoundRow("sfx", task.sfx.prompt, f"{task.sfx.duration:g} s", src))
        return tuple(rows)

    def audio_of(self, kind: str, scene: str, digest: str) -> str | None:
        made = self.lock.made_sound(kind, scene, digest, self.folder)
        return self.href(made[1]) if made is not None else None

    def meta(self, task: Task) -> tuple[str, ...]:
        request = task.request
        meta = [f"{task.seconds:g} s"]
        if request.shots:
            meta.append(_count(len(request.shots), "shot"))
        meta += [request.mode, f"sound {'on' if request.sound else 'off'}"]
        if request.aspect_ratio is not None:
            meta.append(request.aspect_ratio)
        meta.append(request.model)
        return tuple(meta)

    def take_rows(self, task: Task, entry: SceneLock | None) -> tuple[TakeRow, ...]:
        rows = []
        for take in range(1, task.takes + 1):
            lock = entry.takes.get(take) if entry else None
            planned = self.planned.get((task.scene, take))
            clip = self.clip_file(lock)
            rows.append(
                TakeRow(
                    take=take,
                    selected=take == task.selected,
                    state=planned.state if planned and task.enabled else None,
                    status=lock.status if lock else "not rendered",
                    status_msg=lock.status_msg if lock else None,
                    clip=self.href(clip) if clip else None,
                    clip_name=clip.name if clip else None,
                    charged=lock.units_charged if lock and lock.units_charged else None,
                )
            )
        return tuple(rows)

    def ref_rows(self, task: Task) -> tuple[RefRow, ...]:
        request, scene = task.request, task.scene
        rows: list[RefRow] = []
        for n, image in enumerate(request.images, 1):
            rows.append(self.image_row(scene, n, image))
        for n, element in enumerate(request.elements, 1):
            rows.append(self.element_row(scene, n, element))
        videos = [request.video] if request.video is not None else []
        for n, video in enumerate(videos, 1):
            url = video.url
            role = "base edit" if video.refer_type == "base" else "feature reference"
            sound = video.keep_original_sound
            keep = "" if sound is None else f" · keep sound {'yes' if sound else 'no'}"
            detail = _short_url(url) + keep
            rows.append(
                RefRow(
                    f"{scene}-video-{n}",
                    f"video_{n}",
                    "video",
                    self.video_names.get(url, ""),
                    role,
                    None,
                    url,
                    detail,
                )
            )
        return tuple(rows)

    def element_row(self, scene: str, n: int, media: ElementMedia) -> RefRow:
        anchor, token = f"{scene}-element-{n}", f"element_{n}"
        ref = self.elements.get(media)
        name = ref.name if ref else ""
        if ref is None or not ref.images or isinstance(media, ElementId):
            number = media.id if isinstance(media, ElementId) else "?"
            return RefRow(anchor, token, "element", name, "element", None, None, f"id {number}")
        # An element the render creates from local images: show the first of them.
        first = ref.images[0]
        src = None
        if first.file is not None and first.sha256 is not None:
            src = self.image_thumb(self.base_dir / first.file, first.sha256)
        created = getattr(self.lock, "elements", {}).get(ref.name)  # made by an earlier render
        made = f"id {created.element_id}" if created and created.element_id else "not created yet"
        detail = f"{_count(len(ref.images), 'image')} · {made}" + (
            f" · {ref.description}" if ref.description else ""
        )
        picture = self.sized(Picture(src, name, src, "element"))
        return RefRow(anchor, token, "element", name, "new element", picture, None, detail)

    def image_row(self, scene: str, n: int, item: ImageItem) -> RefRow:
        media = item.media
        role = _ROLE.get(item.type or "", "reference")
        anchor, token = f"{scene}-image-{n}", f"image_{n}"
        name = self.image_names.get(media, "")
        if isinstance(media, LastFrame | FrameFile):
            source = media.scene
            task = next((t for t in self.result.tasks if t.scene == source), None)
            clip = self.clip_of(source, task.selected) if task else None
            src = self.frame_thumb(clip, "last") if clip else None
            picture = self.sized(
                Picture(src, f"last frame of {source}", f"#scene-{source}", "not rendered")
            )
            return RefRow(
                anchor,
                token,
                "image",
                f"last frame of {source}",
                role,
                picture,
                f"#scene-{source}",
                f"scene {source}",
            )
        if isinstance(media, LocalFile):
            src = self.image_thumb(self.base_dir / media.file, media.sha256)
            picture = self.sized(Picture(src, name or media.file, src, "image missing"))
            detail = f"{media.file} · {media.sha256[:12]}"
            return RefRow(anchor, token, "image", name, role, picture, src, detail)
        if isinstance(media, GeneratedImage):
            made = self.lock.images.get(media.name)
            path = (
                made.path(self.folder) if made is not None and made.digest == media.digest else None
            )
            src = self.image_thumb(path, made.sha256) if path and made and made.sha256 else None
            picture = self.sized(Picture(src, name or media.name, src, "not generated yet"))
            return RefRow(anchor, token, "image", name, role, picture, src, "generated by Kling")
        # A public URL: never fetched (the page works offline), only linked.
        url = media.url
        picture = Picture(None, name or _short_url(url), url, "remote image")
        return RefRow(anchor, token, "image", name, role, picture, url, _short_url(url))

    def stills_of(self, task: Task, ratio: float) -> tuple[Picture, ...]:
        """A scene's stills (`render --stills`), one per shot, when it has no clip yet."""
        pictures = []
        for n in range(1, len(task.stills) + 1):
            record = self.lock.stills.get(f"{task.scene}-{n}")
            path = record.path(self.folder) if record is not None else None
            if record is None or path is None or not path.is_file() or not record.sha256:
                continue
            src = self.image_thumb(path, record.sha256)
            pictures.append(Picture(src, f"still · shot {n}", self.href(path), ratio=ratio))
        return tuple(pictures)

    # -- clips and thumbnails ---------------------------------------------------------------

    def clip_of(self, scene: str, take: int) -> Clip | None:
        """The clip of a take, when the lockfile has one and it is on disk."""
        task = self.lock.task(scene, take)
        if task is None or self.clip_file(task) is None:
            return None
        return task.clip

    def clip_file(self, task: TaskLock | None) -> Path | None:
        if task is None or task.clip is None:
            return None
        path = task.clip.path(self.renders)
        return path if path is not None and path.is_file() else None

    def frame_thumb(self, clip: Clip, which: str) -> str | None:
        """The first or last frame of a clip as a thumbnail, named by the clip's content."""
        from .media import extract_frame

        path = clip.path(self.renders)
        if path is None or not path.is_file():
            return None
        sha = clip.sha256
        if path.stat().st_size != clip.bytes:  # replaced behind the lockfile's back
            sha = sha256_file(path)
        name = f"{sha[:16]}-{which}.jpg"
        dest = self.thumbs / name
        if not dest.is_file():
            try:
                frame = extract_frame(path, "first" if which == "first" else "last")
            except (ValueError, OSError):
                return None
            _save_thumb(frame, dest)
        self.used_thumbs.add(name)
        return f"thumbs/{name}"

    def image_thumb(self, path: Path, sha: str) -> str | None:
        """A small copy of a reference image inside renders/, named by its content."""
        name = f"ref-{sha[:16]}.jpg"
        dest = self.thumbs / name
        if not dest.is_file():
            try:
                with Image.open(path) as image:
                    image.draft("RGB", (1024, 1024))  # JPEG: decode at a reduced scale
                    image.load()
                    _save_thumb(image, dest)
            except (OSError, UnidentifiedImageError):
                return None
        self.used_thumbs.add(name)
        return f"thumbs/{name}"

    def ratio_of(self, src: str | None) -> float | None:
        """Width / height of a thumbnail this page shows (read from its header)."""
        if src is None or not src.startswith("thumbs/"):
            return None
        if src not in self.sizes:
            try:
                with Image.open(self.folder / src) as thumb:
                    self.sizes[src] = thumb.size
            except (OSError, UnidentifiedImageError):
                return None
        width, height = self.sizes[src]
        return width / height if height else None

    def sized(self, picture: Picture) -> Picture:
        """`picture` with its thumbnail's own aspect."""
        ratio = self.ratio_of(picture.src)
        return replace(picture, ratio=ratio) if ratio else picture

    def board_ratio(self) -> float:
        return _aspect(self.board.settings.aspect_ratio)

    def prune_thumbs(self) -> None:
        """Remove the thumbnails of clips and images the page no longer shows."""
        if not self.thumbs.is_dir():
            return
        for old in self.thumbs.glob("*.jpg"):
            if old.name not in self.used_thumbs:
                old.unlink(missing_ok=True)

    def href(self, path: Path) -> str:
        """`path` relative to the page, as a URL path."""
        return quote(Path(os.path.relpath(path, self.folder)).as_posix())


def _ledger(entry: SceneLock | None) -> str | None:
    if entry is None or not entry.history:
        return None
    units = SceneLock("", {}, history=entry.history).units_charged()
    return f"{_count(len(entry.history), 'earlier task')} replaced, {units:g} units charged"


def _save_thumb(image: Image.Image, dest: Path) -> None:
    thumb = image.convert("RGB")
    thumb.thumbnail(THUMB_BOX, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=_JPEG_QUALITY, optimize=True)
    atomic_write_bytes(dest, buffer.getvalue())


def _aspect(text: str | None) -> float:
    """ "9:16" → 0.5625; 16:9 when unknown."""
    try:
        width, height = (float(part) for part in (text or "").split(":"))
        return width / height
    except ValueError:
        return 16 / 9


def _short_url(url: str) -> str:
    parts = urlsplit(url)
    tail = parts.path.rsplit("/", 1)[-1]
    return (
        f"{parts.netloc}/…/{tail}" if parts.path.count("/") > 1 else f"{parts.netloc}{parts.path}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
