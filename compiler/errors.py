"""The exceptions a render can raise (compile problems are `Diagnostic` values instead).

```
StoryboardError
├── CredentialsError         half a key pair in the environment
├── ApiError                 .code (Kling body code), .http_status, .request_id
│   ├── ApiStatusError       body code != 0, or a response that is not a Kling envelope
│   │                        .create_not_made  1302, 1303: no task was made, resend is safe
│   │                        .transient        5000/5001/5002 or HTTP 5xx: try again later
│   │                        .auth             1000-1004: fix the credentials
│   │                        .billing          1100-1102: the account cannot pay
│   ├── TransportFailure     network error, timeout, dropped connection: outcome UNKNOWN
│   └── DownloadError        bad status, truncated body, length mismatch
├── TaskFailed               .scene, .task_id, .reason (Kling's task_status_msg)
├── PollTimeout              .scene, .task_id (slow is not failed)
├── GaveUp                   a request kept failing in a way that may pass; next run resumes
├── ClipGone                 a finished clip can no longer be downloaded (results last 30 days)
├── ImageGone                the same for a generated image or a still
├── SoundGone                the same for a narration or a sound effect
├── SpeechUnsure             a TTS call cut off: maybe paid, and it cannot be looked up
├── MediaChanged             a local image changed between compile and submit
├── SourceFailed             a continuing scene's source has no clip
├── UnsafeUrl                a result URL that is not public https nor the API's own
├── LockfileError            a lockfile that cannot be read (never overwritten then)
├── BackendError             the chosen backend cannot be used (a usage error)
└── CacheError               the shared render cache failed (network, auth, a bad URL)
    └── CacheCorrupt         (cache.py) an object that is not its sha256: never used
```

No exception here holds a request, a response or a header: their text is built from the
Kling message and identifiers only, with credentials scrubbed out by the client, so
`str(exc)` is safe to print and log (design.md §5).
"""

from __future__ import annotations

# kling-api.md §5: which body codes mean what.
AUTH_CODES = frozenset({1000, 1001, 1002, 1003, 1004})
BILLING_CODES = frozenset({1100, 1101, 1102})
NOT_CREATED_CODES = frozenset({1302, 1303})
TRANSIENT_CODES = frozenset({5000, 5001, 5002})


class StoryboardError(Exception):
    """Base class of every error the compiler raises on purpose."""


class CredentialsError(StoryboardError):
    """The environment holds an incomplete set of Kling credentials."""


class ApiError(StoryboardError):
    """Talking to the Kling API (or a clip host) went wrong."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.request_id = request_id

    def __str__(self) -> str:
        facts = []
        if self.code is not None:
            facts.append(f"code {self.code}")
        if self.http_status is not None:
            facts.append(f"HTTP {self.http_status}")
        if self.request_id:
            facts.append(f"request_id {self.request_id}")
        return f"{self.message} ({', '.join(facts)})" if facts else self.message


class ApiStatusError(ApiError):
    """Kling answered with a non-zero body code, or with something that is not an envelope
    (an HTML page from a proxy, say: then `code` is None)."""

    @property
    def create_not_made(self) -> bool:
        """Kling says no task was created (rate or concurrency limit): resending is safe."""
        return self.code in NOT_CREATED_CODES

    @property
    def transient(self) -> bool:
        """A server-side hiccup: try again later. For a create, a task MAY exist: look it
        up by external_task_id before resending (kling-api.md §5, code 5002)."""
        if self.code in TRANSIENT_CODES:
            return True
        return self.http_status is not None and 500 <= self.http_status <= 599

    @property
    def auth(self) -> bool:
        """The credentials were refused: retrying will not help."""
        return self.code in AUTH_CODES

    @property
    def billing(self) -> bool:
        """The account cannot pay (arrears, resource pack used up): HTTP 429 but final."""
        return self.code in BILLING_CODES


class TransportFailure(ApiError):
    """No answer: a network error, a timeout or a dropped connection. Whether the server
    acted on the request is UNKNOWN (a create may have made a task)."""


class DownloadError(ApiError):
    """A clip could not be fetched whole: an error status, or fewer/more bytes than the
    Content-Length promised."""


class TaskFailed(StoryboardError):
    """Kling ran the task and it ended `failed`."""

    def __init__(self, scene: str, task_id: str, reason: str | None) -> None:
        super().__init__(scene, task_id, reason)
        self.scene = scene
        self.task_id = task_id
        self.reason = reason

    def __str__(self) -> str:
        why = self.reason or "Kling gave no reason"
        return f"scene {self.scene!r}: task {self.task_id} failed: {why}"


class PollTimeout(StoryboardError):
    """A task is still running at the poll deadline. Slow is not failed: the task id is in
    the lockfile, and the next `storyboard render` re-attaches to it."""

    def __init__(self, scene: str, task_id: str) -> None:
        super().__init__(scene, task_id)
        self.scene = scene
        self.task_id = task_id

    def __str__(self) -> str:
        return (
            f"scene {self.scene!r}: task {self.task_id} is still running; "
            "run `storyboard render` again later to pick it up (it is not paid twice)"
        )


class GaveUp(StoryboardError):
    """A request kept failing in a way that may pass (network, 5xx); enough for this run."""


class ClipGone(StoryboardError):
    """Kling no longer serves a finished task's clip (results are kept 30 days)."""

    def __init__(self, scene: str, label: str, error: Exception) -> None:
        super().__init__(
            f"scene '{label}': its clip can no longer be downloaded ({error}); "
            f"`storyboard render --force {scene}` pays for it again"
        )


class ImageGone(StoryboardError):
    """Kling no longer serves a finished image or still (results are kept 30 days)."""

    def __init__(self, kind: str, label: str, error: Exception) -> None:
        records = "images" if kind == "image" else "stills"
        super().__init__(
            f"{label}: its PNG can no longer be downloaded ({error}); remove its entry "
            f"under `{records}` in the lockfile to make it again (paid)"
        )


class MediaChanged(StoryboardError):
    """A local image changed between compiling and submitting."""


class SourceFailed(StoryboardError):
    """A scene waits for the last frame of a scene that has no clip."""


class LockfileError(StoryboardError):
    """The lockfile exists but cannot be read; it is never overwritten in that state."""


class BackendError(StoryboardError):
    """The chosen backend cannot be used (no credentials, say): a usage error."""


class UnsafeUrl(StoryboardError):
    """A URL storyboard will not fetch: not public https, and not the API's own origin."""


class CacheError(StoryboardError):
    """The shared render cache could not be read or written (README "A shared render cache")."""


class SoundGone(StoryboardError):
    """Kling no longer serves a finished narration or effect (results are kept 30 days)."""

    def __init__(self, scene: str, label: str, error: Exception) -> None:
        super().__init__(
            f"{label}: its audio can no longer be downloaded ({error}); "
            f"`storyboard render --force {scene}` makes it again (paid)"
        )


class SpeechUnsure(StoryboardError):
    """A TTS call was cut off: it may have been paid, and Kling gives no way to look it up.

    TTS takes no external_task_id (README "Sound"), so storyboard never sends it again
    by itself; the next render shows it as the one call that may be paid twice.
    """

    def __init__(self, label: str, error: Exception) -> None:
        super().__init__(
            f"{label}: the TTS call was cut off ({error}); Kling may have made and charged "
            "it, and TTS cannot be looked up, so storyboard did not send it again. The next "
            "render makes it (and may pay for it twice)"
        )
