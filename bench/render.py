"""Benchmark: how well a render keeps the account's slots full, and download memory.

Starts `storyboard emulator` as a real server on 127.0.0.1 (account concurrency 4, a
fixed task latency), then renders a generated N-scene storyboard through it twice, side
by side in one run:
  (a) client --concurrency 4 (the account's limit),
  (b) client --concurrency 8 (so the account answers 1303 and the client must adapt).
For each it prints makespan / (ceil(N / 4) x latency): 1.00 is a perfectly packed account;
the targets are <= 1.05 and <= 1.15. Then it downloads a 200 MB body from the emulator
and prints the peak RSS growth of this process (target < 64 MB).

    .venv/bin/python bench/render.py [--scenes 24] [--latency 4] [--megabytes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.auth import ApiKeyAuth  # noqa: E402
from compiler.client import KlingClient  # noqa: E402
from compiler.execute import Executor  # noqa: E402
from compiler.lockfile import Lockfile  # noqa: E402
from compiler.pipeline import compile_file  # noqa: E402
from compiler.plan import plan  # noqa: E402

ACCOUNT = 4
KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}"}  # the control endpoints take the API's credentials


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(latency: float) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "compiler",
            "emulator",
            "--port",
            str(port),
            "--latency",
            str(latency),
            "--concurrency",
            str(ACCOUNT),
            "--clip-max-side",
            "160",
        ],
        cwd=ROOT,
        env={**os.environ, "KLING_API_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/_emulator/stats", headers=AUTH, timeout=1)
            return process, url
        except httpx.TransportError:
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit("the emulator did not start") from None
            time.sleep(0.1)


def _board(folder: Path, scenes: int, tag: str) -> Path:
    lines = ["storyboard: 1", "mode: std", "scenes:"]
    for i in range(scenes):
        lines += [
            f"  - id: s{i:03d}",
            f'    prompt: "Run {tag}, scene {i}: waves roll onto the shingle."',
            "    duration: 3",
        ]
    path = folder / f"bench-{tag}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def _makespan(url: str, board: Path, concurrency: int) -> float:
    result = compile_file(board, board.name)
    assert result.ok, [d.headline() for d in result.diagnostics]
    client = KlingClient(url, ApiKeyAuth(KEY))
    lock = Lockfile.for_storyboard(board)
    clips = board.parent / "renders" / board.stem
    planned = plan(result.tasks, lock, "kling", clips)
    executor = Executor(
        client,
        lock,
        base_dir=board.parent,
        clips_dir=clips,
        backend="kling",
        concurrency=concurrency,
        poll_interval=0.05,
    )
    start = time.perf_counter()
    results = await executor.run(planned)
    elapsed = time.perf_counter() - start
    await client.aclose()
    bad = [r for r in results if r.outcome != "rendered"]
    if bad:
        raise SystemExit(f"{len(bad)} scene(s) did not render: {bad[0].error}")
    return elapsed


async def _download_rss(url: str, megabytes: int, folder: Path) -> tuple[float, int]:
    client = KlingClient(url, ApiKeyAuth(KEY))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = await client.download(f"{url}/_emulator/blob?bytes={megabytes << 20}", folder / "b.bin")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await client.aclose()
    return (after - before) / 1024, got.bytes  # ru_maxrss is in KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--latency", type=float, default=4.0)
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()

    server, url = _start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory(prefix="storyboard-bench-") as tmp:
            folder = Path(tmp)
            (folder / ".git").mkdir()
            # The RSS figure first, before the renders grow the heap.
            growth, size = asyncio.run(_download_rss(url, args.megabytes, folder))
            ideal = math.ceil(args.scenes / ACCOUNT) * args.latency
            print(f"emulator: account concurrency {ACCOUNT}, latency {args.latency:g} s")
            print(
                f"scenes: {args.scenes}; ideal makespan ceil(N/{ACCOUNT}) x latency = {ideal:g} s"
            )
            for concurrency, target in ((ACCOUNT, 1.05), (2 * ACCOUNT, 1.15)):
                board = _board(folder, args.scenes, f"c{concurrency}")
                seconds = asyncio.run(_makespan(url, board, concurrency))
                print(
                    f"--concurrency {concurrency}: makespan {seconds:6.2f} s  "
                    f"ratio {seconds / ideal:.3f}  (target <= {target})"
                )
            stats = httpx.get(url + "/_emulator/stats", headers=AUTH, timeout=5).json()
            creates = stats["total_creates"]
            print(
                f"creates: {creates} for {2 * args.scenes} scenes (duplicates: "
                f"{sum(n - 1 for n in stats['creates'].values())})"
            )
            print(
                f"download of {size / 1e6:.0f} MB: peak RSS growth {growth:.1f} MiB "
                "(target < 64 MB)"
            )
    finally:
        server.kill()
        server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
