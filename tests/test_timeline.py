"""Timelines for editors: renders/NAME.otio from render, and `storyboard export` to every
format, each read back with OpenTimelineIO's adapters and checked for what its editor needs."""

from __future__ import annotations

import hashlib
import wave
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path
from typing import Any

import opentimelineio as otio
import pytest

from compiler.cli import main
from compiler.pipeline import compile_file
from compiler.timeline import AudioClip, FilmClip, _fcpx_format_name, _reels, build, export
from tests.rendering import BOARD, FakeTime, lock_of, make_emulator, render

# The test film, its last scene in two takes (the second is kept as metadata).
FILM = BOARD.replace("    sound: on\n", "    sound: on\n    takes: 2\n")
SCENES = ["opening", "climb", "coda"]
FRAMES = [72, 96, 72]  # 3 s, 4 s and 3 s at 24 fps
OFFSETS = [0, 72, 168]


@pytest.fixture
def rendered(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test film rendered on the emulator (160x90 clips), the project as working dir."""
    (project / "film.yaml").write_text(FILM, encoding="utf-8")
    outcome = render(project, make_emulator(FakeTime()))
    assert outcome.film is not None, outcome.film_note
    monkeypatch.chdir(project)
    return project


def read_back(path: Path) -> Any:
    """The timeline in `path`, read with the official adapter for its suffix."""
    options = {"rate": 24} if path.suffix == ".edl" else {}
    timeline = otio.adapters.read_from_file(str(path), **options)
    if isinstance(timeline, otio.schema.SerializableCollection):
        (timeline,) = timeline
    return timeline


def video_clips(timeline: Any) -> list[Any]:
    (track,) = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video]
    return list(track.find_clips())


def clip_files(project: Path) -> list[Path]:
    return [project / "renders" / "film" / f"{scene}.mp4" for scene in SCENES]


# -- render writes renders/NAME.otio ----------------------------------------------------------


def test_render_writes_a_timeline_of_the_scenes_beside_the_film(project: Path) -> None:
    (project / "film.yaml").write_text(FILM, encoding="utf-8")
    outcome = render(project, make_emulator(FakeTime()))

    assert outcome.timeline == project / "renders" / "film.otio"
    timeline = read_back(outcome.timeline)
    assert timeline.name == "Test Film"
    clips = video_clips(timeline)
    assert [clip.name for clip in clips] == SCENES
    assert [clip.source_range.duration.to_frames() for clip in clips] == FRAMES
    assert {clip.source_range.duration.rate for clip in clips} == {24.0}
    assert [timeline.tracks[0].range_of_child_at_index(n).start_time.value for n in range(3)] == (
        OFFSETS
    )
    # Media by a path relative to the timeline file: the folder moves as a whole.
    urls = [clip.media_reference.target_url for clip in clips]
    assert urls == [f"film/{scene}.mp4" for scene in SCENES]
    assert all((outcome.timeline.parent / url).is_file() for url in urls)
    assert [c.media_reference.available_range.duration.to_frames() for c in clips] == FRAMES


def test_the_timeline_keeps_prompts_costs_and_takes_as_metadata(rendered: Path) -> None:
    timeline = read_back(rendered / "renders" / "film.otio")
    opening, climb, coda = (clip.metadata["storyboard"] for clip in video_clips(timeline))
    lock = lock_of(rendered)

    assert opening["scene"] == "opening" and opening["take"] == 1
    assert opening["prompt"] == "Dolly in over <<<image_1>>> at dusk."
    assert opening["estimate"] == {"seconds": 3.0, "units": 1.8, "usd": 0.252}
    assert (opening["model"], opening["mode"], opening["sound"]) == ("kling-v3-omni", "std", False)
    first = lock.scenes["opening"].takes[1].clip
    assert first is not None and opening["sha256"] == first.sha256
    assert [dict(shot) for shot in climb["shots"]] == [
        {"prompt": "The keeper climbs the stairs.", "seconds": 2},
        {"prompt": "He lights the lamp.", "seconds": 2},
    ]
    assert "prompt" not in climb
    # The take the film does not show is kept, with its clip.
    take2 = lock.scenes["coda"].takes[2].clip
    assert take2 is not None
    assert coda["sound"] is True and [dict(t) for t in coda["other_takes"]] == [
        {"take": 2, "status": "succeed", "file": "film/coda.take2.mp4", "sha256": take2.sha256}
    ]
    assert list(timeline.metadata["storyboard"]["scenes"]) == SCENES
    # Sound: A1 holds the clips with a sound track, gaps under the silent ones.
    (audio,) = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio]
    assert [type(item).__name__ for item in audio] == ["Gap", "Gap", "Clip"]
    assert audio[2].name == "coda" and audio[2].media_reference.target_url == "film/coda.mp4"


# -- storyboard export --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "suffix", "url"),
    [
        ("otio", ".otio", lambda path: f"film/{path.name}"),
        ("fcpxml", ".fcpxml", lambda path: path.resolve().as_uri()),
        ("fcp7", ".xml", lambda path: "file://localhost" + path.resolve().as_posix()),
        ("edl", ".edl", lambda path: f"film/{path.name}"),
    ],
)
def test_every_export_reads_back_with_its_clips_names_lengths_and_media(
    rendered: Path, capsys: pytest.CaptureFixture[str], fmt: str, suffix: str, url: Any
) -> None:
    assert main(["export", "film.yaml", "--to", fmt]) == 0

    written = rendered / "renders" / f"film{suffix}"
    assert capsys.readouterr().out.startswith(f"film.yaml: timeline renders/film{suffix} (")
    clips = video_clips(read_back(written))
    assert [clip.name for clip in clips] == SCENES
    assert [clip.source_range.duration.to_frames() for clip in clips] == FRAMES
    assert [clip.source_range.duration.rate for clip in clips] == [24.0] * 3
    assert [clip.media_reference.target_url for clip in clips] == [
        url(path) for path in clip_files(rendered)
    ]
    # Writing it again changes nothing (not even the file's time).
    before = written.stat().st_mtime_ns
    assert main(["export", "film.yaml", "--to", fmt]) == 0
    assert written.stat().st_mtime_ns == before


def test_fcp7_xml_has_the_format_resolve_and_premiere_need(rendered: Path) -> None:
    assert main(["export", "film.yaml", "--to", "fcp7"]) == 0
    text = (rendered / "renders" / "film.xml").read_text(encoding="utf-8")
    root = ET.fromstring(text)

    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE xmeml>\n')
    sequence = root.find("./project/children/sequence")
    assert sequence is not None and sequence.findtext("name") == "Test Film"
    # Resolve ignores a sequence whose video has no <format> (OpenTimelineIO issue 839).
    picture = sequence.find("./media/video/format/samplecharacteristics")
    assert picture is not None
    assert (picture.findtext("width"), picture.findtext("height")) == ("160", "90")
    assert (picture.findtext("rate/timebase"), picture.findtext("rate/ntsc")) == ("24", "FALSE")
    assert sequence.findtext("./media/audio/format/samplecharacteristics/samplerate") == "48000"
    files = [f for f in root.iter("file") if f.find("pathurl") is not None]
    assert [f.findtext("name") for f in files] == [f"{scene}.mp4" for scene in SCENES]
    for file in files:
        assert file.findtext("media/video/samplecharacteristics/width") == "160"
        has_sound = file.find("media/audio") is not None
        assert has_sound == (file.findtext("name") == "coda.mp4")
    video_items = sequence.findall("./media/video/track/clipitem")
    assert [item.findtext("name") for item in video_items] == SCENES
    assert [(item.findtext("start"), item.findtext("end")) for item in video_items] == [
        ("0", "72"),
        ("72", "168"),
        ("168", "240"),
    ]
    (sound,) = sequence.findall("./media/audio/track/clipitem")
    assert sound.findtext("sourcetrack/mediatype") == "audio"


def test_fcpxml_has_the_resources_final_cut_needs(rendered: Path) -> None:
    assert main(["export", "film.yaml", "--to", "fcpxml"]) == 0
    text = (rendered / "renders" / "film.fcpxml").read_text(encoding="utf-8")
    root = ET.fromstring(text)

    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n')
    assert root.get("version") == "1.8"
    (fmt,) = root.findall("./resources/format")
    assert fmt.attrib == {"id": "r1", "frameDuration": "100/2400s", "width": "160", "height": "90"}
    assets = root.findall("./resources/asset")
    assert [a.get("src") for a in assets] == [p.resolve().as_uri() for p in clip_files(rendered)]
    assert [a.get("hasAudio") for a in assets] == ["0", "0", "1"]
    assert {a.get("hasVideo") for a in assets} == {"1"} and {a.get("format") for a in assets} == {
        "r1"
    }
    assert [a.get("duration") for a in assets] == ["3s", "4s", "3s"]
    sequence = root.find("./project/sequence")
    assert sequence is not None and sequence.get("format") == "r1"
    assert sequence.get("duration") == "10s" and sequence.get("tcFormat") == "NDF"
    # Asset clips, so each brings its file's picture and sound to the storyline.
    spine = root.findall("./project/sequence/spine/*")
    assert {item.tag for item in spine} == {"asset-clip"}
    assert [(c.get("name"), c.get("ref"), c.get("offset"), c.get("duration")) for c in spine] == [
        ("opening", "r2", "0s", "3s"),
        ("climb", "r3", "3s", "4s"),
        ("coda", "r4", "7s", "3s"),
    ]


def test_the_edl_is_one_video_track_with_24_fps_timecode(rendered: Path) -> None:
    assert main(["export", "film.yaml", "--to", "edl"]) == 0
    text = (rendered / "renders" / "film.edl").read_text(encoding="utf-8")

    lines = text.splitlines()
    assert lines[:3] == ["TITLE: Test Film", "FCM: NON-DROP FRAME", ""]
    events = [line.split() for line in lines if line[:3].isdigit()]
    assert events == [
        ["001", "opening", "V", "C", "00:00:00:00", "00:00:03:00", "00:00:00:00", "00:00:03:00"],
        ["002", "climb", "V", "C", "00:00:00:00", "00:00:04:00", "00:00:03:00", "00:00:07:00"],
        ["003", "coda", "V", "C", "00:00:00:00", "00:00:03:00", "00:00:07:00", "00:00:10:00"],
    ]
    assert "* FROM CLIP NAME:  climb" in lines and "* FROM CLIP: film/climb.mp4" in lines
    timeline = read_back(rendered / "renders" / "film.edl")
    assert [track.kind for track in timeline.tracks] == [otio.schema.TrackKind.Video]


def test_export_before_any_clip_exists_says_so_and_exits_1(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project)

    assert main(["export", "film.yaml", "--to", "fcpxml"]) == 1

    err = capsys.readouterr().err
    assert err == (
        "film.yaml: no film yet: 3 scene(s) without a clip (opening, climb, coda): "
        "run storyboard render first\n"
    )
    assert not (project / "renders").exists()


def test_reel_names_are_unique_and_at_most_8_letters() -> None:
    assert _reels(["opening", "door-closes", "shot-001-a", "shot-001-b", "shot001a", "--"]) == [
        "opening",
        "doorclos",
        "shot001a",
        "shot001b",
        "shot0012",
        "SCENE",
    ]


@pytest.mark.parametrize(
    ("size", "rate", "name"),
    [
        ((1920, 1080), 24, "FFVideoFormat1080p24"),
        ((1280, 720), 24, "FFVideoFormat720p24"),
        ((1080, 1920), 24, None),  # vertical: given by width and height only
        ((1920, 1080), 23, None),
    ],
)
def test_final_cut_format_names(size: tuple[int, int], rate: int, name: str | None) -> None:
    assert _fcpx_format_name(*size, Fraction(rate)) == name


# -- the film's own sound: narration, effects and music on tracks of their own ----------------

SECONDS = [3, 4, 3]  # the test film's scenes
LOOP = Fraction(401, 100)  # the music, looped under the 10 s film: 4.01 + 4.01 + 1.98 s


def film_at(project: Path, rate: int) -> list[FilmClip]:
    """The test film's clips at `rate` fps, as the film hands them over (their files are not
    read: a timeline only names them)."""
    result = compile_file(project / "film.yaml", "film.yaml")
    assert result.ok
    return [
        FilmClip(
            task,
            1,
            project / "renders" / "film" / f"{task.scene}.mp4",
            str(n) * 64,
            seconds * rate,
            Fraction(rate),
            160,
            90,
            sound=task.scene == "coda",
        )
        for n, (task, seconds) in enumerate(zip(result.tasks, SECONDS, strict=True))
    ]


def sound_file(path: Path, seconds: Fraction) -> tuple[Path, str]:
    """A tiny WAV of silence (8 kHz mono) and its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * int(8000 * seconds))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def film_sound(project: Path) -> list[AudioClip]:
    """Narration at the first two scenes, an effect at the second, the music in 3 loops."""
    folder = project / "renders" / "film" / "sound"

    def sound(kind: Any, name: str, file: str, start: Fraction, seconds: Fraction) -> AudioClip:
        path = folder / file
        sha = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        if sha is None:
            path, sha = sound_file(path, seconds)
        return AudioClip(kind, name, path, start, seconds, sha)

    zero = Fraction(0)
    return [
        sound("narration", "opening", "opening.narration.wav", zero, Fraction(5, 2)),
        sound("narration", "climb", "climb.narration.wav", Fraction(3), Fraction(199, 100)),
        sound("sfx", "climb", "climb.sfx.wav", Fraction(3), Fraction(202, 100)),
        sound("music", "music", "score.wav", zero, LOOP),
        sound("music", "music", "score.wav", LOOP, LOOP),
        sound("music", "music", "score.wav", 2 * LOOP, 10 - 2 * LOOP),  # cut at the film's end
    ]


def placed(track: Any) -> list[tuple[str, str, int, int]]:
    """A track's items: (kind of item, name, first frame, frames)."""
    return [
        (
            type(item).__name__,
            item.name,
            round(track.range_of_child_at_index(n).start_time.value),
            round(item.source_range.duration.value),
        )
        for n, item in enumerate(track)
    ]


# Each sound's first frame is its start rounded to the nearest frame, its last the one
# before its end rounded so: the loops stay back to back whatever the rate.
EXPECTED = {
    24: {
        "Narration": [("Clip", "opening", 0, 60), ("Gap", "", 60, 12), ("Clip", "climb", 72, 48)],
        "Effects": [("Gap", "", 0, 72), ("Clip", "climb", 72, 48)],  # 120.48 -> 120
        "Music": [("Clip", "music", 0, 96), ("Clip", "music", 96, 96), ("Clip", "music", 192, 48)],
    },
    30: {
        "Narration": [("Clip", "opening", 0, 75), ("Gap", "", 75, 15), ("Clip", "climb", 90, 60)],
        "Effects": [("Gap", "", 0, 90), ("Clip", "climb", 90, 61)],  # 150.6 -> 151
        # 120.3 -> 120, 240.6 -> 241: one loop a frame longer, none apart or overlapping
        "Music": [
            ("Clip", "music", 0, 120),
            ("Clip", "music", 120, 121),
            ("Clip", "music", 241, 59),
        ],
    },
}


@pytest.mark.parametrize("rate", [24, 30])
def test_narration_effects_and_music_are_tracks_of_their_own_at_whole_frames(
    project: Path, rate: int
) -> None:
    clips, sound = film_at(project, rate), film_sound(project)
    dest = project / "renders" / "film.otio"

    export(clips, dest, "otio", title="Test Film", audio=sound)

    timeline = read_back(dest)
    assert [track.name for track in timeline.tracks] == [
        "V1",
        "A1",
        "Narration",
        "Effects",
        "Music",
    ]
    tracks = {track.name: track for track in timeline.tracks}
    assert {name: placed(tracks[name]) for name in EXPECTED[rate]} == EXPECTED[rate]
    assert {track.kind for track in timeline.tracks[1:]} == {otio.schema.TrackKind.Audio}
    assert {item.source_range.duration.rate for track in timeline.tracks[2:] for item in track} == {
        float(rate)
    }
    # The picture and the clips' own sound are as without it.
    assert placed(tracks["V1"]) == [
        ("Clip", "opening", 0, 3 * rate),
        ("Clip", "climb", 3 * rate, 4 * rate),
        ("Clip", "coda", 7 * rate, 3 * rate),
    ]
    assert [type(item).__name__ for item in tracks["A1"]] == ["Gap", "Gap", "Clip"]
    # Media by a path relative to the timeline, each clip playing from its file's start.
    narration = [item for item in tracks["Narration"] if isinstance(item, otio.schema.Clip)]
    (effect,) = tracks["Effects"].find_clips()
    music = list(tracks["Music"].find_clips())
    assert [item.media_reference.target_url for item in narration] == [
        "film/sound/opening.narration.wav",
        "film/sound/climb.narration.wav",
    ]
    assert effect.media_reference.target_url == "film/sound/climb.sfx.wav"
    assert {item.media_reference.target_url for item in music} == {"film/sound/score.wav"}
    assert {item.source_range.start_time.value for item in [*narration, effect, *music]} == {0}
    by_name = {(s.kind, s.name, s.start): s for s in sound}
    assert dict(narration[1].metadata["storyboard"]) == {
        "kind": "narration",
        "scene": "climb",
        "file": "film/sound/climb.narration.wav",
        "sha256": by_name[("narration", "climb", 3)].sha256,
    }
    assert dict(effect.metadata["storyboard"])["kind"] == "sfx"
    assert [dict(item.metadata["storyboard"]) for item in music] == [
        {
            "kind": "music",
            "name": "music",
            "loop": n,
            "file": "film/sound/score.wav",
            "sha256": sound[3].sha256,
        }
        for n in (1, 2, 3)
    ]


def test_only_the_kinds_of_sound_present_get_a_track(project: Path) -> None:
    clips = film_at(project, 24)
    music = [sound for sound in film_sound(project) if sound.kind == "music"]

    timeline = build(clips, project / "renders", title="Test Film", audio=music)

    assert [track.name for track in timeline.tracks] == ["V1", "A1", "Music"]


def test_sounds_of_one_kind_never_overlap_and_round_half_a_frame_up(project: Path) -> None:
    clips = film_at(project, 24)
    file, sha = sound_file(project / "renders" / "sound.wav", Fraction(1))

    def sound(name: str, start: Fraction, seconds: Fraction) -> AudioClip:
        return AudioClip("narration", name, file, start, seconds, sha)

    timeline = build(
        clips,
        project / "renders",
        title="Test Film",
        audio=[
            sound("climb", Fraction(3), Fraction(1)),  # given out of order
            sound("opening", Fraction(1, 48), Fraction(4)),  # half a frame in: frame 1
            sound("coda", Fraction(7), Fraction(1)),  # on the frame of the next: left out
            sound("coda", Fraction(7), Fraction(2)),
        ],
    )

    (narration,) = [track for track in timeline.tracks if track.name == "Narration"]
    assert placed(narration) == [
        ("Gap", "", 0, 1),
        ("Clip", "opening", 1, 71),  # cut at the next one's start
        ("Clip", "climb", 72, 24),
        ("Gap", "", 96, 72),
        ("Clip", "coda", 168, 48),
    ]


@pytest.mark.parametrize("start", [Fraction(-1, 10), Fraction(10)])
def test_a_sound_outside_the_film_is_an_error(project: Path, start: Fraction) -> None:
    clips = film_at(project, 24)
    file, sha = sound_file(project / "renders" / "sound.wav", Fraction(1))

    with pytest.raises(ValueError, match=r"sfx coda: starts at .* outside the film"):
        build(
            clips,
            project / "renders",
            title="Test Film",
            audio=[AudioClip("sfx", "coda", file, start, Fraction(1), sha)],
        )


def sound_urls(sound: list[AudioClip], url: Any) -> list[str]:
    return list(dict.fromkeys(url(s.file) for s in sound))


def test_fcp7_xml_has_the_sound_as_audio_tracks_of_the_sequence(project: Path) -> None:
    clips, sound = film_at(project, 24), film_sound(project)
    dest = export(clips, project / "renders" / "film.xml", "fcp7", title="Test Film", audio=sound)
    root = ET.fromstring(dest.read_text(encoding="utf-8"))

    sequence = root.find("./project/children/sequence")
    assert sequence is not None
    a1, narration, effects, music = sequence.findall("./media/audio/track")

    def items(track: ET.Element) -> list[tuple[str | None, ...]]:
        tags = ("name", "start", "end", "in", "out")
        return [tuple(item.findtext(tag) for tag in tags) for item in track.findall("clipitem")]

    assert items(narration) == [
        ("opening", "0", "60", "0", "60"),
        ("climb", "72", "120", "0", "48"),
    ]
    assert items(effects) == [("climb", "72", "120", "0", "48")]
    assert items(music) == [
        ("music", "0", "96", "0", "96"),
        ("music", "96", "192", "0", "96"),
        ("music", "192", "240", "0", "48"),
    ]
    assert [item.findtext("name") for item in a1.findall("clipitem")] == ["coda"]
    # Each sound file once in full (then by its id), absolute, with sound and no picture.
    files = [f for f in root.iter("file") if f.find("pathurl") is not None]
    localhost = lambda path: "file://localhost" + path.resolve().as_posix()  # noqa: E731
    assert [f.findtext("pathurl") for f in files[3:]] == sound_urls(sound, localhost)
    for file in files[3:]:
        assert [child.tag for child in file.findall("media/*")] == ["audio"]
    for track in (narration, effects, music):
        for item in track.findall("clipitem"):
            assert item.findtext("sourcetrack/mediatype") == "audio"
    assert [
        (item.find("file").get("id"), item.findtext("file/pathurl"))  # type: ignore[union-attr]
        for item in music.findall("clipitem")
    ] == [("file-7", localhost(sound[3].file)), ("file-7", None), ("file-7", None)]
    # And they read back as audio tracks at their frames.
    timeline = read_back(dest)
    audio = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio]
    assert [placed(track) for track in audio[1:]] == list(EXPECTED[24].values())


def test_fcpxml_connects_the_sound_below_the_storyline_with_roles(project: Path) -> None:
    clips, sound = film_at(project, 24), film_sound(project)
    dest = export(clips, project / "renders" / "film.fcpxml", "fcpxml", title="T", audio=sound)
    root = ET.fromstring(dest.read_text(encoding="utf-8"))

    assets = {a.get("id"): a for a in root.findall("./resources/asset")}
    sounds = [a for a in assets.values() if a.get("hasVideo") == "0"]
    file_url = lambda path: path.resolve().as_uri()  # noqa: E731
    assert [a.get("src") for a in sounds] == sound_urls(sound, file_url)
    assert [(a.get("name"), a.get("duration"), a.get("hasAudio")) for a in sounds] == [
        ("opening narration", "5/2s", "1"),
        ("climb narration", "2s", "1"),  # 1.99 s: whole frames at 24 fps
        ("climb effect", "49/24s", "1"),  # 2.02 s
        ("music", "97/24s", "1"),  # 4.01 s
    ]
    # Connected to the storyline clip each starts in, at its offset in that clip, in a lane
    # of its own kind, with Final Cut's role for it.
    connected = [
        (
            parent.get("name"),
            clip.get("lane"),
            clip.get("name"),
            assets[clip.get("ref")].get("src"),
            clip.get("offset"),
            clip.get("duration"),
            clip.get("audioRole"),
        )
        for parent in root.findall("./project/sequence/spine/asset-clip")
        for clip in parent.findall("asset-clip")
    ]
    opening, climb, effect, music = (file_url(s.file) for s in sound[:4])
    assert connected == [
        ("opening", "-1", "opening", opening, "0s", "5/2s", "dialogue"),
        ("opening", "-3", "music", music, "0s", "4s", "music"),
        ("climb", "-1", "climb", climb, "0s", "2s", "dialogue"),
        ("climb", "-2", "climb", effect, "0s", "2s", "effects"),
        ("climb", "-3", "music", music, "1s", "4s", "music"),
        ("coda", "-3", "music", music, "1s", "2s", "music"),
    ]
    # Read back, each lane holds its sounds at their frames.
    timeline = read_back(dest)  # kept: the tracks go with it
    lanes = {track.name: track for track in timeline.tracks}
    assert [placed(lanes[lane]) for lane in ("-1", "-2", "-3")] == list(EXPECTED[24].values())


def test_the_edl_stays_picture_only_with_sound(project: Path) -> None:
    clips, sound = film_at(project, 24), film_sound(project)
    dest = project / "renders" / "film.edl"

    without = export(clips, dest, "edl", title="Test Film").read_text(encoding="utf-8")
    assert export(clips, dest, "edl", title="Test Film", audio=sound).read_text() == without
    assert ".wav" not in without


@pytest.mark.parametrize("fmt", ["otio", "fcpxml", "fcp7", "edl"])
def test_a_film_without_its_own_sound_has_the_timeline_it_had(project: Path, fmt: str) -> None:
    clips = film_at(project, 24)
    dest = project / "renders" / "film.timeline"

    before = export(clips, dest, fmt, title="Test Film").read_text(encoding="utf-8")
    after = export(clips, dest, fmt, title="Test Film", audio=()).read_text(encoding="utf-8")

    assert after == before
    assert "Narration" not in before and "audioRole" not in before and "lane=" not in before
