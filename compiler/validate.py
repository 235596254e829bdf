"""Check loaded data against the JSON Schema. SourceDoc → list[Diagnostic].

Every schema error is reported (jsonschema's `iter_errors`), each at the position of the
offending value, or of the offending key for unknown keys.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .diagnostics import Diagnostic, did_you_mean
from .load import JsonPath, SourceDoc

_PACKAGE_DIR = Path(__file__).resolve().parent


def schema_path() -> Path:
    """The schema in the source tree (a checkout), else the copy packed into the wheel."""
    for candidate in (
        _PACKAGE_DIR.parent / "schemas" / "storyboard.schema.json",
        _PACKAGE_DIR / "schemas" / "storyboard.schema.json",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("storyboard.schema.json is missing from this installation")


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))
    return loaded


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


_JSON_TYPES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "a mapping",
    type(None): "nothing (null)",
}
_SCHEMA_TYPES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
}


def _describe(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    if value is None:
        return kind
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{kind} {shown}"


def _is_number(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _field(path: JsonPath) -> str:
    named = [p for p in path if isinstance(p, str)]
    return named[-1] if named else "storyboard"


def check_schema(doc: SourceDoc) -> tuple[list[Diagnostic], set[JsonPath]]:
    """Return the schema problems, and the paths of the values that broke the schema.

    A broken path names a value the later stages cannot use: one of the wrong type or
    shape, a required key that is missing, and a key written under a misspelt name
    (`promt:` breaks `prompt`, so "no prompt" is not reported a second time). A mapping
    with an unknown key is not broken itself: its other keys are checked in full.
    """
    problems: list[Diagnostic] = []
    broken: set[JsonPath] = set()
    errors = list(_validator().iter_errors(doc.data))
    meant = _meant_keys(errors)
    for error in errors:
        path: JsonPath = tuple(error.absolute_path)
        if error.validator == "required":
            missing = _missing_key(error)
            if (*path, missing) in meant:
                continue  # reported as the misspelt key
            broken.add((*path, missing))
        elif "propertyNames" in error.absolute_schema_path:
            broken.add((*path, str(error.instance)))  # the name, not its whole mapping
        elif error.validator != "additionalProperties":
            broken.add(path)
        problems.extend(_diagnose(doc, error))
    broken |= meant
    for path, value in _non_finite(doc.data, ()):
        if path not in broken:
            problems.append(
                Diagnostic(
                    doc.loc(path),
                    "not-finite",
                    f"'{_field(path)}' must be a finite number, got {value}",
                    "write a number such as 0.14; .nan and .inf are not amounts",
                )
            )
            broken.add(path)
    return problems, broken


def _meant_keys(errors: list[ValidationError]) -> set[JsonPath]:
    """The keys that unknown keys were probably meant to be (`promt` → `prompt`)."""
    meant: set[JsonPath] = set()
    for error in errors:
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            schema = error.schema if isinstance(error.schema, dict) else {}
            known = list(schema.get("properties", {}))
            for key in error.instance:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                if close and close[0] not in error.instance:
                    meant.add((*error.absolute_path, close[0]))
    return meant


def _not_meant(errors: list[ValidationError]) -> list[ValidationError]:
    """The errors without "needs 'prompt'" where `promt:` is reported already."""
    meant = _meant_keys(errors)
    return [
        e
        for e in errors
        if e.validator != "required" or (*e.absolute_path, _missing_key(e)) not in meant
    ]


def _non_finite(value: Any, path: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    """Every NaN or infinite number in the document: JSON Schema lets them through."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, index))


def _diagnose(
    doc: SourceDoc, error: ValidationError, *, branch: bool = False
) -> Iterator[Diagnostic]:
    path: JsonPath = tuple(error.absolute_path)
    keyword = error.validator
    subschema = error.schema if isinstance(error.schema, dict) else {}
    hint = subschema.get("description")
    value: Any = error.instance
    name = _field(path)

    shape = _near_miss(path, value) if keyword in ("type", "oneOf", "anyOf") else None
    if shape is not None:
        yield Diagnostic(doc.loc(path), "type", shape[0], shape[1])
    elif keyword in ("oneOf", "anyOf") and error.context:
        switch = _switch(error, name)
        if switch is not None:
            yield Diagnostic(doc.loc(path), switch[0], switch[1], hint)
            return
        chosen = _branch(error)
        if chosen is None:
            yield Diagnostic(doc.loc(path), "type", f"'{name}' cannot be {_describe(value)}", hint)
        elif isinstance(chosen, str):
            yield Diagnostic(
                doc.loc(path), "missing-key", f"{_where(doc, path)} needs {chosen}", hint
            )
        else:
            for inner in _not_meant(chosen):
                yield from _diagnose(doc, inner, branch=True)
    elif keyword == "additionalProperties":
        known = list(subschema.get("properties", {}))
        for key in value:
            if key in known:
                continue
            suggestion = did_you_mean(key, known)
            if branch and not (suggestion or "").startswith("did"):
                suggestion = hint  # one form of several: say what the form is
            yield Diagnostic(
                doc.loc((*path, key), key=True),
                "unknown-key",
                f"unknown key '{key}' in {_where(doc, path)}",
                suggestion or hint,
            )
    elif keyword == "required":
        missing = _missing_key(error)
        properties: dict[str, Any] = subschema.get("properties", {})
        sub_hint = properties.get(missing, {}).get("description")
        yield Diagnostic(
            doc.loc(path), "missing-key", f"{_where(doc, path)} needs '{missing}'", sub_hint
        )
    elif keyword == "type":
        wanted: Any = error.validator_value
        wanted_list = wanted if isinstance(wanted, list) else [wanted]
        expected = " or ".join(_SCHEMA_TYPES.get(str(w), str(w)) for w in wanted_list)
        if not path:
            yield Diagnostic(
                doc.loc(path),
                "type",
                f"the file must be a mapping of keys (storyboard:, scenes:, ...), "
                f"not {_describe(value)}",
                "start from `storyboard new NAME`",
            )
            return
        if _is_number(value) and {"integer", "number"} & set(wanted_list):
            hint = f"write it without quotes: {name}: {value}"
        yield Diagnostic(
            doc.loc(path),
            "type",
            f"'{name}' must be {expected}, not {_describe(value)}",
            hint,
        )
    elif keyword == "enum":
        allowed: Any = error.validator_value
        choices = [c for c in allowed if isinstance(c, str)]
        suggestion = did_you_mean(str(value), choices) if isinstance(value, str) else None
        listed = "one of " + ", ".join(choices)
        if name == "shots":  # the other alternative of `shots` is a list
            listed = "a list of shots, or auto"
        yield Diagnostic(
            doc.loc(path),
            "enum",
            f"'{name}' must be {listed}; got {_describe(value)}",
            suggestion if suggestion and suggestion.startswith("did") else hint,
        )
    elif keyword == "const" and path == ("storyboard",):
        yield Diagnostic(
            doc.loc(path),
            "format-version",
            f"unsupported storyboard format version {value!r}; this compiler reads version 1",
            "set `storyboard: 1`",
        )
    elif keyword == "pattern" and error.validator_value == "^https://":
        yield Diagnostic(
            doc.loc(path),
            "url-https",
            f"URL must start with https://, got {_describe(value)}",
            "Kling fetches media from public https URLs only",
        )
    elif keyword == "pattern" and name == "id":
        yield Diagnostic(
            doc.loc(path),
            "scene-id",
            f"scene id {value!r} is not a valid name",
            "use lower-case letters, digits, '-' and '_', starting with a letter or digit; "
            "the id names the clip file",
        )
    elif "propertyNames" in error.absolute_schema_path:
        # jsonschema reports a bad key at its mapping's path, with the key as the instance.
        key = str(value)
        yield Diagnostic(
            doc.loc((*path, key), key=True),
            "ref-name",
            f"'{key}' cannot be used as a name in prompts",
            "names are letters, digits and '_', not starting with a digit, "
            "so that `{{ image.NAME }}` works",
        )
    elif keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        relation = {
            "minimum": "at least",
            "exclusiveMinimum": "more than",
            "maximum": "at most",
            "exclusiveMaximum": "less than",
        }[keyword]
        yield Diagnostic(
            doc.loc(path),
            "range",
            f"'{name}' must be {relation} {error.validator_value}, got {_describe(value)}",
            hint,
        )
    elif keyword in _SIZE_MESSAGES:
        limit = error.validator_value
        message = _SIZE_MESSAGES[keyword].format(name=name, limit=limit, got=len(value))
        if keyword == "maxProperties":
            message += f" ({', '.join(map(str, value))})"
        yield Diagnostic(doc.loc(path), "size", message, hint)
    else:
        yield Diagnostic(doc.loc(path), f"schema-{keyword}", error.message, hint)


def _missing_key(error: ValidationError) -> str:
    match = re.match(r"'(.+)' is a required property", error.message)
    return match.group(1) if match else str(error.validator_value)


_SIZE_MESSAGES = {
    "minItems": "'{name}' needs at least {limit} item(s), got {got}",
    "maxItems": "'{name}' takes at most {limit} item(s), got {got}",
    "minLength": "'{name}' needs at least {limit} character(s), got {got}",
    "maxLength": "'{name}' takes at most {limit} character(s), got {got}",
    "minProperties": "'{name}' needs at least {limit} key(s), got {got}",
    "maxProperties": "'{name}' takes at most {limit} key(s), got {got}",
}


def _where(doc: SourceDoc, path: JsonPath) -> str:
    if not path:
        return "the storyboard"
    if path[0] == "scenes" and len(path) >= 2 and isinstance(path[1], int):
        where = scene_label(doc, path[1])
        if len(path) >= 4 and path[2] == "shots" and isinstance(path[3], int):
            return f"shot {path[3] + 1} of {where}"
        if len(path) >= 3:
            return f"'{path[2]}' of {where}"
        return where
    return "'" + ".".join(str(p) for p in path) + "'"


def scene_label(doc: SourceDoc, index: int) -> str:
    """A scene as messages name it: by its id when it has one, else by its place."""
    scenes = doc.data.get("scenes") if isinstance(doc.data, dict) else None
    raw = scenes[index] if isinstance(scenes, list) and index < len(scenes) else None
    scene_id = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(scene_id, str) and scene_id and len(scene_id) <= 64:
        return f"scene '{scene_id}'"
    return f"scene {index + 1}"


# -- near misses: say what the author most likely meant -------------------------------

_CASINGS = "in lower case, Capitalised or UPPER CASE"


def _switch(error: ValidationError, name: str) -> tuple[str, str] | None:
    """A switch (`sound`, `enabled`, ...) given a word it does not know."""
    alternatives = error.schema.get(error.validator, []) if isinstance(error.schema, dict) else []
    if not any(alt.get("title") == "Switch word" for alt in alternatives):
        return None
    got = _describe(error.instance)
    enum = next((alt["enum"] for alt in alternatives if "enum" in alt), None)
    if enum is not None:
        choices = " or ".join(c for c in enum if isinstance(c, str))
        return (
            "enum",
            f"'{name}' must be {choices} (also yes/no, true/false, {_CASINGS}); got {got}",
        )
    return "type", f"'{name}' must be true or false (also yes/no, on/off, {_CASINGS}); got {got}"


def _branch(error: ValidationError) -> list[ValidationError] | str | None:
    """The errors of the alternative the author most likely meant: one of the value's
    type, and for a mapping the one that knows most of its keys. When alternatives tie
    and each only misses keys, the keys that would complete any of them (a str)."""
    groups: dict[int, list[ValidationError]] = {}
    for inner in error.context or ():
        groups.setdefault(int(inner.relative_schema_path[0]), []).append(inner)
    alternatives = error.schema.get(error.validator, []) if isinstance(error.schema, dict) else []
    fitting = {
        i: errors
        for i, errors in sorted(groups.items())
        if not any(e.validator == "type" and not e.relative_path for e in errors)
    }
    if not fitting:
        return None
    instance = error.instance
    if isinstance(instance, dict):

        def known(i: int) -> int:
            properties = alternatives[i].get("properties", {}) if i < len(alternatives) else {}
            return sum(key in properties for key in instance)

        best = max(known(i) for i in fitting)
        top = [i for i in fitting if known(i) == best]
        if len(top) > 1 and all(e.validator == "required" for i in top for e in fitting[i]):
            options = [" and ".join(f"'{_missing_key(e)}'" for e in fitting[i]) for i in top]
            return ", or ".join(options)
        return fitting[min(top, key=lambda i: len(fitting[i]))]
    return fitting[min(fitting, key=lambda i: len(fitting[i]))]


def _near_miss(path: JsonPath, value: Any) -> tuple[str, str] | None:
    """Shapes that are almost right: what is wrong, and what to write instead."""
    if len(path) == 2 and path[0] == "scenes" and not isinstance(value, dict):
        return (
            f"a scene is a mapping of keys (id:, prompt:, duration:), not {_describe(value)}",
            "start each scene with `- id: NAME` and indent its other keys under it",
        )
    if len(path) == 3 and path[0] == "scenes" and path[2] == "video" and isinstance(value, str):
        return (
            f"'video' takes a mapping, not the name '{value}'",
            f"write `video: {{ref: {value}, refer_type: base}}` to edit the video, or "
            "`refer_type: feature` to use it as a reference",
        )
    if len(path) == 3 and path[:2] == ("refs", "videos") and isinstance(value, str):
        return (
            f"a video ref is a mapping, not {_describe(value)}",
            f'write `{path[2]}: {{url: "{value}"}}` (add `duration: SECONDS` for the cost '
            "estimate)",
        )
    if len(path) == 3 and path[0] == "scenes" and path[2] == "shots" and not isinstance(value, str):
        if not isinstance(value, list):
            return (
                f"'shots' takes a list of shots, or `auto`, not {_describe(value)}",
                "list each shot as `- prompt: ...` with its `duration:`, or write `shots: auto` "
                "with the scene's `prompt` and `duration` and let Kling plan the cuts",
            )
    if len(path) == 3 and path[0] == "scenes" and path[2] in ("first_frame", "end_frame"):
        frame = str(path[2])
        meant_after = isinstance(value, dict) and any(
            (did_you_mean(str(key), ["after"]) or "").startswith("did") for key in value
        )
        if isinstance(value, dict | list) and not meant_after:
            also = (
                " or `{after: SCENE}` to continue an earlier scene"
                if frame == "first_frame"
                else ""
            )
            return (
                f"'{frame}' takes the name of an image, not {_describe(value)}",
                f"write `{frame}: NAME` with an image from refs.images{also}",
            )
    return None
