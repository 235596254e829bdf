"""Where tasks go: Kling itself, or the built-in emulator. The one backend factory.

Production code reaches the emulator only through `choose_backend`/`emulator_backend`;
the emulator package knows nothing of the compiler (README "Backends").
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from .auth import ApiKeyAuth, credentials_from_env
from .client import DEFAULT_BASE_URL, KlingClient
from .errors import BackendError
from .lockfile import EMULATOR_HOST_SUFFIX

if TYPE_CHECKING:
    from .emulator import Emulator

# The in-process emulator's address: a host under `.invalid` can never be Kling's, which
# is how the lockfile tells an old placeholder from a real result (lockfile.py).
EMULATOR_BASE_URL = f"http://emulator{EMULATOR_HOST_SUFFIX}"

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(slots=True)
class Backend:
    """Kling, or the emulator (free, in this process)."""

    name: str  # "kling" | "emulator": what the lockfile records as a task's origin
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
        return Backend("kling", env.get("KLING_BASE_URL", DEFAULT_BASE_URL), auth)
    from .emulator import Emulator  # only the emulator backend needs Starlette and PyAV

    return emulator_backend(Emulator(latency=1.0, concurrency=4, api_key="emulator"))


def emulator_backend(emulator: Emulator, poll_interval: float = 0.25) -> Backend:
    """A backend that talks to `emulator` inside this process, sharing its clock."""
    return Backend(
        "emulator",
        EMULATOR_BASE_URL,
        ApiKeyAuth("emulator", secret=False),
        transport=emulator.transport(),
        poll_interval=poll_interval,
        sleep=emulator.sleep,
        clock=emulator.clock,
    )


@dataclass(slots=True)
class EmulatorServer:
    """The emulator, set up to run as `storyboard emulator` (README "The emulator")."""

    emulator: Emulator
    accepts: str  # which credentials it takes, in words

    def serve(self, host: str, port: int) -> None:
        from .emulator import serve

        serve(host, port, self.emulator)


def emulator_server(
    *,
    latency: float,
    concurrency: int,
    access_key: str | None,
    secret_key: str | None,
    api_key: str | None,
    clip_max_side: int | None,
    element_latency: float,
    image_latency: float = 0.5,
    image_concurrency: int = 4,
    image_max_side: int | None = None,
    voice_latency: float = 1.0,
    sfx_latency: float = 1.0,
) -> EmulatorServer:
    from .emulator import Emulator

    emulator = Emulator(
        latency=latency,
        concurrency=concurrency,
        access_key=access_key,
        secret_key=secret_key,
        api_key=api_key,
        clip_max_side=clip_max_side,
        element_latency=element_latency,
        image_latency=image_latency,
        image_concurrency=image_concurrency,
        image_max_side=image_max_side,
        voice_latency=voice_latency,
        sfx_latency=sfx_latency,
    )
    if access_key and secret_key:
        accepts = "JWTs signed with its access and secret keys"
    elif api_key:
        accepts = "Bearer $KLING_API_KEY"
    else:
        accepts = "any Bearer token (no keys set)"
    return EmulatorServer(emulator, accepts)
