"""The element registry (kling-api.md §7.1): the emulator's endpoints and the client's calls
against them. In-process, on the emulator's fake clock: no sockets, no sleeping."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from compiler.auth import ApiKeyAuth
from compiler.client import ElementTaskInfo, KlingClient
from compiler.emulator import Emulator
from compiler.errors import ApiStatusError, TransportFailure

from .test_emulator import (
    ACCESS,
    NO_SOUND,
    SECRET,
    FakeClock,
    b64_image,
    data,
    error,
    jwt_token,
    run,
    text_payload,
)

T = TypeVar("T")
PATH = "/v1/general/advanced-custom-elements"
FRONT = b64_image((400, 600), "red")
SIDE = b64_image((400, 600), "blue", "JPEG")
BACK = b64_image((600, 400), "green")


def make(clock: FakeClock, **kwargs: Any) -> Emulator:
    options: dict[str, Any] = {"latency": 8.0, "element_latency": 4.0, "concurrency": 2}
    options.update(kwargs)
    return Emulator(clock=clock, sleep=clock.sleep, **options)


def element_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "element_name": "keeper",
        "element_description": "the keeper, yellow raincoat",
        "reference_type": "image_refer",
        "element_image_list": {"frontal_image": FRONT, "refer_images": [{"image_url": SIDE}]},
        "external_task_id": "sb-el-keeper-1",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def images(frontal: Any = FRONT, *refers: Any) -> dict[str, Any]:
    return {"frontal_image": frontal, "refer_images": [{"image_url": r} for r in refers]}


def create(emu: Emulator, body: Any, **kwargs: Any) -> httpx.Response:
    return run(emu, lambda c: c.post(PATH, json=body), **kwargs)


def get(emu: Emulator, path: str, **kwargs: Any) -> httpx.Response:
    return run(emu, lambda c: c.get(path), **kwargs)


def post_video(emu: Emulator, payload: dict[str, Any]) -> httpx.Response:
    return run(emu, lambda c: c.post("/v1/videos/omni-video", json=payload))


# -- the emulator: create, timeline, result --------------------------------------------


def test_element_moves_through_submitted_processing_succeed() -> None:
    clock = FakeClock()
    emu = make(clock, element_latency=4.0)
    created = data(create(emu, element_body()))
    assert set(created) == {"task_id", "task_status", "task_info", "created_at", "updated_at"}
    assert created["task_status"] == "submitted"
    assert created["task_info"] == {"external_task_id": "sb-el-keeper-1"}
    assert created["created_at"] == created["updated_at"]
    path = f"{PATH}/{created['task_id']}"
    seen = []
    for step in (0.5, 0.5, 2.5, 0.5):  # submitted for min(1, latency / 4) s
        task = data(get(emu, path))
        seen.append((task["task_status"], "task_result" in task))
        clock.now += step
    assert seen == [
        ("submitted", False),
        ("submitted", False),
        ("processing", False),
        ("processing", False),
    ]
    task = data(get(emu, path))
    assert task["task_status"] == "succeed" and task["task_status_msg"] == ""
    assert task["task_info"] == {"external_task_id": "sb-el-keeper-1"}
    assert task["updated_at"] - task["created_at"] == 4000
    [element] = task["task_result"]["elements"]
    element_id = element.pop("element_id")
    assert isinstance(element_id, int) and element_id > 0
    base = f"http://emulator/_emulator/element-images/{created['task_id']}"
    assert element == {
        "element_name": "keeper",
        "element_description": "the keeper, yellow raincoat",
        "reference_type": "image_refer",
        "element_image_list": {
            "frontal_image": f"{base}/0",
            "refer_images": [{"image_url": f"{base}/1"}],
        },
        "tag_list": [],
        "owned_by": "user",
        "status": "succeed",
    }


def test_element_latency_defaults_to_one_second_and_leaves_video_latency_alone() -> None:
    clock = FakeClock()
    emu = Emulator(clock=clock, sleep=clock.sleep, latency=8.0)
    assert emu.element_latency == 1.0
    task_id = data(create(emu, element_body()))["task_id"]
    clock.now += 0.99
    assert data(get(emu, f"{PATH}/{task_id}"))["task_status"] == "processing"
    clock.now += 0.01
    assert data(get(emu, f"{PATH}/{task_id}"))["task_status"] == "succeed"


def test_element_images_are_served_back_without_auth() -> None:
    clock = FakeClock()
    emu = make(clock, element_latency=0.0)
    body = element_body(
        element_image_list=images(FRONT, SIDE, "https://example.com/back.png"),
        tag_list=[{"tag_id": "o_102"}],
    )
    task = data(get(emu, f"{PATH}/{data(create(emu, body))['task_id']}"))
    [element] = task["task_result"]["elements"]
    frontal = element["element_image_list"]["frontal_image"]
    refers = [r["image_url"] for r in element["element_image_list"]["refer_images"]]
    assert refers[1] == "https://example.com/back.png"  # a URL comes back as sent
    assert element["tag_list"] == [{"tag_id": "o_102"}]
    served = get(emu, frontal, headers={})
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert served.content == base64.b64decode(FRONT)
    side = get(emu, refers[0], headers={})
    assert side.headers["content-type"] == "image/jpeg"
    assert side.content == base64.b64decode(SIDE)
    missing = get(emu, frontal[:-1] + "2", headers={})  # image 2 was a URL: nothing to serve
    assert error(missing)[:2] == (404, 1203)


def test_video_refer_element() -> None:
    clock = FakeClock()
    emu = make(clock, element_latency=0.0)
    video = {"refer_videos": [{"video_url": "https://example.com/keeper.mp4"}]}
    body = element_body(
        reference_type="video_refer",
        element_image_list=None,
        element_video_list=video,
        element_voice_id="uk_man2",  # a preset voice (§11.2)
    )
    task = data(get(emu, f"{PATH}/{data(create(emu, body))['task_id']}"))
    [element] = task["task_result"]["elements"]
    assert element["reference_type"] == "video_refer"
    assert element["element_video_list"] == video
    assert element["element_voice_info"] == {
        "voice_id": "uk_man2",
        "voice_name": "Rock",
        "trial_url": "http://emulator/_emulator/voices/uk_man2.mp3",
        "owned_by": "kling",
    }
    assert "element_image_list" not in element


def test_element_endpoints_take_the_same_auth() -> None:
    emu = make(FakeClock(), access_key=ACCESS, secret_key=SECRET)
    ok = create(emu, element_body(), headers={"Authorization": f"Bearer {jwt_token()}"})
    assert ok.status_code == 200
    assert error(create(emu, element_body(), headers={}))[:2] == (401, 1001)
    expired = {"Authorization": f"Bearer {jwt_token(exp=1)}"}
    assert error(get(emu, f"{PATH}/sb-el-keeper-1", headers=expired))[:2] == (401, 1004)
    wrong = {"Authorization": "Bearer not-a-jwt"}
    assert error(get(emu, PATH, headers=wrong))[:2] == (401, 1002)
    assert emu.stats()["element_creates"] == 1


# -- the emulator: body rules -----------------------------------------------------------

BAD_ELEMENTS: list[tuple[Any, str]] = [
    ("not an object", "request body must be a JSON object"),
    ({"element_name": None}, "element_name is required"),
    ({"element_name": ""}, "element_name is required"),
    ({"element_name": 7}, "element_name must be a string"),
    ({"element_name": "k" * 21}, "element_name must be at most 20 characters"),
    ({"element_description": None}, "element_description is required"),
    (
        {"element_description": "d" * 101},
        "element_description must be at most 100 characters",
    ),
    ({"reference_type": None}, "reference_type is required"),
    (
        {"reference_type": "image"},
        "reference_type must be one of image_refer, video_refer",
    ),
    (
        {"element_image_list": None},
        "element_image_list is required when reference_type is image_refer",
    ),
    (
        {"element_image_list": [FRONT, SIDE]},
        "element_image_list must be an object with frontal_image and refer_images",
    ),
    (
        {"element_image_list": {"refer_images": [{"image_url": SIDE}]}},
        "element_image_list.frontal_image is required",
    ),
    (
        {"element_image_list": {"frontal_image": FRONT}},
        "element_image_list.refer_images is required (1 to 3 images)",
    ),
    (
        {"element_image_list": {"frontal_image": FRONT, "refer_images": []}},
        "element_image_list.refer_images is required (1 to 3 images)",
    ),
    (
        {"element_image_list": images(FRONT, SIDE, BACK, SIDE, BACK)},
        "element_image_list.refer_images must have 1 to 3 items",
    ),
    (
        {"element_image_list": {"frontal_image": FRONT, "refer_images": [SIDE]}},
        "element_image_list.refer_images must be an array of objects",
    ),
    (
        {"element_image_list": {"frontal_image": FRONT, "refer_images": [{"url": SIDE}]}},
        "element_image_list.refer_images[0].image_url is required",
    ),
    (
        {"element_image_list": images(FRONT, SIDE, FRONT)},
        "element_image_list.refer_images[1].image_url must differ from frontal_image",
    ),
    (
        # The same picture, wrapped differently, is still the same picture.
        {"element_image_list": images(FRONT, FRONT[:40] + "\n" + FRONT[40:])},
        "element_image_list.refer_images[0].image_url must differ from frontal_image",
    ),
    (
        {"element_image_list": images("https://example.com/a.png", "https://example.com/a.png")},
        "element_image_list.refer_images[0].image_url must differ from frontal_image",
    ),
    (
        {"element_image_list": images(b64_image((200, 400)), SIDE)},
        "element_image_list.frontal_image image sides must be at least 300px, got 200x400",
    ),
    (
        {"element_image_list": images(FRONT, b64_image((300, 800)))},
        "element_image_list.refer_images[0].image_url image aspect ratio must be between "
        "1:2.5 and 2.5:1, got 300x800",
    ),
    (
        {"element_image_list": images(FRONT, b64_image((400, 400), fmt="BMP"))},
        "element_image_list.refer_images[0].image_url image must be jpg, jpeg or png",
    ),
    (
        {"element_image_list": images(base64.b64encode(b"not an image").decode(), SIDE)},
        "element_image_list.frontal_image Base64 is not a readable image",
    ),
    (
        {"element_image_list": images("@@not base64@@", SIDE)},
        "element_image_list.frontal_image is neither an https URL nor valid Base64",
    ),
    (
        {"element_image_list": images("data:image/png;base64," + FRONT, SIDE)},
        "element_image_list.frontal_image Base64 must not carry a data: prefix",
    ),
    (
        {"element_image_list": images(FRONT, "http://example.com/side.png")},
        "element_image_list.refer_images[0].image_url must be an https URL or Base64",
    ),
    (
        {"element_image_list": images("local:assets/keeper.png@sha256:ab12", SIDE)},
        "element_image_list.frontal_image must be an https URL or Base64, not a local file",
    ),
    (
        {"reference_type": "video_refer"},
        "element_video_list is required when reference_type is video_refer",
    ),
    (
        {"reference_type": "video_refer", "element_video_list": {"refer_videos": []}},
        "element_video_list.refer_videos must hold exactly 1 video",
    ),
    (
        {
            "reference_type": "video_refer",
            "element_video_list": {"refer_videos": [{"video_url": "ftp://example.com/v.mp4"}]},
        },
        "element_video_list.refer_videos[0].video_url must be an https URL",
    ),
    (
        {"tag_list": [{"tag_id": "o_109"}]},
        "tag_list[0].tag_id must be one of o_101, o_102, o_103, o_104, o_105, o_106, o_107, o_108",
    ),
    ({"external_task_id": 12}, "external_task_id must be a string"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_ELEMENTS, ids=[m for _, m in BAD_ELEMENTS])
def test_element_body_rules(changes: Any, message: str) -> None:
    emu = make(FakeClock())
    body = element_body(**changes) if isinstance(changes, dict) else changes
    assert error(create(emu, body)) == (400, 1201, message)
    assert emu.stats()["element_creates"] == 0


def test_an_oversized_image_is_refused() -> None:
    emu = make(FakeClock())
    big = base64.b64encode(b"\x89PNG" + bytes(10 * 1024 * 1024)).decode()
    body = element_body(element_image_list=images(FRONT, big))
    assert error(create(emu, body)) == (
        400,
        1201,
        "element_image_list.refer_images[0].image_url image must be at most 10MB",
    )


def test_a_body_that_is_not_json_is_1200() -> None:
    emu = make(FakeClock())
    raw = run(emu, lambda c: c.post(PATH, content=b"{oops"))
    assert error(raw) == (400, 1200, "request body must be JSON")


GOOD_ELEMENTS: list[dict[str, Any]] = [
    {"element_name": "k" * 20, "element_description": "d" * 100},
    {"element_image_list": images(FRONT, SIDE, BACK, b64_image((500, 500), "white"))},
    {"element_image_list": images("https://example.com/f.png", "https://example.com/s.png")},
    {"tag_list": [{"tag_id": "o_101"}, {"tag_id": "o_108"}], "callback_url": ""},
    {"external_task_id": "", "tag_list": [], "element_video_list": None},  # §9.13: absent
    {"element_voice_id": "genshin_vindi2"},  # a preset: any image element may bind it here
]


@pytest.mark.parametrize("changes", GOOD_ELEMENTS)
def test_element_bodies_within_the_rules_pass(changes: dict[str, Any]) -> None:
    response = create(make(FakeClock()), element_body(**changes))
    assert response.status_code == 200, response.text


# -- the emulator: ids, lookup, list, stats ---------------------------------------------


def test_duplicate_external_task_id_is_refused() -> None:
    emu = make(FakeClock())
    assert create(emu, element_body()).is_success
    assert error(create(emu, element_body())) == (
        400,
        1201,
        "external_task_id must be unique: 'sb-el-keeper-1' exists",
    )
    # Video tasks keep their own namespace: the same id there is no duplicate.
    video = post_video(emu, text_payload(external_task_id="sb-el-keeper-1"))
    assert data(video)["task_status"] == "submitted"
    # §9.13: an empty id means no id, so two of them are no duplicate.
    assert create(emu, element_body(external_task_id="")).is_success
    assert create(emu, element_body(external_task_id="")).is_success
    assert emu.stats() == {
        "total_creates": 1,
        "creates": {"sb-el-keeper-1": 1},
        "element_creates": 3,
        "elements": {"sb-el-keeper-1": 1, "keeper": 2},
        "downloads": 0,
        "image_creates": 0,
        "images": {},
        **NO_SOUND,
    }


def test_stats_count_element_creates_apart_from_video_creates() -> None:
    emu = make(FakeClock())
    for name, ext in (("keeper", "e-1"), ("boat", "e-2"), ("gull", None)):
        assert create(emu, element_body(element_name=name, external_task_id=ext)).is_success
    assert not create(emu, element_body(element_name="k" * 21)).is_success  # refused: none
    stats = get(emu, "/_emulator/stats").json()
    assert (
        stats
        == emu.stats()
        == {
            "total_creates": 0,
            "creates": {},
            "element_creates": 3,
            "elements": {"e-1": 1, "e-2": 1, "gull": 1},
            "downloads": 0,
            "image_creates": 0,
            "images": {},
            **NO_SOUND,
        }
    )


def test_lookup_by_external_task_id_list_and_unknown_ids() -> None:
    clock = FakeClock()
    emu = make(clock)
    first = data(create(emu, element_body(external_task_id="el-a")))["task_id"]
    clock.now += 1.0
    second = data(create(emu, element_body(external_task_id="el-b")))["task_id"]
    assert data(get(emu, f"{PATH}/el-a"))["task_id"] == first
    assert data(get(emu, f"{PATH}/{second}"))["task_info"] == {"external_task_id": "el-b"}
    assert error(get(emu, f"{PATH}/nope")) == (404, 1203, "task not found: nope")
    # The video endpoint knows nothing of element tasks, and the other way round.
    assert error(get(emu, f"/v1/videos/omni-video/{first}"))[:2] == (404, 1203)
    listed = data(get(emu, f"{PATH}?pageNum=1&pageSize=10"))
    assert [t["task_id"] for t in listed] == [second, first]  # newest first
    assert [t["task_id"] for t in data(get(emu, f"{PATH}?pageNum=2&pageSize=1"))] == [first]
    assert data(get(emu, f"{PATH}?pageNum=3&pageSize=1")) == []
    assert error(get(emu, f"{PATH}?pageSize=0"))[:2] == (400, 1201)
    assert data(get(emu, "/v1/videos/omni-video")) == []


def test_element_tasks_hold_no_video_slot() -> None:
    clock = FakeClock()
    emu = make(clock, concurrency=1, element_latency=60.0)
    for n in range(3):
        assert create(emu, element_body(external_task_id=f"el-{n}")).is_success
    video = post_video(emu, text_payload())
    assert data(video)["task_status"] == "submitted"
    # The one video slot is taken now; elements are still welcome.
    assert create(emu, element_body(external_task_id="el-3")).is_success
    second = text_payload(external_task_id="sb-second")
    refused = post_video(emu, second)
    assert error(refused)[:2] == (429, 1303)


def test_video_tasks_take_the_emulators_elements_and_any_positive_id() -> None:
    clock = FakeClock()
    emu = make(clock, element_latency=0.0, concurrency=5)
    task_id = data(create(emu, element_body()))["task_id"]
    [element] = data(get(emu, f"{PATH}/{task_id}"))["task_result"]["elements"]
    for n, element_id in enumerate((element["element_id"], 829301938475, "829301938476")):
        payload = text_payload(
            external_task_id=f"sb-uses-{n}",
            element_list=[{"element_id": element_id}],
            prompt="<<<element_1>>> lights the lamp.",
        )
        response = post_video(emu, payload)
        assert response.status_code == 200, response.text
    for bad in (0, -3, "0", True, 1.5):
        payload = text_payload(external_task_id=None, element_list=[{"element_id": bad}])
        response = post_video(emu, payload)
        assert error(response) == (
            400,
            1201,
            "element_list[0].element_id must be an integer element id",
        )


def test_element_ids_are_unique() -> None:
    clock = FakeClock()
    emu = make(clock, element_latency=0.0)
    ids = set()
    for n in range(20):
        task_id = data(create(emu, element_body(external_task_id=f"el-{n}")))["task_id"]
        [element] = data(get(emu, f"{PATH}/{task_id}"))["task_result"]["elements"]
        ids.add(element["element_id"])
    assert len(ids) == 20 and all(0 < i < 2**53 for i in ids)


# -- the emulator: faults on op "element" ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("http_500", (500, 5000, "internal server error")),
        ("code_1302", (429, 1302, "request too fast, please slow down")),
        ("code_1303", (429, 1303, "parallel task over resource pack limit")),
    ],
)
def test_error_faults_on_element_creates_create_nothing(
    kind: str, expected: tuple[int, int, str]
) -> None:
    emu = make(FakeClock())
    emu.faults.add(kind, "element")
    assert error(create(emu, element_body())) == expected
    assert emu.stats()["element_creates"] == 0
    assert create(emu, element_body()).is_success  # times=1: the next one goes through


def test_element_faults_leave_video_requests_alone_and_the_other_way_round() -> None:
    emu = make(FakeClock())
    emu.faults.add("http_500", "element", times=5)
    video = post_video(emu, text_payload())
    assert video.status_code == 200
    assert get(emu, "/v1/videos/omni-video/sb-opening-1").status_code == 200
    emu.faults.clear()
    emu.faults.add("http_500", "create")
    emu.faults.add("http_500", "query")
    assert create(emu, element_body()).status_code == 200
    assert get(emu, f"{PATH}/sb-el-keeper-1").status_code == 200
    assert len(emu.faults.pending()) == 2
    emu.faults.clear()
    emu.faults.add("code_1302", "any")  # any means any
    assert error(get(emu, f"{PATH}/sb-el-keeper-1"))[:2] == (429, 1302)


def test_drop_before_creates_nothing_drop_after_creates() -> None:
    emu = make(FakeClock())
    emu.faults.add("drop_before", "element")
    with pytest.raises(httpx.RemoteProtocolError):
        create(emu, element_body())
    assert emu.stats()["element_creates"] == 0
    emu.faults.add("drop_after", "element")
    with pytest.raises(httpx.RemoteProtocolError):
        create(emu, element_body())
    assert emu.stats()["elements"] == {"sb-el-keeper-1": 1}
    assert data(get(emu, f"{PATH}/sb-el-keeper-1"))["task_status"] == "submitted"


def test_query_faults_hit_element_queries_and_lists() -> None:
    emu = make(FakeClock())
    task_id = data(create(emu, element_body()))["task_id"]
    emu.faults.add("http_500", "element", times=2, match=task_id)
    path = f"{PATH}/{task_id}"
    assert [get(emu, path).status_code for _ in range(3)] == [500, 500, 200]
    emu.faults.add("drop_after", "element")
    with pytest.raises(httpx.RemoteProtocolError):
        get(emu, PATH)
    emu.faults.add("drop_before", "element")
    with pytest.raises(httpx.RemoteProtocolError):
        get(emu, path)
    assert emu.faults.pending() == []


def test_slow_element_create_answers_on_the_emulators_clock() -> None:
    clock = FakeClock()
    emu = make(clock, element_latency=4.0)
    emu.faults.add("slow", "element", delay=10.0)
    task_id = data(create(emu, element_body()))["task_id"]
    assert clock.now == 1010.0
    assert data(get(emu, f"{PATH}/{task_id}"))["task_status"] == "succeed"


def test_fail_task_fails_a_matching_element() -> None:
    clock = FakeClock()
    emu = make(clock)
    emu.faults.add("fail_task", "element", match="gull", message="not a humanoid")
    calm = data(create(emu, element_body(external_task_id="el-keeper")))["task_id"]
    gull = data(create(emu, element_body(element_name="gull", external_task_id="el-g")))
    clock.now += 4.0
    failed = data(get(emu, f"{PATH}/{gull['task_id']}"))
    assert failed["task_status"] == "failed"
    assert failed["task_status_msg"] == "not a humanoid"
    assert "task_result" not in failed
    assert data(get(emu, f"{PATH}/{calm}"))["task_status"] == "succeed"
    # A fail_task for video creates leaves elements alone.
    emu.faults.add("fail_task", "create")
    task_id = data(create(emu, element_body(external_task_id="el-3")))["task_id"]
    clock.now += 4.0
    assert data(get(emu, f"{PATH}/{task_id}"))["task_status"] == "succeed"
    assert len(emu.faults.pending()) == 1


def test_element_faults_over_http() -> None:
    emu = make(FakeClock())
    fault = {"kind": "code_1303", "op": "element", "message": "too many"}
    assert data(run(emu, lambda c: c.post("/_emulator/faults", json=fault)))["op"] == "element"
    assert error(create(emu, element_body())) == (429, 1303, "too many")
    truncate = {"kind": "truncate", "op": "element"}
    assert error(run(emu, lambda c: c.post("/_emulator/faults", json=truncate)))[:2] == (
        400,
        1201,
    )


# -- the client against the emulator ---------------------------------------------------


def with_client(
    emu: Emulator, op: Callable[[KlingClient], Awaitable[T]], *, timeout: float = 5.0
) -> T:
    async def go() -> T:
        async with KlingClient(
            "http://emulator", ApiKeyAuth("key"), transport=emu.transport(), timeout=timeout
        ) as kling:
            return await op(kling)

    return asyncio.run(go())


def test_client_creates_polls_and_gets_the_element_id() -> None:
    clock = FakeClock()
    emu = make(clock, element_latency=4.0)

    async def make_element(kling: KlingClient) -> list[ElementTaskInfo]:
        seen = [await kling.create_element(element_body())]
        while seen[-1].status not in ("succeed", "failed"):
            await clock.sleep(1.5)
            seen.append(await kling.get_element_task(seen[0].task_id))
        return seen

    seen = with_client(emu, make_element)
    assert [info.status for info in seen] == ["submitted", "processing", "processing", "succeed"]
    assert all(info.task_id == seen[0].task_id for info in seen)
    assert all(info.external_task_id == "sb-el-keeper-1" for info in seen)
    assert [info.element_id for info in seen[:-1]] == [None, None, None]
    final = seen[-1]
    assert isinstance(final.element_id, int) and final.status_msg is None
    [element] = data(get(emu, f"{PATH}/{final.task_id}"))["task_result"]["elements"]
    assert element["element_id"] == final.element_id


def test_client_finds_an_element_task_by_external_id() -> None:
    clock = FakeClock()
    emu = make(clock, element_latency=0.0)
    task_id = data(create(emu, element_body()))["task_id"]
    found = with_client(emu, lambda k: k.find_element_task("sb-el-keeper-1"))
    assert found is not None and found.task_id == task_id and found.status == "succeed"
    assert with_client(emu, lambda k: k.find_element_task("sb-el-nobody")) is None
    # A video task's external id is no element task.
    post_video(emu, text_payload())
    assert with_client(emu, lambda k: k.find_element_task("sb-opening-1")) is None


def test_client_reports_a_failed_element_with_its_reason() -> None:
    clock = FakeClock()
    emu = make(clock, element_latency=0.0)
    emu.faults.add("fail_task", "element", message="content risk control")
    task_id = data(create(emu, element_body()))["task_id"]
    info = with_client(emu, lambda k: k.get_element_task(task_id))
    assert info == ElementTaskInfo(
        task_id, "failed", "content risk control", "sb-el-keeper-1", None
    )


def test_client_surfaces_validation_and_duplicates_as_1201() -> None:
    emu = make(FakeClock())
    with pytest.raises(ApiStatusError) as caught:
        with_client(emu, lambda k: k.create_element(element_body(element_name="k" * 21)))
    exc = caught.value
    assert (exc.code, exc.http_status) == (1201, 400)
    assert "element_name must be at most 20 characters" in str(exc)
    with_client(emu, lambda k: k.create_element(element_body()))
    with pytest.raises(ApiStatusError) as caught:
        with_client(emu, lambda k: k.create_element(element_body()))
    assert caught.value.code == 1201 and "must be unique" in str(caught.value)
    assert emu.stats()["element_creates"] == 1


@pytest.mark.parametrize(
    ("kind", "code", "not_made", "transient"),
    [("http_500", 5000, False, True), ("code_1303", 1303, True, False)],
)
def test_client_maps_element_faults_like_video_calls(
    kind: str, code: int, not_made: bool, transient: bool
) -> None:
    emu = make(FakeClock())
    emu.faults.add(kind, "element")
    with pytest.raises(ApiStatusError) as caught:
        with_client(emu, lambda k: k.create_element(element_body()))
    exc = caught.value
    assert (exc.code, exc.create_not_made, exc.transient) == (code, not_made, transient)
    assert emu.stats()["element_creates"] == 0


def test_client_dropped_element_create_is_a_transport_failure_then_found() -> None:
    emu = make(FakeClock())
    emu.faults.add("drop_after", "element")
    with pytest.raises(TransportFailure):
        with_client(emu, lambda k: k.create_element(element_body()))
    # The outcome was unknown; the lookup by external id tells: it was created.
    found = with_client(emu, lambda k: k.find_element_task("sb-el-keeper-1"))
    assert found is not None and found.status == "submitted"
    emu.faults.add("drop_before", "element")
    with pytest.raises(TransportFailure):
        with_client(emu, lambda k: k.get_element_task(found.task_id))
    emu.faults.add("http_500", "element")
    with pytest.raises(ApiStatusError):  # not None: a 500 is no "not found"
        with_client(emu, lambda k: k.find_element_task("sb-el-keeper-1"))
