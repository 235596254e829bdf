"""What render does with a storyboard's sound (README "Sound"): voices made once and sent
with elements, narration and effects made once by content and mixed into the film at
their scenes, music under it all at the film's loudness. In process, on a fake clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from compiler.execute import Executor
from compiler.lockfile import Lockfile
from compiler.pipeline import compile_file
from tests.rendering import BOARD, FakeTime, lock_of, make_emulator, plan_of, render, write_image

VOICED = """\
storyboard: 1
mode: std
voices:
  narrator: {preset: oversea_male1, language: en}
narrator: narrator
refs:
  elements:
    keeper:
      images: [keeper-front.png, keeper-side.png]
      description: the keeper, an old man in a yellow raincoat
      voice: narrator
scenes:
  - id: stairs
    narration: "He climbed every night for forty years."
    prompt: "{{ element.keeper }} climbs the spiral stairs."
    duration: 3
"""


def test_an_elements_preset_voice_goes_with_the_element(project: Path) -> None:
    write_image(project / "keeper-front.png", shade=40)
    write_image(project / "keeper-side.png", shade=160)
    (project / "film.yaml").write_text(VOICED, encoding="utf-8")
    result = compile_file(project / "film.yaml", "film.yaml")
    assert result.ok, [d.headline() for d in result.diagnostics]
    assert result.board is not None
    element = result.board.refs.elements["keeper"]
    executor = Executor(
        client=None,  # type: ignore[arg-type]  # the body is built without a request
        lock=Lockfile.for_storyboard(project / "film.yaml"),
        base_dir=project,
        clips_dir=project / "renders" / "film",
    )
    body = asyncio.run(executor._element_body(element, "sb-el-keeper-x"))  # noqa: SLF001
    assert body["element_voice_id"] == "oversea_male1"


def _music(path: Path, seconds: float = 4.0) -> Path:
    """A chord as a WAV: music for the soundtrack."""
    import math
    import struct
    import wave

    rate = 48_000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = bytearray()
        for n in range(int(seconds * rate)):
            t = n / rate
            value = sum(math.sin(2 * math.pi * hz * t) for hz in (220.0, 277.2, 329.6)) / 3
            frames += struct.pack("<h", int(value * 0.3 * 32767))
        out.writeframes(bytes(frames))
    return path


def test_the_soundtrack_lays_music_under_the_film_at_its_loudness(project: Path) -> None:
    import numpy as np
    import pyloudnorm  # type: ignore[import-untyped]

    from tests.test_mix import RATE, decode

    _music(project / "score.wav")
    text = BOARD.replace("scenes:\n", "soundtrack:\n  music: score.wav\n  loudness: -16\nscenes:\n")
    (project / "film.yaml").write_text(text, encoding="utf-8")
    emulator = make_emulator(FakeTime())
    outcome = render(project, emulator)
    assert outcome.film is not None and outcome.notes == []
    assert outcome.film_detail.startswith("picture copied; sound mixed ")
    assert "(music under the film, -16.0 LUFS, true peak " in outcome.film_detail
    sound = decode(outcome.film)
    loudness = float(pyloudnorm.Meter(RATE).integrated_loudness(sound))
    assert abs(loudness - (-16.0)) <= 1.0  # measured by a meter the mix does not use
    assert np.abs(sound).max() < 1.0
    # Unchanged: not mixed again. A new loudness: mixed again.
    again = render(project, emulator)
    assert again.film_note == "film unchanged"
    (project / "film.yaml").write_text(text.replace("loudness: -16", "loudness: -20"), "utf-8")
    louder = render(project, emulator)
    assert louder.film_note.startswith("film assembled")
    assert louder.film is not None
    quieter = float(pyloudnorm.Meter(RATE).integrated_loudness(decode(louder.film)))
    assert abs(quieter - (-20.0)) <= 1.0


def _sounded(project: Path, *, music: bool = True) -> str:
    """The test film with two voices, narration on two scenes, an effect, and music."""
    if music:
        _music(project / "score.wav")
    header = (
        "voices:\n"
        "  narrator: {preset: oversea_male1, language: en}\n"
        '  mira: {sample: {url: "https://samples.example/mira.wav"}, language: en}\n'
        "narrator: narrator\n"
        + ("soundtrack:\n  music: score.wav\n  loudness: -16\n" if music else "")
        + "scenes:\n"
    )
    text = (
        BOARD.replace("scenes:\n", header)
        .replace(
            "    first_frame: coast\n",
            '    first_frame: coast\n    narration: "The lamp was dark a year."\n',
        )
        .replace(
            "  - id: climb\n",
            '  - id: climb\n    narrator: mira\n    narration: "I climbed every night."\n',
        )
        .replace(
            '    prompt: "The beam sweeps the sea."',
            '    sfx: "waves on rocks"\n    prompt: "The beam sweeps the sea."',
        )
    )
    (project / "film.yaml").write_text(text, encoding="utf-8")
    return text


def test_narration_effects_and_voices_are_made_once_and_mixed(project: Path) -> None:
    _sounded(project)
    emulator = make_emulator(FakeTime())
    outcome = render(project, emulator)
    assert outcome.failed == [] and outcome.notes == []
    assert outcome.film is not None
    assert "sound mixed (2 narration(s), 1 effect(s), music under the film, -16.0 LUFS" in (
        outcome.film_detail
    )
    stats = emulator.stats()
    assert (stats["tts_calls"], stats["sfx_calls"], stats["voice_creates"]) == (2, 1, 1)
    lock = lock_of(project)
    assert sorted(lock.speech) == ["climb", "opening"] and sorted(lock.effects) == ["coda"]
    assert lock.voices["mira"].voice_id is not None
    for entry in (*lock.speech.values(), *lock.effects.values()):
        assert entry.file is not None and entry.file.startswith("audio/")
        assert entry.intact(project / "renders" / "film") is not None
        assert entry.external_task_id is None or entry.external_task_id.startswith("sb-fx-")
    assert lock.speech["opening"].external_task_id is None  # TTS takes none
    # Nothing changed: no call of any kind, the film untouched.
    again = render(project, emulator)
    assert again.film_note == "film unchanged"
    after = emulator.stats()
    assert (after["tts_calls"], after["sfx_calls"], after["voice_creates"]) == (2, 1, 1)
    assert after["total_creates"] == stats["total_creates"]


def test_editing_one_line_makes_one_tts_call_and_no_clip(project: Path) -> None:
    from decimal import Decimal

    text = _sounded(project, music=False)
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    before = emulator.stats()
    clips = sum((e.units_charged() for e in lock_of(project).scenes.values()), Decimal(0))
    # Charged so far: the clips, a voice, two narrations and an effect.
    assert lock_of(project).charged("emulator") == clips + Decimal("0.40")
    edited = text.replace("I climbed every night.", "I climbed every night for forty years.")
    (project / "film.yaml").write_text(edited, encoding="utf-8")
    plan = plan_of(project)
    assert [(s.job.label, str(s.action)) for s in plan.sounds if s.creates] == [
        ("narration climb", "submit")
    ]
    outcome = render(project, emulator)
    assert outcome.failed == [] and outcome.film is not None
    after = emulator.stats()
    assert after["tts_calls"] == before["tts_calls"] + 1
    assert after["total_creates"] == before["total_creates"]  # no video task
    assert (after["sfx_calls"], after["voice_creates"]) == (before["sfx_calls"], 1)
    # The line said before was paid too: it stays counted.
    assert lock_of(project).charged("emulator") == clips + Decimal("0.45")
    [earlier] = lock_of(project).sound_history["speech"]["climb"]
    assert (
        earlier.units_charged == "0.05"
        and earlier.digest != lock_of(project).speech["climb"].digest
    )


def test_a_local_sample_goes_to_kling_as_a_presigned_link_from_the_s3_cache(
    project: Path,
    s3: str,  # noqa: F811 (the fixture)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hashlib

    import httpx
    import obstore

    from compiler.cache import Cache, open_cache

    sample = _music(project / "mira.wav", seconds=6.0)
    monkeypatch.setenv("STORYBOARD_CACHE", s3)
    text = _sounded(project, music=False).replace(
        '{sample: {url: "https://samples.example/mira.wav"}, language: en}',
        "{sample: mira.wav, language: en}",
    )
    (project / "film.yaml").write_text(text, encoding="utf-8")
    emulator = make_emulator(FakeTime())
    cache = open_cache(s3)
    outcome = render(project, emulator, cache=cache)
    assert outcome.failed == [] and outcome.film is not None
    assert emulator.stats()["voice_creates"] == 1
    sha = hashlib.sha256(sample.read_bytes()).hexdigest()
    key = Cache.sample_key(sha, ".wav")
    assert obstore.head(cache._store, key)["size"] == sample.stat().st_size  # noqa: SLF001
    link = cache.share(sha, sample, ".wav")  # the link render sent: fetchable, the sample
    assert httpx.get(link).content == sample.read_bytes()
    voice = lock_of(project).voices["mira"]
    assert voice.status == "succeed" and voice.voice_id is not None


def test_a_cut_off_tts_call_is_never_resent_blindly(project: Path) -> None:
    from compiler.errors import SpeechUnsure

    text = _sounded(project, music=False)
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    edited = text.replace("The lamp was dark", "The lamp stood dark")
    (project / "film.yaml").write_text(edited, encoding="utf-8")
    before = emulator.stats()["tts_calls"]
    emulator.faults.add("drop_after", "audio")  # the call is made (and paid); its answer lost
    cut = render(project, emulator)
    assert emulator.stats()["tts_calls"] == before + 1  # once: not resent
    [failed] = cut.failed
    assert isinstance(failed.error, SpeechUnsure)
    assert str(failed.error).startswith("narration opening: the TTS call was cut off (")
    assert cut.film is None and "narration of opening" in cut.film_note
    entry = lock_of(project).speech["opening"]
    assert entry.status == "creating" and entry.status_msg is not None
    # The next plan says it may pay twice, and the render makes it (one more call).
    [row] = [s for s in plan_of(project).sounds if s.creates]
    assert (row.job.label, str(row.action), row.state, row.unsure) == (
        "narration opening",
        "submit",
        "interrupted",
        True,
    )
    assert "may pay twice" in row.reasons[0]
    again = render(project, emulator)
    assert again.failed == [] and again.film is not None
    assert emulator.stats()["tts_calls"] == before + 2


def test_a_voice_a_new_emulator_lost_is_made_again_free(project: Path) -> None:
    text = _sounded(project, music=False)
    render(project, make_emulator(FakeTime()))
    made = lock_of(project).voices["mira"]
    fresh = make_emulator(FakeTime())  # `make render` starts an emulator of its own each time
    assert render(project, fresh).film_note == "film unchanged"
    assert fresh.stats()["total_creates"] == fresh.stats()["tts_calls"] == 0
    edited = text.replace("I climbed every night.", "I climbed every single night.")
    (project / "film.yaml").write_text(edited, encoding="utf-8")
    [voice] = [s for s in plan_of(project).sounds if s.job.kind == "voice"]
    assert (str(voice.action), voice.reasons) == (
        "reuse",
        ("made again, free, if the emulator lost it",),
    )
    outcome = render(project, fresh)
    assert outcome.failed == [] and outcome.film is not None
    stats = fresh.stats()
    assert (stats["voice_creates"], stats["tts_calls"], stats["total_creates"]) == (1, 1, 0)
    again = lock_of(project).voices["mira"]
    assert again.voice_id != made.voice_id and again.attempt == made.attempt + 1


def test_an_element_speaks_in_the_custom_voice_made_for_it(project: Path) -> None:
    write_image(project / "keeper-front.png", shade=40)
    write_image(project / "keeper-side.png", shade=160)
    text = VOICED.replace(
        "  narrator: {preset: oversea_male1, language: en}\n",
        "  narrator: {preset: oversea_male1, language: en}\n"
        '  keeper: {sample: {url: "https://samples.example/keeper.mp3"}, language: en}\n',
    ).replace("      voice: narrator\n", "      voice: keeper\n")
    (project / "film.yaml").write_text(text, encoding="utf-8")
    emulator = make_emulator(FakeTime())
    outcome = render(project, emulator)
    assert outcome.failed == [] and outcome.film is not None
    lock = lock_of(project)
    element_id = lock.elements["keeper"].element_id
    voice_id = lock.voices["keeper"].voice_id

    async def query() -> dict[str, object]:
        from compiler.backends import emulator_backend

        client = emulator_backend(emulator).client()
        try:
            response = await client._api.get(
                f"/v1/general/advanced-custom-elements/{lock.elements['keeper'].task_id}"
            )  # noqa: SLF001
        finally:
            await client.aclose()
        return response.json()["data"]

    data = asyncio.run(query())
    elements = data["task_result"]["elements"]  # type: ignore[index]
    assert elements[0]["element_id"] == element_id
    assert elements[0]["element_voice_info"]["voice_id"] == voice_id
    assert emulator.stats()["voice_creates"] == 1


def test_sound_is_priced_in_the_plan_and_the_budget_gate_counts_it(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from compiler.cli import main

    text = _sounded(project, music=False)
    render(project, make_emulator(FakeTime()), kling=True)  # all made, as Kling's
    edited = text.replace("I climbed every night.", "I climbed every night again.")
    edited = edited.replace("title: Test Film", "title: Test Film\nbudget_usd: 0.001")
    (project / "film.yaml").write_text(edited, encoding="utf-8")
    monkeypatch.chdir(project)
    monkeypatch.setenv("KLING_API_KEY", "a-real-looking-key")
    monkeypatch.setenv("KLING_BASE_URL", "https://api-singapore.klingai.com")
    assert main(["plan", "film.yaml", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {row["label"]: (row["action"], row["unsure"]) for row in doc["sounds"]}
    assert rows == {
        "voice mira": ("reuse", False),  # what the edited line is spoken in: made before
        "narration opening": ("reuse", False),
        "narration climb": ("submit", True),
        "sfx coda": ("reuse", False),
    }
    assert [r["action"] for r in doc["scenes"]] == ["reuse", "reuse", "reuse"]
    assert doc["totals"]["sound_submit"] == 1 and doc["totals"]["sound_units"] == 0.05
    assert doc["totals"]["usd"] == pytest.approx(0.007)
    # The autouse network guard turns any request into a crash: exit 4 proves none was made.
    assert main(["render", "film.yaml"]) == 4
    err = capsys.readouterr().err
    assert "render: refused: about $0.01 of paid work (film.yaml: $0.01, budget_usd $0.00)" in err


def test_status_lists_voices_narration_and_effects(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from compiler.cli import main

    _sounded(project, music=False)
    render(project, make_emulator(FakeTime()))
    (project / "renders" / "film" / "audio" / "coda.sfx.wav").unlink()
    monkeypatch.chdir(project)
    monkeypatch.delenv("KLING_API_KEY", raising=False)
    assert main(["status", "film.yaml"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    sounds = {words[1]: words for words in lines if words[0] in ("voice", "narration", "sfx")}
    assert sounds["mira"][2] == "succeed" and sounds["mira"][-2] == "voice"
    assert sounds["opening"][-2:] == ["audio", "ok"] and sounds["opening"][4:6] == ["0.05", "units"]
    assert (
        sounds["coda"][-5:]
        == ["deleted", "or", "modified", "(render", "makes", "it", "again)"][-5:]
    )


def test_an_effect_whose_answer_was_lost_is_looked_up_not_paid_again(project: Path) -> None:
    text = _sounded(project, music=False)
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    (project / "film.yaml").write_text(text.replace("waves on rocks", "gulls"), "utf-8")
    before = emulator.stats()["sfx_calls"]
    emulator.faults.add("drop_after", "audio")  # made (and paid), the answer lost
    outcome = render(project, emulator)
    assert outcome.failed == [] and outcome.film is not None
    assert emulator.stats()["sfx_calls"] == before + 1  # found by its external_task_id
    entry = lock_of(project).effects["coda"]
    assert entry.status == "succeed" and entry.external_task_id is not None
    assert entry.external_task_id.startswith("sb-fx-coda-")


def test_the_contact_sheet_shows_each_scenes_narration_and_effect_with_a_player(
    project: Path,
) -> None:
    from compiler.preview import write_preview

    text = _sounded(project, music=False)
    render(project, make_emulator(FakeTime()))
    edited = text.replace("I climbed every night.", "I climbed every single night.")
    (project / "film.yaml").write_text(edited, encoding="utf-8")
    result = compile_file(project / "film.yaml", "film.yaml")
    page = write_preview(result, project / "renders", "emulator").read_text("utf-8")
    assert '<q class="sound-text">The lamp was dark a year.</q>' in page
    assert '<audio controls preload="none" src="audio/opening.narration.mp3">' in page
    assert '<q class="sound-text">waves on rocks</q>' in page
    assert '<audio controls preload="none" src="audio/coda.sfx.wav">' in page
    # The edited line's audio is the old line's: not offered as this one.
    assert '<q class="sound-text">I climbed every single night.</q>' in page
    assert "audio/climb.narration" not in page and "not made yet" in page
    assert "1 sound call, 0.05 units · free on the emulator" in page
    assert "2 narrations · 1 effect · true peak ≤ -1 dBTP" in page  # the sound card


def test_an_elements_kind_goes_as_its_tag_and_only_a_character_takes_a_voice(
    project: Path,
) -> None:
    from compiler.emulator.rules import Invalid, check_element_body

    write_image(project / "keeper-front.png", shade=40)
    write_image(project / "keeper-side.png", shade=160)
    text = VOICED.replace(
        "      voice: narrator\n", "      kind: character\n      voice: narrator\n"
    )
    (project / "film.yaml").write_text(text, encoding="utf-8")
    result = compile_file(project / "film.yaml", "film.yaml")
    assert result.ok and result.board is not None
    element = result.board.refs.elements["keeper"]
    (project / "plain.yaml").write_text(VOICED, encoding="utf-8")
    plain = compile_file(project / "plain.yaml", "plain.yaml").board
    assert plain is not None  # a kind is part of what the element is: made again
    assert plain.refs.elements["keeper"].digest != element.digest
    executor = Executor(
        client=None,  # type: ignore[arg-type]  # the body is built without a request
        lock=Lockfile.for_storyboard(project / "film.yaml"),
        base_dir=project,
        clips_dir=project / "renders" / "film",
    )
    body = asyncio.run(executor._element_body(element, "sb-el-keeper-x"))  # noqa: SLF001
    assert body["tag_list"] == [{"tag_id": "o_102"}]
    assert check_element_body(body).voice_id == "oversea_male1"  # the emulator takes it
    with pytest.raises(Invalid, match="only a character or humanoid element"):
        check_element_body({**body, "tag_list": [{"tag_id": "o_104"}]})  # an item
    outcome = render(project, make_emulator(FakeTime()))
    assert outcome.failed == [] and outcome.film is not None


def test_a_new_element_voice_remakes_the_element_and_only_the_scenes_that_show_it(
    project: Path,
) -> None:
    write_image(project / "keeper-front.png", shade=40)
    write_image(project / "keeper-side.png", shade=160)
    text = VOICED.replace(
        "  narrator: {preset: oversea_male1, language: en}\n",
        "  narrator: {preset: oversea_male1, language: en}\n"
        "  rock: {preset: uk_man2, language: en}\n",
    ).replace(
        "    duration: 3\n",
        '    duration: 3\n  - id: sea\n    prompt: "The beam sweeps the sea."\n    duration: 3\n',
    )
    (project / "film.yaml").write_text(text, "utf-8")
    emulator = make_emulator(FakeTime())
    # `rock` is unused at first: a warning, not an error.
    first = render(project, emulator)
    assert first.failed == [] and first.film is not None
    made = emulator.stats()
    (project / "film.yaml").write_text(text.replace("voice: narrator", "voice: rock"), "utf-8")
    plan = plan_of(project)
    assert [(t.job.scene, str(t.action)) for t in plan.takes] == [
        ("stairs", "submit"),
        ("sea", "reuse"),
    ]
    assert [(e.element.name, e.state) for e in plan.elements] == [("keeper", "changed")]
    render(project, emulator)
    after = emulator.stats()
    assert after["total_creates"] == made["total_creates"] + 1
    assert after["element_creates"] == made["element_creates"] + 1


def test_compile_lists_the_sound_calls_and_counts_them_in_the_total(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from compiler.cli import main

    _sounded(project, music=False)
    monkeypatch.chdir(project)
    assert main(["compile", "film.yaml"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["voice", "mira", "0.05", "units", "$0.01"] in lines
    assert ["narration", "opening", "0.05", "units", "$0.01"] in lines
    assert ["sfx", "coda", "3", "s", "0.25", "units", "$0.04"] in lines
    assert lines[-1] == ["total", "7.00", "units", "$0.98"]  # 6.60 of clips, 0.40 of sound


def test_a_narration_longer_than_its_scene_is_said(project: Path) -> None:
    text = _sounded(project, music=False).replace(
        "I climbed every night.",
        "I climbed every night, the whole way up, one hundred and twelve iron steps, "
        "with the oil can in one hand and the lantern in the other.",
    )
    (project / "film.yaml").write_text(text, encoding="utf-8")
    outcome = render(project, make_emulator(FakeTime()))
    assert outcome.film is not None
    # 27 words at 2.5 a second (the emulator's speech) is 10.8 s; the scene lasts 4 s.
    assert outcome.notes == [
        "the narration of climb lasts 10.8 s and its scene 4 s: it runs on under what "
        "follows (shorten the line, raise the voice's speed, or lengthen the scene)"
    ]


def test_music_gain_sets_the_music_against_the_narration(tmp_path: Path) -> None:
    from compiler.emulator.audio import RATE as TONE_RATE
    from compiler.emulator.audio import voice_period
    from tests.test_mix import decode, level

    narrator_hz = TONE_RATE / voice_period("oversea_male1")
    balance = {}
    for gain in (0, -12):
        project = tmp_path / f"gain{gain}"
        project.mkdir()
        write_image(project / "coast.png")
        text = _sounded(project).replace(
            "  loudness: -16\n", f"  loudness: -16\n  music_gain: {gain}\n"
        )
        (project / "film.yaml").write_text(text, encoding="utf-8")
        outcome = render(project, make_emulator(FakeTime()))
        assert outcome.film is not None and outcome.failed == []
        sound = decode(outcome.film)
        music = level(sound, 277.2, (5.3, 6.7))  # a note of the chord, between narrations
        speech = level(sound, narrator_hz, (0.5, 2.0))  # the opening line
        balance[gain] = music - speech
    assert balance[0] - balance[-12] == pytest.approx(12.0, abs=1.0)


def test_push_and_pull_carry_the_narration_and_effects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from compiler.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        write_image(folder / "coast.png")
        _sounded(folder, music=False)
    render(a, make_emulator(FakeTime()))
    url = (tmp_path / "cache").as_uri()
    monkeypatch.chdir(a)
    assert main(["push", "film.yaml", "--cache", url]) == 0
    # Three clips, two narrations and an effect: what the lockfile says was paid for.
    assert capsys.readouterr().out.startswith("film.yaml: pushed 6 file(s), ")
    shutil.copy(a / "film.lock", b / "film.lock")
    monkeypatch.chdir(b)
    assert main(["pull", "film.yaml", "--cache", url]) == 0
    assert "pulled 6 file(s)" in capsys.readouterr().out
    fresh = make_emulator(FakeTime())
    outcome = render(b, fresh)
    assert outcome.failed == [] and outcome.film is not None
    stats = fresh.stats()
    assert (stats["tts_calls"], stats["sfx_calls"], stats["total_creates"]) == (0, 0, 0)


def test_an_undone_narration_edit_is_downloaded_again_not_paid_again(project: Path) -> None:
    text = _sounded(project, music=False)
    emulator = make_emulator(FakeTime())
    render(project, emulator, kling=True)  # this emulator standing in for Kling
    edited = text.replace("I climbed every night.", "I climbed every single night.")
    (project / "film.yaml").write_text(edited, encoding="utf-8")
    render(project, emulator, kling=True)
    calls = emulator.stats()["tts_calls"]
    (project / "film.yaml").write_text(text, encoding="utf-8")  # the edit undone
    [row] = [s for s in plan_of(project, "kling").sounds if s.job.label == "narration climb"]
    assert (str(row.action), row.paid, row.reasons) == (
        "download",
        False,
        ("audio not on disk: downloaded again, free", "as made before the last edit"),
    )
    outcome = render(project, emulator, kling=True)
    assert outcome.failed == [] and outcome.film is not None
    assert emulator.stats()["tts_calls"] == calls  # taken back, not said again
    lock = lock_of(project)
    assert lock.speech["climb"].digest == row.digest
    assert lock.speech["climb"].intact(project / "renders" / "film") is not None
    [replaced] = lock.sound_history["speech"]["climb"]  # the edited line's record
    assert replaced.digest != row.digest


def test_downloads_a_killed_run_cut_short_are_removed_from_every_folder(project: Path) -> None:
    _sounded(project, music=False)
    folder = project / "renders" / "film"
    stale = [folder / sub / f".x.{sub}.1a2b3c.part" for sub in ("", "audio", "images", "stills")]
    for part in stale:
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"half a file")
    outcome = render(project, make_emulator(FakeTime()))
    assert outcome.failed == [] and outcome.film is not None
    assert [p for p in stale if p.exists()] == []


def test_a_local_sample_compiles_with_an_s3_cache_given_by_flag_or_environment(
    project: Path,
    s3: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from compiler.cli import main

    _music(project / "mira.wav", seconds=6.0)
    text = _sounded(project, music=False).replace(
        '{sample: {url: "https://samples.example/mira.wav"}, language: en}',
        "{sample: mira.wav, language: en}",
    )
    (project / "film.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(project)
    monkeypatch.delenv("STORYBOARD_CACHE", raising=False)
    assert main(["plan", "film.yaml"]) == 1
    assert "error[voice-sample-local]" in capsys.readouterr().err
    assert main(["plan", "film.yaml", "--cache", s3]) == 0
    assert "voice mira" in capsys.readouterr().out
    monkeypatch.setenv("STORYBOARD_CACHE", s3)
    assert main(["validate", "film.yaml"]) == 0


def test_voices_lists_the_presets_beside_the_languages_storyboard_knows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from compiler.cli import main

    monkeypatch.delenv("KLING_API_KEY", raising=False)
    assert main(["voices"]) == 0  # the built-in emulator's list
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["voice", "id", "name", "languages", "trial"]
    assert lines[1].split() == ["oversea_male1", "Anchor", "en"]
    assert ["genshin_vindi2", "Sunny", "zh"] in [line.split() for line in lines]
    assert lines[-1] == "12 preset voice(s) on emulator; storyboard knows 12"


def test_narration_is_captioned_from_its_scenes_start_for_as_long_as_it_speaks(
    project: Path,
) -> None:
    _sounded(project, music=False)
    outcome = render(project, make_emulator(FakeTime()))
    assert outcome.captions is not None
    # The emulator speaks 2.5 words a second: 6 words are 2.4 s, 4 words 1.6 s (climb
    # starts at 3 s). The coda's quoted line is not there: its prompt quotes none.
    assert outcome.captions.read_text("utf-8") == (
        "1\n00:00:00,000 --> 00:00:02,400\nThe lamp was dark a year.\n\n"
        "2\n00:00:03,000 --> 00:00:04,600\nI climbed every night.\n"
    )


def test_force_makes_a_scenes_sound_again_with_its_clip(project: Path) -> None:
    _sounded(project, music=False)
    emulator = make_emulator(FakeTime())
    render(project, emulator)
    before = emulator.stats()
    plan = plan_of(project, force=["coda"], only=["coda"])
    assert [(s.job.label, str(s.action), s.state) for s in plan.sounds] == [
        ("sfx coda", "submit", "forced")
    ]
    outcome = render(project, emulator, force=["coda"], only=["coda"])
    assert outcome.failed == [] and outcome.film is not None
    after = emulator.stats()
    assert after["sfx_calls"] == before["sfx_calls"] + 1
    assert after["total_creates"] == before["total_creates"] + 1
    assert after["tts_calls"] == before["tts_calls"]  # the other scenes' narration: kept
