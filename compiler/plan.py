"""Decide, once, what a render does for every take and element. Compiled tasks + lockfile → Plan.

Each take gets one action (README "Plan and render"):
- `reuse` a clip on disk whose sha256 the lockfile records;
- `fetch` from the team's render cache, for free, a recorded clip that is not on disk;
- `download` again, for free, a finished result that is not on disk nor in the cache;
- `re-attach` to a task still in flight;
- `submit` a create: paid on Kling (new or changed work, a paid retry of a failed task,
  `--force`, or a create a killed run may have sent, which is looked up first);
- `remake` on the emulator a placeholder whose clip is gone (free: the emulator's clips
  die with it).
`render` prints this plan, gates money on it and hands it to the executor, which only
carries the actions out. Nothing here writes a file or talks to the network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from .frames import frame_name, last_frame_png
from .lockfile import (
    ElementLock,
    ImageLock,
    Lockfile,
    SoundLock,
    TaskLock,
    attempt_after,
    external_task_id,
)
from .model import ElementRef, Task
from .request import (
    EffectRequest,
    ElementToMake,
    FrameFile,
    GeneratedImage,
    ImageRequest,
    SpeechRequest,
    VideoRequest,
    VoiceRequest,
    VoiceToMake,
)
from .soundwire import effect_digest, speech_digest, voice_digest
from .wire import image_digest, record_json, request_digest


class Action(StrEnum):
    REUSE = "reuse"
    FETCH = "fetch"  # from the shared render cache
    DOWNLOAD = "download"
    REATTACH = "re-attach"
    SUBMIT = "submit"
    REMAKE = "remake"


CREATES = (Action.SUBMIT, Action.REMAKE)


class CacheLookup(Protocol):
    """What planning asks of the shared render cache (cache.py): is a clip there?"""

    shown: str

    def has(self, sha256: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Selection:
    """Which scenes and takes a run touches: `--only` and `--force`."""

    only: frozenset[str] = frozenset()
    force: frozenset[str] = frozenset()

    def wants(self, scene: str) -> bool:
        return not self.only or scene in self.only


@dataclass(frozen=True, slots=True)
class Job:
    """One take of one scene to render: its request and what it should cost."""

    scene: str
    request: VideoRequest
    units: Decimal
    usd: Decimal
    take: int = 1
    selected: bool = True  # the take the film shows (a continuing scene starts from it)
    force: bool = False  # pay again even for work already done

    @property
    def label(self) -> str:
        return self.scene if self.take == 1 else f"{self.scene}#{self.take}"


@dataclass(frozen=True, slots=True)
class PlannedTake:
    """What a render does for one take, and why."""

    job: Job
    action: Action
    state: (
        str  # new | changed | failed-before | interrupted | forced | in-flight | unchanged | lost
    )
    reasons: tuple[str, ...] = ()
    # The request with its first frame resolved when that frame is known; `digest` and
    # `external_task_id` are None when it waits for a clip this run makes.
    request: VideoRequest | None = None
    digest: str | None = None
    task: TaskLock | None = None  # the task reused, downloaded, re-attached or looked up
    external_task_id: str | None = None  # of a create
    attempt: int = 1

    @property
    def paid(self) -> bool:
        """A create on Kling's bill (on the emulator: the create Kling would bill)."""
        return self.action is Action.SUBMIT

    @property
    def creates(self) -> bool:
        return self.action in CREATES

    @property
    def waits_for(self) -> str | None:
        return self.digest is None and self.job.request.waits_for or None


@dataclass(frozen=True, slots=True)
class PlannedElement:
    """What a render does for an element the storyboard creates from its images."""

    element: ElementRef
    action: Action  # reuse | re-attach | submit
    state: str
    entry: ElementLock | None = None  # the record reused, re-attached or looked up
    external_task_id: str = ""
    attempt: int = 1

    @property
    def creates(self) -> bool:
        return self.action in CREATES


@dataclass(frozen=True, slots=True)
class ImageJob:
    """An Omni-Image task to plan: a generated image ref, or the still of one shot."""

    kind: str  # "image" (lockfile `images`) | "still" (lockfile `stills`)
    key: str  # the ref's name, or "SCENE-N" for shot N of a scene
    request: ImageRequest
    units: Decimal  # image units (kling-api.md §11.1), their own currency
    usd: Decimal
    scene: str | None = None  # a still's scene, its shot and how long the shot lasts
    shot: int = 1
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"still {self.key}" if self.kind == "still" else f"image {self.key}"


@dataclass(frozen=True, slots=True)
class PlannedImage:
    """What a render does for one Omni-Image task, and why."""

    job: ImageJob
    action: Action
    state: str
    digest: str
    reasons: tuple[str, ...] = ()
    entry: ImageLock | None = None  # the record reused, fetched, re-attached or looked up
    external_task_id: str = ""
    attempt: int = 1

    @property
    def paid(self) -> bool:
        return self.action is Action.SUBMIT

    @property
    def creates(self) -> bool:
        return self.action in CREATES


SoundKind = Literal["voice", "speech", "effect"]
_SOUND_LABELS: dict[SoundKind, str] = {"voice": "voice", "speech": "narration", "effect": "sfx"}


@dataclass(frozen=True, slots=True)
class SoundJob:
    """A sound call to plan: a custom voice, a scene's narration (TTS) or its effect."""

    kind: SoundKind
    key: str  # the voice's name, or the scene's id
    request: VoiceRequest | SpeechRequest | EffectRequest
    units: Decimal  # video units a call (kling-api.md §11.2)
    usd: Decimal
    force: bool = False  # `--force SCENE`: made again, paid again, even unchanged

    @property
    def label(self) -> str:
        return f"{_SOUND_LABELS[self.kind]} {self.key}"

    @property
    def digest(self) -> str:
        """What the call makes, by content: the same digest is the same sound."""
        request = self.request
        if isinstance(request, VoiceRequest):
            return voice_digest(request)
        if isinstance(request, SpeechRequest):
            return speech_digest(request)
        return effect_digest(request)


@dataclass(frozen=True, slots=True)
class PlannedSound:
    """What a render does for one sound call, and why."""

    job: SoundJob
    action: Action
    state: str
    digest: str
    reasons: tuple[str, ...] = ()
    entry: SoundLock | None = None  # the record reused, fetched, re-attached or looked up
    external_task_id: str | None = None  # of a create; TTS has none
    attempt: int = 1

    @property
    def paid(self) -> bool:
        return self.action is Action.SUBMIT

    @property
    def creates(self) -> bool:
        return self.action in CREATES

    @property
    def unsure(self) -> bool:
        """The one kind of call that could be paid twice: TTS cannot be looked up after a
        timeout (kling-api.md §11.2), so a cut-off call is never resent blindly."""
        return self.paid and self.job.kind == "speech"


@dataclass(frozen=True, slots=True)
class Plan:
    backend: str
    lock: Lockfile  # the lockfile planned against, which the executor then keeps current
    takes: tuple[PlannedTake, ...]
    elements: tuple[PlannedElement, ...] = ()
    disabled: tuple[str, ...] = ()
    charged_units: Decimal = Decimal(0)  # what this backend charged this storyboard so far
    # The selected take of each scene the film shows, in film order.
    film: tuple[tuple[str, int], ...] = field(default=())
    # The clips continuing scenes start from that this run does not touch (`--only`).
    sources: dict[str, Path] = field(default_factory=dict)
    images: tuple[PlannedImage, ...] = ()  # generated image refs the creates need
    stills: tuple[PlannedImage, ...] = ()  # `--stills`: one per shot, and no takes
    # Custom voices first (what narration and elements speak in), then each scene's
    # narration and effect, in scene order.
    sounds: tuple[PlannedSound, ...] = ()

    @property
    def paid(self) -> tuple[PlannedTake, ...]:
        return tuple(t for t in self.takes if t.paid)

    @property
    def paid_images(self) -> tuple[PlannedImage, ...]:
        return tuple(i for i in (*self.images, *self.stills) if i.paid)

    @property
    def creates(self) -> int:
        return sum(t.creates for t in self.takes)

    @property
    def image_creates(self) -> int:
        return sum(i.creates for i in (*self.images, *self.stills))

    @property
    def image_units(self) -> Decimal:
        return sum((i.job.units for i in self.paid_images), Decimal(0))

    @property
    def paid_sounds(self) -> tuple[PlannedSound, ...]:
        return tuple(s for s in self.sounds if s.paid)

    @property
    def sound_creates(self) -> int:
        return sum(s.creates for s in self.sounds)

    @property
    def sound_units(self) -> Decimal:
        return sum((s.job.units for s in self.paid_sounds), Decimal(0))

    @property
    def pays(self) -> bool:
        """Whether carrying the plan out sends any paid create."""
        return bool(self.paid or self.paid_images or self.paid_sounds)

    @property
    def usd(self) -> Decimal:
        """What the plan's paid work costs: clips, images and sound (each in its units)."""
        clips = sum((t.job.usd for t in self.paid), Decimal(0))
        images = sum((i.job.usd for i in self.paid_images), Decimal(0))
        return clips + images + sum((s.job.usd for s in self.paid_sounds), Decimal(0))

    @property
    def units(self) -> Decimal:
        return sum((t.job.units for t in self.paid), Decimal(0))


def jobs_for(tasks: Iterable[Task], selection: Selection = Selection()) -> list[Job]:
    """One job per take of every enabled scene the selection wants, in scene order."""
    return [
        Job(
            task.scene,
            task.request,
            Decimal(str(task.units)),
            Decimal(str(task.usd)),
            take=take,
            selected=take == task.selected,
            force=task.scene in selection.force,
        )
        for task in tasks
        if task.enabled and selection.wants(task.scene)
        for take in range(1, task.takes + 1)
    ]


def plan(
    tasks: list[Task],
    lock: Lockfile,
    backend: str,
    clips_dir: Path,
    *,
    elements: dict[str, ElementRef] | None = None,
    selection: Selection = Selection(),
    cache: CacheLookup | None = None,
    images: dict[str, ImageJob] | None = None,
    stills: list[ImageJob] | None = None,
    sounds: Iterable[SoundJob] = (),
    voices: dict[str, SoundJob] | None = None,
) -> Plan:
    """Plan the compiled `tasks` of one storyboard (in scene order) against `lock`.

    `clips_dir` is renders/NAME: clips are checked there against their recorded sha256,
    and a continuing scene's first frame is read from its source's clip. `images` are
    the generated image refs by name; with `stills` (`render --stills`) the plan makes
    those stills and no clip. `sounds` are the scenes' narration and effects (those the
    selection wants are planned), `voices` the custom voices by name (planned when a call
    or an element this run makes speaks in them).
    """
    planner = _Planner(lock, backend, clips_dir, cache)
    if stills is not None:
        planned_stills = tuple(planner.image(job) for job in stills)
        wanted_images = _generated(i.job.request for i in planned_stills if i.creates)
        return Plan(
            backend,
            lock,
            (),
            images=tuple(
                planner.image(images[n]) for n in sorted(wanted_images) if images and n in images
            ),
            stills=planned_stills,
            disabled=tuple(t.scene for t in tasks if not t.enabled and selection.wants(t.scene)),
            charged_units=lock.charged(backend),
        )
    jobs = jobs_for(tasks, selection)
    in_run = {job.scene for job in jobs}
    for task in tasks:  # kept clips of scenes outside this run, which others continue
        if task.scene not in in_run and (kept := lock.task(task.scene, task.selected)):
            if kept.serves(backend) and planner.intact(kept):
                planner.reused[task.scene] = kept
    takes = [planner.take(job) for job in jobs]
    wanted = {
        media.name
        for take in takes
        if take.creates
        for media in take.job.request.elements
        if isinstance(media, ElementToMake)
    }
    made = [planner.element(ref) for name, ref in (elements or {}).items() if name in wanted]
    wanted_images = _generated(t.job.request for t in takes if t.creates)
    made_images = tuple(
        planner.image(job) for name, job in sorted((images or {}).items()) if name in wanted_images
    )
    calls = [planner.sound(job) for job in sounds if selection.wants(job.key)]
    speakers = {
        call.job.request.voice.name
        for call in calls
        if call.creates
        and isinstance(call.job.request, SpeechRequest)
        and isinstance(call.job.request.voice, VoiceToMake)
    }
    speakers.update(
        e.element.voice.name for e in made if e.creates and isinstance(e.element.voice, VoiceToMake)
    )
    made_voices = [planner.sound(job) for name, job in (voices or {}).items() if name in speakers]
    return Plan(
        backend,
        lock,
        tuple(takes),
        tuple(made),
        disabled=tuple(t.scene for t in tasks if not t.enabled and selection.wants(t.scene)),
        charged_units=lock.charged(backend),
        film=tuple((t.scene, t.selected) for t in tasks if t.enabled),
        sources={
            scene: path
            for scene, task in planner.reused.items()
            if scene not in in_run and (path := planner.clip_path(task)) is not None
        },
        images=made_images,
        sounds=(*made_voices, *calls),
    )


def _generated(requests: Iterable[VideoRequest | ImageRequest]) -> set[str]:
    """The generated image refs some of `requests` show."""
    names: set[str] = set()
    for request in requests:
        names.update(m.name for m in request.image_media if isinstance(m, GeneratedImage))
    return names


class _Planner:
    def __init__(
        self, lock: Lockfile, backend: str, clips_dir: Path, cache: CacheLookup | None
    ) -> None:
        self.lock = lock
        self.cache = cache
        self.backend = backend
        self.clips_dir = clips_dir
        self.emulator = backend == "emulator"
        self.reused: dict[str, TaskLock] = {}  # scene → its selected take, when reused
        self.downloaded: dict[str, TaskLock] = {}  # scene → its selected take, downloaded

    def take(self, job: Job) -> PlannedTake:
        planned = self._take(job)
        if job.selected and planned.task is not None:
            if planned.action is Action.REUSE:
                self.reused[job.scene] = planned.task
            elif planned.action in (Action.DOWNLOAD, Action.FETCH):
                self.downloaded[job.scene] = planned.task
        return planned

    def _take(self, job: Job) -> PlannedTake:
        request = job.request
        source = request.waits_for
        if source is not None:
            frame = self._frame_of(source)
            if frame is None:
                why = f"first frame: the last frame of '{source}', rendered first"
                state = "new" if job.scene not in self.lock.scenes else "changed"
                return PlannedTake(job, Action.SUBMIT, state, (why,))
            request = request.with_frame(frame)
        digest = request_digest(request)
        entry = self.lock.scenes.get(job.scene)
        done = self.lock.tasks_for(job.scene, digest, job.take)
        current = done[-1] if done and entry is not None and entry.digest == digest else None
        undone = "as rendered before the last edit" if entry and entry.digest != digest else None
        usable = [t for t in done if t.serves(self.backend)]
        task = current if current is not None and current.serves(self.backend) else None
        if task is None or task.status == "failed":
            earlier = [t for t in usable if t.status != "failed"]
            if earlier:
                task = earlier[-1]
        submit = _Submit(job, request, digest, self.lock.next_attempt(job.scene, digest, job.take))

        if task is None:
            if entry is None:
                return submit.row("new", (f"take {job.take}",) if job.take > 1 else ())
            if done and not usable:
                return submit.row("changed", ("rendered on the emulator before",))
            if entry.digest == digest:
                return submit.row("new", (f"take {job.take}",))
            return submit.row("changed", tuple(what_changed(entry.payload, record_json(request))))
        reasons = (undone,) if undone and task is not current else ()
        if task.status == "creating":  # a killed run may have sent it: look it up first
            return PlannedTake(
                job,
                Action.SUBMIT,
                "interrupted",
                ("a killed run may have created it; looked up first",),
                request,
                digest,
                task,
                task.external_task_id,
                task.attempt,
            )
        if job.force:
            return submit.row("forced", ("--force",))
        if task.status == "failed":
            return submit.row("failed-before", (task.status_msg or "failed",))
        if task.in_flight:
            if self.emulator and task.backend == "emulator":
                # An emulator's tasks die with it: made again, free.
                return submit.row("lost", ("the emulator that ran it is gone",), Action.REMAKE)
            if not self.emulator:
                return PlannedTake(
                    job,
                    Action.REATTACH,
                    "in-flight",
                    (f"task {task.task_id}", *reasons),
                    request,
                    digest,
                    task,
                )
            return submit.row("lost", ("a Kling task in flight; render with Kling",), Action.REMAKE)
        if self.intact(task):
            return PlannedTake(job, Action.REUSE, "unchanged", reasons, request, digest, task)
        if self.cache is not None and task.clip is not None and self.cache.has(task.clip.sha256):
            return PlannedTake(
                job,
                Action.FETCH,
                "unchanged",
                (f"clip not on disk: from the cache {self.cache.shown}, free", *reasons),
                request,
                digest,
                task,
            )
        if self.emulator:
            return submit.row("lost", ("clip not on disk",), Action.REMAKE)
        return PlannedTake(
            job,
            Action.DOWNLOAD,
            "unchanged",
            ("clip not on disk: downloaded again, free", *reasons),
            request,
            digest,
            task,
        )

    def image(self, job: ImageJob) -> PlannedImage:
        """The action for one Omni-Image task: as for a take, by its record and its PNG."""
        digest = image_digest(job.request)
        verdict, entry, attempt = self._settle(
            self.lock.image_records(job.kind).get(job.key),
            partial(self.lock.earlier_image, job.kind, job.key, digest, self.backend),
            partial(self.lock.image_attempts, job.kind, job.key, digest),
            digest,
            job.label,
            "prompt, settings or an image it shows",
            partial(self._file, noun="image"),
        )
        ext = entry.external_task_id if entry is not None else image_task_id(job, digest, attempt)
        return PlannedImage(
            job,
            verdict.action,
            verdict.state,
            digest,
            verdict.reasons,
            entry,
            ext if verdict.creates else "",
            attempt,
        )

    def sound(self, job: SoundJob) -> PlannedSound:
        """The action for one sound call: as for an image, by its record and its audio
        (a custom voice by the id it was given)."""
        digest = job.digest
        verdict, entry, attempt = self._settle(
            self.lock.sound_records(job.kind).get(job.key),
            partial(self.lock.earlier_sound, job.kind, job.key, digest, self.backend),
            partial(self.lock.sound_attempts, job.kind, job.key, digest),
            digest,
            job.label,
            _SOUND_CHANGES[job.kind],
            self._voice if job.kind == "voice" else partial(self._file, noun="audio"),
            # TTS has no external id: a call a killed run may have sent cannot be looked up.
            lookup=job.kind != "speech",
            force=job.force,
        )
        if entry is not None:
            ext = entry.external_task_id
        else:
            ext = None if job.kind == "speech" else sound_task_id(job, digest, attempt)
        return PlannedSound(
            job,
            verdict.action,
            verdict.state,
            digest,
            verdict.reasons,
            entry,
            ext if verdict.creates else None,
            attempt,
        )

    def _settle(
        self,
        current: _Kept | None,
        earlier: Callable[[], _Kept | None],
        attempts: Callable[[], int],
        digest: str,
        label: str,
        changed: str,
        done: Callable[[Any], _Verdict],
        *,
        lookup: bool = True,
        force: bool = False,
    ) -> tuple[_Verdict, _Kept | None, int]:
        """The verdict on a recorded image or sound task, the record its row works from
        (None for a new create) and the attempt of the work.

        The record is the current one, or, for an edit undone, the replaced one that made
        this work before, taken back. A new create takes the attempt past every one this
        work had, replaced records included, so it never reuses an earlier task's
        external_task_id (a failed one, say).
        """
        entry = current
        if entry is None or entry.digest != digest or not entry.serves(self.backend):
            entry = earlier() or entry
        verdict: _Verdict = self._verdict(entry, digest, changed, done, lookup=lookup)
        if force and verdict.action in (Action.REUSE, Action.FETCH, Action.DOWNLOAD):
            verdict = _Verdict(Action.SUBMIT, "forced", ("--force",))
        if not verdict.keeps:
            before = attempts()
            return verdict, None, attempt_after(before, label, self.lock.path) if before else 1
        assert entry is not None
        if entry is not current:
            verdict = replace(verdict, reasons=(*verdict.reasons, "as made before the last edit"))
        return verdict, entry, entry.attempt

    def _verdict(
        self,
        entry: _Record | None,
        digest: str,
        changed: str,
        done: Callable[[Any], _Verdict],
        *,
        lookup: bool = True,
    ) -> _Verdict:
        """The one decision for a recorded Omni-Image or sound task: made anew, looked up,
        re-attached, or (once it is done) whatever `done` says of its result."""
        if entry is None:
            return _Verdict(Action.SUBMIT, "new")
        if entry.digest != digest:
            return _Verdict(Action.SUBMIT, "changed", (changed,))
        if not entry.serves(self.backend):
            return _Verdict(Action.SUBMIT, "changed", ("made on the emulator before",))
        if entry.status == "creating":
            if not lookup:
                cut = "a cut-off call may have been paid; TTS cannot be looked up: may pay twice"
                return _Verdict(Action.SUBMIT, "interrupted", (cut,))
            why = "a killed run may have created it; looked up first"
            return _Verdict(Action.SUBMIT, "interrupted", (why,), keeps=True)
        if entry.status == "failed":
            return _Verdict(Action.SUBMIT, "failed-before", (entry.status_msg or "failed",))
        if entry.in_flight:
            if self.emulator:
                return _Verdict(Action.REMAKE, "lost", ("the emulator that ran it is gone",))
            return _Verdict(Action.REATTACH, "in-flight", keeps=True)
        return done(entry)

    def _file(self, entry: _Record, *, noun: str) -> _Verdict:
        """A finished task that left a file: kept, in the cache, or to download (or, on the
        emulator, to make again, free)."""
        if entry.intact(self.clips_dir) is not None:
            return _Verdict(Action.REUSE, "unchanged", keeps=True)
        if self.cache is not None and entry.sha256 and self.cache.has(entry.sha256):
            cached = f"{noun} not on disk: from the cache {self.cache.shown}, free"
            return _Verdict(Action.FETCH, "unchanged", (cached,), keeps=True)
        if self.emulator:
            return _Verdict(Action.REMAKE, "lost", (f"{noun} not on disk",))
        again = f"{noun} not on disk: downloaded again, free"
        return _Verdict(Action.DOWNLOAD, "unchanged", (again,), keeps=True)

    def _voice(self, entry: SoundLock) -> _Verdict:
        """A custom voice made before: reused by its id (an emulator's is checked first)."""
        if entry.voice_id is None:  # a record someone edited: make it again
            return _Verdict(Action.SUBMIT, "failed-before", ("no voice id recorded",))
        kept = ("made again, free, if the emulator lost it",) if self.emulator else ()
        return _Verdict(Action.REUSE, "unchanged", kept, keeps=True)

    def element(self, ref: ElementRef) -> PlannedElement:
        entry = self.lock.elements.get(ref.name)
        same = entry is not None and entry.digest == ref.digest
        if entry is not None and same and entry.serves(self.backend):
            if entry.status == "succeed" and entry.element_id is not None:
                return PlannedElement(ref, Action.REUSE, "unchanged", entry)
            if entry.status == "creating":
                return PlannedElement(
                    ref, Action.SUBMIT, "interrupted", entry, entry.external_task_id, entry.attempt
                )
            if entry.in_flight and not (self.emulator and entry.backend == "emulator"):
                return PlannedElement(ref, Action.REATTACH, "in-flight", entry)
        attempt = entry.attempt + 1 if entry is not None and same else 1
        state = "new" if entry is None else "changed" if not same else "failed-before"
        return PlannedElement(
            ref, Action.SUBMIT, state, None, element_task_id(ref, attempt), attempt
        )

    def _frame_of(self, scene: str) -> FrameFile | None:
        """The last frame of `scene`'s selected clip, when that clip is the one recorded:
        kept on disk, or downloaded again (its frame then known from the lockfile)."""
        task = self.reused.get(scene) or self.downloaded.get(scene)
        if task is None or task.clip is None:
            return None
        known = self.lock.last_frames.get(task.clip.sha256)
        if known is not None:
            return FrameFile(scene, frame_name(scene), known)
        clip = self.clip_path(task)
        if scene not in self.reused or clip is None:
            return None
        data = last_frame_png(clip)
        return FrameFile(scene, frame_name(scene), hashlib.sha256(data).hexdigest())

    def clip_path(self, task: TaskLock) -> Path | None:
        if task.clip is None:
            return None
        return task.clip.path(self.clips_dir.parent)

    def intact(self, task: TaskLock) -> bool:
        return task.clip is not None and task.clip.intact(self.clips_dir.parent) is not None


@dataclass(frozen=True, slots=True)
class _Submit:
    """A create for a job, under the next attempt number its work has not used."""

    job: Job
    request: VideoRequest
    digest: str
    attempt: int

    def row(
        self, state: str, reasons: tuple[str, ...], action: Action = Action.SUBMIT
    ) -> PlannedTake:
        ext = external_task_id(self.job.scene, self.digest, self.job.take, self.attempt)
        return PlannedTake(
            self.job, action, state, reasons, self.request, self.digest, None, ext, self.attempt
        )


_Record = ImageLock | SoundLock
_Kept = TypeVar("_Kept", ImageLock, SoundLock)


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What to do with a recorded task, and whether its row carries the record."""

    action: Action
    state: str
    reasons: tuple[str, ...] = ()
    keeps: bool = False  # the row works from the record: reuse, fetch, re-attach, look up

    @property
    def creates(self) -> bool:
        return self.action in CREATES


def image_task_id(job: ImageJob, digest: str, attempt: int) -> str:
    """The external_task_id of an image task: its work's digest, and the attempt."""
    suffix = f"-a{attempt}" if attempt > 1 else ""
    kind = "st" if job.kind == "still" else "img"
    return f"sb-{kind}-{job.key[:24]}-{digest[:32]}{suffix}"


_SOUND_CHANGES: dict[SoundKind, str] = {
    "voice": "its sample",
    "speech": "text, voice or settings",
    "effect": "prompt or duration",
}


def sound_task_id(job: SoundJob, digest: str, attempt: int) -> str:
    """The external_task_id of a custom voice or an effect: its work's digest, and the attempt."""
    suffix = f"-a{attempt}" if attempt > 1 else ""
    kind = "vo" if job.kind == "voice" else "fx"
    return f"sb-{kind}-{job.key[:24]}-{digest[:32]}{suffix}"


def element_task_id(element: ElementRef, attempt: int) -> str:
    suffix = f"-a{attempt}" if attempt > 1 else ""
    return f"sb-el-{element.name[:20]}-{element.digest[:32]}{suffix}"


def what_changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Name the request fields (and media files) that differ, in words a user knows."""
    reasons: list[str] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "multi_prompt" and isinstance(before, list) and isinstance(after, list):
            reasons += _shots_changed(before, after)
        elif key == "image_list" and isinstance(before, list) and isinstance(after, list):
            reasons += _images_changed(before, after)
        else:
            reasons.append(key)
    return reasons or ["compiler version"]


def _shots_changed(old: list[Any], new: list[Any]) -> list[str]:
    if len(old) != len(new):
        return [f"shots: {len(old)} -> {len(new)}"]
    reasons = []
    for index, (before, after) in enumerate(zip(old, new, strict=True), 1):
        for name in ("prompt", "duration"):
            if not isinstance(before, dict) or before.get(name) != after.get(name):
                reasons.append(f"shot {index} {name}")
    return reasons


def _images_changed(old: list[Any], new: list[Any]) -> list[str]:
    """Images as the lockfile records them (wire.record_value): by file, frame or URL."""

    def name(item: Any, n: int) -> str:
        image = item.get("image_url") if isinstance(item, dict) else None
        if isinstance(image, dict):
            if "last_frame_of" in image:
                return f"last frame of {image['last_frame_of']}"
            return str(image.get("file", f"image {n}"))
        return str(image) if isinstance(image, str) and "://" in image else f"image {n}"

    if len(old) != len(new):
        return ["images"]
    reasons = []
    for n, (before, after) in enumerate(zip(old, new, strict=True), 1):
        if before == after:
            continue
        if name(before, n) == name(after, n):
            reasons.append(f"{name(after, n)} (file content)")
        else:
            reasons.append(f"image {name(before, n)} -> {name(after, n)}")
    return reasons
