"""The Amazon/Yelp benchmark's bookkeeping (experiments/recsys/amazon.py): which runs remain, and
the tables rebuilt from the finished rows. Training itself is exercised by the recipe tests."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.recsys import amazon


def row(dataset: str, model: str, seed: int, value: float) -> dict:
    metrics = {k: value for k in amazon.REPORTED}
    extra = {} if model == "popular" else {"epochs": 10, "epochs_per_second": 0.05, "best_epoch": 7}
    return {"dataset": dataset, "model": model, "seed": seed, "params": 1000, "fit_seconds": 200.0, **metrics, **extra}


def write(results: Path, r: dict) -> None:
    path = amazon.run_file(results, r["dataset"], r["model"], r["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r))


def test_seeds_are_outermost_and_popular_runs_once():
    jobs = amazon.jobs(["beauty", "sports"], ["mac", "popular"], [0, 1])
    assert jobs == [("beauty", "mac", 0), ("beauty", "popular", 0), ("sports", "mac", 0), ("sports", "popular", 0),
                    ("beauty", "mac", 1), ("sports", "mac", 1)]


def test_tables_are_rebuilt_from_finished_rows_with_mean_and_range(tmp_path):
    for r in (row("beauty", "mac", 0, 0.10), row("beauty", "mac", 1, 0.20), row("beauty", "popular", 0, 0.01)):
        write(tmp_path, r)
    markdown = amazon.write_results(tmp_path, ["--datasets", "beauty"])
    mac = next(line for line in markdown.splitlines() if line.startswith("| Titans MAC | 2 |"))
    assert "0.1500 [0.1000, 0.2000]" in mac
    summary = json.loads((tmp_path / "results.json").read_text())["summary"]
    assert [(s["model"], s["seeds"]) for s in summary] == [("mac", [0, 1]), ("popular", [0])]
    assert summary[0]["epochs_per_second"] == 0.05 and summary[1]["epochs_per_second"] is None
    assert "| ICLRec (published) | | | | 0.0744 | 0.0403 |" in markdown
    assert (tmp_path / "results.md").read_text().strip() == markdown.strip()


def test_a_finished_row_is_not_run_again(tmp_path, monkeypatch):
    write(tmp_path, row("beauty", "popular", 0, 0.01))
    started = []
    monkeypatch.setattr(amazon, "run", lambda *args: started.append(args[:3]) or write(tmp_path, row(*args[:3], 0.1)))
    monkeypatch.setattr("sys.argv", ["amazon.py", "--datasets", "beauty", "--models", "popular", "sasrec",
                                     "--seeds", "0", "--results", str(tmp_path), "--work", str(tmp_path / "work"),
                                     "--jobs", "1"])
    amazon.main()
    assert started == [("beauty", "sasrec", 0)]
    assert {p.name for p in (tmp_path / "runs").iterdir()} == {"beauty-popular-seed0.json", "beauty-sasrec-seed0.json"}


def test_a_row_keeps_the_validation_score_that_chose_its_checkpoint(tmp_path, monkeypatch):
    """``run`` with the ``titans`` commands replaced by ones that write what Lightning writes (a
    fit's validation rows and best checkpoint, then a test's metrics): the row carries the best
    epoch and its val NDCG@10, so a validation-only choice can be made from committed rows."""
    import torch

    def fake_titans(args: list[str], log: Path) -> None:
        runs = Path(args[args.index("--trainer.default_root_dir") + 1]) / "csv"
        version = runs / f"version_{len(list(runs.glob('version_*')))}"
        (version / "checkpoints").mkdir(parents=True)
        if args[0] == "fit":
            lines = ["epoch,step,val/ndcg@10", "0,10,0.02", "1,20,0.05", "2,30,0.04"]
            torch.save({"state_dict": {"w": torch.zeros(3)}}, version / "checkpoints" / "best-epoch=1.ckpt")
        else:
            names = [f"test/{k}" for k in amazon.REPORTED]
            lines = ["epoch,step," + ",".join(names), "0,0," + ",".join(["0.1"] * len(names))]
        (version / "metrics.csv").write_text("\n".join(lines) + "\n")

    monkeypatch.setattr(amazon, "titans", fake_titans)
    result = amazon.run("beauty", "mac", 0, "data.txt", tmp_path / "work", tmp_path / "results", [])
    assert result["best_epoch"] == 1 and result["val_ndcg@10"] == 0.05 and result["epochs"] == 3
    assert json.loads(amazon.run_file(tmp_path / "results", "beauty", "mac", 0).read_text()) == result
