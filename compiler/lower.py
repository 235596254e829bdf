"""Lower a rendered scene to its Kling Omni-Video payload. RenderedScene → dict. No I/O.

The payload is explicit where the API's defaults are wrong for us (kling-api.md §3.2):
`model_name`, `mode`, `sound` and `refer_type` are always sent; `aspect_ratio` only
where the API takes it; durations as strings.
"""

from __future__ import annotations

from typing import Any

from .model import RenderedScene


def lower(rs: RenderedScene) -> dict[str, Any]:
    scene = rs.scene
    settings = scene.settings
    base_edit = scene.video is not None and scene.video.refer_type == "base"
    payload: dict[str, Any] = {
        "model_name": settings.model,
        "mode": settings.mode,
        "sound": "on" if settings.sound else "off",
    }
    # R14: the first frame sets the shape; a base edit keeps the video's.
    if rs.first_frame is None and not base_edit:
        payload["aspect_ratio"] = settings.aspect_ratio
    if scene.shots:
        payload["duration"] = str(sum(shot.duration for shot in scene.shots))
        payload["multi_shot"] = True
        payload["shot_type"] = "customize"
        payload["prompt"] = ""
        payload["multi_prompt"] = [
            {"index": i, "prompt": text, "duration": str(shot.duration)}
            for i, (shot, text) in enumerate(zip(scene.shots, rs.shot_prompts, strict=True), 1)
        ]
    else:
        if not base_edit:
            payload["duration"] = str(scene.duration)
        payload["prompt"] = rs.prompt
    if rs.images:
        types = rs.frame_types
        payload["image_list"] = [
            {"image_url": image.payload_value, "type": types[i]}
            if i < len(types)
            else {"image_url": image.payload_value}
            for i, image in enumerate(rs.images)
        ]
    if rs.elements:
        payload["element_list"] = [{"element_id": element.payload_value} for element in rs.elements]
    if rs.videos:
        assert scene.video is not None
        item: dict[str, Any] = {
            "video_url": rs.videos[0].url,
            "refer_type": scene.video.refer_type,
        }
        if scene.video.keep_original_sound is not None:
            item["keep_original_sound"] = "yes" if scene.video.keep_original_sound else "no"
        payload["video_list"] = [item]
    return payload
