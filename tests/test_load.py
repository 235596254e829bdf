"""Loader limits that a case file on disk cannot show cheaply."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import load as load_module
from compiler.load import load
from compiler.pipeline import compile_file


def test_file_over_the_size_limit_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load_module, "MAX_FILE_BYTES", 64)
    board = tmp_path / "big.yaml"
    board.write_text("storyboard: 1\n" + "# padding\n" * 10, encoding="utf-8")
    doc, problems = load(board, "big.yaml")
    assert doc.data is None
    assert [d.headline() for d in problems] == [
        "big.yaml:1:1: error[yaml-size]: file is 114 bytes; the limit is 64"
    ]
    assert problems[0].hint == "split the storyboard into several files"


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["on", "off", "16:9", "pro", "4k", "base", "{{ image.a }}", "<<<image_1>>>"]),
)
_KEYS = st.sampled_from(
    [
        "storyboard",
        "scenes",
        "id",
        "prompt",
        "duration",
        "shots",
        "refs",
        "images",
        "vars",
        "mode",
        "sound",
        "video",
        "first_frame",
        "takes",
        "selected",
        "enabled",
        "after",
        "x",
    ]
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=25,
)


def _compile_text(text: str) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        board = Path(folder) / "fuzz.yaml"
        board.write_text(text, encoding="utf-8")
        result = compile_file(board, "fuzz.yaml")
    return [d.headline() for d in result.diagnostics]


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_diagnostics_never_an_exception(text: str) -> None:
    for headline in _compile_text(text):
        assert headline.startswith("fuzz.yaml:")


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_any_yaml_structure_gives_diagnostics_never_an_exception(data: dict[str, object]) -> None:
    text = yaml.safe_dump({"storyboard": 1, **data}, allow_unicode=True)
    for headline in _compile_text(text):
        assert headline.startswith("fuzz.yaml:")


# -- positions inside text values: every scalar style ---------------------------------

STYLES = """\
a: plain X text
  more X here
b: 'single ''X'' quoted
   X next line'
c: "double \\t esc \\x41X \\u263aX \\
   X joined
   X folded"
d: |
  literal X
    more-indented X

  after blank X
e: >-
  folded X
  line two X

  para X
f: |2+
    indented by X
  X

g: >4-  # comment
      deep X
     less X
h: [ "flow X", plain X
     continues X ]
i: |-
    X at the start
j: >+
  X

  X

k: "\\
  X after an escaped break"
"""


def _x_positions(doc: load_module.SourceDoc) -> list[tuple[object, int, str]]:
    lines = doc.text.splitlines()
    found = []
    for path in doc.spans:
        value = doc._value_at(path)
        for offset, char in enumerate(value):
            if char == "X":
                loc = doc.loc_in(path, offset)
                found.append((path, offset, lines[loc.line - 1][loc.col - 1]))
    return found


def test_a_position_inside_a_value_is_exact_in_every_scalar_style(tmp_path: Path) -> None:
    board = tmp_path / "styles.yaml"
    board.write_text(STYLES, encoding="utf-8")
    doc, problems = load(board, "styles.yaml")
    assert problems == []
    found = _x_positions(doc)
    assert len(found) == 25
    assert [(path, offset) for path, offset, char in found if char != "X"] == []


_TEXT = st.text(alphabet=st.sampled_from(list("ab X{}%'\"\\:#-\n\t")), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(_TEXT, st.sampled_from([None, "", "'", '"', "|", ">"]), st.integers(0, 6))
def test_any_text_in_any_style_maps_back_to_itself(
    text: str, style: str | None, indent: int
) -> None:
    dumped = yaml.safe_dump(
        {"scenes": [{"prompt": text}]}, default_style=style, indent=max(2, indent), width=20
    )
    with tempfile.TemporaryDirectory() as folder:
        board = Path(folder) / "b.yaml"
        board.write_text(dumped, encoding="utf-8")
        doc, problems = load(board, "b.yaml")
    if problems or not isinstance(doc.data, dict):
        return  # PyYAML wrote something our core schema reads differently
    path = ("scenes", 0, "prompt")
    value = doc._value_at(path)
    if value != text:
        return
    lines = doc.text.splitlines()
    for offset, char in enumerate(value):
        if char not in "abX{}%:#-":
            continue  # whitespace and escapes have no single place
        loc = doc.loc_in(path, offset)
        assert lines[loc.line - 1][loc.col - 1] == char, (dumped, offset)


def test_a_storyboard_over_the_scene_limit_is_checked_up_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compiler import resolve

    monkeypatch.setattr(resolve, "MAX_SCENES", 3)
    scenes = "".join(
        f'  - id: s{i}\n    prompt: "Shot {i}."\n    duration: {5 if i < 3 else 99}\n'
        for i in range(5)
    )
    board = tmp_path / "b.yaml"
    board.write_text(f"storyboard: 1\nscenes:\n{scenes}", encoding="utf-8")
    result = compile_file(board, "b.yaml")
    assert [d.headline() for d in result.diagnostics] == [
        "b.yaml:12:5: error[too-many-scenes]: a storyboard holds at most 3 scenes; this one "
        "has 5, and those from here on are not checked"
    ]


def test_the_worst_file_within_the_limits_compiles_in_seconds(tmp_path: Path) -> None:
    # Every prompt a distinct template that must be compiled: the costliest input per byte.
    # 300 of the 1,000 scenes allowed; the whole takes about three times as long.
    text = "storyboard: 1\nvars:\n  keeper: the keeper\nscenes:\n"
    for i in range(300):
        text += f"  - id: s{i}\n    shots:\n"
        for j in range(6):
            text += (
                f'      - prompt: "{{{{ keeper }}}} climbs {i}.{j}, {{% if true %}}slowly'
                '{% endif %} to the lamp room at the top"\n        duration: 2\n'
            )
    assert len(text.encode()) < load_module.MAX_FILE_BYTES
    board = tmp_path / "b.yaml"
    board.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    result = compile_file(board, "b.yaml")
    assert time.perf_counter() - started < 8
    assert {d.code for d in result.diagnostics} == {"duration-range"} or result.ok


def test_positions_count_lines_as_editors_do(tmp_path: Path) -> None:
    # YAML counts NEL, LS and PS as line breaks; editors do not, and positions are for
    # the editor: the error below is on the file's 5th line however YAML counts.
    board = tmp_path / "b.yaml"
    board.write_text(
        "storyboard: 1\ntitle: 'The\x85Light\u2028house'\nscenes:\n  - id: a\n"
        '    prompt: "{{ nope }}"\n    duration: 5\n',
        encoding="utf-8",
    )
    result = compile_file(board, "b.yaml")
    assert [d.headline() for d in result.diagnostics] == [
        "b.yaml:5:17: error[undefined-var]: 'nope' is undefined"
    ]
