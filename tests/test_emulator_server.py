"""The emulator as a server, hardened (issue 15): what a stranger's request can and cannot do.

Control endpoints take the API's credentials and JSON only; blobs and request bodies are
capped; a dropped client stops the work made for it; SIGTERM stops a streaming server;
listening beyond loopback warns. Most run in-process; the ones about sockets and signals
run a real server on 127.0.0.1 (in a thread, or as `python -m compiler emulator`).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from compiler.backends import emulator_server
from compiler.emulator import Emulator
from compiler.emulator import app as emulator_app
from compiler.emulator.app import BLOB_MAX, BODY_MAX, CONTROL_BODY_MAX
from compiler.emulator.rules import IMAGE_BYTES
from compiler.emulator.transport import (
    GRACEFUL_SHUTDOWN_SECONDS,
    exposure_warning,
    is_loopback,
    server_config,
)

from .conftest import ROOT
from .test_emulator import ACCESS, SECRET, jwt_token

BEARER = {"Authorization": "Bearer any-token"}
FAULT = {"kind": "http_500", "op": "create"}
CONTROL = (
    ("GET", "/_emulator/stats"),
    ("GET", "/_emulator/faults"),
    ("POST", "/_emulator/faults"),
    ("DELETE", "/_emulator/faults"),
)
TOO_LARGE = f"request body is too large: at most {BODY_MAX} bytes"
NOT_JSON = "Content-Type must be application/json"


def call(emu: Emulator, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=emu.transport(), base_url="http://e") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def control(emu: Emulator, method: str, path: str, **kwargs: Any) -> httpx.Response:
    if method == "POST" and "content" not in kwargs:
        kwargs["json"] = FAULT
    return call(emu, method, path, **kwargs)


def error(response: httpx.Response) -> tuple[int, int, str]:
    body = response.json()
    return response.status_code, body["code"], body["message"]


# -- 1. control endpoints: the API's credentials, JSON bodies --------------------------


@pytest.mark.parametrize(("method", "path"), CONTROL)
def test_control_endpoints_refuse_requests_without_credentials(method: str, path: str) -> None:
    emu = Emulator()  # no keys: any Bearer token, but one must be sent
    emu.faults.add("code_1302", "query")
    before = [f.to_json() for f in emu.faults.pending()]
    assert error(control(emu, method, path)) == (401, 1001, "Authorization header is empty")
    basic = control(emu, method, path, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert error(basic) == (401, 1002, "Authorization is invalid: expected 'Bearer <token>'")
    empty = control(emu, method, path, headers={"Authorization": "Bearer "})
    assert error(empty)[:2] == (401, 1002)
    assert [f.to_json() for f in emu.faults.pending()] == before  # nothing added or cleared
    assert control(emu, method, path, headers=BEARER).status_code == 200


def test_control_endpoints_take_the_same_keys_as_the_api() -> None:
    emu = Emulator(api_key="the-key")
    wrong = control(emu, "POST", "/_emulator/faults", headers=BEARER)
    assert error(wrong) == (401, 1002, "Authorization is invalid: unknown API key")
    assert emu.faults.pending() == []
    right = {"Authorization": "Bearer the-key"}
    assert control(emu, "POST", "/_emulator/faults", headers=right).status_code == 200
    assert control(emu, "GET", "/_emulator/stats", headers=right).json()["total_creates"] == 0

    signed = Emulator(access_key=ACCESS, secret_key=SECRET)
    forged = {"Authorization": f"Bearer {jwt_token(secret='x' * 40)}"}
    assert error(control(signed, "GET", "/_emulator/stats", headers=forged)) == (
        401,
        1002,
        "Authorization is invalid: bad token or signature",
    )
    expired = {"Authorization": f"Bearer {jwt_token(exp=time.time() - 10)}"}
    assert error(control(signed, "DELETE", "/_emulator/faults", headers=expired))[:2] == (
        401,
        1004,
    )
    good = {"Authorization": f"Bearer {jwt_token()}"}
    assert control(signed, "POST", "/_emulator/faults", headers=good).status_code == 200
    assert len(signed.faults.pending()) == 1


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None],
)
def test_a_fault_not_sent_as_json_is_refused(content_type: str | None) -> None:
    # A web page's CORS-simple request: text/plain (or a form), a JSON-looking body.
    emu = Emulator()
    headers = {**BEARER, **({"Content-Type": content_type} if content_type else {})}
    sent = control(emu, "POST", "/_emulator/faults", content=json.dumps(FAULT), headers=headers)
    assert error(sent) == (415, 1200, NOT_JSON)
    assert emu.faults.pending() == []


def test_a_delete_with_a_body_must_be_json_too() -> None:
    emu = Emulator()
    emu.faults.add("http_500", "create")
    plain = {**BEARER, "Content-Type": "text/plain"}
    sent = control(emu, "DELETE", "/_emulator/faults", content=b"{}", headers=plain)
    assert error(sent) == (415, 1200, NOT_JSON)
    assert len(emu.faults.pending()) == 1  # nothing changed
    assert control(emu, "DELETE", "/_emulator/faults", headers=BEARER).status_code == 200
    assert emu.faults.pending() == []


def test_json_with_a_charset_is_json() -> None:
    emu = Emulator()
    headers = {**BEARER, "Content-Type": "application/json; charset=utf-8"}
    sent = control(emu, "POST", "/_emulator/faults", content=json.dumps(FAULT), headers=headers)
    assert sent.status_code == 200 and sent.json()["data"]["kind"] == "http_500"


# -- 2. blobs are capped --------------------------------------------------------------


@pytest.mark.parametrize("size", [1 << 40, BLOB_MAX + 1])
def test_a_blob_over_the_cap_is_refused(size: int) -> None:
    refused = call(Emulator(), "GET", f"/_emulator/blob?bytes={size}")
    assert error(refused) == (400, 1201, "bytes must be an integer from 0 to 1073741824")


def test_a_blob_at_the_cap_is_served_as_a_stream() -> None:
    async def headers_only(client: httpx.AsyncClient) -> tuple[int, str, int]:
        async with client.stream("GET", f"/_emulator/blob?bytes={BLOB_MAX}") as response:
            first = await response.aiter_raw().__anext__()
            return response.status_code, response.headers["content-length"], len(first)

    async def go() -> tuple[int, str, int]:
        transport = Emulator().transport()
        async with httpx.AsyncClient(transport=transport, base_url="http://e") as client:
            return await headers_only(client)

    assert BLOB_MAX == 1 << 30
    assert asyncio.run(go()) == (200, str(1 << 30), 1 << 20)


# -- 3. request bodies are capped before they are read whole --------------------------


def test_the_body_cap_keeps_every_valid_create() -> None:
    # Omni-Image (§11.1): at most 10 images, each up to 10 MB, Base64 inside the JSON (a
    # video create, R6, holds at most 7); prompts are small.
    largest_create = 10 * 4 * math.ceil(IMAGE_BYTES / 3) + 64 * 1024
    assert largest_create < BODY_MAX == 144 * 1024 * 1024


class Upload:
    """A request body made on demand, counting what the server pulled of it."""

    def __init__(self, total: int, chunk: int = 1 << 20) -> None:
        self.total = total
        self.chunk = b"x" * chunk
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += len(self.chunk)
            yield self.chunk


def test_a_body_declared_over_the_cap_is_refused_unread() -> None:
    emu = Emulator()
    upload = Upload(200 * 1024 * 1024)
    headers = {**BEARER, "Content-Type": "application/json", "Content-Length": str(upload.total)}
    refused = call(emu, "POST", "/v1/videos/omni-video", content=upload, headers=headers)
    assert error(refused) == (413, 1200, TOO_LARGE)
    assert refused.headers["connection"] == "close"
    assert upload.sent == 0
    assert emu.stats()["total_creates"] == 0


@pytest.mark.parametrize(
    "path",
    ["/v1/videos/omni-video", "/v1/general/advanced-custom-elements", "/v1/images/omni-image"],
)
def test_a_streamed_body_is_refused_at_the_cap(path: str) -> None:
    emu = Emulator()
    upload = Upload(200 * 1024 * 1024)  # chunked: no length to refuse it by
    headers = {**BEARER, "Content-Type": "application/json"}
    refused = call(emu, "POST", path, content=upload, headers=headers)
    assert error(refused) == (413, 1200, TOO_LARGE)
    assert upload.sent <= BODY_MAX + len(upload.chunk)  # read to the cap, no further
    stats = emu.stats()
    assert stats["total_creates"] == stats["element_creates"] == stats["image_creates"] == 0


def test_a_fault_body_is_capped_far_lower() -> None:
    emu = Emulator()
    upload = Upload(10 * CONTROL_BODY_MAX, chunk=4096)
    headers = {**BEARER, "Content-Type": "application/json"}
    refused = call(emu, "POST", "/_emulator/faults", content=upload, headers=headers)
    message = f"request body is too large: at most {CONTROL_BODY_MAX} bytes"
    assert error(refused) == (413, 1200, message)
    assert upload.sent <= CONTROL_BODY_MAX + 4096
    assert emu.faults.pending() == []


# -- a real server on 127.0.0.1, in a thread ------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    # Waits on a server; generous bounds, nothing here is a timing claim.
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Live:
    def __init__(self, emulator: Emulator, port: int) -> None:
        self.emulator = emulator
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def connect(self, request: bytes) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(request)
        return sock

    def stats(self) -> httpx.Response:
        return httpx.get(self.url + "/_emulator/stats", headers=BEARER, timeout=10)


@pytest.fixture
def live() -> Iterator[Live]:
    emulator = Emulator()
    port = _free_port()
    server = uvicorn.Server(server_config("127.0.0.1", port, emulator, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_for(lambda: server.started, "the server to listen")
        yield Live(emulator, port)
    finally:
        server.should_exit = True
        thread.join(15)


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def _read_head(sock: socket.socket) -> tuple[str, bytes]:
    """The status line, and what came after the headers so far."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"connection closed before the headers: {data!r}"
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), rest


def _read_at_least(sock: socket.socket, have: bytes, n: int) -> int:
    got = len(have)
    while got < n:
        more = sock.recv(1 << 20)
        assert more
        got += len(more)
    return got


def test_a_dropped_client_stops_the_blob(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    stopped = threading.Event()
    real = emulator_app._random_chunks

    async def counting(size: int, seed: int) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in real(size, seed):
                made.append(len(chunk))
                yield chunk
        finally:
            stopped.set()

    monkeypatch.setattr(emulator_app, "_random_chunks", counting)
    sock = live.connect(_get(f"/_emulator/blob?bytes={BLOB_MAX}"))
    status, rest = _read_head(sock)
    assert status == "HTTP/1.1 200 OK"
    _read_at_least(sock, rest, 1 << 20)
    sock.close()  # abandoned mid-body
    assert stopped.wait(15), "the blob was still being made for a client that left"
    assert sum(made) < 64 << 20  # it stopped, rather than making the whole GiB
    assert live.stats().status_code == 200


def test_requests_are_answered_while_blobs_stream(live: Live) -> None:
    stalled = live.connect(_get(f"/_emulator/blob?bytes={BLOB_MAX}"))  # never read on
    reading = live.connect(_get("/_emulator/blob?bytes=300000000"))
    _, rest = _read_head(reading)
    _read_at_least(reading, rest, 8 << 20)
    assert live.stats().json()["total_creates"] == 0  # answered mid-stream
    added = httpx.post(live.url + "/_emulator/faults", json=FAULT, headers=BEARER, timeout=10)
    assert added.status_code == 200
    stalled.close()
    reading.close()


def test_an_image_task_is_made_and_its_still_served_by_the_server(live: Live) -> None:
    body = {"prompt": "A lighthouse at dusk.", "aspect_ratio": "16:9", "external_task_id": "s-1"}
    created = httpx.post(live.url + "/v1/images/omni-image", json=body, headers=BEARER, timeout=10)
    assert created.json()["data"]["task_status"] == "submitted"

    def task() -> Any:
        query = live.url + "/v1/images/omni-image/s-1"
        return httpx.get(query, headers=BEARER, timeout=10).json()["data"]

    _wait_for(lambda: task()["task_status"] == "succeed", "the image task")  # 0.5 s latency
    [image] = task()["task_result"]["images"]
    still = httpx.get(image["url"], timeout=10)
    assert still.headers["content-type"] == "image/png"
    assert int(still.headers["content-length"]) == len(still.content)
    stats = live.stats().json()
    assert (stats["image_creates"], stats["images"], stats["downloads"]) == (1, {"s-1": 1}, 1)


def test_a_body_declared_over_the_cap_is_refused_by_the_server(live: Live) -> None:
    sock = live.connect(
        b"POST /v1/videos/omni-video HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer any-token\r\nContent-Type: application/json\r\n"
        b"Content-Length: 209715200\r\n\r\n" + b"{" * 65536  # the rest never comes
    )
    status, rest = _read_head(sock)
    assert status == "HTTP/1.1 413 Request Entity Too Large"
    while more := sock.recv(65536):  # the server closes the connection after it
        rest += more
    body = json.loads(rest)
    assert (body["code"], body["message"]) == (1200, TOO_LARGE)
    sock.close()
    assert live.emulator.stats()["total_creates"] == 0


def test_a_text_plain_fault_is_refused_by_the_server(live: Live) -> None:
    # What a web page in the user's browser can send cross-origin without a preflight.
    simple = httpx.post(
        live.url + "/_emulator/faults",
        content=json.dumps(FAULT),
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert error(simple) == (401, 1001, "Authorization header is empty")
    with_token = httpx.post(
        live.url + "/_emulator/faults",
        content=json.dumps(FAULT),
        headers={**BEARER, "Content-Type": "text/plain"},
        timeout=10,
    )
    assert error(with_token) == (415, 1200, NOT_JSON)
    assert live.emulator.faults.pending() == []


# -- 4. SIGTERM stops a server that is streaming --------------------------------------


def test_sigterm_stops_the_server_while_it_streams(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLING_")}
    log = (tmp_path / "emulator.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "compiler", "emulator", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    live = Live(Emulator(), port)  # only its socket helpers
    held: list[socket.socket] = []
    try:

        def up() -> bool:
            try:
                return live.stats().status_code == 200
            except httpx.TransportError:
                return False

        _wait_for(up, "the emulator to listen", timeout=30)
        kept = live.connect(_get(f"/_emulator/blob?bytes={BLOB_MAX}"))
        held.append(kept)
        _, rest = _read_head(kept)
        _read_at_least(kept, rest, 1 << 20)  # then kept open, never read again
        abandoned = live.connect(_get(f"/_emulator/blob?bytes={BLOB_MAX}"))
        _read_head(abandoned)
        abandoned.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)  # GRACEFUL_SHUTDOWN_SECONDS, then the stream is cancelled
    finally:
        for sock in held:
            sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert process.returncode is not None


# -- 5. beyond loopback, a warning -----------------------------------------------------


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"]
)
def test_loopback_hosts_need_no_warning(host: str) -> None:
    assert is_loopback(host)
    assert exposure_warning(host, 8765, Emulator()) is None


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "my-laptop.local", ""]
)
def test_other_hosts_are_warned_about(host: str) -> None:
    assert not is_loopback(host)
    open_warning = exposure_warning(host, 8765, Emulator())
    assert open_warning is not None
    assert open_warning.startswith("WARNING: the emulator listens on ")
    assert "anyone on the network who can reach that port can use it" in open_warning
    assert "accepts ANY Bearer token" in open_warning
    keyed = exposure_warning(host, 8765, Emulator(api_key="k"))
    assert keyed is not None and "anyone on the network" in keyed
    assert "ANY Bearer token" not in keyed


def test_storyboard_emulator_prints_the_warning_before_serving(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append(self.config))
    server = emulator_server(
        latency=1.0,
        concurrency=4,
        access_key=None,
        secret_key=None,
        api_key=None,
        clip_max_side=None,
        element_latency=1.0,
    )
    server.serve("0.0.0.0", 8765)  # nothing is bound: uvicorn's run is replaced
    err = capsys.readouterr().err
    assert "WARNING: the emulator listens on 0.0.0.0:8765, beyond this machine's loopback" in err
    assert "accepts ANY Bearer token" in err
    assert [c.timeout_graceful_shutdown for c in ran] == [GRACEFUL_SHUTDOWN_SECONDS]
    server.serve("127.0.0.1", 8765)
    assert capsys.readouterr().err == ""
