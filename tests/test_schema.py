"""The JSON Schema itself: valid draft 2020-12, with an $id and help on every key, for
`storyboard validate` (descriptions become hints) and for editors (yaml-language-server
and VS Code read titles, markdown, examples, enum help and snippets)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from compiler.pipeline import compile_file
from compiler.validate import schema, schema_path

SCENE_SETTINGS = ("model", "mode", "aspect_ratio", "sound", "vars")


def _values(node: dict[str, Any], path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema that describes a value a user writes: properties, the values of
    name → value mappings, list items and the alternatives of a oneOf."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _values(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _values(node["additionalProperties"], f"{path}.*")
    if isinstance(node.get("items"), dict):
        yield from _values(node["items"], f"{path}[]")
    for i, alternative in enumerate(node.get("oneOf", [])):
        yield from _values(alternative, f"{path}|{i}")


def test_schema_is_valid_draft_2020_12() -> None:
    doc = json.loads(schema_path().read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].startswith("https://")


def test_every_value_has_editor_help() -> None:
    # description: the hint of schema diagnostics; title + markdownDescription: editor hover.
    help_keys = ("title", "description", "markdownDescription")
    missing = [
        f"{path} {key}"
        for path, sub in _values(schema())
        for key in help_keys
        if not isinstance(sub.get(key), str) or not sub[key].strip()
    ]
    assert missing == []
    assert len(list(_values(schema()))) > 40


def test_every_enum_value_has_help() -> None:
    enums = [(path, sub) for path, sub in _values(schema()) if "enum" in sub]
    # (a switch's first alternative holds its enum: `sound|0`)
    assert {path.rsplit(".", 1)[-1].split("|")[0] for path, _ in enums} == {
        "model",
        "mode",
        "aspect_ratio",
        "sound",
        "refer_type",
        "shots",  # `auto`
        "resolution",  # of a generated image
        "language",  # of a voice
        "kind",  # of an element made from images
    }
    for path, sub in enums:
        for key in ("enumDescriptions", "markdownEnumDescriptions"):
            assert len(sub.get(key, [])) == len(sub["enum"]), f"{path} {key}"
            assert all(isinstance(text, str) and text for text in sub[key]), f"{path} {key}"


def test_examples_and_defaults_are_valid_values() -> None:
    checked = 0
    for path, sub in _values(schema()):
        validator = Draft202012Validator(sub)
        for example in sub.get("examples", []) + ([sub["default"]] if "default" in sub else []):
            assert validator.is_valid(example), f"{path}: {example!r}"
            checked += 1
    assert checked > 40


def test_markdown_yaml_examples_parse() -> None:
    blocks = [
        (path, block)
        for path, sub in _values(schema())
        for block in re.findall(r"```yaml\n(.*?)```", sub.get("markdownDescription", ""), re.S)
    ]
    assert len(blocks) > 20
    for path, block in blocks:
        try:
            yaml.safe_load(block)
        except yaml.YAMLError as exc:
            pytest.fail(f"{path}: the yaml example does not parse: {exc}")


def test_scene_settings_accept_the_same_values_as_the_top_level() -> None:
    top = schema()["properties"]
    scene = top["scenes"]["items"]["properties"]

    def without_markdown(node: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in node.items() if k != "markdownDescription"}

    for key in SCENE_SETTINGS:
        assert without_markdown(scene[key]) == without_markdown(top[key]), key


_PLACEHOLDER = re.compile(r"\$\{\d+:([^}]*)\}|\$\d+")


def _expand(value: Any) -> Any:
    """A snippet body as the user gets it after accepting every placeholder's default.

    yaml-language-server inserts a "^text" string as raw YAML text and any other string
    verbatim, unquoted; so both must read back as intended."""
    if isinstance(value, dict):
        return {
            _PLACEHOLDER.sub(lambda m: m.group(1) or "", key): _expand(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_expand(item) for item in value]
    if isinstance(value, str):
        text = _PLACEHOLDER.sub(lambda m: m.group(1) or "", value)
        if text.startswith("^"):
            return yaml.safe_load(text[1:])
        assert yaml.safe_load(text) == text, f"{value!r} needs quoting: write it as '^\"...\"'"
        return text
    return value


def test_scene_snippets_compile_without_a_problem(tmp_path: Path) -> None:
    snippets = schema()["properties"]["scenes"]["items"]["defaultSnippets"]
    scenes = [_expand(snippet["body"]) for snippet in snippets]
    assert all(snippet["label"] and snippet["description"] for snippet in snippets)
    assert [sorted(k for k in scene if k in ("prompt", "shots", "video")) for scene in scenes] == [
        ["prompt"],
        ["shots"],
        ["prompt", "shots"],
        ["prompt", "video"],
    ]
    assert scenes[2]["shots"] == "auto"
    assert scenes[3]["video"]["refer_type"] == "base"
    board = {
        "storyboard": 1,
        "refs": {"videos": {"storm": {"url": "https://example.com/storm.mp4", "duration": 6}}},
        "scenes": scenes,
    }
    path = tmp_path / "snippets.yaml"
    path.write_text(yaml.safe_dump(board, sort_keys=False), encoding="utf-8")
    result = compile_file(path, "snippets.yaml")
    assert [d.headline() for d in result.diagnostics] == []
    assert [task.scene for task in result.tasks] == ["opening", "climb", "storm-night", "squall"]
    assert result.tasks[2].request.auto_shots


def test_the_generated_image_snippet_compiles_without_a_problem(tmp_path: Path) -> None:
    snippets = schema()["properties"]["refs"]["properties"]["images"]["defaultSnippets"]
    assert [snippet["label"] for snippet in snippets] == ["Generated image"]
    images = _expand(snippets[0]["body"])
    (name,) = images
    board = {
        "storyboard": 1,
        "refs": {"images": images},
        "scenes": [{"id": "s", "first_frame": name, "prompt": "Dolly in.", "duration": 5}],
    }
    path = tmp_path / "snippet.yaml"
    path.write_text(yaml.safe_dump(board, sort_keys=False), encoding="utf-8")
    result = compile_file(path, "snippet.yaml")
    assert [d.headline() for d in result.diagnostics] == []
    assert [image.name for image in result.images] == [name]


def test_every_generated_image_shape_is_one_omni_video_takes_an_image_at() -> None:
    # kling-api.md §2.1: images between 1:2.5 and 2.5:1; a generated image can be any
    # frame or reference, and its pixels cannot be checked before it exists.
    from compiler.model import limits, omni_image

    image = schema()["properties"]["refs"]["properties"]["images"]["additionalProperties"]
    generated = next(alt for alt in image["oneOf"] if "generate" in alt.get("properties", {}))
    aspects = generated["properties"]["aspect_ratio"]["enum"]
    assert aspects == omni_image()["aspect_ratios"]
    for aspect in aspects:
        w, h = (int(x) for x in aspect.split(":"))
        assert limits()["image_min_aspect"] <= w / h <= limits()["image_max_aspect"], aspect
    resolutions = generated["properties"]["resolution"]["enum"]
    assert resolutions == omni_image()["resolutions"] == list(omni_image()["units_per_image"])


def test_example_storyboards_validate_against_the_schema_alone() -> None:
    from compiler.load import load

    root = Path(__file__).resolve().parent.parent
    for board in sorted((root / "storyboards").glob("*.yaml")):
        doc, problems = load(board)
        assert problems == []
        assert list(Draft202012Validator(schema()).iter_errors(doc.data)) == []
