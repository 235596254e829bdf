"""Make and join MP4 clips: cards → placeholder MP4; MP4 → ClipInfo or a frame; MP4s → film.

PyAV (libav* bundled in its wheel) and Pillow only; no system ffmpeg. Everything encodes
H.264 (x264 preset ultrafast, yuv420p) with time_base 1/fps, so a clip lasts exactly its
frame count, and AAC at 48 kHz where there is sound.
"""

from __future__ import annotations

import math
import os
import tempfile
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Literal, TypeAlias

import av
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.filter import Graph
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image, ImageDraw, ImageFont, ImageOps

from .fsutil import publish

__all__ = ["Card", "ClipInfo", "assemble", "encode_placeholder", "extract_frame", "probe"]


@dataclass(frozen=True, slots=True)
class Card:
    seconds: float  # how long this card shows
    title: str  # e.g. "opening · shot 1/3"
    text: str  # the shot prompt (wrapped, truncated to fit)


@dataclass(frozen=True, slots=True)
class ClipInfo:
    duration: float  # seconds (from the container/stream, accurate to a frame)
    width: int
    height: int
    fps: float
    has_audio: bool


# x264 "ultrafast" on still frames: a 15 s 1080p card clip encodes in about 0.7 s on the
# dev box, where the default preset takes several seconds (design.md §3).
_X264_OPTIONS = {"preset": "ultrafast"}
_SAMPLE_RATE = 48_000
_TONE_HZ = 220  # a whole number of cycles per second, so one second of tone loops seamlessly
_TONE_LEVEL = 0.05  # about -26 dBFS: audible, not loud
_AAC_FRAME = 1024  # samples per AAC frame

_BACKGROUND = (18, 20, 28)
_TITLE_COLOUR = (245, 245, 240)
_TEXT_COLOUR = (190, 195, 205)
_ACCENT_COLOUR = (232, 168, 56)
_ELLIPSIS = "…"

_Font: TypeAlias = ImageFont.FreeTypeFont | ImageFont.ImageFont


# ── encode_placeholder ──────────────────────────────────────────────────────────────────


def encode_placeholder(
    dest: BinaryIO | Path,
    *,
    width: int,
    height: int,
    cards: Sequence[Card],
    fps: int = 24,
    audio: bool = False,
    first_image: Image.Image | None = None,
    last_image: Image.Image | None = None,
) -> None:
    """Write a real H.264 MP4 showing one title card per shot.

    It lasts sum(card.seconds) rounded to whole frames; each card covers the frames between
    its rounded start and end. If first_image is given, the very first frame is that image
    scaled to cover width x height (centre-cropped, no text over it); likewise last_image
    for the very last frame (first_image wins in a one-frame clip). audio=True adds an AAC
    track of exactly the same length: a quiet 220 Hz tone.

    `dest` is a Path (written atomically: temp file in its folder, then os.replace) or a
    seekable binary file object (MP4 writes its index last). width and height must be even
    (yuv420p).

        encode_placeholder(Path("shot.mp4"), width=1280, height=720,
                           cards=[Card(5.0, "opening · shot 1/1", "A lighthouse at dusk")])
    """
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even, got {width}x{height}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not cards:
        raise ValueError("encode_placeholder needs at least one card")
    if any(card.seconds < 0 for card in cards):
        raise ValueError("card seconds must not be negative")
    total = round(math.fsum(card.seconds for card in cards) * fps)
    if total < 1:
        raise ValueError("the cards last less than one frame")

    segments = _segments(cards, total, fps, width, height, first_image, last_image)
    if isinstance(dest, Path):
        with _atomic_output(dest) as tmp:
            _encode_segments(str(tmp), segments, width, height, fps, audio)
    else:
        _encode_segments(dest, segments, width, height, fps, audio)


@dataclass(frozen=True, slots=True)
class _Segment:
    frame: VideoFrame  # converted once, re-sent with new pts: still frames cost almost nothing
    count: int


def _segments(
    cards: Sequence[Card],
    total: int,
    fps: int,
    width: int,
    height: int,
    first_image: Image.Image | None,
    last_image: Image.Image | None,
) -> list[_Segment]:
    """Split `total` frames into runs of one still frame each, in display order."""
    segments: list[_Segment] = []
    start, elapsed = 0, 0.0
    for number, card in enumerate(cards, start=1):
        elapsed += card.seconds
        # The last card ends at `total` exactly, whatever the float sum rounds to.
        stop = total if number == len(cards) else min(round(elapsed * fps), total)
        if stop > start:
            image = _render_card(card, width, height)
            segments.append(_Segment(_to_yuv(image), stop - start))
            start = stop
    if last_image is not None and (first_image is None or total > 1):
        segments = _replace_end(segments, _to_yuv(_cover(last_image, width, height)))
    if first_image is not None:
        segments = _replace_start(segments, _to_yuv(_cover(first_image, width, height)))
    return segments


def _replace_start(segments: list[_Segment], frame: VideoFrame) -> list[_Segment]:
    head = segments[0]
    rest = [_Segment(head.frame, head.count - 1)] if head.count > 1 else []
    return [_Segment(frame, 1), *rest, *segments[1:]]


def _replace_end(segments: list[_Segment], frame: VideoFrame) -> list[_Segment]:
    tail = segments[-1]
    rest = [_Segment(tail.frame, tail.count - 1)] if tail.count > 1 else []
    return [*segments[:-1], *rest, _Segment(frame, 1)]


def _encode_segments(
    target: str | BinaryIO,
    segments: Sequence[_Segment],
    width: int,
    height: int,
    fps: int,
    audio: bool,
) -> None:
    with av.open(target, "w", format="mp4") as container:
        video = _add_video_stream(container, width, height, Fraction(fps))
        sound = _AudioWriter(container, "mono") if audio else None
        index = 0
        for segment in segments:
            for _ in range(segment.count):
                segment.frame.pts = index
                container.mux(video.encode(segment.frame))
                index += 1
                if sound is not None:
                    target_samples = index * _SAMPLE_RATE // fps
                    sound.write([_tone(sound.written, target_samples)])
        container.mux(video.encode())
        if sound is not None:
            sound.close()


def _render_card(card: Card, width: int, height: int) -> Image.Image:
    """Draw a dark title card: title line, accent rule, the prompt wrapped to fit."""
    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    margin = max(2, round(min(width, height) * 0.07))
    inner = width - 2 * margin
    # Size type by area, as if the card were landscape 16:9, so portrait cards read alike.
    scale = math.sqrt(width * height * 9 / 16)
    title_font = _font(max(6, round(scale / 13)))
    text_size = max(5, round(scale / 24))
    text_font = _font(text_size)

    title = _ellipsize(draw, " ".join(card.title.split()), title_font, inner)
    draw.text((margin, margin), title, font=title_font, fill=_TITLE_COLOUR)
    title_bottom = margin + _line_height(title_font)
    rule_top = title_bottom + max(1, height // 90)
    rule = max(1, height // 270)
    draw.rectangle((margin, rule_top, margin + inner - 1, rule_top + rule - 1), fill=_ACCENT_COLOUR)

    top = rule_top + rule + max(2, height // 40)
    line_height = max(round(text_size * 1.3), _line_height(text_font))
    max_lines = (height - margin - top) // line_height
    for number, line in enumerate(_wrap(draw, card.text, text_font, inner, max_lines)):
        draw.text((margin, top + number * line_height), line, font=text_font, fill=_TEXT_COLOUR)
    return image


def _font(size: int) -> _Font:
    # Pillow >= 10.1 ships a scalable default font (Aileron) when FreeType is available.
    # Loading it takes microseconds; not caching keeps FreeType faces out of shared state
    # (the emulator encodes in worker threads).
    return ImageFont.load_default(size=size)


def _line_height(font: _Font) -> int:
    return int(font.getbbox("Ag")[3])  # bottom of the descender, measured from the top


def _wrap(
    draw: ImageDraw.ImageDraw, text: str, font: _Font, max_width: int, max_lines: int
) -> list[str]:
    """Greedy word wrap; words wider than a line are split; the last line gets '…' if cut."""
    if max_lines <= 0:
        return []
    lines: list[str] = []
    words = [word for paragraph in text.splitlines() for word in paragraph.split()]
    line = ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if draw.textlength(candidate, font=font) <= max_width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = word
        while len(line) > 1 and draw.textlength(line, font=font) > max_width:
            cut = _fitting_prefix(draw, line, font, max_width)
            lines.append(line[:cut])
            line = line[cut:]
        if len(lines) > max_lines:
            break
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _ellipsize(draw, lines[-1], font, max_width, cut=True)
    return lines


def _fitting_prefix(draw: ImageDraw.ImageDraw, text: str, font: _Font, max_width: int) -> int:
    """Length of the longest prefix of `text` no wider than max_width (at least 1)."""
    low, high = 1, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if draw.textlength(text[:mid], font=font) <= max_width:
            low = mid
        else:
            high = mid - 1
    return low


def _ellipsize(
    draw: ImageDraw.ImageDraw, text: str, font: _Font, max_width: int, *, cut: bool = False
) -> str:
    """`text` if it fits (and is not `cut`), else its longest prefix + '…' that fits."""
    if not cut and draw.textlength(text, font=font) <= max_width:
        return text
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if draw.textlength(text[:mid].rstrip() + _ELLIPSIS, font=font) <= max_width:
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip() + _ELLIPSIS if low else ""


def _cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width x height and crop the centre (CSS object-fit: cover)."""
    return ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


def _to_yuv(image: Image.Image) -> VideoFrame:
    frame: VideoFrame = VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
    return frame.reformat(format="yuv420p")


@lru_cache(maxsize=1)
def _tone_second() -> bytes:
    """One second of the tone as native float32 samples (it loops seamlessly)."""
    step = 2 * math.pi * _TONE_HZ / _SAMPLE_RATE
    samples = array("f", (_TONE_LEVEL * math.sin(step * i) for i in range(_SAMPLE_RATE)))
    return samples.tobytes()


def _tone(start: int, stop: int) -> bytes:
    """Tone samples [start, stop) as float32 bytes."""
    second = _tone_second()
    chunks = []
    while start < stop:
        offset = start % _SAMPLE_RATE
        take = min(stop - start, _SAMPLE_RATE - offset)
        chunks.append(second[offset * 4 : (offset + take) * 4])
        start += take
    return b"".join(chunks)


# ── shared encoding helpers ─────────────────────────────────────────────────────────────


def _add_video_stream(
    container: OutputContainer, width: int, height: int, fps: Fraction
) -> VideoStream:
    stream = container.add_stream("libx264", rate=fps, options=dict(_X264_OPTIONS))
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


# ── probe / extract_frame ───────────────────────────────────────────────────────────────


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


def assemble(clips: Sequence[Path], dest: Path) -> ClipInfo:
    """Concatenate `clips` in order into `dest` and return probe(dest).

    Decodes and re-encodes (x264 ultrafast; AAC 48 kHz stereo when any clip has sound,
    silence for clips without). Every clip is scaled to the first clip's size, letterboxed
    when its aspect differs, and retimed to the first clip's frame rate; each clip's sound
    is padded or cut to its own picture's length, so picture and sound stay in step across
    the joins. The result lasts the sum of the clip durations (± one frame). Atomic: a temp
    file `.NAME.*.part` in dest's folder, then os.replace; on error the temp file is removed.
    """
    if not clips:
        raise ValueError("assemble needs at least one clip")
    infos: list[tuple[ClipInfo, Fraction]] = []
    for clip in clips:
        with av.open(str(clip)) as container:
            infos.append(_probe(container, clip))
    first, fps = infos[0]
    width, height = max(2, first.width // 2 * 2), max(2, first.height // 2 * 2)
    with_sound = any(info.has_audio for info, _ in infos)

    with _atomic_output(dest) as tmp:
        with av.open(str(tmp), "w", format="mp4") as out:
            video = _add_video_stream(out, width, height, fps)
            sound = _AudioWriter(out, "stereo") if with_sound else None
            joiner = _Joiner(out, video, sound, fps)
            for clip, (info, _) in zip(clips, infos, strict=True):
                joiner.append(clip, round(info.duration * fps))
            out.mux(video.encode())
            if sound is not None:
                sound.close()
    return probe(dest)


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
            graph.add("scale", f"{inner_w}:{inner_h}"),
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
