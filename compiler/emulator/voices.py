"""Voices (kling-api.md §11.2): Kling's presets, the account's custom voices, their views.

A voice is what TTS speaks in and what an element binds (`element_voice_id`, §7.1). The
presets are a fixed dozen, each speaking one language; a custom voice is made by an
asynchronous task (like an element), from a sample's URL or a video made before, and is
usable once its task has succeeded, until it is deleted. This module keeps that state and
the JSON Kling shows for it; the routes live in `app`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .rules import VOICE_UNITS, VoiceBody
from .timeline import status_at, task_head

PRESETS_PATH = "/v1/general/presets-voices"
VOICES_PATH = "/v1/general/custom-voices"
DELETE_VOICES_PATH = "/v1/general/delete-voices"


@dataclass(frozen=True, slots=True)
class Voice:
    """A voice TTS can speak in: a preset (owned by kling, one language) or a custom one."""

    voice_id: str
    name: str
    owned_by: str  # "kling" for a preset; a custom voice is the account's ("user")
    language: str | None  # a preset's language (zh | en); a custom voice speaks either


# The emulator's presets: ids in the style of Kling's voice guide, six English, six Chinese.
PRESETS: tuple[Voice, ...] = tuple(
    Voice(voice_id, name, "kling", language)
    for voice_id, name, language in (
        ("oversea_male1", "Anchor", "en"),
        ("oversea_female1", "Aria", "en"),
        ("uk_boy1", "Bud", "en"),
        ("uk_man2", "Rock", "en"),
        ("reader_en_m-v1", "The Reader", "en"),
        ("commercial_lady_en_f-v1", "Commercial Lady", "en"),
        ("genshin_vindi2", "Sunny", "zh"),
        ("zhinen_xuesheng", "Sage", "zh"),
        ("ai_shatang", "Blossom", "zh"),
        ("genshin_klee2", "Peppy", "zh"),
        ("ai_kaiya", "Shine", "zh"),
        ("chengshu_jiejie", "Grace", "zh"),
    )
)
PRESETS_BY_ID = {voice.voice_id: voice for voice in PRESETS}


def trial_url(base_url: str, voice_id: str) -> str:
    return f"{base_url}_emulator/voices/{voice_id}.mp3"


def voice_view(voice: Voice, base_url: str) -> dict[str, Any]:
    """A voice as Kling lists it (in task_result.voices and element_voice_info)."""
    return {
        "voice_id": voice.voice_id,
        "voice_name": voice.name,
        "trial_url": trial_url(base_url, voice.voice_id),
        "owned_by": voice.owned_by,
    }


def preset_json(voice: Voice, base_url: str, created_ms: int) -> dict[str, Any]:
    """A preset as the presets list shows it: a finished task holding the one voice."""
    return {
        "task_id": str(10**17 + zlib.crc32(voice.voice_id.encode())),
        "task_status": "succeed",
        "task_status_msg": "",
        "created_at": created_ms,
        "updated_at": created_ms,
        "task_result": {"voices": [voice_view(voice, base_url)]},
    }


@dataclass(slots=True)
class VoiceTask:
    """A custom-voice create: its checked body, its times on the clock, the voice it makes."""

    task_id: str
    external_task_id: str | None
    body: VoiceBody
    voice_id: str  # drawn at create, usable once the task succeeds
    created: float  # on the emulator's clock
    finishes: float
    fail_message: str | None
    units: str = VOICE_UNITS

    @property
    def voice(self) -> Voice:
        return Voice(self.voice_id, self.body.name, "user", None)


@dataclass(slots=True)
class VoiceRegistry:
    """Custom-voice tasks by task id, external_task_id and voice id; the voices deleted."""

    tasks: dict[str, VoiceTask] = field(default_factory=dict)
    by_external: dict[str, VoiceTask] = field(default_factory=dict)
    by_voice: dict[str, VoiceTask] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)

    def add(self, task: VoiceTask) -> None:
        self.tasks[task.task_id] = task
        self.by_voice[task.voice_id] = task
        if task.external_task_id is not None:
            self.by_external[task.external_task_id] = task

    def made(self, voice_id: str, now: float) -> VoiceTask | None:
        """The task that made custom voice `voice_id`, if it succeeded and was not deleted."""
        task = self.by_voice.get(voice_id)
        if task is None or voice_id in self.deleted or status_at(task, now)[0] != "succeed":
            return None
        return task

    def find(self, voice_id: str, now: float) -> Voice | None:
        """A voice TTS and elements may use now: a preset, or a made custom voice."""
        preset = PRESETS_BY_ID.get(voice_id)
        if preset is not None:
            return preset
        task = self.made(voice_id, now)
        return task.voice if task is not None else None


def no_voice(field_name: str, voice_id: str) -> str:
    """The 1201 message for a voice id that names no usable voice."""
    return (
        f"{field_name} names no voice: {voice_id!r} is neither a preset nor a made custom "
        "voice of this account"
    )


def voice_subjects(raw: Any) -> list[str]:
    """What a voice create fault's `match` is compared with: voice_name, external_task_id."""
    if not isinstance(raw, dict):
        return []
    texts = [raw.get("voice_name"), raw.get("external_task_id")]
    return [text for text in texts if isinstance(text, str)]


def delete_subjects(raw: Any) -> list[str]:
    """What a delete fault's `match` is compared with: the voice_id."""
    voice_id = raw.get("voice_id") if isinstance(raw, dict) else None
    return [voice_id] if isinstance(voice_id, str) else []


def voice_task_json(
    task: VoiceTask, now: float, base_url: str, ms: Callable[[float], int], deleted: bool
) -> dict[str, Any]:
    """The task as a query shows it at `now`; a deleted voice is gone from its result."""
    status, data = task_head(task, now, ms, task.units)
    if status == "succeed":
        voices = [] if deleted else [voice_view(task.voice, base_url)]
        data["task_result"] = {"voices": voices}
    return data
