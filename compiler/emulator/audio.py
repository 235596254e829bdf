"""The emulator's audio: a tone for speech, filtered noise for sound effects, MP3 and WAV.

TTS answers with a steady tone whose length follows the text (`speech_seconds`), at
about -20 dBFS RMS; a sound effect is low-passed white noise of exactly the asked length
at about -24 dBFS RMS; a voice's trial is 3 s of its tone. All are mono, 44.1 kHz,
16-bit, made with the standard library alone (a tone loops one period of whole samples;
the noise is a boxcar of random samples, scaled to its level exactly) and encoded with
PyAV: MP3 through libmp3lame at 128 kb/s, whose Xing/LAME header records the encoder's
delay and padding so that a decoder (FFmpeg's among them) gives back exactly the samples
made; WAV with the standard library's `wave`. MP3 comes back about 0.45 dB quieter than
its source (LAME's own filtering of a pure tone or band-limited noise); WAV is exact.
"""

from __future__ import annotations

import itertools
import math
import operator
import random
import re
import sys
import threading
import wave
import zlib
from array import array
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from io import BytesIO
from typing import Literal

import av

RATE = 44100  # samples a second
WORDS_PER_SECOND = Decimal("2.5")  # speech at speed 1.0
MIN_SPEECH_SECONDS = Decimal("1.0")
TONE_DBFS = -20.0  # RMS of a speech tone
NOISE_DBFS = -24.0  # RMS of a sound effect
TRIAL_SECONDS = 3  # a voice's trial_url
MP3_BIT_RATE = 128_000
FULL_SCALE = 32767
# A tone's period in whole samples (44100 / p Hz): 525 Hz down to 210 Hz, one per voice.
PERIODS = (84, 90, 98, 100, 105, 120, 126, 140, 150, 175, 196, 210)
NOISE_TAPS = 6  # boxcar length: a gentle low-pass (first null at 7.35 kHz)
CHUNK = RATE  # samples per frame handed to the encoder

Format = Literal["mp3", "wav"]
Kind = Literal["tone", "noise"]
MEDIA_TYPES: dict[str, str] = {"mp3": "audio/mpeg", "wav": "audio/wav"}

# A word: a run of characters other than spaces, or one CJK ideograph (Chinese has no spaces).
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


def words(text: str) -> int:
    """Words in `text`: runs of non-space characters that hold a letter or a digit (a dash
    alone is none), each CJK ideograph counting as a word of its own."""
    return sum(1 for word in _WORD.findall(text) if any(ch.isalnum() for ch in word))


def speech_seconds(text: str, speed: Decimal) -> Decimal:
    """How long TTS speaks `text`: max(1.0, words / (2.5 x speed)) seconds."""
    return max(MIN_SPEECH_SECONDS, words(text) / (WORDS_PER_SECOND * speed))


def sample_count(seconds: Decimal) -> int:
    """Whole samples for `seconds` at 44.1 kHz (rounded half up)."""
    return int((seconds * RATE).to_integral_value(rounding=ROUND_HALF_UP))


def duration_text(samples: int) -> str:
    """Kling's duration string for `samples`: seconds with three decimals, e.g. "3.200"."""
    return f"{samples / RATE:.3f}"


def voice_period(voice_id: str) -> int:
    """A voice's tone period: each voice id gets one of a dozen pitches."""
    return PERIODS[zlib.crc32(voice_id.encode()) % len(PERIODS)]


@dataclass(slots=True)
class Audio:
    """One audio file the emulator serves: what it is, its length, its encodings once made."""

    audio_id: str
    kind: Kind
    samples: int
    period: int = 100  # a tone's period in samples
    seed: int = 0  # a noise's random seed
    ready_at: float = 0.0  # on the emulator's clock: when its URL starts to answer
    files: dict[str, bytes] = field(default_factory=dict)  # by format, made on demand
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def duration(self) -> str:
        return duration_text(self.samples)

    def encoded(self, fmt: Format) -> bytes:
        """The file in `fmt`, encoded once (call it from a worker thread: MP3 takes a while)."""
        with self.lock:
            data = self.files.get(fmt)
            if data is None:
                pcm = (
                    tone(self.samples, self.period)
                    if self.kind == "tone"
                    else noise(self.samples, self.seed)
                )
                data = self.files[fmt] = encode_mp3(pcm) if fmt == "mp3" else encode_wav(pcm)
            return data


def tone(samples: int, period: int, dbfs: float = TONE_DBFS) -> array[int]:
    """A sine of `period` samples at `dbfs` RMS, `samples` long (16-bit)."""
    peak = math.sqrt(2) * 10 ** (dbfs / 20) * FULL_SCALE  # a sine's RMS is peak / sqrt(2)
    one = array("h", (round(peak * math.sin(2 * math.pi * i / period)) for i in range(period)))
    return (one * (samples // period + 1))[:samples]


def noise(samples: int, seed: int, dbfs: float = NOISE_DBFS) -> array[int]:
    """Low-passed white noise at exactly `dbfs` RMS, `samples` long (16-bit)."""
    if samples == 0:
        return array("h")
    white = array("h")
    white.frombytes(random.Random(seed).randbytes(2 * (samples + NOISE_TAPS)))
    sums = [0, *itertools.accumulate(white)]
    filtered = list(map(operator.sub, sums[NOISE_TAPS:], sums[:-NOISE_TAPS]))[:samples]
    rms = math.sqrt(sum(map(operator.mul, filtered, filtered)) / samples) or 1.0
    gain = 10 ** (dbfs / 20) * FULL_SCALE / rms
    return array("h", map(round, map(gain.__mul__, filtered)))


def encode_mp3(pcm: array[int]) -> bytes:
    """Mono 44.1 kHz MP3 (libmp3lame, 128 kb/s) with a LAME header that trims it exactly."""
    out = BytesIO()
    with av.open(out, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=RATE, layout="mono")
        stream.bit_rate = MP3_BIT_RATE
        for start in range(0, len(pcm), CHUNK):
            chunk = pcm[start : start + CHUNK]
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(chunk))
            frame.planes[0].update(chunk.tobytes())
            frame.sample_rate = RATE
            frame.time_base = Fraction(1, RATE)
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def encode_wav(pcm: array[int]) -> bytes:
    """Mono 44.1 kHz 16-bit PCM WAV."""
    out = BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(RATE)
        if sys.byteorder == "big":  # WAV is little-endian
            pcm = array("h", pcm)
            pcm.byteswap()
        file.writeframes(pcm.tobytes())
    return out.getvalue()
