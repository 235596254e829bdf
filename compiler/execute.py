"""Carry out a plan: create, poll, download. Plan + client + lockfile → clips.

The executor decides nothing a user approves: `plan.py` chose each take's action, and
this module performs it and handles what comes back (a failed task, 1303, 5xx, a
dropped connection, a run killed and started again). The money rules of README
"Money and safety" live here:
- the lockfile records the intent to create *before* the request and the task id
  *before* polling, so a killed run re-attaches instead of paying twice;
- a create is resent only when Kling says none was made (1302, 1303) or when a lookup by
  `external_task_id` finds none (after a 5xx, a timeout or a dropped connection);
- polls and downloads are retried while the failure may pass (for a couple of minutes);
  a failed task is recorded and reported, never retried within the run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from .cache import Cache
from .client import (
    AudioTaskInfo,
    Download,
    ElementTaskInfo,
    ImageTaskInfo,
    KlingClient,
    TaskInfo,
    VoiceTaskInfo,
)
from .errors import (
    ApiStatusError,
    CacheError,
    ClipGone,
    DownloadError,
    GaveUp,
    ImageGone,
    MediaChanged,
    PollTimeout,
    SoundGone,
    SourceFailed,
    SpeechUnsure,
    StoryboardError,
    TaskFailed,
    TransportFailure,
)
from .frames import frame_name, save_last_frame
from .fsutil import sha256_file
from .lockfile import (
    Clip,
    ElementLock,
    ImageLock,
    Lockfile,
    SoundLock,
    TaskLock,
    attempt_after,
    external_task_id,
)
from .model import ElementRef, ImageRef, element_tag
from .plan import (
    Action,
    Plan,
    PlannedElement,
    PlannedImage,
    PlannedSound,
    PlannedTake,
    sound_task_id,
)
from .request import (
    EffectRequest,
    ElementId,
    ElementToMake,
    FrameFile,
    GeneratedImage,
    ImageRequest,
    LocalFile,
    Media,
    PresetVoice,
    SpeechRequest,
    Url,
    VideoRequest,
    VoiceMedia,
    VoiceRequest,
)
from .wire import record_json, request_digest

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
_GONE = (403, 404, 410)  # a result URL that expired or was never there
_KLING_CODE_EXISTS = 1201  # what a duplicate external_task_id most likely answers (R16)


class _Polled(Protocol):
    """What polling reads of any task's answer (client.py's *TaskInfo)."""

    @property
    def task_id(self) -> str: ...

    @property
    def status(self) -> str: ...


P = TypeVar("P", bound=_Polled)


class Progress(Protocol):
    """Where the executor reports each scene's state (a rich display or plain lines)."""

    def update(self, scene: str, state: str, detail: str = "") -> None: ...


class SilentProgress:
    def update(self, scene: str, state: str, detail: str = "") -> None:
        pass


@dataclass(slots=True)
class Backoff:
    """Exponential delays for one retried request: 1 s, 2 s, 4 s ... capped at 30 s.

    `retry` gives up after `tries` (about two minutes by default): a dead network or a
    wrong KLING_BASE_URL fails the scene loudly instead of hanging, and the next run
    picks up where this one stopped.
    """

    start: float = 1.0
    cap: float = 30.0
    tries: int = 8
    attempts: int = 0

    def next(self) -> float:
        delay = min(self.cap, self.start * 2.0**self.attempts)
        self.attempts += 1
        return delay

    async def retry(self, sleep: Sleep, error: Exception) -> None:
        if self.attempts + 1 >= self.tries:
            raise GaveUp(
                f"{error} (tried {self.tries} times; run `storyboard render` again later: "
                "nothing is paid twice)"
            ) from error
        await sleep(self.next())


class AccountSlots:
    """The account's task slots, as far as this run can tell.

    Starts at `--concurrency`; a 1303 shows the account is full with what is already
    running, so the limit drops to the tasks this run has in flight and the refused create
    waits for one of them to finish (no blind sleeping while slots could be used). Only
    when none of ours runs (another client fills the account) does it back off on the clock.
    """

    def __init__(self, limit: int, sleep: Sleep) -> None:
        self.limit = max(1, limit)
        self.busy = 0
        self._sleep = sleep
        self._changed = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.busy < self.limit)
            self.busy += 1

    def adopt(self) -> None:
        """Count a task already running on the account (re-attached after a crash)."""
        self.busy += 1

    async def release(self) -> None:
        async with self._changed:
            self.busy -= 1
            self._changed.notify_all()

    async def refused(self, backoff: Backoff) -> None:
        """The account answered 1303 to a create holding one of our slots: wait for room."""
        async with self._changed:
            self.busy -= 1
            if self.busy > 0:
                self.limit = min(self.limit, self.busy)
                await self._changed.wait_for(lambda: self.busy < self.limit)
                self.busy += 1
                return
        await self._sleep(backoff.next())
        await self.acquire()


@dataclass(slots=True)
class ImageResult:
    """What became of one still (or generated image) of a run."""

    key: str
    outcome: str  # the action carried out, or "failed"
    path: Path | None = None
    error: StoryboardError | None = None


@dataclass(slots=True)
class SoundResult(ImageResult):
    """What became of one sound call of a run: a voice, a narration or an effect."""


@dataclass(slots=True)
class SceneResult:
    scene: str
    outcome: str  # reused | fetched | rendered | downloaded | failed | pending
    clip: Path | None = None
    error: StoryboardError | None = None
    take: int = 1


@dataclass(slots=True)
class Executor:
    """Carries out one storyboard's plan into `renders/<board>/<scene>.mp4`, keeping `lock`
    up to date. `lock` is the lockfile the plan was made from."""

    client: KlingClient
    lock: Lockfile
    base_dir: Path  # the storyboard's folder: local image paths are relative to it
    clips_dir: Path  # renders/<board>
    backend: str = "kling"
    concurrency: int = 4
    poll_interval: float = 5.0
    poll_timeout: float = 3600.0
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic
    progress: Progress = field(default_factory=SilentProgress)
    probe: Callable[[Path], float] | None = None
    slots: AccountSlots | None = None  # shared by the storyboards rendering at once
    cache: Cache | None = None  # the team's render cache, when one is set
    notes: list[str] = field(default_factory=list)  # what went wrong beside the clips
    _sources: dict[str, asyncio.Future[Path]] = field(init=False, default_factory=dict)
    _elements: dict[str, asyncio.Future[int]] = field(init=False, default_factory=dict)
    _element_plan: dict[str, PlannedElement] = field(init=False, default_factory=dict)
    _kept: dict[str, Path] = field(init=False, default_factory=dict)
    image_slots: AccountSlots | None = None  # Omni-Image counts apart from video (§11.1)
    _image_plan: dict[str, PlannedImage] = field(init=False, default_factory=dict)
    _images: dict[str, asyncio.Future[Path]] = field(init=False, default_factory=dict)
    _voice_plan: dict[str, PlannedSound] = field(init=False, default_factory=dict)
    _voices: dict[str, asyncio.Future[str]] = field(init=False, default_factory=dict)
    _sound_slots: asyncio.Semaphore | None = field(init=False, default=None)
    sounds: list[SoundResult] = field(default_factory=list)  # what `run` did for sound

    def __post_init__(self) -> None:
        if self.slots is None:
            self.slots = AccountSlots(self.concurrency, self.sleep)

    @property
    def account(self) -> AccountSlots:
        assert self.slots is not None
        return self.slots

    async def run(self, plan: Plan) -> list[SceneResult]:
        """Carry out every take of `plan` concurrently; one failure does not stop the others."""
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_parts()
        loop = asyncio.get_running_loop()
        self._sources = {t.job.scene: loop.create_future() for t in plan.takes if t.job.selected}
        self._element_plan = {e.element.name: e for e in plan.elements}
        self._image_plan = {i.job.key: i for i in plan.images}
        self._kept = dict(plan.sources)
        if self.image_slots is None:
            self.image_slots = AccountSlots(self.concurrency, self.sleep)
        self._voice_plan = {s.job.key: s for s in plan.sounds if s.job.kind == "voice"}
        self._sound_slots = asyncio.Semaphore(self.concurrency)
        if any(s.job.kind != "voice" for s in plan.sounds):
            (self.clips_dir / "audio").mkdir(exist_ok=True)
        takes = asyncio.gather(*(self._take(take) for take in plan.takes))
        sounds = asyncio.gather(*(self._sound(sound) for sound in plan.sounds))
        results = list(await takes)
        self.sounds = list(await sounds)
        futures: list[asyncio.Future[Any]] = [
            *self._sources.values(),
            *self._elements.values(),
            *self._images.values(),
            *self._voices.values(),
        ]
        for future in futures:
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a failure is reported by its own take
        return results

    async def run_stills(self, plan: Plan) -> list[ImageResult]:
        """Carry out the stills of a `--stills` plan (and the generated images they show)."""
        (self.clips_dir / "stills").mkdir(parents=True, exist_ok=True)
        self._remove_stale_parts()
        self._element_plan = {e.element.name: e for e in plan.elements}
        self._image_plan = {i.job.key: i for i in plan.images}
        if self.image_slots is None:
            self.image_slots = AccountSlots(self.concurrency, self.sleep)

        async def one(planned: PlannedImage) -> ImageResult:
            try:
                path = await self._make_image(planned)
            except StoryboardError as exc:
                self.progress.update(planned.job.label, "failed", str(exc))
                return ImageResult(planned.job.key, "failed", error=exc)
            return ImageResult(planned.job.key, str(planned.action), path)

        results = list(await asyncio.gather(*(one(still) for still in plan.stills)))
        futures: list[asyncio.Future[Any]] = [*self._elements.values(), *self._images.values()]
        for future in futures:
            if future.done() and not future.cancelled():
                future.exception()
        return results

    def _remove_stale_parts(self) -> None:
        """Remove the downloads a killed run cut short (`.NAME.*.part`): of clips, and of
        images, stills and audio in their folders."""
        for folder in (
            self.clips_dir,
            *(self.clips_dir / f for f in ("images", "stills", "audio")),
        ):
            for stale in folder.glob(".*.part"):
                stale.unlink(missing_ok=True)

    # -- one take -------------------------------------------------------------------------

    async def _take(self, planned: PlannedTake) -> SceneResult:
        job = planned.job
        source = self._sources.get(job.scene) if job.selected else None
        try:
            result = await self._carry_out(planned)
        except PollTimeout as exc:
            self.progress.update(job.label, "pending", "still running on Kling; run again")
            result = SceneResult(job.scene, "pending", error=exc, take=job.take)
        except StoryboardError as exc:  # a failed task, the API, the network, media
            self.progress.update(job.label, "failed", str(exc))
            result = SceneResult(job.scene, "failed", error=exc, take=job.take)
        if source is not None and not source.done():
            if result.clip is not None:
                source.set_result(result.clip)
            else:
                source.set_exception(SourceFailed(f"scene '{job.scene}' has no clip"))
        return result

    async def _carry_out(self, planned: PlannedTake) -> SceneResult:
        job = planned.job
        if planned.action in (Action.REUSE, Action.FETCH, Action.DOWNLOAD, Action.REATTACH):
            task, request, digest = planned.task, planned.request, planned.digest
            assert task is not None and request is not None and digest is not None
            self.lock.install(job.scene, job.take, digest, record_json(request), task)
            if planned.action is Action.REUSE:
                self.lock.save()
                self.progress.update(job.label, "done", "unchanged")
                assert task.clip is not None
                clip = task.clip.path(self.clips_dir.parent)
                assert clip is not None  # the plan reuses only a clip it found intact
                return SceneResult(job.scene, "reused", clip, take=job.take)
            if planned.action is Action.FETCH:
                self.lock.save()
                fetched = await self._fetch(planned, task)
                if fetched is not None:
                    return SceneResult(job.scene, "fetched", fetched, take=job.take)
                # Gone from the cache since planning: Kling's copy is as good, and free.
                clip = await self._download(planned, task)
                return SceneResult(job.scene, "downloaded", clip, take=job.take)
            if planned.action is Action.DOWNLOAD:
                self.lock.save()
                clip = await self._download(planned, task)
                return SceneResult(job.scene, "downloaded", clip, take=job.take)
            self.account.adopt()  # it is already running on the account
            self.progress.update(job.label, task.status, f"re-attached to task {task.task_id}")
            try:
                info = await self._poll(planned, task, None)
            finally:
                await self.account.release()
            return await self._finish(planned, task, info)
        return await self._create_take(planned)

    async def _create_take(self, planned: PlannedTake) -> SceneResult:
        """Submit (or remake) the take's task once, then poll and download it."""
        job = planned.job
        request, digest = await self._resolved(planned)
        task = planned.task
        if task is None:
            attempt, ext = planned.attempt, planned.external_task_id
            if ext is None:  # its first frame was made in this run: id from its digest now
                attempt = self.lock.next_attempt(job.scene, digest, job.take)
                ext = external_task_id(job.scene, digest, job.take, attempt)
            task = TaskLock(
                ext, "creating", attempt=attempt, backend=self.backend, digest=digest, take=job.take
            )
        unsure = task.status == "creating" and planned.task is not None
        # The intent is on disk before the request: a run killed mid-create finds the
        # task again by its external id instead of creating a second one.
        self.lock.install(job.scene, job.take, digest, record_json(request), task)
        self.lock.save()
        await self.account.acquire()
        try:
            info = await self._create(planned, request, task, unsure=unsure)
        except BaseException:
            await self.account.release()
            raise
        try:
            info = await self._poll(planned, task, info)
        finally:
            await self.account.release()
        return await self._finish(planned, task, info)

    async def _finish(self, planned: PlannedTake, task: TaskLock, info: TaskInfo) -> SceneResult:
        if info.status == "failed":
            assert task.task_id is not None
            raise TaskFailed(planned.job.label, task.task_id, info.status_msg)
        clip = await self._download(planned, task)
        return SceneResult(planned.job.scene, "rendered", clip, take=planned.job.take)

    async def _resolved(self, planned: PlannedTake) -> tuple[VideoRequest, str]:
        """The request with its first frame on disk, and its digest."""
        job = planned.job
        if planned.request is not None and planned.digest is not None:
            for item in planned.request.images:
                if isinstance(item.media, FrameFile):
                    await self._write_frame(job.label, item.media)
            return planned.request, planned.digest
        source = job.request.waits_for
        assert source is not None
        self.progress.update(job.label, "queued", f"waits for the last frame of '{source}'")
        clip = await self._source_clip(job.label, source)
        png = self.clips_dir / frame_name(source)
        sha = await self._save_frame(clip, png)
        request = job.request.with_frame(FrameFile(source, png.name, sha))
        return request, request_digest(request)

    async def _save_frame(self, clip: Path, png: Path) -> str:
        """Save the last frame of `clip` and remember it by the clip's content."""
        sha = await asyncio.to_thread(save_last_frame, clip, png)
        self.lock.last_frames[await asyncio.to_thread(sha256_file, clip)] = sha
        return sha

    async def _write_frame(self, label: str, frame: FrameFile) -> None:
        """Save the frame the plan read from a kept clip, and check it is that frame."""
        png = self.clips_dir / frame.file
        clip = await self._source_clip(label, frame.scene)
        if png.is_file() and sha256_file(png) == frame.sha256:
            self.lock.last_frames[await asyncio.to_thread(sha256_file, clip)] = frame.sha256
            return
        sha = await self._save_frame(clip, png)
        if sha != frame.sha256:
            raise MediaChanged(f"the clip of '{frame.scene}' changed after planning; run again")

    async def _source_clip(self, label: str, scene: str) -> Path:
        """The selected clip of `scene`, once it exists."""
        future = self._sources.get(scene)
        if future is not None:
            try:
                return await asyncio.shield(future)
            except SourceFailed:
                raise SourceFailed(
                    f"scene '{label}' starts from the last frame of scene '{scene}', "
                    "which has no clip"
                ) from None
        if scene in self._kept:
            return self._kept[scene]
        raise SourceFailed(
            f"scene '{label}' starts from the last frame of scene '{scene}', which is not "
            f"in this render; render '{scene}' first"
        )

    # -- create ---------------------------------------------------------------------------

    async def _create(
        self, planned: PlannedTake, request: VideoRequest, task: TaskLock, *, unsure: bool
    ) -> TaskInfo:
        """Create the video task once. `unsure`: a create may already have reached Kling."""
        job = planned.job
        values = await self._media_values(request)

        async def create() -> TaskInfo:
            self.progress.update(job.label, "creating")
            return await self.client.create_video(
                request, task.external_task_id, values.__getitem__
            )

        async def busy() -> None:
            self.progress.update(job.label, "queued", "account busy (1303)")

        info = await self._create_once(
            create, lambda: self.client.find_task(task.external_task_id), unsure, busy
        )
        self._record(planned, task, info, f"task {info.task_id}")
        return info

    async def _media_values(self, request: VideoRequest | ImageRequest) -> dict[Media, Any]:
        """Each medium as Kling takes it: a URL, bare Base64 content, an element id."""
        values: dict[Media, Any] = {}
        for media in request.image_media:
            if isinstance(media, GeneratedImage):
                png = await self._generated(media)
                with_sha = await asyncio.to_thread(sha256_file, png)
                values[media] = self._base64(png, png.name, with_sha)
            elif isinstance(media, Url):
                values[media] = media.url
            elif isinstance(media, LocalFile):
                values[media] = self._base64(self.base_dir / media.file, media.file, media.sha256)
            elif isinstance(media, FrameFile):
                values[media] = self._base64(self.clips_dir / media.file, media.file, media.sha256)
            else:  # pragma: no cover - _resolved replaced every LastFrame
                raise AssertionError(f"unresolved first frame: {media}")
        for element in request.elements:
            if isinstance(element, ElementId):
                values[element] = element.id
            else:
                values[element] = await self._element_id(element)
        return values

    @staticmethod
    def _base64(path: Path, shown: str, sha256: str) -> str:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise MediaChanged(f"{shown} changed after it was compiled; run render again")
        return base64.b64encode(data).decode("ascii")

    async def _create_once(
        self,
        create: Callable[[], Awaitable[T]],
        find: Callable[[], Awaitable[T | None]],
        unsure: bool,
        busy: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """Send a paid create so that it takes effect once (design.md §5).

        It is resent only when Kling says nothing was made (1302, 1303) or when a lookup by
        its external id finds nothing (after a 5xx, a timeout or a dropped connection).
        `busy` is told of a 1303 and waits for an account slot; without it, 1303 backs off.
        """
        backoff = Backoff()
        while True:
            if unsure:
                found = await self._retried(find)
                if found is not None:
                    return found
            try:
                return await create()
            except ApiStatusError as exc:
                if exc.code == 1303 and busy is not None:
                    await busy()
                    await self.account.refused(backoff)
                    unsure = False
                    continue
                if exc.create_not_made:  # 1302 (or 1303 without slots): nothing was made
                    await backoff.retry(self.sleep, exc)
                    unsure = False
                    continue
                if exc.code == _KLING_CODE_EXISTS:
                    # Possibly refused as a duplicate id: this very work was created before
                    # (its id comes from its digest), so take that, if there is one.
                    found = await self._retried(find)
                    if found is None:
                        raise
                    return found
                if exc.transient:
                    # A 5xx says nothing of whether it was made: look before resending.
                    await backoff.retry(self.sleep, exc)
                    unsure = True
                    continue
                raise
            except TransportFailure as exc:
                await backoff.retry(self.sleep, exc)
                unsure = True

    async def _retried(self, call: Callable[[], Awaitable[T]]) -> T:
        """A read-only request, retried while the failure may pass (network, 5xx, 1302)."""
        backoff = Backoff()
        while True:
            try:
                return await call()
            except TransportFailure as exc:
                await backoff.retry(self.sleep, exc)
            except ApiStatusError as exc:
                if not (exc.transient or exc.create_not_made):
                    raise
                await backoff.retry(self.sleep, exc)

    # -- images: generated refs and stills (Omni-Image) ------------------------------------

    async def _generated(self, media: GeneratedImage) -> Path:
        """The PNG of a generated image ref, made (once) as its planned action says."""
        planned = self._image_plan[media.name]
        return await _once(self._images, media.name, partial(self._make_image, planned))

    def _image_path(self, planned: PlannedImage) -> Path:
        folder = "images" if planned.job.kind == "image" else "stills"
        return self.clips_dir / folder / f"{planned.job.key}.png"

    async def _make_image(self, planned: PlannedImage) -> Path:
        job, entry = planned.job, planned.entry
        if entry is not None and planned.action is not Action.SUBMIT:
            self.lock.keep_image(job.kind, job.key, entry)  # maybe an undone edit's, taken back
            kept = await self._kept_file(
                job.label,
                planned.action,
                entry,
                self._image_path(planned),
                partial(self._download_image, planned, entry),
            )
            if kept is not None:
                return kept
        slots = self.image_slots
        assert slots is not None
        if planned.action is Action.REATTACH:
            assert entry is not None and entry.task_id is not None
            slots.adopt()
            try:
                info = await self._retried(partial(self.client.get_image_task, entry.task_id))
                info = await self._poll_image(planned, entry, info)
            finally:
                await slots.release()
            return await self._image_done(planned, entry, info)
        resumed = entry is not None  # an interrupted create: look it up first
        if entry is None:
            entry = ImageLock(
                planned.digest,
                planned.external_task_id,
                "creating",
                attempt=planned.attempt,
                backend=self.backend,
            )
        # The intent is on disk before the request, as for a clip.
        self.lock.keep_image(job.kind, job.key, entry)
        self.lock.save()
        values = await self._media_values(job.request)
        ext = entry.external_task_id

        async def create() -> ImageTaskInfo:
            self.progress.update(job.label, "creating")
            return await self.client.create_image(job.request, ext, values.__getitem__)

        await slots.acquire()
        try:
            info = await self._create_once(
                create, lambda: self.client.find_image_task(ext), unsure=resumed
            )
            info = await self._poll_image(planned, entry, info)
        finally:
            await slots.release()
        return await self._image_done(planned, entry, info)

    async def _poll_image(
        self, planned: PlannedImage, entry: ImageLock, info: ImageTaskInfo
    ) -> ImageTaskInfo:
        return await self._follow(
            planned.job.label, info, entry.observe, self.client.get_image_task
        )

    async def _kept_file(
        self,
        label: str,
        action: Action,
        entry: ImageLock | SoundLock,
        dest: Path,
        download: Callable[[], Awaitable[Path]],
    ) -> Path | None:
        """A finished task's file as the plan said: kept on disk, fetched from the cache,
        or downloaded again (free). None for an action that has to make it."""
        if action is Action.REUSE:
            path = entry.path(self.clips_dir)
            assert path is not None  # the plan reuses only a file it found intact
            self.progress.update(label, "done", "unchanged")
            return path
        if action is Action.FETCH:
            assert entry.sha256 is not None and self.cache is not None
            if await asyncio.to_thread(self.cache.get, entry.sha256, dest) is not None:
                entry.file = f"{dest.parent.name}/{dest.name}"
                self.lock.save()
                self.progress.update(label, "done", "from the cache")
                return dest
            return await download()  # gone from the cache since planning
        if action is Action.DOWNLOAD:
            return await download()
        return None

    async def _follow(
        self,
        label: str,
        info: P,
        observe: Callable[[P], None],
        get: Callable[[str], Awaitable[P]],
    ) -> P:
        """Poll an asynchronous task (an element, an image, a voice, an effect) until it
        ends, each answer recorded in the lockfile before anything else is done with it."""
        deadline = self.clock() + self.poll_timeout
        while True:
            observe(info)
            self.lock.save()
            if info.status in ("succeed", "failed"):
                return info
            self.progress.update(label, info.status)
            if self.clock() >= deadline:
                raise PollTimeout(label, info.task_id)
            await self.sleep(self.poll_interval)
            info = await self._retried(partial(get, info.task_id))

    async def _image_done(
        self, planned: PlannedImage, entry: ImageLock, info: ImageTaskInfo
    ) -> Path:
        if info.status == "failed":
            raise TaskFailed(planned.job.label, info.task_id, info.status_msg)
        return await self._download_image(planned, entry)

    async def _download_image(self, planned: PlannedImage, entry: ImageLock) -> Path:
        label = planned.job.label
        dest = self._image_path(planned)
        got = await self._fetch_result(
            label, entry.image_url, dest, lambda why: ImageGone(planned.job.kind, label, why)
        )
        entry.file = f"{dest.parent.name}/{dest.name}"
        entry.sha256, entry.bytes = got.sha256, got.bytes
        self.lock.save()
        self.progress.update(label, "done", f"{dest.name}, {got.bytes:,} bytes")
        await self._upload(got.sha256, dest)
        return dest

    # -- elements -------------------------------------------------------------------------

    async def _element_id(self, element: ElementToMake) -> int:
        """The Kling id of an element the storyboard makes, as its planned action gives it."""
        planned = self._element_plan[element.name]
        return await _once(self._elements, element.name, partial(self._make_element, planned))

    async def _make_element(self, planned: PlannedElement) -> int:
        element = planned.element
        label = f"element {element.name}"
        entry = planned.entry
        if planned.action is Action.REUSE:
            assert entry is not None and entry.element_id is not None
            return entry.element_id
        if planned.action is Action.REATTACH:
            assert entry is not None and entry.task_id is not None
            info = await self._retried(partial(self.client.get_element_task, entry.task_id))
        else:
            resumed = entry is not None  # an interrupted create: look it up first
            if entry is None:
                entry = ElementLock(
                    element.digest,
                    planned.external_task_id,
                    "creating",
                    attempt=planned.attempt,
                    backend=self.backend,
                )
            self.lock.elements[element.name] = entry
            self.lock.save()
            ext = entry.external_task_id
            body = await self._element_body(element, ext)

            async def create() -> ElementTaskInfo:
                self.progress.update(label, "creating")
                return await self.client.create_element(body)

            info = await self._create_once(
                create, lambda: self.client.find_element_task(ext), unsure=resumed
            )
        self.lock.elements[element.name] = entry
        info = await self._follow(label, info, entry.observe, self.client.get_element_task)
        self.progress.update(label, info.status)
        if info.status == "failed" or info.element_id is None:
            raise StoryboardError(
                f"element '{element.name}' could not be created: "
                f"{info.status_msg or 'Kling gave no reason'}"
            )
        return info.element_id

    async def _element_body(self, element: ElementRef, external_id: str) -> dict[str, Any]:
        def image(ref: ImageRef) -> str:
            return self._base64(self.base_dir / (ref.file or ""), ref.file or "", ref.sha256 or "")

        frontal, *others = element.images
        body: dict[str, Any] = {
            "element_name": element.name[:20],
            "element_description": element.description or element.name,
            "reference_type": "image_refer",
            "element_image_list": {
                "frontal_image": image(frontal),
                "refer_images": [{"image_url": image(ref)} for ref in others],
            },
            "external_task_id": external_id,
        }
        if element.kind is not None:
            body["tag_list"] = [{"tag_id": element_tag(element.kind)}]
        if element.voice is not None:
            body["element_voice_id"] = await self._voice_id(element.voice)  # kling-api.md §11.2
        return body

    # -- sound: custom voices, narration (TTS), effects (kling-api.md §11.2) ---------------

    async def _sound(self, planned: PlannedSound) -> SoundResult:
        job = planned.job
        try:
            if job.kind == "voice":
                await self._voice(job.key)
                return SoundResult(job.label, str(planned.action))
            path = await self._make_audio(planned)
        except StoryboardError as exc:
            self.progress.update(job.label, "failed", str(exc))
            return SoundResult(job.label, "failed", error=exc)
        return SoundResult(job.label, str(planned.action), path)

    async def _voice_id(self, voice: VoiceMedia) -> str:
        """The Kling id of a voice: a preset's own, or a custom voice's once it is made."""
        if isinstance(voice, PresetVoice):
            return voice.id
        return await self._voice(voice.name)

    async def _voice(self, name: str) -> str:
        """The id of a custom voice the storyboard makes, as its planned action gives it."""
        if name not in self._voice_plan:  # pragma: no cover - the plan names every one needed
            raise StoryboardError(f"voice '{name}' is needed but was not planned")
        return await _once(self._voices, name, partial(self._make_voice, self._voice_plan[name]))

    async def _make_voice(self, planned: PlannedSound) -> str:
        job, entry = planned.job, planned.entry
        request = job.request
        assert isinstance(request, VoiceRequest)
        attempt, ext = planned.attempt, planned.external_task_id
        if planned.action is Action.REUSE:
            assert entry is not None and entry.voice_id is not None
            self.lock.keep_sound("voice", job.key, entry)  # maybe an undone edit's, taken back
            if self.backend != "emulator" or await self._voice_kept(entry):
                self.lock.save()
                self.progress.update(job.label, "done", "unchanged")
                return entry.voice_id
            # An emulator's voices die with it: made again, as the plan said, free.
            attempt = attempt_after(entry.attempt, job.label, self.lock.path)
            ext, entry = sound_task_id(job, planned.digest, attempt), None
        if planned.action is Action.REATTACH:
            assert entry is not None and entry.task_id is not None
            info = await self._retried(partial(self.client.get_voice_task, entry.task_id))
            return await self._voice_done(planned, entry, info)
        resumed = entry is not None  # an interrupted create: look it up first
        if entry is None:
            assert ext is not None
            entry = SoundLock(planned.digest, "creating", ext, attempt, backend=self.backend)
        self.lock.keep_sound("voice", job.key, entry)
        self.lock.save()  # the intent is on disk before the request
        sample = await self._sample_url(job.label, request)
        known = entry.external_task_id
        assert known is not None

        async def create() -> VoiceTaskInfo:
            self.progress.update(job.label, "creating")
            return await self.client.create_voice(request, known, sample)

        assert self._sound_slots is not None
        async with self._sound_slots:
            info = await self._create_once(
                create, lambda: self.client.find_voice_task(known), unsure=resumed
            )
        return await self._voice_done(planned, entry, info)

    async def _voice_kept(self, entry: SoundLock) -> bool:
        """Whether the emulator still has a voice it made (a new emulator has none)."""
        if entry.task_id is None:
            return False
        try:
            info = await self._retried(partial(self.client.get_voice_task, entry.task_id))
        except ApiStatusError:
            return False
        return info.status == "succeed" and info.voice_id == entry.voice_id

    async def _voice_done(
        self, planned: PlannedSound, entry: SoundLock, info: VoiceTaskInfo
    ) -> str:
        label = planned.job.label
        info = await self._follow(label, info, entry.observe_voice, self.client.get_voice_task)
        if info.status == "failed" or info.voice_id is None:
            raise TaskFailed(label, info.task_id, info.status_msg)
        self.progress.update(label, "done", f"voice {info.voice_id}")
        return info.voice_id

    async def _sample_url(self, label: str, request: VoiceRequest) -> str:
        """Where Kling fetches the voice's sample: the user's URL, or a presigned link to
        the sample uploaded to the team's s3:// cache (Kling takes no Base64 here)."""
        if request.sample_url is not None:
            return request.sample_url
        sample = request.sample
        assert sample is not None
        if self.cache is None:
            raise CacheError(
                f"{label}: its sample {sample.file} is a local file, and Kling fetches samples "
                "only by URL; set STORYBOARD_CACHE (or --cache) to an s3:// cache, or give "
                "`sample: {url: https://...}`"
            )
        path = self.base_dir / sample.file
        self.progress.update(label, "uploading", f"{sample.file} to {self.cache.shown}")
        return await asyncio.to_thread(self.cache.share, sample.sha256, path, path.suffix.lower())

    def _audio_path(self, planned: PlannedSound, url: str | None) -> Path:
        """renders/NAME/audio/SCENE.narration.mp3 (or .sfx.wav): the suffix Kling's URL has."""
        suffix = Path(urlsplit(url).path).suffix.lower() if url else ""
        suffix = suffix if suffix in (".mp3", ".wav") else ".mp3"
        what = "narration" if planned.job.kind == "speech" else "sfx"
        return self.clips_dir / "audio" / f"{planned.job.key}.{what}{suffix}"

    async def _make_audio(self, planned: PlannedSound) -> Path:
        job, entry = planned.job, planned.entry
        if entry is not None and planned.action is not Action.SUBMIT:
            self.lock.keep_sound(job.kind, job.key, entry)  # maybe an undone edit's, taken back
            kept = await self._kept_file(
                job.label,
                planned.action,
                entry,
                self._audio_path(planned, entry.audio_url or entry.file),
                partial(self._download_audio, planned, entry),
            )
            if kept is not None:
                return kept
        if planned.action is Action.REATTACH:
            assert entry is not None and entry.task_id is not None
            info = await self._retried(partial(self.client.get_effect_task, entry.task_id))
            return await self._audio_done(planned, entry, info)
        if job.kind == "speech":
            return await self._speak(planned)
        request = job.request
        assert isinstance(request, EffectRequest)
        resumed = entry is not None  # an interrupted create: look it up first
        if entry is None:
            assert planned.external_task_id is not None
            entry = SoundLock(
                planned.digest,
                "creating",
                planned.external_task_id,
                planned.attempt,
                backend=self.backend,
            )
        self.lock.keep_sound(job.kind, job.key, entry)
        self.lock.save()  # the intent is on disk before the request
        ext = entry.external_task_id
        assert ext is not None

        async def create() -> AudioTaskInfo:
            self.progress.update(job.label, "creating")
            return await self.client.create_effect(request, ext)

        assert self._sound_slots is not None
        async with self._sound_slots:
            info = await self._create_once(
                create, lambda: self.client.find_effect_task(ext), unsure=resumed
            )
        return await self._audio_done(planned, entry, info)

    async def _speak(self, planned: PlannedSound) -> Path:
        """One TTS call. It has no external id, so it cannot be looked up: it is resent only
        when Kling says nothing was made (1302, 1303), never after a cut-off call."""
        job = planned.job
        request = job.request
        assert isinstance(request, SpeechRequest)
        voice_id = await self._voice_id(request.voice)
        entry = SoundLock(planned.digest, "creating", None, planned.attempt, backend=self.backend)
        self.lock.keep_sound("speech", job.key, entry)
        self.lock.save()  # the intent: a killed run leaves "creating", shown as maybe paid
        backoff = Backoff()
        assert self._sound_slots is not None
        info: AudioTaskInfo | None = None
        while info is None:
            self.progress.update(job.label, "creating")
            try:
                async with self._sound_slots:
                    info = await self.client.speak(request, voice_id)
            except ApiStatusError as exc:
                if exc.create_not_made:
                    await backoff.retry(self.sleep, exc)
                    continue
                if not exc.transient:
                    entry.status, entry.status_msg = "failed", str(exc)
                    self.lock.save()
                    raise
                entry.status_msg = f"cut off: {exc}"
                self.lock.save()
                raise SpeechUnsure(job.label, exc) from exc
            except TransportFailure as exc:
                entry.status_msg = f"cut off: {exc}"
                self.lock.save()
                raise SpeechUnsure(job.label, exc) from exc
        if info.status not in ("succeed", "failed"):  # TTS answers finished, or not at all
            info = AudioTaskInfo(
                info.task_id,
                "failed",
                f"answered {info.status} without audio",
                None,
                None,
                None,
                info.units_charged,
            )
        return await self._audio_done(planned, entry, info)

    async def _audio_done(
        self, planned: PlannedSound, entry: SoundLock, info: AudioTaskInfo
    ) -> Path:
        label = planned.job.label
        info = await self._follow(label, info, entry.observe, self.client.get_effect_task)
        if info.status == "failed":
            raise TaskFailed(label, info.task_id, info.status_msg)
        return await self._download_audio(planned, entry)

    async def _download_audio(self, planned: PlannedSound, entry: SoundLock) -> Path:
        job = planned.job
        dest = self._audio_path(planned, entry.audio_url)
        got = await self._fetch_result(
            job.label, entry.audio_url, dest, lambda why: SoundGone(job.key, job.label, why)
        )
        entry.file = f"audio/{dest.name}"
        entry.sha256, entry.bytes = got.sha256, got.bytes
        self.lock.save()
        self.progress.update(job.label, "done", f"{dest.name}, {got.bytes:,} bytes")
        await self._upload(got.sha256, dest)
        return dest

    # -- poll -----------------------------------------------------------------------------

    async def _poll(self, planned: PlannedTake, task: TaskLock, first: TaskInfo | None) -> TaskInfo:
        assert task.task_id is not None
        deadline = self.clock() + self.poll_timeout
        info = first if first is not None else await self._status(task.task_id)
        while True:
            if info.status != task.status:
                self._record(planned, task, info)
            if info.status in ("succeed", "failed"):
                return info
            if self.clock() >= deadline:
                raise PollTimeout(planned.job.label, task.task_id)
            await self.sleep(self.poll_interval)
            info = await self._status(task.task_id)

    async def _status(self, task_id: str) -> TaskInfo:
        info: TaskInfo = await self._retried(partial(self.client.get_task, task_id))
        return info

    def _record(
        self, planned: PlannedTake, task: TaskLock, info: TaskInfo, detail: str = ""
    ) -> None:
        task.observe(info)
        self.lock.save()
        if info.status != "failed":  # a failure is reported once, with its reason
            self.progress.update(planned.job.label, info.status, detail)

    # -- download -------------------------------------------------------------------------

    def _clip_path(self, planned: PlannedTake) -> Path:
        job = planned.job
        suffix = "" if job.take == 1 else f".take{job.take}"
        return self.clips_dir / f"{job.scene}{suffix}.mp4"

    async def _download(self, planned: PlannedTake, task: TaskLock) -> Path:
        job = planned.job
        dest = self._clip_path(planned)
        got = await self._fetch_result(
            job.label, task.video_url, dest, lambda why: ClipGone(job.scene, job.label, why)
        )
        duration = await asyncio.to_thread(self.probe, dest) if self.probe else 0.0
        task.clip = Clip(
            file=f"{self.clips_dir.name}/{dest.name}",
            sha256=got.sha256,
            bytes=got.bytes,
            duration=round(duration, 3),
        )
        self.lock.save()
        self.progress.update(job.label, "done", f"{dest.name}, {got.bytes:,} bytes")
        await self._upload(got.sha256, dest)
        return dest

    async def _fetch_result(
        self,
        label: str,
        url: str | None,
        dest: Path,
        gone: Callable[[Exception], StoryboardError],
    ) -> Download:
        """Download a finished result (clip or image) to `dest`, retrying what may pass.

        A URL that is missing, expired or never there (403/404/410) raises `gone(why)`.
        """
        if not url:
            raise gone(StoryboardError("the lockfile has no URL"))
        backoff = Backoff(tries=5)
        while True:
            self.progress.update(label, "downloading")
            try:
                return await self.client.download(url, dest)
            except (DownloadError, TransportFailure) as exc:
                if isinstance(exc, DownloadError) and exc.http_status in _GONE:
                    raise gone(exc) from exc
                await backoff.retry(self.sleep, exc)
            except ApiStatusError as exc:
                if not exc.transient:
                    raise
                await backoff.retry(self.sleep, exc)

    # -- the shared cache -----------------------------------------------------------------

    async def _fetch(self, planned: PlannedTake, task: TaskLock) -> Path | None:
        """The recorded clip from the cache, checked against its sha256; None if absent."""
        assert self.cache is not None and task.clip is not None
        dest = self._clip_path(planned)
        self.progress.update(planned.job.label, "fetching", f"from {self.cache.shown}")
        fetched = await asyncio.to_thread(self.cache.get, task.clip.sha256, dest)
        if fetched is None:
            return None
        task.clip.file = f"{self.clips_dir.name}/{dest.name}"
        self.lock.save()
        self.progress.update(planned.job.label, "done", f"{dest.name}, from the cache")
        return dest

    async def _upload(self, sha256: str, path: Path) -> None:
        """Give the cache what it lacks; a failed upload costs nothing and is reported."""
        if self.cache is None:
            return
        try:
            await asyncio.to_thread(self.cache.put, sha256, path)
        except CacheError as exc:
            self.notes.append(f"not uploaded to the cache: {exc}")


async def _once(
    made: dict[str, asyncio.Future[T]], key: str, make: Callable[[], Awaitable[T]]
) -> T:
    """What `make` gives for `key`, made once however many wait for it; a waiter's
    cancellation does not cancel the making (others may still wait)."""
    future = made.get(key)
    if future is None:
        future = made[key] = asyncio.ensure_future(make())
    return await asyncio.shield(future)
