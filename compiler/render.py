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
from .execute import Clock, Executor, Job, Progress, SceneResult, Sleep
from .fsutil import sha256_file
from .lockfile import Film, Lockfile
from .pipeline import CompileResult
from .plan import Plan, plan

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


def choose_backend(name: str | None, env: Mapping[str, str] = os.environ) -> Backend:
    """`--backend`, else Kling when credentials are set, else the in-process emulator."""
    auth = credentials_from_env(env)
    if name == "kling" or (name is None and auth is not None):
        if auth is None:
            raise BackendError(
                "--backend kling needs KLING_API_KEY, or KLING_ACCESS_KEY and KLING_SECRET_KEY"
            )
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
    plan: Plan
    results: list[SceneResult] = field(default_factory=list)
    film: Path | None = None
    film_note: str = ""

    @property
    def failed(self) -> list[SceneResult]:
        return [r for r in self.results if r.outcome in ("failed", "pending")]


def jobs_for(result: CompileResult, only: set[str] | None = None) -> list[Job]:
    return [
        Job(task.scene, task.payload, task.units, task.usd)
        for task in result.tasks
        if not only or task.scene in only
    ]


def plan_board(
    result: CompileResult, file: Path, backend: Backend, only: set[str] | None = None
) -> Plan:
    return plan(jobs_for(result, only), Lockfile.for_storyboard(file), backend.name)


async def render_board(
    result: CompileResult,
    file: Path,
    backend: Backend,
    renders: Path,
    progress: Progress,
    *,
    only: set[str] | None = None,
    concurrency: int = 4,
    poll_timeout: float = 3600.0,
) -> BoardRender:
    """Execute the plan of one storyboard, then assemble its film when every clip exists."""
    from .media import probe

    lock = Lockfile.for_storyboard(file)
    jobs = jobs_for(result, only)
    outcome = BoardRender(result.path, plan(jobs, lock, backend.name))
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
        )
        outcome.results = await executor.run(jobs)
    finally:
        await client.aclose()
    scenes = [task.scene for task in result.tasks]
    outcome.film, outcome.film_note = await asyncio.to_thread(
        assemble_film, lock, scenes, renders, file.stem
    )
    return outcome


def assemble_film(
    lock: Lockfile, scenes: list[str], renders: Path, name: str
) -> tuple[Path | None, str]:
    """Join the clips in scene order into renders/NAME.mp4, unless nothing changed."""
    from .media import assemble

    missing = [s for s in scenes if (entry := lock.scenes.get(s)) is None or entry.clip is None]
    if missing:
        return None, f"no film yet: {len(missing)} scene(s) without a clip ({', '.join(missing)})"
    clips = [lock.scenes[s].clip for s in scenes]
    paths = [renders / clip.file for clip in clips if clip is not None]
    shas = [clip.sha256 for clip in clips if clip is not None]
    film_path = renders / f"{name}.mp4"
    if (
        lock.film is not None
        and lock.film.clips == shas
        and film_path.is_file()
        and sha256_file(film_path) == lock.film.sha256
    ):
        return film_path, "film unchanged"
    info = assemble(paths, film_path)
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
    unfinished = {scene: entry for scene, entry in lock.scenes.items() if entry.in_flight}
    if not unfinished:
        return lock
    client = backend.client()
    try:
        for entry in unfinished.values():
            if entry.task_id is not None:
                info = await client.get_task(entry.task_id)
            else:
                found = await client.find_task(entry.external_task_id)
                if found is None:
                    continue
                info = found
            entry.observe(info)
    finally:
        await client.aclose()
    lock.save()
    return lock
