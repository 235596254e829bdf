"""Render compiled storyboards into clips and a film. CompileResult → renders/NAME.mp4.

plan (what must be paid) → gate (the money rules) → execute (create, poll, download)
→ assemble (the film, in scene order). The CLI calls `render_board` once per storyboard.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from .auth import ApiKeyAuth, credentials_from_env
from .client import KlingClient
from .execute import (
    AccountSlots,
    Clock,
    Executor,
    Job,
    Progress,
    SceneResult,
    Sleep,
    last_frame_png,
)
from .fsutil import sha256_file
from .lockfile import Film, Lockfile, TaskLock
from .pipeline import CompileResult
from .plan import Plan, plan
from .progress import Display

if TYPE_CHECKING:
    from .emulator import Emulator

KLING_BASE_URL = "https://api-singapore.klingai.com"
EMULATOR_BASE_URL = "http://emulator.invalid"


class BackendError(Exception):
    """The chosen backend cannot be used (no credentials, say): a usage error."""


@dataclass(slots=True)
class Backend:
    """Where tasks go: Kling itself, or the emulator (free, in this process)."""

    name: str
    base_url: str
    auth: httpx.Auth | None
    transport: httpx.AsyncBaseTransport | None = None
    poll_interval: float = 5.0
    # The time source of polling and backoff; tests share a fake one with the emulator.
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic

    @property
    def free(self) -> bool:
        return self.name == "emulator"

    def client(self) -> KlingClient:
        return KlingClient(self.base_url, self.auth, transport=self.transport)


def backend_name(name: str | None, env: Mapping[str, str] = os.environ) -> str:
    """`--backend`, else "kling" when credentials are set, else "emulator"."""
    auth = credentials_from_env(env)
    if name == "kling" and auth is None:
        raise BackendError(
            "--backend kling needs KLING_API_KEY, or KLING_ACCESS_KEY and KLING_SECRET_KEY"
        )
    return name or ("kling" if auth is not None else "emulator")


def choose_backend(name: str | None, env: Mapping[str, str] = os.environ) -> Backend:
    """The backend `backend_name` picks, ready to use."""
    if backend_name(name, env) == "kling":
        auth = credentials_from_env(env)
        assert auth is not None
        return Backend("kling", env.get("KLING_BASE_URL", KLING_BASE_URL), auth)
    from .emulator import Emulator  # only the emulator backend needs Starlette and PyAV

    return emulator_backend(Emulator(latency=1.0, concurrency=4, api_key="emulator"))


def emulator_backend(emulator: Emulator, poll_interval: float = 0.25) -> Backend:
    """A backend that talks to `emulator` inside this process, sharing its clock."""
    return Backend(
        "emulator",
        EMULATOR_BASE_URL,
        ApiKeyAuth("emulator"),
        transport=emulator.transport(),
        poll_interval=poll_interval,
        sleep=emulator.sleep,
        clock=emulator.clock,
    )


@dataclass(slots=True)
class BoardRender:
    """What one render of one storyboard did."""

    storyboard: str
    results: list[SceneResult] = field(default_factory=list)
    film: Path | None = None
    film_note: str = ""

    @property
    def failed(self) -> list[SceneResult]:
        return [r for r in self.results if r.outcome in ("failed", "pending")]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which scenes and takes a run touches: `--only` and `--force`."""

    only: frozenset[str] = frozenset()
    force: frozenset[str] = frozenset()

    def wants(self, scene: str) -> bool:
        return not self.only or scene in self.only


def jobs_for(result: CompileResult, selection: Selection = Selection()) -> list[Job]:
    """One job per take of every enabled scene the selection wants, in scene order."""
    return [
        Job(
            task.scene,
            task.payload,
            task.units,
            task.usd,
            take=take,
            after=task.after,
            force=task.scene in selection.force,
        )
        for task in result.tasks
        if task.enabled and selection.wants(task.scene)
        for take in range(1, task.takes + 1)
    ]


def plan_board(
    result: CompileResult, backend: str, renders: Path, selection: Selection = Selection()
) -> Plan:
    lock = Lockfile.for_storyboard(result.file)
    clips = renders / result.file.stem
    folder = clips.parent

    def frame_of(scene: str, task: TaskLock) -> str | None:
        if task.clip is None or not (folder / task.clip.file).is_file():
            return None
        png = clips / f"{scene}.last.png"
        return f"frame:{png.name}@sha256:{last_frame_png(folder / task.clip.file, png)}"

    planned = plan(jobs_for(result, selection), lock, backend, frame_of)
    disabled = tuple(t.scene for t in result.tasks if not t.enabled and selection.wants(t.scene))
    return Plan(planned.takes, disabled, planned.charged_units)


async def render_board(
    result: CompileResult,
    backend: Backend,
    renders: Path,
    progress: Progress,
    *,
    selection: Selection = Selection(),
    concurrency: int = 4,
    poll_timeout: float = 3600.0,
    slots: AccountSlots | None = None,
) -> BoardRender:
    """Execute the plan of one storyboard, then assemble its film when every clip exists."""
    from .media import probe

    file = result.file
    outcome = BoardRender(result.path)
    lock = Lockfile.for_storyboard(file)
    client = backend.client()
    try:
        executor = Executor(
            client,
            lock,
            base_dir=file.resolve().parent,
            clips_dir=renders / file.stem,
            backend=backend.name,
            concurrency=concurrency,
            poll_interval=backend.poll_interval,
            sleep=backend.sleep,
            clock=backend.clock,
            poll_timeout=poll_timeout,
            progress=progress,
            probe=lambda path: probe(path).duration,
            selected={task.scene: task.selected for task in result.tasks},
            elements=dict(result.board.refs.elements) if result.board else {},
            slots=slots,
        )
        outcome.results = await executor.run(jobs_for(result, selection))
    finally:
        await client.aclose()
    film = [(t.scene, t.selected) for t in result.tasks if t.enabled]
    outcome.film, outcome.film_note = await asyncio.to_thread(
        assemble_film, lock, film, renders, file.stem
    )
    return outcome


async def render_all(
    results: list[CompileResult],
    backend: Backend,
    renders: Path,
    display: Display,
    *,
    selection: Selection = Selection(),
    concurrency: int = 4,
    poll_timeout: float = 3600.0,
) -> list[BoardRender]:
    """Render several storyboards at once: they share the account's task slots."""
    slots = AccountSlots(concurrency, backend.sleep)
    return list(
        await asyncio.gather(
            *(
                render_board(
                    result,
                    backend,
                    renders,
                    display.for_board(result.path),
                    selection=selection,
                    concurrency=concurrency,
                    poll_timeout=poll_timeout,
                    slots=slots,
                )
                for result in results
            )
        )
    )


def assemble_film(
    lock: Lockfile, film: list[tuple[str, int]], renders: Path, name: str
) -> tuple[Path | None, str]:
    """Join the selected take of every enabled scene, in order, into renders/NAME.mp4.

    Nothing is re-encoded when the clips are the same as last time.
    """
    from .media import assemble

    clips = [lock.task(scene, take) for scene, take in film]
    missing = [
        scene if take == 1 else f"{scene} take {take}"
        for (scene, take), task in zip(film, clips, strict=True)
        if task is None or task.clip is None or not (renders / task.clip.file).is_file()
    ]
    if missing:
        return None, f"no film yet: {len(missing)} scene(s) without a clip ({', '.join(missing)})"
    files = [task.clip for task in clips if task is not None and task.clip is not None]
    shas = [clip.sha256 for clip in files]
    film_path = renders / f"{name}.mp4"
    if (
        lock.film is not None
        and lock.film.clips == shas
        and film_path.is_file()
        and sha256_file(film_path) == lock.film.sha256
    ):
        return film_path, "film unchanged"
    info = assemble([renders / clip.file for clip in files], film_path)
    lock.film = Film(
        file=film_path.name,
        sha256=sha256_file(film_path),
        clips=shas,
        duration=round(info.duration, 3),
    )
    lock.save()
    return film_path, f"film assembled: {info.duration:.2f} s"


async def refresh_status(file: Path, backend: Backend) -> Lockfile:
    """Ask Kling about every unfinished task in the lockfile and record the answers.

    Never creates anything: a create that a killed run may have sent is looked up by its
    `external_task_id`.
    """
    lock = Lockfile.for_storyboard(file)
    unfinished = [t for entry in lock.scenes.values() for t in entry.takes.values() if t.in_flight]
    if not unfinished:
        return lock
    client = backend.client()
    try:
        for task in unfinished:
            if task.task_id is not None:
                info = await client.get_task(task.task_id)
            else:
                found = await client.find_task(task.external_task_id)
                if found is None:
                    continue
                info = found
            task.observe(info)
    finally:
        await client.aclose()
    lock.save()
    return lock
