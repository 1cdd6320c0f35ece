"""NextItemTask and PopularityTask: padding leaves scores and memory untouched, tied embedding,
popularity counts, sampled evaluation names, and `titans fit/predict` on a user's own log."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
import torch

from external_domain.runs import QUIET, REPO
from titans_lightning.backbone import TitansConfig
from titans_lightning.tasks import Task, TitansTask
from titans_lightning.tasks.recsys import NextItemTask, PopularityTask

NUM_ITEMS = 40


def make_task(variant: str, **kwargs) -> NextItemTask:
    torch.manual_seed(0)
    task = NextItemTask(TitansConfig(variant=variant, size="debug"), data_sizes={"num_items": NUM_ITEMS}, **kwargs)
    task.configure_model()
    return task.eval()


def eval_batch(histories: list[list[int]], extra_pads: int = 0) -> dict[str, torch.Tensor]:
    """An evaluation batch of right-padded histories with ``extra_pads`` more pad columns."""
    width = max(map(len, histories)) + extra_pads
    items = torch.tensor([h + [0] * (width - len(h)) for h in histories])
    return {"items": items, "mask": items != 0, "lengths": torch.tensor([len(h) for h in histories]),
            "user": torch.arange(len(histories)), "seen": items.clone(), "target": torch.tensor([1] * len(histories))}


HISTORIES = [[3, 7, 1, 9, 12, 5, 5, 30, 2, 8, 11], [4, 4, 20], [17]]  # 11 items: past a debug segment and chunk


@pytest.mark.parametrize("variant", ["mac", "lmm", "mag", "transformer"])
def test_extra_padding_leaves_scores_untouched(variant):
    task = make_task(variant)
    with torch.no_grad():
        reference = task.item_scores(eval_batch(HISTORIES))
        padded = task.item_scores(eval_batch(HISTORIES, extra_pads=13))
        alone = task.item_scores(eval_batch(HISTORIES[1:2]))  # no neighbour forcing pads at all
    torch.testing.assert_close(padded, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone[0], reference[1], rtol=1e-5, atol=1e-5)


def test_pads_leave_the_memory_state_untouched():
    task = make_task("lmm")
    batch, padded = eval_batch(HISTORIES[:1]), eval_batch(HISTORIES[:1], extra_pads=9)
    with torch.no_grad():
        _, state = task.backbone(task.head.embed(batch["items"]), mask=batch["mask"])
        _, state_padded = task.backbone(task.head.embed(padded["items"]), mask=padded["mask"])
    for block, block_padded in zip(state.blocks, state_padded.blocks):
        for w, w_padded in zip(block.fast.weights, block_padded.fast.weights):
            torch.testing.assert_close(w_padded, w, rtol=1e-5, atol=1e-6)
        for s, s_padded in zip(block.fast.momentum, block_padded.fast.momentum):
            torch.testing.assert_close(s_padded, s, rtol=1e-5, atol=1e-6)


def test_one_item_table_serves_input_and_scoring():
    task = make_task("transformer")
    batch = eval_batch(HISTORIES)
    loss, ranks = task.compute_loss(batch)
    loss.backward()
    table = task.head.embedding.weight
    assert [n for n, _ in task.head.named_parameters()] == ["embedding.weight"]
    assert table.shape == (NUM_ITEMS + 1, 32) and table.grad[1:].abs().sum(-1).gt(0).all()  # scored, all
    assert ranks.shape == (3,) and (ranks >= 1).all()


def test_training_loss_counts_only_real_positions():
    task = make_task("transformer")
    items = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]])
    targets = torch.tensor([[6, 7, 8, 0, 0], [9, 10, 0, 0, 0]])
    batch = {"items": items, "targets": targets, "mask": items != 0}
    loss, _ = task.compute_loss(batch)
    wider = {k: torch.cat((v, torch.zeros_like(v)), 1) for k, v in batch.items()}
    torch.testing.assert_close(task.compute_loss(wider)[0], loss)
    sampled = make_task("transformer", sampled_softmax=7)
    assert torch.isfinite(sampled.compute_loss(batch)[0])


def test_sampled_evaluation_is_a_named_option():
    assert "val/mrr" == "val/" + next(k for k in make_task("transformer").build_metrics() if "mrr" in k)
    task = make_task("transformer", ks=[5, 10], eval_negatives=20)
    assert set(task.build_metrics()) == {"sampled20_hr@5", "sampled20_ndcg@5", "sampled20_hr@10",
                                         "sampled20_ndcg@10", "sampled20_mrr"}
    assert task.monitor == "val/sampled20_ndcg@5"
    with pytest.raises(ValueError, match="every K must be at most 20"):
        make_task("transformer", eval_negatives=20)


def test_popularity_ranks_by_training_target_counts():
    task = PopularityTask(data_sizes={"num_items": 6})
    assert isinstance(task, Task) and not isinstance(task, TitansTask)  # the harness alone, no backbone
    task.configure_model()
    targets = torch.tensor([[3, 3, 5, 0], [3, 5, 2, 1]])
    task.training_step({"items": targets, "targets": targets, "mask": targets != 0}, 0)
    task.counts += task.pending  # what sync_counts does on one process
    batch = eval_batch([[1], [3]])
    batch["target"] = torch.tensor([3, 2])
    _, ranks = task.compute_loss(batch)
    # counts 3:3, 5:2, 1:1, 2:1, 4 and 6 none; user 1 saw item 3: 5, then 1 and 2 tie (counted against 2)
    assert ranks.tolist() == [1.0, 3.0]
    assert "counts" in task.state_dict() and "pending" not in task.state_dict()  # counts go with the checkpoint


def own_log(path: Path) -> pl.DataFrame:
    """A Parquet log with other column names, string item ids and datetime timestamps."""
    rows = [(f"u{u}", f"sku-{(u * 7 + t * 3) % 23}", t) for u in range(6) for t in range(8 + u)]
    log = pl.DataFrame(rows, schema=["visitor", "product", "hour"], orient="row")
    log = log.with_columns((pl.datetime(2024, 1, 1) + pl.duration(hours=pl.col("hour"))).alias("time")).drop("hour")
    log.write_parquet(path)
    return log


# (user, item, hour) of six users with 8..13 interactions: the logs below write these in each format
INTERACTIONS = [(u, (u * 7 + t * 3) % 23 + 1, t) for u in range(6) for t in range(8 + u)]


def write_lines(path: Path, lines: list[str]) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as file:
        file.write("".join(line + "\n" for line in lines))


def parquet_log(path: Path) -> set[tuple[str, str]]:
    return {(str(u), str(i)) for u, i in own_log(path).select("visitor", "product").iter_rows()}


def inter_log(path: Path) -> set[tuple[str, str]]:
    write_lines(path, ["user_id:token\titem_id:token\ttimestamp:float"] +
                [f"{u}\t{i}\t{t}.0" for u, i, t in INTERACTIONS])
    return {(str(u), str(i)) for u, i, _ in INTERACTIONS}


def amazon_log(path: Path) -> set[tuple[str, str]]:
    write_lines(path, [json.dumps({"reviewerID": f"A{u}", "asin": f"B{i}", "overall": 5.0, "unixReviewTime": t * 86400})
                       for u, i, t in INTERACTIONS])
    return {(f"A{u}", f"B{i}") for u, i, _ in INTERACTIONS}


def dat_log(path: Path) -> set[tuple[str, str]]:
    write_lines(path, [f"{u}::{i}::4::{t}" for u, i, t in INTERACTIONS])
    return {(str(u), str(i)) for u, i, _ in INTERACTIONS}


def sequences_log(path: Path) -> set[tuple[str, str]]:
    write_lines(path, [f"{u} " + " ".join(str(i) for v, i, _ in INTERACTIONS if v == u) for u in range(6)])
    return {(str(u), str(i)) for u, i, _ in INTERACTIONS}


def pairs_log(path: Path) -> set[tuple[str, str]]:
    write_lines(path, [f"{u} {i}" for u, i, _ in INTERACTIONS])
    return {(str(u), str(i)) for u, i, _ in INTERACTIONS}


FILE_ORDER = ["--data.timestamp_column", "null"]
OWN_LOGS = [  # (file name, writer returning the (user, item) pairs seen, data arguments, output id columns)
    pytest.param("clicks.parquet", parquet_log, ["--data.user_column", "visitor", "--data.item_column", "product",
                                                 "--data.timestamp_column", "time"], ("visitor", "product"),
                 id="parquet-other-columns-datetimes"),
    pytest.param("ml.inter", inter_log, ["--data.user_column", "user_id:token", "--data.item_column", "item_id"],
                 ("user_id", "item_id"), id="recbole-inter"),
    pytest.param("Beauty_5.json.gz", amazon_log, ["--data.user_column", "reviewerID", "--data.item_column", "asin",
                                                  "--data.timestamp_column", "unixReviewTime", "--data.rating_column",
                                                  "overall", "--data.min_rating", "4"], ("reviewerID", "asin"),
                 id="amazon-json-lines-gz"),
    pytest.param("ratings.dat", dat_log, [], ("userId", "movieId"), id="movielens-dat"),
    pytest.param("Beauty.txt", sequences_log, ["--data.format", "sequences", *FILE_ORDER], ("userId", "movieId"),
                 id="s3rec-sequences"),
    pytest.param("train.txt", pairs_log, ["--data.format", "pairs", *FILE_ORDER, "--data.user_column", "user",
                                          "--data.item_column", "item"], ("user", "item"), id="sasrec-pairs"),
]


@pytest.mark.parametrize("name,write,data,columns", OWN_LOGS)
def test_own_log_fit_then_predict_writes_top_k_in_original_ids(tmp_path, name, write, data, columns):
    from titans_lightning.cli import main

    seen = write(tmp_path / name)
    data = ["--data.path", str(tmp_path / name), *data, "--data.batch_size", "2", "--data.eval_batch_size", "4"]
    common = ["-c", str(REPO / "recipes/recsys/debug.yaml"), "--trainer.default_root_dir", str(tmp_path), *QUIET, *data]
    main(["fit", *common, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2"])
    out = tmp_path / "top.csv"
    main(["predict", *common, "--ckpt_path", str(tmp_path / "csv/version_0/checkpoints/last.ckpt"),
          "--trainer.callbacks+=titans_lightning.tasks.recsys.RecommendationWriter",
          f"--trainer.callbacks.path={out}", "--trainer.callbacks.k=3"])
    top = pl.read_csv(out, infer_schema=False)
    user, item = columns
    assert top.columns == [user, "rank", item, "score"]
    assert top.height == 6 * 3 and top[user].n_unique() == 6 and top["rank"].to_list()[:3] == ["1", "2", "3"]
    assert set(top[item]) <= {i for _, i in seen}  # original item ids
    assert not set(top.select(user, item).iter_rows()) & seen  # nothing the user has seen


def test_a_popularity_checkpoint_saved_with_a_backbone_argument_still_loads(tmp_path):
    """Runs from before ``PopularityTask`` stood on the harness saved ``backbone: null``: ``titans test
    --ckpt_path`` and ``load_from_checkpoint`` leave out what the task no longer takes."""
    from titans_lightning.cli import main

    own_log(tmp_path / "clicks.parquet")
    common = ["-c", str(REPO / "recipes/recsys/movielens_popular.yaml"), "--trainer.default_root_dir", str(tmp_path),
              *QUIET, "--data.path", str(tmp_path / "clicks.parquet"), "--data.user_column", "visitor",
              "--data.item_column", "product", "--data.timestamp_column", "time", "--data.k_core", "0"]
    main(["fit", *common])
    checkpoint = torch.load(tmp_path / "csv/version_0/checkpoints/last.ckpt", weights_only=False)
    checkpoint["hyper_parameters"]["backbone"] = None
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    with pytest.warns(UserWarning, match=r"no longer takes \['backbone'\]"):
        main(["test", *common, "--ckpt_path", str(old)])
    assert PopularityTask.load_from_checkpoint(old).counts.sum() > 0
