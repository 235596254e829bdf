"""The Kling emulator: auth, body rules, timeline, concurrency, faults and real clips."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from io import BytesIO
from typing import Any, TypeVar

import av
import httpx
import jwt
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from compiler.emulator import Emulator, clips
from compiler.emulator.clips import task_cards
from compiler.emulator.rules import check_body

from .conftest import CASES

T = TypeVar("T")
ACCESS, SECRET = "ak-emulator-test", "s" * 40  # PyJWT warns about secrets under 32 bytes
ASSETS = CASES / "assets"


class FakeClock:
    """The emulator's clock; its sleep advances time instead of waiting."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def make(clock: FakeClock, **kwargs: Any) -> Emulator:
    options: dict[str, Any] = {"latency": 8.0, "concurrency": 2, "clip_max_side": 160}
    options.update(kwargs)
    return Emulator(clock=clock, sleep=clock.sleep, **options)


def run(emu: Emulator, fn: Callable[[httpx.AsyncClient], Awaitable[T]], **kwargs: Any) -> T:
    async def go() -> T:
        headers = kwargs.pop("headers", {"Authorization": "Bearer any-token"})
        async with httpx.AsyncClient(
            transport=emu.transport(), base_url="http://emulator", headers=headers, **kwargs
        ) as client:
            return await fn(client)

    return asyncio.run(go())


def post(emu: Emulator, payload: Any, **kwargs: Any) -> httpx.Response:
    return run(emu, lambda c: c.post("/v1/videos/omni-video", json=payload), **kwargs)


def get(emu: Emulator, path: str, **kwargs: Any) -> httpx.Response:
    return run(emu, lambda c: c.get(path), **kwargs)


def text_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model_name": "kling-v3-omni",
        "mode": "pro",
        "sound": "off",
        "aspect_ratio": "16:9",
        "duration": "5",
        "prompt": "A lighthouse at dusk, waves below.",
        "external_task_id": "sb-opening-1",
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def b64_image(size: tuple[int, int] = (400, 300), color: str = "red", fmt: str = "PNG") -> str:
    out = BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return base64.b64encode(out.getvalue()).decode()


def b64_file(name: str) -> str:
    return base64.b64encode((ASSETS / name).read_bytes()).decode()


def jwt_token(**claims: Any) -> str:
    now = time.time()
    body = {"iss": ACCESS, "exp": now + 1800, "nbf": now - 5, **claims}
    return jwt.encode(body, claims.pop("secret", SECRET), algorithm="HS256")


# What stats() answers for sound when no voice, TTS call or sound effect was made.
NO_SOUND: dict[str, Any] = {
    "voice_creates": 0,
    "voices": {},
    "tts_calls": 0,
    "sfx_calls": 0,
    "sfx": {},
}


def videos_only(total: int, creates: dict[str, int]) -> dict[str, Any]:
    """What stats() answers when no element or image was created."""
    return {
        "total_creates": total,
        "creates": creates,
        "element_creates": 0,
        "elements": {},
        "downloads": 0,
        "image_creates": 0,
        "images": {},
        **NO_SOUND,
    }


def data(response: httpx.Response) -> Any:
    body = response.json()
    assert body["code"] == 0, body
    return body["data"]


def error(response: httpx.Response) -> tuple[int, int, str]:
    body = response.json()
    return response.status_code, body["code"], body["message"]


# -- auth -----------------------------------------------------------------------------


def test_jwt_auth() -> None:
    emu = make(FakeClock(), access_key=ACCESS, secret_key=SECRET)
    ok = post(emu, text_payload(), headers={"Authorization": f"Bearer {jwt_token()}"})
    assert ok.status_code == 200 and data(ok)["task_status"] == "submitted"
    cases = {
        "": 1001,
        "Bearer ": 1002,
        f"Bearer {jwt.encode({'iss': ACCESS}, 'x' * 40, algorithm='HS256')}": 1002,
        f"Bearer {jwt_token(iss='someone-else')}": 1002,
        f"Bearer {jwt_token(exp=time.time() - 10)}": 1004,
        f"Bearer {jwt_token(nbf=time.time() + 600)}": 1003,
        "Bearer not-a-jwt": 1002,
    }
    for header, code in cases.items():
        headers = {"Authorization": header} if header else {}
        response = get(emu, "/v1/videos/omni-video/123", headers=headers)
        assert (response.status_code, response.json()["code"]) == (401, code), header
        assert SECRET not in response.text
    assert emu.stats()["total_creates"] == 1


def test_jwt_expiry_follows_the_auth_clock() -> None:
    wall = FakeClock(now=time.time())
    emu = make(FakeClock(), access_key=ACCESS, secret_key=SECRET, auth_clock=wall)
    headers = {"Authorization": f"Bearer {jwt_token()}"}
    assert get(emu, "/v1/videos/omni-video", headers=headers).status_code == 200
    wall.now += 1801
    assert error(get(emu, "/v1/videos/omni-video", headers=headers))[:2] == (401, 1004)


def test_api_key_auth_and_open_mode() -> None:
    emu = make(FakeClock(), api_key="key-123")
    assert get(emu, "/v1/videos/omni-video", headers={"Authorization": "Bearer key-123"}).is_success
    wrong = get(emu, "/v1/videos/omni-video", headers={"Authorization": "Bearer key-456"})
    assert error(wrong)[:2] == (401, 1002)
    both = make(FakeClock(), api_key="key-123", access_key=ACCESS, secret_key=SECRET)
    for token in ("key-123", jwt_token()):
        assert get(both, "/v1/videos/omni-video", headers={"Authorization": f"Bearer {token}"})
    # No keys configured: any Bearer token, but the header is still required.
    open_emu = make(FakeClock())
    assert get(open_emu, "/v1/videos/omni-video").is_success
    assert error(get(open_emu, "/v1/videos/omni-video", headers={}))[:2] == (401, 1001)


# -- the task timeline ----------------------------------------------------------------


def test_task_moves_through_submitted_processing_succeed() -> None:
    clock = FakeClock()
    emu = make(clock, latency=8.0)
    created = data(post(emu, text_payload()))
    assert created["task_status"] == "submitted"
    assert created["task_info"] == {"external_task_id": "sb-opening-1"}
    task_id = created["task_id"]
    path = f"/v1/videos/omni-video/{task_id}"
    seen = []
    for step in (0.5, 1.0, 6.0, 0.5):  # submitted for min(1, latency/4) s, then processing
        task = data(get(emu, path))
        seen.append((task["task_status"], task["final_unit_deduction"], "task_result" in task))
        clock.now += step
    assert seen == [
        ("submitted", "0", False),
        ("submitted", "0", False),
        ("processing", "0", False),
        ("processing", "0", False),
    ]
    task = data(get(emu, path))
    assert task["task_status"] == "succeed" and task["task_status_msg"] == ""
    assert task["final_unit_deduction"] == "4"  # pro, silent: 0.8 units/s x 5 s
    [video] = task["task_result"]["videos"]
    assert video["url"] == f"http://emulator/_emulator/clips/{task_id}.mp4"
    assert video["duration"] == "5"
    assert task["updated_at"] - task["created_at"] == 8000


def test_lookup_by_external_task_id_and_unknown_ids() -> None:
    emu = make(FakeClock())
    task_id = data(post(emu, text_payload(external_task_id="sb-x-7")))["task_id"]
    found = data(get(emu, "/v1/videos/omni-video/sb-x-7"))
    assert found["task_id"] == task_id
    assert error(get(emu, "/v1/videos/omni-video/nope"))[:2] == (404, 1203)
    listed = data(get(emu, "/v1/videos/omni-video?pageNum=1&pageSize=10"))
    assert [t["task_id"] for t in listed] == [task_id]
    assert data(get(emu, "/v1/videos/omni-video?pageNum=2&pageSize=10")) == []
    assert error(get(emu, "/v1/videos/omni-video?pageSize=501"))[:2] == (400, 1201)


def test_duplicate_external_task_id_is_refused() -> None:
    emu = make(FakeClock(), concurrency=5)
    assert post(emu, text_payload()).is_success
    assert error(post(emu, text_payload())) == (
        400,
        1201,
        "external_task_id must be unique: 'sb-opening-1' exists",
    )
    # §9.13: an empty id means no id, so two of them are no duplicate.
    assert post(emu, text_payload(external_task_id="")).is_success
    assert post(emu, text_payload(external_task_id="")).is_success
    assert emu.stats() == videos_only(3, {"sb-opening-1": 1})


def test_unknown_routes_and_methods_answer_like_kling() -> None:
    emu = make(FakeClock())
    assert error(get(emu, "/v1/nothing-here"))[:2] == (404, 1203)
    deleted = run(emu, lambda c: c.delete("/v1/videos/omni-video"))
    assert error(deleted)[:2] == (404, 1202)
    assert error(post(emu, "not json at all"))[:2] == (400, 1201)
    raw = run(emu, lambda c: c.post("/v1/videos/omni-video", content=b"{oops"))
    assert error(raw)[:2] == (400, 1200)


# -- body rules -----------------------------------------------------------------------

O1 = "kling-video-o1"
FRAME = {"image_url": "https://example.com/a.png", "type": "first_frame"}
END = {"image_url": "https://example.com/b.png", "type": "end_frame"}
REF = {"image_url": "https://example.com/c.png"}
VIDEO = {"video_url": "https://example.com/v.mp4", "refer_type": "feature"}
BASE = {"video_url": "https://example.com/v.mp4", "refer_type": "base"}


def shots(*seconds: str) -> list[dict[str, Any]]:
    return [{"index": i, "prompt": f"shot {i}", "duration": s} for i, s in enumerate(seconds, 1)]


MULTI = {"multi_shot": True, "shot_type": "customize", "prompt": ""}

BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    (
        {"model_name": "kling-v3-Omni"},
        "model_name must be one of kling-video-o1, kling-v3-omni",
    ),
    ({"mode": "standard"}, "mode must be one of std, pro, 4k for kling-v3-omni"),
    ({"model_name": O1, "mode": "4k"}, "mode must be one of std, pro for kling-video-o1"),
    ({"duration": "16"}, "duration must be one of 3..15 for kling-v3-omni"),
    ({"duration": 5}, 'duration must be a string such as "5"'),
    ({"duration": "5.5"}, 'duration must be a whole number of seconds such as "5"'),
    (
        {"model_name": O1, "duration": "7"},
        "duration must be one of 5, 10 for kling-video-o1 text-to-video and first-frame-only tasks",
    ),
    (
        {"model_name": O1, "duration": "11", "image_list": [REF]},
        "duration must be one of 3..10 for kling-video-o1",
    ),
    ({"prompt": ""}, "prompt is required"),
    ({"prompt": "x" * 2501}, "prompt must be at most 2500 characters"),
    ({"aspect_ratio": None}, "aspect_ratio is required unless image_list has a first_frame"),
    ({"aspect_ratio": "4:3"}, "aspect_ratio must be one of 16:9, 9:16, 1:1"),
    ({"sound": "yes"}, "sound must be one of on, off"),
    ({"sound": "on", "video_list": [VIDEO]}, "sound must be off when video_list is provided"),
    ({"model_name": O1, "sound": "on"}, "sound must be off for kling-video-o1"),
    ({"model_name": O1, **MULTI, "multi_prompt": shots("5")}, "multi_shot is not supported"),
    ({"multi_shot": True, "prompt": ""}, "shot_type is required when multi_shot is true"),
    ({"multi_shot": "true"}, "multi_shot must be a boolean"),
    ({**MULTI}, "multi_prompt is required when shot_type is customize"),
    ({**MULTI, "multi_prompt": shots(*"1111111")}, "multi_prompt must have 1 to 6 items"),
    (
        {**MULTI, "duration": "10", "multi_prompt": shots("4", "5")},
        "multi_prompt durations add up to 9, but duration is 10",
    ),
    (
        {**MULTI, "duration": "5", "multi_prompt": shots("0", "5")},
        "multi_prompt[0].duration must be between 1 and duration (5)",
    ),
    (
        {**MULTI, "multi_prompt": [{"index": 1, "prompt": "x" * 513, "duration": "5"}]},
        "multi_prompt[0].prompt must be at most 512 characters",
    ),
    (
        {**MULTI, "multi_prompt": [{"index": 1, "prompt": "a", "duration": 5}]},
        'multi_prompt[0].duration must be a string such as "5"',
    ),
    (
        {**MULTI, "multi_prompt": [{"index": "1", "prompt": "a", "duration": "5"}]},
        "multi_prompt[0].index must be an integer counting from 1",
    ),
    (
        {**MULTI, "shot_type": "intelligence"},
        "prompt is required when shot_type is intelligence",
    ),
    ({"image_list": [END]}, "end_frame requires a first_frame in image_list"),
    ({"image_list": [FRAME, FRAME]}, "image_list may hold only one first_frame"),
    (
        {"image_list": [FRAME], "video_list": [BASE]},
        "first_frame and end_frame are not supported with video editing (refer_type base)",
    ),
    (
        {"model_name": O1, "image_list": [FRAME, REF, REF]},
        "kling-video-o1 supports no first_frame or end_frame with more than 2 images",
    ),
    (
        {"image_list": [REF] * 5, "element_list": [{"element_id": 1}] * 3},
        "image_list and element_list may hold at most 7 items in total",
    ),
    (
        {"image_list": [REF] * 3, "element_list": [{"element_id": 1}] * 2, "video_list": [VIDEO]},
        "image_list and element_list may hold at most 4 items in total with a reference video",
    ),
    (
        {"image_list": [FRAME], "element_list": [{"element_id": 1}] * 4},
        "element_list may hold at most 3 elements with a first_frame",
    ),
    (
        {"model_name": O1, "image_list": [FRAME, END], "element_list": [{"element_id": 1}]},
        "element_list is not supported with first_frame and end_frame on kling-video-o1",
    ),
    ({"video_list": [VIDEO, VIDEO]}, "video_list may hold at most 1 video"),
    ({"video_list": [{"video_url": ""}]}, "video_list[0].video_url is required"),
    (
        {"video_list": [{**VIDEO, "video_url": "file:///tmp/v.mp4"}]},
        "video_list[0].video_url must be an https URL",
    ),
    (
        {"video_list": [{**VIDEO, "refer_type": "reference"}]},
        "video_list[0].refer_type must be one of feature, base",
    ),
    (
        {"video_list": [{**VIDEO, "keep_original_sound": True}]},
        "video_list[0].keep_original_sound must be a string",
    ),
    (
        {"element_list": [{"element_id": "abc"}]},
        "element_list[0].element_id must be an integer element id",
    ),
    (
        {"element_list": [{"element_id": 0}]},
        "element_list[0].element_id must be an integer element id",
    ),
    (
        {"image_list": [{"image_url": "local:assets/coast.png@sha256:ab12"}]},
        "image_list[0].image_url must be an https URL or Base64, not a local file",
    ),
    (
        {"image_list": [{"image_url": "data:image/png;base64," + b64_image()}]},
        "image_list[0].image_url Base64 must not carry a data: prefix",
    ),
    (
        {"image_list": [{"image_url": "http://example.com/a.png"}]},
        "image_list[0].image_url must be an https URL or Base64",
    ),
    (
        {"image_list": [{"image_url": "@@not base64@@"}]},
        "image_list[0].image_url is neither an https URL nor valid Base64",
    ),
    (
        {"image_list": [{"image_url": b64_file("tiny.png")}]},
        "image_list[0].image_url image sides must be at least 300px, got 200x200",
    ),
    (
        {"image_list": [{"image_url": b64_file("tall.png")}]},
        "image_list[0].image_url image aspect ratio must be between 1:2.5 and 2.5:1, got 300x800",
    ),
    (
        {"image_list": [{"image_url": b64_file("photo.bmp")}]},
        "image_list[0].image_url image must be jpg, jpeg or png",
    ),
    (
        {"image_list": [{"image_url": b64_file("notes.png")}]},
        "image_list[0].image_url Base64 is not a readable image",
    ),
    ({"image_list": [{**REF, "type": "middle"}]}, "image_list[0].type must be one of"),
    (
        {"prompt": "Walk into <<<image_2>>>.", "image_list": [REF]},
        "<<<image_2>>> refers to no item of image_list (1 items)",
    ),
    (
        {"prompt": "Extend <<<video_1>>>."},
        "<<<video_1>>> refers to no item of video_list (0 items)",
    ),
    ({"watermark_info": {"enabled": "yes"}}, "watermark_info must be an object"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_BODIES, ids=[m for _, m in BAD_BODIES])
def test_body_rules(changes: dict[str, Any], message: str) -> None:
    emu = make(FakeClock())
    status, code, text = error(post(emu, text_payload(**changes)))
    assert (status, code) == (400, 1201)
    assert text.startswith(message), text
    assert emu.stats()["total_creates"] == 0


GOOD_BODIES: list[dict[str, Any]] = [
    {"model_name": None},  # §2.1: defaults to O1 ("5" is fine there)
    {"duration": None, "mode": None, "sound": None},
    {"callback_url": "", "video_list": [], "sound": "on"},  # §9.13: Kling's own example
    {"aspect_ratio": None, "image_list": [{"image_url": b64_image(), "type": "first_frame"}]},
    {"aspect_ratio": None, "duration": "99", "video_list": [BASE]},  # R13: duration ignored
    {"video_list": [{"video_url": "https://example.com/v.mp4"}], "aspect_ratio": None},
    {**MULTI, "duration": "15", "multi_prompt": shots("5", "5", "5"), "sound": "on"},
    {**MULTI, "shot_type": "intelligence", "prompt": "Three shots of the sea."},
    {**MULTI, "multi_prompt": shots("2", "3"), "image_list": [FRAME]},  # §11, 05/07/2026
    {"duration": "15", "video_list": [VIDEO]},  # §11, 06/17/2026: 3-15 s with a reference
    {"element_list": [{"element_id": "829301938475"}], "prompt": "<<<element_1>>> waves."},
    {"model_name": O1, "duration": "10", "image_list": [FRAME]},
    {"model_name": O1, "duration": "7", "image_list": [FRAME, END]},
    {"negative_prompt": "blur", "watermark_info": {"enabled": True}},  # unknown fields pass
]


@pytest.mark.parametrize("changes", GOOD_BODIES)
def test_bodies_within_the_rules_pass(changes: dict[str, Any]) -> None:
    emu = make(FakeClock())
    response = post(emu, text_payload(**changes))
    assert response.status_code == 200, response.text


# -- §11: the 2026 rules, on both models ------------------------------------------------

V3 = "kling-v3-omni"
INTELLIGENCE = {"multi_shot": True, "shot_type": "intelligence", "prompt": "Three shots."}
FRAMES = [FRAME, END]

# (model, changes, the message a refusal starts with, or None when the body passes)
RULES_2026: list[tuple[str, dict[str, Any], str | None]] = [
    # 05/07/2026: multi-shot may set a first frame, or first + end frames, on v3-omni.
    (V3, {**MULTI, "multi_prompt": shots("2", "3"), "image_list": [FRAME]}, None),
    (V3, {**MULTI, "multi_prompt": shots("2", "3"), "image_list": FRAMES}, None),
    (V3, {**INTELLIGENCE, "image_list": FRAMES, "aspect_ratio": None}, None),
    (V3, {**MULTI, "multi_prompt": shots("5"), "image_list": [END]}, "end_frame requires a"),
    (O1, {**MULTI, "multi_prompt": shots("2", "3"), "image_list": [FRAME]}, "multi_shot is not"),
    (O1, {**MULTI, "multi_prompt": shots("2", "3"), "image_list": FRAMES}, "multi_shot is not"),
    # 03/11/2026: shot_type intelligence: the whole description in prompt, no multi_prompt.
    (V3, {**INTELLIGENCE, "duration": "15", "sound": "on"}, None),
    (V3, {**INTELLIGENCE, "multi_prompt": []}, None),  # §9.13: empty means absent
    (V3, {**INTELLIGENCE, "prompt": ""}, "prompt is required when shot_type is intelligence"),
    (V3, {**INTELLIGENCE, "prompt": "x" * 2501}, "prompt must be at most 2500 characters"),
    (
        V3,
        {**INTELLIGENCE, "multi_prompt": shots("2", "3")},
        "multi_prompt must be left out when shot_type is intelligence",
    ),
    (O1, {**INTELLIGENCE}, "multi_shot is not supported by kling-video-o1"),
    # 06/17/2026: reference videos of 3-15 s on v3-omni; the output may last 3..15 s too.
    (V3, {"duration": "15", "video_list": [VIDEO]}, None),
    (V3, {"duration": "3", "video_list": [VIDEO]}, None),
    (V3, {"duration": "16", "video_list": [VIDEO]}, "duration must be one of 3..15"),
    (O1, {"duration": "10", "video_list": [VIDEO]}, None),
    (O1, {"duration": "15", "video_list": [VIDEO]}, "duration must be one of 3..10"),
    # 06/17/2026: a feature reference video with multi-shot requires shot_type intelligence.
    (
        V3,
        {**INTELLIGENCE, "prompt": "After <<<video_1>>>: three shots.", "video_list": [VIDEO]},
        None,
    ),
    (
        V3,
        {**MULTI, "multi_prompt": shots("2", "3"), "video_list": [VIDEO]},
        "shot_type must be intelligence when multi_shot is true with a feature reference video",
    ),
    (
        V3,
        {**MULTI, "video_list": [VIDEO]},  # no multi_prompt either: the shot_type is named first
        "shot_type must be intelligence when multi_shot is true with a feature reference video",
    ),
    (O1, {**INTELLIGENCE, "video_list": [VIDEO]}, "multi_shot is not supported by kling-video-o1"),
    # 04/23/2026 (06/17/2026 for reference videos): mode 4k on v3-omni, for every function.
    (V3, {"mode": "4k"}, None),
    (V3, {"mode": "4k", "image_list": [FRAME], "aspect_ratio": None}, None),
    (V3, {"mode": "4k", "image_list": FRAMES, "element_list": [{"element_id": 7}]}, None),
    (V3, {"mode": "4k", **MULTI, "multi_prompt": shots("2", "3"), "sound": "on"}, None),
    (V3, {"mode": "4k", **INTELLIGENCE, "image_list": [FRAME]}, None),
    (V3, {"mode": "4k", "video_list": [VIDEO]}, None),
    (V3, {"mode": "4k", "video_list": [BASE], "aspect_ratio": None}, None),
    (O1, {"mode": "4k"}, "mode must be one of std, pro for kling-video-o1"),
    (O1, {"mode": "4k", "image_list": [FRAME]}, "mode must be one of std, pro for kling-video-o1"),
    (O1, {"mode": "4k", "video_list": [VIDEO]}, "mode must be one of std, pro for kling-video-o1"),
]


@pytest.mark.parametrize(
    ("model", "changes", "message"),
    RULES_2026,
    ids=[f"{model}-{message or 'passes'}-{n}" for n, (model, _, message) in enumerate(RULES_2026)],
)
def test_the_2026_rules_on_both_models(
    model: str, changes: dict[str, Any], message: str | None
) -> None:
    emu = make(FakeClock())
    response = post(emu, text_payload(model_name=model, **changes))
    if message is None:
        assert response.status_code == 200, response.text
        assert emu.stats()["total_creates"] == 1
    else:
        status, code, text = error(response)
        assert (status, code) == (400, 1201)
        assert text.startswith(message), text
        assert emu.stats()["total_creates"] == 0


def test_a_multi_shot_clip_opens_on_its_first_frame_and_closes_on_its_end_frame() -> None:
    clock = FakeClock()
    emu = make(clock, fps=12)
    first = {"image_url": b64_image((480, 480), "blue"), "type": "first_frame"}
    end = {"image_url": b64_image((480, 480), "lime"), "type": "end_frame"}
    changes = {**MULTI, "duration": "4", "multi_prompt": shots("1", "3"), "aspect_ratio": None}
    task = finished(emu, clock, text_payload(image_list=[first, end], **changes))
    clip = download(emu, task["task_result"]["videos"][0]["url"]).content
    with av.open(BytesIO(clip)) as container:
        frames = [frame.to_image() for frame in container.decode(video=0)]
    assert len(frames) == 4 * 12 and frames[0].size == (160, 160)
    assert frames[0].getpixel((80, 80))[2] > 200  # type: ignore[index]
    assert frames[-1].getpixel((80, 80))[1] > 200  # type: ignore[index]


def _golden_payloads() -> list[Any]:
    found = []
    for path in sorted((CASES / "valid").glob("*.json")):
        for task in json.loads(path.read_text())["tasks"]:
            found.append(pytest.param(task["payload"], id=f"{path.stem}/{task['scene']}"))
    return found


@pytest.mark.parametrize("payload", _golden_payloads())
def test_the_compilers_valid_payloads_pass(payload: dict[str, Any]) -> None:
    # The executor swaps each `local:<path>@sha256:...` for the file's bare Base64.
    def swap(match: re.Match[str]) -> str:
        return base64.b64encode((CASES / "valid" / match.group(1)).read_bytes()).decode()

    text = re.sub(r"local:([^@\"]+)@sha256:[0-9a-f]+", swap, json.dumps(payload))
    # ... each `generated:NAME@sha256:...` for the PNG Omni-Image made, `after:SCENE` for
    # that scene's last frame (stand-ins here),
    text = re.sub(r"generated:[^@\"]+@sha256:[0-9a-f]+", b64_image((1024, 576)), text)
    text = re.sub(r"\"after:[a-z0-9][a-z0-9_-]*\"", f'"{b64_image((640, 360))}"', text)
    # ... and each `element:NAME@sha256:...` for the id of the element it made (a stand-in).
    text = re.sub(r"\"element:[^@\"]+@sha256:[0-9a-f]+\"", "829301938475", text)
    response = post(make(FakeClock()), json.loads(text))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("changes", "units"),
    [
        ({}, "4"),
        ({"mode": "std"}, "3"),
        ({"mode": "std", "sound": "on"}, "4"),
        ({"sound": "on", "duration": "15"}, "15"),
        ({"mode": "4k", "duration": "3"}, "9"),
        ({"video_list": [VIDEO]}, "6"),
        ({"video_list": [BASE], "aspect_ratio": None, "duration": None}, "6"),
        ({"model_name": O1, "mode": "std", "video_list": [VIDEO]}, "4.5"),
        ({"model_name": O1, "duration": "10"}, "8"),
        # §11, 04/23/2026: 4K bills 3 units/s flat, with sound or a reference video too.
        ({"mode": "4k"}, "15"),
        ({"mode": "4k", "sound": "on", "duration": "15"}, "45"),
        ({"mode": "4k", "video_list": [VIDEO], "duration": "10"}, "30"),
    ],
)
def test_final_unit_deduction(changes: dict[str, Any], units: str) -> None:
    clock = FakeClock()
    emu = make(clock, latency=0.0)
    task_id = data(post(emu, text_payload(**changes)))["task_id"]
    assert data(get(emu, f"/v1/videos/omni-video/{task_id}"))["final_unit_deduction"] == units


# -- concurrency ----------------------------------------------------------------------


def test_concurrency_cap_refuses_without_creating() -> None:
    clock = FakeClock()
    emu = make(clock, concurrency=2, latency=8.0)
    for n in (1, 2):
        assert post(emu, text_payload(external_task_id=f"t{n}")).is_success
    refused = post(emu, text_payload(external_task_id="t3"))
    assert error(refused) == (429, 1303, "parallel task over resource pack limit")
    assert emu.stats() == videos_only(2, {"t1": 1, "t2": 1})
    clock.now += 8.0  # both finished: their slots are free
    assert post(emu, text_payload(external_task_id="t3")).is_success
    assert emu.stats()["creates"] == {"t1": 1, "t2": 1, "t3": 1}


# -- faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("http_500", (500, 5000, "internal server error")),
        ("code_1302", (429, 1302, "request too fast, please slow down")),
        ("code_1303", (429, 1303, "parallel task over resource pack limit")),
    ],
)
def test_error_faults_create_nothing(kind: str, expected: tuple[int, int, str]) -> None:
    emu = make(FakeClock())
    emu.faults.add(kind, "create")
    assert error(post(emu, text_payload())) == expected
    assert emu.stats()["total_creates"] == 0
    assert post(emu, text_payload()).is_success  # times=1: the next one goes through


def test_drop_before_creates_nothing() -> None:
    emu = make(FakeClock())
    emu.faults.add("drop_before", "create")
    with pytest.raises(httpx.RemoteProtocolError):
        post(emu, text_payload())
    assert emu.stats()["total_creates"] == 0


def test_drop_after_creates_the_task_then_drops() -> None:
    emu = make(FakeClock())
    emu.faults.add("drop_after", "create")
    with pytest.raises(httpx.RemoteProtocolError):
        post(emu, text_payload())
    assert emu.stats() == videos_only(1, {"sb-opening-1": 1})
    assert data(get(emu, "/v1/videos/omni-video/sb-opening-1"))["task_status"] == "submitted"


def test_slow_answers_after_the_delay_on_the_emulators_clock() -> None:
    clock = FakeClock()
    emu = make(clock)
    emu.faults.add("slow", "query", delay=30.0)
    task_id = data(post(emu, text_payload()))["task_id"]
    assert clock.now == 1000.0
    task = data(get(emu, f"/v1/videos/omni-video/{task_id}"))
    assert clock.now == 1030.0 and task["task_status"] == "succeed"


def test_slow_past_the_read_timeout_is_a_timeout() -> None:
    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    emu = Emulator(clock=FakeClock(), sleep=never)
    emu.faults.add("slow", "create", delay=1.0)
    with pytest.raises(httpx.ReadTimeout):
        post(emu, text_payload(), timeout=0.01)
    assert emu.stats()["total_creates"] == 1  # a slow create did create: outcome unknown


def test_fail_task_matches_a_prompt_and_reports_its_message() -> None:
    clock = FakeClock()
    emu = make(clock, concurrency=5)
    emu.faults.add("fail_task", "create", match="storm", message="risk control: storm")
    calm = data(post(emu, text_payload(external_task_id="calm")))["task_id"]
    storm = data(post(emu, text_payload(external_task_id="storm", prompt="A storm.")))["task_id"]
    later = data(post(emu, text_payload(external_task_id="later", prompt="A storm.")))["task_id"]
    clock.now += 8.0
    failed = data(get(emu, f"/v1/videos/omni-video/{storm}"))
    assert failed["task_status"] == "failed"
    assert failed["task_status_msg"] == "risk control: storm"
    assert failed["final_unit_deduction"] == "0" and "task_result" not in failed
    for task_id in (calm, later):  # unmatched, and after the fault was used up
        assert data(get(emu, f"/v1/videos/omni-video/{task_id}"))["task_status"] == "succeed"
    assert error(get(emu, f"/_emulator/clips/{storm}.mp4"))[:2] == (404, 1203)


def test_faults_count_hits_and_respect_op() -> None:
    emu = make(FakeClock(), concurrency=9)
    emu.faults.add("http_500", "query", times=2)
    task_id = data(post(emu, text_payload()))["task_id"]  # a create is not a query
    path = f"/v1/videos/omni-video/{task_id}"
    assert [get(emu, path).status_code for _ in range(3)] == [500, 500, 200]
    emu.faults.add("code_1302", "any")
    assert error(post(emu, text_payload(external_task_id="b")))[:2] == (429, 1302)
    emu.faults.add("drop_before", "query")
    with pytest.raises(httpx.RemoteProtocolError):
        get(emu, path)
    emu.faults.add("drop_after", "query")
    with pytest.raises(httpx.RemoteProtocolError):
        get(emu, path)
    assert emu.faults.pending() == []


def test_faults_over_http() -> None:
    emu = make(FakeClock())
    fault = {"kind": "http_500", "op": "create", "times": 3, "message": "boom"}
    added = run(emu, lambda c: c.post("/_emulator/faults", json=fault))
    assert data(added)["times"] == 3
    assert [f["kind"] for f in data(get(emu, "/_emulator/faults"))] == ["http_500"]
    assert error(post(emu, text_payload())) == (500, 5000, "boom")
    bad = run(emu, lambda c: c.post("/_emulator/faults", json={"kind": "meltdown"}))
    assert error(bad)[:2] == (400, 1201)
    assert run(emu, lambda c: c.delete("/_emulator/faults")).is_success
    assert emu.faults.pending() == []
    assert get(emu, "/_emulator/stats").json() == videos_only(0, {})


def test_fault_plan_refuses_nonsense() -> None:
    emu = make(FakeClock())
    bad = (("meltdown", "any"), ("slow", "upload"), ("truncate", "create"), ("truncate", "element"))
    for args in bad:
        with pytest.raises(ValueError):
            emu.faults.add(*args)
    with pytest.raises(ValueError):
        emu.faults.add("fail_task", "query")
    with pytest.raises(ValueError):
        emu.faults.add("slow", "any", times=0)


# -- clips ----------------------------------------------------------------------------


def finished(emu: Emulator, clock: FakeClock, payload: dict[str, Any]) -> dict[str, Any]:
    task_id = data(post(emu, payload))["task_id"]
    clock.now += emu.latency
    task: dict[str, Any] = data(get(emu, f"/v1/videos/omni-video/{task_id}"))
    assert task["task_status"] == "succeed"
    return task


def download(emu: Emulator, url: str) -> httpx.Response:
    return run(emu, lambda c: c.get(url), headers={})  # result URLs take no auth


def probe(clip: bytes) -> tuple[float, int, int, bool, Image.Image]:
    with av.open(BytesIO(clip)) as container:
        video = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        frames = [frame.to_image() for frame in container.decode(video)]
        fps = float(video.average_rate)
        return len(frames) / fps, video.width, video.height, has_audio, frames[0]


@pytest.mark.parametrize(
    ("changes", "seconds", "size", "audio"),
    [
        ({"duration": "3"}, 3.0, (160, 90), False),
        ({"aspect_ratio": "9:16", "duration": "3", "mode": "std", "sound": "on"}, 3, (90, 160), 1),
        (
            {**MULTI, "duration": "4", "multi_prompt": shots("1", "3"), "aspect_ratio": "1:1"},
            4,
            0,
            0,
        ),
    ],
)
def test_downloaded_clip_is_a_real_mp4(
    changes: dict[str, Any], seconds: float, size: Any, audio: bool
) -> None:
    clock = FakeClock()
    emu = make(clock, fps=12)
    task = finished(emu, clock, text_payload(**changes))
    response = download(emu, task["task_result"]["videos"][0]["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(response.content)
    duration, width, height, has_audio, _ = probe(response.content)
    assert abs(duration - seconds) <= 1 / 12
    assert (width, height) == (size or (160, 160))
    assert has_audio == bool(audio)


def test_first_frame_sets_the_clip_shape_and_its_first_pixels() -> None:
    clock = FakeClock()
    emu = make(clock, fps=12)
    frame = {"image_url": b64_image((600, 450), "blue"), "type": "first_frame"}
    payload = text_payload(aspect_ratio=None, duration="3", image_list=[frame])
    task = finished(emu, clock, payload)
    url = task["task_result"]["videos"][0]["url"]
    clip = download(emu, url).content
    _, width, height, _, first = probe(clip)
    assert (width, height) == (160, 120)  # 4:3, from the image, not an aspect_ratio
    r, g, b = first.convert("RGB").getpixel((80, 60))  # type: ignore[misc]
    assert b > 200 and r < 60 and g < 60
    assert download(emu, url).content == clip  # encoded once, cached


def test_truncate_sends_less_than_its_content_length() -> None:
    clock = FakeClock()
    emu = make(clock, fps=12)
    task = finished(emu, clock, text_payload(duration="3"))
    emu.faults.add("truncate", "download")
    response = download(emu, task["task_result"]["videos"][0]["url"])
    assert response.status_code == 200
    assert len(response.content) < int(response.headers["content-length"])
    whole = download(emu, task["task_result"]["videos"][0]["url"])
    assert len(whole.content) == int(whole.headers["content-length"])


def test_download_drop_after_fails_mid_body() -> None:
    emu = make(FakeClock())
    emu.faults.add("drop_after", "download")
    with pytest.raises(httpx.RemoteProtocolError):
        download(emu, "/_emulator/blob?bytes=3000000")


def test_blob_streams_in_chunks_with_content_length() -> None:
    emu = make(FakeClock())

    async def read_then_stop(client: httpx.AsyncClient) -> bytes:
        async with client.stream("GET", "/_emulator/blob?bytes=50000000") as response:
            async for chunk in response.aiter_raw():
                return chunk  # closing early cancels the app's streaming cleanly
        return b""

    length, sizes = run(emu, _read_sizes)
    assert length == 2600000 and sizes == [1048576, 1048576, 502848]
    assert len(run(emu, read_then_stop)) == 1048576
    same = download(emu, "/_emulator/blob?bytes=1000&seed=7").content
    assert same == download(emu, "/_emulator/blob?bytes=1000&seed=7").content
    assert same != download(emu, "/_emulator/blob?bytes=1000&seed=8").content


async def _read_sizes(client: httpx.AsyncClient) -> tuple[int, list[int]]:
    async with client.stream("GET", "/_emulator/blob?bytes=2600000&seed=7") as response:
        sizes = [len(chunk) async for chunk in response.aiter_raw()]
        return int(response.headers["content-length"]), sizes


def test_clip_before_success_is_not_found() -> None:
    emu = make(FakeClock())
    task_id = data(post(emu, text_payload()))["task_id"]
    assert error(download(emu, f"/_emulator/clips/{task_id}.mp4"))[:2] == (404, 1203)


def test_transport_reports_app_bugs(monkeypatch: pytest.MonkeyPatch) -> None:
    emu = make(FakeClock())

    def broken(raw: Any) -> Any:
        raise RuntimeError("bug in the emulator")

    monkeypatch.setattr("compiler.emulator.app.check_body", broken)
    with pytest.raises(RuntimeError, match="bug in the emulator"):
        post(emu, text_payload())


def test_task_ids_are_not_reused_across_emulators() -> None:
    first = data(post(make(FakeClock()), text_payload()))["task_id"]
    second = data(post(make(FakeClock()), text_payload()))["task_id"]
    assert first != second and first.isdecimal()


# -- title cards ------------------------------------------------------------------------

LONG_ID = "sb-the-lighthouse-keepers-long-night-0123456789abcdef0123456789abcdef-t2"


@pytest.mark.parametrize(
    ("changes", "titles"),
    [
        ({}, ["shot 1/1"]),
        ({**MULTI, "duration": "4", "multi_prompt": shots("1", "3")}, ["shot 1/2", "shot 2/2"]),
    ],
)
def test_cards_show_the_external_task_id_verbatim(
    changes: dict[str, Any], titles: list[str]
) -> None:
    body = check_body(text_payload(external_task_id=LONG_ID, **changes))
    cards = task_cards(body)
    assert [card.title for card in cards] == titles
    assert [card.label for card in cards] == [LONG_ID] * len(titles)


def test_cards_show_no_label_without_an_external_task_id() -> None:
    image = {"image_url": "https://example.com/keeper.png"}
    payload = text_payload(external_task_id=None, prompt="See <<<image_1>>>.", image_list=[image])
    cards = task_cards(check_body(payload))
    assert [(c.title, c.label, c.text) for c in cards] == [("shot 1/1", "", "See [image 1].")]


def test_a_long_label_wraps_keeping_every_character() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (160, 90)))
    font = clips._font(12)

    lines = clips._wrap_verbatim(draw, LONG_ID, font, 140, 10)
    assert len(lines) > 1 and "".join(lines) == LONG_ID
    assert all(draw.textlength(line, font=font) <= 140 for line in lines)

    cut = clips._wrap_verbatim(draw, LONG_ID, font, 140, 2)
    assert len(cut) == 2 and cut[-1].endswith("…")
    assert LONG_ID.startswith("".join(cut)[:-1])


@pytest.mark.parametrize(("width", "height"), [(160, 90), (90, 160), (1280, 720), (720, 1280)])
def test_a_labelled_card_stays_inside_the_margins(width: int, height: int) -> None:
    card = clips.Card(5.0, "shot 1/3", "A lighthouse at dusk. " * 60, LONG_ID * 3)

    image = clips._render_card(card, width, height)

    margin = max(2, round(min(width, height) * 0.07)) // 2  # glyphs may reach past a bit
    background = Image.new("RGB", image.size, clips._BACKGROUND)
    for box in [
        (0, 0, width, margin),
        (0, height - margin, width, height),
        (0, 0, margin, height),
        (width - margin, 0, width, height),
    ]:
        assert ImageChops.difference(image.crop(box), background.crop(box)).getbbox() is None
    unlabelled = clips._render_card(replace(card, label=""), width, height)
    assert ImageChops.difference(image, unlabelled).getbbox() is not None


def test_a_clip_shows_its_external_task_id_and_nothing_in_its_place() -> None:
    clock = FakeClock()
    emu = make(clock, fps=12, latency=1.0)

    def first_frame(**changes: Any) -> Image.Image:
        task = finished(emu, clock, text_payload(duration="3", **changes))
        return probe(download(emu, task["task_result"]["videos"][0]["url"]).content)[4]

    labelled = first_frame(external_task_id=LONG_ID)
    bare = [first_frame(external_task_id=None) for _ in range(2)]
    # Two tasks without an id look alike (no task id stands in); an id adds its text.
    assert max(ImageStat.Stat(ImageChops.difference(*bare)).extrema[0]) <= 8
    assert max(ImageStat.Stat(ImageChops.difference(labelled, bare[0])).extrema[0]) > 64
