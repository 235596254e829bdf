"""The element registry end to end: an element made from local images is created once,
reused by every render, and re-created only when its images change."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler.cli import main
from tests.rendering import FakeTime, lock_of, make_emulator, render, write_image

BOARD = """\
storyboard: 1
mode: std
refs:
  elements:
    keeper:
      images: [keeper-front.png, keeper-side.png]
      description: the keeper, an old man in a yellow raincoat
scenes:
  - id: stairs
    prompt: "{{ element.keeper }} climbs the spiral stairs."
    duration: 3
  - id: lamp
    prompt: "Close-up: {{ element.keeper }} lights the lamp."
    duration: 3
"""


@pytest.fixture
def keeper(project: Path) -> Path:
    write_image(project / "keeper-front.png", shade=40)
    write_image(project / "keeper-side.png", shade=160)
    (project / "film.yaml").write_text(BOARD, encoding="utf-8")
    return project


def test_an_element_is_created_once_across_renders(keeper: Path) -> None:
    emulator = make_emulator(FakeTime())
    for _ in range(3):
        outcome = render(keeper, emulator)
        assert outcome.film is not None
    stats = emulator.stats()
    assert stats["element_creates"] == 1
    assert stats["total_creates"] == 2
    element = lock_of(keeper).elements["keeper"]
    assert element.status == "succeed" and element.element_id is not None


def test_changing_an_image_recreates_the_element_and_its_scenes(keeper: Path) -> None:
    emulator = make_emulator(FakeTime())
    render(keeper, emulator)
    first_id = lock_of(keeper).elements["keeper"].element_id
    write_image(keeper / "keeper-side.png", shade=220)
    render(keeper, emulator)
    stats = emulator.stats()
    assert stats["element_creates"] == 2
    assert stats["total_creates"] == 4  # both scenes show the changed character
    assert lock_of(keeper).elements["keeper"].element_id != first_id
    render(keeper, emulator)
    assert emulator.stats()["element_creates"] == 2


def test_element_create_faults_do_not_create_twice(keeper: Path) -> None:
    emulator = make_emulator(FakeTime())
    emulator.faults.add("drop_after", "element")
    emulator.faults.add("http_500", "element")
    outcome = render(keeper, emulator)
    assert [r.outcome for r in outcome.results] == ["rendered", "rendered"]
    assert emulator.stats()["element_creates"] == 1


def test_the_same_image_twice_is_a_storyboard_error(
    keeper: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(keeper)
    text = BOARD.replace(
        "[keeper-front.png, keeper-side.png]", "[keeper-front.png, ./keeper-front.png]"
    )
    (keeper / "film.yaml").write_text(text, encoding="utf-8")
    assert main(["validate", "film.yaml"]) == 1
    out = capsys.readouterr().out
    assert (
        "film.yaml:6:34: error[element-images]: element 'keeper' lists the same image twice" in out
    )
