"""Regenerate the golden files of tests/cases (`make golden`). Review the diff before committing.

valid/NAME.yaml   -> valid/NAME.json      the `compile --json` document
invalid/NAME.yaml -> invalid/NAME.expected  one `LINE:COL: severity[code]: message` per problem
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from compiler.pipeline import compile_file

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"


def display(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def expected_lines(path: Path) -> list[str]:
    result = compile_file(path, display(path))
    prefix = display(path) + ":"
    return [d.headline().removeprefix(prefix) for d in result.diagnostics]


def golden_json(path: Path) -> dict[str, object]:
    return compile_file(path, display(path)).as_json()


def main(argv: list[str]) -> int:
    """Regenerate all golden files, or only those of the case files named in argv."""
    os.chdir(ROOT)
    os.environ.pop("STORYBOARD_CACHE", None)  # a local voice sample is then a diagnostic
    chosen = {Path(arg).resolve() for arg in argv}

    def cases(kind: str) -> list[Path]:
        found = sorted((CASES / kind).glob("*.yaml"))
        return [c for c in found if not chosen or c.resolve() in chosen]

    problems = 0
    for case in cases("valid"):
        result = compile_file(case, display(case))
        if not result.ok:
            print(f"{display(case)} does not compile:", file=sys.stderr)
            for d in result.diagnostics:
                print("  " + d.headline(), file=sys.stderr)
            problems += 1
            continue
        text = json.dumps(result.as_json(), indent=2) + "\n"
        case.with_suffix(".json").write_text(text, encoding="utf-8")
    for case in cases("invalid"):
        lines = expected_lines(case)
        if not any("error[" in line for line in lines):
            print(f"{display(case)} has no error", file=sys.stderr)
            problems += 1
        case.with_suffix(".expected").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
