"""Ingesting labels: what is stored, what is refused (with nothing written), and which label of a
request wins, against real files and DuckDB."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.core.types import Scalar, Signature, TensorSpec
from modelyard.errors import InvalidInputError, PredictionLogEmptyError
from modelyard.monitoring.labelrules import rule_of
from modelyard.monitoring.labels import (
    ingest_labels,
    labels_folder,
    labels_table,
    latest_labels_sql,
)

NOW = datetime.now(UTC).replace(microsecond=0)


def write_log(root: Path, name: str, ids: list[str], rows: list[int] | None = None) -> None:
    """A prediction log of ``name`` in the layout ``ParquetSink`` writes."""
    rows = rows or [0] * len(ids)
    n = len(ids)
    table = pa.table({
        "request_id": pa.array(ids, pa.string()), "row": pa.array(rows, pa.int64()),
        "time": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        "deployment": [name] * n, "route": ["v2_infer"] * n, "model": ["m"] * n,
        "version": ["1"] * n, "latency_ms": [1.0] * n, "in_x": [1.0] * n,
        "out_predict": pa.array([0] * n, pa.int64()),
    })  # fmt: skip
    folder = root / f"deployment={name}" / f"hour={NOW.strftime('%Y-%m-%dT%H')}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"{uuid.uuid4().hex}.parquet")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    out = tmp_path / "log"
    write_log(out, "churn", ["a", "b", "c", "0012"])
    write_log(out, "churn", ["multi", "multi", "multi"], rows=[0, 1, 2])
    return out


def stored(root: Path, name: str = "churn") -> list[dict[str, object]]:
    files = sorted(labels_folder(root, name).glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist() if files else []


def nothing_written(root: Path) -> bool:
    folder = root / "labels"
    return not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))


def latest(root: Path, name: str = "churn") -> dict[tuple[str, int], str]:
    rows = duckdb.sql(latest_labels_sql(root, name)).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def test_csv_labels_are_stored_and_counted_against_the_log(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("request_id,label,extra\na,1,x\n0012,0,y\nunknown,1,z\n")
    before = datetime.now(UTC)
    result = ingest_labels(root, "churn", path)
    assert (result.deployment, result.rows, result.matched, result.unmatched) == ("churn", 3, 2, 1)
    assert Path(result.path).parent == root / "labels" / "deployment=churn"
    assert Path(result.path).suffix == ".parquet"
    rows = stored(root)
    # ids stay text (0012 is not 12), the row defaults to 0, labels keep text and number
    assert [(r["request_id"], r["row"], r["label"], r["label_num"]) for r in rows] == [
        ("a", 0, "1", 1.0), ("0012", 0, "0", 0.0), ("unknown", 0, "1", 1.0),
    ]  # fmt: skip
    assert all(r["time"] == r["ingested_at"] and r["time"] >= before for r in rows)
    schema = pq.read_schema(result.path)
    assert str(schema.field("time").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("ingested_at").type) == "timestamp[us, tz=UTC]"
    assert set(schema.names) == {"request_id", "row", "label", "label_num", "time", "ingested_at"}


def test_parquet_labels_with_rows_times_and_string_labels(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    frame = pd.DataFrame({
        "request_id": ["multi", "multi", "b", "c"], "row": [0, 2, 0, 0],
        "label": ["cat", "dog", "2.5", "true"],
        "time": ["2026-05-01T12:00:00Z", "1777636800", None, "2026-05-01 14:00"],
    })  # fmt: skip
    frame.to_parquet(path)
    result = ingest_labels(root, "churn", path)
    assert (result.rows, result.matched, result.unmatched) == (4, 4, 0)
    rows = stored(root)
    assert [(r["request_id"], r["row"], r["label"], r["label_num"]) for r in rows] == [
        ("multi", 0, "cat", None), ("multi", 2, "dog", None), ("b", 0, "2.5", 2.5),
        ("c", 0, "true", None),
    ]  # fmt: skip
    assert [r["time"] for r in rows[:2]] == [
        datetime(2026, 5, 1, 12, tzinfo=UTC),
        datetime.fromtimestamp(1777636800, UTC),
    ]
    assert rows[2]["time"] == rows[2]["ingested_at"]  # no time: the ingest time
    assert rows[3]["time"] == datetime(2026, 5, 1, 14, tzinfo=UTC)  # naive: UTC


def test_a_dataframe_with_mixed_label_types(root: Path) -> None:
    frame = pd.DataFrame({"request_id": ["a", "b", "c", "0012"], "label": [1, 2.0, True, "x"]})
    result = ingest_labels(root, "churn", frame, count_matched=False)
    assert (result.rows, result.matched, result.unmatched) == (4, None, None)
    assert [(r["label"], r["label_num"]) for r in stored(root)] == [
        ("1", 1.0), ("2", 2.0), ("true", 1.0), ("x", None),
    ]  # fmt: skip


def test_the_latest_label_of_a_request_wins(root: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("request_id,label\na,0\nb,0\n")
    second.write_text("request_id,label\na,1\n")
    ingest_labels(root, "churn", first)
    ingest_labels(root, "churn", second)
    assert latest(root) == {("a", 0): "1", ("b", 0): "0"}
    assert len(stored(root)) == 3  # the earlier label is kept, not rewritten


def test_a_name_served_here_needs_no_log_yet(tmp_path: Path) -> None:
    frame = pd.DataFrame({"request_id": ["a"], "label": [1]})
    result = ingest_labels(tmp_path, "fresh", frame, require_log=False)
    assert (result.rows, result.matched, result.unmatched) == (1, 0, 1)


def _csv(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "request_id,y\na,1\n",
            "Column label missing from labels file 'labels.csv' (found: request_id, y); labels "
            "need request_id and label, optionally row and time.",
        ),
        (
            "id,y\na,1\n",
            "Columns request_id and label missing from labels file 'labels.csv' (found: id, y);",
        ),
        ("request_id,label\n", "There are no rows in labels file 'labels.csv'; nothing to ingest."),
        (
            "request_id,label\na,1\n,0\n , 1\n",
            "2 rows in labels file 'labels.csv' have no request_id (first at line 3); fill or "
            "drop them.",
        ),
        (
            "request_id,label\na,1\nb,\n",
            "1 row in labels file 'labels.csv' has no label (first at line 3); fill or drop them.",
        ),
        (
            "request_id,label\n"
            + "".join(f"r{i},1\nr{i},0\n" for i in range(7))
            + "a,1\nmulti,1\n",
            "7 request ids appear more than once in labels file 'labels.csv' ('r0', 'r1', 'r2', "
            "'r3', 'r4' and 2 more); keep one label per request (and row).",
        ),
        (
            "request_id,row,label\nmulti,1,1\nmulti,1,0\nmulti,0,1\n",
            "1 request id appears more than once in labels file 'labels.csv' ('multi' row 1);",
        ),
        (
            "request_id,label,time\na,1,yesterday\n",
            "Time 'yesterday' at line 2 of labels file 'labels.csv' is neither an ISO 8601 time "
            "(2026-05-01T12:00:00Z) nor epoch seconds.",
        ),
        (
            "request_id,row,label\na,0,1\nb,-1,1\n",
            "Row -1 at line 3 of labels file 'labels.csv' is not a row number;",
        ),
    ],
)
def test_bad_files_are_refused_and_nothing_is_written(
    root: Path, tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        ingest_labels(root, "churn", _csv(tmp_path, text))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert nothing_written(root)


def test_a_bad_parquet_file_names_rows_not_lines(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"request_id": ["a", "b", None], "label": [1, 0, 1]}).to_parquet(path)
    with pytest.raises(InvalidInputError, match=r"^1 row in labels file 'labels.parquet' has no "):
        ingest_labels(root, "churn", path)
    with pytest.raises(InvalidInputError, match=r"\(first at row 3\)"):
        ingest_labels(root, "churn", path)
    assert nothing_written(root)


def test_unsupported_and_missing_files(root: Path, tmp_path: Path) -> None:
    json_file = _csv(tmp_path, '[{"request_id": "a", "label": 1}]', name="labels.json")
    with pytest.raises(InvalidInputError) as caught:
        ingest_labels(root, "churn", json_file)
    assert str(caught.value) == (
        "Labels file 'labels.json' is neither CSV nor Parquet; save it as .csv or .parquet with "
        "columns request_id, label and optionally row, time."
    )
    missing = tmp_path / "nope.csv"
    with pytest.raises(InvalidInputError) as caught:
        ingest_labels(root, "churn", missing)
    assert str(caught.value) == f"Labels file {str(missing)!r} does not exist; check the path."
    assert nothing_written(root)


def test_an_unknown_deployment_is_refused(root: Path, tmp_path: Path) -> None:
    path = _csv(tmp_path, "request_id,label\na,1\n")
    with pytest.raises(PredictionLogEmptyError) as caught:
        ingest_labels(root, "ghost", path)
    assert str(caught.value) == (
        f"No predictions logged for 'ghost' under {root}, so there is nothing to label; serve it "
        "with 'yard serve --log-predictions' first (or check the name and "
        "MODELYARD_MONITORING__LOG_ROOT)."
    )
    with pytest.raises(InvalidInputError, match=r"^Invalid deployment name '\.\./churn';"):
        ingest_labels(root, "../churn", path)
    assert nothing_written(root)
    assert not (root / "deployment=ghost").exists()


def test_labels_of_other_deployments_are_kept_apart(root: Path) -> None:
    write_log(root, "other", ["a"])
    ingest_labels(root, "churn", pd.DataFrame({"request_id": ["a"], "label": [1]}))
    ingest_labels(root, "other", pd.DataFrame({"request_id": ["a"], "label": [0]}))
    assert latest(root, "churn") == {("a", 0): "1"}
    assert latest(root, "other") == {("a", 0): "0"}


def test_ingest_time_orders_labels_not_the_given_time(root: Path) -> None:
    # a label observed earlier but ingested later still replaces the older one
    later = pd.DataFrame({"request_id": ["a"], "label": [0], "time": [NOW]})
    earlier = pd.DataFrame({"request_id": ["a"], "label": [1], "time": [NOW - timedelta(days=3)]})
    ingest_labels(root, "churn", later)
    ingest_labels(root, "churn", earlier)
    assert latest(root) == {("a", 0): "1"}


def signature_of(dtype: str, classes: tuple[Scalar, ...] | None) -> Signature:
    spec = TensorSpec(name="x", dtype="float64")
    return Signature(kind="columns", inputs=(spec,), classes=classes,
                     outputs=(TensorSpec(name="predict", dtype=dtype, shape=(-1,)),))  # fmt: skip


@pytest.mark.parametrize(
    ("dtype", "classes", "taken", "refused"),
    [
        # a regressor: numbers, and number text as a CSV holds it; not booleans nor inf
        ("float64", None, [2, 3.5, "4.5"], [True, "abc", float("inf"), "nan"]),
        ("int64", None, [1], ["1 kg"]),
        # numeric classes: any number (an unseen class is a real outcome), no text
        ("int64", (0, 1), [0, 1, 7, 2.5, "1", True], ["yes"]),
        # text or boolean classes, or text predictions: any label can be one
        ("string", ("cat", "dog"), ["cow", 1, True], []),
        ("bool", (False, True), [True, "yes"], []),
        ("string", None, ["cow", 1], []),
    ],
)
def test_a_label_the_model_cannot_score_is_refused(
    dtype: str, classes: tuple[Scalar, ...] | None, taken: list[object], refused: list[object]
) -> None:
    rule = rule_of(signature_of(dtype, classes), "m/1")
    frame = pd.DataFrame({"request_id": [f"r{i}" for i in range(len(taken))],
                          "label": pd.Series(taken, dtype=object)})  # fmt: skip
    assert labels_table(frame, rule=rule).num_rows == len(taken)
    for value in refused:
        labels = pd.Series([taken[0], value], dtype=object)
        bad = pd.DataFrame({"request_id": ["a", "b"], "label": labels})
        with pytest.raises(InvalidInputError, match=r"^Label .* of request 'b' \(row 2 of the"):
            labels_table(bad, rule=rule)
    assert rule_of(None, "m/1") is None
