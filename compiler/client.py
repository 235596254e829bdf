"""Talk to the Kling Omni-Video API: create and query tasks, download clips. Async.

Knows HTTP and JSON, nothing about storyboards. Every answer is read by its body `code`
(kling-api.md §4-§5), never by HTTP status alone: HTTP 429 carries five different codes.
No retries here: the executor decides what is safe to send again.

    async with KlingClient(base_url, credentials_from_env(os.environ)) as kling:
        task = await kling.create_task(payload)
        task = await kling.get_task(task.task_id)
        clip = await kling.download(task.video_url, Path("renders/opening.mp4"))

and the element registry (kling-api.md §7.1): `create_element`, `get_element_task`,
`find_element_task`; Omni-Image (§11.1): `create_image`, `get_image_task`,
`find_image_task`; sound (§11.2): custom voices (`create_voice`, `get_voice_task`,
`find_voice_task`), TTS (`speak`: one call answered with its result, never to be found
again) and sound effects (`create_effect`, `get_effect_task`, `find_effect_task`), all
with the same errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from . import __version__
from .auth import redact
from .errors import ApiStatusError, DownloadError, TransportFailure, UnsafeUrl
from .hosts import fetchable
from .redaction import redact_secrets
from .request import EffectRequest, ImageRequest, SpeechRequest, VideoRequest, VoiceRequest
from .soundwire import effect_body, speech_body, voice_body
from .wire import MediaValue, omni_image_json, omni_video_json

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
TASKS_PATH = "/v1/videos/omni-video"
ELEMENTS_PATH = "/v1/general/advanced-custom-elements"
IMAGES_PATH = "/v1/images/omni-image"  # kling-api.md §11.1
VOICES_PATH = "/v1/general/custom-voices"  # kling-api.md §11.2, and the three below
TTS_PATH = "/v1/audio/tts"
PRESETS_PATH = "/v1/general/presets-voices"
EFFECTS_PATH = "/v1/audio/text-to-audio"
CHUNK_SIZE = 1 << 20  # download in 1 MiB pieces: memory stays flat whatever the clip size
NOT_FOUND_CODE = 1203
_REASON_CHARS = 2000  # a task's reason as kept in the lockfile
_STATUSES = frozenset({"submitted", "processing", "succeed", "failed"})  # §4.4
_USER_AGENT = f"storyboard/{__version__} httpx/{httpx.__version__}"

log = logging.getLogger(__name__)

_Info = TypeVar("_Info")


class _Identified(Protocol):
    @property
    def task_id(self) -> str: ...

    @property
    def external_task_id(self) -> str | None: ...


_Found = TypeVar("_Found", bound=_Identified)


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """One task as Kling reports it (kling-api.md §4.1-§4.2)."""

    task_id: str
    status: str  # submitted | processing | succeed | failed
    status_msg: str | None
    external_task_id: str | None
    video_url: str | None  # task_result.videos[0].url
    video_duration: float | None
    units_charged: str | None  # final_unit_deduction, as Kling sends it (a string)


@dataclass(frozen=True, slots=True)
class ElementTaskInfo:
    """One element-creation task as Kling reports it (kling-api.md §7.1)."""

    task_id: str
    status: str  # submitted | processing | succeed | failed
    status_msg: str | None
    external_task_id: str | None
    element_id: int | None  # task_result.elements[0].element_id once succeeded


@dataclass(frozen=True, slots=True)
class ImageTaskInfo:
    """One Omni-Image task as Kling reports it (kling-api.md §11.1)."""

    task_id: str
    status: str  # submitted | processing | succeed | failed
    status_msg: str | None
    external_task_id: str | None
    image_url: str | None  # task_result.images[0].url (storyboard asks for one image)
    units_charged: str | None


@dataclass(frozen=True, slots=True)
class VoiceTaskInfo:
    """One custom-voice task as Kling reports it (kling-api.md §11.2)."""

    task_id: str
    status: str  # submitted | processing | succeed | failed
    status_msg: str | None
    external_task_id: str | None
    voice_id: str | None  # task_result.voices[0].voice_id once succeeded
    units_charged: str | None


@dataclass(frozen=True, slots=True)
class AudioTaskInfo:
    """A TTS call or a sound-effect task as Kling reports it (kling-api.md §11.2).

    `audio_url` is a TTS call's `audios[0].url` (MP3), a sound effect's
    `audios[0].url_wav` (lossless, for the mix) or else its `url_mp3`; `duration` is the
    one of that file, in seconds.
    """

    task_id: str
    status: str  # submitted | processing | succeed | failed
    status_msg: str | None
    external_task_id: str | None  # always None for TTS, which takes none
    audio_url: str | None
    duration: float | None
    units_charged: str | None


@dataclass(frozen=True, slots=True)
class PresetInfo:
    """One of Kling's preset voices, as its list shows it."""

    voice_id: str
    name: str
    trial_url: str | None  # a few seconds of the voice


@dataclass(frozen=True, slots=True)
class Download:
    """A clip written whole to `path`."""

    path: Path
    sha256: str
    bytes: int


class KlingClient:
    """The Kling Omni-Video endpoints over one pooled `httpx.AsyncClient`.

    `transport` replaces the network (httpx.MockTransport, or the emulator's ASGI
    transport) for the API and the clip downloads alike.
    """

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._auth = auth
        self._api = httpx.AsyncClient(
            base_url=base_url,
            auth=auth,
            transport=transport,
            timeout=timeout,
            headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
        )
        # Result URLs are CDN URLs, maybe on another host: they get no credentials at all.
        self._cdn = httpx.AsyncClient(
            transport=transport,
            timeout=timeout,
            follow_redirects=True,
            event_hooks={"request": [self._check_fetchable]},
            headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
        )

    def __repr__(self) -> str:
        return f"KlingClient(base_url={str(self._api.base_url)!r}, auth={self._auth!r})"

    async def __aenter__(self) -> KlingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._cdn.aclose()

    async def create_task(self, payload: dict[str, Any]) -> TaskInfo:
        """POST the payload; the new task (status `submitted`)."""
        return await self._task("POST", TASKS_PATH, payload)

    async def create_video(
        self, request: VideoRequest, external_task_id: str, media: MediaValue
    ) -> TaskInfo:
        """Create the Omni-Video task of `request`, each medium spelled by `media`.

        The one place a typed request becomes Kling's JSON (wire.py).
        """
        body = {**omni_video_json(request, media), "external_task_id": external_task_id}
        return await self.create_task(body)

    async def get_task(self, task_id: str) -> TaskInfo:
        """The task with this id, as it stands now."""
        return await self._task("GET", _task_path(task_id))

    async def find_task(self, external_task_id: str) -> TaskInfo | None:
        """The task created with this `external_task_id`, or None when Kling has none.

        Only a clear "not found" (code 1203, or HTTP 404 without a Kling body) gives None:
        the executor reads None as "safe to create", so anything else raises.
        """
        return await self._find(_task_path(external_task_id), external_task_id, _task_info)

    async def create_element(self, body: dict[str, Any]) -> ElementTaskInfo:
        """POST an element-creation body (kling-api.md §7.1); the new task (`submitted`).

        Creation is asynchronous: poll `get_element_task` until `succeed` gives the id.
        """
        return await self._call("POST", ELEMENTS_PATH, body, _element_task_info)

    async def get_element_task(self, task_id: str) -> ElementTaskInfo:
        """The element-creation task with this id, as it stands now."""
        return await self._call("GET", _path(ELEMENTS_PATH, task_id), None, _element_task_info)

    async def find_element_task(self, external_task_id: str) -> ElementTaskInfo | None:
        """The element task created with this `external_task_id`, or None when Kling has
        none; the same contract as `find_task`."""
        path = _path(ELEMENTS_PATH, external_task_id)
        return await self._find(path, external_task_id, _element_task_info)

    async def create_image(
        self, request: ImageRequest, external_task_id: str, media: MediaValue
    ) -> ImageTaskInfo:
        """Create the Omni-Image task of `request`, each medium spelled by `media`."""
        body = {**omni_image_json(request, media), "external_task_id": external_task_id}
        return await self._call("POST", IMAGES_PATH, body, _image_task_info)

    async def get_image_task(self, task_id: str) -> ImageTaskInfo:
        return await self._call("GET", _path(IMAGES_PATH, task_id), None, _image_task_info)

    async def find_image_task(self, external_task_id: str) -> ImageTaskInfo | None:
        """The image task created with this `external_task_id`, or None: as `find_task`."""
        path = _path(IMAGES_PATH, external_task_id)
        return await self._find(path, external_task_id, _image_task_info)

    async def create_voice(
        self, request: VoiceRequest, external_task_id: str, sample_url: str
    ) -> VoiceTaskInfo:
        """Create the custom voice of `request` from the sample at `sample_url` (Kling
        fetches it: a public URL, or a local sample's presigned upload); the new task.

        Asynchronous: poll `get_voice_task` until `succeed` gives the voice id.
        """
        body = voice_body(request, external_task_id, sample_url)
        return await self._call("POST", VOICES_PATH, body, _voice_task_info)

    async def get_voice_task(self, task_id: str) -> VoiceTaskInfo:
        """The custom-voice task with this id, as it stands now."""
        return await self._call("GET", _path(VOICES_PATH, task_id), None, _voice_task_info)

    async def find_voice_task(self, external_task_id: str) -> VoiceTaskInfo | None:
        """The voice task created with this `external_task_id`, or None: as `find_task`."""
        path = _path(VOICES_PATH, external_task_id)
        return await self._find(path, external_task_id, _voice_task_info)

    async def list_presets(self, page_size: int = 100) -> list[PresetInfo]:
        """Kling's preset voices (`GET /v1/general/presets-voices`), every page of them."""
        voices: list[PresetInfo] = []
        for page in range(1, 1001):  # the API's page numbers stop at 1,000
            path = f"{PRESETS_PATH}?pageNum={page}&pageSize={page_size}"
            found = await self._call("GET", path, None, _presets)
            voices += found
            if len(found) < page_size:
                break
        return voices

    async def speak(self, request: SpeechRequest, voice_id: str) -> AudioTaskInfo:
        """One TTS call (`POST /v1/audio/tts`) speaking `request` in voice `voice_id`.

        Kling answers with the finished task (`succeed` with the MP3's URL, or `failed`
        with its reason), charged at once. TTS takes no external_task_id and has no
        query: after a timeout, a dropped connection or an HTTP 5xx (TransportFailure, or
        ApiStatusError with `.transient`) the call may have been made and paid, and
        nothing can look it up, so sending it again may pay twice. This method sends
        exactly one POST; the caller must not resend blindly (only `create_not_made`
        answers, 1302/1303, say for sure that nothing was made).
        """
        return await self._call("POST", TTS_PATH, speech_body(request, voice_id), _speech_info)

    async def create_effect(self, request: EffectRequest, external_task_id: str) -> AudioTaskInfo:
        """Create the sound-effect task of `request`; the new task (`submitted`).

        Asynchronous: poll `get_effect_task` until `succeed` gives the audio.
        """
        body = effect_body(request, external_task_id)
        return await self._call("POST", EFFECTS_PATH, body, _effect_info)

    async def get_effect_task(self, task_id: str) -> AudioTaskInfo:
        """The sound-effect task with this id, as it stands now."""
        return await self._call("GET", _path(EFFECTS_PATH, task_id), None, _effect_info)

    async def find_effect_task(self, external_task_id: str) -> AudioTaskInfo | None:
        """The sound-effect task created with this `external_task_id`, or None: as
        `find_task`."""
        path = _path(EFFECTS_PATH, external_task_id)
        return await self._find(path, external_task_id, _effect_info)

    async def _find(
        self, path: str, external_task_id: str, parse: Callable[[object], _Found]
    ) -> _Found | None:
        try:
            info = await self._call("GET", path, None, parse)
        except ApiStatusError as exc:
            if exc.code == NOT_FOUND_CODE or (exc.code is None and exc.http_status == 404):
                return None
            raise
        if info.external_task_id not in (None, external_task_id):
            # The id was read as a task id (kling-api.md §4.2: the lookup form is unsure).
            raise ApiStatusError(
                redact(
                    self._auth,
                    f"GET {path}: asked for external_task_id {external_task_id!r}, "
                    f"got task {info.task_id} with external_task_id {info.external_task_id!r}",
                ),
                http_status=200,
            )
        return info

    async def download(self, url: str, dest: Path) -> Download:
        """Stream `url` into `dest` atomically, hashing as it goes; no Authorization header.

        The body goes to `.<name>.<random>.part` beside `dest`, is checked against the
        Content-Length, fsynced and renamed over `dest`. On any failure the temp file is
        removed, `dest` is untouched, and DownloadError or TransportFailure is raised.
        """
        self._refuse_unsafe(url)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
        try:
            digest, size = await self._fetch(url, part)
            os.replace(part, dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return Download(dest, digest, size)

    def _refuse_unsafe(self, url: str) -> None:
        if not fetchable(url, str(self._api.base_url)):
            raise UnsafeUrl(
                f"refused to download {_without_query(url)}: a result is fetched only over "
                "public https or from the API's own host (a lockfile or an answer named it)"
            )

    async def _check_fetchable(self, request: httpx.Request) -> None:
        """Every request of a download, redirects included, goes to a fetchable URL."""
        self._refuse_unsafe(str(request.url))

    async def _fetch(self, url: str, part: Path) -> tuple[str, int]:
        shown = _without_query(url)  # CDN query strings carry signatures: keep them out
        digest = hashlib.sha256()
        size = 0
        try:
            async with self._cdn.stream("GET", url) as response:
                if not response.is_success:
                    raise DownloadError(
                        f"download of {shown} answered HTTP {response.status_code}",
                        http_status=response.status_code,
                    )
                expected = _content_length(response)
                with part.open("xb") as out:
                    async for chunk in response.aiter_bytes(CHUNK_SIZE):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                    # Content-Length counts the bytes on the wire, before any decoding.
                    got = response.num_bytes_downloaded if _encoded(response) else size
                    if expected is not None and got != expected:
                        raise DownloadError(
                            f"download of {shown} was cut short: "
                            f"{got} of {expected} bytes (Content-Length)",
                            http_status=response.status_code,
                        )
                    out.flush()
                    await asyncio.to_thread(os.fsync, out.fileno())
        except (httpx.TooManyRedirects, httpx.InvalidURL) as exc:
            raise DownloadError(f"download of {shown} failed: {exc}") from exc
        except httpx.RequestError as exc:
            raise TransportFailure(f"download of {shown}: {_describe(exc)}") from exc
        log.debug("downloaded %s: %d bytes, sha256 %s", shown, size, digest.hexdigest())
        return digest.hexdigest(), size

    async def _task(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> TaskInfo:
        return await self._call(method, path, payload, _task_info)

    async def _call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        parse: Callable[[object], _Info],
    ) -> _Info:
        response = await self._send(method, path, payload)
        data, request_id = self._unwrap(method, path, response)
        try:
            return parse(data)
        except _Malformed as exc:
            raise ApiStatusError(
                self._scrub(f"{method} {path}: unexpected answer: {exc}", _request_of(response)),
                http_status=response.status_code,
                request_id=request_id,
            ) from None

    async def _send(self, method: str, path: str, payload: dict[str, Any] | None) -> httpx.Response:
        try:
            return await self._api.request(method, path, json=payload)
        except httpx.RequestError as exc:
            # Timeouts, refused or dropped connections, corrupt bodies: no answer to read.
            raise TransportFailure(
                self._scrub(f"{method} {path}: {_describe(exc)}", _request_of(exc))
            ) from exc

    def _unwrap(
        self, method: str, path: str, response: httpx.Response
    ) -> tuple[object, str | None]:
        """The envelope's `data` and request id when `code` is 0; else ApiStatusError."""
        body = _json_or_none(response)
        code = body.get("code") if isinstance(body, dict) else None
        status = response.status_code
        if not isinstance(body, dict) or not isinstance(code, int) or isinstance(code, bool):
            kind = response.headers.get("Content-Type", "no Content-Type")
            log.debug("%s %s -> HTTP %d, not a Kling envelope (%s)", method, path, status, kind)
            raise ApiStatusError(
                self._scrub(
                    f"{method} {path}: HTTP {status} {response.reason_phrase} "
                    f"without a Kling JSON body ({kind})",
                    _request_of(response),
                ),
                http_status=status,
            )
        request_id = body.get("request_id")
        request_id = request_id if isinstance(request_id, str) and request_id else None
        log.debug("%s %s -> HTTP %d code %d request_id %s", method, path, status, code, request_id)
        if code != 0:
            message = body.get("message")
            reason = message if isinstance(message, str) and message else "no message"
            raise ApiStatusError(
                self._scrub(f"{method} {path}: Kling refused: {reason}", _request_of(response)),
                code=code,
                http_status=status,
                request_id=request_id,
            )
        return body.get("data"), request_id

    def _scrub(self, text: str, request: httpx.Request | None) -> str:
        """`text` with the credentials that went out with `request` masked."""
        text = redact(self._auth, text)
        sent = request.headers.get("Authorization", "") if request is not None else ""
        credential = sent.partition(" ")[2] or sent
        return text.replace(credential, "***") if credential else text


def _request_of(source: httpx.Response | httpx.RequestError) -> httpx.Request | None:
    try:
        return source.request
    except RuntimeError:  # built by hand, never sent
        return None


class _Malformed(Exception):
    """A success envelope whose `data` is not a task."""


def _task_info(data: object) -> TaskInfo:
    data, task_id, status = _task_head(data)
    task_info = _obj(data.get("task_info"))
    videos = _obj(data.get("task_result")).get("videos")
    video = _obj(videos[0]) if isinstance(videos, list) and videos else {}
    return TaskInfo(
        task_id=str(task_id),
        status=status,
        status_msg=_outside_text(data.get("task_status_msg")),
        external_task_id=_text(task_info.get("external_task_id")),
        video_url=_url(video.get("url")),
        video_duration=_seconds(video.get("duration")),
        units_charged=_units(data.get("final_unit_deduction")),
    )


def _task_head(data: object) -> tuple[dict[str, Any], str, str]:
    """`data` as an object with its task id and status; _Malformed when either is missing."""
    if not isinstance(data, dict):
        raise _Malformed("`data` is not an object")
    task_id = data.get("task_id")
    status = data.get("task_status")
    if not isinstance(task_id, str | int) or isinstance(task_id, bool) or task_id == "":
        raise _Malformed("no `data.task_id`")
    if not str(task_id).isprintable() or len(str(task_id)) > 256:
        raise _Malformed("`data.task_id` is not an id")
    if not isinstance(status, str) or not status:
        raise _Malformed("no `data.task_status`")
    if status not in _STATUSES:
        raise _Malformed(f"unknown `data.task_status` {status[:40]!r}")
    return data, str(task_id), status


def _image_task_info(data: object) -> ImageTaskInfo:
    data, task_id, status = _task_head(data)
    result = _obj(data.get("task_result"))
    images = result.get("images") or result.get("series_images")
    first = _obj(images[0]) if isinstance(images, list) and images else {}
    url = _url(first.get("url"))
    if status == "succeed" and url is None:
        raise _Malformed("succeeded without `data.task_result.images[0].url`")
    return ImageTaskInfo(
        task_id=task_id,
        status=status,
        status_msg=_outside_text(data.get("task_status_msg")),
        external_task_id=_text(_obj(data.get("task_info")).get("external_task_id")),
        image_url=url,
        units_charged=_units(data.get("final_unit_deduction")),
    )


def _element_task_info(data: object) -> ElementTaskInfo:
    data, task_id, status = _task_head(data)
    elements = _obj(data.get("task_result")).get("elements")
    element = _obj(elements[0]) if isinstance(elements, list) and elements else {}
    element_id = _element_id(element.get("element_id"))
    if status == "succeed" and element_id is None:
        # A poller would wait for an id forever: say what is missing instead.
        raise _Malformed("succeeded without `data.task_result.elements[0].element_id`")
    return ElementTaskInfo(
        task_id=task_id,
        status=status,
        status_msg=_outside_text(data.get("task_status_msg")),
        external_task_id=_text(_obj(data.get("task_info")).get("external_task_id")),
        element_id=element_id,
    )


def _voice_task_info(data: object) -> VoiceTaskInfo:
    data, task_id, status = _task_head(data)
    voices = _obj(data.get("task_result")).get("voices")
    voice = _obj(voices[0]) if isinstance(voices, list) and voices else {}
    voice_id = _voice_id(voice.get("voice_id"))
    if status == "succeed" and voice_id is None:
        # A deleted voice's task shows no voice any more (kling-api.md §11.2).
        raise _Malformed("succeeded without `data.task_result.voices[0].voice_id` (deleted since?)")
    return VoiceTaskInfo(
        task_id=task_id,
        status=status,
        status_msg=_outside_text(data.get("task_status_msg")),
        external_task_id=_text(_obj(data.get("task_info")).get("external_task_id")),
        voice_id=voice_id,
        units_charged=_units(data.get("final_unit_deduction")),
    )


def _voice_id(value: object) -> str | None:
    """A voice id: a preset's name-like id or a custom voice's number, sent as text."""
    text = _text(value)
    if text is None or not text.isprintable() or len(text) > 256:
        return None
    return text


def _presets(data: object) -> list[PresetInfo]:
    """A page of the presets list: finished tasks, each holding voices."""
    if not isinstance(data, list):
        raise _Malformed("`data` is not a list")
    voices = []
    for task in data:
        listed = _obj(_obj(task).get("task_result")).get("voices")
        for voice in listed if isinstance(listed, list) else []:
            view = _obj(voice)
            voice_id = _voice_id(view.get("voice_id"))
            if voice_id is not None:
                name = _outside_text(view.get("voice_name")) or voice_id
                voices.append(PresetInfo(voice_id, name, _url(view.get("trial_url"))))
    return voices


# Where an audio task's file is, best first: (URL field, its duration field).
_SPEECH_AUDIO = (("url", "duration"),)
_EFFECT_AUDIO = (("url_wav", "duration_wav"), ("url_mp3", "duration_mp3"))


def _speech_info(data: object) -> AudioTaskInfo:
    return _audio_task_info(data, _SPEECH_AUDIO)


def _effect_info(data: object) -> AudioTaskInfo:
    return _audio_task_info(data, _EFFECT_AUDIO)


def _audio_task_info(data: object, fields: tuple[tuple[str, str], ...]) -> AudioTaskInfo:
    data, task_id, status = _task_head(data)
    audios = _obj(data.get("task_result")).get("audios")
    audio = _obj(audios[0]) if isinstance(audios, list) and audios else {}
    url, duration = None, None
    for url_field, duration_field in fields:
        url = _url(audio.get(url_field))
        if url is not None:
            duration = _seconds(audio.get(duration_field))
            break
    if status == "succeed" and url is None:
        named = " or ".join(f"`data.task_result.audios[0].{name}`" for name, _ in fields)
        raise _Malformed(f"succeeded without {named}")
    return AudioTaskInfo(
        task_id=task_id,
        status=status,
        status_msg=_outside_text(data.get("task_status_msg")),
        external_task_id=_text(_obj(data.get("task_info")).get("external_task_id")),
        audio_url=url,
        duration=duration,
        units_charged=_units(data.get("final_unit_deduction")),
    )


def _element_id(value: object) -> int | None:
    """An element id: a long on /v1, but the newer API sends it as a decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value > 0 else None
    if isinstance(value, str) and value.isascii() and value.isdecimal() and int(value) > 0:
        return int(value)
    return None


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    """A string field; empty means absent (kling-api.md §9.13). Numbers become strings."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) and value else None


def _outside_text(value: object) -> str | None:
    """A server's words (a task's reason): never with a credential of ours in them, and
    short enough, and plain enough, for the lockfile to keep (lockfile.schema.json)."""
    text = _text(value)
    if text is None:
        return None
    text = text.encode("utf-8", "replace").decode("utf-8")[:_REASON_CHARS]
    return redact_secrets(text)


def _units(value: object) -> str | None:
    """Units charged as Kling reports them, in the lockfile's plain decimal form."""
    text = _text(value)
    if text is None:
        return None
    try:
        units = Decimal(text)
    except InvalidOperation:
        return None
    if not units.is_finite() or units < 0 or units >= 10**9:
        return None
    shown = format(units.quantize(Decimal("0.000000001")).normalize(), "f")
    return shown


def _url(value: object) -> str | None:
    """A result URL the lockfile can record: http(s), of a sane length; else none."""
    text = _text(value)
    if text is None or len(text) > 8192 or not text.startswith(("https://", "http://")):
        return None
    return text


def _seconds(value: object) -> float | None:
    """Kling sends durations as strings of seconds, e.g. "5.04"."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _task_path(task_id: str) -> str:
    return _path(TASKS_PATH, task_id)


def _path(collection: str, task_id: str) -> str:
    if not task_id:
        raise ValueError("a task id must not be empty")
    return f"{collection}/{quote(task_id, safe='')}"


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return None


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _encoded(response: httpx.Response) -> bool:
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    return encoding not in ("", "identity")


def _describe(exc: Exception) -> str:
    detail = str(exc)
    name = type(exc).__name__
    return f"no answer ({name}: {detail})" if detail else f"no answer ({name})"


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # never show user:password@
    return f"{parts.scheme}://{host}{parts.path}" if host else parts.path
