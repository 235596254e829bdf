"""Join a storyboard's clips into its film. Lockfile + clips → renders/NAME.mp4, .otio, .srt.

The film is the selected take of every enabled scene, in order. Beside it go its timeline
(`NAME.otio`, for editors: compiler.timeline) and, when scenes with sound quote dialogue,
its captions (`NAME.srt`: compiler.captions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .errors import MediaChanged
from .fsutil import sha256_file
from .lockfile import Film, Lockfile
from .model import Soundtrack, Task
from .timeline import AudioClip, FilmClip, OtherTake

if TYPE_CHECKING:
    from .execute import ImageResult
    from .pipeline import CompileResult
    from .plan import Plan

__all__ = [
    "FilmResult",
    "assemble_animatic",
    "assemble_film",
    "export_timeline",
    "film_clips",
    "remove_stale_parts",
]


@dataclass(frozen=True, slots=True)
class FilmResult:
    """What assembling a film did, for `render` to say."""

    path: Path | None  # None: no film yet
    note: str  # "film assembled: 12.00 s", "film unchanged", "no film yet: …"
    detail: str = ""  # how it was joined: packets copied, or what was re-encoded and why
    timeline: Path | None = None
    captions: Path | None = None
    warnings: tuple[str, ...] = ()  # what the film has that the user may not expect


def remove_stale_parts(renders: Path, name: str) -> None:
    """Remove what a render killed while assembling left (`.NAME.mp4.*.part`)."""
    for stale in renders.glob(f".{name}.mp4.*.part"):
        stale.unlink(missing_ok=True)


def film_clips(
    lock: Lockfile, film: Sequence[tuple[str, int]], tasks: Sequence[Task], renders: Path
) -> tuple[list[FilmClip], str]:
    """The film's clips in order (probed), or why there is no film yet ("no film yet: …").

    Every clip must be on disk, with the sha256 the lockfile records.
    """
    from .media import probe

    takes = [lock.task(scene, take) for scene, take in film]
    paths = [task.clip.path(renders) if task and task.clip else None for task in takes]
    missing = [
        scene if take == 1 else f"{scene} take {take}"
        for (scene, take), path in zip(film, paths, strict=True)
        if path is None or not path.is_file()
    ]
    if missing:
        return [], f"no film yet: {len(missing)} scene(s) without a clip ({', '.join(missing)})"
    by_scene = {task.scene: task for task in tasks}
    clips = []
    for (scene, take), task, path in zip(film, takes, paths, strict=True):
        assert task is not None and task.clip is not None and path is not None
        if task.clip.intact(renders) is None:
            return [], f"no film yet: {task.clip.file} is not the clip the lockfile records"
        info = probe(path)
        rate = Fraction(info.fps).limit_denominator(1001)
        entry = lock.scenes[scene]
        others = tuple(
            OtherTake(
                number,
                other.status,
                other.clip.path(renders) if other.clip else None,
                other.clip.sha256 if other.clip else None,
            )
            for number, other in sorted(entry.takes.items())
            if number != take
        )
        clips.append(
            FilmClip(
                by_scene[scene],
                take,
                path,
                task.clip.sha256,
                round(info.duration * rate),
                rate,
                info.width,
                info.height,
                info.has_audio,
                others,
            )
        )
    return clips, ""


def assemble_film(
    lock: Lockfile,
    film: Sequence[tuple[str, int]],
    renders: Path,
    name: str,
    tasks: Sequence[Task],
    *,
    title: str | None = None,
    storyboard: str = "",
    soundtrack: Soundtrack | None = None,
    base_dir: Path | None = None,
    aspect_ratio: str | None = None,
) -> FilmResult:
    """Join the selected take of every enabled scene, in order, into renders/NAME.mp4, and
    write its timeline renders/NAME.otio and captions renders/NAME.srt.

    Nothing is assembled again when the clips are the same as last time; clips of the same
    format are joined without re-encoding (compiler.media.assemble).
    """
    from .captions import Caption, write_captions
    from .media import FILM_CRF, assemble
    from .timeline import export, timeline_path

    remove_stale_parts(renders, name)
    clips, why = film_clips(lock, film, tasks, renders)
    if not clips:
        return FilmResult(None, why)
    sounds, why = film_sounds(lock, clips, renders / name)
    if why:
        return FilmResult(None, why)
    if sounds and soundtrack is None:
        soundtrack = Soundtrack()  # narration and effects are mixed to the default loudness
    music = _music(soundtrack, base_dir)  # checked once, for the mix and the timeline
    shas = [clip.sha256 for clip in clips]
    film_path = renders / f"{name}.mp4"
    detail = ""
    mix_key = _mix_key(soundtrack, sounds)
    if (
        lock.film is not None
        and lock.film.clips == shas
        and lock.film.mix == mix_key
        and film_path.is_file()
        and sha256_file(film_path) == lock.film.sha256
    ):
        note = "film unchanged"
    else:
        made = assemble([clip.file for clip in clips], film_path, aspect=_aspect(aspect_ratio))
        note = f"film assembled: {made.info.duration:.2f} s"
        if made.video == "encoded":
            detail = f"re-encoded (x264 CRF {FILM_CRF}): {made.reason}"
        elif soundtrack is not None:
            detail = "picture copied"  # the mix below encodes the sound anew
        elif made.audio == "encoded":
            detail = f"picture copied, sound re-encoded (AAC): {made.reason}"
        else:
            detail = "packets copied: nothing re-encoded"
        if soundtrack is not None:
            detail += "; " + _mix_soundtrack(film_path, soundtrack, sounds, music)
        lock.film = Film(
            file=film_path.name,
            sha256=sha256_file(film_path),
            clips=shas,
            duration=round(made.info.duration, 3),
            mix=mix_key,
        )
        lock.save()
    timeline = export(
        clips,
        timeline_path(renders, name, "otio"),
        "otio",
        title=title or name,
        storyboard=storyboard,
        audio=_audio_clips(clips, sounds, soundtrack, music),
    )
    spoken = [
        Caption(s.start, s.start + s.seconds, s.text) for s in sounds if s.kind == "narration"
    ]
    captions = write_captions(clips, renders / f"{name}.srt", spoken)
    return FilmResult(film_path, note, detail, timeline, captions, _overruns(clips, sounds))


def _overruns(clips: Sequence[FilmClip], sounds: Sequence[FilmSound]) -> tuple[str, ...]:
    """A narration longer than its scene runs on under the next one (or past the film's
    end): said, since the storyboard gives no sign of it before the speech exists."""
    seconds = {clip.scene: clip.seconds for clip in clips}
    return tuple(
        f"the narration of {s.scene} lasts {float(s.seconds):.1f} s and its scene "
        f"{float(seconds[s.scene]):g} s: it runs on under what follows (shorten the line, "
        "raise the voice's speed, or lengthen the scene)"
        for s in sounds
        if s.kind == "narration" and s.seconds > seconds[s.scene] + Fraction(1, 10)
    )


@dataclass(frozen=True, slots=True)
class FilmSound:
    """A narration or an effect the film lays at its scene's first frame."""

    kind: Literal["narration", "sfx"]
    scene: str
    file: Path
    sha256: str
    start: Fraction  # seconds from the film's first frame
    seconds: Fraction  # how long it lasts (as recorded; else read from the file)
    text: str = ""  # what it says (narration) or what it is (an effect's prompt)


def film_sounds(
    lock: Lockfile, clips: Sequence[FilmClip], folder: Path
) -> tuple[list[FilmSound], str]:
    """Each scene's narration and effect, placed at the scene's start in the film, or why
    the film cannot have its sound yet ("no film yet: ..."). `folder` is renders/NAME.

    A scene's sound is the one its compiled request names (by digest), on disk with its
    recorded sha256: a film never goes out without narration that failed, nor with the
    line from before an edit.
    """
    from .media import audio_seconds
    from .soundwire import effect_digest, speech_digest

    sounds: list[FilmSound] = []
    missing: list[str] = []
    start = Fraction(0)
    for clip in clips:
        task = clip.task
        wanted = (
            ("narration", "speech", task.narration and speech_digest(task.narration)),
            ("sfx", "effect", task.sfx and effect_digest(task.sfx)),
        )
        texts = {
            "narration": task.narration.text if task.narration else "",
            "sfx": task.sfx.prompt if task.sfx else "",
        }
        for kind, record, digest in wanted:
            if not digest:
                continue
            made = lock.made_sound(record, clip.scene, digest, folder)
            if made is None:
                missing.append(f"{kind} of {clip.scene}")
                continue
            entry, path = made
            seconds = entry.duration if entry.duration else audio_seconds(path) or 0.0
            sounds.append(
                FilmSound(
                    "narration" if kind == "narration" else "sfx",
                    clip.scene,
                    path,
                    entry.sha256 or "",
                    start,
                    Fraction(seconds).limit_denominator(48000),
                    texts[kind],
                )
            )
        start += clip.seconds
    if missing:
        return [], f"no film yet: {len(missing)} sound(s) not made ({', '.join(missing)})"
    return sounds, ""


def _aspect(ratio: str | None) -> Fraction | None:
    """ "9:16" as 9/16: the shape a film keeps when its clips' shapes are tied."""
    if ratio is None or ratio.count(":") != 1:
        return None
    width, height = ratio.split(":")
    if not (width.isdigit() and height.isdigit()) or int(height) == 0:
        return None
    return Fraction(int(width), int(height))


def _mix_key(soundtrack: Soundtrack | None, sounds: Sequence[FilmSound] = ()) -> str | None:
    """What the film's sound was mixed with: a new key mixes the film again."""
    if soundtrack is None:
        return None
    music = soundtrack.music.sha256 if soundtrack.music is not None else ""
    text = f"{music}|{soundtrack.loudness!r}|{soundtrack.true_peak!r}"
    if soundtrack.music_gain:  # 0 dB keeps the key films mixed before the setting have
        text += f"|gain:{soundtrack.music_gain!r}"
    if sounds:  # a film with only music keeps the key it had before narration existed
        text += "|" + ";".join(f"{s.kind}:{s.sha256}:{s.start}" for s in sounds)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _mix_soundtrack(
    film: Path, soundtrack: Soundtrack, sounds: Sequence[FilmSound], music: Path | None
) -> str:
    """Lay narration, effects and the soundtrack's `music` under the film and bring it to
    its loudness, in place (compiler.mix)."""
    from .mix import Cue, mix_film

    mixed = mix_film(
        film,
        film,
        cues=[Cue(s.file, float(s.start), s.kind) for s in sounds],
        music=music,
        loudness=soundtrack.loudness,
        true_peak=soundtrack.true_peak,
        music_gain_db=soundtrack.music_gain,
    )
    parts = []
    narration = sum(s.kind == "narration" for s in sounds)
    effects = len(sounds) - narration
    if narration:
        parts.append(f"{narration} narration(s)")
    if effects:
        parts.append(f"{effects} effect(s)")
    if music is not None:
        parts.append("music under the film")
    laid = ", ".join(parts) + ", " if parts else ""
    return f"sound mixed ({laid}{mixed.loudness:.1f} LUFS, true peak {mixed.true_peak:.1f} dBTP)"


def _music(soundtrack: Soundtrack | None, base_dir: Path | None) -> Path | None:
    """The soundtrack's music file, checked to be the one compiled."""
    if soundtrack is None or soundtrack.music is None:
        return None
    assert base_dir is not None
    music = base_dir / soundtrack.music.file
    if sha256_file(music) != soundtrack.music.sha256:
        raise MediaChanged(f"{soundtrack.music.file} changed after it was compiled; run again")
    return music


def _audio_clips(
    clips: Sequence[FilmClip],
    sounds: Sequence[FilmSound],
    soundtrack: Soundtrack | None,
    music: Path | None,
) -> list[AudioClip]:
    """The film's own sounds as timeline clips: narration, effects, and the music cut into
    the loops the mix plays (an editor can then remix each)."""
    from .media import audio_seconds

    audio = [AudioClip(s.kind, s.scene, s.file, s.start, s.seconds, s.sha256) for s in sounds]
    length = Fraction(audio_seconds(music) or 0 if music else 0).limit_denominator(48000)
    if music is None or soundtrack is None or soundtrack.music is None or length <= 0:
        return audio
    total = sum((clip.seconds for clip in clips), Fraction(0))
    start = Fraction(0)
    while start < total:
        seconds = min(length, total - start)
        audio.append(AudioClip("music", "music", music, start, seconds, soundtrack.music.sha256))
        start += seconds
    return audio


def export_timeline(
    storyboard: Path,
    tasks: Sequence[Task],
    renders: Path,
    fmt: str,
    *,
    title: str,
    shown: str = "",
    soundtrack: Soundtrack | None = None,
) -> tuple[Path | None, str]:
    """Write the film's timeline in `fmt` (compiler.timeline.FORMATS) from the storyboard's
    lockfile and clips, its narration, effects and music on tracks of their own:
    (the file written, "") or (None, why there is no film yet)."""
    from .timeline import export, timeline_path

    film = [(task.scene, task.selected) for task in tasks if task.enabled]
    lock = Lockfile.for_storyboard(storyboard)
    clips, why = film_clips(lock, film, tasks, renders)
    if not clips:
        return None, why
    sounds, why = film_sounds(lock, clips, renders / storyboard.stem)
    if why:
        return None, why
    music = _music(soundtrack, storyboard.resolve().parent)
    audio = _audio_clips(clips, sounds, soundtrack, music)
    dest = timeline_path(renders, storyboard.stem, fmt)
    return export(clips, dest, fmt, title=title, storyboard=shown, audio=audio), ""


ANIMATIC_LONG_SIDE = 1280
_ASPECTS = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1)}


def assemble_animatic(
    result: CompileResult, planned: Plan, stills: Sequence[ImageResult], renders: Path
) -> tuple[Path | None, str]:
    """Hold each shot's still for the shot's duration: renders/NAME.animatic.mp4.

    Every enabled scene is in it, in film order; a shot whose still is missing (not made,
    or a scene that has none, like a video edit) is a card saying why.
    """
    from .media import Held, animatic

    name = result.file.stem
    folder = renders / name
    made = {r.key: r.path for r in stills if r.path is not None}
    held: list[Held] = []
    for task in result.tasks:
        if not task.enabled:
            continue
        request = task.request
        seconds = [float(s.duration) for s in request.shots] or [float(task.seconds)]
        count = max(1, len(task.stills))
        for n in range(1, count + 1):
            key = f"{task.scene}-{n}"
            still = made.get(key)
            if still is None and (record := planned.lock.stills.get(key)) is not None:
                kept = record.path(folder)
                still = kept if kept is not None and kept.is_file() else None
            note = task.stills_note or "no still yet"
            shot = seconds[n - 1] if n <= len(seconds) else seconds[-1]
            label = task.scene if count == 1 else f"{task.scene} · shot {n}"
            held.append(Held(still, shot, label, note))
    if not held:
        return None, "no animatic: no enabled scene"
    aspect = result.tasks[0].request.aspect_ratio or (
        result.board.settings.aspect_ratio if result.board else "16:9"
    )
    wide, high = _ASPECTS.get(aspect, (16, 9))
    scale = ANIMATIC_LONG_SIDE / max(wide, high)
    dest = renders / f"{name}.animatic.mp4"
    remove_stale_parts(renders, f"{name}.animatic")
    info = animatic(held, dest, (round(wide * scale), round(high * scale)))
    missing = sum(h.still is None for h in held)
    extra = f" ({missing} shot(s) without a still)" if missing else ""
    return dest, f"animatic: {info.duration:.2f} s, {len(held)} shot(s){extra}"
