"""Benchmark: joining a film's clips, against a bare packet-copy loop, and the re-encode's PSNR.

Makes six 1080p 5 s clips (24 fps, H.264 + stereo AAC) with real motion: a detailed
texture panning at a different speed and direction in each, a moving light band and
fresh film grain on every frame, so nothing compresses to nothing. Then, in one run:
  (a) a bare packet-copy loop (demux, shift timestamps, mux; no checks): the floor;
  (b) `compiler.media.assemble`, which copies packets here (same codec, size, rate):
      target (b) / (a) <= 1.5;
  (c) `assemble(..., reencode=True)`, the path mixed clips take (x264 CRF 16): its PSNR
      against the decoded clips, frame by frame (Y and all planes): target >= 45 dB.
With --presets, (c) is repeated for each x264 preset, to show the speed/quality trade-off.

    .venv/bin/python bench/assemble.py [--clips 6] [--seconds 5] [--repeat 3]
                                       [--presets veryfast,medium] [--keep DIR]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from array import array
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image, ImageChops, ImageFilter, ImageStat

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler import media  # noqa: E402

WIDTH, HEIGHT, FPS, RATE = 1920, 1080, 24, 48_000
GRAIN = 3  # film grain's standard deviation, in 8-bit levels


# ── the clips ─────────────────────────────────────────────────────────────────────────


def texture(seed: int) -> Image.Image:
    """A large colourful texture with detail at every scale, to pan across."""
    size = (WIDTH + 640, HEIGHT + 400)
    fine = Image.effect_noise(size, 40 + seed).filter(ImageFilter.GaussianBlur(1.6))
    coarse = (
        Image.effect_noise((size[0] // 16, size[1] // 16), 90)
        .resize(size, Image.Resampling.BICUBIC)
        .filter(ImageFilter.GaussianBlur(6))
    )
    across = Image.linear_gradient("L").rotate(90 * seed).resize(size)
    red = ImageChops.add(fine, across, scale=2.0)
    green = ImageChops.add(coarse, fine, scale=2.0)
    blue = ImageChops.add(coarse, across.transpose(Image.Transpose.FLIP_LEFT_RIGHT), scale=2.0)
    return Image.merge("RGB", (red, green, blue))


def frames(seed: int, count: int) -> Any:
    """`count` frames: a pan over the texture, a sweeping light band, fresh grain."""
    base = texture(seed)
    angle = seed * 2 * math.pi / 6
    vx, vy = math.cos(angle) * (3 + seed), math.sin(angle) * (2 + seed / 2)
    band = Image.linear_gradient("L").resize((WIDTH // 3, HEIGHT)).convert("RGB")
    band = ImageChops.multiply(band, band.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    for n in range(count):
        x = int(320 + vx * n) % 640
        y = int(200 + vy * n) % 400
        frame = base.crop((x, y, x + WIDTH, y + HEIGHT))
        light = Image.new("RGB", (WIDTH, HEIGHT))
        light.paste(band, ((n * 24) % (WIDTH + band.width) - band.width, 0))
        frame = ImageChops.add(frame, light, scale=1.6)
        grain = Image.effect_noise((WIDTH, HEIGHT), GRAIN).convert("RGB")
        yield ImageChops.add(frame, grain, scale=1.0, offset=-128)


def make_clip(path: Path, seed: int, seconds: float) -> None:
    """One clip as Kling sends them: H.264 high quality, AAC stereo 48 kHz."""
    count = round(seconds * FPS)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "18"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, FPS)
        audio = out.add_stream("aac", rate=RATE, layout="stereo")
        written = 0
        for n, image in enumerate(frames(seed, count)):
            frame = av.VideoFrame.from_image(image)
            frame.pts = n
            out.mux(video.encode(frame))
            while written + 1024 <= round((n + 1) * RATE / FPS):
                out.mux(audio.encode(_tone(written, seed)))
                written += 1024
        out.mux(video.encode())
        out.mux(audio.encode())


def _tone(start: int, seed: int) -> av.AudioFrame:
    hz = 180 + 40 * seed
    left = array("f", (0.2 * math.sin(2 * math.pi * hz * (start + k) / RATE) for k in range(1024)))
    right = array("f", (0.2 * math.sin(3 * math.pi * hz * (start + k) / RATE) for k in range(1024)))
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
    frame.planes[0].update(left.tobytes())
    frame.planes[1].update(right.tobytes())
    frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
    return frame


# ── (a) the floor: a bare packet-copy loop ────────────────────────────────────────────


def copy_loop(clips: list[Path], dest: Path) -> None:
    """Demux every clip and mux its packets, timestamps shifted: nothing else."""
    with av.open(str(dest), "w", format="mp4") as out:
        with av.open(str(clips[0])) as first:
            streams = [out.add_stream_from_template(s) for s in first.streams]
            for made, template in zip(streams, first.streams, strict=True):
                made.time_base = template.time_base
        offset = Fraction(0)
        for clip in clips:
            with av.open(str(clip)) as container:
                shifts = [round(offset / stream.time_base) for stream in container.streams]
                video = container.streams.video[0]
                end = 0  # ticks of the video stream
                for packet in container.demux():
                    if packet.dts is None:
                        continue
                    index = packet.stream_index
                    packet.pts += shifts[index]
                    packet.dts += shifts[index]
                    if index == video.index:
                        end = max(end, packet.pts + packet.duration)
                    packet.stream = streams[index]
                    out.mux(packet)
                offset = end * video.time_base


# ── (c) PSNR ──────────────────────────────────────────────────────────────────────────


def planes(frame: av.VideoFrame) -> list[Image.Image]:
    """The Y, U and V planes of a yuv420p frame as greyscale images."""
    sizes = [(frame.width, frame.height)] + [(frame.width // 2, frame.height // 2)] * 2
    images = []
    for plane, (w, h) in zip(frame.planes, sizes, strict=True):
        data = bytes(plane)
        rows = b"".join(data[r * plane.line_size : r * plane.line_size + w] for r in range(h))
        images.append(Image.frombytes("L", (w, h), rows))
    return images


def decoded(paths: list[Path]) -> Any:
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.reformat(format="yuv420p")


def psnr(film: Path, clips: list[Path]) -> tuple[float, float, int]:
    """(Y PSNR, PSNR of all planes weighted by size, frames) of film against the clips."""
    squares = [0.0, 0.0, 0.0]
    pixels = [0, 0, 0]
    count = 0
    for ours, theirs in zip(decoded([film]), decoded(clips), strict=True):
        for n, (a, b) in enumerate(zip(planes(ours), planes(theirs), strict=True)):
            squares[n] += ImageStat.Stat(ImageChops.difference(a, b)).sum2[0]
            pixels[n] += a.width * a.height
        count += 1
    luma = 10 * math.log10(255**2 / (squares[0] / pixels[0]))
    every = 10 * math.log10(255**2 / (sum(squares) / sum(pixels)))
    return luma, every, count


# ── the run ───────────────────────────────────────────────────────────────────────────


def timed(work: Any) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of (a) and (b)")
    parser.add_argument("--presets", default="", help="also re-encode with these x264 presets")
    parser.add_argument("--no-reencode", action="store_true", help="skip (c)")
    parser.add_argument("--keep", type=Path, help="make the clips here once and keep them")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-assemble-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        clips = [folder / f"shot{n}.mp4" for n in range(1, args.clips + 1)]
        began = time.perf_counter()
        for seed, clip in enumerate(clips):
            if not clip.exists():
                make_clip(clip, seed, args.seconds)
        megabytes = sum(clip.stat().st_size for clip in clips) / 1e6
        print(
            f"clips: {len(clips)} x {args.seconds:g} s {WIDTH}x{HEIGHT} {FPS} fps H.264 + AAC, "
            f"{megabytes:.0f} MB ({time.perf_counter() - began:.1f} s to make)"
        )

        floor, joined = [], []
        made: list[media.Assembly] = []
        for _ in range(args.repeat):  # interleaved, so both see the same disk cache
            floor.append(timed(lambda: copy_loop(clips, folder / "floor.mp4")))
            joined.append(timed(lambda: made.append(media.assemble(clips, folder / "f.mp4"))))
        assembly = made[0]
        assert assembly.lossless, assembly
        a, b = statistics.median(floor), statistics.median(joined)
        print(f"(a) bare packet-copy loop: {a:.3f} s (median of {args.repeat})")
        print(f"(b) assemble, packets copied ({assembly.video} picture, {assembly.audio} sound):")
        print(f"    {b:.3f} s; (b)/(a) = {b / a:.2f}  (target <= 1.5)")

        presets = [media.FILM_PRESET] + [
            p for p in args.presets.split(",") if p and p != media.FILM_PRESET
        ]
        for preset in [] if args.no_reencode else presets:
            media.FILM_PRESET = preset
            film = folder / f"reencoded-{preset}.mp4"
            seconds = timed(lambda: media.assemble(clips, film, reencode=True))  # noqa: B023
            luma, every, count = psnr(film, clips)
            print(
                f"(c) re-encode, x264 CRF {media.FILM_CRF} preset {preset}: {seconds:.1f} s "
                f"({seconds / a:.0f}x the floor), {film.stat().st_size / 1e6:.0f} MB; "
                f"PSNR vs the clips over {count} frames: Y {luma:.2f} dB, "
                f"all planes {every:.2f} dB  (target >= 45)"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
