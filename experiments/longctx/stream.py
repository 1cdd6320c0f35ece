"""Streaming a long input through a trained checkpoint: tokens/s and peak memory vs stream length.

    OMP_NUM_THREADS=1 python experiments/longctx/stream.py runs/longctx/bench/mac/csv/version_0/checkpoints/last.ckpt \\
        --tokens 16384 2000000 --chunk 2048

For each length N, the shipped Shakespeare corpus is repeated into a file of N - 1 bytes (the byte
tokenizer adds the leading end-of-document token) and ``titans-stream`` reads it in a fresh process
(its output in ``<out>/stream_<N>.log``), so each peak RSS belongs to one stream. Prints tokens/s,
peak and final RSS, the largest state and the running loss per length, then the ratio of each peak
to the shortest stream's (the target: a 2M stream within 10% of the 16K one). Writes
``<out>/stream.json``. ``--max-seconds`` stops a stream early (it then reports the tokens it
reached).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from titans_lightning.runs import run_titans

REPO = Path(__file__).resolve().parents[2]


def write_input(path: Path, size: int, corpus: Path) -> None:
    """``size`` bytes of the corpus files, repeated as often as needed (streamed, not held)."""
    files = sorted(corpus.rglob("*.txt")) if corpus.is_dir() else [corpus]
    written = 0
    with open(path, "wb") as out:
        while written < size:
            for file in files:
                data = file.read_bytes()[: size - written]
                out.write(data)
                written += len(data)
                if written >= size:
                    return


def stream_once(checkpoint: Path, data: Path, chunk: int, tokens: int, max_seconds: float, out: Path) -> dict:
    """Run ``titans-stream`` on ``data`` in a fresh process; its JSON summary."""
    report = out / f"stream_{tokens}.json"
    args = [str(checkpoint), str(data), "--chunk", str(chunk), "--report-every", str(max(tokens // 8, chunk)),
            "--json", str(report)]
    try:
        run_titans(args, module="titans_lightning.streaming", cwd=REPO, log=out / f"stream_{tokens}.log",
                   timeout=max_seconds)
    except subprocess.TimeoutExpired:
        print(f"  {tokens:,} tokens: stopped after {max_seconds:.0f} s", flush=True)
        return {"tokens": 0, "stopped": True}
    return json.loads(report.read_text())["summary"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--tokens", type=int, nargs="+", default=[16384, 2_000_000])
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--corpus", type=Path, default=REPO / "data/text/shakespeare")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="wall-time cap of each stream")
    parser.add_argument("--out", type=Path, default=Path("runs/longctx/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for tokens in args.tokens:
        data = args.out / f"stream_{tokens}.txt"
        write_input(data, tokens - 1, args.corpus)
        summary = stream_once(args.checkpoint, data, args.chunk, tokens, args.max_seconds, args.out)
        data.unlink()
        results.append({"requested": tokens, **summary})
    base = next((r for r in results if r.get("peak_rss_mib")), None)
    print("\n| tokens | seconds | tokens/s | peak RSS (MiB) | vs first | final RSS (MiB) | state elements "
          "| loss | bpb |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if not r.get("peak_rss_mib"):
            print(f"| {r['requested']:,} | stopped | | | | | | | |")
            continue
        print(f"| {r['tokens']:,} | {r['seconds']:.0f} | {r['tokens_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} | "
              f"{r['peak_rss_mib'] / base['peak_rss_mib']:.3f} | {r['rss_mib']:,.0f} | {r['state_numel']:,} | "
              f"{r['loss']:.3f} | {r['bpb']:.3f} |")
    (args.out / "stream.json").write_text(json.dumps({"checkpoint": str(args.checkpoint), "chunk": args.chunk,
                                                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
