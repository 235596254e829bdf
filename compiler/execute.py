"""Run compiled tasks on Kling: create, poll, download. Jobs + client + lockfile → clips.

The money rules of design.md §5 live here:
- a task's `external_task_id` comes from its payload digest, and the lockfile records the
  intent to create *before* the request and the task id *before* polling, so a killed run
  re-attaches instead of paying twice;
- a create is resent only when Kling says none was made (1302, 1303) or when a lookup by
  `external_task_id` finds none (after a 5xx, a timeout or a dropped connection);
- polls and downloads are retried freely; a failed task is recorded and reported, never
  retried within the run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .client import KlingClient, TaskInfo
from .errors import (
    ApiError,
    ApiStatusError,
    DownloadError,
    PollTimeout,
    StoryboardError,
    TaskFailed,
    TransportFailure,
)
from .fsutil import sha256_file
from .lockfile import Clip, Lockfile, SceneLock, external_task_id, payload_digest

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
_LOCAL_IMAGE = re.compile(r"^local:(.*)@sha256:([0-9a-f]{64})$")
_KLING_CODE_EXISTS = 1201  # what a duplicate external_task_id most likely answers (R16)


class MediaChanged(StoryboardError):
    """A local image changed between compiling and submitting."""


@dataclass(frozen=True, slots=True)
class Job:
    """One scene to render: its compiled payload and what it is expected to cost."""

    scene: str
    payload: dict[str, Any]
    units: float
    usd: float
    digest: str = ""

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", payload_digest(self.payload))


class Progress(Protocol):
    """Where the executor reports each scene's state (a rich display or plain lines)."""

    def update(self, scene: str, state: str, detail: str = "") -> None: ...


class SilentProgress:
    def update(self, scene: str, state: str, detail: str = "") -> None:
        pass


@dataclass(slots=True)
class Backoff:
    """Exponential delays for one retried request: 1 s, 2 s, 4 s ... capped."""

    start: float = 1.0
    cap: float = 30.0
    attempts: int = 0

    def next(self) -> float:
        delay = min(self.cap, self.start * 2.0**self.attempts)
        self.attempts += 1
        return delay


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
    error: StoryboardError | ApiError | None = None


@dataclass(slots=True)
class Executor:
    """Renders jobs into `renders_dir/<board>/<scene>.mp4`, keeping `lock` up to date."""

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
    slots: AccountSlots = field(init=False)

    def __post_init__(self) -> None:
        self.slots = AccountSlots(self.concurrency, self.sleep)

    async def run(self, jobs: Sequence[Job]) -> list[SceneResult]:
        """Render every job concurrently; one scene's failure does not stop the others."""
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.clips_dir.glob(".*.part"):
            stale.unlink(missing_ok=True)  # a download cut short by a killed run
        return list(await asyncio.gather(*(self._scene(job) for job in jobs)))

    # -- one scene ------------------------------------------------------------------------

    async def _scene(self, job: Job) -> SceneResult:
        try:
            return await self._render(job)
        except PollTimeout as exc:
            self.progress.update(job.scene, "pending", "still running on Kling; run again")
            return SceneResult(job.scene, "pending", error=exc)
        except (TaskFailed, ApiError, StoryboardError) as exc:
            self.progress.update(job.scene, "failed", str(exc))
            return SceneResult(job.scene, "failed", error=exc)

    async def _render(self, job: Job) -> SceneResult:
        entry = self.lock.scenes.get(job.scene)
        if entry is not None and (entry.digest != job.digest or entry.backend != self.backend):
            entry = None  # the scene changed, or its clip came from elsewhere: history
        if entry is not None and entry.status == "succeed":
            if self._clip_intact(entry):
                self.progress.update(job.scene, "done", "unchanged")
                return SceneResult(job.scene, "reused", self._clip_path(job.scene))
            if not entry.video_url:
                raise StoryboardError(
                    f"the clip of scene '{job.scene}' is gone and the lockfile has no URL "
                    "to download it again"
                )
            clip = await self._download(job.scene, entry)
            return SceneResult(job.scene, "downloaded", clip)
        # An entry still "creating" was left by a killed run: its create may have gone out.
        resumed = entry is not None and entry.status == "creating"
        if entry is not None and entry.status == "failed":
            entry = self._new_entry(job, attempt=entry.attempt + 1)
        elif entry is None:
            entry = self._new_entry(job, attempt=1)

        if entry.status == "creating":
            await self.slots.acquire()
            try:
                info = await self._create(job, entry, unsure=resumed)
            except BaseException:
                await self.slots.release()
                raise
        else:
            self.slots.adopt()  # it is already running on the account
            self.progress.update(job.scene, entry.status, f"re-attached to task {entry.task_id}")
            info = None
        try:
            assert entry.task_id is not None
            info = await self._poll(job.scene, entry, info)
        finally:
            await self.slots.release()

        if info.status == "failed":
            raise TaskFailed(job.scene, entry.task_id, info.status_msg)
        clip = await self._download(job.scene, entry)
        return SceneResult(job.scene, "rendered", clip)

    def _new_entry(self, job: Job, *, attempt: int) -> SceneLock:
        entry = SceneLock(
            digest=job.digest,
            external_task_id=external_task_id(job.scene, job.digest, 1, attempt),
            status="creating",
            attempt=attempt,
            backend=self.backend,
        )
        # The intent is on disk before the request: a run killed mid-create finds the
        # task again by its external id instead of creating a second one.
        self.lock.scenes[job.scene] = entry
        self.lock.save()
        return entry

    # -- create ---------------------------------------------------------------------------

    async def _create(self, job: Job, entry: SceneLock, *, unsure: bool) -> TaskInfo:
        """Create the task once. `unsure`: a create may already have reached Kling."""
        body = {**self._submittable(job.payload), "external_task_id": entry.external_task_id}
        backoff = Backoff()
        while True:
            if unsure:
                found = await self._find(entry.external_task_id)
                if found is not None:
                    self._record(job.scene, entry, found)
                    self.progress.update(job.scene, found.status, f"found task {found.task_id}")
                    return found
            self.progress.update(job.scene, "creating")
            try:
                info = await self.client.create_task(body)
            except ApiStatusError as exc:
                if exc.code == 1303:
                    self.progress.update(job.scene, "queued", "account busy (1303)")
                    await self.slots.refused(backoff)
                    unsure = False
                    continue
                if exc.create_not_made:  # 1302: too fast
                    await self.sleep(backoff.next())
                    unsure = False
                    continue
                if unsure and exc.code == _KLING_CODE_EXISTS:
                    # Refused as a duplicate id: the earlier create did land after all.
                    found = await self._find(entry.external_task_id)
                    if found is None:
                        raise
                    self._record(job.scene, entry, found)
                    return found
                if exc.transient:
                    # A 5xx says nothing of whether the task exists: look before resending.
                    await self.sleep(backoff.next())
                    unsure = True
                    continue
                raise
            except TransportFailure:
                await self.sleep(backoff.next())
                unsure = True
                continue
            self._record(job.scene, entry, info)
            self.progress.update(job.scene, info.status, f"task {info.task_id}")
            return info

    async def _find(self, external_id: str) -> TaskInfo | None:
        backoff = Backoff()
        while True:
            try:
                return await self.client.find_task(external_id)
            except TransportFailure:
                await self.sleep(backoff.next())
            except ApiStatusError as exc:
                if not (exc.transient or exc.create_not_made):
                    raise
                await self.sleep(backoff.next())

    def _submittable(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload with each `local:` image swapped for its bare Base64 content."""
        if "image_list" not in payload:
            return dict(payload)
        images = []
        for item in payload["image_list"]:
            match = _LOCAL_IMAGE.match(item["image_url"])
            if match is None:
                images.append(item)
                continue
            data = (self.base_dir / match.group(1)).read_bytes()
            if hashlib.sha256(data).hexdigest() != match.group(2):
                raise MediaChanged(
                    f"{match.group(1)} changed after it was compiled; run render again"
                )
            images.append({**item, "image_url": base64.b64encode(data).decode("ascii")})
        return {**payload, "image_list": images}

    # -- poll -----------------------------------------------------------------------------

    async def _poll(self, scene: str, entry: SceneLock, first: TaskInfo | None) -> TaskInfo:
        assert entry.task_id is not None
        deadline = self.clock() + self.poll_timeout
        info = first
        backoff = Backoff()
        while info is None or info.status not in ("succeed", "failed"):
            if info is not None:
                if self.clock() >= deadline:
                    raise PollTimeout(scene, entry.task_id)
                await self.sleep(self.poll_interval)
            try:
                info = await self.client.get_task(entry.task_id)
            except TransportFailure:
                info = None
                await self.sleep(backoff.next())
                continue
            except ApiStatusError as exc:
                if not (exc.transient or exc.create_not_made):
                    raise
                info = None
                await self.sleep(backoff.next())
                continue
            if info.status != entry.status:
                self._record(scene, entry, info)
                self.progress.update(scene, info.status)
        self._record(scene, entry, info)
        return info

    def _record(self, scene: str, entry: SceneLock, info: TaskInfo) -> None:
        entry.observe(info)
        self.lock.scenes[scene] = entry
        self.lock.save()

    # -- download -------------------------------------------------------------------------

    def _clip_path(self, scene: str) -> Path:
        return self.clips_dir / f"{scene}.mp4"

    def _clip_intact(self, entry: SceneLock) -> bool:
        clip = entry.clip
        if clip is None:
            return False
        path = self.clips_dir.parent / clip.file
        if not path.is_file() or path.stat().st_size != clip.bytes:
            return False
        return sha256_file(path) == clip.sha256

    async def _download(self, scene: str, entry: SceneLock) -> Path:
        assert entry.video_url is not None
        dest = self._clip_path(scene)
        backoff = Backoff()
        for attempt in range(1, 6):
            self.progress.update(scene, "downloading")
            try:
                got = await self.client.download(entry.video_url, dest)
                break
            except (DownloadError, TransportFailure):
                if attempt == 5:
                    raise
                await self.sleep(backoff.next())
            except ApiStatusError as exc:
                if not exc.transient or attempt == 5:
                    raise
                await self.sleep(backoff.next())
        duration = await asyncio.to_thread(self.probe, dest) if self.probe else 0.0
        entry.clip = Clip(
            file=f"{self.clips_dir.name}/{dest.name}",
            sha256=got.sha256,
            bytes=got.bytes,
            duration=round(duration, 3),
        )
        self.lock.scenes[scene] = entry
        self.lock.save()
        self.progress.update(scene, "done", f"{dest} ({got.bytes:,} bytes)")
        return dest
