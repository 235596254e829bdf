"""Faults a test injects into the emulator: what goes wrong, on which requests, how often.

A module of its own because a fault plan is shared state with its own rules (first added,
first served; `match` narrows it to a subject) that the routes only consume: a route asks
`FaultPlan.take` for the first fault that applies to it and acts it out.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast, get_args

FaultKind = Literal[
    "http_500",
    "code_1302",
    "code_1303",
    "drop_before",
    "drop_after",
    "slow",
    "truncate",
    "fail_task",
]
FaultOp = Literal["create", "query", "download", "element", "image", "audio", "any"]
Op = Literal["create", "query", "download", "element", "image", "audio"]

# Faults that answer a request; `fail_task` acts on the created task instead.
REQUEST_FAULTS: dict[Op, frozenset[str]] = {
    "create": frozenset(
        {"http_500", "code_1302", "code_1303", "drop_before", "drop_after", "slow"}
    ),
    "query": frozenset({"http_500", "code_1302", "code_1303", "drop_before", "drop_after", "slow"}),
    "download": frozenset(
        {"http_500", "code_1302", "code_1303", "drop_before", "drop_after", "slow", "truncate"}
    ),
    # Every request to the element registry: create, query one, list.
    "element": frozenset(
        {"http_500", "code_1302", "code_1303", "drop_before", "drop_after", "slow"}
    ),
    # Every Omni-Image request: create, query one, list, PNG download.
    "image": frozenset(
        {"http_500", "code_1302", "code_1303", "drop_before", "drop_after", "slow", "truncate"}
    ),
    # Every sound request: voices (presets, custom: create, query, list, delete), TTS,
    # sound effects (create, query, list), and the audio and voice-trial downloads.
    "audio": frozenset(
        {"http_500", "code_1302", "code_1303", "drop_before", "drop_after", "slow", "truncate"}
    ),
}


@dataclass(slots=True)
class Fault:
    """One injected fault; `times` is how many more requests it hits."""

    kind: FaultKind
    op: FaultOp = "any"
    times: int = 1
    delay: float = 0.0
    message: str | None = None
    match: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultPlan:
    """Faults waiting to hit requests, first added first served.

    `op` picks the requests a fault can hit: create, query (one task or the list),
    download (clips, blobs, element images, generated images, audio files and voice
    trials), element (every request to the element registry: create, query one, list),
    image (every Omni-Image request: create, query one, list, PNG download), audio (every
    sound request: preset voices, custom voices (create, query one, list, delete), TTS,
    sound effects (create, query one, list), audio and trial downloads) or any. Create,
    query and download hit Omni-Image and sound requests of their kind as well as video
    ones (create: TTS and sound-effect creates; query: sound-effect queries and lists), as
    image and audio act on their own requests alone; none of them hits the element
    registry or the voices (presets, custom voices, delete), which only element, audio
    and any reach. `match`, when given, narrows it to requests whose subject contains the
    text: a create's prompt, shot prompts or external_task_id, an element create's
    element_name or external_task_id, a voice create's voice_name or external_task_id, a
    TTS call's text or voice_id, a delete's voice_id, a query's id, a download's task,
    audio or voice id. A `fail_task` fault fails the next task its op creates: a video,
    image, TTS or sound-effect task (create), an image task (image), an element task
    (element), a custom-voice, TTS or sound-effect task (audio), any task (any).
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        kind: str,
        op: str = "any",
        times: int = 1,
        delay: float = 0.0,
        message: str | None = None,
        match: str | None = None,
    ) -> Fault:
        if kind not in get_args(FaultKind):
            raise ValueError(f"kind must be one of {', '.join(get_args(FaultKind))}")
        if op not in get_args(FaultOp):
            raise ValueError(f"op must be one of {', '.join(get_args(FaultOp))}")
        if kind == "fail_task" and op not in ("create", "element", "image", "audio", "any"):
            raise ValueError(
                "a fail_task fault acts on creates: op must be create, element, image, audio or any"
            )
        if kind == "truncate" and op not in ("download", "image", "audio", "any"):
            raise ValueError(
                "a truncate fault acts on downloads: op must be download, image, audio or any"
            )
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise ValueError("delay must be a number of seconds >= 0")
        if message is not None and not isinstance(message, str):
            raise ValueError("message must be a string")
        if match is not None and not isinstance(match, str):
            raise ValueError("match must be a string")
        fault = Fault(
            cast(FaultKind, kind), cast(FaultOp, op), times, float(delay), message, match or None
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [Fault(**asdict(f)) for f in self._faults]

    def take(
        self, op: Op | Collection[Op], subjects: Sequence[str], kinds: Collection[str]
    ) -> Fault | None:
        """Use up one hit of the first fault of `kinds` that applies; a copy, or None.

        `op` is the request's op, or all of them (an image create is both create and image).
        """
        ops: Collection[str] = (op,) if isinstance(op, str) else op
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds or (fault.op != "any" and fault.op not in ops):
                    continue
                if fault.match is not None and not any(fault.match in s for s in subjects):
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return Fault(**{**asdict(fault), "times": 1})
        return None
