"""The emulator answers any create body (video or Omni-Image) with a Kling envelope, never a
crash."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.emulator import Emulator

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 20),
    st.text(max_size=12),
    st.sampled_from(
        [
            "kling-v3-omni",
            "kling-video-o1",
            "pro",
            "std",
            "4k",
            "on",
            "off",
            "5",
            "15",
            "customize",
            "base",
            "feature",
            "first_frame",
            "end_frame",
            "https://example.com/a.png",
            "<<<image_1>>>",
            "<<<element_1>>>",
            "iVBORw0KGgo=",
            "kling-image-o1",
            "1k",
            "series",
            "auto",
            "21:9",
        ]
    ),
)
_KEYS = st.sampled_from(
    [
        "model_name",
        "mode",
        "sound",
        "duration",
        "prompt",
        "aspect_ratio",
        "multi_shot",
        "shot_type",
        "multi_prompt",
        "image_list",
        "element_list",
        "video_list",
        "image_url",
        "type",
        "element_id",
        "video_url",
        "refer_type",
        "keep_original_sound",
        "index",
        "external_task_id",
        "callback_url",
        "watermark_info",
        "image",
        "resolution",
        "result_type",
        "n",
        "series_amount",
    ]
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


def _create(path: str, body: Any) -> httpx.Response:
    emulator = Emulator(api_key="k", clip_max_side=96)

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=emulator.transport(), base_url="http://emulator"
        ) as client:
            return await client.post(path, json=body, headers={"Authorization": "Bearer k"})

    return asyncio.run(send())


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["/v1/videos/omni-video", "/v1/images/omni-image"]),
    st.one_of(st.dictionaries(_KEYS, _VALUES, max_size=8), _VALUES),
)
def test_every_create_body_gets_an_envelope(path: str, body: Any) -> None:
    response = _create(path, body)
    doc = response.json()
    assert set(doc) >= {"code", "message", "request_id"}
    if doc["code"] == 0:
        assert response.status_code == 200 and doc["data"]["task_status"] == "submitted"
    else:
        assert response.status_code in (400, 429) and doc["code"] in (1200, 1201, 1303)
