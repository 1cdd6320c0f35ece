"""The DataModule: leave-one-out split, training windows, right-padded batches, sizes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from datamodules.recsys.datamodule import InteractionDataModule, training_windows

# user 1: items 11..17 (7 interactions), user 2: 21..23 (the minimum, 3)
ROWS = [(1, 11 + t, t) for t in range(7)] + [(2, 21 + t, t) for t in range(3)]


@pytest.fixture
def datamodule(tmp_path):
    path = tmp_path / "log.csv"
    pl.DataFrame(ROWS, schema=["userId", "movieId", "timestamp"], orient="row").write_csv(path)

    def make(**kwargs):
        dm = InteractionDataModule(path=str(path), batch_size=8, shuffle=False, **kwargs)
        dm.setup("fit")
        return dm
    return make


def original(dm, ids):
    """Original item ids of remapped ids (0 = padding -> 0)."""
    items = dm.vocabulary[1].to_list()
    return [items[i - 1] if i else 0 for i in ids.tolist()]


def test_leave_one_out_split(datamodule):
    dm = datamodule(max_len=10)
    val, test = next(iter(dm.val_dataloader())), next(iter(dm.test_dataloader()))
    # evaluation batches hold users by history length (user 2's is the shorter)
    assert val["user"].tolist() == test["user"].tolist() == [1, 0]
    assert original(dm, val["target"]) == [22, 16] and original(dm, test["target"]) == [23, 17]
    assert original(dm, val["items"][1]) == [11, 12, 13, 14, 15]  # padded to the longest history
    assert original(dm, val["items"][0]) == [21, 0, 0, 0, 0]
    assert original(dm, test["items"][1]) == [11, 12, 13, 14, 15, 16]
    assert val["lengths"].tolist() == [1, 5] and test["lengths"].tolist() == [2, 6]
    predict = next(iter(dm.predict_dataloader()))  # predict keeps the log's user order
    assert "target" not in predict and predict["lengths"].tolist() == [7, 3] and predict["user"].tolist() == [0, 1]
    # training never sees a validation or test item
    train = next(iter(dm.train_dataloader()))
    seen = set(original(dm, train["items"].flatten())) | set(original(dm, train["targets"].flatten()))
    assert seen - {0} == {11, 12, 13, 14, 15}


def test_max_len_keeps_the_most_recent_items_but_seen_keeps_all(datamodule):
    dm = datamodule(max_len=3)
    test = next(iter(dm.test_dataloader()))
    assert original(dm, test["items"][1]) == [14, 15, 16]
    assert sorted(original(dm, test["seen"][1])) == [11, 12, 13, 14, 15, 16]
    assert test["mask"].tolist() == [[True, True, False], [True, True, True]]


def test_evaluation_users_by_history_length_every_user_once():
    dm = InteractionDataModule(path="data/recsys/Beauty.txt", format="sequences", user_column="user",
                               item_column="item", timestamp_column=None, eval_batch_size=512)
    dm.setup("fit")
    users, lengths, real, computed = [], [], 0, 0
    for batch in dm.val_dataloader():
        users += batch["user"].tolist()
        lengths += batch["lengths"].tolist()
        real, computed = real + int(batch["mask"].sum()), computed + batch["mask"].numel()
    assert sorted(users) == list(range(22363)) and lengths == sorted(lengths)
    assert real / computed > 0.9


TRAINING_WINDOWS = [  # (training items, max_len, windows, expected [start, stop) ranges)
    pytest.param(7, 3, "all", [(3, 7), (0, 4)], id="all-windows-overlap-by-one"),
    pytest.param(7, 3, "last", [(3, 7)], id="last-window-only"),
    pytest.param(2, 5, "all", [(0, 2)], id="short-history-one-window"),
    pytest.param(1, 5, "all", [], id="single-item-no-window"),
]


@pytest.mark.parametrize("n,max_len,windows,expected", TRAINING_WINDOWS)
def test_training_windows(n, max_len, windows, expected):
    offsets = np.array([0, n + 2])  # the split holds out 2 items
    assert [tuple(r) for r in training_windows(offsets, max_len, windows)] == expected


def test_every_training_item_but_the_first_is_a_target_once(datamodule):
    dm = datamodule(max_len=2)
    targets, windows = [], 0
    for batch in dm.train_dataloader():
        targets += [t for t in batch["targets"].flatten().tolist() if t]
        assert (batch["targets"] != 0).equal(batch["mask"])
        windows += len(batch["items"])
    assert sorted(original(dm, np.array(targets))) == [12, 13, 14, 15]
    assert windows == 2  # user 1: [13,14,15] and [11,12,13]; user 2 has one training item


def test_training_batch_is_right_padded_next_item_pairs(datamodule):
    batch = next(iter(datamodule(max_len=10).train_dataloader()))
    assert batch["items"][0].tolist()[:4] == [1, 2, 3, 4] and batch["targets"][0].tolist()[:4] == [2, 3, 4, 5]
    assert batch["mask"][0].tolist() == [True] * 4


def test_data_sizes_before_setup(tmp_path):
    path = tmp_path / "log.csv"
    pl.DataFrame(ROWS, schema=["userId", "movieId", "timestamp"], orient="row").write_csv(path)
    assert InteractionDataModule(path=str(path)).data_sizes == {"num_items": 10}


def test_shipped_movielens_reads_whole():
    dm = InteractionDataModule()
    assert dm.data_sizes == {"num_items": 9066}
    assert dm.interactions.num_users == 671 and len(dm.interactions.items) == 100_004


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="max_len >= 1"):
        InteractionDataModule(max_len=0)
