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
