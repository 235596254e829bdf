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
    Storyboard,
    VideoRef,
    VideoUse,
    limits,
    model_data,
)

DEFAULTS = {"model": "kling-v3-omni", "mode": "pro", "aspect_ratio": "16:9", "sound": "off"}
_REF_KIND: dict[str, RefKind] = {"images": "image", "elements": "element", "videos": "video"}


def find_project_root(start: Path) -> Path:
    """The nearest enclosing git work tree, else the storyboard's own directory."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def _settings(data: dict[str, Any], base: Settings | None = None) -> Settings:
    def pick(name: str) -> Any:
        if name in data:
            return data[name]
        return getattr(base, name) if base else DEFAULTS[name]

    sound = pick("sound")
    return Settings(
        model=pick("model"),
        mode=pick("mode"),
        aspect_ratio=pick("aspect_ratio"),
        sound=sound is True or sound == "on",
    )


class _Resolver:
    def __init__(self, doc: SourceDoc, file: Path, broken_paths: set[JsonPath]) -> None:
        self.doc = doc
        self.base_dir = file.resolve().parent
        self.project_root = find_project_root(self.base_dir)
        self.broken_paths = broken_paths
        self.problems: list[Diagnostic] = []

    def problem(self, path: JsonPath, code: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(self.doc.loc(path), code, message, hint))

    # -- references ---------------------------------------------------------------------

    def refs(self, data: dict[str, Any]) -> Refs:
        broken: set[tuple[RefKind, str]] = set()
        for bad in self.broken_paths:
            if len(bad) >= 3 and bad[0] == "refs":
                broken.add((_REF_KIND[str(bad[1])], str(bad[2])))
        images: dict[str, ImageRef] = {}
        elements: dict[str, ElementRef] = {}
        videos: dict[str, VideoRef] = {}
        for name, value in data.get("images", {}).items():
            path: JsonPath = ("refs", "images", name)
            if ("image", name) in broken:
                continue
            image = self.image(name, path, value)
            if image is None:
                broken.add(("image", name))
            else:
                images[name] = image
        for name, value in data.get("elements", {}).items():
            if ("element", name) in broken:
                continue
            path = ("refs", "elements", name)
            if isinstance(value, dict) and "images" in value:
                element = self.made_element(name, path, value)
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
        return Refs(images, elements, videos, frozenset(broken))

    def made_element(self, name: str, path: JsonPath, value: dict[str, Any]) -> ElementRef | None:
        """An element storyboard creates from local images: each must be a usable image."""
        images = []
        for index, file in enumerate(value["images"]):
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
        return ElementRef(name, path, images=tuple(images), description=value["description"])

    def image(self, name: str, path: JsonPath, value: Any) -> ImageRef | None:
        if isinstance(value, dict) and "url" in value:
            url = value["url"]
            return (
                ImageRef(name, path, url=url) if self.url_ok((*path, "url"), url, "image") else None
            )
        if isinstance(value, dict):
            path = (*path, "path")
            value = value["path"]
        return self.local_image(name, path, value)

    def url_ok(self, path: JsonPath, url: str, kind: str) -> bool:
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

    def scenes(self, data: dict[str, Any], top: Settings) -> tuple[Scene, ...]:
        broken_scenes = {p[1] for p in self.broken_paths if len(p) >= 2 and p[0] == "scenes"}
        top_vars = data.get("vars", {})
        seen: dict[str, JsonPath] = {}
        scenes: list[Scene] = []
        for index, raw in enumerate(data["scenes"]):
            path: JsonPath = ("scenes", index)
            if index in broken_scenes:
                continue
            scene_id = raw["id"]
            if scene_id in seen:
                first_line = self.doc.loc((*seen[scene_id], "id")).line
                self.problem(
                    (*path, "id"),
                    "duplicate-scene-id",
                    f"scene id '{scene_id}' is already used at line {first_line}",
                    "each scene names its own clip file; give this one another id",
                )
                continue
            seen[scene_id] = path
            scene = self.scene(raw, path, top, top_vars)
            if scene is not None and self.continuity_ok(scene, scenes, data["scenes"]):
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
                    f"scene '{scene.id}' starts from scene '{scene.after}', which does not "
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
                f"scene '{scene.id}' starts from scene '{scene.after}', which is disabled",
                f"enable '{scene.after}', or give this scene an image as its first frame",
            )
            return False
        return True

    def scene(
        self, raw: dict[str, Any], path: JsonPath, top: Settings, top_vars: dict[str, Any]
    ) -> Scene | None:
        ok = True
        has_prompt, has_shots = "prompt" in raw, "shots" in raw
        video: dict[str, Any] | None = raw.get("video")
        base_edit = video is not None and video["refer_type"] == "base"
        if has_prompt and has_shots:
            self.problem(
                (*path, "shots"),
                "prompt-and-shots",
                "a scene has either 'prompt' (one shot) or 'shots' (multi-shot), not both",
                "move the prompt text into a shot, or remove 'shots'",
            )
            ok = False
        elif not has_prompt and not has_shots:
            self.problem(
                (*path, "id"),
                "missing-prompt",
                f"scene '{raw['id']}' has neither 'prompt' nor 'shots'",
                "add `prompt:` with `duration:`, or a list of `shots:`",
            )
            ok = False
        if has_shots and "duration" in raw:
            self.problem(
                (*path, "duration"),
                "duration-with-shots",
                "a multi-shot scene lasts the sum of its shots; 'duration' is not allowed here",
                "remove 'duration', or change the shots' durations",
            )
            ok = False
        elif base_edit and "duration" in raw:
            self.problem(
                (*path, "duration"),
                "duration-base-edit",
                "a base edit takes its length from the video; 'duration' would be ignored (R13)",
                "remove 'duration'; set the video ref's 'duration' for the cost estimate",
            )
            ok = False
        elif has_prompt and not has_shots and not base_edit and "duration" not in raw:
            self.problem(
                (*path, "prompt"),
                "missing-duration",
                f"scene '{raw['id']}' needs a 'duration' in seconds",
                "add e.g. `duration: 5`",
            )
            ok = False
        if not ok:
            return None
        shots = tuple(
            Shot(shot["prompt"], shot["duration"], (*path, "shots", i))
            for i, shot in enumerate(raw.get("shots", ()))
        )
        video_use = None
        if video:
            video_use = VideoUse(
                video["ref"],
                video["refer_type"],
                video.get("keep_original_sound"),
                (*path, "video"),
            )
        scene_vars = {**top_vars, **raw.get("vars", {})}
        first_frame = raw.get("first_frame")
        after = first_frame["after"] if isinstance(first_frame, dict) else None
        takes, selected = raw.get("takes", 1), raw.get("selected", 1)
        if selected > takes:
            self.problem(
                (*path, "selected"),
                "selected-take",
                f"selected take {selected}, but the scene has {takes} take(s)",
                f"pick a take from 1 to {takes}, or raise `takes`",
            )
            return None
        return Scene(
            id=raw["id"],
            path=path,
            settings=_settings(raw, top),
            prompt=raw.get("prompt"),
            duration=raw.get("duration"),
            shots=shots,
            first_frame=f"last frame of {after}" if after else first_frame,
            end_frame=raw.get("end_frame"),
            video=video_use,
            vars=scene_vars,
            takes=takes,
            selected=selected,
            enabled=raw.get("enabled", True),
            after=after,
        )


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


def _problem(code: str, message: str, hint: str | None = None) -> _ImageCheck:
    return _ImageCheck(problem=(code, message, hint))


def resolve(
    doc: SourceDoc, file: Path, broken_paths: set[JsonPath]
) -> tuple[Storyboard | None, list[Diagnostic]]:
    """Build the IR from a loaded document whose schema problems are at `broken_paths`.

    Parts that broke the schema are skipped so one mistake is reported once; when the
    top-level settings themselves are broken, nothing further can be checked.
    """
    for path in broken_paths:
        if (
            not path
            or path[0] not in ("scenes", "refs")
            or len(path) < (2 if path[0] == "scenes" else 3)
        ):
            return None, []
    data: dict[str, Any] = doc.data
    resolver = _Resolver(doc, file, broken_paths)
    top = _settings(data)
    refs = resolver.refs(data.get("refs", {}))
    scenes = resolver.scenes(data, top)
    board = Storyboard(
        doc=doc,
        base_dir=resolver.base_dir,
        project_root=resolver.project_root,
        title=data.get("title"),
        settings=top,
        usd_per_unit=float(data.get("usd_per_unit", model_data()["usd_per_unit"])),
        budget_usd=data.get("budget_usd"),
        refs=refs,
        scenes=scenes,
    )
    return board, resolver.problems
