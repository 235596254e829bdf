"""The film a render assembles: how it was joined and what render says about it, the files
beside it (timeline, captions), and captions from the dialogue the prompts quote."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from compiler.captions import Caption, dialogue, srt
from compiler.cli import main
from compiler.media import FILM_CRF, probe
from tests.rendering import BOARD, FakeTime, make_emulator, render, write_image

# The coda speaks: two quoted lines in its first shot, one in its second.
TALKING = BOARD.replace(
    '    prompt: "The beam sweeps the sea."\n    duration: 3\n',
    """\
    shots:
      - prompt: 'The keeper says "Hold the light." and then “Steady now.”'
        duration: 2
      - prompt: 'A boy shouts "Ships ahead!" from the rocks.'
        duration: 1
""",
)


def test_render_joins_clips_of_one_format_without_re_encoding(project: Path) -> None:
    outcome = render(project, make_emulator(FakeTime()))

    assert outcome.film_note == "film assembled: 10.00 s"
    assert outcome.film_detail == "packets copied: nothing re-encoded"
    assert outcome.timeline == project / "renders" / "film.otio"
    assert outcome.captions is None and not (project / "renders" / "film.srt").exists()

    again = render(project, make_emulator(FakeTime()))
    assert (again.film_note, again.film_detail) == ("film unchanged", "")


def test_a_clip_of_another_shape_is_re_encoded_and_render_names_it(project: Path) -> None:
    # The opening starts from a portrait image, which sets its clip's shape (R14).
    write_image(project / "coast.png", (360, 640))
    outcome = render(project, make_emulator(FakeTime()))

    assert outcome.film_note == "film assembled: 10.00 s"
    assert outcome.film_detail == (
        f"re-encoded (x264 CRF {FILM_CRF}): opening.mp4 is 90x160, the others 160x90"
    )
    assert outcome.film is not None and probe(outcome.film).width == 160


def test_render_prints_how_the_film_was_joined_and_what_it_wrote(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project)
    for name in ("KLING_API_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    (project / "film.yaml").write_text(TALKING, encoding="utf-8")

    assert main(["render", "film.yaml"]) == 0

    lines = capsys.readouterr().out.splitlines()
    at = lines.index("film.yaml: film assembled: 10.00 s -> renders/film.mp4")
    assert lines[at + 1 :] == [
        "film.yaml: packets copied: nothing re-encoded",
        "film.yaml: timeline renders/film.otio",
        "film.yaml: captions renders/film.srt",
        "film.yaml: contact sheet renders/film/index.html",
    ]


def test_captions_time_each_quoted_line_to_its_shot(project: Path) -> None:
    (project / "film.yaml").write_text(TALKING, encoding="utf-8")
    outcome = render(project, make_emulator(FakeTime()))

    assert outcome.captions == project / "renders" / "film.srt"
    # The coda starts at 7 s: shot 1 runs 7-9 s, its two lines sharing it by length
    # (15 and 11 characters); shot 2 runs 9-10 s.
    assert outcome.captions.read_text(encoding="utf-8") == (
        "1\n00:00:07,000 --> 00:00:08,154\nHold the light.\n\n"
        "2\n00:00:08,154 --> 00:00:09,000\nSteady now.\n\n"
        "3\n00:00:09,000 --> 00:00:10,000\nShips ahead!\n"
    )

    # Without dialogue the next render removes the captions it wrote.
    (project / "film.yaml").write_text(
        TALKING.replace(
            "'The keeper says \"Hold the light.\" and then “Steady now.”'", "Quiet."
        ).replace('"Ships ahead!"', "ships"),
        encoding="utf-8",
    )
    outcome = render(project, make_emulator(FakeTime()))
    assert outcome.captions is None and not (project / "renders" / "film.srt").exists()


def test_silent_scenes_have_no_captions(project: Path) -> None:
    # The climb quotes a line, but has no sound: nobody says it.
    quoting = BOARD.replace('"He lights the lamp."', "'He says \"Light!\"'")
    (project / "film.yaml").write_text(quoting, encoding="utf-8")
    outcome = render(project, make_emulator(FakeTime()))

    assert outcome.captions is None


def test_an_unchanged_film_still_gets_its_timeline_and_captions(project: Path) -> None:
    (project / "film.yaml").write_text(TALKING, encoding="utf-8")
    render(project, make_emulator(FakeTime()))
    for name in ("film.otio", "film.srt"):
        (project / "renders" / name).unlink()

    outcome = render(project, make_emulator(FakeTime()))

    assert outcome.film_note == "film unchanged"
    assert (project / "renders" / "film.otio").is_file()
    assert (project / "renders" / "film.srt").is_file()


@pytest.mark.parametrize(
    ("prompt", "lines"),
    [
        ('He says "Hold on." She nods.', ["Hold on."]),
        ("“Ships ahead,” he whispers, “to the north.”", ["Ships ahead,", "to the north."]),
        ('Close-up of <<<image_1>>>: "Look   at\nthis <<<element_2>>>."', ["Look at this ."]),
        ('An empty "" quote and an "unclosed one', []),
        ("The keeper's lamp, no dialogue.", []),
    ],
)
def test_dialogue_is_what_the_prompt_quotes(prompt: str, lines: list[str]) -> None:
    assert dialogue(prompt) == lines


def test_srt_numbers_cues_and_wraps_long_lines() -> None:
    long = "Every lamp on this coast was lit by my father, and his father before him."
    text = srt(
        [
            Caption(Fraction(0), Fraction(3, 2), "Hold on."),
            Caption(Fraction(3725, 1), Fraction(37255, 10), long),
        ]
    )

    assert text == (
        "1\n00:00:00,000 --> 00:00:01,500\nHold on.\n\n"
        "2\n01:02:05,000 --> 01:02:05,500\n"
        "Every lamp on this coast was lit by my\nfather, and his father before him.\n"
    )
