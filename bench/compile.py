"""Benchmark: compiling a large storyboard against a bare libyaml load of the same file.

Generates a realistic multi-shot storyboard (1,000 scenes x 6 shots by default) with
vars, local images and elements referenced from the prompts, checks that it compiles
without errors, then times, interleaved and repeated, (a) `compile_file` and (b)
`yaml.load(..., Loader=yaml.CSafeLoader)`. Both timings include reading the file, and
each run starts after `gc.collect()`. The median of each and their ratio are printed;
the target is compile/yaml <= 5. `--stages` also times each pipeline stage alone.

    .venv/bin/python bench/compile.py [--scenes N] [--shots N] [--repeat N] [--out DIR] [--stages]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.load import load  # noqa: E402
from compiler.lower import lower  # noqa: E402
from compiler.pipeline import CompileResult, compile_file  # noqa: E402
from compiler.price import estimate  # noqa: E402
from compiler.prompts import render_scene  # noqa: E402
from compiler.resolve import resolve  # noqa: E402
from compiler.rules import check_scene  # noqa: E402
from compiler.validate import check_schema  # noqa: E402

YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SHOT_SECONDS = 2  # 6 shots x 2 s = a 12 s task

VARS = {
    "keeper": "an old keeper in a yellow raincoat",
    "town": "the fishing town of Saltmere",
    "weather": "a grey drizzle",
    "hour": "late afternoon",
}
# name -> (file name, width, height, colour); every side >= 300 px, aspects within 1:2.5-2.5:1.
IMAGES = {
    "coast": ("coast.png", 640, 360, (70, 110, 150)),
    "lamp": ("lamp.png", 320, 480, (230, 190, 60)),
    "harbour": ("harbour.png", 400, 400, (40, 80, 60)),
}
ELEMENTS = {"keeper": 829301938475, "gull": 829301938476, "boat": 829301938477}
SCENE_WEATHER = ["a hard frost", "thick sea fog", "a bright cold wind", "steady rain"]

# Phrases a shot is built from; `{{ ... }}` placeholders are filled in by the compiler.
OPENINGS = [
    "Wide shot: {{ element.keeper }} crosses the quay of {{ town }} in {{ hour }} light",
    "Close-up on {{ element.gull }} perched on a bollard, feathers lifting in {{ weather }}",
    "Slow dolly in over {{ image.coast }}, waves folding white against the black rocks",
    "Handheld: {{ keeper }} climbs the spiral stairs, lantern light sliding on the walls",
    "Low angle on {{ element.boat }} as it noses out past the breakwater into {{ weather }}",
    "Over-the-shoulder: {{ element.keeper }} studies {{ image.harbour }} through salt glass",
    "Macro shot of {{ image.lamp }}, the brass housing ticking as it warms",
    "Aerial pull back from {{ image.coast }} to reveal all of {{ town }} under {{ weather }}",
    "Tracking shot along the harbour wall, nets drying, {{ element.gull }} wheeling overhead",
    "Static frame: {{ element.boat }} rocks at its mooring while {{ keeper }} coils a rope",
]
MIDDLES = [
    "the camera drifts left and holds on the horizon",
    "rain beads on the lens and the focus racks to the background",
    "a shaft of light breaks through the cloud and crosses the water",
    "the sound of rigging and distant bells fills the frame",
    "muted teal and amber grade, soft film grain, shallow depth of field",
    "the wind snaps a flag and the shadows shorten",
    "a door bangs somewhere below and the keeper turns toward it",
    "spray bursts over the wall in slow motion",
]
CLOSINGS = [
    "then {{ image.lamp }} flares and the beam sweeps out to sea.",
    "ending on {{ element.keeper }} in silhouette against the sky.",
    "as {{ element.gull }} lifts off and leaves the frame.",
    "cut on the moment the bell rings in {{ town }}.",
    "the shot settles on {{ image.harbour }}, quiet and still.",
    "the keeper's breath fogs in {{ weather }} as the light fades.",
    "hold for a beat, then a gentle fade to the next shot.",
]


def write_images(folder: Path) -> dict[str, str]:
    """Write the small valid PNGs the storyboard references; return name -> relative path."""
    assets = folder / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (file_name, width, height, colour) in IMAGES.items():
        target = assets / file_name
        if not target.exists():
            Image.new("RGB", (width, height), colour).save(target, format="PNG")
        paths[name] = f"assets/{file_name}"
    return paths


def shot_prompt(rng: random.Random, scene: int, shot: int) -> str:
    """One shot's template: ~150-300 characters, unique to (scene, shot)."""
    text = f"Scene {scene}, shot {shot}. {rng.choice(OPENINGS)}; {rng.choice(MIDDLES)}"
    if rng.random() < 0.6:
        text += f", {rng.choice(MIDDLES)}"
    return f"{text}, {rng.choice(CLOSINGS)}"


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def storyboard_text(scenes: int, shots: int, images: dict[str, str], seed: int = 1) -> str:
    """The YAML of a storyboard with `scenes` multi-shot scenes of `shots` shots each."""
    if not 1 <= shots <= 6:
        raise ValueError(f"a multi-shot scene has 1-6 shots, not {shots}")
    seconds = max(SHOT_SECONDS, -(-3 // shots))  # a task lasts at least 3 s
    rng = random.Random(seed)
    lines = [
        "# yaml-language-server: $schema=../schemas/storyboard.schema.json",
        f"# Generated by bench/compile.py: {scenes} scenes x {shots} shots.",
        "storyboard: 1",
        "title: The Lighthouse, extended cut",
        "model: kling-v3-omni",
        "mode: pro",
        'aspect_ratio: "16:9"',
        "sound: off",
        "vars:",
        *(f"  {name}: {value}" for name, value in VARS.items()),
        "refs:",
        "  images:",
        *(f"    {name}: {path}" for name, path in images.items()),
        "  elements:",
        *(f"    {name}: {element_id}" for name, element_id in ELEMENTS.items()),
        "scenes:",
    ]
    for n in range(1, scenes + 1):
        lines.append(f"  - id: scene-{n:05d}")
        if n % 7 == 0:
            lines.append(f"    vars: {{weather: {rng.choice(SCENE_WEATHER)}}}")
        if n % 11 == 0:
            lines.append("    mode: std")
        if n % 13 == 0:
            lines.append("    sound: on")
        lines.append("    shots:")
        for s in range(1, shots + 1):
            prompt = shot_prompt(rng, n, s)
            if s % 3 == 0:  # some prompts as folded block scalars, as people write long text
                lines += ["      - prompt: >-", f"          {prompt}"]
            else:
                lines.append(f"      - prompt: {_quoted(prompt)}")
            lines.append(f"        duration: {seconds}")
        lines.append("")
    return "\n".join(lines)


def generate_storyboard(folder: Path, scenes: int = 1000, shots: int = 6, seed: int = 1) -> Path:
    """Write `bench.yaml` and its images into `folder`; return the storyboard's path."""
    folder.mkdir(parents=True, exist_ok=True)
    images = write_images(folder)
    path = folder / "bench.yaml"
    path.write_text(storyboard_text(scenes, shots, images, seed), encoding="utf-8")
    return path


def check_compiles(path: Path) -> CompileResult:
    """Compile once and fail loudly on any error; warnings are fine."""
    result = compile_file(path)
    if not result.ok:
        errors = [d for d in result.diagnostics if d.is_error]
        shown = "\n".join(d.headline() for d in errors[:10])
        raise SystemExit(f"generated storyboard does not compile ({len(errors)} errors):\n{shown}")
    return result


def time_compile(path: Path) -> float:
    gc.collect()  # every run starts from a collected heap
    start = time.perf_counter()
    compile_file(path)
    return time.perf_counter() - start


def time_yaml(path: Path) -> float:
    gc.collect()
    start = time.perf_counter()
    yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
    return time.perf_counter() - start


def measure(path: Path, repeat: int = 5) -> dict[str, list[float]]:
    """Time both, interleaved, after one untimed warm-up of each; seconds per run."""
    runs: dict[str, Callable[[Path], float]] = {"compile": time_compile, "yaml": time_yaml}
    for fn in runs.values():
        fn(path)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            times[name].append(fn(path))
    return times


def time_stages(path: Path) -> dict[str, float]:
    """One pass through the pipeline's stages, each timed on its own (seconds)."""
    clock = time.perf_counter
    times: dict[str, float] = {}
    gc.collect()
    start = clock()
    doc, _ = load(path)
    times["load"] = clock() - start
    start = clock()
    _, broken = check_schema(doc)
    times["check_schema"] = clock() - start
    start = clock()
    board, _ = resolve(doc, path, broken)
    times["resolve"] = clock() - start
    assert board is not None
    start = clock()
    rendered = [render_scene(board, scene)[0] for scene in board.scenes]
    times["render_scene"] = clock() - start
    start = clock()
    for rs in rendered:
        assert rs is not None
        check_scene(board, rs)
    times["check_scene"] = clock() - start
    start = clock()
    for rs in rendered:
        assert rs is not None
        lower(rs)
        video = board.refs.videos.get(rs.scene.video.ref) if rs.scene.video else None
        estimate(rs.scene, video, board.usd_per_unit)
    times["lower+estimate"] = clock() - start
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--shots", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the storyboard here (e.g. bench/out)")
    parser.add_argument("--stages", action="store_true", help="also time each stage alone")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="storyboard-bench-") as tmp:
        folder = args.out or Path(tmp)
        path = generate_storyboard(folder, args.scenes, args.shots)
        size = path.stat().st_size
        result = check_compiles(path)
        times = measure(path, args.repeat)
        stages = [time_stages(path) for _ in range(args.repeat)] if args.stages else []

    compile_s = statistics.median(times["compile"])
    yaml_s = statistics.median(times["yaml"])
    print(f"storyboard: {path} ({size:,} bytes)")
    print(
        f"scenes: {len(result.tasks):,} x {args.shots} shots = "
        f"{len(result.tasks) * args.shots:,} shots; {len(result.diagnostics)} warnings"
    )
    print(f"runs: {args.repeat} each, interleaved, medians; both include reading the file")
    print(f"compile_file:          {compile_s:8.3f} s")
    print(f"yaml.load(CSafeLoader): {yaml_s:7.3f} s")
    print(f"ratio compile/yaml:    {compile_s / yaml_s:8.2f}  (target <= 5, aim <= 3)")
    if stages:
        print("stages (medians; the rest of compile_file is diagnostics and bookkeeping):")
        for name in stages[0]:
            print(f"  {name:16s} {statistics.median(run[name] for run in stages):8.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
