"""Turn schema-valid data into the IR: settings, checked media references, scenes.

SourceDoc → Storyboard. Local images are opened here (Pillow reads only the header) and
hashed, paths are kept inside the project, and URLs must be public https.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from .diagnostics import Diagnostic, did_you_mean
from .hosts import is_private_host
from .load import JsonPath, SourceDoc
from .model import (
    ElementRef,
    ImageRef,
    RefKind,
    Refs,
    Scene,
    Settings,
    Shot,
    Soundtrack,
    Storyboard,
    VideoRef,
    VideoUse,
    Voice,
    limits,
    model_data,
    sound,
)
from .request import LocalFile, VoiceMedia, VoiceRequest

# Resource bounds (README "Limits"): what one file may hold before the rest is not read.
MAX_SCENES = 1000
MAX_SHOTS = 24  # Kling takes 6; more are checked, up to this many, to report them all

DEFAULTS = {"model": "kling-v3-omni", "mode": "pro", "aspect_ratio": "16:9", "sound": "off"}
_REF_KIND: dict[str, RefKind] = {"images": "image", "elements": "element", "videos": "video"}


def find_project_root(start: Path) -> Path:
    """The nearest enclosing git work tree, else the storyboard's own directory."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


SETTINGS = ("model", "mode", "aspect_ratio", "sound")
# The words YAML 1.1 reads as true or false, in the three casings it knows; a switch
# (`sound`, `enabled`, `keep_original_sound`) takes any of them, and `true`/`false`.
SWITCH_ON = frozenset(w for w in ("on", "yes", "true") for w in (w, w.title(), w.upper()))
SWITCH_OFF = frozenset(w for w in ("off", "no", "false") for w in (w, w.title(), w.upper()))


def switch(value: Any) -> bool:
    """A switch value the schema accepted, as a bool."""
    return value is True or (isinstance(value, str) and value in SWITCH_ON)


class _Broken:
    """A value that is written but unusable: it broke the schema, and is reported."""


class _Missing:
    """A value that is not written at all."""


BROKEN = _Broken()
MISSING = _Missing()


class _Resolver:
    def __init__(
        self, doc: SourceDoc, file: Path, broken_paths: set[JsonPath], cache: str | None
    ) -> None:
        self.doc = doc
        self.cache = cache  # the render cache in effect: an s3:// one can lend samples
        self.base_dir = file.resolve().parent
        self.project_root = find_project_root(self.base_dir)
        self.broken_paths = broken_paths
        self.problems: list[Diagnostic] = []
        self.broken_voices: set[str] = set()
        self.voice_table: dict[str, Voice] = {}
        self.top_narrator: str | None = None

    def problem(self, path: JsonPath, code: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(self.doc.loc(path), code, message, hint))

    def broken(self, path: JsonPath) -> bool:
        """Whether the value at `path`, or one that holds it, broke the schema."""
        return bool(self.broken_paths) and any(
            path[:n] in self.broken_paths for n in range(len(path) + 1)
        )

    def value(self, path: JsonPath) -> Any:
        """The value at `path`: BROKEN when unusable, MISSING when not written."""
        if self.broken(path):
            return BROKEN
        value = self.doc.data
        for part in path:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and isinstance(part, int) and part < len(value):
                value = value[part]
            else:
                return MISSING
        return value

    def table(self, path: JsonPath) -> dict[str, Any] | _Broken:
        """A mapping of names (vars, a kind of refs): BROKEN, or its usable entries."""
        value = self.value(path)
        if value is MISSING:
            return {}
        if not isinstance(value, dict):
            return BROKEN
        return {k: v for k, v in value.items() if not self.broken((*path, k))}

    def settings(
        self, at: JsonPath, base: Settings | None, base_unknown: frozenset[str] = frozenset()
    ) -> tuple[Settings, frozenset[str]]:
        """The task settings written at `at` over `base` (or the defaults); and which of
        them are unknown, because the value that sets them is broken."""
        values: dict[str, Any] = {}
        unknown: set[str] = set()
        for name in SETTINGS:
            inherited = DEFAULTS[name] if base is None else getattr(base, name)
            value = self.value((*at, name))
            if value is BROKEN:
                unknown.add(name)
                value = inherited
            elif value is MISSING:
                value = inherited
                if name in base_unknown:
                    unknown.add(name)
            values[name] = value
        sound = values["sound"]
        values["sound"] = sound if isinstance(sound, bool) else switch(sound)
        return Settings(**values), frozenset(unknown)

    # -- references ---------------------------------------------------------------------

    def refs(self, top: Settings, voices: dict[str, Voice] | None = None) -> Refs:
        broken: set[tuple[RefKind, str]] = set()
        for bad in self.broken_paths:
            if len(bad) >= 3 and bad[0] == "refs" and bad[1] in _REF_KIND:
                broken.add((_REF_KIND[str(bad[1])], str(bad[2])))
        tables = {kind: self.table(("refs", kind)) for kind in _REF_KIND}
        broken_kinds = frozenset(
            _REF_KIND[kind] for kind, table in tables.items() if isinstance(table, _Broken)
        )
        data = {kind: table for kind, table in tables.items() if isinstance(table, dict)}
        images: dict[str, ImageRef] = {}
        elements: dict[str, ElementRef] = {}
        videos: dict[str, VideoRef] = {}
        for name, value in data.get("images", {}).items():
            path: JsonPath = ("refs", "images", name)
            if ("image", name) in broken:
                continue
            image = self.image(name, path, value, top)
            if image is None:
                broken.add(("image", name))
            else:
                images[name] = image
        for name, value in data.get("elements", {}).items():
            if ("element", name) in broken:
                continue
            path = ("refs", "elements", name)
            if isinstance(value, dict) and "images" in value:
                generated = {n for n, image in images.items() if image.is_generated}
                element = self.made_element(name, path, value, generated, voices or {})
                if element is None:
                    broken.add(("element", name))
                else:
                    elements[name] = element
                continue
            element_id = value if isinstance(value, int) else value["id"]
            elements[name] = ElementRef(name, path, element_id)
        for name, value in data.get("videos", {}).items():
            path = ("refs", "videos", name)
            if ("video", name) in broken:
                continue
            if self.url_ok((*path, "url"), value["url"], "video"):
                videos[name] = VideoRef(name, path, value["url"], value.get("duration"))
            else:
                broken.add(("video", name))
        return Refs(images, elements, videos, frozenset(broken), broken_kinds)

    def made_element(
        self,
        name: str,
        path: JsonPath,
        value: dict[str, Any],
        generated: set[str],
        voices: dict[str, Voice],
    ) -> ElementRef | None:
        """An element storyboard creates from local images: each must be a usable image,
        and its `voice`, if any, a voice defined under `voices:`."""
        voice: VoiceMedia | None = None
        kind: str | None = value.get("kind")
        if "voice" in value:
            voice_name = value["voice"]
            if voice_name in voices:
                voice = voices[voice_name].media
            else:
                if not self.voice_broken(voice_name):
                    self.unknown_voice((*path, "voice"), voice_name, voices)
                return None
            speaking = model_data()["voice_element_kinds"]
            if kind is not None and kind not in speaking:
                self.problem(
                    (*path, "voice"),
                    "element-voice-kind",
                    f"element '{name}' is of kind '{kind}', and Kling binds a voice only to "
                    "character (humanoid) image elements",
                    "remove `voice:`, or say `kind: character` if it is a person or a humanoid",
                )
                return None
        images = []
        for index, file in enumerate(value["images"]):
            if file in generated and not (self.base_dir / file).exists():
                self.problem(
                    (*path, "images", index),
                    "element-generated-image",
                    f"element '{name}' cannot be made from generated image '{file}'",
                    "an element is made from local image files, before any image is "
                    f"generated; mention the image in prompts instead: {{{{ image.{file} }}}}",
                )
                return None
            image = self.local_image(f"{name}[{index}]", (*path, "images", index), file)
            if image is None:
                return None
            images.append(image)
        digests = [image.sha256 for image in images]
        for index, digest in enumerate(digests):
            if digest in digests[:index]:
                self.problem(
                    (*path, "images", index),
                    "element-images",
                    f"element '{name}' lists the same image twice",
                    "give 2-4 different views; Kling refuses a repeated frontal image (§7.1)",
                )
                return None
        return ElementRef(
            name,
            path,
            images=tuple(images),
            description=value["description"],
            voice=voice,
            kind=kind,
        )

    # -- sound ---------------------------------------------------------------------------

    def voice_broken(self, name: str) -> bool:
        """Whether the voice `name` is defined but broken (reported where it is defined)."""
        return name in self.broken_voices or "*" in self.broken_voices

    def unknown_voice(self, path: JsonPath, name: str, voices: dict[str, Voice]) -> None:
        self.problem(
            path,
            "unknown-voice",
            f"unknown voice '{name}'",
            did_you_mean(name, voices)
            or f"define it under `voices:`, e.g. `{name}: {{preset: oversea_male1, language: en}}`",
        )

    def voices(self) -> dict[str, Voice]:
        """The voices under `voices:` that are usable; the others are in `broken_voices`."""
        spec = sound()
        table = self.table(("voices",))
        if isinstance(table, _Broken):
            self.broken_voices.add("*")
            return {}
        raw = self.value(("voices",))
        if isinstance(raw, dict):
            self.broken_voices.update(str(n) for n in raw if n not in table)
        voices: dict[str, Voice] = {}
        for name, value in table.items():
            path: JsonPath = ("voices", name)
            language = value.get("language")  # None: the preset's own, else English
            speed = float(value.get("speed", spec["speed"]["default"]))
            voice: Voice | None
            if "preset" in value:
                voice = self.preset_voice(name, path, value["preset"], language, speed)
            else:
                voice = self.custom_voice(name, path, value["sample"], language, speed)
            if voice is None:
                self.broken_voices.add(name)
            else:
                voices[name] = voice
        return voices

    def preset_voice(
        self, name: str, path: JsonPath, preset: str, language: str | None, speed: float
    ) -> Voice | None:
        presets: dict[str, list[str]] = sound()["presets"]
        if preset not in presets:
            self.problem(
                (*path, "preset"),
                "voice-preset",
                f"unknown preset voice '{preset}'",
                did_you_mean(preset, presets) or "name one of Kling's preset voices",
            )
            return None
        language = language or presets[preset][0]
        if language not in presets[preset]:
            written = self.value((*path, "language")) is not MISSING
            self.problem(
                (*path, "language") if written else (*path, "preset"),
                "voice-language",
                f"'{language}' is a language the voice does not speak: preset voice "
                f"'{preset}' speaks {', '.join(presets[preset])}",
                f"set `language: {presets[preset][0]}`, or choose a preset voice that "
                f"speaks '{language}'",
            )
            return None
        return Voice(name, path, language, speed, preset=preset)

    def custom_voice(
        self, name: str, path: JsonPath, sample: Any, language: str | None, speed: float
    ) -> Voice | None:
        spec = sound()
        language = language or "en"
        limit = spec["voice_name_chars"]
        if len(name) > limit:
            self.problem(
                path,
                "voice-name",
                f"a custom voice's name is at most {limit} characters (Kling's voice_name); "
                f"'{name}' has {len(name)}",
                "give the voice a shorter name",
            )
            return None
        at: JsonPath = (*path, "sample")
        if isinstance(sample, dict):
            url = sample["url"]
            if not self.url_ok((*at, "url"), url, "voice sample", spec["sample_suffixes"]):
                return None
            return Voice(name, path, language, speed, request=VoiceRequest(name, sample_url=url))
        found = self.local_sound(at, sample, "voice sample", spec["sample_suffixes"])
        if found is None:
            return None
        file, real = found
        seconds = _audio_seconds(str(real), *_stamp(real))
        low, high = spec["sample_seconds"]["min"], spec["sample_seconds"]["max"]
        if seconds is None:
            self.problem(
                at,
                "voice-sample-format",
                f"voice sample '{sample}' cannot be read as audio",
                "give a 5-30 s .mp3, .wav, .mp4 or .mov of one clean voice",
            )
            return None
        if not low <= seconds <= high:
            self.problem(
                at,
                "voice-sample-length",
                f"voice sample '{sample}' is {seconds:.1f} s long; Kling makes a voice from "
                f"{low}-{high} s of speech",
                "trim it to 5-30 s of one clean voice"
                if seconds > high
                else "record a longer sample of 5-30 s",
            )
            return None
        if not (self.cache or "").startswith("s3://"):
            self.problem(
                at,
                "voice-sample-local",
                f"voice sample '{sample}' is a local file, and Kling fetches samples only "
                "by URL (no upload)",
                "give `sample: {url: https://...}`, or set STORYBOARD_CACHE to an s3:// "
                "cache: the render uploads the sample there and sends a presigned link",
            )
            return None
        local = LocalFile(file, _sha256(str(real), *_stamp(real)))
        return Voice(name, path, language, speed, request=VoiceRequest(name, sample=local))

    def local_sound(
        self, path: JsonPath, rel: str, what: str, suffixes: list[str]
    ) -> tuple[str, Path] | None:
        """A local audio (or video) file inside the project: its posix path and real path."""
        problem = _path_problem(rel)
        if problem is not None:
            self.problem(path, "path-invalid", problem[0], problem[1])
            return None
        if PurePosixPath(rel).is_absolute() or (len(rel) > 1 and rel[1] == ":"):
            self.problem(
                path,
                "path-absolute",
                f"{what} path '{rel}' is absolute",
                "write it relative to the storyboard file, so the project works on any machine",
            )
            return None
        lexical = Path(os.path.normpath(self.base_dir / rel))
        if not lexical.is_relative_to(self.project_root) or _path_shape(rel) is not None:
            self.problem(
                path,
                "path-escape" if _path_shape(rel) is None else "path-invalid",
                f"{what} path '{rel}' leads outside the project or names no file",
                "keep media inside the project, and name the file itself",
            )
            return None
        suffix = PurePosixPath(rel).suffix.lower()
        if suffix not in suffixes:
            self.problem(
                path,
                "sound-format",
                f"{what} '{rel}' has the extension '{suffix}'; storyboard takes "
                f"{', '.join(suffixes)}",
            )
            return None
        real = Path(os.path.realpath(lexical))
        if not lexical.exists() or not real.is_file():
            siblings = _names_in(lexical.parent)
            hint = did_you_mean(lexical.name, siblings) if siblings else None
            self.problem(
                path,
                "sound-missing",
                f"{what} file '{rel}' does not exist",
                hint if hint and hint.startswith("did") else None,
            )
            return None
        if not real.is_relative_to(Path(os.path.realpath(self.project_root))):
            self.problem(
                path,
                "path-symlink-escape",
                f"{what} path '{rel}' is a symlink to a file outside the project",
                "copy the file into the project instead of linking to it",
            )
            return None
        return PurePosixPath(os.path.normpath(rel)).as_posix(), real

    def soundtrack(self) -> Soundtrack | None:
        value = self.value(("soundtrack",))
        if not isinstance(value, dict):
            return None
        spec = sound()
        music = None
        if isinstance(value.get("music"), str) and not self.broken(("soundtrack", "music")):
            found = self.local_sound(
                ("soundtrack", "music"), value["music"], "music", spec["music_suffixes"]
            )
            if found is not None:
                music = LocalFile(found[0], _sha256(str(found[1]), *_stamp(found[1])))
        loudness = value.get("loudness", spec["loudness"]["default"])
        if not _is_amount(loudness) or self.broken(("soundtrack", "loudness")):
            loudness = spec["loudness"]["default"]
        gain = value.get("music_gain", spec["music_gain"]["default"])
        if not _is_amount(gain) or self.broken(("soundtrack", "music_gain")):
            gain = spec["music_gain"]["default"]
        return Soundtrack(music, float(loudness), float(spec["true_peak"]), music_gain=float(gain))

    def narrator(self, path: JsonPath, voices: dict[str, Voice]) -> str | None:
        """The voice named at `path` (`narrator:`), if it is defined; else reported."""
        name = self.value(path)
        if not isinstance(name, str):
            return None
        if name not in voices:
            if not self.voice_broken(name):
                self.unknown_voice(path, name, voices)
            return None
        return name

    def image(self, name: str, path: JsonPath, value: Any, top: Settings) -> ImageRef | None:
        if isinstance(value, dict) and "generate" in value:
            # Made by Omni-Image: nothing to read yet; its prompt is rendered with the
            # scenes' (prompts.render_image), and rules needing pixels wait for the PNG.
            return ImageRef(
                name,
                path,
                generate=value["generate"],
                resolution=value.get("resolution", "1k"),
                aspect_ratio=value.get("aspect_ratio", top.aspect_ratio),
            )
        if isinstance(value, dict) and "url" in value:
            url = value["url"]
            return (
                ImageRef(name, path, url=url) if self.url_ok((*path, "url"), url, "image") else None
            )
        if isinstance(value, dict):
            path = (*path, "path")
            value = value["path"]
        return self.local_image(name, path, value)

    def url_ok(
        self, path: JsonPath, url: str, kind: str, suffixes: list[str] | None = None
    ) -> bool:
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            private = bool(host) and is_private_host(host)
        except ValueError:  # e.g. an unclosed "[" of an IPv6 host
            host, private = "", False
        if not host or any(c.isspace() or ord(c) < 32 for c in url):
            self.problem(path, "url-invalid", f"'{url}' is not a valid URL")
            return False
        if private:
            self.problem(
                path,
                "url-public",
                f"{kind} URL points at a private host '{host}'",
                "Kling downloads media from the public internet; use a public https URL "
                "or a local file path",
            )
            return False
        suffix = PurePosixPath(parts.path).suffix.lower()
        allowed = limits()["video_suffixes"] if kind == "video" else [".jpg", ".jpeg", ".png"]
        allowed = suffixes if suffixes is not None else allowed
        if suffix and suffix not in allowed:
            self.problem(
                path,
                f"{kind}-format",
                f"{kind} URL ends in '{suffix}'; Kling takes {', '.join(allowed)}",
            )
            return False
        return True

    def local_image(self, name: str, path: JsonPath, rel: str) -> ImageRef | None:
        """A local image file: checked on its normalised form, never an exception."""
        problem = _path_problem(rel)
        if problem is not None:
            self.problem(path, "path-invalid", problem[0], problem[1])
            return None
        if PurePosixPath(rel).is_absolute() or (len(rel) > 1 and rel[1] == ":"):
            self.problem(
                path,
                "path-absolute",
                f"image path '{rel}' is absolute",
                "write it relative to the storyboard file, so the project works on any machine",
            )
            return None
        lexical = Path(os.path.normpath(self.base_dir / rel))
        if not lexical.is_relative_to(self.project_root):
            self.problem(
                path,
                "path-escape",
                f"image path '{rel}' leads outside the project",
                f"keep media inside the project ({self.project_root.name}/, the git work tree) "
                "so a clone has everything it needs",
            )
            return None
        problem = _path_shape(rel)
        if problem is not None:
            self.problem(path, "path-invalid", problem[0], problem[1])
            return None
        try:
            return self._local_file(name, path, rel, lexical)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.problem(path, "image-missing", f"image file '{rel}' cannot be read: {reason}")
            return None

    def _local_file(self, name: str, path: JsonPath, rel: str, lexical: Path) -> ImageRef | None:
        if not lexical.exists():
            siblings = _names_in(lexical.parent)
            hint = did_you_mean(lexical.name, siblings) if siblings else None
            self.problem(
                path,
                "image-missing",
                f"image file '{rel}' does not exist",
                hint if hint and hint.startswith("did") else None,
            )
            return None
        real = Path(os.path.realpath(lexical))
        if not real.is_relative_to(Path(os.path.realpath(self.project_root))):
            self.problem(
                path,
                "path-symlink-escape",
                f"image path '{rel}' is a symlink to a file outside the project",
                "copy the file into the project instead of linking to it",
            )
            return None
        if not real.is_file():
            self.problem(path, "image-missing", f"image path '{rel}' is not a file")
            return None
        stat = real.stat()
        checked = _inspect_image(str(real), stat.st_size, stat.st_mtime_ns)
        if checked.problem is not None:
            code, message, hint = checked.problem
            self.problem(path, code, message.format(rel=rel), hint)
            return None
        file = PurePosixPath(os.path.normpath(rel)).as_posix()
        return ImageRef(name, path, file=file, sha256=checked.sha256, size=checked.size)

    # -- scenes -------------------------------------------------------------------------

    def scenes(self, top: Settings, top_unknown: frozenset[str]) -> tuple[Scene, ...]:
        raw_scenes = self.value(("scenes",))
        if not isinstance(raw_scenes, list):
            return ()
        if len(raw_scenes) > MAX_SCENES:
            self.problem(
                ("scenes", MAX_SCENES),
                "too-many-scenes",
                f"a storyboard holds at most {MAX_SCENES:,} scenes; this one has "
                f"{len(raw_scenes):,}, and those from here on are not checked",
                "split the film into several storyboards",
            )
            raw_scenes = raw_scenes[:MAX_SCENES]
        top_vars = self.table(("vars",))
        seen: dict[str, JsonPath] = {}
        scenes: list[Scene] = []
        for index in range(len(raw_scenes)):
            path: JsonPath = ("scenes", index)
            if self.broken(path) or not isinstance(raw_scenes[index], dict):
                continue  # not a scene at all; reported by the schema
            scene = self.scene(path, top, top_unknown, top_vars)
            if scene.id in seen:
                first_line = self.doc.loc((*seen[scene.id], "id")).line
                self.problem(
                    (*path, "id"),
                    "duplicate-scene-id",
                    f"scene id '{scene.id}' is already used at line {first_line}",
                    "each scene names its own clip file; give this one another id",
                )
            elif scene.id:
                seen[scene.id] = path
            self.continuity_ok(scene, scenes, raw_scenes)
            scenes.append(scene)
        return tuple(scenes)

    def continuity_ok(self, scene: Scene, earlier: list[Scene], raw: list[Any]) -> bool:
        """`first_frame: {after: SCENE}` names an earlier, enabled scene."""
        if scene.after is None:
            return True
        at: JsonPath = (*scene.path, "first_frame", "after")
        source = next((s for s in earlier if s.id == scene.after), None)
        if source is None:
            later = [r.get("id") for r in raw[int(scene.path[1]) :] if isinstance(r, dict)]
            if scene.after in later:
                self.problem(
                    at,
                    "continuity-order",
                    f"{scene.label} starts from scene '{scene.after}', which does not "
                    "come before it",
                    "a scene can only continue a scene above it; move one of them",
                )
            else:
                self.problem(
                    at,
                    "continuity-unknown",
                    f"no scene '{scene.after}' to continue from",
                    did_you_mean(scene.after, [s.id for s in earlier]) or "name an earlier scene",
                )
            return False
        if not source.enabled:
            self.problem(
                at,
                "continuity-disabled",
                f"{scene.label} starts from scene '{scene.after}', which is disabled",
                f"enable '{scene.after}', or give this scene an image as its first frame",
            )
            return False
        return True

    def scene(
        self,
        path: JsonPath,
        top: Settings,
        top_unknown: frozenset[str],
        top_vars: dict[str, Any] | _Broken,
    ) -> Scene:
        """One scene, as far as it is usable: what is broken is recorded in `unknown`."""

        def field(key: str) -> Any:
            return self.value((*path, key))

        unknown: set[str] = set()
        scene_id = field("id")
        scene_id = scene_id if isinstance(scene_id, str) else ""
        label = f"scene '{scene_id}'" if scene_id else f"scene {int(path[-1]) + 1}"
        prompt, shots_value, duration = field("prompt"), field("shots"), field("duration")
        auto = shots_value == "auto"
        has_prompt, has_shots = prompt is not MISSING, shots_value is not MISSING and not auto
        # A broken `shots` beside a prompt may be a misspelt `auto`: what the scene is meant
        # to be is unknown, so only the schema's diagnostic is given.
        guessed = shots_value is BROKEN and has_prompt
        video, video_known = self.video_use((*path, "video"))
        if not video_known:
            unknown.add("video")
        base_edit = video is not None and video.refer_type == "base"
        if guessed:
            unknown.add("structure")
        elif has_prompt and has_shots:
            self.problem(
                (*path, "shots"),
                "prompt-and-shots",
                "a scene has either 'prompt' (one shot) or 'shots' (multi-shot), not both",
                "move the prompt text into a shot, or remove 'shots'",
            )
            unknown.add("structure")
        elif auto and not has_prompt:
            self.problem(
                (*path, "shots"),
                "missing-prompt",
                f"`shots: auto` needs a 'prompt' in {label}: Kling plans the cuts from it",
                "describe the whole scene, shot by shot, in `prompt:`, and give a `duration:`",
            )
            unknown.add("structure")
        elif not has_prompt and not has_shots:
            self.problem(
                (*path, "id"),
                "missing-prompt",
                f"{label} has neither 'prompt' nor 'shots'",
                "add `prompt:` with `duration:`, or a list of `shots:`",
            )
            unknown.add("structure")
        if guessed:
            pass
        elif has_shots and duration is not MISSING:
            self.problem(
                (*path, "duration"),
                "duration-with-shots",
                "a multi-shot scene lasts the sum of its shots; 'duration' is not allowed here",
                "remove 'duration', or change the shots' durations",
            )
        elif base_edit and duration is not MISSING:
            self.problem(
                (*path, "duration"),
                "duration-base-edit",
                "a base edit takes its length from the video; 'duration' would be ignored (R13)",
                "remove 'duration'; set the video ref's 'duration' for the cost estimate",
            )
        elif has_prompt and not has_shots and video_known and not base_edit:
            if duration is MISSING:
                self.problem(
                    (*path, "shots" if auto else "prompt"),
                    "missing-duration",
                    f"{label} needs a 'duration' in seconds"
                    + (": with `shots: auto` Kling cuts that length into shots" if auto else ""),
                    "add e.g. `duration: 10`" if auto else "add e.g. `duration: 5`",
                )
        if not isinstance(duration, int) or isinstance(duration, bool):
            if duration is not MISSING or (has_prompt and not base_edit):
                unknown.add("duration")
            duration = None
        if not isinstance(prompt, str):
            unknown.update(["prompt"] if prompt is BROKEN else [])
            prompt = None
        shots = self.shots(path, shots_value, unknown)

        settings, setting_unknown = self.settings(path, top, top_unknown)
        unknown |= setting_unknown
        scene_vars, broken_vars = self.scene_vars(path, top_vars)
        first_frame, after = field("first_frame"), None
        if isinstance(first_frame, dict):
            after = first_frame.get("after")
            first_frame = f"last frame of {after}"
        for frame, value in (("first_frame", first_frame), ("end_frame", field("end_frame"))):
            if value is BROKEN:
                unknown.add(frame)
        takes, selected = field("takes"), field("selected")
        takes = takes if isinstance(takes, int) and not isinstance(takes, bool) else 1
        selected = selected if isinstance(selected, int) and not isinstance(selected, bool) else 1
        if selected > takes:
            self.problem(
                (*path, "selected"),
                "selected-take",
                f"selected take {selected}, but the scene has {takes} take(s)",
                f"pick a take from 1 to {takes}, or raise `takes`",
            )
        enabled = field("enabled")
        narration, narrator, sfx, sfx_duration = self.scene_sound(path, duration, unknown)
        return Scene(
            id=scene_id,
            path=path,
            settings=settings,
            prompt=prompt,
            duration=duration,
            shots=shots,
            first_frame=first_frame if isinstance(first_frame, str) else None,
            end_frame=field("end_frame") if isinstance(field("end_frame"), str) else None,
            video=video,
            vars=scene_vars,
            takes=takes,
            selected=selected,
            enabled=enabled
            if isinstance(enabled, bool)
            else (switch(enabled) if isinstance(enabled, str) else True),
            after=after if isinstance(after, str) else None,
            auto_shots=auto,
            unknown=frozenset(unknown),
            broken_vars=broken_vars,
            narration=narration,
            narrator=narrator,
            sfx=sfx,
            sfx_duration=sfx_duration,
        )

    def scene_sound(
        self, path: JsonPath, duration: int | None, unknown: set[str]
    ) -> tuple[str | None, str | None, str | None, float | None]:
        """A scene's narration and its voice, and its sound effect and the effect's length."""
        spec = sound()
        narration = self.value((*path, "narration"))
        narration = narration if isinstance(narration, str) else None
        if self.value((*path, "narrator")) is not MISSING:
            narrator = self.narrator((*path, "narrator"), self.voice_table)
            known = True  # a name that is no usable voice is reported where it is written
        else:
            narrator = self.top_narrator
            known = narrator is not None or self.value(("narrator",)) is not MISSING
        if narration is not None and narrator is None:
            unknown.add("narrator")
            if not known:
                self.problem(
                    (*path, "narration"),
                    "narration-voice",
                    "narration needs a narrator voice, and none is set",
                    "name a voice under `voices:` in `narrator:` at the top or on the scene",
                )
        sfx = self.value((*path, "sfx"))
        prompt, seconds = None, None
        if isinstance(sfx, str):
            prompt = sfx
        elif isinstance(sfx, dict):
            prompt = sfx.get("prompt") if isinstance(sfx.get("prompt"), str) else None
            written = sfx.get("duration")
            if _is_amount(written) and not self.broken((*path, "sfx", "duration")):
                low, high = spec["sfx_seconds"]["min"], spec["sfx_seconds"]["max"]
                if not low <= written <= high:
                    self.problem(
                        (*path, "sfx", "duration"),
                        "sfx-duration",
                        f"a sound effect lasts {low}-{high} s; this one is {written} s",
                        f"give a duration from {low} to {high}",
                    )
                    prompt = None
                else:
                    seconds = float(written or 0)
        limit = spec["sfx_prompt_chars"]
        if prompt is not None and len(prompt) > limit:
            at: JsonPath = (*path, "sfx") if isinstance(sfx, str) else (*path, "sfx", "prompt")
            self.problem(
                at,
                "sfx-length",
                f"a sound effect's prompt is at most {limit} characters; this one has "
                f"{len(prompt):,}",
                "describe the sound in fewer words",
            )
            prompt = None
        # Unwritten, an effect lasts as long as its scene (lower.lower_sfx decides it).
        return narration, narrator, prompt, seconds

    def shots(self, path: JsonPath, value: Any, unknown: set[str]) -> tuple[Shot, ...]:
        if value is BROKEN:
            unknown.add("shots")
        if not isinstance(value, list):
            return ()
        if len(value) > MAX_SHOTS:
            self.problem(
                (*path, "shots", MAX_SHOTS),
                "too-many-shots",
                f"{len(value)} shots; Kling takes at most 6 in a task, and storyboard checks "
                f"at most {MAX_SHOTS}",
                "split the scene into several scenes",
            )
            unknown.add("shots")  # the count is reported here, not again by the rules
            value = value[:MAX_SHOTS]
        shots = []
        for i, raw in enumerate(value):
            at: JsonPath = (*path, "shots", i)
            if self.broken(at) or not isinstance(raw, dict):
                unknown.add("shots")
                continue
            template, seconds = self.value((*at, "prompt")), self.value((*at, "duration"))
            if not isinstance(template, str):
                unknown.add(f"shots.{i}.prompt")
                template = ""
            if not isinstance(seconds, int) or isinstance(seconds, bool):
                unknown.update([f"shots.{i}.duration", "shots.duration"])
                seconds = 0
            shots.append(Shot(template, seconds, at))
        return tuple(shots)

    def video_use(self, at: JsonPath) -> tuple[VideoUse | None, bool]:
        """The scene's video, and whether it is known (absent counts as known)."""
        value = self.value(at)
        if value is MISSING:
            return None, True
        ref, refer_type = self.value((*at, "ref")), self.value((*at, "refer_type"))
        if not isinstance(value, dict) or not isinstance(ref, str) or refer_type is BROKEN:
            return None, False
        keep = self.value((*at, "keep_original_sound"))
        if isinstance(keep, str):
            keep = switch(keep)
        return VideoUse(ref, refer_type, keep if isinstance(keep, bool) else None, at), True

    def scene_vars(
        self, path: JsonPath, top_vars: dict[str, Any] | _Broken
    ) -> tuple[dict[str, Any], frozenset[str]]:
        """The vars a scene's prompts see, and the names whose definitions are broken
        ("*": the whole table is, so any name may be meant)."""
        own = self.table((*path, "vars"))
        broken: set[str] = set()
        for at, table in ((("vars",), top_vars), ((*path, "vars"), own)):
            if isinstance(table, _Broken):
                broken.add("*")
                continue
            raw = self.doc.data
            for part in at:
                raw = raw.get(part) if isinstance(raw, dict) else None
            if isinstance(raw, dict):
                broken.update(str(name) for name in raw if name not in table)
        merged = {**(top_vars if isinstance(top_vars, dict) else {})}
        merged.update(own if isinstance(own, dict) else {})
        return merged, frozenset(broken)


# POSIX's NAME_MAX and PATH_MAX, the usual limits of Linux and macOS file systems.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def _path_problem(rel: str) -> tuple[str, str] | None:
    """What makes a written path unusable before the file system is asked, if anything."""
    if any(ord(c) < 32 or c == "\x7f" for c in rel):
        return f"image path {rel!r} contains a control character", "write the file name only"
    if "\\" in rel:
        return f"'{rel}' uses backslashes", "write paths with '/'"
    return None


def _path_shape(rel: str) -> tuple[str, str] | None:
    """A path that stays in the project but cannot name an image file."""
    parts = rel.split("/")
    if rel.endswith("/") or parts[-1] in (".", ".."):
        return (
            f"image path '{rel}' names a folder, not a file",
            "end the path with the image's file name, e.g. assets/coast.png",
        )
    encoded = rel.encode("utf-8", "surrogatepass")
    longest = max(len(part.encode("utf-8", "surrogatepass")) for part in parts)
    if longest > MAX_NAME_BYTES or len(encoded) > MAX_PATH_BYTES:
        return (
            f"image path '{rel[:40]}...' is too long for a file system",
            f"file and folder names take at most {MAX_NAME_BYTES} bytes, a path {MAX_PATH_BYTES}",
        )
    return None


def _names_in(folder: Path) -> list[str]:
    try:
        return [p.name for p in folder.iterdir()]
    except OSError:
        return []


@dataclass(frozen=True, slots=True)
class _ImageCheck:
    sha256: str | None = None
    size: tuple[int, int] | None = None
    # (code, message with a {rel} placeholder for the path as written, hint)
    problem: tuple[str, str, str | None] | None = None


@functools.lru_cache(maxsize=4096)
def _inspect_image(real: str, byte_size: int, mtime_ns: int) -> _ImageCheck:
    """Check one image file against Kling's limits; cached on (path, size, mtime)."""
    lim = limits()
    if byte_size > lim["image_bytes"]:
        return _problem(
            "image-size",
            f"image '{{rel}}' is {byte_size / 1048576:.1f} MB; Kling takes at most 10 MB",
            "export it as a smaller JPEG",
        )
    data = Path(real).read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(real) as img:
                fmt, (width, height) = img.format, img.size
    except Image.DecompressionBombError:
        return _problem(
            "image-pixels",
            "image '{rel}' has more pixels than storyboard decodes "
            f"({limits()['image_max_pixels'] / 1e6:.0f} megapixels at most)",
            "downscale it, e.g. to 4096 px on the long side",
        )
    except (UnidentifiedImageError, OSError):
        return _problem("image-format", "'{rel}' is not a readable JPEG or PNG image")
    suffix = Path(real).suffix.lower()
    if fmt not in lim["image_formats"]:
        return _problem("image-format", f"'{{rel}}' is a {fmt} image; Kling takes JPEG or PNG")
    if suffix not in (".jpg", ".jpeg", ".png"):
        return _problem(
            "image-format",
            f"'{{rel}}' has the extension '{suffix}'; Kling takes .jpg, .jpeg or .png",
            "rename the file to match its content",
        )
    if width * height > lim["image_max_pixels"]:
        return _problem(
            "image-pixels",
            f"image '{{rel}}' is {width}x{height} px ({width * height / 1e6:.0f} megapixels); "
            f"storyboard takes at most {lim['image_max_pixels'] / 1e6:.0f} megapixels",
            "downscale it (Kling scales large images down anyway), e.g. to 4096 px on the "
            "long side",
        )
    side = lim["image_min_side"]
    if min(width, height) < side:
        return _problem(
            "image-pixels",
            f"image '{{rel}}' is {width}x{height} px; each side must be at least {side} px",
            "use a larger image",
        )
    aspect = width / height
    if not lim["image_min_aspect"] <= aspect <= lim["image_max_aspect"]:
        return _problem(
            "image-aspect",
            f"image '{{rel}}' is {width}x{height} px (aspect {aspect:.2f}); "
            "Kling takes aspects from 1:2.5 to 2.5:1",
            "crop the image",
        )
    return _ImageCheck(hashlib.sha256(data).hexdigest(), (width, height))


def _stamp(real: Path) -> tuple[int, int]:
    stat = real.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=1024)
def _sha256(real: str, byte_size: int, mtime_ns: int) -> str:
    """A file's content digest; cached on (path, size, mtime)."""
    digest = hashlib.sha256()
    with open(real, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1024)
def _audio_seconds(real: str, byte_size: int, mtime_ns: int) -> float | None:
    """How long an audio or video file lasts (media.audio_seconds); cached on (path, size,
    mtime)."""
    from .media import audio_seconds

    return audio_seconds(Path(real))


def _problem(code: str, message: str, hint: str | None = None) -> _ImageCheck:
    return _ImageCheck(problem=(code, message, hint))


def resolve(
    doc: SourceDoc, file: Path, broken_paths: set[JsonPath], cache: str | None = None
) -> tuple[Storyboard | None, list[Diagnostic]]:
    """Build the IR from a loaded document whose schema problems are at `broken_paths`.

    Parts that broke the schema are skipped so one mistake is reported once, and every
    other part is resolved in full: a broken setting falls back to its default and is
    marked unknown on the scenes it reaches, so their checks that depend on it are
    skipped while the rest still run. Only a file that is not a mapping stops here.
    `cache` is the render cache the run would use (`--cache`, else STORYBOARD_CACHE): a
    local voice sample needs an s3:// one.
    """
    if () in broken_paths or not isinstance(doc.data, dict):
        return None, []
    resolver = _Resolver(doc, file, broken_paths, cache)
    top, top_unknown = resolver.settings((), None)
    voices = resolver.voices()
    resolver.voice_table = voices
    resolver.top_narrator = resolver.narrator(("narrator",), voices)
    refs = resolver.refs(top, voices)
    scenes = resolver.scenes(top, top_unknown)
    title, usd, budget, usd_image = (
        resolver.value((key,))
        for key in ("title", "usd_per_unit", "budget_usd", "usd_per_image_unit")
    )
    top_vars, broken_vars = resolver.scene_vars((), resolver.table(("vars",)))
    board = Storyboard(
        doc=doc,
        base_dir=resolver.base_dir,
        project_root=resolver.project_root,
        title=title if isinstance(title, str) else None,
        settings=top,
        usd_per_unit=float(usd if _is_amount(usd) else model_data()["usd_per_unit"]),
        budget_usd=budget if _is_amount(budget) else None,
        refs=refs,
        scenes=scenes,
        usd_per_image_unit=float(
            usd_image if _is_amount(usd_image) else model_data()["usd_per_image_unit"]
        ),
        vars=top_vars,
        broken_vars=broken_vars,
        voices=voices,
        broken_voices=frozenset(resolver.broken_voices),
        narrator=resolver.top_narrator,
        soundtrack=resolver.soundtrack(),
    )
    return board, resolver.problems


def _is_amount(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
