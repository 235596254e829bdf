"""The emulator's placeholder media: a video task's body → a real H.264 MP4 of title cards,
an Omni-Image task's body → PNG stills.

A download must be a real MP4 of the length, size and sound the task paid for, so the
compiler's probe, frame grabs and film assembly run on it as on Kling's clips. Each card
shows the shot counter, the task's external_task_id as sent (or nothing without one) and
the shot prompt. The encoder lives here, not in `compiler.media`, because the emulator
imports nothing from the compiler it tests; `compiler.media` keeps its own copy of the
few lines both need (an x264 stream, an AAC writer, an atomic temp file).

PyAV (libav* bundled in its wheel) and Pillow only; no system ffmpeg. Video is H.264
(x264 preset ultrafast, yuv420p) with time_base 1/fps, so a clip lasts exactly its frame
count, and the sound a quiet AAC tone at 48 kHz.

A still (`placeholder_still`) is the same card as a PNG of the size the image task asked
for (its resolution's long side, shaped by its aspect ratio), titled "image i/n", with a
strip of thumbnails of the reference images sent as Base64 along its bottom.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, TypeAlias

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image, ImageDraw, ImageFont, ImageOps

from .rules import ASPECTS, IMAGE_ASPECTS, Body, ImageBody, ImageItem, Picture

__all__ = [
    "Card",
    "clip_size",
    "encode_placeholder",
    "placeholder_clip",
    "placeholder_still",
    "still_size",
    "task_cards",
]


@dataclass(frozen=True, slots=True)
class Card:
    seconds: float  # how long this card shows
    title: str  # e.g. "shot 1/3" (one line, ellipsized to fit)
    text: str  # the shot prompt (wrapped, truncated to fit)
    label: str = ""  # shown verbatim under the title, wrapped; e.g. the external_task_id


# Output size by mode (std 720p, pro 1080p, 4k), as (long side, short side).
FRAME_SIZES = {"std": (1280, 720), "pro": (1920, 1080), "4k": (3840, 2160)}
# A still's long side by resolution (Omni-Image, §11.1).
STILL_LONG_SIDES = {"1k": 1024, "2k": 2048, "4k": 4096}
_STILL_STRIP = 0.3  # the share of a still's height its reference thumbnails take

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
_LABEL_LINES = 3  # an external_task_id longer than this many lines is cut with '…'

_Font: TypeAlias = ImageFont.FreeTypeFont | ImageFont.ImageFont


# ── a task's clip ───────────────────────────────────────────────────────────────────────


def placeholder_clip(body: Body, *, max_side: int | None, fps: int) -> bytes:
    """The MP4 a task's download serves: its cards, its paid length, size and sound."""
    width, height = clip_size(body, max_side)
    audio = body.sound == "on" or any(v.keep_original_sound == "yes" for v in body.videos)
    out = BytesIO()
    encode_placeholder(
        out,
        width=width,
        height=height,
        cards=task_cards(body),
        fps=fps,
        audio=audio,
        first_image=_open_frame(body.frame("first_frame")),
        last_image=_open_frame(body.frame("end_frame")),
    )
    return out.getvalue()


def task_cards(body: Body) -> list[Card]:
    """One card per shot: "shot n/N", the external_task_id as sent, the shot's prompt."""
    if body.shots:
        parts = [(shot.seconds, shot.prompt) for shot in body.shots]
    else:
        parts = [(body.seconds, body.prompt or "")]
    return [
        Card(float(seconds), f"shot {n}/{len(parts)}", _readable(text), body.external_task_id or "")
        for n, (seconds, text) in enumerate(parts, 1)
    ]


def clip_size(body: Body, max_side: int | None) -> tuple[int, int]:
    """Output width and height: by mode, shaped by the first frame or the aspect ratio."""
    long, short = FRAME_SIZES[body.mode]
    first = body.frame("first_frame")
    if first is not None and first.size is not None:
        ratio = first.size[0] / first.size[1]  # R14: the frame sets the shape
    elif body.aspect_ratio is not None and not body.base_edit:
        w, h = ASPECTS[body.aspect_ratio]
        ratio = w / h
    else:
        ratio = long / short  # a base edit keeps the input's shape, which is unknown here
    width, height = (short * ratio, short) if ratio >= 1 else (short, short / ratio)
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = width * scale, height * scale
    return _even(width), _even(height)


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


_TOKEN = re.compile(r"<<<(image|element|video)_([0-9]+)>>>")


def _readable(prompt: str) -> str:
    """A prompt as a card shows it: `<<<image_1>>>` reads as `[image 1]`."""
    return _TOKEN.sub(lambda m: f"[{m.group(1)} {m.group(2)}]", prompt)


def _open_frame(image: ImageItem | None) -> Image.Image | None:
    if image is None or image.data is None:
        return None
    with Image.open(BytesIO(image.data)) as opened:
        return opened.convert("RGB")


# ── an image task's stills ──────────────────────────────────────────────────────────────


def placeholder_still(body: ImageBody, index: int, *, max_side: int | None) -> bytes:
    """The PNG an image task's download `index` serves (0-based, as Kling counts them)."""
    width, height = still_size(body, max_side)
    kind = "series" if body.result_type == "series" else "image"
    title = f"{kind} {index + 1}/{body.count}"
    card = Card(0.0, title, _readable(body.prompt), body.external_task_id or "")
    references = [(n, p) for n, p in enumerate(body.images, 1) if p.data is not None]
    out = BytesIO()
    _draw_still(card, width, height, references).save(out, "PNG", compress_level=1)
    return out.getvalue()


def still_size(body: ImageBody, max_side: int | None) -> tuple[int, int]:
    """Width and height: the resolution's long side (at most max_side), shaped by the aspect.

    `auto` takes the shape of the first reference image sent as Base64, else square.
    """
    long = STILL_LONG_SIDES[body.resolution]
    if max_side is not None:
        long = min(long, max_side)
    if body.aspect_ratio in IMAGE_ASPECTS:
        w, h = IMAGE_ASPECTS[body.aspect_ratio]
        ratio = w / h
    else:
        sizes = [picture.size for picture in body.images if picture.size is not None]
        ratio = sizes[0][0] / sizes[0][1] if sizes else 1.0
    width, height = (long, long / ratio) if ratio >= 1 else (long * ratio, long)
    return max(1, round(width)), max(1, round(height))


def _draw_still(
    card: Card, width: int, height: int, references: Sequence[tuple[int, Picture]]
) -> Image.Image:
    """The card over the top, the references' thumbnails in a strip along the bottom."""
    strip = round(height * _STILL_STRIP) if references else 0
    if strip < 4:
        return _render_card(card, width, height)
    image = Image.new("RGB", (width, height), _BACKGROUND)
    image.paste(_render_card(card, width, height - strip), (0, 0))
    margin = max(2, round(min(width, height) * 0.07))
    gap = max(1, width // 100)
    cell_width = (width - 2 * margin - gap * (len(references) - 1)) // len(references)
    cell_height = strip - margin
    if cell_width < 2 or cell_height < 2:
        return image
    draw = ImageDraw.Draw(image)
    font = _font(max(5, cell_height // 8))
    top = height - strip
    for number, (n, picture) in enumerate(references):
        assert picture.data is not None
        left = margin + number * (cell_width + gap)
        with Image.open(BytesIO(picture.data)) as opened:
            opened.draft("RGB", (cell_width, cell_height))  # JPEG: decode at a fraction
            thumb = ImageOps.contain(opened.convert("RGB"), (cell_width, cell_height))
        x = left + (cell_width - thumb.width) // 2
        y = top + (cell_height - thumb.height) // 2
        image.paste(thumb, (x, y))
        # Named as the prompt names it: `<<<image_2>>>` reads as `[image 2]` on the card.
        caption = f"image {n}"
        draw.rectangle(draw.textbbox((x, y), caption, font=font), fill=_BACKGROUND)
        draw.text((x, y), caption, font=font, fill=_ACCENT_COLOUR)
    return image


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
                           cards=[Card(5.0, "shot 1/1", "A lighthouse at dusk")])
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
        tone = _ToneTrack(container) if audio else None
        index = 0
        for segment in segments:
            for _ in range(segment.count):
                segment.frame.pts = index
                container.mux(video.encode(segment.frame))
                index += 1
                if tone is not None:
                    tone.extend(index * _SAMPLE_RATE // fps)
        container.mux(video.encode())
        if tone is not None:
            tone.close(index * _SAMPLE_RATE // fps)


# ── drawing a card ──────────────────────────────────────────────────────────────────────


def _render_card(card: Card, width: int, height: int) -> Image.Image:
    """Draw a dark title card: title line, label, accent rule, the prompt wrapped to fit."""
    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    margin = max(2, round(min(width, height) * 0.07))
    inner = width - 2 * margin
    # Size type by area, as if the card were landscape 16:9, so portrait cards read alike.
    scale = math.sqrt(width * height * 9 / 16)
    title_font = _font(max(6, round(scale / 13)))
    text_size = max(5, round(scale / 24))
    text_font = _font(text_size)
    line_height = max(round(text_size * 1.3), _line_height(text_font))
    gap = max(1, height // 90)
    rule = max(1, height // 270)

    title = _ellipsize(draw, " ".join(card.title.split()), title_font, inner)
    draw.text((margin, margin), title, font=title_font, fill=_TITLE_COLOUR)
    title_bottom = margin + _line_height(title_font)

    if card.label:
        # Lines the label may take and still leave the rule inside the bottom margin.
        room = (height - margin - title_bottom - 2 * gap - rule) // line_height
        label = "".join(c if c.isprintable() else "\ufffd" for c in card.label)  # no "\n"
        lines = _wrap_verbatim(draw, label, text_font, inner, min(_LABEL_LINES, room))
        for number, line in enumerate(lines):
            y = title_bottom + gap + number * line_height
            draw.text((margin, y), line, font=text_font, fill=_ACCENT_COLOUR)
        if lines:
            title_bottom += gap + len(lines) * line_height

    rule_top = title_bottom + gap
    draw.rectangle((margin, rule_top, margin + inner - 1, rule_top + rule - 1), fill=_ACCENT_COLOUR)

    top = rule_top + rule + max(2, height // 40)
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


def _wrap_verbatim(
    draw: ImageDraw.ImageDraw, text: str, font: _Font, max_width: int, max_lines: int
) -> list[str]:
    """Break `text` at any character, keeping every one (an id, not prose); '…' if cut."""
    lines: list[str] = []
    rest = text
    while rest and len(lines) < max_lines:
        cut = _fitting_prefix(draw, rest, font, max_width)
        lines.append(rest[:cut])
        rest = rest[cut:]
    if rest and lines:
        lines[-1] = _ellipsize(draw, lines[-1] + rest, font, max_width, cut=True)
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


# ── the tone ────────────────────────────────────────────────────────────────────────────


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


class _ToneTrack:
    """A mono AAC track of the tone, encoded in 1024-sample frames as the picture advances
    (so the muxer can interleave the two); the last frame may be short."""

    def __init__(self, container: OutputContainer) -> None:
        self._container = container
        self._stream: AudioStream = container.add_stream("aac", rate=_SAMPLE_RATE, layout="mono")
        self._encoded = 0  # samples encoded so far

    def extend(self, samples: int) -> None:
        """Encode every whole AAC frame of tone up to `samples` samples from the start."""
        while samples - self._encoded >= _AAC_FRAME:
            self._encode(_AAC_FRAME)

    def close(self, samples: int) -> None:
        """Encode the tone up to `samples` samples, then flush the encoder."""
        self.extend(samples)
        if samples > self._encoded:
            self._encode(samples - self._encoded)  # the AAC encoder takes a short last frame
        self._container.mux(self._stream.encode(None))

    def _encode(self, samples: int) -> None:
        frame = av.AudioFrame(format="fltp", layout="mono", samples=samples)
        frame.planes[0].update(_tone(self._encoded, self._encoded + samples))
        frame.sample_rate = _SAMPLE_RATE
        frame.time_base = Fraction(1, _SAMPLE_RATE)
        frame.pts = self._encoded
        self._encoded += samples
        self._container.mux(self._stream.encode(frame))


# ── output ──────────────────────────────────────────────────────────────────────────────


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


@contextmanager
def _atomic_output(dest: Path) -> Iterator[Path]:
    """Yield a temp path in dest's folder; os.replace it onto dest on success, else delete it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
    # Mode 0o666 less the umask, like any file the user writes (mkstemp would make it 0600).
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
