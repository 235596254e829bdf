"""The lockfile beside each storyboard: what was paid for, and where it is. Disk ↔ Lockfile.

`storyboards/NAME.lock` is committed. It is JSON with sorted keys, one entry per scene, so
a diff reads as "this scene was re-rendered". Per scene it holds the payload digest and
the payload itself (media by content digest, so `plan` can say *what* changed), one task
per take (ids, status, units charged, clip hash) and the paid tasks it superseded (the
ledger). Never a secret, never media. Every save is atomic.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .fsutil import atomic_write_text

if TYPE_CHECKING:
    from .client import TaskInfo

LOCK_VERSION = 1
# Part of every payload digest: bump it when lowering changes what the same YAML asks of
# Kling, so that old clips are re-rendered rather than silently reused.
COMPILER_SALT = "storyboard-lowering-1"
_CONTENT = re.compile(r"^(?:local|frame|element):.*@sha256:([0-9a-f]{64})$")


class LockfileError(Exception):
    """The lockfile exists but cannot be read; it is never overwritten in that state."""


def payload_digest(payload: dict[str, Any]) -> str:
    """sha256 of the canonical payload, media by content (not path or scene), salted."""

    def by_content(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: by_content(item) for key, item in value.items()}
        if isinstance(value, list):
            return [by_content(item) for item in value]
        if isinstance(value, str):
            match = _CONTENT.match(value)
            if match:
                return f"sha256:{match.group(1)}"
        return value

    canonical = json.dumps(
        {"salt": COMPILER_SALT, "payload": by_content(payload)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


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
        return cls(**{**doc, "clip": Clip(**clip) if clip else None})


@dataclass(slots=True)
class SceneLock:
    """A scene's current work (its digest and payload), its takes, and what it replaced."""

    digest: str
    payload: dict[str, Any]
    backend: str = "kling"  # an emulator's placeholder never stands in for a Kling clip
    takes: dict[int, TaskLock] = field(default_factory=dict)
    history: list[TaskLock] = field(default_factory=list)  # superseded tasks: the ledger

    def retire(self, take: int) -> None:
        """Move a take's task to the ledger (a failed or forced take, or changed work)."""
        task = self.takes.pop(take, None)
        if task is not None and (task.task_id or task.status == "creating"):
            self.history.append(task)

    def _earlier(self, scene: str, take: int) -> list[TaskLock]:
        """Superseded tasks that did this very work (same payload digest and take)."""
        first = external_task_id(scene, self.digest, take)
        return [
            task
            for task in self.history
            if task.external_task_id == first or task.external_task_id.startswith(first + "-a")
        ]

    def earlier_task(self, scene: str, take: int) -> TaskLock | None:
        """The latest unfailed task for this payload from before an edit since undone."""
        done = [task for task in self._earlier(scene, take) if task.status != "failed"]
        return done[-1] if done else None

    def next_attempt(self, scene: str, take: int, at_least: int) -> int:
        """An attempt number whose `external_task_id` this work has never used."""
        return max([at_least, *(task.attempt + 1 for task in self._earlier(scene, take))])

    def units_charged(self) -> Decimal:
        """Units Kling reported charging for this scene, every attempt included."""
        total = Decimal(0)
        for task in [*self.history, *self.takes.values()]:
            try:
                total += Decimal(task.units_charged or "0")
            except InvalidOperation:
                continue
        return total

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "digest": self.digest,
            "payload": self.payload,
            "backend": self.backend,
            "takes": {str(take): task.as_json() for take, task in sorted(self.takes.items())},
        }
        if self.history:
            doc["history"] = [task.as_json() for task in self.history]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SceneLock:
        return cls(
            digest=doc["digest"],
            payload=doc["payload"],
            backend=doc.get("backend", "kling"),
            takes={int(take): TaskLock.from_json(t) for take, t in doc["takes"].items()},
            history=[TaskLock.from_json(t) for t in doc.get("history", [])],
        )


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

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(slots=True)
class Film:
    file: str
    sha256: str
    clips: list[str]  # the sha256 of each clip, in film order
    duration: float


@dataclass(slots=True)
class Lockfile:
    path: Path
    storyboard: str
    scenes: dict[str, SceneLock] = field(default_factory=dict)
    elements: dict[str, ElementLock] = field(default_factory=dict)
    film: Film | None = None

    @classmethod
    def for_storyboard(cls, storyboard: Path) -> Lockfile:
        """Read `NAME.lock` beside `NAME.yaml`, or start an empty one."""
        path = storyboard.with_suffix(".lock")
        lock = cls(path, storyboard.name)
        if not path.exists():
            return lock
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("lock_version") != LOCK_VERSION:
                raise LockfileError(
                    f"{path}: lock_version {doc.get('lock_version')!r} is not {LOCK_VERSION}"
                )
            lock.scenes = {
                scene: SceneLock.from_json(entry) for scene, entry in doc["scenes"].items()
            }
            lock.elements = {
                name: ElementLock(**entry) for name, entry in doc.get("elements", {}).items()
            }
            film = doc.get("film")
            lock.film = Film(**film) if film else None
        except LockfileError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LockfileError(
                f"{path} is not a readable lockfile ({type(exc).__name__}: {exc}); "
                "restore it from git, or move it aside to start over"
            ) from None
        return lock

    def task(self, scene: str, take: int) -> TaskLock | None:
        entry = self.scenes.get(scene)
        return entry.takes.get(take) if entry else None

    def save(self) -> None:
        doc: dict[str, Any] = {
            "lock_version": LOCK_VERSION,
            "storyboard": self.storyboard,
            "scenes": {scene: entry.as_json() for scene, entry in self.scenes.items()},
        }
        if self.elements:
            doc["elements"] = {name: e.as_json() for name, e in self.elements.items()}
        if self.film is not None:
            doc["film"] = asdict(self.film)
        text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write_text(self.path, text)
