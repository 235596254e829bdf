"""Command line: parse arguments, call one pipeline function, report, return an exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .backends import backend_name
from .diagnostics import REPORTERS, Diagnostic, did_you_mean, sort_diagnostics
from .errors import (
    BackendError,
    CacheError,
    CredentialsError,
    LockfileError,
    StoryboardError,
)
from .fsutil import atomic_write_text
from .gate import board_costs, judge
from .pipeline import CompileResult, compile_file
from .plan import Plan, Selection
from .planview import plan_json, print_plan
from .progress import Display, PlainProgress, RichProgress
from .starter import starter_text
from .validate import schema_path

if TYPE_CHECKING:
    from .cache import Cache


class ExitCode(IntEnum):
    """The exit policy, in one place (design.md §2)."""

    OK = 0
    STORYBOARD_ERRORS = 1  # diagnostics printed (or a lockfile refused), nothing sent
    USAGE = 2  # bad arguments (argparse's own code)
    FAILED = 3  # a task or the API failed, or storyboard itself broke
    REFUSED_COST = 4  # over budget, or paid work not approved


class UsageError(Exception):
    pass


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _inputs(names: Sequence[str]) -> list[tuple[Path, str]]:
    """Files to work on: the arguments (folders expand to their YAML files), else storyboards/."""
    if not names:
        found = sorted(Path("storyboards").glob("*.y*ml"))
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
    cache = getattr(args, "cache", None)  # render, plan: --cache is what a sample goes by
    results = [compile_file(path, shown, cache=cache) for path, shown in _inputs(args.files)]
    return results, sort_diagnostics(d for r in results for d in r.diagnostics)


class HasErrors(Exception):
    """The storyboards have errors, and they have been reported: exit 1."""


def _compiled(args: argparse.Namespace) -> list[CompileResult]:
    """Compile the inputs; report every problem on stderr; stop if any is an error."""
    results, diagnostics = _compile_all(args)
    if diagnostics:
        _report(args, diagnostics, len(results), sys.stderr)
    if any(d.is_error for d in diagnostics):
        raise HasErrors
    return results


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
    results = _compiled(args)
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
    sounds: list[tuple[str, str, Decimal, Decimal]] = [
        (f"voice {voice.name}", "", voice.units, voice.usd) for voice in result.voices
    ]
    for task in result.tasks:
        if task.narration is not None:
            label = f"narration {task.scene}"
            sounds.append((label, "", task.narration_units, task.narration_usd))
        if task.sfx is not None:
            sounds.append(
                (f"sfx {task.scene}", f"{task.sfx.duration:g} s", task.sfx_units, task.sfx_usd)
            )
    for label, seconds, sound_units, sound_usd in sounds:
        print(
            f"  {label:<24} {'':<8} {seconds:>6}  {'':<3}  {'':<9} "
            f"{sound_units:>6.2f} units  ${sound_usd:.2f}"
        )
    units = sum(t.units for t in result.tasks) + sum(float(s[2]) for s in sounds)
    usd = sum(t.usd for t in result.tasks) + sum(float(s[3]) for s in sounds)
    print(f"  {'total':<24} {'':<8} {'':>6}  {'':<3}  {'':<9} {units:>6.2f} units  ${usd:.2f}")
    if out:
        print(f"  wrote {Path(out) / (Path(result.path).stem + '.json')}")


def _selection(args: argparse.Namespace, results: list[CompileResult]) -> Selection:
    scenes = {task.scene for r in results for task in r.tasks}
    only, force = set(args.only or []), set(getattr(args, "force", None) or [])
    for flag, named in (("--only", only), ("--force", force)):
        unknown = named - scenes
        if unknown:
            raise UsageError(
                f"{flag} names no scene: {', '.join(sorted(unknown))}"
                + (f" ({did_you_mean(sorted(unknown)[0], scenes)})" if scenes else "")
            )
    return Selection(frozenset(only | force) if only else frozenset(), frozenset(force))


def _plans(
    args: argparse.Namespace, results: list[CompileResult], backend: str
) -> tuple[Selection, dict[str, Plan]]:
    from .run import plan_board

    selection = _selection(args, results)
    cache = _cache(args)
    stills = bool(getattr(args, "stills", False))
    plans = {
        r.path: plan_board(r, backend, Path(args.renders), selection, cache, stills=stills)
        for r in results
    }
    return selection, plans


def _cache(args: argparse.Namespace) -> Cache | None:
    """The render cache `--cache` or STORYBOARD_CACHE names, opened once per run."""
    from .cache import cache_url, open_cache

    if not hasattr(args, "opened_cache"):
        url = cache_url(getattr(args, "cache", None))
        try:
            args.opened_cache = open_cache(url) if url else None
        except CacheError as exc:  # a URL or configuration the user gave
            raise UsageError(str(exc)) from None
    cache: Cache | None = args.opened_cache
    return cache


def cmd_plan(args: argparse.Namespace) -> ExitCode:
    results = _compiled(args)
    backend = _backend_name(args)
    _, plans = _plans(args, results, backend)
    if args.json:
        docs = [plan_json(r, plans[r.path]) for r in results]
        print(json.dumps(docs[0] if len(docs) == 1 else {"storyboards": docs}, indent=2))
    else:
        for result in results:
            print_plan(
                result,
                plans[result.path],
                sys.stdout,
                free=backend == "emulator",
            )
    return ExitCode.OK


def _backend_name(args: argparse.Namespace) -> str:
    try:
        return backend_name(args.backend)
    except (BackendError, CredentialsError) as exc:
        raise UsageError(str(exc)) from None


def cmd_render(args: argparse.Namespace) -> ExitCode:
    from .backends import choose_backend
    from .run import render_all

    results = _compiled(args)
    _, plans = _plans(args, results, _backend_name(args))
    backend = choose_backend(args.backend)
    if args.poll_interval is not None:
        backend.poll_interval = args.poll_interval
    if backend.free:
        print(
            "render: using the built-in Kling EMULATOR (no Kling credentials are set): "
            "placeholder clips, nothing is paid",
            file=sys.stderr,
        )
    else:
        print(
            f"render: using Kling at {backend.base_url}: tasks submitted are paid", file=sys.stderr
        )
    for result in results:
        print_plan(result, plans[result.path], sys.stdout, free=backend.free)
    paid = any(p.pays for p in plans.values())
    if paid and not backend.free and not _approved(args, results, plans):
        return ExitCode.REFUSED_COST

    rows = [(r.path, take.job.label) for r in results for take in plans[r.path].takes]
    rows += [(r.path, still.job.label) for r in results for still in plans[r.path].stills]
    rows += [(r.path, sound.job.label) for r in results for sound in plans[r.path].sounds]
    with _display(rows) as display:
        outcomes = asyncio.run(
            render_all(
                results,
                plans,
                backend,
                Path(args.renders),
                display,
                concurrency=args.concurrency,
                poll_timeout=args.timeout,
                cache=_cache(args),
            )
        )
    failed = False
    for outcome in outcomes:
        for note in outcome.notes:
            print(f"{outcome.storyboard}: warning: {note}", file=sys.stderr)
        for scene in outcome.failed:
            failed = True
            print(f"{outcome.storyboard}: {scene.outcome}: {scene.error}", file=sys.stderr)
        if outcome.animatic is not None:
            print(f"{outcome.storyboard}: {outcome.film_note} -> {outcome.animatic}")
            continue
        film = f" -> {outcome.film}" if outcome.film else ""
        print(f"{outcome.storyboard}: {outcome.film_note}{film}")
        if outcome.film_detail:
            print(f"{outcome.storyboard}: {outcome.film_detail}")
        if outcome.timeline is not None:
            print(f"{outcome.storyboard}: timeline {outcome.timeline.as_posix()}")
        if outcome.captions is not None:
            print(f"{outcome.storyboard}: captions {outcome.captions.as_posix()}")
        if outcome.preview is not None:
            print(f"{outcome.storyboard}: contact sheet {outcome.preview.as_posix()}")
    return ExitCode.FAILED if failed else ExitCode.OK


def _approved(
    args: argparse.Namespace, results: list[CompileResult], plans: dict[str, Plan]
) -> bool:
    """Ask the money gate; at a terminal, a typed yes approves what the gate did not."""
    budget = Decimal(str(args.budget)) if args.budget is not None else None
    verdict = judge(board_costs(results, plans), yes=args.yes, budget=budget)
    if verdict.approved:
        return True
    usd = f"${verdict.usd:.2f}" if verdict.usd.is_finite() else "an unknown amount"
    if verdict.askable and sys.stdin.isatty() and sys.stderr.isatty():
        answer = input(f"render: this costs about {usd} ({verdict.limit}). Submit? [y/N] ")
        if answer.strip().lower() in ("y", "yes"):
            return True
    print(
        f"render: refused: about {usd} of paid work ({verdict.limit}); nothing was submitted. "
        "Pass --yes, or raise --budget or budget_usd",
        file=sys.stderr,
    )
    return False


@contextlib.contextmanager
def _steps(title: str) -> Iterator[Callable[[str], None]]:
    """A progress line per clip moved: a rich spinner at a terminal, nothing otherwise."""
    if not sys.stderr.isatty():
        yield lambda name: None
        return
    from rich.console import Console

    with Console(stderr=True).status(title) as status:
        yield lambda name: status.update(f"{title}: {name}")


def _display(rows: list[tuple[str, str]]) -> Display:
    if sys.stdout.isatty():
        return RichProgress(rows)
    return PlainProgress()


def cmd_export(args: argparse.Namespace) -> ExitCode:
    from .film import export_timeline
    from .timeline import FORMATS

    nothing = False
    for result in _compiled(args):
        title = (result.board.title if result.board else None) or result.file.stem
        dest, why = export_timeline(
            result.file,
            result.tasks,
            Path(args.renders),
            args.to,
            title=title,
            shown=result.path,
            soundtrack=result.board.soundtrack if result.board else None,
        )
        if dest is None:
            print(f"{result.path}: {why}: run storyboard render first", file=sys.stderr)
            nothing = True
        else:
            print(f"{result.path}: timeline {dest.as_posix()} ({FORMATS[args.to].editors})")
    return ExitCode.STORYBOARD_ERRORS if nothing else ExitCode.OK  # 1: nothing to export


def cmd_preview(args: argparse.Namespace) -> ExitCode:
    from .preview import write_preview

    results = _compiled(args)
    backend = _backend_name(args)
    for result in results:
        page = write_preview(result, Path(args.renders), backend)
        print(f"{result.path}: contact sheet {page.as_posix()}")
    return ExitCode.OK


def cmd_status(args: argparse.Namespace) -> ExitCode:
    from .backends import choose_backend
    from .status import clip_state, refresh_status, sound_lines

    _backend_name(args)
    backend = choose_backend(args.backend)
    failed = False
    for file, shown in _inputs(args.files):
        if not file.with_suffix(".lock").exists():
            print(f"{shown}: never rendered (no {file.with_suffix('.lock').name})")
            continue
        lock = asyncio.run(refresh_status(file, backend))
        # The estimate beside the charge, when the storyboard still compiles (no network).
        compiled = compile_file(file, shown)
        estimate = {t.scene: f"est. {t.units:g}" for t in compiled.tasks}
        order = {t.scene: i for i, t in enumerate(compiled.tasks)}  # film order
        print(f"{shown}:")
        for scene, entry in sorted(lock.scenes.items(), key=lambda kv: order.get(kv[0], 1e9)):
            for take, task in sorted(entry.takes.items()):
                label = scene if take == 1 else f"{scene}#{take}"
                charged = f"{task.units_charged} units" if task.units_charged else ""
                clip = clip_state(task, Path(args.renders))
                why = f"  {task.status_msg}" if task.status == "failed" and task.status_msg else ""
                origin = "emulator " if task.backend == "emulator" else ""
                print(
                    f"  {label:<24} {task.status:<11} {task.task_id or '-':<20} "
                    f"{estimate.get(scene, ''):<10} {charged:<12} {origin}{clip}{why}".rstrip()
                )
                failed = failed or task.status == "failed"
        for label, sound, state in sound_lines(lock, Path(args.renders) / file.stem, order):
            charged = f"{sound.units_charged} units" if sound.units_charged else ""
            why = f"  {sound.status_msg}" if sound.status == "failed" and sound.status_msg else ""
            origin = "emulator " if sound.backend == "emulator" else ""
            print(
                f"  {label:<24} {sound.status:<11} {sound.task_id or '-':<20} {'':<10} "
                f"{charged:<12} {origin}{state}{why}".rstrip()
            )
            failed = failed or sound.status == "failed"
        kling, emulated = lock.charged("kling"), lock.charged("emulator")
        print(f"  charged so far: {float(kling):g} units (every attempt and take)")
        if emulated:
            print(f"  counted by the emulator: {float(emulated):g} units (never billed)")
    return ExitCode.FAILED if failed else ExitCode.OK


def cmd_voices(args: argparse.Namespace) -> ExitCode:
    """The preset voices the backend lists, beside storyboard's offline list (models.yaml),
    which `voices: {NAME: {preset: ID}}` is checked against."""
    from .backends import choose_backend
    from .status import preset_voices

    _backend_name(args)
    backend = choose_backend(args.backend)
    rows, summary = asyncio.run(preset_voices(backend))
    print(f"{'voice id':<28} {'name':<20} {'languages':<22} trial")
    for voice_id, name, languages, trial in rows:
        print(f"{voice_id:<28} {name:<20} {languages:<22} {trial}".rstrip())
    print(summary)
    return ExitCode.OK


def cmd_push(args: argparse.Namespace) -> ExitCode:
    return _sync(args, "push")


def cmd_pull(args: argparse.Namespace) -> ExitCode:
    return _sync(args, "pull")


def _sync(args: argparse.Namespace, way: str) -> ExitCode:
    from .sync import sync_board

    cache = _cache(args)
    if cache is None:
        raise UsageError(f"{way} needs a cache: --cache URL, or STORYBOARD_CACHE")
    missing = False
    for file, shown in _inputs(args.files):
        with _steps(f"{shown}: {way}") as step:
            moved = sync_board(way, file, Path(args.renders), cache, step)
        where = "in the cache" if way == "push" else "on disk"
        print(f"{shown}: {moved.summary(way + 'ed', where)} ({cache.shown})")
        missing = missing or moved.missing > 0
    return ExitCode.FAILED if missing and way == "pull" else ExitCode.OK


def cmd_emulator(args: argparse.Namespace) -> ExitCode:
    from .backends import emulator_server

    server = emulator_server(
        latency=args.latency,
        concurrency=args.concurrency,
        access_key=args.access_key or os.environ.get("KLING_ACCESS_KEY"),
        secret_key=args.secret_key or os.environ.get("KLING_SECRET_KEY"),
        api_key=os.environ.get("KLING_API_KEY"),
        clip_max_side=args.clip_max_side,
        element_latency=args.element_latency,
        image_latency=args.image_latency,
        image_concurrency=args.image_concurrency,
        image_max_side=args.image_max_side,
        voice_latency=args.voice_latency,
        sfx_latency=args.sfx_latency,
    )
    print(
        f"storyboard emulator: a Kling-compatible API on http://{args.host}:{args.port} "
        f"(latency {args.latency:g} s, {args.concurrency} concurrent tasks; "
        f"accepts {server.accepts})",
        file=sys.stderr,
        flush=True,
    )
    server.serve(args.host, args.port)
    return ExitCode.OK


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

    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument(
        "--backend",
        choices=["kling", "emulator"],
        help="default: kling when KLING_* credentials are set, else the built-in emulator",
    )
    backend.add_argument(
        "--cache",
        metavar="URL",
        help="the team's render cache: s3://BUCKET/PREFIX or file:///PATH "
        "(default: $STORYBOARD_CACHE)",
    )
    backend.add_argument(
        "--renders",
        default="renders",
        metavar="DIR",
        help="where clips and films are (default: renders)",
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

    render = commands.add_parser(
        "render",
        parents=[common, backend],
        help="submit what changed, poll, download, assemble the film",
    )
    render.add_argument(
        "--only", action="append", metavar="SCENE", help="render only this scene (repeatable)"
    )
    render.add_argument(
        "--force",
        action="append",
        metavar="SCENE",
        help="render this scene again even if nothing changed: paid again (repeatable)",
    )
    render.add_argument(
        "--stills",
        action="store_true",
        help="instead of video: one still per shot (Omni-Image, about $0.03 each) and "
        "renders/NAME.animatic.mp4",
    )
    render.add_argument("--yes", action="store_true", help="approve paid work without asking")
    render.add_argument(
        "--budget", type=float, metavar="USD", help="approve paid work up to this total"
    )
    render.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="tasks in flight at once (default 4; 1303 answers lower it to the account's)",
    )
    render.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="stop waiting for a task after this long; it keeps running and the next "
        "render re-attaches (default 3600)",
    )
    render.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between status queries (default 5 on Kling, 0.25 on the emulator)",
    )
    render.set_defaults(run=cmd_render)

    plan = commands.add_parser(
        "plan",
        parents=[common, backend],
        help="what a render would submit and why, what it costs, what was charged; "
        "nothing is sent to Kling",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument(
        "--stills", action="store_true", help="plan the stills and animatic instead of video"
    )
    plan.add_argument("--only", action="append", metavar="SCENE", help="plan only this scene")
    plan.add_argument(
        "--force", action="append", metavar="SCENE", help="count this scene as re-rendered"
    )
    plan.set_defaults(run=cmd_plan)

    export_ = commands.add_parser(
        "export",
        parents=[common],
        help="write the film's timeline for an editor: renders/NAME.otio, .fcpxml, .xml or .edl",
    )
    export_.add_argument(
        "--to",
        choices=["otio", "fcpxml", "fcp7", "edl"],
        default="otio",
        help="otio (Resolve), fcpxml (Final Cut Pro), fcp7 (FCP 7 XML: Premiere Pro), "
        "edl (CMX 3600); default: otio",
    )
    export_.add_argument(
        "--renders",
        default="renders",
        metavar="DIR",
        help="where clips and films are (default: renders)",
    )
    export_.set_defaults(run=cmd_export)

    preview = commands.add_parser(
        "preview",
        parents=[common, backend],
        help="write the HTML contact sheet renders/NAME/index.html",
    )
    preview.set_defaults(run=cmd_preview)

    status = commands.add_parser(
        "status",
        parents=[common, backend],
        help="ask Kling about unfinished tasks in the lockfile; never submits",
    )
    status.set_defaults(run=cmd_status)

    voices = commands.add_parser(
        "voices",
        parents=[backend],
        help="list Kling's preset voices, and the languages storyboard knows they speak",
    )
    voices.set_defaults(run=cmd_voices)

    push = commands.add_parser(
        "push",
        parents=[common, backend],
        help="upload the recorded clips the render cache lacks",
    )
    push.set_defaults(run=cmd_push)
    pull = commands.add_parser(
        "pull",
        parents=[common, backend],
        help="fetch the recorded clips renders/ lacks from the render cache",
    )
    pull.set_defaults(run=cmd_pull)

    emulator = commands.add_parser("emulator", help="run the offline Kling-compatible server")
    emulator.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    emulator.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    emulator.add_argument(
        "--latency",
        type=float,
        default=10.0,
        help="seconds from submitted to succeed (default: 10)",
    )
    emulator.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        help="the account's tasks in flight; more are refused with 1303 (default: 4)",
    )
    emulator.add_argument(
        "--element-latency",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds an element takes to be created (default: 1)",
    )
    emulator.add_argument(
        "--image-latency",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="seconds an Omni-Image task takes (default: 0.5)",
    )
    emulator.add_argument(
        "--image-concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="the account's images in flight; more are refused with 1303 (default: 4)",
    )
    emulator.add_argument(
        "--image-max-side",
        type=_positive_int,
        metavar="PX",
        help="draw placeholder images at most this wide or tall (default: --clip-max-side "
        "but at least 720, else true size)",
    )
    emulator.add_argument(
        "--voice-latency",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds a custom voice takes to be made (default: 1)",
    )
    emulator.add_argument(
        "--sfx-latency",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds a sound effect takes to be made (default: 1)",
    )
    emulator.add_argument(
        "--clip-max-side",
        type=_positive_int,
        metavar="PX",
        help="encode placeholder clips at most this wide or tall (faster); default: true size",
    )
    emulator.add_argument("--access-key", help="default: $KLING_ACCESS_KEY")
    emulator.add_argument("--secret-key", help="default: $KLING_SECRET_KEY")
    emulator.set_defaults(run=cmd_emulator)

    new = commands.add_parser("new", help="write a commented starter storyboard")
    new.add_argument("name", metavar="NAME", help="the storyboard's name: writes DIR/NAME.yaml")
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
    except HasErrors:
        return ExitCode.STORYBOARD_ERRORS
    except UsageError as exc:
        print(f"storyboard: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print("storyboard: interrupted", file=sys.stderr)
        return 130
    except BackendError as exc:
        print(f"storyboard: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except LockfileError as exc:  # a lockfile is input too: nothing is sent
        print(f"storyboard: error: {exc}", file=sys.stderr)
        return ExitCode.STORYBOARD_ERRORS
    except StoryboardError as exc:  # the API, the network, a lockfile
        print(f"storyboard: error: {exc}", file=sys.stderr)
        return ExitCode.FAILED
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
