"""Sound on the emulator (kling-api.md §11.2): preset and custom voices, TTS, sound effects,
element voice binding, their audio (lengths and levels measured by decoding it with PyAV),
faults, stats and expiry. In-process, on the emulator's fake clock: no sockets, no sleeping."""

from __future__ import annotations

import json
import math
import wave
from array import array
from decimal import Decimal
from io import BytesIO
from typing import Any

import av
import httpx
import pytest

from compiler.emulator import Emulator
from compiler.emulator.audio import RATE, speech_seconds, words

from .conftest import CASES
from .test_emulator import (
    ACCESS,
    NO_SOUND,
    SECRET,
    FakeClock,
    b64_image,
    data,
    error,
    jwt_token,
    run,
    text_payload,
)

PRESETS = "/v1/general/presets-voices"
VOICES = "/v1/general/custom-voices"
DELETE = "/v1/general/delete-voices"
TTS = "/v1/audio/tts"
SFX = "/v1/audio/text-to-audio"
VIDEOS = "/v1/videos/omni-video"
ELEMENTS = "/v1/general/advanced-custom-elements"
IMAGES = "/v1/images/omni-image"
SAMPLE = "https://example.com/voices/mira.wav"
MP3_FRAME = 1152  # samples in one MP3 frame


def make(clock: FakeClock, **kwargs: Any) -> Emulator:
    options: dict[str, Any] = {
        "latency": 8.0,
        "concurrency": 2,
        "voice_latency": 2.0,
        "sfx_latency": 1.0,
    }
    options.update(kwargs)
    return Emulator(clock=clock, sleep=clock.sleep, **options)


def post(emu: Emulator, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return run(emu, lambda c: c.post(path, json=body), **kwargs)


def get(emu: Emulator, path: str, **kwargs: Any) -> httpx.Response:
    return run(emu, lambda c: c.get(path), **kwargs)


def download(emu: Emulator, url: str) -> httpx.Response:
    return get(emu, url, headers={})  # result URLs take no auth, like Kling's CDN


def voice_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "voice_name": "mira",
        "voice_url": SAMPLE,
        "external_task_id": "sb-voice-mira-1",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def speech_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "text": "In the winter of 1923 the lamp had not been lit for a year.",
        "voice_id": "oversea_male1",
        "voice_language": "en",
        "voice_speed": 1.0,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def effect_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": "a distant foghorn, waves on rocks",
        "duration": 4.0,
        "external_task_id": "sb-sfx-opening-1",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def made_voice(emu: Emulator, clock: FakeClock, **changes: Any) -> dict[str, Any]:
    """Create a custom voice, let its task finish, and return the voice."""
    task_id = data(post(emu, VOICES, voice_body(**changes)))["task_id"]
    clock.now += emu.voice_latency
    task = data(get(emu, f"{VOICES}/{task_id}"))
    assert task["task_status"] == "succeed", task
    [voice] = task["task_result"]["voices"]
    return dict(voice)


def finished_effect(emu: Emulator, clock: FakeClock, **changes: Any) -> dict[str, Any]:
    task_id = data(post(emu, SFX, effect_body(**changes)))["task_id"]
    clock.now += emu.sfx_latency
    task: dict[str, Any] = data(get(emu, f"{SFX}/{task_id}"))
    assert task["task_status"] == "succeed", task
    return task


def speech_audio(response: httpx.Response) -> dict[str, Any]:
    [audio] = data(response)["task_result"]["audios"]
    return dict(audio)


def stats(**changes: Any) -> dict[str, Any]:
    """What stats() answers: nothing made, but for `changes`."""
    base: dict[str, Any] = {
        "total_creates": 0,
        "creates": {},
        "element_creates": 0,
        "elements": {},
        "downloads": 0,
        "image_creates": 0,
        "images": {},
        **NO_SOUND,
    }
    assert set(changes) <= set(base)
    return {**base, **changes}


# -- decoding what the emulator serves -------------------------------------------------------

SAMPLE_TYPES = {
    "flt": ("f", 1.0),
    "fltp": ("f", 1.0),
    "s16": ("h", 32768.0),
    "s16p": ("h", 32768.0),
}


def measure(content: bytes) -> tuple[int, int, float]:
    """(sample rate, samples, RMS in dBFS) of a mono audio file, as FFmpeg decodes it."""
    samples, energy, rate = 0, 0.0, 0
    with av.open(BytesIO(content), "r") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.channels == 1
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            typecode, scale = SAMPLE_TYPES[frame.format.name]
            values = array(typecode)
            values.frombytes(bytes(frame.planes[0])[: frame.samples * values.itemsize])
            energy += math.fsum(v * v for v in values) / scale**2
            samples += frame.samples
    return rate, samples, 10 * math.log10(energy / samples)


def audio_file(response: httpx.Response, media_type: str) -> bytes:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert int(response.headers["content-length"]) == len(response.content)
    return response.content


# -- preset voices -------------------------------------------------------------------------


def test_presets_are_a_paged_dozen_owned_by_kling() -> None:
    emu = make(FakeClock())
    entries = data(get(emu, PRESETS))
    assert len(entries) == 12
    voices = []
    for entry in entries:
        assert entry["task_status"] == "succeed"
        assert set(entry) == {
            "task_id",
            "task_status",
            "task_status_msg",
            "created_at",
            "updated_at",
            "task_result",
        }
        [voice] = entry["task_result"]["voices"]
        voices.append(voice)
    assert voices[0] == {
        "voice_id": "oversea_male1",
        "voice_name": "Anchor",
        "trial_url": "http://emulator/_emulator/voices/oversea_male1.mp3",
        "owned_by": "kling",
    }
    ids = [voice["voice_id"] for voice in voices]
    assert {"oversea_male1", "oversea_female1", "genshin_vindi2"} <= set(ids)
    assert len(set(ids)) == 12 and {voice["owned_by"] for voice in voices} == {"kling"}
    page = data(get(emu, f"{PRESETS}?pageNum=2&pageSize=5"))
    assert [e["task_result"]["voices"][0]["voice_id"] for e in page] == ids[5:10]
    assert data(get(emu, f"{PRESETS}?pageNum=3&pageSize=10")) == []
    assert len(data(get(emu, f"{PRESETS}?pageSize=1000"))) == 12  # Kling's limit: 1000
    assert error(get(emu, f"{PRESETS}?pageSize=1001")) == (
        400,
        1201,
        "pageSize must be an integer from 1 to 1000",
    )


def test_a_voice_trial_is_three_seconds_of_mp3_without_auth() -> None:
    emu = make(FakeClock())
    content = audio_file(download(emu, "/_emulator/voices/genshin_vindi2.mp3"), "audio/mpeg")
    assert measure(content)[:2] == (RATE, 3 * RATE)
    assert error(download(emu, "/_emulator/voices/nobody.mp3")) == (404, 1203, "no voice nobody")
    assert emu.stats() == stats(downloads=1)


# -- custom voices ---------------------------------------------------------------------------


def test_a_custom_voice_moves_through_submitted_processing_succeed() -> None:
    clock = FakeClock()
    emu = make(clock, voice_latency=2.0)
    created = data(post(emu, VOICES, voice_body()))
    assert set(created) == {"task_id", "task_status", "task_info", "created_at", "updated_at"}
    assert created["task_status"] == "submitted"
    assert created["task_info"] == {"external_task_id": "sb-voice-mira-1"}
    task_id = created["task_id"]
    seen = []
    for step in (0.4, 0.2, 1.3, 0.1):  # submitted for min(1, latency/4) s, then processing
        task = data(get(emu, f"{VOICES}/{task_id}"))
        seen.append((task["task_status"], task["final_unit_deduction"], "task_result" in task))
        clock.now += step
    assert seen == [
        ("submitted", "0", False),
        ("submitted", "0", False),
        ("processing", "0", False),
        ("processing", "0", False),
    ]
    task = data(get(emu, f"{VOICES}/sb-voice-mira-1"))  # by external_task_id too
    assert task["task_id"] == task_id
    assert task["task_status"] == "succeed" and task["final_unit_deduction"] == "0.05"
    [voice] = task["task_result"]["voices"]
    voice_id = voice["voice_id"]
    assert voice_id.isdecimal() and voice_id != task_id
    assert voice == {
        "voice_id": voice_id,
        "voice_name": "mira",
        "trial_url": f"http://emulator/_emulator/voices/{voice_id}.mp3",
        "owned_by": "user",
    }
    assert download(emu, voice["trial_url"]).status_code == 200
    assert emu.stats() == stats(voice_creates=1, voices={"sb-voice-mira-1": 1}, downloads=1)


def test_custom_voices_list_newest_first_and_unknown_ids() -> None:
    clock = FakeClock()
    emu = make(clock)
    first = data(post(emu, VOICES, voice_body(external_task_id="v-a")))["task_id"]
    clock.now += 0.1
    second = data(post(emu, VOICES, voice_body(external_task_id="v-b")))["task_id"]
    assert [t["task_id"] for t in data(get(emu, VOICES))] == [second, first]
    assert [t["task_id"] for t in data(get(emu, f"{VOICES}?pageNum=2&pageSize=1"))] == [first]
    assert error(get(emu, f"{VOICES}/nope")) == (404, 1203, "task not found: nope")
    # Voices keep their own namespace: the video and effect routes do not know them.
    assert error(get(emu, f"{VIDEOS}/{first}"))[:2] == (404, 1203)
    assert error(get(emu, f"{SFX}/v-a"))[:2] == (404, 1203)


def test_duplicate_voice_external_task_id_is_refused() -> None:
    emu = make(FakeClock())
    assert post(emu, VOICES, voice_body()).is_success
    assert error(post(emu, VOICES, voice_body())) == (
        400,
        1201,
        "external_task_id must be unique: 'sb-voice-mira-1' exists",
    )
    # Other kinds of task keep their own namespace; an empty id is no id (§9.13).
    assert post(emu, SFX, effect_body(external_task_id="sb-voice-mira-1")).is_success
    assert post(emu, VOICES, voice_body(external_task_id="")).is_success
    assert post(emu, VOICES, voice_body(external_task_id="")).is_success
    assert emu.stats() == stats(
        voice_creates=3,
        voices={"sb-voice-mira-1": 1},
        sfx_calls=1,
        sfx={"sb-voice-mira-1": 1},
    )


BAD_VOICES: list[tuple[Any, str]] = [
    (["not", "an", "object"], "request body must be a JSON object"),
    ({"voice_name": None}, "voice_name is required"),
    ({"voice_name": "m" * 21}, "voice_name must be at most 20 characters"),
    ({"voice_name": 7}, "voice_name must be a string"),
    (
        {"voice_url": None},
        "give one of voice_url (a sample's URL) or video_id (a video made before)",
    ),
    (
        {"video_id": "123"},
        "give one of voice_url (a sample's URL) or video_id (a video made before)",
    ),
    (
        {"voice_url": "UklGRiQAAABXQVZFZm10IBAAAAABAAEA"},
        "voice_url must be an http(s) URL of a .mp3, .wav, .mp4, .mov file "
        "(Kling takes no Base64 here)",
    ),
    (
        {"voice_url": "data:audio/wav;base64,UklGRiQAAABXQVZF"},
        "voice_url must be an http(s) URL of a .mp3, .wav, .mp4, .mov file "
        "(Kling takes no Base64 here)",
    ),
    (
        {"voice_url": "ftp://example.com/mira.wav"},
        "voice_url must be an http(s) URL of a .mp3, .wav, .mp4, .mov file "
        "(Kling takes no Base64 here)",
    ),
    (
        {"voice_url": "https://example.com/mira.flac"},
        "voice_url must name a .mp3, .wav, .mp4, .mov file",
    ),
    ({"voice_url": 5}, "voice_url must be a string"),
    ({"voice_url": None, "video_id": True}, "video_id must be the id of a video"),
    ({"callback_url": 3}, "callback_url must be a string"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_VOICES, ids=[m for _, m in BAD_VOICES])
def test_voice_body_rules(changes: Any, message: str) -> None:
    emu = make(FakeClock())
    body = voice_body(**changes) if isinstance(changes, dict) else changes
    assert error(post(emu, VOICES, body)) == (400, 1201, message)
    assert emu.stats()["voice_creates"] == 0


GOOD_VOICES: list[dict[str, Any]] = [
    {"voice_name": "m" * 20},
    {"voice_url": "http://example.com/mira.MP3?signature=abc"},  # a presigned link
    {"voice_url": "https://example.com/take.mov"},
    {"voice_url": "https://example.com/take.mp4", "callback_url": "", "external_task_id": ""},
]


@pytest.mark.parametrize("changes", GOOD_VOICES)
def test_voice_bodies_within_the_rules_pass(changes: dict[str, Any]) -> None:
    response = post(make(FakeClock()), VOICES, voice_body(**changes))
    assert response.status_code == 200, response.text


def _golden_voices() -> list[Any]:
    found = []
    for path in sorted((CASES / "valid").glob("*.json")):
        for voice in json.loads(path.read_text()).get("voices", []):
            found.append(pytest.param(voice["payload"], id=f"{path.stem}/{voice['name']}"))
    return found


@pytest.mark.parametrize("payload", _golden_voices())
def test_the_compilers_voice_payloads_pass(payload: dict[str, Any]) -> None:
    response = post(make(FakeClock()), VOICES, payload)
    assert response.status_code == 200, response.text


def test_a_voice_from_a_video_needs_a_finished_video_with_sound() -> None:
    clock = FakeClock()
    emu = make(clock, latency=2.0)
    silent = data(post(emu, VIDEOS, text_payload(external_task_id="v-silent")))["task_id"]
    loud = data(post(emu, VIDEOS, text_payload(external_task_id="v-loud", sound="on")))["task_id"]

    def from_video(video_id: Any, ext: str) -> httpx.Response:
        return post(
            emu, VOICES, voice_body(voice_url=None, video_id=video_id, external_task_id=ext)
        )

    assert error(from_video(loud, "a")) == (
        400,
        1201,
        f"video_id names no finished video of this account: {loud!r}",
    )
    clock.now += 2.0
    assert error(from_video("404", "b"))[2] == (
        "video_id names no finished video of this account: '404'"
    )
    assert error(from_video(silent, "c")) == (
        400,
        1201,
        f"video_id {silent!r} names a video made without sound",
    )
    assert data(from_video(int(loud), "d"))["task_status"] == "submitted"  # a number will do
    assert emu.stats()["voices"] == {"d": 1}


def test_a_sample_served_by_the_emulator_must_last_5_to_30_seconds() -> None:
    emu = make(FakeClock())
    short = speech_audio(post(emu, TTS, speech_body(text="Five words and no more.")))
    assert short["duration"] == "2.000"
    assert error(post(emu, VOICES, voice_body(voice_url=short["url"]))) == (
        400,
        1201,
        "voice_url: the sample lasts 2.000 s; a voice takes 5-30 s",
    )
    sample = speech_audio(post(emu, TTS, speech_body(text=" ".join(["word"] * 20))))
    assert sample["duration"] == "8.000"
    assert post(emu, VOICES, voice_body(voice_url=sample["url"])).is_success
    gone = "http://emulator/_emulator/audio/123.mp3"
    assert error(post(emu, VOICES, voice_body(voice_url=gone, external_task_id="x"))) == (
        400,
        1201,
        f"voice_url cannot be fetched: {gone}",
    )
    # The same path on another host is another server's file: taken as it is.
    elsewhere = "https://cdn.example.com/_emulator/audio/123.mp3"
    assert post(emu, VOICES, voice_body(voice_url=elsewhere, external_task_id="y")).is_success


def test_a_voice_is_usable_only_once_made_and_until_deleted() -> None:
    clock = FakeClock()
    emu = make(clock, voice_latency=2.0)
    task_id = data(post(emu, VOICES, voice_body()))["task_id"]
    clock.now += 1.9
    # The voice id is not shown before the task succeeds; guess it from the emulator's state.
    [voice_id] = [task.voice_id for task in emu._voices.tasks.values()]
    refused = error(post(emu, TTS, speech_body(voice_id=voice_id)))
    assert refused == (
        400,
        1201,
        f"voice_id names no voice: {voice_id!r} is neither a preset nor a made custom voice "
        "of this account",
    )
    clock.now += 0.1
    # A custom voice speaks either language.
    assert speech_audio(post(emu, TTS, speech_body(voice_id=voice_id, voice_language="zh")))
    assert error(post(emu, DELETE, {"voice_id": "oversea_male1"})) == (
        400,
        1201,
        "voice_id 'oversea_male1' is a preset: only custom voices can go",
    )
    assert error(post(emu, DELETE, {"voice_id": "77"})) == (
        400,
        1201,
        "voice_id names no custom voice of this account: '77'",
    )
    assert error(post(emu, DELETE, {}))[2] == "voice_id is required"
    deleted = data(post(emu, DELETE, {"voice_id": voice_id}))
    assert deleted == {"task_id": task_id, "task_status": "succeed"}
    assert error(post(emu, TTS, speech_body(voice_id=voice_id)))[:2] == (400, 1201)
    assert error(post(emu, DELETE, {"voice_id": voice_id}))[:2] == (400, 1201)  # once only
    task = data(get(emu, f"{VOICES}/{task_id}"))
    assert task["task_status"] == "succeed" and task["task_result"] == {"voices": []}
    assert download(emu, f"/_emulator/voices/{voice_id}.mp3").status_code == 404
    assert emu.stats()["tts_calls"] == 1


def test_a_failed_voice_task_makes_no_voice() -> None:
    clock = FakeClock()
    emu = make(clock)
    emu.faults.add("fail_task", "audio", message="the sample holds two voices")
    task_id = data(post(emu, VOICES, voice_body()))["task_id"]
    clock.now += emu.voice_latency
    task = data(get(emu, f"{VOICES}/{task_id}"))
    assert task["task_status"] == "failed"
    assert task["task_status_msg"] == "the sample holds two voices"
    assert task["final_unit_deduction"] == "0" and "task_result" not in task
    [voice_id] = [t.voice_id for t in emu._voices.tasks.values()]
    assert error(post(emu, TTS, speech_body(voice_id=voice_id)))[:2] == (400, 1201)
    assert emu.stats()["voice_creates"] == 1  # a failed task was still created


# -- TTS --------------------------------------------------------------------------------------


def test_tts_answers_with_the_finished_task_and_an_mp3() -> None:
    clock = FakeClock()
    emu = make(clock)
    answer = data(post(emu, TTS, speech_body()))
    assert set(answer) == {
        "task_id",
        "task_status",
        "task_status_msg",
        "final_unit_deduction",
        "created_at",
        "updated_at",
        "task_result",
    }  # no task_info: TTS has no external_task_id
    assert answer["task_status"] == "succeed" and answer["final_unit_deduction"] == "0.05"
    [audio] = answer["task_result"]["audios"]
    assert set(audio) == {"id", "url", "duration"}
    assert audio["url"] == f"http://emulator/_emulator/audio/{audio['id']}.mp3"
    assert audio["id"] != answer["task_id"]
    assert audio["duration"] == "5.600"  # 14 words / 2.5 words a second
    content = audio_file(download(emu, audio["url"]), "audio/mpeg")
    assert content[:3] == b"ID3" or content[:2] == b"\xff\xfb"  # an MP3 file
    with av.open(BytesIO(content)) as container:
        assert container.streams.audio[0].codec_context.name.startswith("mp3")
    rate, samples, level = measure(content)
    assert (rate, samples) == (RATE, round(5.6 * RATE))
    assert abs(level - -20.0) <= 1.0, level
    # Served as often as asked, counted each time, made once; WAV on request too.
    assert download(emu, audio["url"]).content == content
    wav = audio_file(download(emu, audio["url"][:-3] + "wav"), "audio/wav")
    with wave.open(BytesIO(wav)) as file:
        assert (file.getnchannels(), file.getframerate(), file.getnframes()) == (1, RATE, samples)
    assert emu.stats() == stats(tts_calls=1, downloads=3)


@pytest.mark.parametrize(
    ("text", "speed", "seconds"),
    [
        ("one two three four five six seven eight nine ten", 1.0, 4.0),
        ("one two three four five six seven eight nine ten", 2.0, 2.0),
        ("one two three four five six seven eight nine ten", 0.8, 5.0),
        ("one two three four five six seven eight nine ten", 1.25, 3.077),  # speed 1.3
        ("Hi.", 1.0, 1.0),  # never under a second
        ("灯塔已经一年没有点亮了", 1.0, 4.4),  # each ideograph a word: 11
        ("The lamp — 灯塔 — was dark.", 1.0, 2.4),  # 6 words: a dash alone is none
        (" ".join(["word"] * 75), 1.0, 30.0),
    ],
)
def test_tts_length_follows_the_text(text: str, speed: float, seconds: float) -> None:
    emu = make(FakeClock())
    language = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"
    voice = "genshin_vindi2" if language == "zh" else "oversea_male1"
    body = speech_body(text=text, voice_speed=speed, voice_id=voice, voice_language=language)
    audio = speech_audio(post(emu, TTS, body))
    rounded = Decimal(str(speed)).quantize(Decimal("0.1"), "ROUND_HALF_UP")
    formula = max(1.0, words(text) / (2.5 * float(rounded)))
    assert formula == pytest.approx(seconds, abs=5e-4)
    assert float(speech_seconds(text, rounded)) == pytest.approx(formula)
    assert audio["duration"] == f"{formula:.3f}"
    rate, samples, level = measure(download(emu, audio["url"]).content)
    assert rate == RATE
    assert abs(samples - formula * RATE) <= MP3_FRAME  # within one MP3 frame
    assert abs(level - -20.0) <= 1.0, level


BAD_SPEECH: list[tuple[Any, str]] = [
    ("a string", "request body must be a JSON object"),
    ({"text": None}, "text is required"),
    ({"text": "x" * 1001}, "text must be at most 1000 characters"),
    ({"text": "   \n"}, "text must not be blank"),
    ({"text": 12}, "text must be a string"),
    ({"voice_id": None}, "voice_id is required"),
    ({"voice_id": 5}, "voice_id must be a string"),
    (
        {"voice_id": "nobody"},
        "voice_id names no voice: 'nobody' is neither a preset nor a made custom voice of "
        "this account",
    ),
    ({"voice_language": "fr"}, "voice_language must be one of zh, en"),
    (
        {"voice_language": "zh"},
        "voice_language must be en: voice 'oversea_male1' speaks en only",
    ),
    (
        {"voice_language": None},  # Kling's default is zh
        "voice_language must be en: voice 'oversea_male1' speaks en only",
    ),
    (
        {"voice_id": "genshin_vindi2"},
        "voice_language must be zh: voice 'genshin_vindi2' speaks zh only",
    ),
    ({"voice_speed": 0.7}, "voice_speed must be a number from 0.8 to 2.0"),
    ({"voice_speed": 2.01}, "voice_speed must be a number from 0.8 to 2.0"),
    ({"voice_speed": "1.0"}, "voice_speed must be a number from 0.8 to 2.0"),
    ({"voice_speed": True}, "voice_speed must be a number from 0.8 to 2.0"),
    (
        {"external_task_id": "sb-narration-1"},
        "external_task_id: TTS takes none (the call answers with its result)",
    ),
    (
        {"callback_url": "https://example.com/hook"},
        "callback_url: TTS takes none (the call answers with its result)",
    ),
]


@pytest.mark.parametrize(("changes", "message"), BAD_SPEECH, ids=[m for _, m in BAD_SPEECH])
def test_tts_body_rules(changes: Any, message: str) -> None:
    emu = make(FakeClock())
    body = speech_body(**changes) if isinstance(changes, dict) else changes
    assert error(post(emu, TTS, body)) == (400, 1201, message)
    assert emu.stats() == stats()


def test_tts_bodies_within_the_rules_pass() -> None:
    emu = make(FakeClock())
    for changes in (
        {"text": "x" * 1000},
        {"voice_speed": 0.8},
        {"voice_speed": 2},
        {"voice_speed": None},  # 1.0
        {"voice_id": "ai_kaiya", "voice_language": "zh"},
        {"voice_id": "genshin_klee2", "voice_language": None},  # zh by default
        {"external_task_id": "", "callback_url": None},  # §9.13: empty is absent
    ):
        response = post(emu, TTS, speech_body(**changes))
        assert response.status_code == 200, (changes, response.text)
    assert emu.stats()["tts_calls"] == 7


def test_voices_sound_different() -> None:
    emu = make(FakeClock())
    files = {
        voice: download(emu, speech_audio(post(emu, TTS, speech_body(voice_id=voice)))["url"])
        for voice in ("oversea_male1", "oversea_female1")
    }
    assert files["oversea_male1"].content != files["oversea_female1"].content


# -- sound effects ---------------------------------------------------------------------------


def test_a_sound_effect_is_a_task_with_mp3_and_wav() -> None:
    clock = FakeClock()
    emu = make(clock, sfx_latency=1.0)
    created = data(post(emu, SFX, effect_body(duration=4.2)))
    assert set(created) == {"task_id", "task_status", "task_info", "created_at", "updated_at"}
    assert created["task_status"] == "submitted"
    task_id = created["task_id"]
    pending = data(get(emu, f"{SFX}/{task_id}"))
    assert pending["task_status"] == "submitted" and "task_result" not in pending
    clock.now += 1.0
    task = data(get(emu, f"{SFX}/sb-sfx-opening-1"))
    assert task["task_id"] == task_id
    assert task["task_status"] == "succeed" and task["final_unit_deduction"] == "0.25"
    assert task["task_info"] == {"external_task_id": "sb-sfx-opening-1"}
    [audio] = task["task_result"]["audios"]
    audio_id = audio["id"]
    assert audio == {
        "id": audio_id,
        "url_mp3": f"http://emulator/_emulator/audio/{audio_id}.mp3",
        "url_wav": f"http://emulator/_emulator/audio/{audio_id}.wav",
        "duration_mp3": "4.200",
        "duration_wav": "4.200",
    }
    wav = audio_file(download(emu, audio["url_wav"]), "audio/wav")
    with wave.open(BytesIO(wav)) as file:
        assert (file.getnchannels(), file.getsampwidth(), file.getframerate()) == (1, 2, RATE)
        assert file.getnframes() == round(4.2 * RATE)  # exactly the duration
    rate, samples, level = measure(wav)
    assert (rate, samples) == (RATE, round(4.2 * RATE))
    assert level == pytest.approx(-24.0, abs=0.01)  # WAV holds the level exactly
    mp3 = audio_file(download(emu, audio["url_mp3"]), "audio/mpeg")
    rate, samples, level = measure(mp3)
    assert (rate, samples) == (RATE, round(4.2 * RATE))  # LAME's header trims it exactly
    assert abs(level - -24.0) <= 1.0, level
    assert data(get(emu, SFX))[0]["task_id"] == task_id
    assert emu.stats() == stats(sfx_calls=1, sfx={"sb-sfx-opening-1": 1}, downloads=2)


@pytest.mark.parametrize(
    ("duration", "shown"),
    [(3, "3.000"), (3.0, "3.000"), (9.99, "10.000"), (10, "10.000"), (4.25, "4.300")],
)
def test_effect_durations_round_to_a_tenth(duration: float, shown: str) -> None:
    clock = FakeClock()
    emu = make(clock)
    [audio] = finished_effect(emu, clock, duration=duration)["task_result"]["audios"]
    assert audio["duration_wav"] == audio["duration_mp3"] == shown
    with wave.open(BytesIO(download(emu, audio["url_wav"]).content)) as file:
        assert file.getnframes() == round(float(shown) * RATE)


BAD_EFFECTS: list[tuple[Any, str]] = [
    (5, "request body must be a JSON object"),
    ({"prompt": None}, "prompt is required"),
    ({"prompt": "p" * 201}, "prompt must be at most 200 characters"),
    ({"prompt": "  "}, "prompt must not be blank"),
    ({"duration": None}, "duration is required (a number from 3.0 to 10.0)"),
    ({"duration": 2.9}, "duration must be a number from 3.0 to 10.0"),
    ({"duration": 10.01}, "duration must be a number from 3.0 to 10.0"),
    ({"duration": "5"}, "duration must be a number from 3.0 to 10.0"),
    ({"external_task_id": 9}, "external_task_id must be a string"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_EFFECTS, ids=[m for _, m in BAD_EFFECTS])
def test_effect_body_rules(changes: Any, message: str) -> None:
    emu = make(FakeClock())
    body = effect_body(**changes) if isinstance(changes, dict) else changes
    assert error(post(emu, SFX, body)) == (400, 1201, message)
    assert emu.stats() == stats()


def test_duplicate_effect_external_task_id_is_refused() -> None:
    emu = make(FakeClock())
    assert post(emu, SFX, effect_body()).is_success
    assert error(post(emu, SFX, effect_body())) == (
        400,
        1201,
        "external_task_id must be unique: 'sb-sfx-opening-1' exists",
    )
    assert post(emu, SFX, effect_body(external_task_id=None)).is_success
    assert emu.stats() == stats(sfx_calls=2, sfx={"sb-sfx-opening-1": 1})


def test_an_effect_is_not_served_before_its_task_succeeds() -> None:
    clock = FakeClock()
    emu = make(clock, sfx_latency=3.0)
    data(post(emu, SFX, effect_body()))
    [audio_id] = [task.audio.audio_id for task in emu._effects.values()]
    assert error(download(emu, f"/_emulator/audio/{audio_id}.wav")) == (
        404,
        1203,
        f"no audio {audio_id}",
    )
    clock.now += 3.0
    assert download(emu, f"/_emulator/audio/{audio_id}.wav").status_code == 200


# -- element voice binding (§7.1, §11.2) ----------------------------------------------------


def element_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "element_name": "mira",
        "element_description": "a young sailor",
        "reference_type": "image_refer",
        "element_image_list": {
            "frontal_image": b64_image((400, 600), "red"),
            "refer_images": [{"image_url": b64_image((400, 600), "blue")}],
        },
        "external_task_id": "sb-el-mira-1",
    }
    body.update(changes)
    return body


def test_an_element_binds_a_made_custom_voice() -> None:
    clock = FakeClock()
    emu = make(clock, element_latency=1.0)
    voice = made_voice(emu, clock)
    task_id = data(post(emu, ELEMENTS, element_body(element_voice_id=voice["voice_id"])))["task_id"]
    clock.now += 1.0
    [element] = data(get(emu, f"{ELEMENTS}/{task_id}"))["task_result"]["elements"]
    assert element["element_voice_info"] == voice
    # Deleting the voice later leaves the element's record of it as it was.
    assert post(emu, DELETE, {"voice_id": voice["voice_id"]}).is_success
    [element] = data(get(emu, f"{ELEMENTS}/{task_id}"))["task_result"]["elements"]
    assert element["element_voice_info"] == voice


def test_an_element_voice_must_exist() -> None:
    clock = FakeClock()
    emu = make(clock)
    assert error(post(emu, ELEMENTS, element_body(element_voice_id="nobody"))) == (
        400,
        1201,
        "element_voice_id names no voice: 'nobody' is neither a preset nor a made custom "
        "voice of this account",
    )
    data(post(emu, VOICES, voice_body()))  # not made yet
    [voice_id] = [task.voice_id for task in emu._voices.tasks.values()]
    assert error(post(emu, ELEMENTS, element_body(element_voice_id=voice_id)))[:2] == (400, 1201)
    assert emu.stats()["element_creates"] == 0
    # A preset binds at once; without a voice an element shows no element_voice_info.
    assert post(emu, ELEMENTS, element_body(element_voice_id="ai_shatang")).is_success
    plain = data(post(emu, ELEMENTS, element_body(external_task_id="plain")))["task_id"]
    clock.now += emu.element_latency
    [element] = data(get(emu, f"{ELEMENTS}/{plain}"))["task_result"]["elements"]
    assert "element_voice_info" not in element
    [element] = data(get(emu, f"{ELEMENTS}/sb-el-mira-1"))["task_result"]["elements"]
    assert element["element_voice_info"]["voice_name"] == "Blossom"


# -- auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", PRESETS),
        ("GET", VOICES),
        ("GET", f"{VOICES}/x"),
        ("POST", VOICES),
        ("POST", DELETE),
        ("POST", TTS),
        ("GET", SFX),
        ("GET", f"{SFX}/x"),
        ("POST", SFX),
    ],
)
def test_sound_endpoints_take_the_same_auth(method: str, path: str) -> None:
    emu = make(FakeClock(), access_key=ACCESS, secret_key=SECRET)

    def send(headers: dict[str, str]) -> httpx.Response:
        return run(emu, lambda c: c.request(method, path, json={}), headers=headers)

    assert error(send({}))[:2] == (401, 1001)
    assert error(send({"Authorization": "Bearer not-a-jwt"}))[:2] == (401, 1002)
    assert error(send({"Authorization": f"Bearer {jwt_token(exp=1)}"}))[:2] == (401, 1004)
    signed = send({"Authorization": f"Bearer {jwt_token()}"})
    assert signed.status_code != 401, signed.text


def test_a_sound_body_that_is_not_json_is_1200() -> None:
    emu = make(FakeClock())
    for path in (VOICES, DELETE, TTS, SFX):

        async def send(client: httpx.AsyncClient, path: str = path) -> httpx.Response:
            return await client.post(path, content=b"{oops")

        assert error(run(emu, send)) == (400, 1200, "request body must be JSON")


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["audio", "any"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", PRESETS, None),
        ("GET", VOICES, None),
        ("GET", f"{VOICES}/v-1", None),
        ("POST", VOICES, voice_body()),
        ("POST", DELETE, {"voice_id": "0"}),
        ("POST", TTS, speech_body()),
        ("GET", SFX, None),
        ("GET", f"{SFX}/s-1", None),
        ("POST", SFX, effect_body()),
    ],
)
def test_audio_faults_hit_every_sound_route(
    op: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    emu = make(FakeClock())

    def send() -> httpx.Response:
        return run(emu, lambda c: c.request(method, path, json=body))

    emu.faults.add("http_500", op)
    assert error(send()) == (500, 5000, "internal server error")
    emu.faults.add("code_1302", op)
    assert error(send())[:2] == (429, 1302)
    emu.faults.add("drop_before", op)
    with pytest.raises(httpx.RemoteProtocolError):
        send()
    assert emu.faults.pending() == []
    assert emu.stats() == stats()  # nothing was made


def test_create_and_query_faults_hit_tts_and_effects_not_voices() -> None:
    emu = make(FakeClock())
    emu.faults.add("http_500", "create", times=2)
    assert post(emu, VOICES, voice_body()).is_success  # the voice registry: audio, any only
    assert post(emu, DELETE, {"voice_id": "oversea_male1"}).status_code == 400
    assert get(emu, PRESETS).is_success
    assert error(post(emu, TTS, speech_body()))[:2] == (500, 5000)
    assert error(post(emu, SFX, effect_body()))[:2] == (500, 5000)
    emu.faults.add("http_500", "query", times=2)
    assert get(emu, f"{VOICES}/sb-voice-mira-1").is_success
    assert error(get(emu, SFX))[:2] == (500, 5000)
    assert error(get(emu, f"{SFX}/x"))[:2] == (500, 5000)
    assert emu.faults.pending() == []
    emu.faults.add("http_500", "element")
    emu.faults.add("http_500", "image")
    assert post(emu, TTS, speech_body()).is_success
    assert len(emu.faults.pending()) == 2


def test_audio_faults_leave_video_image_and_element_requests_alone() -> None:
    clock = FakeClock()
    emu = make(clock)
    emu.faults.add("http_500", "audio", times=5)
    assert post(emu, VIDEOS, text_payload()).is_success
    assert get(emu, f"{VIDEOS}/sb-opening-1").is_success
    assert post(emu, ELEMENTS, element_body()).is_success
    image = {"prompt": "A lighthouse.", "external_task_id": "still-1"}
    assert post(emu, IMAGES, image).is_success
    assert get(emu, f"{IMAGES}/still-1").is_success
    assert emu.faults.pending()[0].times == 5


def test_match_narrows_an_audio_fault() -> None:
    emu = make(FakeClock())
    emu.faults.add("code_1303", "audio", match="foghorn")
    assert post(emu, TTS, speech_body()).is_success
    assert error(post(emu, TTS, speech_body(text="A foghorn sounds.")))[:2] == (429, 1303)
    emu.faults.add("http_500", "audio", match="oversea_female1")  # a TTS call's voice_id
    assert post(emu, TTS, speech_body()).is_success
    assert error(post(emu, TTS, speech_body(voice_id="oversea_female1")))[:2] == (500, 5000)
    emu.faults.add("http_500", "create", match="sb-sfx")  # an effect's external_task_id
    assert error(post(emu, SFX, effect_body()))[:2] == (500, 5000)
    assert emu.stats()["tts_calls"] == 2


@pytest.mark.parametrize("op", ["create", "audio", "any"])
def test_fail_task_fails_a_tts_call(op: str) -> None:
    emu = make(FakeClock())
    emu.faults.add("fail_task", op, message="the text breaks the content rules")
    failed = data(post(emu, TTS, speech_body()))
    assert failed["task_status"] == "failed"
    assert failed["task_status_msg"] == "the text breaks the content rules"
    assert failed["final_unit_deduction"] == "0" and "task_result" not in failed
    assert data(post(emu, TTS, speech_body()))["task_status"] == "succeed"
    assert emu.stats() == stats(tts_calls=2)  # a failed call was still made


@pytest.mark.parametrize("op", ["create", "audio"])
def test_fail_task_fails_an_effect(op: str) -> None:
    clock = FakeClock()
    emu = make(clock)
    emu.faults.add("fail_task", op, match="storm")
    calm = data(post(emu, SFX, effect_body(external_task_id="calm")))["task_id"]
    storm = data(post(emu, SFX, effect_body(external_task_id="storm", prompt="a storm")))
    clock.now += emu.sfx_latency
    failed = data(get(emu, f"{SFX}/{storm['task_id']}"))
    assert failed["task_status"] == "failed" and failed["task_status_msg"]
    assert failed["final_unit_deduction"] == "0" and "task_result" not in failed
    assert data(get(emu, f"{SFX}/{calm}"))["task_status"] == "succeed"
    [task] = [task for task in emu._effects.values() if task.external_task_id == "storm"]
    assert download(emu, f"/_emulator/audio/{task.audio.audio_id}.mp3").status_code == 404


def test_a_lost_tts_answer_was_still_paid_and_cannot_be_found() -> None:
    emu = make(FakeClock())
    emu.faults.add("drop_after", "create")
    with pytest.raises(httpx.RemoteProtocolError):
        post(emu, TTS, speech_body())
    assert emu.stats() == stats(tts_calls=1)  # made, and paid, with nothing to look it up by
    assert error(get(emu, TTS))[:2] == (404, 1202)  # no query route: GET is not allowed


def test_drop_after_on_a_voice_create_makes_the_voice() -> None:
    clock = FakeClock()
    emu = make(clock)
    emu.faults.add("drop_after", "audio")
    with pytest.raises(httpx.RemoteProtocolError):
        post(emu, VOICES, voice_body())
    clock.now += emu.voice_latency
    assert data(get(emu, f"{VOICES}/sb-voice-mira-1"))["task_status"] == "succeed"
    emu.faults.add("slow", "audio", delay=30.0)
    before = clock.now
    assert post(emu, DELETE, {"voice_id": emu_voice_id(emu)}).is_success
    assert clock.now == before + 30.0


def emu_voice_id(emu: Emulator) -> str:
    [voice_id] = [task.voice_id for task in emu._voices.tasks.values()]
    return voice_id


@pytest.mark.parametrize("op", ["download", "audio", "any"])
def test_download_faults_hit_audio_files_and_trials(op: str) -> None:
    emu = make(FakeClock())
    url = speech_audio(post(emu, TTS, speech_body()))["url"]
    emu.faults.add("truncate", op)
    cut = download(emu, url)
    assert cut.status_code == 200 and len(cut.content) < int(cut.headers["content-length"])
    emu.faults.add("http_500", op)
    assert error(download(emu, url))[:2] == (500, 5000)
    emu.faults.add("drop_after", op)
    with pytest.raises(httpx.RemoteProtocolError):
        download(emu, url)
    whole = download(emu, url)
    assert len(whole.content) == int(whole.headers["content-length"])
    emu.faults.add("http_500", op, match="uk_boy1")
    assert download(emu, "/_emulator/voices/uk_boy1.mp3").status_code == 500
    assert emu.faults.pending() == []


def test_a_truncate_fault_waits_for_a_download() -> None:
    emu = make(FakeClock())
    emu.faults.add("truncate", "audio")
    assert get(emu, PRESETS).is_success
    assert get(emu, f"{VOICES}?pageSize=2").is_success
    assert post(emu, TTS, speech_body()).is_success
    assert len(emu.faults.pending()) == 1


def test_audio_faults_over_http() -> None:
    emu = make(FakeClock())
    for fault in (
        {"kind": "fail_task", "op": "audio"},
        {"kind": "truncate", "op": "audio"},
        {"kind": "http_500", "op": "audio", "match": "lamp"},
    ):
        assert data(post(emu, "/_emulator/faults", fault))
    assert [f["op"] for f in data(get(emu, "/_emulator/faults"))] == ["audio"] * 3
    bad = run(emu, lambda c: c.post("/_emulator/faults", json={"kind": "truncate", "op": "query"}))
    assert error(bad) == (
        400,
        1201,
        "a truncate fault acts on downloads: op must be download, image, audio or any",
    )
    assert error(post(emu, TTS, speech_body()))[:2] == (500, 5000)


# -- stats and expiry ------------------------------------------------------------------------


def test_stats_count_sound_apart_from_everything_else() -> None:
    clock = FakeClock()
    emu = make(clock, element_latency=1.0)
    voice = made_voice(emu, clock)
    assert post(emu, VOICES, voice_body(external_task_id=None, voice_name="ade")).is_success
    assert not post(emu, VOICES, voice_body(external_task_id="bad", voice_name="")).is_success
    for voice_id in ("oversea_male1", voice["voice_id"]):
        assert post(emu, TTS, speech_body(voice_id=voice_id)).is_success
    assert not post(emu, TTS, speech_body(voice_id="nobody")).is_success  # refused: none
    for ext in ("fx-1", "fx-2"):
        assert post(emu, SFX, effect_body(external_task_id=ext)).is_success
    assert post(emu, VIDEOS, text_payload()).is_success
    assert post(emu, ELEMENTS, element_body(element_voice_id=voice["voice_id"])).is_success
    assert download(emu, voice["trial_url"]).status_code == 200
    expected = stats(
        total_creates=1,
        creates={"sb-opening-1": 1},
        element_creates=1,
        elements={"sb-el-mira-1": 1},
        downloads=1,
        voice_creates=2,
        voices={"sb-voice-mira-1": 1},
        tts_calls=2,
        sfx_calls=2,
        sfx={"fx-1": 1, "fx-2": 1},
    )
    assert emu.stats() == expected
    assert get(emu, "/_emulator/stats").json() == expected


def test_expire_makes_every_audio_url_answer_404_but_trials_stay() -> None:
    clock = FakeClock()
    emu = make(clock)
    speech = speech_audio(post(emu, TTS, speech_body()))
    [effect] = finished_effect(emu, clock)["task_result"]["audios"]
    for url in (speech["url"], effect["url_mp3"], effect["url_wav"]):
        assert download(emu, url).status_code == 200
    assert run(emu, lambda c: c.post("/_emulator/expire", json={})).is_success
    for audio_id, url in (
        (speech["id"], speech["url"]),
        (effect["id"], effect["url_mp3"]),
        (effect["id"], effect["url_wav"]),
    ):
        assert error(download(emu, url)) == (404, 1203, f"the audio {audio_id} has expired")
    # The effect task is still there to query; a voice's trial belongs to the voice.
    assert data(get(emu, f"{SFX}/sb-sfx-opening-1"))["task_status"] == "succeed"
    assert download(emu, "/_emulator/voices/oversea_male1.mp3").status_code == 200
    # An expired file can no longer be a voice's sample either.
    assert error(post(emu, VOICES, voice_body(voice_url=speech["url"])))[2].startswith(
        "voice_url cannot be fetched"
    )
    assert emu.stats() == stats(tts_calls=1, sfx_calls=1, sfx={"sb-sfx-opening-1": 1}, downloads=4)
