"""Loader limits that a case file on disk cannot show cheaply."""

from __future__ import annotations

import tempfile
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
