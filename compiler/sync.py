"""`storyboard push` and `pull`: move a storyboard's recorded files to and from the cache.

The lockfile says which files a storyboard has paid for (clips, generated images and
stills, narration and effects) and what their sha256 is; the cache keeps them by that
sha256 (cache.py). Push uploads what the cache lacks; pull fetches what the renders
folder lacks. Nothing is sent to Kling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cache import Cache
from .lockfile import Clip, Lockfile


@dataclass(slots=True)
class Moved:
    """What one push or pull did, in files and bytes."""

    moved: int = 0
    bytes: int = 0
    already: int = 0  # in the cache already (push) or on disk already (pull)
    missing: int = 0  # on neither side

    def summary(self, verb: str, where: str) -> str:
        size = f"{self.bytes / 1e6:.1f} MB"
        parts = [f"{verb} {self.moved} file(s), {size}", f"{self.already} already {where}"]
        if self.missing:
            parts.append(f"{self.missing} not found anywhere")
        return "; ".join(parts)


Step = Callable[[str], None]  # told the name of each file as it is handled


def recorded_files(lock: Lockfile) -> list[Clip]:
    """Every file the lockfile records as made, once each, as Clip records (their paths
    relative to renders/): each take's clip, then the generated images and stills, then
    the narration and effects (recorded relative to renders/NAME)."""
    seen: dict[str, Clip] = {}
    for entry in lock.scenes.values():
        for task in entry.takes.values():
            if task.clip is not None:
                seen.setdefault(task.clip.sha256, task.clip)
    name = lock.path.stem
    made = (
        *lock.images.values(),
        *lock.stills.values(),
        *lock.speech.values(),
        *lock.effects.values(),
    )
    for record in made:
        if record.file is not None and record.sha256 is not None and record.bytes is not None:
            clip = Clip(f"{name}/{record.file}", record.sha256, record.bytes, 0.0)
            seen.setdefault(record.sha256, clip)
    return list(seen.values())


def push(lock: Lockfile, renders: Path, cache: Cache, step: Step) -> Moved:
    done = Moved()
    for clip in recorded_files(lock):
        step(clip.file)
        path = clip.intact(renders)
        if path is None:
            done.missing += 1
        elif cache.put(clip.sha256, path):
            done.moved, done.bytes = done.moved + 1, done.bytes + clip.bytes
        else:
            done.already += 1
    return done


def pull(lock: Lockfile, renders: Path, cache: Cache, step: Step) -> Moved:
    done = Moved()
    wanted: dict[str, tuple[Clip, Path]] = {}
    for clip in recorded_files(lock):
        dest = clip.path(renders)
        if dest is None:
            done.missing += 1
        elif clip.intact(renders) is not None:
            done.already += 1
        else:
            wanted[clip.sha256] = (clip, dest)
    for sha, fetched in cache.get_many((sha, dest) for sha, (_, dest) in wanted.items()):
        clip = wanted[sha][0]
        step(clip.file)
        if fetched is not None:
            done.moved, done.bytes = done.moved + 1, done.bytes + clip.bytes
        else:
            done.missing += 1
    return done


def sync_board(way: str, storyboard: Path, renders: Path, cache: Cache, step: Step) -> Moved:
    """`push` or `pull` the clips the lockfile beside `storyboard` records."""
    lock = Lockfile.for_storyboard(storyboard)
    return (push if way == "push" else pull)(lock, renders, cache, step)
