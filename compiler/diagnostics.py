"""Positions, diagnostics and the reporters that print them.

Every stage collects problems as `Diagnostic` values instead of raising; the CLI sorts
them by position and hands them to one reporter (text, json or github).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TextIO


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """A 1-based position in a source file."""

    path: str
    line: int = 1
    col: int = 1

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a storyboard, at the position of the offending value."""

    loc: Location
    code: str
    message: str
    hint: str | None = None
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.loc.path, self.loc.line, self.loc.col, self.code, self.message)

    def headline(self) -> str:
        return f"{self.loc}: {self.severity.value}[{self.code}]: {self.message}"

    def as_json(self) -> dict[str, object]:
        return {
            "path": self.loc.path,
            "line": self.loc.line,
            "col": self.loc.col,
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted(set(diagnostics), key=Diagnostic.sort_key)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """Return a "did you mean" hint for a misspelt name, or list what exists."""
    pool = sorted(set(candidates))
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if not pool:
        return None
    shown = ", ".join(pool[:8]) + (", ..." if len(pool) > 8 else "")
    return f"known names: {shown}"


def _summary(diagnostics: Sequence[Diagnostic], files: int) -> str:
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    parts = [f"{errors} error{'s' * (errors != 1)}"]
    if warnings:
        parts.append(f"{warnings} warning{'s' * (warnings != 1)}")
    with_problems = len({d.loc.path for d in diagnostics})
    where = f"{with_problems} file{'s' * (with_problems != 1)}"
    if files > with_problems:
        where = f"{with_problems} of {files} files"
    return f"{', '.join(parts)} in {where}"


def report_text(diagnostics: Sequence[Diagnostic], files: int, out: TextIO) -> None:
    for diag in diagnostics:
        out.write(diag.headline() + "\n")
        if diag.hint:
            out.write(f"  hint: {diag.hint}\n")
    if diagnostics:
        out.write(_summary(diagnostics, files) + "\n")


def _github_escape(text: str, *, property_value: bool = False) -> str:
    # GitHub workflow commands percent-encode these characters (actions/toolkit command.ts).
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def report_github(diagnostics: Sequence[Diagnostic], files: int, out: TextIO) -> None:
    for diag in diagnostics:
        level = "error" if diag.is_error else "warning"
        props = ",".join(
            [
                f"file={_github_escape(diag.loc.path, property_value=True)}",
                f"line={diag.loc.line}",
                f"col={diag.loc.col}",
                f"title={_github_escape(diag.code, property_value=True)}",
            ]
        )
        message = diag.message + (f"\n{diag.hint}" if diag.hint else "")
        out.write(f"::{level} {props}::{_github_escape(message)}\n")


def report_json(diagnostics: Sequence[Diagnostic], files: int, out: TextIO) -> None:
    doc = {
        "errors": sum(d.is_error for d in diagnostics),
        "warnings": sum(not d.is_error for d in diagnostics),
        "diagnostics": [d.as_json() for d in diagnostics],
    }
    out.write(json.dumps(doc, indent=2) + "\n")


REPORTERS = {"text": report_text, "json": report_json, "github": report_github}
