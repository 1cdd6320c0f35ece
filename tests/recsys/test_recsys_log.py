"""Reading interaction logs: formats, column names, time order, filters, and the errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from datamodules.recsys.log import read_interactions

# user, item, timestamp; user 10 has a tie (t=5) between items "b" then "a" in file order
ROWS = [(10, "b", 5), (20, "x", 1), (10, "c", 9), (10, "a", 5), (20, "y", 2), (20, "z", 3), (10, "d", 1)]
EXPECTED = {10: ["d", "b", "a", "c"], 20: ["x", "y", "z"]}  # time order, ties in file order


def sequences(log) -> dict:
    """{original user: [original items in order]} of an InteractionLog."""
    items = log.item_ids.to_list()
    return {u: [items[i - 1] for i in log.items[a:b]]
            for u, a, b in zip(log.users.to_list(), log.offsets[:-1], log.offsets[1:])}


def write(path: Path, frame: pl.DataFrame) -> Path:
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path, separator="\t" if path.suffix == ".tsv" else ",")
    return path


def frame(columns=("userId", "movieId", "timestamp"), rows=ROWS) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=list(columns), orient="row")


OWN_LOGS = [  # (file name, column names, timestamp transform)
    pytest.param("log.csv", ("userId", "movieId", "timestamp"), None, id="csv-default-columns"),
    pytest.param("log.tsv", ("session", "product", "time"), None, id="tsv-other-columns"),
    pytest.param("log.parquet", ("visitor", "sku", "ts"), None, id="parquet-other-columns"),
    pytest.param("log.csv", ("u", "i", "when"), "iso", id="csv-iso-datetime-strings"),
    pytest.param("log.parquet", ("u", "i", "when"), "datetime", id="parquet-datetime-type"),
]


@pytest.mark.parametrize("name,columns,time_kind", OWN_LOGS)
def test_own_log_by_changing_only_data_arguments(tmp_path, name, columns, time_kind):
    data = frame(columns)
    if time_kind is not None:
        when = pl.from_epoch(pl.col(columns[2]), time_unit="s")
        data = data.with_columns(when.dt.to_string("%Y-%m-%d %H:%M:%S") if time_kind == "iso" else when)
    path = write(tmp_path / name, data)
    log = read_interactions(path, *columns)
    assert sequences(log) == EXPECTED


def test_items_are_remapped_to_one_to_n_by_sorted_id_with_zero_free(tmp_path):
    log = read_interactions(write(tmp_path / "log.csv", frame()))
    assert log.item_ids.to_list() == ["a", "b", "c", "d", "x", "y", "z"]
    assert log.items.min() == 1 and log.items.max() == log.num_items == 7
    assert log.offsets.tolist() == [0, 4, 7]


def test_ties_keep_file_order_whatever_the_position_in_the_file(tmp_path):
    # every interaction of user 1 at the same time: the sequence is the file order, not id order
    rows = [(1, item, 100) for item in (5, 3, 9, 1, 7)] + [(2, 1, 1), (2, 2, 1), (2, 3, 1)]
    log = read_interactions(write(tmp_path / "log.csv", frame(rows=rows)))
    assert sequences(log)[1] == [5, 3, 9, 1, 7]
    reordered = rows[5:] + rows[:5]
    assert sequences(read_interactions(write(tmp_path / "b.csv", frame(rows=reordered))))[1] == [5, 3, 9, 1, 7]


def test_rating_threshold_keeps_ratings_at_or_above(tmp_path):
    rows = [(1, i, i, r) for i, r in enumerate([5, 2, 4, 3.5, 4])]
    data = pl.DataFrame(rows, schema=["userId", "movieId", "timestamp", "rating"], orient="row")
    log = read_interactions(write(tmp_path / "r.csv", data), rating_column="rating", min_rating=4)
    assert sequences(log) == {1: [0, 2, 4]}


def test_k_core_filters_until_stable(tmp_path):
    # item 9 is seen twice; without it user 3 has 2 interactions and must go too (a cascade)
    rows = [(u, i, t) for t, (u, i) in enumerate(
        [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1), (3, 9), (3, 2), (4, 3), (4, 1), (4, 2), (4, 9)])]
    log = read_interactions(write(tmp_path / "k.csv", frame(rows=rows)), k_core_min=3)
    assert sorted(sequences(log)) == [1, 2, 4]
    assert 9 not in log.item_ids.to_list()
    counts = np.bincount(log.items)
    assert counts[1:].min() >= 3 and log.lengths().min() >= 3


def test_short_users_are_dropped_with_a_logged_count(tmp_path, caplog):
    rows = ROWS + [(30, "a", 1), (30, "b", 2), (40, "c", 1)]
    with caplog.at_level(logging.WARNING, logger="datamodules.recsys.log"):
        log = read_interactions(write(tmp_path / "log.csv", frame(rows=rows)))
    assert sequences(log) == EXPECTED
    assert "dropped 2 of 4 users with fewer than 3 interactions" in caplog.text


ERRORS = [  # (file name, frame, read kwargs, expected message pieces)
    pytest.param("log.csv", frame(("user", "movieId", "timestamp")), {},
                 ["user_column='userId'", "['user', 'movieId', 'timestamp']"], id="missing-column-lists-existing"),
    pytest.param("log.csv", frame(rows=[(1, 1, "5"), (1, 2, "6"), (1, 3, "soon"), (1, 4, "8")]), {},
                 ["'soon'", "row 3 (line 4"], id="unparseable-timestamp-names-the-row"),
    pytest.param("log.csv", frame(rows=[(1, 1, 1.0), (1, 2, 2.5), (1, 3, 3.0)]), {},
                 ["2.5", "row 2 (line 3"], id="non-integer-timestamp"),
    pytest.param("log.parquet", frame(rows=[(1, 1, 1), (None, 2, 2), (1, 3, 3)]), {},
                 ["'userId' is empty at row 2"], id="empty-user-names-the-row"),
    pytest.param("log.csv", frame(rows=[(1, 1, 1), (1, 2, 2), (2, 3, 3)]), {},
                 ["no user has 3 or more interactions"], id="nothing-left-after-dropping-short-users"),
    pytest.param("log.csv", frame(), {"rating_column": "rating"},
                 ["set both rating_column and min_rating"], id="rating-column-without-threshold"),
    pytest.param("log.txt", frame(), {}, ["unsupported file type '.txt'", "--data.format"], id="unsupported-format"),
]


@pytest.mark.parametrize("name,data,kwargs,pieces", ERRORS)
def test_clear_errors(tmp_path, name, data, kwargs, pieces):
    path = write(tmp_path / name, data)
    with pytest.raises(ValueError) as error:
        read_interactions(path, **kwargs)
    for piece in [str(path), *pieces]:
        assert piece in str(error.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_interactions(tmp_path / "nowhere.csv")
