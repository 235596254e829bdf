"""compiler.media: placeholder clips, probing, frame grabs and assembly, on tiny real MP4s."""

from __future__ import annotations

import io
from array import array
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

    info = assemble(three_clips, film)

    assert info == probe(film)
    assert (info.width, info.height, info.fps, info.has_audio) == (160, 90, 24.0, True)
    assert info.duration == pytest.approx(2.75, abs=FRAME)
    assert count_frames(film) == 66
    assert stream_seconds(film)["audio"] == pytest.approx(2.75, abs=FRAME)
    assert parts_left(film.parent) == [] and parts_left(tmp_path) == []


def test_assemble_keeps_each_clips_sound_with_its_picture(
    tmp_path: Path, three_clips: list[Path]
) -> None:
    film = tmp_path / "film.mp4"
    assemble(three_clips, film)

    assert loudness(film, 0.1, 0.9) < 0.001  # clip a: silence
    assert loudness(film, 1.1, 2.15) > 0.01  # clip b: its tone, from 1.0 s to 2.25 s
    assert loudness(film, 2.35, 2.7) < 0.001  # clip c: silence again


def test_assemble_letterboxes_a_portrait_clip(tmp_path: Path, three_clips: list[Path]) -> None:
    film = tmp_path / "film.mp4"
    assemble(three_clips, film)

    last = extract_frame(film, "last")  # clip c's last frame: the solid image, pillarboxed

    assert last.size == (160, 90)
    left, right, middle = (0, 0, 50, 90), (110, 0, 160, 90), (60, 5, 100, 85)
    assert max(ImageStat.Stat(last.crop(left)).mean) < 20
    assert max(ImageStat.Stat(last.crop(right)).mean) < 20
    red, green, blue = ImageStat.Stat(last.crop(middle)).mean
    assert abs(red - 230) < 10 and abs(green - 200) < 10 and abs(blue - 40) < 10


def test_assemble_silent_clips_gives_no_audio(tmp_path: Path) -> None:
    clips = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for clip in clips:
        encode_placeholder(clip, width=128, height=72, cards=[Card(0.5, "t", "p")])

    info = assemble(clips, tmp_path / "film.mp4")

    assert info == ClipInfo(duration=1.0, width=128, height=72, fps=24.0, has_audio=False)


def test_assemble_retimes_to_the_first_clips_frame_rate(tmp_path: Path) -> None:
    clips = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    encode_placeholder(clips[0], width=128, height=72, cards=[Card(1.0, "t", "p")], fps=24)
    encode_placeholder(clips[1], width=128, height=72, cards=[Card(1.0, "t", "p")], fps=30)

    info = assemble(clips, tmp_path / "film.mp4")

    assert (info.fps, count_frames(tmp_path / "film.mp4")) == (24.0, 48)
    assert info.duration == pytest.approx(2.0, abs=FRAME)


def test_assemble_missing_input_leaves_nothing_behind(
    tmp_path: Path, three_clips: list[Path]
) -> None:
    film = tmp_path / "film.mp4"
    film.write_bytes(b"previous film")

    with pytest.raises(FileNotFoundError):
        assemble([*three_clips, tmp_path / "missing.mp4"], film)

    assert film.read_bytes() == b"previous film"
    assert parts_left(tmp_path) == []


def test_assemble_failing_midway_removes_its_temp_file(
    tmp_path: Path, three_clips: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    film = tmp_path / "film.mp4"
    seen: list[str] = []

    def explode(self: object, frame: object) -> object:
        seen.extend(parts_left(tmp_path))  # the temp file exists while writing
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(media._Fitter, "__call__", explode)

    with pytest.raises(RuntimeError, match="disk on fire"):
        assemble(three_clips, film)

    assert len(seen) == 1 and seen[0].startswith(".film.mp4.")
    assert parts_left(tmp_path) == []
    assert not film.exists()


def test_assemble_needs_clips(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one clip"):
        assemble([], tmp_path / "film.mp4")
