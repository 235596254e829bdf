"""Benchmark: pulling clips from the shared render cache (moto's S3 server on 127.0.0.1).

Puts N clips of SIZE MB into a bucket, then, side by side in one run and interleaved:
- `storyboard pull`'s path (`Cache.get_many`: each clip streamed to a temp file,
  hashed, checked, fsynced and renamed, four at a time);
- a bare loop of obstore gets streamed to files (the floor the library sets).
Prints the time ratio (target <= 1.2) and the peak RSS growth of a pull in a fresh
process (target < 64 MB).

    .venv/bin/python bench/cache.py [--clips 20] [--mb 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.cache import CHUNK, Cache, open_cache  # noqa: E402

BUCKET = "bench-renders"


def _start_s3() -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server in a process of its own, as a real store would be: its work is
    not charged to the process that pulls."""
    import socket

    import boto3
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(endpoint, timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    return server, f"s3://{BUCKET}/bench"


def _fill(cache: Cache, folder: Path, clips: int, mb: int) -> list[str]:
    import hashlib

    shas = []
    for n in range(clips):
        path = folder / f"clip{n}.mp4"
        path.write_bytes(os.urandom(mb * 1_000_000))
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        cache.put(sha, path)
        path.unlink()
        shas.append(sha)
    return shas


def _pull(cache: Cache, shas: list[str], folder: Path) -> float:
    start = time.perf_counter()
    for _, fetched in cache.get_many((sha, folder / f"{sha[:12]}.mp4") for sha in shas):
        assert fetched is not None
    elapsed = time.perf_counter() - start
    for path in folder.glob("*.mp4"):
        path.unlink()
    return elapsed


def _bare(cache: Cache, shas: list[str], folder: Path) -> float:
    import obstore

    start = time.perf_counter()
    for sha in shas:
        result = obstore.get(cache._store, Cache.key(sha))  # noqa: SLF001
        with (folder / f"{sha[:12]}.bin").open("wb") as out:
            for chunk in result.stream(min_chunk_size=CHUNK):
                out.write(memoryview(chunk))
    elapsed = time.perf_counter() - start
    for path in folder.glob("*.bin"):
        path.unlink()
    return elapsed


def _child(url: str, shas: list[str], folder: Path) -> None:
    """In a fresh process: the peak RSS growth of pulling every clip."""
    cache = open_cache(url)
    cache.has(shas[0])  # load the library and open the connection first
    before = _peak_rss_mb()
    for _, fetched in cache.get_many((sha, folder / f"{sha[:12]}.mp4") for sha in shas):
        assert fetched is not None
    print(before, _peak_rss_mb())


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM): unlike ru_maxrss, not inherited from
    the parent that forked it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("URL", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], sys.stdin.read().split(), Path(args.child[1]))
        return 0

    server, url = _start_s3()
    try:
        cache = open_cache(url)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            shas = _fill(cache, folder, args.clips, args.mb)
            pulls, bares = [], []
            for _ in range(args.repeat):
                bares.append(_bare(cache, shas, folder))
                pulls.append(_pull(cache, shas, folder))
            pull, bare = statistics.median(pulls), statistics.median(bares)
            child = subprocess.run(
                [sys.executable, __file__, "--child", url, str(folder)],
                input="\n".join(shas),
                capture_output=True,
                text=True,
                check=True,
                env=os.environ,
            )
            base, peak = map(float, child.stdout.strip().splitlines()[-1].split())
            growth = peak - base
    finally:
        server.terminate()
        server.wait()
    total = args.clips * args.mb
    print(f"pull of {args.clips} clips x {args.mb} MB ({total} MB) from moto's S3 server")
    print(f"storyboard pull (get_many):  {pull:6.2f} s   ({total / pull:6.1f} MB/s)")
    print(f"bare obstore get loop:       {bare:6.2f} s   ({total / bare:6.1f} MB/s)")
    print(f"ratio pull/bare:             {pull / bare:6.2f}   (target <= 1.2)")
    print(f"peak RSS growth of a pull:   {growth:6.1f} MB  (target < 64 MB; {base:.0f} MB before)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
