"""Read and join MP4 clips: MP4 → ClipInfo or a frame; MP4s → film.

PyAV (libav* bundled in its wheel) and Pillow only; no system ffmpeg. A film is joined
without re-encoding when its clips share codec, size, frame rate and H.264 settings
(Kling's clips of one mode do): their packets are copied byte for byte. Otherwise it is
encoded once, at high quality (x264 CRF 16, preset "veryfast": see bench/assemble.py),
and `Assembly.reason` says which clips forced it. (The emulator's placeholder clips are
encoded by `compiler.emulator.clips`, which keeps its own copy of the stream setup.)
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.filter import Graph
from av.packet import Packet
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from .fsutil import publish

__all__ = ["Assembly", "ClipInfo", "assemble", "extract_frame", "probe"]


@dataclass(frozen=True, slots=True)
class ClipInfo:
    duration: float  # seconds (from the container/stream, accurate to a frame)
    width: int
    height: int
    fps: float
    has_audio: bool


@dataclass(frozen=True, slots=True)
class Assembly:
    """A film `assemble` wrote, and how: what was copied, what encoded, and why."""

    info: ClipInfo
    video: Literal["copied", "encoded"]
    audio: Literal["copied", "encoded", "none"]
    reason: str = ""  # why anything was encoded, e.g. "climb.mp4 is 1920x1080, the others …"

    @property
    def lossless(self) -> bool:
        """Every picture and sound packet of the clips is in the film unchanged."""
        return self.video == "copied" and self.audio != "encoded"


# The one re-encode a film may need: x264 CRF 16 keeps a second generation of 1080p clips
# with real motion at 46.6 dB PSNR (Y); "medium" reaches the same PSNR (the same size,
# give or take 2%) in 3.4 times as long (bench/assemble.py --presets medium, 2 cores).
FILM_CRF = 16
FILM_PRESET = "veryfast"
_SAMPLE_RATE = 48_000
_AAC_FRAME = 1024  # samples per AAC frame
_AAC_BIT_RATE = 192_000


# ── encoding helpers ────────────────────────────────────────────────────────────────────


def _add_video_stream(
    container: OutputContainer,
    width: int,
    height: int,
    fps: Fraction,
    options: dict[str, str],
) -> VideoStream:
    stream = container.add_stream("libx264", rate=fps, options=dict(options))
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    # One tick per frame: pts are frame numbers and the clip lasts exactly its frame count.
    stream.time_base = 1 / fps
    stream.codec_context.time_base = 1 / fps
    return stream


class _AudioWriter:
    """Feed float32 planar samples in any amounts; encode AAC frames of 1024 samples."""

    def __init__(self, container: OutputContainer, layout: Literal["mono", "stereo"]) -> None:
        self._container = container
        self._stream: AudioStream = container.add_stream("aac", rate=_SAMPLE_RATE, layout=layout)
        self._stream.bit_rate = _AAC_BIT_RATE
        self._layout = layout
        self._channels = 1 if layout == "mono" else 2
        self._pending = [bytearray() for _ in range(self._channels)]
        self.written = 0  # samples handed to write() so far
        self._encoded = 0

    def write(self, planes: Sequence[bytes]) -> None:
        """Append one bytes object per channel (all the same length)."""
        for pending, plane in zip(self._pending, planes, strict=True):
            pending += plane
        self.written += len(planes[0]) // 4
        while len(self._pending[0]) >= _AAC_FRAME * 4:
            self._encode(_AAC_FRAME)

    def silence(self, samples: int) -> None:
        if samples > 0:
            self.write([bytes(samples * 4)] * self._channels)

    def close(self) -> None:
        remainder = len(self._pending[0]) // 4
        if remainder:
            self._encode(remainder)  # the AAC encoder takes a short last frame
        self._container.mux(self._stream.encode(None))

    def _encode(self, samples: int) -> None:
        frame = av.AudioFrame(format="fltp", layout=self._layout, samples=samples)
        size = samples * 4
        for plane, pending in zip(frame.planes, self._pending, strict=True):
            plane.update(bytes(pending[:size]))
            del pending[:size]
        frame.sample_rate = _SAMPLE_RATE
        frame.time_base = Fraction(1, _SAMPLE_RATE)
        frame.pts = self._encoded
        self._encoded += samples
        self._container.mux(self._stream.encode(frame))


@contextmanager
def _atomic_output(dest: Path) -> Iterator[Path]:
    """Yield a temp path in dest's folder; os.replace it onto dest on success, else delete it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        publish(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ── the animatic ─────────────────────────────────────────────────────────────────────────

ANIMATIC_FPS = Fraction(24)


@dataclass(frozen=True, slots=True)
class Held:
    """One shot of an animatic: its still (or none), how long it lasts, and its label."""

    still: Path | None
    seconds: float
    label: str  # burnt in at the bottom: the scene id and shot
    note: str = ""  # shown in place of a missing still


def animatic(shots: Sequence[Held], dest: Path, size: tuple[int, int]) -> ClipInfo:
    """Hold each still for its shot's duration, its label burnt in: renders/NAME.animatic.mp4.

    Each shot lasts round(seconds × 24) frames, so the animatic lasts what the film
    will, to the frame. Encoded once per still (x264 repeats identical frames cheaply).
    """
    width, height = (size[0] // 2 * 2, size[1] // 2 * 2)
    with _atomic_output(dest) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = _add_video_stream(
            container, width, height, ANIMATIC_FPS, {"crf": "20", "preset": "veryfast"}
        )
        pts = 0
        for shot in shots:
            picture = _held_picture(shot, width, height)
            rgb: VideoFrame = VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
            frame = rgb.reformat(format="yuv420p")
            for _ in range(max(1, round(shot.seconds * ANIMATIC_FPS))):
                frame.pts = pts
                pts += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return probe(dest)


def _held_picture(shot: Held, width: int, height: int) -> Image.Image:
    from PIL import ImageDraw, ImageFont, ImageOps

    if shot.still is not None:
        with Image.open(shot.still) as still:
            still.draft("RGB", (width, height))
            picture = ImageOps.pad(still.convert("RGB"), (width, height), color=(0, 0, 0))
    else:
        picture = Image.new("RGB", (width, height), (28, 30, 36))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(12, height // 24))
    band = max(18, height // 14)
    draw.rectangle((0, height - band, width, height), fill=(0, 0, 0))
    draw.text((band // 3, height - band + band // 6), shot.label, fill=(255, 255, 255), font=font)
    if shot.still is None and shot.note:
        draw.text((band // 3, height // 2), shot.note, fill=(200, 200, 200), font=font)
    return picture


# ── probe / extract_frame ───────────────────────────────────────────────────────────────


def audio_seconds(path: Path) -> float | None:
    """How long an audio or video file lasts, read from its header; None when it cannot be
    read as media."""
    try:
        with av.open(str(path)) as container:
            if container.duration is not None:
                return float(container.duration / av.time_base)
            for stream in container.streams.audio:
                if stream.duration is not None and stream.time_base is not None:
                    return float(stream.duration * stream.time_base)
    except (av.FFmpegError, OSError, ValueError):
        return None
    return None


def probe(path: Path) -> ClipInfo:
    """Read duration, size, frame rate and whether there is sound, without decoding."""
    with av.open(str(path)) as container:
        return _probe(container, path)[0]


def _probe(container: InputContainer, path: Path) -> tuple[ClipInfo, Fraction]:
    if not container.streams.video:
        raise ValueError(f"{path}: no video stream")
    video = container.streams.video[0]
    rate = video.average_rate or video.guessed_rate or video.base_rate or Fraction(24)
    if video.duration is not None and video.time_base is not None:
        duration = float(video.duration * video.time_base)
    elif video.frames:
        duration = float(video.frames / rate)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        raise ValueError(f"{path}: the container does not say how long it is")
    info = ClipInfo(
        duration=duration,
        width=video.codec_context.width,
        height=video.codec_context.height,
        fps=float(rate),
        has_audio=bool(container.streams.audio),
    )
    return info, Fraction(rate)


def extract_frame(path: Path, which: Literal["first", "last"]) -> Image.Image:
    """Decode the first or the last video frame as an RGB image (clips are short: the
    last frame is found by decoding to the end)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        found: VideoFrame | None = None
        for frame in container.decode(stream):
            found = frame
            if which == "first":
                break
        if found is None:
            raise ValueError(f"{path}: no video frames")
        image: Image.Image = found.to_image()  # type: ignore[no-untyped-call]
        return image.convert("RGB")


# ── assemble ────────────────────────────────────────────────────────────────────────────


def assemble(
    clips: Sequence[Path], dest: Path, *, reencode: bool = False, aspect: Fraction | None = None
) -> Assembly:
    """Concatenate `clips` in order into `dest`; say how (`Assembly`).

    Clips of one codec, size, frame rate and H.264 settings are joined by copying their
    picture packets: the film's video is byte for byte its clips', each clip's timestamps
    shifted to start where the clip before it ends. Their sound is copied too when every
    clip with sound has the same AAC layout; a clip without sound gets AAC silence, and
    each clip's sound starts within half an AAC frame (about 11 ms) of its picture. Sound
    of mixed layouts is decoded and encoded once (48 kHz stereo), picture still copied.

    Otherwise (or with `reencode`) the film is encoded once (x264 CRF 16) at the size and
    frame rate most clips have (on a tie of sizes, the one nearest `aspect`, the
    storyboard's width / height): others are scaled (letterboxed when their aspect
    differs) and retimed, each clip's sound padded or cut to its picture's length.

    The film lasts the sum of the clip durations (± one frame). Atomic: a temp file
    `.NAME.*.part` in dest's folder, then os.replace; on error the temp file is removed.
    """
    if not clips:
        raise ValueError("assemble needs at least one clip")
    with ExitStack() as opened:
        # Each clip is opened once (opening reads its index and decodes a frame): the
        # copy reads on from where the header left off.
        sources = [_Source.read(opened.enter_context(av.open(str(clip))), clip) for clip in clips]
        video_reason = "re-encoding was asked for" if reencode else _picture_differences(sources)
        with _atomic_output(dest) as tmp:
            if not video_reason:
                sound_reason = _sound_differences(sources)
                try:
                    info, audio = _copy(sources, tmp, encode_sound=bool(sound_reason))
                    return Assembly(info, "copied", audio, sound_reason)
                except _Uncopyable as exc:
                    video_reason = str(exc)
            audio = _encode(sources, tmp, aspect)
            return Assembly(probe(tmp), "encoded", audio, video_reason)


@dataclass(frozen=True, slots=True)
class _Sound:
    codec: str
    rate: int
    channels: int
    layout: str
    profile: str | None
    frame: int  # samples per packet (1024 for AAC)

    def __str__(self) -> str:
        return f"{self.layout} {self.rate / 1000:g} kHz {self.codec.upper()}"


@dataclass(frozen=True, slots=True)
class _Source:
    """One clip, as far as joining it goes: what must match to copy its packets."""

    path: Path
    container: InputContainer  # open until the film is written
    info: ClipInfo
    codec: str
    size: tuple[int, int]
    pix_fmt: str
    rate: Fraction
    parameter_sets: bytes  # the H.264 SPS/PPS (avcC): a copied stream has only one
    sound: _Sound | None

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def read(cls, container: InputContainer, path: Path) -> _Source:
        info, rate = _probe(container, path)
        video = container.streams.video[0].codec_context
        sound = None
        if container.streams.audio:
            audio = container.streams.audio[0].codec_context
            sound = _Sound(
                audio.name,
                audio.sample_rate,
                audio.channels,
                audio.layout.name,
                audio.profile,
                audio.frame_size,
            )
        return cls(
            path,
            container,
            info,
            video.name,
            (video.width, video.height),
            video.pix_fmt or "",
            rate,
            bytes(video.extradata or b""),
            sound,
        )


class _Uncopyable(Exception):
    """Packets that cannot be joined as they are: the film is encoded instead."""


def _picture_differences(sources: Sequence[_Source]) -> str:
    """Why these clips' picture packets cannot be joined as they are ("" if they can)."""
    checks: list[tuple[Callable[[_Source], Hashable], Callable[[Any], str]]] = [
        (lambda s: s.codec, str),
        (lambda s: s.size, lambda size: f"{size[0]}x{size[1]}"),
        (lambda s: s.rate, lambda rate: f"{float(rate):.4g} fps"),
        (lambda s: s.pix_fmt, str),
    ]
    reasons = [_odd_ones_out(sources, key, show) for key, show in checks]
    found = "; ".join(reason for reason in reasons if reason)
    if found:
        return found
    # The same picture format from other encoder settings: one stream has one set of them.
    groups = _groups(sources, lambda s: s.parameter_sets)
    if len(groups) < 2:
        return ""
    odd = [s for group in groups if group is not max(groups, key=len) for s in group]
    return (
        f"{_names(odd)} {_verb(odd, 'has', 'have')} other H.264 settings (SPS/PPS) than the others"
    )


def _sound_differences(sources: Sequence[_Source]) -> str:
    """Why these clips' sound packets cannot be laid end to end as they are ("" if they can)."""
    with_sound = [s for s in sources if s.sound is not None]
    layouts = _odd_ones_out(
        with_sound, lambda s: s.sound, lambda sound: f"{sound} sound", verbs=("has", "have")
    )
    if layouts or not with_sound:
        return layouts
    sound = with_sound[0].sound
    assert sound is not None
    if not sound.frame:
        return f"{_names(with_sound)}: {sound} sound in packets of unknown length"
    silent = [s for s in sources if s.sound is None]
    if silent and not _silence_fits(sound):
        return f"{_names(silent)} {_verb(silent, 'has', 'have')} no sound to match {sound}"
    return ""


def _groups(sources: Sequence[_Source], key: Callable[[_Source], Hashable]) -> list[list[_Source]]:
    groups: dict[Hashable, list[_Source]] = {}
    for source in sources:
        groups.setdefault(key(source), []).append(source)
    return list(groups.values())


def _odd_ones_out(
    sources: Sequence[_Source],
    key: Callable[[_Source], Hashable],
    show: Callable[[Any], str],
    *,
    verbs: tuple[str, str] = ("is", "are"),
) -> str:
    """ "climb.mp4 is 1920x1080, the others 1280x720", or "" when every clip agrees."""
    groups = _groups(sources, key)
    if len(groups) < 2:
        return ""
    common = max(groups, key=len)  # the film keeps what most clips have (the first's on a tie)
    parts = [
        f"{_names(group)} {_verb(group, *verbs)} {show(key(group[0]))}"
        for group in groups
        if group is not common
    ]
    others = "the others" if len(common) > 1 else _names(common)
    return ", ".join(parts) + f", {others} {show(key(common[0]))}"


def _verb(group: Sequence[_Source], one: str, many: str) -> str:
    return one if len(group) == 1 else many


def _names(group: Sequence[_Source]) -> str:
    names = [source.name for source in group]
    if len(names) > 3:
        return ", ".join(names[:3]) + f" and {len(names) - 3} more"
    return ", ".join(names)


def _common(sources: Sequence[_Source], key: Callable[[_Source], Hashable]) -> _Source:
    """The first clip of the largest group sharing `key`: the film takes its format."""
    return max(_groups(sources, key), key=len)[0]


def _film_size(sources: Sequence[_Source], aspect: Fraction | None) -> tuple[int, int]:
    """The size most clips have; on a tie, the one whose shape is nearest `aspect` (a 9:16
    film of two portrait and two landscape clips stays portrait), else the first's."""
    groups = _groups(sources, lambda s: s.size)
    most = max(len(group) for group in groups)
    tied = [group[0].size for group in groups if len(group) == most]
    if aspect is None or len(tied) == 1:
        return tied[0]
    # By the log of the ratios: 16:9 and 9:16 are equally far from 1:1.
    return min(tied, key=lambda size: abs(math.log(size[0] / size[1] / aspect)))


# ── the lossless path: copy packets ─────────────────────────────────────────────────────


def _copy(
    sources: Sequence[_Source], tmp: Path, *, encode_sound: bool
) -> tuple[ClipInfo, Literal["copied", "encoded", "none"]]:
    """Write the film by copying every clip's picture packets (and sound, if it can)."""
    first = sources[0]
    with av.open(str(tmp), "w", format="mp4") as out:
        template = first.container.streams.video[0]
        video = out.add_stream_from_template(template)
        video.time_base = template.time_base
        with_sound = [s for s in sources if s.sound is not None]
        sound: _SoundCopier | _SoundEncoder | None = None
        if with_sound and encode_sound:
            sound = _SoundEncoder(_AudioWriter(out, "stereo"))
        elif with_sound:
            layout = with_sound[0].sound
            assert layout is not None
            copied = out.add_stream_from_template(with_sound[0].container.streams.audio[0])
            copied.time_base = Fraction(1, layout.rate)
            sound = _SoundCopier(out, copied, layout)
        start = Fraction(0)  # seconds: where the clip being copied starts in the film
        last_dts: Fraction | None = None
        for source in sources:
            start, last_dts = _copy_clip(out, video, sound, source, start, last_dts)
        if sound is not None:
            sound.finish(start)
    width, height = first.size
    info = ClipInfo(float(start), width, height, float(first.rate), sound is not None)
    return info, "none" if sound is None else "encoded" if encode_sound else "copied"


def _copy_clip(
    out: OutputContainer,
    video: Any,
    sound: _SoundCopier | _SoundEncoder | None,
    source: _Source,
    start: Fraction,
    last_dts: Fraction | None,
) -> tuple[Fraction, Fraction | None]:
    """Copy one clip's packets to the film from `start`; return where the next clip starts."""
    container = source.container
    picture = container.streams.video[0]
    tb = picture.time_base or Fraction(1, 90_000)
    origin = picture.start_time or 0  # ticks: the clip's first picture
    shift = round(start / tb) - origin
    audio = container.streams.audio[0] if sound is not None and source.sound else None
    end = start
    if sound is not None:
        length = picture.duration * tb if picture.duration else source.info.duration
        sound.begin(source, start, origin * tb, start + Fraction(length))
    for packet in container.demux(picture, *([audio] if audio is not None else [])):
        if packet.dts is None or packet.size == 0:
            continue  # the demuxer's flush packet
        if packet.stream is audio:
            assert sound is not None
            sound.add(packet)
            continue
        pts = packet.pts if packet.pts is not None else packet.dts
        packet.pts = pts + shift
        packet.dts = packet.dts + shift
        dts = packet.dts * tb
        if last_dts is not None and dts <= last_dts:
            raise _Uncopyable(f"{source.name}'s picture timestamps overlap the clip before it")
        last_dts = dts
        end = max(end, (packet.pts + (packet.duration or 0)) * tb)
        if sound is not None:
            sound.keep_up(dts)
        packet.stream = video
        out.mux(packet)
    if end <= start:
        raise ValueError(f"{source.path}: no video frames")
    return end, last_dts


class _SoundCopier:
    """Lay the clips' AAC packets end to end on one track, each clip's at its picture.

    An AAC packet decodes to one frame of samples (1024) that overlaps the next, so a
    clip's sound cannot be cut inside a packet without decoding it. Each clip keeps its
    leading (priming) packets, which its first real packet needs, and the clip before it
    loses the packets that would overlap them; where sound runs short (or a clip has
    none) silent AAC packets fill in. Every clip's sound starts within half a packet
    (about 11 ms at 48 kHz) of its picture, and errors never add up across clips.
    """

    def __init__(self, out: OutputContainer, stream: Any, sound: _Sound) -> None:
        self._out = out
        self._stream = stream
        self._rate = sound.rate
        self._frame = sound.frame
        self._silence = _silent_packet(sound)
        self._tb = Fraction(1, sound.rate)
        self._cursor: int | None = None  # samples: where the next packet goes
        self._pending: list[Packet[Any]] = []  # the clip's last packets, placed once the next shows
        self._held: Packet[Any] | None = None  # the latest packet, muxed when the next comes
        self._clip_start = Fraction(0)
        self._origin = Fraction(0)  # seconds: the clip's picture start in its own file
        self._clip_end = 0  # samples: where the current clip's picture ends in the film
        self._silent_clip = False
        self._first_of_clip = False

    def begin(self, source: _Source, start: Fraction, origin: Fraction, end: Fraction) -> None:
        self._clip_start, self._origin = start, origin
        self._clip_end = round(end * self._rate)
        self._silent_clip = source.sound is None
        self._first_of_clip = True
        if self._silent_clip:
            self._settle(round(start * self._rate))

    def add(self, packet: Packet[Any]) -> None:
        """Take the clip's next sound packet (in file order)."""
        tb = packet.time_base or self._tb
        ticks = packet.pts if packet.pts is not None else packet.dts
        assert ticks is not None  # the demuxer's flush packet never comes here
        offset = ticks * tb - self._origin
        target = round((self._clip_start + offset) * self._rate)
        if self._first_of_clip:
            self._first_of_clip = False
            self._settle(target)
        if target >= self._clip_end + self._frame:
            return  # sound after the picture has ended: never played
        if target + 2 * self._frame > self._clip_end:
            self._pending.append(packet)  # the clip's tail: the next clip decides
        else:
            self._place(packet)

    def keep_up(self, dts: Fraction) -> None:
        """Silence up to the picture, in a clip without sound (the muxer interleaves)."""
        if self._silent_clip:
            assert self._cursor is not None
            due = min(round(dts * self._rate), self._clip_end)
            while self._cursor + self._frame <= due:
                self._place(None)

    def finish(self, end: Fraction) -> None:
        self._settle(round(end * self._rate))
        if self._held is not None:
            # The track ends with the picture: the last packet is cut short.
            last = round(end * self._rate) - (self._held.pts or 0)
            self._held.duration = min(self._frame, last) if last > 0 else self._frame
            self._out.mux(self._held)
            self._held = None

    def _settle(self, target: int) -> None:
        """Place the pending tail and silence so that the next packet lands near `target`."""
        if self._cursor is None:
            self._cursor = target
        half = self._frame // 2
        for packet in self._pending:
            if self._cursor + self._frame > target + half:
                break
            self._place(packet)
        self._pending = []
        while self._cursor + half < target:
            self._place(None)

    def _place(self, packet: Packet[Any] | None) -> None:
        assert self._cursor is not None
        if packet is None:
            packet = Packet(self._silence)
        packet.time_base = self._tb
        packet.pts = packet.dts = self._cursor
        packet.duration = self._frame
        packet.stream = self._stream
        self._cursor += self._frame
        if self._held is not None:
            self._out.mux(self._held)
        self._held = packet


def _silence_fits(sound: _Sound) -> bool:
    """Whether AAC-LC silence from FFmpeg's encoder decodes under this stream's settings."""
    return sound.codec == "aac" and sound.profile == "LC" and sound.frame == _AAC_FRAME


def _silent_packet(sound: _Sound) -> bytes:
    """One AAC-LC packet of silence in `sound`'s rate and channels (a steady-state one)."""
    if not _silence_fits(sound):
        return b""
    codec: Any = av.CodecContext.create("aac", "w")
    codec.sample_rate = sound.rate
    codec.layout = sound.layout
    codec.format = "fltp"
    packets: list[Packet[Any]] = []
    for n in range(4):
        frame = av.AudioFrame(format="fltp", layout=sound.layout, samples=_AAC_FRAME)
        for plane in frame.planes:
            plane.update(bytes(_AAC_FRAME * 4))
        frame.sample_rate = sound.rate
        frame.time_base = Fraction(1, sound.rate)
        frame.pts = n * _AAC_FRAME
        packets += codec.encode(frame)
    return bytes(packets[2])


class _SoundEncoder:
    """The film's sound when the clips' layouts differ: decoded, placed, encoded once."""

    def __init__(self, writer: _AudioWriter) -> None:
        self._writer = writer
        self._clip: _ClipAudio | None = None
        self._resampler: Any = None
        self._end = 0

    def begin(self, source: _Source, start: Fraction, origin: Fraction, end: Fraction) -> None:
        self._flush()
        self._end = round(end * _SAMPLE_RATE)
        self._writer.silence(round(start * _SAMPLE_RATE) - self._writer.written)
        if source.sound is not None:
            self._clip = _ClipAudio(float(origin))
            self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=_SAMPLE_RATE)

    def add(self, packet: Packet[Any]) -> None:
        assert self._clip is not None
        for frame in packet.decode():
            if isinstance(frame, av.AudioFrame):
                self._clip.add(frame, self._resampler.resample(frame))

    def keep_up(self, dts: Fraction) -> None:
        due = min(round(dts * _SAMPLE_RATE), self._end) - self._writer.written
        if due <= 0:
            return
        if self._clip is None:
            self._writer.silence(due)
        else:
            self._writer.write(self._clip.take(due, pad=False))

    def finish(self, end: Fraction) -> None:
        self._flush()
        self._writer.silence(round(end * _SAMPLE_RATE) - self._writer.written)
        self._writer.close()

    def _flush(self) -> None:
        """Write the rest of the clip's sound, padded or cut to its picture."""
        if self._clip is not None:
            self._clip.add(None, self._resampler.resample(None))
            self._writer.write(self._clip.take(self._end - self._writer.written))
            self._clip = None
        self._writer.silence(self._end - self._writer.written)


# ── the other path: encode once ─────────────────────────────────────────────────────────


def _encode(
    sources: Sequence[_Source], tmp: Path, aspect: Fraction | None = None
) -> Literal["encoded", "none"]:
    """Write the film by decoding every clip and encoding it once (x264, AAC)."""
    size = _film_size(sources, aspect)
    fps = _common(sources, lambda s: s.rate).rate
    width, height = max(2, size[0] // 2 * 2), max(2, size[1] // 2 * 2)
    with_sound = any(source.sound is not None for source in sources)
    options = {"preset": FILM_PRESET, "crf": str(FILM_CRF)}
    with av.open(str(tmp), "w", format="mp4") as out:
        video = _add_video_stream(out, width, height, fps, options)
        sound = _AudioWriter(out, "stereo") if with_sound else None
        joiner = _Joiner(out, video, sound, fps)
        for source in sources:
            joiner.append(source.path, round(source.info.duration * fps))
        out.mux(video.encode())
        if sound is not None:
            sound.close()
    return "encoded" if with_sound else "none"


class _Joiner:
    """Appends clips to an open output, keeping a running frame count for both streams."""

    def __init__(
        self,
        out: OutputContainer,
        video: VideoStream,
        sound: _AudioWriter | None,
        fps: Fraction,
    ) -> None:
        self._out = out
        self._video = video
        self._sound = sound
        self._fps = fps
        self._frames = 0  # video frames written so far

    def append(self, clip: Path, frames: int) -> None:
        """Write `frames` frames of `clip` (retimed to the output rate) and as much sound."""
        if frames <= 0:
            return
        begin, end = self._frames, self._frames + frames
        audio_end = self._samples_at(end)
        with av.open(str(clip)) as container:
            source = container.streams.video[0]
            source.thread_type = "AUTO"
            start = _seconds(source.start_time, source.time_base)
            rate = source.average_rate or self._fps
            tracks = container.streams.audio[:1] if self._sound is not None else ()
            clip_audio = _ClipAudio(start) if tracks else None
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=_SAMPLE_RATE)
            fitter = _Fitter(self._video.width, self._video.height)
            held: VideoFrame | None = None  # the latest source frame not yet shown
            decoded = 0
            for packet in container.demux(source, *tracks):
                for frame in packet.decode():
                    if isinstance(frame, av.AudioFrame):
                        if clip_audio is not None:
                            clip_audio.add(frame, resampler.resample(frame))
                        continue
                    if not isinstance(frame, VideoFrame):
                        continue
                    # Output frame k shows the latest source frame at or before k's midpoint:
                    # 1:1 at the same rate, repeated or dropped frames otherwise.
                    t = frame.time - start if frame.pts is not None else float(decoded / rate)
                    decoded += 1
                    while held is not None and self._frames < end:
                        if (self._frames - begin + Fraction(1, 2)) / self._fps >= t:
                            break
                        self._emit(fitter(held))
                        self._feed(clip_audio, audio_end)
                    held = frame
            if held is None:
                raise ValueError(f"{clip}: no video frames")
            if clip_audio is not None:
                clip_audio.add(None, resampler.resample(None))
            picture = fitter(held)
            while self._frames < end:
                self._emit(picture)
                self._feed(clip_audio, audio_end)
        if self._sound is not None:
            if clip_audio is not None:
                self._sound.write(clip_audio.take(audio_end - self._sound.written))
            self._sound.silence(audio_end - self._sound.written)

    def _emit(self, frame: VideoFrame) -> None:
        frame.pts = self._frames
        frame.time_base = self._video.codec_context.time_base
        frame.pict_type = 0  # let x264 choose frame types, not copy the source's
        self._out.mux(self._video.encode(frame))
        self._frames += 1

    def _feed(self, clip_audio: _ClipAudio | None, audio_end: int) -> None:
        """Keep sound roughly level with the picture so the muxer can interleave."""
        if self._sound is None:
            return
        due = min(self._samples_at(self._frames), audio_end) - self._sound.written
        if clip_audio is None:
            self._sound.silence(due)
        elif due > 0:
            self._sound.write(clip_audio.take(due, pad=False))

    def _samples_at(self, frames: int) -> int:
        return round(frames * _SAMPLE_RATE / self._fps)


class _ClipAudio:
    """One clip's decoded sound as stereo float32 planes, aligned to its picture's start."""

    def __init__(self, video_start: float) -> None:
        self._video_start = video_start
        self._planes = [bytearray(), bytearray()]
        self._started = False
        self._skip = 0  # bytes per plane still to drop (sound that began before the picture)

    def add(self, source: av.AudioFrame | None, frames: Sequence[av.AudioFrame]) -> None:
        start = source.time if source is not None else None
        if not self._started and start is not None:
            self._started = True
            # Sound that starts after the picture gets leading silence; sound before it is cut.
            offset = round((start - self._video_start) * _SAMPLE_RATE)
            if offset > 0:
                for plane in self._planes:
                    plane += bytes(offset * 4)
            elif offset < 0:
                self._skip = -offset * 4
        for frame in frames:
            size = frame.samples * 4
            for plane, data in zip(self._planes, frame.planes, strict=True):
                plane += bytes(data)[:size]
        if self._skip:
            cut = min(self._skip, len(self._planes[0]))
            for plane in self._planes:
                del plane[:cut]
            self._skip -= cut

    def take(self, samples: int, *, pad: bool = True) -> list[bytes]:
        """Up to `samples` samples per channel; with pad, exactly that many (silence after)."""
        size = max(0, samples) * 4
        taken = []
        for plane in self._planes:
            chunk = bytes(plane[:size])
            del plane[:size]
            if pad:
                chunk += bytes(size - len(chunk))
            taken.append(chunk)
        return taken


class _Fitter:
    """Scale a frame into width x height (letterboxed if the aspect differs) as yuv420p."""

    def __init__(self, width: int, height: int) -> None:
        self._width = width
        self._height = height
        self._graph: Graph | None = None

    def __call__(self, frame: VideoFrame) -> VideoFrame:
        if (frame.width, frame.height, frame.format.name) == (
            self._width,
            self._height,
            "yuv420p",
        ):
            return frame
        if self._graph is None:
            self._graph = self._build(frame)
        self._graph.vpush(frame)
        return self._graph.vpull()

    def _build(self, frame: VideoFrame) -> Graph:
        scale = min(self._width / frame.width, self._height / frame.height)
        inner_w = min(self._width, max(2, round(frame.width * scale / 2) * 2))
        inner_h = min(self._height, max(2, round(frame.height * scale / 2) * 2))
        x, y = (self._width - inner_w) // 2 // 2 * 2, (self._height - inner_h) // 2 // 2 * 2
        graph = Graph()
        graph.link_nodes(
            graph.add_buffer(
                width=frame.width,
                height=frame.height,
                format=frame.format,
                time_base=frame.time_base,
            ),
            graph.add("scale", f"{inner_w}:{inner_h}:flags=lanczos"),
            graph.add("setsar", "1"),
            graph.add("pad", f"{self._width}:{self._height}:{x}:{y}:black"),
            graph.add("format", "yuv420p"),
            graph.add("buffersink"),
        ).configure()
        return graph


def _seconds(ticks: int | None, time_base: Fraction | None) -> float:
    if ticks is None or time_base is None:
        return 0.0
    return float(ticks * time_base)
