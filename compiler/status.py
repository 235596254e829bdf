"""What the lockfile says of a storyboard's tasks, after asking Kling about unfinished ones.

Never creates anything: a create that a killed run may have sent is looked up by its
`external_task_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from .backends import Backend
from .fsutil import sha256_file
from .lockfile import EMULATOR_HOST_SUFFIX, Lockfile, SoundLock, TaskLock


async def refresh_status(file: Path, backend: Backend) -> Lockfile:
    """Ask the backend about every unfinished task it made, and record the answers."""
    lock = Lockfile.for_storyboard(file)
    unfinished = [
        task
        for entry in lock.scenes.values()
        for task in entry.takes.values()
        if task.in_flight and task.backend == backend.name
    ]
    if not unfinished:
        return lock
    client = backend.client()
    try:
        for task in unfinished:
            if task.task_id is not None:
                info = await client.get_task(task.task_id)
            else:
                found = await client.find_task(task.external_task_id)
                if found is None:
                    continue
                info = found
            task.observe(info)
    finally:
        await client.aclose()
    lock.save()
    return lock


def clip_state(task: TaskLock, renders: Path) -> str:
    """A take's clip on disk, in words: ok, deleted or modified."""
    if task.clip is None:
        return ""
    path = task.clip.path(renders)
    if path is None:
        return "clip outside renders/ (ignored)"
    if not path.is_file():
        if task.backend == "emulator":
            return "clip deleted (render makes the placeholder again, free)"
        return "clip deleted (render downloads it again)"
    if sha256_file(path) != task.clip.sha256:
        return "clip modified on disk"
    return "clip ok"


def sound_lines(
    lock: Lockfile, folder: Path, order: Mapping[str, int]
) -> list[tuple[str, SoundLock, str]]:
    """Each recorded sound call as (label, record, state in words): the custom voices, then
    each scene's narration and effect in film `order`. `folder` is renders/NAME."""
    rows: list[tuple[str, SoundLock, str]] = []
    for name, voice in sorted(lock.voices.items()):
        rows.append((f"voice {name}", voice, f"voice {voice.voice_id}" if voice.voice_id else ""))
    scenes = sorted({*lock.speech, *lock.effects}, key=lambda scene: (order.get(scene, 1e9), scene))
    for scene in scenes:
        for what, records in (("narration", lock.speech), ("sfx", lock.effects)):
            if (entry := records.get(scene)) is not None:
                rows.append((f"{what} {scene}", entry, _audio_state(entry, folder)))
    return rows


def _audio_state(entry: SoundLock, folder: Path) -> str:
    if entry.file is None:
        if entry.status == "creating" and entry.external_task_id is None:
            return "cut off: may have been paid (TTS cannot be looked up)"
        return ""
    if entry.path(folder) is None:
        return "audio outside renders/ (ignored)"
    if entry.intact(folder) is None:
        return "audio deleted or modified (render makes it again)"
    return "audio ok"


async def preset_voices(backend: Backend) -> tuple[list[tuple[str, str, str, str]], str]:
    """Kling's preset voices as `storyboard voices` shows them: (id, name, the languages
    storyboard knows it speaks, its trial URL) and a summary line. Asks; never creates."""
    from .model import sound

    known: dict[str, list[str]] = sound()["presets"]
    client = backend.client()
    try:
        presets = await client.list_presets()
    finally:
        await client.aclose()
    rows = []
    for preset in presets:
        languages = ", ".join(known.get(preset.voice_id, [])) or "unknown to storyboard"
        trial = preset.trial_url or ""
        if (urlsplit(trial).hostname or "").endswith(EMULATOR_HOST_SUFFIX):
            trial = ""  # the in-process emulator's: nothing to play
        rows.append((preset.voice_id, preset.name, languages, trial))
    missing = sorted(set(known) - {p.voice_id for p in presets})
    summary = f"{len(presets)} preset voice(s) on {backend.name}; storyboard knows {len(known)}"
    if missing:
        summary += f", {len(missing)} of them not listed: {', '.join(missing)}"
    return rows, summary
