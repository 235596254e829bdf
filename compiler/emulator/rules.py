"""The emulator's own reading of Kling's body rules: a create body → Body, or Invalid.

The emulator reads the rules independently of `compiler.rules` on purpose: it exists to
catch the compiler's bugs, so it must not share the compiler's mistakes. Where the facts
are disputed it is no stricter than a rule it can cite (kling-api.md §9.14), and it reads
an empty string, list or null as an absent field (§9.13). Kling's 2026 change log (§11)
supersedes the older readings of §2-§3 where they disagree, and the rules below follow it.
Element creates (§7.1), Omni-Image creates (§11.1) and the sound bodies (§11.2: custom
voices, TTS, sound effects, voice deletes) are read here too; `units_charged` and
`image_units` are what a task bills (§6.2, §11.1), the sound calls bill flat units.

No I/O: Base64 images are decoded and measured in memory, https URLs are not fetched.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

MODELS = ("kling-video-o1", "kling-v3-omni")
DEFAULT_MODEL = "kling-video-o1"  # §2.1: an omitted model_name selects O1
# R15: O1 has no 4K. §11 (04/23/2026, 06/17/2026): kling-v3-omni takes mode "4k" for every
# function, reference videos included since 06/17 (§2.1 "mode and 4K").
MODES = {"kling-video-o1": ("std", "pro"), "kling-v3-omni": ("std", "pro", "4k")}
ASPECTS = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1)}
PROMPT_CHARS = 2500  # R1
SHOT_PROMPT_CHARS = 512  # R4
MAX_SHOTS = 6  # R4
IMAGE_BYTES = 10 * 1024 * 1024  # §2.1 media limits
IMAGE_MIN_SIDE = 300
IMAGE_ASPECT = (0.4, 2.5)
BASE_EDIT_SECONDS = 5  # the emulator cannot fetch the input video to learn its length

# Units per second of output (§6.2): silent, native audio, with video input.
UNITS_PER_SECOND = {
    "kling-v3-omni": {
        "std": ("0.6", "0.8", "0.9"),
        "pro": ("0.8", "1.0", "1.2"),
        "4k": ("3.0", "3.0", "3.0"),
    },
    "kling-video-o1": {"std": ("0.6", "0.6", "0.9"), "pro": ("0.8", "0.8", "1.2")},
}

TOKEN = re.compile(r"<<<(image|element|video)_(\d+)>>>")


# -- reading a create body ------------------------------------------------------------


class Invalid(Exception):
    """A create body breaks a rule: HTTP 400, code 1201, with this message."""


@dataclass(frozen=True, slots=True)
class Shot:
    """One item of multi_prompt."""

    index: int
    prompt: str
    seconds: int


@dataclass(frozen=True, slots=True)
class ImageItem:
    """One item of image_list."""

    type: str | None  # first_frame | end_frame | None (a reference image)
    data: bytes | None  # decoded Base64; None for a URL
    size: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class VideoItem:
    """One item of video_list."""

    refer_type: str
    keep_original_sound: str | None


@dataclass(frozen=True, slots=True)
class Body:
    """A create body after the type and enum checks, defaults applied (§3.2)."""

    model: str
    mode: str
    sound: str
    aspect_ratio: str | None
    duration: int | None  # None: absent (defaults to 5) or ignored by a base edit
    prompt: str | None
    multi_shot: bool
    shot_type: str | None
    shots: tuple[Shot, ...]
    multi_prompt_sent: bool  # a non-empty multi_prompt, read or not
    images: tuple[ImageItem, ...]
    elements: int
    videos: tuple[VideoItem, ...]
    external_task_id: str | None
    watermark: bool

    @property
    def base_edit(self) -> bool:
        return any(v.refer_type == "base" for v in self.videos)

    @property
    def feature_video(self) -> bool:
        return any(v.refer_type == "feature" for v in self.videos)

    def frame(self, kind: str) -> ImageItem | None:
        return next((image for image in self.images if image.type == kind), None)

    @property
    def seconds(self) -> int:
        """Output length: what Kling bills (§6.2) and the clip lasts."""
        if self.base_edit and not self.multi_shot:
            return BASE_EDIT_SECONDS
        return self.duration if self.duration is not None else 5

    @property
    def texts(self) -> list[str]:
        """The prompts Kling reads: customize multi-shot ignores the top-level prompt (R2)."""
        if self.multi_shot and self.shot_type == "customize":
            return [shot.prompt for shot in self.shots]
        return [self.prompt or ""]


def _present(raw: dict[str, Any], key: str) -> Any:
    """The value of `key`, or None when it is absent, null, "" or [] (§9.13)."""
    value = raw.get(key)
    return None if value is None or value == "" or value == [] else value


def _string(raw: dict[str, Any], key: str, where: str = "") -> str | None:
    value = _present(raw, key)
    if value is not None and not isinstance(value, str):
        raise Invalid(f"{where}{key} must be a string")
    return value


def _enum(raw: dict[str, Any], key: str, allowed: Sequence[str], suffix: str = "") -> str | None:
    value = _string(raw, key)
    if value is not None and value not in allowed:
        raise Invalid(f"{key} must be one of {', '.join(allowed)}{suffix}")
    return value


def _list(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = _present(raw, key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise Invalid(f"{key} must be an array of objects")
    return value


def _seconds(value: Any, where: str) -> int:
    # §2.1, §9.3: durations are strings on /v1 ("5"), also inside multi_prompt.
    if not isinstance(value, str):
        raise Invalid(f'{where} must be a string such as "5"')
    if not value.isdecimal():
        raise Invalid(f'{where} must be a whole number of seconds such as "5"')
    return int(value)


def read_body(raw: dict[str, Any]) -> Body:
    """Check types and enums of a create body (§2.1) and apply Kling's defaults."""
    model = _enum(raw, "model_name", MODELS) or DEFAULT_MODEL
    mode = _enum(raw, "mode", MODES[model], f" for {model}") or "pro"
    sound = _enum(raw, "sound", ("on", "off")) or "off"
    aspect = _enum(raw, "aspect_ratio", tuple(ASPECTS))
    prompt = _string(raw, "prompt")
    multi_shot = raw.get("multi_shot")
    if multi_shot is None or multi_shot == "":
        multi_shot = False
    if not isinstance(multi_shot, bool):
        raise Invalid("multi_shot must be a boolean")
    shot_type = _enum(raw, "shot_type", ("customize", "intelligence"))
    videos = tuple(_read_video(item, i) for i, item in enumerate(_list(raw, "video_list")))
    base_edit = any(v.refer_type == "base" for v in videos)
    duration = _present(raw, "duration")
    # R13: a base edit ignores duration (its length follows the input video).
    seconds = (
        None
        if duration is None or (base_edit and not multi_shot)
        else _seconds(duration, "duration")
    )
    shots: tuple[Shot, ...] = ()
    if multi_shot and shot_type == "customize":
        shots = tuple(_read_shot(item, i) for i, item in enumerate(_list(raw, "multi_prompt")))
    images = tuple(_read_image(item, i) for i, item in enumerate(_list(raw, "image_list")))
    elements = _list(raw, "element_list")
    for i, item in enumerate(elements):
        element_id = item.get("element_id")
        # §7.2: a long on /v1; the official examples also quote it as a string. Any
        # positive id passes: one this emulator created, or one from the user's library.
        if _element_id(element_id) is None:
            raise Invalid(f"element_list[{i}].element_id must be an integer element id")
    watermark = _present(raw, "watermark_info") or {}
    if not isinstance(watermark, dict) or not isinstance(watermark.get("enabled", False), bool):
        raise Invalid('watermark_info must be an object such as {"enabled": true}')
    _string(raw, "callback_url")
    return Body(
        model=model,
        mode=mode,
        sound=sound,
        aspect_ratio=aspect,
        duration=seconds,
        prompt=prompt,
        multi_shot=multi_shot,
        shot_type=shot_type,
        shots=shots,
        multi_prompt_sent=_present(raw, "multi_prompt") is not None,
        images=images,
        elements=len(elements),
        videos=videos,
        external_task_id=_string(raw, "external_task_id"),
        watermark=bool(watermark.get("enabled", False)),
    )


def _element_id(value: Any) -> int | None:
    """A positive element id sent as a JSON number or a decimal string, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value > 0 else None
    if isinstance(value, str) and value.isascii() and value.isdecimal() and int(value) > 0:
        return int(value)
    return None


def _read_shot(item: dict[str, Any], i: int) -> Shot:
    where = f"multi_prompt[{i}]"
    index = item.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 1:
        raise Invalid(f"{where}.index must be an integer counting from 1")
    prompt = _string(item, "prompt", f"{where}.")
    if prompt is None:
        raise Invalid(f"{where}.prompt is required")
    if len(prompt) > SHOT_PROMPT_CHARS:
        raise Invalid(f"{where}.prompt must be at most {SHOT_PROMPT_CHARS} characters")
    duration = _present(item, "duration")
    if duration is None:
        raise Invalid(f"{where}.duration is required")
    return Shot(index, prompt, _seconds(duration, f"{where}.duration"))


def _read_video(item: dict[str, Any], i: int) -> VideoItem:
    where = f"video_list[{i}]"
    url = _string(item, "video_url", f"{where}.")
    if url is None:
        raise Invalid(f"{where}.video_url is required")
    if not url.startswith("https://"):
        # §2.1: a video is passed by URL only; §9.12: public https URLs.
        raise Invalid(f"{where}.video_url must be an https URL")
    refer_type = _string(item, "refer_type", f"{where}.") or "base"  # §2.1: default base
    if refer_type not in ("feature", "base"):
        raise Invalid(f"{where}.refer_type must be one of feature, base")
    keep = _string(item, "keep_original_sound", f"{where}.")
    if keep not in (None, "yes", "no"):
        raise Invalid(f"{where}.keep_original_sound must be one of yes, no")
    return VideoItem(refer_type, keep)


def _read_image(item: dict[str, Any], i: int) -> ImageItem:
    where = f"image_list[{i}]"
    kind = _string(item, "type", f"{where}.")
    if kind not in (None, "first_frame", "end_frame"):
        raise Invalid(f"{where}.type must be one of first_frame, end_frame")
    value = _string(item, "image_url", f"{where}.")
    if value is None:
        raise Invalid(f"{where}.image_url is required")
    picture = read_picture(value, f"{where}.image_url")
    return ImageItem(kind, picture.data, picture.size)


@dataclass(frozen=True, slots=True)
class Picture:
    """An image as sent: an https URL (not fetched), or decoded Base64 checked in full."""

    url: str | None
    data: bytes | None
    format: str | None = None  # JPEG | PNG, for Base64
    size: tuple[int, int] | None = None

    @property
    def identity(self) -> str | bytes:
        """What makes two pictures the same: the URL, or the decoded bytes."""
        return self.data if self.data is not None else self.url or ""


def read_picture(value: str, where: str) -> Picture:
    """Check one image value (§2.1 media limits); `where` names the field in messages."""
    if value.startswith("local:"):
        raise Invalid(f"{where} must be an https URL or Base64, not a local file")
    if value.startswith("data:"):
        # §2.1, §9.12: Base64 must be bare.
        raise Invalid(f"{where} Base64 must not carry a data: prefix")
    if "://" in value:
        if not value.startswith("https://"):
            raise Invalid(f"{where} must be an https URL or Base64")
        return Picture(value, None)
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"{where} is neither an https URL nor valid Base64") from None
    if len(data) > IMAGE_BYTES:
        raise Invalid(f"{where} image must be at most 10MB")
    try:
        with Image.open(BytesIO(data)) as image:
            fmt, size = image.format, image.size
    except (OSError, Image.DecompressionBombError):
        raise Invalid(f"{where} Base64 is not a readable image") from None
    if fmt not in ("JPEG", "PNG"):
        raise Invalid(f"{where} image must be jpg, jpeg or png")
    width, height = size
    if min(width, height) < IMAGE_MIN_SIDE:
        raise Invalid(
            f"{where} image sides must be at least {IMAGE_MIN_SIDE}px, got {width}x{height}"
        )
    if not IMAGE_ASPECT[0] <= width / height <= IMAGE_ASPECT[1]:
        raise Invalid(
            f"{where} image aspect ratio must be between 1:2.5 and 2.5:1, got {width}x{height}"
        )
    return Picture(None, data, fmt, (width, height))


# -- the rules (kling-api.md §3), one small function each -----------------------------

BodyRule = Callable[[Body], str | None]
BODY_RULES: list[BodyRule] = []


def body_rule(fn: BodyRule) -> BodyRule:
    BODY_RULES.append(fn)
    return fn


@body_rule
def _r15_model(b: Body) -> str | None:
    if b.model == "kling-video-o1" and b.multi_shot:
        return "multi_shot is not supported by kling-video-o1"
    if b.model == "kling-video-o1" and b.sound == "on":
        return "sound must be off for kling-video-o1"
    return None


@body_rule
def _r1_prompt(b: Body) -> str | None:
    if b.prompt is not None and len(b.prompt) > PROMPT_CHARS:
        return f"prompt must be at most {PROMPT_CHARS} characters"
    if b.prompt is None and (not b.multi_shot or b.shot_type == "intelligence"):
        return "prompt is required" + (" when shot_type is intelligence" if b.multi_shot else "")
    return None


@body_rule
def _r3_shot_type(b: Body) -> str | None:
    if b.multi_shot and b.shot_type is None:
        return "shot_type is required when multi_shot is true"
    return None


@body_rule
def _intelligence_takes_no_shots(b: Body) -> str | None:
    # §11 (03/11/2026): with shot_type intelligence the model plans the cuts from `prompt`;
    # a multi_prompt sent beside it is a caller's mistake, not something to ignore.
    if b.multi_shot and b.shot_type == "intelligence" and b.multi_prompt_sent:
        return (
            "multi_prompt must be left out when shot_type is intelligence "
            "(the model plans the shots from prompt)"
        )
    return None


@body_rule
def _feature_video_multi_shot(b: Body) -> str | None:
    # §11 (06/17/2026): a feature reference video with multi-shot requires intelligence.
    if b.multi_shot and b.feature_video and b.shot_type != "intelligence":
        return (
            "shot_type must be intelligence when multi_shot is true with a feature "
            "reference video (video_list refer_type feature)"
        )
    return None


@body_rule
def _r4_shots(b: Body) -> str | None:
    if not b.multi_shot or b.shot_type != "customize":
        return None
    if not b.shots:
        return "multi_prompt is required when shot_type is customize"
    if len(b.shots) > MAX_SHOTS:
        return f"multi_prompt must have 1 to {MAX_SHOTS} items"
    if len({shot.index for shot in b.shots}) != len(b.shots):
        return "multi_prompt index values must be unique"
    total = b.duration if b.duration is not None else 5
    for i, shot in enumerate(b.shots):
        if not 1 <= shot.seconds <= total:
            return f"multi_prompt[{i}].duration must be between 1 and duration ({total})"
    shots_total = sum(shot.seconds for shot in b.shots)
    if shots_total != total:
        return f"multi_prompt durations add up to {shots_total}, but duration is {total}"
    return None


@body_rule
def _r5_duration(b: Body) -> str | None:
    if b.duration is None:
        return None  # absent: Kling's default "5" fits every case
    allowed, text = _durations(b)
    if b.duration not in allowed:
        return f"duration must be one of {text}"
    return None


def _durations(b: Body) -> tuple[range | tuple[int, ...], str]:
    """Allowed output seconds by model and case (§3.3, the capability map).

    On kling-v3-omni every case takes 3..15: §11 (06/17/2026) overrides the "3-10 s with
    a reference video" of §3.1 and §3.3. The emulator cannot fetch a reference video, so
    the input's own 3-15 s bound goes unchecked; only the task's `duration` is read.
    """
    if b.model == "kling-v3-omni":
        return range(3, 16), f"3..15 for {b.model}"
    first_frame_only = len(b.images) == 1 and b.images[0].type == "first_frame"
    if not b.videos and not b.elements and (not b.images or first_frame_only):
        return (5, 10), f"5, 10 for {b.model} text-to-video and first-frame-only tasks"
    return range(3, 11), f"3..10 for {b.model}"


@body_rule
def _r14_aspect(b: Body) -> str | None:
    if b.aspect_ratio is None and b.frame("first_frame") is None and not b.base_edit:
        return (
            "aspect_ratio is required unless image_list has a first_frame "
            "or video_list edits a video (refer_type base)"
        )
    return None


@body_rule
def _frames_once(b: Body) -> str | None:
    for kind in ("first_frame", "end_frame"):
        if sum(image.type == kind for image in b.images) > 1:
            return f"image_list may hold only one {kind}"
    return None


@body_rule
def _r7_end_frame(b: Body) -> str | None:
    if b.frame("end_frame") is not None and b.frame("first_frame") is None:
        return "end_frame requires a first_frame in image_list"
    return None


# R2's "no start & end frames with multi-shot" is gone: §11 (05/07/2026) lets a multi-shot
# task on kling-v3-omni set a first frame, or first + end frames (R7 still needs the first),
# and kling-video-o1 has no multi-shot at all (R15).


@body_rule
def _r8_frames_base_edit(b: Body) -> str | None:
    if b.base_edit and (b.frame("first_frame") or b.frame("end_frame")):
        return "first_frame and end_frame are not supported with video editing (refer_type base)"
    return None


@body_rule
def _r9_o1_frames(b: Body) -> str | None:
    has_frames = b.frame("first_frame") is not None or b.frame("end_frame") is not None
    if b.model == "kling-video-o1" and has_frames and len(b.images) > 2:
        return "kling-video-o1 supports no first_frame or end_frame with more than 2 images"
    return None


@body_rule
def _r6_ref_count(b: Body) -> str | None:
    limit = 4 if b.videos else 7
    if len(b.images) + b.elements > limit:
        where = " with a reference video" if b.videos else ""
        return f"image_list and element_list may hold at most {limit} items in total{where}"
    return None


@body_rule
def _r10_elements(b: Body) -> str | None:
    first, end = b.frame("first_frame"), b.frame("end_frame")
    if first is None:
        return None
    if end is not None and b.model == "kling-video-o1" and b.elements:
        return "element_list is not supported with first_frame and end_frame on kling-video-o1"
    if b.elements > 3:
        return "element_list may hold at most 3 elements with a first_frame"
    return None


@body_rule
def _r11_videos(b: Body) -> str | None:
    if len(b.videos) > 1:
        return "video_list may hold at most 1 video"
    return None


@body_rule
def _r12_sound(b: Body) -> str | None:
    if b.videos and b.sound == "on":
        return "sound must be off when video_list is provided"
    return None


@body_rule
def _tokens(b: Body) -> str | None:
    # §2.3: <<<image_N>>> is the N-th item of image_list (likewise element, video).
    counts = {"image": len(b.images), "element": b.elements, "video": len(b.videos)}
    for text in b.texts:
        for match in TOKEN.finditer(text):
            kind, n = match.group(1), int(match.group(2))
            if not 1 <= n <= counts[kind]:
                return f"{match.group(0)} refers to no item of {kind}_list ({counts[kind]} items)"
    return None


def check_body(raw: Any) -> Body:
    """Read a create body and check it against R1-R16; raises Invalid on the first error."""
    if not isinstance(raw, dict):
        raise Invalid("request body must be a JSON object")
    body = read_body(raw)
    for rule in BODY_RULES:
        message = rule(body)
        if message is not None:
            raise Invalid(message)
    return body


def units_charged(body: Body) -> str:
    """final_unit_deduction as Kling sends it: units per second x seconds, e.g. "4" or "4.5"."""
    silent, sound, video = UNITS_PER_SECOND[body.model][body.mode]
    rate = video if body.videos else sound if body.sound == "on" else silent
    units = Decimal(rate) * body.seconds
    return _decimal(units)


def _decimal(value: Decimal) -> str:
    return format(value.normalize(), "f")


# -- element creates (kling-api.md §7.1) ----------------------------------------------

ELEMENT_NAME_CHARS = 20
ELEMENT_DESCRIPTION_CHARS = 100
REFERENCE_TYPES = ("image_refer", "video_refer")
MAX_REFER_IMAGES = 3
ELEMENT_TAGS = tuple(f"o_{n}" for n in range(101, 109))  # hot meme, character, ... other
CHARACTER_TAG = "o_102"  # §11.2: of image elements, only a character (humanoid) takes a voice


@dataclass(frozen=True, slots=True)
class ElementBody:
    """An element create body (§7.1) after its checks."""

    name: str
    description: str
    reference_type: str  # image_refer | video_refer
    images: tuple[Picture, ...]  # image_refer: the frontal image first, then 1-3 more
    video_url: str | None  # video_refer: the one reference video
    tags: tuple[str, ...]
    voice_id: str | None
    external_task_id: str | None


def check_element_body(raw: Any) -> ElementBody:
    """Read an element create body and check it (§7.1); raises Invalid on the first error.

    Like the video rules it is no stricter than the fact sheet: a video is passed by URL
    and cannot be fetched, so its length, resolution and content go unchecked.
    """
    if not isinstance(raw, dict):
        raise Invalid("request body must be a JSON object")
    name = _required_text(raw, "element_name", ELEMENT_NAME_CHARS)
    description = _required_text(raw, "element_description", ELEMENT_DESCRIPTION_CHARS)
    reference_type = _enum(raw, "reference_type", REFERENCE_TYPES)
    if reference_type is None:
        raise Invalid("reference_type is required")
    images: tuple[Picture, ...] = ()
    video_url = None
    if reference_type == "image_refer":
        images = _element_images(raw)
    else:
        video_url = _element_video(raw)
    tags = []
    for i, item in enumerate(_list(raw, "tag_list")):
        tag = item.get("tag_id")
        if tag not in ELEMENT_TAGS:
            raise Invalid(f"tag_list[{i}].tag_id must be one of {', '.join(ELEMENT_TAGS)}")
        tags.append(tag)
    voice_id = _present(raw, "element_voice_id")
    if voice_id is not None and (isinstance(voice_id, bool) or not isinstance(voice_id, str | int)):
        raise Invalid("element_voice_id must be a voice id")
    if voice_id is not None and reference_type == "image_refer" and tags:
        if CHARACTER_TAG not in tags:
            raise Invalid(
                "element_voice_id: of image elements only a character or humanoid element "
                f"(tag {CHARACTER_TAG}) can take a voice"
            )
    _string(raw, "callback_url")
    return ElementBody(
        name=name,
        description=description,
        reference_type=reference_type,
        images=images,
        video_url=video_url,
        tags=tuple(tags),
        voice_id=None if voice_id is None else str(voice_id),
        external_task_id=_string(raw, "external_task_id"),
    )


def _required_text(raw: dict[str, Any], key: str, limit: int) -> str:
    value = _string(raw, key)
    if value is None:
        raise Invalid(f"{key} is required")
    if len(value) > limit:
        raise Invalid(f"{key} must be at most {limit} characters")
    return value


def _element_images(raw: dict[str, Any]) -> tuple[Picture, ...]:
    where = "element_image_list"
    images = _present(raw, where)
    if images is None:
        raise Invalid(f"{where} is required when reference_type is image_refer")
    if not isinstance(images, dict):
        raise Invalid(f"{where} must be an object with frontal_image and refer_images")
    frontal_value = _string(images, "frontal_image", f"{where}.")
    if frontal_value is None:
        raise Invalid(f"{where}.frontal_image is required")
    frontal = read_picture(frontal_value, f"{where}.frontal_image")
    refers = _present(images, "refer_images")
    if refers is None:
        raise Invalid(f"{where}.refer_images is required (1 to {MAX_REFER_IMAGES} images)")
    if not isinstance(refers, list) or not all(isinstance(item, dict) for item in refers):
        raise Invalid(f"{where}.refer_images must be an array of objects")
    if len(refers) > MAX_REFER_IMAGES:
        raise Invalid(f"{where}.refer_images must have 1 to {MAX_REFER_IMAGES} items")
    pictures = [frontal]
    for i, item in enumerate(refers):
        field = f"{where}.refer_images[{i}].image_url"
        value = _string(item, "image_url", f"{where}.refer_images[{i}].")
        if value is None:
            raise Invalid(f"{field} is required")
        picture = read_picture(value, field)
        if picture.identity == frontal.identity:
            # §7.1: the further images differ from the frontal one.
            raise Invalid(f"{field} must differ from frontal_image")
        pictures.append(picture)
    return tuple(pictures)


def _element_video(raw: dict[str, Any]) -> str:
    where = "element_video_list"
    videos = _present(raw, where)
    if videos is None:
        raise Invalid(f"{where} is required when reference_type is video_refer")
    if not isinstance(videos, dict):
        raise Invalid(f"{where} must be an object with refer_videos")
    refers = _present(videos, "refer_videos") or []
    if not isinstance(refers, list) or not all(isinstance(item, dict) for item in refers):
        raise Invalid(f"{where}.refer_videos must be an array of objects")
    if len(refers) != 1:
        raise Invalid(f"{where}.refer_videos must hold exactly 1 video")
    url = _string(refers[0], "video_url", f"{where}.refer_videos[0].")
    if url is None:
        raise Invalid(f"{where}.refer_videos[0].video_url is required")
    if not url.startswith("https://"):
        raise Invalid(f"{where}.refer_videos[0].video_url must be an https URL")
    return url


# -- Omni-Image creates (kling-api.md §11.1) ------------------------------------------

IMAGE_MODELS = ("kling-image-o1", "kling-v3-omni")
DEFAULT_IMAGE_MODEL = "kling-image-o1"  # §11.1: an omitted model_name selects Image O1
IMAGE_RESOLUTIONS = ("1k", "2k", "4k")
IMAGE_ASPECTS = {
    "16:9": (16, 9),
    "9:16": (9, 16),
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "3:2": (3, 2),
    "2:3": (2, 3),
    "21:9": (21, 9),
}
AUTO = "auto"  # aspect_ratio and series_amount: Kling chooses
MAX_IMAGE_REFERENCES = 10  # image_list + element_list together
MAX_IMAGES = 9  # n
SERIES_AMOUNTS = range(2, 10)
DEFAULT_SERIES_AMOUNT = 4  # Kling's default; the emulator makes as many for "auto"
IMAGE_UNITS = {"1k": 8, "2k": 8, "4k": 16}  # image units per image made


@dataclass(frozen=True, slots=True)
class ImageBody:
    """An Omni-Image create body (§11.1) after its checks, defaults applied."""

    model: str
    prompt: str
    images: tuple[Picture, ...]  # image_list: https URLs (not fetched) or decoded Base64
    elements: int
    resolution: str  # 1k | 2k | 4k
    result_type: str  # single | series
    count: int  # images the task makes: n for single, the series' amount for series
    aspect_ratio: str  # a key of IMAGE_ASPECTS, or "auto"
    external_task_id: str | None
    watermark: bool


def check_image_body(raw: Any) -> ImageBody:
    """Read an Omni-Image create body and check it (§11.1); raises Invalid on the first error.

    As Kling says, `n` is ignored for a series and `series_amount` for a single image.
    """
    if not isinstance(raw, dict):
        raise Invalid("request body must be a JSON object")
    model = _enum(raw, "model_name", IMAGE_MODELS) or DEFAULT_IMAGE_MODEL
    prompt = _string(raw, "prompt")
    if prompt is None:
        raise Invalid("prompt is required")
    if len(prompt) > PROMPT_CHARS:
        raise Invalid(f"prompt must be at most {PROMPT_CHARS} characters")
    images = []
    for i, item in enumerate(_list(raw, "image_list")):
        value = _string(item, "image", f"image_list[{i}].")
        if value is None:
            raise Invalid(f"image_list[{i}].image is required")
        images.append(read_picture(value, f"image_list[{i}].image"))
    elements = _list(raw, "element_list")
    for i, item in enumerate(elements):
        if _element_id(item.get("element_id")) is None:
            raise Invalid(f"element_list[{i}].element_id must be an integer element id")
    if len(images) + len(elements) > MAX_IMAGE_REFERENCES:
        raise Invalid(
            f"image_list and element_list may hold at most {MAX_IMAGE_REFERENCES} items in total"
        )
    _image_tokens(prompt, len(images), len(elements))
    resolution = _enum(raw, "resolution", IMAGE_RESOLUTIONS) or "1k"
    result_type = _enum(raw, "result_type", ("single", "series")) or "single"
    count = _series_amount(raw) if result_type == "series" else _image_n(raw)
    aspect = _enum(raw, "aspect_ratio", (*IMAGE_ASPECTS, AUTO)) or AUTO
    watermark = _present(raw, "watermark_info") or {}
    if not isinstance(watermark, dict) or not isinstance(watermark.get("enabled", False), bool):
        raise Invalid('watermark_info must be an object such as {"enabled": true}')
    _string(raw, "callback_url")
    return ImageBody(
        model=model,
        prompt=prompt,
        images=tuple(images),
        elements=len(elements),
        resolution=resolution,
        result_type=result_type,
        count=count,
        aspect_ratio=aspect,
        external_task_id=_string(raw, "external_task_id"),
        watermark=bool(watermark.get("enabled", False)),
    )


def _image_tokens(prompt: str, images: int, elements: int) -> None:
    # §11.1: <<<image_N>>> is the N-th item of image_list, <<<element_N>>> of element_list.
    counts = {"image": images, "element": elements}
    for match in TOKEN.finditer(prompt):
        kind, n = match.group(1), int(match.group(2))
        if kind not in counts:
            raise Invalid(
                f"{match.group(0)} refers to nothing: Omni-Image takes image_list and "
                "element_list, no videos"
            )
        if not 1 <= n <= counts[kind]:
            raise Invalid(
                f"{match.group(0)} refers to no item of {kind}_list ({counts[kind]} items)"
            )


def _image_n(raw: dict[str, Any]) -> int:
    n = _present(raw, "n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
        raise Invalid(f"n must be an integer from 1 to {MAX_IMAGES}")
    return n


def _series_amount(raw: dict[str, Any]) -> int:
    amount = _present(raw, "series_amount")
    if amount is None or amount == AUTO:
        return DEFAULT_SERIES_AMOUNT
    # Kling lists the values 2..9 and "auto": take the numbers as JSON numbers or strings.
    if isinstance(amount, str) and amount.isascii() and amount.isdecimal():
        amount = int(amount)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount not in SERIES_AMOUNTS:
        raise Invalid(
            f"series_amount must be an integer from {SERIES_AMOUNTS[0]} to "
            f"{SERIES_AMOUNTS[-1]}, or auto"
        )
    return amount


def image_units(body: ImageBody) -> str:
    """final_unit_deduction of an Omni-Image task: image units per image x images (§11.1)."""
    return str(IMAGE_UNITS[body.resolution] * body.count)


# -- sound: custom voices, TTS, sound effects (kling-api.md §11.2) ----------------------

VOICE_NAME_CHARS = 20
# §11.2: the sample is fetched by URL (no Base64): an audio or a video file.
VOICE_URL_SUFFIXES = (".mp3", ".wav", ".mp4", ".mov")
VOICE_SAMPLE_SECONDS = (5, 30)  # §11.2: one clean human voice, 5-30 s
VOICE_LANGUAGES = ("zh", "en")
DEFAULT_VOICE_LANGUAGE = "zh"  # Kling's page lists zh as the default
TTS_TEXT_CHARS = 1000
VOICE_SPEEDS = (Decimal("0.8"), Decimal("2.0"))
SFX_PROMPT_CHARS = 200
SFX_SECONDS = (Decimal("3.0"), Decimal("10.0"))
TENTH = Decimal("0.1")
# Units a call (§11.2): a custom voice, a TTS call, a sound effect.
VOICE_UNITS = "0.05"
TTS_UNITS = "0.05"
SFX_UNITS = "0.25"


@dataclass(frozen=True, slots=True)
class VoiceBody:
    """A custom-voice create body (§11.2) after its checks: a sample URL or a video id."""

    name: str
    voice_url: str | None
    video_id: str | None
    external_task_id: str | None


def check_voice_body(raw: Any) -> VoiceBody:
    """Read a custom-voice create body and check it (§11.2); raises Invalid on the first error.

    The sample is not fetched: its kind is read from the URL's path, its length goes
    unchecked here (the app checks the length of a sample it serves itself).
    """
    if not isinstance(raw, dict):
        raise Invalid("request body must be a JSON object")
    name = _required_text(raw, "voice_name", VOICE_NAME_CHARS)
    voice_url = _string(raw, "voice_url")
    video_id = _present(raw, "video_id")
    if video_id is not None and (isinstance(video_id, bool) or not isinstance(video_id, str | int)):
        raise Invalid("video_id must be the id of a video")
    if (voice_url is None) == (video_id is None):
        raise Invalid("give one of voice_url (a sample's URL) or video_id (a video made before)")
    if voice_url is not None:
        _voice_url(voice_url)
    _string(raw, "callback_url")
    return VoiceBody(
        name=name,
        voice_url=voice_url,
        video_id=None if video_id is None else str(video_id),
        external_task_id=_string(raw, "external_task_id"),
    )


def _voice_url(url: str) -> None:
    kinds = ", ".join(VOICE_URL_SUFFIXES)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid(
            f"voice_url must be an http(s) URL of a {kinds} file (Kling takes no Base64 here)"
        )
    if not parts.path.lower().endswith(VOICE_URL_SUFFIXES):
        raise Invalid(f"voice_url must name a {kinds} file")


@dataclass(frozen=True, slots=True)
class SpeechBody:
    """A TTS body (§11.2) after its checks, the speed rounded to Kling's one decimal."""

    text: str
    voice_id: str
    language: str  # zh | en
    speed: Decimal  # 0.8-2.0


def check_speech_body(raw: Any) -> SpeechBody:
    """Read a TTS body and check it (§11.2); raises Invalid on the first error.

    Whether `voice_id` names a voice, and one that speaks `voice_language`, is the
    account's state: the app checks it. TTS takes no external_task_id and no callback
    (it cannot be looked up): a body that sends one is refused, so a client that means to
    find a TTS call again learns at once that it cannot.
    """
    if not isinstance(raw, dict):
        raise Invalid("request body must be a JSON object")
    text = _required_text(raw, "text", TTS_TEXT_CHARS)
    if not text.strip():
        raise Invalid("text must not be blank")
    voice_id = _string(raw, "voice_id")
    if voice_id is None:
        raise Invalid("voice_id is required")
    language = _enum(raw, "voice_language", VOICE_LANGUAGES) or DEFAULT_VOICE_LANGUAGE
    speed = _tenths(raw, "voice_speed", VOICE_SPEEDS, Decimal("1.0"))
    for key in ("external_task_id", "callback_url"):
        if _present(raw, key) is not None:
            raise Invalid(f"{key}: TTS takes none (the call answers with its result)")
    return SpeechBody(text=text, voice_id=voice_id, language=language, speed=speed)


@dataclass(frozen=True, slots=True)
class EffectBody:
    """A sound-effect body (§11.2) after its checks, the duration rounded to one decimal."""

    prompt: str
    seconds: Decimal  # 3.0-10.0
    external_task_id: str | None


def check_effect_body(raw: Any) -> EffectBody:
    """Read a sound-effect (text-to-audio) body and check it (§11.2); raises Invalid."""
    if not isinstance(raw, dict):
        raise Invalid("request body must be a JSON object")
    prompt = _required_text(raw, "prompt", SFX_PROMPT_CHARS)
    if not prompt.strip():
        raise Invalid("prompt must not be blank")
    seconds = _tenths(raw, "duration", SFX_SECONDS, None)
    _string(raw, "callback_url")
    return EffectBody(
        prompt=prompt, seconds=seconds, external_task_id=_string(raw, "external_task_id")
    )


def _tenths(
    raw: dict[str, Any], key: str, bounds: tuple[Decimal, Decimal], default: Decimal | None
) -> Decimal:
    """A number within `bounds`, rounded to one decimal as Kling does (half up)."""
    low, high = bounds
    value = raw.get(key)  # 0 is a value here, so not _present
    if value is None:
        if default is None:
            raise Invalid(f"{key} is required (a number from {low} to {high})")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"{key} must be a number from {low} to {high}")
    number = Decimal(repr(value))
    if not low <= number <= high:
        raise Invalid(f"{key} must be a number from {low} to {high}")
    return number.quantize(TENTH, ROUND_HALF_UP)


def check_delete_voice_body(raw: Any) -> str:
    """A delete-voices body (§11.2): the voice_id to delete."""
    if not isinstance(raw, dict):
        raise Invalid("request body must be a JSON object")
    voice_id = _string(raw, "voice_id")
    if voice_id is None:
        raise Invalid("voice_id is required")
    return voice_id
