"""The lockfile beside each storyboard: what was paid for, and where it is. Disk ↔ Lockfile.

`storyboards/NAME.lock` is committed. It is JSON with sorted keys, one entry per scene, so
a diff reads as "this scene was re-rendered". Per scene it holds the payload digest and
the payload itself (media by content digest, so `plan` can say *what* changed), one task
per take (ids, status, units charged, clip hash) and the paid tasks it superseded (the
ledger). Never a secret, never media. Every save is atomic.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from .errors import LockfileError as LockfileError
from .fsutil import atomic_write_text, sha256_file
from .redaction import redact_secrets

if TYPE_CHECKING:
    from .client import AudioTaskInfo, ElementTaskInfo, ImageTaskInfo, TaskInfo, VoiceTaskInfo

LOCK_VERSION = 2
MAX_ATTEMPT = 1_000_000  # lockfile.schema.json: "attempt" maximum
READABLE_VERSIONS = (1, 2)  # version 1 is read (see `_legacy_origin`) and saved as 2
BACKENDS = ("kling", "emulator")
# The in-process emulator's host (backends.py): a URL there was never Kling's.
EMULATOR_HOST_SUFFIX = ".invalid"


def external_task_id(scene: str, digest: str, take: int = 1, attempt: int = 1) -> str:
    """The id Kling keeps unique per account (R16): the same work always gets the same id.

    The scene id makes it readable in Kling's console; a failed task is never resubmitted
    under its own id, so the next attempt gets a new one.
    """
    suffix = f"-a{attempt}" if attempt > 1 else ""
    return f"sb-{scene[:24]}-{digest[:32]}-t{take}{suffix}"


@dataclass(slots=True)
class Clip:
    """A downloaded clip: it counts as done only with its hash recorded."""

    file: str  # relative to the renders folder, e.g. "lighthouse/opening.mp4"
    sha256: str
    bytes: int
    duration: float

    def path(self, renders: Path) -> Path | None:
        """Where the clip is, or None when its recorded name leads out of `renders`.

        The lockfile arrives in pull requests: a name it holds is never trusted to
        stay inside the renders folder, even through a symlink.
        """
        candidate = renders / self.file
        try:
            if any(len(os.fsencode(part)) > 255 for part in Path(self.file).parts):
                return None  # no file system takes such a name
            inside = candidate.resolve().is_relative_to(renders.resolve())
        except (OSError, RuntimeError, ValueError):  # ValueError: NUL, lone surrogates
            return None
        return candidate if inside else None

    def intact(self, renders: Path) -> Path | None:
        """The clip's path when the file there is the one recorded (size, then sha256)."""
        path = self.path(renders)
        if path is None or not path.is_file() or path.stat().st_size != self.bytes:
            return None
        return path if sha256_file(path) == self.sha256 else None


@dataclass(slots=True)
class TaskLock:
    """One take's task: created, in flight, finished, and the clip it produced."""

    external_task_id: str
    status: str  # creating | submitted | processing | succeed | failed
    attempt: int = 1
    task_id: str | None = None
    status_msg: str | None = None
    units_charged: str | None = None
    video_url: str | None = None
    clip: Clip | None = None
    backend: str = "kling"  # which backend made it: a placeholder never stands in for Kling
    digest: str | None = None  # the work it did; None in lockfiles of version 1
    take: int | None = None

    def did(self, scene: str, digest: str, take: int) -> bool:
        """Whether this task made the work `digest` for take `take` of `scene`."""
        if self.digest is not None and self.take is not None:
            return self.digest == digest and self.take == take
        # Version 1 kept neither: the work is known by the id it was created under.
        first = external_task_id(scene, digest, take)
        return self.external_task_id == first or self.external_task_id.startswith(first + "-a")

    def serves(self, backend: str) -> bool:
        """A Kling result is real and serves any backend; a placeholder only the emulator."""
        return self.backend == "kling" or backend == "emulator"

    @property
    def in_flight(self) -> bool:
        return self.status in ("creating", "submitted", "processing")

    def observe(self, info: TaskInfo) -> None:
        """Take in what Kling last said of this task."""
        self.task_id = info.task_id
        self.status = info.status
        self.status_msg = info.status_msg
        self.units_charged = info.units_charged or self.units_charged
        self.video_url = info.video_url or self.video_url

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TaskLock:
        clip = doc.get("clip")
        task = cls(**{**doc, "clip": Clip(**clip) if clip else None})
        if task.backend not in BACKENDS:
            raise ValueError(f"unknown backend {task.backend!r}")
        return task


@dataclass(slots=True)
class SceneLock:
    """A scene's current work (its digest and request), its takes, and what they replaced."""

    digest: str
    payload: dict[str, Any]  # the request as wire.record_json writes it
    takes: dict[int, TaskLock] = field(default_factory=dict)
    history: list[TaskLock] = field(default_factory=list)  # superseded tasks: the ledger

    def retire(self, take: int) -> None:
        """Move a take's task to the ledger (a failed or forced take, or changed work)."""
        task = self.takes.pop(take, None)
        if task is not None and (task.task_id or task.status == "creating"):
            self.history.append(task)

    def tasks(self) -> list[TaskLock]:
        return [*self.history, *self.takes.values()]

    def units_charged(self, backend: str | None = None) -> Decimal:
        """Units reported charged for this scene, every attempt included (on `backend`)."""
        return sum(
            (
                _units(task.units_charged)
                for task in self.tasks()
                if backend is None or task.backend == backend
            ),
            Decimal(0),
        )

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "digest": self.digest,
            "payload": self.payload,
            # A current take's digest and number are the entry's and its key: not repeated.
            "takes": {
                str(take): {k: v for k, v in task.as_json().items() if k not in ("digest", "take")}
                for take, task in sorted(self.takes.items())
            },
        }
        if self.history:
            doc["history"] = [task.as_json() for task in self.history]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any], version: int = LOCK_VERSION) -> SceneLock:
        entry = cls(
            digest=doc["digest"],
            payload=doc["payload"],
            takes={int(take): TaskLock.from_json(t) for take, t in doc["takes"].items()},
            history=[TaskLock.from_json(t) for t in doc.get("history", [])],
        )
        for take, task in entry.takes.items():
            task.digest, task.take = entry.digest, take
        if version == 1:
            _legacy_origin(entry, doc.get("backend", "kling"))
        return entry


def _legacy_origin(entry: SceneLock, scene_backend: str) -> None:
    """Give the tasks of a version-1 scene entry their origin, which version 1 did not keep.

    Version 1 kept one backend per scene, true of the scene's current takes. The rule for
    the rest never pays twice for Kling's work: a superseded task is the emulator's only
    when its result URL is on the in-process emulator's `.invalid` host, which Kling can
    never serve; any other task of unknown origin counts as Kling's (README "Lockfile").
    """
    for task in entry.takes.values():
        task.backend = scene_backend if scene_backend in BACKENDS else "kling"
    for task in entry.history:
        host = (urlsplit(task.video_url).hostname or "") if task.video_url else ""
        task.backend = "emulator" if host.endswith(EMULATOR_HOST_SUFFIX) else "kling"


@dataclass(slots=True)
class ElementLock:
    """An element storyboard created from local images, and the id Kling gave it."""

    digest: str  # of its description and images: a change re-creates it
    external_task_id: str
    status: str  # creating | submitted | processing | succeed | failed
    attempt: int = 1
    task_id: str | None = None
    element_id: int | None = None
    status_msg: str | None = None
    backend: str = "kling"  # an emulator's element id means nothing to Kling

    def serves(self, backend: str) -> bool:
        return self.backend == "kling" or backend == "emulator"

    @property
    def in_flight(self) -> bool:
        return self.status in ("creating", "submitted", "processing")

    def observe(self, info: ElementTaskInfo) -> None:
        """Take in what Kling last said of the element's task."""
        self.task_id, self.status, self.status_msg = info.task_id, info.status, info.status_msg
        self.element_id = info.element_id

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


class _Made:
    """What a record of paid work that leaves a file in renders/NAME does (an image, a
    narration, an effect): where the file is, and whether it is the one recorded."""

    __slots__ = ()
    status: str
    backend: str
    file: str | None
    sha256: str | None
    bytes: int | None

    @property
    def in_flight(self) -> bool:
        return self.status in ("creating", "submitted", "processing")

    def serves(self, backend: str) -> bool:
        return self.backend == "kling" or backend == "emulator"

    def path(self, folder: Path) -> Path | None:
        """The file inside `folder` (renders/NAME), or None: never outside it."""
        if self.file is None:
            return None
        return self._as_clip().path(folder)

    def intact(self, folder: Path) -> Path | None:
        """The file's path when the file there is the one recorded; None before it is made."""
        if self.sha256 is None or self.bytes is None:
            return None
        return self._as_clip().intact(folder)

    def _as_clip(self) -> Clip:
        """The file as a Clip record: one place confines and checks recorded files."""
        return Clip(self.file or "", self.sha256 or "", self.bytes or 0, 0.0)

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = asdict(self)  # type: ignore[call-overload]
        return {key: value for key, value in doc.items() if value is not None}


@dataclass(slots=True)
class ImageLock(_Made):
    """An Omni-Image task (a generated image ref, or a still of a shot) and its PNG.

    Paid once like a clip: the intent is saved before the create, the task id before
    polling, and the PNG counts as made only with its sha256 recorded.
    """

    digest: str  # of its ImageRequest: other work gets a new record
    external_task_id: str
    status: str  # creating | submitted | processing | succeed | failed
    attempt: int = 1
    task_id: str | None = None
    status_msg: str | None = None
    units_charged: str | None = None
    image_url: str | None = None
    file: str | None = None  # relative to renders/NAME, e.g. "images/coast.png"
    sha256: str | None = None
    bytes: int | None = None
    backend: str = "kling"

    def observe(self, info: ImageTaskInfo) -> None:
        """Take in what Kling last said of the image's task."""
        self.task_id, self.status, self.status_msg = info.task_id, info.status, info.status_msg
        self.units_charged = info.units_charged or self.units_charged
        self.image_url = info.image_url or self.image_url


@dataclass(slots=True)
class SoundLock(_Made):
    """A custom voice, a scene's narration (TTS) or its sound effect, and what it made.

    Paid once like a clip: the intent is saved before the call, a task id before polling,
    and audio counts as made only with its sha256 recorded. TTS has no external task id
    (kling-api.md §11.2): a `creating` record without one is a call that may have been
    paid and cannot be looked up (README "Sound").
    """

    digest: str  # of its request (soundwire.py): other work gets a new record
    status: str  # creating | submitted | processing | succeed | failed
    external_task_id: str | None = None
    attempt: int = 1
    task_id: str | None = None
    status_msg: str | None = None
    units_charged: str | None = None
    voice_id: str | None = None  # a custom voice's id, once made
    audio_url: str | None = None
    file: str | None = None  # relative to renders/NAME, e.g. "audio/opening.narration.mp3"
    sha256: str | None = None
    bytes: int | None = None
    duration: float | None = None  # seconds, as Kling states it
    backend: str = "kling"

    def observe(self, info: AudioTaskInfo) -> None:
        """Take in what Kling last said of a narration's or an effect's task."""
        self.task_id, self.status, self.status_msg = info.task_id, info.status, info.status_msg
        self.units_charged = info.units_charged or self.units_charged
        self.audio_url = info.audio_url or self.audio_url
        self.duration = info.duration if info.duration is not None else self.duration

    def observe_voice(self, info: VoiceTaskInfo) -> None:
        """Take in what Kling last said of a custom voice's task."""
        self.task_id, self.status, self.status_msg = info.task_id, info.status, info.status_msg
        self.units_charged = info.units_charged or self.units_charged
        self.voice_id = info.voice_id or self.voice_id


_SOUND_SECTIONS = {"voice": "voices", "speech": "speech", "effect": "effects"}


def attempt_after(attempt: int, what: str, path: Path) -> int:
    """The attempt after `attempt`, within what the lockfile schema allows (never saved
    past it: every command would then refuse the lockfile)."""
    if attempt + 1 > MAX_ATTEMPT:
        raise LockfileError(
            f"{path}: {what} has used {attempt} attempts; storyboard makes no more "
            "(edit it to start a new series)"
        )
    return attempt + 1


@dataclass(slots=True)
class Film:
    file: str
    sha256: str
    clips: list[str]  # the sha256 of each clip, in film order
    duration: float
    mix: str | None = None  # the sha256 of the soundtrack it was mixed with (film.py)


@dataclass(slots=True)
class Lockfile:
    path: Path
    storyboard: str
    scenes: dict[str, SceneLock] = field(default_factory=dict)
    elements: dict[str, ElementLock] = field(default_factory=dict)
    film: Film | None = None
    images: dict[str, ImageLock] = field(default_factory=dict)  # generated image refs
    stills: dict[str, ImageLock] = field(default_factory=dict)  # by "SCENE-N" (shot N)
    # The sha256 of a clip's last frame (as PNG), by the clip's sha256: a frame is a
    # function of its clip's bytes, so a continuing scene's request is known without
    # the clip on disk (a source downloaded again does not make its follower paid again).
    last_frames: dict[str, str] = field(default_factory=dict)
    voices: dict[str, SoundLock] = field(default_factory=dict)  # custom voices, by name
    speech: dict[str, SoundLock] = field(default_factory=dict)  # narration, by scene
    effects: dict[str, SoundLock] = field(default_factory=dict)  # sound effects, by scene
    # Sound records other work replaced, by section ("voices", "speech", "effects") and
    # name, oldest first: what they charged stays counted (a line edited five times was
    # paid five times), and an edit undone takes its earlier record back (plan.py).
    sound_history: dict[str, dict[str, list[SoundLock]]] = field(default_factory=dict)
    # The same for generated images and stills ("images", "stills").
    image_history: dict[str, dict[str, list[ImageLock]]] = field(default_factory=dict)

    @classmethod
    def for_storyboard(cls, storyboard: Path) -> Lockfile:
        """Read `NAME.lock` beside `NAME.yaml`, or start an empty one."""
        path = storyboard.with_suffix(".lock")
        lock = cls(path, storyboard.name)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)  # a save cut short by a killed run
        if not path.exists():
            return lock
        try:
            doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
            _check(path, doc)
            version = doc["lock_version"]
            lock.scenes = {
                scene: SceneLock.from_json(entry, version) for scene, entry in doc["scenes"].items()
            }
            lock.elements = {
                name: ElementLock(**entry) for name, entry in doc.get("elements", {}).items()
            }
            for task in (t for e in lock.scenes.values() for t in e.tasks()):
                if task.status_msg:  # a server's words, maybe from someone else's run
                    task.status_msg = redact_secrets(task.status_msg)
            if version == 1:
                # Version 1 kept no origin for elements; they were made by the backend that
                # rendered the scenes, so by the emulator only when every scene was.
                everyone = {e.get("backend", "kling") for e in doc["scenes"].values()}
                origin = "emulator" if everyone == {"emulator"} else "kling"
                for element in lock.elements.values():
                    element.backend = origin
            film = doc.get("film")
            lock.film = Film(**film) if film else None
            lock.last_frames = dict(doc.get("last_frames", {}))
            lock.images = {k: ImageLock(**v) for k, v in doc.get("images", {}).items()}
            lock.stills = {k: ImageLock(**v) for k, v in doc.get("stills", {}).items()}
            lock.voices = {k: SoundLock(**v) for k, v in doc.get("voices", {}).items()}
            lock.speech = {k: SoundLock(**v) for k, v in doc.get("speech", {}).items()}
            lock.effects = {k: SoundLock(**v) for k, v in doc.get("effects", {}).items()}
            lock.sound_history = _history(doc.get("sound_history", {}), SoundLock)
            lock.image_history = _history(doc.get("image_history", {}), ImageLock)
            images = [*lock.images.values(), *lock.stills.values(), *_replaced(lock.image_history)]
            for sound in lock.all_sounds():  # servers' words, as for tasks
                if sound.status_msg:
                    sound.status_msg = redact_secrets(sound.status_msg)
            for image in images:
                if image.status_msg:
                    image.status_msg = redact_secrets(image.status_msg)
        except LockfileError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise LockfileError(
                f"{path} is not a readable lockfile ({type(exc).__name__}: {exc}); "
                "restore it from git, or move it aside to start over"
            ) from None
        return lock

    def task(self, scene: str, take: int) -> TaskLock | None:
        entry = self.scenes.get(scene)
        return entry.takes.get(take) if entry else None

    def tasks_for(self, scene: str, digest: str, take: int) -> list[TaskLock]:
        """Every task that made this work, oldest first; the current take's last."""
        entry = self.scenes.get(scene)
        if entry is None:
            return []
        done = [task for task in entry.history if task.did(scene, digest, take)]
        current = entry.takes.get(take)
        if current is not None and entry.digest == digest:
            done.append(current)
        return done

    def next_attempt(self, scene: str, digest: str, take: int) -> int:
        """An attempt number whose `external_task_id` this work has never used."""
        attempt = max([0, *(task.attempt for task in self.tasks_for(scene, digest, take))]) + 1
        if attempt > MAX_ATTEMPT:  # what the lockfile schema allows: never save past it
            raise LockfileError(
                f"{self.path}: scene '{scene}' take {take} has used {attempt - 1} attempts; "
                "storyboard makes no more (edit the scene to start a new series)"
            )
        return attempt

    def install(
        self, scene: str, take: int, digest: str, payload: dict[str, Any], task: TaskLock
    ) -> None:
        """Make `task` take `take` of `scene`, doing work `digest`.

        Takes of other work are retired to the ledger; a task brought back from the
        ledger (an edit since undone) leaves it.
        """
        entry = self.scenes.get(scene)
        if entry is None or entry.digest != digest:
            old = entry
            entry = SceneLock(digest, payload)
            if old is not None:
                for number in list(old.takes):
                    old.retire(number)
                entry.history = old.history
            self.scenes[scene] = entry
        entry.history = [earlier for earlier in entry.history if earlier is not task]
        if entry.takes.get(take) is not task:
            entry.retire(take)
            entry.takes[take] = task

    def sound_records(self, kind: str) -> dict[str, SoundLock]:
        """The records of one kind of sound call: "voice", "speech" or "effect"."""
        return {"voice": self.voices, "speech": self.speech, "effect": self.effects}[kind]

    def all_sounds(self) -> list[SoundLock]:
        """Every sound record, current or replaced."""
        current = (*self.voices.values(), *self.speech.values(), *self.effects.values())
        return [*current, *_replaced(self.sound_history)]

    def made_sound(
        self, kind: str, key: str, digest: str, folder: Path
    ) -> tuple[SoundLock, Path] | None:
        """The current record of `key` and its audio, when that record made `digest` (what
        the storyboard asks for now) and the file in `folder` is the one recorded."""
        entry = self.sound_records(kind).get(key)
        if entry is None or entry.digest != digest:
            return None
        path = entry.intact(folder)
        return (entry, path) if path is not None else None

    def keep_sound(self, kind: str, key: str, entry: SoundLock) -> None:
        """Make `entry` the record of `key` (a voice's name, or a scene); the record it
        replaces goes to `sound_history`, and a record taken back from there leaves it."""
        section = self.sound_history.setdefault(_SOUND_SECTIONS[kind], {})
        _keep(self.sound_records(kind), section, key, entry)

    def earlier_sound(self, kind: str, key: str, digest: str, backend: str) -> SoundLock | None:
        """The latest replaced record that made this very work, done, for `backend`: an
        edit undone takes it back instead of paying again."""
        replaced = self.sound_history.get(_SOUND_SECTIONS[kind], {}).get(key, [])
        return _earlier(replaced, digest, backend)

    def sound_attempts(self, kind: str, key: str, digest: str) -> int:
        """The highest attempt any record of `key` (current or replaced) made `digest`
        under; 0 when none did."""
        replaced = self.sound_history.get(_SOUND_SECTIONS[kind], {}).get(key, [])
        return _attempts(self.sound_records(kind).get(key), replaced, digest)

    def image_records(self, kind: str) -> dict[str, ImageLock]:
        """The records of generated images ("image") or of stills ("still")."""
        return self.images if kind == "image" else self.stills

    def keep_image(self, kind: str, key: str, entry: ImageLock) -> None:
        """As `keep_sound`, for a generated image or a still (`image_history`)."""
        section = self.image_history.setdefault(f"{kind}s", {})
        _keep(self.image_records(kind), section, key, entry)

    def earlier_image(self, kind: str, key: str, digest: str, backend: str) -> ImageLock | None:
        replaced = self.image_history.get(f"{kind}s", {}).get(key, [])
        return _earlier(replaced, digest, backend)

    def image_attempts(self, kind: str, key: str, digest: str) -> int:
        replaced = self.image_history.get(f"{kind}s", {}).get(key, [])
        return _attempts(self.image_records(kind).get(key), replaced, digest)

    def charged(self, backend: str) -> Decimal:
        """Units charged on `backend` so far: every take and attempt, and every sound call."""
        clips = sum((e.units_charged(backend) for e in self.scenes.values()), Decimal(0))
        sounds = (s for s in self.all_sounds() if s.backend == backend)
        return clips + sum((_units(s.units_charged) for s in sounds), Decimal(0))

    def save(self) -> None:
        doc: dict[str, Any] = {
            "lock_version": LOCK_VERSION,
            "storyboard": self.storyboard,
            "scenes": {scene: entry.as_json() for scene, entry in self.scenes.items()},
        }
        if self.elements:
            doc["elements"] = {name: e.as_json() for name, e in self.elements.items()}
        if self.film is not None:
            doc["film"] = {k: v for k, v in asdict(self.film).items() if v is not None}
        if self.last_frames:
            doc["last_frames"] = self.last_frames
        if self.images:
            doc["images"] = {name: image.as_json() for name, image in self.images.items()}
        if self.stills:
            doc["stills"] = {name: still.as_json() for name, still in self.stills.items()}
        for name, history in (
            ("sound_history", self.sound_history),
            ("image_history", self.image_history),
        ):
            kept = {
                section: {key: [r.as_json() for r in records] for key, records in by_key.items()}
                for section, by_key in history.items()
                if by_key
            }
            if kept:
                doc[name] = kept
        for key, sounds in (
            ("voices", self.voices),
            ("speech", self.speech),
            ("effects", self.effects),
        ):
            if sounds:
                doc[key] = {name: sound.as_json() for name, sound in sounds.items()}
        text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
        text += "\n"
        atomic_write_text(self.path, text)


def _units(text: str | None) -> Decimal:
    """Units charged as recorded; 0 for a value that is not a finite number."""
    try:
        units = Decimal(text or "0")
    except InvalidOperation:
        return Decimal(0)
    return units if units.is_finite() else Decimal(0)


_Kept = TypeVar("_Kept", ImageLock, SoundLock)


def _history(doc: dict[str, Any], record: type[_Kept]) -> dict[str, dict[str, list[_Kept]]]:
    return {
        section: {key: [record(**entry) for entry in entries] for key, entries in by_key.items()}
        for section, by_key in doc.items()
    }


def _replaced(history: dict[str, dict[str, list[_Kept]]]) -> list[_Kept]:
    """Every record of a history, all sections and names."""
    return [
        record for by_key in history.values() for records in by_key.values() for record in records
    ]


def _keep(
    records: dict[str, _Kept], history: dict[str, list[_Kept]], key: str, entry: _Kept
) -> None:
    """`entry` becomes `records[key]`: the record it replaces joins `history[key]`, and an
    entry taken back from there leaves it (an undone edit, as a take's ledger does)."""
    old = records.get(key)
    earlier: list[_Kept] = list(history.get(key, []))
    if old is not None and old is not entry:
        earlier.append(old)
    kept = [record for record in earlier if record is not entry]
    if kept:
        history[key] = kept
    else:
        history.pop(key, None)
    records[key] = entry


def _earlier(replaced: list[_Kept], digest: str, backend: str) -> _Kept | None:
    """The latest replaced record that made `digest`, done, for `backend`."""
    for record in reversed(replaced):
        if record.digest == digest and record.status == "succeed" and record.serves(backend):
            return record
    return None


def _attempts(current: _Kept | None, replaced: list[_Kept], digest: str) -> int:
    """The highest attempt a record (current or replaced) made `digest` under; 0 if none."""
    records = [*([current] if current is not None else []), *replaced]
    return max((r.attempt for r in records if r.digest == digest), default=0)


@functools.cache
def _validator() -> Draft202012Validator:
    schema = json.loads((Path(__file__).parent / "lockfile.schema.json").read_text("utf-8"))
    return Draft202012Validator(schema)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _bad_text(value: object, where: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where a string holds text no file, terminal or page can carry (a lone surrogate)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if isinstance(value, dict):
        items: list[tuple[str | int, object]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and _bad_text(key) is not None:
            return (*where, "(a key)")
        found = _bad_text(item, (*where, key))
        if found is not None:
            return found
    return None


def _check(path: Path, doc: object) -> None:
    """Refuse a lockfile that does not follow the lockfile schema, naming the bad entry."""
    bad = _bad_text(doc)
    if bad is not None:
        where = " → ".join(str(part) for part in bad) or "the top level"
        raise LockfileError(
            f"{path}: {where}: text that is not valid Unicode (a lone surrogate escape); "
            "restore the lockfile from git, or move it aside to start over"
        )
    if isinstance(doc, dict) and doc.get("lock_version") not in (None, *READABLE_VERSIONS):
        raise LockfileError(
            f"{path}: lock_version {doc.get('lock_version')!r} is not one of "
            f"{READABLE_VERSIONS}: a newer storyboard wrote it; upgrade storyboard"
        )
    error = best_match(_validator().iter_errors(doc))
    if error is None:
        return
    where = " → ".join(str(part) for part in error.absolute_path) or "the top level"
    shown = repr(error.instance)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    why = "it does not have the form" if error.validator == "pattern" else error.message[:200]
    raise LockfileError(
        redact_secrets(
            f"{path}: {where}: {shown} is not valid here ({why}); "
            "restore the lockfile from git, or move it aside to start over"
        )
    )
