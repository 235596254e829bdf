"""Run compiled tasks on Kling: create, poll, download. Jobs + client + lockfile → clips.

The money rules of design.md §5 live here:
- a task's `external_task_id` comes from its payload digest, and the lockfile records the
  intent to create *before* the request and the task id *before* polling, so a killed run
  re-attaches instead of paying twice;
- a create is resent only when Kling says none was made (1302, 1303) or when a lookup by
  `external_task_id` finds none (after a 5xx, a timeout or a dropped connection);
- polls and downloads are retried while the failure may pass (for a couple of minutes);
  a failed task is recorded and reported, never retried within the run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .client import ElementTaskInfo, KlingClient, TaskInfo
from .errors import (
    ApiStatusError,
    ClipGone,
    DownloadError,
    GaveUp,
    MediaChanged,
    PollTimeout,
    SourceFailed,
    StoryboardError,
    TaskFailed,
    TransportFailure,
)
from .fsutil import atomic_write_bytes, sha256_file
from .lockfile import (
    Clip,
    ElementLock,
    Lockfile,
    SceneLock,
    TaskLock,
    external_task_id,
    payload_digest,
)
from .model import ElementRef, ImageRef

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
_CONTENT = re.compile(r"^(local|frame):(.*)@sha256:([0-9a-f]{64})$")
_GONE = (403, 404, 410)  # a result URL that expired or was never there
_KLING_CODE_EXISTS = 1201  # what a duplicate external_task_id most likely answers (R16)


@dataclass(frozen=True, slots=True)
class Job:
    """One take of one scene to render: its compiled payload and what it should cost.

    `after` names the scene whose clip's last frame becomes this one's first frame: the
    payload then holds `after:SCENE` until that clip exists.
    """

    scene: str
    payload: dict[str, Any]
    units: float
    usd: float
    take: int = 1
    after: str | None = None
    force: bool = False  # pay again even for work already done

    @property
    def label(self) -> str:
        return self.scene if self.take == 1 else f"{self.scene}#{self.take}"


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
class SceneResult:
    scene: str
    outcome: str  # reused | rendered | downloaded | failed | pending
    clip: Path | None = None
    error: StoryboardError | None = None
    take: int = 1


def last_frame_png(clip: Path, dest: Path) -> str:
    """Save the last frame of `clip` as a PNG (atomically) and return its sha256."""
    import io

    from .media import extract_frame

    buffer = io.BytesIO()
    extract_frame(clip, "last").save(buffer, format="PNG")
    data = buffer.getvalue()
    atomic_write_bytes(dest, data)
    return hashlib.sha256(data).hexdigest()


def with_frame(payload: dict[str, Any], ref: str) -> dict[str, Any]:
    """The payload with its `after:SCENE` first frame replaced by `ref`."""
    images = [
        {**item, "image_url": ref} if item["image_url"].startswith("after:") else item
        for item in payload["image_list"]
    ]
    return {**payload, "image_list": images}


@dataclass(slots=True)
class Executor:
    """Renders jobs into `renders/<board>/<scene>.mp4`, keeping `lock` up to date."""

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
    selected: dict[str, int] = field(default_factory=dict)  # the take each scene shows
    elements: dict[str, ElementRef] = field(default_factory=dict)  # the board's elements
    slots: AccountSlots | None = None  # shared by the storyboards rendering at once
    _sources: dict[str, asyncio.Future[Path]] = field(init=False, default_factory=dict)
    _elements_made: dict[str, asyncio.Future[int]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.slots is None:
            self.slots = AccountSlots(self.concurrency, self.sleep)

    @property
    def account(self) -> AccountSlots:
        assert self.slots is not None
        return self.slots

    async def run(self, jobs: Sequence[Job]) -> list[SceneResult]:
        """Render every job concurrently; one scene's failure does not stop the others."""
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.clips_dir.glob(".*.part"):
            stale.unlink(missing_ok=True)  # a download cut short by a killed run
        loop = asyncio.get_running_loop()
        self._sources = {
            job.scene: loop.create_future()
            for job in jobs
            if job.take == self.selected.get(job.scene, 1)
        }
        results = list(await asyncio.gather(*(self._scene(job) for job in jobs)))
        for future in self._sources.values():
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a failed source is reported by its own job
        return results

    # -- one take -------------------------------------------------------------------------

    async def _scene(self, job: Job) -> SceneResult:
        source = (
            self._sources.get(job.scene) if job.take == self.selected.get(job.scene, 1) else None
        )
        try:
            result = await self._render(job)
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

    async def _source_clip(self, job: Job, scene: str) -> Path:
        """The clip whose last frame `job` starts from, once it exists."""
        future = self._sources.get(scene)
        if future is not None:
            try:
                return await asyncio.shield(future)
            except SourceFailed:
                raise SourceFailed(
                    f"scene '{job.label}' starts from the last frame of scene '{scene}', "
                    "which has no clip"
                ) from None
        task = self.lock.task(scene, self.selected.get(scene, 1))
        if task is None or not self._clip_intact(task):
            raise SourceFailed(
                f"scene '{job.label}' starts from the last frame of scene '{scene}', which "
                f"is not rendered; render '{scene}' first"
            )
        assert task.clip is not None
        return self.clips_dir.parent / task.clip.file

    async def _resolved_payload(self, job: Job) -> dict[str, Any]:
        if job.after is None:
            return job.payload
        self.progress.update(job.label, "queued", f"waits for the last frame of '{job.after}'")
        clip = await self._source_clip(job, job.after)
        png = self.clips_dir / f"{job.after}.last.png"
        sha = await asyncio.to_thread(last_frame_png, clip, png)
        return with_frame(job.payload, f"frame:{png.name}@sha256:{sha}")

    def _scene_lock(self, job: Job, payload: dict[str, Any]) -> SceneLock:
        """The scene's lock entry for this payload; work for an older payload is retired."""
        digest = payload_digest(payload)
        entry = self.lock.scenes.get(job.scene)
        if entry is None or entry.digest != digest or entry.backend != self.backend:
            old, entry = entry, SceneLock(digest, payload, self.backend)
            if old is not None:
                for take in list(old.takes):
                    old.retire(take)
                entry.history = old.history
            self.lock.scenes[job.scene] = entry
        return entry

    async def _render(self, job: Job) -> SceneResult:
        payload = await self._resolved_payload(job)
        entry = self._scene_lock(job, payload)
        task = entry.takes.get(job.take) or self._from_history(job, entry)
        # A task still "creating" was left by a killed run: its create may have gone out.
        resumed = task is not None and task.status == "creating"
        if task is not None and (task.status == "failed" or (job.force and not resumed)):
            entry.retire(job.take)  # a paid retry, or paid again on request
            task = self._new_task(job, entry, attempt=task.attempt + 1)
        if task is not None and task.status == "succeed":
            if self._clip_intact(task):
                self.progress.update(job.label, "done", "unchanged")
                return SceneResult(job.scene, "reused", self._clip_path(job), take=job.take)
            try:
                if not task.video_url:
                    raise ClipGone(job.label, StoryboardError("the lockfile has no URL"))
                clip = await self._download(job, task)
                return SceneResult(job.scene, "downloaded", clip, take=job.take)
            except ClipGone:
                if self.backend != "emulator":
                    raise
                # An emulator's clips die with it, and making one again is free.
                entry.retire(job.take)
                task = self._new_task(job, entry, attempt=task.attempt + 1)
        if task is None:
            task = self._new_task(job, entry, attempt=1)

        if task.status == "creating":
            await self.account.acquire()
            try:
                info = await self._create(job, payload, task, unsure=resumed)
            except BaseException:
                await self.account.release()
                raise
        else:
            self.account.adopt()  # it is already running on the account
            self.progress.update(job.label, task.status, f"re-attached to task {task.task_id}")
            info = None
        try:
            info = await self._poll(job, task, info)
        finally:
            await self.account.release()

        if info.status == "failed":
            assert task.task_id is not None
            raise TaskFailed(job.label, task.task_id, info.status_msg)
        clip = await self._download(job, task)
        return SceneResult(job.scene, "rendered", clip, take=job.take)

    def _from_history(self, job: Job, entry: SceneLock) -> TaskLock | None:
        """Bring back the task of an edit that was since undone: it is paid for already."""
        task = entry.earlier_task(job.scene, job.take)
        if task is not None:
            entry.history.remove(task)
            entry.takes[job.take] = task
        return task

    def _new_task(self, job: Job, entry: SceneLock, *, attempt: int) -> TaskLock:
        attempt = entry.next_attempt(job.scene, job.take, attempt)
        task = TaskLock(
            external_task_id(job.scene, entry.digest, job.take, attempt),
            "creating",
            attempt=attempt,
        )
        # The intent is on disk before the request: a run killed mid-create finds the
        # task again by its external id instead of creating a second one.
        entry.takes[job.take] = task
        self.lock.save()
        return task

    # -- create ---------------------------------------------------------------------------

    async def _create(
        self, job: Job, payload: dict[str, Any], task: TaskLock, *, unsure: bool
    ) -> TaskInfo:
        """Create the video task once. `unsure`: a create may already have reached Kling."""
        body = {**self._submittable(payload), "external_task_id": task.external_task_id}
        if "element_list" in body:
            body["element_list"] = [
                {"element_id": await self._element_id(item["element_id"])}
                for item in body["element_list"]
            ]

        async def create() -> TaskInfo:
            self.progress.update(job.label, "creating")
            return await self.client.create_task(body)

        async def busy() -> None:
            self.progress.update(job.label, "queued", "account busy (1303)")

        info = await self._create_once(
            create, lambda: self.client.find_task(task.external_task_id), unsure, busy
        )
        self._record(job, task, info, f"task {info.task_id}")
        return info

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

    # -- elements -------------------------------------------------------------------------

    async def _element_id(self, value: int | str) -> int:
        """The Kling id of an element: as written, or created once from its images."""
        if isinstance(value, int):
            return value
        name = value.split(":", 1)[1].split("@", 1)[0]
        future = self._elements_made.get(name)
        if future is None:
            future = asyncio.ensure_future(self._make_element(self.elements[name]))
            self._elements_made[name] = future
        return await asyncio.shield(future)

    async def _make_element(self, element: ElementRef) -> int:
        entry = self.lock.elements.get(element.name)
        if entry is not None and entry.digest == element.digest and entry.status == "succeed":
            assert entry.element_id is not None
            return entry.element_id
        label = f"element {element.name}"
        resumed = entry is not None and entry.digest == element.digest and entry.status != "failed"
        if not resumed:
            attempt = (
                entry.attempt + 1 if entry is not None and entry.digest == element.digest else 1
            )
            suffix = f"-a{attempt}" if attempt > 1 else ""
            entry = ElementLock(
                element.digest,
                f"sb-el-{element.name[:20]}-{element.digest[:32]}{suffix}",
                "creating",
                attempt=attempt,
            )
            self.lock.elements[element.name] = entry
            self.lock.save()
        assert entry is not None
        ext = entry.external_task_id
        if entry.task_id is None:
            body = self._element_body(element, ext)

            async def create() -> ElementTaskInfo:
                self.progress.update(label, "creating")
                return await self.client.create_element(body)

            info = await self._create_once(
                create, lambda: self.client.find_element_task(ext), unsure=resumed
            )
        else:
            info = await self._retried(partial(self.client.get_element_task, entry.task_id))
        while True:
            entry.task_id, entry.status, entry.status_msg = (
                info.task_id,
                info.status,
                info.status_msg,
            )
            entry.element_id = info.element_id
            self.lock.save()
            self.progress.update(label, info.status)
            if info.status == "failed":
                raise StoryboardError(
                    f"element '{element.name}' could not be created: "
                    f"{info.status_msg or 'Kling gave no reason'}"
                )
            if info.status == "succeed" and info.element_id is not None:
                return info.element_id
            await self.sleep(self.poll_interval)
            info = await self._retried(partial(self.client.get_element_task, info.task_id))

    def _element_body(self, element: ElementRef, external_id: str) -> dict[str, Any]:
        def image(ref: ImageRef) -> str:
            data = (self.base_dir / (ref.file or "")).read_bytes()
            if hashlib.sha256(data).hexdigest() != ref.sha256:
                raise MediaChanged(f"{ref.file} changed after it was compiled; run render again")
            return base64.b64encode(data).decode("ascii")

        frontal, *others = element.images
        return {
            "element_name": element.name[:20],
            "element_description": element.description or element.name,
            "reference_type": "image_refer",
            "element_image_list": {
                "frontal_image": image(frontal),
                "refer_images": [{"image_url": image(ref)} for ref in others],
            },
            "external_task_id": external_id,
        }

    def _submittable(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload with each local image or frame swapped for its bare Base64 content."""
        if "image_list" not in payload:
            return dict(payload)
        images = []
        for item in payload["image_list"]:
            match = _CONTENT.match(item["image_url"])
            if match is None:
                images.append(item)
                continue
            kind, name, sha = match.groups()
            folder = self.base_dir if kind == "local" else self.clips_dir
            data = (folder / name).read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                raise MediaChanged(f"{name} changed after it was compiled; run render again")
            images.append({**item, "image_url": base64.b64encode(data).decode("ascii")})
        return {**payload, "image_list": images}

    # -- poll -----------------------------------------------------------------------------

    async def _poll(self, job: Job, task: TaskLock, first: TaskInfo | None) -> TaskInfo:
        assert task.task_id is not None
        deadline = self.clock() + self.poll_timeout
        info = first if first is not None else await self._status(task.task_id)
        while True:
            if info.status != task.status:
                self._record(job, task, info)
            if info.status in ("succeed", "failed"):
                return info
            if self.clock() >= deadline:
                raise PollTimeout(job.label, task.task_id)
            await self.sleep(self.poll_interval)
            info = await self._status(task.task_id)

    async def _status(self, task_id: str) -> TaskInfo:
        info: TaskInfo = await self._retried(partial(self.client.get_task, task_id))
        return info

    def _record(self, job: Job, task: TaskLock, info: TaskInfo, detail: str = "") -> None:
        task.observe(info)
        self.lock.save()
        if info.status != "failed":  # a failure is reported once, with its reason
            self.progress.update(job.label, info.status, detail)

    # -- download -------------------------------------------------------------------------

    def _clip_path(self, job: Job) -> Path:
        suffix = "" if job.take == 1 else f".take{job.take}"
        return self.clips_dir / f"{job.scene}{suffix}.mp4"

    def _clip_intact(self, task: TaskLock) -> bool:
        clip = task.clip
        if clip is None:
            return False
        path = self.clips_dir.parent / clip.file
        if not path.is_file() or path.stat().st_size != clip.bytes:
            return False
        return sha256_file(path) == clip.sha256

    async def _download(self, job: Job, task: TaskLock) -> Path:
        assert task.video_url is not None
        dest = self._clip_path(job)
        backoff = Backoff(tries=5)
        while True:
            self.progress.update(job.label, "downloading")
            try:
                got = await self.client.download(task.video_url, dest)
                break
            except (DownloadError, TransportFailure) as exc:
                if isinstance(exc, DownloadError) and exc.http_status in _GONE:
                    raise ClipGone(job.label, exc) from exc
                await backoff.retry(self.sleep, exc)
            except ApiStatusError as exc:
                if not exc.transient:
                    raise
                await backoff.retry(self.sleep, exc)
        duration = await asyncio.to_thread(self.probe, dest) if self.probe else 0.0
        task.clip = Clip(
            file=f"{self.clips_dir.name}/{dest.name}",
            sha256=got.sha256,
            bytes=got.bytes,
            duration=round(duration, 3),
        )
        self.lock.save()
        self.progress.update(job.label, "done", f"{dest.name}, {got.bytes:,} bytes")
        return dest
