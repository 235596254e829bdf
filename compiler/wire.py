"""A `VideoRequest` as JSON: the Omni-Video body, in its three uses.

The body's shape is written once (`omni_video_json`); what differs is how a medium is
spelled in it:
- `kling_value` at the client edge: Base64 or an element id, what Kling takes (the
  executor supplies the bytes and ids);
- `display_value` in `compile --json`: `local:PATH@sha256:HEX` and the like, for people
  (README "compile"); nothing reads these strings back;
- `record_value` in the lockfile: a small JSON object per medium, so `plan` can name the
  file that changed.
The digest that identifies a task's work reads media by content (`content_key`).
A second request format (Kling's "new-standard" body) would be a second shape function
here, fed by the same `VideoRequest`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from .request import (
    ElementId,
    ElementToMake,
    FrameFile,
    GeneratedImage,
    ImageRequest,
    LastFrame,
    LocalFile,
    Media,
    Url,
    VideoRequest,
)

# Part of every digest: bump it when lowering changes what the same YAML asks of Kling,
# so that old clips are re-rendered rather than silently reused.
COMPILER_SALT = "storyboard-lowering-1"

MediaValue = Callable[[Media], Any]


def content_key(media: Media) -> str | int:
    """What a digest sees of a medium: its content, not its path or its scene.

    Kept equal to the form lockfiles of version 1 were digested with, so upgrading the
    compiler does not make finished work look changed (and be paid for again).
    """
    match media:
        case Url(url):
            return url
        case LocalFile(_, sha) | FrameFile(_, _, sha):
            return f"sha256:{sha}"
        case ElementToMake(_, digest):
            return f"sha256:{digest}"
        case ElementId(number):
            return number
        case LastFrame(scene):
            return f"after:{scene}"  # no digest is taken before the frame exists
        case GeneratedImage(_, digest):
            return f"generated:{digest}"


def omni_video_json(req: VideoRequest, media: MediaValue) -> dict[str, Any]:
    """The `POST /v1/videos/omni-video` body (kling-api.md §2.1), media spelled by `media`.

    Explicit where the API's defaults are wrong for us: `model_name`, `mode`, `sound`
    and `refer_type` are always sent; durations are strings.
    """
    body: dict[str, Any] = {
        "model_name": req.model,
        "mode": req.mode,
        "sound": "on" if req.sound else "off",
    }
    if req.aspect_ratio is not None:
        body["aspect_ratio"] = req.aspect_ratio
    if req.duration is not None:
        body["duration"] = str(req.duration)
    if req.shots:
        body["multi_shot"] = True
        body["shot_type"] = "customize"
    elif req.auto_shots:
        body["multi_shot"] = True
        body["shot_type"] = "intelligence"
    body["prompt"] = req.prompt
    if req.shots:
        body["multi_prompt"] = [
            {"index": shot.index, "prompt": shot.prompt, "duration": str(shot.duration)}
            for shot in req.shots
        ]
    if req.images:
        body["image_list"] = [
            {"image_url": media(item.media), **({"type": item.type} if item.type else {})}
            for item in req.images
        ]
    if req.elements:
        body["element_list"] = [{"element_id": media(element)} for element in req.elements]
    if req.video is not None:
        video: dict[str, Any] = {"video_url": req.video.url, "refer_type": req.video.refer_type}
        if req.video.keep_original_sound is not None:
            video["keep_original_sound"] = "yes" if req.video.keep_original_sound else "no"
        body["video_list"] = [video]
    return body


def display_value(media: Media) -> str | int:
    """How `compile --json` shows a medium (README "compile")."""
    match media:
        case Url(url):
            return url
        case LocalFile(file, sha):
            return f"local:{file}@sha256:{sha}"
        case FrameFile(_, file, sha):
            return f"frame:{file}@sha256:{sha}"
        case LastFrame(scene):
            return f"after:{scene}"
        case ElementToMake(name, digest):
            return f"element:{name}@sha256:{digest}"
        case ElementId(number):
            return number
        case GeneratedImage(name, digest):
            return f"generated:{name}@sha256:{digest}"


def record_value(media: Media) -> Any:
    """How the lockfile records a medium: plain JSON that names it."""
    match media:
        case Url(url):
            return url
        case LocalFile(file, sha):
            return {"file": file, "sha256": sha}
        case FrameFile(scene, file, sha):
            return {"last_frame_of": scene, "file": file, "sha256": sha}
        case LastFrame(scene):
            return {"last_frame_of": scene}
        case ElementToMake(name, digest):
            return {"element": name, "sha256": digest}
        case ElementId(number):
            return number
        case GeneratedImage(name, digest):
            return {"generated": name, "sha256": digest}


def display_json(req: VideoRequest) -> dict[str, Any]:
    return omni_video_json(req, display_value)


def record_json(req: VideoRequest) -> dict[str, Any]:
    return omni_video_json(req, record_value)


def request_digest(req: VideoRequest) -> str:
    """sha256 of the canonical body, media by content (not path or scene), salted."""
    canonical = json.dumps(
        {"salt": COMPILER_SALT, "payload": omni_video_json(req, content_key)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def omni_image_json(req: ImageRequest, media: MediaValue) -> dict[str, Any]:
    """The `POST /v1/images/omni-image` body (kling-api.md §11.1), media spelled by `media`."""
    body: dict[str, Any] = {
        "model_name": req.model,
        "prompt": req.prompt,
        "resolution": req.resolution,
        "aspect_ratio": req.aspect_ratio,
        "n": req.n,
    }
    if req.images:
        body["image_list"] = [{"image": media(image)} for image in req.images]
    if req.elements:
        body["element_list"] = [{"element_id": media(element)} for element in req.elements]
    return body


def image_digest(req: ImageRequest) -> str:
    """sha256 of the canonical Omni-Image body, media by content, salted."""
    canonical = json.dumps(
        {"salt": COMPILER_SALT, "image": omni_image_json(req, content_key)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
