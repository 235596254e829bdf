"""One redaction step for every credential the process holds (README "Money and safety").

Auth registers its keys and each token it mints; text from outside (a server's error, a
task's reason, a collaborator's lockfile) passes through `redact_secrets` before it is
printed, stored or written into HTML. Over-masking (a short key that is also a word) is
the safe side.
"""

from __future__ import annotations

import threading

MASK = "***"


class _Secrets:
    """Every credential this process holds: keys, and the tokens it minted.

    One redaction step (`redact_secrets`) masks them all in any text that came from
    outside (a server's error or a task's reason) before it is printed, stored in the
    lockfile or written into the contact sheet.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if value:
            with self._lock:
                self._values.add(value)

    def forget(self) -> None:
        """Drop every registered value (tests: each starts with none)."""
        with self._lock:
            self._values.clear()

    def redact(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)  # longest first
        for value in values:
            if value in text:
                text = text.replace(value, MASK)
        return text


SECRETS = _Secrets()


def redact_secrets(text: str) -> str:
    """`text` with every credential this process holds masked."""
    return SECRETS.redact(text)
