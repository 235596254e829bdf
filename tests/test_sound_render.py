"""What render does with a storyboard's sound today (issue 14, in progress): an element's
preset voice is sent with the element; what is not yet made is said on every render,
never dropped in silence."""

from __future__ import annotations

from pathlib import Path

from compiler.execute import Executor
from compiler.lockfile import Lockfile
from compiler.pipeline import compile_file
from tests.rendering import BOARD, FakeTime, make_emulator, render, write_image

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
    body = executor._element_body(element, "sb-el-keeper-x")  # noqa: SLF001
    assert body["element_voice_id"] == "oversea_male1"


def test_render_says_which_sound_it_does_not_make_yet(project: Path) -> None:
    text = BOARD.replace(
        "scenes:\n",
        "voices:\n  narrator: {preset: oversea_male1, language: en}\nnarrator: narrator\nscenes:\n",
    ).replace(
        '    prompt: "The beam sweeps the sea."',
        '    narration: "And the light came back."\n    sfx: "waves on rocks"\n'
        '    prompt: "The beam sweeps the sea."',
    )
    (project / "film.yaml").write_text(text, encoding="utf-8")
    outcome = render(project, make_emulator(FakeTime()))
    assert outcome.film is not None
    assert outcome.notes == [
        "narration (coda) and sound effects (coda): checked and priced, but not yet made "
        "or mixed into the film by this version of storyboard"
    ]


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
    assert outcome.film_detail.startswith("packets copied: nothing re-encoded; sound mixed ")
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
