"""Lower a rendered scene to its typed request. RenderedScene → VideoRequest. No I/O.

The request is explicit where the API's defaults are wrong for us (kling-api.md §3.2):
model, mode and sound are always set; `aspect_ratio` only where the API takes it. How
it is spelled as JSON is `wire.py`'s business.
"""

from __future__ import annotations

from .model import RenderedScene
from .request import ImageItem, ShotPrompt, VideoItem, VideoRequest


def lower(rs: RenderedScene) -> VideoRequest:
    scene = rs.scene
    settings = scene.settings
    base_edit = scene.video is not None and scene.video.refer_type == "base"
    shots = tuple(
        ShotPrompt(i, text, shot.duration)
        for i, (shot, text) in enumerate(zip(scene.shots, rs.shot_prompts, strict=True), 1)
    )
    if shots:
        duration: int | None = sum(shot.duration for shot in scene.shots)
    else:
        duration = None if base_edit else scene.duration
    types = rs.frame_types
    video = None
    if rs.videos:
        assert scene.video is not None
        video = VideoItem(rs.videos[0].url, scene.video.refer_type, scene.video.keep_original_sound)
    return VideoRequest(
        model=settings.model,
        mode=settings.mode,
        sound=settings.sound,
        prompt="" if shots else (rs.prompt or ""),
        # R14: the first frame sets the shape; a base edit keeps the video's.
        aspect_ratio=None if rs.first_frame is not None or base_edit else settings.aspect_ratio,
        duration=duration,
        shots=shots,
        images=tuple(
            ImageItem(image.media, types[i] if i < len(types) else None)  # type: ignore[arg-type]
            for i, image in enumerate(rs.images)
        ),
        elements=tuple(element.media for element in rs.elements),
        video=video,
    )
