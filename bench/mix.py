"""Benchmark: mixing a 60 s film's sound, against decoding and re-encoding its sound alone.

Makes a 60 s film (320x180, 24 fps H.264; its own sound: ambience and two voices
talking in turns, as Kling's clips with sound have), six narration lines (MP3, mono,
44.1 kHz, a synthetic voice: a glottal pulse train through moving formants, in
syllables and pauses, so its peaks stand well above its loudness as speech's do), two
effects (WAV) and 40 s of music (MP3, stereo 44.1 kHz: a chord progression, a kick and
a hi-hat), so the music loops once. Then, in one run:
  (a) decoding the film's sound and encoding it again (AAC 48 kHz stereo, 192 kb/s)
      into a file: the floor, since any mix must at least do that;
  (b) `compiler.mix.mix_film` (cues, music ducked under the narration, two-pass loudness
      normalisation, the picture's packets copied): target (b) / (a) <= 2;
  (c) the same as (a) on the film (b) wrote: the same work on the sound (b) encodes, since
      FFmpeg's AAC encoder spends more time on voices and music than on ambience;
  and the loudness error of (b), |measured - target|, by pyloudnorm (BS.1770-4), a
  meter independent of the mix's own (libavfilter's ebur128), with the true peak by 4x
  oversampling, at -14 LUFS and again at -23 LUFS.

    .venv/bin/python bench/mix.py [--seconds 60] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyloudnorm  # type: ignore[import-untyped]
from av.audio.stream import AudioStream
from scipy import signal  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.mix import Cue, mix_film  # noqa: E402

WIDTH, HEIGHT, FPS, RATE = 320, 180, 24, 48_000
Array = np.ndarray[Any, Any]


# ── the inputs ────────────────────────────────────────────────────────────────────────


def voice(seconds: float, rate: int, pitch: float, rng: np.random.Generator) -> Array:
    """A synthetic voice: syllables of a buzzing glottal source through moving formants."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    f0 = pitch * (
        1 + 0.08 * np.sin(2 * np.pi * 0.7 * t) + 0.02 * rng.standard_normal(n).cumsum() / 500
    )
    phase = np.cumsum(f0) / rate
    source = np.zeros(n)
    for k in range(1, 40):  # a sawtooth-like buzz, band-limited below Nyquist
        alive = k * f0 < rate / 2 - 500
        source += np.where(alive, np.sin(2 * np.pi * k * phase) / k, 0.0)
    envelope = np.zeros(n)
    formants = np.zeros((n, 2))
    at = 0
    while at < n:
        length = round(rng.uniform(0.10, 0.32) * rate)
        if at + length > n:
            break
        envelope[at : at + length] = np.hanning(length) ** 0.5 * rng.uniform(0.4, 1.0)
        formants[at : at + length] = [rng.uniform(300, 900), rng.uniform(900, 2500)]
        pause = rng.uniform(0.6, 1.0) if rng.random() < 0.12 else rng.uniform(0.02, 0.15)
        at += length + round(pause * rate)
    out = np.zeros(n)
    for block in range(0, n, rate // 50):  # formants move every 20 ms
        part = slice(block, min(n, block + rate // 50))
        for formant, width in zip(formants[block], (90.0, 150.0), strict=True):
            if formant <= 0:
                continue
            b, a = signal.iirpeak(formant, formant / width, fs=rate)
            out[part] += signal.lfilter(b, a, source[part])
    out *= envelope
    scaled: Array = 0.5 * out / np.max(np.abs(out))
    return scaled


def music(seconds: float, rate: int) -> Array:
    """Stereo: a pad through four chords (2 s each), a kick on the beat, a hi-hat between."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    chords = [
        (220.0, 277.2, 329.6),
        (196.0, 246.9, 293.7),
        (174.6, 220.0, 261.6),
        (196.0, 246.9, 311.1),
    ]
    pad = np.zeros(n)
    for index, notes in enumerate(chords * round(seconds / 8 + 1)):
        part = slice(index * 2 * rate, min(n, (index + 1) * 2 * rate))
        for note in notes:
            for detune in (0.998, 1.002):
                pad[part] += np.sin(2 * np.pi * note * detune * t[part])
    pad *= 0.04
    beat = rate * 60 // 100  # 100 BPM
    kick = np.zeros(n)
    hat = np.zeros(n)
    rng = np.random.default_rng(7)
    hit = np.arange(round(0.25 * rate)) / rate
    thump = np.sin(2 * np.pi * 55 * hit * (1 + 2 * np.exp(-hit * 30))) * np.exp(-hit * 14)
    tick = rng.standard_normal(round(0.05 * rate)) * np.exp(-np.arange(round(0.05 * rate)) / 300)
    for at in range(0, n - len(thump), beat):
        kick[at : at + len(thump)] += 0.5 * thump
        off = at + beat // 2
        hat[off : off + len(tick)] += 0.08 * tick[: max(0, min(len(tick), n - off))]
    left, right = pad + kick + 0.6 * hat, pad + kick + 1.0 * hat
    return np.stack([left, right])


def write_sound(path: Path, samples: Array, rate: int, codec: str) -> Path:
    """`samples` (n,) mono or (2, n) stereo, encoded with `codec` (libmp3lame, pcm_s16le)."""
    layout = "mono" if samples.ndim == 1 else "stereo"
    planar = np.atleast_2d(samples).astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, AudioStream)
        formats = stream.codec_context.codec.audio_formats
        encoder_format = formats[0].name if formats else "fltp"
        resampler = av.AudioResampler(format=encoder_format, layout=layout, rate=rate)
        for at in range(0, planar.shape[1], 1152):
            chunk = np.ascontiguousarray(planar[:, at : at + 1152])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, at
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return path


def write_film(path: Path, seconds: float, rng: np.random.Generator) -> None:
    """The film: a small moving picture, and its clips' own sound, as Kling's clips with
    sound have: each 5 s clip its own ambience (stereo noise of some colour, swelling
    like wind or sea, about -30 dBFS), every other one a line of dialogue over it."""
    n = round(seconds * RATE)
    ambience = np.zeros((2, n))
    for scene in range(math.ceil(seconds / 5)):
        part = slice(scene * 5 * RATE, min(n, (scene + 1) * 5 * RATE))
        t = np.arange(part.stop - part.start) / RATE
        colour = rng.uniform(0.8, 0.99)
        swell = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6))
        for channel in range(2):
            noise = signal.lfilter([1.0], [1.0, -colour], rng.standard_normal(len(t)))
            ambience[channel, part] = 0.03 * swell * noise / np.std(noise)
    talk = np.zeros(n)
    for scene in range(round(seconds // 5)):  # every other 5 s clip has a line or two
        if scene % 2:
            line = voice(3.0, RATE, 190.0 if scene % 4 == 1 else 125.0, rng)
            at = scene * 5 * RATE + RATE // 2
            talk[at : at + len(line)] += 0.6 * line[: n - at]
    sound = (ambience + talk).astype(np.float32)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "23"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = out.add_stream("aac", rate=RATE, layout="stereo")
        audio.bit_rate = 192_000
        x = np.arange(WIDTH)[None, :]
        y = np.arange(HEIGHT)[:, None]
        for frame_no in range(round(seconds * FPS)):
            shade = (x * 2 + y + frame_no * 4) % 256
            picture = np.stack([shade, (shade + 85) % 256, (shade + 170) % 256], axis=2)
            frame = av.VideoFrame.from_ndarray(picture.astype(np.uint8), format="rgb24")
            frame.pts = frame_no
            out.mux(video.encode(frame))
            done = round((frame_no + 1) / FPS * RATE)
            for at in range(round(frame_no / FPS * RATE) // 1024 * 1024, done // 1024 * 1024, 1024):
                chunk = np.ascontiguousarray(sound[:, at : at + 1024])
                sound_frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                sound_frame.sample_rate, sound_frame.pts = RATE, at
                out.mux(audio.encode(sound_frame))
        tail = n // 1024 * 1024
        if tail < n:
            chunk = np.ascontiguousarray(sound[:, tail:])
            sound_frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            sound_frame.sample_rate, sound_frame.pts = RATE, tail
            out.mux(audio.encode(sound_frame))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


def make_inputs(folder: Path, seconds: float) -> tuple[Path, list[Cue], Path]:
    rng = np.random.default_rng(1923)
    film = folder / "film.mp4"
    write_film(film, seconds, rng)
    cues = []
    for index, at in enumerate(np.linspace(1.0, seconds - 9.0, 6)):
        line = voice(rng.uniform(4.0, 6.0), 44_100, 110.0, rng)
        path = write_sound(folder / f"narration-{index}.mp3", line, 44_100, "libmp3lame")
        cues.append(Cue(path, float(at), "narration"))
    for index, at in enumerate((seconds * 0.3, seconds * 0.7)):
        hiss = signal.lfilter([1.0], [1.0, -0.9], rng.standard_normal(RATE * 3))
        wave = 0.3 * hiss / np.max(np.abs(hiss)) * np.exp(-np.arange(RATE * 3) / RATE)
        path = write_sound(folder / f"sfx-{index}.wav", wave, RATE, "pcm_s16le")
        cues.append(Cue(path, at, "sfx"))
    score = write_sound(folder / "music.mp3", music(40.0, 44_100), 44_100, "libmp3lame")
    return film, cues, score


# ── the floor, and the independent meter ──────────────────────────────────────────────


def recode_sound(film: Path, dest: Path) -> None:
    """(a): decode the film's sound and encode it again (AAC 48 kHz stereo) into a file."""
    with av.open(str(film)) as source, av.open(str(dest), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=RATE, layout="stereo")
        stream.bit_rate = 192_000
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
        for frame in source.decode(audio=0):
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        out.mux(stream.encode(None))


def measure(path: Path) -> tuple[float, float]:
    """(integrated LUFS by pyloudnorm, true peak dBTP by 4x oversampling) of the sound."""
    with av.open(str(path)) as container:
        sound = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1).T
    loudness = float(pyloudnorm.Meter(RATE).integrated_loudness(sound.astype(np.float64)))
    peak = float(np.max(np.abs(signal.resample_poly(sound, 4, 1, axis=0))))
    return loudness, 20 * float(np.log10(peak))


def timed(work: Any) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of (a) and (b)")
    parser.add_argument("--keep", type=Path, help="make the inputs here and keep them")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-mix-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        began = time.perf_counter()
        film, cues, score = make_inputs(folder, args.seconds)
        print(
            f"film: {args.seconds:g} s {WIDTH}x{HEIGHT} {FPS} fps H.264 + AAC (ambience, "
            f"dialogue); {sum(c.kind == 'narration' for c in cues)} narration lines (MP3), "
            f"{sum(c.kind == 'sfx' for c in cues)} effects (WAV), 40 s of music (MP3) "
            f"({time.perf_counter() - began:.1f} s to make)"
        )
        floor, mixing, written = [], [], []
        results = []
        mixed = folder / "mixed.mp4"
        for _ in range(args.repeat):  # interleaved, so all see the same disk cache
            floor.append(timed(lambda: recode_sound(film, folder / "sound.m4a")))
            mixing.append(
                timed(lambda: results.append(mix_film(film, mixed, cues=cues, music=score)))
            )
            written.append(timed(lambda: recode_sound(mixed, folder / "mixed.m4a")))
        a, b, c = (statistics.median(times) for times in (floor, mixing, written))
        result = results[0]
        print(f"(a) decode + encode the film's sound alone: {a:.3f} s (median of {args.repeat})")
        print(
            f"(b) mix_film: {b:.3f} s; (b)/(a) = {b / a:.2f}  (target <= 2); "
            f"{result.normalisation} normalisation, gain {result.gain_db:+.1f} dB, "
            f"music ducked under {result.ducked:.1f} s"
        )
        print(
            f"(c) decode + encode the mixed film's sound (what (b) encodes: AAC takes longer "
            f"on voices and music than on ambience): {c:.3f} s; (b)/(c) = {b / c:.2f}"
        )
        for target in (-14.0, -23.0):
            if target != -14.0:
                result = mix_film(film, mixed, cues=cues, music=score, loudness=target)
            loudness, peak = measure(mixed)
            print(
                f"    at {target:g} LUFS ({result.normalisation}): pyloudnorm {loudness:.2f} LUFS, "
                f"error {abs(loudness - target):.2f} LU (target <= 1); true peak {peak:.2f} dBTP "
                f"(target <= -1); the mix's own meter said {result.loudness:.2f} LUFS, "
                f"{result.true_peak:.2f} dBTP"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
