"""The emulator's HTTP app: routes, auth, admission, the task timeline and its stats.

`Emulator` holds the account's state (video tasks, the element registry, Omni-Image
tasks, voices, TTS calls and sound effects, the fault plan) and answers Kling's endpoints
with Kling's envelopes. What a body may hold is `rules`' business, what a clip or a still
shows `clips`', what a sound is `audio`'s, how requests reach the app `transport`'s; this
module decides what happens to a request, and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import random
import re
import secrets
import threading
import time
import uuid
import warnings
import zlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio.to_thread
import httpx
import jwt
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .audio import (
    MEDIA_TYPES,
    RATE,
    TRIAL_SECONDS,
    Audio,
    Format,
    sample_count,
    speech_seconds,
    voice_period,
)
from .clips import placeholder_clip, placeholder_still
from .elements import ELEMENTS_PATH, ElementRegistry, ElementTask, element_json, element_subjects
from .faults import REQUEST_FAULTS, Fault, FaultPlan, Op
from .images import IMAGES_PATH, ImageTask, image_json, image_subjects
from .rules import (
    VOICE_SAMPLE_SECONDS,
    Body,
    Invalid,
    VoiceBody,
    check_body,
    check_delete_voice_body,
    check_effect_body,
    check_element_body,
    check_image_body,
    check_speech_body,
    check_voice_body,
    image_units,
    units_charged,
)
from .sounds import (
    EFFECTS_PATH,
    TTS_PATH,
    EffectTask,
    SpeechCall,
    effect_json,
    effect_subjects,
    speech_json,
    speech_subjects,
)
from .timeline import status_at
from .transport import SERVER, DropGuard, InProcessTransport, drop
from .voices import (
    DELETE_VOICES_PATH,
    PRESETS,
    PRESETS_BY_ID,
    PRESETS_PATH,
    VOICES_PATH,
    VoiceRegistry,
    VoiceTask,
    delete_subjects,
    no_voice,
    preset_json,
    voice_subjects,
    voice_task_json,
)

IMAGE_MIN_LONG_SIDE = 720  # 300 px on the short side at 21:9

CHUNK = 64 * 1024
BLOB_CHUNK = 1024 * 1024
# The largest blob `/_emulator/blob` makes: 1 GiB (benchmarks ask for a few hundred MB).
BLOB_MAX = 1 << 30
# The largest request body read: 144 MiB. An Omni-Image create may carry 10 images (§11.1)
# of up to 10 MB each, sent as Base64 inside the JSON (4/3 of their size): 10 x 13.4 MiB =
# 133.3 MiB, plus a prompt (a video create: 7 images, R6, 93.3 MiB). Larger bodies are
# refused (413) before more than this is read.
BODY_MAX = 144 << 20
# A fault is a small JSON object: control bodies are capped far lower.
CONTROL_BODY_MAX = 64 << 10
# The emulator's own audio URLs, which a custom voice's voice_url may name (length checked).
OWN_AUDIO = re.compile(r"/_emulator/audio/(\d+)\.(?:mp3|wav)")

B = TypeVar("B")  # a checked request body


@dataclass(slots=True)
class _Task:
    """A video task: its checked body, its times on the emulator's clock, its clip once made."""

    task_id: str
    external_task_id: str | None
    body: Body
    created: float  # on the emulator's clock
    finishes: float
    fail_message: str | None
    units: str
    clip: bytes | None = None
    encode_lock: threading.Lock = field(default_factory=threading.Lock)


# -- answers --------------------------------------------------------------------------


def _envelope(data: Any) -> dict[str, Any]:
    return {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()), "data": data}


def _error(status: int, code: int, message: str) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status)


def _too_large(limit: int) -> JSONResponse:
    # The unread rest of the body ends the connection rather than being drained.
    response = _error(413, 1200, f"request body is too large: at most {limit} bytes")
    response.headers["connection"] = "close"
    return response


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
    `latency` and `concurrency` are the video tasks'; element tasks take `element_latency`
    and hold no slot; Omni-Image tasks take `image_latency` and hold one slot per image of
    `image_concurrency`. Placeholder stills are at most `image_max_side` pixels wide or
    tall (by default `clip_max_side`, which caps the clips). Custom-voice tasks take
    `voice_latency` and sound-effect tasks `sfx_latency`, holding no slot; TTS answers
    at once.
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
        image_latency: float = 0.5,
        image_concurrency: int = 4,
        image_max_side: int | None = None,
        voice_latency: float = 1.0,
        sfx_latency: float = 1.0,
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither")
        self.latency = latency
        self.element_latency = element_latency
        self.concurrency = concurrency
        self.clip_max_side = clip_max_side
        self.image_latency = image_latency
        self.image_concurrency = image_concurrency
        # A made image is a first frame too: its short side never under Kling's 300 px
        # minimum, even at 21:9 (so at least 720 px on the long side).
        if image_max_side is None and clip_max_side is not None:
            image_max_side = max(clip_max_side, IMAGE_MIN_LONG_SIDE)
        self.image_max_side = image_max_side
        self.voice_latency = voice_latency
        self.sfx_latency = sfx_latency
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
        self._downloads = 0  # clip downloads answered in full or in part
        self._expired = False  # results past Kling's 30 days: every clip URL answers 404
        self._by_external: dict[str, _Task] = {}
        # The element registry (§7.1): its own tasks and external_task_id namespace.
        self._elements = ElementRegistry()
        # Omni-Image tasks (§11.1): their own namespace, latency and concurrency.
        self._images: dict[str, ImageTask] = {}
        self._images_by_external: dict[str, ImageTask] = {}
        # Sound (§11.2): custom voices, TTS calls, sound-effect tasks, the audio they made.
        self._voices = VoiceRegistry()
        self._speech: dict[str, SpeechCall] = {}
        self._effects: dict[str, EffectTask] = {}
        self._effects_by_external: dict[str, EffectTask] = {}
        self._audio: dict[str, Audio] = {}  # by audio id: TTS and sound-effect results
        self._trials: dict[str, Audio] = {}  # by voice id: a voice's trial_url, made once
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/videos/omni-video", self._create, methods=["POST"]),
                Route("/v1/videos/omni-video", self._list, methods=["GET"]),
                Route("/v1/videos/omni-video/{id}", self._query, methods=["GET"]),
                Route(ELEMENTS_PATH, self._element_create, methods=["POST"]),
                Route(ELEMENTS_PATH, self._element_list, methods=["GET"]),
                Route(ELEMENTS_PATH + "/{id}", self._element_query, methods=["GET"]),
                Route(IMAGES_PATH, self._image_create, methods=["POST"]),
                Route(IMAGES_PATH, self._image_list, methods=["GET"]),
                Route(IMAGES_PATH + "/{id}", self._image_query, methods=["GET"]),
                Route(PRESETS_PATH, self._presets, methods=["GET"]),
                Route(VOICES_PATH, self._voice_create, methods=["POST"]),
                Route(VOICES_PATH, self._voice_list, methods=["GET"]),
                Route(VOICES_PATH + "/{id}", self._voice_query, methods=["GET"]),
                Route(DELETE_VOICES_PATH, self._voice_delete, methods=["POST"]),
                Route(TTS_PATH, self._tts, methods=["POST"]),
                Route(EFFECTS_PATH, self._effect_create, methods=["POST"]),
                Route(EFFECTS_PATH, self._effect_list, methods=["GET"]),
                Route(EFFECTS_PATH + "/{id}", self._effect_query, methods=["GET"]),
                Route("/_emulator/audio/{audio_id}.mp3", self._audio_mp3, methods=["GET"]),
                Route("/_emulator/audio/{audio_id}.wav", self._audio_wav, methods=["GET"]),
                Route("/_emulator/voices/{voice_id}.mp3", self._voice_trial, methods=["GET"]),
                Route(
                    "/_emulator/images/{task_id}/{index:int}.png",
                    self._image_download,
                    methods=["GET"],
                ),
                Route(
                    "/_emulator/element-images/{task_id}/{n:int}",
                    self._element_image,
                    methods=["GET"],
                ),
                Route("/_emulator/clips/{task_id}.mp4", self._download, methods=["GET"]),
                Route("/_emulator/blob", self._blob, methods=["GET"]),
                # The control routes: the API's credentials, and JSON bodies only.
                Route("/_emulator/stats", self._stats, methods=["GET"]),
                Route("/_emulator/expire", self._expire, methods=["POST"]),
                Route("/_emulator/faults", self._faults_get, methods=["GET"]),
                Route("/_emulator/faults", self._faults_post, methods=["POST"]),
                Route("/_emulator/faults", self._faults_delete, methods=["DELETE"]),
            ],
            exception_handlers={HTTPException: _http_exception},
        )

    def transport(self) -> httpx.AsyncBaseTransport:
        """An in-process transport: streams like a socket, drops become RemoteProtocolError."""
        return InProcessTransport(DropGuard(self.app, server=False))

    @property
    def open_to_any_token(self) -> bool:
        """True without keys: then any Bearer token is accepted (one must still be sent)."""
        return self._api_key is None and self._secret_key is None

    def stats(self) -> dict[str, Any]:
        """Tasks actually created (a refused create makes none), and downloads answered.

        `total_creates` and `creates` (per external_task_id) count video tasks only;
        `element_creates` and `elements` count element tasks, the latter per
        external_task_id, or per element_name for a task sent without one;
        `image_creates` and `images` count Omni-Image tasks (not the images they make),
        the latter per external_task_id. `voice_creates` and `voices` count custom-voice
        tasks, `sfx_calls` and `sfx` sound-effect tasks (the maps per external_task_id),
        `tts_calls` TTS calls (they have no external_task_id). `downloads` counts clip,
        still, audio and voice-trial downloads.
        """
        with self._lock:
            creates: dict[str, int] = {}
            for task in self._tasks.values():
                if task.external_task_id is not None:
                    creates[task.external_task_id] = creates.get(task.external_task_id, 0) + 1
            elements: dict[str, int] = {}
            for element in self._elements.tasks.values():
                elements[element.stats_key] = elements.get(element.stats_key, 0) + 1
            return {
                "total_creates": len(self._tasks),
                "creates": creates,
                "element_creates": len(self._elements.tasks),
                "elements": elements,
                "downloads": self._downloads,
                "image_creates": len(self._images),
                "images": _per_external(self._images.values()),
                "voice_creates": len(self._voices.tasks),
                "voices": _per_external(self._voices.tasks.values()),
                "tts_calls": len(self._speech),
                "sfx_calls": len(self._effects),
                "sfx": _per_external(self._effects.values()),
            }

    def expire(self) -> None:
        """From now on every result URL (clips, stills, audio) is gone, as after 30 days.

        A voice's trial_url stays: it belongs to the voice, not to a task's result.
        """
        with self._lock:
            self._expired = True

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
        ops: tuple[Op, ...],
        subjects_of: Callable[[Any], list[str]],
        check: Callable[[Any], B],
    ) -> tuple[B, list[str], Fault | None] | Response:
        """What every create goes through: auth, JSON, request faults, the body rules.

        `ops` are the fault ops the request answers to; the first picks the fault kinds.
        """
        if (denied := self._auth_error(request)) is not None:
            return denied
        raw = await _json_body(request, BODY_MAX)
        if isinstance(raw, Response):
            return raw
        subjects = subjects_of(raw)
        fault = self.faults.take(ops, subjects, _kinds(ops, download=False))
        if fault is not None and fault.kind == "drop_before":
            raise drop(request)
        if fault is not None and fault.kind in ("http_500", "code_1302", "code_1303"):
            return _fault_response(fault)
        try:
            return check(raw), subjects, fault
        except Invalid as exc:
            return _error(400, 1201, str(exc))

    async def _create(self, request: Request) -> Response:
        admitted = await self._admit(request, ("create",), _subjects, check_body)
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
        await self._late_or_lost(request, fault)
        data = {
            "task_id": task_id,
            "task_status": "submitted",
            "task_info": {"external_task_id": ext or ""},
            "created_at": self._ms(created),
            "updated_at": self._ms(created),
        }
        return JSONResponse(_envelope(data))

    async def _late_or_lost(self, request: Request, fault: Fault | None) -> None:
        """Act out a fault that strikes after the work is done: a slow or a lost answer."""
        if fault is not None and fault.kind == "slow":
            await self.sleep(fault.delay)
        if fault is not None and fault.kind == "drop_after":
            raise drop(request)

    def _new_task_id(self) -> str:
        # Random, like Kling's: a restarted emulator must not answer for old task ids.
        # Voice and audio ids are drawn the same way, from the same pool.
        while True:
            task_id = str(secrets.randbelow(9 * 10**17) + 10**17)
            taken = (
                self._tasks,
                self._elements.tasks,
                self._images,
                self._voices.tasks,
                self._voices.by_voice,
                self._speech,
                self._effects,
                self._audio,
            )
            if all(task_id not in tasks for tasks in taken):
                return task_id

    async def _request_fault(
        self, request: Request, ops: tuple[Op, ...], subject: str, download: bool = True
    ) -> Fault | None:
        """Apply the faults that come before the answer; return the one still to apply.

        Only a download (`download`) takes a truncate fault.
        """
        fault = self.faults.take(ops, [subject], _kinds(ops, download))
        if fault is None:
            return None
        if fault.kind == "drop_before":
            raise drop(request)
        if fault.kind == "slow":
            await self.sleep(fault.delay)
            return None
        return fault

    async def _query(self, request: Request) -> Response:
        return await self._lookup(
            request, ("query",), self._tasks, self._by_external, self._task_json
        )

    async def _list(self, request: Request) -> Response:
        return await self._listing(request, ("query",), self._tasks, self._task_json)

    async def _lookup(
        self,
        request: Request,
        ops: tuple[Op, ...],
        by_id: Mapping[str, Any],
        by_external: Mapping[str, Any],
        as_json: Callable[[Any, str], dict[str, Any]],
    ) -> Response:
        """GET one task (video, element or image) by its task id or its external_task_id."""
        if (denied := self._auth_error(request)) is not None:
            return denied
        key = request.path_params["id"]
        fault = await self._request_fault(request, ops, key, download=False)
        if fault is not None and fault.kind != "drop_after":
            return _fault_response(fault)
        with self._lock:
            task = by_id.get(key) or by_external.get(key)
        if task is None:
            return _error(404, 1203, f"task not found: {key}")
        data = as_json(task, str(request.base_url))
        if fault is not None:
            raise drop(request)
        return JSONResponse(_envelope(data))

    async def _listing(
        self,
        request: Request,
        ops: tuple[Op, ...],
        by_id: Mapping[str, Any],
        as_json: Callable[[Any, str], dict[str, Any]],
        page_max: int = 500,
    ) -> Response:
        """GET a page of tasks (video, element, image, voice or effect), newest first."""
        with self._lock:
            tasks = sorted(by_id.values(), key=lambda t: t.created, reverse=True)
        return await self._page(request, ops, tasks, as_json, page_max)

    async def _page(
        self,
        request: Request,
        ops: tuple[Op, ...],
        items: list[Any],
        as_json: Callable[[Any, str], dict[str, Any]],
        page_max: int,
    ) -> Response:
        """GET one page (pageNum, pageSize) of `items`, each shown by `as_json`."""
        if (denied := self._auth_error(request)) is not None:
            return denied
        fault = await self._request_fault(request, ops, "", download=False)
        if fault is not None and fault.kind != "drop_after":
            return _fault_response(fault)
        try:
            page = _int_param(request, "pageNum", 1, 1, 1000)
            size = _int_param(request, "pageSize", 30, 1, page_max)
        except Invalid as exc:
            return _error(400, 1201, str(exc))
        chosen = items[(page - 1) * size : page * size]
        data = [as_json(item, str(request.base_url)) for item in chosen]
        if fault is not None:
            raise drop(request)
        return JSONResponse(_envelope(data))

    # -- the element registry (§7.1) ------------------------------------------------

    async def _element_create(self, request: Request) -> Response:
        admitted = await self._admit(request, ("element",), element_subjects, check_element_body)
        if isinstance(admitted, Response):
            return admitted
        body, subjects, fault = admitted
        now = self.clock()
        ext = body.external_task_id
        with self._lock:
            if ext is not None and ext in self._elements.by_external:
                return _error(400, 1201, f"external_task_id must be unique: {ext!r} exists")
            # §11.2: the voice must exist now. Only character or humanoid image elements may
            # bind one, but nothing in the body tells what an image shows: any may here.
            voice = None
            if body.voice_id is not None:
                voice = self._voices.find(body.voice_id, now)
                if voice is None:
                    return _error(400, 1201, no_voice("element_voice_id", body.voice_id))
            # No concurrency check: element tasks hold no video slot (§6.1 counts per type).
            failing = self.faults.take("element", subjects, {"fail_task"})
            task = ElementTask(
                task_id=self._new_task_id(),
                external_task_id=ext,
                body=body,
                element_id=self._elements.new_element_id(),
                created=now,
                finishes=now + self.element_latency,
                fail_message=(failing.message or "element creation failed (emulated)")
                if failing
                else None,
                voice=voice,
            )
            self._elements.add(task)
        return await self._answer_created(request, fault, task.task_id, ext, task.created)

    async def _element_query(self, request: Request) -> Response:
        return await self._lookup(
            request,
            ("element",),
            self._elements.tasks,
            self._elements.by_external,
            self._element_json,
        )

    async def _element_list(self, request: Request) -> Response:
        return await self._listing(request, ("element",), self._elements.tasks, self._element_json)

    async def _element_image(self, request: Request) -> Response:
        """An element's Base64 image as Kling would serve it back: by URL, without auth."""
        task_id, n = request.path_params["task_id"], request.path_params["n"]
        fault = await self._request_fault(request, ("download",), task_id)
        if fault is not None and fault.kind not in ("drop_after", "truncate"):
            return _fault_response(fault)
        with self._lock:
            task = self._elements.tasks.get(task_id)
        images = task.body.images if task is not None else ()
        picture = images[n] if 0 <= n < len(images) else None
        if picture is None or picture.data is None:
            return _error(404, 1203, f"no image {n} for element task {task_id}")
        media_type = "image/png" if picture.format == "PNG" else "image/jpeg"
        return _stream(request, picture.data, len(picture.data), fault, media_type)

    def _element_json(self, task: ElementTask, base_url: str) -> dict[str, Any]:
        return element_json(task, self.clock(), base_url, self._ms)

    # -- Omni-Image (§11.1) ---------------------------------------------------------

    async def _image_create(self, request: Request) -> Response:
        ops: tuple[Op, ...] = ("create", "image")
        admitted = await self._admit(request, ops, image_subjects, check_image_body)
        if isinstance(admitted, Response):
            return admitted
        body, subjects, fault = admitted
        now = self.clock()
        ext = body.external_task_id
        with self._lock:
            if ext is not None and ext in self._images_by_external:
                return _error(400, 1201, f"external_task_id must be unique: {ext!r} exists")
            # §11.1: image packs have their own concurrency; a task holds a slot per image.
            if self._image_slots(now) + body.count > self.image_concurrency:
                return _error(429, 1303, "parallel task over resource pack limit")
            failing = self.faults.take(ops, subjects, {"fail_task"})
            task = ImageTask(
                task_id=self._new_task_id(),
                external_task_id=ext,
                body=body,
                created=now,
                finishes=now + self.image_latency,
                fail_message=(failing.message or "image task failed (emulated)")
                if failing
                else None,
                units=image_units(body),
            )
            self._images[task.task_id] = task
            if ext is not None:
                self._images_by_external[ext] = task
        return await self._answer_created(request, fault, task.task_id, ext, task.created)

    def _image_slots(self, now: float) -> int:
        return sum(task.slots for task in self._images.values() if task.finishes > now)

    async def _image_query(self, request: Request) -> Response:
        ops: tuple[Op, ...] = ("query", "image")
        return await self._lookup(
            request, ops, self._images, self._images_by_external, self._image_json
        )

    async def _image_list(self, request: Request) -> Response:
        return await self._listing(request, ("query", "image"), self._images, self._image_json)

    def _image_json(self, task: ImageTask, base_url: str) -> dict[str, Any]:
        return image_json(task, self.clock(), base_url, self._ms)

    async def _image_download(self, request: Request) -> Response:
        """A still's PNG, drawn on first download: by URL, without auth, like a clip."""
        task_id, index = request.path_params["task_id"], request.path_params["index"]
        fault = await self._request_fault(request, ("download", "image"), task_id)
        if fault is not None and fault.kind not in ("drop_after", "truncate"):
            return _fault_response(fault)
        with self._lock:
            task = self._images.get(task_id)
            expired = self._expired
        if expired:
            return _error(404, 1203, f"the result of task {task_id} has expired")
        if task is None or status_at(task, self.clock())[0] != "succeed":
            return _error(404, 1203, f"no images for task {task_id}")
        if not 0 <= index < task.body.count:
            return _error(404, 1203, f"no image {index} for task {task_id}")
        with self._lock:
            self._downloads += 1
        png = task.pngs.get(index)
        if png is None:
            png = await anyio.to_thread.run_sync(self._draw, task, index)
        return _stream(request, png, len(png), fault, "image/png")

    # -- sound: voices, TTS, sound effects (§11.2) ----------------------------------

    async def _presets(self, request: Request) -> Response:
        created = self._ms(self._clock0)

        def as_json(voice: Any, base_url: str) -> dict[str, Any]:
            return preset_json(voice, base_url, created)

        return await self._page(request, ("audio",), list(PRESETS), as_json, page_max=1000)

    async def _voice_create(self, request: Request) -> Response:
        ops: tuple[Op, ...] = ("audio",)
        admitted = await self._admit(request, ops, voice_subjects, check_voice_body)
        if isinstance(admitted, Response):
            return admitted
        body, subjects, fault = admitted
        now = self.clock()
        ext = body.external_task_id
        with self._lock:
            if ext is not None and ext in self._voices.by_external:
                return _error(400, 1201, f"external_task_id must be unique: {ext!r} exists")
            if (problem := self._sample_problem(body, request, now)) is not None:
                return _error(400, 1201, problem)
            # No concurrency check: a voice task holds no video slot.
            failing = self.faults.take(ops, subjects, {"fail_task"})
            task = VoiceTask(
                task_id=self._new_task_id(),
                external_task_id=ext,
                body=body,
                voice_id=self._new_task_id(),
                created=now,
                finishes=now + self.voice_latency,
                fail_message=(failing.message or "voice customization failed (emulated)")
                if failing
                else None,
            )
            self._voices.add(task)
        return await self._answer_created(request, fault, task.task_id, ext, task.created)

    def _sample_problem(self, body: VoiceBody, request: Request, now: float) -> str | None:
        """Why a custom voice's sample is refused, as far as the emulator can tell (locked).

        A video_id must name a finished video of this account made with sound on. A
        voice_url elsewhere cannot be fetched and is taken as it is; one of the emulator's
        own audio URLs must answer, and its audio last 5-30 s.
        """
        if body.video_id is not None:
            video = self._tasks.get(body.video_id)
            if video is None or self._status(video, now) != "succeed":
                return f"video_id names no finished video of this account: {body.video_id!r}"
            if video.body.sound != "on":
                return f"video_id {body.video_id!r} names a video made without sound"
            return None
        url = body.voice_url or ""
        parts = urlsplit(url)
        own = OWN_AUDIO.fullmatch(parts.path)
        if own is None or parts.netloc != request.url.netloc:
            return None
        audio = self._audio.get(own.group(1))
        if self._expired or audio is None or now < audio.ready_at:
            return f"voice_url cannot be fetched: {url}"
        low, high = VOICE_SAMPLE_SECONDS
        if not low * RATE <= audio.samples <= high * RATE:
            return f"voice_url: the sample lasts {audio.duration} s; a voice takes {low}-{high} s"
        return None

    async def _voice_query(self, request: Request) -> Response:
        by_id, by_external = self._voices.tasks, self._voices.by_external
        return await self._lookup(request, ("audio",), by_id, by_external, self._voice_json)

    async def _voice_list(self, request: Request) -> Response:
        tasks = self._voices.tasks
        return await self._listing(request, ("audio",), tasks, self._voice_json, page_max=1000)

    def _voice_json(self, task: VoiceTask, base_url: str) -> dict[str, Any]:
        deleted = task.voice_id in self._voices.deleted
        return voice_task_json(task, self.clock(), base_url, self._ms, deleted)

    async def _voice_delete(self, request: Request) -> Response:
        admitted = await self._admit(request, ("audio",), delete_subjects, check_delete_voice_body)
        if isinstance(admitted, Response):
            return admitted
        voice_id, _, fault = admitted
        with self._lock:
            if voice_id in PRESETS_BY_ID:
                return _error(
                    400, 1201, f"voice_id {voice_id!r} is a preset: only custom voices can go"
                )
            task = self._voices.made(voice_id, self.clock())
            if task is None:
                return _error(
                    400, 1201, f"voice_id names no custom voice of this account: {voice_id!r}"
                )
            self._voices.deleted.add(voice_id)
        await self._late_or_lost(request, fault)
        return JSONResponse(_envelope({"task_id": task.task_id, "task_status": "succeed"}))

    async def _tts(self, request: Request) -> Response:
        """TTS answers with the finished task: no external_task_id, nothing to look up."""
        ops: tuple[Op, ...] = ("create", "audio")
        admitted = await self._admit(request, ops, speech_subjects, check_speech_body)
        if isinstance(admitted, Response):
            return admitted
        body, subjects, fault = admitted
        now = self.clock()
        with self._lock:
            voice = self._voices.find(body.voice_id, now)
            if voice is None:
                return _error(400, 1201, no_voice("voice_id", body.voice_id))
            if voice.language is not None and voice.language != body.language:
                return _error(
                    400,
                    1201,
                    f"voice_language must be {voice.language}: voice {voice.voice_id!r} "
                    f"speaks {voice.language} only",
                )
            failing = self.faults.take(ops, subjects, {"fail_task"})
            audio = None
            if failing is None:
                audio = Audio(
                    audio_id=self._new_task_id(),
                    kind="tone",
                    samples=sample_count(speech_seconds(body.text, body.speed)),
                    period=voice_period(voice.voice_id),
                    ready_at=now,
                )
                self._audio[audio.audio_id] = audio
            call = SpeechCall(
                task_id=self._new_task_id(),
                body=body,
                created=now,
                audio=audio,
                fail_message=(failing.message or "speech synthesis failed (emulated)")
                if failing
                else None,
            )
            self._speech[call.task_id] = call
        await self._late_or_lost(request, fault)
        return JSONResponse(_envelope(speech_json(call, str(request.base_url), self._ms)))

    async def _effect_create(self, request: Request) -> Response:
        ops: tuple[Op, ...] = ("create", "audio")
        admitted = await self._admit(request, ops, effect_subjects, check_effect_body)
        if isinstance(admitted, Response):
            return admitted
        body, subjects, fault = admitted
        now = self.clock()
        ext = body.external_task_id
        with self._lock:
            if ext is not None and ext in self._effects_by_external:
                return _error(400, 1201, f"external_task_id must be unique: {ext!r} exists")
            # No concurrency check: a sound effect holds no video slot.
            failing = self.faults.take(ops, subjects, {"fail_task"})
            audio = Audio(
                audio_id=self._new_task_id(),
                kind="noise",
                samples=sample_count(body.seconds),
                seed=zlib.crc32(body.prompt.encode()),
                ready_at=now + self.sfx_latency,
            )
            task = EffectTask(
                task_id=self._new_task_id(),
                external_task_id=ext,
                body=body,
                audio=audio,
                created=now,
                finishes=audio.ready_at,
                fail_message=(failing.message or "sound effect failed (emulated)")
                if failing
                else None,
            )
            self._effects[task.task_id] = task
            if ext is not None:
                self._effects_by_external[ext] = task
            if failing is None:
                self._audio[audio.audio_id] = audio
        return await self._answer_created(request, fault, task.task_id, ext, task.created)

    async def _effect_query(self, request: Request) -> Response:
        ops: tuple[Op, ...] = ("query", "audio")
        return await self._lookup(
            request, ops, self._effects, self._effects_by_external, self._effect_json
        )

    async def _effect_list(self, request: Request) -> Response:
        ops: tuple[Op, ...] = ("query", "audio")
        return await self._listing(request, ops, self._effects, self._effect_json)

    def _effect_json(self, task: EffectTask, base_url: str) -> dict[str, Any]:
        return effect_json(task, self.clock(), base_url, self._ms)

    async def _audio_mp3(self, request: Request) -> Response:
        return await self._audio_download(request, "mp3")

    async def _audio_wav(self, request: Request) -> Response:
        return await self._audio_download(request, "wav")

    async def _audio_download(self, request: Request, fmt: Format) -> Response:
        """A TTS or sound-effect result, encoded on first download: by URL, without auth."""
        audio_id = request.path_params["audio_id"]
        fault = await self._request_fault(request, ("download", "audio"), audio_id)
        if fault is not None and fault.kind not in ("drop_after", "truncate"):
            return _fault_response(fault)
        with self._lock:
            audio = self._audio.get(audio_id)
            expired = self._expired
        if expired:
            return _error(404, 1203, f"the audio {audio_id} has expired")
        if audio is None or self.clock() < audio.ready_at:
            return _error(404, 1203, f"no audio {audio_id}")
        with self._lock:
            self._downloads += 1
        data = await _encoded(audio, fmt)
        return _stream(request, data, len(data), fault, MEDIA_TYPES[fmt])

    async def _voice_trial(self, request: Request) -> Response:
        """A voice's trial_url: 3 s of its tone. It belongs to the voice: it never expires."""
        voice_id = request.path_params["voice_id"]
        fault = await self._request_fault(request, ("download", "audio"), voice_id)
        if fault is not None and fault.kind not in ("drop_after", "truncate"):
            return _fault_response(fault)
        with self._lock:
            if self._voices.find(voice_id, self.clock()) is None:
                return _error(404, 1203, f"no voice {voice_id}")
            trial = self._trials.get(voice_id)
            if trial is None:
                period = voice_period(voice_id)
                trial = Audio(voice_id, "tone", TRIAL_SECONDS * RATE, period=period)
                self._trials[voice_id] = trial
            self._downloads += 1
        data = await _encoded(trial, "mp3")
        return _stream(request, data, len(data), fault, MEDIA_TYPES["mp3"])

    async def _download(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        fault = await self._request_fault(request, ("download",), task_id)
        if fault is not None and fault.kind not in ("drop_after", "truncate"):
            return _fault_response(fault)
        with self._lock:
            task = self._tasks.get(task_id)
            expired = self._expired
        if expired:
            return _error(404, 1203, f"the result of task {task_id} has expired")
        if task is None or self._status(task, self.clock()) != "succeed":
            return _error(404, 1203, f"no clip for task {task_id}")
        with self._lock:
            self._downloads += 1
        clip = task.clip
        if clip is None:
            clip = await anyio.to_thread.run_sync(self._encode, task)
        return _stream(request, clip, len(clip), fault, "video/mp4")

    async def _blob(self, request: Request) -> Response:
        try:
            size = _int_param(request, "bytes", 0, 0, BLOB_MAX)
            seed = _int_param(request, "seed", 0, 0, 1 << 63)
        except Invalid as exc:
            return _error(400, 1201, str(exc))
        fault = await self._request_fault(request, ("download",), "blob")
        if fault is not None and fault.kind not in ("drop_after", "truncate"):
            return _fault_response(fault)
        return _stream(request, _random_chunks(size, seed), size, fault)

    # -- control routes: the API's credentials; a body only as JSON ------------------

    def _control_error(self, request: Request) -> Response | None:
        """Why a control request is refused: no or wrong credentials (401), not JSON (415).

        A web page can send a "simple" cross-origin request (text/plain, no Authorization
        header) to a local server; requiring both keeps such a page from steering a run.
        """
        if (denied := self._auth_error(request)) is not None:
            return denied
        has_body = request.method == "POST" or _has_body(request)
        if has_body and not _is_json(request):
            return _error(415, 1200, "Content-Type must be application/json")
        return None

    async def _stats(self, request: Request) -> Response:
        if (denied := self._control_error(request)) is not None:
            return denied
        return JSONResponse(self.stats())

    async def _faults_get(self, request: Request) -> Response:
        if (denied := self._control_error(request)) is not None:
            return denied
        return JSONResponse(_envelope([f.to_json() for f in self.faults.pending()]))

    async def _faults_post(self, request: Request) -> Response:
        if (denied := self._control_error(request)) is not None:
            return denied
        raw = await _json_body(request, CONTROL_BODY_MAX)
        if isinstance(raw, Response):
            return raw
        try:
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

    async def _expire(self, request: Request) -> Response:
        if (denied := self._control_error(request)) is not None:
            return denied
        self.expire()
        return JSONResponse(_envelope(None))

    async def _faults_delete(self, request: Request) -> Response:
        if (denied := self._control_error(request)) is not None:
            return denied
        self.faults.clear()
        return JSONResponse(_envelope(None))

    # -- clips ----------------------------------------------------------------------

    def _encode(self, task: _Task) -> bytes:
        """Encode a task's placeholder clip once (runs in a worker thread)."""
        with task.encode_lock:
            if task.clip is None:
                task.clip = placeholder_clip(task.body, max_side=self.clip_max_side, fps=self.fps)
            return task.clip

    def _draw(self, task: ImageTask, index: int) -> bytes:
        """Draw one of a task's stills once (runs in a worker thread)."""
        with task.draw_lock:
            if index not in task.pngs:
                task.pngs[index] = placeholder_still(task.body, index, max_side=self.image_max_side)
            return task.pngs[index]


# -- reading requests, streaming answers ----------------------------------------------


def _kinds(ops: tuple[Op, ...], download: bool) -> frozenset[str]:
    """The fault kinds a request of `ops` answers to (the first op's; truncate: downloads)."""
    kinds = REQUEST_FAULTS[ops[0]]
    return kinds if download else kinds - {"truncate"}


def _per_external(tasks: Iterable[Any]) -> dict[str, int]:
    """Tasks per external_task_id (those sent without one are not in it)."""
    counts: dict[str, int] = {}
    for task in tasks:
        if task.external_task_id is not None:
            counts[task.external_task_id] = counts.get(task.external_task_id, 0) + 1
    return counts


async def _encoded(audio: Audio, fmt: Format) -> bytes:
    """The audio file in `fmt`: from its cache, or encoded in a worker thread."""
    cached = audio.files.get(fmt)
    return cached if cached is not None else await anyio.to_thread.run_sync(audio.encoded, fmt)


def _subjects(raw: Any) -> list[str]:
    """What a create fault's `match` is compared with: prompts and external_task_id."""
    if not isinstance(raw, dict):
        return []
    texts = [raw.get("prompt"), raw.get("external_task_id")]
    shots = raw.get("multi_prompt")
    if isinstance(shots, list):
        texts += [shot.get("prompt") for shot in shots if isinstance(shot, dict)]
    return [text for text in texts if isinstance(text, str)]


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length != "0")


def _is_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").partition(";")[0]
    return media_type.strip().lower() == "application/json"


async def _json_body(request: Request, limit: int) -> Any:
    """The request's JSON body, read chunk by chunk and never past `limit` bytes.

    Returns the decoded value, or the answer to send instead: 413 when the body is (or
    says it is) over the limit, 400 when it is not JSON.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit:
        return _too_large(limit)  # refused before a byte of it is read
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _too_large(limit)
    except ClientDisconnect:
        return _error(400, 1200, "the client went away before sending the whole body")
    try:
        return json.loads(body)
    except ValueError:
        return _error(400, 1200, "request body must be JSON")


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not value.isdecimal() or not low <= int(value) <= high:
        raise Invalid(f"{name} must be an integer from {low} to {high}")
    return int(value)


async def _random_chunks(size: int, seed: int) -> AsyncGenerator[bytes, None]:
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(BLOB_CHUNK, left)
        yield rng.randbytes(n)
        left -= n


async def _slices(data: bytes) -> AsyncGenerator[bytes, None]:
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        yield bytes(view[start : start + CHUNK])


def _stream(
    request: Request,
    body: bytes | AsyncGenerator[bytes, None],
    size: int,
    fault: Fault | None,
    media_type: str = "application/octet-stream",
) -> StreamingResponse:
    """Stream `size` bytes with Content-Length; a truncate or drop_after fault cuts it at half.

    Each chunk is followed by a yield to the event loop and a look for a gone client: a
    send to a closed connection returns at once under uvicorn, so without these a big
    body would be made to its end in one busy stretch, deaf to requests and SIGTERM.
    """
    chunks = _slices(body) if isinstance(body, bytes) else body

    async def content() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(chunks):
            left = size // 2 if fault is not None else size
            async for chunk in chunks:
                if left <= 0 or await request.is_disconnected():
                    break
                yield chunk[:left]
                left -= len(chunk)
                await asyncio.sleep(0)
        # Under uvicorn a short body must end the connection; in-process it just ends.
        if fault is not None and (fault.kind == "drop_after" or request.scope.get(SERVER)):
            raise drop(request)

    headers = {"content-length": str(size)}
    return StreamingResponse(content(), headers=headers, media_type=media_type)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return _error(404, 1202, "Invalid HTTP method")
    return _error(exc.status_code, 1203 if exc.status_code == 404 else 1200, str(exc.detail))
