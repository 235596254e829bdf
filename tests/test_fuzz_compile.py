"""A structure-aware mutation fuzzer for `validate` and `compile` (issue 10).

The valid golden cases are loaded, mutated where a person would slip (a value of the
wrong type or shape, a typo, a missing or extra key, an edge number, a nasty template, a
reference to nothing, an odd path or URL, a switch word, a duplicated scene, a broken
line of YAML...), written out in a random YAML style and run through the CLI in-process.
Whatever the input, the commands must:

- exit 0 or 1, with no traceback and no "internal error";
- compile twice to byte-identical output (a changed payload would be paid again);
- put every diagnostic at a line and column that exist in the file;
- when they accept a file, produce a task per scene that Kling's rules accept (the
  emulator's body checks) and valid JSON.

The test runs a fixed, derandomized sample; `bench/fuzz.py` runs the same engine for as
long as asked and prints what it tried.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2.filters import FILTERS
from jinja2.tests import TESTS

from compiler.cli import main
from compiler.emulator.rules import Invalid, check_body, check_image_body
from compiler.load import load

CASES = Path(__file__).resolve().parent / "cases"
Data = Any
Path_ = tuple[str | int, ...]

# -- what mutations draw from ------------------------------------------------------------

TEMPLATES = [
    "{{ keeper | uper }}",
    "{% if keeper is nosuchtest %}x{% endif %}",
    "{{ keeper.__class__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ keeper.upper() }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}",
    "{{ [0] * 10**9 }}",
    "{{ 'x' * 10**8 }}",
    "{{ lipsum }}",
    "{{ lipsum(3) }}",
    "{{ '<<<' ~ 'image_9>>>' }}",
    "{{ [1, 2, 3] | random }}",
    "{{ range }}",
    "{{ cycler('a', 'b').next() }}",
    "{{ namespace(a=1) }}",
    "{{ dict(a=1) }}",
    "{{ self }}",
    "{{ 2 ** 99999 }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ 'x' | center(999999999) }}",
    "{{ 'ab' | replace('a', 'a' * 50000) | replace('a', 'aa') }}",
    "{{ (1, 2) | batch(99999999) | list }}",
    "{{ 1 / 0 }}",
    "{{ x }",
    "{% if x %}",
    "{% for %}",
    "{% include 'x' %}",
    "{% extends 'x' %}",
    "{% import 'x' as y %}",
    "<<<image_1>>>",
    "<<< image_1 >>>",
    "<<<element_2>>>",
    "{{ image }}",
    "{{ image.nope }}",
    "{{ image['nope'] }}",
    "{{ video.nope }}",
    "{{ element.nope | upper }}",
    "{{ image.coast | upper }}",
    "{{ image.lamp[3:] }}",
    "{{ element.keeper | length }}",
    "{% for x in [1, 2] %}{{ loop.cycle }}{% endfor %}",
    "{% for x in [1, 2] %}{{ loop.cycle('a', 'b') }}{{ loop.index }}{% endfor %}",
    "{% set t = image.coast %}{{ t }}{{ t }}",
    "{% filter upper %}{{ image.lamp }}{% endfilter %}",
    "{{ (" * 200 + "1" + ")" * 200 + " }}",
    "{% for a in [1] %}" * 30 + "{% endfor %}" * 30,
    "{{ keeper ~ keeper ~ keeper }}",
    "{{ '\\u0000' }}",
    "{{ '\ue000' }}",
    "\ue000\ue001",
    "{# comment",
    "{% raw %}{{ x }}",
    "{{ 99999999999999999999999999999999999999 }}",
    "{{ 1e400 }}",
    "{{ -1 | abs }} {{ 'a b' | wordcount }} {{ [3, 1] | sort | join(',') }}",
    "{{ keeper | truncate(1) }}",
    "{{ keeper | wordwrap(0) }}",
    "{{ keeper | indent(99999999) }}",
    "{{ keeper | format(1, 2) }}",
    "{{ {'a': 1} | dictsort }}",
    "{{ [1] | map('nosuchfilter') | list }}",
    "{{ [1] | select('nosuchtest') | list }}",
    "{{ keeper is defined }} {{ nothere is undefined }}",
    "{{ keeper[99] }}",
    "{{ keeper['upper'] }}",
    "{{ [] | first }}",
    "{{ keeper() }}",
    "{{ 1 + 'a' }}",
]
WORDS = ["on", "off", "ON", "Off", "yes", "No", "TRUE", "false", "oN", "maybe", "", "1"]
PATHS = [
    "../assets/coast.png",
    "../assets/coast.png/",
    "../assets/coast.png/.",
    "../assets/./coast.png",
    "../assets/../assets/coast.png",
    "../../../../../etc/hosts",
    "../../../../dir/file.png/",
    "/etc/hostname",
    "C:/x.png",
    "..\\assets\\coast.png",
    "../assets/outside.png",
    "../assets/" + "a" * 300 + ".png",
    "a/" * 2100 + "x.png",
    "../assets/coast\x01.png",
    "../assets/nope.png",
    "../assets",
    ".",
    "",
    "../assets/photo.bmp",
    "../assets/tiny.png",
    "../assets/anim.gif",
]
URLS = [
    "https://example.com/a.png",
    "http://example.com/a.png",
    "https://[::1/a.png",
    "https://127.0.0.1/a.png",
    "https://localhost/a.mp4",
    "https://exa mple.com/a.png",
    "https:///a.png",
    "https://example.com/a.gif",
    "https://example.com:99999/a.png",
    "https://user:pw@example.com/a.mp4",
    "https://10.0.0.1/v.mp4",
    "https://example.com/a.png/",
    "ftp://example.com/a.png",
]
KEYS = (
    "storyboard title model mode aspect_ratio sound budget_usd usd_per_unit vars refs "
    "images elements videos scenes id prompt duration shots first_frame end_frame video "
    "ref refer_type keep_original_sound takes selected enabled after url path description "
    "generate resolution usd_per_image_unit promt durtion idd camera"
).split()
SETTINGS = {
    "model": ["kling-v3-omni", "kling-video-o1", "kling-v3", "kling-video-o2"],
    "mode": ["std", "pro", "4k", "ultra", "PRO"],
    "aspect_ratio": ["16:9", "9:16", "1:1", "4:3", 1.777],
    "sound": WORDS,
    "refer_type": ["base", "feature", "other"],
}
EDGE_NUMBERS = [
    0,
    -1,
    1,
    2,
    3,
    5,
    6,
    10,
    11,
    12,
    13,
    15,
    16,
    100,
    10**20,
    2.5,
    -0.0,
    math.inf,
    math.nan,
    "5",
    True,
]


def _other_values(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            0,
            -5,
            3.5,
            "text",
            "",
            [],
            {},
            ["a", "b"],
            {"a": 1},
            math.nan,
            10**30,
            "{{ keeper }}",
            rng.choice(TEMPLATES),
        ]
    )


# -- walking the data tree ---------------------------------------------------------------


def _walk(data: Data, path: Path_ = ()) -> Iterator[tuple[Path_, Data]]:
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _walk(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _walk(value, (*path, index))


def _get(data: Data, path: Path_) -> Data:
    for part in path:
        data = data[part]
    return data


def _set(data: Data, path: Path_, value: Data) -> Data:
    if not path:
        return value
    _get(data, path[:-1])[path[-1]] = value
    return data


def _pick(rng: random.Random, data: Data, test: Callable[[Path_, Data], bool]) -> Path_ | None:
    found = [path for path, value in _walk(data) if path and test(path, value)]
    return rng.choice(found) if found else None


def _typo(rng: random.Random, text: str) -> str:
    if not text:
        return "x"
    i = rng.randrange(len(text))
    kind = rng.randrange(5)
    if kind == 0:
        return text[:i] + text[i + 1 :]
    if kind == 1:
        return text[:i] + rng.choice("abcxyz-_ ") + text[i:]
    if kind == 2 and len(text) > 1:
        i = min(i, len(text) - 2)
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind == 3:
        return text.upper()
    return text + rng.choice(["s", "_", "-", "1", " "])


# -- mutations: each returns the data (possibly replaced) --------------------------------

Mutation = Callable[[random.Random, Data], Data]
MUTATIONS: dict[str, Mutation] = {}


def mutation(name: str) -> Callable[[Mutation], Mutation]:
    def register(fn: Mutation) -> Mutation:
        MUTATIONS[name] = fn
        return fn

    return register


@mutation("wrong-type")
def _wrong_type(rng: random.Random, data: Data) -> Data:
    path = _pick(rng, data, lambda p, v: True)
    return data if path is None else _set(data, path, _other_values(rng))


@mutation("typo")
def _typo_value(rng: random.Random, data: Data) -> Data:
    path = _pick(rng, data, lambda p, v: isinstance(v, str) or isinstance(p[-1], str))
    if path is None:
        return data
    value = _get(data, path)
    if isinstance(value, str) and rng.random() < 0.6:
        return _set(data, path, _typo(rng, value))
    parent, key = _get(data, path[:-1]), path[-1]
    if isinstance(parent, dict) and isinstance(key, str):
        parent[_typo(rng, key)] = parent.pop(key)
    return data


@mutation("missing-key")
def _missing_key(rng: random.Random, data: Data) -> Data:
    path = _pick(rng, data, lambda p, v: isinstance(v, dict) and bool(v))
    if path is None:
        return data
    mapping = _get(data, path)
    mapping.pop(rng.choice(list(mapping)))
    return data


@mutation("extra-key")
def _extra_key(rng: random.Random, data: Data) -> Data:
    path = _pick(rng, data, lambda p, v: isinstance(v, dict)) or ()
    mapping = _get(data, path)
    if isinstance(mapping, dict):
        mapping[rng.choice(KEYS)] = _other_values(rng)
    return data


@mutation("duplicate")
def _duplicate(rng: random.Random, data: Data) -> Data:
    path = _pick(rng, data, lambda p, v: isinstance(v, list) and bool(v))
    if path is None:
        return data
    items = _get(data, path)
    items.insert(rng.randrange(len(items) + 1), copy.deepcopy(rng.choice(items)))
    return data


@mutation("edge-number")
def _edge_number(rng: random.Random, data: Data) -> Data:
    names = (
        "duration",
        "takes",
        "selected",
        "budget_usd",
        "usd_per_unit",
        "usd_per_image_unit",
        "storyboard",
        "id",
    )
    path = _pick(
        rng,
        data,
        lambda p, v: (
            (isinstance(v, int | float) and not isinstance(v, bool))
            or (isinstance(p[-1], str) and p[-1] in names)
        ),
    )
    return data if path is None else _set(data, path, rng.choice(EDGE_NUMBERS))


def _is_prompt(path: Path_, value: Data) -> bool:
    """A scene's or shot's prompt, or a generated image's."""
    return path[-1] in ("prompt", "generate") and isinstance(value, str)


@mutation("template")
def _template(rng: random.Random, data: Data) -> Data:
    path = _pick(rng, data, _is_prompt)
    if path is None:
        return data
    text, snippet = _get(data, path), rng.choice(TEMPLATES)
    at = rng.randrange(len(text) + 1)
    new = snippet if rng.random() < 0.3 else text[:at] + snippet + text[at:]
    return _set(data, path, new)


# A small grammar of Jinja: every filter and test Jinja has (the sandbox's and the ones it
# leaves out), every operator, lookups of any name, calls, and blocks inside blocks.
_FILTERS = sorted(FILTERS) + ["uper", "nosuch"]
_TESTS = sorted(TESTS) + ["nosuchtest"]
_NAMES = [
    "keeper",
    "beats",
    "night",
    "loop",
    "range",
    "self",
    "caller",
    "varargs",
    "nope",
    "lipsum",
    "cycler",
    "joiner",
    "namespace",
    "dict",
    "image",
    "element",
    "video",
]
_ATTRS = [
    "coast",
    "lamp",
    "keeper",
    "storm",
    "index",
    "cycle",
    "upper",
    "items",
    "__class__",
    "mro",
    "_x",
    "format",
    "nope",
    "0",
]


def _expr(rng: random.Random, depth: int = 0) -> str:
    if depth > 3 or rng.random() < 0.3:
        return rng.choice(
            [
                rng.choice(_NAMES),
                str(rng.choice([0, 1, 3, -2, 10**6, 2**70])),
                repr(rng.choice(["a", "<<<", "image_1>>>", "%s", "%99999999d", "\ue000", ""])),
                "[1, 2, 3]",
                "{'a': 1}",
                "none",
                "true",
            ]
        )
    kind = rng.randrange(8)
    inner = _expr(rng, depth + 1)
    if kind == 0:
        op = rng.choice(["+", "-", "*", "/", "//", "%", "**", "~", "and", "or", "in", "==", "<"])
        return f"({inner} {op} {_expr(rng, depth + 1)})"
    if kind == 1:
        args = ", ".join(_expr(rng, depth + 1) for _ in range(rng.randrange(3)))
        return f"({inner} | {rng.choice(_FILTERS)}({args}))"
    if kind == 2:
        return f"({inner} is {rng.choice(_TESTS)})"
    if kind == 3:
        return f"{inner}.{rng.choice(_ATTRS)}"
    if kind == 4:
        return f"{inner}[{_expr(rng, depth + 1)}]"
    if kind == 5:
        args = ", ".join(_expr(rng, depth + 1) for _ in range(rng.randrange(3)))
        return f"{inner}({args})"
    if kind == 6:
        return f"({inner} if {_expr(rng, depth + 1)} else {_expr(rng, depth + 1)})"
    return f"not {inner}"


def _block(rng: random.Random, depth: int = 0) -> str:
    if depth > 2 or rng.random() < 0.4:
        return rng.choice(["text ", f"{{{{ {_expr(rng)} }}}}", "{{ image.coast }}"])
    body = "".join(_block(rng, depth + 1) for _ in range(rng.randrange(1, 3)))
    kind = rng.randrange(6)
    if kind == 0:
        return f"{{% for x in {_expr(rng)} %}}{body}{{% endfor %}}"
    if kind == 1:
        return f"{{% if {_expr(rng)} %}}{body}{{% else %}}x{{% endif %}}"
    if kind == 2:
        return f"{{% macro m(a) %}}{body}{{{{ m(a) if a else '' }}}}{{% endmacro %}}{{{{ m(1) }}}}"
    if kind == 3:
        return f"{{% set v = {_expr(rng)} %}}{body}{{{{ v }}}}"
    if kind == 4:
        return f"{{% filter {rng.choice(_FILTERS)} %}}{body}{{% endfilter %}}"
    return f"{{% with w = {_expr(rng)} %}}{body}{{% endwith %}}"


@mutation("template-grammar")
def _template_grammar(rng: random.Random, data: Data) -> Data:
    path = _pick(rng, data, _is_prompt)
    if path is None:
        return data
    return _set(data, path, _get(data, path) + " " + _block(rng))


@mutation("reference")
def _reference(rng: random.Random, data: Data) -> Data:
    refs = data.get("refs", {}) if isinstance(data, dict) else {}
    names = [n for kind in ("images", "elements", "videos") for n in (refs.get(kind) or {})]
    name = rng.choice([*names, "nope", "coastt", "storm", "keeper"])
    scene_path = _pick(rng, data, lambda p, v: len(p) == 2 and p[0] == "scenes")
    if scene_path is None or not isinstance(_get(data, scene_path), dict):
        return data
    scene = _get(data, scene_path)
    choice = rng.randrange(5)
    if choice == 0:
        scene["first_frame"] = rng.choice([name, {"after": rng.choice(["opening", "nope"])}])
    elif choice == 1:
        scene["end_frame"] = name
    elif choice == 2:
        scene["video"] = rng.choice(
            [
                {"ref": name, "refer_type": rng.choice(["base", "feature"])},
                name,
                {"ref": name},
            ]
        )
    else:
        kind = rng.choice(["image", "element", "video"])
        key = "prompt" if "prompt" in scene or not scene.get("shots") else None
        mention = f" {{{{ {kind}.{name} }}}}"
        if key and isinstance(scene.get(key), str):
            scene[key] += mention
        elif isinstance(scene.get("shots"), list) and scene["shots"]:
            shot = rng.choice(scene["shots"])
            if isinstance(shot, dict) and isinstance(shot.get("prompt"), str):
                shot["prompt"] += mention
    return data


@mutation("media-path")
def _media_path(rng: random.Random, data: Data) -> Data:
    refs = data.get("refs") if isinstance(data, dict) else None
    if not isinstance(refs, dict):
        return data
    kind = rng.choice(["images", "videos", "elements"])
    table = refs.setdefault(kind, {})
    if not isinstance(table, dict):
        return data
    name = rng.choice([*table, "extra"]) if table else "extra"
    if kind == "images":
        table[name] = rng.choice(
            [rng.choice(PATHS), {"url": rng.choice(URLS)}, {"path": rng.choice(PATHS)}]
        )
    elif kind == "videos":
        table[name] = {"url": rng.choice(URLS), "duration": rng.choice(EDGE_NUMBERS)}
    else:
        count = rng.choice([1, 2, 3, 5])
        table[name] = {
            "images": [rng.choice(PATHS) for _ in range(count)],
            "description": rng.choice(["the keeper", "", "x" * 120]),
        }
    return data


@mutation("generated-image")
def _generated_image(rng: random.Random, data: Data) -> Data:
    """A generated image ref (kling-api.md §11.1), written right or wrong, and maybe used."""
    if not isinstance(data, dict):
        return data
    refs = data.setdefault("refs", {})
    table = refs.setdefault("images", {}) if isinstance(refs, dict) else None
    if not isinstance(table, dict):
        return data
    others = [n for n in table if n != "made"]
    mention = rng.choice(
        ["", " {{ image.made }}", " {{ video.storm }}", " {{ element.keeper }}", " {{ nope }}"]
        + [f" {{{{ image.{n} }}}}" for n in others]
    )
    image: dict[str, Any] = {
        "generate": rng.choice(["A lighthouse at dusk.", "", rng.choice(TEMPLATES)]) + mention
    }
    if rng.random() < 0.5:
        image["resolution"] = rng.choice(["1k", "2k", "4k", "8k", "2K", 2])
    if rng.random() < 0.5:
        image["aspect_ratio"] = rng.choice(["16:9", "9:16", "1:1", "21:9", "2:3", "5:4", "auto"])
    if rng.random() < 0.1:
        image[rng.choice(["url", "path", "n"])] = rng.choice(["https://example.com/a.png", 2])
    table[rng.choice(["made", *others])] = image
    scenes = data.get("scenes")
    if isinstance(scenes, list) and scenes and isinstance(scenes[0], dict):
        scene = rng.choice([s for s in scenes if isinstance(s, dict)])
        use = rng.randrange(3)
        if use == 0:
            scene["first_frame"] = "made"
        elif use == 1:
            scene["end_frame"] = "made"
        elif isinstance(scene.get("prompt"), str):
            scene["prompt"] += " {{ image.made }}"
    if rng.random() < 0.2:
        data["usd_per_image_unit"] = rng.choice(EDGE_NUMBERS)
    return data


@mutation("shots-auto")
def _shots_auto(rng: random.Random, data: Data) -> Data:
    """`shots: auto` (§11, 03/11/2026) on a scene, with or without what it needs."""
    scenes = data.get("scenes") if isinstance(data, dict) else None
    if not isinstance(scenes, list) or not scenes:
        return data
    scene = rng.choice(scenes)
    if not isinstance(scene, dict):
        return data
    old = scene.get("shots")
    scene["shots"] = rng.choice(["auto", "auto", "auto", "Auto", "intelligence", 3])
    if isinstance(old, list) and "prompt" not in scene and rng.random() < 0.8:
        scene["prompt"] = " ".join(
            str(shot.get("prompt", "")) for shot in old if isinstance(shot, dict)
        )
    if "duration" not in scene and rng.random() < 0.8:
        scene["duration"] = rng.choice([5, 10, 15, 16, 2])
    return data


@mutation("switch-word")
def _switch_word(rng: random.Random, data: Data) -> Data:
    path = _pick(rng, data, lambda p, v: isinstance(v, dict)) or ()
    target = _get(data, path)
    if isinstance(target, dict):
        target[rng.choice(["sound", "enabled", "keep_original_sound"])] = rng.choice(WORDS)
    return data


@mutation("setting")
def _setting(rng: random.Random, data: Data) -> Data:
    path = _pick(rng, data, lambda p, v: len(p) == 2 and p[0] == "scenes") or ()
    target = _get(data, path)
    if isinstance(target, dict):
        name = rng.choice(list(SETTINGS))
        target[name] = rng.choice(SETTINGS[name])
    return data


@mutation("shape")
def _shape(rng: random.Random, data: Data) -> Data:
    path = _pick(rng, data, lambda p, v: True)
    if path is None:
        return data
    value = _get(data, path)
    if isinstance(value, dict) and value and rng.random() < 0.5:
        return _set(data, path, next(iter(value.values())))
    if isinstance(value, list) and value and rng.random() < 0.5:
        return _set(data, path, value[0])
    return _set(data, path, rng.choice([[value], {"value": value}]))


@mutation("scene-order")
def _scene_order(rng: random.Random, data: Data) -> Data:
    scenes = data.get("scenes") if isinstance(data, dict) else None
    if isinstance(scenes, list) and len(scenes) > 1:
        rng.shuffle(scenes)
    return data


VOICES: list[Any] = [
    {"preset": "oversea_male1"},
    {"preset": "oversea_male1", "language": "zh"},
    {"preset": "oversea_mal1", "language": "en", "speed": 2.5},
    {"preset": "genshin_vindi2", "language": "zh", "speed": 0.8},
    {"sample": {"url": "https://example.com/voice.wav"}, "language": "en"},
    {"sample": {"url": "http://example.com/voice.wav"}},
    {"sample": "../assets/voice-6s.wav"},
    {"sample": "../assets/voice-3s.wav"},
    {"sample": "../assets/voice-40s.wav"},
    {"sample": "../assets/coast.png"},
    {"sample": "../../outside.wav"},
    {"sample": "voice.wav", "preset": "oversea_male1"},
]
SOUND_TEXTS = [
    "The lamp was dark.",
    "{{ image.coast }} at dusk",
    "{{ keeper }} speaks",
    "x" * 1001,
    "x" * 201,
    "",
    "{{ 'a' * 2000 }}",
]


@mutation("sound")
def _sound(rng: random.Random, data: Data) -> Data:
    """Voices, narrators, narration, sound effects, a soundtrack and element voices, from
    the valid to each kind of bad input."""
    if not isinstance(data, dict):
        return data
    names = ["narrator", "mira", "x" * 25]
    voices = data.setdefault("voices", {})
    if isinstance(voices, dict):
        for _ in range(rng.choice([1, 2])):
            voices[rng.choice(names)] = copy.deepcopy(rng.choice(VOICES))
    if rng.random() < 0.6:
        data["narrator"] = rng.choice([*names, "nobody", 3])
    if rng.random() < 0.3:
        data["soundtrack"] = rng.choice(
            [
                {"music": "../assets/score.wav"},
                {"music": "../assets/missing.mp3", "loudness": -14},
                {"music": "../assets/coast.png", "loudness": rng.choice(EDGE_NUMBERS)},
                {"loudness": -60},
            ]
        )
    elements = data.get("refs", {}).get("elements") if isinstance(data.get("refs"), dict) else None
    if isinstance(elements, dict):
        for element in elements.values():
            if isinstance(element, dict) and "images" in element and rng.random() < 0.5:
                element["voice"] = rng.choice([*names, "nobody"])
    scenes = data.get("scenes")
    if isinstance(scenes, list) and scenes:
        for scene in rng.sample(scenes, min(len(scenes), rng.choice([1, 2]))):
            if not isinstance(scene, dict):
                continue
            if rng.random() < 0.7:
                scene["narration"] = rng.choice(SOUND_TEXTS)
            if rng.random() < 0.3:
                scene["narrator"] = rng.choice([*names, "nobody"])
            if rng.random() < 0.6:
                scene["sfx"] = rng.choice(
                    [
                        rng.choice(SOUND_TEXTS),
                        {"prompt": "waves", "duration": rng.choice(EDGE_NUMBERS)},
                        {"prompt": "waves", "duration": rng.choice([3, 3.5, 10, 2.9, 10.1])},
                    ]
                )
    return data


@mutation("many")
def _many(rng: random.Random, data: Data) -> Data:
    scenes = data.get("scenes") if isinstance(data, dict) else None
    if isinstance(scenes, list) and scenes:
        item = copy.deepcopy(rng.choice(scenes))
        if isinstance(item, dict) and isinstance(item.get("shots"), list) and item["shots"]:
            item["shots"] = item["shots"] * rng.choice([2, 5, 10])
        scenes.extend(copy.deepcopy(item) for _ in range(rng.choice([1, 5, 30])))
    return data


# -- text-level mutations, after the data is written out ---------------------------------

TEXT_INSERTS = [
    "{{ ",
    "{% ",
    ": ",
    "- ",
    "\t",
    "&a ",
    "*a ",
    "!!python/object:os.system ",
    "%",
    "'",
    '"',
    "#",
    "<<: *x ",
    "\ufeff",
    "\x85",
    "\u2028",
]


def _text_mutation(rng: random.Random, text: str) -> tuple[str, str]:
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    kind = rng.randrange(6)
    if kind == 0:
        del lines[i]
        name = "text-delete-line"
    elif kind == 1:
        lines.insert(i, lines[i])
        name = "text-duplicate-line"
    elif kind == 2:
        lines[i] = (
            (" " * rng.choice([1, 2, 4]) + lines[i]) if rng.random() < 0.5 else lines[i].lstrip()
        )
        name = "text-indent"
    elif kind == 3:
        at = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:at] + rng.choice(TEXT_INSERTS) + lines[i][at:]
        name = "text-insert"
    elif kind == 4:
        lines = lines[: rng.randrange(len(lines) + 1)]
        name = "text-truncate"
    else:
        lines[i] = lines[i].replace('"', "").replace("'", "")
        name = "text-unquote"
    return "\n".join(lines), name


# -- writing out, in a random style --------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _dump(rng: random.Random, data: Data) -> str:
    style = rng.choice([None, None, '"', "'", "|", ">"])

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        chosen = style if style and (style in "\"'" or "\n" in value or len(value) > 30) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=chosen)

    _Dumper.add_representer(str, text)
    return yaml.dump(
        data,
        Dumper=_Dumper,
        allow_unicode=True,
        sort_keys=False,
        width=rng.choice([40, 80, 1000]),
        default_flow_style=rng.choice([False, None]),
    )


@dataclass
class Case:
    seed: str
    classes: list[str]
    text: str


def seeds() -> list[tuple[str, Data]]:
    found = []
    for case in sorted((CASES / "valid").glob("*.yaml")):
        doc, problems = load(case, case.name)
        assert not problems and doc.data is not None, case
        found.append((case.stem, doc.data))
    return found


def make_case(rng: random.Random, pool: list[tuple[str, Data]]) -> Case:
    name, data = rng.choice(pool)
    data = copy.deepcopy(data)
    classes = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        kind = rng.choice(list(MUTATIONS))
        try:
            data = MUTATIONS[kind](rng, data)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError):
            continue  # an earlier mutation left no place for this one
        classes.append(kind)
    try:
        text = _dump(rng, data)
    except (yaml.YAMLError, ValueError, RecursionError):
        text = json.dumps(data, default=str)
    if rng.random() < 0.15:
        text, kind = _text_mutation(rng, text)
        classes.append(kind)
    return Case(name, classes, text)


# -- running one case ------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    bad: list[str] = field(default_factory=list)
    accepted: bool = False
    seconds: float = 0.0


def _cli(argv: list[str]) -> tuple[int | str, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | str = main(argv)
        except BaseException as exc:  # noqa: BLE001 - anything escaping main is a finding
            code = f"raised {type(exc).__name__}: {exc}"
    return code, out.getvalue(), err.getvalue()


def _positions_exist(text: str, report: str, path: str) -> list[str]:
    lines = text.split("\n")
    bad = []
    for line in report.splitlines():
        if not line.startswith(path + ":"):
            continue
        parts = line[len(path) + 1 :].split(":", 2)
        try:
            row, col = int(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            bad.append(f"unparsable diagnostic line: {line[:120]}")
            continue
        if (
            not 1 <= row <= len(lines) + 1
            or not 1 <= col <= len(lines[row - 1] if row <= len(lines) else "") + 2
        ):
            bad.append(f"position {row}:{col} is not in the file: {line[:120]}")
    return bad


def _stand_ins(payload: dict[str, Any], key: str) -> dict[str, Any]:
    """A payload as the executor sends it, with stand-ins for media known at render time."""
    payload = copy.deepcopy(payload)
    for item in payload.get("image_list", []):
        if not str(item.get(key, "")).startswith("https://"):
            item[key] = "https://example.com/stand-in.png"
    for item in payload.get("element_list", []):
        if not isinstance(item.get("element_id"), int):
            item["element_id"] = 1
    return payload


def _oracle(doc: dict[str, Any]) -> list[str]:
    """A compiled board: every payload must pass Kling's body rules (the emulator's), the
    Omni-Image ones too (generated images and stills)."""
    bad = []
    for task in doc.get("tasks", []):
        try:
            check_body(_stand_ins(task["payload"], "image_url"))
        except Invalid as exc:
            bad.append(f"accepted, but Kling would refuse scene {task['scene']}: {exc}")
        for n, still in enumerate(task.get("stills", []), 1):
            try:
                check_image_body(_stand_ins(still["payload"], "image"))
            except Invalid as exc:
                bad.append(f"accepted, but Kling would refuse still {n} of {task['scene']}: {exc}")
    for task in doc.get("tasks", []):
        speech = task.get("narration", {}).get("payload")
        if speech is not None and not (
            0 < len(speech["text"]) <= 1000
            and speech["voice_language"] in ("en", "zh")
            and 0.8 <= speech["voice_speed"] <= 2.0
        ):
            bad.append(f"accepted, but Kling would refuse the narration of {task['scene']}")
        effect = task.get("sfx", {}).get("payload")
        if effect is not None and not (
            0 < len(effect["prompt"]) <= 200 and 3 <= effect["duration"] <= 10
        ):
            bad.append(f"accepted, but Kling would refuse the sound effect of {task['scene']}")
    for image in doc.get("images", []):
        try:
            check_image_body(_stand_ins(image["payload"], "image"))
        except Invalid as exc:
            bad.append(f"accepted, but Kling would refuse generated image {image['name']}: {exc}")
    return bad


def run_case(case: Case, folder: Path, *, other_process: bool = False) -> Outcome:
    """Run validate and compile (twice) on one mutated storyboard; with `other_process`,
    compile once more in a new process with another hash seed, which must agree too."""
    board = folder / "valid" / "fuzz.yaml"
    board.write_text(case.text, encoding="utf-8", errors="surrogatepass")
    shown = board.as_posix()
    outcome = Outcome(case)
    started = time.perf_counter()
    runs = [_cli(["validate", shown]), _cli(["compile", "--json", shown])]
    runs.append(_cli(["compile", "--json", shown]))
    outcome.seconds = time.perf_counter() - started
    for (code, out, err), name in zip(runs, ("validate", "compile", "compile"), strict=True):
        if code not in (0, 1):
            outcome.bad.append(f"{name} exited {code!r}: {err.strip()[-300:]}")
        if code == 1 and "error[" not in out + err:
            outcome.bad.append(f"{name} exited 1 without reporting an error")
        if "Traceback" in out + err or "internal error" in out + err:
            outcome.bad.append(f"{name} printed a traceback or internal error: {err[-300:]}")
    if runs[1] != runs[2]:
        outcome.bad.append("two compiles of the same file differ")
    if other_process:
        proc = subprocess.run(
            [sys.executable, "-m", "compiler", "compile", "--json", shown],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": str(len(case.text) % 4093 + 1)},
            timeout=120,
            check=False,
        )
        if (proc.returncode, proc.stdout, proc.stderr) != runs[1]:
            outcome.bad.append("a compile in another process (another hash seed) differs")
    outcome.bad += _positions_exist(case.text, runs[0][1] + runs[0][2], shown)
    if runs[1][0] == 0:
        outcome.accepted = True
        try:
            doc = json.loads(runs[1][1])
        except json.JSONDecodeError:
            outcome.bad.append("compile --json printed something that is not JSON")
        else:
            outcome.bad += _oracle(doc)
    if outcome.seconds > 20:
        outcome.bad.append(f"took {outcome.seconds:.1f} s")
    return outcome


@contextlib.contextmanager
def project() -> Iterator[Path]:
    """A throwaway project holding the cases' assets, where mutated boards are written."""
    with tempfile.TemporaryDirectory(prefix="storyboard-fuzz-") as root:
        folder = Path(root)
        (folder / ".git").mkdir()
        shutil.copytree(CASES / "assets", folder / "assets", symlinks=True)
        (folder / "valid").mkdir()
        yield folder


# -- the test: a fixed sample, a few seconds -------------------------------------------------

_POOL = seeds()


@pytest.fixture(scope="module")
def fuzz_project() -> Iterator[Path]:
    with project() as folder:
        yield folder


@settings(
    max_examples=600,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.randoms(use_true_random=False))
def test_a_mutated_storyboard_never_crashes_and_compiles_the_same_twice(
    fuzz_project: Path, rng: random.Random
) -> None:
    outcome = run_case(make_case(rng, _POOL), fuzz_project)
    assert outcome.bad == [], (outcome.case.classes, outcome.case.text[:2000])


def test_every_mutation_class_changes_something() -> None:
    rng = random.Random(7)
    for name, fn in MUTATIONS.items():
        changed = 0
        for _seed_name, data in _POOL:
            before = copy.deepcopy(data)
            if fn(rng, copy.deepcopy(data)) != before:
                changed += 1
        assert changed, f"{name} changed no seed"


def test_the_seeds_pass_the_oracle(fuzz_project: Path) -> None:
    rng = random.Random(0)
    for name, data in _POOL:
        outcome = run_case(Case(name, [], _dump(rng, data)), fuzz_project)
        assert outcome.accepted and outcome.bad == [], (name, outcome.bad)


def test_a_compile_in_another_process_is_byte_identical(fuzz_project: Path) -> None:
    # Another process has another hash seed: set or dict order must never leak out.
    rng = random.Random(11)
    for _ in range(3):
        outcome = run_case(make_case(rng, _POOL), fuzz_project, other_process=True)
        assert outcome.bad == [], outcome.bad


def test_the_oracle_refuses_what_kling_would() -> None:
    payload = {"model_name": "kling-v3-omni", "mode": "pro", "sound": "off", "prompt": "x"}
    payload["aspect_ratio"] = "16:9"
    assert _oracle({"tasks": [{"scene": "a", "payload": {**payload, "duration": "5"}}]}) == []
    refused = _oracle({"tasks": [{"scene": "a", "payload": {**payload, "duration": "20"}}]})
    assert refused and "scene a" in refused[0]
    image = {"model_name": "kling-v3-omni", "prompt": "x", "resolution": "1k", "n": 1}
    assert _oracle({"images": [{"name": "i", "payload": image}]}) == []
    refused = _oracle({"images": [{"name": "i", "payload": {**image, "resolution": "8k"}}]})
    assert refused and "generated image i" in refused[0]
    still = {"scene": "a", "payload": {**payload, "duration": "5"}}
    refused = _oracle({"tasks": [{**still, "stills": [{"payload": {**image, "prompt": ""}}]}]})
    assert refused and "still 1 of a" in refused[0]
