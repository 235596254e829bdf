"""Command line: parse arguments, call one pipeline function, report, return an exit code."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path

from . import __version__
from .diagnostics import REPORTERS, Diagnostic, sort_diagnostics
from .fsutil import atomic_write_text
from .pipeline import CompileResult, compile_file
from .starter import starter_text
from .validate import schema_path


class ExitCode(IntEnum):
    """The exit policy, in one place (design.md §2)."""

    OK = 0
    STORYBOARD_ERRORS = 1  # diagnostics printed, nothing sent or written
    USAGE = 2  # bad arguments (argparse's own code)
    FAILED = 3  # a task or the API failed, or storyboard itself broke
    REFUSED_COST = 4  # over budget, or paid work not approved


class UsageError(Exception):
    pass


def _inputs(names: Sequence[str]) -> list[tuple[Path, str]]:
    """Files to work on: the arguments (folders expand to their *.yaml), else storyboards/."""
    if not names:
        found = sorted(Path("storyboards").glob("*.yaml"))
        if not found:
            raise UsageError("no storyboard given, and none found in storyboards/")
        return [(path, path.as_posix()) for path in found]
    files: list[tuple[Path, str]] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            files += [(p, p.as_posix()) for p in sorted(path.glob("*.y*ml"))]
        elif path.is_file():
            files.append((path, name.replace(os.sep, "/")))
        else:
            raise UsageError(f"no such file: {name}")
    return files


def _compile_all(args: argparse.Namespace) -> tuple[list[CompileResult], list[Diagnostic]]:
    results = [compile_file(path, shown) for path, shown in _inputs(args.files)]
    return results, sort_diagnostics(d for r in results for d in r.diagnostics)


def _report(
    args: argparse.Namespace, diagnostics: list[Diagnostic], files: int, out: object
) -> None:
    REPORTERS[args.format](diagnostics, files, out)  # type: ignore[arg-type]


def cmd_validate(args: argparse.Namespace) -> ExitCode:
    results, diagnostics = _compile_all(args)
    if diagnostics or args.format == "json":
        _report(args, diagnostics, len(results), sys.stdout)
    if any(d.is_error for d in diagnostics):
        return ExitCode.STORYBOARD_ERRORS
    if args.format == "text":
        scenes = sum(len(r.tasks) for r in results)
        print(f"ok: {len(results)} storyboard(s), {scenes} scene(s)")
    return ExitCode.OK


def cmd_compile(args: argparse.Namespace) -> ExitCode:
    results, diagnostics = _compile_all(args)
    if diagnostics:
        _report(args, diagnostics, len(results), sys.stderr)
    if any(d.is_error for d in diagnostics):
        return ExitCode.STORYBOARD_ERRORS
    if args.out:
        for result in results:
            target = Path(args.out) / (Path(result.path).stem + ".json")
            atomic_write_text(target, json.dumps(result.as_json(), indent=2) + "\n")
    if args.json:
        docs = [r.as_json() for r in results]
        doc = docs[0] if len(docs) == 1 else {"storyboards": docs}
        print(json.dumps(doc, indent=2))
    else:
        for result in results:
            _print_summary(result, args.out)
    return ExitCode.OK


def _print_summary(result: CompileResult, out: str | None) -> None:
    print(f"{result.path}: {len(result.tasks)} task(s)")
    for task in result.tasks:
        payload = task.payload
        shots = len(payload.get("multi_prompt", [])) or 1
        note = "  (estimate: upper bound)" if task.estimate_note else ""
        shot_label = f"{shots} shot{'s' * (shots != 1)}"
        print(
            f"  {task.scene:<24} {shot_label:<8} {task.seconds:>4g} s  "
            f"{payload['mode']:<3}  sound {payload['sound']:<3}  "
            f"{task.units:>6.2f} units  ${task.usd:.2f}{note}"
        )
    units = sum(t.units for t in result.tasks)
    usd = sum(t.usd for t in result.tasks)
    print(f"  {'total':<24} {'':<8} {'':>6}  {'':<3}  {'':<9} {units:>6.2f} units  ${usd:.2f}")
    if out:
        print(f"  wrote {Path(out) / (Path(result.path).stem + '.json')}")


def cmd_schema(args: argparse.Namespace) -> ExitCode:
    text = schema_path().read_text(encoding="utf-8")
    if args.out:
        atomic_write_text(Path(args.out), text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return ExitCode.OK


def cmd_new(args: argparse.Namespace) -> ExitCode:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", args.name):
        raise UsageError(
            f"'{args.name}' is not a storyboard name: use lower-case letters, digits, - and _"
        )
    folder = Path(args.dir)
    target = folder / f"{args.name}.yaml"
    if target.exists():
        raise UsageError(f"{target.as_posix()} already exists; pick another name")
    schema_file = Path("schemas") / "storyboard.schema.json"
    if not schema_file.exists():
        atomic_write_text(schema_file, schema_path().read_text(encoding="utf-8"))
        print(f"wrote {schema_file.as_posix()} (for editor completion)")
    header = Path(os.path.relpath(schema_file, folder)).as_posix()
    atomic_write_text(target, starter_text(args.name, header))
    print(f"wrote {target.as_posix()}; check it with: storyboard validate {target.as_posix()}")
    return ExitCode.OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storyboard",
        description="Compile YAML storyboards to Kling 3.0 Omni video tasks.",
    )
    parser.add_argument("--version", action="version", version=f"storyboard {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full stack trace of internal errors"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="storyboard files or folders (default: storyboards/)",
    )
    common.add_argument(
        "--format",
        choices=sorted(REPORTERS),
        default="text",
        help="how to print problems: text, json, or github annotations",
    )

    validate = commands.add_parser(
        "validate", parents=[common], help="check storyboards; no network"
    )
    validate.set_defaults(run=cmd_validate)

    compile_ = commands.add_parser(
        "compile", parents=[common], help="lower storyboards to Kling payloads; no network"
    )
    compile_.add_argument("--json", action="store_true", help="print the payloads as JSON")
    compile_.add_argument("--out", metavar="DIR", help="also write DIR/NAME.json per storyboard")
    compile_.set_defaults(run=cmd_compile)

    schema = commands.add_parser("schema", help="print the storyboard JSON Schema")
    schema.add_argument("--out", metavar="FILE", help="write it to FILE instead")
    schema.set_defaults(run=cmd_schema)

    new = commands.add_parser("new", help="write a commented starter storyboard")
    new.add_argument("name", metavar="NAME")
    new.add_argument(
        "--dir", default="storyboards", help="folder to write into (default: storyboards)"
    )
    new.set_defaults(run=cmd_new)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"storyboard: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print("storyboard: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in storyboard, not in the user's input
        if args.traceback:
            traceback.print_exc()
        else:
            print(
                f"storyboard: internal error: {type(exc).__name__}: {exc} "
                "(rerun with --traceback and report it)",
                file=sys.stderr,
            )
        return ExitCode.FAILED
