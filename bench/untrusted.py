"""Benchmark: peak memory of `storyboard render` and `preview` given a decompression-bomb image.

A storyboard whose first-frame image is a 13,000 x 13,000 PNG of one colour (a few hundred
kB on disk, 169 megapixels, ~500 MB once decoded) must be refused with a diagnostic
(exit 1) before anything decodes it. Each command runs as a fresh child process (`python
-m compiler`, no KLING_* credentials, so the built-in emulator) and its peak RSS is read
from the kernel (`os.wait4` rusage of that child); the same project with a normal 1280 x
720 image, rendered for real, is the comparison. Prints each run's exit code and peak RSS
(target < 300 MB for every run).

This process imports nothing heavy (the images are drawn by a child too): on Linux a
child's peak RSS is at least its parent's size when it was spawned.

    .venv/bin/python bench/untrusted.py [--side 13000] [--target-mb 300]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler import __version__  # noqa: E402  (the package only: nothing heavy)

BOARD = """\
storyboard: 1
title: Untrusted image
mode: std
aspect_ratio: "16:9"
refs:
  images:
    coast: coast.png
scenes:
  - id: opening
    first_frame: coast
    prompt: "Dolly in over {{ image.coast }} at dusk."
    duration: 3
  - id: coda
    prompt: "The beam sweeps the sea."
    duration: 3
"""

# Drawn in a child: a 169-megapixel image would otherwise stay in this process's peak,
# which every later child inherits as its own starting point.
DRAW = """\
import sys
from PIL import Image
width, height, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if width * height > 40_000_000:
    Image.new("L", (width, height), 90).save(path, optimize=True)  # one colour: tiny PNG
else:
    across = Image.linear_gradient("L").resize((width, height))
    down = Image.linear_gradient("L").rotate(90).resize((width, height))
    Image.merge("RGB", (across, down, Image.new("L", (width, height), 90))).save(path)
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLING_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _project(folder: Path, width: int, height: int) -> Path:
    folder.mkdir()
    (folder / ".git").mkdir()
    (folder / "film.yaml").write_text(BOARD, encoding="utf-8")
    subprocess.run(
        [sys.executable, "-c", DRAW, str(width), str(height), str(folder / "coast.png")],
        check=True,
    )
    return folder


def _measure(project: Path, command: str) -> tuple[int, float, str]:
    """Run `storyboard COMMAND film.yaml` in a fresh child: exit code, peak RSS (MB), a note."""
    log = project / f".{command}.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "compiler", command, "film.yaml"],
            cwd=project,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text("utf-8", errors="replace")
    note = next((line.strip() for line in text.splitlines() if "error[" in line), "")
    if not note and child.returncode != 0:
        note = (text.strip().splitlines() or [""])[-1]
    return child.returncode, usage.ru_maxrss / 1024, note  # ru_maxrss is in kB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=13_000, help="the bomb's width and height")
    parser.add_argument("--target-mb", type=float, default=300.0)
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        print("untrusted.py reads peak RSS as Linux reports it (kB); other systems differ")
    cases = [
        (f"{args.side:,} x {args.side:,}", args.side, args.side),
        ("1280 x 720", 1280, 720),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="storyboard-bench-") as tmp:
        for index, (label, width, height) in enumerate(cases):
            project = _project(Path(tmp) / f"case{index}", width, height)
            size = (project / "coast.png").stat().st_size
            for command in ("render", "preview"):
                code, peak, note = _measure(project, command)
                rows.append((f"{label} PNG ({size / 1000:,.0f} kB)", command, code, peak, note))
    spawner = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"storyboard {__version__}: peak RSS of each command as a fresh child process")
    print(f"{'first-frame image':<30} {'command':<8} {'exit':>4} {'peak RSS':>10}  target")
    for label, command, code, peak, note in rows:
        verdict = "ok" if peak < args.target_mb else "OVER"
        print(
            f"{label:<30} {command:<8} {code:>4} {peak:>7.1f} MB  < {args.target_mb:g} MB {verdict}"
        )
        if note:
            print(f"{'':<30} {note[:160]}")
    bomb_codes = [code for label, _, code, _, _ in rows[:2]]
    print(
        f"the {args.side:,}-pixel-square image: exit codes {bomb_codes} (expected [1, 1]: "
        "refused with a diagnostic)"
    )
    print(f"(this spawning process peaked at {spawner:.1f} MB; no child can report less)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
