"""Emulate the Kling Omni-Video API offline. HTTP requests → Kling-shaped JSON and MP4 clips.

The emulator is a Starlette app that keeps the contract of kling-api.md: auth (§1.2, §1.3),
its own reading of the body rules R1-R16 (§3: a bad body is HTTP 400, code 1201 with a
message naming the field), unique `external_task_id`, the account's concurrency cap (1303),
the task timeline submitted → processing → succeed | failed on an injected clock, and real
MP4 placeholder clips of the paid length and aspect, encoded lazily on first download.

It also keeps an element registry (§7.1, `/v1/general/advanced-custom-elements`): element
creates are checked (1201), take `element_latency` seconds on the same clock, hold no
video concurrency slot, and end with an integer `element_id` that video creates accept in
`element_list` (as they accept any positive id from the user's own library).

It reads the rules independently of `compiler.rules` on purpose: it exists to catch the
compiler's bugs. Where the facts are disputed it is no stricter than a rule it can cite
(kling-api.md §9.14), and it reads an empty string, list or null as an absent field (§9.13).

Use it in-process::

    emulator = Emulator(latency=2.0, clock=fake_clock, sleep=fake_sleep)
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://emulator") as c:
        ...

or as a server with `serve(host, port, emulator)`. Faults are injected through
`emulator.faults` (or `POST /_emulator/faults`) for the client's and executor's tests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import random
import re
import secrets
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from io import BytesIO
from typing import Any, Literal, TypeVar, cast, get_args

import anyio.to_thread
import httpx
import jwt
from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ConnectionDropped", "Emulator", "Fault", "FaultPlan", "serve"]

MODELS = ("kling-video-o1", "kling-v3-omni")
DEFAULT_MODEL = "kling-video-o1"  # §2.1: an omitted model_name selects O1
MODES = {"kling-video-o1": ("std", "pro"), "kling-v3-omni": ("std", "pro", "4k")}  # R15
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

# Output size by mode (std 720p, pro 1080p, 4k), as (long side, short side).
FRAME_SIZES = {"std": (1280, 720), "pro": (1920, 1080), "4k": (3840, 2160)}

ELEMENTS_PATH = "/v1/general/advanced-custom-elements"  # §7.1

TOKEN = re.compile(r"<<<(image|element|video)_(\d+)>>>")
CHUNK = 64 * 1024
BLOB_CHUNK = 1024 * 1024

FaultKind = Literal[
    "http_500",
    "code_1302",
    "code_1303",
    "drop_before",
    "drop_after",
    "slow",
    "truncate",
    "fail_task",
]
B = TypeVar("B")  # a checked request body
FaultOp = Literal["create", "query", "download", "element", "any"]
Op = Literal["create", "query", "download", "element"]

# Faults that answer a request; `fail_task` acts on the created task instead.
REQUEST_FAULTS: dict[Op, frozenset[str]] = {
    "create": frozenset(
        {"http_500", "code_1302", "code_1303", "drop_before", "drop_after", "slow"}
    ),
    "query": frozenset({"http_500", "code_1302", "code_1303", "drop_before", "drop_after", "slow"}),
    "download": frozenset(
        {"http_500", "code_1302", "code_1303", "drop_before", "drop_after", "slow", "truncate"}
    ),
    # Every request to the element registry: create, query one, list.
    "element": frozenset(
        {"http_500", "code_1302", "code_1303", "drop_before", "drop_after", "slow"}
    ),
}

# Keys the ASGI wrapper puts in the scope.
_SERVER = "emulator.server"  # True under uvicorn, False in-process
_DROPPED = "emulator.dropped"  # set by a handler that drops the connection


class ConnectionDropped(Exception):
    """The app drops the connection instead of answering.

    In-process, `Emulator.transport()` turns it into `httpx.RemoteProtocolError`; under
    uvicorn the connection is closed after the status line, so the client's read fails.
    """


def _drop(request: Request) -> ConnectionDropped:
    request.scope[_DROPPED] = True
    return ConnectionDropped()


# -- faults ---------------------------------------------------------------------------


@dataclass(slots=True)
class Fault:
    """One injected fault; `times` is how many more requests it hits."""

    kind: FaultKind
    op: FaultOp = "any"
    times: int = 1
    delay: float = 0.0
    message: str | None = None
    match: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultPlan:
    """Faults waiting to hit requests, first added first served.

    `op` picks the requests a fault can hit: create, query (one task or the list),
    download (clips, blobs and element images), element (every request to the element
    registry: create, query one, list) or any. `match`, when given, narrows it to requests
    whose subject contains the text: a create's prompt, shot prompts or external_task_id,
    an element create's element_name or external_task_id, a query's id, a download's
    task id. A `fail_task` fault with op element (or any) fails the next element task.
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        kind: str,
        op: str = "any",
        times: int = 1,
        delay: float = 0.0,
        message: str | None = None,
        match: str | None = None,
    ) -> Fault:
        if kind not in get_args(FaultKind):
            raise ValueError(f"kind must be one of {', '.join(get_args(FaultKind))}")
        if op not in get_args(FaultOp):
            raise ValueError(f"op must be one of {', '.join(get_args(FaultOp))}")
        if kind == "fail_task" and op not in ("create", "element", "any"):
            raise ValueError("a fail_task fault acts on creates: op must be create, element or any")
        if kind == "truncate" and op not in ("download", "any"):
            raise ValueError("a truncate fault acts on downloads: op must be download or any")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise ValueError("delay must be a number of seconds >= 0")
        if message is not None and not isinstance(message, str):
            raise ValueError("message must be a string")
        if match is not None and not isinstance(match, str):
            raise ValueError("match must be a string")
        fault = Fault(
            cast(FaultKind, kind), cast(FaultOp, op), times, float(delay), message, match or None
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [Fault(**asdict(f)) for f in self._faults]

    def take(self, op: Op, subjects: Sequence[str], kinds: Collection[str]) -> Fault | None:
        """Use up one hit of the first fault of `kinds` that applies; a copy, or None."""
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds or fault.op not in (op, "any"):
                    continue
                if fault.match is not None and not any(fault.match in s for s in subjects):
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return Fault(**{**asdict(fault), "times": 1})
        return None


# -- reading a create body ------------------------------------------------------------


class Invalid(Exception):
    """A create body breaks a rule: HTTP 400, code 1201, with this message."""


@dataclass(frozen=True, slots=True)
class _Shot:
    index: int
    prompt: str
    seconds: int


@dataclass(frozen=True, slots=True)
class _Image:
    type: str | None  # first_frame | end_frame | None (a reference image)
    data: bytes | None  # decoded Base64; None for a URL
    size: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class _Video:
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
    shots: tuple[_Shot, ...]
    images: tuple[_Image, ...]
    elements: int
    videos: tuple[_Video, ...]
    external_task_id: str | None
    watermark: bool

    @property
    def base_edit(self) -> bool:
        return any(v.refer_type == "base" for v in self.videos)

    def frame(self, kind: str) -> _Image | None:
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
    shots: tuple[_Shot, ...] = ()
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


def _read_shot(item: dict[str, Any], i: int) -> _Shot:
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
    return _Shot(index, prompt, _seconds(duration, f"{where}.duration"))


def _read_video(item: dict[str, Any], i: int) -> _Video:
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
    return _Video(refer_type, keep)


def _read_image(item: dict[str, Any], i: int) -> _Image:
    where = f"image_list[{i}]"
    kind = _string(item, "type", f"{where}.")
    if kind not in (None, "first_frame", "end_frame"):
        raise Invalid(f"{where}.type must be one of first_frame, end_frame")
    value = _string(item, "image_url", f"{where}.")
    if value is None:
        raise Invalid(f"{where}.image_url is required")
    picture = read_picture(value, f"{where}.image_url")
    return _Image(kind, picture.data, picture.size)


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
    """Allowed output seconds by model and case (§3.3, the capability map)."""
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


@body_rule
def _r2_multi_shot_frames(b: Body) -> str | None:
    # R2 forbids start & end frames; a lone first frame is disputed, so it passes.
    if b.multi_shot and b.frame("end_frame") is not None:
        return "end_frame is not supported when multi_shot is true"
    return None


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


# -- tasks ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Task:
    task_id: str
    external_task_id: str | None
    body: Body
    created: float  # on the emulator's clock
    finishes: float
    fail_message: str | None
    units: str
    clip: bytes | None = None
    encode_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(slots=True)
class _ElementTask:
    task_id: str
    external_task_id: str | None
    body: ElementBody
    element_id: int  # drawn at create, shown once the task succeeds
    created: float  # on the emulator's clock
    finishes: float
    fail_message: str | None

    @property
    def stats_key(self) -> str:
        return self.external_task_id or self.body.name


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


def clip_size(body: Body, max_side: int | None) -> tuple[int, int]:
    """Output width and height: by mode, shaped by the first frame or the aspect ratio."""
    long, short = FRAME_SIZES[body.mode]
    first = body.frame("first_frame")
    if first is not None and first.size is not None:
        ratio = first.size[0] / first.size[1]  # R14: the frame sets the shape
    elif body.aspect_ratio is not None and not body.base_edit:
        w, h = ASPECTS[body.aspect_ratio]
        ratio = w / h
    else:
        ratio = long / short  # a base edit keeps the input's shape, which is unknown here
    width, height = (short * ratio, short) if ratio >= 1 else (short, short / ratio)
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = width * scale, height * scale
    return _even(width), _even(height)


# -- the app --------------------------------------------------------------------------


def _envelope(data: Any) -> dict[str, Any]:
    return {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()), "data": data}


def _error(status: int, code: int, message: str) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status)


def _fault_response(fault: Fault) -> JSONResponse:
    if fault.kind == "code_1302":
        return _error(429, 1302, fault.message or "request too fast, please slow down")
    if fault.kind == "code_1303":
        return _error(429, 1303, fault.message or "parallel task over resource pack limit")
    return _error(500, 5000, fault.message or "internal server error")


class Emulator:
    """An offline Kling Omni-Video API: Starlette `app`, in-process `transport()`, `faults`.

    `clock` and `sleep` stay public so a caller can share the emulator's time (a fake one
    in tests). `auth_clock` is the wall clock that JWT `exp`/`nbf` are checked against.
    """

    def __init__(
        self,
        *,
        latency: float = 2.0,
        element_latency: float = 1.0,
        concurrency: int = 4,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        access_key: str | None = None,
        secret_key: str | None = None,
        api_key: str | None = None,
        clip_max_side: int | None = None,
        fps: int = 24,
        auth_clock: Callable[[], float] = time.time,
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither")
        self.latency = latency
        self.element_latency = element_latency
        self.concurrency = concurrency
        self.clip_max_side = clip_max_side
        self.fps = fps
        self.faults = FaultPlan()
        self.clock = clock
        self.sleep = sleep
        self._auth_clock = auth_clock  # JWT exp/nbf are wall-clock times
        self._access_key = access_key
        self._secret_key = secret_key
        self._api_key = api_key
        # Kling's created_at/updated_at are Unix ms; anchor the task clock to the wall.
        self._wall0 = time.time()
        self._clock0 = clock()
        self._tasks: dict[str, _Task] = {}
        self._by_external: dict[str, _Task] = {}
        # The element registry (§7.1): its own tasks and external_task_id namespace.
        self._element_tasks: dict[str, _ElementTask] = {}
        self._elements_by_external: dict[str, _ElementTask] = {}
        self._element_ids: set[int] = set()
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/videos/omni-video", self._create, methods=["POST"]),
                Route("/v1/videos/omni-video", self._list, methods=["GET"]),
                Route("/v1/videos/omni-video/{id}", self._query, methods=["GET"]),
                Route(ELEMENTS_PATH, self._element_create, methods=["POST"]),
                Route(ELEMENTS_PATH, self._element_list, methods=["GET"]),
                Route(ELEMENTS_PATH + "/{id}", self._element_query, methods=["GET"]),
                Route(
                    "/_emulator/element-images/{task_id}/{n:int}",
                    self._element_image,
                    methods=["GET"],
                ),
                Route("/_emulator/clips/{task_id}.mp4", self._download, methods=["GET"]),
                Route("/_emulator/blob", self._blob, methods=["GET"]),
                Route("/_emulator/stats", self._stats, methods=["GET"]),
                Route("/_emulator/faults", self._faults_get, methods=["GET"]),
                Route("/_emulator/faults", self._faults_post, methods=["POST"]),
                Route("/_emulator/faults", self._faults_delete, methods=["DELETE"]),
            ],
            exception_handlers={HTTPException: _http_exception},
        )

    def transport(self) -> httpx.AsyncBaseTransport:
        """An in-process transport: streams like a socket, drops become RemoteProtocolError."""
        return InProcessTransport(_DropGuard(self.app, server=False))

    def stats(self) -> dict[str, Any]:
        """Tasks actually created (a refused create makes none).

        `total_creates` and `creates` (per external_task_id) count video tasks only;
        `element_creates` and `elements` count element tasks, the latter per
        external_task_id, or per element_name for a task sent without one.
        """
        with self._lock:
            creates: dict[str, int] = {}
            for task in self._tasks.values():
                if task.external_task_id is not None:
                    creates[task.external_task_id] = creates.get(task.external_task_id, 0) + 1
            elements: dict[str, int] = {}
            for element in self._element_tasks.values():
                elements[element.stats_key] = elements.get(element.stats_key, 0) + 1
            return {
                "total_creates": len(self._tasks),
                "creates": creates,
                "element_creates": len(self._element_tasks),
                "elements": elements,
            }

    # -- timeline -------------------------------------------------------------------

    def _status(self, task: _Task, now: float) -> str:
        if now >= task.finishes:
            return "failed" if task.fail_message is not None else "succeed"
        return "submitted" if now - task.created < self._submitted_for() else "processing"

    def _submitted_for(self) -> float:
        return min(1.0, self.latency / 4)

    def _ms(self, clock_time: float) -> int:
        return int((self._wall0 + clock_time - self._clock0) * 1000)

    def _in_flight(self, now: float) -> int:
        return sum(1 for task in self._tasks.values() if task.finishes > now)

    def _task_json(self, task: _Task, base_url: str) -> dict[str, Any]:
        now = self.clock()
        status = self._status(task, now)
        changed = {
            "submitted": task.created,
            "processing": task.created + self._submitted_for(),
        }.get(status, task.finishes)
        data: dict[str, Any] = {
            "task_id": task.task_id,
            "task_status": status,
            "task_status_msg": task.fail_message if status == "failed" else "",
            "task_info": {"external_task_id": task.external_task_id or ""},
            "watermark_info": {"enabled": task.body.watermark},
            "final_unit_deduction": task.units if status == "succeed" else "0",
            "created_at": self._ms(task.created),
            "updated_at": self._ms(changed),
        }
        if status == "succeed":
            url = f"{base_url}_emulator/clips/{task.task_id}.mp4"
            frames = round(task.body.seconds * self.fps)
            video = {"id": task.task_id, "url": url, "duration": f"{frames / self.fps:.3g}"}
            if task.body.watermark:
                video["watermark_url"] = url
            data["task_result"] = {"videos": [video]}
        return data

    # -- auth -----------------------------------------------------------------------

    def _auth_error(self, request: Request) -> JSONResponse | None:
        header = request.headers.get("authorization", "").strip()
        if not header:
            return _error(401, 1001, "Authorization header is empty")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _error(401, 1002, "Authorization is invalid: expected 'Bearer <token>'")
        if self._api_key is None and self._secret_key is None:
            return None  # no keys configured: any Bearer token will do
        if self._api_key is not None and hmac.compare_digest(token, self._api_key):
            return None
        if self._access_key is None or self._secret_key is None:
            return _error(401, 1002, "Authorization is invalid: unknown API key")
        try:
            with warnings.catch_warnings():
                # PyJWT warns about secrets under 32 bytes; the key is the account's choice.
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                claims = jwt.decode(
                    token,
                    self._secret_key,
                    algorithms=["HS256"],
                    options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
                )
        except jwt.InvalidTokenError:
            return _error(401, 1002, "Authorization is invalid: bad token or signature")
        if claims.get("iss") != self._access_key:
            return _error(401, 1002, "Authorization is invalid: unknown access key (iss)")
        now = self._auth_clock()
        nbf, exp = claims.get("nbf"), claims.get("exp")
        if isinstance(nbf, int | float) and now < nbf:
            return _error(401, 1003, "Token is not yet valid (nbf)")
        if isinstance(exp, int | float) and now >= exp:
            return _error(401, 1004, "Token has expired (exp)")
        return None

    # -- handlers -------------------------------------------------------------------

    async def _admit(
        self,
        request: Request,
        op: Op,
        subjects_of: Callable[[Any], list[str]],
        check: Callable[[Any], B],
    ) -> tuple[B, list[str], Fault | None] | Response:
        """What every create goes through: auth, JSON, request faults, the body rules."""
        if (denied := self._auth_error(request)) is not None:
            return denied
        try:
            raw = await request.json()
        except ValueError:
            return _error(400, 1200, "request body must be JSON")
        subjects = subjects_of(raw)
        fault = self.faults.take(op, subjects, REQUEST_FAULTS[op])
        if fault is not None and fault.kind == "drop_before":
            raise _drop(request)
        if fault is not None and fault.kind in ("http_500", "code_1302", "code_1303"):
            return _fault_response(fault)
        try:
            return check(raw), subjects, fault
        except Invalid as exc:
            return _error(400, 1201, str(exc))

    async def _create(self, request: Request) -> Response:
        admitted = await self._admit(request, "create", _subjects, check_body)
        if isinstance(admitted, Response):
            return admitted
        body, subjects, fault = admitted
        now = self.clock()
        ext = body.external_task_id
        with self._lock:
            if ext is not None and ext in self._by_external:
                return _error(400, 1201, f"external_task_id must be unique: {ext!r} exists")
            if self._in_flight(now) >= self.concurrency:
                return _error(429, 1303, "parallel task over resource pack limit")
            failing = self.faults.take("create", subjects, {"fail_task"})
            task = _Task(
                task_id=self._new_task_id(),
                external_task_id=ext,
                body=body,
                created=now,
                finishes=now + self.latency,
                fail_message=(failing.message or "task failed (emulated)") if failing else None,
                units=units_charged(body),
            )
            self._tasks[task.task_id] = task
            if ext is not None:
                self._by_external[ext] = task
        return await self._answer_created(request, fault, task.task_id, ext, task.created)

    async def _answer_created(
        self, request: Request, fault: Fault | None, task_id: str, ext: str | None, created: float
    ) -> Response:
        """The answer to a create that made a task: late, lost or on time, as faulted."""
        if fault is not None and fault.kind == "slow":
            await self.sleep(fault.delay)
        if fault is not None and fault.kind == "drop_after":
            raise _drop(request)
        data = {
            "task_id": task_id,
            "task_status": "submitted",
            "task_info": {"external_task_id": ext or ""},
            "created_at": self._ms(created),
            "updated_at": self._ms(created),
        }
        return JSONResponse(_envelope(data))

    def _new_task_id(self) -> str:
        # Random, like Kling's: a restarted emulator must not answer for old task ids.
        while True:
            task_id = str(secrets.randbelow(9 * 10**17) + 10**17)
            if task_id not in self._tasks and task_id not in self._element_tasks:
                return task_id

    def _new_element_id(self) -> int:
        # Twelve digits like the library ids in Kling's examples; below 2**53 for JS.
        while True:
            element_id = secrets.randbelow(9 * 10**11) + 10**11
            if element_id not in self._element_ids:
                self._element_ids.add(element_id)
                return element_id

    async def _request_fault(self, request: Request, op: Op, subject: str) -> Fault | None:
        """Apply the faults that come before the answer; return the one still to apply."""
        fault = self.faults.take(op, [subject], REQUEST_FAULTS[op])
        if fault is None:
            return None
        if fault.kind == "drop_before":
            raise _drop(request)
        if fault.kind == "slow":
            await self.sleep(fault.delay)
            return None
        return fault

    async def _query(self, request: Request) -> Response:
        return await self._lookup(request, "query", self._tasks, self._by_external, self._task_json)

    async def _list(self, request: Request) -> Response:
        return await self._listing(request, "query", self._tasks, self._task_json)

    async def _lookup(
        self,
        request: Request,
        op: Op,
        by_id: Mapping[str, Any],
        by_external: Mapping[str, Any],
        as_json: Callable[[Any, str], dict[str, Any]],
    ) -> Response:
        """GET one task (video or element) by its task id or its external_task_id."""
        if (denied := self._auth_error(request)) is not None:
            return denied
        key = request.path_params["id"]
        fault = await self._request_fault(request, op, key)
        if fault is not None and fault.kind != "drop_after":
            return _fault_response(fault)
        with self._lock:
            task = by_id.get(key) or by_external.get(key)
        if task is None:
            return _error(404, 1203, f"task not found: {key}")
        data = as_json(task, str(request.base_url))
        if fault is not None:
            raise _drop(request)
        return JSONResponse(_envelope(data))

    async def _listing(
        self,
        request: Request,
        op: Op,
        by_id: Mapping[str, Any],
        as_json: Callable[[Any, str], dict[str, Any]],
    ) -> Response:
        """GET a page of tasks (video or element), newest first."""
        if (denied := self._auth_error(request)) is not None:
            return denied
        fault = await self._request_fault(request, op, "")
        if fault is not None and fault.kind != "drop_after":
            return _fault_response(fault)
        try:
            page = _int_param(request, "pageNum", 1, 1, 1000)
            size = _int_param(request, "pageSize", 30, 1, 500)
        except Invalid as exc:
            return _error(400, 1201, str(exc))
        with self._lock:
            tasks = sorted(by_id.values(), key=lambda t: t.created, reverse=True)
        chosen = tasks[(page - 1) * size : page * size]
        data = [as_json(task, str(request.base_url)) for task in chosen]
        if fault is not None:
            raise _drop(request)
        return JSONResponse(_envelope(data))

    # -- the element registry (§7.1) ------------------------------------------------

    async def _element_create(self, request: Request) -> Response:
        admitted = await self._admit(request, "element", _element_subjects, check_element_body)
        if isinstance(admitted, Response):
            return admitted
        body, subjects, fault = admitted
        now = self.clock()
        ext = body.external_task_id
        with self._lock:
            if ext is not None and ext in self._elements_by_external:
                return _error(400, 1201, f"external_task_id must be unique: {ext!r} exists")
            # No concurrency check: element tasks hold no video slot (§6.1 counts per type).
            failing = self.faults.take("element", subjects, {"fail_task"})
            task = _ElementTask(
                task_id=self._new_task_id(),
                external_task_id=ext,
                body=body,
                element_id=self._new_element_id(),
                created=now,
                finishes=now + self.element_latency,
                fail_message=(failing.message or "element creation failed (emulated)")
                if failing
                else None,
            )
            self._element_tasks[task.task_id] = task
            if ext is not None:
                self._elements_by_external[ext] = task
        return await self._answer_created(request, fault, task.task_id, ext, task.created)

    async def _element_query(self, request: Request) -> Response:
        return await self._lookup(
            request, "element", self._element_tasks, self._elements_by_external, self._element_json
        )

    async def _element_list(self, request: Request) -> Response:
        return await self._listing(request, "element", self._element_tasks, self._element_json)

    async def _element_image(self, request: Request) -> Response:
        """An element's Base64 image as Kling would serve it back: by URL, without auth."""
        task_id, n = request.path_params["task_id"], request.path_params["n"]
        fault = await self._request_fault(request, "download", task_id)
        if fault is not None and fault.kind not in ("drop_after", "truncate"):
            return _fault_response(fault)
        with self._lock:
            task = self._element_tasks.get(task_id)
        images = task.body.images if task is not None else ()
        picture = images[n] if 0 <= n < len(images) else None
        if picture is None or picture.data is None:
            return _error(404, 1203, f"no image {n} for element task {task_id}")
        media_type = "image/png" if picture.format == "PNG" else "image/jpeg"
        return _stream(request, picture.data, len(picture.data), fault, media_type)

    def _element_status(self, task: _ElementTask, now: float) -> tuple[str, float]:
        """The task's status at `now` and the clock time it took that status."""
        if now >= task.finishes:
            return ("failed" if task.fail_message is not None else "succeed"), task.finishes
        submitted_for = min(1.0, (task.finishes - task.created) / 4)
        if now - task.created < submitted_for:
            return "submitted", task.created
        return "processing", task.created + submitted_for

    def _element_json(self, task: _ElementTask, base_url: str) -> dict[str, Any]:
        status, since = self._element_status(task, self.clock())
        data: dict[str, Any] = {
            "task_id": task.task_id,
            "task_status": status,
            "task_status_msg": task.fail_message if status == "failed" else "",
            "task_info": {"external_task_id": task.external_task_id or ""},
            "created_at": self._ms(task.created),
            "updated_at": self._ms(since),
        }
        if status == "succeed":
            data["task_result"] = {"elements": [self._element_view(task, base_url)]}
        return data

    def _element_view(self, task: _ElementTask, base_url: str) -> dict[str, Any]:
        body = task.body
        element: dict[str, Any] = {
            "element_id": task.element_id,
            "element_name": body.name,
            "element_description": body.description,
            "reference_type": body.reference_type,
        }
        if body.images:
            urls = [
                picture.url or f"{base_url}_emulator/element-images/{task.task_id}/{n}"
                for n, picture in enumerate(body.images)
            ]
            element["element_image_list"] = {
                "frontal_image": urls[0],
                "refer_images": [{"image_url": url} for url in urls[1:]],
            }
        if body.video_url is not None:
            element["element_video_list"] = {"refer_videos": [{"video_url": body.video_url}]}
        if body.voice_id is not None:
            element["element_voice_info"] = {"voice_id": body.voice_id}
        element["tag_list"] = [{"tag_id": tag} for tag in body.tags]
        element["owned_by"] = "user"
        element["status"] = "succeed"
        return element

    async def _download(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        fault = await self._request_fault(request, "download", task_id)
        if fault is not None and fault.kind not in ("drop_after", "truncate"):
            return _fault_response(fault)
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None or self._status(task, self.clock()) != "succeed":
            return _error(404, 1203, f"no clip for task {task_id}")
        clip = task.clip
        if clip is None:
            clip = await anyio.to_thread.run_sync(self._encode, task)
        return _stream(request, clip, len(clip), fault, "video/mp4")

    async def _blob(self, request: Request) -> Response:
        try:
            size = _int_param(request, "bytes", 0, 0, 1 << 40)
            seed = _int_param(request, "seed", 0, 0, 1 << 63)
        except Invalid as exc:
            return _error(400, 1201, str(exc))
        fault = await self._request_fault(request, "download", "blob")
        if fault is not None and fault.kind not in ("drop_after", "truncate"):
            return _fault_response(fault)
        return _stream(request, _random_chunks(size, seed), size, fault)

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _faults_get(self, request: Request) -> Response:
        return JSONResponse(_envelope([f.to_json() for f in self.faults.pending()]))

    async def _faults_post(self, request: Request) -> Response:
        try:
            raw = await request.json()
            if not isinstance(raw, dict):
                raise ValueError("a fault is a JSON object")
            unknown = set(raw) - {"kind", "op", "times", "delay", "message", "match"}
            if unknown:
                raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
            fault = self.faults.add(
                raw.get("kind", ""),
                raw.get("op", "any"),
                raw.get("times", 1),
                raw.get("delay", 0.0),
                raw.get("message"),
                raw.get("match"),
            )
        except ValueError as exc:
            return _error(400, 1201, str(exc))
        return JSONResponse(_envelope(fault.to_json()))

    async def _faults_delete(self, request: Request) -> Response:
        self.faults.clear()
        return JSONResponse(_envelope(None))

    # -- clips ----------------------------------------------------------------------

    def _encode(self, task: _Task) -> bytes:
        """Encode a task's placeholder clip once (runs in a worker thread)."""
        from .media import Card, encode_placeholder

        with task.encode_lock:
            if task.clip is not None:
                return task.clip
            body = task.body
            width, height = clip_size(body, self.clip_max_side)
            label = _card_label(task.external_task_id) or f"task {task.task_id}"
            if body.shots:
                parts = [(shot.seconds, shot.prompt) for shot in body.shots]
            else:
                parts = [(body.seconds, body.prompt or "")]
            cards = [
                Card(float(seconds), f"{label} · shot {n}/{len(parts)}", _readable(text))
                for n, (seconds, text) in enumerate(parts, 1)
            ]
            audio = body.sound == "on" or any(v.keep_original_sound == "yes" for v in body.videos)
            out = BytesIO()
            encode_placeholder(
                out,
                width=width,
                height=height,
                cards=cards,
                fps=self.fps,
                audio=audio,
                first_image=_open_frame(body.frame("first_frame")),
                last_image=_open_frame(body.frame("end_frame")),
            )
            task.clip = out.getvalue()
            return task.clip


def _open_frame(image: _Image | None) -> Image.Image | None:
    if image is None or image.data is None:
        return None
    with Image.open(BytesIO(image.data)) as opened:
        return opened.convert("RGB")


def _subjects(raw: Any) -> list[str]:
    """What a create fault's `match` is compared with: prompts and external_task_id."""
    if not isinstance(raw, dict):
        return []
    texts = [raw.get("prompt"), raw.get("external_task_id")]
    shots = raw.get("multi_prompt")
    if isinstance(shots, list):
        texts += [shot.get("prompt") for shot in shots if isinstance(shot, dict)]
    return [text for text in texts if isinstance(text, str)]


def _element_subjects(raw: Any) -> list[str]:
    """What an element fault's `match` is compared with: element_name, external_task_id."""
    if not isinstance(raw, dict):
        return []
    texts = [raw.get("element_name"), raw.get("external_task_id")]
    return [text for text in texts if isinstance(text, str)]


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not value.isdecimal() or not low <= int(value) <= high:
        raise Invalid(f"{name} must be an integer from {low} to {high}")
    return int(value)


async def _random_chunks(size: int, seed: int) -> AsyncIterator[bytes]:
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(BLOB_CHUNK, left)
        yield rng.randbytes(n)
        left -= n


async def _slices(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        yield bytes(view[start : start + CHUNK])


def _stream(
    request: Request,
    body: bytes | AsyncIterator[bytes],
    size: int,
    fault: Fault | None,
    media_type: str = "application/octet-stream",
) -> StreamingResponse:
    """Stream `size` bytes with Content-Length; a truncate or drop_after fault cuts it at half."""
    chunks = _slices(body) if isinstance(body, bytes) else body

    async def content() -> AsyncIterator[bytes]:
        if fault is None:
            async for chunk in chunks:
                yield chunk
            return
        left = size // 2
        async for chunk in chunks:
            if left <= 0:
                break
            yield chunk[:left]
            left -= len(chunk)
        # Under uvicorn a short body must end the connection; in-process it just ends.
        if fault.kind == "drop_after" or request.scope.get(_SERVER):
            raise _drop(request)

    headers = {"content-length": str(size)}
    return StreamingResponse(content(), headers=headers, media_type=media_type)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return _error(404, 1202, "Invalid HTTP method")
    return _error(exc.status_code, 1203 if exc.status_code == 404 else 1200, str(exc.detail))


# -- transports -----------------------------------------------------------------------


class _DropGuard:
    """Outermost ASGI layer: turns a handler's ConnectionDropped into a dropped connection.

    Starlette answers an exception with a 500 before re-raising it; after a drop that 500
    is swallowed. In-process the exception goes on to the transport; under uvicorn the
    status line is sent and the connection closed, so the client's read fails.
    """

    def __init__(self, app: ASGIApp, *, server: bool) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[_SERVER] = self.server
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if scope.get(_DROPPED):
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except ConnectionDropped:
            if not self.server:
                raise
            if not started:
                # uvicorn answers an exception with a 500; promise a body and close instead.
                headers = [(b"content-length", b"1")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
            # Returning with the body incomplete makes uvicorn close the connection.


_END = object()


class _Exchange:
    """One request running through the app, its response body handed over chunk by chunk."""

    def __init__(self, app: ASGIApp, scope: Scope, body: bytes) -> None:
        self.app = app
        self.scope = scope
        self.body: bytes | None = body
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = asyncio.Event()
        self.taken = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.chunks: asyncio.Queue[object] = asyncio.Queue()
        self.complete = False
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
            self.started.set()
        elif message["type"] == "http.response.body" and not self.complete:
            chunk = message.get("body", b"")
            if chunk:
                # Hand over one chunk at a time, so memory stays flat on big bodies.
                self.taken.clear()
                self.chunks.put_nowait(bytes(chunk))
                await self.taken.wait()
            if not message.get("more_body", False):
                self.complete = True

    async def run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception as exc:
            self.error = exc
        finally:
            self.started.set()
            self.chunks.put_nowait(_END)

    async def next_chunk(self, timeout: float | None) -> object:
        item = await asyncio.wait_for(self.chunks.get(), timeout)
        self.taken.set()
        return item

    async def close(self) -> None:
        self.disconnected.set()
        self.taken.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task})


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, exchange: _Exchange, request: httpx.Request, timeout: float | None):
        self.exchange = exchange
        self.request = request
        self.timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        exchange = self.exchange
        while True:
            try:
                item = await exchange.next_chunk(self.timeout)
            except TimeoutError:
                raise httpx.ReadTimeout(
                    "timed out reading the body", request=self.request
                ) from None
            if item is _END:
                break
            assert isinstance(item, bytes)
            yield item
        if exchange.error is not None and not isinstance(exchange.error, ConnectionDropped):
            raise exchange.error
        if not exchange.complete:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body",
                request=self.request,
            )

    async def aclose(self) -> None:
        await self.exchange.close()


class InProcessTransport(httpx.AsyncBaseTransport):
    """Run requests through an ASGI app in this event loop, streaming like a socket would.

    Unlike httpx.ASGITransport it hands the body over as the app produces it (a 200 MB
    download stays flat in memory), honours the read timeout, and reports a dropped
    connection as httpx.RemoteProtocolError, with or without a status line first.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port),
            "client": ("127.0.0.1", 123),
            "root_path": "",
        }
        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read") if isinstance(timeouts, dict) else None
        exchange = _Exchange(self.app, scope, body)
        exchange.task = asyncio.ensure_future(exchange.run())
        try:
            await asyncio.wait_for(exchange.started.wait(), read_timeout)
        except TimeoutError:
            await exchange.close()
            raise httpx.ReadTimeout("timed out waiting for the response", request=request) from None
        except BaseException:
            await exchange.close()
            raise
        if exchange.status is None:
            await exchange.close()
            if isinstance(exchange.error, ConnectionDropped):
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            if exchange.error is not None:
                raise exchange.error
            raise httpx.RemoteProtocolError("the app sent no response", request=request)
        return httpx.Response(
            exchange.status,
            headers=exchange.headers,
            stream=_ResponseStream(exchange, request, read_timeout),
            extensions={"http_version": b"HTTP/1.1"},
        )


def serve(host: str, port: int, emulator: Emulator) -> None:
    """Run the emulator as an HTTP server until interrupted (blocking)."""
    import uvicorn

    config = uvicorn.Config(_DropGuard(emulator.app, server=True), host=host, port=port)
    uvicorn.Server(config).run()


# storyboard's own ids read `sb-<scene>-<digest>-t<take>`: a card shows the scene's name.
_STORYBOARD_ID = re.compile(r"^sb-(?P<scene>.+)-[0-9a-f]{32}-t(?P<take>[0-9]+)(?:-a[0-9]+)?$")


def _card_label(external_task_id: str | None) -> str | None:
    if not external_task_id:
        return None
    match = _STORYBOARD_ID.match(external_task_id)
    if match is None:
        return external_task_id
    take = int(match.group("take"))
    return match.group("scene") + (f" (take {take})" if take > 1 else "")


_TOKEN = re.compile(r"<<<(image|element|video)_([0-9]+)>>>")


def _readable(prompt: str) -> str:
    """A prompt as a card shows it: `<<<image_1>>>` reads as `[image 1]`."""
    return _TOKEN.sub(lambda m: f"[{m.group(1)} {m.group(2)}]", prompt)
