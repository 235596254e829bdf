"""Loader limits that a case file on disk cannot show cheaply."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler import load as load_module
from compiler.load import load


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
