"""Omni-Image on the emulator (kling-api.md §11.1): create and query, body rules, image
concurrency, units, placeholder PNGs, faults, stats and expiry. In-process, on the
emulator's fake clock: no sockets, no sleeping."""

from __future__ import annotations

import base64
from io import BytesIO
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops

from compiler.emulator import Emulator

from .test_emulator import (
    ACCESS,
    NO_SOUND,
    SECRET,
    FakeClock,
    b64_file,
    b64_image,
    data,
    error,
    jwt_token,
    run,
    text_payload,
)

PATH = "/v1/images/omni-image"
VIDEOS = "/v1/videos/omni-video"
ELEMENTS = "/v1/general/advanced-custom-elements"
STYLE = "https://example.com/style.png"


def make(clock: FakeClock, **kwargs: Any) -> Emulator:
    options: dict[str, Any] = {
        "latency": 8.0,
        "concurrency": 2,
        "image_latency": 2.0,
        "image_concurrency": 4,
        "image_max_side": 96,
    }
    options.update(kwargs)
    return Emulator(clock=clock, sleep=clock.sleep, **options)


def image_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_name": "kling-v3-omni",
        "prompt": "The keeper climbs the stairs, in the style of <<<image_1>>>.",
        "image_list": [{"image": STYLE}],
        "resolution": "1k",
        "aspect_ratio": "16:9",
        "n": 1,
        "external_task_id": "sb-still-opening-1",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def create(emu: Emulator, body: Any, **kwargs: Any) -> httpx.Response:
    return run(emu, lambda c: c.post(PATH, json=body), **kwargs)


def get(emu: Emulator, path: str, **kwargs: Any) -> httpx.Response:
    return run(emu, lambda c: c.get(path), **kwargs)


def download(emu: Emulator, url: str) -> httpx.Response:
    return get(emu, url, headers={})  # result URLs take no auth, like Kling's CDN


def finished(emu: Emulator, clock: FakeClock, body: dict[str, Any]) -> dict[str, Any]:
    task_id = data(create(emu, body))["task_id"]
    clock.now += emu.image_latency
    task: dict[str, Any] = data(get(emu, f"{PATH}/{task_id}"))
    assert task["task_status"] == "succeed", task
    return task


def urls(task: dict[str, Any]) -> list[str]:
    result = task["task_result"]
    return [item["url"] for item in result["images"] + result["series_images"]]


def png(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert int(response.headers["content-length"]) == len(response.content)
    image = Image.open(BytesIO(response.content))
    assert image.format == "PNG"
    return image.convert("RGB")


def stats(
    *,
    images: dict[str, int],
    image_creates: int | None = None,
    downloads: int = 0,
    creates: dict[str, int] | None = None,
    total_creates: int | None = None,
    elements: dict[str, int] | None = None,
) -> dict[str, Any]:
    """What stats() answers; the totals default to the counts of the per-id maps."""
    creates = creates or {}
    elements = elements or {}
    return {
        "total_creates": len(creates) if total_creates is None else total_creates,
        "creates": creates,
        "element_creates": len(elements),
        "elements": elements,
        "downloads": downloads,
        "image_creates": len(images) if image_creates is None else image_creates,
        "images": images,
        **NO_SOUND,
    }


# -- create, timeline, query by either id ---------------------------------------------


def test_an_image_task_moves_through_submitted_processing_succeed() -> None:
    clock = FakeClock()
    emu = make(clock, image_latency=2.0)
    created = data(create(emu, image_body(n=2)))
    assert created["task_status"] == "submitted"
    assert created["task_info"] == {"external_task_id": "sb-still-opening-1"}
    task_id = created["task_id"]
    seen = []
    for step in (0.4, 0.2, 1.3, 0.1):  # submitted for min(1, latency/4) s, then processing
        task = data(get(emu, f"{PATH}/{task_id}"))
        seen.append((task["task_status"], task["final_unit_deduction"], "task_result" in task))
        clock.now += step
    assert seen == [
        ("submitted", "0", False),
        ("submitted", "0", False),
        ("processing", "0", False),
        ("processing", "0", False),
    ]
    by_task = data(get(emu, f"{PATH}/{task_id}"))
    by_external = data(get(emu, f"{PATH}/sb-still-opening-1"))
    assert by_task == {**by_external, "task_status": "succeed"} and by_task["task_id"] == task_id
    assert by_task["task_status_msg"] == "" and by_task["final_unit_deduction"] == "16"
    assert by_task["watermark_info"] == {"enabled": False}
    assert by_task["task_result"] == {
        "result_type": "single",
        "images": [
            {"index": 0, "url": f"http://emulator/_emulator/images/{task_id}/0.png"},
            {"index": 1, "url": f"http://emulator/_emulator/images/{task_id}/1.png"},
        ],
        "series_images": [],
    }
    assert by_task["updated_at"] - by_task["created_at"] == 2000


def test_image_latency_is_its_own_and_shorter_by_default() -> None:
    clock = FakeClock()
    emu = Emulator(clock=clock, sleep=clock.sleep, image_max_side=64)
    assert (emu.image_latency, emu.latency, emu.image_concurrency) == (0.5, 2.0, 4)
    task_id = data(create(emu, image_body()))["task_id"]
    clock.now += 0.49
    assert data(get(emu, f"{PATH}/{task_id}"))["task_status"] == "processing"
    clock.now += 0.01
    assert data(get(emu, f"{PATH}/{task_id}"))["task_status"] == "succeed"


def test_a_series_lists_its_images_under_series_images() -> None:
    clock = FakeClock()
    emu = make(clock, image_concurrency=9)
    task = finished(emu, clock, image_body(result_type="series", series_amount=3, n=7))
    result = task["task_result"]
    assert result["result_type"] == "series" and result["images"] == []
    assert [item["index"] for item in result["series_images"]] == [0, 1, 2]  # n is ignored
    assert task["final_unit_deduction"] == "24"


def test_a_watermarked_task_answers_watermark_urls() -> None:
    clock = FakeClock()
    emu = make(clock)
    task = finished(emu, clock, image_body(watermark_info={"enabled": True}))
    [item] = task["task_result"]["images"]
    assert item["watermark_url"] == item["url"] and task["watermark_info"] == {"enabled": True}


def test_lookup_list_and_unknown_ids() -> None:
    clock = FakeClock()
    emu = make(clock)
    first = data(create(emu, image_body(external_task_id="still-a")))["task_id"]
    clock.now += 0.1
    second = data(create(emu, image_body(external_task_id="still-b")))["task_id"]
    assert data(get(emu, f"{PATH}/still-a"))["task_id"] == first
    assert error(get(emu, f"{PATH}/nope")) == (404, 1203, "task not found: nope")
    # The video and element endpoints know nothing of image tasks, and the other way round.
    assert error(get(emu, f"{VIDEOS}/{first}"))[:2] == (404, 1203)
    assert error(get(emu, f"{ELEMENTS}/still-a"))[:2] == (404, 1203)
    video = data(run(emu, lambda c: c.post(VIDEOS, json=text_payload())))["task_id"]
    assert error(get(emu, f"{PATH}/{video}"))[:2] == (404, 1203)
    listed = data(get(emu, f"{PATH}?pageNum=1&pageSize=10"))
    assert [t["task_id"] for t in listed] == [second, first]  # newest first
    assert [t["task_id"] for t in data(get(emu, f"{PATH}?pageNum=2&pageSize=1"))] == [first]
    assert data(get(emu, f"{PATH}?pageNum=3&pageSize=1")) == []
    assert error(get(emu, f"{PATH}?pageSize=501"))[:2] == (400, 1201)


def test_duplicate_external_task_id_is_refused() -> None:
    emu = make(FakeClock())
    assert create(emu, image_body()).is_success
    assert error(create(emu, image_body())) == (
        400,
        1201,
        "external_task_id must be unique: 'sb-still-opening-1' exists",
    )
    # Video tasks keep their own namespace: the same id there is no duplicate.
    video = run(
        emu, lambda c: c.post(VIDEOS, json=text_payload(external_task_id="sb-still-opening-1"))
    )
    assert data(video)["task_status"] == "submitted"
    # §9.13: an empty id means no id, so two of them are no duplicate (nor counted by id).
    assert create(emu, image_body(external_task_id="")).is_success
    assert create(emu, image_body(external_task_id="")).is_success
    assert emu.stats() == stats(
        images={"sb-still-opening-1": 1},
        image_creates=3,
        creates={"sb-still-opening-1": 1},
    )


def test_image_endpoints_take_the_same_auth() -> None:
    emu = make(FakeClock(), access_key=ACCESS, secret_key=SECRET)
    signed = {"Authorization": f"Bearer {jwt_token()}"}
    assert create(emu, image_body(), headers=signed).is_success
    assert error(create(emu, image_body(external_task_id="x"), headers={}))[:2] == (401, 1001)
    forged = {"Authorization": "Bearer not-a-jwt"}
    assert error(get(emu, f"{PATH}/sb-still-opening-1", headers=forged))[:2] == (401, 1002)
    assert error(get(emu, PATH, headers={}))[:2] == (401, 1001)
    assert emu.stats()["image_creates"] == 1


# -- body rules (§11.1) -----------------------------------------------------------------

REF = {"image": STYLE}
ELEMENT = {"element_id": 829836802793406551}
ASPECTS = "16:9, 9:16, 1:1, 4:3, 3:4, 3:2, 2:3, 21:9, auto"

BAD_IMAGE_BODIES: list[tuple[Any, str]] = [
    ([image_body()], "request body must be a JSON object"),
    ({"model_name": "kling-v3-Omni"}, "model_name must be one of kling-image-o1, kling-v3-omni"),
    ({"model_name": "kling-video-o1"}, "model_name must be one of kling-image-o1, kling-v3-omni"),
    ({"prompt": None}, "prompt is required"),
    ({"prompt": ""}, "prompt is required"),
    ({"prompt": 42}, "prompt must be a string"),
    ({"prompt": "x" * 2501}, "prompt must be at most 2500 characters"),
    ({"prompt": "Like <<<image_2>>>."}, "<<<image_2>>> refers to no item of image_list (1 items)"),
    (
        {"prompt": "Show <<<element_1>>>."},
        "<<<element_1>>> refers to no item of element_list (0 items)",
    ),
    (
        {"prompt": "After <<<video_1>>>."},
        "<<<video_1>>> refers to nothing: Omni-Image takes image_list and element_list, no videos",
    ),
    ({"image_list": "style.png"}, "image_list must be an array of objects"),
    ({"image_list": [{"image_url": STYLE}]}, "image_list[0].image is required"),
    ({"image_list": [{"image": ""}]}, "image_list[0].image is required"),
    ({"image_list": [{"image": 7}]}, "image_list[0].image must be a string"),
    (
        {"image_list": [{"image": "http://example.com/a.png"}]},
        "image_list[0].image must be an https URL or Base64",
    ),
    (
        {"image_list": [{"image": "local:assets/coast.png@sha256:ab12"}]},
        "image_list[0].image must be an https URL or Base64, not a local file",
    ),
    (
        {"image_list": [{"image": "data:image/png;base64," + b64_image()}]},
        "image_list[0].image Base64 must not carry a data: prefix",
    ),
    (
        {"image_list": [{"image": "@@not base64@@"}]},
        "image_list[0].image is neither an https URL nor valid Base64",
    ),
    (
        {"image_list": [REF, {"image": b64_file("tiny.png")}]},
        "image_list[1].image image sides must be at least 300px, got 200x200",
    ),
    (
        {"image_list": [{"image": b64_file("tall.png")}]},
        "image_list[0].image image aspect ratio must be between 1:2.5 and 2.5:1, got 300x800",
    ),
    (
        {"image_list": [{"image": b64_file("photo.bmp")}]},
        "image_list[0].image image must be jpg, jpeg or png",
    ),
    (
        {"image_list": [{"image": b64_file("notes.png")}]},
        "image_list[0].image Base64 is not a readable image",
    ),
    (
        {"image_list": [{"image": base64.b64encode(b"\x89PNG" + bytes(10 << 20)).decode()}]},
        "image_list[0].image image must be at most 10MB",
    ),
    ({"element_list": [{"element_id": "abc"}]}, "element_list[0].element_id must be an integer"),
    ({"element_list": [{"element_id": 0}]}, "element_list[0].element_id must be an integer"),
    ({"element_list": [{}]}, "element_list[0].element_id must be an integer element id"),
    (
        {"image_list": [REF] * 6, "element_list": [ELEMENT] * 5},
        "image_list and element_list may hold at most 10 items in total",
    ),
    ({"image_list": [REF] * 11}, "image_list and element_list may hold at most 10 items"),
    ({"resolution": "8k"}, "resolution must be one of 1k, 2k, 4k"),
    ({"resolution": "1K"}, "resolution must be one of 1k, 2k, 4k"),
    ({"result_type": "many"}, "result_type must be one of single, series"),
    ({"n": 0}, "n must be an integer from 1 to 9"),
    ({"n": 10}, "n must be an integer from 1 to 9"),
    ({"n": "2"}, "n must be an integer from 1 to 9"),
    ({"n": True}, "n must be an integer from 1 to 9"),
    ({"n": 1.5}, "n must be an integer from 1 to 9"),
    (
        {"result_type": "series", "series_amount": 1},
        "series_amount must be an integer from 2 to 9, or auto",
    ),
    (
        {"result_type": "series", "series_amount": "10"},
        "series_amount must be an integer from 2 to 9, or auto",
    ),
    (
        {"result_type": "series", "series_amount": "many"},
        "series_amount must be an integer from 2 to 9, or auto",
    ),
    ({"aspect_ratio": "5:4"}, f"aspect_ratio must be one of {ASPECTS}"),
    ({"watermark_info": {"enabled": "yes"}}, "watermark_info must be an object"),
    ({"callback_url": 5}, "callback_url must be a string"),
    ({"external_task_id": 5}, "external_task_id must be a string"),
]


@pytest.mark.parametrize(
    ("changes", "message"), BAD_IMAGE_BODIES, ids=[m for _, m in BAD_IMAGE_BODIES]
)
def test_image_body_rules(changes: Any, message: str) -> None:
    emu = make(FakeClock())
    body = image_body(**changes) if isinstance(changes, dict) else changes
    status, code, text = error(create(emu, body))
    assert (status, code) == (400, 1201)
    assert text.startswith(message), text
    assert emu.stats()["image_creates"] == 0


GOOD_IMAGE_BODIES: list[dict[str, Any]] = [
    {"model_name": None, "resolution": None, "aspect_ratio": None, "n": None},  # defaults
    {"model_name": "kling-image-o1", "resolution": "2k"},
    {"prompt": "x" * 2500, "image_list": None},
    {"image_list": [REF] * 5, "element_list": [ELEMENT] * 5, "prompt": "<<<element_5>>>"},
    {"image_list": [REF] * 10, "prompt": "<<<image_10>>> and <<<image_1>>>"},
    {"element_list": [{"element_id": "829836802793406551"}], "prompt": "<<<element_1>>>."},
    {"image_list": [{"image": b64_image((750, 300), fmt="JPEG")}, {"image": b64_image()}]},
    {"result_type": "series", "n": 99},  # §11.1: n is ignored for a series
    {"result_type": "single", "series_amount": 99},  # and series_amount for a single image
    {"result_type": "series", "series_amount": "auto", "aspect_ratio": "auto"},
    {"result_type": "series", "series_amount": "9", "resolution": "4k"},
    {"external_task_id": "", "callback_url": "", "element_list": [], "n": ""},  # §9.13
    {"n": 4, "aspect_ratio": "21:9", "watermark_info": {"enabled": False}},
    {"negative_prompt": "blur", "seed": 7},  # unknown fields pass
    {"prompt": "Merge the people into the <<<object_1>>> image"},  # Kling's own example
]


@pytest.mark.parametrize("changes", GOOD_IMAGE_BODIES)
def test_image_bodies_within_the_rules_pass(changes: dict[str, Any]) -> None:
    emu = make(FakeClock(), image_concurrency=9)
    response = create(emu, image_body(**changes))
    assert response.status_code == 200, response.text
    assert emu.stats()["image_creates"] == 1


def test_an_image_body_that_is_not_json_is_1200() -> None:
    raw = run(make(FakeClock()), lambda c: c.post(PATH, content=b"{oops"))
    assert error(raw) == (400, 1200, "request body must be JSON")


# -- units (§11.1) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "units"),
    [
        ({}, "8"),
        ({"resolution": None}, "8"),  # 1k by default
        ({"resolution": "2k", "n": 3}, "24"),
        ({"resolution": "4k"}, "16"),
        ({"resolution": "4k", "n": 9}, "144"),
        ({"result_type": "series", "series_amount": 5, "resolution": "2k"}, "40"),
        ({"result_type": "series", "resolution": "4k"}, "64"),  # Kling's default amount: 4
        ({"result_type": "series", "series_amount": "auto"}, "32"),  # the emulator makes 4
    ],
)
def test_final_unit_deduction(changes: dict[str, Any], units: str) -> None:
    clock = FakeClock()
    emu = make(clock, image_concurrency=9)
    task = finished(emu, clock, image_body(**changes))
    assert task["final_unit_deduction"] == units


# -- image concurrency (§6.1, §11.1) -----------------------------------------------------


def test_image_tasks_hold_a_slot_per_image_apart_from_video_slots() -> None:
    clock = FakeClock()
    emu = make(clock, concurrency=1, image_concurrency=4, image_latency=2.0)
    assert create(emu, image_body(external_task_id="a", n=3)).is_success
    refused = create(emu, image_body(external_task_id="b", n=2))
    assert error(refused) == (429, 1303, "parallel task over resource pack limit")
    assert create(emu, image_body(external_task_id="c")).is_success  # 3 + 1 = 4
    assert error(create(emu, image_body(external_task_id="d")))[:2] == (429, 1303)
    # The video slot is free for a video, and a full video account leaves images alone.
    assert run(emu, lambda c: c.post(VIDEOS, json=text_payload())).is_success
    assert emu.stats() == stats(images={"a": 1, "c": 1}, creates={"sb-opening-1": 1})
    clock.now += 2.0  # the image tasks finished: their slots are free; the video holds its own
    assert create(emu, image_body(external_task_id="b", n=4)).is_success
    video = run(emu, lambda c: c.post(VIDEOS, json=text_payload(external_task_id="v2")))
    assert error(video)[:2] == (429, 1303)
    # A task asking for more images than the account may run at once is never admitted.
    clock.now += 2.0
    assert error(create(emu, image_body(external_task_id="e", n=5)))[:2] == (429, 1303)
    series = image_body(external_task_id="f", result_type="series", series_amount=5)
    assert error(create(emu, series))[:2] == (429, 1303)
    assert create(emu, image_body(external_task_id="f", result_type="series")).is_success
    assert emu.stats()["images"] == {"a": 1, "c": 1, "b": 1, "f": 1}


# -- placeholder PNGs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "max_side", "size"),
    [
        ({"aspect_ratio": "16:9"}, None, (1024, 576)),
        ({"aspect_ratio": "9:16"}, None, (576, 1024)),
        ({"aspect_ratio": "1:1", "resolution": "2k"}, None, (2048, 2048)),
        ({"aspect_ratio": "4:3", "resolution": "4k"}, 400, (400, 300)),
        ({"aspect_ratio": "3:4", "resolution": "4k"}, 400, (300, 400)),
        ({"aspect_ratio": "3:2", "resolution": "2k"}, 300, (300, 200)),
        ({"aspect_ratio": "2:3"}, 300, (200, 300)),
        ({"aspect_ratio": "21:9"}, 210, (210, 90)),
        ({"aspect_ratio": "21:9"}, None, (1024, 439)),
        ({"aspect_ratio": "16:9", "resolution": "4k"}, 5000, (4096, 2304)),
        # auto: the shape of the first reference sent as Base64; square without one.
        (
            {"aspect_ratio": "auto", "image_list": [REF, {"image": b64_image((600, 400))}]},
            300,
            (300, 200),
        ),
        ({"aspect_ratio": "auto"}, 300, (300, 300)),
    ],
)
def test_stills_are_pngs_of_the_resolution_and_aspect_asked_for(
    changes: dict[str, Any], max_side: int | None, size: tuple[int, int]
) -> None:
    clock = FakeClock()
    emu = make(clock, image_max_side=max_side)
    [url] = urls(finished(emu, clock, image_body(**changes)))
    assert png(download(emu, url)).size == size


def test_image_max_side_follows_clip_max_side_but_stays_usable_as_a_frame() -> None:
    clock = FakeClock()
    emu = Emulator(clock=clock, sleep=clock.sleep, clip_max_side=128)
    assert emu.image_max_side == 720  # 300 px on the short side even at 21:9
    [url] = urls(finished(emu, clock, image_body(aspect_ratio="9:16")))
    assert png(download(emu, url)).size == (405, 720)
    big = Emulator(clock=clock, sleep=clock.sleep, clip_max_side=1000)
    assert big.image_max_side == 1000
    apart = Emulator(clock=clock, sleep=clock.sleep, clip_max_side=128, image_max_side=64)
    assert (apart.image_max_side, apart.clip_max_side) == (64, 128)


def _reddish(image: Image.Image) -> int:
    """How many pixels are near pure red."""
    red = image.convert("RGB").split()
    mask = ImageChops.multiply(
        red[0].point(lambda v: 255 if v > 200 else 0),
        ImageChops.invert(ImageChops.lighter(red[1], red[2])).point(
            lambda v: 255 if v > 200 else 0
        ),
    )
    return mask.histogram()[255]


def test_a_still_shows_its_prompt_index_and_base64_references() -> None:
    clock = FakeClock()
    emu = make(clock, image_max_side=480, image_concurrency=9)
    red = {"image": b64_image((600, 400), "red")}

    def still(ext: str | None, index: int = 0, **changes: Any) -> Image.Image:
        task = finished(emu, clock, image_body(external_task_id=ext, **changes))
        return png(download(emu, urls(task)[index]))

    plain = still("plain")
    with_red = still("red", image_list=[REF, red], prompt="The keeper, like <<<image_2>>>.")
    assert _reddish(plain) == 0
    strip = with_red.crop((0, with_red.height * 7 // 10, with_red.width, with_red.height))
    assert _reddish(strip) > 0.1 * strip.width * strip.height  # the thumbnail, at the bottom
    assert _reddish(with_red) == _reddish(strip)  # and nowhere else
    # A URL reference has no thumbnail: the still looks like one without references.
    url_only = still(None, image_list=[REF, REF], prompt="A lighthouse.")
    bare = still(None, image_list=None, prompt="A lighthouse.")
    assert ImageChops.difference(url_only, bare).getbbox() is None
    # The external_task_id is drawn as sent.
    assert ImageChops.difference(plain, still(None)).getbbox() is not None
    # The prompt and the index are drawn: each changes the picture.
    other_prompt = still("other", prompt="A gull on the rail at dawn.", image_list=None)
    assert ImageChops.difference(plain, other_prompt).getbbox() is not None
    second = still("two", 1, n=2)
    first = png(download(emu, urls(data(get(emu, f"{PATH}/two")))[0]))
    assert ImageChops.difference(first, second).getbbox() is not None


def test_stills_are_served_without_auth_counted_and_drawn_once() -> None:
    clock = FakeClock()
    emu = make(clock)
    created = data(create(emu, image_body(n=2)))
    task_id = created["task_id"]
    early = download(emu, f"/_emulator/images/{task_id}/0.png")
    assert error(early) == (404, 1203, f"no images for task {task_id}")  # not made yet
    clock.now += emu.image_latency
    first = download(emu, f"/_emulator/images/{task_id}/0.png")
    assert download(emu, f"/_emulator/images/{task_id}/0.png").content == first.content
    missing = download(emu, f"/_emulator/images/{task_id}/2.png")
    assert error(missing) == (404, 1203, f"no image 2 for task {task_id}")
    assert error(download(emu, "/_emulator/images/123/0.png"))[:2] == (404, 1203)
    assert emu.stats() == stats(images={"sb-still-opening-1": 1}, downloads=2)


def test_expire_makes_every_still_url_answer_404() -> None:
    clock = FakeClock()
    emu = make(clock)
    task = finished(emu, clock, image_body())
    [url] = urls(task)
    assert download(emu, url).status_code == 200
    expired = run(emu, lambda c: c.post("/_emulator/expire", json={}))
    assert expired.is_success
    task_id = task["task_id"]
    assert error(download(emu, url)) == (404, 1203, f"the result of task {task_id} has expired")
    # The task itself is still there to query; only its results are gone.
    assert data(get(emu, f"{PATH}/{task_id}"))["task_status"] == "succeed"
    assert emu.stats() == stats(images={"sb-still-opening-1": 1}, downloads=1)


# -- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["create", "image", "any"])
@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("http_500", (500, 5000, "internal server error")),
        ("code_1302", (429, 1302, "request too fast, please slow down")),
        ("code_1303", (429, 1303, "parallel task over resource pack limit")),
    ],
)
def test_error_faults_on_image_creates_create_nothing(
    op: str, kind: str, expected: tuple[int, int, str]
) -> None:
    emu = make(FakeClock())
    emu.faults.add(kind, op)
    assert error(create(emu, image_body())) == expected
    assert emu.stats()["image_creates"] == 0
    assert create(emu, image_body()).is_success  # times=1: the next one goes through


def test_image_faults_leave_video_and_element_requests_alone() -> None:
    emu = make(FakeClock())
    emu.faults.add("http_500", "image")
    emu.faults.add("http_500", "element")
    assert run(emu, lambda c: c.post(VIDEOS, json=text_payload())).is_success
    assert error(create(emu, image_body()))[:2] == (500, 5000)
    assert len(emu.faults.pending()) == 1  # the element fault waits for an element request
    # A create fault hits the next create, video or image.
    emu.faults.clear()
    emu.faults.add("code_1302", "create", times=2)
    assert error(run(emu, lambda c: c.post(VIDEOS, json=text_payload(external_task_id="v"))))[
        :2
    ] == (429, 1302)
    assert error(create(emu, image_body()))[:2] == (429, 1302)
    assert emu.faults.pending() == []


def test_drop_before_creates_nothing_drop_after_creates() -> None:
    emu = make(FakeClock())
    emu.faults.add("drop_before", "image")
    with pytest.raises(httpx.RemoteProtocolError):
        create(emu, image_body())
    assert emu.stats()["image_creates"] == 0
    emu.faults.add("drop_after", "create")
    with pytest.raises(httpx.RemoteProtocolError):
        create(emu, image_body())
    assert emu.stats()["images"] == {"sb-still-opening-1": 1}
    assert data(get(emu, f"{PATH}/sb-still-opening-1"))["task_status"] == "submitted"


def test_slow_image_create_answers_on_the_emulators_clock() -> None:
    clock = FakeClock()
    emu = make(clock)
    emu.faults.add("slow", "image", delay=30.0)
    task_id = data(create(emu, image_body()))["task_id"]
    assert clock.now == 1030.0
    assert data(get(emu, f"{PATH}/{task_id}"))["task_status"] == "succeed"


@pytest.mark.parametrize("op", ["query", "image"])
def test_query_faults_hit_image_queries_and_lists(op: str) -> None:
    emu = make(FakeClock())
    task_id = data(create(emu, image_body()))["task_id"]
    emu.faults.add("http_500", op, times=2, match=task_id)
    assert get(emu, f"{PATH}/sb-still-opening-1").is_success  # match: the task id only
    assert [get(emu, f"{PATH}/{task_id}").status_code for _ in range(3)] == [500, 500, 200]
    emu.faults.add("code_1302", op)
    assert error(get(emu, PATH))[:2] == (429, 1302)
    emu.faults.add("drop_after", op)
    with pytest.raises(httpx.RemoteProtocolError):
        get(emu, f"{PATH}/{task_id}")
    assert emu.faults.pending() == []


@pytest.mark.parametrize("op", ["create", "image"])
def test_fail_task_fails_a_matching_image_task(op: str) -> None:
    clock = FakeClock()
    emu = make(clock)
    emu.faults.add("fail_task", op, match="storm", message="risk control: storm")
    calm = data(create(emu, image_body(external_task_id="calm")))["task_id"]
    storm = data(create(emu, image_body(external_task_id="storm", prompt="A storm.")))["task_id"]
    later = data(create(emu, image_body(external_task_id="later", prompt="A storm.")))["task_id"]
    clock.now += emu.image_latency
    failed = data(get(emu, f"{PATH}/{storm}"))
    assert failed["task_status"] == "failed"
    assert failed["task_status_msg"] == "risk control: storm"
    assert failed["final_unit_deduction"] == "0" and "task_result" not in failed
    for task_id in (calm, later):  # unmatched, and after the fault was used up
        assert data(get(emu, f"{PATH}/{task_id}"))["task_status"] == "succeed"
    missing = download(emu, f"/_emulator/images/{storm}/0.png")
    assert error(missing) == (404, 1203, f"no images for task {storm}")


@pytest.mark.parametrize("op", ["download", "image"])
def test_download_faults_hit_stills(op: str) -> None:
    clock = FakeClock()
    emu = make(clock, image_max_side=256)
    [url] = urls(finished(emu, clock, image_body()))
    emu.faults.add("truncate", op)
    cut = download(emu, url)
    assert cut.status_code == 200 and len(cut.content) < int(cut.headers["content-length"])
    emu.faults.add("http_500", op)
    assert error(download(emu, url))[:2] == (500, 5000)
    emu.faults.add("drop_after", op)
    with pytest.raises(httpx.RemoteProtocolError):
        download(emu, url)
    whole = download(emu, url)
    assert len(whole.content) == int(whole.headers["content-length"])


def test_image_faults_over_http() -> None:
    emu = make(FakeClock())
    for fault in (
        {"kind": "fail_task", "op": "image"},
        {"kind": "truncate", "op": "image"},
        {"kind": "http_500", "op": "image", "match": "sb-still"},
    ):
        assert data(run(emu, lambda c, f=fault: c.post("/_emulator/faults", json=f)))
    assert [f["op"] for f in data(get(emu, "/_emulator/faults"))] == ["image"] * 3
    bad = run(emu, lambda c: c.post("/_emulator/faults", json={"kind": "fail_task", "op": "query"}))
    assert error(bad) == (
        400,
        1201,
        "a fail_task fault acts on creates: op must be create, element, image, audio or any",
    )
    assert error(create(emu, image_body()))[:2] == (500, 5000)


# -- stats ---------------------------------------------------------------------------------


def test_stats_count_image_creates_apart_from_videos_and_elements() -> None:
    clock = FakeClock()
    emu = make(clock, concurrency=5, image_concurrency=9)
    for ext in ("still-1", "still-2", None):
        assert create(emu, image_body(external_task_id=ext, n=2)).is_success
    assert not create(emu, image_body(external_task_id="bad", n=0)).is_success  # refused
    assert run(emu, lambda c: c.post(VIDEOS, json=text_payload())).is_success
    element = {
        "element_name": "keeper",
        "element_description": "the keeper",
        "reference_type": "image_refer",
        "element_image_list": {
            "frontal_image": b64_image((400, 600)),
            "refer_images": [{"image_url": b64_image((400, 600), "blue")}],
        },
        "external_task_id": "el-1",
    }
    assert run(emu, lambda c: c.post(ELEMENTS, json=element)).is_success
    clock.now += emu.image_latency
    task = data(get(emu, f"{PATH}/still-1"))
    for url in urls(task):
        assert download(emu, url).status_code == 200
    expected = stats(
        images={"still-1": 1, "still-2": 1},
        image_creates=3,
        creates={"sb-opening-1": 1},
        elements={"el-1": 1},
        downloads=2,
    )
    assert get(emu, "/_emulator/stats").json() == emu.stats() == expected
