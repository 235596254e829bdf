"""A scene's request to Kling as typed values: what to make, and the media it uses.

Lowering builds a `VideoRequest` once; plan, lockfile, executor and preview read its
fields and never a string form of them. Media are typed: a URL, a local file known by
its content digest, the last frame of an earlier scene's clip (before and after that
clip exists), an element from the user's library or one to be created. They become
Kling JSON only in `wire.py`, at the client edge, so a second request format (Kling's
"new-standard" body) is a second function there and nothing before it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

FrameType = Literal["first_frame", "end_frame"]


@dataclass(frozen=True, slots=True)
class Url:
    """An image or video Kling fetches itself."""

    url: str


@dataclass(frozen=True, slots=True)
class LocalFile:
    """An image in the project, relative to the storyboard's folder, known by content."""

    file: str  # posix path relative to the storyboard's folder
    sha256: str


@dataclass(frozen=True, slots=True)
class LastFrame:
    """The last frame of `scene`'s selected clip, before that clip exists."""

    scene: str


@dataclass(frozen=True, slots=True)
class FrameFile:
    """The last frame of `scene`'s clip, saved as `file` in the storyboard's renders folder."""

    scene: str
    file: str  # relative to renders/NAME, e.g. "opening.last.png"
    sha256: str


@dataclass(frozen=True, slots=True)
class ElementId:
    """An element from the user's Kling library."""

    id: int


@dataclass(frozen=True, slots=True)
class ElementToMake:
    """An element the storyboard creates from local images: its id is known at render time."""

    name: str
    digest: str  # of its description and images


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """An image ref Kling's Omni-Image makes (`refs.images.NAME: {generate: ...}`).

    Known by the digest of its `ImageRequest`: the work, not the PNG it became, so a
    scene that uses it changes exactly when the image's prompt, settings or what it
    mentions change. Once made, its PNG is `file` in the renders folder.
    """

    name: str
    digest: str  # wire.image_digest of its ImageRequest


ImageMedia = Url | LocalFile | LastFrame | FrameFile | GeneratedImage
ElementMedia = ElementId | ElementToMake
Media = ImageMedia | ElementMedia


@dataclass(frozen=True, slots=True)
class ImageItem:
    media: ImageMedia
    type: FrameType | None = None  # None: a reference image


@dataclass(frozen=True, slots=True)
class ShotPrompt:
    index: int
    prompt: str
    duration: int


@dataclass(frozen=True, slots=True)
class VideoItem:
    url: str
    refer_type: str  # feature | base
    keep_original_sound: bool | None = None


@dataclass(frozen=True, slots=True)
class VideoRequest:
    """One Omni-Video task: settings, prompt or shots, and media in payload order."""

    model: str
    mode: str
    sound: bool
    prompt: str
    aspect_ratio: str | None = None  # None where the API takes the shape from a frame
    duration: int | None = None  # None for a base edit (the input video's length)
    shots: tuple[ShotPrompt, ...] = ()  # non-empty: a customized multi-shot task
    auto_shots: bool = False  # `shots: auto`: Kling plans the cuts (shot_type intelligence)
    images: tuple[ImageItem, ...] = ()
    elements: tuple[ElementMedia, ...] = ()
    video: VideoItem | None = None

    @property
    def multi_shot(self) -> bool:
        return bool(self.shots) or self.auto_shots

    @property
    def image_media(self) -> tuple[ImageMedia, ...]:
        """The images it sends, in order, without their frame types."""
        return tuple(item.media for item in self.images)

    @property
    def waits_for(self) -> str | None:
        """The scene whose last frame this request still needs, if any."""
        for item in self.images:
            if isinstance(item.media, LastFrame):
                return item.media.scene
        return None

    def with_frame(self, frame: FrameFile) -> VideoRequest:
        """This request with its `LastFrame` first frame replaced by the saved frame."""
        images = tuple(
            replace(item, media=frame) if isinstance(item.media, LastFrame) else item
            for item in self.images
        )
        return replace(self, images=images)


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One Omni-Image task (kling-api.md §11.1): a generated image ref, or a still of a shot.

    `images` and `elements` are the prompt's `<<<image_N>>>` / `<<<element_N>>>` in order;
    Omni-Image takes at most 10 of them together.
    """

    model: str  # kling-v3-omni
    prompt: str
    resolution: str = "1k"  # 1k | 2k | 4k
    aspect_ratio: str = "16:9"
    images: tuple[ImageMedia, ...] = ()
    elements: tuple[ElementMedia, ...] = ()
    n: int = 1

    @property
    def image_media(self) -> tuple[ImageMedia, ...]:
        """The images it sends, in order (as `VideoRequest.image_media`)."""
        return self.images


# -- sound (kling-api.md §11.2; README "Sound") ----------------------------------------------


@dataclass(frozen=True, slots=True)
class PresetVoice:
    """One of Kling's preset voices, by its id."""

    id: str


@dataclass(frozen=True, slots=True)
class VoiceToMake:
    """A custom voice made once from a sample: its id is known at render time."""

    name: str
    digest: str  # of its VoiceRequest: a new sample makes a new voice


VoiceMedia = PresetVoice | VoiceToMake


@dataclass(frozen=True, slots=True)
class VoiceRequest:
    """A custom-voice task (`POST /v1/general/custom-voices`): a 5-30 s sample of one voice.

    Kling fetches the sample by URL (no Base64): `sample_url` as the user gave it, or a
    local `sample` the render uploads to the team's s3:// cache and sends presigned.
    """

    name: str  # the storyboard's name for the voice (Kling's voice_name, <= 20 chars)
    sample_url: str | None = None
    sample: LocalFile | None = None


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """A text-to-speech call (`POST /v1/audio/tts`): a scene's narration."""

    text: str  # <= 1,000 characters
    voice: VoiceMedia
    language: str  # "en" | "zh"
    speed: float = 1.0  # 0.8-2.0


@dataclass(frozen=True, slots=True)
class EffectRequest:
    """A sound-effect call (`POST /v1/audio/text-to-audio`): a scene's `sfx`."""

    prompt: str  # <= 200 characters
    duration: float  # 3.0-10.0 seconds
