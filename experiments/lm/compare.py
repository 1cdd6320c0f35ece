"""Held-out bits per byte of every variant after the same budget, on the shipped Shakespeare corpus.

    OMP_NUM_THREADS=1 python experiments/lm/compare.py                 # 150 steps: ~15 min on a busy 2-core CPU
    python experiments/lm/compare.py --steps 200 --dim 128 --depth 4 --seq-len 256   # the recipes' size

Each variant trains from its own recipe (``recipes/lm/<variant>.yaml``) through ``titans fit``, in a
fresh process on one thread, with the same overrides: model width and depth, window / segment /
chunk scaled to the sequence, steps, batch and window length, so every run sees the same tokens in
the same order (``--seed``). Parameters are matched to MAC's by the SwiGLU width (the memory-free
baselines and LMM get a wider MLP), so the comparison is at equal parameters and tokens.
Then ``titans test`` scores the final weights on the test works (documents never trained on),
``--eval-windows`` windows evenly spaced over them; val/bpb is the final validation (other works).

Prints a Markdown table (bits per byte, lower is better; the ratio is against Transformer++) and
whether the paper's ordering holds: MAC, MAG and MAL each below Transformer++ and SWA on test/bpb.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.backbone.config import VARIANTS
from titans_lightning.runs import fresh_env, last_values, newest_version, read_metrics, run_titans

REPO = Path(__file__).resolve().parents[2]
MEMORY_WITH_ATTENTION = ("mac", "mag", "mal")
ENV = {"OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "1099511627776", "MALLOC_TRIM_THRESHOLD_": "1099511627776"}


def backbone_fields(args: argparse.Namespace) -> dict[str, int]:
    """Size fields shared by every variant: windows a quarter of the sequence, MAC's segment twice
    the window (a MAC token sees on average half its segment, an SWA token its whole window)."""
    quarter = max(8, args.seq_len // 4)
    return dict(dim=args.dim, depth=args.depth, heads=4, segment_len=2 * quarter, window=quarter,
                chunk_size=max(4, quarter // 4), persistent_tokens=4, memory_heads=4, memory_depth=2,
                memory_expansion=2)


def matched_widths(fields: dict[str, int]) -> dict[str, tuple[int, int]]:
    """``{variant: (mlp_hidden, parameters)}``: MAC at the default SwiGLU width, every other variant
    at the width (a multiple of 8) whose backbone is closest to MAC's parameter count."""
    def count(variant: str, hidden: int) -> int:
        return TitansBackbone(TitansConfig(variant=variant, size="small", mlp_hidden=hidden, **fields)).num_parameters()

    default = TitansConfig(variant="mac", size="small", **fields).mlp_hidden  # Llama's 8/3 D
    target = count("mac", default)
    widths = {}
    for variant in VARIANTS:
        if variant in MEMORY_WITH_ATTENTION:
            widths[variant] = (default, count(variant, default))
            continue
        hidden = min(range(8, 16 * fields["dim"], 8), key=lambda h: abs(count(variant, h) - target))
        widths[variant] = (hidden, count(variant, hidden))
    return widths


def overrides(args: argparse.Namespace, variant: str, hidden: int, root: Path) -> list[str]:
    backbone = {**backbone_fields(args), "mlp_hidden": hidden}
    if variant == "mac" and args.mac_segment_len:
        backbone["segment_len"] = args.mac_segment_len
    if variant == "mac" and args.mac_memory_input:
        backbone["mac_memory_input"] = args.mac_memory_input
    flags = [f"--model.backbone.{k}={v}" for k, v in backbone.items()]
    return [*flags, f"--seed_everything={args.seed}", f"--data.seed={args.seed}",
            f"--trainer.max_steps={args.steps}", f"--trainer.val_check_interval={args.steps}",
            f"--data.seq_len={args.seq_len}", f"--data.batch_size={args.batch_size}",
            f"--data.max_eval_windows={args.eval_windows}", f"--model.optimizer.init_args.lr={args.lr}",
            f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false"]


def titans(subcommand: str, recipe: Path, flags: list[str]) -> str:
    """``titans <subcommand> -c <recipe> *flags`` in a fresh process on one thread; its stdout."""
    return run_titans([subcommand, "-c", recipe, *flags], cwd=REPO, env=fresh_env([REPO], **ENV))


def run_variant(args: argparse.Namespace, variant: str, hidden: int) -> dict:
    root = Path(args.workdir) / variant
    recipe = REPO / "recipes" / "lm" / f"{variant}.yaml"
    flags = overrides(args, variant, hidden, root)
    start = time.perf_counter()
    out = titans("fit", recipe, flags)
    fit_seconds = time.perf_counter() - start
    run = newest_version(root / "csv")
    titans("test", recipe, [*flags, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    tested = last_values(read_metrics(newest_version(root / "csv")), "test")
    sample = out.rsplit("val/bpb", 1)[-1].split("\n", 1)[-1].strip()[:160] if "val/bpb" in out else ""
    validated = last_values(read_metrics(run), "val")
    return {"variant": variant, "val_bpb": validated["bpb"], "test_bpb": tested["bpb"], "test_ppl": tested["ppl"],
            "fit_seconds": fit_seconds, "sample": sample}


def table(results: list[dict], widths: dict, tokens: int) -> str:
    reference = next((r["test_bpb"] for r in results if r["variant"] == "transformer"), None)
    lines = ["| variant | backbone params | mlp_hidden | train tokens | val bpb | test bpb | test ppl "
             "| test bpb / Transformer++ | fit time (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        hidden, params = widths[r["variant"]]
        ratio = f"{r['test_bpb'] / reference:.3f}" if reference else "-"
        lines.append(f"| {r['variant']} | {params:,} | {hidden} | {tokens:,} | {r['val_bpb']:.3f} "
                     f"| {r['test_bpb']:.3f} | {r['test_ppl']:.2f} | {ratio} | {r['fit_seconds']:.0f} |")
    return "\n".join(lines)


def verdict(results: list[dict]) -> str:
    bpb = {r["variant"]: r["test_bpb"] for r in results}
    if not {"transformer", "swa"} <= set(bpb):
        return "target not checked: run the transformer and swa baselines too"
    best_baseline = min(bpb["transformer"], bpb["swa"])
    lines = []
    for variant in (v for v in MEMORY_WITH_ATTENTION if v in bpb):
        met = bpb[variant] < best_baseline
        lines.append(f"{variant}: {bpb[variant]:.3f} vs best baseline {best_baseline:.3f} -> "
                     f"{'beats both baselines' if met else 'does NOT beat both baselines'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0,
                        help="initialisation (seed_everything) and batch order (data.seed); the split stays fixed")
    parser.add_argument("--eval-windows", type=int, default=128)
    parser.add_argument("--mac-segment-len", type=int, help="MAC's segment instead of twice the window "
                        "(a MAC token sees on average half its segment, an SWA token its whole window)")
    parser.add_argument("--mac-memory-input", choices=["attention", "residual"],
                        help="what MAC writes into its memory instead of its recipe's choice "
                        "(TitansConfig.mac_memory_input)")
    parser.add_argument("--workdir", default="runs/lm_compare")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    widths = matched_widths(backbone_fields(args))
    tokens = args.steps * args.batch_size * args.seq_len
    print(f"seed {args.seed}; budget: {args.steps} steps x {args.batch_size} x {args.seq_len} = {tokens:,} tokens "
          f"per variant; backbone {json.dumps(backbone_fields(args))}", flush=True)
    results = []
    for variant in args.variants:
        results.append(run_variant(args, variant, widths[variant][0]))
        r = results[-1]
        print(f"{variant}: val/bpb {r['val_bpb']:.3f} test/bpb {r['test_bpb']:.3f} ({r['fit_seconds']:.0f} s)\n"
              f"  sample: {r['sample']!r}", flush=True)
    print("\n" + table(results, widths, tokens) + "\n\n" + verdict(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
