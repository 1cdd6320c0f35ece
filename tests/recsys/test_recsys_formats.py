"""The field's log formats (RecBole .inter, JSON lines, MovieLens .dat, S3-Rec sequences, SASRec
pairs) read into the same sequences as a CSV would, and their errors name file, line and field."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from datamodules.recsys.log import read_interactions

# (user, item, rating, time): user 1 rates item 13 low, user 2 has a tie at t=5 (22 then 21 in file order)
ROWS = [(1, 11, 5, 30), (2, 22, 4, 5), (1, 12, 4, 10), (2, 21, 5, 5), (1, 13, 1, 20), (2, 23, 4, 1), (1, 14, 4, 40)]
BY_TIME = {1: [12, 13, 11, 14], 2: [23, 22, 21]}  # time order, ties in file order
BY_TIME_RATED_4 = {1: [12, 11, 14], 2: [23, 22, 21]}
BY_FILE = {1: [11, 12, 13, 14], 2: [22, 21, 23]}


def as_ints(log) -> dict:
    """{user: [items in order]} of an InteractionLog, ids as ints whatever their type in the file."""
    items = log.item_ids.to_list()
    return {int(u): [int(items[i - 1]) for i in log.items[a:b]]
            for u, a, b in zip(log.users.to_list(), log.offsets[:-1], log.offsets[1:])}


def write_text(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as file:
            file.write(text)
    else:
        path.write_text(text)
    return path


def inter(rows=ROWS) -> str:
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    return header + "".join(f"{u}\t{i}\t{r}\t{t}.0\n" for u, i, r, t in rows)


def amazon(rows=ROWS) -> str:
    return "".join(json.dumps({"reviewerID": f"{u}", "asin": f"{i}", "overall": float(r), "summary": "ok",
                               "unixReviewTime": t}) + "\n" for u, i, r, t in rows)


def yelp(rows=ROWS) -> str:
    return "".join(json.dumps({"user_id": u, "business_id": i, "stars": r,
                               "date": f"2020-01-{1 + t // 24:02d} {t % 24:02d}:00:00"}) + "\n" for u, i, r, t in rows)


def dat(rows=ROWS) -> str:
    return "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows)


def sequences(by_user=BY_FILE) -> str:
    return "".join(f"{u} {' '.join(map(str, items))}\n" for u, items in by_user.items())


def pairs(rows=ROWS) -> str:
    return "".join(f"{u} {i}\n\n" for u, i, _, _ in rows)  # blank lines between are skipped


AMAZON = ("reviewerID", "asin", "unixReviewTime")
YELP = ("user_id", "business_id", "date")
# (file name, text, read arguments, expected sequences)
FORMATS = [
    pytest.param("log.inter.gz", inter(), dict(user_column="user_id", item_column="item_id"), BY_TIME,
                 id="inter-gz-names-without-type"),
    pytest.param("log.inter", inter(), dict(user_column="user_id:token", item_column="item_id:token",
                                            timestamp_column="timestamp:float", rating_column="rating:float",
                                            min_rating=4), BY_TIME_RATED_4, id="inter-names-with-type-rated"),
    pytest.param("Beauty.json.gz", amazon(), dict(zip(("user_column", "item_column", "timestamp_column"), AMAZON),
                                                  rating_column="overall", min_rating=4), BY_TIME_RATED_4,
                 id="amazon-jsonl-gz-rated"),
    pytest.param("yelp.jsonl", yelp(), dict(zip(("user_column", "item_column", "timestamp_column"), YELP),
                                            rating_column="stars", min_rating=4), BY_TIME_RATED_4,
                 id="yelp-jsonl-string-dates"),
    pytest.param("yelp.jsonl", yelp(), dict(user_column="user_id", item_column="business_id", timestamp_column=None),
                 BY_FILE, id="jsonl-file-order"),
    pytest.param("ratings.dat", dat(), {}, BY_TIME, id="dat-default-names"),
    pytest.param("ratings.dat.gz", dat(), dict(rating_column="rating", min_rating=4), BY_TIME_RATED_4,
                 id="dat-gz-rated"),
    pytest.param("log.csv.gz", "u,i,t\n" + "".join(f"{u},{i},{t}\n" for u, i, _, t in ROWS),
                 dict(user_column="u", item_column="i", timestamp_column="t"), BY_TIME, id="csv-gz"),
    pytest.param("Beauty.txt", sequences(), dict(format="sequences", timestamp_column=None), BY_FILE, id="sequences"),
    pytest.param("sasrec.txt", pairs(), dict(format="pairs", user_column="user", item_column="item",
                                             timestamp_column=None), BY_FILE, id="pairs"),
]


@pytest.mark.parametrize("name,text,kwargs,expected", FORMATS)
def test_each_format_reads_to_the_same_sequences(tmp_path, name, text, kwargs, expected):
    assert as_ints(read_interactions(write_text(tmp_path / name, text), **kwargs)) == expected


def test_header_less_fields_take_the_column_arguments_names(tmp_path):
    log = read_interactions(write_text(tmp_path / "s.txt", sequences()), "session", "product",
                            timestamp_column=None, format="sequences")
    assert (log.users.name, log.item_ids.name) == ("session", "product")


def test_a_json_array_of_records(tmp_path):
    records = [json.loads(line) for line in yelp().splitlines()]
    path = tmp_path / "log.json"
    path.write_text(json.dumps(records))
    assert as_ints(read_interactions(path, *YELP)) == BY_TIME


def test_timestamp_null_is_file_order_for_a_csv(tmp_path):
    path = write_text(tmp_path / "log.csv", "u,i,t\n" + "".join(f"{u},{i},{t}\n" for u, i, _, t in ROWS))
    assert as_ints(read_interactions(path, "u", "i", None)) == BY_FILE
    assert as_ints(read_interactions(path, "u", "i", "t")) == BY_TIME


SEQUENCES, PAIRS = dict(format="sequences", timestamp_column=None), dict(format="pairs", timestamp_column=None)
# (file name, text, read arguments, expected message pieces besides the path)
ERRORS = [
    pytest.param("s.txt", "1 11 12 13\n2\n", SEQUENCES, ["line 2: expected 'user item item ...'",
                                                         "got 1 field(s): '2'"], id="sequences-one-field"),
    pytest.param("s.txt", "1 11 12 13\n\n2 21 x2 23\n", SEQUENCES,
                 ["line 3, field 3 (movieId): 'x2' is not an integer"], id="sequences-non-integer-item"),
    pytest.param("s.txt", "u1 11 12 13\n", SEQUENCES, ["line 1, field 1 (userId): 'u1'"],
                 id="sequences-non-integer-user"),
    pytest.param("p.txt", "1 11\n1 12\n1 A13\n", PAIRS, ["line 3, field 2 (movieId): 'A13'"],
                 id="pairs-non-integer-item"),
    pytest.param("p.txt", "1 11\n1 12 5\n", PAIRS, ["line 2: expected 2 fields 'user item'"],
                 id="pairs-three-fields"),
    pytest.param("r.dat", "1::11::5::30\n1::12::4\n", {}, ["line 2: expected 4 fields", "'1::12::4'"],
                 id="dat-three-fields"),
    pytest.param("r.dat", "1::11::5::30\n1::12::4::40\n1::13::4::noon\n", {},
                 ["timestamp column 'timestamp': cannot read 'noon' at line 3"], id="dat-bad-timestamp"),
    pytest.param("r.dat", "1::11::5::30\n1.5::12::4::40\n", {}, ["line 2, field 1 (userId): '1.5' is not an integer"],
                 id="dat-non-integer-user"),
    pytest.param("a.jsonl", amazon(ROWS[:3]) + '{"reviewerID": "1", "asin": 9\n' + amazon(ROWS[3:]),
                 dict(zip(("user_column", "item_column", "timestamp_column"), AMAZON)),
                 ["line 4 is not valid JSON", "'{\"reviewerID\": \"1\", \"asin\": 9'"], id="json-line-does-not-parse"),
    pytest.param("a.jsonl.gz", amazon() + "[1, 2]\n", dict(zip(("user_column", "item_column", "timestamp_column"),
                                                                AMAZON)),
                 ["line 8 is not a JSON object"], id="gz-json-line-not-an-object"),
    pytest.param("y.jsonl", yelp(), {}, ["user_column='userId'", "['user_id', 'business_id', 'stars', 'date']"],
                 id="json-missing-column-lists-the-keys"),
    pytest.param("y.jsonl", yelp(ROWS[:3]) + "\n" + json.dumps({"user_id": 1, "stars": 2, "date": "2020-01-01"}),
                 dict(zip(("user_column", "item_column", "timestamp_column"), YELP)),
                 ["column 'business_id' is empty at record 4 (line 5)"], id="json-record-without-a-field"),
    pytest.param("l.inter", inter(), dict(user_column="user"),
                 ["user_column='user'", "['user_id:token', 'item_id:token', 'rating:float', 'timestamp:float']"],
                 id="inter-missing-column-lists-the-header"),
    pytest.param("l.inter", inter(ROWS[:2] + [(1, 12, 4, "x")]), dict(user_column="user_id", item_column="item_id"),
                 ["cannot read 'x.0' at row 3 (line 4"], id="inter-bad-timestamp"),
    pytest.param("s.txt", sequences(), dict(format="sequences", timestamp_column="t"),
                 ["no timestamp", "--data.timestamp_column null"],
                 id="sequences-with-a-timestamp-column"),
    pytest.param("s.txt", sequences(), dict(format="sequences", timestamp_column=None, rating_column="r",
                                            min_rating=4), ["no rating"], id="sequences-with-a-rating-column"),
    pytest.param("log.parquet.gz", "u,i,t\n", {}, ["unsupported file type '.parquet.gz'"], id="gz-not-for-parquet"),
    pytest.param("log.csv", "u,i,t\n", dict(format="xlsx"), ["unknown format 'xlsx'", "'sequences'"],
                 id="unknown-format"),
]


@pytest.mark.parametrize("name,text,kwargs,pieces", ERRORS)
def test_clear_errors_name_file_line_and_field(tmp_path, name, text, kwargs, pieces):
    path = write_text(tmp_path / name, text)
    with pytest.raises(ValueError) as error:
        read_interactions(path, **kwargs)
    for piece in [str(path), *pieces]:
        assert piece in str(error.value)
