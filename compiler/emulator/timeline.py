"""A task's timeline on the emulator's clock: submitted → processing → succeed | failed.

Element, image, custom-voice and sound-effect tasks share it (video tasks keep their own
in `app`, tied to the emulator's `latency`): a task is `submitted` for a quarter of its
run (at most 1 s), then `processing` until it finishes, then `succeed`, or `failed` when
a fault failed it.
"""

from __future__ import annotations

from typing import Protocol


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
