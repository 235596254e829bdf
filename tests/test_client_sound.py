"""The Kling client's sound calls (kling-api.md §11.2): custom voices, TTS, sound effects.

Against the emulator in process, on its fake clock (no sockets, no sleeping): the bodies
sent are exactly soundwire's, a voice is made and found again, speech and effects come
back as audio that PyAV decodes to the length the answer states, a TTS call is sent once
whatever happens to it, and a malformed answer (scripted with httpx.MockTransport) is an
ApiStatusError that says what is missing. And the digests that name sound work.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from compiler.auth import ApiKeyAuth
from compiler.client import AudioTaskInfo, KlingClient, VoiceTaskInfo
from compiler.emulator import Emulator
from compiler.emulator.audio import RATE
from compiler.errors import ApiStatusError, TransportFailure
from compiler.request import (
    EffectRequest,
    LocalFile,
    PresetVoice,
    SpeechRequest,
    VoiceRequest,
    VoiceToMake,
)
from compiler.soundwire import (
    effect_body,
    effect_digest,
    speech_body,
    speech_digest,
    voice_body,
    voice_digest,
)

from .test_client import API_KEY, Script, call, envelope, html
from .test_client import client as scripted
from .test_client import run as run_async
from .test_elements_api import with_client
from .test_emulator import FakeClock, data
from .test_emulator_sound import SAMPLE, SFX, TTS, VOICES, get, make, measure, stats

T = TypeVar("T")

MIRA = VoiceRequest("mira", sample_url=SAMPLE)
LINE = "In the winter of 1923 the lamp had not been lit for a year."  # 14 words: 5.6 s
SPEECH = SpeechRequest(LINE, PresetVoice("oversea_male1"), "en", 1.0)
FOGHORN = EffectRequest("a distant foghorn, waves on rocks", 4.2)


class Recording(httpx.AsyncBaseTransport):
    """The emulator's transport, keeping every request the client sent through it."""

    def __init__(self, emu: Emulator) -> None:
        self.inner = emu.transport()
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)

    def posts(self, path: str) -> list[Any]:
        """The JSON bodies POSTed to `path`, in order."""
        return [
            json.loads(r.content) for r in self.sent if r.method == "POST" and r.url.path == path
        ]


def over(recording: Recording, op: Callable[[KlingClient], Awaitable[T]]) -> T:
    """`op`'s result, with the client talking through `recording`."""

    async def go() -> T:
        async with KlingClient("http://emulator", ApiKeyAuth("key"), transport=recording) as k:
            return await op(k)

    return asyncio.run(go())


def recorded(emu: Emulator, op: Callable[[KlingClient], Awaitable[T]]) -> tuple[T, Recording]:
    """`op`'s result with the client over a Recording of the emulator, and the recording."""
    recording = Recording(emu)
    return over(recording, op), recording


Info = TypeVar("Info", VoiceTaskInfo, AudioTaskInfo)


async def until_done(
    clock: FakeClock, first: Info, poll: Callable[[str], Awaitable[Info]], task_id: str
) -> list[Info]:
    """`first`, then one poll a second until the task succeeds or fails."""
    seen = [first]
    while seen[-1].status not in ("succeed", "failed"):
        await clock.sleep(1.0)
        seen.append(await poll(task_id))
    return seen


# -- custom voices ---------------------------------------------------------------------------


def test_a_custom_voice_is_created_polled_and_given_an_id() -> None:
    clock = FakeClock()
    emu = make(clock, voice_latency=2.0)

    async def made(kling: KlingClient) -> list[VoiceTaskInfo]:
        first = await kling.create_voice(MIRA, "sb-voice-mira-1", SAMPLE)
        return await until_done(clock, first, kling.get_voice_task, first.task_id)

    seen, recording = recorded(emu, made)
    assert recording.posts(VOICES) == [
        {"voice_name": "mira", "voice_url": SAMPLE, "external_task_id": "sb-voice-mira-1"}
    ]
    assert recording.posts(VOICES) == [voice_body(MIRA, "sb-voice-mira-1", SAMPLE)]
    task_id = seen[0].task_id
    assert [info.status for info in seen] == ["submitted", "processing", "succeed"]
    [voice] = data(get(emu, f"{VOICES}/{task_id}"))["task_result"]["voices"]
    assert seen[0] == VoiceTaskInfo(task_id, "submitted", None, "sb-voice-mira-1", None, None)
    assert seen[1] == VoiceTaskInfo(task_id, "processing", None, "sb-voice-mira-1", None, "0")
    assert seen[2] == VoiceTaskInfo(
        task_id, "succeed", None, "sb-voice-mira-1", voice["voice_id"], "0.05"
    )
    assert voice["voice_id"].isdecimal() and voice["voice_id"] != task_id
    assert emu.stats() == stats(voice_creates=1, voices={"sb-voice-mira-1": 1})


def test_find_voice_task_by_external_id_and_none_for_an_unknown_one() -> None:
    clock = FakeClock()
    emu = make(clock, voice_latency=2.0)
    created = with_client(emu, lambda k: k.create_voice(MIRA, "sb-voice-mira-1", SAMPLE))
    clock.now += 2.0
    found = with_client(emu, lambda k: k.find_voice_task("sb-voice-mira-1"))
    assert found is not None
    assert (found.task_id, found.status) == (created.task_id, "succeed")
    assert found.voice_id == emu._voices.tasks[created.task_id].voice_id
    assert with_client(emu, lambda k: k.find_voice_task("sb-voice-nobody")) is None
    # A sound effect's external id is no voice task.
    with_client(emu, lambda k: k.create_effect(FOGHORN, "sb-sfx-opening-1"))
    assert with_client(emu, lambda k: k.find_voice_task("sb-sfx-opening-1")) is None


def test_a_long_voice_name_is_cut_to_kling_s_twenty_characters() -> None:
    long = VoiceRequest("the-old-lighthouse-keeper", sample=LocalFile("mira.wav", "ab" * 32))
    url = "https://cache.example.com/voices/mira.wav?X-Amz-Signature=abc"
    assert voice_body(long, "sb-v-1", url) == {
        "voice_name": "the-old-lighthouse-k",
        "voice_url": url,
        "external_task_id": "sb-v-1",
    }
    emu = make(FakeClock())
    info, recording = recorded(emu, lambda k: k.create_voice(long, "sb-v-1", url))
    assert info.status == "submitted"
    assert recording.posts(VOICES) == [voice_body(long, "sb-v-1", url)]


# -- TTS -------------------------------------------------------------------------------------


def test_speak_answers_with_an_mp3_of_the_stated_length(tmp_path: Path) -> None:
    emu = make(FakeClock())
    info, recording = recorded(emu, lambda k: k.speak(SPEECH, "oversea_male1"))
    assert recording.posts(TTS) == [
        {"text": LINE, "voice_id": "oversea_male1", "voice_language": "en", "voice_speed": 1.0}
    ]
    assert recording.posts(TTS) == [speech_body(SPEECH, "oversea_male1")]
    assert info.status == "succeed" and info.status_msg is None
    assert info.external_task_id is None  # TTS has none
    assert info.units_charged == "0.05"
    assert info.duration == 5.6  # 14 words (1923 is one) at 2.5 a second
    assert info.audio_url is not None and info.audio_url.startswith("http://emulator/_emulator/")
    assert info.audio_url.endswith(".mp3")
    got = with_client(emu, lambda k: k.download(str(info.audio_url), tmp_path / "line.mp3"))
    assert got.bytes == (tmp_path / "line.mp3").stat().st_size
    rate, samples, _ = measure((tmp_path / "line.mp3").read_bytes())
    assert (rate, samples) == (RATE, round(5.6 * RATE))
    assert samples / rate == info.duration
    assert emu.stats() == stats(tts_calls=1, downloads=1)


def test_speak_in_a_custom_voice_once_it_is_made() -> None:
    clock = FakeClock()
    emu = make(clock, voice_latency=2.0)

    async def narrate(kling: KlingClient) -> AudioTaskInfo:
        task = await kling.create_voice(MIRA, "sb-voice-mira-1", SAMPLE)
        await clock.sleep(2.0)
        voice = await kling.get_voice_task(task.task_id)
        assert voice.voice_id is not None
        line = SpeechRequest("The lamp is lit.", VoiceToMake("mira", voice_digest(MIRA)), "zh")
        return await kling.speak(line, voice.voice_id)

    info = with_client(emu, narrate)
    assert (info.status, info.duration, info.units_charged) == ("succeed", 1.6, "0.05")


def test_a_failed_speech_keeps_its_reason_and_no_url() -> None:
    emu = make(FakeClock())
    emu.faults.add("fail_task", "audio", message="the text breaks the content rules")
    info = with_client(emu, lambda k: k.speak(SPEECH, "oversea_male1"))
    assert info == AudioTaskInfo(
        info.task_id, "failed", "the text breaks the content rules", None, None, None, "0"
    )


def test_a_5xx_on_speak_raises_after_exactly_one_post() -> None:
    emu = make(FakeClock())
    emu.faults.add("http_500", "create")
    recording = Recording(emu)
    with pytest.raises(ApiStatusError) as caught:
        over(recording, lambda k: k.speak(SPEECH, "oversea_male1"))
    assert [(r.method, r.url.path) for r in recording.sent] == [("POST", TTS)]
    assert emu.stats() == stats()  # refused before anything was made
    exc = caught.value
    assert (exc.code, exc.http_status, exc.transient) == (5000, 500, True)
    assert str(exc).startswith("POST /v1/audio/tts: Kling refused: ")
    # A 5xx without a Kling body, scripted: one request, and none after it.
    script = Script(html(502))
    with pytest.raises(ApiStatusError) as caught:
        run_async(call(scripted(script), lambda k: k.speak(SPEECH, "oversea_male1")))
    assert (caught.value.code, caught.value.http_status, caught.value.transient) == (
        None,
        502,
        True,
    )
    assert [(r.method, r.url.path) for r in script.requests] == [("POST", TTS)]


def test_a_lost_tts_answer_is_one_paid_call_and_a_transport_failure() -> None:
    emu = make(FakeClock())
    emu.faults.add("drop_after", "create")
    recording = Recording(emu)
    with pytest.raises(TransportFailure) as caught:
        over(recording, lambda k: k.speak(SPEECH, "oversea_male1"))
    assert str(caught.value).startswith("POST /v1/audio/tts: no answer (RemoteProtocolError")
    assert len(recording.posts(TTS)) == 1 and len(recording.sent) == 1
    assert emu.stats() == stats(tts_calls=1)  # made and paid, with nothing to find it by


# -- sound effects ---------------------------------------------------------------------------


def test_an_effect_is_created_polled_and_gives_a_wav_of_its_duration(tmp_path: Path) -> None:
    clock = FakeClock()
    emu = make(clock, sfx_latency=2.0)

    async def made(kling: KlingClient) -> list[AudioTaskInfo]:
        first = await kling.create_effect(FOGHORN, "sb-sfx-opening-1")
        return await until_done(clock, first, kling.get_effect_task, first.task_id)

    seen, recording = recorded(emu, made)
    assert recording.posts(SFX) == [
        {"prompt": FOGHORN.prompt, "duration": 4.2, "external_task_id": "sb-sfx-opening-1"}
    ]
    assert recording.posts(SFX) == [effect_body(FOGHORN, "sb-sfx-opening-1")]
    assert [info.status for info in seen] == ["submitted", "processing", "succeed"]
    task_id = seen[0].task_id
    assert seen[0] == AudioTaskInfo(
        task_id, "submitted", None, "sb-sfx-opening-1", None, None, None
    )
    done = seen[-1]
    [audio] = data(get(emu, f"{SFX}/{task_id}"))["task_result"]["audios"]
    assert done == AudioTaskInfo(
        task_id, "succeed", None, "sb-sfx-opening-1", audio["url_wav"], 4.2, "0.25"
    )
    assert done.duration is not None and abs(done.duration - FOGHORN.duration) < 0.1
    assert str(done.audio_url).endswith(".wav")
    got = with_client(emu, lambda k: k.download(str(done.audio_url), tmp_path / "sfx.wav"))
    assert got.path.read_bytes()[:4] == b"RIFF"
    rate, samples, _ = measure(got.path.read_bytes())
    assert (rate, samples) == (RATE, round(4.2 * RATE))


def test_find_effect_task_by_external_id_and_none_for_an_unknown_one() -> None:
    clock = FakeClock()
    emu = make(clock, sfx_latency=1.0)
    created = with_client(emu, lambda k: k.create_effect(FOGHORN, "sb-sfx-opening-1"))
    found = with_client(emu, lambda k: k.find_effect_task("sb-sfx-opening-1"))
    assert found is not None and (found.task_id, found.status) == (created.task_id, "submitted")
    clock.now += 1.0
    found = with_client(emu, lambda k: k.find_effect_task("sb-sfx-opening-1"))
    assert found is not None and found.status == "succeed" and found.audio_url is not None
    assert with_client(emu, lambda k: k.find_effect_task("sb-sfx-nothing")) is None
    with_client(emu, lambda k: k.create_voice(MIRA, "sb-voice-mira-1", SAMPLE))
    assert with_client(emu, lambda k: k.find_effect_task("sb-voice-mira-1")) is None


def test_a_failed_effect_keeps_its_reason() -> None:
    clock = FakeClock()
    emu = make(clock, sfx_latency=1.0)
    emu.faults.add("fail_task", "audio", message="prompt refused")
    created = with_client(emu, lambda k: k.create_effect(FOGHORN, "sb-sfx-opening-1"))
    clock.now += 1.0
    info = with_client(emu, lambda k: k.get_effect_task(created.task_id))
    assert info == AudioTaskInfo(
        created.task_id, "failed", "prompt refused", "sb-sfx-opening-1", None, None, "0"
    )


# -- answers read with care (scripted) -------------------------------------------------------


def finished(result: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "task_id": "T-7",
        "task_status": "succeed",
        "task_status_msg": "",
        "task_info": {"external_task_id": "sb-x-1"},
        "task_result": result,
        "final_unit_deduction": "0.25",
        **fields,
    }


def test_an_effect_without_a_wav_falls_back_to_its_mp3() -> None:
    audio = {"id": "a", "url_mp3": "https://cdn.kling.test/a.mp3", "duration_mp3": "4.176"}
    script = Script(envelope(data=finished({"audios": [audio]})))
    info = run_async(call(scripted(script), lambda k: k.get_effect_task("T-7")))
    assert (info.audio_url, info.duration) == ("https://cdn.kling.test/a.mp3", 4.176)
    # An unusable wav URL is no URL: the mp3 is taken, with its own duration.
    audio = {**audio, "url_wav": "file:///etc/passwd", "duration_wav": "9.9"}
    script = Script(envelope(data=finished({"audios": [audio]})))
    info = run_async(call(scripted(script), lambda k: k.get_effect_task("T-7")))
    assert (info.audio_url, info.duration) == ("https://cdn.kling.test/a.mp3", 4.176)


@pytest.mark.parametrize(
    ("op", "result", "message"),
    [
        (
            lambda k: k.speak(SPEECH, "oversea_male1"),
            {"audios": [{"id": "a", "url": "", "duration": "5.6"}]},
            "POST /v1/audio/tts: unexpected answer: succeeded without "
            "`data.task_result.audios[0].url`",
        ),
        (
            lambda k: k.get_effect_task("T-7"),
            {"audios": [{"id": "a", "url_mp3": "ftp://cdn.kling.test/a.mp3"}]},
            "GET /v1/audio/text-to-audio/T-7: unexpected answer: succeeded without "
            "`data.task_result.audios[0].url_wav` or `data.task_result.audios[0].url_mp3`",
        ),
        (
            lambda k: k.create_effect(FOGHORN, "sb-x-1"),
            {"audios": []},
            "POST /v1/audio/text-to-audio: unexpected answer: succeeded without "
            "`data.task_result.audios[0].url_wav` or `data.task_result.audios[0].url_mp3`",
        ),
        (
            lambda k: k.get_voice_task("T-7"),
            {"voices": []},  # as a deleted voice's task shows
            "GET /v1/general/custom-voices/T-7: unexpected answer: succeeded without "
            "`data.task_result.voices[0].voice_id` (deleted since?)",
        ),
        (
            lambda k: k.find_voice_task("sb-x-1"),
            {"voices": [{"voice_id": "", "voice_name": "mira"}]},
            "GET /v1/general/custom-voices/sb-x-1: unexpected answer: succeeded without "
            "`data.task_result.voices[0].voice_id` (deleted since?)",
        ),
    ],
)
def test_a_success_without_its_result_is_an_api_status_error(
    op: Callable[[KlingClient], Awaitable[object]], result: dict[str, Any], message: str
) -> None:
    script = Script(envelope(data=finished(result), request_id="req-9"))
    with pytest.raises(ApiStatusError) as caught:
        run_async(call(scripted(script), op))
    exc = caught.value
    assert exc.message == message
    assert (exc.code, exc.http_status, exc.request_id, exc.transient) == (None, 200, "req-9", False)
    assert len(script.requests) == 1


def test_server_text_is_redacted_and_ids_are_one_path_segment() -> None:
    reason = f"refused for token {API_KEY}"
    failed = {"task_id": "T-7", "task_status": "failed", "task_status_msg": reason}
    script = Script(envelope(data=failed), envelope(data=failed), envelope(data=failed))

    async def three(kling: KlingClient) -> list[AudioTaskInfo | VoiceTaskInfo]:
        return [
            await kling.get_voice_task("a/b?c"),
            await kling.get_effect_task("a/b?c"),
            await kling.speak(SPEECH, "oversea_male1"),
        ]

    voice, effect, speech = run_async(call(scripted(script), three))  # ApiKeyAuth(key)
    assert voice.status_msg == effect.status_msg == speech.status_msg == "refused for token ***"
    assert [r.url.raw_path for r in script.requests] == [
        b"/v1/general/custom-voices/a%2Fb%3Fc",
        b"/v1/audio/text-to-audio/a%2Fb%3Fc",
        b"/v1/audio/tts",
    ]


# -- digests ---------------------------------------------------------------------------------


def test_the_speech_digest_follows_text_voice_language_and_speed_alone() -> None:
    base = speech_digest(SPEECH)
    assert len(base) == 64 and int(base, 16) >= 0
    assert speech_digest(SpeechRequest(LINE, PresetVoice("oversea_male1"), "en", 1.0)) == base
    assert speech_digest(SpeechRequest(LINE, PresetVoice("oversea_male1"), "en")) == base
    assert speech_digest(SpeechRequest(LINE, PresetVoice("oversea_male1"), "en", 1)) == base
    changed = [
        SpeechRequest(LINE + " ", PresetVoice("oversea_male1"), "en", 1.0),
        SpeechRequest(LINE, PresetVoice("oversea_female1"), "en", 1.0),
        SpeechRequest(LINE, PresetVoice("oversea_male1"), "zh", 1.0),
        SpeechRequest(LINE, PresetVoice("oversea_male1"), "en", 1.2),
    ]
    assert len({base, *(speech_digest(req) for req in changed)}) == 5


def test_a_custom_voice_enters_the_speech_digest_by_its_own_digest() -> None:
    mira = voice_digest(MIRA)
    said = SpeechRequest(LINE, VoiceToMake("mira", mira), "en", 1.0)
    # Known before the voice is made, and changed by a new sample.
    resampled = VoiceRequest("mira", sample_url="https://example.com/voices/mira-2.wav")
    again = SpeechRequest(LINE, VoiceToMake("mira", voice_digest(resampled)), "en", 1.0)
    assert speech_digest(said) != speech_digest(again)
    assert speech_digest(said) == speech_digest(
        SpeechRequest(LINE, VoiceToMake("mira", mira), "en", 1.0)
    )
    # A preset whose id happened to equal the digest is still another voice.
    assert speech_digest(said) != speech_digest(SpeechRequest(LINE, PresetVoice(mira), "en"))


def test_the_effect_digest_follows_prompt_and_duration_alone() -> None:
    base = effect_digest(FOGHORN)
    assert effect_digest(EffectRequest(FOGHORN.prompt, 4.2)) == base
    assert effect_digest(EffectRequest("a distant foghorn", 4.2)) != base
    assert effect_digest(EffectRequest(FOGHORN.prompt, 4.3)) != base
    assert effect_digest(EffectRequest("x", 4)) == effect_digest(EffectRequest("x", 4.0))
    # The three kinds never share a digest, even over equal-looking words.
    assert len({effect_digest(EffectRequest(LINE, 4.0)), speech_digest(SPEECH), base}) == 3
