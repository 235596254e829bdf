"""Mutated lockfiles through the CLI: `plan`, `plan --json`, `status`, `preview` and `render`.

A lockfile arrives in pull requests, so every byte of it is untrusted input. A valid
lockfile is made once (the small film of tests/rendering.py, with sound: a preset and a
custom voice, narration on two scenes and an effect, rendered by the in-process
emulator), so it holds `voices`, `speech` and `effects` records beside the scenes; each
example copies that project, damages its lockfile (structure-aware edits, then
byte-level ones; sound records too: paths out of renders/, symlinks planted in
renders/NAME/audio, wrong sha256, NaN or huge numbers, a `creating` narration, a voice
without its id) and runs the five commands. Whatever the damage:

- the exit code is one of 0-4, and no output holds "Traceback" or "internal error";
- nothing is created or changed outside the project (not even a file that a symlink in
  renders/NAME/audio points to), no socket is opened, and neither /etc/hostname nor
  /etc/passwd is copied into renders/ (not even through a planted symlink);
- the lockfile is the mutated bytes as given, or whole JSON the loader accepts (strict
  JSON, unless NaN or Infinity came in: see test_a_saved_lockfile_is_strict_json); a
  lockfile the loader refuses makes every command exit 1 and is never overwritten.

`render` runs on the emulator `choose_backend` picks without KLING_* credentials, given
the fake clock and small clips of tests/rendering.py (the real one waits 1 s per task).

The crashes this test found are fixed; the reproducers at the end pin each one, and their
trigger values (NUL_CLIP and the rest below, a sound at the last attempt) are fuzzed with
the others.

LOCKFILE_FUZZ_EXAMPLES runs the property with more examples than the suite's 60.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from compiler import backends, mix
from compiler.cli import main
from compiler.errors import LockfileError
from compiler.lockfile import Lockfile
from tests.rendering import BOARD, FakeTime, make_emulator, render, write_image

KLING_ENV = ("KLING_API_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_BASE_URL")
# Outside the suite: LOCKFILE_FUZZ_EXAMPLES=1000 pytest tests/test_lockfile_fuzz.py
EXAMPLES = int(os.environ.get("LOCKFILE_FUZZ_EXAMPLES", "0") or 0)
COMMANDS = (
    ["plan", "film.yaml"],
    ["plan", "film.yaml", "--json"],
    ["status", "film.yaml"],
    ["preview", "film.yaml"],
    ["render", "film.yaml"],  # last: it may rewrite the lockfile and the clips
)
SCENES = ("opening", "climb", "coda")
SHA = "ab" * 32
PASSWD_MARK = b"root:x:0:0:"
HOSTNAME = Path("/etc/hostname").read_bytes() if Path("/etc/hostname").is_file() else b""

# Values that crashed storyboard once (pinned by the reproducers below).
NUL_CLIP = "film/a\x00.mp4"
SURROGATE_CLIP = "film/a\ud800.mp4"
LONG_CLIP = "film/" + "a" * 254 + ".mp4"  # the schema allows it; the file system does not
SURROGATE = "boom \ud800"
# And a take at attempt 100000, or a ledger of 10000 tasks: render once wrote a lockfile
# its own schema refused (test_render_writes_a_readable_lockfile).

# -- the valid lockfile, made once -----------------------------------------------------------


# The test film with sound: two voices (a preset, a custom one from a URL), narration on
# two scenes (one in each voice) and an effect on the third.
SOUND_BOARD = (
    BOARD.replace(
        "scenes:\n",
        "voices:\n"
        "  narrator: {preset: oversea_male1, language: en}\n"
        '  mira: {sample: {url: "https://samples.example/mira.wav"}, language: en}\n'
        "narrator: narrator\n"
        "scenes:\n",
    )
    .replace(
        "    first_frame: coast\n",
        '    first_frame: coast\n    narration: "The lamp had not been lit for a year."\n',
    )
    .replace(
        "  - id: climb\n",
        '  - id: climb\n    narrator: mira\n    narration: "I climbed every night."\n',
    )
    .replace(
        '    prompt: "The beam sweeps the sea."',
        '    sfx: "waves on rocks"\n    prompt: "The beam sweeps the sea."',
    )
)
SOUND_SECTIONS = ("voices", "speech", "effects")
AUDIO = ("opening.narration.mp3", "climb.narration.mp3", "coda.sfx.wav")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rendered project: film.yaml, coast.png, film.lock and renders/ (3 clips, 3 audio
    files in renders/film/audio, a film)."""
    project = tmp_path_factory.mktemp("lockfuzz") / "project"
    project.mkdir()
    (project / ".git").mkdir()
    write_image(project / "coast.png")
    (project / "film.yaml").write_text(SOUND_BOARD, encoding="utf-8")
    outcome = render(project, make_emulator(FakeTime()))
    assert not outcome.failed and outcome.film is not None
    doc = json.loads((project / "film.lock").read_text("utf-8"))
    assert sorted(doc["voices"]) == ["mira"] and sorted(doc["effects"]) == ["coda"]
    assert sorted(doc["speech"]) == ["climb", "opening"]
    assert sorted(p.name for p in (project / "renders" / "film" / "audio").iterdir()) == sorted(
        AUDIO
    )
    return project


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """No credentials (so the emulator backend), a fast emulator, and no socket at all.

    Returns the list of addresses anything tried to connect to (it must stay empty: the
    in-process emulator needs no socket, and a lockfile URL must never be fetched).
    """
    for name in KLING_ENV:
        monkeypatch.delenv(name, raising=False)
    real_name = backends.backend_name

    def fast_emulator(name: str | None, env: Any = os.environ) -> backends.Backend:
        assert real_name(name, env) == "emulator"
        return backends.emulator_backend(make_emulator(FakeTime()))

    monkeypatch.setattr(backends, "choose_backend", fast_emulator)
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise ConnectionRefusedError(f"lockfile fuzz: no sockets ({address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


# -- structure-aware mutations ---------------------------------------------------------------

HUGE = "x" * 100_000
DEEP = "@@deep@@"  # replaced in the JSON text by nested lists (json.dumps would recurse)
BIG_INT = "@@bigint@@"  # replaced by a 5,000-digit integer (beyond int's string limit)
VALUES = st.sampled_from(
    [
        None,
        0,
        -1,
        1.5,
        10**30,
        True,
        False,
        "",
        "x",
        HUGE,
        {"a": {"b": [1, {"c": None}]}},
        [1, "a", None],
        [],
        {},
        float("nan"),
        float("inf"),
        float("-inf"),
        "a\x00b",
        "../../x",
        "<script>alert(1)</script>",
        DEEP,
        BIG_INT,
    ]
)
SCENE_IDS = ["../x", "/etc/hostname", "a" * 300, "", "A", "x/y", "..", "brand-new", "a" * 64]
CLIP_FILES = [
    "../../outside/x.mp4",
    "/etc/hostname",
    "/etc/passwd",
    "film/../../x.mp4",
    "film/..\\..\\x.mp4",
    "film\\..\\..\\x.mp4",
    "film/" + "a" * 250 + ".mp4",
    "film/x.mp4",
    "other/climb.mp4",
    "film/opening.mp4",  # another scene's clip
    "film.mp4/x.mp4",  # through a file
    "film/index.html.mp4",
    "film/thumbs.mp4",
    "film/host.mp4",  # a planted symlink to /etc/hostname (see `plant`)
    "film/passwd.mp4",  # a planted symlink to /etc/passwd
    "film/ .mp4",
    "film/x.mp4\n",
    "",
    NUL_CLIP,
    SURROGATE_CLIP,
    LONG_CLIP,
    "film/" + "é" * 190 + ".mp4",  # under 200 characters, over 255 bytes
]
URLS = [
    "http://127.0.0.1:9/x",
    "https://0x7f000001/x",
    "https://127.1/x.mp4",
    "https://[::1]/x.mp4",
    "https://169.254.169.254/latest/meta-data",
    "https://localhost./x.mp4",
    "file:///etc/passwd",
    "http://emulator.invalid/_emulator/clips/1.mp4",
    "https://cdn.example.com/clip.mp4",
    "https://user:pass@example.com/x.mp4",
    "http://" + "a" * 9000,
]
LOCK_VERSIONS = [0, 3, "2", None, 1, 2.0, True, -1, 2**64, [2], {"v": 2}]
STATUSES = ["creating", "submitted", "processing", "succeed", "failed", "bogus", "", None]
UNITS = ["1e308", "NaN", "999999999.999999999", "-1", "0", "1" * 20, "2.4"]
TAKE_KEYS = ["0", "2", "01", "100", "1.0", " 1", "99", "-1", "", "1\x00"]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in `doc` (dict keys and list indexes), parents before children."""
    if isinstance(doc, dict):
        items: Any = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        return
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _tasks(doc: Any) -> list[dict[str, Any]]:
    """The task dicts in the document (current takes and history), where still dicts."""
    found: list[dict[str, Any]] = []
    scenes = doc.get("scenes") if isinstance(doc, dict) else None
    for entry in scenes.values() if isinstance(scenes, dict) else ():
        if not isinstance(entry, dict):
            continue
        takes = entry.get("takes")
        found += (
            [t for t in takes.values() if isinstance(t, dict)] if isinstance(takes, dict) else []
        )
        history = entry.get("history")
        found += [t for t in history if isinstance(t, dict)] if isinstance(history, list) else []
    return found


def _scenes(doc: Any) -> dict[str, Any]:
    scenes = doc.get("scenes") if isinstance(doc, dict) else None
    return scenes if isinstance(scenes, dict) else {}


Draw = Callable[[st.SearchStrategy[Any]], Any]


def _at_random_path(doc: Any, draw: Draw, under: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    try:
        start = _get(doc, under)
    except (KeyError, IndexError, TypeError):
        return None
    paths = [(*under, *p) for p in _paths(start)]
    return draw(st.sampled_from(paths)) if paths else None


def m_delete(doc: Any, draw: Draw, project: Path) -> None:
    path = _at_random_path(doc, draw)
    if path is not None:
        del _get(doc, path[:-1])[path[-1]]


def m_retype(doc: Any, draw: Draw, project: Path) -> None:
    path = _at_random_path(doc, draw)
    if path is not None:
        _get(doc, path[:-1])[path[-1]] = copy.deepcopy(draw(VALUES))


def m_payload(doc: Any, draw: Draw, project: Path) -> None:
    """Damage a scene's recorded request, and maybe its digest (then `plan` diffs them)."""
    scenes = _scenes(doc)
    if not scenes:
        return
    scene = draw(st.sampled_from(sorted(scenes)))
    entry = scenes[scene]
    if not isinstance(entry, dict):
        return
    choice = draw(st.integers(0, 4))
    if choice == 0 or not isinstance(entry.get("payload"), dict):
        entry["payload"] = copy.deepcopy(draw(VALUES))
    elif choice == 1:
        path = _at_random_path(entry, draw, ("payload",))
        if path is not None:
            _get(entry, path[:-1])[path[-1]] = copy.deepcopy(draw(VALUES))
    elif choice == 2:
        entry["payload"][draw(st.sampled_from(["multi_prompt", "image_list", "prompt"]))] = (
            copy.deepcopy(draw(VALUES))
        )
    elif choice == 3:
        entry["payload"]["image_list"] = [
            {"image_url": {"last_frame_of": "../../etc"}, "type": "first_frame"},
            {"image_url": "file:///etc/passwd"},
            "x",
        ]
    else:
        entry["payload"]["multi_prompt"] = [None, {"prompt": 5}, []]
    if draw(st.booleans()):
        entry["digest"] = SHA  # the work "changed": plan names what, render makes it again


def m_scene_id(doc: Any, draw: Draw, project: Path) -> None:
    scenes = _scenes(doc)
    if scenes:
        scene = draw(st.sampled_from(sorted(scenes)))
        scenes[draw(st.sampled_from(SCENE_IDS))] = scenes.pop(scene)


def m_lock_version(doc: Any, draw: Draw, project: Path) -> None:
    doc["lock_version"] = copy.deepcopy(draw(st.sampled_from(LOCK_VERSIONS)))  # [2], {"v": 2}


def m_legacy(doc: Any, draw: Draw, project: Path) -> None:
    """A version-1 lockfile: a backend per scene, no digest or take in the tasks."""
    doc["lock_version"] = 1
    for entry in _scenes(doc).values():
        if isinstance(entry, dict):
            entry["backend"] = draw(st.sampled_from(["kling", "emulator", "bogus", None]))
    for task in _tasks(doc):
        task.pop("backend", None)


def m_clip_file(doc: Any, draw: Draw, project: Path) -> None:
    tasks = [t for t in _tasks(doc) if isinstance(t.get("clip"), dict)]
    if tasks:
        task = draw(st.sampled_from(tasks))
        name = draw(st.sampled_from(CLIP_FILES))
        task["clip"]["file"] = name
        target = {"film/host.mp4": Path("/etc/hostname"), "film/passwd.mp4": Path("/etc/passwd")}
        if name in target and target[name].is_file() and draw(st.booleans()):
            # The lockfile vouches for the outside file: its true size and hash.
            data = target[name].read_bytes()
            task["clip"]["bytes"] = len(data)
            task["clip"]["sha256"] = hashlib.sha256(data).hexdigest()


def m_video_url(doc: Any, draw: Draw, project: Path) -> None:
    tasks = _tasks(doc)
    if tasks:
        task = draw(st.sampled_from(tasks))
        task["video_url"] = draw(st.sampled_from(URLS))
        if draw(st.booleans()):
            task["backend"] = "kling"  # a real result: downloaded again, never remade
        if draw(st.booleans()):
            task.pop("clip", None)


def m_task_field(doc: Any, draw: Draw, project: Path) -> None:
    tasks = _tasks(doc)
    if not tasks:
        return
    task = draw(st.sampled_from(tasks))
    field, values = draw(
        st.sampled_from(
            [
                ("status", STATUSES),
                ("units_charged", UNITS),
                ("attempt", [0, 1.0, 99999, 100001, 1_000_000, 1_000_001, 2**63, -5]),
                ("task_id", ["", "../../x", "1" * 300, None, "999"]),
                ("external_task_id", ["", "x" * 300, "sb-coda-x-t1", None]),
                ("backend", ["kling", "emulator", "bogus", None]),
                ("status_msg", ["", "KLING_API_KEY=abc", "x" * 10001, "\x1b[31mred", SURROGATE]),
                ("take", [1, 2, 0, 100, "1"]),
                ("digest", [SHA, "0" * 64, "short"]),
            ]
        )
    )
    task[field] = draw(st.sampled_from(values))


def m_take_key(doc: Any, draw: Draw, project: Path) -> None:
    scenes = [e for e in _scenes(doc).values() if isinstance(e, dict)]
    if scenes:
        takes = draw(st.sampled_from(scenes)).get("takes")
        if isinstance(takes, dict) and takes:
            key = draw(st.sampled_from(sorted(takes)))
            takes[draw(st.sampled_from(TAKE_KEYS))] = takes.pop(key)


def m_history(doc: Any, draw: Draw, project: Path) -> None:
    scenes = [e for e in _scenes(doc).values() if isinstance(e, dict)]
    tasks = _tasks(doc)
    if scenes and tasks:
        entry = draw(st.sampled_from(scenes))
        task = copy.deepcopy(draw(st.sampled_from(tasks)))
        count = draw(st.sampled_from([1, 3, 300]))
        entry["history"] = [copy.deepcopy(task) for _ in range(min(count, 3))] * (
            1 if count <= 3 else count // 3 + 1
        )


def m_film(doc: Any, draw: Draw, project: Path) -> None:
    film = doc.get("film")
    if not isinstance(film, dict):
        doc["film"] = {"file": "film.mp4", "sha256": SHA, "clips": [], "duration": 1}
        return
    field, values = draw(
        st.sampled_from(
            [
                ("file", ["../x.mp4", "/etc/hostname", "film.mp4", "x" * 300 + ".mp4", ""]),
                ("clips", [[], [SHA] * 3, [SHA] * 10_001, "x"]),
                ("duration", [-1, 0, float("nan"), 1e300, "10"]),
                ("sha256", [SHA, "X" * 64]),
            ]
        )
    )
    film[field] = draw(st.sampled_from(values))


def m_extras(doc: Any, draw: Draw, project: Path) -> None:
    """last_frames, elements, storyboard and unknown keys."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        doc["last_frames"] = draw(
            st.sampled_from([{SHA: SHA}, {SHA: "x"}, {"../x": SHA}, [], {SHA * 2: SHA}])
        )
    elif choice == 1:
        element = {"digest": SHA, "external_task_id": "sb-el", "status": "succeed"}
        element.update(draw(st.sampled_from([{}, {"element_id": 0}, {"element_id": 10**20}])))
        doc["elements"] = {draw(st.sampled_from(["hero", "../x", "a" * 65])): element}
    elif choice == 2:
        doc["storyboard"] = draw(st.sampled_from(["../../x.yaml", "a" * 300, "/etc/passwd", 5]))
    elif choice == 3:
        doc["__proto__"] = {"polluted": True}
    else:
        for entry in _scenes(doc).values():
            if isinstance(entry, dict):
                entry["extra"] = 1


# Mutations that keep the lockfile valid, so the commands get past the loader: what a
# collaborator's (or an attacker's) well-formed lockfile can make plan, render and preview do.
VALID_CLIP_FILES = [
    "film/x.mp4",
    "other/climb.mp4",
    "film/opening.mp4",
    "film.mp4/x.mp4",
    "film/index.html.mp4",
    "film/host.mp4",
    "film/passwd.mp4",
    "film/ .mp4",
    "film/" + "a" * 250 + ".mp4",
    "coast.png/x.mp4",
    "film/climb.mp4/..mp4",
]
VALID_URLS = [u for u in URLS if u.startswith(("http://", "https://")) and len(u) <= 8192]


def v_task(doc: Any, draw: Draw, project: Path) -> None:
    tasks = _tasks(doc)
    if not tasks:
        return
    task = draw(st.sampled_from(tasks))
    field, values = draw(
        st.sampled_from(
            [
                ("status", ["creating", "submitted", "processing", "succeed", "failed"]),
                ("units_charged", ["0", "999999999.999999999", "2.4", "000000001"]),
                ("attempt", [1, 2, 99998, 99999]),  # 100000: see below
                ("task_id", ["1", "../../x", "1" * 256, "none"]),
                ("external_task_id", ["x", "x" * 256, "sb-coda-x-t1", "../../etc/passwd"]),
                ("backend", ["kling", "emulator"]),
                ("status_msg", ["", "Bearer abc.def", "x" * 10000, "\x1b[31mred\x00"]),
                ("video_url", VALID_URLS),
            ]
        )
    )
    task[field] = draw(st.sampled_from(values))
    if draw(st.booleans()):
        task.pop(draw(st.sampled_from(["task_id", "units_charged", "video_url", "clip"])), None)


def v_clip(doc: Any, draw: Draw, project: Path) -> None:
    tasks = [t for t in _tasks(doc) if isinstance(t.get("clip"), dict)]
    if not tasks:
        return
    clip = draw(st.sampled_from(tasks))["clip"]
    field, values = draw(
        st.sampled_from(
            [
                ("file", VALID_CLIP_FILES),
                ("sha256", [SHA, "0" * 64]),
                ("bytes", [0, 1, 10**30, 2**63]),
                ("duration", [0, 0.001, 100000, float("nan")]),
            ]
        )
    )
    clip[field] = draw(st.sampled_from(values))
    if clip["file"] in ("film/host.mp4", "film/passwd.mp4") and draw(st.booleans()):
        target = Path("/etc/hostname" if clip["file"] == "film/host.mp4" else "/etc/passwd")
        if target.is_file():  # the lockfile vouches for the outside file: its size and hash
            clip["bytes"] = target.stat().st_size
            clip["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()


def v_payload(doc: Any, draw: Draw, project: Path) -> None:
    """A scene's recorded request changed (any object is valid) and its digest with it."""
    scenes = _scenes(doc)
    entry = scenes[draw(st.sampled_from(sorted(scenes)))]
    entry["digest"] = draw(st.sampled_from([SHA, "0" * 64]))
    payload = entry["payload"]
    key = draw(st.sampled_from(["multi_prompt", "image_list", "prompt", "duration", "x"]))
    value = draw(VALUES)
    payload[key] = copy.deepcopy(
        draw(
            st.sampled_from(
                [
                    value,
                    [value, {"prompt": value, "duration": value}],
                    [{"image_url": {"last_frame_of": value}}, {"image_url": value}],
                    [{"image_url": {"file": "../../etc/passwd", "sha256": SHA}}],
                ]
            )
        )
    )


def v_takes(doc: Any, draw: Draw, project: Path) -> None:
    """A second take, or the ledger, made of copies of a current task."""
    scenes = _scenes(doc)
    entry = scenes[draw(st.sampled_from(sorted(scenes)))]
    task = copy.deepcopy(entry["takes"]["1"])
    if draw(st.booleans()):
        entry["takes"][draw(st.sampled_from(["2", "99"]))] = task
    else:
        task["digest"] = draw(st.sampled_from([entry["digest"], SHA]))
        task["take"] = draw(st.sampled_from([1, 2, 99]))
        entry["history"] = [task] * draw(st.sampled_from([1, 2, 300]))


def v_extras(doc: Any, draw: Draw, project: Path) -> None:
    choice = draw(st.integers(0, 3))
    if "film" not in doc:
        return
    if choice == 0:
        film = doc["film"]
        film[draw(st.sampled_from(["clips", "duration", "sha256"]))] = draw(
            st.sampled_from([[], SHA, 0, 100000, float("nan")])
        )
        film["clips"] = film["clips"] if isinstance(film["clips"], list) else [SHA]
        film["sha256"] = film["sha256"] if isinstance(film["sha256"], str) else SHA
        if not isinstance(film["duration"], (int, float)):
            film["duration"] = 1
    elif choice == 1:
        doc["last_frames"] = {SHA: "0" * 64, **{clip: SHA for clip in doc["film"]["clips"]}}
    elif choice == 2:
        doc["elements"] = {
            "hero": {"digest": SHA, "external_task_id": "sb-el", "status": "processing"},
            "Ship_2": {
                "digest": SHA,
                "external_task_id": "x",
                "status": "succeed",
                "element_id": 10**20,
                "backend": "emulator",
            },
        }
    else:
        doc.pop("film")


# -- sound records: voices, speech (narration) and effects -------------------------------------

DECOY = "decoy.mp3"  # box/outside/decoy.mp3: a file outside the project a symlink may reach
DECOY_BYTES = b"ID3\x04\x00\x00\x00\x00\x00\x00 outside the project: never to be written"
AUDIO_FILES = [
    "../../x.mp3",
    "/etc/passwd",
    "/etc/hostname",
    "audio/../../../x.mp3",
    "audio/..\\..\\x.mp3",
    "audio\\..\\..\\x.mp3",
    "film/opening.mp4",
    "audio/x.mp3",
    "audio/climb.narration.mp3",  # another sound's file
    "audio/host.mp3",  # planted symlinks (see `plant`): to /etc/hostname,
    "audio/passwd.wav",  # to /etc/passwd,
    "audio/" + DECOY,  # and to box/outside/decoy.mp3
    "audio/ .mp3",
    "audio/x.mp3\n",
    "",
    "audio",
    "audio/",
    "audio/a\x00.mp3",
    "audio/a\ud800.mp3",
    "audio/" + "a" * 254 + ".mp3",
    "audio/" + "é" * 150 + ".wav",  # under 200 characters, over 255 bytes
]
VALID_AUDIO_FILES = [
    "audio/x.mp3",
    "audio/climb.narration.mp3",
    "audio/coda.sfx.wav",
    "audio/opening.narration.wav",
    "audio/host.mp3",
    "audio/passwd.wav",
    "audio/" + DECOY,
    "audio/ .mp3",
    "audio/coda.sfx.wav.mp3",
    "audio/" + "a" * 195 + ".mp3",
    "audio/" + "é" * 150 + ".wav",
]
SOUND_FIELDS: list[tuple[str, list[Any]]] = [
    ("file", AUDIO_FILES),
    ("sha256", [SHA, "0" * 64, "X" * 64, ""]),
    ("bytes", [-1, 0, 10**30, 2**63, 1.5, "1", BIG_INT]),
    ("duration", [float("nan"), float("inf"), -1, 0, 1e300, 100_001, "3", BIG_INT]),
    ("status", STATUSES),
    ("voice_id", ["", "x" * 300, "oversea_male1", 5, None]),
    ("external_task_id", ["", "x" * 300, "sb-fx-coda-x", None]),
    ("attempt", [0, 999_999, 1_000_000, 1_000_001, 2**63, -5, 1.0]),
    ("task_id", ["", "../../x", "999", None]),
    ("units_charged", UNITS),
    ("audio_url", URLS),
    ("backend", ["kling", "emulator", "bogus", None]),
    ("digest", [SHA, "short", None]),
    ("status_msg", ["", "KLING_API_KEY=abc", "x" * 10001, SURROGATE]),
    ("extra", [1]),
]
VALID_SOUND_FIELDS: list[tuple[str, list[Any]]] = [
    ("file", VALID_AUDIO_FILES),
    ("sha256", [SHA, "0" * 64]),
    ("bytes", [0, 1, 10**30, 2**63]),
    ("duration", [0, 0.001, 100_000, float("nan")]),
    ("status", ["creating", "submitted", "processing", "succeed", "failed"]),
    ("voice_id", ["oversea_male1", "x" * 256, "1"]),
    ("external_task_id", ["x", "x" * 256, "sb-fx-coda-x", "../../etc/passwd"]),
    ("attempt", [1, 2, 999_998, 999_999, 1_000_000]),
    ("task_id", ["1", "../../x", "1" * 256]),
    ("units_charged", ["0", "999999999.999999999", "0.05"]),
    ("audio_url", VALID_URLS),
    ("backend", ["kling", "emulator"]),
    ("digest", [SHA, "0" * 64]),
    ("status_msg", ["cut off: timed out", "Bearer abc.def", "x" * 10000, "\x1b[31mred\x00"]),
]
SOUND_KEYS = ["mira", "narrator", "brand_new", "coda", "climb", "opening", "../x", "a" * 65, ""]


def _sounds(doc: Any) -> list[dict[str, Any]]:
    """The sound records in the document (voices, narration, effects), where still dicts."""
    found: list[dict[str, Any]] = []
    for section in SOUND_SECTIONS:
        records = doc.get(section) if isinstance(doc, dict) else None
        if isinstance(records, dict):
            found += [r for r in records.values() if isinstance(r, dict)]
    return found


def m_sound_record(doc: Any, draw: Draw, project: Path) -> None:
    """Damage a sound record anywhere: a field's value or type, the record, its key, the
    whole section."""
    section = draw(st.sampled_from(SOUND_SECTIONS))
    records = doc.get(section)
    choice = draw(st.integers(0, 3))
    if choice == 0 or not isinstance(records, dict) or not records:
        doc[section] = copy.deepcopy(draw(VALUES))
        return
    key = draw(st.sampled_from(sorted(records)))
    if choice == 1:
        records[draw(st.sampled_from(SOUND_KEYS))] = records.pop(key)
    elif choice == 2 or not isinstance(records[key], dict):
        records[key] = copy.deepcopy(draw(VALUES))
    else:
        field, values = draw(st.sampled_from(SOUND_FIELDS))
        value = draw(st.sampled_from(values))
        if value is None:
            records[key].pop(field, None)
        else:
            records[key][field] = value


def v_sound(doc: Any, draw: Draw, project: Path) -> None:
    """A sound record changed within the schema: a field, and maybe one fewer."""
    sounds = _sounds(doc)
    if not sounds:
        return
    record = draw(st.sampled_from(sounds))
    field, values = draw(st.sampled_from(VALID_SOUND_FIELDS))
    record[field] = draw(st.sampled_from(values))
    if draw(st.booleans()):
        optional = ["task_id", "voice_id", "file", "sha256", "bytes", "audio_url"]
        record.pop(draw(st.sampled_from([*optional, "external_task_id", "duration"])), None)
    _vouch(record, project, draw)


def _vouch(record: dict[str, Any], project: Path, draw: Draw) -> None:
    """Maybe make the record vouch for the outside file its planted symlink reaches."""
    outside = {
        "audio/host.mp3": Path("/etc/hostname"),
        "audio/passwd.wav": Path("/etc/passwd"),
        "audio/" + DECOY: None,
    }
    name = record.get("file")
    if name not in outside or not draw(st.booleans()):
        return
    target = outside[name]
    data = DECOY_BYTES if target is None else target.read_bytes() if target.is_file() else b""
    record["bytes"] = len(data)
    record["sha256"] = hashlib.sha256(data).hexdigest()


def v_sound_case(doc: Any, draw: Draw, project: Path) -> None:
    """A well-formed sound record in a state a killed run, another machine or a hand
    edit leaves."""
    voices, speech, effects = (doc.get(section, {}) for section in SOUND_SECTIONS)
    case = draw(st.integers(0, 8))
    if case == 0 and speech:  # a cut-off TTS call: may have been paid, cannot be looked up
        entry = speech[draw(st.sampled_from(sorted(speech)))]
        entry.update(status="creating", status_msg="cut off: the connection dropped")
        for field in draw(st.sampled_from([(), ("file", "sha256", "bytes"), ("task_id",)])):
            entry.pop(field, None)
    elif case == 1 and "mira" in voices:  # a voice without the id it was given
        voices["mira"].pop("voice_id", None)
        voices["mira"]["status"] = draw(st.sampled_from(["succeed", "failed", "processing"]))
    elif case == 2:  # a voice, a narration or an effect for nothing the board has
        section = draw(st.sampled_from(SOUND_SECTIONS))
        name = "brand_new" if section == "voices" else "brand-new"
        doc.setdefault(section, {})[name] = {
            "digest": SHA,
            "status": "succeed",
            "file": "audio/x.mp3",
        }
    elif case == 3 and "coda" in effects:  # in flight: on Kling (re-attached), or the emulator's
        entry = effects["coda"]
        entry.update(status=draw(st.sampled_from(["submitted", "processing"])))
        entry["backend"] = draw(st.sampled_from(["kling", "emulator"]))
    elif case == 4 and "coda" in effects:  # failed, at the last attempt but one
        effects["coda"].update(status="failed", attempt=999_999, status_msg="boom")
    elif case == 5 and "mira" in voices:  # a voice, lost with its emulator, made again
        voices["mira"]["attempt"] = 999_999
        speech.get("climb", {})["digest"] = SHA  # its narration is made again: so is it
    elif case == 6 and speech:  # Kling's narration, its file gone: downloaded again
        entry = speech[draw(st.sampled_from(sorted(speech)))]
        entry.update(backend="kling", audio_url=draw(st.sampled_from(VALID_URLS)))
        entry.pop(draw(st.sampled_from(["file", "sha256"])), None)
    elif case == 7 and "opening" in speech and "coda" in effects:  # two records, one file
        speech["opening"]["file"] = effects["coda"]["file"]
        speech["opening"]["sha256"] = effects["coda"]["sha256"]
        speech["opening"]["bytes"] = effects["coda"]["bytes"]
    else:  # every sound record gone
        for section in SOUND_SECTIONS:
            doc.pop(section, None)


VALID_MUTATIONS = {
    f.__name__[2:]: f for f in (v_task, v_clip, v_payload, v_takes, v_extras, v_sound, v_sound_case)
}
VALID_MUTATIONS["legacy"] = m_legacy
SOUND_MUTATIONS = ("sound", "sound_case", "sound_record")
DOC_MUTATIONS = {
    f.__name__[2:]: f
    for f in (
        m_delete,
        m_retype,
        m_payload,
        m_scene_id,
        m_lock_version,
        m_legacy,
        m_clip_file,
        m_video_url,
        m_task_field,
        m_take_key,
        m_history,
        m_film,
        m_extras,
        m_sound_record,
    )
}

# -- byte-level mutations --------------------------------------------------------------------


def _encode(doc: Any, draw: Draw) -> bytes:
    text = json.dumps(doc, indent=2, sort_keys=True)  # NaN and Infinity as JSON allows them
    depth = draw(st.sampled_from([50, 900, 10_000]))
    text = text.replace(json.dumps(DEEP), "[" * depth + "]" * depth)
    text = text.replace(json.dumps(BIG_INT), "1" + "0" * 5000)
    return text.encode("utf-8")


def b_truncate(data: bytes, draw: Draw) -> bytes:
    return data[: draw(st.integers(0, max(0, len(data) - 1)))]


def b_bad_utf8(data: bytes, draw: Draw) -> bytes:
    at = draw(st.integers(0, len(data)))
    bad = draw(
        st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"])
    )
    return data[:at] + bad + data[at:]


def b_nan_token(data: bytes, draw: Draw) -> bytes:
    numbers = list(re.finditer(rb"(?<=: )-?[0-9][0-9.eE+-]*", data))
    if not numbers:
        return data
    match = draw(st.sampled_from(numbers))
    token = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]))
    return data[: match.start()] + token + data[match.end() :]


def b_replace(data: bytes, draw: Draw) -> bytes:
    return draw(
        st.sampled_from(
            [
                b"",
                b"\xef\xbb\xbf" + data,  # a byte-order mark
                b"[" * 10_000 + b"]" * 10_000,
                b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
                b"null",
                b"[]",
                b'"lockfile"',
                data.replace(b'"lock_version": 2', b'"lock_version": 2, "lock_version": 3'),
                data.replace(b'"scenes": {', b'"scenes": {"opening": {}, ', 1),
                data + b"\x00",
                data + b"{}",
            ]
        )
    )


BYTE_MUTATIONS = {
    "truncate": b_truncate,
    "bad_utf8": b_bad_utf8,
    "nan": b_nan_token,
    "replace": b_replace,
}


def plant(project: Path, text: str) -> None:
    """Symlinks in renders/ to files outside the project, for `film/host.mp4`,
    `audio/decoy.mp3` and the like, when the lockfile `text` names them."""
    film = project / "renders" / "film"
    decoy = project.parent.parent / "outside" / DECOY
    links = {
        "film/host.mp4": "/etc/hostname",
        "film/passwd.mp4": "/etc/passwd",
        "audio/host.mp3": "/etc/hostname",
        "audio/passwd.wav": "/etc/passwd",
        "audio/" + DECOY: str(decoy),
    }
    for name, target in links.items():
        if json.dumps(name) in text and Path(target).exists():
            link = film.parent / name if name.startswith("film/") else film / name
            link.unlink(missing_ok=True)
            link.symlink_to(target)


# -- the checks ------------------------------------------------------------------------------


def _listing(root: Path, skip: Path | None = None) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and here == skip:
            dirnames.clear()
            continue
        found |= {(here / name).relative_to(root).as_posix() for name in dirnames + filenames}
    return found


def _contents(root: Path, skip: Path) -> dict[str, str]:
    """Every entry under `root` but `skip`: a file by its sha256, a link by its target."""
    found = {}
    for name in _listing(root, skip):
        path = root / name
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_file():
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[name] = "dir"
    return found


def _cues_checked(
    film: Path, dest: Path, *, cues: Sequence[mix.Cue], **kwargs: Any
) -> mix.MixResult:
    """The mix, but for its checks of what it is given: about 0.25 s a film, the costliest
    step by far, in most examples of the suite (LOCKFILE_FUZZ_EXAMPLES mixes every one)."""
    seconds = mix.probe(film).duration
    renders = film.parent
    for cue in cues:
        assert cue.path.resolve().is_relative_to(renders.resolve()), cue  # never outside
        assert cue.path.is_file() and 0 <= cue.start < seconds, (cue, seconds)
    return mix.MixResult(dest, seconds, -14.0, -2.0, "linear", 0.0, 0.0)


def _readable(project: Path) -> bool:
    """Whether the loader accepts the lockfile; anything but LockfileError is a crash."""
    try:
        Lockfile.for_storyboard(project / "film.yaml")
    except LockfileError:
        return False
    return True


def _strict_json(data: bytes) -> bool:
    def refuse(token: str) -> None:
        raise ValueError(token)

    try:
        json.loads(data.decode("utf-8"), parse_constant=refuse)
    except ValueError:
        return False
    return True


def _nothing_leaked(renders: Path, planted: set[str]) -> None:
    """No outside file reached renders/: no copy of /etc/passwd, /etc/hostname or the decoy,
    no link out."""
    for path in renders.rglob("*"):
        if path.as_posix() in planted:
            continue
        assert not path.is_symlink(), path
        if path.is_file():
            data = path.read_bytes()
            assert PASSWD_MARK not in data and DECOY_BYTES not in data, path
            assert not HOSTNAME or data != HOSTNAME, path
            if len(HOSTNAME.strip()) >= 8:
                assert HOSTNAME.strip() not in data, path


def run_commands(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    attempts: list[object],
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[str, int]]:
    """Run every command on the project as it is; check the invariants; return the codes."""
    lock = project / "film.lock"
    given_bytes = lock.read_bytes()
    readable = _readable(project)
    nan_in = b"NaN" in given_bytes or b"Infinity" in given_bytes
    box = project.parent.parent
    outside_before = _contents(box, skip=project)
    project_before = _listing(project, skip=project / "renders")
    planted = {p.as_posix() for p in (project / "renders").rglob("*") if p.is_symlink()}
    codes = []
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.chdir(project)
        for argv in COMMANDS:
            code = main(argv)
            out, err = capsys.readouterr()
            shown = (
                f"{' '.join(argv)} -> {code} (readable: {readable})\n{out[-2000:]}\n{err[-2000:]}"
            )
            codes.append((" ".join(argv[:1] + argv[2:]), code))
            assert code in (0, 1, 2, 3, 4), shown
            assert "Traceback" not in out + err, shown
            assert "internal error" not in out + err, shown
            assert attempts == [], shown
            now = lock.read_bytes() if lock.exists() else None
            if not readable:
                assert code == 1 and "storyboard: error: film.lock" in err, shown
                assert now == given_bytes, shown  # a refused lockfile is never overwritten
            elif now != given_bytes:
                # Rewritten: whole, and loadable. Strict JSON unless NaN came in (see
                # test_a_saved_lockfile_is_strict_json).
                assert now is not None and _readable(project), shown
                assert _strict_json(now) or nan_in, shown
    assert _contents(box, skip=project) == outside_before  # nothing made or changed there
    assert _listing(project, skip=project / "renders") == project_before  # no stray temp files
    _nothing_leaked(project / "renders", planted)
    return codes


# -- the property ----------------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES or 60,
    deadline=None,
    derandomize=not EXAMPLES,  # a longer run outside the suite explores new lockfiles
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_mutated_lockfile_never_crashes_a_command(
    template: Path,
    cli: list[object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    data: st.DataObject,
) -> None:
    box = Path(tempfile.mkdtemp(dir=tmp_path))
    project = box / "up" / "project"
    shutil.copytree(template, project, symlinks=True)
    try:
        doc = json.loads((template / "film.lock").read_text("utf-8"))
        draw = data.draw
        # Half the examples keep the lockfile well-formed (to get past the loader), half
        # break it anywhere, down to its bytes.
        valid = draw(st.booleans(), "well-formed")
        mutations = VALID_MUTATIONS if valid else {**VALID_MUTATIONS, **DOC_MUTATIONS}
        size = (1, 3) if valid else (0, 3)
        # The sound records' mutations twice as likely as the others: they are the newest.
        weighted = sorted(mutations) + [name for name in SOUND_MUTATIONS if name in mutations]
        names = draw(st.lists(st.sampled_from(weighted), min_size=size[0], max_size=size[1]))
        decoy = box / "outside" / DECOY  # what a symlink in renders/film/audio may reach
        decoy.parent.mkdir()
        decoy.write_bytes(DECOY_BYTES)
        for name in names:
            try:
                mutations[name](doc, draw, project)
            except (KeyError, IndexError, TypeError, AttributeError):
                # A mutation of VALID_MUTATIONS takes the lockfile's form as given: after
                # a mutation that broke it, it may not apply (then it changes nothing more).
                if valid or name not in VALID_MUTATIONS:
                    raise
        audio = project / "renders" / "film" / "audio"
        if draw(st.booleans(), "an audio file links out"):
            link = audio / draw(st.sampled_from(AUDIO))
            link.unlink()
            link.symlink_to(decoy)
            if draw(st.booleans(), "the lockfile vouches for it"):
                for record in _sounds(doc):
                    if record.get("file") == f"audio/{link.name}":
                        record.update(bytes=len(DECOY_BYTES))
                        record.update(sha256=hashlib.sha256(DECOY_BYTES).hexdigest())
        plant(project, json.dumps(doc))
        encoded = _encode(doc, draw)
        if not valid:
            for name in draw(st.lists(st.sampled_from(sorted(BYTE_MUTATIONS)), max_size=2)):
                encoded = BYTE_MUTATIONS[name](encoded, draw)
        if draw(st.booleans(), "delete a clip"):
            (project / "renders" / "film" / f"{draw(st.sampled_from(SCENES))}.mp4").unlink()
        if draw(st.booleans(), "delete an audio file"):
            (audio / draw(st.sampled_from(AUDIO))).unlink(missing_ok=True)
        (project / "film.lock").write_bytes(encoded)
        note(f"lockfile ({len(encoded)} bytes): {encoded[:1500]!r}")
        for name in names:
            event(f"mutation {name}")
        real = EXAMPLES > 0 or draw(st.sampled_from([False, False, False, True]), "mix for real")
        event("mixed for real" if real else "mix: cues checked")
        with mock.patch.object(mix, "mix_film", mix.mix_film if real else _cues_checked):
            codes = run_commands(project, capsys, cli, monkeypatch)
        note(f"exit codes: {codes}")
        event(
            ("well-formed" if valid else "broken")
            + (", readable" if codes[0][1] != 1 else ", refused")
        )
        event("render exit " + str(codes[-1][1]))
    finally:
        shutil.rmtree(box, ignore_errors=True)


def test_the_unmutated_lockfile_passes_every_command(
    template: Path,
    cli: list[object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The baseline the fuzz damages: every command succeeds, the lockfile untouched."""
    project = tmp_path / "up" / "project"
    shutil.copytree(template, project, symlinks=True)
    before = (project / "film.lock").read_bytes()
    assert run_commands(project, capsys, cli, monkeypatch) == [
        ("plan", 0),
        ("plan --json", 0),
        ("status", 0),
        ("preview", 0),
        ("render", 0),
    ]
    assert (project / "film.lock").read_bytes() == before


# -- crashes found by the fuzz: minimal reproducers ------------------------------------------


def _with(template: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    project = tmp_path / "up" / "project"
    shutil.copytree(template, project, symlinks=True)
    doc = json.loads((project / "film.lock").read_text("utf-8"))
    edit(doc)
    (project / "film.lock").write_text(json.dumps(doc, indent=2), "utf-8")  # \ud800 escaped
    return project


def _coda(doc: dict[str, Any]) -> dict[str, Any]:
    take: dict[str, Any] = doc["scenes"]["coda"]["takes"]["1"]
    return take


def _clip_file(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: _coda(doc)["clip"].update(file=name)


def _failed_with(message: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: _coda(doc).update(status="failed", status_msg=message)


def _prompt(text: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["scenes"]["coda"]["payload"].update(prompt=text)


def _nan_duration(doc: dict[str, Any]) -> None:
    doc["scenes"]["climb"]["takes"]["1"]["clip"]["duration"] = float("nan")
    _coda(doc)["clip"]["sha256"] = "0" * 64  # coda is made again, so the lockfile is saved


@pytest.mark.parametrize(
    ("edit", "command"),
    [
        pytest.param(
            _clip_file(NUL_CLIP),
            "plan",
            id="nul-in-clip-file",
        ),
        pytest.param(
            _clip_file(SURROGATE_CLIP),
            "plan",
            id="surrogate-in-clip-file",
        ),
        pytest.param(
            _clip_file(LONG_CLIP),
            "plan",
            id="clip-name-too-long",
        ),
        pytest.param(
            _failed_with(SURROGATE),
            "preview",
            id="surrogate-in-status-msg-preview",
        ),
        pytest.param(
            _failed_with(SURROGATE),
            "status",
            id="surrogate-in-status-msg-status",
        ),
        pytest.param(
            _prompt("x\ud800"),
            "render",
            id="surrogate-in-payload-render",
        ),
    ],
)
def test_crash_reproducer(
    template: Path,
    cli: list[object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
    command: str,
) -> None:
    project = _with(template, tmp_path, edit)
    monkeypatch.chdir(project)
    code = main([command, "film.yaml"])
    out, err = capsys.readouterr()
    assert "internal error" not in out + err and "Traceback" not in out + err, err
    assert code in (0, 1, 2, 3, 4)


def test_a_saved_lockfile_is_strict_json(
    template: Path,
    cli: list[object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    project = _with(template, tmp_path, _nan_duration)
    given_bytes = (project / "film.lock").read_bytes()
    monkeypatch.chdir(project)
    code = main(["render", "film.yaml"])
    now = (project / "film.lock").read_bytes()
    assert code == 1 or now == given_bytes or _strict_json(now), capsys.readouterr()


def _last_attempt(doc: dict[str, Any]) -> None:
    doc["scenes"]["climb"]["takes"]["1"]["attempt"] = 100_000  # the schema's maximum


def _full_ledger(doc: dict[str, Any]) -> None:
    doc["scenes"]["climb"]["history"] = [{"external_task_id": "x", "status": "failed"}] * 10_000
    doc["scenes"]["climb"]["takes"]["1"]["status"] = "failed"  # retired to the ledger: 10001


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(
            _last_attempt,
            id="attempt-100000",
        ),
        pytest.param(
            _full_ledger,
            id="history-10000",
        ),
    ],
)
def test_render_writes_a_readable_lockfile(
    template: Path,
    cli: list[object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
) -> None:
    project = _with(template, tmp_path, edit)
    assert _readable(project)
    (project / "renders" / "film" / "climb.mp4").unlink()
    monkeypatch.chdir(project)
    code = main(["render", "film.yaml"])
    assert code == 0, capsys.readouterr().err
    assert _readable(project)


# -- found by the fuzz, fixed: a sound at the schema's last attempt, made again ------------
# (it was saved at attempt 1,000,001, a lockfile every command then refused; now the plan
# stops with a diagnostic naming the record, as a take's does).


def _sound_retried(section: str, key: str) -> Callable[[dict[str, Any]], None]:
    """A failed narration or effect at the last attempt: the next render retries it."""
    return lambda doc: doc[section][key].update(status="failed", attempt=1_000_000)


def _voice_lost(doc: dict[str, Any]) -> None:
    """A voice at the last attempt that a new emulator lost, needed again by a narration."""
    doc["voices"]["mira"]["attempt"] = 1_000_000
    doc["speech"]["climb"]["digest"] = SHA  # climb's narration (in mira) is made again


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(_sound_retried("effects", "coda"), id="effect"),
        pytest.param(_sound_retried("speech", "opening"), id="narration"),
        pytest.param(_voice_lost, id="voice"),
    ],
)
def test_render_writes_a_readable_lockfile_after_a_sound_at_the_last_attempt(
    template: Path,
    cli: list[object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
) -> None:
    project = _with(template, tmp_path, edit)
    assert _readable(project)
    monkeypatch.chdir(project)
    code = main(["render", "film.yaml"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and code in (0, 1, 2, 3, 4), err
    assert _readable(project), err  # never a lockfile its own schema refuses
