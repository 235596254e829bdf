"""The element registry (kling-api.md §7.1): its tasks, ids and the JSON Kling shows for them.

Elements are a second kind of task beside videos, with their own external_task_id
namespace, their own latency and no video concurrency slot; a succeeded element task
holds an integer `element_id` that video creates accept in `element_list`, and the voice
it binds (`element_voice_id`, a preset or a made custom voice, §11.2). This module
keeps that state and its views; the routes that serve them live in `app`, which shares
auth, faults and the task lookups between both kinds of task.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .rules import ElementBody
from .timeline import task_head
from .voices import Voice, voice_view

ELEMENTS_PATH = "/v1/general/advanced-custom-elements"  # §7.1


@dataclass(slots=True)
class ElementTask:
    """An element create: its checked body, its times on the emulator's clock, its id."""

    task_id: str
    external_task_id: str | None
    body: ElementBody
    element_id: int  # drawn at create, shown once the task succeeds
    created: float  # on the emulator's clock
    finishes: float
    fail_message: str | None
    voice: Voice | None = None  # the voice element_voice_id named, as it was at create

    @property
    def stats_key(self) -> str:
        return self.external_task_id or self.body.name


@dataclass(slots=True)
class ElementRegistry:
    """Element tasks by task id and by external_task_id, and the element ids drawn so far."""

    tasks: dict[str, ElementTask] = field(default_factory=dict)
    by_external: dict[str, ElementTask] = field(default_factory=dict)
    ids: set[int] = field(default_factory=set)

    def new_element_id(self) -> int:
        # Twelve digits like the library ids in Kling's examples; below 2**53 for JS.
        while True:
            element_id = secrets.randbelow(9 * 10**11) + 10**11
            if element_id not in self.ids:
                self.ids.add(element_id)
                return element_id

    def add(self, task: ElementTask) -> None:
        self.tasks[task.task_id] = task
        if task.external_task_id is not None:
            self.by_external[task.external_task_id] = task


def element_subjects(raw: Any) -> list[str]:
    """What an element fault's `match` is compared with: element_name, external_task_id."""
    if not isinstance(raw, dict):
        return []
    texts = [raw.get("element_name"), raw.get("external_task_id")]
    return [text for text in texts if isinstance(text, str)]


def element_json(
    task: ElementTask, now: float, base_url: str, ms: Callable[[float], int]
) -> dict[str, Any]:
    """The task as a query shows it at `now`; `ms` turns clock time into Unix ms."""
    status, data = task_head(task, now, ms)
    if status == "succeed":
        data["task_result"] = {"elements": [element_view(task, base_url)]}
    return data


def element_view(task: ElementTask, base_url: str) -> dict[str, Any]:
    """The element a succeeded task made, as Kling describes it."""
    body = task.body
    element: dict[str, Any] = {
        "element_id": task.element_id,
        "element_name": body.name,
        "element_description": body.description,
        "reference_type": body.reference_type,
    }
    if body.images:
        urls = [
            picture.url or f"{base_url}_emulator/element-images/{task.task_id}/{n}"
            for n, picture in enumerate(body.images)
        ]
        element["element_image_list"] = {
            "frontal_image": urls[0],
            "refer_images": [{"image_url": url} for url in urls[1:]],
        }
    if body.video_url is not None:
        element["element_video_list"] = {"refer_videos": [{"video_url": body.video_url}]}
    if task.voice is not None:
        element["element_voice_info"] = voice_view(task.voice, base_url)
    element["tag_list"] = [{"tag_id": tag} for tag in body.tags]
    element["owned_by"] = "user"
    element["status"] = "succeed"
    return element
