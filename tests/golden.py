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


def main() -> int:
    os.chdir(ROOT)
    problems = 0
    for case in sorted((CASES / "valid").glob("*.yaml")):
        result = compile_file(case, display(case))
        if not result.ok:
            print(f"{display(case)} does not compile:", file=sys.stderr)
            for d in result.diagnostics:
                print("  " + d.headline(), file=sys.stderr)
            problems += 1
            continue
        text = json.dumps(result.as_json(), indent=2) + "\n"
        case.with_suffix(".json").write_text(text, encoding="utf-8")
    for case in sorted((CASES / "invalid").glob("*.yaml")):
        lines = expected_lines(case)
        if not any("error[" in line for line in lines):
            print(f"{display(case)} has no error", file=sys.stderr)
            problems += 1
        case.with_suffix(".expected").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
