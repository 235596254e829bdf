"""Issue 14's acceptance, end to end: `storyboard render` against `storyboard emulator` as
a server, with two voices (a preset and a custom one), narration on three scenes, one
sound effect and music. The film is measured by meters the mix does not use (pyloudnorm
for loudness, scipy's oversampling for true peak, a single-bin DFT for the music's level)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import opentimelineio as otio
import pytest

from compiler.emulator.audio import RATE as TONE_RATE
from compiler.emulator.audio import voice_period
from tests.test_crash import KEY, Server, emulator_server, server  # noqa: F401 (a fixture)
from tests.test_mix import FRAME, decode, integrated, level, onset, true_peak, write_wav

MUSIC_HZ = 150.0  # below every voice's tone (210-525 Hz): its level can be read apart
BOARD = """\
storyboard: 1
title: The Keeper
mode: std
aspect_ratio: "16:9"
voices:
  narrator: {preset: oversea_male1, language: en}
  mira: {sample: {url: "https://samples.example/mira.wav"}, language: en}
narrator: narrator
soundtrack:
  music: score.wav
  loudness: -16
scenes:
  - id: dark
    narration: "The lamp was dark."
    prompt: "A lighthouse at dusk, its lamp unlit."
    duration: 3
  - id: stairs
    narrator: mira
    narration: "I climbed the stairs."
    prompt: "A woman climbs a spiral staircase."
    duration: 3
  - id: light
    narration: "The light came back."
    prompt: "The lamp flares into light."
    duration: 3
  - id: sea
    sfx: "waves breaking on rocks"
    prompt: "The beam sweeps a stormy sea."
    duration: 3
"""


def _project(root: Path) -> Path:
    """The storyboard above, and 4 s of a 150 Hz tone as its score."""
    project = root / "film"
    project.mkdir()
    t = np.arange(int(4.0 * 48_000)) / 48_000
    write_wav(project / "score.wav", 0.3 * np.sin(2 * np.pi * MUSIC_HZ * t), 48_000)
    (project / "film.yaml").write_text(BOARD, encoding="utf-8")
    return project


def _render(project: Path, server: Server, command: str = "render") -> str:  # noqa: F811
    env = {**os.environ, "KLING_API_KEY": KEY, "KLING_BASE_URL": server.url}
    args = [sys.executable, "-m", "compiler", command, "film.yaml", "--backend", "kling"]
    if command == "render":
        args += ["--yes", "--poll-interval", "0.2"]
    done = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _calls(server: Server) -> tuple[int, int, int, int]:  # noqa: F811
    stats = server.get("/_emulator/stats")
    return stats["tts_calls"], stats["sfx_calls"], stats["voice_creates"], stats["total_creates"]


def _hz(voice_id: str) -> float:
    return TONE_RATE / voice_period(voice_id)


def test_a_film_with_voices_narration_an_effect_and_music(
    tmp_path: Path,
    server: Server,  # noqa: F811 (the fixture)
) -> None:
    project = _project(tmp_path)

    plan = _render(project, server, "plan")
    assert "narration stairs †" in plan  # TTS: the one call that could be paid twice
    out = _render(project, server)
    assert _calls(server) == (3, 1, 1, 4)
    assert "sound mixed (3 narration(s), 1 effect(s), music under the film, -16.0 LUFS" in out

    film = project / "renders" / "film.mp4"
    sound = decode(film)
    assert integrated(sound) == pytest.approx(-16.0, abs=1.0)
    assert true_peak(sound) <= -1.0
    lock: dict[str, Any] = json.loads((project / "film.lock").read_text("utf-8"))
    mira = lock["voices"]["mira"]["voice_id"]
    # Each narration starts at its scene (3 s each), within one frame; each is looked for
    # after the one before has ended (1.6 s of tone: 4 words), whatever the two pitches.
    assert onset(sound, _hz("oversea_male1")) == pytest.approx(0.0, abs=FRAME)
    assert onset(sound, _hz(mira), after=2.0) == pytest.approx(3.0, abs=FRAME)
    assert onset(sound, _hz("oversea_male1"), after=4.7) == pytest.approx(6.0, abs=FRAME)
    # The music, ducked under narration (6.3-7.5 s) and alone (8.3-8.9 s).
    under = level(sound, MUSIC_HZ, (6.3, 7.5))
    alone = level(sound, MUSIC_HZ, (8.3, 8.9))
    assert alone - under >= 10.0

    # The editor gets narration, effects and music as tracks of their own.
    timeline = otio.adapters.read_from_file(str(project / "renders" / "film.otio"))
    tracks = {track.name: track for track in timeline.tracks}
    narration = [c.name for c in tracks["Narration"].find_clips()]
    assert len(narration) == 3 and len(list(tracks["Effects"].find_clips())) == 1
    assert len(list(tracks["Music"].find_clips())) == 3  # 12 s of a 4 s score

    # No change: no call of any kind.
    again = _render(project, server)
    assert _calls(server) == (3, 1, 1, 4)
    assert "film unchanged" in again

    # One line edited: exactly one TTS call, no video task, and the line in the film.
    board = project / "film.yaml"
    board.write_text(
        board.read_text("utf-8").replace("I climbed the stairs.", "I climbed all the stairs."),
        "utf-8",
    )
    _render(project, server)
    assert _calls(server) == (4, 1, 1, 4)
    sound = decode(film)
    assert onset(sound, _hz(mira), after=2.0) == pytest.approx(3.0, abs=FRAME)
    assert integrated(sound) == pytest.approx(-16.0, abs=1.0)


@pytest.fixture
def slow_effects(tmp_path: Path) -> Iterator[Server]:
    """`storyboard emulator` whose sound effects take 3 s (clips 1 s, TTS at once)."""
    flags = ("--latency", "1", "--sfx-latency", "3", "--clip-max-side", "160")
    with emulator_server(tmp_path, *flags) as running:
        yield running


def test_a_render_killed_while_an_effect_is_made_resumes_without_paying_twice(
    tmp_path: Path,
    slow_effects: Server,  # noqa: F811
) -> None:
    from tests.test_crash import _wait_for

    project = _project(tmp_path)
    env = {**os.environ, "KLING_API_KEY": KEY, "KLING_BASE_URL": slow_effects.url}
    args = [sys.executable, "-m", "compiler", "render", "film.yaml", "--backend", "kling"]
    args += ["--yes", "--poll-interval", "0.2"]
    first = subprocess.Popen(
        args, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def effect_in_flight() -> bool:
        lock = project / "film.lock"
        if not lock.exists():
            return False
        effects = json.loads(lock.read_text("utf-8")).get("effects", {})
        return effects.get("sea", {}).get("status") in ("submitted", "processing")

    _wait_for(effect_in_flight, "the effect's task to be running")
    first.kill()
    first.communicate()
    _render(project, slow_effects)
    tts, sfx, voices, clips = _calls(slow_effects)
    assert (sfx, voices) == (1, 1)  # the effect re-attached to, the voice not made again
    assert clips == 4 and tts in (3, 4)  # a TTS call the kill cut may be paid again (README)
    assert not [p for p in project.rglob("*") if p.name.endswith((".part", ".tmp"))]
    assert (project / "renders" / "film.mp4").is_file()
