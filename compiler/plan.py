"""Decide what a render must pay for. Jobs + lockfile → Plan. Reads the lockfile, no network.

A scene is paid for again only when its payload digest changed, it was never rendered,
or its last task failed (a paid retry). A task in flight or finished is never re-bought.
"""

from __future__ import annotations

from dataclasses import dataclass

from .execute import Job
from .lockfile import Lockfile


@dataclass(frozen=True, slots=True)
class PlannedScene:
    job: Job
    state: str  # new | changed | failed-before | interrupted | in-flight | unchanged

    @property
    def paid(self) -> bool:
        # "interrupted": a killed run may or may not have created it; count it, to be safe.
        return self.state in ("new", "changed", "failed-before", "interrupted")


@dataclass(frozen=True, slots=True)
class Plan:
    scenes: tuple[PlannedScene, ...]

    @property
    def paid(self) -> tuple[PlannedScene, ...]:
        return tuple(s for s in self.scenes if s.paid)

    @property
    def usd(self) -> float:
        return round(sum(s.job.usd for s in self.paid), 4)

    @property
    def units(self) -> float:
        return round(sum(s.job.units for s in self.paid), 4)


def plan(jobs: list[Job], lock: Lockfile, backend: str = "kling") -> Plan:
    planned = []
    for job in jobs:
        entry = lock.scenes.get(job.scene)
        if entry is None:
            state = "new"
        elif entry.digest != job.digest or entry.backend != backend:
            state = "changed"
        elif entry.status == "failed":
            state = "failed-before"
        elif entry.status == "creating":
            state = "interrupted"
        elif entry.in_flight:
            state = "in-flight"
        else:
            state = "unchanged"
        planned.append(PlannedScene(job, state))
    return Plan(tuple(planned))
