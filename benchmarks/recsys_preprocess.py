"""Preprocessing speed of the recommendation DataModule on a synthetic log of 1M interactions.

Writes a CSV and a Parquet log (users, Zipf-popular items, integer timestamps with ties) to a
temporary folder, then times ``read_interactions`` (scan, validate, sort, 5-core filter, remap,
group) and the leave-one-out datasets built on it, a few rounds each; prints the median seconds.

    OMP_NUM_THREADS=1 python benchmarks/recsys_preprocess.py [--interactions 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from datamodules.recsys.datamodule import TrainingWindows, UserHistories
from datamodules.recsys.log import read_interactions


def synthetic_log(n: int, users: int, items: int, seed: int = 0) -> pl.DataFrame:
    """``n`` interactions: uniform users, Zipf(1.1)-distributed items, timestamps over a year
    in whole hours (so many same-user ties), rows in random order."""
    rng = np.random.default_rng(seed)
    item = (rng.zipf(1.1, n) - 1) % items + 1000  # original ids need not start at 1
    return pl.DataFrame({"user": rng.integers(0, users, n), "item": item,
                         "time": rng.integers(0, 24 * 365, n) * 3600 + 1_600_000_000})


def timed(fn, rounds: int) -> tuple[float, object]:
    """Median wall seconds of ``rounds`` calls and the last result."""
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    log = synthetic_log(args.interactions, args.users, args.items)
    print(f"synthetic log: {log.height:,} interactions, {args.users:,} users, polars {pl.__version__}, "
          f"POLARS_MAX_THREADS={os.environ.get('POLARS_MAX_THREADS', 'default')} ({pl.thread_pool_size()} threads)")
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".csv", ".parquet"):
            path = Path(folder) / f"log{suffix}"
            log.write_csv(path) if suffix == ".csv" else log.write_parquet(path)
            read = lambda path=path: read_interactions(path, "user", "item", "time", k_core_min=5)  # noqa: E731
            seconds, result = timed(read, args.rounds)
            print(f"read_interactions {suffix:8s} ({path.stat().st_size / 1e6:5.1f} MB, 5-core): {seconds:6.2f} s "
                  f"-> {len(result.items):,} interactions, {result.num_users:,} users, {result.num_items:,} items")
        build = lambda: (TrainingWindows(result, args.max_len, "all"),  # noqa: E731
                         [UserHistories(result, args.max_len, s) for s in ("val", "test", "predict")])
        seconds, (train, _) = timed(build, args.rounds)
        print(f"leave-one-out datasets (max_len {args.max_len}): {seconds:6.2f} s -> {len(train):,} training windows")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"process: user {usage.ru_utime:.1f} s, system {usage.ru_stime:.1f} s, "
          f"peak RSS {usage.ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
