"""Read and join MP4 clips: MP4 → ClipInfo or a frame; MP4s → film.

PyAV (libav* bundled in its wheel) and Pillow only; no system ffmpeg. The film encodes
H.264 (x264 preset ultrafast, yuv420p) with time_base 1/fps, so it lasts exactly its
frame count, and AAC at 48 kHz where there is sound. (The emulator's placeholder clips
are encoded by `compiler.emulator.clips`, which keeps its own copy of the stream setup.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.filter import Graph
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from .fsutil import publish

__all__ = ["ClipInfo", "assemble", "extract_frame", "probe"]


@dataclass(frozen=True, slots=True)
class ClipInfo:
    duration: float  # seconds (from the container/stream, accurate to a frame)
    width: int
    height: int
    fps: float
    has_audio: bool


# x264 "ultrafast", as for the emulator's placeholder clips: speed over file size
# (design.md §3).
_X264_OPTIONS = {"preset": "ultrafast"}
_SAMPLE_RATE = 48_000
_AAC_FRAME = 1024  # samples per AAC frame


# ── encoding helpers ────────────────────────────────────────────────────────────────────


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
