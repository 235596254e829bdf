"""Sound requests as JSON: `compile --json`'s display form, and the content digests.

The sound counterpart of `wire.py` for `VoiceRequest`, `SpeechRequest` and
`EffectRequest` (request.py; kling-api.md §11.2). A custom voice is known by the digest
of its request, with a local sample by its content, so a new recording makes a new
voice, re-creates the elements that speak in it, and re-renders exactly the scenes that
show them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

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
    canonical = json.dumps(
        {"salt": COMPILER_SALT, "voice": {"name": req.name, "sample": sample}},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


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
