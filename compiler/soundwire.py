"""Sound requests as JSON: the bodies sent, `compile --json`'s display form, the digests.

The sound counterpart of `wire.py` for `VoiceRequest`, `SpeechRequest` and
`EffectRequest` (request.py; kling-api.md §11.2), and the one place they become Kling's
JSON (`voice_body`, `speech_body`, `effect_body`, which the client sends). A custom voice
is known by the digest of its request, with a local sample by its content, so a new
recording makes a new voice, re-creates the elements that speak in it, and re-renders
exactly the scenes that show them. A narration's digest names its voice the same way (a
preset by id, a custom voice by that digest), so it is known before the voice is made.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .model import sound
from .request import (
    EffectRequest,
    PresetVoice,
    SpeechRequest,
    VoiceMedia,
    VoiceRequest,
    VoiceToMake,
)
from .wire import COMPILER_SALT, display_value


def voice_value(voice: VoiceMedia) -> str | dict[str, str]:
    """How `compile --json` shows a voice: a preset by its id (as sent), a custom voice,
    whose id exists only once it is made, as `{custom_voice: NAME, sha256: DIGEST}`."""
    match voice:
        case PresetVoice(voice_id):
            return voice_id
        case VoiceToMake(name, digest):
            return {"custom_voice": name, "sha256": digest}


def voice_json(req: VoiceRequest) -> dict[str, Any]:
    """A custom-voice request as `compile --json` shows it."""
    doc: dict[str, Any] = {"voice_name": req.name}
    if req.sample_url is not None:
        doc["voice_url"] = req.sample_url
    if req.sample is not None:
        doc["voice_url"] = display_value(req.sample)  # as images are shown
    return doc


def voice_digest(req: VoiceRequest) -> str:
    """sha256 of what makes the voice: its name and its sample (by URL, or by content)."""
    sample: Any = req.sample_url
    if req.sample is not None:
        sample = {"sha256": req.sample.sha256}
    return _digest("voice", {"name": req.name, "sample": sample})


def speech_digest(req: SpeechRequest) -> str:
    """sha256 of what makes the narration: its text, voice, language and speed.

    The voice by `_voice_key`: a custom voice by its request's digest, so the narration's
    digest is known before the voice is made, and a new sample makes new speech.
    """
    return _digest(
        "speech",
        {
            "text": req.text,
            "voice": _voice_key(req.voice),
            "language": req.language,
            "speed": float(req.speed),  # 1 and 1.0 are the same speed
        },
    )


def effect_digest(req: EffectRequest) -> str:
    """sha256 of what makes the sound effect: its prompt and duration."""
    return _digest("effect", {"prompt": req.prompt, "duration": float(req.duration)})


def _voice_key(voice: VoiceMedia) -> dict[str, str]:
    """What a digest sees of a voice: a preset by its id, a custom voice by its digest."""
    match voice:
        case PresetVoice(voice_id):
            return {"preset": voice_id}
        case VoiceToMake(_, digest):
            return {"custom_voice": digest}


def _digest(kind: str, doc: dict[str, Any]) -> str:
    """sha256 of `{salt, kind: doc}` as canonical JSON (the form voice digests were first
    taken in: changing it would make every made voice look new, and be paid for again)."""
    canonical = json.dumps(
        {"salt": COMPILER_SALT, kind: doc}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- the bodies sent (kling-api.md §11.2) ----------------------------------------------------


def voice_body(req: VoiceRequest, external_task_id: str, sample_url: str) -> dict[str, Any]:
    """The `POST /v1/general/custom-voices` body: the voice's name, cut to what Kling
    takes (models.yaml `sound.voice_name_chars`), its sample by `sample_url` (Kling
    fetches it, no Base64: a local sample goes as the URL the render uploaded it to), and
    the id to find the task by."""
    return {
        "voice_name": req.name[: sound()["voice_name_chars"]],
        "voice_url": sample_url,
        "external_task_id": external_task_id,
    }


def speech_body(req: SpeechRequest, voice_id: str) -> dict[str, Any]:
    """The `POST /v1/audio/tts` body, the voice by `voice_id` (a preset's, or the id a
    custom voice was given when made). No external_task_id: TTS takes none."""
    return {
        "text": req.text,
        "voice_id": voice_id,
        "voice_language": req.language,
        "voice_speed": float(req.speed),
    }


def effect_body(req: EffectRequest, external_task_id: str) -> dict[str, Any]:
    """The `POST /v1/audio/text-to-audio` body."""
    return {
        "prompt": req.prompt,
        "duration": float(req.duration),
        "external_task_id": external_task_id,
    }


def speech_json(req: SpeechRequest) -> dict[str, Any]:
    """A TTS request as `compile --json` shows it (the voice in its display form)."""
    return {
        "text": req.text,
        "voice_id": voice_value(req.voice),
        "voice_language": req.language,
        "voice_speed": req.speed,
    }


def effect_json(req: EffectRequest) -> dict[str, Any]:
    """A sound-effect request as `compile --json` shows it."""
    return {"prompt": req.prompt, "duration": req.duration}
