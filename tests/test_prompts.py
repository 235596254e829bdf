"""Prompt rendering: reference numbering, and the Jinja-free fast path matching Jinja."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import prompts
from compiler.pipeline import compile_file

BOARD = """\
storyboard: 1
vars:
  keeper: the keeper
  count: 3
refs:
  images:
    a: {url: "https://example.com/a.png"}
    b: {url: "https://example.com/b.png"}
    c: {url: "https://example.com/c.png"}
  elements:
    hero: 11
    dog: 22
scenes:
  - id: s
    first_frame: c
    prompt: "PROMPT"
    duration: 5
"""


def compile_prompt(tmp_path: Path, prompt: str) -> dict[str, object]:
    board = tmp_path / "b.yaml"
    board.write_text(BOARD.replace("PROMPT", prompt), encoding="utf-8")
    result = compile_file(board)
    assert result.ok, [d.headline() for d in result.diagnostics]
    return result.tasks[0].payload


def test_numbering_follows_first_mention_with_frames_first(tmp_path: Path) -> None:
    payload = compile_prompt(
        tmp_path,
        "{{ image.b }} then {{ element.dog }}, {{ image.a }}, {{ image.b }}, {{ image.c }}",
    )
    assert payload["prompt"] == (
        "<<<image_2>>> then <<<element_1>>>, <<<image_3>>>, <<<image_2>>>, <<<image_1>>>"
    )
    assert payload["image_list"] == [
        {"image_url": "https://example.com/c.png", "type": "first_frame"},
        {"image_url": "https://example.com/b.png"},
        {"image_url": "https://example.com/a.png"},
    ]
    assert payload["element_list"] == [{"element_id": 22}]


def test_full_jinja_is_available_in_the_sandbox(tmp_path: Path) -> None:
    payload = compile_prompt(
        tmp_path,
        "{% if count > 2 %}{{ keeper | upper }}{% endif %} sees {{ image['a'] }} x{{ count * 2 }}",
    )
    assert payload["prompt"] == "THE KEEPER sees <<<image_2>>> x6"


names = st.sampled_from(["keeper", "count", "image.a", "image.b", "element.hero", "element.dog"])
text = st.text(alphabet="abc ,.:!-'\n", max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(text, names, st.sampled_from(["", " "])), min_size=1, max_size=6))
def test_fast_path_renders_exactly_like_jinja(parts: list[tuple[str, str, str]]) -> None:
    template = "".join(f"{before}{{{{{pad}{name}{pad}}}}}" for before, name, pad in parts)
    variables = {"keeper": "the keeper", "count": 3}
    outputs = []
    for use_fast_path in (True, False):
        board_stub = _Board()
        mentions = prompts._Mentions(board_stub, _SCENE)  # type: ignore[arg-type]
        if use_fast_path:
            rendered = prompts._render_simple(template, variables, mentions)
            assert rendered is not None
        else:
            context = {**variables, **mentions.namespaces}
            rendered = prompts._ENV.from_string(template).render(context)
        outputs.append((rendered.strip(), mentions.slots["image"], mentions.slots["element"]))
    assert outputs[0] == outputs[1]


class _Refs:
    images = {"a": object(), "b": object()}
    elements = {"hero": object(), "dog": object()}
    videos: dict[str, object] = {}
    broken: frozenset[tuple[str, str]] = frozenset()

    def table(self, kind: str) -> dict[str, object]:
        return {"image": self.images, "element": self.elements, "video": self.videos}[kind]


class _Board:
    refs = _Refs()


class _Scene:
    path = ("scenes", 0)
    video = None


_SCENE = _Scene()
