"""Mix a film's sound. Film + narration and effect cues + music → the film with a new sound track.

The film's new sound is its own track (the clips' sound; silence when it has none), plus
each cue at its start (to the sample), plus music looped or cut to the film's length and
ducked under narration, normalised to an integrated loudness (EBU R 128, ITU-R BS.1770)
under a true-peak ceiling. Only the sound is encoded (AAC, 48 kHz stereo): the picture's
packets are copied byte for byte. Pure audio: no storyboard types.

Everything that touches a sample is libavfilter, through PyAV's filter graphs: FFmpeg's
own filters, bundled in PyAV's wheel and used by every FFmpeg-based tool; no numpy at
run time, one decoder, one implementation of BS.1770 from measuring to checking.

- mixing: `adelay` places each cue to the sample, `volume` sets gains, `amix` (with
  `normalize=0`: a plain sum, no level riding) joins the layers.
- ducking: an explicit gain envelope multiplied into the music (`amultiply`), down by
  exactly `duck_db` from `DUCK_ATTACK` before each narration to `DUCK_RELEASE` after it,
  with raised-cosine ramps. Not a sidechain compressor: a compressor's reduction depends
  on how loud the voice is and lets the music swell back in every pause between words;
  the envelope is the same for a whisper and a shout, and can be measured.
- measuring: `ebur128`, libavfilter's EBU R 128 meter (the same BS.1770 code `loudnorm`
  uses; true peak by 4x oversampling), at the end of the mixing graph, so the first pass
  of the two-pass normalisation costs no second run over the sound.
- normalising: two-pass and linear when possible, as `loudnorm`'s linear mode is: the
  one gain that brings the measured loudness to the target, when it keeps the true peak
  under the ceiling; the mix's balance and dynamics are untouched. When it does not (a
  voice's peaks stand 15-20 dB above its loudness; -14 LUFS leaves 13 dB), a larger
  gain, then `alimiter` (a look-ahead brickwall limiter) at 4x the rate, so that it
  limits true peaks, its delay compensated. Limiting takes a little loudness off, so the
  gain is found first, in secant steps, by limiting at the mix's own rate and measuring
  (to a hundredth of a LU what the 4x limiter gives, in a quarter of the time).
- encoding and checking: the AAC encoder runs on a thread of its own beside the filters
  (PyAV lets go of the GIL in FFmpeg's calls), and its packets are decoded and measured
  again with `ebur128` as they come: what `MixResult` reports is the sound as written.
  When AAC's own overshoot puts the true peak over the ceiling, the sound is levelled
  again aiming that much lower.

Why not `loudnorm` itself for the second pass: its linear mode is exactly the gain
above, and its fallback, dynamic mode, rides the gain over a 3 s window (changing the
mix's balance as it goes) and limits at 192 kHz. On bench/mix.py's 60 s film of dialogue,
narration and music at -14 LUFS it landed 0.4 LU under the target and took 1.2 s per
minute of sound, 4x the limiter above. Why not a loudness library: pyloudnorm
(BS.1770-4, on numpy and scipy) measures but neither mixes nor limits, and would make
numpy and scipy run-time dependencies for what FFmpeg already does; the tests measure
with it on purpose, as a meter independent of the one the mix uses.
"""

from __future__ import annotations

import io
import math
import queue
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
from av.container import InputContainer
from av.filter import Graph

from .media import _atomic_output, probe

__all__ = ["Cue", "MixResult", "mix_film"]

RATE = 48_000
DUCK_ATTACK = 0.3  # seconds: the music is all the way down when the narration starts
DUCK_RELEASE = 0.6  # seconds: and comes back up over this long after it ends
MUSIC_FADE = 1.5  # seconds: the music fades out over the film's last seconds
LOOP_CROSSFADE = 0.05  # seconds: where music that loops runs into its own beginning
LOUDNESS_RANGE = (-70.0, -5.0)  # LUFS: BS.1770's absolute gate, and loudnorm's loudest target
TRUE_PEAK_RANGE = (-24.0, 0.0)  # dBTP: alimiter limits down to -24 dBFS
_AAC_BIT_RATE = 192_000
_AAC_FRAME = 1024  # samples per AAC frame
_CHUNK = 4096  # samples per frame pushed into a graph
# dB under the ceiling at the first try: AAC's quantisation noise lifts peaks held at
# the ceiling by 0.3-0.4 dB (bench/mix.py's speech and music); a retry costs an encoding.
_HEADROOM = 0.5
_TRIES = 4  # encodings at most, each aiming lower by what AAC overshot the one before
_LOUDNESS_TOLERANCE = 0.1  # LU: how close a limited mix's loudness is brought to the target
_SEARCH_STEPS = 5  # runs of the limiter at most, to bring its loudness that close
Mode = Literal["linear", "limited", "none"]  # how the mix was brought to its loudness
_SILENT = -70.0  # LUFS: BS.1770's absolute gate; below it there is nothing to normalise


@dataclass(frozen=True, slots=True)
class Cue:
    """A sound placed in the film: a narration line or an effect, `start` seconds in."""

    path: Path
    start: float  # seconds from the film's first frame
    kind: Literal["narration", "sfx"]
    gain_db: float = 0.0


@dataclass(frozen=True, slots=True)
class MixResult:
    """The film `mix_film` wrote and its sound as measured there (libavfilter's ebur128)."""

    path: Path
    duration: float  # seconds: the film's (its picture's)
    loudness: float  # LUFS integrated, of the AAC as written (-inf: silence)
    true_peak: float  # dBTP (4x oversampled), of the AAC as written
    normalisation: Mode  # "none": silence, nothing to raise
    gain_db: float  # the gain applied before any limiting
    ducked: float  # seconds of film under which the music is ducked (ramps included)


def mix_film(
    film: Path,
    dest: Path,
    *,
    cues: Sequence[Cue],
    music: Path | None,
    loudness: float = -14.0,
    true_peak: float = -1.0,
    duck_db: float = 12.0,
    music_gain_db: float = 0.0,
) -> MixResult:
    """Write `film` to `dest` with a new sound track: its own sound, `cues` and `music`.

    The film's sound (silence if it has none), each cue at its start (± one sample) with
    its gain, and `music` (+ `music_gain_db`) looped or cut to the film's length, faded
    out over its last `MUSIC_FADE` seconds and `duck_db` lower under every narration,
    are summed and normalised to `loudness` LUFS integrated, true peak ≤ `true_peak`
    dBTP, then encoded as AAC 48 kHz stereo. The picture's packets are copied unchanged.
    Cue files and music may be any format FFmpeg decodes, at any rate and layout.

    Atomic: a temp file `.NAME.*.part` in dest's folder, then os.replace; on error the
    temp file is removed.

        mix_film(Path("renders/film.mp4"), Path("renders/film.mixed.mp4"),
                 cues=[Cue(Path("narration/opening.m4a"), 0.5, "narration")],
                 music=Path("assets/score.mp3"))
    """
    _check_targets(loudness, true_peak, duck_db)
    info = probe(film)
    total = round(info.duration * RATE)
    if total <= 0:
        raise ValueError(f"{film}: the film has no length")
    for cue in cues:
        if not 0 <= cue.start < info.duration:
            span = f"0-{info.duration:g} s"
            raise ValueError(
                f"{cue.path.name}: starts at {cue.start:g} s, outside the film ({span})"
            )
    with av.open(str(film)) as container:
        video_start = _video_start(container)
        mixed, ducked = _mix(container, video_start, total, cues, music, duck_db, music_gain_db)
    ceiling = true_peak - _HEADROOM
    for _ in range(_TRIES):
        levelled = _level(mixed, loudness, ceiling)
        measured = levelled.measure
        if measured.true_peak <= true_peak:
            break
        # AAC overshot the ceiling: aim lower by as much, and a little more.
        ceiling -= measured.true_peak - true_peak + 0.1
    else:
        raise RuntimeError(
            f"{film}: the encoded sound peaks at {measured.true_peak:.2f} dBTP after "
            f"{_TRIES} tries, over the {true_peak:g} dBTP ceiling"
        )
    with _atomic_output(dest) as tmp:
        _mux(film, levelled.sound, video_start, tmp)
    return MixResult(
        dest,
        info.duration,
        measured.integrated,
        measured.true_peak,
        levelled.mode,
        levelled.gain,
        ducked,
    )


def _check_targets(loudness: float, true_peak: float, duck_db: float) -> None:
    low, high = LOUDNESS_RANGE
    if not low <= loudness <= high:
        raise ValueError(f"loudness {loudness:g} LUFS: the target must be {low:g} to {high:g}")
    low, high = TRUE_PEAK_RANGE
    if not low <= true_peak <= high:
        raise ValueError(f"true peak {true_peak:g} dBTP: the ceiling must be {low:g} to {high:g}")
    if duck_db < 0:
        raise ValueError(f"duck_db {duck_db:g}: ducking lowers the music, give a positive dB")


def _video_start(container: InputContainer) -> float:
    """Seconds: where the film's picture starts in its own file (film time 0)."""
    video = container.streams.video[0]
    if video.start_time is None or video.time_base is None:
        return 0.0
    return float(video.start_time * video.time_base)


# ── measuring ───────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class _Measure:
    """What ebur128 said about a whole programme."""

    integrated: float  # LUFS (-inf: nothing above BS.1770's absolute gate)
    true_peak: float  # dBTP (-inf: digital silence, or not measured)


class _Meter:
    """Reads ebur128's frame metadata: the last frame's is the whole programme's."""

    def __init__(self) -> None:
        self._last: av.AudioFrame | None = None

    def see(self, frame: av.AudioFrame) -> None:
        self._last = frame

    def result(self) -> _Measure:
        metadata = self._last.metadata if self._last is not None else {}
        integrated = float(metadata.get("lavfi.r128.I", "-inf"))
        peak = float(metadata.get("lavfi.r128.true_peak", "0"))
        return _Measure(
            integrated if integrated > _SILENT else -math.inf,
            20 * math.log10(peak) if peak > 0 else -math.inf,
        )


def _drain(graph: Graph) -> Iterator[av.AudioFrame]:
    """The frames the graph's sink has ready (all that are left, after end of stream)."""
    while True:
        try:
            frame = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return
        assert isinstance(frame, av.AudioFrame)
        yield frame


# ── mixing (and measuring: the first pass) ──────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class _Mixed:
    frames: list[av.AudioFrame]  # fltp stereo 48 kHz
    measure: _Measure


Planes = tuple[bytes, bytes]  # float32 samples, left and right


class _Layer:
    """One input of the mixing graph and the sound it is fed."""

    def __init__(self, graph: Graph, chunks: Iterator[Planes]) -> None:
        self.source = graph.add_abuffer(
            format="fltp", sample_rate=RATE, layout="stereo", time_base=Fraction(1, RATE)
        )
        self._chunks = chunks
        self.pushed = 0
        self.done = False

    def feed(self, until: int) -> None:
        """Push sound until `until` samples have gone in, or all of it (then end of stream)."""
        while not self.done and self.pushed < until:
            planes = next(self._chunks, None)
            if planes is None:
                self.source.push(None)
                self.done = True
                return
            self.source.push(_frame(planes, self.pushed))
            self.pushed += len(planes[0]) // 4


def _frame(planes: Planes, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=len(planes[0]) // 4)
    for plane, data in zip(frame.planes, planes, strict=True):
        plane.update(data)
    frame.sample_rate = RATE
    frame.time_base = Fraction(1, RATE)
    frame.pts = pts
    return frame


def _mix(
    container: InputContainer,
    video_start: float,
    total: int,
    cues: Sequence[Cue],
    music: Path | None,
    duck_db: float,
    music_gain_db: float,
) -> tuple[_Mixed, float]:
    """Sum the film's sound, the cues and the ducked music; measure the sum as it comes."""
    graph = Graph()
    layers = [_Layer(graph, _film_sound(container, video_start, total))]
    branches: list[Any] = [layers[0].source]  # what goes into amix, in order
    speech: list[tuple[int, int]] = []  # samples: where narration sounds
    for cue in cues:
        left, right = _decode(cue.path)
        at = round(cue.start * RATE)
        if cue.kind == "narration":
            speech.append((at, min(total, at + len(left) // 4)))
        layer = _Layer(graph, _chunked(left, right))
        layers.append(layer)
        branches.append(
            _chain(
                graph,
                layer.source,
                ("volume", f"{cue.gain_db:g}dB"),
                ("adelay", f"delays={at}S:all=1"),
            )
        )
    ducked = 0.0
    if music is not None:
        left, right = _decode(music)
        if left:
            regions = _duck_regions(speech, total) if duck_db > 0 else []
            head, fed = _music(graph, (left, right), total, music_gain_db, regions, duck_db)
            layers += fed
            branches.append(head)
            ducked = sum(_ducked_span(start, end, total) for start, end in regions) / RATE
    mixer = graph.add(
        "amix", f"inputs={len(branches)}:duration=first:dropout_transition=0:normalize=0"
    )
    for index, branch in enumerate(branches):
        branch.link_to(mixer, 0, index)
    _chain(
        graph,
        mixer,
        ("ebur128", "peak=true:metadata=1"),
        ("aformat", "sample_fmts=fltp:channel_layouts=stereo"),
        ("abuffersink", ""),
    )
    graph.configure()
    frames: list[av.AudioFrame] = []
    meter = _Meter()
    for until in range(_CHUNK, total + _CHUNK * 4, _CHUNK * 4):
        for layer in layers:
            layer.feed(until)
        for frame in _drain(graph):
            meter.see(frame)
            frames.append(frame)
    for layer in layers:
        layer.feed(total + 1)
        if not layer.done:
            layer.source.push(None)
    for frame in _drain(graph):
        meter.see(frame)
        frames.append(frame)
    return _Mixed(frames, meter.result()), ducked


def _music(
    graph: Graph,
    sound: Planes,
    total: int,
    gain_db: float,
    regions: Sequence[tuple[int, int]],
    duck_db: float,
) -> tuple[Any, list[_Layer]]:
    """The music's branch of the mixing graph: looped, faded out at the end, ducked."""
    fade = min(round(MUSIC_FADE * RATE), total // 2)
    bed = _Layer(graph, _looped(*sound, total))
    head = _chain(
        graph,
        bed.source,
        ("volume", f"{gain_db:g}dB"),
        ("afade", f"t=out:ss={total - fade}:ns={fade}"),
    )
    if not regions:
        return head, [bed]
    envelope = _Layer(graph, _envelope(regions, total, duck_db))
    multiply = graph.add("amultiply")
    head.link_to(multiply, 0, 0)
    envelope.source.link_to(multiply, 0, 1)
    return multiply, [bed, envelope]


def _chain(graph: Graph, head: Any, *steps: tuple[str, str]) -> Any:
    """Link `head` through the filters `steps` (name, arguments); return the last."""
    for name, args in steps:
        node = graph.add(name, args or None)
        head.link_to(node)
        head = node
    return head


def _film_sound(container: InputContainer, video_start: float, total: int) -> Iterator[Planes]:
    """The film's own sound, its first sample at the picture's first, exactly `total` long."""
    written = 0
    if container.streams.audio:
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
        skip = 0
        started = False
        for decoded in container.decode(container.streams.audio[0]):
            if not started:
                started = True
                offset = round(((decoded.time or 0.0) - video_start) * RATE)
                if offset > 0:
                    yield from _silence(min(offset, total))
                    written += min(offset, total)
                skip = max(0, -offset)
            for frame in resampler.resample(decoded):
                left, right = _planes(frame)
                if skip:
                    cut = min(skip, len(left) // 4)
                    left, right, skip = left[cut * 4 :], right[cut * 4 :], skip - cut
                keep = min(len(left) // 4, total - written)
                if keep > 0:
                    yield left[: keep * 4], right[: keep * 4]
                    written += keep
            if written >= total:
                break
    yield from _silence(total - written)


def _silence(samples: int) -> Iterator[Planes]:
    quiet = bytes(_CHUNK * 4)
    while samples > 0:
        size = min(samples, _CHUNK)
        yield quiet[: size * 4], quiet[: size * 4]
        samples -= size


def _planes(frame: av.AudioFrame) -> Planes:
    size = frame.samples * 4
    return bytes(frame.planes[0])[:size], bytes(frame.planes[1])[:size]


def _decode(path: Path) -> tuple[bytes, bytes]:
    """All of a sound file's first track, as 48 kHz stereo float32 planes."""
    left, right = bytearray(), bytearray()
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no sound track")
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
        for decoded in container.decode(container.streams.audio[0]):
            for frame in resampler.resample(decoded):
                a, b = _planes(frame)
                left += a
                right += b
        for frame in resampler.resample(None):
            a, b = _planes(frame)
            left += a
            right += b
    return bytes(left), bytes(right)


def _chunked(left: bytes, right: bytes) -> Iterator[Planes]:
    for at in range(0, len(left), _CHUNK * 4):
        yield left[at : at + _CHUNK * 4], right[at : at + _CHUNK * 4]


def _looped(left: bytes, right: bytes, total: int) -> Iterator[Planes]:
    """The music again and again, cut at `total` samples.

    Each time round, its last `LOOP_CROSSFADE` seconds are crossfaded (equal power) into
    its first, so the seam neither clicks nor dips: the loop is that much shorter.
    """
    length = len(left) // 4
    overlap = min(round(LOOP_CROSSFADE * RATE), length // 4) if total > length else 0
    seam = [_crossfade(plane, length, overlap) for plane in (left, right)]
    start = 0  # the first time round starts at the very beginning, the others after the seam
    written = 0
    while written < total:
        at = start
        while at < length - overlap and written < total:
            size = min(_CHUNK, length - overlap - at, total - written)
            yield left[at * 4 : (at + size) * 4], right[at * 4 : (at + size) * 4]
            at += size
            written += size
        if overlap and written < total:
            size = min(overlap, total - written)
            yield seam[0][: size * 4], seam[1][: size * 4]
            written += size
        start = overlap


def _crossfade(plane: bytes, length: int, overlap: int) -> bytes:
    """The music's tail fading out over its head fading in, `overlap` samples long."""
    tail, head = array("f"), array("f")
    tail.frombytes(plane[(length - overlap) * 4 : length * 4])
    head.frombytes(plane[: overlap * 4])
    faded = array("f")
    for n in range(overlap):
        angle = math.pi / 2 * (n + 0.5) / overlap
        faded.append(tail[n] * math.cos(angle) + head[n] * math.sin(angle))
    return faded.tobytes()


# ── ducking ─────────────────────────────────────────────────────────────────────────────


def _duck_regions(speech: Iterable[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """Samples where the music is all the way down: narration, with short gaps closed.

    Two lines closer than the ramps down and up would take keep the music down between
    them rather than let it bob up for a moment.
    """
    gap = round((DUCK_ATTACK + DUCK_RELEASE) * RATE)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(speech):
        if end <= start:
            continue
        if merged and start - merged[-1][1] < gap:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, min(end, total)))
    return merged


def _ducked_span(start: int, end: int, total: int) -> int:
    return min(total, end + round(DUCK_RELEASE * RATE)) - max(0, start - round(DUCK_ATTACK * RATE))


def _ramp(samples: int, duck_db: float, *, down: bool) -> array[float]:
    """Raised-cosine gain from 1 to 10^(-duck_db/20) (or back), in dB."""
    gains = array("f")
    for n in range(samples):
        shape = 0.5 - 0.5 * math.cos(math.pi * (n + 0.5) / samples)
        depth = shape if down else 1.0 - shape
        gains.append(10 ** (-duck_db * depth / 20))
    return gains


def _envelope(regions: Sequence[tuple[int, int]], total: int, duck_db: float) -> Iterator[Planes]:
    """The music's gain, sample by sample: 1, ramping down to -duck_db over each region."""
    attack, release = round(DUCK_ATTACK * RATE), round(DUCK_RELEASE * RATE)
    down = _ramp(attack, duck_db, down=True).tobytes()
    up = _ramp(release, duck_db, down=False).tobytes()
    low = 10 ** (-duck_db / 20)
    at = 0
    for start, end in regions:
        ramp_start = max(at, start - attack)
        yield from _constant(1.0, ramp_start - at)
        yield from _piece(down[(ramp_start - (start - attack)) * 4 :][: (start - ramp_start) * 4])
        yield from _constant(low, end - start)
        tail = min(release, total - end)
        yield from _piece(up[: tail * 4])
        at = end + tail
    yield from _constant(1.0, total - at)


def _constant(gain: float, samples: int) -> Iterator[Planes]:
    block = array("f", [gain]) * min(samples, _CHUNK)
    data = block.tobytes()
    while samples > 0:
        size = min(samples, _CHUNK)
        yield data[: size * 4], data[: size * 4]
        samples -= size


def _piece(data: bytes) -> Iterator[Planes]:
    for at in range(0, len(data), _CHUNK * 4):
        chunk = data[at : at + _CHUNK * 4]
        yield chunk, chunk


# ── normalising and encoding (the second pass) ──────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class _Levelled:
    sound: bytes  # an M4A file (AAC 48 kHz stereo), in memory
    measure: _Measure  # of the sound, decoded
    mode: Mode
    gain: float  # dB


def _level(mixed: _Mixed, target: float, ceiling: float) -> _Levelled:
    """Bring the mix to `target` LUFS with its true peak at most `ceiling` dBTP; encode it.

    Linear when the gain alone keeps the peaks under the ceiling. Otherwise the gain, then
    a true-peak limiter: `alimiter` at 4x the rate (as BS.1770 finds true peaks), its
    look-ahead delay compensated. Limiting takes a little loudness off the peaks, so the
    gain is first found by limiting at the mix's own rate and measuring, in secant steps,
    until the loudness is within `_LOUDNESS_TOLERANCE` of the target: limiting sample
    peaks takes off what limiting true peaks does to a hundredth of a LU (bench/mix.py),
    in a quarter of the time.
    """
    measure = mixed.measure
    if measure.integrated == -math.inf:
        return _Levelled(*_encode(mixed.frames), "none", 0.0)
    gain = target - measure.integrated
    if measure.true_peak + gain <= ceiling:
        return _Levelled(*_encode(mixed.frames, _gain(gain)), "linear", gain)
    limiter = ("alimiter", f"limit={10 ** (ceiling / 20):.6f}:level=false:latency=true")
    tried: list[tuple[float, float]] = []  # (gain, the loudness it reached)
    for _ in range(_SEARCH_STEPS):
        reached = _measure(mixed.frames, _gain(gain), limiter)
        tried.append((gain, reached))
        if abs(target - reached) <= _LOUDNESS_TOLERANCE:
            break
        gain = _next_gain(tried, target, measure, ceiling)
    sound, measure = _encode(
        mixed.frames, _gain(gain), ("aresample", str(4 * RATE)), limiter, ("aresample", str(RATE))
    )
    return _Levelled(sound, measure, "limited", gain)


def _gain(db: float) -> tuple[str, str]:
    return ("volume", f"volume={db:.4f}dB:precision=double")


def _next_gain(
    tried: Sequence[tuple[float, float]], target: float, mix: _Measure, ceiling: float
) -> float:
    """The gain to try next, by the secant through the last two tries; after the first,
    by the slope the limiter's loss suggests: a peak `excess` dB over the ceiling lost
    `loss` dB of loudness, so each dB more gain adds about 1 - loss/excess dB of it."""
    gain, reached = tried[-1]
    if len(tried) > 1:
        before, was = tried[-2]
        slope = (reached - was) / (gain - before) if gain != before else 1.0
    else:
        loss = mix.integrated + gain - reached
        excess = mix.true_peak + gain - ceiling
        slope = 1 - loss / excess if excess > 0 else 1.0
    return gain + (target - reached) / min(1.0, max(0.2, slope))


def _measure(frames: Sequence[av.AudioFrame], *steps: tuple[str, str]) -> float:
    """Run frames through filters; the integrated loudness of what comes out (LUFS)."""
    graph = Graph()
    source = graph.add_abuffer(
        format="fltp", sample_rate=RATE, layout="stereo", time_base=Fraction(1, RATE)
    )
    _chain(graph, source, *steps, ("ebur128", "metadata=1"), ("abuffersink", ""))
    graph.configure()
    meter = _Meter()
    for frame in [*frames, None]:
        source.push(frame)
        for done in _drain(graph):
            meter.see(done)
    return meter.result().integrated


def _encode(frames: Sequence[av.AudioFrame], *steps: tuple[str, str]) -> tuple[bytes, _Measure]:
    """Run frames through filters, encode them as AAC (an M4A file, in memory) and
    measure the sound as a player will hear it: the AAC packets, decoded.

    The encoder runs on a thread of its own (PyAV lets go of the GIL in FFmpeg's calls):
    the filters (a limiter at 192 kHz, say) run beside it, then the check decodes and
    measures its packets as they come.
    """
    graph = Graph()
    source = graph.add_abuffer(
        format="fltp", sample_rate=RATE, layout="stereo", time_base=Fraction(1, RATE)
    )
    _chain(
        graph,
        source,
        *steps,
        ("aformat", f"sample_fmts=fltp:sample_rates={RATE}:channel_layouts=stereo"),
        ("asetnsamples", f"n={_AAC_FRAME}:p=0"),  # what the encoder takes: no re-framing
        ("abuffersink", ""),
    )
    graph.configure()
    encoder = _Encoder()
    try:
        for frame in [*frames, None]:
            source.push(frame)
            for done in _drain(graph):
                encoder.put(done)
        encoder.put(None)
        check = _Check(sum(frame.samples for frame in frames))
        for packet in encoder.packets():
            check.add(packet, encoder.extradata)
        return encoder.result(), check.result()
    finally:
        encoder.stop()


class _Encoder:
    """An AAC encoder on a thread of its own: frames in through one queue, its packets
    out through another (and into an M4A file in memory)."""

    def __init__(self) -> None:
        self._frames: queue.SimpleQueue[av.AudioFrame | None] = queue.SimpleQueue()
        self._packets: queue.SimpleQueue[list[Any] | None] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self._buffer = io.BytesIO()
        self._failure: BaseException | None = None
        self.extradata = b""  # the AAC decoder configuration, set before the first packet
        self._thread = threading.Thread(target=self._work, name="aac-encoder", daemon=True)
        self._thread.start()

    def put(self, frame: av.AudioFrame | None) -> None:
        """Hand over a frame; None ends the sound."""
        self._frames.put(frame)

    def packets(self) -> Iterator[Any]:
        """The encoded packets, as the encoder makes them, until it is done."""
        while (made := self._packets.get()) is not None:
            yield from made

    def result(self) -> bytes:
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        return self._buffer.getvalue()

    def stop(self) -> None:
        """Make the encoder drop what it has left and end (at once if it has ended)."""
        self._stopped.set()
        self._frames.put(None)
        self._thread.join()

    def _work(self) -> None:
        try:
            with av.open(self._buffer, "w", format="mp4") as out:
                stream = out.add_stream("aac", rate=RATE, layout="stereo")
                stream.bit_rate = _AAC_BIT_RATE
                pts = 0
                while (frame := self._frames.get()) is not None and not self._stopped.is_set():
                    frame.pts, frame.time_base = pts, Fraction(1, RATE)
                    pts += frame.samples
                    self._hand_on(out, stream.encode(frame), stream)
                if not self._stopped.is_set():
                    self._hand_on(out, stream.encode(None), stream)
        except BaseException as exc:  # raised again in the caller's thread by result()
            self._failure = exc
        finally:
            self._packets.put(None)

    def _hand_on(self, out: Any, packets: list[Any], stream: Any) -> None:
        if packets:
            self.extradata = bytes(stream.codec_context.extradata or b"")
            out.mux(packets)
            self._packets.put(packets)


class _Check:
    """Decode AAC packets and measure the sound (integrated loudness, true peak).

    What a player plays: not the encoder's priming (before 0) nor its padding (after the
    sound's `total` samples), as the MP4's edit list says.
    """

    def __init__(self, total: int) -> None:
        self._total = total
        self._decoder: Any = None
        self._graph = Graph()
        self._source = self._graph.add_abuffer(
            format="fltp", sample_rate=RATE, layout="stereo", time_base=Fraction(1, RATE)
        )
        _chain(
            self._graph,
            self._source,
            ("ebur128", "peak=true:metadata=1"),
            ("abuffersink", ""),
        )
        self._graph.configure()
        self._meter = _Meter()
        self._pts = 0

    def add(self, packet: Any, extradata: bytes) -> None:
        if self._decoder is None:
            self._decoder = av.CodecContext.create("aac", "r")
            self._decoder.extradata = extradata
        self._push(self._decoder.decode(packet))

    def result(self) -> _Measure:
        if self._decoder is not None:
            self._push(self._decoder.decode(None))
        self._source.push(None)
        for frame in _drain(self._graph):
            self._meter.see(frame)
        return self._meter.result()

    def _push(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            at = self._pts if frame.pts is None else frame.pts
            first, end = max(0, -at), min(frame.samples, self._total - at)
            self._pts = at + frame.samples
            if end <= first:
                continue
            if (first, end) != (0, frame.samples):
                left, right = _planes(frame)
                frame = _frame((left[first * 4 : end * 4], right[first * 4 : end * 4]), at + first)
            frame.pts, frame.time_base = at + first, Fraction(1, RATE)
            self._source.push(frame)
            for done in _drain(self._graph):
                self._meter.see(done)


# ── the film: its picture copied, the new sound beside it ───────────────────────────────


def _mux(film: Path, sound: bytes, video_start: float, tmp: Path) -> None:
    """Write the film's picture packets unchanged and the encoded sound, interleaved.

    The sound starts with the picture: shifted by where the picture starts in the film's
    own file (0 for the films compiler.media assembles).
    """
    with (
        av.open(str(film)) as picture,
        av.open(io.BytesIO(sound), "r") as audio,
        av.open(str(tmp), "w", format="mp4") as out,
    ):
        template = picture.streams.video[0]
        video = out.add_stream_from_template(template)
        video.time_base = template.time_base
        audio_in = audio.streams.audio[0]
        track = out.add_stream_from_template(audio_in)
        track.time_base = audio_in.time_base
        atb = audio_in.time_base or Fraction(1, RATE)
        shift = round(Fraction(video_start) / atb)
        sound_packets = (p for p in audio.demux(audio_in) if p.dts is not None and p.size)
        pending = next(sound_packets, None)
        vtb = template.time_base or Fraction(1, 90_000)
        for packet in picture.demux(template):
            if packet.dts is None or packet.size == 0:
                continue
            while pending is not None and ((pending.dts or 0) + shift) * atb <= packet.dts * vtb:
                _mux_sound(out, track, pending, shift)
                pending = next(sound_packets, None)
            packet.stream = video
            out.mux(packet)
        while pending is not None:
            _mux_sound(out, track, pending, shift)
            pending = next(sound_packets, None)


def _mux_sound(out: Any, track: Any, packet: Any, shift: int) -> None:
    packet.pts = (packet.pts if packet.pts is not None else packet.dts) + shift
    packet.dts = packet.dts + shift
    packet.stream = track
    out.mux(packet)
