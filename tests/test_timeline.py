"""Timelines for editors: renders/NAME.otio from render, and `storyboard export` to every
format, each read back with OpenTimelineIO's adapters and checked for what its editor needs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import opentimelineio as otio
import pytest

from compiler.cli import main
from compiler.timeline import _fcpx_format_name, _reels
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
    from fractions import Fraction

    assert _fcpx_format_name(*size, Fraction(rate)) == name
