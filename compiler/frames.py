"""The last frame of a clip as PNG bytes: a continuing scene's first frame.

PNG encoding is deterministic, so the digest `plan` takes in memory is the digest of the
file the executor later writes; the two never disagree about what a scene will send.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from .fsutil import atomic_write_bytes


def last_frame_png(clip: Path) -> bytes:
    from .media import extract_frame  # PyAV is loaded only when a frame is needed

    buffer = io.BytesIO()
    extract_frame(clip, "last").save(buffer, format="PNG")
    return buffer.getvalue()


def frame_name(scene: str) -> str:
    """Where the last frame of `scene` is saved, inside renders/NAME."""
    return f"{scene}.last.png"


def save_last_frame(clip: Path, dest: Path) -> str:
    """Save the last frame of `clip` as a PNG (atomically) and return its sha256."""
    data = last_frame_png(clip)
    atomic_write_bytes(dest, data)
    return hashlib.sha256(data).hexdigest()
