"""Omni-Image tasks (kling-api.md §11.1): their state and the JSON Kling shows for them.

Images are a third kind of task beside videos and elements, with their own
external_task_id namespace, their own latency and their own concurrency (image packs are
counted apart from video packs, and an image task holds one slot per image it makes,
§11.1). A succeeded task lists its placeholder PNGs, served by the emulator at
`/_emulator/images/{task_id}/{index}.png` and drawn on first download by `clips`. The
routes live in `app`, which shares auth, admission, faults and lookups between the kinds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .rules import ImageBody
from .timeline import task_head

IMAGES_PATH = "/v1/images/omni-image"  # §11.1


@dataclass(slots=True)
class ImageTask:
    """An Omni-Image create: its checked body, its times on the clock, its PNGs once drawn."""

    task_id: str
    external_task_id: str | None
    body: ImageBody
    created: float  # on the emulator's clock
    finishes: float
    fail_message: str | None
    units: str  # final_unit_deduction once it succeeds
    pngs: dict[int, bytes] = field(default_factory=dict)  # by index, drawn on demand
    draw_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def slots(self) -> int:
        """The image concurrency it holds while in flight: one per image it makes."""
        return self.body.count


def image_subjects(raw: Any) -> list[str]:
    """What an image create fault's `match` is compared with: prompt, external_task_id."""
    if not isinstance(raw, dict):
        return []
    texts = [raw.get("prompt"), raw.get("external_task_id")]
    return [text for text in texts if isinstance(text, str)]


def image_url(base_url: str, task_id: str, index: int) -> str:
    return f"{base_url}_emulator/images/{task_id}/{index}.png"


def image_json(
    task: ImageTask, now: float, base_url: str, ms: Callable[[float], int]
) -> dict[str, Any]:
    """The task as a query shows it at `now`; `ms` turns clock time into Unix ms."""
    body = task.body
    status, data = task_head(task, now, ms, task.units)
    data["watermark_info"] = {"enabled": body.watermark}
    if status == "succeed":
        made = []
        for index in range(body.count):
            url = image_url(base_url, task.task_id, index)
            item: dict[str, Any] = {"index": index, "url": url}
            if body.watermark:
                item["watermark_url"] = url
            made.append(item)
        series = body.result_type == "series"
        data["task_result"] = {
            "result_type": body.result_type,
            "images": [] if series else made,
            "series_images": made if series else [],
        }
    return data
