"""Describe a film as an editor's timeline. Film clips → OpenTimelineIO → .otio/.fcpxml/.xml/.edl.

One clip per enabled scene, in film order, named by its scene id, its media the scene's
own clip (not the film), its prompts, estimate, take and the takes not chosen in the
clip's metadata under "storyboard". The formats are written by OpenTimelineIO's official
adapters; what an editor needs and an adapter leaves out is added here, per format:

- `otio` (DaVinci Resolve 18.5+, any OTIO tool): media by a path relative to the file.
- `fcp7` (FCP 7 XML `.xml`: Premiere Pro, Resolve): a filled `<format>` on the sequence
  (Resolve ignores a sequence without one: OpenTimelineIO issue 839) and on each file,
  `<sourcetrack>` on sound clips, absolute `file://localhost/` URLs (FCP 7 XML has no
  relative paths).
- `fcpxml` (Final Cut Pro 10.4.1+, Resolve): `<format>` resources with their frame size,
  `asset-clip`s that bring each clip's picture and sound, absolute `file:///` URLs
  (Final Cut reads no relative ones).
- `edl` (CMX 3600: any editor): one video track, 8-character reel names from the scene
  ids, non-drop timecode at the film's frame rate; the media path relative to the file.
  Picture only: neither the clips' sound nor the film's own sound is in it.

The film's own sound (`AudioClip`: each scene's narration and sound effect at the scene's
start, the music under the whole film in its loops) goes on audio tracks of its own after
A1, one per kind present: "Narration", "Effects", "Music", so an editor can remix them.
Each sound sits at its start rounded to the nearest frame of the film's rate, with gaps
between; its name and its metadata (kind, scene, file, sha256; a music loop has name and
loop instead of scene) are like a scene clip's. In `fcp7` they are the sequence's audio
tracks after A1, in that order (FCP 7 XML names no tracks); in `fcpxml`, which has no
tracks, audio-only clips connected below the storyline, one lane per kind in that order
(-1, -2, …), with Final Cut's roles "dialogue", "effects" and "music", and each file in
the event as "opening narration", "climb effect", "music". `edl` has none of it.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import opentimelineio as otio  # type: ignore[import-untyped]

from .fsutil import atomic_write_text
from .model import Task

__all__ = [
    "AUDIO_TRACKS",
    "FORMATS",
    "AudioClip",
    "FilmClip",
    "OtherTake",
    "build",
    "export",
    "timeline_path",
]

META = "storyboard"  # the metadata namespace of everything storyboard adds


@dataclass(frozen=True, slots=True)
class Format:
    suffix: str
    adapter: str
    editors: str


FORMATS: dict[str, Format] = {
    "otio": Format(".otio", "otio_json", "DaVinci Resolve, OpenTimelineIO tools"),
    "fcpxml": Format(".fcpxml", "fcpx_xml", "Final Cut Pro, DaVinci Resolve"),
    "fcp7": Format(".xml", "fcp_xml", "Premiere Pro, DaVinci Resolve"),
    "edl": Format(".edl", "cmx_3600", "any editor (CMX 3600)"),
}


@dataclass(frozen=True, slots=True)
class OtherTake:
    """A take of a scene the film does not show, kept in the timeline as metadata."""

    take: int
    status: str
    file: Path | None  # its clip, when it has one on disk
    sha256: str | None


@dataclass(frozen=True, slots=True)
class FilmClip:
    """One scene's selected clip, where it is, and how long it runs."""

    task: Task
    take: int
    file: Path
    sha256: str
    frames: int
    rate: Fraction
    width: int
    height: int
    sound: bool  # the clip has a sound track
    others: tuple[OtherTake, ...] = ()

    @property
    def scene(self) -> str:
        return self.task.scene

    @property
    def seconds(self) -> Fraction:
        return self.frames / self.rate


@dataclass(frozen=True, slots=True)
class AudioClip:
    """A sound the film lays under its picture: placed `start` seconds in, for `seconds`."""

    kind: Literal["narration", "sfx", "music"]
    name: str  # e.g. the scene id ("opening"), or "music"
    file: Path
    start: Fraction  # seconds from the film's first frame
    seconds: Fraction  # how long it plays (from the file's start)
    sha256: str


# Each kind of the film's own sound: its track's name, in track order, and its role in
# Final Cut Pro (which mixes by role, having no tracks).
AUDIO_TRACKS: dict[str, str] = {"narration": "Narration", "sfx": "Effects", "music": "Music"}
_FCPX_ROLES = {"narration": "dialogue", "sfx": "effects", "music": "music"}


def timeline_path(renders: Path, name: str, fmt: str) -> Path:
    """Where `export` writes a storyboard's timeline: renders/NAME.otio and the like."""
    return renders / f"{name}{FORMATS[fmt].suffix}"


def build(
    clips: Sequence[FilmClip],
    folder: Path,
    *,
    title: str,
    storyboard: str = "",
    url: Callable[[Path], str] | None = None,
    audio: Sequence[AudioClip] = (),
) -> Any:
    """The film as an `otio.schema.Timeline`: V1 with every clip, A1 with those with sound,
    then the film's own sound (`audio`): a track for each kind present, in the order of
    AUDIO_TRACKS.

    Each sound starts at its `start` rounded to the nearest frame at the film's rate (half
    a frame up) and ends at its end rounded the same way, so sounds laid back to back (the
    music's loops) stay back to back. Sounds of one kind do not overlap: where one would
    play into the next, it is cut short at the next one's start (one left with no frame,
    as the first of two that start on the same frame, is left out). ValueError for a sound
    that starts before the film or after its last frame, or has a negative length.

    Media URLs are paths relative to `folder` (where the timeline file goes), unless `url`
    makes them otherwise.
    """
    if not clips:
        raise ValueError("a timeline needs at least one clip")
    to_url = url or (lambda path: _relative_url(path, folder))
    rate = _film_rate(clips)
    tl = otio.schema.Timeline(name=title)
    tl.global_start_time = otio.opentime.RationalTime(0, float(rate))
    tl.metadata[META] = {
        "storyboard": storyboard,
        "scenes": [clip.scene for clip in clips],
        "estimate_usd": round(sum(clip.task.usd for clip in clips), 4),
    }
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for clip in clips:
        video.append(_clip(clip, to_url, folder))
    tl.tracks.append(video)
    if any(clip.sound for clip in clips):
        a1 = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
        for clip in clips:
            if clip.sound:
                a1.append(_clip(clip, to_url, folder))
            else:
                a1.append(otio.schema.Gap(source_range=_range(clip)))
        tl.tracks.append(a1)
    film_frames = _frame(sum((clip.seconds for clip in clips), Fraction(0)) * rate)
    tl.tracks.extend(_sound_tracks(audio, rate, film_frames, to_url, folder))
    return tl


def export(
    clips: Sequence[FilmClip],
    dest: Path,
    fmt: str,
    *,
    title: str,
    storyboard: str = "",
    audio: Sequence[AudioClip] = (),
) -> Path:
    """Write the film's timeline to `dest` in `fmt` (one of FORMATS); return `dest`.

    The film's own sound (`audio`, see `build`) is in every format but `edl`, which is
    picture only. The file is written atomically, and not at all when it would not change.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown timeline format {fmt!r}: one of {', '.join(FORMATS)}")
    writer = _WRITERS[fmt]
    text = writer(_Film(clips, tuple(audio), dest.parent, title, storyboard))
    if not dest.is_file() or dest.read_text(encoding="utf-8") != text:
        atomic_write_text(dest, text)
    return dest


# ── the timeline ──────────────────────────────────────────────────────────────────────


def _clip(clip: FilmClip, url: Callable[[Path], str], folder: Path) -> Any:
    request = clip.task.request
    media = otio.schema.ExternalReference(target_url=url(clip.file), available_range=_range(clip))
    media.name = clip.file.name
    about: dict[str, Any] = {
        "scene": clip.scene,
        "take": clip.take,
        "file": _relative(clip.file, folder),
        "sha256": clip.sha256,
        "model": request.model,
        "mode": request.mode,
        "sound": request.sound,
        "estimate": {
            "seconds": clip.task.seconds,
            "units": clip.task.units,
            "usd": clip.task.usd,
        },
        "other_takes": [
            {
                "take": other.take,
                "status": other.status,
                "file": _relative(other.file, folder) if other.file else None,
                "sha256": other.sha256,
            }
            for other in clip.others
        ],
    }
    if request.aspect_ratio is not None:
        about["aspect_ratio"] = request.aspect_ratio
    if request.shots:
        about["shots"] = [{"prompt": s.prompt, "seconds": s.duration} for s in request.shots]
    else:
        about["prompt"] = request.prompt
    made = otio.schema.Clip(name=clip.scene, media_reference=media, source_range=_range(clip))
    made.metadata[META] = about
    return made


def _sound_tracks(
    audio: Sequence[AudioClip],
    rate: Fraction,
    film_frames: int,
    url: Callable[[Path], str],
    folder: Path,
) -> list[Any]:
    """A track for each kind of sound in `audio`, in the order of AUDIO_TRACKS."""
    for sound in audio:
        if sound.kind not in AUDIO_TRACKS:
            raise ValueError(f"{sound.name}: unknown kind of sound {sound.kind!r}")
        if sound.seconds < 0:
            raise ValueError(f"{sound.kind} {sound.name}: plays {sound.seconds} s")
        if sound.start < 0 or _frame(sound.start * rate) >= film_frames:
            raise ValueError(
                f"{sound.kind} {sound.name}: starts at {float(sound.start):.3f} s, "
                f"outside the film (0 to {float(film_frames / rate):.3f} s)"
            )
    # The frames each file has (as far as the film plays it), for its media's range.
    lengths: dict[Path, int] = {}
    for sound in audio:
        frames = math.ceil(sound.seconds * rate)
        lengths[sound.file] = max(lengths.get(sound.file, 0), frames)
    tracks = []
    for kind, track_name in AUDIO_TRACKS.items():
        placed = _place([sound for sound in audio if sound.kind == kind], rate)
        if not placed:
            continue
        track = otio.schema.Track(name=track_name, kind=otio.schema.TrackKind.Audio)
        at = 0
        for n, (sound, first, last) in enumerate(placed, start=1):
            if first > at:
                track.append(otio.schema.Gap(source_range=_frames(0, first - at, rate)))
            media = otio.schema.ExternalReference(
                target_url=url(sound.file), available_range=_frames(0, lengths[sound.file], rate)
            )
            media.name = sound.file.name
            made = otio.schema.Clip(
                name=sound.name, media_reference=media, source_range=_frames(0, last - first, rate)
            )
            about: dict[str, Any] = {"kind": kind}
            if kind == "music":
                about.update({"name": sound.name, "loop": n})
            else:
                about["scene"] = sound.name
            about.update({"file": _relative(sound.file, folder), "sha256": sound.sha256})
            made.metadata[META] = about
            track.append(made)
            at = last
        tracks.append(track)
    return tracks


def _place(sounds: Sequence[AudioClip], rate: Fraction) -> list[tuple[AudioClip, int, int]]:
    """Sounds of one track in order, each with its first frame and the frame after its last;
    one that would play into the next is cut at the next one's start."""
    spans = sorted(
        (
            (sound, _frame(sound.start * rate), _frame((sound.start + sound.seconds) * rate))
            for sound in sounds
        ),
        key=lambda span: span[1],
    )
    placed = []
    for n, (sound, first, last) in enumerate(spans):
        if n + 1 < len(spans):
            last = min(last, spans[n + 1][1])
        if last > first:
            placed.append((sound, first, last))
    return placed


def _frame(seconds_times_rate: Fraction) -> int:
    """The nearest frame (half a frame rounds up, not to even)."""
    return math.floor(seconds_times_rate + Fraction(1, 2))


def _frames(start: int, frames: int, rate: Fraction) -> Any:
    return otio.opentime.TimeRange(
        otio.opentime.RationalTime(start, float(rate)),
        otio.opentime.RationalTime(frames, float(rate)),
    )


def _range(clip: FilmClip) -> Any:
    rate = float(clip.rate)
    return otio.opentime.TimeRange(
        otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(clip.frames, rate)
    )


def _film_rate(clips: Sequence[FilmClip]) -> Fraction:
    """The frame rate most clips have (the first clip's on a tie): the film's."""
    counts: dict[Fraction, int] = {}
    for clip in clips:
        counts[clip.rate] = counts.get(clip.rate, 0) + 1
    return max(counts, key=lambda rate: counts[rate])


def _film_size(clips: Sequence[FilmClip]) -> tuple[int, int]:
    counts: dict[tuple[int, int], int] = {}
    for clip in clips:
        size = (clip.width, clip.height)
        counts[size] = counts.get(size, 0) + 1
    return max(counts, key=lambda size: counts[size])


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path, folder)).as_posix()


def _relative_url(path: Path, folder: Path) -> str:
    return quote(_relative(path, folder))


def _file_url(path: Path) -> str:
    """file:///abs/path, as Final Cut writes it."""
    return path.resolve().as_uri()


def _localhost_url(path: Path) -> str:
    """file://localhost/abs/path, as Premiere Pro and Final Cut Pro 7 write it."""
    return "file://localhost" + quote(path.resolve().as_posix())


# ── the formats ───────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class _Film:
    """What `export` hands each format's writer."""

    clips: Sequence[FilmClip]
    audio: tuple[AudioClip, ...]
    folder: Path
    title: str
    storyboard: str

    def build(self, url: Callable[[Path], str] | None = None, *, sound: bool = True) -> Any:
        audio = self.audio if sound else ()
        return build(
            self.clips,
            self.folder,
            title=self.title,
            storyboard=self.storyboard,
            url=url,
            audio=audio,
        )


def _write_otio(film: _Film) -> str:
    text: str = otio.adapters.write_to_string(film.build(), "otio_json")
    return text if text.endswith("\n") else text + "\n"


def _write_fcp7(film: _Film) -> str:
    clips = film.clips
    tl = film.build(_localhost_url)
    for track in tl.tracks:
        if track.kind == otio.schema.TrackKind.Audio:
            for item in track:
                if isinstance(item, otio.schema.Clip):
                    # Which of the file's tracks the clip plays (Premiere's own exports say).
                    item.metadata["fcp_xml"] = {
                        "sourcetrack": {"mediatype": "audio", "trackindex": "1"}
                    }
    root = ET.fromstring(otio.adapters.write_to_string(tl, "fcp_xml"))
    width, height = _film_size(clips)
    rate = _film_rate(clips)
    sequence = root.find("./project/children/sequence")
    assert sequence is not None
    video_format = sequence.find("./media/video/format")
    assert video_format is not None
    video_format.clear()
    video_format.append(_fcp7_picture(width, height, rate))
    if any(clip.sound for clip in clips) or _sound_tracks_of(tl):
        audio = sequence.find("./media/audio")
        assert audio is not None
        channels = _element("numOutputChannels", "2")
        audio_format = _element("format")
        audio_format.append(_fcp7_sound())
        audio[:0] = [channels, audio_format]
    by_url = {_localhost_url(clip.file): clip for clip in clips}
    sounds = {_localhost_url(sound.file) for sound in film.audio}
    for file in root.iter("file"):
        pathurl = file.findtext("pathurl")
        if pathurl is None or (pathurl not in by_url and pathurl not in sounds):
            continue  # a later mention of a file: <file id="…"/>
        media = file.find("media")
        if media is None:
            media = ET.SubElement(file, "media")
        media.clear()
        if pathurl not in by_url:
            ET.SubElement(media, "audio")  # a sound file: no picture, whatever its suffix
            continue
        clip = by_url[pathurl]
        video = ET.SubElement(media, "video")
        video.append(_fcp7_picture(clip.width, clip.height, clip.rate))
        if clip.sound:
            sound = ET.SubElement(media, "audio")
            sound.append(_fcp7_sound())
            sound.append(_element("channelcount", "2"))
    ET.indent(root, space="    ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE xmeml>\n{body}\n'


def _fcp7_picture(width: int, height: int, rate: Fraction) -> ET.Element:
    characteristics = _element("samplecharacteristics")
    characteristics.append(_fcp7_rate(rate))
    for tag, text in (
        ("width", str(width)),
        ("height", str(height)),
        ("anamorphic", "FALSE"),
        ("pixelaspectratio", "square"),
        ("fielddominance", "none"),
        ("colordepth", "24"),
    ):
        characteristics.append(_element(tag, text))
    return characteristics


def _fcp7_rate(rate: Fraction) -> ET.Element:
    timebase = -(-rate.numerator // rate.denominator)  # 24000/1001 is timebase 24, NTSC
    element = _element("rate")
    element.append(_element("timebase", str(timebase)))
    element.append(_element("ntsc", "FALSE" if rate == timebase else "TRUE"))
    return element


def _fcp7_sound() -> ET.Element:
    characteristics = _element("samplecharacteristics")
    characteristics.append(_element("depth", "16"))
    characteristics.append(_element("samplerate", "48000"))
    return characteristics


def _write_fcpx(film: _Film) -> str:
    clips = film.clips
    tl = film.build(_file_url)
    # An asset-clip brings its file's picture and sound together: no separate audio lane.
    # The film's own sound is connected below the storyline here, after the adapter.
    sound = _sound_tracks_of(tl)
    for track in [t for t in tl.tracks if t.kind == otio.schema.TrackKind.Audio]:
        tl.tracks.remove(track)
    root = ET.fromstring(otio.adapters.write_to_string(tl, "fcpx_xml"))
    resources = root.find("resources")
    assert resources is not None
    rate = _film_rate(clips)
    width, height = _film_size(clips)
    for fmt in resources.findall("format"):
        # The adapter names formats by asking ffprobe, which storyboard does not use.
        fmt.attrib.pop("name", None)
        name = _fcpx_format_name(width, height, rate)
        fmt.attrib.update(
            {
                "frameDuration": _fcpx_frame(rate),
                "width": str(width),
                "height": str(height),
                **({"name": name} if name else {}),
            }
        )
    by_url = {_file_url(clip.file): clip for clip in clips}
    for asset in resources.findall("asset"):
        clip = by_url[asset.get("src", "")]
        asset.set("hasVideo", "1")
        asset.set("hasAudio", "1" if clip.sound else "0")
        if clip.sound:
            asset.set("audioSources", "1")
    project = root.find("project")
    assert project is not None
    if not project.get("uid"):
        project.attrib.pop("uid", None)
    sequence = project.find("sequence")
    assert sequence is not None
    sequence.attrib.update({"tcStart": "0s", "tcFormat": "NDF"})
    if any(clip.sound for clip in clips) or sound:
        sequence.attrib.update({"audioLayout": "stereo", "audioRate": "48k"})
    spine = sequence.find("spine")
    assert spine is not None
    for n, item in enumerate(list(spine)):
        video = item.find("video")
        if item.tag != "clip" or video is None:
            continue
        replacement = ET.Element(
            "asset-clip",
            {
                "name": item.get("name", ""),
                "ref": video.get("ref", ""),
                "offset": item.get("offset", "0s"),
                "duration": item.get("duration", "0s"),
                "start": item.get("start", "0s"),
                "tcFormat": "NDF",
            },
        )
        spine.remove(item)
        spine.insert(n, replacement)
    for element in root.iter():
        for key in ("offset", "duration", "start"):
            value = element.get(key)
            if value is not None and value.endswith("/1s"):
                element.set(key, value[: -len("/1s")] + "s")  # "3/1s" is written "3s"
    if sound:
        _fcpx_connect(root, resources, spine, sound, rate)
    ET.indent(root, space="    ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n{body}\n'


def _sound_tracks_of(tl: Any) -> list[tuple[str, Any]]:
    """The timeline's tracks of the film's own sound, each with its kind."""
    kinds = {name: kind for kind, name in AUDIO_TRACKS.items()}
    return [
        (kinds[track.name], track)
        for track in tl.tracks
        if track.kind == otio.schema.TrackKind.Audio and track.name in kinds
    ]


def _fcpx_connect(
    root: ET.Element,
    resources: ET.Element,
    spine: ET.Element,
    sound: Sequence[tuple[str, Any]],
    rate: Fraction,
) -> None:
    """Connect the film's own sound below the storyline: for each sound an audio-only
    asset-clip with its role, in lane -1, -2, … (one lane per track, in track order), on the
    storyline clip it starts in, at its offset in that clip's own time."""
    storyline = [
        (_fcpx_seconds(item.get("offset", "0s")), _fcpx_seconds(item.get("start", "0s")), item)
        for item in spine
    ]
    assets: dict[str, str] = {}  # file URL: asset id
    for lane, (kind, track) in enumerate(sound, start=1):
        for n, item in enumerate(track):
            if not isinstance(item, otio.schema.Clip):
                continue
            url = item.media_reference.target_url
            if url not in assets:
                assets[url] = _fcpx_sound_asset(root, resources, kind, item, rate)
            at = _seconds(track.range_of_child_at_index(n).start_time, rate)
            offset, start, parent = next(
                (entry for entry in reversed(storyline) if entry[0] <= at), storyline[0]
            )
            ET.SubElement(
                parent,
                "asset-clip",
                {
                    "name": item.name,
                    "ref": assets[url],
                    "lane": str(-lane),
                    "offset": _fcpx_time(start + at - offset),
                    "duration": _fcpx_time(_seconds(item.source_range.duration, rate)),
                    "start": "0s",
                    "audioRole": _FCPX_ROLES[kind],
                },
            )


def _fcpx_sound_asset(
    root: ET.Element, resources: ET.Element, kind: str, item: Any, rate: Fraction
) -> str:
    """An audio-only asset for the file `item` plays, and its clip in the event (as the
    scenes' clips are there, for the browser); its id."""
    used = [int(e.get("id", "r")[1:] or 0) for e in resources]
    asset_id = f"r{max(used, default=0) + 1}"
    media = item.media_reference
    name = item.name if kind == "music" else f"{item.name} {'effect' if kind == 'sfx' else kind}"
    duration = _fcpx_time(_seconds(media.available_range.duration, rate))
    attributes = {"id": asset_id, "name": name, "src": media.target_url, "start": "0s"}
    attributes.update({"duration": duration, "hasVideo": "0", "hasAudio": "1", "audioSources": "1"})
    ET.SubElement(resources, "asset", attributes)
    project = next(n for n, element in enumerate(root) if element.tag == "project")
    clip = {"name": name, "ref": asset_id, "duration": duration, "audioRole": _FCPX_ROLES[kind]}
    root.insert(project, ET.Element("asset-clip", clip))
    return asset_id


def _seconds(time: Any, rate: Fraction) -> Fraction:
    """A RationalTime of whole frames at `rate`, in exact seconds."""
    return Fraction(round(time.rescaled_to(float(rate)).value)) / rate


def _fcpx_time(seconds: Fraction) -> str:
    """A time as FCPXML writes it: "3s", "5/2s", "1001/8000s"."""
    if seconds.denominator == 1:
        return f"{seconds.numerator}s"
    return f"{seconds.numerator}/{seconds.denominator}s"


def _fcpx_seconds(text: str) -> Fraction:
    return Fraction(text.removesuffix("s"))


def _fcpx_frame(rate: Fraction) -> str:
    """A frame's duration as Final Cut writes it: 100/2400s at 24 fps, 1001/24000s at 23.98."""
    if rate.denominator == 1:
        return f"100/{100 * rate.numerator}s"
    return f"{rate.denominator}/{rate.numerator}s"


# Final Cut's names of the standard formats; any other size is given by width and height.
_FCPX_SIZES = {(1280, 720): "720p", (1920, 1080): "1080p", (3840, 2160): "3840x2160p"}
_FCPX_RATES = {
    Fraction(24000, 1001): "2398",
    Fraction(24): "24",
    Fraction(25): "25",
    Fraction(30000, 1001): "2997",
    Fraction(30): "30",
    Fraction(50): "50",
    Fraction(60000, 1001): "5994",
    Fraction(60): "60",
}


def _fcpx_format_name(width: int, height: int, rate: Fraction) -> str | None:
    size, speed = _FCPX_SIZES.get((width, height)), _FCPX_RATES.get(rate)
    return f"FFVideoFormat{size}{speed}" if size and speed else None


def _write_edl(film: _Film) -> str:
    clips = film.clips
    tl = film.build(sound=False)  # picture only: the film's own sound is not in it
    reels = _reels([clip.scene for clip in clips])
    for track in tl.tracks:
        for item, reel in zip(
            [i for i in track if isinstance(i, otio.schema.Clip)], reels, strict=False
        ):
            item.metadata["cmx_3600"] = {"reel": reel}
    for track in [t for t in tl.tracks if t.kind == otio.schema.TrackKind.Audio]:
        tl.tracks.remove(track)  # CMX 3600 as written here: one picture track
    text: str = otio.adapters.write_to_string(
        tl, "cmx_3600", rate=float(_film_rate(clips)), style="avid"
    )
    lines = text.splitlines()
    # The frame count mode, which the adapter leaves out (every rate here is non-drop).
    at = 1 if lines and lines[0].startswith("TITLE:") else 0
    lines[at:at] = ["FCM: NON-DROP FRAME"]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def _reels(scenes: Sequence[str]) -> list[str]:
    """Unique reel names of at most 8 letters and digits, from the scene ids."""
    reels: list[str] = []
    for scene in scenes:
        base = re.sub(r"[^A-Za-z0-9]", "", scene)[:8] or "SCENE"
        reel, n = base, 1
        while reel in reels:
            n += 1
            reel = f"{base[: 8 - len(str(n))]}{n}"
        reels.append(reel)
    return reels


def _element(tag: str, text: str | None = None) -> ET.Element:
    element = ET.Element(tag)
    element.text = text
    return element


_WRITERS: dict[str, Callable[[_Film], str]] = {
    "otio": _write_otio,
    "fcp7": _write_fcp7,
    "fcpxml": _write_fcpx,
    "edl": _write_edl,
}
