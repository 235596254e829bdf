"""compiler.media: placeholder clips, probing, frame grabs and assembly, on tiny real MP4s.

Assembly is checked on clips with a white flash frame and a beep at the same instant, so
that where each lands in the film shows whether picture and sound stayed together.
"""

from __future__ import annotations

import io
import math
from array import array
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps, ImageStat

from compiler import media
from compiler.emulator import clips
from compiler.emulator.clips import Card, encode_placeholder
from compiler.media import ClipInfo, assemble, extract_frame, probe

FRAME = 1 / 24  # the tolerance the spec promises: one frame at 24 fps
PROMPT = "A lighthouse keeper climbs the spiral stairs at dusk, lantern in hand."


def gradient(width: int, height: int, *, flip: bool = False) -> Image.Image:
    """A smooth test image: red across, green down (or reversed), blue constant."""
    image = Image.new("RGB", (width, height))
    image.putdata(
        [
            (x * 255 // (width - 1), y * 255 // (height - 1), 96)
            for y in range(height)
            for x in range(width)
        ]
    )
    return image.transpose(Image.Transpose.ROTATE_180) if flip else image


def mean_error(a: Image.Image, b: Image.Image) -> list[float]:
    return list(ImageStat.Stat(ImageChops.difference(a, b)).mean)


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def stream_seconds(path: Path) -> dict[str, float]:
    with av.open(str(path)) as container:
        return {
            stream.type: float(stream.duration * stream.time_base)
            for stream in container.streams
            if stream.duration is not None and stream.time_base is not None
        }


def loudness(path: Path, start: float, stop: float) -> float:
    """Mean absolute sample value of the first channel between start and stop seconds."""
    samples = array("f")
    rate = 0
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            assert frame.format.name == "fltp"
            rate = frame.sample_rate
            samples.frombytes(bytes(frame.planes[0])[: frame.samples * 4])
    window = samples[round(start * rate) : round(stop * rate)]
    return sum(abs(value) for value in window) / len(window)


def parts_left(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".part"))


# ── encode_placeholder + probe ──────────────────────────────────────────────────────────


def test_placeholder_lasts_the_sum_of_its_cards(tmp_path: Path) -> None:
    clip = tmp_path / "shot.mp4"
    cards = [Card(0.5, "opening · shot 1/2", PROMPT), Card(0.75, "opening · shot 2/2", "Sea.")]

    encode_placeholder(clip, width=160, height=90, cards=cards)

    assert probe(clip) == ClipInfo(duration=1.25, width=160, height=90, fps=24.0, has_audio=False)
    assert count_frames(clip) == 30
    assert parts_left(tmp_path) == []


@pytest.mark.parametrize(
    ("seconds", "fps", "frames"),
    [
        ((0.52, 0.5), 24, 24),  # 24.48 frames round to 24
        ((1.0,), 30, 30),
        ((0.3, 0.3, 0.3), 25, 22),  # 22.5 rounds half to even: 22
    ],
)
def test_placeholder_rounds_to_whole_frames(
    tmp_path: Path, seconds: tuple[float, ...], fps: int, frames: int
) -> None:
    clip = tmp_path / "shot.mp4"
    encode_placeholder(
        clip, width=128, height=72, fps=fps, cards=[Card(s, "t", "p") for s in seconds]
    )

    info = probe(clip)
    assert count_frames(clip) == frames
    assert info.fps == fps
    assert info.duration == pytest.approx(frames / fps, abs=1e-6)


def test_placeholder_with_audio_has_an_aac_track_of_the_same_length(tmp_path: Path) -> None:
    clip = tmp_path / "shot.mp4"

    encode_placeholder(clip, width=160, height=90, cards=[Card(1.5, "t", PROMPT)], audio=True)

    assert probe(clip) == ClipInfo(duration=1.5, width=160, height=90, fps=24.0, has_audio=True)
    seconds = stream_seconds(clip)
    assert seconds["video"] == pytest.approx(1.5, abs=FRAME)
    assert seconds["audio"] == pytest.approx(1.5, abs=FRAME)
    with av.open(str(clip)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        assert audio.codec_context.sample_rate in (44_100, 48_000)
        assert container.duration is not None
        assert container.duration / av.time_base <= 1.5 + FRAME
    assert 0.005 < loudness(clip, 0.1, 1.4) < 0.1  # a quiet tone, not silence


def test_placeholder_is_h264_yuv420p(tmp_path: Path) -> None:
    clip = tmp_path / "shot.mp4"
    encode_placeholder(clip, width=128, height=72, cards=[Card(1.0, "t", "p")])

    with av.open(str(clip)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"


def test_placeholder_writes_to_a_file_object(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    encode_placeholder(buffer, width=128, height=72, cards=[Card(1.0, "t", "p")])

    clip = tmp_path / "from-buffer.mp4"
    clip.write_bytes(buffer.getvalue())
    assert probe(clip) == ClipInfo(duration=1.0, width=128, height=72, fps=24.0, has_audio=False)


def test_first_and_last_frames_are_the_given_images(tmp_path: Path) -> None:
    clip = tmp_path / "shot.mp4"
    first, last = gradient(400, 300), gradient(300, 400, flip=True)

    encode_placeholder(
        clip,
        width=160,
        height=90,
        cards=[Card(1.0, "t", PROMPT)],
        first_image=first,
        last_image=last,
    )

    got_first, got_last = extract_frame(clip, "first"), extract_frame(clip, "last")
    assert (got_first.mode, got_first.size) == ("RGB", (160, 90))
    assert (got_last.mode, got_last.size) == ("RGB", (160, 90))
    expected_first = ImageOps.fit(first, (160, 90), Image.Resampling.LANCZOS)
    expected_last = ImageOps.fit(last, (160, 90), Image.Resampling.LANCZOS)
    assert max(mean_error(got_first, expected_first)) < 6
    assert max(mean_error(got_last, expected_last)) < 6
    # They really are different frames: the first is not the last.
    assert max(mean_error(got_first, expected_last)) > 40


def test_without_images_first_and_last_frames_are_dark_cards(tmp_path: Path) -> None:
    clip = tmp_path / "shot.mp4"
    encode_placeholder(clip, width=160, height=90, cards=[Card(1.0, "t", PROMPT)])

    for which in ("first", "last"):
        frame = extract_frame(clip, which)
        assert frame.size == (160, 90)
        assert max(ImageStat.Stat(frame).mean) < 60


def test_only_first_image_wins_a_one_frame_clip(tmp_path: Path) -> None:
    clip = tmp_path / "shot.mp4"
    red, blue = Image.new("RGB", (32, 18), (220, 30, 30)), Image.new("RGB", (32, 18), (30, 30, 220))

    encode_placeholder(
        clip, width=128, height=72, cards=[Card(0.04, "t", "p")], first_image=red, last_image=blue
    )

    assert count_frames(clip) == 1
    assert max(mean_error(extract_frame(clip, "last"), red.resize((128, 72)))) < 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 161, "height": 90}, "even"),
        ({"width": 160, "height": 0}, "even"),
        ({"width": 160, "height": 90, "cards": []}, "at least one card"),
        ({"width": 160, "height": 90, "cards": [Card(0.01, "t", "p")]}, "less than one frame"),
        ({"width": 160, "height": 90, "fps": 0}, "fps"),
    ],
)
def test_placeholder_rejects_bad_arguments(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"cards": [Card(1.0, "t", "p")], **kwargs}
    with pytest.raises(ValueError, match=message):
        encode_placeholder(tmp_path / "shot.mp4", **arguments)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("width", "height"), [(160, 90), (90, 160), (1920, 1080)])
def test_card_text_stays_inside_the_margins(width: int, height: int) -> None:
    card = Card(5.0, "a very long scene title · shot 1/3 " * 4, PROMPT * 40 + " x" * 500)

    image = clips._render_card(card, width, height)

    # Half the card's margin: glyph bearings and antialiasing may reach a pixel past it.
    margin = max(2, round(min(width, height) * 0.07)) // 2
    background = Image.new("RGB", image.size, clips._BACKGROUND)
    for box in [
        (0, 0, width, margin),  # top
        (0, height - margin, width, height),  # bottom
        (0, 0, margin, height),  # left
        (width - margin, 0, width, height),  # right
    ]:
        assert ImageChops.difference(image.crop(box), background.crop(box)).getbbox() is None
    assert ImageChops.difference(image, background).getbbox() is not None  # something drawn


def test_long_prompt_is_cut_with_an_ellipsis() -> None:
    image = Image.new("RGB", (160, 90))
    draw = ImageDraw.Draw(image)
    font = clips._font(12)

    lines = clips._wrap(draw, PROMPT * 10, font, 140, 3)

    assert len(lines) == 3
    assert lines[-1].endswith("…")
    assert all(draw.textlength(line, font=font) <= 140 for line in lines)


def test_probe_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nope.mp4")


# ── assemble ────────────────────────────────────────────────────────────────────────────


def make_clip(
    path: Path,
    *,
    size: tuple[int, int] = (160, 90),
    frames: int = 24,
    fps: int = 24,
    flash: int | None = None,
    sound: bool = True,
    layout: str = "stereo",
    preset: str = "ultrafast",
) -> None:
    """A dark clip whose frame `flash` is white, with (if `sound`) a 1 kHz beep starting
    exactly then and lasting 0.1 s over silence: picture and sound events to line up."""
    dark = Image.new("RGB", size, (30, 30, 30))
    white = Image.new("RGB", size, (250, 250, 250))
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": preset})
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, fps)
        audio = out.add_stream("aac", rate=48_000, layout=layout) if sound else None
        beep = None if flash is None else (round(flash * 48_000 / fps), 4800)
        written = 0
        for n in range(frames):
            frame = av.VideoFrame.from_image(white if n == flash else dark)
            frame.pts = n
            out.mux(video.encode(frame))
            while audio is not None and written + 1024 <= round((n + 1) * 48_000 / fps):
                out.mux(audio.encode(_beep_frame(written, beep, layout)))
                written += 1024
        out.mux(video.encode())
        if audio is not None:
            out.mux(audio.encode())


def _beep_frame(start: int, beep: tuple[int, int] | None, layout: str) -> av.AudioFrame:
    samples = array("f", bytes(4096))
    if beep is not None:
        for k in range(1024):
            if beep[0] <= start + k < beep[0] + beep[1]:
                samples[k] = 0.5 * math.sin(2 * math.pi * 1000 * (start + k) / 48_000)
    frame = av.AudioFrame(format="fltp", layout=layout, samples=1024)
    for plane in frame.planes:
        plane.update(samples.tobytes())
    frame.sample_rate, frame.pts, frame.time_base = 48_000, start, Fraction(1, 48_000)
    return frame


def flashes(path: Path) -> list[float]:
    """The times of the white frames."""
    found = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            image = frame.to_image().convert("L")
            if image.getpixel((image.width // 2, image.height // 2)) > 150:
                found.append(float(frame.time))
    return found


def beeps(path: Path) -> list[float]:
    """The times the beeps start (any channel louder than half its peak, after a pause)."""
    samples, rate, first = array("f"), 48_000, 0.0
    with av.open(str(path)) as container:
        for n, frame in enumerate(container.decode(audio=0)):
            if n == 0:
                first = float(frame.time or 0.0)
            rate = frame.sample_rate
            samples.frombytes(bytes(frame.planes[0])[: frame.samples * 4])
    onsets, last = [], -rate
    for i, value in enumerate(samples):
        if abs(value) > 0.25:
            if i - last > rate // 10:
                onsets.append(first + i / rate)
            last = i
    return onsets


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def x264_settings(path: Path) -> str:
    """The options x264 writes into its first packet (an SEI)."""
    first = video_packets(path)[0]
    start = first.find(b"x264 - core")
    return first[start : first.find(b"\0", start)].decode("ascii", "replace")


def assert_in_sync(film: Path, expected: list[float], silent: tuple[int, ...] = ()) -> None:
    """Each clip's flash is where its clip's start puts it, and its beep with it (± 1 frame);
    the clips numbered in `silent` have no beep."""
    seen, heard = flashes(film), beeps(film)
    assert seen == pytest.approx(expected, abs=1e-6)
    beeping = [t for n, t in enumerate(seen) if n not in silent]
    assert len(heard) == len(beeping), (heard, beeping)
    for picture, sound in zip(beeping, heard, strict=True):
        assert abs(sound - picture) <= FRAME, (picture, sound)


@pytest.fixture
def same_format(tmp_path: Path) -> list[Path]:
    """Four 160x90 24 fps clips (1 s, 1.5 s, 1.25 s, 0.75 s); the second has no sound."""
    clips = []
    for n, (frames, flash, sound) in enumerate([(24, 12, True), (36, 6, False), (30, 18, True)]):
        clip = tmp_path / f"clip{n}.mp4"
        make_clip(clip, frames=frames, flash=flash, sound=sound)
        clips.append(clip)
    clips.append(tmp_path / "clip3.mp4")
    make_clip(clips[-1], frames=18, flash=3)
    return clips


def test_clips_of_one_format_are_joined_by_copying_their_packets(
    tmp_path: Path, same_format: list[Path]
) -> None:
    film = tmp_path / "out" / "film.mp4"

    made = assemble(same_format, film)

    assert (made.video, made.audio, made.reason, made.lossless) == ("copied", "copied", "", True)
    assert made.info == probe(film)
    # The picture is the clips' own packets, byte for byte, in order.
    assert video_packets(film) == [p for clip in same_format for p in video_packets(clip)]
    assert count_frames(film) == 24 + 36 + 30 + 18
    assert made.info.duration == sum(probe(clip).duration for clip in same_format) == 4.5
    assert (made.info.width, made.info.height, made.info.fps, made.info.has_audio) == (
        160,
        90,
        24.0,
        True,
    )
    assert stream_seconds(film)["audio"] == pytest.approx(4.5, abs=FRAME)
    # Each clip's sound stays with its picture; the clip without sound is silent.
    assert_in_sync(film, [0.5, 1.0 + 0.25, 2.5 + 0.75, 3.75 + 0.125], silent=(1,))
    assert parts_left(film.parent) == [] and parts_left(tmp_path) == []


def test_clips_with_b_frames_are_copied_with_rising_timestamps(tmp_path: Path) -> None:
    # x264 "veryfast" reorders frames (B-frames): decoding runs ahead of display.
    clips = [tmp_path / f"{n}.mp4" for n in range(3)]
    for clip, frames in zip(clips, (24, 13, 30), strict=True):
        make_clip(clip, frames=frames, flash=frames // 2, preset="veryfast")
    film = tmp_path / "film.mp4"

    made = assemble(clips, film)

    assert (made.video, made.audio) == ("copied", "copied")
    assert "bframes=3" in x264_settings(clips[0])
    assert video_packets(film) == [p for clip in clips for p in video_packets(clip)]
    with av.open(str(film)) as container:
        dts = [p.dts for p in container.demux(video=0) if p.size]
    assert dts == sorted(set(dts))
    assert count_frames(film) == 67 and made.info.duration == pytest.approx(67 / 24)
    assert_in_sync(film, [0.5, 1 + 6 / 24, (24 + 13 + 15) / 24])


def test_silent_clips_of_one_format_give_a_film_without_sound(tmp_path: Path) -> None:
    clips = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for clip in clips:
        make_clip(clip, frames=12, sound=False)

    made = assemble(clips, tmp_path / "film.mp4")

    assert (made.video, made.audio) == ("copied", "none")
    assert made.info == ClipInfo(duration=1.0, width=160, height=90, fps=24.0, has_audio=False)
    assert video_packets(tmp_path / "film.mp4") == video_packets(clips[0]) * 2


def test_a_mixed_film_is_encoded_once_at_high_quality_and_says_why(tmp_path: Path) -> None:
    # 720p and 1080p, scaled down four times; sound on, off, on.
    clips = [tmp_path / "wide.mp4", tmp_path / "big.mp4", tmp_path / "end.mp4"]
    make_clip(clips[0], size=(320, 180), frames=24, flash=12)
    make_clip(clips[1], size=(480, 270), frames=24, flash=6, sound=False)
    make_clip(clips[2], size=(320, 180), frames=12, flash=6)
    film = tmp_path / "film.mp4"

    made = assemble(clips, film)

    assert (made.video, made.audio, made.lossless) == ("encoded", "encoded", False)
    assert made.reason == "big.mp4 is 480x270, the others 320x180"
    assert made.info == ClipInfo(duration=2.5, width=320, height=180, fps=24.0, has_audio=True)
    assert count_frames(film) == 60  # it plays to the end
    settings = x264_settings(film)
    assert f"crf={media.FILM_CRF}.0" in settings and media.FILM_CRF <= 18
    assert "bframes=" in settings and "subme=0" not in settings  # not "ultrafast"
    assert_in_sync(film, [0.5, 1.25, 2.25], silent=(1,))
    assert parts_left(tmp_path) == []


def test_sound_of_another_layout_is_encoded_and_the_picture_still_copied(
    tmp_path: Path,
) -> None:
    clips = [tmp_path / "a.mp4", tmp_path / "mono.mp4", tmp_path / "c.mp4"]
    make_clip(clips[0], frames=24, flash=12)
    make_clip(clips[1], frames=24, flash=6, layout="mono")
    make_clip(clips[2], frames=12, flash=6)
    film = tmp_path / "film.mp4"

    made = assemble(clips, film)

    assert (made.video, made.audio) == ("copied", "encoded")
    assert made.reason == "mono.mp4 has mono 48 kHz AAC sound, the others stereo 48 kHz AAC sound"
    assert video_packets(film) == [p for clip in clips for p in video_packets(clip)]
    assert_in_sync(film, [0.5, 1.25, 2.25])


def test_other_h264_settings_are_encoded_and_said(tmp_path: Path) -> None:
    clips = [tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "odd.mp4"]
    make_clip(clips[0], frames=12, sound=False)
    make_clip(clips[1], frames=12, sound=False)
    make_clip(clips[2], frames=12, sound=False, preset="veryfast")  # CABAC: another PPS

    made = assemble(clips, tmp_path / "film.mp4")

    assert made.video == "encoded"
    assert made.reason == "odd.mp4 has other H.264 settings (SPS/PPS) than the others"


@pytest.mark.parametrize(
    ("sizes", "rates", "reason"),
    [
        (
            [(160, 90), (160, 90), (90, 160), (90, 160), (90, 160)],
            [24] * 5,
            "a.mp4, b.mp4 are 160x90, the others 90x160",
        ),
        ([(160, 90), (128, 72)], [24, 24], "b.mp4 is 128x72, a.mp4 160x90"),
        ([(160, 90)] * 3, [24, 30, 24], "b.mp4 is 30 fps, the others 24 fps"),
    ],
)
def test_the_reason_names_the_odd_clips_out(
    tmp_path: Path, sizes: list[tuple[int, int]], rates: list[int], reason: str
) -> None:
    clips = []
    for name, size, fps in zip("abcde", sizes, rates, strict=False):
        clips.append(tmp_path / f"{name}.mp4")
        make_clip(clips[-1], size=size, fps=fps, frames=fps // 2, sound=False)

    made = assemble(clips, tmp_path / "film.mp4")

    assert (made.video, made.reason) == ("encoded", reason)


@pytest.fixture
def three_clips(tmp_path: Path) -> list[Path]:
    """A silent 1 s card, a 1.25 s card with sound, a 0.5 s 9:16 card ending on a solid image."""
    clips = [tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"]
    encode_placeholder(clips[0], width=160, height=90, cards=[Card(1.0, "a", PROMPT)])
    encode_placeholder(clips[1], width=160, height=90, cards=[Card(1.25, "b", PROMPT)], audio=True)
    encode_placeholder(
        clips[2],
        width=90,
        height=160,
        cards=[Card(0.5, "c", PROMPT)],
        last_image=Image.new("RGB", (90, 160), (230, 200, 40)),
    )
    return clips


def test_assemble_joins_clips_end_to_end(tmp_path: Path, three_clips: list[Path]) -> None:
    film = tmp_path / "out" / "film.mp4"

    info = assemble(three_clips, film).info

    assert info == probe(film)
    assert (info.width, info.height, info.fps, info.has_audio) == (160, 90, 24.0, True)
    assert info.duration == pytest.approx(2.75, abs=FRAME)
    assert count_frames(film) == 66
    assert stream_seconds(film)["audio"] == pytest.approx(2.75, abs=FRAME)
    assert parts_left(film.parent) == [] and parts_left(tmp_path) == []


@pytest.mark.parametrize("reencode", [False, True])
def test_assemble_keeps_each_clips_sound_with_its_picture(
    tmp_path: Path, three_clips: list[Path], reencode: bool
) -> None:
    film = tmp_path / "film.mp4"
    clips = three_clips[:2] + [three_clips[0]]  # all 160x90: copied unless asked
    made = assemble(clips, film, reencode=reencode)

    assert made.video == ("encoded" if reencode else "copied")
    assert loudness(film, 0.1, 0.9) < 0.001  # clip a: silence
    assert loudness(film, 1.1, 2.15) > 0.01  # clip b: its tone, from 1.0 s to 2.25 s
    assert loudness(film, 2.35, 3.2) < 0.001  # clip a again: silence


def test_assemble_letterboxes_a_portrait_clip(tmp_path: Path, three_clips: list[Path]) -> None:
    film = tmp_path / "film.mp4"
    made = assemble(three_clips, film)

    assert made.reason == "c.mp4 is 90x160, the others 160x90"
    last = extract_frame(film, "last")  # clip c's last frame: the solid image, pillarboxed

    assert last.size == (160, 90)
    left, right, middle = (0, 0, 50, 90), (110, 0, 160, 90), (60, 5, 100, 85)
    assert max(ImageStat.Stat(last.crop(left)).mean) < 20
    assert max(ImageStat.Stat(last.crop(right)).mean) < 20
    red, green, blue = ImageStat.Stat(last.crop(middle)).mean
    assert abs(red - 230) < 10 and abs(green - 200) < 10 and abs(blue - 40) < 10


def test_assemble_retimes_to_the_first_clips_frame_rate(tmp_path: Path) -> None:
    clips = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    encode_placeholder(clips[0], width=128, height=72, cards=[Card(1.0, "t", "p")], fps=24)
    encode_placeholder(clips[1], width=128, height=72, cards=[Card(1.0, "t", "p")], fps=30)

    made = assemble(clips, tmp_path / "film.mp4")

    assert made.reason == "b.mp4 is 30 fps, a.mp4 24 fps"
    assert (made.info.fps, count_frames(tmp_path / "film.mp4")) == (24.0, 48)
    assert made.info.duration == pytest.approx(2.0, abs=FRAME)


def test_assemble_missing_input_leaves_nothing_behind(
    tmp_path: Path, three_clips: list[Path]
) -> None:
    film = tmp_path / "film.mp4"
    film.write_bytes(b"previous film")

    with pytest.raises(FileNotFoundError):
        assemble([*three_clips, tmp_path / "missing.mp4"], film)

    assert film.read_bytes() == b"previous film"
    assert parts_left(tmp_path) == []


@pytest.mark.parametrize("where", ["copy", "encode"])
def test_assemble_failing_midway_removes_its_temp_file(
    tmp_path: Path, three_clips: list[Path], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    film = tmp_path / "film.mp4"
    seen: list[str] = []

    def explode(*args: object) -> object:
        seen.extend(parts_left(tmp_path))  # the temp file exists while writing
        raise RuntimeError("disk on fire")

    if where == "copy":
        clips = three_clips[:2]
        monkeypatch.setattr(media._SoundCopier, "add", explode)
    else:
        clips = three_clips
        monkeypatch.setattr(media._Fitter, "__call__", explode)

    with pytest.raises(RuntimeError, match="disk on fire"):
        assemble(clips, film)

    assert len(seen) == 1 and seen[0].startswith(".film.mp4.")
    assert parts_left(tmp_path) == []
    assert not film.exists()


def test_assemble_needs_clips(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one clip"):
        assemble([], tmp_path / "film.mp4")


def test_a_tie_of_sizes_goes_to_the_storyboards_aspect(tmp_path: Path) -> None:
    clips = [tmp_path / f"{name}.mp4" for name in "abcd"]
    for clip, (width, height) in zip(
        clips, [(160, 90), (90, 160), (160, 90), (90, 160)], strict=True
    ):
        encode_placeholder(clip, width=width, height=height, cards=[Card(0.5, "t", "p")])

    wide = assemble(clips, tmp_path / "wide.mp4")
    assert (wide.info.width, wide.info.height) == (160, 90)  # no aspect: the first's
    tall = assemble(clips, tmp_path / "tall.mp4", aspect=Fraction(9, 16))
    assert (tall.info.width, tall.info.height) == (90, 160)  # 2 and 2: the board's 9:16 wins
    square = assemble(clips, tmp_path / "square.mp4", aspect=Fraction(1, 1))
    assert (square.info.width, square.info.height) == (160, 90)  # equally near: the first's
