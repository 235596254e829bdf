"""Subtitle a film's dialogue and narration. Film clips → renders/NAME.srt (SubRip).

Kling speaks the lines a prompt quotes, in scenes with sound. Every line quoted in a
shot's prompt ("…" or “…”) becomes one caption, timed to that shot in the film: a
scene's shots share its clip in proportion to their requested durations, and the lines
of one shot share the shot in proportion to their length. A single-shot scene is one
shot. Narration comes timed already (film.py: from its scene's start, as long as its
audio). No line, no file.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .fsutil import atomic_write_text
from .timeline import FilmClip

__all__ = ["Caption", "captions", "dialogue", "srt", "write_captions"]

_QUOTED = re.compile(r"“([^”]*)”|\"([^\"]*)\"")
_TOKEN = re.compile(r"<<<(?:image|element|video)_[0-9]+>>>")
_LINE = 42  # characters per subtitle line, the usual broadcast limit


@dataclass(frozen=True, slots=True)
class Caption:
    start: Fraction  # seconds into the film
    end: Fraction
    text: str


def dialogue(prompt: str) -> list[str]:
    """The lines a prompt quotes, in order: `He says "Hold on."` → ["Hold on."]."""
    lines = []
    for match in _QUOTED.finditer(prompt):
        text = " ".join(_TOKEN.sub("", match[1] if match[1] is not None else match[2]).split())
        if text:
            lines.append(text)
    return lines


def captions(clips: Sequence[FilmClip]) -> list[Caption]:
    """Every quoted line of the scenes with sound, timed to its shot in the film."""
    found: list[Caption] = []
    start = Fraction(0)
    for clip in clips:
        request = clip.task.request
        if request.sound:
            shots = [(shot.prompt, shot.duration) for shot in request.shots] or [
                (request.prompt, 1)
            ]
            total = sum(seconds for _, seconds in shots)
            at = start
            for prompt, seconds in shots:
                length = clip.seconds * Fraction(seconds, total)
                found += _spread(dialogue(prompt), at, at + length)
                at += length
        start += clip.seconds
    return found


def srt(found: Sequence[Caption]) -> str:
    """SubRip text: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, lines of 42 characters."""
    cues = []
    for number, caption in enumerate(found, 1):
        text = "\n".join(textwrap.wrap(caption.text, _LINE)) or caption.text
        cues.append(f"{number}\n{_time(caption.start)} --> {_time(caption.end)}\n{text}\n")
    return "\n".join(cues)


def write_captions(
    clips: Sequence[FilmClip], dest: Path, narration: Sequence[Caption] = ()
) -> Path | None:
    """Write `dest` when the film has dialogue or `narration` and return it; else remove
    a stale one. Cues are in order of their start."""
    found = sorted([*captions(clips), *narration], key=lambda caption: caption.start)
    if not found:
        dest.unlink(missing_ok=True)
        return None
    text = srt(found)
    if not dest.is_file() or dest.read_text(encoding="utf-8") != text:
        atomic_write_text(dest, text)
    return dest


def _spread(lines: Sequence[str], start: Fraction, end: Fraction) -> list[Caption]:
    """Share [start, end) among `lines` in proportion to their length."""
    total = sum(len(line) for line in lines)
    placed, at = [], start
    for line in lines:
        length = (end - start) * Fraction(len(line), total)
        placed.append(Caption(at, at + length, line))
        at += length
    return placed


def _time(seconds: Fraction) -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"
