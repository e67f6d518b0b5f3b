"""The Parquet prediction log against a real temporary folder."""

from __future__ import annotations

import gc
import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.errors import PredictionLogEmptyError
from modelyard.monitoring import predlog
from modelyard.monitoring._logblock import BLOCK_ROWS
from modelyard.monitoring.predlog import ParquetSink, records_table
from modelyard.monitoring.query import read_log
from modelyard.serving.sink import PredictionRecord
from modelyard.serving.validation import Rows


def record(i: int, n: int = 2, *, model: str = "lin", at: float | None = None) -> PredictionRecord:
    matrix = np.arange(n * 3, dtype=np.float64).reshape(n, 3) + 100 * i
    return PredictionRecord(
        request_id=f"req{i}", time=time.time() if at is None else at, model=model, version="1",
        route="v2_infer", inputs=Rows(n, matrix, None),
        outputs={"predict": matrix.sum(axis=1), "predict_proba": np.full((n, 2), 0.5)},
        latency_s=0.002, input_names=("a", "b", "c"),
    )  # fmt: skip


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_records_are_written_partitioned_and_readable(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    sink.submit(record(0, at=1_780_000_000.0))  # 2026-05-28T20 UTC
    sink.submit(record(1, n=3))
    sink.submit(record(2, model="other"))
    sink.close()
    written = files(tmp_path)
    assert [p.suffix for p in written] == [".parquet"] * 3
    assert {p.parent.parent.name for p in written} == {"deployment=lin", "deployment=other"}
    assert "hour=2026-05-28T20" in {p.parent.name for p in written}
    old = pq.read_table(next(p for p in written if "2026-05-28T20" in str(p)))
    assert old.column("request_id").to_pylist() == ["req0", "req0"]
    assert old.column("row").to_pylist() == [0, 1]
    assert old.column("in_b").to_pylist() == [1.0, 4.0]
    assert old.column("out_predict").to_pylist() == [3.0, 12.0]
    assert old.column("out_predict_proba").to_pylist() == [[0.5, 0.5], [0.5, 0.5]]
    assert str(old.schema.field("time").type) == "timestamp[us, tz=UTC]"
    glob = str(tmp_path / "deployment=lin" / "*" / "*.parquet")
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true)")
    assert count.fetchall() == [(5,)]


def test_read_log_filters_by_time_and_orders_newest_first(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    sink.submit(record(0, at=time.time() - 7200))
    sink.submit(record(1))
    sink.submit(record(2))
    sink.close()
    recent = read_log(tmp_path, "lin", since=timedelta(hours=1), limit=None).to_pylist()
    assert [(r["request_id"], r["row"]) for r in recent] == [
        ("req2", 0), ("req2", 1), ("req1", 0), ("req1", 1),
    ]  # fmt: skip
    assert len(read_log(tmp_path, "lin", since=None, limit=None)) == 6
    assert len(read_log(tmp_path, "lin", since=None, limit=3)) == 3
    with pytest.raises(PredictionLogEmptyError, match="No predictions logged for 'nope'"):
        read_log(tmp_path, "nope", since=timedelta(hours=1))
    with pytest.raises(PredictionLogEmptyError, match="in the last 0s"):
        read_log(tmp_path, "lin", since=timedelta(0))


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    heard: list[int] = []
    sink = ParquetSink(tmp_path, queue_size=3, flush_interval_s=60, on_drop=heard.append)
    for i in range(5):
        sink.submit(record(i))
    assert sink.dropped == 2
    assert heard == [1, 1]
    sink.close()
    assert sum(pq.read_table(p).num_rows for p in files(tmp_path)) == 3 * 2
    sink.submit(record(9))  # after close: counted, not lost silently
    assert sink.dropped == 3


def test_the_writer_flushes_on_its_own_and_close_flushes_the_rest(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, flush_interval_s=0.05)
    sink.submit(record(0))
    deadline = time.monotonic() + 5
    while not files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(files(tmp_path)) == 1
    for i in range(1, 200):
        sink.submit(record(i))
    sink.close()
    assert sink.written == 200
    ids = {r for p in files(tmp_path) for r in pq.read_table(p).column("request_id").to_pylist()}
    assert len(ids) == 200
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    bad = record(0)
    broken = PredictionRecord(**{**{s: getattr(bad, s) for s in bad.__slots__},
                                 "outputs": {"predict": object()}})  # fmt: skip
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    sink.submit(broken)
    sink.submit(record(1, model="fine"))
    sink.close()
    assert sink.dropped == 1
    assert [p.parent.parent.name for p in files(tmp_path)] == ["deployment=fine"]


def test_privacy_drops_and_hashes_input_columns(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, flush_interval_s=60, drop_columns=["a"], hash_columns=["c"])
    sink.submit(record(0, n=1))
    sink.close()
    table = pq.read_table(files(tmp_path)[0])
    assert "in_a" not in table.column_names
    assert table.column("in_b").to_pylist() == [1.0]
    assert table.column("in_c").to_pylist() == [hashlib.sha256(b"2.0").hexdigest()]


def test_column_inputs_and_mixed_outputs_share_one_file(tmp_path: Path) -> None:
    columns = Rows(2, None, [np.array([1.0, 2.0]), np.array(["paris", "rome"], dtype=object)])
    mixed = PredictionRecord(
        request_id="m", time=time.time(), model="lin", version="2", route="invocations",
        inputs=columns, outputs={"predict": np.array([0, 1])}, latency_s=0.001,
        input_names=("age", "city"),
    )  # fmt: skip
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    sink.submit(record(0))
    sink.submit(mixed)
    sink.close()
    (only,) = files(tmp_path)
    table = pq.read_table(only)
    assert table.column("in_city").to_pylist() == [None, None, "paris", "rome"]
    assert table.column("out_predict_proba").to_pylist()[2:] == [None, None]


def test_a_flush_of_one_model_matches_its_records_one_by_one(tmp_path: Path) -> None:
    # the usual flush (one model, one row a request) takes one concatenation per column;
    # the result is the rows of each record's own table, in order, with the same types
    records = [record(i, n=1, at=1_780_000_000.0 + i) for i in range(5)]
    whole = records_table(records)
    assert whole.equals(pa.concat_tables([records_table([r]) for r in records]))
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    for r in records:
        sink.submit(r)
    sink.close()
    (only,) = files(tmp_path)
    assert pq.read_table(only).equals(whole)
    # text and integers dictionary-encoded, float inputs and request ids plain
    column_chunks = pq.ParquetFile(only).metadata.row_group(0)
    encodings = {
        column_chunks.column(i).path_in_schema: column_chunks.column(i).encodings
        for i in range(column_chunks.num_columns)
    }
    assert "RLE_DICTIONARY" in encodings["deployment"]
    assert "RLE_DICTIONARY" not in encodings["in_a"]
    assert "RLE_DICTIONARY" not in encodings["request_id"]


def test_a_flush_larger_than_one_concatenation_keeps_every_row_in_order() -> None:
    # past _CONCAT_CHUNK records the inputs and outputs are joined in pieces (the writer lets
    # the event loop run between them); mixed widths still take the general path
    count = predlog._CONCAT_CHUNK * 2 + 7
    records = [record(i, n=1, at=1_780_000_000.0 + i) for i in range(count)]
    whole = records_table(records)
    assert whole.num_rows == count
    assert whole.column("in_a").to_pylist() == [100.0 * i for i in range(count)]
    assert whole.column("out_predict").to_pylist() == [300.0 * i + 3 for i in range(count)]
    pieces = [records_table(records[i : i + 100]) for i in range(0, count, 100)]
    assert whole.equals(pa.concat_tables(pieces))
    wide = PredictionRecord(
        request_id="wide", time=1_780_000_000.0, model="lin", version="1", route="v2_infer",
        inputs=Rows(1, np.ones((1, 4)), None), outputs={"predict": np.ones(1)}, latency_s=0.0,
        input_names=("a", "b", "c", "d"),
    )  # fmt: skip
    mixed = records_table([*records, wide])
    assert mixed.num_rows == count + 1
    assert mixed.column("in_d").null_count == count


def written(root: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(path) for path in files(root)])


def test_one_row_answers_are_kept_as_columns_and_written_as_their_records_are(
    tmp_path: Path,
) -> None:
    # one-row answers of one shape are copied into a block's columns as they arrive (their
    # objects are freed at once); the file holds what records_table makes of the same records
    start = 1_780_000_000.0
    count = BLOCK_ROWS + 10  # past one full block
    records = [record(i, n=1, at=start + i / 1000) for i in range(count)]
    sink = ParquetSink(tmp_path, flush_interval_s=60, hash_columns=["b"], drop_columns=["c"])
    for r in records:
        sink.submit(r)
    assert sink._block_rows == count and not sink._queue
    sink.close()
    expected = records_table(records, drop=frozenset({"c"}), hashed=frozenset({"b"}))
    assert written(tmp_path).equals(expected)
    assert sink.written == count and sink.dropped == 0


def lane_of(sink: ParquetSink) -> predlog.Lane:
    return sink.lane(
        model="lin", version="1", route="v2_infer", deployment=None, input_names=("a", "b", "c"),
        output_names=("predict", "predict_proba"),
    )  # fmt: skip


def add(lane: predlog.Lane, r: PredictionRecord) -> bool:
    assert r.inputs.matrix is not None
    return lane.add(
        r.request_id, r.time, r.latency_s, r.cpu_s, r.memory_bytes, r.inputs.matrix, r.outputs
    )


def test_answers_added_through_a_lane_are_written_as_their_records_are(tmp_path: Path) -> None:
    # the server logs one-row answers through a lane, with their fields and no record; they
    # share the block of the records submitted for the same kind of answer
    start = 1_780_000_000.0
    count = BLOCK_ROWS + 10
    records = [record(i, n=1, at=start + i / 1000) for i in range(count)]
    sink = ParquetSink(tmp_path, flush_interval_s=60, hash_columns=["b"])
    lane = lane_of(sink)
    for i, r in enumerate(records):
        if i % 3:
            assert add(lane, r)
        else:
            sink.submit(r)
    assert sink._block_rows == count and not sink._queue
    sink.close()
    expected = records_table(records, drop=frozenset(), hashed=frozenset({"b"}))
    assert written(tmp_path).equals(expected)
    assert sink.written == count and sink.dropped == 0


def test_a_lane_refuses_an_answer_that_fits_no_block_and_takes_nothing(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    lane = lane_of(sink)
    assert add(lane, record(0, n=1))
    two_rows = record(1, n=2)
    f32 = PredictionRecord(
        request_id="f32", time=time.time(), model="lin", version="1", route="v2_infer",
        inputs=Rows(1, np.ones((1, 3), np.float32), None),
        outputs={"predict": np.ones(1), "predict_proba": np.full((1, 2), 0.5)},
        latency_s=0.002, input_names=("a", "b", "c"),
    )  # fmt: skip
    listed = PredictionRecord(
        request_id="listed", time=time.time(), model="lin", version="1", route="v2_infer",
        inputs=Rows(1, np.ones((1, 3)), None),
        outputs={"predict": [1.0], "predict_proba": np.full((1, 2), 0.5)},
        latency_s=0.002, input_names=("a", "b", "c"),
    )  # fmt: skip
    for refused in (two_rows, f32, listed):
        assert not add(lane, refused)
        sink.submit(refused)  # what the server does next
    assert sink._block_rows == 1 and len(sink._queue) == 3
    sink.close()
    ids = written(tmp_path).column("request_id").to_pylist()
    assert sorted(set(ids)) == ["f32", "listed", "req0", "req1"] and len(ids) == 5


def test_a_lane_drops_and_counts_when_the_queue_is_full(tmp_path: Path) -> None:
    heard: list[int] = []
    sink = ParquetSink(tmp_path, queue_size=2, flush_interval_s=60, on_drop=heard.append)
    lane = lane_of(sink)
    assert all(add(lane, record(i, n=1)) for i in range(3))
    assert sink.dropped == 1 and heard == [1] and sink._block_rows == 2
    sink.close()
    assert add(lane, record(9, n=1))  # after close: counted, not lost silently
    assert sink.dropped == 2
    assert written(tmp_path).column("request_id").to_pylist() == ["req0", "req1"]


def test_blocks_and_queued_records_share_a_file_in_answer_order(tmp_path: Path) -> None:
    start = 1_780_000_000.0
    ones = [record(i, n=1, at=start + i) for i in range(0, 6, 2)]
    many = [record(i, n=2, at=start + i) for i in range(1, 6, 2)]  # the general path
    other = PredictionRecord(
        request_id="f32", time=start + 6, model="lin", version="1", route="v2_infer",
        inputs=Rows(1, np.ones((1, 3), np.float32), None),  # another dtype: not the block's
        outputs={"predict": np.ones(1), "predict_proba": np.full((1, 2), 0.5)},
        latency_s=0.002, input_names=("a", "b", "c"),
    )  # fmt: skip
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    for r in [*ones, *many, other]:
        sink.submit(r)
    assert sink._block_rows == 3 and len(sink._queue) == 4
    sink.close()
    (only,) = files(tmp_path)
    table = pq.read_table(only)
    assert table.column("request_id").to_pylist() == [
        "req0", "req1", "req1", "req2", "req3", "req3", "req4", "req5", "req5", "f32"
    ]  # fmt: skip
    assert table.column("in_a").to_pylist()[:4] == [0.0, 100.0, 103.0, 200.0]
    assert table.column("out_predict_proba").to_pylist()[0] == [0.5, 0.5]


def test_a_block_that_spans_an_hour_is_filed_under_each_hour(tmp_path: Path) -> None:
    boundary = 1_780_002_000.0  # 2026-05-28T21:00:00 UTC
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    for i, at in enumerate([boundary - 2, boundary - 1, boundary, boundary + 1]):
        sink.submit(record(i, n=1, at=at))
    sink.close()
    hours = sorted(path.parent.name for path in files(tmp_path))
    assert hours == ["hour=2026-05-28T20", "hour=2026-05-28T21"]
    assert read_log(tmp_path, "lin").shape[0] == 4


def test_queued_records_are_not_left_to_the_garbage_collector(tmp_path: Path) -> None:
    # a second of queued records kept tracked made every collection walk them (and full
    # collections of 3 to 29 ms); the queue holds tuples the collector lets go of at once
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    try:
        columns = Rows(1, None, [np.array([1.0]), np.array(["paris"], dtype=object)])
        sink.submit(record(0, n=1))
        sink.submit(record(1, n=3))
        sink.submit(
            PredictionRecord(
                request_id="c", time=time.time(), model="lin", version="1", route="v2_infer",
                inputs=columns, outputs={"predict": np.array([0])}, latency_s=0.001,
                input_names=("age", "city"),
            )
        )  # fmt: skip
        # a new shape's names settle in two collections (the order of a generation's list
        # changes as it is walked); from then on, a record goes at its first collection
        gc.collect()
        gc.collect()
        gc.collect()
        # the one-row answer went into a block (its arrays kept in the block's lists), the others
        # into the queue
        assert sink._block_rows == 1
        assert [gc.is_tracked(item) for item in sink._queue] == [False, False]
        sink.submit(record(2, n=2))
        gc.collect(0)
        assert not gc.is_tracked(sink._queue[-1])
    finally:
        sink.close()


def test_each_row_is_filed_under_the_hour_of_its_time_column(tmp_path: Path) -> None:
    boundary = 1_780_002_000.0  # 2026-05-28T21:00:00 UTC
    times = {
        "before": boundary - 0.5, "last_us": boundary - 1e-6, "at": boundary,
        "after": boundary + 0.5, "next_day": boundary + 86_400 + 3 * 3600 + 1,
    }  # fmt: skip
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    for name, at in times.items():
        sink.submit(record(0, n=1, at=at, model=name))
    sink.close()
    folders = {}
    for path in files(tmp_path):
        times_in_file = pq.read_table(path).column("time").to_pylist()
        assert {t.strftime("hour=%Y-%m-%dT%H") for t in times_in_file} == {path.parent.name}
        folders[path.parent.parent.name.removeprefix("deployment=")] = path.parent.name
    assert folders == {
        "before": "hour=2026-05-28T20", "last_us": "hour=2026-05-28T20",
        "at": "hour=2026-05-28T21", "after": "hour=2026-05-28T21",
        "next_day": "hour=2026-05-30T00",
    }  # fmt: skip


def test_an_embedding_output_is_logged_as_lists_and_read_back_as_a_matrix(tmp_path: Path) -> None:
    from modelyard.monitoring.windows import read_embeddings

    rng = np.random.default_rng(0)
    sent = []
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    start = 1_780_000_000.0
    for i in range(30):
        texts = np.array([f"text {i} {j}" for j in range(i % 3 + 1)], dtype=object)
        vectors = rng.normal(size=(len(texts), 8)).astype(np.float32)
        sent.append(vectors)
        sink.submit(
            PredictionRecord(
                request_id=f"req{i:02d}", time=start + i, model="emb", version="1",
                route="v2_infer", inputs=Rows(len(texts), None, [texts]),
                outputs={"predict": vectors}, latency_s=0.01, input_names=("text",),
            )
        )  # fmt: skip
    sink.submit(
        PredictionRecord(
            request_id="failed", time=start + 40, model="emb", version="1", route="v2_infer",
            inputs=None, outputs={}, latency_s=0.01, status=400,
        )
    )  # fmt: skip
    sink.close()
    logged = files(tmp_path)
    table = pq.read_table(logged[0])
    assert pa.types.is_list(table.schema.field("out_predict").type)
    every = np.concatenate(sent).astype(np.float64)
    matrix, rows = read_embeddings(logged, "out_predict", limit=1_000)
    assert rows == len(every) == 60
    # the same rows (as a set: the sample is drawn in hash order), float32 values kept exactly
    assert sorted(map(tuple, matrix)) == sorted(map(tuple, every))
    sample, rows = read_embeddings(logged, "out_predict", limit=10)
    assert rows == 60 and sample.shape == (10, 8)
    assert np.array_equal(sample, read_embeddings(logged, "out_predict", limit=10)[0])
    newest, rows = read_embeddings(logged, "out_predict", last=3)
    assert rows == 3 and sorted(map(tuple, newest)) == sorted(map(tuple, every[-3:]))
    nothing, rows = read_embeddings(
        logged, "out_predict", start=datetime.fromtimestamp(start + 100, UTC)
    )
    assert rows == 0 and nothing.size == 0
