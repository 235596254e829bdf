"""The storyboard language for sound (README "Sound"; design.md §10): voices, narration,
sound effects and the soundtrack, checked and lowered to typed requests and priced."""

from __future__ import annotations

import shutil
import wave
from decimal import Decimal
from pathlib import Path

import pytest

from compiler.pipeline import CompileResult, compile_file
from compiler.request import (
    EffectRequest,
    ElementToMake,
    LocalFile,
    PresetVoice,
    SpeechRequest,
    VoiceToMake,
)

ASSETS = Path(__file__).parent / "cases" / "assets"

BOARD = """\
storyboard: 1
sound: on
voices:
  narrator: {preset: oversea_male1, language: en, speed: 1.2}
  mira: {sample: mira.wav, language: en}
narrator: narrator
soundtrack: {music: score.wav}
refs:
  elements:
    mira: {images: [coast.png, dusk.jpg], description: a young sailor, voice: mira}
scenes:
  - id: opening
    narration: "In the winter of {{ year }} the lamp was dark."
    vars: {year: 1923}
    sfx: "a distant foghorn"
    prompt: "A lighthouse at dusk."
    duration: 12
  - id: mira
    narrator: mira
    narration: "I came back for the light."
    sfx: {prompt: "wind", duration: 3.5}
    prompt: "{{ element.mira }} climbs the stairs."
    duration: 5
"""


def _wav(path: Path, seconds: float, level: int = 128) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(4000)
        out.writeframes(bytes([level]) * int(4000 * seconds))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STORYBOARD_CACHE", "s3://bucket/renders")
    (tmp_path / ".git").mkdir()
    for name in ("coast.png", "dusk.jpg"):
        shutil.copy(ASSETS / name, tmp_path / name)
    _wav(tmp_path / "mira.wav", 6)
    _wav(tmp_path / "score.wav", 2)
    (tmp_path / "film.yaml").write_text(BOARD, encoding="utf-8")
    return tmp_path


def _compile(project: Path) -> CompileResult:
    result = compile_file(project / "film.yaml")
    assert result.ok, [d.headline() for d in result.diagnostics]
    return result


def test_narration_sfx_voices_and_soundtrack_are_typed_and_priced(project: Path) -> None:
    result = _compile(project)
    opening, mira = result.tasks
    assert opening.narration == SpeechRequest(
        "In the winter of 1923 the lamp was dark.", PresetVoice("oversea_male1"), "en", 1.2
    )
    assert opening.sfx == EffectRequest("a distant foghorn", 10.0)  # 12 s, kept within 3-10
    assert mira.sfx == EffectRequest("wind", 3.5)
    assert isinstance(mira.narration, SpeechRequest)
    voice = mira.narration.voice
    assert isinstance(voice, VoiceToMake) and voice.name == "mira"
    assert (opening.narration_units, opening.sfx_units) == (Decimal("0.05"), Decimal("0.25"))
    assert opening.narration_usd == Decimal("0.007") and opening.sfx_usd == Decimal("0.035")
    [task] = result.voices
    assert task.name == "mira" and task.media == voice and task.units == Decimal("0.05")
    assert task.request.sample is not None and task.request.sample.file == "mira.wav"
    assert result.board is not None and result.board.soundtrack is not None
    soundtrack = result.board.soundtrack
    assert isinstance(soundtrack.music, LocalFile) and soundtrack.music.file == "score.wav"
    assert (soundtrack.loudness, soundtrack.true_peak) == (-14.0, -1.0)
    element = result.board.refs.elements["mira"]
    assert element.voice == voice
    doc = result.as_json()
    assert doc["voices"][0]["name"] == "mira"  # type: ignore[index]


def test_a_new_sample_changes_the_voice_the_element_and_only_the_scenes_that_show_it(
    project: Path,
) -> None:
    before = _compile(project)
    _wav(project / "mira.wav", 6, level=140)  # new content, same length and name
    after = _compile(project)
    voice_before, voice_after = before.voices[0].media, after.voices[0].media
    assert voice_before.digest != voice_after.digest
    elements = [t.request.elements for t in (before.tasks[1], after.tasks[1])]
    assert all(isinstance(e[0], ElementToMake) for e in elements)
    assert elements[0] != elements[1]
    # the scene without the element is unchanged; the one showing it changes
    assert before.tasks[0].payload == after.tasks[0].payload
    assert before.tasks[1].payload != after.tasks[1].payload
    # the narration in mira's voice names the new voice; the preset narration does not change
    assert before.tasks[0].narration == after.tasks[0].narration
    assert before.tasks[1].narration != after.tasks[1].narration


def test_a_preset_voice_change_changes_the_element_digest(project: Path) -> None:
    before = _compile(project)
    text = BOARD.replace("voice: mira}", "voice: narrator}")
    (project / "film.yaml").write_text(text, encoding="utf-8")
    after = _compile(project)
    assert before.tasks[1].request.elements != after.tasks[1].request.elements
    assert before.tasks[0].payload == after.tasks[0].payload


def test_a_local_sample_without_an_s3_cache_is_a_diagnostic(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORYBOARD_CACHE")
    result = compile_file(project / "film.yaml")
    assert not result.tasks and not result.voices
    assert [d.code for d in result.diagnostics if d.is_error] == ["voice-sample-local"]


def test_a_preset_voice_speaks_its_own_language_by_default(project: Path) -> None:
    text = BOARD.replace("mira: {sample: mira.wav, language: en}", "mira: {preset: ai_kaiya}")
    (project / "film.yaml").write_text(text, encoding="utf-8")
    result = _compile(project)
    narration = result.tasks[1].narration
    assert narration is not None and narration.language == "zh"
    assert narration.voice == PresetVoice("ai_kaiya") and not result.voices


def test_an_unwritten_effect_lasts_as_long_as_its_scene_all_its_shots(tmp_path: Path) -> None:
    (tmp_path / "film.yaml").write_text(
        "storyboard: 1\n"
        "scenes:\n"
        "  - id: climb\n"
        '    sfx: "footsteps on iron stairs"\n'
        "    shots:\n"
        '      - {prompt: "He climbs.", duration: 4}\n'
        '      - {prompt: "He lights the lamp.", duration: 3}\n'
        "  - id: long\n"
        '    sfx: "waves"\n'
        '    prompt: "The sea."\n'
        "    duration: 12\n",
        encoding="utf-8",
    )
    result = compile_file(tmp_path / "film.yaml", "film.yaml")
    assert result.ok, [d.headline() for d in result.diagnostics]
    climb, long = result.tasks
    assert climb.sfx == EffectRequest("footsteps on iron stairs", 7.0)  # 4 + 3 s of shots
    assert long.sfx == EffectRequest("waves", 10.0)  # 12 s, kept within 3-10
