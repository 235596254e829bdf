"""Estimate what a task costs from the price table in `models.yaml`. Scene → units, USD.

Kling bills per second of output; a base edit is billed on the input video's length
rounded to the nearest second (kling-api.md §6.2, R13).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from .model import Scene, VideoRef, capabilities


@dataclass(frozen=True, slots=True)
class Estimate:
    seconds: float
    units: float
    usd: float
    note: str | None = None


def billed_seconds(scene: Scene, video: VideoRef | None) -> tuple[float, str | None]:
    """Seconds Kling bills for a scene, and a note when the figure is an upper bound."""
    if scene.video is not None and scene.video.refer_type == "base":
        if video is not None and video.duration is not None:
            return float(math.floor(video.duration + 0.5)), None
        longest = capabilities(scene.settings.model)["video_input_seconds"]["max"]
        return float(longest), (
            f"video length unknown: counted at the {longest} s maximum; "
            "set `duration` on the video ref for an exact estimate"
        )
    if scene.shots:
        return float(sum(shot.duration for shot in scene.shots)), None
    return float(scene.duration or 0), None


def units_per_second(scene: Scene) -> float:
    rates = capabilities(scene.settings.model)["units_per_second"][scene.settings.mode]
    if scene.video is not None:
        return float(rates["video"])
    return float(rates["sound" if scene.settings.sound else "silent"])


def estimate(scene: Scene, video: VideoRef | None, usd_per_unit: float) -> Estimate:
    seconds, note = billed_seconds(scene, video)
    # Decimal keeps 5 s x 0.6 u/s x $0.14 at exactly $0.42.
    units = Decimal(str(units_per_second(scene))) * Decimal(str(seconds))
    usd = units * Decimal(str(usd_per_unit))
    return Estimate(seconds, float(units), float(round(usd, 4)), note)
