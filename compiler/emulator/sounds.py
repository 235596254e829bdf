"""TTS calls and sound-effect tasks (kling-api.md §11.2): their state and their JSON.

TTS answers its call with the finished task (no external_task_id, no query: a call whose
answer is lost cannot be found again). A sound effect (`text-to-audio`) is a task like an
image: created, then queried by task id or external_task_id until it succeeds, on the
emulator's clock. Both make one `Audio` served at `/_emulator/audio/{id}.mp3` (and
`.wav`); the routes live in `app`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .audio import Audio
from .rules import SFX_UNITS, TTS_UNITS, EffectBody, SpeechBody
from .timeline import task_head

TTS_PATH = "/v1/audio/tts"
EFFECTS_PATH = "/v1/audio/text-to-audio"


def audio_url(base_url: str, audio_id: str, fmt: str) -> str:
    return f"{base_url}_emulator/audio/{audio_id}.{fmt}"


@dataclass(slots=True)
class SpeechCall:
    """A TTS call: its checked body, when it was made, its audio (none when it failed)."""

    task_id: str
    body: SpeechBody
    created: float  # on the emulator's clock
    audio: Audio | None
    fail_message: str | None
    units: str = TTS_UNITS


def speech_subjects(raw: Any) -> list[str]:
    """What a TTS fault's `match` is compared with: text, voice_id."""
    if not isinstance(raw, dict):
        return []
    texts = [raw.get("text"), raw.get("voice_id")]
    return [text for text in texts if isinstance(text, str)]


def speech_json(call: SpeechCall, base_url: str, ms: Callable[[float], int]) -> dict[str, Any]:
    """The finished task a TTS call answers with."""
    data: dict[str, Any] = {
        "task_id": call.task_id,
        "task_status": "failed" if call.audio is None else "succeed",
        "task_status_msg": call.fail_message or "",
        "final_unit_deduction": "0" if call.audio is None else call.units,
        "created_at": ms(call.created),
        "updated_at": ms(call.created),
    }
    if call.audio is not None:
        audio = call.audio
        url = audio_url(base_url, audio.audio_id, "mp3")
        data["task_result"] = {
            "audios": [{"id": audio.audio_id, "url": url, "duration": audio.duration}]
        }
    return data


@dataclass(slots=True)
class EffectTask:
    """A sound-effect create: its checked body, its times on the clock, its audio."""

    task_id: str
    external_task_id: str | None
    body: EffectBody
    audio: Audio
    created: float  # on the emulator's clock
    finishes: float
    fail_message: str | None
    units: str = SFX_UNITS


def effect_subjects(raw: Any) -> list[str]:
    """What a sound-effect fault's `match` is compared with: prompt, external_task_id."""
    if not isinstance(raw, dict):
        return []
    texts = [raw.get("prompt"), raw.get("external_task_id")]
    return [text for text in texts if isinstance(text, str)]


def effect_json(
    task: EffectTask, now: float, base_url: str, ms: Callable[[float], int]
) -> dict[str, Any]:
    """The task as a query shows it at `now`: Kling's text-to-audio result once it succeeds."""
    status, data = task_head(task, now, ms, task.units)
    if status == "succeed":
        audio = task.audio
        item = {
            "id": audio.audio_id,
            "url_mp3": audio_url(base_url, audio.audio_id, "mp3"),
            "url_wav": audio_url(base_url, audio.audio_id, "wav"),
            "duration_mp3": audio.duration,
            "duration_wav": audio.duration,
        }
        data["task_result"] = {"audios": [item]}
    return data
