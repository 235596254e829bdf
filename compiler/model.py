"""The intermediate representation every stage after `resolve` speaks, and the model data.

A `Storyboard` holds resolved settings and references; a `Scene` keeps its JSON path into
the source so any later stage can point a diagnostic at the exact YAML value.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml

from .diagnostics import Location
from .load import JsonPath, SourceDoc
from .request import (
    EffectRequest,
    ElementId,
    ElementMedia,
    ElementToMake,
    GeneratedImage,
    ImageMedia,
    ImageRequest,
    LastFrame,
    LocalFile,
    PresetVoice,
    SpeechRequest,
    Url,
    VideoRequest,
    VoiceMedia,
    VoiceRequest,
    VoiceToMake,
)

RefKind = Literal["image", "element", "video"]
REF_KINDS: tuple[RefKind, ...] = ("image", "element", "video")


@functools.cache
def model_data() -> dict[str, Any]:
    """Model capabilities, limits and prices from `models.yaml` (read once)."""
    text = (Path(__file__).parent / "models.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return data


def capabilities(model: str) -> dict[str, Any]:
    caps: dict[str, Any] = model_data()["models"][model]
    return caps


def limits() -> dict[str, Any]:
    lim: dict[str, Any] = model_data()["limits"]
    return lim


def strict_reading(name: str) -> str:
    text: str = model_data()["strict_readings"][name]
    return text


def change(name: str) -> str:
    """What Kling changed in 2026 (kling-api.md §11), for a hint: "since 05/07/2026 ..."."""
    text: str = model_data()["changes"][name]
    return text


def element_tag(kind: str) -> str:
    """Kling's tag id for an element kind (kling-api.md §7.1 `tag_list`)."""
    tags: dict[str, str] = model_data()["element_kinds"]
    return tags[kind]


def sound() -> dict[str, Any]:
    """Voices, speech and sound effects: limits, preset voices and prices (§11.2)."""
    data: dict[str, Any] = model_data()["sound"]
    return data


def omni_image() -> dict[str, Any]:
    """Omni-Image's limits and prices (kling-api.md §11.1)."""
    data: dict[str, Any] = model_data()["omni_image"]
    return data


@dataclass(frozen=True, slots=True)
class Settings:
    """Task settings after scene overrides are applied."""

    model: str
    mode: str
    aspect_ratio: str
    sound: bool


@dataclass(frozen=True, slots=True)
class ImageRef:
    name: str
    path: JsonPath
    url: str | None = None
    file: str | None = None  # posix path relative to the storyboard's directory
    sha256: str | None = None
    size: tuple[int, int] | None = None
    after: str | None = None  # the last frame of this scene's clip, known at render time
    # A generated image (`{generate: PROMPT}`): its prompt template and settings, and,
    # once its prompt is rendered, the Omni-Image work it is known by.
    generate: str | None = None
    resolution: str = "1k"
    aspect_ratio: str | None = None  # as made: written, else the storyboard's
    generated: GeneratedImage | None = None

    @property
    def is_generated(self) -> bool:
        return self.generate is not None

    @property
    def media(self) -> ImageMedia:
        """This image as a typed medium of a request (request.py)."""
        if self.after is not None:
            return LastFrame(self.after)
        if self.generate is not None:
            # (no digest before its prompt renders; a board whose prompt failed has errors
            # and so no tasks, which are the only readers of media)
            return self.generated or GeneratedImage(self.name, "")
        if self.url is not None:
            return Url(self.url)
        assert self.file is not None and self.sha256 is not None
        return LocalFile(self.file, self.sha256)


@dataclass(frozen=True, slots=True)
class Voice:
    """A voice under `voices:`: a Kling preset (`preset`), or a custom voice made once
    from a sample (`request`). Narration speaks `language` at `speed`."""

    name: str
    path: JsonPath
    language: str = "en"
    speed: float = 1.0
    preset: str | None = None
    request: VoiceRequest | None = None  # a custom voice's custom-voice task

    @property
    def media(self) -> VoiceMedia:
        """This voice as a typed medium of a request (request.py)."""
        if self.preset is not None:
            return PresetVoice(self.preset)
        from .soundwire import voice_digest

        assert self.request is not None
        return VoiceToMake(self.name, voice_digest(self.request))


@dataclass(frozen=True, slots=True)
class Soundtrack:
    """`soundtrack:`: music under the whole film, and the film's loudness target."""

    music: LocalFile | None = None
    loudness: float = -14.0  # integrated LUFS
    true_peak: float = -1.0  # dBTP, at most
    music_gain: float = 0.0  # dB on the music before the mix: its balance against speech
    path: JsonPath = ("soundtrack",)


@dataclass(frozen=True, slots=True)
class ElementRef:
    """An element from the user's Kling library (`element_id`), or one storyboard creates
    from local images (`images`, `description`): its id is known only at render time.

    A made element may speak in a voice (`voice:`): it is then created with
    `element_voice_id` set to that voice's id (a preset's, or the custom voice's once
    made), and the voice is part of its digest."""

    name: str
    path: JsonPath
    element_id: int | None = None
    images: tuple[ImageRef, ...] = ()
    description: str | None = None
    voice: VoiceMedia | None = None
    kind: str | None = None  # Kling's tag (models.yaml `element_kinds`): character, item, ...

    @property
    def digest(self) -> str:
        """What the element is made of: its description, its images' content, its kind, and
        the identity of its voice (a preset id, or the custom voice's request digest)."""
        parts = [self.description or "", *(image.sha256 or "" for image in self.images)]
        if self.kind is not None:  # absent, the digest stays what it was before kinds
            parts.append(f"kind:{self.kind}")
        if isinstance(self.voice, PresetVoice):
            parts.append(f"voice:preset:{self.voice.id}")
        elif isinstance(self.voice, VoiceToMake):
            parts.append(f"voice:custom:{self.voice.digest}")
        return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()

    @property
    def media(self) -> ElementMedia:
        if self.element_id is not None:
            return ElementId(self.element_id)
        return ElementToMake(self.name, self.digest)


@dataclass(frozen=True, slots=True)
class VideoRef:
    name: str
    path: JsonPath
    url: str
    duration: float | None = None


Ref = ImageRef | ElementRef | VideoRef


@dataclass(frozen=True, slots=True)
class Refs:
    images: dict[str, ImageRef] = field(default_factory=dict)
    elements: dict[str, ElementRef] = field(default_factory=dict)
    videos: dict[str, VideoRef] = field(default_factory=dict)
    # Names whose definitions were invalid: uses of them are not reported a second time.
    broken: frozenset[tuple[RefKind, str]] = frozenset()
    # Kinds whose whole table was invalid (`refs.images: [a, b]`): any name may be meant.
    broken_kinds: frozenset[RefKind] = frozenset()

    def table(
        self, kind: RefKind
    ) -> dict[str, ImageRef] | dict[str, ElementRef] | dict[str, VideoRef]:
        if kind == "image":
            return self.images
        if kind == "element":
            return self.elements
        return self.videos


@dataclass(frozen=True, slots=True)
class Shot:
    template: str
    duration: int
    path: JsonPath


@dataclass(frozen=True, slots=True)
class VideoUse:
    ref: str
    refer_type: str
    keep_original_sound: bool | None
    path: JsonPath


@dataclass(frozen=True, slots=True)
class Scene:
    id: str
    path: JsonPath
    settings: Settings
    prompt: str | None
    duration: int | None
    shots: tuple[Shot, ...]
    first_frame: str | None
    end_frame: str | None
    video: VideoUse | None
    vars: dict[str, Any]
    takes: int = 1
    selected: int = 1
    enabled: bool = True
    after: str | None = None  # `first_frame: {after: SCENE}`
    auto_shots: bool = False  # `shots: auto`: Kling plans the cuts from `prompt`
    # Parts written but unusable (they broke the schema, or name nothing): the rules that
    # depend on them are skipped, since the problem is already reported where it is.
    # Names: settings ("model", "mode", "aspect_ratio", "sound"), "duration", "shots",
    # "first_frame", "end_frame", "video", "prompt".
    unknown: frozenset[str] = frozenset()
    broken_vars: frozenset[str] = frozenset()  # vars whose values broke the schema
    # Sound: the narration template, the voice that speaks it (the scene's `narrator`,
    # else the board's), and the sound effect with its duration (None: the default).
    narration: str | None = None
    narrator: str | None = None
    sfx: str | None = None
    sfx_duration: float | None = None

    @property
    def multi_shot(self) -> bool:
        return bool(self.shots) or self.auto_shots

    @property
    def label(self) -> str:
        """How diagnostics name the scene: by its id, else by its place in the file."""
        return f"scene '{self.id}'" if self.id else f"scene {int(self.path[-1]) + 1}"


@dataclass(frozen=True, slots=True)
class Storyboard:
    doc: SourceDoc
    base_dir: Path
    project_root: Path
    title: str | None
    settings: Settings
    usd_per_unit: float
    budget_usd: float | None
    refs: Refs
    scenes: tuple[Scene, ...]
    usd_per_image_unit: float = 0.0035
    vars: dict[str, Any] = field(default_factory=dict)  # the top-level vars, as usable
    broken_vars: frozenset[str] = frozenset()  # top-level vars whose values broke the schema
    voices: dict[str, Voice] = field(default_factory=dict)
    broken_voices: frozenset[str] = frozenset()  # names whose definitions are invalid
    narrator: str | None = None  # the default voice of narration
    soundtrack: Soundtrack | None = None

    def loc(self, path: JsonPath, *, key: bool = False) -> Location:
        return self.doc.loc(path, key=key)

    def setting_loc(self, scene: Scene, name: str) -> Location:
        """Where a scene's effective setting was written: on the scene, at the top, or nowhere."""
        data = self.doc.data
        scene_data = data["scenes"][scene.path[-1]]
        if name in scene_data:
            return self.loc((*scene.path, name))
        if name in data:
            return self.loc((name,))
        return self.loc((*scene.path, "id"))


@dataclass(frozen=True, slots=True)
class RenderedScene:
    """A scene with its final prompt strings and the media lists in payload order."""

    scene: Scene
    prompt: str | None
    shot_prompts: tuple[str, ...]
    images: tuple[ImageRef, ...]  # payload order: typed frames first
    elements: tuple[ElementRef, ...]
    videos: tuple[VideoRef, ...]
    first_frame: ImageRef | None
    end_frame: ImageRef | None
    # Prompts that could not be rendered (their problems are reported). When anything of
    # the scene failed, `complete` is False and the media lists are lower bounds.
    unrendered: frozenset[JsonPath] = frozenset()
    complete: bool = True

    @property
    def frame_types(self) -> tuple[str, ...]:
        """The `type` of the leading entries of `images`: the typed frames come first."""
        types = ("first_frame",) if self.first_frame is not None else ()
        return types + (("end_frame",) if self.end_frame is not None else ())


@dataclass(frozen=True, slots=True)
class RenderedImage:
    """A generated image ref with its final prompt and the media it mentions, numbered
    by its own lists (`<<<image_N>>>` of its Omni-Image request, not of any scene's)."""

    ref: ImageRef
    prompt: str | None  # None: the prompt could not be rendered (reported)
    images: tuple[ImageRef, ...] = ()
    elements: tuple[ElementRef, ...] = ()
    complete: bool = True

    @property
    def path(self) -> JsonPath:
        return (*self.ref.path, "generate")


@dataclass(frozen=True, slots=True)
class Task:
    """One compiled scene: its request to Kling and its estimated price.

    `stills` holds one Omni-Image request per shot (a single-shot scene and a
    `shots: auto` scene have one), for `render --stills`; a scene that cannot have stills
    has none, and `stills_note` says why.
    """

    scene: str
    request: VideoRequest
    seconds: float
    units: float
    usd: float  # per take
    estimate_note: str | None = None
    takes: int = 1
    selected: int = 1
    enabled: bool = True
    after: str | None = None
    stills: tuple[ImageRequest, ...] = ()
    stills_note: str | None = None
    still_units: Decimal = Decimal(0)  # image units of each still
    still_usd: Decimal = Decimal(0)  # USD of each still
    # Sound (§11.2): the scene's narration (one TTS call) and its sound effect, each with
    # its price in video units a call and in USD.
    narration: SpeechRequest | None = None
    narration_units: Decimal = Decimal(0)
    narration_usd: Decimal = Decimal(0)
    sfx: EffectRequest | None = None
    sfx_units: Decimal = Decimal(0)
    sfx_usd: Decimal = Decimal(0)

    @property
    def payload(self) -> dict[str, Any]:
        """The request as `compile --json` shows it (media as `local:…@sha256:…`)."""
        from .wire import display_json

        return display_json(self.request)

    def as_json(self) -> dict[str, Any]:
        from .wire import display_value, omni_image_json

        doc: dict[str, Any] = {
            "scene": self.scene,
            "payload": self.payload,
            "seconds": self.seconds,
            "units": self.units,
            "usd": self.usd,
        }
        if self.estimate_note:
            doc["estimate_note"] = self.estimate_note
        if self.takes != 1 or self.selected != 1:
            doc["takes"], doc["selected"] = self.takes, self.selected
        if not self.enabled:
            doc["enabled"] = False
        if self.after is not None:
            doc["after"] = self.after
        doc["stills"] = [
            {
                "payload": omni_image_json(still, display_value),
                "image_units": float(self.still_units),
                "usd": float(self.still_usd),
            }
            for still in self.stills
        ]
        if self.stills_note:
            doc["stills_note"] = self.stills_note
        if self.narration is not None or self.sfx is not None:
            from .soundwire import effect_json, speech_json

            if self.narration is not None:
                doc["narration"] = {
                    "payload": speech_json(self.narration),
                    "units": float(self.narration_units),
                    "usd": float(self.narration_usd),
                }
            if self.sfx is not None:
                doc["sfx"] = {
                    "payload": effect_json(self.sfx),
                    "units": float(self.sfx_units),
                    "usd": float(self.sfx_usd),
                }
        return doc


@dataclass(frozen=True, slots=True)
class ImageTask:
    """One generated image ref that an enabled scene uses: its Omni-Image request and
    price (image units, their own currency: kling-api.md §11.1)."""

    name: str
    request: ImageRequest
    units: Decimal  # image units
    usd: Decimal
    path: JsonPath  # of the ref, for diagnostics and plans

    @property
    def payload(self) -> dict[str, Any]:
        from .wire import display_value, omni_image_json

        return omni_image_json(self.request, display_value)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "payload": self.payload,
            "image_units": float(self.units),
            "usd": float(self.usd),
        }


@dataclass(frozen=True, slots=True)
class VoiceTask:
    """One custom voice that a narration or an element uses: its custom-voice request,
    made once, and its price (video units a call, kling-api.md §11.2)."""

    name: str
    request: VoiceRequest
    units: Decimal
    usd: Decimal
    path: JsonPath  # of the voice, for diagnostics and plans

    @property
    def media(self) -> VoiceToMake:
        from .soundwire import voice_digest

        return VoiceToMake(self.name, voice_digest(self.request))

    def as_json(self) -> dict[str, Any]:
        from .soundwire import voice_json

        return {
            "name": self.name,
            "payload": voice_json(self.request),
            "digest": self.media.digest,
            "units": float(self.units),
            "usd": float(self.usd),
        }
