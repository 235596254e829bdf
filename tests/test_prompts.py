"""Prompt rendering: reference numbering, and the Jinja-free fast path matching Jinja."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
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
        mentions = prompts._Mentions(board_stub, _SCENE, "0123456789ab")  # type: ignore[arg-type]
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
    broken_kinds: frozenset[str] = frozenset()

    def table(self, kind: str) -> dict[str, object]:
        return {"image": self.images, "element": self.elements, "video": self.videos}[kind]


class _Board:
    refs = _Refs()


class _Scene:
    path = ("scenes", 0)
    video = None


_SCENE = _Scene()


# -- misbehaving templates: a diagnostic at the offending text, never an exception --------

NASTY = {
    "{{ keeper | uper }}": "template-filter",
    "{% if keeper is nosuchtest %}x{% endif %}": "template-test",
    "{{ keeper.__class__ }}": "template-unsafe",
    "{{ ''.__class__.__mro__ }}": "template-unsafe",
    "{{ keeper.upper }}": "template-unsafe",
    "{{ {'a': 1}.items() }}": "template-unsafe",
    "{% for i in range(2) %}{{ loop.cycle }}{% endfor %}": "template-unsafe",
    "{{ [1, 2] | map('upper') | list | string ~ range }}": "template-unsafe",
    "{{ self }}": "template-unsafe",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}": "template-limit",
    "{% for i in range(999) %}{% for j in range(999) %}{% endfor %}{% endfor %}": "template-limit",
    "{{ [0] * 10**9 }}": "template-limit",
    "{{ 'x' | center(10**9) }}": "template-limit",
    "{{ 'ab' | replace('a', 'a' * 90000) | replace('a', 'a' * 90000) }}": "template-limit",
    "{{ ('x' * 1000) | wordwrap(1, wrapstring='y' * 1000) }}": "template-limit",
    "{{ 10 ** 10 ** 10 ** 10 ** 10 }}": "template-limit",
    "{{ '%999999999d' % 1 }}": "template-limit",
    "{{ '%*d' | format(999999999, 1) }}": "template-unsafe",
    "{{ lipsum }}": "undefined-var",
    "{{ namespace }}": "undefined-var",
    "{{ [1, 2, 3] | random }}": "template-filter",
    "{{ '<<<' ~ 'image_9>>>' }}": "ref-token-assembled",
    "{{ image.a | upper }}": "ref-token-mangled",
    "{{ image.a[:5] }}": "ref-token-mangled",
    "{{ image.a | length }}": "ref-token-lost",
    "{% include 'x' %}": "template-unsafe",
    "{{ (" * 300 + "1" + ")" * 300 + " }}": "template-limit",
    "{% for a in [1] %}" * 25 + "{% endfor %}" * 25: "template-limit",
    "{{ 1 / 0 }}": "template-error",
    "{{ keeper() }}": "template-unsafe",
    "{{ x }": "template-syntax",
}


def _diagnose(tmp_path: Path, prompt: str) -> list[str]:
    board = tmp_path / "b.yaml"
    board.write_text(BOARD.replace('"PROMPT"', json.dumps(prompt)), encoding="utf-8")
    result = compile_file(board, "b.yaml")
    assert not result.ok
    return [d.headline() for d in result.diagnostics if d.is_error]


@pytest.mark.parametrize("prompt", sorted(NASTY), ids=lambda p: p[:40])
def test_a_misbehaving_template_is_one_diagnostic_inside_the_prompt(
    tmp_path: Path, prompt: str
) -> None:
    started = time.perf_counter()
    headlines = _diagnose(tmp_path, prompt)
    assert time.perf_counter() - started < 5
    assert [h.split("error[")[1].split("]")[0] for h in headlines] == [NASTY[prompt]], headlines
    line, col = (int(n) for n in headlines[0].split(":")[1:3])
    assert line == 16 and col >= 14  # inside the prompt's quotes, not at the key


def test_no_python_object_reaches_a_prompt(tmp_path: Path) -> None:
    for prompt in ("{{ range }}", "{{ [range] }}", "{{ range ~ '' }}", "{{ '%s' % range }}"):
        headlines = _diagnose(tmp_path, prompt)
        assert all("0x" not in h for h in headlines)
        assert "template-unsafe" in headlines[0]


def test_the_steps_of_a_whole_file_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = "{% for i in range(900) %}{% endfor %}x"
    scenes = "".join(f'  - id: s{i}\n    prompt: "{loop}"\n    duration: 5\n' for i in range(8))
    board = tmp_path / "b.yaml"
    board.write_text(f"storyboard: 1\nscenes:\n{scenes}", encoding="utf-8")
    budget = prompts.TemplateBudget(remaining=3000)
    from compiler import pipeline

    monkeypatch.setattr(pipeline, "TemplateBudget", lambda: budget)
    result = compile_file(board, "b.yaml")
    messages = [d.message for d in result.diagnostics]
    assert any("altogether" in m for m in messages), messages


def test_two_compiles_of_a_template_heavy_board_are_byte_identical(tmp_path: Path) -> None:
    prompt = (
        "{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{{ i }} {% endfor %}"
        "{{ [3, 1, 2] | sort | join(',') }} {{ {'b': 1, 'a': 2} | dictsort | string }}"
        " {{ ('x', 'y') | unique | list }} {{ 0.1 + 0.2 }} {{ image.a }}"
    )
    outputs = {json.dumps(compile_prompt(tmp_path, prompt), sort_keys=True) for _ in range(3)}
    assert len(outputs) == 1
    assert "<<<image_2>>>" in outputs.pop()
