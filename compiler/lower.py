"""Lower a rendered scene to its typed request. RenderedScene → VideoRequest. No I/O.

The request is explicit where the API's defaults are wrong for us (kling-api.md §3.2):
model, mode and sound are always set; `aspect_ratio` only where the API takes it. How
it is spelled as JSON is `wire.py`'s business. A generated image lowers to its own
Omni-Image request (`lower_image`), and a scene to the stills of its shots
(`lower_stills`, for `render --stills`).
"""

from __future__ import annotations

import re

from .model import RenderedImage, RenderedScene, Scene, Voice, omni_image, sound
from .request import (
    EffectRequest,
    ImageItem,
    ImageMedia,
    ImageRequest,
    LastFrame,
    ShotPrompt,
    SpeechRequest,
    VideoItem,
    VideoRequest,
)


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
        # `shots: auto` (shot_type intelligence) carries the whole description in `prompt`
        # (§11, 03/11/2026); customized shots carry theirs in `multi_prompt`.
        prompt="" if shots else (rs.prompt or ""),
        # R14: the first frame sets the shape; a base edit keeps the video's.
        aspect_ratio=None if rs.first_frame is not None or base_edit else settings.aspect_ratio,
        duration=duration,
        shots=shots,
        auto_shots=scene.auto_shots,
        images=tuple(
            ImageItem(image.media, types[i] if i < len(types) else None)  # type: ignore[arg-type]
            for i, image in enumerate(rs.images)
        ),
        elements=tuple(element.media for element in rs.elements),
        video=video,
    )


def lower_image(ri: RenderedImage) -> ImageRequest:
    """A generated image ref's Omni-Image request (kling-api.md §11.1)."""
    ref = ri.ref
    spec = omni_image()
    return ImageRequest(
        model=spec["model"],
        prompt=ri.prompt or "",
        resolution=ref.resolution,
        aspect_ratio=ref.aspect_ratio or "16:9",
        images=tuple(image.media for image in ri.images),
        elements=tuple(element.media for element in ri.elements),
    )


_IMAGE_TOKEN = re.compile(r"<<<image_(\d+)>>>")


def lower_stills(
    rs: RenderedScene, request: VideoRequest
) -> tuple[tuple[ImageRequest, ...], str | None]:
    """One Omni-Image request per shot of a scene, at the scene's aspect ratio; or none,
    and why.

    A still sees what the clip sees: the request's images (frames as plain references,
    each medium once) and elements, its prompt's tokens renumbered to the still's lists.
    """
    scene = rs.scene
    spec = omni_image()
    if request.video is not None:
        return (), "a scene with a video has no stills: Omni-Image takes no video"
    if any(isinstance(item.media, LastFrame) for item in request.images):
        return (), (
            f"a scene that continues '{scene.after}' has no stills: its first frame is the "
            "last frame of that clip, which does not exist before the clip does"
        )
    images: list[ImageMedia] = []
    numbers: dict[int, int] = {}  # a token's number in the clip's list → in the still's
    for index, item in enumerate(request.images, 1):
        if item.media not in images:
            images.append(item.media)
        numbers[index] = images.index(item.media) + 1
    elements = tuple(dict.fromkeys(request.elements))
    limit = spec["max_images_and_elements"]
    if len(images) + len(elements) > limit:
        return (), (
            f"{len(images)} images + {len(elements)} elements are more than the {limit} an "
            "Omni-Image still takes"
        )
    element_numbers = {i: elements.index(e) + 1 for i, e in enumerate(request.elements, 1)}

    def renumber(text: str) -> str:
        text = _IMAGE_TOKEN.sub(lambda m: f"<<<image_{numbers[int(m.group(1))]}>>>", text)
        return re.sub(
            r"<<<element_(\d+)>>>",
            lambda m: f"<<<element_{element_numbers[int(m.group(1))]}>>>",
            text,
        )

    prompts = [shot.prompt for shot in request.shots] or [request.prompt]
    stills = tuple(
        ImageRequest(
            model=spec["model"],
            prompt=renumber(prompt),
            resolution=spec["still_resolution"],
            aspect_ratio=scene.settings.aspect_ratio,
            images=tuple(images),
            elements=elements,
        )
        for prompt in prompts
    )
    return stills, None


def lower_narration(text: str, voice: Voice) -> SpeechRequest:
    """A scene's rendered narration as one TTS call in its narrator's voice (§11.2)."""
    return SpeechRequest(text, voice.media, voice.language, voice.speed)


def lower_sfx(scene: Scene, seconds: float) -> EffectRequest | None:
    """A scene's sound effect (§11.2): as long as written, else as long as the scene
    (`seconds`, all its shots, or the video it edits) kept within 3-10 s."""
    if scene.sfx is None:
        return None
    if scene.sfx_duration is not None:
        return EffectRequest(scene.sfx, scene.sfx_duration)
    spec = sound()["sfx_seconds"]
    low, high = float(spec["min"]), float(spec["max"])
    return EffectRequest(scene.sfx, min(max(float(seconds), low), high))
