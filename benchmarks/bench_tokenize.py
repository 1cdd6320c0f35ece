"""Tokenization speed and peak memory of the text DataModule's cache build on a generated corpus.

Writes a JSON lines corpus of ``--sizes`` megabytes (FineWeb-like records: prose of Zipf-distributed
pseudo-words, sentences, paragraphs, documents of 1-8 KB) to a temporary folder, trains a byte-level
BPE ``tokenizer.json`` on its first ``--train-mb`` MB (not timed), then builds the token cache with
``--data.tokenizer`` set to that file in a fresh process pinned to ``--cores`` cores: hashing, the
survey pass (read, parse, count), and the encoding pass (read, parse, encode on every core, write).
Prints per size: seconds per phase, encoding MB/s (text bytes), MB per CPU-second (what a shared,
loaded machine does not change much) and the process's peak resident memory, which should not grow
with the corpus; then, side by side, the tokenizers library alone encoding the corpus's first
``--library-mb`` MB from memory: the floor no pipeline can pass.

    python -m benchmarks.bench_tokenize --sizes 250 1000 --cores 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SYLLABLES = ["ka", "to", "ri", "men", "sa", "lo", "ve", "an", "tre", "ul", "po", "ni", "der", "is", "qu", "ash",
             "el", "mo", "th", "or", "ing", "ed", "st", "wh", "ea", "ou", "br", "cl"]


def prose_pool(chars: int, seed: int = 0) -> str:
    """About ``chars`` characters of prose over a 50,000-word Zipf vocabulary: capitalised
    sentences of 5-30 words with commas, paragraphs of 2-8 sentences."""
    rng = np.random.default_rng(seed)
    words = np.array(["".join(rng.choice(SYLLABLES, rng.integers(1, 5))) for _ in range(50_000)])
    count = chars // 6
    drawn = words[(rng.zipf(1.15, count) - 1) % len(words)]
    lengths = rng.integers(5, 31, count // 5)
    out, start = [], 0
    for k, n in enumerate(lengths):
        sentence = drawn[start:start + n]
        if sentence.size < n:
            break
        start += n
        text = " ".join(sentence)
        comma = text.find(" ", len(text) // 2)
        text = text[:comma] + "," + text[comma:] if comma > 0 else text
        out.append(text[0].upper() + text[1:] + (".\n\n" if k % rng.integers(2, 9) == 0 else ". "))
    return "".join(out)


def write_corpus(path: Path, megabytes: int, seed: int = 0) -> int:
    """A JSON lines file of about ``megabytes`` MB: documents are random 1-8 KB slices of a 32 MB pool."""
    pool = prose_pool(32_000_000, seed)
    rng = np.random.default_rng(seed + 1)
    written, row = 0, 0
    with open(path, "w", encoding="utf-8") as file:
        while written < megabytes * 1_000_000:
            size = int(rng.integers(1000, 8000))
            start = int(rng.integers(0, len(pool) - size))
            line = json.dumps({"id": row, "text": pool[start:start + size], "url": f"https://example.org/{row}"})
            file.write(line + "\n")
            written += len(line) + 1
            row += 1
    return written


def train_tokenizer(corpus: Path, out: Path, megabytes: int, vocab_size: int) -> None:
    """A byte-level BPE (GPT-2 style, ``<|endoftext|>``) trained on the first ``megabytes`` MB."""
    from datamodules.text.tokenizer import BPETokenizer

    def texts():
        seen = 0
        with open(corpus, encoding="utf-8") as file:
            for line in file:
                text = json.loads(line)["text"]
                seen += len(text)
                yield text
                if seen > megabytes * 1_000_000:
                    return

    BPETokenizer.train(texts(), vocab_size).save(out)


CHILD = """
import json, resource, sys, time
from datamodules.text.cache import build_cache
from datamodules.text.corpus import make_plan
from datamodules.text.datamodule import TextDataModule

corpus, tokenizer, cache = sys.argv[1:4]
start = time.perf_counter()
dm = TextDataModule(path=corpus, tokenizer=tokenizer, cache_dir=cache)
folder = dm.cache_folder()
hashed = time.perf_counter()
plan = make_plan(dm.sources(), dm.val_fraction, dm.test_fraction, dm.split_seed)
surveyed = time.perf_counter()
before = resource.getrusage(resource.RUSAGE_SELF)
build_cache(folder, plan, dm.tokenizer_kind, dm.bpe_vocab_size, log=lambda line: None)
done = time.perf_counter()
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
tokens = sum(s["tokens"] for s in json.loads((folder / "meta.json").read_text())["splits"].values())
print(json.dumps({"hash_s": hashed - start, "survey_s": surveyed - hashed, "encode_s": done - surveyed,
                  "encode_cpu_s": cpu,
                  "text_bytes": plan.bytes, "documents": sum(s.documents for s in plan.surveys.values()),
                  "tokens": tokens, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


# The floor: the tokenizers library alone (encode_batch_fast, no reading, no writing) on the
# first megabytes of the corpus, already in memory.
LIBRARY = """
import json, sys, time
from tokenizers import Tokenizer
corpus, tokenizer, megabytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts, size = [], 0
with open(corpus, encoding="utf-8") as file:
    for line in file:
        texts.append(json.loads(line)["text"])
        size += len(texts[-1].encode("utf-8"))
        if size >= megabytes * 1_000_000:
            break
encoder = Tokenizer.from_file(tokenizer)
start = time.perf_counter()
encoder.encode_batch_fast(texts, add_special_tokens=False)
print(json.dumps({"text_bytes": size, "encode_s": time.perf_counter() - start}))
"""


def child(script: str, args: list, cores: int) -> dict:
    """Run ``script`` with ``args`` in a fresh process pinned to the first ``cores`` cores; the JSON
    of its last line."""
    env = {**os.environ, "RAYON_NUM_THREADS": str(cores), "POLARS_MAX_THREADS": str(cores),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "true"}
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    result = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env,
                            capture_output=True, text=True, check=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, allowed))
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(corpus: Path, tokenizer: Path, cache: Path, cores: int) -> dict:
    """Build the cache in a fresh process pinned to the first ``cores`` cores; its timings and peak RSS."""
    return child(CHILD, [corpus, tokenizer, cache], cores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000], help="corpus sizes in MB")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=32768)
    parser.add_argument("--train-mb", type=int, default=20, help="MB of the corpus the tokenizer learns from")
    parser.add_argument("--library-mb", type=int, default=50,
                        help="MB of the corpus the tokenizers library alone encodes, for the floor (0: skip)")
    parser.add_argument("--dir", default=None, help="where the corpus and cache go (default: a temporary folder)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, {args.cores} used; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        root = Path(folder)
        for megabytes in args.sizes:
            corpus = root / f"corpus{megabytes}.jsonl"
            start = time.perf_counter()
            size = write_corpus(corpus, megabytes)
            print(f"{megabytes} MB corpus: {size / 1e6:.0f} MB written in {time.perf_counter() - start:.0f} s")
            tokenizer = root / "tokenizer.json"
            if not tokenizer.exists():
                train_tokenizer(corpus, tokenizer, args.train_mb, args.vocab_size)
            r = measure(corpus, tokenizer, root / f"cache{megabytes}", args.cores)
            mb = r["text_bytes"] / 1e6
            print(f"  {r['documents']:,} documents, {mb:.0f} MB of text, {r['tokens']:,} tokens; hash "
                  f"{r['hash_s']:.1f} s, survey {r['survey_s']:.1f} s, encode {r['encode_s']:.1f} s = "
                  f"{mb / r['encode_s']:.1f} MB/s ({mb / sum(r[k] for k in ('hash_s', 'survey_s', 'encode_s')):.1f} "
                  f"MB/s overall; encoding {mb / r['encode_cpu_s']:.1f} MB per CPU-second); "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB; load average {os.getloadavg()[0]:.2f}")
            if args.library_mb:
                floor = child(LIBRARY, [corpus, tokenizer, args.library_mb], args.cores)
                rate = floor["text_bytes"] / 1e6 / floor["encode_s"]
                print(f"  the tokenizers library alone (encode_batch_fast, {floor['text_bytes'] / 1e6:.0f} MB in "
                      f"memory): {rate:.1f} MB/s; the cache build encodes at {mb / r['encode_s'] / rate:.2f}x that")
            corpus.unlink()


if __name__ == "__main__":
    main()
