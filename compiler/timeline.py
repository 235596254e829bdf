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
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import quote

import opentimelineio as otio  # type: ignore[import-untyped]

from .fsutil import atomic_write_text
from .model import Task

__all__ = ["FORMATS", "FilmClip", "OtherTake", "build", "export", "timeline_path"]

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
) -> Any:
    """The film as an `otio.schema.Timeline`: V1 with every clip, A1 with those with sound.

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
        audio = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
        for clip in clips:
            if clip.sound:
                audio.append(_clip(clip, to_url, folder))
            else:
                audio.append(otio.schema.Gap(source_range=_range(clip)))
        tl.tracks.append(audio)
    return tl


def export(
    clips: Sequence[FilmClip], dest: Path, fmt: str, *, title: str, storyboard: str = ""
) -> Path:
    """Write the film's timeline to `dest` in `fmt` (one of FORMATS); return `dest`.

    The file is written atomically, and not at all when it would not change.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown timeline format {fmt!r}: one of {', '.join(FORMATS)}")
    writer = _WRITERS[fmt]
    text = writer(clips, dest.parent, title, storyboard)
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


def _write_otio(clips: Sequence[FilmClip], folder: Path, title: str, storyboard: str) -> str:
    text: str = otio.adapters.write_to_string(
        build(clips, folder, title=title, storyboard=storyboard), "otio_json"
    )
    return text if text.endswith("\n") else text + "\n"


def _write_fcp7(clips: Sequence[FilmClip], folder: Path, title: str, storyboard: str) -> str:
    tl = build(clips, folder, title=title, storyboard=storyboard, url=_localhost_url)
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
    if any(clip.sound for clip in clips):
        audio = sequence.find("./media/audio")
        assert audio is not None
        channels = _element("numOutputChannels", "2")
        audio_format = _element("format")
        audio_format.append(_fcp7_sound())
        audio[:0] = [channels, audio_format]
    by_url = {_localhost_url(clip.file): clip for clip in clips}
    for file in root.iter("file"):
        pathurl = file.findtext("pathurl")
        if pathurl is None or pathurl not in by_url:
            continue  # a later mention of a file: <file id="…"/>
        clip = by_url[pathurl]
        media = file.find("media")
        if media is None:
            media = ET.SubElement(file, "media")
        media.clear()
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


def _write_fcpx(clips: Sequence[FilmClip], folder: Path, title: str, storyboard: str) -> str:
    tl = build(clips, folder, title=title, storyboard=storyboard, url=_file_url)
    # An asset-clip brings its file's picture and sound together: no separate audio lane.
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
    if any(clip.sound for clip in clips):
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
    ET.indent(root, space="    ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n{body}\n'


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


def _write_edl(clips: Sequence[FilmClip], folder: Path, title: str, storyboard: str) -> str:
    tl = build(clips, folder, title=title, storyboard=storyboard)
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


_WRITERS: dict[str, Callable[[Sequence[FilmClip], Path, str, str], str]] = {
    "otio": _write_otio,
    "fcp7": _write_fcp7,
    "fcpxml": _write_fcpx,
    "edl": _write_edl,
}
