"""A task's timeline on the emulator's clock: submitted → processing → succeed | failed.

Element, image, custom-voice and sound-effect tasks share it (video tasks keep their own
in `app`, tied to the emulator's `latency`): a task is `submitted` for a quarter of its
run (at most 1 s), then `processing` until it finishes, then `succeed`, or `failed` when
a fault failed it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Timed(Protocol):
    """What the timeline needs of a task: its times on the clock and its failure, if any."""

    @property
    def created(self) -> float: ...

    @property
    def finishes(self) -> float: ...

    @property
    def fail_message(self) -> str | None: ...


def status_at(task: Timed, now: float) -> tuple[str, float]:
    """The task's status at `now` and the clock time it took that status."""
    if now >= task.finishes:
        return ("failed" if task.fail_message is not None else "succeed"), task.finishes
    submitted_for = min(1.0, (task.finishes - task.created) / 4)
    if now - task.created < submitted_for:
        return "submitted", task.created
    return "processing", task.created + submitted_for


class Listed(Timed, Protocol):
    """A timed task as its queries show it: with its ids."""

    @property
    def task_id(self) -> str: ...

    @property
    def external_task_id(self) -> str | None: ...


def task_head(
    task: Listed, now: float, ms: Callable[[float], int], units: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The task's status at `now` and the fields every query answer shares (Kling's
    envelope data); `units` adds `final_unit_deduction`, charged only once it succeeds."""
    status, since = status_at(task, now)
    data: dict[str, Any] = {
        "task_id": task.task_id,
        "task_status": status,
        "task_status_msg": task.fail_message if status == "failed" else "",
        "task_info": {"external_task_id": task.external_task_id or ""},
        "created_at": ms(task.created),
        "updated_at": ms(since),
    }
    if units is not None:
        data["final_unit_deduction"] = units if status == "succeed" else "0"
    return status, data
