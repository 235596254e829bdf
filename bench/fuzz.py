"""Long fuzz run: mutated storyboards through `validate` and `compile` (issue 10).

Uses the mutation engine of tests/test_fuzz_compile.py on the valid golden cases and
checks every outcome the same way: exit 0 or 1, no traceback or "internal error", two
compiles byte-identical, every diagnostic at a place in the file, and an accepted board
compiling to payloads Kling's rules accept; every --every'th case is compiled again in
a new process with another hash seed, and must give the same bytes. Prints how many
cases were tried, the classes of mutation and how often each ran, and every bad outcome
(its file is kept in --keep, default bench/fuzz-findings/). Exit 1 if there was one.

    .venv/bin/python bench/fuzz.py [--cases 20000] [--seed 1] [--jobs 2] [--every 50]
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.test_fuzz_compile import (  # noqa: E402
    MUTATIONS,
    Outcome,
    make_case,
    project,
    run_case,
    seeds,
)


def _work(job: tuple[int, int, int, int]) -> list[Outcome]:
    seed, start, count, every = job
    pool = seeds()
    outcomes = []
    with project() as folder:
        for index in range(start, start + count):
            rng = random.Random(f"{seed}-{index}")
            other = every > 0 and index % every == 0
            outcome = run_case(make_case(rng, pool), folder, other_process=other)
            outcome.case.seed = f"{outcome.case.seed} (case {index})"
            outcomes.append(outcome)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=ROOT / "bench" / "fuzz-findings")
    parser.add_argument(
        "--every",
        type=int,
        default=50,
        help="compile every Nth case again in a new process, with another hash seed",
    )
    args = parser.parse_args()

    chunk = 250
    jobs = [
        (args.seed, start, min(chunk, args.cases - start), args.every)
        for start in range(0, args.cases, chunk)
    ]
    started = time.perf_counter()
    classes: collections.Counter[str] = collections.Counter()
    tried = accepted = 0
    slowest = 0.0
    bad: list[Outcome] = []
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for outcomes in pool.imap_unordered(_work, jobs):
            for outcome in outcomes:
                tried += 1
                accepted += outcome.accepted
                slowest = max(slowest, outcome.seconds)
                classes.update(outcome.case.classes)
                if outcome.bad:
                    bad.append(outcome)
            print(f"\r{tried:,} cases, {len(bad)} bad", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    elapsed = time.perf_counter() - started

    print(f"cases tried: {tried:,} mutated storyboards in {elapsed:.0f} s ({args.jobs} jobs)")
    print(
        f"accepted (exit 0): {accepted:,}; refused with diagnostics (exit 1): {tried - accepted:,}"
    )
    print(f"slowest case (validate + 2 compiles): {slowest:.2f} s")
    if args.every:
        print(f"compiled again in another process (another hash seed): every {args.every}th case")
    print(f"mutation classes ({len(MUTATIONS)} structural + text-level):")
    for name, count in sorted(classes.items()):
        print(f"  {name:<22} {count:>7,}")
    print(f"bad outcomes: {len(bad)}")
    if bad:
        args.keep.mkdir(parents=True, exist_ok=True)
    for number, outcome in enumerate(bad, 1):
        kept = args.keep / f"finding-{number}.yaml"
        kept.write_text(outcome.case.text, encoding="utf-8", errors="surrogatepass")
        print(f"- {outcome.case.seed}: {', '.join(outcome.case.classes)} -> {kept}")
        for problem in outcome.bad:
            print(f"    {problem}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
