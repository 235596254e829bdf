"""Join a storyboard's clips into its film. Lockfile + clips → renders/NAME.mp4."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .fsutil import sha256_file
from .lockfile import Film, Lockfile


def remove_stale_parts(renders: Path, name: str) -> None:
    """Remove what a render killed while assembling left (`.NAME.mp4.*.part`)."""
    for stale in renders.glob(f".{name}.mp4.*.part"):
        stale.unlink(missing_ok=True)


def assemble_film(
    lock: Lockfile, film: Sequence[tuple[str, int]], renders: Path, name: str
) -> tuple[Path | None, str]:
    """Join the selected take of every enabled scene, in order, into renders/NAME.mp4.

    Nothing is assembled again when the clips are the same as last time; clips of the same
    format are joined without re-encoding (compiler.media.assemble).
    """
    from .media import assemble

    remove_stale_parts(renders, name)
    clips = [lock.task(scene, take) for scene, take in film]
    paths = [task.clip.path(renders) if task and task.clip else None for task in clips]
    missing = [
        scene if take == 1 else f"{scene} take {take}"
        for (scene, take), path in zip(film, paths, strict=True)
        if path is None or not path.is_file()
    ]
    if missing:
        return None, f"no film yet: {len(missing)} scene(s) without a clip ({', '.join(missing)})"
    files = [task.clip for task in clips if task is not None and task.clip is not None]
    shas = [clip.sha256 for clip in files]
    for clip, path in zip(files, paths, strict=True):
        assert path is not None
        if path.stat().st_size != clip.bytes or sha256_file(path) != clip.sha256:
            return None, f"no film yet: {clip.file} is not the clip the lockfile records"
    film_path = renders / f"{name}.mp4"
    if (
        lock.film is not None
        and lock.film.clips == shas
        and film_path.is_file()
        and sha256_file(film_path) == lock.film.sha256
    ):
        return film_path, "film unchanged"
    info = assemble([path for path in paths if path is not None], film_path).info
    lock.film = Film(
        file=film_path.name,
        sha256=sha256_file(film_path),
        clips=shas,
        duration=round(info.duration, 3),
    )
    lock.save()
    return film_path, f"film assembled: {info.duration:.2f} s"
