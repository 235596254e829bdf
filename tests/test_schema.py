"""The JSON Schema itself: valid draft 2020-12, with an $id and help on every key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator

from compiler.validate import schema, schema_path


def _properties(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{path}.{name}", sub
        for key, value in node.items():
            yield from _properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _properties(item, f"{path}[{i}]")


def test_schema_is_valid_draft_2020_12() -> None:
    doc = json.loads(schema_path().read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].startswith("https://")


def test_every_key_has_a_description() -> None:
    missing = [path for path, sub in _properties(schema()) if not sub.get("description")]
    assert missing == []


def test_example_storyboards_validate_against_the_schema_alone() -> None:
    from pathlib import Path

    from compiler.load import load

    root = Path(__file__).resolve().parent.parent
    for board in sorted((root / "storyboards").glob("*.yaml")):
        doc, problems = load(board)
        assert problems == []
        assert list(Draft202012Validator(schema()).iter_errors(doc.data)) == []
