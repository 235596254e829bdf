"""The Kling client over scripted httpx.MockTransport answers: parsing, every error class,
JWT renewal, secret hygiene, and atomic streamed downloads. No sockets, no sleeping."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from compiler.auth import ApiKeyAuth, JWTAuth
from compiler.client import Download, ElementTaskInfo, KlingClient, TaskInfo
from compiler.errors import ApiError, ApiStatusError, DownloadError, TransportFailure

BASE = "https://api.kling.test"
API_KEY = "kling-api-key-SECRET-0123456789"
ACCESS = "ak-test-ACCESS-0001"
SECRET = "sk-test-SECRET-0123456789abcdef0123456789"
T = TypeVar("T")

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Script:
    """A fake Kling: answers requests in order from a script, and records them."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        # As sent: an auth flow resends the same Request object with a new header.
        self.tokens: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.tokens.append(request.headers.get("Authorization", ""))
        answer = self.answers.pop(0)
        if isinstance(answer, httpx.Response):
            return answer
        result = answer(request)
        return result if isinstance(result, httpx.Response) else await result


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def envelope(
    code: int = 0,
    data: object = None,
    *,
    status: int = 200,
    message: str = "SUCCEED",
    request_id: str = "req-1",
) -> httpx.Response:
    return httpx.Response(
        status, json={"code": code, "message": message, "request_id": request_id, "data": data}
    )


def html(status: int) -> httpx.Response:
    page = f"<html><body><h1>{status} Bad Gateway</h1></body></html>"
    return httpx.Response(status, text=page, headers={"Content-Type": "text/html"})


CREATED = {
    "task_id": "T-100",
    "task_status": "submitted",
    "task_info": {"external_task_id": "sb-abc-1"},
    "created_at": 1722769557708,
    "updated_at": 1722769557708,
}

SUCCEEDED = {
    "task_id": "T-100",
    "task_status": "succeed",
    "task_status_msg": "",
    "task_info": {"external_task_id": "sb-abc-1"},
    "task_result": {
        "videos": [
            {
                "id": "v1",
                "url": "https://cdn.kling.test/v/T-100.mp4?sig=abc",
                "watermark_url": "https://cdn.kling.test/v/T-100-wm.mp4",
                "duration": "5.04",
            }
        ]
    },
    "watermark_info": {"enabled": False},
    "final_unit_deduction": "4",
    "created_at": 1722769557708,
    "updated_at": 1722769599999,
}


def client(script: Script, auth: httpx.Auth | None = None) -> KlingClient:
    auth = ApiKeyAuth(API_KEY) if auth is None else auth
    return KlingClient(BASE, auth, transport=httpx.MockTransport(script))


async def call(kling: KlingClient, op: Callable[[KlingClient], Awaitable[T]]) -> T:
    async with kling:
        return await op(kling)


def fails(kling: KlingClient, op: Callable[[KlingClient], Awaitable[object]]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        run(call(kling, op))
    return caught.value


# --- parsing -------------------------------------------------------------------------------


def test_create_task_posts_json_and_parses_the_task() -> None:
    script = Script(envelope(data=CREATED))
    payload = {"model_name": "kling-v3-omni", "prompt": "a harbour", "duration": "5"}
    info = run(call(client(script), lambda k: k.create_task(payload)))
    assert info == TaskInfo("T-100", "submitted", None, "sb-abc-1", None, None, None)
    (request,) = script.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/v1/videos/omni-video")
    assert json.loads(request.content) == payload
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


def test_get_task_parses_the_result() -> None:
    script = Script(envelope(data=SUCCEEDED))
    info = run(call(client(script), lambda k: k.get_task("T-100")))
    assert info == TaskInfo(
        task_id="T-100",
        status="succeed",
        status_msg=None,  # empty means absent
        external_task_id="sb-abc-1",
        video_url="https://cdn.kling.test/v/T-100.mp4?sig=abc",
        video_duration=5.04,
        units_charged="4",
    )
    assert script.requests[0].method == "GET"
    assert script.requests[0].url.path == "/v1/videos/omni-video/T-100"


def test_failed_task_keeps_the_reason() -> None:
    failed = {"task_id": "T-9", "task_status": "failed", "task_status_msg": "risk control"}
    info = run(call(client(Script(envelope(data=failed))), lambda k: k.get_task("T-9")))
    assert (info.status, info.status_msg, info.video_url, info.units_charged) == (
        "failed",
        "risk control",
        None,
        None,
    )


def test_ids_are_quoted_into_one_path_segment() -> None:
    script = Script(envelope(data=CREATED))
    run(call(client(script), lambda k: k.get_task("../a b")))
    assert script.requests[0].url.raw_path == b"/v1/videos/omni-video/..%2Fa%20b"


def test_malformed_success_is_an_api_status_error() -> None:
    exc = fails(
        client(Script(envelope(data={"task_status": "submitted"}))), lambda k: k.get_task("T")
    )
    assert isinstance(exc, ApiStatusError)
    assert (exc.code, exc.http_status, exc.request_id) == (None, 200, "req-1")
    assert "task_id" in str(exc)


def test_find_task_by_external_id() -> None:
    script = Script(envelope(data=CREATED))
    info = run(call(client(script), lambda k: k.find_task("sb-abc-1")))
    assert info is not None and info.task_id == "T-100"
    assert script.requests[0].url.path == "/v1/videos/omni-video/sb-abc-1"


@pytest.mark.parametrize(
    "answer",
    [
        envelope(1203, status=404, message="resource not exist"),
        envelope(1203, status=400, message="task not found"),  # the code decides
        httpx.Response(404, text="Not Found"),
    ],
)
def test_find_task_not_found_is_none(answer: httpx.Response) -> None:
    assert run(call(client(Script(answer)), lambda k: k.find_task("sb-x"))) is None


@pytest.mark.parametrize(
    "answer",
    [
        envelope(1202, status=404, message="invalid method"),  # 404, but not "no such task"
        envelope(5000, status=500, message="internal error"),
        html(502),
    ],
)
def test_find_task_other_errors_raise(answer: httpx.Response) -> None:
    exc = fails(client(Script(answer)), lambda k: k.find_task("sb-x"))
    assert isinstance(exc, ApiStatusError)


def test_find_task_answered_with_another_task_raises() -> None:
    other = dict(CREATED, task_info={"external_task_id": "sb-other"})
    exc = fails(client(Script(envelope(data=other))), lambda k: k.find_task("sb-abc-1"))
    assert isinstance(exc, ApiStatusError) and "sb-other" in str(exc)


# --- the element registry (kling-api.md §7.1) ---------------------------------------------

ELEMENTS = "/v1/general/advanced-custom-elements"
ELEMENT_CREATED = {
    "task_id": "E-7",
    "task_status": "submitted",
    "task_info": {"external_task_id": "sb-el-keeper-1"},
    "created_at": 1722769557708,
    "updated_at": 1722769557708,
}


def element_done(element_id: object) -> dict[str, Any]:
    element = {
        "element_id": element_id,
        "element_name": "keeper",
        "element_description": "the keeper",
        "reference_type": "image_refer",
        "element_image_list": {
            "frontal_image": "https://cdn.kling.test/e/front.png",
            "refer_images": [{"image_url": "https://cdn.kling.test/e/side.png"}],
        },
        "tag_list": [],
        "owned_by": "user",
        "status": "succeed",
    }
    return dict(
        ELEMENT_CREATED,
        task_status="succeed",
        task_status_msg="",
        task_result={"elements": [element]},
    )


def test_create_element_posts_json_and_parses_the_task() -> None:
    script = Script(envelope(data=ELEMENT_CREATED))
    body = {"element_name": "keeper", "reference_type": "image_refer"}
    info = run(call(client(script), lambda k: k.create_element(body)))
    assert info == ElementTaskInfo("E-7", "submitted", None, "sb-el-keeper-1", None)
    (request,) = script.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}{ELEMENTS}")
    assert json.loads(request.content) == body
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize("element_id", [829301938475, "829301938475"])
def test_get_element_task_reads_the_element_id(element_id: object) -> None:
    script = Script(envelope(data=element_done(element_id)))
    info = run(call(client(script), lambda k: k.get_element_task("E-7")))
    assert info == ElementTaskInfo("E-7", "succeed", None, "sb-el-keeper-1", 829301938475)
    assert script.requests[0].method == "GET"
    assert script.requests[0].url.raw_path == f"{ELEMENTS}/E-7".encode()


def test_failed_element_keeps_the_reason() -> None:
    failed = {"task_id": 42, "task_status": "failed", "task_status_msg": "risk control"}
    info = run(call(client(Script(envelope(data=failed))), lambda k: k.get_element_task("42")))
    assert info == ElementTaskInfo("42", "failed", "risk control", None, None)


@pytest.mark.parametrize("element_id", [None, "", "abc", 0, True, 1.5])
def test_succeeded_element_without_an_id_is_an_api_status_error(element_id: object) -> None:
    answer = envelope(data=element_done(element_id))
    exc = fails(client(Script(answer)), lambda k: k.get_element_task("E-7"))
    assert isinstance(exc, ApiStatusError) and exc.code is None and exc.http_status == 200
    assert "element_id" in str(exc)


def test_element_task_ids_are_quoted_into_one_path_segment() -> None:
    script = Script(envelope(data=ELEMENT_CREATED), envelope(data=ELEMENT_CREATED))

    async def both(kling: KlingClient) -> None:
        await kling.get_element_task("../a b")
        await kling.find_element_task("sb-el-keeper-1")

    run(call(client(script), both))
    assert script.requests[0].url.raw_path == f"{ELEMENTS}/..%2Fa%20b".encode()
    assert script.requests[1].url.raw_path == f"{ELEMENTS}/sb-el-keeper-1".encode()


def test_find_element_task_by_external_id() -> None:
    script = Script(envelope(data=ELEMENT_CREATED))
    info = run(call(client(script), lambda k: k.find_element_task("sb-el-keeper-1")))
    assert info is not None and info.task_id == "E-7"


@pytest.mark.parametrize(
    "answer",
    [
        envelope(1203, status=404, message="resource not exist"),
        envelope(1203, status=400, message="task not found"),
        httpx.Response(404, text="Not Found"),
    ],
)
def test_find_element_task_not_found_is_none(answer: httpx.Response) -> None:
    assert run(call(client(Script(answer)), lambda k: k.find_element_task("sb-el-x"))) is None


@pytest.mark.parametrize(
    "answer",
    [
        envelope(1202, status=404, message="invalid method"),
        envelope(5000, status=500, message="internal error"),
        html(502),
        envelope(data=dict(ELEMENT_CREATED, task_info={"external_task_id": "sb-el-other"})),
    ],
)
def test_find_element_task_other_answers_raise(answer: httpx.Response) -> None:
    exc = fails(client(Script(answer)), lambda k: k.find_element_task("sb-el-keeper-1"))
    assert isinstance(exc, ApiStatusError)


@pytest.mark.parametrize(
    ("status", "code", "not_made", "transient"),
    [(400, 1201, False, False), (429, 1303, True, False), (504, 5002, False, True)],
)
def test_element_calls_map_errors_like_video_calls(
    status: int, code: int, not_made: bool, transient: bool
) -> None:
    answer = envelope(code, status=status, message=f"kling says {code}", request_id="req-9")
    exc = fails(client(Script(answer)), lambda k: k.create_element({"element_name": "k"}))
    assert type(exc) is ApiStatusError
    assert (exc.code, exc.http_status, exc.request_id) == (code, status, "req-9")
    assert (exc.create_not_made, exc.transient) == (not_made, transient)
    assert f"POST {ELEMENTS}: Kling refused: kling says {code}" in str(exc)


def test_element_transport_errors_are_transport_failures() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    for op in (
        lambda k: k.create_element({"element_name": "k"}),
        lambda k: k.get_element_task("E-7"),
        lambda k: k.find_element_task("sb-el-keeper-1"),
    ):
        exc = fails(client(Script(boom)), op)
        assert type(exc) is TransportFailure and "ReadTimeout" in str(exc)


# --- errors --------------------------------------------------------------------------------

# (HTTP status, body code, create_not_made, transient, auth, billing)
ERROR_TABLE = [
    (401, 1000, False, False, True, False),
    (401, 1001, False, False, True, False),
    (401, 1002, False, False, True, False),
    (401, 1003, False, False, True, False),
    (401, 1004, False, False, True, False),
    (429, 1102, False, False, False, True),
    (400, 1201, False, False, False, False),
    (429, 1302, True, False, False, False),
    (429, 1303, True, False, False, False),
    (500, 5000, False, True, False, False),
    (503, 5001, False, True, False, False),
    (504, 5002, False, True, False, False),
    (200, 5002, False, True, False, False),  # the body code decides, not the status
]


@pytest.mark.parametrize(
    ("status", "code", "not_made", "transient", "auth", "billing"), ERROR_TABLE
)
def test_error_codes_map_to_properties(
    status: int, code: int, not_made: bool, transient: bool, auth: bool, billing: bool
) -> None:
    answer = envelope(code, status=status, message=f"kling says {code}", request_id="req-9")
    exc = fails(client(Script(answer)), lambda k: k.create_task({"prompt": "p"}))
    assert type(exc) is ApiStatusError
    assert (exc.code, exc.http_status, exc.request_id) == (code, status, "req-9")
    assert (exc.create_not_made, exc.transient, exc.auth, exc.billing) == (
        not_made,
        transient,
        auth,
        billing,
    )
    assert f"kling says {code}" in str(exc) and f"code {code}" in str(exc)
    assert "req-9" in str(exc)


@pytest.mark.parametrize(("status", "transient"), [(502, True), (503, True), (200, False)])
def test_non_json_answer_is_a_status_error_without_code(status: int, transient: bool) -> None:
    exc = fails(client(Script(html(status))), lambda k: k.get_task("T-1"))
    assert type(exc) is ApiStatusError
    assert (exc.code, exc.http_status, exc.request_id) == (None, status, None)
    assert (exc.transient, exc.create_not_made, exc.auth) == (transient, False, False)
    assert "text/html" in str(exc)


def test_json_without_envelope_is_a_status_error_without_code() -> None:
    answer = httpx.Response(502, json={"error": "upstream"})
    exc = fails(client(Script(answer)), lambda k: k.get_task("T-1"))
    assert isinstance(exc, ApiStatusError) and exc.code is None and exc.transient


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.WriteError(""),
    ],
)
def test_transport_errors_are_transport_failures(error: httpx.TransportError) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise error

    exc = fails(client(Script(boom)), lambda k: k.create_task({"prompt": "p"}))
    assert type(exc) is TransportFailure
    assert (exc.code, exc.http_status) == (None, None)
    assert type(error).__name__ in str(exc)
    assert isinstance(exc.__cause__, httpx.TransportError)


# --- JWT renewal ---------------------------------------------------------------------------


def jwt_client(script: Script, clock: Clock) -> KlingClient:
    return client(script, JWTAuth(ACCESS, SECRET, clock=clock))


def advancing(clock: Clock, answer: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """Answer, and let a second pass so a re-minted token differs from the first."""

    def respond(request: httpx.Request) -> httpx.Response:
        clock.now += 1
        return answer

    return respond


@pytest.mark.parametrize("code", [1004, 1003])
def test_expired_token_is_reminted_once(code: int) -> None:
    clock = Clock()
    script = Script(
        advancing(clock, envelope(code, status=401, message="token expired")),
        envelope(data=CREATED),
    )
    info = run(call(jwt_client(script, clock), lambda k: k.create_task({"prompt": "p"})))
    assert info.task_id == "T-100"
    assert len(script.requests) == 2
    first, second = script.tokens
    assert first.startswith("Bearer ey") and second.startswith("Bearer ey") and first != second
    assert script.requests[0].content == script.requests[1].content  # the same body again


def test_second_expiry_surfaces() -> None:
    clock = Clock()
    script = Script(
        advancing(clock, envelope(1004, status=401, message="token expired")),
        envelope(1004, status=401, message="token expired"),
    )
    exc = fails(jwt_client(script, clock), lambda k: k.create_task({"prompt": "p"}))
    assert isinstance(exc, ApiStatusError) and exc.code == 1004 and exc.auth
    assert len(script.requests) == 2


@pytest.mark.parametrize(
    "answer", [envelope(1002, status=401, message="invalid"), html(401), envelope(1004)]
)
def test_other_answers_are_not_reminted(answer: httpx.Response) -> None:
    script = Script(answer)
    with pytest.raises(ApiStatusError):
        run(call(jwt_client(script, Clock()), lambda k: k.get_task("T-1")))
    assert len(script.requests) == 1


def test_api_key_is_not_resent_on_expiry() -> None:
    script = Script(envelope(1004, status=401, message="expired"))
    exc = fails(client(script), lambda k: k.get_task("T-1"))
    assert exc.code == 1004 and len(script.requests) == 1


def test_token_is_reused_across_requests_until_near_expiry() -> None:
    clock = Clock(1000.0)
    script = Script(*[envelope(data=CREATED) for _ in range(3)])

    async def three_polls(kling: KlingClient) -> None:
        await kling.get_task("T-100")
        clock.now = 1000.0 + 1800 - 61
        await kling.get_task("T-100")
        clock.now = 1000.0 + 1800 - 60
        await kling.get_task("T-100")

    run(call(jwt_client(script, clock), three_polls))
    first, second, third = script.tokens
    assert first == second != third


# --- secrets -------------------------------------------------------------------------------


def echo(status: int, code: int) -> Callable[[httpx.Request], httpx.Response]:
    """A server that repeats the credentials it got back in its error message."""

    def respond(request: httpx.Request) -> httpx.Response:
        sent = request.headers.get("Authorization", "")
        return envelope(code, status=status, message=f"bad {sent} / {SECRET} / {API_KEY}")

    return respond


def echo_html(request: httpx.Request) -> httpx.Response:
    return httpx.Response(502, text=f"<p>{request.headers['Authorization']}</p>")


def echo_drop(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError(f"dropped after {request.headers['Authorization']}")


def malformed(request: httpx.Request) -> httpx.Response:
    return envelope(data={"task_id": request.headers["Authorization"]})


SECRET_PATHS: list[list[Answer]] = [
    [echo(401, 1002)],
    [echo(401, 1004), echo(401, 1004)],
    [echo(429, 1102)],
    [echo(400, 1201)],
    [echo(429, 1303)],
    [echo(500, 5000)],
    [echo_html],
    [echo_drop],
    [malformed],
]


@pytest.mark.parametrize("scheme", ["jwt", "api-key"])
@pytest.mark.parametrize("answers", SECRET_PATHS)
def test_no_error_path_shows_a_secret(
    scheme: str, answers: list[Answer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth: httpx.Auth = ApiKeyAuth(API_KEY) if scheme == "api-key" else JWTAuth(ACCESS, SECRET)
    own_secret = API_KEY if scheme == "api-key" else SECRET
    script = Script(*answers)
    kling = client(script, auth)
    exc = fails(kling, lambda k: k.create_task({"prompt": "p"}))
    tokens = [t.removeprefix("Bearer ") for t in script.tokens]
    shown = [str(exc), repr(exc), exc.message, repr(auth), str(auth), repr(kling), caplog.text]
    assert tokens and all(tokens)
    for secret in [own_secret, *tokens]:
        for text in shown:
            assert secret not in text


# --- downloads -----------------------------------------------------------------------------

CLIP_URL = "https://cdn.kling.test/v/T-100.mp4?sig=SIGNATURE"


def clip_server(body: bytes, **headers: str) -> Script:
    def respond(request: httpx.Request) -> httpx.Response:
        assert "Authorization" not in request.headers
        return httpx.Response(200, content=body, headers=headers)

    return Script(respond)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_download_writes_the_clip_with_its_digest(tmp_path: Path) -> None:
    body = bytes(range(256)) * 5000
    script = clip_server(body)
    dest = tmp_path / "renders" / "opening.mp4"
    got = run(call(client(script, JWTAuth(ACCESS, SECRET)), lambda k: k.download(CLIP_URL, dest)))
    assert got == Download(dest, hashlib.sha256(body).hexdigest(), len(body))
    assert dest.read_bytes() == body
    assert leftovers(dest.parent) == []
    (request,) = script.requests
    assert str(request.url) == CLIP_URL and "Authorization" not in request.headers


def test_download_follows_redirects_without_credentials(tmp_path: Path) -> None:
    def redirect(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://other.test/clip.mp4"})

    script = Script(redirect, clip_server(b"clip").answers[0])
    dest = tmp_path / "a.mp4"
    run(call(client(script), lambda k: k.download(CLIP_URL, dest)))
    assert dest.read_bytes() == b"clip"
    assert [r.url.host for r in script.requests] == ["cdn.kling.test", "other.test"]


def test_truncated_download_leaves_dest_untouched(tmp_path: Path) -> None:
    dest = tmp_path / "opening.mp4"
    dest.write_bytes(b"previous take")
    script = clip_server(b"x" * 500, **{"Content-Length": "1000"})
    exc = fails(client(script), lambda k: k.download(CLIP_URL, dest))
    assert type(exc) is DownloadError
    assert "500 of 1000" in str(exc) and "SIGNATURE" not in str(exc)
    assert dest.read_bytes() == b"previous take"
    assert leftovers(tmp_path) == []


def test_error_status_is_a_download_error(tmp_path: Path) -> None:
    script = Script(httpx.Response(403, text="expired link"))
    exc = fails(client(script), lambda k: k.download(CLIP_URL, tmp_path / "a.mp4"))
    assert type(exc) is DownloadError and exc.http_status == 403
    assert list(tmp_path.iterdir()) == []


def test_transport_error_mid_stream_removes_the_temp_file(tmp_path: Path) -> None:
    seen_parts: list[list[str]] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await asyncio.sleep(0)
        seen_parts.append(leftovers(tmp_path))
        raise httpx.ReadError("connection reset")

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body(), headers={"Content-Length": "5000"})

    exc = fails(client(Script(respond)), lambda k: k.download(CLIP_URL, tmp_path / "a.mp4"))
    assert type(exc) is TransportFailure
    (names,) = seen_parts
    assert len(names) == 1 and names[0].startswith(".a.mp4.") and names[0].endswith(".part")
    assert list(tmp_path.iterdir()) == []


def test_cancelled_download_removes_the_temp_file(tmp_path: Path) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await asyncio.Event().wait()  # never ends: the download is cancelled here
        yield b""

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body())

    async def cancel_midway(kling: KlingClient) -> None:
        task = asyncio.ensure_future(kling.download(CLIP_URL, tmp_path / "a.mp4"))
        while not leftovers(tmp_path):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(call(client(Script(respond)), cancel_midway))
    assert list(tmp_path.iterdir()) == []


def test_download_memory_stays_flat(tmp_path: Path) -> None:
    chunk = b"\x5a" * (1 << 20)
    total = 200

    async def body() -> AsyncIterator[bytes]:
        for _ in range(total):
            yield chunk

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body(), headers={"Content-Length": str(total << 20)})

    expected = hashlib.sha256()
    for _ in range(total):
        expected.update(chunk)
    tracemalloc.start()
    try:
        got = run(call(client(Script(respond)), lambda k: k.download(CLIP_URL, tmp_path / "b.mp4")))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (got.bytes, got.sha256) == (total << 20, expected.hexdigest())
    assert peak < 16 << 20, f"peak {peak >> 20} MiB for a {total} MiB download"
