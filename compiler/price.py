"""Estimate what a task costs from the price table in `models.yaml`. Scene → units, USD.

Kling bills video per second of output; a base edit is billed on the input video's
length rounded to the nearest second (kling-api.md §6.2, R13). Omni-Image bills per image
made, in image units, a currency of their own (§11.1): 8 at 1K and 2K, 16 at 4K. Sound
bills per call in video units (§11.2): a custom voice 0.05, a TTS call 0.05, a sound
effect 0.25.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from .model import Scene, VideoRef, capabilities, omni_image, sound
from .request import ImageRequest


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
    # (`shots: auto` lasts its `duration`, like a single shot)
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


def image_units(request: ImageRequest) -> Decimal:
    """Image units an Omni-Image task charges: per image by resolution, times `n`."""
    return Decimal(omni_image()["units_per_image"][request.resolution]) * request.n


def image_usd(units: Decimal, usd_per_image_unit: float) -> Decimal:
    """The USD of `units` image units, to a hundredth of a cent."""
    return round(units * Decimal(str(usd_per_image_unit)), 4)


SoundCall = Literal["voice", "tts", "sfx"]


def sound_units(call: SoundCall) -> Decimal:
    """Video units one sound call charges: a custom voice, a TTS call or a sound effect."""
    return Decimal(str(sound()["units_per_call"][call]))


def sound_usd(units: Decimal, usd_per_unit: float) -> Decimal:
    """The USD of `units` video units, to a hundredth of a cent."""
    return round(units * Decimal(str(usd_per_unit)), 4)
