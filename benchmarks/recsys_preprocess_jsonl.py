"""Preprocessing speed of the recommendation reader on JSON lines .gz: 10M Amazon-style reviews.

Writes ``--interactions`` synthetic reviews as gzipped JSON lines (``reviewerID``, ``asin``,
``overall``, ``unixReviewTime`` as the Amazon dumps name them, plus ``verified``, ``reviewTime``,
``summary`` and, with ``--review-chars``, a ``reviewText`` that the reader skips) to a temporary
folder; users uniform, items Zipf-popular (as ``recsys_preprocess.py``), day-resolution times with
ties. Then, in a fresh process so that its peak resident memory is the reader's alone, times
``read_interactions``: decompress and parse, validate, 5-core filter, remap and group into
per-user sequences. The target (issue 23): 10M interactions in <= 60 s on one core, peak RSS
<= 4 GB.

    OMP_NUM_THREADS=1 POLARS_MAX_THREADS=1 python benchmarks/recsys_preprocess_jsonl.py [--interactions 10000000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.recsys_preprocess import synthetic_log  # noqa: E402
from datamodules.recsys.log import read_interactions  # noqa: E402

SUMMARIES = ["Five Stars", "Great product", "Works as described", "Not what I expected", "Love it",
             "Smells nice but does not last", "Good value for the money", "Would buy again"]


def reviews_of(log: pl.DataFrame, review_chars: int) -> pl.DataFrame:
    """Amazon-style review records of ``synthetic_log`` interactions (times cut to the day)."""
    day = (pl.col("time") // 86400) * 86400
    reviews = log.select(
        pl.format("A{}", pl.col("user").cast(pl.String).str.zfill(13)).alias("reviewerID"),
        pl.format("B{}", pl.col("item").cast(pl.String).str.zfill(9)).alias("asin"),
        (pl.col("user") % 5 + 1).cast(pl.Float64).alias("overall"),
        (pl.col("item") % 3 > 0).alias("verified"),
        pl.from_epoch(day, time_unit="s").dt.strftime("%m %d, %Y").alias("reviewTime"),
        pl.lit(pl.Series(SUMMARIES)).gather(pl.col("item") % len(SUMMARIES)).alias("summary"),
        day.alias("unixReviewTime"))
    if review_chars:
        reviews = reviews.with_columns(pl.col("summary").str.pad_end(review_chars, "x").alias("reviewText"))
    return reviews


def write_reviews(path: Path, n: int, users: int, items: int, review_chars: int, chunk: int = 1_000_000) -> int:
    """Write ``n`` reviews as gzipped JSON lines, a chunk at a time; returns the bytes of one line on average."""
    log, size = synthetic_log(n, users, items), 0
    with gzip.open(path, "wb", compresslevel=1) as file:  # level 1 to write fast; reading is as fast at any level
        for start in range(0, n, chunk):
            text = reviews_of(log.slice(start, chunk), review_chars).write_ndjson().encode()
            file.write(text)
            size += len(text)
    return size // n


def memory_gb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, from /proc (Linux).

    Not ``ru_maxrss``: after fork and exec it keeps the parent's peak (here, the generated data)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1e6
    raise RuntimeError(f"no {field} in /proc/self/status")


def read_once(path: str) -> None:
    """The child process: time one ``read_interactions`` and print its figures as one JSON line
    (``before_gb``: resident memory before reading, the interpreter and its imports)."""
    before = memory_gb("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    log = read_interactions(path, "reviewerID", "asin", "unixReviewTime", k_core_min=5)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "peak_rss_gb": memory_gb("VmHWM"), "before_gb": before,
                      "threads": pl.thread_pool_size(), "interactions": len(log.items), "users": log.num_users,
                      "items": log.num_items}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=None, help="default: interactions / 10")
    parser.add_argument("--items", type=int, default=None, help="default: interactions / 50")
    parser.add_argument("--review-chars", type=int, default=0, help="add a reviewText of this many characters")
    parser.add_argument("--read", help=argparse.SUPPRESS)  # the child process: read this file
    args = parser.parse_args()
    if args.read:
        return read_once(args.read)
    users, items = args.users or args.interactions // 10, args.items or args.interactions // 50
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "reviews.jsonl.gz"
        line = write_reviews(path, args.interactions, users, items, args.review_chars)
        print(f"synthetic reviews: {args.interactions:,} interactions, {users:,} users, {items:,} items; "
              f"{path.stat().st_size / 1e6:,.0f} MB gzipped ({line} bytes a line); polars {pl.__version__}, "
              f"POLARS_MAX_THREADS={os.environ.get('POLARS_MAX_THREADS', 'default')}")
        out = subprocess.run([sys.executable, __file__, "--read", str(path)], capture_output=True, text=True,
                             check=True).stdout
    f = json.loads(out.strip().splitlines()[-1])
    print(f"read_interactions .jsonl.gz (5-core, {f['threads']} polars thread(s)): {f['seconds']:.1f} s wall, "
          f"{f['cpu_s']:.1f} s CPU; peak RSS {f['peak_rss_gb']:.2f} GB ({f['before_gb']:.2f} GB before reading) "
          f"-> {f['interactions']:,} interactions, {f['users']:,} users, {f['items']:,} items")


if __name__ == "__main__":
    main()
