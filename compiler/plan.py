"""Decide what a render must pay for, and say why. Jobs + lockfile → Plan. No network.

A take is paid for when it was never rendered, its payload digest changed (the plan
names the field or media file), its last task failed (a paid retry), or `--force` asks.
A task in flight or finished is never bought again; a finished one whose clip file was
deleted is downloaded again for free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .execute import Job, with_frame
from .lockfile import Lockfile, SceneLock, TaskLock, payload_digest

PAID_STATES = ("new", "changed", "failed-before", "interrupted", "forced")


@dataclass(frozen=True, slots=True)
class PlannedTake:
    job: Job
    state: str  # new | changed | failed-before | interrupted | forced | in-flight | unchanged
    reasons: tuple[str, ...] = ()

    @property
    def paid(self) -> bool:
        # "interrupted": a killed run may or may not have created it; count it, to be safe.
        return self.state in PAID_STATES


@dataclass(frozen=True, slots=True)
class Plan:
    takes: tuple[PlannedTake, ...]
    disabled: tuple[str, ...] = ()
    charged_units: Decimal = Decimal(0)  # what Kling charged this storyboard so far

    @property
    def paid(self) -> tuple[PlannedTake, ...]:
        return tuple(t for t in self.takes if t.paid)

    @property
    def usd(self) -> float:
        return float(sum(Decimal(str(t.job.usd)) for t in self.paid))

    @property
    def units(self) -> float:
        return float(sum(Decimal(str(t.job.units)) for t in self.paid))


FrameOf = Callable[[str, TaskLock], str | None]


def plan(jobs: list[Job], lock: Lockfile, backend: str, frame_of: FrameOf) -> Plan:
    """Plan `jobs` (in scene order) against `lock`.

    `frame_of(scene, task)` gives the `frame:` reference of a finished task's last frame,
    or None when its clip is not on disk; it is asked only for continuity sources.
    """
    takes: list[PlannedTake] = []
    sources = {job.after for job in jobs if job.after}
    frames: dict[str, str] = {}
    for job in jobs:
        planned = _plan_take(job, lock, backend, frames)
        takes.append(planned)
        task = lock.task(job.scene, job.take)
        if job.scene in sources and planned.state == "unchanged" and task is not None:
            frame = frame_of(job.scene, task)
            if frame is not None:
                frames[job.scene] = frame
    # Only what this backend charged: an emulator's units were never billed.
    charged = sum(
        (e.units_charged() for e in lock.scenes.values() if e.backend == backend), Decimal(0)
    )
    return Plan(tuple(takes), charged_units=charged)


def _plan_take(job: Job, lock: Lockfile, backend: str, frames: dict[str, str]) -> PlannedTake:
    payload = job.payload
    entry = lock.scenes.get(job.scene)
    if job.after is not None:
        if job.after not in frames:
            why = f"first frame: the last frame of '{job.after}', rendered first"
            return PlannedTake(job, "new" if entry is None else "changed", (why,))
        payload = with_frame(payload, frames[job.after])
    if entry is None:
        return PlannedTake(job, "new")
    if entry.backend != backend:
        return PlannedTake(job, "changed", (f"rendered on {entry.backend} before",))
    digest = payload_digest(payload)
    reasons: tuple[str, ...] = ()
    if entry.digest != digest:
        # As the executor will: retire the old work, then look for an earlier task that
        # made this very payload (an edit since undone is not paid again).
        retired = [*entry.history, *entry.takes.values()]
        task = SceneLock(digest, payload, backend, history=retired).earlier_task(
            job.scene, job.take
        )
        if task is None:
            return PlannedTake(job, "changed", tuple(what_changed(entry.payload, payload)))
        reasons = ("as rendered before the last edit",)
    else:
        task = entry.takes.get(job.take) or entry.earlier_task(job.scene, job.take)
    if task is None:
        return PlannedTake(job, "new", (f"take {job.take}",) if job.take > 1 else ())
    if job.force:
        return PlannedTake(job, "forced", ("--force",))
    if task.status == "failed":
        return PlannedTake(job, "failed-before", (task.status_msg or "failed",))
    if task.status == "creating":
        return PlannedTake(job, "interrupted", ("a killed run may have created it",))
    if task.in_flight:
        return PlannedTake(job, "in-flight", (f"task {task.task_id}", *reasons))
    return PlannedTake(job, "unchanged", reasons)


def what_changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Name the payload fields (and media files) that differ, in words a user knows."""
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


def _shots_changed(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    if len(old) != len(new):
        return [f"shots: {len(old)} -> {len(new)}"]
    reasons = []
    for index, (before, after) in enumerate(zip(old, new, strict=True), 1):
        for field in ("prompt", "duration"):
            if before.get(field) != after.get(field):
                reasons.append(f"shot {index} {field}")
    return reasons


def _images_changed(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    def name(item: dict[str, Any]) -> str:
        url = str(item.get("image_url", ""))
        if url.startswith(("local:", "frame:")):
            return url.split(":", 1)[1].rsplit("@", 1)[0]
        return url

    if len(old) != len(new):
        return ["images"]
    reasons = []
    for before, after in zip(old, new, strict=True):
        if before == after:
            continue
        if name(before) == name(after):
            reasons.append(f"{name(after)} (file content)")
        else:
            reasons.append(f"image {name(before)} -> {name(after)}")
    return reasons
