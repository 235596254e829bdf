"""How requests reach the emulator's app: in this event loop, or over HTTP with uvicorn.

Tests drive the emulator through httpx without a socket, so the in-process transport has
to behave like one: stream the body as the app produces it, honour the read timeout, and
turn a dropped connection into the error a real client would see. A handler asks for a
drop by raising `drop(request)`; `DropGuard` acts it out for either way in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    import uvicorn

    from .app import Emulator

# How long the server lets running requests finish after SIGTERM or Ctrl-C before it
# cancels them: a client that keeps a download open must not keep the server alive.
GRACEFUL_SHUTDOWN_SECONDS = 2

# Keys the ASGI wrapper puts in the scope.
SERVER = "emulator.server"  # True under uvicorn, False in-process
DROPPED = "emulator.dropped"  # set by a handler that drops the connection


class ConnectionDropped(Exception):
    """The app drops the connection instead of answering.

    In-process, `Emulator.transport()` turns it into `httpx.RemoteProtocolError`; under
    uvicorn the connection is closed after the status line, so the client's read fails.
    """


def drop(request: Request) -> ConnectionDropped:
    """Mark the request's connection as dropped; raise what this returns."""
    request.scope[DROPPED] = True
    return ConnectionDropped()


class DropGuard:
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
        scope[SERVER] = self.server
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if scope.get(DROPPED):
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

    def __init__(self, app: ASGIApp, scope: Scope, body: AsyncIterator[bytes]) -> None:
        self.app = app
        self.scope = scope
        # The request body, handed to the app chunk by chunk as it asks, like a socket.
        self.body: AsyncIterator[bytes] | None = body
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
            try:
                chunk = await self.body.__anext__()
            except StopAsyncIteration:
                self.body = None
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": bytes(chunk), "more_body": True}
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

    Unlike httpx.ASGITransport it hands the response body over as the app produces it (a
    200 MB download stays flat in memory) and the request body as the app reads it (an
    oversized upload is refused before it is all sent), honours the read timeout, and
    reports a dropped connection as httpx.RemoteProtocolError, with or without a status
    line first.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        body = request.stream.__aiter__()  # read only as far as the app reads
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


def is_loopback(host: str) -> bool:
    """Whether `host` reaches only this machine: localhost, 127.0.0.0/8 or ::1."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name (or "" for every interface): assume the network


def exposure_warning(host: str, port: int, emulator: Emulator) -> str | None:
    """What to tell the user before listening beyond loopback; None on loopback."""
    if is_loopback(host):
        return None
    lines = [
        f"WARNING: the emulator listens on {host or 'every interface'}:{port}, beyond this "
        "machine's loopback: anyone on the network who can reach that port can use it, "
        "including its control endpoints (/_emulator/stats, /_emulator/faults)."
    ]
    if emulator.open_to_any_token:
        lines.append(
            "It has no keys (KLING_API_KEY, or KLING_ACCESS_KEY and KLING_SECRET_KEY), so it "
            "accepts ANY Bearer token: anyone on the network is authorized."
        )
    lines.append("Use --host 127.0.0.1 unless you mean to share it.")
    return "\n".join(lines)


def server_config(host: str, port: int, emulator: Emulator, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration `serve` runs (tests start the same one in a thread)."""
    import uvicorn

    return uvicorn.Config(
        DropGuard(emulator.app, server=True),
        host=host,
        port=port,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **options,
    )


def serve(host: str, port: int, emulator: Emulator) -> None:
    """Run the emulator as an HTTP server until interrupted (blocking).

    Beyond loopback it first warns on stderr (`exposure_warning`). On SIGTERM or Ctrl-C,
    requests still running after GRACEFUL_SHUTDOWN_SECONDS are cancelled.
    """
    import uvicorn

    warning = exposure_warning(host, port, emulator)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    uvicorn.Server(server_config(host, port, emulator)).run()
